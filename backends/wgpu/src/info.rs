//! What a device is: [`DeviceInfo`] and [`DeviceType`].

/// Kind of adapter, as the driver reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum DeviceType {
    /// A GPU with its own memory.
    DiscreteGpu,
    /// A GPU sharing memory with the CPU.
    IntegratedGpu,
    /// A virtualised or hosted GPU.
    VirtualGpu,
    /// A software rasteriser running on the CPU (lavapipe, llvmpipe, WARP, SwiftShader).
    Cpu,
    /// Anything else, or unknown.
    Other,
}

impl From<wgpu::DeviceType> for DeviceType {
    fn from(t: wgpu::DeviceType) -> Self {
        match t {
            wgpu::DeviceType::DiscreteGpu => Self::DiscreteGpu,
            wgpu::DeviceType::IntegratedGpu => Self::IntegratedGpu,
            wgpu::DeviceType::VirtualGpu => Self::VirtualGpu,
            wgpu::DeviceType::Cpu => Self::Cpu,
            wgpu::DeviceType::Other => Self::Other,
        }
    }
}

/// Description and limits of one opened device.
#[derive(Clone, Debug)]
pub struct DeviceInfo {
    /// Position of the adapter in the deterministic order of [`crate::open_devices`]
    /// (backend, then name, then the driver's enumeration order); stable between runs on one
    /// machine.
    pub index: usize,
    /// Adapter name, e.g. `llvmpipe (LLVM 15.0.7, 256 bits)`.
    pub name: String,
    /// `"vulkan"`, `"gl"`, `"metal"` or `"dx12"`.
    pub backend: String,
    /// Kind of adapter.
    pub device_type: DeviceType,
    /// `device_type == DeviceType::Cpu`: a software implementation, slower than the CPU path.
    pub is_software: bool,
    /// The device was opened with `SHADER_F64`: shaders may use `f64`.
    pub shader_f64: bool,
    /// The device was opened with `SHADER_F16`: shaders may use `f16` (with `enable f16;`).
    pub shader_f16: bool,
    /// Largest storage buffer one binding may have, in bytes.
    pub max_storage_binding_size: u64,
    /// Largest buffer the device can allocate, in bytes.
    pub max_buffer_size: u64,
    /// Largest uniform binding, in bytes.
    pub max_uniform_binding_size: u64,
    /// Largest workgroup count of one dispatch in each dimension.
    pub max_compute_workgroups_per_dimension: u32,
    /// Largest product of a workgroup's sizes.
    pub max_compute_invocations_per_workgroup: u32,
    /// Driver name and version, as far as the driver tells.
    pub driver: String,
}

impl DeviceInfo {
    /// Checks that a storage buffer of `bytes` bytes may be bound at `binding` on this device.
    ///
    /// `Device::launch` runs this for every storage binding; callers that split data into
    /// blocks can run it first.
    ///
    /// # Errors
    ///
    /// [`crate::GpuError::BindingTooLarge`] naming the binding, its size and the limit.
    pub fn check_storage_binding(&self, binding: u32, bytes: u64) -> Result<(), crate::GpuError> {
        if bytes > self.max_storage_binding_size {
            return Err(crate::GpuError::BindingTooLarge {
                binding,
                bytes,
                limit: self.max_storage_binding_size,
            });
        }
        Ok(())
    }

    /// Checks a dispatch's workgroup counts against this device's per-dimension limit.
    ///
    /// # Errors
    ///
    /// [`crate::GpuError::TooManyWorkgroups`] naming the dimension, the count and the limit.
    pub fn check_workgroups(&self, workgroups: [u32; 3]) -> Result<(), crate::GpuError> {
        let limit = self.max_compute_workgroups_per_dimension;
        match workgroups.iter().position(|&c| c > limit) {
            Some(dimension) => Err(crate::GpuError::TooManyWorkgroups {
                dimension,
                count: workgroups[dimension],
                limit,
            }),
            None => Ok(()),
        }
    }
}
