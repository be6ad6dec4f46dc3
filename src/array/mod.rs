//! Distributed block arrays: [`DArray`], an N-dimensional array split into blocks that are
//! tasks, whose operations run on CPU threads or GPUs as the scope allows.
//!
//! Every operation returns a new `DArray` at once: it spawns one task per block (running
//! as soon as its inputs are ready, like a dask.array graph executed eagerly) and
//! [`collect`](DArray::collect) gathers the blocks into an [`ndarray::ArrayD`]. Each built-in
//! block operation is a WGSL kernel with a CPU implementation of the same computation, so
//! the same program runs under `Scope::cpu()`, `Scope::gpu(i)` or the default scope:
//!
//! ```
//! use dagger::prelude::*;
//!
//! let ctx = Context::builder().threads(2).build()?;
//! let a = DArray::<f32>::rand(&ctx, [100, 60], Blocks::new([32, 32]), 7)?;
//! let b = (&a * 2.0 + 1.0).sqrt();
//! let c = (&b - &a.t().t())?;                 // shapes are checked at the call
//! let s = c.sum_axis(0)?;                      // a 1-D DArray of 60
//! let total = c.sum().fetch()?;
//! let host = s.collect1()?;                    // ndarray::Array1<f32>
//! assert!((host.sum() - total).abs() < 1e-2 * total.abs().max(1.0));
//!
//! // The same program on a GPU: only the scope changes.
//! # if ctx.processors().iter().any(|p| p.gpu.is_some()) {
//! let on_gpu = with_options(Options::new().scope(Scope::gpu(0)), || (&a * 2.0 + 1.0).sqrt());
//! let diff = (&on_gpu - &b)?.abs().max()?.fetch()?;
//! assert!(diff < 1e-5);
//! # }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Blocks are `Vec<T>` in row-major order; their shapes come from the array's
//! [`subdomains`](DArray::subdomains). Intermediate blocks are freed as soon as the last
//! task reading them has run and the last `DArray` holding them is dropped.

mod blocks;
mod domain;
mod element;
mod elementwise;
mod error;
mod expr;
mod fused;
mod kernels;
mod layout;
mod linalg;
mod npy;
mod ranks;
mod reduce;
mod sort;
mod stencil;
#[cfg(feature = "zarr")]
mod zarr;

pub use blocks::{AutoBlocks, Blocking, Blocks};
pub use domain::ArrayDomain;
pub use element::{Element, Float};
pub use error::ArrayError;
pub use expr::ExprError;
pub use fused::Fused;
pub use linalg::Gemm;
pub use linalg::{Lu, Norm, Qr, Solver};
pub use npy::Overwrite;
pub use sort::SortOrder;
pub use stencil::{Boundary, Stencil};
#[cfg(feature = "zarr")]
pub use zarr::{Compression, ZarrError, ZarrOptions};

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use ndarray::{ArrayD, IxDyn, Slice};

use crate::processor::wgpu::WgslKernel;
use crate::task::KernelArg;
use crate::task::Shared;
use crate::{Chunk, Context, DTask, Options, Scope, TaskError};
use domain::{strides, Grid};
use kernels::{BoxParams, Len, MAX_DIMS};

/// One block: a task computing it, or data placed directly.
pub(crate) enum Block<T> {
    Task(DTask<Vec<T>>),
    Data(Chunk<Vec<T>>),
}

impl<T> Clone for Block<T> {
    fn clone(&self) -> Self {
        match self {
            Block::Task(t) => Block::Task(t.clone()),
            Block::Data(c) => Block::Data(c.clone()),
        }
    }
}

impl<T: Element> Block<T> {
    pub(crate) fn arg(&self) -> KernelArg<T> {
        match self {
            Block::Task(t) => t.into(),
            Block::Data(c) => c.into(),
        }
    }

    pub(crate) fn shared(&self) -> Shared<Vec<T>> {
        match self {
            Block::Task(t) => t.shared(),
            Block::Data(c) => c.shared(),
        }
    }

    fn get(&self) -> Result<Arc<Vec<T>>, TaskError> {
        match self {
            Block::Task(t) => t.fetch_shared(),
            Block::Data(c) => c.collect_shared(),
        }
    }

