//! Scopes: where tasks may run, and errors when nowhere is left.

use dagger::prelude::*;
use dagger::{ProcessorKind, ScheduleError, ScopeError, TaskError};

fn ctx(threads: usize) -> Context {
    Context::builder().threads(threads).build().unwrap()
}

/// Runs one task under `scope` with logging and returns the processor it ran on.
fn where_ran(ctx: &Context, scope: Scope) -> dagger::ProcessorId {
    ctx.enable_logging();
    let _ = ctx.fetch_logs();
    let t = ctx.spawn_with(Options::new().scope(scope), || 1, ());
    t.fetch().unwrap();
    let ev = ctx.fetch_logs();
    let e = ev.iter().find(|e| e.task == t.id()).expect("logged");
    e.processor
}

#[test]
fn thread_scope_pins_the_task() {
    let ctx = ctx(3);
    let threads = ctx.processors_of_kind(ProcessorKind::Thread);
    for _ in 0..20 {
        assert_eq!(where_ran(&ctx, Scope::thread(2)), threads[2]);
        assert_eq!(where_ran(&ctx, Scope::exact(threads[1])), threads[1]);
    }
}

#[test]
fn union_and_ranges_stay_inside() {
    let ctx = ctx(4);
    let threads = ctx.processors_of_kind(ProcessorKind::Thread);
    let u = Scope::union([Scope::thread(0), Scope::thread(3)]).unwrap();
    for _ in 0..30 {
        let p = where_ran(&ctx, u.clone());
        assert!(p == threads[0] || p == threads[3], "{p}");
        let p = where_ran(&ctx, Scope::threads(1..3));
        assert!(p == threads[1] || p == threads[2], "{p}");
    }
    assert_eq!(
        ctx.resolve_scope(&Scope::threads(1..=2)).unwrap(),
        vec![threads[1], threads[2]]
    );
    let p = where_ran(&ctx, Scope::processors([threads[2]]).unwrap());
    assert_eq!(p, threads[2]);
}

#[test]
fn kind_process_any_and_cpu_scopes_run() {
    let ctx = ctx(2);
    for s in [
        Scope::any(),
        Scope::default_scope(),
        Scope::cpu(),
        Scope::kind(ProcessorKind::Thread),
        Scope::process(1),
    ] {
        let t = ctx.spawn_with(Options::new().scope(s.clone()), || 3, ());
        assert_eq!(t.fetch().unwrap(), 3, "scope {s}");
    }
}

#[test]
fn empty_intersection_fails_at_once_naming_scope_and_processors() {
    let ctx = ctx(2);
    let s = Scope::thread(0).constrain(&Scope::thread(1));
    let t = ctx.spawn_with(Options::new().scope(s), || 1, ());
    assert!(t.is_ready(), "fails at spawn, not later");
    let err = t.fetch().unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("threads(0) ∩ threads(1)"), "{msg}");
    assert!(msg.contains("cpu thread 0"), "{msg}");
    assert!(msg.contains("cpu thread 1"), "{msg}");
    assert!(matches!(
        err,
        TaskError::Schedule {
            error: ScheduleError::NoProcessor { .. },
            ..
        }
    ));
    // A dependent of the unschedulable task fails too, and the context works.
    let d = ctx.spawn(|x: i32| x, (&t,));
    assert!(d.fetch().is_err());
    assert_eq!(ctx.spawn(|| 2, ()).fetch().unwrap(), 2);
}

#[test]
fn scope_with_no_match_is_an_error() {
    let ctx = ctx(2);
    let e = ctx.spawn_with(Options::new().scope(Scope::thread(7)), || 1, ());
    assert!(e.fetch().unwrap_err().to_string().contains("threads(7)"));
    let e = ctx.spawn_with(Options::new().scope(Scope::gpu(0)), || 1, ());
    assert!(e.fetch().is_err(), "closures cannot run on GPUs");
    assert!(ctx.resolve_scope(&Scope::thread(9)).is_err());
}

#[test]
fn union_of_nothing_is_an_error() {
    assert_eq!(Scope::union([]).unwrap_err(), ScopeError::EmptyUnion);
    assert!(Scope::processors([]).is_err());
}

#[test]
fn ranges_reaching_usize_max_convert_without_overflow() {
    let ctx = ctx(4);
    let threads = ctx.processors_of_kind(ProcessorKind::Thread);
    // `..=usize::MAX` is every thread.
    let all = ctx.resolve_scope(&Scope::threads(..=usize::MAX)).unwrap();
    assert_eq!(all, threads);
    assert!(all.contains(&threads[0]));
    let from3 = ctx.resolve_scope(&Scope::threads(3..=usize::MAX)).unwrap();
    assert_eq!(from3, vec![threads[3]]);
    assert!(!from3.contains(&threads[2]));
    assert_eq!(
        where_ran(
            &ctx,
            Scope::threads(..=usize::MAX).constrain(&Scope::thread(0))
        ),
        threads[0]
    );
    // Starting after usize::MAX leaves nothing; ending at it leaves everything.
    let after_max = (
        std::ops::Bound::Excluded(usize::MAX),
        std::ops::Bound::Unbounded,
    );
    assert!(ctx.resolve_scope(&Scope::threads(after_max)).is_err());
    assert!(ctx.resolve_scope(&Scope::thread(usize::MAX)).is_err());
    assert_eq!(
        ctx.resolve_scope(&Scope::gpus(..=usize::MAX))
            .unwrap_or_default()
            .len(),
        ctx.resolve_scope(&Scope::gpus(..))
            .unwrap_or_default()
            .len()
    );
    assert_eq!(Scope::threads(2..=2).to_string(), "threads(2)");
    assert_eq!(Scope::threads(..=usize::MAX).to_string(), "threads(0..)");
}
