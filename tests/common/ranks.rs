#![allow(dead_code)]
//! A DArray workload spread over the ranks of a context, and the checks that it ran where
//! its blocks live: shared by the in-process remote tests and the runs under `mpirun`.

use std::collections::HashMap;

use dagger::prelude::*;
use dagger::{Diag, Norm, Pivoting, Solver, Trans, Triangle};
use ndarray::{Array1, Array2};

/// Tasks per process (1 is the head) by task name.
pub type Ran = HashMap<(u32, String), usize>;

/// What the workload computes, to compare with one process.
#[derive(Debug)]
pub struct Results {
    pub elementwise: Array2<f64>,
    pub total: f64,
    pub column_sums: Array1<f64>,
    pub product: Array2<f64>,
    pub factor: Array2<f64>,
    /// Tasks per process (1 is the head) by task name, from the event log.
    pub ran: Ran,
    pub linalg: Linalg,
}

/// What the LU, QR, solves, inverse and norms compute, and the tasks each ran.
#[derive(Debug)]
pub struct Linalg {
    /// LU without pivoting of a diagonally dominant matrix: packed factors.
    pub lu_none: Array2<f64>,
    /// LU with partial pivoting of a general matrix: packed factors, `P`, `L` and `U`.
    pub lu: Array2<f64>,
    pub perm: Vec<usize>,
    pub l: Array2<f64>,
    pub u: Array2<f64>,
    /// Its thin QR: `Q` and `R`.
    pub q: Array2<f64>,
    pub r: Array2<f64>,
    /// `L⁻¹ B` for the Cholesky factor `L`.
    pub trsm: Array2<f64>,
    /// `A⁻¹ B` by LU with partial pivoting, and by Cholesky.
    pub solve_lu: Array2<f64>,
    pub solve_chol: Array2<f64>,
    pub inv: Array2<f64>,
    /// The 1-, ∞- and Frobenius norms.
    pub norms: [f64; 3],
    /// The tasks of each step, by the step's name.
    pub ran: HashMap<&'static str, Ran>,
}

/// The tasks the event log recorded since it was last read, per process and name.
fn ran_since(ctx: &Context) -> Ran {
    let mut ran = HashMap::new();
    for ev in ctx.fetch_logs() {
        if ev.kind == dagger::EventKind::Task {
            *ran.entry((ev.processor.process(), ev.name.to_string()))
                .or_default() += 1;
        }
    }
    ran
}

/// LU both ways, QR, a triangular and two general solves, the inverse and the norms on
/// `general` (any matrix), `spd` (symmetric positive definite, also diagonally dominant)
/// and `rhs`, all 300 x 300 in 64 x 64 blocks; each step's tasks logged on their own.
fn linalg(ctx: &Context, general: &DArray<f64>, spd: &DArray<f64>, rhs: &DArray<f64>) -> Linalg {
    let mut ran = HashMap::new();
    let chol = spd.cholesky().unwrap();
    let _ = ran_since(ctx);
    let lu_none = spd
        .lu(Pivoting::None)
        .unwrap()
        .factors()
        .collect2()
        .unwrap();
    ran.insert("lu none", ran_since(ctx));
    let lu = general.lu(Pivoting::Partial).unwrap();
    let factors = lu.factors().collect2().unwrap();
    ran.insert("lu partial", ran_since(ctx));
    let (l, u) = (lu.l().collect2().unwrap(), lu.u().collect2().unwrap());
    ran.insert("l u", ran_since(ctx));
    let qr = general.qr().unwrap();
    let _ = qr.factors().collect2().unwrap();
    ran.insert("qr", ran_since(ctx));
    let q = qr.q().unwrap().collect2().unwrap();
    ran.insert("q", ran_since(ctx));
    let r = qr.r().collect2().unwrap();
    ran.insert("r", ran_since(ctx));
    let trsm = chol
        .solve_triangular(rhs, Triangle::Lower, Trans::No, Diag::NonUnit)
        .unwrap()
        .collect2()
        .unwrap();
    ran.insert("solve_triangular", ran_since(ctx));
    let solve_lu = general
        .solve(rhs, Solver::Lu(Pivoting::Partial))
        .unwrap()
        .collect2()
        .unwrap();
    ran.insert("solve", ran_since(ctx));
    let solve_chol = spd
        .solve(rhs, Solver::Cholesky)
        .unwrap()
        .collect2()
        .unwrap();
    ran.insert("solve by Cholesky", ran_since(ctx));
    let inv = general.inv().unwrap().collect2().unwrap();
    ran.insert("inv", ran_since(ctx));
    let norms = [Norm::One, Norm::Inf, Norm::Frobenius].map(|n| general.norm(n).unwrap());
    ran.insert("norms", ran_since(ctx));
    Linalg {
        lu_none,
        lu: factors,
        perm: lu.permutation().to_vec(),
        l,
        u,
        q,
        r,
        trsm,
        solve_lu,
        solve_chol,
        inv,
        norms,
        ran,
    }
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
    let ran = ran_since(ctx);
    let elementwise = e.collect2().unwrap();
    let product = product.collect2().unwrap();
    let linalg = linalg(ctx, &b, &spd, &a);
    Results {
        elementwise,
        total,
        column_sums,
        product,
        factor,
        ran,
        linalg,
    }
}

