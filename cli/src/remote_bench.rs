//! `dagger bench remote`: the cost of a task on another rank — one at a time (latency) and
//! many in flight (throughput) — and of moving a large block from a worker, beside a raw
//! ping-pong of the transport measured in the same run. Under `mpirun` (with the `mpi`
//! feature) the ranks are MPI processes; otherwise workers are threads of this process
//! over the in-process transport.

use std::time::Instant;

use dagger::prelude::*;

#[derive(clap::Args)]
pub(crate) struct Args {
    /// Remote tasks run one after another for the latency.
    #[arg(long, default_value_t = 2_000)]
    latency_tasks: usize,
    /// Remote tasks in flight at once for the throughput.
    #[arg(long, default_value_t = 20_000)]
    tasks: usize,
    /// Size of the block moved from a worker to the head, in MiB.
    #[arg(long, default_value_t = 64)]
    move_mib: usize,
    /// CPU threads per rank.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Worker ranks when not started by mpirun (threads of this process).
    #[arg(long, default_value_t = 1)]
    workers: usize,
    /// Also time DArray GEMM and Cholesky of this order (f64) spread over the ranks, beside
    /// the same in one process with as many threads as all ranks together (0: skip).
    #[arg(long, default_value_t = 0)]
    array: usize,
    /// Block size of the DArray runs.
    #[arg(long, default_value_t = 512)]
    array_block: usize,
    /// One JSON object.
    #[arg(long)]
    json: bool,
}

/// GFLOP/s of GEMM and Cholesky of order `n` in `ctx` (best of two runs each).
fn array_rates(
    ctx: &Context,
    n: usize,
    block: usize,
) -> Result<(f64, f64), Box<dyn std::error::Error>> {
    let blocks = || Blocks::new([block, block]);
    let a = DArray::<f64>::rand(ctx, [n, n], blocks(), 1)?;
    let b = DArray::<f64>::rand(ctx, [n, n], blocks(), 2)?;
    let eye = DArray::<f64>::eye(ctx, n, blocks())?;
    let spd = (&a.matmul(&a.t())? + &(&eye * n as f64))?;
    spd.wait()?;
    b.wait()?;
    let best = |f: &dyn Fn() -> Result<(), Box<dyn std::error::Error>>| {
        let mut best = f64::INFINITY;
        for _ in 0..2 {
            let t0 = Instant::now();
            f()?;
            best = best.min(t0.elapsed().as_secs_f64());
        }
        Ok::<f64, Box<dyn std::error::Error>>(best)
    };
    let nf = n as f64;
    let gemm = best(&|| Ok(a.matmul(&b)?.wait()?))?;
    let chol = best(&|| Ok(spd.cholesky()?.wait()?))?;
    Ok((2.0 * nf.powi(3) / gemm / 1e9, nf.powi(3) / 3.0 / chol / 1e9))
}

/// The calling thread allowed on every core until dropped, then bound as before.
struct Unbound {
    #[cfg(target_os = "linux")]
    before: Option<libc::cpu_set_t>,
}

impl Unbound {
    fn all_cores() -> Unbound {
        #[cfg(target_os = "linux")]
        {
            let size = std::mem::size_of::<libc::cpu_set_t>();
            // SAFETY: `cpu_set_t` is plain data whose all-zero value is the empty set; the
            // calls read or write only the set they are given, for the calling thread
            // (pid 0), and `CPU_SET` indexes below `CPU_SETSIZE`.
            let before = unsafe {
                let mut before: libc::cpu_set_t = std::mem::zeroed();
                let mut all: libc::cpu_set_t = std::mem::zeroed();
                for c in 0..libc::CPU_SETSIZE as usize {
                    libc::CPU_SET(c, &mut all);
                }
                (libc::sched_getaffinity(0, size, &mut before) == 0
                    && libc::sched_setaffinity(0, size, &all) == 0)
                    .then_some(before)
            };
            Unbound { before }
        }
        #[cfg(not(target_os = "linux"))]
        Unbound {}
    }
}

