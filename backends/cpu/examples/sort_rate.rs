//! Keys per second of `sort_keys` beside `slice::sort_unstable` on the same uniform keys (the
//! keys of f64 in [0, 1), as `DArray::sort` makes them), one thread, alternated.
//!
//! ```text
//! cargo run -p dagger-cpu --release --example sort_rate -- 10000000
//! ```

use std::time::Instant;

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .map(|s| s.parse().expect("the length must be a number"))
        .unwrap_or(10_000_000);
    let mut x = 88172645463325252u64;
    let keys: Vec<u64> = (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            ((x >> 11) as f64 / (1u64 << 53) as f64).to_bits() | 1 << 63
        })
        .collect();
    let mut v = keys.clone();
    let rate = |secs: f64| n as f64 / secs / 1e6;
    for _ in 0..3 {
        v.copy_from_slice(&keys);
        let t = Instant::now();
        dagger_cpu::sort_keys(&mut v);
        let ours = t.elapsed().as_secs_f64();
        assert!(v.is_sorted());
        v.copy_from_slice(&keys);
        let t = Instant::now();
        v.sort_unstable();
        let std = t.elapsed().as_secs_f64();
        println!(
            "n={n}: sort_keys {:.1} M keys/s, sort_unstable {:.1} M keys/s",
            rate(ours),
            rate(std)
        );
    }
}
