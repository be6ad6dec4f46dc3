//! Kernels: named operations with an implementation per backend.
//!
//! A [`Kernel`] is registered once under its name with its implementations — a CPU one over
//! host values, a WGSL one for wgpu devices, others for processors of your own — and a
//! flop count. A task that runs a kernel carries a [`KernelCall`] (the kernel and its
//! parameters); each processor looks for the implementation of its backend and the
//! scheduler considers only processors that have one. Because kernels have names, another
//! process running the same program finds the same kernel with [`Kernel::lookup`].
//!
//! Closures are not kernels: they have no name and run on the host threads of the process
//! that made them.

pub(crate) mod tiles;

use std::any::Any;
use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, OnceLock};

use parking_lot::RwLock;

use crate::processor::TaskFailure;
use crate::value::Value;

/// A kind of kernel implementation: what a processor must run to use it.
///
/// ```
/// use dagger::Backend;
/// assert_eq!(Backend::CPU.name(), "cpu");
/// let cuda = Backend::new("cuda");
/// assert_ne!(cuda, Backend::WGSL);
/// ```
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub struct Backend(&'static str);

impl Backend {
    /// Host code over host values: runs on CPU threads and on any processor that runs host
    /// code.
    pub const CPU: Backend = Backend("cpu");
    /// A WGSL compute shader, run by wgpu devices.
    pub const WGSL: Backend = Backend("wgsl");

    /// A backend of your own (a CUDA device, a remote service, ...).
    pub const fn new(name: &'static str) -> Backend {
        Backend(name)
    }

    /// Its name.
    pub fn name(&self) -> &'static str {
        self.0
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

/// A kernel's CPU implementation: its parameters and its inputs (host values) to its result.
pub type CpuImpl = dyn Fn(&Value, &[Value]) -> Result<Value, TaskFailure> + Send + Sync;

/// A CPU implementation that may take over inputs nothing else holds (see
/// [`KernelBuilder::cpu_in_place`]).
type CpuInPlace = dyn Fn(&Value, &mut [Value]) -> Result<Value, TaskFailure> + Send + Sync;

type Flops = dyn Fn(&Value) -> Option<f64> + Send + Sync;

/// How a kernel's parameters cross processes: what it takes is what it decodes, so every
/// rank that finds the kernel by name can read the parameters of its calls.
#[derive(Clone, Copy)]
pub(crate) struct ParamsCodec {
    /// The parameters' type.
    pub(crate) type_name: &'static str,
    /// Appends the encoding of parameters of this type; `false` for another type.
    pub(crate) encode: fn(&Value, &mut Vec<u8>) -> bool,
    /// The parameters these bytes encode.
    pub(crate) decode: fn(&[u8]) -> Option<Value>,
}

impl ParamsCodec {
    /// Plain old data, as its raw bytes.
    pub(crate) fn pod<P: bytemuck::Pod + Send + Sync>() -> Self {
        ParamsCodec {
            type_name: std::any::type_name::<P>(),
            encode: |v, out| match v.downcast_ref::<P>() {
                Some(p) => {
                    out.extend_from_slice(bytemuck::bytes_of(p));
                    true
                }
                None => false,
            },
            decode: |b| {
                bytemuck::try_pod_read_unaligned::<P>(b)
                    .ok()
                    .map(Value::new)
            },
        }
    }

    /// A `serde` type, as postcard.
    pub(crate) fn serde<P>() -> Self
    where
        P: serde::Serialize + serde::de::DeserializeOwned + Send + Sync + 'static,
    {
        ParamsCodec {
            type_name: std::any::type_name::<P>(),
            encode: |v, out| match v.downcast_ref::<P>().map(postcard::to_allocvec) {
                Some(Ok(bytes)) => {
                    out.extend_from_slice(&bytes);
                    true
                }
                _ => false,
            },
            decode: |b| postcard::from_bytes::<P>(b).ok().map(Value::new),
        }
    }
}

/// Kernels a module makes on demand, so that [`Kernel::lookup`] finds them by name in any
/// process of a program, including one that never used them (a worker rank).
pub(crate) struct BuiltinKernels(pub(crate) fn());

inventory::collect!(BuiltinKernels);

/// Makes the built-in kernels (and registers the values they pass between ranks), once per
/// process; whether this call made them.
pub(crate) fn register_builtin() -> bool {
    static BUILTIN: OnceLock<()> = OnceLock::new();
    let mut built = false;
    BUILTIN.get_or_init(|| {
        for b in inventory::iter::<BuiltinKernels> {
            (b.0)();
        }
        built = true;
    });
    built
}

struct KernelDef {
    name: Arc<str>,
    cpu: Option<Arc<CpuInPlace>>,
    impls: Vec<(Backend, Arc<dyn Any + Send + Sync>)>,
    flops: Option<Box<Flops>>,
    local: bool,
    params: Option<ParamsCodec>,
}

/// A named operation with implementations per backend.
///
/// ```
/// use dagger::{Backend, Kernel, Value};
///
/// let double = Kernel::builder("example.double")
///     .cpu(|_params: &Value, inputs: &[Value]| {
///         let x = inputs[0].downcast_ref::<Vec<f64>>().expect("a Vec<f64>");
///         Ok(Value::new(x.iter().map(|v| 2.0 * v).collect::<Vec<f64>>()))
///     })
///     .flops(|_| Some(1.0))
///     .register();
/// assert!(double.has(&Backend::CPU));
/// assert!(!double.has(&Backend::WGSL));
/// let found = Kernel::lookup("example.double").expect("registered");
/// assert_eq!(found.name(), "example.double");
/// let out = found.run_cpu(&Value::new(()), &[Value::new(vec![1.0f64, 2.0])])?;
/// assert_eq!(out.downcast_ref::<Vec<f64>>(), Some(&vec![2.0, 4.0]));
/// # Ok::<(), dagger::TaskFailure>(())
/// ```
#[derive(Clone)]
pub struct Kernel {
    def: Arc<KernelDef>,
}

impl fmt::Debug for Kernel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Kernel")
            .field("name", &self.def.name)
            .field("backends", &self.backends().collect::<Vec<_>>())
            .finish()
    }
}

