//! Chunks: values resident in a memory space.

use std::marker::PhantomData;
use std::sync::Arc;

use crate::error::{TaskError, TaskLabel};
use crate::processor::{MemorySpace, MoveError, Processor};
use crate::scope::Scope;
use crate::storage::{Slot, StorageError, Store};
use crate::value::Value;

/// A stored value, the memory space it lives in and the processor that owns that space:
/// what a task produces and a chunk refers to. Storage sits behind this one type: a value
/// in host memory is either held as it is or managed by the context's [`Store`], which may
/// spill it to disk and read it back when asked for it.
///
/// Kept small (a value and one thin pointer): every task record holds its inputs' and its
/// result's.
#[derive(Clone)]
pub(crate) struct Data {
    payload: Payload,
    /// Where the value lives when that is not this process's host memory.
    pub(crate) home: Option<Arc<Home>>,
}

#[derive(Clone)]
enum Payload {
    Value(Value),
    /// Host memory under a limit: in memory or spilled.
    Managed(Arc<Slot>),
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
            .field("type", &self.type_name())
            .field("space", &self.space())
            .field("on_disk", &self.is_on_disk())
            .finish()
    }
}

impl Data {
    #[inline]
    pub(crate) fn host(value: Value) -> Self {
        Data {
            payload: Payload::Value(value),
            home: None,
        }
    }

    /// A value in host memory, managed by `store` when it manages values of its kind.
    #[inline]
    pub(crate) fn stored(value: Value, store: &Arc<Store>) -> Self {
        Self::stored_reserved(value, store, 0)
    }

    /// [`stored`](Self::stored) in place of `reserved` bytes the store made room for.
    #[inline]
    pub(crate) fn stored_reserved(value: Value, store: &Arc<Store>, reserved: u64) -> Self {
        let payload = match store.manage_reserved(value, reserved) {
            Ok(slot) => Payload::Managed(slot),
            Err(v) => Payload::Value(v),
        };
        Data {
            payload,
            home: None,
        }
    }

    /// A value the store manages (one in a file, say).
    pub(crate) fn managed(slot: Arc<Slot>) -> Self {
        Data {
            payload: Payload::Managed(slot),
            home: None,
        }
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
        Data {
            payload: Payload::Value(value),
            home,
        }
    }

    /// The memory space the value lives in (a spilled value counts as in host memory: it is
    /// read back there).
    #[inline]
    pub(crate) fn space(&self) -> MemorySpace {
        self.home
            .as_ref()
            .map_or(MemorySpace::LOCAL_HOST, |h| h.space)
    }

    /// The name of the value's type.
    pub(crate) fn type_name(&self) -> &'static str {
        match &self.payload {
            Payload::Value(v) => v.type_name(),
            Payload::Managed(s) => s.type_name(),
        }
    }

    /// The value where it lives, read back from disk if it was spilled.
    #[inline]
    pub(crate) fn value(&self) -> Result<Value, MoveError> {
        match &self.payload {
            Payload::Value(v) => Ok(v.clone()),
            Payload::Managed(s) => s.get().map_err(|e| MoveError::Failed {
                type_name: s.type_name(),
                from: MemorySpace::LOCAL_HOST,
                to: MemorySpace::LOCAL_HOST,
                source: Box::new(e),
            }),
        }
    }

    /// The value where it lives if that is memory (not read back from disk).
    pub(crate) fn peek(&self) -> Option<Value> {
        match &self.payload {
            Payload::Value(v) => Some(v.clone()),
            Payload::Managed(s) => s.peek(),
        }
    }

    /// Whether the value's only copy is on disk.
    pub(crate) fn is_on_disk(&self) -> bool {
        matches!(&self.payload, Payload::Managed(s) if s.is_on_disk())
    }

    /// The bytes a managed value occupies in memory (0 for values not managed).
    #[inline]
    pub(crate) fn managed_bytes(&self) -> u64 {
        match &self.payload {
            Payload::Value(_) => 0,
            Payload::Managed(s) => s.bytes(),
        }
    }

    /// Marks a managed value as wanted by a ready task (kept in memory before others).
    #[inline]
    pub(crate) fn want(&self) {
        if let Payload::Managed(s) = &self.payload {
            s.want();
        }
    }

    /// A task that wanted the value took it.
    #[inline]
    pub(crate) fn unwant(&self) {
        if let Payload::Managed(s) = &self.payload {
            s.unwant();
        }
    }

    /// Starts reading the value back ahead of use if it is spilled.
    #[inline]
    pub(crate) fn prefetch(&self) {
        if let Payload::Managed(s) = &self.payload {
            s.prefetch();
        }
    }

    /// The value in host memory: as it is, read back from disk, or moved out by the
    /// processor that holds it.
    #[inline]
    pub(crate) fn to_host(&self) -> Result<Value, MoveError> {
        match &self.home {
            None => self.value(),
            Some(h) => h.proc.move_out(self.value()?),
        }
    }

    /// Bytes moving it to host memory would transfer.
    pub(crate) fn bytes_to_host(&self) -> u64 {
        match (&self.home, &self.payload) {
            (None, _) => 0,
            (Some(h), Payload::Value(v)) => h.proc.bytes_to_move_out(v),
            (Some(_), Payload::Managed(s)) => s.bytes(),
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
            .field("type", &self.data.type_name())
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

    /// Whether the value's only copy is on disk now (spilled under the context's memory
    /// limit; reading it reads it back).
    pub fn is_on_disk(&self) -> bool {
        self.data.is_on_disk()
    }

    /// Saves the value to a new file at `path` (Dagger.jl's `save`): a header naming its
    /// type, then the value as its [`Spill`](crate::storage::Spill) codec writes it (raw
    /// bytes for numbers). Never writes over a file or through a link.
    ///
    /// ```
    /// use dagger::prelude::*;
    /// let path = std::env::temp_dir().join(format!("dagger-save-doc-{}", std::process::id()));
    /// let c = Chunk::new(vec![1.5f64, -0.0, f64::NAN]);
    /// c.save(&path)?;
    /// assert!(c.save(&path).is_err(), "an existing file is never written over");
    /// let back = Chunk::<Vec<f64>>::load(&path)?.collect()?;
    /// assert_eq!(back[0], 1.5);
    /// assert!(back[1].is_sign_negative() && back[2].is_nan());
    /// assert!(Chunk::<Vec<f32>>::load(&path).is_err(), "another type");
    /// # std::fs::remove_file(&path)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn save(&self, path: impl AsRef<std::path::Path>) -> Result<(), StorageError> {
        let v = self.data.to_host().map_err(|e| StorageError::Io {
            what: "bringing the value to host memory to save it to",
            path: path.as_ref().to_path_buf(),
            source: std::io::Error::other(e),
        })?;
        crate::storage::save_value(&v, path.as_ref()).map(drop)
    }

    /// A chunk of the value saved at `path` by [`save`](Self::save) (Dagger.jl's `load`).
    pub fn load(path: impl AsRef<std::path::Path>) -> Result<Chunk<T>, StorageError> {
        let v = crate::storage::load_value(path.as_ref(), Some(std::any::type_name::<T>()))?;
        Ok(Chunk::from_data(Data::host(v)))
    }
}
