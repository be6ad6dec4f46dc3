//! LU factorization (with and without pivoting), triangular and general solves, the inverse
//! and norms on DArrays, on the CPU scope, each GPU, the default scope and CPU and GPUs
//! together, against f64 references at sizes on both sides of tile edges.

mod common;

use dagger::prelude::*;
use dagger::{ArrayError, Diag, Gemm, Norm, Pivoting, ProcessorKind, Solver, Trans, Triangle};
use ndarray::Array2;

/// A matrix LU factors stably without pivoting: random plus n on the diagonal.
fn dominant(n: usize, seed: u64) -> Array2<f64> {
    common::random_matrix(n, n, seed) + Array2::<f64>::eye(n) * n as f64
}

fn spd(n: usize, seed: u64) -> Array2<f64> {
    let m = common::random_matrix(n, n, seed);
    m.dot(&m.t()) / n as f64 + Array2::<f64>::eye(n)
}

fn fro(x: &Array2<f64>) -> f64 {
    x.iter().map(|v| v * v).sum::<f64>().sqrt()
}

fn host<T: Gemm + Into<f64>>(x: &DArray<T>) -> Array2<f64> {
    x.collect2().unwrap().mapv(|v| v.into())
}

fn darray<T: Gemm>(ctx: &Context, x: &Array2<f64>, block: usize) -> DArray<T> {
    DArray::distribute(ctx, &x.mapv(T::from_f64), Blocks::new([block, block])).unwrap()
}

/// ‖A X − B‖ / (‖A‖ ‖X‖ + ‖B‖): the backward error of a solve, small whatever the
/// condition of A.
fn backward(a: &Array2<f64>, x: &Array2<f64>, b: &Array2<f64>) -> f64 {
    fro(&(a.dot(x) - b)) / (fro(a) * fro(x) + fro(b)).max(1e-300)
}

fn on<R>(scope: &Scope, f: impl FnOnce() -> R) -> R {
    with_options(Options::new().scope(scope.clone()), f)
}

fn check_lu<T: Gemm + Into<f64>>(
    ctx: &Context,
    scope: &Scope,
    pivoting: Pivoting,
    n: usize,
    block: usize,
    tol: f64,
) {
    let a = match pivoting {
        Pivoting::None => dominant(n, n as u64),
        _ => common::random_matrix(n, n, n as u64 + 7),
    };
    let d = darray::<T>(ctx, &a, block);
    let before = host(&d);
    let lu = on(scope, || d.lu(pivoting)).unwrap();
    // Tiles may write blocks in place once nothing else holds them; the input's never.
    assert_eq!(host(&d), before, "lu changed its input");
    let (l, u) = (host(&lu.l()), host(&lu.u()));
    let p = lu.permutation();
    let mut seen = vec![false; n];
    p.iter().for_each(|&i| seen[i] = true);
    assert!(seen.iter().all(|&s| s), "{p:?} is not a permutation");
    if pivoting == Pivoting::None {
        assert!(p.iter().enumerate().all(|(i, &r)| i == r));
    }
    for ((i, j), &x) in l.indexed_iter() {
        match i.cmp(&j) {
            std::cmp::Ordering::Less => assert_eq!(x, 0.0, "L({i}, {j})"),
            std::cmp::Ordering::Equal => assert_eq!(x, 1.0, "L({i}, {i})"),
            std::cmp::Ordering::Greater if pivoting == Pivoting::Partial => {
                assert!(
                    x.abs() <= 1.0,
                    "|L({i}, {j})| = {x} > 1 under partial pivoting"
                )
            }
            _ => {}
        }
    }
    for ((i, j), &x) in u.indexed_iter() {
        if i > j {
            assert_eq!(x, 0.0, "U({i}, {j})");
        }
    }
    let pa = Array2::from_shape_fn((n, n), |(i, j)| a[[p[i], j]]);
    let e = fro(&(l.dot(&u) - &pa)) / fro(&a);
    assert!(
        e < tol,
        "{pivoting:?} LU n {n} block {block} on {scope}: |L U - P A| / |A| = {e}"
    );
}

