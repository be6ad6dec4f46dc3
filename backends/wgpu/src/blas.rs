//! Dense block kernels on a device: [`gemm`], [`syrk`], and the Cholesky tile kernels
//! [`potrf`] and [`trsm`], over row-major `f32` (and `f64` on devices with `SHADER_F64`)
//! matrices in [`GpuBuffer`]s, from `shaders/gemm.wgsl`, `shaders/syrk.wgsl`,
//! `shaders/potrf.wgsl` and `shaders/trsm.wgsl`.
//!
//! Each kernel comes as an enqueueing call with a completion callback ([`gemm`], [`syrk`],
//! [`potrf`], [`trsm`], like [`Device::launch`]) and a blocking one ([`gemm_blocking`],
//! [`syrk_blocking`], [`potrf_blocking`], [`trsm_blocking`]).
//! Matrices are described by [`GpuMatrix`] (buffer, shape, leading dimension, offset) and
//! checked against their buffers before anything is enqueued; parameters are types
//! ([`Trans`], [`Triangle`], [`Accum`] — `dagger-params`' types, the same as `dagger-cpu`'s —
//! and [`Dtype`], [`GemmKernel`]).
//!
//! # Tiling
//!
//! [`GemmKernel::Naive`] runs one invocation per element of `C` (16x16 workgroups), each
//! looping over `k` and reading a row of `op(A)` and a column of `op(B)` from storage: two
//! global loads per multiply-add, and no reuse between invocations beyond what caches give.
//!
//! [`GemmKernel::Tiled`] (and `syrk`) gives each 16x16 = 256-invocation workgroup a 128x128
//! tile of `C`; invocation `(lx, ly)` keeps the 8x8 micro-tile at rows `8 ly..`, columns
//! `8 lx..` of it in 64 accumulator registers. The workgroup walks `k` in steps of 8,
//! staging a 128x8 panel of `op(A)` and an 8x128 panel of `op(B)` in workgroup memory (each
//! invocation loads 4 elements of each), stored k-major as `vec4`s so that an invocation's 8
//! rows (or 8 columns) at one `k` are two vector reads. Then each invocation does 8 x 64
//! multiply-adds from 8 x 4 vector reads. This is the shape of the classic hand-written
//! SGEMM kernels (128x128x8 block tile, 8x8 thread tile, 256 threads). Why, on a real GPU:
//!
//! - **Arithmetic intensity.** Per `k` step the workgroup reads 2 x 128 x 8 elements from
//!   global memory for 128 x 128 x 8 multiply-adds: 64 per element loaded, against 0.5 for
//!   the naive kernel, which moves GEMM from memory-bound to compute-bound on GPUs whose
//!   FLOP-to-byte ratio is 10-50.
//! - **Register blocking.** The 8x8 micro-tile reuses each value read from workgroup memory
//!   8 times (16 values for 64 FMAs), so shared-memory bandwidth is not the next limit. 64
//!   accumulators plus 16 operands and addressing come to ~90-100 registers per invocation:
//!   within the 255 NVIDIA allows and the 128 that still lets AMD run 4+ waves per SIMD;
//!   a 4x4 micro-tile would halve the registers but double shared-memory traffic per FMA.
//! - **Workgroup memory and occupancy.** Two panels are 8 KiB in `f32` (16 KiB in `f64`,
//!   exactly WebGPU's guaranteed minimum `maxComputeWorkgroupStorageSize`), so shared memory
//!   does not limit occupancy (4-8 workgroups per 32-64 KiB streaming multiprocessor /
//!   compute unit); registers do, at 1-2 resident workgroups (256-512 invocations), which the
//!   8x8 register reuse compensates for. 256 invocations is the largest workgroup WebGPU
//!   guarantees and a multiple of the warp (32) and wavefront (64) widths. The price of the
//!   large tile is parallelism on small matrices (a 1024x1024 product is 64 workgroups);
//!   for blocks below ~512 a 64x64 tile would fill a large GPU better.
//! - **Coalescing.** When staging, consecutive invocations read consecutive addresses of the
//!   stored matrix: along `k` for a row-major `op(A)` (and a transposed `op(B)`), along rows
//!   or columns otherwise, so a warp reads whole 32- to 128-byte segments. Each invocation
//!   writes 8 consecutive elements of a row of `C`, and neighbouring invocations neighbouring
//!   runs, so stores fill whole cache lines. The 128-bit workgroup-memory reads of a
//!   half-warp cover distinct, contiguous words (at most 2-way bank conflicts).
//! - **Edges.** Panels are zero-padded past the matrix edges and stores are masked, so any
//!   `m, n, k >= 1` works without padding the buffers.
//!
//! On lavapipe and llvmpipe (Mesa's software Vulkan and GL), invocations become SIMD lanes of
//! CPU threads and every load whose address differs per invocation is a loop over lanes, so
//! the cost is loads per multiply-add: 2 for the naive kernel, about 1/8 for the tiled one.
//! `gemm_throughput` in `tests/blas.rs` measures the ratio (15x at n = 1024 on this project's
//! 2-core machine); the absolute speed says nothing about a real GPU. Workgroup arrays are
//! `vec4`s rather than scalars also because the GL backend zero-initialises workgroup memory
//! with one constructor argument per element, which Mesa's GLSL compiler takes tens of
//! seconds over at 1024 scalars.
//!
//! # Cholesky tiles
//!
//! A tiled Cholesky factorization of a matrix of `b x b` tiles runs, for each diagonal tile
//! `k`: [`potrf`] on tile `(k, k)`, [`trsm`] (`B = B L⁻ᵀ`) on the tiles `(i, k)` below it,
//! then [`syrk`] and [`gemm`] on the trailing tiles. These are the same operations as
//! `dagger_cpu::potrf(Triangle::Lower, ..)` and
//! `dagger_cpu::trsm(Side::Right, Triangle::Lower, Trans::Yes, Diag::NonUnit, 1.0, ..)`.
//!
//! [`potrf`] is a blocked right-looking factorization over 16-column blocks, three
//! dispatches per block: one workgroup factors the 16x16 diagonal block in workgroup memory
//! (16 invocations, one per row, a barrier-separated step per column) and checks its
//! pivots; one invocation per row below it solves the panel against it; and 16x16
//! workgroups update the trailing lower triangle in 64x64 tiles, each invocation a 4x4
//! register tile, so each trailing element is read and written once per 16 columns. The
//! dispatches' order is what synchronises the blocks, so the panel and the update spread
//! over the whole GPU, and only the small diagonal factorization is confined to one
//! workgroup. A pivot that is not positive (or NaN) is reported through a small `u32`
//! buffer (see [`potrf`]), since a kernel cannot return an error; every later dispatch reads
//! it and does nothing.
//!
//! [`trsm`] gives each 16x16 workgroup 64 rows of `B` and walks `L` in 16-column blocks:
//! each invocation keeps 4 rows of one column in a vector, subtracts the already solved
//! columns staged through workgroup memory (as the GEMM panels are), then the 16 columns of
//! the block are solved against `L`'s diagonal block one step at a time. Rows of `B` are
//! independent, so `m` rows give `ceil(m / 64)` workgroups, and even a single row runs 16
//! columns at a time. One dispatch covers 256 columns.
//!
//! Both kernels keep each invocation's loops short, for a reason that is specific to the
//! software adapters: llvmpipe and lavapipe count the iterations of all loops of an
//! invocation together and, past 65535, leave every loop at the end of its current
//! iteration, without an error. A POTRF of a 1024x1024 tile in a single workgroup passes
//! that limit on lavapipe and comes back wrong; split into dispatches, no invocation runs
//! more than a few hundred iterations.
//!
//! ```no_run
//! use dagger_wgpu::blas::{gemm_blocking, Accum, Dtype, GemmKernel, GpuMatrix, Trans};
//! use dagger_wgpu::open_devices;
//!
//! let device = open_devices().into_iter().flatten().next().expect("a wgpu adapter");
//! let a = device.upload(&[1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0])?; // 2x3
//! let b = device.upload(&[1.0f32, 0.0, 0.0, 1.0, 1.0, 1.0])?; // 3x2
//! let c = device.zeroed(4 * 4)?; // 2x2
//! gemm_blocking(
//!     &device,
//!     GemmKernel::Tiled,
//!     Trans::No,
//!     Trans::No,
//!     1.0,
//!     GpuMatrix::new(&a, 2, 3),
//!     GpuMatrix::new(&b, 3, 2),
//!     Accum::Replace,
//!     GpuMatrix::new(&c, 2, 2),
//!     Dtype::F32,
//! )?;
//! assert_eq!(device.download::<f32>(&c)?, [4.0, 5.0, 10.0, 11.0]);
//! # Ok::<(), dagger_wgpu::blas::BlasError>(())
//! ```

