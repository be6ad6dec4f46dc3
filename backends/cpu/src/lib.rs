//! Block kernels on host memory for `dagger`.
//!
//! This crate knows nothing of scheduling: it holds the CPU implementations of the block
//! operations that `dagger`'s kernels dispatch to when a task is placed on a CPU thread.

/// `y[i] = a * x[i] + y[i]` over two equally long slices.
///
/// # Panics
/// Panics if `x` and `y` differ in length.
///
/// ```
/// let x = [1.0f32, 2.0];
/// let mut y = [10.0f32, 20.0];
/// dagger_cpu::saxpy(2.0, &x, &mut y);
/// assert_eq!(y, [12.0, 24.0]);
/// ```
#[track_caller]
pub fn saxpy(a: f32, x: &[f32], y: &mut [f32]) {
    assert_eq!(
        x.len(),
        y.len(),
        "saxpy: x has {} elements but y has {}",
        x.len(),
        y.len()
    );
    for (yi, xi) in y.iter_mut().zip(x) {
        *yi += a * xi;
    }
}
