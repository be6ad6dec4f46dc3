//! Options: with_options, nesting, get_options, defaults, occupancy.

use std::sync::{Arc, Barrier};
use std::time::Duration;

use dagger::prelude::*;
use dagger::ProcessorKind;

fn ctx(threads: usize) -> Context {
    Context::builder().threads(threads).build().unwrap()
}

#[test]
fn with_options_reaches_tasks_spawned_inside_tasks() {
    let ctx = ctx(3);
    ctx.enable_logging();
    let threads = ctx.processors_of_kind(ProcessorKind::Thread);
    let c = ctx.clone();
    let outer = with_options(Options::new().scope(Scope::thread(1)).name("outer"), || {
        ctx.spawn(
            move || {
                let inner = c.spawn(|| dagger::get_options().get_name().map(str::to_owned), ());
                (inner.id(), inner.fetch().unwrap())
            },
            (),
        )
    });
    let (inner_id, inner_name) = outer.fetch().unwrap();
    assert_eq!(inner_name.as_deref(), Some("outer"));
    let logs = ctx.fetch_logs();
    let inner = logs.iter().find(|e| e.task == inner_id).unwrap();
    assert_eq!(inner.processor, threads[1], "inherited scope");
    assert_eq!(&*inner.name, "outer");
}

#[test]
fn nested_with_options_merge_inner_wins() {
    let got = with_options(Options::new().name("a").occupancy(0.5), || {
        with_options(Options::new().name("b"), dagger::get_options)
    });
    assert_eq!(got.get_name(), Some("b"));
    assert_eq!(got.get_occupancy(), Some(0.5));
    assert_eq!(dagger::get_options(), Options::new(), "restored outside");
}

#[test]
fn call_options_override_block_options_which_override_defaults() {
    fn work(x: u32) -> u32 {
        x
    }
    dagger::set_default_options(
        &work,
        Options::new()
            .name("default-name")
            .time_hint(Duration::from_millis(1)),
    );
    let ctx = ctx(1);
    assert_eq!(ctx.spawn(work, (1,)).name(), "default-name");
    let t = with_options(Options::new().name("block"), || ctx.spawn(work, (1,)));
    assert_eq!(t.name(), "block");
    let t = with_options(Options::new().name("block"), || {
        ctx.spawn_with(Options::new().name("call"), work, (1,))
    });
    assert_eq!(t.name(), "call");
    let hint = ctx.spawn(|| dagger::get_options().get_time_hint(), ());
    assert_eq!(
        hint.fetch().unwrap(),
        None,
        "defaults apply to their function only"
    );
    let hint = ctx.spawn(work, (5,));
    assert_eq!(hint.fetch().unwrap(), 5);
    dagger::clear_default_options(&work);
    assert_eq!(ctx.spawn(work, (1,)).name(), "work");
}

#[test]
fn half_occupancy_tasks_share_one_thread() {
    let ctx = ctx(1);
    // Both tasks must run at once to pass the barrier.
    let b = Arc::new(Barrier::new(2));
    let opts = Options::new().occupancy(0.5);
    let ts: Vec<_> = (0..2)
        .map(|i| {
            let b = b.clone();
            ctx.spawn_with(
                opts.clone(),
                move || {
                    b.wait();
                    i
                },
                (),
            )
        })
        .collect();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let s: i32 = ts.iter().map(|t| t.fetch().unwrap()).sum();
        tx.send(s).unwrap();
    });
    assert_eq!(rx.recv_timeout(Duration::from_secs(10)).unwrap(), 1);
}

#[test]
fn full_occupancy_tasks_do_not_overlap_on_one_thread() {
    let ctx = ctx(1);
    ctx.enable_logging();
    let ts: Vec<_> = (0..4)
        .map(|_| ctx.spawn(|| std::thread::sleep(Duration::from_millis(5)), ()))
        .collect();
    for t in &ts {
        t.wait();
    }
    let mut ev = ctx.fetch_logs();
    ev.sort_by_key(|e| e.start_ns);
    assert_eq!(ev.len(), 4);
    for w in ev.windows(2) {
        assert!(w[1].start_ns >= w[0].end_ns, "overlap on one thread");
    }
}

#[test]
fn quarter_occupancy_runs_four_at_once() {
    let ctx = ctx(1);
    let b = Arc::new(Barrier::new(4));
    let ts: Vec<_> = (0..4)
        .map(|_| {
            let b = b.clone();
            ctx.spawn_with(
                Options::new().occupancy(0.25),
                move || {
                    b.wait();
                },
                (),
            )
        })
        .collect();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        ts.iter().for_each(|t| t.fetch().unwrap());
        tx.send(()).unwrap();
    });
    rx.recv_timeout(Duration::from_secs(10)).unwrap();
}

