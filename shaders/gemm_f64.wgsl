// GEMM: C = alpha * op(A) * op(B) + beta * C, row-major with leading dimensions.
//
// op(A) is m x k, op(B) is k x n, C is m x n; any m, n, k >= 1 (k = 0 also works: C = beta C).
// Element (i, j) of a stored matrix X is x[off_x + i * ldx + j]; op(X) = X or its transpose
// per trans_x. With accumulate = 0 the old C is not read (beta = 0, NaN-safe, as in BLAS).
//
// The scalar type is the alias below: f32 in gemm.wgsl, f64 in gemm_f64.wgsl (devices with
// SHADER_F64 only). The two files differ only in that line.
//
// Bindings (group 0): 0 = Params uniform, 1 = a (read), 2 = b (read), 3 = c (read_write).
//
// Entry points:
//   gemm_naive: one invocation per C element, a plain loop over k reading A and B from
//     storage. 16x16 workgroups; dispatch [ceil(n / 16), ceil(m / 16), 1].
//   gemm_tiled: one 128x128 tile of C per 16x16 workgroup; invocation (lx, ly) accumulates
//     the 8x8 micro-tile at rows 8 ly.., columns 8 lx.. of the tile in 64 registers, while
//     the workgroup stages 128x8 panels of op(A) and 8x128 panels of op(B) through workgroup
//     memory, 8 values of k at a time. Dispatch [ceil(n / 128), ceil(m / 128), 1].

alias Scalar = f64;

