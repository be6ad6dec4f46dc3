// DArray constructors over one block.
//   fill:  out[i] = value[0]
// The element type `T` is replaced per kernel by backends/wgpu/src/array.rs.
alias T = f32;

struct Len {
    n: u32,
    pad0: u32,
    pad1: u32,
    pad2: u32,
}

@group(0) @binding(0) var<uniform> p: Len;
@group(0) @binding(1) var<storage, read> value: array<T>;
@group(0) @binding(2) var<storage, read_write> out: array<T>;

@compute @workgroup_size(256)
fn fill(@builtin(global_invocation_id) id: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let i = id.x + id.y * groups.x * 256u;
    if (i < p.n) {
        out[i] = value[0];
    }
}
