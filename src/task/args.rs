//! How task arguments become the typed values a task's function receives.
//!
//! Each argument implements [`IntoArg`]: a plain value is captured and handed over as is;
//! a `&DTask<U>`, `&Chunk<U>` or `&Thunk<U>` becomes a dependency and the function receives
//! a `U` (cloned from the shared result) — or an `Arc<U>` through `.shared()`, which copies
//! nothing; a slice of tasks becomes a `Vec<U>`.

use std::marker::PhantomData;
use std::sync::Arc;

use smallvec::SmallVec;

use crate::chunk::{Chunk, Data};
use crate::processor::TaskFailure;
use crate::sched::TaskCore;
use crate::scope::Scope;
use crate::task::DTask;
use crate::value::Value;

/// Turns a lazy dependency into a task when the task that takes it is submitted: given
/// the submitting context (as `&dyn Any`) and the dependency's node.
pub(crate) type Spawn =
    fn(&dyn std::any::Any, &Arc<dyn std::any::Any + Send + Sync>) -> Arc<TaskCore>;

/// A dependency collected while a task is being created.
#[derive(Clone)]
pub(crate) enum Dep {
    Task(Arc<TaskCore>),
    Data(Data),
    /// A node of a lazy graph, spawned (once) when a task that takes it is submitted.
    Lazy {
        node: Arc<dyn std::any::Any + Send + Sync>,
        spawn: Spawn,
    },
}

/// The dependencies of a task under construction, in argument order.
#[doc(hidden)]
#[derive(Default)]
pub struct Deps {
    pub(crate) list: SmallVec<[Dep; 4]>,
    /// Accesses that order the task among others (datadeps' in-place accesses), in
    /// argument order; whoever spawns the task knows their type.
    pub(crate) accesses: Vec<Box<dyn std::any::Any + Send>>,
    /// Tasks that must finish first (and whose failure fails this one) but whose values the
    /// task does not take: datadeps ordering.
    pub(crate) after: SmallVec<[Arc<TaskCore>; 2]>,
    /// Scopes the arguments pin the task to (chunks with a scope, mutable values), by
    /// argument position.
    pub(crate) scopes: Vec<(usize, Scope)>,
}

impl Deps {
    /// A copy of dependencies without in-place accesses (those of a lazy task), to create
    /// the same task again.
    pub(crate) fn copy(&self) -> Deps {
        debug_assert!(
            self.accesses.is_empty(),
            "lazy tasks take no datadeps accesses"
        );
        Deps {
            list: self.list.clone(),
            accesses: Vec::new(),
            after: self.after.clone(),
            scopes: self.scopes.clone(),
        }
    }

    pub(crate) fn push(&mut self, d: Dep) -> usize {
        self.list.push(d);
        self.list.len() - 1
    }
}

/// An argument of a task: a plain value, or a handle whose value the task waits for.
///
/// Implemented for every [`Plain`] type (numbers, `bool`, `char`, `String`, `Vec<T>`,
/// `Option<T>`, `Arc<T>`, `Box<T>`, `()`, and your own), for any type wrapped in [`Val`],
/// and for
/// `&DTask<U>`, `DTask<U>`, `&Chunk<U>`, `&Thunk<U>`, `Thunk<U>`, `&[DTask<U>]`, and the
/// adapters [`Shared`] and [`Moved`].
pub trait IntoArg: Sized {
    /// What the task's function receives.
    type Out: 'static;
    #[doc(hidden)]
    type Getter: ArgGetter<Out = Self::Out>;
    #[doc(hidden)]
    fn register(self, deps: &mut Deps) -> Self::Getter;
}

/// Extracts one argument's value when the task runs.
#[doc(hidden)]
pub trait ArgGetter: Send + 'static {
    type Out;
    fn get(self, inputs: &[Value], arg: usize) -> Result<Self::Out, TaskFailure>;
}

/// A plain value of any type, passed to the task as is.
///
/// ```
/// use dagger::prelude::*;
/// #[derive(Debug)]
/// struct Config { n: usize }
/// let ctx = Context::builder().threads(1).build()?;
/// let t = ctx.spawn(|c: Config| c.n * 2, (Val(Config { n: 21 }),));
/// assert_eq!(t.fetch()?, 42);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Val<T>(pub T);

