//! A worker rank: serves the head's tasks on its own processors until told to stop.
//!
//! One thread receives every message. A task's inputs are objects this rank holds, values
//! sent along, or objects of other ranks, which it fetches from their owners directly;
//! once all are here the task goes to this rank's own scheduler, pinned to the processor
//! the head chose, and its result stays here as a numbered object until the head frees it.
//!
//! A function whose runs here have taken a few µs (20 at most, on average) runs on
//! the receiving thread itself when its processor is idle: waking a worker thread would
//! cost more than the task, and the reply goes out at once. Anything longer, and every
//! kernel, runs on the worker threads, so the receiving thread stays free for messages.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use super::protocol::{Arg, Failure, Msg, Payload, ProcDesc, Work, INLINE_MAX};
use super::transport::{Incoming, Transport, TransportError};
use super::wire::{self, WireError};
use super::{registry, RemoteError};
use crate::chunk::Data;
use crate::context::Context;
use crate::error::TaskError;
use crate::kernel::Kernel;
use crate::options::Options;
use crate::processor::{ProcessorId, ProcessorKind};
use crate::scope::Scope;
use crate::task::args::{Dep, Deps};

/// What a worker shares with the callbacks of the tasks it runs.
struct Shared {
    t: Arc<dyn Transport>,
    store: Mutex<HashMap<u64, Data>>,
    next_obj: AtomicU64,
    /// Set once serving has ended: tasks still finishing report to no one.
    closed: AtomicBool,
    /// Each function's run time here, in ns: a moving average of its runs.
    run_ns: Mutex<HashMap<&'static str, f64>>,
}

impl Shared {
    /// Records a run of function `name` that took `ns`.
    fn ran(&self, name: &'static str, ns: u64) {
        let mut m = self.run_ns.lock();
        let e = m.entry(name).or_insert(ns as f64);
        *e = 0.75 * *e + 0.25 * ns as f64;
    }

    /// How long a run of function `name` is expected to take, once one was measured.
    fn expected(&self, name: &str) -> Option<Duration> {
        self.run_ns
            .lock()
            .get(name)
            .map(|&ns| Duration::from_nanos(ns.max(1.0) as u64))
    }

    fn send(&self, to: usize, m: &Msg) {
        self.send_frame(to, m.encode());
    }

    fn send_frame(&self, to: usize, frame: Vec<u8>) {
        if self.closed.load(Ordering::Acquire) {
            return;
        }
        if let Err(e) = self.t.send(to, frame) {
            tracing::warn!("rank {} could not send to rank {to}: {e}", self.t.rank());
        }
    }
}

/// An object of another rank: (its owner, its number there).
type ObjAt = (u32, u64);

/// A task waiting for inputs from other ranks.
struct Waiting {
    proc: u32,
    name: String,
    work: Work,
    args: Vec<Option<Data>>,
    missing: usize,
}

/// This rank's processors, as the head learns them.
pub(crate) fn describe(ctx: &Context) -> Vec<ProcDesc> {
    ctx.rt()
        .procs
        .iter()
        .filter(|p| p.kind != ProcessorKind::Os)
        .map(|p| ProcDesc {
            index: p.id.index() as u32,
            kind: p.kind.as_str().to_owned(),
            description: p.description.clone(),
            default_enabled: p.default_enabled,
            thread: p.thread.map(|t| t as u32),
            gpu: p.gpu.map(|g| g as u32),
            backend: p.backend.clone(),
            device: match p.space {
                crate::processor::MemorySpace::Device { device, .. } => Some(device),
                _ => None,
            },
            capacity: p.capacity,
            prior_gflops: p.prior_gflops,
        })
        .collect()
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "localhost".into())
}

