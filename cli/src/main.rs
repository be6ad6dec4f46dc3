//! `dagger`: list processors, run benchmarks and the demo.

#[cfg(feature = "wgpu")]
mod array_bench;
#[cfg(feature = "wgpu")]
mod demo;
#[cfg(feature = "wgpu")]
mod gpu_bench;
#[cfg(feature = "wgpu")]
mod linalg_bench;
#[cfg(feature = "wgpu")]
mod ooc_bench;
mod out_dir;
mod overhead;
mod peer;
mod python;
mod remote_bench;
mod sort_bench;
#[cfg(feature = "wgpu")]
mod stencil_bench;
mod stream_bench;

use clap::{Parser, Subcommand};

/// Tasks are allocated by the spawning thread and freed by the worker that ran them; glibc's
/// allocator serializes those cross-thread frees on an arena lock, mimalloc does not.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;
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
    /// The flagship: a blocked GEMM over every default processor (and the GPUs with
    /// --gpu), checked against a reference, with a Gantt chart of where each tile ran.
    #[cfg(feature = "wgpu")]
    Demo(demo::Args),
    /// Run a benchmark and print a table (or JSON lines).
    Bench {
        #[command(subcommand)]
        which: Bench,
    },
    /// Run a benchmark with the event log on, then write trace.json (Perfetto /
    /// chrome://tracing), gantt.svg, graph.dot and summary.txt into --out.
    Trace {
        /// Where to write the files: a directory, created if missing (default: a new
        /// directory under the system's temporary directory, whose path is printed).
        #[arg(long)]
        out: Option<std::path::PathBuf>,
        /// Replace output files already in --out (by default that is an error).
        #[arg(long)]
        force: bool,
        #[command(subcommand)]
        which: Traced,
    },
}

#[derive(Subcommand)]
enum Traced {
    /// A benchmark, with its own arguments.
    Bench {
        #[command(subcommand)]
        which: Bench,
    },
}

#[derive(Subcommand)]
enum Bench {
    /// Scheduler overhead: µs per task for independent tasks, a chain and a reduction tree.
    Overhead(overhead::Args),
    /// Items/s through a 3-stage spawn_streaming pipeline, beside crossbeam channels.
    Stream(stream_bench::Args),
    /// Tasks on another rank: µs one at a time, tasks/s in flight, GB/s moving a block,
    /// beside raw MPI (run under `mpirun -n 2`; otherwise over threads of one process).
    Remote(remote_bench::Args),
    /// Host to device and back on every GPU: GB/s by size.
    #[cfg(feature = "wgpu")]
    Transfer(gpu_bench::TransferArgs),
    /// µs per launch of small kernels: batched, unbatched, and as scheduled tasks.
    #[cfg(feature = "wgpu")]
    Launch(gpu_bench::LaunchArgs),
    /// Blocked GEMM on DArrays: GFLOP/s on a scope, optionally checked and beside OpenBLAS
    /// and dask.array.
    #[cfg(feature = "wgpu")]
    Gemm(linalg_bench::Args),
    /// Blocked SYRK (lower triangle of A Aᵀ) on DArrays, beside OpenBLAS ?syrk.
    #[cfg(feature = "wgpu")]
    Syrk(linalg_bench::Args),
    /// Tiled Cholesky on DArrays, beside scipy's (OpenBLAS/LAPACK) potrf.
    #[cfg(feature = "wgpu")]
    Cholesky(linalg_bench::Args),
    /// 5-point Jacobi iterations on a DArray (stencil with halo exchange), beside numpy.
    #[cfg(feature = "wgpu")]
    Stencil(stencil_bench::Args),
    /// Tiled LU (partial pivoting unless --pivoting none) on DArrays, beside scipy's
    /// lu_factor (OpenBLAS/LAPACK getrf).
    #[cfg(feature = "wgpu")]
    Lu(linalg_bench::LuArgs),
    /// Tiled Householder QR on DArrays, beside numpy's qr (mode="raw": OpenBLAS/LAPACK
    /// geqrf, the factorization alone, as timed here).
    #[cfg(feature = "wgpu")]
    Qr(linalg_bench::Args),
    /// DArray elementwise map (y = 2x + 1): GB/s on the CPU scope beside numpy and dask.
    #[cfg(feature = "wgpu")]
    Map(array_bench::Args),
    /// DArray sum of all elements: GB/s on the CPU scope beside numpy and dask.
    #[cfg(feature = "wgpu")]
    Reduce(array_bench::Args),
    /// Out of core: map and sum over an array larger than the memory limit, spilling to
    /// disk, beside a plain write and read of the same bytes and numpy's memmap.
    #[cfg(feature = "wgpu")]
    Ooc(ooc_bench::Args),
    /// DArray sort of n random f64 on CPU threads: seconds and elements/s beside numpy.sort
    /// of the same data.
    Sort(sort_bench::Args),
}

