// Small kernels for tests and buffer initialisation over u32 storage buffers.
//
// fill: out[i] = params.value for i < params.n.
// increment: out[i] = out[i] + params.value for i < params.n.
// Bindings (group 0): 0 = Params uniform, 1 = out (read_write). Workgroup size 64,
// 1-D dispatch of ceil(n / 64) workgroups.

struct Params {
    value: u32,
    n: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read_write> out: array<u32>;

@compute @workgroup_size(64)
fn fill(@builtin(global_invocation_id) id: vec3<u32>) {
    if (id.x < params.n) {
        out[id.x] = params.value;
    }
}

@compute @workgroup_size(64)
fn increment(@builtin(global_invocation_id) id: vec3<u32>) {
    if (id.x < params.n) {
        out[id.x] = out[id.x] + params.value;
    }
}
