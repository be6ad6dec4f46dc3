//! GEMM: one tile task per block of `C`, `DArray::gemm` and `DArray::matmul`.

use std::any::TypeId;

use dagger_cpu::Trans;
use dagger_wgpu::blas::GemmKernel;

use super::{owned_tile_options, tile_options, width, Gemm};
use crate::array::domain::Grid;
use crate::array::{ArrayError, Block, DArray};
use crate::kernel::tiles::{tile_call, GemmTile};
use crate::task::args::Deps;
use crate::task::DTask;

/// The blocks of `alpha op_a(a) op_b(b) + beta c` on `c_grid` (`c` is read only when `beta`
/// is not zero); shapes already checked.
#[allow(clippy::too_many_arguments)]
pub(super) fn gemm_tiles<T: Gemm>(
    kernel: GemmKernel,
    op_a: Trans,
    op_b: Trans,
    alpha: T,
    a: &DArray<T>,
    b: &DArray<T>,
    beta: T,
    c_grid: &Grid,
    c: Option<&DArray<T>>,
) -> Vec<Block<T>> {
    let c_cuts = &c_grid.cuts;
    let k_cuts = a.grid().cuts[if op_a == Trans::No { 1 } else { 0 }].clone();
    let grid = |x: &Vec<usize>, y: &Vec<usize>, t: Trans| Grid {
        cuts: match t {
            Trans::No => vec![x.clone(), y.clone()],
            Trans::Yes => vec![y.clone(), x.clone()],
        },
    };
    let a = a.aligned_to(&grid(&c_cuts[0], &k_cuts, op_a));
    let b = b.aligned_to(&grid(&k_cuts, &c_cuts[1], op_b));
    let (bi, bj, bk) = (c_cuts[0].len() - 1, c_cuts[1].len() - 1, k_cuts.len() - 1);
    let a_at = |i: usize, kk: usize| match op_a {
        Trans::No => i * bk + kk,
        Trans::Yes => kk * bi + i,
    };
    let b_at = |kk: usize, j: usize| match op_b {
        Trans::No => kk * bj + j,
        Trans::Yes => j * bk + kk,
    };
    let ctx = a.context().clone();
    let mut blocks = Vec::with_capacity(bi * bj);
    for i in 0..bi {
        for j in 0..bj {
            let (mi, nj) = (width(&c_cuts[0], i), width(&c_cuts[1], j));
            let stored = |rows: usize, cols: usize, t: Trans| match t {
                Trans::No => (rows, cols),
                Trans::Yes => (cols, rows),
            };
            let tile = GemmTile::<T> {
                kernel,
                op_a,
                op_b,
                alpha,
                beta,
                m: mi,
                n: nj,
                a: (0..bk)
                    .map(|kk| stored(mi, width(&k_cuts, kk), op_a))
                    .collect(),
                b: (0..bk)
                    .map(|kk| stored(width(&k_cuts, kk), nj, op_b))
                    .collect(),
            };
            let mut deps = Deps::default();
            for kk in 0..bk {
                deps.list.push(a.blocks()[a_at(i, kk)].arg().dep);
            }
            for kk in 0..bk {
                deps.list.push(b.blocks()[b_at(kk, j)].arg().dep);
            }
            if tile.reads_c() {
                let c = c.expect("a product that reads C is given C");
                deps.list.push(c.blocks()[i * bj + j].arg().dep);
            }
            let task = ctx.submit_kernel(
                "gemm",
                TypeId::of::<GemmTile<T>>(),
                owned_tile_options(&ctx, tile_options("gemm"), (bi, bj), (i, j), false),
                deps,
                None,
                Some(tile_call("gemm_tile", tile)),
            );
            blocks.push(Block::Task(DTask::from_core(task)));
        }
    }
    blocks
}

