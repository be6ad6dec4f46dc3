//! [`getrf`]: LU factorization of a block in place, recursive over columns (Toledo's
//! algorithm), so that all but a sliver of its work is [`gemm`](crate::gemm) and
//! [`trsm`](crate::trsm) on large panels.

use crate::{gemm, trsm, Accum, Diag, MatMut, MatRef, Pivoting, Scalar, Side, Threads, Trans};
use crate::{GetrfError, Triangle};

/// Columns at or below which the recursion stops and factors column by column.
///
/// Each column step of the base case is a pass per column to its right, through L2: its
/// cost grows with the square of the width, and a recursion step's (a small GEMM) only
/// linearly. A 4096x512 `f64` panel (column-major, one thread) took 20.0–20.8 ms with 8,
/// against 21.3–22.5 with 16 and 23.2–24.3 with 32, alternated runs.
const BASE: usize = 8;

/// Columns at or below which a matrix without contiguous columns is factored in a
/// column-major copy ([`factor_copied`]).
const SLAB: usize = 64;

/// LU factorization in place (LAPACK `?getrf`) of an `m x n` block with `m >= n`:
/// `P A = L U` with `L` unit lower triangular (`m x n`, its unit diagonal not stored) and
/// `U` upper triangular (`n x n`), both written over `A`.
///
/// With [`Pivoting::Partial`], `pivots[j]` is the row (0-based, `>= j`) that row `j` was
/// interchanged with at step `j`, as LAPACK's `ipiv` (minus one); applying those
/// interchanges to the rows of `A` in order gives `P A`. With [`Pivoting::None`],
/// `pivots[j] = j`.
///
/// `threads` is passed to the GEMM updates, which hold almost all of the work; the
/// column steps at the bottom of the recursion and the interchanges run on the calling
/// thread, so a second thread gains less than the GEMMs' share: a 4096x512 `f64` panel in
/// 14.2 ms on two threads against 17.8 on one, best of 30.
///
/// It is fastest on a column-major `A` (contiguous columns: `MatMut::new(buf, n, m).t()`),
/// where the pivot searches, interchanges and column steps run down contiguous memory. A
/// row-major `A` is factored 64 columns at a time in column-major copies, and its
/// interchanges cross a page per row. For a tall panel, copying it into
/// column-major order ([`MatMut::copy_from`]) and back costs less: a 4096x512 `f64` panel
/// took 25–28 ms column-major against 35–38 row-major on one thread here (the copies not
/// counted; `cargo run -p dagger-cpu --release --example gemm_gflops -- 4096`).
///
/// # Errors
/// [`GetrfError::ZeroPivot`] at the first exactly zero pivot: with partial pivoting the
/// block is singular (its column has no nonzero entry left); without, it may also just need
/// pivoting. `A` is left partly factored.
///
/// # Panics
/// If `m < n` or `pivots` does not have `n` elements.
///
/// ```
/// use dagger_cpu::{getrf, MatMut, Pivoting, Threads};
///
/// let mut a = [1.0f64, 2.0, 4.0, 2.0]; // [[1, 2], [4, 2]]
/// let mut piv = [0; 2];
/// getrf(Pivoting::Partial, MatMut::new(&mut a, 2, 2), &mut piv, Threads::SEQ)?;
/// assert_eq!(piv, [1, 1]); // rows 0 and 1 swapped: P A = [[4, 2], [1, 2]]
/// assert_eq!(a, [4.0, 2.0, 0.25, 1.5]); // L = [[1, 0], [0.25, 1]], U = [[4, 2], [0, 1.5]]
/// # Ok::<(), dagger_cpu::GetrfError>(())
/// ```
#[track_caller]
pub fn getrf<'a, T: Scalar>(
    pivoting: Pivoting,
    a: impl Into<MatMut<'a, T>>,
    pivots: &mut [usize],
    threads: Threads,
) -> Result<(), GetrfError> {
    let mut a = a.into();
    let (m, n) = a.shape();
    assert!(
        m >= n,
        "getrf: A is {m}x{n}; it needs at least as many rows as columns"
    );
    assert_eq!(
        pivots.len(),
        n,
        "getrf: {} pivots for a matrix of {n} columns",
        pivots.len()
    );
    let raw = Raw {
        p: a.as_mut_ptr(),
        rs: a.row_stride(),
        cs: a.col_stride(),
    };
    // SAFETY: `raw` spans exactly the elements of `a`, uniquely borrowed for this call, and
    // `factor` touches only elements inside its `m x n` range.
    unsafe { factor(raw, m, n, pivoting, pivots, threads) }
        .map_err(|pivot| GetrfError::ZeroPivot { pivot })
}

