//! Datadeps: tasks that mutate data in place, ordered by how they access it.
//!
//! Inside [`Context::spawn_datadeps`], tasks take [`Cell`]s (or views of them) wrapped in
//! [`In`], [`Out`] or [`InOut`]. The region orders them as Dagger.jl does: readers of the
//! same data run in parallel; a writer waits for the earlier readers and writers of data it
//! overlaps; a reader waits for the earlier writer; data that do not overlap never
//! synchronize. The result equals running the tasks one by one in submission order.
//!
//! Closure tasks ([`DataRegion::spawn`]) mutate cells in place on CPU threads. A task
//! given a view of a cell (`InOut(cell.rows(0..2))`, `In(cell.strict_upper())`) reaches
//! that part only ([`PartRef`], [`PartMut`]), so tasks on parts that do not overlap run at
//! the same time. Kernel tasks
//! ([`DataRegion::spawn_kernel`]) may run on a GPU: they work on *versions* of whole cells
//! that the scheduler moves between memory spaces, copying a version to a device only when
//! it is not there yet, and every written cell holds its latest version on the host when the
//! region ends. Both kinds mix in one region; tasks are placed by the same cost model as any
//! task, within the region's scope.
//!
//! A region holds no more than it needs while it runs: a task that succeeded is forgotten as
//! it finishes (a failed one is kept for the region's error), a task that writes a whole
//! cell replaces the earlier accesses of it in the region's history (ordering after it
//! orders after them), and of a value tracked by versions without a cell to go back to (the
//! blocks inside DArray factorizations) only the latest version is kept. A version is then
//! freed as soon as the tasks that read it have run, and a tile that updates a block
//! nothing else holds any more updates it in place instead of copying it.
//!
//! ```
//! use dagger::prelude::*;
//! use dagger::{Cell, In, InOut, Ref, RefMut};
//!
//! let ctx = Context::builder().threads(2).build()?;
//! let a = Cell::new(vec![1.0, 2.0]);
//! let b = Cell::new(vec![10.0, 20.0]);
//! let n = ctx.spawn_datadeps(|r| {
//!     r.spawn(|mut b: RefMut<Vec<f64>>, a: Ref<Vec<f64>>| {
//!         for (b, a) in b.iter_mut().zip(a.iter()) { *b += a; }
//!     }, (InOut(&b), In(&a)));
//!     r.spawn(|mut a: RefMut<Vec<f64>>| a.iter_mut().for_each(|x| *x = 0.0), (InOut(&a),));
//!     2
//! })?;
//! assert_eq!(n, 2);
//! assert_eq!(b.get(), vec![11.0, 22.0]); // read a before it was zeroed
//! assert_eq!(a.get(), vec![0.0, 0.0]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::any::Any;
use std::collections::HashMap;
use std::marker::PhantomData;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};

use parking_lot::lock_api::{ArcRwLockReadGuard, ArcRwLockWriteGuard};
use parking_lot::{Mutex, RawRwLock, RwLock};

use crate::context::Context;
use crate::error::TaskError;
use crate::options::Options;
use crate::processor::{Body, TaskFailure};
use crate::sched::TaskCore;
use crate::task::args::{ArgGetter, Deps, IntoArg, TaskArgs, TaskFn};
use crate::task::DTask;
use crate::value::Value;

mod parts;
mod versions;
pub use parts::{PartMut, PartRef, Partition};
use parts::{PartTable, Registration};
pub use versions::KernelAccess;
pub(crate) use versions::Version;

static NEXT_CELL: AtomicU64 = AtomicU64::new(1);

/// A value that datadeps tasks read and write in place.
///
/// Cheap to clone (clones share the value). Outside a region, [`get`](Self::get) and
/// [`with`](Self::with) read it; inside, tasks receive [`Ref`] or [`RefMut`] access.
///
/// ```
/// use dagger::prelude::*;
///
/// let ctx = Context::builder().threads(2).build()?;
/// let total = Cell::new(0i64);
/// let log = Cell::new(Vec::<i64>::new());
/// ctx.spawn_datadeps(|r| {
///     for i in 1..=4 {
///         // Both tasks write `total`, so they run in the order they were spawned.
///         r.spawn(move |mut t: RefMut<i64>| *t += i, (InOut(&total),));
///         r.spawn(|t: Ref<i64>, mut l: RefMut<Vec<i64>>| l.push(*t), (In(&total), InOut(&log)));
///     }
/// })?;
/// assert_eq!(total.get(), 10);
/// assert_eq!(log.get(), [1, 3, 6, 10]);
/// assert_eq!(total.with(|t| t * 2), 20);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Cell<T> {
    id: u64,
    lock: Arc<RwLock<T>>,
    /// The parts of the value in use by tasks that declared views.
    parts: Arc<PartTable>,
}

