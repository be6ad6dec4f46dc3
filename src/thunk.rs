//! Lazy task graphs: [`delayed`] builds [`Thunk`]s; `compute` runs them.

use std::any::TypeId;
use std::marker::PhantomData;
use std::sync::{Arc, OnceLock};

use parking_lot::Mutex;

use crate::chunk::Chunk;
use crate::context::{global, Context};
use crate::error::TaskError;
use crate::options::{current_options, Options};
use crate::processor::Body;
use crate::sched::TaskCore;
use crate::task::args::{cloned, Cloned, ClonedVec, Dep, Deps, IntoArg, Shared, TaskArgs, TaskFn};
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
    spawned: OnceLock<Arc<TaskCore>>,
}

impl ThunkNode {
    fn thunk_deps(&self) -> Vec<Arc<ThunkNode>> {
        match &*self.pending.lock() {
            Some((deps, _)) => deps
                .list
                .iter()
                .filter_map(as_node)
                .filter(|n| n.spawned.get().is_none())
                .collect(),
            None => Vec::new(),
        }
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
    if let Some(t) = node.spawned.get() {
        return t.clone();
    }
    let mut stack: Vec<(Arc<ThunkNode>, bool)> = vec![(node.clone(), false)];
    while let Some((n, expanded)) = stack.pop() {
        if n.spawned.get().is_some() {
            continue;
        }
        if !expanded {
            let deps = n.thunk_deps();
            stack.push((n, true));
            stack.extend(deps.into_iter().map(|d| (d, false)));
            continue;
        }
        let mut pending = n.pending.lock();
        if n.spawned.get().is_some() {
            continue;
        }
        let (deps, body) = pending.take().expect("an unspawned thunk keeps its body");
        let task = ctx.submit(n.fn_name, n.fn_type, n.opts.clone(), deps, body);
        let _ = n.spawned.set(task);
    }
    node.spawned.get().expect("spawned above").clone()
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
            .field("spawned", &self.node.spawned.get().is_some())
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
        self.node.spawned.get().is_some()
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
            if let Some(t) = n.spawned.get() {
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
    )
}

fn make<R>(
    fn_name: &'static str,
    fn_type: TypeId,
    opts: Options,
    deps: Deps,
    body: Body,
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
            spawned: OnceLock::new(),
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
