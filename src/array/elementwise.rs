//! Elementwise operations: built-in functions, operators between arrays and with scalars,
//! `map` with a Rust closure and `map_wgsl` with a WGSL expression.

use std::ops::{Add, Div, Mul, Neg, Sub};
use std::sync::Arc;

use super::element::{Element, Float};
use super::error::ArrayError;
use super::expr::Expr;
use super::kernels::{self, Binary, Unary};
use super::{host_options, Block, DArray};
use crate::Chunk;

impl<T: Element> DArray<T> {
    /// Checks that `other` has this array's shape and returns it blocked like this one.
    pub(crate) fn conformable(
        &self,
        other: &DArray<T>,
        op: &'static str,
    ) -> Result<DArray<T>, ArrayError> {
        if self.shape() != other.shape() {
            return Err(ArrayError::ShapeMismatch {
                op,
                left: self.shape(),
                right: other.shape(),
            });
        }
        Ok(other.aligned_to(self.grid()))
    }

    pub(crate) fn zip_with(
        &self,
        other: &DArray<T>,
        op: Binary,
        name: &'static str,
    ) -> Result<DArray<T>, ArrayError> {
        let other = self.conformable(other, name)?;
        let kernel = kernels::binary::<T>(op).expect("the built-in elementwise kernels build");
        let ctx = self.context();
        let host = op == Binary::Pow && Self::is_f64();
        let blocks = self
            .blocks()
            .iter()
            .zip(other.blocks())
            .enumerate()
            .map(|(i, (a, b))| {
                let owner = self.owner(i);
                Self::launch_owned(ctx, owner, host, &kernel, (), vec![a.arg(), b.arg()])
            })
            .collect();
        Ok(DArray::from_parts(ctx, self.grid().clone(), blocks))
    }

    /// `op(x, s)` for each element `x` (or `op(s, x)` when `scalar_first`).
    pub(crate) fn with_scalar(&self, s: T, op: Binary, scalar_first: bool) -> DArray<T> {
        let kernel = kernels::binary::<T>(op).expect("the built-in elementwise kernels build");
        let ctx = self.context();
        let scalar = Chunk::new(vec![s]);
        let host = op == Binary::Pow && Self::is_f64();
        let blocks = self
            .blocks()
            .iter()
            .enumerate()
            .map(|(i, b)| {
                let args = if scalar_first {
                    vec![(&scalar).into(), b.arg()]
                } else {
                    vec![b.arg(), (&scalar).into()]
                };
                Self::launch_owned(ctx, self.owner(i), host, &kernel, (), args)
            })
            .collect();
        DArray::from_parts(ctx, self.grid().clone(), blocks)
    }

    /// The elementwise minimum of two arrays of the same shape.
    pub fn minimum(&self, other: &DArray<T>) -> Result<DArray<T>, ArrayError> {
        self.zip_with(other, Binary::Min, "minimum")
    }

    /// The elementwise maximum of two arrays of the same shape.
    pub fn maximum(&self, other: &DArray<T>) -> Result<DArray<T>, ArrayError> {
        self.zip_with(other, Binary::Max, "maximum")
    }

    /// `min(x, s)` for each element.
    pub fn minimum_scalar(&self, s: T) -> DArray<T> {
        self.with_scalar(s, Binary::Min, false)
    }

    /// `max(x, s)` for each element.
    pub fn maximum_scalar(&self, s: T) -> DArray<T> {
        self.with_scalar(s, Binary::Max, false)
    }

    /// `f(x)` for each element, with a Rust closure on CPU threads (a GPU scope in effect
    /// is replaced by the CPU threads for these tasks). For an operation that also runs on
    /// GPUs, use [`map_wgsl`](Self::map_wgsl) or the built-in functions.
    ///
    /// ```
    /// use dagger::prelude::*;
    /// let ctx = Context::builder().threads(2).build()?;
    /// let a = DArray::<i32>::fill(&ctx, [4], Blocks::new([3]), 5)?;
    /// let b: DArray<f32> = a.map(|x| x as f32 / 2.0);
    /// assert_eq!(b.collect1()?.to_vec(), vec![2.5; 4]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn map<U: Element>(&self, f: impl Fn(T) -> U + Send + Sync + 'static) -> DArray<U> {
        let f = Arc::new(f);
        let ctx = self.context();
        let opts = host_options(ctx).name("map");
        let blocks = self
            .blocks()
            .iter()
            .map(|b| {
                let f = f.clone();
                Block::Task(ctx.spawn_with(
                    opts.clone(),
                    move |v: Arc<Vec<T>>| v.iter().map(|&x| f(x)).collect::<Vec<U>>(),
                    (b.shared(),),
                ))
            })
            .collect();
        DArray::from_parts(ctx, self.grid().clone(), blocks)
    }
}

