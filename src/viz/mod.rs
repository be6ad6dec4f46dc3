//! Pictures and tables of a finished run, made from its event log.
//!
//! Turn the events of [`Context::fetch_logs`](crate::Context::fetch_logs) and the processors
//! of [`Context::processors`](crate::Context::processors) into:
//!
//! - [`chrome_trace`]: Chrome trace-event JSON, to open in Perfetto or `chrome://tracing`
//!   (one track per processor, data moves, arrows from producers to consumers);
//! - [`gantt_svg`]: a Gantt chart as an SVG image, one lane per processor;
//! - [`run_dot`]: the task graph as it ran, in Graphviz DOT: one node per task for small
//!   runs ([`run_dot_tasks`]), one per task name with counts above [`DOT_TASKS_MAX`] tasks
//!   ([`run_dot_grouped`]);
//! - [`summarize`]: per-processor counts, busy time and utilization, printable as a table.
//!
//! This is what Dagger.jl's `render_logs` does with its `:chrome_trace`, `:plots_gantt` and
//! `:graphviz` renderers.
//!
//! Conventions shared by all of them:
//!
//! - The *span* of a run goes from the earliest start to the latest end of any event.
//!   Charts measure time from its start, not from the creation of the context.
//! - A processor's *busy time* is the length of the union of its task intervals (tasks that
//!   overlap on one processor count once), so utilization never exceeds 100%. Data moves are
//!   reported separately and do not count as busy time.
//! - A [`EventKind::Move`] event is a transfer into its processor's memory space for the task
//!   it names. It may also name, in its `inputs`, the tasks whose results it moved.
//! - Processors that appear in events but not in the processor list are shown by their
//!   identifier.
//!
//! ```
//! use dagger::prelude::*;
//! use dagger::viz;
//!
//! let ctx = Context::builder().threads(2).build()?;
//! ctx.enable_logging();
//! let a = ctx.spawn(|x: i64| x + 1, (1,));
//! let b = ctx.spawn(|x: i64| x * 2, (&a,));
//! assert_eq!(b.fetch()?, 4);
//!
//! let events = ctx.fetch_logs();
//! let procs = ctx.processors();
//! let summary = viz::summarize(&events, &procs);
//! assert_eq!(summary.tasks, 2);
//! println!("{summary}");
//! let svg = viz::gantt_svg(&events, &procs, "two tasks");
//! assert!(svg.starts_with("<svg"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod chrome;
mod dot;
mod gantt;
mod summary;

pub use chrome::chrome_trace;
pub use dot::{run_dot, run_dot_grouped, run_dot_tasks, DOT_TASKS_MAX};
pub use gantt::gantt_svg;
pub use summary::{summarize, Summary, SummaryRow};

use std::collections::HashMap;

use crate::log::{EventKind, LogEvent};
use crate::processor::{ProcessorId, ProcessorInfo};

/// The earliest start and the latest end over all events; `(0, 0)` when there are none.
fn span(events: &[LogEvent]) -> (u64, u64) {
    let start = events.iter().map(|e| e.start_ns).min().unwrap_or(0);
    let end = events.iter().map(end_ns).max().unwrap_or(start);
    (start, end.max(start))
}

/// An event's end, never before its start.
fn end_ns(e: &LogEvent) -> u64 {
    e.end_ns.max(e.start_ns)
}

/// An event's duration.
fn duration_ns(e: &LogEvent) -> u64 {
    end_ns(e) - e.start_ns
}

/// The events of one processor that ran something.
struct Lane<'a> {
    id: ProcessorId,
    info: Option<&'a ProcessorInfo>,
    /// Task events, by start time.
    tasks: Vec<&'a LogEvent>,
    /// Move events, by start time.
    moves: Vec<&'a LogEvent>,
}

