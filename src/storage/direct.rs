//! Spill files written and read through direct I/O where the file system allows it.
//!
//! Buffered writes of spill files cost more than the disk does: each one fills fresh pages
//! of the page cache (the kernel allocates, and on a VM the host faults in, memory for a
//! copy of every byte spilled), which the process then frees again when the value is read
//! back or dropped. With `O_DIRECT` the bytes go from the process's memory to the disk
//! without a copy in the page cache. Direct I/O needs aligned buffers, offsets and lengths,
//! so values are staged through a small aligned buffer (a few MiB, reused across spills);
//! a file's last partial block is padded and the file cut back to its length.
//!
//! Where the file system refuses direct I/O (`fcntl` setting `O_DIRECT` fails, as on
//! tmpfs before Linux 6.6), or a direct write or read is refused, the file is read and
//! written through the page cache instead, in the same staged chunks.

use std::fs::File;
use std::io::{self, Read, Write};
use std::ptr::NonNull;

use parking_lot::Mutex;

/// Alignment of direct I/O buffers, file offsets and lengths: the page size, a multiple of
/// every common logical block size.
const ALIGN: usize = 4096;

/// An aligned buffer staging bytes between values and spill files.
pub(crate) struct Stage {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: `Stage` owns its allocation exclusively, like a `Box<[u8]>`.
unsafe impl Send for Stage {}

impl Stage {
    fn layout(len: usize) -> std::alloc::Layout {
        std::alloc::Layout::from_size_align(len, ALIGN).expect("a stage size fits a layout")
    }

    /// A zeroed buffer of `len` bytes (a positive multiple of [`ALIGN`]).
    fn new(len: usize) -> Stage {
        debug_assert!(len > 0 && len.is_multiple_of(ALIGN));
        let layout = Self::layout(len);
        // SAFETY: the layout has a non-zero size.
        let p = unsafe { std::alloc::alloc_zeroed(layout) };
        let ptr = NonNull::new(p).unwrap_or_else(|| std::alloc::handle_alloc_error(layout));
        Stage { ptr, len }
    }

    fn bytes(&mut self) -> &mut [u8] {
        // SAFETY: `ptr` points to `len` initialized (zeroed, then written) bytes owned by
        // `self`, borrowed mutably for the slice's life.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl Drop for Stage {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with this layout.
        unsafe { std::alloc::dealloc(self.ptr.as_ptr(), Self::layout(self.len)) }
    }
}

/// The store's staging buffers and whether direct I/O is in use.
pub(crate) struct Direct {
    stage_len: usize,
    /// Buffers free for the next spill or reload (kept: fresh pages cost more than reuse).
    free: Mutex<Vec<Stage>>,
    /// Whether to try direct I/O (cleared when the file system refuses it).
    enabled: std::sync::atomic::AtomicBool,
}

/// Buffers kept for reuse; more are made when more threads spill at once.
const KEEP: usize = 4;

impl Direct {
    /// Staging buffers of about a 64th of `limit` (64 KiB to 4 MiB), direct I/O on unless
    /// `DAGGER_SPILL_DIRECT` is `0`, `off` or `false`.
    pub(crate) fn new(limit: u64) -> Direct {
        let len = (limit / 64).clamp(64 << 10, 4 << 20) as usize / ALIGN * ALIGN;
        let off = std::env::var("DAGGER_SPILL_DIRECT").is_ok_and(|v| {
            matches!(
                v.trim().to_ascii_lowercase().as_str(),
                "0" | "off" | "false" | "no"
            )
        });
        Direct {
            stage_len: len,
            free: Mutex::new(Vec::new()),
            enabled: std::sync::atomic::AtomicBool::new(cfg!(target_os = "linux") && !off),
        }
    }

