//! The dense kernels against naive triple loops in f64: sizes on both sides of the block
//! edges of the underlying libraries (1, 15, 16, 17, 127, 128, 129) and non-square shapes,
//! every transpose, triangle, side and accumulation mode, f32 and f64, several layouts.

use dagger_cpu::{
    gemm, gemm_with, mirror, potrf, syrk, trsm, Accum, Diag, GemmKernel, MatMut, MatRef,
    PotrfError, Scalar, Side, Threads, Trans, Triangle,
};

const SIZES: [usize; 7] = [1, 15, 16, 17, 127, 128, 129];
const TRANS: [Trans; 2] = [Trans::No, Trans::Yes];
const TRIANGLES: [Triangle; 2] = [Triangle::Lower, Triangle::Upper];

/// xorshift64*: a seeded, dependency-free generator of test data.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    /// Uniform in [-1, 1).
    fn next(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let bits = self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11;
        bits as f64 / (1u64 << 52) as f64 - 1.0
    }

    fn vec<T: Scalar>(&mut self, len: usize) -> Vec<T> {
        (0..len).map(|_| T::from_f64_rounded(self.next())).collect()
    }
}

/// A dense row-major matrix in f64 for references.
#[derive(Clone, Debug)]
struct Dense {
    rows: usize,
    cols: usize,
    data: Vec<f64>,
}

impl Dense {
    fn zeros(rows: usize, cols: usize) -> Self {
        Self {
            rows,
            cols,
            data: vec![0.0; rows * cols],
        }
    }

    fn from_view<T: Scalar>(m: MatRef<'_, T>) -> Self {
        let mut d = Self::zeros(m.rows(), m.cols());
        for i in 0..m.rows() {
            for j in 0..m.cols() {
                d.data[i * m.cols() + j] = m.get(i, j).to_f64_exact();
            }
        }
        d
    }

    fn at(&self, i: usize, j: usize) -> f64 {
        self.data[i * self.cols + j]
    }

    fn at_mut(&mut self, i: usize, j: usize) -> &mut f64 {
        &mut self.data[i * self.cols + j]
    }

    fn op(&self, t: Trans) -> Self {
        match t {
            Trans::No => self.clone(),
            Trans::Yes => {
                let mut r = Self::zeros(self.cols, self.rows);
                for i in 0..self.rows {
                    for j in 0..self.cols {
                        *r.at_mut(j, i) = self.at(i, j);
                    }
                }
                r
            }
        }
    }

    fn matmul(&self, other: &Self) -> Self {
        assert_eq!(self.cols, other.rows);
        let mut r = Self::zeros(self.rows, other.cols);
        for i in 0..self.rows {
            for p in 0..self.cols {
                let a = self.at(i, p);
                for j in 0..other.cols {
                    *r.at_mut(i, j) += a * other.at(p, j);
                }
            }
        }
        r
    }

    /// The triangular matrix `triangle` of `self` holds (unit diagonal under `Diag::Unit`).
    fn triangular(&self, triangle: Triangle, diag: Diag) -> Self {
        let mut r = Self::zeros(self.rows, self.cols);
        for i in 0..self.rows {
            for j in 0..self.cols {
                if i == j && diag == Diag::Unit {
                    *r.at_mut(i, j) = 1.0;
                } else if triangle.contains(i, j) {
                    *r.at_mut(i, j) = self.at(i, j);
                }
            }
        }
        r
    }
}

/// Frobenius norm of `got - want` over the elements `keep` selects, relative to `want`'s.
fn rel_error<T: Scalar>(
    got: MatRef<'_, T>,
    want: &Dense,
    keep: impl Fn(usize, usize) -> bool,
) -> f64 {
    assert_eq!((got.rows(), got.cols()), (want.rows, want.cols));
    let (mut diff, mut norm) = (0.0f64, 0.0f64);
    for i in 0..want.rows {
        for j in 0..want.cols {
            if keep(i, j) {
                let (g, w) = (got.get(i, j).to_f64_exact(), want.at(i, j));
                diff += (g - w) * (g - w);
                norm += w * w;
            }
        }
    }
    if norm == 0.0 {
        diff.sqrt()
    } else {
        (diff / norm).sqrt()
    }
}

