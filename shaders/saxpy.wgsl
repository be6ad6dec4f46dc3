// SAXPY: y[i] = a * x[i] + y[i] over f32 storage buffers.
//
// Bindings (group 0): 0 = Params uniform, 1 = x (read), 2 = y (read_write).
// Dispatch a 2-D grid of 256-wide workgroups so n above 65535 * 256 fits under the
// per-dimension limit: global index = id.x + id.y * num_workgroups.x * 256.

struct Params {
    a: f32,
    n: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;

@compute @workgroup_size(256)
fn main(
    @builtin(global_invocation_id) id: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
) {
    let i = id.x + id.y * groups.x * 256u;
    if (i < params.n) {
        y[i] = params.a * x[i] + y[i];
    }
}
