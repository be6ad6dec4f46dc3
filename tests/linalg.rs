//! Blocked matrix multiplication on DArrays, on the CPU scope, each GPU and the default
//! scope, against an f64 reference.

mod common;

use common::within;

use dagger::prelude::*;
use dagger::{Gemm, GemmKernel, ProcessorKind, Trans, Triangle};
use ndarray::Array2;

fn scopes(ctx: &Context) -> Vec<(Scope, bool)> {
    let mut v = vec![(Scope::cpu(), true), (Scope::default_scope(), true)];
    for info in common::gpus_or_skip(ctx, "the GPU scopes") {
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
    within(600, "matmul_matches_the_reference_everywhere", || {
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
    });
}

#[test]
fn matmul_shape_errors_name_both_shapes() {
    within(600, "matmul_shape_errors_name_both_shapes", || {
        let ctx = Context::builder().threads(1).build().unwrap();
        let a = DArray::<f32>::zeros(&ctx, [3, 4], Blocks::new([2, 2])).unwrap();
        let e = a.matmul(&a).unwrap_err().to_string();
        assert!(e.contains("[3, 4]") && e.contains("matmul"), "{e}");
        let empty = DArray::<f32>::zeros(&ctx, [3, 0], Blocks::new([2, 2])).unwrap();
        let z = DArray::<f32>::zeros(&ctx, [0, 5], Blocks::new([2, 2])).unwrap();
        let c = empty.matmul(&z).unwrap().collect2().unwrap();
        assert_eq!(c, Array2::<f32>::zeros((3, 5)));
    });
}

#[test]
fn tiles_land_where_the_scope_says() {
    within(600, "tiles_land_where_the_scope_says", || {
        let ctx = Context::builder().threads(2).build().unwrap();
        if common::gpus_or_skip(&ctx, "tile placement").is_empty() {
            return;
        }
        let gpus = ctx.processors_of_kind(ProcessorKind::Wgpu);
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
    });
}

/// `op(X)` of a host matrix.
fn op(x: &Array2<f64>, t: Trans) -> Array2<f64> {
    match t {
        Trans::No => x.clone(),
        Trans::Yes => x.t().to_owned(),
    }
}

fn host<T: Gemm + Into<f64>>(x: &DArray<T>) -> Array2<f64> {
    x.collect2().unwrap().mapv(|v| v.into())
}

const TRANS: [Trans; 2] = [Trans::No, Trans::Yes];
const SIZES: [(usize, usize, usize, usize); 5] = [
    (1, 1, 1, 16),
    (15, 16, 17, 16),
    (17, 33, 16, 16),
    (129, 127, 128, 64),
    (40, 7, 90, 32),
];

#[allow(clippy::too_many_arguments)]
fn check_gemm<T: Gemm + Into<f64>>(
    ctx: &Context,
    scope: &Scope,
    (m, k, n, block): (usize, usize, usize, usize),
    ta: Trans,
    tb: Trans,
    beta: f64,
    kernel: GemmKernel,
    tol: f64,
) {
    let stored = |r, c, t| if t == Trans::No { [r, c] } else { [c, r] };
    let a = DArray::<T>::randn(ctx, stored(m, k, ta), Blocks::new([block, block + 1]), 3).unwrap();
    let b = DArray::<T>::randn(ctx, stored(k, n, tb), Blocks::new([block + 2, block]), 4).unwrap();
    let c0 = DArray::<T>::randn(ctx, [m, n], Blocks::new([block, block + 3]), 5).unwrap();
    let mut c = c0.clone();
    let (alpha, beta_t) = (T::from_f64(0.75), T::from_f64(beta));
    with_options(Options::new().scope(scope.clone()), || {
        c.gemm_with(kernel, ta, tb, alpha, &a, &b, beta_t)
    })
    .unwrap();
    let want = op(&host(&a), ta).dot(&op(&host(&b), tb)) * 0.75 + host(&c0) * beta;
    let e = rel_err(&host(&c), &want);
    assert!(
        e < tol,
        "gemm {ta:?}{tb:?} beta {beta} {m}x{k}x{n} block {block} {kernel:?} on {scope}: relative error {e}"
    );
    assert_eq!(c.shape(), vec![m, n]);
}

#[test]
fn gemm_every_transpose_and_beta_everywhere() {
    within(600, "gemm_every_transpose_and_beta_everywhere", || {
        let ctx = Context::builder().threads(2).build().unwrap();
        for (scope, f64_ok) in scopes(&ctx) {
            for (s, &size) in SIZES.iter().enumerate() {
                for (t, (&ta, &tb)) in TRANS
                    .iter()
                    .flat_map(|a| TRANS.iter().map(move |b| (a, b)))
                    .enumerate()
                {
                    let beta = [0.0, 1.0, -0.5][(s + t) % 3];
                    let kernel = GemmKernel::Tiled;
                    check_gemm::<f32>(&ctx, &scope, size, ta, tb, beta, kernel, 1e-5);
                    if f64_ok {
                        check_gemm::<f64>(&ctx, &scope, size, ta, tb, beta, kernel, 1e-12);
                    }
                }
            }
            // The naive GPU kernel, the reference the tiled one is measured against.
            for &(ta, tb) in &[(Trans::No, Trans::No), (Trans::Yes, Trans::Yes)] {
                let kernel = GemmKernel::Naive;
                check_gemm::<f32>(&ctx, &scope, SIZES[3], ta, tb, -0.5, kernel, 1e-5);
            }
        }
    });
}

#[test]
fn gemm_shape_errors_name_the_shapes() {
    within(600, "gemm_shape_errors_name_the_shapes", || {
        let ctx = Context::builder().threads(1).build().unwrap();
        let a = DArray::<f64>::zeros(&ctx, [3, 4], Blocks::new([2, 2])).unwrap();
        let mut c = DArray::<f64>::zeros(&ctx, [3, 3], Blocks::new([2, 2])).unwrap();
        let e = c
            .gemm(Trans::No, Trans::No, 1.0, &a, &a, 0.0)
            .unwrap_err()
            .to_string();
        assert!(e.contains("[3, 4]") && e.contains("inner"), "{e}");
        let e = c
            .gemm(Trans::Yes, Trans::No, 1.0, &a, &a, 0.0)
            .unwrap_err()
            .to_string();
        assert!(e.contains("[4, 4]") && e.contains("[3, 3]"), "{e}");
        // c is unchanged and usable.
        c.gemm(Trans::No, Trans::Yes, 1.0, &a, &a, 0.0).unwrap();
        assert_eq!(c.collect2().unwrap(), Array2::<f64>::zeros((3, 3)));
    });
}

fn check_syrk<T: Gemm + Into<f64>>(
    ctx: &Context,
    scope: &Scope,
    (n, k, block): (usize, usize, usize),
    triangle: Triangle,
    t: Trans,
    beta: f64,
    tol: f64,
) {
    let stored = if t == Trans::No { [n, k] } else { [k, n] };
    let a = DArray::<T>::randn(ctx, stored, Blocks::new([block + 1, block]), 6).unwrap();
    // A blocking that is not square: the result is re-blocked along the rows.
    let c0 = DArray::<T>::randn(ctx, [n, n], Blocks::new([block, block + 5]), 7).unwrap();
    let mut c = c0.clone();
    with_options(Options::new().scope(scope.clone()), || {
        c.syrk(triangle, t, T::from_f64(-1.5), &a, T::from_f64(beta))
    })
    .unwrap();
    let ha = host(&a);
    let full = op(&ha, t).dot(&op(&ha, t).t()) * -1.5 + host(&c0) * beta;
    let (got, old) = (host(&c), host(&c0));
    let inside = |i: usize, j: usize| match triangle {
        Triangle::Lower => i >= j,
        Triangle::Upper => i <= j,
    };
    let mut want = old.clone();
    for ((i, j), w) in want.indexed_iter_mut() {
        if inside(i, j) {
            *w = full[[i, j]];
        }
    }
    let e = rel_err(&got, &want);
    assert!(
        e < tol,
        "syrk {triangle:?} {t:?} beta {beta} n {n} k {k} block {block} on {scope}: relative error {e}"
    );
    for ((i, j), g) in got.indexed_iter() {
        if !inside(i, j) {
            assert_eq!(*g, old[[i, j]], "({i}, {j}) outside the triangle changed");
        }
    }
    // Mirrored, the result is the full symmetric update.
    c.mirror(triangle).unwrap();
    let sym = host(&c);
    for ((i, j), g) in sym.indexed_iter() {
        let (si, sj) = if inside(i, j) { (i, j) } else { (j, i) };
        assert_eq!(*g, got[[si, sj]], "mirror at ({i}, {j})");
    }
}

#[test]
fn syrk_both_triangles_and_transposes_everywhere() {
    within(600, "syrk_both_triangles_and_transposes_everywhere", || {
        let ctx = Context::builder().threads(2).build().unwrap();
        for (scope, f64_ok) in scopes(&ctx) {
            for (s, &size) in [
                (1, 1, 16),
                (15, 17, 16),
                (17, 16, 16),
                (129, 40, 64),
                (33, 127, 16),
            ]
            .iter()
            .enumerate()
            {
                for (t, (&tri, &tr)) in [Triangle::Lower, Triangle::Upper]
                    .iter()
                    .flat_map(|a| TRANS.iter().map(move |b| (a, b)))
                    .enumerate()
                {
                    let beta = [0.0, 1.0, 0.25][(s + t) % 3];
                    check_syrk::<f32>(&ctx, &scope, size, tri, tr, beta, 1e-5);
                    if f64_ok {
                        check_syrk::<f64>(&ctx, &scope, size, tri, tr, beta, 1e-12);
                    }
                }
            }
        }
    });
}

/// A seeded symmetric positive definite matrix: M Mᵀ / n + I.
fn spd(n: usize, seed: u64) -> Array2<f64> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let m = Array2::from_shape_fn((n, n), |_| {
        s ^= s >> 12;
        s ^= s << 25;
        s ^= s >> 27;
        ((s.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 40) as f64 / (1u64 << 24) as f64) - 0.5
    });
    m.dot(&m.t()) / n as f64 + Array2::<f64>::eye(n)
}