fn tolerance<T: Scalar>() -> f64 {
    if T::NAME == "f32" {
        1e-5
    } else {
        1e-12
    }
}

fn check<T: Scalar>(what: &str, got: MatRef<'_, T>, want: &Dense) {
    check_where(what, got, want, |_, _| true);
}

fn check_where<T: Scalar>(
    what: &str,
    got: MatRef<'_, T>,
    want: &Dense,
    keep: impl Fn(usize, usize) -> bool,
) {
    let err = rel_error(got, want, keep);
    assert!(
        err <= tolerance::<T>(),
        "{what} ({}): relative error {err:e} above {:e}",
        T::NAME,
        tolerance::<T>()
    );
}

fn accums<T: Scalar>() -> [Accum<T>; 3] {
    [
        Accum::Replace,
        Accum::Add,
        Accum::Scale(T::from_f64_rounded(-0.75)),
    ]
}

/// One gemm against the reference; `a`, `b` are stored so that op(a) is m x k, op(b) k x n.
fn gemm_case<T: Scalar>(rng: &mut Rng, m: usize, n: usize, k: usize, ta: Trans, tb: Trans) {
    gemm_case_on::<T>(rng, (m, n, k), ta, tb, Threads::SEQ);
}

/// As [`gemm_case`], on `threads`.
fn gemm_case_on<T: Scalar>(
    rng: &mut Rng,
    (m, n, k): (usize, usize, usize),
    ta: Trans,
    tb: Trans,
    threads: Threads,
) {
    let (ar, ac) = ta.apply((m, k));
    let (br, bc) = tb.apply((k, n));
    let a: Vec<T> = rng.vec(ar * ac);
    let b: Vec<T> = rng.vec(br * bc);
    let (da, db) = (
        Dense::from_view(MatRef::new(&a, ar, ac)),
        Dense::from_view(MatRef::new(&b, br, bc)),
    );
    let product = da.op(ta).matmul(&db.op(tb));
    let alpha = T::from_f64_rounded(1.5);
    for accum in accums::<T>() {
        let c0: Vec<T> = rng.vec(m * n);
        let mut want = Dense::from_view(MatRef::new(&c0, m, n));
        for (w, p) in want.data.iter_mut().zip(&product.data) {
            let beta = accum.beta().to_f64_exact();
            *w = alpha.to_f64_exact() * p + if beta == 0.0 { 0.0 } else { beta * *w };
        }
        // Every kernel this build and CPU have, whichever `gemm` chose here.
        for kernel in GemmKernel::ALL.into_iter().filter(|k| k.available()) {
            let mut c = c0.clone();
            if matches!(accum, Accum::Replace) {
                c.fill(T::from_f64_rounded(f64::NAN)); // Replace must not read C
            }
            gemm_with(
                kernel,
                ta,
                tb,
                alpha,
                MatRef::new(&a, ar, ac),
                MatRef::new(&b, br, bc),
                accum,
                MatMut::new(&mut c, m, n),
                threads,
            );
            check(
                &format!("gemm {m}x{n}x{k} {ta:?} {tb:?} {accum:?} {threads:?} on {kernel}"),
                MatRef::new(&c, m, n),
                &want,
            );
        }
    }
}

fn gemm_all<T: Scalar>(seed: u64) {
    let mut rng = Rng::new(seed);
    let mut shapes: Vec<(usize, usize, usize)> = SIZES.iter().map(|&s| (s, s, s)).collect();
    shapes.extend([
        (17, 129, 1),
        (128, 15, 127),
        (1, 129, 16),
        (129, 1, 17),
        (3, 5, 7),
        (16, 17, 129),
    ]);
    for (m, n, k) in shapes {
        for ta in TRANS {
            for tb in TRANS {
                gemm_case::<T>(&mut rng, m, n, k, ta, tb);
            }
        }
    }
}

#[test]
fn gemm_f32() {
    gemm_all::<f32>(1);
}

