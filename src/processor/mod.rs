//! Processors: where tasks run.
//!
//! A [`Processor`] is anything that can execute a task: a CPU thread ([`ThreadProc`]), a GPU
//! device, or a processor a user defines. Every processor lives in one [`MemorySpace`] and
//! has a parent in the processor tree; the root of a process's tree is its [`OsProc`].
//!
//! The trait is the public extension point (Dagger.jl's `execute!`, `move`, `iscompatible`,
//! `default_enabled`) and the device interface: a processor with a memory space of its own
//! moves values in and out of it and may finish work asynchronously ([`Processor::launch`]).
//! The scheduler drives CPU threads directly, and every other processor — the wgpu devices
//! ([`WgpuProc`]) among them — through this trait alone.

mod call;
mod os;
mod thread;
pub(crate) mod wgpu;

pub(crate) use call::{drop_payload, panic_message, set_task_processor, set_task_threads, Body};
pub use call::{task_processor, task_threads, Completion, TaskCall, TaskFailure, TaskInfo};
pub use os::OsProc;
pub use thread::ThreadProc;
#[cfg(feature = "wgpu")]
pub use wgpu::{GpuInfo, WgpuProc};

use std::fmt;

use crate::value::Value;

/// Identifies a processor within a [`Context`](crate::Context).
///
/// It names the process the processor belongs to, so identifiers stay meaningful when
/// work spans several processes.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ProcessorId {
    process: u32,
    index: u32,
}

impl ProcessorId {
    pub(crate) const fn new(process: u32, index: u32) -> Self {
        ProcessorId { process, index }
    }

    /// The process this processor belongs to (1 for the local process).
    pub const fn process(self) -> u32 {
        self.process
    }

    /// Position of the processor in its context's processor list.
    pub const fn index(self) -> usize {
        self.index as usize
    }
}

/// Serialized as its [`Display`](fmt::Display) form, `"process:index"`.
impl serde::Serialize for ProcessorId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// Serialized as [`ProcessorKind::as_str`].
impl serde::Serialize for ProcessorKind {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// Serialized as its [`Display`](fmt::Display) form.
impl serde::Serialize for MemorySpace {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl fmt::Display for ProcessorId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.process, self.index)
    }
}

/// The kind of a processor, used by [`Scope::kind`](crate::Scope::kind) and `dagger info`.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ProcessorKind {
    /// The process itself ([`OsProc`]); it runs no tasks, it parents the others.
    Os,
    /// A CPU worker thread ([`ThreadProc`]).
    Thread,
    /// A GPU device reached through wgpu.
    Wgpu,
    /// A processor defined outside this crate, named by its implementation.
    Custom(&'static str),
}

impl ProcessorKind {
    /// A short lowercase name: `"os"`, `"thread"`, `"wgpu"` or the custom name.
    pub fn as_str(self) -> &'static str {
        match self {
            ProcessorKind::Os => "os",
            ProcessorKind::Thread => "thread",
            ProcessorKind::Wgpu => "wgpu",
            ProcessorKind::Custom(name) => name,
        }
    }
}

impl fmt::Display for ProcessorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A memory space: where a value physically lives.
///
/// Host memory of a process, the memory of one GPU device, or a space a custom processor
/// defines. Moving a value between spaces goes through [`Processor::move_in`].
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum MemorySpace {
    /// Host RAM of a process.
    Host {
        /// The process.
        process: u32,
    },
    /// The memory of a GPU device.
    Device {
        /// The process that drives the device.
        process: u32,
        /// The device index within that process.
        device: u32,
    },
    /// A memory space owned by a custom processor.
    Custom {
        /// The process.
        process: u32,
        /// An identifier chosen by the processor.
        id: u32,
    },
}

impl MemorySpace {
    /// Host memory of the local process.
    pub const LOCAL_HOST: MemorySpace = MemorySpace::Host { process: 1 };

    /// Whether this is host RAM.
    pub fn is_host(self) -> bool {
        matches!(self, MemorySpace::Host { .. })
    }
}

impl fmt::Display for MemorySpace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MemorySpace::Host { process } => write!(f, "host@{process}"),
            MemorySpace::Device { process, device } => write!(f, "gpu{device}@{process}"),
            MemorySpace::Custom { process, id } => write!(f, "custom{id}@{process}"),
        }
    }
}

