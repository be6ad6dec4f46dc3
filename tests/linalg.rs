//! Blocked matrix multiplication on DArrays, on the CPU scope, each GPU and the default
//! scope, against an f64 reference.

use dagger::prelude::*;
use dagger::{Gemm, ProcessorKind};
use ndarray::Array2;

fn scopes(ctx: &Context) -> Vec<(Scope, bool)> {
    let mut v = vec![(Scope::cpu(), true), (Scope::default_scope(), true)];
    let gpus: Vec<_> = ctx
        .processors()
        .into_iter()
        .filter(|p| p.kind == ProcessorKind::Wgpu)
        .collect();
    if gpus.is_empty() {
        if std::env::var("DAGGER_REQUIRE_GPU").is_ok_and(|v| v == "1") {
            panic!("DAGGER_REQUIRE_GPU=1 but no wgpu adapter was found");
        }
        eprintln!("skipped the GPU scopes: no wgpu adapter");
    }
    for g in gpus {
        let info = g.gpu.unwrap();
        v.push((Scope::gpu(info.index), info.shader_f64));
    }
    v
}

fn reference(a: &Array2<f64>, b: &Array2<f64>) -> Array2<f64> {
    a.dot(b)
}

fn rel_err(got: &Array2<f64>, want: &Array2<f64>) -> f64 {
    let num: f64 = got
        .iter()
        .zip(want)
        .map(|(g, w)| (g - w).powi(2))
        .sum::<f64>()
        .sqrt();
    let den: f64 = want.iter().map(|w| w * w).sum::<f64>().sqrt().max(1e-300);
    num / den
}

fn check<T: Gemm + Into<f64>>(
    ctx: &Context,
    scope: &Scope,
    m: usize,
    k: usize,
    n: usize,
    block: usize,
    tol: f64,
) {
    let a = DArray::<T>::randn(ctx, [m, k], Blocks::new([block, block]), 1).unwrap();
    let b = DArray::<T>::randn(ctx, [k, n], Blocks::new([block + 3, block]), 2).unwrap();
    let c = with_options(Options::new().scope(scope.clone()), || a.matmul(&b)).unwrap();
    let f = |x: DArray<T>| x.collect2().unwrap().mapv(|v| v.into());
    let (ha, hb, hc) = (f(a), f(b), f(c));
    let e = rel_err(&hc, &reference(&ha, &hb));
    assert!(
        e < tol,
        "{m}x{k}x{n} block {block} on {scope}: relative error {e}"
    );
}

#[test]
fn matmul_matches_the_reference_everywhere() {
    let ctx = Context::builder().threads(2).build().unwrap();
    for (scope, f64_ok) in scopes(&ctx) {
        for &(m, k, n, block) in &[
            (1, 1, 1, 16),
            (15, 16, 17, 16),
            (17, 33, 16, 16),
            (128, 127, 129, 64),
            (40, 7, 90, 32),
        ] {
            check::<f32>(&ctx, &scope, m, k, n, block, 1e-5);
            if f64_ok {
                check::<f64>(&ctx, &scope, m, k, n, block, 1e-12);
            }
        }
    }
}

#[test]
fn matmul_shape_errors_name_both_shapes() {
    let ctx = Context::builder().threads(1).build().unwrap();
    let a = DArray::<f32>::zeros(&ctx, [3, 4], Blocks::new([2, 2])).unwrap();
    let e = a.matmul(&a).unwrap_err().to_string();
    assert!(e.contains("[3, 4]") && e.contains("matmul"), "{e}");
    let empty = DArray::<f32>::zeros(&ctx, [3, 0], Blocks::new([2, 2])).unwrap();
    let z = DArray::<f32>::zeros(&ctx, [0, 5], Blocks::new([2, 2])).unwrap();
    let c = empty.matmul(&z).unwrap().collect2().unwrap();
    assert_eq!(c, Array2::<f32>::zeros((3, 5)));
}

#[test]
fn tiles_land_where_the_scope_says() {
    let ctx = Context::builder().threads(2).build().unwrap();
    let gpus = ctx.processors_of_kind(ProcessorKind::Wgpu);
    if gpus.is_empty() {
        if std::env::var("DAGGER_REQUIRE_GPU").is_ok_and(|v| v == "1") {
            panic!("DAGGER_REQUIRE_GPU=1 but no wgpu adapter was found");
        }
        eprintln!("skipped: no wgpu adapter to place tiles on");
        return;
    }
    ctx.enable_logging();
    let a = DArray::<f32>::ones(&ctx, [64, 64], Blocks::new([32, 32])).unwrap();
    a.wait().unwrap();
    let _ = ctx.fetch_logs();
    let c = with_options(Options::new().scope(Scope::gpu(0)), || a.matmul(&a)).unwrap();
    assert!(c.collect2().unwrap().iter().all(|&x| x == 64.0));
    let gemms: Vec<_> = ctx
        .fetch_logs()
        .into_iter()
        .filter(|e| &*e.name == "gemm" && e.kind == dagger::EventKind::Task)
        .collect();
    assert_eq!(gemms.len(), 4, "one task per output block");
    assert!(gemms.iter().all(|e| e.processor == gpus[0]));
}