#[test]
fn gemm_f64() {
    gemm_all::<f64>(2);
}

/// Shapes past the cache blocks of the packed x86-64 kernel (several depth blocks, so
/// `beta` must act once, the last of a depth its unrolled loop does not divide; several
/// row blocks, in either orientation of `C`; two column panels of `B`), on one thread and
/// split over several.
fn gemm_blocks<T: Scalar>(seed: u64) {
    let mut rng = Rng::new(seed);
    for shape in [
        (300, 290, 803),
        (810, 300, 259),
        (300, 810, 6),
        (20, 4100, 3),
        (7, 9, 1000),
    ] {
        for ta in TRANS {
            for tb in TRANS {
                gemm_case_on::<T>(&mut rng, shape, ta, tb, Threads::SEQ);
            }
        }
    }
    for threads in [Threads(2), Threads(3), Threads(0)] {
        gemm_case_on::<T>(&mut rng, (129, 301, 260), Trans::No, Trans::Yes, threads);
        gemm_case_on::<T>(&mut rng, (301, 129, 130), Trans::Yes, Trans::No, threads);
        // Too few columns of one orientation of C to share, or many more rows than columns
        // (a panel update): split along the longer side. Each has enough work for several
        // threads (products of under 4 MFLOP a thread run on fewer).
        gemm_case_on::<T>(&mut rng, (20, 700, 300), Trans::No, Trans::No, threads);
        gemm_case_on::<T>(&mut rng, (700, 20, 300), Trans::No, Trans::No, threads);
        gemm_case_on::<T>(&mut rng, (1500, 64, 64), Trans::No, Trans::No, threads);
    }
}

#[test]
fn gemm_across_cache_blocks_f32() {
    gemm_blocks::<f32>(11);
}

#[test]
fn gemm_across_cache_blocks_f64() {
    gemm_blocks::<f64>(12);
}

#[test]
fn gemm_with_zero_alpha_does_not_read_a_or_b() {
    let a = [f64::INFINITY, f64::NAN, 1.0, 2.0];
    let mut c = [1.0f64, 2.0, 3.0, 4.0];
    gemm(
        Trans::No,
        Trans::No,
        0.0,
        MatRef::new(&a, 2, 2),
        MatRef::new(&a, 2, 2),
        Accum::Scale(3.0),
        MatMut::new(&mut c, 2, 2),
        Threads::SEQ,
    );
    assert_eq!(c, [3.0, 6.0, 9.0, 12.0]);
}

#[test]
fn syrk_with_zero_alpha_does_not_read_a() {
    let a = [f32::INFINITY, f32::NAN, 1.0, 2.0];
    let mut c = [1.0f32, 2.0, 3.0, 4.0];
    syrk(
        Triangle::Lower,
        Trans::No,
        0.0,
        MatRef::new(&a, 2, 2),
        Accum::Scale(2.0),
        MatMut::new(&mut c, 2, 2),
        Threads::SEQ,
    );
    assert_eq!(c, [2.0, 2.0, 6.0, 8.0]); // lower triangle scaled, upper untouched
}

#[test]
fn gemm_from_many_rayon_tasks_at_once() {
    // Products started from rayon tasks while others split over the same pool: each thread
    // packs into scratch of its own, whichever product it is working for.
    use rayon::prelude::*;
    let n = 200;
    let mut rng = Rng::new(21);
    let a: Vec<f64> = rng.vec(n * n);
    let b: Vec<f64> = rng.vec(n * n);
    let want =
        Dense::from_view(MatRef::new(&a, n, n)).matmul(&Dense::from_view(MatRef::new(&b, n, n)));
    let results: Vec<Vec<f64>> = (0..8)
        .into_par_iter()
        .map(|_| {
            let mut c = vec![0.0; n * n];
            gemm(
                Trans::No,
                Trans::No,
                1.0,
                MatRef::new(&a, n, n),
                MatRef::new(&b, n, n),
                Accum::Replace,
                MatMut::new(&mut c, n, n),
                Threads(0),
            );
            c
        })
        .collect();
    for c in &results {
        check("gemm inside rayon tasks", MatRef::new(c, n, n), &want);
    }
}

