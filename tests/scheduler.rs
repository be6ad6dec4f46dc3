//! Scheduler: long chains, random graphs against sequential evaluation, the event log,
//! tracing spans and placement by learned run time.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dagger::prelude::*;
use dagger::{
    EventKind, MemorySpace, Processor, ProcessorKind, TaskCall, TaskFailure, TaskInfo, Value,
};
use proptest::prelude::*;

fn ctx(threads: usize) -> Context {
    Context::builder().threads(threads).build().unwrap()
}

#[test]
fn million_task_chain_runs_without_recursion() {
    let ctx = ctx(2);
    let n = 1_000_000u64;
    let t0 = std::time::Instant::now();
    let mut prev = ctx.spawn(|| 0u64, ());
    for _ in 1..n {
        prev = ctx.spawn(|x: u64| x + 1, (&prev,));
    }
    assert_eq!(prev.fetch().unwrap(), n - 1);
    // Linear time: a quadratic scheduler would need hours here.
    assert!(t0.elapsed() < Duration::from_secs(60));
}

#[test]
fn blocked_million_chain_can_be_dropped_and_released() {
    let ctx = ctx(1);
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let rx = Mutex::new(rx);
    let head = ctx.spawn(move || rx.lock().unwrap().recv().unwrap(), ());
    let mut prev = ctx.spawn(|_: ()| 0u64, (&head,));
    for _ in 0..1_000_000 {
        prev = ctx.spawn(|x: u64| x + 1, (&prev,));
    }
    let last = prev.clone();
    drop(prev);
    tx.send(()).unwrap();
    assert_eq!(last.fetch().unwrap(), 1_000_000);
    drop(last);
    drop(head);
}

/// A random DAG: node i has inputs among earlier nodes and may fail.
#[derive(Debug, Clone)]
struct Graph {
    inputs: Vec<Vec<usize>>,
    fails: Vec<bool>,
}

fn graph() -> impl Strategy<Value = Graph> {
    (1usize..2500).prop_flat_map(|n| {
        let nodes = (0..n)
            .map(|i| {
                let ins = if i == 0 {
                    Just(Vec::new()).boxed()
                } else {
                    proptest::collection::vec(0..i, 0..5).boxed()
                };
                (ins, proptest::bool::weighted(0.01))
            })
            .collect::<Vec<_>>();
        nodes.prop_map(|v| {
            let (inputs, fails) = v.into_iter().unzip();
            Graph { inputs, fails }
        })
    })
}

fn node_value(i: usize, ins: &[u64]) -> u64 {
    ins.iter().fold(i as u64 * 2654435761, |a, &x| {
        a.wrapping_mul(31).wrapping_add(x)
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, .. ProptestConfig::default() })]

    #[test]
    fn random_dags_match_sequential_evaluation(g in graph(), threads in 1usize..4) {
        let n = g.inputs.len();
        // Sequential reference.
        let mut expect: Vec<Result<u64, ()>> = Vec::with_capacity(n);
        for i in 0..n {
            let ins: Result<Vec<u64>, ()> = g.inputs[i].iter().map(|&j| expect[j]).collect();
            expect.push(match ins {
                Err(()) => Err(()),
                Ok(_) if g.fails[i] => Err(()),
                Ok(v) => Ok(node_value(i, &v)),
            });
        }
        let ctx = ctx(threads);
        let mut tasks: Vec<DTask<u64>> = Vec::with_capacity(n);
        for i in 0..n {
            let ins: Vec<DTask<u64>> = g.inputs[i].iter().map(|&j| tasks[j].clone()).collect();
            let fail = g.fails[i];
            let t = ctx.try_spawn_with(
                Options::new().name(format!("n{i}")),
                move |v: Vec<u64>| if fail { Err(format!("node {i} fails")) } else { Ok(node_value(i, &v)) },
                (&ins[..],),
            );
            tasks.push(t);
        }
        for i in 0..n {
            match (&expect[i], tasks[i].fetch()) {
                (Ok(v), Ok(got)) => prop_assert_eq!(*v, got),
                (Err(()), Err(e)) => {
                    // The root cause is a failing ancestor (or the node itself).
                    let root = e.root_cause().task().name.to_string();
                    let r: usize = root[1..].parse().unwrap();
                    prop_assert!(g.fails[r], "root {} does not fail", r);
                    prop_assert!(r <= i);
                }
                (want, got) => prop_assert!(false, "node {}: want {:?}, got {:?}", i, want, got.map_err(|e| e.to_string())),
            }
        }
    }
}

#[test]
fn event_log_records_every_task() {
    let ctx = ctx(2);
    ctx.enable_logging();
    let a = ctx.spawn_with(
        Options::new().name("a"),
        || std::thread::sleep(Duration::from_millis(2)),
        (),
    );
    let b = ctx.spawn_with(Options::new().name("b"), |_: ()| 1, (&a,));
    b.fetch().unwrap();
    let ev = ctx.fetch_logs();
    assert_eq!(ev.len(), 2);
    let ea = ev.iter().find(|e| e.task == a.id()).unwrap();
    let eb = ev.iter().find(|e| e.task == b.id()).unwrap();
    assert_eq!(ea.kind, EventKind::Task);
    assert_eq!(&*ea.name, "a");
    assert!(
        ea.end_ns - ea.start_ns >= 2_000_000,
        "duration covers the sleep"
    );
    assert!(eb.start_ns >= ea.end_ns, "b starts after a ends");
    assert_eq!(eb.inputs, vec![a.id()]);
    assert!(ea.ok && eb.ok);
    let threads = ctx.processors_of_kind(ProcessorKind::Thread);
    assert!(threads.contains(&ea.processor));
    // Drained: a second fetch is empty, and logging off records nothing.
    assert!(ctx.fetch_logs().is_empty());
    ctx.disable_logging();
    ctx.spawn(|| 1, ()).wait();
    assert!(ctx.fetch_logs().is_empty());
}

