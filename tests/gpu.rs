//! GPU processors: placement by scope, movement in every direction, the replica cache,
//! kernels with and without CPU implementations, and errors that leave the context working.
//!
//! Without a wgpu adapter these tests print that they were skipped; with
//! `DAGGER_REQUIRE_GPU=1` (as CI sets) they fail instead.

mod common;

use dagger::prelude::*;
use dagger::{Access, EventKind, KernelError, ProcessorId, ProcessorKind, WgslKernel};

/// A context with every GPU, or `None` (after saying why) when there is none.
fn gpu_ctx() -> Option<(Context, Vec<dagger::ProcessorInfo>)> {
    let ctx = Context::builder().threads(2).build().unwrap();
    if common::gpus_or_skip(&ctx, "this test").is_empty() {
        return None;
    }
    let gpus: Vec<_> = ctx
        .processors()
        .into_iter()
        .filter(|p| p.kind == ProcessorKind::Wgpu)
        .collect();
    Some((ctx, gpus))
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Saxpy {
    a: f32,
    n: u32,
}

fn saxpy_kernel() -> WgslKernel<Saxpy, f32> {
    WgslKernel::builder("saxpy", include_str!("../shaders/saxpy.wgsl"), "main")
        .inputs([Access::Read, Access::ReadWrite])
        .workgroups(|p: &Saxpy, _| {
            let g = p.n.div_ceil(256);
            if g <= 65_535 {
                [g, 1, 1]
            } else {
                [65_535, g.div_ceil(65_535), 1]
            }
        })
        .cpu(|p: &Saxpy, ins, out| {
            for (o, x) in out.iter_mut().zip(ins[0]) {
                *o += p.a * x;
            }
        })
        .build()
        .unwrap()
}

/// `out = in` for any 32-bit or 64-bit element type, to test moves bit for bit.
fn identity<T: dagger::GpuScalar>(ty: &str) -> WgslKernel<(), T> {
    let src = format!(
        "@group(0) @binding(0) var<storage, read> a: array<{ty}>;
         @group(0) @binding(1) var<storage, read_write> b: array<{ty}>;
         @compute @workgroup_size(64)
         fn main(@builtin(global_invocation_id) id: vec3<u32>) {{
             if (id.x < arrayLength(&a)) {{ b[id.x] = a[id.x]; }}
         }}"
    );
    WgslKernel::builder(format!("copy_{ty}"), src, "main")
        .inputs([Access::Read])
        .output(|_, lens| lens[0])
        .workgroups(|_, lens| [(lens[0] as u32).div_ceil(64).max(1), 1, 1])
        .build()
        .unwrap()
}

fn ran_on(ctx: &Context, task: u64) -> ProcessorId {
    ctx.fetch_logs()
        .iter()
        .find(|e| e.task == task && e.kind == EventKind::Task)
        .expect("the task was logged")
        .processor
}

#[test]
fn saxpy_runs_where_the_scope_says() {
    let Some((ctx, gpus)) = gpu_ctx() else { return };
    ctx.enable_logging();
    let k = saxpy_kernel();
    let n = 10_007;
    let x: Vec<f32> = (0..n).map(|i| i as f32 * 0.5).collect();
    let y: Vec<f32> = (0..n).map(|i| 1.0 - i as f32).collect();
    let want: Vec<f32> = x.iter().zip(&y).map(|(x, y)| 3.0 * x + y).collect();
    let (xc, yc) = (ctx.to_chunk(x), ctx.to_chunk(y.clone()));
    let p = Saxpy {
        a: 3.0,
        n: n as u32,
    };
    for g in &gpus {
        let i = g.gpu.as_ref().unwrap().index;
        let t = ctx
            .spawn_kernel_with(
                Options::new().scope(Scope::gpu(i)),
                &k,
                p,
                [(&xc).into(), (&yc).into()],
            )
            .unwrap();
        assert_eq!(t.fetch().unwrap(), want, "gpu {i}");
        assert_eq!(ran_on(&ctx, t.id()), g.id, "ran on gpu {i}");
    }
    let t = ctx
        .spawn_kernel_with(
            Options::new().scope(Scope::cpu()),
            &k,
            p,
            [(&xc).into(), (&yc).into()],
        )
        .unwrap();
    assert_eq!(t.fetch().unwrap(), want);
    let p_cpu = ran_on(&ctx, t.id());
    assert!(ctx
        .processors_of_kind(ProcessorKind::Thread)
        .contains(&p_cpu));
    // The input was not modified by the read-write binding (the kernel wrote a copy).
    assert_eq!(yc.collect().unwrap(), y);
    // Software GPUs are not in the default scope: a default kernel task runs on a thread.
    let t = ctx
        .spawn_kernel(&k, p, [(&xc).into(), (&yc).into()])
        .unwrap();
    assert_eq!(t.fetch().unwrap(), want);
    let p_def = ran_on(&ctx, t.id());
    let software = gpus.iter().all(|g| g.gpu.as_ref().unwrap().is_software);
    if software {
        assert!(ctx
            .processors_of_kind(ProcessorKind::Thread)
            .contains(&p_def));
    }
}

fn round_trip<T: dagger::GpuScalar + PartialEq + std::fmt::Debug>(
    ctx: &Context,
    gpu: usize,
    ty: &str,
    data: Vec<T>,
    bits: impl Fn(&T) -> u64,
) {
    let k = identity::<T>(ty);
    let t = ctx
        .spawn_kernel_with(
            Options::new().scope(Scope::gpu(gpu)),
            &k,
            (),
            [data.clone().into()],
        )
        .unwrap();
    let got = t.fetch().unwrap();
    assert_eq!(got.len(), data.len());
    for (a, b) in got.iter().zip(&data) {
        assert_eq!(bits(a), bits(b), "{ty} on gpu {gpu}: bit-exact");
    }
}

#[test]
fn host_device_round_trips_are_bit_exact() {
    let Some((ctx, gpus)) = gpu_ctx() else { return };
    let f32s = vec![
        0.0f32,
        -0.0,
        1.0,
        f32::MIN_POSITIVE,
        f32::from_bits(1),
        f32::MAX,
        f32::INFINITY,
        f32::NEG_INFINITY,
        f32::from_bits(0x7fc0_1234),
        std::f32::consts::PI,
    ];
    for g in &gpus {
        let info = g.gpu.as_ref().unwrap();
        round_trip(&ctx, info.index, "f32", f32s.clone(), |v| {
            v.to_bits() as u64
        });
        round_trip(
            &ctx,
            info.index,
            "i32",
            vec![i32::MIN, -1, 0, 1, i32::MAX],
            |v| *v as u64,
        );
        round_trip(
            &ctx,
            info.index,
            "u32",
            (0..1000u32).map(|i| i.wrapping_mul(2654435761)).collect(),
            |v| *v as u64,
        );
        if info.shader_f64 {
            round_trip(
                &ctx,
                info.index,
                "f64",
                vec![-0.0f64, f64::MIN_POSITIVE, 1e300, std::f64::consts::E],
                |v| v.to_bits(),
            );
        }
        round_trip(&ctx, info.index, "f32", Vec::<f32>::new(), |v| {
            v.to_bits() as u64
        });
    }
}

#[test]
fn device_to_device_moves_are_bit_exact() {
    let Some((ctx, gpus)) = gpu_ctx() else { return };
    if gpus.len() < 2 {
        eprintln!("skipped: needs two GPUs, found {}", gpus.len());
        return;
    }
    ctx.enable_logging();
    let k = identity::<f32>("f32");
    let data: Vec<f32> = (0..5000)
        .map(|i| f32::from_bits(0x3f80_0000 ^ (i * 7919)))
        .collect();
    for (a, b) in [(0, 1), (1, 0)] {
        let on_a = ctx
            .spawn_kernel_with(
                Options::new().scope(Scope::gpu(a)),
                &k,
                (),
                [data.clone().into()],
            )
            .unwrap();
        let on_b = ctx
            .spawn_kernel_with(
                Options::new().scope(Scope::gpu(b)),
                &k,
                (),
                [(&on_a).into()],
            )
            .unwrap();
        let got = on_b.fetch().unwrap();
        assert!(got
            .iter()
            .zip(&data)
            .all(|(x, y)| x.to_bits() == y.to_bits()));
        let logs = ctx.fetch_logs();
        let moved: u64 = logs
            .iter()
            .filter(|e| e.kind == EventKind::Move && e.task == on_b.id())
            .map(|e| e.bytes_moved)
            .sum();
        assert!(
            moved >= (data.len() * 4) as u64,
            "the move into gpu {b} was logged: {moved}"
        );
    }
}

#[test]
fn a_chunk_used_twice_on_a_device_is_uploaded_once() {
    let Some((ctx, gpus)) = gpu_ctx() else { return };
    ctx.enable_logging();
    let k = identity::<u32>("u32");
    for g in &gpus {
        let i = g.gpu.as_ref().unwrap().index;
        let x = ctx.to_chunk((0..4096u32).collect::<Vec<_>>());
        let on = Options::new().scope(Scope::gpu(i));
        let t1 = ctx
            .spawn_kernel_with(on.clone(), &k, (), [(&x).into()])
            .unwrap();
        t1.wait();
        let t2 = ctx
            .spawn_kernel_with(on.clone(), &k, (), [(&x).into()])
            .unwrap();
        // A result already on the device moves nothing either.
        let t3 = ctx
            .spawn_kernel_with(on.clone(), &k, (), [(&t1).into()])
            .unwrap();
        assert_eq!(t2.fetch().unwrap(), x.collect().unwrap());
        assert_eq!(t3.fetch().unwrap(), x.collect().unwrap());
        let logs = ctx.fetch_logs();
        let moved = |t: u64| -> u64 {
            logs.iter()
                .filter(|e| e.kind == EventKind::Move && e.task == t)
                .map(|e| e.bytes_moved)
                .sum()
        };
        assert_eq!(moved(t1.id()), 4096 * 4, "first use uploads");
        assert_eq!(moved(t2.id()), 0, "second use hits the replica");
        assert_eq!(moved(t3.id()), 0, "device-resident input");
        // A new value (a write makes one) is not served from the old replica.
        let x2 = ctx.to_chunk((1..4097u32).collect::<Vec<_>>());
        let t4 = ctx.spawn_kernel_with(on, &k, (), [(&x2).into()]).unwrap();
        assert_eq!(t4.fetch().unwrap(), x2.collect().unwrap());
    }
}

#[test]
fn types_a_device_cannot_hold_make_it_incompatible() {
    let Some((ctx, gpus)) = gpu_ctx() else { return };
    let k = identity::<f64>("f64");
    for g in &gpus {
        let info = g.gpu.as_ref().unwrap();
        if info.shader_f64 {
            continue;
        }
        let t = ctx
            .spawn_kernel_with(
                Options::new().scope(Scope::gpu(info.index)),
                &k,
                (),
                [vec![1.0f64].into()],
            )
            .unwrap();
        assert!(t.is_ready(), "fails at once");
        let e = t.fetch().unwrap_err().to_string();
        assert!(e.contains("f64") && e.contains("SHADER_F64"), "{e}");
    }
    // Closures never go to GPUs.
    let t = ctx.spawn_with(Options::new().scope(Scope::gpus(..)), || 1, ());
    let e = t.fetch().unwrap_err().to_string();
    assert!(e.contains("closures run on CPU threads"), "{e}");
    assert_eq!(ctx.spawn(|| 2, ()).fetch().unwrap(), 2);
}

#[test]
fn invalid_shaders_fail_when_the_kernel_is_built() {
    let err = WgslKernel::<(), f32>::builder(
        "broken",
        "@group(0) @binding(0) var<storage, read_write> a: array<f32>;\n\
         @compute @workgroup_size(64)\n\
         fn main() { a[0] = undefined_name; }\n",
        "main",
    )
    .inputs([Access::ReadWrite])
    .workgroups(|_, _| [1, 1, 1])
    .build()
    .expect_err("invalid shader");
    assert!(matches!(err, KernelError::Shader { .. }));
    let chain = format!("{err}: {}", std::error::Error::source(&err).unwrap());
    assert!(chain.contains("undefined_name"), "{chain}");
    assert!(
        chain.contains(":3:") || chain.contains("line 3"),
        "names the line: {chain}"
    );
    // Declared bindings that do not match the shader.
    let err =
        WgslKernel::<(), f32>::builder("mismatch", include_str!("../shaders/saxpy.wgsl"), "main")
            .inputs([Access::Read])
            .output(|_, l| l[0])
            .workgroups(|_, _| [1, 1, 1])
            .build()
            .expect_err("binding mismatch");
    assert!(matches!(err, KernelError::Bindings { .. }), "{err}");
}

#[test]
fn a_buffer_over_the_binding_limit_is_a_clear_error() {
    let Some((ctx, gpus)) = gpu_ctx() else { return };
    let k = identity::<f32>("f32");
    let g = &gpus[0];
    let info = g.gpu.as_ref().unwrap();
    let n = (info.max_storage_binding_size / 4 + 1) as usize;
    if (n as u64) * 4 > info.max_buffer_size {
        eprintln!("skipped: the buffer limit is below the binding limit");
        return;
    }
    let t = ctx
        .spawn_kernel_with(
            Options::new().scope(Scope::gpu(info.index)),
            &k,
            (),
            [vec![0.5f32; n].into()],
        )
        .unwrap();
    let e = t.fetch().unwrap_err();
    // The kernel's error is part of the task's message.
    let chain = e.to_string();
    assert!(
        chain.contains(&info.max_storage_binding_size.to_string()),
        "{chain}"
    );
    // The device keeps working.
    let t = ctx
        .spawn_kernel_with(
            Options::new().scope(Scope::gpu(info.index)),
            &k,
            (),
            [vec![0.5f32; 8].into()],
        )
        .unwrap();
    assert_eq!(t.fetch().unwrap(), vec![0.5f32; 8]);
}

#[test]
fn backend_scopes_and_software_gpus_in_the_default_scope() {
    let Some((_, gpus)) = gpu_ctx() else { return };
    let ctx = Context::builder()
        .threads(1)
        .software_gpus(true)
        .build()
        .unwrap();
    for p in ctx
        .processors()
        .iter()
        .filter(|p| p.kind == ProcessorKind::Wgpu)
    {
        assert!(p.default_enabled, "software GPUs enabled on request");
    }
    let off = Context::builder()
        .threads(1)
        .software_gpus(false)
        .build()
        .unwrap();
    for p in off
        .processors()
        .iter()
        .filter(|p| p.kind == ProcessorKind::Wgpu)
    {
        assert_eq!(p.default_enabled, !p.gpu.as_ref().unwrap().is_software);
    }
    ctx.enable_logging();
    let k = identity::<u32>("u32");
    for g in &gpus {
        let b = &g.gpu.as_ref().unwrap().backend;
        let t = ctx
            .spawn_kernel_with(
                Options::new().scope(Scope::backend(b.as_str())),
                &k,
                (),
                [vec![1u32, 2].into()],
            )
            .unwrap();
        assert_eq!(t.fetch().unwrap(), vec![1, 2]);
        let p = ran_on(&ctx, t.id());
        let ran = ctx.processors().into_iter().find(|q| q.id == p).unwrap();
        assert_eq!(&ran.gpu.unwrap().backend, b);
    }
    let none = ctx
        .spawn_kernel_with(
            Options::new().scope(Scope::backend("metal").constrain(&Scope::cpu())),
            &k,
            (),
            [vec![1u32].into()],
        )
        .unwrap();
    assert!(none.fetch().is_err());
}

#[test]
fn gpu_results_feed_cpu_tasks_and_chains_stay_on_device() {
    let Some((ctx, _)) = gpu_ctx() else { return };
    ctx.enable_logging();
    let k = saxpy_kernel();
    let n = 4096u32;
    let x = ctx.to_chunk(vec![1.0f32; n as usize]);
    let mut y = ctx
        .spawn_kernel_with(
            Options::new().scope(Scope::gpu(0)),
            &k,
            Saxpy { a: 1.0, n },
            [(&x).into(), vec![0.0f32; n as usize].into()],
        )
        .unwrap();
    for _ in 0..9 {
        y = ctx
            .spawn_kernel_with(
                Options::new().scope(Scope::gpu(0)),
                &k,
                Saxpy { a: 1.0, n },
                [(&x).into(), (&y).into()],
            )
            .unwrap();
    }
    let sum = ctx.spawn(|v: Vec<f32>| v.iter().sum::<f32>(), (&y,));
    assert_eq!(sum.fetch().unwrap(), 10.0 * n as f32);
    let logs = ctx.fetch_logs();
    let moves: Vec<_> = logs.iter().filter(|e| e.kind == EventKind::Move).collect();
    // x and the zeros are uploaded once each; the chain stays on the device; the sum's
    // input comes back once.
    let up: u64 = moves
        .iter()
        .filter(|e| e.task != sum.id())
        .map(|e| e.bytes_moved)
        .sum();
    assert_eq!(up, 2 * 4 * n as u64, "{moves:?}");
    let down: u64 = moves
        .iter()
        .filter(|e| e.task == sum.id())
        .map(|e| e.bytes_moved)
        .sum();
    assert_eq!(down, 4 * n as u64);
}

#[test]
fn placement_follows_the_data_between_gpus() {
    let Some((ctx, gpus)) = gpu_ctx() else { return };
    if gpus.len() < 2 {
        eprintln!("skipped: needs two GPUs");
        return;
    }
    ctx.enable_logging();
    let copy = identity::<f32>("f32");
    for (src, gpu) in gpus.iter().enumerate().take(2) {
        let x = ctx.to_chunk(vec![1.5f32; 1 << 20]);
        let on = ctx
            .spawn_kernel_with(
                Options::new().scope(Scope::gpu(src)),
                &copy,
                (),
                [(&x).into()],
            )
            .unwrap();
        on.wait();
        // A name of its own: no run time learned yet, so only the 4 MiB that would have to
        // move from the other device separate the two candidates.
        let next = ctx
            .spawn_kernel_with(
                Options::new()
                    .scope(Scope::gpus(..))
                    .name(format!("follow {src}")),
                &copy,
                (),
                [(&on).into()],
            )
            .unwrap();
        assert_eq!(next.fetch().unwrap()[12345], 1.5);
        assert_eq!(
            ran_on(&ctx, next.id()),
            gpu.id,
            "the input was on gpu {src}"
        );
    }
}
