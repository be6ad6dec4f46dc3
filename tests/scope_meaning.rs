//! Scopes by meaning: simplification, equality, subsets without a context, and keyed
//! scopes with user-defined keys.

use std::collections::HashSet;

use dagger::prelude::*;
use dagger::{register_scope_key, scope, ProcessorKind, ScopeError, ScopeKey, ScopeKeys};

fn ctx(threads: usize) -> Context {
    Context::builder().threads(threads).build().unwrap()
}

#[test]
fn default_constrained_by_exact_is_exact() {
    let ctx = ctx(2);
    let t0 = ctx.processors_of_kind(ProcessorKind::Thread)[0];
    assert_eq!(
        Scope::default().constrain(&Scope::exact(t0)),
        Scope::exact(t0)
    );
    assert_eq!(Scope::any().constrain(&Scope::exact(t0)), Scope::exact(t0));
    assert_eq!(Scope::any().constrain(&Scope::default()), Scope::default());
    assert_ne!(Scope::any(), Scope::default());
    // The simplified scope and the written one resolve to the same processors.
    let s = Scope::default().constrain(&Scope::exact(t0));
    assert_eq!(ctx.resolve_scope(&s).unwrap(), vec![t0]);
}

#[test]
fn equality_ignores_order_nesting_and_duplicates() {
    let a = Scope::union([Scope::thread(0), Scope::gpu(1), Scope::thread(0)]).unwrap();
    let b = Scope::union([Scope::gpu(1), Scope::union([Scope::thread(0)]).unwrap()]).unwrap();
    assert_eq!(a, b);
    let i1 = Scope::cpu().constrain(&Scope::process(1));
    let i2 = Scope::process(1).constrain(&Scope::cpu());
    assert_eq!(i1, i2);
    // Equal scopes hash alike.
    let set: HashSet<Scope> = [a, b, i1, i2].into_iter().collect();
    assert_eq!(set.len(), 2);
}

#[test]
fn ranges_merge_and_intersect() {
    let u = Scope::union([Scope::threads(0..2), Scope::thread(2), Scope::threads(5..6)]).unwrap();
    assert_eq!(u.simplify().to_string(), "(threads(0..3) ∪ threads(5))");
    assert_eq!(
        Scope::threads(0..4).constrain(&Scope::threads(2..)),
        Scope::threads(2..4)
    );
    assert_eq!(
        Scope::threads(..).constrain(&Scope::cpu()),
        Scope::threads(..)
    );
    assert_eq!(Scope::gpus(0..2).constrain(&Scope::gpu(1)), Scope::gpu(1));
}

#[test]
fn impossible_intersections_simplify_to_empty() {
    for s in [
        Scope::thread(0).constrain(&Scope::thread(1)),
        Scope::cpu().constrain(&Scope::gpu(0)),
        Scope::process(1).constrain(&Scope::process(2)),
        Scope::backend("vulkan").constrain(&Scope::backend("gl")),
        Scope::threads(0..2).constrain(&Scope::kind(ProcessorKind::Wgpu)),
    ] {
        assert_eq!(s.simplify(), Scope::Empty, "{s}");
        assert!(s.is_disjoint(&Scope::any()), "{s}");
    }
    // Not provably empty: depends on which processor 1:1 is.
    let maybe = Scope::cpu().constrain(&Scope::exact(ctx(1).processors()[1].id));
    assert_ne!(maybe.simplify(), Scope::Empty);
    // Written forms stay in errors.
    let ctx = ctx(2);
    let e = ctx
        .spawn_with(
            Options::new().scope(Scope::thread(0).constrain(&Scope::thread(1))),
            || 1,
            (),
        )
        .fetch()
        .unwrap_err();
    assert!(e.to_string().contains("threads(0) ∩ threads(1)"), "{e}");
}

