//! `dagger bench overhead`: per-task scheduler overhead on three graph shapes.

use std::time::Instant;

use dagger::prelude::*;

#[derive(clap::Args)]
pub(crate) struct Args {
    /// Tasks in the independent and chain shapes.
    #[arg(long, default_value_t = 100_000)]
    tasks: usize,
    /// log2 of the number of leaves of the reduction tree.
    #[arg(long, default_value_t = 17)]
    tree_depth: u32,
    /// CPU worker threads (default: one per core).
    #[arg(long)]
    threads: Option<usize>,
    /// Repetitions; the best is reported.
    #[arg(long, default_value_t = 5)]
    repeat: usize,
    /// Record the event log while running.
    #[arg(long)]
    logging: bool,
    /// One JSON object per shape.
    #[arg(long)]
    json: bool,
}

/// Runs one graph shape; returns the number of tasks and the seconds taken.
type Shape = fn(&Context, &Args) -> Result<(usize, f64), TaskError>;

pub(crate) fn run(args: &Args) -> Result<(), Box<dyn std::error::Error>> {
    let ctx = super::build_context(args.threads)?;
    if args.logging {
        ctx.enable_logging();
    }
    let shapes: [(&str, Shape); 3] = [
        ("independent", independent),
        ("chain", chain),
        ("tree", tree),
    ];
    if !args.json {
        println!(
            "{:<12} {:>9} {:>12}   (threads: {}, best of {})",
            "shape",
            "tasks",
            "µs/task",
            ctx.num_threads(),
            args.repeat
        );
    }
    for (name, f) in shapes {
        let mut best = f64::INFINITY;
        let mut n = 0;
        for _ in 0..args.repeat.max(1) {
            let (tasks, secs) = f(&ctx, args)?;
            n = tasks;
            best = best.min(secs);
            if args.logging {
                let events = ctx.fetch_logs();
                assert_eq!(events.len(), tasks, "one log event per task");
            }
        }
        let us = best / n as f64 * 1e6;
        if args.json {
            println!(
                "{}",
                serde_json::json!({"bench": "overhead", "shape": name, "tasks": n, "us_per_task": us, "threads": ctx.num_threads(), "logging": args.logging})
            );
        } else {
            println!("{name:<12} {n:>9} {us:>12.3}");
        }
    }
    Ok(())
}

fn independent(ctx: &Context, args: &Args) -> Result<(usize, f64), TaskError> {
    let n = args.tasks;
    let t = Instant::now();
    let tasks: Vec<DTask<u64>> = (0..n as u64)
        .map(|i| ctx.spawn(|i: u64| i + 1, (i,)))
        .collect();
    let mut sum = 0;
    for task in &tasks {
        sum += task.fetch()?;
    }
    let secs = t.elapsed().as_secs_f64();
    assert_eq!(sum, (n as u64) * (n as u64 + 1) / 2);
    Ok((n, secs))
}

fn chain(ctx: &Context, args: &Args) -> Result<(usize, f64), TaskError> {
    let n = args.tasks;
    let t = Instant::now();
    let mut prev = ctx.spawn(|| 0u64, ());
    for _ in 1..n {
        prev = ctx.spawn(|x: u64| x + 1, (&prev,));
    }
    let r = prev.fetch()?;
    let secs = t.elapsed().as_secs_f64();
    assert_eq!(r, n as u64 - 1);
    Ok((n, secs))
}

fn tree(ctx: &Context, args: &Args) -> Result<(usize, f64), TaskError> {
    let leaves = 1usize << args.tree_depth;
    let t = Instant::now();
    let mut level: Vec<DTask<u64>> = (0..leaves).map(|_| ctx.spawn(|| 1u64, ())).collect();
    while level.len() > 1 {
        level = level
            .chunks(2)
            .map(|p| ctx.spawn(|a: u64, b: u64| a + b, (&p[0], &p[1])))
            .collect();
    }
    let r = level[0].fetch()?;
    let secs = t.elapsed().as_secs_f64();
    assert_eq!(r, leaves as u64);
    Ok((2 * leaves - 1, secs))
}
