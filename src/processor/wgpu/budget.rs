//! Device memory budgets: what a context keeps on each GPU, held under that GPU's budget.
//!
//! Every buffer a context keeps on a device between tasks is a [`Resident`] of the device's
//! [`DeviceMemory`]: the result of a kernel (an array whose own copy is on the device), or
//! a copy of a value that lives elsewhere (a host value uploaded once, or an array of
//! another device). Residents are ordered by last use. A task is *admitted* before its
//! kernel is enqueued: its inputs that are on the device are pinned, room is made for the
//! others and for its output by evicting the least recently used residents that nothing
//! pins, then the missing inputs are uploaded. Evicting a copy frees it; evicting an
//! array's own copy first downloads it to host memory (unless a host copy exists), where it
//! stays readable and from where it is uploaded again when a task needs it on the device.
//! Pins last until the kernel has finished, so a buffer a kernel uses is never evicted.
//!
//! An array's host copy is a value of the context's host [`Store`]: under a host memory
//! limit it counts against the limit and may be spilled to disk like any other value, so
//! values that live only on the device move to host memory, and on to disk. Every eviction
//! is an [`EventKind::GpuEvict`](crate::EventKind::GpuEvict) in the event log.
//!
//! A task that cannot fit even on an empty device fails with
//! [`GpuMemoryError::TaskTooLarge`]; one whose room is held by running kernels waits for
//! them to finish.

use std::any::Any;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::time::{Duration, Instant};

use dagger_wgpu::{Device, GpuBuffer, GpuError};
use parking_lot::{Condvar, Mutex};

use crate::storage::{ReloadError, Slot, Store};
use crate::value::Value;

/// How a GPU's memory fared under its budget in one context (see
/// [`Context::gpu_memory_stats`](crate::Context::gpu_memory_stats)).
///
/// Bytes are device allocations (buffer sizes rounded up to the device pool's size classes,
/// [`dagger_wgpu::allocation_size`]) of the buffers the context keeps on the device between
/// tasks and of the outputs of kernels being run; buffers idle in the device's pool (at most
/// [`dagger_wgpu::POOL_IDLE_CAP`], reused for the next buffers of their size) and a kernel's
/// small temporaries are not counted.
///
/// ```
/// use dagger::prelude::*;
/// use dagger::{Access, WgslKernel};
///
/// let double = WgslKernel::<(), f32>::builder("double_in_budget", "
///     @group(0) @binding(0) var<storage, read_write> x: array<f32>;
///     @compute @workgroup_size(64)
///     fn main(@builtin(global_invocation_id) id: vec3<u32>) {
///         if (id.x < arrayLength(&x)) { x[id.x] = 2.0 * x[id.x]; }
///     }", "main")
///     .inputs([Access::ReadWrite])
///     .workgroups(|_, lens| [(lens[0] as u32).div_ceil(64), 1, 1])
///     .build()?;
/// // Room for four 64 KiB arrays on GPU 0.
/// let ctx = Context::builder().threads(1).gpu_memory_budget_for(0, 256 << 10).build()?;
/// if ctx.gpu_memory_stats(0).is_some() {
///     let gpu = Options::new().scope(Scope::gpu(0));
///     // Eight results left on the device: the first ones move to host memory.
///     let results: Vec<_> = (0..8)
///         .map(|i| {
///             let x = ctx.to_chunk(vec![i as f32; 16 << 10]);
///             with_options(gpu.clone(), || ctx.spawn_kernel(&double, (), [(&x).into()]))
///         })
///         .collect::<Result<_, _>>()?;
///     for (i, r) in results.iter().enumerate() {
///         assert_eq!(r.fetch()?, vec![2.0 * i as f32; 16 << 10]);
///     }
///     let s = ctx.gpu_memory_stats(0).unwrap();
///     assert!(s.evictions > 0 && s.peak_resident_bytes <= 256 << 10, "{s:?}");
/// }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct GpuMemoryStats {
    /// The GPU's index (as [`Scope::gpu`](crate::Scope::gpu) numbers them).
    pub device: usize,
    /// Its budget in bytes (`None`: no budget).
    pub budget_bytes: Option<u64>,
    /// Bytes on the device now.
    pub resident_bytes: u64,
    /// The most ever on the device at once.
    pub peak_resident_bytes: u64,
    /// Buffers freed to stay under the budget.
    pub evictions: u64,
    /// Of those, arrays that lived only on the device and were downloaded first.
    pub downloads: u64,
    /// Bytes those downloads moved to host memory (where, under a host memory limit, they
    /// count against it and may be spilled to disk: see
    /// [`MemoryStats`](crate::storage::MemoryStats)).
    pub bytes_downloaded: u64,
    /// Evicted values uploaded again because a task needed them on the device.
    pub reloads: u64,
    /// Bytes those uploads moved.
    pub bytes_reloaded: u64,
    /// Tasks that waited for running kernels to free memory before starting.
    pub waits: u64,
    /// Tasks refused because their inputs and output alone exceed the budget.
    pub rejected: u64,
}