/// Contexts made while tracing, whose logs `dagger trace` renders.
static TRACED: std::sync::Mutex<Option<Vec<Context>>> = std::sync::Mutex::new(None);

/// Whether `mpirun`/`srun` started this process.
fn under_mpi_launcher() -> bool {
    ["OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK"]
        .iter()
        .any(|v| std::env::var_os(v).is_some())
}

/// The context the tool's commands run on: every rank's processors when started by
/// `mpirun` (with the `mpi` feature; the other ranks serve rank 0 and exit), else this
/// process's.
fn build_context(threads: Option<usize>) -> Result<Context, Box<dyn std::error::Error>> {
    let mut b = Context::builder();
    if let Some(t) = threads {
        b = b.threads(t);
    }
    #[cfg(feature = "mpi")]
    let ctx = if under_mpi_launcher() {
        b.mpi()?
    } else {
        b.build()?
    };
    #[cfg(not(feature = "mpi"))]
    let ctx = {
        if under_mpi_launcher() {
            eprintln!(
                "warning: started by an MPI launcher, but this dagger was built without the \
                 `mpi` feature: every rank runs alone"
            );
        }
        b.build()?
    };
    if std::io::IsTerminal::is_terminal(&std::io::stdout()) {
        ctx.progress(true);
    }
    if let Some(list) = TRACED.lock().expect("trace registry").as_mut() {
        ctx.enable_logging();
        list.push(ctx.clone());
    }
    Ok(ctx)
}

fn run_bench(which: Bench) -> Result<(), Box<dyn std::error::Error>> {
    match which {
        Bench::Overhead(args) => overhead::run(&args),
        Bench::Stream(args) => stream_bench::run(&args),
        Bench::Remote(args) => remote_bench::run(&args),
        #[cfg(feature = "wgpu")]
        Bench::Transfer(args) => gpu_bench::transfer(&args),
        #[cfg(feature = "wgpu")]
        Bench::Launch(args) => gpu_bench::launch(&args),
        #[cfg(feature = "wgpu")]
        Bench::Gemm(args) => linalg_bench::run(linalg_bench::Op::Gemm, &args),
        #[cfg(feature = "wgpu")]
        Bench::Syrk(args) => linalg_bench::run(linalg_bench::Op::Syrk, &args),
        #[cfg(feature = "wgpu")]
        Bench::Cholesky(args) => linalg_bench::run(linalg_bench::Op::Cholesky, &args),
        #[cfg(feature = "wgpu")]
        Bench::Lu(args) => linalg_bench::run_lu(&args),
        #[cfg(feature = "wgpu")]
        Bench::Qr(args) => linalg_bench::run(linalg_bench::Op::Qr, &args),
        #[cfg(feature = "wgpu")]
        Bench::Stencil(args) => stencil_bench::run(&args),
        #[cfg(feature = "wgpu")]
        Bench::Map(args) => array_bench::map(&args),
        #[cfg(feature = "wgpu")]
        Bench::Reduce(args) => array_bench::reduce(&args),
        #[cfg(feature = "wgpu")]
        Bench::Ooc(args) => ooc_bench::run(&args),
        Bench::Sort(args) => sort_bench::run(&args),
    }
}

/// The files `dagger trace` writes, as (stem, extension); with several contexts, each gets
/// a `-N` suffix.
const TRACE_FILES: [(&str, &str); 4] = [
    ("trace", "json"),
    ("gantt", "svg"),
    ("graph", "dot"),
    ("summary", "txt"),
];

