//! Tiled Householder QR factorization of a tall or square matrix: `DArray::qr` and its
//! result [`Qr`], with the thin `Q`, `R` and least-squares solves.

use std::any::TypeId;
use std::marker::PhantomData;

use dagger_cpu::{Diag, Trans, Triangle};
use dagger_wgpu::blas::GemmKernel;

use super::{block_of, owned_tile_options, tile_options, version_of, width, Gemm};
use crate::array::domain::Grid;
use crate::array::{host_options, ArrayError, Block, DArray};
use crate::chunk::Chunk;
use crate::datadeps::DataRegion;
use crate::kernel::tiles::{
    cpu_tile_call, tile_call, GemmTile, LuPart, QrPanelTile, QrPart, QrPartTile, TrianglePartTile,
};
use crate::Priority;

/// The QR factorization `A = Q R` of an `m x n` matrix with `m >= n`, from [`DArray::qr`].
///
/// `Q` is the product of one block reflector `I - V_k T_k V_kᵀ` per column of blocks
/// (LAPACK's compact WY form); the factorization keeps them, so [`q`](Self::q) forms the
/// thin `Q` (`m x n`, orthonormal columns) and [`solve`](Self::solve) applies `Qᵀ` to a
/// right-hand side without forming it. [`r`](Self::r) is the `n x n` upper triangular `R`;
/// [`factors`](Self::factors) holds `R` and the Householder vectors packed, as LAPACK's
/// `?geqrf` leaves them.
#[derive(Clone)]
pub struct Qr<T> {
    factors: DArray<T>,
    reflectors: Vec<Reflector<T>>,
}

/// One panel's block reflector, by blocks of its rows from the diagonal down: `V` and
/// `Y = V T`.
#[derive(Clone)]
struct Reflector<T> {
    v: Vec<Block<T>>,
    y: Vec<Block<T>>,
}

impl<T> std::fmt::Debug for Qr<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Qr")
            .field("factors", &self.factors)
            .field("reflectors", &self.reflectors.len())
            .finish()
    }
}

/// Which of `Q` and `Qᵀ` [`apply`] multiplies by.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Side {
    Q,
    Qt,
}

/// A new key holding `len` zeros: the output of a GEMM tile that does not read it.
fn zeros_key<T: Gemm>(r: &mut DataRegion<'_>, len: usize) -> u64 {
    r.track(version_of(&Block::Data(Chunk::new(vec![T::ZERO; len]))))
}

/// One panel's reflector applied to one column of blocks of `B` (their keys, from the
/// panel's diagonal block down): `W = Σ_i left_iᵀ B_i`, then `B_i -= right_i W`; for `Qᵀ`
/// `left = Y` and `right = V`, for `Q` the other way round. All GEMM tiles, which run on
/// CPU threads or GPUs: over several ranks, `B_i`'s on its owner (block `(k + i, j)` of a
/// grid of `counts` blocks), `W`'s on the owner of the column's diagonal block `(k, j)`.
/// The tiles run at `priority`.
#[allow(clippy::too_many_arguments)]
fn reflect_column<T: Gemm>(
    r: &mut DataRegion<'_>,
    ctx: &crate::Context,
    priority: Priority,
    counts: (usize, usize),
    (k, j): (usize, usize),
    left: &[u64],
    right: &[u64],
    heights: &[usize],
    wk: usize,
    column: &[u64],
    wj: usize,
) {
    let on = |i: usize| {
        owned_tile_options(ctx, tile_options("gemm"), counts, (i, j), false).priority(priority)
    };
    let wkey = zeros_key::<T>(r, wk * wj);
    let mut args: Vec<(u64, bool)> = left.iter().map(|&k| (k, false)).collect();
    args.extend(column.iter().map(|&k| (k, false)));
    args.push((wkey, true));
    let tile = GemmTile::<T> {
        kernel: GemmKernel::Tiled,
        op_a: Trans::Yes,
        op_b: Trans::No,
        alpha: T::ONE,
        beta: T::ZERO,
        m: wk,
        n: wj,
        a: heights.iter().map(|&h| (h, wk)).collect(),
        b: heights.iter().map(|&h| (h, wj)).collect(),
    };
    r.submit_versioned(
        "gemm".into(),
        TypeId::of::<GemmTile<T>>(),
        on(k),
        &args,
        None,
        Some(tile_call("gemm_tile", tile)),
    );
    for (i, &h) in heights.iter().enumerate() {
        let tile = GemmTile::<T> {
            kernel: GemmKernel::Tiled,
            op_a: Trans::No,
            op_b: Trans::No,
            alpha: -T::ONE,
            beta: T::ONE,
            m: h,
            n: wj,
            a: vec![(h, wk)],
            b: vec![(wk, wj)],
        };
        r.submit_versioned(
            "gemm".into(),
            TypeId::of::<GemmTile<T>>(),
            on(k + i),
            &[(right[i], false), (wkey, false), (column[i], true)],
            None,
            Some(tile_call("gemm_tile", tile)),
        );
    }
}

