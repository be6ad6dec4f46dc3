//! Out-of-core storage: a context keeps the values it holds in host memory under a limit,
//! writing the least recently used to disk and reading them back when a task needs them.
//!
//! What counts:
//! - A value is *managed* when its type is registered (see [`Spill`]; vectors and arrays of
//!   numbers and `String` are from the start) and it weighs at least a small threshold
//!   (64 KiB, or a 64th of the limit when that is smaller). Smaller values and values of
//!   unregistered types stay in memory, uncounted.
//! - A managed value that no running task, chunk reader or user holds (only its chunk or task
//!   result refers to it) may be *spilled*: written to a file in the context's spill
//!   directory and freed. Reading it — a task taking it as input, `fetch`, `collect` — reads
//!   it back transparently. Values are immutable, so a value read back keeps its file and
//!   spilling it again frees it without writing.
//! - A value of a type registered with a size only ([`register_size`]) is counted and kept.
//! - Values go least recently used first, but values that ready tasks are about to take go
//!   last: spilling them would only mean reading them back at once.
//! - When a task becomes ready, its spilled inputs are read ahead on an I/O thread, so reads
//!   overlap other tasks' compute.
//! - A task whose inputs and estimated output do not fit beside what running tasks hold waits
//!   until they finish (a task runs anyway when nothing else does, so the limit never
//!   deadlocks the graph). Room for its output (as large as the function's last output, or
//!   as its largest input) is made before it runs, so that making the output does not take
//!   the process past the limit.
//! - A task made ready by the one a CPU thread just finished runs next on that thread, while
//!   its input is fresh — so a map's output block is summed before it is ever spilled.
//!
//! The limit is [`ContextBuilder::memory_limit`](crate::ContextBuilder::memory_limit), or the
//! `DAGGER_MEMORY_LIMIT` environment variable (`4GiB`, `512MiB`, `none`), or by default 60%
//! of the machine's memory (of the cgroup's limit, when that is lower) — where Dask starts
//! spilling. The spill directory is a fresh directory (mode 0700) inside
//! [`ContextBuilder::spill_dir`](crate::ContextBuilder::spill_dir) or the system's temporary
//! directory, created at the first spill and removed with everything in it once the context
//! and every chunk of it are gone. Files are created new, never written over or through a
//! link. They are written and read with direct I/O where the file system allows it, past the
//! page cache (see `direct.rs`); `DAGGER_SPILL_DIRECT=0` sends them through the page cache.
//!
//! ```
//! use dagger::prelude::*;
//!
//! let ctx = Context::builder().threads(2).memory_limit(1 << 20).build()?;
//! // Eight blocks of 512 KiB through a 1 MiB limit: all but two go to disk...
//! let blocks: Vec<_> = (0..8u32)
//!     .map(|i| ctx.to_chunk(vec![i as f32; 128 * 1024]))
//!     .collect();
//! assert_eq!(ctx.memory_stats().spills, 6);
//! // ...and tasks read them back.
//! let sums: Vec<_> = blocks
//!     .iter()
//!     .map(|b| ctx.spawn(|v: std::sync::Arc<Vec<f32>>| v.iter().sum::<f32>(), (b.shared(),)))
//!     .collect();
//! for (i, s) in sums.iter().enumerate() {
//!     assert_eq!(s.fetch()?, (i * 128 * 1024) as f32);
//! }
//! let stats = ctx.memory_stats();
//! assert!(stats.spills > 0 && stats.reloads > 0, "{stats:?}");
//! assert!(stats.peak_resident_bytes <= (1 << 20) + (512 << 10), "{stats:?}");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod codec;
mod direct;
mod file;

pub use codec::{is_spillable, register, register_serde, register_size, Spill};
pub(crate) use file::{load_value, open_saved, save_value, save_value_replacing};
pub use file::{File, FileReadError, StorageError};

use std::collections::{BTreeMap, VecDeque};
use std::io::{self, BufReader};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use crate::value::Value;
use codec::Codec;

