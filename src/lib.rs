//! # dagger
//!
//! Parallel, out-of-core and heterogeneous computing after Julia's
//! [Dagger.jl](https://github.com/JuliaParallel/Dagger.jl): describe work as tasks over
//! data — eagerly with [`Context::spawn`] or lazily with [`delayed`] — and a scheduler
//! places each task on a [`Processor`] (a CPU thread, a GPU, a processor of your own)
//! within the [`Scope`] you allow, moves the data it needs, runs it, and frees data as
//! soon as nothing needs it.
//!
//! ```
//! use dagger::prelude::*;
//!
//! fn add1(x: i64) -> i64 { x + 1 }
//! fn add2(x: i64) -> i64 { x + 2 }
//!
//! let ctx = Context::new()?;
//! let p = ctx.spawn(add1, (4,));            // DTask<i64>, running now
//! let q = ctx.spawn(add2, (&p,));           // waits for p
//! let r = ctx.spawn(add1, (3,));
//! let s = ctx.spawn(|p, q, r| p + q + r, (&p, &q, &r));
//! assert_eq!(s.fetch()?, 16);
//!
//! // The same graph, lazily.
//! let p = delayed(add1, (4,));
//! let q = delayed(add2, (&p,));
//! let r = delayed(add1, (3,));
//! let s = delayed(|p: i64, q: i64, r: i64| p + q + r, (&p, &q, &r));
//! assert_eq!(s.collect_on(&ctx)?, 16);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! ## Coming from Dagger.jl
//!
//! | Dagger.jl | here |
//! |---|---|
//! | `Processor`, `execute!`, `move`, `iscompatible`, `default_enabled` | [`Processor`] (`execute`, `move_in`, `is_compatible`, `default_enabled`) |
//! | `get_parent`, `get_processors` | [`ProcessorInfo::parent`], [`ProcessorInfo::children`] from [`Context::processors`] |
//! | `OSProc`, `ThreadProc` | [`OsProc`], [`ThreadProc`] |
//! | `Chunk`, `tochunk`, `collect` | [`Chunk`], [`Context::to_chunk`], [`Chunk::collect`] |
//! | `@spawn`/`spawn`, `DTask`, `fetch`, `wait` | [`Context::spawn`]/[`spawn`], [`DTask`], [`DTask::fetch`], [`DTask::wait`] |
//! | `delayed`, `Thunk`, `compute`, `collect` | [`delayed`], [`Thunk`], [`Thunk::compute`], [`Thunk::collect`] |
//! | `Options`, `with_options`, `get_options`, `default_option` | [`Options`], [`with_options`], [`get_options`], [`set_default_options`] |
//! | `AnyScope`, `DefaultScope`, `UnionScope`, `ProcessScope`, `ExactScope`, `ProcessorTypeScope`, `constrain` | [`Scope::any`], [`Scope::default_scope`], [`Scope::union`], [`Scope::process`], [`Scope::exact`], [`Scope::kind`], [`Scope::constrain`] |
//! | `enable_logging!`, `fetch_logs!` | [`Context::enable_logging`], [`Context::fetch_logs`] |
//! | `render_logs` (`:chrome_trace`, `:plots_gantt`, `:graphviz`) | [`viz::chrome_trace`], [`viz::gantt_svg`], [`viz::run_dot`], [`viz::summarize`], [`Thunk::to_dot`] |
//! | `spawn_datadeps`, `In`, `Out`, `InOut` | [`Context::spawn_datadeps`], [`In`], [`Out`], [`InOut`] over [`Cell`]s and their views |
//! | DaggerGPU's device processors, kernels | [`WgpuProc`], [`WgslKernel`], [`Context::spawn_kernel`], [`Scope::gpu`] |
//! | `move(from_proc, to_proc, x)` | [`Processor::move_in`] (told the source space) and [`Processor::move_out`] (to the host) |
//! | `execute!` on a device, asynchronously | [`Processor::launch`] with a [`Completion`] |
//! | a function with methods per processor type (multiple dispatch) | [`Kernel`]: a named operation with an implementation per [`Backend`] |
//! | `DArray`, `Blocks`, `ArrayDomain`, `distribute` | [`DArray`], [`Blocks`], [`ArrayDomain`], [`DArray::distribute`] |
//! | `@stencil` with `Wrap`, `Pad`, `Clamp`, `Reflect` | [`DArray::stencil`], [`DArray::stencil_iter`] with a [`Stencil`] and a [`Boundary`] |
//! | `lu(A, NoPivot())`, `lu(A)`, `ldiv!`/`A \ B`, `inv`, `norm`/`opnorm` on a `DArray` | [`DArray::lu`] with [`Pivoting`], [`Lu::solve`], [`DArray::solve`], [`DArray::solve_triangular`], [`DArray::inv`], [`DArray::norm`] |
//! | `qr(A)` on a `DArray` (tiled Householder), `A \ B` for a tall `A` (least squares) | [`DArray::qr`] → [`Qr`] with [`Qr::q`], [`Qr::r`], [`Qr::solve`] |
//!
//! The rest of Dagger.jl's API reference, name by name:
//!
//! | Dagger.jl | here |
//! |---|---|
//! | `tochunk(x, proc, scope)`, a chunk's processor and scope | [`Context::to_chunk_in`], [`Context::to_chunk_on`], [`Chunk::with_scope`], [`Chunk::scope`]; chunks pinned to scopes no processor shares fail the task with [`ScheduleError::ChunkScopes`] |
//! | `mutable`, `@mutable` | [`Context::mutable`] → [`Mutable`], passed as `&m` (the task gets a [`MutGuard`]) |
//! | `shard`, `@shard`, `Shard` (`per_thread`, `procs`, `workers`) | [`Context::shard`] over a [`Scope`] → [`Shard`]; each task gets its processor's piece |
//! | `task_processor` | [`task_processor`] |
//! | `num_processors`, `compatible_processors`, `all_processors`, `procs(ctx)` | [`Context::num_processors`], [`Context::compatible_processors`], [`Context::processors`] |
//! | `addprocs!`, `rmprocs!` | [`Context::enable_processor`], [`Context::disable_processor`] (running tasks finish; new processors are added when the context is built, with [`ContextBuilder::processor`]) |
//! | `scope(...)` keys, `scope_key_precedence`, `to_scope` | [`scope!`], [`ScopeKeys`], [`ScopeKey::precedence`], [`ScopeKey::to_scope`], [`register_scope_key`] |
//! | `constraint`, scope equality and subsets | [`Scope::constrain`], [`Scope::simplify`], `==` by meaning, [`Scope::is_subset`], [`Scope::is_disjoint`] |
//! | `spawn_sequential`, `spawn_bulk` | [`spawn_sequential`], [`spawn_bulk`] |
//! | `spawn_streaming`, `finish_stream`, stream buffers | [`Context::spawn_streaming`] with a [`StreamBuilder`]: a source returning `None` finishes the stream; [`StreamBuilder::buffer`] |
//! | `delayed` options `persist`, `get_result` | a thunk keeps its result while it is held (drop it to release, as RAII frees all data); [`Thunk::collect`] returns the value, [`Thunk::compute`] a [`Chunk`] |
//! | `delayed` option `cache` | [`delayed_cached`] and [`Thunk::evict`]: recomputed after eviction |
//! | `delayed` option `meta` | [`DTask::as_chunk`], [`Thunk::as_chunk`]: the function receives a [`Chunk`] |
//! | `delayed` options `processor`, `scope`; `@par`, `@spawn` | [`Options::scope`] with [`delayed_with`], [`Context::spawn_with`]; Rust calls replace the macros |
//! | `EagerThunk` (older name of `DTask`), `ThunkID`, `ThunkSummary` | [`DTask`], [`DTask::id`]; values are not serialized, so no summary type |
//! | `spawn_datadeps` `static`/`traversal`; region `try` | tasks are ordered as they are spawned; [`DataRegion::try_spawn`]; views give [`PartRef`]/[`PartMut`] of a [`Partition`] |
//! | `Options` fields `occupancy`, `time_util`, `alloc_util` | [`Options::occupancy`], [`Options::time_hint`], [`Options::memory_hint`], [`Options::max_threads`] |
//! | `Options` fields `single`, `proclist` (deprecated there) | [`Options::scope`] |
//! | `allow_errors` | always on: a failure fails only its dependents |
//! | `checkpoint`, `restore` (task and scheduler options) | [`Options::checkpoint`]: a directory the task's result is saved in; a task whose result is already there loads it instead of running |
//! | `storage`, `storage_root_tag`, `storage_leaf_tag`, `storage_retain` | not provided per task: a context spills to a directory of its own ([`ContextBuilder::spill_dir`], see [`storage`]) |
//! | `enable_disk_caching!` (a memory limit per process, a disk limit) | [`ContextBuilder::memory_limit`] or `DAGGER_MEMORY_LIMIT` (60% of the machine's memory by default); the disk the spill directory is on is not limited |
//! | `File`, `tofile`, `save`, `load`, `mem_limit` | [`File::open`] (a task argument read inside the task), [`Context::tofile`], [`Chunk::save`], [`Chunk::load`], [`ContextBuilder::memory_limit`] (spilling to disk; see [`storage`]); [`DArray::from_npy`] and [`DArray::to_npy`] for arrays in numpy's format, `DArray::from_zarr` and `DArray::to_zarr` (the `zarr` feature) for Zarr stores read and written one task per block |
//! | `DArray` fields `domain`, `subdomains`, `chunks`, `concat` | [`DArray::domain`], [`DArray::subdomains`], [`DArray::num_blocks`], [`DArray::concatenate`] |
//! | `view(::DArray, d)`, `alignfirst`, `UnitDomain`, `domain(x)` | [`DArray::slice`], [`ArrayDomain::start`] and [`ArrayDomain::from_shape`]; a plain value has no domain |
//! | `stage`, `stage_operand`, making a DArray tree one thunk | not needed: [`DArray`] operations spawn block tasks at once |
//! | `sort` over `dsort_chunks`, `recursive_splitters` | [`DArray::sort`], [`DArray::sort_with`] and [`DArray::sort_axis`] with a [`SortOrder`], and the argsorts ([`DArray::argsort`]): splitters found exactly, by binary search over the sorted pieces, instead of from samples; no comparator of the user's own |
//! | `gemm!`, `syrk!` (BLAS) | [`DArray::gemm`], [`DArray::syrk`], [`DArray::matmul`]; tiles by [`Trans`], [`Triangle`] |
//! | `allowscalar` | not needed: [`DArray`] has no scalar indexing |
//! | `iscompatible_func`, `iscompatible_arg` | [`Processor::is_compatible`] with [`TaskInfo`] (function and argument types) |
//! | `default_option`, `@option`, `populate_defaults`, `merge(SchedulerOptions, ThunkOptions)` | [`set_default_options`], [`Options::merged_with`] |
//! | `get_tls`, `set_tls!` | [`get_options`], [`task_processor`], [`task_threads`] inside a task |
//! | `lock(f, ctx)`, `Context` fields `log_sink`, `profile` | not needed: the context has no global lock; [`Context::enable_logging`] |
//! | logging an argument's name | [`Options::name`] names the task in logs |
//! | scheduler internals: `ComputeState`, `SchedulerOptions`, `ThunkOptions`, `halt!`, `exec!`, `do_task`, `do_tasks`, `estimate_task_costs`, `order`, `dependents`, `noffspring`, `cleanup_syncdeps`, `handle_fault`, `monitor_procs_changed!`, `impute_sum`, `walk_data`, `thunk_yield`, the task-completion condition | private to the scheduler (`sched`); placement is by earliest estimated finish, and a task waiting in `fetch` gives its processor back as `thunk_yield` does |
//! | `@unimplemented` | not needed: [`Processor`]'s required methods are checked by the compiler |
//! | worker processes, Dagger's MPI mode, one `OSProc` per worker | [`remote`]: rank 0 is the head, the others serve it ([`ContextBuilder::join`], `Context::mpi` with the `mpi` feature) |
//! | `scope(worker=2, thread=1)` | `Scope::worker(2).constrain(&Scope::thread(1))` ([`Scope::worker`], [`Scope::workers`]) |
//! | a function every worker has loaded (`@everywhere`) | [`remote_fn!`] and [`Context::spawn_remote`] |
//!
//! ## Layers
//!
//! The crate is built in layers; each module uses only those of its own layer or below
//! (`tests/layers.rs` checks it):
//!
//! 1. values ([`Value`]);
//! 2. processors, memory spaces, kernels and storage ([`processor`], [`Kernel`],
//!    [`storage`]) — the device interface is [`Processor`], and wgpu devices
//!    ([`WgpuProc`]) are one implementation; a value in host memory, a GPU's evicted
//!    copies included, may be spilled to disk under the context's memory limit;
//! 3. chunks, task errors and scopes ([`Chunk`], [`TaskError`], [`Scope`]) — a chunk may
//!    be pinned to a scope;
//! 4. options and the event log ([`Options`], [`LogEvent`]);
//! 5. the scheduler: the task record, queues, workers, placement (the whole cost model) and
//!    execution, reaching devices only through [`Processor`];
//! 6. task handles ([`DTask`], arguments);
//! 7. the context ([`Context`]);
//! 8. lazy thunks, datadeps, values living on processors, and other processes ([`Thunk`],
//!    [`Context::spawn_datadeps`], [`Mutable`], [`Shard`]; [`remote`]: worker ranks, whose
//!    processors the head drives through [`Processor`]);
//! 9. arrays ([`DArray`]);
//! 10. visualization ([`viz`]) and, on top, the `dagger` command-line tool.
//!
//! A new kind of processor — a device with its own memory, a remote worker — is a type
//! implementing [`Processor`], added with [`ContextBuilder::processor`]; nothing in the
//! scheduler changes (the processors of other ranks in [`remote`] are such types). It runs closures, kernels it has an implementation for (see
//! [`TaskInfo::has_implementation`]), or both.
//!
//! Differences worth knowing: arguments are typed — a `&DTask<U>` argument gives the
//! function a `U` (a clone of the shared value; use [`DTask::shared`] for an `Arc<U>`);
//! a function returning `Result` is spawned with [`Context::try_spawn`] so its `Err` fails
//! the task; Rust closures run on host processors only.

