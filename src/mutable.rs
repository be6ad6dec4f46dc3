//! Values that live on a processor and that tasks change in place there: [`Mutable`] (one
//! value on one processor, Dagger.jl's `mutable`) and [`Shard`] (one value per processor,
//! each task getting the one where it runs, Dagger.jl's `shard`).

use std::marker::PhantomData;
use std::sync::Arc;

use parking_lot::lock_api::ArcMutexGuard;
use parking_lot::{Mutex, RawMutex};

use crate::context::Context;
use crate::error::TaskError;
use crate::options::Options;
use crate::processor::{task_processor, ProcessorId, TaskFailure};
use crate::scope::Scope;
use crate::task::args::{ArgGetter, Deps, IntoArg};
use crate::value::Value;

/// A value created on one processor that tasks change in place there (Dagger.jl's
/// `mutable`). Made by [`Context::mutable`].
///
/// Passing `&m` to a task pins the task to the value's processor and gives it a
/// [`MutGuard`]: tasks using one value take turns.
///
/// ```
/// use dagger::prelude::*;
/// use dagger::MutGuard;
/// let ctx = Context::builder().threads(2).build()?;
/// let m = ctx.mutable(Scope::thread(1), || Vec::<u32>::new())?;
/// let tasks: Vec<_> = (0..10)
///     .map(|i| ctx.spawn(move |mut v: MutGuard<Vec<u32>>| v.push(i), (&m,)))
///     .collect();
/// for t in &tasks { t.fetch()?; }
/// assert_eq!(m.with(|v| v.len()), 10);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Mutable<T> {
    value: Arc<Mutex<T>>,
    proc: ProcessorId,
}

impl<T> Clone for Mutable<T> {
    fn clone(&self) -> Self {
        Mutable {
            value: self.value.clone(),
            proc: self.proc,
        }
    }
}

impl<T> std::fmt::Debug for Mutable<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mutable")
            .field("processor", &self.proc)
            .finish()
    }
}

impl<T: Send + 'static> Mutable<T> {
    /// The processor the value lives on.
    pub fn processor(&self) -> ProcessorId {
        self.proc
    }

    /// Reads the value (waiting for a task changing it).
    pub fn with<R>(&self, f: impl FnOnce(&T) -> R) -> R {
        f(&self.value.lock())
    }
}

/// Exclusive access to a [`Mutable`]'s value or to a [`Shard`]'s piece, inside a task.
pub struct MutGuard<T> {
    guard: ArcMutexGuard<RawMutex, T>,
}

impl<T> std::ops::Deref for MutGuard<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.guard
    }
}

impl<T> std::ops::DerefMut for MutGuard<T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.guard
    }
}

fn lock<T>(m: &Arc<Mutex<T>>) -> MutGuard<T> {
    let guard = match m.try_lock_arc() {
        Some(g) => g,
        // Waiting gives the worker's processor back, as a nested fetch does.
        None => crate::sched::blocking(|| m.lock_arc()),
    };
    MutGuard { guard }
}

#[doc(hidden)]
pub struct MutableGetter<T>(Arc<Mutex<T>>);

impl<T: Send + 'static> ArgGetter for MutableGetter<T> {
    type Out = MutGuard<T>;
    fn get(self, _: &[Value], _: usize) -> Result<MutGuard<T>, TaskFailure> {
        Ok(lock(&self.0))
    }
}

impl<T: Send + 'static> IntoArg for &Mutable<T> {
    type Out = MutGuard<T>;
    type Getter = MutableGetter<T>;
    fn register(self, deps: &mut Deps) -> MutableGetter<T> {
        deps.scopes.push((deps.list.len(), Scope::exact(self.proc)));
        MutableGetter(self.value.clone())
    }
}

/// One value per processor (Dagger.jl's `shard`): a task given `&shard` gets, as a
/// [`MutGuard`], the piece of the processor it runs on — per-thread accumulators, say.
/// Made by [`Context::shard`].
///
/// ```
/// use dagger::prelude::*;
/// use dagger::MutGuard;
/// let ctx = Context::builder().threads(2).build()?;
/// let sums = ctx.shard(&Scope::cpu(), |_| 0u64)?;
/// let tasks: Vec<_> = (1..=100u64)
///     .map(|i| ctx.spawn(move |mut s: MutGuard<u64>| *s += i, (&sums,)))
///     .collect();
/// for t in &tasks { t.fetch()?; }
/// assert_eq!(sums.values().into_iter().map(|(_, v)| v).sum::<u64>(), 5050);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Shard<T> {
    pieces: Arc<Vec<(ProcessorId, Arc<Mutex<T>>)>>,
}

