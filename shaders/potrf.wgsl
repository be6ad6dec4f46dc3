// POTRF: in-place Cholesky factorization A = L L^T of one square n x n row-major matrix,
// lower triangle.
//
// Element (i, j) of A is a[off_a + i * lda + j]. Only the lower triangle (i >= j, diagonal
// included) is read, and it is overwritten with L; the strict upper triangle is never read
// or written. If a pivot (the diagonal of the Schur complement, before its square root) is
// not positive or is NaN, the factorization stops there: info[0] = pivot + 1 (0-based pivot)
// and the lower triangle is left partly overwritten. Otherwise info[0] = 0. The first
// dispatch writes info[0] in either case, so the host need not clear it.
//
// The scalar type is the alias below: f32 in potrf.wgsl, f64 in potrf_f64.wgsl (devices with
// SHADER_F64 only). The two files differ only in that line.
//
// Bindings (group 0): 0 = Params uniform, 1 = a (read_write), 2 = info (read_write, u32).
//
// Blocked right-looking algorithm over 16-column blocks, three dispatches per block: for the
// block at column kb (params.kb; nb = min(16, n - kb) columns, rows below = kb + nb.. n),
//   potrf_diag   [1, 1, 1]: the nb x nb diagonal block is loaded into workgroup memory
//                and factored there by 16 invocations, invocation r owning row r, one
//                column per step: the pivot is checked, the column scaled by its square
//                root, and each row of the rest of the block updated. Every invocation sees
//                the pivot through workgroupUniformLoad, so they all stop at a failing pivot
//                together; the block is written back only when all its pivots were
//                positive. (A 16-wide workgroup rather than one invocation per element:
//                the work is tiny, and the 3 barriers per column cost far less in a small
//                workgroup, on software adapters most of all.)
//   potrf_panel  [ceil((n - below) / 64), 1, 1] (spread over y as shaders::grid_1d does):
//                one invocation per row i below the block solves
//                x L_kk^T = A[i, kb..kb + nb] by forward substitution.
//   potrf_update [ceil((n - below) / 64), same, 1]: A[i, j] -= sum_p A[i, p] A[j, p] over
//                the panel's columns p, for below <= j <= i: each 16x16 workgroup owns a
//                64x64 tile of the trailing matrix (tiles above the diagonal return at
//                once), each invocation a 4x4 micro-tile accumulated in registers, so every
//                trailing element is read and written once per block, not once per column.
// Dispatches of one command stream run in order, which orders the blocks' writes and reads.
// Once info[0] is set, every later dispatch returns without touching A.

alias Scalar = f32;

