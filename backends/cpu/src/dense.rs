//! The dense block kernels: [`gemm`], [`syrk`], [`mirror`], [`potrf`], [`trsm`].

use faer::linalg::matmul::triangular::BlockStructure;

use crate::{
    Accum, Diag, GemmKernel, MatMut, MatRef, PotrfError, Scalar, Side, Threads, Trans, Triangle,
};

fn op<T>(m: MatRef<'_, T>, t: Trans) -> MatRef<'_, T> {
    match t {
        Trans::No => m,
        Trans::Yes => m.t(),
    }
}

/// `c = beta * c` on `c`, or on one triangle of it; `beta = 0` writes zeros without reading.
fn scale<T: Scalar>(mut c: MatMut<'_, T>, beta: T, triangle: Option<Triangle>) {
    let zero = T::from_f64_rounded(0.0);
    for i in 0..c.rows() {
        for j in 0..c.cols() {
            if triangle.is_none_or(|t| t.contains(i, j)) {
                let v = if beta == zero {
                    zero
                } else {
                    beta * c.get(i, j)
                };
                c.set(i, j, v);
            }
        }
    }
}

/// Applies `accum` to `c` ahead of an accumulating product, and says how faer should then
/// accumulate: `Replace`, or `Add` onto the (possibly rescaled) `c`.
fn prepare<T: Scalar>(
    c: MatMut<'_, T>,
    accum: Accum<T>,
    triangle: Option<Triangle>,
) -> faer::Accum {
    match accum.canonical() {
        Accum::Replace => faer::Accum::Replace,
        Accum::Add => faer::Accum::Add,
        Accum::Scale(beta) => {
            scale(c, beta, triangle);
            faer::Accum::Add
        }
    }
}

/// General matrix product: `C = alpha op(A) op(B) + beta C` (BLAS `?gemm`), with `beta`
/// given by `accum`.
///
/// `op(A)` is `m x k`, `op(B)` is `k x n`, `C` is `m x n`. Any of them may be empty; with
/// `k = 0` or `alpha = 0` the product is zero and only `accum` acts on `C` (`A` and `B` are
/// not read, as in BLAS). Views may have any strides
/// (row-major slices, ndarray views, transposed views); `C` must not overlap `A` or `B`
/// (the borrow checker sees to that for safe views).
///
/// # Panics
/// If the shapes do not fit together; the message names all three.
///
/// ```
/// use dagger_cpu::{gemm, Accum, Threads, Trans};
/// use ndarray::array;
///
/// let a = array![[1.0f32, 2.0], [3.0, 4.0]];
/// let b = array![[1.0f32, 1.0], [0.0, 1.0]];
/// let mut c = array![[1.0f32, 1.0], [1.0, 1.0]];
/// // C = 2 A Bᵀ + 0.5 C
/// gemm(Trans::No, Trans::Yes, 2.0, &a, &b, Accum::Scale(0.5), &mut c, Threads::SEQ);
/// assert_eq!(c, array![[6.5f32, 4.5], [14.5, 8.5]]);
/// ```
#[track_caller]
#[allow(clippy::too_many_arguments)]
pub fn gemm<'a, 'b, 'c, T: Scalar>(
    op_a: Trans,
    op_b: Trans,
    alpha: T,
    a: impl Into<MatRef<'a, T>>,
    b: impl Into<MatRef<'b, T>>,
    accum: Accum<T>,
    c: impl Into<MatMut<'c, T>>,
    threads: Threads,
) {
    gemm_with(
        crate::gemm_kernel(),
        op_a,
        op_b,
        alpha,
        a,
        b,
        accum,
        c,
        threads,
    );
}

