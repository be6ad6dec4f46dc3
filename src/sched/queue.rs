//! The queues and capacity of one processor.

use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};

use crossbeam_deque::{Injector, Steal};
use parking_lot::{Condvar, Mutex};

use super::Job;

/// Queues and capacity of one processor.
pub(super) struct Slot {
    pub(super) pinned: Injector<Job>,
    pub(super) shared: Injector<Job>,
    /// Shared jobs of high priority (CPU thread slots only), taken before the others.
    pub(super) urgent: Injector<Job>,
    /// Occupancy units in use.
    pub(super) used: AtomicU32,
    pub(super) capacity: u32,
    /// Jobs taken from the queues and not yet finished.
    pub(super) active: AtomicUsize,
    pub(super) sleepers: AtomicU32,
    pub(super) sleep_lock: Mutex<()>,
    pub(super) sleep_cv: Condvar,
    pub(super) cap_waiters: AtomicU32,
    pub(super) cap_lock: Mutex<()>,
    pub(super) cap_cv: Condvar,
    /// Estimated nanoseconds of queued work placed here by cost (not counting stealable work).
    pub(super) queued_ns: AtomicU64,
    /// Cost-based decisions this processor was a candidate in, while the log is on.
    pub(super) offered: AtomicU64,
    /// Of those, the ones it won.
    pub(super) chosen: AtomicU64,
    /// Sum of its estimated run times over the decisions it was offered.
    pub(super) estimate_sum_ns: AtomicU64,
    /// A processor whose jobs are launched by the threads that make them ready: the job
    /// taken from the queues that did not fit, first in line for the next room given back
    /// (counted in `active`). The lock also keeps launches in the order of the queues.
    pub(super) next_launch: Mutex<Option<Job>>,
    /// When the job running on this CPU thread should end, in ns since the runtime's
    /// epoch (learned, or from its flops or time hint); 0 when that is not known, or no
    /// job runs.
    pub(super) busy_until: AtomicU64,
}

impl Slot {
    pub(super) fn new(capacity: u32) -> Self {
        Slot {
            pinned: Injector::new(),
            shared: Injector::new(),
            urgent: Injector::new(),
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
            offered: AtomicU64::new(0),
            chosen: AtomicU64::new(0),
            estimate_sum_ns: AtomicU64::new(0),
            next_launch: Mutex::new(None),
            busy_until: AtomicU64::new(0),
        }
    }

    #[inline]
    pub(super) fn try_reserve(&self, occ: u32) -> bool {
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

    pub(super) fn reserve_blocking(&self, occ: u32) {
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

    /// Queues a job: on the pinned queue unless `shared`; a shared job of high priority on
    /// the urgent queue.
    pub(super) fn push(&self, job: Job, shared: bool) {
        if !shared {
            self.pinned.push(job);
        } else if job.high {
            self.urgent.push(job);
        } else {
            self.shared.push(job);
        }
    }

    /// Takes the whole slot if nothing runs on it: a thread lent to another task.
    #[inline]
    pub(super) fn try_claim_idle(&self) -> bool {
        self.used
            .compare_exchange(0, self.capacity, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    #[inline]
    pub(super) fn release(&self, occ: u32) {
        self.used.fetch_sub(occ, Ordering::AcqRel);
        if self.cap_waiters.load(Ordering::SeqCst) > 0 {
            let _g = self.cap_lock.lock();
            self.cap_cv.notify_all();
        }
    }

    #[inline]
    pub(super) fn queue_len(&self) -> usize {
        self.pinned.len() + self.shared.len() + self.urgent.len()
    }
}

#[inline]
pub(super) fn steal(q: &Injector<Job>) -> Option<Job> {
    loop {
        match q.steal() {
            Steal::Success(j) => return Some(j),
            Steal::Empty => return None,
            Steal::Retry => std::hint::spin_loop(),
        }
    }
}
