//! Matrix and vector norms: `DArray::norm`.

use crate::array::{ArrayError, DArray, Element, Float};

/// Which norm [`DArray::norm`] computes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Norm {
    /// The 1-norm: of a matrix, the largest sum of absolute values down a column; of a
    /// vector, the sum of absolute values.
    One,
    /// The ∞-norm: of a matrix, the largest sum of absolute values along a row; of a
    /// vector, the largest absolute value.
    Inf,
    /// The Frobenius norm: the square root of the sum of squares of all elements (the
    /// 2-norm of a vector), scaled by the largest absolute value so that it neither
    /// overflows nor underflows where the result does not.
    Frobenius,
}

impl<T: Float> DArray<T> {
    /// The norm `norm` of a matrix (2-D) or a vector (1-D; the Frobenius norm of any
    /// array), as numpy's and Julia's `norm`/`opnorm`: reductions over blocks, run where
    /// the scope allows. 0 for an empty array; NaN if any element is NaN. Waits for it.
    ///
    /// # Errors
    ///
    /// [`ArrayError::Dimensionality`] for the 1- and ∞-norms of an array of more than two
    /// dimensions; a failed block task.
    ///
    /// ```
    /// use dagger::prelude::*;
    /// use dagger::Norm;
    /// let ctx = Context::builder().threads(2).build()?;
    /// let a = DArray::distribute(&ctx, &ndarray::arr2(&[[1.0, -2.0], [-3.0, 4.0]]), Blocks::new([1, 2]))?;
    /// assert_eq!(a.norm(Norm::One)?, 6.0); // |−2| + |4|
    /// assert_eq!(a.norm(Norm::Inf)?, 7.0); // |−3| + |4|
    /// assert!((a.norm(Norm::Frobenius)? - 30f64.sqrt()).abs() < 1e-12);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn norm(&self, norm: Norm) -> Result<T, ArrayError> {
        if self.is_empty() {
            return Ok(T::ZERO);
        }
        let abs = self.abs();
        let nd = self.ndim();
        let fetch = |t: crate::DTask<T>| t.fetch().map_err(ArrayError::Task);
        // The sum of absolute values is NaN exactly when an element is.
        let total = fetch(abs.sum())?;
        if total.to_f64().is_nan() {
            return Ok(total);
        }
        match (norm, nd) {
            (Norm::One, 1) => Ok(total),
            (Norm::Inf, 1) => fetch(abs.max()?),
            (Norm::One, 2) => fetch(abs.sum_axis(0)?.max()?),
            (Norm::Inf, 2) => fetch(abs.sum_axis(1)?.max()?),
            (Norm::One | Norm::Inf, _) => Err(ArrayError::Dimensionality {
                expected: 2,
                shape: self.shape(),
            }),
            (Norm::Frobenius, _) => {
                let scale = fetch(abs.max()?)?;
                if scale == T::ZERO || scale.to_f64().is_infinite() {
                    return Ok(scale);
                }
                let scaled = &abs / scale;
                let ss = fetch((&scaled * &scaled)?.sum())?;
                Ok(Element::mul(ss.sqrt(), scale))
            }
        }
    }
}
