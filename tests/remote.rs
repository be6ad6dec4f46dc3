//! Worker processes over the in-process transport: the same encoded messages as between
//! MPI ranks, with every rank a thread of this test.

mod common;

use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::within;
use dagger::prelude::*;
use dagger::remote::{Body, Fallible, InProcessTransport, Incoming, Transport, TransportError};
use dagger::{ProcessorKind, TaskError, WgslKernel};

fn add1(x: i64) -> i64 {
    x + 1
}
dagger::remote_fn!(add1);

fn add(a: i64, b: i64) -> i64 {
    a + b
}
dagger::remote_fn!(add);

fn ones(n: usize) -> Vec<f64> {
    vec![1.0; n]
}
dagger::remote_fn!(ones);

fn total(v: Vec<f64>) -> f64 {
    v.iter().sum()
}
dagger::remote_fn!(total);

fn boom(x: i64) -> i64 {
    if x > 0 {
        panic!("boom at {x}");
    }
    x
}
dagger::remote_fn!(boom);

fn parse(s: String) -> Result<i64, std::num::ParseIntError> {
    s.parse()
}
dagger::remote_fn!(Fallible(parse));

fn nap(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}
dagger::remote_fn!(nap);

/// The name of the thread a task runs on, after `ms` ms.
fn thread_after(ms: u64) -> String {
    std::thread::sleep(std::time::Duration::from_millis(ms));
    std::thread::current().name().unwrap_or("").to_owned()
}
dagger::remote_fn!(thread_after);

fn unregistered(x: i64) -> i64 {
    x * 10
}

/// Live `Tracked` values made by tasks (not by decoding on the head).
static LIVE: AtomicI64 = AtomicI64::new(0);

#[derive(serde::Serialize, serde::Deserialize)]
struct Tracked {
    data: Vec<f64>,
    /// Copies (arguments, decoded values) are not counted.
    #[serde(skip)]
    counted: bool,
}

