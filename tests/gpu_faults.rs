//! Faults of devices and of memory: a GPU lost while tasks use it, and arrays too large for
//! the machine. (Its own test binary: a destroyed device stays lost for the process, so the
//! loss scenarios run one after another in one test.)

mod common;

use std::time::Duration;

use common::{chain, increment};
use dagger::prelude::*;
use dagger::{ArrayError, Cell, CellsRestored, InOut};

/// Losing GPU 0 while a datadeps region increments cells on it leaves every cell with a
/// version that can still be read, says which, and afterwards placement avoids the lost
/// device: work on a set of GPUs goes to the healthy one, and a result made on the lost
/// device before the loss is reported as lost with that device.
#[test]
fn a_lost_gpu_keeps_cells_readable_and_leaves_placement() {
    let ctx = Context::builder().threads(2).build().unwrap();
    let gpus = common::gpus_or_skip(&ctx, "the GPU loss scenarios");
    if gpus.is_empty() {
        return;
    }
    let inc = increment("increment", true);

    // A result finished on GPU 0 before the loss, never fetched.
    let made_before = ctx
        .spawn_kernel_with(
            Options::new().scope(Scope::gpu(0)),
            &inc,
            (),
            [vec![1.0f32; 1024].into()],
        )
        .unwrap();
    made_before.wait();
    assert!(made_before.is_ready());

    // The loss in the middle of a region.
    let cells: Vec<Cell<Vec<f32>>> = (0..4).map(|_| Cell::new(vec![0.0f32; 1 << 16])).collect();
    let killer = {
        let ctx = ctx.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            ctx.gpu_device(0).unwrap().destroy();
        })
    };
    let region = {
        let (ctx, inc, cells) = (ctx.clone(), inc.clone(), cells.clone());
        common::within(300, "the region that loses its GPU", move || {
            ctx.spawn_datadeps(|r| {
                for _ in 0..400 {
                    for c in &cells {
                        r.spawn_kernel_with(
                            Options::new().scope(Scope::gpu(0)),
                            &inc,
                            (),
                            [InOut(c).into()],
                        )
                        .unwrap();
                    }
                }
            })
        })
    };
    killer.join().unwrap();
    let err = region.expect_err("the region lost its device before it finished");
    let text = chain(&err);
    assert!(text.contains("lost"), "the error names the loss: {text}");
    // The region's error lists the cells that went back: results lost with the device
    // outrank the first task failure (which the list carries as its source).
    let restored: &CellsRestored = err
        .restored_cells()
        .unwrap_or_else(|| panic!("the region's error lists the restored cells: {text}"));
    assert!(restored.lost_data(), "{restored}");
    let restored = Some(restored);
    for c in &cells {
        let v = c.get();
        assert_eq!(v.len(), 1 << 16, "cell {} keeps a whole version", c.id());
        let k = v[0];
        assert!(
            v.iter().all(|&x| x == k) && (0.0..=400.0).contains(&k) && k.fract() == 0.0,
            "cell {} holds one of its versions, not a mix: starts {:?}",
            c.id(),
            &v[..4]
        );
        if let Some(restored) = restored {
            let entry = restored
                .cells
                .iter()
                .find(|e| e.cell == c.id())
                .unwrap_or_else(|| panic!("cell {} is in the list: {restored}", c.id()));
            match &entry.version {
                None => assert_eq!(k, 0.0, "back to the value before the region"),
                Some(task) => assert!(k > 0.0, "back to {task}'s result"),
            }
            assert!(entry.skipped > 0, "newer versions were unreadable");
        }
    }

    // Placement leaves the lost device.
    if common::has_two_gpus(&gpus, "placement around a lost GPU") {
        let tasks: Vec<_> = (0..200)
            .map(|i| {
                ctx.spawn_kernel_with(
                    Options::new().scope(Scope::gpus(..)),
                    &inc,
                    (),
                    [vec![i as f32; 256].into()],
                )
                .unwrap()
            })
            .collect();
        let results = common::within(300, "200 kernels on the GPUs", move || {
            tasks.iter().map(|t| t.fetch()).collect::<Vec<_>>()
        });
        let failed: Vec<String> = results
            .iter()
            .filter_map(|r| r.as_ref().err().map(|e| chain(e)))
            .collect();
        assert!(
            failed.is_empty(),
            "{} of 200 kernels failed although gpu 1 is healthy; first: {}",
            failed.len(),
            failed.first().map_or("", |s| s.as_str())
        );
        for (i, r) in results.into_iter().enumerate() {
            assert_eq!(r.unwrap(), vec![i as f32 + 1.0; 256]);
        }
    }
    // Only the lost device may take the task: it fails at once, saying why.
    let only_lost = ctx
        .spawn_kernel_with(
            Options::new().scope(Scope::gpu(0)),
            &inc,
            (),
            [vec![1.0f32; 4].into()],
        )
        .unwrap();
    let e = common::within(60, "a task for the lost device", move || {
        only_lost.fetch().unwrap_err()
    });
    assert!(chain(&e).contains("lost"), "{}", chain(&e));

    // The result made before the loss: its value or an error naming the device and value.
    match common::within(60, "fetching a result of the lost device", move || {
        made_before.fetch()
    }) {
        Ok(v) => assert_eq!(v, vec![2.0; 1024]),
        Err(e) => {
            let text = chain(&e);
            assert!(
                text.contains("gpu 0") && text.contains("lost") && text.contains("1024"),
                "the error names the lost device and the value: {text}"
            );
        }
    }
}

