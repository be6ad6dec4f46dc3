//! GEMM: one tile task per block of `C`, `DArray::gemm` and `DArray::matmul`.

use std::any::TypeId;
use std::sync::Arc;

use dagger_cpu::{Accum, MatMut, MatRef, Threads, Trans};
use dagger_wgpu::blas::{self, GemmKernel, GpuMatrix};
use dagger_wgpu::{Device, GpuError};

use super::tile_call;
use super::{accum_of, as_gpu, block, tile_options, width, Gemm, Sequence};
use crate::array::domain::Grid;
use crate::array::{ArrayError, Block, DArray};
use crate::processor::wgpu::kernel::CpuRun;
use crate::processor::wgpu::{DType, DeviceInput, GpuLaunch, LaunchDone};
use crate::processor::TaskFailure;
use crate::task::args::Deps;
use crate::task::DTask;
use crate::value::Value;

/// One tile of `C = alpha Σ_k op(A_k) op(B_k) + beta C`. Inputs: the `A_k`, the `B_k`,
/// then `C` unless `beta` is zero. Shapes are as stored.
pub(super) struct GemmTile<T> {
    pub(super) kernel: GemmKernel,
    pub(super) op_a: Trans,
    pub(super) op_b: Trans,
    pub(super) alpha: T,
    pub(super) beta: T,
    pub(super) m: usize,
    pub(super) n: usize,
    pub(super) a: Vec<(usize, usize)>,
    pub(super) b: Vec<(usize, usize)>,
}

impl<T: Gemm> GemmTile<T> {
    fn depth(&self, k: usize) -> usize {
        match self.op_a {
            Trans::No => self.a[k].1,
            Trans::Yes => self.a[k].0,
        }
    }

    pub(super) fn reads_c(&self) -> bool {
        self.beta != T::ZERO
    }
}

impl<T: Gemm> CpuRun for GemmTile<T> {
    fn run_cpu(&self, inputs: &[Value]) -> Result<Value, TaskFailure> {
        {
            let nk = self.a.len();
            let mut out = if self.reads_c() {
                block::<T>(&inputs[2 * nk], 2 * nk)?.clone()
            } else {
                vec![T::ZERO; self.m * self.n]
            };
            if nk == 0 {
                out.iter_mut().for_each(|x| *x *= self.beta);
            }
            for k in 0..nk {
                let (a, b) = (
                    block::<T>(&inputs[k], k)?,
                    block::<T>(&inputs[nk + k], nk + k)?,
                );
                dagger_cpu::gemm(
                    self.op_a,
                    self.op_b,
                    self.alpha,
                    MatRef::new(a, self.a[k].0, self.a[k].1),
                    MatRef::new(b, self.b[k].0, self.b[k].1),
                    if k == 0 {
                        accum_of(self.beta)
                    } else {
                        Accum::Add
                    },
                    MatMut::new(&mut out, self.m, self.n),
                    Threads(crate::task_threads()),
                );
            }
            Ok(Value::new(out))
        }
    }
}

impl<T: Gemm> GpuLaunch for GemmTile<T> {
    fn dtype(&self) -> DType {
        T::DTYPE
    }

    fn supports(&self, info: &dagger_wgpu::DeviceInfo) -> Result<(), String> {
        if self.a.is_empty() {
            return Err("a product of depth 0 only scales C, which CPU threads do".into());
        }
        crate::processor::wgpu::memory::device_holds(info, T::DTYPE)
    }

    fn flops(&self) -> Option<f64> {
        let k: usize = (0..self.a.len()).map(|k| self.depth(k)).sum();
        Some(2.0 * self.m as f64 * self.n as f64 * k as f64)
    }

    fn launch(
        &self,
        device: &Device,
        device_index: usize,
        inputs: &[DeviceInput],
        done: LaunchDone,
    ) -> Result<(), GpuError> {
        let nk = self.a.len();
        let len = self.m * self.n;
        if nk == 0 {
            return Err(GpuError::Wgpu {
                operation: "gemm tile".into(),
                message: "a product with an empty inner dimension runs on the host".into(),
            });
        }
        let out = Arc::new(if self.reads_c() {
            device.copy(&inputs[2 * nk].buffer)?
        } else {
            device.alloc((len * T::DTYPE.size()) as u64)?
        });
        let seq = Sequence::new();
        let mut done = Some(done);
        for k in 0..nk {
            let accum = if k == 0 {
                accum_of(self.beta)
            } else {
                Accum::Add
            };
            let (ar, ac) = self.a[k];
            let (br, bc) = self.b[k];
            blas::gemm(
                device,
                self.kernel,
                self.op_a,
                self.op_b,
                self.alpha.to_f64(),
                GpuMatrix::new(&inputs[k].buffer, ar as u32, ac as u32),
                GpuMatrix::new(&inputs[nk + k].buffer, br as u32, bc as u32),
                accum.map(T::to_f64),
                GpuMatrix::new(&out, self.m as u32, self.n as u32),
                T::BLAS,
                seq.step::<T>(k + 1 == nk, &mut done, &out, len, device_index),
            )
            .map_err(as_gpu)?;
        }
        Ok(())
    }
}

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
                tile_options("gemm"),
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
        a.matrix_shape("gemm", b)?;
        let (sa, sb, sc) = (a.shape(), b.shape(), self.shape());
        let op_shape = |s: &[usize], t: Trans| match t {
            Trans::No => (s[0], s[1]),
            Trans::Yes => (s[1], s[0]),
        };
        let ((m, k), (kb, n)) = (op_shape(&sa, op_a), op_shape(&sb, op_b));
        if k != kb {
            return Err(ArrayError::ShapeMismatch {
                op: "gemm: the inner dimensions of op(a) and op(b)",
                left: sa,
                right: sb,
            });
        }
        if sc.len() != 2 || (sc[0], sc[1]) != (m, n) {
            return Err(ArrayError::ShapeMismatch {
                op: "gemm: op(a)·op(b) into c",
                left: vec![m, n],
                right: sc,
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
        if sa.len() != 2 || sb.len() != 2 || sa[1] != sb[0] {
            return Err(ArrayError::ShapeMismatch {
                op: "matmul",
                left: sa,
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
