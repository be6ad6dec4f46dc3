//! The Cholesky tile kernels POTRF and TRSM against `dagger_cpu`'s in f64, on every adapter:
//! sizes on both sides of the 16-column blocks and the 64-row TRSM workgroups, f64 where the
//! device has it, leading dimensions and offsets, untouched upper triangles and surroundings,
//! the first failing pivot of matrices that are not positive definite, and the launch-time
//! checks.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use common::{download, dtypes, rel_error, rounded, upload, Rng};
use dagger_cpu::{Diag, MatMut, MatRef, PotrfError, Side, Trans, Triangle};
use dagger_wgpu::blas::{potrf, potrf_blocking, trsm, trsm_blocking, BlasError, Dtype, GpuMatrix};
use dagger_wgpu::testing::devices_for_tests;
use dagger_wgpu::{Device, GpuBuffer, GpuError};

/// What the strict upper triangle of a POTRF input holds: it must come back as it was.
const SENTINEL: f64 = 7.0;

/// Tolerance of a backward error (`‖L Lᵀ − A‖ / ‖A‖`, `‖X Lᵀ − B‖ / ‖B‖`).
fn residual_tolerance(dtype: Dtype) -> f64 {
    match dtype {
        Dtype::F32 => 1e-5,
        _ => 1e-13,
    }
}

/// Tolerance of the difference to the CPU's result, for the well-conditioned test matrices.
fn forward_tolerance(dtype: Dtype) -> f64 {
    match dtype {
        Dtype::F32 => 1e-4,
        _ => 1e-12,
    }
}

/// A dense `n x n` symmetric positive definite `A = M Mᵀ + n I`, row-major.
fn spd(rng: &mut Rng, n: usize) -> Vec<f64> {
    let m = rng.vec(n * n);
    let mut a = vec![0.0; n * n];
    for i in 0..n {
        for j in 0..=i {
            let s: f64 = (0..n).map(|p| m[i * n + p] * m[j * n + p]).sum();
            let v = s + if i == j { n as f64 } else { 0.0 };
            a[i * n + j] = v;
            a[j * n + i] = v;
        }
    }
    a
}

/// The lower triangle of a dense `n x n` matrix, the strict upper one set to `upper`.
fn lower_with(a: &[f64], n: usize, upper: f64) -> Vec<f64> {
    let mut out = a.to_vec();
    for i in 0..n {
        for j in i + 1..n {
            out[i * n + j] = upper;
        }
    }
    out
}

/// `dagger_cpu::potrf` of the lower triangle of `a`, in f64; the strict upper part zeroed.
fn cpu_potrf(a: &[f64], n: usize) -> Result<Vec<f64>, PotrfError> {
    let mut l = lower_with(a, n, 0.0);
    dagger_cpu::potrf(Triangle::Lower, MatMut::new(&mut l, n, n))?;
    Ok(l)
}

/// `‖L Lᵀ − A‖ / ‖A‖` over the lower triangle, reading only the lower triangle of `l`.
fn cholesky_residual(l: &[f64], a: &[f64], n: usize) -> f64 {
    let (mut diff, mut norm) = (0.0, 0.0);
    for i in 0..n {
        for j in 0..=i {
            let s: f64 = (0..=j).map(|p| l[i * n + p] * l[j * n + p]).sum();
            diff += (s - a[i * n + j]) * (s - a[i * n + j]);
            norm += a[i * n + j] * a[i * n + j];
        }
    }
    (diff / norm).sqrt()
}

/// The lower triangle of a dense `n x n` matrix, packed row by row.
fn packed_lower(x: &[f64], n: usize) -> Vec<f64> {
    (0..n)
        .flat_map(|i| x[i * n..i * n + i + 1].to_vec())
        .collect()
}

