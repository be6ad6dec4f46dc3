//! Worker threads: each serves one processor's queues (a CPU thread's, stealing from the
//! others; a device's, launching onto it), sleeps when there is nothing to do, and gives its
//! processor back while a task it runs waits in a nested `fetch`.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use smallvec::SmallVec;

use super::queue::steal;
use super::task::FULL_OCCUPANCY;
use super::{Exec, Job, Runtime};
use crate::log::Buffer;
use crate::processor::{drop_payload, panic_message, set_task_threads};

/// Jobs expected to take less than this start on the threads idle at once, without
/// waiting for busy ones ([`Runtime::lend_threads`]). A 512³ GEMM tile of LU (5 ms) that
/// waited for the other thread, then held it, kept the next panel from starting there:
/// the LU of n=4096 ran 2–5% slower.
const LEND_WAIT_MIN: Duration = Duration::from_millis(16);

/// What a spare thread is asked to do.
pub(super) enum Role {
    /// Serve a processor's queues.
    Primary(usize),
    /// Run one task on a processor, then come back.
    Run(Job, usize),
    /// Exit.
    Exit,
}

pub(super) struct WorkerLocal {
    pub(super) rt: Arc<Runtime>,
    pub(super) slot: Cell<usize>,
    pub(super) primary: Cell<bool>,
    pub(super) in_task: Cell<bool>,
    pub(super) cur_occ: Cell<u32>,
    /// Bytes the tasks running on this thread hold under the memory limit.
    pub(super) held: Cell<u64>,
    /// The task this thread runs next (a dependent of the task it just finished), and
    /// whether other threads may take it.
    pub(super) next: Cell<Option<(Job, bool)>>,
    pub(super) log: Buffer,
    /// An address near the base of the thread's stack.
    stack_base: usize,
    /// The size of the thread's stack, as far as tasks run inline may use it.
    stack_size: usize,
    /// Whether the thread runs a short task it makes ready itself, when the task's
    /// processor is idle (see [`Runtime::adopt_for_short_tasks`]).
    runs_short: bool,
}

/// An address in the current stack frame.
#[inline(never)]
fn stack_addr() -> usize {
    let probe = 0u8;
    std::hint::black_box(&probe) as *const u8 as usize
}

thread_local! {
    static LOCAL: RefCell<Option<Rc<WorkerLocal>>> = const { RefCell::new(None) };
}

#[inline]
pub(super) fn local() -> Option<Rc<WorkerLocal>> {
    LOCAL.with(|l| l.borrow().clone())
}

/// A processor slot of a runtime.
type SlotOf = (Arc<Runtime>, usize);

thread_local! {
    /// While this thread launches queued jobs ([`Runtime::pump`]): the slots whose queues
    /// it is to look at next.
    static PUMPING: RefCell<Option<Vec<SlotOf>>> = const { RefCell::new(None) };
}

/// The outermost [`Runtime::pump`] on this thread; ends the pumping when dropped, also on
/// unwinding.
struct Pumping;

impl Pumping {
    /// Starts pumping on this thread, or, when it pumps already, notes slot `s` of `rt`
    /// for the outermost call to look at and returns `None`.
    fn enter(rt: &Arc<Runtime>, s: usize) -> Option<Pumping> {
        PUMPING.with(|p| {
            let mut p = p.borrow_mut();
            match p.as_mut() {
                Some(later) => {
                    if !later.iter().any(|(r, t)| *t == s && Arc::ptr_eq(r, rt)) {
                        later.push((rt.clone(), s));
                    }
                    None
                }
                None => {
                    *p = Some(Vec::new());
                    Some(Pumping)
                }
            }
        })
    }

    /// The next slot noted, oldest first.
    fn next() -> Option<SlotOf> {
        PUMPING.with(|p| {
            let mut p = p.borrow_mut();
            let later = p.as_mut()?;
            (!later.is_empty()).then(|| later.remove(0))
        })
    }
}

impl Drop for Pumping {
    fn drop(&mut self) {
        let _ = PUMPING.try_with(|p| p.borrow_mut().take());
    }
}

pub(super) const SPIN_ROUNDS: u32 = 256;
/// The longest expected run time of a task that a thread adopted for short tasks runs
/// itself.
pub(super) const SHORT_HERE_NS: u64 = 20_000;

