//! Support for tests that need a device: they run on every adapter found, and skip loudly
//! when there is none unless `DAGGER_REQUIRE_GPU=1` makes that a failure.

use crate::device::{open_devices, Device};

/// Environment variable that turns "no wgpu adapter" into a test failure (CI sets it).
pub const REQUIRE_GPU_VAR: &str = "DAGGER_REQUIRE_GPU";

/// What a test prints when it skips for want of an adapter.
pub const SKIP_MESSAGE: &str = "skipped: no wgpu adapter (install mesa-vulkan-drivers or set \
                                DAGGER_REQUIRE_GPU=1 to make this an error)";

/// Whether `DAGGER_REQUIRE_GPU=1` is set.
pub fn gpu_required() -> bool {
    std::env::var(REQUIRE_GPU_VAR).is_ok_and(|v| v.trim() == "1")
}

/// Opens fresh devices on every adapter for a test.
///
/// With no adapter it prints [`SKIP_MESSAGE`] and returns an empty vector, so a test that
/// loops over the result does nothing, visibly. With `DAGGER_REQUIRE_GPU=1` it panics instead,
/// and also when any adapter fails to open.
///
/// # Panics
///
/// Under `DAGGER_REQUIRE_GPU=1`, when no device could be opened or an adapter failed to open.
pub fn devices_for_tests() -> Vec<Device> {
    let mut devices = Vec::new();
    let mut errors = Vec::new();
    for result in open_devices() {
        match result {
            Ok(d) => devices.push(d),
            Err(e) => errors.push(e.to_string()),
        }
    }
    for e in &errors {
        eprintln!("adapter failed to open: {e}");
    }
    if gpu_required() {
        assert!(
            errors.is_empty(),
            "{REQUIRE_GPU_VAR}=1 but adapters failed to open: {errors:?}"
        );
        assert!(
            !devices.is_empty(),
            "{REQUIRE_GPU_VAR}=1 but no wgpu adapter was found (install mesa-vulkan-drivers)"
        );
    } else if devices.is_empty() {
        eprintln!("{SKIP_MESSAGE}");
    }
    devices
}