#[test]
fn subsets_without_a_context() {
    assert!(Scope::thread(1).is_subset(&Scope::threads(0..4)));
    assert!(!Scope::threads(0..4).is_subset(&Scope::thread(1)));
    assert!(Scope::threads(0..2).is_subset(&Scope::cpu()));
    assert!(Scope::cpu().is_subset(&Scope::default_scope()));
    assert!(Scope::gpu(0).is_subset(&Scope::kind(ProcessorKind::Wgpu)));
    assert!(Scope::gpu(0).is_subset(&Scope::any()));
    assert!(!Scope::gpu(0).is_subset(&Scope::cpu()));
    let u = Scope::union([Scope::thread(0), Scope::gpu(0)]).unwrap();
    assert!(Scope::thread(0).is_subset(&u));
    assert!(!u.is_subset(&Scope::cpu()));
    assert!(u.is_subset(&Scope::any()));
    assert!(Scope::cpu()
        .constrain(&Scope::thread(3))
        .is_subset(&Scope::thread(3)));
    assert!(Scope::Empty.is_subset(&Scope::thread(0)));
}

#[test]
fn keyed_scopes_match_their_constructors() {
    assert_eq!(scope!(thread = 1).unwrap(), Scope::thread(1));
    assert_eq!(scope!(threads = [1, 0]).unwrap(), Scope::threads(0..2));
    assert_eq!(scope!(threads = 0..3).unwrap(), Scope::threads(0..3));
    assert_eq!(scope!(worker = 1).unwrap(), Scope::process(1));
    assert_eq!(
        scope!(worker = 1, thread = 0).unwrap(),
        Scope::process(1).constrain(&Scope::thread(0))
    );
    assert_eq!(
        scope!(gpu = 0, thread = 1).unwrap(),
        Scope::gpu(0),
        "gpu wins"
    );
    assert_eq!(
        scope!(backend = "Vulkan").unwrap(),
        Scope::backend("vulkan")
    );
    assert_eq!(
        ScopeKeys::new()
            .set("threads", vec![2usize, 3])
            .build()
            .unwrap(),
        Scope::threads(2..4)
    );
    assert_eq!(scope!().unwrap_err(), ScopeError::NoKeys);
    let e = scope!(wrkr = 1).unwrap_err();
    assert!(e.to_string().contains("unknown scope key `wrkr`"), "{e}");
    let e = scope!(thread = -1).unwrap_err();
    assert!(matches!(e, ScopeError::KeyValue { .. }), "{e}");
    let e = scope!(backend = 3).unwrap_err();
    assert!(e.to_string().contains("backend name"), "{e}");
}

/// `pair = n`: CPU threads 2n and 2n+1, taking precedence over the built-in keys.
struct Pair;

impl ScopeKey for Pair {
    fn precedence(&self) -> i32 {
        5
    }
    fn to_scope(&self, keys: &ScopeKeys) -> Result<Scope, ScopeError> {
        let n = keys.indices("pair", "pairs")?.unwrap_or_default();
        let s = Scope::union(n.into_iter().map(|n| Scope::threads(2 * n..2 * n + 2)))?;
        // It reads the other keys too: `thread` narrows the pair.
        Ok(match keys.indices("thread", "threads")? {
            Some(t) => s.constrain(&Scope::union(t.into_iter().map(Scope::thread))?),
            None => s,
        })
    }
}

#[test]
fn user_keys_take_precedence_and_see_all_keys() {
    register_scope_key("pair", Pair);
    assert_eq!(scope!(pair = 1).unwrap(), Scope::threads(2..4));
    assert_eq!(scope!(thread = 3, pair = 1).unwrap(), Scope::thread(3));
    assert_eq!(
        scope!(thread = 0, pair = 1).unwrap().simplify(),
        Scope::Empty
    );
    let ctx = ctx(4);
    let threads = ctx.processors_of_kind(ProcessorKind::Thread);
    assert_eq!(
        ctx.resolve_scope(&scope!(pair = 1).unwrap()).unwrap(),
        threads[2..4]
    );
}
