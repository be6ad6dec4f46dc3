//! Chrome trace-event JSON, for Perfetto and `chrome://tracing`.

use std::collections::{BTreeMap, HashMap};

use serde_json::{json, Value as Json};

use super::{end_ns, lanes, LogEvent};
use crate::log::EventKind;
use crate::processor::ProcessorInfo;

/// Thread ids of extra tracks for slices that overlap without nesting start here.
const OVERFLOW_TID: u64 = 1 << 20;

/// Chrome trace-event JSON of a run, to open in [Perfetto](https://ui.perfetto.dev) or
/// `chrome://tracing`.
///
/// The result is the object form, `{"traceEvents": [...], "displayTimeUnit": "ms"}`:
///
/// - each process is a `pid` and each processor that ran something a track (`tid` = its
///   index), named after the processor's description and identifier;
/// - each task is a complete slice (`"ph": "X"`, category `task`) with its task id, inputs
///   and success in `args`;
/// - each data move is a slice named `move` of category `move` on the track of the
///   processor it moved into, with the byte count in `args`;
/// - each input of a task is a flow arrow from the producer's slice to the consumer's.
///
/// Slices on one track must nest or be disjoint for trace viewers to draw them; slices of a
/// processor that overlap without nesting (tasks sharing a GPU, a move that outlasts its
/// task) go to an extra track of that processor, named with a `#2`, `#3`, ... suffix.
///
/// ```
/// use dagger::prelude::*;
///
/// let ctx = Context::builder().threads(2).build()?;
/// ctx.enable_logging();
/// let a = ctx.spawn(|x: i64| x + 1, (1,));
/// let b = ctx.spawn(|x: i64| x * 2, (&a,));
/// b.wait();
/// let json = dagger::viz::chrome_trace(&ctx.fetch_logs(), &ctx.processors());
/// let trace: serde_json::Value = serde_json::from_str(&json)?;
/// let slices = trace["traceEvents"].as_array().unwrap().iter().filter(|e| e["ph"] == "X");
/// assert_eq!(slices.count(), 2);
/// // std::fs::write("trace.json", json)?;  // then open it in ui.perfetto.dev
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn chrome_trace(events: &[LogEvent], procs: &[ProcessorInfo]) -> String {
    let lanes = lanes(events, procs);
    let mut out: Vec<Json> = Vec::new();

    // Processes, named after their OS processor when the list has it.
    let processes: BTreeMap<u32, ()> = lanes.iter().map(|l| (l.id.process(), ())).collect();
    for &pid in processes.keys() {
        let name = procs
            .iter()
            .find(|p| p.parent.is_none() && p.id.process() == pid)
            .map_or_else(|| format!("process {pid}"), |p| p.description.clone());
        out.push(json!({"name": "process_name", "ph": "M", "pid": pid, "args": {"name": name}}));
    }

    // Where each task's slice went, for the flow arrows.
    let mut placed: HashMap<u64, (u32, u64, u64, u64)> = HashMap::new();
    let mut slices: Vec<Json> = Vec::new();
    for (position, lane) in lanes.iter().enumerate() {
        let pid = lane.id.process();
        let mut all: Vec<&LogEvent> = lane.tasks.iter().chain(&lane.moves).copied().collect();
        all.sort_by_key(|e| (e.start_ns, std::cmp::Reverse(end_ns(e))));
        let tracks = pack_nested(all.iter().map(|e| (e.start_ns, end_ns(e))));
        let n_tracks = tracks.iter().max().map_or(1, |&t| t + 1);
        let tid_of = |track: usize| lane.id.index() as u64 + OVERFLOW_TID * track as u64;
        for track in 0..n_tracks {
            let tid = tid_of(track);
            let name = match track {
                0 => lane.label(),
                k => format!("{} #{}", lane.label(), k + 1),
            };
            let sort = position * 64 + track;
            out.push(
                json!({"name": "thread_name", "ph": "M", "pid": pid, "tid": tid,
                "args": {"name": name}}),
            );
            out.push(
                json!({"name": "thread_sort_index", "ph": "M", "pid": pid, "tid": tid,
                "args": {"sort_index": sort}}),
            );
        }
        for (e, track) in all.iter().zip(tracks) {
            let tid = tid_of(track);
            let (ts, dur) = (us(e.start_ns), us(end_ns(e) - e.start_ns));
            slices.push(match e.kind {
                EventKind::Task => {
                    placed.insert(e.task, (pid, tid, e.start_ns, end_ns(e)));
                    json!({"name": &*e.name, "cat": "task", "ph": "X", "pid": pid, "tid": tid,
                        "ts": ts, "dur": dur,
                        "args": {"task": e.task, "ok": e.ok, "inputs": e.inputs}})
                }
                EventKind::Move => {
                    json!({"name": "move", "cat": "move", "ph": "X", "pid": pid, "tid": tid,
                        "ts": ts, "dur": dur,
                        "args": {"task": e.task, "for": &*e.name, "bytes": e.bytes_moved}})
                }
                EventKind::Spill | EventKind::Reload => {
                    let name = if e.kind == EventKind::Spill {
                        "spill"
                    } else {
                        "reload"
                    };
                    json!({"name": name, "cat": "disk", "ph": "X", "pid": pid, "tid": tid,
                        "ts": ts, "dur": dur,
                        "args": {"type": &*e.name, "bytes": e.bytes_moved}})
                }
                EventKind::GpuEvict => {
                    json!({"name": "gpu evict", "cat": "gpu memory", "ph": "X", "pid": pid,
                        "tid": tid, "ts": ts, "dur": dur,
                        "args": {"type": &*e.name, "bytes": e.bytes_moved}})
                }
            });
        }
    }
    out.append(&mut slices);

    // One arrow per (input, consumer) pair whose both ends were logged.
    let mut flow_id = 0u64;
    for e in events.iter().filter(|e| e.kind == EventKind::Task) {
        let Some(&(cpid, ctid, cstart, cend)) = placed.get(&e.task) else {
            continue;
        };
        for input in &e.inputs {
            let Some(&(ppid, ptid, pstart, pend)) = placed.get(input) else {
                continue;
            };
            flow_id += 1;
            // Timestamps a little inside the slices, so that viewers which round
            // microseconds to nanoseconds still bind each end to its slice.
            let out_ts = pend - inset(pstart, pend);
            let in_ts = cstart + inset(cstart, cend);
            out.push(
                json!({"name": "input", "cat": "dependency", "ph": "s", "id": flow_id,
                "pid": ppid, "tid": ptid, "ts": us(out_ts)}),
            );
            out.push(
                json!({"name": "input", "cat": "dependency", "ph": "f", "bp": "e",
                "id": flow_id, "pid": cpid, "tid": ctid, "ts": us(in_ts)}),
            );
        }
    }

    json!({"traceEvents": out, "displayTimeUnit": "ms"}).to_string()
}