impl<T: Gemm> DArray<T> {
    /// In-place GEMM: `self = alpha op_a(a) op_b(b) + beta self` (BLAS `?gemm`), with the
    /// tiled WGSL kernel on GPUs. See [`gemm_with`](Self::gemm_with).
    ///
    /// ```
    /// use dagger::prelude::*;
    /// use dagger::Trans;
    /// let ctx = Context::builder().threads(2).build()?;
    /// let a = DArray::<f64>::fill(&ctx, &[4, 3], Blocks::new(&[2, 2]), 1.0)?; // 4x3
    /// let b = DArray::<f64>::fill(&ctx, &[4, 5], Blocks::new(&[3, 3]), 2.0)?; // 4x5
    /// let mut c = DArray::<f64>::ones(&ctx, &[3, 5], Blocks::new(&[2, 2]))?;
    /// c.gemm(Trans::Yes, Trans::No, 0.5, &a, &b, 3.0)?; // c = 0.5 aᵀ b + 3 c
    /// assert!(c.collect2()?.iter().all(|&x| x == 0.5 * 4.0 * 2.0 + 3.0));
    /// assert!(c.gemm(Trans::No, Trans::No, 1.0, &a, &b, 0.0).is_err()); // 4x3 · 4x5
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[allow(clippy::too_many_arguments)]
    pub fn gemm(
        &mut self,
        op_a: Trans,
        op_b: Trans,
        alpha: T,
        a: &DArray<T>,
        b: &DArray<T>,
        beta: T,
    ) -> Result<(), ArrayError> {
        self.gemm_with(GemmKernel::Tiled, op_a, op_b, alpha, a, b, beta)
    }

    /// [`gemm`](Self::gemm) with a choice of GPU kernel: [`GemmKernel::Tiled`] (the
    /// register-blocked one) or [`GemmKernel::Naive`] (one invocation per element, the
    /// reference the tiled kernel is measured against). CPU tiles always run
    /// `dagger_cpu::gemm`.
    ///
    /// `self` keeps its blocking; `a` and `b` are re-blocked to match it (and each other
    /// along the inner dimension) when they differ. One task per block of `self` sums the
    /// products over the inner blocks. Shapes that do not fit (`op_a(a)` m×k, `op_b(b)` k×n,
    /// `self` m×n) are an error naming them.
    #[allow(clippy::too_many_arguments)]
    pub fn gemm_with(
        &mut self,
        kernel: GemmKernel,
        op_a: Trans,
        op_b: Trans,
        alpha: T,
        a: &DArray<T>,
        b: &DArray<T>,
        beta: T,
    ) -> Result<(), ArrayError> {
        a.matrix_shape("gemm", b, "b")?;
        let (sa, sb, sc) = (a.shape(), b.shape(), self.shape());
        let op_shape = |s: &[usize], t: Trans| match t {
            Trans::No => (s[0], s[1]),
            Trans::Yes => (s[1], s[0]),
        };
        let ((m, k), (kb, n)) = (op_shape(&sa, op_a), op_shape(&sb, op_b));
        if k != kb {
            return Err(ArrayError::InnerDimensions {
                op: "gemm",
                left_name: "op(a)",
                left: vec![m, k],
                right_name: "op(b)",
                right: vec![kb, n],
            });
        }
        if sc.len() != 2 || (sc[0], sc[1]) != (m, n) {
            return Err(ArrayError::TargetShape {
                op: "gemm",
                product: vec![m, n],
                target: sc,
            });
        }
        let grid = self.grid().clone();
        let blocks = gemm_tiles(kernel, op_a, op_b, alpha, a, b, beta, &grid, Some(self));
        *self = DArray::from_parts(self.context(), grid, blocks);
        Ok(())
    }
}

impl<T: Gemm> DArray<T> {
    /// The matrix product `self · other` of two 2-D arrays, as a new array blocked by
    /// `self`'s rows and `other`'s columns (`other` is re-blocked along its rows to match
    /// `self`'s columns when they differ). Each output block is one task that runs on a CPU
    /// thread (`dagger_cpu::gemm`, single-threaded per tile) or a GPU (tiled WGSL), as the
    /// scope allows and the cost model prefers.
    ///
    /// ```
    /// use dagger::prelude::*;
    /// let ctx = Context::builder().threads(2).build()?;
    /// let a = DArray::<f64>::ones(&ctx, &[3, 4], Blocks::new(&[2, 2]))?;
    /// let b = DArray::<f64>::fill(&ctx, &[4, 5], Blocks::new(&[3, 3]), 0.5)?;
    /// let c = a.matmul(&b)?.collect2()?;
    /// assert_eq!(c.shape(), &[3, 5]);
    /// assert!(c.iter().all(|&x| x == 2.0));
    /// assert!(a.matmul(&a).is_err(), "4 columns against 3 rows");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn matmul(&self, other: &DArray<T>) -> Result<DArray<T>, ArrayError> {
        let (sa, sb) = (self.shape(), other.shape());
        for (name, shape) in [("a", &sa), ("b", &sb)] {
            if shape.len() != 2 {
                return Err(ArrayError::NotAMatrix {
                    op: "matmul",
                    needs: "2-D arrays",
                    name,
                    shape: shape.clone(),
                });
            }
        }
        if sa[1] != sb[0] {
            return Err(ArrayError::InnerDimensions {
                op: "matmul",
                left_name: "a",
                left: sa,
                right_name: "b",
                right: sb,
            });
        }
        let out_grid = Grid {
            cuts: vec![self.grid().cuts[0].clone(), other.grid().cuts[1].clone()],
        };
        let blocks = gemm_tiles(
            GemmKernel::Tiled,
            Trans::No,
            Trans::No,
            T::ONE,
            self,
            other,
            T::ZERO,
            &out_grid,
            None,
        );
        Ok(DArray::from_parts(self.context(), out_grid, blocks))
    }
}

