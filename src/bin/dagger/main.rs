//! `dagger`: list processors, run benchmarks and the demo.

mod overhead;

use clap::{Parser, Subcommand};
use dagger::prelude::*;

#[derive(Parser)]
#[command(
    name = "dagger",
    version,
    about = "Task graphs over CPU threads and GPUs"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// List every processor the context finds.
    Info {
        /// One JSON object per processor.
        #[arg(long)]
        json: bool,
        /// CPU worker threads (default: one per core).
        #[arg(long)]
        threads: Option<usize>,
    },
    /// Run a benchmark and print a table (or JSON lines).
    Bench {
        #[command(subcommand)]
        which: Bench,
    },
}

#[derive(Subcommand)]
enum Bench {
    /// Scheduler overhead: µs per task for independent tasks, a chain and a reduction tree.
    Overhead(overhead::Args),
}

fn build_context(threads: Option<usize>) -> Result<Context, dagger::BuildError> {
    let mut b = Context::builder();
    if let Some(t) = threads {
        b = b.threads(t);
    }
    b.build()
}

fn main() {
    let cli = Cli::parse();
    let result: Result<(), Box<dyn std::error::Error>> = match cli.command {
        Command::Info { json, threads } => info(json, threads),
        Command::Bench { which } => match which {
            Bench::Overhead(args) => overhead::run(&args),
        },
    };
    if let Err(e) = result {
        eprintln!("error: {e}");
        let mut src = e.source();
        while let Some(s) = src {
            eprintln!("  caused by: {s}");
            src = s.source();
        }
        std::process::exit(1);
    }
}

fn info(json: bool, threads: Option<usize>) -> Result<(), Box<dyn std::error::Error>> {
    let ctx = build_context(threads)?;
    let procs = ctx.processors();
    if json {
        for p in &procs {
            let v = serde_json::json!({
                "id": p.id.to_string(),
                "kind": p.kind.as_str(),
                "description": p.description,
                "parent": p.parent.map(|x| x.to_string()),
                "children": p.children.iter().map(|c| c.to_string()).collect::<Vec<_>>(),
                "memory_space": p.memory_space.to_string(),
                "default_enabled": p.default_enabled,
            });
            println!("{v}");
        }
    } else {
        println!(
            "{:<6} {:<8} {:<8} {:<10} {:<8} description",
            "id", "kind", "parent", "memory", "default"
        );
        for p in &procs {
            println!(
                "{:<6} {:<8} {:<8} {:<10} {:<8} {}",
                p.id.to_string(),
                p.kind.as_str(),
                p.parent
                    .map(|x| x.to_string())
                    .unwrap_or_else(|| "-".into()),
                p.memory_space.to_string(),
                if p.default_enabled { "yes" } else { "no" },
                p.description
            );
        }
    }
    Ok(())
}
