//! [`MatRef`] and [`MatMut`]: strided views of a block in host memory.

use std::fmt;
use std::marker::PhantomData;
use std::ptr::NonNull;

/// Elements a row-major `rows x cols` view with leading dimension `ld` spans.
#[track_caller]
fn row_major_span(what: &str, len: usize, rows: usize, cols: usize, ld: usize) -> usize {
    assert!(
        ld >= cols,
        "{what}: leading dimension {ld} is smaller than the number of columns {cols}"
    );
    let needed = if rows == 0 || cols == 0 {
        0
    } else {
        (rows - 1)
            .checked_mul(ld)
            .and_then(|x| x.checked_add(cols))
            .expect("matrix span overflows usize")
    };
    assert!(
        len >= needed,
        "{what}: a {rows}x{cols} row-major matrix with leading dimension {ld} needs {needed} \
         elements but the slice has {len}"
    );
    assert!(
        isize::try_from(needed).is_ok(),
        "{what}: matrix span overflows isize"
    );
    needed
}

/// A read-only view of a `rows x cols` matrix: a pointer and a stride per dimension, so
/// element `(i, j)` is at offset `i * row_stride + j * col_stride`.
///
/// Made from a row-major slice ([`MatRef::new`], [`MatRef::with_ld`]) or from an
/// `ndarray::ArrayView2` of any strides (`From`). `Copy`, and as cheap as a slice.
///
/// ```
/// use dagger_cpu::MatRef;
///
/// // Rows of 4 elements of which the first 3 belong to the matrix.
/// let data = [1.0f32, 2.0, 3.0, -1.0, 4.0, 5.0, 6.0];
/// let a = MatRef::with_ld(&data, 2, 3, 4);
/// assert_eq!((a.rows(), a.cols()), (2, 3));
/// assert_eq!(a.get(1, 2), 6.0);
/// assert_eq!(a.t().get(2, 1), 6.0);
///
/// let nd = ndarray::array![[1.0f64, 2.0], [3.0, 4.0]];
/// let v = MatRef::from(nd.t());
/// assert_eq!(v.get(0, 1), 3.0);
/// ```
pub struct MatRef<'a, T> {
    ptr: NonNull<T>,
    rows: usize,
    cols: usize,
    row_stride: isize,
    col_stride: isize,
    marker: PhantomData<&'a [T]>,
}

// SAFETY: a `MatRef` is a shared borrow of `T`s, like `&[T]`.
unsafe impl<T: Sync> Send for MatRef<'_, T> {}
// SAFETY: as above.
unsafe impl<T: Sync> Sync for MatRef<'_, T> {}

impl<T> Clone for MatRef<'_, T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for MatRef<'_, T> {}

impl<T: fmt::Debug + Copy> fmt::Debug for MatRef<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let rows: Vec<Vec<T>> = (0..self.rows)
            .map(|i| (0..self.cols).map(|j| self.get(i, j)).collect())
            .collect();
        f.debug_struct("MatRef")
            .field("rows", &self.rows)
            .field("cols", &self.cols)
            .field("data", &rows)
            .finish()
    }
}

impl<'a, T> MatRef<'a, T> {
    /// A `rows x cols` row-major view of the first `rows * cols` elements of `data`.
    ///
    /// # Panics
    /// If `data` has fewer than `rows * cols` elements.
    #[track_caller]
    pub fn new(data: &'a [T], rows: usize, cols: usize) -> Self {
        Self::with_ld(data, rows, cols, cols)
    }

    /// A `rows x cols` row-major view whose rows start `ld` elements apart (BLAS's `lda`),
    /// e.g. a block of a larger row-major matrix.
    ///
    /// # Panics
    /// If `ld < cols` or `data` has fewer than `(rows - 1) * ld + cols` elements.
    #[track_caller]
    pub fn with_ld(data: &'a [T], rows: usize, cols: usize, ld: usize) -> Self {
        row_major_span("MatRef::with_ld", data.len(), rows, cols, ld);
        // SAFETY: every element the view reaches lies inside `data`, borrowed for 'a.
        unsafe { Self::from_raw_parts(data.as_ptr(), rows, cols, ld as isize, 1) }
    }

