//! `dagger bench transfer` and `dagger bench launch`: what moving data and launching
//! kernels cost on each GPU, measured on the device runtime and through the scheduler.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use dagger::prelude::*;
use dagger::WgslKernel;
use dagger_wgpu::{open_devices, shaders, Binding, Device};

#[derive(clap::Args)]
pub(crate) struct TransferArgs {
    /// Largest transfer in MiB (sizes go up by 4x from 4 KiB).
    #[arg(long, default_value_t = 64)]
    max_mib: u64,
    /// Repetitions per size; the best is reported.
    #[arg(long, default_value_t = 5)]
    repeat: usize,
    /// One JSON object per result.
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args)]
pub(crate) struct LaunchArgs {
    /// Number of small kernels.
    #[arg(long, default_value_t = 10_000)]
    launches: usize,
    /// One JSON object per result.
    #[arg(long)]
    json: bool,
}

fn devices() -> Result<Vec<Device>, Box<dyn std::error::Error>> {
    let devs: Vec<Device> = open_devices().into_iter().filter_map(Result::ok).collect();
    if devs.is_empty() {
        return Err(
            "no wgpu adapter found (on Debian: apt-get install mesa-vulkan-drivers)".into(),
        );
    }
    Ok(devs)
}

pub(crate) fn transfer(args: &TransferArgs) -> Result<(), Box<dyn std::error::Error>> {
    let devs = devices()?;
    if !args.json {
        println!(
            "{:<4} {:<8} {:>10} {:>12} {:>12}",
            "gpu", "backend", "bytes", "up GB/s", "down GB/s"
        );
    }
    for d in &devs {
        let mut bytes = 4096u64;
        while bytes <= args.max_mib << 20 {
            let data: Vec<u32> = (0..bytes / 4).map(|i| i as u32).collect();
            let (mut up, mut down) = (f64::INFINITY, f64::INFINITY);
            for _ in 0..args.repeat.max(1) {
                let t = Instant::now();
                let buf = d.upload(&data)?;
                d.synchronize()?;
                up = up.min(t.elapsed().as_secs_f64());
                let t = Instant::now();
                let back: Vec<u32> = d.download(&buf)?;
                down = down.min(t.elapsed().as_secs_f64());
                if back != data {
                    return Err(format!(
                        "round trip of {bytes} bytes on {} differs",
                        d.info().name
                    )
                    .into());
                }
            }
            let (gu, gd) = (bytes as f64 / up / 1e9, bytes as f64 / down / 1e9);
            let info = d.info();
            if args.json {
                println!(
                    "{}",
                    serde_json::json!({"bench": "transfer", "gpu": info.index, "backend": info.backend,
                        "adapter": info.name, "bytes": bytes, "up_gbps": gu, "down_gbps": gd})
                );
            } else {
                println!(
                    "{:<4} {:<8} {:>10} {:>12.3} {:>12.3}",
                    info.index, info.backend, bytes, gu, gd
                );
            }
            bytes *= 4;
        }
    }
    Ok(())
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Fill {
    value: u32,
    n: u32,
}

pub(crate) fn launch(args: &LaunchArgs) -> Result<(), Box<dyn std::error::Error>> {
    let devs = devices()?;
    let n = args.launches;
    if !args.json {
        println!(
            "{:<4} {:<8} {:<22} {:>10} {:>12}",
            "gpu", "backend", "mode", "launches", "µs/launch"
        );
    }
    let report = |d: &Device, mode: &str, secs: f64| {
        let info = d.info();
        let us = secs / n as f64 * 1e6;
        if args.json {
            println!(
                "{}",
                serde_json::json!({"bench": "launch", "gpu": info.index, "backend": info.backend,
                    "mode": mode, "launches": n, "us_per_launch": us})
            );
        } else {
            println!(
                "{:<4} {:<8} {:<22} {:>10} {:>12.2}",
                info.index, info.backend, mode, n, us
            );
        }
    };
    for d in &devs {
        let pipeline = d.compile(shaders::FILL, "increment")?;
        let buf = d.zeroed(256 * 4)?;
        let p = shaders::FillParams { value: 1, n: 256 };
        // Batched: enqueue everything, wait once.
        let done = Arc::new(AtomicUsize::new(0));
        let t = Instant::now();
        for _ in 0..n {
            let done = done.clone();
            d.launch(
                &pipeline,
                &[Binding::uniform(&p), Binding::Storage(&buf)],
                p.workgroups(),
                move |r| {
                    if r.is_ok() {
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                },
            )?;
        }
        d.synchronize()?;
        report(d, "batched", t.elapsed().as_secs_f64());
        // Unbatched: wait for each launch.
        let t = Instant::now();
        for _ in 0..n {
            d.launch_blocking(
                &pipeline,
                &[Binding::uniform(&p), Binding::Storage(&buf)],
                p.workgroups(),
            )?;
        }
        report(d, "unbatched", t.elapsed().as_secs_f64());
        let v: Vec<u32> = d.download(&buf)?;
        if done.load(Ordering::Relaxed) != n || v[0] != 2 * n as u32 {
            return Err(format!("launch count mismatch on {}: {}", d.info().name, v[0]).into());
        }
    }
    // Through the scheduler: independent kernel tasks on each GPU.
    let ctx = super::build_context(None)?;
    let kernel = WgslKernel::<Fill, u32>::builder("fill", shaders::FILL, "fill")
        .inputs([])
        .output(|p: &Fill, _| p.n as usize)
        .workgroups(|p: &Fill, _| [p.n.div_ceil(64), 1, 1])
        .build()?;
    for d in &devs {
        let i = d.info().index;
        let opts = Options::new().scope(Scope::gpu(i));
        let t = Instant::now();
        let tasks: Vec<_> = (0..n)
            .map(|k| {
                ctx.spawn_kernel_with(
                    opts.clone(),
                    &kernel,
                    Fill {
                        value: k as u32,
                        n: 64,
                    },
                    [],
                )
            })
            .collect::<Result<_, _>>()?;
        for (k, task) in tasks.iter().enumerate() {
            task.wait();
            if k % 1000 == 0 && task.fetch()?[0] != k as u32 {
                return Err("wrong kernel task result".into());
            }
        }
        report(d, "scheduled tasks", t.elapsed().as_secs_f64());
    }
    Ok(())
}