#[test]
fn gemm_with_empty_inner_dimension_only_scales() {
    let mut c = [1.0f64, 2.0, 3.0, 4.0];
    let a: [f64; 0] = [];
    gemm(
        Trans::No,
        Trans::No,
        1.0,
        MatRef::new(&a, 2, 0),
        MatRef::new(&a, 0, 2),
        Accum::Scale(2.0),
        MatMut::new(&mut c, 2, 2),
        Threads::SEQ,
    );
    assert_eq!(c, [2.0, 4.0, 6.0, 8.0]);
    gemm(
        Trans::No,
        Trans::No,
        1.0,
        MatRef::new(&a, 2, 0),
        MatRef::new(&a, 0, 2),
        Accum::Replace,
        MatMut::new(&mut c, 2, 2),
        Threads::SEQ,
    );
    assert_eq!(c, [0.0; 4]);
}

/// Leading dimensions, ndarray views, column-major and transposed views, and threads.
fn gemm_layouts<T: Scalar>(seed: u64) {
    let mut rng = Rng::new(seed);
    let (m, n, k) = (33, 20, 17);
    // A is the 33x17 block at column 3 of a 33x24 row-major matrix.
    let big_a: Vec<T> = rng.vec(m * 24);
    let a = MatRef::with_ld(&big_a[3..], m, k, 24);
    // B is k x n stored column-major (an ndarray transposed view).
    let b_store = ndarray::Array2::from_shape_vec((n, k), rng.vec::<T>(n * k)).unwrap();
    let b = MatRef::from(b_store.t());
    let want = Dense::from_view(a).matmul(&Dense::from_view(b));
    for threads in [Threads::SEQ, Threads(2)] {
        // C column-major: the transposed view of an n x m row-major array.
        let mut c_store = ndarray::Array2::<T>::zeros((n, m));
        gemm(
            Trans::No,
            Trans::No,
            T::from_f64_rounded(1.0),
            a,
            b,
            Accum::Replace,
            c_store.view_mut().reversed_axes(),
            threads,
        );
        check("gemm column-major C", MatRef::from(c_store.t()), &want);
        // C with a leading dimension inside a larger buffer, whose padding stays untouched.
        let mut c_big = vec![T::from_f64_rounded(9.0); m * 25];
        gemm(
            Trans::No,
            Trans::No,
            T::from_f64_rounded(1.0),
            a,
            b,
            Accum::Replace,
            MatMut::with_ld(&mut c_big, m, n, 25),
            threads,
        );
        check("gemm C with ld", MatRef::with_ld(&c_big, m, n, 25), &want);
        for i in 0..m {
            for j in n..25 {
                if i * 25 + j < c_big.len() {
                    assert_eq!(
                        c_big[i * 25 + j],
                        T::from_f64_rounded(9.0),
                        "padding ({i}, {j})"
                    );
                }
            }
        }
    }
    // A negatively strided view (rows reversed) still works.
    let flipped = ndarray::Array2::from_shape_vec((k, n), rng.vec::<T>(k * n)).unwrap();
    let rev = flipped.slice(ndarray::s![..;-1, ..]);
    let want = Dense::from_view(a).matmul(&Dense::from_view(MatRef::from(rev)));
    let mut c = ndarray::Array2::<T>::zeros((m, n));
    gemm(
        Trans::No,
        Trans::No,
        T::from_f64_rounded(1.0),
        a,
        rev,
        Accum::Replace,
        &mut c,
        Threads::SEQ,
    );
    check("gemm negative stride", MatRef::from(&c), &want);
}

#[test]
fn gemm_layouts_f32() {
    gemm_layouts::<f32>(3);
}

#[test]
fn gemm_layouts_f64() {
    gemm_layouts::<f64>(4);
}

