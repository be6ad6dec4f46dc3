//! A cache-blocked GEMM with AVX-512 micro-kernels for `f32` and `f64` on x86-64.
//!
//! The algorithm is Goto's, as in BLIS and OpenBLAS. For `C = alpha A B + beta C` with `C`
//! column-major (unit row stride):
//!
//! ```text
//! for jc in columns of C, NC at a time          B panel   KC x NC  (L3)
//!   for pc in the depth, KC at a time           pack B[pc, jc] into NR-wide micro-panels
//!     for ic in rows of C, MC at a time         A block   MC x KC  (L2)
//!       pack A[ic, pc] into MR-tall micro-panels
//!       for jr in the B panel, NR at a time     B micro-panel KC x NR (L1)
//!         for ir in the A block, MR at a time
//!           micro-kernel: an MR x NR tile of C held in registers, KC rank-1 updates
//! ```
//!
//! The micro-kernel keeps `MR x NR` accumulators in the 32 `zmm` registers (f64: 16 x 14 in
//! 28 registers, f32: 32 x 12 in 24), loads `MR` elements of A per step and broadcasts `NR`
//! of B, so each step is `MR/lanes x NR` independent FMAs — enough to cover the FMA latency
//! on both FMA ports. Edges are handled by zero-padding the packed panels and masked
//! loads/stores of `C`; `beta` is applied in the write-back of the first depth block, and
//! `beta = 0` does not read `C`.
//!
//! The f64 kernel makes four steps per turn of its loop. One step is 28 FMAs, 16 loads and
//! two prefetches, and the loop's own counter and pointer updates added three more
//! instructions to each; unrolled, the FMA ports stay fuller. Its A block is 384 rows
//! (768 KiB, within a 1 MiB L2 as well as this 2 MiB one), so each B micro-panel brought into
//! L1 serves twice as many register tiles as with 192. Measured on a 2-core AVX-512 VM,
//! alternating the two builds within one process (30 rounds of a 1024³ product, and 8 of a
//! 4096² DArray GEMM on both cores): one thread +8.7% (median ratio, faster in 26 of 30), DArray
//! GEMM +13.6% (faster in 8 of 8). Unrolling alone gave +6%, a 384-row block alone +3%.
//!
//! faer's own kernels reach about 85% of what OpenBLAS does on the same AVX-512 core (its
//! blocking is chosen for the general case); this path is what lets one-thread-per-tile
//! DArray GEMM keep up with OpenBLAS's multithreaded GEMM. It runs only where the CPU has
//! AVX-512F (checked at run time), and not by default on AMD's Zen 4, where faer's kernels
//! were the faster ones ([`crate::gemm_kernel`]); elsewhere [`crate::gemm`] goes through
//! faer.
//!
//! Packing moves whole vectors: a column-major operand's micro-panel steps are masked vector
//! copies, and a row-major one's (f64) are 8 x 8 transposes in registers. Each was a call
//! into the C library's `memcpy` for every 16 elements, or a scalar gather, before; with
//! both, packing fell from about 5% of a 4096² DArray GEMM's samples to 4% (`perf record`).

use std::arch::x86_64::*;
use std::cell::RefCell;

use crate::{MatMut, MatRef, Scalar, Threads};

/// A 64-byte-aligned, 64-byte chunk of scratch memory.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Line([u8; 64]);

