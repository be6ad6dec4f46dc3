//! The context: a handle to a set of processors and the scheduler that drives them.

use std::any::TypeId;
use std::sync::{Arc, OnceLock};

use crate::chunk::{Chunk, Data};
use crate::error::TaskError;
use crate::kernel::KernelCall;
use crate::log::LogEvent;
use crate::options::{current_options, function_defaults, Options};
use crate::processor::{
    Body, MemorySpace, MoveError, OsProc, Processor, ProcessorId, ProcessorInfo, ProcessorKind,
    TaskFailure, TaskInfo, ThreadProc,
};
use crate::sched::{
    resolve_candidates, Candidates, CostKey, Exec, Input, ProcEntry, Runtime, TaskCore, TaskKind,
    TaskName, Work, FULL_OCCUPANCY,
};
use crate::scope::Scope;
use crate::storage::Store;
use crate::task::args::{Dep, Deps, TaskArgs, TaskFn};
use crate::task::DTask;
use crate::value::Value;

/// A processor identifier that does not name a processor of the context that was asked.
///
/// ```
/// use dagger::prelude::*;
///
/// let small = Context::builder().threads(1).build()?;
/// let big = Context::builder().threads(8).build()?;
/// // The last processor of the bigger context is past the end of the smaller one's list.
/// let far = big.processors().last().unwrap().id;
/// let err = small.disable_processor(far).unwrap_err();
/// assert_eq!(err.id, far);
/// assert!(err.to_string().contains("is not one of this context's"), "{err}");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("processor {id} is not one of this context's {count} processors")]
pub struct UnknownProcessor {
    /// The identifier given.
    pub id: ProcessorId,
    /// How many processors the context has.
    pub count: usize,
}

/// Error building a [`Context`].
///
/// ```
/// use dagger::{BuildError, Context};
///
/// let err = Context::builder().threads(0).build().unwrap_err();
/// assert!(matches!(err, BuildError::NoThreads));
/// assert_eq!(err.to_string(), "a context needs at least one CPU thread; got threads(0)");
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// A context needs at least one CPU thread.
    #[error("a context needs at least one CPU thread; got threads(0)")]
    NoThreads,
    /// The memory limit in the environment is not a size.
    #[error("the memory limit is not valid: {0}; set it as 4GiB, 512MiB or none")]
    MemoryLimit(String),
    /// The GPU memory budget in the environment is not a size.
    #[error("the GPU memory budget is not valid: {0}; set it as 4GiB, 512MiB or none")]
    GpuMemoryBudget(String),
}

/// A handle to processors and the scheduler that places tasks on them.
///
/// Cheap to clone; the worker threads stop once the last handle is dropped and no task is
/// left to run.
///
/// ```
/// use dagger::prelude::*;
///
/// fn add1(x: i64) -> i64 { x + 1 }
/// fn add2(x: i64) -> i64 { x + 2 }
///
/// let ctx = Context::new()?;
/// let p = ctx.spawn(add1, (4,));
/// let q = ctx.spawn(add2, (&p,));
/// let r = ctx.spawn(add1, (3,));
/// let s = ctx.spawn(|p, q, r| p + q + r, (&p, &q, &r));
/// assert_eq!(s.fetch()?, 16);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct Context {
    inner: Arc<ContextInner>,
}

/// Reads one GPU's memory statistics.
#[cfg(feature = "wgpu")]
type GpuMemoryProbe = Arc<dyn Fn() -> crate::GpuMemoryStats + Send + Sync>;

struct ContextInner {
    rt: Arc<Runtime>,
    /// Tasks spawned with a checkpoint, by directory and name: the keys already given.
    checkpoints: parking_lot::Mutex<std::collections::HashMap<(Arc<std::path::Path>, String), u32>>,
    /// Kept alive as long as the context, dropped after its workers stop (the link to
    /// other processes).
    _attached: Vec<Box<dyn std::any::Any + Send + Sync>>,
    /// The device of each GPU processor, by processor index.
    #[cfg(feature = "wgpu")]
    gpus: Vec<Option<crate::processor::GpuInfo>>,
    /// How the memory of each of its GPUs fares (behind a trait object, so that proving the
    /// context `Send + Sync` does not walk the device's types).
    #[cfg(feature = "wgpu")]
    gpu_memory: Vec<(usize, GpuMemoryProbe)>,
}

impl Drop for ContextInner {
    fn drop(&mut self) {
        self.rt.store.context_ended();
        self.rt.shutdown();
    }
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("processors", &self.inner.rt.procs.len())
            .finish()
    }
}

/// Configures a [`Context`].
#[must_use]
pub struct ContextBuilder {
    threads: Option<usize>,
    custom: Vec<Arc<dyn Processor>>,
    gpus: bool,
    software_gpus: Option<bool>,
    memory_limit: Option<Option<u64>>,
    gpu_budget: Option<Option<u64>>,
    gpu_budgets: Vec<(usize, Option<u64>)>,
    spill_dir: Option<std::path::PathBuf>,
    pub(crate) remote_timeout: Option<std::time::Duration>,
    pub(crate) processes: Vec<ProcessSpec>,
    pub(crate) attached: Vec<Box<dyn std::any::Any + Send + Sync>>,
    /// Whether idle CPU threads spin a moment before they sleep (see
    /// [`Runtime::set_spin`](crate::sched::Runtime::set_spin)).
    pub(crate) spin: bool,
}

/// Another process's processors, as this context drives them: its process processor and
/// the processors under it.
pub(crate) struct ProcessSpec {
    pub(crate) process: u32,
    pub(crate) os: Arc<dyn Processor>,
    pub(crate) procs: Vec<RemoteProcSpec>,
}

/// One processor of another process, with what scopes select it by.
pub(crate) struct RemoteProcSpec {
    pub(crate) proc: Arc<dyn Processor>,
    pub(crate) thread: Option<usize>,
    pub(crate) gpu: Option<usize>,
    pub(crate) backend: Option<String>,
}

impl std::fmt::Debug for ContextBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ContextBuilder")
            .field("threads", &self.threads)
            .field(
                "processors",
                &self
                    .custom
                    .iter()
                    .map(|p| p.description())
                    .collect::<Vec<_>>(),
            )
            .field("gpus", &self.gpus)
            .field("software_gpus", &self.software_gpus)
            .field("memory_limit", &self.memory_limit)
            .field("gpu_memory_budget", &self.gpu_budget)
            .field("gpu_memory_budgets", &self.gpu_budgets)
            .field("spill_dir", &self.spill_dir)
            .finish()
    }
}

