//! Placement: which processors may run a task (its scope, and what each processor can run),
//! and among them the one with the earliest estimated finish. The whole cost model is here.
//!
//! The estimate for a processor is the time it becomes free (work placed on it by cost,
//! plus its queue), plus moving the inputs that are not in its memory space yet, plus the
//! task's run time there. Run times are learned per (function, argument signature,
//! processor class) as an exponentially weighted average; all CPU threads form one class
//! (they are identical) and every other processor is its own. Before a pairing is measured,
//! a kernel's flop count over the processor's prior throughput stands in, else the task's
//! time hint, or zero — so every candidate gets tried and measured early.
//!
//! A processor that reports itself unavailable ([`Processor::is_available`], e.g. a GPU
//! whose device was lost) is no candidate for new tasks and is passed over when a ready
//! task is placed.
//!
//! [`Processor::is_available`]: crate::Processor::is_available

use std::cell::Cell;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use parking_lot::RwLock;
use smallvec::SmallVec;

use super::task::{Input, Work};
use super::worker::local;
use super::{Candidates, Exec, ProcEntry, Runtime};
use crate::chunk::Data;
use crate::error::ScheduleError;
use crate::kernel::KernelCall;
use crate::processor::TaskInfo;
use crate::scope::{ProcSet, Scope};

/// Host↔device bandwidth placement assumes, in bytes per ns (4 GB/s: below PCIe 3 x16,
/// about what Mesa's software devices reach).
const TRANSFER_BYTES_PER_NS: f64 = 4.0;

/// Prior throughput of a CPU thread in GFLOP/s: a single-threaded BLAS tile on one core.
pub(crate) const THREAD_PRIOR_GFLOPS: f64 = 50.0;

thread_local! {
    static EXTERNAL_RR: Cell<usize> = const { Cell::new(0) };
}

impl Runtime {
    /// The slot of a ready task placed by cost among `set`, and its estimated run time.
    /// Among CPU threads with nothing to move, `near` (the worker that made an input, when
    /// it is a candidate) takes it: the input is fresh in its cache and in memory.
    pub(super) fn place(&self, set: &ProcSet, w: &Work, near: Option<usize>) -> (usize, u64) {
        let flops = w.kernel.as_ref().and_then(|k| k.flops());
        // Among CPU threads and host values nothing moves: look no further (and clone
        // nothing) then.
        let anything_moves = set.iter().any(|i| self.procs[i].exec != Exec::Thread)
            || w.inputs[..w.n_args].iter().any(|i| match i {
                Input::Task(t) => t
                    .result
                    .get()
                    .and_then(|r| r.as_ref().ok())
                    .is_some_and(|d| !d.space().is_host()),
                Input::Data(d) => !d.space().is_host(),
            });
        if let Some(s) =
            near.filter(|&s| !anything_moves && set.iter().any(|i| i == s) && self.is_enabled(s))
        {
            let run = self.run_estimate(s, w.cost_key, flops, w.time_hint_ns);
            return (s, run);
        }
        let args: SmallVec<[Data; 4]> = if anything_moves {
            w.inputs[..w.n_args]
                .iter()
                .filter_map(|i| i.data().ok())
                .collect()
        } else {
            SmallVec::new()
        };
        let moving = |i: usize| -> u64 {
            if !anything_moves {
                return 0;
            }
            let p = &self.procs[i];
            args.iter()
                .map(|d| {
                    if p.exec == Exec::Thread {
                        d.bytes_to_host()
                    } else if d.space() == p.space {
                        0
                    } else {
                        match d.peek() {
                            Some(v) => p.proc.bytes_to_move_in(d.space(), &v),
                            None => d.managed_bytes(),
                        }
                    }
                })
                .sum()
        };
        self.pick_by_cost(set, w.cost_key, w.time_hint_ns, flops, moving)
    }

    pub(super) fn pick_thread_slot(&self) -> usize {
        if let Some(l) = local() {
            if std::ptr::eq(Arc::as_ptr(&l.rt), self) && l.primary.get() {
                let s = l.slot.get();
                if self.procs[s].exec == Exec::Thread && self.is_enabled(s) {
                    return s;
                }
            }
        }
        let n = self.thread_slots.len();
        let c = EXTERNAL_RR.with(|c| {
            let v = c.get();
            c.set(v.wrapping_add(1));
            v
        });
        (0..n)
            .map(|k| self.thread_slots[(c + k) % n])
            .find(|&s| self.is_enabled(s))
            .unwrap_or(self.thread_slots[c % n])
    }

    /// A task's estimated run time in ns on `slot`: learned under `key`, else its `flops`
    /// at the processor's prior rate, else its time hint (0 when it has none).
    pub(super) fn run_estimate(
        &self,
        slot: usize,
        key: Option<CostKey>,
        flops: Option<f64>,
        hint_ns: u64,
    ) -> u64 {
        key.and_then(|k| self.cost.estimate(k, self.cost_class(slot)))
            .or_else(|| flops.map(|f| (f / self.procs[slot].prior_gflops) as u64))
            .unwrap_or(hint_ns)
    }