/// Shows the cell's id and, unless a task holds it for writing now, its value.
impl<T: std::fmt::Debug> std::fmt::Debug for Cell<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut d = f.debug_struct("Cell");
        d.field("id", &self.id);
        match self.lock.try_read() {
            Some(v) => d.field("value", &*v),
            None => d.field("value", &format_args!("<being written>")),
        };
        d.finish()
    }
}

impl<T> Clone for Cell<T> {
    fn clone(&self) -> Self {
        Cell {
            id: self.id,
            lock: self.lock.clone(),
            parts: self.parts.clone(),
        }
    }
}

impl<T: Send + Sync + 'static> Cell<T> {
    /// A new cell holding `value`.
    pub fn new(value: T) -> Self {
        Cell {
            id: NEXT_CELL.fetch_add(1, Ordering::Relaxed),
            lock: Arc::new(RwLock::new(value)),
            parts: Arc::default(),
        }
    }

    /// A copy of the value (waiting for tasks writing parts of it).
    pub fn get(&self) -> T
    where
        T: Clone,
    {
        self.with(T::clone)
    }

    /// Reads the value in place (waiting for tasks writing parts of it).
    pub fn with<R>(&self, f: impl FnOnce(&T) -> R) -> R {
        let r = read_guard(self.lock.clone(), self.parts.clone(), Part::Whole);
        f(&r)
    }

    /// Replaces the value.
    pub fn set(&self, value: T) {
        *self.lock.write() = value;
    }

    /// The whole cell as a view.
    pub fn all(&self) -> View<'_, T> {
        self.view(Part::Whole)
    }

    /// Rows `r` (for a vector: elements `r`), all columns.
    pub fn rows(&self, r: Range<usize>) -> View<'_, T> {
        self.view(Part::Rect {
            rows: r,
            cols: 0..usize::MAX,
        })
    }

    /// Columns `c`, all rows.
    pub fn cols(&self, c: Range<usize>) -> View<'_, T> {
        self.view(Part::Rect {
            rows: 0..usize::MAX,
            cols: c,
        })
    }

    /// The sub-block of rows `r` and columns `c`.
    pub fn block(&self, r: Range<usize>, c: Range<usize>) -> View<'_, T> {
        self.view(Part::Rect { rows: r, cols: c })
    }

    /// The lower triangle, diagonal included.
    pub fn lower(&self) -> View<'_, T> {
        self.view(Part::Lower { strict: false })
    }

    /// The lower triangle without the diagonal.
    pub fn strict_lower(&self) -> View<'_, T> {
        self.view(Part::Lower { strict: true })
    }

    /// The upper triangle, diagonal included.
    pub fn upper(&self) -> View<'_, T> {
        self.view(Part::Upper { strict: false })
    }

    /// The upper triangle without the diagonal.
    pub fn strict_upper(&self) -> View<'_, T> {
        self.view(Part::Upper { strict: true })
    }

    fn view(&self, region: Part) -> View<'_, T> {
        View { cell: self, region }
    }
}

/// The part of a cell an access touches.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Part {
    /// All of it.
    Whole,
    /// Rows × columns (half-open ranges; `usize::MAX` ends mean "to the end").
    Rect {
        /// Rows.
        rows: Range<usize>,
        /// Columns.
        cols: Range<usize>,
    },
    /// The lower triangle (`j <= i`, or `j < i` when strict).
    Lower {
        /// Without the diagonal.
        strict: bool,
    },
    /// The upper triangle (`j >= i`, or `j > i` when strict).
    Upper {
        /// Without the diagonal.
        strict: bool,
    },
}

fn ranges_meet(a: &Range<usize>, b: &Range<usize>) -> bool {
    a.start < b.end && b.start < a.end && a.start < a.end && b.start < b.end
}

