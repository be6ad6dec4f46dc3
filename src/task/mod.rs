//! Task handles: [`DTask`], a thin handle over the scheduler's task record, and how task
//! arguments become the typed values a function receives ([`args`]).

pub(crate) mod args;

pub use args::KernelArg;
pub use args::{AsChunk, IntoArg, Moved, Plain, Shared, Val};

use std::marker::PhantomData;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::chunk::Chunk;
use crate::error::{TaskError, TaskLabel};
use crate::sched::TaskCore;
use args::Dep;

/// A handle to a task spawned eagerly: Dagger.jl's `DTask`.
///
/// The task starts as soon as its inputs are ready. Cloning the handle is cheap; the task's
/// value is shared by all handles and dropped when the last handle and the last dependent
/// task are gone.
///
/// [`fetch`](Self::fetch) returns a clone of the value (cheap for small values and for
/// `Arc`s); [`fetch_shared`](Self::fetch_shared) returns the shared `Arc<T>` and copies
/// nothing.
///
/// ```
/// use dagger::prelude::*;
/// let ctx = Context::builder().threads(2).build()?;
/// let a = ctx.spawn(|| 20, ());
/// let b = ctx.spawn(|a: i32| a + 22, (&a,));
/// assert_eq!(b.fetch()?, 42);
/// assert!(a.is_ready());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct DTask<T> {
    pub(crate) core: Arc<TaskCore>,
    _t: PhantomData<fn() -> T>,
}

impl<T> Clone for DTask<T> {
    fn clone(&self) -> Self {
        DTask {
            core: self.core.clone(),
            _t: PhantomData,
        }
    }
}

impl<T> std::fmt::Debug for DTask<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DTask")
            .field("id", &self.core.id)
            .field("name", &self.core.name.as_str())
            .field("ready", &self.core.is_done())
            .finish()
    }
}