impl<T: Float> DArray<T> {
    fn unary(&self, op: Unary) -> Result<DArray<T>, ArrayError> {
        let kernel = kernels::unary::<T>(&op)?;
        let ctx = self.context();
        let host = op.transcendental() && Self::is_f64();
        let blocks = self
            .blocks()
            .iter()
            .enumerate()
            .map(|(i, b)| {
                // Kernels made from expressions stay in this process.
                let owner = if kernel.kernel().is_local() {
                    0
                } else {
                    self.owner(i)
                };
                Self::launch_owned(ctx, owner, host, &kernel, (), vec![b.arg()])
            })
            .collect();
        Ok(DArray::from_parts(ctx, self.grid().clone(), blocks))
    }

    fn builtin(&self, op: Unary) -> DArray<T> {
        self.unary(op)
            .expect("the built-in elementwise kernels build")
    }

    /// `|x|`.
    pub fn abs(&self) -> DArray<T> {
        self.builtin(Unary::Abs)
    }

    /// `√x`.
    pub fn sqrt(&self) -> DArray<T> {
        self.builtin(Unary::Sqrt)
    }

    /// `eˣ`.
    pub fn exp(&self) -> DArray<T> {
        self.builtin(Unary::Exp)
    }

    /// The natural logarithm.
    pub fn ln(&self) -> DArray<T> {
        self.builtin(Unary::Ln)
    }

    /// The sine.
    pub fn sin(&self) -> DArray<T> {
        self.builtin(Unary::Sin)
    }

    /// The cosine.
    pub fn cos(&self) -> DArray<T> {
        self.builtin(Unary::Cos)
    }

    /// The hyperbolic tangent.
    pub fn tanh(&self) -> DArray<T> {
        self.builtin(Unary::Tanh)
    }

    /// `xᵉ` for each element.
    pub fn powf(&self, e: T) -> DArray<T> {
        self.with_scalar(e, Binary::Pow, false)
    }

    /// `xʸ` elementwise for two arrays of the same shape.
    pub fn pow(&self, other: &DArray<T>) -> Result<DArray<T>, ArrayError> {
        self.zip_with(other, Binary::Pow, "pow")
    }

    /// Applies a WGSL expression in `x` to each element: on a GPU as WGSL, on a CPU thread
    /// by evaluating the same expression. The expression may use numbers, `x`, `+ - * /`,
    /// unary `-`, parentheses, and `abs sqrt exp log sin cos tanh pow min max`; anything
    /// else is an error here, at the call. In `f64`, an expression calling `exp`, `log`,
    /// `pow` or trigonometry runs on CPU threads (GPUs evaluate those in 32 bits only).
    ///
    /// ```
    /// use dagger::prelude::*;
    /// let ctx = Context::builder().threads(2).build()?;
    /// let a = DArray::<f32>::fill(&ctx, [10], Blocks::new([4]), 3.0)?;
    /// let b = a.map_wgsl("x * 2.0 + max(x, 1.0)")?;
    /// assert_eq!(b.collect1()?.to_vec(), vec![9.0; 10]);
    /// assert!(a.map_wgsl("x + y").is_err());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn map_wgsl(&self, expr: &str) -> Result<DArray<T>, ArrayError> {
        let e = Expr::parse(expr)?;
        self.unary(Unary::Expr(Arc::new(e)))
    }
}

impl<T: Float> Neg for &DArray<T> {
    type Output = DArray<T>;
    fn neg(self) -> DArray<T> {
        self.builtin(Unary::Neg)
    }
}