use std::sync::Arc;

use parking_lot::Mutex;

use crate::{Binding, Device, GpuBuffer, GpuError};

/// `shaders/gemm.wgsl`: entry points `gemm_naive` and `gemm_tiled` over f32.
pub const GEMM_WGSL: &str = include_str!("../../../shaders/gemm.wgsl");
/// `shaders/gemm_f64.wgsl`: [`GEMM_WGSL`] over f64.
pub const GEMM_F64_WGSL: &str = include_str!("../../../shaders/gemm_f64.wgsl");

/// `shaders/syrk.wgsl`: entry point `syrk_tiled` over f32.
pub const SYRK_WGSL: &str = include_str!("../../../shaders/syrk.wgsl");
/// `shaders/syrk_f64.wgsl`: [`SYRK_WGSL`] over f64.
pub const SYRK_F64_WGSL: &str = include_str!("../../../shaders/syrk_f64.wgsl");

/// `shaders/potrf.wgsl`: entry point `potrf_lower` over f32.
pub const POTRF_WGSL: &str = include_str!("../../../shaders/potrf.wgsl");
/// `shaders/potrf_f64.wgsl`: [`POTRF_WGSL`] over f64.
pub const POTRF_F64_WGSL: &str = include_str!("../../../shaders/potrf_f64.wgsl");

/// `shaders/trsm.wgsl`: entry point `trsm_right_lower_trans` over f32.
pub const TRSM_WGSL: &str = include_str!("../../../shaders/trsm.wgsl");
/// `shaders/trsm_f64.wgsl`: [`TRSM_WGSL`] over f64.
pub const TRSM_F64_WGSL: &str = include_str!("../../../shaders/trsm_f64.wgsl");

