//! WGSL implementations of kernels, and [`WgslKernel`]: a user's WGSL compute shader (with
//! an optional CPU implementation) as a named kernel.

#[cfg(feature = "wgpu")]
use std::any::TypeId;
use std::marker::PhantomData;
use std::sync::Arc;

#[cfg(feature = "wgpu")]
use dagger_wgpu::{Binding, BindingInfo, BindingKind, Device, GpuBuffer, GpuError, ShaderError};

use super::dtype::{DType, GpuScalar};
#[cfg(feature = "wgpu")]
use super::memory::{device_holds, DeviceOutput};
#[cfg(feature = "wgpu")]
use crate::kernel::Backend;
use crate::kernel::{Kernel, ParamsCodec};
use crate::processor::TaskFailure;
use crate::value::Value;

#[cfg(feature = "wgpu")]
/// An input resident on the device a kernel runs on, pinned there until the kernel has
/// finished.
#[derive(Clone)]
pub(crate) struct DeviceInput {
    pub(crate) buffer: Arc<GpuBuffer>,
    pub(crate) len: usize,
    pub(crate) dtype: DType,
}

#[cfg(feature = "wgpu")]
/// Called with a kernel's output once the device has finished it.
pub(crate) type LaunchDone = Box<dyn FnOnce(Result<DeviceOutput, GpuError>) + Send>;

#[cfg(feature = "wgpu")]
/// A kernel's WGSL implementation, as registered under [`Backend::WGSL`]: launches the
/// kernel with a call's parameters.
pub(crate) struct WgslImpl(pub(crate) Arc<dyn WgslLaunch>);

#[cfg(feature = "wgpu")]
/// Launches a kernel on a device, given the call's parameters.
pub(crate) trait WgslLaunch: Send + Sync {
    /// Whether `info`'s device can run the call; the reason if not.
    fn supports(&self, params: &Value, info: &dagger_wgpu::DeviceInfo) -> Result<(), String>;
    /// The elements of the output of a call on inputs of `lens` elements, when known
    /// (otherwise it is taken to be as large as the largest input).
    fn output_len(&self, params: &Value, lens: &[usize]) -> Option<usize>;
    /// Enqueues the work on `device` (inputs already resident there) and returns at once;
    /// `done` runs when the device has finished.
    fn launch(
        &self,
        params: &Value,
        device: &Device,
        inputs: &[DeviceInput],
        done: LaunchDone,
    ) -> Result<(), GpuError>;
}

#[cfg(feature = "wgpu")]
/// Kernels whose parameters are a [`GpuLaunch`] (the linear-algebra tiles): the WGSL
/// implementation launches the parameters.
pub(crate) struct ByParams<P>(PhantomData<fn() -> P>);

#[cfg(feature = "wgpu")]
impl<P> ByParams<P> {
    pub(crate) fn new() -> Self {
        ByParams(PhantomData)
    }
}

#[cfg(feature = "wgpu")]
/// [`params_of`] for a launch: a mismatch is the launch's error.
fn launch_params_of<P: 'static>(params: &Value) -> Result<&P, GpuError> {
    params_of::<P>(params).map_err(|message| GpuError::Wgpu {
        operation: "launching a kernel".into(),
        message,
    })
}

fn params_of<P: 'static>(params: &Value) -> Result<&P, String> {
    params.downcast_ref::<P>().ok_or_else(|| {
        format!(
            "the kernel's parameters should be `{}` but are `{}`",
            std::any::type_name::<P>(),
            params.type_name()
        )
    })
}

#[cfg(feature = "wgpu")]
impl<P: GpuLaunch + 'static> WgslLaunch for ByParams<P> {
    fn supports(&self, params: &Value, info: &dagger_wgpu::DeviceInfo) -> Result<(), String> {
        params_of::<P>(params)?.supports(info)
    }

    fn output_len(&self, params: &Value, _lens: &[usize]) -> Option<usize> {
        params_of::<P>(params).ok()?.output_len()
    }

    fn launch(
        &self,
        params: &Value,
        device: &Device,
        inputs: &[DeviceInput],
        done: LaunchDone,
    ) -> Result<(), GpuError> {
        launch_params_of::<P>(params)?.launch(device, inputs, done)
    }
}