fn trace(
    out: &std::path::Path,
    force: bool,
    which: Traced,
) -> Result<(), Box<dyn std::error::Error>> {
    // Checked before the benchmark runs, not after.
    let dir = out_dir::OutDir::prepare(out, force, &TRACE_FILES)?;
    *TRACED.lock().expect("trace registry") = Some(Vec::new());
    match which {
        Traced::Bench { which } => run_bench(which)?,
    }
    let contexts = TRACED
        .lock()
        .expect("trace registry")
        .take()
        .unwrap_or_default();
    for (i, ctx) in contexts.iter().enumerate() {
        let events = ctx.fetch_logs();
        let procs = ctx.processors();
        let suffix = if contexts.len() > 1 {
            format!("-{i}")
        } else {
            String::new()
        };
        let file = |name: &str, ext: &str| format!("{name}{suffix}.{ext}");
        dir.write(
            &file("trace", "json"),
            dagger::viz::chrome_trace(&events, &procs),
        )?;
        // Named after the benchmark as it was asked for: "bench gemm --n 1024".
        let asked: Vec<String> = std::env::args().skip_while(|a| a != "bench").collect();
        let title = format!("dagger {} ({} events)", asked.join(" "), events.len());
        dir.write(
            &file("gantt", "svg"),
            dagger::viz::gantt_svg(&events, &procs, &title),
        )?;
        if events.len() <= 20_000 {
            dir.write(&file("graph", "dot"), dagger::viz::run_dot(&events, &procs))?;
        }
        let summary = dagger::viz::summarize(&events, &procs);
        dir.write(&file("summary", "txt"), summary.to_string())?;
        println!("{summary}");
        println!(
            "wrote trace{suffix}.json, gantt{suffix}.svg{}, summary{suffix}.txt into {}",
            if events.len() <= 20_000 {
                format!(", graph{suffix}.dot")
            } else {
                String::new()
            },
            out.display()
        );
    }
    Ok(())
}

/// How long (in milliseconds) the allocator keeps freed memory for reuse before handing it
/// back to the system, unless `MIMALLOC_PURGE_DELAY` says otherwise.
///
/// mimalloc's own default is one second. Memory it hands back is faulted in and zeroed by
/// the kernel again at its next use, and blocks of a few MiB are freed and made throughout
/// a factorization or a chain of maps: with a second, `dagger bench lu --n 4096 --block 512
/// --dtype f64 --repeat 2` took 2.6–3.6 s of CPU time and reached 72–104 GFLOP/s in four
/// runs here, and with ten seconds 2.1–2.7 s and 96–117 GFLOP/s in three. The out-of-core
/// benchmark sets it to zero.
const PURGE_DELAY_MS: std::ffi::c_long = 10_000;

/// Sets mimalloc's purge delay (milliseconds; 0 hands freed memory back at once).
pub(crate) fn set_purge_delay(ms: std::ffi::c_long) {
    extern "C" {
        fn mi_option_set(option: std::ffi::c_int, value: std::ffi::c_long);
    }
    /// `mi_option_purge_delay` in mimalloc's `mi_option_t` (v2 and v3).
    const PURGE_DELAY: std::ffi::c_int = 15;
    // SAFETY: sets an option of the global allocator, linked in through the mimalloc crate;
    // options may be set at any time.
    unsafe { mi_option_set(PURGE_DELAY, ms) };
}

/// `DAGGER_CPU_GEMM`, if set, names a GEMM kernel this build and CPU have. The library
/// passes over any other value; the tool says what is wrong with it instead.
fn check_gemm_kernel_var() -> Result<(), String> {
    let var = dagger_cpu::GEMM_KERNEL_VAR;
    let Some(value) = std::env::var_os(var) else {
        return Ok(());
    };
    let value = value.to_string_lossy();
    let kernel: dagger_cpu::GemmKernel = value.parse().map_err(|e| format!("{var}: {e}"))?;
    if !kernel.available() {
        let have: Vec<&str> = dagger_cpu::GemmKernel::ALL
            .into_iter()
            .filter(|k| k.available())
            .map(|k| k.name())
            .collect();
        return Err(format!(
            "{var}={value}: this build on this CPU has no {value} kernel ({} needs {}); use {}",
            value,
            match kernel {
                dagger_cpu::GemmKernel::OpenBlas => "the openblas cargo feature",
                _ => "AVX-512F",
            },
            have.join(" or ")
        ));
    }
    Ok(())
}

