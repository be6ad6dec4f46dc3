//! `dagger bench stream`: items per second through a 3-stage streaming pipeline of trivial
//! stages, beside a hand-written crossbeam-channel pipeline of the same shape.

use std::time::Instant;

#[derive(clap::Args)]
pub(crate) struct Args {
    /// Items through the pipeline.
    #[arg(long, default_value_t = 1_000_000)]
    items: u64,
    /// Capacity of each buffer between stages (the same for both pipelines).
    #[arg(long, default_value_t = 256)]
    buffer: usize,
    /// CPU worker threads (default: one per core).
    #[arg(long)]
    threads: Option<usize>,
    /// Repetitions; the best is reported.
    #[arg(long, default_value_t = 3)]
    repeat: usize,
    /// One JSON object.
    #[arg(long)]
    json: bool,
}

pub(crate) fn run(args: &Args) -> Result<(), Box<dyn std::error::Error>> {
    let ctx = super::build_context(args.threads)?;
    let n = args.items.max(1);
    let want = n * (n + 1) / 2 + n;
    let mut ours = f64::INFINITY;
    let mut theirs = f64::INFINITY;
    for _ in 0..args.repeat.max(1) {
        let t = Instant::now();
        let sum = ctx
            .spawn_streaming(|s| {
                s.buffer(args.buffer);
                let mut i = 0u64;
                let src = s.source(move || {
                    i += 1;
                    (i <= n).then_some(i)
                });
                let mid = s.stage(src, |x: u64| x + 1);
                s.sink(mid, 0u64, |acc, x| *acc += x)
            })?
            .fetch()?;
        ours = ours.min(t.elapsed().as_secs_f64());
        if sum != want {
            return Err(format!("the stream summed to {sum}, not {want}").into());
        }
        let t = Instant::now();
        let sum = crossbeam_pipeline(n, args.buffer);
        theirs = theirs.min(t.elapsed().as_secs_f64());
        if sum != want {
            return Err(format!("the crossbeam pipeline summed to {sum}, not {want}").into());
        }
    }
    let items_per_s = n as f64 / ours;
    let crossbeam_items_per_s = n as f64 / theirs;
    let ratio = items_per_s / crossbeam_items_per_s;
    if args.json {
        println!(
            "{}",
            serde_json::json!({
                "bench": "stream",
                "items": n,
                "buffer": args.buffer,
                "threads": ctx.num_threads(),
                "items_per_s": items_per_s,
                "us_per_item": 1e6 / items_per_s,
                "crossbeam_items_per_s": crossbeam_items_per_s,
                "crossbeam_us_per_item": 1e6 / crossbeam_items_per_s,
                "ratio": ratio,
            })
        );
    } else {
        println!(
            "3-stage pipeline, {n} items, buffers of {}, {} threads, best of {}",
            args.buffer,
            ctx.num_threads(),
            args.repeat.max(1)
        );
        println!("{:<22} {:>14} {:>10}", "pipeline", "items/s", "µs/item");
        println!(
            "{:<22} {:>14.0} {:>10.3}",
            "dagger spawn_streaming",
            items_per_s,
            1e6 / items_per_s
        );
        println!(
            "{:<22} {:>14.0} {:>10.3}",
            "crossbeam channels",
            crossbeam_items_per_s,
            1e6 / crossbeam_items_per_s
        );
        println!("ratio (dagger / crossbeam): {ratio:.2}");
    }
    Ok(())
}

/// The same pipeline by hand: three threads and two bounded channels.
fn crossbeam_pipeline(n: u64, buffer: usize) -> u64 {
    let (tx1, rx1) = crossbeam_channel::bounded::<u64>(buffer);
    let (tx2, rx2) = crossbeam_channel::bounded::<u64>(buffer);
    std::thread::scope(|s| {
        s.spawn(move || {
            for i in 1..=n {
                if tx1.send(i).is_err() {
                    break;
                }
            }
        });
        s.spawn(move || {
            for x in rx1 {
                if tx2.send(x + 1).is_err() {
                    break;
                }
            }
        });
        s.spawn(move || rx2.iter().sum::<u64>())
            .join()
            .expect("the sink thread")
    })
}
