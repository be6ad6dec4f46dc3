//! Tiled Cholesky of a matrix larger than the memory limit: the tiles spill to disk and are
//! read back as the factorization needs them. Prints GFLOP/s, what went to disk and back,
//! and the residual ‖L Lᵀ − A‖ / ‖A‖ over sampled block rows (computed with DArray products,
//! so the check stays out of core too); `--compare` runs the same without a limit.
//!
//! ```sh
//! cargo run --release --example out_of_core -- 16384 1024 512MiB --compare   # 1 GiB of f32
//! cargo run --release --example out_of_core -- 2048 256 4MiB
//! ```

use std::time::Instant;

use dagger::prelude::*;
use dagger::storage::MemoryStats;
use dagger::{Trans, Triangle};

/// What a run did.
pub struct Report {
    /// Seconds the factorization took.
    pub secs: f64,
    /// n³/3 flops over those seconds, in GFLOP/s.
    pub gflops: f64,
    /// ‖L Lᵀ − A‖_F / ‖A‖_F over the lower triangle of the sampled block rows.
    pub residual: f64,
    /// The context's memory after the factorization.
    pub memory: MemoryStats,
}

/// Factors `A = X Xᵀ / n + I` (X standard normal, n×n f32, blocks of `block`) on `ctx`'s
/// CPU threads, then checks `samples` block rows of L Lᵀ against A.
pub fn run(
    ctx: &Context,
    n: usize,
    block: usize,
    samples: usize,
) -> Result<Report, Box<dyn std::error::Error>> {
    let blocks = Blocks::new([block, block]);
    let x = DArray::<f32>::randn(ctx, [n, n], blocks.clone(), 11)?;
    let mut a = DArray::<f32>::eye(ctx, n, blocks)?;
    a.syrk(Triangle::Lower, Trans::No, 1.0 / n as f32, &x, 1.0)?;
    a.wait()?;
    drop(x);
    let t = Instant::now();
    let l = with_options(Options::new().scope(Scope::cpu()), || a.cholesky())?;
    l.wait()?;
    let secs = t.elapsed().as_secs_f64();
    let memory = ctx.memory_stats();
    let lt = l.t();
    let (mut err, mut norm) = (0.0f64, 0.0f64);
    let rows = n.div_ceil(block);
    for s in 0..samples.min(rows) {
        // Block rows spread from the first to the last.
        let r = if samples <= 1 {
            0
        } else {
            s * (rows - 1) / (samples - 1)
        };
        let lo = r * block;
        let hi = (lo + block).min(n);
        let llt = l.slice(&[lo..hi, 0..n])?.matmul(&lt)?.collect2()?;
        let want = a.slice(&[lo..hi, 0..n])?.collect2()?;
        for i in lo..hi {
            for j in 0..=i {
                let (g, w) = (f64::from(llt[[i - lo, j]]), f64::from(want[[i - lo, j]]));
                err += (g - w) * (g - w);
                norm += w * w;
            }
        }
    }
    Ok(Report {
        secs,
        gflops: (n as f64).powi(3) / 3.0 / secs / 1e9,
        residual: (err / norm).sqrt(),
        memory,
    })
}

fn report(what: &str, r: &Report) {
    let m = &r.memory;
    let gib = |b: u64| b as f64 / (1u64 << 30) as f64;
    println!(
        "{what}: {:.2} s, {:.1} GFLOP/s, residual {:.1e}; {} spills ({:.2} GiB), {} reloads ({:.2} GiB, {} read ahead), peak managed {:.2} GiB",
        r.secs,
        r.gflops,
        r.residual,
        m.spills,
        gib(m.bytes_written),
        m.reloads,
        gib(m.bytes_read),
        m.prefetches,
        gib(m.peak_resident_bytes),
    );
}

#[allow(dead_code)]
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = "usage: out_of_core N BLOCK LIMIT [--compare]   (LIMIT such as 512MiB)";
    let n: usize = args.first().ok_or(usage)?.parse().map_err(|_| usage)?;
    let block: usize = args.get(1).ok_or(usage)?.parse().map_err(|_| usage)?;
    let limit = dagger::storage::parse_limit(args.get(2).ok_or(usage)?)?.ok_or(usage)?;
    let compare = args.iter().any(|a| a == "--compare");
    let matrix = (n * n * 4) as u64;
    println!(
        "Cholesky of {n}×{n} f32 ({:.2} GiB) in blocks of {block} under a {:.2} GiB limit",
        matrix as f64 / (1u64 << 30) as f64,
        limit as f64 / (1u64 << 30) as f64
    );
    let ctx = Context::builder().gpus(false).memory_limit(limit).build()?;
    let limited = run(&ctx, n, block, 3)?;
    drop(ctx);
    report("under the limit", &limited);
    if compare {
        let ctx = Context::builder().gpus(false).no_memory_limit().build()?;
        let free = run(&ctx, n, block, 3)?;
        report("in memory", &free);
        println!(
            "ratio (limited / in memory): {:.2}",
            limited.gflops / free.gflops
        );
    }
    Ok(())
}