impl<T: Send + Sync + 'static> DTask<T> {
    pub(crate) fn from_core(core: Arc<TaskCore>) -> Self {
        DTask {
            core,
            _t: PhantomData,
        }
    }

    /// The task's identifier (unique within the process).
    pub fn id(&self) -> u64 {
        self.core.id
    }

    /// The task's name.
    pub fn name(&self) -> &str {
        self.core.name.as_str()
    }

    /// Whether the task has finished (successfully or not).
    pub fn is_ready(&self) -> bool {
        self.core.is_done()
    }

    /// Waits until the task has finished, successfully or not. Inside a task, the waiting
    /// task gives its processor back meanwhile.
    pub fn wait(&self) {
        crate::sched::block_on(&self.core);
    }

    /// Waits at most `timeout` for the task to finish, successfully or not; returns whether
    /// it has. A task that has not finished carries on.
    ///
    /// ```
    /// use dagger::prelude::*;
    /// use std::time::Duration;
    /// let ctx = Context::builder().threads(1).build()?;
    /// let slow = ctx.spawn(|| std::thread::sleep(Duration::from_millis(300)), ());
    /// assert!(!slow.wait_timeout(Duration::from_millis(10)));
    /// assert!(slow.wait_timeout(Duration::from_secs(30)));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        crate::sched::block_on_until(&self.core, Some(Instant::now() + timeout))
    }

    /// Waits at most `timeout` for the task and returns a clone of its value; if it has not
    /// finished by then, [`FetchTimeoutError::TimedOut`] (the task carries on and can be
    /// fetched again).
    ///
    /// ```
    /// use dagger::prelude::*;
    /// use dagger::FetchTimeoutError;
    /// use std::time::Duration;
    /// let ctx = Context::builder().threads(1).build()?;
    /// let slow = ctx.spawn(|| { std::thread::sleep(Duration::from_millis(300)); 7 }, ());
    /// let err = slow.fetch_timeout(Duration::from_millis(10)).unwrap_err();
    /// assert!(matches!(err, FetchTimeoutError::TimedOut { .. }));
    /// assert!(err.to_string().contains("timed out"));
    /// assert_eq!(slow.fetch_timeout(Duration::from_secs(30))?, 7);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn fetch_timeout(&self, timeout: Duration) -> Result<T, FetchTimeoutError>
    where
        T: Clone,
    {
        if !self.wait_timeout(timeout) {
            return Err(FetchTimeoutError::TimedOut {
                task: self.core.label(),
                waited: timeout,
            });
        }
        Ok(self.fetch()?)
    }

    /// Waits for the task and returns a clone of its value.
    pub fn fetch(&self) -> Result<T, TaskError>
    where
        T: Clone,
    {
        self.fetch_shared().map(|v| (*v).clone())
    }

    /// Waits for the task and returns its shared value without copying it.
    pub fn fetch_shared(&self) -> Result<Arc<T>, TaskError> {
        self.wait();
        match self.core.result.get().expect("finished task has a result") {
            Ok(d) => crate::chunk::host_value::<T>(d, &self.core.label()),
            Err(e) => Err(e.clone()),
        }
    }

    /// The task's error, if it has finished with one (does not wait).
    pub fn error(&self) -> Option<TaskError> {
        match self.core.result.get() {
            Some(Err(e)) => Some(e.clone()),
            _ => None,
        }
    }

    /// Waits for the task and returns its value as a [`Chunk`], without copying it.
    pub fn chunk(&self) -> Result<Chunk<T>, TaskError> {
        self.wait();
        match self.core.result.get().expect("finished task has a result") {
            Ok(d) => Ok(Chunk::from_data(d.clone())),
            Err(e) => Err(e.clone()),
        }
    }

    /// Cancels the task if it has not started: its `fetch` then reports cancellation and
    /// its dependents fail. Returns whether it was cancelled.
    pub fn cancel(&self) -> bool {
        self.core.cancel()
    }

    /// Passes this task's value to another task as an `Arc<T>` instead of a clone.
    pub fn shared(&self) -> Shared<T> {
        Shared::new(Dep::Task(self.core.clone()))
    }

    /// Passes this task's value to another task as a [`Chunk`] rather than the value
    /// (Dagger.jl's `meta`): the function decides when to read it.
    ///
    /// ```
    /// use dagger::prelude::*;
    /// let ctx = Context::builder().threads(1).build()?;
    /// let a = ctx.spawn(|| vec![1u8, 2, 3], ());
    /// let n = ctx.spawn(|c: Chunk<Vec<u8>>| c.collect_shared().unwrap().len(), (a.as_chunk(),));
    /// assert_eq!(n.fetch()?, 3);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn as_chunk(&self) -> AsChunk<T> {
        AsChunk::new(Dep::Task(self.core.clone()))
    }

    /// Passes this task's value to another task as the type `V` it has after the chosen
    /// processor's [`move_in`](crate::Processor::move_in) converted it.
    pub fn moved<V>(&self) -> Moved<V> {
        Moved::new(Dep::Task(self.core.clone()))
    }
}

/// Why [`DTask::fetch_timeout`] returned no value.
///
/// ```
/// use dagger::prelude::*;
/// use dagger::FetchTimeoutError;
/// use std::time::Duration;
///
/// let ctx = Context::builder().threads(1).build()?;
/// let slow = ctx.spawn(|| std::thread::sleep(Duration::from_millis(300)), ());
/// match slow.fetch_timeout(Duration::from_millis(10)) {
///     Err(FetchTimeoutError::TimedOut { waited, .. }) => assert_eq!(waited, Duration::from_millis(10)),
///     other => panic!("{other:?}"),
/// }
/// slow.fetch()?; // it carried on
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FetchTimeoutError {
    /// The task had not finished when the time ran out; it carries on.
    #[error("timed out after {waited:?} waiting for task {task}, which has not finished")]
    TimedOut {
        /// The task waited for.
        task: TaskLabel,
        /// How long the caller waited.
        waited: Duration,
    },
    /// The task finished with an error.
    #[error(transparent)]
    Task(#[from] TaskError),
}