impl Lane<'_> {
    /// The processor's description, or its identifier when it is unknown.
    fn description(&self) -> String {
        match self.info {
            Some(p) => p.description.clone(),
            None => format!("processor {}", self.id),
        }
    }

    /// Description and identifier, e.g. `cpu thread 0 (1:1)`.
    fn label(&self) -> String {
        match self.info {
            Some(p) => format!("{} ({})", p.description, self.id),
            None => format!("processor {}", self.id),
        }
    }

    /// Length of the union of the task intervals.
    fn busy_ns(&self) -> u64 {
        union_ns(self.tasks.iter().map(|e| (e.start_ns, end_ns(e))))
    }
}

/// The processors that appear in `events`, in the order of `procs` (unknown ones last, by
/// identifier), each with its events.
fn lanes<'a>(events: &'a [LogEvent], procs: &'a [ProcessorInfo]) -> Vec<Lane<'a>> {
    let mut by_id: HashMap<ProcessorId, Lane<'a>> = HashMap::new();
    for e in events {
        let lane = by_id.entry(e.processor).or_insert_with(|| Lane {
            id: e.processor,
            info: procs.iter().find(|p| p.id == e.processor),
            tasks: Vec::new(),
            moves: Vec::new(),
        });
        match e.kind {
            EventKind::Task => lane.tasks.push(e),
            // Transfers: into a memory space, to disk and back, off a GPU.
            EventKind::Move | EventKind::Spill | EventKind::Reload | EventKind::GpuEvict => {
                lane.moves.push(e)
            }
        }
    }
    let mut out: Vec<Lane<'a>> = by_id.into_values().collect();
    let position = |l: &Lane<'_>| procs.iter().position(|p| p.id == l.id);
    out.sort_by_key(|l| (position(l).is_none(), position(l), l.id));
    for l in &mut out {
        l.tasks
            .sort_by_key(|e| (e.start_ns, std::cmp::Reverse(end_ns(e)), e.task));
        l.moves
            .sort_by_key(|e| (e.start_ns, std::cmp::Reverse(end_ns(e)), e.task));
    }
    out
}

/// [`lanes`], plus an empty lane for every processor of `procs` that runs tasks (one
/// without children) but has no events: the processors offered that got no work.
fn lanes_with_idle<'a>(events: &'a [LogEvent], procs: &'a [ProcessorInfo]) -> Vec<Lane<'a>> {
    let mut out = lanes(events, procs);
    for p in procs.iter().filter(|p| p.children.is_empty()) {
        if !out.iter().any(|l| l.id == p.id) {
            out.push(Lane {
                id: p.id,
                info: Some(p),
                tasks: Vec::new(),
                moves: Vec::new(),
            });
        }
    }
    let position = |l: &Lane<'_>| procs.iter().position(|p| p.id == l.id);
    out.sort_by_key(|l| (position(l).is_none(), position(l), l.id));
    out
}

/// Length of the union of intervals given as `(start, end)`.
fn union_ns(intervals: impl Iterator<Item = (u64, u64)>) -> u64 {
    let mut v: Vec<(u64, u64)> = intervals.collect();
    v.sort_unstable();
    let mut total = 0;
    let mut cur: Option<(u64, u64)> = None;
    for (s, e) in v {
        match cur {
            Some((cs, ce)) if s <= ce => cur = Some((cs, ce.max(e))),
            Some((cs, ce)) => {
                total += ce - cs;
                cur = Some((s, e));
            }
            None => cur = Some((s, e)),
        }
    }
    if let Some((cs, ce)) = cur {
        total += ce - cs;
    }
    total
}

/// A duration for people: `850 ns`, `12.3 µs`, `4.56 ms`, `1.20 s`.
fn fmt_duration(ns: u64) -> String {
    let x = ns as f64;
    if ns < 1_000 {
        format!("{ns} ns")
    } else if ns < 1_000_000 {
        format!("{} µs", three_digits(x / 1e3))
    } else if ns < 1_000_000_000 {
        format!("{} ms", three_digits(x / 1e6))
    } else {
        format!("{} s", three_digits(x / 1e9))
    }
}

