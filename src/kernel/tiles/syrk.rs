//! The SYRK tile: one triangle of `C = alpha Σ_k op(A_k) op(A_k)ᵀ + beta C`.

#[cfg(feature = "wgpu")]
use std::sync::Arc;

use dagger_cpu::{Accum, MatMut, MatRef, Threads, Trans, Triangle};
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

/// One diagonal tile of `C = alpha Σ_k op(A_k) op(A_k)ᵀ + beta C`, `triangle` only.
/// Inputs: the `A_k`, then `C`.
#[derive(serde::Serialize, serde::Deserialize)]
pub(crate) struct SyrkTile<T> {
    #[serde(with = "super::enum_wire::triangle")]
    pub(crate) triangle: Triangle,
    #[serde(with = "super::enum_wire::trans")]
    pub(crate) op: Trans,
    pub(crate) alpha: T,
    pub(crate) beta: T,
    pub(crate) n: usize,
    pub(crate) a: Vec<(usize, usize)>,
}

impl<T: TileScalar> CpuRun for SyrkTile<T> {
    fn run_cpu(&self, inputs: &mut [Value]) -> Result<Value, TaskFailure> {
        {
            let nk = self.a.len();
            let mut out = owned_block::<T>(inputs, nk)?;
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

pub(crate) fn scale_triangle<T: TileScalar>(c: &mut [T], n: usize, triangle: Triangle, beta: T) {
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

impl<T: TileScalar> GpuLaunch for SyrkTile<T> {
    fn dtype(&self) -> DType {
        T::DTYPE
    }

    #[cfg(feature = "wgpu")]
    fn supports(&self, info: &dagger_wgpu::DeviceInfo) -> Result<(), String> {
        supports_depth::<T>(self.a.len(), info)
    }

    fn flops(&self) -> Option<f64> {
        let k: usize = self
            .a
            .iter()
            .map(|&(r, c)| if self.op == Trans::No { c } else { r })
            .sum();
        Some(self.n as f64 * (self.n as f64 + 1.0) * k as f64)
    }

    #[cfg(feature = "wgpu")]
    fn launch(
        &self,
        device: &Device,
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
                self.alpha.to_f64_exact(),
                GpuMatrix::new(&input.buffer, ar as u32, ac as u32),
                accum.map(T::to_f64_exact),
                GpuMatrix::new(&out, self.n as u32, self.n as u32),
                T::BLAS,
                seq.step::<T>(k + 1 == nk, &mut done, &out, self.n * self.n),
            )
            .map_err(as_gpu)?;
        }
        Ok(())
    }
}