#[cfg(test)]
mod tests {
    use std::any::TypeId;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use dagger_cpu::Trans;
    use dagger_wgpu::blas::GemmKernel;

    use crate::kernel::tiles::{tile_call, GemmTile};
    use crate::prelude::*;
    use crate::task::args::Deps;
    use crate::task::DTask;
    use crate::KernelArg;

    /// Runs the tile `C = A I + C` (2 x 2) as a task on a `C` made by a task, keeping a
    /// handle to that `C` or not; returns where `C` was, where the result is, the result
    /// and, if kept, `C` afterwards.
    fn accumulate(keep_c: bool) -> (usize, usize, Vec<f64>, Option<Vec<f64>>) {
        static C_AT: AtomicUsize = AtomicUsize::new(0);
        let ctx = Context::builder().threads(1).build().expect("a context");
        let a = ctx.spawn(|| vec![1.0f64, 2.0, 3.0, 4.0], ());
        let b = ctx.spawn(|| vec![1.0f64, 0.0, 0.0, 1.0], ());
        let c = ctx.spawn(
            || {
                let v = vec![10.0f64; 4];
                C_AT.store(v.as_ptr() as usize, Ordering::SeqCst);
                v
            },
            (),
        );
        c.wait();
        let mut deps = Deps::default();
        for x in [&a, &b, &c] {
            deps.list.push(KernelArg::from(x).dep);
        }
        let tile = GemmTile::<f64> {
            kernel: GemmKernel::Tiled,
            op_a: Trans::No,
            op_b: Trans::No,
            alpha: 1.0,
            beta: 1.0,
            m: 2,
            n: 2,
            a: vec![(2, 2)],
            b: vec![(2, 2)],
        };
        let core = ctx.submit_kernel(
            "gemm",
            TypeId::of::<GemmTile<f64>>(),
            Options::new().scope(Scope::cpu()),
            deps,
            None,
            Some(tile_call("gemm_tile", tile)),
        );
        let kept = keep_c.then_some(c);
        let out: DTask<Vec<f64>> = DTask::from_core(core);
        let at = ctx
            .spawn(|v: Arc<Vec<f64>>| v.as_ptr() as usize, (out.shared(),))
            .fetch()
            .expect("the result's address");
        let c_after = kept.map(|c| c.fetch().expect("C is still readable"));
        (
            C_AT.load(Ordering::SeqCst),
            at,
            out.fetch().expect("the result"),
            c_after,
        )
    }

    #[test]
    fn a_tile_updates_a_block_nothing_else_holds_in_place_and_copies_a_held_one() {
        let want = vec![11.0, 12.0, 13.0, 14.0];
        // Nothing but the tile holds C once it starts: its memory becomes the result.
        let (c_at, out_at, out, _) = accumulate(false);
        assert_eq!(out, want);
        assert_eq!(out_at, c_at, "the tile copied a block nothing else held");
        // A handle to C is kept: the tile writes a copy and C stays as it was.
        let (c_at, out_at, out, c_after) = accumulate(true);
        assert_eq!(out, want);
        assert_ne!(
            out_at, c_at,
            "the tile wrote into a block that is still held"
        );
        assert_eq!(c_after, Some(vec![10.0; 4]));
    }
}