#[test]
#[should_panic(expected = "op(A) is 2x3, op(B) is 2x2 and C is 2x2")]
fn gemm_shape_mismatch_panics_naming_shapes() {
    let (a, b, mut c) = ([0.0f32; 6], [0.0f32; 4], [0.0f32; 4]);
    gemm(
        Trans::No,
        Trans::No,
        1.0,
        MatRef::new(&a, 2, 3),
        MatRef::new(&b, 2, 2),
        Accum::Replace,
        MatMut::new(&mut c, 2, 2),
        Threads::SEQ,
    );
}

fn syrk_all<T: Scalar>(seed: u64) {
    let mut rng = Rng::new(seed);
    let mut shapes: Vec<(usize, usize)> = SIZES.iter().map(|&s| (s, s)).collect();
    shapes.extend([(17, 129), (129, 16), (1, 17), (15, 1)]);
    for (n, k) in shapes {
        for op in TRANS {
            let (ar, ac) = op.apply((n, k));
            let a: Vec<T> = rng.vec(ar * ac);
            let da = Dense::from_view(MatRef::new(&a, ar, ac)).op(op);
            let product = da.matmul(&da.op(Trans::Yes));
            for triangle in TRIANGLES {
                for accum in accums::<T>() {
                    let c0: Vec<T> = rng.vec(n * n);
                    let mut want = Dense::from_view(MatRef::new(&c0, n, n));
                    let beta = accum.beta().to_f64_exact();
                    for (w, p) in want.data.iter_mut().zip(&product.data) {
                        *w = -p + if beta == 0.0 { 0.0 } else { beta * *w };
                    }
                    let mut c = c0.clone();
                    syrk(
                        triangle,
                        op,
                        T::from_f64_rounded(-1.0),
                        MatRef::new(&a, ar, ac),
                        accum,
                        MatMut::new(&mut c, n, n),
                        Threads::SEQ,
                    );
                    let what = format!("syrk n={n} k={k} {triangle:?} {op:?} {accum:?}");
                    check_where(&what, MatRef::new(&c, n, n), &want, |i, j| {
                        triangle.contains(i, j)
                    });
                    for i in 0..n {
                        for j in 0..n {
                            if !triangle.contains(i, j) {
                                assert_eq!(c[i * n + j], c0[i * n + j], "{what}: ({i}, {j})");
                            }
                        }
                    }
                    mirror(triangle, MatMut::new(&mut c, n, n));
                    let mut full = want.clone();
                    for i in 0..n {
                        for j in 0..n {
                            if !triangle.contains(i, j) {
                                *full.at_mut(i, j) = want.at(j, i);
                            }
                        }
                    }
                    check(&format!("{what} mirrored"), MatRef::new(&c, n, n), &full);
                }
            }
        }
    }
}

#[test]
fn syrk_f32() {
    syrk_all::<f32>(5);
}

#[test]
fn syrk_f64() {
    syrk_all::<f64>(6);
}

/// A = M Mᵀ + n I.
fn spd(rng: &mut Rng, n: usize) -> Dense {
    let mut m = Dense::zeros(n, n);
    m.data.iter_mut().for_each(|x| *x = rng.next());
    let mut a = m.matmul(&m.op(Trans::Yes));
    for i in 0..n {
        *a.at_mut(i, i) += n as f64;
    }
    a
}

fn to_vec<T: Scalar>(d: &Dense) -> Vec<T> {
    d.data.iter().map(|&x| T::from_f64_rounded(x)).collect()
}

fn potrf_all<T: Scalar>(seed: u64) {
    let mut rng = Rng::new(seed);
    for n in SIZES.into_iter().chain([2, 64, 200]) {
        let a = spd(&mut rng, n);
        for triangle in TRIANGLES {
            let mut f = to_vec::<T>(&a);
            // The other strict triangle must be neither read nor written.
            let sentinel = T::from_f64_rounded(f64::NAN);
            for i in 0..n {
                for j in 0..n {
                    if !triangle.contains(i, j) {
                        f[i * n + j] = sentinel;
                    }
                }
            }
            potrf(triangle, MatMut::new(&mut f, n, n)).unwrap();
            for i in 0..n {
                for j in 0..n {
                    if !triangle.contains(i, j) {
                        assert!(
                            f[i * n + j].to_f64_exact().is_nan(),
                            "n={n}: ({i}, {j}) written"
                        );
                    }
                }
            }
            let factor =
                Dense::from_view(MatRef::new(&f, n, n)).triangular(triangle, Diag::NonUnit);
            let back = match triangle {
                Triangle::Lower => factor.matmul(&factor.op(Trans::Yes)),
                Triangle::Upper => factor.op(Trans::Yes).matmul(&factor),
            };
            let original = Dense::from_view(MatRef::new(&to_vec::<T>(&a), n, n));
            check(
                &format!("potrf n={n} {triangle:?}"),
                MatRef::new(&to_vec::<T>(&back), n, n),
                &original,
            );
        }
    }
}