/// Why a task could not get room on a GPU.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum GpuMemoryError {
    /// The task's inputs and output alone are larger than the device's budget: no amount of
    /// eviction makes room. Raise the budget or use smaller blocks.
    #[error(
        "the task needs {} on gpu {device} for its inputs and output, more than the device's \
         memory budget of {}; raise the budget (ContextBuilder::gpu_memory_budget or \
         DAGGER_GPU_MEMORY_BUDGET) or use smaller blocks",
        human(*needed),
        human(*budget)
    )]
    TaskTooLarge {
        /// The GPU.
        device: usize,
        /// Its budget in bytes.
        budget: u64,
        /// The bytes the task needs on it.
        needed: u64,
    },
    /// Room for the task is held by values in use outside any task (read by another thread)
    /// and did not come free.
    #[error(
        "no room for {} on gpu {device} under its memory budget of {}: {} are in use outside \
         running tasks",
        human(*needed),
        human(*budget),
        human(*held)
    )]
    NoRoom {
        /// The GPU.
        device: usize,
        /// Its budget in bytes.
        budget: u64,
        /// The bytes the task still needed.
        needed: u64,
        /// The bytes on the device that could not be evicted.
        held: u64,
    },
}

/// A byte count as people read it: `512 B`, `64.0 KiB`, `1.5 GiB` (with the exact count
/// from 1 KiB up).
fn human(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut v = bytes as f64 / 1024.0;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    format!("{v:.1} {} ({bytes} bytes)", UNITS[u])
}

/// How an array's own copy goes to host memory.
pub(crate) type Download = fn(&Device, &GpuBuffer, usize) -> Result<Value, GpuError>;

/// An array's contents in host memory: a value of the host store (counted against its
/// limit, and spilled to disk under it) when the store manages values of its kind.
pub(crate) enum HostCopy {
    Plain(Value),
    Managed(Arc<Slot>),
}

impl HostCopy {
    /// The value, read back from disk if it was spilled.
    pub(crate) fn value(&self) -> Result<Value, ReloadError> {
        match self {
            HostCopy::Plain(v) => Ok(v.clone()),
            HostCopy::Managed(s) => s.get(),
        }
    }
}

/// Why an array's contents could not be had in host memory.
#[derive(Debug)]
pub(crate) enum ToHostError {
    /// Downloading them from the device failed.
    Gpu(GpuError),
    /// Reading their host copy back from disk failed.
    Reload(ReloadError),
}

/// What a resident is a copy of.
pub(crate) enum Owner {
    /// An array's own contents: evicting it downloads them (unless `host` has them).
    Array {
        /// The contents in host memory, once downloaded.
        host: OnceLock<HostCopy>,
        len: usize,
        download: Download,
    },
    /// A copy of a value held elsewhere (a host value, or an array of another device or
    /// context): evicting it only frees it.
    Copy,
}

/// Where a resident's contents are.
pub(crate) enum Place {
    /// On the device.
    Device(Arc<GpuBuffer>),
    /// Being evicted or uploaded: wait for it.
    Moving,
    /// Not on the device (evicted, or not uploaded yet).
    Host,
}

/// One buffer a context keeps on a device, counted against the device's budget while it
/// is there.
pub(crate) struct Resident {
    pub(crate) mem: Arc<DeviceMemory>,
    /// Its device allocation.
    pub(crate) bytes: u64,
    pub(crate) owner: Owner,
    /// Changed only under the memory's books.
    place: Mutex<Place>,
    /// Its key in the memory's order (0: not in it); changed under the books.
    tick: AtomicU64,
    /// Admitted tasks using it; changed under the books.
    pins: AtomicU32,
    /// Whether it was evicted since it was last on the device.
    evicted: AtomicBool,
}

