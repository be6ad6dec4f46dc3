//! [`geqrt`]: Householder QR of a block in place, with the triangular factor of its block
//! reflector (compact WY form), as LAPACK's `?geqrt` leaves them.

use crate::{trsm, Diag, MatMut, MatRef, Scalar, Side, Threads, Trans, Triangle};

/// Householder QR factorization in place (LAPACK `?geqrt` with one block of all columns)
/// of an `m x n` block with `m >= n`: `A = Q R`, with `Q = H_0 H_1 … H_{n-1} = I - V T Vᵀ`.
///
/// On return `R` (`n x n`, upper triangular) is on and above the diagonal of `A`, and the
/// Householder vectors `V` (`m x n`, unit lower triangular, its unit diagonal not stored)
/// are below it; `t` (`n x n`) holds the upper triangular `T` of the block reflector, its
/// strict lower triangle zeroed. `Qᵀ B = B - V (Tᵀ (Vᵀ B))` and `Q B = B - V (T (Vᵀ B))`
/// apply `Q` with products only.
///
/// The work is faer's blocked, recursive QR on a column-major copy; a block whose columns
/// faer finds numerically dependent (it skips those reflectors, which this layout cannot
/// express) is factored again column by column, as LAPACK's `?geqr2` does, so rank-deficient
/// blocks factor too. A column that is already zero below the diagonal gets the identity
/// reflector (`tau = 0`).
///
/// # Panics
/// If `m < n` or `t` is not `n x n`.
///
/// ```
/// use dagger_cpu::{geqrt, MatMut, Threads};
///
/// let mut a = [3.0f64, 0.0, 4.0, 5.0]; // [[3, 0], [4, 5]]
/// let mut t = [0.0f64; 4];
/// geqrt(MatMut::new(&mut a, 2, 2), MatMut::new(&mut t, 2, 2), Threads::SEQ);
/// // |R[0][0]| is the norm of the first column, |R[1][1]| = |det A| / 5.
/// assert!((a[0].abs() - 5.0).abs() < 1e-12 && (a[3].abs() - 3.0).abs() < 1e-12);
/// assert_eq!(t[2], 0.0); // T is upper triangular
/// ```
#[track_caller]
pub fn geqrt<'a, 'b, T: Scalar>(
    a: impl Into<MatMut<'a, T>>,
    t: impl Into<MatMut<'b, T>>,
    threads: Threads,
) {
    let (mut a, mut t) = (a.into(), t.into());
    let (m, n) = a.shape();
    assert!(
        m >= n,
        "geqrt: A is {m}x{n}; it needs at least as many rows as columns"
    );
    assert!(
        t.shape() == (n, n),
        "geqrt: T is {}x{} but A has {n} columns; T must be {n}x{n}",
        t.rows(),
        t.cols()
    );
    if n == 0 {
        return;
    }
    if !faer_qr(a.rb(), t.rb(), threads) {
        householder_columns(a, t);
    }
}

/// faer's QR of `a` into `a` and `t`; false, leaving both untouched, when faer skipped a
/// reflector for a dependent column.
fn faer_qr<T: Scalar>(mut a: MatMut<'_, T>, mut t: MatMut<'_, T>, threads: Threads) -> bool {
    use faer::dyn_stack::{MemBuffer, MemStack};
    use faer::linalg::qr::no_pivoting::factor::{qr_in_place, qr_in_place_scratch};

    let (m, n) = a.shape();
    let mut work = faer::Mat::<T>::from_fn(m, n, |i, j| a.get(i, j));
    let mut coeff = faer::Mat::<T>::zeros(n, n);
    let par = threads.par();
    let params = Default::default();
    let mut mem = MemBuffer::new(qr_in_place_scratch::<T>(m, n, n, par, params));
    let info = qr_in_place(
        work.as_mut(),
        coeff.as_mut(),
        par,
        MemStack::new(&mut mem),
        params,
    );
    let zero = T::from_f64_rounded(0.0);
    // A column already zero below the diagonal gets the identity reflector, which faer
    // marks with an infinite diagonal entry of its factor; a zero one is no reflector.
    let identity: Vec<bool> = (0..n)
        .map(|i| coeff[(i, i)].to_f64_exact().is_infinite())
        .collect();
    let usable = info.rank == n
        && (0..n).all(|i| {
            let d = coeff[(i, i)].to_f64_exact();
            identity[i] || (d.is_finite() && d != 0.0)
        });
    if !usable {
        return false;
    }
    // faer's factor F has Q = I - V F⁻¹ Vᵀ; LAPACK's T is F⁻¹ (upper triangular too). F is
    // diag(τ) plus the strict upper triangle of Vᵀ V, so leaving an identity reflector out
    // is leaving out its row and column: they become those of the identity for the
    // inversion, and zeros in T.
    let f: Vec<T> = (0..n * n)
        .map(|k| {
            let (i, j) = (k / n, k % n);
            if identity[i] || identity[j] {
                T::from_f64_rounded(if i == j { 1.0 } else { 0.0 })
            } else if i <= j {
                coeff[(i, j)]
            } else {
                zero
            }
        })
        .collect();
    let mut inv: Vec<T> = (0..n * n)
        .map(|k| T::from_f64_rounded(if k / n == k % n { 1.0 } else { 0.0 }))
        .collect();
    trsm(
        Side::Left,
        Triangle::Upper,
        Trans::No,
        Diag::NonUnit,
        T::from_f64_rounded(1.0),
        MatRef::new(&f, n, n),
        MatMut::new(&mut inv, n, n),
    );
    for i in 0..n {
        for j in 0..n {
            let keep = i <= j && !identity[i] && !identity[j];
            t.set(i, j, if keep { inv[i * n + j] } else { zero });
        }
    }
    for i in 0..m {
        for j in 0..n {
            a.set(i, j, work[(i, j)]);
        }
    }
    true
}

