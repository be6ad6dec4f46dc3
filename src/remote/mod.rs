//! Many processes: worker ranks that run tasks for a head, over a [`Transport`].
//!
//! All ranks run the same program. Rank 0 is the **head**: it runs the user's program and
//! the scheduler; every other rank is a **worker** that contributes its CPU threads and
//! GPUs to the head's processor tree and serves the head's tasks until the head's context
//! ends. Rank `r` is process `r + 1` in [`ProcessorId`](crate::ProcessorId)s and
//! [`MemorySpace`](crate::MemorySpace)s (1 is the head), so `dagger info` and error
//! messages name where everything is; [`Scope::worker`](crate::Scope::worker) selects by
//! rank.
//!
//! - **What runs remotely**: functions registered by name with
//!   [`remote_fn!`](crate::remote_fn) and spawned with [`Context::spawn_remote`], and
//!   kernels registered by name ([`Kernel::lookup`](crate::Kernel::lookup)) whose
//!   parameters are [`Wire`] types. Arguments and results are `serde` types encoded with
//!   postcard; numeric vectors travel as raw bytes. Closures run in the head's process:
//!   their scope is narrowed to it, as it is narrowed to host threads.
//! - **Data stays where it was made**: a task's result stays on the rank that computed it.
//!   A task on another rank fetches it from that rank directly, never through the head;
//!   `fetch` brings it to the caller (and keeps a copy there); the object is freed on its
//!   owner when the last handle to it drops.
//! - **DArrays are spread over the ranks**: block-cyclically over a process grid
//!   ([`DArray::owner`](crate::DArray::owner)); creation, elementwise operations,
//!   reductions, re-blocking, GEMM, SYRK, Cholesky, LU (with and without pivoting), QR,
//!   the triangular and general solves, the inverse and norms compute each block on its
//!   owner; LU and QR panels, with a pivoted panel's row interchanges, travel as task
//!   results to the tiles that read them, and only the interchanges reach the head. The kernels of
//!   DArray and the tile kernels are found by name on every rank
//!   ([`Kernel::lookup`](crate::Kernel::lookup)); kernels built from expressions and
//!   closures stay on the head.
//! - **Placement** counts moving inputs between ranks, with latency and bandwidth measured
//!   at start-up ([`Context::links`]), so tasks go to their data.
//! - **Failures**: a task failing or panicking on a worker fails with a
//!   [`TaskError`](crate::TaskError) naming the rank, the processor and the cause;
//!   dependents fail, the rest carries on. A worker that cannot be reached or sends
//!   nothing (not even its heartbeat, every 100 ms) for the link timeout (10 s by default,
//!   `DAGGER_REMOTE_TIMEOUT_MS`) is declared lost: its processors leave placement, the
//!   tasks running there and every fetch from it fail with [`RemoteError::RankLost`], and
//!   the objects it held are gone (tasks depending on them fail; nothing is recomputed).
//!   Under MPI's default error handler a rank that dies ends the whole job instead, and
//!   `mpirun` reports which rank it was.
//!
//! The transport is a trait: [`InProcessTransport`] runs several ranks as threads of one
//! process exchanging the same encoded messages (what `cargo test` exercises), and with
//! the `mpi` feature `Context::mpi()` runs them as MPI processes started by `mpirun`.
//!
//! ```
//! use dagger::prelude::*;
//!
//! fn square(x: f64) -> f64 { x * x }
//! dagger::remote_fn!(square);
//!
//! // A head and two workers of one thread each, as threads of this process.
//! let ctx = dagger::remote::in_process(2, |_rank| Context::builder().threads(1).gpus(false))?;
//! let on_2 = ctx.spawn_remote_with(Options::new().scope(Scope::worker(2)), square, (3.0,));
//! let sum = ctx.spawn(|a: f64| a + 1.0, (&on_2,));   // a closure: runs on the head
//! assert_eq!(sum.fetch()?, 10.0);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod link;
#[cfg(feature = "mpi")]
mod mpi;
mod proc;
mod protocol;
mod registry;
mod serve;
mod transport;
mod wire;

