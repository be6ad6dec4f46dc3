//! [`Device`]: the handle through which every thread uses one wgpu device, and
//! [`open_devices`].

use std::collections::HashMap;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;

use crossbeam_channel::Sender;
use parking_lot::{Mutex, ReentrantMutex};

use crate::buffer::GpuBuffer;
use crate::core::Core;
use crate::error::{GpuError, ShaderError};
use crate::info::{DeviceInfo, DeviceType};
use crate::pipeline::{Pipeline, PipelineInner};
use crate::server::{self, Command, Launch, Resource};
use crate::shader::{reflect, validate_wgsl_with, BindingKind};
use crate::stats::{Counters, DeviceStats};

/// What a launch binds at one binding index of group 0.
#[derive(Clone, Copy, Debug)]
pub enum Binding<'a> {
    /// A storage buffer (`var<storage, read>` or `var<storage, read_write>`).
    Storage(&'a GpuBuffer),
    /// Bytes for a `var<uniform>`, copied at launch; at least as long as the shader's type.
    Uniform(&'a [u8]),
}

impl<'a> Binding<'a> {
    /// Uniform data from a plain value, e.g. a `#[repr(C)]` parameter struct.
    pub fn uniform<T: bytemuck::Pod>(value: &'a T) -> Self {
        Self::Uniform(bytemuck::bytes_of(value))
    }

    fn describe(&self) -> &'static str {
        match self {
            Self::Storage(_) => "a storage buffer",
            Self::Uniform(_) => "uniform data",
        }
    }
}

/// A handle to one opened wgpu device; cheap to clone, `Send + Sync`.
///
/// Behind it one server thread owns the device's queue and does all command encoding; methods
/// send it commands over a channel. The server drains every command already queued, encodes
/// them into one command buffer, submits once and blocks in `poll(Wait)` until that
/// submission is done before firing the batch's completion callbacks, so work is executed in
/// the order it was enqueued from one thread.
///
/// Dropping the last handle lets the server finish what is queued and stop; buffers and
/// pipelines may outlive it (they hold the device memory, not the thread).
///
/// Completion callbacks run on the server thread: keep them short, and do not call the
/// blocking methods of the same device from them (`download`, `launch_blocking`,
/// `synchronize` return [`GpuError::Reentrant`] there instead of deadlocking).
#[derive(Clone)]
pub struct Device {
    shared: Arc<Shared>,
}

struct Shared {
    core: Arc<Core>,
    tx: Sender<Command>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Drop for Shared {
    fn drop(&mut self) {
        let _ = self.tx.send(Command::Shutdown);
        if let Some(handle) = self.thread.lock().take() {
            // The last handle may be dropped by a callback on the server thread itself; that
            // thread then ends on its own after this batch.
            if handle.thread().id() != std::thread::current().id() {
                let _ = handle.join();
            }
        }
    }
}

impl fmt::Debug for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let info = &self.shared.core.info;
        f.debug_struct("Device")
            .field("index", &info.index)
            .field("name", &info.name)
            .field("backend", &info.backend)
            .finish()
    }
}

static NEXT_UID: AtomicU64 = AtomicU64::new(1);

fn backend_rank(b: wgpu::Backend) -> u8 {
    match b {
        wgpu::Backend::Vulkan => 0,
        wgpu::Backend::Metal => 1,
        wgpu::Backend::Dx12 => 2,
        wgpu::Backend::Gl => 3,
        _ => 4,
    }
}