impl ContextBuilder {
    /// The number of CPU worker threads (default: one per core).
    pub fn threads(mut self, n: usize) -> Self {
        self.threads = Some(n);
        self
    }

    /// Whether to look for GPUs through wgpu (default: yes, when built with the `wgpu`
    /// feature).
    pub fn gpus(mut self, on: bool) -> Self {
        self.gpus = on;
        self
    }

    /// Whether software GPUs (device type CPU, such as Mesa's lavapipe) are in the default
    /// scope. They compete with the CPU threads for the same cores, so by default they are
    /// not, unless `DAGGER_SOFTWARE_GPU=1` is set; an explicit GPU scope uses them either way.
    pub fn software_gpus(mut self, on: bool) -> Self {
        self.software_gpus = Some(on);
        self
    }

    /// The most host memory, in bytes, that the values the context manages may take before
    /// the least recently used are spilled to disk (see [`storage`](crate::storage)).
    ///
    /// Default: `DAGGER_MEMORY_LIMIT` (such as `4GiB` or `none`) when set, else 60% of the
    /// machine's memory (or of its cgroup's limit, when lower).
    ///
    /// ```
    /// use dagger::prelude::*;
    /// let ctx = Context::builder().threads(1).memory_limit(256 << 20).build()?;
    /// assert_eq!(ctx.memory_stats().limit_bytes, Some(256 << 20));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn memory_limit(mut self, bytes: u64) -> Self {
        self.memory_limit = Some(Some(bytes));
        self
    }

    /// No memory limit: every value stays in host memory and nothing is counted.
    pub fn no_memory_limit(mut self) -> Self {
        self.memory_limit = Some(None);
        self
    }

    /// The most device memory, in bytes, that the context keeps on each GPU at once: the
    /// inputs and outputs of the kernels it runs there and the values it leaves there
    /// between tasks. Above it, the least recently used buffers that no running kernel uses
    /// are evicted — copies of values held elsewhere are freed, results that lived only on
    /// the device are first moved to host memory — and uploaded again when a task needs
    /// them. A task whose inputs and output alone exceed the budget fails with
    /// [`GpuMemoryError::TaskTooLarge`](crate::GpuMemoryError::TaskTooLarge).
    ///
    /// Default: `DAGGER_GPU_MEMORY_BUDGET` (such as `2GiB` or `none`) when set, else each
    /// device's largest buffer (`max_buffer_size`): wgpu reports no memory size, and a
    /// device holds at least one buffer of that size. [`gpu_memory_budget_for`] sets one
    /// GPU's.
    ///
    /// [`gpu_memory_budget_for`]: Self::gpu_memory_budget_for
    ///
    /// ```
    /// use dagger::prelude::*;
    /// let ctx = Context::builder().threads(1).gpu_memory_budget(64 << 20).build()?;
    /// for gpu in ctx.processors().into_iter().filter_map(|p| p.gpu) {
    ///     assert_eq!(gpu.memory_budget, Some(64 << 20));
    ///     assert_eq!(ctx.gpu_memory_stats(gpu.index).unwrap().budget_bytes, Some(64 << 20));
    /// }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[cfg(feature = "wgpu")]
    pub fn gpu_memory_budget(mut self, bytes: u64) -> Self {
        self.gpu_budget = Some(Some(bytes));
        self
    }

    /// The memory budget of GPU `index` alone (as [`Scope::gpu`] numbers them), in bytes;
    /// it takes precedence over [`gpu_memory_budget`](Self::gpu_memory_budget).
    ///
    /// ```
    /// use dagger::prelude::*;
    /// let ctx = Context::builder().threads(1).gpu_memory_budget_for(0, 8 << 20).build()?;
    /// if let Some(s) = ctx.gpu_memory_stats(0) {
    ///     assert_eq!(s.budget_bytes, Some(8 << 20));
    /// }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[cfg(feature = "wgpu")]
    pub fn gpu_memory_budget_for(mut self, index: usize, bytes: u64) -> Self {
        self.gpu_budgets.retain(|(i, _)| *i != index);
        self.gpu_budgets.push((index, Some(bytes)));
        self
    }

    /// No GPU memory budget: the context keeps on its GPUs whatever it uses, until device
    /// allocations fail.
    #[cfg(feature = "wgpu")]
    pub fn no_gpu_memory_budget(mut self) -> Self {
        self.gpu_budget = Some(None);
        self.gpu_budgets.clear();
        self
    }

    /// The directory in which the context creates its spill directory (default: the
    /// system's temporary directory). The spill directory is new, private to the user, and
    /// removed once the context and its chunks are gone.
    pub fn spill_dir(mut self, parent: impl Into<std::path::PathBuf>) -> Self {
        self.spill_dir = Some(parent.into());
        self
    }

    /// Adds a user-defined processor, parented by this process's [`OsProc`].
    pub fn processor(mut self, p: Arc<dyn Processor>) -> Self {
        self.custom.push(p);
        self
    }

    /// Starts the worker threads.
    pub fn build(self) -> Result<Context, BuildError> {
        let threads = self.threads.unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
        });
        if threads == 0 {
            return Err(BuildError::NoThreads);
        }
        let limit = match self.memory_limit {
            Some(l) => l,
            None => crate::storage::default_limit().map_err(BuildError::MemoryLimit)?,
        };
        let store = Store::new(limit, self.spill_dir);
        let process = 1;
        let os_id = ProcessorId::new(process, 0);
        let mut procs = vec![entry(
            ProcessorId::new(process, 0),
            Arc::new(OsProc { process }),
            Exec::None,
            None,
        )];
        for t in 0..threads {
            let id = ProcessorId::new(process, procs.len() as u32);
            let mut e = entry(
                id,
                Arc::new(ThreadProc {
                    process,
                    thread: t as u32,
                }),
                Exec::Thread,
                Some(os_id),
            );
            e.thread = Some(t);
            e.prior_gflops = crate::sched::THREAD_PRIOR_GFLOPS;
            procs.push(e);
        }
        #[cfg(feature = "wgpu")]
        let mut gpus = vec![None; procs.len()];
        #[cfg(feature = "wgpu")]
        let mut gpu_memory = Vec::new();
        #[cfg(feature = "wgpu")]
        if self.gpus {
            let software = self.software_gpus.unwrap_or_else(|| {
                std::env::var("DAGGER_SOFTWARE_GPU").is_ok_and(|v| v.trim() == "1")
            });
            let all = match self.gpu_budget {
                Some(b) => Some(b),
                None => match std::env::var("DAGGER_GPU_MEMORY_BUDGET") {
                    Ok(s) => Some(crate::storage::parse_limit(&s).map_err(|e| {
                        BuildError::GpuMemoryBudget(format!("DAGGER_GPU_MEMORY_BUDGET={s:?}: {e}"))
                    })?),
                    Err(_) => None,
                },
            };
            let budget = |i: usize, d: &dagger_wgpu::DeviceInfo| match self
                .gpu_budgets
                .iter()
                .find(|(k, _)| *k == i)
            {
                Some((_, b)) => *b,
                None => all.unwrap_or(Some(crate::processor::wgpu::default_budget(d))),
            };
            for p in crate::processor::wgpu::discover(software, &budget) {
                let id = ProcessorId::new(process, procs.len() as u32);
                let info = p.info().clone();
                tracing::debug!(
                    processor = %id,
                    backend = %info.backend,
                    adapter = %info.name,
                    software = info.is_software,
                    default_enabled = p.default_enabled(),
                    "found GPU {}",
                    info.index
                );
                p.memory.attach(&store);
                let memory = p.memory.clone();
                let probe: GpuMemoryProbe = Arc::new(move || memory.stats());
                gpu_memory.push((info.index, probe));
                let mut e = entry(id, Arc::new(p), Exec::Device, Some(os_id));
                e.gpu = Some(info.index);
                e.backend = Some(info.backend.clone());
                procs.push(e);
                gpus.push(Some(info));
            }
        }
        #[cfg(not(feature = "wgpu"))]
        let _ = (
            self.gpus,
            self.software_gpus,
            self.gpu_budget,
            self.gpu_budgets,
        );
        for p in self.custom {
            let id = ProcessorId::new(process, procs.len() as u32);
            procs.push(entry(id, p, Exec::Device, Some(os_id)));
        }
        for spec in self.processes {
            let os = ProcessorId::new(spec.process, procs.len() as u32);
            procs.push(entry(os, spec.os, Exec::None, None));
            for p in spec.procs {
                let id = ProcessorId::new(spec.process, procs.len() as u32);
                let mut e = entry(id, p.proc, Exec::Device, Some(os));
                // Another rank's processor: its launch encodes the task and sends it.
                e.launch_inline = true;
                e.thread = p.thread;
                e.gpu = p.gpu;
                e.backend = p.backend;
                procs.push(e);
            }
        }
        #[cfg(feature = "wgpu")]
        gpus.resize(procs.len(), None);
        Ok(Context {
            inner: Arc::new(ContextInner {
                rt: {
                    let rt = Runtime::new(procs, store);
                    rt.set_spin(self.spin);
                    rt
                },
                checkpoints: Default::default(),
                _attached: self.attached,
                #[cfg(feature = "wgpu")]
                gpus,
                #[cfg(feature = "wgpu")]
                gpu_memory,
            }),
        })
    }
}

