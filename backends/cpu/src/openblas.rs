//! The `openblas` feature: [`crate::gemm`], [`crate::syrk`], [`crate::trsm`] and
//! [`crate::potrf`] through the system OpenBLAS (CBLAS, and LAPACK's `?potrf`).
//!
//! Each function returns whether (or what) OpenBLAS computed; views whose strides BLAS
//! cannot express (no unit stride, negative strides) are left to faer.
// The routine table is reachable only through the sealed `Scalar` trait.
#![allow(unreachable_pub)]

use std::os::raw::{c_char, c_int};

use std::sync::atomic::{AtomicUsize, Ordering};

use crate::{Accum, Diag, MatMut, MatRef, PotrfError, Scalar, Side, Threads, Trans, Triangle};

const ROW_MAJOR: c_int = 101;
const NO_TRANS: c_int = 111;
const TRANS: c_int = 112;
const UPPER: c_int = 121;
const LOWER: c_int = 122;
const NON_UNIT: c_int = 131;
const UNIT: c_int = 132;
const LEFT: c_int = 141;
const RIGHT: c_int = 142;

type Gemm<T> = unsafe extern "C" fn(
    c_int,
    c_int,
    c_int,
    c_int,
    c_int,
    c_int,
    T,
    *const T,
    c_int,
    *const T,
    c_int,
    T,
    *mut T,
    c_int,
);
type Syrk<T> =
    unsafe extern "C" fn(c_int, c_int, c_int, c_int, c_int, T, *const T, c_int, T, *mut T, c_int);
type Trsm<T> = unsafe extern "C" fn(
    c_int,
    c_int,
    c_int,
    c_int,
    c_int,
    c_int,
    c_int,
    T,
    *const T,
    c_int,
    *mut T,
    c_int,
);
/// Fortran `?potrf(uplo, n, a, lda, info)`, with gfortran's hidden length of `uplo`.
type Potrf<T> =
    unsafe extern "C" fn(*const c_char, *const c_int, *mut T, *const c_int, *mut c_int, usize);

#[link(name = "openblas")]
extern "C" {
    fn openblas_set_num_threads(n: c_int);
    fn cblas_sgemm(
        layout: c_int,
        ta: c_int,
        tb: c_int,
        m: c_int,
        n: c_int,
        k: c_int,
        alpha: f32,
        a: *const f32,
        lda: c_int,
        b: *const f32,
        ldb: c_int,
        beta: f32,
        c: *mut f32,
        ldc: c_int,
    );
    fn cblas_dgemm(
        layout: c_int,
        ta: c_int,
        tb: c_int,
        m: c_int,
        n: c_int,
        k: c_int,
        alpha: f64,
        a: *const f64,
        lda: c_int,
        b: *const f64,
        ldb: c_int,
        beta: f64,
        c: *mut f64,
        ldc: c_int,
    );
    fn cblas_ssyrk(
        layout: c_int,
        uplo: c_int,
        trans: c_int,
        n: c_int,
        k: c_int,
        alpha: f32,
        a: *const f32,
        lda: c_int,
        beta: f32,
        c: *mut f32,
        ldc: c_int,
    );
    fn cblas_dsyrk(
        layout: c_int,
        uplo: c_int,
        trans: c_int,
        n: c_int,
        k: c_int,
        alpha: f64,
        a: *const f64,
        lda: c_int,
        beta: f64,
        c: *mut f64,
        ldc: c_int,
    );
    fn cblas_strsm(
        layout: c_int,
        side: c_int,
        uplo: c_int,
        trans: c_int,
        diag: c_int,
        m: c_int,
        n: c_int,
        alpha: f32,
        a: *const f32,
        lda: c_int,
        b: *mut f32,
        ldb: c_int,
    );
    fn cblas_dtrsm(
        layout: c_int,
        side: c_int,
        uplo: c_int,
        trans: c_int,
        diag: c_int,
        m: c_int,
        n: c_int,
        alpha: f64,
        a: *const f64,
        lda: c_int,
        b: *mut f64,
        ldb: c_int,
    );
    fn spotrf_(
        uplo: *const c_char,
        n: *const c_int,
        a: *mut f32,
        lda: *const c_int,
        info: *mut c_int,
        uplo_len: usize,
    );
    fn dpotrf_(
        uplo: *const c_char,
        n: *const c_int,
        a: *mut f64,
        lda: *const c_int,
        info: *mut c_int,
        uplo_len: usize,
    );
}