/// [`gemm`] on a given kernel rather than the one [`crate::gemm_kernel`] chose, to compare
/// kernels or test each one. A kernel this build or CPU does not have
/// ([`GemmKernel::available`]) runs as faer, as does the packed kernel on a `C` with no unit
/// stride and OpenBLAS on views BLAS cannot express.
///
/// # Panics
/// As [`gemm`].
///
/// ```
/// use dagger_cpu::{gemm_with, Accum, GemmKernel, Threads, Trans};
/// use ndarray::array;
///
/// let a = array![[1.0f64, 2.0], [3.0, 4.0]];
/// let mut c = array![[0.0f64, 0.0], [0.0, 0.0]];
/// for kernel in GemmKernel::ALL {
///     gemm_with(kernel, Trans::No, Trans::No, 1.0, &a, &a, Accum::Replace, &mut c, Threads::SEQ);
///     assert_eq!(c, array![[7.0, 10.0], [15.0, 22.0]]);
/// }
/// ```
#[track_caller]
#[allow(clippy::too_many_arguments)]
pub fn gemm_with<'a, 'b, 'c, T: Scalar>(
    kernel: GemmKernel,
    op_a: Trans,
    op_b: Trans,
    alpha: T,
    a: impl Into<MatRef<'a, T>>,
    b: impl Into<MatRef<'b, T>>,
    accum: Accum<T>,
    c: impl Into<MatMut<'c, T>>,
    threads: Threads,
) {
    let (a, b, mut c) = (op(a.into(), op_a), op(b.into(), op_b), c.into());
    assert!(
        a.cols() == b.rows() && c.shape() == (a.rows(), b.cols()),
        "gemm: op(A) is {}x{}, op(B) is {}x{} and C is {}x{}; they must be m x k, k x n and \
         m x n",
        a.rows(),
        a.cols(),
        b.rows(),
        b.cols(),
        c.rows(),
        c.cols(),
    );
    if c.rows() == 0 || c.cols() == 0 {
        return;
    }
    if a.cols() == 0 || alpha == T::from_f64_rounded(0.0) {
        // As in BLAS, alpha = 0 does not read A and B (no NaN from 0 * inf).
        scale(c, accum.beta(), None);
        return;
    }
    #[cfg(feature = "openblas")]
    if kernel == GemmKernel::OpenBlas {
        crate::openblas::use_threads(threads);
        if crate::openblas::gemm(alpha, a, b, accum, c.rb()) {
            return;
        }
    }
    #[cfg(target_arch = "x86_64")]
    if kernel == GemmKernel::Packed
        && crate::packed::gemm(alpha, a, b, accum.beta(), c.rb(), threads)
    {
        return;
    }
    let how = prepare(c.rb(), accum, None);
    faer::linalg::matmul::matmul(c.faer(), how, a.faer(), b.faer(), alpha, threads.par());
}

/// Symmetric rank-k update of one triangle: `C = alpha A Aᵀ + beta C` (`op = Trans::No`, `A`
/// is `n x k`) or `C = alpha Aᵀ A + beta C` (`op = Trans::Yes`, `A` is `k x n`), computed and
/// written on `triangle` of the `n x n` block `C` only, diagonal included (BLAS `?syrk`).
/// The other strict triangle is neither read nor written; [`mirror`] fills it.
///
/// # Panics
/// If `C` is not square or does not match `op(A)`.
///
/// ```
/// use dagger_cpu::{syrk, Accum, MatMut, MatRef, Threads, Trans, Triangle};
///
/// let a = [1.0f64, 2.0, 3.0, 4.0]; // 2x2
/// let mut c = [9.0f64; 4];
/// syrk(Triangle::Lower, Trans::No, 1.0, MatRef::new(&a, 2, 2), Accum::Replace,
///      MatMut::new(&mut c, 2, 2), Threads::SEQ);
/// assert_eq!(c, [5.0, 9.0, 11.0, 25.0]); // upper element untouched
/// ```
#[track_caller]
pub fn syrk<'a, 'c, T: Scalar>(
    triangle: Triangle,
    op_a: Trans,
    alpha: T,
    a: impl Into<MatRef<'a, T>>,
    accum: Accum<T>,
    c: impl Into<MatMut<'c, T>>,
    threads: Threads,
) {
    let (a, mut c) = (op(a.into(), op_a), c.into());
    assert!(
        c.rows() == c.cols() && c.rows() == a.rows(),
        "syrk: op(A) is {}x{} and C is {}x{}; C must be square with as many rows as op(A)",
        a.rows(),
        a.cols(),
        c.rows(),
        c.cols(),
    );
    if c.rows() == 0 {
        return;
    }
    if a.cols() == 0 || alpha == T::from_f64_rounded(0.0) {
        // As in BLAS, alpha = 0 does not read A.
        scale(c, accum.beta(), Some(triangle));
        return;
    }
    #[cfg(feature = "openblas")]
    crate::openblas::use_threads(threads);
    #[cfg(feature = "openblas")]
    if crate::openblas::syrk(triangle, alpha, a, accum, c.rb()) {
        return;
    }
    let how = prepare(c.rb(), accum, Some(triangle));
    let structure = match triangle {
        Triangle::Lower => BlockStructure::TriangularLower,
        Triangle::Upper => BlockStructure::TriangularUpper,
    };
    faer::linalg::matmul::triangular::matmul(
        c.faer(),
        structure,
        how,
        a.faer(),
        BlockStructure::Rectangular,
        a.t().faer(),
        BlockStructure::Rectangular,
        alpha,
        threads.par(),
    );
}