#[doc(hidden)]
#[derive(Clone)]
pub struct Immediate<T>(T);

impl<T: Send + 'static> ArgGetter for Immediate<T> {
    type Out = T;
    fn get(self, _: &[Value], _: usize) -> Result<T, TaskFailure> {
        Ok(self.0)
    }
}

impl<T: Send + 'static> IntoArg for Val<T> {
    type Out = T;
    type Getter = Immediate<T>;
    fn register(self, _: &mut Deps) -> Immediate<T> {
        Immediate(self.0)
    }
}

/// Reads a [`File`](crate::File) argument when the task runs.
#[doc(hidden)]
pub struct FileGetter<T>(crate::storage::File<T>);

impl<T: Send + Sync + 'static> ArgGetter for FileGetter<T> {
    type Out = T;
    fn get(self, _: &[Value], _: usize) -> Result<T, TaskFailure> {
        self.0.read().map_err(|e| TaskFailure::Error(Box::new(e)))
    }
}

impl<T: Send + Sync + 'static> IntoArg for crate::storage::File<T> {
    type Out = T;
    type Getter = FileGetter<T>;
    fn register(self, _: &mut Deps) -> FileGetter<T> {
        FileGetter(self)
    }
}

impl<T: Send + Sync + 'static> IntoArg for &crate::storage::File<T> {
    type Out = T;
    type Getter = FileGetter<T>;
    fn register(self, _: &mut Deps) -> FileGetter<T> {
        FileGetter(self.clone())
    }
}

/// A type passed to tasks by value, as is: implement it for your own types to pass them
/// without wrapping them in [`Val`].
///
/// ```
/// use dagger::prelude::*;
/// struct Settings { scale: f64 }
/// impl dagger::Plain for Settings {}
/// let ctx = Context::builder().threads(1).build()?;
/// let t = ctx.spawn(|s: Settings, x: f64| s.scale * x, (Settings { scale: 2.0 }, 21.0));
/// assert_eq!(t.fetch()?, 42.0);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub trait Plain: Send + 'static {}

impl<T: Plain> IntoArg for T {
    type Out = T;
    type Getter = Immediate<T>;
    fn register(self, _: &mut Deps) -> Immediate<T> {
        Immediate(self)
    }
}

macro_rules! plain {
    ($($t:ty),* $(,)?) => {$( impl Plain for $t {} )*};
}

plain!(
    (),
    bool,
    char,
    i8,
    i16,
    i32,
    i64,
    i128,
    isize,
    u8,
    u16,
    u32,
    u64,
    u128,
    usize,
    f32,
    f64,
    String,
    &'static str,
    std::time::Duration,
    std::path::PathBuf,
);

impl<T: Send + 'static> Plain for Vec<T> {}
impl<T: Send + 'static> Plain for Option<T> {}
impl<T: Send + 'static + ?Sized> Plain for Box<T> {}
impl<T: Send + Sync + 'static + ?Sized> Plain for Arc<T> {}
impl<T: Send + 'static, const N: usize> Plain for [T; N] {}
impl<K: Send + 'static, V: Send + 'static, S: Send + 'static> Plain
    for std::collections::HashMap<K, V, S>
{
}

/// Clones a dependency's value out of its shared result.
#[doc(hidden)]
pub struct Cloned<U> {
    idx: usize,
    _t: PhantomData<fn() -> U>,
}

impl<U> Clone for Cloned<U> {
    fn clone(&self) -> Self {
        cloned(self.idx)
    }
}

fn downcast<U: 'static>(v: &Value, arg: usize) -> Result<&U, TaskFailure> {
    v.downcast_ref::<U>().ok_or(TaskFailure::ArgumentType {
        index: arg,
        expected: std::any::type_name::<U>(),
        found: v.type_name(),
    })
}

impl<U: Clone + Send + Sync + 'static> ArgGetter for Cloned<U> {
    type Out = U;
    fn get(self, inputs: &[Value], arg: usize) -> Result<U, TaskFailure> {
        downcast::<U>(&inputs[self.idx], arg).cloned()
    }
}

/// Shares a dependency's value without copying it.
#[doc(hidden)]
pub struct SharedGetter<U> {
    idx: usize,
    _t: PhantomData<fn() -> U>,
}

impl<U> Clone for SharedGetter<U> {
    fn clone(&self) -> Self {
        SharedGetter {
            idx: self.idx,
            _t: PhantomData,
        }
    }
}