impl Resident {
    /// A resident of `mem` not on the device yet.
    pub(crate) fn new(mem: &Arc<DeviceMemory>, bytes: u64, owner: Owner) -> Arc<Resident> {
        Arc::new(Resident {
            mem: mem.clone(),
            bytes,
            owner,
            place: Mutex::new(Place::Host),
            tick: AtomicU64::new(0),
            pins: AtomicU32::new(0),
            evicted: AtomicBool::new(false),
        })
    }

    /// Its buffer, when it is on the device now.
    pub(crate) fn buffer(&self) -> Option<Arc<GpuBuffer>> {
        match &*self.place.lock() {
            Place::Device(b) => Some(b.clone()),
            _ => None,
        }
    }

    /// Whether it is on the device now.
    pub(crate) fn on_device(&self) -> bool {
        matches!(*self.place.lock(), Place::Device(_))
    }

    /// Whether it is an array with a copy in host memory (or spilled from there to disk).
    pub(crate) fn has_host(&self) -> bool {
        matches!(&self.owner, Owner::Array { host, .. } if host.get().is_some())
    }

    /// An array's host copy, when it has one (read back from disk if it was spilled).
    pub(crate) fn host_value(&self) -> Option<Result<Value, ReloadError>> {
        match &self.owner {
            Owner::Array { host, .. } => host.get().map(HostCopy::value),
            Owner::Copy => None,
        }
    }

    /// The contents in host memory, downloading an array's own copy once (waiting for an
    /// eviction under way).
    pub(crate) fn to_host(&self, device: &Device) -> Result<Value, ToHostError> {
        let Owner::Array {
            host,
            len,
            download,
        } = &self.owner
        else {
            unreachable!("only an array's own copy is read back")
        };
        if let Some(h) = host.get() {
            return h.value().map_err(ToHostError::Reload);
        }
        let buf = {
            let mut b = self.mem.books.lock();
            loop {
                let on_device = match &*self.place.lock() {
                    Place::Device(buf) => Some(buf.clone()),
                    _ => None,
                };
                if let Some(buf) = on_device {
                    break buf;
                }
                if let Some(h) = host.get() {
                    // Evicted meanwhile: read the host copy without holding the books.
                    drop(b);
                    return h.value().map_err(ToHostError::Reload);
                }
                self.mem.changed.wait_for(&mut b, Duration::from_millis(50));
            }
        };
        let v = download(device, &buf, *len).map_err(ToHostError::Gpu)?;
        // Held while the copy is handed to the store, so that it is not spilled before the
        // caller has it.
        let held = v.clone();
        let copy = host.get_or_init(|| self.mem.host_copy(v));
        let out = copy.value().map_err(ToHostError::Reload);
        drop(held);
        out
    }
}

/// A resident as the books keep it, behind a trait object: proving the books `Send + Sync`
/// then stops here instead of walking wgpu's types through every buffer (which goes
/// deeper than the compiler's default limit).
pub(crate) trait Entry: Send + Sync {
    fn resident(self: Arc<Self>) -> Arc<Resident>;
}

impl Entry for Resident {
    fn resident(self: Arc<Self>) -> Arc<Resident> {
        self
    }
}

impl Drop for Resident {
    fn drop(&mut self) {
        let on_device = matches!(self.place.get_mut(), Place::Device(_));
        let tick = *self.tick.get_mut();
        if on_device || tick != 0 {
            let mut b = self.mem.books.lock();
            if tick != 0 {
                b.order.remove(&tick);
            }
            if on_device {
                b.resident -= self.bytes;
            }
        }
        self.mem.changed.notify_all();
    }
}

#[derive(Default)]
struct Books {
    /// Bytes on the device, and reserved for uploads and outputs under way.
    resident: u64,
    peak: u64,
    tick: u64,
    /// Residents on the device, least recently used first.
    order: BTreeMap<u64, Weak<dyn Entry>>,
    /// Admitted tasks whose kernels have not finished.
    running: u32,
    /// Residents being evicted or uploaded.
    moving: u32,
}

#[derive(Default)]
struct Counters {
    evictions: AtomicU64,
    downloads: AtomicU64,
    bytes_downloaded: AtomicU64,
    reloads: AtomicU64,
    bytes_reloaded: AtomicU64,
    waits: AtomicU64,
    rejected: AtomicU64,
}

/// A host value's copy on the device, kept while the value lives.
pub(crate) type Replica = (Weak<dyn Any + Send + Sync>, Arc<dyn Entry>);

