//! Kernel tasks in a datadeps region, and the versions that carry their data between memory
//! spaces.
//!
//! A closure task mutates a cell in place on the host, under the cell's lock. A kernel task
//! may run on a GPU instead, so it does not touch the cell: it takes the *current version* of
//! each argument as an input — a value that lives wherever the task that made it ran — and,
//! for the argument it writes, makes a new version (its result). The scheduler moves versions
//! to the processor a task runs on, and each value is copied to a device at most once (a
//! version written on a GPU stays there for the next task on that GPU; one uploaded for a
//! read is cached while the value lives). Versions start from the cell's value (taken out of
//! the cell, not copied) and go back into the cell when a closure task needs it or when the
//! region ends, so afterwards every cell holds the result of the last task that wrote it.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::RwLock;

use super::{Cell, DataRegion, In, InOut, Out, Part};
use crate::chunk::Data;
use crate::error::{CellsRestored, RestoredCell, TaskError, TaskLabel};
use crate::kernel::KernelCall;
use crate::options::Options;
use crate::processor::wgpu::{GpuScalar, WgslKernel};
use crate::processor::{Body, TaskFailure};
use crate::sched::{TaskCore, TaskName};
use crate::scope::Scope;
use crate::task::args::{Dep, Deps};
use crate::task::DTask;
use crate::value::Value;

/// A version of a tracked value: a task's result or a value at hand.
#[derive(Clone)]
pub(crate) enum Version {
    Task(Arc<TaskCore>),
    Data(Data),
}

impl Version {
    fn dep(&self) -> Dep {
        match self {
            Version::Task(t) => Dep::Task(t.clone()),
            Version::Data(d) => Dep::Data(d.clone()),
        }
    }

    /// The value, once its task has finished successfully.
    pub(crate) fn value(&self) -> Option<Data> {
        match self {
            Version::Task(t) => match t.result.get() {
                Some(Ok(d)) => Some(d.clone()),
                _ => None,
            },
            Version::Data(d) => Some(d.clone()),
        }
    }
}

/// A cell's host storage, as versions leave and re-enter it.
trait Home: Send + Sync {
    /// Moves the value out of the cell.
    fn take(&self) -> Value;
    /// Writes a version (a host value) into the cell.
    fn put(&self, v: &Value) -> Result<(), String>;
}

struct VecHome<T>(Arc<RwLock<Vec<T>>>);

impl<T: GpuScalar> Home for VecHome<T> {
    fn take(&self) -> Value {
        Value::new(std::mem::take(&mut *self.0.write()))
    }

    fn put(&self, v: &Value) -> Result<(), String> {
        let v = v.downcast_ref::<Vec<T>>().ok_or_else(|| {
            format!(
                "a version of a `{}` cell is a `{}`",
                std::any::type_name::<Vec<T>>(),
                v.type_name()
            )
        })?;
        let mut cell = self.0.write();
        cell.clear();
        cell.extend_from_slice(v);
        Ok(())
    }
}

/// A value a region tracks by versions: its versions since it was last in its cell (oldest
/// first), and the cell, if it has one.
pub(crate) struct Tracked {
    key: u64,
    versions: Vec<Version>,
    home: Option<Arc<dyn Home>>,
}

impl Tracked {
    fn latest(&self) -> &Version {
        self.versions.last().expect("a tracked value has a version")
    }
}

/// One argument of a kernel task in a region: a cell of a `Vec<T>`, read or written.
///
/// Made from `In(&cell)`, `Out(&cell)`, `InOut(&cell)` or `&cell` (read) with `.into()`.
/// Kernel tasks take whole cells: they may run on another memory space, where a version of
/// the whole value is what moves.
pub struct KernelAccess<T> {
    cell: Cell<Vec<T>>,
    write: bool,
}

impl<T: GpuScalar> From<&Cell<Vec<T>>> for KernelAccess<T> {
    fn from(cell: &Cell<Vec<T>>) -> Self {
        KernelAccess {
            cell: cell.clone(),
            write: false,
        }
    }
}