fn potrf_case(device: &Device, rng: &mut Rng, n: usize, dtype: Dtype) {
    let what = format!("{}: potrf {dtype:?} n={n}", device.info().name);
    let a = spd(rng, n);
    let input = lower_with(&a, n, SENTINEL);
    let buf = upload(device, &input, dtype);
    potrf_blocking(device, GpuMatrix::new(&buf, n as u32, n as u32), dtype)
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    let got = download(device, &buf, dtype);
    for i in 0..n {
        for j in i + 1..n {
            assert_eq!(
                got[i * n + j].to_bits(),
                SENTINEL.to_bits(),
                "{what}: upper ({i}, {j}) was written"
            );
        }
    }
    let a_device: Vec<f64> = a.iter().map(|&x| rounded(x, dtype)).collect();
    let residual = cholesky_residual(&got, &a_device, n);
    assert!(
        residual < residual_tolerance(dtype),
        "{what}: ‖L Lᵀ − A‖ / ‖A‖ = {residual:e}"
    );
    let want = cpu_potrf(&a_device, n).unwrap();
    let err = rel_error(&packed_lower(&got, n), &packed_lower(&want, n));
    assert!(
        err < forward_tolerance(dtype),
        "{what}: ‖L − L_cpu‖ / ‖L_cpu‖ = {err:e}"
    );
}

#[test]
fn potrf_matches_cpu_and_leaves_the_upper_triangle() {
    for device in devices_for_tests() {
        for dtype in dtypes(&device) {
            let mut rng = Rng::new(17);
            for n in [1, 2, 15, 16, 17, 64, 127, 128, 129, 300] {
                potrf_case(&device, &mut rng, n, dtype);
            }
        }
    }
}

/// A block of a larger buffer: leading dimension and offset, everything outside the block's
/// lower triangle unchanged.
#[test]
fn potrf_on_a_block_with_leading_dimension_and_offset() {
    for device in devices_for_tests() {
        for dtype in dtypes(&device) {
            for (n, ld, off) in [(37usize, 50usize, 2 * 50 + 9), (129, 131, 3)] {
                let what = format!(
                    "{}: potrf {dtype:?} n={n} ld={ld} offset={off}",
                    device.info().name
                );
                let mut rng = Rng::new(n as u64);
                let a = spd(&mut rng, n);
                let mut big = rng.vec(off + n * ld + 5);
                for i in 0..n {
                    for j in 0..=i {
                        big[off + i * ld + j] = a[i * n + j];
                    }
                }
                let buf = upload(&device, &big, dtype);
                potrf_blocking(
                    &device,
                    GpuMatrix::with_ld(&buf, n as u32, n as u32, ld as u32).offset(off as u32),
                    dtype,
                )
                .unwrap_or_else(|e| panic!("{what}: {e}"));
                let got_big = download(&device, &buf, dtype);
                let mut got = vec![0.0; n * n];
                for (idx, (g, w)) in got_big.iter().zip(&big).enumerate() {
                    // (row, column) in the block, if the element is in its lower triangle.
                    let lower = idx
                        .checked_sub(off)
                        .map(|rel| (rel / ld, rel % ld))
                        .filter(|&(i, j)| i < n && j <= i);
                    if let Some((i, j)) = lower {
                        got[i * n + j] = *g;
                    } else {
                        assert_eq!(*g, rounded(*w, dtype), "{what}: element {idx} was written");
                    }
                }
                let a_device: Vec<f64> = a.iter().map(|&x| rounded(x, dtype)).collect();
                let residual = cholesky_residual(&got, &a_device, n);
                assert!(
                    residual < residual_tolerance(dtype),
                    "{what}: ‖L Lᵀ − A‖ / ‖A‖ = {residual:e}"
                );
                let want = cpu_potrf(&a_device, n).unwrap();
                let err = rel_error(&packed_lower(&got, n), &packed_lower(&want, n));
                assert!(err < forward_tolerance(dtype), "{what}: error {err:e}");
            }
        }
    }
}

/// An SPD matrix `L0 L0ᵀ` whose pivot `bad` is made `-1` (or NaN): the Schur complement's
/// diagonal at `bad` is `A[bad][bad] − Σ L0[bad][q]²`, and every pivot before it is intact.
fn spoiled(rng: &mut Rng, n: usize, bad: usize, nan: bool) -> Vec<f64> {
    let mut l0 = vec![0.0; n * n];
    for i in 0..n {
        for j in 0..i {
            l0[i * n + j] = rng.next() * 0.5;
        }
        l0[i * n + i] = 1.5 + rng.next() * 0.5;
    }
    let mut a = vec![0.0; n * n];
    for i in 0..n {
        for j in 0..n {
            a[i * n + j] = (0..n).map(|p| l0[i * n + p] * l0[j * n + p]).sum();
        }
    }
    // Values that f32 holds exactly keep the pivots before `bad` positive in either type.
    for x in &mut a {
        *x = f64::from(*x as f32);
    }
    a[bad * n + bad] = if nan {
        f64::NAN
    } else {
        let d = l0[bad * n + bad];
        f64::from((a[bad * n + bad] - d * d - 1.0) as f32)
    };
    a
}

