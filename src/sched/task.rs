//! The task record: a task's shared state (dependencies, status, result, waiters) and the
//! work it carries until it runs. Handles ([`DTask`](crate::DTask)) are thin wrappers over
//! it.

use std::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use parking_lot::{Condvar, Mutex};
use smallvec::SmallVec;

use super::place::CostKey;
use super::{Candidates, Job};
use crate::chunk::Data;
use crate::error::{TaskError, TaskLabel};
use crate::kernel::KernelCall;
use crate::options::Options;
use crate::processor::Body;

static NEXT_TASK_ID: AtomicU64 = AtomicU64::new(1);

#[inline]
pub(crate) fn next_task_id() -> u64 {
    NEXT_TASK_ID.fetch_add(1, Ordering::Relaxed)
}

/// A task's name: its function's path unless one was given.
#[derive(Clone, Debug)]
pub(crate) enum TaskName {
    Static(&'static str),
    Shared(Arc<str>),
}

impl TaskName {
    #[inline]
    pub(crate) fn as_str(&self) -> &str {
        match self {
            TaskName::Static(s) => short_fn_name(s),
            TaskName::Shared(s) => s,
        }
    }
}

impl std::fmt::Display for TaskName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The name a task gets when it is not given one: its function's path for a function
/// item (`add1`), and for a closure — whose type name says only `main::{{closure}}` — the
/// place it was spawned from, `src/main.rs:12`. Each call site's name is made once per
/// thread.
pub(crate) fn fn_or_call_site(
    type_name: &'static str,
    at: &'static std::panic::Location<'static>,
) -> &'static str {
    thread_local! {
        static NAMES: std::cell::RefCell<std::collections::HashMap<(usize, usize), &'static str>> =
            Default::default();
    }
    let key = (type_name.as_ptr() as usize, at as *const _ as usize);
    NAMES.with(|names| {
        *names.borrow_mut().entry(key).or_insert_with(|| {
            if type_name.contains("{{closure}}") {
                Box::leak(format!("{}:{}", at.file(), at.line()).into_boxed_str())
            } else {
                type_name
            }
        })
    })
}

