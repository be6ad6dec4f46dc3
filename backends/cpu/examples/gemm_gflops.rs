//! GFLOP/s of one block kernel call at a given size, single-threaded and with all threads,
//! with every GEMM kernel this build and CPU have side by side (the one `gemm` runs marked).
//!
//! ```text
//! cargo run -p dagger-cpu --release --example gemm_gflops -- 1024
//! cargo run -p dagger-cpu --release --features openblas --example gemm_gflops -- 1024
//! ```

use std::time::Instant;

use dagger_cpu::{
    backend_name, gemm_backend_name, gemm_kernel, gemm_with, getrf, potrf, syrk, trsm, Accum, Diag,
    GemmKernel, MatMut, MatRef, Pivoting, Scalar, Side, Threads,
};
use dagger_cpu::{Trans, Triangle};

/// Best of `reps` runs of `f`, in seconds.
fn best_of(reps: usize, mut f: impl FnMut()) -> f64 {
    f(); // warm up
    (0..reps)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64()
        })
        .fold(f64::INFINITY, f64::min)
}

fn data<T: Scalar>(len: usize, seed: u64) -> Vec<T> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            T::from_f64_rounded((x >> 11) as f64 / (1u64 << 53) as f64 - 0.5)
        })
        .collect()
}

fn run<T: Scalar>(n: usize, threads: Threads) {
    let a = data::<T>(n * n, 1);
    let b = data::<T>(n * n, 2);
    let mut c = vec![T::from_f64_rounded(0.0); n * n];
    let flops = 2.0 * (n as f64).powi(3);
    // Every GEMM kernel this build and CPU have, the one `gemm` chose marked.
    for kernel in GemmKernel::ALL.into_iter().filter(|k| k.available()) {
        let t = best_of(3, || {
            gemm_with(
                kernel,
                Trans::No,
                Trans::No,
                T::from_f64_rounded(1.0),
                MatRef::new(&a, n, n),
                MatRef::new(&b, n, n),
                Accum::Replace,
                MatMut::new(&mut c, n, n),
                threads,
            )
        });
        println!(
            "{} gemm {:<8} n={n} threads={:<2} {:8.2} GFLOP/s ({:.1} ms){}",
            T::NAME,
            kernel.name(),
            threads.0,
            flops / t / 1e9,
            t * 1e3,
            if kernel == gemm_kernel() {
                "  <- gemm"
            } else {
                ""
            }
        );
    }
    let t = best_of(3, || {
        syrk(
            Triangle::Lower,
            Trans::No,
            T::from_f64_rounded(1.0),
            MatRef::new(&a, n, n),
            Accum::Replace,
            MatMut::new(&mut c, n, n),
            threads,
        )
    });
    println!(
        "{} syrk {:<8} n={n} threads={:<2} {:8.2} GFLOP/s ({:.1} ms)",
        T::NAME,
        backend_name(),
        threads.0,
        flops / 2.0 / t / 1e9,
        t * 1e3
    );
}

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .map(|s| s.parse().expect("the size must be a number"))
        .unwrap_or(1024);
    println!(
        "backend: gemm {}, others {}",
        gemm_backend_name(),
        backend_name()
    );
    for threads in [Threads::SEQ, Threads(0)] {
        run::<f32>(n, threads);
        run::<f64>(n, threads);
    }
    // potrf on an SPD matrix: A = n I + small symmetric noise.
    let mut spd = data::<f64>(n * n, 3);
    for i in 0..n {
        for j in 0..i {
            spd[j * n + i] = spd[i * n + j];
        }
        spd[i * n + i] += n as f64;
    }
    let t = best_of(3, || {
        let mut a = spd.clone();
        potrf(Triangle::Lower, MatMut::new(&mut a, n, n)).expect("SPD");
    });
    println!(
        "f64 potrf n={n} threads=1  {:8.2} GFLOP/s ({:.1} ms, includes a copy)",
        (n as f64).powi(3) / 3.0 / t / 1e9,
        t * 1e3
    );
    // getrf of a tall panel, as a tiled LU's panel task: n x 512 (or n x n if smaller), in
    // the column-major copy the task factors, and row-major for comparison.
    let w = n.min(512);
    let panel = data::<f64>(n * w, 4);
    for (column_major, threads) in [
        (true, Threads::SEQ),
        (true, Threads(0)),
        (false, Threads::SEQ),
    ] {
        let t = best_of(3, || {
            let mut a = panel.clone();
            let mut piv = vec![0; w];
            let view = if column_major {
                MatMut::new(&mut a, w, n).t()
            } else {
                MatMut::new(&mut a, n, w)
            };
            getrf(Pivoting::Partial, view, &mut piv, threads).expect("random data is not singular");
        });
        let (m, wf) = (n as f64, w as f64);
        println!(
            "f64 getrf {n}x{w} {} threads={:<2} {:8.2} GFLOP/s ({:.1} ms, includes a copy)",
            if column_major {
                "column-major"
            } else {
                "row-major"
            },
            threads.0,
            (m * wf * wf - wf * wf * wf / 3.0) / t / 1e9,
            t * 1e3
        );
    }
    // trsm as a tiled LU's row tiles run it: a unit lower n x n (at most 512) triangle
    // solved against a row-major block as wide.
    let w = n.min(512);
    let l = data::<f64>(w * w, 5);
    let rhs = data::<f64>(w * w, 6);
    let t = best_of(5, || {
        let mut b = rhs.clone();
        trsm(
            Side::Left,
            Triangle::Lower,
            Trans::No,
            Diag::Unit,
            1.0,
            MatRef::new(&l, w, w),
            MatMut::new(&mut b, w, w),
        );
    });
    println!(
        "f64 trsm  {w}x{w} unit lower, row-major B threads=1  {:8.2} GFLOP/s ({:.2} ms, includes a copy)",
        (w as f64).powi(3) / t / 1e9,
        t * 1e3
    );
}