/// The OpenBLAS routines for one element type.
pub struct Routines<T> {
    gemm: Gemm<T>,
    syrk: Syrk<T>,
    trsm: Trsm<T>,
    potrf: Potrf<T>,
}

pub(crate) static F32: Routines<f32> = Routines {
    gemm: cblas_sgemm,
    syrk: cblas_ssyrk,
    trsm: cblas_strsm,
    potrf: spotrf_,
};

pub(crate) static F64: Routines<f64> = Routines {
    gemm: cblas_dgemm,
    syrk: cblas_dsyrk,
    trsm: cblas_dtrsm,
    potrf: dpotrf_,
};

/// How BLAS sees a view: row-major memory holding the view itself (`transposed = false`) or
/// its transpose (`transposed = true`), rows `ld` elements apart.
#[derive(Clone, Copy)]
struct Layout {
    transposed: bool,
    ld: c_int,
}

impl Layout {
    fn trans(self) -> c_int {
        if self.transposed {
            TRANS
        } else {
            NO_TRANS
        }
    }
}

fn layout(rows: usize, cols: usize, rs: isize, cs: isize) -> Option<Layout> {
    let fits = |x: usize| c_int::try_from(x).ok();
    fits(rows)?;
    fits(cols)?;
    if (cs == 1 || cols <= 1) && (rows <= 1 || rs >= cols.max(1) as isize) {
        let ld = if rows <= 1 { cols.max(1) } else { rs as usize };
        return Some(Layout {
            transposed: false,
            ld: fits(ld)?,
        });
    }
    if (rs == 1 || rows <= 1) && (cols <= 1 || cs >= rows.max(1) as isize) {
        let ld = if cols <= 1 { rows.max(1) } else { cs as usize };
        return Some(Layout {
            transposed: true,
            ld: fits(ld)?,
        });
    }
    None
}

fn layout_ref<T>(m: &MatRef<'_, T>) -> Option<Layout> {
    layout(m.rows(), m.cols(), m.row_stride(), m.col_stride())
}

fn layout_mut<T>(m: &MatMut<'_, T>) -> Option<Layout> {
    layout(m.rows(), m.cols(), m.row_stride(), m.col_stride())
}

fn uplo(t: Triangle) -> c_int {
    match t {
        Triangle::Lower => LOWER,
        Triangle::Upper => UPPER,
    }
}

/// The thread count last given to OpenBLAS (0: never set).
static THREADS: AtomicUsize = AtomicUsize::new(0);

/// Makes OpenBLAS use `threads` for the next call, as faer would: one by default, so that a
/// block kernel inside a task never starts threads of its own. The count is process-wide in
/// OpenBLAS; it is set only when it changes.
pub(crate) fn use_threads(threads: Threads) {
    let n = match threads.0 {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    };
    if THREADS.swap(n, Ordering::Relaxed) != n {
        // SAFETY: a plain setter of OpenBLAS's thread count, callable at any time.
        unsafe { openblas_set_num_threads(n.min(c_int::MAX as usize) as c_int) };
    }
}

pub(crate) fn gemm<T: Scalar>(
    alpha: T,
    a: MatRef<'_, T>,
    b: MatRef<'_, T>,
    accum: Accum<T>,
    c: MatMut<'_, T>,
) -> bool {
    let Some(lc) = layout_mut(&c) else {
        return false;
    };
    // Column-major C: compute Cᵀ = Bᵀ Aᵀ into its row-major memory instead.
    let (a, b, mut c) = if lc.transposed {
        (b.t(), a.t(), c.t())
    } else {
        (a, b, c)
    };
    let (Some(la), Some(lb), Some(lc)) = (layout_ref(&a), layout_ref(&b), layout_mut(&c)) else {
        return false;
    };
    let (m, n, k) = (c.rows() as c_int, c.cols() as c_int, a.cols() as c_int);
    // SAFETY: the layouts describe exactly the views' elements; dimensions fit c_int.
    unsafe {
        (T::blas().gemm)(
            ROW_MAJOR,
            la.trans(),
            lb.trans(),
            m,
            n,
            k,
            alpha,
            a.as_ptr(),
            la.ld,
            b.as_ptr(),
            lb.ld,
            accum.beta(),
            c.as_mut_ptr(),
            lc.ld,
        );
    }
    true
}