#[test]
fn potrf_reports_the_first_pivot_that_is_not_positive() {
    for device in devices_for_tests() {
        for dtype in dtypes(&device) {
            let mut rng = Rng::new(5);
            // Pivot 5 of a 9x9 matrix, one at the start of a 16-column block, one inside the
            // second block, the last one, the first one, and NaN pivots.
            for (n, bad, nan) in [
                (9, 5, false),
                (40, 16, false),
                (40, 21, false),
                (33, 32, false),
                (20, 0, false),
                (9, 3, true),
                (40, 30, true),
            ] {
                let what = format!(
                    "{}: potrf {dtype:?} n={n}, pivot {bad}{}",
                    device.info().name,
                    if nan { " NaN" } else { "" }
                );
                let a = spoiled(&mut rng, n, bad, nan);
                if !nan {
                    assert_eq!(
                        cpu_potrf(&a, n).unwrap_err(),
                        PotrfError::NotPositiveDefinite { pivot: bad },
                        "{what}: the CPU disagrees about the test matrix"
                    );
                }
                let buf = upload(&device, &lower_with(&a, n, SENTINEL), dtype);
                let err = potrf_blocking(&device, GpuMatrix::new(&buf, n as u32, n as u32), dtype)
                    .unwrap_err();
                match err {
                    BlasError::NotPositiveDefinite { pivot } => {
                        assert_eq!(pivot, bad, "{what}: wrong pivot")
                    }
                    other => panic!("{what}: expected NotPositiveDefinite, got {other}"),
                }
                let text = err.to_string();
                assert!(text.contains(&format!("pivot {bad} (0-based)")), "{text}");
                let got = download(&device, &buf, dtype);
                for i in 0..n {
                    for j in i + 1..n {
                        assert_eq!(got[i * n + j], SENTINEL, "{what}: upper ({i}, {j}) written");
                    }
                }
            }
            // Indefinite, as in the docs: [[1, 2], [2, 1]] fails at pivot 1, and a negative
            // first element at pivot 0.
            for (data, pivot) in [([1.0, 0.0, 2.0, 1.0], 1), ([-1.0, 0.0, 0.5, 1.0], 0)] {
                let mut cpu = data;
                assert_eq!(
                    dagger_cpu::potrf(Triangle::Lower, MatMut::new(&mut cpu, 2, 2)),
                    Err(PotrfError::NotPositiveDefinite { pivot })
                );
                let buf = upload(&device, &data, dtype);
                let err = potrf_blocking(&device, GpuMatrix::new(&buf, 2, 2), dtype).unwrap_err();
                assert!(
                    matches!(err, BlasError::NotPositiveDefinite { pivot: p } if p == pivot),
                    "{data:?}: {err}"
                );
            }
        }
    }
}

/// The enqueueing POTRF writes its status word whatever it held before: pivot + 1 on
/// failure, 0 on success; an empty matrix calls back at once and leaves it alone.
#[test]
fn potrf_enqueued_reports_through_info() {
    for device in devices_for_tests() {
        let mut rng = Rng::new(9);
        let n = 24usize;
        let good = upload(&device, &spd(&mut rng, n), Dtype::F32);
        let bad = upload(&device, &spoiled(&mut rng, n, 19, false), Dtype::F32);
        let info_good = device.upload(&[0xdead_beef_u32]).unwrap();
        let info_bad = device.upload(&[0u32, 0xdead_beef]).unwrap();
        let info_empty = device.upload(&[0xdead_beef_u32]).unwrap();
        let done = Arc::new(AtomicUsize::new(0));
        let matrices = [
            (&good, &info_good, n),
            (&bad, &info_bad, n),
            (&good, &info_empty, 0),
        ];
        for (a, info, size) in matrices {
            let done = Arc::clone(&done);
            potrf(
                &device,
                GpuMatrix::with_ld(a, size as u32, size as u32, n as u32),
                info,
                Dtype::F32,
                move |r| {
                    r.unwrap();
                    done.fetch_add(1, Ordering::SeqCst);
                },
            )
            .unwrap();
        }
        device.synchronize().unwrap();
        assert_eq!(done.load(Ordering::SeqCst), 3);
        assert_eq!(device.download::<u32>(&info_good).unwrap(), [0]);
        assert_eq!(
            device.download::<u32>(&info_bad).unwrap(),
            [20, 0xdead_beef]
        );
        assert_eq!(device.download::<u32>(&info_empty).unwrap(), [0xdead_beef]);
    }
}

