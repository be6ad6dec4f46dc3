//! Tiled Householder QR on DArrays, tall and square, on the CPU scope, each GPU, the default
//! scope and CPU and GPUs together, against f64 references at sizes on both sides of tile
//! edges: `Q R = A`, `Qᵀ Q = I`, `R` upper triangular, least-squares solves, shape errors.

mod common;

use dagger::prelude::*;
use dagger::{ArrayError, Gemm, ProcessorKind};
use ndarray::Array2;

fn fro(x: &Array2<f64>) -> f64 {
    x.iter().map(|v| v * v).sum::<f64>().sqrt()
}

fn host<T: Gemm + Into<f64>>(x: &DArray<T>) -> Array2<f64> {
    x.collect2().unwrap().mapv(|v| v.into())
}

fn on<R>(scope: &Scope, f: impl FnOnce() -> R) -> R {
    with_options(Options::new().scope(scope.clone()), f)
}

fn check_qr<T: Gemm + Into<f64>>(
    ctx: &Context,
    scope: &Scope,
    (m, n): (usize, usize),
    block: [usize; 2],
    tol: f64,
) {
    let a = common::random_matrix(m, n, (m * 1000 + n) as u64);
    let d = DArray::distribute(ctx, &a.mapv(T::from_f64), Blocks::new(block)).unwrap();
    let qr = on(scope, || d.qr()).unwrap();
    let q = host(&on(scope, || qr.q()).unwrap());
    let r = host(&qr.r());
    assert_eq!((q.dim(), r.dim()), ((m, n), (n, n)));
    for ((i, j), &x) in r.indexed_iter() {
        if i > j {
            assert_eq!(x, 0.0, "R({i}, {j})");
        }
    }
    let what = format!("{m}x{n} blocks {block:?} on {scope}");
    let e = fro(&(q.dot(&r) - &a)) / fro(&a);
    assert!(e < tol, "{what}: |Q R - A| / |A| = {e}");
    let o = (q.t().dot(&q) - Array2::<f64>::eye(n))
        .iter()
        .fold(0.0f64, |x, v| x.max(v.abs()));
    assert!(o < tol, "{what}: max |Qᵀ Q - I| = {o}");
    // Least squares against the normal equations (in f64, well conditioned here).
    let b = common::random_matrix(m, 2, 99);
    let db = DArray::distribute(ctx, &b.mapv(T::from_f64), Blocks::new([block[0] + 1, 1])).unwrap();
    let x = host(&on(scope, || qr.solve(&db)).unwrap());
    let ata = a.t().dot(&a);
    let resid = ata.dot(&x) - a.t().dot(&b);
    let e = fro(&resid) / (fro(&ata) * fro(&x) + fro(&a.t().dot(&b)));
    assert!(
        e < tol * 10.0,
        "{what}: least-squares normal-equation residual {e}"
    );
}

/// Shapes and blockings on both sides of tile edges, square and tall, with edge blocks that
/// are not multiples of the block size and rows blocked otherwise than columns.
const CASES: [((usize, usize), [usize; 2]); 10] = [
    ((1, 1), [16, 16]),
    ((15, 15), [16, 16]),
    ((17, 17), [16, 16]),
    ((17, 16), [16, 16]),
    ((40, 7), [16, 16]),
    ((63, 33), [32, 16]),
    ((65, 65), [32, 32]),
    ((100, 37), [7, 16]),
    ((129, 64), [32, 32]),
    ((33, 33), [5, 11]),
];

#[test]
fn qr_factors_everywhere() {
    common::within(900, "QR on every scope", || {
        let ctx = Context::builder().threads(2).build().unwrap();
        for (scope, f64_ok) in common::linalg_scopes(&ctx) {
            for &(shape, block) in &CASES {
                check_qr::<f32>(&ctx, &scope, shape, block, 1e-5);
                if f64_ok {
                    check_qr::<f64>(&ctx, &scope, shape, block, 1e-12);
                }
            }
        }
    });
}

