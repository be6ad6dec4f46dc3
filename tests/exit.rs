//! A program that drops its context and exits does not race its worker threads' exit.
//!
//! Worker threads end shortly after the last context handle drops. If the process exits at
//! that moment, libraries' destructors run while those threads still run their thread-exit
//! destructors — with Mesa's GL driver that aborted finished programs with a double free, one
//! run in a few hundred. The threads of a shut-down context must have ended before `exit`
//! goes on to the libraries. The test makes each worker's thread-exit destructor slow and
//! checks, from an exit handler registered before the context existed (so it runs after the
//! library's own), that every one of them had finished.

use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use dagger::prelude::*;

const CHILD_VAR: &str = "DAGGER_TEST_EXIT_CHILD";

/// Thread-exit destructors that have started, and those that have finished.
static STARTED: AtomicUsize = AtomicUsize::new(0);
static FINISHED: AtomicUsize = AtomicUsize::new(0);

/// Installed on a worker thread; its drop at thread exit is slow, as a driver's may be.
struct SlowExit;

impl Drop for SlowExit {
    fn drop(&mut self) {
        STARTED.fetch_add(1, Ordering::SeqCst);
        std::thread::sleep(Duration::from_millis(300));
        FINISHED.fetch_add(1, Ordering::SeqCst);
    }
}

thread_local! {
    static GUARD: std::cell::RefCell<Option<SlowExit>> = const { std::cell::RefCell::new(None) };
}

extern "C" fn check_at_exit() {
    let (started, finished) = (
        STARTED.load(Ordering::SeqCst),
        FINISHED.load(Ordering::SeqCst),
    );
    if started != finished || finished == 0 {
        eprintln!("EXIT RACE: {started} worker exits started, {finished} finished");
        // Not `exit`: that would run the handlers again.
        std::process::abort();
    }
    eprintln!("EXIT CLEAN: {finished} worker exits finished before the libraries");
}

fn child() {
    extern "C" {
        fn atexit(f: extern "C" fn()) -> std::os::raw::c_int;
    }
    // SAFETY: `atexit` records the pointer to a plain function of this program, which lives
    // as long as the process; the function does not unwind.
    assert_eq!(unsafe { atexit(check_at_exit) }, 0);
    let ctx = Context::builder().threads(2).gpus(false).build().unwrap();
    // One task per worker thread, each leaving a slow destructor on its thread.
    let tasks: Vec<_> = (0..2)
        .map(|_| {
            ctx.spawn(
                || {
                    GUARD.with(|g| *g.borrow_mut() = Some(SlowExit));
                    std::thread::sleep(Duration::from_millis(50));
                },
                (),
            )
        })
        .collect();
    for t in tasks {
        t.fetch().unwrap();
    }
    drop(ctx);
    // The program ends here; its worker threads are just beginning to.
}

#[test]
fn exit_waits_for_the_threads_of_a_dropped_context() {
    if std::env::var(CHILD_VAR).is_ok() {
        child();
        return;
    }
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "exit_waits_for_the_threads_of_a_dropped_context",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_VAR, "1")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stderr.contains("EXIT CLEAN"),
        "the child exited while its worker threads were still ending ({}):\n{stderr}",
        out.status
    );
}