/// Error returned by [`Processor::move_in`]: a processor of your own says what it cannot
/// hold, and the scheduler then looks for another processor or fails the task with it.
///
/// ```
/// use dagger::{MemorySpace, MoveError};
///
/// let e = MoveError::Unsupported {
///     type_name: "String",
///     from: MemorySpace::LOCAL_HOST,
///     to: MemorySpace::Device { process: 1, device: 0 },
/// };
/// assert_eq!(e.to_string(), "a value of type `String` cannot be moved from host@1 to gpu0@1");
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MoveError {
    /// The processor cannot hold values of this type.
    #[error("a value of type `{type_name}` cannot be moved from {from} to {to}")]
    Unsupported {
        /// The value's type.
        type_name: &'static str,
        /// Source memory space.
        from: MemorySpace,
        /// Destination memory space.
        to: MemorySpace,
    },
    /// The move was attempted and failed.
    #[error("moving `{type_name}` from {from} to {to} failed")]
    Failed {
        /// The value's type.
        type_name: &'static str,
        /// Source memory space.
        from: MemorySpace,
        /// Destination memory space.
        to: MemorySpace,
        /// What went wrong.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// Something that runs tasks: Dagger.jl's `Processor` interface, and the device interface.
///
/// Implement it to add your own processor to a context with
/// [`ContextBuilder::processor`](crate::ContextBuilder::processor). The trait is
/// object-safe; the context keeps processors as `Arc<dyn Processor>`.
///
/// A processor computes in one [`MemorySpace`]. Before a task runs, the scheduler brings
/// each input into that space: [`move_in`](Self::move_in) is told where the value is now;
/// a value in another processor's space that `move_in` does not take directly is first
/// brought to host memory by its own processor's [`move_out`](Self::move_out). Results
/// stay in the space of the processor that made them until something else needs them.
///
/// Tasks are closures (host code) or kernels ([`Kernel`](crate::Kernel): named, with an
/// implementation per [`Backend`](crate::Backend)); [`is_compatible`](Self::is_compatible)
/// says which this processor takes, and [`launch`](Self::launch) runs one — by default
/// synchronously through [`execute`](Self::execute), which runs the host body.
///
/// The processor tree (Dagger's `get_parent` and `get_processors`) is kept by the context,
/// which assigns identifiers: see [`ProcessorInfo`]. A custom processor's parent is its
/// process's [`OsProc`].
///
/// ```
/// use dagger::prelude::*;
/// use dagger::{MemorySpace, MoveError, Processor, ProcessorKind, TaskCall, TaskFailure, TaskInfo, Value};
/// use std::sync::Arc;
///
/// /// A processor that doubles every `i64` result.
/// struct Doubler;
/// impl Processor for Doubler {
///     fn kind(&self) -> ProcessorKind { ProcessorKind::Custom("doubler") }
///     fn memory_space(&self) -> MemorySpace { MemorySpace::LOCAL_HOST }
///     fn is_compatible(&self, _task: &TaskInfo) -> bool { true }
///     fn execute(&self, call: TaskCall) -> Result<Value, TaskFailure> {
///         let out = call.run()?;
///         match out.downcast_ref::<i64>() {
///             Some(x) => Ok(Value::new(x * 2)),
///             None => Ok(out),
///         }
///     }
/// }
///
/// let ctx = Context::builder().threads(1).processor(Arc::new(Doubler)).build()?;
/// let doubler = ctx.processors_of_kind(ProcessorKind::Custom("doubler"))[0];
/// let t = ctx.spawn_with(Options::new().scope(Scope::exact(doubler)), |x: i64| x + 1, (20,));
/// assert_eq!(t.fetch()?, 42);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub trait Processor: Send + Sync + 'static {
    /// What kind of processor this is.
    fn kind(&self) -> ProcessorKind;

    /// A human-readable description for `dagger info`, logs and error messages.
    fn description(&self) -> String {
        self.kind().to_string()
    }

    /// The memory space the processor computes in.
    fn memory_space(&self) -> MemorySpace;

    /// Whether tasks on the default scope may be placed here. Processors that must be asked
    /// for explicitly (Dagger's opt-in processors) return `false`.
    fn default_enabled(&self) -> bool {
        false
    }

    /// Whether the processor can take tasks at all. A processor that stops being available
    /// (a GPU whose device was lost, a remote worker that went away) leaves placement at
    /// once: new tasks are not given to it, and a ready task whose candidates include it
    /// goes to another candidate. The default is `true`.
    ///
    /// ```
    /// use dagger::prelude::*;
    /// use dagger::{MemorySpace, Processor, ProcessorKind, TaskInfo};
    /// use std::sync::atomic::{AtomicBool, Ordering};
    /// use std::sync::Arc;
    ///
    /// /// A processor that can be switched off.
    /// struct Switchable(AtomicBool);
    /// impl Processor for Switchable {
    ///     fn kind(&self) -> ProcessorKind { ProcessorKind::Custom("switchable") }
    ///     fn memory_space(&self) -> MemorySpace { MemorySpace::LOCAL_HOST }
    ///     fn is_compatible(&self, _task: &TaskInfo) -> bool { true }
    ///     fn is_available(&self) -> bool { self.0.load(Ordering::Relaxed) }
    /// }
    ///
    /// let p = Arc::new(Switchable(AtomicBool::new(true)));
    /// let ctx = Context::builder().threads(1).processor(p.clone()).build()?;
    /// let only = Scope::kind(ProcessorKind::Custom("switchable"));
    /// assert_eq!(ctx.spawn_with(Options::new().scope(only.clone()), || 1, ()).fetch()?, 1);
    /// p.0.store(false, Ordering::Relaxed);
    /// let e = ctx.spawn_with(Options::new().scope(only), || 1, ()).fetch().unwrap_err();
    /// assert!(e.to_string().contains("not available"), "{e}");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    fn is_available(&self) -> bool {
        true
    }

    /// Whether this processor can run the task described by `task` (a closure, or a kernel
    /// it has an implementation for: see [`TaskInfo::has_implementation`]).
    fn is_compatible(&self, task: &TaskInfo) -> bool;

    /// Why this processor cannot run `task`, for the error that lists the processors a
    /// task could not be placed on.
    fn incompatibility(&self, task: &TaskInfo) -> String {
        let _ = task;
        "not compatible with the task".into()
    }

    /// Converts an input of a task into this processor's memory space. `from` is the space
    /// the value is in now. The default accepts values already in this processor's space
    /// (and host values when this processor computes in host memory) unchanged, and refuses
    /// the others; the scheduler then offers values from other spaces again after moving
    /// them to the host.
    fn move_in(&self, from: MemorySpace, value: Value) -> Result<Value, MoveError> {
        let to = self.memory_space();
        if from == to || (from.is_host() && to.is_host()) {
            Ok(value)
        } else {
            Err(MoveError::Unsupported {
                type_name: value.type_name(),
                from,
                to,
            })
        }
    }

    /// Moves a value that lives in this processor's memory space (one of its results, or a
    /// value its `move_in` made) to host memory, as the type it stands for there. The
    /// default hands the value over unchanged: right for processors whose values are
    /// ordinary objects of this process. A device whose memory the host cannot read
    /// directly downloads here, or refuses with [`MoveError`].
    fn move_out(&self, value: Value) -> Result<Value, MoveError> {
        Ok(value)
    }

    /// How many bytes [`move_in`](Self::move_in) would transfer for `value` (now in
    /// `from`): 0 when it is resident here already. Placement weighs it; the default 0
    /// means "unknown".
    fn bytes_to_move_in(&self, from: MemorySpace, value: &Value) -> u64 {
        let _ = (from, value);
        0
    }

    /// How many bytes [`move_out`](Self::move_out) would transfer for `value` (0 when a
    /// host copy exists already, or unknown).
    fn bytes_to_move_out(&self, value: &Value) -> u64 {
        let _ = value;
        0
    }

    /// Runs a task whose inputs have already been moved in, on the calling thread. The
    /// default runs its host body.
    fn execute(&self, call: TaskCall) -> Result<Value, TaskFailure> {
        call.run()
    }

    /// Starts a task whose inputs have already been moved in, and reports its result
    /// through `done` — at once, or later from any thread (a device's completion
    /// callback). The default calls [`execute`](Self::execute) and completes with its
    /// result. The processor's capacity is held until `done` is called.
    fn launch(&self, call: TaskCall, done: Completion) {
        done.complete(self.execute(call));
    }

    /// How many tasks of full occupancy the processor runs at once (1 for a thread).
    fn capacity(&self) -> u32 {
        1
    }

    /// Throughput assumed before run times are measured, in GFLOP/s (flop per ns), for
    /// kernels that count their flops. Placement learns the real figure from runs.
    fn prior_gflops(&self) -> f64 {
        50.0
    }
}

/// What a context knows about one of its processors. It serializes (with `serde`) as an
/// object of the same fields, identifiers as `"process:index"`, as `dagger info --json`
/// prints it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct ProcessorInfo {
    /// Its identifier.
    pub id: ProcessorId,
    /// Its kind.
    pub kind: ProcessorKind,
    /// Its description.
    pub description: String,
    /// The processor it hangs under (`None` for the [`OsProc`]).
    pub parent: Option<ProcessorId>,
    /// The processors under it.
    pub children: Vec<ProcessorId>,
    /// Where it computes.
    pub memory_space: MemorySpace,
    /// Whether the default scope includes it.
    pub default_enabled: bool,
    /// The device, for a GPU processor.
    #[cfg(feature = "wgpu")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gpu: Option<GpuInfo>,
}
