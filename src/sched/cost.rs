//! Learned run times for placement by earliest estimated finish.
//!
//! Run times are kept per (function, argument signature, processor class), as an
//! exponentially weighted average. All CPU threads form one class (they are identical);
//! every other processor is its own class. An unmeasured pairing is estimated from the
//! task's time hint, or as zero, so every candidate gets tried and measured early (the
//! model is optimistic about what it has not seen).

use std::collections::HashMap;
use std::hash::{Hash, Hasher};

use parking_lot::RwLock;

/// Identifies what a task computes, for learning its run time.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct CostKey(pub(crate) u64);

impl CostKey {
    pub(crate) fn new(function: std::any::TypeId, signature: &[&'static str]) -> Self {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        function.hash(&mut h);
        signature.hash(&mut h);
        CostKey(h.finish())
    }

    /// The key of the same function under another name (a kernel's).
    pub(crate) fn named(self, name: &str) -> Self {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        self.0.hash(&mut h);
        name.hash(&mut h);
        CostKey(h.finish())
    }
}

#[derive(Default)]
pub(crate) struct CostModel {
    runs: RwLock<HashMap<(CostKey, u32), Ewma>>,
}

#[derive(Clone, Copy)]
struct Ewma {
    mean_ns: f64,
    samples: u64,
}

impl CostModel {
    /// Estimated run time in ns, if measured.
    pub(crate) fn estimate(&self, key: CostKey, class: u32) -> Option<u64> {
        self.runs
            .read()
            .get(&(key, class))
            .map(|e| e.mean_ns as u64)
    }

    pub(crate) fn record(&self, key: CostKey, class: u32, ns: u64) {
        let mut m = self.runs.write();
        let e = m.entry((key, class)).or_insert(Ewma {
            mean_ns: ns as f64,
            samples: 0,
        });
        e.samples += 1;
        let w = if e.samples < 4 { 0.5 } else { 0.2 };
        e.mean_ns = e.mean_ns * (1.0 - w) + ns as f64 * w;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn estimates_follow_recent_samples() {
        let m = CostModel::default();
        let k = CostKey::new(std::any::TypeId::of::<u8>(), &["a"]);
        assert_eq!(m.estimate(k, 0), None);
        m.record(k, 0, 1_000);
        assert_eq!(m.estimate(k, 0), Some(1_000));
        for _ in 0..50 {
            m.record(k, 0, 5_000);
        }
        let e = m.estimate(k, 0).unwrap();
        assert!((4_900..=5_000).contains(&e), "{e}");
        assert_eq!(m.estimate(k, 1), None, "classes are separate");
        let k2 = CostKey::new(std::any::TypeId::of::<u8>(), &["b"]);
        assert_ne!(k, k2, "signatures are part of the key");
    }
}
