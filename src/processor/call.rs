//! What a processor is handed: a task ready to run ([`TaskCall`]), what it is
//! ([`TaskInfo`]), how it reports failure ([`TaskFailure`]) and, for processors that finish
//! work asynchronously, the callback that reports the result ([`Completion`]).

use std::sync::Arc;

use crate::kernel::{Backend, KernelCall};
use crate::value::Value;

/// The body of a task, type-erased: takes the input values in dependency order.
pub(crate) type Body = Box<dyn FnOnce(&mut [Value]) -> Result<Value, TaskFailure> + Send>;

/// How a task's body or a processor reports failure (see
/// [`Processor::execute`](crate::Processor::execute)). The scheduler turns it into a
/// [`TaskError`](crate::TaskError) naming the task and processor.
///
/// ```
/// use dagger::TaskFailure;
///
/// // Any error converts, so a processor's `execute` can use `?`; or give a message.
/// let from_io: TaskFailure = std::io::Error::other("disk full").into();
/// assert!(matches!(from_io, TaskFailure::Error(e) if e.to_string() == "disk full"));
/// assert!(matches!(TaskFailure::msg("no such kernel"), TaskFailure::Error(_)));
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum TaskFailure {
    /// An error.
    Error(Box<dyn std::error::Error + Send + Sync>),
    /// A panic, with its message.
    Panic(String),
    /// An argument of the wrong type.
    ArgumentType {
        /// Which argument.
        index: usize,
        /// Expected type.
        expected: &'static str,
        /// Given type.
        found: &'static str,
    },
}

impl TaskFailure {
    /// A failure with a message.
    pub fn msg(message: impl Into<String>) -> Self {
        TaskFailure::Error(message.into().into())
    }
}

impl<E: std::error::Error + Send + Sync + 'static> From<E> for TaskFailure {
    fn from(e: E) -> Self {
        TaskFailure::Error(Box::new(e))
    }
}

/// Describes a task to a processor deciding whether it can run it.
#[derive(Debug, Clone)]
pub struct TaskInfo {
    pub(crate) id: u64,
    pub(crate) name: String,
    pub(crate) function: &'static str,
    pub(crate) input_types: Vec<&'static str>,
    pub(crate) host_closure: bool,
    pub(crate) kernel: Option<Arc<KernelCall>>,
    /// Whether every argument is among the inputs and the function has a name another
    /// process knows it by (`function`).
    pub(crate) portable: bool,
}

impl TaskInfo {
    /// The task's identifier.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The task's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The path of the task's function type.
    pub fn function(&self) -> &'static str {
        self.function
    }

    /// Type names of the task's dependencies, in argument order, where known.
    pub fn input_types(&self) -> &[&'static str] {
        &self.input_types
    }

    /// Whether the task can run in host memory (a Rust closure, or a kernel with a CPU
    /// implementation).
    pub fn runs_on_host(&self) -> bool {
        self.host_closure
    }

    /// Whether the task can run in another process running the same program: a kernel, or
    /// a function registered by name (see [`remote_fn!`](crate::remote_fn)) spawned with
    /// [`Context::spawn_remote`](crate::Context::spawn_remote), whose arguments are all
    /// among the task's inputs. Closures are not: they run where they were made.
    pub fn is_portable(&self) -> bool {
        self.portable
    }

    /// The kernel's name, for a kernel task.
    pub fn kernel(&self) -> Option<&str> {
        self.kernel.as_deref().map(|k| k.kernel().name())
    }

    /// The kernel and its parameters, for a kernel task.
    pub fn kernel_call(&self) -> Option<&KernelCall> {
        self.kernel.as_deref()
    }

    /// Whether the task is a kernel with an implementation for `backend`.
    pub fn has_implementation(&self, backend: &Backend) -> bool {
        self.kernel
            .as_deref()
            .is_some_and(|k| k.kernel().has(backend))
    }
}

/// A task ready to run on a processor: its inputs (already moved into the processor's
/// memory space) and its body. See [`Processor::execute`](crate::Processor::execute) and
/// [`Processor::launch`](crate::Processor::launch).
pub struct TaskCall {
    pub(crate) info: TaskInfo,
    pub(crate) inputs: Vec<Value>,
    pub(crate) body: Body,
}

impl TaskCall {
    /// What the task is.
    pub fn info(&self) -> &TaskInfo {
        &self.info
    }

    /// The inputs, in dependency order.
    pub fn inputs(&self) -> &[Value] {
        &self.inputs
    }

    /// The inputs, to be replaced before [`run`](Self::run) (a device that keeps values in
    /// its own form hands the body host values).
    pub fn inputs_mut(&mut self) -> &mut [Value] {
        &mut self.inputs
    }