/// Records the spans named "task" and their `name` field.
#[derive(Default, Clone)]
struct SpanRecorder {
    names: Arc<Mutex<Vec<String>>>,
    next: Arc<AtomicUsize>,
}

struct NameVisitor<'a>(&'a mut Option<String>);
impl tracing::field::Visit for NameVisitor<'_> {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        if field.name() == "name" {
            *self.0 = Some(format!("{value:?}"));
        }
    }
}

impl tracing::Subscriber for SpanRecorder {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, span: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        if span.metadata().name() == "task" {
            let mut name = None;
            span.record(&mut NameVisitor(&mut name));
            self.names.lock().unwrap().push(name.unwrap_or_default());
        }
        tracing::span::Id::from_u64(self.next.fetch_add(1, Ordering::Relaxed) as u64 + 1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, _: &tracing::Event<'_>) {}
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

#[test]
fn each_task_runs_in_a_tracing_span() {
    let rec = SpanRecorder::default();
    tracing::subscriber::set_global_default(rec.clone()).unwrap();
    let ctx = ctx(2);
    let ts: Vec<_> = (0..5)
        .map(|i| ctx.spawn_with(Options::new().name(format!("traced{i}")), || 1, ()))
        .collect();
    ts.iter().for_each(|t| t.wait());
    let names = rec.names.lock().unwrap().clone();
    for i in 0..5 {
        assert!(
            names.iter().any(|n| n == &format!("traced{i}")),
            "{names:?}"
        );
    }
}

/// A processor that takes 3 ms for anything.
struct Slow {
    ran: Arc<AtomicUsize>,
}
impl Processor for Slow {
    fn kind(&self) -> ProcessorKind {
        ProcessorKind::Custom("slow")
    }
    fn memory_space(&self) -> MemorySpace {
        MemorySpace::LOCAL_HOST
    }
    fn is_compatible(&self, _: &TaskInfo) -> bool {
        true
    }
    fn execute(&self, call: TaskCall) -> Result<Value, TaskFailure> {
        self.ran.fetch_add(1, Ordering::SeqCst);
        std::thread::sleep(Duration::from_millis(3));
        call.run()
    }
}

#[test]
fn placement_learns_that_a_processor_is_slow() {
    let ran = Arc::new(AtomicUsize::new(0));
    let ctx = Context::builder()
        .threads(1)
        .processor(Arc::new(Slow { ran: ran.clone() }))
        .build()
        .unwrap();
    let slow = ctx.processors_of_kind(ProcessorKind::Custom("slow"))[0];
    let scope = Scope::union([Scope::thread(0), Scope::exact(slow)]).unwrap();
    let mut total = 0;
    for _ in 0..10 {
        let wave: Vec<_> = (0..10u64)
            .map(|i| ctx.spawn_with(Options::new().scope(scope.clone()), |i: u64| i * 2, (i,)))
            .collect();
        for (i, t) in wave.iter().enumerate() {
            assert_eq!(t.fetch().unwrap(), i as u64 * 2);
        }
        total += wave.len();
    }
    let on_slow = ran.load(Ordering::SeqCst);
    assert!(on_slow >= 1, "the slow processor was tried");
    assert!(
        on_slow * 5 < total,
        "{on_slow} of {total} tasks went to the slow processor"
    );
}

/// Tasks queued behind a busy thread run high priority first, each level in the order the
/// tasks became ready (the finishing thread may first run one its last task made ready); a
/// task of high priority made ready by a finishing task runs before the normal ones already
/// queued, and one of normal priority made ready so waits.
#[test]
fn high_priority_tasks_run_before_queued_normal_ones() {
    use dagger::Priority;
    let ctx = ctx(1);
    let order = Arc::new(Mutex::new(Vec::new()));
    let gate = Arc::new(std::sync::Barrier::new(2));
    let g = gate.clone();
    // The only thread waits at the gate while the others queue behind it.
    let first = ctx.spawn(
        move || {
            g.wait();
        },
        (),
    );
    let log = |name: &'static str| {
        let order = order.clone();
        move || order.lock().unwrap().push(name)
    };
    let high = Options::new().priority(Priority::High);
    let tasks = vec![
        ctx.spawn(log("normal 1"), ()),
        ctx.spawn_with(high.clone(), log("high 1"), ()),
        ctx.spawn(log("normal 2"), ()),
        ctx.spawn_with(high.clone(), log("high 2"), ()),
        // Ready when the gate task finishes.
        ctx.spawn_with(
            high,
            {
                let order = order.clone();
                move |_: ()| order.lock().unwrap().push("high after")
            },
            (&first,),
        ),
        ctx.spawn(
            {
                let order = order.clone();
                move |_: ()| order.lock().unwrap().push("normal after")
            },
            (&first,),
        ),
    ];
    gate.wait();
    first.fetch().unwrap();
    for t in tasks {
        t.fetch().unwrap();
    }
    let order = order.lock().unwrap().clone();
    let pos = |name: &str| order.iter().position(|&n| n == name).unwrap();
    let mut first_three = order[..3].to_vec();
    first_three.sort();
    assert_eq!(first_three, ["high 1", "high 2", "high after"], "{order:?}");
    assert!(pos("high 1") < pos("high 2"), "{order:?}");
    assert!(pos("normal 1") < pos("normal 2"), "{order:?}");
    assert_eq!(order.len(), 6);
}