impl Clone for Tracked {
    fn clone(&self) -> Self {
        Tracked {
            data: self.data.clone(),
            counted: false,
        }
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        if self.counted {
            LIVE.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

fn make_tracked(n: usize) -> Tracked {
    LIVE.fetch_add(1, Ordering::SeqCst);
    Tracked {
        data: vec![0.5; n],
        counted: true,
    }
}
dagger::remote_fn!(make_tracked);

fn step_tracked(t: Tracked) -> Tracked {
    LIVE.fetch_add(1, Ordering::SeqCst);
    Tracked {
        data: t.data.iter().map(|x| x + 1.0).collect(),
        counted: true,
    }
}
dagger::remote_fn!(step_tracked);

fn cluster(workers: usize) -> Context {
    dagger::remote::in_process(workers, |_| Context::builder().threads(2).gpus(false))
        .expect("the group forms")
}

fn on(rank: usize) -> Options {
    Options::new().scope(Scope::worker(rank))
}

#[test]
fn one_processor_tree_across_ranks() {
    within(60, "the tree", || {
        let ctx = cluster(2);
        assert_eq!(ctx.ranks(), 3);
        let procs = ctx.processors();
        let os: Vec<_> = procs
            .iter()
            .filter(|p| p.kind == ProcessorKind::Os)
            .collect();
        assert_eq!(os.len(), 3, "one process processor per rank: {procs:#?}");
        for (rank, o) in os.iter().enumerate() {
            assert_eq!(o.id.process() as usize, rank + 1);
            assert_eq!(o.children.len(), 2, "two threads under rank {rank}");
            for c in &o.children {
                let c = procs.iter().find(|p| p.id == *c).unwrap();
                assert_eq!(c.kind, ProcessorKind::Thread);
                assert_eq!(c.memory_space.to_string(), format!("host@{}", rank + 1));
                if rank > 0 {
                    assert!(
                        c.description.contains(&format!("on rank {rank}")),
                        "{}",
                        c.description
                    );
                }
            }
        }
        let one = ctx
            .resolve_scope(&Scope::worker(2).constrain(&Scope::thread(1)))
            .unwrap();
        assert_eq!(one.len(), 1);
        assert_eq!(one[0].process(), 3);
        assert_eq!(ctx.resolve_scope(&Scope::workers(1..)).unwrap().len(), 4);
        let links = ctx.links();
        assert_eq!(links.len(), 2);
        assert!(
            links.iter().all(|l| l.latency_us > 0.0 && l.gbps > 0.0),
            "{links:?}"
        );
    });
}

#[test]
fn registered_functions_run_on_the_rank_their_scope_names() {
    within(60, "remote values", || {
        let ctx = cluster(2);
        ctx.enable_logging();
        let a = ctx.spawn_remote_with(on(1), add1, (41,));
        let b = ctx.spawn_remote_with(on(2), add, (&a, 100));
        let c = ctx.spawn(|b: i64| b * 2, (&b,));
        assert_eq!(c.fetch().unwrap(), 284);
        assert_eq!(a.fetch().unwrap(), 42);
        let logs = ctx.fetch_logs();
        let ran = |id: u64| {
            logs.iter()
                .find(|e| e.task == id && e.kind == dagger::EventKind::Task)
                .map(|e| e.processor.process())
        };
        assert_eq!(ran(a.id()), Some(2), "rank 1 is process 2");
        assert_eq!(ran(b.id()), Some(3));
        assert_eq!(ran(c.id()), Some(1), "the closure ran on the head");
        // A thread of one rank.
        let t = Scope::worker(1).constrain(&Scope::thread(1));
        let d = ctx.spawn_remote_with(Options::new().scope(t), add1, (1,));
        assert_eq!(d.fetch().unwrap(), 2);
    });
}

/// A function that has run in a few µs on a worker runs on the thread that receives it
/// there (rank 1's thread is `dagger-rank1`), when its processor is idle; one that took
/// longer goes to a worker thread, so the receiving thread stays free.
#[test]
fn a_short_function_runs_where_it_is_received_and_a_long_one_on_a_worker_thread() {
    within(60, "short tasks", || {
        let ctx = cluster(1);
        let one = Options::new().scope(Scope::worker(1).constrain(&Scope::thread(0)));
        let run = |ms: u64| {
            ctx.spawn_remote_with(one.clone(), thread_after, (ms,))
                .fetch()
                .unwrap()
        };
        // The first run is not measured yet: a worker thread runs it.
        assert_eq!(run(0), "dagger-thread");
        let short: Vec<String> = (0..20).map(|_| run(0)).collect();
        let here = short.iter().filter(|n| *n == "dagger-rank1").count();
        assert!(here >= 15, "short runs where they were received: {short:?}");
        // Once it has run for milliseconds, it no longer runs on the receiving thread (the
        // first long run, expected short, still may).
        let long: Vec<String> = (0..3).map(|_| run(5)).collect();
        assert!(long[1..].iter().all(|n| n == "dagger-thread"), "{long:?}");
        // Another task on the same processor queues behind a long one rather than run
        // beside it on the receiving thread.
        let busy = ctx.spawn_remote_with(one.clone(), thread_after, (200,));
        std::thread::sleep(std::time::Duration::from_millis(50));
        let beside = ctx.spawn_remote_with(one.clone(), thread_after, (0,));
        assert_eq!(busy.fetch().unwrap(), "dagger-thread");
        assert_eq!(beside.fetch().unwrap(), "dagger-thread");
    });
}

#[test]
fn closures_and_unregistered_functions_stay_on_the_head() {
    within(60, "closures", || {
        let ctx = cluster(1);
        let err = ctx
            .spawn_with(on(1), |x: i64| x + 1, (1,))
            .fetch()
            .unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("no processor"), "{msg}");
        let detail = format!("{:?}", err);
        assert!(
            detail.contains("remote_fn"),
            "the reason says what to do: {detail}"
        );
        // Unregistered, through spawn_remote: runs on the head by default.
        ctx.enable_logging();
        let t = ctx.spawn_remote(unregistered, (4,));
        assert_eq!(t.fetch().unwrap(), 40);
        let logs = ctx.fetch_logs();
        let e = logs.iter().find(|e| e.task == t.id()).unwrap();
        assert_eq!(e.processor.process(), 1);
    });
}

#[test]
fn failures_on_a_worker_name_the_rank_the_processor_and_the_cause() {
    within(60, "remote errors", || {
        let ctx = cluster(2);
        let p = ctx.spawn_remote_with(on(2), boom, (3,));
        let dep = ctx.spawn_remote_with(on(1), add1, (&p,));
        let err = p.fetch().unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, TaskError::Panicked { .. }), "{msg}");
        assert!(msg.contains("boom at 3"), "{msg}");
        assert!(msg.contains("on rank 2"), "{msg}");
        assert!(msg.contains("cpu thread"), "{msg}");
        let derr = dep.fetch().unwrap_err();
        assert!(
            derr.root_cause().to_string().contains("boom at 3"),
            "{derr}"
        );
        // An Err, with its source chain.
        let e = ctx
            .spawn_remote_with(on(1), Fallible(parse), ("4x".to_string(),))
            .fetch()
            .unwrap_err();
        assert!(e.to_string().contains("on rank 1"), "{e}");
        assert!(e.to_string().contains("invalid digit"), "{e}");
        // The function's own error is in the message; it has no cause of its own, so the
        // task error's source chain ends there.
        assert!(std::error::Error::source(&e).is_none(), "{e}");
        // The rest carries on.
        let ok = ctx.spawn_remote_with(on(2), add1, (1,));
        assert_eq!(ok.fetch().unwrap(), 2);
        assert_eq!(
            ctx.spawn_remote_with(on(1), Fallible(parse), ("12".to_string(),))
                .fetch()
                .unwrap(),
            12
        );
    });
}

/// What a rank receives: how many bytes, and the name of the thread that took in each
/// message.
#[derive(Clone, Default)]
struct Watch {
    received: Arc<AtomicUsize>,
    names: Arc<parking_lot::Mutex<Vec<String>>>,
}

/// A rank's transport, watched.
struct Watched {
    inner: Arc<InProcessTransport>,
    watch: Watch,
}

