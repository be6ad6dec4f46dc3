//! Another rank's processors as the head sees them: [`RemoteProc`] implements the device
//! interface by sending tasks to the worker that owns the processor, and a task's result
//! stays there as a [`RemoteObj`] handle that the head's scheduler moves around like any
//! device value. The last handle dropping frees the object on its owner.

use std::sync::{Arc, OnceLock};

use super::link::{Link, Pending};
use super::protocol::{Arg, Blob, Msg, ProcDesc, Work};
use super::wire::{self, Bytes, WireError};
use super::{registry, RemoteError};
use crate::kernel::{Backend, Kernel, KernelCall};
use crate::processor::{
    Completion, MemorySpace, MoveError, Processor, ProcessorKind, TaskCall, TaskFailure, TaskInfo,
};
use crate::value::Value;

/// A value that lives on another rank: the head's handle to it.
pub(crate) struct RemoteObj {
    pub(crate) rank: usize,
    pub(crate) obj: u64,
    pub(crate) bytes: u64,
    link: Arc<Link>,
    /// A copy in the head's memory, once fetched.
    host: OnceLock<Value>,
    /// Other workers told to fetch it, which keep a copy until it is freed.
    replicas: parking_lot::Mutex<Vec<usize>>,
}

impl Drop for RemoteObj {
    fn drop(&mut self) {
        let replicas = std::mem::take(&mut *self.replicas.lock());
        self.link.free(self.rank, self.obj, &replicas);
    }
}

impl RemoteObj {
    /// The value in this process's memory: fetched from its owner once, then kept.
    pub(crate) fn fetch(&self) -> Result<Value, RemoteError> {
        if let Some(v) = self.host.get() {
            return Ok(v.clone());
        }
        let (type_name, payload) = self.link.fetch(self.rank, self.obj)?;
        let v = payload.decode(&type_name)?;
        Ok(self.host.get_or_init(|| v).clone())
    }
}

/// The process processor of another rank: it runs nothing and parents that rank's
/// processors.
pub(crate) struct RemoteOs {
    pub(crate) rank: usize,
    pub(crate) host: String,
    pub(crate) pid: u32,
}

impl Processor for RemoteOs {
    fn kind(&self) -> ProcessorKind {
        ProcessorKind::Os
    }

    fn description(&self) -> String {
        format!("rank {} on {} (pid {})", self.rank, self.host, self.pid)
    }

    fn memory_space(&self) -> MemorySpace {
        MemorySpace::Host {
            process: self.rank as u32 + 1,
        }
    }

    fn is_compatible(&self, _task: &TaskInfo) -> bool {
        false
    }
}

/// A processor of another rank: a CPU thread or a GPU of a worker process.
pub(crate) struct RemoteProc {
    link: Arc<Link>,
    rank: usize,
    desc: ProcDesc,
    kind: ProcessorKind,
}

impl RemoteProc {
    pub(crate) fn new(link: Arc<Link>, rank: usize, desc: ProcDesc) -> RemoteProc {
        let kind = match desc.kind.as_str() {
            "thread" => ProcessorKind::Thread,
            "wgpu" => ProcessorKind::Wgpu,
            "os" => ProcessorKind::Os,
            other => ProcessorKind::Custom(Box::leak(other.to_owned().into_boxed_str())),
        };
        RemoteProc {
            link,
            rank,
            desc,
            kind,
        }
    }

    pub(crate) fn thread(&self) -> Option<usize> {
        self.desc.thread.map(|t| t as usize)
    }

    pub(crate) fn gpu(&self) -> Option<usize> {
        self.desc.gpu.map(|g| g as usize)
    }

    pub(crate) fn backend(&self) -> Option<String> {
        self.desc.backend.clone()
    }

