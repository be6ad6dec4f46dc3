//! The scheduler: the task record, ready queues per processor, worker threads, placement
//! and execution, one concept per file:
//!
//! - [`task`]: a task's shared state and the work it carries until it runs.
//! - [`queue`]: the queues and capacity of one processor.
//! - [`worker`]: worker threads, sleeping, and giving a processor back in a nested wait.
//! - [`place`]: candidate processors of a task and the cost model that picks one.
//! - [`exec`]: moving inputs and running a task on a thread, or launching it on any other
//!   processor through the [`Processor`] trait (the device interface).
//!
//! Devices are reached only through that trait: adding a processor kind touches nothing here.
//!
//! - Each task holds an atomic count of unfinished inputs; finishing a task decrements its
//!   dependents and makes the ones that reach zero ready — no global lock, no recursion.
//! - A ready task whose candidates are all the CPU threads goes to a thread's shared queue
//!   (its own when spawned from a worker, round-robin otherwise) and idle threads steal from
//!   each other's shared queues. A task restricted to some processors goes to the pinned
//!   queue of the candidate with the earliest estimated finish.
//! - Each processor has a capacity (1024 units per task slot); a task takes its occupancy.
//!   A task blocked in `fetch` gives its units back and, if it was its processor's primary
//!   thread, hands that role to a spare thread, so nested waiting never deadlocks.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use crossbeam_channel::{Receiver, Sender};
use smallvec::SmallVec;

use crate::chunk::Data;
use crate::error::TaskError;
use crate::log::Logger;
use crate::processor::{MemorySpace, Processor, ProcessorId, ProcessorKind};
use crate::scope::ProcSet;
use crate::storage::Store;

mod exec;
mod place;
pub(crate) mod progress;
mod queue;
mod task;
pub(crate) mod task_queue;
mod waitpoll;
mod worker;

pub(crate) use place::{resolve_candidates, CostKey, TaskKind, THREAD_PRIOR_GFLOPS};
pub(crate) use task::{fn_or_call_site, Input, TaskCore, TaskName, Work, FULL_OCCUPANCY};
pub(crate) use waitpoll::WaitPoll;
pub(crate) use worker::{block_on, block_on_until, blocking};

use place::CostModel;
use queue::Slot;
use worker::Role;

pub(crate) type Job = Arc<TaskCore>;

/// Where a ready task may go.
#[derive(Clone, Debug)]
pub(crate) enum Candidates {
    /// Every CPU worker thread, and nothing else: shared queues with stealing.
    AllThreads,
    /// Exactly these processors.
    Set(Box<ProcSet>),
}

/// How the scheduler drives a processor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Exec {
    /// Runs nothing (the process).
    None,
    /// A CPU worker thread.
    Thread,
    /// Any other processor (a GPU, a user's device or processor), driven through the
    /// `Processor` trait from its own worker thread; it may complete asynchronously.
    Device,
}

/// A processor as the runtime keeps it.
pub(crate) struct ProcEntry {
    pub(crate) id: ProcessorId,
    pub(crate) kind: ProcessorKind,
    pub(crate) proc: Arc<dyn Processor>,
    pub(crate) exec: Exec,
    pub(crate) description: String,
    pub(crate) default_enabled: bool,
    pub(crate) space: MemorySpace,
    pub(crate) parent: Option<ProcessorId>,
    pub(crate) thread: Option<usize>,
    pub(crate) gpu: Option<usize>,
    pub(crate) backend: Option<String>,
    pub(crate) capacity: u32,
    /// Throughput assumed before run times are measured, in GFLOP/s.
    pub(crate) prior_gflops: f64,
    /// Whether tasks are launched by the threads that make them ready or give the
    /// processor's room back, rather than by a thread of its own: a processor whose launch
    /// only hands the task on (to another rank), so a wake-up of a thread of its own would
    /// cost more than the launch. Its thread only looks at the queue now and then.
    pub(crate) launch_inline: bool,
}

impl ProcEntry {
    /// Whether the processor takes tasks ([`Processor::is_available`]). One whose check
    /// panics is taken as unavailable: the panic would otherwise unwind through placement
    /// on whichever thread asked.
    pub(crate) fn available(&self) -> bool {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.proc.is_available()))
            .unwrap_or_else(|p| {
                crate::processor::drop_payload(p);
                false
            })
    }

    pub(crate) fn view(&self) -> crate::scope::ProcView<'_> {
        crate::scope::ProcView {
            id: self.id,
            kind: self.kind,
            default_enabled: self.default_enabled,
            thread: self.thread,
            gpu: self.gpu,
            backend: self.backend.as_deref(),
        }
    }
}

