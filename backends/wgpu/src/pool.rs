//! Idle device buffers kept for reuse, bucketed by size class.

use std::collections::HashMap;

/// Most bytes the pool keeps idle per device; buffers returned beyond this are freed.
pub const POOL_IDLE_CAP: u64 = 256 << 20;

/// The bytes a device allocates for a buffer of `bytes` bytes: its pool size class (see
/// [`GpuBuffer::capacity_bytes`](crate::GpuBuffer::capacity_bytes)).
///
/// ```
/// assert_eq!(dagger_wgpu::allocation_size(4096), 4096);
/// assert_eq!(dagger_wgpu::allocation_size(4097), 8192);
/// assert_eq!(dagger_wgpu::allocation_size(0), 4);
/// ```
pub fn allocation_size(bytes: u64) -> u64 {
    size_class(bytes)
}

/// Rounds a request up to its size class: powers of two up to 64 KiB, then four classes per
/// power of two (so at most 25% is wasted), never below 4 bytes (wgpu forbids empty bindings).
pub(crate) fn size_class(bytes: u64) -> u64 {
    let b = bytes.max(4).next_multiple_of(4);
    if b <= 64 << 10 {
        return b.next_power_of_two();
    }
    let floor = 1u64 << (63 - b.leading_zeros());
    b.next_multiple_of(floor / 4)
}

#[derive(Debug, Default)]
pub(crate) struct Pool {
    idle: HashMap<u64, Vec<wgpu::Buffer>>,
    idle_bytes: u64,
}

impl Pool {
    /// An idle buffer of exactly this class, if there is one.
    pub(crate) fn take(&mut self, class: u64) -> Option<wgpu::Buffer> {
        let buf = self.idle.get_mut(&class)?.pop()?;
        self.idle_bytes -= class;
        Some(buf)
    }

    /// Keeps `buf` for reuse, or hands it back if that would exceed `cap` idle bytes.
    pub(crate) fn put(&mut self, class: u64, buf: wgpu::Buffer, cap: u64) -> Option<wgpu::Buffer> {
        if self.idle_bytes + class > cap {
            return Some(buf);
        }
        self.idle_bytes += class;
        self.idle.entry(class).or_default().push(buf);
        None
    }

    /// Removes every idle buffer, returning them with their total size.
    pub(crate) fn drain(&mut self) -> (Vec<wgpu::Buffer>, u64) {
        let bytes = std::mem::take(&mut self.idle_bytes);
        (self.idle.drain().flat_map(|(_, v)| v).collect(), bytes)
    }

    pub(crate) fn idle_bytes(&self) -> u64 {
        self.idle_bytes
    }
}

#[cfg(test)]
mod tests {
    use super::size_class;

    #[test]
    fn classes_cover_requests_with_bounded_waste() {
        assert_eq!(size_class(0), 4);
        assert_eq!(size_class(1), 4);
        assert_eq!(size_class(5), 8);
        assert_eq!(size_class(4096), 4096);
        assert_eq!(size_class(4097), 8192);
        for bytes in [
            65_537u64,
            100_000,
            1 << 20,
            (1 << 20) + 1,
            3 << 27,
            (1 << 31) - 4,
        ] {
            let c = size_class(bytes);
            assert!(c >= bytes && c.is_multiple_of(4), "{bytes} -> {c}");
            assert!(c - bytes <= bytes / 4 + 4, "{bytes} -> {c} wastes too much");
        }
    }
}