/// How a context's host memory fared: its limit, what it holds, and what went to disk and
/// came back (see [`Context::memory_stats`](crate::Context::memory_stats)).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct MemoryStats {
    /// The limit on managed values in host memory, in bytes (`None`: no limit).
    pub limit_bytes: Option<u64>,
    /// Managed values in host memory now, in bytes.
    pub resident_bytes: u64,
    /// The most that managed values ever held at once, in bytes.
    pub peak_resident_bytes: u64,
    /// Bytes of values whose only copy is on disk now.
    pub spilled_bytes: u64,
    /// Values written to disk.
    pub spills: u64,
    /// Values freed from memory that already had a file (read back earlier, unchanged).
    pub clean_evictions: u64,
    /// Bytes written to disk.
    pub bytes_written: u64,
    /// Values read back from disk.
    pub reloads: u64,
    /// Of those, read ahead for a task that was ready.
    pub prefetches: u64,
    /// Bytes read back from disk.
    pub bytes_read: u64,
    /// Values that count against the limit but cannot be spilled, in memory now.
    pub unspillable_values: u64,
    /// Their bytes.
    pub unspillable_bytes: u64,
    /// Times room could not be made because everything in memory was in use (the limit was
    /// exceeded for a while).
    pub over_limit: u64,
    /// Tasks that waited for memory before starting.
    pub admission_waits: u64,
    /// The spill directory, once created.
    pub spill_dir: Option<PathBuf>,
    /// Whether spill files are written and read with direct I/O, past the page cache (on
    /// Linux unless the file system refuses it or `DAGGER_SPILL_DIRECT=0`).
    pub spill_direct_io: bool,
}

/// What the store reports to the context's event log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum IoKind {
    Spill,
    Reload,
    /// A buffer evicted from a GPU (its index) to stay under the device's budget.
    GpuEvict(usize),
}

/// A spill, reload or GPU eviction, as reported to the event log.
pub(crate) struct IoRecord {
    pub(crate) kind: IoKind,
    pub(crate) bytes: u64,
    pub(crate) start: Instant,
    pub(crate) end: Instant,
    pub(crate) type_name: &'static str,
}

type Recorder = Box<dyn Fn(IoRecord) + Send + Sync>;

/// A context's memory manager.
pub(crate) struct Store {
    limit: u64,
    threshold: u64,
    parent: PathBuf,
    dir: Mutex<Option<PathBuf>>,
    next_id: AtomicU64,
    lru: Mutex<Lru>,
    /// Signalled when a value being written out is freed.
    evicted: Condvar,
    /// Bytes that running tasks hold (their inputs and estimated outputs).
    held: Mutex<u64>,
    held_cv: Condvar,
    /// Bytes read ahead and not used yet.
    pinned: AtomicU64,
    prefetch: Mutex<Option<crossbeam_channel::Sender<Weak<Slot>>>>,
    /// Whether anything was ever spilled (read-ahead is skipped until then).
    spilled_any: AtomicBool,
    recorder: Mutex<Option<Arc<Recorder>>>,
    stats: Counters,
    /// Managed values alive.
    live: AtomicU64,
    /// Whether the context has ended: the spill directory goes with the last value.
    ended: AtomicBool,
    /// Staging buffers for spill files and whether they go through direct I/O.
    direct: direct::Direct,
}

#[derive(Default)]
struct Counters {
    spills: AtomicU64,
    clean_evictions: AtomicU64,
    bytes_written: AtomicU64,
    reloads: AtomicU64,
    prefetches: AtomicU64,
    bytes_read: AtomicU64,
    on_disk_only: AtomicU64,
    unspillable_values: AtomicU64,
    unspillable_bytes: AtomicU64,
    over_limit: AtomicU64,
    admission_waits: AtomicU64,
}

#[derive(Default)]
struct Lru {
    /// Managed bytes in memory (and reserved for values being read back or admitted).
    resident: u64,
    /// Of those, bytes being written out now.
    evicting: u64,
    peak: u64,
    tick: u64,
    /// Spillable values in memory, least recently used first.
    order: BTreeMap<u64, Weak<Slot>>,
}

/// A managed value: in memory, on disk, or moving between the two.
pub(crate) struct Slot {
    id: u64,
    bytes: u64,
    type_name: &'static str,
    codec: Arc<dyn Codec>,
    store: Arc<Store>,
    state: Mutex<State>,
    cv: Condvar,
    /// Its key in the LRU order (0: not there); changed under the order's lock.
    tick: AtomicU64,
    /// Whether a file holds it.
    on_file: AtomicBool,
    /// Whether it may be written out (false for size-only types and after a failed write).
    spillable: AtomicBool,
    /// Read ahead for a ready task and not used yet: not evicted meanwhile.
    pinned: AtomicBool,
    /// Ready tasks that take it and have not started: it is evicted only when nothing else
    /// can be (it would be read back soon).
    wanted: AtomicU32,
    /// A file of the user's holding the value (from this offset), instead of one in the
    /// spill directory: read from, never written or removed.
    external: Option<(PathBuf, u64)>,
    /// Padding in its spill file (where direct I/O lined the value up with its memory).
    holes: Mutex<direct::Holes>,
}

enum State {
    Memory(Value),
    /// Being written out; still readable.
    Writing(Value),
    Disk,
    Loading,
}

