//! Triangular solves, linear solves through Cholesky or LU, and the inverse:
//! `DArray::solve_triangular`, `DArray::solve`, `Lu::solve`, `DArray::inv`, `DArray::eye`.

use std::any::TypeId;
use std::marker::PhantomData;

use dagger_cpu::{Diag, Pivoting, Side, Trans, Triangle};
use dagger_wgpu::blas::GemmKernel;

use super::lu::{singular, Lu};
use super::{block_of, owned_tile_options, tile_options, version_of, width, Gemm};
use crate::array::domain::Grid;
use crate::array::{host_options, make_grid, ArrayError, Block, Blocking, DArray};
use crate::chunk::Chunk;
use crate::kernel::tiles::{cpu_tile_call, tile_call, GatherRowsTile, GemmTile, TriSolveTile};
use crate::task::args::Deps;
use crate::task::DTask;
use crate::Context;

/// How [`DArray::solve`] factors the matrix.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Solver {
    /// Cholesky, `A = L Lᵀ`: for symmetric positive definite matrices (only the lower
    /// triangle is read); half the work of LU.
    Cholesky,
    /// LU, `P A = L U`, with the pivoting given.
    Lu(Pivoting),
}

impl<T: Gemm> DArray<T> {
    /// The `n x n` identity matrix.
    ///
    /// ```
    /// use dagger::prelude::*;
    /// let ctx = Context::builder().threads(2).build()?;
    /// let i = DArray::<f64>::eye(&ctx, 3, Blocks::new([2, 2]))?;
    /// assert_eq!(i.collect2()?, ndarray::Array2::<f64>::eye(3));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn eye(ctx: &Context, n: usize, blocks: impl Blocking) -> Result<Self, ArrayError> {
        let grid = make_grid::<T>(ctx, &[n, n], &blocks)?;
        Ok(Self::eye_on(ctx, grid))
    }

    /// The identity's first columns on `grid` (ones where row index equals column index).
    pub(super) fn eye_on(ctx: &Context, grid: Grid) -> Self {
        let (rc, cc) = (&grid.cuts[0], &grid.cuts[1]);
        let nbc = cc.len() - 1;
        let blocks = (0..grid.num_blocks())
            .map(|ij| {
                let (i, j) = (ij / nbc, ij % nbc);
                let (h, w) = (width(rc, i), width(cc, j));
                let mut v = vec![T::ZERO; h * w];
                for r in 0..h {
                    let c = rc[i] + r;
                    if (cc[j]..cc[j + 1]).contains(&c) {
                        v[r * w + c - cc[j]] = T::ONE;
                    }
                }
                Block::Data(Chunk::new(v))
            })
            .collect();
        let blocks = DArray::to_owners(ctx, &grid, blocks);
        DArray::from_parts(ctx, grid, blocks)
    }

    /// `X = op(A)⁻¹ B` for a triangular square matrix `A` (this array) and a matrix `B` with
    /// as many rows: BLAS's `?trsm` with `side = left`, tiled. Only `triangle` of `A` is
    /// read, and under [`Diag::Unit`] its diagonal is taken to be ones and not read.
    ///
    /// One task per block of `X`'s block row solves against the diagonal block (on a CPU
    /// thread), then GEMM tiles (on CPU threads or GPUs, as the scope allows) subtract it
    /// from the block rows not yet solved; all in one datadeps region. `B` is re-blocked
    /// along its rows to `A`'s blocking, which is made square along its row cuts. Waits for
    /// the solve. Over several ranks each tile runs on the rank owning the block of `X` it
    /// writes.
    ///
    /// # Errors
    ///
    /// [`ArrayError::Singular`] naming the diagonal block and row where `A` has a zero on
    /// its diagonal (with [`Diag::NonUnit`]); shape errors for an `A` that is not square or
    /// a `B` that is not a matrix with as many rows.
    ///
    /// ```
    /// use dagger::prelude::*;
    /// use dagger::{Diag, Trans, Triangle};
    /// let ctx = Context::builder().threads(2).build()?;
    /// let l = DArray::distribute(&ctx, &ndarray::arr2(&[[2.0, 0.0], [1.0, 4.0]]), Blocks::new([1, 1]))?;
    /// let b = DArray::distribute(&ctx, &ndarray::arr2(&[[2.0], [9.0]]), Blocks::new([1, 1]))?;
    /// let x = l.solve_triangular(&b, Triangle::Lower, Trans::No, Diag::NonUnit)?;
    /// assert_eq!(x.collect2()?, ndarray::arr2(&[[1.0], [2.0]])); // 2·1 = 2, 1·1 + 4·2 = 9
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn solve_triangular(
        &self,
        b: &DArray<T>,
        triangle: Triangle,
        trans: Trans,
        diag: Diag,
    ) -> Result<DArray<T>, ArrayError> {
        let (a, cuts) = self.square_blocks("solve_triangular", "a")?;
        let n = *cuts.last().expect("cuts start at 0");
        let sb = b.shape();
        if sb.len() != 2 || sb[0] != n {
            return Err(ArrayError::ShapeMismatch {
                op: "solve_triangular: a square matrix and a right-hand side with as many rows",
                left: self.shape(),
                right: sb,
            });
        }
        let bc = b.grid().cuts[1].clone();
        let grid = Grid {
            cuts: vec![cuts.clone(), bc.clone()],
        };
        let b = b.aligned_to(&grid);
        let (nb, nbc) = (cuts.len() - 1, bc.len() - 1);
        let ctx = self.context().clone();
        let w = |i: usize| width(&cuts, i);
        let wc = |j: usize| width(&bc, j);
        let host = host_options(&ctx).name("trsm");
        let dtype = <T as dagger_cpu::Scalar>::NAME;
        // op(A) is lower triangular: solve top down; upper: bottom up.
        let lower = (triangle == Triangle::Lower) != (trans == Trans::Yes);
        let solved = ctx.spawn_datadeps(|r| {
            let ak: Vec<u64> = a.blocks().iter().map(|x| r.track(version_of(x))).collect();
            let bk: Vec<u64> = b.blocks().iter().map(|x| r.track(version_of(x))).collect();
            let order: Vec<usize> = if lower {
                (0..nb).collect()
            } else {
                (0..nb).rev().collect()
            };
            for k in order {
                for j in 0..nbc {
                    let tile = TriSolveTile::<T> {
                        side: Side::Left,
                        triangle,
                        trans,
                        diag,
                        m: w(k),
                        n: wc(j),
                        block: k,
                        first_row: cuts[k],
                        _t: PhantomData,
                    };
                    r.submit_versioned(
                        "trsm".into(),
                        TypeId::of::<TriSolveTile<T>>(),
                        owned_tile_options(&ctx, host.clone(), (nb, nbc), (k, j), true),
                        &[(ak[k * nb + k], false), (bk[k * nbc + j], true)],
                        None,
                        Some(cpu_tile_call("trsm_left_tile", dtype, tile)),
                    );
                }
                let rest: Vec<usize> = if lower {
                    (k + 1..nb).collect()
                } else {
                    (0..k).collect()
                };
                for i in rest {
                    // B_i -= op(A)_ik X_k, op(A)_ik stored as A_ik or A_kiᵀ.
                    let (a_at, stored) = match trans {
                        Trans::No => (i * nb + k, (w(i), w(k))),
                        Trans::Yes => (k * nb + i, (w(k), w(i))),
                    };
                    for j in 0..nbc {
                        let tile = GemmTile::<T> {
                            kernel: GemmKernel::Tiled,
                            op_a: trans,
                            op_b: Trans::No,
                            alpha: -T::ONE,
                            beta: T::ONE,
                            m: w(i),
                            n: wc(j),
                            a: vec![stored],
                            b: vec![(w(k), wc(j))],
                        };
                        r.submit_versioned(
                            "gemm".into(),
                            TypeId::of::<GemmTile<T>>(),
                            owned_tile_options(
                                &ctx,
                                tile_options("gemm"),
                                (nb, nbc),
                                (i, j),
                                false,
                            ),
                            &[
                                (ak[a_at], false),
                                (bk[k * nbc + j], false),
                                (bk[i * nbc + j], true),
                            ],
                            None,
                            Some(tile_call("gemm_tile", tile)),
                        );
                    }
                }
            }
            bk.iter().map(|&k| r.latest(k)).collect::<Vec<_>>()
        });
        let latest = solved.map_err(singular)?;
        Ok(DArray::from_parts(
            &ctx,
            grid,
            latest.into_iter().map(block_of).collect(),
        ))
    }

    /// `X = A⁻¹ B` for a square matrix `A` (this array) and a matrix `B` with as many rows
    /// (numpy's `solve`, Julia's `A \ B`), by the factorization `solver` names: Cholesky
    /// then two triangular solves, or LU then a row permutation of `B` and two triangular
    /// solves. All tiled; waits for the factorization and the solves. For a vector, give
    /// `B` one column.
    ///
    /// # Errors
    ///
    /// [`ArrayError::NotPositiveDefinite`] (Cholesky) or [`ArrayError::Singular`] (LU) where
    /// the factorization broke down; shape errors as
    /// [`solve_triangular`](Self::solve_triangular).
    ///
    /// ```
    /// use dagger::prelude::*;
    /// use dagger::{Pivoting, Solver};
    /// let ctx = Context::builder().threads(2).build()?;
    /// let a = DArray::distribute(&ctx, &ndarray::arr2(&[[4.0f64, 2.0], [2.0, 5.0]]), Blocks::new([1, 1]))?;
    /// let b = DArray::distribute(&ctx, &ndarray::arr2(&[[8.0], [12.0]]), Blocks::new([1, 1]))?;
    /// for solver in [Solver::Cholesky, Solver::Lu(Pivoting::Partial), Solver::Lu(Pivoting::None)] {
    ///     let x = a.solve(&b, solver)?.collect2()?;
    ///     assert!((x[[0, 0]] - 1.0).abs() < 1e-12 && (x[[1, 0]] - 2.0).abs() < 1e-12, "{x}");
    /// }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn solve(&self, b: &DArray<T>, solver: Solver) -> Result<DArray<T>, ArrayError> {
        self.check_rhs(b)?;
        match solver {
            Solver::Cholesky => {
                let l = self.cholesky()?;
                let y = l.solve_triangular(b, Triangle::Lower, Trans::No, Diag::NonUnit)?;
                l.solve_triangular(&y, Triangle::Lower, Trans::Yes, Diag::NonUnit)
            }
            Solver::Lu(pivoting) => self.lu(pivoting)?.solve(b),
        }
    }

    /// The inverse `A⁻¹` of a square matrix, by LU with partial pivoting and a solve
    /// against the identity (blocked as `A`'s rows). Waits for it.
    ///
    /// # Errors
    ///
    /// [`ArrayError::Singular`] for a singular matrix; shape errors for one that is not
    /// square.
    ///
    /// ```
    /// use dagger::prelude::*;
    /// let ctx = Context::builder().threads(2).build()?;
    /// let a = DArray::distribute(&ctx, &ndarray::arr2(&[[0.0, 2.0], [4.0, 0.0]]), Blocks::new([1, 1]))?;
    /// assert_eq!(a.inv()?.collect2()?, ndarray::arr2(&[[0.0, 0.25], [0.5, 0.0]]));
    /// let singular = DArray::<f64>::ones(&ctx, [3, 3], Blocks::new([2, 2]))?;
    /// assert!(matches!(singular.inv(), Err(dagger::ArrayError::Singular { .. })));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn inv(&self) -> Result<DArray<T>, ArrayError> {
        let lu = self.lu(Pivoting::Partial)?;
        let cuts = lu.factors().grid().cuts[0].clone();
        let eye = Self::eye_on(
            self.context(),
            Grid {
                cuts: vec![cuts.clone(), cuts],
            },
        );
        lu.solve(&eye)
    }

    fn check_rhs(&self, b: &DArray<T>) -> Result<(), ArrayError> {
        let (sa, sb) = (self.shape(), b.shape());
        if sa.len() != 2 || sa[0] != sa[1] || sb.len() != 2 || sb[0] != sa[0] {
            return Err(ArrayError::ShapeMismatch {
                op: "solve: a square matrix and a right-hand side with as many rows",
                left: sa,
                right: sb,
            });
        }
        Ok(())
    }
}