    /// Whether spill files go through direct I/O (until the file system refuses it).
    pub(crate) fn enabled(&self) -> bool {
        self.enabled.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn disable(&self, why: &io::Error) {
        if self
            .enabled
            .swap(false, std::sync::atomic::Ordering::Relaxed)
        {
            tracing::debug!("spill files go through the page cache: direct I/O refused ({why})");
        }
    }

    fn take(&self) -> Stage {
        self.free
            .lock()
            .pop()
            .unwrap_or_else(|| Stage::new(self.stage_len))
    }

    fn give(&self, s: Stage) {
        let mut f = self.free.lock();
        if f.len() < KEEP {
            f.push(s);
        }
    }

    /// A writer of the new file `f` (opened for writing, empty).
    pub(crate) fn writer<'a>(&'a self, f: File) -> SpillWriter<'a> {
        let direct = self.enabled() && self.set_direct(&f);
        SpillWriter {
            direct_io: self,
            file: f,
            direct,
            stage: Some(self.take()),
            len: 0,
            written: 0,
            taken: 0,
            holes: Vec::new(),
        }
    }

    /// A reader of the spill file `f` (with the padding its writer reported).
    pub(crate) fn reader<'a>(&'a self, f: File, holes: Holes) -> SpillReader<'a> {
        let direct = self.enabled() && self.set_direct(&f);
        SpillReader {
            direct_io: self,
            file: f,
            direct,
            stage: Some(self.take()),
            stage_at: 0,
            stage_end: 0,
            pos: 0,
            holes,
        }
    }

    /// Turns direct I/O on for `f`; false (and off for the store) when refused.
    fn set_direct(&self, f: &File) -> bool {
        match set_o_direct(f, true) {
            Ok(()) => true,
            Err(e) => {
                self.disable(&e);
                false
            }
        }
    }
}

#[cfg(target_os = "linux")]
fn set_o_direct(f: &File, on: bool) -> io::Result<()> {
    use std::os::unix::io::AsRawFd;
    let fd = f.as_raw_fd();
    // SAFETY: fcntl on a descriptor `f` owns, with flags read from it just before.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        if flags < 0 {
            return Err(io::Error::last_os_error());
        }
        let flags = if on {
            flags | libc::O_DIRECT
        } else {
            flags & !libc::O_DIRECT
        };
        if libc::fcntl(fd, libc::F_SETFL, flags) < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

#[cfg(not(target_os = "linux"))]
fn set_o_direct(_: &File, on: bool) -> io::Result<()> {
    if on {
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "direct I/O is only used on Linux",
        ))
    } else {
        Ok(())
    }
}

/// Whether an error says the request did not suit direct I/O (alignment, file system).
fn refused(e: &io::Error) -> bool {
    #[cfg(unix)]
    {
        e.raw_os_error() == Some(libc::EINVAL)
    }
    #[cfg(not(unix))]
    {
        let _ = e;
        false
    }
}

/// Writes of at least this many bytes go from the value's memory to the file without a
/// copy (their aligned middle, under direct I/O).
const ZERO_COPY: usize = 256 << 10;

/// Padding in a spill file: `(at, len)`, `len` zero bytes after the first `at` bytes of
/// the value, so that what follows starts at an aligned offset (as it lay in memory).
pub(crate) type Holes = Vec<(u64, u64)>;

/// Writes a spill file: small writes are staged and written in aligned chunks; the
/// aligned middle of a large write (a vector's elements) goes from the value's memory
/// straight to the disk, at a file offset padded to line up with it.
/// [`finish`](SpillWriter::finish) writes the rest and gives the padding.
pub(crate) struct SpillWriter<'a> {
    direct_io: &'a Direct,
    file: File,
    direct: bool,
    stage: Option<Stage>,
    /// Bytes staged.
    len: usize,
    /// Bytes in the file.
    written: u64,
    /// Bytes of the value taken.
    taken: u64,
    holes: Holes,
}