/// `shaders/tril.wgsl`: entry point `tril`, which zeroes the strict upper triangle of an
/// `n x n` tile in place, over f32.
pub const TRIL_WGSL: &str = include_str!("../../../shaders/tril.wgsl");
/// `shaders/tril_f64.wgsl`: [`TRIL_WGSL`] over f64.
pub const TRIL_F64_WGSL: &str = include_str!("../../../shaders/tril_f64.wgsl");

/// Side of the square tile of `C` one `gemm_tiled` workgroup computes.
const GEMM_TILE: u32 = 128;
/// Side of the square tile of `C` one `syrk_tiled` workgroup computes.
const SYRK_TILE: u32 = 128;
/// Side of the square workgroup of the naive kernel.
const NAIVE_SIDE: u32 = 16;

pub use dagger_params::{Accum, Trans, Triangle};

/// `1` for a transposed operand, as the shaders' `trans_*` fields take it.
fn trans_flag(t: Trans) -> u32 {
    u32::from(t == Trans::Yes)
}

/// `(accumulate flag, beta)` for the shaders: `Replace` (and `Scale(0)`) does not read `C`.
fn accum_uniform(accum: Accum<f64>) -> (u32, f64) {
    match accum.canonical() {
        Accum::Replace => (0, 0.0),
        Accum::Add => (1, 1.0),
        Accum::Scale(beta) => (1, beta),
    }
}

/// Element type of the matrices.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Dtype {
    /// `f32`: every device.
    F32,
    /// `f64`: devices whose [`crate::DeviceInfo::shader_f64`] is set.
    F64,
}

impl Dtype {
    /// Bytes per element.
    pub fn size(self) -> u64 {
        match self {
            Self::F32 => 4,
            Self::F64 => 8,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::F32 => "f32",
            Self::F64 => "f64",
        }
    }
}

pub use crate::gemm_kind::GemmKernel;

/// A row-major matrix in a [`GpuBuffer`]: element `(i, j)` is element
/// `offset + i * ld + j` of the buffer.
///
/// ```no_run
/// # use dagger_wgpu::blas::GpuMatrix;
/// # let device = dagger_wgpu::open_devices().into_iter().flatten().next().unwrap();
/// let buf = device.zeroed(100 * 100 * 4)?;
/// // The 10x20 block at (3, 40) of a 100x100 f32 matrix.
/// let block = GpuMatrix::with_ld(&buf, 10, 20, 100).offset(3 * 100 + 40);
/// # Ok::<(), dagger_wgpu::GpuError>(())
/// ```
#[derive(Clone, Copy, Debug)]
pub struct GpuMatrix<'a> {
    buffer: &'a GpuBuffer,
    rows: u32,
    cols: u32,
    ld: u32,
    offset: u32,
}

impl<'a> GpuMatrix<'a> {
    /// A `rows x cols` matrix stored densely from the start of `buffer`.
    pub fn new(buffer: &'a GpuBuffer, rows: u32, cols: u32) -> Self {
        Self::with_ld(buffer, rows, cols, cols)
    }

    /// A `rows x cols` matrix whose rows start `ld` elements apart (BLAS's `lda`).
    pub fn with_ld(buffer: &'a GpuBuffer, rows: u32, cols: u32, ld: u32) -> Self {
        Self {
            buffer,
            rows,
            cols,
            ld,
            offset: 0,
        }
    }

    /// The same matrix starting `elements` elements into the buffer.
    pub fn offset(self, elements: u32) -> Self {
        Self {
            offset: elements,
            ..self
        }
    }

    /// `(rows, cols)`.
    pub fn shape(&self) -> (u32, u32) {
        (self.rows, self.cols)
    }

    /// Checks that the buffer holds every element, and that indices fit the shaders' u32.
    fn check(&self, name: &'static str, dtype: Dtype) -> Result<(), BlasError> {
        if self.ld < self.cols {
            return Err(BlasError::LeadingDimension {
                matrix: name,
                cols: self.cols,
                ld: self.ld,
            });
        }
        let elements = if self.rows == 0 || self.cols == 0 {
            0
        } else {
            u64::from(self.offset)
                + u64::from(self.rows - 1) * u64::from(self.ld)
                + u64::from(self.cols)
        };
        let needed = elements * dtype.size();
        if elements > u64::from(u32::MAX) || needed > self.buffer.len_bytes() {
            return Err(BlasError::BufferTooSmall {
                matrix: name,
                rows: self.rows,
                cols: self.cols,
                ld: self.ld,
                offset: self.offset,
                dtype: dtype.name(),
                needed,
                bytes: self.buffer.len_bytes(),
            });
        }
        Ok(())
    }
}