/// `my_crate::module::add1` → `add1`; closures keep their enclosing function:
/// `my_crate::main::{{closure}}` → `main::{{closure}}`.
fn short_fn_name(path: &'static str) -> &'static str {
    let bytes = path.as_bytes();
    let mut cut = 0;
    let mut depth = 0usize;
    let mut segments = 0;
    let mut i = bytes.len();
    while i > 0 {
        i -= 1;
        match bytes[i] {
            b'>' => depth += 1,
            b'<' => depth = depth.saturating_sub(1),
            b':' if depth == 0 && i > 0 && bytes[i - 1] == b':' => {
                let seg = &path[i + 1..];
                segments += 1;
                let closure = seg.starts_with("{{closure}}");
                if !closure || segments > 2 {
                    cut = i + 1;
                    if !closure {
                        break;
                    }
                }
                i -= 1;
            }
            _ => {}
        }
    }
    &path[cut..]
}

pub(crate) const PENDING: u8 = 0;
pub(crate) const QUEUED: u8 = 1;
pub(crate) const RUNNING: u8 = 2;
pub(crate) const DONE: u8 = 3;
const STATUS: u8 = 0b11;
const WAITERS: u8 = 0b100;

/// What a task needs in order to run; taken out when it runs.
pub(crate) struct Work {
    pub(crate) body: Body,
    /// The task's arguments (the first `n_args`), then tasks it only waits for.
    pub(crate) inputs: SmallVec<[Input; 2]>,
    /// How many of `inputs` are arguments, moved to the processor and passed to the body.
    pub(crate) n_args: usize,
    pub(crate) opts: Option<Arc<Options>>,
    pub(crate) candidates: Candidates,
    pub(crate) fn_name: &'static str,
    /// Whether `body` is real host code (a closure, or a kernel's CPU implementation).
    pub(crate) host: bool,
    /// The kernel, for a kernel task.
    pub(crate) kernel: Option<Arc<KernelCall>>,
    /// Whether the task can run in another process (see `TaskInfo::is_portable`).
    pub(crate) portable: bool,
    /// What run time is learned under, for tasks placed by cost.
    pub(crate) cost_key: Option<CostKey>,
    /// The time hint, in ns (0 when none).
    pub(crate) time_hint_ns: u64,
    /// The run time estimated when the task was placed.
    pub(crate) placed_est_ns: Option<u64>,
}

/// A resolved dependency of a task.
pub(crate) enum Input {
    Task(Arc<TaskCore>),
    Data(Data),
}

impl Input {
    /// The error of a failed input, without touching its value.
    #[inline]
    pub(crate) fn error(&self) -> Option<&TaskError> {
        match self {
            Input::Task(t) => t.result.get().and_then(|r| r.as_ref().err()),
            Input::Data(_) => None,
        }
    }

    /// The input's value, when it succeeded, without cloning it.
    #[inline]
    pub(crate) fn data_ref(&self) -> Option<&Data> {
        match self {
            Input::Task(t) => t.result.get().and_then(|r| r.as_ref().ok()),
            Input::Data(d) => Some(d),
        }
    }

    #[inline]
    pub(crate) fn data(&self) -> Result<Data, &TaskError> {
        match self {
            Input::Task(t) => match t.result.get() {
                Some(Ok(d)) => Ok(d.clone()),
                Some(Err(e)) => Err(e),
                None => unreachable!("a task ran before its input finished"),
            },
            Input::Data(d) => Ok(d.clone()),
        }
    }
}

/// Called once with a task's result when it finishes.
pub(crate) type OnDone = Box<dyn FnOnce(&Result<Data, TaskError>) + Send>;

struct Links {
    done: bool,
    dependents: SmallVec<[Arc<TaskCore>; 2]>,
    /// Told the result when the task finishes (a process serving another's tasks reports
    /// them so; a datadeps region forgets a task that succeeded).
    on_done: SmallVec<[OnDone; 1]>,
}

/// The shared state of one task.
pub(crate) struct TaskCore {
    pub(crate) id: u64,
    pub(crate) name: TaskName,
    /// Fraction of a processor in 1/1024ths.
    pub(crate) occupancy: u32,
    state: AtomicU8,
    /// Unfinished inputs, plus one while the task is being created.
    pending: AtomicU32,
    links: Mutex<Links>,
    pub(crate) work: Mutex<Option<Work>>,
    pub(crate) result: OnceLock<Result<Data, TaskError>>,
    /// Index of the processor that ran the task (`u32::MAX` until it runs).
    pub(crate) ran_on: AtomicU32,
    /// The address of the runtime it was submitted to (0 before).
    owner: AtomicUsize,
    /// Taken before other ready tasks ([`Priority::High`](crate::Priority::High)).
    pub(crate) high: bool,
}

/// Stripes of mutex and condition variable that waiters on tasks sleep on.
struct WaitStripe {
    lock: Mutex<()>,
    cv: Condvar,
}

fn stripe(addr: usize) -> &'static WaitStripe {
    static STRIPES: OnceLock<Vec<WaitStripe>> = OnceLock::new();
    let s = STRIPES.get_or_init(|| {
        (0..64)
            .map(|_| WaitStripe {
                lock: Mutex::new(()),
                cv: Condvar::new(),
            })
            .collect()
    });
    &s[(addr >> 6) % s.len()]
}

pub(crate) const FULL_OCCUPANCY: u32 = 1024;

impl TaskCore {
    pub(crate) fn new(name: TaskName, occupancy: u32, work: Work) -> Self {
        TaskCore {
            id: next_task_id(),
            name,
            occupancy,
            state: AtomicU8::new(PENDING),
            pending: AtomicU32::new(1),
            links: Mutex::new(Links {
                done: false,
                dependents: SmallVec::new(),
                on_done: SmallVec::new(),
            }),
            work: Mutex::new(Some(work)),
            result: OnceLock::new(),
            ran_on: AtomicU32::new(u32::MAX),
            owner: AtomicUsize::new(0),
            high: false,
        }
    }