/// A byte count for people: `512 B`, `1.50 KiB`, `4.00 MiB`.
fn fmt_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut x = bytes as f64 / 1024.0;
    let mut unit = 0;
    while x >= 1024.0 && unit + 1 < UNITS.len() {
        x /= 1024.0;
        unit += 1;
    }
    format!("{} {}", three_digits(x), UNITS[unit])
}

/// A number in `[1, 1000)` with three significant digits.
fn three_digits(x: f64) -> String {
    if x < 10.0 {
        format!("{x:.2}")
    } else if x < 100.0 {
        format!("{x:.1}")
    } else {
        format!("{x:.0}")
    }
}

/// A percentage with one decimal.
fn fmt_percent(fraction: f64) -> String {
    format!("{:.1}%", fraction * 100.0)
}

#[cfg(test)]
pub(crate) mod testlog {
    //! Hand-made logs for the tests of this module.

    use std::sync::Arc;

    use crate::log::{EventKind, LogEvent};
    use crate::processor::{MemorySpace, ProcessorId, ProcessorInfo, ProcessorKind};

    /// An OS processor, `threads` CPU threads and one GPU, as a context would list them.
    pub(crate) fn procs(threads: u32) -> Vec<ProcessorInfo> {
        let os = ProcessorId::new(1, 0);
        let mut v = vec![ProcessorInfo {
            id: os,
            kind: ProcessorKind::Os,
            description: "process 1".into(),
            parent: None,
            children: (1..=threads + 1).map(|i| ProcessorId::new(1, i)).collect(),
            memory_space: MemorySpace::LOCAL_HOST,
            default_enabled: false,
            #[cfg(feature = "wgpu")]
            gpu: None,
        }];
        for i in 0..threads {
            v.push(ProcessorInfo {
                id: ProcessorId::new(1, i + 1),
                kind: ProcessorKind::Thread,
                description: format!("cpu thread {i}"),
                parent: Some(os),
                children: Vec::new(),
                memory_space: MemorySpace::LOCAL_HOST,
                default_enabled: true,
                #[cfg(feature = "wgpu")]
                gpu: None,
            });
        }
        v.push(ProcessorInfo {
            id: ProcessorId::new(1, threads + 1),
            kind: ProcessorKind::Wgpu,
            description: "gpu0 <lavapipe> & \"vulkan\"".into(),
            parent: Some(os),
            children: Vec::new(),
            memory_space: MemorySpace::Device {
                process: 1,
                device: 0,
            },
            default_enabled: false,
            #[cfg(feature = "wgpu")]
            gpu: None,
        });
        v
    }

    /// The `i`-th processor of [`procs`].
    pub(crate) fn proc(i: u32) -> ProcessorId {
        ProcessorId::new(1, i)
    }

    /// A task event.
    pub(crate) fn task(
        id: u64,
        name: &str,
        proc_index: u32,
        start_ns: u64,
        end_ns: u64,
        inputs: &[u64],
    ) -> LogEvent {
        LogEvent {
            kind: EventKind::Task,
            task: id,
            name: Arc::from(name),
            processor: proc(proc_index),
            start_ns,
            end_ns,
            bytes_moved: 0,
            inputs: inputs.to_vec(),
            ok: true,
        }
    }

    /// A data move into `proc_index`'s memory space for task `id`.
    pub(crate) fn moved(
        id: u64,
        name: &str,
        proc_index: u32,
        start_ns: u64,
        end_ns: u64,
        bytes: u64,
    ) -> LogEvent {
        LogEvent {
            kind: EventKind::Move,
            bytes_moved: bytes,
            ..task(id, name, proc_index, start_ns, end_ns, &[])
        }
    }

