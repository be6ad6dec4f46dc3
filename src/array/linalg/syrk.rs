//! SYRK: diagonal tiles as SYRK, the others as GEMM; `DArray::syrk` and `DArray::mirror`.

use std::any::TypeId;
use std::sync::Arc;

use dagger_cpu::{Accum, MatMut, MatRef, Threads, Trans, Triangle};
use dagger_wgpu::blas::{self, GemmKernel, GpuMatrix};
use dagger_wgpu::{Device, GpuError};

use super::gemm::GemmTile;
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

/// One diagonal tile of `C = alpha Σ_k op(A_k) op(A_k)ᵀ + beta C`, `triangle` only.
/// Inputs: the `A_k`, then `C`.
pub(super) struct SyrkTile<T> {
    pub(super) triangle: Triangle,
    pub(super) op: Trans,
    pub(super) alpha: T,
    pub(super) beta: T,
    pub(super) n: usize,
    pub(super) a: Vec<(usize, usize)>,
}

impl<T: Gemm> CpuRun for SyrkTile<T> {
    fn run_cpu(&self, inputs: &[Value]) -> Result<Value, TaskFailure> {
        {
            let nk = self.a.len();
            let mut out = block::<T>(&inputs[nk], nk)?.clone();
            if nk == 0 {
                scale_triangle(&mut out, self.n, self.triangle, self.beta);
            }
            for (k, &(rows, cols)) in self.a.iter().enumerate() {
                let a = block::<T>(&inputs[k], k)?;
                dagger_cpu::syrk(
                    self.triangle,
                    self.op,
                    self.alpha,
                    MatRef::new(a, rows, cols),
                    if k == 0 {
                        accum_of(self.beta)
                    } else {
                        Accum::Add
                    },
                    MatMut::new(&mut out, self.n, self.n),
                    Threads(crate::task_threads()),
                );
            }
            Ok(Value::new(out))
        }
    }
}

fn scale_triangle<T: Gemm>(c: &mut [T], n: usize, triangle: Triangle, beta: T) {
    for i in 0..n {
        let cols = match triangle {
            Triangle::Lower => 0..i + 1,
            Triangle::Upper => i..n,
        };
        for j in cols {
            c[i * n + j] *= beta;
        }
    }
}

impl<T: Gemm> GpuLaunch for SyrkTile<T> {
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
        let k: usize = self
            .a
            .iter()
            .map(|&(r, c)| if self.op == Trans::No { c } else { r })
            .sum();
        Some(self.n as f64 * (self.n as f64 + 1.0) * k as f64)
    }

    fn launch(
        &self,
        device: &Device,
        device_index: usize,
        inputs: &[DeviceInput],
        done: LaunchDone,
    ) -> Result<(), GpuError> {
        let nk = self.a.len();
        if nk == 0 {
            return Err(GpuError::Wgpu {
                operation: "syrk tile".into(),
                message: "a product with an empty inner dimension runs on the host".into(),
            });
        }
        let out = Arc::new(device.copy(&inputs[nk].buffer)?);
        let seq = Sequence::new();
        let mut done = Some(done);
        for (k, (input, &(ar, ac))) in inputs.iter().zip(&self.a).enumerate() {
            let accum = if k == 0 {
                accum_of(self.beta)
            } else {
                Accum::Add
            };
            blas::syrk(
                device,
                self.triangle,
                self.op,
                self.alpha.to_f64(),
                GpuMatrix::new(&input.buffer, ar as u32, ac as u32),
                accum.map(T::to_f64),
                GpuMatrix::new(&out, self.n as u32, self.n as u32),
                T::BLAS,
                seq.step::<T>(k + 1 == nk, &mut done, &out, self.n * self.n, device_index),
            )
            .map_err(as_gpu)?;
        }
        Ok(())
    }
}

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
        a.matrix_shape("syrk", self)?;
        let (sa, sc) = (a.shape(), self.shape());
        let (n, k) = match op {
            Trans::No => (sa[0], sa[1]),
            Trans::Yes => (sa[1], sa[0]),
        };
        if sc != [n, n] {
            return Err(ArrayError::ShapeMismatch {
                op: "syrk: op(a)·op(a)ᵀ into c",
                left: vec![n, n],
                right: sc,
            });
        }
        let _ = k;
        let (c, cuts) = self.square_blocks("syrk: c")?;
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
                        tile_options("syrk"),
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
                        tile_options("gemm"),
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
        let (c, cuts) = self.square_blocks("mirror: a square matrix")?;
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
