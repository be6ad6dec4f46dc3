//! `dagger bench map` and `dagger bench reduce`: DArray throughput on the CPU scope, in GB/s
//! of input, beside numpy and dask.array on the same sizes (run in the same invocation
//! through `benches/peers/array.py`), and the peak memory of chained maps. The peers' runs
//! alternate with ours (each peer runs once after each of ours), so that on a shared
//! machine both sides meet the same load; each side reports its best run.

use std::time::Instant;

use dagger::prelude::*;

use super::peer::{Best, Peers, Timed};

/// The peer script, embedded so the command works from any directory.
const PEERS: &str = include_str!("../../benches/peers/array.py");

#[derive(clap::Args)]
pub(crate) struct Args {
    /// Elements of the 1-D f32 array (default 64 Mi = 256 MiB).
    #[arg(long, default_value_t = 1 << 26)]
    n: usize,
    /// Elements per block (default 4 Mi = 16 MiB).
    #[arg(long, default_value_t = 1 << 22)]
    block: usize,
    /// CPU worker threads (default: one per core).
    #[arg(long)]
    threads: Option<usize>,
    /// Repetitions; the best is reported. numpy and dask.array each run once after each
    /// of ours, so that both sides meet the same load on a shared machine.
    #[arg(long, default_value_t = 3)]
    repeat: usize,
    /// Skip numpy and dask.array.
    #[arg(long)]
    no_peers: bool,
    #[command(flatten)]
    python: super::python::PythonArgs,
    /// Instead of throughput: the peak resident memory of ten chained maps over an array
    /// of --memory-mib, collected at the end (run alone: the peak is per process).
    #[arg(long)]
    memory: bool,
    /// Array size for --memory, in MiB.
    #[arg(long, default_value_t = 1024)]
    memory_mib: usize,
    /// With --memory: collect with `into_ndarray` (releasing blocks as they are copied)
    /// instead of `collect`.
    #[arg(long)]
    consume: bool,
    /// For `map`: instead of one map, a chain of this many maps (`x * 0.5 + 0.25`) and a
    /// sum at the end, as a fused chain (`DArray::fuse`) and as separate maps, beside numpy
    /// and dask.array doing the same.
    #[arg(long)]
    chain: Option<usize>,
    /// One JSON object per result line.
    #[arg(long)]
    json: bool,
}

#[derive(Copy, Clone, PartialEq)]
enum Op {
    Map,
    Reduce,
    /// `maps` chained maps, then a sum.
    Chain(usize),
}

impl Op {
    fn name(self) -> &'static str {
        match self {
            Op::Map => "map",
            Op::Reduce => "reduce",
            Op::Chain(_) => "chain",
        }
    }
}

/// The map of every link of a chain.
const LINK: &str = "x * 0.5 + 0.25";

pub(crate) fn map(args: &Args) -> Result<(), Box<dyn std::error::Error>> {
    if args.memory {
        return memory(args);
    }
    match args.chain {
        Some(0) => Err("--chain needs at least one map".into()),
        Some(maps) => run(args, Op::Chain(maps)),
        None => run(args, Op::Map),
    }
}

pub(crate) fn reduce(args: &Args) -> Result<(), Box<dyn std::error::Error>> {
    run(args, Op::Reduce)
}

