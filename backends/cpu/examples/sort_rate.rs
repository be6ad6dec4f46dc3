//! Keys per second of `sort_keys` beside `slice::sort_unstable` on the same uniform keys (the
//! keys of f64 in [0, 1), as `DArray::sort` makes them), one thread, alternated; then
//! `merge_f64` (and `merge_f32`) of two sorted halves of such numbers beside a two-way merge
//! with a branch per element, as `DArray::sort` merges where it cannot use them.
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
    // Two sorted runs of n / 2 numbers each, merged.
    let mut numbers: Vec<f64> = keys
        .iter()
        .map(|k| f64::from_bits(k & !(1 << 63)))
        .collect();
    let (a, b) = numbers.split_at_mut(n / 2);
    a.sort_by(f64::total_cmp);
    b.sort_by(f64::total_cmp);
    let (a, b) = (&*a, &*b);
    let mut out = vec![0.0; n];
    let per = |secs: f64| secs / n as f64 * 1e9;
    for _ in 0..3 {
        let t = Instant::now();
        dagger_cpu::merge_f64(a, b, dagger_cpu::Direction::Ascending, &mut out);
        let ours = t.elapsed().as_secs_f64();
        assert!(out.is_sorted_by(|x, y| x <= y));
        let t = Instant::now();
        branchy_merge(a, b, &mut out);
        let branchy = t.elapsed().as_secs_f64();
        println!(
            "n={n}: merge_f64 {:.2} ns/element, branchy merge {:.2} ns/element",
            per(ours),
            per(branchy)
        );
    }
    // The same numbers as f32.
    let (a, b): (Vec<f32>, Vec<f32>) = (
        a.iter().map(|&x| x as f32).collect(),
        b.iter().map(|&x| x as f32).collect(),
    );
    let mut out = vec![0.0f32; n];
    for _ in 0..3 {
        let t = Instant::now();
        dagger_cpu::merge_f32(&a, &b, dagger_cpu::Direction::Ascending, &mut out);
        let ours = t.elapsed().as_secs_f64();
        assert!(out.is_sorted_by(|x, y| x <= y));
        let t = Instant::now();
        branchy_merge(&a, &b, &mut out);
        let branchy = t.elapsed().as_secs_f64();
        println!(
            "n={n}: merge_f32 {:.2} ns/element, branchy merge {:.2} ns/element",
            per(ours),
            per(branchy)
        );
    }
}

/// A two-way merge with a branch per element.
fn branchy_merge<T: Copy + PartialOrd>(a: &[T], b: &[T], out: &mut [T]) {
    let (mut i, mut j) = (0, 0);
    for o in out.iter_mut() {
        if j == b.len() || (i < a.len() && a[i] <= b[j]) {
            *o = a[i];
            i += 1;
        } else {
            *o = b[j];
            j += 1;
        }
    }
}
