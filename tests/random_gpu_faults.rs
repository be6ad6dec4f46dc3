//! Random task graphs that lose a GPU at a random moment, beside a datadeps region over cells,
//! checked against a sequential model: every value that does not depend on a failure is
//! correct, every failure is explained (a task's own fault or the lost device), every cell
//! ends at a version that can be read, and nothing hangs.
//!
//! The devices are opened once per process and a destroyed one stays lost, so each seed runs
//! in a process of its own: the test starts this binary again for every seed.

mod common;

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{chain, increment, Bomb, Rng};
use dagger::prelude::*;
use dagger::{Cell, InOut, RefMut};

const SEED_VAR: &str = "DAGGER_TEST_GPU_LOSS_SEED";
/// Elements per value: every element of a value is equal, so the model tracks one number.
const LEN: usize = 2048;

/// The one number every element of `v` equals, or a description of what is wrong.
fn uniform(v: &[f32]) -> Result<f32, String> {
    if v.len() != LEN {
        return Err(format!("{} elements instead of {LEN}", v.len()));
    }
    let k = v[0];
    if v.iter().any(|&x| x != k) {
        return Err(format!("a mix of versions: starts {:?}", &v[..4]));
    }
    Ok(k)
}

#[derive(Clone, Copy, Debug)]
enum Kind {
    Plain,
    Panics,
    PanicsWithBomb,
    Fails,
    Nested,
    Gpu(Where),
}

#[derive(Clone, Copy, Debug)]
enum Where {
    /// Only the GPU that will be lost.
    Doomed,
    /// Any GPU.
    Gpus,
    /// Anywhere: threads and GPUs.
    Anywhere,
}

impl Where {
    fn scope(self) -> Scope {
        match self {
            Where::Doomed => Scope::gpu(0),
            Where::Gpus => Scope::gpus(..),
            Where::Anywhere => Scope::default(),
        }
    }
}

/// What the model expects of a task.
#[derive(Clone, Copy, Debug)]
struct Expect {
    /// Its value, unless it (or an input) fails by its own fault.
    value: Option<f32>,
    /// Whether it or an input ran on a GPU, so the loss may fail it.
    fragile: bool,
}