/// What one context keeps on one device, under the device's budget.
pub(crate) struct DeviceMemory {
    pub(crate) device: usize,
    budget: Option<u64>,
    books: Mutex<Books>,
    /// Signalled when bytes are freed, pins released or a move ends.
    changed: Condvar,
    /// Copies of host values, by the value's address.
    pub(crate) replicas: Mutex<HashMap<usize, Replica>>,
    /// The context's host memory: where arrays' host copies are kept, and where evictions
    /// are reported to the event log.
    host: OnceLock<Arc<Store>>,
    stats: Counters,
}

impl std::fmt::Debug for DeviceMemory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceMemory")
            .field("device", &self.device)
            .field("budget", &self.budget)
            .finish_non_exhaustive()
    }
}

/// An input of a task being admitted: the resident it needs on the device, and how to
/// upload it if it is not there.
pub(crate) struct Need {
    pub(crate) resident: Arc<Resident>,
    pub(crate) upload: Box<dyn FnOnce() -> Result<GpuBuffer, crate::processor::MoveError> + Send>,
}

/// Why admission failed.
pub(crate) enum AdmitError {
    Budget(GpuMemoryError),
    Move(crate::processor::MoveError),
}

/// A task admitted on a device: its inputs pinned and room reserved for its output, until
/// it is dropped (after its kernel has finished).
pub(crate) struct Admission {
    mem: Arc<DeviceMemory>,
    pinned: Vec<Arc<Resident>>,
    /// Bytes reserved for the output and not yet taken by it.
    reserved: u64,
    /// The buffers of the needs, in the order they were given.
    pub(crate) buffers: Vec<Arc<GpuBuffer>>,
}

impl Admission {
    /// Counts `buffer`, the kernel's output, as the array `owner`'s own copy on the device,
    /// taking the room reserved for it.
    pub(crate) fn adopt(&mut self, buffer: Arc<GpuBuffer>, owner: Owner) -> Arc<Resident> {
        let mem = &self.mem;
        let bytes = buffer.capacity_bytes();
        let r = Resident::new(mem, bytes, owner);
        {
            let mut b = mem.books.lock();
            *r.place.lock() = Place::Device(buffer);
            b.resident = b.resident - self.reserved + bytes;
            self.reserved = 0;
            b.peak = b.peak.max(b.resident);
            mem.insert(&mut b, &r);
        }
        r
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        {
            let mut b = self.mem.books.lock();
            for r in &self.pinned {
                r.pins.fetch_sub(1, Ordering::Relaxed);
            }
            b.resident -= self.reserved;
            b.running -= 1;
        }
        self.mem.changed.notify_all();
    }
}

impl DeviceMemory {
    /// The memory of device `device` for one context, under `budget` bytes (`None`: none).
    pub(crate) fn new(device: usize, budget: Option<u64>) -> Arc<DeviceMemory> {
        Arc::new(DeviceMemory {
            device,
            budget,
            books: Mutex::default(),
            changed: Condvar::new(),
            replicas: Mutex::default(),
            host: OnceLock::new(),
            stats: Counters::default(),
        })
    }

    /// Keeps arrays' host copies in `store` (the context's host memory) and reports
    /// evictions to its event log.
    pub(crate) fn attach(&self, store: &Arc<Store>) {
        let _ = self.host.set(store.clone());
    }

    /// `v`, downloaded from the device, as a host copy: a value of the host store when it
    /// manages values of its kind.
    fn host_copy(&self, v: Value) -> HostCopy {
        match self.host.get() {
            Some(store) => match store.manage(v) {
                Ok(slot) => HostCopy::Managed(slot),
                Err(v) => HostCopy::Plain(v),
            },
            None => HostCopy::Plain(v),
        }
    }

    pub(crate) fn stats(&self) -> GpuMemoryStats {
        let b = self.books.lock();
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let s = &self.stats;
        GpuMemoryStats {
            device: self.device,
            budget_bytes: self.budget,
            resident_bytes: b.resident,
            peak_resident_bytes: b.peak,
            evictions: get(&s.evictions),
            downloads: get(&s.downloads),
            bytes_downloaded: get(&s.bytes_downloaded),
            reloads: get(&s.reloads),
            bytes_reloaded: get(&s.bytes_reloaded),
            waits: get(&s.waits),
            rejected: get(&s.rejected),
        }
    }

    /// Puts `r` at the recent end of the order.
    fn insert(&self, b: &mut Books, r: &Arc<Resident>) {
        b.tick += 1;
        let t = b.tick;
        let old = r.tick.swap(t, Ordering::Relaxed);
        if old != 0 {
            b.order.remove(&old);
        }
        let w: Weak<dyn Entry> = Arc::downgrade(r) as Weak<Resident>;
        b.order.insert(t, w);
    }