impl Drop for Unbound {
    fn drop(&mut self) {
        #[cfg(target_os = "linux")]
        if let Some(before) = &self.before {
            // SAFETY: as in `all_cores`: the set is one `sched_getaffinity` filled.
            unsafe {
                libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), before);
            }
        }
    }
}

fn next(x: u64) -> u64 {
    x + 1
}
dagger::remote_fn!(next);

fn block(bytes: usize) -> Vec<u8> {
    vec![7u8; bytes]
}
dagger::remote_fn!(block);

/// Raw transport figures: (one-way latency in µs, GB/s), when measured.
type Raw = Option<(f64, f64)>;

fn context(args: &Args) -> Result<(Context, Raw, &'static str), Box<dyn std::error::Error>> {
    #[cfg(feature = "mpi")]
    if super::under_mpi_launcher() {
        let b = Context::builder().threads(args.threads).gpus(false);
        let t = dagger::remote::MpiTransport::init()?;
        // Every rank takes part: rank 0 with rank 1, the others return at once.
        let small = t.ping_pong(1, 8, 2_000);
        let big = t.ping_pong(1, args.move_mib << 20, 3);
        let raw = small.zip(big).map(|((_, mean_small), (best_big, _))| {
            let lat = mean_small / 2.0;
            (
                lat * 1e6,
                2.0 * (args.move_mib << 20) as f64 / best_big / 1e9,
            )
        });
        return Ok((b.mpi_over(t)?, raw, "mpi"));
    }
    // Under mpirun, a build without MPI would only run this benchmark over threads in each
    // rank on its own, and say nothing of MPI.
    #[cfg(not(feature = "mpi"))]
    if super::under_mpi_launcher() {
        return Err(
            "started by an MPI launcher, but this dagger was built without the `mpi` \
             feature, so its ranks cannot reach each other: build it with `cargo build \
             --release --features mpi` (or run `dagger bench remote` without mpirun to \
             measure workers that are threads of one process)"
                .into(),
        );
    }
    let ctx = dagger::remote::in_process(args.workers.max(1), |_| {
        Context::builder().threads(args.threads).gpus(false)
    })?;
    Ok((ctx, None, "in-process"))
}