/// One seed: a graph of `n` tasks and a region over cells, with GPU 0 destroyed part way.
fn run_seed(seed: u64, n: usize) {
    let ctx = Context::builder().threads(2).build().unwrap();
    let gpus = common::gpus_or_skip(&ctx, "random graphs that lose a GPU");
    if gpus.is_empty() {
        return;
    }
    let inc = increment("increment", true);
    let mut rng = Rng::new(seed);

    // The region: increments of three cells by kernels on every kind of scope and by CPU
    // closures, running while the graph does.
    let cells: Vec<Cell<Vec<f32>>> = (0..3).map(|_| Cell::new(vec![0.0f32; LEN])).collect();
    let mut plan: Vec<(usize, Option<Where>)> = Vec::new();
    for _ in 0..200 {
        let cell = rng.below(3) as usize;
        let on = match rng.below(4) {
            0 => Some(Where::Doomed),
            1 => Some(Where::Gpus),
            2 => Some(Where::Anywhere),
            _ => None,
        };
        plan.push((cell, on));
    }
    let mut writes = [0u32; 3];
    for (c, _) in &plan {
        writes[*c] += 1;
    }
    let region = {
        let (ctx, inc, cells) = (ctx.clone(), inc.clone(), cells.clone());
        std::thread::spawn(move || {
            ctx.spawn_datadeps(|r| {
                for &(c, on) in &plan {
                    match on {
                        Some(w) => {
                            r.spawn_kernel_with(
                                Options::new().scope(w.scope()),
                                &inc,
                                (),
                                [InOut(&cells[c]).into()],
                            )
                            .unwrap();
                        }
                        None => {
                            r.spawn(
                                |mut v: RefMut<Vec<f32>>| v.iter_mut().for_each(|x| *x += 1.0),
                                (InOut(&cells[c]),),
                            );
                        }
                    }
                }
            })
        })
    };

    let mut tasks: Vec<DTask<Vec<f32>>> = Vec::with_capacity(n);
    let mut model: Vec<Expect> = Vec::with_capacity(n);
    let mut kinds = Vec::new();
    for i in 0..n {
        let kind = match rng.below(24) {
            0 => Kind::Panics,
            1 => Kind::PanicsWithBomb,
            2 => Kind::Fails,
            3..=5 => Kind::Nested,
            6..=8 => Kind::Gpu(Where::Doomed),
            9..=11 => Kind::Gpu(Where::Gpus),
            12..=14 => Kind::Gpu(Where::Anywhere),
            _ => Kind::Plain,
        };
        let deps: Vec<usize> = match (i, kind) {
            (0, _) => Vec::new(),
            // A kernel increments one input in place (or a fresh zero vector).
            (_, Kind::Gpu(_)) => (0..rng.below(2))
                .map(|_| rng.below(i as u64) as usize)
                .collect(),
            _ => (0..rng.below(4))
                .map(|_| rng.below(i as u64) as usize)
                .collect(),
        };
        let inputs: Vec<DTask<Vec<f32>>> = deps.iter().map(|&d| tasks[d].clone()).collect();
        let t = match kind {
            Kind::Gpu(w) => {
                let arg = match inputs.first() {
                    Some(t) => t.into(),
                    None => vec![0.0f32; LEN].into(),
                };
                ctx.spawn_kernel_with(Options::new().scope(w.scope()), &inc, (), [arg])
                    .unwrap()
            }
            _ => {
                let c = ctx.clone();
                ctx.try_spawn(
                    move |xs: Vec<Vec<f32>>| -> Result<Vec<f32>, String> {
                        // The largest input plus one: grows by at most one per task, so
                        // every value is an exact small integer in f32.
                        let top = xs
                            .iter()
                            .map(|x| uniform(x))
                            .try_fold(0.0f32, |m, k| k.map(|k| m.max(k)))?;
                        match kind {
                            Kind::Panics => panic!("task {i} panics"),
                            Kind::PanicsWithBomb => std::panic::panic_any(Bomb),
                            Kind::Fails => Err(format!("task {i} fails")),
                            Kind::Nested => {
                                let child = c.spawn(move || top + 2.0, ());
                                Ok(vec![child.fetch().map_err(|e| e.to_string())?; LEN])
                            }
                            _ => Ok(vec![top + 1.0; LEN]),
                        }
                    },
                    (&inputs[..],),
                )
            }
        };
        let ins: Vec<Expect> = deps.iter().map(|&d| model[d]).collect();
        let fragile = matches!(kind, Kind::Gpu(_)) || ins.iter().any(|e| e.fragile);
        let mut value = ins
            .iter()
            .try_fold(0.0f32, |m, e| e.value.map(|v| m.max(v)))
            .and_then(|top| match kind {
                Kind::Plain => Some(top + 1.0),
                Kind::Nested => Some(top + 2.0),
                Kind::Gpu(_) => Some(ins.first().and_then(|e| e.value).unwrap_or(0.0) + 1.0),
                _ => None,
            });
        // Cancel a few right away: those that had not started fail, with their dependents.
        if rng.below(30) == 0 && t.cancel() {
            value = None;
        }
        kinds.push(kind);
        tasks.push(t);
        model.push(Expect { value, fragile });
    }

    // The loss comes when a random task of the graph has finished, and a little later: in
    // the middle of the work, wherever that is on this machine.
    let (victim, delay) = (
        rng.below(n as u64) as usize,
        Duration::from_micros(rng.below(20_000)),
    );
    let killer = {
        let (ctx, victim) = (ctx.clone(), tasks[victim].clone());
        std::thread::spawn(move || {
            victim.wait();
            std::thread::sleep(delay);
            ctx.gpu_device(0).unwrap().destroy();
        })
    };

    let got = common::within(240, "the graph that loses a GPU", move || {
        tasks.iter().map(|t| t.fetch()).collect::<Vec<_>>()
    });
    let mut lost = 0;
    for (i, (g, m)) in got.iter().zip(&model).enumerate() {
        match (g, m.value) {
            (Ok(v), Some(w)) => assert_eq!(uniform(v), Ok(w), "seed {seed}: task {i}"),
            (Err(_), None) => {}
            (Ok(v), None) => panic!(
                "seed {seed}: task {i} should have failed, got {:?}",
                uniform(v)
            ),
            (Err(e), Some(w)) => {
                let text = chain(e);
                assert!(
                    m.fragile && text.contains("lost"),
                    "seed {seed}: task {i} ({:?}) should be {w}; only the lost GPU may fail \
                     it (fragile: {}), and its error must say so: {text}",
                    kinds[i],
                    m.fragile
                );
                lost += 1;
            }
        }
    }

    killer.join().unwrap();
    let region = common::within(240, "the region that loses a GPU", move || {
        region.join().unwrap()
    });
    for (c, cell) in cells.iter().enumerate() {
        let k = uniform(&cell.get())
            .unwrap_or_else(|e| panic!("seed {seed}: cell {c} is not a readable version: {e}"));
        assert!(
            k.fract() == 0.0 && (0.0..=writes[c] as f32).contains(&k),
            "seed {seed}: cell {c} holds {k}, not one of its {} versions",
            writes[c] + 1
        );
        if region.is_ok() {
            assert_eq!(
                k, writes[c] as f32,
                "seed {seed}: cell {c} after a whole region"
            );
        }
    }
    if let Err(e) = &region {
        let text = chain(e);
        assert!(
            text.contains("lost"),
            "seed {seed}: the region's error: {text}"
        );
    }

    // The context still works, on the threads and on whatever GPU is left.
    assert_eq!(ctx.spawn(|| 7u64, ()).fetch().unwrap(), 7);
    let after = ctx
        .spawn_kernel_with(
            Options::new().scope(Scope::default()),
            &inc,
            (),
            [vec![1.0f32; LEN].into()],
        )
        .unwrap();
    let after = common::within(60, "a kernel after the loss", move || after.fetch());
    assert_eq!(uniform(&after.unwrap()), Ok(2.0));
    eprintln!(
        "seed {seed}: GPU 0 lost {delay:?} after task {victim} finished; {lost} of {n} tasks \
         failed with it; region {}",
        if region.is_ok() { "whole" } else { "restored" }
    );
}