fn entry(
    id: ProcessorId,
    proc: Arc<dyn Processor>,
    exec: Exec,
    parent: Option<ProcessorId>,
) -> ProcEntry {
    ProcEntry {
        id,
        kind: proc.kind(),
        description: proc.description(),
        default_enabled: proc.default_enabled(),
        space: proc.memory_space(),
        capacity: proc.capacity().max(1),
        prior_gflops: proc.prior_gflops().max(1e-9),
        proc,
        exec,
        parent,
        thread: None,
        gpu: None,
        backend: None,
        launch_inline: false,
    }
}

impl Context {
    /// A context with one CPU thread per core.
    pub fn new() -> Result<Context, BuildError> {
        Context::builder().build()
    }

    /// Configures a context.
    pub fn builder() -> ContextBuilder {
        ContextBuilder {
            threads: None,
            custom: Vec::new(),
            gpus: true,
            software_gpus: None,
            memory_limit: None,
            gpu_budget: None,
            gpu_budgets: Vec::new(),
            spill_dir: None,
            remote_timeout: None,
            processes: Vec::new(),
            attached: Vec::new(),
            spin: true,
        }
    }

    /// Limits how many threads beyond one per processor the context keeps for tasks that
    /// wait inside tasks (`None`: no limit, the default). A nested wait runs the awaited
    /// task inline when it is ready and has not started; otherwise the waiting task gives
    /// its processor to another thread. When no thread can be had (the limit, or the
    /// system refusing a new thread), the waiting task fails with an error saying so, and
    /// the context carries on.
    ///
    /// ```
    /// use dagger::prelude::*;
    /// let ctx = Context::builder().threads(1).build()?;
    /// ctx.set_spare_thread_limit(Some(0));
    /// // The nested task is ready when fetched, so it runs inline: no thread needed.
    /// let c = ctx.clone();
    /// assert_eq!(ctx.spawn(move || c.spawn(|| 2, ()).fetch().unwrap() + 1, ()).fetch()?, 3);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn set_spare_thread_limit(&self, limit: Option<usize>) {
        self.rt().set_spare_limit(limit);
    }

    pub(crate) fn rt(&self) -> &Arc<Runtime> {
        &self.inner.rt
    }

    /// What was attached to the context when it was built, of type `T`.
    pub(crate) fn attachment<T: 'static>(&self) -> Option<&T> {
        self.inner
            ._attached
            .iter()
            .find_map(|a| a.downcast_ref::<T>())
    }

    // ----- processors ---------------------------------------------------------------------

    /// Every processor, the [`OsProc`] first.
    pub fn processors(&self) -> Vec<ProcessorInfo> {
        let rt = self.rt();
        rt.procs
            .iter()
            .map(|p| ProcessorInfo {
                id: p.id,
                kind: p.kind,
                description: p.description.clone(),
                parent: p.parent,
                children: rt
                    .procs
                    .iter()
                    .filter(|c| c.parent == Some(p.id))
                    .map(|c| c.id)
                    .collect(),
                memory_space: p.space,
                default_enabled: p.default_enabled,
                #[cfg(feature = "wgpu")]
                gpu: self.inner.gpus[p.id.index()].clone(),
            })
            .collect()
    }

    /// The wgpu device behind GPU `index` (as [`Scope::gpu`] numbers them), for work outside
    /// the scheduler: direct launches, timing, or simulating a device loss in tests.
    #[cfg(feature = "wgpu")]
    pub fn gpu_device(&self, index: usize) -> Option<dagger_wgpu::Device> {
        self.rt()
            .procs
            .iter()
            .find(|p| p.gpu == Some(index) && p.id.process() == 1)
            .map(|_| {
                crate::processor::wgpu::devices().devices[index]
                    .device
                    .clone()
            })
    }

    /// How the memory of GPU `index` fared under its budget in this context: the budget,
    /// the bytes on the device, evictions, and the bytes moved to host memory and back to
    /// stay under it. `None` when the context has no such GPU.
    ///
    /// ```
    /// use dagger::prelude::*;
    /// let ctx = Context::builder().threads(1).build()?;
    /// if let Some(s) = ctx.gpu_memory_stats(0) {
    ///     assert_eq!(s.device, 0);
    ///     assert!(s.resident_bytes <= s.budget_bytes.unwrap_or(u64::MAX));
    /// }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[cfg(feature = "wgpu")]
    pub fn gpu_memory_stats(&self, index: usize) -> Option<crate::GpuMemoryStats> {
        self.inner
            .gpu_memory
            .iter()
            .find(|(i, _)| *i == index)
            .map(|(_, stats)| stats())
    }

    /// The GPU adapters that were found but could not be opened, with the reason.
    pub fn gpu_errors(&self) -> Vec<String> {
        #[cfg(feature = "wgpu")]
        return crate::processor::wgpu::devices().errors.clone();
        #[cfg(not(feature = "wgpu"))]
        Vec::new()
    }

    /// The identifiers of the processors of one kind.
    pub fn processors_of_kind(&self, kind: ProcessorKind) -> Vec<ProcessorId> {
        self.rt()
            .procs
            .iter()
            .filter(|p| p.kind == kind)
            .map(|p| p.id)
            .collect()
    }

    /// The processor with this identifier.
    pub fn processor(&self, id: ProcessorId) -> Option<Arc<dyn Processor>> {
        self.rt()
            .procs
            .iter()
            .find(|p| p.id == id)
            .map(|p| p.proc.clone())
    }

    /// The number of CPU worker threads.
    pub fn num_threads(&self) -> usize {
        self.rt().thread_slots.len()
    }

    /// The processors of `scope` that take tasks now (Dagger.jl's `compatible_processors`):
    /// ones that run tasks (not the [`OsProc`]), are enabled and are available.
    ///
    /// ```
    /// use dagger::prelude::*;
    /// let ctx = Context::builder().threads(3).gpus(false).build()?;
    /// assert_eq!(ctx.num_processors(&Scope::default()), 3);
    /// assert_eq!(ctx.compatible_processors(&Scope::threads(1..)).len(), 2);
    /// let t0 = ctx.processors_of_kind(dagger::ProcessorKind::Thread)[0];
    /// ctx.disable_processor(t0)?;
    /// assert_eq!(ctx.num_processors(&Scope::cpu()), 2);
    /// ctx.enable_processor(t0)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn compatible_processors(&self, scope: &Scope) -> Vec<ProcessorId> {
        let rt = self.rt();
        rt.procs
            .iter()
            .enumerate()
            .filter(|(i, p)| {
                p.exec != Exec::None
                    && rt.is_enabled(*i)
                    && (p.exec != Exec::Device || p.available())
                    && scope.contains(&p.view())
            })
            .map(|(_, p)| p.id)
            .collect()
    }

    /// How many processors of `scope` take tasks now (Dagger.jl's `num_processors`); see
    /// [`compatible_processors`](Self::compatible_processors).
    pub fn num_processors(&self, scope: &Scope) -> usize {
        self.compatible_processors(scope).len()
    }

    /// Takes processor `id` out of service while the context runs (Dagger.jl's
    /// `rmprocs!`): the tasks running there finish, and no new task goes there — tasks
    /// are placed on the other processors of their scope, and a task that can run only
    /// there waits until it is enabled again. Disabling a disabled processor does nothing.
    ///
    /// ```
    /// use dagger::prelude::*;
    /// let ctx = Context::builder().threads(2).build()?;
    /// let [t0, t1] = ctx.processors_of_kind(dagger::ProcessorKind::Thread)[..] else { panic!() };
    /// ctx.disable_processor(t0)?;
    /// for _ in 0..20 {
    ///     assert_eq!(ctx.spawn(dagger::task_processor, ()).fetch()?, Some(t1));
    /// }
    /// let err = ctx.spawn_with(Options::new().scope(Scope::thread(0)), || 1, ()).fetch();
    /// assert!(err.unwrap_err().to_string().contains("disabled"));
    /// ctx.enable_processor(t0)?;
    /// assert!(ctx.is_enabled(t0));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn disable_processor(&self, id: ProcessorId) -> Result<(), UnknownProcessor> {
        let s = self.slot_of(id)?;
        self.rt().set_enabled(s, false);
        Ok(())
    }

    /// Puts processor `id` back in service (Dagger.jl's `addprocs!` for a processor the
    /// context was built with): new tasks may go there again, and tasks waiting for it run.
    pub fn enable_processor(&self, id: ProcessorId) -> Result<(), UnknownProcessor> {
        let s = self.slot_of(id)?;
        self.rt().set_enabled(s, true);
        Ok(())
    }

    /// Whether processor `id` takes new tasks (false for unknown ones).
    pub fn is_enabled(&self, id: ProcessorId) -> bool {
        self.slot_of(id).is_ok_and(|s| self.rt().is_enabled(s))
    }

    /// The processors of `scope` that take tasks now and run closures.
    pub(crate) fn closure_processors(&self, scope: &Scope) -> Vec<ProcessorId> {
        let probe = TaskInfo {
            id: 0,
            name: "closure".into(),
            function: "closure",
            input_types: Vec::new(),
            host_closure: true,
            kernel: None,
            portable: false,
        };
        self.compatible_processors(scope)
            .into_iter()
            .filter(|id| {
                let p = &self.rt().procs[id.index()];
                p.exec == Exec::Thread || p.proc.is_compatible(&probe)
            })
            .collect()
    }

    fn slot_of(&self, id: ProcessorId) -> Result<usize, UnknownProcessor> {
        let rt = self.rt();
        rt.procs
            .iter()
            .position(|p| p.id == id)
            .ok_or(UnknownProcessor {
                id,
                count: rt.procs.len(),
            })
    }

    /// The processors a scope resolves to here, or why it resolves to none.
    pub fn resolve_scope(&self, scope: &Scope) -> Result<Vec<ProcessorId>, crate::ScheduleError> {
        let rt = self.rt();
        let ids: Vec<ProcessorId> = rt
            .procs
            .iter()
            .filter(|p| scope.contains(&p.view()))
            .map(|p| p.id)
            .collect();
        if ids.is_empty() {
            return Err(crate::ScheduleError::NoProcessor {
                scope: scope.to_string(),
                considered: rt
                    .procs
                    .iter()
                    .map(|p| {
                        (
                            format!("{} [{}]", p.description, p.id),
                            "outside the scope".into(),
                        )
                    })
                    .collect(),
            });
        }
        Ok(ids)
    }

    // ----- tasks ----------------------------------------------------------------------------

    /// Spawns `f(args...)` as a task and returns its handle at once.
    ///
    /// Each argument is a plain value, a `&DTask<U>`, a `&Chunk<U>` or a `&Thunk<U>` (see
    /// [`IntoArg`](crate::IntoArg)); `f` receives typed values. A panic in `f` fails the
    /// task. Options come from the enclosing [`with_options`](crate::with_options) blocks and
    /// the function's defaults.
    #[track_caller]
    pub fn spawn<A, F, R>(&self, f: F, args: A) -> DTask<R>
    where
        A: TaskArgs,
        F: TaskFn<A::Outs, R>,
        R: Send + Sync + 'static,
    {
        self.spawn_with(Options::new(), f, args)
    }

    /// [`spawn`](Self::spawn) with options for this call, which override all others.
    #[track_caller]
    pub fn spawn_with<A, F, R>(&self, opts: Options, f: F, args: A) -> DTask<R>
    where
        A: TaskArgs,
        F: TaskFn<A::Outs, R>,
        R: Send + Sync + 'static,
    {
        let mut deps = Deps::default();
        let getters = args.register(&mut deps);
        let body = crate::task::args::body::<A, F, R>(getters, f);
        DTask::from_core(self.submit(
            crate::sched::fn_or_call_site(
                std::any::type_name::<F>(),
                std::panic::Location::caller(),
            ),
            TypeId::of::<F>(),
            opts,
            deps,
            body,
        ))
    }

    /// Spawns a fallible function: an `Err` it returns fails the task (and its dependents),
    /// naming the task, the processor and the error.
    ///
    /// ```
    /// use dagger::prelude::*;
    /// let ctx = Context::builder().threads(1).build()?;
    /// let t = ctx.try_spawn(|s: String| s.parse::<i32>(), ("12x".to_string(),));
    /// let err = t.fetch().unwrap_err();
    /// assert!(err.to_string().contains("invalid digit"));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[track_caller]
    pub fn try_spawn<A, F, R, E>(&self, f: F, args: A) -> DTask<R>
    where
        A: TaskArgs,
        F: TaskFn<A::Outs, Result<R, E>>,
        R: Send + Sync + 'static,
        E: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        self.try_spawn_with(Options::new(), f, args)
    }

    /// [`try_spawn`](Self::try_spawn) with options for this call.
    #[track_caller]
    pub fn try_spawn_with<A, F, R, E>(&self, opts: Options, f: F, args: A) -> DTask<R>
    where
        A: TaskArgs,
        F: TaskFn<A::Outs, Result<R, E>>,
        R: Send + Sync + 'static,
        E: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let mut deps = Deps::default();
        let getters = args.register(&mut deps);
        let body = crate::task::args::try_body::<A, F, R, E>(getters, f);
        DTask::from_core(self.submit(
            crate::sched::fn_or_call_site(
                std::any::type_name::<F>(),
                std::panic::Location::caller(),
            ),
            TypeId::of::<F>(),
            opts,
            deps,
            body,
        ))
    }

    /// Creates, registers and (if ready) enqueues a task.
    pub(crate) fn submit(
        &self,
        fn_name: &'static str,
        fn_type: TypeId,
        call_opts: Options,
        deps: Deps,
        body: Body,
    ) -> Arc<TaskCore> {
        self.submit_kernel(fn_name, fn_type, call_opts, deps, Some(body), None)
    }

    /// [`submit`](Self::submit) for a kernel task (`kernel` set): `body` is its host body,
    /// by default the kernel's CPU implementation with the call's parameters.
    pub(crate) fn submit_kernel(
        &self,
        fn_name: &'static str,
        fn_type: TypeId,
        call_opts: Options,
        deps: Deps,
        body: Option<Body>,
        kernel: Option<KernelCall>,
    ) -> Arc<TaskCore> {
        let portable = kernel.is_some();
        self.submit_task(fn_name, fn_type, call_opts, deps, body, kernel, portable)
    }

    /// [`submit_kernel`](Self::submit_kernel), saying whether the task may run in another
    /// process (`portable`: all its arguments are inputs and `fn_name` names a function
    /// registered there).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn submit_task(
        &self,
        fn_name: &'static str,
        fn_type: TypeId,
        call_opts: Options,
        deps: Deps,
        body: Option<Body>,
        kernel: Option<KernelCall>,
        portable: bool,
    ) -> Arc<TaskCore> {
        let rt = self.rt();
        let opts = effective_options(fn_type, call_opts);
        debug_assert!(deps.accesses.is_empty(), "accesses are taken by the region");
        let name = match opts.as_ref().and_then(|o| o.get_name()) {
            Some(n) => TaskName::Shared(n.into()),
            None => TaskName::Static(fn_name),
        };
        let occupancy = opts
            .as_ref()
            .and_then(|o| o.get_occupancy())
            .map(|o| (o * FULL_OCCUPANCY as f64).round() as u32)
            .unwrap_or(FULL_OCCUPANCY);
        let mut inputs = smallvec::SmallVec::with_capacity(deps.list.len());
        let mut body = body;
        let restored = match opts.as_ref().and_then(|o| o.get_checkpoint()) {
            Some(dir) if kernel.is_none() => self.checkpointed(dir, name.as_str(), &mut body),
            _ => false,
        };
        // A task restored from its checkpoint waits for nothing.
        let deps_list = if restored {
            Default::default()
        } else {
            deps.list
        };
        for d in deps_list {
            inputs.push(match d {
                Dep::Task(t) => Input::Task(t),
                Dep::Data(d) => Input::Data(d),
                Dep::Lazy { node, spawn } => Input::Task(spawn(self, &node)),
            });
        }
        let n_args = inputs.len();
        if !restored {
            inputs.extend(deps.after.into_iter().map(Input::Task));
        }
        let task_scope = opts.as_ref().and_then(|o| o.get_scope());
        // Arguments pinned to scopes narrow where the task may run.
        let pinned = deps.scopes;
        let combined = (!pinned.is_empty()).then(|| {
            pinned
                .iter()
                .fold(task_scope.cloned().unwrap_or_default(), |s, (_, p)| {
                    s.constrain(p)
                })
        });
        let scope = combined.as_ref().or(task_scope);
        let kernel = kernel.map(Arc::new);
        let body = body.or_else(|| {
            let k = kernel.as_ref()?;
            k.kernel().has(&crate::Backend::CPU).then(|| {
                let k = k.clone();
                let b: Body = Box::new(move |inputs: &mut [Value]| k.run_cpu_owned(inputs));
                b
            })
        });
        let host = body.is_some();
        let kind = TaskKind {
            host,
            kernel: kernel.as_deref(),
            portable,
        };
        let candidates = resolve_candidates(rt, scope, &kind, || TaskInfo {
            id: 0,
            name: name.as_str().to_owned(),
            function: fn_name,
            input_types: inputs[..n_args].iter().map(input_type_name).collect(),
            host_closure: host,
            kernel: kernel.clone(),
            portable,
        });
        let candidates = match candidates {
            Ok(c) => c,
            Err(error) => {
                let error = if pinned.is_empty() {
                    error
                } else {
                    crate::ScheduleError::ChunkScopes {
                        scope: task_scope.cloned().unwrap_or_default().to_string(),
                        pinned: pinned.iter().map(|(i, s)| (*i, s.to_string())).collect(),
                        source: Box::new(error),
                    }
                };
                return Arc::new(TaskCore::failed(name, |task| TaskError::Schedule {
                    task,
                    error,
                }));
            }
        };
        // Tasks placed by cost learn their run times under it; under a memory limit kernels
        // (array blocks) learn the size of their outputs, to make room for the next one
        // before it runs.
        let keyed = match &candidates {
            Candidates::Set(set) => set.len() > 1,
            _ => false,
        } || (kernel.is_some() && self.rt().store.limited());
        let cost_key = keyed.then(|| {
            let sig: smallvec::SmallVec<[&'static str; 4]> =
                inputs[..n_args].iter().map(input_type_name).collect();
            let key = CostKey::new(fn_type, &sig);
            // Kernels share one function type per parameter and element type; their
            // names tell them apart.
            match &kernel {
                Some(k) => key.named(k.kernel().name()),
                None => key,
            }
        });
        let time_hint_ns = opts
            .as_ref()
            .and_then(|o| o.get_time_hint())
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        let high = opts
            .as_ref()
            .is_some_and(|o| o.get_priority() == Some(crate::Priority::High));
        let body = body.unwrap_or_else(|| {
            Box::new(|_: &mut [Value]| {
                Err(TaskFailure::msg("this kernel has no CPU implementation"))
            })
        });
        let task = Arc::new(
            TaskCore::new(
                name,
                occupancy,
                Work {
                    body,
                    inputs,
                    n_args,
                    opts,
                    candidates,
                    fn_name,
                    host,
                    kernel,
                    portable,
                    cost_key,
                    time_hint_ns,
                    placed_est_ns: None,
                },
            )
            .high_priority(high),
        );
        rt.submit(&task);
        task
    }

    /// Spawns a kernel task: `kernel` with `params` over the array `inputs`, on a GPU or —
    /// when the kernel has a CPU implementation — a CPU thread or any processor that runs
    /// CPU implementations, whichever the scope allows and the cost model prefers. The
    /// result stays on the device it was computed on until something else needs it.
    ///
    /// A number of inputs other than the kernel declares is a
    /// [`KernelArgsError`](crate::KernelArgsError) here, at the call; nothing is spawned.
    pub fn spawn_kernel<P, T>(
        &self,
        kernel: &crate::WgslKernel<P, T>,
        params: P,
        inputs: impl IntoIterator<Item = crate::KernelArg<T>>,
    ) -> Result<DTask<Vec<T>>, crate::KernelArgsError>
    where
        P: bytemuck::Pod + Send + Sync,
        T: crate::GpuScalar,
    {
        self.spawn_kernel_with(Options::new(), kernel, params, inputs)
    }

    /// [`spawn_kernel`](Self::spawn_kernel) with options for this call.
    pub fn spawn_kernel_with<P, T>(
        &self,
        opts: Options,
        kernel: &crate::WgslKernel<P, T>,
        params: P,
        inputs: impl IntoIterator<Item = crate::KernelArg<T>>,
    ) -> Result<DTask<Vec<T>>, crate::KernelArgsError>
    where
        P: bytemuck::Pod + Send + Sync,
        T: crate::GpuScalar,
    {
        let mut deps = Deps::default();
        for a in inputs {
            if let Some(s) = a.scope {
                deps.scopes.push((deps.list.len(), s));
            }
            deps.list.push(a.dep);
        }
        let opts = if opts.get_name().is_none() {
            opts.name(kernel.name())
        } else {
            opts
        };
        kernel.check_count(deps.list.len())?;
        Ok(DTask::from_core(self.submit_kernel(
            std::any::type_name::<crate::WgslKernel<P, T>>(),
            TypeId::of::<crate::WgslKernel<P, T>>(),
            opts,
            deps,
            None,
            Some(kernel.kernel().call(Value::new(params))),
        )))
    }

    // ----- data --------------------------------------------------------------------------------

    /// Places `value` in host memory as a [`Chunk`].
    ///
    /// Under the context's memory limit, a large value of a registered type may be spilled
    /// to disk while no task uses it (see [`storage`](crate::storage)).
    pub fn to_chunk<T: Send + Sync + 'static>(&self, value: T) -> Chunk<T> {
        Chunk::from_data(Data::stored(Value::new(value), &self.rt().store))
    }

    /// Writes `task`'s result to a new file at `path` when it is ready (Dagger.jl's
    /// `tofile`), in the format of [`Chunk::save`], and gives a [`File`](crate::File) that
    /// reads it back: pass it to later tasks, which read the file when they run. The file is
    /// created new: an existing file (or link) at `path` fails the task, nothing is written
    /// over. The type must be registered ([`storage::register`](crate::storage::register);
    /// numeric vectors and arrays are); [`tofile_with`](Self::tofile_with) takes a writer
    /// and reader of one's own.
    ///
    /// ```
    /// use dagger::prelude::*;
    /// let path = std::env::temp_dir().join(format!("dagger-tofile-doc-{}", std::process::id()));
    /// let ctx = Context::builder().threads(2).build()?;
    /// let squares = ctx.spawn(|| (0..1000u32).map(|i| i * i).collect::<Vec<_>>(), ());
    /// let file = ctx.tofile(&squares, &path);
    /// let sum = ctx.spawn(|v: Vec<u32>| v.iter().map(|&x| x as u64).sum::<u64>(), (file.fetch()?,));
    /// assert_eq!(sum.fetch()?, 332_833_500);
    /// # std::fs::remove_file(&path)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[track_caller]
    pub fn tofile<T: Send + Sync + 'static>(
        &self,
        task: &DTask<T>,
        path: impl AsRef<std::path::Path>,
    ) -> DTask<crate::File<T>> {
        let path = path.as_ref().to_path_buf();
        self.try_spawn_with(
            Options::new().name("tofile"),
            move |v: Arc<T>| -> Result<crate::File<T>, crate::storage::StorageError> {
                crate::storage::save_value(&Value::from_arc(v), &path)?;
                Ok(crate::File::saved(&path))
            },
            (task.shared(),),
        )
    }

    /// [`tofile`](Self::tofile) with a writer of one's own, and the reader that the
    /// returned [`File`](crate::File) reads it back with.
    #[track_caller]
    pub fn tofile_with<T: Send + Sync + 'static>(
        &self,
        task: &DTask<T>,
        path: impl AsRef<std::path::Path>,
        writer: impl Fn(&T, &mut dyn std::io::Write) -> std::io::Result<()> + Send + Sync + 'static,
        reader: impl Fn(&std::path::Path) -> std::io::Result<T> + Send + Sync + 'static,
    ) -> DTask<crate::File<T>> {
        let path = path.as_ref().to_path_buf();
        let reader = Arc::new(reader);
        self.try_spawn_with(
            Options::new().name("tofile"),
            move |v: Arc<T>| -> Result<crate::File<T>, crate::storage::StorageError> {
                let err = |what| {
                    let path = path.clone();
                    move |source| crate::storage::StorageError::Io { what, path, source }
                };
                let f = std::fs::File::options()
                    .write(true)
                    .create_new(true)
                    .open(&path)
                    .map_err(err("creating (files are never written over)"))?;
                let mut w = std::io::BufWriter::new(f);
                writer(&v, &mut w)
                    .and_then(|_| std::io::Write::flush(&mut w))
                    .map_err(err("writing"))?;
                let reader = reader.clone();
                Ok(crate::File::open(&path, move |p| reader(p)))
            },
            (task.shared(),),
        )
    }

    /// A chunk whose value stays in the file saved at `path` (by [`Chunk::save`] or
    /// [`tofile`](Self::tofile)) until something reads it, and is read from there again
    /// whenever the memory limit dropped it: a chunk that lives in a file. The header is
    /// checked now (the file must hold a `T`); the file is never modified or removed.
    ///
    /// ```
    /// use dagger::prelude::*;
    /// let path = std::env::temp_dir().join(format!("dagger-open-doc-{}", std::process::id()));
    /// Chunk::new(vec![2.0f32; 1 << 16]).save(&path)?;
    /// let ctx = Context::builder().threads(1).build()?;
    /// let c = ctx.open_chunk::<Vec<f32>>(&path)?;
    /// assert!(c.is_on_disk());
    /// let sum = ctx.spawn(|v: std::sync::Arc<Vec<f32>>| v.iter().sum::<f32>(), (c.shared(),));
    /// assert_eq!(sum.fetch()?, 131072.0);
    /// assert!(ctx.open_chunk::<Vec<u8>>(&path).is_err(), "it holds f32s");
    /// # drop(c);
    /// # std::fs::remove_file(&path)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn open_chunk<T: Send + Sync + 'static>(
        &self,
        path: impl AsRef<std::path::Path>,
    ) -> Result<Chunk<T>, crate::storage::StorageError> {
        let path = path.as_ref();
        let saved = crate::storage::open_saved(path, std::any::type_name::<T>())?;
        let slot = self.rt().store.open_file(
            path.to_path_buf(),
            saved.offset,
            saved.len,
            std::any::type_name::<T>(),
            saved.codec,
        );
        Ok(Chunk::from_data(Data::managed(slot)))
    }

    /// How the context's host memory fared: its limit, what managed values hold now and at
    /// most, and what was spilled to disk and read back (see [`storage`](crate::storage)).
    ///
    /// ```
    /// use dagger::prelude::*;
    /// let ctx = Context::builder().threads(1).memory_limit(1 << 20).build()?;
    /// let a = ctx.to_chunk(vec![0u8; 600 << 10]);
    /// let b = ctx.to_chunk(vec![1u8; 600 << 10]); // a goes to disk to make room
    /// let s = ctx.memory_stats();
    /// assert_eq!((s.spills, s.resident_bytes), (1, 600 << 10));
    /// assert_eq!(a.collect()?[0], 0); // read back, b goes to disk
    /// assert_eq!(ctx.memory_stats().reloads, 1);
    /// # drop(b);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn memory_stats(&self) -> crate::storage::MemoryStats {
        self.rt().store.stats()
    }

    /// Free disk space where the context spills, or `None` when it does not spill (no
    /// memory limit).
    pub(crate) fn spill_room(&self) -> Option<u64> {
        self.rt().store.spill_room()
    }

    /// Places `value` in the memory space of processor `proc`, through its
    /// [`move_in`](Processor::move_in).
    pub fn to_chunk_on<T: Send + Sync + 'static>(
        &self,
        value: T,
        proc: ProcessorId,
    ) -> Result<Chunk<T>, MoveError> {
        let value = Value::new(value);
        let Some(p) = self.rt().procs.iter().find(|p| p.id == proc) else {
            return Err(MoveError::Failed {
                type_name: value.type_name(),
                from: MemorySpace::LOCAL_HOST,
                to: MemorySpace::LOCAL_HOST,
                source: format!(
                    "processor {proc} is not one of this context's {} processors",
                    self.rt().procs.len()
                )
                .into(),
            });
        };
        let v = p.proc.move_in(MemorySpace::LOCAL_HOST, value)?;
        Ok(Chunk::from_data(Data::on(v, p.space, &p.proc)))
    }

    /// Places `value` in the memory space of processor `proc` and pins it to `scope`
    /// (Dagger.jl's `tochunk(x, proc, scope)`): tasks taking it run only inside `scope`.
    ///
    /// ```
    /// use dagger::prelude::*;
    /// let ctx = Context::builder().threads(2).build()?;
    /// let t1 = ctx.processors_of_kind(dagger::ProcessorKind::Thread)[1];
    /// let c = ctx.to_chunk_in(vec![1u8, 2], t1, Scope::exact(t1))?;
    /// assert_eq!(c.scope(), Some(&Scope::exact(t1)));
    /// let where_ran = ctx.spawn(|_: Vec<u8>| dagger::task_processor(), (&c,));
    /// assert_eq!(where_ran.fetch()?, Some(t1));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn to_chunk_in<T: Send + Sync + 'static>(
        &self,
        value: T,
        proc: ProcessorId,
        scope: Scope,
    ) -> Result<Chunk<T>, MoveError> {
        Ok(self.to_chunk_on(value, proc)?.with_scope(scope))
    }

    // ----- logging -------------------------------------------------------------------------------

    /// Starts recording an event per task (and per data move) for [`fetch_logs`](Self::fetch_logs).
    pub fn enable_logging(&self) {
        self.rt().log.set_enabled(true);
    }

    /// Stops recording events.
    pub fn disable_logging(&self) {
        self.rt().log.set_enabled(false);
    }

    /// Shows a progress bar (tasks done of spawned, rate, ETA) on standard error while tasks
    /// are outstanding, when standard error is a terminal. Off by default.
    pub fn progress(&self, on: bool) {
        crate::sched::progress::set(self.rt(), on);
    }

    /// Takes the events recorded so far, sorted by start time.
    pub fn fetch_logs(&self) -> Vec<LogEvent> {
        self.rt().log.drain()
    }

    /// How each processor fared in cost-based placement since logging was enabled (or
    /// since the last call): how often it was a candidate, how often it won, and the mean
    /// run time the cost model estimated for it. It explains why a processor that was
    /// offered work got none — typically a software GPU that the model (after measuring
    /// it) expects to be slower than the CPU threads. Tasks placed without a cost decision
    /// (closures on CPU threads, which steal from each other) are not counted.
    ///
    /// ```
    /// use dagger::prelude::*;
    /// let ctx = Context::builder().threads(2).build()?;
    /// ctx.enable_logging();
    /// let a = DArray::<f32>::ones(&ctx, [64, 64], Blocks::new([32, 32]))?;
    /// a.matmul(&a)?.wait()?;
    /// for p in ctx.fetch_placements() {
    ///     assert!(p.chosen <= p.offered);
    ///     println!("{}: offered {}, chose {}, est. {} ns", p.processor, p.offered, p.chosen, p.mean_estimate_ns);
    /// }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn fetch_placements(&self) -> Vec<crate::log::Placement> {
        self.rt().take_placements()
    }
}