impl Transport for Watched {
    fn rank(&self) -> usize {
        self.inner.rank()
    }
    fn size(&self) -> usize {
        self.inner.size()
    }
    fn send(&self, to: usize, bytes: Vec<u8>) -> Result<(), TransportError> {
        self.inner.send(to, bytes)
    }
    fn recv_timeout(&self, t: Duration) -> Result<Option<(usize, Vec<u8>)>, TransportError> {
        let r = self.inner.recv_timeout(t)?;
        if let Some((_, b)) = &r {
            self.watch.received.fetch_add(b.len(), Ordering::Relaxed);
            let me = std::thread::current();
            let name = me.name().unwrap_or("").to_owned();
            self.watch.names.lock().push(name);
        }
        Ok(r)
    }
}

/// A group whose head counts what it receives; the worker transports are returned too.
fn counted_group(workers: usize) -> (Context, Arc<AtomicUsize>, Vec<Arc<InProcessTransport>>) {
    let (ctx, watch, ranks) = watched_group(workers);
    (ctx, watch.received, ranks)
}

/// A group whose head is watched; the worker transports are returned too.
fn watched_group(workers: usize) -> (Context, Watch, Vec<Arc<InProcessTransport>>) {
    let mut ranks = InProcessTransport::group(workers + 1);
    let head = ranks.remove(0);
    for t in &ranks {
        let t: Arc<dyn Transport> = t.clone();
        std::thread::spawn(move || Context::builder().threads(1).gpus(false).join(t));
    }
    let watch = Watch::default();
    let watched = Arc::new(Watched {
        inner: head,
        watch: watch.clone(),
    });
    let ctx = Context::builder()
        .threads(1)
        .gpus(false)
        .join(watched)
        .unwrap()
        .unwrap();
    (ctx, watch, ranks)
}

#[test]
fn data_moves_rank_to_rank_without_the_head() {
    within(60, "owner to owner", || {
        let (ctx, received, _ranks) = counted_group(2);
        let n = 1 << 20; // 8 MiB of f64
        let before = received.load(Ordering::Relaxed);
        let v = ctx.spawn_remote_with(on(1), ones, (n,));
        let s = ctx.spawn_remote_with(on(2), total, (&v,));
        s.wait();
        let through_head = received.load(Ordering::Relaxed) - before;
        assert_eq!(s.fetch().unwrap(), n as f64);
        assert!(
            through_head < 64 * 1024,
            "the head received {through_head} bytes while 8 MiB moved from rank 1 to rank 2"
        );
        // Placement sends a task to its data when the scope allows both ranks.
        ctx.enable_logging();
        let s2 = ctx.spawn_remote_with(Options::new().scope(Scope::workers(1..)), total, (&v,));
        assert_eq!(s2.fetch().unwrap(), n as f64);
        let logs = ctx.fetch_logs();
        let e = logs
            .iter()
            .find(|e| e.task == s2.id() && e.kind == dagger::EventKind::Task)
            .unwrap();
        assert_eq!(e.processor.process(), 2, "ran where its 8 MiB input lives");
        // fetch brings the value to the caller.
        let host = v.fetch().unwrap();
        assert_eq!(host.len(), n);
        assert!(received.load(Ordering::Relaxed) - before >= n * 8);
    });
}

#[test]
fn objects_are_freed_on_their_owner_when_the_last_handle_drops() {
    within(60, "freeing", || {
        let ctx = cluster(2);
        let base = LIVE.load(Ordering::SeqCst);
        let mut handles = Vec::new();
        for i in 0..40 {
            handles.push(ctx.spawn_remote_with(on(1 + i % 2), make_tracked, (1000usize,)));
        }
        for h in &handles {
            h.wait();
        }
        assert!(LIVE.load(Ordering::SeqCst) - base >= 40);
        drop(handles);
        let deadline = Instant::now() + Duration::from_secs(10);
        while LIVE.load(Ordering::SeqCst) > base && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(
            LIVE.load(Ordering::SeqCst),
            base,
            "every object was freed on its worker"
        );
        // A chain on one worker whose handles are dropped holds O(1) objects there.
        let mut t = ctx.spawn_remote_with(on(2), make_tracked, (100usize,));
        let mut peak = 0;
        for _ in 0..300 {
            t = ctx.spawn_remote_with(on(2), step_tracked, (&t,));
            peak = peak.max(LIVE.load(Ordering::SeqCst) - base);
        }
        t.wait();
        drop(t);
        assert!(peak < 100, "a chain of 300 held {peak} objects at once");
        let deadline = Instant::now() + Duration::from_secs(10);
        while LIVE.load(Ordering::SeqCst) > base && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(LIVE.load(Ordering::SeqCst), base);
    });
}

