//! [`WgpuProc`]: a wgpu device as a [`Processor`].

use std::sync::Arc;

use super::budget::{self, DeviceMemory, GpuMemoryStats};
use super::kernel::{DeviceInput, WgslImpl};
use super::memory::{self, devices};
use crate::kernel::Backend;
use crate::processor::{
    Completion, MemorySpace, MoveError, Processor, ProcessorKind, TaskCall, TaskFailure, TaskInfo,
};
use crate::value::Value;

/// What a GPU processor's device is, as `dagger info` shows it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
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
    /// The most this context keeps on the device at once, in bytes (`None`: no budget); see
    /// [`ContextBuilder::gpu_memory_budget`](crate::ContextBuilder::gpu_memory_budget).
    pub memory_budget: Option<u64>,
}

/// A GPU device reached through wgpu (DaggerGPU's device processor).
///
/// It runs kernels with a WGSL implementation — [`WgslKernel`](crate::WgslKernel)s and the framework's own —
/// in its own memory space; the scheduler moves their inputs in and leaves results on the
/// device until something else needs them. Software devices are not enabled by default;
/// see [`ContextBuilder::software_gpus`](crate::ContextBuilder::software_gpus).
#[derive(Debug, Clone)]
pub struct WgpuProc {
    pub(crate) info: GpuInfo,
    pub(crate) default_enabled: bool,
    pub(crate) memory: Arc<DeviceMemory>,
}

impl WgpuProc {
    /// What the device is.
    pub fn info(&self) -> &GpuInfo {
        &self.info
    }

    fn device(&self) -> &dagger_wgpu::Device {
        &devices().devices[self.info.index].device
    }

    /// How the device's memory fared under its budget in this context.
    pub fn memory_stats(&self) -> GpuMemoryStats {
        self.memory.stats()
    }

    /// Why this device cannot run `task`, or `None` if it can.
    fn check(&self, task: &TaskInfo) -> Option<String> {
        let (call, imp) = match wgsl_of(task) {
            Ok(found) => found,
            Err(why) => return Some(why),
        };
        imp.0.supports(call.params(), self.device().info()).err()
    }
}

/// The kernel of `task` and its WGSL implementation, or why it has none.
fn wgsl_of(task: &TaskInfo) -> Result<(&crate::kernel::KernelCall, &WgslImpl), String> {
    let Some(call) = task.kernel_call() else {
        return Err("runs kernels only; closures run on CPU threads".into());
    };
    call.kernel()
        .implementation(&Backend::WGSL)
        .and_then(|i| i.downcast_ref::<WgslImpl>())
        .map(|imp| (call, imp))
        .ok_or_else(|| {
            format!(
                "kernel `{}` has no WGSL implementation",
                call.kernel().name()
            )
        })
}

/// The default memory budget of a device: the largest buffer it allows.
///
/// wgpu reports no memory size on any backend. `max_buffer_size` is the one figure about
/// memory that every backend reports, and a device can hold at least one buffer of that
/// size, so a working set of that size is one the device can hold (on Vulkan it is the
/// smaller of `maxBufferSize` and `maxMemoryAllocationSize`).
pub(crate) fn default_budget(info: &dagger_wgpu::DeviceInfo) -> u64 {
    info.max_buffer_size
}