/// Opens one device per adapter of every backend this platform offers (`Backends::all()`),
/// without de-duplicating adapters that two backends both expose.
///
/// The standard `WGPU_BACKEND` environment variable (e.g. `WGPU_BACKEND=vulkan`), when set,
/// restricts the backends searched.
///
/// Element `i` of the result is the adapter with [`DeviceInfo::index`] `i`: adapters are
/// sorted by backend (Vulkan, Metal, DX12, GL), then by name, then by the driver's order, so
/// an index names the same adapter between runs on one machine. Each device gets its adapter's
/// own limits and `SHADER_F64` / `SHADER_F16` where the adapter has them. An adapter that
/// fails to open yields an `Err` at its position, never a panic. No adapters: an empty vector.
///
/// When `XDG_RUNTIME_DIR` is not set (containers, CI, `sudo`), it is first set to a private
/// directory of the user's (`dagger-runtime-<uid>`, mode 0700, under the system's temporary
/// directory, made once and shared by the user's processes): the GL backend's EGL probes
/// for a Wayland display, and without that variable libwayland prints `error:
/// XDG_RUNTIME_DIR is invalid or not set in the environment.` on every probe. No display is
/// found there either way; the variable only keeps the probe quiet. A directory of that name
/// that is a link, is another user's, or is open to others is not used.
pub fn open_devices() -> Vec<Result<Device, GpuError>> {
    quiet_display_probe();
    let backends = wgpu::Backends::from_env().unwrap_or(wgpu::Backends::all());
    let instance = match catch_unwind(|| {
        wgpu::Instance::new(wgpu::InstanceDescriptor {
            backends,
            ..wgpu::InstanceDescriptor::new_without_display_handle()
        })
    }) {
        Ok(instance) => instance,
        Err(_) => return Vec::new(),
    };
    let Ok(found) = catch_unwind(AssertUnwindSafe(|| {
        pollster::block_on(instance.enumerate_adapters(backends))
    })) else {
        return Vec::new();
    };
    let mut adapters: Vec<(wgpu::AdapterInfo, wgpu::Adapter)> =
        found.into_iter().map(|a| (a.get_info(), a)).collect();
    adapters.sort_by(|(a, _), (b, _)| {
        (backend_rank(a.backend), &a.name).cmp(&(backend_rank(b.backend), &b.name))
    });
    adapters
        .into_iter()
        .enumerate()
        .map(|(index, (info, adapter))| open_adapter(index, &info, &adapter))
        .collect()
}

fn open_adapter(
    index: usize,
    raw: &wgpu::AdapterInfo,
    adapter: &wgpu::Adapter,
) -> Result<Device, GpuError> {
    let open_error = |message: String| GpuError::Open {
        adapter: raw.name.clone(),
        backend: raw.backend.to_str().to_owned(),
        message,
    };
    let limits = adapter.limits();
    let wanted = wgpu::Features::SHADER_F64 | wgpu::Features::SHADER_F16;
    let features = adapter.features() & wanted;
    let desc = wgpu::DeviceDescriptor {
        label: Some("dagger"),
        required_features: features,
        required_limits: limits.clone(),
        experimental_features: wgpu::ExperimentalFeatures::disabled(),
        memory_hints: wgpu::MemoryHints::Performance,
        trace: wgpu::Trace::Off,
    };
    let (device, queue) = catch_unwind(AssertUnwindSafe(|| {
        pollster::block_on(adapter.request_device(&desc))
    }))
    .map_err(|p| open_error(format!("request_device panicked: {}", panic_text(&p))))?
    .map_err(|e| open_error(e.to_string()))?;

    let shader_f64 = features.contains(wgpu::Features::SHADER_F64);
    let shader_f16 = features.contains(wgpu::Features::SHADER_F16);
    let mut capabilities = naga::valid::Capabilities::all();
    capabilities.set(naga::valid::Capabilities::FLOAT64, shader_f64);
    capabilities.set(naga::valid::Capabilities::SHADER_FLOAT16, shader_f16);
    let device_type = DeviceType::from(raw.device_type);
    let info = DeviceInfo {
        index,
        name: raw.name.clone(),
        backend: raw.backend.to_str().to_owned(),
        device_type,
        is_software: device_type == DeviceType::Cpu,
        shader_f64,
        shader_f16,
        max_storage_binding_size: limits.max_storage_buffer_binding_size,
        max_buffer_size: limits.max_buffer_size,
        max_uniform_binding_size: limits.max_uniform_buffer_binding_size,
        max_compute_workgroups_per_dimension: limits.max_compute_workgroups_per_dimension,
        max_compute_invocations_per_workgroup: limits.max_compute_invocations_per_workgroup,
        driver: [raw.driver.as_str(), raw.driver_info.as_str()]
            .iter()
            .filter(|s| !s.is_empty())
            .copied()
            .collect::<Vec<_>>()
            .join(" "),
    };

    let lost: Arc<OnceLock<String>> = Arc::default();
    let uncaptured: Arc<Mutex<Vec<String>>> = Arc::default();
    {
        let lost = Arc::clone(&lost);
        device.set_device_lost_callback(move |reason, message| {
            let _ = lost.set(format!("{reason:?}: {message}"));
        });
        let uncaptured = Arc::clone(&uncaptured);
        device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
            uncaptured.lock().push(e.to_string());
        }));
    }
    let core = Arc::new(Core {
        uid: NEXT_UID.fetch_add(1, Ordering::Relaxed),
        info,
        device,
        capabilities,
        pool: Mutex::default(),
        stats: Counters::default(),
        lost,
        uncaptured,
        pipelines: Mutex::new(HashMap::new()),
        server_thread: OnceLock::new(),
        driver: (raw.backend == wgpu::Backend::Gl).then(|| ReentrantMutex::new(())),
    });
    let (tx, rx) = crossbeam_channel::unbounded();
    let thread = {
        let core = Arc::clone(&core);
        std::thread::Builder::new()
            .name(format!("dagger-wgpu-{index}"))
            .spawn(move || server::run(core, queue, rx))
            .map_err(|e| open_error(format!("could not start the server thread: {e}")))?
    };
    Ok(Device {
        shared: Arc::new(Shared {
            core,
            tx,
            thread: Mutex::new(Some(thread)),
        }),
    })
}

