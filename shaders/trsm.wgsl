// TRSM: B = B L^-T in place, for a lower-triangular n x n L with a non-unit diagonal and an
// m x n B, row-major with leading dimensions (BLAS ?trsm with side = right, uplo = lower,
// transa = T, diag = N, alpha = 1: the panel solve of a tiled Cholesky factorization).
//
// Element (i, j) of a stored matrix X is x[off_x + i * ldx + j]. Only L's lower triangle,
// diagonal included, is read. Row i of the result solves X_i L^T = B_i, i.e.
// X[i, c] = (B[i, c] - sum_{q < c} X[i, q] L[c, q]) / L[c, c] for c = 0, 1, ..., n - 1:
// rows are independent, columns are a forward substitution.
//
// The scalar type is the alias below: f32 in trsm.wgsl, f64 in trsm_f64.wgsl (devices with
// SHADER_F64 only). The two files differ only in that line.
//
// Bindings (group 0): 0 = Params uniform, 1 = l (read), 2 = b (read_write).
//
// Entry point trsm_right_lower_trans: each 16x16 workgroup solves 64 rows of B in the
// columns col_begin .. col_end (col_begin a multiple of 16, col_end one too or n; columns
// before col_begin already solved). The host covers n in several dispatches so that no
// invocation loops too long: Mesa's llvmpipe and lavapipe silently end every loop of an
// invocation once 65535 iterations of all its loops together have run. Dispatch ceil(m / 64) workgroups, spread over x and y as shaders::grid_1d does (workgroup
// id = x + y * num_workgroups.x). Invocation (lx, ly) owns rows 4 ly .. 4 ly + 3 of the
// workgroup's rows, in one vector, at column lx of the current 16-column block. For the
// block at column c0:
//   1. Left-looking update: acc = B[rows, c0 + lx] - X[rows, 0..c0] L[c0 + lx, 0..c0]^T,
//      with 64x16 panels of the solved X and 16x16 panels of L staged through workgroup
//      memory, 16 columns at a time: each invocation does 4 multiply-adds per two
//      workgroup-memory reads.
//   2. The 16 columns are solved against the 16x16 diagonal block of L in workgroup memory,
//      one column per step: the invocations of column p divide by L[p, p] and publish their
//      4 values, the later columns subtract their multiple.
//   3. The block's X is written over B; a storageBarrier makes it visible to step 1 of the
//      next blocks.
// With few rows (m = 1) a workgroup still runs 16 columns at a time in parallel.

alias Scalar = f32;

struct Params {
    m: u32,
    n: u32,
    ldl: u32,
    ldb: u32,
    off_l: u32,
    off_b: u32,
    col_begin: u32,
    col_end: u32,
    pad0: u32,
    pad1: u32,
    pad2: u32,
    pad3: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> l: array<Scalar>;
@group(0) @binding(2) var<storage, read_write> b: array<Scalar>;

// Rows of B per workgroup, columns per block (and the side of the workgroup).
const ROWS: u32 = 64u;
const NB: u32 = 16u;

// Panel of X (64 rows x 16 columns), column-major by rows of 4: element (r, k) is component
// r % 4 of vector k * 16 + r / 4, so an invocation's 4 rows at one column are one vector.
// During the diagonal solve it holds the solved columns in the same layout.
var<workgroup> xs: array<vec4<Scalar>, 256>;
// Panel of L (16 rows of the block x 16 columns): element (c, k) is component c % 4 of
// vector k * 4 + c / 4.
var<workgroup> ls: array<vec4<Scalar>, 64>;

fn l_index(i: u32, j: u32) -> u32 {
    return params.off_l + i * params.ldl + j;
}

fn b_index(i: u32, j: u32) -> u32 {
    return params.off_b + i * params.ldb + j;
}

fn l_get(c: u32, k: u32) -> Scalar {
    return ls[k * 4u + c / 4u][c % 4u];
}

@compute @workgroup_size(16, 16)
fn trsm_right_lower_trans(
    @builtin(workgroup_id) group: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(local_invocation_id) local: vec3<u32>,
    @builtin(local_invocation_index) t: u32,
) {
    let m = params.m;
    let n = params.n;
    let row0 = (group.x + group.y * groups.x) * ROWS;
    // Past the last row (the grid's spare workgroups): uniform across the workgroup.
    if (row0 >= m) {
        return;
    }
    let lx = local.x;
    let ly = local.y;
    let row = row0 + 4u * ly;
    for (var c0 = params.col_begin; c0 < params.col_end; c0 += NB) {
        let col = c0 + lx;
        var acc = vec4<Scalar>();
        if (col < n) {
            for (var q = 0u; q < 4u; q++) {
                if (row + q < m) {
                    acc[q] = b[b_index(row + q, col)];
                }
            }
        }

        // 1. acc -= X[rows, 0..c0] L[col, 0..c0]^T, 16 columns k at a time.
        for (var k0 = 0u; k0 < c0; k0 += NB) {
            // Consecutive invocations read consecutive columns of a row of X (and of L).
            for (var s = 0u; s < 4u; s++) {
                let e = t + s * NB * NB;
                let r = e / NB;
                let k = e % NB;
                var x = Scalar(0);
                if (row0 + r < m) {
                    x = b[b_index(row0 + r, k0 + k)];
                }
                xs[k * 16u + r / 4u][r % 4u] = x;
            }
            let lc = t / NB;
            let lk = t % NB;
            var lv = Scalar(0);
            if (c0 + lc < n) {
                lv = l[l_index(c0 + lc, k0 + lk)];
            }
            ls[lk * 4u + lc / 4u][lc % 4u] = lv;
            workgroupBarrier();
            for (var k = 0u; k < NB; k++) {
                acc -= xs[k * 16u + ly] * l_get(lx, k);
            }
            workgroupBarrier();
        }

        // 2. The diagonal block: L[c0 + c, c0 + k] for k <= c (zero above the diagonal and
        // past n: never read from L).
        let nb = min(NB, n - c0);
        let dc = t / NB;
        let dk = t % NB;
        var dv = Scalar(0);
        if (dk <= dc && dc < nb) {
            dv = l[l_index(c0 + dc, c0 + dk)];
        }
        ls[dk * 4u + dc / 4u][dc % 4u] = dv;
        workgroupBarrier();
        for (var p = 0u; p < nb; p++) {
            if (lx == p) {
                acc = acc / l_get(p, p);
                xs[p * 16u + ly] = acc;
            }
            workgroupBarrier();
            if (lx > p) {
                acc -= xs[p * 16u + ly] * l_get(lx, p);
            }
        }

        // 3. Write the block's X over B for the next blocks (and the caller).
        if (col < n) {
            for (var q = 0u; q < 4u; q++) {
                if (row + q < m) {
                    b[b_index(row + q, col)] = acc[q];
                }
            }
        }
        storageBarrier();
        workgroupBarrier();
    }
}