pub use link::LinkStats;
#[cfg(feature = "mpi")]
pub use mpi::MpiTransport;
pub use registry::{registered, Fallible, RemoteCallable};
#[doc(hidden)]
pub use registry::{Registration, RemoteFnEntry};
pub use transport::{Body, InProcessTransport, Incoming, Transport, TransportError};
pub use wire::{register_pod, register_type, Wire, WireError};

use std::any::TypeId;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::chunk::{Chunk, Data};
use crate::context::{Context, ContextBuilder, ProcessSpec, RemoteProcSpec};
use crate::options::Options;
use crate::processor::Body as TaskBody;
use crate::task::args::{Dep, Deps};
use crate::task::DTask;
use crate::value::Value;

use link::Link;
use proc::{RemoteOs, RemoteProc};
use protocol::Msg;

/// Why a group of processes could not be formed, or a remote operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RemoteError {
    /// The transport failed.
    #[error("transport: {0}")]
    Transport(#[from] TransportError),
    /// A value could not be encoded or decoded.
    #[error("encoding: {0}")]
    Wire(#[from] WireError),
    /// The local context could not be built.
    #[error("building the context: {0}")]
    Build(#[from] crate::context::BuildError),
    /// Start-up failed.
    #[error("rank {rank} did not join: {reason}")]
    Handshake {
        /// The rank.
        rank: usize,
        /// Why.
        reason: String,
    },
    /// A rank died or stopped responding.
    #[error("rank {rank} was lost: {reason}")]
    RankLost {
        /// The rank.
        rank: usize,
        /// What was seen.
        reason: String,
    },
    /// A rank sent something the protocol does not allow.
    #[error("rank {rank} broke the protocol: {message}")]
    Protocol {
        /// The rank.
        rank: usize,
        /// What it sent.
        message: String,
    },
    /// An object could not be fetched from its owner.
    #[error("fetching object {obj} from rank {rank}: {message}")]
    Fetch {
        /// The owner.
        rank: usize,
        /// The object.
        obj: u64,
        /// What the owner said.
        message: String,
    },
    /// The context that linked the ranks has ended.
    #[error("the link between the ranks was closed (the head's context ended)")]
    Closed,
}

/// An error that happened on another rank, rebuilt on the head with its source chain.
#[derive(Debug)]
pub struct RemoteCause {
    rank: usize,
    message: String,
    source: Option<Box<RemoteCause>>,
}

impl RemoteCause {
    fn from_chain(rank: usize, chain: Vec<String>) -> RemoteCause {
        let mut cause: Option<Box<RemoteCause>> = None;
        for message in chain.into_iter().rev() {
            cause = Some(Box::new(RemoteCause {
                rank,
                message,
                source: cause,
            }));
        }
        cause.map(|b| *b).unwrap_or(RemoteCause {
            rank,
            message: "the task failed".into(),
            source: None,
        })
    }

    /// The rank it happened on.
    pub fn rank(&self) -> usize {
        self.rank
    }
}

impl std::fmt::Display for RemoteCause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for RemoteCause {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source.as_deref().map(|s| s as _)
    }
}

/// The head's side of a group, kept with its context: stops the workers when the context
/// ends.
struct Session {
    link: Arc<Link>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Session {
    fn drop(&mut self) {
        self.link.stop();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn link_timeout(set: Option<Duration>) -> Duration {
    if let Some(d) = set {
        return d.max(Duration::from_millis(200));
    }
    let ms = std::env::var("DAGGER_REMOTE_TIMEOUT_MS")
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok())
        .unwrap_or(10_000);
    Duration::from_millis(ms.max(200))
}

impl ContextBuilder {
    /// How long a rank may send nothing (not even its heartbeat, every 100 ms) before it is
    /// declared lost: 10 s by default, or `DAGGER_REMOTE_TIMEOUT_MS`; at least 200 ms. On a
    /// worker, how long the head may stay silent before the worker stops serving.
    ///
    /// ```
    /// use std::time::Duration;
    /// use dagger::prelude::*;
    /// let each = |_rank| {
    ///     Context::builder().threads(1).gpus(false).remote_timeout(Duration::from_secs(2))
    /// };
    /// let ctx = dagger::remote::in_process(1, each)?;
    /// assert_eq!(ctx.ranks(), 2);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn remote_timeout(mut self, timeout: Duration) -> Self {
        self.remote_timeout = Some(timeout);
        self
    }

    /// Joins the group of ranks `transport` connects. On rank 0 (the head) it waits for
    /// every worker, measures the links, and returns a context over the processors of all
    /// ranks. On any other rank it serves the head with the processors this builder
    /// describes until the head's context ends, then returns `None`.
    ///
    /// ```
    /// use dagger::prelude::*;
    /// use dagger::remote::InProcessTransport;
    ///
    /// fn add1(x: i64) -> i64 { x + 1 }
    /// dagger::remote_fn!(add1);
    ///
    /// let mut ranks = InProcessTransport::group(2).into_iter();
    /// let head = ranks.next().unwrap();
    /// let worker = ranks.next().unwrap();
    /// let w = std::thread::spawn(move || Context::builder().threads(1).gpus(false).join(worker));
    /// let ctx = Context::builder().threads(1).gpus(false).join(head)?.expect("rank 0 is the head");
    /// let t = ctx.spawn_remote_with(Options::new().scope(Scope::worker(1)), add1, (41,));
    /// assert_eq!(t.fetch()?, 42);
    /// drop((t, ctx));                                       // the worker stops
    /// assert!(w.join().unwrap()?.is_none());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn join(self, transport: Arc<dyn Transport>) -> Result<Option<Context>, RemoteError> {
        let timeout = link_timeout(self.remote_timeout);
        if transport.rank() != 0 {
            let ctx = self.build()?;
            serve::serve(transport, ctx, timeout)?;
            return Ok(None);
        }
        let n = transport.size();
        let link = Link::new(transport.clone(), timeout);
        // Hellos, in any order.
        let mut hellos: Vec<Option<(String, u32, Vec<protocol::ProcDesc>)>> = vec![None; n];
        let deadline = Instant::now() + Duration::from_secs(60).max(timeout * 4);
        let mut missing = n - 1;
        while missing > 0 {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                let rank = (1..n).find(|&r| hellos[r].is_none()).unwrap_or(1);
                return Err(RemoteError::Handshake {
                    rank,
                    reason: "it did not say hello within a minute".into(),
                });
            }
            let Some((from, bytes)) =
                transport.recv_timeout(left.min(Duration::from_millis(100)))?
            else {
                continue;
            };
            match Msg::decode(&bytes) {
                Ok((Msg::Hello { host, pid, procs }, _)) if hellos[from].is_none() => {
                    hellos[from] = Some((host, pid, procs));
                    missing -= 1;
                }
                Ok((Msg::Heartbeat, _)) => {}
                Ok((other, _)) => {
                    return Err(RemoteError::Handshake {
                        rank: from,
                        reason: format!("it sent {other:?} before saying hello"),
                    })
                }
                Err(e) => {
                    return Err(RemoteError::Handshake {
                        rank: from,
                        reason: format!("its hello could not be decoded: {e}"),
                    })
                }
            }
        }
        let mut b = self;
        for (rank, h) in hellos.into_iter().enumerate().skip(1) {
            let (host, pid, procs) = h.expect("every worker said hello");
            b.processes.push(ProcessSpec {
                process: rank as u32 + 1,
                os: Arc::new(RemoteOs { rank, host, pid }),
                procs: procs
                    .into_iter()
                    .map(|d| {
                        let p = RemoteProc::new(link.clone(), rank, d);
                        RemoteProcSpec {
                            thread: p.thread(),
                            gpu: p.gpu(),
                            backend: p.backend(),
                            proc: Arc::new(p),
                        }
                    })
                    .collect(),
            });
        }
        let thread = {
            let link = link.clone();
            std::thread::Builder::new()
                .name("dagger-link".into())
                .spawn(move || link.run())
                .map_err(|e| RemoteError::Handshake {
                    rank: 0,
                    reason: format!("could not start the link thread: {e}"),
                })?
        };
        let session = Session {
            link: link.clone(),
            thread: Some(thread),
        };
        let stats = (1..n)
            .map(|r| measure(&link, r))
            .collect::<Result<Vec<_>, _>>()?;
        *link.stats.write() = stats;
        // First, so that the link stops before anything attached earlier goes.
        b.attached.insert(0, Box::new(session));
        let ctx = b.build()?;
        ctx.rt().set_wait_poll(link);
        Ok(Some(ctx))
    }
}

