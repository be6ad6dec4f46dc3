//! Per-processor numbers of a run, printable as a table.

use std::fmt;

use super::{duration_ns, fmt_bytes, fmt_duration, fmt_percent, lanes, span, union_ns, LogEvent};
use crate::log::EventKind;
use crate::processor::{ProcessorId, ProcessorInfo, ProcessorKind};

/// What one processor did during a run: a row of [`Summary`].
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct SummaryRow {
    /// The processor.
    pub processor: ProcessorId,
    /// Its kind, when the processor list has it.
    pub kind: Option<ProcessorKind>,
    /// Its description (`processor 1:7` when the processor list does not have it).
    pub description: String,
    /// Tasks it ran, failed ones included.
    pub tasks: usize,
    /// Tasks that failed on it.
    pub failed: usize,
    /// Time it spent running tasks, counting overlapping tasks once.
    pub busy_ns: u64,
    /// `busy_ns` over the span of the run, between 0 and 1.
    pub utilization: f64,
    /// Data moves into its memory space.
    pub moves: usize,
    /// Time those moves took, counting overlapping moves once.
    pub move_ns: u64,
    /// Bytes those moves brought in.
    pub bytes_in: u64,
}

/// Numbers of a run per processor, with totals: see [`summarize`].
///
/// Its [`Display`](fmt::Display) is an aligned text table.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct Summary {
    /// One row per processor that ran a task or received data, in the order of the
    /// processor list.
    pub rows: Vec<SummaryRow>,
    /// Start of the run: the earliest start of any event, in ns since the context started.
    pub start_ns: u64,
    /// The run's span: from the earliest start to the latest end of any event.
    pub span_ns: u64,
    /// Tasks run.
    pub tasks: usize,
    /// Tasks that failed.
    pub failed: usize,
    /// Busy time summed over the processors.
    pub busy_ns: u64,
    /// `busy_ns` over `span_ns` times the number of rows: how full the processors that took
    /// part were, between 0 and 1.
    pub utilization: f64,
    /// Data moves.
    pub moves: usize,
    /// Bytes moved.
    pub bytes_moved: u64,
    /// Values spilled to disk under the memory limit, and the bytes written.
    pub spills: (usize, u64),
    /// Spilled values read back, and the bytes read.
    pub reloads: (usize, u64),
    /// Buffers evicted from GPUs under their memory budgets, and the bytes those evictions
    /// copied to host memory.
    pub gpu_evictions: (usize, u64),
}

