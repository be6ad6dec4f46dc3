//! Reductions: over the whole array to one value, and along an axis to an array.

use std::sync::Arc;

use super::domain::Grid;
use super::element::{Element, Float};
use super::error::ArrayError;
use super::kernels::{self, Binary, Reduce, ReduceShape};
use super::{host_options, Block, DArray};
use crate::DTask;

impl<T: Element> DArray<T> {
    /// Combines partial results pairwise, as a tree of elementwise tasks. Each part comes
    /// with the rank where a combination with it on the left runs (the rank of the block
    /// it came from, or of the block the result makes), or `None` where placement decides.
    pub(super) fn combine(
        &self,
        mut parts: Vec<(Block<T>, Option<usize>)>,
        op: Binary,
    ) -> Block<T> {
        let kernel = kernels::binary::<T>(op).expect("the built-in elementwise kernels build");
        let ctx = self.context();
        while parts.len() > 1 {
            let mut next = Vec::with_capacity(parts.len().div_ceil(2));
            let mut it = parts.into_iter();
            while let Some((a, rank)) = it.next() {
                match it.next() {
                    Some((b, _)) => {
                        let args = vec![a.arg(), b.arg()];
                        next.push((
                            match rank {
                                Some(r) => Self::launch_owned(ctx, r, false, &kernel, (), args),
                                None => Self::launch(ctx, &kernel, (), args),
                            },
                            rank,
                        ))
                    }
                    None => next.push((a, rank)),
                }
            }
            parts = next;
        }
        parts.pop().expect("at least one part").0
    }

    fn reduce_all(&self, op: Reduce, finish: impl Fn(T) -> T + Send + 'static) -> DTask<T> {
        let ctx = self.context();
        let opts = host_options(ctx).name(op.name());
        if self.is_empty() {
            let v = finish(if op == Reduce::Prod { T::ONE } else { T::ZERO });
            return ctx.spawn_with(opts, move || v, ());
        }
        let kernel = kernels::reduce_all::<T>(op).expect("the built-in reduction kernels build");
        let parts = self
            .blocks()
            .iter()
            .zip(self.subdomains())
            .enumerate()
            .map(|(i, (b, d))| {
                let p = ReduceShape::new(1, d.len(), 1);
                let owner = self.owner(i);
                let part = Self::launch_owned(ctx, owner, false, &kernel, p, vec![b.arg()]);
                (part, Some(owner))
            })
            .collect();
        let total = self.combine(parts, op.combine_op());
        ctx.spawn_with(opts, move |v: Arc<Vec<T>>| finish(v[0]), (total.shared(),))
    }

