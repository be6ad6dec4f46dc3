#![allow(dead_code)]
//! A DArray workload spread over the ranks of a context, and the checks that it ran where
//! its blocks live: shared by the in-process remote tests and the runs under `mpirun`.

use std::collections::HashMap;

use dagger::prelude::*;
use ndarray::{Array1, Array2};

/// What the workload computes, to compare with one process.
#[derive(Debug)]
pub struct Results {
    pub elementwise: Array2<f64>,
    pub total: f64,
    pub column_sums: Array1<f64>,
    pub product: Array2<f64>,
    pub factor: Array2<f64>,
    /// Tasks per process (1 is the head) by task name, from the event log.
    pub ran: HashMap<(u32, String), usize>,
}

/// Elementwise operations, a reduction to a value and along an axis, GEMM and Cholesky
/// on 300 x 300 f64 matrices in 64 x 64 blocks (5 x 5 blocks, the last ones partial).
pub fn workload(ctx: &Context) -> Results {
    ctx.enable_logging();
    let n = 300;
    let blocks = || Blocks::new([64, 64]);
    let a = DArray::<f64>::rand(ctx, [n, n], blocks(), 11).unwrap();
    let b = DArray::<f64>::randn(ctx, [n, n], blocks(), 12).unwrap();
    let e = (&(&a * 2.0) + &b).unwrap();
    let total = e.sum().fetch().unwrap();
    let column_sums = e.sum_axis(0).unwrap().collect1().unwrap();
    let product = a.matmul(&b).unwrap();
    // A Aᵀ + n I is symmetric positive definite.
    let eye = DArray::<f64>::eye(ctx, n, blocks()).unwrap();
    let spd = (&a.matmul(&a.t()).unwrap() + &(&eye * n as f64)).unwrap();
    let factor = spd.cholesky().unwrap().collect2().unwrap();
    let mut ran = HashMap::new();
    for ev in ctx.fetch_logs() {
        if ev.kind == dagger::EventKind::Task {
            *ran.entry((ev.processor.process(), ev.name.to_string()))
                .or_default() += 1;
        }
    }
    Results {
        elementwise: e.collect2().unwrap(),
        total,
        column_sums,
        product: product.collect2().unwrap(),
        factor,
        ran,
    }
}

fn close(what: &str, got: &[f64], want: &[f64]) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= 1e-9 * w.abs().max(1.0),
            "{what}: element {i} is {g}, in one process {w}"
        );
    }
}

/// Checks that `spread`, computed over three ranks, equals `local`, computed in one
/// process, and that the blocks were computed on their owners: with three ranks the
/// process grid is 3 x 1, so block row `i` belongs to rank `i % 3`.
pub fn check_three_ranks(spread: &Results, local: &Results) {
    close(
        "a * 2 + b",
        spread.elementwise.as_slice().unwrap(),
        local.elementwise.as_slice().unwrap(),
    );
    close("the sum", &[spread.total], &[local.total]);
    close(
        "the column sums",
        spread.column_sums.as_slice().unwrap(),
        local.column_sums.as_slice().unwrap(),
    );
    close(
        "a b",
        spread.product.as_slice().unwrap(),
        local.product.as_slice().unwrap(),
    );
    close(
        "the Cholesky factor",
        spread.factor.as_slice().unwrap(),
        local.factor.as_slice().unwrap(),
    );
    let count = |process: u32, name: &str| {
        spread
            .ran
            .get(&(process, name.to_string()))
            .copied()
            .unwrap_or(0)
    };
    // 5 x 5 blocks: rows 0 and 3 on rank 0, 1 and 4 on rank 1, 2 on rank 2.
    assert_eq!(
        [1, 2, 3].map(|p| count(p, "rand [f64]")),
        [10, 10, 5],
        "random blocks are made on their owners: {:?}",
        spread.ran
    );
    // The diagonal blocks 0..5 belong to ranks 0, 1, 2, 0, 1.
    assert_eq!(
        [1, 2, 3].map(|p| count(p, "potrf")),
        [2, 2, 1],
        "each potrf runs where its diagonal block lives: {:?}",
        spread.ran
    );
    // Two products of 25 blocks each, and the 10 trailing updates of Cholesky: every rank
    // computes GEMM tiles.
    let gemms = [1, 2, 3].map(|p| count(p, "gemm"));
    assert_eq!(gemms.iter().sum::<usize>(), 60, "{:?}", spread.ran);
    assert!(gemms.iter().all(|&g| g >= 10), "{gemms:?}");
}