    /// The task, taken before ready tasks of normal priority when `high`.
    pub(crate) fn high_priority(mut self, high: bool) -> Self {
        self.high = high;
        self
    }

    /// A task that failed before it could be created properly.
    pub(crate) fn failed(name: TaskName, make_err: impl FnOnce(TaskLabel) -> TaskError) -> Self {
        let t = TaskCore {
            id: next_task_id(),
            name,
            occupancy: FULL_OCCUPANCY,
            state: AtomicU8::new(DONE),
            pending: AtomicU32::new(0),
            links: Mutex::new(Links {
                done: true,
                dependents: SmallVec::new(),
                on_done: SmallVec::new(),
            }),
            work: Mutex::new(None),
            result: OnceLock::new(),
            ran_on: AtomicU32::new(u32::MAX),
            owner: AtomicUsize::new(0),
            high: false,
        };
        let _ = t.result.set(Err(make_err(t.label())));
        t
    }

    pub(crate) fn label(&self) -> TaskLabel {
        TaskLabel {
            id: self.id,
            name: self.name.as_str().into(),
        }
    }

    #[inline]
    pub(super) fn set_owner(&self, rt: &super::Runtime) {
        self.owner
            .store(rt as *const super::Runtime as usize, Ordering::Release);
    }

    #[inline]
    pub(super) fn owner(&self) -> usize {
        self.owner.load(Ordering::Acquire)
    }

    #[inline]
    pub(crate) fn status(&self) -> u8 {
        self.state.load(Ordering::Acquire) & STATUS
    }

    #[inline]
    pub(crate) fn is_done(&self) -> bool {
        self.status() == DONE
    }

    /// Registers `dependent` to be told when this task finishes. Returns false if it has
    /// finished already (the dependency is then satisfied).
    pub(crate) fn add_dependent(&self, dependent: &Arc<TaskCore>) -> bool {
        let mut l = self.links.lock();
        if l.done {
            return false;
        }
        dependent.pending.fetch_add(1, Ordering::Relaxed);
        l.dependents.push(dependent.clone());
        true
    }

    /// Drops one pending count; true if the task has become ready.
    #[inline]
    pub(crate) fn release_one(&self) -> bool {
        self.pending.fetch_sub(1, Ordering::AcqRel) == 1
    }

