//! `dagger bench gemm`: blocked GEMM on DArrays, GFLOP/s on a chosen scope, beside
//! OpenBLAS through numpy run in the same session.

use std::time::Instant;

use dagger::prelude::*;
use dagger::Gemm;

#[derive(clap::Args)]
pub(crate) struct Args {
    /// Matrix size.
    #[arg(long, default_value_t = 4096)]
    n: usize,
    /// Block size.
    #[arg(long, default_value_t = 1024)]
    block: usize,
    /// f32 or f64.
    #[arg(long, default_value = "f32")]
    dtype: String,
    /// cpu, gpu (GPU 0) or auto (every processor, software GPUs included).
    #[arg(long, default_value = "cpu")]
    scope: String,
    /// Repetitions; the best is reported.
    #[arg(long, default_value_t = 3)]
    repeat: usize,
    /// Also report the relative error against an f64 reference.
    #[arg(long)]
    check: bool,
    /// Also time OpenBLAS through numpy (`python3` with numpy) and print the ratio.
    #[arg(long)]
    peer: bool,
    /// One JSON object per result.
    #[arg(long)]
    json: bool,
}

pub(crate) fn run(args: &Args) -> Result<(), Box<dyn std::error::Error>> {
    match args.dtype.as_str() {
        "f32" => bench::<f32>(args),
        "f64" => bench::<f64>(args),
        other => Err(format!("unknown dtype `{other}`: use f32 or f64").into()),
    }
}

fn bench<T: Gemm + Into<f64>>(args: &Args) -> Result<(), Box<dyn std::error::Error>> {
    let scope = match args.scope.as_str() {
        "cpu" => Scope::cpu(),
        "gpu" => Scope::gpu(0),
        "auto" => Scope::any(),
        other => return Err(format!("unknown scope `{other}`: use cpu, gpu or auto").into()),
    };
    let ctx = super::build_context(None)?;
    let (n, b) = (args.n, args.block);
    let a = DArray::<T>::randn(&ctx, [n, n], Blocks::new([b, b]), 1)?;
    let bm = DArray::<T>::randn(&ctx, [n, n], Blocks::new([b, b]), 2)?;
    a.wait()?;
    bm.wait()?;
    let mut best = f64::INFINITY;
    let mut last = None;
    for _ in 0..args.repeat.max(1) {
        let t = Instant::now();
        let c = with_options(Options::new().scope(scope.clone()), || a.matmul(&bm))?;
        c.wait()?;
        best = best.min(t.elapsed().as_secs_f64());
        last = Some(c);
    }
    let gflops = 2.0 * (n as f64).powi(3) / best / 1e9;
    let mut error = None;
    if args.check {
        let c = last.expect("ran at least once");
        error = Some(gemm_error(&a, &bm, &c)?);
    }
    let peer = if args.peer {
        numpy_gflops(n, &args.dtype)
    } else {
        None
    };
    if args.json {
        let mut v = serde_json::json!({"bench": "gemm", "n": n, "block": b, "dtype": args.dtype,
            "scope": args.scope, "gflops": gflops, "cpu_backend": dagger_cpu::backend_name()});
        if let Some(e) = error {
            v["rel_error"] = serde_json::json!(e);
        }
        if let Some(p) = peer {
            v["openblas_gflops"] = serde_json::json!(p);
            v["ratio"] = serde_json::json!(gflops / p);
        }
        println!("{v}");
    } else {
        print!(
            "gemm n={n} block={b} {} scope={} ({}): {gflops:.1} GFLOP/s",
            args.dtype,
            args.scope,
            dagger_cpu::backend_name()
        );
        if let Some(e) = error {
            print!(", relative error {e:.2e}");
        }
        if let Some(p) = peer {
            print!(", OpenBLAS (numpy) {p:.1} GFLOP/s, ratio {:.2}", gflops / p);
        }
        println!();
    }
    Ok(())
}

/// OpenBLAS GEMM through numpy on the same machine, in GFLOP/s.
fn numpy_gflops(n: usize, dtype: &str) -> Option<f64> {
    let np = if dtype == "f32" { "float32" } else { "float64" };
    let script = format!(
        "import time, numpy as np\n\
         a = np.random.default_rng(0).standard_normal(({n}, {n})).astype(np.{np}); b = a.copy()\n\
         a @ b\n\
         ts = []\n\
         for _ in range(3):\n    t = time.perf_counter(); a @ b; ts.append(time.perf_counter() - t)\n\
         print(2 * {n}**3 / min(ts) / 1e9)\n"
    );
    let out = std::process::Command::new("python3")
        .args(["-c", &script])
        .env_remove("OPENBLAS_CORETYPE")
        .env_remove("OPENBLAS_L2_SIZE")
        .output()
        .ok()?;
    if !out.status.success() {
        eprintln!(
            "note: the numpy peer did not run: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
        return None;
    }
    String::from_utf8_lossy(&out.stdout).trim().parse().ok()
}

/// Frobenius relative error of `c` against `a · b` computed in f64 on the host.
pub(crate) fn gemm_error<T: Gemm + Into<f64>>(
    a: &DArray<T>,
    b: &DArray<T>,
    c: &DArray<T>,
) -> Result<f64, dagger::ArrayError> {
    let f64s = |x: &DArray<T>| -> Result<ndarray::Array2<f64>, dagger::ArrayError> {
        Ok(x.collect2()?.mapv(Into::into))
    };
    let (ha, hb, hc) = (f64s(a)?, f64s(b)?, f64s(c)?);
    let mut want = ndarray::Array2::<f64>::zeros((ha.nrows(), hb.ncols()));
    dagger_cpu::gemm(
        dagger_cpu::Trans::No,
        dagger_cpu::Trans::No,
        1.0,
        &ha,
        &hb,
        dagger_cpu::Accum::Replace,
        &mut want,
        dagger_cpu::Threads(0),
    );
    let num: f64 = hc.iter().zip(&want).map(|(g, w)| (g - w).powi(2)).sum();
    let den: f64 = want.iter().map(|w| w * w).sum();
    Ok((num / den.max(1e-300)).sqrt())
}
