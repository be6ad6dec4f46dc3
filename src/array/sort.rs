//! Sorting 1-D arrays in parallel: `DArray::sort` and [`SortOrder`], a sample sort over the
//! blocks (Dagger.jl's `sort` over `dsort_chunks`).

use std::cmp::Ordering;
use std::sync::Arc;

use super::domain::Grid;
use super::{host_options, ArrayError, Block, DArray, Element};
use crate::task::args::SharedList;

/// The order [`DArray::sort_with`] puts elements in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SortOrder {
    /// Smallest first; NaN last, as numpy's `sort`.
    Ascending,
    /// Largest first: the exact reverse of [`Ascending`](Self::Ascending), so NaN first.
    Descending,
}

/// Samples taken from each sorted block per output bucket, to choose the splitters.
const OVERSAMPLE: usize = 16;

impl SortOrder {
    /// The total order used: `<` with NaN (the one value not equal to itself) above
    /// everything, reversed for `Descending`. `-0.0` and `0.0` are equal.
    fn cmp<T: PartialOrd>(self, a: &T, b: &T) -> Ordering {
        #[allow(clippy::eq_op)]
        let o = a.partial_cmp(b).unwrap_or_else(|| (a != a).cmp(&(b != b)));
        match self {
            SortOrder::Ascending => o,
            SortOrder::Descending => o.reverse(),
        }
    }
}

