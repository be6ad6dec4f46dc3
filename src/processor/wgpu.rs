use super::{MemorySpace, Processor, ProcessorKind};
use crate::task::{TaskCall, TaskFailure, TaskInfo};
use crate::value::Value;

/// What a GPU processor's device is, as `dagger info` shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GpuInfo {
    /// Index among the GPUs (what [`Scope::gpu`](crate::Scope::gpu) takes).
    pub index: usize,
    /// The adapter's name.
    pub name: String,
    /// The wgpu backend: `"vulkan"`, `"gl"`, `"metal"` or `"dx12"`.
    pub backend: String,
    /// Discrete, integrated, virtual, cpu or other.
    pub device_type: String,
    /// Whether it is a software device running on the CPU (such as Mesa's lavapipe).
    pub is_software: bool,
    /// Whether shaders may use f64.
    pub shader_f64: bool,
    /// Whether shaders may use f16.
    pub shader_f16: bool,
    /// The largest storage buffer one binding may have, in bytes.
    pub max_storage_binding_size: u64,
    /// The largest buffer, in bytes.
    pub max_buffer_size: u64,
}

/// A GPU device reached through wgpu (DaggerGPU's device processor).
///
/// It runs kernels — [`WgslKernel`](crate::WgslKernel)s and the framework's own — in its
/// own memory space; the scheduler moves their inputs in and leaves results on the device
/// until something else needs them. Software devices are not enabled by default; see
/// [`ContextBuilder::software_gpus`](crate::ContextBuilder::software_gpus).
#[derive(Debug, Clone)]
pub struct WgpuProc {
    pub(crate) info: GpuInfo,
    pub(crate) default_enabled: bool,
}

impl WgpuProc {
    /// What the device is.
    pub fn info(&self) -> &GpuInfo {
        &self.info
    }
}

impl Processor for WgpuProc {
    fn kind(&self) -> ProcessorKind {
        ProcessorKind::Wgpu
    }

    fn description(&self) -> String {
        format!(
            "gpu {} {} ({}{})",
            self.info.index,
            self.info.name,
            self.info.backend,
            if self.info.is_software {
                ", software"
            } else {
                ""
            }
        )
    }

    fn memory_space(&self) -> MemorySpace {
        MemorySpace::Device {
            process: 1,
            device: self.info.index as u32,
        }
    }

    fn default_enabled(&self) -> bool {
        self.default_enabled
    }

    fn is_compatible(&self, task: &TaskInfo) -> bool {
        task.kernel().is_some()
    }

    fn execute(&self, call: TaskCall) -> Result<Value, TaskFailure> {
        Err(TaskFailure::msg(format!(
            "task `{}` was handed to {} through the trait; GPU kernels are launched by the scheduler",
            call.info().name(),
            self.description()
        )))
    }

    fn capacity(&self) -> u32 {
        4
    }
}