const SIZES: [(usize, usize); 7] = [
    (1, 16),
    (15, 16),
    (16, 16),
    (17, 16),
    (63, 32),
    (65, 32),
    (129, 32),
];

#[test]
fn lu_factors_everywhere() {
    common::within(900, "LU on every scope", || {
        let ctx = Context::builder().threads(2).build().unwrap();
        for (scope, f64_ok) in common::linalg_scopes(&ctx) {
            for pivoting in [Pivoting::None, Pivoting::Partial] {
                for &(n, block) in &SIZES {
                    check_lu::<f32>(&ctx, &scope, pivoting, n, block, 1e-5);
                    if f64_ok {
                        check_lu::<f64>(&ctx, &scope, pivoting, n, block, 1e-13);
                    }
                }
            }
        }
    });
}

#[test]
fn panel_tiles_run_on_cpu_threads_under_a_gpu_scope() {
    let ctx = Context::builder().threads(2).build().unwrap();
    if common::gpus_or_skip(&ctx, "tile placement").is_empty() {
        return;
    }
    let gpu = ctx.processors_of_kind(ProcessorKind::Wgpu)[0];
    let threads = ctx.processors_of_kind(ProcessorKind::Thread);
    let d = darray::<f32>(&ctx, &common::random_matrix(48, 48, 3), 16);
    d.wait().unwrap();
    ctx.enable_logging();
    let _ = ctx.fetch_logs();
    let lu = on(&Scope::gpu(0), || d.lu(Pivoting::Partial)).unwrap();
    let logs: Vec<_> = ctx
        .fetch_logs()
        .into_iter()
        .filter(|e| e.kind == dagger::EventKind::Task)
        .collect();
    let gemms: Vec<_> = logs.iter().filter(|e| &*e.name == "gemm").collect();
    let panels: Vec<_> = logs.iter().filter(|e| &*e.name == "lu_panel").collect();
    assert_eq!(gemms.len(), 4 + 1, "trailing updates of steps 0 and 1");
    assert!(
        gemms.iter().all(|e| e.processor == gpu),
        "GEMM tiles on the GPU"
    );
    assert_eq!(panels.len(), 3);
    assert!(
        panels.iter().all(|e| threads.contains(&e.processor)),
        "panel tiles have no GPU implementation and run on CPU threads"
    );
    let a = common::random_matrix(48, 48, 3);
    let (l, u) = (host(&lu.l()), host(&lu.u()));
    let p = lu.permutation();
    let pa = Array2::from_shape_fn((48, 48), |(i, j)| a[[p[i], j]]);
    assert!(fro(&(l.dot(&u) - pa)) / fro(&a) < 1e-5);
}

fn check_solves<T: Gemm + Into<f64>>(
    ctx: &Context,
    scope: &Scope,
    n: usize,
    block: usize,
    tol: f64,
) {
    let rhs = common::random_matrix(n, 3, 11);
    let b = DArray::distribute(ctx, &rhs.mapv(T::from_f64), Blocks::new([block + 1, 2])).unwrap();
    let cases = [
        (Solver::Cholesky, spd(n, 5)),
        (Solver::Lu(Pivoting::None), dominant(n, 6)),
        (
            Solver::Lu(Pivoting::Partial),
            common::random_matrix(n, n, 7),
        ),
    ];
    for (solver, a) in cases {
        let d = darray::<T>(ctx, &a, block);
        let x = host(&on(scope, || d.solve(&b, solver)).unwrap());
        assert_eq!(x.dim(), (n, 3));
        let e = backward(&a, &x, &rhs);
        assert!(
            e < tol,
            "{solver:?} n {n} block {block} on {scope}: backward error {e}"
        );
    }
    // The inverse.
    let a = common::random_matrix(n, n, 8);
    let inv = host(&on(scope, || darray::<T>(ctx, &a, block).inv()).unwrap());
    let e = backward(&a, &inv, &Array2::eye(n));
    assert!(e < tol, "inv n {n} block {block} on {scope}: {e}");
}