#[test]
fn potrf_reproduces_spd_f32() {
    potrf_all::<f32>(7);
}

#[test]
fn potrf_reproduces_spd_f64() {
    potrf_all::<f64>(8);
}

fn potrf_fails_at<T: Scalar>(seed: u64) {
    let mut rng = Rng::new(seed);
    for n in [1usize, 17, 129] {
        for pivot in [0, n / 2, n - 1] {
            let mut a = spd(&mut rng, n);
            // With A[p][p] = 0 the p-th pivot is 0 - |l|² < 0 (or 0 for p = 0); the earlier
            // ones are unchanged and positive.
            *a.at_mut(pivot, pivot) = if pivot == 0 { -1.0 } else { 0.0 };
            for triangle in TRIANGLES {
                let mut f = to_vec::<T>(&a);
                let err = potrf(triangle, MatMut::new(&mut f, n, n)).unwrap_err();
                assert_eq!(
                    err,
                    PotrfError::NotPositiveDefinite { pivot },
                    "n={n} {triangle:?}"
                );
                assert!(err.to_string().contains(&format!("pivot {pivot}")), "{err}");
            }
        }
    }
}

#[test]
fn potrf_names_the_failing_pivot_f32() {
    potrf_fails_at::<f32>(9);
}

#[test]
fn potrf_names_the_failing_pivot_f64() {
    potrf_fails_at::<f64>(10);
}