    fn wait(&self) -> Result<(), TaskError> {
        match self {
            Block::Task(t) => {
                t.wait();
                t.error().map_or(Ok(()), Err)
            }
            Block::Data(_) => Ok(()),
        }
    }
}

/// An N-dimensional array split into blocks, each a task or a chunk (Dagger.jl's
/// `DArray`, dask's `Array`).
///
/// Cheap to clone. Operations return at once; errors in a shape, an axis or a blocking are
/// returned by the call that made them, and what fails inside a block task arrives at
/// [`collect`](Self::collect) or [`wait`](Self::wait). See the [module docs](crate::array).
///
/// ```
/// use dagger::prelude::*;
/// use ndarray::array;
///
/// let ctx = Context::builder().threads(2).build()?;
/// let a = DArray::distribute(&ctx, &array![[1.0f64, 2.0, 3.0], [4.0, 5.0, 6.0]], Blocks::new([1, 2]))?;
/// assert_eq!(a.block_counts(), vec![2, 2]);
/// assert_eq!(a.t().collect2()?, array![[1.0, 4.0], [2.0, 5.0], [3.0, 6.0]]);
/// assert_eq!(a.sum().fetch()?, 21.0);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct DArray<T> {
    inner: Arc<Inner<T>>,
}

struct Inner<T> {
    ctx: Context,
    grid: Grid,
    blocks: Vec<Block<T>>,
}

// Every rank finds the kernels of DArray by name (see `Kernel::lookup`).
inventory::submit! { crate::kernel::BuiltinKernels(kernels::register_all_builtin) }

impl<T> Clone for DArray<T> {
    fn clone(&self) -> Self {
        DArray {
            inner: self.inner.clone(),
        }
    }
}

impl<T> std::fmt::Debug for DArray<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DArray")
            .field("shape", &self.inner.grid.shape())
            .field("blocks", &self.inner.grid.counts())
            .finish()
    }
}

/// Options for a host closure spawned by an array operation: the scope in effect limited
/// to CPU threads, or all CPU threads when that leaves none (a GPU scope).
pub(crate) fn host_options(ctx: &Context) -> Options {
    match crate::get_options().get_scope() {
        None => Options::new(),
        Some(s) => {
            let c = s.constrain(&Scope::cpu());
            if ctx.resolve_scope(&c).is_ok() {
                Options::new().scope(c)
            } else {
                Options::new().scope(Scope::cpu())
            }
        }
    }
}

/// A box of `shape` elements between two row-major blocks.
pub(crate) fn box_params(
    shape: &[usize],
    src_off: usize,
    src_strides: &[usize],
    dst_off: usize,
    dst_strides: &[usize],
    dst_len: usize,
) -> BoxParams {
    let mut p = BoxParams {
        ndim: shape.len() as u32,
        count: shape.iter().product::<usize>() as u32,
        src_off: src_off as u32,
        dst_off: dst_off as u32,
        ..Default::default()
    };
    for d in 0..shape.len() {
        p.shape[d] = shape[d] as u32;
        p.src_strides[d] = src_strides[d] as u32;
        p.dst_strides[d] = dst_strides[d] as u32;
    }
    p.extra[2] = dst_len as u32;
    p
}

/// The override set by [`set_memory_limit`] (0: none).
static MEMORY_LIMIT: AtomicU64 = AtomicU64::new(0);

/// The bytes of host memory arrays may take whole: what [`set_memory_limit`] set, else the
/// `DAGGER_MEMORY_LIMIT` environment variable (`512M`, `4GiB`, `1.5GB`; see
/// [`storage::parse_limit`](crate::storage::parse_limit)), else the machine's total RAM
/// (`MemTotal` in `/proc/meminfo`; unlimited where that cannot be read).
///
/// Collecting an array to the host beyond this is an [`ArrayError::OutOfMemory`] at the
/// call, before anything is allocated. So is making one beyond it in a context without a
/// memory limit; a context with one spills blocks to disk, and takes arrays as large as
/// this plus the free disk space where it spills.
///
/// ```
/// let limit = dagger::array::memory_limit();
/// assert!(limit > 0);
/// ```
pub fn memory_limit() -> u64 {
    match MEMORY_LIMIT.load(Ordering::Relaxed) {
        0 => std::env::var("DAGGER_MEMORY_LIMIT")
            .ok()
            .and_then(|v| parse_bytes(&v))
            .unwrap_or_else(total_ram),
        n => n,
    }
}