#[test]
fn solves_and_inverses_everywhere() {
    common::within(900, "solves on every scope", || {
        let ctx = Context::builder().threads(2).build().unwrap();
        for (scope, f64_ok) in common::linalg_scopes(&ctx) {
            for &(n, block) in &[(1, 16), (16, 16), (17, 16), (65, 32)] {
                check_solves::<f32>(&ctx, &scope, n, block, 1e-5);
                if f64_ok {
                    check_solves::<f64>(&ctx, &scope, n, block, 1e-14);
                }
            }
        }
    });
}

#[test]
fn triangular_solves_every_triangle_transpose_and_diagonal() {
    common::within(600, "triangular solves", || {
        let ctx = Context::builder().threads(2).build().unwrap();
        for (scope, f64_ok) in common::linalg_scopes(&ctx) {
            for &(n, block) in &[(15, 16), (17, 16), (40, 16)] {
                for triangle in [Triangle::Lower, Triangle::Upper] {
                    for trans in [Trans::No, Trans::Yes] {
                        for diag in [Diag::NonUnit, Diag::Unit] {
                            let full = dominant(n, 21);
                            // The reference reads only the triangle; the array holds
                            // garbage in the other one (and on a unit diagonal).
                            let tri = Array2::from_shape_fn((n, n), |(i, j)| {
                                if i == j && diag == Diag::Unit {
                                    1.0
                                } else if triangle.contains(i, j) {
                                    full[[i, j]]
                                } else {
                                    0.0
                                }
                            });
                            let stored = Array2::from_shape_fn((n, n), |(i, j)| {
                                if (i == j && diag == Diag::Unit) || !triangle.contains(i, j) {
                                    1e3
                                } else {
                                    full[[i, j]]
                                }
                            });
                            let op = match trans {
                                Trans::No => tri.clone(),
                                Trans::Yes => tri.t().to_owned(),
                            };
                            let rhs = common::random_matrix(n, 5, 4);
                            let check = |tol: f64, x: Array2<f64>, what: &str| {
                                let e = backward(&op, &x, &rhs);
                                assert!(
                                    e < tol,
                                    "{what} {triangle:?} {trans:?} {diag:?} n {n} on {scope}: {e}"
                                );
                            };
                            let b = darray::<f32>(&ctx, &rhs, block);
                            let x = on(&scope, || {
                                darray::<f32>(&ctx, &stored, block)
                                    .solve_triangular(&b, triangle, trans, diag)
                            })
                            .unwrap();
                            check(1e-6, host(&x), "f32");
                            if f64_ok {
                                let b = darray::<f64>(&ctx, &rhs, block);
                                let x = on(&scope, || {
                                    darray::<f64>(&ctx, &stored, block)
                                        .solve_triangular(&b, triangle, trans, diag)
                                })
                                .unwrap();
                                check(1e-15, host(&x), "f64");
                            }
                        }
                    }
                }
            }
        }
    });
}

