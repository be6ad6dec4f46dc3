//! How an array is split into blocks: an explicit block shape, or one chosen from the
//! processors and the array's size.

use super::error::ArrayError;
use crate::Context;

/// A way to choose the block shape of an array: [`Blocks`] or [`AutoBlocks`].
pub trait Blocking {
    /// The block shape for an array of `shape` with elements of `elem_bytes` bytes.
    fn block_shape(
        &self,
        ctx: &Context,
        shape: &[usize],
        elem_bytes: usize,
    ) -> Result<Vec<usize>, ArrayError>;
}

/// An explicit block shape (Dagger.jl's `Blocks`): blocks of this shape, the last ones in
/// each dimension smaller when the array's extent is not a multiple of it.
///
/// ```
/// use dagger::prelude::*;
/// let ctx = Context::builder().threads(2).build()?;
/// let a = DArray::<f32>::zeros(&ctx, [10, 7], Blocks::new([4, 4]))?;
/// assert_eq!(a.block_counts(), vec![3, 2]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Blocks {
    shape: Vec<usize>,
}

impl Blocks {
    /// Blocks of `shape`.
    pub fn new(shape: impl AsRef<[usize]>) -> Self {
        Blocks {
            shape: shape.as_ref().to_vec(),
        }
    }

    /// The block shape.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }
}

impl Blocking for Blocks {
    fn block_shape(
        &self,
        _: &Context,
        shape: &[usize],
        _: usize,
    ) -> Result<Vec<usize>, ArrayError> {
        if self.shape.len() != shape.len() {
            return Err(ArrayError::BlocksRank {
                shape: shape.to_vec(),
                blocks: self.shape.clone(),
            });
        }
        if self.shape.contains(&0) {
            return Err(ArrayError::ZeroBlock {
                blocks: self.shape.clone(),
            });
        }
        Ok(self.shape.clone())
    }
}

impl Blocking for &Blocks {
    fn block_shape(
        &self,
        ctx: &Context,
        shape: &[usize],
        e: usize,
    ) -> Result<Vec<usize>, ArrayError> {
        (*self).block_shape(ctx, shape, e)
    }
}

/// A block shape chosen from the context's processors and the array's size (Dagger.jl's
/// `AutoBlocks`): about four blocks per CPU thread, each between 256 KiB and 32 MiB (well
/// under the 128 MiB a GPU binds at once), splitting the longest block dimension first.
///
/// ```
/// use dagger::prelude::*;
/// let ctx = Context::builder().threads(2).build()?;
/// let a = DArray::<f32>::zeros(&ctx, [4096, 4096], AutoBlocks::new())?;
/// assert!(a.num_blocks() >= 8);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AutoBlocks {
    max_block_bytes: Option<usize>,
}

impl AutoBlocks {
    /// The default policy.
    pub fn new() -> Self {
        AutoBlocks::default()
    }

    /// Caps the block size at `bytes` (default 32 MiB).
    pub fn max_block_bytes(mut self, bytes: usize) -> Self {
        self.max_block_bytes = Some(bytes.max(1));
        self
    }
}

impl Blocking for AutoBlocks {
    fn block_shape(
        &self,
        ctx: &Context,
        shape: &[usize],
        elem_bytes: usize,
    ) -> Result<Vec<usize>, ArrayError> {
        let total: usize = shape.iter().product();
        let max_elems = (self.max_block_bytes.unwrap_or(32 << 20) / elem_bytes.max(1)).max(1);
        let min_elems = ((256 << 10) / elem_bytes.max(1)).min(max_elems);
        let per_thread = total / (4 * ctx.num_threads().max(1)).max(1);
        let target = per_thread.clamp(min_elems, max_elems);
        let mut block: Vec<usize> = shape.iter().map(|&n| n.max(1)).collect();
        while block.iter().product::<usize>() > target {
            let (d, _) = block
                .iter()
                .enumerate()
                .max_by_key(|(i, &b)| (b, std::cmp::Reverse(*i)))
                .expect("at least one dimension");
            if block[d] == 1 {
                break;
            }
            block[d] = block[d].div_ceil(2);
        }
        Ok(block)
    }
}
