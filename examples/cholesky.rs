//! Tiled Cholesky of a symmetric positive definite DArray: potrf, trsm, syrk and gemm tile
//! tasks in one datadeps region, each with a faer CPU implementation and a WGSL one, so the
//! scope alone decides whether tiles run on CPU threads, a GPU, or both. Prints the tiles
//! each processor ran and the residual ‖L Lᵀ − A‖ / ‖A‖.
//!
//! ```sh
//! cargo run --release --example cholesky -- cpu 1024 256
//! cargo run --release --example cholesky -- gpu 512 128     # GPU 0 (software devices included)
//! cargo run --release --example cholesky -- mixed 1024 256  # CPU threads and every GPU
//! ```

use std::collections::BTreeMap;

use dagger::prelude::*;
use dagger::{EventKind, Trans, Triangle};
use ndarray::Array2;

/// What a run did.
pub struct Report {
    /// ‖L Lᵀ − A‖_F / ‖A‖_F over the lower triangle, computed on the host in f64.
    pub residual: f64,
    /// Tile tasks by processor description, then by kind (`potrf`, `trsm`, `syrk`, `gemm`).
    pub tiles: BTreeMap<String, BTreeMap<String, usize>>,
}

/// Factors `A = X Xᵀ / n + I` (X standard normal, n×n, blocks of `block`) within `scope`.
pub fn run(
    ctx: &Context,
    scope: Scope,
    n: usize,
    block: usize,
) -> Result<Report, Box<dyn std::error::Error>> {
    let blocks = Blocks::new([block, block]);
    let x = DArray::<f32>::randn(ctx, [n, n], blocks.clone(), 11)?;
    let eye = Array2::<f32>::eye(n);
    let mut a = DArray::distribute(ctx, &eye, blocks)?;
    a.syrk(Triangle::Lower, Trans::No, 1.0 / n as f32, &x, 1.0)?;
    a.wait()?;
    ctx.enable_logging();
    let _ = ctx.fetch_logs();
    let l = with_options(Options::new().scope(scope), || a.cholesky())?;
    l.wait()?;
    let logs = ctx.fetch_logs();
    let names: BTreeMap<_, _> = ctx
        .processors()
        .into_iter()
        .map(|p| (p.id, p.description))
        .collect();
    let mut tiles: BTreeMap<String, BTreeMap<String, usize>> = BTreeMap::new();
    for e in logs.iter().filter(|e| e.kind == EventKind::Task) {
        if ["potrf", "trsm", "syrk", "gemm"].contains(&&*e.name) {
            let proc = names.get(&e.processor).cloned().unwrap_or_default();
            *tiles
                .entry(proc)
                .or_default()
                .entry(e.name.to_string())
                .or_default() += 1;
        }
    }
    let (ha, hl) = (a.collect2()?.mapv(f64::from), l.collect2()?.mapv(f64::from));
    let llt = hl.dot(&hl.t());
    let (mut num, mut den) = (0.0, 0.0);
    for ((i, j), want) in ha.indexed_iter() {
        if j <= i {
            num += (llt[[i, j]] - want).powi(2);
            den += want * want;
        }
    }
    Ok(Report {
        residual: (num / den).sqrt(),
        tiles,
    })
}

/// Prints an error the way a user reads it: its message, then each cause on a line.
#[allow(dead_code)]
fn main() {
    if let Err(e) = try_main() {
        eprintln!("error: {e}");
        let mut cause = e.source();
        while let Some(c) = cause {
            eprintln!("  caused by: {c}");
            cause = c.source();
        }
        std::process::exit(1);
    }
}

#[allow(dead_code)]
fn try_main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let which = args.next().unwrap_or_else(|| "cpu".into());
    let n: usize = args.next().map_or(Ok(1024), |s| s.parse())?;
    let block: usize = args.next().map_or(Ok(256), |s| s.parse())?;
    let scope = match which.as_str() {
        "cpu" => Scope::cpu(),
        "gpu" => Scope::gpu(0),
        "mixed" => Scope::union([Scope::cpu(), Scope::gpus(..)])?,
        other => return Err(format!("unknown scope `{other}`: use cpu, gpu or mixed").into()),
    };
    let ctx = Context::new()?;
    let t = std::time::Instant::now();
    let report = run(&ctx, scope, n, block)?;
    let secs = t.elapsed().as_secs_f64();
    println!(
        "cholesky n={n} block={block} on {which}: residual {:.2e}, {secs:.2} s in all",
        report.residual
    );
    for (proc, kinds) in &report.tiles {
        let list: Vec<String> = kinds.iter().map(|(k, c)| format!("{c} {k}")).collect();
        println!("  {proc}: {}", list.join(", "));
    }
    if report.residual > 1e-4 {
        return Err("the factor does not reproduce the matrix".into());
    }
    Ok(())
}