    /// Bytes at the reference rate placement assumes that moving `bytes` over the link
    /// costs as much time as: latency and bandwidth come from the start-up measurement.
    fn cost_bytes(&self, bytes: u64) -> u64 {
        let stats = self.link.stats.read();
        let Some(s) = stats.iter().find(|s| s.rank == self.rank) else {
            return bytes;
        };
        let ns = s.latency_us * 1e3 + bytes as f64 / s.gbps.max(1e-3);
        // Placement divides by 4 bytes per ns.
        (ns * 4.0) as u64
    }

    fn runs_kernel(&self, k: &Kernel) -> bool {
        match self.kind {
            ProcessorKind::Thread => k.has(&Backend::CPU),
            ProcessorKind::Wgpu => k.has(&Backend::WGSL),
            _ => false,
        }
    }

    fn why_not(&self, task: &TaskInfo) -> Option<String> {
        if !task.is_portable() {
            return Some(format!(
                "a closure runs in the process that made it, not on rank {}: register the \
                 function with remote_fn! and spawn it with spawn_remote",
                self.rank
            ));
        }
        match task.kernel_call() {
            Some(call) => {
                let k = call.kernel();
                if Kernel::lookup(k.name()).is_none() {
                    return Some(format!("kernel `{}` is not registered by name", k.name()));
                }
                if k.is_local() {
                    return Some(format!(
                        "kernel `{}` was made from an expression in this process; other ranks \
                         cannot make it by name",
                        k.name()
                    ));
                }
                if !self.runs_kernel(k) {
                    return Some(format!(
                        "kernel `{}` has no implementation for {}",
                        k.name(),
                        self.desc.kind
                    ));
                }
                if k.params_codec().is_none()
                    && wire::codec_of(call.params().type_id_of_value()).is_none()
                {
                    return Some(format!(
                        "the parameters of kernel `{}` (`{}`) cannot be sent between processes",
                        k.name(),
                        call.params().type_name()
                    ));
                }
                None
            }
            None if self.kind != ProcessorKind::Thread => {
                Some("functions run on CPU threads".into())
            }
            None if registry::lookup(task.function()).is_none() => Some(format!(
                "function `{}` is not registered with remote_fn!",
                task.function()
            )),
            None => None,
        }
    }

    fn arg(&self, v: &Value) -> Result<Arg, TaskFailure> {
        if let Some(o) = v.downcast_ref::<RemoteObj>() {
            return Ok(if o.rank == self.rank {
                Arg::Here { obj: o.obj }
            } else {
                let mut replicas = o.replicas.lock();
                if !replicas.contains(&self.rank) {
                    replicas.push(self.rank);
                }
                Arg::At {
                    rank: o.rank as u32,
                    obj: o.obj,
                }
            });
        }
        let (type_name, bytes) = wire::encode_value(v)?;
        Ok(Arg::Inline(Blob {
            type_name: type_name.to_owned(),
            bytes: Bytes(bytes),
        }))
    }
}

/// A kernel call's parameters for the wire: by the kernel's own codec when it has one,
/// else by the codec registered for their type.
fn encode_params(call: &KernelCall) -> Result<(&'static str, Vec<u8>), WireError> {
    if let Some(c) = call.kernel().params_codec() {
        let mut out = Vec::new();
        if (c.encode)(call.params(), &mut out) {
            return Ok((c.type_name, out));
        }
    }
    wire::encode_value(call.params())
}

impl Processor for RemoteProc {
    fn kind(&self) -> ProcessorKind {
        self.kind
    }

    fn description(&self) -> String {
        format!("{} on rank {}", self.desc.description, self.rank)
    }

    fn memory_space(&self) -> MemorySpace {
        let process = self.rank as u32 + 1;
        match self.desc.device {
            Some(device) => MemorySpace::Device { process, device },
            None => MemorySpace::Host { process },
        }
    }

    fn default_enabled(&self) -> bool {
        self.desc.default_enabled
    }

    fn is_available(&self) -> bool {
        self.link.is_alive(self.rank)
    }

    fn is_compatible(&self, task: &TaskInfo) -> bool {
        self.why_not(task).is_none()
    }

