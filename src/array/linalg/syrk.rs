//! SYRK: diagonal tiles as SYRK, the others as GEMM; `DArray::syrk` and `DArray::mirror`.

use std::any::TypeId;
use std::sync::Arc;

use dagger_cpu::{MatMut, Trans, Triangle};
use dagger_wgpu::blas::GemmKernel;

use super::{owned_tile_options, tile_options, width, Gemm};
use crate::array::domain::Grid;
use crate::array::{ArrayError, Block, DArray};
use crate::kernel::tiles::{tile_call, GemmTile, SyrkTile};
use crate::task::args::Deps;
use crate::task::DTask;

impl<T: Gemm> DArray<T> {
    /// In-place SYRK: `self = alpha op(a) op(a)ᵀ + beta self` on the `triangle` of `self`
    /// (diagonal included; BLAS `?syrk`). The other strict triangle keeps its values; call
    /// [`mirror`](Self::mirror) to make `self` symmetric. With `op = Trans::No`, `a` is n×k;
    /// with `Trans::Yes` it is k×n and the product is `aᵀ a`.
    ///
    /// `self` is re-blocked to square blocks along its row cuts if its blocking is not
    /// symmetric, and `a` to match. Diagonal tiles run a SYRK (tiled WGSL `syrk` on GPUs),
    /// the others a GEMM.
    ///
    /// ```
    /// use dagger::prelude::*;
    /// use dagger::{Trans, Triangle};
    /// let ctx = Context::builder().threads(2).build()?;
    /// let a = DArray::<f64>::fill(&ctx, &[3, 2], Blocks::new(&[2, 2]), 1.0)?;
    /// let mut c = DArray::<f64>::zeros(&ctx, &[3, 3], Blocks::new(&[2, 2]))?;
    /// c.syrk(Triangle::Lower, Trans::No, 1.0, &a, 0.0)?;
    /// let host = c.collect2()?;
    /// assert_eq!(host[[2, 0]], 2.0); // lower triangle: a aᵀ
    /// assert_eq!(host[[0, 2]], 0.0); // upper triangle untouched
    /// c.mirror(Triangle::Lower)?;
    /// assert_eq!(c.collect2()?[[0, 2]], 2.0);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn syrk(
        &mut self,
        triangle: Triangle,
        op: Trans,
        alpha: T,
        a: &DArray<T>,
        beta: T,
    ) -> Result<(), ArrayError> {
        self.syrk_with(GemmKernel::Tiled, triangle, op, alpha, a, beta)
    }

    /// [`syrk`](Self::syrk) with a choice of GPU kernel for the off-diagonal tiles (the
    /// diagonal tiles always run the tiled SYRK shader).
    pub fn syrk_with(
        &mut self,
        kernel: GemmKernel,
        triangle: Triangle,
        op: Trans,
        alpha: T,
        a: &DArray<T>,
        beta: T,
    ) -> Result<(), ArrayError> {
        a.matrix_shape("syrk", self, "c")?;
        let (sa, sc) = (a.shape(), self.shape());
        let (n, k) = match op {
            Trans::No => (sa[0], sa[1]),
            Trans::Yes => (sa[1], sa[0]),
        };
        if sc != [n, n] {
            return Err(ArrayError::TargetShape {
                op: "syrk",
                product: vec![n, n],
                target: sc,
            });
        }
        let _ = k;
        let (c, cuts) = self.square_blocks("syrk", "c")?;
        let k_cuts = a.grid().cuts[if op == Trans::No { 1 } else { 0 }].clone();
        let a = a.aligned_to(&Grid {
            cuts: match op {
                Trans::No => vec![cuts.clone(), k_cuts.clone()],
                Trans::Yes => vec![k_cuts.clone(), cuts.clone()],
            },
        });
        let (nb, bk) = (cuts.len() - 1, k_cuts.len() - 1);
        let a_at = |i: usize, kk: usize| match op {
            Trans::No => i * bk + kk,
            Trans::Yes => kk * nb + i,
        };
        let stored = |rows: usize, kk: usize| match op {
            Trans::No => (rows, width(&k_cuts, kk)),
            Trans::Yes => (width(&k_cuts, kk), rows),
        };
        let ctx = self.context().clone();
        let mut blocks = c.blocks().to_vec();
        for i in 0..nb {
            for j in 0..nb {
                let inside = match triangle {
                    Triangle::Lower => i >= j,
                    Triangle::Upper => i <= j,
                };
                if !inside {
                    continue;
                }
                let (mi, nj) = (width(&cuts, i), width(&cuts, j));
                let mut deps = Deps::default();
                let task = if i == j {
                    let tile = SyrkTile::<T> {
                        triangle,
                        op,
                        alpha,
                        beta,
                        n: mi,
                        a: (0..bk).map(|kk| stored(mi, kk)).collect(),
                    };
                    for kk in 0..bk {
                        deps.list.push(a.blocks()[a_at(i, kk)].arg().dep);
                    }
                    deps.list.push(c.blocks()[i * nb + i].arg().dep);
                    ctx.submit_kernel(
                        "syrk",
                        TypeId::of::<SyrkTile<T>>(),
                        owned_tile_options(&ctx, tile_options("syrk"), (nb, nb), (i, i), false),
                        deps,
                        None,
                        Some(tile_call("syrk_tile", tile)),
                    )
                } else {
                    // C_ij = alpha op(A)_i op(A)_jᵀ + beta C_ij.
                    let (op_a, op_b) = match op {
                        Trans::No => (Trans::No, Trans::Yes),
                        Trans::Yes => (Trans::Yes, Trans::No),
                    };
                    let tile = GemmTile::<T> {
                        kernel,
                        op_a,
                        op_b,
                        alpha,
                        beta,
                        m: mi,
                        n: nj,
                        a: (0..bk).map(|kk| stored(mi, kk)).collect(),
                        b: (0..bk).map(|kk| stored(nj, kk)).collect(),
                    };
                    for kk in 0..bk {
                        deps.list.push(a.blocks()[a_at(i, kk)].arg().dep);
                    }
                    for kk in 0..bk {
                        deps.list.push(a.blocks()[a_at(j, kk)].arg().dep);
                    }
                    if tile.reads_c() {
                        deps.list.push(c.blocks()[i * nb + j].arg().dep);
                    }
                    ctx.submit_kernel(
                        "gemm",
                        TypeId::of::<GemmTile<T>>(),
                        owned_tile_options(&ctx, tile_options("gemm"), (nb, nb), (i, j), false),
                        deps,
                        None,
                        Some(tile_call("gemm_tile", tile)),
                    )
                };
                blocks[i * nb + j] = Block::Task(DTask::from_core(task));
            }
        }
        *self = DArray::from_parts(&ctx, c.grid().clone(), blocks);
        Ok(())
    }

    /// Copies the `triangle` of a square matrix onto the other one, making it symmetric.
    pub fn mirror(&mut self, triangle: Triangle) -> Result<(), ArrayError> {
        let (c, cuts) = self.square_blocks("mirror", "a")?;
        let nb = cuts.len() - 1;
        let ctx = self.context().clone();
        let mut blocks = c.blocks().to_vec();
        for i in 0..nb {
            for j in 0..nb {
                let source = match triangle {
                    Triangle::Lower => i > j,
                    Triangle::Upper => i < j,
                };
                let (mi, nj) = (width(&cuts, i), width(&cuts, j));
                if i == j {
                    let t = ctx.spawn_with(
                        crate::Options::new()
                            .name("mirror")
                            .scope(crate::Scope::cpu()),
                        move |d: Arc<Vec<T>>| {
                            let mut d = d.to_vec();
                            dagger_cpu::mirror(triangle, MatMut::new(&mut d, mi, mi));
                            d
                        },
                        (c.blocks()[i * nb + i].shared(),),
                    );
                    blocks[i * nb + i] = Block::Task(t);
                } else if source {
                    let t = ctx.spawn_with(
                        crate::Options::new()
                            .name("transpose")
                            .scope(crate::Scope::cpu()),
                        move |src: Arc<Vec<T>>| {
                            let mut out = vec![T::ZERO; mi * nj];
                            for r in 0..mi {
                                for (q, x) in src[r * nj..(r + 1) * nj].iter().enumerate() {
                                    out[q * mi + r] = *x;
                                }
                            }
                            out
                        },
                        (c.blocks()[i * nb + j].shared(),),
                    );
                    blocks[j * nb + i] = Block::Task(t);
                }
            }
        }
        *self = DArray::from_parts(&ctx, c.grid().clone(), blocks);
        Ok(())
    }
}
