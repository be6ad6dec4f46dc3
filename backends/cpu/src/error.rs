//! [`PotrfError`]: what a factorization can find wrong with its data.

/// Why [`crate::potrf`] could not factor a block.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PotrfError {
    /// The block is not (numerically) symmetric positive definite: the Schur complement had a
    /// pivot that is not positive (or is NaN) at diagonal position `pivot` (0-based; LAPACK's
    /// `info` is `pivot + 1`). The block is left partly overwritten.
    #[error(
        "the matrix is not positive definite: pivot {pivot} (0-based) of the Cholesky \
         factorization is not positive; check that the block is symmetric positive definite \
         (e.g. add a multiple of the identity)"
    )]
    NotPositiveDefinite {
        /// 0-based index of the first diagonal element whose pivot is not positive.
        pivot: usize,
    },
}

/// Why [`crate::getrf`] could not factor a block.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum GetrfError {
    /// The pivot at diagonal position `pivot` (0-based; LAPACK's `info` is `pivot + 1`) is
    /// exactly zero. With partial pivoting the block is singular; without pivoting it may
    /// also be a nonsingular block that needs row interchanges. The block is left partly
    /// overwritten.
    #[error(
        "pivot {pivot} (0-based) of the LU factorization is zero: the matrix is singular, \
         or (without pivoting) needs row interchanges"
    )]
    ZeroPivot {
        /// 0-based index of the first zero pivot.
        pivot: usize,
    },
}