impl<T: Gemm> Lu<T> {
    /// `X = A⁻¹ B` from this factorization of `A`: `B`'s rows permuted by `P`, then
    /// `L⁻¹` and `U⁻¹` by [`DArray::solve_triangular`]. Waits for the solves.
    ///
    /// # Errors
    ///
    /// Shape errors for a `B` that is not a matrix with as many rows as `A`.
    pub fn solve(&self, b: &DArray<T>) -> Result<DArray<T>, ArrayError> {
        let f = self.factors();
        f.check_rhs(b)?;
        let pb = permute_rows(b, self.permutation());
        let y = f.solve_triangular(&pb, Triangle::Lower, Trans::No, Diag::Unit)?;
        f.solve_triangular(&y, Triangle::Upper, Trans::No, Diag::NonUnit)
    }
}

/// `P B`: row `i` is row `perm[i]` of `B`, blocked as `B`; one host task per block (on the
/// rank owning it), reading the blocks of its column that hold its rows.
fn permute_rows<T: Gemm>(b: &DArray<T>, perm: &[usize]) -> DArray<T> {
    let ctx = b.context().clone();
    let grid = b.grid().clone();
    let (rc, cc) = (&grid.cuts[0], &grid.cuts[1]);
    let (nbr, nbc) = (rc.len() - 1, cc.len() - 1);
    let opts = host_options(&ctx).name("permute_rows");
    let block_of_row = |row: usize| rc.partition_point(|&c| c <= row) - 1;
    let mut blocks = Vec::with_capacity(nbr * nbc);
    for i in 0..nbr {
        let rows = perm[rc[i]..rc[i + 1]].to_vec();
        let mut sources: Vec<usize> = rows.iter().map(|&s| block_of_row(s)).collect();
        sources.sort_unstable();
        sources.dedup();
        for j in 0..nbc {
            if sources == [i] && rows.iter().enumerate().all(|(q, &s)| s == rc[i] + q) {
                blocks.push(b.blocks()[i * nbc + j].clone());
                continue;
            }
            let mut deps = Deps::default();
            for &s in &sources {
                deps.list.push(b.blocks()[s * nbc + j].arg().dep);
            }
            let tile = GatherRowsTile::<T> {
                cols: width(cc, j),
                parts: sources.iter().map(|&s| (rc[s], width(rc, s))).collect(),
                rows: rows.clone(),
                _t: PhantomData,
            };
            let task = ctx.submit_kernel(
                "permute_rows",
                TypeId::of::<GatherRowsTile<T>>(),
                owned_tile_options(&ctx, opts.clone(), (nbr, nbc), (i, j), true),
                deps,
                None,
                Some(cpu_tile_call(
                    "gather_rows_tile",
                    <T as dagger_cpu::Scalar>::NAME,
                    tile,
                )),
            );
            blocks.push(Block::Task(DTask::from_core(task)));
        }
    }
    DArray::from_parts(&ctx, grid, blocks)
}