/// Latency (fastest of 20 small round trips) and bandwidth (fastest of 3 round trips of
/// 4 MiB) between the head and `rank`.
fn measure(link: &Link, rank: usize) -> Result<LinkStats, RemoteError> {
    let rtt = |payload: &[u8]| -> Result<f64, RemoteError> {
        let t0 = Instant::now();
        link.request(rank, |req| Msg::Ping {
            req,
            payload: wire::Bytes(payload.to_vec()),
        })?;
        Ok(t0.elapsed().as_secs_f64())
    };
    let small = (0..20)
        .map(|_| rtt(&[0u8; 8]))
        .collect::<Result<Vec<_>, _>>()?;
    let big = vec![0u8; 4 << 20];
    let large = (0..3).map(|_| rtt(&big)).collect::<Result<Vec<_>, _>>()?;
    let min = |v: &[f64]| v.iter().copied().fold(f64::INFINITY, f64::min);
    let lat = min(&small) / 2.0;
    let transfer = (min(&large) - 2.0 * lat).max(1e-9);
    Ok(LinkStats {
        rank,
        latency_us: lat * 1e6,
        gbps: 2.0 * big.len() as f64 / transfer / 1e9,
    })
}

/// A head and `workers` worker ranks as threads of this process, connected by an
/// [`InProcessTransport`]; `builder(rank)` configures each rank's own processors (rank 0
/// is the head). The workers stop when the returned context ends.
pub fn in_process(
    workers: usize,
    builder: impl Fn(usize) -> ContextBuilder,
) -> Result<Context, RemoteError> {
    let mut ranks = InProcessTransport::group(workers + 1).into_iter();
    let head = ranks.next().expect("rank 0");
    for (i, t) in ranks.enumerate() {
        let b = builder(i + 1);
        std::thread::Builder::new()
            .name(format!("dagger-rank{}", i + 1))
            .spawn(move || {
                if let Err(e) = b.join(t) {
                    tracing::warn!("rank {}: {e}", i + 1);
                }
            })
            .map_err(|e| RemoteError::Handshake {
                rank: i + 1,
                reason: format!("could not start its thread: {e}"),
            })?;
    }
    Ok(builder(0)
        .join(head)?
        .expect("rank 0 of a group is its head"))
}

