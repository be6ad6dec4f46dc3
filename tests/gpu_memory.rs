//! GPU memory budgets: work whose blocks exceed a device's budget still runs, evicting the
//! least recently used buffers to host memory and uploading them again, with results read
//! back bit for bit; a task that cannot fit fails with a typed error and the context
//! carries on. Values evicted from a device go to the host store, under its memory limit
//! and on to disk, and every eviction is in the event log.

#![cfg(feature = "wgpu")]

mod common;

use dagger::prelude::*;
use dagger::{EventKind, GpuMemoryError, GpuMemoryStats};

const BLOCK: usize = 128;
/// Bytes of one 128x128 f32 block.
const BLOCK_BYTES: u64 = (BLOCK * BLOCK * 4) as u64;

fn ctx_with_budget(budget: Option<u64>) -> Context {
    let b = Context::builder().threads(2).no_memory_limit();
    match budget {
        Some(bytes) => b.gpu_memory_budget_for(0, bytes),
        None => b.no_gpu_memory_budget(),
    }
    .build()
    .unwrap()
}

fn stats(ctx: &Context) -> GpuMemoryStats {
    ctx.gpu_memory_stats(0).expect("gpu 0 has memory stats")
}

/// The `GpuMemoryError` a task failed with, somewhere in `e`'s chain of sources.
fn budget_error<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a GpuMemoryError> {
    let mut cur = Some(e);
    while let Some(x) = cur {
        if let Some(g) = x.downcast_ref::<GpuMemoryError>() {
            return Some(g);
        }
        if let Some(dagger::TaskError::Failed { cause, .. }) = x.downcast_ref::<dagger::TaskError>()
        {
            if let Some(g) = cause.downcast_ref::<GpuMemoryError>() {
                return Some(g);
            }
        }
        cur = x.source();
    }
    None
}

fn gemm_on(ctx: &Context, scope: Scope, n: usize) -> ndarray::Array2<f32> {
    let a = DArray::<f32>::randn(ctx, [n, n], Blocks::new([BLOCK, BLOCK]), 11).unwrap();
    let b = DArray::<f32>::randn(ctx, [n, n], Blocks::new([BLOCK, BLOCK]), 12).unwrap();
    let c = with_options(Options::new().scope(scope), || a.matmul(&b)).unwrap();
    c.collect2().unwrap()
}

#[test]
fn a_gemm_whose_blocks_exceed_the_budget_runs_and_matches() {
    let probe = ctx_with_budget(None);
    if common::gpus_or_skip(&probe, "a GEMM under a GPU memory budget").is_empty() {
        return;
    }
    // 512x512 in 128x128 blocks: 16 blocks per operand, 48 in all (3 MiB). A tile task
    // takes a row of A and a column of B (4 + 4 blocks) and makes one block of C: 9 blocks.
    let n = 4 * BLOCK;
    let budget = 10 * BLOCK_BYTES;
    let (cpu, unbudgeted, budgeted, s) = common::within(300, "the budgeted GEMM", move || {
        let cpu = gemm_on(&probe, Scope::cpu(), n);
        let unbudgeted = gemm_on(&probe, Scope::gpu(0), n);
        let ctx = ctx_with_budget(Some(budget));
        let budgeted = gemm_on(&ctx, Scope::gpu(0), n);
        (cpu, unbudgeted, budgeted, stats(&ctx))
    });
    assert_eq!(s.budget_bytes, Some(budget));
    assert!(s.evictions > 0, "nothing was evicted: {s:?}");
    assert!(
        s.downloads > 0,
        "results left on the device were never moved to host memory: {s:?}"
    );
    // Admission reserves a task's inputs and output before its kernel is enqueued, and
    // GEMM declares its output size, so the budget is never exceeded.
    assert!(
        s.peak_resident_bytes <= budget,
        "peak {} above the budget {budget}: {s:?}",
        s.peak_resident_bytes
    );
    // Same kernels on the same device: eviction changes no bit.
    assert!(
        budgeted
            .iter()
            .zip(&unbudgeted)
            .all(|(x, y)| x.to_bits() == y.to_bits()),
        "the budgeted GEMM differs from the unbudgeted one"
    );
    let err = budgeted
        .iter()
        .zip(&cpu)
        .map(|(x, y)| ((x - y) as f64).powi(2))
        .sum::<f64>()
        .sqrt()
        / cpu.iter().map(|y| (*y as f64).powi(2)).sum::<f64>().sqrt();
    assert!(err < 1e-5, "relative error {err} against the CPU");
    eprintln!("512x512 GEMM in 128-blocks under a 640 KiB budget: {s:?}");
}

