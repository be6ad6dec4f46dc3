//! The MPI transport (cargo feature `mpi`): ranks are the processes `mpirun` started.
//!
//! MPI is initialized with `MPI_THREAD_MULTIPLE`. Any thread sends; the thread that
//! consumes messages (the head's link, a worker's serving loop) probes for them itself, so
//! a message reaches the code that handles it without passing between threads.
//!
//! A send is non-blocking underneath: while it waits for its receiver (a large message
//! waits until the receiver takes it), the sending thread takes in what other ranks send
//! to this one and queues it for the consumer. Two ranks sending large messages to each
//! other at once therefore both get through, whichever threads are sending. The queue and
//! the probe share one lock, so messages from a rank are still consumed in the order they
//! were sent.
//!
//! A large body ([`Transport::send_with_body`]) is sent from the sender's own memory as
//! messages of its own (pieces of at most 1 GiB, in order), on a tag named in the header
//! before them; the receiver takes it straight into the buffer it will keep (see
//! [`Body`]), which is never zeroed first. Neither side copies it.
//!
//! Protocol messages and the headers of bodies travel on a communicator of their own (a
//! duplicate of `MPI_COMM_WORLD`), each kind with its tag, so that one probe for any tag
//! finds the next of either, in the order they were sent; bodies and
//! [`MpiTransport::ping_pong`]'s raw messages use `MPI_COMM_WORLD`.

use std::collections::VecDeque;
use std::mem::MaybeUninit;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mpi::environment::Universe;
use mpi::point_to_point::{MatchedReceiveVec, Status};
use mpi::raw::AsRaw;
use mpi::topology::{Communicator, SimpleCommunicator};
use mpi::traits::{Destination, Source};
use mpi::Threading;
use parking_lot::Mutex;

use super::transport::{Body, Incoming, Transport, TransportError};

/// The tag of protocol messages (on [`MpiTransport::messages`]).
const PROTOCOL: i32 = 0;
/// The tag of raw ping-pongs (on the world communicator).
const RAW: i32 = 1;
/// The tag of frames whose body follows apart (on [`MpiTransport::messages`]): 8 bytes of body length, 4 of its tag and 4
/// of the size of its pieces (little-endian), then the frame.
const HEADER: i32 = 2;
/// Bodies take tags from here to [`BODY_TAG_END`] (the least upper bound MPI promises), in
/// turn, so that bodies sent from several threads at once never mix (on the world
/// communicator).
const BODY_TAG_START: i32 = 16;
const BODY_TAG_END: i32 = 32_767;
/// Bodies smaller than this go inside their frame: a copy costs less than a message.
const BODY_APART_MIN: usize = 64 << 10;
/// A body travels in messages of at most this many bytes, in order on its tag: an MPI
/// count is a C `int`. `DAGGER_MPI_PIECE_BYTES` sets a smaller size (to exercise the
/// splitting); the receiver follows the size the header names.
const PIECE: usize = 1 << 30;
/// The size of a header before its frame.
const HEADER_LEN: usize = 16;
/// How long after the last message a waiting consumer keeps polling (yielding the core
/// between polls) before it polls only every [`IDLE_POLL`], leaving the cores to ranks
/// that compute.
const BUSY_AFTER_MESSAGE: Duration = Duration::from_millis(2);
/// How often an idle rank polls.
const IDLE_POLL: Duration = Duration::from_micros(200);
use super::RemoteError;
use crate::context::{Context, ContextBuilder};

/// A communicator every thread uses (MPI is initialized with `MPI_THREAD_MULTIPLE`).
struct Shared(std::mem::ManuallyDrop<SimpleCommunicator>);

// SAFETY: under MPI_THREAD_MULTIPLE, which `MpiTransport::init` requires, MPI calls on a
// communicator may come from any thread at once; the handle is only read. It is never
// freed (MPI_Finalize releases it), so no thread can use it after a free.
unsafe impl Send for Shared {}
// SAFETY: as for `Send`.
unsafe impl Sync for Shared {}

/// The ranks of `MPI_COMM_WORLD`, as a [`Transport`].
pub struct MpiTransport {
    rank: usize,
    size: usize,
    /// Protocol messages and headers of bodies: a duplicate of the world communicator.
    messages: Shared,
    /// Messages a sending thread took in while its own send waited, oldest first.
    inbox: Mutex<VecDeque<Incoming>>,
    /// The next body's tag, counted from [`BODY_TAG_START`].
    next_body: AtomicU64,
    stop: AtomicBool,
    epoch: Instant,
    /// When the last message arrived, in µs since `epoch`.
    last_message_us: AtomicU64,
    /// The largest message a body is sent in.
    piece: usize,
    universe: Mutex<Option<Universe>>,
}

