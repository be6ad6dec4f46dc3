//! Task options: scope, name, occupancy and hints, set per call, per block of code or per
//! function.

use std::any::TypeId;
use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use parking_lot::RwLock;

use crate::scope::Scope;

/// Options for the tasks spawned under them (Dagger.jl's `Options`).
///
/// Options set at a call ([`Context::spawn_with`](crate::Context::spawn_with)) override those
/// of the enclosing [`with_options`] blocks (innermost first), which override the defaults
/// registered for the task's function with [`set_default_options`].
///
/// ```
/// use dagger::prelude::*;
/// let ctx = Context::builder().threads(2).build()?;
/// let t = with_options(Options::new().scope(Scope::thread(0)).name("pinned"), || {
///     ctx.spawn(|| dagger::get_options().get_name().map(str::to_owned), ())
/// });
/// assert_eq!(t.fetch()?.as_deref(), Some("pinned"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Options {
    scope: Option<Scope>,
    name: Option<Arc<str>>,
    occupancy: Option<f64>,
    time_hint: Option<Duration>,
    memory_hint: Option<u64>,
    max_threads: Option<usize>,
    checkpoint: Option<Arc<std::path::Path>>,
    priority: Option<Priority>,
}

/// How soon a ready task runs beside other ready tasks ([`Options::priority`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Priority {
    /// In the order tasks became ready (the task a worker's last task made ready first).
    #[default]
    Normal,
    /// Before every ready task of [`Priority::Normal`] that may run on the same CPU
    /// threads: for tasks on a computation's critical path, such as the next panel of a
    /// factorization and the updates it waits for.
    High,
}

impl Options {
    /// No options set.
    pub fn new() -> Self {
        Options::default()
    }

    /// Where the task may run.
    pub fn scope(mut self, scope: Scope) -> Self {
        self.scope = Some(scope);
        self
    }

    /// The task's name in logs, traces and errors.
    pub fn name(mut self, name: impl Into<Arc<str>>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// The fraction of a processor the task takes, in `0.0..=1.0` (default 1). Two tasks of
    /// occupancy 0.5 share one thread; occupancy 0 means the task takes a negligible share.
    /// Values outside the range are clamped into it.
    pub fn occupancy(mut self, fraction: f64) -> Self {
        self.occupancy = Some(if fraction.is_nan() {
            1.0
        } else {
            fraction.clamp(0.0, 1.0)
        });
        self
    }

    /// The expected run time, used by placement before the run time has been measured.
    pub fn time_hint(mut self, d: Duration) -> Self {
        self.time_hint = Some(d);
        self
    }

    /// The expected memory use in bytes.
    pub fn memory_hint(mut self, bytes: u64) -> Self {
        self.memory_hint = Some(bytes);
        self
    }

    /// The task can use up to `n` CPU threads (default 1). When it starts on a CPU thread
    /// and no other work is waiting, the scheduler lends it idle CPU threads (they take no
    /// other task until it finishes), and the task reads how many it got from
    /// [`task_threads`](crate::task_threads). So a task's own parallelism (a BLAS call, say)
    /// never competes with other tasks for the cores.
    ///
    /// ```
    /// use dagger::prelude::*;
    /// let ctx = Context::builder().threads(2).build()?;
    /// let t = ctx.spawn_with(Options::new().max_threads(2), || dagger::task_threads(), ());
    /// assert!((1..=2).contains(&t.fetch()?)); // 2 unless the other thread was busy
    /// assert_eq!(ctx.spawn(|| dagger::task_threads(), ()).fetch()?, 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn max_threads(mut self, n: usize) -> Self {
        self.max_threads = Some(n.max(1));
        self
    }

