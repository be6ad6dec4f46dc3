//! The event log: what ran where and when, for traces, charts and summaries.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;

use crate::processor::ProcessorId;

/// What a [`LogEvent`] records (serialized as `"task"`, `"move"`, `"spill"`, `"reload"` or
/// `"gpu_evict"`).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum EventKind {
    /// A task ran.
    Task,
    /// Data moved between memory spaces for a task.
    Move,
    /// A value was written to disk to stay under the memory limit (`name` is its type,
    /// `bytes_moved` the bytes written).
    Spill,
    /// A spilled value was read back from disk (`bytes_moved` the bytes read).
    Reload,
    /// A buffer was evicted from a GPU to stay under the device's memory budget, on the
    /// lane of the GPU's processor (`name` is the value's type, `bytes_moved` the bytes
    /// copied to host memory: 0 when a host copy existed or the buffer was only a copy).
    /// Serialized as `"gpu_evict"`.
    #[serde(rename = "gpu_evict")]
    GpuEvict,
}

/// One entry of a context's event log (see [`Context::enable_logging`](crate::Context::enable_logging)).
///
/// It serializes (with `serde`) as an object of the same fields, the processor as
/// `"process:index"`:
///
/// ```
/// use dagger::prelude::*;
/// let ctx = Context::builder().threads(1).build()?;
/// ctx.enable_logging();
/// ctx.spawn_with(Options::new().name("one"), || 1, ()).fetch()?;
/// let json = serde_json::to_value(&ctx.fetch_logs()[0])?;
/// assert_eq!(json["name"], "one");
/// assert_eq!(json["kind"], "task");
/// assert_eq!(json["processor"], "1:1");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct LogEvent {
    /// What happened.
    pub kind: EventKind,
    /// The task that ran, or that the data moved for.
    pub task: u64,
    /// The task's name.
    #[serde(serialize_with = "str_of")]
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

/// How one processor fared in the scheduler's cost-based placement decisions while the
/// log was on (see [`Context::fetch_placements`](crate::Context::fetch_placements)): how
/// often it was a candidate, how often it won, and what the cost model estimated a task
/// would take there. A processor that was offered tasks and took none lost on these
/// estimates (plus the time its queue needed and the time to move the inputs).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Placement {
    /// The processor.
    pub processor: ProcessorId,
    /// Decisions it was a candidate in.
    pub offered: u64,
    /// Decisions it won.
    pub chosen: u64,
    /// The mean estimated run time of a task on it over the decisions it was offered, in
    /// nanoseconds (learned from tasks of the same function and shapes, or before that
    /// from the task's flops and the processor's prior throughput).
    pub mean_estimate_ns: u64,
}

fn str_of<S: serde::Serializer>(s: &Arc<str>, ser: S) -> Result<S::Ok, S::Error> {
    ser.serialize_str(s)
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
