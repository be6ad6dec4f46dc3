//! Tasks placed on a GPU that is lost before they start run on another candidate instead.
//! (Its own test binary: losing a device is for the whole process.)

mod common;

use dagger::prelude::*;

#[test]
fn tasks_queued_on_a_lost_gpu_are_placed_again() {
    let ctx = Context::builder().threads(1).build().unwrap();
    let gpus = common::gpus_or_skip(&ctx, "re-placement after a device loss");
    if !common::has_two_gpus(&gpus, "re-placement after a device loss") {
        return;
    }
    // GPU-only, so a task can only go to a GPU.
    let inc = common::increment("increment on a GPU", false);
    let on_gpus = Options::new().scope(Scope::gpus(..));
    ctx.enable_logging();
    let tasks: Vec<_> = (0..400)
        .map(|i| {
            ctx.spawn_kernel_with(on_gpus.clone(), &inc, (), [vec![i as f32; 4096].into()])
                .unwrap()
        })
        .collect();
    let ids: Vec<u64> = tasks.iter().map(|t| t.id()).collect();
    // Most are still queued, on both devices.
    ctx.gpu_device(0).unwrap().destroy();
    let results = common::within(300, "400 kernels on two GPUs, one lost", move || {
        tasks.iter().map(|t| t.fetch()).collect::<Vec<_>>()
    });
    let gpu0 = ctx
        .processors()
        .into_iter()
        .find(|p| p.gpu.as_ref().is_some_and(|g| g.index == 0))
        .unwrap()
        .id;
    let logs = ctx.fetch_logs();
    let ran_on = |id: u64, on_gpu0: bool| {
        logs.iter().any(|e| {
            e.kind == dagger::EventKind::Task && e.task == id && (e.processor == gpu0) == on_gpu0
        })
    };
    // What ran on the lost device before the loss (its results lived only there) or was in
    // flight there may fail; a task that had not started there runs on gpu 1.
    let mut not_started_failed = Vec::new();
    for (i, (id, r)) in ids.iter().zip(&results).enumerate() {
        match r {
            Ok(v) => assert_eq!(*v, vec![i as f32 + 1.0; 4096]),
            Err(e) if !ran_on(*id, true) => not_started_failed.push(e.to_string()),
            Err(_) => {}
        }
    }
    // A launch racing the loss may still fail before it is logged.
    assert!(
        not_started_failed.len() <= 4,
        "{} tasks that never ran on the lost gpu 0 failed although gpu 1 is healthy; first: {}",
        not_started_failed.len(),
        not_started_failed.first().map_or("", |s| s.as_str())
    );
    let on_gpu1 = ids.iter().filter(|&&id| ran_on(id, false)).count();
    assert!(on_gpu1 > 0, "gpu 1 ran the rest: {on_gpu1} of 400 tasks");
}