#[test]
fn qr_of_a_rank_deficient_matrix_still_reconstructs_it() {
    let ctx = Context::builder().threads(2).build().unwrap();
    let mut a = common::random_matrix(30, 12, 4);
    let c0 = a.column(0).to_owned();
    a.column_mut(5).assign(&(&c0 * 3.0));
    a.column_mut(9).fill(0.0);
    let d = DArray::distribute(&ctx, &a, Blocks::new([8, 4])).unwrap();
    let qr = d.qr().unwrap();
    let (q, r) = (host(&qr.q().unwrap()), host(&qr.r()));
    assert!(fro(&(q.dot(&r) - &a)) / fro(&a) < 1e-12);
    assert!((q.t().dot(&q) - Array2::<f64>::eye(12))
        .iter()
        .all(|v| v.abs() < 1e-12));
}

#[test]
fn qt_mul_applies_the_transpose_without_forming_q() {
    let ctx = Context::builder().threads(2).build().unwrap();
    let a = common::random_matrix(50, 20, 8);
    let b = common::random_matrix(50, 3, 9);
    let qr = DArray::distribute(&ctx, &a, Blocks::new([16, 8]))
        .unwrap()
        .qr()
        .unwrap();
    let db = DArray::distribute(&ctx, &b, Blocks::new([13, 2])).unwrap();
    let got = host(&qr.qt_mul(&db).unwrap());
    let q = host(&qr.q().unwrap());
    // The first n rows are Qᵀ B with the thin Q; the rest hold the part of B outside its range.
    let top = got.slice(ndarray::s![..20, ..]).to_owned();
    assert!(fro(&(top - q.t().dot(&b))) < 1e-12);
    let rest = fro(&got.slice(ndarray::s![20.., ..]).to_owned());
    let outside = fro(&(&b - q.dot(&q.t().dot(&b))));
    assert!((rest - outside).abs() < 1e-12, "{rest} vs {outside}");
}

#[test]
fn qr_shape_errors_name_the_shape() {
    let ctx = Context::builder().threads(1).build().unwrap();
    let wide = DArray::<f64>::ones(&ctx, [3, 5], Blocks::new([2, 2])).unwrap();
    let e = wide.qr().unwrap_err();
    assert!(
        matches!(&e, ArrayError::NotAMatrix { op: "qr", shape, .. } if shape == &vec![3, 5]),
        "{e}"
    );
    assert!(e.to_string().contains("3 rows, 5 columns"), "{e}");
    let cube = DArray::<f64>::ones(&ctx, [2, 2, 2], Blocks::new([2, 2, 2])).unwrap();
    assert!(matches!(cube.qr(), Err(ArrayError::NotAMatrix { .. })));
    let tall = DArray::<f64>::ones(&ctx, [4, 2], Blocks::new([2, 2])).unwrap();
    let qr = tall.qr().unwrap();
    let wrong = DArray::<f64>::ones(&ctx, [3, 1], Blocks::new([2, 2])).unwrap();
    assert!(matches!(
        qr.solve(&wrong),
        Err(ArrayError::ShapeMismatch { .. })
    ));
}

#[test]
fn qr_panels_run_on_cpu_threads_and_updates_on_a_gpu() {
    let ctx = Context::builder().threads(2).build().unwrap();
    if common::gpus_or_skip(&ctx, "tile placement").is_empty() {
        return;
    }
    let gpu = ctx.processors_of_kind(ProcessorKind::Wgpu)[0];
    let threads = ctx.processors_of_kind(ProcessorKind::Thread);
    let a = common::random_matrix(48, 32, 3);
    let d = DArray::distribute(&ctx, &a.mapv(|v| v as f32), Blocks::new([16, 16])).unwrap();
    d.wait().unwrap();
    ctx.enable_logging();
    let _ = ctx.fetch_logs();
    let qr = on(&Scope::gpu(0), || d.qr()).unwrap();
    let logs: Vec<_> = ctx
        .fetch_logs()
        .into_iter()
        .filter(|e| e.kind == dagger::EventKind::Task)
        .collect();
    let gemms: Vec<_> = logs.iter().filter(|e| &*e.name == "gemm").collect();
    let panels: Vec<_> = logs.iter().filter(|e| &*e.name == "qr_panel").collect();
    // Step 0 updates column 1: one W and three block updates.
    assert_eq!(gemms.len(), 4);
    assert!(
        gemms.iter().all(|e| e.processor == gpu),
        "GEMM tiles on the GPU"
    );
    assert_eq!(panels.len(), 2);
    assert!(panels.iter().all(|e| threads.contains(&e.processor)));
    let (q, r) = (host(&qr.q().unwrap()), host(&qr.r()));
    assert!(fro(&(q.dot(&r) - &a)) / fro(&a) < 1e-5);
}
