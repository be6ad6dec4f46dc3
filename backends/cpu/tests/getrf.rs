//! `getrf` against its definition in f64: `P A = L U` for tall and square blocks on both
//! sides of the recursion's base width, both pivotings, row-major and transposed layouts,
//! and zero pivots reported where they are.

use dagger_cpu::{getrf, GetrfError, MatMut, Pivoting, Scalar, Threads};

fn random(len: usize, seed: u64) -> Vec<f64> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            s ^= s >> 12;
            s ^= s << 25;
            s ^= s >> 27;
            (s.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 52) as f64 - 1.0
        })
        .collect()
}

/// ‖P A − L U‖ / ‖A‖ for the packed factors `lu` (m x n, row-major) of `a`.
fn residual(a: &[f64], lu: &[f64], piv: &[usize], m: usize, n: usize) -> f64 {
    let mut rows: Vec<usize> = (0..m).collect();
    for (j, &p) in piv.iter().enumerate() {
        rows.swap(j, p);
    }
    let (mut num, mut den) = (0.0, 0.0);
    for i in 0..m {
        for j in 0..n {
            let mut s = 0.0;
            for k in 0..=i.min(j) {
                let l = if k == i { 1.0 } else { lu[i * n + k] };
                s += l * lu[k * n + j];
            }
            num += (s - a[rows[i] * n + j]).powi(2);
            den += a[rows[i] * n + j].powi(2);
        }
    }
    (num / den).sqrt()
}

fn check<T: Scalar>(pivoting: Pivoting, m: usize, n: usize, transposed: bool, tol: f64) {
    let mut a = random(m * n, (m * 1000 + n) as u64);
    if pivoting == Pivoting::None {
        for j in 0..n {
            a[j * n + j] += n as f64;
        }
    }
    let mut lu: Vec<T> = a.iter().map(|&x| T::from_f64_rounded(x)).collect();
    let mut piv = vec![0; n];
    if transposed {
        // The same matrix stored column-major: a transposed view of an n x m row-major one.
        let mut cm: Vec<T> = vec![T::from_f64_rounded(0.0); m * n];
        for i in 0..m {
            for j in 0..n {
                cm[j * m + i] = lu[i * n + j];
            }
        }
        getrf(
            pivoting,
            MatMut::new(&mut cm, n, m).t(),
            &mut piv,
            Threads::SEQ,
        )
        .unwrap();
        for i in 0..m {
            for j in 0..n {
                lu[i * n + j] = cm[j * m + i];
            }
        }
    } else {
        getrf(pivoting, MatMut::new(&mut lu, m, n), &mut piv, Threads(2)).unwrap();
    }
    let lu: Vec<f64> = lu.iter().map(|x| x.to_f64_exact()).collect();
    if pivoting == Pivoting::Partial {
        for i in 0..m {
            for j in 0..n.min(i) {
                assert!(lu[i * n + j].abs() <= 1.0, "|L({i}, {j})| > 1");
            }
        }
        assert!(piv.iter().enumerate().all(|(j, &p)| p >= j && p < m));
    } else {
        assert!(piv.iter().enumerate().all(|(j, &p)| p == j));
    }
    let e = residual(&a, &lu, &piv, m, n);
    assert!(e < tol, "{pivoting:?} {m}x{n} transposed {transposed}: {e}");
}

#[test]
fn factors_match_the_definition() {
    for pivoting in [Pivoting::None, Pivoting::Partial] {
        for &(m, n) in &[
            (1, 1),
            (15, 15),
            (16, 16),
            (17, 17),
            (40, 33),
            (129, 129),
            (200, 70),
        ] {
            for transposed in [false, true] {
                check::<f64>(pivoting, m, n, transposed, 1e-14);
                check::<f32>(pivoting, m, n, transposed, 1e-5);
            }
        }
    }
}

#[test]
fn zero_pivots_are_reported_where_they_are() {
    // Column 21 all zeros: singular at pivot 21 with or without pivoting.
    let n = 40;
    let mut a = random(n * n, 3);
    for i in 0..n {
        a[i * n + 21] = 0.0;
    }
    for pivoting in [Pivoting::Partial, Pivoting::None] {
        let mut b = a.clone();
        for j in 0..n {
            if j != 21 {
                b[j * n + j] += n as f64;
            }
        }
        let mut piv = vec![0; n];
        let err = getrf(pivoting, MatMut::new(&mut b, n, n), &mut piv, Threads::SEQ).unwrap_err();
        assert_eq!(err, GetrfError::ZeroPivot { pivot: 21 }, "{pivoting:?}");
        assert!(err.to_string().contains("pivot 21"));
    }
    // [[0, 1], [1, 0]] needs an interchange.
    let mut s = [0.0f64, 1.0, 1.0, 0.0];
    let mut piv = [0; 2];
    let err = getrf(
        Pivoting::None,
        MatMut::new(&mut s, 2, 2),
        &mut piv,
        Threads::SEQ,
    );
    assert_eq!(err, Err(GetrfError::ZeroPivot { pivot: 0 }));
    let mut s = [0.0f64, 1.0, 1.0, 0.0];
    getrf(
        Pivoting::Partial,
        MatMut::new(&mut s, 2, 2),
        &mut piv,
        Threads::SEQ,
    )
    .unwrap();
    assert_eq!((s, piv), ([1.0, 0.0, 0.0, 1.0], [1, 1]));
}

#[test]
#[should_panic(expected = "at least as many rows")]
fn a_wide_block_is_a_panic() {
    let mut a = [0.0f64; 6];
    getrf(
        Pivoting::Partial,
        MatMut::new(&mut a, 2, 3),
        &mut [0; 3],
        Threads::SEQ,
    )
    .unwrap();
}
