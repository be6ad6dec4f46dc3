//! Dense linear algebra on 2-D arrays: GEMM with transposes, SYRK and a tiled Cholesky
//! factorization. Every tile is one task with a CPU implementation (`dagger-cpu`'s
//! kernels, single-threaded per tile so task parallelism never oversubscribes the
//! cores) and, where `dagger-wgpu` has the kernel, a GPU one; the scope and the cost model
//! decide where each tile runs.
//!
//! Split by algorithm: `gemm` (GEMM tiles, `DArray::gemm` and `matmul`), `syrk` (SYRK
//! tiles, `syrk`, `mirror`) and `cholesky` (POTRF and TRSM tiles, `cholesky`); this
//! module holds what their tiles share.

mod cholesky;
mod gemm;
mod syrk;

use std::any::TypeId;
use std::sync::Arc;

use dagger_cpu::Accum;
use dagger_wgpu::blas;
use dagger_wgpu::{GpuBuffer, GpuError};
use parking_lot::Mutex;

use super::domain::Grid;
use super::{ArrayError, Block, DArray, Float};
use crate::chunk::Chunk;
use crate::datadeps::Version;
use crate::kernel::{Kernel, KernelCall};
use crate::processor::wgpu::kernel::{params_kernel, CpuRun};
use crate::processor::wgpu::{GpuArray, GpuLaunch, GpuScalar, LaunchDone};
use crate::processor::TaskFailure;
use crate::task::DTask;
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

/// The BLAS `beta` as an accumulate choice: `None` when `C` is not read at all.
fn accum_of<T: Gemm>(beta: T) -> Accum<T> {
    if beta == T::ZERO {
        Accum::Replace
    } else if beta == T::ONE {
        Accum::Add
    } else {
        Accum::Scale(beta)
    }
}

fn as_gpu(e: blas::BlasError) -> GpuError {
    match e {
        blas::BlasError::Gpu(g) => g,
        other => GpuError::Wgpu {
            operation: "linear algebra tile".into(),
            message: other.to_string(),
        },
    }
}

fn block<T: Gemm>(v: &Value, index: usize) -> Result<&Vec<T>, TaskFailure> {
    v.downcast_ref::<Vec<T>>().ok_or(TaskFailure::ArgumentType {
        index,
        expected: std::any::type_name::<Vec<T>>(),
        found: v.type_name(),
    })
}

/// Runs a sequence of launches on one output buffer and calls `done` once, after the last
/// one (or with the first error).
struct Sequence {
    failed: Arc<Mutex<Option<GpuError>>>,
}

impl Sequence {
    fn new() -> Self {
        Sequence {
            failed: Arc::new(Mutex::new(None)),
        }
    }

    /// The completion callback of step `k` of `steps`; the last one finishes the task.
    fn step<T: Gemm>(
        &self,
        last: bool,
        done: &mut Option<LaunchDone>,
        out: &Arc<GpuBuffer>,
        len: usize,
        device: usize,
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
                    None => Ok(GpuArray::new(
                        device,
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
/// implementation (`dagger-cpu`) and WGSL one (`dagger-wgpu`'s BLAS launchers).
fn tile_call<P: GpuLaunch + CpuRun + 'static>(name: &str, tile: P) -> KernelCall {
    static KERNELS: std::sync::OnceLock<Mutex<std::collections::HashMap<TypeId, Kernel>>> =
        std::sync::OnceLock::new();
    let kernel = KERNELS
        .get_or_init(Default::default)
        .lock()
        .entry(TypeId::of::<P>())
        .or_insert_with(|| params_kernel::<P>(format!("dagger.{name}.{}", tile.dtype())))
        .clone();
    kernel.call(Value::new(tile))
}

/// Options of GEMM and SYRK tiles: named, and able to use CPU threads the scheduler lends
/// them when nothing else is waiting (the CPU kernels run single-threaded otherwise).
fn tile_options(name: &'static str) -> crate::Options {
    crate::Options::new().name(name).max_threads(usize::MAX)
}

fn width(cuts: &[usize], i: usize) -> usize {
    cuts[i + 1] - cuts[i]
}

fn version_of<T: Gemm>(b: &Block<T>) -> Version {
    match b {
        Block::Task(t) => Version::Task(t.core.clone()),
        Block::Data(c) => Version::Data(c.data.clone()),
    }
}

fn block_of<T: Gemm>(v: Version) -> Block<T> {
    match v {
        Version::Task(t) => Block::Task(DTask::from_core(t)),
        Version::Data(d) => Block::Data(Chunk::from_data(d)),
    }
}

impl<T: Gemm> DArray<T> {
    /// This array re-blocked symmetrically along its row cuts, with those cuts; an error
    /// naming the shape and `op` unless it is a square matrix.
    fn square_blocks(&self, op: &'static str) -> Result<(DArray<T>, Vec<usize>), ArrayError> {
        let s = self.shape();
        if s.len() != 2 || s[0] != s[1] {
            return Err(ArrayError::ShapeMismatch {
                op,
                left: s.clone(),
                right: s,
            });
        }
        let cuts = self.grid().cuts[0].clone();
        let square = Grid {
            cuts: vec![cuts.clone(), cuts.clone()],
        };
        Ok((self.aligned_to(&square), cuts))
    }

    fn matrix_shape(&self, op: &'static str, other: &DArray<T>) -> Result<(), ArrayError> {
        if self.ndim() != 2 || other.ndim() != 2 {
            return Err(ArrayError::ShapeMismatch {
                op,
                left: self.shape(),
                right: other.shape(),
            });
        }
        Ok(())
    }
}