/// A kernel whose parameters launch themselves on a GPU and run themselves on a CPU: its
/// parameters type `P` names it, registered once under `name`.
pub(crate) fn params_kernel<P>(name: String) -> Kernel
where
    P: GpuLaunch + CpuRun + serde::Serialize + serde::de::DeserializeOwned + 'static,
{
    let k = Kernel::builder(name)
        .params_codec(ParamsCodec::serde::<P>())
        .cpu_in_place(|params, inputs| {
            params_of::<P>(params)
                .map_err(TaskFailure::msg)?
                .run_cpu(inputs)
        });
    #[cfg(feature = "wgpu")]
    let k = k.implementation(Backend::WGSL, WgslImpl(Arc::new(ByParams::<P>::new())));
    k.flops(|params| params.downcast_ref::<P>().and_then(GpuLaunch::flops))
        .register()
}

/// The CPU side of a kernel whose parameters run themselves.
pub(crate) trait CpuRun: Send + Sync {
    /// Computes the result from host inputs; one that no other handle holds may be taken
    /// over (see [`Value::get_mut`]).
    fn run_cpu(&self, inputs: &mut [Value]) -> Result<Value, TaskFailure>;
}

/// The GPU side of a kernel whose parameters launch themselves (without the `wgpu`
/// feature: its element type and flop count, which placement uses on any processor).
pub(crate) trait GpuLaunch: Send + Sync {
    /// The element type of its arrays.
    #[cfg_attr(not(feature = "wgpu"), allow(dead_code))]
    fn dtype(&self) -> DType;
    /// Whether `info`'s device can run it; the reason if not. By default: whether the device
    /// holds [`dtype`](Self::dtype).
    #[cfg(feature = "wgpu")]
    fn supports(&self, info: &dagger_wgpu::DeviceInfo) -> Result<(), String> {
        device_holds(info, self.dtype())
    }
    /// Floating-point operations one run performs, if known: placement estimates run times
    /// from it before any have been measured.
    fn flops(&self) -> Option<f64> {
        None
    }
    /// The elements of its output, when known (otherwise it is taken to be as large as the
    /// largest input).
    #[cfg_attr(not(feature = "wgpu"), allow(dead_code))]
    fn output_len(&self) -> Option<usize> {
        None
    }
    /// Enqueues the work on `device` (inputs already resident there) and returns at once;
    /// `done` runs when the device has finished.
    #[cfg(feature = "wgpu")]
    fn launch(
        &self,
        device: &Device,
        inputs: &[DeviceInput],
        done: LaunchDone,
    ) -> Result<(), GpuError>;
}

/// How a WGSL kernel uses one of its array inputs.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Access {
    /// Bound `var<storage, read>`.
    Read,
    /// Bound `var<storage, read_write>`: the kernel writes a private copy, which becomes the
    /// task's result; the input itself is never modified.
    ReadWrite,
}

/// An invalid kernel definition.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KernelError {
    /// The WGSL did not parse or validate: the message gives the line and column naga
    /// points at, the source (a [`ShaderError`]) naga's diagnostic.
    ///
    /// ```
    /// use dagger::prelude::*;
    /// let src = "@compute @workgroup_size(1)\nfn main() { let x = ; }";
    /// let e = WgslKernel::<(), f32>::builder("bad", src, "main").build().unwrap_err();
    /// assert_eq!(e.to_string(), "kernel `bad`: invalid WGSL at line 2:21");
    /// let naga = std::error::Error::source(&e).unwrap().to_string();
    /// assert!(naga.contains("expected expression"), "{naga}");
    /// ```
    #[cfg(feature = "wgpu")]
    #[error("kernel `{kernel}`: invalid WGSL{}", at(source.location()))]
    Shader {
        /// The kernel.
        kernel: String,
        /// naga's error.
        #[source]
        source: Box<ShaderError>,
    },
    /// The declared inputs and outputs do not match the shader's bindings.
    #[error("kernel `{kernel}`: {message}")]
    Bindings {
        /// The kernel.
        kernel: String,
        /// What does not match and what to change.
        message: String,
    },
}