fn check_cholesky<T: Gemm + Into<f64>>(
    ctx: &Context,
    scope: &Scope,
    n: usize,
    block: usize,
    tol: f64,
) {
    let a = spd(n, n as u64);
    let mut lower = a.clone();
    // Only the lower triangle is read: garbage above the diagonal must not matter.
    for ((i, j), x) in lower.indexed_iter_mut() {
        if j > i {
            *x = 1e6;
        }
    }
    let d = DArray::distribute(ctx, &lower.mapv(T::from_f64), Blocks::new([block, block])).unwrap();
    let l = with_options(Options::new().scope(scope.clone()), || d.cholesky()).unwrap();
    let hl = host(&l);
    for ((i, j), x) in hl.indexed_iter() {
        if j > i {
            assert_eq!(*x, 0.0, "L({i}, {j}) above the diagonal");
        }
    }
    let e = rel_err(&hl.dot(&hl.t()), &a);
    assert!(
        e < tol,
        "cholesky n {n} block {block} on {scope}: |L Lᵀ - A| / |A| = {e}"
    );
}

#[test]
fn cholesky_factors_everywhere() {
    within(600, "cholesky_factors_everywhere", || {
        let ctx = Context::builder().threads(2).build().unwrap();
        let mut all = scopes(&ctx);
        if all.len() > 2 {
            // CPU threads and GPUs together: tiles go where the cost model puts them.
            let mixed = Scope::union([Scope::cpu(), Scope::gpus(..)]).unwrap();
            all.push((mixed, false));
        }
        for (scope, f64_ok) in all {
            for &(n, block) in &[
                (1, 16),
                (15, 16),
                (16, 16),
                (17, 16),
                (127, 32),
                (128, 32),
                (129, 32),
                (200, 64),
            ] {
                check_cholesky::<f32>(&ctx, &scope, n, block, 1e-5);
                if f64_ok {
                    check_cholesky::<f64>(&ctx, &scope, n, block, 1e-13);
                }
            }
        }
    });
}

