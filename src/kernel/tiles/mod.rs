//! The built-in tile kernels of dense linear algebra: GEMM, SYRK, POTRF and TRSM on one
//! tile each, every one a named kernel (`dagger.gemm_tile.f32`, ...) with a CPU
//! implementation (`dagger-cpu`, single-threaded unless the scheduler lends the task
//! threads) and a WGSL one (`dagger-wgpu`'s BLAS launchers); and, in `lu` and `qr`, the tiles of LU
//! and QR factorization and triangular solves, which have a CPU implementation only. The tiles'
//! parameters are the kernel call's parameters, `serde` types that travel to other ranks,
//! as do the factored panels the LU and QR tiles pass one another (a pivoted LU panel
//! carries its row interchanges). DArray's `gemm`, `syrk`, `cholesky`, `lu`, `qr` and the
//! solves spawn them.

mod cholesky;
mod gemm;
mod lu;
mod qr;
mod syrk;

pub(crate) use cholesky::{
    first_gpu_pivot, NotPositiveDefinite, PivotReports, PotrfTile, TrsmTile,
};
pub(crate) use gemm::GemmTile;
pub(crate) use lu::CpuTile;
pub(crate) use lu::Panel;
pub(crate) use lu::{
    cpu_tile_call, GatherRowsTile, LuPart, OwnBlockTile, PanelPartTile, PanelPivotsTile,
    PanelRowsTile, PanelTile, TriSolveTile, TrianglePartTile, ZeroPivot,
};
pub(crate) use qr::{QrPanel, QrPanelTile, QrPart, QrPartTile};
pub(crate) use syrk::SyrkTile;

use std::any::TypeId;
#[cfg(feature = "wgpu")]
use std::sync::Arc;

use dagger_cpu::Accum;
#[cfg(feature = "wgpu")]
use dagger_wgpu::blas;
#[cfg(feature = "wgpu")]
use dagger_wgpu::{GpuBuffer, GpuError};
use parking_lot::Mutex;

use crate::kernel::{Kernel, KernelCall};
use crate::processor::wgpu::kernel::{params_kernel, CpuRun};
use crate::processor::wgpu::DType;
#[cfg(feature = "wgpu")]
use crate::processor::wgpu::{DeviceOutput, LaunchDone};
use crate::processor::wgpu::{GpuLaunch, GpuScalar};
use crate::processor::TaskFailure;
use crate::value::Value;
use serde::de::DeserializeOwned;
use serde::Serialize;

#[cfg(feature = "wgpu")]
/// Whether a GPU runs a GEMM or SYRK tile of `depth` blocks: one of depth 0 only scales C,
/// which CPU threads do.
fn supports_depth<T: TileScalar>(
    depth: usize,
    info: &dagger_wgpu::DeviceInfo,
) -> Result<(), String> {
    if depth == 0 {
        return Err("a product of depth 0 only scales C, which CPU threads do".into());
    }
    crate::processor::wgpu::memory::device_holds(info, T::DTYPE)
}

/// Element types of the tile kernels: `f32` and `f64`.
#[doc(hidden)]
pub trait TileScalar:
    GpuScalar
    + dagger_cpu::Scalar
    + PartialEq
    + Copy
    + std::ops::MulAssign
    + serde::Serialize
    + serde::de::DeserializeOwned
{
    /// The element type as `dagger-wgpu`'s BLAS kernels name it.
    #[cfg(feature = "wgpu")]
    const BLAS: blas::Dtype;
}

impl TileScalar for f32 {
    #[cfg(feature = "wgpu")]
    const BLAS: blas::Dtype = blas::Dtype::F32;
}

impl TileScalar for f64 {
    #[cfg(feature = "wgpu")]
    const BLAS: blas::Dtype = blas::Dtype::F64;
}

/// The BLAS `beta` as an accumulate choice: `None` when `C` is not read at all.
pub(crate) fn accum_of<T: TileScalar>(beta: T) -> Accum<T> {
    if beta == T::from_f64_rounded(0.0) {
        Accum::Replace
    } else if beta == T::from_f64_rounded(1.0) {
        Accum::Add
    } else {
        Accum::Scale(beta)
    }
}

#[cfg(feature = "wgpu")]
fn as_gpu(e: blas::BlasError) -> GpuError {
    match e {
        blas::BlasError::Gpu(g) => g,
        other => GpuError::Wgpu {
            operation: "linear algebra tile".into(),
            message: other.to_string(),
        },
    }
}

fn block<T: TileScalar>(v: &Value, index: usize) -> Result<&Vec<T>, TaskFailure> {
    v.downcast_ref::<Vec<T>>().ok_or(TaskFailure::ArgumentType {
        index,
        expected: std::any::type_name::<Vec<T>>(),
        found: v.type_name(),
    })
}

/// Input `index` as a block to write the result into: taken over when no other handle
/// holds it (the usual case for a tile updating the latest version of a block in a
/// factorization), so that its memory, warm in cache, is reused; a copy otherwise.
fn owned_block<T: TileScalar>(inputs: &mut [Value], index: usize) -> Result<Vec<T>, TaskFailure> {
    if let Some(v) = inputs[index].get_mut::<Vec<T>>() {
        return Ok(std::mem::take(v));
    }
    block::<T>(&inputs[index], index).cloned()
}