struct Params {
    n: u32,
    lda: u32,
    off_a: u32,
    kb: u32,
    pad0: u32,
    pad1: u32,
    pad2: u32,
    pad3: u32,
    pad4: u32,
    pad5: u32,
    pad6: u32,
    pad7: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read_write> a: array<Scalar>;
@group(0) @binding(2) var<storage, read_write> info: array<u32>;

// Columns per block.
const NB: u32 = 16u;
// Side of the trailing tile of one potrf_update workgroup, and rows per potrf_panel
// workgroup.
const TILE: u32 = 64u;

// The diagonal block being factored: element (r, c) is component c % 4 of vector
// r * 4 + c / 4, so row r is vectors 4 r .. 4 r + 3. (Vectors keep the zero-initialisation
// some backends emit short.)
var<workgroup> diag: array<vec4<Scalar>, 64>;
// The next pivot, broadcast with workgroupUniformLoad.
var<workgroup> pivot: Scalar;
// info[0] as the block starts, broadcast with workgroupUniformLoad.
var<workgroup> status: u32;

fn a_index(i: u32, j: u32) -> u32 {
    return params.off_a + i * params.lda + j;
}

fn d_get(r: u32, c: u32) -> Scalar {
    return diag[r * 4u + c / 4u][c % 4u];
}

fn d_set(r: u32, c: u32, v: Scalar) {
    diag[r * 4u + c / 4u][c % 4u] = v;
}

// Whether a pivot is usable: positive and not NaN. NaN is also caught from the bits of the
// value (converted to f32, which keeps a NaN a NaN), so that a compiler rewriting
// `!(d > 0)` as `d <= 0`, which is wrong for NaN, does not let it through.
fn positive(d: Scalar) -> bool {
    let bits = bitcast<u32>(f32(d)) & 0x7fffffffu;
    return d > Scalar(0) && bits <= 0x7f800000u;
}

@compute @workgroup_size(16)
fn potrf_diag(@builtin(local_invocation_index) r: u32) {
    let n = params.n;
    let kb = params.kb;
    let nb = min(NB, n - kb);
    // The first block ignores whatever info held before; later ones stop after a failure.
    if (r == 0u) {
        status = 0u;
        if (kb > 0u) {
            status = info[0];
        }
    }
    if (workgroupUniformLoad(&status) != 0u) {
        return;
    }
    // Invocation r owns row r of the block: its lower part, zeros past the diagonal.
    for (var c = 0u; c < NB; c++) {
        var v = Scalar(0);
        if (r < nb && c <= r) {
            v = a[a_index(kb + r, kb + c)];
        }
        d_set(r, c, v);
    }
    if (r == 0u) {
        pivot = d_get(0u, 0u);
    }
    var failed = 0u;
    for (var p = 0u; p < nb; p++) {
        // Barrier, load, barrier: the updates of step p - 1 are visible too.
        let d = workgroupUniformLoad(&pivot);
        if (!positive(d)) {
            failed = kb + p + 1u;
            break;
        }
        let s = sqrt(d);
        if (r == p) {
            d_set(p, p, s);
        } else if (r > p && r < nb) {
            d_set(r, p, d_get(r, p) / s);
        }
        workgroupBarrier();
        // Row r of the Schur complement, columns p + 1 ..= r, from column p of rows
        // p + 1 ..= r (scaled above by their owners).
        if (r > p && r < nb) {
            let lrp = d_get(r, p);
            for (var c = p + 1u; c <= r; c++) {
                d_set(r, c, d_get(r, c) - lrp * d_get(c, p));
            }
            if (r == p + 1u) {
                pivot = d_get(r, r);
            }
        }
    }
    // The last step ended with a barrier after its only writes (the scaled column).
    if (failed == 0u && r < nb) {
        for (var c = 0u; c <= r; c++) {
            a[a_index(kb + r, kb + c)] = d_get(r, c);
        }
    }
    if (r == 0u) {
        info[0] = failed;
    }
}

@compute @workgroup_size(64)
fn potrf_panel(
    @builtin(workgroup_id) group: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(local_invocation_index) t: u32,
) {
    if (info[0] != 0u) {
        return;
    }
    let n = params.n;
    let kb = params.kb;
    let nb = min(NB, n - kb);
    let i = kb + nb + (group.x + group.y * groups.x) * TILE + t;
    if (i >= n) {
        return;
    }
    // Row i of L in the block's columns: x[q] = (A[i, kb + q] - sum_{p < q} x[p] L[q, p])
    // / L[q, q], with L the factored diagonal block (the same for every invocation).
    var x: array<Scalar, 16>;
    for (var q = 0u; q < nb; q++) {
        var sum = a[a_index(i, kb + q)];
        for (var p = 0u; p < q; p++) {
            sum -= x[p] * a[a_index(kb + q, kb + p)];
        }
        x[q] = sum / a[a_index(kb + q, kb + q)];
        a[a_index(i, kb + q)] = x[q];
    }
}

@compute @workgroup_size(16, 16)
fn potrf_update(
    @builtin(workgroup_id) group: vec3<u32>,
    @builtin(local_invocation_id) local: vec3<u32>,
) {
    if (info[0] != 0u) {
        return;
    }
    // Tiles above the diagonal: nothing to do.
    if (group.x > group.y) {
        return;
    }
    let n = params.n;
    let kb = params.kb;
    let nb = min(NB, n - kb);
    let below = kb + nb;
    let i0 = below + group.y * TILE + 4u * local.y;
    let j0 = below + group.x * TILE + 4u * local.x;
    // Past the last row, or a micro-tile wholly above the diagonal.
    if (i0 >= n || j0 > i0 + 3u) {
        return;
    }
    // Row q of the micro-tile (row i0 + q) in acc{q}, columns j0 .. j0 + 3.
    var acc0 = vec4<Scalar>();
    var acc1 = vec4<Scalar>();
    var acc2 = vec4<Scalar>();
    var acc3 = vec4<Scalar>();
    for (var p = 0u; p < nb; p++) {
        let col = kb + p;
        var pi = vec4<Scalar>();
        var pj = vec4<Scalar>();
        for (var q = 0u; q < 4u; q++) {
            if (i0 + q < n) {
                pi[q] = a[a_index(i0 + q, col)];
            }
            if (j0 + q < n) {
                pj[q] = a[a_index(j0 + q, col)];
            }
        }
        acc0 += pi.x * pj;
        acc1 += pi.y * pj;
        acc2 += pi.z * pj;
        acc3 += pi.w * pj;
    }
    for (var q = 0u; q < 4u; q++) {
        let i = i0 + q;
        if (i >= n) {
            break;
        }
        var acc = acc0;
        if (q == 1u) {
            acc = acc1;
        } else if (q == 2u) {
            acc = acc2;
        } else if (q == 3u) {
            acc = acc3;
        }
        for (var e = 0u; e < 4u; e++) {
            let j = j0 + e;
            if (j <= i) {
                let index = a_index(i, j);
                a[index] = a[index] - acc[e];
            }
        }
    }
}