/// The scheduler state of a context.
pub(crate) struct Runtime {
    pub(crate) procs: Vec<ProcEntry>,
    slots: Vec<Slot>,
    pub(crate) thread_slots: Vec<usize>,
    pub(crate) thread_set: ProcSet,
    /// Whether every default-enabled processor able to run closures is a thread.
    pub(crate) default_closure_all_threads: bool,
    pub(crate) log: Logger,
    pub(crate) progress: progress::Progress,
    cost: CostModel,
    roles_tx: Sender<Role>,
    roles_rx: Receiver<Role>,
    idle_spares: AtomicUsize,
    /// Worker threads alive, primaries included.
    live_threads: AtomicUsize,
    /// Primary threads started with the runtime.
    base_threads: usize,
    /// How many threads beyond the primaries nested waits may keep.
    spare_limit: AtomicUsize,
    total_sleepers: AtomicUsize,
    /// Rounds an idle thread looks for work before it sleeps.
    spin_rounds: AtomicU32,
    shutdown: AtomicBool,
    /// Processors taken out of service while running (by slot): they finish what they run
    /// and take nothing new.
    disabled: Vec<AtomicBool>,
    /// How many are.
    disabled_count: AtomicUsize,
    pub(crate) epoch: Instant,
    /// Host memory under the context's limit.
    pub(crate) store: Arc<Store>,
}

/// Outcome of checking a task that became ready.
enum Prep {
    Enqueue { slot: usize, shared: bool },
    Fail(TaskError),
    Skip,
}

impl Drop for Runtime {
    fn drop(&mut self) {
        self.unset_wait_poll();
    }
}

impl Runtime {
    /// Whether an idle CPU thread spins a moment, looking for work, before it sleeps (the
    /// default). Spinning saves a wake-up when the next task comes soon, but where another
    /// thread of the process polls for messages on the same cores (a rank under MPI),
    /// spinning threads take turns with it and delay every message.
    pub(crate) fn set_spin(&self, spin: bool) {
        let rounds = if spin { worker::SPIN_ROUNDS } else { 0 };
        self.spin_rounds.store(rounds, Ordering::Relaxed);
    }

    pub(crate) fn new(procs: Vec<ProcEntry>, store: Arc<Store>) -> Arc<Runtime> {
        let mut thread_set = ProcSet::default();
        let mut default_set = ProcSet::default();
        let mut any_set = ProcSet::default();
        let mut thread_slots = Vec::new();
        let mut default_closure_all_threads = true;
        for (i, p) in procs.iter().enumerate() {
            if p.exec == Exec::Thread {
                thread_set.insert(i);
                thread_slots.push(i);
            }
            if p.default_enabled {
                default_set.insert(i);
                if p.exec == Exec::Device && p.proc.is_compatible(&closure_probe()) {
                    default_closure_all_threads = false;
                }
            }
            if p.kind != ProcessorKind::Os {
                any_set.insert(i);
            }
        }
        let slots = procs
            .iter()
            .map(|p| Slot::new(p.capacity * FULL_OCCUPANCY))
            .collect();
        let (roles_tx, roles_rx) = crossbeam_channel::unbounded();
        let procs_with_threads = procs.iter().filter(|p| p.exec != Exec::None).count();
        let n_procs = procs.len();
        let rt = Arc::new(Runtime {
            procs,
            slots,
            thread_slots,
            thread_set,
            default_closure_all_threads,
            log: Logger::default(),
            progress: progress::Progress::default(),
            cost: CostModel::default(),
            roles_tx,
            roles_rx,
            idle_spares: AtomicUsize::new(0),
            live_threads: AtomicUsize::new(0),
            base_threads: procs_with_threads,
            spare_limit: AtomicUsize::new(usize::MAX),
            total_sleepers: AtomicUsize::new(0),
            spin_rounds: AtomicU32::new(worker::SPIN_ROUNDS),
            shutdown: AtomicBool::new(false),
            disabled: (0..n_procs).map(|_| AtomicBool::new(false)).collect(),
            disabled_count: AtomicUsize::new(0),
            epoch: Instant::now(),
            store,
        });
        let weak = Arc::downgrade(&rt);
        rt.store.set_recorder(Box::new(move |r| {
            if let Some(rt) = weak.upgrade() {
                rt.record_io(r);
            }
        }));
        for (i, p) in rt.procs.iter().enumerate() {
            if p.exec != Exec::None {
                if let Err((_, why)) = rt.spawn_thread(Role::Primary(i)) {
                    panic!("{why}");
                }
            }
        }
        rt
    }

