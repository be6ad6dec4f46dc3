//! The Cholesky tiles: POTRF on a diagonal tile and TRSM below it, and how GPU POTRF tiles
//! report a pivot that is not positive.

use std::marker::PhantomData;
use std::sync::Arc;

use dagger_cpu::{Diag, MatMut, MatRef, Side, Trans, Triangle};
#[cfg(feature = "wgpu")]
use dagger_wgpu::blas::{self, GpuMatrix};
#[cfg(feature = "wgpu")]
use dagger_wgpu::{Device, GpuBuffer, GpuError};
use parking_lot::Mutex;

#[cfg(feature = "wgpu")]
use super::{as_gpu, Sequence};
use super::{block, owned_block, TileScalar};
use crate::processor::wgpu::kernel::CpuRun;
use crate::processor::wgpu::{DType, GpuLaunch};
#[cfg(feature = "wgpu")]
use crate::processor::wgpu::{DeviceInput, LaunchDone};
use crate::processor::TaskFailure;
use crate::value::Value;

/// A diagonal block that is not positive definite, as a task's error.
#[derive(Debug, thiserror::Error)]
#[error("block ({block}, {block}) is not positive definite: pivot {pivot} (row {row} of the matrix) is not positive")]
pub(crate) struct NotPositiveDefinite {
    pub(crate) block: usize,
    pub(crate) pivot: usize,
    pub(crate) row: usize,
}

impl NotPositiveDefinite {
    /// The error its message describes: what reaches the head when the tile failed on
    /// another rank, which sends its errors as their messages.
    pub(crate) fn parse(message: &str) -> Option<Self> {
        let rest = message.strip_prefix("block (")?;
        let (block, rest) = rest.split_once(',')?;
        let rest = rest.split_once(") is not positive definite: pivot ")?.1;
        let (pivot, rest) = rest.split_once(" (row ")?;
        let row = rest.strip_suffix(" of the matrix) is not positive")?;
        Some(NotPositiveDefinite {
            block: block.trim().parse().ok()?,
            pivot: pivot.trim().parse().ok()?,
            row: row.trim().parse().ok()?,
        })
    }
}

/// `L_kk = chol(A_kk)`, lower, the strict upper triangle zeroed.
pub(crate) fn potrf_cpu<T: TileScalar>(
    block_index: usize,
    first_row: usize,
    n: usize,
    inputs: &mut [Value],
) -> Result<Value, TaskFailure> {
    {
        let mut out = owned_block::<T>(inputs, 0)?;
        dagger_cpu::potrf(Triangle::Lower, MatMut::new(&mut out, n, n)).map_err(|e| match e {
            dagger_cpu::PotrfError::NotPositiveDefinite { pivot } => {
                TaskFailure::from(NotPositiveDefinite {
                    block: block_index,
                    pivot,
                    row: first_row + pivot,
                })
            }
            other => TaskFailure::from(other),
        })?;
        for i in 0..n {
            out[i * n + i + 1..(i + 1) * n].fill(T::from_f64_rounded(0.0));
        }
        Ok(Value::new(out))
    }
}

/// `A_ik = A_ik L_kkᵀ⁻¹`. Inputs: `L_kk`, `A_ik`.
pub(crate) fn trsm_cpu<T: TileScalar>(
    m: usize,
    n: usize,
    inputs: &mut [Value],
) -> Result<Value, TaskFailure> {
    {
        let mut out = owned_block::<T>(inputs, 1)?;
        let l = block::<T>(&inputs[0], 0)?;
        dagger_cpu::trsm(
            Side::Right,
            Triangle::Lower,
            Trans::Yes,
            Diag::NonUnit,
            T::from_f64_rounded(1.0),
            MatRef::new(l, n, n),
            MatMut::new(&mut out, m, n),
        );
        Ok(Value::new(out))
    }
}

/// Where GPU `potrf` tiles report a non-positive pivot: per tile, its `info` buffer (0, or
/// the pivot + 1), read after the factorization.
pub(crate) type PivotReports = Arc<Mutex<Vec<PivotReport>>>;

/// One GPU tile's report: block, first row, device and `info` buffer.
#[cfg(feature = "wgpu")]
pub(crate) type PivotReport = (usize, usize, Device, Arc<GpuBuffer>);
/// Without GPUs no tile reports this way: CPU tiles fail with the pivot themselves.
#[cfg(not(feature = "wgpu"))]
pub(crate) type PivotReport = std::convert::Infallible;

/// `L_kk = chol(A_kk)` on a GPU, the strict upper triangle zeroed.
#[derive(serde::Serialize, serde::Deserialize)]
#[serde(bound = "")]
pub(crate) struct PotrfTile<T> {
    pub(crate) block: usize,
    pub(crate) first_row: usize,
    pub(crate) n: usize,
    #[cfg_attr(not(feature = "wgpu"), allow(dead_code))]
    // GPU pivot reports are read by the process that made the tile; a tile sent to
    // another rank runs on its CPU threads (see `DArray::cholesky`).
    #[serde(skip)]
    pub(crate) reports: PivotReports,
    pub(crate) _t: PhantomData<fn() -> T>,
}