/// A thread adopted for short tasks, until dropped.
pub(crate) struct Adopted {
    before: Option<Rc<WorkerLocal>>,
    _not_send: std::marker::PhantomData<*const ()>,
}

impl Drop for Adopted {
    fn drop(&mut self) {
        let before = self.before.take();
        LOCAL.with(|c| *c.borrow_mut() = before);
    }
}
/// Stack of every worker thread: room for tasks run inline in nested waits.
const WORKER_STACK: usize = 16 << 20;
/// Stack a worker keeps free: a nested wait deeper than this hands over instead of running
/// the awaited task inline.
const STACK_RESERVE: usize = 2 << 20;
const SPARE_IDLE: Duration = Duration::from_secs(10);

impl Runtime {
    /// Starts a worker thread with `role`; on failure the role is handed back.
    pub(super) fn spawn_thread(self: &Arc<Self>, role: Role) -> Result<(), (Role, String)> {
        let name = match &role {
            Role::Primary(s) | Role::Run(_, s) => format!("dagger-{}", self.procs[*s].kind),
            Role::Exit => "dagger-spare".to_owned(),
        };
        self.live_threads.fetch_add(1, Ordering::AcqRel);
        // The role travels through a slot so that a failed spawn can give it back.
        let handoff = Arc::new(parking_lot::Mutex::new(Some(role)));
        let theirs = handoff.clone();
        let rt = self.clone();
        let spawned = std::thread::Builder::new()
            .name(name)
            .stack_size(WORKER_STACK)
            .spawn(move || {
                let role = theirs.lock().take();
                let live = rt.clone();
                if let Some(role) = role {
                    rt.thread_main(role);
                }
                live.live_threads.fetch_sub(1, Ordering::AcqRel);
            });
        match spawned {
            Ok(handle) => {
                exit_guard::track(handle, self);
                Ok(())
            }
            Err(e) => {
                self.live_threads.fetch_sub(1, Ordering::AcqRel);
                let role = handoff.lock().take().expect("the thread never started");
                Err((role, format!("could not start a worker thread: {e}")))
            }
        }
    }

    /// Gives `role` to an idle spare thread, or to a new thread within the spare-thread
    /// limit; on failure the role is handed back with the reason.
    pub(super) fn activate(self: &Arc<Self>, role: Role) -> Result<(), (Role, String)> {
        if self
            .idle_spares
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
            .is_ok()
        {
            let _ = self.roles_tx.send(role);
            return Ok(());
        }
        let limit = self.spare_limit.load(Ordering::Acquire);
        let spares = self
            .live_threads
            .load(Ordering::Acquire)
            .saturating_sub(self.base_threads);
        if spares >= limit {
            return Err((
                role,
                format!("the context's limit of {limit} spare threads is reached"),
            ));
        }
        self.spawn_thread(role)
    }

    /// The state of a thread that runs this runtime's tasks, with `stack_size` bytes of
    /// stack from here for tasks run inline.
    fn thread_local_state(
        self: &Arc<Self>,
        stack_size: usize,
        runs_short: bool,
    ) -> Rc<WorkerLocal> {
        Rc::new(WorkerLocal {
            rt: self.clone(),
            slot: Cell::new(0),
            primary: Cell::new(false),
            in_task: Cell::new(false),
            cur_occ: Cell::new(0),
            held: Cell::new(0),
            next: Cell::new(None),
            log: self.log.register(),
            stack_base: stack_addr(),
            stack_size,
            runs_short,
        })
    }

