//! `dagger bench gemm|syrk|cholesky|lu|qr`: blocked dense linear algebra on DArrays, GFLOP/s on
//! a chosen scope, beside OpenBLAS (through numpy/scipy) and dask.array, timed in the same
//! run by `benches/peers/linalg.py`. The peers' runs alternate with ours (each peer runs
//! once after each of ours), so that on a shared machine both sides meet the same load;
//! each side reports its best run.

use std::time::Instant;

use dagger::prelude::*;
use dagger::{Gemm, GemmKernel, Pivoting, Trans, Triangle};
use ndarray::Array2;

use super::peer::{Best, Peers, Timed};

/// The peer script, embedded so the command works from any directory.
const PEERS: &str = include_str!("../../benches/peers/linalg.py");

/// The operation a run measures.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    Gemm,
    Syrk,
    Cholesky,
    Lu(Pivoting),
    Qr,
}

impl Op {
    fn name(self) -> &'static str {
        match self {
            Op::Gemm => "gemm",
            Op::Syrk => "syrk",
            Op::Cholesky => "cholesky",
            Op::Lu(_) => "lu",
            Op::Qr => "qr",
        }
    }

    /// GEMM 2n³, SYRK n³, Cholesky n³/3, LU 2n³/3, QR 4n³/3 (LAPACK's count for `?geqrf`).
    fn flops(self, n: usize) -> f64 {
        let n3 = (n as f64).powi(3);
        match self {
            Op::Gemm => 2.0 * n3,
            Op::Syrk => n3,
            Op::Cholesky => n3 / 3.0,
            Op::Lu(_) => 2.0 * n3 / 3.0,
            Op::Qr => 4.0 * n3 / 3.0,
        }
    }
}

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
    /// The WGSL GEMM kernel of GPU tiles: tiled (register-blocked) or naive (reference).
    #[arg(long, default_value = "tiled")]
    kernel: String,
    /// Repetitions; the best is reported. With --peer each peer runs once after each of
    /// ours, so that both meet the same load on a shared machine.
    #[arg(long, default_value_t = 3)]
    repeat: usize,
    /// Also report the relative error against an f64 reference.
    #[arg(long)]
    check: bool,
    /// Also time OpenBLAS through numpy/scipy (and dask.array for GEMM) and print ratios.
    #[arg(long)]
    peer: bool,
    /// dask.array's chunk size in the peer run (default: the same as --block). dask runs
    /// each chunk product through single-threaded OpenBLAS, so its best chunking differs
    /// from a DArray's; this compares the two each at its own.
    #[arg(long)]
    dask_block: Option<usize>,
    #[command(flatten)]
    python: super::python::PythonArgs,
    /// One JSON object per result.
    #[arg(long)]
    json: bool,
}

/// `dagger bench lu`: the common arguments and the pivoting.
#[derive(clap::Args)]
pub(crate) struct LuArgs {
    #[command(flatten)]
    common: Args,
    /// partial (P A = L U, as scipy's lu_factor) or none (A = L U; the benchmark's matrix
    /// gets n added to its diagonal so that it needs no interchanges).
    #[arg(long, default_value = "partial")]
    pivoting: String,
}

pub(crate) fn run_lu(args: &LuArgs) -> Result<(), Box<dyn std::error::Error>> {
    let pivoting = match args.pivoting.as_str() {
        "partial" => Pivoting::Partial,
        "none" => Pivoting::None,
        other => return Err(format!("unknown pivoting `{other}`: use partial or none").into()),
    };
    run(Op::Lu(pivoting), &args.common)
}

pub(crate) fn run(op: Op, args: &Args) -> Result<(), Box<dyn std::error::Error>> {
    match args.dtype.as_str() {
        "f32" => bench::<f32>(op, args),
        "f64" => bench::<f64>(op, args),
        other => Err(format!("unknown dtype `{other}`: use f32 or f64").into()),
    }
}