    /// A view from a pointer and strides.
    ///
    /// # Safety
    /// Every `ptr + i * row_stride + j * col_stride` for `i < rows`, `j < cols` must point
    /// to an initialized `T` that nothing writes during `'a`; `ptr` must be non-null and
    /// aligned even when the view is empty.
    pub unsafe fn from_raw_parts(
        ptr: *const T,
        rows: usize,
        cols: usize,
        row_stride: isize,
        col_stride: isize,
    ) -> Self {
        Self {
            ptr: NonNull::new(ptr.cast_mut()).expect("MatRef::from_raw_parts: null pointer"),
            rows,
            cols,
            row_stride,
            col_stride,
            marker: PhantomData,
        }
    }

    /// Number of rows.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Number of columns.
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// `(rows, cols)`.
    pub fn shape(&self) -> (usize, usize) {
        (self.rows, self.cols)
    }

    /// Distance in elements between `(i, j)` and `(i + 1, j)`.
    pub fn row_stride(&self) -> isize {
        self.row_stride
    }

    /// Distance in elements between `(i, j)` and `(i, j + 1)`.
    pub fn col_stride(&self) -> isize {
        self.col_stride
    }

    /// The transposed view (no copy).
    pub fn t(self) -> Self {
        Self {
            rows: self.cols,
            cols: self.rows,
            row_stride: self.col_stride,
            col_stride: self.row_stride,
            ..self
        }
    }

    /// Element `(i, j)`.
    ///
    /// # Panics
    /// If `(i, j)` is outside the view.
    #[track_caller]
    pub fn get(&self, i: usize, j: usize) -> T
    where
        T: Copy,
    {
        assert!(
            i < self.rows && j < self.cols,
            "index ({i}, {j}) is outside a {}x{} matrix",
            self.rows,
            self.cols
        );
        // SAFETY: in bounds, per the constructor's guarantee.
        unsafe { *self.ptr.as_ptr().offset(self.offset(i, j)) }
    }

    fn offset(&self, i: usize, j: usize) -> isize {
        i as isize * self.row_stride + j as isize * self.col_stride
    }

    #[cfg(any(feature = "openblas", target_arch = "x86_64"))]
    pub(crate) fn as_ptr(&self) -> *const T {
        self.ptr.as_ptr()
    }

    /// The same view as faer's type.
    pub(crate) fn faer(self) -> faer::MatRef<'a, T> {
        // SAFETY: the same elements and lifetime this view was built with.
        unsafe {
            faer::MatRef::from_raw_parts(
                self.ptr.as_ptr(),
                self.rows,
                self.cols,
                self.row_stride,
                self.col_stride,
            )
        }
    }
}

impl<'a, T> From<ndarray::ArrayView2<'a, T>> for MatRef<'a, T> {
    fn from(view: ndarray::ArrayView2<'a, T>) -> Self {
        let (rows, cols) = view.dim();
        let [rs, cs] = [view.strides()[0], view.strides()[1]];
        // SAFETY: ndarray guarantees every indexed element is valid and borrowed for 'a.
        unsafe { Self::from_raw_parts(view.as_ptr(), rows, cols, rs, cs) }
    }
}

impl<'a, T> From<&'a ndarray::Array2<T>> for MatRef<'a, T> {
    fn from(array: &'a ndarray::Array2<T>) -> Self {
        array.view().into()
    }
}

impl<'a, T> From<MatMut<'a, T>> for MatRef<'a, T> {
    fn from(m: MatMut<'a, T>) -> Self {
        m.into_ref()
    }
}

/// A mutable view of a `rows x cols` matrix; like [`MatRef`] but unique, so not `Copy`:
/// reborrow it with [`MatMut::rb`] to pass it on and keep using it.
///
/// ```
/// use dagger_cpu::MatMut;
///
/// let mut data = [0.0f64; 6];
/// let mut c = MatMut::new(&mut data, 2, 3);
/// c.set(1, 0, 7.0);
/// c.rb().t().set(2, 0, 8.0);
/// assert_eq!(data, [0.0, 0.0, 8.0, 7.0, 0.0, 0.0]);
///
/// let mut nd = ndarray::Array2::<f32>::zeros((2, 2));
/// MatMut::from(nd.view_mut()).set(0, 1, 1.0);
/// assert_eq!(nd[[0, 1]], 1.0);
/// ```
pub struct MatMut<'a, T> {
    ptr: NonNull<T>,
    rows: usize,
    cols: usize,
    row_stride: isize,
    col_stride: isize,
    marker: PhantomData<&'a mut [T]>,
}

