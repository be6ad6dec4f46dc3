//! Values that live on processors: `Mutable` (one, changed in place where it lives) and
//! `Shard` (one per processor, each task getting its own processor's).

mod common;

use common::within;
use dagger::prelude::*;
use dagger::{task_processor, MutGuard, ProcessorKind, ScheduleError};

fn ctx(threads: usize) -> Context {
    Context::builder()
        .threads(threads)
        .gpus(false)
        .build()
        .unwrap()
}

#[test]
fn a_mutable_is_changed_in_place_on_its_processor() {
    within(60, "mutable", || {
        let ctx = ctx(3);
        let th = ctx.processors_of_kind(ProcessorKind::Thread);
        let m = ctx
            .mutable(Scope::thread(2), || (Vec::<u32>::new(), task_processor()))
            .unwrap();
        assert_eq!(m.processor(), th[2]);
        assert_eq!(m.with(|v| v.1), Some(th[2]), "made on its processor");
        let tasks: Vec<_> = (0..50u32)
            .map(|i| {
                ctx.spawn(
                    move |mut m: MutGuard<(Vec<u32>, Option<dagger::ProcessorId>)>| {
                        assert_eq!(task_processor(), m.1, "runs where the value lives");
                        m.0.push(i);
                    },
                    (&m,),
                )
            })
            .collect();
        for t in &tasks {
            t.fetch().unwrap();
        }
        let mut got = m.with(|v| v.0.clone());
        got.sort_unstable();
        assert_eq!(got, (0..50).collect::<Vec<_>>());
    });
}

#[test]
fn a_mutable_and_a_chunk_pinned_elsewhere_cannot_meet() {
    let ctx = ctx(2);
    let m = ctx.mutable(Scope::thread(0), || 0i32).unwrap();
    let c = ctx.to_chunk(1i32).with_scope(Scope::thread(1));
    let t = ctx.spawn(|mut m: MutGuard<i32>, c: i32| *m += c, (&m, &c));
    let err = t.fetch().unwrap_err();
    assert!(
        matches!(
            err,
            TaskError::Schedule {
                error: ScheduleError::ChunkScopes { .. },
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(m.with(|v| *v), 0);
    let e = ctx.mutable(Scope::thread(9), || 0).unwrap_err();
    assert!(e.to_string().contains("threads(9)"), "{e}");
}

#[test]
fn each_task_gets_the_shard_piece_of_its_processor() {
    within(60, "shard", || {
        let ctx = ctx(3);
        let th = ctx.processors_of_kind(ProcessorKind::Thread);
        let shard = ctx
            .shard(&Scope::default(), |p| {
                (p, Vec::<dagger::ProcessorId>::new(), 0u64)
            })
            .unwrap();
        assert_eq!(shard.processors(), th);
        let tasks: Vec<_> = (1..=300u64)
            .map(|i| {
                ctx.spawn(
                    move |mut s: MutGuard<(dagger::ProcessorId, Vec<dagger::ProcessorId>, u64)>| {
                        std::thread::sleep(std::time::Duration::from_micros(50));
                        let here = task_processor().unwrap();
                        s.1.push(here);
                        s.2 += i;
                    },
                    (&shard,),
                )
            })
            .collect();
        for t in &tasks {
            t.fetch().unwrap();
        }
        let pieces = shard.values();
        let mut total = 0;
        for (p, (made_for, seen, sum)) in &pieces {
            assert_eq!(p, made_for);
            assert!(
                seen.iter().all(|q| q == p),
                "a task used another processor's piece"
            );
            total += sum;
        }
        assert_eq!(total, 300 * 301 / 2);
        assert!(
            pieces.iter().filter(|(_, v)| !v.1.is_empty()).count() >= 2,
            "the tasks spread over the threads"
        );
        // A narrower shard has fewer pieces, and its tasks stay on them.
        let two = ctx.shard(&Scope::threads(0..2), |_| 0u32).unwrap();
        assert_eq!(two.processors(), th[0..2]);
        for _ in 0..20 {
            let t = ctx.spawn(|_: MutGuard<u32>| task_processor().unwrap(), (&two,));
            assert!(th[0..2].contains(&t.fetch().unwrap()));
        }
        assert_eq!(two.with(th[2], |v| *v), None);
    });
}