/// Copies `triangle` of the square block `c` onto the other strict triangle, making it
/// symmetric (after [`syrk`] computed one triangle).
///
/// # Panics
/// If `c` is not square.
///
/// ```
/// use dagger_cpu::{mirror, MatMut, Triangle};
///
/// let mut c = [1.0f32, 0.0, 2.0, 3.0];
/// mirror(Triangle::Lower, MatMut::new(&mut c, 2, 2));
/// assert_eq!(c, [1.0, 2.0, 2.0, 3.0]);
/// ```
#[track_caller]
pub fn mirror<'c, T: Scalar>(triangle: Triangle, c: impl Into<MatMut<'c, T>>) {
    let mut c = c.into();
    assert!(
        c.rows() == c.cols(),
        "mirror: C is {}x{} but must be square",
        c.rows(),
        c.cols()
    );
    for i in 0..c.rows() {
        for j in 0..i {
            match triangle {
                Triangle::Lower => c.set(j, i, c.get(i, j)),
                Triangle::Upper => c.set(i, j, c.get(j, i)),
            }
        }
    }
}

/// Cholesky factorization of a symmetric positive definite block in place (LAPACK
/// `?potrf`): with `Triangle::Lower`, `A = L Lᵀ` and `L` overwrites the lower triangle; with
/// `Triangle::Upper`, `A = Uᵀ U` and `U` overwrites the upper triangle. Only that triangle
/// of `A` is read, and the other strict triangle is left as it was.
///
/// # Errors
/// [`PotrfError::NotPositiveDefinite`] with the 0-based index of the first pivot that is not
/// positive; the block is then partly overwritten.
///
/// # Panics
/// If `a` is not square.
///
/// ```
/// use dagger_cpu::{potrf, MatMut, PotrfError, Triangle};
///
/// let mut a = [4.0f64, 0.0, 2.0, 5.0]; // [[4, 2], [2, 5]], lower triangle stored
/// potrf(Triangle::Lower, MatMut::new(&mut a, 2, 2))?;
/// assert_eq!(a, [2.0, 0.0, 1.0, 2.0]); // L = [[2, 0], [1, 2]]
///
/// let mut b = [1.0f64, 0.0, 2.0, 1.0]; // [[1, 2], [2, 1]] is indefinite
/// let err = potrf(Triangle::Lower, MatMut::new(&mut b, 2, 2)).unwrap_err();
/// assert_eq!(err, PotrfError::NotPositiveDefinite { pivot: 1 });
/// # Ok::<(), PotrfError>(())
/// ```
#[track_caller]
pub fn potrf<'a, T: Scalar>(
    triangle: Triangle,
    a: impl Into<MatMut<'a, T>>,
) -> Result<(), PotrfError> {
    use faer::dyn_stack::{MemBuffer, MemStack};
    use faer::linalg::cholesky::llt::factor::{
        cholesky_in_place, cholesky_in_place_scratch, LltError, LltRegularization,
    };

    let a = a.into();
    assert!(
        a.rows() == a.cols(),
        "potrf: A is {}x{} but must be square",
        a.rows(),
        a.cols()
    );
    // A = Uᵀ U is A = L Lᵀ of the transposed view, whose lower triangle is A's upper one.
    #[cfg_attr(not(feature = "openblas"), allow(unused_mut))]
    let mut lower = match triangle {
        Triangle::Lower => a,
        Triangle::Upper => a.t(),
    };
    let n = lower.rows();
    if n == 0 {
        return Ok(());
    }
    #[cfg(feature = "openblas")]
    crate::openblas::use_threads(crate::Threads::SEQ);
    #[cfg(feature = "openblas")]
    if let Some(result) = crate::openblas::potrf_lower(lower.rb()) {
        return result;
    }
    let par = faer::Par::Seq;
    let params = Default::default();
    let mut mem = MemBuffer::new(cholesky_in_place_scratch::<T>(n, par, params));
    let stack = MemStack::new(&mut mem);
    match cholesky_in_place(
        lower.faer(),
        LltRegularization::default(),
        par,
        stack,
        params,
    ) {
        Ok(_) => Ok(()),
        Err(LltError::NonPositivePivot { index }) => {
            Err(PotrfError::NotPositiveDefinite { pivot: index })
        }
    }
}