/// The type of an input's value if known yet (a pending task's is not).
fn input_type_name(i: &Input) -> &'static str {
    match i {
        Input::Task(t) => t
            .result
            .get()
            .and_then(|r| r.as_ref().ok())
            .map(|d| d.type_name())
            .unwrap_or("pending"),
        Input::Data(d) => d.type_name(),
    }
}

impl Context {
    /// Applies a checkpoint in `dir` to a task named `name` with host body `body`: a body
    /// loading the saved result when there is one (returns true), else one saving it.
    fn checkpointed(
        &self,
        dir: &std::path::Path,
        name: &str,
        body: &mut Option<crate::processor::Body>,
    ) -> bool {
        let Some(run) = body.take() else {
            return false;
        };
        let key = {
            let mut seen = self.inner.checkpoints.lock();
            let n = seen.entry((Arc::from(dir), name.to_owned())).or_insert(0);
            *n += 1;
            match *n {
                1 => name.to_owned(),
                k => format!("{name}.{}", k - 1),
            }
        };
        let file: String = key
            .chars()
            .map(|c| {
                if c.is_alphanumeric() || "-_.".contains(c) {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let path = dir.join(format!("{file}.ckpt"));
        let fail = |e: crate::storage::StorageError| TaskFailure::Error(Box::new(e));
        if path.is_file() {
            tracing::debug!(task = %key, path = %path.display(), "restoring from a checkpoint");
            *body = Some(Box::new(move |_: &mut [Value]| {
                crate::storage::load_value(&path, None).map_err(fail)
            }));
            true
        } else {
            *body = Some(Box::new(move |inputs: &mut [Value]| {
                let v = run(inputs)?;
                crate::storage::save_value_replacing(&v, &path).map_err(fail)?;
                Ok(v)
            }));
            false
        }
    }
}

/// Options for a new task: function defaults, then the enclosing blocks, then the call.
fn effective_options(fn_type: TypeId, call: Options) -> Option<Arc<Options>> {
    let fdef = function_defaults(fn_type);
    let cur = current_options();
    if fdef.is_none() && call.is_empty() {
        return cur;
    }
    let mut o = fdef.map(|d| (*d).clone()).unwrap_or_default();
    if let Some(c) = cur {
        o = o.merged_with(&c);
    }
    o = o.merged_with(&call);
    Some(Arc::new(o))
}

/// Runs `f`, making each task it spawns on this thread wait for the one spawned before it
/// (Dagger.jl's `spawn_sequential`): they run in spawn order, one at a time, on any
/// context. A failed task fails those after it. Tasks spawned inside those tasks are not
/// affected.
///
/// ```
/// use std::sync::{Arc, Mutex};
/// use dagger::prelude::*;
/// let ctx = Context::builder().threads(4).build()?;
/// let log = Arc::new(Mutex::new(Vec::new()));
/// let last = dagger::spawn_sequential(|| {
///     (0..20).map(|i| {
///         let log = log.clone();
///         ctx.spawn(move || log.lock().unwrap().push(i), ())
///     }).collect::<Vec<_>>()
/// });
/// last.last().unwrap().fetch()?;
/// assert_eq!(*log.lock().unwrap(), (0..20).collect::<Vec<_>>());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn spawn_sequential<R>(f: impl FnOnce() -> R) -> R {
    crate::sched::task_queue::sequential(f)
}

/// Runs `f`, gathering the tasks it spawns on this thread, and submits them together when
/// it returns (Dagger.jl's `spawn_bulk`): none starts before `f` is done, unless `f` waits
/// for one of them, which submits those gathered so far.
///
/// ```
/// use dagger::prelude::*;
/// let ctx = Context::builder().threads(2).build()?;
/// let tasks = dagger::spawn_bulk(|| {
///     let ts: Vec<_> = (0..10).map(|i| ctx.spawn(move || i * 2, ())).collect();
///     assert!(ts.iter().all(|t| !t.is_ready()), "gathered, not started");
///     ts
/// });
/// let sum: i32 = tasks.iter().map(|t| t.fetch().unwrap()).sum();
/// assert_eq!(sum, 90);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn spawn_bulk<R>(f: impl FnOnce() -> R) -> R {
    crate::sched::task_queue::bulk(f)
}

/// The context used by [`spawn`](crate::spawn), [`Thunk::compute`](crate::Thunk::compute)
/// and friends: created on first use with one thread per core.
pub fn global() -> &'static Context {
    static GLOBAL: OnceLock<Context> = OnceLock::new();
    GLOBAL.get_or_init(|| Context::new().expect("the global context has at least one thread"))
}

/// Spawns a task on the [`global`] context (see [`Context::spawn`]).
///
/// ```
/// let a = dagger::spawn(|| 40, ());
/// let b = dagger::spawn(|a: i32| a + 2, (&a,));
/// assert_eq!(b.fetch().unwrap(), 42);
/// ```
#[track_caller]
pub fn spawn<A, F, R>(f: F, args: A) -> DTask<R>
where
    A: TaskArgs,
    F: TaskFn<A::Outs, R>,
    R: Send + Sync + 'static,
{
    global().spawn(f, args)
}