/// A well-conditioned lower-triangular `n x n` L (a Cholesky factor from the CPU), its strict
/// upper triangle NaN: the kernel must not read it.
fn lower_factor(rng: &mut Rng, n: usize) -> Vec<f64> {
    let l = cpu_potrf(&spd(rng, n), n).unwrap();
    lower_with(&l, n, f64::NAN)
}

/// `dagger_cpu::trsm` of the tiled Cholesky panel solve, in f64.
fn cpu_trsm(l: &[f64], b: &[f64], m: usize, n: usize) -> Vec<f64> {
    let l = lower_with(l, n, 0.0);
    let mut x = b.to_vec();
    dagger_cpu::trsm(
        Side::Right,
        Triangle::Lower,
        Trans::Yes,
        Diag::NonUnit,
        1.0,
        MatRef::new(&l, n, n),
        MatMut::new(&mut x, m, n),
    );
    x
}

/// `‖X Lᵀ − B‖ / ‖B‖`, reading only the lower triangle of `l`.
fn trsm_residual(x: &[f64], l: &[f64], b: &[f64], m: usize, n: usize) -> f64 {
    let mut xl = vec![0.0; m * n];
    for i in 0..m {
        for j in 0..n {
            xl[i * n + j] = (0..=j).map(|p| x[i * n + p] * l[j * n + p]).sum();
        }
    }
    rel_error(&xl, b)
}

#[test]
fn trsm_solves_x_lt_equals_b() {
    for device in devices_for_tests() {
        for dtype in dtypes(&device) {
            let mut rng = Rng::new(23);
            for n in [1usize, 16, 17, 128, 130] {
                let l = lower_factor(&mut rng, n);
                let l_device: Vec<f64> = l.iter().map(|&x| rounded(x, dtype)).collect();
                let gl = upload(&device, &l, dtype);
                for m in [1usize, 15, 17, 129] {
                    let what = format!("{}: trsm {dtype:?} m={m} n={n}", device.info().name);
                    let b: Vec<f64> = rng.vec(m * n).iter().map(|&x| rounded(x, dtype)).collect();
                    let gb = upload(&device, &b, dtype);
                    trsm_blocking(
                        &device,
                        GpuMatrix::new(&gl, n as u32, n as u32),
                        GpuMatrix::new(&gb, m as u32, n as u32),
                        dtype,
                    )
                    .unwrap_or_else(|e| panic!("{what}: {e}"));
                    let x = download(&device, &gb, dtype);
                    let residual = trsm_residual(&x, &l_device, &b, m, n);
                    assert!(
                        residual < residual_tolerance(dtype),
                        "{what}: ‖X Lᵀ − B‖ / ‖B‖ = {residual:e}"
                    );
                    let want = cpu_trsm(&l_device, &b, m, n);
                    let err = rel_error(&x, &want);
                    assert!(
                        err < forward_tolerance(dtype),
                        "{what}: ‖X − X_cpu‖ / ‖X_cpu‖ = {err:e}"
                    );
                }
            }
        }
    }
}