impl std::fmt::Debug for MpiTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MpiTransport")
            .field("rank", &self.rank)
            .field("size", &self.size)
            .finish()
    }
}

impl MpiTransport {
    /// Initializes MPI (once per process).
    pub fn init() -> Result<Arc<MpiTransport>, TransportError> {
        let (universe, level) = mpi::initialize_with_threading(Threading::Multiple).ok_or(
            TransportError::Unreachable {
                rank: 0,
                reason: "MPI was initialized already in this process".into(),
            },
        )?;
        if level != Threading::Multiple {
            return Err(TransportError::Unreachable {
                rank: 0,
                reason: format!(
                    "this MPI library gives thread level {level:?}, and dagger needs Multiple"
                ),
            });
        }
        let world = universe.world();
        let (rank, size) = (world.rank() as usize, world.size() as usize);
        // Collective: every rank initializes the transport.
        let messages = Shared(std::mem::ManuallyDrop::new(world.duplicate()));
        Ok(Arc::new(MpiTransport {
            rank,
            size,
            messages,
            inbox: Mutex::new(VecDeque::new()),
            next_body: AtomicU64::new(0),
            stop: AtomicBool::new(false),
            epoch: Instant::now(),
            last_message_us: AtomicU64::new(0),
            piece: std::env::var("DAGGER_MPI_PIECE_BYTES")
                .ok()
                .and_then(|v| v.parse::<usize>().ok())
                .map_or(PIECE, |p| p.clamp(1, PIECE)),
            universe: Mutex::new(Some(universe)),
        }))
    }

    /// Takes one protocol message off MPI, if one has arrived, into the queue (`queue`)
    /// or for the caller. The lock keeps the order of arrival.
    fn take_in(&self, queue: bool) -> Option<Incoming> {
        let mut inbox = self.inbox.lock();
        if !queue {
            if let Some(m) = inbox.pop_front() {
                return Some(m);
            }
        }
        let probed = self.messages.0.any_process().immediate_matched_probe()?;
        let m = if probed.1.tag() != HEADER {
            let (frame, status) = probed.matched_receive_vec::<u8>();
            Incoming {
                from: status.source_rank() as usize,
                frame,
                body: None,
            }
        } else {
            let (header, status) = probed.matched_receive_vec::<u8>();
            let from = status.source_rank() as usize;
            let (body, frame) = body_of(from, header);
            // A thread taking messages in while it sends receives the body at once: its
            // sender may be waiting on this very rank's send.
            let body = match body {
                Some(b) if queue => {
                    let bytes = b.recv_vec().unwrap_or_default();
                    Some(Body::new(bytes.len(), move |buf| {
                        buf.copy_from_slice(&bytes);
                        Ok(())
                    }))
                }
                other => other,
            };
            Incoming { from, frame, body }
        };
        self.last_message_us
            .store(self.epoch.elapsed().as_micros() as u64, Ordering::Relaxed);
        if queue {
            inbox.push_back(m);
            None
        } else {
            Some(m)
        }
    }

    /// Sends `parts` (each a tag and its bytes; the first on [`messages`](Self::messages),
    /// the rest on the world communicator) without blocking and waits for all of them,
    /// taking in what others send meanwhile: they may be waiting on this rank.
    fn send_parts(&self, to: usize, parts: &[(i32, &[u8])]) {
        // Errors abort the job under MPI's default error handler.
        let world = SimpleCommunicator::world();
        let first = self.messages.0.process_at_rank(to as i32);
        let rest = world.process_at_rank(to as i32);
        mpi::request::scope(|scope| {
            let mut reqs: Vec<_> = parts
                .iter()
                .enumerate()
                .map(|(i, &(tag, bytes))| {
                    let peer = if i == 0 { &first } else { &rest };
                    Some(peer.immediate_send_with_tag(scope, bytes, tag))
                })
                .collect();
            loop {
                for r in reqs.iter_mut() {
                    if let Some(req) = r.take() {
                        if let Err(req) = req.test() {
                            *r = Some(req);
                        }
                    }
                }
                if reqs.iter().all(Option::is_none) {
                    break;
                }
                if self.take_in(true).is_none() {
                    std::thread::yield_now();
                }
            }
        });
    }

