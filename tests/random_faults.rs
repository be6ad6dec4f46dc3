//! Random task graphs with faults — panics (also from payloads whose `Drop` panics), errors,
//! cancellations and nested fetches — checked against a sequential model: every task that
//! depends on no failure has the right value, every other one fails, and nothing hangs.

mod common;

use std::sync::mpsc;
use std::time::Duration;

use dagger::prelude::*;

use common::{Bomb, Rng};

#[derive(Clone, Copy, Debug)]
enum Kind {
    Plain,
    Panics,
    PanicsWithBomb,
    Fails,
    Nested,
}

fn run_graph(seed: u64, threads: usize, n: usize) {
    let ctx = Context::builder()
        .threads(threads)
        .gpus(false)
        .build()
        .unwrap();
    let mut rng = Rng::new(seed);
    let mut tasks: Vec<DTask<u64>> = Vec::with_capacity(n);
    let mut model: Vec<Option<u64>> = Vec::with_capacity(n);
    for i in 0..n {
        let kind = match rng.below(20) {
            0 => Kind::Panics,
            1 => Kind::PanicsWithBomb,
            2 => Kind::Fails,
            3..=5 => Kind::Nested,
            _ => Kind::Plain,
        };
        let deps: Vec<usize> = if i == 0 {
            Vec::new()
        } else {
            (0..rng.below(4))
                .map(|_| rng.below(i as u64) as usize)
                .collect()
        };
        let inputs: Vec<DTask<u64>> = deps.iter().map(|&d| tasks[d].clone()).collect();
        let me = i as u64;
        let c = ctx.clone();
        let t = ctx.try_spawn(
            move |xs: Vec<u64>| -> Result<u64, String> {
                let sum: u64 = xs.iter().sum::<u64>().wrapping_add(me);
                match kind {
                    Kind::Plain => Ok(sum),
                    Kind::Panics => panic!("task {me} panics"),
                    Kind::PanicsWithBomb => std::panic::panic_any(Bomb),
                    Kind::Fails => Err(format!("task {me} fails")),
                    Kind::Nested => {
                        let child = c.spawn(move || me * 2, ());
                        Ok(sum.wrapping_add(child.fetch().map_err(|e| e.to_string())?))
                    }
                }
            },
            (&inputs[..],),
        );
        let mut expect = deps
            .iter()
            .try_fold(0u64, |acc, &d| model[d].map(|v| acc.wrapping_add(v)))
            .and_then(|sum| {
                let sum = sum.wrapping_add(me);
                match kind {
                    Kind::Plain => Some(sum),
                    Kind::Nested => Some(sum.wrapping_add(me * 2)),
                    _ => None,
                }
            });
        // Cancel a few right away: those that had not started fail, with their dependents.
        if rng.below(25) == 0 && t.cancel() {
            expect = None;
        }
        tasks.push(t);
        model.push(expect);
    }
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let got: Vec<Result<u64, String>> = tasks
            .iter()
            .map(|t| t.fetch().map_err(|e| e.to_string()))
            .collect();
        let _ = tx.send(got);
    });
    let got = rx
        .recv_timeout(Duration::from_secs(120))
        .unwrap_or_else(|_| panic!("seed {seed}, {threads} threads: the graph hangs"));
    for (i, (g, m)) in got.iter().zip(&model).enumerate() {
        match (g, m) {
            (Ok(v), Some(w)) => assert_eq!(v, w, "seed {seed}: task {i}"),
            (Err(_), None) => {}
            (Ok(v), None) => panic!("seed {seed}: task {i} should have failed, got {v}"),
            (Err(e), Some(w)) => panic!("seed {seed}: task {i} should be {w}, failed: {e}"),
        }
    }
    // The context still works.
    assert_eq!(ctx.spawn(|| 7u64, ()).fetch().unwrap(), 7);
}

#[test]
fn random_graphs_with_faults_match_a_sequential_model() {
    // The graphs' own panics happen on worker threads: keep them off the output, and the
    // test's own messages on it.
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let worker = std::thread::current()
            .name()
            .is_some_and(|n| n.starts_with("dagger"));
        if !worker {
            default(info);
        }
    }));
    for seed in 0..12 {
        run_graph(seed, 1 + (seed as usize % 2), 400);
    }
}
