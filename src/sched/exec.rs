//! Execution: moving a task's inputs to the processor chosen for it, running it, and turning
//! its outcome into a result.
//!
//! Two paths: CPU threads run the task's host body inline on the worker thread; every other
//! processor (a GPU, a device or processor of a user's) is reached through the
//! [`Processor`](crate::Processor) trait alone — inputs through `move_in` (told where each
//! value is) with a hop through host memory by the owning processor's `move_out` when needed,
//! then `launch` with a completion that finishes the task from whatever thread calls it.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use smallvec::SmallVec;

use super::task::{Input, Work};
use super::worker::WorkerLocal;
use super::{Candidates, Exec, Job, Runtime};
use crate::chunk::Data;
use crate::error::TaskError;
use crate::log::{EventKind, LogEvent};
use crate::options::CurrentGuard;
use crate::processor::{
    drop_payload, panic_message, set_task_processor, Completion, MemorySpace, MoveError, TaskCall,
    TaskFailure, TaskInfo,
};
use crate::value::Value;

impl Runtime {
    /// The value of `d` moved into the memory space of slot `s`'s processor, and the bytes
    /// that moved (counted only when `count` is set).
    fn move_to(&self, d: &Data, s: usize, count: bool) -> Result<(Value, u64), MoveError> {
        let entry = &self.procs[s];
        if entry.exec == super::Exec::Thread {
            let bytes = if count { d.bytes_to_host() } else { 0 };
            return d.to_host().map(|v| (v, bytes));
        }
        let bytes = if count && d.space() != entry.space {
            match d.peek() {
                Some(v) => entry.proc.bytes_to_move_in(d.space(), &v),
                None => d.managed_bytes(),
            }
        } else {
            0
        };
        if d.space() != entry.space {
            tracing::debug!(from = %d.space(), to = %entry.space, processor = %entry.id, "moving an input");
        }
        match entry.proc.move_in(d.space(), d.value()?) {
            Ok(v) => Ok((v, bytes)),
            // Another processor's value that this one does not take directly: through the
            // host, moved out by the processor that holds it.
            // (Host memory of another process counts: its processor fetches it.)
            Err(MoveError::Unsupported { .. })
                if d.space() != MemorySpace::LOCAL_HOST && d.home.is_some() =>
            {
                let out = if count { d.bytes_to_host() } else { 0 };
                let host = d.to_host()?;
                let bytes = if count {
                    out + entry.proc.bytes_to_move_in(MemorySpace::LOCAL_HOST, &host)
                } else {
                    0
                };
                entry
                    .proc
                    .move_in(MemorySpace::LOCAL_HOST, host)
                    .map(|v| (v, bytes))
            }
            Err(e) => Err(e),
        }
    }

    /// Moves the arguments of `work` to slot `s`; logs the move.
    fn move_inputs(
        &self,
        job: &Job,
        s: usize,
        work: &Work,
        logging: bool,
    ) -> Result<SmallVec<[Value; 4]>, TaskError> {
        let start = if logging { self.now_ns() } else { 0 };
        let mut inputs: SmallVec<[Value; 4]> = SmallVec::with_capacity(work.n_args);
        let mut moved = 0u64;
        let mut moved_from = Vec::new();
        for (k, i) in work.inputs[..work.n_args].iter().enumerate() {
            let d = i.data().expect("inputs of a ready task succeeded");
            let moved_in = self.move_to(&d, s, logging);
            if self.store.limited() {
                d.unwant();
            }
            match moved_in {
                Ok((v, bytes)) => {
                    moved += bytes;
                    if let (true, Input::Task(t)) = (bytes > 0, i) {
                        moved_from.push(t.id);
                    }
                    inputs.push(v);
                }
                Err(e) => {
                    return Err(TaskError::Move {
                        task: job.label(),
                        processor: self.proc_label(s),
                        index: k,
                        error: Arc::new(e),
                    })
                }
            }
        }
        if logging && moved > 0 {
            self.log.record(LogEvent {
                kind: EventKind::Move,
                task: job.id,
                name: job.name.as_str().into(),
                processor: self.procs[s].id,
                start_ns: start,
                end_ns: self.now_ns(),
                bytes_moved: moved,
                inputs: moved_from,
                ok: true,
            });
        }
        Ok(inputs)
    }

