//! [`GpuBuffer`]: an owned storage buffer on one device, returned to that device's pool when
//! dropped.

use std::fmt;
use std::sync::Arc;

use crate::core::Core;

/// A storage buffer on one device.
///
/// Owned, `Send + Sync`, and deliberately not `Clone`: a second buffer with the same contents
/// is [`crate::Device::copy`]; to share one buffer between owners, put it in an `Arc`.
/// Work enqueued on it keeps the device memory alive until that work is done, so dropping a
/// `GpuBuffer` right after a launch is fine. When the last use is over, the memory goes back
/// to the device's pool at once, ready for the next request of the same size class.
///
/// The device allocation is at least 4 bytes and rounded up to a size class; bindings use the
/// logical length rounded up to 4 bytes (so a zero-length buffer binds as 4 bytes).
pub struct GpuBuffer {
    pub(crate) inner: Arc<BufferInner>,
}

impl GpuBuffer {
    /// Logical length in bytes (what was uploaded or asked for).
    pub fn len_bytes(&self) -> u64 {
        self.inner.len
    }

    /// Whether the logical length is zero.
    pub fn is_empty(&self) -> bool {
        self.inner.len == 0
    }

    /// Index of the device that holds this buffer ([`crate::DeviceInfo::index`]).
    pub fn device_index(&self) -> usize {
        self.inner.core.info.index
    }

    /// Bytes the device actually allocated for it (its pool size class).
    pub fn capacity_bytes(&self) -> u64 {
        self.inner.class
    }
}

impl fmt::Debug for GpuBuffer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GpuBuffer")
            .field("device", &self.inner.core.info.index)
            .field("len_bytes", &self.inner.len)
            .field("capacity_bytes", &self.inner.class)
            .finish()
    }
}

/// The device buffer behind a [`GpuBuffer`]; in-flight commands hold extra references.
pub(crate) struct BufferInner {
    pub(crate) core: Arc<Core>,
    buffer: Option<wgpu::Buffer>,
    pub(crate) class: u64,
    pub(crate) len: u64,
}

impl BufferInner {
    pub(crate) fn new(core: Arc<Core>, buffer: wgpu::Buffer, class: u64, len: u64) -> Self {
        Self {
            core,
            buffer: Some(buffer),
            class,
            len,
        }
    }

    pub(crate) fn raw(&self) -> &wgpu::Buffer {
        self.buffer.as_ref().expect("buffer is present until drop")
    }

    /// Size used for bindings and copies: the logical length rounded up to 4, at least 4.
    pub(crate) fn padded_len(&self) -> u64 {
        self.len.max(4).next_multiple_of(4)
    }
}

impl Drop for BufferInner {
    fn drop(&mut self) {
        if let Some(buffer) = self.buffer.take() {
            self.core.recycle(self.class, buffer);
        }
    }
}