    /// Admits a task needing `needs` on the device and `out_bytes` for its output: pins the
    /// needs that are there, evicts the least recently used residents nothing pins until the
    /// others and the output fit (waiting for running kernels when only they hold the
    /// room), then uploads the missing needs.
    pub(crate) fn admit(
        self: &Arc<Self>,
        device: &Device,
        needs: Vec<Need>,
        out_bytes: u64,
    ) -> Result<Admission, AdmitError> {
        // One need per resident; `slot[i]` is need `i`'s.
        let mut uniq: Vec<Need> = Vec::with_capacity(needs.len());
        let mut slot = Vec::with_capacity(needs.len());
        for n in needs {
            match uniq
                .iter()
                .position(|u| Arc::ptr_eq(&u.resident, &n.resident))
            {
                Some(k) => slot.push(k),
                None => {
                    slot.push(uniq.len());
                    uniq.push(n);
                }
            }
        }
        let budget = self.budget.unwrap_or(u64::MAX);
        let total = uniq
            .iter()
            .map(|n| n.resident.bytes)
            .fold(out_bytes, u64::saturating_add);
        if total > budget {
            self.stats.rejected.fetch_add(1, Ordering::Relaxed);
            return Err(AdmitError::Budget(GpuMemoryError::TaskTooLarge {
                device: self.device,
                budget,
                needed: total,
            }));
        }
        let mut waited = false;
        let mut idle_since: Option<Instant> = None;
        let to_upload: Vec<usize> = loop {
            // Residents upgraded while looking for a victim are dropped after the books are
            // unlocked: the last reference's drop takes them.
            let mut keep: Vec<Arc<Resident>> = Vec::new();
            let mut b = self.books.lock();
            if uniq
                .iter()
                .any(|n| matches!(*n.resident.place.lock(), Place::Moving))
            {
                self.changed.wait_for(&mut b, Duration::from_millis(50));
                continue;
            }
            let missing = uniq
                .iter()
                .filter(|n| !n.resident.on_device())
                .map(|n| n.resident.bytes)
                .fold(out_bytes, u64::saturating_add);
            if b.resident.saturating_add(missing) <= budget {
                let mut up = Vec::new();
                for (k, n) in uniq.iter().enumerate() {
                    let r = &n.resident;
                    r.pins.fetch_add(1, Ordering::Relaxed);
                    let mut place = r.place.lock();
                    if matches!(*place, Place::Host) {
                        *place = Place::Moving;
                        b.moving += 1;
                        up.push(k);
                    } else {
                        drop(place);
                        self.insert(&mut b, r);
                    }
                }
                b.resident += missing;
                b.peak = b.peak.max(b.resident);
                b.running += 1;
                break up;
            }
            if let Some((victim, buf)) = self.pick_victim(&mut b, &uniq, &mut keep) {
                drop(b);
                self.evict(device, victim, buf);
                drop(keep);
                continue;
            }
            if b.running > 0 || b.moving > 0 {
                if !waited {
                    waited = true;
                    self.stats.waits.fetch_add(1, Ordering::Relaxed);
                }
                idle_since = None;
                self.changed.wait_for(&mut b, Duration::from_millis(50));
                drop(b);
                drop(keep);
                continue;
            }
            // Only values read outside tasks hold the room: give them a moment.
            let since = *idle_since.get_or_insert_with(Instant::now);
            if since.elapsed() > Duration::from_secs(2) {
                let held = b.resident;
                drop(b);
                drop(keep);
                return Err(AdmitError::Budget(GpuMemoryError::NoRoom {
                    device: self.device,
                    budget,
                    needed: missing,
                    held,
                }));
            }
            self.changed.wait_for(&mut b, Duration::from_millis(10));
            drop(b);
            drop(keep);
        };
        let mut admission = Admission {
            mem: self.clone(),
            pinned: Vec::with_capacity(uniq.len()),
            reserved: out_bytes,
            buffers: Vec::new(),
        };
        let mut failed = None;
        for (k, n) in uniq.into_iter().enumerate() {
            let r = n.resident;
            if !to_upload.contains(&k) {
                admission.pinned.push(r);
                continue;
            }
            let uploaded = if failed.is_some() {
                None
            } else {
                match (n.upload)() {
                    Ok(buf) => Some(buf),
                    Err(e) => {
                        failed = Some(e);
                        None
                    }
                }
            };
            {
                let mut b = self.books.lock();
                b.moving -= 1;
                let mut place = r.place.lock();
                match uploaded {
                    Some(buf) => {
                        // A buffer is allocated whole: count what it really takes.
                        debug_assert_eq!(buf.capacity_bytes(), r.bytes);
                        *place = Place::Device(Arc::new(buf));
                        drop(place);
                        self.insert(&mut b, &r);
                        if r.evicted.swap(false, Ordering::Relaxed) {
                            self.stats.reloads.fetch_add(1, Ordering::Relaxed);
                            self.stats
                                .bytes_reloaded
                                .fetch_add(r.bytes, Ordering::Relaxed);
                        }
                    }
                    None => {
                        *place = Place::Host;
                        b.resident -= r.bytes;
                    }
                }
            }
            self.changed.notify_all();
            admission.pinned.push(r);
        }
        if let Some(e) = failed {
            return Err(AdmitError::Move(e));
        }
        admission.buffers = slot
            .iter()
            .map(|&k| {
                admission.pinned[k]
                    .buffer()
                    .expect("an admitted input is pinned on the device")
            })
            .collect();
        Ok(admission)
    }

