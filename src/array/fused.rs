//! Fused elementwise chains: [`Fused`], a chain of elementwise maps (and a reduction at its
//! end) over one array that runs as one pass per block, with no temporaries between the
//! maps — on a CPU thread a chunk at a time, on a GPU as one generated WGSL kernel.

use std::ops::{Add, Div, Mul, Neg, Sub};
use std::sync::Arc;

use super::element::Float;
use super::error::ArrayError;
use super::expr::{Expr, Func};
use super::kernels::{self, Reduce, ReduceShape};
use super::{host_options, DArray};
use crate::DTask;

/// A chain of elementwise maps over an array, not yet run: made by [`DArray::fuse`],
/// extended by the same maps a [`DArray`] has (`map_wgsl`, `abs`, `sqrt`, `exp`, ...,
/// and `+ - * /` with a scalar), and run by [`eval`](Self::eval) into a new array or by a
/// reduction (`sum`, `prod`, `min`, `max`, `mean`) into one value.
///
/// Each block is read once: the maps run one after another on a chunk of the block that
/// stays in cache (CPU threads) or in registers (one generated WGSL kernel per chain on a
/// GPU), and a reduction at the end folds the mapped values as they come instead of
/// writing them out. The values are those of the same maps applied one by one (on CPU
/// threads to the bit, reductions included; a GPU compiler may contract a multiply and an
/// add of neighbouring maps into one rounding). Functions GPUs do not evaluate in 64 bits
/// (`exp`, `log`, `pow`, trigonometry) make an `f64` chain run on CPU threads, as the
/// unfused maps do.
///
/// ```
/// use dagger::prelude::*;
/// let ctx = Context::builder().threads(2).build()?;
/// let a = DArray::<f32>::rand(&ctx, [1000], Blocks::new([256]), 1)?;
/// let fused = (a.fuse() * 2.0 + 1.0).sqrt().map_wgsl("x * x - 1.0")?;
/// let unfused = (&a * 2.0 + 1.0).sqrt().map_wgsl("x * x - 1.0")?;
/// assert_eq!(fused.eval().collect1()?, unfused.collect1()?);
/// assert_eq!(fused.sum().fetch()?, unfused.sum().fetch()?);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug)]
pub struct Fused<T> {
    src: DArray<T>,
    stages: Vec<Arc<Expr>>,
}

impl<T: Float> DArray<T> {
    /// An empty chain of elementwise maps over this array, to extend and then run in one
    /// pass per block: see [`Fused`].
    pub fn fuse(&self) -> Fused<T> {
        Fused {
            src: self.clone(),
            stages: Vec::new(),
        }
    }
}

impl<T: Float> Fused<T> {
    fn then(mut self, e: Expr) -> Self {
        self.stages.push(Arc::new(e));
        self
    }

    fn call(self, f: Func) -> Self {
        self.then(Expr::Call(f, vec![Expr::X]))
    }

    fn scalar(self, op: char, s: T) -> Self {
        self.then(Expr::Bin(
            op,
            Box::new(Expr::X),
            Box::new(Expr::Num(s.to_f64())),
        ))
    }

    /// Appends a map given as a WGSL expression in `x`, as
    /// [`DArray::map_wgsl`](DArray::map_wgsl).
    ///
    /// # Errors
    /// [`ArrayError::Expr`] for an expression outside the supported subset.
    pub fn map_wgsl(self, expr: &str) -> Result<Self, ArrayError> {
        Ok(self.then(Expr::parse(expr)?))
    }

    /// Appends `|x|`.
    pub fn abs(self) -> Self {
        self.call(Func::Abs)
    }

    /// Appends `√x`.
    pub fn sqrt(self) -> Self {
        self.call(Func::Sqrt)
    }

    /// Appends `eˣ`.
    pub fn exp(self) -> Self {
        self.call(Func::Exp)
    }

    /// Appends `ln x`.
    pub fn ln(self) -> Self {
        self.call(Func::Log)
    }

    /// Appends `sin x`.
    pub fn sin(self) -> Self {
        self.call(Func::Sin)
    }

    /// Appends `cos x`.
    pub fn cos(self) -> Self {
        self.call(Func::Cos)
    }

    /// Appends `tanh x`.
    pub fn tanh(self) -> Self {
        self.call(Func::Tanh)
    }