/// Sets the bytes arrays may take in this process (`None`: back to `DAGGER_MEMORY_LIMIT` or
/// the machine's RAM); see [`memory_limit`].
///
/// ```
/// use dagger::prelude::*;
/// use dagger::ArrayError;
/// // Without a memory limit of its own a context does not spill: arrays must fit.
/// let ctx = Context::builder().threads(1).no_memory_limit().build()?;
/// dagger::array::set_memory_limit(Some(1 << 20));
/// let e = DArray::<f32>::zeros(&ctx, [1024, 1024], AutoBlocks::new()).unwrap_err();
/// dagger::array::set_memory_limit(None);
/// assert!(matches!(e, ArrayError::OutOfMemory { bytes: 4_194_304, .. }));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn set_memory_limit(bytes: Option<u64>) {
    MEMORY_LIMIT.store(bytes.unwrap_or(0), Ordering::Relaxed);
}

/// A size as `DAGGER_MEMORY_LIMIT` gives it (see [`crate::storage::parse_limit`]).
fn parse_bytes(s: &str) -> Option<u64> {
    match crate::storage::parse_limit(s) {
        Ok(Some(n)) => Some(n),
        Ok(None) => Some(u64::MAX),
        Err(_) => None,
    }
}

/// Total RAM from `/proc/meminfo`, or `u64::MAX` where it cannot be read.
fn total_ram() -> u64 {
    static RAM: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *RAM.get_or_init(|| {
        std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|m| {
                let line = m.lines().find(|l| l.starts_with("MemTotal:"))?;
                let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
                kib.checked_mul(1024)
            })
            .unwrap_or(u64::MAX)
    })
}

/// What the memory limit of arrays is made of, as errors say it.
const WITHIN_MEMORY: &str = "of memory arrays may use (the machine's RAM, or DAGGER_MEMORY_LIMIT)";

/// Refuses `elements` elements of `elem_size` bytes (`what`) beyond the memory limit.
fn check_fits(
    what: impl FnOnce() -> String,
    elements: u128,
    elem_size: usize,
    advice: &'static str,
) -> Result<(), ArrayError> {
    check_fits_in(
        what,
        elements,
        elem_size,
        memory_limit(),
        WITHIN_MEMORY,
        advice,
    )
}

fn check_fits_in(
    what: impl FnOnce() -> String,
    elements: u128,
    elem_size: usize,
    limit: u64,
    within: &'static str,
    advice: &'static str,
) -> Result<(), ArrayError> {
    let bytes = elements.saturating_mul(elem_size as u128);
    if bytes > limit as u128 {
        return Err(ArrayError::OutOfMemory {
            what: what(),
            bytes: u64::try_from(bytes).unwrap_or(u64::MAX),
            limit,
            within,
            advice,
        });
    }
    Ok(())
}

/// Refuses a new array of `elements` elements beyond what `ctx` can hold: memory, plus the
/// free disk space where it spills when it has a memory limit.
fn check_array_fits(
    ctx: &Context,
    what: impl FnOnce() -> String,
    elements: u128,
    elem_size: usize,
) -> Result<(), ArrayError> {
    match ctx.spill_room() {
        Some(disk) => check_fits_in(
            what,
            elements,
            elem_size,
            memory_limit().saturating_add(disk),
            "of memory and free disk where the context spills",
            "use a smaller shape, or spill where there is more room (ContextBuilder::spill_dir)",
        ),
        None => check_fits_in(
            what,
            elements,
            elem_size,
            memory_limit(),
            WITHIN_MEMORY,
            "use a smaller shape, or give the context a memory limit so that arrays spill to disk",
        ),
    }
}

fn check_grid(grid: &Grid) -> Result<(), ArrayError> {
    if grid.ndim() > MAX_DIMS {
        return Err(ArrayError::TooManyDimensions {
            ndim: grid.ndim(),
            max: MAX_DIMS,
        });
    }
    let largest: u128 = grid
        .cuts
        .iter()
        .map(|c| c.windows(2).map(|w| w[1] - w[0]).max().unwrap_or(0) as u128)
        .product();
    if largest > u32::MAX as u128 {
        return Err(ArrayError::TooLarge {
            what: "a block",
            elements: largest,
        });
    }
    Ok(())
}