    /// The class a processor's run times are learned under: all threads share one.
    pub(super) fn cost_class(&self, slot: usize) -> u32 {
        if self.procs[slot].exec == Exec::Thread {
            0
        } else {
            1 + slot as u32
        }
    }

    /// Earliest estimated finish among `set`: the time the processor becomes free (work
    /// placed on it by cost, plus its queue), plus moving the `moving(slot)` bytes of
    /// inputs that are not in its memory space yet, plus the task's estimated run time
    /// there. Returns the processor and the run-time estimate.
    fn pick_by_cost(
        &self,
        set: &ProcSet,
        key: Option<CostKey>,
        hint_ns: u64,
        flops: Option<f64>,
        moving: impl Fn(usize) -> u64,
    ) -> (usize, u64) {
        let mut best = (usize::MAX, 0);
        let mut best_finish = u64::MAX;
        let record = self.log.enabled();
        for i in set.iter() {
            // A processor lost or disabled since the task was spawned is passed over.
            if (self.procs[i].exec == Exec::Device && !self.procs[i].available())
                || !self.is_enabled(i)
            {
                continue;
            }
            let s = &self.slots[i];
            let run = self.run_estimate(i, key, flops, hint_ns);
            let busy = u64::from(s.used.load(Ordering::Relaxed) > 0);
            let free_at = s.queued_ns.load(Ordering::Relaxed)
                + (s.queue_len() as u64 + busy) * run.max(1_000);
            let moving = moving(i) as f64 / TRANSFER_BYTES_PER_NS;
            let finish = free_at + moving as u64 + run;
            if record {
                s.offered.fetch_add(1, Ordering::Relaxed);
                s.estimate_sum_ns.fetch_add(run, Ordering::Relaxed);
            }
            if finish < best_finish {
                best_finish = finish;
                best = (i, run);
            }
        }
        if best.0 == usize::MAX {
            // Every candidate is gone: the first one takes the task and fails it, saying why.
            best.0 = set.iter().next().expect("a candidate set is not empty");
        } else if record {
            self.slots[best.0].chosen.fetch_add(1, Ordering::Relaxed);
        }
        if tracing::enabled!(tracing::Level::DEBUG) {
            let p = &self.procs[best.0];
            tracing::debug!(
                processor = %p.id,
                estimate_ns = best.1,
                finish_ns = best_finish,
                candidates = set.iter().count(),
                "placed on {} by cost",
                p.description
            );
        }
        best
    }

    /// The placement record of every processor since the last call, reset to zero.
    pub(crate) fn take_placements(&self) -> Vec<crate::log::Placement> {
        self.procs
            .iter()
            .zip(&self.slots)
            .map(|(p, s)| {
                let offered = s.offered.swap(0, Ordering::Relaxed);
                let sum = s.estimate_sum_ns.swap(0, Ordering::Relaxed);
                crate::log::Placement {
                    processor: p.id,
                    offered,
                    chosen: s.chosen.swap(0, Ordering::Relaxed),
                    mean_estimate_ns: sum.checked_div(offered).unwrap_or(0),
                }
            })
            .collect()
    }
}

/// What a task needs from a processor.
pub(crate) struct TaskKind<'a> {
    /// It can run on CPU threads (a closure, or a kernel with a CPU implementation).
    pub(crate) host: bool,
    /// The kernel it runs, if it is a kernel task.
    pub(crate) kernel: Option<&'a KernelCall>,
    /// It can run in another process (a function registered by name).
    pub(crate) portable: bool,
}

impl TaskKind<'_> {
    fn is_plain_closure(&self) -> bool {
        self.host && self.kernel.is_none() && !self.portable
    }
}