/// Blocks of larger buffers for L and B; the rest of B's buffer unchanged.
#[test]
fn trsm_on_blocks_with_leading_dimensions_and_offsets() {
    for device in devices_for_tests() {
        let dtype = Dtype::F32;
        let mut rng = Rng::new(29);
        let (m, n) = (70usize, 33usize);
        let (ldl, ldb) = (40usize, 51usize);
        let (ol, ob) = (5usize, 3 * ldb + 11);
        let l = lower_factor(&mut rng, n);
        let mut big_l = rng.vec(ol + n * ldl);
        for i in 0..n {
            big_l[ol + i * ldl..ol + i * ldl + n].copy_from_slice(&l[i * n..(i + 1) * n]);
        }
        let big_b: Vec<f64> = rng
            .vec(ob + m * ldb + 7)
            .iter()
            .map(|&x| rounded(x, dtype))
            .collect();
        let b: Vec<f64> = (0..m)
            .flat_map(|i| big_b[ob + i * ldb..ob + i * ldb + n].to_vec())
            .collect();
        let (gl, gb) = (
            upload(&device, &big_l, dtype),
            upload(&device, &big_b, dtype),
        );
        trsm_blocking(
            &device,
            GpuMatrix::with_ld(&gl, n as u32, n as u32, ldl as u32).offset(ol as u32),
            GpuMatrix::with_ld(&gb, m as u32, n as u32, ldb as u32).offset(ob as u32),
            dtype,
        )
        .unwrap();
        let got_big = download(&device, &gb, dtype);
        let mut x = Vec::with_capacity(m * n);
        for (idx, (g, w)) in got_big.iter().zip(&big_b).enumerate() {
            let inside = idx >= ob && (idx - ob) / ldb < m && (idx - ob) % ldb < n;
            if inside {
                x.push(*g);
            } else {
                assert_eq!(g, w, "element {idx} of B's buffer was written");
            }
        }
        let l_device: Vec<f64> = l.iter().map(|&v| rounded(v, dtype)).collect();
        let residual = trsm_residual(&x, &l_device, &b, m, n);
        assert!(
            residual < residual_tolerance(dtype),
            "‖X Lᵀ − B‖ / ‖B‖ = {residual:e}"
        );
    }
}

/// POTRF then TRSM on the first block column of a 2x2-tiled SPD matrix gives the factor's
/// first block column, as a tiled Cholesky factorization uses them; enqueued, in order.
#[test]
fn potrf_then_trsm_give_a_block_column_of_the_factor() {
    for device in devices_for_tests() {
        let mut rng = Rng::new(31);
        let (nb, rows) = (48usize, 80usize);
        let n = nb + rows;
        let a: Vec<f64> = spd(&mut rng, n)
            .iter()
            .map(|&x| rounded(x, Dtype::F32))
            .collect();
        let want = cpu_potrf(&a, n).unwrap();
        let diag = device
            .upload(
                &(0..nb * nb)
                    .map(|k| a[(k / nb) * n + k % nb] as f32)
                    .collect::<Vec<_>>(),
            )
            .unwrap();
        let panel = device
            .upload(
                &(0..rows * nb)
                    .map(|k| a[(nb + k / nb) * n + k % nb] as f32)
                    .collect::<Vec<_>>(),
            )
            .unwrap();
        let info = device.alloc(4).unwrap();
        let done = Arc::new(AtomicUsize::new(0));
        let d1 = Arc::clone(&done);
        potrf(
            &device,
            GpuMatrix::new(&diag, nb as u32, nb as u32),
            &info,
            Dtype::F32,
            move |r| {
                r.unwrap();
                d1.fetch_add(1, Ordering::SeqCst);
            },
        )
        .unwrap();
        let d2 = Arc::clone(&done);
        trsm(
            &device,
            GpuMatrix::new(&diag, nb as u32, nb as u32),
            GpuMatrix::new(&panel, rows as u32, nb as u32),
            Dtype::F32,
            move |r| {
                r.unwrap();
                assert_eq!(d2.fetch_add(1, Ordering::SeqCst), 1, "out of order");
            },
        )
        .unwrap();
        device.synchronize().unwrap();
        assert_eq!(done.load(Ordering::SeqCst), 2);
        assert_eq!(device.download::<u32>(&info).unwrap(), [0]);
        let l11 = device.download::<f32>(&diag).unwrap();
        let l21 = device.download::<f32>(&panel).unwrap();
        let (mut got, mut expected) = (Vec::new(), Vec::new());
        for i in 0..n {
            for j in 0..nb.min(i + 1) {
                got.push(f64::from(if i < nb {
                    l11[i * nb + j]
                } else {
                    l21[(i - nb) * nb + j]
                }));
                expected.push(want[i * n + j]);
            }
        }
        let err = rel_error(&got, &expected);
        assert!(err < 1e-4, "block column of L: relative error {err:e}");
    }
}