// SAFETY: a `MatMut` is a unique borrow of `T`s, like `&mut [T]`.
unsafe impl<T: Send> Send for MatMut<'_, T> {}
// SAFETY: as above.
unsafe impl<T: Sync> Sync for MatMut<'_, T> {}

impl<T: fmt::Debug + Copy> fmt::Debug for MatMut<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.as_ref().fmt(f)
    }
}

impl<'a, T> MatMut<'a, T> {
    /// A `rows x cols` row-major view of the first `rows * cols` elements of `data`.
    ///
    /// # Panics
    /// If `data` has fewer than `rows * cols` elements.
    #[track_caller]
    pub fn new(data: &'a mut [T], rows: usize, cols: usize) -> Self {
        Self::with_ld(data, rows, cols, cols)
    }

    /// A `rows x cols` row-major view whose rows start `ld` elements apart.
    ///
    /// # Panics
    /// If `ld < cols` or `data` has fewer than `(rows - 1) * ld + cols` elements.
    #[track_caller]
    pub fn with_ld(data: &'a mut [T], rows: usize, cols: usize, ld: usize) -> Self {
        row_major_span("MatMut::with_ld", data.len(), rows, cols, ld);
        // SAFETY: every element lies inside `data`, uniquely borrowed for 'a, and distinct
        // indices reach distinct elements since ld >= cols.
        unsafe { Self::from_raw_parts(data.as_mut_ptr(), rows, cols, ld as isize, 1) }
    }

    /// A view from a pointer and strides.
    ///
    /// # Safety
    /// As [`MatRef::from_raw_parts`], and moreover distinct indices must reach distinct
    /// elements and nothing else may read or write them during `'a`.
    pub unsafe fn from_raw_parts(
        ptr: *mut T,
        rows: usize,
        cols: usize,
        row_stride: isize,
        col_stride: isize,
    ) -> Self {
        Self {
            ptr: NonNull::new(ptr).expect("MatMut::from_raw_parts: null pointer"),
            rows,
            cols,
            row_stride,
            col_stride,
            marker: PhantomData,
        }
    }

    /// Number of rows.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Number of columns.
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// `(rows, cols)`.
    pub fn shape(&self) -> (usize, usize) {
        (self.rows, self.cols)
    }