impl<T: Gemm> Qr<T> {
    /// `R` and the Householder vectors packed, blocked as the factored matrix: `R` on and
    /// above the diagonal of the first `n` rows, the vectors below the diagonal (their unit
    /// diagonal not stored).
    pub fn factors(&self) -> &DArray<T> {
        &self.factors
    }

    fn col_cuts(&self) -> &[usize] {
        &self.factors.grid().cuts[1]
    }

    fn row_cuts(&self) -> &[usize] {
        &self.factors.grid().cuts[0]
    }

    /// `R`: the `n x n` upper triangular factor, blocked as `A`'s columns.
    pub fn r(&self) -> DArray<T> {
        let f = &self.factors;
        let ctx = f.context().clone();
        let cc = self.col_cuts().to_vec();
        let nbc = cc.len() - 1;
        let opts = host_options(&ctx).name("qr_r");
        let mut blocks = Vec::with_capacity(nbc * nbc);
        for i in 0..nbc {
            for j in 0..nbc {
                let b = &f.blocks()[i * nbc + j];
                let tile = TrianglePartTile::<T> {
                    part: LuPart::Upper,
                    rows: width(&cc, i),
                    cols: width(&cc, j),
                    row0: cc[i],
                    col0: cc[j],
                    _t: PhantomData,
                };
                let opts = owned_tile_options(&ctx, opts.clone(), (nbc, nbc), (i, j), true);
                blocks.push(super::lu::triangle_part(&ctx, "qr_r", &opts, b, tile));
            }
        }
        DArray::from_parts(
            &ctx,
            Grid {
                cuts: vec![cc.clone(), cc],
            },
            blocks,
        )
    }

    /// `op(Q) B` for `B` blocked along its rows as the factored matrix: the reflectors
    /// applied in one datadeps region. Waits for it.
    fn apply(&self, b: &DArray<T>, side: Side) -> Result<DArray<T>, ArrayError> {
        let rc = self.row_cuts().to_vec();
        let cc = self.col_cuts().to_vec();
        let bc = b.grid().cuts[1].clone();
        let nbb = bc.len() - 1;
        let ctx = b.context().clone();
        let steps: Vec<usize> = match side {
            Side::Qt => (0..self.reflectors.len()).collect(),
            Side::Q => (0..self.reflectors.len()).rev().collect(),
        };
        let out = ctx.spawn_datadeps(|r| {
            let keys: Vec<u64> = b.blocks().iter().map(|x| r.track(version_of(x))).collect();
            for k in steps {
                let refl = &self.reflectors[k];
                let v: Vec<u64> = refl.v.iter().map(|x| r.track(version_of(x))).collect();
                let y: Vec<u64> = refl.y.iter().map(|x| r.track(version_of(x))).collect();
                let (left, right) = match side {
                    Side::Qt => (&y, &v),
                    Side::Q => (&v, &y),
                };
                let heights: Vec<usize> = (k..rc.len() - 1).map(|i| width(&rc, i)).collect();
                for j in 0..nbb {
                    let column: Vec<u64> = (k..rc.len() - 1).map(|i| keys[i * nbb + j]).collect();
                    reflect_column::<T>(
                        r,
                        &ctx,
                        Priority::Normal,
                        (rc.len() - 1, nbb),
                        (k, j),
                        left,
                        right,
                        &heights,
                        width(&cc, k),
                        &column,
                        width(&bc, j),
                    );
                }
            }
            keys.iter().map(|&k| r.latest(k)).collect::<Vec<_>>()
        })?;
        let blocks = out.into_iter().map(block_of).collect();
        Ok(DArray::from_parts(&ctx, b.grid().clone(), blocks))
    }