impl<U: Send + Sync + 'static> ArgGetter for SharedGetter<U> {
    type Out = Arc<U>;
    fn get(self, inputs: &[Value], arg: usize) -> Result<Arc<U>, TaskFailure> {
        let v = inputs[self.idx].clone();
        let found = v.type_name();
        v.downcast_arc::<U>()
            .map_err(|_| TaskFailure::ArgumentType {
                index: arg,
                expected: std::any::type_name::<U>(),
                found,
            })
    }
}

/// Clones a run of dependencies' values into a `Vec`.
#[doc(hidden)]
pub struct ClonedVec<U> {
    pub(crate) start: usize,
    pub(crate) len: usize,
    pub(crate) _t: PhantomData<fn() -> U>,
}

impl<U> Clone for ClonedVec<U> {
    fn clone(&self) -> Self {
        ClonedVec {
            start: self.start,
            len: self.len,
            _t: PhantomData,
        }
    }
}

/// Hands a dependency's value to the function as a [`Chunk`] (Dagger.jl's `meta`): made by
/// [`DTask::as_chunk`] and [`Thunk::as_chunk`](crate::Thunk::as_chunk).
pub struct AsChunk<U> {
    dep: Dep,
    _t: PhantomData<fn() -> U>,
}

impl<U> AsChunk<U> {
    pub(crate) fn new(dep: Dep) -> Self {
        AsChunk {
            dep,
            _t: PhantomData,
        }
    }
}

#[doc(hidden)]
pub struct ChunkGetter<U> {
    idx: usize,
    _t: PhantomData<fn() -> U>,
}

impl<U> Clone for ChunkGetter<U> {
    fn clone(&self) -> Self {
        ChunkGetter {
            idx: self.idx,
            _t: PhantomData,
        }
    }
}

impl<U: Send + Sync + 'static> ArgGetter for ChunkGetter<U> {
    type Out = Chunk<U>;
    fn get(self, inputs: &[Value], arg: usize) -> Result<Chunk<U>, TaskFailure> {
        let v = &inputs[self.idx];
        downcast::<U>(v, arg)?;
        Ok(Chunk::from_data(Data::host(v.clone())))
    }
}

impl<U: Send + Sync + 'static> IntoArg for AsChunk<U> {
    type Out = Chunk<U>;
    type Getter = ChunkGetter<U>;
    fn register(self, deps: &mut Deps) -> ChunkGetter<U> {
        ChunkGetter {
            idx: deps.push(self.dep),
            _t: PhantomData,
        }
    }
}

impl<U: Clone + Send + Sync + 'static> ArgGetter for ClonedVec<U> {
    type Out = Vec<U>;
    fn get(self, inputs: &[Value], arg: usize) -> Result<Vec<U>, TaskFailure> {
        inputs[self.start..self.start + self.len]
            .iter()
            .map(|v| downcast::<U>(v, arg).cloned())
            .collect()
    }
}

pub(crate) fn cloned<U>(idx: usize) -> Cloned<U> {
    Cloned {
        idx,
        _t: PhantomData,
    }
}

impl<U: Clone + Send + Sync + 'static> IntoArg for &DTask<U> {
    type Out = U;
    type Getter = Cloned<U>;
    fn register(self, deps: &mut Deps) -> Cloned<U> {
        cloned(deps.push(Dep::Task(self.core.clone())))
    }
}

impl<U: Clone + Send + Sync + 'static> IntoArg for DTask<U> {
    type Out = U;
    type Getter = Cloned<U>;
    fn register(self, deps: &mut Deps) -> Cloned<U> {
        cloned(deps.push(Dep::Task(self.core)))
    }
}

impl<U: Clone + Send + Sync + 'static> IntoArg for &Chunk<U> {
    type Out = U;
    type Getter = Cloned<U>;
    fn register(self, deps: &mut Deps) -> Cloned<U> {
        let i = deps.push(Dep::Data(self.data.clone()));
        if let Some(s) = &self.scope {
            deps.scopes.push((i, s.clone()));
        }
        cloned(i)
    }
}