/// Sums up a run per processor: tasks, failures, busy time, utilization and data moved in.
///
/// ```
/// use dagger::prelude::*;
///
/// let ctx = Context::builder().threads(2).build()?;
/// ctx.enable_logging();
/// let tasks: Vec<_> = (0..10).map(|i| ctx.spawn(|x: i64| x + 1, (i,))).collect();
/// for t in &tasks {
///     t.wait();
/// }
/// let summary = dagger::viz::summarize(&ctx.fetch_logs(), &ctx.processors());
/// assert_eq!(summary.tasks, 10);
/// assert_eq!(summary.rows.iter().map(|r| r.tasks).sum::<usize>(), 10);
/// assert!(summary.rows.iter().all(|r| r.utilization <= 1.0));
/// println!("{summary}");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn summarize(events: &[LogEvent], procs: &[ProcessorInfo]) -> Summary {
    let (start_ns, end) = span(events);
    let span_ns = end - start_ns;
    let fraction = |ns: u64| {
        if span_ns == 0 {
            0.0
        } else {
            ns as f64 / span_ns as f64
        }
    };
    let rows: Vec<SummaryRow> = lanes(events, procs)
        .iter()
        .map(|l| {
            // Transfers into the processor's memory space (not disk traffic).
            let moves = || l.moves.iter().filter(|e| e.kind == EventKind::Move);
            let busy_ns = l.busy_ns();
            SummaryRow {
                processor: l.id,
                kind: l.info.map(|p| p.kind),
                description: l.description(),
                tasks: l.tasks.len(),
                failed: l.tasks.iter().filter(|e| !e.ok).count(),
                busy_ns,
                utilization: fraction(busy_ns),
                moves: moves().count(),
                move_ns: union_ns(moves().map(|e| (e.start_ns, e.start_ns + duration_ns(e)))),
                bytes_in: moves().map(|e| e.bytes_moved).sum(),
            }
        })
        .collect();
    let busy_ns = rows.iter().map(|r| r.busy_ns).sum();
    let disk = |kind: EventKind| {
        events
            .iter()
            .filter(|e| e.kind == kind)
            .fold((0, 0), |(n, b), e| (n + 1, b + e.bytes_moved))
    };
    Summary {
        start_ns,
        span_ns,
        tasks: rows.iter().map(|r| r.tasks).sum(),
        failed: rows.iter().map(|r| r.failed).sum(),
        busy_ns,
        utilization: fraction(busy_ns) / rows.len().max(1) as f64,
        moves: rows.iter().map(|r| r.moves).sum(),
        bytes_moved: events
            .iter()
            .filter(|e| e.kind == EventKind::Move)
            .map(|e| e.bytes_moved)
            .sum(),
        spills: disk(EventKind::Spill),
        reloads: disk(EventKind::Reload),
        gpu_evictions: disk(EventKind::GpuEvict),
        rows,
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const HEAD: [&str; 8] = [
            "processor",
            "id",
            "tasks",
            "failed",
            "busy",
            "util",
            "moves",
            "moved in",
        ];
        let mut table: Vec<[String; 8]> = vec![HEAD.map(String::from)];
        for r in &self.rows {
            table.push([
                r.description.clone(),
                r.processor.to_string(),
                r.tasks.to_string(),
                r.failed.to_string(),
                fmt_duration(r.busy_ns),
                fmt_percent(r.utilization),
                r.moves.to_string(),
                fmt_bytes(r.bytes_in),
            ]);
        }
        table.push([
            "total".into(),
            String::new(),
            self.tasks.to_string(),
            self.failed.to_string(),
            fmt_duration(self.busy_ns),
            fmt_percent(self.utilization),
            self.moves.to_string(),
            fmt_bytes(self.bytes_moved),
        ]);
        let mut widths = [0usize; 8];
        for row in &table {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let rule: usize = widths.iter().sum::<usize>() + 2 * (widths.len() - 1);
        writeln!(
            f,
            "run of {} over {} on {} processors",
            fmt_duration(self.span_ns),
            plural(self.tasks, "task"),
            self.rows.len()
        )?;
        for (i, row) in table.iter().enumerate() {
            if i == 1 || i == table.len() - 1 {
                writeln!(f, "{}", "-".repeat(rule))?;
            }
            let mut line = String::new();
            for (c, (cell, w)) in row.iter().zip(widths).enumerate() {
                if c > 0 {
                    line.push_str("  ");
                }
                let pad = " ".repeat(w - cell.chars().count());
                // Names left-aligned, numbers right-aligned.
                if c < 2 {
                    line.push_str(cell);
                    line.push_str(&pad);
                } else {
                    line.push_str(&pad);
                    line.push_str(cell);
                }
            }
            writeln!(f, "{}", line.trim_end())?;
        }
        if self.spills.0 + self.reloads.0 > 0 {
            writeln!(
                f,
                "disk: {} spilled ({}), {} read back ({})",
                plural(self.spills.0, "value"),
                fmt_bytes(self.spills.1),
                plural(self.reloads.0, "value"),
                fmt_bytes(self.reloads.1)
            )?;
        }
        if self.gpu_evictions.0 > 0 {
            writeln!(
                f,
                "gpu memory: {} evicted, {} copied to host memory",
                plural(self.gpu_evictions.0, "buffer"),
                fmt_bytes(self.gpu_evictions.1)
            )?;
        }
        Ok(())
    }
}

