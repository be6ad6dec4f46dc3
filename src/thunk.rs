//! Lazy task graphs: [`delayed`] builds [`Thunk`]s; `compute` runs them.

use std::any::TypeId;
use std::marker::PhantomData;
use std::sync::Arc;

use parking_lot::Mutex;

use crate::chunk::Chunk;
use crate::context::{global, Context};
use crate::error::TaskError;
use crate::options::{current_options, Options};
use crate::processor::Body;
use crate::sched::TaskCore;
use crate::task::args::{
    cloned, AsChunk, Cloned, ClonedVec, Dep, Deps, IntoArg, Moved, Shared, TaskArgs, TaskFn,
};
use crate::task::DTask;

/// The thunk node behind a lazy dependency, if it is one.
fn as_node(d: &Dep) -> Option<Arc<ThunkNode>> {
    match d {
        Dep::Lazy { node, .. } => node.clone().downcast::<ThunkNode>().ok(),
        _ => None,
    }
}

/// A dependency on a thunk: spawned on the context of the task that takes it.
fn dep(node: &Arc<ThunkNode>) -> Dep {
    Dep::Lazy {
        node: node.clone(),
        spawn: |ctx, node| {
            let ctx = ctx
                .downcast_ref::<Context>()
                .expect("lazy dependencies are spawned by a context");
            let node = node
                .clone()
                .downcast::<ThunkNode>()
                .expect("a thunk dependency holds a thunk node");
            spawn_node(ctx, &node)
        },
    }
}

/// A node of a lazy graph.
pub(crate) struct ThunkNode {
    id: u64,
    /// The thunks this one takes as arguments, weakly (for drawing the graph).
    inputs: Vec<std::sync::Weak<ThunkNode>>,
    fn_name: &'static str,
    fn_type: TypeId,
    opts: Options,
    pending: Mutex<Option<(Deps, Body)>>,
    spawned: Mutex<Option<Arc<TaskCore>>>,
    /// For a cached thunk: how to make its task again after its result was evicted.
    recipe: Option<Recipe>,
}

/// The dependencies and body of a cached thunk's task, made afresh each time it runs.
struct Recipe {
    deps: Mutex<Deps>,
    body: Box<dyn Fn() -> Body + Send + Sync>,
}

impl ThunkNode {
    fn thunk_deps(&self) -> Vec<Arc<ThunkNode>> {
        let from = |deps: &Deps| {
            deps.list
                .iter()
                .filter_map(as_node)
                .filter(|n| n.task().is_none())
                .collect()
        };
        match (&*self.pending.lock(), &self.recipe) {
            (Some((deps, _)), _) => from(deps),
            (None, Some(r)) => from(&r.deps.lock()),
            (None, None) => Vec::new(),
        }
    }

    /// The task this thunk became, unless it has not run (or its result was evicted).
    fn task(&self) -> Option<Arc<TaskCore>> {
        self.spawned.lock().clone()
    }
}

impl Drop for ThunkNode {
    fn drop(&mut self) {
        let mut stack: Vec<Arc<ThunkNode>> = Vec::new();
        fn harvest(p: Option<(Deps, Body)>, stack: &mut Vec<Arc<ThunkNode>>) {
            if let Some((deps, _)) = p {
                stack.extend(deps.list.iter().filter_map(as_node));
            }
        }
        harvest(self.pending.get_mut().take(), &mut stack);
        while let Some(n) = stack.pop() {
            if let Ok(mut inner) = Arc::try_unwrap(n) {
                harvest(inner.pending.get_mut().take(), &mut stack);
            }
        }
    }
}

/// Spawns `node` and every unspawned thunk it depends on, inputs first, without recursion.
/// A thunk shared by several others is spawned once.
pub(crate) fn spawn_node(ctx: &Context, node: &Arc<ThunkNode>) -> Arc<TaskCore> {
    if let Some(t) = node.task() {
        return t;
    }
    let mut stack: Vec<(Arc<ThunkNode>, bool)> = vec![(node.clone(), false)];
    while let Some((n, expanded)) = stack.pop() {
        if n.task().is_some() {
            continue;
        }
        if !expanded {
            let deps = n.thunk_deps();
            stack.push((n, true));
            stack.extend(deps.into_iter().map(|d| (d, false)));
            continue;
        }
        let mut pending = n.pending.lock();
        let mut spawned = n.spawned.lock();
        if spawned.is_some() {
            continue;
        }
        let (deps, body) = match (pending.take(), &n.recipe) {
            (Some(p), _) => p,
            (None, Some(r)) => (r.deps.lock().copy(), (r.body)()),
            (None, None) => unreachable!("an unspawned thunk keeps its body"),
        };
        let task = ctx.submit(n.fn_name, n.fn_type, n.opts.clone(), deps, body);
        *spawned = Some(task);
    }
    node.task().expect("spawned above")
}

