// DArray reductions over one block.
//   reduce_all:  out[0] = a[0] ⊕ a[1] ⊕ ... (one workgroup of 256 invocations)
//   reduce_axis: the block seen as [outer, len, inner]; out[o * inner + q] = ⊕_k a[(o * len + k) * inner + q]
// Each element of `a` is read through `load` (the identity, or a chain of elementwise maps
// fused into the reduction).
// The element type `T` and the bodies of `combine` and `load` are replaced per kernel by
// backends/wgpu/src/array.rs.
alias T = f32;
fn combine(x: T, y: T) -> T { return x + y; }
fn load(x: T) -> T { return x; }

struct Shape {
    outer: u32,
    len: u32,
    inner: u32,
    pad: u32,
}

@group(0) @binding(0) var<uniform> p: Shape;
@group(0) @binding(1) var<storage, read> a: array<T>;
@group(0) @binding(2) var<storage, read_write> out: array<T>;

var<workgroup> acc: array<T, 256>;
var<workgroup> has: array<u32, 256>;

@compute @workgroup_size(256)
fn reduce_all(@builtin(local_invocation_index) l: u32) {
    let n = p.outer * p.len * p.inner;
    var v: T = a[0];
    var ok = 0u;
    if (l < n) {
        v = load(a[l]);
        ok = 1u;
        var i = l + 256u;
        loop {
            if (i >= n) { break; }
            v = combine(v, load(a[i]));
            i = i + 256u;
        }
    }
    acc[l] = v;
    has[l] = ok;
    workgroupBarrier();
    var s = 128u;
    loop {
        if (s == 0u) { break; }
        if (l < s && has[l + s] != 0u) {
            if (has[l] != 0u) {
                acc[l] = combine(acc[l], acc[l + s]);
            } else {
                acc[l] = acc[l + s];
                has[l] = 1u;
            }
        }
        workgroupBarrier();
        s = s >> 1u;
    }
    if (l == 0u) {
        out[0] = acc[0];
    }
}

@compute @workgroup_size(256)
fn reduce_axis(@builtin(global_invocation_id) id: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let j = id.x + id.y * groups.x * 256u;
    if (j >= p.outer * p.inner) { return; }
    let o = j / p.inner;
    let q = j % p.inner;
    let base = o * p.len * p.inner + q;
    var v = load(a[base]);
    for (var k = 1u; k < p.len; k = k + 1u) {
        v = combine(v, load(a[base + k * p.inner]));
    }
    out[j] = v;
}