/// The memory limit a context gets when none is set: `DAGGER_MEMORY_LIMIT`, else 60% of
/// the machine's (or cgroup's) memory. `Ok(None)`: no limit.
pub(crate) fn default_limit() -> Result<Option<u64>, String> {
    match std::env::var("DAGGER_MEMORY_LIMIT") {
        Ok(s) => parse_limit(&s).map_err(|e| format!("DAGGER_MEMORY_LIMIT={s:?}: {e}")),
        Err(_) => Ok(physical_memory().map(|m| m / 10 * 6)),
    }
}

/// Parses a memory limit: a byte count with an optional unit — `KiB`, `MiB`, `GiB`, `TiB`
/// or just `K`, `M`, `G`, `T` for powers of 1024; `kB`, `MB`, `GB`, `TB` for powers of
/// 1000 — (`4GiB`, `512M`, `1.5GB`, `100000`), or `none`/`off` for no limit.
///
/// ```
/// use dagger::storage::parse_limit;
/// assert_eq!(parse_limit("4GiB"), Ok(Some(4 << 30)));
/// assert_eq!(parse_limit("512 MiB"), Ok(Some(512 << 20)));
/// assert_eq!(parse_limit("2kB"), Ok(Some(2000)));
/// assert_eq!(parse_limit("none"), Ok(None));
/// assert!(parse_limit("4 parsecs").is_err());
/// ```
pub fn parse_limit(s: &str) -> Result<Option<u64>, String> {
    let t = s.trim();
    if t.eq_ignore_ascii_case("none") || t.eq_ignore_ascii_case("off") {
        return Ok(None);
    }
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("`{t}` is not a size such as 4GiB, 512MiB or none"))?;
    let mult: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "kb" => 1e3,
        "mb" => 1e6,
        "gb" => 1e9,
        "tb" => 1e12,
        "k" | "kib" => 1024.0,
        "m" | "mib" => 1024.0 * 1024.0,
        "g" | "gib" => 1024.0 * 1024.0 * 1024.0,
        "t" | "tib" => 1024.0f64.powi(4),
        u => {
            return Err(format!(
                "unknown unit `{u}` in `{t}`: use B, kB, MB, GB, TB, KiB, MiB, GiB or TiB"
            ))
        }
    };
    Ok(Some((n * mult) as u64))
}

/// The machine's memory, or the cgroup's limit when lower.
fn physical_memory() -> Option<u64> {
    let total = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
                .map(|kb| kb * 1024)
        })?;
    let cgroup = std::fs::read_to_string("/sys/fs/cgroup/memory.max")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok());
    Some(cgroup.map_or(total, |c| c.min(total)))
}

static SPILL_DIRS: AtomicU64 = AtomicU64::new(0);

impl Store {
    /// A store keeping managed values under `limit` bytes (`None`: no limit, nothing is
    /// managed), spilling into a new directory inside `parent` (default: the temporary
    /// directory).
    pub(crate) fn new(limit: Option<u64>, parent: Option<PathBuf>) -> Arc<Store> {
        let limit = limit.unwrap_or(u64::MAX);
        Arc::new(Store {
            limit,
            threshold: (64 << 10).min(limit / 64).max(1),
            parent: parent.unwrap_or_else(std::env::temp_dir),
            dir: Mutex::new(None),
            next_id: AtomicU64::new(1),
            lru: Mutex::new(Lru::default()),
            evicted: Condvar::new(),
            held: Mutex::new(0),
            held_cv: Condvar::new(),
            pinned: AtomicU64::new(0),
            prefetch: Mutex::new(None),
            spilled_any: AtomicBool::new(false),
            recorder: Mutex::new(None),
            stats: Counters::default(),
            live: AtomicU64::new(0),
            ended: AtomicBool::new(false),
            direct: direct::Direct::new(limit),
        })
    }

    /// Whether the store manages anything (a limit is set).
    #[inline]
    pub(crate) fn limited(&self) -> bool {
        self.limit != u64::MAX
    }

    /// Where spills and reloads are reported.
    pub(crate) fn set_recorder(&self, r: Recorder) {
        *self.recorder.lock() = Some(Arc::new(r));
    }

    fn record(&self, kind: IoKind, bytes: u64, start: Instant, type_name: &'static str) {
        let r = self.recorder.lock().clone();
        if let Some(r) = r {
            r(IoRecord {
                kind,
                bytes,
                start,
                end: Instant::now(),
                type_name,
            });
        }
    }

    /// Reports a GPU eviction (that moved `bytes` to host memory) to the event log.
    #[cfg_attr(not(feature = "wgpu"), allow(dead_code))]
    pub(crate) fn record_gpu_evict(
        &self,
        device: usize,
        bytes: u64,
        start: Instant,
        type_name: &'static str,
    ) {
        self.record(IoKind::GpuEvict(device), bytes, start, type_name);
    }