impl Part {
    /// Whether two regions of one cell share an element.
    pub fn overlaps(&self, other: &Part) -> bool {
        use Part::*;
        match (self, other) {
            (Whole, _) | (_, Whole) => true,
            (Rect { rows: r1, cols: c1 }, Rect { rows: r2, cols: c2 }) => {
                ranges_meet(r1, r2) && ranges_meet(c1, c2)
            }
            (Lower { .. }, Lower { .. }) | (Upper { .. }, Upper { .. }) => true,
            (Lower { strict: s1 }, Upper { strict: s2 })
            | (Upper { strict: s2 }, Lower { strict: s1 }) => !s1 && !s2,
            (Rect { rows, cols }, Lower { strict }) | (Lower { strict }, Rect { rows, cols }) => {
                // Some (i, j) in the rectangle with j <= i (j < i when strict).
                if rows.start >= rows.end || cols.start >= cols.end {
                    return false;
                }
                let max_i = rows.end - 1;
                if *strict {
                    cols.start < max_i
                } else {
                    cols.start <= max_i
                }
            }
            (Rect { rows, cols }, Upper { strict }) | (Upper { strict }, Rect { rows, cols }) => {
                if rows.start >= rows.end || cols.start >= cols.end {
                    return false;
                }
                let max_j = cols.end - 1;
                if *strict {
                    max_j > rows.start
                } else {
                    max_j >= rows.start
                }
            }
        }
    }
}

/// A region of a [`Cell`] that a task accesses.
pub struct View<'a, T> {
    cell: &'a Cell<T>,
    region: Part,
}

/// Takes a cell's lock (or part) and returns the guard, type-erased.
type Locker = Box<dyn FnOnce() -> Box<dyn Any> + Send>;

/// One in-place access of a task, as the region sees it.
pub(crate) struct AccessSpec {
    cell: u64,
    region: Part,
    write: bool,
    lock: Locker,
}

/// Read access to a whole cell inside a datadeps task (`In(&cell)`); a view of a cell
/// gives a [`PartRef`] instead.
pub struct Ref<T> {
    guard: ArcRwLockReadGuard<RawRwLock, T>,
    region: Part,
    _reg: Registration,
}

impl<T> std::ops::Deref for Ref<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.guard
    }
}

impl<T> Ref<T> {
    /// The part of the value this task declared it reads.
    pub fn region(&self) -> &Part {
        &self.region
    }
}

/// Write access to a whole cell inside a datadeps task (`Out(&cell)`, `InOut(&cell)`); a
/// view of a cell gives a [`PartMut`] instead, which reaches only that part.
pub struct RefMut<T> {
    guard: ArcRwLockWriteGuard<RawRwLock, T>,
    region: Part,
}

impl<T> std::ops::Deref for RefMut<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.guard
    }
}

impl<T> std::ops::DerefMut for RefMut<T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.guard
    }
}

impl<T> RefMut<T> {
    /// The part of the value this task declared it writes.
    pub fn region(&self) -> &Part {
        &self.region
    }
}

/// Read access (Dagger.jl's `In`): the task gets a [`Ref`] (or a [`PartRef`] of a view).
/// Readers of a cell run in parallel, after the writers spawned before them.
///
/// ```
/// use dagger::prelude::*;
///
/// let ctx = Context::builder().threads(2).build()?;
/// let x = Cell::new(vec![1, 2, 3]);
/// let sum = ctx.spawn_datadeps(|r| r.spawn(|x: Ref<Vec<i32>>| x.iter().sum::<i32>(), (In(&x),)))?;
/// assert_eq!(sum.fetch()?, 6);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct In<A>(pub A);
/// Write access; the task overwrites what it was given (Dagger.jl's `Out`): it gets a
/// [`RefMut`] (or a [`PartMut`] of a view) and runs after every earlier reader and writer
/// of what it writes.
///
/// ```
/// use dagger::prelude::*;
///
/// let ctx = Context::builder().threads(2).build()?;
/// let (src, dst) = (Cell::new(vec![1.0, 2.0]), Cell::new(vec![0.0; 2]));
/// ctx.spawn_datadeps(|r| {
///     r.spawn(|mut d: RefMut<Vec<f64>>, s: Ref<Vec<f64>>| d.copy_from_slice(&s), (Out(&dst), In(&src)));
/// })?;
/// assert_eq!(dst.get(), [1.0, 2.0]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Out<A>(pub A);
/// Read and write access (Dagger.jl's `InOut`): like [`Out`], for a task that also reads
/// what it writes. Views limit it to a part, so writers of disjoint parts run together.
///
/// ```
/// use dagger::prelude::*;
///
/// let ctx = Context::builder().threads(2).build()?;
/// let v = Cell::new(vec![1, 1, 1, 1]);
/// ctx.spawn_datadeps(|r| {
///     r.spawn(|mut v: RefMut<Vec<i32>>| v.iter_mut().for_each(|x| *x *= 3), (InOut(&v),));
///     // Two writers of disjoint rows: they do not wait for each other.
///     r.spawn(|mut top: PartMut<Vec<i32>>| top.fill(0), (InOut(v.rows(0..2)),));
///     r.spawn(|mut low: PartMut<Vec<i32>>| low.iter_mut().for_each(|x| *x += 1), (InOut(v.rows(2..4)),));
/// })?;
/// assert_eq!(v.get(), [0, 0, 4, 4]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct InOut<A>(pub A);