#[test]
fn singular_matrices_name_the_block_and_pivot() {
    let ctx = Context::builder().threads(2).build().unwrap();
    for (scope, _) in common::linalg_scopes(&ctx) {
        // Column 37 (block 2 of 16, pivot 5 there) all zeros: singular.
        let mut a = common::random_matrix(50, 50, 1);
        a.column_mut(37).fill(0.0);
        let d = darray::<f32>(&ctx, &a, 16);
        for pivoting in [Pivoting::Partial, Pivoting::None] {
            let err = on(&scope, || d.lu(pivoting)).unwrap_err();
            assert!(
                matches!(
                    err,
                    ArrayError::Singular {
                        block: 2,
                        pivot: 5,
                        row: 37
                    }
                ),
                "{pivoting:?} on {scope}: {err:?}"
            );
            let msg = err.to_string();
            assert!(msg.contains("block 2") && msg.contains("row 37"), "{msg}");
        }
        let err = on(&scope, || d.inv()).unwrap_err();
        assert!(
            matches!(err, ArrayError::Singular { row: 37, .. }),
            "{err:?}"
        );
        let b = darray::<f32>(&ctx, &common::random_matrix(50, 1, 2), 16);
        let err = on(&scope, || d.solve(&b, Solver::Lu(Pivoting::Partial))).unwrap_err();
        assert!(
            matches!(err, ArrayError::Singular { row: 37, .. }),
            "{err:?}"
        );

        // Nonsingular, but row 20 needs an interchange: [[0, 1], [1, 0]] on rows 20 and 21.
        let mut p = dominant(40, 2);
        for (i, j, v) in [(20, 20, 0.0), (20, 21, 1.0), (21, 20, 1.0), (21, 21, 0.0)] {
            p[[i, j]] = v;
        }
        for k in 0..40 {
            if k != 20 && k != 21 {
                for (i, j) in [(20, k), (21, k), (k, 20), (k, 21)] {
                    p[[i, j]] = 0.0;
                }
            }
        }
        let d = darray::<f32>(&ctx, &p, 16);
        let err = on(&scope, || d.lu(Pivoting::None)).unwrap_err();
        assert!(
            matches!(
                err,
                ArrayError::Singular {
                    block: 1,
                    pivot: 4,
                    row: 20
                }
            ),
            "on {scope}: {err:?}"
        );
        assert!(on(&scope, || d.lu(Pivoting::Partial)).is_ok());

        // A zero on a triangle's diagonal.
        let mut t = dominant(40, 3);
        t[[20, 20]] = 0.0;
        let b = darray::<f32>(&ctx, &common::random_matrix(40, 2, 5), 16);
        let err = on(&scope, || {
            darray::<f32>(&ctx, &t, 16).solve_triangular(
                &b,
                Triangle::Upper,
                Trans::No,
                Diag::NonUnit,
            )
        })
        .unwrap_err();
        assert!(
            matches!(
                err,
                ArrayError::Singular {
                    block: 1,
                    pivot: 4,
                    row: 20
                }
            ),
            "on {scope}: {err:?}"
        );
        // The unit diagonal is not read.
        assert!(on(&scope, || {
            darray::<f32>(&ctx, &t, 16).solve_triangular(&b, Triangle::Upper, Trans::No, Diag::Unit)
        })
        .is_ok());
    }
    // The context works afterwards.
    assert!(darray::<f64>(&ctx, &dominant(20, 1), 8)
        .lu(Pivoting::None)
        .is_ok());
}

#[test]
fn shapes_that_do_not_fit_are_errors() {
    let ctx = Context::builder().threads(1).build().unwrap();
    let r = DArray::<f64>::zeros(&ctx, [4, 5], Blocks::new([2, 2])).unwrap();
    let sq = DArray::<f64>::eye(&ctx, 4, Blocks::new([2, 2])).unwrap();
    let is_shape = |e: ArrayError| {
        matches!(
            e,
            ArrayError::ShapeMismatch { .. }
                | ArrayError::NotAMatrix { .. }
                | ArrayError::InnerDimensions { .. }
        )
    };
    let e = r.lu(Pivoting::Partial).unwrap_err();
    assert!(
        e.to_string().contains("square") && e.to_string().contains("[4, 5]"),
        "{e}"
    );
    assert!(is_shape(e));
    assert!(is_shape(r.inv().unwrap_err()));
    let b5 = DArray::<f64>::ones(&ctx, [5, 1], Blocks::new([2, 2])).unwrap();
    assert!(is_shape(sq.solve(&b5, Solver::Cholesky).unwrap_err()));
    assert!(is_shape(
        sq.solve(&b5, Solver::Lu(Pivoting::Partial)).unwrap_err()
    ));
    assert!(is_shape(
        sq.solve_triangular(&b5, Triangle::Lower, Trans::No, Diag::Unit)
            .unwrap_err()
    ));
    let v = DArray::<f64>::ones(&ctx, [4], Blocks::new([2])).unwrap();
    assert!(is_shape(sq.solve(&v, Solver::Cholesky).unwrap_err()));
    assert!(is_shape(r.solve(&b5, Solver::Cholesky).unwrap_err()));
    // Solving with the identity gives B back.
    let b = DArray::<f64>::rand(&ctx, [4, 3], Blocks::new([3, 2]), 1).unwrap();
    let x = sq.solve(&b, Solver::Lu(Pivoting::Partial)).unwrap();
    assert_eq!(x.collect2().unwrap(), b.collect2().unwrap());
}