/// Placement of a new task: its candidate processors, or why there are none.
pub(crate) fn resolve_candidates(
    rt: &Runtime,
    scope: Option<&Scope>,
    kind: &TaskKind<'_>,
    info: impl Fn() -> TaskInfo,
) -> Result<Candidates, ScheduleError> {
    if scope.is_none()
        && rt.default_closure_all_threads
        && kind.is_plain_closure()
        && rt.disabled_count.load(Ordering::Acquire) == 0
    {
        if rt.thread_slots.is_empty() {
            return Err(no_processor(rt, "default", |_| "not a CPU thread".into()));
        }
        return Ok(Candidates::AllThreads);
    }
    let scope_ref = scope.cloned().unwrap_or_default();
    let mut set = ProcSet::default();
    let mut info_cache: Option<TaskInfo> = None;
    for (i, p) in rt.procs.iter().enumerate() {
        if !scope_ref.contains(&p.view()) {
            continue;
        }
        let ok = match p.exec {
            _ if !rt.is_enabled(i) => false,
            Exec::None => false,
            Exec::Thread => kind.host,
            // A processor that is no longer available (a lost device) takes no new tasks.
            Exec::Device => {
                p.available() && {
                    let ti = info_cache.get_or_insert_with(&info);
                    p.proc.is_compatible(ti)
                }
            }
        };
        if ok {
            set.insert(i);
        }
    }
    if set.is_empty() {
        let ti = info();
        return Err(no_processor(rt, &scope_ref.to_string(), |p| {
            if !scope_ref.contains(&p.view()) {
                if !p.default_enabled && scope_ref == Scope::Default {
                    "not enabled by default".into()
                } else {
                    "outside the scope".into()
                }
            } else {
                match p.exec {
                    Exec::None => "runs no tasks".into(),
                    _ if !rt.is_enabled(p.id.index()) => "disabled".into(),
                    Exec::Thread if !kind.host => "the kernel has no CPU implementation".into(),
                    Exec::Thread => "available".into(),
                    Exec::Device if !p.available() => "not available (lost or shut down)".into(),
                    Exec::Device if !p.proc.is_compatible(&ti) => p.proc.incompatibility(&ti),
                    Exec::Device => "available".into(),
                }
            }
        }));
    }
    if set == rt.thread_set {
        Ok(Candidates::AllThreads)
    } else {
        Ok(Candidates::Set(Box::new(set)))
    }
}

fn no_processor(rt: &Runtime, scope: &str, why: impl Fn(&ProcEntry) -> String) -> ScheduleError {
    ScheduleError::NoProcessor {
        scope: scope.to_owned(),
        considered: rt
            .procs
            .iter()
            .map(|p| (format!("{} [{}]", p.description, p.id), why(p)))
            .collect(),
    }
}

/// Identifies what a task computes, for learning its run time.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct CostKey(pub(crate) u64);

impl CostKey {
    pub(crate) fn new(function: std::any::TypeId, signature: &[&'static str]) -> Self {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        function.hash(&mut h);
        signature.hash(&mut h);
        CostKey(h.finish())
    }

    /// The key of the same function under another name (a kernel's).
    pub(crate) fn named(self, name: &str) -> Self {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        self.0.hash(&mut h);
        name.hash(&mut h);
        CostKey(h.finish())
    }
}

#[derive(Default)]
pub(super) struct CostModel {
    runs: RwLock<HashMap<(CostKey, u32), Ewma>>,
    /// The bytes the last output of each function took in host memory under a limit
    /// (functions whose outputs the limit manages only).
    outputs: RwLock<HashMap<CostKey, u64>>,
    /// Whether `outputs` has anything (it is not looked at until then).
    any_outputs: std::sync::atomic::AtomicBool,
}

#[derive(Clone, Copy)]
struct Ewma {
    mean_ns: f64,
    samples: u64,
}

impl CostModel {
    /// Estimated run time in ns, if measured.
    pub(crate) fn estimate(&self, key: CostKey, class: u32) -> Option<u64> {
        self.runs
            .read()
            .get(&(key, class))
            .map(|e| e.mean_ns as u64)
    }

    /// The bytes the function's last output took in host memory, if one was stored under a
    /// memory limit.
    pub(crate) fn output_bytes(&self, key: CostKey) -> Option<u64> {
        if !self.any_outputs.load(Ordering::Relaxed) {
            return None;
        }
        self.outputs.read().get(&key).copied()
    }

    /// Records the bytes an output of the function took (0: it was not managed).
    pub(crate) fn record_output(&self, key: CostKey, bytes: u64) {
        if bytes == 0 && !self.any_outputs.load(Ordering::Relaxed) {
            return;
        }
        if self.outputs.read().get(&key).copied().unwrap_or(0) != bytes {
            self.outputs.write().insert(key, bytes);
            self.any_outputs.store(true, Ordering::Relaxed);
        }
    }

    pub(crate) fn record(&self, key: CostKey, class: u32, ns: u64) {
        let mut m = self.runs.write();
        let e = m.entry((key, class)).or_insert(Ewma {
            mean_ns: ns as f64,
            samples: 0,
        });
        e.samples += 1;
        let w = if e.samples < 4 { 0.5 } else { 0.2 };
        e.mean_ns = e.mean_ns * (1.0 - w) + ns as f64 * w;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn estimates_follow_recent_samples() {
        let m = CostModel::default();
        let k = CostKey::new(std::any::TypeId::of::<u8>(), &["a"]);
        assert_eq!(m.estimate(k, 0), None);
        m.record(k, 0, 1_000);
        assert_eq!(m.estimate(k, 0), Some(1_000));
        for _ in 0..50 {
            m.record(k, 0, 5_000);
        }
        let e = m.estimate(k, 0).unwrap();
        assert!((4_900..=5_000).contains(&e), "{e}");
        assert_eq!(m.estimate(k, 1), None, "classes are separate");
        let k2 = CostKey::new(std::any::TypeId::of::<u8>(), &["b"]);
        assert_ne!(k, k2, "signatures are part of the key");
    }
}