impl<U: Clone + Send + Sync + 'static> IntoArg for &[DTask<U>] {
    type Out = Vec<U>;
    type Getter = ClonedVec<U>;
    fn register(self, deps: &mut Deps) -> ClonedVec<U> {
        let start = deps.list.len();
        for t in self {
            deps.push(Dep::Task(t.core.clone()));
        }
        ClonedVec {
            start,
            len: self.len(),
            _t: PhantomData,
        }
    }
}

impl<U: Clone + Send + Sync + 'static> IntoArg for &Vec<DTask<U>> {
    type Out = Vec<U>;
    type Getter = ClonedVec<U>;
    fn register(self, deps: &mut Deps) -> ClonedVec<U> {
        self.as_slice().register(deps)
    }
}

/// A dependency handed to the function as an `Arc<U>`, without copying its value.
/// Made by [`DTask::shared`], [`Chunk::shared`] and [`Thunk::shared`](crate::Thunk::shared).
pub struct Shared<U> {
    dep: Dep,
    scope: Option<Scope>,
    _t: PhantomData<fn() -> U>,
}

impl<U> Shared<U> {
    pub(crate) fn new(dep: Dep) -> Self {
        Shared {
            dep,
            scope: None,
            _t: PhantomData,
        }
    }
}

impl<U: Send + Sync + 'static> IntoArg for Shared<U> {
    type Out = Arc<U>;
    type Getter = SharedGetter<U>;
    fn register(self, deps: &mut Deps) -> SharedGetter<U> {
        let idx = deps.push(self.dep);
        if let Some(s) = self.scope {
            deps.scopes.push((idx, s));
        }
        SharedGetter {
            idx,
            _t: PhantomData,
        }
    }
}

/// Several dependencies handed to the function as a `Vec<Arc<U>>`, in order, without
/// copying their values: for tasks that read a number of inputs known only at run time.
pub(crate) struct SharedList<U>(pub(crate) Vec<Shared<U>>);

/// Shares a list of dependencies' values without copying them.
#[doc(hidden)]
pub(crate) struct SharedListGetter<U> {
    idx: Vec<SharedGetter<U>>,
}

impl<U: Send + Sync + 'static> ArgGetter for SharedListGetter<U> {
    type Out = Vec<Arc<U>>;
    fn get(self, inputs: &[Value], arg: usize) -> Result<Vec<Arc<U>>, TaskFailure> {
        self.idx.into_iter().map(|g| g.get(inputs, arg)).collect()
    }
}

impl<U: Send + Sync + 'static> IntoArg for SharedList<U> {
    type Out = Vec<Arc<U>>;
    type Getter = SharedListGetter<U>;
    fn register(self, deps: &mut Deps) -> SharedListGetter<U> {
        SharedListGetter {
            idx: self.0.into_iter().map(|s| s.register(deps)).collect(),
        }
    }
}

/// A dependency whose value the function receives as `V`: the type it has after the chosen
/// processor's [`move_in`](crate::Processor::move_in) converted it. Made by
/// [`DTask::moved`].
pub struct Moved<V> {
    dep: Dep,
    _t: PhantomData<fn() -> V>,
}

impl<V> Moved<V> {
    pub(crate) fn new(dep: Dep) -> Self {
        Moved {
            dep,
            _t: PhantomData,
        }
    }
}

impl<V: Clone + Send + Sync + 'static> IntoArg for Moved<V> {
    type Out = V;
    type Getter = Cloned<V>;
    fn register(self, deps: &mut Deps) -> Cloned<V> {
        cloned(deps.push(self.dep))
    }
}

/// A tuple of task arguments.
#[doc(hidden)]
pub trait TaskArgs {
    type Outs;
    type Getters: Send + 'static;
    fn register(self, deps: &mut Deps) -> Self::Getters;
    fn get(g: Self::Getters, inputs: &[Value]) -> Result<Self::Outs, TaskFailure>;
}

/// A function callable with a tuple of argument values.
#[doc(hidden)]
pub trait TaskFn<Outs, R>: Send + 'static {
    fn call(self, outs: Outs) -> R;
}