/// A matrix by pointer and strides, from which disjoint views are cut.
#[derive(Clone, Copy)]
struct Raw<T> {
    p: *mut T,
    rs: isize,
    cs: isize,
}

impl<T: Scalar> Raw<T> {
    /// # Safety
    /// `(i, j)` must lie inside the matrix.
    unsafe fn at(self, i: usize, j: usize) -> *mut T {
        self.p.offset(i as isize * self.rs + j as isize * self.cs)
    }

    /// # Safety
    /// `(i, j)` must lie inside the matrix.
    unsafe fn sub(self, i: usize, j: usize) -> Raw<T> {
        Raw {
            p: self.at(i, j),
            ..self
        }
    }

    /// # Safety
    /// The `rows x cols` view must lie inside the matrix and nothing may write it while
    /// the view lives.
    unsafe fn view<'x>(self, rows: usize, cols: usize) -> MatRef<'x, T> {
        MatRef::from_raw_parts(self.p, rows, cols, self.rs, self.cs)
    }

    /// # Safety
    /// The `rows x cols` view must lie inside the matrix and nothing else may touch it while
    /// the view lives.
    unsafe fn view_mut<'x>(self, rows: usize, cols: usize) -> MatMut<'x, T> {
        MatMut::from_raw_parts(self.p, rows, cols, self.rs, self.cs)
    }

    /// Applies the row interchanges `swaps` (`(i, k)`: rows `i` and `k`), in order, over
    /// columns `cols`.
    ///
    /// With contiguous columns each column takes all the interchanges in turn, so that it
    /// is read once and stays in cache; with contiguous rows each interchange runs along
    /// its two rows.
    ///
    /// # Safety
    /// Rows and columns inside the matrix.
    unsafe fn swap_rows(
        self,
        swaps: impl Iterator<Item = (usize, usize)> + Clone,
        cols: std::ops::Range<usize>,
    ) {
        if self.rs == 1 {
            for c in cols {
                let col = self.at(0, c);
                for (i, k) in swaps.clone().filter(|(i, k)| i != k) {
                    std::ptr::swap(col.add(i), col.add(k));
                }
            }
        } else {
            for (i, k) in swaps.filter(|(i, k)| i != k) {
                for c in cols.clone() {
                    std::ptr::swap(self.at(i, c), self.at(k, c));
                }
            }
        }
    }
}

/// Factors the `m x n` matrix at `a`; the first zero pivot's column on failure.
///
/// # Safety
/// `a` spans an `m x n` matrix, `m >= n`, that nothing else touches during the call.
unsafe fn factor<T: Scalar>(
    a: Raw<T>,
    m: usize,
    n: usize,
    pivoting: Pivoting,
    piv: &mut [usize],
    threads: Threads,
) -> Result<(), usize> {
    if n <= BASE && a.rs == 1 {
        return factor_columns(a, m, n, pivoting, piv);
    }
    if n <= SLAB && a.rs != 1 {
        return factor_copied(a, m, n, pivoting, piv, threads);
    }
    let n1 = n / 2;
    let n2 = n - n1;
    // [A11; A21] = P1 [L11; L21] U11
    factor(a, m, n1, pivoting, &mut piv[..n1], threads)?;
    a.swap_rows(piv[..n1].iter().copied().enumerate(), n1..n);
    // A12 = L11⁻¹ A12
    trsm(
        Side::Left,
        Triangle::Lower,
        Trans::No,
        Diag::Unit,
        T::from_f64_rounded(1.0),
        a.view(n1, n1),
        a.sub(0, n1).view_mut(n1, n2),
    );
    // A22 -= L21 A12
    gemm(
        Trans::No,
        Trans::No,
        T::from_f64_rounded(-1.0),
        a.sub(n1, 0).view(m - n1, n1),
        a.sub(0, n1).view(n1, n2),
        Accum::Add,
        a.sub(n1, n1).view_mut(m - n1, n2),
        threads,
    );
    factor(a.sub(n1, n1), m - n1, n2, pivoting, &mut piv[n1..], threads).map_err(|j| j + n1)?;
    for p in &mut piv[n1..] {
        *p += n1;
    }
    a.swap_rows(piv.iter().copied().enumerate().skip(n1), 0..n1);
    Ok(())
}