/// Why a BLAS kernel could not be launched, or failed on the device.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BlasError {
    /// The shapes of the operands do not fit together.
    #[error("{kernel}: {shapes}")]
    Shape {
        /// `"gemm"`, `"syrk"`, `"potrf"` or `"trsm"`.
        kernel: &'static str,
        /// The shapes given and the rule they break.
        shapes: String,
    },
    /// A matrix's rows overlap: its leading dimension is below its column count.
    #[error(
        "matrix {matrix} has {cols} columns but leading dimension {ld}; the leading dimension \
         must be at least the number of columns"
    )]
    LeadingDimension {
        /// `"A"`, `"B"`, `"C"` or `"L"`.
        matrix: &'static str,
        /// Columns.
        cols: u32,
        /// Leading dimension.
        ld: u32,
    },
    /// A matrix reaches past the end of its buffer (or past 2³² elements).
    #[error(
        "matrix {matrix} ({rows}x{cols} {dtype}, leading dimension {ld}, offset {offset}) needs \
         {needed} bytes but its buffer has {bytes}; pass a larger buffer or fix the shape"
    )]
    BufferTooSmall {
        /// `"A"`, `"B"`, `"C"`, `"L"`, or `"info"` for [`potrf`]'s status word (then a 1x1
        /// `u32` "matrix").
        matrix: &'static str,
        /// Rows.
        rows: u32,
        /// Columns.
        cols: u32,
        /// Leading dimension.
        ld: u32,
        /// Offset in elements.
        offset: u32,
        /// Element type.
        dtype: &'static str,
        /// Bytes the matrix reaches.
        needed: u64,
        /// Logical length of the buffer.
        bytes: u64,
    },
    /// The output is also an input: a kernel cannot read and write one buffer in a dispatch.
    #[error(
        "the output matrix (C of gemm and syrk, B of trsm, A of potrf) shares its buffer with \
         {input}; give each its own buffer (a buffer cannot be bound for reading and writing \
         in one dispatch)"
    )]
    Aliased {
        /// `"A"` or `"B"` (gemm, syrk), `"L"` (trsm), `"info"` (potrf).
        input: &'static str,
    },
    /// [`potrf_blocking`] met a pivot that is not positive (or NaN): the matrix is not
    /// (numerically) symmetric positive definite.
    #[error(
        "potrf: the matrix is not positive definite: pivot {pivot} (0-based) of the Cholesky \
         factorization is not positive; check that the tile is symmetric positive definite \
         (e.g. add a multiple of the identity)"
    )]
    NotPositiveDefinite {
        /// 0-based index of the first diagonal element whose pivot is not positive (LAPACK's
        /// `info` is `pivot + 1`).
        pivot: usize,
    },
    /// The device refused or failed the launch (including a missing `SHADER_F64`).
    #[error(transparent)]
    Gpu(#[from] GpuError),
}

fn gemm_source(dtype: Dtype) -> &'static str {
    match dtype {
        Dtype::F32 => GEMM_WGSL,
        Dtype::F64 => GEMM_F64_WGSL,
    }
}

fn syrk_source(dtype: Dtype) -> &'static str {
    match dtype {
        Dtype::F32 => SYRK_WGSL,
        Dtype::F64 => SYRK_F64_WGSL,
    }
}

/// The 12 `u32` fields of a shader's `Params`, then `alpha` and `beta` in the element type
/// (at byte 48, aligned for f64), padded to 64 bytes.
fn uniform_bytes(fields: [u32; 12], alpha: f64, beta: f64, dtype: Dtype) -> [u8; 64] {
    let mut bytes = [0u8; 64];
    for (chunk, field) in bytes.chunks_exact_mut(4).zip(fields) {
        chunk.copy_from_slice(&field.to_le_bytes());
    }
    match dtype {
        Dtype::F32 => {
            bytes[48..52].copy_from_slice(&(alpha as f32).to_le_bytes());
            bytes[52..56].copy_from_slice(&(beta as f32).to_le_bytes());
        }
        Dtype::F64 => {
            bytes[48..56].copy_from_slice(&alpha.to_le_bytes());
            bytes[56..64].copy_from_slice(&beta.to_le_bytes());
        }
    }
    bytes
}

/// A validated launch: the pipeline, its uniform, the storage buffers and the grid; `None`
/// when the output is empty.
struct Prepared<'a> {
    pipeline: crate::Pipeline,
    params: [u8; 64],
    buffers: Vec<&'a GpuBuffer>,
    workgroups: [u32; 3],
}

impl Prepared<'_> {
    fn bindings(&self) -> Vec<Binding<'_>> {
        std::iter::once(Binding::Uniform(&self.params))
            .chain(self.buffers.iter().map(|b| Binding::Storage(b)))
            .collect()
    }

    fn launch(
        self,
        device: &Device,
        on_done: impl FnOnce(Result<(), GpuError>) + Send + 'static,
    ) -> Result<(), BlasError> {
        Ok(device.launch(&self.pipeline, &self.bindings(), self.workgroups, on_done)?)
    }

    fn launch_blocking(self, device: &Device) -> Result<(), BlasError> {
        Ok(device.launch_blocking(&self.pipeline, &self.bindings(), self.workgroups)?)
    }
}

