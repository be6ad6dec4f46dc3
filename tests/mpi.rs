//! Real multi-rank runs under `mpirun` (cargo feature `mpi`).
//!
//! Each `#[test]` here launches `mpirun -n 3 --oversubscribe` on this very test binary,
//! filtered to one `rank_*` function, with `DAGGER_MPI_CHILD` set; every rank runs that
//! function, which calls `Context::mpi()`: rank 0 continues as the head and checks, the
//! others serve it. Outside `mpirun` the `rank_*` functions do nothing.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use dagger::prelude::*;
use dagger::ProcessorKind;

mod common;

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
    panic!("boom at {x}");
}
dagger::remote_fn!(boom);

fn exit_now(code: i32) -> i32 {
    std::process::exit(code);
}
dagger::remote_fn!(exit_now);

fn nap(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}
dagger::remote_fn!(nap);

fn ramp(n: usize) -> Vec<f64> {
    (0..n).map(|i| i as f64).collect()
}
dagger::remote_fn!(ramp);

fn bytes(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i % 251) as u8).collect()
}
dagger::remote_fn!(bytes);

fn ramp_is_whole(v: Vec<f64>) -> bool {
    v.iter().enumerate().all(|(i, &x)| x == i as f64)
}
dagger::remote_fn!(ramp_is_whole);

fn child() -> bool {
    std::env::var("DAGGER_MPI_CHILD").is_ok_and(|v| v == "1")
}

/// Joins the job `mpirun` started, one CPU thread per rank; only rank 0 returns.
fn join() -> Context {
    Context::builder()
        .threads(1)
        .gpus(false)
        .mpi()
        .expect("joined")
}

fn on(rank: usize) -> Options {
    Options::new().scope(Scope::worker(rank))
}

/// Runs `rank_fn` of this binary on 3 ranks; returns whether mpirun succeeded, its output,
/// and how long it took. Fails the test if it runs longer than `secs`.
fn mpirun(rank_fn: &str, secs: u64) -> (bool, String, Duration) {
    mpirun_with(rank_fn, secs, &[])
}