    pub(crate) fn stats(&self) -> MemoryStats {
        let lru = self.lru.lock();
        let s = &self.stats;
        MemoryStats {
            limit_bytes: self.limited().then_some(self.limit),
            resident_bytes: lru.resident,
            peak_resident_bytes: lru.peak,
            spilled_bytes: s.on_disk_only.load(Ordering::Relaxed),
            spills: s.spills.load(Ordering::Relaxed),
            clean_evictions: s.clean_evictions.load(Ordering::Relaxed),
            bytes_written: s.bytes_written.load(Ordering::Relaxed),
            reloads: s.reloads.load(Ordering::Relaxed),
            prefetches: s.prefetches.load(Ordering::Relaxed),
            bytes_read: s.bytes_read.load(Ordering::Relaxed),
            unspillable_values: s.unspillable_values.load(Ordering::Relaxed),
            unspillable_bytes: s.unspillable_bytes.load(Ordering::Relaxed),
            over_limit: s.over_limit.load(Ordering::Relaxed),
            admission_waits: s.admission_waits.load(Ordering::Relaxed),
            spill_dir: self.dir.lock().clone(),
            spill_direct_io: self.direct.enabled(),
        }
    }

    /// `v` as a managed value, or `v` back when it is not managed (no limit, too small, or
    /// of an unregistered type). Used by the GPU budget, for a device's evicted copies.
    #[cfg(feature = "wgpu")]
    pub(crate) fn manage(self: &Arc<Self>, v: Value) -> Result<Arc<Slot>, Value> {
        self.manage_reserved(v, 0)
    }

    /// [`manage`](Self::manage) for a value that room was made for beforehand
    /// ([`reserve`](Self::reserve)d, `reserved` bytes): the reservation becomes the value's
    /// count, with no moment when the value exists uncounted.
    pub(crate) fn manage_reserved(
        self: &Arc<Self>,
        v: Value,
        reserved: u64,
    ) -> Result<Arc<Slot>, Value> {
        let unmanaged = |v: Value| {
            self.unreserve(reserved);
            Err(v)
        };
        if !self.limited() {
            return unmanaged(v);
        }
        let Some(codec) = codec::codec_of(&v) else {
            return unmanaged(v);
        };
        let bytes = codec.bytes(&v);
        if bytes < self.threshold {
            return unmanaged(v);
        }
        let spillable = codec.spillable();
        if bytes > reserved {
            self.make_room(bytes - reserved);
        } else {
            self.unreserve(reserved - bytes);
        }
        if !spillable {
            self.stats
                .unspillable_values
                .fetch_add(1, Ordering::Relaxed);
            self.stats
                .unspillable_bytes
                .fetch_add(bytes, Ordering::Relaxed);
        }
        self.live.fetch_add(1, Ordering::AcqRel);
        let slot = Arc::new(Slot {
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            bytes,
            type_name: v.type_name(),
            codec,
            store: self.clone(),
            state: Mutex::new(State::Memory(v)),
            cv: Condvar::new(),
            tick: AtomicU64::new(0),
            on_file: AtomicBool::new(false),
            spillable: AtomicBool::new(spillable),
            pinned: AtomicBool::new(false),
            wanted: AtomicU32::new(0),
            external: None,
            holes: Mutex::new(Vec::new()),
        });
        if spillable {
            self.insert(&slot);
        }
        Ok(slot)
    }

    /// A value that stays in the file at `path` (from `offset`) until it is read, and is
    /// read from there again whenever it was dropped from memory.
    pub(crate) fn open_file(
        self: &Arc<Self>,
        path: PathBuf,
        offset: u64,
        bytes: u64,
        type_name: &'static str,
        codec: Arc<dyn Codec>,
    ) -> Arc<Slot> {
        self.live.fetch_add(1, Ordering::AcqRel);
        self.stats.on_disk_only.fetch_add(bytes, Ordering::Relaxed);
        Arc::new(Slot {
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            bytes,
            type_name,
            codec,
            store: self.clone(),
            state: Mutex::new(State::Disk),
            cv: Condvar::new(),
            tick: AtomicU64::new(0),
            on_file: AtomicBool::new(true),
            spillable: AtomicBool::new(true),
            pinned: AtomicBool::new(false),
            wanted: AtomicU32::new(0),
            external: Some((path, offset)),
            holes: Mutex::new(Vec::new()),
        })
    }