#[allow(clippy::too_many_arguments)]
fn prepare_gemm<'a>(
    device: &Device,
    kernel: GemmKernel,
    op_a: Trans,
    op_b: Trans,
    alpha: f64,
    a: GpuMatrix<'a>,
    b: GpuMatrix<'a>,
    accum: Accum<f64>,
    c: GpuMatrix<'a>,
    dtype: Dtype,
) -> Result<Option<Prepared<'a>>, BlasError> {
    let (m, k) = op_a.apply(a.shape());
    let (kb, n) = op_b.apply(b.shape());
    if kb != k || c.shape() != (m, n) {
        return Err(BlasError::Shape {
            kernel: "gemm",
            shapes: format!(
                "op(A) is {m}x{k}, op(B) is {kb}x{n} and C is {}x{}; they must be m x k, k x n \
                 and m x n",
                c.rows, c.cols
            ),
        });
    }
    a.check("A", dtype)?;
    b.check("B", dtype)?;
    c.check("C", dtype)?;
    if std::ptr::eq(a.buffer, c.buffer) {
        return Err(BlasError::Aliased { input: "A" });
    }
    if std::ptr::eq(b.buffer, c.buffer) {
        return Err(BlasError::Aliased { input: "B" });
    }
    let (entry, workgroups) = match kernel {
        GemmKernel::Naive => (
            "gemm_naive",
            [n.div_ceil(NAIVE_SIDE), m.div_ceil(NAIVE_SIDE), 1],
        ),
        GemmKernel::Tiled => (
            "gemm_tiled",
            [n.div_ceil(GEMM_TILE), m.div_ceil(GEMM_TILE), 1],
        ),
    };
    let pipeline = device.compile(gemm_source(dtype), entry)?;
    if m == 0 || n == 0 {
        return Ok(None);
    }
    let (accumulate, beta) = accum_uniform(accum);
    let params = uniform_bytes(
        [
            m,
            n,
            k,
            a.ld,
            b.ld,
            c.ld,
            a.offset,
            b.offset,
            c.offset,
            trans_flag(op_a),
            trans_flag(op_b),
            accumulate,
        ],
        alpha,
        beta,
        dtype,
    );
    Ok(Some(Prepared {
        pipeline,
        params,
        buffers: vec![a.buffer, b.buffer, c.buffer],
        workgroups,
    }))
}

/// Enqueues `C = alpha op(A) op(B) + beta C` (BLAS `?gemm`, `beta` from `accum`) and returns
/// at once; `on_done` runs on the device's server thread when the GPU has finished it (see
/// [`Device::launch`]).
///
/// `op(A)` must be `m x k`, `op(B)` `k x n` and `C` `m x n`, all row-major in buffers of
/// `device` holding `dtype` elements; `C` must have its own buffer. With `m = 0` or `n = 0`
/// nothing is enqueued and `on_done(Ok(()))` runs at once on the calling thread.
///
/// # Errors
///
/// Checked before anything is enqueued (then `on_done` is not called): [`BlasError::Shape`]
/// naming the shapes, [`BlasError::LeadingDimension`], [`BlasError::BufferTooSmall`],
/// [`BlasError::Aliased`], and [`BlasError::Gpu`] for the errors of [`Device::compile`]
/// (e.g. [`GpuError::MissingFeature`] for `f64` on a device without `SHADER_F64`) and
/// [`Device::launch`].
#[allow(clippy::too_many_arguments)]
pub fn gemm(
    device: &Device,
    kernel: GemmKernel,
    op_a: Trans,
    op_b: Trans,
    alpha: f64,
    a: GpuMatrix<'_>,
    b: GpuMatrix<'_>,
    accum: Accum<f64>,
    c: GpuMatrix<'_>,
    dtype: Dtype,
    on_done: impl FnOnce(Result<(), GpuError>) + Send + 'static,
) -> Result<(), BlasError> {
    match prepare_gemm(device, kernel, op_a, op_b, alpha, a, b, accum, c, dtype)? {
        Some(prepared) => prepared.launch(device, on_done),
        None => {
            on_done(Ok(()));
            Ok(())
        }
    }
}

/// [`gemm`], waiting for the GPU to finish.
///
/// # Errors
///
/// Those of [`gemm`], the error the launch finished with, and [`GpuError::Reentrant`] from a
/// completion callback of this device.
#[allow(clippy::too_many_arguments)]
pub fn gemm_blocking(
    device: &Device,
    kernel: GemmKernel,
    op_a: Trans,
    op_b: Trans,
    alpha: f64,
    a: GpuMatrix<'_>,
    b: GpuMatrix<'_>,
    accum: Accum<f64>,
    c: GpuMatrix<'_>,
    dtype: Dtype,
) -> Result<(), BlasError> {
    match prepare_gemm(device, kernel, op_a, op_b, alpha, a, b, accum, c, dtype)? {
        Some(prepared) => prepared.launch_blocking(device),
        None => Ok(()),
    }
}

#[allow(clippy::too_many_arguments)]
fn prepare_syrk<'a>(
    device: &Device,
    triangle: Triangle,
    op: Trans,
    alpha: f64,
    a: GpuMatrix<'a>,
    accum: Accum<f64>,
    c: GpuMatrix<'a>,
    dtype: Dtype,
) -> Result<Option<Prepared<'a>>, BlasError> {
    let (n, k) = op.apply(a.shape());
    if c.shape() != (n, n) {
        return Err(BlasError::Shape {
            kernel: "syrk",
            shapes: format!(
                "op(A) is {n}x{k} and C is {}x{}; C must be square with as many rows as op(A)",
                c.rows, c.cols
            ),
        });
    }
    a.check("A", dtype)?;
    c.check("C", dtype)?;
    if std::ptr::eq(a.buffer, c.buffer) {
        return Err(BlasError::Aliased { input: "A" });
    }
    let pipeline = device.compile(syrk_source(dtype), "syrk_tiled")?;
    if n == 0 {
        return Ok(None);
    }
    let (accumulate, beta) = accum_uniform(accum);
    let upper = u32::from(triangle == Triangle::Upper);
    let params = uniform_bytes(
        [
            n,
            k,
            a.ld,
            c.ld,
            a.offset,
            c.offset,
            trans_flag(op),
            upper,
            accumulate,
            0,
            0,
            0,
        ],
        alpha,
        beta,
        dtype,
    );
    let tiles = n.div_ceil(SYRK_TILE);
    Ok(Some(Prepared {
        pipeline,
        params,
        buffers: vec![a.buffer, c.buffer],
        workgroups: [tiles, tiles, 1],
    }))
}