    /// A raw MPI ping-pong of `bytes`-byte messages between rank 0 and `peer`, `reps` round
    /// trips, beside the protocol (on a tag of its own): rank 0 and `peer` must both call it;
    /// other ranks return at once. Returns, on rank 0, the fastest and the mean round trip
    /// in seconds.
    pub fn ping_pong(&self, peer: usize, bytes: usize, reps: usize) -> Option<(f64, f64)> {
        let world = SimpleCommunicator::world();
        let buf = vec![0u8; bytes];
        if self.rank == 0 {
            let p = world.process_at_rank(peer as i32);
            let (mut best, mut sum) = (f64::INFINITY, 0.0);
            for _ in 0..reps {
                let t0 = std::time::Instant::now();
                p.send_with_tag(&buf[..], RAW);
                let _ = p.receive_vec_with_tag::<u8>(RAW);
                let rtt = t0.elapsed().as_secs_f64();
                best = best.min(rtt);
                sum += rtt;
            }
            Some((best, sum / reps.max(1) as f64))
        } else {
            if self.rank == peer {
                let head = world.process_at_rank(0);
                for _ in 0..reps {
                    let (m, _) = head.receive_vec_with_tag::<u8>(RAW);
                    head.send_with_tag(&m[..], RAW);
                }
            }
            None
        }
    }

    /// Stops and finalizes MPI. Nothing can be sent or received afterwards; the thread
    /// consuming messages must have stopped.
    pub fn finalize(&self) {
        self.stop.store(true, Ordering::Release);
        // Dropping the universe calls MPI_Finalize.
        drop(self.universe.lock().take());
    }
}

impl MpiTransport {
    fn check(&self, to: usize) -> Result<(), TransportError> {
        if to >= self.size {
            return Err(TransportError::NoSuchRank {
                rank: to,
                size: self.size,
            });
        }
        if self.stop.load(Ordering::Acquire) {
            return Err(TransportError::Closed);
        }
        Ok(())
    }
}

/// The body announced by a header from `from`, and the frame after it. A header too short
/// to name a body is passed on as the frame, for the protocol to reject.
fn body_of(from: usize, header: Vec<u8>) -> (Option<Body>, Vec<u8>) {
    if header.len() < HEADER_LEN {
        return (None, header);
    }
    let len = u64::from_le_bytes(header[..8].try_into().expect("8 bytes")) as usize;
    let tag = i32::from_le_bytes(header[8..12].try_into().expect("4 bytes"));
    let piece = u32::from_le_bytes(header[12..16].try_into().expect("4 bytes")) as usize;
    let piece = piece.clamp(1, PIECE);
    let take = move |buf: &mut [MaybeUninit<u8>]| {
        for piece in buf.chunks_mut(piece) {
            recv_piece(from, tag, piece)?;
        }
        Ok(())
    };
    // SAFETY: `take` returns `Ok` only when every piece, which together cover the buffer,
    // was received whole, and MPI writes only the bytes it received.
    let body = unsafe { Body::new_uninit(len, take) };
    (Some(body), header[HEADER_LEN..].to_vec())
}

/// Receives one piece of a body from `from` on `tag` into `buf`, which it must fill.
fn recv_piece(from: usize, tag: i32, buf: &mut [MaybeUninit<u8>]) -> Result<(), TransportError> {
    let world = SimpleCommunicator::world();
    let bytes = <u8 as mpi::datatype::Equivalence>::equivalent_datatype();
    let mut status = MaybeUninit::<mpi::ffi::MPI_Status>::uninit();
    // SAFETY: `buf` is valid for writes of its `len` bytes (at most `PIECE`, which fits the
    // count's C `int`) for the whole call, and MPI writes nothing past the count it is
    // given; a larger message is an error, which aborts the job under MPI's default error
    // handler. `status` is valid for writes and filled before MPI_Recv returns.
    let status = unsafe {
        mpi::ffi::MPI_Recv(
            buf.as_mut_ptr().cast(),
            buf.len() as std::ffi::c_int,
            bytes.as_raw(),
            from as std::ffi::c_int,
            tag,
            world.as_raw(),
            status.as_mut_ptr(),
        );
        Status::from_raw(status.assume_init())
    };
    let got = status.count(bytes) as usize;
    if got == buf.len() {
        Ok(())
    } else {
        Err(TransportError::Unreachable {
            rank: from,
            reason: format!("a piece of a body of {} bytes came with {got}", buf.len()),
        })
    }
}

impl Transport for MpiTransport {
    fn rank(&self) -> usize {
        self.rank
    }

    fn size(&self) -> usize {
        self.size
    }

    fn send(&self, to: usize, bytes: Vec<u8>) -> Result<(), TransportError> {
        self.check(to)?;
        self.send_parts(to, &[(PROTOCOL, &bytes)]);
        Ok(())
    }

