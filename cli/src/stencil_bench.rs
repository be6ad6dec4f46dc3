//! `dagger bench stencil`: the 5-point Jacobi iteration on an n x n DArray (a constant-zero
//! boundary), beside numpy slicing doing the same in the same run
//! (`benches/peers/stencil.py`). numpy's runs alternate with ours (one after each of ours),
//! so that on a shared machine both sides meet the same load; each side reports its best.

use std::time::Instant;

use dagger::prelude::*;
use dagger::{Boundary, Float, Stencil};

use super::peer::{Best, Peers, Timed};

/// The peer script, embedded so the command works from any directory.
const PEER: &str = include_str!("../../benches/peers/stencil.py");

#[derive(clap::Args)]
pub(crate) struct Args {
    /// Grid size (n x n).
    #[arg(long, default_value_t = 8192)]
    n: usize,
    /// Block size (blocks of block x block).
    #[arg(long, default_value_t = 1024)]
    block: usize,
    /// Jacobi iterations.
    #[arg(long, default_value_t = 20)]
    iters: usize,
    /// f32 or f64.
    #[arg(long, default_value = "f32")]
    dtype: String,
    /// cpu, gpu (GPU 0) or auto (every processor, software GPUs included).
    #[arg(long, default_value = "cpu")]
    scope: String,
    /// Repetitions; the best is reported. With --peer, numpy runs once after each of ours,
    /// so that both meet the same load on a shared machine.
    #[arg(long, default_value_t = 2)]
    repeat: usize,
    /// Also time numpy slicing on the same grid and print the ratio.
    #[arg(long)]
    peer: bool,
    #[command(flatten)]
    python: super::python::PythonArgs,
    /// One JSON object per result.
    #[arg(long)]
    json: bool,
}

pub(crate) fn run(args: &Args) -> Result<(), Box<dyn std::error::Error>> {
    match args.dtype.as_str() {
        "f32" => bench::<f32>(args),
        "f64" => bench::<f64>(args),
        other => Err(format!("unknown dtype `{other}`: use f32 or f64").into()),
    }
}

fn bench<T: Float>(args: &Args) -> Result<(), Box<dyn std::error::Error>> {
    let scope = match args.scope.as_str() {
        "cpu" => Scope::cpu(),
        "gpu" => Scope::gpu(0),
        "auto" => Scope::any(),
        other => return Err(format!("unknown scope `{other}`: use cpu, gpu or auto").into()),
    };
    let ctx = super::build_context(None)?;
    let (n, b) = (args.n, args.block);
    let a = DArray::<T>::rand(&ctx, [n, n], Blocks::new([b, b]), 1)?;
    a.wait()?;
    let jacobi = Stencil::jacobi_5pt();
    // numpy makes its grid and warms up before the timing, then runs once after each of
    // ours (interleaved), so that both sides meet the same load.
    let mut peers = Peers::new(args.peer, &args.python);
    let argv = [
        "--n",
        &n.to_string(),
        "--iters",
        &args.iters.to_string(),
        "--dtype",
        &args.dtype,
    ]
    .map(String::from);
    peers.start("numpy", PEER, &argv, Best::Lowest("secs"));
    let mut best = f64::INFINITY;
    peers.alternate(args.repeat, |timed| {
        let t = Instant::now();
        let out = with_options(Options::new().scope(scope.clone()), || {
            a.stencil_iter(&jacobi, Boundary::Constant(T::ZERO), args.iters)
        })?;
        out.wait()?;
        if timed == Timed::Yes {
            best = best.min(t.elapsed().as_secs_f64());
        }
        Ok::<(), dagger::ArrayError>(())
    })?;
    let peer = peers.best("numpy");
    drop(peers);
    let gpts = (n * n * args.iters) as f64 / best / 1e9;
    if args.json {
        let mut v = serde_json::json!({"bench": "stencil", "stencil": "jacobi_5pt", "n": n,
            "block": b, "iters": args.iters, "dtype": args.dtype, "scope": args.scope,
            "secs": best, "gpts": gpts});
        if let Some(p) = peer {
            v["numpy_secs"] = serde_json::json!(p);
            v["ratio"] = serde_json::json!(p / best);
        }
        println!("{v}");
    } else {
        print!(
            "stencil (5-point Jacobi) n={n} block={b} iters={} {} scope={}: {:.3} s, {gpts:.2} Gpoints/s",
            args.iters, args.dtype, args.scope, best
        );
        if let Some(p) = peer {
            print!(", numpy {p:.3} s, ratio {:.2}", p / best);
        }
        println!();
    }
    Ok(())
}