/// A 1024x1024 POTRF and a TRSM over several 256-column dispatches: sizes at which a kernel
/// whose invocations loop too long comes back wrong on llvmpipe and lavapipe (they end an
/// invocation's loops after 65535 iterations in all, silently).
#[test]
fn potrf_and_trsm_on_large_tiles() {
    let n = 1024;
    let mut rng = Rng::new(37);
    let a: Vec<f64> = spd(&mut rng, n)
        .iter()
        .map(|&x| rounded(x, Dtype::F32))
        .collect();
    let want = cpu_potrf(&a, n).unwrap();
    let (m, nt) = (40usize, 600usize);
    let l = lower_factor(&mut rng, nt);
    let l_device: Vec<f64> = l.iter().map(|&x| rounded(x, Dtype::F32)).collect();
    let b: Vec<f64> = rng
        .vec(m * nt)
        .iter()
        .map(|&x| rounded(x, Dtype::F32))
        .collect();
    let want_x = cpu_trsm(&l_device, &b, m, nt);
    for device in devices_for_tests() {
        let what = format!("{}: n={n}", device.info().name);
        let buf = upload(&device, &lower_with(&a, n, SENTINEL), Dtype::F32);
        potrf_blocking(
            &device,
            GpuMatrix::new(&buf, n as u32, n as u32),
            Dtype::F32,
        )
        .unwrap_or_else(|e| panic!("{what}: {e}"));
        let got = download(&device, &buf, Dtype::F32);
        let err = rel_error(&packed_lower(&got, n), &packed_lower(&want, n));
        assert!(err < 1e-5, "{what}: ‖L − L_cpu‖ / ‖L_cpu‖ = {err:e}");
        assert!(
            (0..n).all(|i| (i + 1..n).all(|j| got[i * n + j] == SENTINEL)),
            "{what}: the upper triangle was written"
        );

        let gl = upload(&device, &l, Dtype::F32);
        let gb = upload(&device, &b, Dtype::F32);
        trsm_blocking(
            &device,
            GpuMatrix::new(&gl, nt as u32, nt as u32),
            GpuMatrix::new(&gb, m as u32, nt as u32),
            Dtype::F32,
        )
        .unwrap();
        let x = download(&device, &gb, Dtype::F32);
        let err = rel_error(&x, &want_x);
        assert!(
            err < 1e-5,
            "{what}: trsm {m}x{nt}: ‖X − X_cpu‖ / ‖X_cpu‖ = {err:e}"
        );
    }
}

