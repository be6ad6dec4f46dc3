//! The MPI transport (cargo feature `mpi`): ranks are the processes `mpirun` started.
//!
//! MPI is initialized with `MPI_THREAD_MULTIPLE`: any thread sends (a blocking standard
//! send, which the receiving rank always matches), and one thread per rank receives every
//! message by probing for any source, so no send can wait on a rank that is itself sending.
//! The protocol uses one tag; [`MpiTransport::ping_pong`] measures raw MPI on another.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError};
use mpi::environment::Universe;
use mpi::point_to_point::MatchedReceiveVec;
use mpi::topology::{Communicator, SimpleCommunicator};
use mpi::traits::{Destination, Source};
use mpi::Threading;
use parking_lot::Mutex;

use super::transport::{Transport, TransportError};

/// The tag of protocol messages.
const PROTOCOL: i32 = 0;
/// The tag of raw ping-pongs.
const RAW: i32 = 1;
use super::RemoteError;
use crate::context::{Context, ContextBuilder};

/// The ranks of `MPI_COMM_WORLD`, as a [`Transport`].
pub struct MpiTransport {
    rank: usize,
    size: usize,
    inbox: Receiver<(usize, Vec<u8>)>,
    stop: Arc<AtomicBool>,
    receiver: Mutex<Option<std::thread::JoinHandle<()>>>,
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
    /// Initializes MPI (once per process) and starts receiving.
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
        let (tx, inbox) = crossbeam_channel::unbounded();
        let stop = Arc::new(AtomicBool::new(false));
        let receiver = {
            let stop = stop.clone();
            std::thread::Builder::new()
                .name(format!("dagger-mpi-recv{rank}"))
                .spawn(move || {
                    let world = SimpleCommunicator::world();
                    let mut idle = 0u32;
                    while !stop.load(Ordering::Acquire) {
                        match world
                            .any_process()
                            .immediate_matched_probe_with_tag(PROTOCOL)
                        {
                            Some(probed) => {
                                idle = 0;
                                let (bytes, status) = probed.matched_receive_vec::<u8>();
                                if tx.send((status.source_rank() as usize, bytes)).is_err() {
                                    break;
                                }
                            }
                            None => {
                                // Spin briefly for latency, then back off so idle ranks
                                // leave the cores to the ones computing.
                                idle = idle.saturating_add(1);
                                if idle < 2_000 {
                                    std::thread::yield_now();
                                } else {
                                    std::thread::sleep(Duration::from_micros(200));
                                }
                            }
                        }
                    }
                })
                .map_err(|e| TransportError::Unreachable {
                    rank,
                    reason: format!("could not start the receiving thread: {e}"),
                })?
        };
        Ok(Arc::new(MpiTransport {
            rank,
            size,
            inbox,
            stop,
            receiver: Mutex::new(Some(receiver)),
            universe: Mutex::new(Some(universe)),
        }))
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

    /// Stops receiving and finalizes MPI. Nothing can be sent or received afterwards.
    pub fn finalize(&self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.receiver.lock().take() {
            let _ = t.join();
        }
        // Dropping the universe calls MPI_Finalize.
        drop(self.universe.lock().take());
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
        if to >= self.size {
            return Err(TransportError::NoSuchRank {
                rank: to,
                size: self.size,
            });
        }
        if self.stop.load(Ordering::Acquire) {
            return Err(TransportError::Closed);
        }
        // Errors abort the job under MPI's default error handler.
        SimpleCommunicator::world()
            .process_at_rank(to as i32)
            .send_with_tag(&bytes[..], PROTOCOL);
        Ok(())
    }

    fn recv_timeout(&self, timeout: Duration) -> Result<Option<(usize, Vec<u8>)>, TransportError> {
        match self.inbox.recv_timeout(timeout) {
            Ok(m) => Ok(Some(m)),
            Err(RecvTimeoutError::Timeout) => Ok(None),
            Err(RecvTimeoutError::Disconnected) => Err(TransportError::Closed),
        }
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