    /// The inputs, taken out.
    pub fn take_inputs(&mut self) -> Vec<Value> {
        std::mem::take(&mut self.inputs)
    }

    /// Runs the task's host body on the calling thread and returns its value: the closure,
    /// or a kernel's CPU implementation with the call's parameters. The inputs must be host
    /// values.
    pub fn run(mut self) -> Result<Value, TaskFailure> {
        (self.body)(&mut self.inputs)
    }

    /// [`run`](Self::run) with other inputs.
    pub fn run_with(self, inputs: &[Value]) -> Result<Value, TaskFailure> {
        // Clones of the caller's handles, so the body takes none of them over.
        (self.body)(&mut inputs.to_vec())
    }
}

type Done = Box<dyn FnOnce(Result<Value, TaskFailure>) + Send>;

/// Reports the result of a task started by [`Processor::launch`](crate::Processor::launch).
///
/// Call [`complete`](Self::complete) once, from any thread, when the work has finished.
/// A completion dropped without being called fails its task (saying so) rather than
/// leaving anyone waiting for it.
pub struct Completion {
    done: Option<Done>,
}

impl Completion {
    pub(crate) fn new(done: impl FnOnce(Result<Value, TaskFailure>) + Send + 'static) -> Self {
        Completion {
            done: Some(Box::new(done)),
        }
    }

    /// Finishes the task with `result`: its value (in the processor's memory space) or why
    /// it failed.
    pub fn complete(mut self, result: Result<Value, TaskFailure>) {
        if let Some(done) = self.done.take() {
            done(result);
        }
    }
}

impl Drop for Completion {
    fn drop(&mut self) {
        if let Some(done) = self.done.take() {
            done(Err(if std::thread::panicking() {
                TaskFailure::Panic("the processor panicked while running the task".into())
            } else {
                TaskFailure::msg(
                    "the processor dropped the task's completion without reporting a result",
                )
            }));
        }
    }
}

impl std::fmt::Debug for Completion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Completion")
            .field("pending", &self.done.is_some())
            .finish()
    }
}

thread_local! {
    /// CPU threads the task running on this thread may use.
    static TASK_THREADS: std::cell::Cell<usize> = const { std::cell::Cell::new(1) };
}

/// How many CPU threads the running task may use: 1, or more when it asked for several
/// with [`Options::max_threads`](crate::Options::max_threads) and the scheduler lent it
/// idle threads. 1 outside tasks.
///
/// ```
/// assert_eq!(dagger::task_threads(), 1);
/// ```
pub fn task_threads() -> usize {
    TASK_THREADS.with(std::cell::Cell::get)
}

thread_local! {
    /// The processor of the task running on this thread.
    static TASK_PROCESSOR: std::cell::Cell<Option<super::ProcessorId>> =
        const { std::cell::Cell::new(None) };
}

/// The processor the calling task runs on (Dagger.jl's `task_processor()`); `None`
/// outside tasks. A task that a processor of yours runs on its own threads sees it only if
/// the processor runs it on the thread that launched it.
///
/// ```
/// use dagger::prelude::*;
/// let ctx = Context::builder().threads(2).build()?;
/// let t1 = ctx.processors_of_kind(dagger::ProcessorKind::Thread)[1];
/// let t = ctx.spawn_with(Options::new().scope(Scope::exact(t1)), dagger::task_processor, ());
/// assert_eq!(t.fetch()?, Some(t1));
/// assert_eq!(dagger::task_processor(), None);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn task_processor() -> Option<super::ProcessorId> {
    TASK_PROCESSOR.with(std::cell::Cell::get)
}

/// Sets what [`task_processor`] answers on this thread; returns the previous value.
#[inline]
pub(crate) fn set_task_processor(p: Option<super::ProcessorId>) -> Option<super::ProcessorId> {
    TASK_PROCESSOR.with(|t| t.replace(p))
}

/// Sets what [`task_threads`] answers on this thread; returns the previous value.
#[inline]
pub(crate) fn set_task_threads(n: usize) -> usize {
    TASK_THREADS.with(|t| t.replace(n))
}

/// The message of a panic payload. Reading it cannot panic, and the payload is not dropped
/// here (its `Drop` may itself panic; see [`drop_payload`]).
pub(crate) fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "panic with a non-string payload".to_owned()
    }
}

/// Drops a panic payload, containing a panic its own `Drop` may raise.
pub(crate) fn drop_payload(p: Box<dyn std::any::Any + Send>) {
    if let Err(again) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || drop(p))) {
        // The payload's drop panicked: leak that second payload rather than risk a third.
        std::mem::forget(again);
    }
}