fn run(args: &Args, op: Op) -> Result<(), Box<dyn std::error::Error>> {
    let ctx = super::build_context(args.threads)?;
    let threads = ctx.num_threads();
    let bytes = (args.n * 4) as f64;
    let a = with_options(Options::new().scope(Scope::cpu()), || {
        DArray::<f32>::rand(&ctx, [args.n], Blocks::new([args.block]), 1)
    })?;
    a.wait()?;
    // The peers start before the timing, with their own data, and then run once after
    // each of ours (interleaved), so that both sides meet the same load.
    let mut peers = Peers::new(!args.no_peers, &args.python);
    for name in ["numpy", "dask"] {
        peers.start(
            name,
            PEERS,
            &peer_args(args, op, threads, name),
            Best::Lowest("secs"),
        );
    }
    // One timed run: the single map or reduction, or the chain fused or unfused.
    let once = |fused: bool| {
        with_options(Options::new().scope(Scope::cpu()), || {
            let t = Instant::now();
            match op {
                Op::Map => {
                    let b = a.map_wgsl("x * 2.0 + 1.0")?;
                    b.wait()?;
                }
                Op::Reduce => {
                    a.sum().fetch()?;
                }
                Op::Chain(maps) if fused => {
                    let mut f = a.fuse();
                    for _ in 0..maps {
                        f = f.map_wgsl(LINK)?;
                    }
                    f.sum().fetch()?;
                }
                Op::Chain(maps) => {
                    let mut b = a.clone();
                    for _ in 0..maps {
                        b = b.map_wgsl(LINK)?;
                    }
                    b.sum().fetch()?;
                }
            }
            Ok::<f64, Box<dyn std::error::Error>>(t.elapsed().as_secs_f64())
        })
    };
    let (mut secs, mut unfused) = (f64::INFINITY, f64::INFINITY);
    peers.alternate(args.repeat, |timed| {
        let fused = once(true)?;
        let plain = match op {
            Op::Chain(_) => Some(once(false)?),
            _ => None,
        };
        if timed == Timed::Yes {
            secs = secs.min(fused);
            unfused = plain.map_or(unfused, |p| unfused.min(p));
        }
        Ok::<(), Box<dyn std::error::Error>>(())
    })?;
    let mut rows = vec![("dagger".to_string(), secs)];
    if let Op::Chain(_) = op {
        rows.push(("unfused".to_string(), unfused));
    }
    for name in ["numpy", "dask"] {
        if let Some(s) = peers.best(name) {
            rows.push((name.to_string(), s));
        }
    }
    drop(peers);
    if let (Op::Chain(maps), false) = (op, args.json) {
        println!(
            "{maps} chained maps `{LINK}` then a sum; dagger fuses them (one pass per block), \
             unfused runs them as separate maps"
        );
    }
    let numpy = rows.iter().find(|r| r.0 == "numpy").map(|r| r.1);
    if !args.json {
        println!(
            "bench {}: {} f32 elements ({} MiB), blocks of {}, CPU scope, {} threads, best of {}",
            op.name(),
            args.n,
            (args.n * 4) >> 20,
            args.block,
            threads,
            args.repeat
        );
        println!(
            "{:<8} {:>10} {:>10} {:>16}",
            "impl", "ms", "GB/s", "dagger speedup"
        );
    }
    for (who, s) in &rows {
        let gbps = bytes / s / 1e9;
        if args.json {
            let mut v = serde_json::json!({
                "bench": op.name(), "impl": who, "n": args.n, "block": args.block,
                "scope": "cpu", "threads": threads, "secs": s, "gbps": gbps,
                "dagger_speedup": s / secs,
            });
            if let Op::Chain(maps) = op {
                v["maps"] = serde_json::json!(maps);
            }
            if let (Some(np), true) = (numpy, who == "dagger") {
                // Ours over the peer (numpy), higher is better.
                v["ratio"] = serde_json::json!(np / s);
            }
            println!("{v}");
        } else {
            println!(
                "{:<8} {:>10.2} {:>10.2} {:>15.2}x",
                who,
                s * 1e3,
                gbps,
                s / secs
            );
        }
    }
    Ok(())
}

/// The arguments of the peer `name` (`numpy` or `dask`) of `benches/peers/array.py`.
fn peer_args(args: &Args, op: Op, threads: usize, name: &str) -> Vec<String> {
    let maps = match op {
        Op::Chain(m) => m,
        _ => 0,
    };
    [
        "--peer",
        name,
        "--op",
        op.name(),
        "--n",
        &args.n.to_string(),
        "--block",
        &args.block.to_string(),
        "--threads",
        &threads.to_string(),
        "--maps",
        &maps.to_string(),
    ]
    .map(String::from)
    .to_vec()
}

/// A field of /proc/self/status in bytes (`VmRSS`, `VmHWM`).
pub(crate) fn status_bytes(field: &str) -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with(field))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

fn memory(args: &Args) -> Result<(), Box<dyn std::error::Error>> {
    let ctx = super::build_context(args.threads)?;
    let n = (args.memory_mib << 20) / 4;
    let size = (n * 4) as f64;
    let base = status_bytes("VmRSS").ok_or("/proc/self/status has no VmRSS")?;
    let t = Instant::now();
    let host = with_options(Options::new().scope(Scope::cpu()), || {
        let mut a = DArray::<f32>::fill(&ctx, [n], Blocks::new([args.block]), 1.0)?;
        for _ in 0..10 {
            a = a.map_wgsl("x * 2.0 - 1.0")?;
        }
        if args.consume {
            a.into_ndarray()
        } else {
            a.collect()
        }
    })?;
    let secs = t.elapsed().as_secs_f64();
    let peak = status_bytes("VmHWM").ok_or("/proc/self/status has no VmHWM")?;
    let wrong = host.iter().filter(|&&x| x != 1.0).count();
    if wrong > 0 {
        return Err(format!("{wrong} wrong elements").into());
    }
    let extra = peak.saturating_sub(base) as f64;
    let collect = if args.consume {
        "into_ndarray"
    } else {
        "collect"
    };
    if args.json {
        println!(
            "{}",
            serde_json::json!({
                "bench": "map_memory", "n": n, "block": args.block, "scope": "cpu",
                "maps": 10, "collect": collect, "array_bytes": size as u64,
                "baseline_rss": base, "peak_rss": peak, "peak_over_array": extra / size,
                "secs": secs, "gbps": size * 10.0 / secs / 1e9,
            })
        );
    } else {
        println!(
            "ten chained maps over {} MiB (blocks of {} elements), then {collect}: peak RSS {:.0} MiB above a {:.0} MiB baseline = {:.2}x the array ({:.2} s)",
            args.memory_mib,
            args.block,
            extra / 1048576.0,
            base as f64 / 1048576.0,
            extra / size,
            secs
        );
    }
    Ok(())
}