    fn send_with_body(&self, to: usize, frame: Vec<u8>, body: &[u8]) -> Result<(), TransportError> {
        if body.len() < BODY_APART_MIN {
            let mut frame = frame;
            frame.extend_from_slice(body);
            return self.send(to, frame);
        }
        self.check(to)?;
        let span = (BODY_TAG_END - BODY_TAG_START) as u64;
        let tag = BODY_TAG_START + (self.next_body.fetch_add(1, Ordering::Relaxed) % span) as i32;
        let mut header = Vec::with_capacity(HEADER_LEN + frame.len());
        header.extend_from_slice(&(body.len() as u64).to_le_bytes());
        header.extend_from_slice(&tag.to_le_bytes());
        header.extend_from_slice(&(self.piece as u32).to_le_bytes());
        header.extend_from_slice(&frame);
        let mut parts = vec![(HEADER, &header[..])];
        parts.extend(body.chunks(self.piece).map(|piece| (tag, piece)));
        self.send_parts(to, &parts);
        Ok(())
    }

    fn recv_message(&self, timeout: Duration) -> Result<Option<Incoming>, TransportError> {
        let deadline = Instant::now() + timeout;
        loop {
            if self.stop.load(Ordering::Acquire) {
                return Err(TransportError::Closed);
            }
            if let Some(m) = self.take_in(false) {
                return Ok(Some(m));
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(None);
            }
            let since = (now.duration_since(self.epoch).as_micros() as u64)
                .saturating_sub(self.last_message_us.load(Ordering::Relaxed));
            if Duration::from_micros(since) < BUSY_AFTER_MESSAGE {
                std::thread::yield_now();
            } else {
                std::thread::sleep(IDLE_POLL.min(deadline - now));
            }
        }
    }

    fn recv_timeout(&self, timeout: Duration) -> Result<Option<(usize, Vec<u8>)>, TransportError> {
        let Some(m) = self.recv_message(timeout)? else {
            return Ok(None);
        };
        let mut frame = m.frame;
        if let Some(body) = m.body {
            let at = frame.len();
            frame.resize(at + body.len(), 0);
            body.recv_into(&mut frame[at..])?;
        }
        Ok(Some((m.from, frame)))
    }

    fn name(&self) -> &'static str {
        "mpi"
    }
}

/// Finalizes MPI when the head's context ends.
struct Finalize(Arc<MpiTransport>);

impl Drop for Finalize {
    fn drop(&mut self) {
        self.0.finalize();
    }
}

impl ContextBuilder {
    /// Joins the MPI job this process was started in (by `mpirun`/`srun`): on rank 0
    /// returns the head's context over the processors of every rank; on every other rank
    /// serves the head until its context ends, then finalizes MPI and exits the process
    /// (so the rest of `main` runs on rank 0 only). The builder describes each rank's own
    /// processors.
    ///
    /// ```no_run
    /// use dagger::prelude::*;
    /// fn square(x: f64) -> f64 { x * x }
    /// dagger::remote_fn!(square);
    ///
    /// let ctx = Context::builder().threads(1).mpi()?;   // workers never return
    /// let t = ctx.spawn_remote_with(Options::new().scope(Scope::worker(1)), square, (3.0,));
    /// assert_eq!(t.fetch()?, 9.0);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn mpi(self) -> Result<Context, RemoteError> {
        self.mpi_over(MpiTransport::init()?)
    }

    /// [`mpi`](Self::mpi) over a transport made already (to measure raw MPI with
    /// [`MpiTransport::ping_pong`] first, say).
    pub fn mpi_over(self, t: Arc<MpiTransport>) -> Result<Context, RemoteError> {
        let rank = t.rank();
        let mut b = self;
        // The thread taking messages in polls; threads spinning beside it would delay them.
        b.spin = false;
        // Dropped after the link to the other ranks (see `join`).
        b.attached.push(Box::new(Finalize(t.clone())));
        match b.join(t.clone()) {
            Ok(Some(ctx)) => Ok(ctx),
            Ok(None) => {
                t.finalize();
                std::process::exit(0);
            }
            Err(e) if rank != 0 => {
                eprintln!("dagger: rank {rank}: {e}");
                t.finalize();
                std::process::exit(1);
            }
            Err(e) => Err(e),
        }
    }
}

impl Context {
    /// [`ContextBuilder::mpi`] with the default builder: every rank contributes one thread
    /// per core and its GPUs.
    pub fn mpi() -> Result<Context, RemoteError> {
        Context::builder().mpi()
    }
}
