//! The scheduler: ready queues per processor, worker threads, placement and completion.
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

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use crossbeam_deque::{Injector, Steal};
use parking_lot::{Condvar, Mutex};
use smallvec::SmallVec;

use crate::chunk::Data;
use crate::log::{Buffer, EventKind, LogEvent, Logger};
use crate::options::CurrentGuard;
use crate::processor::{MemorySpace, Processor, ProcessorId, ProcessorKind};
use crate::scope::ProcSet;
use crate::task::{
    panic_message, Input, TaskCall, TaskCore, TaskError, TaskFailure, TaskInfo, FULL_OCCUPANCY,
};
use crate::value::Value;

mod cost;
pub(crate) mod progress;
pub(crate) use cost::CostKey;
use cost::CostModel;

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
    /// A user processor, driven through the `Processor` trait on its own thread.
    Custom,
    /// A GPU: kernels are launched from its thread and complete asynchronously.
    #[cfg(feature = "wgpu")]
    Gpu,
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
    #[cfg(feature = "wgpu")]
    pub(crate) gpu_info: Option<crate::processor::GpuInfo>,
    pub(crate) backend: Option<String>,
    pub(crate) capacity: u32,
}

impl ProcEntry {
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

/// Queues and capacity of one processor.
struct Slot {
    pinned: Injector<Job>,
    shared: Injector<Job>,
    /// Occupancy units in use.
    used: AtomicU32,
    capacity: u32,
    /// Jobs taken from the queues and not yet finished.
    active: AtomicUsize,
    sleepers: AtomicU32,
    sleep_lock: Mutex<()>,
    sleep_cv: Condvar,
    cap_waiters: AtomicU32,
    cap_lock: Mutex<()>,
    cap_cv: Condvar,
    /// Estimated nanoseconds of queued work placed here by cost (not counting stealable work).
    queued_ns: AtomicU64,
}

impl Slot {
    fn new(capacity: u32) -> Self {
        Slot {
            pinned: Injector::new(),
            shared: Injector::new(),
            used: AtomicU32::new(0),
            capacity,
            active: AtomicUsize::new(0),
            sleepers: AtomicU32::new(0),
            sleep_lock: Mutex::new(()),
            sleep_cv: Condvar::new(),
            cap_waiters: AtomicU32::new(0),
            cap_lock: Mutex::new(()),
            cap_cv: Condvar::new(),
            queued_ns: AtomicU64::new(0),
        }
    }

    fn try_reserve(&self, occ: u32) -> bool {
        let mut cur = self.used.load(Ordering::Acquire);
        loop {
            if cur != 0 && cur + occ > self.capacity {
                return false;
            }
            match self.used.compare_exchange_weak(
                cur,
                cur + occ,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return true,
                Err(c) => cur = c,
            }
        }
    }

    fn reserve_blocking(&self, occ: u32) {
        if self.try_reserve(occ) {
            return;
        }
        let mut g = self.cap_lock.lock();
        self.cap_waiters.fetch_add(1, Ordering::SeqCst);
        while !self.try_reserve(occ) {
            self.cap_cv.wait(&mut g);
        }
        self.cap_waiters.fetch_sub(1, Ordering::SeqCst);
    }