impl<T: Float> Neg for DArray<T> {
    type Output = DArray<T>;
    fn neg(self) -> DArray<T> {
        -&self
    }
}

macro_rules! operator {
    ($tr:ident, $m:ident, $op:expr, $name:literal) => {
        /// Elementwise between arrays of the same shape; a shape mismatch is an `Err`.
        impl<T: Element> $tr<&DArray<T>> for &DArray<T> {
            type Output = Result<DArray<T>, ArrayError>;
            fn $m(self, rhs: &DArray<T>) -> Self::Output {
                self.zip_with(rhs, $op, $name)
            }
        }
        impl<T: Element> $tr<DArray<T>> for &DArray<T> {
            type Output = Result<DArray<T>, ArrayError>;
            fn $m(self, rhs: DArray<T>) -> Self::Output {
                self.zip_with(&rhs, $op, $name)
            }
        }
        impl<T: Element> $tr<&DArray<T>> for DArray<T> {
            type Output = Result<DArray<T>, ArrayError>;
            fn $m(self, rhs: &DArray<T>) -> Self::Output {
                self.zip_with(rhs, $op, $name)
            }
        }
        impl<T: Element> $tr<DArray<T>> for DArray<T> {
            type Output = Result<DArray<T>, ArrayError>;
            fn $m(self, rhs: DArray<T>) -> Self::Output {
                self.zip_with(&rhs, $op, $name)
            }
        }
        /// Elementwise with a scalar.
        impl<T: Element> $tr<T> for &DArray<T> {
            type Output = DArray<T>;
            fn $m(self, rhs: T) -> DArray<T> {
                self.with_scalar(rhs, $op, false)
            }
        }
        impl<T: Element> $tr<T> for DArray<T> {
            type Output = DArray<T>;
            fn $m(self, rhs: T) -> DArray<T> {
                self.with_scalar(rhs, $op, false)
            }
        }
    };
}

operator!(Add, add, Binary::Add, "add");
operator!(Sub, sub, Binary::Sub, "sub");
operator!(Mul, mul, Binary::Mul, "mul");
operator!(Div, div, Binary::Div, "div");

macro_rules! scalar_first {
    ($($t:ty),*) => {$(
        impl Add<&DArray<$t>> for $t {
            type Output = DArray<$t>;
            fn add(self, rhs: &DArray<$t>) -> DArray<$t> { rhs.with_scalar(self, Binary::Add, true) }
        }
        impl Add<DArray<$t>> for $t {
            type Output = DArray<$t>;
            fn add(self, rhs: DArray<$t>) -> DArray<$t> { rhs.with_scalar(self, Binary::Add, true) }
        }
        impl Sub<&DArray<$t>> for $t {
            type Output = DArray<$t>;
            fn sub(self, rhs: &DArray<$t>) -> DArray<$t> { rhs.with_scalar(self, Binary::Sub, true) }
        }
        impl Sub<DArray<$t>> for $t {
            type Output = DArray<$t>;
            fn sub(self, rhs: DArray<$t>) -> DArray<$t> { rhs.with_scalar(self, Binary::Sub, true) }
        }
        impl Mul<&DArray<$t>> for $t {
            type Output = DArray<$t>;
            fn mul(self, rhs: &DArray<$t>) -> DArray<$t> { rhs.with_scalar(self, Binary::Mul, true) }
        }
        impl Mul<DArray<$t>> for $t {
            type Output = DArray<$t>;
            fn mul(self, rhs: DArray<$t>) -> DArray<$t> { rhs.with_scalar(self, Binary::Mul, true) }
        }
        impl Div<&DArray<$t>> for $t {
            type Output = DArray<$t>;
            fn div(self, rhs: &DArray<$t>) -> DArray<$t> { rhs.with_scalar(self, Binary::Div, true) }
        }
        impl Div<DArray<$t>> for $t {
            type Output = DArray<$t>;
            fn div(self, rhs: DArray<$t>) -> DArray<$t> { rhs.with_scalar(self, Binary::Div, true) }
        }
    )*};
}

scalar_first!(f32, f64, i32, u32);
