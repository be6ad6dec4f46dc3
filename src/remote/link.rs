//! The head's end of the link to its workers: one thread receives every message, completes
//! the tasks and fetches waiting for them, sends heartbeats, and declares a rank lost when
//! it falls silent or cannot be reached — failing whatever waited on it, within seconds.
//!
//! A thread waiting for a task launched on a worker takes messages in itself meanwhile
//! ([`WaitPoll`]), and the receiving thread rests while any does: the reply completes the
//! task on the thread that waits for it, without a wake-up between threads.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;
use parking_lot::{Mutex, RwLock};

use super::protocol::{Failure, Msg, Payload};

/// A reply: its message and the value it carries.
pub(crate) type Reply = (Msg, Payload);
use super::transport::{Incoming, Transport, TransportError};
use super::{RemoteCause, RemoteError};
use crate::processor::{Completion, TaskFailure};
use crate::sched::WaitPoll;
use crate::value::Value;

/// How long a waiting thread goes on taking messages in after the last one, before it
/// leaves them to the receiving thread and sleeps: tasks of a few ms are not worth a core.
const WAIT_POLL_IDLE: Duration = Duration::from_micros(500);
/// For how long after the last message a waiting thread polls without yielding its core.
const WAIT_POLL_SPIN: Duration = Duration::from_micros(20);
/// How long the receiving thread rests while threads that wait take messages in, before it
/// looks whether they still do.
const POLLED_REST: Duration = Duration::from_millis(1);

/// What a request waits for.
pub(crate) enum Pending {
    /// A task running on `rank`; its inputs are kept alive until it finishes.
    Task {
        rank: usize,
        done: Completion,
        keep: Vec<Value>,
        /// Makes the head's handle from the object's number, its size, and its value when it
        /// came along.
        on_done: Box<dyn FnOnce(u64, u64, Option<Value>) -> Value + Send>,
    },
    /// A reply (`Value` or `Pong`) from `rank`.
    Reply {
        rank: usize,
        tx: Sender<Result<Reply, RemoteError>>,
    },
}

impl Pending {
    fn rank(&self) -> usize {
        match self {
            Pending::Task { rank, .. } | Pending::Reply { rank, .. } => *rank,
        }
    }

    fn fail(self, err: RemoteError) {
        match self {
            Pending::Task { done, keep, .. } => {
                done.complete(Err(TaskFailure::Error(Box::new(err))));
                drop(keep);
            }
            Pending::Reply { tx, .. } => {
                let _ = tx.send(Err(err));
            }
        }
    }
}

struct RankState {
    alive: AtomicBool,
    last_seen_ms: AtomicU64,
    lost: Mutex<Option<String>>,
}

/// Latency and bandwidth between the head and one worker, measured at start-up.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LinkStats {
    /// The worker's rank.
    pub rank: usize,
    /// One-way latency of a small message, in µs (half the fastest round trip).
    pub latency_us: f64,
    /// Bandwidth of a large message, in GB/s.
    pub gbps: f64,
}

pub(crate) struct Link {
    pub(crate) t: Arc<dyn Transport>,
    pending: Mutex<HashMap<u64, Pending>>,
    next_req: AtomicU64,
    ranks: Vec<RankState>,
    pub(crate) timeout: Duration,
    stopped: AtomicBool,
    epoch: Instant,
    pub(crate) stats: RwLock<Vec<LinkStats>>,
    /// Threads taking messages in while they wait for a task.
    pollers: AtomicUsize,
    /// Whether the receiving thread rests because others take messages in.
    resting: AtomicBool,
    /// The receiving thread.
    receiver: OnceLock<std::thread::Thread>,
}

