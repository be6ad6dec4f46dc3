//! GPU processors on wgpu: the device interface implemented over `dagger-wgpu`, as
//! wgpu-core adapts wgpu-hal.
//!
//! - [`kernel`]: [`WgslKernel`], a user's own shader (with an optional CPU implementation)
//!   as a kernel, and the WGSL implementations of kernels.
//! - [`dtype`]: the element types kernel arrays hold.
//! - `memory` (with the `wgpu` feature): the devices of the process, the arrays resident on
//!   them, and moving values between host and devices (with a replica cache so a value is
//!   uploaded once per device).
//! - `budget` (with the `wgpu` feature): what a context keeps on each device, under the
//!   device's memory budget: admission of tasks, eviction of the least recently used buffers
//!   to host memory.
//! - `device` (with the `wgpu` feature): [`WgpuProc`] ties them together as a
//!   [`Processor`](super::Processor): its `move_in` checks that a value can go to the
//!   device, its `move_out` downloads, its `launch` admits the task under the device's
//!   budget (uploading the inputs that are not on the device), enqueues the kernel's WGSL
//!   implementation on the device's server thread and completes the task from the device's
//!   completion callback.
//!
//! Without the `wgpu` feature, kernels and their element types remain and run on CPU
//! threads through their CPU implementations; nothing here touches a device.

#[cfg(feature = "wgpu")]
pub(crate) mod budget;
#[cfg(feature = "wgpu")]
mod device;
pub(crate) mod dtype;
pub(crate) mod kernel;
#[cfg(feature = "wgpu")]
pub(crate) mod memory;

#[cfg(feature = "wgpu")]
pub use budget::{GpuMemoryError, GpuMemoryStats};
#[cfg(feature = "wgpu")]
pub(crate) use device::{default_budget, discover};
#[cfg(feature = "wgpu")]
pub use device::{GpuInfo, WgpuProc};
pub use dtype::{DType, GpuScalar};
pub(crate) use kernel::GpuLaunch;
pub use kernel::{Access, KernelArgsError, KernelError, WgslKernel, WgslKernelBuilder};
#[cfg(feature = "wgpu")]
pub(crate) use kernel::{DeviceInput, LaunchDone};
#[cfg(feature = "wgpu")]
pub(crate) use memory::{devices, DeviceOutput};
