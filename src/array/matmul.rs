//! Matrix multiplication of 2-D arrays: one tile task per output block, each a kernel with
//! a CPU implementation (faer through `dagger-cpu`) and a GPU one (the register-tiled WGSL
//! GEMM of `dagger-wgpu`), so the scope alone decides where tiles run.

use std::any::TypeId;
use std::marker::PhantomData;
use std::sync::Arc;

use dagger_cpu::{Accum, MatMut, MatRef, Threads, Trans};
use dagger_wgpu::blas::{self, GemmKernel, GpuMatrix};
use dagger_wgpu::{Device, GpuError};
use parking_lot::Mutex;

use super::domain::Grid;
use super::{ArrayError, Block, DArray, Float};
use crate::gpu::{device_holds, DeviceInput, GpuArray, GpuLaunch, GpuScalar, LaunchDone};
use crate::task::args::Deps;
use crate::task::{Body, TaskFailure};
use crate::value::Value;

/// Element types with a GEMM on every processor: `f32` and `f64`.
pub trait Gemm: Float + GpuScalar + dagger_cpu::Scalar {
    #[doc(hidden)]
    const BLAS: blas::Dtype;
}

impl Gemm for f32 {
    const BLAS: blas::Dtype = blas::Dtype::F32;
}

impl Gemm for f64 {
    const BLAS: blas::Dtype = blas::Dtype::F64;
}

/// C(i, j) = Σ_k A(i, k) B(k, j) on a GPU: one tiled GEMM launch per k, accumulating.
struct TileGemm<T> {
    m: usize,
    n: usize,
    ks: Vec<usize>,
    _t: PhantomData<fn() -> T>,
}

fn as_gpu(e: blas::BlasError) -> GpuError {
    match e {
        blas::BlasError::Gpu(g) => g,
        other => GpuError::Wgpu {
            operation: "gemm tile".into(),
            message: other.to_string(),
        },
    }
}

impl<T: Gemm> GpuLaunch for TileGemm<T> {
    fn supports(&self, info: &dagger_wgpu::DeviceInfo) -> Result<(), String> {
        device_holds(info, T::DTYPE)
    }

    fn flops(&self) -> Option<f64> {
        Some(2.0 * self.m as f64 * self.n as f64 * self.ks.iter().sum::<usize>() as f64)
    }

    fn launch(
        &self,
        device: &Device,
        device_index: usize,
        inputs: &[DeviceInput],
        done: LaunchDone,
    ) -> Result<(), GpuError> {
        let (m, n, nk) = (self.m as u32, self.n as u32, self.ks.len());
        let out = Arc::new(device.alloc((self.m * self.n * T::DTYPE.size()) as u64)?);
        let failed: Arc<Mutex<Option<GpuError>>> = Arc::new(Mutex::new(None));
        let mut done = Some(done);
        for (k, &kk) in self.ks.iter().enumerate() {
            let (a, b) = (&inputs[k].buffer, &inputs[nk + k].buffer);
            let accum = if k == 0 {
                blas::Accum::Replace
            } else {
                blas::Accum::Add
            };
            let failed2 = failed.clone();
            let last = k + 1 == nk;
            let finish = if last { done.take() } else { None };
            let result = out.clone();
            let (len, dev) = (self.m * self.n, device_index);
            blas::gemm(
                device,
                GemmKernel::Tiled,
                blas::Trans::No,
                blas::Trans::No,
                1.0,
                GpuMatrix::new(a, m, kk as u32),
                GpuMatrix::new(b, kk as u32, n),
                accum,
                GpuMatrix::new(&out, m, n),
                T::BLAS,
                move |r| {
                    if let Err(e) = r {
                        failed2.lock().get_or_insert(e);
                    }
                    if let Some(finish) = finish {
                        let outcome = match failed2.lock().take() {
                            Some(e) => Err(e),
                            None => Ok(GpuArray::new(
                                dev,
                                result,
                                len,
                                T::DTYPE,
                                TypeId::of::<Vec<T>>(),
                            )),
                        };
                        finish(outcome);
                    }
                },
            )
            .map_err(as_gpu)?;
        }
        Ok(())
    }
}

fn block<T: Gemm>(v: &Value, index: usize) -> Result<&Vec<T>, TaskFailure> {
    v.downcast_ref::<Vec<T>>().ok_or(TaskFailure::ArgumentType {
        index,
        expected: std::any::type_name::<Vec<T>>(),
        found: v.type_name(),
    })
}

impl<T: Gemm> DArray<T> {
    /// The matrix product `self · other` of two 2-D arrays, as a new array blocked by
    /// `self`'s rows and `other`'s columns (`other` is re-blocked along its rows to match
    /// `self`'s columns when they differ). Each output block is one task that runs on a CPU
    /// thread (faer, single-threaded per tile) or a GPU (tiled WGSL), as the scope allows and
    /// the cost model prefers.
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
        let ctx = self.context().clone();
        let a_cuts = &self.grid().cuts;
        let b = other.aligned_to(&Grid {
            cuts: vec![a_cuts[1].clone(), other.grid().cuts[1].clone()],
        });
        let out_grid = Grid {
            cuts: vec![a_cuts[0].clone(), b.grid().cuts[1].clone()],
        };
        if sa[1] == 0 {
            return Ok(DArray::filled_grid(&ctx, out_grid, T::ZERO));
        }
        let counts_a = self.grid().counts();
        let counts_b = b.grid().counts();
        let (bi, bk, bj) = (counts_a[0], counts_a[1], counts_b[1]);
        let width = |cuts: &[usize], i: usize| cuts[i + 1] - cuts[i];
        let ks: Vec<usize> = (0..bk).map(|k| width(&a_cuts[1], k)).collect();
        let mut blocks = Vec::with_capacity(bi * bj);
        for i in 0..bi {
            for j in 0..bj {
                let (m, n) = (width(&a_cuts[0], i), width(&b.grid().cuts[1], j));
                let mut deps = Deps::default();
                for k in 0..bk {
                    deps.list.push(self.blocks()[i * bk + k].arg().dep);
                }
                for k in 0..bk {
                    deps.list.push(b.blocks()[k * bj + j].arg().dep);
                }
                let ks2 = ks.clone();
                let body: Body = Box::new(move |inputs: &[Value]| {
                    let mut out = vec![T::ZERO; m * n];
                    for (k, &kk) in ks2.iter().enumerate() {
                        let (a, bm) = (
                            block::<T>(&inputs[k], k)?,
                            block::<T>(&inputs[ks2.len() + k], ks2.len() + k)?,
                        );
                        dagger_cpu::gemm(
                            Trans::No,
                            Trans::No,
                            T::ONE,
                            MatRef::new(a, m, kk),
                            MatRef::new(bm, kk, n),
                            if k == 0 { Accum::Replace } else { Accum::Add },
                            MatMut::new(&mut out, m, n),
                            Threads::SEQ,
                        );
                    }
                    Ok(Value::new(out))
                });
                let gpu: Arc<dyn GpuLaunch> = Arc::new(TileGemm::<T> {
                    m,
                    n,
                    ks: ks.clone(),
                    _t: PhantomData,
                });
                let task = ctx.submit_kernel(
                    "gemm",
                    TypeId::of::<TileGemm<T>>(),
                    crate::Options::new().name("gemm"),
                    deps,
                    Some(body),
                    Some(gpu),
                );
                blocks.push(Block::Task(crate::DTask::from_core(task)));
            }
        }
        Ok(DArray::from_parts(&ctx, out_grid, blocks))
    }
}