/// Arguments that do not fit a kernel's declared inputs, found when the task is spawned
/// ([`Context::spawn_kernel`](crate::Context::spawn_kernel),
/// [`DataRegion::spawn_kernel`](crate::DataRegion::spawn_kernel)): nothing was spawned.
///
/// ```
/// use dagger::prelude::*;
/// use dagger::{Access, KernelArgsError, WgslKernel};
///
/// let double = WgslKernel::<(), f32>::builder("double", "
///     @group(0) @binding(0) var<storage, read_write> x: array<f32>;
///     @compute @workgroup_size(64)
///     fn main(@builtin(global_invocation_id) id: vec3<u32>) {
///         if (id.x < arrayLength(&x)) { x[id.x] *= 2.0; }
///     }", "main")
///     .inputs([Access::ReadWrite])
///     .workgroups(|_, lens| [(lens[0] as u32).div_ceil(64), 1, 1])
///     .cpu(|_, _, x| x.iter_mut().for_each(|v| *v *= 2.0))
///     .build()?;
///
/// let ctx = Context::builder().threads(1).build()?;
/// let err = ctx
///     .spawn_kernel(&double, (), [vec![1.0f32].into(), vec![2.0f32].into()])
///     .unwrap_err();
/// assert!(matches!(err, KernelArgsError::Count { expected: 1, given: 2, .. }));
/// assert_eq!(
///     err.to_string(),
///     "kernel `double` takes 1 input array (as declared by `inputs`) but was given 2: \
///      pass one argument per declared input, in binding order"
/// );
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KernelArgsError {
    /// A number of arguments other than the kernel's declared inputs.
    #[error(
        "kernel `{kernel}` takes {expected} input array{} (as declared by `inputs`) but was \
         given {given}: pass one argument per declared input, in binding order",
        if *expected == 1 { "" } else { "s" }
    )]
    Count {
        /// The kernel.
        kernel: String,
        /// How many inputs the kernel declares.
        expected: usize,
        /// How many arguments the call gave.
        given: usize,
    },
    /// In a datadeps region, an argument whose access mode differs from the binding's: a
    /// `read_write` input needs [`Out`](crate::Out) or [`InOut`](crate::InOut), a read-only
    /// one [`In`](crate::In).
    #[error(
        "kernel `{kernel}` binds input {index} {}, so pass it as {}",
        if *read_write { "read_write" } else { "read-only" },
        if *read_write { "Out or InOut" } else { "In" }
    )]
    Access {
        /// The kernel.
        kernel: String,
        /// The input, counted from 0 in binding order.
        index: usize,
        /// Whether the kernel binds it `read_write`.
        read_write: bool,
    },
}

impl<P, T> WgslKernel<P, T> {
    /// [`KernelArgsError::Count`] unless `given` is the number of declared inputs.
    pub(crate) fn check_count(&self, given: usize) -> Result<(), KernelArgsError> {
        let expected = self.inner.inputs.len();
        if given == expected {
            Ok(())
        } else {
            Err(KernelArgsError::Count {
                kernel: self.inner.name.clone(),
                expected,
                given,
            })
        }
    }
}

type Workgroups<P> = dyn Fn(&P, &[usize]) -> [u32; 3] + Send + Sync;
type OutputLen<P> = dyn Fn(&P, &[usize]) -> usize + Send + Sync;
type CpuImpl<P, T> = dyn Fn(&P, &[&[T]], &mut [T]) + Send + Sync;

