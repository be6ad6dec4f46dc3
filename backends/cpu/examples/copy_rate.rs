//! How fast `MatMut::copy_from` moves a tiled LU's panel between layouts: eight row-major
//! 512x512 `f64` blocks into one column-major 4096x512 buffer and back, five times (the
//! first touches fresh memory).
//!
//! ```text
//! cargo run -p dagger-cpu --release --example copy_rate
//! ```

use dagger_cpu::{column_major_ld, MatMut, MatRef};
use std::time::Instant;
fn main() {
    let (h, w, b) = (4096usize, 512usize, 512usize);
    let blocks: Vec<Vec<f64>> = (0..h / b)
        .map(|k| (0..b * w).map(|x| (x + k) as f64).collect())
        .collect();
    let ld = column_major_ld(h);
    let mut lu = vec![0.0f64; ld * w];
    let mut outs: Vec<Vec<f64>> = (0..h / b).map(|_| vec![0.0; b * w]).collect();
    for rep in 0..5 {
        let t = Instant::now();
        for (i, blk) in blocks.iter().enumerate() {
            MatMut::with_ld(&mut lu[i * b..], w, b, ld)
                .t()
                .copy_from(MatRef::new(blk, b, w));
        }
        let t1 = t.elapsed();
        for (i, o) in outs.iter_mut().enumerate() {
            MatMut::new(o, b, w).copy_from(MatRef::with_ld(&lu[i * b..], w, b, ld).t());
        }
        let t2 = t.elapsed() - t1;
        let gb = (h * w * 8) as f64 / 1e9;
        println!(
            "rep {rep}: in {:.2} ms ({:.1} GB/s) out {:.2} ms ({:.1} GB/s)",
            t1.as_secs_f64() * 1e3,
            gb / t1.as_secs_f64(),
            t2.as_secs_f64() * 1e3,
            gb / t2.as_secs_f64()
        );
    }
    assert_eq!(outs, blocks);
}