/// Copies the `m x n` matrix at `a` into a column-major buffer, factors it there and
/// copies it back.
///
/// A tall block of a row-major matrix puts each row on its own page: every column step
/// of the factorization walks all `m` rows, a page each, and the TLB misses made the base
/// case most of the time of a whole panel. In the buffer the pivot search and the updates
/// run down contiguous columns, and the rows are walked only to copy in and out.
///
/// # Safety
/// As [`factor`].
unsafe fn factor_copied<T: Scalar>(
    a: Raw<T>,
    m: usize,
    n: usize,
    pivoting: Pivoting,
    piv: &mut [usize],
    threads: Threads,
) -> Result<(), usize> {
    let ld = column_major_ld(m);
    let mut buf = vec![T::from_f64_rounded(0.0); ld * n];
    // SAFETY: `a` spans the `m x n` matrix, which only this call touches.
    MatMut::with_ld(&mut buf, n, m, ld)
        .t()
        .copy_from(a.view(m, n));
    let b = Raw {
        p: buf.as_mut_ptr(),
        rs: 1,
        cs: ld as isize,
    };
    // SAFETY: `b` spans `buf`, an `m x n` column-major matrix owned here.
    let result = factor(b, m, n, pivoting, piv, threads);
    // SAFETY: as above; `b` is no longer used.
    a.view_mut(m, n)
        .copy_from(MatRef::with_ld(&buf, n, m, ld).t());
    result
}

/// The distance between the columns of a column-major copy of `rows` rows: at least
/// `rows`, and not a multiple of 4 KiB. Columns at a power-of-two distance all fall in the
/// same cache sets, and a copy between layouts ([`MatMut::copy_from`], by squares of eight
/// rows and columns) would then evict its own lines.
///
/// ```
/// assert_eq!(dagger_cpu::column_major_ld(4096), 4104);
/// assert!(dagger_cpu::column_major_ld(5) >= 5);
/// ```
pub fn column_major_ld(rows: usize) -> usize {
    rows.next_multiple_of(8) + 8
}

/// Column-by-column LU of a narrow `m x n` matrix with contiguous columns (right-looking,
/// rank-1 updates), compiled for AVX-512 where the CPU has it: its loops run down whole
/// columns and vectorize, eight `f64` or sixteen `f32` at a time instead of two or four.
///
/// # Safety
/// As [`factor`], and `a.rs == 1` with columns at least `m` elements apart.
unsafe fn factor_columns<T: Scalar>(
    a: Raw<T>,
    m: usize,
    n: usize,
    pivoting: Pivoting,
    piv: &mut [usize],
) -> Result<(), usize> {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f") {
        // SAFETY: AVX-512F is present; the rest is the caller's contract.
        return unsafe { factor_columns_avx512(a, m, n, pivoting, piv) };
    }
    factor_columns_body(a, m, n, pivoting, piv)
}

/// [`factor_columns_body`] compiled with AVX-512F enabled.
///
/// # Safety
/// As [`factor_columns`], and the CPU must have AVX-512F.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn factor_columns_avx512<T: Scalar>(
    a: Raw<T>,
    m: usize,
    n: usize,
    pivoting: Pivoting,
    piv: &mut [usize],
) -> Result<(), usize> {
    factor_columns_body(a, m, n, pivoting, piv)
}

/// Lanes of the pivot search: enough for one AVX-512 register of `f64`, two of `f32`.
const LANES: usize = 8;