#[cfg_attr(not(feature = "wgpu"), allow(dead_code))]
struct Inner<P, T> {
    name: String,
    source: Arc<str>,
    entry: String,
    inputs: Vec<Access>,
    output_len: Option<Box<OutputLen<P>>>,
    workgroups: Box<Workgroups<P>>,
    cpu: Option<Box<CpuImpl<P, T>>>,
    /// Which input is the result, when the result is a written input.
    result_input: Option<usize>,
    _t: PhantomData<fn() -> T>,
}

/// A user's WGSL compute shader as a task: its bindings, its workgroup count, and an
/// optional CPU implementation so the same task runs on any processor.
///
/// Bindings of group 0, in order: the parameters `P` as a uniform at binding 0 (unless `P`
/// is `()`), then one storage buffer per input array, then — when
/// [`output`](WgslKernelBuilder::output) is set — a fresh output array. The task's result
/// is the output array, or the [`Access::ReadWrite`] input's written copy.
///
/// The shader is validated when the kernel is built: a WGSL error is a [`KernelError`]
/// quoting naga's message with the line.
///
/// ```
/// use dagger::prelude::*;
/// use dagger::{Access, WgslKernel};
///
/// #[repr(C)]
/// #[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
/// struct Scale { factor: f32, n: u32 }
///
/// let scale = WgslKernel::<Scale, f32>::builder("scale", "
///     struct Scale { factor: f32, n: u32 }
///     @group(0) @binding(0) var<uniform> p: Scale;
///     @group(0) @binding(1) var<storage, read_write> x: array<f32>;
///     @compute @workgroup_size(64)
///     fn main(@builtin(global_invocation_id) id: vec3<u32>) {
///         if (id.x < p.n) { x[id.x] = x[id.x] * p.factor; }
///     }", "main")
///     .inputs([Access::ReadWrite])
///     .workgroups(|p: &Scale, _| [p.n.div_ceil(64), 1, 1])
///     .cpu(|p: &Scale, _inputs, out| out.iter_mut().for_each(|v| *v *= p.factor))
///     .build()?;
///
/// let ctx = Context::builder().threads(1).build()?;
/// let x = ctx.to_chunk(vec![1.0f32, 2.0, 3.0]);
/// // No GPU in scope here: the CPU implementation runs.
/// let y = ctx.spawn_kernel(&scale, Scale { factor: 2.0, n: 3 }, [(&x).into()])?;
/// assert_eq!(y.fetch()?, vec![2.0, 4.0, 6.0]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct WgslKernel<P, T> {
    inner: Arc<Inner<P, T>>,
    kernel: Kernel,
}

impl<P, T> std::fmt::Debug for WgslKernel<P, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WgslKernel")
            .field("name", &self.inner.name)
            .field("entry_point", &self.inner.entry)
            .field("inputs", &self.inner.inputs)
            .field("element", &std::any::type_name::<T>())
            .field("cpu", &self.inner.cpu.is_some())
            .finish_non_exhaustive()
    }
}

impl<P, T> std::fmt::Debug for WgslKernelBuilder<P, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WgslKernelBuilder")
            .field("name", &self.name)
            .field("entry_point", &self.entry)
            .field("inputs", &self.inputs)
            .field("output", &self.output_len.is_some())
            .field("workgroups", &self.workgroups.is_some())
            .field("cpu", &self.cpu.is_some())
            .finish_non_exhaustive()
    }
}

impl<P, T> Clone for WgslKernel<P, T> {
    fn clone(&self) -> Self {
        WgslKernel {
            inner: self.inner.clone(),
            kernel: self.kernel.clone(),
        }
    }
}

