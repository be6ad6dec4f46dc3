//! Seeing what ran: the event log of a real run rendered as a Chrome trace, a Gantt chart,
//! DOT graphs and a summary.

use dagger::prelude::*;
use dagger::{viz, EventKind, ProcessorKind};

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
fn thunk_graph_of_the_readme_example_has_four_nodes_and_four_edges() {
    let p = delayed(add1, (4,));
    let q = delayed(add2, (&p,));
    let r = delayed(add1, (3,));
    let s = delayed(combine, (&p, &q, &r));
    let dot = s.to_dot();
    assert_eq!(dot.matches("[label=").count(), 4, "{dot}");
    assert_eq!(dot.matches("->").count(), 4, "{dot}");
    for name in ["add1", "add2", "combine"] {
        assert!(dot.contains(name), "{dot}");
    }
    // After running, each node says where it ran.
    let ctx = Context::builder().threads(2).build().unwrap();
    assert_eq!(s.collect_on(&ctx).unwrap(), 16);
    let dot = s.to_dot();
    assert_eq!(dot.matches("ran on").count(), 4, "{dot}");
}

#[test]
fn a_real_run_renders_as_trace_gantt_dot_and_summary() {
    let ctx = Context::builder().threads(2).build().unwrap();
    ctx.enable_logging();
    let leaves: Vec<DTask<u64>> = (0..64u64)
        .map(|i| ctx.spawn_with(Options::new().name("leaf"), move || i, ()))
        .collect();
    let total = ctx.spawn_with(
        Options::new().name("sum"),
        |v: Vec<u64>| v.iter().sum::<u64>(),
        (&leaves[..],),
    );
    assert_eq!(total.fetch().unwrap(), 63 * 64 / 2);
    let events = ctx.fetch_logs();
    let procs = ctx.processors();
    let tasks: Vec<_> = events
        .iter()
        .filter(|e| e.kind == EventKind::Task)
        .collect();
    assert_eq!(tasks.len(), 65);
    let (t0, t1) = (
        events.iter().map(|e| e.start_ns).min().unwrap(),
        events.iter().map(|e| e.end_ns).max().unwrap(),
    );

    // Chrome trace: one complete slice per task, on its processor's track, inside the run.
    let trace: serde_json::Value =
        serde_json::from_str(&viz::chrome_trace(&events, &procs)).unwrap();
    let evs = trace["traceEvents"].as_array().unwrap();
    let slices: Vec<_> = evs.iter().filter(|e| e["ph"] == "X").collect();
    assert_eq!(slices.len(), 65);
    for s in &slices {
        let (ts, dur) = (s["ts"].as_f64().unwrap(), s["dur"].as_f64().unwrap());
        assert!(dur >= 0.0, "{s}");
        assert!(
            ts >= t0 as f64 / 1e3 - 1e-3 && ts + dur <= t1 as f64 / 1e3 + 1e-3,
            "slice {s} outside the run {t0}..{t1} ns"
        );
    }
    let names: Vec<_> = evs
        .iter()
        .filter(|e| e["ph"] == "M" && e["name"] == "thread_name")
        .collect();
    let used: std::collections::HashSet<_> = tasks.iter().map(|e| e.processor).collect();
    assert_eq!(names.len(), used.len());
    let flows = evs.iter().filter(|e| e["ph"] == "s").count();
    assert_eq!(flows, 64, "one arrow per leaf into the sum");

    // Gantt: well-formed XML, one lane per processor offered (idle ones included).
    let svg = viz::gantt_svg(&events, &procs, "tree");
    let doc = roxmltree::Document::parse(&svg).unwrap();
    let lanes = doc
        .descendants()
        .filter(|n| n.attribute("class") == Some("lane"))
        .count();
    let runners = procs
        .iter()
        .filter(|p| p.kind != dagger::ProcessorKind::Os)
        .count();
    assert_eq!(lanes, runners);
    assert!(lanes >= used.len());

    // DOT of the run, one node per task: 65 nodes and 64 edges. Above DOT_TASKS_MAX tasks
    // `run_dot` groups them by name: the leaves and the sum, one edge between them.
    let dot = viz::run_dot_tasks(&events, &procs);
    assert_eq!(dot.matches("->").count(), 64);
    const { assert!(65 > viz::DOT_TASKS_MAX) };
    assert_eq!(
        viz::run_dot(&events, &procs),
        viz::run_dot_grouped(&events, &procs)
    );
    assert_eq!(viz::run_dot(&events, &procs).matches("->").count(), 1);

    // Summary: every task counted on a CPU thread.
    let summary = viz::summarize(&events, &procs);
    assert_eq!(summary.tasks, 65);
    assert!(summary
        .rows
        .iter()
        .all(|r| r.kind == Some(ProcessorKind::Thread)));
    assert!(summary.to_string().contains("cpu thread"));
}

#[test]
fn gantt_of_tasks_named_with_characters_xml_forbids_parses() {
    let ctx = Context::builder().threads(2).build().unwrap();
    ctx.enable_logging();
    let names = [
        "\u{FFFE}",
        "\u{FFFF}",
        "\u{1}",
        "<&\"'>",
        "tab\tand\u{0}nul",
    ];
    let tasks: Vec<DTask<usize>> = names
        .iter()
        .enumerate()
        .map(|(i, n)| ctx.spawn_with(Options::new().name(*n), move || i, ()))
        .collect();
    for (i, t) in tasks.iter().enumerate() {
        assert_eq!(t.fetch().unwrap(), i);
    }
    let events = ctx.fetch_logs();
    let procs = ctx.processors();
    for title in ["\u{FFFE}\u{1}<&\"'>", ""] {
        let svg = viz::gantt_svg(&events, &procs, title);
        let doc = roxmltree::Document::parse(&svg)
            .unwrap_or_else(|e| panic!("the Gantt SVG is not well-formed XML: {e}"));
        let text: String = doc
            .descendants()
            .filter_map(|n| n.text())
            .collect::<Vec<_>>()
            .join("\n");
        assert!(text.contains("<&\"'>"), "the name survives escaping");
    }
}
