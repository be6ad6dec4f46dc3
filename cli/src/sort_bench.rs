//! `dagger bench sort`: `DArray::sort` of n uniform random f64 (or f32) on the CPU threads, beside
//! `numpy.sort` of the same data (written to a temporary .npy file) in the same run
//! (`benches/peers/sort.py`). numpy's runs alternate with ours (one after each of ours), so
//! that on a shared machine both sides meet the same load; each side reports its best run.

use std::time::Instant;

use dagger::prelude::*;

use super::peer::{Best, Peers, Timed};

/// The peer script, embedded so the command works from any directory.
const PEER: &str = include_str!("../../benches/peers/sort.py");

#[derive(clap::Args)]
pub(crate) struct Args {
    /// Elements of the 1-D array.
    #[arg(long, default_value_t = 100_000_000)]
    n: usize,
    /// f64 or f32.
    #[arg(long, default_value = "f64")]
    dtype: String,
    /// Elements per block (default: n split into one block per CPU thread, so that each
    /// result block merges as few runs as the threads allow).
    #[arg(long)]
    block: Option<usize>,
    /// CPU worker threads (default: one per core).
    #[arg(long)]
    threads: Option<usize>,
    /// Repetitions of each sort; the best is reported. numpy.sort runs once after each of
    /// ours, so that both sides meet the same load on a shared machine.
    #[arg(long, default_value_t = 2)]
    repeat: usize,
    /// Skip numpy.sort.
    #[arg(long)]
    no_peer: bool,
    /// Also check that the result is non-decreasing (gathering it on the host).
    #[arg(long)]
    check: bool,
    #[command(flatten)]
    python: super::python::PythonArgs,
    /// One JSON object per result.
    #[arg(long)]
    json: bool,
}

pub(crate) fn run(args: &Args) -> Result<(), Box<dyn std::error::Error>> {
    match args.dtype.as_str() {
        "f64" => bench::<f64>(args),
        "f32" => bench::<f32>(args),
        other => Err(format!("unknown dtype `{other}`: use f64 or f32").into()),
    }
}

fn bench<T: dagger::Float>(args: &Args) -> Result<(), Box<dyn std::error::Error>> {
    let ctx = super::build_context(args.threads)?;
    let threads = ctx.num_threads();
    let n = args.n;
    let block = args
        .block
        .unwrap_or_else(|| n.div_ceil(threads.max(1)))
        .max(1);
    let a = DArray::<T>::rand(&ctx, [n], Blocks::new([block]), 1)?;
    a.wait()?;
    // numpy loads the data and warms up before the timing, then sorts once after each of
    // our sorts (interleaved), so that both sides meet the same load.
    let mut peers = Peers::new(!args.no_peer, &args.python);
    if peers.wanted() {
        if let Err(e) = start_peer(&mut peers, &a) {
            eprintln!("note: the numpy peer did not run: {e}");
        }
    }
    let mut best = f64::INFINITY;
    let mut last = None;
    peers.alternate(args.repeat, |timed| {
        drop(last.take());
        let t = Instant::now();
        let s = with_options(Options::new().scope(Scope::cpu()), || a.sort())?;
        s.wait()?;
        if timed == Timed::Yes {
            best = best.min(t.elapsed().as_secs_f64());
        }
        // Only --check reads the result; without it, numpy sorts with our result freed.
        if args.check {
            last = Some(s);
        }
        Ok::<(), dagger::ArrayError>(())
    })?;
    let peer = peers.best("numpy");
    drop(peers);
    if args.check {
        let s = last.take().expect("sorted at least once").collect1()?;
        if let Some(i) = s.windows(2).into_iter().position(|w| w[0] > w[1]) {
            return Err(format!(
                "the result is not sorted at {i}: {:?} > {:?}",
                s[i],
                s[i + 1]
            )
            .into());
        }
    }
    drop(last);
    let rate = n as f64 / best;
    if args.json {
        let mut v = serde_json::json!({"bench": "sort", "dtype": args.dtype, "n": n, "block": block,
            "threads": threads, "seconds": best, "elements_per_s": rate,
            "peer": "numpy.sort", "peer_seconds": null, "ratio": null});
        if let Some(p) = peer {
            v["peer_seconds"] = serde_json::json!(p);
            v["ratio"] = serde_json::json!(p / best);
        }
        println!("{v}");
    } else {
        print!(
            "sort n={n} {}, blocks of {block}, {threads} threads, best of {}: {best:.3} s, {:.1} M elements/s",
            args.dtype,
            args.repeat.max(1),
            rate / 1e6
        );
        if let Some(p) = peer {
            print!(
                "; numpy.sort {p:.3} s, {:.1} M elements/s; ratio {:.2}",
                n as f64 / p / 1e6,
                p / best
            );
        }
        println!();
    }
    Ok(())
}

/// Starts numpy.sort on the same elements, handed over as a .npy file (removed once the
/// peer has loaded it).
fn start_peer<T: dagger::Element>(peers: &mut Peers, a: &DArray<T>) -> Result<(), String> {
    let dir = super::out_dir::new_temp_dir_path("sort");
    std::fs::create_dir(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let data = dir.join("data.npy");
    let written = a
        .to_npy(&data)
        .map_err(|e| format!("cannot write {}: {e}", data.display()));
    if written.is_ok() {
        let argv = ["--data".into(), data.display().to_string()];
        peers.start("numpy", PEER, &argv, Best::Lowest("secs"));
    }
    let _ = std::fs::remove_dir_all(&dir);
    written
}
