//! Task queues: `spawn_sequential` runs tasks in spawn order, `spawn_bulk` submits them
//! together.

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::within;
use dagger::prelude::*;
use dagger::{spawn_bulk, spawn_sequential};

fn ctx(threads: usize) -> Context {
    Context::builder()
        .threads(threads)
        .gpus(false)
        .build()
        .unwrap()
}

#[test]
fn sequential_tasks_run_one_at_a_time_in_order() {
    within(60, "sequential", || {
        let ctx = ctx(4);
        let running = Arc::new(AtomicUsize::new(0));
        let order = Arc::new(Mutex::new(Vec::new()));
        let tasks = spawn_sequential(|| {
            (0..40)
                .map(|i| {
                    let (running, order) = (running.clone(), order.clone());
                    ctx.spawn(
                        move || {
                            assert_eq!(running.fetch_add(1, Ordering::SeqCst), 0, "alone");
                            std::thread::sleep(Duration::from_micros(300));
                            order.lock().unwrap().push(i);
                            running.fetch_sub(1, Ordering::SeqCst);
                        },
                        (),
                    )
                })
                .collect::<Vec<_>>()
        });
        for t in &tasks {
            t.fetch().unwrap();
        }
        assert_eq!(*order.lock().unwrap(), (0..40).collect::<Vec<_>>());
        // Outside the block, tasks run side by side again.
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let rx = Mutex::new(rx);
        let a = ctx.spawn(move || rx.lock().unwrap().recv().unwrap(), ());
        let b = ctx.spawn(move || tx.send(()).unwrap(), ());
        a.fetch().unwrap();
        b.fetch().unwrap();
    });
}

#[test]
fn a_failed_sequential_task_fails_those_after_it() {
    let ctx = ctx(2);
    let (a, b, c) = spawn_sequential(|| {
        let a = ctx.spawn(|| 1, ());
        let b = ctx.spawn(|| -> i32 { panic!("second fails") }, ());
        let c = ctx.spawn(|| 3, ());
        (a, b, c)
    });
    assert_eq!(a.fetch().unwrap(), 1);
    assert!(b.fetch().unwrap_err().to_string().contains("second fails"));
    let e = c.fetch().unwrap_err().to_string();
    assert!(e.contains(&format!("(task {}) failed", b.id())), "{e}");
}

#[test]
fn bulk_tasks_start_together_when_the_block_ends() {
    within(60, "bulk", || {
        let ctx = ctx(2);
        let closed = Arc::new(AtomicBool::new(false));
        let tasks = spawn_bulk(|| {
            let ts: Vec<DTask<bool>> = (0..100)
                .map(|_| {
                    let closed = closed.clone();
                    ctx.spawn(move || closed.load(Ordering::SeqCst), ())
                })
                .collect();
            // Dependencies among gathered tasks hold.
            let sum = ctx.spawn(|v: Vec<bool>| v.len(), (&ts[..10],));
            std::thread::sleep(Duration::from_millis(50));
            assert!(
                ts.iter().all(|t| !t.is_ready()),
                "nothing started in the block"
            );
            closed.store(true, Ordering::SeqCst);
            (ts, sum)
        });
        assert!(
            tasks.0.iter().all(|t| t.fetch().unwrap()),
            "all ran after the block"
        );
        assert_eq!(tasks.1.fetch().unwrap(), 10);
    });
}

#[test]
fn waiting_inside_a_bulk_block_submits_what_was_gathered() {
    within(60, "fetch in bulk", || {
        let ctx = ctx(2);
        let v = spawn_bulk(|| {
            let a = ctx.spawn(|| 20, ());
            let b = ctx.spawn(|a: i32| a + 1, (&a,));
            b.fetch().unwrap()
        });
        assert_eq!(v, 21);
    });
}

#[test]
fn bulk_inside_sequential_keeps_the_order() {
    within(60, "nested queues", || {
        let ctx = ctx(4);
        let order = Arc::new(Mutex::new(Vec::new()));
        let last = spawn_sequential(|| {
            spawn_bulk(|| {
                (0..10)
                    .map(|i| {
                        let order = order.clone();
                        ctx.spawn(move || order.lock().unwrap().push(i), ())
                    })
                    .collect::<Vec<_>>()
                    .pop()
                    .unwrap()
            })
        });
        last.fetch().unwrap();
        assert_eq!(*order.lock().unwrap(), (0..10).collect::<Vec<_>>());
    });
}