impl<T: Element> DArray<T> {
    /// The elements of a 1-D array in ascending order, NaN last (numpy's `sort`); see
    /// [`sort_with`](Self::sort_with).
    ///
    /// ```
    /// use dagger::prelude::*;
    /// let ctx = Context::builder().threads(2).build()?;
    /// let a = DArray::distribute(&ctx, &ndarray::arr1(&[3.0, f64::NAN, -1.0, 2.0, -1.0]), Blocks::new([2]))?;
    /// let s = a.sort()?.collect1()?;
    /// assert_eq!(s.slice(ndarray::s![..4]).to_vec(), vec![-1.0, -1.0, 2.0, 3.0]);
    /// assert!(s[4].is_nan());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn sort(&self) -> Result<DArray<T>, ArrayError> {
        self.sort_with(SortOrder::Ascending)
    }

    /// The elements of a 1-D array sorted in `order`, blocked as this array (Dagger.jl's
    /// `sort`).
    ///
    /// A sample sort: one task per block sorts it; one task samples the sorted blocks
    /// evenly, chooses one splitter per block boundary and finds where each splitter falls
    /// in each block; then one task per bucket merges the runs of the blocks between two
    /// splitters. All run on CPU threads (the scope's, or any when it holds none). The call
    /// waits for the splitters, since the buckets' sizes decide the result's layout; the
    /// merges run on after it returns, and the buckets are then cut to this array's
    /// blocking on CPU threads too (sharing a bucket whose extent is one block).
    ///
    /// The sort is not stable, which only shows for values that compare equal but differ:
    /// `-0.0` and `0.0`, or NaNs with different payloads. NaN sorts above every number, so
    /// last in [`SortOrder::Ascending`] and first in [`SortOrder::Descending`]. Many equal
    /// values make the buckets uneven (all copies of a splitter fall in one bucket), which
    /// costs balance, not correctness.
    ///
    /// # Errors
    ///
    /// [`ArrayError::Dimensionality`] naming the shape unless the array is 1-D;
    /// [`ArrayError::Task`] if a block failed.
    ///
    /// ```
    /// use dagger::prelude::*;
    /// use dagger::SortOrder;
    /// let ctx = Context::builder().threads(2).build()?;
    /// let a = DArray::distribute(&ctx, &ndarray::arr1(&[5u32, 1, 4, 1, 3, 9, 2]), Blocks::new([3]))?;
    /// let d = a.sort_with(SortOrder::Descending)?;
    /// assert_eq!(d.collect1()?.to_vec(), vec![9, 5, 4, 3, 2, 1, 1]);
    /// assert_eq!(d.block_counts(), a.block_counts());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn sort_with(&self, order: SortOrder) -> Result<DArray<T>, ArrayError> {
        if self.ndim() != 1 {
            return Err(ArrayError::Dimensionality {
                expected: 1,
                shape: self.shape(),
            });
        }
        let ctx = self.context().clone();
        let opts = host_options(&ctx).name("sort_block");
        let sorted: Vec<Block<T>> = self
            .blocks()
            .iter()
            .map(|b| {
                Block::Task(ctx.spawn_with(
                    opts.clone(),
                    move |v: Arc<Vec<T>>| {
                        let mut v = (*v).clone();
                        v.sort_unstable_by(|a, b| order.cmp(a, b));
                        v
                    },
                    (b.shared(),),
                ))
            })
            .collect();
        let nb = sorted.len();
        if nb <= 1 {
            return Ok(DArray::from_parts(&ctx, self.grid().clone(), sorted));
        }
        // bounds[i][k]: where bucket k starts in sorted block i (bounds[i][nb] = its length).
        let list = SharedList(sorted.iter().map(Block::shared).collect());
        let plan = ctx.spawn_with(
            host_options(&ctx).name("sort_splitters"),
            move |blocks: Vec<Arc<Vec<T>>>| -> Vec<Vec<usize>> {
                let per = OVERSAMPLE.max(1);
                let mut samples: Vec<T> = Vec::with_capacity(blocks.len() * nb * per);
                for b in &blocks {
                    let n = b.len();
                    let count = (nb * per).min(n);
                    samples.extend((0..count).map(|s| b[(2 * s + 1) * n / (2 * count)]));
                }
                samples.sort_unstable_by(|a, b| order.cmp(a, b));
                let splitters: Vec<T> = (1..nb)
                    .filter_map(|k| samples.get(k * samples.len() / nb).copied())
                    .collect();
                blocks
                    .iter()
                    .map(|b| {
                        let mut at = vec![0];
                        at.extend(
                            splitters
                                .iter()
                                .map(|s| b.partition_point(|x| order.cmp(x, s) == Ordering::Less)),
                        );
                        at.resize(nb, b.len());
                        at.push(b.len());
                        at
                    })
                    .collect()
            },
            (list,),
        );
        let bounds = plan.fetch()?;
        let mut cuts = vec![0];
        let mut buckets = Vec::new();
        let merge_opts = host_options(&ctx).name("sort_merge");
        for k in 0..nb {
            let runs: Vec<(usize, std::ops::Range<usize>)> = (0..nb)
                .map(|i| (i, bounds[i][k]..bounds[i][k + 1]))
                .filter(|(_, r)| !r.is_empty())
                .collect();
            let len: usize = runs.iter().map(|(_, r)| r.len()).sum();
            if len == 0 {
                continue;
            }
            cuts.push(cuts.last().expect("starts with 0") + len);
            let list = SharedList(runs.iter().map(|(i, _)| sorted[*i].shared()).collect());
            let ranges: Vec<_> = runs.into_iter().map(|(_, r)| r).collect();
            buckets.push(Block::Task(ctx.spawn_with(
                merge_opts.clone(),
                move |blocks: Vec<Arc<Vec<T>>>| {
                    let mut out = Vec::with_capacity(len);
                    for (b, r) in blocks.iter().zip(&ranges) {
                        out.extend_from_slice(&b[r.clone()]);
                    }
                    // Sorted runs, merged: the stable sort finds the runs and merges them.
                    out.sort_by(|a, b| order.cmp(a, b));
                    out
                },
                (list,),
            )));
        }
        let merged = DArray::from_parts(&ctx, Grid { cuts: vec![cuts] }, buckets);
        // The buckets are on the host: cut them there, whatever the scope.
        let host = host_options(&ctx);
        Ok(crate::with_options(host, || merged.aligned_to(self.grid())))
    }
}