fn f64s<T: Gemm + Into<f64>>(x: &DArray<T>) -> Result<Array2<f64>, dagger::ArrayError> {
    Ok(x.collect2()?.mapv(Into::into))
}

fn rel(got: &Array2<f64>, want: &Array2<f64>) -> f64 {
    let num: f64 = got.iter().zip(want).map(|(g, w)| (g - w).powi(2)).sum();
    let den: f64 = want.iter().map(|w| w * w).sum();
    (num / den.max(1e-300)).sqrt()
}

/// `alpha op_a(a) op_b(b) + beta c` in f64 on the host, by ndarray's own matrix product
/// (the matrixmultiply crate): code apart from the `dagger-cpu` kernels being checked.
fn reference(
    op_a: Trans,
    op_b: Trans,
    alpha: f64,
    a: &Array2<f64>,
    b: &Array2<f64>,
    beta: f64,
    c: &mut Array2<f64>,
) {
    fn op(m: &Array2<f64>, t: Trans) -> ndarray::ArrayView2<'_, f64> {
        match t {
            Trans::No => m.view(),
            Trans::Yes => m.t(),
        }
    }
    ndarray::linalg::general_mat_mul(alpha, &op(a, op_a), &op(b, op_b), beta, c);
}

/// Frobenius relative error of `c` against `a · b` computed in f64 on the host.
pub(crate) fn gemm_error<T: Gemm + Into<f64>>(
    a: &DArray<T>,
    b: &DArray<T>,
    c: &DArray<T>,
) -> Result<f64, dagger::ArrayError> {
    let (ha, hb, hc) = (f64s(a)?, f64s(b)?, f64s(c)?);
    let mut want = Array2::<f64>::zeros((ha.nrows(), hb.ncols()));
    reference(Trans::No, Trans::No, 1.0, &ha, &hb, 0.0, &mut want);
    Ok(rel(&hc, &want))
}