/// Enqueues one triangle of `C = alpha op(A) op(A)ᵀ + beta C` (BLAS `?syrk`, `beta` from
/// `accum`) and returns at once; `on_done` runs when the GPU has finished it.
///
/// With `op = Trans::No`, `A` is `n x k` and the product is `A Aᵀ`; with `Trans::Yes`, `A`
/// is `k x n` and the product is `Aᵀ A`. `C` is `n x n`; only its `triangle` (diagonal
/// included) is read or written, the other strict triangle is left as it was.
///
/// # Errors
///
/// As [`gemm`].
#[allow(clippy::too_many_arguments)]
pub fn syrk(
    device: &Device,
    triangle: Triangle,
    op: Trans,
    alpha: f64,
    a: GpuMatrix<'_>,
    accum: Accum<f64>,
    c: GpuMatrix<'_>,
    dtype: Dtype,
    on_done: impl FnOnce(Result<(), GpuError>) + Send + 'static,
) -> Result<(), BlasError> {
    match prepare_syrk(device, triangle, op, alpha, a, accum, c, dtype)? {
        Some(prepared) => prepared.launch(device, on_done),
        None => {
            on_done(Ok(()));
            Ok(())
        }
    }
}

/// [`syrk`], waiting for the GPU to finish.
///
/// # Errors
///
/// Those of [`syrk`], the error the launch finished with, and [`GpuError::Reentrant`] from a
/// completion callback of this device.
#[allow(clippy::too_many_arguments)]
pub fn syrk_blocking(
    device: &Device,
    triangle: Triangle,
    op: Trans,
    alpha: f64,
    a: GpuMatrix<'_>,
    accum: Accum<f64>,
    c: GpuMatrix<'_>,
    dtype: Dtype,
) -> Result<(), BlasError> {
    match prepare_syrk(device, triangle, op, alpha, a, accum, c, dtype)? {
        Some(prepared) => prepared.launch_blocking(device),
        None => Ok(()),
    }
}

fn potrf_source(dtype: Dtype) -> &'static str {
    match dtype {
        Dtype::F32 => POTRF_WGSL,
        Dtype::F64 => POTRF_F64_WGSL,
    }
}

fn trsm_source(dtype: Dtype) -> &'static str {
    match dtype {
        Dtype::F32 => TRSM_WGSL,
        Dtype::F64 => TRSM_F64_WGSL,
    }
}

/// The [`TRIL_WGSL`] shader for `dtype`.
pub fn tril_source(dtype: Dtype) -> &'static str {
    match dtype {
        Dtype::F32 => TRIL_WGSL,
        Dtype::F64 => TRIL_F64_WGSL,
    }
}

/// Columns of the blocks `potrf` factors one after the other.
const POTRF_BLOCK: u32 = 16;
/// Side of the trailing tile of one `potrf_update` workgroup, and rows per `potrf_panel`
/// workgroup.
const POTRF_TILE: u32 = 64;
/// Rows of `B` one `trsm_right_lower_trans` workgroup solves.
const TRSM_ROWS: u32 = 64;
/// Columns of `B` one `trsm_right_lower_trans` dispatch solves (a multiple of its 16-column
/// blocks): each invocation then loops at most ~`n` times, far below the 65535 loop
/// iterations after which llvmpipe and lavapipe silently end an invocation's loops.
const TRSM_COLUMNS_PER_LAUNCH: u32 = 256;

/// Enqueues dispatches that make one operation, in order; `on_done` runs once, after the
/// last, with the first error any of them finished with. With no dispatch, `on_done(Ok(()))`
/// runs at once on the calling thread.
fn launch_sequence(
    device: &Device,
    mut steps: Vec<Prepared<'_>>,
    on_done: impl FnOnce(Result<(), GpuError>) + Send + 'static,
) -> Result<(), BlasError> {
    let Some(last) = steps.pop() else {
        on_done(Ok(()));
        return Ok(());
    };
    let first_error = Arc::new(Mutex::new(None::<GpuError>));
    for step in steps {
        let slot = Arc::clone(&first_error);
        step.launch(device, move |r| {
            if let Err(e) = r {
                slot.lock().get_or_insert(e);
            }
        })?;
    }
    last.launch(device, move |r| {
        let first = first_error.lock().take();
        on_done(match first {
            Some(e) => Err(e),
            None => r,
        });
    })
}

/// [`launch_sequence`], waiting for the GPU to finish.
fn launch_sequence_blocking(
    device: &Device,
    steps: Vec<Prepared<'_>>,
    what: &'static str,
) -> Result<(), BlasError> {
    device.wait_for(what, |tx| {
        launch_sequence(device, steps, move |r| {
            let _ = tx.send(r);
        })
    })
}

