//! Dense linear algebra on 2-D arrays: GEMM with transposes, SYRK and a tiled Cholesky
//! factorization. Every tile is one task with a CPU implementation (`dagger-cpu`'s
//! kernels, single-threaded per tile so task parallelism never oversubscribes the
//! cores) and, where `dagger-wgpu` has the kernel, a GPU one; the scope and the cost model
//! decide where each tile runs.

use std::any::TypeId;
use std::marker::PhantomData;
use std::sync::Arc;

use dagger_cpu::{Accum, Diag, MatMut, MatRef, Side, Threads, Trans, Triangle};
use dagger_wgpu::blas::{self, GemmKernel, GpuMatrix};
use dagger_wgpu::{Device, GpuBuffer, GpuError};
use parking_lot::Mutex;

use super::domain::Grid;
use super::{ArrayError, Block, DArray, Gemm};
use crate::chunk::Chunk;
use crate::datadeps::Version;
use crate::gpu::{DType, DeviceInput, GpuArray, GpuLaunch, LaunchDone};
use crate::task::args::Deps;
use crate::task::{Body, DTask, TaskError, TaskFailure};
use crate::value::Value;

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

/// One tile of `C = alpha Σ_k op(A_k) op(B_k) + beta C`. Inputs: the `A_k`, the `B_k`,
/// then `C` unless `beta` is zero. Shapes are as stored.
struct GemmTile<T> {
    kernel: GemmKernel,
    op_a: Trans,
    op_b: Trans,
    alpha: T,
    beta: T,
    m: usize,
    n: usize,
    a: Vec<(usize, usize)>,
    b: Vec<(usize, usize)>,
}

impl<T: Gemm> GemmTile<T> {
    fn depth(&self, k: usize) -> usize {
        match self.op_a {
            Trans::No => self.a[k].1,
            Trans::Yes => self.a[k].0,
        }
    }

    fn reads_c(&self) -> bool {
        self.beta != T::ZERO
    }

    fn body(self: Arc<Self>) -> Body {
        Box::new(move |inputs: &[Value]| {
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
        })
    }
}