/// A lazily evaluated task: Dagger.jl's `Thunk`, made by [`delayed`].
///
/// Nothing runs until [`compute`](Self::compute) or [`collect`](Self::collect); then the
/// thunk and everything it depends on run as tasks, each once however many thunks share
/// it.
///
/// ```
/// use dagger::prelude::*;
/// fn add1(x: i64) -> i64 { x + 1 }
/// fn add2(x: i64) -> i64 { x + 2 }
/// fn combine(a: i64, b: i64, c: i64) -> i64 { a + b + c }
///
/// let p = delayed(add1, (4,));
/// let q = delayed(add2, (&p,));
/// let r = delayed(add1, (3,));
/// let s = delayed(combine, (&p, &q, &r));
/// assert_eq!(s.collect()?, 16);
/// # Ok::<(), dagger::TaskError>(())
/// ```
pub struct Thunk<T> {
    pub(crate) node: Arc<ThunkNode>,
    _t: PhantomData<fn() -> T>,
}

impl<T> Clone for Thunk<T> {
    fn clone(&self) -> Self {
        Thunk {
            node: self.node.clone(),
            _t: PhantomData,
        }
    }
}

impl<T> std::fmt::Debug for Thunk<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Thunk")
            .field("function", &self.node.fn_name)
            .field("spawned", &self.node.task().is_some())
            .finish()
    }
}

impl<T: Send + Sync + 'static> Thunk<T> {
    /// Runs the graph on `ctx` (if not run already) and returns the task of this thunk.
    pub fn spawn_on(&self, ctx: &Context) -> DTask<T> {
        DTask::from_core(spawn_node(ctx, &self.node))
    }

    /// Runs the graph on the [`global`] context and returns the result as a chunk.
    pub fn compute(&self) -> Result<Chunk<T>, TaskError> {
        self.compute_on(global())
    }

    /// Runs the graph on `ctx` and returns the result as a chunk.
    pub fn compute_on(&self, ctx: &Context) -> Result<Chunk<T>, TaskError> {
        self.spawn_on(ctx).chunk()
    }

    /// Runs the graph on the [`global`] context and returns a clone of the result.
    pub fn collect(&self) -> Result<T, TaskError>
    where
        T: Clone,
    {
        self.collect_on(global())
    }

    /// Runs the graph on `ctx` and returns a clone of the result.
    pub fn collect_on(&self, ctx: &Context) -> Result<T, TaskError>
    where
        T: Clone,
    {
        self.spawn_on(ctx).fetch()
    }

    /// Whether the thunk has been turned into a task.
    pub fn is_spawned(&self) -> bool {
        self.node.task().is_some()
    }

    /// Drops the result of a thunk made by [`delayed_cached`], so that the next
    /// `compute` runs it again (and its evicted inputs); true if there was a result to
    /// drop. Thunks made by [`delayed`] cannot run twice: for them this does nothing and
    /// returns false.
    pub fn evict(&self) -> bool {
        self.node.recipe.is_some() && self.node.spawned.lock().take().is_some()
    }

    /// Passes this thunk's value to a task as a [`Chunk`] rather than the value (Dagger.jl's
    /// `meta`).
    ///
    /// ```
    /// use dagger::prelude::*;
    /// let a = delayed(|| 41u64, ());
    /// let b = delayed(|c: Chunk<u64>| c.collect().unwrap() + 1, (a.as_chunk(),));
    /// assert_eq!(b.collect()?, 42);
    /// # Ok::<(), dagger::TaskError>(())
    /// ```
    pub fn as_chunk(&self) -> AsChunk<T> {
        AsChunk::new(dep(&self.node))
    }

    /// Passes this thunk's value to a task as the type `V` it has after the chosen
    /// processor's [`move_in`](crate::Processor::move_in) converted it (as
    /// [`DTask::moved`]).
    pub fn moved<V>(&self) -> Moved<V> {
        Moved::new(dep(&self.node))
    }

    /// Passes this thunk's value to a task as an `Arc<T>` instead of a clone.
    pub fn shared(&self) -> Shared<T> {
        Shared::new(dep(&self.node))
    }

    /// The graph of this thunk and the thunks it depends on, in Graphviz DOT: one node per
    /// thunk labelled with its name (and, once it has run, the processor it ran on and
    /// whether it failed), one edge per argument.
    ///
    /// ```
    /// use dagger::delayed;
    /// let a = delayed(|| 1, ());
    /// let b = delayed(|a: i32| a + 1, (&a,));
    /// let dot = b.to_dot();
    /// assert_eq!(dot.matches("->").count(), 1);
    /// ```
    pub fn to_dot(&self) -> String {
        let mut seen = std::collections::HashSet::new();
        let mut stack = vec![self.node.clone()];
        let mut nodes = Vec::new();
        let mut edges = Vec::new();
        while let Some(n) = stack.pop() {
            if !seen.insert(n.id) {
                continue;
            }
            for i in n.inputs.iter().filter_map(std::sync::Weak::upgrade) {
                edges.push((i.id, n.id));
                stack.push(i);
            }
            nodes.push(n);
        }
        nodes.sort_by_key(|n| n.id);
        edges.sort_unstable();
        let mut out = String::from(
            "digraph thunks {\n  rankdir=LR;\n  node [shape=box, fontname=\"Helvetica\"];\n",
        );
        for n in &nodes {
            let name = n.opts.get_name().map(str::to_owned).unwrap_or_else(|| {
                crate::sched::TaskName::Static(n.fn_name)
                    .as_str()
                    .to_owned()
            });
            let mut label = name.replace('\\', "\\\\").replace('"', "\\\"");
            let mut style = String::new();
            if let Some(t) = n.task() {
                let p = t.ran_on.load(std::sync::atomic::Ordering::Relaxed);
                if p != u32::MAX {
                    label.push_str(&format!("\\nran on 1:{p}"));
                }
                if let Some(Err(_)) = t.result.get() {
                    style = ", color=red, fontcolor=red".into();
                }
            }
            out.push_str(&format!("  t{} [label=\"{label}\"{style}];\n", n.id));
        }
        for (a, b) in edges {
            out.push_str(&format!("  t{a} -> t{b};\n"));
        }
        out.push_str("}\n");
        out
    }
}