#[test]
fn a_rank_that_dies_fails_what_waits_on_it_within_seconds() {
    within(60, "a dead rank", || {
        let (ctx, _received, ranks) = counted_group(2);
        let held = ctx.spawn_remote_with(on(2), add1, (1,));
        assert_eq!(held.fetch().unwrap(), 2);
        let long = ctx.spawn_remote_with(on(2), nap, (30_000u64,));
        std::thread::sleep(Duration::from_millis(100));
        let t0 = Instant::now();
        ranks[1].kill();
        let err = long.fetch().unwrap_err();
        let waited = t0.elapsed();
        assert!(waited < Duration::from_secs(8), "noticed after {waited:?}");
        let msg = format!("{err}: {}", err.root_cause());
        assert!(msg.contains("rank 2"), "{msg}");
        let chain = common::chain(&err);
        assert!(chain.contains("rank 2 was lost"), "{chain}");
        // Its processors leave placement; work elsewhere carries on.
        let e = ctx
            .spawn_remote_with(on(2), add1, (1,))
            .fetch()
            .unwrap_err();
        assert!(
            e.to_string().contains("no processor") || e.to_string().contains("lost"),
            "{e}"
        );
        assert_eq!(ctx.spawn_remote_with(on(1), add1, (1,)).fetch().unwrap(), 2);
        assert_eq!(ctx.spawn_remote(add1, (5,)).fetch().unwrap(), 6);
        // Its objects are gone with it.
        let e = ctx.spawn(|x: i64| x, (&held,)).fetch();
        assert!(e.is_ok() || e.unwrap_err().to_string().contains("rank 2"));
    });
}

/// Far more tasks than a remote processor takes at once: the rest wait on the head and
/// are launched as room is given back, every one of them, whichever thread gives it.
#[test]
fn tasks_beyond_a_remote_processors_room_are_all_launched_as_room_comes_back() {
    within(120, "many in flight", || {
        let ctx = cluster(2);
        let n = 20_000i64;
        let tasks: Vec<DTask<i64>> = (0..n)
            .map(|i| ctx.spawn_remote_with(Options::new().scope(Scope::workers(1..)), add1, (i,)))
            .collect();
        let sum: i64 = tasks.iter().map(|t| t.fetch().unwrap()).sum();
        assert_eq!(sum, n * (n + 1) / 2);
        // Dependent tasks launched from the thread that completes their input.
        let mut x = ctx.spawn_remote_with(on(1), add1, (0,));
        for _ in 0..2_000 {
            x = ctx.spawn_remote_with(on(2), add1, (&x,));
        }
        assert_eq!(x.fetch().unwrap(), 2_001);
    });
}

/// When a rank is lost with tens of thousands of tasks waiting on the head for its room,
/// each fails at its launch, which gives the room back to the next: every one fails with
/// the rank named, none is left waiting, and the launches follow one another rather than
/// nest (nested, they would overflow the stack of the thread that noticed the loss).
#[test]
fn a_lost_rank_fails_every_task_waiting_for_its_room() {
    within(120, "a long queue on a dead rank", || {
        let (ctx, _received, ranks) = counted_group(1);
        // Rank 1's one thread takes eight tasks at once; these fill it.
        let long: Vec<DTask<u64>> = (0..8)
            .map(|_| ctx.spawn_remote_with(on(1), nap, (30_000u64,)))
            .collect();
        let queued: Vec<DTask<i64>> = (0..50_000)
            .map(|i| ctx.spawn_remote_with(on(1), add1, (i,)))
            .collect();
        std::thread::sleep(Duration::from_millis(100));
        ranks[0].kill();
        for t in &long {
            let e = t.fetch().unwrap_err();
            assert!(
                common::chain(&e).contains("rank 1"),
                "{}",
                common::chain(&e)
            );
        }
        for t in &queued {
            let e = t.fetch().unwrap_err();
            assert!(
                common::chain(&e).contains("rank 1"),
                "{}",
                common::chain(&e)
            );
        }
        assert_eq!(ctx.spawn(|| 7, ()).fetch().unwrap(), 7);
    });
}

/// A thread waiting for a task on another rank takes the reply in itself, so the task
/// completes where it is wanted; messages nobody waits for are taken in by the link's
/// thread. Waits with a deadline keep it, and several threads may wait at once.
#[test]
fn a_thread_waiting_for_a_remote_task_takes_its_reply_in_itself() {
    within(60, "waiting threads", || {
        let (ctx, watch, _ranks) = watched_group(1);
        let names = watch.names;
        let waiter = std::thread::Builder::new()
            .name("the-waiter".into())
            .spawn({
                let ctx = ctx.clone();
                move || {
                    for i in 0..200 {
                        let r = ctx.spawn_remote_with(on(1), add1, (i,)).fetch().unwrap();
                        assert_eq!(r, i + 1);
                    }
                }
            })
            .unwrap();
        waiter.join().unwrap();
        let took = |who: &str| names.lock().iter().filter(|n| *n == who).count();
        assert!(took("the-waiter") >= 50, "{:?}", names.lock());
        // Nobody waits: the link's thread takes the replies in.
        names.lock().clear();
        let t = ctx.spawn_remote_with(on(1), add1, (1,));
        std::thread::sleep(Duration::from_millis(100));
        // (Heartbeats come too.)
        let n = names.lock().len();
        assert!(n >= 1 && took("dagger-link") == n, "{:?}", names.lock());
        assert_eq!(t.fetch().unwrap(), 2);
        // A wait with a deadline ends at it, and the link's thread takes over again.
        let slow = ctx.spawn_remote_with(on(1), nap, (300u64,));
        let t0 = Instant::now();
        assert!(!slow.wait_timeout(Duration::from_millis(20)));
        assert!(
            t0.elapsed() < Duration::from_millis(250),
            "{:?}",
            t0.elapsed()
        );
        std::thread::sleep(Duration::from_millis(400));
        assert!(slow.is_ready(), "the reply was taken in without a waiter");
        // Several threads wait at once, on both kinds of task.
        let waits: Vec<_> = (0..4i64)
            .map(|k| {
                let ctx = ctx.clone();
                std::thread::spawn(move || {
                    (0..100i64)
                        .map(|i| {
                            if i % 10 == 0 {
                                ctx.spawn_remote_with(on(1), nap, (2u64,)).fetch().unwrap() as i64
                            } else {
                                ctx.spawn_remote_with(on(1), add1, (k * i,))
                                    .fetch()
                                    .unwrap()
                            }
                        })
                        .sum::<i64>()
                })
            })
            .collect();
        let sums: Vec<i64> = waits.into_iter().map(|w| w.join().unwrap()).collect();
        for (k, s) in sums.iter().enumerate() {
            let k = k as i64;
            let want: i64 = (0..100i64)
                .map(|i| if i % 10 == 0 { 2 } else { k * i + 1 })
                .sum();
            assert_eq!(*s, want);
        }
    });
}

