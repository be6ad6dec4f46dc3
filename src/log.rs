//! The event log: what ran where and when, for traces, charts and summaries.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;

use crate::processor::ProcessorId;

/// What a [`LogEvent`] records.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum EventKind {
    /// A task ran.
    Task,
    /// Data moved between memory spaces for a task.
    Move,
}

/// One entry of a context's event log (see [`Context::enable_logging`](crate::Context::enable_logging)).
#[derive(Clone, Debug, PartialEq)]
pub struct LogEvent {
    /// What happened.
    pub kind: EventKind,
    /// The task that ran, or that the data moved for.
    pub task: u64,
    /// The task's name.
    pub name: Arc<str>,
    /// Where it happened.
    pub processor: ProcessorId,
    /// Start, in nanoseconds since the context was created.
    pub start_ns: u64,
    /// End, in nanoseconds since the context was created.
    pub end_ns: u64,
    /// Bytes moved into the processor's memory space for this event.
    pub bytes_moved: u64,
    /// The tasks whose results this task consumed.
    pub inputs: Vec<u64>,
    /// Whether it succeeded.
    pub ok: bool,
}

pub(crate) type Buffer = Arc<Mutex<Vec<LogEvent>>>;

/// Per-thread event buffers, drained by `fetch_logs`.
#[derive(Default)]
pub(crate) struct Logger {
    enabled: AtomicBool,
    buffers: Mutex<Vec<Buffer>>,
    fallback: Buffer,
}

impl Logger {
    pub(crate) fn enabled(&self) -> bool {
        self.enabled.load(Ordering::Relaxed)
    }

    pub(crate) fn set_enabled(&self, on: bool) {
        self.enabled.store(on, Ordering::Relaxed);
    }

    /// A buffer for one thread.
    pub(crate) fn register(&self) -> Buffer {
        let b = Buffer::default();
        self.buffers.lock().push(b.clone());
        b
    }

    /// Records from a thread without its own buffer.
    #[allow(dead_code)]
    pub(crate) fn record(&self, e: LogEvent) {
        self.fallback.lock().push(e);
    }

    /// Takes every event recorded so far, sorted by start time.
    pub(crate) fn drain(&self) -> Vec<LogEvent> {
        let mut out = std::mem::take(&mut *self.fallback.lock());
        let mut bufs = self.buffers.lock();
        bufs.retain(|b| Arc::strong_count(b) > 1 || !b.lock().is_empty());
        for b in bufs.iter() {
            out.append(&mut b.lock());
        }
        out.sort_by_key(|e| (e.start_ns, e.task));
        out
    }
}
