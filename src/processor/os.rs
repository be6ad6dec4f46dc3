use super::{MemorySpace, Processor, ProcessorKind};
use super::{TaskCall, TaskFailure, TaskInfo};
use crate::value::Value;

/// The process: parent of every other processor of a process (Dagger.jl's `OSProc`).
///
/// It runs no tasks itself; scoping to it (`Scope::process`) means "any processor of this
/// process".
#[derive(Debug, Clone)]
pub struct OsProc {
    pub(crate) process: u32,
}

impl Processor for OsProc {
    fn kind(&self) -> ProcessorKind {
        ProcessorKind::Os
    }

    fn description(&self) -> String {
        format!("process {} (pid {})", self.process, std::process::id())
    }

    fn memory_space(&self) -> MemorySpace {
        MemorySpace::Host {
            process: self.process,
        }
    }

    fn default_enabled(&self) -> bool {
        false
    }

    fn is_compatible(&self, _task: &TaskInfo) -> bool {
        false
    }

    fn execute(&self, call: TaskCall) -> Result<Value, TaskFailure> {
        Err(TaskFailure::msg(format!(
            "task `{}` was sent to the process processor, which runs no tasks",
            call.info().name()
        )))
    }
}