#[test]
fn launch_checks_name_the_shapes() {
    for device in devices_for_tests() {
        let buf = device.zeroed(12 * 4).unwrap();
        let other = device.zeroed(12 * 4).unwrap();
        let tiny = device.zeroed(2).unwrap();

        // POTRF: square, buffer sizes, the status buffer.
        let err = potrf_blocking(&device, GpuMatrix::new(&buf, 3, 4), Dtype::F32).unwrap_err();
        assert!(
            matches!(
                err,
                BlasError::Shape {
                    kernel: "potrf",
                    ..
                }
            ),
            "{err}"
        );
        assert!(
            err.to_string().contains("A is 3x4; it must be square"),
            "{err}"
        );
        let err = potrf_blocking(&device, GpuMatrix::new(&buf, 4, 4), Dtype::F32).unwrap_err();
        assert!(
            matches!(
                err,
                BlasError::BufferTooSmall {
                    matrix: "A",
                    needed: 64,
                    bytes: 48,
                    ..
                }
            ),
            "{err}"
        );
        let err =
            potrf_blocking(&device, GpuMatrix::with_ld(&buf, 2, 2, 1), Dtype::F32).unwrap_err();
        assert!(
            matches!(err, BlasError::LeadingDimension { matrix: "A", .. }),
            "{err}"
        );
        let err = potrf(
            &device,
            GpuMatrix::new(&buf, 2, 2),
            &tiny,
            Dtype::F32,
            |_| panic!("no callback after a failed check"),
        )
        .unwrap_err();
        assert!(
            matches!(
                err,
                BlasError::BufferTooSmall {
                    matrix: "info",
                    needed: 4,
                    bytes: 2,
                    ..
                }
            ),
            "{err}"
        );
        let err = potrf(
            &device,
            GpuMatrix::new(&buf, 2, 2),
            &buf,
            Dtype::F32,
            |_| panic!("no callback after a failed check"),
        )
        .unwrap_err();
        assert!(matches!(err, BlasError::Aliased { input: "info" }), "{err}");

        // TRSM: L square, L's side matching B's columns, separate buffers.
        let run = |l: GpuMatrix<'_>, b: GpuMatrix<'_>| trsm_blocking(&device, l, b, Dtype::F32);
        let err = run(GpuMatrix::new(&buf, 2, 3), GpuMatrix::new(&other, 4, 3)).unwrap_err();
        assert!(
            matches!(err, BlasError::Shape { kernel: "trsm", .. }),
            "{err}"
        );
        assert!(
            err.to_string()
                .contains("L is 2x3 and B is 4x3; L must be square with as many columns as B"),
            "{err}"
        );
        let err = run(GpuMatrix::new(&buf, 3, 3), GpuMatrix::new(&other, 3, 2)).unwrap_err();
        assert!(err.to_string().contains("L is 3x3 and B is 3x2"), "{err}");
        let err = run(
            GpuMatrix::new(&buf, 2, 2),
            GpuMatrix::new(&buf, 2, 2).offset(4),
        )
        .unwrap_err();
        assert!(matches!(err, BlasError::Aliased { input: "L" }), "{err}");
        assert!(
            err.to_string().contains("shares its buffer with L"),
            "{err}"
        );
        let err = run(GpuMatrix::new(&buf, 3, 3), GpuMatrix::new(&other, 5, 3)).unwrap_err();
        assert!(
            matches!(err, BlasError::BufferTooSmall { matrix: "B", .. }),
            "{err}"
        );

        // Empty operands call back at once.
        let calls = Arc::new(AtomicUsize::new(0));
        let c1 = Arc::clone(&calls);
        trsm(
            &device,
            GpuMatrix::new(&buf, 3, 3),
            GpuMatrix::new(&other, 0, 3),
            Dtype::F32,
            move |r| {
                r.unwrap();
                c1.fetch_add(1, Ordering::SeqCst);
            },
        )
        .unwrap();
        let c2 = Arc::clone(&calls);
        trsm(
            &device,
            GpuMatrix::new(&buf, 0, 0),
            GpuMatrix::new(&other, 4, 0),
            Dtype::F32,
            move |r| {
                r.unwrap();
                c2.fetch_add(1, Ordering::SeqCst);
            },
        )
        .unwrap();
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        potrf_blocking(&device, GpuMatrix::new(&buf, 0, 0), Dtype::F32).unwrap();

        // f64 on a device without it.
        if !device.info().shader_f64 {
            let err = potrf_blocking(&device, GpuMatrix::new(&buf, 2, 2), Dtype::F64).unwrap_err();
            assert!(
                matches!(err, BlasError::Gpu(GpuError::MissingFeature { .. })),
                "{err}"
            );
            let err = run_f64_trsm(&device, &buf, &other);
            assert!(
                matches!(err, BlasError::Gpu(GpuError::MissingFeature { .. })),
                "{err}"
            );
        }
    }
}