    /// Puts `slot` (in memory, its bytes already counted) at the recent end of the order.
    fn insert(&self, slot: &Arc<Slot>) {
        let mut lru = self.lru.lock();
        lru.tick += 1;
        let t = lru.tick;
        let old = slot.tick.swap(t, Ordering::Relaxed);
        if old != 0 {
            lru.order.remove(&old);
        }
        lru.order.insert(t, Arc::downgrade(slot));
    }

    /// Marks `slot` as just used.
    fn touch(&self, slot: &Arc<Slot>) {
        if slot.tick.load(Ordering::Relaxed) != 0 {
            self.insert(slot);
        }
    }

    /// Makes room for `need` more bytes by spilling the least recently used values no one
    /// holds, then counts `need` as resident.
    fn make_room(&self, need: u64) {
        let mut graveyard: Vec<Arc<Slot>> = Vec::new();
        loop {
            let victim = {
                let mut lru = self.lru.lock();
                loop {
                    if lru.resident + need <= self.limit {
                        break None;
                    }
                    if let Some((slot, value)) = Self::pick_victim(&mut lru, &mut graveyard) {
                        lru.evicting += slot.bytes;
                        break Some((slot, value));
                    }
                    // Values other threads are writing out free room soon.
                    if lru.evicting == 0 {
                        self.stats.over_limit.fetch_add(1, Ordering::Relaxed);
                        break None;
                    }
                    self.evicted.wait_for(&mut lru, Duration::from_millis(50));
                }
                .or_else(|| {
                    lru.resident += need;
                    lru.peak = lru.peak.max(lru.resident);
                    None
                })
            };
            let Some(victim) = victim else {
                break;
            };
            let (slot, value) = victim;
            self.evict(&slot, value);
            graveyard.push(slot);
        }
        drop(graveyard);
    }

