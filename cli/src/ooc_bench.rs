//! `dagger bench ooc`: a map then a sum over an f32 array several times the memory limit,
//! spilling to disk, beside a plain sequential write and read of the same bytes on the
//! same disk and numpy's memmap doing the same map and sum (`benches/peers/ooc.py`), all
//! in one run.
//!
//! The plain write and read goes through the same kind of I/O as dagger's spill files:
//! direct I/O (past the page cache) where the file system allows it. It runs once before
//! dagger and once after, and the faster of the two is the baseline: what the kernel has
//! just freed (the pages of deleted files, say) makes whichever runs second cheaper. A
//! plain write and read through the page cache is reported beside it: with the file
//! smaller than free memory it measures the page cache more than the disk.

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
    return_freed_memory_at_once();
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
    let plain = work.0.join("plain");
    let direct = direct_io_wanted() && direct_io_works(&work.0);
    let disk_before = plain_write_read(&plain, array_bytes, block as usize, direct)?;

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
    let spill_direct = after.spill_direct_io;
    drop((x, ctx));

    // The same bytes written and read back sequentially, in blocks of the same size, the
    // way dagger's spills went (direct I/O or not); then through the page cache.
    let disk_after = plain_write_read(&plain, array_bytes, block as usize, spill_direct)?;
    let disk_secs = if spill_direct == direct {
        disk_before.min(disk_after)
    } else {
        disk_after
    };
    let buffered_secs = if spill_direct {
        plain_write_read(&plain, array_bytes, block as usize, false)?
    } else {
        disk_secs
    };

    // The memmap peer runs once, after dagger, rather than alternating with it as the
    // other benchmarks' peers do: dagger itself runs once here (there is no --repeat), one
    // peer run writes and reads the whole array on disk (4 GiB by default: tens of seconds
    // or more), and its time depends on what the run before it left behind (dirty pages
    // still being written back, page cache freed by deleted files). The plain write and
    // read before and after dagger is what brackets dagger's run against the disk's drift.
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
    let buffered_gbps = array_bytes as f64 / buffered_secs / 1e9;
    let spill_io = if spill_direct { "direct" } else { "buffered" };
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
                "spill_io": spill_io,
                "disk_gbps": disk_gbps,
                "disk_gbps_before": (spill_direct == direct).then(|| array_bytes as f64 / disk_before / 1e9),
                "disk_gbps_after": array_bytes as f64 / disk_after / 1e9,
                "ratio_disk": gbps / disk_gbps,
                "disk_buffered_gbps": buffered_gbps,
                "ratio_disk_buffered": gbps / buffered_gbps,
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
            format!("plain write + read ({spill_io})"),
            disk_secs,
            disk_gbps
        );
        if spill_direct {
            println!(
                "{:<34} {:>8.2} {:>8.2}",
                "plain write + read (page cache)", buffered_secs, buffered_gbps
            );
        }
        if let (Some(s), Some(g)) = (memmap_secs, memmap_gbps) {
            println!("{:<34} {:>8.2} {:>8.2}", "numpy memmap (chunked)", s, g);
        }
        println!(
            "ratio to the disk: {:.2} (spills through {spill_io} I/O){}",
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

/// Tells the allocator to hand freed memory back to the system at once rather than after
/// the tool's delay. Under a memory limit blocks churn — each read back or made while
/// another is spilled and freed — and memory kept after each free holds several blocks
/// beyond the limit (peak RSS 1.26x the limit with a delay of one second, against 1.09x).
fn return_freed_memory_at_once() {
    crate::set_purge_delay(0);
}

/// Whether `DAGGER_SPILL_DIRECT` leaves direct I/O on (as the context reads it).
fn direct_io_wanted() -> bool {
    !std::env::var("DAGGER_SPILL_DIRECT").is_ok_and(|v| {
        matches!(
            v.trim().to_ascii_lowercase().as_str(),
            "0" | "off" | "false" | "no"
        )
    })
}

/// Whether the file system of `dir` takes direct I/O (a probe file is made and removed).
fn direct_io_works(dir: &Path) -> bool {
    let path = dir.join("probe");
    let Ok(f) = std::fs::File::options()
        .write(true)
        .create_new(true)
        .open(&path)
    else {
        return false;
    };
    let ok = set_direct(&f).is_ok();
    drop(f);
    let _ = std::fs::remove_file(&path);
    ok
}

#[cfg(target_os = "linux")]
fn set_direct(f: &std::fs::File) -> std::io::Result<()> {
    use std::os::unix::io::AsRawFd;
    let fd = f.as_raw_fd();
    // SAFETY: fcntl on a descriptor `f` owns, with the flags read from it just before.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        if flags < 0 || libc::fcntl(fd, libc::F_SETFL, flags | libc::O_DIRECT) < 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

#[cfg(not(target_os = "linux"))]
fn set_direct(_: &std::fs::File) -> std::io::Result<()> {
    Err(std::io::ErrorKind::Unsupported.into())
}

/// Seconds to write `bytes` to a new file at `path` in writes of `chunk` bytes, then read
/// it back, with direct I/O (from a buffer aligned to 4 KiB; the last write padded and the
/// file cut back) or through the page cache; the file is removed.
fn plain_write_read(path: &Path, bytes: u64, chunk: usize, direct: bool) -> Result<f64, String> {
    const ALIGN: usize = 4096;
    let chunk = chunk.div_ceil(ALIGN) * ALIGN;
    let mut raw = PageBuf::new(chunk)?;
    let buf = raw.bytes();
    for (i, b) in buf.iter_mut().enumerate() {
        *b = (i * 31 % 251) as u8;
    }
    let t = Instant::now();
    let mut f = std::fs::File::options()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
    if direct {
        set_direct(&f).map_err(|e| format!("direct I/O on {}: {e}", path.display()))?;
    }
    let mut left = bytes;
    while left > 0 {
        let k = left.min(chunk as u64) as usize;
        let k = if direct { k.div_ceil(ALIGN) * ALIGN } else { k };
        f.write_all(&buf[..k])
            .map_err(|e| format!("writing {}: {e}", path.display()))?;
        left = left.saturating_sub(k as u64);
    }
    f.set_len(bytes).map_err(|e| e.to_string())?;
    f.flush().map_err(|e| e.to_string())?;
    drop(f);
    let mut f = std::fs::File::open(path).map_err(|e| e.to_string())?;
    if direct {
        set_direct(&f).map_err(|e| format!("direct I/O on {}: {e}", path.display()))?;
    }
    let mut total = 0u64;
    loop {
        let k = f.read(buf).map_err(|e| e.to_string())?;
        if k == 0 {
            break;
        }
        total += k as u64;
    }
    let secs = t.elapsed().as_secs_f64();
    drop(f);
    let _ = std::fs::remove_file(path);
    if total != bytes {
        return Err(format!("read back {total} bytes of {bytes}"));
    }
    Ok(secs)
}

/// Page-aligned memory mapped for the plain write and read, and unmapped after: handed
/// back to the system at once, not kept by the allocator beside dagger's blocks.
#[cfg(unix)]
struct PageBuf {
    ptr: *mut u8,
    len: usize,
}

#[cfg(unix)]
impl PageBuf {
    fn new(len: usize) -> Result<PageBuf, String> {
        // SAFETY: a private anonymous mapping at an address the kernel picks; checked below.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(format!(
                "cannot map {len} bytes: {}",
                std::io::Error::last_os_error()
            ));
        }
        Ok(PageBuf { ptr: p.cast(), len })
    }

    fn bytes(&mut self) -> &mut [u8] {
        // SAFETY: the mapping is `len` bytes, readable and writable (zeroed by the kernel),
        // owned by `self` and borrowed mutably for the slice's life.
        unsafe { std::slice::from_raw_parts_mut(self.ptr, self.len) }
    }
}

#[cfg(unix)]
impl Drop for PageBuf {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `new`, unmapped once.
        unsafe { libc::munmap(self.ptr.cast(), self.len) };
    }
}

#[cfg(not(unix))]
struct PageBuf(Vec<u8>);

#[cfg(not(unix))]
impl PageBuf {
    fn new(len: usize) -> Result<PageBuf, String> {
        Ok(PageBuf(vec![0u8; len + 4096]))
    }

    fn bytes(&mut self) -> &mut [u8] {
        let at = self.0.as_ptr().align_offset(4096);
        let len = self.0.len() - 4096;
        &mut self.0[at..at + len]
    }
}
