//! Per-device counters: [`DeviceStats`] is a snapshot of them.

use std::sync::atomic::{AtomicU64, Ordering};

/// A snapshot of a device's counters since it was opened.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct DeviceStats {
    /// Host-to-device uploads.
    pub uploads: u64,
    /// Bytes uploaded.
    pub upload_bytes: u64,
    /// Device-to-host downloads.
    pub downloads: u64,
    /// Bytes downloaded.
    pub download_bytes: u64,
    /// Kernel launches enqueued.
    pub launches: u64,
    /// Command buffers submitted. Batching shows as `launches > submits`.
    pub submits: u64,
    /// Buffer requests served from the pool.
    pub pool_hits: u64,
    /// Buffer requests that created a new device buffer.
    pub pool_misses: u64,
    /// Bytes of device storage buffers alive: idle in the pool plus in use.
    pub bytes_allocated: u64,
    /// Pipelines compiled.
    pub compiles: u64,
    /// `compile` calls answered from the pipeline cache.
    pub compile_cache_hits: u64,
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) uploads: AtomicU64,
    pub(crate) upload_bytes: AtomicU64,
    pub(crate) downloads: AtomicU64,
    pub(crate) download_bytes: AtomicU64,
    pub(crate) launches: AtomicU64,
    pub(crate) submits: AtomicU64,
    pub(crate) pool_hits: AtomicU64,
    pub(crate) pool_misses: AtomicU64,
    pub(crate) bytes_allocated: AtomicU64,
    pub(crate) compiles: AtomicU64,
    pub(crate) compile_cache_hits: AtomicU64,
}

impl Counters {
    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn sub(counter: &AtomicU64, n: u64) {
        counter.fetch_sub(n, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> DeviceStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        DeviceStats {
            uploads: get(&self.uploads),
            upload_bytes: get(&self.upload_bytes),
            downloads: get(&self.downloads),
            download_bytes: get(&self.download_bytes),
            launches: get(&self.launches),
            submits: get(&self.submits),
            pool_hits: get(&self.pool_hits),
            pool_misses: get(&self.pool_misses),
            bytes_allocated: get(&self.bytes_allocated),
            compiles: get(&self.compiles),
            compile_cache_hits: get(&self.compile_cache_hits),
        }
    }
}