    /// The least recently used value in memory that no one else holds and that may be
    /// spilled, marked as being written; taken out of the order. Values that ready tasks
    /// are about to take go last: evicting them means reading them back at once.
    fn pick_victim(lru: &mut Lru, graveyard: &mut Vec<Arc<Slot>>) -> Option<(Arc<Slot>, Value)> {
        let mut found = None;
        let mut any_wanted = false;
        'passes: for wanted_too in [false, true] {
            if wanted_too && !any_wanted {
                break;
            }
            for (&t, w) in lru.order.iter() {
                let Some(slot) = w.upgrade() else {
                    continue;
                };
                if slot.pinned.load(Ordering::Relaxed) || !slot.spillable.load(Ordering::Relaxed) {
                    graveyard.push(slot);
                    continue;
                }
                if !wanted_too && slot.wanted.load(Ordering::Relaxed) > 0 {
                    any_wanted = true;
                    graveyard.push(slot);
                    continue;
                }
                let Some(mut st) = slot.state.try_lock() else {
                    graveyard.push(slot);
                    continue;
                };
                let v = match &*st {
                    State::Memory(v) if !v.is_shared() => v.clone(),
                    _ => {
                        drop(st);
                        graveyard.push(slot);
                        continue;
                    }
                };
                *st = State::Writing(v.clone());
                drop(st);
                found = Some((t, slot, v));
                break 'passes;
            }
        }
        let (t, slot, v) = found?;
        lru.order.remove(&t);
        slot.tick.store(0, Ordering::Relaxed);
        Some((slot, v))
    }

    /// Writes `value` (the contents of `slot`, now `Writing`) to its file unless it has one,
    /// and frees it; on failure it stays in memory and is never tried again.
    fn evict(&self, slot: &Arc<Slot>, value: Value) {
        let start = Instant::now();
        let clean = slot.on_file.load(Ordering::Relaxed);
        let written = if clean {
            Ok(0)
        } else {
            self.write_file(slot, &value).map(|(n, holes)| {
                *slot.holes.lock() = holes;
                n
            })
        };
        drop(value);
        match written {
            Ok(n) => {
                *slot.state.lock() = State::Disk;
                slot.on_file.store(true, Ordering::Relaxed);
                {
                    let mut lru = self.lru.lock();
                    lru.resident -= slot.bytes;
                    lru.evicting -= slot.bytes;
                }
                self.evicted.notify_all();
                self.stats
                    .on_disk_only
                    .fetch_add(slot.bytes, Ordering::Relaxed);
                if clean {
                    self.stats.clean_evictions.fetch_add(1, Ordering::Relaxed);
                } else {
                    self.stats.spills.fetch_add(1, Ordering::Relaxed);
                    self.stats.bytes_written.fetch_add(n, Ordering::Relaxed);
                    self.spilled_any.store(true, Ordering::Relaxed);
                    self.record(IoKind::Spill, n, start, slot.type_name);
                }
            }
            Err(e) => {
                tracing::warn!(
                    type_name = slot.type_name,
                    bytes = slot.bytes,
                    "could not spill a value, keeping it in memory: {e}"
                );
                slot.spillable.store(false, Ordering::Relaxed);
                let mut st = slot.state.lock();
                if let State::Writing(v) = std::mem::replace(&mut *st, State::Disk) {
                    *st = State::Memory(v);
                }
                drop(st);
                self.lru.lock().evicting -= slot.bytes;
                self.evicted.notify_all();
                self.stats
                    .unspillable_values
                    .fetch_add(1, Ordering::Relaxed);
                self.stats
                    .unspillable_bytes
                    .fetch_add(slot.bytes, Ordering::Relaxed);
            }
        }
    }

    /// The spill directory, created at first use.
    fn dir(&self) -> io::Result<PathBuf> {
        let mut d = self.dir.lock();
        if let Some(p) = &*d {
            return Ok(p.clone());
        }
        let p = create_private_dir(&self.parent)?;
        tracing::debug!(dir = %p.display(), "spill directory created");
        *d = Some(p.clone());
        Ok(p)
    }

    fn write_file(&self, slot: &Slot, value: &Value) -> io::Result<(u64, direct::Holes)> {
        let path = self.dir()?.join(slot.file_name());
        let f = std::fs::File::options()
            .write(true)
            .create_new(true)
            .open(&path)?;
        let mut w = self.direct.writer(f);
        let done = slot.codec.write(value, &mut w).and_then(|_| w.finish());
        match done {
            Ok(written) => Ok(written),
            Err(e) => {
                let _ = std::fs::remove_file(&path);
                Err(e)
            }
        }
    }

    /// Gives back `n` reserved or resident bytes.
    pub(crate) fn unreserve(&self, n: u64) {
        if n > 0 {
            self.lru.lock().resident -= n;
        }
    }

    /// Makes room for `n` bytes about to be made (a task's output), counting them as
    /// resident until [`unreserve`](Self::unreserve)d.
    pub(crate) fn reserve(&self, n: u64) {
        if n > 0 && self.limited() {
            self.make_room(n);
        }
    }

    // ----- admission -----------------------------------------------------------------------

    /// Waits until `need` more bytes fit beside what running tasks hold (or nothing is
    /// held), then holds them. Returns what it holds.
    pub(crate) fn admit(&self, need: u64) -> u64 {
        if need == 0 || !self.limited() {
            return 0;
        }
        let mut held = self.held.lock();
        if *held > 0 && *held + need > self.limit {
            self.stats.admission_waits.fetch_add(1, Ordering::Relaxed);
            // Tasks that hold memory give it back when they finish or block in a nested
            // wait; the bound only guards against a holder that never does either.
            let deadline = Instant::now() + Duration::from_secs(5);
            while *held > 0 && *held + need > self.limit {
                if self.held_cv.wait_until(&mut held, deadline).timed_out() {
                    self.stats.over_limit.fetch_add(1, Ordering::Relaxed);
                    break;
                }
            }
        }
        *held += need;
        need
    }

    /// Gives back bytes [`admit`](Self::admit) held.
    pub(crate) fn release(&self, n: u64) {
        if n == 0 {
            return;
        }
        let mut held = self.held.lock();
        *held = held.saturating_sub(n);
        self.held_cv.notify_all();
    }

    /// Holds `n` bytes again without waiting (after a nested wait).
    pub(crate) fn rehold(&self, n: u64) {
        if n > 0 {
            *self.held.lock() += n;
        }
    }

    // ----- read-ahead --------------------------------------------------------------------

    /// Whether read-ahead may have something to do.
    #[inline]
    pub(crate) fn may_prefetch(&self) -> bool {
        self.spilled_any.load(Ordering::Relaxed)
    }

    fn prefetch(&self, slot: &Arc<Slot>) {
        let mut tx = self.prefetch.lock();
        if tx.is_none() {
            let (s, r) = crossbeam_channel::unbounded::<Weak<Slot>>();
            let spawned = std::thread::Builder::new()
                .name("dagger-read-ahead".into())
                .spawn(move || read_ahead(r));
            if spawned.is_err() {
                return;
            }
            *tx = Some(s);
        }
        if let Some(tx) = &*tx {
            let _ = tx.send(Arc::downgrade(slot));
        }
    }
}