    /// How many threads beyond the primaries nested waits may keep (`None`: no limit).
    pub(crate) fn set_spare_limit(&self, limit: Option<usize>) {
        self.spare_limit
            .store(limit.unwrap_or(usize::MAX), Ordering::Release);
    }

    /// Whether processor slot `s` takes new tasks.
    #[inline]
    pub(crate) fn is_enabled(&self, s: usize) -> bool {
        self.disabled_count.load(Ordering::Acquire) == 0
            || !self.disabled[s].load(Ordering::Acquire)
    }

    /// Takes processor slot `s` out of service or puts it back. Tasks running there finish;
    /// while disabled it takes no new task, and tasks that can run only there wait.
    /// Returns whether the state changed.
    pub(crate) fn set_enabled(&self, s: usize, on: bool) -> bool {
        let changed = self.disabled[s].swap(!on, Ordering::AcqRel) == on;
        if changed {
            if on {
                self.disabled_count.fetch_sub(1, Ordering::AcqRel);
                let slot = &self.slots[s];
                let _g = slot.sleep_lock.lock();
                slot.sleep_cv.notify_all();
            } else {
                self.disabled_count.fetch_add(1, Ordering::AcqRel);
                // Its shared queue is for the other threads to steal now.
                for &t in &self.thread_slots {
                    if t != s {
                        self.wake_for(t, false);
                    }
                }
            }
        }
        changed
    }

    /// Whether `task` was submitted to this runtime.
    pub(crate) fn owns(&self, task: &TaskCore) -> bool {
        task.owner() == self as *const Runtime as usize
    }

    pub(crate) fn now_ns(&self) -> u64 {
        self.epoch.elapsed().as_nanos() as u64
    }

    /// Logs a spill or a reload, on the processor of the worker that did it (the process
    /// when it was another thread), or a GPU eviction, on the GPU's processor.
    fn record_io(&self, r: crate::storage::IoRecord) {
        if !self.log.enabled() {
            return;
        }
        let local = || {
            worker::local()
                .filter(|l| std::ptr::eq(Arc::as_ptr(&l.rt), self))
                .map_or(self.procs[0].id, |l| self.procs[l.slot.get()].id)
        };
        use crate::log::EventKind;
        use crate::storage::IoKind;
        let (kind, processor) = match r.kind {
            IoKind::Spill => (EventKind::Spill, local()),
            IoKind::Reload => (EventKind::Reload, local()),
            // On the GPU's lane, whichever thread evicted.
            IoKind::GpuEvict(device) => (
                EventKind::GpuEvict,
                self.procs
                    .iter()
                    .find(|p| p.gpu == Some(device) && p.id.process() == self.procs[0].id.process())
                    .map_or_else(local, |p| p.id),
            ),
        };
        let ns = |t: Instant| t.saturating_duration_since(self.epoch).as_nanos() as u64;
        self.log.record(crate::log::LogEvent {
            kind,
            task: 0,
            name: r.type_name.into(),
            processor,
            start_ns: ns(r.start),
            end_ns: ns(r.end),
            bytes_moved: r.bytes,
            inputs: Vec::new(),
            ok: true,
        });
    }

    // ----- submission -------------------------------------------------------------------

    /// Registers a freshly created task on its inputs and enqueues it if it is ready.
    pub(crate) fn submit(self: &Arc<Self>, task: &Job) {
        task.set_owner(self);
        self.progress.spawned();
        self.route(task);
    }

    /// Registers `task` unless an open bulk queue of this thread keeps it for later.
    pub(crate) fn route(self: &Arc<Self>, task: &Job) {
        if Runtime::queues_open() && !self.through_queues(task) {
            return;
        }
        self.register(task);
    }

    /// Registers a task a bulk queue kept, on its inputs, and enqueues it if it is ready.
    pub(crate) fn register(self: &Arc<Self>, task: &Job) {
        let removed: SmallVec<[Input; 2]> = {
            let mut w = task.work.lock();
            let mut removed = SmallVec::new();
            if let Some(w) = w.as_mut() {
                for i in &w.inputs {
                    if let Input::Task(t) = i {
                        t.add_dependent(task);
                    }
                }
                // Tasks it only runs after that already finished without error are let go
                // of now, as `forget_finished_order` does for those that finish later:
                // held, they would keep their results alive until this task runs.
                let mut i = w.n_args;
                while i < w.inputs.len() {
                    if matches!(w.inputs[i], Input::Task(_)) && w.inputs[i].data_ref().is_some() {
                        removed.push(w.inputs.swap_remove(i));
                    } else {
                        i += 1;
                    }
                }
            }
            removed
        };
        exec::drop_quietly(removed);
        if task.release_one() {
            self.make_ready(task.clone(), false);
        }
    }