impl Context {
    /// The links to other ranks as measured at start-up (empty for a single process).
    pub fn links(&self) -> Vec<LinkStats> {
        self.attachment::<Session>()
            .map(|s| s.link.stats.read().clone())
            .unwrap_or_default()
    }

    /// How many ranks this context spans (1 for a single process).
    pub fn ranks(&self) -> usize {
        self.attachment::<Session>().map_or(1, |s| s.link.t.size())
    }

    /// Spawns `f(args...)`, a function registered with [`remote_fn!`](crate::remote_fn), as
    /// a task that may run on any rank's CPU threads within its scope: arguments are
    /// values, `&DTask<A>` or `&Chunk<A>`, and the result stays on the rank that computed
    /// it until something needs it. A function that is not registered runs on the head,
    /// like a closure. Wrap a function returning `Result` in
    /// [`Fallible`](crate::remote::Fallible) so its `Err` fails the task.
    ///
    /// ```
    /// use dagger::prelude::*;
    /// use dagger::remote::Fallible;
    ///
    /// fn parse(s: String) -> Result<i64, std::num::ParseIntError> { s.parse() }
    /// dagger::remote_fn!(Fallible(parse));
    ///
    /// let ctx = dagger::remote::in_process(1, |_| Context::builder().threads(1).gpus(false))?;
    /// let on_1 = Options::new().scope(Scope::worker(1));
    /// let bad = ctx.spawn_remote_with(on_1, Fallible(parse), ("12x".to_string(),));
    /// let err = bad.fetch().unwrap_err();
    /// assert!(err.to_string().contains("on rank 1"), "{err}");
    /// assert!(err.to_string().contains("invalid digit"), "{err}");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn spawn_remote<F, Args, A>(&self, f: F, args: A) -> DTask<F::Output>
    where
        F: RemoteCallable<Args>,
        A: RemoteArgs<Args>,
    {
        self.spawn_remote_with(Options::new(), f, args)
    }

