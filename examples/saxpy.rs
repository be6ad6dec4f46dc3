//! SAXPY (`y = a·x + y`) as a kernel task that runs on a CPU thread or a GPU depending
//! only on the scope.
//!
//! ```sh
//! cargo run --release --example saxpy -- cpu
//! cargo run --release --example saxpy -- gpu      # GPU 0 (software devices included)
//! cargo run --release --example saxpy -- auto     # wherever the scheduler prefers
//! ```

use dagger::prelude::*;
use dagger::{Access, WgslKernel};

/// The kernel's uniform parameters (matches `struct Params` in shaders/saxpy.wgsl).
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub struct SaxpyParams {
    /// The scalar `a`.
    pub a: f32,
    /// Number of elements.
    pub n: u32,
}

/// shaders/saxpy.wgsl with a CPU implementation beside it.
pub fn saxpy_kernel() -> Result<WgslKernel<SaxpyParams, f32>, dagger::KernelError> {
    WgslKernel::builder("saxpy", include_str!("../shaders/saxpy.wgsl"), "main")
        .inputs([Access::Read, Access::ReadWrite])
        .workgroups(|p: &SaxpyParams, _| {
            let groups = p.n.div_ceil(256);
            [groups.min(65_535), groups.div_ceil(65_535), 1]
        })
        .cpu(|p: &SaxpyParams, inputs, y| {
            for (yi, xi) in y.iter_mut().zip(inputs[0]) {
                *yi += p.a * xi;
            }
        })
        .build()
}

/// Runs `a·x + y` for `x[i] = i`, `y[i] = 1` under `scope`; returns the result and the
/// processor it ran on.
pub fn run(
    ctx: &Context,
    scope: Scope,
    n: usize,
    a: f32,
) -> Result<(Vec<f32>, String), Box<dyn std::error::Error>> {
    ctx.enable_logging();
    let kernel = saxpy_kernel()?;
    let x = ctx.to_chunk((0..n).map(|i| i as f32).collect::<Vec<_>>());
    let y = ctx.to_chunk(vec![1.0f32; n]);
    let params = SaxpyParams { a, n: n as u32 };
    let out = ctx.spawn_kernel_with(
        Options::new().scope(scope),
        &kernel,
        params,
        [(&x).into(), (&y).into()],
    )?;
    let result = out.fetch()?;
    let logs = ctx.fetch_logs();
    let proc = logs
        .iter()
        .find(|e| e.task == out.id() && e.kind == dagger::EventKind::Task)
        .map(|e| e.processor);
    let name = ctx
        .processors()
        .into_iter()
        .find(|p| Some(p.id) == proc)
        .map(|p| p.description)
        .unwrap_or_default();
    Ok((result, name))
}

/// Prints an error the way a user reads it: its message, then each cause on a line.
#[allow(dead_code)]
fn main() {
    if let Err(e) = try_main() {
        eprintln!("error: {e}");
        let mut cause = e.source();
        while let Some(c) = cause {
            eprintln!("  caused by: {c}");
            cause = c.source();
        }
        std::process::exit(1);
    }
}

#[allow(dead_code)]
fn try_main() -> Result<(), Box<dyn std::error::Error>> {
    let which = std::env::args().nth(1).unwrap_or_else(|| "auto".into());
    let scope = match which.as_str() {
        "cpu" => Scope::cpu(),
        "gpu" => Scope::gpu(0),
        "auto" => Scope::any(),
        other => return Err(format!("unknown scope `{other}`: use cpu, gpu or auto").into()),
    };
    let ctx = Context::new()?;
    let n = 1 << 20;
    let (y, ran_on) = run(&ctx, scope, n, 2.0)?;
    let bad = y
        .iter()
        .enumerate()
        .filter(|(i, v)| **v != 2.0 * *i as f32 + 1.0)
        .count();
    println!("saxpy of {n} elements on {ran_on}: {bad} wrong");
    if bad > 0 {
        return Err("wrong results".into());
    }
    Ok(())
}