fn panic_text(p: &Box<dyn std::any::Any + Send>) -> String {
    p.downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".to_owned())
}

fn source_hash(source: &str) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    source.hash(&mut h);
    h.finish()
}

impl Device {
    fn core(&self) -> &Arc<Core> {
        &self.shared.core
    }

    fn send(&self, cmd: Command) -> Result<(), GpuError> {
        self.shared.tx.send(cmd).map_err(|_| GpuError::ServerGone {
            device: self.core().info.name.clone(),
        })
    }

    fn server_gone(&self) -> GpuError {
        self.core()
            .lost_error()
            .unwrap_or_else(|| GpuError::ServerGone {
                device: self.core().info.name.clone(),
            })
    }

    fn check_owned(&self, what: impl FnOnce() -> String, buf: &GpuBuffer) -> Result<(), GpuError> {
        if buf.inner.core.uid != self.core().uid {
            return Err(GpuError::WrongDevice {
                what: what(),
                owner: buf.device_index(),
                device: self.core().info.index,
            });
        }
        Ok(())
    }

    /// Name, backend, features and limits of this device.
    pub fn info(&self) -> &DeviceInfo {
        &self.core().info
    }

    /// Whether two handles refer to the same opened device.
    pub fn same_device(&self, other: &Device) -> bool {
        Arc::ptr_eq(&self.shared, &other.shared)
    }

    /// Copies `data` into a new pooled storage buffer.
    ///
    /// The bytes are copied into a staging buffer on the calling thread; the copy into the
    /// storage buffer is enqueued, so the call returns before the GPU has run it, and later
    /// launches see the data. Zero-length data gives a zero-length buffer (4 bytes on the
    /// device).
    ///
    /// # Errors
    ///
    /// [`GpuError::BufferTooLarge`] above `max_buffer_size`, [`GpuError::OutOfMemory`],
    /// [`GpuError::DeviceLost`].
    pub fn upload<T: bytemuck::Pod>(&self, data: &[T]) -> Result<GpuBuffer, GpuError> {
        let core = self.core();
        let bytes: &[u8] = bytemuck::cast_slice(data);
        let len = bytes.len() as u64;
        let dst = Arc::new(core.alloc(len)?);
        if len > 0 {
            let size = len.next_multiple_of(4);
            let (staging, err) = core.scoped(|| {
                core.device.create_buffer(&wgpu::BufferDescriptor {
                    label: Some("dagger upload staging"),
                    size,
                    usage: wgpu::BufferUsages::COPY_SRC,
                    mapped_at_creation: true,
                })
            });
            if let Some(e) = err {
                return Err(core.wgpu_error("creating an upload buffer", size, e));
            }
            let driver = core.driver();
            {
                let mut view = staging.get_mapped_range_mut(..).map_err(|e| {
                    core.or_lost(GpuError::Wgpu {
                        operation: "mapping an upload buffer".to_owned(),
                        message: e.to_string(),
                    })
                })?;
                view.slice(..bytes.len()).copy_from_slice(bytes);
            }
            staging.unmap();
            drop(driver);
            self.send(Command::Upload {
                staging,
                dst: Arc::clone(&dst),
            })?;
        }
        Counters::add(&core.stats.uploads, 1);
        Counters::add(&core.stats.upload_bytes, len);
        Ok(GpuBuffer { inner: dst })
    }