/// Per-thread scratch for packed panels, kept between calls: a DArray worker runs many tile
/// products in a row, and fresh megabytes per call would cost a page fault per 4 KiB. It
/// grows to the largest product the thread has run, at most `KC x NC + MC x KC` elements
/// (about 8.6 MiB for f64, 6.3 MiB for f32; 2.8 MiB for f64 tiles of 1024), and is freed
/// when the thread ends.
#[derive(Default)]
struct Scratch {
    a: Vec<Line>,
    b: Vec<Line>,
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

/// An aligned pointer to at least `elems` elements of `T` in `buf`, grown as needed.
fn reserve<T>(buf: &mut Vec<Line>, elems: usize) -> *mut T {
    let lines = (elems * size_of::<T>()).div_ceil(64);
    if buf.len() < lines {
        buf.resize(lines, Line([0; 64]));
    }
    buf.as_mut_ptr().cast()
}

/// Element `(i, j)` of a strided operand is at `ptr + i * rs + j * cs`.
#[derive(Clone, Copy)]
struct Operand<T> {
    ptr: *const T,
    rs: isize,
    cs: isize,
}

impl<T> Operand<T> {
    /// # Safety
    /// `(i, j)` must lie inside the view this was made from.
    #[inline(always)]
    unsafe fn at(self, i: usize, j: usize) -> *const T {
        // SAFETY: the caller keeps (i, j) inside the view, so the offset stays in bounds.
        unsafe { self.ptr.offset(i as isize * self.rs + j as isize * self.cs) }
    }
}

/// `C`, column-major: element `(i, j)` at `ptr + i + j * ld`.
#[derive(Clone, Copy)]
struct Out<T> {
    ptr: *mut T,
    ld: isize,
}

// SAFETY: `Operand` and `Out` are raw views used only inside one `gemm` call; the threads
// of a parallel call read the shared operands and write disjoint ranges of `C`.
unsafe impl<T: Sync> Send for Operand<T> {}
// SAFETY: as above.
unsafe impl<T: Sync> Sync for Operand<T> {}
// SAFETY: as above.
unsafe impl<T: Send> Send for Out<T> {}
// SAFETY: as above.
unsafe impl<T: Send> Sync for Out<T> {}

macro_rules! packed_gemm {
    (
        $name:ident, $t:ty, $mask:ty,
        lanes = $lanes:expr, mrv = $mrv:expr, nr = $nr:expr,
        kc = $kc:expr, mc = $mc:expr, nc = $nc:expr, unroll = $unroll:expr, pf = $pf:expr,
        $setzero:ident, $load:ident, $set1:ident, $fmadd:ident, $mul:ident,
        $maskload:ident, $maskstore:ident, $maskzload:ident
    ) => {
        mod $name {
            use super::*;

            const LANES: usize = $lanes;
            const MRV: usize = $mrv;
            pub(super) const MR: usize = LANES * MRV;
            pub(super) const NR: usize = $nr;
            const KC: usize = $kc;
            const MC: usize = $mc;
            const NC: usize = $nc;
            const PF: usize = $pf;
            const UNROLL: usize = $unroll;

            /// `C[0..m, 0..n] = alpha * Ap Bp + beta * C` for one `MR x NR` tile, `m <= MR`,
            /// `n <= NR`, from `kc` steps of packed panels; `beta = 0` does not read `C`.
            ///
            /// # Safety
            /// AVX-512F must be available; `a` holds `kc * MR` and `b` `kc * NR` elements,
            /// `a` 64-byte aligned; `c` reaches `m x n` elements with leading dimension `ldc`.
            #[target_feature(enable = "avx512f")]
            // `modulo_one`: a kernel that is not unrolled (`UNROLL = 1`) has no remainder.
            #[allow(clippy::too_many_arguments, clippy::modulo_one)]
            unsafe fn micro(
                kc: usize,
                a: *const $t,
                b: *const $t,
                c: *mut $t,
                ldc: isize,
                m: usize,
                n: usize,
                alpha: $t,
                beta: $t,
            ) {
                let mut acc = [[$setzero(); MRV]; NR];
                for j in 0..NR {
                    if j < n {
                        // SAFETY: column j < n of the tile is inside C.
                        let col = unsafe { c.offset(j as isize * ldc) };
                        _mm_prefetch::<_MM_HINT_T1>(col.cast());
                        _mm_prefetch::<_MM_HINT_T1>(col.wrapping_add(m - 1).cast());
                    }
                }
                let (mut a, mut b) = (a, b);
                // One step: a rank-1 update of the tile from `a` and `b`, `u` steps ahead.
                let step = |acc: &mut [[_; MRV]; NR], a: *const $t, b: *const $t, u: usize| {
                    // The A micro-panel streams in from L2: ask for it a few steps ahead.
                    _mm_prefetch::<_MM_HINT_T0>(a.wrapping_add((PF + u) * MR).cast());
                    _mm_prefetch::<_MM_HINT_T0>(a.wrapping_add((PF + u) * MR + LANES).cast());
                    let mut av = [$setzero(); MRV];
                    for (v, x) in av.iter_mut().enumerate() {
                        // SAFETY: the A micro-panel holds MR aligned elements per step.
                        *x = unsafe { $load(a.add(u * MR + v * LANES)) };
                    }
                    for (j, row) in acc.iter_mut().enumerate() {
                        // SAFETY: the B micro-panel holds NR elements per step.
                        let bj = $set1(unsafe { *b.add(u * NR + j) });
                        for (x, y) in row.iter_mut().zip(av) {
                            *x = $fmadd(y, bj, *x);
                        }
                    }
                };
                // UNROLL steps per turn of the loop: fewer instructions that are not FMAs.
                for _ in 0..kc / UNROLL {
                    for u in 0..UNROLL {
                        step(&mut acc, a, b, u);
                    }
                    // SAFETY: both stay within (or one past) their panels.
                    unsafe {
                        a = a.add(UNROLL * MR);
                        b = b.add(UNROLL * NR);
                    }
                }
                for _ in 0..kc % UNROLL {
                    step(&mut acc, a, b, 0);
                    // SAFETY: as above.
                    unsafe {
                        a = a.add(MR);
                        b = b.add(NR);
                    }
                }
                let alpha = $set1(alpha);
                let read_c = beta != 0.0;
                let beta = $set1(beta);
                for (j, row) in acc.iter().enumerate() {
                    if j >= n {
                        break;
                    }
                    for (v, x) in row.iter().enumerate() {
                        let rows = m.saturating_sub(v * LANES).min(LANES);
                        if rows == 0 {
                            break;
                        }
                        let mask = (u32::MAX >> (32 - rows)) as $mask;
                        // SAFETY: rows i < m of column j < n are inside C, and the mask
                        // keeps the access to them.
                        unsafe {
                            let p = c.offset(j as isize * ldc).add(v * LANES);
                            let r = if read_c {
                                $fmadd(alpha, *x, $mul(beta, $maskload($setzero(), mask, p)))
                            } else {
                                $mul(alpha, *x)
                            };
                            $maskstore(p, mask, r);
                        }
                    }
                }
            }

            /// Packs rows `r0..r0 + rows`, depth `p0..p0 + kb` of `x` into `R`-tall
            /// micro-panels at `dst`: panel after panel, each `kb` steps of `R` elements,
            /// zero-padded past `rows`. A's micro-panels are `pack::<MR>(A)`, B's
            /// `pack::<NR>(Bᵀ)`.
            ///
            /// # Safety
            /// AVX-512F must be available. The rows and depth lie inside `x`; `dst` holds
            /// `rows.div_ceil(R) * R * kb`.
            #[target_feature(enable = "avx512f")]
            unsafe fn pack<const R: usize>(
                x: Operand<$t>,
                r0: usize,
                p0: usize,
                rows: usize,
                kb: usize,
                dst: *mut $t,
            ) {
                let panels = rows.div_ceil(R);
                // SAFETY: inside the caller's bounds, as documented.
                unsafe {
                    if x.rs == 1 {
                        // Columns are contiguous: each step of a panel is R consecutive
                        // elements of one column, moved as whole vectors (masked past
                        // `rows`, which writes the padding's zeros too). As a `copy` of a
                        // length that is R or less, this was a call into the C library's
                        // memcpy for every R elements.
                        for p in 0..kb {
                            let s = x.at(r0, p0 + p);
                            for panel in 0..panels {
                                let (ib, d) = (panel * R, dst.add(panel * R * kb + p * R));
                                let have = rows - ib;
                                for v in (0..R).step_by(LANES) {
                                    let width = (R - v).min(LANES);
                                    let keep = (u32::MAX >> (32 - width)) as $mask;
                                    let n = have.saturating_sub(v).min(width);
                                    let load = (u32::MAX.checked_shr(32 - n as u32).unwrap_or(0))
                                        as $mask;
                                    let vals = $maskzload(load, s.wrapping_add(ib + v));
                                    $maskstore(d.add(v), keep, vals);
                                }
                            }
                        }
                        return;
                    }
                    if rows % R != 0 {
                        std::ptr::write_bytes(dst.add((panels - 1) * R * kb), 0, R * kb);
                    }
                    for panel in 0..panels {
                        let (ib, d) = (panel * R, dst.add(panel * R * kb));
                        if ib + R <= rows {
                            let src: [*const $t; R] =
                                std::array::from_fn(|i| x.at(r0 + ib + i, p0));
                            // Rows are contiguous along the depth: whole vectors of each,
                            // transposed in registers.
                            let done = if x.cs == 1 {
                                <$t as PackRows>::pack_rows::<R>(&src, kb, d)
                            } else {
                                0
                            };
                            // R rows read side by side along the depth, each written R
                            // apart.
                            for p in done..kb {
                                let step = p as isize * x.cs;
                                for (i, s) in src.iter().enumerate() {
                                    *d.add(p * R + i) = *s.offset(step);
                                }
                            }
                        } else {
                            for i in 0..rows - ib {
                                let s = x.at(r0 + ib + i, p0);
                                for p in 0..kb {
                                    *d.add(p * R + i) = *s.offset(p as isize * x.cs);
                                }
                            }
                        }
                    }
                }
            }

            /// `C = alpha A B + beta C` on one thread, `A` `m x k`, `B` `k x n`, `k > 0`.
            ///
            /// # Safety
            /// AVX-512F must be available and the views valid for these shapes, `C` not
            /// overlapping `A` or `B`.
            pub(super) unsafe fn run(x: Args<$t>) {
                let Args {
                    m,
                    n,
                    k,
                    alpha,
                    a,
                    b,
                    beta,
                    c,
                } = x;
                let bt = Operand {
                    rs: b.cs,
                    cs: b.rs,
                    ..b
                };
                // The borrow lasts for sequential code only (no rayon call inside), so a
                // thread never re-enters it.
                SCRATCH.with_borrow_mut(|s| {
                    let nc_max = NC.min(n.next_multiple_of(NR));
                    let kc_max = KC.min(k);
                    let bp: *mut $t = reserve::<$t>(&mut s.b, kc_max * nc_max);
                    let ap: *mut $t =
                        reserve::<$t>(&mut s.a, kc_max * MC.min(m.next_multiple_of(MR)));
                    for jc in (0..n).step_by(NC) {
                        let nb = NC.min(n - jc);
                        for pc in (0..k).step_by(KC) {
                            let kb = KC.min(k - pc);
                            let beta = if pc == 0 { beta } else { 1.0 };
                            // SAFETY: the blocks lie inside the views and the scratch was
                            // sized for the largest block.
                            unsafe { pack::<NR>(bt, jc, pc, nb, kb, bp) };
                            for ic in (0..m).step_by(MC) {
                                let mb = MC.min(m - ic);
                                // SAFETY: as above.
                                unsafe { pack::<MR>(a, ic, pc, mb, kb, ap) };
                                for jr in (0..nb).step_by(NR) {
                                    for ir in (0..mb).step_by(MR) {
                                        // SAFETY: the tile lies inside C; the panels were
                                        // packed above with kb steps each; the caller
                                        // checked for AVX-512F.
                                        unsafe {
                                            let cp = c.ptr.offset(
                                                (ic + ir) as isize + (jc + jr) as isize * c.ld,
                                            );
                                            micro(
                                                kb,
                                                ap.add(ir * kb),
                                                bp.add(jr * kb),
                                                cp,
                                                c.ld,
                                                MR.min(mb - ir),
                                                NR.min(nb - jr),
                                                alpha,
                                                beta,
                                            );
                                        }
                                    }
                                }
                            }
                        }
                    }
                });
            }
        }
    };
}

/// Packing a full micro-panel whose rows are contiguous along the depth (B's columns, when
/// B is stored by columns), a vector of each row at a time, transposed in registers.
trait PackRows: Sized {
    /// Writes the first steps of the `R`-row micro-panel at `d` (`kb` steps of `R`
    /// elements) from rows `src` (each `kb` contiguous elements) and returns how many
    /// steps it wrote; the caller writes the rest.
    ///
    /// # Safety
    /// AVX-512F must be available; each row holds `kb` elements and `d` `R * kb`.
    unsafe fn pack_rows<const R: usize>(src: &[*const Self; R], kb: usize, d: *mut Self) -> usize;
}

impl PackRows for f32 {
    unsafe fn pack_rows<const R: usize>(_: &[*const f32; R], _: usize, _: *mut f32) -> usize {
        0
    }
}

impl PackRows for f64 {
    unsafe fn pack_rows<const R: usize>(src: &[*const f64; R], kb: usize, d: *mut f64) -> usize {
        if R > 16 {
            return 0;
        }
        // SAFETY: forwarded from the caller; R is at most 16.
        unsafe { pack_rows_f64(src, kb, d) }
    }
}

/// [`PackRows::pack_rows`] for `f64`, `R <= 16`: eight steps at a time, rows in groups of
/// eight, each group an 8 x 8 transpose (missing rows of the last group are zeros, and not
/// written).
///
/// # Safety
/// As [`PackRows::pack_rows`], and `R <= 16`.
#[target_feature(enable = "avx512f")]
unsafe fn pack_rows_f64<const R: usize>(src: &[*const f64; R], kb: usize, d: *mut f64) -> usize {
    // Lane pairs, then 128-bit pairs, then 256-bit halves, as `permutex2var` indices.
    let lo2 = _mm512_setr_epi64(0, 1, 8, 9, 4, 5, 12, 13);
    let hi2 = _mm512_setr_epi64(2, 3, 10, 11, 6, 7, 14, 15);
    let lo4 = _mm512_setr_epi64(0, 1, 2, 3, 8, 9, 10, 11);
    let hi4 = _mm512_setr_epi64(4, 5, 6, 7, 12, 13, 14, 15);
    let steps = kb / 8 * 8;
    for p in (0..steps).step_by(8) {
        for g in (0..R).step_by(8) {
            let width = (R - g).min(8);
            let mask = (u32::MAX >> (32 - width)) as __mmask8;
            // SAFETY: rows g..g + width exist and hold steps p..p + 8.
            let r: [__m512d; 8] = std::array::from_fn(|i| {
                if i < width {
                    unsafe { _mm512_loadu_pd(src[g + i].add(p)) }
                } else {
                    _mm512_setzero_pd()
                }
            });
            let t: [__m512d; 8] = std::array::from_fn(|i| {
                let (a, b) = (r[i & !1], r[i | 1]);
                if i % 2 == 0 {
                    _mm512_unpacklo_pd(a, b)
                } else {
                    _mm512_unpackhi_pd(a, b)
                }
            });
            // s[0] = rows 0..4 at steps 0 | 4, s[1] at 2 | 6, s[2] at 1 | 5, s[3] at 3 | 7;
            // s[4..8] the same for rows 4..8.
            let s: [__m512d; 8] = std::array::from_fn(|i| {
                let (h, j) = (i / 4 * 4, i % 4);
                let (a, b) = (t[h + j / 2], t[h + j / 2 + 2]);
                _mm512_permutex2var_pd(a, if j % 2 == 0 { lo2 } else { hi2 }, b)
            });
            // Step q of the eight: rows 0..4 from s[..4], rows 4..8 from s[4..].
            for (q, (k, half)) in [
                (0, lo4),
                (2, lo4),
                (1, lo4),
                (3, lo4),
                (0, hi4),
                (2, hi4),
                (1, hi4),
                (3, hi4),
            ]
            .into_iter()
            .enumerate()
            {
                let out = _mm512_permutex2var_pd(s[k], half, s[k + 4]);
                // SAFETY: step p + q of the panel, rows g..g + width, is inside `d`.
                unsafe { _mm512_mask_storeu_pd(d.add((p + q) * R + g), mask, out) };
            }
        }
    }
    steps
}

packed_gemm!(
    f64k,
    f64,
    __mmask8,
    lanes = 8,
    mrv = 2,
    nr = 14,
    kc = 256,
    mc = 384,
    nc = 4032,
    unroll = 4,
    pf = 4,
    _mm512_setzero_pd,
    _mm512_load_pd,
    _mm512_set1_pd,
    _mm512_fmadd_pd,
    _mm512_mul_pd,
    _mm512_mask_loadu_pd,
    _mm512_mask_storeu_pd,
    _mm512_maskz_loadu_pd
);

packed_gemm!(
    f32k,
    f32,
    __mmask16,
    lanes = 16,
    mrv = 2,
    nr = 12,
    kc = 384,
    mc = 256,
    nc = 4032,
    unroll = 1,
    pf = 4,
    _mm512_setzero_ps,
    _mm512_load_ps,
    _mm512_set1_ps,
    _mm512_fmadd_ps,
    _mm512_mul_ps,
    _mm512_mask_loadu_ps,
    _mm512_mask_storeu_ps,
    _mm512_maskz_loadu_ps
);

/// Whether this CPU runs the packed kernels.
pub(crate) fn available() -> bool {
    std::arch::is_x86_feature_detected!("avx512f")
}

/// One call's arguments, with `C` column-major and `k > 0`.
#[derive(Clone, Copy)]
struct Args<T> {
    m: usize,
    n: usize,
    k: usize,
    alpha: T,
    a: Operand<T>,
    b: Operand<T>,
    beta: T,
    c: Out<T>,
}

// SAFETY: as for `Operand` and `Out`, whose use it bundles.
unsafe impl<T: Send + Sync> Sync for Args<T> {}

/// The element types with a packed kernel.
trait Packed: Copy + Send + Sync + 'static {
    /// The width of a `B` micro-panel, the unit a parallel call splits `C`'s columns by.
    const NR: usize;
    /// The height of an `A` micro-panel, the unit a parallel call splits `C`'s rows by.
    const MR: usize;
    /// The call on the calling thread.
    ///
    /// # Safety
    /// AVX-512F must be available and the views valid for the shapes, `C` not overlapping
    /// `A` or `B`.
    unsafe fn run_seq(x: Args<Self>);
}