    /// The least recently used resident that nothing pins or reads, taken off the device's
    /// order and marked as moving, with its buffer; `keep` gets the residents looked at.
    fn pick_victim(
        &self,
        b: &mut Books,
        ours: &[Need],
        keep: &mut Vec<Arc<Resident>>,
    ) -> Option<(Arc<Resident>, Arc<GpuBuffer>)> {
        let mut found = None;
        for (&t, w) in b.order.iter() {
            let Some(r) = w.upgrade().map(Entry::resident) else {
                continue;
            };
            if r.pins.load(Ordering::Relaxed) > 0
                || ours.iter().any(|n| Arc::ptr_eq(&n.resident, &r))
            {
                keep.push(r);
                continue;
            }
            let mut place = r.place.lock();
            let free = matches!(&*place, Place::Device(buf) if Arc::strong_count(buf) == 1);
            if !free {
                drop(place);
                keep.push(r);
                continue;
            }
            let Place::Device(buf) = std::mem::replace(&mut *place, Place::Moving) else {
                unreachable!()
            };
            drop(place);
            found = Some((t, r, buf));
            break;
        }
        let (t, r, buf) = found?;
        b.order.remove(&t);
        r.tick.store(0, Ordering::Relaxed);
        b.moving += 1;
        Some((r, buf))
    }

    /// Frees `victim` (marked moving, its buffer taken), downloading an array's own copy
    /// first when the host has none; when the download fails, it stays on the device.
    fn evict(&self, device: &Device, victim: Arc<Resident>, buf: Arc<GpuBuffer>) {
        let start = Instant::now();
        let mut downloaded = None;
        let mut type_name = "device copy";
        if let Owner::Array {
            host,
            len,
            download,
        } = &victim.owner
        {
            if host.get().is_none() {
                match download(device, &buf, *len) {
                    Ok(v) => {
                        type_name = v.type_name();
                        let _ = host.set(self.host_copy(v));
                        downloaded = Some(buf.len_bytes());
                    }
                    Err(e) => {
                        tracing::warn!(
                            device = self.device,
                            bytes = victim.bytes,
                            "could not move a device array to host memory, keeping it: {e}"
                        );
                        let mut b = self.books.lock();
                        *victim.place.lock() = Place::Device(buf);
                        b.moving -= 1;
                        self.insert(&mut b, &victim);
                        drop(b);
                        self.changed.notify_all();
                        return;
                    }
                }
            }
        }
        drop(buf);
        {
            let mut b = self.books.lock();
            *victim.place.lock() = Place::Host;
            b.resident -= victim.bytes;
            b.moving -= 1;
        }
        self.changed.notify_all();
        victim.evicted.store(true, Ordering::Relaxed);
        self.stats.evictions.fetch_add(1, Ordering::Relaxed);
        if let Some(n) = downloaded {
            self.stats.downloads.fetch_add(1, Ordering::Relaxed);
            self.stats.bytes_downloaded.fetch_add(n, Ordering::Relaxed);
        }
        if let Some(store) = self.host.get() {
            store.record_gpu_evict(self.device, downloaded.unwrap_or(0), start, type_name);
        }
        tracing::trace!(
            device = self.device,
            bytes = victim.bytes,
            downloaded = downloaded.is_some(),
            "evicted a device buffer"
        );
        drop(victim);
    }
}