fn close2(what: &str, got: &Array2<f64>, want: &Array2<f64>) {
    assert_eq!(got.shape(), want.shape(), "{what}: shapes");
    close(what, got.as_slice().unwrap(), want.as_slice().unwrap());
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
    check_linalg(&spread.linalg, &local.linalg);
}

/// Tasks expected per rank (3 ranks, 3 x 1 process grid: block row `i` on rank `i % 3`),
/// by name.
#[derive(Default, Debug, PartialEq)]
struct Expected(HashMap<String, [usize; 3]>);

impl Expected {
    /// One task named `name` writing a block of block row `i`.
    fn at(&mut self, name: &str, i: usize) {
        self.0.entry(name.to_string()).or_default()[i % 3] += 1;
    }

    /// The tiles of tiled LU over `nb x nb` blocks.
    fn lu(&mut self, nb: usize, pivoting: bool) {
        for k in 0..nb {
            self.at("lu_panel", k);
            if pivoting {
                self.at("lu_pivots", k);
            }
            for i in k..nb {
                self.at("lu_panel_part", i);
            }
            for j in (0..nb).filter(|&j| j != k) {
                if pivoting {
                    (k..nb).for_each(|i| self.at("lu_rows", i));
                } else if j > k {
                    self.at("lu_rows", k);
                }
            }
            for _ in k + 1..nb {
                (k + 1..nb).for_each(|i| self.at("gemm", i));
            }
        }
    }

    /// The tiles of a triangular solve with `nb x nb` blocks and `nbc` columns of blocks on
    /// the right, top down (`lower`) or bottom up.
    fn trsm(&mut self, nb: usize, nbc: usize, lower: bool) {
        for k in 0..nb {
            let rest: Vec<usize> = if lower {
                (k + 1..nb).collect()
            } else {
                (0..k).collect()
            };
            for _ in 0..nbc {
                self.at("trsm", k);
                rest.iter().for_each(|&i| self.at("gemm", i));
            }
        }
    }

    /// The row gathers of `P B` for `B` in blocks of `cuts` rows and `nbc` columns: one per
    /// block whose rows are not its own.
    fn permute(&mut self, perm: &[usize], cuts: &[usize], nbc: usize) {
        for i in 0..cuts.len() - 1 {
            let own = (cuts[i]..cuts[i + 1]).all(|r| perm[r] == r);
            if !own {
                (0..nbc).for_each(|_| self.at("permute_rows", i));
            }
        }
    }

    /// What `ran` (tasks per process) holds of the names expected.
    fn of(&self, ran: &Ran) -> Expected {
        Expected(
            self.0
                .keys()
                .map(|name| {
                    let n = [1, 2, 3].map(|p| ran.get(&(p, name.clone())).copied().unwrap_or(0));
                    (name.clone(), n)
                })
                .collect(),
        )
    }
}

