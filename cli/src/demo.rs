//! `dagger demo`: the flagship heterogeneous blocked GEMM, checked against a reference,
//! with a Gantt chart of where each tile ran.

use std::collections::BTreeMap;
use std::time::Instant;

use dagger::prelude::*;
use dagger::{viz, EventKind, ProcessorId, ProcessorInfo, ProcessorKind};

use super::out_dir::OutDir;

#[derive(clap::Args)]
pub(crate) struct Args {
    /// Matrix size (n x n times n x n).
    #[arg(long, default_value_t = 2048)]
    n: usize,
    /// Block size.
    #[arg(long, default_value_t = 512)]
    block: usize,
    /// Also use the GPUs, software devices included.
    #[arg(long)]
    gpu: bool,
    /// CPU worker threads (default: one per core).
    #[arg(long)]
    threads: Option<usize>,
    /// Where to write gantt.svg and trace.json: a directory, created if missing (default: a
    /// new directory under the system's temporary directory, printed at the end).
    #[arg(long)]
    out: Option<std::path::PathBuf>,
    /// Replace gantt.svg and trace.json if --out has them (by default that is an error).
    #[arg(long)]
    force: bool,
}

pub(crate) fn run(args: &Args) -> Result<(), Box<dyn std::error::Error>> {
    // Checked before the GEMM runs, not after.
    // Without --out, a directory of its own: the demo never writes into the working tree and
    // can run again.
    let dir = args
        .out
        .clone()
        .unwrap_or_else(|| super::out_dir::new_temp_dir_path("demo"));
    let out = OutDir::prepare(&dir, args.force, &[("gantt", "svg"), ("trace", "json")])?;
    let mut b = Context::builder().software_gpus(args.gpu);
    if let Some(t) = args.threads {
        b = b.threads(t);
    }
    let ctx = b.build()?;
    if std::io::IsTerminal::is_terminal(&std::io::stdout()) {
        ctx.progress(true);
    }
    let (n, blk) = (args.n, args.block);
    let a = DArray::<f32>::randn(&ctx, [n, n], Blocks::new([blk, blk]), 1)?;
    let bm = DArray::<f32>::randn(&ctx, [n, n], Blocks::new([blk, blk]), 2)?;
    a.wait()?;
    bm.wait()?;
    let procs = ctx.processors();
    let in_scope: Vec<_> = procs.iter().filter(|p| p.default_enabled).collect();
    println!(
        "dagger demo: C = A·B, n = {n}, blocks {blk}x{blk} ({} tiles), on {} processors:",
        n.div_ceil(blk).pow(2),
        in_scope.len()
    );
    for p in &in_scope {
        println!("  {} [{}]", p.description, p.id);
    }
    ctx.enable_logging();
    let _ = ctx.fetch_logs();
    let t = Instant::now();
    let c = a.matmul(&bm)?;
    c.wait()?;
    let secs = t.elapsed().as_secs_f64();
    let events = ctx.fetch_logs();

    // Check against an f64 reference on the host.
    let rel = super::linalg_bench::gemm_error(&a, &bm, &c)?;

    let mut tiles: BTreeMap<String, usize> = BTreeMap::new();
    for e in events
        .iter()
        .filter(|e| e.kind == EventKind::Task && &*e.name == "gemm")
    {
        let name = procs
            .iter()
            .find(|p| p.id == e.processor)
            .map(|p| format!("{} [{}]", p.description, p.id))
            .unwrap_or_else(|| e.processor.to_string());
        *tiles.entry(name).or_default() += 1;
    }
    println!("tiles per processor:");
    for (p, k) in &tiles {
        println!("  {k:>5}  {p}");
    }
    explain_placement(&ctx, &procs, &in_scope, &tiles);
    let gflops = 2.0 * (n as f64).powi(3) / secs / 1e9;
    println!(
        "time {:.3} s, {gflops:.1} GFLOP/s, relative error vs f64 reference {rel:.2e}",
        secs
    );
    let title = format!("dagger demo: {n}x{n} GEMM in {blk}x{blk} blocks, {gflops:.1} GFLOP/s");
    out.write("gantt.svg", viz::gantt_svg(&events, &procs, &title))?;
    out.write("trace.json", viz::chrome_trace(&events, &procs))?;
    println!("{}", viz::summarize(&events, &procs));
    println!("wrote {} and trace.json", out.path("gantt.svg").display());
    if rel.is_nan() || rel >= 1e-4 {
        return Err(format!("result differs from the reference: relative error {rel:.2e}").into());
    }
    Ok(())
}

/// Says, for every processor offered to the demo that ran no tile, why: the cost model's
/// estimate of a tile there against the processors that took them.
fn explain_placement(
    ctx: &Context,
    procs: &[ProcessorInfo],
    in_scope: &[&ProcessorInfo],
    tiles: &BTreeMap<String, usize>,
) {
    let placements = ctx.fetch_placements();
    let label = |id: ProcessorId| {
        procs
            .iter()
            .find(|p| p.id == id)
            .map(|p| format!("{} [{}]", p.description, p.id))
            .unwrap_or_else(|| id.to_string())
    };
    let ms = |ns: u64| ns as f64 / 1e6;
    let winners: Vec<_> = placements.iter().filter(|p| p.chosen > 0).collect();
    let best = winners
        .iter()
        .map(|p| p.mean_estimate_ns)
        .filter(|&e| e > 0)
        .min();
    for p in in_scope {
        let name = label(p.id);
        if tiles.contains_key(&name) {
            continue;
        }
        match placements.iter().find(|x| x.processor == p.id) {
            Some(x) if x.offered > 0 => {
                let versus = best.map_or(String::new(), |b| {
                    format!(" against {:.1} ms on the processors that took tiles", ms(b))
                });
                println!(
                    "  {name} was offered {} tiles and took none: the cost model estimated \
                     {:.1} ms per tile there{versus}, so they finished earlier elsewhere",
                    x.offered,
                    ms(x.mean_estimate_ns)
                );
            }
            _ if p.kind == ProcessorKind::Wgpu => println!(
                "  {name} took no tiles: it was not among the candidates of any tile \
                 (its device cannot run them)"
            ),
            _ => {}
        }
    }
    if in_scope.iter().all(|p| p.kind != ProcessorKind::Wgpu)
        && procs.iter().any(|p| p.gpu.is_some())
    {
        println!("  (GPUs were found but not offered: software ones join with --gpu)");
    }
}
