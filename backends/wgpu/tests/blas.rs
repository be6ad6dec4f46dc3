//! GEMM and SYRK shaders against a CPU reference in f64, on every adapter: sizes on both
//! sides of the 16- and 64-wide tiles, non-square shapes, every transpose, alpha and beta,
//! leading dimensions and offsets, f64 where the device has it, and the launch-time checks.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use common::{download, rel_error, rounded, upload, Rng};
use dagger_wgpu::blas::{
    gemm, gemm_blocking, syrk, syrk_blocking, Accum, BlasError, Dtype, GemmKernel, GpuMatrix,
    Trans, Triangle,
};
use dagger_wgpu::testing::devices_for_tests;
use dagger_wgpu::{Device, GpuError};

const TRANS: [Trans; 2] = [Trans::No, Trans::Yes];
const ACCUMS: [Accum<f64>; 3] = [Accum::Replace, Accum::Add, Accum::Scale(-0.5)];

/// Element `(i, j)` of `op(X)` for a row-major `X` with leading dimension `ld`.
fn at(x: &[f64], ld: usize, t: Trans, i: usize, j: usize) -> f64 {
    match t {
        Trans::No => x[i * ld + j],
        Trans::Yes => x[j * ld + i],
    }
}

fn beta_of(accum: Accum<f64>) -> Option<f64> {
    match accum {
        Accum::Replace => None,
        Accum::Add => Some(1.0),
        Accum::Scale(b) => Some(b),
    }
}

/// The reference of `C = alpha op(A) op(B) + beta C` in f64 on dense row-major matrices.
#[allow(clippy::too_many_arguments)]
fn gemm_ref(
    ta: Trans,
    tb: Trans,
    alpha: f64,
    a: &[f64],
    b: &[f64],
    accum: Accum<f64>,
    c: &[f64],
    (m, n, k): (usize, usize, usize),
) -> Vec<f64> {
    let lda = if ta == Trans::No { k } else { m };
    let ldb = if tb == Trans::No { n } else { k };
    let mut out = vec![0.0; m * n];
    for i in 0..m {
        for j in 0..n {
            let mut s = 0.0;
            for p in 0..k {
                s += at(a, lda, ta, i, p) * at(b, ldb, tb, p, j);
            }
            out[i * n + j] = alpha * s + beta_of(accum).map_or(0.0, |beta| beta * c[i * n + j]);
        }
    }
    out
}

fn tolerance(dtype: Dtype) -> f64 {
    match dtype {
        Dtype::F32 => 1e-4,
        _ => 1e-12,
    }
}

/// Runs one GEMM on the device and checks it; returns nothing, panics with the case.
#[allow(clippy::too_many_arguments)]
fn gemm_case(
    device: &Device,
    rng: &mut Rng,
    kernel: GemmKernel,
    ta: Trans,
    tb: Trans,
    accum: Accum<f64>,
    (m, n, k): (usize, usize, usize),
    dtype: Dtype,
) {
    let (a, b) = (rng.vec(m * k), rng.vec(k * n));
    let mut c = rng.vec(m * n);
    let alpha = 1.25;
    let want = gemm_ref(ta, tb, alpha, &a, &b, accum, &c, (m, n, k));
    if accum == Accum::Replace {
        c.fill(f64::NAN); // Replace must not read C.
    }
    let (ga, gb, gc) = (
        upload(device, &a, dtype),
        upload(device, &b, dtype),
        upload(device, &c, dtype),
    );
    let (ar, ac) = if ta == Trans::No { (m, k) } else { (k, m) };
    let (br, bc) = if tb == Trans::No { (k, n) } else { (n, k) };
    let u = |x: usize| x as u32;
    gemm_blocking(
        device,
        kernel,
        ta,
        tb,
        alpha,
        GpuMatrix::new(&ga, u(ar), u(ac)),
        GpuMatrix::new(&gb, u(br), u(bc)),
        accum,
        GpuMatrix::new(&gc, u(m), u(n)),
        dtype,
    )
    .unwrap_or_else(|e| panic!("{kernel:?} {m}x{n}x{k}: {e}"));
    let got = download(device, &gc, dtype);
    let err = rel_error(&got, &want);
    assert!(
        err < tolerance(dtype),
        "{}: {kernel:?} {dtype:?} gemm {m}x{n}x{k} {ta:?} {tb:?} {accum:?}: relative error {err:e}",
        device.info().name
    );
}