/// Builds a [`WgslKernel`].
#[must_use]
pub struct WgslKernelBuilder<P, T> {
    name: String,
    source: String,
    entry: String,
    inputs: Vec<Access>,
    output_len: Option<Box<OutputLen<P>>>,
    workgroups: Option<Box<Workgroups<P>>>,
    cpu: Option<Box<CpuImpl<P, T>>>,
    local: bool,
}

impl<P: bytemuck::Pod + Send + Sync, T: GpuScalar> WgslKernel<P, T> {
    /// Starts a kernel named `name` from WGSL `source` and its compute `entry_point`.
    pub fn builder(
        name: impl Into<String>,
        source: impl Into<String>,
        entry_point: impl Into<String>,
    ) -> WgslKernelBuilder<P, T> {
        WgslKernelBuilder {
            name: name.into(),
            source: source.into(),
            entry: entry_point.into(),
            inputs: Vec::new(),
            output_len: None,
            workgroups: None,
            cpu: None,
            local: false,
        }
    }

    /// The kernel's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// Whether the kernel can run on CPU threads.
    pub fn has_cpu(&self) -> bool {
        self.inner.cpu.is_some()
    }

    /// The number of array inputs.
    pub fn num_inputs(&self) -> usize {
        self.inner.inputs.len()
    }

    /// How the kernel binds each input array.
    pub fn access(&self) -> &[Access] {
        &self.inner.inputs
    }

    /// The kernel it registered: its name, CPU and WGSL implementations.
    pub fn kernel(&self) -> &Kernel {
        &self.kernel
    }
}

/// The CPU implementation of a [`WgslKernel`], on host arrays.
fn run_cpu<P: bytemuck::Pod, T: GpuScalar>(
    inner: &Inner<P, T>,
    params: &P,
    inputs: &[Value],
) -> Result<Value, TaskFailure> {
    let Some(cpu) = inner.cpu.as_ref() else {
        return Err(TaskFailure::msg(format!(
            "kernel `{}` has no CPU implementation",
            inner.name
        )));
    };
    let mut slices: Vec<&[T]> = Vec::with_capacity(inputs.len());
    for (i, v) in inputs.iter().enumerate() {
        let v = v
            .downcast_ref::<Vec<T>>()
            .ok_or(TaskFailure::ArgumentType {
                index: i,
                expected: std::any::type_name::<Vec<T>>(),
                found: v.type_name(),
            })?;
        slices.push(v);
    }
    let lens: Vec<usize> = slices.iter().map(|s| s.len()).collect();
    let mut out: Vec<T> = match (inner.result_input, &inner.output_len) {
        (Some(k), _) => slices[k].to_vec(),
        (None, Some(f)) => vec![T::zeroed(); f(params, &lens)],
        (None, None) => unreachable!("checked when built"),
    };
    cpu(params, &slices, &mut out);
    Ok(Value::new(out))
}

impl<P: bytemuck::Pod + Send + Sync, T: GpuScalar> WgslKernelBuilder<P, T> {
    /// How the kernel binds each input array, in binding order.
    pub fn inputs(mut self, access: impl IntoIterator<Item = Access>) -> Self {
        self.inputs = access.into_iter().collect();
        self
    }

    /// Adds a fresh output array after the inputs, of the length `len(params, input lengths)`
    /// (zero-initialised); it is the task's result.
    pub fn output(mut self, len: impl Fn(&P, &[usize]) -> usize + Send + Sync + 'static) -> Self {
        self.output_len = Some(Box::new(len));
        self
    }

    /// The workgroup count of a launch, from the parameters and the input lengths.
    pub fn workgroups(
        mut self,
        f: impl Fn(&P, &[usize]) -> [u32; 3] + Send + Sync + 'static,
    ) -> Self {
        self.workgroups = Some(Box::new(f));
        self
    }

    /// A CPU implementation: given the parameters and the inputs, it fills the result
    /// (which starts as a copy of the read-write input, or zeros for an output).
    pub fn cpu(mut self, f: impl Fn(&P, &[&[T]], &mut [T]) + Send + Sync + 'static) -> Self {
        self.cpu = Some(Box::new(f));
        self
    }

