//! Host memory under a limit: values spill to disk and come back bit for bit, arrays larger
//! than the limit go through map, reduce and GEMM, and the spill directory goes with the
//! context.

mod common;

use std::path::PathBuf;
use std::sync::Arc;

use dagger::prelude::*;
use dagger::storage;
use dagger::EventKind;

fn host_ctx(limit: u64, dir: &std::path::Path) -> Context {
    Context::builder()
        .threads(2)
        .gpus(false)
        .memory_limit(limit)
        .spill_dir(dir)
        .build()
        .unwrap()
}

fn entries(dir: &std::path::Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .map(|d| d.map(|e| e.unwrap().path()).collect())
        .unwrap_or_default()
}

#[test]
fn spilled_values_come_back_bit_for_bit_and_the_directory_goes_with_the_context() {
    let dir = common::scratch("spill-test", "bits");
    let ctx = host_ctx(1 << 20, &dir);
    let mut rng = common::Rng::new(7);
    // Every bit pattern, NaN payloads and signed zeros included.
    let originals: Vec<Vec<f64>> = (0..6)
        .map(|_| {
            (0..40_000)
                .map(|_| f64::from_bits(rng.next()))
                .collect::<Vec<_>>()
        })
        .collect();
    let chunks: Vec<_> = originals.iter().map(|v| ctx.to_chunk(v.clone())).collect();
    let s = ctx.memory_stats();
    assert!(s.spills >= 3, "six 320 kB values through 1 MiB: {s:?}");
    assert!(s.resident_bytes <= 1 << 20, "{s:?}");
    let spill_dir = s.spill_dir.clone().expect("a spill directory");
    assert!(
        spill_dir.starts_with(&dir),
        "{spill_dir:?} is inside {dir:?}"
    );
    assert!(!entries(&spill_dir).is_empty());
    for (c, o) in chunks.iter().zip(&originals) {
        let back = c.collect_shared().unwrap();
        assert!(
            back.iter().zip(o).all(|(a, b)| a.to_bits() == b.to_bits()),
            "a value changed on its way through disk"
        );
    }
    let s = ctx.memory_stats();
    assert!(s.reloads >= 3, "{s:?}");
    assert!(s.bytes_read >= 3 * 320_000, "{s:?}");
    // Tasks take spilled values as inputs, read back transparently.
    let sums: Vec<_> = chunks
        .iter()
        .map(|c| {
            ctx.spawn(
                |v: Arc<Vec<f64>>| v.iter().map(|x| x.to_bits() as u128).sum::<u128>(),
                (c.shared(),),
            )
        })
        .collect();
    for (t, o) in sums.iter().zip(&originals) {
        assert_eq!(
            t.fetch().unwrap(),
            o.iter().map(|x| x.to_bits() as u128).sum::<u128>()
        );
    }
    drop((chunks, sums));
    // Files go with their values (the read-ahead thread may hold one for a moment)...
    let t0 = std::time::Instant::now();
    while !entries(&spill_dir).is_empty() && t0.elapsed().as_secs() < 5 {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert!(entries(&spill_dir).is_empty(), "{:?}", entries(&spill_dir));
    assert!(spill_dir.exists());
    // ...and the directory with the context.
    drop(ctx);
    assert!(!spill_dir.exists(), "{spill_dir:?} outlived its context");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn chunks_outliving_their_context_stay_readable_until_dropped() {
    let dir = common::scratch("spill-test", "outlive");
    let ctx = host_ctx(1 << 20, &dir);
    let a = ctx.to_chunk(vec![3u32; 200_000]);
    let b = ctx.to_chunk(vec![4u32; 200_000]);
    let spill_dir = ctx.memory_stats().spill_dir.expect("a spill");
    drop(ctx);
    assert!(spill_dir.exists(), "a chunk still needs it");
    assert_eq!(a.collect().unwrap(), vec![3u32; 200_000]);
    assert_eq!(b.collect().unwrap(), vec![4u32; 200_000]);
    drop((a, b));
    assert!(!spill_dir.exists());
    let _ = std::fs::remove_dir_all(&dir);
}

struct Opaque(Vec<u8>);

#[test]
fn values_that_cannot_spill_are_counted_and_kept() {
    storage::register_size::<Opaque>(|o| o.0.len() as u64);
    assert!(!storage::is_spillable::<Opaque>());
    let dir = common::scratch("spill-test", "opaque");
    let ctx = host_ctx(1 << 20, &dir);
    let o = ctx.to_chunk(Opaque(vec![9u8; 400_000]));
    let vs: Vec<_> = (0..4u8).map(|i| ctx.to_chunk(vec![i; 300_000])).collect();
    let s = ctx.memory_stats();
    assert_eq!(s.unspillable_values, 1, "{s:?}");
    assert_eq!(s.unspillable_bytes, 400_000, "{s:?}");
    assert!(s.spills >= 2, "the others made room around it: {s:?}");
    // It is still there, counted in what is resident.
    assert!(s.resident_bytes >= 400_000, "{s:?}");
    let len = ctx.spawn(
        |o: Arc<Opaque>| o.0.iter().map(|&b| b as u64).sum::<u64>(),
        (o.shared(),),
    );
    assert_eq!(len.fetch().unwrap(), 9 * 400_000);
    for (i, v) in vs.iter().enumerate() {
        assert_eq!(v.collect().unwrap(), vec![i as u8; 300_000]);
    }
    drop(o);
    assert_eq!(ctx.memory_stats().unspillable_values, 0);
    drop((vs, ctx));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn small_values_and_unregistered_types_are_not_managed() {
    let dir = common::scratch("spill-test", "small");
    let ctx = host_ctx(1 << 20, &dir);
    struct Unknown(#[allow(dead_code)] Vec<u8>);
    let _small: Vec<_> = (0..100)
        .map(|i| ctx.to_chunk(vec![i as u8; 1000]))
        .collect();
    let _big = ctx.to_chunk(Unknown(vec![0; 4 << 20]));
    let s = ctx.memory_stats();
    assert_eq!((s.resident_bytes, s.spills), (0, 0), "{s:?}");
    drop(ctx);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_spill_file_removed_behind_the_contexts_back_is_a_clear_error() {
    let dir = common::scratch("spill-test", "removed");
    let ctx = host_ctx(1 << 20, &dir);
    let a = ctx.to_chunk(vec![1.5f32; 200_000]);
    let _b = ctx.to_chunk(vec![2.5f32; 200_000]);
    let spill_dir = ctx.memory_stats().spill_dir.expect("a spilled");
    for f in entries(&spill_dir) {
        std::fs::remove_file(f).unwrap();
    }
    let t = ctx.spawn(|v: Arc<Vec<f32>>| v.len(), (a.shared(),));
    let err = t.fetch().unwrap_err();
    let text = common::chain(&err);
    assert!(
        text.contains("spilled") && text.contains(".spill"),
        "{text}"
    );
    // The context keeps working.
    let c = ctx.to_chunk(vec![7u8; 10]);
    assert_eq!(ctx.spawn(|v: Vec<u8>| v.len(), (&c,)).fetch().unwrap(), 10);
    drop((a, ctx));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn spills_and_reloads_are_in_the_event_log() {
    let dir = common::scratch("spill-test", "log");
    let ctx = host_ctx(1 << 20, &dir);
    ctx.enable_logging();
    let blocks: Vec<_> = (0..6u32)
        .map(|i| ctx.spawn(move || vec![i as f32; 100_000], ()))
        .collect();
    // Every block made (and the first ones spilled to make room) before any is read: a
    // value still being written out is read from memory, and spills through direct I/O
    // can take long enough on a busy disk for all reads to catch them so.
    for b in &blocks {
        b.wait();
    }
    let total: f32 = blocks
        .iter()
        .map(|b| b.fetch_shared().unwrap().iter().sum::<f32>())
        .sum();
    assert_eq!(total, 1_500_000.0);
    let log = ctx.fetch_logs();
    let spills: Vec<_> = log.iter().filter(|e| e.kind == EventKind::Spill).collect();
    let reloads: Vec<_> = log.iter().filter(|e| e.kind == EventKind::Reload).collect();
    assert!(!spills.is_empty() && !reloads.is_empty(), "{log:?}");
    assert!(spills
        .iter()
        .all(|e| e.bytes_moved >= 400_000 && e.name.contains("Vec<f32>")));
    assert!(reloads.iter().all(|e| e.bytes_moved >= 400_000));
    // The summary and the Gantt chart show the disk traffic.
    let summary = dagger::viz::summarize(&log, &ctx.processors());
    assert_eq!(summary.spills.0, spills.len());
    assert_eq!(summary.reloads.0, reloads.len());
    assert!(summary.to_string().contains("disk: "), "{summary}");
    let svg = dagger::viz::gantt_svg(&log, &ctx.processors(), "spills");
    assert!(svg.contains("spill of") && svg.contains("reload of"));
    drop((blocks, ctx));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_limit_can_be_read_from_the_environment_form() {
    assert_eq!(storage::parse_limit("1.5GiB"), Ok(Some(3 << 29)));
    assert_eq!(storage::parse_limit(" 64 MB "), Ok(Some(64_000_000)));
    assert_eq!(storage::parse_limit("OFF"), Ok(None));
    let e = storage::parse_limit("lots").unwrap_err();
    assert!(e.contains("4GiB"), "{e}");
    let e = storage::parse_limit("3 GIGS").unwrap_err();
    assert!(e.contains("unknown unit"), "{e}");
}

mod arrays {
    use super::*;
    use dagger::DArray;

    const N: usize = 1024;
    const B: usize = 64;
    /// 1024 × 1024 f64 is 8 MiB; blocks of 64 × 64 are 32 KiB; the limit is a quarter. A
    /// GEMM task takes a block-row of A and a block-column of B (32 blocks, 1 MiB): the
    /// limit holds one at a time.
    const LIMIT: u64 = (N * N * 8 / 4) as u64;
    const BLOCK: u64 = (B * B * 8) as u64;

    fn arrays(ctx: &Context) -> (DArray<f64>, DArray<f64>) {
        let a = DArray::<f64>::rand(ctx, [N, N], Blocks::new([B, B]), 1).unwrap();
        let b = DArray::<f64>::rand(ctx, [N, N], Blocks::new([B, B]), 2).unwrap();
        (a, b)
    }

    /// Compares `x` with `y` one block-row at a time, so neither is ever whole in memory.
    fn same(x: &DArray<f64>, y: &DArray<f64>, tol: f64) {
        for r in (0..N).step_by(B) {
            let xs = x.slice(&[r..r + B, 0..N]).unwrap().collect().unwrap();
            let ys = y.slice(&[r..r + B, 0..N]).unwrap().collect().unwrap();
            let d = (&xs - &ys).iter().fold(0.0f64, |m, v| m.max(v.abs()));
            assert!(d <= tol, "rows {r}..: differ by {d}");
        }
    }

    #[test]
    fn an_array_four_times_the_limit_maps_reduces_and_multiplies_as_in_memory() {
        let dir = common::scratch("spill-test", "darray");
        let small = host_ctx(LIMIT, &dir);
        let big = Context::builder()
            .threads(2)
            .gpus(false)
            .no_memory_limit()
            .build()
            .unwrap();
        let (a, b) = arrays(&small);
        let (ra, rb) = arrays(&big);
        let m = a.map(|x| x * 2.0 + 1.0);
        let rm = ra.map(|x| x * 2.0 + 1.0);
        m.wait().unwrap();
        assert_eq!(m.sum().fetch().unwrap(), rm.sum().fetch().unwrap());
        let c = a.matmul(&b).unwrap();
        let rc = ra.matmul(&rb).unwrap();
        c.wait().unwrap();
        same(&c, &rc, 1e-9);
        same(&m, &rm, 0.0);
        let s = small.memory_stats();
        assert!(s.spills > 0 && s.reloads > 0, "{s:?}");
        assert!(
            s.prefetches > 0,
            "ready tasks' inputs are read ahead: {s:?}"
        );
        assert!(s.bytes_written >= LIMIT, "{s:?}");
        // A running task's output is counted from before it runs: each of the two threads
        // may have one block in flight beyond the limit.
        assert!(
            s.peak_resident_bytes <= LIMIT + 2 * BLOCK,
            "peak {} over the limit {LIMIT} plus a block {BLOCK} per thread: {s:?}",
            s.peak_resident_bytes
        );
        assert_eq!(big.memory_stats().spills, 0);
        drop((a, b, m, c, small));
        let _ = std::fs::remove_dir_all(&dir);
    }
}

/// A context of one CPU thread under `limit`, spilling under `dir`.
fn one_thread_ctx(limit: u64, dir: &std::path::Path) -> Context {
    Context::builder()
        .threads(1)
        .gpus(false)
        .memory_limit(limit)
        .spill_dir(dir)
        .build()
        .unwrap()
}

/// 256 KiB of `f32`s, all `x`.
fn block(x: f32) -> Vec<f32> {
    vec![x; 64 << 10]
}

#[test]
fn values_that_ready_tasks_wait_for_are_spilled_last() {
    let dir = common::scratch("spill-test", "wanted");
    // One thread, room for four blocks.
    let ctx = one_thread_ctx(1 << 20, &dir);
    let a: Vec<_> = (0..4).map(|i| ctx.to_chunk(block(i as f32))).collect();
    assert_eq!(ctx.memory_stats().spills, 0);
    // The thread is busy: tasks taking the two oldest blocks are ready and waiting.
    let (open, gate) = std::sync::mpsc::channel::<()>();
    let busy = ctx.spawn(move || gate.recv().is_ok(), ());
    let firsts: Vec<_> = a[..2]
        .iter()
        .map(|c| ctx.spawn(|v: Arc<Vec<f32>>| v[0], (c.shared(),)))
        .collect();
    // A fifth block makes room: the least recently used block no task waits for goes.
    let b = ctx.to_chunk(block(9.0));
    let on_disk: Vec<bool> = a.iter().map(|c| c.is_on_disk()).collect();
    assert_eq!(
        on_disk,
        [false, false, true, false],
        "the oldest blocks, which ready tasks take next, were spilled first"
    );
    open.send(()).unwrap();
    assert!(busy.fetch().unwrap());
    for (i, t) in firsts.iter().enumerate() {
        assert_eq!(t.fetch().unwrap(), i as f32);
    }
    assert_eq!(b.collect().unwrap(), block(9.0));
    drop((a, b, firsts, busy, ctx));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn room_for_a_task_output_is_made_before_the_task_runs() {
    let dir = common::scratch("spill-test", "output-room");
    let ctx = one_thread_ctx(1 << 20, &dir);
    // The limit is full.
    let a: Vec<_> = (0..4).map(|i| ctx.to_chunk(block(i as f32))).collect();
    assert_eq!(ctx.memory_stats().spills, 0);
    // A task making a block as large as its input: while it runs, one block is on disk
    // already, so its output never takes host memory past the limit.
    let inner = ctx.clone();
    let doubled = ctx.spawn(
        move |v: Arc<Vec<f32>>| {
            let s = inner.memory_stats();
            assert!(s.spills >= 1, "no room was made for the output: {s:?}");
            assert!(s.resident_bytes <= 1 << 20, "{s:?}");
            v.iter().map(|x| 2.0 * x).collect::<Vec<f32>>()
        },
        (a[3].shared(),),
    );
    assert_eq!(doubled.fetch().unwrap(), block(6.0));
    let s = ctx.memory_stats();
    assert!(s.peak_resident_bytes <= 1 << 20, "{s:?}");
    drop((a, doubled, ctx));
    let _ = std::fs::remove_dir_all(&dir);
}