/// Serves the head over `t` with the processors of `ctx` until the head says stop, goes
/// silent for `timeout`, or the transport closes.
pub(crate) fn serve(
    t: Arc<dyn Transport>,
    ctx: Context,
    timeout: Duration,
) -> Result<(), RemoteError> {
    let me = t.rank();
    let shared = Arc::new(Shared {
        t: t.clone(),
        store: Mutex::new(HashMap::new()),
        next_obj: AtomicU64::new(1),
        closed: AtomicBool::new(false),
        run_ns: Mutex::new(HashMap::new()),
    });
    // Short tasks this thread makes ready run here (see the module's documentation).
    let adopted = ctx.rt().adopt_for_short_tasks();
    shared.t.send(
        0,
        Msg::Hello {
            host: hostname(),
            pid: std::process::id(),
            procs: describe(&ctx),
        }
        .encode(),
    )?;
    let stop = Arc::new(AtomicBool::new(false));
    let beat = {
        let (t, stop) = (t.clone(), stop.clone());
        std::thread::Builder::new()
            .name(format!("dagger-rank{me}-heartbeat"))
            .spawn(move || {
                while !stop.load(Ordering::Acquire) {
                    if t.send(0, Msg::Heartbeat.encode()).is_err() {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
            })
            .map_err(|e| RemoteError::Handshake {
                rank: me,
                reason: format!("could not start the heartbeat thread: {e}"),
            })?
    };
    let mut waiting: HashMap<u64, Waiting> = HashMap::new();
    // Fetches of inputs from other ranks: our request number → the object, and the
    // (task request, argument) pairs waiting for it; one fetch per object at a time.
    let mut pulls: HashMap<u64, (ObjAt, Vec<(u64, usize)>)> = HashMap::new();
    let mut pulling: HashMap<ObjAt, u64> = HashMap::new();
    // Copies of other ranks' objects fetched for earlier tasks, kept until the head says
    // the object is gone (`Forget`).
    let mut replicas: HashMap<ObjAt, Data> = HashMap::new();
    let mut next_pull = 1u64;
    let mut head_seen = Instant::now();
    let outcome = loop {
        let Incoming { from, frame, body } = match t.recv_message(Duration::from_millis(50)) {
            Ok(Some(m)) => m,
            Ok(None) => {
                if head_seen.elapsed() > timeout {
                    break Err(RemoteError::RankLost {
                        rank: 0,
                        reason: format!("the head sent nothing for {timeout:?}"),
                    });
                }
                continue;
            }
            Err(TransportError::Closed) => break Ok(()),
            Err(e) => break Err(e.into()),
        };
        if from == 0 {
            head_seen = Instant::now();
        }
        let (msg, payload) = match Payload::split(frame, body) {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!("rank {me}: undecodable message from rank {from}: {e}");
                continue;
            }
        };
        match msg {
            Msg::Run {
                req,
                proc,
                name,
                work,
                args,
            } => {
                let mut w = Waiting {
                    proc,
                    name,
                    work,
                    args: Vec::with_capacity(args.len()),
                    missing: 0,
                };
                let mut failed = None;
                for (i, a) in args.into_iter().enumerate() {
                    match a {
                        Arg::Here { obj } => match shared.store.lock().get(&obj) {
                            Some(d) => w.args.push(Some(d.clone())),
                            None => {
                                failed =
                                    Some(format!("input {i} (object {obj}) is not on rank {me}"));
                                break;
                            }
                        },
                        Arg::Inline(b) => match wire::decode_value(&b.type_name, &b.bytes.0) {
                            Ok(v) => w.args.push(Some(Data::host(v))),
                            Err(e) => {
                                failed = Some(format!("input {i} could not be decoded: {e}"));
                                break;
                            }
                        },
                        Arg::At { rank, obj } => {
                            if let Some(d) = replicas.get(&(rank, obj)) {
                                w.args.push(Some(d.clone()));
                                continue;
                            }
                            w.args.push(None);
                            w.missing += 1;
                            if let Some(p) = pulling.get(&(rank, obj)) {
                                pulls.get_mut(p).expect("a pull").1.push((req, i));
                                continue;
                            }
                            let p = next_pull;
                            next_pull += 1;
                            pulls.insert(p, ((rank, obj), vec![(req, i)]));
                            pulling.insert((rank, obj), p);
                            shared.send(rank as usize, &Msg::Fetch { req: p, obj });
                        }
                    }
                }
                if let Some(why) = failed {
                    for (_, waiters) in pulls.values_mut() {
                        waiters.retain(|(r, _)| *r != req);
                    }
                    fail(&shared, req, vec![why]);
                } else if w.missing == 0 {
                    start(&ctx, &shared, req, w);
                } else {
                    waiting.insert(req, w);
                }
            }
            Msg::Value { req: p, value } => {
                let Some((key, waiters)) = pulls.remove(&p) else {
                    continue;
                };
                pulling.remove(&key);
                let decoded = value
                    .map_err(|e| format!("fetching object {} from rank {}: {e}", key.1, key.0))
                    .and_then(|type_name| {
                        payload.decode(&type_name).map_err(|e| {
                            format!(
                                "object {} of rank {} could not be decoded: {e}",
                                key.1, key.0
                            )
                        })
                    });
                match decoded {
                    Ok(v) => {
                        let d = Data::host(v);
                        replicas.insert(key, d.clone());
                        for (req, i) in waiters {
                            let ready = match waiting.get_mut(&req) {
                                Some(w) => {
                                    w.args[i] = Some(d.clone());
                                    w.missing -= 1;
                                    w.missing == 0
                                }
                                None => false,
                            };
                            if ready {
                                let w = waiting.remove(&req).expect("waiting");
                                start(&ctx, &shared, req, w);
                            }
                        }
                    }
                    Err(why) => {
                        for (req, i) in waiters {
                            if waiting.remove(&req).is_some() {
                                for (_, others) in pulls.values_mut() {
                                    others.retain(|(r, _)| *r != req);
                                }
                                fail(&shared, req, vec![format!("input {i}: {why}")]);
                            }
                        }
                    }
                }
            }
            Msg::Fetch { req, obj } => {
                let data = shared.store.lock().get(&obj).cloned();
                let host = match data {
                    None => Err(format!("object {obj} is not on rank {me} (freed already?)")),
                    Some(d) => d.to_host().map_err(|e| e.to_string()),
                };
                if shared.closed.load(Ordering::Acquire) {
                    continue;
                }
                let sent = match host {
                    // A numeric vector goes from its own memory, as a body apart where the
                    // transport can keep it so.
                    Ok(v) if wire::raw_value(&v).is_some() => {
                        let (type_name, raw) = wire::raw_value(&v).expect("checked");
                        let m = Msg::Value {
                            req,
                            value: Ok(type_name.to_owned()),
                        };
                        shared.t.send_with_body(from, m.encode(), raw)
                    }
                    // Anything else is encoded straight into the frame, after the message.
                    host => {
                        let frame = host.and_then(|v| {
                            let type_name = wire::codec_of(v.type_id_of_value())
                                .map(|c| c.type_name.to_owned())
                                .ok_or_else(|| {
                                    WireError::Unregistered {
                                        type_name: v.type_name().to_owned(),
                                    }
                                    .to_string()
                                })?;
                            Msg::Value {
                                req,
                                value: Ok(type_name),
                            }
                            .encode_with(|out| wire::encode_value_into(&v, out).map(|_| ()))
                            .map_err(|e| e.to_string())
                        });
                        let frame =
                            frame.unwrap_or_else(|e| Msg::Value { req, value: Err(e) }.encode());
                        shared.t.send(from, frame)
                    }
                };
                if let Err(e) = sent {
                    tracing::warn!("rank {me} could not send to rank {from}: {e}");
                }
            }
            Msg::Free { objs } => {
                let mut s = shared.store.lock();
                for o in objs {
                    s.remove(&o);
                }
            }
            Msg::Forget { owner, objs } => {
                for o in objs {
                    replicas.remove(&(owner, o));
                }
            }
            Msg::Ping { req, payload } => shared.send(from, &Msg::Pong { req, payload }),
            Msg::Shutdown => break Ok(()),
            Msg::Heartbeat => {}
            other => tracing::warn!("rank {me}: unexpected message from rank {from}: {other:?}"),
        }
    };
    stop.store(true, Ordering::Release);
    shared.closed.store(true, Ordering::Release);
    let _ = beat.join();
    shared.store.lock().clear();
    replicas.clear();
    drop(adopted);
    drop(ctx);
    outcome
}

fn fail(shared: &Shared, req: u64, chain: Vec<String>) {
    shared.send(
        0,
        &Msg::Failed {
            req,
            failure: Failure::Error { chain },
        },
    );
}

/// Submits a task whose inputs are all here to this rank's scheduler; its outcome goes to
/// the head when it finishes.
fn start(ctx: &Context, shared: &Arc<Shared>, req: u64, w: Waiting) {
    let rt = ctx.rt();
    let Some(p) = rt.procs.get(w.proc as usize) else {
        return fail(
            shared,
            req,
            vec![format!(
                "rank {} has no processor {}",
                shared.t.rank(),
                w.proc
            )],
        );
    };
    let local: ProcessorId = p.id;
    let mut deps = Deps::default();
    for d in w.args.into_iter().flatten() {
        deps.push(Dep::Data(d));
    }
    let opts = Options::new().scope(Scope::exact(local)).name(w.name);
    let core = match w.work {
        Work::Function { name } => {
            let Some((name, call)) = registry::lookup(&name) else {
                return fail(
                    shared,
                    req,
                    vec![format!(
                        "function `{name}` is not registered on rank {}",
                        shared.t.rank()
                    )],
                );
            };
            // The expected run time decides whether it runs on this thread.
            let opts = match shared.expected(name) {
                Some(t) => opts.time_hint(t),
                None => opts,
            };
            let timed = shared.clone();
            let body: crate::processor::Body = Box::new(move |inputs| {
                let t0 = Instant::now();
                let out = call(inputs);
                timed.ran(name, t0.elapsed().as_nanos() as u64);
                out
            });
            ctx.submit_task(
                name,
                std::any::TypeId::of::<registry::Registration>(),
                opts,
                deps,
                Some(body),
                None,
                true,
            )
        }
        Work::Kernel { name, params } => {
            let Some(k) = Kernel::lookup(&name) else {
                return fail(
                    shared,
                    req,
                    vec![format!(
                        "kernel `{name}` is not registered on rank {}",
                        shared.t.rank()
                    )],
                );
            };
            let own = k
                .params_codec()
                .filter(|c| c.type_name == params.type_name)
                .map(|c| {
                    (c.decode)(&params.bytes.0).ok_or_else(|| {
                        format!("kernel parameters: the bytes are not a `{}`", c.type_name)
                    })
                });
            let params = match own.unwrap_or_else(|| {
                wire::decode_value(&params.type_name, &params.bytes.0)
                    .map_err(|e| format!("kernel parameters: {e}"))
            }) {
                Ok(p) => p,
                Err(e) => return fail(shared, req, vec![e]),
            };
            ctx.submit_kernel(
                "remote kernel",
                std::any::TypeId::of::<Kernel>(),
                opts,
                deps,
                None,
                Some(k.call(params)),
            )
        }
    };
    let shared = shared.clone();
    core.on_done(Box::new(move |r: &Result<Data, TaskError>| match r {
        Ok(d) => {
            let obj = shared.next_obj.fetch_add(1, Ordering::Relaxed);
            let bytes = d
                .peek()
                .and_then(|v| wire::encoded_len(&v))
                .unwrap_or_else(|| d.bytes_to_host().max(d.managed_bytes()));
            let type_name = d.type_name().to_owned();
            shared.store.lock().insert(obj, d.clone());
            // A small host value goes along, so the head need not ask for it.
            let small = d.peek().filter(|_| bytes <= INLINE_MAX);
            let done = |inline| Msg::Done {
                req,
                obj,
                type_name: type_name.clone(),
                bytes,
                inline,
            };
            let frame = small
                .and_then(|v| {
                    done(true)
                        .encode_with(|out| wire::encode_value_into(&v, out).map(|_| ()))
                        .ok()
                })
                .unwrap_or_else(|| done(false).encode());
            shared.send_frame(0, frame);
        }
        Err(e) => shared.send(
            0,
            &Msg::Failed {
                req,
                failure: failure_of(e),
            },
        ),
    }));
}

/// A task error as the head is told it: the root cause, with its source chain.
fn failure_of(e: &TaskError) -> Failure {
    match e.root_cause() {
        TaskError::Panicked { message, .. } => Failure::Panic {
            message: message.clone(),
        },
        TaskError::Failed { cause, .. } => {
            let mut chain = vec![cause.to_string()];
            let mut src = cause.source();
            while let Some(s) = src {
                chain.push(s.to_string());
                src = s.source();
            }
            Failure::Error { chain }
        }
        other => Failure::Error {
            chain: vec![other.to_string()],
        },
    }
}