    /// Marks the kernel as one that only this process can make (built from an expression
    /// at run time, say): other ranks could not find it by name, so its tasks stay here.
    pub(crate) fn local(mut self) -> Self {
        self.local = true;
        self
    }

    /// Validates the shader and the bindings. Without the `wgpu` feature there is no GPU
    /// to run the shader, so it is not parsed: the kernel runs its CPU implementation.
    pub fn build(self) -> Result<WgslKernel<P, T>, KernelError> {
        let kernel = self.name.clone();
        #[cfg(feature = "wgpu")]
        let bindings: Vec<BindingInfo> = dagger_wgpu::reflect_wgsl(&self.source, &self.entry)
            .map_err(|source| KernelError::Shader {
                kernel: kernel.clone(),
                source: Box::new(source),
            })?;
        let err = |message: String| KernelError::Bindings {
            kernel: kernel.clone(),
            message,
        };
        let written: Vec<usize> = self
            .inputs
            .iter()
            .enumerate()
            .filter(|(_, a)| **a == Access::ReadWrite)
            .map(|(i, _)| i)
            .collect();
        let result_input = match (written.len(), self.output_len.is_some()) {
            (0, true) => None,
            (1, false) => Some(written[0]),
            (0, false) => {
                return Err(err(
                    "the kernel has no result: declare one input Access::ReadWrite or add .output(len)"
                        .into(),
                ))
            }
            _ => {
                return Err(err(
                    "the kernel has several results: declare at most one input Access::ReadWrite, and no .output(len) with it"
                        .into(),
                ))
            }
        };
        #[cfg(feature = "wgpu")]
        self.check_bindings(&bindings)?;
        let workgroups = self.workgroups.ok_or_else(|| {
            err("no workgroup count: call .workgroups(|params, lens| [x, y, z])".into())
        })?;
        let inner = Arc::new(Inner {
            name: self.name,
            source: self.source.into(),
            entry: self.entry,
            inputs: self.inputs,
            output_len: self.output_len,
            workgroups,
            cpu: self.cpu,
            result_input,
            _t: PhantomData,
        });
        // Its parameters travel to other ranks as their raw bytes.
        let k = Kernel::builder(inner.name.clone()).params_codec(ParamsCodec::pod::<P>());
        let k = if self.local { k.local() } else { k };
        #[cfg(feature = "wgpu")]
        let k = k.implementation(
            Backend::WGSL,
            WgslImpl(Arc::new(Launcher {
                inner: inner.clone(),
            })),
        );
        let k = if inner.cpu.is_some() {
            let cpu_inner = inner.clone();
            k.cpu(move |params, inputs| {
                let p = params.downcast_ref::<P>().ok_or_else(|| {
                    TaskFailure::msg(format!(
                        "kernel `{}` takes parameters of type `{}`, not `{}`",
                        cpu_inner.name,
                        std::any::type_name::<P>(),
                        params.type_name()
                    ))
                })?;
                run_cpu(&cpu_inner, p, inputs)
            })
        } else {
            k
        };
        Ok(WgslKernel {
            inner,
            kernel: k.register(),
        })
    }

