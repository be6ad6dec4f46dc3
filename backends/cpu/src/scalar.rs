//! [`Scalar`]: the element types the kernels accept (`f32`, `f64`).

mod sealed {
    /// What the kernels need from an element type; private so that only `f32` and `f64`
    /// implement [`super::Scalar`].
    pub trait Sealed:
        faer::traits::RealField
        + From<u8>
        + Copy
        + Send
        + Sync
        + std::fmt::Debug
        + std::fmt::Display
        + 'static
    {
    }
    impl Sealed for f32 {}
    impl Sealed for f64 {}
}

/// A real floating-point element type the kernels run on: `f32` or `f64`. Sealed.
///
/// ```
/// use dagger_cpu::Scalar;
/// fn half<T: Scalar>(x: T) -> T {
///     x * T::from_f64_rounded(0.5)
/// }
/// assert_eq!(half(3.0f32), 1.5);
/// assert_eq!(f32::NAME, "f32");
/// ```
pub trait Scalar: sealed::Sealed {
    /// `"f32"` or `"f64"`.
    const NAME: &'static str;
    /// Machine epsilon.
    const EPSILON: Self;
    /// Converts (rounding to nearest for `f32`). Named apart from other crates' `from_f64`
    /// so that generic code bounded by this and another numeric trait stays unambiguous.
    fn from_f64_rounded(x: f64) -> Self;
    /// Converts exactly.
    fn to_f64_exact(self) -> f64;

    /// The `?gemm`, `?syrk`, `?trsm`, `?potrf` of OpenBLAS for this type.
    #[cfg(feature = "openblas")]
    #[doc(hidden)]
    fn blas() -> &'static crate::openblas::Routines<Self>;
}

impl Scalar for f32 {
    const NAME: &'static str = "f32";
    const EPSILON: Self = f32::EPSILON;
    fn from_f64_rounded(x: f64) -> Self {
        x as f32
    }
    fn to_f64_exact(self) -> f64 {
        f64::from(self)
    }
    #[cfg(feature = "openblas")]
    fn blas() -> &'static crate::openblas::Routines<Self> {
        &crate::openblas::F32
    }
}

impl Scalar for f64 {
    const NAME: &'static str = "f64";
    const EPSILON: Self = f64::EPSILON;
    fn from_f64_rounded(x: f64) -> Self {
        x
    }
    fn to_f64_exact(self) -> f64 {
        self
    }
    #[cfg(feature = "openblas")]
    fn blas() -> &'static crate::openblas::Routines<Self> {
        &crate::openblas::F64
    }
}