    /// How soon the task runs once ready, beside other ready tasks (Dask's and StarPU's
    /// `priority`, in two levels). A [`Priority::High`] task that may run on any CPU thread
    /// is taken by the next thread that looks for work before any [`Priority::Normal`] one;
    /// high-priority tasks run among themselves in the order they became ready, except that
    /// a thread may first run the one its last task made ready. A task
    /// already running is not interrupted, and a task restricted to some processors keeps
    /// to their queues.
    ///
    /// ```
    /// use dagger::prelude::*;
    /// use dagger::Priority;
    /// let ctx = Context::builder().threads(1).build()?;
    /// let order = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    /// let gate = std::sync::Arc::new(std::sync::Barrier::new(2));
    /// // The only thread waits at the gate while three tasks queue behind it.
    /// let g = gate.clone();
    /// let first = ctx.spawn(move || { g.wait(); }, ());
    /// let log = |name: &'static str| {
    ///     let order = order.clone();
    ///     move || order.lock().unwrap().push(name)
    /// };
    /// let a = ctx.spawn(log("normal"), ());
    /// let b = ctx.spawn_with(Options::new().priority(Priority::High), log("high"), ());
    /// gate.wait();
    /// first.fetch()?;
    /// a.fetch()?;
    /// b.fetch()?;
    /// assert_eq!(*order.lock().unwrap(), ["high", "normal"]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn priority(mut self, p: Priority) -> Self {
        self.priority = Some(p);
        self
    }

    /// Keep the task's result in directory `dir` (Dagger.jl's `checkpoint`/`restore`): when
    /// the task finishes, its result is saved there; when a task with the same key is
    /// spawned again with the same directory — in a later run of the program, after a crash —
    /// it loads the saved result instead of running, without waiting for its inputs.
    ///
    /// The key is the task's name ([`name`](Self::name), else the function or call site),
    /// with `.1`, `.2`, … for the second, third, … task of that name spawned in the context,
    /// so a program that spawns its tasks in the same order finds its checkpoints again. The
    /// result's type must be registered ([`storage::register`](crate::storage::register);
    /// numeric vectors and arrays are); otherwise the task fails saying so. Checkpoints apply
    /// to host functions (`spawn`, `try_spawn`); the directory is not created.
    ///
    /// ```
    /// use dagger::prelude::*;
    /// let dir = std::env::temp_dir().join(format!("dagger-ckpt-doc-{}", std::process::id()));
    /// std::fs::create_dir_all(&dir)?;
    /// let runs = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    /// for _ in 0..2 {
    ///     let ctx = Context::builder().threads(1).build()?;
    ///     let r = runs.clone();
    ///     let opts = Options::new().name("squares").checkpoint(&dir);
    ///     let t = ctx.spawn_with(opts, move || {
    ///         r.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    ///         (0..4).map(|i| i * i).collect::<Vec<u64>>()
    ///     }, ());
    ///     assert_eq!(t.fetch()?, vec![0, 1, 4, 9]);
    /// }
    /// assert_eq!(runs.load(std::sync::atomic::Ordering::SeqCst), 1, "the second run loaded it");
    /// # std::fs::remove_dir_all(&dir)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn checkpoint(mut self, dir: impl AsRef<std::path::Path>) -> Self {
        self.checkpoint = Some(Arc::from(dir.as_ref()));
        self
    }

    /// The checkpoint directory, if set.
    pub fn get_checkpoint(&self) -> Option<&std::path::Path> {
        self.checkpoint.as_deref()
    }

    /// The scope, if set.
    pub fn get_scope(&self) -> Option<&Scope> {
        self.scope.as_ref()
    }

    /// The task name, if set.
    pub fn get_name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    /// The occupancy, if set.
    pub fn get_occupancy(&self) -> Option<f64> {
        self.occupancy
    }

    /// The time hint, if set.
    pub fn get_time_hint(&self) -> Option<Duration> {
        self.time_hint
    }

    /// The memory hint, if set.
    pub fn get_memory_hint(&self) -> Option<u64> {
        self.memory_hint
    }

    /// The priority, if set.
    pub fn get_priority(&self) -> Option<Priority> {
        self.priority
    }

    /// The most CPU threads the task can use, if set.
    pub fn get_max_threads(&self) -> Option<usize> {
        self.max_threads
    }

    /// `self` with every option set in `over` replaced by `over`'s value.
    pub fn merged_with(&self, over: &Options) -> Options {
        Options {
            scope: over.scope.clone().or_else(|| self.scope.clone()),
            name: over.name.clone().or_else(|| self.name.clone()),
            occupancy: over.occupancy.or(self.occupancy),
            time_hint: over.time_hint.or(self.time_hint),
            memory_hint: over.memory_hint.or(self.memory_hint),
            max_threads: over.max_threads.or(self.max_threads),
            checkpoint: over.checkpoint.clone().or_else(|| self.checkpoint.clone()),
            priority: over.priority.or(self.priority),
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        *self == Options::default()
    }
}

