// DArray elementwise binary operation: out[i] = op(a[i], b[i]) over one block, where an
// operand of length 1 is a scalar broadcast to every element.
// The element type `T` and the body of `op` are replaced per kernel by
// backends/wgpu/src/array.rs.
alias T = f32;
fn op(x: T, y: T) -> T { return x + y; }

@group(0) @binding(0) var<storage, read> a: array<T>;
@group(0) @binding(1) var<storage, read> b: array<T>;
@group(0) @binding(2) var<storage, read_write> out: array<T>;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) id: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let i = id.x + id.y * groups.x * 256u;
    if (i < arrayLength(&out)) {
        let x = a[select(i, 0u, arrayLength(&a) == 1u)];
        let y = b[select(i, 0u, arrayLength(&b) == 1u)];
        out[i] = op(x, y);
    }
}