/// Builds a lazy task `f(args...)` (Dagger.jl's `delayed(f)(args...)`).
///
/// Arguments are as for [`Context::spawn`]: plain values, `&Thunk<U>`, `&DTask<U>` or
/// `&Chunk<U>`. Options in effect here (from [`with_options`](crate::with_options)) are
/// captured and apply when the graph runs.
///
/// Nothing runs until the graph is asked for: [`Thunk::collect`] (or
/// [`Thunk::collect_on`] a given context) runs what the result needs and returns it, and
/// [`Thunk::compute`] leaves it as a [`Chunk`](crate::Chunk). A thunk used twice runs once.
///
/// ```
/// use dagger::prelude::*;
/// use std::sync::atomic::{AtomicUsize, Ordering};
///
/// static RUNS: AtomicUsize = AtomicUsize::new(0);
/// fn square(x: i64) -> i64 {
///     RUNS.fetch_add(1, Ordering::Relaxed);
///     x * x
/// }
///
/// let ctx = Context::builder().threads(2).build()?;
/// let a = delayed(square, (3,));
/// let b = delayed(|a: i64, c: i64| a + c, (&a, 1));
/// let sum = delayed(|a: i64, b: i64| a + b, (&a, &b));
/// assert_eq!(RUNS.load(Ordering::Relaxed), 0, "nothing has run yet");
/// assert_eq!(sum.collect_on(&ctx)?, 9 + 10);
/// assert_eq!(RUNS.load(Ordering::Relaxed), 1, "`a` ran once for both of its users");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn delayed<A, F, R>(f: F, args: A) -> Thunk<R>
where
    A: TaskArgs,
    F: TaskFn<A::Outs, R>,
    R: Send + Sync + 'static,
{
    delayed_with(Options::new(), f, args)
}

/// [`delayed`] with options for this thunk.
pub fn delayed_with<A, F, R>(opts: Options, f: F, args: A) -> Thunk<R>
where
    A: TaskArgs,
    F: TaskFn<A::Outs, R>,
    R: Send + Sync + 'static,
{
    let mut deps = Deps::default();
    let getters = args.register(&mut deps);
    let body = crate::task::args::body::<A, F, R>(getters, f);
    make(
        std::any::type_name::<F>(),
        TypeId::of::<F>(),
        opts,
        deps,
        body,
        None,
    )
}

