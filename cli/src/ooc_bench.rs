//! `dagger bench ooc`: a map then a sum over an f32 array several times the memory limit,
//! spilling to disk, beside a plain sequential write and read of the same bytes on the
//! same disk and numpy's memmap doing the same map and sum (`benches/peers/ooc.py`), all
//! in one run.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use dagger::prelude::*;
use dagger::storage::parse_limit;

/// The peer script, embedded so the command works from any directory.
const PEER: &str = include_str!("../../benches/peers/ooc.py");

#[derive(clap::Args)]
pub(crate) struct Args {
    /// Size of the array (f32), such as 4GiB.
    #[arg(long, default_value = "4GiB")]
    bytes: String,
    /// The context's memory limit (default: a quarter of --bytes).
    #[arg(long)]
    limit: Option<String>,
    /// Block size.
    #[arg(long, default_value = "64MiB")]
    block: String,
    /// Where the spill files, the plain file and numpy's memmaps go: a new directory is
    /// made inside it and removed at the end (default: the system's temporary directory).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// CPU worker threads (default: one per core).
    #[arg(long)]
    threads: Option<usize>,
    /// Skip numpy's memmap.
    #[arg(long)]
    no_peers: bool,
    #[command(flatten)]
    python: super::python::PythonArgs,
    /// One JSON object.
    #[arg(long)]
    json: bool,
}

fn size(s: &str, what: &str) -> Result<u64, String> {
    match parse_limit(s) {
        Ok(Some(n)) if n > 0 => Ok(n),
        Ok(_) => Err(format!("--{what} must be a size above zero, such as 1GiB")),
        Err(e) => Err(format!("--{what}: {e}")),
    }
}

/// A new private directory inside `parent`, removed when dropped.
struct WorkDir(PathBuf);

