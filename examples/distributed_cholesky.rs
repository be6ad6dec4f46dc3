//! Cholesky of a symmetric positive definite DArray spread over several processes: every
//! rank makes its own blocks, factors the ones it owns (block-cyclic over a process grid,
//! as ScaLAPACK does), and fetches the blocks it needs from their owners; only the
//! residual check's norms come back to the head. Prints the tiles each rank ran, the time
//! and the residual ‖L Lᵀ − A‖ / ‖A‖.
//!
//! ```sh
//! cargo build --release --features mpi --example distributed_cholesky
//! mpirun -n 3 target/release/examples/distributed_cholesky 2048 256
//! # The same program as threads of one process, without MPI:
//! cargo run --release --example distributed_cholesky -- 1024 128 --in-process 3
//! ```

use std::collections::BTreeMap;
use std::time::Instant;

use dagger::prelude::*;
use dagger::{ContextBuilder, EventKind};

/// What a run did.
pub struct Report {
    /// ‖L Lᵀ − A‖_F / ‖A‖_F, computed as DArray operations on the ranks.
    pub residual: f64,
    /// Tile tasks per rank, by kind (`potrf`, `trsm`, `syrk`, `gemm`).
    pub tiles: BTreeMap<usize, BTreeMap<String, usize>>,
    /// Seconds the factorization took.
    pub seconds: f64,
}

/// Factors `A = X Xᵀ / n + I` (X standard normal, n x n f64, blocks of `block`) in `ctx`.
pub fn run(ctx: &Context, n: usize, block: usize) -> Result<Report, Box<dyn std::error::Error>> {
    let blocks = Blocks::new([block, block]);
    let x = DArray::<f64>::randn(ctx, [n, n], blocks.clone(), 5)?;
    let eye = DArray::<f64>::eye(ctx, n, blocks)?;
    let a = (&(&x.matmul(&x.t())? * (1.0 / n as f64)) + &eye)?;
    a.wait()?;
    ctx.enable_logging();
    let _ = ctx.fetch_logs();
    let t0 = Instant::now();
    let l = a.cholesky()?;
    l.wait()?;
    let seconds = t0.elapsed().as_secs_f64();
    let mut tiles: BTreeMap<usize, BTreeMap<String, usize>> = BTreeMap::new();
    for e in ctx.fetch_logs() {
        if e.kind == EventKind::Task && ["potrf", "trsm", "syrk", "gemm"].contains(&&*e.name) {
            let rank = e.processor.process() as usize - 1;
            *tiles
                .entry(rank)
                .or_default()
                .entry(e.name.to_string())
                .or_default() += 1;
        }
    }
    let diff = (&l.matmul(&l.t())? - &a)?;
    let norm = |m: &DArray<f64>| -> Result<f64, Box<dyn std::error::Error>> {
        Ok((m * m)?.sum().fetch()?.sqrt())
    };
    let residual = norm(&diff)? / norm(&a)?;
    Ok(Report {
        residual,
        tiles,
        seconds,
    })
}

#[allow(dead_code)]
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let num = |i: usize, default: usize| -> Result<usize, Box<dyn std::error::Error>> {
        match args.get(i) {
            Some(s) => Ok(s.parse().map_err(|e| format!("argument {}: {e}", i + 1))?),
            None => Ok(default),
        }
    };
    let (n, block) = (num(0, 2048)?, num(1, 256)?);
    let in_process = match args.iter().position(|a| a == "--in-process") {
        Some(i) => Some(num(i + 1, 3)?),
        None => None,
    };
    let each = || Context::builder().threads(1).gpus(false);
    let ctx = match in_process {
        Some(ranks) => dagger::remote::in_process(ranks.max(1) - 1, |_| each())?,
        None => join(each())?,
    };
    println!(
        "{} ranks, n = {n}, blocks of {block}: {} x {} tiles",
        ctx.ranks(),
        n.div_ceil(block),
        n.div_ceil(block)
    );
    let r = run(&ctx, n, block)?;
    for (rank, kinds) in &r.tiles {
        let total: usize = kinds.values().sum();
        println!("rank {rank}: {total} tiles {kinds:?}");
    }
    let flops = (n as f64).powi(3) / 3.0;
    println!(
        "factored in {:.3} s ({:.2} GFLOP/s), residual {:.2e}",
        r.seconds,
        flops / r.seconds / 1e9,
        r.residual
    );
    if r.residual > 1e-10 {
        return Err(format!("the residual {:.2e} is too large", r.residual).into());
    }
    Ok(())
}

/// The head's context over every rank `mpirun` started (the other ranks serve it and exit
/// when it ends); without the `mpi` feature, this process alone.
#[allow(dead_code)]
fn join(b: ContextBuilder) -> Result<Context, Box<dyn std::error::Error>> {
    #[cfg(feature = "mpi")]
    return Ok(b.mpi()?);
    #[cfg(not(feature = "mpi"))]
    {
        eprintln!("built without the mpi feature: running as one process");
        Ok(b.build()?)
    }
}
