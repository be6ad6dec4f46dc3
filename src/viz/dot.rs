//! The task graph of a finished run in Graphviz DOT.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;

use super::{duration_ns, fmt_bytes, fmt_duration, LogEvent};
use crate::log::EventKind;
use crate::processor::{ProcessorInfo, ProcessorKind};

/// Above this many tasks, [`run_dot`] draws one node per task name instead of one per
/// task: past it, a graph of single tasks renders as a tall tangle nobody reads.
pub const DOT_TASKS_MAX: usize = 64;

/// The task graph of a finished run in Graphviz DOT: render it with `dot -Tsvg`.
///
/// Up to [`DOT_TASKS_MAX`] tasks it is [`run_dot_tasks`], one node per task; above, it is
/// [`run_dot_grouped`], one node per task name with counts, so it stays readable however
/// many tasks ran.
///
/// ```
/// use dagger::prelude::*;
///
/// let ctx = Context::builder().threads(2).build()?;
/// ctx.enable_logging();
/// let mut x = ctx.spawn(|x: i64| x, (0i64,));
/// for _ in 0..200 {
///     x = ctx.spawn(|x: i64| x + 1, (&x,));
/// }
/// assert_eq!(x.fetch()?, 200);
/// let dot = dagger::viz::run_dot(&ctx.fetch_logs(), &ctx.processors());
/// // Two names (the two closures), so two nodes, however long the chain.
/// assert_eq!(dot.matches("[label=\"").count() - dot.matches(" -> ").count(), 2);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn run_dot(events: &[LogEvent], procs: &[ProcessorInfo]) -> String {
    let tasks: std::collections::HashSet<u64> = events
        .iter()
        .filter(|e| e.kind == EventKind::Task)
        .map(|e| e.task)
        .collect();
    if tasks.len() > DOT_TASKS_MAX {
        run_dot_grouped(events, procs)
    } else {
        run_dot_tasks(events, procs)
    }
}