fn trsm_all<T: Scalar>(seed: u64) {
    let mut rng = Rng::new(seed);
    for (m, n) in [(1, 1), (17, 15), (16, 129), (129, 17), (128, 128)] {
        for side in [Side::Left, Side::Right] {
            let na = if side == Side::Left { m } else { n };
            for triangle in TRIANGLES {
                for op in TRANS {
                    for diag in [Diag::NonUnit, Diag::Unit] {
                        // Well conditioned: small off-diagonal, diagonal near 2; the other
                        // triangle (and a unit diagonal) hold NaN, which must not be read.
                        let mut a: Vec<T> = vec![T::from_f64_rounded(f64::NAN); na * na];
                        for i in 0..na {
                            for j in 0..na {
                                if i == j && diag == Diag::NonUnit {
                                    a[i * na + j] = T::from_f64_rounded(2.0 + rng.next() * 0.5);
                                } else if i != j && triangle.contains(i, j) {
                                    a[i * na + j] = T::from_f64_rounded(rng.next() / na as f64);
                                }
                            }
                        }
                        let b0: Vec<T> = rng.vec(m * n);
                        let mut x = b0.clone();
                        let alpha = T::from_f64_rounded(0.5);
                        trsm(
                            side,
                            triangle,
                            op,
                            diag,
                            alpha,
                            MatRef::new(&a, na, na),
                            MatMut::new(&mut x, m, n),
                        );
                        let ta = Dense::from_view(MatRef::new(&a, na, na))
                            .triangular(triangle, diag)
                            .op(op);
                        let dx = Dense::from_view(MatRef::new(&x, m, n));
                        let back = match side {
                            Side::Left => ta.matmul(&dx),
                            Side::Right => dx.matmul(&ta),
                        };
                        let mut want = Dense::from_view(MatRef::new(&b0, m, n));
                        want.data.iter_mut().for_each(|w| *w *= 0.5);
                        check(
                            &format!("trsm {m}x{n} {side:?} {triangle:?} {op:?} {diag:?}"),
                            MatRef::new(&to_vec::<T>(&back), m, n),
                            &want,
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn trsm_round_trip_f32() {
    trsm_all::<f32>(11);
}

#[test]
fn trsm_round_trip_f64() {
    trsm_all::<f64>(12);
}

/// One step of tiled Cholesky on a 2x2 grid of tiles, the way the scheduler will run it:
/// potrf, trsm, syrk, potrf; the result matches the factor of the whole matrix.
#[test]
fn tiled_cholesky_step_matches_whole_factorization() {
    let mut rng = Rng::new(13);
    let (t, n) = (16usize, 32usize);
    let a = spd(&mut rng, n);
    let mut whole = a.data.clone();
    potrf(Triangle::Lower, MatMut::new(&mut whole, n, n)).unwrap();

    let mut tiled = a.data.clone();
    let (top, bottom) = tiled.split_at_mut(t * n);
    potrf(Triangle::Lower, MatMut::with_ld(top, t, t, n)).unwrap();
    let l11 = MatRef::with_ld(&*top, t, t, n);
    trsm(
        Side::Right,
        Triangle::Lower,
        Trans::Yes,
        Diag::NonUnit,
        1.0,
        l11,
        MatMut::with_ld(bottom, t, t, n),
    );
    let l21: Vec<f64> = (0..t)
        .flat_map(|i| bottom[i * n..i * n + t].to_vec())
        .collect();
    syrk(
        Triangle::Lower,
        Trans::No,
        -1.0,
        MatRef::new(&l21, t, t),
        Accum::Add,
        MatMut::with_ld(&mut bottom[t..], t, t, n),
        Threads::SEQ,
    );
    potrf(Triangle::Lower, MatMut::with_ld(&mut bottom[t..], t, t, n)).unwrap();
    let want =
        Dense::from_view(MatRef::new(&whole, n, n)).triangular(Triangle::Lower, Diag::NonUnit);
    let got =
        Dense::from_view(MatRef::new(&tiled, n, n)).triangular(Triangle::Lower, Diag::NonUnit);
    check("tiled cholesky", MatRef::new(&got.data, n, n), &want);
}

#[test]
fn backend_name_says_which_library_runs() {
    let want = if cfg!(feature = "openblas") {
        "openblas"
    } else {
        "faer"
    };
    assert_eq!(dagger_cpu::backend_name(), want);
    #[cfg(target_arch = "x86_64")]
    let avx512 = std::arch::is_x86_feature_detected!("avx512f");
    #[cfg(not(target_arch = "x86_64"))]
    let avx512 = false;
    assert_eq!(GemmKernel::Packed.available(), avx512);
    assert_eq!(GemmKernel::OpenBlas.available(), cfg!(feature = "openblas"));
    let chosen = dagger_cpu::gemm_kernel();
    assert!(
        chosen.available(),
        "{chosen} was chosen but is not available"
    );
    assert_eq!(dagger_cpu::gemm_backend_name(), chosen.name());
    if std::env::var_os(dagger_cpu::GEMM_KERNEL_VAR).is_none() {
        // Not named: OpenBLAS when linked, else the packed kernel or faer by CPU.
        match (cfg!(feature = "openblas"), avx512) {
            (true, _) => assert_eq!(chosen, GemmKernel::OpenBlas),
            (false, true) => assert!(matches!(chosen, GemmKernel::Packed | GemmKernel::Faer)),
            (false, false) => assert_eq!(chosen, GemmKernel::Faer),
        }
    }
}

#[test]
fn gemm_kernel_names_parse_back_and_unknown_ones_say_what_to_use() {
    for kernel in GemmKernel::ALL {
        assert_eq!(kernel.name().parse::<GemmKernel>(), Ok(kernel));
        assert_eq!(kernel.to_string(), kernel.name());
    }
    let err = "mkl".parse::<GemmKernel>().unwrap_err();
    assert_eq!(
        err.to_string(),
        "unknown GEMM kernel `mkl`: use avx512, faer or openblas"
    );
}