/// Bodies in flight, by number, shared by the ranks of one group.
type Bodies = Arc<parking_lot::Mutex<std::collections::HashMap<u64, Vec<u8>>>>;

/// An in-process transport that keeps bodies apart from their frames, as the MPI one
/// does: a frame says whether a body follows, and the body waits in a shared table until
/// its receiver takes it.
struct Apart {
    inner: Arc<InProcessTransport>,
    bodies: Bodies,
    next: Arc<std::sync::atomic::AtomicU64>,
    apart: Arc<AtomicUsize>,
}

impl Transport for Apart {
    fn rank(&self) -> usize {
        self.inner.rank()
    }
    fn size(&self) -> usize {
        self.inner.size()
    }
    fn send(&self, to: usize, bytes: Vec<u8>) -> Result<(), TransportError> {
        let mut framed = vec![0u8];
        framed.extend_from_slice(&bytes);
        self.inner.send(to, framed)
    }
    fn send_with_body(&self, to: usize, frame: Vec<u8>, body: &[u8]) -> Result<(), TransportError> {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        self.bodies.lock().insert(id, body.to_vec());
        self.apart.fetch_add(1, Ordering::Relaxed);
        let mut framed = vec![1u8];
        framed.extend_from_slice(&id.to_le_bytes());
        framed.extend_from_slice(&frame);
        self.inner.send(to, framed)
    }
    fn recv_message(&self, t: Duration) -> Result<Option<Incoming>, TransportError> {
        let Some((from, framed)) = self.inner.recv_timeout(t)? else {
            return Ok(None);
        };
        if framed[0] == 0 {
            let frame = framed[1..].to_vec();
            return Ok(Some(Incoming {
                from,
                frame,
                body: None,
            }));
        }
        let id = u64::from_le_bytes(framed[1..9].try_into().unwrap());
        let frame = framed[9..].to_vec();
        let len = self.bodies.lock()[&id].len();
        let bodies = self.bodies.clone();
        let body = Body::new(len, move |buf| {
            buf.copy_from_slice(&bodies.lock().remove(&id).expect("a body is taken once"));
            Ok(())
        });
        Ok(Some(Incoming {
            from,
            frame,
            body: Some(body),
        }))
    }
    fn recv_timeout(&self, t: Duration) -> Result<Option<(usize, Vec<u8>)>, TransportError> {
        Ok(self.recv_message(t)?.map(|m| {
            let mut frame = m.frame;
            if let Some(b) = m.body {
                frame.extend_from_slice(&b.recv_vec().unwrap());
            }
            (m.from, frame)
        }))
    }
}

#[test]
fn large_numeric_values_travel_as_bodies_apart_between_any_two_ranks() {
    within(60, "bodies apart", || {
        let bodies: Bodies = Default::default();
        let next = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let apart = Arc::new(AtomicUsize::new(0));
        let mut ranks: Vec<Arc<dyn Transport>> = InProcessTransport::group(3)
            .into_iter()
            .map(|inner| {
                Arc::new(Apart {
                    inner,
                    bodies: bodies.clone(),
                    next: next.clone(),
                    apart: apart.clone(),
                }) as Arc<dyn Transport>
            })
            .collect();
        let head = ranks.remove(0);
        for t in ranks {
            std::thread::spawn(move || Context::builder().threads(1).gpus(false).join(t));
        }
        let ctx = Context::builder()
            .threads(1)
            .gpus(false)
            .join(head)
            .unwrap()
            .unwrap();
        let n = 100_000usize;
        // Made on rank 1, read on rank 2 (a worker receives the body), fetched by the head.
        let v = ctx.spawn_remote_with(on(1), ones, (n,));
        let s = ctx.spawn_remote_with(on(2), total, (&v,));
        assert_eq!(s.fetch().unwrap(), n as f64);
        assert_eq!(
            apart.load(Ordering::Relaxed),
            1,
            "rank 1 sent its vector apart"
        );
        assert_eq!(v.fetch().unwrap(), vec![1.0; n]);
        let w = ctx.spawn_remote_with(on(2), ones32, (n,));
        assert_eq!(w.fetch().unwrap(), vec![1.0f32; n]);
        assert_eq!(apart.load(Ordering::Relaxed), 3, "every fetch of a vector");
        assert!(bodies.lock().is_empty(), "every body was received");
        // Other values still travel inside their frames.
        let words = ctx.spawn_remote_with(on(1), make_shipped, (5000usize,));
        assert_eq!(words.fetch().unwrap().data.len(), 5000);
        assert_eq!(apart.load(Ordering::Relaxed), 3);
    });
}

