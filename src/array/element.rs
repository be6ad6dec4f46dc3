//! The element types of a [`DArray`](super::DArray) and the scalar arithmetic its CPU block
//! kernels share with their WGSL twins.

use crate::processor::wgpu::GpuScalar;

mod sealed {
    pub trait Sealed {}
}

/// An element type of a [`DArray`](super::DArray): `f32`, `f64`, `i32` or `u32` — the
/// types a GPU buffer holds.
///
/// Integer arithmetic wraps, and integer division by zero gives the dividend, as in WGSL,
/// so a block computes the same value on a CPU thread and on a GPU.
pub trait Element:
    GpuScalar
    + Copy
    + PartialOrd
    + PartialEq
    + Default
    + std::fmt::Debug
    + ndarray_npy::ReadableElement
    + ndarray_npy::WritableElement
    + sealed::Sealed
{
    /// Zero.
    const ZERO: Self;
    /// One.
    const ONE: Self;
    /// `self + o` (wrapping for integers).
    fn add(self, o: Self) -> Self;
    /// `self - o` (wrapping for integers).
    fn sub(self, o: Self) -> Self;
    /// `self * o` (wrapping for integers).
    fn mul(self, o: Self) -> Self;
    /// `self / o` (for integers: `self` when `o` is zero, wrapping on overflow).
    fn div(self, o: Self) -> Self;
    /// The smaller of the two.
    fn min_of(self, o: Self) -> Self {
        if o < self {
            o
        } else {
            self
        }
    }
    /// The larger of the two.
    fn max_of(self, o: Self) -> Self {
        if o > self {
            o
        } else {
            self
        }
    }
    /// `self^e` for floats (integer arrays have no power operation).
    #[doc(hidden)]
    fn pow_elem(self, e: Self) -> Self;
    /// Converts a count (for means) or a test value.
    fn from_f64(v: f64) -> Self;
    /// Converts to `f64` (for comparisons in tests and for reports).
    fn to_f64(self) -> f64;
}

/// A floating-point element type (`f32`, `f64`): the ones with square roots, logarithms,
/// random constructors and WGSL expressions.
pub trait Float:
    Element + std::ops::Neg<Output = Self> + dagger_cpu::elementwise::RandomFloat
{
    /// π.
    const PI: Self;
    /// `|self|`.
    fn abs(self) -> Self;
    /// Square root.
    fn sqrt(self) -> Self;
    /// `e^self`.
    fn exp(self) -> Self;
    /// Natural logarithm.
    fn ln(self) -> Self;
    /// Sine.
    fn sin(self) -> Self;
    /// Cosine.
    fn cos(self) -> Self;
    /// Hyperbolic tangent.
    fn tanh(self) -> Self;
    /// `self^e`.
    fn powf(self, e: Self) -> Self;
    /// A uniform number in `[0, 1)` from two random words, computed exactly (the same bits
    /// on every processor): 24 bits of `r0` for `f32`, 26 of `r0` and 27 of `r1` for `f64`.
    fn unit(r0: u32, r1: u32) -> Self;
}

macro_rules! int_element {
    ($t:ty) => {
        impl sealed::Sealed for $t {}
        impl Element for $t {
            const ZERO: Self = 0;
            const ONE: Self = 1;
            fn add(self, o: Self) -> Self {
                self.wrapping_add(o)
            }
            fn sub(self, o: Self) -> Self {
                self.wrapping_sub(o)
            }
            fn mul(self, o: Self) -> Self {
                self.wrapping_mul(o)
            }
            fn div(self, o: Self) -> Self {
                if o == 0 {
                    self
                } else {
                    self.wrapping_div(o)
                }
            }
            fn pow_elem(self, e: Self) -> Self {
                self.wrapping_pow(e as u32)
            }
            fn from_f64(v: f64) -> Self {
                v as $t
            }
            fn to_f64(self) -> f64 {
                self as f64
            }
        }
    };
}
int_element!(i32);
int_element!(u32);

macro_rules! float_element {
    ($t:ident) => {
        impl sealed::Sealed for $t {}
        impl Element for $t {
            const ZERO: Self = 0.0;
            const ONE: Self = 1.0;
            fn add(self, o: Self) -> Self {
                self + o
            }
            fn sub(self, o: Self) -> Self {
                self - o
            }
            fn mul(self, o: Self) -> Self {
                self * o
            }
            fn div(self, o: Self) -> Self {
                self / o
            }
            fn min_of(self, o: Self) -> Self {
                self.min(o)
            }
            fn max_of(self, o: Self) -> Self {
                self.max(o)
            }
            fn pow_elem(self, e: Self) -> Self {
                self.powf(e)
            }
            fn from_f64(v: f64) -> Self {
                v as $t
            }
            fn to_f64(self) -> f64 {
                self as f64
            }
        }
        impl Float for $t {
            const PI: Self = std::$t::consts::PI;
            fn abs(self) -> Self {
                $t::abs(self)
            }
            fn sqrt(self) -> Self {
                $t::sqrt(self)
            }
            fn exp(self) -> Self {
                $t::exp(self)
            }
            fn ln(self) -> Self {
                $t::ln(self)
            }
            fn sin(self) -> Self {
                $t::sin(self)
            }
            fn cos(self) -> Self {
                $t::cos(self)
            }
            fn tanh(self) -> Self {
                $t::tanh(self)
            }
            fn powf(self, e: Self) -> Self {
                $t::powf(self, e)
            }
            fn unit(r0: u32, r1: u32) -> Self {
                <$t as dagger_cpu::elementwise::RandomFloat>::uniform(r0, r1)
            }
        }
    };
}

float_element!(f32);
float_element!(f64);