fn gemm_sweep(device: &Device, kernel: GemmKernel, shapes: &[(usize, usize, usize)], dtype: Dtype) {
    let mut rng = Rng::new(7);
    let mut case = 0;
    for &shape in shapes {
        for ta in TRANS {
            for tb in TRANS {
                let accum = ACCUMS[case % ACCUMS.len()];
                case += 1;
                gemm_case(device, &mut rng, kernel, ta, tb, accum, shape, dtype);
            }
        }
    }
}

fn cube(sizes: &[usize]) -> Vec<(usize, usize, usize)> {
    sizes.iter().map(|&s| (s, s, s)).collect()
}

const NON_SQUARE: [(usize, usize, usize); 5] = [
    (17, 129, 1),
    (65, 3, 130),
    (1, 64, 17),
    (130, 17, 65),
    (64, 1, 63),
];

#[test]
fn tiled_gemm_f32_matches_reference() {
    for device in devices_for_tests() {
        let mut shapes = cube(&[1, 15, 16, 17, 63, 64, 65, 127, 128, 129]);
        shapes.extend(NON_SQUARE);
        gemm_sweep(&device, GemmKernel::Tiled, &shapes, Dtype::F32);
    }
}

#[test]
fn naive_gemm_f32_matches_reference() {
    for device in devices_for_tests() {
        let mut shapes = cube(&[1, 15, 16, 17, 63, 65]);
        shapes.extend(NON_SQUARE);
        gemm_sweep(&device, GemmKernel::Naive, &shapes, Dtype::F32);
    }
}

#[test]
fn gemm_f64_where_the_device_has_it() {
    for device in devices_for_tests() {
        if !device.info().shader_f64 {
            let buf = device.zeroed(64).unwrap();
            let m = GpuMatrix::new(&buf, 2, 2);
            let out = device.zeroed(64).unwrap();
            let err = gemm_blocking(
                &device,
                GemmKernel::Tiled,
                Trans::No,
                Trans::No,
                1.0,
                m,
                m,
                Accum::Replace,
                GpuMatrix::new(&out, 2, 2),
                Dtype::F64,
            )
            .unwrap_err();
            println!("{}: {err}", device.info().name);
            assert!(
                matches!(err, BlasError::Gpu(GpuError::MissingFeature { .. })),
                "{err}"
            );
            continue;
        }
        let mut shapes = cube(&[1, 17, 64, 65, 129]);
        shapes.extend(NON_SQUARE);
        gemm_sweep(&device, GemmKernel::Tiled, &shapes, Dtype::F64);
        gemm_sweep(&device, GemmKernel::Naive, &cube(&[1, 17]), Dtype::F64);
    }
}

/// Blocks of larger matrices: leading dimensions and offsets on A, B and C, with the rest of
/// C's buffer left untouched.
#[test]
fn gemm_on_blocks_with_leading_dimensions_and_offsets() {
    for device in devices_for_tests() {
        for kernel in [GemmKernel::Naive, GemmKernel::Tiled] {
            let mut rng = Rng::new(11);
            let (m, n, k) = (70usize, 33usize, 19usize);
            let (lda, ldb, ldc) = (25usize, 40usize, 81usize);
            let (oa, ob, oc) = (3usize, 5usize, 2 * ldc + 7);
            let big_a = rng.vec(oa + m * lda);
            let big_b = rng.vec(ob + k * ldb);
            let big_c = rng.vec(oc + m * ldc);
            let block = |x: &[f64], off: usize, ld: usize, rows: usize, cols: usize| {
                (0..rows)
                    .flat_map(|i| x[off + i * ld..off + i * ld + cols].to_vec())
                    .collect::<Vec<f64>>()
            };
            let (a, b, c) = (
                block(&big_a, oa, lda, m, k),
                block(&big_b, ob, ldb, k, n),
                block(&big_c, oc, ldc, m, n),
            );
            let accum = Accum::Scale(2.0);
            let want = gemm_ref(Trans::No, Trans::No, -1.0, &a, &b, accum, &c, (m, n, k));
            let (ga, gb, gc) = (
                upload(&device, &big_a, Dtype::F32),
                upload(&device, &big_b, Dtype::F32),
                upload(&device, &big_c, Dtype::F32),
            );
            let u = |x: usize| x as u32;
            gemm_blocking(
                &device,
                kernel,
                Trans::No,
                Trans::No,
                -1.0,
                GpuMatrix::with_ld(&ga, u(m), u(k), u(lda)).offset(u(oa)),
                GpuMatrix::with_ld(&gb, u(k), u(n), u(ldb)).offset(u(ob)),
                accum,
                GpuMatrix::with_ld(&gc, u(m), u(n), u(ldc)).offset(u(oc)),
                Dtype::F32,
            )
            .unwrap();
            let got_big = download(&device, &gc, Dtype::F32);
            let got = block(&got_big, oc, ldc, m, n);
            let err = rel_error(&got, &want);
            assert!(err < 1e-4, "{kernel:?}: relative error {err:e}");
            for (idx, (g, w)) in got_big.iter().zip(&big_c).enumerate() {
                let inside = idx >= oc && (idx - oc) / ldc < m && (idx - oc) % ldc < n;
                if !inside {
                    assert_eq!(
                        *g, *w as f32 as f64,
                        "{kernel:?}: element {idx} was written"
                    );
                }
            }
        }
    }
}

