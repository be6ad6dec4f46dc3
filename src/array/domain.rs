//! Index domains: the ranges an array or a block covers, and the grid of blocks.

use std::ops::Range;

/// The index ranges an array or one of its blocks covers, one per dimension (Dagger.jl's
/// `ArrayDomain`).
///
/// ```
/// use dagger::ArrayDomain;
/// let d = ArrayDomain::new([0..4, 2..5]);
/// assert_eq!(d.shape(), vec![4, 3]);
/// assert_eq!(d.len(), 12);
/// assert_eq!(d.intersect(&ArrayDomain::new([3..10, 0..3])), Some(ArrayDomain::new([3..4, 2..3])));
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ArrayDomain {
    ranges: Vec<Range<usize>>,
}

impl ArrayDomain {
    /// The domain of these ranges.
    pub fn new(ranges: impl IntoIterator<Item = Range<usize>>) -> Self {
        ArrayDomain {
            ranges: ranges.into_iter().collect(),
        }
    }

    /// `0..n` in each dimension of `shape`.
    pub fn from_shape(shape: &[usize]) -> Self {
        ArrayDomain::new(shape.iter().map(|&n| 0..n))
    }

    /// The ranges, one per dimension.
    pub fn ranges(&self) -> &[Range<usize>] {
        &self.ranges
    }

    /// The number of dimensions.
    pub fn ndim(&self) -> usize {
        self.ranges.len()
    }

    /// The extent in each dimension.
    pub fn shape(&self) -> Vec<usize> {
        self.ranges.iter().map(|r| r.len()).collect()
    }

    /// The first index in each dimension.
    pub fn start(&self) -> Vec<usize> {
        self.ranges.iter().map(|r| r.start).collect()
    }

    /// The number of elements.
    pub fn len(&self) -> usize {
        self.ranges.iter().map(|r| r.len()).product()
    }

    /// Whether the domain has no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The common part of two domains of the same dimensionality, if not empty.
    pub fn intersect(&self, other: &ArrayDomain) -> Option<ArrayDomain> {
        if self.ndim() != other.ndim() {
            return None;
        }
        let mut out = Vec::with_capacity(self.ndim());
        for (a, b) in self.ranges.iter().zip(&other.ranges) {
            let r = a.start.max(b.start)..a.end.min(b.end);
            if r.start >= r.end {
                return None;
            }
            out.push(r);
        }
        Some(ArrayDomain { ranges: out })
    }
}

impl std::fmt::Display for ArrayDomain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[")?;
        for (i, r) in self.ranges.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{}..{}", r.start, r.end)?;
        }
        f.write_str("]")
    }
}

/// Where the blocks of an array start and end: per dimension, the cut points
/// `0 = c0 < c1 < ... < cn = len` (no cut points but `0` for an empty dimension, which then
/// has no blocks). Blocks may be irregular, as after slicing or concatenating.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Grid {
    pub(crate) cuts: Vec<Vec<usize>>,
}

impl Grid {
    /// Regular blocks of `block` (the last ones in each dimension possibly smaller).
    pub(crate) fn regular(shape: &[usize], block: &[usize]) -> Grid {
        let cuts = shape
            .iter()
            .zip(block)
            .map(|(&n, &b)| {
                let mut c: Vec<usize> = (0..n).step_by(b.max(1)).collect();
                c.push(n);
                if n == 0 {
                    c.truncate(1);
                }
                c
            })
            .collect();
        Grid { cuts }
    }

    pub(crate) fn ndim(&self) -> usize {
        self.cuts.len()
    }

    pub(crate) fn shape(&self) -> Vec<usize> {
        self.cuts.iter().map(|c| *c.last().unwrap_or(&0)).collect()
    }

    /// Blocks per dimension.
    pub(crate) fn counts(&self) -> Vec<usize> {
        self.cuts
            .iter()
            .map(|c| c.len().saturating_sub(1))
            .collect()
    }

    pub(crate) fn num_blocks(&self) -> usize {
        self.counts().iter().product()
    }

    /// The block index in each dimension of the block at row-major position `linear`.
    pub(crate) fn unravel(&self, mut linear: usize) -> Vec<usize> {
        let counts = self.counts();
        let mut idx = vec![0; counts.len()];
        for d in (0..counts.len()).rev() {
            idx[d] = linear % counts[d];
            linear /= counts[d];
        }
        idx
    }

    /// The row-major position of the block at `idx`.
    pub(crate) fn ravel(&self, idx: &[usize]) -> usize {
        let counts = self.counts();
        idx.iter().zip(&counts).fold(0, |acc, (&i, &n)| acc * n + i)
    }

    /// The domain of the block at row-major position `linear`.
    pub(crate) fn domain(&self, linear: usize) -> ArrayDomain {
        let idx = self.unravel(linear);
        ArrayDomain::new(idx.iter().zip(&self.cuts).map(|(&i, c)| c[i]..c[i + 1]))
    }

    /// Every block's domain, row-major.
    pub(crate) fn domains(&self) -> Vec<ArrayDomain> {
        (0..self.num_blocks()).map(|i| self.domain(i)).collect()
    }

    /// For dimension `d`, the blocks overlapping `range`: (block index, overlap).
    pub(crate) fn overlapping(&self, d: usize, range: &Range<usize>) -> Vec<(usize, Range<usize>)> {
        let c = &self.cuts[d];
        let mut out = Vec::new();
        for b in 0..c.len().saturating_sub(1) {
            let r = c[b].max(range.start)..c[b + 1].min(range.end);
            if r.start < r.end {
                out.push((b, r));
            }
        }
        out
    }
}

/// Row-major strides of a shape.
pub(crate) fn strides(shape: &[usize]) -> Vec<usize> {
    let mut s = vec![1; shape.len()];
    for d in (0..shape.len().saturating_sub(1)).rev() {
        s[d] = s[d + 1] * shape[d + 1];
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regular_grid_with_a_partial_last_block() {
        let g = Grid::regular(&[10, 3], &[4, 3]);
        assert_eq!(g.cuts, vec![vec![0, 4, 8, 10], vec![0, 3]]);
        assert_eq!(g.counts(), vec![3, 1]);
        assert_eq!(g.domain(2), ArrayDomain::new([8..10, 0..3]));
        assert_eq!(g.ravel(&g.unravel(2)), 2);
        let e = Grid::regular(&[0, 5], &[2, 2]);
        assert_eq!(e.num_blocks(), 0);
        assert_eq!(e.shape(), vec![0, 5]);
    }

    #[test]
    fn overlapping_blocks() {
        let g = Grid::regular(&[10], &[4]);
        assert_eq!(
            g.overlapping(0, &(3..9)),
            vec![(0, 3..4), (1, 4..8), (2, 8..9)]
        );
        assert_eq!(strides(&[2, 3, 4]), vec![12, 4, 1]);
    }
}
