// SYRK: one triangle of C = alpha * op(A) * op(A)^T + beta * C, row-major with leading
// dimensions.
//
// op(A) is n x k (A itself when trans = 0, A^T of a stored k x n A when trans = 1), C is
// n x n; only C[i, j] with i >= j (upper = 0, lower triangle) or i <= j (upper = 1) is read
// or written, diagonal included. With accumulate = 0 the old C is not read (beta = 0).
//
// The scalar type is the alias below: f32 in syrk.wgsl, f64 in syrk_f64.wgsl (devices with
// SHADER_F64 only). The two files differ only in that line.
//
// Bindings (group 0): 0 = Params uniform, 1 = a (read), 2 = c (read_write).
//
// Entry point syrk_tiled: the tiling of gemm.wgsl's gemm_tiled (128x128 C tile per 16x16
// workgroup, 8x8 register micro-tile per invocation, 8-deep k panels in workgroup memory),
// with both panels read from op(A). Dispatch [ceil(n / 128), ceil(n / 128), 1]; workgroups
// whose tile lies wholly outside the triangle return before touching memory.

alias Scalar = f32;

struct Params {
    n: u32,
    k: u32,
    lda: u32,
    ldc: u32,
    off_a: u32,
    off_c: u32,
    trans: u32,
    upper: u32,
    accumulate: u32,
    pad0: u32,
    pad1: u32,
    pad2: u32,
    alpha: Scalar,
    beta: Scalar,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> a: array<Scalar>;
@group(0) @binding(2) var<storage, read_write> c: array<Scalar>;

const TILE: u32 = 128u;
const KSTEP: u32 = 8u;
const SIDE: u32 = 16u;

// Panels of the tile's rows (a_panel) and columns (b_panel) of op(A), laid out as in
// gemm.wgsl: element (r, kk) is component r % 4 of vector kk * TILE / 4 + r / 4.
var<workgroup> a_panel: array<vec4<Scalar>, 256>;
var<workgroup> b_panel: array<vec4<Scalar>, 256>;

// Index in `a` of op(A)[i, p].
fn a_index(i: u32, p: u32) -> u32 {
    if (params.trans == 0u) {
        return params.off_a + i * params.lda + p;
    }
    return params.off_a + p * params.lda + i;
}

fn in_triangle(i: u32, j: u32) -> bool {
    if (params.upper != 0u) {
        return i <= j;
    }
    return i >= j;
}

fn store(i: u32, j: u32, acc: Scalar) {
    let index = params.off_c + i * params.ldc + j;
    var value = params.alpha * acc;
    if (params.accumulate != 0u) {
        value = value + params.beta * c[index];
    }
    c[index] = value;
}

// Stores row i of a micro-tile: columns j0..j0 + 3 from lo, j0 + 4..j0 + 7 from hi.
fn store_row(i: u32, j0: u32, lo: vec4<Scalar>, hi: vec4<Scalar>) {
    if (i >= params.n) {
        return;
    }
    for (var q = 0u; q < 4u; q++) {
        if (j0 + q < params.n && in_triangle(i, j0 + q)) {
            store(i, j0 + q, lo[q]);
        }
        if (j0 + 4u + q < params.n && in_triangle(i, j0 + 4u + q)) {
            store(i, j0 + 4u + q, hi[q]);
        }
    }
}

@compute @workgroup_size(16, 16)
fn syrk_tiled(
    @builtin(workgroup_id) group: vec3<u32>,
    @builtin(local_invocation_id) local: vec3<u32>,
    @builtin(local_invocation_index) t: u32,
) {
    let row0 = group.y * TILE;
    let col0 = group.x * TILE;
    // The whole tile is outside the triangle: nothing to do (uniform across the workgroup).
    if ((params.upper == 0u && col0 > row0 + TILE - 1u)
        || (params.upper != 0u && row0 > col0 + TILE - 1u)) {
        return;
    }
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
        // Each invocation stages 4 elements of each panel, both rows of op(A): the rows of
        // this tile (a_panel) and the rows that give its columns (b_panel). Consecutive
        // invocations read consecutive addresses of A; zeros outside the matrix.
        for (var s = 0u; s < 4u; s++) {
            let e = t + s * SIDE * SIDE;
            var row = e / KSTEP;
            var kk = e % KSTEP;
            if (params.trans != 0u) {
                row = e % TILE;
                kk = e / TILE;
            }
            var va = Scalar(0);
            if (row0 + row < params.n && k0 + kk < params.k) {
                va = a[a_index(row0 + row, k0 + kk)];
            }
            a_panel[(kk * TILE + row) / 4u][row % 4u] = va;
            var vb = Scalar(0);
            if (col0 + row < params.n && k0 + kk < params.k) {
                vb = a[a_index(col0 + row, k0 + kk)];
            }
            b_panel[(kk * TILE + row) / 4u][row % 4u] = vb;
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