impl<T: TileScalar> CpuRun for PotrfTile<T> {
    fn run_cpu(&self, inputs: &mut [Value]) -> Result<Value, TaskFailure> {
        potrf_cpu::<T>(self.block, self.first_row, self.n, inputs)
    }
}

impl<T: TileScalar> GpuLaunch for PotrfTile<T> {
    fn dtype(&self) -> DType {
        T::DTYPE
    }

    fn flops(&self) -> Option<f64> {
        Some((self.n as f64).powi(3) / 3.0)
    }

    #[cfg(feature = "wgpu")]
    fn launch(
        &self,
        device: &Device,
        inputs: &[DeviceInput],
        done: LaunchDone,
    ) -> Result<(), GpuError> {
        let n = self.n;
        let out = Arc::new(device.copy(&inputs[0].buffer)?);
        let info = Arc::new(device.zeroed(4)?);
        let tril = device.compile(blas::tril_source(T::BLAS), "tril")?;
        self.reports
            .lock()
            .push((self.block, self.first_row, device.clone(), info.clone()));
        let seq = Sequence::new();
        let mut done = Some(done);
        blas::potrf(
            device,
            GpuMatrix::new(&out, n as u32, n as u32),
            &info,
            T::BLAS,
            seq.step::<T>(false, &mut done, &out, n * n),
        )
        .map_err(as_gpu)?;
        let params = [n as u32, 0, 0, 0];
        device.launch(
            &tril,
            &[
                dagger_wgpu::Binding::uniform(&params),
                dagger_wgpu::Binding::Storage(&out),
            ],
            [(n as u32).div_ceil(16), (n as u32).div_ceil(16), 1],
            seq.step::<T>(true, &mut done, &out, n * n),
        )
    }
}

/// `A_ik = A_ik L_kkᵀ⁻¹` on a GPU. Inputs: `L_kk`, `A_ik`.
#[derive(serde::Serialize, serde::Deserialize)]
#[serde(bound = "")]
pub(crate) struct TrsmTile<T> {
    pub(crate) m: usize,
    pub(crate) n: usize,
    pub(crate) _t: PhantomData<fn() -> T>,
}

impl<T: TileScalar> CpuRun for TrsmTile<T> {
    fn run_cpu(&self, inputs: &mut [Value]) -> Result<Value, TaskFailure> {
        trsm_cpu::<T>(self.m, self.n, inputs)
    }
}

impl<T: TileScalar> GpuLaunch for TrsmTile<T> {
    fn dtype(&self) -> DType {
        T::DTYPE
    }

    fn flops(&self) -> Option<f64> {
        Some(self.m as f64 * (self.n as f64).powi(2))
    }

    #[cfg(feature = "wgpu")]
    fn launch(
        &self,
        device: &Device,
        inputs: &[DeviceInput],
        done: LaunchDone,
    ) -> Result<(), GpuError> {
        let (m, n) = (self.m, self.n);
        let out = Arc::new(device.copy(&inputs[1].buffer)?);
        let seq = Sequence::new();
        let mut done = Some(done);
        blas::trsm(
            device,
            GpuMatrix::new(&inputs[0].buffer, n as u32, n as u32),
            GpuMatrix::new(&out, m as u32, n as u32),
            T::BLAS,
            seq.step::<T>(true, &mut done, &out, m * n),
        )
        .map_err(as_gpu)
    }
}

/// The first non-positive pivot GPU `potrf` tiles reported: none without GPUs.
#[cfg(not(feature = "wgpu"))]
pub(crate) fn first_gpu_pivot(_reports: &PivotReports) -> Result<(), NotPositiveDefinite> {
    Ok(())
}

/// The first non-positive pivot GPU `potrf` tiles reported, as the error the CPU tiles give.
#[cfg(feature = "wgpu")]
pub(crate) fn first_gpu_pivot(reports: &PivotReports) -> Result<(), NotPositiveDefinite> {
    let mut found: Option<NotPositiveDefinite> = None;
    for (block, first_row, device, info) in reports.lock().iter() {
        let Ok(v) = device.download::<u32>(info) else {
            continue;
        };
        if let Some(&p) = v.first().filter(|&&p| p != 0) {
            let pivot = p as usize - 1;
            if found.as_ref().is_none_or(|f| *block < f.block) {
                found = Some(NotPositiveDefinite {
                    block: *block,
                    pivot,
                    row: first_row + pivot,
                });
            }
        }
    }
    found.map_or(Ok(()), Err)
}