/// `In` reads the cell; `Out` and `InOut` write it.
macro_rules! access_from {
    ($($wrapper:ident => $write:expr),*) => {$(
        impl<T: GpuScalar> From<$wrapper<&Cell<Vec<T>>>> for KernelAccess<T> {
            fn from(a: $wrapper<&Cell<Vec<T>>>) -> Self {
                KernelAccess {
                    cell: a.0.clone(),
                    write: $write,
                }
            }
        }
    )*};
}
access_from!(In => false, Out => true, InOut => true);

fn failed_task(name: &'static str, message: String) -> Arc<TaskCore> {
    Arc::new(TaskCore::failed(TaskName::Static(name), |task| {
        TaskError::Failed {
            task,
            processor: "none".into(),
            cause: Arc::from(Box::<dyn std::error::Error + Send + Sync>::from(message)),
        }
    }))
}

/// Options of the region's own bookkeeping tasks: on host threads, whatever the scope.
fn host_task(name: &'static str) -> Options {
    Options::new().name(name).scope(Scope::cpu())
}

impl DataRegion<'_> {
    /// Spawns a kernel task over cells: `kernel` with `params`, its array inputs in order
    /// from `args`. An input the kernel binds [`Access::ReadWrite`](crate::Access) must be
    /// passed as [`Out`] or [`InOut`] — it is the argument the task writes — and the others
    /// as [`In`] (or a plain `&cell`).
    ///
    /// The task runs on a GPU or, when the kernel has a CPU implementation, on a CPU thread,
    /// wherever the cost model places it within the scope. It is ordered like any task of the
    /// region (its accesses cover whole cells), reads the latest version of its inputs from
    /// wherever that lives, and leaves its output as the new version of the written cell on
    /// the processor that ran it. When the region ends, every cell holds its latest version
    /// on the host. While the region runs, a cell used by kernel tasks is held by the region
    /// (read it through tasks, not [`Cell::get`]).
    ///
    /// The returned task's value is the written cell's new version. Arguments that do not
    /// fit the kernel's declared inputs — their number, or an access mode — are a
    /// [`KernelArgsError`](crate::KernelArgsError) at the call, and nothing is spawned.
    ///
    /// ```
    /// use dagger::prelude::*;
    /// use dagger::{Access, Cell, In, InOut, WgslKernel};
    ///
    /// let axpy = WgslKernel::<f32, f32>::builder("axpy", "
    ///     @group(0) @binding(0) var<uniform> a: f32;
    ///     @group(0) @binding(1) var<storage, read> x: array<f32>;
    ///     @group(0) @binding(2) var<storage, read_write> y: array<f32>;
    ///     @compute @workgroup_size(64)
    ///     fn main(@builtin(global_invocation_id) id: vec3<u32>) {
    ///         if (id.x < arrayLength(&y)) { y[id.x] += a * x[id.x]; }
    ///     }", "main")
    ///     .inputs([Access::Read, Access::ReadWrite])
    ///     .workgroups(|_, lens| [(lens[1] as u32).div_ceil(64), 1, 1])
    ///     .cpu(|a, ins, y| for (y, x) in y.iter_mut().zip(ins[0]) { *y += a * x })
    ///     .build()?;
    ///
    /// let ctx = Context::builder().threads(2).build()?;
    /// let x = Cell::new(vec![1.0f32, 2.0, 3.0]);
    /// let y = Cell::new(vec![0.0f32; 3]);
    /// ctx.spawn_datadeps(|r| {
    ///     r.spawn_kernel(&axpy, 2.0, [In(&x).into(), InOut(&y).into()])?;
    ///     r.spawn_kernel(&axpy, 1.0, [In(&x).into(), InOut(&y).into()])?;
    ///     // The wrong access mode is an error at the call; nothing is spawned.
    ///     let err = r.spawn_kernel(&axpy, 1.0, [In(&x).into(), In(&y).into()]).unwrap_err();
    ///     assert_eq!(err.to_string(), "kernel `axpy` binds input 1 read_write, so pass it as Out or InOut");
    ///     Ok::<(), dagger::KernelArgsError>(())
    /// })??;
    /// assert_eq!(y.get(), vec![3.0, 6.0, 9.0]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn spawn_kernel<P, T>(
        &mut self,
        kernel: &WgslKernel<P, T>,
        params: P,
        args: impl IntoIterator<Item = KernelAccess<T>>,
    ) -> Result<DTask<Vec<T>>, crate::KernelArgsError>
    where
        P: bytemuck::Pod + Send + Sync + 'static,
        T: GpuScalar,
    {
        self.spawn_kernel_with(Options::new(), kernel, params, args)
    }

    /// [`spawn_kernel`](Self::spawn_kernel) with options.
    pub fn spawn_kernel_with<P, T>(
        &mut self,
        opts: Options,
        kernel: &WgslKernel<P, T>,
        params: P,
        args: impl IntoIterator<Item = KernelAccess<T>>,
    ) -> Result<DTask<Vec<T>>, crate::KernelArgsError>
    where
        P: bytemuck::Pod + Send + Sync + 'static,
        T: GpuScalar,
    {
        let args: Vec<KernelAccess<T>> = args.into_iter().collect();
        kernel.check_count(args.len())?;
        if let Some((index, k)) = args
            .iter()
            .zip(kernel.access())
            .enumerate()
            .find_map(|(i, (a, k))| (a.write != (*k == crate::Access::ReadWrite)).then_some((i, k)))
        {
            return Err(crate::KernelArgsError::Access {
                kernel: kernel.name().to_owned(),
                index,
                read_write: *k == crate::Access::ReadWrite,
            });
        }
        let keys: Vec<(u64, bool)> = args
            .iter()
            .map(|a| {
                let home: Arc<dyn Home> = Arc::new(VecHome(a.cell.lock.clone()));
                self.check_out(a.cell.id, home);
                (a.cell.id, a.write)
            })
            .collect();
        let core = self.submit_versioned(
            kernel.name().to_owned(),
            std::any::TypeId::of::<WgslKernel<P, T>>(),
            opts,
            &keys,
            None,
            Some(kernel.kernel().call(Value::new(params))),
        );
        Ok(DTask::from_core(core))
    }

    /// Starts tracking a value by versions under a new key, `initial` its first version.
    pub(crate) fn track(&mut self, initial: Version) -> u64 {
        let key = super::NEXT_CELL.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.versions.insert(
            key,
            Tracked {
                key,
                versions: vec![initial],
                home: None,
            },
        );
        key
    }

    /// Stops tracking a value that no task submitted later reads or writes (a cell's key is
    /// left as it is). Its latest version is then held only by the tasks already submitted
    /// that read it, and freed once they ran; while tracked, the region would keep it (and
    /// every value it shares memory with) alive to its end.
    pub(crate) fn untrack(&mut self, key: u64) {
        if self.versions.get(&key).is_some_and(|t| t.home.is_none()) {
            self.versions.remove(&key);
            self.history.remove(&key);
        }
    }

    /// The latest version of a tracked value.
    pub(crate) fn latest(&self, key: u64) -> Version {
        self.versions[&key].latest().clone()
    }

    /// Submits a task over tracked values: `args` are (key, writes) in input order; the
    /// task's result becomes the new version of the (at most one) written key. Ordered after
    /// earlier conflicting accesses as any region task.
    pub(crate) fn submit_versioned(
        &mut self,
        name: String,
        fn_type: std::any::TypeId,
        opts: Options,
        args: &[(u64, bool)],
        body: Option<Body>,
        kernel: Option<KernelCall>,
    ) -> Arc<TaskCore> {
        let writes: Vec<u64> = args.iter().filter(|a| a.1).map(|a| a.0).collect();
        let dup = args
            .iter()
            .enumerate()
            .find(|(i, a)| args[..*i].iter().any(|b| b.0 == a.0 && (a.1 || b.1)));
        if writes.len() > 1 || dup.is_some() {
            let core = failed_task(
                "datadeps kernel",
                format!(
                    "kernel `{name}` writes {} arguments{}; a kernel task writes at most one \
                     cell and takes each written cell once",
                    writes.len(),
                    if dup.is_some() {
                        " and takes a written cell twice"
                    } else {
                        ""
                    }
                ),
            );
            self.tasks.push(&core);
            return core;
        }
        let mut deps = Deps::default();
        for &(key, write) in args {
            deps.list.push(self.versions[&key].latest().dep());
            self.order_after(&mut deps, key, &Part::Whole, write);
        }
        let opts = if opts.get_name().is_none() {
            opts.name(name)
        } else {
            opts
        };
        let core = self
            .ctx
            .submit_kernel("datadeps kernel", fn_type, opts, deps, body, kernel);
        for &(key, write) in args {
            self.record(key, Part::Whole, write, &core);
            if write {
                let t = self.versions.get_mut(&key).expect("tracked");
                if t.home.is_none() {
                    // Without a cell to put a version back into, only the latest one is
                    // ever read again: the older ones are freed once their readers ran.
                    t.versions.clear();
                }
                t.versions.push(Version::Task(core.clone()));
            }
        }
        self.tasks.push(&core);
        core
    }

    /// Makes a cell's value a tracked version, unless it is one already: a host task, after
    /// the cell's earlier in-place accesses, takes the value out of the cell.
    fn check_out(&mut self, key: u64, home: Arc<dyn Home>) {
        if self.versions.contains_key(&key) {
            return;
        }
        let mut deps = Deps::default();
        self.order_after(&mut deps, key, &Part::Whole, true);
        let h = home.clone();
        let core = self.bookkeeping("datadeps check-out", key, deps, move |_| Ok(h.take()));
        self.versions.insert(
            key,
            Tracked {
                key,
                versions: vec![Version::Task(core)],
                home: Some(home),
            },
        );
    }

    /// Puts a tracked cell's latest version back into the cell (a host task, moving it from
    /// wherever it is), before in-place accesses.
    pub(super) fn check_in(&mut self, key: u64) {
        let Some(tracked) = self.versions.remove(&key) else {
            return;
        };
        let Some(home) = tracked.home.clone() else {
            self.versions.insert(key, tracked);
            return;
        };
        let mut deps = Deps::default();
        deps.list.push(tracked.latest().dep());
        self.order_after(&mut deps, key, &Part::Whole, true);
        let core = self.bookkeeping("datadeps check-in", key, deps, move |inputs| {
            home.put(&inputs[0]).map_err(TaskFailure::msg)?;
            Ok(Value::new(()))
        });
        self.checked_in.push((core, tracked));
    }

    /// Submits one of the region's own host tasks, moving `key`'s value between its cell and
    /// its versions: a whole-cell write in `key`'s history, waited for at the region's end.
    fn bookkeeping(
        &mut self,
        name: &'static str,
        key: u64,
        deps: Deps,
        body: impl FnOnce(&[Value]) -> Result<Value, TaskFailure> + Send + 'static,
    ) -> Arc<TaskCore> {
        let core = self.ctx.submit_kernel(
            name,
            std::any::TypeId::of::<Tracked>(),
            host_task(name),
            deps,
            Some(Box::new(move |inputs: &mut [Value]| body(inputs))),
            None,
        );
        self.record(key, Part::Whole, true, &core);
        self.internal.push(core.clone());
        core
    }

    /// At the end of a region (every task finished): each tracked cell gets back the newest
    /// version that can still be moved to the host. A version whose task failed, or that
    /// lives only where it can no longer be read (a lost device), leaves the one before it —
    /// at worst the value the cell had before its kernel tasks. The cells that went back are
    /// listed in a [`CellsRestored`] error, with the region's first failure as its source.
    pub(super) fn restore_cells(&mut self) -> Result<(), TaskError> {
        let mut put_err = None;
        let mut restored = Vec::new();
        // A check-in that failed (its version's task failed) left the cell empty; the
        // versions still tracked come after it, so they go back last.
        let failed_check_ins = std::mem::take(&mut self.checked_in)
            .into_iter()
            .filter(|(task, _)| !matches!(task.result.get(), Some(Ok(_))))
            .map(|(_, tracked)| tracked);
        let mut still_tracked: Vec<Tracked> =
            std::mem::take(&mut self.versions).into_values().collect();
        still_tracked.sort_by_key(|t| t.key);
        let tracked: Vec<Tracked> = failed_check_ins.chain(still_tracked).collect();
        for tracked in tracked {
            let Some(home) = &tracked.home else { continue };
            let mut skipped = 0;
            let mut reason = None;
            let mut chosen = None;
            let mut lost = false;
            for (i, version) in tracked.versions.iter().enumerate().rev() {
                let why = match version.value() {
                    Some(data) => match data.to_host() {
                        Ok(v) => {
                            chosen = Some((i, v));
                            break;
                        }
                        Err(e) => {
                            lost = true;
                            error_chain(&e)
                        }
                    },
                    None => match version {
                        Version::Task(t) => match t.result.get() {
                            Some(Err(e)) => error_chain(e.root_cause()),
                            _ => format!("task {} did not finish", t.label()),
                        },
                        Version::Data(_) => unreachable!("a value at hand has a value"),
                    },
                };
                skipped += 1;
                reason.get_or_insert(why);
            }
            // No version at all: the value never left the cell.
            let Some((index, value)) = chosen else {
                continue;
            };
            if let Err(message) = home.put(&value) {
                put_err.get_or_insert(message);
                continue;
            }
            if skipped > 0 {
                restored.push(RestoredCell {
                    cell: tracked.key,
                    version: match &tracked.versions[index] {
                        Version::Task(t) if index > 0 => Some(t.label()),
                        _ => None,
                    },
                    skipped,
                    reason: reason.unwrap_or_default(),
                    lost,
                });
            }
        }
        let label = || TaskLabel {
            id: 0,
            name: "datadeps check-in".into(),
        };
        if !restored.is_empty() {
            let first_failure = self.tasks.first_failure().or_else(|| {
                self.internal
                    .iter()
                    .find_map(|t| t.result.get().and_then(|r| r.as_ref().err().cloned()))
            });
            return Err(TaskError::Failed {
                task: label(),
                processor: "host".into(),
                cause: Arc::new(CellsRestored {
                    cells: restored,
                    first_failure,
                }),
            });
        }
        match put_err {
            Some(message) => Err(TaskError::Failed {
                task: label(),
                processor: "host".into(),
                cause: Arc::from(Box::<dyn std::error::Error + Send + Sync>::from(format!(
                    "putting a cell's latest version back: {message}"
                ))),
            }),
            None => Ok(()),
        }
    }
}

/// An error and its sources, joined by `: `.
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(x) = src {
        s.push_str(": ");
        s.push_str(&x.to_string());
        src = x.source();
    }
    s
}

impl<T> Cell<T> {
    /// The cell's identifier, unique within the process: how [`CellsRestored`] names it.
    ///
    /// ```
    /// use dagger::Cell;
    /// let a = Cell::new(vec![1.0f32]);
    /// assert_eq!(a.id(), a.clone().id());
    /// assert_ne!(a.id(), Cell::new(vec![1.0f32]).id());
    /// ```
    pub fn id(&self) -> u64 {
        self.id
    }
}

/// The values a region tracks by versions, by key.
pub(super) type Versions = HashMap<u64, Tracked>;

/// Check-in tasks with the versions they put back.
pub(super) type CheckedIn = Vec<(Arc<TaskCore>, Tracked)>;