/// The task graph of a finished run in Graphviz DOT, one node per task, however many.
///
/// One node per task, labelled with its name and id, the processor it ran on and its
/// duration, filled by the kind of processor (CPU threads blue, GPUs green, custom
/// processors sand); failed tasks are outlined in red. One edge from each input of a task
/// to the task, labelled with the bytes moved for it when the log has a data move for that
/// consumer. A move is attributed to the inputs it names in its `inputs` (split evenly),
/// or, when it names none, to the consumer's only input; bytes moved for a task with several inputs that no
/// move names are shown on the task's node instead. Inputs whose task is not in the log
/// (it ran before logging was enabled) are dashed nodes.
///
/// ```
/// use dagger::prelude::*;
///
/// let ctx = Context::builder().threads(2).build()?;
/// ctx.enable_logging();
/// let a = ctx.spawn(|x: i64| x + 1, (1,));
/// let b = ctx.spawn(|x: i64| x * 2, (&a,));
/// b.wait();
/// let dot = dagger::viz::run_dot_tasks(&ctx.fetch_logs(), &ctx.processors());
/// assert!(dot.starts_with("digraph run {"));
/// assert_eq!(dot.matches(" -> ").count(), 1);
/// // std::fs::write("run.dot", dot)?;  // then: dot -Tsvg run.dot > run.svg
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn run_dot_tasks(events: &[LogEvent], procs: &[ProcessorInfo]) -> String {
    // The last event of each task, in order of first appearance.
    let mut order: Vec<u64> = Vec::new();
    let mut tasks: HashMap<u64, &LogEvent> = HashMap::new();
    let mut moves: HashMap<u64, Vec<&LogEvent>> = HashMap::new();
    for e in events {
        match e.kind {
            EventKind::Task => {
                if tasks.insert(e.task, e).is_none() {
                    order.push(e.task);
                }
            }
            EventKind::Move => moves.entry(e.task).or_default().push(e),
            // Disk traffic and GPU evictions are not part of the graph.
            EventKind::Spill | EventKind::Reload | EventKind::GpuEvict => {}
        }
    }

    let mut out = String::from("digraph run {\n");
    out.push_str("  graph [rankdir=LR, fontname=\"Helvetica\"];\n");
    out.push_str(
        "  node [shape=box, style=\"rounded,filled\", fillcolor=\"#ffffff\", color=\"#555555\", \
         fontname=\"Helvetica\", fontsize=10];\n",
    );
    out.push_str("  edge [color=\"#666666\", fontname=\"Helvetica\", fontsize=9];\n");

    let mut missing: BTreeMap<u64, ()> = BTreeMap::new();
    let mut edges = String::new();
    for &id in &order {
        let e = tasks[&id];
        let inputs = distinct(&e.inputs);

        // Bytes per input edge, and bytes no edge can take.
        let mut per_input: HashMap<u64, u64> = HashMap::new();
        let mut unattributed: Option<u64> = None;
        for m in moves.get(&id).into_iter().flatten() {
            let named: Vec<u64> = distinct(&m.inputs)
                .into_iter()
                .filter(|p| inputs.contains(p))
                .collect();
            match (&named[..], &inputs[..]) {
                ([], [only]) => *per_input.entry(*only).or_default() += m.bytes_moved,
                ([], _) => *unattributed.get_or_insert(0) += m.bytes_moved,
                (named, _) => {
                    for p in named {
                        *per_input.entry(*p).or_default() += m.bytes_moved / named.len() as u64;
                    }
                }
            }
        }

        let info = procs.iter().find(|p| p.id == e.processor);
        let proc_label = match info {
            Some(p) => format!("{} ({})", p.description, p.id),
            None => format!("processor {}", e.processor),
        };
        let mut label = format!(
            "{} #{}\n{}\n{}",
            e.name,
            id,
            proc_label,
            fmt_duration(duration_ns(e))
        );
        if let Some(b) = unattributed {
            let _ = write!(label, "\nmoved in {}", fmt_bytes(b));
        }
        let fill = match info.map(|p| p.kind) {
            Some(ProcessorKind::Thread) => "#e3ebf6",
            Some(ProcessorKind::Wgpu) => "#e2f2df",
            Some(_) => "#f5ecdc",
            None => "#ffffff",
        };
        let style = if e.ok {
            format!("fillcolor=\"{fill}\"")
        } else {
            "fillcolor=\"#fde2e2\", color=\"#d62728\", fontcolor=\"#a50f15\", penwidth=2".into()
        };
        let _ = writeln!(out, "  t{id} [label=\"{}\", {style}];", esc(&label));

        for p in inputs {
            if !tasks.contains_key(&p) {
                missing.insert(p, ());
            }
            match per_input.get(&p) {
                Some(b) => {
                    let _ = writeln!(edges, "  t{p} -> t{id} [label=\"{}\"];", fmt_bytes(*b));
                }
                None => {
                    let _ = writeln!(edges, "  t{p} -> t{id};");
                }
            }
        }
    }
    for id in missing.keys() {
        let _ = writeln!(
            out,
            "  t{id} [label=\"task {id}\\n(not in the log)\", style=\"rounded,dashed\"];"
        );
    }
    out.push_str(&edges);
    out.push_str("}\n");
    out
}

/// One group of [`run_dot_grouped`]: the tasks of one name.
#[derive(Default)]
struct Group {
    tasks: usize,
    failed: usize,
    busy_ns: u64,
    /// Tasks per processor kind.
    kinds: BTreeMap<&'static str, usize>,
    processors: std::collections::BTreeSet<crate::processor::ProcessorId>,
}

