//! Dense block kernels on a device: [`gemm`] and [`syrk`] over row-major `f32` (and `f64` on
//! devices with `SHADER_F64`) matrices in [`GpuBuffer`]s, from `shaders/gemm.wgsl` and
//! `shaders/syrk.wgsl`.
//!
//! Each kernel comes as an enqueueing call with a completion callback ([`gemm`], [`syrk`],
//! like [`Device::launch`]) and a blocking one ([`gemm_blocking`], [`syrk_blocking`]).
//! Matrices are described by [`GpuMatrix`] (buffer, shape, leading dimension, offset) and
//! checked against their buffers before anything is enqueued; parameters are types
//! ([`Trans`], [`Triangle`], [`Accum`], [`Dtype`], [`GemmKernel`]) mirroring `dagger-cpu`'s.
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

use std::sync::OnceLock;

use crate::{Binding, Device, GpuBuffer, GpuError};

/// `shaders/gemm.wgsl`: entry points `gemm_naive` and `gemm_tiled` over f32.
pub const GEMM_WGSL: &str = include_str!("../../../shaders/gemm.wgsl");

/// `shaders/syrk.wgsl`: entry point `syrk_tiled` over f32.
pub const SYRK_WGSL: &str = include_str!("../../../shaders/syrk.wgsl");

/// The line of both shaders that names their scalar type.
const SCALAR_ALIAS: &str = "alias Scalar = f32;";

/// Side of the square tile of `C` one `gemm_tiled` workgroup computes.
const GEMM_TILE: u32 = 128;
/// Side of the square tile of `C` one `syrk_tiled` workgroup computes.
const SYRK_TILE: u32 = 128;
/// Side of the square workgroup of the naive kernel.
const NAIVE_SIDE: u32 = 16;

/// Whether a kernel uses a matrix as stored or transposed (`op(A) = A` or `Aᵀ`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Trans {
    /// `op(A) = A`.
    #[default]
    No,
    /// `op(A) = Aᵀ`.
    Yes,
}

impl Trans {
    fn apply(self, (rows, cols): (u32, u32)) -> (u32, u32) {
        match self {
            Self::No => (rows, cols),
            Self::Yes => (cols, rows),
        }
    }

    fn flag(self) -> u32 {
        u32::from(self == Self::Yes)
    }
}

/// Which triangle of `C`, diagonal included, [`syrk`] computes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Triangle {
    /// Elements `(i, j)` with `i >= j`.
    Lower,
    /// Elements `(i, j)` with `i <= j`.
    Upper,
}

/// What a kernel does with the previous contents of `C` (BLAS's `beta`).
///
/// `Replace` (`beta = 0`) does not read `C`, so an uninitialised output is fine; `Add` is
/// `beta = 1`; `Scale(beta)` is the general case (converted to the element type).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub enum Accum {
    /// `C = alpha op(A) op(B)`; the old `C` is not read.
    #[default]
    Replace,
    /// `C = alpha op(A) op(B) + C`.
    Add,
    /// `C = alpha op(A) op(B) + beta C`.
    Scale(f64),
}

impl Accum {
    /// `(accumulate flag, beta)` for the shaders.
    fn uniform(self) -> (u32, f64) {
        match self {
            Self::Replace => (0, 0.0),
            Self::Add => (1, 1.0),
            Self::Scale(0.0) => (0, 0.0),
            Self::Scale(beta) => (1, beta),
        }
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

/// Which GEMM shader runs; see the [module docs](self) for the tiling.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum GemmKernel {
    /// One invocation per element of `C`, reading `A` and `B` straight from storage.
    /// A reference to check [`GemmKernel::Tiled`] against.
    Naive,
    /// 128x128 tiles of `C` per workgroup, 8x8 register micro-tiles, 8-deep panels of `A`
    /// and `B` in workgroup memory.
    #[default]
    Tiled,
}

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
        /// `"gemm"` or `"syrk"`.
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
        /// `"A"`, `"B"` or `"C"`.
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
        /// `"A"`, `"B"` or `"C"`.
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
        "C shares its buffer with {input}; write the result to a separate buffer (a buffer \
         cannot be bound for reading and writing in one dispatch)"
    )]
    Aliased {
        /// `"A"` or `"B"`.
        input: &'static str,
    },
    /// The device refused or failed the launch (including a missing `SHADER_F64`).
    #[error(transparent)]
    Gpu(#[from] GpuError),
}

/// The shader source for `dtype`.
fn source(
    f32_source: &'static str,
    dtype: Dtype,
    cache: &'static OnceLock<String>,
) -> &'static str {
    match dtype {
        Dtype::F32 => f32_source,
        Dtype::F64 => cache.get_or_init(|| {
            debug_assert!(f32_source.contains(SCALAR_ALIAS));
            f32_source.replacen(SCALAR_ALIAS, "alias Scalar = f64;", 1)
        }),
    }
}

fn gemm_source(dtype: Dtype) -> &'static str {
    static F64: OnceLock<String> = OnceLock::new();
    source(GEMM_WGSL, dtype, &F64)
}

fn syrk_source(dtype: Dtype) -> &'static str {
    static F64: OnceLock<String> = OnceLock::new();
    source(SYRK_WGSL, dtype, &F64)
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
    accum: Accum,
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
    let (accumulate, beta) = accum.uniform();
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
            op_a.flag(),
            op_b.flag(),
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
    accum: Accum,
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
    accum: Accum,
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
    accum: Accum,
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
    let (accumulate, beta) = accum.uniform();
    let upper = u32::from(triangle == Triangle::Upper);
    let params = uniform_bytes(
        [
            n,
            k,
            a.ld,
            c.ld,
            a.offset,
            c.offset,
            op.flag(),
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
    accum: Accum,
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
    accum: Accum,
    c: GpuMatrix<'_>,
    dtype: Dtype,
) -> Result<(), BlasError> {
    match prepare_syrk(device, triangle, op, alpha, a, accum, c, dtype)? {
        Some(prepared) => prepared.launch_blocking(device),
        None => Ok(()),
    }
}