    /// A task whose inputs have all finished: enqueue it or fail it (iteratively).
    fn make_ready(self: &Arc<Self>, task: Job, from_completion: bool) {
        match self.prepare(&task, None) {
            Prep::Enqueue { slot, shared } => self.push(task, slot, shared, from_completion),
            Prep::Fail(err) => {
                let work = task.work.lock().take();
                exec::drop_quietly(work);
                self.complete(&task, Err(err));
            }
            Prep::Skip => {}
        }
    }

    /// Where a ready task goes; `near` is the slot of the worker that just made one of its
    /// inputs, preferred among CPU threads when nothing would move.
    fn prepare(&self, task: &Job, near: Option<usize>) -> Prep {
        let guard = task.work.lock();
        let Some(w) = guard.as_ref() else {
            return Prep::Skip;
        };
        for i in &w.inputs {
            if let Some(e) = i.error() {
                return Prep::Fail(e.upstream(task.label()));
            }
        }
        if self.store.limited() {
            let prefetch = self.store.may_prefetch();
            for d in w.inputs[..w.n_args].iter().filter_map(Input::data_ref) {
                d.want();
                if prefetch {
                    d.prefetch();
                }
            }
        }
        let (slot, shared) = match &w.candidates {
            Candidates::AllThreads => (self.pick_thread_slot(), true),
            Candidates::Set(set) if set.len() == 1 => {
                (set.iter().next().expect("one candidate"), false)
            }
            Candidates::Set(set) => {
                let (slot, est) = self.place(set, w, near);
                drop(guard);
                self.slots[slot].queued_ns.fetch_add(est, Ordering::Relaxed);
                if let Some(w) = task.work.lock().as_mut() {
                    w.placed_est_ns = Some(est);
                }
                if !task.mark_queued() {
                    self.slots[slot].queued_ns.fetch_sub(est, Ordering::Relaxed);
                    return Prep::Skip;
                }
                return Prep::Enqueue {
                    slot,
                    shared: false,
                };
            }
        };
        drop(guard);
        if !task.mark_queued() {
            return Prep::Skip;
        }
        Prep::Enqueue { slot, shared }
    }

    fn push(self: &Arc<Self>, task: Job, slot: usize, shared: bool, from_completion: bool) {
        if self.procs[slot].launch_inline {
            // Launched from this thread when the processor has room; else by whichever
            // thread gives room back.
            let s = &self.slots[slot];
            if shared {
                s.shared.push(task);
            } else {
                s.pinned.push(task);
            }
            return self.pump(slot);
        }
        if !from_completion {
            return match self.procs[slot].exec {
                Exec::Thread => match self.run_short_here(task, slot) {
                    Ok(()) => {}
                    Err(t) => self.enqueue(t, slot, shared),
                },
                _ => self.enqueue(task, slot, shared),
            };
        }
        if from_completion {
            if let Some(l) = worker::local() {
                if Arc::ptr_eq(&l.rt, self) && l.primary.get() && l.slot.get() == slot {
                    // The finishing worker runs it next, while its inputs are fresh. A task
                    // only this slot takes waits in the slot's queue if one is already next.
                    // A task of high priority keeps its place before one of normal priority.
                    let next = l.next.take();
                    let keeps = next.as_ref().is_some_and(|(n, _)| n.high && !task.high);
                    if next.is_none() || (shared && !keeps) {
                        if let Some((prev, prev_shared)) = next {
                            self.slots[slot].push(prev, prev_shared);
                            self.wake_for(slot, prev_shared);
                        }
                        l.next.set(Some((task, shared)));
                        return;
                    }
                    l.next.set(next);
                }
            }
        }
        self.enqueue(task, slot, shared);
    }

    fn enqueue(&self, task: Job, slot: usize, shared: bool) {
        self.slots[slot].push(task, shared);
        self.wake_for(slot, shared);
    }