    /// Takes the whole slot if nothing runs on it: a thread lent to another task.
    fn try_claim_idle(&self) -> bool {
        self.used
            .compare_exchange(0, self.capacity, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    fn release(&self, occ: u32) {
        self.used.fetch_sub(occ, Ordering::AcqRel);
        if self.cap_waiters.load(Ordering::SeqCst) > 0 {
            let _g = self.cap_lock.lock();
            self.cap_cv.notify_all();
        }
    }

    fn queue_len(&self) -> usize {
        self.pinned.len() + self.shared.len()
    }
}

/// What a spare thread is asked to do.
enum Role {
    /// Serve a processor's queues.
    Primary(usize),
    /// Run one task on a processor, then come back.
    Run(Job, usize),
    /// Exit.
    Exit,
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
    total_sleepers: AtomicUsize,
    shutdown: AtomicBool,
    pub(crate) epoch: Instant,
}

struct WorkerLocal {
    rt: Arc<Runtime>,
    slot: Cell<usize>,
    primary: Cell<bool>,
    in_task: Cell<bool>,
    cur_occ: Cell<u32>,
    next: Cell<Option<Job>>,
    log: Buffer,
}

thread_local! {
    static LOCAL: RefCell<Option<Rc<WorkerLocal>>> = const { RefCell::new(None) };
    static EXTERNAL_RR: Cell<usize> = const { Cell::new(0) };
}

fn local() -> Option<Rc<WorkerLocal>> {
    LOCAL.with(|l| l.borrow().clone())
}

/// Outcome of checking a task that became ready.
enum Prep {
    Enqueue { slot: usize, shared: bool },
    Fail(TaskError),
    Skip,
}

const SPIN_ROUNDS: u32 = 256;
const SPARE_IDLE: Duration = Duration::from_secs(10);
/// Host↔device bandwidth placement assumes, in bytes per ns (4 GB/s: below PCIe 3 x16,
/// about what Mesa's software devices reach).
#[cfg(feature = "wgpu")]
const TRANSFER_BYTES_PER_NS: f64 = 4.0;

impl Runtime {
    pub(crate) fn new(procs: Vec<ProcEntry>) -> Arc<Runtime> {
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
                if p.exec == Exec::Custom {
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
            total_sleepers: AtomicUsize::new(0),
            shutdown: AtomicBool::new(false),
            epoch: Instant::now(),
        });
        for (i, p) in rt.procs.iter().enumerate() {
            if p.exec != Exec::None {
                rt.spawn_thread(Role::Primary(i));
            }
        }
        rt
    }

    pub(crate) fn now_ns(&self) -> u64 {
        self.epoch.elapsed().as_nanos() as u64
    }

    // ----- submission -------------------------------------------------------------------

    /// Registers a freshly created task on its inputs and enqueues it if it is ready.
    pub(crate) fn submit(self: &Arc<Self>, task: &Job) {
        self.progress.spawned();
        {
            let w = task.work.lock();
            if let Some(w) = w.as_ref() {
                for i in &w.inputs {
                    if let Input::Task(t) = i {
                        t.add_dependent(task);
                    }
                }
            }
        }
        if task.release_one() {
            self.make_ready(task.clone(), false);
        }
    }

    /// A task whose inputs have all finished: enqueue it or fail it (iteratively).
    fn make_ready(self: &Arc<Self>, task: Job, from_completion: bool) {
        match self.prepare(&task) {
            Prep::Enqueue { slot, shared } => self.push(task, slot, shared, from_completion),
            Prep::Fail(err) => {
                task.work.lock().take();
                self.complete(&task, Err(err));
            }
            Prep::Skip => {}
        }
    }

    fn prepare(&self, task: &Job) -> Prep {
        let guard = task.work.lock();
        let Some(w) = guard.as_ref() else {
            return Prep::Skip;
        };
        for i in &w.inputs {
            if let Some(e) = i.error() {
                return Prep::Fail(e.upstream(task.label()));
            }
        }
        let (slot, shared) = match &w.candidates {
            Candidates::AllThreads => (self.pick_thread_slot(), true),
            Candidates::Set(set) if set.len() == 1 => {
                (set.iter().next().expect("one candidate"), false)
            }
            Candidates::Set(set) => {
                #[cfg(feature = "wgpu")]
                let flops = w.gpu.as_ref().and_then(|g| g.flops());
                #[cfg(not(feature = "wgpu"))]
                let flops = None;
                #[cfg(feature = "wgpu")]
                let here: SmallVec<[crate::gpu::Residence; 4]> =
                    if set.iter().any(|i| self.procs[i].gpu.is_some()) {
                        w.inputs[..w.n_args]
                            .iter()
                            .filter_map(|i| i.data().ok())
                            .filter_map(|d| crate::gpu::residence(&d))
                            .collect()
                    } else {
                        // Among CPU threads nothing moves.
                        SmallVec::new()
                    };
                let (slot, est) = self.pick_by_cost(
                    set,
                    w.cost_key,
                    w.time_hint_ns,
                    flops,
                    #[cfg(feature = "wgpu")]
                    &here,
                );
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

    fn pick_thread_slot(self: &Runtime) -> usize {
        if let Some(l) = local() {
            if std::ptr::eq(Arc::as_ptr(&l.rt), self) && l.primary.get() {
                let s = l.slot.get();
                if self.procs[s].exec == Exec::Thread {
                    return s;
                }
            }
        }
        let n = self.thread_slots.len();
        let c = EXTERNAL_RR.with(|c| {
            let v = c.get();
            c.set(v.wrapping_add(1));
            v
        });
        self.thread_slots[c % n]
    }

    /// Throughput assumed for a processor before its run times are measured, in flop/ns
    /// (GFLOP/s): a single-threaded BLAS tile on a CPU core, and by device type for GPUs —
    /// software devices are assumed slow so that they only get work once measured to be
    /// worth it.
    fn prior_flops_per_ns(&self, slot: usize) -> f64 {
        #[cfg(feature = "wgpu")]
        if let Some(g) = &self.procs[slot].gpu_info {
            return match g.device_type.as_str() {
                "discretegpu" => 2_000.0,
                "integratedgpu" => 200.0,
                "cpu" => 1.0,
                _ => 100.0,
            };
        }
        let _ = slot;
        50.0
    }

    /// The class a processor's run times are learned under: all threads share one.
    fn cost_class(&self, slot: usize) -> u32 {
        if self.procs[slot].exec == Exec::Thread {
            0
        } else {
            1 + slot as u32
        }
    }

    /// Earliest estimated finish among `set`: the time the processor becomes free (work
    /// placed on it by cost, plus its queue), plus moving the inputs that are not in its
    /// memory space yet, plus the task's estimated run time there. Returns the processor
    /// and the run-time estimate.
    fn pick_by_cost(
        &self,
        set: &ProcSet,
        key: Option<CostKey>,
        hint_ns: u64,
        flops: Option<f64>,
        #[cfg(feature = "wgpu")] inputs: &[crate::gpu::Residence],
    ) -> (usize, u64) {
        let mut best = (usize::MAX, 0);
        let mut best_finish = u64::MAX;
        for i in set.iter() {
            let s = &self.slots[i];
            let run = key
                .and_then(|k| self.cost.estimate(k, self.cost_class(i)))
                .or_else(|| flops.map(|f| (f / self.prior_flops_per_ns(i)) as u64))
                .unwrap_or(hint_ns);
            let busy = u64::from(s.used.load(Ordering::Relaxed) > 0);
            let free_at = s.queued_ns.load(Ordering::Relaxed)
                + (s.queue_len() as u64 + busy) * run.max(1_000);
            #[cfg(feature = "wgpu")]
            let moving = inputs
                .iter()
                .map(|r| r.bytes_to(self.procs[i].gpu))
                .sum::<u64>() as f64
                / TRANSFER_BYTES_PER_NS;
            #[cfg(not(feature = "wgpu"))]
            let moving = 0.0;
            let finish = free_at + moving as u64 + run;
            if finish < best_finish {
                best_finish = finish;
                best = (i, run);
            }
        }
        best
    }

    fn push(self: &Arc<Self>, task: Job, slot: usize, shared: bool, from_completion: bool) {
        if shared && from_completion {
            if let Some(l) = local() {
                if Arc::ptr_eq(&l.rt, self) && l.primary.get() && l.slot.get() == slot {
                    if let Some(prev) = l.next.replace(Some(task)) {
                        self.slots[slot].shared.push(prev);
                        self.wake_for(slot, true);
                    }
                    return;
                }
            }
        }
        let s = &self.slots[slot];
        if shared {
            s.shared.push(task);
        } else {
            s.pinned.push(task);
        }
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
        let mut failed: SmallVec<[(Job, TaskError); 2]> = SmallVec::new();
        self.progress.finished();
        let deps = task.finish(result);
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
        for d in deps {
            if d.release_one() {
                match self.prepare(&d) {
                    Prep::Enqueue { slot, shared } => self.push(d, slot, shared, from_completion),
                    Prep::Fail(e) => {
                        d.work.lock().take();
                        failed.push((d, e));
                    }
                    Prep::Skip => {}
                }
            }
        }
    }

    // ----- workers -----------------------------------------------------------------------

    fn spawn_thread(self: &Arc<Self>, role: Role) {
        let rt = self.clone();
        let name = match &role {
            Role::Primary(s) | Role::Run(_, s) => format!("dagger-{}", self.procs[*s].kind),
            Role::Exit => "dagger-spare".to_owned(),
        };
        std::thread::Builder::new()
            .name(name)
            .spawn(move || rt.thread_main(role))
            .expect("spawning a worker thread");
    }

    /// Gives `role` to an idle spare thread, or to a new thread.
    fn activate(self: &Arc<Self>, role: Role) {
        if self
            .idle_spares
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
            .is_ok()
        {
            let _ = self.roles_tx.send(role);
        } else {
            self.spawn_thread(role);
        }
    }

    fn thread_main(self: Arc<Self>, first: Role) {
        let l = Rc::new(WorkerLocal {
            rt: self.clone(),
            slot: Cell::new(0),
            primary: Cell::new(false),
            in_task: Cell::new(false),
            cur_occ: Cell::new(0),
            next: Cell::new(None),
            log: self.log.register(),
        });
        LOCAL.with(|c| *c.borrow_mut() = Some(l.clone()));
        let mut role = Some(first);
        loop {
            match role.take() {
                Some(Role::Primary(s)) => {
                    l.slot.set(s);
                    l.primary.set(true);
                    self.primary_loop(&l);
                    l.primary.set(false);
                    if self.shutdown.load(Ordering::Acquire) {
                        break;
                    }
                }
                Some(Role::Run(job, s)) => {
                    l.slot.set(s);
                    l.primary.set(false);
                    let occ = self.occupancy_units(&job, s);
                    self.run_job(&job, s, &l, occ);
                    self.slots[s].active.fetch_sub(1, Ordering::AcqRel);
                    self.slots[s].release(occ);
                    self.wake_for(s, false);
                }
                Some(Role::Exit) => break,
                None => {}
            }
            // Idle spare.
            self.idle_spares.fetch_add(1, Ordering::AcqRel);
            loop {
                match self.roles_rx.recv_timeout(SPARE_IDLE) {
                    Ok(r) => {
                        role = Some(r);
                        break;
                    }
                    Err(_) => {
                        if self
                            .idle_spares
                            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
                            .is_ok()
                        {
                            LOCAL.with(|c| *c.borrow_mut() = None);
                            return;
                        }
                    }
                }
            }
        }
        LOCAL.with(|c| *c.borrow_mut() = None);
    }

    fn occupancy_units(&self, job: &Job, s: usize) -> u32 {
        let cap = self.slots[s].capacity;
        job.occupancy
            .clamp(FULL_OCCUPANCY / 64, FULL_OCCUPANCY)
            .min(cap)
    }

    fn primary_loop(self: &Arc<Self>, l: &WorkerLocal) {
        let s = l.slot.get();
        let mut rounds = 0;
        loop {
            if !l.primary.get() {
                return;
            }
            let job = match l.next.take() {
                Some(j) => {
                    self.slots[s].active.fetch_add(1, Ordering::AcqRel);
                    Some(j)
                }
                None => self.find_job(s),
            };
            match job {
                Some(j) => {
                    rounds = 0;
                    self.dispatch(j, s, l);
                }
                None => {
                    rounds += 1;
                    if rounds < SPIN_ROUNDS {
                        if rounds % 8 == 0 {
                            std::thread::yield_now();
                        } else {
                            std::hint::spin_loop();
                        }
                        continue;
                    }
                    rounds = 0;
                    if !self.sleep(s) {
                        return;
                    }
                }
            }
        }
    }

    /// Takes a job for slot `s`, counting it active. Own queues first, then other threads'
    /// shared queues.
    fn find_job(&self, s: usize) -> Option<Job> {
        let slot = &self.slots[s];
        slot.active.fetch_add(1, Ordering::AcqRel);
        if let Some(j) = steal(&slot.pinned).or_else(|| steal(&slot.shared)) {
            return Some(j);
        }
        if self.procs[s].exec == Exec::Thread {
            let n = self.thread_slots.len();
            let me = self.procs[s].thread.unwrap_or(0);
            for k in 1..n {
                let t = self.thread_slots[(me + k) % n];
                if let Some(j) = steal(&self.slots[t].shared) {
                    return Some(j);
                }
            }
        }
        slot.active.fetch_sub(1, Ordering::AcqRel);
        None
    }

    fn has_work(&self, s: usize) -> bool {
        let slot = &self.slots[s];
        if !slot.pinned.is_empty() || !slot.shared.is_empty() {
            return true;
        }
        self.procs[s].exec == Exec::Thread
            && self
                .thread_slots
                .iter()
                .any(|&t| !self.slots[t].shared.is_empty())
    }

    /// Sleeps until there may be work for slot `s`. Returns false when the thread should
    /// exit (shutdown and nothing left anywhere).
    fn sleep(&self, s: usize) -> bool {
        let slot = &self.slots[s];
        let mut g = slot.sleep_lock.lock();
        slot.sleepers.fetch_add(1, Ordering::SeqCst);
        self.total_sleepers.fetch_add(1, Ordering::SeqCst);
        let keep = if self.has_work(s) {
            true
        } else if self.shutdown.load(Ordering::SeqCst) && self.quiescent() {
            false
        } else {
            slot.sleep_cv.wait_for(&mut g, Duration::from_millis(500));
            true
        };
        slot.sleepers.fetch_sub(1, Ordering::SeqCst);
        self.total_sleepers.fetch_sub(1, Ordering::SeqCst);
        keep
    }

    fn quiescent(&self) -> bool {
        self.slots
            .iter()
            .all(|s| s.active.load(Ordering::SeqCst) == 0 && s.queue_len() == 0)
    }

    /// Runs a claimed job inline (full occupancy) or on a spare thread (partial occupancy).
    fn dispatch(self: &Arc<Self>, job: Job, s: usize, l: &WorkerLocal) {
        let slot = &self.slots[s];
        if !job.claim() {
            slot.active.fetch_sub(1, Ordering::AcqRel);
            return;
        }
        let occ = self.occupancy_units(&job, s);
        slot.reserve_blocking(occ);
        #[cfg(feature = "wgpu")]
        if self.procs[s].exec == Exec::Gpu {
            self.run_gpu_job(job, s, occ);
            return;
        }
        if occ >= FULL_OCCUPANCY || slot.capacity <= occ {
            let lent = self.lend_threads(&job, s);
            let prev = TASK_THREADS.with(|t| t.replace(1 + lent.len()));
            self.run_job(&job, s, l, occ);
            TASK_THREADS.with(|t| t.set(prev));
            for t in lent {
                self.slots[t].release(self.slots[t].capacity);
                self.wake_for(t, false);
            }
            slot.active.fetch_sub(1, Ordering::AcqRel);
            slot.release(occ);
        } else {
            self.activate(Role::Run(job, s));
        }
    }

    /// Idle CPU threads lent to a job that can use several
    /// ([`Options::max_threads`](crate::Options::max_threads)) when
    /// it starts on thread slot `s` and no other work is queued: their slots are taken
    /// whole, so they run nothing else until the job ends.
    fn lend_threads(&self, job: &Job, s: usize) -> SmallVec<[usize; 4]> {
        let mut lent = SmallVec::new();
        let want = job
            .work
            .lock()
            .as_ref()
            .and_then(|w| w.opts.as_ref())
            .and_then(|o| o.get_max_threads())
            .unwrap_or(1);
        if want <= 1
            || self.procs[s].exec != Exec::Thread
            || self
                .thread_slots
                .iter()
                .any(|&t| self.slots[t].queue_len() > 0)
        {
            return lent;
        }
        for &t in &self.thread_slots {
            if lent.len() + 1 >= want {
                break;
            }
            if t != s && self.slots[t].try_claim_idle() {
                lent.push(t);
            }
        }
        lent
    }

    /// Moves a job's inputs, runs its body on slot `s`, logs it and completes it.
    fn run_job(self: &Arc<Self>, job: &Job, s: usize, l: &WorkerLocal, occ: u32) {
        let Some(work) = job.work.lock().take() else {
            return;
        };
        let entry = &self.procs[s];
        job.ran_on.store(s as u32, Ordering::Relaxed);
        let logging = self.log.enabled();
        let start = if logging { self.now_ns() } else { 0 };
        let mut inputs: SmallVec<[Value; 4]> = SmallVec::with_capacity(work.n_args);
        let mut move_err = None;
        for (k, i) in work.inputs[..work.n_args].iter().enumerate() {
            let d = i.data().expect("inputs of a ready task succeeded");
            if entry.exec == Exec::Custom {
                #[cfg(feature = "wgpu")]
                let d = match crate::gpu::to_host(&d) {
                    Ok((value, _)) => Data {
                        value,
                        space: MemorySpace::LOCAL_HOST,
                    },
                    Err(_) => d,
                };
                match entry.proc.move_in(d.space, d.value) {
                    Ok(v) => inputs.push(v),
                    Err(e) => {
                        move_err = Some(TaskError::Move {
                            task: job.label(),
                            processor: self.proc_label(s),
                            index: k,
                            error: Arc::new(e),
                        });
                        break;
                    }
                }
            } else {
                #[cfg(feature = "wgpu")]
                match crate::gpu::to_host(&d) {
                    Ok((v, bytes)) => {
                        if bytes > 0 && logging {
                            let input = match i {
                                Input::Task(t) => Some(t.id),
                                Input::Data(_) => None,
                            };
                            self.log_move(job, s, bytes, input);
                        }
                        inputs.push(v);
                    }
                    Err(e) => {
                        move_err = Some(TaskError::Move {
                            task: job.label(),
                            processor: self.proc_label(s),
                            index: k,
                            error: Arc::new(e),
                        });
                        break;
                    }
                }
                #[cfg(not(feature = "wgpu"))]
                inputs.push(d.value);
            }
        }
        let input_ids: Vec<u64> = if logging {
            work.inputs
                .iter()
                .filter_map(|i| match i {
                    Input::Task(t) => Some(t.id),
                    Input::Data(_) => None,
                })
                .collect()
        } else {
            Vec::new()
        };
        let fn_name = work.fn_name;
        let cost = work.cost_key.zip(work.placed_est_ns);
        let timer = cost.map(|_| Instant::now());
        drop(work.inputs);
        let result = match move_err {
            Some(e) => Err(e),
            None => {
                let _opts = CurrentGuard::set(work.opts);
                let _span = tracing::trace_span!(
                    "task",
                    id = job.id,
                    name = %job.name,
                    processor = %entry.id
                )
                .entered();
                let prev_in_task = l.in_task.replace(true);
                let prev_occ = l.cur_occ.replace(occ);
                let body = work.body;
                let out =
                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| match entry.exec {
                        Exec::Custom => entry.proc.execute(TaskCall {
                            info: TaskInfo {
                                id: job.id,
                                name: job.name.as_str().to_owned(),
                                function: fn_name,
                                input_types: inputs.iter().map(|v| v.type_name()).collect(),
                                host_closure: true,
                                kernel: None,
                            },
                            inputs: inputs.to_vec(),
                            body,
                        }),
                        _ => body(&inputs),
                    }));
                l.in_task.set(prev_in_task);
                l.cur_occ.set(prev_occ);
                drop(inputs);
                self.to_result(job, s, out)
            }
        };
        if let (Some((key, est)), Some(t0)) = (cost, timer) {
            self.cost
                .record(key, self.cost_class(s), t0.elapsed().as_nanos() as u64);
            self.slots[s].queued_ns.fetch_sub(est, Ordering::Relaxed);
        }
        if logging {
            let end = self.now_ns();
            l.log.lock().push(LogEvent {
                kind: EventKind::Task,
                task: job.id,
                name: job.name.as_str().into(),
                processor: entry.id,
                start_ns: start,
                end_ns: end,
                bytes_moved: 0,
                inputs: input_ids,
                ok: result.is_ok(),
            });
        }
        self.complete(job, result);
    }

    /// Records a data move into slot `s`'s memory space for `job`.
    #[cfg(feature = "wgpu")]
    fn log_move(&self, job: &Job, s: usize, bytes: u64, input: Option<u64>) {
        let now = self.now_ns();
        self.log.record(LogEvent {
            kind: EventKind::Move,
            task: job.id,
            name: job.name.as_str().into(),
            processor: self.procs[s].id,
            start_ns: now,
            end_ns: now,
            bytes_moved: bytes,
            inputs: input.into_iter().collect(),
            ok: true,
        });
    }

    /// Moves a kernel task's inputs to the GPU of slot `s` and launches it; the device's
    /// completion callback completes the task and gives the slot's capacity back.
    #[cfg(feature = "wgpu")]
    fn run_gpu_job(self: &Arc<Self>, job: Job, s: usize, occ: u32) {
        let finish = |rt: &Arc<Self>, job: &Job, result: Result<Data, TaskError>| {
            rt.complete(job, result);
            rt.slots[s].active.fetch_sub(1, Ordering::AcqRel);
            rt.slots[s].release(occ);
            rt.wake_for(s, false);
        };
        let Some(work) = job.work.lock().take() else {
            finish(self, &job, Err(TaskError::Cancelled { task: job.label() }));
            return;
        };
        let entry = &self.procs[s];
        job.ran_on.store(s as u32, Ordering::Relaxed);
        let dev = entry.gpu.expect("a GPU slot has a device");
        let Some(launch) = work.gpu.clone() else {
            let err = TaskError::Failed {
                task: job.label(),
                processor: self.proc_label(s),
                cause: Arc::from(Box::<dyn std::error::Error + Send + Sync>::from(
                    "only kernels run on GPUs; closures run on CPU threads",
                )),
            };
            finish(self, &job, Err(err));
            return;
        };
        let logging = self.log.enabled();
        let move_start = self.now_ns();
        let mut inputs = Vec::with_capacity(work.n_args);
        let mut moved = 0u64;
        let mut moved_from = Vec::new();
        for (k, i) in work.inputs[..work.n_args].iter().enumerate() {
            let d = i.data().expect("inputs of a ready task succeeded");
            match crate::gpu::to_device(&d, dev) {
                Ok((input, bytes)) => {
                    moved += bytes;
                    if let (true, Input::Task(t)) = (bytes > 0, i) {
                        moved_from.push(t.id);
                    }
                    inputs.push(input);
                }
                Err(e) => {
                    let err = TaskError::Move {
                        task: job.label(),
                        processor: self.proc_label(s),
                        index: k,
                        error: Arc::new(e),
                    };
                    finish(self, &job, Err(err));
                    return;
                }
            }
        }
        let start = self.now_ns();
        if logging && moved > 0 {
            self.log.record(LogEvent {
                kind: EventKind::Move,
                task: job.id,
                name: job.name.as_str().into(),
                processor: entry.id,
                start_ns: move_start,
                end_ns: start,
                bytes_moved: moved,
                inputs: moved_from,
                ok: true,
            });
        }
        let input_ids: Vec<u64> = if logging {
            work.inputs
                .iter()
                .filter_map(|i| match i {
                    Input::Task(t) => Some(t.id),
                    Input::Data(_) => None,
                })
                .collect()
        } else {
            Vec::new()
        };
        let cost = work.cost_key.zip(work.placed_est_ns);
        drop(work);
        let rt = self.clone();
        let job2 = job.clone();
        let timer = Instant::now();
        let space = entry.space;
        let device = &crate::gpu::devices().devices[dev].device;
        let launched = launch.launch(
            device,
            dev,
            &inputs,
            Box::new(move |r| {
                let result = match r {
                    Ok(arr) => Ok(Data {
                        value: Value::new(arr),
                        space,
                    }),
                    Err(e) => Err(TaskError::Failed {
                        task: job2.label(),
                        processor: rt.proc_label(s),
                        cause: Arc::new(e),
                    }),
                };
                if let Some((key, est)) = cost {
                    rt.cost
                        .record(key, rt.cost_class(s), timer.elapsed().as_nanos() as u64);
                    rt.slots[s].queued_ns.fetch_sub(est, Ordering::Relaxed);
                }
                if logging {
                    rt.log.record(LogEvent {
                        kind: EventKind::Task,
                        task: job2.id,
                        name: job2.name.as_str().into(),
                        processor: rt.procs[s].id,
                        start_ns: start,
                        end_ns: rt.now_ns(),
                        bytes_moved: moved,
                        inputs: input_ids,
                        ok: result.is_ok(),
                    });
                }
                rt.complete(&job2, result);
                rt.slots[s].active.fetch_sub(1, Ordering::AcqRel);
                rt.slots[s].release(occ);
                rt.wake_for(s, false);
            }),
        );
        if let Err(e) = launched {
            if let Some((_, est)) = cost {
                self.slots[s].queued_ns.fetch_sub(est, Ordering::Relaxed);
            }
            let err = TaskError::Failed {
                task: job.label(),
                processor: self.proc_label(s),
                cause: Arc::new(e),
            };
            finish(self, &job, Err(err));
        }
    }

    fn to_result(
        &self,
        job: &Job,
        s: usize,
        out: std::thread::Result<Result<Value, TaskFailure>>,
    ) -> Result<Data, TaskError> {
        let space = self.procs[s].space;
        match out {
            Ok(Ok(v)) => Ok(Data { value: v, space }),
            Ok(Err(TaskFailure::Error(e))) => Err(TaskError::Failed {
                task: job.label(),
                processor: self.proc_label(s),
                cause: Arc::from(e),
            }),
            Ok(Err(TaskFailure::Panic(message))) => Err(TaskError::Panicked {
                task: job.label(),
                processor: self.proc_label(s),
                message,
            }),
            Ok(Err(TaskFailure::ArgumentType {
                index,
                expected,
                found,
            })) => Err(TaskError::ArgumentType {
                task: job.label(),
                processor: self.proc_label(s),
                index,
                expected,
                found,
            }),
            Err(p) => Err(TaskError::Panicked {
                task: job.label(),
                processor: self.proc_label(s),
                message: panic_message(&*p),
            }),
        }
    }

    pub(crate) fn proc_label(&self, s: usize) -> String {
        let p = &self.procs[s];
        format!("{} [{}]", p.description, p.id)
    }

    /// Called when the last context handle is dropped: threads exit once no work is left.
    pub(crate) fn shutdown(&self) {
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

    /// Blocks the calling worker thread on `task`, giving its processor back meanwhile.
    fn block_worker(self: &Arc<Self>, task: &TaskCore, l: &WorkerLocal) {
        let s = l.slot.get();
        let occ = l.cur_occ.get();
        let slot = &self.slots[s];
        slot.release(occ);
        if l.primary.replace(false) {
            if let Some(n) = l.next.take() {
                slot.shared.push(n);
            }
            self.activate(Role::Primary(s));
        } else {
            self.wake_for(s, false);
        }
        task.wait_done_raw();
        slot.used.fetch_add(occ, Ordering::AcqRel);
    }
}

fn steal(q: &Injector<Job>) -> Option<Job> {
    loop {
        match q.steal() {
            Steal::Success(j) => return Some(j),
            Steal::Empty => return None,
            Steal::Retry => std::hint::spin_loop(),
        }
    }
}

thread_local! {
    /// CPU threads the task running on this thread may use.
    static TASK_THREADS: Cell<usize> = const { Cell::new(1) };
}

/// How many CPU threads the running task may use: 1, or more when it asked for several
/// with [`Options::max_threads`](crate::Options::max_threads) and the scheduler lent it
/// idle threads. 1 outside tasks.
pub fn task_threads() -> usize {
    TASK_THREADS.with(Cell::get)
}

/// Waits for `task`. Inside a worker that is running a task, the worker's processor is
/// given back while waiting, so nested waiting cannot deadlock.
pub(crate) fn block_on(task: &TaskCore) {
    if task.is_done() {
        return;
    }
    if let Some(l) = local() {
        if l.in_task.get() {
            for _ in 0..200 {
                if task.is_done() {
                    return;
                }
                std::hint::spin_loop();
            }
            let rt = l.rt.clone();
            rt.block_worker(task, &l);
            return;
        }
    }
    task.wait_done_raw();
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

/// Placement of a new task: its candidate processors, or why there are none.
pub(crate) fn resolve_candidates(
    rt: &Runtime,
    scope: Option<&crate::scope::Scope>,
    kind: &TaskKind<'_>,
    info: impl Fn() -> TaskInfo,
) -> Result<Candidates, crate::task::ScheduleError> {
    if scope.is_none() && rt.default_closure_all_threads && kind.is_plain_closure() {
        if rt.thread_slots.is_empty() {
            return Err(no_processor(rt, "default", |_| "not a CPU thread".into()));
        }
        return Ok(Candidates::AllThreads);
    }
    let scope_ref = scope.cloned().unwrap_or_default();
    let mut set = ProcSet::default();
    let mut info_cache: Option<TaskInfo> = None;
    for (i, p) in rt.procs.iter().enumerate() {
        if !scope_ref.contains(&p.view()) {
            continue;
        }
        let ok = match p.exec {
            Exec::None => false,
            Exec::Thread => kind.host,
            Exec::Custom => {
                let ti = info_cache.get_or_insert_with(&info);
                p.proc.is_compatible(ti)
            }
            #[cfg(feature = "wgpu")]
            Exec::Gpu => kind.gpu_reason(p).is_none(),
        };
        if ok {
            set.insert(i);
        }
    }
    if set.is_empty() {
        let ti = info();
        return Err(no_processor(rt, &scope_ref.to_string(), |p| {
            if !scope_ref.contains(&p.view()) {
                if !p.default_enabled && scope_ref == crate::scope::Scope::Default {
                    "not enabled by default".into()
                } else {
                    "outside the scope".into()
                }
            } else {
                match p.exec {
                    Exec::None => "runs no tasks".into(),
                    Exec::Thread if !kind.host => "the kernel has no CPU implementation".into(),
                    Exec::Thread => "available".into(),
                    #[cfg(feature = "wgpu")]
                    Exec::Gpu => kind.gpu_reason(p).unwrap_or_else(|| "available".into()),
                    Exec::Custom if !p.proc.is_compatible(&ti) => {
                        "not compatible with the task".into()
                    }
                    Exec::Custom => "available".into(),
                }
            }
        }));
    }
    if set == rt.thread_set {
        Ok(Candidates::AllThreads)
    } else {
        Ok(Candidates::Set(Box::new(set)))
    }
}

/// What a task needs from a processor.
pub(crate) struct TaskKind<'a> {
    /// It can run on CPU threads (a closure, or a kernel with a CPU implementation).
    pub(crate) host: bool,
    /// Its GPU implementation, if any.
    #[cfg(feature = "wgpu")]
    pub(crate) gpu: Option<&'a dyn crate::gpu::GpuLaunch>,
    #[cfg(not(feature = "wgpu"))]
    pub(crate) _p: std::marker::PhantomData<&'a ()>,
}

impl TaskKind<'_> {
    fn is_plain_closure(&self) -> bool {
        #[cfg(feature = "wgpu")]
        if self.gpu.is_some() {
            return false;
        }
        self.host
    }

    /// Why the GPU of `p` cannot run the task, or `None` if it can.
    #[cfg(feature = "wgpu")]
    fn gpu_reason(&self, p: &ProcEntry) -> Option<String> {
        let Some(g) = self.gpu else {
            return Some("runs kernels only; closures run on CPU threads".into());
        };
        let dev = p.gpu.expect("a GPU processor has a device");
        g.supports(crate::gpu::devices().devices[dev].device.info())
            .err()
    }
}

fn no_processor(
    rt: &Runtime,
    scope: &str,
    why: impl Fn(&ProcEntry) -> String,
) -> crate::task::ScheduleError {
    crate::task::ScheduleError::NoProcessor {
        scope: scope.to_owned(),
        considered: rt
            .procs
            .iter()
            .map(|p| (format!("{} [{}]", p.description, p.id), why(p)))
            .collect(),
    }
}