fn syrk_case(
    device: &Device,
    rng: &mut Rng,
    triangle: Triangle,
    op: Trans,
    accum: Accum<f64>,
    (n, k): (usize, usize),
    dtype: Dtype,
) {
    let a = rng.vec(n * k);
    let c = rng.vec(n * n);
    let alpha = -0.75;
    // op(A) op(A)ᵀ is gemm with op(B) = op(A)ᵀ.
    let want = gemm_ref(op, op_flip(op), alpha, &a, &a, accum, &c, (n, n, k));
    let mut initial = c.clone();
    if accum == Accum::Replace {
        for i in 0..n {
            for j in 0..n {
                if in_triangle(triangle, i, j) {
                    initial[i * n + j] = f64::NAN;
                }
            }
        }
    }
    let ga = upload(device, &a, dtype);
    let gc = upload(device, &initial, dtype);
    let (ar, ac) = if op == Trans::No { (n, k) } else { (k, n) };
    syrk_blocking(
        device,
        triangle,
        op,
        alpha,
        GpuMatrix::new(&ga, ar as u32, ac as u32),
        accum,
        GpuMatrix::new(&gc, n as u32, n as u32),
        dtype,
    )
    .unwrap();
    let got = download(device, &gc, dtype);
    let what = format!(
        "{}: syrk {dtype:?} n={n} k={k} {triangle:?} {op:?} {accum:?}",
        device.info().name
    );
    let (mut g, mut w) = (Vec::new(), Vec::new());
    for i in 0..n {
        for j in 0..n {
            if in_triangle(triangle, i, j) {
                g.push(got[i * n + j]);
                w.push(want[i * n + j]);
            } else {
                let before = rounded(initial[i * n + j], dtype);
                assert_eq!(got[i * n + j], before, "{what}: ({i}, {j}) was written");
            }
        }
    }
    let err = rel_error(&g, &w);
    assert!(err < tolerance(dtype), "{what}: relative error {err:e}");
}

fn op_flip(t: Trans) -> Trans {
    match t {
        Trans::No => Trans::Yes,
        Trans::Yes => Trans::No,
    }
}

fn in_triangle(t: Triangle, i: usize, j: usize) -> bool {
    match t {
        Triangle::Lower => i >= j,
        Triangle::Upper => i <= j,
    }
}

#[test]
fn syrk_matches_reference_on_its_triangle_only() {
    for device in devices_for_tests() {
        let mut rng = Rng::new(13);
        let mut dtypes = vec![Dtype::F32];
        if device.info().shader_f64 {
            dtypes.push(Dtype::F64);
        }
        for dtype in dtypes {
            let mut case = 0;
            for shape in [
                (1, 1),
                (15, 16),
                (64, 64),
                (65, 17),
                (129, 129),
                (130, 1),
                (17, 200),
            ] {
                for triangle in [Triangle::Lower, Triangle::Upper] {
                    for op in TRANS {
                        let accum = ACCUMS[case % ACCUMS.len()];
                        case += 1;
                        syrk_case(&device, &mut rng, triangle, op, accum, shape, dtype);
                    }
                }
            }
        }
    }
}