impl<T: Gemm> GpuLaunch for GemmTile<T> {
    fn dtype(&self) -> DType {
        T::DTYPE
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

/// One diagonal tile of `C = alpha Σ_k op(A_k) op(A_k)ᵀ + beta C`, `triangle` only.
/// Inputs: the `A_k`, then `C`.
struct SyrkTile<T> {
    triangle: Triangle,
    op: Trans,
    alpha: T,
    beta: T,
    n: usize,
    a: Vec<(usize, usize)>,
}

impl<T: Gemm> SyrkTile<T> {
    fn body(self: Arc<Self>) -> Body {
        Box::new(move |inputs: &[Value]| {
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
        })
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

/// A diagonal block that is not positive definite, as a task's error.
#[derive(Debug, thiserror::Error)]
#[error("block ({block}, {block}) is not positive definite: pivot {pivot} (row {row} of the matrix) is not positive")]
struct NotPositiveDefinite {
    block: usize,
    pivot: usize,
    row: usize,
}

/// `L_kk = chol(A_kk)`, lower, the strict upper triangle zeroed.
fn potrf_body<T: Gemm>(block_index: usize, first_row: usize, n: usize) -> Body {
    Box::new(move |inputs: &[Value]| {
        let mut out = block::<T>(&inputs[0], 0)?.clone();
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
            out[i * n + i + 1..(i + 1) * n].fill(T::ZERO);
        }
        Ok(Value::new(out))
    })
}

/// `A_ik = A_ik L_kkᵀ⁻¹`. Inputs: `L_kk`, `A_ik`.
fn trsm_body<T: Gemm>(m: usize, n: usize) -> Body {
    Box::new(move |inputs: &[Value]| {
        let l = block::<T>(&inputs[0], 0)?;
        let mut out = block::<T>(&inputs[1], 1)?.clone();
        dagger_cpu::trsm(
            Side::Right,
            Triangle::Lower,
            Trans::Yes,
            Diag::NonUnit,
            T::ONE,
            MatRef::new(l, n, n),
            MatMut::new(&mut out, m, n),
        );
        Ok(Value::new(out))
    })
}

/// Where GPU `potrf` tiles report a non-positive pivot: per tile, its `info` buffer (0, or
/// the pivot + 1), read after the factorization.
type PivotReports = Arc<Mutex<Vec<(usize, usize, Device, Arc<GpuBuffer>)>>>;

/// `L_kk = chol(A_kk)` on a GPU, the strict upper triangle zeroed.
struct PotrfTile<T> {
    block: usize,
    first_row: usize,
    n: usize,
    reports: PivotReports,
    _t: PhantomData<fn() -> T>,
}

impl<T: Gemm> GpuLaunch for PotrfTile<T> {
    fn dtype(&self) -> DType {
        T::DTYPE
    }

    fn flops(&self) -> Option<f64> {
        Some((self.n as f64).powi(3) / 3.0)
    }

    fn launch(
        &self,
        device: &Device,
        device_index: usize,
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
            seq.step::<T>(false, &mut done, &out, n * n, device_index),
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
            seq.step::<T>(true, &mut done, &out, n * n, device_index),
        )
    }
}

/// `A_ik = A_ik L_kkᵀ⁻¹` on a GPU. Inputs: `L_kk`, `A_ik`.
struct TrsmTile<T> {
    m: usize,
    n: usize,
    _t: PhantomData<fn() -> T>,
}

impl<T: Gemm> GpuLaunch for TrsmTile<T> {
    fn dtype(&self) -> DType {
        T::DTYPE
    }

    fn flops(&self) -> Option<f64> {
        Some(self.m as f64 * (self.n as f64).powi(2))
    }

    fn launch(
        &self,
        device: &Device,
        device_index: usize,
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
            seq.step::<T>(true, &mut done, &out, m * n, device_index),
        )
        .map_err(as_gpu)
    }
}

/// The first non-positive pivot GPU `potrf` tiles reported, as the error the CPU tiles give.
fn first_gpu_pivot(reports: &PivotReports) -> Result<(), NotPositiveDefinite> {
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
            let tile = Arc::new(GemmTile::<T> {
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
            });
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
            let gpu: Option<Arc<dyn GpuLaunch>> = if bk > 0 { Some(tile.clone()) } else { None };
            let task = ctx.submit_kernel(
                "gemm",
                TypeId::of::<GemmTile<T>>(),
                tile_options("gemm"),
                deps,
                Some(tile.body()),
                gpu,
            );
            blocks.push(Block::Task(DTask::from_core(task)));
        }
    }
    blocks
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
                    let tile = Arc::new(SyrkTile::<T> {
                        triangle,
                        op,
                        alpha,
                        beta,
                        n: mi,
                        a: (0..bk).map(|kk| stored(mi, kk)).collect(),
                    });
                    for kk in 0..bk {
                        deps.list.push(a.blocks()[a_at(i, kk)].arg().dep);
                    }
                    deps.list.push(c.blocks()[i * nb + i].arg().dep);
                    let gpu: Option<Arc<dyn GpuLaunch>> = (bk > 0).then(|| tile.clone() as _);
                    ctx.submit_kernel(
                        "syrk",
                        TypeId::of::<SyrkTile<T>>(),
                        tile_options("syrk"),
                        deps,
                        Some(tile.body()),
                        gpu,
                    )
                } else {
                    // C_ij = alpha op(A)_i op(A)_jᵀ + beta C_ij.
                    let (op_a, op_b) = match op {
                        Trans::No => (Trans::No, Trans::Yes),
                        Trans::Yes => (Trans::Yes, Trans::No),
                    };
                    let tile = Arc::new(GemmTile::<T> {
                        kernel,
                        op_a,
                        op_b,
                        alpha,
                        beta,
                        m: mi,
                        n: nj,
                        a: (0..bk).map(|kk| stored(mi, kk)).collect(),
                        b: (0..bk).map(|kk| stored(nj, kk)).collect(),
                    });
                    for kk in 0..bk {
                        deps.list.push(a.blocks()[a_at(i, kk)].arg().dep);
                    }
                    for kk in 0..bk {
                        deps.list.push(a.blocks()[a_at(j, kk)].arg().dep);
                    }
                    if tile.reads_c() {
                        deps.list.push(c.blocks()[i * nb + j].arg().dep);
                    }
                    let gpu: Option<Arc<dyn GpuLaunch>> = (bk > 0).then(|| tile.clone() as _);
                    ctx.submit_kernel(
                        "gemm",
                        TypeId::of::<GemmTile<T>>(),
                        tile_options("gemm"),
                        deps,
                        Some(tile.body()),
                        gpu,
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

    /// The Cholesky factor `L` of a symmetric positive definite matrix (`self = L Lᵀ`),
    /// lower triangular with zeros above the diagonal. Only the lower triangle of `self` is
    /// read.
    ///
    /// Tiled as Dagger.jl's `cholesky`: for each diagonal block a `potrf`, `trsm`s down its
    /// column, then `syrk` and `gemm` updates of the trailing matrix, all tile tasks of one
    /// datadeps region ordered by the blocks they read and write, so the updates of step `k`
    /// overlap the factorization of step `k + 1`. Every tile kind has a CPU implementation
    /// (`dagger-cpu`) and a WGSL one, so tiles run on CPU threads or GPUs as the scope allows
    /// and the cost model prefers; block versions move between memory spaces as the region
    /// needs them. A non-square blocking is made square along the row cuts. Waits for the
    /// factorization.
    ///
    /// # Errors
    ///
    /// [`ArrayError::NotPositiveDefinite`] naming the diagonal block and the pivot (also as
    /// a row of the matrix) where the factorization broke down; shape errors for a matrix
    /// that is not square.
    ///
    /// ```
    /// use dagger::prelude::*;
    /// use dagger::ArrayError;
    /// let ctx = Context::builder().threads(2).build()?;
    /// // [[4, 2], [2, 5]] = L Lᵀ with L = [[2, 0], [1, 2]]
    /// let a = ndarray::arr2(&[[4.0, 2.0], [2.0, 5.0]]);
    /// let l = DArray::distribute(&ctx, &a, Blocks::new([1, 1]))?.cholesky()?.collect2()?;
    /// assert_eq!(l, ndarray::arr2(&[[2.0, 0.0], [1.0, 2.0]]));
    /// let bad = ndarray::arr2(&[[1.0, 2.0], [2.0, 1.0]]);
    /// let err = DArray::distribute(&ctx, &bad, Blocks::new([1, 1]))?.cholesky().unwrap_err();
    /// assert!(matches!(err, ArrayError::NotPositiveDefinite { block: 1, row: 1, .. }), "{err}");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn cholesky(&self) -> Result<DArray<T>, ArrayError> {
        self.cholesky_with(GemmKernel::Tiled)
    }

    /// [`cholesky`](Self::cholesky) with a choice of GPU kernel for the GEMM tiles.
    pub fn cholesky_with(&self, kernel: GemmKernel) -> Result<DArray<T>, ArrayError> {
        let (a, cuts) = self.square_blocks("cholesky: a square matrix")?;
        let nb = cuts.len() - 1;
        let ctx = self.context().clone();
        let w = |i: usize| width(&cuts, i);
        let opts = |name: &'static str| crate::Options::new().name(name);
        let reports: PivotReports = Arc::default();
        let factor = ctx.spawn_datadeps(|r| {
            let keys: Vec<Option<u64>> = (0..nb * nb)
                .map(|ij| (ij / nb >= ij % nb).then(|| r.track(version_of(&a.blocks()[ij]))))
                .collect();
            let key = |i: usize, j: usize| keys[i * nb + j].expect("lower blocks are tracked");
            for (k, &first_row) in cuts[..nb].iter().enumerate() {
                r.submit_versioned(
                    "potrf".into(),
                    TypeId::of::<PotrfTile<T>>(),
                    opts("potrf"),
                    &[(key(k, k), true)],
                    Some(potrf_body::<T>(k, first_row, w(k))),
                    Some(Arc::new(PotrfTile::<T> {
                        block: k,
                        first_row,
                        n: w(k),
                        reports: reports.clone(),
                        _t: PhantomData,
                    })),
                );
                for i in k + 1..nb {
                    r.submit_versioned(
                        "trsm".into(),
                        TypeId::of::<TrsmTile<T>>(),
                        opts("trsm"),
                        &[(key(k, k), false), (key(i, k), true)],
                        Some(trsm_body::<T>(w(i), w(k))),
                        Some(Arc::new(TrsmTile::<T> {
                            m: w(i),
                            n: w(k),
                            _t: PhantomData,
                        })),
                    );
                }
                for i in k + 1..nb {
                    // A_ii -= A_ik A_ikᵀ
                    let tile = Arc::new(SyrkTile::<T> {
                        triangle: Triangle::Lower,
                        op: Trans::No,
                        alpha: -T::ONE,
                        beta: T::ONE,
                        n: w(i),
                        a: vec![(w(i), w(k))],
                    });
                    r.submit_versioned(
                        "syrk".into(),
                        TypeId::of::<SyrkTile<T>>(),
                        tile_options("syrk"),
                        &[(key(i, k), false), (key(i, i), true)],
                        Some(tile.clone().body()),
                        Some(tile),
                    );
                    for j in k + 1..i {
                        // A_ij -= A_ik A_jkᵀ
                        let tile = Arc::new(GemmTile::<T> {
                            kernel,
                            op_a: Trans::No,
                            op_b: Trans::Yes,
                            alpha: -T::ONE,
                            beta: T::ONE,
                            m: w(i),
                            n: w(j),
                            a: vec![(w(i), w(k))],
                            b: vec![(w(j), w(k))],
                        });
                        r.submit_versioned(
                            "gemm".into(),
                            TypeId::of::<GemmTile<T>>(),
                            tile_options("gemm"),
                            &[(key(i, k), false), (key(j, k), false), (key(i, j), true)],
                            Some(tile.clone().body()),
                            Some(tile),
                        );
                    }
                }
            }
            keys.iter()
                .map(|k| k.map(|k| r.latest(k)))
                .collect::<Vec<_>>()
        });
        let latest = factor.map_err(not_positive_definite)?;
        // GPU tiles report a bad pivot in a buffer rather than by failing.
        first_gpu_pivot(&reports).map_err(|e| ArrayError::NotPositiveDefinite {
            block: e.block,
            pivot: e.pivot,
            row: e.row,
        })?;
        let blocks = latest
            .into_iter()
            .enumerate()
            .map(|(ij, v)| match v {
                Some(v) => block_of(v),
                None => Block::Data(Chunk::new(vec![T::ZERO; w(ij / nb) * w(ij % nb)])),
            })
            .collect();
        Ok(DArray::from_parts(&ctx, a.grid().clone(), blocks))
    }
}

/// A region's error as an array error: a non-positive pivot by name, anything else as is.
fn not_positive_definite(e: TaskError) -> ArrayError {
    if let TaskError::Failed { cause, .. } = e.root_cause() {
        if let Some(npd) = cause.downcast_ref::<NotPositiveDefinite>() {
            return ArrayError::NotPositiveDefinite {
                block: npd.block,
                pivot: npd.pivot,
                row: npd.row,
            };
        }
    }
    ArrayError::Task(e)
}