#[test]
fn norms_match_the_definitions() {
    let ctx = Context::builder().threads(2).build().unwrap();
    for (scope, f64_ok) in common::linalg_scopes(&ctx) {
        for &(r, c, block) in &[(1, 1, 4), (7, 5, 4), (16, 33, 16), (40, 17, 16)] {
            let a = common::random_matrix(r, c, (r * c) as u64) * 10.0;
            let one = (0..c)
                .map(|j| a.column(j).iter().map(|x| x.abs()).sum::<f64>())
                .fold(0.0, f64::max);
            let inf = (0..r)
                .map(|i| a.row(i).iter().map(|x| x.abs()).sum::<f64>())
                .fold(0.0, f64::max);
            let f = fro(&a);
            let check = |got: f64, want: f64, tol: f64, what: &str| {
                assert!(
                    (got - want).abs() <= tol * want.max(1e-30),
                    "{what} of {r}x{c} on {scope}: {got} vs {want}"
                );
            };
            let d = darray::<f32>(&ctx, &a, block);
            on(&scope, || {
                check(d.norm(Norm::One).unwrap().into(), one, 1e-5, "1-norm");
                check(d.norm(Norm::Inf).unwrap().into(), inf, 1e-5, "∞-norm");
                check(
                    d.norm(Norm::Frobenius).unwrap().into(),
                    f,
                    1e-5,
                    "Frobenius",
                );
            });
            if f64_ok {
                let d = darray::<f64>(&ctx, &a, block);
                on(&scope, || {
                    check(d.norm(Norm::One).unwrap(), one, 1e-13, "1-norm");
                    check(d.norm(Norm::Inf).unwrap(), inf, 1e-13, "∞-norm");
                    check(d.norm(Norm::Frobenius).unwrap(), f, 1e-13, "Frobenius");
                });
            }
        }
    }
    // Vectors, huge values, NaN, empty arrays and too many dimensions.
    let v =
        DArray::distribute(&ctx, &ndarray::arr1(&[3.0f64, -4.0, 0.0]), Blocks::new([2])).unwrap();
    assert_eq!(v.norm(Norm::One).unwrap(), 7.0);
    assert_eq!(v.norm(Norm::Inf).unwrap(), 4.0);
    assert_eq!(v.norm(Norm::Frobenius).unwrap(), 5.0);
    let big =
        DArray::distribute(&ctx, &ndarray::arr1(&[3e300f64, 4e300]), Blocks::new([1])).unwrap();
    assert!((big.norm(Norm::Frobenius).unwrap() / 5e300 - 1.0).abs() < 1e-15);
    let nan = DArray::distribute(
        &ctx,
        &ndarray::arr1(&[1.0f32, f32::NAN, 2.0]),
        Blocks::new([2]),
    )
    .unwrap();
    for n in [Norm::One, Norm::Inf, Norm::Frobenius] {
        assert!(nan.norm(n).unwrap().is_nan(), "{n:?}");
    }
    let empty = DArray::<f32>::zeros(&ctx, [0, 3], Blocks::new([2, 2])).unwrap();
    assert_eq!(empty.norm(Norm::One).unwrap(), 0.0);
    let cube = DArray::<f32>::ones(&ctx, [2, 2, 2], Blocks::new([1, 1, 1])).unwrap();
    assert!(matches!(
        cube.norm(Norm::One),
        Err(ArrayError::Dimensionality { .. })
    ));
    assert_eq!(cube.norm(Norm::Frobenius).unwrap(), 8f32.sqrt());
}
