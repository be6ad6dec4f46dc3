//! Eager tasks: spawn, fetch, nesting, cancellation and errors.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::time::Duration;

use dagger::prelude::*;
use dagger::TaskError;

fn ctx(threads: usize) -> Context {
    Context::builder().threads(threads).build().unwrap()
}

fn add1(x: i64) -> i64 {
    x + 1
}
fn add2(x: i64) -> i64 {
    x + 2
}

#[test]
fn readme_example_collects_16() {
    let ctx = ctx(2);
    let p = ctx.spawn(add1, (4,));
    let q = ctx.spawn(add2, (&p,));
    let r = ctx.spawn(add1, (3,));
    let s = ctx.spawn(|p, q, r| p + q + r, (&p, &q, &r));
    assert_eq!(s.fetch().unwrap(), 16);
    assert!(p.is_ready() && q.is_ready() && r.is_ready());
    assert_eq!(p.name(), "add1");
}

#[test]
fn global_spawn_works() {
    let a = dagger::spawn(|| 40u32, ());
    let b = dagger::spawn(|a: u32| a + 2, (&a,));
    assert_eq!(b.fetch().unwrap(), 42);
}

#[test]
fn sixteen_threads_fetch_the_same_task() {
    let ctx = ctx(2);
    let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
    let t = ctx.spawn(
        move || {
            release_rx.recv().unwrap();
            vec![7u8; 1000]
        },
        (),
    );
    let gate = Arc::new(Barrier::new(17));
    let handles: Vec<_> = (0..16)
        .map(|_| {
            let t = t.clone();
            let gate = gate.clone();
            std::thread::spawn(move || {
                gate.wait();
                t.fetch().unwrap()
            })
        })
        .collect();
    gate.wait();
    std::thread::sleep(Duration::from_millis(20));
    assert!(!t.is_ready(), "the task waits for its release");
    release_tx.send(()).unwrap();
    for h in handles {
        assert_eq!(h.join().unwrap(), vec![7u8; 1000]);
    }
    // The shared fetch gives the same allocation to everyone.
    assert!(Arc::ptr_eq(
        &t.fetch_shared().unwrap(),
        &t.fetch_shared().unwrap()
    ));
}

fn fib(ctx: Context, n: u64) -> u64 {
    if n < 2 {
        return n;
    }
    let c1 = ctx.clone();
    let c2 = ctx.clone();
    let a = ctx.spawn(move |n: u64| fib(c1, n), (n - 1,));
    let b = ctx.spawn(move |n: u64| fib(c2, n), (n - 2,));
    a.fetch().unwrap() + b.fetch().unwrap()
}

#[test]
fn nested_spawn_and_fetch_never_deadlocks_on_one_thread() {
    let ctx = ctx(1);
    let c = ctx.clone();
    let t = ctx.spawn(move |n: u64| fib(c, n), (12u64,));
    assert_eq!(t.fetch().unwrap(), 144);
    // The context still works afterwards.
    assert_eq!(ctx.spawn(|| 1, ()).fetch().unwrap(), 1);
}

#[test]
fn nested_fetch_of_a_task_queued_behind_the_waiter() {
    // The inner task is pinned to the only thread, which is busy running the outer task.
    let ctx = ctx(1);
    let c = ctx.clone();
    let outer = ctx.spawn(
        move || {
            let inner = c.spawn_with(Options::new().scope(Scope::thread(0)), || 5, ());
            inner.fetch().unwrap() * 2
        },
        (),
    );
    assert_eq!(outer.fetch().unwrap(), 10);
}

#[test]
fn cancel_before_start_reports_cancellation() {
    let ctx = ctx(1);
    let gate = Arc::new(Barrier::new(2));
    let g = gate.clone();
    let blocker = ctx.spawn(
        move || {
            g.wait();
        },
        (),
    );
    let ran = Arc::new(AtomicUsize::new(0));
    let r = ran.clone();
    let victim = ctx.spawn(
        move || {
            r.fetch_add(1, Ordering::SeqCst);
            1
        },
        (),
    );
    let dependent = ctx.spawn(|x: i32| x + 1, (&victim,));
    assert!(victim.cancel());
    gate.wait();
    blocker.wait();
    let err = victim.fetch().unwrap_err();
    assert!(err.is_cancelled(), "{err}");
    assert!(err.to_string().contains("cancelled"));
    let derr = dependent.fetch().unwrap_err();
    assert!(derr.root_cause().is_cancelled(), "{derr}");
    // Let the worker drain; the cancelled body never runs.
    ctx.spawn(|| (), ()).wait();
    assert_eq!(ran.load(Ordering::SeqCst), 0);
    // A finished task cannot be cancelled.
    assert!(!blocker.cancel());
}

