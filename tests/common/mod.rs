//! Helpers shared by the integration tests.

use dagger::{Context, GpuInfo, ProcessorKind};

/// The GPUs of `ctx`. When there are none, prints that `what` is skipped — or, under
/// `DAGGER_REQUIRE_GPU=1` (as CI sets), fails the test instead.
pub fn gpus_or_skip(ctx: &Context, what: &str) -> Vec<GpuInfo> {
    let gpus: Vec<GpuInfo> = ctx
        .processors()
        .into_iter()
        .filter(|p| p.kind == ProcessorKind::Wgpu)
        .filter_map(|p| p.gpu)
        .collect();
    if gpus.is_empty() {
        let why = format!("no wgpu adapter found (errors: {:?})", ctx.gpu_errors());
        if std::env::var("DAGGER_REQUIRE_GPU").is_ok_and(|v| v == "1") {
            panic!("DAGGER_REQUIRE_GPU=1 but {why}; install mesa-vulkan-drivers");
        }
        eprintln!("skipped {what}: {why}");
    }
    gpus
}