/// Column-by-column Householder QR (LAPACK `?geqr2`, then `?larft` for `T`), in `f64`
/// on a column-major copy.
fn householder_columns<T: Scalar>(mut a: MatMut<'_, T>, mut t: MatMut<'_, T>) {
    let (m, n) = a.shape();
    // x[j * m + i] is element (i, j).
    let mut x = vec![0.0f64; m * n];
    for i in 0..m {
        for j in 0..n {
            x[j * m + i] = a.get(i, j).to_f64_exact();
        }
    }
    let mut tau = vec![0.0f64; n];
    for j in 0..n {
        let (done, rest) = x.split_at_mut((j + 1) * m);
        let col = &mut done[j * m..];
        let alpha = col[j];
        let sigma: f64 = col[j + 1..].iter().map(|v| v * v).sum();
        if sigma == 0.0 {
            continue; // H_j = I
        }
        let norm = (alpha * alpha + sigma).sqrt();
        let beta = if alpha >= 0.0 { -norm } else { norm };
        tau[j] = (beta - alpha) / beta;
        let scale = 1.0 / (alpha - beta);
        col[j + 1..].iter_mut().for_each(|v| *v *= scale);
        col[j] = beta;
        let v = &col[j + 1..];
        for c in rest.chunks_exact_mut(m) {
            let s = c[j] + v.iter().zip(&c[j + 1..]).map(|(a, b)| a * b).sum::<f64>();
            let s = tau[j] * s;
            c[j] -= s;
            c[j + 1..]
                .iter_mut()
                .zip(v)
                .for_each(|(y, vi)| *y -= s * vi);
        }
    }
    // T[j][j] = tau_j; T[..j][j] = -tau_j T[..j][..j] (Vᵀ v_j)[..j].
    let mut tt = vec![0.0f64; n * n];
    for j in 0..n {
        tt[j * n + j] = tau[j];
        if tau[j] == 0.0 {
            continue;
        }
        let vj = &x[j * m..(j + 1) * m];
        // (Vᵀ v_j)[p] = v_p[j] + Σ_{i>j} v_p[i] v_j[i], v_p unit at p < j.
        let w: Vec<f64> = (0..j)
            .map(|p| {
                let vp = &x[p * m..(p + 1) * m];
                vp[j]
                    + vp[j + 1..]
                        .iter()
                        .zip(&vj[j + 1..])
                        .map(|(a, b)| a * b)
                        .sum::<f64>()
            })
            .collect();
        for p in 0..j {
            tt[p * n + j] = -tau[j] * (p..j).map(|q| tt[p * n + q] * w[q]).sum::<f64>();
        }
    }
    for i in 0..m {
        for j in 0..n {
            a.set(i, j, T::from_f64_rounded(x[j * m + i]));
        }
    }
    for i in 0..n {
        for j in 0..n {
            t.set(i, j, T::from_f64_rounded(tt[i * n + j]));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `max |Q R - A|` and `max |Qᵀ Q - I|` of a factored `m x n` block, in f64.
    fn errors(a0: &[f64], qr: &[f64], t: &[f64], m: usize, n: usize) -> (f64, f64) {
        let v = |i: usize, j: usize| match i.cmp(&j) {
            std::cmp::Ordering::Less => 0.0,
            std::cmp::Ordering::Equal => 1.0,
            std::cmp::Ordering::Greater => qr[i * n + j],
        };
        // Q (m x m) = I - V T Vᵀ
        let mut vt = vec![0.0; m * n];
        for i in 0..m {
            for j in 0..n {
                vt[i * n + j] = (0..n).map(|p| v(i, p) * t[p * n + j]).sum();
            }
        }
        let q = |i: usize, j: usize| {
            let e = if i == j { 1.0 } else { 0.0 };
            e - (0..n).map(|p| vt[i * n + p] * v(j, p)).sum::<f64>()
        };
        let r = |i: usize, j: usize| if i <= j { qr[i * n + j] } else { 0.0 };
        let mut e_qr: f64 = 0.0;
        for i in 0..m {
            for j in 0..n {
                let s: f64 = (0..n).map(|p| q(i, p) * r(p, j)).sum();
                e_qr = e_qr.max((s - a0[i * n + j]).abs());
            }
        }
        let mut e_orth: f64 = 0.0;
        for i in 0..m {
            for j in 0..m {
                let s: f64 = (0..m).map(|p| q(p, i) * q(p, j)).sum();
                e_orth = e_orth.max((s - if i == j { 1.0 } else { 0.0 }).abs());
            }
        }
        (e_qr, e_orth)
    }

    fn pseudo_random(len: usize, seed: u64) -> Vec<f64> {
        let mut s = seed;
        (0..len)
            .map(|_| {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((s >> 11) as f64 / (1u64 << 53) as f64) - 0.5
            })
            .collect()
    }

    #[test]
    fn factors_reconstruct_the_block_and_q_is_orthogonal() {
        for &(m, n) in &[(1, 1), (5, 3), (17, 17), (40, 33), (70, 64), (100, 7)] {
            let a0 = pseudo_random(m * n, (m * 31 + n) as u64);
            let mut a = a0.clone();
            let mut t = vec![0.0; n * n];
            geqrt(
                MatMut::new(&mut a, m, n),
                MatMut::new(&mut t, n, n),
                Threads::SEQ,
            );
            let (e_qr, e_orth) = errors(&a0, &a, &t, m, n);
            assert!(e_qr < 1e-12 && e_orth < 1e-12, "{m}x{n}: {e_qr} {e_orth}");
        }
    }

    #[test]
    fn square_and_partly_triangular_blocks_take_the_blocked_path() {
        // The last column of a square block, and a column already zero below the
        // diagonal, have identity reflectors, which the blocked path handles itself.
        for &(m, n) in &[(1, 1), (64, 64), (200, 150)] {
            let mut a = pseudo_random(m * n, 4);
            for i in 1..m {
                a[i * n] = 0.0;
            }
            let a0 = a.clone();
            let mut t = vec![0.0; n * n];
            assert!(faer_qr(
                MatMut::new(&mut a, m, n),
                MatMut::new(&mut t, n, n),
                Threads::SEQ
            ));
            let (e_qr, e_orth) = errors(&a0, &a, &t, m, n);
            assert!(e_qr < 1e-12 && e_orth < 1e-12, "{m}x{n}: {e_qr} {e_orth}");
        }
    }

    #[test]
    fn rank_deficient_blocks_factor_too() {
        let (m, n) = (12, 6);
        let mut a0 = pseudo_random(m * n, 9);
        for i in 0..m {
            a0[i * n + 2] = 2.0 * a0[i * n]; // a dependent column
            a0[i * n + 4] = 0.0; // a zero column
        }
        a0[5 * n + 5] = 0.0;
        let mut a = a0.clone();
        let mut t = vec![0.0; n * n];
        // The blocked path declines the zero column, so this is the column-by-column one.
        assert!(!faer_qr(
            MatMut::new(&mut a.clone(), m, n),
            MatMut::new(&mut t.clone(), n, n),
            Threads::SEQ
        ));
        geqrt(
            MatMut::new(&mut a, m, n),
            MatMut::new(&mut t, n, n),
            Threads::SEQ,
        );
        let (e_qr, e_orth) = errors(&a0, &a, &t, m, n);
        assert!(e_qr < 1e-12 && e_orth < 1e-12, "{e_qr} {e_orth}");
    }

    #[test]
    fn f32_blocks() {
        let (m, n) = (30, 20);
        let a64 = pseudo_random(m * n, 3);
        let mut a: Vec<f32> = a64.iter().map(|&x| x as f32).collect();
        let mut t = vec![0.0f32; n * n];
        geqrt(
            MatMut::new(&mut a, m, n),
            MatMut::new(&mut t, n, n),
            Threads::SEQ,
        );
        let a0: Vec<f64> = a64.iter().map(|&x| x as f32 as f64).collect();
        let qr: Vec<f64> = a.iter().map(|&x| x as f64).collect();
        let tt: Vec<f64> = t.iter().map(|&x| x as f64).collect();
        let (e_qr, e_orth) = errors(&a0, &qr, &tt, m, n);
        assert!(e_qr < 1e-5 && e_orth < 1e-5, "{e_qr} {e_orth}");
    }
}