    /// Runs a job on CPU thread slot `s` on the calling worker: moves its inputs to host
    /// memory, runs its body, logs it and completes it.
    ///
    /// Never unwinds: a panic outside the task's body (a value's `Drop`, a tracing
    /// subscriber, the log) fails the task, if it has not finished, with an error saying
    /// so, and the worker carries on.
    pub(super) fn run_job(self: &Arc<Self>, job: &Job, s: usize, l: &WorkerLocal, occ: u32) {
        let in_task = l.in_task.get();
        let cur_occ = l.cur_occ.get();
        let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.run_job_inner(job, s, l, occ)
        }));
        if let Err(p) = ran {
            let message = panic_message(&*p);
            drop_payload(p);
            l.in_task.set(in_task);
            l.cur_occ.set(cur_occ);
            if !job.is_done() {
                let err = TaskError::Panicked {
                    task: job.label(),
                    processor: self.proc_label(s),
                    message: format!("the worker thread failed outside the task body: {message}"),
                };
                let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    self.complete(job, Err(err))
                }));
            }
        }
    }

    fn run_job_inner(self: &Arc<Self>, job: &Job, s: usize, l: &WorkerLocal, occ: u32) {
        let Some(work) = job.work.lock().take() else {
            return;
        };
        let entry = &self.procs[s];
        job.ran_on.store(s as u32, Ordering::Relaxed);
        let mut held = self.admit(&work, l);
        let logging = self.log.enabled();
        let moved = self.move_inputs(job, s, &work, logging);
        let start = if logging { self.now_ns() } else { 0 };
        let input_ids = if logging {
            input_ids(&work)
        } else {
            Vec::new()
        };
        let cost = work.cost_key.zip(work.placed_est_ns);
        let out_key = work.cost_key.filter(|_| self.store.limited());
        let timer = cost.map(|_| Instant::now());
        drop_quietly(work.inputs);
        let result = match moved {
            Err(e) => Err(e),
            Ok(mut inputs) => {
                let _opts = CurrentGuard::set(work.opts);
                let prev_in_task = l.in_task.replace(true);
                let prev_occ = l.cur_occ.replace(occ);
                let prev_proc = set_task_processor(Some(entry.id));
                let body = work.body;
                let out = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    let _span = tracing::trace_span!(
                        "task",
                        id = job.id,
                        name = %job.name,
                        processor = %entry.id
                    )
                    .entered();
                    body(&mut inputs)
                }));
                set_task_processor(prev_proc);
                l.in_task.set(prev_in_task);
                l.cur_occ.set(prev_occ);
                // The last reference to an input may go here: its `Drop` must not take the
                // task (which has its result) or the worker with it.
                drop_quietly(inputs);
                // The room made for the output is handed to it as it is stored.
                let reserved = std::mem::take(&mut held.output);
                self.to_result(job, s, out, reserved)
            }
        };
        if let (Some((key, est)), Some(t0)) = (cost, timer) {
            self.cost
                .record(key, self.cost_class(s), t0.elapsed().as_nanos() as u64);
            self.slots[s].queued_ns.fetch_sub(est, Ordering::Relaxed);
        }
        if let (Some(key), Ok(d)) = (out_key, &result) {
            self.cost.record_output(key, d.managed_bytes());
        }
        if logging {
            let end = self.now_ns();
            l.log.lock().push(LogEvent {
                kind: EventKind::Task,
                task: job.id,
                name: job.name.as_str().into(),
                processor: entry.id,
                start_ns: start,
                end_ns: end,
                bytes_moved: 0,
                inputs: input_ids,
                ok: result.is_ok(),
            });
        }
        // The result is stored (and counted) by now: what the task held is free.
        drop(held);
        self.complete(job, result);
    }

    /// Waits until the memory the task's managed inputs and its output need fits beside what
    /// running tasks hold; holds it meanwhile, and makes room in host memory for the
    /// output. The output is estimated as large as the function's last one, or as its
    /// largest input.
    fn admit<'a>(&'a self, work: &Work, l: &'a WorkerLocal) -> Held<'a> {
        let mut h = Held {
            store: &self.store,
            l,
            n: 0,
            output: 0,
        };
        if !self.store.limited() {
            return h;
        }
        let (mut sum, mut max) = (0u64, 0u64);
        for i in &work.inputs[..work.n_args] {
            if let Ok(d) = i.data() {
                let b = d.managed_bytes();
                sum += b;
                max = max.max(b);
            }
        }
        let out = work
            .cost_key
            .and_then(|k| self.cost.output_bytes(k))
            .unwrap_or(max);
        if sum + out == 0 {
            return h;
        }
        h.n = self.store.admit(sum + out);
        l.held.set(l.held.get() + h.n);
        // Room for the output is made now, spilling other values if need be, so that the
        // output, made while the inputs are in memory, does not take the process past the
        // limit before it is stored and counted.
        self.store.reserve(out);
        h.output = out;
        h
    }

    /// Runs a claimed job on a processor reached through the trait (slot `s`, `occ` units
    /// of its capacity reserved) from this thread — a worker of this runtime (`l`) or any
    /// other: moves its inputs in and launches it. Its completion, at once or later from any
    /// thread, completes the task and gives the capacity back.
    ///
    /// Never unwinds. The processor's code runs here before its launch takes the
    /// completion (moving inputs in and out of devices, drivers included), and a panic
    /// there fails the task and gives the capacity back like a failed move: were it to
    /// unwind, the task would never finish and its room never come back, and every later
    /// task on the processor would wait for it. (wgpu's GL backend panics so when a thread
    /// waits more than six seconds for the driver.)
    pub(super) fn run_device_job(
        self: &Arc<Self>,
        job: Job,
        s: usize,
        occ: u32,
        l: Option<&WorkerLocal>,
    ) {
        if !self.procs[s].available() && self.place_elsewhere(&job, s, occ) {
            return;
        }
        let Some(work) = job.work.lock().take() else {
            self.finish_device_job(
                &job,
                s,
                occ,
                Err(TaskError::Cancelled { task: job.label() }),
            );
            return;
        };
        let entry = &self.procs[s];
        job.ran_on.store(s as u32, Ordering::Relaxed);
        let logging = self.log.enabled();
        let moved = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.move_inputs(&job, s, &work, logging)
        }))
        .unwrap_or_else(|p| {
            let message = panic_message(&*p);
            drop_payload(p);
            Err(TaskError::Panicked {
                task: job.label(),
                processor: self.proc_label(s),
                message: format!("moving the task's inputs in panicked: {message}"),
            })
        });
        let inputs = match moved {
            Ok(i) => i,
            Err(e) => {
                if let Some((_, est)) = work.cost_key.zip(work.placed_est_ns) {
                    self.slots[s].queued_ns.fetch_sub(est, Ordering::Relaxed);
                }
                self.finish_device_job(&job, s, occ, Err(e));
                return;
            }
        };
        let start = self.now_ns();
        let input_ids = if logging {
            input_ids(&work)
        } else {
            Vec::new()
        };
        let cost = work.cost_key.zip(work.placed_est_ns);
        let info = TaskInfo {
            id: job.id,
            name: job.name.as_str().to_owned(),
            function: work.fn_name,
            input_types: inputs.iter().map(|v| v.type_name()).collect(),
            host_closure: work.host,
            kernel: work.kernel.clone(),
            portable: work.portable,
        };
        let call = TaskCall {
            info,
            inputs: inputs.into_vec(),
            body: work.body,
        };
        drop_quietly(work.inputs);
        let rt = self.clone();
        let job2 = job.clone();
        let timer = Instant::now();
        let done = Completion::new(move |out: Result<Value, TaskFailure>| {
            let result = rt.to_result(&job2, s, Ok(out), 0);
            if let Some((key, est)) = cost {
                rt.cost
                    .record(key, rt.cost_class(s), timer.elapsed().as_nanos() as u64);
                rt.slots[s].queued_ns.fetch_sub(est, Ordering::Relaxed);
            }
            if logging {
                rt.log.record(LogEvent {
                    kind: EventKind::Task,
                    task: job2.id,
                    name: job2.name.as_str().into(),
                    processor: rt.procs[s].id,
                    start_ns: start,
                    end_ns: rt.now_ns(),
                    bytes_moved: 0,
                    inputs: input_ids,
                    ok: result.is_ok(),
                });
            }
            rt.finish_device_job(&job2, s, occ, result);
        });
        let _opts = CurrentGuard::set(work.opts);
        let prev = l.map(|l| (l.in_task.replace(true), l.cur_occ.replace(occ)));
        let prev_proc = set_task_processor(Some(entry.id));
        let launched = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let _span = tracing::trace_span!(
                "task",
                id = job.id,
                name = %job.name,
                processor = %entry.id
            )
            .entered();
            entry.proc.launch(call, done);
        }));
        set_task_processor(prev_proc);
        if let (Some(l), Some((in_task, occ))) = (l, prev) {
            l.in_task.set(in_task);
            l.cur_occ.set(occ);
        }
        // A panicking launch dropped its completion, which failed the task.
        if let Err(p) = launched {
            drop_payload(p);
        }
    }

    /// A job whose processor (slot `s`) became unavailable after the job was placed there
    /// goes back to placement, when another of its candidates is available: it gives the
    /// slot back and is placed again. True if it was.
    fn place_elsewhere(self: &Arc<Self>, job: &Job, s: usize, occ: u32) -> bool {
        {
            let mut guard = job.work.lock();
            let Some(w) = guard.as_mut() else {
                return false;
            };
            let elsewhere = match &w.candidates {
                Candidates::Set(set) => set.iter().any(|i| {
                    i != s && (self.procs[i].exec == Exec::Thread || self.procs[i].available())
                }),
                Candidates::AllThreads => false,
            };
            if !elsewhere || !job.unclaim() {
                return false;
            }
            if let Some(est) = w.placed_est_ns.take() {
                self.slots[s].queued_ns.fetch_sub(est, Ordering::Relaxed);
            }
        }
        self.slots[s].active.fetch_sub(1, Ordering::AcqRel);
        self.slots[s].release(occ);
        self.wake_for(s, false);
        self.make_ready(job.clone(), false);
        true
    }

    fn finish_device_job(
        self: &Arc<Self>,
        job: &Job,
        s: usize,
        occ: u32,
        result: Result<Data, TaskError>,
    ) {
        self.complete(job, result);
        let slot = &self.slots[s];
        slot.active.fetch_sub(1, Ordering::AcqRel);
        slot.release(occ);
        if self.procs[s].launch_inline {
            self.pump(s);
            if self.shutdown.load(Ordering::Acquire) {
                self.wake_for(s, false);
            }
        } else if slot.queue_len() > 0 || self.shutdown.load(Ordering::Acquire) {
            // The room given back matters only to a job queued for it (one queued later
            // wakes the thread itself), and the last job's end to a thread waiting to shut
            // down.
            self.wake_for(s, false);
        }
    }

    /// The task's result, stored (a host value managed in place of the `reserved` bytes
    /// room was made for; they are given back whatever the outcome).
    pub(super) fn to_result(
        &self,
        job: &Job,
        s: usize,
        out: std::thread::Result<Result<Value, TaskFailure>>,
        reserved: u64,
    ) -> Result<Data, TaskError> {
        let entry = &self.procs[s];
        if !matches!(out, Ok(Ok(_))) || entry.space != MemorySpace::LOCAL_HOST {
            self.store.unreserve(reserved);
        }
        match out {
            Ok(Ok(v)) if entry.space == MemorySpace::LOCAL_HOST => {
                Ok(Data::stored_reserved(v, &self.store, reserved))
            }
            Ok(Ok(v)) => Ok(Data::on(v, entry.space, &entry.proc)),
            Ok(Err(TaskFailure::Error(e))) => Err(TaskError::Failed {
                task: job.label(),
                processor: self.proc_label(s),
                cause: Arc::from(e),
            }),
            Ok(Err(TaskFailure::Panic(message))) => Err(TaskError::Panicked {
                task: job.label(),
                processor: self.proc_label(s),
                message,
            }),
            Ok(Err(TaskFailure::ArgumentType {
                index,
                expected,
                found,
            })) => Err(TaskError::ArgumentType {
                task: job.label(),
                processor: self.proc_label(s),
                index,
                expected,
                found,
            }),
            Err(p) => {
                let message = panic_message(&*p);
                drop_payload(p);
                Err(TaskError::Panicked {
                    task: job.label(),
                    processor: self.proc_label(s),
                    message,
                })
            }
        }
    }
}

/// Memory a running task holds under the context's limit; given back when dropped.
struct Held<'a> {
    store: &'a crate::storage::Store,
    l: &'a WorkerLocal,
    n: u64,
    /// Room made in host memory for the task's output before it runs, until the output is
    /// stored in its place.
    output: u64,
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        // Room for an output that was never stored (the inputs could not be moved).
        self.store.unreserve(std::mem::take(&mut self.output));
        if self.n > 0 {
            self.l.held.set(self.l.held.get() - self.n);
            self.store.release(self.n);
        }
    }
}

/// Drops `x`, containing a panic of its `Drop` (and of that panic's payload).
pub(super) fn drop_quietly<T>(x: T) {
    if let Err(p) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || drop(x))) {
        drop_payload(p);
    }
}

/// The tasks a job waited for, for the event log.
fn input_ids(work: &Work) -> Vec<u64> {
    work.inputs
        .iter()
        .filter_map(|i| match i {
            Input::Task(t) => Some(t.id),
            Input::Data(_) => None,
        })
        .collect()
}