    /// Reads a buffer back, after everything enqueued before this call has run.
    ///
    /// Blocks the calling thread; the server only copies into a mapped staging buffer, and the
    /// bytes are copied out on the calling thread. Bit-exact.
    ///
    /// # Errors
    ///
    /// [`GpuError::ElementSize`] if `size_of::<T>()` does not divide the buffer's length,
    /// [`GpuError::WrongDevice`], [`GpuError::DeviceLost`], [`GpuError::Reentrant`] from a
    /// completion callback of this device.
    pub fn download<T: bytemuck::Pod>(&self, buf: &GpuBuffer) -> Result<Vec<T>, GpuError> {
        let core = self.core();
        core.check_alive()?;
        core.check_not_server("download")?;
        self.check_owned(|| "the buffer to download".to_owned(), buf)?;
        let len = buf.len_bytes();
        let elem = std::mem::size_of::<T>();
        if elem == 0 || !len.is_multiple_of(elem as u64) {
            return Err(GpuError::ElementSize {
                bytes: len,
                elem_size: elem,
            });
        }
        let mut out = vec![T::zeroed(); (len / elem as u64) as usize];
        if len > 0 {
            let (reply, rx) = crossbeam_channel::bounded(1);
            self.send(Command::Download {
                src: Arc::clone(&buf.inner),
                reply,
            })?;
            let staging = rx.recv().map_err(|_| self.server_gone())??;
            // Taken after the reply: the server needs the driver to answer.
            let _driver = core.driver();
            {
                let view = staging.get_mapped_range(..).map_err(|e| {
                    core.or_lost(GpuError::Wgpu {
                        operation: "reading a download buffer".to_owned(),
                        message: e.to_string(),
                    })
                })?;
                bytemuck::cast_slice_mut::<T, u8>(&mut out).copy_from_slice(&view[..len as usize]);
            }
            staging.unmap();
            drop(staging);
        }
        Counters::add(&core.stats.downloads, 1);
        Counters::add(&core.stats.download_bytes, len);
        Ok(out)
    }

    /// A storage buffer of `bytes` bytes from the pool, **uninitialised**: it may hold data of
    /// an earlier buffer of this device. Use [`Device::zeroed`] for zeros.
    ///
    /// # Errors
    ///
    /// [`GpuError::BufferTooLarge`], [`GpuError::OutOfMemory`], [`GpuError::DeviceLost`].
    pub fn alloc(&self, bytes: u64) -> Result<GpuBuffer, GpuError> {
        Ok(GpuBuffer {
            inner: Arc::new(self.core().alloc(bytes)?),
        })
    }

    /// A storage buffer of `bytes` zero bytes (cleared on the device, in order with other
    /// work).
    ///
    /// # Errors
    ///
    /// As [`Device::alloc`].
    pub fn zeroed(&self, bytes: u64) -> Result<GpuBuffer, GpuError> {
        let dst = Arc::new(self.core().alloc(bytes)?);
        self.send(Command::Zero {
            dst: Arc::clone(&dst),
        })?;
        Ok(GpuBuffer { inner: dst })
    }

    /// A new buffer with the contents `src` will have once the work enqueued before this call
    /// has run (a device-local copy; useful for copy-on-write).
    ///
    /// # Errors
    ///
    /// [`GpuError::WrongDevice`] and those of [`Device::alloc`].
    pub fn copy(&self, src: &GpuBuffer) -> Result<GpuBuffer, GpuError> {
        self.check_owned(|| "the buffer to copy".to_owned(), src)?;
        let dst = Arc::new(self.core().alloc(src.len_bytes())?);
        self.send(Command::Copy {
            src: Arc::clone(&src.inner),
            dst: Arc::clone(&dst),
        })?;
        Ok(GpuBuffer { inner: dst })
    }

