//! Matrix multiplication of 2-D arrays: one tile task per output block, each a kernel with
//! a CPU implementation (`dagger_cpu::gemm`) and a GPU one (the register-tiled WGSL
//! GEMM of `dagger-wgpu`), so the scope alone decides where tiles run. The tiles are
//! [`gemm`](DArray::gemm)'s.

use dagger_cpu::Trans;
use dagger_wgpu::blas::{self, GemmKernel};

use super::domain::Grid;
use super::{ArrayError, DArray, Float};
use crate::processor::wgpu::GpuScalar;

/// Element types with a GEMM on every processor: `f32` and `f64`.
pub trait Gemm: Float + GpuScalar + dagger_cpu::Scalar {
    #[doc(hidden)]
    const BLAS: blas::Dtype;
}

impl Gemm for f32 {
    const BLAS: blas::Dtype = blas::Dtype::F32;
}

impl Gemm for f64 {
    const BLAS: blas::Dtype = blas::Dtype::F64;
}

impl<T: Gemm> DArray<T> {
    /// The matrix product `self · other` of two 2-D arrays, as a new array blocked by
    /// `self`'s rows and `other`'s columns (`other` is re-blocked along its rows to match
    /// `self`'s columns when they differ). Each output block is one task that runs on a CPU
    /// thread (`dagger_cpu::gemm`, single-threaded per tile) or a GPU (tiled WGSL), as the
    /// scope allows and the cost model prefers.
    ///
    /// ```
    /// use dagger::prelude::*;
    /// let ctx = Context::builder().threads(2).build()?;
    /// let a = DArray::<f64>::ones(&ctx, &[3, 4], Blocks::new(&[2, 2]))?;
    /// let b = DArray::<f64>::fill(&ctx, &[4, 5], Blocks::new(&[3, 3]), 0.5)?;
    /// let c = a.matmul(&b)?.collect2()?;
    /// assert_eq!(c.shape(), &[3, 5]);
    /// assert!(c.iter().all(|&x| x == 2.0));
    /// assert!(a.matmul(&a).is_err(), "4 columns against 3 rows");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn matmul(&self, other: &DArray<T>) -> Result<DArray<T>, ArrayError> {
        let (sa, sb) = (self.shape(), other.shape());
        if sa.len() != 2 || sb.len() != 2 || sa[1] != sb[0] {
            return Err(ArrayError::ShapeMismatch {
                op: "matmul",
                left: sa,
                right: sb,
            });
        }
        let out_grid = Grid {
            cuts: vec![self.grid().cuts[0].clone(), other.grid().cuts[1].clone()],
        };
        let blocks = super::linalg::gemm_tiles(
            GemmKernel::Tiled,
            Trans::No,
            Trans::No,
            T::ONE,
            self,
            other,
            T::ZERO,
            &out_grid,
            None,
        );
        Ok(DArray::from_parts(self.context(), out_grid, blocks))
    }
}