pub(crate) fn run(args: &Args) -> Result<(), Box<dyn std::error::Error>> {
    let (ctx, raw, transport) = context(args)?;
    if ctx.ranks() < 2 {
        return Err("bench remote needs at least 2 ranks (mpirun -n 2 dagger bench remote)".into());
    }
    let on1 = Options::new().scope(Scope::worker(1));
    // Warm up (run times and the first allocations).
    for i in 0..100 {
        ctx.spawn_remote_with(on1.clone(), next, (i,)).fetch()?;
    }
    // Each round trip is timed too: the mean carries every stall of a shared machine, the
    // median what a task costs.
    let mut each_us = Vec::with_capacity(args.latency_tasks);
    let t0 = Instant::now();
    for i in 0..args.latency_tasks as u64 {
        let t1 = Instant::now();
        let r = ctx.spawn_remote_with(on1.clone(), next, (i,)).fetch()?;
        each_us.push(t1.elapsed().as_secs_f64() * 1e6);
        assert_eq!(r, i + 1);
    }
    let latency_us = t0.elapsed().as_secs_f64() / args.latency_tasks.max(1) as f64 * 1e6;
    each_us.sort_by(f64::total_cmp);
    let quantile = |q: f64| {
        each_us
            .get(((each_us.len() as f64 - 1.0) * q).round() as usize)
            .copied()
    };
    let (median_us, p99_us) = (quantile(0.5), quantile(0.99));

    let workers = Options::new().scope(Scope::workers(1..));
    let t0 = Instant::now();
    let tasks: Vec<DTask<u64>> = (0..args.tasks as u64)
        .map(|i| ctx.spawn_remote_with(workers.clone(), next, (i,)))
        .collect();
    let mut sum = 0u64;
    for t in &tasks {
        sum += t.fetch()?;
    }
    let tasks_per_s = args.tasks as f64 / t0.elapsed().as_secs_f64();
    let n = args.tasks as u64;
    assert_eq!(sum, n * (n + 1) / 2);
    drop(tasks);

    let bytes = args.move_mib << 20;
    let mut best = f64::INFINITY;
    for _ in 0..3 {
        let b = ctx.spawn_remote_with(on1.clone(), block, (bytes,));
        b.wait();
        let t0 = Instant::now();
        let v = b.fetch_shared()?;
        best = best.min(t0.elapsed().as_secs_f64());
        assert_eq!(v.len(), bytes);
    }
    let move_gbps = bytes as f64 / best / 1e9;
    let links = ctx.links();
    // (spread GEMM, spread Cholesky, one-process GEMM, one-process Cholesky) GFLOP/s.
    let arrays = if args.array > 0 {
        let spread = array_rates(&ctx, args.array, args.array_block)?;
        // mpirun binds each rank to a core of its own: the one-process run gets the cores
        // all ranks had (its threads inherit this thread's binding).
        let bound = Unbound::all_cores();
        let one = Context::builder()
            .threads(args.threads * ctx.ranks())
            .gpus(false)
            .build()?;
        let local = array_rates(&one, args.array, args.array_block)?;
        drop(one);
        drop(bound);
        Some((spread.0, spread.1, local.0, local.1))
    } else {
        None
    };
    if args.json {
        println!(
            "{}",
            serde_json::json!({
                "bench": "remote",
                "transport": transport,
                "ranks": ctx.ranks(),
                "threads_per_rank": args.threads,
                "latency_us": latency_us,
                "latency_median_us": median_us,
                "latency_p99_us": p99_us,
                "tasks_per_s": tasks_per_s,
                "move_mib": args.move_mib,
                "move_gbps": move_gbps,
                "mpi_latency_us": raw.map(|r| r.0),
                "mpi_gbps": raw.map(|r| r.1),
                "link_latency_us": links.first().map(|l| l.latency_us),
                "link_gbps": links.first().map(|l| l.gbps),
                "array_n": (args.array > 0).then_some(args.array),
                "gemm_gflops": arrays.map(|a| a.0),
                "gemm_one_process_gflops": arrays.map(|a| a.2),
                "gemm_ratio": arrays.map(|a| a.0 / a.2),
                "cholesky_gflops": arrays.map(|a| a.1),
                "cholesky_one_process_gflops": arrays.map(|a| a.3),
                "cholesky_ratio": arrays.map(|a| a.1 / a.3),
            })
        );
    } else {
        println!(
            "remote tasks over {transport}, {} ranks x {} thread(s)",
            ctx.ranks(),
            args.threads
        );
        println!(
            "latency      {latency_us:>10.1} µs per task, one at a time (median {:.1}, 99th percentile {:.1})",
            median_us.unwrap_or(f64::NAN),
            p99_us.unwrap_or(f64::NAN)
        );
        println!(
            "throughput   {tasks_per_s:>10.0} tasks/s, {} in flight",
            args.tasks
        );
        println!(
            "move         {move_gbps:>10.2} GB/s, {} MiB worker → head",
            args.move_mib
        );
        match raw {
            Some((lat, gbps)) => {
                println!(
                    "raw MPI      {lat:>10.1} µs one way (8 B), {gbps:.2} GB/s ({} MiB)",
                    args.move_mib
                )
            }
            None => println!("raw MPI      not measured (not under mpirun)"),
        }
        if let Some((g, c, g1, c1)) = arrays {
            let n = args.array;
            let one = format!("1 rank x {} threads", args.threads * ctx.ranks());
            println!(
                "gemm n={n}   {g:>10.2} GFLOP/s over the ranks, {g1:.2} on {one} ({:.2}x)",
                g / g1
            );
            println!(
                "chol n={n}   {c:>10.2} GFLOP/s over the ranks, {c1:.2} on {one} ({:.2}x)",
                c / c1
            );
        }
    }
    Ok(())
}