impl PartialEq for Kernel {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.def, &other.def)
    }
}

fn registry() -> &'static RwLock<HashMap<Arc<str>, Kernel>> {
    static R: OnceLock<RwLock<HashMap<Arc<str>, Kernel>>> = OnceLock::new();
    R.get_or_init(Default::default)
}

impl Kernel {
    /// Starts a kernel named `name`. Names are global to the process: use a prefix of your
    /// own (`"mylib.op"`).
    pub fn builder(name: impl Into<String>) -> KernelBuilder {
        KernelBuilder {
            name: name.into(),
            cpu: None,
            impls: Vec::new(),
            flops: None,
            local: false,
            params: None,
        }
    }

    /// The kernel registered under `name`, if any. The kernels of DArray and of the tiled
    /// linear algebra are found by name even before this process used them, as every rank
    /// of a program must find them.
    pub fn lookup(name: &str) -> Option<Kernel> {
        if let Some(k) = registry().read().get(name) {
            return Some(k.clone());
        }
        if register_builtin() {
            registry().read().get(name).cloned()
        } else {
            None
        }
    }

    /// Whether only the process that made it can run it: a kernel built at run time from an
    /// expression, which other ranks could not make by name.
    pub(crate) fn is_local(&self) -> bool {
        self.def.local
    }

    /// How its parameters cross processes, when it says.
    pub(crate) fn params_codec(&self) -> Option<ParamsCodec> {
        self.def.params
    }

    /// The names of every registered kernel, sorted.
    pub fn registered() -> Vec<String> {
        let mut v: Vec<String> = registry().read().keys().map(|k| k.to_string()).collect();
        v.sort();
        v
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.def.name
    }

    /// Whether it has an implementation for `backend`.
    pub fn has(&self, backend: &Backend) -> bool {
        if *backend == Backend::CPU {
            return self.def.cpu.is_some();
        }
        self.def.impls.iter().any(|(b, _)| b == backend)
    }

    /// The backends it has implementations for.
    pub fn backends(&self) -> impl Iterator<Item = Backend> + '_ {
        self.def
            .cpu
            .as_ref()
            .map(|_| Backend::CPU)
            .into_iter()
            .chain(self.def.impls.iter().map(|(b, _)| *b))
    }

    /// The implementation for `backend` (not the CPU one: see [`run_cpu`](Self::run_cpu)),
    /// to be downcast to the type its backend defines.
    pub fn implementation(&self, backend: &Backend) -> Option<&(dyn Any + Send + Sync)> {
        self.def
            .impls
            .iter()
            .find(|(b, _)| b == backend)
            .map(|(_, i)| &**i)
    }

    /// Runs the CPU implementation on host values.
    pub fn run_cpu(&self, params: &Value, inputs: &[Value]) -> Result<Value, TaskFailure> {
        // Clones of the caller's handles: an in-place implementation finds every input
        // shared, so it takes none of them over.
        self.run_cpu_owned(params, &mut inputs.to_vec())
    }

    /// Runs the CPU implementation on inputs it may take over where no other handle holds
    /// them (what a task's inputs are once it starts).
    pub(crate) fn run_cpu_owned(
        &self,
        params: &Value,
        inputs: &mut [Value],
    ) -> Result<Value, TaskFailure> {
        match &self.def.cpu {
            Some(f) => f(params, inputs),
            None => Err(TaskFailure::msg(format!(
                "kernel `{}` has no CPU implementation",
                self.def.name
            ))),
        }
    }

    /// The kernel with `params`: what a task runs.
    pub fn call(&self, params: Value) -> KernelCall {
        let flops = self.def.flops.as_ref().and_then(|f| f(&params));
        KernelCall {
            kernel: self.clone(),
            params,
            flops,
        }
    }
}