    /// A shorter-lived mutable view of the same elements.
    pub fn rb(&mut self) -> MatMut<'_, T> {
        MatMut {
            ptr: self.ptr,
            rows: self.rows,
            cols: self.cols,
            row_stride: self.row_stride,
            col_stride: self.col_stride,
            marker: PhantomData,
        }
    }

    /// A read-only view of the same elements.
    pub fn as_ref(&self) -> MatRef<'_, T> {
        // SAFETY: shared access for as long as `self` is borrowed.
        unsafe {
            MatRef::from_raw_parts(
                self.ptr.as_ptr(),
                self.rows,
                self.cols,
                self.row_stride,
                self.col_stride,
            )
        }
    }

    /// Turns the view into a read-only one for the whole lifetime.
    pub fn into_ref(self) -> MatRef<'a, T> {
        // SAFETY: the unique borrow becomes a shared one.
        unsafe {
            MatRef::from_raw_parts(
                self.ptr.as_ptr(),
                self.rows,
                self.cols,
                self.row_stride,
                self.col_stride,
            )
        }
    }

    /// The transposed view (no copy).
    pub fn t(self) -> Self {
        Self {
            rows: self.cols,
            cols: self.rows,
            row_stride: self.col_stride,
            col_stride: self.row_stride,
            ..self
        }
    }

    /// Element `(i, j)`.
    ///
    /// # Panics
    /// If `(i, j)` is outside the view.
    #[track_caller]
    pub fn get(&self, i: usize, j: usize) -> T
    where
        T: Copy,
    {
        self.as_ref().get(i, j)
    }

    /// Sets element `(i, j)`.
    ///
    /// # Panics
    /// If `(i, j)` is outside the view.
    #[track_caller]
    pub fn set(&mut self, i: usize, j: usize, value: T) {
        assert!(
            i < self.rows && j < self.cols,
            "index ({i}, {j}) is outside a {}x{} matrix",
            self.rows,
            self.cols
        );
        let offset = i as isize * self.row_stride + j as isize * self.col_stride;
        // SAFETY: in bounds and uniquely borrowed.
        unsafe { *self.ptr.as_ptr().offset(offset) = value }
    }

    /// Copies `src`, of the same shape, into this view, whatever the layouts of the two.
    ///
    /// Between layouts that differ (a row-major block into a column-major panel, say) the
    /// copy goes by 8x8 squares, so that each cache line read or written is used whole
    /// before it leaves the cache, instead of one element per line and per page. For 8-byte
    /// elements on a CPU with AVX-512 a square is transposed in registers: eight 512x512
    /// `f64` blocks into a 4096x512 column-major panel and back took 2.2–2.6 ms and 3.0–3.7
    /// ms, against 3.3–4.3 and 5.6–6.7 element by element (`cargo run -p dagger-cpu
    /// --release --example copy_rate`). Between equal layouts it copies whole rows.
    ///
    /// # Panics
    /// If the shapes differ.
    ///
    /// ```
    /// use dagger_cpu::{MatMut, MatRef};
    ///
    /// let a = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]; // 2x3, row-major
    /// let mut col_major = [0.0; 6];
    /// MatMut::new(&mut col_major, 3, 2).t().copy_from(MatRef::new(&a, 2, 3));
    /// assert_eq!(col_major, [1.0, 4.0, 2.0, 5.0, 3.0, 6.0]);
    /// ```
    #[track_caller]
    pub fn copy_from(&mut self, src: MatRef<'_, T>)
    where
        T: Copy,
    {
        assert_eq!(
            self.shape(),
            src.shape(),
            "copy_from: a {}x{} source into a {}x{} view",
            src.rows(),
            src.cols(),
            self.rows,
            self.cols
        );
        // Walk rows of the destination where its rows are contiguous, else its columns.
        let (dst, src) = if self.col_stride.unsigned_abs() <= self.row_stride.unsigned_abs() {
            (self.rb(), src)
        } else {
            (self.rb().t(), src.t())
        };
        let (m, n) = dst.shape();
        let (drs, dcs, srs, scs) = (
            dst.row_stride,
            dst.col_stride,
            src.row_stride,
            src.col_stride,
        );
        let (d, s) = (dst.ptr.as_ptr(), src.as_ptr());
        if m == 0 || n == 0 {
            return;
        }
        if dcs == 1 && scs == 1 && drs >= 0 && srs >= 0 {
            // The same layout: a row at a time.
            for i in 0..m as isize {
                // SAFETY: row `i` of both views is `n` contiguous elements inside them; the
                // destination is uniquely borrowed and cannot overlap the shared source.
                unsafe { std::ptr::copy_nonoverlapping(s.offset(i * srs), d.offset(i * drs), n) };
            }
            return;
        }
        #[cfg(target_arch = "x86_64")]
        if dcs == 1
            && srs == 1
            && drs > 0
            && scs > 0
            && size_of::<T>() == 8
            && align_of::<T>() == 8
            && std::arch::is_x86_feature_detected!("avx512f")
        {
            // SAFETY: AVX-512F is present; `T` is a plain 8-byte, 8-aligned `Copy` value, so
            // its bits move as a `u64`; the destination (rows contiguous, `drs` apart) and the
            // source (columns contiguous, `scs` apart) have this shape and do not overlap.
            unsafe {
                crate::transpose::transpose_u64(
                    d.cast(),
                    drs as usize,
                    s.cast(),
                    scs as usize,
                    m,
                    n,
                )
            };
            return;
        }
        const SQUARE: usize = 8;
        for i0 in (0..m).step_by(SQUARE) {
            let rows = i0..(i0 + SQUARE).min(m);
            for j0 in (0..n).step_by(SQUARE) {
                let cols = j0..(j0 + SQUARE).min(n);
                for i in rows.clone() {
                    for j in cols.clone() {
                        let (i, j) = (i as isize, j as isize);
                        // SAFETY: `(i, j)` is inside both views, which have this shape; the
                        // destination is uniquely borrowed and cannot overlap the shared
                        // source.
                        unsafe { *d.offset(i * drs + j * dcs) = *s.offset(i * srs + j * scs) };
                    }
                }
            }
        }
    }

    pub(crate) fn row_stride(&self) -> isize {
        self.row_stride
    }

    pub(crate) fn col_stride(&self) -> isize {
        self.col_stride
    }

    pub(crate) fn as_mut_ptr(&mut self) -> *mut T {
        self.ptr.as_ptr()
    }

    /// The same view as faer's type.
    pub(crate) fn faer(self) -> faer::MatMut<'a, T> {
        // SAFETY: the same elements and lifetime this view was built with.
        unsafe {
            faer::MatMut::from_raw_parts_mut(
                self.ptr.as_ptr(),
                self.rows,
                self.cols,
                self.row_stride,
                self.col_stride,
            )
        }
    }
}