#![warn(missing_docs, unreachable_pub)]

// Layers, lowest first: each module imports only those above it in this list (checked by
// `tests/layers.rs`). See "Layers" in the crate docs.
pub mod array;
mod chunk;
mod context;
mod datadeps;
mod error;
mod kernel;
mod log;
mod mutable;
mod options;
pub mod processor;
pub mod remote;
mod sched;
mod scope;
pub mod storage;
mod stream;
mod task;
mod thunk;
mod value;
pub mod viz;

pub use array::{
    ArrayDomain, ArrayError, AutoBlocks, Blocking, Blocks, DArray, Element, ExprError, Float, Gemm,
};
pub use chunk::Chunk;
pub use context::UnknownProcessor;
pub use context::{global, spawn, BuildError, Context, ContextBuilder};
pub use context::{spawn_bulk, spawn_sequential};
pub use datadeps::{
    AsView, Cell, DataRegion, In, InOut, Out, Part, Ref, RefMut, RegionTimeoutError, View,
};
pub use datadeps::{PartMut, PartRef, Partition};
pub use error::{CellsRestored, RestoredCell, ScheduleError, TaskError, TaskLabel};
pub use kernel::{Backend, CpuImpl, Kernel, KernelBuilder, KernelCall};
pub use log::{EventKind, LogEvent, Placement};
pub use mutable::{MutGuard, Mutable, Shard};
pub use options::{
    clear_default_options, get_options, set_default_options, with_options, Options, Priority,
};
pub use processor::task_processor;
pub use processor::task_threads;
pub use processor::{
    Completion, MemorySpace, MoveError, OsProc, Processor, ProcessorId, ProcessorInfo,
    ProcessorKind, TaskCall, TaskFailure, TaskInfo, ThreadProc,
};
pub use scope::{register_scope_key, KeyValue, ScopeKey, ScopeKeys};
pub use scope::{IndexRange, Scope, ScopeError};
pub use storage::File;
pub use stream::{Stream, StreamBuilder, DEFAULT_STREAM_BUFFER};
pub use task::AsChunk;
pub use task::{DTask, FetchTimeoutError, IntoArg, Moved, Plain, Shared, Val};
pub use thunk::delayed_cached;
pub use thunk::{delayed, delayed_with, try_delayed, Thunk};
pub use value::Value;