fn make_grid<T: Element>(
    ctx: &Context,
    shape: &[usize],
    blocks: &impl Blocking,
) -> Result<Grid, ArrayError> {
    if shape.len() > MAX_DIMS {
        return Err(ArrayError::TooManyDimensions {
            ndim: shape.len(),
            max: MAX_DIMS,
        });
    }
    let b = blocks.block_shape(ctx, shape, T::DTYPE.size())?;
    check_array_fits(
        ctx,
        || format!("an array of shape {shape:?} ({})", T::DTYPE),
        shape.iter().map(|&n| n as u128).product(),
        T::DTYPE.size(),
    )?;
    let grid = Grid::regular(shape, &b);
    check_grid(&grid)?;
    Ok(grid)
}

impl<T: Element> DArray<T> {
    pub(crate) fn from_parts(ctx: &Context, grid: Grid, blocks: Vec<Block<T>>) -> Self {
        debug_assert_eq!(grid.num_blocks(), blocks.len());
        DArray {
            inner: Arc::new(Inner {
                ctx: ctx.clone(),
                grid,
                blocks,
            }),
        }
    }

    pub(crate) fn grid(&self) -> &Grid {
        &self.inner.grid
    }

    pub(crate) fn blocks(&self) -> &[Block<T>] {
        &self.inner.blocks
    }