#[test]
fn random_graphs_that_lose_a_gpu_match_a_sequential_model() {
    if let Ok(seed) = std::env::var(SEED_VAR) {
        // The graphs' own panics happen on worker threads: keep them off the output.
        std::panic::set_hook(Box::new({
            let default = std::panic::take_hook();
            move |info| {
                let worker = std::thread::current()
                    .name()
                    .is_some_and(|n| n.starts_with("dagger"));
                if !worker {
                    default(info);
                }
            }
        }));
        run_seed(seed.parse().unwrap(), 400);
        return;
    }
    let exe = std::env::current_exe().unwrap();
    for seed in 0..4u64 {
        let mut child = Command::new(&exe)
            .args([
                "--exact",
                "random_graphs_that_lose_a_gpu_match_a_sequential_model",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(SEED_VAR, seed.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Drain both pipes while waiting, so a chatty child cannot block on a full one.
        let drain = |mut r: Box<dyn Read + Send>| {
            std::thread::spawn(move || {
                let mut s = String::new();
                let _ = r.read_to_string(&mut s);
                s
            })
        };
        let out_reader = drain(Box::new(child.stdout.take().unwrap()));
        let err_reader = drain(Box::new(child.stderr.take().unwrap()));
        let start = Instant::now();
        let status = loop {
            if let Some(s) = child.try_wait().unwrap() {
                break s;
            }
            if start.elapsed() > Duration::from_secs(420) {
                let _ = child.kill();
                panic!("seed {seed}: the child process hangs");
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let stdout = out_reader.join().unwrap();
        let stderr = err_reader.join().unwrap();
        assert!(
            status.success(),
            "seed {seed} failed ({status}):\n{stdout}\n{stderr}"
        );
        // The child ran the graph (or said why it skipped), not an empty filter.
        assert!(
            stdout.contains("1 passed")
                && (stderr.contains("GPU 0 lost") || stderr.contains("skipped")),
            "seed {seed}: the child did not run the graph:\n{stdout}\n{stderr}"
        );
        for line in stderr.lines().filter(|l| l.contains("GPU 0 lost")) {
            eprintln!("{line}");
        }
    }
}