/// Something an access wrapper can take: a cell or a view of one.
pub trait AsView {
    /// The cell's value type.
    type Target;
    #[doc(hidden)]
    fn as_view(&self) -> (Cell<Self::Target>, Part);
}

impl<T> AsView for &Cell<T> {
    type Target = T;
    fn as_view(&self) -> (Cell<T>, Part) {
        ((*self).clone(), Part::Whole)
    }
}

impl<T> AsView for View<'_, T> {
    type Target = T;
    fn as_view(&self) -> (Cell<T>, Part) {
        (self.cell.clone(), self.region.clone())
    }
}

thread_local! {
    /// Guards taken (in cell order) for the task running on this thread.
    static GUARDS: std::cell::RefCell<Vec<Option<Box<dyn Any>>>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

#[doc(hidden)]
pub struct GuardGetter<G> {
    slot: usize,
    _g: PhantomData<fn() -> G>,
}

impl<G: 'static> ArgGetter for GuardGetter<G> {
    type Out = G;
    fn get(self, _: &[Value], arg: usize) -> Result<G, TaskFailure> {
        GUARDS
            .with(|g| g.borrow_mut().get_mut(self.slot).and_then(Option::take))
            .and_then(|b| b.downcast::<G>().ok())
            .map(|b| *b)
            .ok_or_else(|| {
                TaskFailure::msg(format!(
                    "argument {arg}: In/Out/InOut arguments only work in tasks spawned through a datadeps region"
                ))
            })
    }
}

fn register<T: Send + Sync + 'static, G: 'static>(
    deps: &mut Deps,
    (cell, region): (Cell<T>, Part),
    write: bool,
    make: fn(Arc<RwLock<T>>, Arc<PartTable>, Part) -> G,
) -> GuardGetter<G> {
    let slot = deps.accesses.len();
    let r = region.clone();
    deps.accesses.push(Box::new(AccessSpec {
        cell: cell.id,
        region,
        write,
        lock: Box::new(move || Box::new(make(cell.lock, cell.parts, r)) as Box<dyn Any>),
    }));
    GuardGetter {
        slot,
        _g: PhantomData,
    }
}

// A cell's lock is held by a task of another region (regions do not order their tasks
// against each other) that may itself be waiting for nested tasks. Waiting for the lock
// gives the worker's processor back, as a nested `fetch` does, so those nested tasks always
// find a processor; locks are taken in cell order, so lock waits never form a cycle.

fn read_guard<T>(l: Arc<RwLock<T>>, table: Arc<PartTable>, region: Part) -> Ref<T> {
    let guard = match l.try_read_arc() {
        Some(g) => g,
        None => crate::sched::blocking(|| l.read_arc()),
    };
    // Readers of the whole value wait for the writers of its parts.
    let _reg = table.acquire(Part::Whole, false);
    Ref {
        guard,
        region,
        _reg,
    }
}

fn write_guard<T>(l: Arc<RwLock<T>>, _: Arc<PartTable>, region: Part) -> RefMut<T> {
    let guard = match l.try_write_arc() {
        Some(g) => g,
        None => crate::sched::blocking(|| l.write_arc()),
    };
    RefMut { guard, region }
}

impl<T: Send + Sync + 'static> IntoArg for In<&Cell<T>> {
    type Out = Ref<T>;
    type Getter = GuardGetter<Ref<T>>;
    fn register(self, deps: &mut Deps) -> Self::Getter {
        register(deps, self.0.as_view(), false, read_guard)
    }
}

impl<T: Send + Sync + 'static> IntoArg for Out<&Cell<T>> {
    type Out = RefMut<T>;
    type Getter = GuardGetter<RefMut<T>>;
    fn register(self, deps: &mut Deps) -> Self::Getter {
        register(deps, self.0.as_view(), true, write_guard)
    }
}

impl<T: Send + Sync + 'static> IntoArg for InOut<&Cell<T>> {
    type Out = RefMut<T>;
    type Getter = GuardGetter<RefMut<T>>;
    fn register(self, deps: &mut Deps) -> Self::Getter {
        register(deps, self.0.as_view(), true, write_guard)
    }
}

impl<T: Partition> IntoArg for In<View<'_, T>> {
    type Out = PartRef<T>;
    type Getter = GuardGetter<PartRef<T>>;
    fn register(self, deps: &mut Deps) -> Self::Getter {
        register(deps, self.0.as_view(), false, parts::part_ref)
    }
}

