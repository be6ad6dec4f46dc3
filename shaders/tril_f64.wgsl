// TRIL: zeroes the strict upper triangle of a row-major n x n tile in place (the Cholesky
// factor's tile after potrf).
//
// The scalar type is the alias below: f32 in tril.wgsl, f64 in tril_f64.wgsl (devices with
// SHADER_F64 only). The two files differ only in that line.
//
// Bindings (group 0): 0 = Params uniform, 1 = a (read_write). Workgroup 16 x 16, dispatch
// ceil(n / 16) x ceil(n / 16) workgroups.

alias Scalar = f64;

struct Params { n: u32, pad0: u32, pad1: u32, pad2: u32 }

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> a: array<Scalar>;

@compute @workgroup_size(16, 16)
fn tril(@builtin(global_invocation_id) id: vec3<u32>) {
    if (id.y < p.n && id.x < p.n && id.x > id.y) { a[id.y * p.n + id.x] = Scalar(0); }
}