/// Triangular solve in place (BLAS `?trsm`): overwrites `B` with `X`, where
/// `op(A) X = alpha B` (`Side::Left`) or `X op(A) = alpha B` (`Side::Right`), and `A` is
/// triangular: only its `triangle` is read, with a unit diagonal assumed under `Diag::Unit`.
///
/// `A` is `m x m` for `Side::Left` and `n x n` for `Side::Right`, `B` is `m x n`. Tiled
/// Cholesky uses `Side::Right, Triangle::Lower, Trans::Yes, Diag::NonUnit`:
/// `B = B L⁻ᵀ`.
///
/// # Panics
/// If `A` is not square or does not match `B`.
///
/// ```
/// use dagger_cpu::{trsm, Diag, MatMut, MatRef, Side, Trans, Triangle};
///
/// let l = [2.0f64, 0.0, 1.0, 4.0]; // L = [[2, 0], [1, 4]]
/// let mut b = [2.0f64, 1.0]; // a 1x2 row: solve X Lᵀ = B
/// trsm(Side::Right, Triangle::Lower, Trans::Yes, Diag::NonUnit, 1.0,
///      MatRef::new(&l, 2, 2), MatMut::new(&mut b, 1, 2));
/// assert_eq!(b, [1.0, 0.0]); // [1, 0] Lᵀ = [2, 1]
/// ```
#[track_caller]
pub fn trsm<'a, 'b, T: Scalar>(
    side: Side,
    triangle: Triangle,
    op_a: Trans,
    diag: Diag,
    alpha: T,
    a: impl Into<MatRef<'a, T>>,
    b: impl Into<MatMut<'b, T>>,
) {
    let (a, mut b) = (a.into(), b.into());
    let needed = match side {
        Side::Left => b.rows(),
        Side::Right => b.cols(),
    };
    assert!(
        a.rows() == a.cols() && a.rows() == needed,
        "trsm: A is {}x{} and B is {}x{}; A must be square with as many rows as B has {}",
        a.rows(),
        a.cols(),
        b.rows(),
        b.cols(),
        match side {
            Side::Left => "rows (Side::Left)",
            Side::Right => "columns (Side::Right)",
        },
    );
    if b.rows() == 0 || b.cols() == 0 {
        return;
    }
    #[cfg(feature = "openblas")]
    crate::openblas::use_threads(Threads::SEQ);
    #[cfg(feature = "openblas")]
    if crate::openblas::trsm(side, triangle, op_a, diag, alpha, a, b.rb()) {
        return;
    }
    if alpha != T::from_f64_rounded(1.0) {
        scale(b.rb(), alpha, None);
    }
    // op(A) as a view, and which triangle of that view holds it.
    let (mut m, mut tri) = match op_a {
        Trans::No => (a, triangle),
        Trans::Yes => (a.t(), triangle.flip()),
    };
    // X M = B  <=>  Mᵀ Xᵀ = Bᵀ.
    let b = match side {
        Side::Left => b,
        Side::Right => {
            m = m.t();
            tri = tri.flip();
            b.t()
        }
    };
    solve_in_place(m, tri, diag, b);
}