    /// The number of maps in the chain.
    pub fn len(&self) -> usize {
        self.stages.len()
    }

    /// Whether the chain has no maps yet.
    pub fn is_empty(&self) -> bool {
        self.stages.is_empty()
    }

    /// Whether the chain must run on CPU threads: an `f64` chain with a function GPUs
    /// evaluate in 32 bits only.
    fn host_only(&self) -> bool {
        DArray::<T>::is_f64() && self.stages.iter().any(|e| e.transcendental())
    }

    /// Runs the chain: a new array, one task per block, each reading its block once.
    pub fn eval(&self) -> DArray<T> {
        if self.stages.is_empty() {
            return self.src.clone();
        }
        let kernel = kernels::map_chain::<T>(&self.stages).expect("the fused map kernels build");
        let ctx = self.src.context();
        let host = self.host_only();
        let blocks = self
            .src
            .blocks()
            .iter()
            .map(|b| DArray::<T>::launch_where(ctx, host, &kernel, (), vec![b.arg()]))
            .collect();
        DArray::from_parts(ctx, self.src.grid().clone(), blocks)
    }

    fn reduce(&self, op: Reduce, finish: impl Fn(T) -> T + Send + 'static) -> DTask<T> {
        let src = &self.src;
        let ctx = src.context();
        let opts = host_options(ctx);
        if src.is_empty() {
            let v = finish(if op == Reduce::Prod { T::ONE } else { T::ZERO });
            return ctx.spawn_with(opts, move || v, ());
        }
        let kernel = kernels::map_reduce_all::<T>(op, &self.stages)
            .expect("the fused reduction kernels build");
        let host = self.host_only();
        let parts = src
            .blocks()
            .iter()
            .zip(src.subdomains())
            .map(|(b, d)| {
                let part = DArray::<T>::launch_where(
                    ctx,
                    host,
                    &kernel,
                    ReduceShape::new(1, d.len(), 1),
                    vec![b.arg()],
                );
                (part, None)
            })
            .collect();
        let total = src.combine(parts, op.combine_op());
        ctx.spawn_with(opts, move |v: Arc<Vec<T>>| finish(v[0]), (total.shared(),))
    }

    /// The sum of the mapped elements (0 for an empty array), in one pass per block.
    pub fn sum(&self) -> DTask<T> {
        self.reduce(Reduce::Sum, |v| v)
    }

    /// The product of the mapped elements (1 for an empty array).
    pub fn prod(&self) -> DTask<T> {
        self.reduce(Reduce::Prod, |v| v)
    }

    /// The smallest mapped element; an error for an empty array.
    pub fn min(&self) -> Result<DTask<T>, ArrayError> {
        self.nonempty("min")?;
        Ok(self.reduce(Reduce::Min, |v| v))
    }

    /// The largest mapped element; an error for an empty array.
    pub fn max(&self) -> Result<DTask<T>, ArrayError> {
        self.nonempty("max")?;
        Ok(self.reduce(Reduce::Max, |v| v))
    }

    /// The mean of the mapped elements (NaN for an empty array).
    pub fn mean(&self) -> DTask<T> {
        let n = T::from_f64(self.src.len() as f64);
        self.reduce(Reduce::Sum, move |s| s.div(n))
    }

    fn nonempty(&self, op: &'static str) -> Result<(), ArrayError> {
        if self.src.is_empty() {
            return Err(ArrayError::EmptyReduction {
                op,
                shape: self.src.shape(),
            });
        }
        Ok(())
    }
}

macro_rules! scalar_op {
    ($tr:ident, $m:ident, $c:literal) => {
        /// Appends an elementwise operation with a scalar.
        impl<T: Float> $tr<T> for Fused<T> {
            type Output = Fused<T>;
            fn $m(self, rhs: T) -> Fused<T> {
                self.scalar($c, rhs)
            }
        }
    };
}

scalar_op!(Add, add, '+');
scalar_op!(Sub, sub, '-');
scalar_op!(Mul, mul, '*');
scalar_op!(Div, div, '/');

/// Appends `-x`.
impl<T: Float> Neg for Fused<T> {
    type Output = Fused<T>;
    fn neg(self) -> Fused<T> {
        self.then(Expr::Neg(Box::new(Expr::X)))
    }
}
