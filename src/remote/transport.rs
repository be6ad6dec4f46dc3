//! Transports: how encoded messages get from one rank to another.
//!
//! [`Transport`] is the whole seam: a rank sends bytes to a rank and receives bytes from
//! any. [`InProcessTransport`] connects "ranks" that are threads of one process through
//! channels — the same encoded messages as between processes, so the protocol is tested
//! by plain `cargo test` — and the `mpi` feature adds one over MPI.

use std::mem::MaybeUninit;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};

/// A transport failure.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TransportError {
    /// The rank cannot be reached any more (its process ended, or its endpoint closed).
    #[error("rank {rank} cannot be reached: {reason}")]
    Unreachable {
        /// The rank.
        rank: usize,
        /// Why.
        reason: String,
    },
    /// There is no such rank.
    #[error("rank {rank} does not exist: the group has {size} ranks")]
    NoSuchRank {
        /// The rank asked for.
        rank: usize,
        /// How many ranks there are.
        size: usize,
    },
    /// This endpoint was closed: nothing more can be received.
    #[error("this rank's endpoint is closed")]
    Closed,
}

/// Moves encoded messages between the ranks of a group (rank 0 is the head).
///
/// Messages between two ranks arrive in the order they were sent. `send` does not wait for
/// the receiver.
///
/// ```
/// use dagger::remote::{InProcessTransport, Transport};
/// use std::time::Duration;
/// let ranks = InProcessTransport::group(2);
/// ranks[0].send(1, b"hello".to_vec())?;
/// let (from, bytes) = ranks[1].recv_timeout(Duration::from_secs(5))?.expect("a message");
/// assert_eq!((from, bytes.as_slice()), (0, &b"hello"[..]));
/// # Ok::<(), dagger::remote::TransportError>(())
/// ```
pub trait Transport: Send + Sync + 'static {
    /// This endpoint's rank.
    fn rank(&self) -> usize;
    /// How many ranks the group has.
    fn size(&self) -> usize;
    /// Sends `bytes` to rank `to`.
    fn send(&self, to: usize, bytes: Vec<u8>) -> Result<(), TransportError>;
    /// The next message from any rank, with its sender, or `None` if none came within
    /// `timeout`. A body sent apart ([`send_with_body`](Self::send_with_body)) comes
    /// appended to its frame.
    fn recv_timeout(&self, timeout: Duration) -> Result<Option<(usize, Vec<u8>)>, TransportError>;
    /// Sends `frame` followed by `body`, a large payload in the sender's own memory. A
    /// transport that can move the body without copying it keeps it apart, and the
    /// receiver takes it from [`Incoming::body`] straight into memory of its own choosing;
    /// the default appends it to the frame.
    fn send_with_body(&self, to: usize, frame: Vec<u8>, body: &[u8]) -> Result<(), TransportError> {
        let mut frame = frame;
        frame.extend_from_slice(body);
        self.send(to, frame)
    }
    /// The next message like [`recv_timeout`](Self::recv_timeout), with its body apart
    /// when it was sent apart. The default never has one.
    fn recv_message(&self, timeout: Duration) -> Result<Option<Incoming>, TransportError> {
        Ok(self.recv_timeout(timeout)?.map(|(from, frame)| Incoming {
            from,
            frame,
            body: None,
        }))
    }
    /// A short name for logs and `dagger info` (`"in-process"`, `"mpi"`).
    fn name(&self) -> &'static str {
        "custom"
    }
}

/// A message as it arrives: its sender, its frame, and its body when that travels apart.
#[derive(Debug)]
pub struct Incoming {
    /// The sender's rank.
    pub from: usize,
    /// The frame.
    pub frame: Vec<u8>,
    /// The body sent apart from the frame, still to be received.
    pub body: Option<Body>,
}

type TakeInit = Box<dyn FnOnce(&mut [u8]) -> Result<(), TransportError> + Send>;
type TakeUninit = Box<dyn FnOnce(&mut [MaybeUninit<u8>]) -> Result<(), TransportError> + Send>;

