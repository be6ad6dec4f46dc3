//! Worker threads: each serves one processor's queues (a CPU thread's, stealing from the
//! others; a device's, launching onto it), sleeps when there is nothing to do, and gives its
//! processor back while a task it runs waits in a nested `fetch`.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use smallvec::SmallVec;

use super::queue::steal;
use super::task::{TaskCore, FULL_OCCUPANCY};
use super::{Exec, Job, Runtime};
use crate::log::Buffer;
use crate::processor::set_task_threads;

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
    pub(super) next: Cell<Option<Job>>,
    pub(super) log: Buffer,
}

thread_local! {
    static LOCAL: RefCell<Option<Rc<WorkerLocal>>> = const { RefCell::new(None) };
}

pub(super) fn local() -> Option<Rc<WorkerLocal>> {
    LOCAL.with(|l| l.borrow().clone())
}

const SPIN_ROUNDS: u32 = 256;
const SPARE_IDLE: Duration = Duration::from_secs(10);

impl Runtime {
    pub(super) fn spawn_thread(self: &Arc<Self>, role: Role) {
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
    pub(super) fn activate(self: &Arc<Self>, role: Role) {
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

    pub(super) fn occupancy_units(&self, job: &Job, s: usize) -> u32 {
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
        if self.procs[s].exec == Exec::Device {
            // Launched from this thread; its completion gives the capacity back.
            self.run_device_job(job, s, occ, l);
            return;
        }
        if occ >= FULL_OCCUPANCY || slot.capacity <= occ {
            let lent = self.lend_threads(&job, s);
            let prev = set_task_threads(1 + lent.len());
            self.run_job(&job, s, l, occ);
            set_task_threads(prev);
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