/// The task graph of a finished run in Graphviz DOT, one node per task name: the node says
/// how many tasks of that name ran, on how many processors of which kinds, their summed
/// time and failures; one edge per pair of names that fed one another, labelled with how
/// many task-to-task edges it stands for and the bytes moved along them. Inputs whose task
/// is not in the log are one dashed node. The graph's label says it is grouped.
///
/// ```
/// use dagger::prelude::*;
///
/// let ctx = Context::builder().threads(2).build()?;
/// ctx.enable_logging();
/// let squares: Vec<_> = (0..100).map(|i| ctx.spawn(|x: i64| x * x, (i,))).collect();
/// squares.iter().for_each(|t| t.wait());
/// let dot = dagger::viz::run_dot_grouped(&ctx.fetch_logs(), &ctx.processors());
/// // One node for the hundred squares.
/// assert!(dot.contains("\\n100 tasks on "), "{dot}");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn run_dot_grouped(events: &[LogEvent], procs: &[ProcessorInfo]) -> String {
    // The last event of each task, and the bytes moved in for it.
    let mut tasks: HashMap<u64, &LogEvent> = HashMap::new();
    let mut moved: HashMap<u64, u64> = HashMap::new();
    for e in events {
        match e.kind {
            EventKind::Task => {
                tasks.insert(e.task, e);
            }
            EventKind::Move => *moved.entry(e.task).or_default() += e.bytes_moved,
            // Disk traffic and GPU evictions are not part of the graph.
            EventKind::Spill | EventKind::Reload | EventKind::GpuEvict => {}
        }
    }
    let mut groups: BTreeMap<&str, Group> = BTreeMap::new();
    for e in tasks.values() {
        let g = groups.entry(&e.name).or_default();
        g.tasks += 1;
        g.failed += usize::from(!e.ok);
        g.busy_ns += duration_ns(e);
        let kind = match procs.iter().find(|p| p.id == e.processor).map(|p| p.kind) {
            Some(ProcessorKind::Thread) => "cpu",
            Some(ProcessorKind::Wgpu) => "gpu",
            Some(_) => "other",
            None => "unknown",
        };
        *g.kinds.entry(kind).or_default() += 1;
        g.processors.insert(e.processor);
    }
    let index: HashMap<&str, usize> = groups.keys().enumerate().map(|(i, n)| (*n, i)).collect();
    // Edges between groups: (from, to) -> (task edges, bytes); `None` is outside the log.
    let mut edges: BTreeMap<(Option<usize>, usize), (usize, u64)> = BTreeMap::new();
    for e in tasks.values() {
        let to = index[&*e.name];
        let inputs = distinct(&e.inputs);
        let share = moved.get(&e.task).copied().unwrap_or(0) / inputs.len().max(1) as u64;
        for p in inputs {
            let from = tasks.get(&p).map(|t| index[&*t.name]);
            let edge = edges.entry((from, to)).or_default();
            edge.0 += 1;
            edge.1 += share;
        }
    }

    let mut out = String::from("digraph run {\n");
    let _ = writeln!(
        out,
        "  graph [rankdir=LR, fontname=\"Helvetica\", labelloc=t, label=\"{} tasks, one node per task name\"];",
        tasks.len()
    );
    out.push_str(
        "  node [shape=box, style=\"rounded,filled\", fillcolor=\"#ffffff\", color=\"#555555\", \
         fontname=\"Helvetica\", fontsize=10];\n",
    );
    out.push_str("  edge [color=\"#666666\", fontname=\"Helvetica\", fontsize=9];\n");
    for (i, (name, g)) in groups.iter().enumerate() {
        let kinds: Vec<String> = g.kinds.iter().map(|(k, n)| format!("{k} ×{n}")).collect();
        let mut label = format!(
            "{name}\n{} task{} on {} processor{} ({})\n{} in all",
            g.tasks,
            if g.tasks == 1 { "" } else { "s" },
            g.processors.len(),
            if g.processors.len() == 1 { "" } else { "s" },
            kinds.join(", "),
            fmt_duration(g.busy_ns)
        );
        if g.failed > 0 {
            let _ = write!(label, "\n{} failed", g.failed);
        }
        let fill = match g.kinds.iter().max_by_key(|(_, n)| **n).map(|(k, _)| *k) {
            Some("cpu") => "#e3ebf6",
            Some("gpu") => "#e2f2df",
            Some("other") => "#f5ecdc",
            _ => "#ffffff",
        };
        let style = if g.failed > 0 {
            format!("fillcolor=\"{fill}\", color=\"#d62728\", penwidth=2")
        } else {
            format!("fillcolor=\"{fill}\"")
        };
        let _ = writeln!(out, "  g{i} [label=\"{}\", {style}];", esc(&label));
    }
    if edges.keys().any(|(from, _)| from.is_none()) {
        out.push_str("  outside [label=\"tasks not in the log\", style=\"rounded,dashed\"];\n");
    }
    for ((from, to), (n, bytes)) in &edges {
        let from = from.map_or("outside".to_owned(), |f| format!("g{f}"));
        let mut label = format!("×{n}");
        if *bytes > 0 {
            let _ = write!(label, ", {}", fmt_bytes(*bytes));
        }
        let _ = writeln!(out, "  {from} -> g{to} [label=\"{}\"];", esc(&label));
    }
    out.push_str("}\n");
    out
}

