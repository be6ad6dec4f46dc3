//! Chunks: values resident in a memory space.

use std::marker::PhantomData;
use std::sync::Arc;

use crate::error::{TaskError, TaskLabel};
use crate::processor::{MemorySpace, MoveError, Processor};
use crate::scope::Scope;
use crate::value::Value;

/// A stored value, the memory space it lives in and the processor that owns that space:
/// what a task produces and a chunk refers to. Storage sits behind this one type so that
/// other payloads (spilled to disk, in a file) can be added without touching the scheduler.
///
/// Kept small (a value and one thin pointer): every task record holds its inputs' and its
/// result's.
#[derive(Clone)]
pub(crate) struct Data {
    pub(crate) value: Value,
    /// Where the value lives when that is not this process's host memory.
    pub(crate) home: Option<Arc<Home>>,
}

/// A memory space other than this process's host memory, and the processor that owns it:
/// it moves values out.
pub(crate) struct Home {
    pub(crate) space: MemorySpace,
    pub(crate) proc: Arc<dyn Processor>,
}

impl std::fmt::Debug for Data {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Data")
            .field("value", &self.value)
            .field("space", &self.space())
            .finish()
    }
}

impl Data {
    #[inline]
    pub(crate) fn host(value: Value) -> Self {
        Data { value, home: None }
    }

    /// A value made by (or moved into the space of) `proc`, in `space`.
    #[inline]
    pub(crate) fn on(value: Value, space: MemorySpace, proc: &Arc<dyn Processor>) -> Self {
        let home = (space != MemorySpace::LOCAL_HOST).then(|| {
            Arc::new(Home {
                space,
                proc: proc.clone(),
            })
        });
        Data { value, home }
    }

    /// The memory space the value lives in.
    #[inline]
    pub(crate) fn space(&self) -> MemorySpace {
        self.home
            .as_ref()
            .map_or(MemorySpace::LOCAL_HOST, |h| h.space)
    }

    /// The value in host memory: as it is, or moved out by the processor that holds it.
    #[inline]
    pub(crate) fn to_host(&self) -> Result<Value, MoveError> {
        match &self.home {
            None => Ok(self.value.clone()),
            Some(h) => h.proc.move_out(self.value.clone()),
        }
    }

    /// Bytes moving it to host memory would transfer.
    pub(crate) fn bytes_to_host(&self) -> u64 {
        match &self.home {
            None => 0,
            Some(h) => h.proc.bytes_to_move_out(&self.value),
        }
    }
}

/// Typed access to a stored value in host memory.
pub(crate) fn host_value<T: Send + Sync + 'static>(
    d: &Data,
    task: &TaskLabel,
) -> Result<Arc<T>, TaskError> {
    let value = d.to_host().map_err(|e| TaskError::Move {
        task: task.clone(),
        processor: "host".into(),
        index: 0,
        error: Arc::new(e),
    })?;
    let found = value.type_name();
    value
        .downcast_arc::<T>()
        .map_err(|_| TaskError::ArgumentType {
            task: task.clone(),
            processor: d.space().to_string(),
            index: 0,
            expected: std::any::type_name::<T>(),
            found,
        })
}

/// A value placed in a memory space: Dagger.jl's `Chunk`.
///
/// Made by [`Context::to_chunk`](crate::Context::to_chunk) or from a finished task
/// ([`DTask::chunk`](crate::DTask::chunk), [`Thunk::compute`](crate::Thunk::compute)).
/// Chunks are cheap to clone; the value is freed when the last chunk, task handle or
/// pending task that refers to it is gone.
///
/// A chunk may be pinned to a [`Scope`] (Dagger.jl's `tochunk(x, proc, scope)`):
/// [`Context::to_chunk_in`](crate::Context::to_chunk_in) or [`Chunk::with_scope`]. A task
/// taking it then runs only inside that scope, and a task given chunks whose scopes share
/// no processor able to run it fails at once with
/// [`ScheduleError::ChunkScopes`](crate::ScheduleError::ChunkScopes).
///
/// ```
/// use dagger::prelude::*;
/// let ctx = Context::builder().threads(1).build()?;
/// let c = ctx.to_chunk(vec![1, 2, 3]);
/// let n = ctx.spawn(|v: Vec<i32>| v.len(), (&c,));
/// assert_eq!(n.fetch()?, 3);
/// assert_eq!(c.collect()?, vec![1, 2, 3]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Chunk<T> {
    pub(crate) data: Data,
    pub(crate) scope: Option<Scope>,
    _t: PhantomData<fn() -> T>,
}

impl<T> Clone for Chunk<T> {
    fn clone(&self) -> Self {
        Chunk {
            data: self.data.clone(),
            scope: self.scope.clone(),
            _t: PhantomData,
        }
    }
}

impl<T> std::fmt::Debug for Chunk<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Chunk")
            .field("type", &self.data.value.type_name())
            .field("space", &self.data.space())
            .field("scope", &self.scope)
            .finish()
    }
}

impl<T: Send + Sync + 'static> Chunk<T> {
    pub(crate) fn from_data(data: Data) -> Self {
        Chunk {
            data,
            scope: None,
            _t: PhantomData,
        }
    }

    /// This chunk pinned to `scope`: tasks taking it run only there.
    ///
    /// ```
    /// use dagger::prelude::*;
    /// let ctx = Context::builder().threads(2).build()?;
    /// let c = ctx.to_chunk(5).with_scope(Scope::thread(1));
    /// let t1 = ctx.processors_of_kind(dagger::ProcessorKind::Thread)[1];
    /// let t = ctx.spawn(|x: i32| (x, dagger::task_processor()), (&c,));
    /// assert_eq!(t.fetch()?, (5, Some(t1)));
    /// // Pinned to thread 0 and thread 1 at once: no processor can take both.
    /// let d = ctx.to_chunk(6).with_scope(Scope::thread(0));
    /// let err = ctx.spawn(|x: i32, y: i32| x + y, (&c, &d)).fetch().unwrap_err();
    /// assert!(err.to_string().contains("pinned"), "{err}");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn with_scope(mut self, scope: Scope) -> Self {
        self.scope = Some(scope);
        self
    }

    /// The scope the chunk is pinned to, if any.
    pub fn scope(&self) -> Option<&Scope> {
        self.scope.as_ref()
    }

    /// A chunk of `value` in host memory, outside any context.
    pub fn new(value: T) -> Self {
        Chunk::from_data(Data::host(Value::new(value)))
    }

    /// The memory space the value lives in.
    pub fn memory_space(&self) -> MemorySpace {
        self.data.space()
    }

    /// The value, copied out.
    pub fn collect(&self) -> Result<T, TaskError>
    where
        T: Clone,
    {
        self.collect_shared().map(|v| (*v).clone())
    }

    /// The value, shared without copying.
    pub fn collect_shared(&self) -> Result<Arc<T>, TaskError> {
        host_value(
            &self.data,
            &TaskLabel {
                id: 0,
                name: "collect".into(),
            },
        )
    }
}