macro_rules! tuples {
    ($(($($a:ident $i:tt),*)),* $(,)?) => {$(
        #[allow(non_snake_case, unused_variables, clippy::unused_unit)]
        impl<$($a: IntoArg),*> TaskArgs for ($($a,)*) {
            type Outs = ($($a::Out,)*);
            type Getters = ($($a::Getter,)*);
            fn register(self, deps: &mut Deps) -> Self::Getters {
                ($(self.$i.register(deps),)*)
            }
            fn get(g: Self::Getters, inputs: &[Value]) -> Result<Self::Outs, TaskFailure> {
                Ok(($(g.$i.get(inputs, $i)?,)*))
            }
        }

        #[allow(non_snake_case)]
        impl<$($a,)* R, F: FnOnce($($a),*) -> R + Send + 'static> TaskFn<($($a,)*), R> for F {
            fn call(self, outs: ($($a,)*)) -> R {
                let ($($a,)*) = outs;
                self($($a),*)
            }
        }
    )*};
}

tuples!(
    (),
    (A0 0),
    (A0 0, A1 1),
    (A0 0, A1 1, A2 2),
    (A0 0, A1 1, A2 2, A3 3),
    (A0 0, A1 1, A2 2, A3 3, A4 4),
    (A0 0, A1 1, A2 2, A3 3, A4 4, A5 5),
    (A0 0, A1 1, A2 2, A3 3, A4 4, A5 5, A6 6),
    (A0 0, A1 1, A2 2, A3 3, A4 4, A5 5, A6 6, A7 7),
    (A0 0, A1 1, A2 2, A3 3, A4 4, A5 5, A6 6, A7 7, A8 8),
    (A0 0, A1 1, A2 2, A3 3, A4 4, A5 5, A6 6, A7 7, A8 8, A9 9),
);

/// The body of a task that calls `f` with the arguments `getters` take from its inputs.
pub(crate) fn body<A, F, R>(getters: A::Getters, f: F) -> crate::processor::Body
where
    A: TaskArgs,
    F: TaskFn<A::Outs, R>,
    R: Send + Sync + 'static,
{
    Box::new(move |inputs: &mut [Value]| {
        let outs = A::get(getters, inputs)?;
        Ok(Value::new(f.call(outs)))
    })
}

/// [`body`] for a fallible `f`: its `Err` fails the task.
pub(crate) fn try_body<A, F, R, E>(getters: A::Getters, f: F) -> crate::processor::Body
where
    A: TaskArgs,
    F: TaskFn<A::Outs, Result<R, E>>,
    R: Send + Sync + 'static,
    E: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    Box::new(move |inputs: &mut [Value]| {
        let outs = A::get(getters, inputs)?;
        f.call(outs)
            .map(Value::new)
            .map_err(|e| TaskFailure::Error(e.into()))
    })
}

impl<T: Send + Sync + 'static> Chunk<T> {
    /// Passes this chunk's value to a task as an `Arc<T>` instead of a clone.
    pub fn shared(&self) -> Shared<T> {
        Shared {
            dep: Dep::Data(self.data.clone()),
            scope: self.scope.clone(),
            _t: PhantomData,
        }
    }
}

/// An array input of a kernel task: a task, a chunk, or a value.
pub struct KernelArg<T> {
    pub(crate) dep: Dep,
    pub(crate) scope: Option<Scope>,
    _t: PhantomData<fn() -> T>,
}

impl<T> std::fmt::Debug for KernelArg<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let what = match &self.dep {
            Dep::Task(t) => format!("task {}", t.id),
            Dep::Data(_) => "a value".to_owned(),
            Dep::Lazy { .. } => "a lazy thunk".to_owned(),
        };
        f.debug_tuple("KernelArg")
            .field(&format_args!("{what}"))
            .finish()
    }
}

impl<T: crate::GpuScalar> From<&DTask<Vec<T>>> for KernelArg<T> {
    fn from(t: &DTask<Vec<T>>) -> Self {
        KernelArg {
            dep: Dep::Task(t.core.clone()),
            scope: None,
            _t: PhantomData,
        }
    }
}

impl<T: crate::GpuScalar> From<&Chunk<Vec<T>>> for KernelArg<T> {
    fn from(c: &Chunk<Vec<T>>) -> Self {
        KernelArg {
            dep: Dep::Data(c.data.clone()),
            scope: c.scope.clone(),
            _t: PhantomData,
        }
    }
}

impl<T: crate::GpuScalar> From<Vec<T>> for KernelArg<T> {
    fn from(v: Vec<T>) -> Self {
        KernelArg {
            dep: Dep::Data(Data::host(Value::new(v))),
            scope: None,
            _t: PhantomData,
        }
    }
}