fn main() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        set_purge_delay(PURGE_DELAY_MS);
    }
    if let Err(e) = check_gemm_kernel_var() {
        eprintln!("error: {e}");
        std::process::exit(2);
    }
    let cli = Cli::parse();
    let result: Result<(), Box<dyn std::error::Error>> = match cli.command {
        Command::Info { json, threads } => info(json, threads),
        #[cfg(feature = "wgpu")]
        Command::Demo(args) => demo::run(&args),
        Command::Bench { which } => run_bench(which),
        Command::Trace { out, force, which } => trace(
            &out.unwrap_or_else(|| out_dir::new_temp_dir_path("trace")),
            force,
            which,
        ),
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
    let memory = ctx.memory_stats();
    if json {
        for p in &procs {
            #[cfg_attr(not(feature = "wgpu"), allow(unused_mut))]
            let mut v = serde_json::json!({
                "id": p.id.to_string(),
                "kind": p.kind.as_str(),
                "description": p.description,
                "parent": p.parent.map(|x| x.to_string()),
                "children": p.children.iter().map(|c| c.to_string()).collect::<Vec<_>>(),
                "memory_space": p.memory_space.to_string(),
                "default_enabled": p.default_enabled,
            });
            // Host memory and the CPU kernels belong to the process: on the process's entry.
            if p.kind == dagger::ProcessorKind::Os && p.id.process() == 1 {
                v["memory_limit_bytes"] = serde_json::json!(memory.limit_bytes);
                v["cpu_gemm_kernel"] = serde_json::json!(dagger_cpu::gemm_backend_name());
            }
            #[cfg(feature = "wgpu")]
            if let Some(g) = &p.gpu {
                v["gpu"] = serde_json::json!({
                    "index": g.index,
                    "adapter": g.name,
                    "backend": g.backend,
                    "device_type": g.device_type,
                    "software": g.is_software,
                    "shader_f64": g.shader_f64,
                    "shader_f16": g.shader_f16,
                    "max_storage_binding_size": g.max_storage_binding_size,
                    "max_buffer_size": g.max_buffer_size,
                    "memory_budget": g.memory_budget,
                });
            }
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
        #[cfg(feature = "wgpu")]
        for p in &procs {
            if let Some(g) = &p.gpu {
                println!(
                    "gpu {}: backend {}, adapter {:?}, type {}{}, f64 {}, f16 {}, max storage binding {} MiB, max buffer {} MiB, memory budget {}",
                    g.index,
                    g.backend,
                    g.name,
                    g.device_type,
                    if g.is_software { " (software; not in the default scope unless DAGGER_SOFTWARE_GPU=1)" } else { "" },
                    if g.shader_f64 { "yes" } else { "no" },
                    if g.shader_f16 { "yes" } else { "no" },
                    g.max_storage_binding_size >> 20,
                    g.max_buffer_size >> 20,
                    g.memory_budget.map_or_else(
                        || "none".to_string(),
                        |b| if b >= 1 << 20 {
                            format!("{} MiB", b >> 20)
                        } else {
                            format!("{} KiB", b >> 10)
                        }
                    )
                );
            }
        }
        match memory.limit_bytes {
            Some(l) => println!(
                "host memory: values beyond {:.2} GiB spill to disk ({}); set DAGGER_MEMORY_LIMIT (such as 4GiB or none) to change it",
                l as f64 / (1u64 << 30) as f64,
                if std::env::var_os("DAGGER_MEMORY_LIMIT").is_some() {
                    "from DAGGER_MEMORY_LIMIT"
                } else {
                    "the default: 60% of this machine's memory"
                }
            ),
            None => println!(
                "host memory: no limit (DAGGER_MEMORY_LIMIT=none); nothing spills to disk"
            ),
        }
        println!(
            "cpu kernels: gemm {} ({}; set {} to avx512, faer or openblas to choose), others {}",
            dagger_cpu::gemm_backend_name(),
            if std::env::var_os(dagger_cpu::GEMM_KERNEL_VAR).is_some() {
                format!("from {}", dagger_cpu::GEMM_KERNEL_VAR)
            } else {
                "chosen for this CPU".to_string()
            },
            dagger_cpu::GEMM_KERNEL_VAR,
            dagger_cpu::backend_name()
        );
    }
    for e in ctx.gpu_errors() {
        eprintln!("warning: a GPU adapter could not be opened: {e}");
    }
    Ok(())
}