impl<T: Partition> IntoArg for Out<View<'_, T>> {
    type Out = PartMut<T>;
    type Getter = GuardGetter<PartMut<T>>;
    fn register(self, deps: &mut Deps) -> Self::Getter {
        register(deps, self.0.as_view(), true, parts::part_mut)
    }
}

impl<T: Partition> IntoArg for InOut<View<'_, T>> {
    type Out = PartMut<T>;
    type Getter = GuardGetter<PartMut<T>>;
    fn register(self, deps: &mut Deps) -> Self::Getter {
        register(deps, self.0.as_view(), true, parts::part_mut)
    }
}

/// An earlier access of a cell. The task is held weakly: one that has not finished is
/// held by the scheduler (or by the tasks it waits for), and one that failed by the
/// region's [`RegionTasks`], so a task that is gone finished without error and orders
/// nothing any more; its value is not kept alive for the ordering's sake.
struct Past {
    region: Part,
    write: bool,
    task: Weak<TaskCore>,
}

/// The tasks spawned through a region, in submission order. A task that succeeds is
/// forgotten as it finishes, so the region holds neither it nor its value: a version that
/// no later task reads is freed while the region still runs, as it would be outside one.
/// A task that failed stays, for the region's error.
#[derive(Default)]
struct RegionTasks {
    slots: Arc<Mutex<Vec<Option<Arc<TaskCore>>>>>,
}

impl RegionTasks {
    fn push(&self, core: &Arc<TaskCore>) {
        let index = {
            let mut slots = self.slots.lock();
            slots.push(Some(core.clone()));
            slots.len() - 1
        };
        let slots = Arc::downgrade(&self.slots);
        core.on_done(Box::new(move |result| {
            if result.is_ok() {
                if let Some(slots) = slots.upgrade() {
                    // Taken out under the lock, dropped after it.
                    let finished = slots.lock()[index].take();
                    drop(finished);
                }
            }
        }));
    }

    /// How many tasks were spawned.
    fn len(&self) -> usize {
        self.slots.lock().len()
    }

    /// Task `index`, unless it finished without error.
    fn held(&self, index: usize) -> Option<Arc<TaskCore>> {
        self.slots.lock()[index].clone()
    }

    /// Tasks held (not known to have succeeded) that have not finished.
    fn unfinished(&self) -> usize {
        self.slots
            .lock()
            .iter()
            .flatten()
            .filter(|t| !t.is_done())
            .count()
    }

    /// The error of the first task, in submission order, that failed.
    fn first_failure(&self) -> Option<TaskError> {
        self.slots
            .lock()
            .iter()
            .flatten()
            .find_map(|t| t.result.get().and_then(|r| r.as_ref().err().cloned()))
    }
}

/// A datadeps region: tasks spawned through it are ordered by their accesses.
pub struct DataRegion<'c> {
    ctx: &'c Context,
    history: HashMap<u64, Vec<Past>>,
    /// The tasks spawned through the region, in submission order.
    tasks: RegionTasks,
    /// The region's own tasks (moving versions in and out of cells).
    internal: Vec<Arc<TaskCore>>,
    /// Values tracked by versions (see [`versions`]).
    versions: versions::Versions,
    /// Versions put back into their cells by check-in tasks.
    checked_in: versions::CheckedIn,
}

