//! Lazy graphs: delayed, compute, collect.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use dagger::prelude::*;

fn add1(x: i64) -> i64 {
    x + 1
}
fn add2(x: i64) -> i64 {
    x + 2
}
fn combine(a: i64, b: i64, c: i64) -> i64 {
    a + b + c
}

#[test]
fn dagger_readme_graph_collects_16() {
    let p = delayed(add1, (4,));
    let q = delayed(add2, (&p,));
    let r = delayed(add1, (3,));
    let s = delayed(combine, (&p, &q, &r));
    assert!(!s.is_spawned(), "nothing runs before compute");
    assert_eq!(s.collect().unwrap(), 16);
    let chunk = s.compute().unwrap();
    assert_eq!(chunk.collect().unwrap(), 16);
}

#[test]
fn shared_subthunk_runs_once() {
    let ctx = Context::builder().threads(2).build().unwrap();
    let runs = Arc::new(AtomicUsize::new(0));
    let r = runs.clone();
    let shared = delayed(
        move |x: i64| {
            r.fetch_add(1, Ordering::SeqCst);
            x * 10
        },
        (1,),
    );
    let users: Vec<Thunk<i64>> = (0..5i64)
        .map(|i| delayed(move |s: i64| s + i, (&shared,)))
        .collect();
    let total = delayed(|xs: Vec<i64>| xs.iter().sum::<i64>(), (&users[..],));
    assert_eq!(total.collect_on(&ctx).unwrap(), 50 + 10);
    // Computing again, or another graph through the same thunk, reuses the result.
    assert_eq!(users[3].collect_on(&ctx).unwrap(), 13);
    assert_eq!(runs.load(Ordering::SeqCst), 1);
}

#[test]
fn thunks_mix_with_eager_tasks_and_chunks() {
    let ctx = Context::builder().threads(2).build().unwrap();
    let c = ctx.to_chunk(5i64);
    let t = ctx.spawn(|x: i64| x * 2, (&c,));
    let th = delayed(|a: i64, b: i64| a + b, (&t, &c));
    let eager = ctx.spawn(|x: i64| x + 1, (&th,));
    assert_eq!(eager.fetch().unwrap(), 16);
}

#[test]
fn thunk_failure_reaches_collect() {
    let bad = dagger::try_delayed(
        || -> Result<i64, String> { Err("no input file".into()) },
        (),
    );
    let next = delayed(add1, (&bad,));
    let e = next.collect().unwrap_err();
    assert!(e.root_cause().to_string().contains("no input file"), "{e}");
}

#[test]
fn long_lazy_chain_neither_overflows_nor_leaks() {
    let ctx = Context::builder().threads(2).build().unwrap();
    let n = 200_000;
    let mut t = delayed(|| 0u64, ());
    for _ in 0..n {
        t = delayed(|x: u64| x + 1, (&t,));
    }
    assert_eq!(t.collect_on(&ctx).unwrap(), n as u64);
    // And an unrun chain can be dropped without recursion.
    let mut u = delayed(|| 0u64, ());
    for _ in 0..n {
        u = delayed(|x: u64| x + 1, (&u,));
    }
    drop(u);
}