#[derive(Debug)]
struct Boom;
impl std::fmt::Display for Boom {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("boom")
    }
}
impl std::error::Error for Boom {}

#[test]
fn error_names_task_processor_and_cause() {
    let ctx = ctx(2);
    let t = ctx.try_spawn_with(
        Options::new().name("explode"),
        || -> Result<i32, Boom> { Err(Boom) },
        (),
    );
    let err = t.fetch().unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("explode"), "{msg}");
    assert!(msg.contains("cpu thread"), "{msg}");
    assert!(msg.contains("boom"), "{msg}");
    // The cause's text is in the message once, and the chain does not repeat it.
    assert_eq!(msg.matches("boom").count(), 1, "{msg}");
    assert!(std::error::Error::source(&err).is_none());
    match &err {
        dagger::TaskError::Failed { cause, .. } => assert_eq!(cause.to_string(), "boom"),
        other => panic!("{other:?}"),
    }
    // wait() on a failed task returns normally
    t.wait();
    assert!(t.is_ready());
}

#[test]
fn panics_fail_the_task_not_the_context() {
    let ctx = ctx(2);
    let t = ctx.spawn(|| -> i32 { panic!("kaput {}", 3) }, ());
    let err = t.fetch().unwrap_err();
    assert!(err.is_panic());
    assert!(err.to_string().contains("kaput 3"), "{err}");
    assert_eq!(ctx.spawn(|| 5, ()).fetch().unwrap(), 5);
}

#[test]
fn failure_propagates_down_a_chain_with_the_root_cause() {
    let ctx = ctx(2);
    let a = ctx.try_spawn_with(
        Options::new().name("a"),
        || -> Result<i32, Boom> { Err(Boom) },
        (),
    );
    let b = ctx.spawn_with(Options::new().name("b"), |x: i32| x + 1, (&a,));
    let c = ctx.spawn_with(Options::new().name("c"), |x: i32| x + 1, (&b,));
    let unrelated = ctx.spawn(|| 9, ());
    for t in [&a, &b, &c] {
        let e = t.fetch().unwrap_err();
        assert_eq!(&*e.root_cause().task().name, "a");
        assert!(e.to_string().contains(t.name()), "{e}");
    }
    let ce = c.fetch().unwrap_err();
    match &ce {
        TaskError::Upstream { input, root, .. } => {
            assert_eq!(&*input.name, "b");
            assert!(root.to_string().contains("boom"));
        }
        e => panic!("expected an upstream error, got {e}"),
    }
    assert_eq!(unrelated.fetch().unwrap(), 9);
}

#[test]
fn diamond_with_failing_sink_keeps_other_values() {
    let ctx = ctx(2);
    let top = ctx.spawn(|| 1, ());
    let left = ctx.spawn(|x: i32| x + 1, (&top,));
    let right = ctx.spawn(|x: i32| x + 2, (&top,));
    let sink = ctx.try_spawn(
        |l: i32, r: i32| -> Result<i32, String> { Err(format!("sink saw {l} and {r}")) },
        (&left, &right),
    );
    assert_eq!(top.fetch().unwrap(), 1);
    assert_eq!(left.fetch().unwrap(), 2);
    assert_eq!(right.fetch().unwrap(), 3);
    let e = sink.fetch().unwrap_err();
    assert!(e.to_string().contains("sink saw 2 and 3"), "{e}");
}

#[test]
fn arguments_by_value_shared_and_slices() {
    let ctx = ctx(2);
    let big = ctx.spawn(|| vec![1u64; 1 << 16], ());
    let a = ctx.spawn(|v: Arc<Vec<u64>>| v.iter().sum::<u64>(), (big.shared(),));
    let parts: Vec<DTask<u64>> = (0..10u64).map(|i| ctx.spawn(move || i, ())).collect();
    let total = ctx.spawn(|xs: Vec<u64>| xs.iter().sum::<u64>(), (&parts[..],));
    let owned = ctx.spawn(
        |s: String, n: usize| s.repeat(n),
        ("ab".to_string(), 3usize),
    );
    assert_eq!(a.fetch().unwrap(), 1 << 16);
    assert_eq!(total.fetch().unwrap(), 45);
    assert_eq!(owned.fetch().unwrap(), "ababab");
    // The shared value was not copied.
    let v1 = big.fetch_shared().unwrap();
    assert_eq!(Arc::strong_count(&v1), 2);
}

#[test]
fn many_tasks_and_context_drop() {
    for _ in 0..5 {
        let ctx = ctx(2);
        let ts: Vec<_> = (0..1000u64)
            .map(|i| ctx.spawn(|i: u64| i * 2, (i,)))
            .collect();
        drop(ctx);
        let s: u64 = ts.iter().map(|t| t.fetch().unwrap()).sum();
        assert_eq!(s, 999 * 1000);
    }
}