/// Checks the LU, QR, solves, inverse and norms over three ranks against one process, and
/// that every tile ran on the rank owning the block it writes.
fn check_linalg(spread: &Linalg, local: &Linalg) {
    close2("LU without pivoting", &spread.lu_none, &local.lu_none);
    close2("LU with partial pivoting", &spread.lu, &local.lu);
    assert_eq!(spread.perm, local.perm, "the permutation");
    assert!(
        spread.perm.iter().enumerate().any(|(i, &p)| i != p),
        "the rows were interchanged"
    );
    close2("L", &spread.l, &local.l);
    close2("U", &spread.u, &local.u);
    close2("Q", &spread.q, &local.q);
    close2("R", &spread.r, &local.r);
    close2("L⁻¹ B", &spread.trsm, &local.trsm);
    close2("A⁻¹ B by LU", &spread.solve_lu, &local.solve_lu);
    close2("A⁻¹ B by Cholesky", &spread.solve_chol, &local.solve_chol);
    close2("A⁻¹", &spread.inv, &local.inv);
    close("the norms", &spread.norms, &local.norms);

    // 300 x 300 in 64 x 64 blocks: 5 x 5 blocks, block rows 0..5 on ranks 0, 1, 2, 0, 1.
    let (nb, cuts) = (5, [0, 64, 128, 192, 256, 300]);
    let check = |step: &str, want: Expected| {
        let ran = &spread.ran[step];
        assert_eq!(
            want.of(ran),
            want,
            "{step}: tiles per rank (got, expected) — all tasks: {ran:?}"
        );
    };
    let mut want = Expected::default();
    want.lu(nb, false);
    check("lu none", want);
    let mut want = Expected::default();
    want.lu(nb, true);
    check("lu partial", want);
    let mut want = Expected::default();
    for i in 0..nb {
        for _ in 0..nb {
            want.at("lu_part", i);
            want.at("lu_part", i);
        }
    }
    check("l u", want);
    let mut want = Expected::default();
    for k in 0..nb {
        want.at("qr_panel", k);
        for i in k..nb {
            (0..3).for_each(|_| want.at("qr_part", i));
        }
        for _ in k + 1..nb {
            want.at("gemm", k);
            (k..nb).for_each(|i| want.at("gemm", i));
        }
    }
    check("qr", want);
    let mut want = Expected::default();
    for k in 0..nb {
        for _ in 0..nb {
            want.at("gemm", k);
            (k..nb).for_each(|i| want.at("gemm", i));
        }
    }
    check("q", want);
    let mut want = Expected::default();
    (0..nb * nb).for_each(|ij| want.at("qr_r", ij / nb));
    check("r", want);
    let mut want = Expected::default();
    want.trsm(nb, nb, true);
    check("solve_triangular", want);
    let mut want = Expected::default();
    want.lu(nb, true);
    want.permute(&spread.perm, &cuts, nb);
    want.trsm(nb, nb, true);
    want.trsm(nb, nb, false);
    check("solve", want);
    // The inverse of the same matrix: the same tiles, the identity on the right.
    let mut want = Expected::default();
    want.lu(nb, true);
    want.permute(&spread.perm, &cuts, nb);
    want.trsm(nb, nb, true);
    want.trsm(nb, nb, false);
    check("inv", want);
    // Cholesky (diagonal blocks on ranks 0, 1, 2, 0, 1), then two triangular solves.
    let potrf = &spread.ran["solve by Cholesky"];
    assert_eq!(
        [1, 2, 3].map(|p| potrf.get(&(p, "potrf".to_string())).copied().unwrap_or(0)),
        [2, 2, 1],
        "{potrf:?}"
    );
    // The norms are elementwise operations and reductions over the blocks of a matrix
    // (rows 0, 3 on rank 0, 1, 4 on rank 1, 2 on rank 2: 2 : 2 : 1), their partial results
    // combined pairwise where the left one was made (for a sum along an axis, where the
    // block of the result lives; rank 0 makes the first blocks, so it combines a little
    // more); the head only finishes each with the combined value.
    let norms = &spread.ran["norms"];
    let per_rank = |name: &str| [1, 2, 3].map(|p| norms.get(&(p, name.to_string())).copied());
    let mut blocks = 0;
    for name in [
        "map abs(x) [f64]",
        "sum of a block [f64]",
        "max of a block [f64]",
        "sum along an axis of a block [f64]",
        "zip x * y [f64]",
        "zip x / y [f64]",
    ] {
        let [Some(a), Some(b), Some(c)] = per_rank(name) else {
            panic!("{name} ran on every rank: {norms:?}");
        };
        assert!(a == b && a == 2 * c, "{name}: {:?} in {norms:?}", [a, b, c]);
        blocks += a + b + c;
    }
    assert!(blocks >= 200, "{norms:?}");
    let combined = ["zip x + y [f64]", "zip max(x, y) [f64]"]
        .map(|name| per_rank(name).map(Option::unwrap_or_default));
    let combined: [usize; 3] = [0, 1, 2].map(|r| combined[0][r] + combined[1][r]);
    let all: usize = combined.iter().sum();
    assert!(
        all > 100 && combined.iter().all(|&c| c >= all / 6) && combined[0] * 5 < all * 3,
        "partial results are combined on the ranks that made them: {combined:?} in {norms:?}"
    );
}