/// The blocking forms refuse to wait on the device from its own completion callback, before
/// enqueueing anything, instead of deadlocking.
#[test]
fn blocking_forms_are_refused_in_callbacks() {
    for device in devices_for_tests() {
        let l = Arc::new(device.upload(&[2.0f32, 0.0, 1.0, 4.0]).unwrap());
        let b = Arc::new(device.upload(&[2.0f32, 1.0]).unwrap());
        let (tx, rx) = std::sync::mpsc::channel();
        let (inner, l2, b2) = (device.clone(), Arc::clone(&l), Arc::clone(&b));
        trsm(
            &device,
            GpuMatrix::new(&l, 2, 2),
            GpuMatrix::new(&b, 1, 2),
            Dtype::F32,
            move |r| {
                r.unwrap();
                let solve = trsm_blocking(
                    &inner,
                    GpuMatrix::new(&l2, 2, 2),
                    GpuMatrix::new(&b2, 1, 2),
                    Dtype::F32,
                );
                let factor = potrf_blocking(&inner, GpuMatrix::new(&l2, 2, 2), Dtype::F32);
                let _ = tx.send((solve, factor));
            },
        )
        .unwrap();
        let (solve, factor) = rx.recv().unwrap();
        for r in [solve, factor] {
            assert!(
                matches!(r, Err(BlasError::Gpu(GpuError::Reentrant { .. }))),
                "{r:?}"
            );
        }
        // Solved once: [1, 0] Lᵀ = [2, 1]; nothing else ran on L or B.
        assert_eq!(device.download::<f32>(&b).unwrap(), [1.0, 0.0]);
        assert_eq!(device.download::<f32>(&l).unwrap(), [2.0, 0.0, 1.0, 4.0]);
    }
}

fn run_f64_trsm(device: &Device, l: &GpuBuffer, b: &GpuBuffer) -> BlasError {
    trsm_blocking(
        device,
        GpuMatrix::new(l, 2, 2),
        GpuMatrix::new(b, 2, 2),
        Dtype::F64,
    )
    .unwrap_err()
}

/// Time of POTRF and TRSM (`m = n`) at n = 512 on every adapter beside `dagger_cpu`:
/// `cargo test -p dagger-wgpu --release --test blas_chol -- --ignored --nocapture timing`
/// (`DAGGER_CHOL_N` sets n).
#[test]
#[ignore = "timing; run explicitly with --ignored --nocapture"]
fn cholesky_tile_timing() {
    let n: usize = std::env::var("DAGGER_CHOL_N")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(512);
    let mut rng = Rng::new(3);
    let a: Vec<f64> = spd(&mut rng, n)
        .iter()
        .map(|&x| rounded(x, Dtype::F32))
        .collect();
    let a32: Vec<f32> = a.iter().map(|&x| x as f32).collect();
    let best = |f: &mut dyn FnMut()| {
        f(); // compile and warm up
        (0..3)
            .map(|_| {
                let t = std::time::Instant::now();
                f();
                t.elapsed().as_secs_f64()
            })
            .fold(f64::INFINITY, f64::min)
    };
    let cpu_potrf_s = best(&mut || {
        let mut l = a32.clone();
        dagger_cpu::potrf(Triangle::Lower, MatMut::new(&mut l, n, n)).unwrap();
    });
    let l32: Vec<f32> = cpu_potrf(&a, n)
        .unwrap()
        .iter()
        .map(|&x| x as f32)
        .collect();
    let cpu_trsm_s = best(&mut || {
        let mut b = a32.clone();
        dagger_cpu::trsm(
            Side::Right,
            Triangle::Lower,
            Trans::Yes,
            Diag::NonUnit,
            1.0,
            MatRef::new(&l32, n, n),
            MatMut::new(&mut b, n, n),
        );
    });
    println!(
        "dagger_cpu f32 n={n}: potrf {:.1} ms, trsm {:.1} ms",
        cpu_potrf_s * 1e3,
        cpu_trsm_s * 1e3
    );
    for device in devices_for_tests() {
        let buf = device.upload(&a32).unwrap();
        let l = device.upload(&l32).unwrap();
        let b = device.upload(&a32).unwrap();
        let u = n as u32;
        let potrf_s = best(&mut || {
            device
                .copy(&buf)
                .map(|fresh| {
                    potrf_blocking(&device, GpuMatrix::new(&fresh, u, u), Dtype::F32).unwrap()
                })
                .unwrap()
        });
        let trsm_s = best(&mut || {
            trsm_blocking(
                &device,
                GpuMatrix::new(&l, u, u),
                GpuMatrix::new(&b, u, u),
                Dtype::F32,
            )
            .unwrap()
        });
        println!(
            "{} ({}) f32 n={n}: potrf {:.1} ms, trsm {:.1} ms",
            device.info().name,
            device.info().backend,
            potrf_s * 1e3,
            trsm_s * 1e3
        );
    }
}