    fn thread_main(self: Arc<Self>, first: Role) {
        let l = self.thread_local_state(WORKER_STACK, false);
        LOCAL.with(|c| *c.borrow_mut() = Some(l.clone()));
        let mut role = Some(first);
        loop {
            match role.take() {
                Some(Role::Primary(s)) => {
                    l.slot.set(s);
                    l.primary.set(true);
                    // The scheduler's own code does not panic, and run_job contains every
                    // panic of a task; should anything else escape, the thread keeps its
                    // role rather than leave the processor without a worker.
                    loop {
                        let served = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                            self.primary_loop(&l)
                        }));
                        match served {
                            Ok(()) => break,
                            Err(p) => {
                                worker_fault(&*p, s, &self);
                                drop_payload(p);
                                l.in_task.set(false);
                                if !l.primary.get() {
                                    break;
                                }
                            }
                        }
                    }
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

    #[inline]
    pub(super) fn occupancy_units(&self, job: &Job, s: usize) -> u32 {
        let cap = self.slots[s].capacity;
        job.occupancy
            .clamp(FULL_OCCUPANCY / 64, FULL_OCCUPANCY)
            .min(cap)
    }

    fn primary_loop(self: &Arc<Self>, l: &WorkerLocal) {
        let s = l.slot.get();
        if self.procs[s].launch_inline {
            // Other threads launch its jobs; this one looks now and then (and when the
            // processor is put back in service).
            while l.primary.get() {
                self.pump(s);
                if !self.rest(s) {
                    return;
                }
            }
            return;
        }
        let mut rounds = 0;
        loop {
            if !l.primary.get() {
                return;
            }
            let job = match l.next.take() {
                // A job of high priority waiting elsewhere goes before a next one of
                // normal priority, which goes back to the queue.
                Some((j, shared)) if !j.high && shared && self.urgent_waiting() => {
                    self.slots[s].push(j, shared);
                    self.wake_for(s, shared);
                    self.find_job(s)
                }
                Some((j, _)) => {
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
                    if rounds < self.spin_rounds.load(Ordering::Relaxed) {
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
        if !self.is_enabled(s) {
            return None;
        }
        slot.active.fetch_add(1, Ordering::AcqRel);
        let thread = self.procs[s].exec == Exec::Thread;
        let n = self.thread_slots.len();
        let me = self.procs[s].thread.unwrap_or(0);
        if thread {
            // Jobs of high priority first, from any thread's queue.
            for k in 0..n {
                let t = self.thread_slots[(me + k) % n];
                if let Some(j) = steal(&self.slots[t].urgent) {
                    return Some(j);
                }
            }
        }
        if let Some(j) = steal(&slot.pinned).or_else(|| steal(&slot.shared)) {
            return Some(j);
        }
        if thread {
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

    /// Whether a job of high priority waits in a CPU thread's queue.
    fn urgent_waiting(&self) -> bool {
        self.thread_slots
            .iter()
            .any(|&t| !self.slots[t].urgent.is_empty())
    }

    fn has_work(&self, s: usize) -> bool {
        if !self.is_enabled(s) {
            return false;
        }
        let slot = &self.slots[s];
        if !slot.pinned.is_empty() || !slot.shared.is_empty() || !slot.urgent.is_empty() {
            return true;
        }
        self.procs[s].exec == Exec::Thread
            && self
                .thread_slots
                .iter()
                .any(|&t| !self.slots[t].shared.is_empty() || !self.slots[t].urgent.is_empty())
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

    /// Waits until woken or half a second passes, on a processor whose jobs other threads
    /// launch. Returns false when the thread should exit (shutdown and nothing left
    /// anywhere).
    fn rest(&self, s: usize) -> bool {
        let slot = &self.slots[s];
        let mut g = slot.sleep_lock.lock();
        slot.sleepers.fetch_add(1, Ordering::SeqCst);
        let keep = !(self.shutdown.load(Ordering::SeqCst) && self.quiescent());
        if keep {
            slot.sleep_cv.wait_for(&mut g, Duration::from_millis(500));
        }
        slot.sleepers.fetch_sub(1, Ordering::SeqCst);
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
        if self.procs[s].exec == Exec::Device {
            // Launched from this thread; its completion gives the capacity back.
            self.run_device_job(job, s, occ, Some(l));
            return;
        }
        if occ >= FULL_OCCUPANCY || slot.capacity <= occ {
            let est = self.expected_ns(&job, s);
            if let Some(ns) = est {
                let end = self.epoch.elapsed().as_nanos() as u64 + ns;
                slot.busy_until.store(end, Ordering::Relaxed);
            }
            let lent = self.lend_threads(&job, s, est);
            let prev = set_task_threads(1 + lent.len());
            self.run_job(&job, s, l, occ);
            set_task_threads(prev);
            for t in lent {
                self.slots[t].busy_until.store(0, Ordering::Relaxed);
                self.slots[t].release(self.slots[t].capacity);
                self.wake_for(t, false);
            }
            slot.busy_until.store(0, Ordering::Relaxed);
            slot.active.fetch_sub(1, Ordering::AcqRel);
            slot.release(occ);
        } else if let Err((Role::Run(job, _), _)) = self.activate(Role::Run(job, s)) {
            // No thread to run it beside this one: run it here.
            self.run_job(&job, s, l, occ);
            slot.active.fetch_sub(1, Ordering::AcqRel);
            slot.release(occ);
        }
    }

    /// Launches the jobs queued for slot `s`, a processor whose jobs are launched by the
    /// threads that make them ready or give its room back ([`ProcEntry::launch_inline`]),
    /// from this thread, in the order they were queued, while the processor has room. A
    /// job that does not fit waits first in line for the next room given back.
    ///
    /// A launch that completes at once (it failed) and so makes more jobs ready, on this
    /// or another such processor, does not launch them from within: the outermost call on
    /// the thread does, one after another, so that a long chain never deepens the stack.
    ///
    /// [`ProcEntry::launch_inline`]: super::ProcEntry::launch_inline
    pub(super) fn pump(self: &Arc<Self>, s: usize) {
        let Some(_outer) = Pumping::enter(self, s) else {
            return;
        };
        let l = local().filter(|l| Arc::ptr_eq(&l.rt, self));
        let mut next = Some((self.clone(), s));
        while let Some((rt, s)) = next {
            let l = l.as_deref().filter(|l| Arc::ptr_eq(&l.rt, &rt));
            rt.launch_queued(s, l);
            next = Pumping::next();
        }
    }

    fn launch_queued(self: &Arc<Self>, s: usize, l: Option<&WorkerLocal>) {
        let slot = &self.slots[s];
        loop {
            if !self.is_enabled(s) {
                return;
            }
            let mut first = slot.next_launch.lock();
            let job = match first.take() {
                Some(j) => j,
                None => {
                    slot.active.fetch_add(1, Ordering::AcqRel);
                    match steal(&slot.pinned).or_else(|| steal(&slot.shared)) {
                        Some(j) => j,
                        None => {
                            slot.active.fetch_sub(1, Ordering::AcqRel);
                            return;
                        }
                    }
                }
            };
            let occ = self.occupancy_units(&job, s);
            if !slot.try_reserve(occ) {
                // Whoever gives room back launches it.
                *first = Some(job);
                return;
            }
            drop(first);
            if !job.claim() {
                // Cancelled meanwhile: whoever claimed it finishes it.
                slot.active.fetch_sub(1, Ordering::AcqRel);
                slot.release(occ);
                continue;
            }
            self.run_device_job(job, s, occ, l);
        }
    }

    /// Makes the calling thread, which is not one of the workers, run the short tasks it
    /// makes ready itself (see [`run_short_here`](Self::run_short_here)) until the guard
    /// drops: a thread that receives tasks from another rank, for which handing a task of
    /// a few µs to a worker thread costs more than running it.
    pub(crate) fn adopt_for_short_tasks(self: &Arc<Self>) -> Adopted {
        // Its stack is not the workers' size: tasks it waits for are never run inline.
        let l = self.thread_local_state(0, true);
        let before = LOCAL.with(|c| c.borrow_mut().replace(l));
        Adopted {
            before,
            _not_send: std::marker::PhantomData,
        }
    }

    /// Runs a job that became ready on CPU thread slot `s` from this thread, when this
    /// thread was adopted for short tasks, the job is expected
    /// ([`Options::time_hint`](crate::Options::time_hint)) to take at most
    /// [`SHORT_HERE_NS`], and the slot is idle with nothing queued; otherwise hands the job
    /// back, to be queued.
    pub(super) fn run_short_here(self: &Arc<Self>, job: Job, s: usize) -> Result<(), Job> {
        let Some(l) = local() else {
            return Err(job);
        };
        if !l.runs_short || l.in_task.get() || !Arc::ptr_eq(&l.rt, self) {
            return Err(job);
        }
        let hint = job.work.lock().as_ref().map_or(0, |w| w.time_hint_ns);
        if hint == 0 || hint > SHORT_HERE_NS {
            return Err(job);
        }
        let slot = &self.slots[s];
        if slot.queue_len() > 0 || !self.is_enabled(s) || !slot.try_claim_idle() {
            return Err(job);
        }
        let occ = slot.capacity;
        slot.active.fetch_add(1, Ordering::AcqRel);
        if job.claim() {
            l.slot.set(s);
            self.run_job(&job, s, &l, occ);
        }
        slot.active.fetch_sub(1, Ordering::AcqRel);
        slot.release(occ);
        if slot.queue_len() > 0 {
            self.wake_for(s, false);
        }
        Ok(())
    }

    /// Idle CPU threads lent to a job that can use several
    /// ([`Options::max_threads`](crate::Options::max_threads)) when
    /// it starts on thread slot `s` and no other work is queued: their slots are taken
    /// whole, so they run nothing else until the job ends.
    ///
    /// A thread still finishing a job of its own, while nothing waits in any queue, is
    /// waited for, at most an eighth of the job's expected run time `est` (so that the
    /// wait costs at most that much, and a second thread saves up to half of it), when
    /// that is at least [`LEND_WAIT_MIN`]: a job made ready by another one's completion
    /// (or started by a caller that waited for it) starts while that thread is still
    /// closing its job, and would otherwise run on one thread throughout. A 4096x1024 QR
    /// panel found the other thread busy for 2–6 ms more, then ran alone for 0.5–1.3 s.
    fn lend_threads(&self, job: &Job, s: usize, est: Option<u64>) -> SmallVec<[usize; 4]> {
        let mut lent = SmallVec::new();
        let want = job
            .work
            .lock()
            .as_ref()
            .and_then(|w| w.opts.as_ref())
            .and_then(|o| o.get_max_threads())
            .unwrap_or(1);
        let queued = || {
            self.thread_slots
                .iter()
                .any(|&t| self.slots[t].queue_len() > 0)
        };
        if want <= 1 || self.procs[s].exec != Exec::Thread || queued() {
            return lent;
        }
        let claim = |lent: &mut SmallVec<[usize; 4]>| {
            for &t in &self.thread_slots {
                if lent.len() + 1 >= want {
                    return true;
                }
                if t != s && !lent.contains(&t) && self.slots[t].try_claim_idle() {
                    // Busy with this job until it ends.
                    let until = self.slots[s].busy_until.load(Ordering::Relaxed);
                    self.slots[t].busy_until.store(until, Ordering::Relaxed);
                    lent.push(t);
                }
            }
            lent.len() + 1 >= want || lent.len() + 1 == self.thread_slots.len()
        };
        if claim(&mut lent) {
            return lent;
        }
        let Some(wait) = est
            .filter(|&ns| ns >= LEND_WAIT_MIN.as_nanos() as u64)
            .map(|ns| Duration::from_nanos(ns / 8))
        else {
            return lent;
        };
        // Only threads whose job should end within the wait, or whose end is not known,
        // are worth it. A job past its expected end gives no such hint and is not waited
        // for; nor is a thread that went on to a job of its own that ends later (one it
        // made ready and took without passing through a queue).
        let deadline = self.epoch.elapsed().as_nanos() as u64 + wait.as_nanos() as u64;
        let soon = |lent: &SmallVec<[usize; 4]>| {
            let now = self.epoch.elapsed().as_nanos() as u64;
            self.thread_slots.iter().any(|&t| {
                t != s && !lent.contains(&t) && {
                    let until = self.slots[t].busy_until.load(Ordering::Relaxed);
                    until == 0 || (now..=deadline).contains(&until)
                }
            })
        };
        while soon(&lent) && !queued() {
            std::thread::yield_now();
            if claim(&mut lent) || self.epoch.elapsed().as_nanos() as u64 >= deadline {
                break;
            }
        }
        lent
    }

    /// How long `job` should take on slot `s` ([`Runtime::run_estimate`]); `None` when
    /// nothing is known of it, or no other CPU thread could be lent or waited for.
    fn expected_ns(&self, job: &Job, s: usize) -> Option<u64> {
        if self.thread_slots.len() < 2 {
            return None;
        }
        let w = job.work.lock();
        let w = w.as_ref()?;
        let flops = w.kernel.as_ref().and_then(|k| k.flops());
        Some(self.run_estimate(s, w.cost_key, flops, w.time_hint_ns)).filter(|&ns| ns > 0)
    }

    /// Gives the calling worker's processor back before it blocks: its occupancy, and its
    /// role as the processor's primary thread (to an idle spare or a new thread). Fails,
    /// changing nothing, when no thread can take that role.
    fn begin_block(self: &Arc<Self>, l: &WorkerLocal) -> Result<(), String> {
        let s = l.slot.get();
        let slot = &self.slots[s];
        // What its tasks hold under the memory limit is given back too: tasks it waits for
        // may need it.
        let held = l.held.get();
        if l.primary.get() {
            if let Err((_, why)) = self.activate(Role::Primary(s)) {
                return Err(why);
            }
            l.primary.set(false);
            if let Some((n, shared)) = l.next.take() {
                slot.push(n, shared);
            }
            slot.release(l.cur_occ.get());
        } else {
            slot.release(l.cur_occ.get());
            self.wake_for(s, false);
        }
        self.store.release(held);
        Ok(())
    }

    /// Takes the calling worker's occupancy back after a block.
    fn end_block(&self, l: &WorkerLocal) {
        self.store.rehold(l.held.get());
        self.slots[l.slot.get()]
            .used
            .fetch_add(l.cur_occ.get(), Ordering::AcqRel);
    }

    /// Runs `task` inline on the calling worker if it is ready, has not started, may run
    /// on the worker's processor, and the worker's stack has room; true if it ran.
    fn try_run_inline(self: &Arc<Self>, task: &Job, l: &WorkerLocal) -> bool {
        let s = l.slot.get();
        if self.procs[s].exec != Exec::Thread || task.status() != super::task::QUEUED {
            return false;
        }
        let used = l.stack_base.abs_diff(stack_addr());
        if used + STACK_RESERVE > l.stack_size {
            return false;
        }
        // Tasks placed by cost among several processors count in their placed slot's
        // queued work: they stay there.
        let fits = match task.work.lock().as_ref() {
            Some(w) => match &w.candidates {
                super::Candidates::AllThreads => true,
                super::Candidates::Set(set) => {
                    w.placed_est_ns.is_none() && set.len() == 1 && set.iter().all(|c| c == s)
                }
            },
            None => false,
        };
        if !fits || !task.claim() {
            return false;
        }
        // The queue entry it leaves behind is skipped when taken (its claim fails). It runs
        // within the waiting task's occupancy, on one thread.
        let prev = set_task_threads(1);
        self.run_job(task, s, l, l.cur_occ.get());
        set_task_threads(prev);
        true
    }

    /// Blocks the calling worker thread on `task` until it is done or `deadline` passes,
    /// running it inline when it can, else giving the processor back meanwhile. Returns
    /// whether the task is done.
    fn block_worker(
        self: &Arc<Self>,
        task: &Job,
        l: &WorkerLocal,
        deadline: Option<Instant>,
    ) -> bool {
        if self.try_run_inline(task, l) {
            return true;
        }
        if let Err(why) = self.begin_block(l) {
            // Waiting while holding the processor could deadlock: the waiting task fails.
            std::panic::resume_unwind(Box::new(format!(
                "waiting for {}: could not give the processor back ({why})",
                task.label()
            )));
        }
        let done = task.wait_done_until(deadline);
        self.end_block(l);
        done
    }
}

/// Reports a panic that escaped the scheduler's own code on a worker of slot `s`.
fn worker_fault(p: &(dyn std::any::Any + Send), s: usize, rt: &Runtime) {
    let message = panic_message(p);
    tracing::error!(
        processor = %rt.procs[s].id,
        "a worker thread recovered from a panic outside any task: {message}"
    );
}

/// Runs `f`, which may block for long (on a lock), on behalf of the task running on this
/// worker: the worker's processor is given back meanwhile, as in a nested wait, so the
/// tasks that would release what `f` waits for can run. Outside a task it just runs `f`.
pub(crate) fn blocking<R>(f: impl FnOnce() -> R) -> R {
    let Some(l) = local() else {
        return f();
    };
    if !l.in_task.get() {
        return f();
    }
    let rt = l.rt.clone();
    if let Err(why) = rt.begin_block(&l) {
        std::panic::resume_unwind(Box::new(format!(
            "blocking: could not give the processor back ({why})"
        )));
    }
    struct Reacquire<'a>(&'a Runtime, &'a WorkerLocal);
    impl Drop for Reacquire<'_> {
        fn drop(&mut self) {
            self.0.end_block(self.1);
        }
    }
    let _back = Reacquire(&rt, &l);
    f()
}

/// Waits for `task`. Inside a worker that is running a task, the awaited task runs inline
/// if it is ready and has not started; otherwise the worker's processor is given back while
/// waiting, so nested waiting cannot deadlock.
pub(crate) fn block_on(task: &Job) {
    block_on_until(task, None);
}

/// [`block_on`] until `deadline`; returns whether the task is done.
pub(crate) fn block_on_until(task: &Job, deadline: Option<Instant>) -> bool {
    if task.is_done() {
        return true;
    }
    // The task may be among those a bulk queue of this thread keeps.
    super::task_queue::flush();
    if let Some(l) = local() {
        if l.in_task.get() && l.rt.owns(task) {
            for _ in 0..200 {
                if task.is_done() {
                    return true;
                }
                std::hint::spin_loop();
            }
            let rt = l.rt.clone();
            return rt.block_worker(task, &l, deadline);
        }
    }
    if let Some(poll) = super::waitpoll::poll_for(task) {
        if poll.poll_while(&|| !task.is_done(), deadline) {
            return true;
        }
    }
    task.wait_done_until(deadline)
}

/// Worker threads and process exit.
///
/// A thread that ends while the process exits races the shared libraries' destructors: a
/// driver that keeps per-thread state (Mesa's EGL does, for the GL adapter) frees it in a
/// thread-exit destructor while `exit` tears the library down, and the process aborts with a
/// double free after the program finished correctly. The worker threads of a context end
/// shortly after its last handle drops, which for a short program is just before `exit`. So
/// an `atexit` handler joins the threads of contexts that have shut down before `exit` goes
/// on to the libraries' destructors — waiting at most [`GRACE`] in all, so that exit never
/// hangs on a task that does not end. Threads of contexts still alive are left running; they
/// do not exit, so they do not race.
mod exit_guard {
    use super::*;

    /// How long exit waits, in all, for the threads of shut-down contexts.
    const GRACE: Duration = Duration::from_secs(2);

    struct Tracked {
        handle: JoinHandle<()>,
        rt: Weak<Runtime>,
    }

    static THREADS: parking_lot::Mutex<Vec<Tracked>> = parking_lot::Mutex::new(Vec::new());
    /// Whether the handler is registered, and whether it was registered after a context with
    /// devices started (so that it runs before the drivers' own exit handlers).
    static REGISTERED: parking_lot::Mutex<(bool, bool)> = parking_lot::Mutex::new((false, false));

    /// Keeps `handle` of a thread of `rt` for the exit handler.
    pub(super) fn track(handle: JoinHandle<()>, rt: &Arc<Runtime>) {
        register(rt);
        let mut threads = THREADS.lock();
        // Threads that have ended need no joining: dropping their handles detaches them.
        threads.retain(|t| !t.handle.is_finished());
        threads.push(Tracked {
            handle,
            rt: Arc::downgrade(rt),
        });
    }

    fn register(rt: &Runtime) {
        let devices = rt.procs.iter().any(|p| p.exec == Exec::Device);
        let mut r = REGISTERED.lock();
        // `atexit` handlers run last-registered first: registering again once devices are
        // open puts the handler ahead of those their drivers registered.
        if (!r.0 || (devices && !r.1)) && at_exit(join_shut_down_threads) {
            r.0 = true;
            r.1 |= devices;
        }
    }

    extern "C" fn join_shut_down_threads() {
        let Some(mut threads) = THREADS.try_lock_for(Duration::from_millis(100)) else {
            return;
        };
        let threads = std::mem::take(&mut *threads);
        let deadline = Instant::now() + GRACE;
        for t in threads {
            let shut_down =
                t.rt.upgrade()
                    .is_none_or(|rt| rt.shutdown.load(Ordering::Acquire));
            if !shut_down {
                continue;
            }
            while !t.handle.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(1));
            }
            if t.handle.is_finished() {
                // Returns once the thread has run its exit destructors.
                let _ = t.handle.join();
            }
        }
    }

    #[cfg(unix)]
    fn at_exit(f: extern "C" fn()) -> bool {
        extern "C" {
            fn atexit(f: extern "C" fn()) -> std::os::raw::c_int;
        }
        // SAFETY: `atexit` only records the pointer to `f`, a plain function of this program
        // that lives as long as the process and does not unwind (it contains no panics:
        // every lock is taken with a timeout or a `try_`, and joins are of finished threads).
        unsafe { atexit(f) == 0 }
    }

    #[cfg(not(unix))]
    fn at_exit(_: extern "C" fn()) -> bool {
        false
    }
}
