//! Block kernels on host memory for `dagger`.
//!
//! This crate knows nothing of scheduling: it holds the CPU implementations of the block
//! operations that `dagger`'s kernels dispatch to when a task is placed on a CPU thread.
//!
//! The dense kernels work on one block at a time, in place, over [faer] (or the system
//! OpenBLAS with the `openblas` cargo feature, see [`backend_name`]); on most x86-64 CPUs
//! with AVX-512, [`gemm`] runs this crate's own packed kernel instead, which keeps up with
//! OpenBLAS where faer's runs 15–20% behind. Which one runs is chosen for the CPU (or named
//! by `DAGGER_CPU_GEMM`), see [`gemm_kernel`]; [`gemm_with`] runs a given one. [`trsm`] and
//! [`getrf`] recurse, so that most of their work is [`gemm`] calls:
//!
//! | kernel | computes | BLAS/LAPACK name |
//! |---|---|---|
//! | [`gemm`] | `C = alpha op(A) op(B) + beta C` | `?gemm` |
//! | [`syrk`] | one triangle of `C = alpha A Aᵀ + beta C` (or `Aᵀ A`) | `?syrk` |
//! | [`mirror`] | copies one triangle of a square block onto the other | |
//! | [`potrf`] | Cholesky factor of a block in place, `A = L Lᵀ` or `A = Uᵀ U` | `?potrf` |
//! | [`trsm`] | `B = alpha op(A)⁻¹ B` or `B = alpha B op(A)⁻¹`, `A` triangular | `?trsm` |
//! | [`getrf`] | LU factors of a block in place, `P A = L U` (or `A = L U`), recursive | `?getrf` |
//! | [`geqrt`] | Householder QR of a block in place, `A = Q R`, `Q = I - V T Vᵀ` | `?geqrt` |
//!
//! Their parameters are types, not flags ([`Trans`], [`Triangle`], [`Side`], [`Diag`],
//! [`Accum`], [`Threads`]); they are generic over `f32` and `f64` (the sealed [`Scalar`]
//! trait); matrices are strided views ([`MatRef`], [`MatMut`]) made from row-major slices
//! with a leading dimension — the layout of a C array and of ndarray's default — or from
//! `ndarray` views of any strides.
//!
//! The [`elementwise`] module holds the loops of the array block kernels (map, zip with
//! broadcast, reductions, strided box copies, fills, random numbers). [`sort_keys`] sorts
//! the `u64` keys a sorted block is made of (an AVX-512 quicksort where the CPU has it), and
//! [`merge_f64`] merges two sorted runs of `f64` eight elements at a time.
//!
//! Cargo feature `openblas`: link the system OpenBLAS (Debian: `libopenblas-dev`) and run the
//! four dense kernels through CBLAS and LAPACK's `?potrf` instead. The default build does not
//! need it. `cargo run -p dagger-cpu --release --example gemm_gflops` prints GFLOP/s of
//! either.
//!
//! A shape mismatch is a bug in the caller, so the kernels panic on it (with
//! `#[track_caller]` and a message naming both shapes); only [`potrf`] and [`getrf`] return
//! an error, for a block that is not positive definite or meets a zero pivot, which is a
//! property of the data.
//!
//! ```
//! use dagger_cpu::{gemm, Accum, MatMut, MatRef, Threads, Trans};
//!
//! // C (2x2) = A (2x3) · Bᵀ where B is 2x3, all row-major.
//! let a = [1.0f64, 2.0, 3.0, 4.0, 5.0, 6.0];
//! let b = [1.0f64, 0.0, 1.0, 0.0, 1.0, 0.0];
//! let mut c = [0.0f64; 4];
//! gemm(
//!     Trans::No,
//!     Trans::Yes,
//!     1.0,
//!     MatRef::new(&a, 2, 3),
//!     MatRef::new(&b, 2, 3),
//!     Accum::Replace,
//!     MatMut::new(&mut c, 2, 2),
//!     Threads::SEQ,
//! );
//! assert_eq!(c, [4.0, 2.0, 10.0, 5.0]);
//! ```

#![warn(missing_docs, unreachable_pub)]

mod choice;
mod dense;
pub mod elementwise;
mod error;
mod lu;
mod mat;
#[cfg(feature = "openblas")]
mod openblas;
#[cfg(target_arch = "x86_64")]
mod packed;
mod qr;
mod scalar;
mod sort;
mod threads;
#[cfg(target_arch = "x86_64")]
mod transpose;

pub use choice::{gemm_kernel, GemmKernel, UnknownGemmKernel, GEMM_KERNEL_VAR};
pub use dagger_params::{Accum, Diag, Pivoting, Side, Trans, Triangle};
pub use dense::{gemm, gemm_with, mirror, potrf, syrk, trsm};
pub use error::{GetrfError, PotrfError};
pub use lu::{column_major_ld, getrf};
pub use mat::{MatMut, MatRef};
pub use qr::geqrt;
pub use scalar::Scalar;
pub use sort::{merge_f32, merge_f64, sort_keys, Direction};
pub use threads::Threads;

/// Which library runs [`gemm`], [`syrk`], [`potrf`] and [`trsm`] in this build: `"openblas"`
/// with the `openblas` cargo feature (the system's `libopenblas`), `"faer"` otherwise.
///
/// With `openblas`, a view whose strides BLAS cannot express (no unit stride in either
/// dimension, or a negative stride) still goes through faer.
///
/// ```
/// let name = dagger_cpu::backend_name();
/// assert!(name == "faer" || name == "openblas");
/// ```
pub fn backend_name() -> &'static str {
    if cfg!(feature = "openblas") {
        "openblas"
    } else {
        "faer"
    }
}

/// The name of the kernel that runs [`gemm`] here: [`gemm_kernel`]`().name()`, that is
/// `"openblas"` with the `openblas` cargo feature, otherwise `"avx512"` (this crate's packed
/// kernel) or `"faer"`, chosen at run time for the CPU (or named by `DAGGER_CPU_GEMM`), so
/// one binary picks the right one on each machine. The packed kernel needs a `C` with a
/// unit stride in one dimension; other views go through faer.
///
/// ```
/// let name = dagger_cpu::gemm_backend_name();
/// assert!(["avx512", "faer", "openblas"].contains(&name));
/// ```
pub fn gemm_backend_name() -> &'static str {
    gemm_kernel().name()
}

/// `y[i] = a * x[i] + y[i]` over two equally long slices.
///
/// # Panics
/// Panics if `x` and `y` differ in length.
///
/// ```
/// let x = [1.0f32, 2.0];
/// let mut y = [10.0f32, 20.0];
/// dagger_cpu::saxpy(2.0, &x, &mut y);
/// assert_eq!(y, [12.0, 24.0]);
/// ```
#[track_caller]
pub fn saxpy(a: f32, x: &[f32], y: &mut [f32]) {
    assert_eq!(
        x.len(),
        y.len(),
        "saxpy: x has {} elements but y has {}",
        x.len(),
        y.len()
    );
    for (yi, xi) in y.iter_mut().zip(x) {
        *yi += a * xi;
    }
}

#[cfg(test)]
mod tests {
    fn send_sync<T: Send + Sync>() {}

    #[test]
    fn views_and_errors_cross_threads() {
        send_sync::<crate::MatRef<'_, f32>>();
        send_sync::<crate::MatMut<'_, f64>>();
        send_sync::<crate::PotrfError>();
    }
}