impl DataRegion<'_> {
    /// Adds to `deps` the unfinished earlier accesses of `key` that an access of `region`
    /// (writing or not) must follow.
    fn order_after(&mut self, deps: &mut Deps, key: u64, region: &Part, write: bool) {
        if let Some(hist) = self.history.get_mut(&key) {
            // Finished accesses order nothing any more, unless they failed: what they
            // should have written is missing, so later accesses fail too.
            hist.retain(|p| {
                p.task
                    .upgrade()
                    .is_some_and(|t| !matches!(t.result.get(), Some(Ok(_))))
            });
            for p in hist.iter() {
                if (write || p.write) && region.overlaps(&p.region) {
                    if let Some(t) = p.task.upgrade() {
                        deps.after.push(t);
                    }
                }
            }
        }
    }

    fn record(&mut self, key: u64, region: Part, write: bool, task: &Arc<TaskCore>) {
        let hist = self.history.entry(key).or_default();
        if write && region == Part::Whole {
            // The task was ordered after every earlier access of the cell (`order_after`
            // ran first), and every later access conflicts with it: ordering after it
            // orders after them too. Forgetting them lets their values go once they ran.
            hist.clear();
        }
        hist.push(Past {
            region,
            write,
            task: Arc::downgrade(task),
        });
    }

    /// Spawns `f(args...)` ordered after the earlier tasks whose accesses conflict with
    /// its own. Arguments are as for [`Context::spawn`], plus [`In`], [`Out`] and [`InOut`].
    #[track_caller]
    pub fn spawn<A, F, R>(&mut self, f: F, args: A) -> DTask<R>
    where
        A: TaskArgs,
        F: TaskFn<A::Outs, R>,
        R: Send + Sync + 'static,
    {
        self.spawn_with(Options::new(), f, args)
    }

    /// [`spawn`](Self::spawn) with options.
    #[track_caller]
    pub fn spawn_with<A, F, R>(&mut self, opts: Options, f: F, args: A) -> DTask<R>
    where
        A: TaskArgs,
        F: TaskFn<A::Outs, R>,
        R: Send + Sync + 'static,
    {
        self.spawn_inner(opts, f, args, |r: R| Ok(Value::new(r)))
    }

    /// Spawns a fallible function: an `Err` it returns fails the task, and the tasks after
    /// it that access what it writes, without a panic. The region's error is the first
    /// failure.
    ///
    /// ```
    /// use dagger::prelude::*;
    /// use dagger::{Cell, InOut, RefMut};
    /// let ctx = Context::builder().threads(1).build()?;
    /// let x = Cell::new(1u32);
    /// let err = ctx.spawn_datadeps(|r| {
    ///     r.try_spawn(|mut x: RefMut<u32>| x.checked_sub(2).map(|v| *x = v).ok_or("underflow"),
    ///                 (InOut(&x),));
    ///     r.spawn(|mut x: RefMut<u32>| *x += 10, (InOut(&x),));
    /// }).unwrap_err();
    /// assert!(err.to_string().contains("underflow"), "{err}");
    /// assert_eq!(x.get(), 1, "the task after it did not run");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[track_caller]
    pub fn try_spawn<A, F, R, E>(&mut self, f: F, args: A) -> DTask<R>
    where
        A: TaskArgs,
        F: TaskFn<A::Outs, Result<R, E>>,
        R: Send + Sync + 'static,
        E: Into<Box<dyn std::error::Error + Send + Sync>> + 'static,
    {
        self.try_spawn_with(Options::new(), f, args)
    }

    /// [`try_spawn`](Self::try_spawn) with options.
    #[track_caller]
    pub fn try_spawn_with<A, F, R, E>(&mut self, opts: Options, f: F, args: A) -> DTask<R>
    where
        A: TaskArgs,
        F: TaskFn<A::Outs, Result<R, E>>,
        R: Send + Sync + 'static,
        E: Into<Box<dyn std::error::Error + Send + Sync>> + 'static,
    {
        self.spawn_inner(opts, f, args, |r: Result<R, E>| {
            r.map(Value::new).map_err(|e| TaskFailure::Error(e.into()))
        })
    }

    #[track_caller]
    fn spawn_inner<A, F, O, R>(
        &mut self,
        opts: Options,
        f: F,
        args: A,
        finish: fn(O) -> Result<Value, TaskFailure>,
    ) -> DTask<R>
    where
        A: TaskArgs,
        F: TaskFn<A::Outs, O>,
        O: 'static,
        R: Send + Sync + 'static,
    {
        let fn_name = crate::sched::fn_or_call_site(
            std::any::type_name::<F>(),
            std::panic::Location::caller(),
        );
        let mut deps = Deps::default();
        let getters = args.register(&mut deps);
        let accesses: Vec<AccessSpec> = std::mem::take(&mut deps.accesses)
            .into_iter()
            .map(|a| {
                *a.downcast::<AccessSpec>()
                    .expect("region accesses are datadeps accesses")
            })
            .collect();
        // A task may not take one cell twice when one of the uses writes: it would lock it
        // against itself.
        for (i, a) in accesses.iter().enumerate() {
            if accesses[..i]
                .iter()
                .any(|b| b.cell == a.cell && (a.write || b.write))
            {
                let core = Arc::new(TaskCore::failed(
                    crate::sched::TaskName::Static(fn_name),
                    |task| TaskError::Failed {
                        task,
                        processor: "none".into(),
                        cause: Arc::from(Box::<dyn std::error::Error + Send + Sync>::from(
                            format!(
                            "arguments {} and {i} take the same cell and one of them writes it; \
                             pass it once, as InOut",
                            accesses.iter().position(|c| c.cell == a.cell).unwrap_or(0)
                        ),
                        )),
                    },
                ));
                self.tasks.push(&core);
                return DTask::from_core(core);
            }
        }
        // Cells whose latest version a kernel task made go back into the cell first.
        for a in &accesses {
            self.check_in(a.cell);
        }
        // Dependencies on earlier conflicting accesses.
        for a in &accesses {
            self.order_after(&mut deps, a.cell, &a.region, a.write);
        }
        let mut order: Vec<usize> = (0..accesses.len()).collect();
        order.sort_by_key(|&i| accesses[i].cell);
        let mut lockers: Vec<Option<Locker>> = Vec::new();
        let mut meta = Vec::new();
        for a in accesses {
            meta.push((a.cell, a.region, a.write));
            lockers.push(Some(a.lock));
        }
        let body: Body = Box::new(move |inputs: &mut [Value]| {
            // Take the locks in cell order, so tasks never wait on each other in a cycle.
            let mut slots: Vec<Option<Box<dyn Any>>> = (0..lockers.len()).map(|_| None).collect();
            for &i in &order {
                slots[i] = Some((lockers[i].take().expect("each lock is taken once"))());
            }
            let prev = GUARDS.with(|g| std::mem::replace(&mut *g.borrow_mut(), slots));
            let outs = A::get(getters, inputs);
            let leftover = GUARDS.with(|g| std::mem::replace(&mut *g.borrow_mut(), prev));
            drop(leftover);
            finish(f.call(outs?))
        });
        let core = self
            .ctx
            .submit(fn_name, std::any::TypeId::of::<F>(), opts, deps, body);
        for (cell, region, write) in meta {
            self.record(cell, region, write, &core);
        }
        self.tasks.push(&core);
        DTask::from_core(core)
    }
}