#[test]
fn cholesky_of_a_matrix_that_is_not_positive_definite_names_block_and_pivot() {
    within(
        600,
        "cholesky_of_a_matrix_that_is_not_positive_definite_names_block_and_pivot",
        || {
            let ctx = Context::builder().threads(2).build().unwrap();
            let mut a = spd(50, 9);
            // Row 37 (block 2 of 16-row blocks, pivot 5 there) makes the matrix indefinite.
            a[[37, 37]] = -100.0;
            let d = DArray::distribute(&ctx, &a.mapv(|x| x as f32), Blocks::new([16, 16])).unwrap();
            // On CPU threads the tile task fails; on a GPU the tile reports the pivot it stopped at.
            for (scope, _) in scopes(&ctx) {
                let err =
                    with_options(Options::new().scope(scope.clone()), || d.cholesky()).unwrap_err();
                assert!(
                    matches!(
                        err,
                        dagger::ArrayError::NotPositiveDefinite {
                            block: 2,
                            pivot: 5,
                            row: 37
                        }
                    ),
                    "on {scope}: {err:?}"
                );
                let msg = err.to_string();
                assert!(msg.contains("block 2") && msg.contains("row 37"), "{msg}");
            }
            // Not square.
            let r = DArray::<f64>::zeros(&ctx, [4, 5], Blocks::new([2, 2])).unwrap();
            assert!(r.cholesky().unwrap_err().to_string().contains("[4, 5]"));
            // The context works afterwards.
            let ok = DArray::distribute(&ctx, &spd(20, 1), Blocks::new([8, 8])).unwrap();
            assert!(ok.cholesky().is_ok());
        },
    );
}