/// Rows of a triangle at or below which [`solve_in_place`] hands it to faer.
const TRSM_BASE: usize = 64;

/// `B = M⁻¹ B` for a triangular `M` (`tri`, `diag`), recursive: the triangle is split in
/// two halves, one half solved, the other half of `B` updated by a [`gemm`] with the
/// off-diagonal block, and the other half solved. All but the small diagonal blocks is
/// GEMM work, in this crate's packed kernel where it has one; faer solves the rest.
fn solve_in_place<T: Scalar>(m: MatRef<'_, T>, tri: Triangle, diag: Diag, mut b: MatMut<'_, T>) {
    use faer::linalg::triangular_solve as ts;

    let n = m.rows();
    if n <= TRSM_BASE {
        let par = faer::Par::Seq;
        match (tri, diag) {
            (Triangle::Lower, Diag::NonUnit) => {
                ts::solve_lower_triangular_in_place(m.faer(), b.faer(), par)
            }
            (Triangle::Lower, Diag::Unit) => {
                ts::solve_unit_lower_triangular_in_place(m.faer(), b.faer(), par)
            }
            (Triangle::Upper, Diag::NonUnit) => {
                ts::solve_upper_triangular_in_place(m.faer(), b.faer(), par)
            }
            (Triangle::Upper, Diag::Unit) => {
                ts::solve_unit_upper_triangular_in_place(m.faer(), b.faer(), par)
            }
        }
        return;
    }
    let n1 = n / 2;
    let k = b.cols();
    let (rs, cs) = (m.row_stride(), m.col_stride());
    // SAFETY: each block lies inside `m`, which is borrowed for the whole call.
    let block = |i: usize, j: usize, rows: usize, cols: usize| unsafe {
        MatRef::from_raw_parts(
            m.as_ptr().offset(i as isize * rs + j as isize * cs),
            rows,
            cols,
            rs,
            cs,
        )
    };
    let (brs, bcs) = (b.row_stride(), b.col_stride());
    let p = b.as_mut_ptr();
    // SAFETY: rows `..n1` and `n1..` of `b` are disjoint parts of it, which is uniquely
    // borrowed for the whole call.
    let (mut top, mut bottom) = unsafe {
        (
            MatMut::from_raw_parts(p, n1, k, brs, bcs),
            MatMut::from_raw_parts(p.offset(n1 as isize * brs), n - n1, k, brs, bcs),
        )
    };
    let minus_one = T::from_f64_rounded(-1.0);
    let (m11, m22) = (block(0, 0, n1, n1), block(n1, n1, n - n1, n - n1));
    match tri {
        Triangle::Lower => {
            solve_in_place(m11, tri, diag, top.rb());
            let m21 = block(n1, 0, n - n1, n1);
            gemm(
                Trans::No,
                Trans::No,
                minus_one,
                m21,
                top.as_ref(),
                Accum::Add,
                bottom.rb(),
                Threads::SEQ,
            );
            solve_in_place(m22, tri, diag, bottom);
        }
        Triangle::Upper => {
            solve_in_place(m22, tri, diag, bottom.rb());
            let m12 = block(0, n1, n1, n - n1);
            gemm(
                Trans::No,
                Trans::No,
                minus_one,
                m12,
                bottom.as_ref(),
                Accum::Add,
                top.rb(),
                Threads::SEQ,
            );
            solve_in_place(m11, tri, diag, top);
        }
    }
}