#[doc(hidden)]
pub use inventory as __inventory;

pub use array::{Boundary, Fused, Lu, Norm, Qr, Solver, SortOrder, Stencil};
pub use dagger_cpu::{Diag, Pivoting};
pub use dagger_cpu::{Trans, Triangle};
pub use dagger_wgpu::blas::GemmKernel;
pub use datadeps::KernelAccess;
#[doc(hidden)]
pub use kernel::tiles::TileScalar;
pub use processor::wgpu::{
    Access, DType, GpuScalar, KernelArgsError, KernelError, WgslKernel, WgslKernelBuilder,
};
#[cfg(feature = "wgpu")]
pub use processor::wgpu::{GpuMemoryError, GpuMemoryStats};
#[cfg(feature = "wgpu")]
pub use processor::{GpuInfo, WgpuProc};
pub use task::KernelArg;

/// The names most programs need: `use dagger::prelude::*;` brings everything the README's
/// programs use — tasks, lazy thunks, options and scopes, datadeps cells and access modes,
/// arrays, kernels and the GEMM/SYRK parameters. Without the default `wgpu` feature they are
/// all there, running on CPU threads.
pub mod prelude {
    pub use crate::{
        delayed, get_options, try_delayed, with_options, Cell, Chunk, Context, DTask, In, InOut,
        Options, Out, PartMut, PartRef, Ref, RefMut, Scope, TaskError, Thunk, Val,
    };
    pub use crate::{
        Access, ArrayDomain, ArrayError, AutoBlocks, Blocks, DArray, Trans, Triangle, WgslKernel,
    };
}

/// The README's programs, compiled (and, where they need no GPU, run) as doctests so they
/// stay true.
#[cfg(all(doctest, feature = "wgpu"))]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