/// The dispatches of a POTRF: per 16-column block, factor the diagonal block, solve the panel
/// below it, update the trailing lower triangle. Empty for `n = 0`.
fn prepare_potrf<'a>(
    device: &Device,
    a: GpuMatrix<'a>,
    info: &'a GpuBuffer,
    dtype: Dtype,
) -> Result<Vec<Prepared<'a>>, BlasError> {
    let (n, cols) = a.shape();
    if n != cols {
        return Err(BlasError::Shape {
            kernel: "potrf",
            shapes: format!("A is {n}x{cols}; it must be square"),
        });
    }
    a.check("A", dtype)?;
    if info.len_bytes() < 4 {
        return Err(BlasError::BufferTooSmall {
            matrix: "info",
            rows: 1,
            cols: 1,
            ld: 1,
            offset: 0,
            dtype: "u32",
            needed: 4,
            bytes: info.len_bytes(),
        });
    }
    if std::ptr::eq(a.buffer, info) {
        return Err(BlasError::Aliased { input: "info" });
    }
    let source = potrf_source(dtype);
    let diag = device.compile(source, "potrf_diag")?;
    let panel = device.compile(source, "potrf_panel")?;
    let update = device.compile(source, "potrf_update")?;
    let mut steps = Vec::new();
    for kb in (0..n).step_by(POTRF_BLOCK as usize) {
        let params = uniform_bytes(
            [n, a.ld, a.offset, kb, 0, 0, 0, 0, 0, 0, 0, 0],
            0.0,
            0.0,
            dtype,
        );
        let step = |pipeline: &crate::Pipeline, workgroups| Prepared {
            pipeline: pipeline.clone(),
            params,
            buffers: vec![a.buffer, info],
            workgroups,
        };
        steps.push(step(&diag, [1, 1, 1]));
        let below = n - (kb + POTRF_BLOCK).min(n);
        if below > 0 {
            let tiles = below.div_ceil(POTRF_TILE);
            steps.push(step(&panel, crate::shaders::grid_1d(below, POTRF_TILE)));
            steps.push(step(&update, [tiles, tiles, 1]));
        }
    }
    Ok(steps)
}

/// Enqueues the in-place Cholesky factorization `A = L Lᵀ` of a symmetric positive definite
/// `n x n` matrix (LAPACK `?potrf` with `uplo = L`) and returns at once; `on_done` runs on
/// the device's server thread when the GPU has finished it (see [`Device::launch`]).
///
/// Only the lower triangle of `A` (diagonal included) is read, and it is overwritten with
/// `L`; the strict upper triangle is neither read nor written. The factorization is a
/// sequence of dispatches, three per 16 columns (see the [module docs](self)); `on_done`
/// runs once, after the last, with the first error any of them met.
///
/// Whether the matrix was positive definite is not known until the GPU has run, so the
/// kernel reports it in `info`, a separate buffer of at least 4 bytes: its first 4 bytes
/// become a little-endian `u32`, `0` when the factorization succeeded and `pivot + 1`
/// (LAPACK's `info`) when the diagonal element `pivot` (0-based) of the Schur complement was
/// not positive or was NaN. The factorization stops there, leaving the lower triangle partly
/// overwritten. The kernel writes `info` in either case, so it need not be cleared; read it
/// after `on_done` with `device.download::<u32>(info)?[0]`, or let [`potrf_blocking`] do
/// it. `on_done(Ok(()))` therefore means the launch ran, not that the matrix was positive
/// definite.
///
/// With `n = 0` nothing is enqueued, `info` is not written, and `on_done(Ok(()))` runs at
/// once on the calling thread.
///
/// # Errors
///
/// Checked before anything is enqueued (then `on_done` is not called): [`BlasError::Shape`]
/// for a non-square `A`, [`BlasError::LeadingDimension`], [`BlasError::BufferTooSmall`]
/// (for `A`, or `info` below 4 bytes), [`BlasError::Aliased`] when `info` is `A`'s buffer,
/// and [`BlasError::Gpu`] for the errors of [`Device::compile`] (e.g.
/// [`GpuError::MissingFeature`] for `f64` on a device without `SHADER_F64`) and
/// [`Device::launch`] (should the device be lost between two of the dispatches, the earlier
/// ones stay enqueued).
pub fn potrf(
    device: &Device,
    a: GpuMatrix<'_>,
    info: &GpuBuffer,
    dtype: Dtype,
    on_done: impl FnOnce(Result<(), GpuError>) + Send + 'static,
) -> Result<(), BlasError> {
    let steps = prepare_potrf(device, a, info, dtype)?;
    launch_sequence(device, steps, on_done)
}

/// [`potrf`], waiting for the GPU to finish and reading the status itself (from a 4-byte
/// buffer it allocates).
///
/// ```no_run
/// use dagger_wgpu::blas::{potrf_blocking, BlasError, Dtype, GpuMatrix};
/// use dagger_wgpu::open_devices;
///
/// let device = open_devices().into_iter().flatten().next().expect("a wgpu adapter");
/// // [[4, 2], [2, 5]]; the upper element is never read, so any value will do.
/// let a = device.upload(&[4.0f32, -1.0, 2.0, 5.0])?;
/// potrf_blocking(&device, GpuMatrix::new(&a, 2, 2), Dtype::F32)?;
/// assert_eq!(device.download::<f32>(&a)?, [2.0, -1.0, 1.0, 2.0]); // L = [[2, 0], [1, 2]]
///
/// let b = device.upload(&[1.0f32, 0.0, 2.0, 1.0])?; // [[1, 2], [2, 1]] is indefinite
/// let err = potrf_blocking(&device, GpuMatrix::new(&b, 2, 2), Dtype::F32).unwrap_err();
/// assert!(matches!(err, BlasError::NotPositiveDefinite { pivot: 1 }));
/// # Ok::<(), BlasError>(())
/// ```
///
/// # Errors
///
/// Those of [`potrf`], [`BlasError::NotPositiveDefinite`] with the 0-based index of the
/// first pivot that is not positive (the lower triangle is then partly overwritten), the
/// error the launch or the download of the status finished with, and
/// [`GpuError::Reentrant`] from a completion callback of this device.
pub fn potrf_blocking(device: &Device, a: GpuMatrix<'_>, dtype: Dtype) -> Result<(), BlasError> {
    let info = device.alloc(4)?;
    let steps = prepare_potrf(device, a, &info, dtype)?;
    if steps.is_empty() {
        return Ok(());
    }
    launch_sequence_blocking(device, steps, "potrf_blocking")?;
    match device.download::<u32>(&info)?.as_slice() {
        [0, ..] => Ok(()),
        &[pivot_plus_one, ..] => Err(BlasError::NotPositiveDefinite {
            pivot: pivot_plus_one as usize - 1,
        }),
        [] => Err(BlasError::Gpu(GpuError::Wgpu {
            operation: "potrf status download".into(),
            message: "the 4-byte status buffer came back empty".into(),
        })),
    }
}