#[test]
fn a_small_result_comes_to_the_head_with_its_completion() {
    within(60, "results along", || {
        let (ctx, _received, ranks) = counted_group(1);
        let small = ctx.spawn_remote_with(on(1), add1, (1,));
        // 80 KB: too large to come along; it stays on rank 1 until fetched.
        let large = ctx.spawn_remote_with(on(1), ones, (10_000usize,));
        small.wait();
        large.wait();
        ranks[0].kill();
        // The small value is on the head already; the large one was only on rank 1.
        assert_eq!(small.fetch().unwrap(), 2);
        let e = large.fetch().unwrap_err();
        assert!(common::chain(&e).contains("rank 1"), "{e}");
    });
}

fn ones32(n: usize) -> Vec<f32> {
    vec![1.0; n]
}
dagger::remote_fn!(ones32);

fn total32(v: Vec<f32>) -> f32 {
    v.iter().sum()
}
dagger::remote_fn!(total32);

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Scale {
    a: f32,
}

/// `b = a * x`, on a GPU or a CPU thread, registered by name on every rank.
fn scale_kernel() -> WgslKernel<Scale, f32> {
    dagger::remote::register_pod::<Scale>();
    WgslKernel::<Scale, f32>::builder(
        "test.remote.scale",
        "struct Scale { a: f32 }
         @group(0) @binding(0) var<uniform> p: Scale;
         @group(0) @binding(1) var<storage, read> x: array<f32>;
         @group(0) @binding(2) var<storage, read_write> b: array<f32>;
         @compute @workgroup_size(64)
         fn main(@builtin(global_invocation_id) id: vec3<u32>) {
             if (id.x < arrayLength(&x)) { b[id.x] = p.a * x[id.x]; }
         }",
        "main",
    )
    .inputs([dagger::Access::Read])
    .output(|_, lens| lens[0])
    .workgroups(|_, lens| [(lens[0] as u32).div_ceil(64).max(1), 1, 1])
    .cpu(|p: &Scale, ins, out| {
        for (o, x) in out.iter_mut().zip(ins[0]) {
            *o = p.a * x;
        }
    })
    .build()
    .expect("the kernel builds")
}

#[test]
fn kernels_run_on_other_ranks_by_name() {
    within(120, "remote kernels", || {
        let k = scale_kernel();
        let ctx = dagger::remote::in_process(2, |_| Context::builder().threads(1))
            .expect("the group forms");
        ctx.enable_logging();
        let x = ctx.spawn_remote_with(on(1), ones32, (1000usize,));
        let cpu1 = Scope::worker(1).constrain(&Scope::cpu());
        let y = ctx
            .spawn_kernel_with(
                Options::new().scope(cpu1),
                &k,
                Scale { a: 3.0 },
                [(&x).into()],
            )
            .unwrap();
        let s = ctx.spawn_remote_with(on(2), total32, (&y,));
        assert_eq!(s.fetch().unwrap(), 3000.0);
        let logs = ctx.fetch_logs();
        let e = logs
            .iter()
            .find(|e| e.task == y.id() && e.kind == dagger::EventKind::Task)
            .unwrap();
        assert_eq!(e.processor.process(), 2, "the kernel ran on rank 1");
        if common::gpus_or_skip(&ctx, "the remote GPU part").is_empty() {
            return;
        }
        let gpu1 = Scope::worker(1).constrain(&Scope::gpu(0));
        let z = ctx
            .spawn_kernel_with(
                Options::new().scope(gpu1),
                &k,
                Scale { a: 0.5 },
                [(&x).into()],
            )
            .unwrap();
        let s = ctx.spawn_remote_with(on(2), total32, (&z,));
        assert_eq!(s.fetch().unwrap(), 500.0, "read off rank 1's GPU by rank 2");
        let logs = ctx.fetch_logs();
        let e = logs
            .iter()
            .find(|e| e.task == z.id() && e.kind == dagger::EventKind::Task)
            .unwrap();
        let p = ctx
            .processors()
            .into_iter()
            .find(|p| p.id == e.processor)
            .unwrap();
        assert_eq!(p.kind, ProcessorKind::Wgpu, "{p:?}");
        assert_eq!(p.memory_space.to_string(), "gpu0@2");
        assert_eq!(z.fetch().unwrap(), vec![0.5f32; 1000]);
    });
}