    /// The sum of all elements (0 for an empty array).
    ///
    /// ```
    /// use dagger::prelude::*;
    /// let ctx = Context::builder().threads(2).build()?;
    /// let a = DArray::<i32>::ones(&ctx, [9, 9], Blocks::new([4, 4]))?;
    /// assert_eq!(a.sum().fetch()?, 81);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn sum(&self) -> DTask<T> {
        self.reduce_all(Reduce::Sum, |v| v)
    }

    /// The product of all elements (1 for an empty array).
    pub fn prod(&self) -> DTask<T> {
        self.reduce_all(Reduce::Prod, |v| v)
    }

    /// The smallest element; an error for an empty array.
    pub fn min(&self) -> Result<DTask<T>, ArrayError> {
        self.nonempty("min")?;
        Ok(self.reduce_all(Reduce::Min, |v| v))
    }

    /// The largest element; an error for an empty array.
    pub fn max(&self) -> Result<DTask<T>, ArrayError> {
        self.nonempty("max")?;
        Ok(self.reduce_all(Reduce::Max, |v| v))
    }

    fn nonempty(&self, op: &'static str) -> Result<(), ArrayError> {
        if self.is_empty() {
            return Err(ArrayError::EmptyReduction {
                op,
                shape: self.shape(),
            });
        }
        Ok(())
    }

    fn reduce_along(&self, axis: usize, op: Reduce) -> Result<DArray<T>, ArrayError> {
        let ndim = self.ndim();
        if axis >= ndim {
            return Err(ArrayError::AxisOutOfRange { axis, ndim });
        }
        let shape = self.shape();
        let mut cuts = self.grid().cuts.clone();
        cuts.remove(axis);
        let out_grid = Grid { cuts };
        let ctx = self.context();
        if shape[axis] == 0 {
            if matches!(op, Reduce::Min | Reduce::Max) {
                return Err(ArrayError::EmptyReduction {
                    op: op.name(),
                    shape,
                });
            }
            let id = if op == Reduce::Prod { T::ONE } else { T::ZERO };
            return Ok(DArray::filled_grid(ctx, out_grid, id));
        }
        let kernel = kernels::reduce_axis::<T>(op).expect("the built-in reduction kernels build");
        let along = self.grid().counts()[axis];
        let blocks = (0..out_grid.num_blocks())
            .map(|o| {
                // The partial results are combined where the block they make lives.
                let out_owner = super::ranks::owner_of(ctx, &out_grid, o);
                let oidx = out_grid.unravel(o);
                let parts = (0..along)
                    .map(|k| {
                        let mut idx = oidx.clone();
                        idx.insert(axis, k);
                        let i = self.grid().ravel(&idx);
                        let s = self.grid().domain(i).shape();
                        let p = ReduceShape::new(
                            s[..axis].iter().product(),
                            s[axis],
                            s[axis + 1..].iter().product(),
                        );
                        let args = vec![self.blocks()[i].arg()];
                        let part = Self::launch_owned(ctx, self.owner(i), false, &kernel, p, args);
                        (part, Some(out_owner))
                    })
                    .collect();
                self.combine(parts, op.combine_op())
            })
            .collect();
        Ok(DArray::from_parts(ctx, out_grid, blocks))
    }

    /// Sums along `axis`, removing it: an array of one fewer dimension.
    ///
    /// ```
    /// use dagger::prelude::*;
    /// use ndarray::array;
    /// let ctx = Context::builder().threads(2).build()?;
    /// let a = DArray::distribute(&ctx, &array![[1, 2, 3], [4, 5, 6]], Blocks::new([1, 2]))?;
    /// assert_eq!(a.sum_axis(0)?.collect1()?, array![5, 7, 9]);
    /// assert_eq!(a.max_axis(1)?.collect1()?, array![3, 6]);
    /// assert!(a.sum_axis(2).is_err());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn sum_axis(&self, axis: usize) -> Result<DArray<T>, ArrayError> {
        self.reduce_along(axis, Reduce::Sum)
    }

    /// Multiplies along `axis`, removing it.
    pub fn prod_axis(&self, axis: usize) -> Result<DArray<T>, ArrayError> {
        self.reduce_along(axis, Reduce::Prod)
    }

    /// The minimum along `axis`, removing it; an error if that axis is empty.
    pub fn min_axis(&self, axis: usize) -> Result<DArray<T>, ArrayError> {
        self.reduce_along(axis, Reduce::Min)
    }

    /// The maximum along `axis`, removing it; an error if that axis is empty.
    pub fn max_axis(&self, axis: usize) -> Result<DArray<T>, ArrayError> {
        self.reduce_along(axis, Reduce::Max)
    }
}

impl<T: Float> DArray<T> {
    /// The mean of all elements (NaN for an empty array, as numpy gives).
    pub fn mean(&self) -> DTask<T> {
        let n = T::from_f64(self.len() as f64);
        self.reduce_all(Reduce::Sum, move |s| s.div(n))
    }

    /// The mean along `axis`, removing it (NaN where that axis is empty).
    pub fn mean_axis(&self, axis: usize) -> Result<DArray<T>, ArrayError> {
        let s = self.sum_axis(axis)?;
        Ok(&s / T::from_f64(self.shape()[axis] as f64))
    }
}