impl Context {
    /// Runs `f` with a datadeps region, waits for every task spawned through it, and
    /// returns `f`'s value — or the error of the first task (in submission order) that
    /// failed. The context stays usable either way.
    pub fn spawn_datadeps<R>(
        &self,
        f: impl FnOnce(&mut DataRegion<'_>) -> R,
    ) -> Result<R, TaskError> {
        self.run_region(f, None).map_err(|e| match e {
            RegionTimeoutError::Task(e) => e,
            RegionTimeoutError::TimedOut { .. } => unreachable!("no deadline"),
        })
    }

    /// [`spawn_datadeps`](Self::spawn_datadeps), waiting at most `timeout` for the
    /// region's tasks. When the time runs out the region's unfinished tasks carry on (the
    /// cells they access stay in use until they finish) and
    /// [`RegionTimeoutError::TimedOut`] says how many had not finished; cells whose latest
    /// value a kernel task made may then not hold it.
    ///
    /// ```
    /// use dagger::prelude::*;
    /// use dagger::{Cell, InOut, RefMut, RegionTimeoutError};
    /// use std::time::Duration;
    ///
    /// let ctx = Context::builder().threads(1).build()?;
    /// let x = Cell::new(0u32);
    /// let err = ctx
    ///     .spawn_datadeps_timeout(Duration::from_millis(20), |r| {
    ///         r.spawn(|mut x: RefMut<u32>| {
    ///             std::thread::sleep(Duration::from_millis(300));
    ///             *x += 1;
    ///         }, (InOut(&x),));
    ///     })
    ///     .unwrap_err();
    /// assert!(matches!(err, RegionTimeoutError::TimedOut { unfinished: 1, .. }), "{err}");
    /// assert!(err.to_string().contains("timed out"));
    /// ctx.spawn_datadeps_timeout(Duration::from_secs(30), |r| {
    ///     r.spawn(|mut x: RefMut<u32>| *x += 1, (InOut(&x),));
    /// })?;
    /// assert_eq!(x.get(), 2);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn spawn_datadeps_timeout<R>(
        &self,
        timeout: std::time::Duration,
        f: impl FnOnce(&mut DataRegion<'_>) -> R,
    ) -> Result<R, RegionTimeoutError> {
        self.run_region(f, Some((std::time::Instant::now() + timeout, timeout)))
    }

    fn run_region<R>(
        &self,
        f: impl FnOnce(&mut DataRegion<'_>) -> R,
        deadline: Option<(std::time::Instant, std::time::Duration)>,
    ) -> Result<R, RegionTimeoutError> {
        let mut region = DataRegion {
            ctx: self,
            history: HashMap::new(),
            tasks: RegionTasks::default(),
            internal: Vec::new(),
            versions: Default::default(),
            checked_in: Vec::new(),
        };
        let out = f(&mut region);
        let until = deadline.map(|d| d.0);
        // One task at a time, so that the wait itself keeps no finished task's value.
        let spawned = region.tasks.len();
        let waits = (0..spawned)
            .filter_map(|i| region.tasks.held(i))
            .chain(region.internal.iter().cloned());
        for t in waits {
            if !crate::sched::block_on_until(&t, until) {
                let unfinished = region.tasks.unfinished()
                    + region.internal.iter().filter(|t| !t.is_done()).count();
                return Err(RegionTimeoutError::TimedOut {
                    waited: deadline.map(|d| d.1).unwrap_or_default(),
                    unfinished,
                    total: spawned + region.internal.len(),
                });
            }
        }
        let mut first = region.tasks.first_failure();
        if let Err(e) = region.restore_cells() {
            // Values lost with a device say more than the first task failure, which they
            // carry as their source; otherwise the first failure is the region's error.
            let lost = e.restored_cells().is_some_and(|c| c.lost_data());
            if lost || first.is_none() {
                first = Some(e);
            }
        }
        match first {
            Some(e) => Err(RegionTimeoutError::Task(e)),
            None => Ok(out),
        }
    }
}

/// Why [`Context::spawn_datadeps_timeout`] returned no value.
///
/// ```
/// use dagger::prelude::*;
/// use dagger::RegionTimeoutError;
/// use std::time::Duration;
///
/// let ctx = Context::builder().threads(1).build()?;
/// let x = Cell::new(0);
/// let err = ctx
///     .spawn_datadeps_timeout(Duration::from_secs(10), |r| {
///         r.try_spawn(|_: Ref<i32>| Err::<(), _>("no input file"), (In(&x),));
///     })
///     .unwrap_err();
/// // Not a timeout: the region's task failed, and the error says which and why.
/// assert!(matches!(&err, RegionTimeoutError::Task(_)));
/// assert!(err.to_string().contains("no input file"), "{err}");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RegionTimeoutError {
    /// Some of the region's tasks had not finished when the time ran out; they carry on.
    #[error(
        "datadeps region timed out after {waited:?}: {unfinished} of its {total} tasks had \
         not finished"
    )]
    TimedOut {
        /// How long the caller waited.
        waited: std::time::Duration,
        /// The region's tasks that had not finished.
        unfinished: usize,
        /// The region's tasks.
        total: usize,
    },
    /// A task of the region failed (the first in submission order).
    #[error(transparent)]
    Task(#[from] TaskError),
}