#[test]
fn darray_operations_run_where_their_blocks_live() {
    within(300, "DArray across ranks", || {
        let spread = dagger::remote::in_process(2, |_| Context::builder().threads(1).gpus(false))
            .expect("the group forms");
        let a = DArray::<f64>::ones(&spread, [4, 6], Blocks::new([2, 2])).unwrap();
        assert_eq!(
            (0..6).map(|b| a.owner(b)).collect::<Vec<_>>(),
            [0, 0, 0, 1, 1, 1]
        );
        // Blocks copied from a host array go to their owners.
        spread.enable_logging();
        let host = ndarray::Array2::from_shape_fn((6, 6), |(i, j)| (i * 6 + j) as f64);
        let d = DArray::distribute(&spread, &host, Blocks::new([2, 2])).unwrap();
        assert_eq!(d.collect2().unwrap(), host);
        let copies: Vec<u32> = spread
            .fetch_logs()
            .iter()
            .filter(|e| e.kind == dagger::EventKind::Task && e.name.starts_with("gather"))
            .map(|e| e.processor.process())
            .collect();
        assert_eq!(
            [2, 3].map(|p| copies.iter().filter(|&&c| c == p).count()),
            [3, 3],
            "block rows 1 and 2 were copied to ranks 1 and 2: {copies:?}"
        );
        let got = common::ranks::workload(&spread);
        let one = Context::builder().threads(2).gpus(false).build().unwrap();
        assert_eq!(
            DArray::<f64>::ones(&one, [4], Blocks::new([1]))
                .unwrap()
                .owner(3),
            0
        );
        let want = common::ranks::workload(&one);
        common::ranks::check_three_ranks(&got, &want);
    });
}

#[test]
fn a_cholesky_failing_on_a_worker_names_the_block_and_pivot() {
    within(120, "a failed pivot on a worker", || {
        let ctx = cluster(2);
        // Diagonal block 1 (rows 2..4) belongs to rank 1 on the 3 x 1 process grid.
        let mut m = ndarray::Array2::<f64>::eye(6);
        m[[3, 3]] = -1.0;
        let a = DArray::distribute(&ctx, &m, Blocks::new([2, 2])).unwrap();
        assert_eq!(a.owner(4), 1, "block (1, 1)");
        ctx.enable_logging();
        let err = a.cholesky().unwrap_err();
        assert!(
            matches!(
                err,
                dagger::ArrayError::NotPositiveDefinite {
                    block: 1,
                    pivot: 1,
                    row: 3
                }
            ),
            "{err}"
        );
        let potrf_on_1 = ctx
            .fetch_logs()
            .iter()
            .any(|e| &*e.name == "potrf" && e.processor.process() == 2 && !e.ok);
        assert!(potrf_on_1, "the failing tile ran on rank 1");
        // The group carries on.
        let ok = DArray::distribute(&ctx, &ndarray::Array2::<f64>::eye(6), Blocks::new([2, 2]))
            .unwrap()
            .cholesky()
            .unwrap()
            .collect2()
            .unwrap();
        assert_eq!(ok, ndarray::Array2::<f64>::eye(6));
    });
}

#[test]
fn a_singular_matrix_on_a_worker_names_the_block_and_pivot() {
    within(120, "a zero pivot on a worker", || {
        let ctx = cluster(2);
        // Column 3 is zero: diagonal block 1 (rows 2..4), on rank 1 of the 3 x 1 process
        // grid, meets a zero pivot at its second row, with or without pivoting.
        let mut m = ndarray::Array2::<f64>::eye(6);
        m[[3, 3]] = 0.0;
        let a = DArray::distribute(&ctx, &m, Blocks::new([2, 2])).unwrap();
        assert_eq!(a.owner(4), 1, "block (1, 1)");
        let failed_on = |name: &str| {
            ctx.fetch_logs()
                .iter()
                .filter(|e| &*e.name == name && !e.ok)
                .map(|e| e.processor.process())
                .collect::<Vec<_>>()
        };
        let singular = |err: &dagger::ArrayError| {
            matches!(
                err,
                dagger::ArrayError::Singular {
                    block: 1,
                    pivot: 1,
                    row: 3
                }
            )
        };
        for pivoting in [dagger::Pivoting::Partial, dagger::Pivoting::None] {
            ctx.enable_logging();
            let err = a.lu(pivoting).unwrap_err();
            assert!(singular(&err), "{pivoting:?}: {err}");
            assert_eq!(
                failed_on("lu_panel"),
                [2],
                "the failing panel ran on rank 1"
            );
        }
        let err = a.inv().unwrap_err();
        assert!(singular(&err), "{err}");
        // A triangular solve meets the zero on the diagonal where block row 1 is solved.
        let b = DArray::<f64>::ones(&ctx, [6, 2], Blocks::new([2, 2])).unwrap();
        let err = a
            .solve_triangular(
                &b,
                dagger::Triangle::Lower,
                dagger::Trans::No,
                dagger::Diag::NonUnit,
            )
            .unwrap_err();
        assert!(singular(&err), "{err}");
        assert_eq!(failed_on("trsm"), [2], "the failing solve ran on rank 1");
        // The group carries on.
        let x = DArray::distribute(&ctx, &ndarray::Array2::<f64>::eye(6), Blocks::new([2, 2]))
            .unwrap()
            .inv()
            .unwrap()
            .collect2()
            .unwrap();
        assert_eq!(x, ndarray::Array2::<f64>::eye(6));
    });
}

