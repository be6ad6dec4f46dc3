//! The state shared by a device's handles, its buffers and its server thread.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};
use std::thread::ThreadId;

use parking_lot::{Mutex, ReentrantMutex, ReentrantMutexGuard};

use crate::buffer::BufferInner;
use crate::error::GpuError;
use crate::info::DeviceInfo;
use crate::pipeline::Pipeline;
use crate::pool::{size_class, Pool, POOL_IDLE_CAP};
use crate::stats::Counters;

/// Usage of every pooled storage buffer.
pub(crate) const STORAGE_USAGE: wgpu::BufferUsages = wgpu::BufferUsages::STORAGE
    .union(wgpu::BufferUsages::COPY_SRC)
    .union(wgpu::BufferUsages::COPY_DST);

/// Cache key of a compiled pipeline: hash of the source and the entry point.
pub(crate) type PipelineKey = (u64, String);

pub(crate) struct Core {
    /// Unique among all devices opened by this process (indices repeat between
    /// `open_devices` calls; this does not).
    pub(crate) uid: u64,
    pub(crate) info: DeviceInfo,
    pub(crate) device: wgpu::Device,
    pub(crate) capabilities: naga::valid::Capabilities,
    pub(crate) pool: Mutex<Pool>,
    pub(crate) stats: Counters,
    /// Set once, by wgpu's device-lost callback or by `Device::destroy`.
    pub(crate) lost: Arc<OnceLock<String>>,
    /// Errors wgpu raised outside any error scope since the server last looked.
    pub(crate) uncaptured: Arc<Mutex<Vec<String>>>,
    pub(crate) pipelines: Mutex<HashMap<PipelineKey, (Arc<str>, Pipeline)>>,
    pub(crate) server_thread: OnceLock<ThreadId>,
    /// Held by every call of this crate into a driver that admits one thread at a time
    /// (GL): see [`driver`](Self::driver).
    pub(crate) driver: Option<ReentrantMutex<()>>,
}

impl Core {
    pub(crate) fn lost_error(&self) -> Option<GpuError> {
        self.lost.get().map(|reason| GpuError::DeviceLost {
            device: self.info.name.clone(),
            reason: reason.clone(),
        })
    }

    /// `e`, unless the device has been lost meanwhile: then the loss, which is the cause
    /// (a destroyed device destroys its buffers, and wgpu reports those instead).
    pub(crate) fn or_lost(&self, e: GpuError) -> GpuError {
        self.lost_error().unwrap_or(e)
    }

    pub(crate) fn check_alive(&self) -> Result<(), GpuError> {
        self.lost_error().map_or(Ok(()), Err)
    }

    /// Fails if called on this device's server thread, where blocking on the device would
    /// wait for itself.
    pub(crate) fn check_not_server(&self, what: &'static str) -> Result<(), GpuError> {
        if self.server_thread.get() == Some(&std::thread::current().id()) {
            return Err(GpuError::Reentrant {
                device: self.info.name.clone(),
                what,
            });
        }
        Ok(())
    }

    /// The driver to the calling thread alone, on a backend whose driver admits one thread
    /// at a time (GL); `None` elsewhere.
    ///
    /// wgpu's GL backend guards its context with a lock that panics after six seconds of
    /// waiting, and its holder may keep it that long: llvmpipe compiling a large shader
    /// with a cold shader cache on a loaded machine, or a long kernel being waited for.
    /// The threads of this crate (workers moving data in, the server submitting and
    /// waiting) therefore queue here, without a deadline, before they call into the
    /// device. Never held while waiting for another thread.
    pub(crate) fn driver(&self) -> Option<ReentrantMutexGuard<'_, ()>> {
        self.driver.as_ref().map(ReentrantMutex::lock)
    }

    /// Runs `f` inside error scopes for validation, out-of-memory and internal errors, on the
    /// calling thread, and returns the first error wgpu raised in it. Holds the
    /// [`driver`](Self::driver) meanwhile.
    pub(crate) fn scoped<R>(&self, f: impl FnOnce() -> R) -> (R, Option<wgpu::Error>) {
        let _driver = self.driver();
        let validation = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let oom = self.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let internal = self.device.push_error_scope(wgpu::ErrorFilter::Internal);
        let r = f();
        let e3 = pollster::block_on(internal.pop());
        let e2 = pollster::block_on(oom.pop());
        let e1 = pollster::block_on(validation.pop());
        (r, e2.or(e1).or(e3))
    }

    /// Maps a wgpu error of `operation` to a `GpuError`, preferring device loss.
    pub(crate) fn wgpu_error(&self, operation: &str, bytes: u64, e: wgpu::Error) -> GpuError {
        if let Some(lost) = self.lost_error() {
            return lost;
        }
        match e {
            wgpu::Error::OutOfMemory { .. } => GpuError::OutOfMemory {
                device: self.info.name.clone(),
                bytes,
                message: e.to_string(),
            },
            other => GpuError::Wgpu {
                operation: operation.to_owned(),
                message: other.to_string(),
            },
        }
    }

    /// A storage buffer of at least `bytes` bytes (contents unspecified) from the pool, or a
    /// new one.
    pub(crate) fn alloc(self: &Arc<Self>, bytes: u64) -> Result<BufferInner, GpuError> {
        self.check_alive()?;
        let limit = self.info.max_buffer_size;
        if bytes > limit {
            return Err(GpuError::BufferTooLarge { bytes, limit });
        }
        let mut class = size_class(bytes);
        if class > limit {
            class = bytes.max(4).next_multiple_of(4);
        }
        let pooled = self.pool.lock().take(class);
        let buffer = match pooled {
            Some(buffer) => {
                Counters::add(&self.stats.pool_hits, 1);
                buffer
            }
            None => {
                Counters::add(&self.stats.pool_misses, 1);
                let (buffer, err) = self.scoped(|| {
                    self.device.create_buffer(&wgpu::BufferDescriptor {
                        label: Some("dagger pooled storage"),
                        size: class,
                        usage: STORAGE_USAGE,
                        mapped_at_creation: false,
                    })
                });
                if let Some(e) = err {
                    return Err(self.wgpu_error("creating a storage buffer", class, e));
                }
                Counters::add(&self.stats.bytes_allocated, class);
                buffer
            }
        };
        Ok(BufferInner::new(Arc::clone(self), buffer, class, bytes))
    }

    /// Takes back a buffer whose last user is gone: keeps it idle in the pool, or frees it if
    /// the pool is full or the device is lost.
    pub(crate) fn recycle(&self, class: u64, buffer: wgpu::Buffer) {
        let evicted = if self.lost.get().is_some() {
            Some(buffer)
        } else {
            self.pool.lock().put(class, buffer, POOL_IDLE_CAP)
        };
        if let Some(buffer) = evicted {
            let _driver = self.driver();
            buffer.destroy();
            Counters::sub(&self.stats.bytes_allocated, class);
        }
    }

    /// Frees every idle pooled buffer.
    pub(crate) fn trim_pool(&self) {
        let (buffers, bytes) = self.pool.lock().drain();
        let _driver = self.driver();
        for b in buffers {
            b.destroy();
        }
        Counters::sub(&self.stats.bytes_allocated, bytes);
    }
}