#[cfg(test)]
mod order_tests {
    use std::any::TypeId;

    use crate::processor::Body;
    use crate::task::args::{Dep, Deps};
    use crate::task::DTask;
    use crate::value::Value;

    /// A task that only waits for another (a datadeps writer after a reader: the
    /// scheduler's `forget_finished_order`) lets go of it once it finished, so the value
    /// that task made can be taken over in place by the task that reads it last, even while
    /// the waiting task still waits for something else.
    #[test]
    fn a_finished_task_waited_for_only_is_let_go_of() {
        let ctx = crate::Context::builder().threads(2).build().unwrap();
        let submit = |name, deps: Deps, f: Body| {
            ctx.submit_kernel(
                name,
                TypeId::of::<()>(),
                crate::Options::new(),
                deps,
                Some(f),
                None,
            )
        };
        let made = submit(
            "made",
            Deps::default(),
            Box::new(|_: &mut [Value]| Ok(Value::new(vec![7u8; 64]))),
        );
        let (open, gate) = crossbeam_channel::bounded::<()>(0);
        let gate_task = submit(
            "gate",
            Deps::default(),
            Box::new(move |_: &mut [Value]| {
                let _ = gate.recv();
                Ok(Value::new(()))
            }),
        );
        // Waits for `made` without taking its value, and for the gate.
        let mut deps = Deps::default();
        deps.list.push(Dep::Task(gate_task.clone()));
        deps.after.push(made.clone());
        let waiting = submit(
            "waiting",
            deps,
            Box::new(|_: &mut [Value]| Ok(Value::new(()))),
        );
        // Takes `made`'s value: in place when no one else holds it.
        let mut deps = Deps::default();
        deps.list.push(Dep::Task(made.clone()));
        let taker = submit(
            "taker",
            deps,
            Box::new(|inputs: &mut [Value]| {
                Ok(Value::new(inputs[0].get_mut::<Vec<u8>>().is_some()))
            }),
        );
        drop(made);
        let in_place = DTask::<bool>::from_core(taker).fetch().unwrap();
        open.send(()).unwrap();
        DTask::<()>::from_core(waiting).fetch().unwrap();
        drop(gate_task);
        assert!(in_place, "the waiting task still held the finished one");
    }
}
