//! wgpu device runtime for dagger.
//!
//! This crate knows devices and kernels, nothing of scheduling:
//!
//! - [`open_devices`] opens one [`Device`] per wgpu adapter of every backend, in a stable
//!   order, with each adapter's own limits ([`DeviceInfo`]).
//! - A [`Device`] is a cheap handle to a server thread that owns the wgpu queue; every
//!   upload, copy, download and launch is a command to it. The server encodes all commands
//!   waiting in its channel into one command buffer, submits once and waits for it, so many
//!   small launches cost few submissions ([`DeviceStats`]).
//! - [`GpuBuffer`]s come from a per-device pool bucketed by size class and return to it as
//!   soon as their last use is done.
//! - [`Device::compile`] validates WGSL with naga ([`validate_wgsl`]), compiles it with an
//!   automatic layout and caches the [`Pipeline`]; [`Pipeline::bindings`] reflects what
//!   an entry point binds.
//! - Everything that can fail returns a [`GpuError`] saying what to change; wgpu validation
//!   errors are captured with error scopes, and device loss turns every later call into
//!   [`GpuError::DeviceLost`].
//! - [`blas`] runs dense block kernels (GEMM, SYRK, Cholesky tiles); [`array`](mod@array) gives the
//!   WGSL of the array block kernels for each element type.
//!
//! ```no_run
//! use dagger_wgpu::{open_devices, Binding};
//!
//! let device = open_devices().into_iter().flatten().next().expect("a wgpu adapter");
//! let saxpy = device.compile(dagger_wgpu::shaders::SAXPY, "main")?;
//! let x = device.upload(&[1.0f32, 2.0, 3.0])?;
//! let y = device.upload(&[10.0f32, 20.0, 30.0])?;
//! let params = dagger_wgpu::shaders::SaxpyParams { a: 2.0, n: 3 };
//! device.launch_blocking(
//!     &saxpy,
//!     &[Binding::uniform(&params), Binding::Storage(&x), Binding::Storage(&y)],
//!     params.workgroups(),
//! )?;
//! assert_eq!(device.download::<f32>(&y)?, [12.0, 24.0, 36.0]);
//! # Ok::<(), dagger_wgpu::GpuError>(())
//! ```

#![warn(missing_docs, unreachable_pub)]

// Without the `device` feature only `array` and `blas::GemmKernel` remain: what a CPU-only
// build of the array kernels needs.
pub mod array;
#[cfg(feature = "device")]
pub mod blas;
#[cfg(not(feature = "device"))]
pub mod blas {
    //! The choice of GEMM kernel; the launchers need the `device` feature.
    pub use crate::gemm_kind::GemmKernel;
}
#[cfg(feature = "device")]
mod buffer;
#[cfg(feature = "device")]
mod core;
#[cfg(feature = "device")]
mod device;
#[cfg(feature = "device")]
mod error;
mod gemm_kind;
#[cfg(feature = "device")]
mod info;
#[cfg(feature = "device")]
mod pipeline;
#[cfg(feature = "device")]
mod pool;
#[cfg(feature = "device")]
mod server;
#[cfg(feature = "device")]
mod shader;
#[cfg(feature = "device")]
pub mod shaders;
#[cfg(feature = "device")]
mod stats;
#[cfg(feature = "device")]
pub mod testing;

#[cfg(feature = "device")]
pub use buffer::GpuBuffer;
#[cfg(feature = "device")]
pub use device::{open_devices, Binding, Device};
#[cfg(feature = "device")]
pub use error::{GpuError, ShaderError, SourcePosition};
#[cfg(feature = "device")]
pub use info::{DeviceInfo, DeviceType};
#[cfg(feature = "device")]
pub use pipeline::Pipeline;
#[cfg(feature = "device")]
pub use pool::{allocation_size, POOL_IDLE_CAP};
#[cfg(feature = "device")]
pub use shader::{reflect_wgsl, validate_wgsl, validate_wgsl_with, BindingInfo, BindingKind};
#[cfg(feature = "device")]
pub use stats::DeviceStats;

#[cfg(all(test, feature = "device"))]
mod tests {
    fn send_sync<T: Send + Sync>() {}

    #[test]
    fn handles_and_errors_cross_threads() {
        send_sync::<crate::Device>();
        send_sync::<crate::GpuBuffer>();
        send_sync::<crate::Pipeline>();
        send_sync::<crate::GpuError>();
        send_sync::<crate::DeviceInfo>();
    }
}