    /// The thin `Q`: `m x n` with orthonormal columns, blocked as the factored matrix, so
    /// that `Q R = A` (numpy's `qr(a, mode="reduced")`). Formed by applying the reflectors
    /// to the first `n` columns of the identity, last panel first. Waits for it.
    ///
    /// # Errors
    ///
    /// [`ArrayError::Task`] if a task failed.
    pub fn q(&self) -> Result<DArray<T>, ArrayError> {
        let eye = DArray::eye_on(self.factors.context(), self.factors.grid().clone());
        self.apply(&eye, Side::Q)
    }

    /// `Qᵀ B` for `B` with `m` rows, without forming `Q`. Waits for it.
    ///
    /// # Errors
    ///
    /// [`ArrayError::ShapeMismatch`] unless `B` is a matrix with `m` rows.
    pub fn qt_mul(&self, b: &DArray<T>) -> Result<DArray<T>, ArrayError> {
        let b = self.rhs(b, "qt_mul: a matrix with as many rows as the factored one")?;
        self.apply(&b, Side::Qt)
    }

    /// `B` with `m` rows, re-blocked along its rows as the factored matrix.
    fn rhs(&self, b: &DArray<T>, op: &'static str) -> Result<DArray<T>, ArrayError> {
        let (sf, sb) = (self.factors.shape(), b.shape());
        if sb.len() != 2 || sb[0] != sf[0] {
            return Err(ArrayError::ShapeMismatch {
                op,
                left: sf,
                right: sb,
            });
        }
        Ok(b.aligned_to(&Grid {
            cuts: vec![self.row_cuts().to_vec(), b.grid().cuts[1].clone()],
        }))
    }

    /// The least-squares solution `X` (`n x p`) minimizing `‖A X - B‖` (Frobenius) for `B`
    /// (`m x p`): `R⁻¹ (Qᵀ B)[..n]`, numpy's `lstsq` for a matrix of full column rank; for a
    /// square `A`, `A⁻¹ B`. Waits for it.
    ///
    /// # Errors
    ///
    /// [`ArrayError::ShapeMismatch`] unless `B` is a matrix with `m` rows;
    /// [`ArrayError::Singular`] naming the block and row where `R` has a zero on its
    /// diagonal (`A` does not have full column rank).
    pub fn solve(&self, b: &DArray<T>) -> Result<DArray<T>, ArrayError> {
        let b = self.rhs(
            b,
            "Qr::solve: a matrix with as many rows as the factored one",
        )?;
        let qtb = self.apply(&b, Side::Qt)?;
        let n = *self.col_cuts().last().expect("cuts start at 0");
        let top = qtb.slice(&[0..n, 0..b.shape()[1]])?;
        self.r()
            .solve_triangular(&top, Triangle::Upper, Trans::No, Diag::NonUnit)
    }
}

