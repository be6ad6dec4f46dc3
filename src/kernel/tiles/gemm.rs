//! The GEMM tile: `C = alpha Σ_k op(A_k) op(B_k) + beta C` on one tile.

#[cfg(feature = "wgpu")]
use std::sync::Arc;

use dagger_cpu::{Accum, MatMut, MatRef, Threads, Trans};
use dagger_wgpu::blas::GemmKernel;
#[cfg(feature = "wgpu")]
use dagger_wgpu::blas::{self, GpuMatrix};
#[cfg(feature = "wgpu")]
use dagger_wgpu::{Device, GpuError};

use super::{accum_of, block, owned_block, TileScalar};
#[cfg(feature = "wgpu")]
use super::{as_gpu, supports_depth, Sequence};
use crate::processor::wgpu::kernel::CpuRun;
use crate::processor::wgpu::{DType, GpuLaunch};
#[cfg(feature = "wgpu")]
use crate::processor::wgpu::{DeviceInput, LaunchDone};
use crate::processor::TaskFailure;
use crate::value::Value;

/// One tile of `C = alpha Σ_k op(A_k) op(B_k) + beta C`. Inputs: the `A_k`, the `B_k`,
/// then `C` unless `beta` is zero. Shapes are as stored.
#[derive(serde::Serialize, serde::Deserialize)]
pub(crate) struct GemmTile<T> {
    #[cfg_attr(not(feature = "wgpu"), allow(dead_code))]
    #[serde(with = "super::enum_wire::gemm_kernel")]
    pub(crate) kernel: GemmKernel,
    #[serde(with = "super::enum_wire::trans")]
    pub(crate) op_a: Trans,
    #[serde(with = "super::enum_wire::trans")]
    pub(crate) op_b: Trans,
    pub(crate) alpha: T,
    pub(crate) beta: T,
    pub(crate) m: usize,
    pub(crate) n: usize,
    pub(crate) a: Vec<(usize, usize)>,
    pub(crate) b: Vec<(usize, usize)>,
}

impl<T: TileScalar> GemmTile<T> {
    fn depth(&self, k: usize) -> usize {
        match self.op_a {
            Trans::No => self.a[k].1,
            Trans::Yes => self.a[k].0,
        }
    }

    pub(crate) fn reads_c(&self) -> bool {
        self.beta != T::from_f64_rounded(0.0)
    }
}

impl<T: TileScalar> CpuRun for GemmTile<T> {
    fn run_cpu(&self, inputs: &mut [Value]) -> Result<Value, TaskFailure> {
        {
            let nk = self.a.len();
            let mut out = if self.reads_c() {
                owned_block::<T>(inputs, 2 * nk)?
            } else {
                vec![T::from_f64_rounded(0.0); self.m * self.n]
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

impl<T: TileScalar> GpuLaunch for GemmTile<T> {
    fn dtype(&self) -> DType {
        T::DTYPE
    }

    #[cfg(feature = "wgpu")]
    fn supports(&self, info: &dagger_wgpu::DeviceInfo) -> Result<(), String> {
        supports_depth::<T>(self.a.len(), info)
    }

    fn flops(&self) -> Option<f64> {
        let k: usize = (0..self.a.len()).map(|k| self.depth(k)).sum();
        Some(2.0 * self.m as f64 * self.n as f64 * k as f64)
    }

    fn output_len(&self) -> Option<usize> {
        Some(self.m * self.n)
    }

    #[cfg(feature = "wgpu")]
    fn launch(
        &self,
        device: &Device,
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
                self.alpha.to_f64_exact(),
                GpuMatrix::new(&inputs[k].buffer, ar as u32, ac as u32),
                GpuMatrix::new(&inputs[nk + k].buffer, br as u32, bc as u32),
                accum.map(T::to_f64_exact),
                GpuMatrix::new(&out, self.m as u32, self.n as u32),
                T::BLAS,
                seq.step::<T>(k + 1 == nk, &mut done, &out, len),
            )
            .map_err(as_gpu)?;
        }
        Ok(())
    }
}