#[test]
fn values_evicted_from_the_gpu_count_against_the_host_limit_spill_and_are_logged() {
    let probe = ctx_with_budget(None);
    if common::gpus_or_skip(&probe, "GPU evictions through the host store").is_empty() {
        return;
    }
    let n = 4 * BLOCK;
    let budget = 10 * BLOCK_BYTES;
    // Room for four blocks in host memory: the operands (32 blocks) and the results that
    // leave the device (up to 16) go to disk.
    let host_limit = 4 * BLOCK_BYTES;
    let scratch = common::scratch("gpu-memory", "evict-spill");
    let spill_dir = scratch.clone();
    let out = common::within(300, "the GEMM under GPU and host limits", move || {
        let reference = gemm_on(&probe, Scope::gpu(0), n);
        let ctx = Context::builder()
            .threads(2)
            .memory_limit(host_limit)
            .spill_dir(&spill_dir)
            .gpu_memory_budget_for(0, budget)
            .build()
            .unwrap();
        ctx.enable_logging();
        let a = DArray::<f32>::randn(&ctx, [n, n], Blocks::new([BLOCK, BLOCK]), 11).unwrap();
        let b = DArray::<f32>::randn(&ctx, [n, n], Blocks::new([BLOCK, BLOCK]), 12).unwrap();
        let c = with_options(Options::new().scope(Scope::gpu(0)), || a.matmul(&b)).unwrap();
        c.wait().unwrap();
        let gpu = stats(&ctx);
        let log = ctx.fetch_logs();
        // With the operands gone, the host store holds only the results' host copies: the
        // ones evicted from the device.
        drop((a, b));
        let host = ctx.memory_stats();
        let got = c.collect2().unwrap();
        (reference, got, gpu, host, log, ctx)
    });
    let (reference, got, gpu, host, log, ctx) = out;
    assert!(
        got.iter()
            .zip(&reference)
            .all(|(x, y)| x.to_bits() == y.to_bits()),
        "the GEMM under both limits differs from the unlimited one"
    );
    assert!(gpu.downloads > 0, "no result left the device: {gpu:?}");
    assert!(gpu.peak_resident_bytes <= budget, "{gpu:?}");
    // Each evicted result is a value of the host store: in memory or on disk.
    assert_eq!(
        host.resident_bytes + host.spilled_bytes,
        gpu.bytes_downloaded,
        "the host store does not hold what the device evicted: host {host:?}, gpu {gpu:?}"
    );
    assert!(
        host.spilled_bytes > 0 && host.resident_bytes <= host_limit,
        "evicted results over the host limit were not spilled: host {host:?}, gpu {gpu:?}"
    );
    assert!(host.spills > 0 && host.bytes_written > 0, "{host:?}");
    // Every eviction is in the log, on the GPU's lane, with the bytes it moved to host.
    let gpu_proc = ctx
        .processors()
        .into_iter()
        .find(|p| p.gpu.as_ref().is_some_and(|g| g.index == 0))
        .expect("gpu 0 is a processor")
        .id;
    let evictions: Vec<_> = log
        .iter()
        .filter(|e| e.kind == EventKind::GpuEvict)
        .collect();
    assert_eq!(evictions.len() as u64, gpu.evictions, "{gpu:?}");
    assert!(evictions.iter().all(|e| e.processor == gpu_proc));
    assert!(evictions.iter().all(|e| e.end_ns >= e.start_ns));
    let moved: Vec<_> = evictions.iter().filter(|e| e.bytes_moved > 0).collect();
    assert_eq!(moved.len() as u64, gpu.downloads, "{gpu:?}");
    assert!(moved.iter().all(|e| e.bytes_moved == BLOCK_BYTES));
    assert!(moved
        .iter()
        .all(|e| &*e.name == std::any::type_name::<Vec<f32>>()));
    assert_eq!(
        moved.iter().map(|e| e.bytes_moved).sum::<u64>(),
        gpu.bytes_downloaded
    );
    // Shown in the summary and the chart.
    let summary = dagger::viz::summarize(&log, &ctx.processors());
    assert_eq!(
        summary.gpu_evictions,
        (evictions.len(), gpu.bytes_downloaded)
    );
    assert!(summary.to_string().contains("gpu memory:"), "{summary}");
    let svg = dagger::viz::gantt_svg(&log, &ctx.processors(), "evictions");
    assert!(
        svg.contains("GPU eviction of 64.0 KiB"),
        "no eviction in the chart"
    );
    drop(ctx);
    let _ = std::fs::remove_dir_all(&scratch);
}