/// The index of the first largest `|x|` in `col` (NaNs never win), `None` if `col` is
/// empty or all NaN. It is searched in `LANES` interleaved strands, which vectorize, then
/// merged so that the first index wins a tie, as in a sequential search.
#[inline(always)]
fn first_largest<T: Scalar>(col: &[T]) -> Option<usize> {
    let zero = T::from_f64_rounded(0.0);
    let abs = |x: T| if x < zero { zero - x } else { x };
    let mut best = [zero - T::from_f64_rounded(1.0); LANES];
    let mut at = [usize::MAX; LANES];
    let chunks = col.chunks_exact(LANES);
    let tail = chunks.remainder();
    for (c, chunk) in chunks.enumerate() {
        for l in 0..LANES {
            let v = abs(chunk[l]);
            if v > best[l] {
                best[l] = v;
                at[l] = c * LANES + l;
            }
        }
    }
    let mut found: Option<(T, usize)> = None;
    for l in 0..LANES {
        if at[l] != usize::MAX
            && found.is_none_or(|(b, i)| best[l] > b || (best[l] == b && at[l] < i))
        {
            found = Some((best[l], at[l]));
        }
    }
    let base = col.len() - tail.len();
    for (i, &x) in tail.iter().enumerate() {
        let v = abs(x);
        if !is_nan(v) && found.is_none_or(|(b, _)| v > b) {
            found = Some((v, base + i));
        }
    }
    found.map(|(_, i)| i)
}

/// Whether `x` is NaN, the one value not ordered against itself.
#[inline(always)]
fn is_nan<T: Scalar>(x: T) -> bool {
    x.partial_cmp(&x).is_none()
}

/// The body of [`factor_columns`], inlined into each of its compiled forms.
///
/// # Safety
/// As [`factor_columns`].
#[inline(always)]
unsafe fn factor_columns_body<T: Scalar>(
    a: Raw<T>,
    m: usize,
    n: usize,
    pivoting: Pivoting,
    piv: &mut [usize],
) -> Result<(), usize> {
    debug_assert!(a.rs == 1 && (n <= 1 || a.cs >= m as isize));
    let zero = T::from_f64_rounded(0.0);
    // SAFETY: column `c` is `m` contiguous elements of the matrix, disjoint from the others.
    let column = |c: usize| std::slice::from_raw_parts_mut(a.at(0, c), m);
    for (j, pj) in piv.iter_mut().enumerate().take(n) {
        let mut p = j;
        if pivoting == Pivoting::Partial {
            let col = column(j);
            // The diagonal entry stays the pivot unless a later one is strictly larger
            // (and a NaN on the diagonal stays, as no comparison with it holds).
            let d = col[j];
            if !is_nan(d) {
                if let Some(i) = first_largest(&col[j..]) {
                    let abs = |x: T| if x < zero { zero - x } else { x };
                    if abs(col[j + i]) > abs(d) {
                        p = j + i;
                    }
                }
            }
        }
        *pj = p;
        let d = *a.at(p, j);
        if d == zero {
            return Err(j);
        }
        if p != j {
            for c in 0..n {
                column(c).swap(j, p);
            }
        }
        let col = column(j);
        let r = T::from_f64_rounded(1.0) / d;
        for l in &mut col[j + 1..] {
            *l *= r;
        }
        for c in j + 1..n {
            let other = column(c);
            let u = other[j];
            if u != zero {
                for (x, &l) in other[j + 1..].iter_mut().zip(&col[j + 1..]) {
                    *x -= l * u;
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{first_largest, LANES};

    /// The first index of the largest magnitude, by a plain sequential search.
    fn sequential(col: &[f64]) -> Option<usize> {
        let mut found: Option<(f64, usize)> = None;
        for (i, &x) in col.iter().enumerate() {
            if !x.is_nan() && found.is_none_or(|(b, _)| x.abs() > b) {
                found = Some((x.abs(), i));
            }
        }
        found.map(|(_, i)| i)
    }

    #[test]
    fn the_strands_find_what_a_sequential_search_finds() {
        assert_eq!(first_largest::<f64>(&[]), None);
        assert_eq!(first_largest(&[f64::NAN; 11]), None);
        // Every length around the strand count, the largest magnitude at every place, and
        // a tie with a later place (in another strand or the tail) that must lose.
        for len in 1..4 * LANES + 3 {
            for at in 0..len {
                for tie in [None, Some((at + 1) % len), Some(len - 1)] {
                    let mut col: Vec<f64> = (0..len).map(|i| (i % 5) as f64 - 2.0).collect();
                    col[at] = -9.0;
                    if let Some(t) = tie.filter(|&t| t > at) {
                        col[t] = 9.0;
                    }
                    if len > 2 {
                        col[(at + 2) % len] = f64::NAN;
                    }
                    let want = sequential(&col);
                    assert_eq!(first_largest(&col), want, "{col:?}");
                }
            }
        }
        // f32 goes through the same strands.
        assert_eq!(first_largest(&[1.0f32, -3.0, 3.0, 2.0]), Some(1));
    }
}
