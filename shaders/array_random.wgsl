// DArray random constructors over one block: element i of the block is element `g` of the
// whole array (g from the box geometry, as in array_copy.wgsl), and its value depends only
// on (seed, g), so every blocking and every processor draws the same numbers.
//   rand:  uniform in [0, 1)
//   randn: standard normal (Box–Muller on two uniforms)
// The element type `T` and the body of `unit` are replaced per kernel by
// backends/wgpu/src/array.rs (24 random bits for f32, 53 for f64, converted exactly).
alias T = f32;
fn unit(r0: u32, r1: u32) -> T { return T(r0 >> 8u) * T(1.0 / 16777216.0); }

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
@group(0) @binding(1) var<storage, read_write> out: array<T>;

// A 32-bit integer hash with good avalanche (lowbias32).
fn mix(v: u32) -> u32 {
    var x = v;
    x = x ^ (x >> 16u);
    x = x * 0x7feb352du;
    x = x ^ (x >> 15u);
    x = x * 0x846ca68bu;
    x = x ^ (x >> 16u);
    return x;
}

// The index in the whole array of the i-th element of the block.
fn global_index(i: u32) -> u32 {
    var rem = i;
    var g = p.src_off;
    for (var k = i32(p.ndim) - 1; k >= 0; k = k - 1) {
        let kk = u32(k);
        let e = p.shape[kk / 4u][kk % 4u];
        g = g + (rem % e) * p.src_strides[kk / 4u][kk % 4u];
        rem = rem / e;
    }
    return g;
}

fn element_hash(i: u32) -> u32 {
    let key = mix(p.extra.x ^ mix(p.extra.y ^ 0x85ebca6bu));
    return mix(global_index(i) ^ key);
}

@compute @workgroup_size(256)
fn rand(@builtin(global_invocation_id) id: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let i = id.x + id.y * groups.x * 256u;
    if (i < p.count) {
        let h = element_hash(i);
        out[i] = unit(mix(h ^ 0x68e31da4u), mix(h + 0x1b56c4e9u));
    }
}

@compute @workgroup_size(256)
fn randn(@builtin(global_invocation_id) id: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let i = id.x + id.y * groups.x * 256u;
    if (i < p.count) {
        let h = element_hash(i);
        let u1 = T(1.0) - unit(mix(h ^ 0x68e31da4u), mix(h + 0x1b56c4e9u));
        let u2 = unit(mix(h ^ 0x2a7b3c5du), mix(h + 0x7f4a7c15u));
        out[i] = sqrt(T(-2.0) * log(u1)) * cos(T(6.283185307179586) * u2);
    }
}