/// Builds a [`Kernel`].
#[must_use]
pub struct KernelBuilder {
    name: String,
    cpu: Option<Arc<CpuInPlace>>,
    impls: Vec<(Backend, Arc<dyn Any + Send + Sync>)>,
    flops: Option<Box<Flops>>,
    local: bool,
    params: Option<ParamsCodec>,
}

impl KernelBuilder {
    /// The CPU implementation.
    pub fn cpu(
        mut self,
        f: impl Fn(&Value, &[Value]) -> Result<Value, TaskFailure> + Send + Sync + 'static,
    ) -> Self {
        self.cpu = Some(Arc::new(move |params: &Value, inputs: &mut [Value]| {
            f(params, inputs)
        }));
        self
    }

    /// The CPU implementation, given its inputs mutably: an input that no other handle
    /// holds (no other task reads it, no array keeps it) can be taken over with
    /// [`Value::get_mut`] and updated in place instead of copied. A tile that accumulates
    /// into a block it is given, as GEMM's `C = A B + C` does, then reuses that block's
    /// memory, which is already in cache and needs no fresh pages.
    pub(crate) fn cpu_in_place(
        mut self,
        f: impl Fn(&Value, &mut [Value]) -> Result<Value, TaskFailure> + Send + Sync + 'static,
    ) -> Self {
        self.cpu = Some(Arc::new(f));
        self
    }

    /// The implementation for another backend; its type is what that backend's processors
    /// downcast [`Kernel::implementation`] to.
    pub fn implementation(mut self, backend: Backend, i: impl Any + Send + Sync) -> Self {
        self.impls.retain(|(b, _)| *b != backend);
        self.impls.push((backend, Arc::new(i)));
        self
    }

    /// Floating-point operations one call performs, from its parameters: placement
    /// estimates run times from it before any have been measured.
    pub fn flops(mut self, f: impl Fn(&Value) -> Option<f64> + Send + Sync + 'static) -> Self {
        self.flops = Some(Box::new(f));
        self
    }

    /// Marks it as made at run time by this process only (see [`Kernel::is_local`]).
    pub(crate) fn local(mut self) -> Self {
        self.local = true;
        self
    }

    /// How its parameters cross processes.
    pub(crate) fn params_codec(mut self, codec: ParamsCodec) -> Self {
        self.params = Some(codec);
        self
    }

    /// Makes the kernel and registers it under its name, replacing an earlier kernel of
    /// that name for [`Kernel::lookup`] (tasks already holding the earlier one keep it).
    pub fn register(self) -> Kernel {
        let k = self.build();
        registry().write().insert(k.def.name.clone(), k.clone());
        k
    }

    /// Makes the kernel without registering it (it cannot be found by name).
    pub(crate) fn build(self) -> Kernel {
        Kernel {
            def: Arc::new(KernelDef {
                name: self.name.into(),
                cpu: self.cpu,
                impls: self.impls,
                flops: self.flops,
                local: self.local,
                params: self.params,
            }),
        }
    }
}

/// A kernel with its parameters: the work of a kernel task.
#[derive(Clone, Debug)]
pub struct KernelCall {
    kernel: Kernel,
    params: Value,
    flops: Option<f64>,
}

impl KernelCall {
    /// The kernel.
    pub fn kernel(&self) -> &Kernel {
        &self.kernel
    }

    /// Its parameters.
    pub fn params(&self) -> &Value {
        &self.params
    }

    /// The floating-point operations of this call, if the kernel counts them.
    pub fn flops(&self) -> Option<f64> {
        self.flops
    }

    /// Runs the kernel's CPU implementation on host values.
    pub fn run_cpu(&self, inputs: &[Value]) -> Result<Value, TaskFailure> {
        self.kernel.run_cpu(&self.params, inputs)
    }

    /// Runs the kernel's CPU implementation on a task's inputs, which it may take over.
    pub(crate) fn run_cpu_owned(&self, inputs: &mut [Value]) -> Result<Value, TaskFailure> {
        self.kernel.run_cpu_owned(&self.params, inputs)
    }
}