thread_local! {
    static CURRENT: RefCell<Option<Arc<Options>>> = const { RefCell::new(None) };
}

/// Runs `f` with `opts` applied to every task spawned inside it, including tasks spawned by
/// those tasks. Nested calls merge, the inner call winning where both set an option.
///
/// ```
/// use dagger::prelude::*;
///
/// let ctx = Context::builder().threads(2).build()?;
/// let t = with_options(Options::new().name("answer").scope(Scope::cpu()), || {
///     // Inside, the options are in effect for every spawn, and can be read back.
///     assert_eq!(get_options().get_name(), Some("answer"));
///     ctx.spawn(|| 42, ())
/// });
/// assert_eq!(t.fetch()?, 42);
/// // Nested blocks merge: the inner name wins, the outer scope stays.
/// with_options(Options::new().name("outer").scope(Scope::cpu()), || {
///     with_options(Options::new().name("inner"), || {
///         let o = get_options();
///         assert_eq!(o.get_name(), Some("inner"));
///         assert!(o.get_scope().is_some());
///     })
/// });
/// assert_eq!(get_options().get_name(), None, "nothing in effect outside");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn with_options<R>(opts: Options, f: impl FnOnce() -> R) -> R {
    let merged = CURRENT.with(|c| match &*c.borrow() {
        Some(outer) => outer.merged_with(&opts),
        None => opts,
    });
    let _guard = CurrentGuard::set(Some(Arc::new(merged)));
    f()
}

/// The options in effect here: inside a task, the options it was spawned with; inside a
/// [`with_options`] block, that block's merged options; elsewhere, none.
pub fn get_options() -> Options {
    CURRENT.with(|c| c.borrow().as_deref().cloned().unwrap_or_default())
}

pub(crate) fn current_options() -> Option<Arc<Options>> {
    CURRENT.with(|c| c.borrow().clone())
}

/// Restores the previous thread-local options when dropped.
pub(crate) struct CurrentGuard {
    prev: Option<Arc<Options>>,
}

impl CurrentGuard {
    pub(crate) fn set(opts: Option<Arc<Options>>) -> Self {
        let prev = CURRENT.with(|c| std::mem::replace(&mut *c.borrow_mut(), opts));
        CurrentGuard { prev }
    }
}

impl Drop for CurrentGuard {
    fn drop(&mut self) {
        let prev = self.prev.take();
        CURRENT.with(|c| *c.borrow_mut() = prev);
    }
}

static HAS_DEFAULTS: AtomicBool = AtomicBool::new(false);

fn defaults() -> &'static RwLock<HashMap<TypeId, Arc<Options>>> {
    static D: OnceLock<RwLock<HashMap<TypeId, Arc<Options>>>> = OnceLock::new();
    D.get_or_init(Default::default)
}

/// Registers default options for every task whose function is `f` (Dagger.jl's
/// `default_option`). Call-site and [`with_options`] options override them.
///
/// ```
/// use dagger::prelude::*;
/// fn heavy(x: u64) -> u64 { x * 2 }
/// dagger::set_default_options(&heavy, Options::new().name("heavy"));
/// let ctx = Context::builder().threads(1).build()?;
/// let t = ctx.spawn(heavy, (2,));
/// assert_eq!(t.name(), "heavy");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn set_default_options<F: 'static>(_f: &F, opts: Options) {
    defaults().write().insert(TypeId::of::<F>(), Arc::new(opts));
    HAS_DEFAULTS.store(true, Ordering::Release);
}

/// Removes the default options registered for `f`.
pub fn clear_default_options<F: 'static>(_f: &F) {
    defaults().write().remove(&TypeId::of::<F>());
}

pub(crate) fn function_defaults(f: TypeId) -> Option<Arc<Options>> {
    if !HAS_DEFAULTS.load(Ordering::Acquire) {
        return None;
    }
    defaults().read().get(&f).cloned()
}