pub(crate) fn syrk<T: Scalar>(
    triangle: Triangle,
    alpha: T,
    a: MatRef<'_, T>,
    accum: Accum<T>,
    mut c: MatMut<'_, T>,
) -> bool {
    let (Some(la), Some(lc)) = (layout_ref(&a), layout_mut(&c)) else {
        return false;
    };
    // A column-major C holds Cᵀ = A Aᵀ too, with the triangles swapped.
    let triangle = if lc.transposed {
        triangle.flip()
    } else {
        triangle
    };
    let (n, k) = (a.rows() as c_int, a.cols() as c_int);
    // SAFETY: as in `gemm`.
    unsafe {
        (T::blas().syrk)(
            ROW_MAJOR,
            uplo(triangle),
            la.trans(),
            n,
            k,
            alpha,
            a.as_ptr(),
            la.ld,
            accum.beta(),
            c.as_mut_ptr(),
            lc.ld,
        );
    }
    true
}

pub(crate) fn trsm<T: Scalar>(
    side: Side,
    triangle: Triangle,
    op_a: Trans,
    diag: Diag,
    alpha: T,
    a: MatRef<'_, T>,
    b: MatMut<'_, T>,
) -> bool {
    let Some(lb) = layout_mut(&b) else {
        return false;
    };
    // Column-major B: solve for Xᵀ, which puts op(A)ᵀ on the other side.
    let (side, op_a, mut b) = if lb.transposed {
        let side = match side {
            Side::Left => Side::Right,
            Side::Right => Side::Left,
        };
        (side, op_a.flip(), b.t())
    } else {
        (side, op_a, b)
    };
    let (Some(la), Some(lb)) = (layout_ref(&a), layout_mut(&b)) else {
        return false;
    };
    // Column-major A: its memory holds Aᵀ, whose triangle is the other one.
    let (triangle, op_a) = if la.transposed {
        (triangle.flip(), op_a.flip())
    } else {
        (triangle, op_a)
    };
    let trans = match op_a {
        Trans::No => NO_TRANS,
        Trans::Yes => TRANS,
    };
    let side = match side {
        Side::Left => LEFT,
        Side::Right => RIGHT,
    };
    let diag = match diag {
        Diag::NonUnit => NON_UNIT,
        Diag::Unit => UNIT,
    };
    let (m, n) = (b.rows() as c_int, b.cols() as c_int);
    // SAFETY: as in `gemm`.
    unsafe {
        (T::blas().trsm)(
            ROW_MAJOR,
            side,
            uplo(triangle),
            trans,
            diag,
            m,
            n,
            alpha,
            a.as_ptr(),
            la.ld,
            b.as_mut_ptr(),
            lb.ld,
        );
    }
    true
}

/// Factors the lower triangle of the square view `a` (`A = L Lᵀ`).
pub(crate) fn potrf_lower<T: Scalar>(mut a: MatMut<'_, T>) -> Option<Result<(), PotrfError>> {
    let l = layout_mut(&a)?;
    // Fortran is column-major: the lower triangle of a row-major view is the upper
    // triangle of the column-major matrix in the same memory.
    let uplo: c_char = if l.transposed { b'L' } else { b'U' } as c_char;
    let n = a.rows() as c_int;
    let mut info: c_int = 0;
    // SAFETY: as in `gemm`; LAPACK reads the scalars through the pointers only.
    unsafe {
        (T::blas().potrf)(&uplo, &n, a.as_mut_ptr(), &l.ld, &mut info, 1);
    }
    assert!(info >= 0, "?potrf rejected argument {}", -info);
    Some(if info == 0 {
        Ok(())
    } else {
        Err(PotrfError::NotPositiveDefinite {
            pivot: info as usize - 1,
        })
    })
}