struct Params {
    m: u32,
    n: u32,
    k: u32,
    lda: u32,
    ldb: u32,
    ldc: u32,
    off_a: u32,
    off_b: u32,
    off_c: u32,
    trans_a: u32,
    trans_b: u32,
    accumulate: u32,
    alpha: Scalar,
    beta: Scalar,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> a: array<Scalar>;
@group(0) @binding(2) var<storage, read> b: array<Scalar>;
@group(0) @binding(3) var<storage, read_write> c: array<Scalar>;

// Side of the C tile of one tiled workgroup, depth of one k step, invocations per side of
// the 16x16 workgroup (each owns an 8x8 micro-tile: TILE / SIDE).
const TILE: u32 = 128u;
const KSTEP: u32 = 8u;
const SIDE: u32 = 16u;

// Panels of op(A) and op(B), k-major: element (row or col r, kk) is component r % 4 of
// vector kk * TILE / 4 + r / 4, so a micro-tile's 8 rows (or columns) at one kk are two
// vectors. 2 x 8 x 128 scalars = 8 KiB for f32, 16 KiB for f64. (Vectors rather than
// scalars also keep the zero-initialisation that some backends emit short.)
var<workgroup> a_panel: array<vec4<Scalar>, 256>;
var<workgroup> b_panel: array<vec4<Scalar>, 256>;

// Index in `a` of op(A)[i, p].
fn a_index(i: u32, p: u32) -> u32 {
    if (params.trans_a == 0u) {
        return params.off_a + i * params.lda + p;
    }
    return params.off_a + p * params.lda + i;
}

// Index in `b` of op(B)[p, j].
fn b_index(p: u32, j: u32) -> u32 {
    if (params.trans_b == 0u) {
        return params.off_b + p * params.ldb + j;
    }
    return params.off_b + j * params.ldb + p;
}

fn store(i: u32, j: u32, acc: Scalar) {
    let index = params.off_c + i * params.ldc + j;
    var value = params.alpha * acc;
    if (params.accumulate != 0u) {
        value = value + params.beta * c[index];
    }
    c[index] = value;
}

@compute @workgroup_size(16, 16)
fn gemm_naive(@builtin(global_invocation_id) id: vec3<u32>) {
    let i = id.y;
    let j = id.x;
    if (i >= params.m || j >= params.n) {
        return;
    }
    // Strides of op(A) and op(B) along k.
    let a_step = select(1u, params.lda, params.trans_a != 0u);
    let b_step = select(params.ldb, 1u, params.trans_b != 0u);
    var ia = a_index(i, 0u);
    var ib = b_index(0u, j);
    var acc = Scalar(0);
    for (var p = 0u; p < params.k; p++) {
        acc += a[ia] * b[ib];
        ia += a_step;
        ib += b_step;
    }
    store(i, j, acc);
}

// Stores row i of a micro-tile: columns j0..j0 + 3 from lo, j0 + 4..j0 + 7 from hi.
fn store_row(i: u32, j0: u32, lo: vec4<Scalar>, hi: vec4<Scalar>) {
    if (i >= params.m) {
        return;
    }
    for (var q = 0u; q < 4u; q++) {
        if (j0 + q < params.n) {
            store(i, j0 + q, lo[q]);
        }
        if (j0 + 4u + q < params.n) {
            store(i, j0 + 4u + q, hi[q]);
        }
    }
}

@compute @workgroup_size(16, 16)
fn gemm_tiled(
    @builtin(workgroup_id) group: vec3<u32>,
    @builtin(local_invocation_id) local: vec3<u32>,
    @builtin(local_invocation_index) t: u32,
) {
    let row0 = group.y * TILE;
    let col0 = group.x * TILE;
    let lx = local.x;
    let ly = local.y;
    // Row r of the micro-tile (C row row0 + 8 ly + r) is in acc{2r} (columns col0 + 8 lx +
    // 0..3) and acc{2r+1} (columns + 4..7).
    var acc0 = vec4<Scalar>();
    var acc1 = vec4<Scalar>();
    var acc2 = vec4<Scalar>();
    var acc3 = vec4<Scalar>();
    var acc4 = vec4<Scalar>();
    var acc5 = vec4<Scalar>();
    var acc6 = vec4<Scalar>();
    var acc7 = vec4<Scalar>();
    var acc8 = vec4<Scalar>();
    var acc9 = vec4<Scalar>();
    var acc10 = vec4<Scalar>();
    var acc11 = vec4<Scalar>();
    var acc12 = vec4<Scalar>();
    var acc13 = vec4<Scalar>();
    var acc14 = vec4<Scalar>();
    var acc15 = vec4<Scalar>();
    let steps = (params.k + KSTEP - 1u) / KSTEP;
    for (var step = 0u; step < steps; step++) {
        let k0 = step * KSTEP;
        // Each of the 256 invocations stages 4 elements of each panel. Consecutive
        // invocations read consecutive addresses of the stored matrix (coalesced): along
        // k for a row-major op(A) and a transposed op(B), along rows/columns otherwise.
        // Elements outside the matrices are staged as zeros.
        for (var s = 0u; s < 4u; s++) {
            let e = t + s * SIDE * SIDE;
            var row = e / KSTEP;
            var kk = e % KSTEP;
            if (params.trans_a != 0u) {
                row = e % TILE;
                kk = e / TILE;
            }
            var va = Scalar(0);
            if (row0 + row < params.m && k0 + kk < params.k) {
                va = a[a_index(row0 + row, k0 + kk)];
            }
            a_panel[(kk * TILE + row) / 4u][row % 4u] = va;

            var col = e % TILE;
            kk = e / TILE;
            if (params.trans_b != 0u) {
                col = e / KSTEP;
                kk = e % KSTEP;
            }
            var vb = Scalar(0);
            if (col0 + col < params.n && k0 + kk < params.k) {
                vb = b[b_index(k0 + kk, col0 + col)];
            }
            b_panel[(kk * TILE + col) / 4u][col % 4u] = vb;
        }
        workgroupBarrier();
        for (var kk = 0u; kk < KSTEP; kk++) {
            // Four vector reads of workgroup memory feed 64 multiply-adds.
            let base = kk * (TILE / 4u);
            let a_lo = a_panel[base + 2u * ly];
            let a_hi = a_panel[base + 2u * ly + 1u];
            let b_lo = b_panel[base + 2u * lx];
            let b_hi = b_panel[base + 2u * lx + 1u];
            acc0 += a_lo.x * b_lo;
            acc1 += a_lo.x * b_hi;
            acc2 += a_lo.y * b_lo;
            acc3 += a_lo.y * b_hi;
            acc4 += a_lo.z * b_lo;
            acc5 += a_lo.z * b_hi;
            acc6 += a_lo.w * b_lo;
            acc7 += a_lo.w * b_hi;
            acc8 += a_hi.x * b_lo;
            acc9 += a_hi.x * b_hi;
            acc10 += a_hi.y * b_lo;
            acc11 += a_hi.y * b_hi;
            acc12 += a_hi.z * b_lo;
            acc13 += a_hi.z * b_hi;
            acc14 += a_hi.w * b_lo;
            acc15 += a_hi.w * b_hi;
        }
        workgroupBarrier();
    }
    let i = row0 + 8u * ly;
    let j = col0 + 8u * lx;
    store_row(i, j, acc0, acc1);
    store_row(i + 1u, j, acc2, acc3);
    store_row(i + 2u, j, acc4, acc5);
    store_row(i + 3u, j, acc6, acc7);
    store_row(i + 4u, j, acc8, acc9);
    store_row(i + 5u, j, acc10, acc11);
    store_row(i + 6u, j, acc12, acc13);
    store_row(i + 7u, j, acc14, acc15);
}