#[test]
fn launch_checks_name_the_shapes() {
    for device in devices_for_tests() {
        let small = device.zeroed(6 * 4).unwrap();
        let other = device.zeroed(6 * 4).unwrap();
        let out = device.zeroed(4 * 4).unwrap();
        let run = |a: GpuMatrix<'_>, b: GpuMatrix<'_>, c: GpuMatrix<'_>| {
            gemm_blocking(
                &device,
                GemmKernel::Tiled,
                Trans::No,
                Trans::No,
                1.0,
                a,
                b,
                Accum::Replace,
                c,
                Dtype::F32,
            )
            .unwrap_err()
        };
        let err = run(
            GpuMatrix::new(&small, 2, 3),
            GpuMatrix::new(&other, 2, 3),
            GpuMatrix::new(&out, 2, 2),
        );
        assert!(matches!(err, BlasError::Shape { .. }), "{err}");
        let text = err.to_string();
        assert!(
            text.contains("op(A) is 2x3, op(B) is 2x3 and C is 2x2"),
            "{text}"
        );

        let err = run(
            GpuMatrix::new(&small, 3, 3),
            GpuMatrix::new(&other, 3, 2),
            GpuMatrix::new(&out, 3, 2),
        );
        match &err {
            BlasError::BufferTooSmall {
                matrix,
                needed,
                bytes,
                ..
            } => assert_eq!((*matrix, *needed, *bytes), ("A", 36, 24)),
            other => panic!("expected BufferTooSmall, got {other}"),
        }
        assert!(err.to_string().contains("3x3 f32"), "{err}");

        let err = run(
            GpuMatrix::with_ld(&small, 2, 3, 2),
            GpuMatrix::new(&other, 3, 2),
            GpuMatrix::new(&out, 2, 2),
        );
        assert!(
            matches!(err, BlasError::LeadingDimension { matrix: "A", .. }),
            "{err}"
        );

        let err = run(
            GpuMatrix::new(&small, 2, 3),
            GpuMatrix::new(&other, 3, 2),
            GpuMatrix::new(&small, 2, 2),
        );
        assert!(matches!(err, BlasError::Aliased { input: "A" }), "{err}");

        let err = syrk_blocking(
            &device,
            Triangle::Lower,
            Trans::Yes,
            1.0,
            GpuMatrix::new(&small, 2, 3),
            Accum::Add,
            GpuMatrix::new(&out, 2, 2),
            Dtype::F32,
        )
        .unwrap_err();
        assert!(
            err.to_string()
                .contains("op(A) is 3x2 and C is 2x2; C must be square"),
            "{err}"
        );
    }
}

fn warm_up(device: &Device) {
    let x = device.zeroed(16).unwrap();
    let y = device.zeroed(16).unwrap();
    let m = |b| GpuMatrix::new(b, 2, 2);
    gemm_blocking(
        device,
        GemmKernel::Tiled,
        Trans::No,
        Trans::No,
        1.0,
        m(&x),
        m(&x),
        Accum::Replace,
        m(&y),
        Dtype::F32,
    )
    .unwrap();
    syrk_blocking(
        device,
        Triangle::Lower,
        Trans::No,
        1.0,
        m(&x),
        Accum::Replace,
        m(&y),
        Dtype::F32,
    )
    .unwrap();
    gemm_blocking(
        device,
        GemmKernel::Naive,
        Trans::No,
        Trans::No,
        1.0,
        m(&x),
        m(&x),
        Accum::Replace,
        m(&y),
        Dtype::F32,
    )
    .unwrap();
}

