//! Operations that move elements between blocks: transpose, slicing, concatenation and
//! rechunking. A block that is carried over whole is shared, not copied.

use std::ops::Range;

use super::blocks::Blocking;
use super::domain::{strides, Grid};
use super::element::Element;
use super::error::ArrayError;
use super::kernels::{self, Len};
use super::{box_params, check_grid, make_grid, Block, DArray};
use crate::Chunk;

impl<T: Element> DArray<T> {
    /// The transpose: axes reversed (a view for 0-D and 1-D arrays).
    ///
    /// ```
    /// use dagger::prelude::*;
    /// let ctx = Context::builder().threads(2).build()?;
    /// let a = DArray::<f32>::rand(&ctx, [5, 3, 2], Blocks::new([2, 2, 2]), 1)?;
    /// assert_eq!(a.t().shape(), vec![2, 3, 5]);
    /// assert_eq!(a.t().collect()?, a.collect()?.reversed_axes());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn t(&self) -> DArray<T> {
        let axes: Vec<usize> = (0..self.ndim()).rev().collect();
        self.permuted_axes(&axes)
            .expect("a reversal is a permutation")
    }

    /// Alias of [`t`](Self::t).
    pub fn transpose(&self) -> DArray<T> {
        self.t()
    }

    /// The array with its axes reordered: axis `i` of the result is axis `axes[i]` of
    /// this one (as ndarray's `permuted_axes`, Dagger.jl's and Julia's `permutedims`). Block
    /// `(i, j, …)` of the result is the permuted copy of the matching block, one task each,
    /// so the blocking is permuted too; the identity permutation shares every block.
    ///
    /// # Errors
    ///
    /// [`ArrayError::InvalidPermutation`] unless `axes` holds each of `0..ndim` once.
    ///
    /// ```
    /// use dagger::prelude::*;
    /// let ctx = Context::builder().threads(2).build()?;
    /// let a = DArray::<f32>::rand(&ctx, [5, 3, 7], Blocks::new([2, 2, 3]), 1)?;
    /// let p = a.permuted_axes(&[2, 0, 1])?;
    /// assert_eq!(p.shape(), vec![7, 5, 3]);
    /// assert_eq!(p.collect()?, a.collect()?.permuted_axes(vec![2, 0, 1]));
    /// assert!(a.permuted_axes(&[0, 0, 1]).is_err());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[doc(alias = "permutedims")]
    #[doc(alias = "permute")]
    #[doc(alias = "permute_axes")]
    pub fn permuted_axes(&self, axes: &[usize]) -> Result<DArray<T>, ArrayError> {
        let ndim = self.ndim();
        let mut seen = vec![false; ndim];
        if axes.len() != ndim
            || axes
                .iter()
                .any(|&a| a >= ndim || std::mem::replace(&mut seen[a], true))
        {
            return Err(ArrayError::InvalidPermutation {
                axes: axes.to_vec(),
                ndim,
            });
        }
        if axes.iter().enumerate().all(|(i, &a)| i == a) {
            return Ok(self.clone());
        }
        let grid = Grid {
            cuts: axes.iter().map(|&a| self.grid().cuts[a].clone()).collect(),
        };
        let kernel = kernels::gather::<T>().expect("the built-in copy kernels build");
        let ctx = self.context();
        let blocks = (0..grid.num_blocks())
            .map(|o| {
                let oidx = grid.unravel(o);
                let mut iidx = vec![0; ndim];
                for (i, &a) in axes.iter().enumerate() {
                    iidx[a] = oidx[i];
                }
                let i = self.grid().ravel(&iidx);
                let ishape = self.grid().domain(i).shape();
                let istr = strides(&ishape);
                let oshape: Vec<usize> = axes.iter().map(|&a| ishape[a]).collect();
                let sstr: Vec<usize> = axes.iter().map(|&a| istr[a]).collect();
                let n = oshape.iter().product();
                let p = box_params(&oshape, 0, &sstr, 0, &strides(&oshape), n);
                Self::launch(ctx, &kernel, p, vec![self.blocks()[i].arg()])
            })
            .collect();
        Ok(DArray::from_parts(ctx, grid, blocks))
    }

    /// The part of the array in `ranges` (one per dimension), as a `DArray` whose blocks
    /// are this array's blocks cut to the ranges: blocks inside the ranges are shared,
    /// the ones crossing an edge are copied (Dagger.jl's `view`, numpy's slicing).
    ///
    /// This is the view of this crate: a `DArray` is immutable, so a sub-array that shares
    /// the blocks it can is as good as a view for reading, and costs no copy where the
    /// ranges fall on block edges. Writing goes the other way, through
    /// [`copy_into`](Self::copy_into).
    ///
    /// ```
    /// use dagger::prelude::*;
    /// let ctx = Context::builder().threads(2).build()?;
    /// let a = DArray::<u32>::distribute(&ctx, &ndarray::Array::from_shape_fn((6, 6), |(i, j)| (10 * i + j) as u32), Blocks::new([4, 4]))?;
    /// let s = a.slice(&[1..5, 2..3])?;
    /// assert_eq!(s.collect2()?, ndarray::array![[12], [22], [32], [42]]);
    /// assert!(a.slice(&[0..7, 0..1]).is_err());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[doc(alias = "view")]
    pub fn slice(&self, ranges: &[Range<usize>]) -> Result<DArray<T>, ArrayError> {
        let shape = self.shape();
        if ranges.len() != shape.len()
            || ranges
                .iter()
                .zip(&shape)
                .any(|(r, &n)| r.start > r.end || r.end > n)
        {
            return Err(ArrayError::SliceOutOfBounds {
                ranges: ranges.to_vec(),
                shape,
            });
        }
        let cuts = ranges
            .iter()
            .zip(&self.grid().cuts)
            .map(|(r, c)| {
                let mut v = vec![0];
                v.extend(
                    c.iter()
                        .filter(|&&x| x > r.start && x < r.end)
                        .map(|x| x - r.start),
                );
                if r.end > r.start {
                    v.push(r.end - r.start);
                }
                v
            })
            .collect();
        let offset: Vec<usize> = ranges.iter().map(|r| r.start).collect();
        Ok(self.regrid(&offset, Grid { cuts }))
    }

    /// Writes this array into `region` of `dst` (Dagger.jl's `copyto!` onto a view):
    /// afterwards `dst.slice(region)` equals this array and the rest of `dst` is as it was.
    ///
    /// `dst` is a handle to immutable blocks, so this replaces `dst`'s blocks that meet the
    /// region with new ones, lazily (one task per block that is partly overwritten, copying
    /// the source's pieces in on CPU threads or GPUs as the scope allows); other clones of
    /// `dst` keep the old contents. A block of `dst` that the region covers exactly with one
    /// block of this array takes that block, shared, without a copy; blocks outside the
    /// region stay shared with the old `dst`.
    ///
    /// # Errors
    ///
    /// [`ArrayError::SliceOutOfBounds`] naming the ranges and `dst`'s shape if the region
    /// is not inside `dst`; [`ArrayError::ShapeMismatch`] naming both shapes if the region's
    /// shape is not this array's.
    ///
    /// ```
    /// use dagger::prelude::*;
    /// let ctx = Context::builder().threads(2).build()?;
    /// let mut dst = DArray::<i32>::zeros(&ctx, [4, 5], Blocks::new([2, 2]))?;
    /// let src = DArray::<i32>::ones(&ctx, [2, 3], Blocks::new([1, 3]))?;
    /// src.copy_into(&mut dst, &[1..3, 2..5])?;
    /// assert_eq!(dst.collect2()?, ndarray::array![
    ///     [0, 0, 0, 0, 0],
    ///     [0, 0, 1, 1, 1],
    ///     [0, 0, 1, 1, 1],
    ///     [0, 0, 0, 0, 0],
    /// ]);
    /// assert!(src.copy_into(&mut dst, &[0..2, 0..2]).is_err()); // 2x2, not 2x3
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[doc(alias = "copyto")]
    pub fn copy_into(
        &self,
        dst: &mut DArray<T>,
        region: &[Range<usize>],
    ) -> Result<(), ArrayError> {
        let dshape = dst.shape();
        if region.len() != dshape.len()
            || region
                .iter()
                .zip(&dshape)
                .any(|(r, &n)| r.start > r.end || r.end > n)
        {
            return Err(ArrayError::SliceOutOfBounds {
                ranges: region.to_vec(),
                shape: dshape,
            });
        }
        let rshape: Vec<usize> = region.iter().map(|r| r.len()).collect();
        if rshape != self.shape() {
            return Err(ArrayError::ShapeMismatch {
                op: "copy_into: the source and the region of the destination",
                left: self.shape(),
                right: rshape,
            });
        }
        let ctx = dst.context().clone();
        let src = self.grid();
        let copy = kernels::copy_into::<T>().expect("the built-in copy kernels build");
        let blocks =
            dst.grid()
                .domains()
                .into_iter()
                .zip(dst.blocks())
                .map(|(dom, old)| {
                    let inter: Vec<Range<usize>> = dom
                        .ranges()
                        .iter()
                        .zip(region)
                        .map(|(d, r)| d.start.max(r.start)..d.end.min(r.end))
                        .collect();
                    if inter.iter().any(|r| r.start >= r.end) {
                        return old.clone();
                    }
                    // The source blocks overlapping it, per dimension, in source coordinates.
                    let per_dim: Vec<Vec<(usize, Range<usize>)>> = inter
                        .iter()
                        .enumerate()
                        .map(|(d, r)| {
                            let o = region[d].start;
                            src.overlapping(d, &(r.start - o..r.end - o))
                        })
                        .collect();
                    let count: usize = per_dim.iter().map(Vec::len).product();
                    let dshape = dom.shape();
                    let dstr = strides(&dshape);
                    let n = dom.len();
                    let mut out = old.clone();
                    for k in 0..count {
                        let mut rem = k;
                        let mut idx = vec![0; per_dim.len()];
                        let mut ov = vec![0..0; per_dim.len()];
                        for d in (0..per_dim.len()).rev() {
                            let (b, r) = per_dim[d][rem % per_dim[d].len()].clone();
                            rem /= per_dim[d].len();
                            idx[d] = b;
                            ov[d] = r;
                        }
                        let i = src.ravel(&idx);
                        let sdom = src.domain(i);
                        let covers = sdom.ranges().iter().zip(dom.ranges()).zip(region).all(
                            |((s, d), r)| s.start + r.start == d.start && s.end + r.start == d.end,
                        );
                        if count == 1 && covers {
                            return self.blocks()[i].clone();
                        }
                        let sstart = sdom.start();
                        let sstr = strides(&sdom.shape());
                        let bshape: Vec<usize> = ov.iter().map(|r| r.len()).collect();
                        let soff: usize = (0..ov.len())
                            .map(|d| (ov[d].start - sstart[d]) * sstr[d])
                            .sum();
                        let doff: usize = (0..ov.len())
                            .map(|d| {
                                (ov[d].start + region[d].start - dom.ranges()[d].start) * dstr[d]
                            })
                            .sum();
                        let p = box_params(&bshape, soff, &sstr, doff, &dstr, n);
                        out = Self::launch(&ctx, &copy, p, vec![self.blocks()[i].arg(), out.arg()]);
                    }
                    out
                })
                .collect();
        *dst = DArray::from_parts(&ctx, dst.grid().clone(), blocks);
        Ok(())
    }

    /// The part of the array in `range` along `axis`.
    pub fn slice_axis(&self, axis: usize, range: Range<usize>) -> Result<DArray<T>, ArrayError> {
        let ndim = self.ndim();
        if axis >= ndim {
            return Err(ArrayError::AxisOutOfRange { axis, ndim });
        }
        let mut ranges: Vec<Range<usize>> = self.shape().iter().map(|&n| 0..n).collect();
        ranges[axis] = range;
        self.slice(&ranges)
    }

    /// The same array with a new blocking. Blocks that keep their domain are shared.
    ///
    /// ```
    /// use dagger::prelude::*;
    /// let ctx = Context::builder().threads(2).build()?;
    /// let a = DArray::<f32>::rand(&ctx, [10, 10], Blocks::new([3, 3]), 5)?;
    /// let b = a.rechunk(Blocks::new([10, 4]))?;
    /// assert_eq!(b.block_counts(), vec![1, 3]);
    /// assert_eq!(b.collect()?, a.collect()?);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn rechunk(&self, blocks: impl Blocking) -> Result<DArray<T>, ArrayError> {
        let grid = make_grid::<T>(self.context(), &self.shape(), &blocks)?;
        Ok(self.aligned_to(&grid))
    }

    /// This array blocked as `grid` (of the same shape).
    pub(crate) fn aligned_to(&self, grid: &Grid) -> DArray<T> {
        if self.grid() == grid {
            return self.clone();
        }
        self.regrid(&vec![0; self.ndim()], grid.clone())
    }

    /// A new array blocked as `grid`, whose element `i` is this array's element
    /// `offset + i`; each new block made on the rank owning it.
    fn regrid(&self, offset: &[usize], grid: Grid) -> DArray<T> {
        let ctx = self.context();
        let src = self.grid();
        let gather = kernels::gather::<T>().expect("the built-in copy kernels build");
        let copy_into = kernels::copy_into::<T>().expect("the built-in copy kernels build");
        let fill = kernels::fill::<T>().expect("the built-in fill kernels build");
        let zero = Chunk::new(vec![T::ZERO]);
        let blocks = grid
            .domains()
            .into_iter()
            .enumerate()
            .map(|(at, dom)| {
                let owner = super::ranks::owner_of(ctx, &grid, at);
                let oshape = dom.shape();
                let ostr = strides(&oshape);
                let n = dom.len();
                // The source blocks overlapping this block, per dimension.
                let per_dim: Vec<Vec<(usize, Range<usize>)>> = dom
                    .ranges()
                    .iter()
                    .enumerate()
                    .map(|(d, r)| src.overlapping(d, &(r.start + offset[d]..r.end + offset[d])))
                    .collect();
                let count: usize = per_dim.iter().map(Vec::len).product();
                let piece = |k: usize| {
                    let mut rem = k;
                    let mut idx = vec![0; per_dim.len()];
                    let mut ov = vec![0..0; per_dim.len()];
                    for d in (0..per_dim.len()).rev() {
                        let (b, r) = per_dim[d][rem % per_dim[d].len()].clone();
                        rem /= per_dim[d].len();
                        idx[d] = b;
                        ov[d] = r;
                    }
                    let i = src.ravel(&idx);
                    let sdom = src.domain(i);
                    let sstart = sdom.start();
                    let sstr = strides(&sdom.shape());
                    let bshape: Vec<usize> = ov.iter().map(|r| r.len()).collect();
                    let soff: usize = (0..ov.len())
                        .map(|d| (ov[d].start - sstart[d]) * sstr[d])
                        .sum();
                    let doff: usize = (0..ov.len())
                        .map(|d| (ov[d].start - offset[d] - dom.ranges()[d].start) * ostr[d])
                        .sum();
                    let whole = sdom.shape() == oshape;
                    (i, whole, box_params(&bshape, soff, &sstr, doff, &ostr, n))
                };
                if count == 1 {
                    let (i, whole, p) = piece(0);
                    if whole {
                        return self.blocks()[i].clone();
                    }
                    let arg = vec![self.blocks()[i].arg()];
                    return Self::launch_owned(ctx, owner, false, &gather, p, arg);
                }
                let zero = vec![(&zero).into()];
                let mut out = Self::launch_owned(ctx, owner, false, &fill, Len::new(n), zero);
                for k in 0..count {
                    let (i, _, p) = piece(k);
                    let args = vec![self.blocks()[i].arg(), out.arg()];
                    out = Self::launch_owned(ctx, owner, false, &copy_into, p, args);
                }
                out
            })
            .collect();
        DArray::from_parts(ctx, grid, blocks)
    }

    /// Joins arrays along `axis`; their other extents must match. Inputs blocked
    /// differently from the first across the other axes are rechunked to its blocking;
    /// along `axis` each keeps its own blocks.
    ///
    /// ```
    /// use dagger::prelude::*;
    /// let ctx = Context::builder().threads(2).build()?;
    /// let a = DArray::<f64>::ones(&ctx, [2, 3], Blocks::new([1, 2]))?;
    /// let b = DArray::<f64>::zeros(&ctx, [4, 3], Blocks::new([3, 3]))?;
    /// let c = DArray::concatenate(&[&a, &b], 0)?;
    /// assert_eq!(c.shape(), vec![6, 3]);
    /// assert_eq!(c.sum().fetch()?, 6.0);
    /// let err = DArray::concatenate(&[&a, &b], 1).unwrap_err();
    /// assert!(err.to_string().contains("[2, 3]") && err.to_string().contains("[4, 3]"));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn concatenate(arrays: &[&DArray<T>], axis: usize) -> Result<DArray<T>, ArrayError> {
        let first = *arrays.first().ok_or(ArrayError::NothingToConcatenate)?;
        let ndim = first.ndim();
        if axis >= ndim {
            return Err(ArrayError::AxisOutOfRange { axis, ndim });
        }
        let fshape = first.shape();
        for a in &arrays[1..] {
            let s = a.shape();
            let ok = s.len() == ndim && (0..ndim).all(|d| d == axis || s[d] == fshape[d]);
            if !ok {
                return Err(ArrayError::ShapeMismatch {
                    op: "concatenate",
                    left: fshape,
                    right: s,
                });
            }
        }
        let parts: Vec<DArray<T>> = arrays
            .iter()
            .filter(|a| a.shape()[axis] > 0)
            .map(|a| {
                let mut cuts = first.grid().cuts.clone();
                cuts[axis] = a.grid().cuts[axis].clone();
                a.aligned_to(&Grid { cuts })
            })
            .collect();
        let mut cuts = first.grid().cuts.clone();
        let mut along = vec![0];
        // (part, block index along the axis) for each block along the axis.
        let mut owner = Vec::new();
        for (pi, p) in parts.iter().enumerate() {
            let base = *along.last().expect("starts with 0");
            let c = &p.grid().cuts[axis];
            along.extend(c[1..].iter().map(|x| x + base));
            owner.extend((0..c.len() - 1).map(|k| (pi, k)));
        }
        cuts[axis] = along;
        let grid = Grid { cuts };
        check_grid(&grid)?;
        let blocks: Vec<Block<T>> = (0..grid.num_blocks())
            .map(|o| {
                let mut idx = grid.unravel(o);
                let (pi, k) = owner[idx[axis]];
                idx[axis] = k;
                let p = &parts[pi];
                p.blocks()[p.grid().ravel(&idx)].clone()
            })
            .collect();
        Ok(DArray::from_parts(first.context(), grid, blocks))
    }
}