#[test]
fn results_evicted_to_host_read_back_bit_for_bit_and_upload_again() {
    let ctx = ctx_with_budget(Some(4 * BLOCK_BYTES));
    if common::gpus_or_skip(&ctx, "eviction of device results").is_empty() {
        return;
    }
    let inc = common::increment("budget_increment", false);
    let s = common::within(300, "evicting device results", move || {
        let gpu = Options::new().scope(Scope::gpu(0));
        // Values with every kind of bit pattern (subnormals, large, negative).
        let xs: Vec<Vec<f32>> = (0..12u32)
            .map(|i| {
                (0..BLOCK * BLOCK)
                    .map(|j| f32::from_bits((j as u32).wrapping_mul(2_654_435_761) ^ i) % 1e6)
                    .map(|v| if v.is_finite() { v } else { i as f32 })
                    .collect()
            })
            .collect();
        let chunks: Vec<_> = xs.iter().map(|x| ctx.to_chunk(x.clone())).collect();
        // Twelve results left on the device, three times what the budget holds.
        let ys: Vec<_> = chunks
            .iter()
            .map(|c| {
                with_options(gpu.clone(), || {
                    ctx.spawn_kernel(&inc, (), [c.into()]).unwrap()
                })
            })
            .collect();
        for y in &ys {
            y.wait();
        }
        let mid = stats(&ctx);
        assert!(mid.downloads > 0, "results were not moved to host: {mid:?}");
        // Each again on the device: the evicted ones are uploaded again.
        let zs: Vec<_> = ys
            .iter()
            .map(|y| {
                with_options(gpu.clone(), || {
                    ctx.spawn_kernel(&inc, (), [y.into()]).unwrap()
                })
            })
            .collect();
        for ((x, y), z) in xs.iter().zip(&ys).zip(&zs) {
            let (y, z) = (y.fetch().unwrap(), z.fetch().unwrap());
            for ((x, y), z) in x.iter().zip(&y).zip(&z) {
                assert_eq!(y.to_bits(), (x + 1.0).to_bits());
                assert_eq!(z.to_bits(), (x + 1.0 + 1.0).to_bits());
            }
        }
        stats(&ctx)
    });
    assert!(
        s.reloads > 0,
        "no evicted result went back to the device: {s:?}"
    );
    assert!(s.bytes_downloaded >= s.downloads * BLOCK_BYTES, "{s:?}");
    assert!(s.peak_resident_bytes <= 4 * BLOCK_BYTES, "{s:?}");
}

#[test]
fn a_task_larger_than_the_budget_fails_clearly_and_the_context_carries_on() {
    // Two blocks of room; a GEMM tile over 2x2 blocks needs five.
    let ctx = ctx_with_budget(Some(2 * BLOCK_BYTES));
    if common::gpus_or_skip(&ctx, "a task larger than the GPU budget").is_empty() {
        return;
    }
    common::within(120, "the oversized task", move || {
        let n = 2 * BLOCK;
        let a = DArray::<f32>::ones(&ctx, [n, n], Blocks::new([BLOCK, BLOCK])).unwrap();
        let b = DArray::<f32>::ones(&ctx, [n, n], Blocks::new([BLOCK, BLOCK])).unwrap();
        let c = with_options(Options::new().scope(Scope::gpu(0)), || a.matmul(&b)).unwrap();
        let e = c.collect2().unwrap_err();
        let g = budget_error(&e).unwrap_or_else(|| {
            panic!("no GpuMemoryError in: {}", common::chain(&e));
        });
        match g {
            GpuMemoryError::TaskTooLarge {
                device,
                budget,
                needed,
            } => {
                assert_eq!(*device, 0);
                assert_eq!(*budget, 2 * BLOCK_BYTES);
                assert_eq!(*needed, 5 * BLOCK_BYTES);
            }
            other => panic!("expected TaskTooLarge, got {other:?}"),
        }
        let text = common::chain(&e);
        assert!(
            text.contains("more than the device's memory budget of 128.0 KiB"),
            "{text}"
        );
        assert!(stats(&ctx).rejected > 0);
        // The context keeps working, on the GPU and on the CPU.
        let inc = common::increment("budget_after_rejection", false);
        let x = ctx.to_chunk(vec![1.0f32; 1000]);
        let y = with_options(Options::new().scope(Scope::gpu(0)), || {
            ctx.spawn_kernel(&inc, (), [(&x).into()]).unwrap()
        });
        assert_eq!(y.fetch().unwrap(), vec![2.0f32; 1000]);
        assert_eq!(ctx.spawn(|| 6 * 7, ()).fetch().unwrap(), 42);
        let s = stats(&ctx);
        assert!(s.peak_resident_bytes <= 2 * BLOCK_BYTES, "{s:?}");
    });
}

#[test]
fn budgets_come_from_the_builder_and_default_to_the_largest_buffer() {
    let ctx = Context::builder()
        .threads(1)
        .gpu_memory_budget(3 << 20)
        .gpu_memory_budget_for(0, 5 << 20)
        .build()
        .unwrap();
    let gpus = common::gpus_or_skip(&ctx, "GPU memory budgets");
    for g in &gpus {
        let want = if g.index == 0 { 5 << 20 } else { 3 << 20 };
        assert_eq!(g.memory_budget, Some(want), "{g:?}");
        assert_eq!(stats_of(&ctx, g.index).budget_bytes, Some(want));
    }
    if std::env::var_os("DAGGER_GPU_MEMORY_BUDGET").is_none() {
        let ctx = Context::builder().threads(1).build().unwrap();
        for g in common::gpus_or_skip(&ctx, "default GPU memory budgets") {
            assert_eq!(g.memory_budget, Some(g.max_buffer_size), "{g:?}");
        }
    }
    assert!(ctx.gpu_memory_stats(gpus.len()).is_none());
}

fn stats_of(ctx: &Context, i: usize) -> GpuMemoryStats {
    ctx.gpu_memory_stats(i).unwrap()
}
