//! `dagger bench stencil`: the 5-point Jacobi iteration on an n x n DArray (a constant-zero
//! boundary), beside numpy slicing doing the same in the same run
//! (`benches/peers/stencil.py`).

use std::time::Instant;

use dagger::prelude::*;
use dagger::{Boundary, Float, Stencil};

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
    /// Repetitions; the best is reported.
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
    let mut best = f64::INFINITY;
    for _ in 0..args.repeat.max(1) {
        let t = Instant::now();
        let out = with_options(Options::new().scope(scope.clone()), || {
            a.stencil_iter(&jacobi, Boundary::Constant(T::ZERO), args.iters)
        })?;
        out.wait()?;
        best = best.min(t.elapsed().as_secs_f64());
    }
    let gpts = (n * n * args.iters) as f64 / best / 1e9;
    let peer = if args.peer {
        peer_secs(args)
            .map_err(|e| eprintln!("note: the numpy peer did not run: {e}"))
            .ok()
    } else {
        None
    };
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

/// Seconds numpy takes for the same iterations.
fn peer_secs(args: &Args) -> Result<f64, String> {
    let python = args.python.interpreter()?;
    let argv = [
        "--n",
        &args.n.to_string(),
        "--iters",
        &args.iters.to_string(),
        "--dtype",
        &args.dtype,
    ]
    .map(String::from);
    let out = super::python::run(&python, PEER, &argv)?;
    let line = out.trim().lines().last().unwrap_or("");
    let v: serde_json::Value =
        serde_json::from_str(line).map_err(|e| format!("unreadable line {line:?}: {e}"))?;
    v["secs"]
        .as_f64()
        .ok_or_else(|| format!("line without `secs`: {line}"))
}