    /// Spawns `kernel` with `params` over `args`, in the options in effect.
    pub(crate) fn launch<P: bytemuck::Pod + Send + Sync + 'static>(
        ctx: &Context,
        kernel: &WgslKernel<P, T>,
        params: P,
        args: Vec<KernelArg<T>>,
    ) -> Block<T> {
        Block::Task(
            ctx.spawn_kernel(kernel, params, args)
                .expect("block kernels are given their declared inputs"),
        )
    }

    /// [`launch_where`](Self::launch_where) for a block owned by `rank` when the context
    /// spans several ranks: the task runs there (see `ranks`).
    pub(crate) fn launch_owned<P: bytemuck::Pod + Send + Sync + 'static>(
        ctx: &Context,
        rank: usize,
        host_only: bool,
        kernel: &WgslKernel<P, T>,
        params: P,
        args: Vec<KernelArg<T>>,
    ) -> Block<T> {
        match ranks::owned_options(ctx, rank, host_only) {
            Some(opts) => Block::Task(
                ctx.spawn_kernel_with(opts, kernel, params, args)
                    .expect("block kernels are given their declared inputs"),
            ),
            None => Self::launch_where(ctx, host_only, kernel, params, args),
        }
    }

    /// Blocks held in this process, each copied to the rank owning it when the context
    /// spans several ranks (by a copy task there), so that later operations find them
    /// where they compute.
    pub(crate) fn to_owners(ctx: &Context, grid: &Grid, blocks: Vec<Block<T>>) -> Vec<Block<T>> {
        if ctx.ranks() <= 1 {
            return blocks;
        }
        let copy = kernels::gather::<T>().expect("the built-in copy kernels build");
        blocks
            .into_iter()
            .enumerate()
            .map(|(i, b)| {
                let owner = ranks::owner_of(ctx, grid, i);
                let d = grid.domain(i);
                match b {
                    Block::Data(_) if owner != 0 && !d.is_empty() => {
                        let shape = d.shape();
                        let s = strides(&shape);
                        let p = box_params(&shape, 0, &s, 0, &s, d.len());
                        Self::launch_owned(ctx, owner, false, &copy, p, vec![b.arg()])
                    }
                    other => other,
                }
            })
            .collect()
    }

    /// The rank whose processors compute block `block` (in row-major block order) when the
    /// context spans several ranks: matrices are spread block-cyclically over a process
    /// grid as close to square as the rank count allows, taller than wide (3 x 1 for three
    /// ranks, 2 x 2 for four), vectors cyclically over the ranks. Each operation computes an output block on
    /// its owner, from inputs fetched rank to rank, so blocks stay where they were made
    /// until `collect` or `fetch` gathers them. Always 0 in one process.
    ///
    /// ```
    /// use dagger::prelude::*;
    /// // A head and two workers as threads of this process; `mpirun -n 3` is the same.
    /// let ctx = dagger::remote::in_process(2, |_| Context::builder().threads(1).gpus(false))?;
    /// let a = DArray::<f64>::ones(&ctx, [4, 6], Blocks::new([2, 2]))?; // 2 x 3 blocks
    /// let owners: Vec<usize> = (0..6).map(|b| a.owner(b)).collect();
    /// assert_eq!(owners, [0, 0, 0, 1, 1, 1]);                        // a 3 x 1 process grid
    /// assert_eq!((&a + &a)?.sum().fetch()?, 48.0);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn owner(&self, block: usize) -> usize {
        ranks::owner_of(self.context(), self.grid(), block)
    }

    /// [`launch`](Self::launch), on CPU threads when `host_only`: for `f64` functions
    /// GPUs cannot evaluate in 64 bits (see `Unary::transcendental`).
    pub(crate) fn launch_where<P: bytemuck::Pod + Send + Sync + 'static>(
        ctx: &Context,
        host_only: bool,
        kernel: &WgslKernel<P, T>,
        params: P,
        args: Vec<KernelArg<T>>,
    ) -> Block<T> {
        if host_only {
            Block::Task(
                ctx.spawn_kernel_with(host_options(ctx), kernel, params, args)
                    .expect("block kernels are given their declared inputs"),
            )
        } else {
            Self::launch(ctx, kernel, params, args)
        }
    }

    /// Whether `T` is `f64`, whose `exp`, `log`, `pow` and trigonometry run on CPU threads.
    pub(crate) fn is_f64() -> bool {
        T::DTYPE == crate::DType::F64
    }

    // ----- construction ---------------------------------------------------------------

    /// Splits a host array into blocks (Dagger.jl's `distribute`). The blocks are copied
    /// out at once; `array` can be dropped afterwards. In a context spanning several
    /// ranks, each block is then sent to the rank owning it ([`owner`](Self::owner)).
    ///
    /// ```
    /// use dagger::prelude::*;
    /// let ctx = Context::builder().threads(2).build()?;
    /// let host = ndarray::Array::from_shape_fn((5, 4), |(i, j)| (i * 4 + j) as i32);
    /// let a = DArray::distribute(&ctx, &host, Blocks::new([2, 3]))?;
    /// assert_eq!(a.collect()?, host.into_dyn());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn distribute<S, D>(
        ctx: &Context,
        array: &ndarray::ArrayBase<S, D>,
        blocks: impl Blocking,
    ) -> Result<Self, ArrayError>
    where
        S: ndarray::Data<Elem = T>,
        D: ndarray::Dimension,
    {
        let grid = make_grid::<T>(ctx, array.shape(), &blocks)?;
        let view = array.view().into_dyn();
        let parts = grid
            .domains()
            .into_iter()
            .map(|dom| {
                let v: Vec<T> = view
                    .slice_each_axis(|ax| Slice::from(dom.ranges()[ax.axis.index()].clone()))
                    .iter()
                    .copied()
                    .collect();
                Block::Data(Chunk::new(v))
            })
            .collect();
        let parts = Self::to_owners(ctx, &grid, parts);
        Ok(DArray::from_parts(ctx, grid, parts))
    }

    pub(crate) fn filled_grid(ctx: &Context, grid: Grid, value: T) -> Self {
        let kernel = kernels::fill::<T>().expect("the built-in fill kernel builds");
        let scalar = Chunk::new(vec![value]);
        let blocks = grid
            .domains()
            .into_iter()
            .enumerate()
            .map(|(i, d)| {
                let owner = ranks::owner_of(ctx, &grid, i);
                let args = vec![(&scalar).into()];
                Self::launch_owned(ctx, owner, false, &kernel, Len::new(d.len()), args)
            })
            .collect();
        DArray::from_parts(ctx, grid, blocks)
    }

    /// An array of `shape` with every element `value`.
    ///
    /// ```
    /// use dagger::prelude::*;
    /// let ctx = Context::builder().threads(2).build()?;
    /// let a = DArray::fill(&ctx, [3, 5], Blocks::new([2, 2]), 7u32)?;
    /// assert_eq!(a.sum().fetch()?, 105);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn fill(
        ctx: &Context,
        shape: impl AsRef<[usize]>,
        blocks: impl Blocking,
        value: T,
    ) -> Result<Self, ArrayError> {
        let grid = make_grid::<T>(ctx, shape.as_ref(), &blocks)?;
        Ok(Self::filled_grid(ctx, grid, value))
    }

    /// An array of zeros.
    pub fn zeros(
        ctx: &Context,
        shape: impl AsRef<[usize]>,
        blocks: impl Blocking,
    ) -> Result<Self, ArrayError> {
        Self::fill(ctx, shape, blocks, T::ZERO)
    }

    /// An array of ones.
    pub fn ones(
        ctx: &Context,
        shape: impl AsRef<[usize]>,
        blocks: impl Blocking,
    ) -> Result<Self, ArrayError> {
        Self::fill(ctx, shape, blocks, T::ONE)
    }

    // ----- shape ------------------------------------------------------------------------

    /// The extent in each dimension.
    pub fn shape(&self) -> Vec<usize> {
        self.inner.grid.shape()
    }

    /// The number of dimensions.
    pub fn ndim(&self) -> usize {
        self.inner.grid.ndim()
    }

    /// The number of elements.
    pub fn len(&self) -> usize {
        self.shape().iter().product()
    }

    /// Whether the array has no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The whole array's domain.
    pub fn domain(&self) -> ArrayDomain {
        ArrayDomain::from_shape(&self.shape())
    }

    /// Each block's domain, in row-major block order.
    pub fn subdomains(&self) -> Vec<ArrayDomain> {
        self.inner.grid.domains()
    }

    /// The number of blocks along each dimension.
    pub fn block_counts(&self) -> Vec<usize> {
        self.inner.grid.counts()
    }

    /// The number of blocks.
    pub fn num_blocks(&self) -> usize {
        self.inner.blocks.len()
    }

    /// The context the blocks run in.
    pub fn context(&self) -> &Context {
        &self.inner.ctx
    }

    // ----- out ---------------------------------------------------------------------------

    /// Waits until every block is computed; the first block error if any.
    pub fn wait(&self) -> Result<(), ArrayError> {
        for b in self.blocks() {
            b.wait()?;
        }
        Ok(())
    }

    /// Gathers the blocks into a host array (Dagger.jl's `collect`). An array larger than
    /// [`memory_limit`] is an [`ArrayError::OutOfMemory`] before anything is allocated.
    pub fn collect(&self) -> Result<ArrayD<T>, ArrayError> {
        self.clone().into_ndarray()
    }

    /// Gathers the blocks into a host array, releasing each block as soon as it is copied
    /// (when this is the last handle to them): the peak memory is about one array plus a
    /// block, where [`collect`](Self::collect) holds the blocks until the `DArray` drops.
    pub fn into_ndarray(self) -> Result<ArrayD<T>, ArrayError> {
        let shape = self.shape();
        let n: usize = shape.iter().product();
        let what = || format!("collecting an array of shape {shape:?} ({})", T::DTYPE);
        let advice = "collect a slice, reduce it first, or keep it distributed";
        check_fits(what, n as u128, T::DTYPE.size(), advice)?;
        // The allocator may still refuse less than the limit: an error, not an abort.
        let mut zeros = Vec::new();
        zeros
            .try_reserve_exact(n)
            .map_err(|_| ArrayError::OutOfMemory {
                what: what(),
                bytes: (n * T::DTYPE.size()) as u64,
                limit: memory_limit(),
                within: WITHIN_MEMORY,
                advice,
            })?;
        zeros.resize(n, T::ZERO);
        let (grid, blocks) = match Arc::try_unwrap(self.inner) {
            Ok(inner) => (inner.grid, inner.blocks),
            Err(shared) => (shared.grid.clone(), shared.blocks.clone()),
        };
        let mut out =
            ArrayD::from_shape_vec(IxDyn(&shape), zeros).expect("the length matches the shape");
        for (i, b) in blocks.into_iter().enumerate() {
            let dom = grid.domain(i);
            let v = b.get()?;
            drop(b);
            let src = ndarray::ArrayViewD::from_shape(IxDyn(&dom.shape()), &v)
                .expect("a block's length matches its domain");
            out.slice_each_axis_mut(|ax| Slice::from(dom.ranges()[ax.axis.index()].clone()))
                .assign(&src);
        }
        Ok(out)
    }

    /// [`collect`](Self::collect) as a 1-D array; an error if the array is not 1-D.
    pub fn collect1(&self) -> Result<ndarray::Array1<T>, ArrayError> {
        self.collect_dim()
    }

    /// [`collect`](Self::collect) as a 2-D array; an error if the array is not 2-D.
    pub fn collect2(&self) -> Result<ndarray::Array2<T>, ArrayError> {
        self.collect_dim()
    }

    fn collect_dim<D: ndarray::Dimension>(&self) -> Result<ndarray::Array<T, D>, ArrayError> {
        let expected = D::NDIM.unwrap_or(self.ndim());
        if expected != self.ndim() {
            return Err(ArrayError::Dimensionality {
                expected,
                shape: self.shape(),
            });
        }
        Ok(self
            .collect()?
            .into_dimensionality::<D>()
            .expect("checked the dimensionality"))
    }
}