    /// [`spawn_remote`](Self::spawn_remote) with options for this call.
    pub fn spawn_remote_with<F, Args, A>(&self, opts: Options, f: F, args: A) -> DTask<F::Output>
    where
        F: RemoteCallable<Args>,
        A: RemoteArgs<Args>,
    {
        let mut deps = Deps::default();
        args.register(&mut deps);
        let body: TaskBody = Box::new(move |inputs: &mut [Value]| f.call(inputs));
        let portable = registry::is_registered::<F>();
        DTask::from_core(self.submit_task(
            std::any::type_name::<F>(),
            TypeId::of::<F>(),
            opts,
            deps,
            Some(body),
            None,
            portable,
        ))
    }
}

/// One argument of [`Context::spawn_remote`]: a value of type `T`, or a `&DTask<T>` or
/// `&Chunk<T>` whose value the task waits for.
pub trait RemoteArg<T> {
    #[doc(hidden)]
    fn dep(self) -> DepArg;
}

#[doc(hidden)]
pub struct DepArg(Dep);

impl<T: Wire> RemoteArg<T> for T {
    fn dep(self) -> DepArg {
        DepArg(Dep::Data(Data::host(Value::new(self))))
    }
}

impl<T: Send + Sync + 'static> RemoteArg<T> for &DTask<T> {
    fn dep(self) -> DepArg {
        DepArg(Dep::Task(self.core.clone()))
    }
}

impl<T: Send + Sync + 'static> RemoteArg<T> for &Chunk<T> {
    fn dep(self) -> DepArg {
        DepArg(Dep::Data(self.data.clone()))
    }
}

/// The arguments of [`Context::spawn_remote`]: a tuple of [`RemoteArg`]s matching the
/// function's parameters.
pub trait RemoteArgs<Args> {
    #[doc(hidden)]
    fn register(self, deps: &mut Deps);
}

macro_rules! remote_args {
    ($($x:ident $a:ident),*) => {
        impl<$($x, $a),*> RemoteArgs<($($a,)*)> for ($($x,)*)
        where
            $($x: RemoteArg<$a>,)*
        {
            #[allow(non_snake_case, unused_variables)]
            fn register(self, deps: &mut Deps) {
                let ($($x,)*) = self;
                $(deps.push($x.dep().0);)*
            }
        }

        impl<$($x, $a),*> RemoteArgs<(registry::Fallible<()>, $($a,)*)> for ($($x,)*)
        where
            $($x: RemoteArg<$a>,)*
        {
            #[allow(non_snake_case, unused_variables)]
            fn register(self, deps: &mut Deps) {
                let ($($x,)*) = self;
                $(deps.push($x.dep().0);)*
            }
        }
    };
}

remote_args!();
remote_args!(X0 A0);
remote_args!(X0 A0, X1 A1);
remote_args!(X0 A0, X1 A1, X2 A2);
remote_args!(X0 A0, X1 A1, X2 A2, X3 A3);
remote_args!(X0 A0, X1 A1, X2 A2, X3 A3, X4 A4);
remote_args!(X0 A0, X1 A1, X2 A2, X3 A3, X4 A4, X5 A5);