/// The enqueueing variants batch like any launch, call back once each, and run in order.
#[test]
fn enqueued_launches_call_back_in_order() {
    for device in devices_for_tests() {
        let n = 40u32;
        let ones = device.upload(&vec![1.0f32; (n * n) as usize]).unwrap();
        let c = device.zeroed(u64::from(n * n) * 4).unwrap();
        // Compile both pipelines first: on the GL backend, compiling on this thread while the
        // server waits on a long batch contends for the one GL context.
        warm_up(&device);
        let done = Arc::new(AtomicUsize::new(0));
        let launches = 20;
        for _ in 0..launches {
            let done = Arc::clone(&done);
            gemm(
                &device,
                GemmKernel::Tiled,
                Trans::No,
                Trans::Yes,
                1.0,
                GpuMatrix::new(&ones, n, n),
                GpuMatrix::new(&ones, n, n),
                Accum::Add,
                GpuMatrix::new(&c, n, n),
                Dtype::F32,
                move |r| {
                    r.unwrap();
                    done.fetch_add(1, Ordering::SeqCst);
                },
            )
            .unwrap();
        }
        let done_syrk = Arc::clone(&done);
        let lower = device.zeroed(u64::from(n * n) * 4).unwrap();
        syrk(
            &device,
            Triangle::Lower,
            Trans::No,
            2.0,
            GpuMatrix::new(&ones, n, n),
            Accum::Replace,
            GpuMatrix::new(&lower, n, n),
            Dtype::F32,
            move |r| {
                r.unwrap();
                done_syrk.fetch_add(1, Ordering::SeqCst);
            },
        )
        .unwrap();
        // An empty product calls back at once.
        let empty = Arc::clone(&done);
        gemm(
            &device,
            GemmKernel::Naive,
            Trans::No,
            Trans::No,
            1.0,
            GpuMatrix::new(&ones, 0, 3),
            GpuMatrix::new(&ones, 3, 5),
            Accum::Replace,
            GpuMatrix::new(&c, 0, 5),
            Dtype::F32,
            move |r| {
                r.unwrap();
                empty.fetch_add(1, Ordering::SeqCst);
            },
        )
        .unwrap();
        device.synchronize().unwrap();
        assert_eq!(done.load(Ordering::SeqCst), launches + 2);
        let want = (launches as f32) * n as f32;
        assert!(device
            .download::<f32>(&c)
            .unwrap()
            .iter()
            .all(|&x| x == want));
        let l = device.download::<f32>(&lower).unwrap();
        for i in 0..n as usize {
            for j in 0..n as usize {
                let want = if i >= j { 2.0 * n as f32 } else { 0.0 };
                assert_eq!(l[i * n as usize + j], want, "({i}, {j})");
            }
        }
    }
}

/// GFLOP/s of the naive and tiled kernels at n = 1024 on every adapter:
/// `cargo test -p dagger-wgpu --release --test blas -- --ignored --nocapture gemm_throughput`.
#[test]
#[ignore = "timing; run explicitly with --ignored --nocapture"]
fn gemm_throughput() {
    let n: u32 = std::env::var("DAGGER_GEMM_N")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1024);
    for device in devices_for_tests() {
        let data: Vec<f32> = Rng::new(3)
            .vec((n * n) as usize)
            .into_iter()
            .map(|x| x as f32)
            .collect();
        let a = device.upload(&data).unwrap();
        let b = device.upload(&data).unwrap();
        let c = device.zeroed(u64::from(n * n) * 4).unwrap();
        let mut rates = Vec::new();
        for kernel in [GemmKernel::Naive, GemmKernel::Tiled] {
            let run = || {
                gemm_blocking(
                    &device,
                    kernel,
                    Trans::No,
                    Trans::No,
                    1.0,
                    GpuMatrix::new(&a, n, n),
                    GpuMatrix::new(&b, n, n),
                    Accum::Replace,
                    GpuMatrix::new(&c, n, n),
                    Dtype::F32,
                )
                .unwrap()
            };
            run(); // compile and warm up
            let reps = 3;
            let mut best = f64::INFINITY;
            for _ in 0..reps {
                let t = std::time::Instant::now();
                run();
                best = best.min(t.elapsed().as_secs_f64());
            }
            let gflops = 2.0 * f64::from(n).powi(3) / best / 1e9;
            println!(
                "{} ({}): {kernel:?} gemm n={n}: {gflops:.2} GFLOP/s ({:.1} ms)",
                device.info().name,
                device.info().backend,
                best * 1e3
            );
            rates.push(gflops);
        }
        println!(
            "{}: tiled / naive = {:.1}x",
            device.info().name,
            rates[1] / rates[0]
        );
    }
}