/// The GPUs of this process as processors; `software` puts software devices in the
/// default scope; `budget` gives each device's memory budget (`None`: none).
pub(crate) fn discover(
    software: bool,
    budget: &dyn Fn(usize, &dagger_wgpu::DeviceInfo) -> Option<u64>,
) -> Vec<WgpuProc> {
    devices()
        .devices
        .iter()
        .enumerate()
        .map(|(i, state)| {
            let d = state.device.info();
            let memory_budget = budget(i, d);
            WgpuProc {
                memory: DeviceMemory::new(i, memory_budget),
                default_enabled: !d.is_software || software,
                info: GpuInfo {
                    index: i,
                    name: d.name.clone(),
                    backend: d.backend.clone(),
                    device_type: format!("{:?}", d.device_type).to_ascii_lowercase(),
                    is_software: d.is_software,
                    shader_f64: d.shader_f64,
                    shader_f16: d.shader_f16,
                    max_storage_binding_size: d.max_storage_binding_size,
                    max_buffer_size: d.max_buffer_size,
                    memory_budget,
                },
            }
        })
        .collect()
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
        memory::space_of(self.info.index)
    }

    fn default_enabled(&self) -> bool {
        self.default_enabled
    }

    fn is_available(&self) -> bool {
        !self.device().is_lost()
    }

    fn is_compatible(&self, task: &TaskInfo) -> bool {
        self.check(task).is_none()
    }

    fn incompatibility(&self, task: &TaskInfo) -> String {
        self.check(task).unwrap_or_else(|| "available".into())
    }

    fn move_in(&self, from: MemorySpace, value: Value) -> Result<Value, MoveError> {
        memory::stage(from, &value, self.info.index).map(Value::new)
    }

    fn move_out(&self, value: Value) -> Result<Value, MoveError> {
        memory::to_host(self.memory_space(), &value)
    }

    fn bytes_to_move_in(&self, _from: MemorySpace, value: &Value) -> u64 {
        memory::residence(value, &self.memory).map_or(0, |r| r.bytes_to(Some(self.info.index)))
    }

    fn bytes_to_move_out(&self, value: &Value) -> u64 {
        memory::residence(value, &self.memory).map_or(0, |r| r.bytes_to(None))
    }

    fn launch(&self, call: TaskCall, done: Completion) {
        let fail = |done: Completion, message: String| {
            done.complete(Err(TaskFailure::msg(message)));
        };
        let (kcall, imp) = match wgsl_of(call.info()) {
            Ok(found) => found,
            Err(why) => return fail(done, why),
        };
        if self.device().is_lost() {
            return fail(
                done,
                format!(
                    "{} was lost before the task could start; its kernels fail and its \
                     results can no longer be read",
                    self.description()
                ),
            );
        }
        let mut staged = Vec::with_capacity(call.inputs().len());
        for (k, v) in call.inputs().iter().enumerate() {
            match v.downcast_ref::<memory::Staged>() {
                Some(d) => staged.push(d),
                None => {
                    return fail(
                        done,
                        format!(
                            "input {k} is a `{}`, not an array moved to the device",
                            v.type_name()
                        ),
                    )
                }
            }
        }
        let index = self.info.index;
        let device = self.device();
        let lens: Vec<usize> = staged.iter().map(|s| s.len).collect();
        let elem = staged.first().map_or(4, |s| s.dtype.size());
        let out_bytes =
            dagger_wgpu::allocation_size(match imp.0.output_len(kcall.params(), &lens) {
                Some(n) => (n * elem) as u64,
                None => staged
                    .iter()
                    .map(|s| (s.len * s.dtype.size()) as u64)
                    .max()
                    .unwrap_or(0),
            });
        let needs = staged
            .iter()
            .map(|s| memory::need(s, &self.memory))
            .collect();
        let mut admission = match self.memory.admit(device, needs, out_bytes) {
            Ok(a) => a,
            Err(budget::AdmitError::Budget(e)) => return done.complete(Err(TaskFailure::from(e))),
            Err(budget::AdmitError::Move(e)) => return done.complete(Err(TaskFailure::from(e))),
        };
        let inputs: Vec<DeviceInput> = staged
            .iter()
            .zip(&admission.buffers)
            .map(|(s, b)| DeviceInput {
                buffer: b.clone(),
                len: s.len,
                dtype: s.dtype,
            })
            .collect();
        // The inputs stay pinned (and their buffers held) until the kernel has finished.
        let held = inputs.clone();
        let done = Arc::new(parking_lot::Mutex::new(Some(done)));
        let on_done = done.clone();
        let launched = imp.0.launch(
            kcall.params(),
            device,
            &inputs,
            Box::new(move |r| {
                let r = r.map(|out| Value::new(out.adopt(index, &mut admission)));
                drop(admission);
                drop(held);
                if let Some(done) = on_done.lock().take() {
                    done.complete(r.map_err(TaskFailure::from));
                }
            }),
        );
        if let Err(e) = launched {
            if let Some(done) = done.lock().take() {
                done.complete(Err(TaskFailure::from(e)));
            }
        }
    }

    fn capacity(&self) -> u32 {
        4
    }

    fn prior_gflops(&self) -> f64 {
        match self.info.device_type.as_str() {
            "discretegpu" => 2_000.0,
            "integratedgpu" => 200.0,
            "cpu" => 1.0,
            _ => 100.0,
        }
    }
}