    /// Checks the shader's bindings against the declared parameters, inputs and output.
    #[cfg(feature = "wgpu")]
    fn check_bindings(&self, bindings: &[BindingInfo]) -> Result<(), KernelError> {
        let err = |message: String| KernelError::Bindings {
            kernel: self.name.clone(),
            message,
        };
        let has_params = std::mem::size_of::<P>() > 0;
        let mut expected: Vec<BindingKind> = Vec::new();
        if has_params {
            expected.push(BindingKind::Uniform);
        }
        for a in &self.inputs {
            expected.push(match a {
                Access::Read => BindingKind::StorageRead,
                Access::ReadWrite => BindingKind::StorageReadWrite,
            });
        }
        if self.output_len.is_some() {
            expected.push(BindingKind::StorageReadWrite);
        }
        let found: Vec<BindingKind> = bindings.iter().map(|b| b.kind).collect();
        let compatible = expected.len() == found.len()
            && expected.iter().zip(&found).all(|(e, f)| {
                e == f || (*e == BindingKind::StorageRead && *f == BindingKind::StorageReadWrite)
            });
        if !compatible {
            return Err(err(format!(
                "the shader's entry point `{}` uses bindings {:?}, but the declaration implies {:?} \
                 (a uniform for the parameters unless they are `()`, one storage buffer per input, \
                 then the output)",
                self.entry, found, expected
            )));
        }
        Ok(())
    }
}

#[cfg(feature = "wgpu")]
struct Launcher<P, T> {
    inner: Arc<Inner<P, T>>,
}

#[cfg(feature = "wgpu")]
impl<P: bytemuck::Pod + Send + Sync, T: GpuScalar> WgslLaunch for Launcher<P, T> {
    fn supports(&self, _params: &Value, info: &dagger_wgpu::DeviceInfo) -> Result<(), String> {
        device_holds(info, T::DTYPE)
    }

    fn output_len(&self, params: &Value, lens: &[usize]) -> Option<usize> {
        let inner = &self.inner;
        match (inner.result_input, &inner.output_len) {
            (Some(k), _) => lens.get(k).copied(),
            (None, Some(f)) => Some(f(params.downcast_ref::<P>()?, lens)),
            (None, None) => None,
        }
    }

    fn launch(
        &self,
        params: &Value,
        device: &Device,
        inputs: &[DeviceInput],
        done: LaunchDone,
    ) -> Result<(), GpuError> {
        let inner = &self.inner;
        let params: &P = launch_params_of::<P>(params)?;
        if let Some(bad) = inputs.iter().find(|i| i.dtype != T::DTYPE) {
            return Err(GpuError::Wgpu {
                operation: "binding kernel inputs".into(),
                message: format!(
                    "kernel `{}` takes {} arrays but was given {}",
                    inner.name,
                    T::DTYPE,
                    bad.dtype
                ),
            });
        }
        let pipeline = device.compile(&inner.source, &inner.entry)?;
        let lens: Vec<usize> = inputs.iter().map(|i| i.len).collect();
        let (out, out_len) = match (inner.result_input, &inner.output_len) {
            (Some(k), _) => (device.copy(&inputs[k].buffer)?, inputs[k].len),
            (None, Some(f)) => {
                let n = f(params, &lens);
                (device.zeroed((n * T::DTYPE.size()) as u64)?, n)
            }
            (None, None) => unreachable!("checked when built"),
        };
        let out = Arc::new(out);
        let mut bindings: Vec<Binding<'_>> = Vec::with_capacity(inputs.len() + 2);
        if std::mem::size_of::<P>() > 0 {
            bindings.push(Binding::uniform(params));
        }
        for (k, i) in inputs.iter().enumerate() {
            if Some(k) == inner.result_input {
                bindings.push(Binding::Storage(&out));
            } else {
                bindings.push(Binding::Storage(&i.buffer));
            }
        }
        if inner.output_len.is_some() {
            bindings.push(Binding::Storage(&out));
        }
        let workgroups = (inner.workgroups)(params, &lens);
        let result = out.clone();
        device.launch(&pipeline, &bindings, workgroups, move |r| {
            done(r.map(|()| DeviceOutput::new(result, out_len, T::DTYPE, TypeId::of::<Vec<T>>())))
        })
    }
}

#[cfg(feature = "wgpu")]
/// " at line L:C" when naga located the error.
fn at(location: Option<dagger_wgpu::SourcePosition>) -> String {
    location.map(|l| format!(" at {l}")).unwrap_or_default()
}