impl<T> Clone for Shard<T> {
    fn clone(&self) -> Self {
        Shard {
            pieces: self.pieces.clone(),
        }
    }
}

impl<T> std::fmt::Debug for Shard<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shard")
            .field("processors", &self.processors())
            .finish()
    }
}

impl<T> Shard<T> {
    /// The processors that hold a piece.
    pub fn processors(&self) -> Vec<ProcessorId> {
        self.pieces.iter().map(|(p, _)| *p).collect()
    }

    /// Reads the piece of processor `p`, if it has one.
    pub fn with<R>(&self, p: ProcessorId, f: impl FnOnce(&T) -> R) -> Option<R> {
        self.pieces
            .iter()
            .find(|(q, _)| *q == p)
            .map(|(_, v)| f(&v.lock()))
    }

    /// A copy of every piece, with its processor.
    pub fn values(&self) -> Vec<(ProcessorId, T)>
    where
        T: Clone,
    {
        self.pieces
            .iter()
            .map(|(p, v)| (*p, v.lock().clone()))
            .collect()
    }
}

#[doc(hidden)]
pub struct ShardGetter<T>(Arc<Vec<(ProcessorId, Arc<Mutex<T>>)>>);

impl<T: Send + 'static> ArgGetter for ShardGetter<T> {
    type Out = MutGuard<T>;
    fn get(self, _: &[Value], arg: usize) -> Result<MutGuard<T>, TaskFailure> {
        let here = task_processor();
        let piece = self
            .0
            .iter()
            .find(|(p, _)| Some(*p) == here)
            .ok_or_else(|| {
                TaskFailure::msg(format!(
                    "argument {arg}: the shard has no piece for processor {}",
                    here.map_or("none".into(), |p| p.to_string())
                ))
            })?;
        Ok(lock(&piece.1))
    }
}

impl<T: Send + 'static> IntoArg for &Shard<T> {
    type Out = MutGuard<T>;
    type Getter = ShardGetter<T>;
    fn register(self, deps: &mut Deps) -> ShardGetter<T> {
        if let Ok(s) = Scope::processors(self.processors()) {
            deps.scopes.push((deps.list.len(), s));
        }
        ShardGetter(self.pieces.clone())
    }
}

/// A value made on a processor, carried back as a task's result.
struct Made<T>(Mutex<Option<T>>, PhantomData<fn() -> T>);

impl Context {
    /// Runs `f` on a processor of `scope` and keeps its value there as a [`Mutable`]:
    /// tasks taking `&m` run on that processor and change the value in place.
    pub fn mutable<T, F>(&self, scope: Scope, f: F) -> Result<Mutable<T>, TaskError>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        let t = self.spawn_with(
            Options::new().scope(scope),
            move || {
                let p = task_processor().expect("tasks run on a processor");
                (p, Arc::new(Made(Mutex::new(Some(f())), PhantomData)))
            },
            (),
        );
        let (proc, made) = t.fetch()?;
        let value = made.0.lock().take().expect("taken once");
        Ok(Mutable {
            value: Arc::new(Mutex::new(value)),
            proc,
        })
    }

    /// Runs `f(p)` on every processor `p` of `scope` that runs closures, keeping each value
    /// on its processor, as a [`Shard`].
    pub fn shard<T, F>(&self, scope: &Scope, f: F) -> Result<Shard<T>, TaskError>
    where
        T: Send + 'static,
        F: Fn(ProcessorId) -> T + Send + Sync + 'static,
    {
        let f = Arc::new(f);
        let tasks: Vec<_> = self
            .closure_processors(scope)
            .into_iter()
            .map(|p| {
                let f = f.clone();
                self.spawn_with(
                    Options::new().scope(Scope::exact(p)),
                    move || (p, Arc::new(Made(Mutex::new(Some(f(p))), PhantomData))),
                    (),
                )
            })
            .collect();
        let mut pieces = Vec::with_capacity(tasks.len());
        for t in tasks {
            let (p, made) = t.fetch()?;
            let v = made.0.lock().take().expect("taken once");
            pieces.push((p, Arc::new(Mutex::new(v))));
        }
        Ok(Shard {
            pieces: Arc::new(pieces),
        })
    }
}