fn plural(n: usize, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}

#[cfg(test)]
mod tests {
    use super::super::testlog::*;
    use super::*;

    #[test]
    fn utilization_of_a_hand_made_run() {
        // Span 0..10 ms. Thread 0 busy 0..5 ms: 50%. Thread 1 runs two overlapping tasks,
        // 2..6 and 4..8 ms: busy 6 ms, 60%. The GPU receives 1000 bytes and runs nothing.
        let log = vec![
            task(1, "a", 1, 0, 2_000_000, &[]),
            task(2, "a", 1, 2_000_000, 5_000_000, &[1]),
            task(3, "b", 2, 2_000_000, 6_000_000, &[]),
            task(4, "b", 2, 4_000_000, 8_000_000, &[]),
            moved(5, "c", 3, 8_000_000, 10_000_000, 1000),
        ];
        let s = summarize(&log, &procs(2));
        assert_eq!(s.span_ns, 10_000_000);
        assert_eq!(s.start_ns, 0);
        assert_eq!(s.rows.len(), 3);
        let [t0, t1, gpu] = &s.rows[..] else {
            unreachable!()
        };
        assert_eq!((t0.tasks, t0.busy_ns), (2, 5_000_000));
        assert!((t0.utilization - 0.5).abs() < 1e-12);
        assert_eq!((t1.tasks, t1.busy_ns), (2, 6_000_000));
        assert!((t1.utilization - 0.6).abs() < 1e-12);
        assert_eq!(
            (gpu.tasks, gpu.moves, gpu.bytes_in, gpu.move_ns),
            (0, 1, 1000, 2_000_000)
        );
        assert_eq!(gpu.utilization, 0.0);
        assert_eq!(gpu.kind, Some(ProcessorKind::Wgpu));
        assert_eq!(s.tasks, 4);
        assert_eq!(s.busy_ns, 11_000_000);
        assert!((s.utilization - 11.0 / 30.0).abs() < 1e-12);
        assert_eq!(s.bytes_moved, 1000);
    }

    #[test]
    fn the_span_starts_at_the_first_event() {
        let log = vec![
            task(1, "a", 1, 1_000_000, 1_500_000, &[]),
            task(2, "a", 1, 1_500_000, 2_000_000, &[]),
        ];
        let s = summarize(&log, &procs(1));
        assert_eq!((s.start_ns, s.span_ns), (1_000_000, 1_000_000));
        assert!((s.rows[0].utilization - 1.0).abs() < 1e-12);
    }

    #[test]
    fn failures_are_counted() {
        let s = summarize(&diamond(), &procs(2));
        assert_eq!((s.tasks, s.failed, s.moves), (4, 1, 2));
        assert_eq!(s.rows[1].failed, 1);
        assert_eq!(s.bytes_moved, (4 << 20) + 1024);
    }

    #[test]
    fn the_table_is_aligned() {
        let text = summarize(&diamond(), &procs(2)).to_string();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "run of 5.00 ms over 4 tasks on 3 processors");
        assert!(lines[1].starts_with("processor"));
        // Header, rule, three processors, rule, total.
        assert_eq!(lines.len(), 1 + 1 + 1 + 3 + 1 + 1);
        assert!(lines[6].starts_with("------"));
        assert!(lines[7].starts_with("total"));
        // Right-aligned columns end at the same character.
        let width = lines[1].chars().count();
        for l in &lines[1..] {
            if !l.starts_with('-') {
                assert_eq!(l.chars().count(), width, "{l:?} in\n{text}");
            }
        }
        assert!(lines[5].contains("50.0%"), "{text}");
        assert!(lines[5].contains("4.00 MiB"), "{text}");
    }

    #[test]
    fn an_empty_log() {
        let s = summarize(&[], &procs(1));
        assert!(s.rows.is_empty());
        assert_eq!((s.span_ns, s.tasks, s.utilization), (0, 0, 0.0));
        assert!(s.to_string().contains("total"));
    }
}
