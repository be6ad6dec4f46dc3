//! Where tasks run: chunks pinned to scopes, processor queries, `task_processor`, and
//! processors disabled and enabled while the context runs.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::within;
use dagger::prelude::*;
use dagger::{task_processor, ProcessorKind, ScheduleError};

fn ctx(threads: usize) -> Context {
    Context::builder()
        .threads(threads)
        .gpus(false)
        .build()
        .unwrap()
}

#[test]
fn a_pinned_chunk_pins_the_tasks_that_take_it() {
    let ctx = ctx(3);
    let th = ctx.processors_of_kind(ProcessorKind::Thread);
    let c = ctx.to_chunk_in(10u32, th[2], Scope::exact(th[2])).unwrap();
    for _ in 0..20 {
        let t = ctx.spawn(|x: u32| (x, task_processor()), (&c,));
        assert_eq!(t.fetch().unwrap(), (10, Some(th[2])));
        // Shared access keeps the pin.
        let t = ctx.spawn(|x: Arc<u32>| (*x, task_processor()), (c.shared(),));
        assert_eq!(t.fetch().unwrap(), (10, Some(th[2])));
    }
    // The task's own scope narrows further, within the chunk's.
    let wide = ctx.to_chunk(1u8).with_scope(Scope::threads(0..2));
    for _ in 0..10 {
        let t = ctx.spawn_with(
            Options::new().scope(Scope::thread(1)),
            |_: u8| task_processor(),
            (&wide,),
        );
        assert_eq!(t.fetch().unwrap(), Some(th[1]));
    }
}

#[test]
fn chunks_pinned_to_incompatible_processors_fail_the_task_at_once() {
    let ctx = ctx(2);
    let th = ctx.processors_of_kind(ProcessorKind::Thread);
    let a = ctx.to_chunk_in(1i64, th[0], Scope::exact(th[0])).unwrap();
    let b = ctx.to_chunk_in(2i64, th[1], Scope::exact(th[1])).unwrap();
    let t = ctx.spawn(|a: i64, b: i64| a + b, (&a, &b));
    assert!(t.is_ready(), "fails at spawn, not later");
    let err = t.fetch().unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("argument 0 pinned to exact(1:1)"), "{msg}");
    assert!(msg.contains("argument 1 pinned to exact(1:2)"), "{msg}");
    let TaskError::Schedule {
        error: ScheduleError::ChunkScopes { source, .. },
        ..
    } = &err
    else {
        panic!("{err:?}")
    };
    assert!(matches!(**source, ScheduleError::NoProcessor { .. }));
    assert!(std::error::Error::source(&err).is_some(), "a source chain");
    // A task scope outside the chunk's is refused too.
    let t = ctx.spawn_with(Options::new().scope(Scope::thread(1)), |a: i64| a, (&a,));
    assert!(t.fetch().unwrap_err().to_string().contains("pinned"));
    // Unpinned chunks go anywhere; the context carries on.
    let c = ctx.to_chunk(3i64);
    assert_eq!(
        ctx.spawn(|a: i64, c: i64| a + c, (&a, &c)).fetch().unwrap(),
        4
    );
}

#[test]
fn processor_queries_follow_scopes() {
    let ctx = ctx(4);
    let th = ctx.processors_of_kind(ProcessorKind::Thread);
    assert_eq!(ctx.compatible_processors(&Scope::default()), th);
    assert_eq!(
        ctx.num_processors(&Scope::any()),
        4,
        "the OsProc runs nothing"
    );
    assert_eq!(ctx.compatible_processors(&Scope::threads(1..3)), th[1..3]);
    assert_eq!(ctx.num_processors(&Scope::gpu(0)), 0);
    assert_eq!(
        ctx.compatible_processors(&Scope::default().constrain(&Scope::exact(th[3]))),
        vec![th[3]]
    );
    assert_eq!(task_processor(), None, "outside tasks");
    // Inside a task, and inside a task nested in it.
    let c = ctx.clone();
    let t = ctx.spawn_with(
        Options::new().scope(Scope::thread(2)),
        move || {
            let inner = c.spawn_with(Options::new().scope(Scope::thread(1)), task_processor, ());
            (task_processor(), inner.fetch().unwrap(), task_processor())
        },
        (),
    );
    assert_eq!(t.fetch().unwrap(), (Some(th[2]), Some(th[1]), Some(th[2])));
}

#[test]
fn a_disabled_processor_finishes_its_task_and_takes_no_new_ones() {
    within(60, "disable and enable", || {
        let ctx = ctx(2);
        let th = ctx.processors_of_kind(ProcessorKind::Thread);
        let started = Arc::new(AtomicBool::new(false));
        let s2 = started.clone();
        let running = ctx.spawn_with(
            Options::new().scope(Scope::thread(0)),
            move || {
                s2.store(true, Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(200));
                task_processor()
            },
            (),
        );
        while !started.load(Ordering::SeqCst) {
            std::thread::yield_now();
        }
        // A task pinned to thread 0 that becomes ready only after the disabling.
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let rx = std::sync::Mutex::new(rx);
        let gate = ctx.spawn_with(
            Options::new().scope(Scope::thread(1)),
            move || rx.lock().unwrap().recv().unwrap(),
            (),
        );
        let waiting = ctx.spawn_with(
            Options::new().scope(Scope::thread(0)),
            |_: ()| task_processor(),
            (&gate,),
        );
        ctx.disable_processor(th[0]).unwrap();
        tx.send(()).unwrap();
        assert!(!ctx.is_enabled(th[0]));
        assert_eq!(ctx.num_processors(&Scope::cpu()), 1);
        assert_eq!(
            running.fetch().unwrap(),
            Some(th[0]),
            "the running task finished"
        );
        for _ in 0..50 {
            let t = ctx.spawn(task_processor, ());
            assert_eq!(
                t.fetch().unwrap(),
                Some(th[1]),
                "nothing new goes to thread 0"
            );
        }
        let refused = ctx.spawn_with(Options::new().scope(Scope::thread(0)), || 1, ());
        let msg = refused.fetch().unwrap_err().to_string();
        assert!(msg.contains("disabled"), "{msg}");
        std::thread::sleep(Duration::from_millis(150));
        assert!(!waiting.is_ready(), "it waits for its processor");
        let t0 = Instant::now();
        ctx.enable_processor(th[0]).unwrap();
        assert_eq!(waiting.fetch().unwrap(), Some(th[0]));
        assert!(t0.elapsed() < Duration::from_secs(5));
        let seen: std::collections::HashSet<_> = (0..200)
            .map(|_| {
                ctx.spawn(
                    || {
                        std::thread::sleep(Duration::from_micros(200));
                        task_processor()
                    },
                    (),
                )
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|t| t.fetch().unwrap())
            .collect();
        assert!(
            seen.contains(&Some(th[0])),
            "thread 0 takes tasks again: {seen:?}"
        );
        let other = Context::builder().threads(8).gpus(false).build().unwrap();
        let far = other.processors_of_kind(ProcessorKind::Thread)[7];
        let e = ctx.disable_processor(far).unwrap_err();
        assert!(
            e.to_string()
                .contains("not one of this context's 3 processors"),
            "{e}"
        );
    });
}
