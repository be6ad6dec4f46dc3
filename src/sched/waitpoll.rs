//! Threads that wait for a task on another process take its completion in themselves.
//!
//! A task launched on another rank completes when its reply arrives, which the receiving
//! thread of the link takes in; a thread waiting in `fetch` would then have to be woken,
//! a few µs per task and a core switched. Instead, while a thread that is not a worker
//! waits for such a task, it takes in and handles the messages itself, and the receiving
//! thread rests meanwhile: the reply completes the task on the thread that wants it.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use parking_lot::RwLock;

use super::{Runtime, TaskCore};

/// What a thread waiting for a task launched elsewhere does meanwhile.
pub(crate) trait WaitPoll: Send + Sync {
    /// Takes in and handles messages while `waiting()` holds and `until` (if any) has not
    /// passed. Returns true once `waiting()` turns false; false when it gave up (nothing
    /// arrived for a while, the deadline passed, or the link stopped), leaving the rest to
    /// the receiving thread.
    fn poll_while(&self, waiting: &dyn Fn() -> bool, until: Option<Instant>) -> bool;
}

struct Entry {
    /// The runtime's address.
    rt: usize,
    /// By processor slot, whether its tasks complete on messages `poll` takes in.
    polled: Vec<bool>,
    poll: Arc<dyn WaitPoll>,
}

static ENTRIES: RwLock<Vec<Entry>> = RwLock::new(Vec::new());
/// How many entries there are: a process without any looks no further.
static COUNT: AtomicUsize = AtomicUsize::new(0);

impl Runtime {
    /// Makes threads that wait for tasks launched on processors whose launch hands the
    /// task to another process ([`ProcEntry::launch_inline`](super::ProcEntry)) take
    /// messages in with `poll` while they wait, until the runtime drops.
    pub(crate) fn set_wait_poll(&self, poll: Arc<dyn WaitPoll>) {
        let polled = self.procs.iter().map(|p| p.launch_inline).collect();
        let mut e = ENTRIES.write();
        e.push(Entry {
            rt: self as *const Runtime as usize,
            polled,
            poll,
        });
        COUNT.store(e.len(), Ordering::Release);
    }

    pub(super) fn unset_wait_poll(&self) {
        if COUNT.load(Ordering::Acquire) == 0 {
            return;
        }
        let me = self as *const Runtime as usize;
        let mut e = ENTRIES.write();
        e.retain(|x| x.rt != me);
        COUNT.store(e.len(), Ordering::Release);
    }
}

/// The way to take in the completion of `task`, when it was launched on a processor whose
/// tasks complete on messages.
pub(super) fn poll_for(task: &TaskCore) -> Option<Arc<dyn WaitPoll>> {
    if COUNT.load(Ordering::Acquire) == 0 {
        return None;
    }
    let slot = task.ran_on.load(Ordering::Acquire);
    if slot == u32::MAX {
        return None;
    }
    let owner = task.owner();
    ENTRIES
        .read()
        .iter()
        .find(|e| e.rt == owner)
        .filter(|e| e.polled.get(slot as usize).copied().unwrap_or(false))
        .map(|e| e.poll.clone())
}