    /// Moves a ready task to queued; false if it was cancelled meanwhile.
    #[inline]
    pub(crate) fn mark_queued(&self) -> bool {
        self.state
            .compare_exchange(PENDING, QUEUED, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
            || self
                .state
                .compare_exchange(
                    PENDING | WAITERS,
                    QUEUED | WAITERS,
                    Ordering::AcqRel,
                    Ordering::Acquire,
                )
                .is_ok()
    }

    /// Moves the status from one that `from` accepts to `to`, keeping the other bits (the
    /// waiters flag); false if the status was not accepted.
    #[inline]
    fn transition(&self, from: impl Fn(u8) -> bool, to: u8) -> bool {
        let mut cur = self.state.load(Ordering::Acquire);
        loop {
            if !from(cur & STATUS) {
                return false;
            }
            match self.state.compare_exchange_weak(
                cur,
                (cur & !STATUS) | to,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return true,
                Err(c) => cur = c,
            }
        }
    }

    /// Claims a queued task for running; false if it was cancelled.
    #[inline]
    pub(crate) fn claim(&self) -> bool {
        self.transition(|s| s == QUEUED, RUNNING)
    }

    /// Gives a claimed task that has not started back to placement (its processor became
    /// unavailable first). False if it was not claimed.
    pub(crate) fn unclaim(&self) -> bool {
        self.transition(|s| s == RUNNING, PENDING)
    }

    /// Claims a task that has not started, for cancellation.
    fn claim_for_cancel(&self) -> bool {
        self.transition(|s| s == PENDING || s == QUEUED, RUNNING)
    }

    /// Records the result, wakes waiters, and returns the dependents to notify.
    pub(crate) fn finish(&self, result: Result<Data, TaskError>) -> SmallVec<[Arc<TaskCore>; 2]> {
        let _ = self.result.set(result);
        let (deps, on_done) = {
            let mut l = self.links.lock();
            l.done = true;
            (
                std::mem::take(&mut l.dependents),
                std::mem::take(&mut l.on_done),
            )
        };
        let old = self.state.fetch_or(DONE, Ordering::AcqRel);
        if old & WAITERS != 0 {
            let s = stripe(self as *const _ as usize);
            let _g = s.lock.lock();
            s.cv.notify_all();
        }
        if let Some(r) = self.result.get() {
            for f in on_done {
                f(r);
            }
        }
        deps
    }

    /// Calls `f` with the task's result when it finishes (at once if it has), after the
    /// callbacks registered before it.
    pub(crate) fn on_done(&self, f: OnDone) {
        {
            let mut l = self.links.lock();
            if !l.done {
                l.on_done.push(f);
                return;
            }
        }
        if let Some(r) = self.result.get() {
            f(r);
        }
    }

    /// Blocks the calling thread until the task is done (without giving back a worker slot;
    /// see `sched::block_on`).
    pub(crate) fn wait_done_raw(&self) {
        if self.is_done() {
            return;
        }
        let s = stripe(self as *const _ as usize);
        let mut g = s.lock.lock();
        loop {
            let old = self.state.fetch_or(WAITERS, Ordering::AcqRel);
            if old & STATUS == DONE {
                return;
            }
            s.cv.wait(&mut g);
        }
    }

    /// [`wait_done_raw`](Self::wait_done_raw) until `deadline` (forever if `None`);
    /// returns whether the task is done.
    pub(crate) fn wait_done_until(&self, deadline: Option<Instant>) -> bool {
        let Some(deadline) = deadline else {
            self.wait_done_raw();
            return true;
        };
        if self.is_done() {
            return true;
        }
        let s = stripe(self as *const _ as usize);
        let mut g = s.lock.lock();
        loop {
            let old = self.state.fetch_or(WAITERS, Ordering::AcqRel);
            if old & STATUS == DONE {
                return true;
            }
            if s.cv.wait_until(&mut g, deadline).timed_out() {
                return self.is_done();
            }
        }
    }

    pub(crate) fn cancel(&self) -> bool {
        if !self.claim_for_cancel() {
            return false;
        }
        self.work.lock().take();
        let err = TaskError::Cancelled { task: self.label() };
        complete_detached(self, Err(err));
        true
    }
}

/// Drops long chains of tasks without recursing.
impl Drop for TaskCore {
    fn drop(&mut self) {
        let mut stack: Vec<Arc<TaskCore>> = Vec::new();
        fn harvest(w: Option<Work>, stack: &mut Vec<Arc<TaskCore>>) {
            if let Some(w) = w {
                for i in w.inputs {
                    if let Input::Task(t) = i {
                        stack.push(t);
                    }
                }
            }
        }
        harvest(self.work.get_mut().take(), &mut stack);
        stack.extend(self.links.get_mut().dependents.drain(..));
        while let Some(t) = stack.pop() {
            if let Ok(mut inner) = Arc::try_unwrap(t) {
                harvest(inner.work.get_mut().take(), &mut stack);
                stack.extend(inner.links.get_mut().dependents.drain(..));
            }
        }
    }
}

/// Completes a task outside any worker (cancellation): its dependents can only fail.
pub(crate) fn complete_detached(task: &TaskCore, result: Result<Data, TaskError>) {
    let mut stack: Vec<(Job, TaskError)> = Vec::new();
    let release = |deps: SmallVec<[Job; 2]>, stack: &mut Vec<(Job, TaskError)>, err: &TaskError| {
        for d in deps {
            if d.release_one() {
                d.work.lock().take();
                if d.mark_queued() {
                    let e = err.upstream(d.label());
                    stack.push((d, e));
                }
            }
        }
    };
    let err = result.as_ref().err().cloned();
    let deps = task.finish(result);
    if let Some(err) = err {
        release(deps, &mut stack, &err);
    }
    while let Some((t, e)) = stack.pop() {
        let deps = t.finish(Err(e.clone()));
        release(deps, &mut stack, &e);
    }
}
