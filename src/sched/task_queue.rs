//! Task queues: how tasks spawned inside [`spawn_sequential`](crate::spawn_sequential) and
//! [`spawn_bulk`](crate::spawn_bulk) are submitted (Dagger.jl's task queues). A stack of
//! queues per thread, innermost last; an empty stack costs a thread-local read per task.

use std::cell::RefCell;
use std::sync::Arc;

use super::task::Input;
use super::{Job, Runtime};

enum Queue {
    /// Each task waits for the one spawned before it.
    Sequential { last: Option<Job> },
    /// Tasks are gathered and submitted together when the queue closes.
    Bulk { pending: Vec<(Arc<Runtime>, Job)> },
}

thread_local! {
    static QUEUES: RefCell<Vec<Queue>> = const { RefCell::new(Vec::new()) };
}

/// Pops the queue it pushed when dropped (also on a panic), submitting a bulk queue's
/// tasks.
struct Opened;

impl Drop for Opened {
    fn drop(&mut self) {
        let q = QUEUES.with(|q| q.borrow_mut().pop());
        if let Some(Queue::Bulk { pending }) = q {
            for (rt, task) in pending {
                // Enclosing queues see them now, in order.
                rt.route(&task);
            }
        }
    }
}

/// Runs `f` with tasks spawned on this thread ordered one after the other.
pub(crate) fn sequential<R>(f: impl FnOnce() -> R) -> R {
    QUEUES.with(|q| q.borrow_mut().push(Queue::Sequential { last: None }));
    let _open = Opened;
    f()
}

/// Runs `f` gathering the tasks spawned on this thread, then submits them together.
pub(crate) fn bulk<R>(f: impl FnOnce() -> R) -> R {
    QUEUES.with(|q| {
        q.borrow_mut().push(Queue::Bulk {
            pending: Vec::new(),
        })
    });
    let _open = Opened;
    f()
}

/// Submits the tasks gathered by open bulk queues on this thread, before it waits for one.
pub(crate) fn flush() {
    let pending: Vec<(Arc<Runtime>, Job)> = QUEUES.with(|q| {
        let mut q = q.borrow_mut();
        let mut out = Vec::new();
        for queue in q.iter_mut() {
            if let Queue::Bulk { pending } = queue {
                out.append(pending);
            }
        }
        out
    });
    for (rt, task) in pending {
        rt.register(&task);
    }
}

impl Runtime {
    /// Submits `task` through the open queues of this thread, innermost first; false if a
    /// bulk queue keeps it for later.
    pub(super) fn through_queues(self: &Arc<Self>, task: &Job) -> bool {
        QUEUES.with(|q| {
            let mut q = q.borrow_mut();
            for queue in q.iter_mut().rev() {
                match queue {
                    Queue::Sequential { last } => {
                        if let Some(prev) = last.replace(task.clone()) {
                            if let Some(w) = task.work.lock().as_mut() {
                                w.inputs.push(Input::Task(prev));
                            }
                        }
                    }
                    Queue::Bulk { pending } => {
                        pending.push((self.clone(), task.clone()));
                        return false;
                    }
                }
            }
            true
        })
    }

    pub(super) fn queues_open() -> bool {
        QUEUES.with(|q| !q.borrow().is_empty())
    }
}