impl SpillWriter<'_> {
    fn stage(&mut self) -> &mut [u8] {
        self.stage
            .as_mut()
            .expect("the stage is held until drop")
            .bytes()
    }

    /// Writes `b` (aligned in memory and a multiple of [`ALIGN`] long under direct I/O, at
    /// an aligned offset).
    fn write_out(&mut self, b: &[u8]) -> io::Result<()> {
        loop {
            match (&self.file).write_all(b) {
                Err(e) if self.direct && refused(&e) => {
                    // Refused after all: the rest goes through the page cache.
                    self.direct_io.disable(&e);
                    self.direct = false;
                    set_o_direct(&self.file, false)?;
                }
                r => break r?,
            }
        }
        self.written += b.len() as u64;
        Ok(())
    }

    /// Writes what is staged, padded to [`ALIGN`] under direct I/O (the padding counted in
    /// the file, not the value: [`finish`](Self::finish) cuts the last of it).
    fn write_staged(&mut self) -> io::Result<u64> {
        let n = self.len;
        if n == 0 {
            return Ok(0);
        }
        let padded = if self.direct {
            n.div_ceil(ALIGN) * ALIGN
        } else {
            n
        };
        let mut stage = self.stage.take().expect("the stage is held until drop");
        stage.bytes()[n..padded].fill(0);
        let r = self.write_out(&stage.bytes()[..padded]);
        self.stage = Some(stage);
        r?;
        self.len = 0;
        Ok((padded - n) as u64)
    }

    /// Writes what is staged and cuts the file to the bytes given; returns the file's
    /// length and the padding inside it.
    pub(crate) fn finish(mut self) -> io::Result<(u64, Holes)> {
        let pad = self.write_staged()?;
        if pad > 0 {
            self.written -= pad;
            self.file.set_len(self.written)?;
        }
        Ok((self.written, std::mem::take(&mut self.holes)))
    }
}

impl Write for SpillWriter<'_> {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        if b.len() >= ZERO_COPY {
            // The unaligned head is staged; the stage is written out, padded so that the
            // aligned middle lands at an aligned offset; the middle goes out as it lies.
            let head = if self.direct {
                b.as_ptr().align_offset(ALIGN)
            } else {
                0
            };
            let cap = stage_len(&self.stage);
            if self.len + head <= cap {
                let at = self.len;
                self.stage()[at..at + head].copy_from_slice(&b[..head]);
                self.len += head;
                self.taken += head as u64;
                let pad = self.write_staged()?;
                if pad > 0 {
                    self.holes.push((self.taken, pad));
                }
                let mid = if self.direct {
                    (b.len() - head) / ALIGN * ALIGN
                } else {
                    b.len()
                };
                self.write_out(&b[head..head + mid])?;
                self.taken += mid as u64;
                return Ok(head + mid);
            }
        }
        let at = self.len;
        let cap = stage_len(&self.stage);
        let k = b.len().min(cap - at);
        self.stage()[at..at + k].copy_from_slice(&b[..k]);
        self.len += k;
        self.taken += k as u64;
        if self.len == cap {
            self.write_staged()?;
        }
        Ok(k)
    }

    fn flush(&mut self) -> io::Result<()> {
        // Staged bytes are written in whole chunks and by `finish`.
        Ok(())
    }
}

fn stage_len(s: &Option<Stage>) -> usize {
    s.as_ref().map_or(0, |s| s.len)
}

impl Drop for SpillWriter<'_> {
    fn drop(&mut self) {
        if let Some(s) = self.stage.take() {
            self.direct_io.give(s);
        }
    }
}

/// Reads a spill file written by [`SpillWriter`], skipping its padding: through the stage,
/// or straight into the reader's memory when it lines up with the file as it did when
/// written (large allocations sit at the same offset within a page each time).
pub(crate) struct SpillReader<'a> {
    direct_io: &'a Direct,
    file: File,
    direct: bool,
    stage: Option<Stage>,
    /// The file's bytes at `[stage_at, stage_at + stage_end)` are staged.
    stage_at: u64,
    stage_end: usize,
    /// Bytes of the value read.
    pos: u64,
    holes: Holes,
}

impl SpillReader<'_> {
    /// Where in the file the value's byte `pos` is, and how many bytes of the value run on
    /// from there without padding.
    fn locate(&self, pos: u64) -> (u64, u64) {
        let mut shift = 0;
        for &(at, pad) in &self.holes {
            if pos < at {
                return (pos + shift, at - pos);
            }
            shift += pad;
        }
        (pos + shift, u64::MAX)
    }

    /// Reads at `at` into `buf` (aligned in memory, offset and length under direct I/O).
    fn read_in(&mut self, buf: &mut [u8], at: u64) -> io::Result<usize> {
        loop {
            match read_at(&self.file, buf, at) {
                Err(e) if self.direct && refused(&e) => {
                    self.direct_io.disable(&e);
                    self.direct = false;
                    set_o_direct(&self.file, false)?;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                r => return r,
            }
        }
    }
}

#[cfg(unix)]
fn read_at(f: &File, buf: &mut [u8], at: u64) -> io::Result<usize> {
    std::os::unix::fs::FileExt::read_at(f, buf, at)
}

