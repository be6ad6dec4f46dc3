use super::TaskInfo;
use super::{MemorySpace, Processor, ProcessorKind};

/// A CPU worker thread (Dagger.jl's `ThreadProc`).
///
/// Each runs one task of full occupancy at a time; tasks with a smaller
/// [`occupancy`](crate::Options::occupancy) share it. The scheduler drives thread processors
/// directly, so `execute` here is only used when a thread processor is called through the
/// trait.
#[derive(Debug, Clone)]
pub struct ThreadProc {
    pub(crate) process: u32,
    pub(crate) thread: u32,
}

impl ThreadProc {
    /// Which worker thread this is, from 0.
    pub fn thread(&self) -> usize {
        self.thread as usize
    }
}

impl Processor for ThreadProc {
    fn kind(&self) -> ProcessorKind {
        ProcessorKind::Thread
    }

    fn description(&self) -> String {
        format!("cpu thread {}", self.thread)
    }

    fn memory_space(&self) -> MemorySpace {
        MemorySpace::Host {
            process: self.process,
        }
    }

    fn default_enabled(&self) -> bool {
        true
    }

    fn is_compatible(&self, task: &TaskInfo) -> bool {
        task.runs_on_host()
    }
}