impl WorkDir {
    fn new(parent: &Path) -> Result<WorkDir, String> {
        let mut b = std::fs::DirBuilder::new();
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut b, 0o700);
        for i in 0..1000 {
            let p = parent.join(format!("dagger-bench-ooc-{}-{i}", std::process::id()));
            match b.create(&p) {
                Ok(()) => return Ok(WorkDir(p)),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(format!("cannot create {}: {e}", p.display())),
            }
        }
        Err(format!("no free directory name in {}", parent.display()))
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub(crate) fn run(args: &Args) -> Result<(), Box<dyn std::error::Error>> {
    let bytes = size(&args.bytes, "bytes")?;
    let limit = match &args.limit {
        Some(l) => size(l, "limit")?,
        None => bytes / 4,
    };
    let block = size(&args.block, "block")?;
    let n = (bytes / 4) as usize;
    let block_elems = ((block / 4) as usize).clamp(1, n.max(1));
    let array_bytes = (n * 4) as u64;
    let parent = args.dir.clone().unwrap_or_else(std::env::temp_dir);
    let work = WorkDir::new(&parent)?;

    // dagger: the array is made (and mostly spilled) first, untimed; then map and sum.
    let mut b = Context::builder()
        .gpus(false)
        .memory_limit(limit)
        .spill_dir(&work.0);
    if let Some(t) = args.threads {
        b = b.threads(t);
    }
    let ctx = b.build()?;
    let x = DArray::<f32>::rand(&ctx, [n], Blocks::new([block_elems]), 7)?;
    x.wait()?;
    let before = ctx.memory_stats();
    let t = Instant::now();
    let y = x.map(|v| v * 2.0 + 1.0);
    let sum = y.sum().fetch()? as f64;
    let secs = t.elapsed().as_secs_f64();
    let after = ctx.memory_stats();
    drop(y);
    let sx = x.sum().fetch()? as f64;
    let want = 2.0 * sx + n as f64;
    if ((sum - want) / want).abs() > 1e-3 {
        return Err(format!("the sum is {sum}, not about {want}").into());
    }
    let peak_rss =
        super::array_bench::status_bytes("VmHWM").ok_or("/proc/self/status has no VmHWM")?;
    let io_bytes =
        (after.bytes_written - before.bytes_written) + (after.bytes_read - before.bytes_read);
    let threads = ctx.num_threads();
    drop((x, ctx));

    // The same bytes written and read back sequentially, in blocks of the same size.
    let disk_secs = plain_write_read(&work.0.join("plain"), array_bytes, block as usize)?;

    let memmap_secs = if args.no_peers {
        None
    } else {
        let python = args.python.interpreter()?;
        let out = super::python::run(
            &python,
            PEER,
            &[
                "--dir".into(),
                work.0.display().to_string(),
                "--n".into(),
                n.to_string(),
                "--chunk".into(),
                block_elems.to_string(),
            ],
        )?;
        let v: serde_json::Value = serde_json::from_str(out.trim())
            .map_err(|e| format!("the memmap peer printed {out:?}: {e}"))?;
        Some(
            v["secs"]
                .as_f64()
                .ok_or("the memmap peer printed no `secs`")?,
        )
    };

    let gbps = array_bytes as f64 / secs / 1e9;
    let disk_gbps = array_bytes as f64 / disk_secs / 1e9;
    let memmap_gbps = memmap_secs.map(|s| array_bytes as f64 / s / 1e9);
    if args.json {
        println!(
            "{}",
            serde_json::json!({
                "bench": "ooc",
                "array_bytes": array_bytes,
                "block_bytes": block_elems * 4,
                "limit_bytes": limit,
                "threads": threads,
                "secs": secs,
                "gbps": gbps,
                "disk_gbps": disk_gbps,
                "ratio_disk": gbps / disk_gbps,
                "memmap_gbps": memmap_gbps,
                "ratio_memmap": memmap_gbps.map(|m| gbps / m),
                "spill_io_bytes": io_bytes,
                "spills": after.spills - before.spills,
                "reloads": after.reloads - before.reloads,
                "prefetches": after.prefetches - before.prefetches,
                "peak_resident_bytes": after.peak_resident_bytes,
                "peak_rss_bytes": peak_rss,
                "rss_over_limit": peak_rss as f64 / limit as f64,
            })
        );
    } else {
        let gib = |b: u64| b as f64 / (1u64 << 30) as f64;
        println!(
            "map (2x + 1) then sum over {:.2} GiB of f32 through a {:.2} GiB limit, blocks of {} MiB, {threads} threads",
            gib(array_bytes),
            gib(limit),
            (block_elems * 4) >> 20
        );
        println!("{:<34} {:>8} {:>8}", "", "s", "GB/s");
        println!("{:<34} {:>8.2} {:>8.2}", "dagger (spilling)", secs, gbps);
        println!(
            "{:<34} {:>8.2} {:>8.2}",
            "plain write + read of the bytes", disk_secs, disk_gbps
        );
        if let (Some(s), Some(g)) = (memmap_secs, memmap_gbps) {
            println!("{:<34} {:>8.2} {:>8.2}", "numpy memmap (chunked)", s, g);
        }
        println!(
            "ratio to the disk: {:.2}{}",
            gbps / disk_gbps,
            memmap_gbps.map_or(String::new(), |m| format!(", to memmap: {:.2}", gbps / m))
        );
        println!(
            "spilled and read back {:.2} GiB ({} spills, {} reloads, {} read ahead); peak managed {:.2} GiB, peak RSS {:.2} GiB = {:.2}x the limit",
            gib(io_bytes),
            after.spills - before.spills,
            after.reloads - before.reloads,
            after.prefetches - before.prefetches,
            gib(after.peak_resident_bytes),
            gib(peak_rss),
            peak_rss as f64 / limit as f64
        );
    }
    Ok(())
}

/// Seconds to write `bytes` to a new file at `path` in writes of `chunk` bytes, then read
/// it back; the file is removed.
fn plain_write_read(path: &Path, bytes: u64, chunk: usize) -> Result<f64, String> {
    let buf: Vec<u8> = (0..chunk).map(|i| (i * 31 % 251) as u8).collect();
    let t = Instant::now();
    let mut f = std::fs::File::options()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
    let mut left = bytes;
    while left > 0 {
        let k = left.min(chunk as u64) as usize;
        f.write_all(&buf[..k])
            .map_err(|e| format!("writing {}: {e}", path.display()))?;
        left -= k as u64;
    }
    f.flush().map_err(|e| e.to_string())?;
    drop(f);
    let mut f = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let mut back = vec![0u8; chunk];
    let mut total = 0u64;
    loop {
        let k = f.read(&mut back).map_err(|e| e.to_string())?;
        if k == 0 {
            break;
        }
        total += k as u64;
    }
    let secs = t.elapsed().as_secs_f64();
    let _ = std::fs::remove_file(path);
    if total != bytes {
        return Err(format!("read back {total} bytes of {bytes}"));
    }
    Ok(secs)
}