impl Packed for f64 {
    const NR: usize = f64k::NR;
    const MR: usize = f64k::MR;
    unsafe fn run_seq(x: Args<f64>) {
        // SAFETY: forwarded from the caller.
        unsafe { f64k::run(x) }
    }
}

impl Packed for f32 {
    const NR: usize = f32k::NR;
    const MR: usize = f32k::MR;
    unsafe fn run_seq(x: Args<f32>) {
        // SAFETY: forwarded from the caller.
        unsafe { f32k::run(x) }
    }
}

/// Runs `x` on up to `threads` threads of rayon's global pool (`0`: all of them).
///
/// # Safety
/// As [`Packed::run_seq`].
unsafe fn run<P: Packed>(x: Args<P>, threads: usize) {
    let threads = match threads {
        0 => rayon::current_num_threads(),
        t => t,
    };
    // Each thread gets at least this many flops, or fewer threads run: below it, handing
    // the work to another thread costs more than it saves (the small products at the
    // bottom of `getrf`'s recursion, 4096x16 times 16x16, take a few microseconds).
    const MIN_FLOPS: usize = 4 << 20;
    let threads = threads.min((2 * x.m * x.n * x.k / MIN_FLOPS).max(1));
    // One contiguous range of C's columns per thread, whole micro-panels each, or one range
    // of its rows, whole register tiles each, when every thread gets several of them;
    // otherwise one thread. Each thread packs all of the operand that is not split, so
    // the split is along the longer side: a tall product (a panel's update in `getrf`,
    // 3840x256 times 256x256) split by columns packed all of A on every thread, and ran
    // slower on two threads than on one.
    let split = |len: usize, unit: usize| {
        let per = len.div_ceil(threads).next_multiple_of(unit);
        (threads > 1 && per < len && per >= 4 * unit).then_some(per)
    };
    let (cols, rows) = (split(x.n, P::NR), split(x.m, P::MR));
    let prefer_rows = x.m > x.n && rows.is_some();
    let (by_rows, per) = match (cols, rows) {
        (_, Some(per)) if prefer_rows => (true, per),
        (Some(per), _) => (false, per),
        (None, Some(per)) => (true, per),
        (None, None) => {
            // SAFETY: forwarded from the caller.
            unsafe { P::run_seq(x) };
            return;
        }
    };
    use rayon::prelude::*;
    let starts: Vec<usize> = (0..if by_rows { x.m } else { x.n }).step_by(per).collect();
    // A `move` closure over a reference captures the whole `Args`, which is `Sync`, rather
    // than its raw-pointer fields one by one.
    let whole = &x;
    starts.into_par_iter().for_each(move |s0| {
        let x = *whole;
        // SAFETY: as the caller's, on rows s0.. of A and C or columns s0.. of B and C; the
        // threads' ranges are disjoint, so each writes its own part of C.
        unsafe {
            let part = if by_rows {
                Args {
                    m: per.min(x.m - s0),
                    a: Operand {
                        ptr: x.a.at(s0, 0),
                        ..x.a
                    },
                    c: Out {
                        ptr: x.c.ptr.add(s0),
                        ..x.c
                    },
                    ..x
                }
            } else {
                Args {
                    n: per.min(x.n - s0),
                    b: Operand {
                        ptr: x.b.at(0, s0),
                        ..x.b
                    },
                    c: Out {
                        ptr: x.c.ptr.offset(s0 as isize * x.c.ld),
                        ..x.c
                    },
                    ..x
                }
            };
            P::run_seq(part)
        }
    });
}