impl<'a, T> From<ndarray::ArrayViewMut2<'a, T>> for MatMut<'a, T> {
    fn from(mut view: ndarray::ArrayViewMut2<'a, T>) -> Self {
        let (rows, cols) = view.dim();
        let [rs, cs] = [view.strides()[0], view.strides()[1]];
        // SAFETY: ndarray guarantees the indexed elements are valid, distinct (a mutable
        // view cannot alias itself) and uniquely borrowed for 'a.
        unsafe { Self::from_raw_parts(view.as_mut_ptr(), rows, cols, rs, cs) }
    }
}

impl<'a, T> From<&'a mut ndarray::Array2<T>> for MatMut<'a, T> {
    fn from(array: &'a mut ndarray::Array2<T>) -> Self {
        array.view_mut().into()
    }
}

#[cfg(test)]
mod tests {
    use super::{MatMut, MatRef};

    /// Element `(i, j)` of the test matrices: distinct everywhere.
    fn value(i: usize, j: usize) -> f64 {
        (i * 1000 + j) as f64
    }

    #[test]
    fn copy_from_copies_between_every_pair_of_layouts() {
        // Shapes on both sides of the 8x8 squares, row- and column-major, with and
        // without padding between rows (columns).
        for (m, n) in [
            (1, 1),
            (3, 17),
            (8, 8),
            (9, 7),
            (16, 24),
            (23, 40),
            (41, 17),
        ] {
            for (src_cm, dst_cm) in [(false, false), (false, true), (true, false), (true, true)] {
                for pad in [0, 3] {
                    let layout = |cm: bool| if cm { (n, m + pad) } else { (m, n + pad) };
                    let (so, sl) = layout(src_cm);
                    let mut src = vec![-1.0; so * sl];
                    for i in 0..m {
                        for j in 0..n {
                            let at = if src_cm { j * sl + i } else { i * sl + j };
                            src[at] = value(i, j);
                        }
                    }
                    let (d_outer, dl) = layout(dst_cm);
                    let mut dst = vec![-2.0; d_outer * dl];
                    {
                        let s = MatRef::with_ld(&src, so, if src_cm { m } else { n }, sl);
                        let s = if src_cm { s.t() } else { s };
                        let d = MatMut::with_ld(&mut dst, d_outer, if dst_cm { m } else { n }, dl);
                        let mut d = if dst_cm { d.t() } else { d };
                        d.copy_from(s);
                    }
                    for o in 0..d_outer {
                        for e in 0..dl {
                            let (i, j) = if dst_cm { (e, o) } else { (o, e) };
                            let want = if i < m && j < n { value(i, j) } else { -2.0 };
                            assert_eq!(
                                dst[o * dl + e],
                                want,
                                "{m}x{n} src col-major {src_cm} dst col-major {dst_cm} pad {pad}"
                            );
                        }
                    }
                }
            }
        }
    }

    #[test]
    #[should_panic(expected = "copy_from: a 2x3 source into a 3x2 view")]
    fn copy_from_of_another_shape_is_a_panic() {
        let src = [0.0; 6];
        let mut dst = [0.0; 6];
        MatMut::new(&mut dst, 3, 2).copy_from(MatRef::new(&src, 2, 3));
    }
}