    fn incompatibility(&self, task: &TaskInfo) -> String {
        self.why_not(task).unwrap_or_else(|| "compatible".into())
    }

    fn move_in(&self, from: MemorySpace, value: Value) -> Result<Value, MoveError> {
        // Values of any rank are taken as they are: the worker fetches what it does not
        // hold from the owner when the task starts.
        if value.is::<RemoteObj>() {
            return Ok(value);
        }
        if from == MemorySpace::LOCAL_HOST && wire::codec_of(value.type_id_of_value()).is_some() {
            return Ok(value);
        }
        Err(MoveError::Unsupported {
            type_name: value.type_name(),
            from,
            to: self.memory_space(),
        })
    }

    fn move_out(&self, value: Value) -> Result<Value, MoveError> {
        let Some(o) = value.downcast_ref::<RemoteObj>() else {
            return Ok(value);
        };
        o.fetch().map_err(|e| MoveError::Failed {
            type_name: "remote value",
            from: self.memory_space(),
            to: MemorySpace::LOCAL_HOST,
            source: Box::new(e),
        })
    }

    fn bytes_to_move_in(&self, _from: MemorySpace, value: &Value) -> u64 {
        match value.downcast_ref::<RemoteObj>() {
            Some(o) if o.rank == self.rank => 0,
            Some(o) => self.cost_bytes(o.bytes),
            None => wire::encoded_len(value).map_or(0, |b| self.cost_bytes(b)),
        }
    }

    fn bytes_to_move_out(&self, value: &Value) -> u64 {
        match value.downcast_ref::<RemoteObj>() {
            Some(o) if o.host.get().is_none() => self.cost_bytes(o.bytes),
            _ => 0,
        }
    }

    fn launch(&self, mut call: TaskCall, done: Completion) {
        if !self.link.is_alive(self.rank) {
            let e = self.link.lost_error(self.rank);
            done.complete(Err(TaskFailure::Error(Box::new(e))));
            return;
        }
        let inputs = call.take_inputs();
        let args: Result<Vec<Arg>, TaskFailure> = inputs.iter().map(|v| self.arg(v)).collect();
        let args = match args {
            Ok(a) => a,
            Err(e) => return done.complete(Err(e)),
        };
        let info = call.info();
        let work = match info.kernel_call() {
            Some(k) => match encode_params(k) {
                Ok((type_name, bytes)) => Work::Kernel {
                    name: k.kernel().name().to_owned(),
                    params: Blob {
                        type_name: type_name.to_owned(),
                        bytes: Bytes(bytes),
                    },
                },
                Err(e) => return done.complete(Err(e.into())),
            },
            None => Work::Function {
                name: info.function().to_owned(),
            },
        };
        let name = info.name().to_owned();
        let (rank, link) = (self.rank, self.link.clone());
        let req = self.link.register(Pending::Task {
            rank,
            done,
            keep: inputs,
            on_done: Box::new(move |obj, bytes, value| {
                Value::new(RemoteObj {
                    rank,
                    obj,
                    bytes,
                    link,
                    host: value.map(OnceLock::from).unwrap_or_default(),
                    replicas: Default::default(),
                })
            }),
        });
        let msg = Msg::Run {
            req,
            proc: self.desc.index,
            name,
            work,
            args,
        };
        // A failed send declares the rank lost, which fails the registered task.
        let _ = self.link.send(rank, &msg);
    }

    /// Eight times the remote processor's own: tasks wait in the worker's queue while the
    /// next are on their way, so the link's latency (about 10 µs a round trip) is hidden
    /// behind work even when tasks are short. Placement is decided before launch, so the
    /// depth changes no task's processor; a worker fetches the inputs of the tasks it has
    /// queued ahead of running them.
    fn capacity(&self) -> u32 {
        8 * self.desc.capacity.max(1)
    }

    fn prior_gflops(&self) -> f64 {
        self.desc.prior_gflops
    }
}