/// `C = alpha A B + beta C` through the packed kernels, if this CPU has them and `C` has a
/// unit stride in either dimension; `false` (nothing done) otherwise. `A` is `m x k` with
/// `k > 0`, `B` `k x n`, `C` `m x n`, shapes already checked; `beta = 0` does not read `C`.
pub(crate) fn gemm<T: Scalar>(
    alpha: T,
    a: MatRef<'_, T>,
    b: MatRef<'_, T>,
    beta: T,
    mut c: MatMut<'_, T>,
    threads: Threads,
) -> bool {
    if !available() {
        return false;
    }
    // Column-major C as it is; row-major C as the column-major Cᵀ = Bᵀ Aᵀ.
    let (a, b, m, n, ld) = if c.row_stride() == 1 {
        (a, b, c.rows(), c.cols(), c.col_stride())
    } else if c.col_stride() == 1 {
        (b.t(), a.t(), c.cols(), c.rows(), c.row_stride())
    } else {
        return false;
    };
    let operand = |x: MatRef<'_, T>| Operand {
        ptr: x.as_ptr(),
        rs: x.row_stride(),
        cs: x.col_stride(),
    };
    let args = Args {
        m,
        n,
        k: a.cols(),
        alpha,
        a: operand(a),
        b: operand(b),
        beta,
        c: Out {
            ptr: c.as_mut_ptr(),
            ld,
        },
    };
    let args: &dyn std::any::Any = &args;
    // SAFETY: AVX-512F was checked above; the views are valid for their shapes, and C, a
    // `MatMut`, does not overlap the inputs.
    unsafe {
        if let Some(&x) = args.downcast_ref::<Args<f64>>() {
            run(x, threads.0);
        } else if let Some(&x) = args.downcast_ref::<Args<f32>>() {
            run(x, threads.0);
        } else {
            return false;
        }
    }
    true
}
