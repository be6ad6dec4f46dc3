//! The examples, run as tests: the same code the example programs run.

mod common;

#[path = "../examples/saxpy.rs"]
mod saxpy;

#[path = "../examples/mandelbrot.rs"]
mod mandelbrot;

use dagger::prelude::*;

fn has_gpu(ctx: &Context) -> bool {
    !common::gpus_or_skip(ctx, "the GPU half").is_empty()
}

#[test]
fn saxpy_gives_the_same_answer_on_cpu_and_gpu() {
    let ctx = Context::builder().threads(2).build().unwrap();
    let n = 100_003;
    let (cpu, on_cpu) = saxpy::run(&ctx, Scope::cpu(), n, 2.5).unwrap();
    assert!(on_cpu.contains("cpu thread"), "{on_cpu}");
    for (i, v) in cpu.iter().enumerate() {
        assert_eq!(*v, 2.5 * i as f32 + 1.0);
    }
    if has_gpu(&ctx) {
        let (gpu, on_gpu) = saxpy::run(&ctx, Scope::gpu(0), n, 2.5).unwrap();
        assert!(on_gpu.starts_with("gpu 0"), "{on_gpu}");
        assert_eq!(gpu, cpu);
    }
}

#[test]
fn mandelbrot_png_is_written_and_matches_the_cpu() {
    let ctx = Context::builder().threads(2).build().unwrap();
    let view = mandelbrot::default_view(160, 120);
    let cpu = mandelbrot::render(&ctx, Scope::cpu(), view).unwrap();
    let distinct: std::collections::HashSet<u32> = cpu.iter().copied().collect();
    assert!(distinct.len() > 20, "a picture, not a flat image");
    let pixels = if has_gpu(&ctx) {
        let gpu = mandelbrot::render(&ctx, Scope::gpu(0), view).unwrap();
        let same = gpu.iter().zip(&cpu).filter(|(a, b)| a == b).count();
        assert!(
            same * 100 >= cpu.len() * 99,
            "{same} of {} pixels agree",
            cpu.len()
        );
        gpu
    } else {
        cpu
    };
    let dir = std::env::temp_dir().join(format!("dagger-mandelbrot-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("mandelbrot.png");
    mandelbrot::write_png(&path, view.width, view.height, &pixels).unwrap();
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(&path).unwrap()));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).unwrap();
    assert_eq!((info.width, info.height), (160, 120));
    assert_eq!(&buf[..4], &pixels[0].to_le_bytes());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[path = "../examples/cholesky.rs"]
mod cholesky;

#[test]
fn cholesky_example_factors_on_cpu_threads_and_on_a_gpu() {
    let ctx = Context::builder().threads(2).build().unwrap();
    let (n, block) = (200, 64);
    let nb = 4; // 200 in blocks of 64
    let want = [
        ("gemm", nb * (nb - 1) * (nb - 2) / 6),
        ("potrf", nb),
        ("syrk", nb * (nb - 1) / 2),
        ("trsm", nb * (nb - 1) / 2),
    ];
    let mut scopes = vec![(Scope::cpu(), "cpu thread")];
    if has_gpu(&ctx) {
        scopes.push((Scope::gpu(0), "gpu 0"));
    }
    for (scope, where_) in scopes {
        let report = cholesky::run(&ctx, scope.clone(), n, block).unwrap();
        assert!(report.residual < 1e-5, "{scope}: {}", report.residual);
        let mut total: std::collections::BTreeMap<String, usize> = Default::default();
        for (proc, kinds) in &report.tiles {
            assert!(proc.starts_with(where_), "{scope}: tiles ran on {proc}");
            for (k, c) in kinds {
                *total.entry(k.clone()).or_default() += c;
            }
        }
        let want: std::collections::BTreeMap<String, usize> =
            want.iter().map(|(k, c)| (k.to_string(), *c)).collect();
        assert_eq!(total, want, "{scope}: one task per tile operation");
    }
}

#[path = "../examples/out_of_core.rs"]
mod out_of_core;

#[test]
fn out_of_core_example_factors_a_matrix_four_times_the_memory_limit() {
    // 1024×1024 f32 is 4 MiB in blocks of 16 KiB; the limit is a quarter of it. (The
    // largest task, a SYRK or GEMM tile over a block row and column, takes 33 blocks.)
    let limit = 1 << 20;
    let ctx = Context::builder()
        .threads(2)
        .gpus(false)
        .memory_limit(limit)
        .build()
        .unwrap();
    let r = out_of_core::run(&ctx, 1024, 64, 3).unwrap();
    assert!(r.residual < 1e-5, "residual {}", r.residual);
    let m = &r.memory;
    assert!(m.spills > 0 && m.reloads > 0, "{m:?}");
    // Each running task's output is counted from before it runs (room is made for it), so
    // each of the two threads may have one block in flight beyond the limit.
    let threads = 2;
    assert!(
        m.peak_resident_bytes <= limit + threads * 64 * 64 * 4,
        "peak {} over the limit {limit} plus a block per thread: {m:?}",
        m.peak_resident_bytes
    );
}

#[path = "../examples/distributed_cholesky.rs"]
mod distributed_cholesky;

#[test]
fn distributed_cholesky_example_factors_on_every_rank() {
    common::within(300, "the distributed Cholesky example", || {
        let ctx =
            dagger::remote::in_process(2, |_| Context::builder().threads(1).gpus(false)).unwrap();
        let r = distributed_cholesky::run(&ctx, 384, 64).unwrap();
        assert!(r.residual < 1e-12, "residual {:e}", r.residual);
        assert_eq!(r.tiles.len(), 3, "every rank ran tiles: {:?}", r.tiles);
        // 6 x 6 tiles: 6 potrf, 15 trsm, 15 syrk, 20 gemm in all.
        let kind = |k: &str| -> usize {
            r.tiles
                .values()
                .map(|m| m.get(k).copied().unwrap_or(0))
                .sum()
        };
        assert_eq!(
            [kind("potrf"), kind("trsm"), kind("syrk"), kind("gemm")],
            [6, 15, 15, 20]
        );
    });
}
