//! What can go wrong at the DArray API.

use crate::error::TaskError;
use crate::processor::wgpu::KernelError;

use super::expr::ExprError;

/// An error of a [`DArray`](super::DArray) operation.
///
/// Operations check shapes, axes and blockings when they are called, so a mistake is an
/// error at the line that made it; what fails later, inside a block task, arrives as
/// [`ArrayError::Task`] when the result is collected.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ArrayError {
    /// Two arrays that must have the same shape do not.
    ///
    /// ```
    /// # use dagger::ArrayError;
    /// let e = ArrayError::ShapeMismatch { op: "add", left: vec![3, 4], right: vec![3, 5] };
    /// assert_eq!(e.to_string(), "add: the shapes [3, 4] and [3, 5] differ in dimension 1 (4 vs 5)");
    /// ```
    #[error("{op}: the shapes {left:?} and {right:?} {}", shape_difference(.left, .right))]
    ShapeMismatch {
        /// The operation.
        op: &'static str,
        /// The first operand's shape.
        left: Vec<usize>,
        /// The second operand's shape.
        right: Vec<usize>,
    },
    /// A matrix product whose inner dimensions differ: the columns of the left factor
    /// against the rows of the right one (both after any transposition).
    ///
    /// ```
    /// use dagger::prelude::*;
    /// let ctx = Context::builder().threads(1).build()?;
    /// let a = DArray::<f32>::ones(&ctx, [3, 4], Blocks::new([2, 2]))?;
    /// let e = a.matmul(&a).unwrap_err();
    /// assert_eq!(
    ///     e.to_string(),
    ///     "matmul: inner dimensions differ: a is [3, 4] (4 columns), b is [3, 4] (3 rows)"
    /// );
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[error(
        "{op}: inner dimensions differ: {left_name} is {left:?} ({} columns), {right_name} is {right:?} ({} rows)",
        left[1], right[0]
    )]
    InnerDimensions {
        /// The operation.
        op: &'static str,
        /// How the message names the left factor (`a`, `op(a)`).
        left_name: &'static str,
        /// Its shape, rows and columns.
        left: Vec<usize>,
        /// How the message names the right factor.
        right_name: &'static str,
        /// Its shape, rows and columns.
        right: Vec<usize>,
    },
    /// An operation on matrices given an array of another shape: not 2-D, or not square
    /// where a square matrix is needed.
    ///
    /// ```
    /// use dagger::prelude::*;
    /// let ctx = Context::builder().threads(1).build()?;
    /// let a = DArray::<f64>::ones(&ctx, [4, 6], Blocks::new([2, 2]))?;
    /// let e = a.cholesky().unwrap_err();
    /// assert_eq!(e.to_string(), "cholesky: needs a square matrix; a is [4, 6] (4 rows, 6 columns)");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[error("{op}: needs {needs}; {name} is {}", describe_shape(.shape))]
    NotAMatrix {
        /// The operation.
        op: &'static str,
        /// What it needs: "a 2-D array" or "a square matrix".
        needs: &'static str,
        /// The operand, as the message names it.
        name: &'static str,
        /// Its shape.
        shape: Vec<usize>,
    },
    /// A product written into an array of another shape.
    #[error("{op}: the product is {}, but c is {}", describe_shape(.product), describe_shape(.target))]
    TargetShape {
        /// The operation.
        op: &'static str,
        /// The product's shape.
        product: Vec<usize>,
        /// The shape of the array it would be written into.
        target: Vec<usize>,
    },
    /// A block shape with a different number of dimensions than the array.
    #[error("the block shape {blocks:?} has {} dimensions but the array {shape:?} has {}", blocks.len(), shape.len())]
    BlocksRank {
        /// The array's shape.
        shape: Vec<usize>,
        /// The block shape.
        blocks: Vec<usize>,
    },
    /// A block shape with a zero extent.
    #[error(
        "the block shape {blocks:?} has a zero extent; every block dimension must be at least 1"
    )]
    ZeroBlock {
        /// The block shape.
        blocks: Vec<usize>,
    },
    /// An axis beyond the array's dimensions.
    ///
    /// ```
    /// # use dagger::ArrayError;
    /// let e = ArrayError::AxisOutOfRange { axis: 2, ndim: 2 };
    /// assert_eq!(e.to_string(), "axis 2 is out of range for an array of 2 dimensions: use an axis below 2");
    /// ```
    #[error(
        "axis {axis} is out of range for an array of {ndim} dimensions: use an axis below {ndim}"
    )]
    AxisOutOfRange {
        /// The axis.
        axis: usize,
        /// The array's number of dimensions.
        ndim: usize,
    },
    /// A list of axes that is not a permutation of `0..ndim`.
    #[error("{axes:?} is not a permutation of the {ndim} axes")]
    InvalidPermutation {
        /// The axes given.
        axes: Vec<usize>,
        /// The array's number of dimensions.
        ndim: usize,
    },
    /// Slice ranges that do not fit the array.
    #[error("the slice {ranges:?} does not fit the shape {shape:?} (one range per dimension, start <= end <= length)")]
    SliceOutOfBounds {
        /// The ranges.
        ranges: Vec<std::ops::Range<usize>>,
        /// The array's shape.
        shape: Vec<usize>,
    },
    /// A reduction without identity (`min`, `max`) over no elements.
    #[error("{op} of an empty array (shape {shape:?}) has no value")]
    EmptyReduction {
        /// The reduction.
        op: &'static str,
        /// The array's shape.
        shape: Vec<usize>,
    },
    /// `collect1`/`collect2` on an array of another dimensionality.
    #[error("expected a {expected}-dimensional array, found shape {shape:?}")]
    Dimensionality {
        /// The dimensionality asked for.
        expected: usize,
        /// The array's shape.
        shape: Vec<usize>,
    },
    /// More dimensions than block kernels index.
    #[error("arrays have at most {max} dimensions; this one would have {ndim}")]
    TooManyDimensions {
        /// The array's number of dimensions.
        ndim: usize,
        /// The limit.
        max: usize,
    },
    /// A block (or a random array) too large for 32-bit element indices.
    #[error(
        "{what} has {elements} elements; block kernels index at most 2^32 - 1: use smaller blocks"
    )]
    TooLarge {
        /// What is too large.
        what: &'static str,
        /// Its element count.
        elements: u128,
    },
    /// An argsort along an axis longer than its `u32` indices count.
    #[error(
        "argsort along an axis of {len} elements: its u32 indices count at most 2^32 - 1; \
         argsort slices of that axis instead"
    )]
    IndexOverflow {
        /// The axis's length.
        len: usize,
    },
    /// An array, a block or a collected result larger than the memory arrays may take
    /// (the machine's RAM, or [`set_memory_limit`](super::set_memory_limit) /
    /// `DAGGER_MEMORY_LIMIT`): refused before anything is allocated.
    #[error("{what} needs {bytes} bytes, more than the {limit} bytes {within}; {advice}")]
    OutOfMemory {
        /// What would not fit: the array with its shape and element type, or a block.
        what: String,
        /// The bytes it needs.
        bytes: u64,
        /// The limit it was checked against.
        limit: u64,
        /// What the limit is made of.
        within: &'static str,
        /// What to change.
        advice: &'static str,
    },
    /// Reading or writing a file failed (the cause is the source).
    #[error("{op} {}", path.display())]
    File {
        /// What was being done.
        op: &'static str,
        /// The file.
        path: std::path::PathBuf,
        /// Why it failed.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// Reading or writing a Zarr store failed; the source ([`ZarrError`](super::ZarrError))
    /// says why and what to change.
    #[cfg(feature = "zarr")]
    #[error("{op} {}", path.display())]
    Zarr {
        /// What was being done.
        op: &'static str,
        /// The store's directory.
        path: std::path::PathBuf,
        /// Why it failed.
        #[source]
        source: super::zarr::ZarrError,
    },
    /// `concatenate` of no arrays.
    #[error("concatenate needs at least one array")]
    NothingToConcatenate,
    /// A WGSL expression outside the supported subset; the message is the expression's
    /// own ([`ExprError`]), which says where and what.
    #[error(transparent)]
    Expr(#[from] ExprError),
    /// A block kernel failed to build.
    #[error("building the block kernel `{name}`")]
    Kernel {
        /// The kernel.
        name: String,
        /// Why.
        #[source]
        source: Box<KernelError>,
    },
    /// A Cholesky factorization met a pivot that is not positive: the matrix is not
    /// (numerically) positive definite.
    #[error("the matrix is not positive definite: the factorization of diagonal block {block} broke down at its pivot {pivot} (row {row} of the matrix)")]
    NotPositiveDefinite {
        /// The diagonal block (its block index along either axis).
        block: usize,
        /// The pivot within the block, from 0.
        pivot: usize,
        /// The same pivot as a row of the matrix.
        row: usize,
    },
    /// An LU factorization met an exactly zero pivot, or a triangular solve a zero on the
    /// diagonal: the matrix is singular there (or, for LU without pivoting, may need row
    /// interchanges).
    #[error("the matrix is singular: diagonal block {block} has a zero pivot at {pivot} (row {row} of the matrix); without pivoting a nonsingular matrix can meet one too")]
    Singular {
        /// The diagonal block (its block index along either axis).
        block: usize,
        /// The pivot within the block, from 0.
        pivot: usize,
        /// The same pivot as a row of the matrix.
        row: usize,
    },
    /// A stencil that cannot be applied: no taps, offsets of different lengths, or not one
    /// entry per dimension of the array.
    #[error("invalid stencil: {message}")]
    InvalidStencil {
        /// What is wrong and what to change.
        message: String,
    },
    /// A block task failed.
    #[error("a block of the array could not be computed")]
    Task(#[from] TaskError),
}

/// Where two shapes differ, for [`ArrayError::ShapeMismatch`].
fn shape_difference(left: &[usize], right: &[usize]) -> String {
    if left.len() != right.len() {
        return format!(
            "differ in their number of dimensions ({} vs {})",
            left.len(),
            right.len()
        );
    }
    match left.iter().zip(right).position(|(l, r)| l != r) {
        Some(d) => format!("differ in dimension {d} ({} vs {})", left[d], right[d]),
        None => "do not fit together".into(),
    }
}

/// A shape with its rows and columns spelled out when it is a matrix.
fn describe_shape(shape: &[usize]) -> String {
    match shape {
        [r, c] => format!("{shape:?} ({r} rows, {c} columns)"),
        _ => format!("{shape:?} ({} dimensions)", shape.len()),
    }
}