impl<T: Float> DArray<T> {
    fn random(
        ctx: &Context,
        shape: &[usize],
        blocks: &impl Blocking,
        seed: u64,
        normal: bool,
    ) -> Result<Self, ArrayError> {
        let grid = make_grid::<T>(ctx, shape, blocks)?;
        let total: u128 = shape.iter().map(|&n| n as u128).product();
        if total > u32::MAX as u128 {
            return Err(ArrayError::TooLarge {
                what: "a random array",
                elements: total,
            });
        }
        let kernel = kernels::random::<T>(normal).expect("the built-in random kernels build");
        let global = strides(shape);
        let blocks = grid
            .domains()
            .into_iter()
            .enumerate()
            .map(|(i, d)| {
                let bshape = d.shape();
                let off: usize = d.start().iter().zip(&global).map(|(s, g)| s * g).sum();
                let mut p = box_params(&bshape, off, &global, 0, &strides(&bshape), d.len());
                p.extra[0] = seed as u32;
                p.extra[1] = (seed >> 32) as u32;
                let owner = ranks::owner_of(ctx, &grid, i);
                Self::launch_owned(ctx, owner, normal && Self::is_f64(), &kernel, p, Vec::new())
            })
            .collect();
        Ok(DArray::from_parts(ctx, grid, blocks))
    }