/// [`mpirun`] with more variables in the ranks' environment.
fn mpirun_with(rank_fn: &str, secs: u64, env: &[(&str, &str)]) -> (bool, String, Duration) {
    let exe = std::env::current_exe().expect("the test binary");
    let t0 = Instant::now();
    let mut child = Command::new("mpirun")
        .args(["-n", "3", "--oversubscribe"])
        .arg(&exe)
        .args([rank_fn, "--exact", "--nocapture", "--test-threads=1"])
        .env("DAGGER_MPI_CHILD", "1")
        .env("OMPI_ALLOW_RUN_AS_ROOT", "1")
        .env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
        .env("OMPI_MCA_rmaps_base_oversubscribe", "1")
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("mpirun runs (Debian: openmpi-bin)");
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        let mut e = String::new();
        let _ = err.read_to_string(&mut e);
        s + &e
    });
    let status = loop {
        if let Some(s) = child.try_wait().expect("waiting for mpirun") {
            break s;
        }
        if t0.elapsed() > Duration::from_secs(secs) {
            let _ = child.kill();
            let _ = child.wait();
            let text = reader.join().unwrap_or_default();
            panic!("mpirun {rank_fn} ran longer than {secs} s (a hang):\n{text}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let took = t0.elapsed();
    (status.success(), reader.join().unwrap_or_default(), took)
}

#[test]
fn three_ranks_run_remote_tasks_and_report_errors() {
    let (ok, out, _) = mpirun("rank_checks", 240);
    assert!(ok, "mpirun failed:\n{out}");
    assert!(
        out.contains("head checks passed"),
        "the head ran its checks:\n{out}"
    );
}

#[test]
fn rank_checks() {
    if !child() {
        return;
    }
    let ctx = join();
    // Only rank 0 gets here.
    assert_eq!(ctx.ranks(), 3);
    let procs = ctx.processors();
    let os: Vec<_> = procs
        .iter()
        .filter(|p| p.kind == ProcessorKind::Os)
        .collect();
    assert_eq!(os.len(), 3, "{procs:#?}");
    assert!(
        os[2].description.contains("rank 2"),
        "{}",
        os[2].description
    );
    ctx.enable_logging();
    let a = ctx.spawn_remote_with(on(1), add1, (41,));
    let b = ctx.spawn_remote_with(on(2), add, (&a, 100));
    assert_eq!(b.fetch().unwrap(), 142);
    let logs = ctx.fetch_logs();
    let ran = |id: u64| {
        logs.iter()
            .find(|e| e.task == id)
            .map(|e| e.processor.process())
    };
    assert_eq!(ran(a.id()), Some(2));
    assert_eq!(ran(b.id()), Some(3));
    // 8 MiB made on rank 1, summed on rank 2.
    let v = ctx.spawn_remote_with(on(1), ones, (1usize << 20,));
    let s = ctx.spawn_remote_with(on(2), total, (&v,));
    assert_eq!(s.fetch().unwrap(), (1u64 << 20) as f64);
    // Ranks 1 and 2 fetch 4 MiB blocks from each other at the same time: each answer
    // waits for a receiver that is itself answering.
    let n = 1usize << 19;
    let made: Vec<_> = (0..4)
        .map(|_| {
            (
                ctx.spawn_remote_with(on(1), ones, (n,)),
                ctx.spawn_remote_with(on(2), ones, (n,)),
            )
        })
        .collect();
    for (a, b) in &made {
        a.wait();
        b.wait();
    }
    let crossed: Vec<_> = made
        .iter()
        .flat_map(|(a, b)| {
            [
                ctx.spawn_remote_with(on(2), total, (a,)),
                ctx.spawn_remote_with(on(1), total, (b,)),
            ]
        })
        .collect();
    for t in &crossed {
        assert_eq!(t.fetch().unwrap(), n as f64);
    }
    let err = ctx
        .spawn_remote_with(on(2), boom, (7,))
        .fetch()
        .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("boom at 7") && msg.contains("on rank 2"),
        "{msg}"
    );
    // Many in flight over every rank.
    let tasks: Vec<_> = (0..500).map(|i| ctx.spawn_remote(add1, (i,))).collect();
    let sum: i64 = tasks.iter().map(|t| t.fetch().unwrap()).sum();
    assert_eq!(sum, (1..=500).sum::<i64>());
    for l in ctx.links() {
        println!(
            "link to rank {}: {:.1} µs, {:.2} GB/s",
            l.rank, l.latency_us, l.gbps
        );
    }
    println!("head checks passed");
}

/// Bodies cut into pieces far smaller than themselves (and than one element, at the
/// edges: the size is odd) arrive whole, worker to head and worker to worker.
#[test]
fn a_body_larger_than_a_message_arrives_whole_from_its_pieces() {
    let (ok, out, _) = mpirun_with("rank_pieces", 240, &[("DAGGER_MPI_PIECE_BYTES", "100003")]);
    assert!(ok, "mpirun failed:\n{out}");
    assert!(out.contains("piece checks passed"), "{out}");
}

#[test]
fn rank_pieces() {
    if !child() {
        return;
    }
    let ctx = join();
    let n = (1usize << 20) + 3;
    let v = ctx.spawn_remote_with(on(1), ramp, (n,));
    let got = v.fetch().unwrap();
    assert_eq!(got.len(), n);
    assert!(ramp_is_whole(got), "the ramp came back changed");
    assert!(ctx
        .spawn_remote_with(on(2), ramp_is_whole, (&v,))
        .fetch()
        .unwrap());
    let b = ctx
        .spawn_remote_with(on(2), bytes, (300_001usize,))
        .fetch()
        .unwrap();
    assert_eq!(b, bytes(300_001));
    println!("piece checks passed");
}

#[test]
fn a_rank_that_exits_ends_the_job_within_seconds() {
    let (ok, out, took) = mpirun("rank_dies", 120);
    assert!(!ok, "the job failed:\n{out}");
    assert!(took < Duration::from_secs(60), "it took {took:?}:\n{out}");
    assert!(out.contains("before the exit"), "{out}");
    // mpirun says which rank ended the job, and how.
    assert!(out.contains("Exit code:    3"), "{out}");
    assert!(!out.contains("after the exit"), "{out}");
}

#[test]
fn rank_dies() {
    if !child() {
        return;
    }
    let ctx = join();
    assert_eq!(ctx.spawn_remote_with(on(2), add1, (1,)).fetch().unwrap(), 2);
    println!("before the exit");
    let long = ctx.spawn_remote_with(on(1), nap, (60_000u64,));
    let _ = ctx.spawn_remote_with(on(2), exit_now, (3,));
    let r = long.fetch_timeout(Duration::from_secs(90));
    println!("after the exit: {r:?}");
}

#[test]
fn darray_operations_spread_over_three_ranks() {
    let (ok, out, _) = mpirun("rank_darray", 300);
    assert!(ok, "mpirun failed:\n{out}");
    assert!(out.contains("darray checks passed"), "{out}");
}

#[test]
fn rank_darray() {
    if !child() {
        return;
    }
    let ctx = join();
    let spread = common::ranks::workload(&ctx);
    let one = Context::builder().threads(2).gpus(false).build().unwrap();
    let local = common::ranks::workload(&one);
    common::ranks::check_three_ranks(&spread, &local);
    println!("darray checks passed");
}