    /// A small diamond run on two threads and the GPU, with two moves and one failure:
    ///
    /// ```text
    /// 1 load (t0) ─┬─> 2 gemm (gpu, 4 MiB moved in) ─┬─> 4 sum (t0)
    ///              └─> 3 scale (t1, fails) ───────────┘
    /// ```
    pub(crate) fn diamond() -> Vec<LogEvent> {
        let mut failed = task(3, "scale", 2, 1_000_000, 3_000_000, &[1]);
        failed.ok = false;
        let mut v = vec![
            task(1, "load", 1, 0, 1_000_000, &[]),
            moved(2, "gemm", 3, 1_000_000, 1_500_000, 4 << 20),
            task(2, "gemm", 3, 1_500_000, 4_000_000, &[1]),
            failed,
            moved(4, "sum", 1, 4_000_000, 4_200_000, 1 << 10),
            task(4, "sum", 1, 4_200_000, 5_000_000, &[2, 3]),
        ];
        v.sort_by_key(|e| (e.start_ns, e.task));
        v
    }

    /// `n` tasks spread over `lanes` threads: each lane runs its tasks back to back with
    /// short gaps, tasks of a few names, a move before every 10th task.
    pub(crate) fn many(n: u64, lanes: u32, task_ns: u64) -> Vec<LogEvent> {
        const NAMES: [&str; 15] = [
            "gemm",
            "syrk",
            "potrf",
            "trsm",
            "map",
            "reduce",
            "copy",
            "fill",
            "axpy",
            "dot",
            "norm",
            "scale",
            "transpose",
            "gather",
            "scatter",
        ];
        let mut clock = vec![0u64; lanes as usize];
        let mut v = Vec::new();
        for id in 1..=n {
            let lane = (id % lanes as u64) as usize;
            // Skewed name frequencies and durations so the legend has a clear order.
            let k = (id * 7 % 31) as usize;
            let name = NAMES[(k * k / 64).min(NAMES.len() - 1)];
            let dur = task_ns + (id * 13 % 5) * task_ns / 4;
            let mut start = clock[lane] + task_ns / 10;
            if id % 10 == 0 {
                v.push(moved(
                    id,
                    name,
                    lane as u32 + 1,
                    start,
                    start + dur / 2,
                    1 << 20,
                ));
                start += dur / 2;
            }
            let inputs: Vec<u64> = if id > lanes as u64 {
                vec![id - lanes as u64]
            } else {
                vec![]
            };
            v.push(task(id, name, lane as u32 + 1, start, start + dur, &inputs));
            clock[lane] = start + dur;
        }
        v.sort_by_key(|e| (e.start_ns, e.task));
        v
    }
}

#[cfg(test)]
mod tests {
    use super::testlog::*;
    use super::*;

    #[test]
    fn union_counts_overlaps_once() {
        assert_eq!(union_ns([(0, 10), (5, 15), (20, 30)].into_iter()), 25);
        assert_eq!(union_ns([(0, 10), (2, 3)].into_iter()), 10);
        assert_eq!(union_ns(std::iter::empty()), 0);
    }

    #[test]
    fn lanes_follow_processor_order_and_skip_idle_ones() {
        let procs = procs(2);
        let mut events = diamond();
        // An event on a processor the list does not know goes last.
        events.push(task(9, "stray", 40, 0, 1, &[]));
        let l = lanes(&events, &procs);
        let ids: Vec<ProcessorId> = l.iter().map(|l| l.id).collect();
        assert_eq!(ids, [proc(1), proc(2), proc(3), proc(40)]);
        assert_eq!(l[0].tasks.len(), 2);
        assert_eq!(l[0].moves.len(), 1);
        assert_eq!(l[3].label(), "processor 1:40");
        assert_eq!(l[0].label(), "cpu thread 0 (1:1)");
    }

    #[test]
    fn formats() {
        assert_eq!(fmt_duration(850), "850 ns");
        assert_eq!(fmt_duration(12_340), "12.3 µs");
        assert_eq!(fmt_duration(4_560_000), "4.56 ms");
        assert_eq!(fmt_duration(1_200_000_000), "1.20 s");
        assert_eq!(fmt_bytes(512), "512 B");
        assert_eq!(fmt_bytes(4 << 20), "4.00 MiB");
        assert_eq!(fmt_bytes(1536), "1.50 KiB");
        assert_eq!(fmt_percent(0.5), "50.0%");
    }
}