/// The values of `v` without repeats, in order.
fn distinct(v: &[u64]) -> Vec<u64> {
    let mut out: Vec<u64> = Vec::with_capacity(v.len());
    for &x in v {
        if !out.contains(&x) {
            out.push(x);
        }
    }
    out
}

/// `s` escaped for a double-quoted DOT string, with line breaks as `\n`.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            '\r' => {}
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::testlog::*;
    use super::*;

    /// Node statements (`tN [...]`) and edge statements (`tA -> tB ...`).
    fn statements(dot: &str) -> (Vec<&str>, Vec<&str>) {
        assert!(dot.starts_with("digraph run {\n") && dot.ends_with("}\n"));
        let body: Vec<&str> = dot.lines().map(str::trim).collect();
        let nodes = body
            .iter()
            .copied()
            .filter(|l| l.starts_with('t') && !l.contains(" -> "))
            .collect();
        let edges = body
            .iter()
            .copied()
            .filter(|l| l.contains(" -> "))
            .collect();
        (nodes, edges)
    }

    #[test]
    fn nodes_edges_and_move_labels_of_the_diamond() {
        let dot = run_dot(&diamond(), &procs(2));
        let (nodes, edges) = statements(&dot);
        assert_eq!(nodes.len(), 4);
        assert_eq!(edges.len(), 4);
        // The GEMM's only input took the 4 MiB move; the sum has two inputs and a move that
        // names neither, so its bytes go on the node.
        assert!(
            edges.contains(&"t1 -> t2 [label=\"4.00 MiB\"];"),
            "{edges:?}"
        );
        assert!(edges.contains(&"t1 -> t3;"));
        assert!(edges.contains(&"t2 -> t4;"));
        assert!(edges.contains(&"t3 -> t4;"));
        let sum = nodes.iter().find(|n| n.starts_with("t4 ")).unwrap();
        assert!(sum.contains("moved in 1.00 KiB"), "{sum}");
        // Labels: name, processor, duration; the failed task in red.
        let gemm = nodes.iter().find(|n| n.starts_with("t2 ")).unwrap();
        assert!(
            gemm.contains("gemm #2\\ngpu0 <lavapipe> & \\\"vulkan\\\" (1:3)\\n2.50 ms"),
            "{gemm}"
        );
        let failed: Vec<&&str> = nodes.iter().filter(|n| n.contains("#d62728")).collect();
        assert_eq!(failed.len(), 1);
        assert!(failed[0].starts_with("t3 "));
    }

    #[test]
    fn moves_that_name_their_inputs_label_those_edges() {
        let mut m = moved(3, "join", 1, 10, 20, 300);
        m.inputs = vec![2];
        let log = vec![
            task(1, "a", 1, 0, 5, &[]),
            task(2, "b", 2, 0, 8, &[]),
            m,
            task(3, "join", 1, 20, 30, &[1, 2, 2]),
        ];
        let dot = run_dot(&log, &procs(2));
        let (nodes, edges) = statements(&dot);
        assert_eq!(nodes.len(), 3);
        assert_eq!(edges, ["t1 -> t3;", "t2 -> t3 [label=\"300 B\"];"]);
    }

    #[test]
    fn a_large_run_has_one_node_per_task_and_one_edge_per_input() {
        let log = many(1000, 4, 1000);
        let dot = run_dot_tasks(&log, &procs(4));
        let (nodes, edges) = statements(&dot);
        assert_eq!(nodes.len(), 1000);
        assert_eq!(edges.len(), 996);
        // Every 10th task had a move and one input: its edge is labelled.
        let labelled = edges.iter().filter(|e| e.contains("label=")).count();
        assert_eq!(labelled, 100);
    }

    #[test]
    fn a_run_of_hundreds_of_tasks_has_one_node_per_name() {
        let log = many(600, 3, 1000);
        let dot = run_dot(&log, &procs(3));
        assert_eq!(
            dot,
            run_dot_grouped(&log, &procs(3)),
            "grouped above the limit"
        );
        let (_, edges) = statements(&dot);
        let nodes: Vec<&str> = dot
            .lines()
            .map(str::trim)
            .filter(|l| {
                l.strip_prefix('g')
                    .is_some_and(|r| r.starts_with(|c: char| c.is_ascii_digit()))
                    && !l.contains(" -> ")
            })
            .collect();
        let names: std::collections::BTreeSet<&str> = log.iter().map(|e| &*e.name).collect();
        assert!(names.len() < 20);
        assert_eq!(nodes.len(), names.len(), "{nodes:?}");
        // Every group is named, with its count; the counts add up to the tasks.
        let mut total = 0;
        for name in &names {
            let node = nodes
                .iter()
                .find(|n| n.contains(&format!("label=\"{name}\\n")))
                .unwrap_or_else(|| panic!("a node for {name}: {nodes:?}"));
            let count: usize = node
                .split("\\n")
                .nth(1)
                .unwrap()
                .split(' ')
                .next()
                .unwrap()
                .parse()
                .unwrap();
            assert_eq!(
                count,
                log.iter()
                    .filter(|e| e.kind == EventKind::Task && &*e.name == *name)
                    .count()
            );
            total += count;
        }
        assert_eq!(total, 600);
        assert!(dot.contains("label=\"600 tasks, one node per task name\""));
        // Edges: at most one per pair of names, standing for all 597 task edges.
        assert!(edges.len() <= names.len() * names.len());
        let stood_for: usize = edges
            .iter()
            .map(|e| {
                e.split("label=\"×")
                    .nth(1)
                    .unwrap()
                    .split(['"', ','])
                    .next()
                    .unwrap()
                    .parse::<usize>()
                    .unwrap()
            })
            .sum();
        assert_eq!(stood_for, 597);
        // A small run keeps one node per task.
        let small = run_dot(&diamond(), &procs(2));
        assert_eq!(statements(&small).0.len(), 4);
    }

    #[test]
    fn inputs_outside_the_log_are_dashed_nodes() {
        let log = vec![task(7, "late", 1, 0, 10, &[3])];
        let dot = run_dot(&log, &procs(1));
        let (nodes, edges) = statements(&dot);
        assert_eq!(nodes.len(), 2);
        assert_eq!(edges, ["t3 -> t7;"]);
        assert!(nodes
            .iter()
            .any(|n| n.starts_with("t3 ") && n.contains("dashed")));
    }

    #[test]
    fn labels_are_escaped() {
        let log = vec![task(1, "say \"hi\" \\ bye", 1, 0, 10, &[])];
        let dot = run_dot(&log, &procs(1));
        assert!(dot.contains("say \\\"hi\\\" \\\\ bye #1"), "{dot}");
    }
}