/// Values decoded from the wire (replicas and the like), and how many are alive.
static DECODED: AtomicI64 = AtomicI64::new(0);
static DECODED_LIVE: AtomicI64 = AtomicI64::new(0);

#[derive(serde::Serialize, serde::Deserialize)]
#[serde(from = "Vec<f64>", into = "Vec<f64>")]
struct Shipped {
    data: Vec<f64>,
    decoded: bool,
}

impl From<Vec<f64>> for Shipped {
    fn from(data: Vec<f64>) -> Self {
        DECODED.fetch_add(1, Ordering::SeqCst);
        DECODED_LIVE.fetch_add(1, Ordering::SeqCst);
        Shipped {
            data,
            decoded: true,
        }
    }
}

impl From<Shipped> for Vec<f64> {
    fn from(s: Shipped) -> Self {
        s.data.clone()
    }
}

impl Clone for Shipped {
    fn clone(&self) -> Self {
        Shipped {
            data: self.data.clone(),
            decoded: false,
        }
    }
}

impl Drop for Shipped {
    fn drop(&mut self) {
        if self.decoded {
            DECODED_LIVE.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

fn make_shipped(n: usize) -> Shipped {
    Shipped {
        data: vec![0.25; n],
        decoded: false,
    }
}
dagger::remote_fn!(make_shipped);

fn sum_shipped(s: Shipped) -> f64 {
    s.data.iter().sum()
}
dagger::remote_fn!(sum_shipped);

#[test]
fn a_worker_keeps_a_fetched_input_until_it_is_freed() {
    within(60, "replicas", || {
        let ctx = cluster(2);
        let v = ctx.spawn_remote_with(on(1), make_shipped, (4000usize,));
        v.wait();
        // Several tasks on rank 2 read it, some at once: one fetch, one decoded copy.
        let sums: Vec<_> = (0..6)
            .map(|_| ctx.spawn_remote_with(on(2), sum_shipped, (&v,)))
            .collect();
        for s in &sums {
            assert_eq!(s.fetch().unwrap(), 1000.0);
        }
        let again = ctx.spawn_remote_with(on(2), sum_shipped, (&v,));
        assert_eq!(again.fetch().unwrap(), 1000.0);
        assert_eq!(
            DECODED.load(Ordering::SeqCst),
            1,
            "rank 2 fetched the input once"
        );
        assert_eq!(DECODED_LIVE.load(Ordering::SeqCst), 1, "and keeps its copy");
        drop((v, sums, again));
        let deadline = Instant::now() + Duration::from_secs(10);
        while DECODED_LIVE.load(Ordering::SeqCst) > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(
            DECODED_LIVE.load(Ordering::SeqCst),
            0,
            "the copy went when the object was freed"
        );
    });
}

/// The head's transport, deaf to one rank once told so (a rank that hangs rather than dies).
struct Deafened {
    inner: Arc<InProcessTransport>,
    deaf_to: Arc<AtomicUsize>,
}

impl Transport for Deafened {
    fn rank(&self) -> usize {
        self.inner.rank()
    }
    fn size(&self) -> usize {
        self.inner.size()
    }
    fn send(&self, to: usize, bytes: Vec<u8>) -> Result<(), TransportError> {
        self.inner.send(to, bytes)
    }
    fn recv_timeout(&self, t: Duration) -> Result<Option<(usize, Vec<u8>)>, TransportError> {
        let deadline = Instant::now() + t;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.inner.recv_timeout(left)? {
                Some((from, _)) if from == self.deaf_to.load(Ordering::SeqCst) => {
                    if left.is_zero() {
                        return Ok(None);
                    }
                }
                other => return Ok(other),
            }
        }
    }
}

#[test]
fn a_rank_that_falls_silent_is_declared_lost_after_the_timeout() {
    within(60, "a silent rank", || {
        let mut ranks = InProcessTransport::group(3);
        let head = ranks.remove(0);
        let builder = || {
            Context::builder()
                .threads(1)
                .gpus(false)
                .remote_timeout(Duration::from_millis(1500))
        };
        for t in &ranks {
            let t: Arc<dyn Transport> = t.clone();
            std::thread::spawn(move || builder().join(t));
        }
        let deaf_to = Arc::new(AtomicUsize::new(usize::MAX));
        let transport = Arc::new(Deafened {
            inner: head,
            deaf_to: deaf_to.clone(),
        });
        let ctx = builder().join(transport).unwrap().unwrap();
        assert_eq!(ctx.spawn_remote_with(on(2), add1, (1,)).fetch().unwrap(), 2);
        let long = ctx.spawn_remote_with(on(2), nap, (30_000u64,));
        std::thread::sleep(Duration::from_millis(100));
        let t0 = Instant::now();
        deaf_to.store(2, Ordering::SeqCst);
        let err = long.fetch().unwrap_err();
        let waited = t0.elapsed();
        assert!(
            waited >= Duration::from_millis(1000) && waited < Duration::from_secs(10),
            "declared lost after {waited:?}, with a timeout of 1.5 s"
        );
        let chain = common::chain(&err);
        assert!(chain.contains("rank 2 was lost"), "{chain}");
        assert_eq!(ctx.spawn_remote_with(on(1), add1, (1,)).fetch().unwrap(), 2);
    });
}
