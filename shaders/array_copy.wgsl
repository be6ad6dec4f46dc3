// DArray data movement (transpose, slice, concatenate, rechunk): copies a box of elements
// between two blocks, each with its own offset and strides (any axis permutation).
//   gather:    out = the box of src (a fresh block)
//   copy_into: dst with the box of src written into it
// The element type `T` is replaced per kernel by backends/wgpu/src/array.rs.
alias T = f32;

struct Box {
    ndim: u32,
    count: u32,
    src_off: u32,
    dst_off: u32,
    shape: array<vec4<u32>, 2>,
    src_strides: array<vec4<u32>, 2>,
    dst_strides: array<vec4<u32>, 2>,
    extra: vec4<u32>,
}

@group(0) @binding(0) var<uniform> p: Box;
@group(0) @binding(1) var<storage, read> src: array<T>;
@group(0) @binding(2) var<storage, read_write> dst: array<T>;

// The source and destination positions of the i-th element of the box (row-major).
fn locate(i: u32) -> vec2<u32> {
    var rem = i;
    var s = p.src_off;
    var d = p.dst_off;
    for (var k = i32(p.ndim) - 1; k >= 0; k = k - 1) {
        let kk = u32(k);
        let e = p.shape[kk / 4u][kk % 4u];
        let c = rem % e;
        rem = rem / e;
        s = s + c * p.src_strides[kk / 4u][kk % 4u];
        d = d + c * p.dst_strides[kk / 4u][kk % 4u];
    }
    return vec2<u32>(s, d);
}

@compute @workgroup_size(256)
fn gather(@builtin(global_invocation_id) id: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let i = id.x + id.y * groups.x * 256u;
    if (i < p.count) {
        let at = locate(i);
        dst[at.y] = src[at.x];
    }
}

@compute @workgroup_size(256)
fn copy_into(@builtin(global_invocation_id) id: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let i = id.x + id.y * groups.x * 256u;
    if (i < p.count) {
        let at = locate(i);
        dst[at.y] = src[at.x];
    }
}