impl<T: Gemm> DArray<T> {
    /// The QR factorization `A = Q R` of an `m x n` matrix with `m >= n`, tiled Householder
    /// (Dagger.jl's `qr`, LAPACK's `?geqrf` by blocks).
    ///
    /// Left to right over the columns of blocks: at step `k` one task factors the panel —
    /// the blocks of column `k` from the diagonal down — with `dagger-cpu`'s `geqrt`, which
    /// also gives its block reflector `I - V T Vᵀ`; then, for each column `j` to its right,
    /// one GEMM tile forms `W = (V T)ᵀ A_j` over the column's blocks and one GEMM tile per
    /// block subtracts `V_i W`. All are tasks of one datadeps region, so the next panel
    /// starts as soon as its column is updated, beside the rest of the update; the GEMM
    /// tiles run on CPU threads or GPUs as the scope allows, the panels on CPU threads (on
    /// any CPU thread when the scope holds none). The rows are re-blocked so that each
    /// diagonal block is square: as the columns down to row `n`, then in blocks of the
    /// array's row block size. Waits for the factorization.
    ///
    /// # Errors
    ///
    /// [`ArrayError::NotAMatrix`] naming the shape for an array that is not 2-D, is empty,
    /// or is wider than tall (factor its transpose instead).
    ///
    /// ```
    /// use dagger::prelude::*;
    /// let ctx = Context::builder().threads(2).build()?;
    /// let host = ndarray::arr2(&[[3.0f64, 1.0], [4.0, 2.0], [0.0, 2.0]]);
    /// let a = DArray::distribute(&ctx, &host, Blocks::new([2, 1]))?;
    /// let qr = a.qr()?;
    /// let (q, r) = (qr.q()?.collect2()?, qr.r().collect2()?);
    /// assert!((q.dot(&r) - &host).iter().all(|e: &f64| e.abs() < 1e-12));
    /// assert!((q.t().dot(&q) - ndarray::Array2::<f64>::eye(2)).iter().all(|e| e.abs() < 1e-12));
    /// assert_eq!(r[[1, 0]], 0.0);
    /// // Least squares: the line through (0, 1), (1, 3), (2, 5).
    /// let x = DArray::distribute(&ctx, &ndarray::arr2(&[[1.0f64, 0.0], [1.0, 1.0], [1.0, 2.0]]), Blocks::new([2, 2]))?;
    /// let y = DArray::distribute(&ctx, &ndarray::arr2(&[[1.0f64], [3.0], [5.0]]), Blocks::new([2, 1]))?;
    /// let c = x.qr()?.solve(&y)?.collect2()?;
    /// assert!((c[[0, 0]] - 1.0).abs() < 1e-12 && (c[[1, 0]] - 2.0).abs() < 1e-12);
    /// assert!(a.t().qr().is_err()); // 2 x 3: wider than tall
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn qr(&self) -> Result<Qr<T>, ArrayError> {
        let s = self.shape();
        if s.len() != 2 || s[0] < s[1] || s[1] == 0 {
            return Err(ArrayError::NotAMatrix {
                op: "qr",
                needs: "a non-empty matrix with at least as many rows as columns",
                name: "a",
                shape: s,
            });
        }
        let (m, n) = (s[0], s[1]);
        let cc = self.grid().cuts[1].clone();
        let row_block = self.grid().cuts[0][1].max(1);
        let mut rc = cc.clone();
        let mut next = n;
        while next < m {
            next = (next + row_block).min(m);
            rc.push(next);
        }
        let a = self.aligned_to(&Grid {
            cuts: vec![rc.clone(), cc.clone()],
        });
        let (nbr, nbc) = (rc.len() - 1, cc.len() - 1);
        let ctx = self.context().clone();
        let wr = |i: usize| width(&rc, i);
        let wc = |j: usize| width(&cc, j);
        let host = host_options(&ctx);
        // Each tile runs on the rank owning the block it writes (the panel, on the diagonal
        // block's; a block's parts of the reflector, on the block's), on CPU threads.
        let on = |opts: crate::Options, (i, j): (usize, usize)| {
            owned_tile_options(&ctx, opts, (nbr, nbc), (i, j), true)
        };
        let dtype = <T as dagger_cpu::Scalar>::NAME;
        let empty = || version_of(&Block::Data(Chunk::new(Vec::<T>::new())));
        let (latest, parts) = ctx.spawn_datadeps(|r| {
            let keys: Vec<u64> = a.blocks().iter().map(|b| r.track(version_of(b))).collect();
            let mut parts: Vec<(Vec<u64>, Vec<u64>)> = Vec::with_capacity(nbc);
            for k in 0..nbc {
                let heights: Vec<usize> = (k..nbr).map(wr).collect();
                let panel = r.track(empty());
                let mut args: Vec<(u64, bool)> =
                    (k..nbr).map(|i| (keys[i * nbc + k], false)).collect();
                args.push((panel, true));
                r.submit_versioned(
                    "qr_panel".into(),
                    TypeId::of::<QrPanelTile<T>>(),
                    // The panel is the critical path: it may use threads nothing else needs.
                    on(
                        host.clone()
                            .name("qr_panel")
                            .max_threads(usize::MAX)
                            .priority(Priority::High),
                        (k, k),
                    ),
                    &args,
                    None,
                    Some(cpu_tile_call(
                        "qr_panel_tile",
                        dtype,
                        QrPanelTile::<T> {
                            heights: heights.clone(),
                            width: wc(k),
                            _t: PhantomData,
                        },
                    )),
                );
                let take = |r: &mut DataRegion<'_>, part: QrPart, index: usize, into: u64| {
                    r.submit_versioned(
                        "qr_part".into(),
                        TypeId::of::<QrPartTile<T>>(),
                        on(
                            host.clone().name("qr_part").priority(Priority::High),
                            (k + index, k),
                        ),
                        &[(panel, false), (into, true)],
                        None,
                        Some(cpu_tile_call(
                            "qr_part_tile",
                            dtype,
                            QrPartTile::<T> {
                                part,
                                index,
                                _t: PhantomData,
                            },
                        )),
                    );
                };
                let mut v = Vec::with_capacity(heights.len());
                let mut y = Vec::with_capacity(heights.len());
                for i in k..nbr {
                    take(r, QrPart::Packed, i - k, keys[i * nbc + k]);
                }
                for i in k..nbr {
                    let (vk, yk) = (r.track(empty()), r.track(empty()));
                    take(r, QrPart::V, i - k, vk);
                    take(r, QrPart::Y, i - k, yk);
                    v.push(vk);
                    y.push(yk);
                }
                // Qᵀ A_j for the columns to the right, the next panel's column first and
                // ahead of the rest of the step's, on whichever thread is free first: the
                // next panel waits for it.
                for j in k + 1..nbc {
                    let column: Vec<u64> = (k..nbr).map(|i| keys[i * nbc + j]).collect();
                    let priority = if j == k + 1 {
                        Priority::High
                    } else {
                        Priority::Normal
                    };
                    reflect_column::<T>(
                        r,
                        &ctx,
                        priority,
                        (nbr, nbc),
                        (k, j),
                        &y,
                        &v,
                        &heights,
                        wc(k),
                        &column,
                        wc(j),
                    );
                }
                parts.push((v, y));
            }
            let latest: Vec<_> = keys.iter().map(|&k| r.latest(k)).collect();
            let parts: Vec<_> = parts
                .into_iter()
                .map(|(v, y)| {
                    let blocks = |ks: Vec<u64>| -> Vec<Block<T>> {
                        ks.into_iter().map(|k| block_of(r.latest(k))).collect()
                    };
                    Reflector {
                        v: blocks(v),
                        y: blocks(y),
                    }
                })
                .collect::<Vec<_>>();
            (latest, parts)
        })?;
        let blocks = latest.into_iter().map(block_of).collect();
        Ok(Qr {
            factors: DArray::from_parts(&ctx, a.grid().clone(), blocks),
            reflectors: parts,
        })
    }
}