/// [`delayed`] for a thunk whose result can be evicted and made again (Dagger.jl's
/// `cache`): `compute` reuses the result while the thunk holds it, and after
/// [`Thunk::evict`] runs the function again. The function and its plain arguments are
/// kept, so they must be `Clone`.
///
/// ```
/// use std::sync::atomic::{AtomicUsize, Ordering};
/// use std::sync::Arc;
/// use dagger::prelude::*;
/// let runs = Arc::new(AtomicUsize::new(0));
/// let r = runs.clone();
/// let t = dagger::delayed_cached(move |x: u32| { r.fetch_add(1, Ordering::SeqCst); x * 2 }, (21,));
/// assert_eq!(t.collect()?, 42);
/// assert_eq!(t.collect()?, 42);
/// assert_eq!(runs.load(Ordering::SeqCst), 1, "cached");
/// assert!(t.evict());
/// assert_eq!(t.collect()?, 42);
/// assert_eq!(runs.load(Ordering::SeqCst), 2, "recomputed after eviction");
/// # Ok::<(), dagger::TaskError>(())
/// ```
pub fn delayed_cached<A, F, R>(f: F, args: A) -> Thunk<R>
where
    A: TaskArgs,
    A::Getters: Clone + Sync,
    F: TaskFn<A::Outs, R> + Clone + Sync,
    R: Send + Sync + 'static,
{
    let mut deps = Deps::default();
    let getters = args.register(&mut deps);
    let body = crate::task::args::body::<A, F, R>(getters.clone(), f.clone());
    let recipe = Recipe {
        deps: Mutex::new(deps.copy()),
        body: Box::new(move || crate::task::args::body::<A, F, R>(getters.clone(), f.clone())),
    };
    make(
        std::any::type_name::<F>(),
        TypeId::of::<F>(),
        Options::new(),
        deps,
        body,
        Some(recipe),
    )
}

/// [`delayed`] for a fallible function: an `Err` fails the task.
pub fn try_delayed<A, F, R, E>(f: F, args: A) -> Thunk<R>
where
    A: TaskArgs,
    F: TaskFn<A::Outs, Result<R, E>>,
    R: Send + Sync + 'static,
    E: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let mut deps = Deps::default();
    let getters = args.register(&mut deps);
    let body = crate::task::args::try_body::<A, F, R, E>(getters, f);
    make(
        std::any::type_name::<F>(),
        TypeId::of::<F>(),
        Options::new(),
        deps,
        body,
        None,
    )
}

fn make<R>(
    fn_name: &'static str,
    fn_type: TypeId,
    opts: Options,
    deps: Deps,
    body: Body,
    recipe: Option<Recipe>,
) -> Thunk<R> {
    let captured = match current_options() {
        Some(cur) => cur.merged_with(&opts),
        None => opts,
    };
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    let inputs = deps
        .list
        .iter()
        .filter_map(as_node)
        .map(|n| Arc::downgrade(&n))
        .collect();
    Thunk {
        node: Arc::new(ThunkNode {
            id: NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            inputs,
            fn_name,
            fn_type,
            opts: captured,
            pending: Mutex::new(Some((deps, body))),
            spawned: Mutex::new(None),
            recipe,
        }),
        _t: PhantomData,
    }
}

impl<U: Clone + Send + Sync + 'static> IntoArg for &Thunk<U> {
    type Out = U;
    type Getter = Cloned<U>;
    fn register(self, deps: &mut Deps) -> Cloned<U> {
        cloned(deps.push(dep(&self.node)))
    }
}

impl<U: Clone + Send + Sync + 'static> IntoArg for Thunk<U> {
    type Out = U;
    type Getter = Cloned<U>;
    fn register(self, deps: &mut Deps) -> Cloned<U> {
        cloned(deps.push(dep(&self.node)))
    }
}

impl<U: Clone + Send + Sync + 'static> IntoArg for &[Thunk<U>] {
    type Out = Vec<U>;
    type Getter = ClonedVec<U>;
    fn register(self, deps: &mut Deps) -> ClonedVec<U> {
        let start = deps.list.len();
        for t in self {
            deps.push(dep(&t.node));
        }
        ClonedVec {
            start,
            len: self.len(),
            _t: PhantomData,
        }
    }
}