/// Spawns tasks asking for `want` threads until one gets `expect` (a worker that just
/// finished a task may still hold its thread for a moment), within a bound.
fn eventually_gets(ctx: &Context, want: usize, expect: usize) {
    for _ in 0..200 {
        let t = ctx.spawn_with(Options::new().max_threads(want), dagger::task_threads, ());
        let got = t.fetch().unwrap();
        assert!(got <= want.min(3), "asked for {want}, got {got}");
        if got == expect {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    panic!("a task asking for {want} threads never got {expect}");
}

#[test]
fn idle_threads_are_lent_to_tasks_that_can_use_several() {
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, Instant};

    let ctx = Context::builder().threads(3).build().unwrap();
    assert_eq!(dagger::task_threads(), 1, "outside tasks");
    assert_eq!(ctx.spawn(dagger::task_threads, ()).fetch().unwrap(), 1);
    eventually_gets(&ctx, 3, 3);
    eventually_gets(&ctx, 2, 2);
    eventually_gets(&ctx, 8, 3);

    // While a task holds the lent threads, nothing else runs on them.
    let ended = Arc::new(Mutex::new(None::<Instant>));
    let wide = loop {
        let (e, (tx, rx)) = (ended.clone(), std::sync::mpsc::channel());
        let t = ctx.spawn_with(
            Options::new().max_threads(3),
            move || {
                let n = dagger::task_threads();
                tx.send(n).unwrap();
                if n == 3 {
                    std::thread::sleep(Duration::from_millis(150));
                    *e.lock().unwrap() = Some(Instant::now());
                }
                n
            },
            (),
        );
        // Once it runs with all three threads, the narrow tasks arrive.
        if rx.recv().unwrap() == 3 {
            break t;
        }
        t.wait();
    };
    let narrow: Vec<_> = (0..4).map(|_| ctx.spawn(Instant::now, ())).collect();
    assert_eq!(wide.fetch().unwrap(), 3);
    let end = ended
        .lock()
        .unwrap()
        .expect("the wide task recorded its end");
    for t in narrow {
        assert!(t.fetch().unwrap() >= end, "a task ran on a lent thread");
    }

    // A busy thread is not lent.
    let (tx, rx) = std::sync::mpsc::channel();
    let busy = ctx.spawn(
        move || {
            tx.send(()).unwrap();
            std::thread::sleep(Duration::from_millis(100));
        },
        (),
    );
    rx.recv().unwrap();
    let t = ctx.spawn_with(Options::new().max_threads(3), dagger::task_threads, ());
    assert!(t.fetch().unwrap() <= 2);
    busy.wait();
}

/// Starts a task on one of `ctx`'s two threads that signals, then sleeps `busy` (its time
/// hint `hint`, if any), and returns it once it runs.
fn occupy(ctx: &Context, busy: Duration, hint: Option<Duration>) -> DTask<()> {
    let (tx, rx) = std::sync::mpsc::channel();
    let opts = match hint {
        Some(h) => Options::new().time_hint(h),
        None => Options::new(),
    };
    let t = ctx.spawn_with(
        opts,
        move || {
            tx.send(()).unwrap();
            std::thread::sleep(busy);
        },
        (),
    );
    rx.recv_timeout(Duration::from_secs(10)).unwrap();
    t
}

#[test]
fn a_long_task_waits_briefly_for_a_thread_about_to_finish() {
    let ctx = Context::builder().threads(2).build().unwrap();
    let wide = |hint: Duration| {
        ctx.spawn_with(
            Options::new().max_threads(2).time_hint(hint),
            dagger::task_threads,
            (),
        )
    };
    // Expected to take a second, it may wait an eighth of that for the other thread,
    // whose task (of unknown length) ends after 40 ms.
    let busy = occupy(&ctx, Duration::from_millis(40), None);
    assert_eq!(wide(Duration::from_secs(1)).fetch().unwrap(), 2);
    busy.wait();
    // A short task does not wait: it runs on its own thread at once.
    let busy = occupy(&ctx, Duration::from_millis(300), None);
    assert_eq!(wide(Duration::from_millis(2)).fetch().unwrap(), 1);
    busy.wait();
    // Nor does a long one wait for a thread whose task is expected to end after the wait
    // (ten seconds here, against a wait of an eighth of a second).
    let busy = occupy(
        &ctx,
        Duration::from_millis(300),
        Some(Duration::from_secs(10)),
    );
    assert_eq!(wide(Duration::from_secs(1)).fetch().unwrap(), 1);
    busy.wait();
}