    fn wake_for(&self, slot: usize, shared: bool) {
        std::sync::atomic::fence(Ordering::SeqCst);
        let s = &self.slots[slot];
        if s.sleepers.load(Ordering::SeqCst) > 0 {
            let _g = s.sleep_lock.lock();
            s.sleep_cv.notify_one();
            return;
        }
        if shared && self.total_sleepers.load(Ordering::SeqCst) > 0 {
            for &t in &self.thread_slots {
                let o = &self.slots[t];
                if o.sleepers.load(Ordering::SeqCst) > 0 {
                    let _g = o.sleep_lock.lock();
                    o.sleep_cv.notify_one();
                    return;
                }
            }
        }
    }

    // ----- completion ------------------------------------------------------------------

    /// Records a task's result and releases its dependents, iteratively.
    pub(crate) fn complete(self: &Arc<Self>, task: &Job, result: Result<Data, TaskError>) {
        if let Err(e) = &result {
            tracing::debug!(task = task.id, error = %e, "task failed");
        }
        let mut failed: SmallVec<[(Job, TaskError); 2]> = SmallVec::new();
        self.progress.finished();
        let ok = result.is_ok();
        let deps = task.finish(result);
        if ok {
            forget_finished_order(task, &deps);
        }
        self.release_dependents(deps, &mut failed, true);
        while let Some((t, err)) = failed.pop() {
            self.progress.finished();
            let deps = t.finish(Err(err));
            self.release_dependents(deps, &mut failed, false);
        }
    }

    fn release_dependents(
        self: &Arc<Self>,
        deps: SmallVec<[Job; 2]>,
        failed: &mut SmallVec<[(Job, TaskError); 2]>,
        from_completion: bool,
    ) {
        // The first dependent placed among CPU threads may go to this worker, to run next.
        let mut near = if from_completion {
            worker::local().and_then(|l| {
                let s = l.slot.get();
                let free = l.primary.get() && {
                    let n = l.next.take();
                    let free = n.is_none();
                    l.next.set(n);
                    free
                };
                (Arc::ptr_eq(&l.rt, self) && free && self.procs[s].exec == Exec::Thread)
                    .then_some(s)
            })
        } else {
            None
        };
        for d in deps {
            if d.release_one() {
                match self.prepare(&d, near) {
                    Prep::Enqueue { slot, shared } if Some(slot) == near => {
                        near = None;
                        self.push(d, slot, shared, from_completion)
                    }
                    Prep::Enqueue { slot, shared } => self.push(d, slot, shared, from_completion),
                    Prep::Fail(e) => {
                        let work = d.work.lock().take();
                        exec::drop_quietly(work);
                        failed.push((d, e));
                    }
                    Prep::Skip => {}
                }
            }
        }
    }

    // ----- workers -----------------------------------------------------------------------

    pub(crate) fn proc_label(&self, s: usize) -> String {
        let p = &self.procs[s];
        format!("{} [{}]", p.description, p.id)
    }

    /// Called when the last context handle is dropped: threads exit once no work is left.
    pub(crate) fn shutdown(&self) {
        // Tasks waiting for a disabled processor run before the threads exit.
        for s in 0..self.procs.len() {
            self.set_enabled(s, true);
        }
        self.shutdown.store(true, Ordering::SeqCst);
        for s in &self.slots {
            let _g = s.sleep_lock.lock();
            s.sleep_cv.notify_all();
        }
        let idle = self.idle_spares.swap(0, Ordering::AcqRel);
        for _ in 0..idle {
            let _ = self.roles_tx.send(Role::Exit);
        }
    }
}

/// A plain host closure, as processors are asked whether they take one.
fn closure_probe() -> crate::processor::TaskInfo {
    crate::processor::TaskInfo {
        id: 0,
        name: "closure".into(),
        function: "closure",
        input_types: Vec::new(),
        host_closure: true,
        kernel: None,
        portable: false,
    }
}

/// Drops the references that `dependents` hold to `task`, finished without error, only to
/// run after it (a datadeps writer after the readers of the value it replaces): they have
/// nothing more to wait for or to check, and holding the task would keep its result alive
/// until they run — in a factorization, a block that an interchange tile would otherwise
/// update in place is then copied instead. Arguments are kept.
fn forget_finished_order(task: &Job, dependents: &[Job]) {
    for d in dependents {
        let removed: SmallVec<[Input; 2]> = {
            let mut w = d.work.lock();
            let Some(w) = w.as_mut() else { continue };
            let mut removed = SmallVec::new();
            let mut i = w.n_args;
            while i < w.inputs.len() {
                if matches!(&w.inputs[i], Input::Task(t) if Arc::ptr_eq(t, task)) {
                    removed.push(w.inputs.swap_remove(i));
                } else {
                    i += 1;
                }
            }
            removed
        };
        exec::drop_quietly(removed);
    }
}