#[cfg(feature = "wgpu")]
/// Runs a sequence of launches on one output buffer and calls `done` once, after the last
/// one (or with the first error).
pub(crate) struct Sequence {
    failed: Arc<Mutex<Option<GpuError>>>,
}

#[cfg(feature = "wgpu")]
impl Sequence {
    fn new() -> Self {
        Sequence {
            failed: Arc::new(Mutex::new(None)),
        }
    }

    /// The completion callback of step `k` of `steps`; the last one finishes the task.
    fn step<T: TileScalar>(
        &self,
        last: bool,
        done: &mut Option<LaunchDone>,
        out: &Arc<GpuBuffer>,
        len: usize,
    ) -> impl FnOnce(Result<(), GpuError>) + Send + 'static {
        let failed = self.failed.clone();
        let finish = if last { done.take() } else { None };
        let out = out.clone();
        move |r| {
            if let Err(e) = r {
                failed.lock().get_or_insert(e);
            }
            if let Some(finish) = finish {
                finish(match failed.lock().take() {
                    Some(e) => Err(e),
                    None => Ok(DeviceOutput::new(
                        out,
                        len,
                        T::DTYPE,
                        TypeId::of::<Vec<T>>(),
                    )),
                })
            }
        }
    }
}

/// A tile with its parameters, as a call of its named kernel: `dagger.<name>.<dtype>`
/// (e.g. `dagger.gemm_tile.f32`), registered once per tile type with the tile's CPU
/// implementation (`dagger-cpu`) and WGSL one (`dagger-wgpu`'s BLAS launchers). The tile
/// itself travels to other ranks as the call's parameters.
pub(crate) fn tile_call<P: GpuLaunch + CpuRun + Serialize + DeserializeOwned + 'static>(
    name: &str,
    tile: P,
) -> KernelCall {
    tile_kernel::<P>(name, tile.dtype()).call(Value::new(tile))
}

fn tile_kernel<P: GpuLaunch + CpuRun + Serialize + DeserializeOwned + 'static>(
    name: &str,
    dtype: DType,
) -> Kernel {
    static KERNELS: std::sync::OnceLock<Mutex<std::collections::HashMap<TypeId, Kernel>>> =
        std::sync::OnceLock::new();
    KERNELS
        .get_or_init(Default::default)
        .lock()
        .entry(TypeId::of::<P>())
        .or_insert_with(|| params_kernel::<P>(format!("dagger.{name}.{dtype}")))
        .clone()
}

fn register_tiles<T: TileScalar>() {
    tile_kernel::<GemmTile<T>>("gemm_tile", T::DTYPE);
    tile_kernel::<SyrkTile<T>>("syrk_tile", T::DTYPE);
    tile_kernel::<PotrfTile<T>>("potrf_tile", T::DTYPE);
    tile_kernel::<TrsmTile<T>>("trsm_tile", T::DTYPE);
    lu::register_tiles::<T>();
    qr::register_tiles::<T>();
}

/// Registers the tile kernels of Cholesky, GEMM, SYRK, LU, QR and the solves for both
/// element types, so that every rank finds them by name (the values the tiles pass one
/// another are registered for the wire by the arrays that spawn them).
fn register_builtin() {
    register_tiles::<f32>();
    register_tiles::<f64>();
}

inventory::submit! { crate::kernel::BuiltinKernels(register_builtin) }

/// How the backends' small enums travel inside tile parameters: as one byte.
pub(crate) mod enum_wire {
    use serde::{Deserialize, Deserializer, Serializer};

    macro_rules! byte_enum {
        ($m:ident, $t:ty, $a:path, $b:path) => {
            pub(crate) mod $m {
                use super::*;
                pub(crate) fn serialize<S: Serializer>(v: &$t, s: S) -> Result<S::Ok, S::Error> {
                    s.serialize_u8(u8::from(*v == $b))
                }
                pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<$t, D::Error> {
                    Ok(if u8::deserialize(d)? == 1 { $b } else { $a })
                }
            }
        };
    }

    byte_enum!(
        trans,
        dagger_cpu::Trans,
        dagger_cpu::Trans::No,
        dagger_cpu::Trans::Yes
    );
    byte_enum!(
        triangle,
        dagger_cpu::Triangle,
        dagger_cpu::Triangle::Lower,
        dagger_cpu::Triangle::Upper
    );
    byte_enum!(
        side,
        dagger_cpu::Side,
        dagger_cpu::Side::Left,
        dagger_cpu::Side::Right
    );
    byte_enum!(
        diag,
        dagger_cpu::Diag,
        dagger_cpu::Diag::NonUnit,
        dagger_cpu::Diag::Unit
    );
    byte_enum!(
        pivoting,
        dagger_cpu::Pivoting,
        dagger_cpu::Pivoting::None,
        dagger_cpu::Pivoting::Partial
    );
    byte_enum!(
        gemm_kernel,
        dagger_wgpu::blas::GemmKernel,
        dagger_wgpu::blas::GemmKernel::Naive,
        dagger_wgpu::blas::GemmKernel::Tiled
    );
}