#[cfg(windows)]
fn read_at(f: &File, buf: &mut [u8], at: u64) -> io::Result<usize> {
    std::os::windows::fs::FileExt::seek_read(f, buf, at)
}

impl Read for SpillReader<'_> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if out.is_empty() {
            return Ok(0);
        }
        let (at, run) = self.locate(self.pos);
        let want = (out.len() as u64).min(run) as usize;
        // Staged already.
        if at >= self.stage_at && at < self.stage_at + self.stage_end as u64 {
            let from = (at - self.stage_at) as usize;
            let k = want.min(self.stage_end - from);
            let stage = self.stage.as_mut().expect("the stage is held until drop");
            out[..k].copy_from_slice(&stage.bytes()[from..from + k]);
            self.pos += k as u64;
            return Ok(k);
        }
        // Straight into `out` when it lines up.
        let lined_up = !self.direct
            || (at.is_multiple_of(ALIGN as u64) && out.as_ptr().align_offset(ALIGN) == 0);
        if want >= ZERO_COPY && lined_up {
            let k = if self.direct {
                want / ALIGN * ALIGN
            } else {
                want
            };
            let n = self.read_in(&mut out[..k], at)?;
            self.pos += n as u64;
            return Ok(n);
        }
        // Through the stage: from the aligned offset before `at`, up to the padding (or
        // the stage's size).
        let from = at / ALIGN as u64 * ALIGN as u64;
        let skip = (at - from) as usize;
        let mut stage = self.stage.take().expect("the stage is held until drop");
        let mut len = stage.len;
        if run != u64::MAX {
            len = len.min((skip as u64 + run).div_ceil(ALIGN as u64) as usize * ALIGN);
        }
        let r = self.read_in(&mut stage.bytes()[..len], from);
        self.stage = Some(stage);
        let n = r?;
        self.stage_at = from;
        self.stage_end = n;
        if n <= skip {
            return Ok(0);
        }
        self.read(out)
    }
}

impl Drop for SpillReader<'_> {
    fn drop(&mut self) {
        if let Some(s) = self.stage.take() {
            self.direct_io.give(s);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Writes a header and `n` bytes starting `skew` bytes into an allocation (as a
    /// vector's elements lie), reads them back into memory skewed by `back`.
    fn roundtrip(direct: &Direct, dir: &std::path::Path, n: usize, skew: usize, back: usize) {
        let stage = direct.stage_len;
        let data: Vec<u8> = (0..n + skew).map(|i| (i * 131 % 251) as u8).collect();
        let body = &data[skew..];
        let path = dir.join(format!("{stage}-{n}-{skew}-{back}.spill"));
        let f = File::options()
            .write(true)
            .create_new(true)
            .open(&path)
            .unwrap();
        let mut w = direct.writer(f);
        w.write_all(&(n as u64).to_le_bytes()).unwrap();
        w.write_all(body).unwrap();
        let (len, holes) = w.finish().unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().len(), len);
        let pad: u64 = holes.iter().map(|h| h.1).sum();
        assert_eq!(len, 8 + n as u64 + pad);
        let mut r = direct.reader(File::open(&path).unwrap(), holes);
        let mut head = [0u8; 8];
        r.read_exact(&mut head).unwrap();
        assert_eq!(u64::from_le_bytes(head), n as u64);
        let mut into = vec![0u8; n + back];
        r.read_exact(&mut into[back..]).unwrap();
        assert!(
            into[back..] == *body,
            "{n} bytes (skewed {skew}, {back}) came back changed"
        );
        assert_eq!(r.read(&mut head).unwrap(), 0, "bytes after the value");
    }

    #[test]
    fn bytes_come_back_whole() {
        let dir = std::env::temp_dir().join(format!("dagger-direct-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir(&dir).unwrap();
        for direct in [Direct::new(0), Direct::new(1 << 30)] {
            for n in [
                0,
                1,
                8,
                4095,
                4096,
                4097,
                65536 * 3 + 17,
                1 << 20,
                (3 << 20) + 5,
            ] {
                for (skew, back) in [(0, 0), (16, 16), (16, 0), (4000, 8)] {
                    roundtrip(&direct, &dir, n, skew, back);
                }
            }
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
