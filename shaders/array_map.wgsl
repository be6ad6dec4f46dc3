// DArray elementwise map: out[i] = op(a[i]) over one block.
// The element type `T` and the body of `op` are replaced per kernel by
// backends/wgpu/src/array.rs.
alias T = f32;
fn op(x: T) -> T { return x; }

@group(0) @binding(0) var<storage, read> a: array<T>;
@group(0) @binding(1) var<storage, read_write> out: array<T>;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) id: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let i = id.x + id.y * groups.x * 256u;
    if (i < arrayLength(&out)) {
        out[i] = op(a[i]);
    }
}