/// The read-ahead thread: reads back values that ready tasks will need, keeping what it
/// read ahead and nothing used yet under a quarter of the limit. Ends with the store.
fn read_ahead(rx: crossbeam_channel::Receiver<Weak<Slot>>) {
    let mut queue: VecDeque<Weak<Slot>> = VecDeque::new();
    loop {
        if queue.is_empty() {
            match rx.recv() {
                Ok(w) => queue.push_back(w),
                Err(_) => return,
            }
        }
        queue.extend(rx.try_iter());
        let Some(w) = queue.pop_front() else {
            continue;
        };
        // Holds the value only while reading it, so that dropping it is not delayed.
        let Some((store, bytes)) = w.upgrade().map(|s| (s.store.clone(), s.bytes)) else {
            continue;
        };
        let budget = store.limit / 4;
        let fits = || store.pinned.load(Ordering::Relaxed) + bytes <= budget;
        let mut waited = 0;
        while !fits() && waited < 100 {
            if !w.upgrade().is_some_and(|s| s.is_on_disk()) {
                break;
            }
            std::thread::sleep(Duration::from_millis(2));
            waited += 1;
        }
        if fits() {
            if let Some(slot) = w.upgrade() {
                let _ = slot.load_ahead();
            }
        }
    }
}

/// A fresh directory (mode 0700 on Unix) inside `parent`.
fn create_private_dir(parent: &Path) -> io::Result<PathBuf> {
    let mut b = std::fs::DirBuilder::new();
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut b, 0o700);
    loop {
        let n = SPILL_DIRS.fetch_add(1, Ordering::Relaxed);
        let p = parent.join(format!("dagger-spill-{}-{n}", std::process::id()));
        match b.create(&p) {
            Ok(()) => return Ok(p),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => {
                return Err(io::Error::new(
                    e.kind(),
                    format!("creating the spill directory {}: {e}", p.display()),
                ))
            }
        }
    }
}

/// Free bytes on the file system of `dir` (for an unprivileged user), if known.
pub(crate) fn free_space(dir: &Path) -> Option<u64> {
    #[cfg(unix)]
    {
        use std::os::unix::ffi::OsStrExt;
        let c = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
        let mut s = std::mem::MaybeUninit::<libc::statvfs>::uninit();
        // SAFETY: `c` is a valid NUL-terminated path and `s` points to writable memory of
        // the size statvfs fills; it is read only after statvfs reports success.
        let ok = unsafe { libc::statvfs(c.as_ptr(), s.as_mut_ptr()) } == 0;
        if !ok {
            return None;
        }
        // SAFETY: statvfs succeeded, so it initialized `s`.
        let s = unsafe { s.assume_init() };
        // The field types differ between platforms (u32 on some 32-bit ones).
        #[allow(clippy::unnecessary_cast)]
        Some((s.f_bavail as u64).saturating_mul(s.f_frsize as u64))
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        None
    }
}

impl Store {
    /// Free disk space where the store spills (0 when unknown), or `None` without a limit.
    pub(crate) fn spill_room(&self) -> Option<u64> {
        self.limited()
            .then(|| free_space(&self.parent).unwrap_or(0))
    }
}

impl Store {
    /// The context ended: the spill directory is removed now, or with the last value that
    /// outlives the context.
    pub(crate) fn context_ended(&self) {
        self.ended.store(true, Ordering::SeqCst);
        if self.live.load(Ordering::SeqCst) == 0 {
            self.remove_dir();
        }
    }

    fn remove_dir(&self) {
        if let Some(d) = self.dir.lock().take() {
            if let Err(e) = std::fs::remove_dir_all(&d) {
                tracing::warn!(dir = %d.display(), "could not remove the spill directory: {e}");
            }
        }
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        self.remove_dir();
    }
}

/// Why a spilled value could not be read back.
#[derive(Debug, thiserror::Error)]
#[error("reading a spilled `{type_name}` back from {path} failed")]
pub struct ReloadError {
    /// The value's type.
    pub type_name: &'static str,
    /// Its file.
    pub path: PathBuf,
    /// What went wrong.
    #[source]
    pub source: io::Error,
}

impl Slot {
    fn file_name(&self) -> String {
        format!("{}.spill", self.id)
    }