    /// Moves a copy of `buf` (held by this device) to device `to`: a device-local copy when
    /// `to` is this device, otherwise a download here and an upload there through host memory.
    ///
    /// # Errors
    ///
    /// Those of [`Device::download`] and [`Device::upload`].
    pub fn transfer(&self, buf: &GpuBuffer, to: &Device) -> Result<GpuBuffer, GpuError> {
        if self.same_device(to) {
            return self.copy(buf);
        }
        let bytes = self.download::<u8>(buf)?;
        to.upload(&bytes)
    }

    /// Compiles a compute entry point, or returns the cached pipeline for the same source and
    /// entry point.
    ///
    /// The source is validated with naga against this device's capabilities first (errors
    /// quote naga with the line and column), then compiled with an automatic layout.
    ///
    /// # Errors
    ///
    /// [`GpuError::Shader`] for invalid WGSL, a missing entry point or an unsupported binding
    /// (textures, groups other than 0); [`GpuError::MissingFeature`] for WGSL that is valid
    /// but needs `f64`/`f16` this device lacks; [`GpuError::Wgpu`] if the driver rejects it;
    /// [`GpuError::DeviceLost`].
    pub fn compile(&self, source: &str, entry_point: &str) -> Result<Pipeline, GpuError> {
        let core = self.core();
        core.check_alive()?;
        let key = (source_hash(source), entry_point.to_owned());
        if let Some((cached_source, pipeline)) = core.pipelines.lock().get(&key) {
            if **cached_source == *source {
                Counters::add(&core.stats.compile_cache_hits, 1);
                return Ok(pipeline.clone());
            }
        }
        let (module, module_info) = match validate_wgsl_with(source, core.capabilities) {
            Ok(valid) => valid,
            Err(e) => return Err(self.explain_shader_error(source, e)),
        };
        let reflection = reflect(&module, &module_info, entry_point)?;
        let (made, err) = core.scoped(|| {
            let module = core
                .device
                .create_shader_module(wgpu::ShaderModuleDescriptor {
                    label: Some(entry_point),
                    source: wgpu::ShaderSource::Wgsl(source.into()),
                });
            let pipeline = core
                .device
                .create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                    label: Some(entry_point),
                    layout: None,
                    module: &module,
                    entry_point: Some(entry_point),
                    compilation_options: Default::default(),
                    cache: None,
                });
            let layout =
                (!reflection.bindings.is_empty()).then(|| pipeline.get_bind_group_layout(0));
            (pipeline, layout)
        });
        if let Some(e) = err {
            return Err(core.wgpu_error(&format!("compiling `{entry_point}`"), 0, e));
        }
        let (pipeline, layout) = made;
        let pipeline = Pipeline {
            inner: Arc::new(PipelineInner {
                device_uid: core.uid,
                device_index: core.info.index,
                entry_point: entry_point.to_owned(),
                pipeline,
                layout,
                bindings: reflection.bindings,
                workgroup_size: reflection.workgroup_size,
            }),
        };
        Counters::add(&core.stats.compiles, 1);
        core.pipelines
            .lock()
            .entry(key)
            .or_insert_with(|| (Arc::from(source), pipeline.clone()));
        Ok(pipeline)
    }

    /// Turns a validation failure that only this device's missing features cause into
    /// [`GpuError::MissingFeature`].
    fn explain_shader_error(&self, source: &str, e: ShaderError) -> GpuError {
        let info = self.info();
        if !matches!(e, ShaderError::Validation { .. }) || (info.shader_f64 && info.shader_f16) {
            return e.into();
        }
        use naga::valid::Capabilities as Caps;
        let passes =
            |extra: Caps| validate_wgsl_with(source, self.core().capabilities | extra).is_ok();
        let missing = if passes(Caps::FLOAT64) && !info.shader_f64 {
            "shader_f64"
        } else if passes(Caps::SHADER_FLOAT16) && !info.shader_f16 {
            "shader_f16"
        } else if passes(Caps::FLOAT64 | Caps::SHADER_FLOAT16) {
            "shader_f64 and shader_f16"
        } else {
            return e.into();
        };
        GpuError::MissingFeature {
            device: info.index,
            name: info.name.clone(),
            missing: missing.to_owned(),
            source: Box::new(e),
        }
    }

    /// Enqueues one dispatch of `pipeline` with `workgroups` workgroups, and returns at once.
    ///
    /// `bindings[k]` is bound at the `k`-th binding of [`Pipeline::bindings`] (binding indices
    /// in increasing order; for a shader using bindings 0..n that is binding `k`). `on_done`
    /// runs on the server thread once the GPU has finished the batch holding this launch, with
    /// the error wgpu raised for it if any; the buffers stay alive until then even if their
    /// handles are dropped.
    ///
    /// # Errors
    ///
    /// Checked before anything is enqueued (then `on_done` is not called):
    /// [`GpuError::BindingCount`], [`GpuError::BindingKind`], [`GpuError::WrongDevice`] (a
    /// buffer or the pipeline from another device), [`GpuError::BindingTooLarge`] (a storage
    /// buffer above `max_storage_binding_size`), [`GpuError::UniformTooSmall`],
    /// [`GpuError::UniformTooLarge`], [`GpuError::TooManyWorkgroups`],
    /// [`GpuError::DeviceLost`].
    pub fn launch(
        &self,
        pipeline: &Pipeline,
        bindings: &[Binding<'_>],
        workgroups: [u32; 3],
        on_done: impl FnOnce(Result<(), GpuError>) + Send + 'static,
    ) -> Result<(), GpuError> {
        let core = self.core();
        core.check_alive()?;
        let p = &pipeline.inner;
        if p.device_uid != core.uid {
            return Err(GpuError::WrongDevice {
                what: format!("the pipeline `{}`", p.entry_point),
                owner: p.device_index,
                device: core.info.index,
            });
        }
        if bindings.len() != p.bindings.len() {
            return Err(GpuError::BindingCount {
                entry_point: p.entry_point.clone(),
                expected: p.bindings.len(),
                indices: p.bindings.iter().map(|b| b.binding).collect(),
                got: bindings.len(),
            });
        }
        let mut resources = Vec::with_capacity(bindings.len());
        for (declared, given) in p.bindings.iter().zip(bindings) {
            let index = declared.binding;
            let resource = match (declared.kind, given) {
                (kind, Binding::Storage(buf)) if kind.is_storage() => {
                    self.check_owned(|| format!("the buffer at binding {index}"), buf)?;
                    core.info.check_storage_binding(index, buf.len_bytes())?;
                    Resource::Buffer(Arc::clone(&buf.inner))
                }
                (BindingKind::Uniform, Binding::Uniform(bytes)) => {
                    let len = bytes.len() as u64;
                    if len < declared.min_bytes {
                        return Err(GpuError::UniformTooSmall {
                            binding: index,
                            bytes: len,
                            needed: declared.min_bytes,
                        });
                    }
                    if len > core.info.max_uniform_binding_size {
                        return Err(GpuError::UniformTooLarge {
                            binding: index,
                            bytes: len,
                            limit: core.info.max_uniform_binding_size,
                        });
                    }
                    Resource::Uniform(bytes.to_vec())
                }
                (kind, given) => {
                    return Err(GpuError::BindingKind {
                        binding: index,
                        expected: kind.describe(),
                        got: given.describe(),
                    })
                }
            };
            resources.push((index, resource));
        }
        core.info.check_workgroups(workgroups)?;
        self.send(Command::Launch(Box::new(Launch {
            pipeline: pipeline.clone(),
            resources,
            workgroups,
            on_done: Box::new(on_done),
        })))?;
        Counters::add(&core.stats.launches, 1);
        Ok(())
    }

    /// [`Device::launch`] and wait for it to finish.
    ///
    /// # Errors
    ///
    /// Those of [`Device::launch`], the error the launch finished with, and
    /// [`GpuError::Reentrant`] from a completion callback of this device.
    pub fn launch_blocking(
        &self,
        pipeline: &Pipeline,
        bindings: &[Binding<'_>],
        workgroups: [u32; 3],
    ) -> Result<(), GpuError> {
        self.core().check_not_server("launch_blocking")?;
        let (tx, rx) = crossbeam_channel::bounded(1);
        self.launch(pipeline, bindings, workgroups, move |r| {
            let _ = tx.send(r);
        })?;
        rx.recv().map_err(|_| self.server_gone())?
    }

    /// The blocking form of an enqueueing call: runs `enqueue` with a sender for its
    /// completion result and waits for that result. Fails with [`GpuError::Reentrant`]
    /// before `enqueue` runs when called from a completion callback of this device, where
    /// waiting would deadlock.
    pub(crate) fn wait_for<E: From<GpuError>>(
        &self,
        what: &'static str,
        enqueue: impl FnOnce(crossbeam_channel::Sender<Result<(), GpuError>>) -> Result<(), E>,
    ) -> Result<(), E> {
        self.core().check_not_server(what)?;
        let (tx, rx) = crossbeam_channel::bounded(1);
        enqueue(tx)?;
        rx.recv().map_err(|_| self.server_gone())??;
        Ok(())
    }

    /// Waits until everything enqueued on this device before the call has finished and its
    /// callbacks have run.
    ///
    /// # Errors
    ///
    /// [`GpuError::DeviceLost`], [`GpuError::Reentrant`] from a completion callback of this
    /// device.
    #[doc(alias = "flush")]
    pub fn synchronize(&self) -> Result<(), GpuError> {
        let core = self.core();
        core.check_alive()?;
        core.check_not_server("synchronize")?;
        let (reply, rx) = crossbeam_channel::bounded(1);
        self.send(Command::Fence { reply })?;
        rx.recv().map_err(|_| self.server_gone())?
    }

    /// Same as [`Device::synchronize`].
    ///
    /// # Errors
    ///
    /// Those of [`Device::synchronize`].
    pub fn flush(&self) -> Result<(), GpuError> {
        self.synchronize()
    }

    /// A snapshot of this device's counters.
    pub fn stats(&self) -> DeviceStats {
        self.core().stats.snapshot()
    }

    /// Bytes held idle in the pool, ready for reuse.
    pub fn pool_idle_bytes(&self) -> u64 {
        self.core().pool.lock().idle_bytes()
    }

    /// Frees every idle buffer of the pool (buffers in use are unaffected).
    pub fn trim_pool(&self) {
        self.core().trim_pool();
    }

    /// Destroys the device now, as a driver reset would: work not yet finished and every later
    /// call fail with [`GpuError::DeviceLost`]. Meant for tests of loss handling.
    pub fn destroy(&self) {
        let core = self.core();
        let _ = core.lost.set("destroyed by Device::destroy".to_owned());
        let _driver = core.driver();
        core.device.destroy();
    }

    /// Whether the device has been lost.
    pub fn is_lost(&self) -> bool {
        self.core().lost.get().is_some()
    }
}

/// Gives the process a private, empty `XDG_RUNTIME_DIR` when it has none (see
/// [`open_devices`]); once per process, before the first probe.
fn quiet_display_probe() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        #[cfg(unix)]
        if std::env::var_os("XDG_RUNTIME_DIR").is_none() {
            if let Some(dir) = private_runtime_dir() {
                std::env::set_var("XDG_RUNTIME_DIR", &dir);
            }
        }
    });
}

/// `dagger-runtime-<uid>` under the temporary directory, shared by this user's processes so
/// that none leaves a directory behind: made with mode 0700 if it is not there, and used only
/// if it is a real directory (not a link) that this user owns and no one else may enter.
#[cfg(unix)]
fn private_runtime_dir() -> Option<std::path::PathBuf> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
    // The user this process runs as owns its own /proc entry.
    let uid = std::fs::metadata("/proc/self").ok()?.uid();
    let dir = std::env::temp_dir().join(format!("dagger-runtime-{uid}"));
    let _ = std::fs::DirBuilder::new().mode(0o700).create(&dir);
    let meta = std::fs::symlink_metadata(&dir).ok()?;
    let private = meta.is_dir() && meta.uid() == uid && meta.permissions().mode() & 0o077 == 0;
    private.then_some(dir)
}