    /// Uniform random numbers in `[0, 1)`. Element `i` depends only on `seed` and `i`, so
    /// the same seed gives the same array whatever the blocking; CPU threads and GPUs
    /// compute the same bits.
    ///
    /// ```
    /// use dagger::prelude::*;
    /// let ctx = Context::builder().threads(2).build()?;
    /// let a = DArray::<f64>::rand(&ctx, [50, 30], Blocks::new([7, 8]), 42)?.collect()?;
    /// let b = DArray::<f64>::rand(&ctx, [50, 30], Blocks::new([50, 1]), 42)?.collect()?;
    /// assert_eq!(a, b);
    /// assert!(a.iter().all(|&x| (0.0..1.0).contains(&x)));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn rand(
        ctx: &Context,
        shape: impl AsRef<[usize]>,
        blocks: impl Blocking,
        seed: u64,
    ) -> Result<Self, ArrayError> {
        Self::random(ctx, shape.as_ref(), &blocks, seed, false)
    }

    /// Standard normal random numbers (Box–Muller on two uniforms per element), the same
    /// for a seed whatever the blocking; a GPU's `log` and `cos` may differ from the CPU's
    /// in the last bits. (In `f64` they are drawn on CPU threads: GPUs have no 64-bit
    /// `log` and `cos`.)
    pub fn randn(
        ctx: &Context,
        shape: impl AsRef<[usize]>,
        blocks: impl Blocking,
        seed: u64,
    ) -> Result<Self, ArrayError> {
        Self::random(ctx, shape.as_ref(), &blocks, seed, true)
    }
}