/// How a body is taken off its transport.
enum Take {
    /// Into initialized memory.
    Init(TakeInit),
    /// Into memory that may be uninitialized, every byte of which it writes when it
    /// returns `Ok` (see [`Body::new_uninit`]).
    #[cfg_attr(not(feature = "mpi"), allow(dead_code))]
    Uninit(TakeUninit),
}

/// The body of a message, sent apart from its frame and not received yet: the receiver
/// gives it memory of the right size (a vector of the value's own element type, say), so
/// it lands where it stays. A body dropped without being received is received and
/// discarded, so that its sender is never left waiting.
pub struct Body {
    len: usize,
    take: Option<Take>,
}

impl std::fmt::Debug for Body {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Body").field("len", &self.len).finish()
    }
}

impl Body {
    /// A body of `len` bytes that `take` receives into a buffer of exactly that size.
    pub fn new(
        len: usize,
        take: impl FnOnce(&mut [u8]) -> Result<(), TransportError> + Send + 'static,
    ) -> Body {
        Body {
            len,
            take: Some(Take::Init(Box::new(take))),
        }
    }

    /// A body that `take` receives straight into memory that need not be initialized, so
    /// the receiver neither zeroes its buffer first nor touches it twice.
    ///
    /// # Safety
    /// When `take` returns `Ok`, it has written every byte of the buffer it was given, and
    /// it never writes an uninitialized byte into it.
    #[cfg_attr(not(feature = "mpi"), allow(dead_code))]
    pub(crate) unsafe fn new_uninit(
        len: usize,
        take: impl FnOnce(&mut [MaybeUninit<u8>]) -> Result<(), TransportError> + Send + 'static,
    ) -> Body {
        Body {
            len,
            take: Some(Take::Uninit(Box::new(take))),
        }
    }

    /// Its size in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether it has no bytes.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Receives it into `buf`, which must hold exactly [`len`](Self::len) bytes.
    ///
    /// # Panics
    /// If `buf` is another size.
    pub fn recv_into(mut self, buf: &mut [u8]) -> Result<(), TransportError> {
        assert_eq!(buf.len(), self.len, "a body is received whole");
        match self.take.take().expect("a body is received once") {
            Take::Init(take) => take(buf),
            Take::Uninit(take) => {
                // SAFETY: `[u8]` and `[MaybeUninit<u8>]` have one layout, and by the
                // contract of `new_uninit` the closure writes only initialized bytes, so
                // `buf` stays initialized whatever it returns.
                let buf = unsafe { &mut *(buf as *mut [u8] as *mut [MaybeUninit<u8>]) };
                take(buf)
            }
        }
    }

    /// Receives it into `buf`, which must hold exactly [`len`](Self::len) bytes and need
    /// not be initialized. When this returns `Ok`, every byte of `buf` is initialized.
    ///
    /// # Panics
    /// If `buf` is another size.
    pub(crate) fn recv_into_uninit(
        mut self,
        buf: &mut [MaybeUninit<u8>],
    ) -> Result<(), TransportError> {
        assert_eq!(buf.len(), self.len, "a body is received whole");
        match self.take.take().expect("a body is received once") {
            Take::Uninit(take) => take(buf),
            Take::Init(take) => {
                for b in buf.iter_mut() {
                    *b = MaybeUninit::new(0);
                }
                // SAFETY: every byte was just written, and `[MaybeUninit<u8>]` and `[u8]`
                // have one layout.
                take(unsafe { &mut *(buf as *mut [MaybeUninit<u8>] as *mut [u8]) })
            }
        }
    }

    /// Receives it into a vector of its own.
    pub fn recv_vec(self) -> Result<Vec<u8>, TransportError> {
        let len = self.len;
        let mut v = Vec::with_capacity(len);
        self.recv_into_uninit(&mut v.spare_capacity_mut()[..len])?;
        // SAFETY: `recv_into_uninit` returned `Ok`, so the first `len` bytes are
        // initialized, and the capacity is at least `len`.
        unsafe { v.set_len(len) };
        Ok(v)
    }
}