/// The dispatches of a TRSM, each solving [`TRSM_COLUMNS_PER_LAUNCH`] columns of every row.
/// Empty for `m = 0` or `n = 0`.
fn prepare_trsm<'a>(
    device: &Device,
    l: GpuMatrix<'a>,
    b: GpuMatrix<'a>,
    dtype: Dtype,
) -> Result<Vec<Prepared<'a>>, BlasError> {
    let (ln, lc) = l.shape();
    let (m, n) = b.shape();
    if ln != lc || lc != n {
        return Err(BlasError::Shape {
            kernel: "trsm",
            shapes: format!(
                "L is {ln}x{lc} and B is {m}x{n}; L must be square with as many columns as B \
                 (B = B L⁻ᵀ)"
            ),
        });
    }
    l.check("L", dtype)?;
    b.check("B", dtype)?;
    if std::ptr::eq(l.buffer, b.buffer) {
        return Err(BlasError::Aliased { input: "L" });
    }
    let pipeline = device.compile(trsm_source(dtype), "trsm_right_lower_trans")?;
    if m == 0 {
        return Ok(Vec::new());
    }
    let workgroups = crate::shaders::grid_1d(m, TRSM_ROWS);
    Ok((0..n)
        .step_by(TRSM_COLUMNS_PER_LAUNCH as usize)
        .map(|begin| {
            let end = (begin + TRSM_COLUMNS_PER_LAUNCH).min(n);
            let fields = [m, n, l.ld, b.ld, l.offset, b.offset, begin, end, 0, 0, 0, 0];
            Prepared {
                pipeline: pipeline.clone(),
                params: uniform_bytes(fields, 1.0, 0.0, dtype),
                buffers: vec![l.buffer, b.buffer],
                workgroups,
            }
        })
        .collect())
}

/// Enqueues the triangular solve `B = B L⁻ᵀ` in place and returns at once; `on_done` runs
/// when the GPU has finished it.
///
/// `L` is `n x n` lower triangular with a non-unit diagonal, `B` is `m x n`: each row `Xᵢ`
/// of the result solves `Xᵢ Lᵀ = Bᵢ`. This is BLAS `?trsm` with `side = R`, `uplo = L`,
/// `transa = T`, `diag = N`, `alpha = 1` (`dagger_cpu::trsm(Side::Right, Triangle::Lower,
/// Trans::Yes, Diag::NonUnit, 1.0, L, B)`), the panel solve of a tiled Cholesky
/// factorization with `L` from [`potrf`]. Only the lower triangle of `L`, diagonal included,
/// is read. A zero on `L`'s diagonal gives infinities or NaNs, as in BLAS. Above 256
/// columns the solve is several dispatches; `on_done` runs once, after the last.
///
/// With `m = 0` or `n = 0` nothing is enqueued and `on_done(Ok(()))` runs at once on the
/// calling thread.
///
/// # Errors
///
/// Checked before anything is enqueued (then `on_done` is not called): [`BlasError::Shape`]
/// naming both shapes, [`BlasError::LeadingDimension`], [`BlasError::BufferTooSmall`],
/// [`BlasError::Aliased`] when `L` and `B` share a buffer, and [`BlasError::Gpu`] for the
/// errors of [`Device::compile`] and [`Device::launch`].
pub fn trsm(
    device: &Device,
    l: GpuMatrix<'_>,
    b: GpuMatrix<'_>,
    dtype: Dtype,
    on_done: impl FnOnce(Result<(), GpuError>) + Send + 'static,
) -> Result<(), BlasError> {
    let steps = prepare_trsm(device, l, b, dtype)?;
    launch_sequence(device, steps, on_done)
}

/// [`trsm`], waiting for the GPU to finish.
///
/// # Errors
///
/// Those of [`trsm`], the error the launch finished with, and [`GpuError::Reentrant`] from a
/// completion callback of this device.
pub fn trsm_blocking(
    device: &Device,
    l: GpuMatrix<'_>,
    b: GpuMatrix<'_>,
    dtype: Dtype,
) -> Result<(), BlasError> {
    let steps = prepare_trsm(device, l, b, dtype)?;
    if steps.is_empty() {
        return Ok(());
    }
    launch_sequence_blocking(device, steps, "trsm_blocking")
}