fn bench<T: Gemm + Into<f64>>(op: Op, args: &Args) -> Result<(), Box<dyn std::error::Error>> {
    if args.dask_block == Some(0) {
        return Err("--dask-block must be at least 1 (a chunk size for dask.array)".into());
    }
    let scope = match args.scope.as_str() {
        "cpu" => Scope::cpu(),
        "gpu" => Scope::gpu(0),
        "auto" => Scope::any(),
        other => return Err(format!("unknown scope `{other}`: use cpu, gpu or auto").into()),
    };
    let kernel = match args.kernel.as_str() {
        "tiled" => GemmKernel::Tiled,
        "naive" => GemmKernel::Naive,
        other => return Err(format!("unknown kernel `{other}`: use tiled or naive").into()),
    };
    let ctx = super::build_context(None)?;
    let (n, b) = (args.n, args.block);
    let blocks = Blocks::new([b, b]);
    let one = T::ONE;
    let zero = T::ZERO;
    let a = DArray::<T>::randn(&ctx, [n, n], blocks.clone(), 1)?;
    // GEMM's second factor; for Cholesky the SPD matrix a aᵀ / n + I, built with SYRK.
    let second = match op {
        Op::Gemm => DArray::<T>::randn(&ctx, [n, n], blocks.clone(), 2)?,
        Op::Syrk => DArray::<T>::zeros(&ctx, [n, n], blocks.clone())?,
        Op::Cholesky => {
            let eye = Array2::from_shape_fn((n, n), |(i, j)| if i == j { one } else { zero });
            let mut s = DArray::distribute(&ctx, &eye, blocks.clone())?;
            let scale = T::from_f64(1.0 / n as f64);
            s.syrk(Triangle::Lower, Trans::No, scale, &a, one)?;
            s
        }
        Op::Lu(Pivoting::Partial) | Op::Qr => a.clone(),
        // Diagonally dominant: a + n I.
        Op::Lu(_) => {
            let eye = DArray::<T>::eye(&ctx, n, blocks.clone())?;
            (&a + &(eye * T::from_f64(n as f64)))?
        }
    };
    // GEMM's C, made outside the timing: with beta = 0 its values are not read, so, as
    // for numpy's `a @ b`, what is timed is the product and the allocation of its result.
    let c0 = match op {
        Op::Gemm => Some(DArray::<T>::zeros(&ctx, [n, n], blocks.clone())?),
        Op::Syrk | Op::Cholesky | Op::Lu(_) | Op::Qr => None,
    };
    a.wait()?;
    second.wait()?;
    if let Some(c0) = &c0 {
        c0.wait()?;
    }
    // The peers start before the timing, with their own data, and then run once after
    // each of ours (interleaved), so that both sides meet the same load.
    let dask_block = args.dask_block.unwrap_or(b);
    let mut peers = Peers::new(args.peer, &args.python);
    peers.start(
        "openblas",
        PEERS,
        &peer_args("openblas", op, n, None, &args.dtype),
        Best::Highest("gflops"),
    );
    if op == Op::Gemm {
        peers.start(
            "dask",
            PEERS,
            &peer_args("dask", op, n, Some(dask_block), &args.dtype),
            Best::Highest("gflops"),
        );
    }
    let mut best = f64::INFINITY;
    let mut last = None;
    let mut last_perm: Vec<usize> = Vec::new();
    let mut last_qr = None;
    peers.alternate(args.repeat, |timed| {
        // The previous result is dropped before the run, so that its memory serves this
        // one. Held, it made the run after the untimed one fault in fresh pages for every
        // result block (about 20 ms a 1024² f64 tile on a VM that returns freed memory to
        // its host): 69–80 GFLOP/s against 90–94 for the GEMM's first timed run.
        last = None;
        last_qr = None;
        let t = Instant::now();
        let out = with_options(Options::new().scope(scope.clone()), || {
            Ok::<_, dagger::ArrayError>(match op {
                Op::Gemm => {
                    let mut c = c0.clone().expect("made above for GEMM");
                    c.gemm_with(kernel, Trans::No, Trans::No, one, &a, &second, zero)?;
                    c
                }
                Op::Syrk => {
                    let mut c = second.clone();
                    c.syrk_with(kernel, Triangle::Lower, Trans::No, one, &a, zero)?;
                    c
                }
                Op::Cholesky => second.cholesky_with(kernel)?,
                Op::Lu(pivoting) => {
                    let lu = second.lu(pivoting)?;
                    last_perm = lu.permutation().to_vec();
                    lu.factors().clone()
                }
                Op::Qr => {
                    let qr = second.qr()?;
                    let f = qr.factors().clone();
                    last_qr = Some(qr);
                    f
                }
            })
        })?;
        out.wait()?;
        if timed == Timed::Yes {
            best = best.min(t.elapsed().as_secs_f64());
        }
        last = Some(out);
        Ok::<(), Box<dyn std::error::Error>>(())
    })?;
    let gflops = op.flops(n) / best / 1e9;
    let mut error = None;
    if args.check {
        let out = f64s(&last.expect("ran at least once"))?;
        let ha = f64s(&a)?;
        error = Some(match op {
            Op::Gemm => {
                let mut want = Array2::zeros((n, n));
                reference(
                    Trans::No,
                    Trans::No,
                    1.0,
                    &ha,
                    &f64s(&second)?,
                    0.0,
                    &mut want,
                );
                rel(&out, &want)
            }
            Op::Syrk => {
                let mut want = Array2::zeros((n, n));
                reference(Trans::No, Trans::Yes, 1.0, &ha, &ha, 0.0, &mut want);
                let lower = |m: &Array2<f64>| {
                    Array2::from_shape_fn((n, n), |(i, j)| if j <= i { m[[i, j]] } else { 0.0 })
                };
                rel(&lower(&out), &lower(&want))
            }
            Op::Cholesky => {
                // ‖L Lᵀ − A‖ / ‖A‖ over the lower triangle A was given in.
                let mut llt = Array2::zeros((n, n));
                reference(Trans::No, Trans::Yes, 1.0, &out, &out, 0.0, &mut llt);
                let hs = f64s(&second)?;
                let lower = |m: &Array2<f64>| {
                    Array2::from_shape_fn((n, n), |(i, j)| if j <= i { m[[i, j]] } else { 0.0 })
                };
                rel(&lower(&llt), &lower(&hs))
            }
            Op::Lu(_) => {
                // ‖L U − P A‖ / ‖A‖ from the packed factors.
                let l = Array2::from_shape_fn((n, n), |(i, j)| match i.cmp(&j) {
                    std::cmp::Ordering::Greater => out[[i, j]],
                    std::cmp::Ordering::Equal => 1.0,
                    std::cmp::Ordering::Less => 0.0,
                });
                let u =
                    Array2::from_shape_fn((n, n), |(i, j)| if i <= j { out[[i, j]] } else { 0.0 });
                let mut lu = Array2::zeros((n, n));
                reference(Trans::No, Trans::No, 1.0, &l, &u, 0.0, &mut lu);
                let hs = f64s(&second)?;
                let pa = Array2::from_shape_fn((n, n), |(i, j)| hs[[last_perm[i], j]]);
                rel(&lu, &pa)
            }
            Op::Qr => {
                // ‖Q R − A‖ / ‖A‖.
                let qr = last_qr.as_ref().expect("ran at least once");
                let (q, r) = (f64s(&qr.q()?)?, f64s(&qr.r())?);
                let mut prod = Array2::zeros((n, n));
                reference(Trans::No, Trans::No, 1.0, &q, &r, 0.0, &mut prod);
                rel(&prod, &ha)
            }
        });
    }
    let (peer, dask) = (peers.best("openblas"), peers.best("dask"));
    drop(peers);
    let backend = format!(
        "gemm {}, others {}",
        dagger_cpu::gemm_backend_name(),
        dagger_cpu::backend_name()
    );
    if args.json {
        let mut v = serde_json::json!({"bench": op.name(), "n": n, "block": b,
            "dtype": args.dtype, "scope": args.scope, "kernel": args.kernel,
            "gflops": gflops, "cpu_backend": backend});
        if let Some(e) = error {
            v["rel_error"] = serde_json::json!(e);
        }
        if let Some(p) = peer {
            v["openblas_gflops"] = serde_json::json!(p);
            v["ratio"] = serde_json::json!(gflops / p);
        }
        if let Some(d) = dask {
            v["dask_gflops"] = serde_json::json!(d);
            v["dask_ratio"] = serde_json::json!(gflops / d);
            v["dask_block"] = serde_json::json!(dask_block);
        }
        println!("{v}");
    } else {
        print!(
            "{} n={n} block={b} {} scope={} kernel={} (CPU tiles: {backend}): {gflops:.1} GFLOP/s",
            op.name(),
            args.dtype,
            args.scope,
            args.kernel
        );
        if let Some(e) = error {
            print!(", relative error {e:.2e}");
        }
        if let Some(p) = peer {
            print!(", OpenBLAS {p:.1} GFLOP/s, ratio {:.2}", gflops / p);
        }
        if let Some(d) = dask {
            print!(
                ", dask.array (chunks {dask_block}) {d:.1} GFLOP/s, ratio {:.2}",
                gflops / d
            );
        }
        println!();
    }
    Ok(())
}

/// The arguments of a peer of `benches/peers/linalg.py` (`openblas`: numpy `@`, scipy
/// `?syrk`, `cholesky`, `lu_factor`, numpy `qr`; `dask`: dask.array's blocked matmul on the
/// threaded scheduler with chunks of `block`).
fn peer_args(name: &str, op: Op, n: usize, block: Option<usize>, dtype: &str) -> Vec<String> {
    let mut argv = vec![
        "--peer".to_string(),
        name.to_string(),
        "--op".to_string(),
        op.name().to_string(),
        "--n".to_string(),
        n.to_string(),
        "--dtype".to_string(),
        dtype.to_string(),
    ];
    if let Some(b) = block {
        argv.extend(["--block".to_string(), b.to_string()]);
    }
    argv
}
