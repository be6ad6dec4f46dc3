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
//! 2. processors, memory spaces and kernels ([`processor`], [`Kernel`]) — the device
//!    interface is [`Processor`], and wgpu devices ([`WgpuProc`]) are one implementation;
//! 3. chunks and task errors ([`Chunk`], [`TaskError`]);
//! 4. scopes, options and the event log ([`Scope`], [`Options`], [`LogEvent`]);
//! 5. the scheduler: the task record, queues, workers, placement (the whole cost model) and
//!    execution, reaching devices only through [`Processor`];
//! 6. task handles ([`DTask`], arguments);
//! 7. the context ([`Context`]);
//! 8. lazy thunks, datadeps and other processes ([`Thunk`], [`Context::spawn_datadeps`],
//!    [`remote`]: worker ranks, whose processors the head drives through [`Processor`]);
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
#[cfg(feature = "wgpu")]
pub mod array;
mod chunk;
mod context;
mod datadeps;
mod error;
mod kernel;
mod log;
mod options;
pub mod processor;
pub mod remote;
mod sched;
mod scope;
mod task;
mod thunk;
mod value;
pub mod viz;

#[cfg(feature = "wgpu")]
pub use array::{
    ArrayDomain, ArrayError, AutoBlocks, Blocking, Blocks, DArray, Element, ExprError, Float, Gemm,
};
pub use chunk::Chunk;
pub use context::{global, spawn, BuildError, Context, ContextBuilder};
pub use datadeps::{
    AsView, Cell, DataRegion, In, InOut, Out, Part, Ref, RefMut, RegionTimeoutError, View,
};
pub use error::{CellsRestored, RestoredCell, ScheduleError, TaskError, TaskLabel};
pub use kernel::{Backend, CpuImpl, Kernel, KernelBuilder, KernelCall};
pub use log::{EventKind, LogEvent};
pub use options::{clear_default_options, get_options, set_default_options, with_options, Options};
pub use processor::task_threads;
pub use processor::{
    Completion, MemorySpace, MoveError, OsProc, Processor, ProcessorId, ProcessorInfo,
    ProcessorKind, TaskCall, TaskFailure, TaskInfo, ThreadProc,
};
pub use scope::{IndexRange, Scope, ScopeError};
pub use task::{DTask, FetchTimeoutError, IntoArg, Moved, Plain, Shared, Val};
pub use thunk::{delayed, delayed_with, try_delayed, Thunk};
pub use value::Value;

#[doc(hidden)]
pub use inventory as __inventory;

#[cfg(feature = "wgpu")]
pub use dagger_cpu::{Trans, Triangle};
#[cfg(feature = "wgpu")]
pub use dagger_wgpu::blas::GemmKernel;
#[cfg(feature = "wgpu")]
pub use datadeps::KernelAccess;
#[cfg(feature = "wgpu")]
#[doc(hidden)]
pub use kernel::tiles::TileScalar;
#[cfg(feature = "wgpu")]
pub use processor::wgpu::{Access, DType, GpuScalar, KernelError, WgslKernel, WgslKernelBuilder};
#[cfg(feature = "wgpu")]
pub use processor::{GpuInfo, WgpuProc};
#[cfg(feature = "wgpu")]
pub use task::KernelArg;

/// The names most programs need: `use dagger::prelude::*;`.
pub mod prelude {
    pub use crate::{
        delayed, get_options, with_options, Chunk, Context, DTask, Options, Scope, TaskError,
        Thunk, Val,
    };
    #[cfg(feature = "wgpu")]
    pub use crate::{ArrayDomain, AutoBlocks, Blocks, DArray};
}
