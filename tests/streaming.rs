//! Streaming: stages that run again and again through bounded buffers.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::within;
use dagger::prelude::*;
use dagger::{task_processor, Access, EventKind, ProcessorKind, WgslKernel};

fn ctx(threads: usize) -> Context {
    Context::builder()
        .threads(threads)
        .gpus(false)
        .build()
        .unwrap()
}

/// An item that counts how many of its kind are alive.
struct Item {
    v: u64,
    live: Arc<AtomicUsize>,
}

impl Item {
    fn new(v: u64, live: &Arc<AtomicUsize>, peak: &AtomicUsize) -> Item {
        let n = live.fetch_add(1, Ordering::SeqCst) + 1;
        peak.fetch_max(n, Ordering::SeqCst);
        Item {
            v,
            live: live.clone(),
        }
    }
}

impl Drop for Item {
    fn drop(&mut self) {
        self.live.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Runs source → slow middle → sink over `n` items with buffers of `buffer`; returns the
/// sum, the most items alive at once, and the time taken.
fn pipeline(ctx: &Context, n: u64, buffer: usize, slow: Duration) -> (u64, usize, Duration) {
    let live = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let t0 = Instant::now();
    let (l2, p2) = (live.clone(), peak.clone());
    let (l3, p3) = (live.clone(), peak.clone());
    let sum = ctx
        .spawn_streaming(|s| {
            s.buffer(buffer);
            let mut i = 0;
            let src = s.source(move || {
                i += 1;
                (i <= n).then(|| Item::new(i, &l2, &p2))
            });
            let mid = s.stage(src, move |x: Item| {
                std::thread::sleep(slow);
                Item::new(x.v * 2, &l3, &p3)
            });
            s.sink(mid, 0u64, |acc, x: Item| *acc += x.v)
        })
        .unwrap()
        .fetch()
        .unwrap();
    assert_eq!(live.load(Ordering::SeqCst), 0, "every item was dropped");
    (sum, peak.load(Ordering::SeqCst), t0.elapsed())
}

#[test]
fn a_slow_middle_stage_keeps_the_buffers_bounded() {
    within(120, "3-stage pipeline", || {
        let ctx = ctx(2);
        let buffer = 4;
        // Items alive at once: two full buffers, one in each stage, one the source holds.
        let bound = 2 * buffer + 4;
        let (sum, peak_small, took) = pipeline(&ctx, 60, buffer, Duration::from_millis(1));
        assert_eq!(sum, 60 * 61);
        assert!(
            took >= Duration::from_millis(60),
            "the middle stage paced it: {took:?}"
        );
        let (sum, peak_large, _) = pipeline(&ctx, 400, buffer, Duration::from_millis(1));
        assert_eq!(sum, 400 * 401);
        assert!(peak_small <= bound, "{peak_small} items alive at once");
        assert!(
            peak_large <= bound,
            "{peak_large} items alive at once for 400 items: memory grows with the stream"
        );
        // Fast stages: many items, still bounded.
        let (sum, peak, _) = pipeline(&ctx, 20_000, buffer, Duration::ZERO);
        assert_eq!(sum, 20_000 * 20_001);
        assert!(peak <= bound, "{peak}");
    });
}

#[test]
fn an_erroring_stage_stops_the_stream() {
    within(60, "erroring stage", || {
        let ctx = ctx(2);
        let produced = Arc::new(AtomicUsize::new(0));
        let p2 = produced.clone();
        let mut sink = None;
        let err = ctx
            .spawn_streaming(|s| {
                s.buffer(2);
                let mut i = 0u32;
                // Endless: only the failure ends it.
                let src = s.source(move || {
                    p2.fetch_add(1, Ordering::SeqCst);
                    i += 1;
                    Some(i)
                });
                let checked = s.try_stage(src, |x: u32| {
                    if x == 30 {
                        Err(format!("item {x} is bad"))
                    } else {
                        Ok(x)
                    }
                });
                let doubled = s.stage(checked, |x: u32| x * 2);
                sink = Some(s.sink(doubled, 0u32, |acc, x| *acc += x));
            })
            .unwrap_err();
        assert!(err.to_string().contains("item 30 is bad"), "{err}");
        let sink_err = sink.unwrap().fetch().unwrap_err().to_string();
        assert!(sink_err.contains("stopped"), "{sink_err}");
        let n = produced.load(Ordering::SeqCst);
        assert!(n < 40, "the source stopped soon after: {n} items");
        // The context carries on.
        assert_eq!(ctx.spawn(|| 1, ()).fetch().unwrap(), 1);
    });
}

#[test]
fn a_panicking_stage_and_an_impossible_scope_stop_the_stream() {
    within(60, "panics and scopes", || {
        let ctx = ctx(2);
        let err = ctx
            .spawn_streaming(|s| {
                let mut i = 0u32;
                let src = s.source(move || {
                    i += 1;
                    Some(i)
                });
                let bad = s.stage(src, |x: u32| {
                    assert!(x < 5, "stage gave up at {x}");
                    x
                });
                s.sink(bad, (), |_, _| ())
            })
            .unwrap_err();
        assert!(err.to_string().contains("stage gave up at 5"), "{err}");
        let err = ctx
            .spawn_streaming(|s| {
                let src = s.source(|| Some(1u8));
                let nowhere = s.stage_with(Options::new().scope(Scope::thread(9)), src, |x| x);
                s.sink(nowhere, (), |_, _| ())
            })
            .unwrap_err();
        assert!(err.to_string().contains("threads(9)"), "{err}");
    });
}

#[test]
fn stages_run_on_the_processors_their_scopes_name() {
    within(60, "scoped stages", || {
        let ctx = ctx(3);
        let th = ctx.processors_of_kind(ProcessorKind::Thread);
        let seen = ctx
            .spawn_streaming(|s| {
                let mut i = 0;
                let src = s.source_with(Options::new().scope(Scope::thread(0)), move || {
                    i += 1;
                    (i <= 50).then(|| (i, task_processor()))
                });
                let mid = s.stage_with(Options::new().scope(Scope::thread(2)), src, |x| {
                    (x, task_processor())
                });
                s.sink_with(
                    Options::new().scope(Scope::thread(1)),
                    mid,
                    Vec::new(),
                    |acc, x| acc.push((x, task_processor())),
                )
            })
            .unwrap()
            .fetch()
            .unwrap();
        assert_eq!(seen.len(), 50);
        for (((_, a), b), c) in seen {
            assert_eq!((a, b, c), (Some(th[0]), Some(th[2]), Some(th[1])));
        }
    });
}

#[test]
fn a_gpu_kernel_stage_runs_on_the_gpu() {
    within(300, "gpu stage", || {
        let ctx = Context::builder().threads(2).build().unwrap();
        let gpus = common::gpus_or_skip(&ctx, "the GPU stream stage");
        if gpus.is_empty() {
            return;
        }
        let double: WgslKernel<(), f32> = WgslKernel::builder(
            "double",
            "@group(0) @binding(0) var<storage, read> a: array<f32>;
             @group(0) @binding(1) var<storage, read_write> b: array<f32>;
             @compute @workgroup_size(64)
             fn main(@builtin(global_invocation_id) id: vec3<u32>) {
                 if (id.x < arrayLength(&a)) { b[id.x] = 2.0 * a[id.x]; }
             }",
            "main",
        )
        .inputs([Access::Read])
        .output(|_, lens| lens[0])
        .workgroups(|_, lens| [(lens[0] as u32).div_ceil(64).max(1), 1, 1])
        .build()
        .unwrap();
        ctx.enable_logging();
        let _ = ctx.fetch_logs();
        let out = ctx
            .spawn_streaming(|s| {
                s.buffer(2);
                let mut i = 0u32;
                let src = s.source(move || {
                    i += 1;
                    (i <= 12).then(|| vec![i as f32; 100])
                });
                let doubled = s.kernel_stage(Options::new().scope(Scope::gpu(0)), src, &double, ());
                let plus = s.stage(doubled, |v: Vec<f32>| v[0] + v[99]);
                s.sink(plus, Vec::new(), |acc, x| acc.push(x))
            })
            .unwrap()
            .fetch()
            .unwrap();
        assert_eq!(out, (1..=12).map(|i| 4.0 * i as f32).collect::<Vec<_>>());
        let gpu_ids: Vec<_> = ctx
            .processors()
            .into_iter()
            .filter(|p| p.kind == ProcessorKind::Wgpu)
            .map(|p| p.id)
            .collect();
        let kernels: Vec<_> = ctx
            .fetch_logs()
            .into_iter()
            .filter(|e| e.kind == EventKind::Task && &*e.name == "double")
            .collect();
        assert_eq!(kernels.len(), 12, "one kernel per item");
        assert!(kernels.iter().all(|e| e.processor == gpu_ids[0]));
    });
}
