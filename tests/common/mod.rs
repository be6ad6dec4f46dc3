//! Helpers shared by the integration tests.

use std::sync::mpsc;
use std::time::Duration;

use dagger::{Context, GpuInfo, ProcessorKind};

fn gpus_required() -> bool {
    std::env::var("DAGGER_REQUIRE_GPU").is_ok_and(|v| v == "1")
}

/// The GPUs of `ctx`. When there are none, prints that `what` is skipped — or, under
/// `DAGGER_REQUIRE_GPU=1` (as CI sets), fails the test instead.
#[allow(dead_code)]
pub fn gpus_or_skip(ctx: &Context, what: &str) -> Vec<GpuInfo> {
    let gpus: Vec<GpuInfo> = ctx
        .processors()
        .into_iter()
        .filter(|p| p.kind == ProcessorKind::Wgpu)
        .filter_map(|p| p.gpu)
        .collect();
    if gpus.is_empty() {
        let why = format!("no wgpu adapter found (errors: {:?})", ctx.gpu_errors());
        if gpus_required() {
            panic!("DAGGER_REQUIRE_GPU=1 but {why}; install mesa-vulkan-drivers");
        }
        eprintln!("skipped {what}: {why}");
    }
    gpus
}

/// Whether `gpus` has a second GPU for `what`. When not, prints that `what` is skipped — or,
/// under `DAGGER_REQUIRE_GPU=1` (CI has lavapipe and llvmpipe), fails the test instead.
#[allow(dead_code)]
pub fn has_two_gpus(gpus: &[GpuInfo], what: &str) -> bool {
    if gpus.len() >= 2 {
        return true;
    }
    let why = format!("it needs two GPUs and found {}", gpus.len());
    if gpus_required() {
        panic!("DAGGER_REQUIRE_GPU=1 but {why} (CI has Mesa's lavapipe and llvmpipe)");
    }
    eprintln!("skipped {what}: {why}");
    false
}

/// Runs `f` on its own thread and returns its value, failing the test if it takes longer
/// than `secs` seconds (a hang) and passing its panic on.
#[allow(dead_code)]
pub fn within<T: Send + 'static>(
    secs: u64,
    what: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)));
    });
    match rx.recv_timeout(Duration::from_secs(secs)) {
        Ok(Ok(v)) => v,
        Ok(Err(p)) => std::panic::resume_unwind(p),
        Err(_) => panic!("{what} did not finish within {secs} s: it hangs"),
    }
}