    /// The value's type.
    pub(crate) fn type_name(&self) -> &'static str {
        self.type_name
    }

    /// Its size in memory.
    pub(crate) fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Whether its only copy is on disk now.
    pub(crate) fn is_on_disk(&self) -> bool {
        matches!(*self.state.lock(), State::Disk)
    }

    /// The value if it is in memory, without reading it back.
    pub(crate) fn peek(&self) -> Option<Value> {
        match &*self.state.lock() {
            State::Memory(v) | State::Writing(v) => Some(v.clone()),
            _ => None,
        }
    }

    /// A ready task will take the value: it is kept in memory rather than others that no
    /// task is waiting for.
    pub(crate) fn want(&self) {
        self.wanted.fetch_add(1, Ordering::Relaxed);
    }

    /// A task that wanted the value took it.
    pub(crate) fn unwant(&self) {
        let _ = self
            .wanted
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
    }

    /// Asks for the value to be read ahead (when it is on disk).
    pub(crate) fn prefetch(self: &Arc<Self>) {
        if self.store.may_prefetch() && self.is_on_disk() {
            self.store.prefetch(self);
        }
    }

    /// The value, read back from disk if it was spilled.
    pub(crate) fn get(self: &Arc<Self>) -> Result<Value, ReloadError> {
        let mut st = self.state.lock();
        loop {
            match &*st {
                State::Memory(v) | State::Writing(v) => {
                    let v = v.clone();
                    drop(st);
                    if self.pinned.swap(false, Ordering::Relaxed) {
                        self.store.pinned.fetch_sub(self.bytes, Ordering::Relaxed);
                    }
                    self.store.touch(self);
                    return Ok(v);
                }
                State::Loading => self.cv.wait(&mut st),
                State::Disk => {
                    *st = State::Loading;
                    drop(st);
                    return self.load(false);
                }
            }
        }
    }

    /// Reads the value back ahead of use, pinned until used.
    fn load_ahead(self: &Arc<Self>) -> Result<(), ReloadError> {
        {
            let mut st = self.state.lock();
            if !matches!(*st, State::Disk) {
                return Ok(());
            }
            *st = State::Loading;
        }
        self.load(true).map(drop)
    }

    /// Reads the value back (the state is `Loading`, set by the caller).
    fn load(self: &Arc<Self>, ahead: bool) -> Result<Value, ReloadError> {
        let store = &self.store;
        let start = Instant::now();
        store.make_room(self.bytes);
        let (path, offset) = match &self.external {
            Some((p, o)) => (p.clone(), *o),
            None => (
                store
                    .dir
                    .lock()
                    .clone()
                    .unwrap_or_default()
                    .join(self.file_name()),
                0,
            ),
        };
        let read = std::fs::File::open(&path).and_then(|mut f| {
            if self.external.is_some() {
                // A file of the user's, from an offset: read through the page cache.
                io::Seek::seek(&mut f, io::SeekFrom::Start(offset))?;
                self.codec.read(&mut BufReader::with_capacity(1 << 16, f))
            } else {
                let holes = self.holes.lock().clone();
                self.codec.read(&mut store.direct.reader(f, holes))
            }
        });
        match read {
            Ok(v) => {
                if ahead {
                    self.pinned.store(true, Ordering::Relaxed);
                    store.pinned.fetch_add(self.bytes, Ordering::Relaxed);
                    store.stats.prefetches.fetch_add(1, Ordering::Relaxed);
                }
                {
                    let mut st = self.state.lock();
                    *st = State::Memory(v.clone());
                    self.cv.notify_all();
                }
                store
                    .stats
                    .on_disk_only
                    .fetch_sub(self.bytes, Ordering::Relaxed);
                store.stats.reloads.fetch_add(1, Ordering::Relaxed);
                let n = std::fs::metadata(&path).map_or(self.bytes, |m| m.len() - offset);
                store.stats.bytes_read.fetch_add(n, Ordering::Relaxed);
                store.insert(self);
                store.record(IoKind::Reload, n, start, self.type_name);
                Ok(v)
            }
            Err(source) => {
                store.unreserve(self.bytes);
                let mut st = self.state.lock();
                *st = State::Disk;
                self.cv.notify_all();
                Err(ReloadError {
                    type_name: self.type_name,
                    path,
                    source,
                })
            }
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let store = &self.store;
        let in_memory = !matches!(self.state.get_mut(), State::Disk | State::Loading);
        {
            let mut lru = store.lru.lock();
            let t = *self.tick.get_mut();
            if t != 0 {
                lru.order.remove(&t);
            }
            if in_memory {
                lru.resident -= self.bytes;
            }
        }
        if *self.pinned.get_mut() {
            store.pinned.fetch_sub(self.bytes, Ordering::Relaxed);
        }
        if in_memory && !*self.spillable.get_mut() {
            store
                .stats
                .unspillable_values
                .fetch_sub(1, Ordering::Relaxed);
            store
                .stats
                .unspillable_bytes
                .fetch_sub(self.bytes, Ordering::Relaxed);
        }
        if !in_memory {
            store
                .stats
                .on_disk_only
                .fetch_sub(self.bytes, Ordering::Relaxed);
        }
        if *self.on_file.get_mut() && self.external.is_none() {
            if let Some(d) = &*store.dir.lock() {
                let _ = std::fs::remove_file(d.join(self.file_name()));
            }
        }
        if store.live.fetch_sub(1, Ordering::AcqRel) == 1 && store.ended.load(Ordering::SeqCst) {
            store.remove_dir();
        }
    }
}