/// Nanoseconds as the fractional microseconds of the trace format.
fn us(ns: u64) -> f64 {
    ns as f64 / 1000.0
}

/// How far inside a slice a flow end is placed: up to 100 ns, at most half the slice.
fn inset(start: u64, end: u64) -> u64 {
    ((end - start) / 2).min(100)
}

/// Assigns intervals, sorted by start and then by decreasing end, to tracks on which any two
/// intervals nest or are disjoint. Returns the track of each interval; the first fitting
/// track is used, so well-nested input stays on track 0.
fn pack_nested(intervals: impl Iterator<Item = (u64, u64)>) -> Vec<usize> {
    // For each track, the ends of the intervals still open, innermost last.
    let mut open: Vec<Vec<u64>> = Vec::new();
    let mut out = Vec::new();
    for (s, e) in intervals {
        let mut chosen = None;
        for (t, stack) in open.iter_mut().enumerate() {
            while stack.last().is_some_and(|&end| end <= s) {
                stack.pop();
            }
            if stack.last().is_none_or(|&end| end >= e) {
                stack.push(e);
                chosen = Some(t);
                break;
            }
        }
        out.push(chosen.unwrap_or_else(|| {
            open.push(vec![e]);
            open.len() - 1
        }));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::testlog::*;
    use super::*;

    fn parse(events: &[LogEvent], procs: &[ProcessorInfo]) -> Vec<Json> {
        let text = chrome_trace(events, procs);
        let v: Json = serde_json::from_str(&text).expect("the trace is JSON");
        assert_eq!(v["displayTimeUnit"], "ms");
        v["traceEvents"]
            .as_array()
            .expect("traceEvents is an array")
            .clone()
    }

    fn phase<'a>(events: &'a [Json], ph: &str) -> Vec<&'a Json> {
        events.iter().filter(|e| e["ph"] == ph).collect()
    }

    #[test]
    fn one_slice_per_event_on_its_processors_track() {
        let procs = procs(2);
        let log = diamond();
        let trace = parse(&log, &procs);
        let slices = phase(&trace, "X");
        assert_eq!(slices.len(), log.len());

        let tasks: Vec<&&Json> = slices.iter().filter(|s| s["cat"] == "task").collect();
        assert_eq!(tasks.len(), 4);
        for e in log.iter().filter(|e| e.kind == EventKind::Task) {
            let s = tasks
                .iter()
                .find(|s| s["args"]["task"] == e.task)
                .expect("a slice per task");
            assert_eq!(s["tid"], e.processor.index() as u64, "task {}", e.task);
            assert_eq!(s["pid"], 1);
            assert_eq!(s["name"], &*e.name);
            assert_eq!(s["args"]["ok"], e.ok);
            assert_eq!(s["ts"].as_f64().unwrap(), e.start_ns as f64 / 1e3);
            assert_eq!(
                s["dur"].as_f64().unwrap(),
                (e.end_ns - e.start_ns) as f64 / 1e3
            );
        }
        let moves: Vec<&&Json> = slices.iter().filter(|s| s["cat"] == "move").collect();
        assert_eq!(moves.len(), 2);
        let gemm_move = moves.iter().find(|m| m["args"]["task"] == 2).unwrap();
        assert_eq!(gemm_move["args"]["bytes"], 4u64 << 20);
        assert_eq!(gemm_move["tid"], 3);
        assert_eq!(gemm_move["name"], "move");
    }

    #[test]
    fn slices_lie_within_the_span() {
        let log = many(500, 3, 20_000);
        let trace = parse(&log, &procs(3));
        let (start, end) = super::super::span(&log);
        let slices = phase(&trace, "X");
        assert_eq!(slices.len(), log.len());
        for s in slices {
            let ts = s["ts"].as_f64().unwrap();
            let dur = s["dur"].as_f64().unwrap();
            assert!(dur > 0.0);
            assert!(ts >= start as f64 / 1e3 && ts + dur <= end as f64 / 1e3 + 1e-9);
        }
    }

    #[test]
    fn one_named_track_per_processor_that_ran_something() {
        let procs = procs(4); // threads 1..=4, gpu 5; the diamond uses 1, 2 and 3
        let trace = parse(&diamond(), &procs);
        let names = phase(&trace, "M");
        let threads: Vec<&&Json> = names
            .iter()
            .filter(|m| m["name"] == "thread_name")
            .collect();
        assert_eq!(threads.len(), 3);
        let mut tids: Vec<u64> = threads.iter().map(|m| m["tid"].as_u64().unwrap()).collect();
        tids.sort_unstable();
        assert_eq!(tids, [1, 2, 3]);
        let t1 = threads.iter().find(|m| m["tid"] == 1).unwrap();
        assert_eq!(t1["args"]["name"], "cpu thread 0 (1:1)");
        let process: Vec<&&Json> = names
            .iter()
            .filter(|m| m["name"] == "process_name")
            .collect();
        assert_eq!(process.len(), 1);
        assert_eq!(process[0]["args"]["name"], "process 1");
    }

    #[test]
    fn one_flow_per_input_edge_bound_inside_both_slices() {
        let log = many(300, 4, 10_000);
        let trace = parse(&log, &procs(4));
        let pairs: usize = log
            .iter()
            .filter(|e| e.kind == EventKind::Task)
            .map(|e| e.inputs.len())
            .sum();
        assert_eq!(pairs, 296);
        let starts = phase(&trace, "s");
        let ends = phase(&trace, "f");
        assert_eq!(starts.len(), pairs);
        assert_eq!(ends.len(), pairs);

        let slice_of = |task: u64| {
            trace
                .iter()
                .find(|e| e["ph"] == "X" && e["cat"] == "task" && e["args"]["task"] == task)
                .unwrap()
        };
        let inside = |slice: &Json, flow: &Json| {
            let (ts, dur) = (
                slice["ts"].as_f64().unwrap(),
                slice["dur"].as_f64().unwrap(),
            );
            let t = flow["ts"].as_f64().unwrap();
            slice["tid"] == flow["tid"] && ts < t && t < ts + dur
        };
        for (s, f) in starts.iter().zip(&ends) {
            assert_eq!(s["id"], f["id"]);
            assert_eq!(f["bp"], "e");
        }
        // Every consumer's inputs are matched by a flow from the producer's slice.
        let mut flows = starts.iter().zip(&ends);
        for e in log.iter().filter(|e| e.kind == EventKind::Task) {
            for &input in &e.inputs {
                let (s, f) = flows.next().unwrap();
                assert!(inside(slice_of(input), s), "flow out of task {input}");
                assert!(inside(slice_of(e.task), f), "flow into task {}", e.task);
            }
        }
    }

    #[test]
    fn inputs_missing_from_the_log_draw_no_arrow() {
        let log = vec![task(5, "late", 1, 0, 10, &[1, 2, 3])];
        let trace = parse(&log, &procs(1));
        assert!(phase(&trace, "s").is_empty());
        assert!(phase(&trace, "f").is_empty());
    }

    #[test]
    fn overlapping_slices_move_to_an_extra_track_of_their_processor() {
        // Two tasks sharing the GPU; a third nested in the first stays on the first track.
        let log = vec![
            task(1, "a", 3, 0, 100, &[]),
            task(2, "b", 3, 50, 150, &[]),
            task(3, "c", 3, 10, 20, &[]),
        ];
        let trace = parse(&log, &procs(2));
        let tid = |task: u64| {
            phase(&trace, "X")
                .into_iter()
                .find(|e| e["args"]["task"] == task)
                .unwrap()["tid"]
                .as_u64()
                .unwrap()
        };
        assert_eq!(tid(1), 3);
        assert_eq!(tid(3), 3);
        assert_eq!(tid(2), 3 + OVERFLOW_TID);
        let names: Vec<String> = phase(&trace, "M")
            .into_iter()
            .filter(|m| m["name"] == "thread_name")
            .map(|m| m["args"]["name"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(names.len(), 2);
        assert!(names[1].ends_with("(1:3) #2"), "{names:?}");
    }

    #[test]
    fn packing_keeps_nested_and_disjoint_intervals_together() {
        let t = pack_nested([(0, 10), (0, 5), (5, 10), (10, 20), (15, 25), (20, 30)].into_iter());
        assert_eq!(t, [0, 0, 0, 0, 1, 0]);
    }

    #[test]
    fn an_empty_log_is_an_empty_trace() {
        assert!(parse(&[], &procs(2)).is_empty());
    }
}