impl Drop for Body {
    fn drop(&mut self) {
        if let Some(take) = self.take.take() {
            let body = Body {
                len: self.len,
                take: Some(take),
            };
            let _ = body.recv_vec();
        }
    }
}

/// Copies `src` into `dst`, of the same length, initializing every byte of it.
pub(crate) fn write_bytes(dst: &mut [MaybeUninit<u8>], src: &[u8]) {
    assert_eq!(dst.len(), src.len(), "copied whole");
    for (d, &s) in dst.iter_mut().zip(src) {
        *d = MaybeUninit::new(s);
    }
}

type Envelope = (usize, Vec<u8>);

/// Ranks that are threads of one process, connected by channels.
///
/// [`kill`](Self::kill) makes a rank vanish as a crashed process would: messages to it
/// fail and it sends and receives nothing more.
pub struct InProcessTransport {
    rank: usize,
    peers: Vec<Sender<Envelope>>,
    inbox: Receiver<Envelope>,
    alive: Vec<Arc<AtomicBool>>,
}

impl std::fmt::Debug for InProcessTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InProcessTransport")
            .field("rank", &self.rank)
            .field("size", &self.peers.len())
            .finish()
    }
}

impl InProcessTransport {
    /// `n` connected endpoints, rank 0 first.
    pub fn group(n: usize) -> Vec<Arc<InProcessTransport>> {
        let (txs, rxs): (Vec<_>, Vec<_>) = (0..n).map(|_| crossbeam_channel::unbounded()).unzip();
        let alive: Vec<Arc<AtomicBool>> = (0..n).map(|_| Arc::new(AtomicBool::new(true))).collect();
        rxs.into_iter()
            .enumerate()
            .map(|(rank, inbox)| {
                Arc::new(InProcessTransport {
                    rank,
                    peers: txs.clone(),
                    inbox,
                    alive: alive.clone(),
                })
            })
            .collect()
    }

    /// Makes this rank vanish: it receives nothing more, its sends fail, and sends to it
    /// fail as to a process that has ended.
    pub fn kill(&self) {
        self.alive[self.rank].store(false, Ordering::SeqCst);
    }

    fn check(&self, rank: usize) -> Result<(), TransportError> {
        if self.alive[rank].load(Ordering::SeqCst) {
            Ok(())
        } else {
            Err(TransportError::Unreachable {
                rank,
                reason: "its endpoint was killed".into(),
            })
        }
    }
}

impl Transport for InProcessTransport {
    fn rank(&self) -> usize {
        self.rank
    }

    fn size(&self) -> usize {
        self.peers.len()
    }

    fn send(&self, to: usize, bytes: Vec<u8>) -> Result<(), TransportError> {
        if !self.alive[self.rank].load(Ordering::SeqCst) {
            return Err(TransportError::Closed);
        }
        let peer = self.peers.get(to).ok_or(TransportError::NoSuchRank {
            rank: to,
            size: self.peers.len(),
        })?;
        self.check(to)?;
        peer.send((self.rank, bytes))
            .map_err(|_| TransportError::Unreachable {
                rank: to,
                reason: "its endpoint was dropped".into(),
            })
    }

    fn recv_timeout(&self, timeout: Duration) -> Result<Option<Envelope>, TransportError> {
        if !self.alive[self.rank].load(Ordering::SeqCst) {
            return Err(TransportError::Closed);
        }
        loop {
            match self.inbox.recv_timeout(timeout) {
                Ok((from, bytes)) => {
                    // A dead rank's messages still in flight are lost with it.
                    if !self.alive[from].load(Ordering::SeqCst) {
                        continue;
                    }
                    if !self.alive[self.rank].load(Ordering::SeqCst) {
                        return Err(TransportError::Closed);
                    }
                    return Ok(Some((from, bytes)));
                }
                Err(RecvTimeoutError::Timeout) => return Ok(None),
                Err(RecvTimeoutError::Disconnected) => return Err(TransportError::Closed),
            }
        }
    }

    fn name(&self) -> &'static str {
        "in-process"
    }
}