impl Link {
    pub(crate) fn new(t: Arc<dyn Transport>, timeout: Duration) -> Arc<Link> {
        let n = t.size();
        Arc::new(Link {
            t,
            pending: Mutex::new(HashMap::new()),
            next_req: AtomicU64::new(1),
            ranks: (0..n)
                .map(|_| RankState {
                    alive: AtomicBool::new(true),
                    last_seen_ms: AtomicU64::new(0),
                    lost: Mutex::new(None),
                })
                .collect(),
            timeout,
            stopped: AtomicBool::new(false),
            epoch: Instant::now(),
            stats: RwLock::new(Vec::new()),
            pollers: AtomicUsize::new(0),
            resting: AtomicBool::new(false),
            receiver: OnceLock::new(),
        })
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    pub(crate) fn is_alive(&self, rank: usize) -> bool {
        !self.stopped.load(Ordering::Acquire) && self.ranks[rank].alive.load(Ordering::Acquire)
    }

    /// Why `rank` is gone.
    pub(crate) fn lost_error(&self, rank: usize) -> RemoteError {
        if self.stopped.load(Ordering::Acquire) {
            return RemoteError::Closed;
        }
        RemoteError::RankLost {
            rank,
            reason: self.ranks[rank]
                .lost
                .lock()
                .clone()
                .unwrap_or_else(|| "unknown".into()),
        }
    }

    /// Registers a request and returns its number.
    pub(crate) fn register(&self, p: Pending) -> u64 {
        let req = self.next_req.fetch_add(1, Ordering::Relaxed);
        let rank = p.rank();
        self.pending.lock().insert(req, p);
        // A rank lost meanwhile has had its requests failed already: fail this one too.
        if !self.is_alive(rank) {
            if let Some(p) = self.pending.lock().remove(&req) {
                p.fail(self.lost_error(rank));
            }
        }
        req
    }

    /// Sends `msg` to `rank`; a rank that cannot be reached is declared lost.
    pub(crate) fn send(&self, rank: usize, msg: &Msg) -> Result<(), RemoteError> {
        if !self.is_alive(rank) {
            return Err(self.lost_error(rank));
        }
        match self.t.send(rank, msg.encode()) {
            Ok(()) => Ok(()),
            Err(e) => {
                self.lose(rank, e.to_string());
                Err(self.lost_error(rank))
            }
        }
    }

    /// Sends a request and waits for its reply (a fetch or a ping).
    pub(crate) fn request(
        &self,
        rank: usize,
        make: impl FnOnce(u64) -> Msg,
    ) -> Result<Reply, RemoteError> {
        let (tx, rx) = crossbeam_channel::bounded(1);
        let req = self.register(Pending::Reply { rank, tx });
        if let Err(e) = self.send(rank, &make(req)) {
            self.pending.lock().remove(&req);
            return Err(e);
        }
        loop {
            match rx.recv_timeout(Duration::from_millis(200)) {
                Ok(r) => return r,
                Err(_) if !self.is_alive(rank) => {
                    self.pending.lock().remove(&req);
                    return Err(self.lost_error(rank));
                }
                Err(_) => {}
            }
        }
    }

    /// Fetches the value of object `obj` from `rank`: its type's name, and where its
    /// encoding is.
    pub(crate) fn fetch(&self, rank: usize, obj: u64) -> Result<(String, Payload), RemoteError> {
        match self.request(rank, |req| Msg::Fetch { req, obj })? {
            (Msg::Value { value: Ok(t), .. }, payload) => Ok((t, payload)),
            (Msg::Value { value: Err(e), .. }, _) => Err(RemoteError::Fetch {
                rank,
                obj,
                message: e,
            }),
            (other, _) => Err(RemoteError::Protocol {
                rank,
                message: format!("expected a value, got {other:?}"),
            }),
        }
    }

    /// Tells `rank` that object `obj` has no handle left, and the ranks in `replicas`
    /// that their copies of it can go.
    pub(crate) fn free(&self, rank: usize, obj: u64, replicas: &[usize]) {
        if self.is_alive(rank) {
            let _ = self.t.send(rank, Msg::Free { objs: vec![obj] }.encode());
        }
        for &r in replicas {
            if r != rank && r != 0 && self.is_alive(r) {
                let forget = Msg::Forget {
                    owner: rank as u32,
                    objs: vec![obj],
                };
                let _ = self.t.send(r, forget.encode());
            }
        }
    }

    /// Declares `rank` lost and fails everything waiting on it.
    pub(crate) fn lose(&self, rank: usize, reason: String) {
        if !self.ranks[rank].alive.swap(false, Ordering::AcqRel) {
            return;
        }
        *self.ranks[rank].lost.lock() = Some(reason);
        let gone: Vec<Pending> = {
            let mut p = self.pending.lock();
            let reqs: Vec<u64> = p
                .iter()
                .filter(|(_, v)| v.rank() == rank)
                .map(|(k, _)| *k)
                .collect();
            reqs.into_iter().filter_map(|r| p.remove(&r)).collect()
        };
        for p in gone {
            p.fail(self.lost_error(rank));
        }
    }

    /// Stops the link: workers are told to shut down and every waiter fails.
    pub(crate) fn stop(&self) {
        for r in 1..self.ranks.len() {
            if self.is_alive(r) {
                let _ = self.t.send(r, Msg::Shutdown.encode());
            }
        }
        self.stopped.store(true, Ordering::Release);
        let gone: Vec<Pending> = self.pending.lock().drain().map(|(_, v)| v).collect();
        for p in gone {
            p.fail(RemoteError::Closed);
        }
    }

    pub(crate) fn is_stopped(&self) -> bool {
        self.stopped.load(Ordering::Acquire)
    }

    /// Receives and dispatches messages until the link stops.
    pub(crate) fn run(self: &Arc<Self>) {
        let beat = Duration::from_millis(100);
        let mut last_beat = Instant::now();
        for r in &self.ranks {
            r.last_seen_ms.store(self.now_ms(), Ordering::Relaxed);
        }
        let _ = self.receiver.set(std::thread::current());
        while !self.is_stopped() {
            if self.pollers.load(Ordering::SeqCst) > 0 {
                // Threads that wait take the messages in; rest until the last leaves.
                self.resting.store(true, Ordering::SeqCst);
                if self.pollers.load(Ordering::SeqCst) > 0 {
                    std::thread::park_timeout(POLLED_REST);
                }
                self.resting.store(false, Ordering::SeqCst);
            } else {
                match self.t.recv_message(Duration::from_millis(20)) {
                    Ok(Some(m)) => self.handle(m),
                    Ok(None) => {}
                    Err(TransportError::Closed) => {
                        self.stop();
                        return;
                    }
                    Err(e) => tracing::warn!("receiving: {e}"),
                }
            }
            if last_beat.elapsed() >= beat {
                last_beat = Instant::now();
                let now = self.now_ms();
                for r in 1..self.ranks.len() {
                    if !self.is_alive(r) {
                        continue;
                    }
                    let seen = self.ranks[r].last_seen_ms.load(Ordering::Relaxed);
                    if now.saturating_sub(seen) > self.timeout.as_millis() as u64 {
                        self.lose(
                            r,
                            format!(
                                "it sent nothing for {:.1} s (its process may have died)",
                                (now - seen) as f64 / 1000.0
                            ),
                        );
                    } else {
                        let _ = self.send(r, &Msg::Heartbeat);
                    }
                }
            }
        }
    }

    /// Handles one message that arrived.
    fn handle(&self, m: Incoming) {
        let Incoming { from, frame, body } = m;
        self.ranks[from]
            .last_seen_ms
            .store(self.now_ms(), Ordering::Relaxed);
        match Payload::split(frame, body) {
            Ok((m, payload)) => self.dispatch(from, m, payload),
            Err(e) => self.lose(from, format!("it sent an undecodable message: {e}")),
        }
    }

    fn take(&self, req: u64) -> Option<Pending> {
        self.pending.lock().remove(&req)
    }

    fn dispatch(&self, from: usize, m: Msg, payload: Payload) {
        match m {
            Msg::Done {
                req,
                obj,
                type_name,
                bytes,
                inline,
            } => match self.take(req) {
                Some(Pending::Task {
                    done,
                    keep,
                    on_done,
                    ..
                }) => {
                    // A value that does not decode here is fetched when wanted instead.
                    let value = inline.then(|| payload.decode(&type_name).ok()).flatten();
                    done.complete(Ok(on_done(obj, bytes, value)));
                    drop(keep);
                }
                Some(p) => p.fail(RemoteError::Protocol {
                    rank: from,
                    message: "a task result answered another request".into(),
                }),
                // Its waiter gave up: the object is not wanted.
                None => self.free(from, obj, &[]),
            },
            Msg::Failed { req, failure } => {
                if let Some(Pending::Task { done, keep, .. }) = self.take(req) {
                    done.complete(Err(match failure {
                        Failure::Panic { message } => TaskFailure::Panic(message),
                        Failure::Error { chain } => {
                            TaskFailure::Error(Box::new(RemoteCause::from_chain(from, chain)))
                        }
                    }));
                    drop(keep);
                }
            }
            Msg::Value { req, .. } | Msg::Pong { req, .. } => {
                if let Some(Pending::Reply { tx, .. }) = self.take(req) {
                    let _ = tx.send(Ok((m, payload)));
                }
            }
            Msg::Heartbeat | Msg::Hello { .. } => {}
            other => tracing::warn!("rank {from} sent the head an unexpected {other:?}"),
        }
    }
}

impl WaitPoll for Link {
    fn poll_while(&self, waiting: &dyn Fn() -> bool, until: Option<Instant>) -> bool {
        self.pollers.fetch_add(1, Ordering::SeqCst);
        let mut last = Instant::now();
        let done = loop {
            if !waiting() {
                break true;
            }
            if self.is_stopped() {
                break false;
            }
            match self.t.recv_message(Duration::ZERO) {
                Ok(Some(m)) => {
                    self.handle(m);
                    last = Instant::now();
                }
                Ok(None) => {
                    let now = Instant::now();
                    let idle = now.duration_since(last);
                    if idle >= WAIT_POLL_IDLE || until.is_some_and(|u| now >= u) {
                        break false;
                    }
                    if idle >= WAIT_POLL_SPIN {
                        std::thread::yield_now();
                    }
                }
                // The receiving thread reports it.
                Err(_) => break false,
            }
        };
        // A thread whose task completed is likely to wait again soon; the receiving thread
        // looks again within a millisecond anyway. One that gave up hands over at once.
        if self.pollers.fetch_sub(1, Ordering::SeqCst) == 1
            && !done
            && self.resting.load(Ordering::SeqCst)
        {
            if let Some(t) = self.receiver.get() {
                t.unpark();
            }
        }
        done
    }
}