/// Arrays that cannot fit in memory are refused when they are made or collected, before
/// anything is allocated, with advice.
#[test]
fn arrays_beyond_memory_are_errors_at_the_call() {
    // Without a memory limit nothing spills: arrays must fit in memory.
    let ctx = Context::builder()
        .threads(2)
        .no_memory_limit()
        .build()
        .unwrap();
    let huge = common::within(60, "a 10^12-element array", {
        let ctx = ctx.clone();
        move || DArray::<f32>::zeros(&ctx, [1_000_000, 1_000_000], AutoBlocks::new()).map(|_| ())
    });
    match huge {
        Err(ArrayError::OutOfMemory { bytes, limit, .. }) => {
            assert_eq!(bytes, 4_000_000_000_000);
            assert!(limit < bytes);
        }
        other => panic!("expected OutOfMemory, got {other:?}"),
    }
    let e = DArray::<f64>::ones(&ctx, [1 << 20, 1 << 20], Blocks::new([1 << 20, 1 << 20]))
        .map(|_| ())
        .unwrap_err();
    let text = e.to_string();
    assert!(
        text.contains("smaller") && text.contains("DAGGER_MEMORY_LIMIT"),
        "the message says what to change: {text}"
    );

    // Under a lower limit, an array whose blocks fit but whose whole does not is refused
    // when made; one made before the limit dropped can still be reduced block by block, but
    // not collected.
    let a = DArray::<f32>::ones(&ctx, [1024, 512], Blocks::new([256, 256])).unwrap();
    dagger::array::set_memory_limit(Some(1 << 20));
    let refused = DArray::<f32>::ones(&ctx, [2048, 256], Blocks::new([256, 256])).map(|_| ());
    let sum = common::within(60, "a sum", {
        let a = a.clone();
        move || a.sum().fetch().unwrap()
    });
    let collected = a.collect().map(|c| c.len());
    // A context that spills takes the array all the same: its blocks go to disk.
    let spilling = Context::builder()
        .threads(2)
        .gpus(false)
        .memory_limit(512 << 10)
        .build()
        .unwrap();
    let big = DArray::<f32>::ones(&spilling, [2048, 256], Blocks::new([256, 256]))
        .and_then(|b| Ok(b.sum().fetch()?));
    let spilled = spilling.memory_stats().spills;
    dagger::array::set_memory_limit(None);
    assert_eq!(big.unwrap(), (2048 * 256) as f32);
    assert!(spilled > 0);
    assert!(
        matches!(
            refused,
            Err(ArrayError::OutOfMemory {
                bytes: 2_097_152,
                limit: 1_048_576,
                ..
            })
        ),
        "{refused:?}"
    );
    assert_eq!(sum, (1024 * 512) as f32);
    match collected {
        Err(ArrayError::OutOfMemory { bytes, .. }) => assert_eq!(bytes, 1024 * 512 * 4),
        other => panic!("collect beyond the limit: {other:?}"),
    }
    assert_eq!(a.collect().unwrap().len(), 1024 * 512);
}
