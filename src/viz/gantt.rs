//! A Gantt chart of a run as an SVG image.

use std::collections::HashMap;
use std::fmt::Write as _;

use super::{end_ns, fmt_duration, fmt_percent, lanes_with_idle, span, Lane, LogEvent};
use crate::log::EventKind;
use crate::processor::ProcessorInfo;

/// Width of the image when the lane labels fit in [`LABEL_W`]; longer labels widen it.
const WIDTH: f64 = 1200.0;
/// Least width of the lane labels on the left; it grows to fit the longest label.
const LABEL_W: f64 = 190.0;
/// Bars get their task's name written in them when it fits with this much room.
const BAR_LABEL_PAD: f64 = 6.0;
/// Margin on the right of the plot.
const RIGHT: f64 = 24.0;
/// Height of one row of task bars.
const ROW_H: f64 = 20.0;
/// Height of the strip of data moves at the bottom of a lane.
const MOVE_H: f64 = 6.0;
/// Padding above and below the bars of a lane.
const LANE_PAD: f64 = 4.0;
/// A lane draws overlapping tasks on at most this many rows.
const MAX_ROWS: usize = 4;
/// Bars narrower than this (in px) are merged with their neighbours.
const MIN_BAR_PX: f64 = 1.0;
/// Tiny bars closer than this (in px) go into the same merged block.
const MERGE_GAP_PX: f64 = 2.0;
/// A merged block is cut when it grows wider than this (in px), so colours still change
/// along a dense stretch.
const MAX_BLOCK_PX: f64 = 8.0;
/// How many task names get their own colour.
const LEGEND_NAMES: usize = 12;
/// Line height of small text.
const LINE_H: f64 = 16.0;

/// Colours for the task names with the most total time, in that order.
const PALETTE: [&str; LEGEND_NAMES] = [
    "#4e79a7", "#f28e2b", "#59a14f", "#b07aa1", "#76b7b2", "#edc948", "#ff9da7", "#9c755f",
    "#a0cbe8", "#8cd17d", "#ffbe7d", "#d4a6c8",
];
/// Colour of the task names past the palette.
const OTHER: &str = "#bab0ac";
/// Colour of data moves.
const MOVE: &str = "#263238";
/// Outline of failed tasks.
const FAILED: &str = "#d62728";

/// A Gantt chart of a run as a standalone SVG document, about 1200 px wide.
///
/// One lane per processor of `procs` that runs tasks, in that order, and per processor that
/// appears in `events` — so a processor that was offered but got no work has an idle lane
/// that says so (and, when it is not in the default scope, that this is why). Lanes are
/// labelled with the processor's full description (for a GPU, its adapter and backend,
/// e.g. `vulkan` or `gl`), identifier and utilization; the label column is as wide as the
/// longest label. Task bars are coloured by task name and carry the name where it fits; the
/// legend lists the twelve names with the most total time, each with its busy time summed
/// over all its tasks (a note above the entries says so), and groups the rest as "other".
/// Data moves are dark bars along the bottom edge of the lane of the processor they moved
/// into. Failed tasks have a red outline. Tasks that overlap on one processor are drawn on
/// extra rows of its lane. The title line gives `title`, the wall time of the run and the
/// utilization of each processor (busy time over the span of the run).
///
/// Bars narrower than a pixel are merged with their neighbours into blocks whose colour is
/// the name with the most time in the block and whose opacity is the fraction of it that
/// was busy, so a run of thousands of tiny tasks stays small and readable. Hovering a bar
/// in a browser shows the task's name, id and duration.
///
/// ```
/// use dagger::prelude::*;
///
/// let ctx = Context::builder().threads(2).build()?;
/// ctx.enable_logging();
/// let tasks: Vec<_> = (0..8).map(|i| ctx.spawn(|x: i64| x * x, (i,))).collect();
/// for t in &tasks {
///     t.wait();
/// }
/// let svg = dagger::viz::gantt_svg(&ctx.fetch_logs(), &ctx.processors(), "squares");
/// assert!(svg.starts_with("<svg") && svg.contains("squares"));
/// // std::fs::write("gantt.svg", svg)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn gantt_svg(events: &[LogEvent], procs: &[ProcessorInfo], title: &str) -> String {
    let lanes = lanes_with_idle(events, procs);
    let (t0, t1) = span(events);
    let span_ns = t1 - t0;
    let plot_w = WIDTH - LABEL_W - RIGHT;
    // The label column fits the longest label, uncut; the plot keeps its width.
    let label_w = lanes
        .iter()
        .map(|l| text_width(&l.description()) + 24.0)
        .fold(LABEL_W, f64::max)
        .ceil();
    let width = label_w + plot_w + RIGHT;
    let x_of = |ns: u64| label_w + (ns - t0) as f64 / span_ns.max(1) as f64 * plot_w;
    let colours = Colours::new(events);

    let mut svg = String::new();
    let mut y;

    // Title: name, wall time, and the utilization of each processor, wrapped.
    let utilization: Vec<(String, f64)> = lanes
        .iter()
        .map(|l| (l.description(), l.busy_ns() as f64 / span_ns.max(1) as f64))
        .collect();
    let tasks = lanes.iter().map(|l| l.tasks.len()).sum::<usize>();
    let idle = lanes.iter().filter(|l| l.tasks.is_empty()).count();
    let mut head = String::new();
    if !title.is_empty() {
        let _ = write!(
            head,
            "<tspan font-weight=\"bold\">{}</tspan> — ",
            esc(title)
        );
    }
    let _ = write!(
        head,
        "wall time {} · {} tasks on {} processors",
        fmt_duration(span_ns),
        tasks,
        lanes.len() - idle
    );
    if idle > 0 {
        let _ = write!(head, " · {idle} offered but idle");
    }
    let mut body = String::new();
    let _ = writeln!(
        body,
        "<text x=\"12\" y=\"24\" font-size=\"15\">{head}</text>"
    );
    y = 24.0;
    let mut line = String::from("utilization:");
    let mut lines = Vec::new();
    for (name, u) in &utilization {
        let item = format!(" {} {}", name, fmt_percent(*u));
        if text_width(&line) + text_width(&item) + 12.0 > width - 24.0 {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() && !line.ends_with(':') {
            line.push_str(" ·");
        }
        line.push_str(&item);
    }
    if !lanes.is_empty() {
        lines.push(line);
    }
    for l in &lines {
        y += LINE_H + 2.0;
        let _ = writeln!(
            body,
            "<text x=\"12\" y=\"{y:.0}\" font-size=\"12\" fill=\"#444\">{}</text>",
            esc(l.trim())
        );
    }

    // Lanes.
    let top = y + 14.0;
    y = top;
    let mut lane_svg = String::new();
    let mut backgrounds = String::new();
    for (i, lane) in lanes.iter().enumerate() {
        let rows = rows(&lane.tasks);
        let n_rows = rows.iter().map(|r| r + 1).max().unwrap_or(1);
        let h = 2.0 * LANE_PAD + n_rows as f64 * ROW_H + MOVE_H;
        let is_idle = lane.tasks.is_empty() && lane.moves.is_empty();
        let _ = writeln!(
            lane_svg,
            "<g class=\"lane\" id=\"lane-{}-{}\" data-processor=\"{}\"{}>",
            lane.id.process(),
            lane.id.index(),
            lane.id,
            if is_idle { " data-idle=\"true\"" } else { "" }
        );
        let _ = writeln!(lane_svg, "<title>{}</title>", esc(&lane.label()));
        let bg = if i % 2 == 0 { "#f4f5f7" } else { "#ffffff" };
        let _ = writeln!(
            backgrounds,
            "<rect class=\"lane-bg\" x=\"0\" y=\"{y:.1}\" width=\"{width}\" height=\"{h:.1}\" fill=\"{bg}\"/>"
        );
        let label_y = y + h / 2.0 - 2.0;
        let _ = writeln!(
            lane_svg,
            "<text class=\"lane-label\" x=\"12\" y=\"{label_y:.1}\" font-size=\"12\" fill=\"#222\">{}</text>",
            esc(&lane.description())
        );
        let _ = writeln!(
            lane_svg,
            "<text x=\"12\" y=\"{:.1}\" font-size=\"10\" fill=\"#666\">{} · {} busy</text>",
            label_y + 12.0,
            lane.id,
            fmt_percent(utilization[i].1)
        );
        if is_idle {
            let why = match lane.info {
                Some(p) if !p.default_enabled => {
                    "idle: got no work (not in the default scope; a scope naming it, or enabling it, offers it work)"
                }
                _ => "idle: got no work (the scheduler placed every task elsewhere)",
            };
            let _ = writeln!(
                lane_svg,
                "<text class=\"idle-note\" x=\"{:.1}\" y=\"{:.1}\" font-size=\"11\" fill=\"#777\" font-style=\"italic\">{}</text>",
                label_w + 8.0,
                y + LANE_PAD + ROW_H / 2.0 + 4.0,
                esc(why)
            );
        }
        lane_svg.push_str(&lane_bars(lane, &rows, n_rows, y, &x_of, &colours));
        lane_svg.push_str("</g>\n");
        y += h;
    }
    let bottom = y;

    // Time axis, with grid lines behind the lanes.
    let (step, decimals) = tick_step(span_ns as f64 / 1e6);
    let mut grid = String::new();
    let mut axis = String::new();
    let _ = writeln!(
        axis,
        "<line x1=\"{label_w}\" y1=\"{bottom:.1}\" x2=\"{:.1}\" y2=\"{bottom:.1}\" stroke=\"#333\"/>",
        label_w + plot_w
    );
    let span_ms = span_ns as f64 / 1e6;
    let mut k = 0u64;
    loop {
        let ms = k as f64 * step;
        if ms > span_ms * (1.0 + 1e-9) {
            break;
        }
        let x = label_w
            + if span_ns == 0 {
                0.0
            } else {
                ms / span_ms * plot_w
            };
        let _ = writeln!(
            grid,
            "<line x1=\"{x:.1}\" y1=\"{top:.1}\" x2=\"{x:.1}\" y2=\"{bottom:.1}\" stroke=\"#d9dce1\" stroke-width=\"0.7\"/>"
        );
        let _ = writeln!(
            axis,
            "<line x1=\"{x:.1}\" y1=\"{bottom:.1}\" x2=\"{x:.1}\" y2=\"{:.1}\" stroke=\"#333\"/>",
            bottom + 5.0
        );
        let _ = writeln!(
            axis,
            "<text x=\"{x:.1}\" y=\"{:.1}\" font-size=\"11\" text-anchor=\"middle\">{ms:.decimals$}</text>",
            bottom + 18.0
        );
        k += 1;
        if span_ns == 0 {
            break;
        }
    }
    let _ = writeln!(
        axis,
        "<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"11\" text-anchor=\"end\" fill=\"#444\">time since the first event (ms)</text>",
        label_w + plot_w,
        bottom + 34.0
    );
    y = bottom + 50.0;

    // Legend, wrapped, after a note on what its totals are.
    let mut legend = String::new();
    let _ = writeln!(
        legend,
        "<text class=\"legend-note\" x=\"12\" y=\"{y:.1}\" font-size=\"12\" fill=\"#444\">Colours by task name; each total is the busy time summed over all of that name's tasks, on every processor (tasks that overlap each count).</text>"
    );
    y += LINE_H + 6.0;
    let mut x = 12.0;
    let entries = colours.legend(events);
    for (label, swatch) in &entries {
        let w = 18.0 + text_width(label) + 18.0;
        if x + w > width - 12.0 && x > 12.0 {
            x = 12.0;
            y += LINE_H + 4.0;
        }
        legend.push_str(&swatch.draw(x, y - 10.0));
        let _ = writeln!(
            legend,
            "<text x=\"{:.1}\" y=\"{y:.1}\" font-size=\"12\">{}</text>",
            x + 18.0,
            esc(label)
        );
        x += w;
    }
    let height = y + 14.0;

    let _ = writeln!(
        svg,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height:.0}\" viewBox=\"0 0 {width} {height:.0}\" font-family=\"DejaVu Sans, Helvetica, Arial, sans-serif\">"
    );
    let _ = writeln!(svg, "<title>{}</title>", esc(title));
    let _ = writeln!(
        svg,
        "<rect width=\"100%\" height=\"100%\" fill=\"#ffffff\"/>"
    );
    svg.push_str(&body);
    // Backgrounds, then grid lines, then bars, so the grid shows between bars only.
    svg.push_str(&backgrounds);
    svg.push_str(&grid);
    svg.push_str(&lane_svg);
    svg.push_str(&axis);
    svg.push_str(&legend);
    svg.push_str("</svg>\n");
    svg
}

/// Assigns each task (sorted by start) the first row where it does not overlap an earlier
/// one; past [`MAX_ROWS`] rows, the row that frees up first.
fn rows(tasks: &[&LogEvent]) -> Vec<usize> {
    let mut ends: Vec<u64> = Vec::new();
    tasks
        .iter()
        .map(|e| {
            if let Some(r) = ends.iter().position(|&end| end <= e.start_ns) {
                ends[r] = end_ns(e);
                r
            } else if ends.len() < MAX_ROWS {
                ends.push(end_ns(e));
                ends.len() - 1
            } else {
                let r = (0..ends.len()).min_by_key(|&r| ends[r]).unwrap_or(0);
                ends[r] = ends[r].max(end_ns(e));
                r
            }
        })
        .collect()
}

/// The bars of one lane whose top is at `y`.
fn lane_bars(
    lane: &Lane<'_>,
    rows: &[usize],
    n_rows: usize,
    y: f64,
    x_of: &dyn Fn(u64) -> f64,
    colours: &Colours,
) -> String {
    let mut out = String::new();
    for row in 0..n_rows {
        let bar_y = y + LANE_PAD + row as f64 * ROW_H + 1.0;
        let events = lane
            .tasks
            .iter()
            .zip(rows)
            .filter(|&(_, &r)| r == row)
            .map(|(e, _)| *e);
        draw_bars(&mut out, events, bar_y, ROW_H - 2.0, x_of, &|name| {
            colours.of(name)
        });
    }
    let move_y = y + LANE_PAD + n_rows as f64 * ROW_H + 0.5;
    draw_bars(
        &mut out,
        lane.moves.iter().copied(),
        move_y,
        MOVE_H - 1.0,
        x_of,
        &|_| MOVE,
    );
    out
}

/// Tiny bars merged into one block.
struct Block<'a> {
    x0: f64,
    x1: f64,
    busy_ns: u64,
    span_start: u64,
    span_end: u64,
    events: Vec<&'a LogEvent>,
}

/// Draws events sorted by start as bars of height `h` at `y`, merging the tiny ones.
fn draw_bars<'a>(
    out: &mut String,
    events: impl Iterator<Item = &'a LogEvent>,
    y: f64,
    h: f64,
    x_of: &dyn Fn(u64) -> f64,
    colour: &dyn Fn(&str) -> &'static str,
) {
    let mut pending: Option<Block<'a>> = None;
    for e in events {
        let (x0, x1) = (x_of(e.start_ns), x_of(end_ns(e)));
        if x1 - x0 >= MIN_BAR_PX {
            if let Some(b) = pending.take() {
                flush(out, b, y, h, colour);
            }
            bar(out, e, x0, x1 - x0, y, h, colour);
            continue;
        }
        if let Some(b) = &mut pending {
            if x0 - b.x1 <= MERGE_GAP_PX && x1.max(b.x1) - b.x0 <= MAX_BLOCK_PX {
                b.x1 = b.x1.max(x1);
                b.busy_ns += end_ns(e) - e.start_ns;
                b.span_end = b.span_end.max(end_ns(e));
                b.events.push(e);
                continue;
            }
            if let Some(b) = pending.take() {
                flush(out, b, y, h, colour);
            }
        }
        pending = Some(Block {
            x0,
            x1,
            busy_ns: end_ns(e) - e.start_ns,
            span_start: e.start_ns,
            span_end: end_ns(e),
            events: vec![e],
        });
    }
    if let Some(b) = pending {
        flush(out, b, y, h, colour);
    }
}

/// One event's bar, at least a pixel wide, with a gap before the next when there is room.
fn bar(
    out: &mut String,
    e: &LogEvent,
    x: f64,
    w: f64,
    y: f64,
    h: f64,
    colour: &dyn Fn(&str) -> &'static str,
) {
    let w = if w >= 3.0 { w - 0.6 } else { w.max(MIN_BAR_PX) };
    let stroke = if e.ok {
        String::new()
    } else {
        format!(" stroke=\"{FAILED}\" stroke-width=\"1.5\"")
    };
    let what = match e.kind {
        EventKind::Task => format!("{} #{}", e.name, e.task),
        EventKind::Move => format!(
            "move of {} for {} #{}",
            super::fmt_bytes(e.bytes_moved),
            e.name,
            e.task
        ),
        EventKind::Spill => format!(
            "spill of {} ({}) to disk",
            super::fmt_bytes(e.bytes_moved),
            e.name
        ),
        EventKind::Reload => format!(
            "reload of {} ({}) from disk",
            super::fmt_bytes(e.bytes_moved),
            e.name
        ),
        EventKind::GpuEvict => format!(
            "GPU eviction of {} ({}) to host memory",
            super::fmt_bytes(e.bytes_moved),
            e.name
        ),
    };
    let fill = colour(&e.name);
    let _ = writeln!(
        out,
        "<rect x=\"{x:.2}\" y=\"{y:.1}\" width=\"{w:.2}\" height=\"{h:.1}\" fill=\"{fill}\"{stroke}><title>{} — {}{}</title></rect>",
        esc(&what),
        fmt_duration(end_ns(e) - e.start_ns),
        if e.ok { "" } else { " (failed)" }
    );
    if e.kind == EventKind::Task && h >= 10.0 && bar_text_width(&e.name) + BAR_LABEL_PAD <= w {
        let _ = writeln!(
            out,
            "<text class=\"bar-label\" x=\"{:.2}\" y=\"{:.1}\" font-size=\"10\" fill=\"{}\" pointer-events=\"none\">{}</text>",
            x + BAR_LABEL_PAD / 2.0,
            y + h / 2.0 + 3.5,
            text_on(fill),
            esc(&e.name)
        );
    }
}

/// Black or white, whichever reads better on `fill` (a `#rrggbb` colour).
fn text_on(fill: &str) -> &'static str {
    let channel = |i: usize| {
        fill.get(i..i + 2)
            .and_then(|h| u8::from_str_radix(h, 16).ok())
            .map_or(0.0, |v| v as f64 / 255.0)
    };
    let luma = 0.299 * channel(1) + 0.587 * channel(3) + 0.114 * channel(5);
    if luma > 0.55 {
        "#111111"
    } else {
        "#ffffff"
    }
}

/// An estimate of the width of `s` in 10 px sans-serif.
fn bar_text_width(s: &str) -> f64 {
    s.chars().count() as f64 * 6.0
}

/// A merged block: coloured by the name with the most time in it, as opaque as it was busy.
fn flush(out: &mut String, b: Block<'_>, y: f64, h: f64, colour: &dyn Fn(&str) -> &'static str) {
    if let [e] = b.events[..] {
        bar(out, e, b.x0, b.x1 - b.x0, y, h, colour);
        return;
    }
    let mut by_name: HashMap<&str, u64> = HashMap::new();
    for e in &b.events {
        *by_name.entry(&e.name).or_default() += end_ns(e) - e.start_ns;
    }
    let dominant = by_name
        .iter()
        .max_by_key(|&(name, ns)| (*ns, std::cmp::Reverse(*name)))
        .map_or("", |(name, _)| name);
    let density = b.busy_ns as f64 / (b.span_end - b.span_start).max(1) as f64;
    let opacity = density.clamp(0.35, 1.0);
    let failed = b.events.iter().filter(|e| !e.ok).count();
    let stroke = if failed > 0 {
        format!(" stroke=\"{FAILED}\" stroke-width=\"1.5\"")
    } else {
        String::new()
    };
    let _ = writeln!(
        out,
        "<rect class=\"merged\" x=\"{:.2}\" y=\"{y:.1}\" width=\"{:.2}\" height=\"{h:.1}\" fill=\"{}\" fill-opacity=\"{opacity:.2}\"{stroke}><title>{} events, mostly {}, busy {} of {}{}</title></rect>",
        b.x0,
        (b.x1 - b.x0).max(MIN_BAR_PX),
        colour(dominant),
        b.events.len(),
        esc(dominant),
        fmt_duration(b.busy_ns),
        fmt_duration(b.span_end - b.span_start),
        if failed > 0 { format!(", {failed} failed") } else { String::new() }
    );
}

/// The colour of each task name: the palette in order of total time, then grey.
struct Colours {
    /// Names with their own colour, most total time first, with that time.
    top: Vec<(String, u64)>,
    by_name: HashMap<String, &'static str>,
    /// How many names share the "other" colour, and their total time.
    others: (usize, u64),
}

impl Colours {
    fn new(events: &[LogEvent]) -> Colours {
        let mut total: HashMap<&str, u64> = HashMap::new();
        for e in events.iter().filter(|e| e.kind == EventKind::Task) {
            *total.entry(&e.name).or_default() += end_ns(e) - e.start_ns;
        }
        let mut names: Vec<(&str, u64)> = total.into_iter().collect();
        names.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        let own = names.len().min(LEGEND_NAMES);
        let by_name = names
            .iter()
            .enumerate()
            .map(|(i, (n, _))| (n.to_string(), if i < own { PALETTE[i] } else { OTHER }))
            .collect();
        let others = names[own..]
            .iter()
            .fold((0, 0), |(n, t), x| (n + 1, t + x.1));
        Colours {
            top: names[..own]
                .iter()
                .map(|(n, t)| (n.to_string(), *t))
                .collect(),
            by_name,
            others,
        }
    }

    fn of(&self, name: &str) -> &'static str {
        self.by_name.get(name).copied().unwrap_or(OTHER)
    }

    /// Legend entries: each coloured name with its total time, "other", data moves, and
    /// failures when there were any.
    fn legend(&self, events: &[LogEvent]) -> Vec<(String, Swatch)> {
        let mut v: Vec<(String, Swatch)> = self
            .top
            .iter()
            .map(|(n, t)| {
                (
                    format!("{n} ({})", fmt_duration(*t)),
                    Swatch::Fill(self.of(n)),
                )
            })
            .collect();
        if self.others.0 > 0 {
            v.push((
                format!(
                    "other: {} names ({})",
                    self.others.0,
                    fmt_duration(self.others.1)
                ),
                Swatch::Fill(OTHER),
            ));
        }
        let moves: Vec<&LogEvent> = events
            .iter()
            .filter(|e| e.kind == EventKind::Move)
            .collect();
        if !moves.is_empty() {
            let bytes = moves.iter().map(|e| e.bytes_moved).sum();
            v.push((
                format!("data move ({}, {})", moves.len(), super::fmt_bytes(bytes)),
                Swatch::Move,
            ));
        }
        let failed = events.iter().filter(|e| !e.ok).count();
        if failed > 0 {
            v.push((format!("failed ({failed})"), Swatch::Failed));
        }
        v
    }
}

/// The little picture before a legend entry.
enum Swatch {
    Fill(&'static str),
    Move,
    Failed,
}

impl Swatch {
    fn draw(&self, x: f64, y: f64) -> String {
        match self {
            Swatch::Fill(c) => format!(
                "<rect class=\"swatch\" x=\"{x:.1}\" y=\"{y:.1}\" width=\"12\" height=\"12\" fill=\"{c}\"/>\n"
            ),
            Swatch::Move => format!(
                "<rect class=\"swatch\" x=\"{x:.1}\" y=\"{:.1}\" width=\"12\" height=\"{:.0}\" fill=\"{MOVE}\"/>\n",
                y + 12.0 - (MOVE_H - 1.0),
                MOVE_H - 1.0
            ),
            Swatch::Failed => format!(
                "<rect class=\"swatch\" x=\"{:.1}\" y=\"{:.1}\" width=\"11\" height=\"11\" fill=\"#ffffff\" stroke=\"{FAILED}\" stroke-width=\"1.5\"/>\n",
                x + 0.5,
                y + 0.5
            ),
        }
    }
}

/// A tick spacing from the 1-2-5 sequence giving at most about ten ticks over `span_ms`,
/// and the decimals its labels need.
fn tick_step(span_ms: f64) -> (f64, usize) {
    if span_ms <= 0.0 || !span_ms.is_finite() {
        return (1.0, 0);
    }
    let raw = span_ms / 10.0;
    let magnitude = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * magnitude)
        .find(|&s| s >= raw * (1.0 - 1e-9))
        .unwrap_or(10.0 * magnitude);
    let decimals = (-step.log10().floor()).max(0.0) as usize;
    (step, decimals)
}

/// An estimate of the width of `s` in 12 px sans-serif.
fn text_width(s: &str) -> f64 {
    s.chars().count() as f64 * 6.8
}

/// `s` escaped for XML text and attribute values. Characters XML 1.0 does not allow at
/// all, even as character references, become U+FFFD.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c if !is_xml_char(c) => out.push('\u{fffd}'),
            c => out.push(c),
        }
    }
    out
}

/// Whether XML 1.0 allows `c` in a document (its `Char` production; a Rust `char` is never
/// a surrogate, so what remains to exclude are the C0 controls other than tab, line feed and
/// carriage return, and U+FFFE and U+FFFF).
fn is_xml_char(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{fffd}' | '\u{10000}'..)
}

#[cfg(test)]
mod tests {
    use super::super::testlog::*;
    use super::*;

    /// A small XML well-formedness check: balanced tags, quoted attributes, known entities,
    /// no stray `<` or `&`. Returns the start tags as (name, attributes).
    fn check_xml(doc: &str) -> Vec<(String, Vec<(String, String)>)> {
        let mut tags = Vec::new();
        let mut stack: Vec<String> = Vec::new();
        let mut rest = doc;
        let check_text = |t: &str| {
            let mut s = t;
            while let Some(i) = s.find('&') {
                let after = &s[i + 1..];
                let end = after.find(';').expect("entity ends with ;");
                let name = &after[..end];
                assert!(
                    ["amp", "lt", "gt", "quot", "apos"].contains(&name),
                    "unknown entity &{name};"
                );
                s = &after[end + 1..];
            }
            assert!(!t.contains('<'), "stray < in {t:?}");
        };
        while let Some(open) = rest.find('<') {
            check_text(&rest[..open]);
            let close = rest[open..].find('>').expect("tag ends") + open;
            let tag = &rest[open + 1..close];
            rest = &rest[close + 1..];
            if let Some(name) = tag.strip_prefix('/') {
                assert_eq!(stack.pop().as_deref(), Some(name), "mismatched </{name}>");
                continue;
            }
            let self_closing = tag.ends_with('/');
            let tag = tag.trim_end_matches('/');
            let (name, mut attrs_src) = tag.split_once(' ').unwrap_or((tag, ""));
            assert!(
                !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'),
                "bad tag name {name:?}"
            );
            let mut attrs = Vec::new();
            loop {
                attrs_src = attrs_src.trim_start();
                if attrs_src.is_empty() {
                    break;
                }
                let (key, after) = attrs_src.split_once("=\"").expect("attribute=\"value\"");
                assert!(
                    !key.contains(' ') && !key.is_empty(),
                    "bad attribute {key:?}"
                );
                let end = after.find('"').expect("attribute value ends");
                let value = &after[..end];
                check_text(value);
                assert!(
                    !attrs.iter().any(|(k, _)| k == key),
                    "duplicate attribute {key}"
                );
                attrs.push((key.to_owned(), value.to_owned()));
                attrs_src = &after[end + 1..];
            }
            tags.push((name.to_owned(), attrs));
            if !self_closing {
                stack.push(name.to_owned());
            }
        }
        check_text(rest);
        assert!(rest.trim().is_empty(), "text after the root element");
        assert!(stack.is_empty(), "unclosed {stack:?}");
        assert_eq!(tags.first().map(|t| t.0.as_str()), Some("svg"));
        tags
    }

    fn count(tags: &[(String, Vec<(String, String)>)], name: &str, class: Option<&str>) -> usize {
        tags.iter()
            .filter(|(n, attrs)| {
                n == name && class.is_none_or(|c| attrs.iter().any(|(k, v)| k == "class" && v == c))
            })
            .count()
    }

    #[test]
    fn characters_xml_forbids_are_replaced() {
        assert_eq!(
            esc("a\u{0}\u{1}\u{1f}\u{fffe}\u{ffff}b"),
            "a\u{fffd}\u{fffd}\u{fffd}\u{fffd}\u{fffd}b"
        );
        // Allowed: tab, line breaks, U+FFFD itself, and everything above the BMP.
        for ok in [
            "\t\n\r",
            "\u{20}\u{d7ff}\u{e000}\u{fffd}",
            "\u{10000}\u{1fffe}\u{10ffff}",
        ] {
            assert_eq!(esc(ok), ok);
        }
    }

    #[test]
    fn the_checker_rejects_broken_xml() {
        for bad in [
            "<svg><g></svg>",
            "<svg><text>a & b</text></svg>",
            "<svg><text>a < b</text></svg>",
            "<svg x=\"1\" x=\"2\"></svg>",
            "<svg><rect x=1/></svg>",
        ] {
            assert!(
                std::panic::catch_unwind(|| check_xml(bad)).is_err(),
                "{bad}"
            );
        }
        check_xml("<svg a=\"&amp;\"><text>&lt;ok&gt;</text><rect/></svg>");
    }

    #[test]
    fn one_lane_per_processor_that_ran_something() {
        let procs = procs(2); // the diamond uses both threads and the GPU, not the OS processor
        let svg = gantt_svg(&diamond(), &procs, "diamond <run> & \"friends\"");
        let tags = check_xml(&svg);
        assert_eq!(count(&tags, "g", Some("lane")), 3);
        for id in ["lane-1-1", "lane-1-2", "lane-1-3"] {
            assert!(svg.contains(&format!("id=\"{id}\"")), "{id}");
        }
        assert!(!svg.contains("lane-1-0"));
        // Text that needs escaping is escaped, in the title and in the labels.
        assert!(svg.contains("diamond &lt;run&gt; &amp; &quot;friends&quot;"));
        assert!(svg.contains("gpu0 &lt;lavapipe&gt; &amp; &quot;vulkan&quot;"));
        // One bar per event: four tasks and two moves, the failed one outlined.
        let bars = tags
            .iter()
            .filter(|(n, attrs)| n == "rect" && attrs.iter().all(|(k, _)| k != "class"))
            .count();
        assert_eq!(bars, 1 + 6, "background and one bar per event");
        assert_eq!(
            svg.matches("stroke=\"#d62728\"").count(),
            2,
            "bar and legend"
        );
        assert!(svg.contains("data move (2, 4.00 MiB)"));
        assert!(svg.contains("failed (1)"));
        // The title line has the wall time and each processor's utilization.
        assert!(svg.contains("wall time 5.00 ms"));
        assert!(svg.contains("cpu thread 0 36.0%"), "t0 busy 1.8 of 5 ms");
        assert!(svg.contains("cpu thread 1 40.0%"));
    }

    #[test]
    fn thousands_of_tiny_tasks_are_merged() {
        let log = many(5000, 3, 2_000);
        let svg = gantt_svg(&log, &procs(3), "tiny");
        let tags = check_xml(&svg);
        let rects = count(&tags, "rect", None);
        assert!(rects < 2000, "{rects} rects for {} events", log.len());
        assert!(count(&tags, "rect", Some("merged")) > 0);
        assert_eq!(
            count(&tags, "g", Some("lane")),
            4,
            "three threads and the idle GPU"
        );
        // Merged blocks cover the lane: their total width is most of the plot.
        let width: f64 = tags
            .iter()
            .filter(|(n, _)| n == "rect")
            .filter_map(|(_, attrs)| {
                let get = |k: &str| attrs.iter().find(|(a, _)| a == k).map(|(_, v)| v.as_str());
                (get("class") == Some("merged") && get("height") == Some("18.0"))
                    .then(|| get("width").unwrap().parse::<f64>().unwrap())
            })
            .sum();
        assert!(width > 0.8 * 3.0 * (WIDTH - LABEL_W - RIGHT), "{width}");
    }

    #[test]
    fn wide_bars_are_not_merged() {
        let log = many(60, 3, 2_000_000);
        let svg = gantt_svg(&log, &procs(3), "wide");
        let tags = check_xml(&svg);
        assert_eq!(count(&tags, "rect", Some("merged")), 0);
        // The background and one bar per event; lane backgrounds and swatches have a class.
        let plain = tags
            .iter()
            .filter(|(n, attrs)| n == "rect" && attrs.iter().all(|(k, _)| k != "class"))
            .count();
        assert_eq!(plain, 1 + log.len());
    }

    #[test]
    fn legend_lists_twelve_names_then_other() {
        let log = many(600, 2, 100_000);
        let svg = gantt_svg(&log, &procs(2), "");
        let tags = check_xml(&svg);
        let swatches = count(&tags, "rect", Some("swatch"));
        assert_eq!(swatches, 12 + 1 + 1, "12 names, other, data move");
        assert!(svg.contains("other: 3 names"));
    }

    #[test]
    fn overlapping_tasks_get_their_own_rows() {
        let log = vec![task(1, "a", 3, 0, 100, &[]), task(2, "b", 3, 50, 150, &[])];
        let tasks: Vec<&LogEvent> = log.iter().collect();
        assert_eq!(rows(&tasks), [0, 1]);
        let svg = gantt_svg(&log, &procs(2), "");
        check_xml(&svg);
        let h = 2.0 * LANE_PAD + 2.0 * ROW_H + MOVE_H;
        assert!(svg.contains(&format!("height=\"{h:.1}\" fill=\"#f4f5f7\"")));
    }

    #[test]
    fn ticks_follow_one_two_five() {
        assert_eq!(tick_step(10.0), (1.0, 0));
        assert_eq!(tick_step(15.0), (2.0, 0));
        assert_eq!(tick_step(43.0), (5.0, 0));
        assert_eq!(tick_step(100.0), (10.0, 0));
        assert_eq!(tick_step(0.7).1, 1);
        assert!((tick_step(0.7).0 - 0.1).abs() < 1e-12);
        assert!((tick_step(0.03).0 - 0.005).abs() < 1e-12);
        assert_eq!(tick_step(0.0), (1.0, 0));
    }

    #[test]
    fn an_empty_log_is_still_an_image() {
        let svg = gantt_svg(&[], &procs(2), "nothing");
        let tags = check_xml(&svg);
        assert_eq!(
            count(&tags, "g", Some("lane")),
            3,
            "every processor offered, all idle"
        );
        assert_eq!(svg.matches("data-idle=\"true\"").count(), 3);
        assert_eq!(
            gantt_svg(&[], &[], "nothing")
                .matches("class=\"lane\"")
                .count(),
            0
        );
    }

    /// The chart parsed as XML, with the lanes as (processor, idle, label, idle note).
    fn parsed_lanes(svg: &str) -> Vec<(String, bool, String, Option<String>)> {
        let doc = roxmltree::Document::parse(svg).expect("well-formed SVG");
        let class = |n: &roxmltree::Node<'_, '_>, c: &str| n.attribute("class") == Some(c);
        doc.descendants()
            .filter(|n| n.has_tag_name("g") && class(n, "lane"))
            .map(|g| {
                let text = |c: &str| {
                    g.children()
                        .find(|n| n.has_tag_name("text") && class(n, c))
                        .and_then(|n| n.text())
                        .map(str::to_owned)
                };
                (
                    g.attribute("data-processor").unwrap().to_owned(),
                    g.attribute("data-idle") == Some("true"),
                    text("lane-label").expect("every lane has a label"),
                    text("idle-note"),
                )
            })
            .collect()
    }

    #[test]
    fn every_processor_offered_has_a_lane_and_idle_ones_say_why() {
        let mut procs = procs(3);
        let gpu = procs.last_mut().unwrap();
        gpu.description = "gpu 0 llvmpipe (LLVM 15.0.6, 256 bits) (gl, software)".into();
        // Thread 0 and thread 2 work; thread 1 (in the default scope) and the GPU (not in
        // it) get nothing.
        let log = vec![
            task(1, "load", 1, 0, 1_000_000, &[]),
            task(2, "gemm", 3, 0, 2_000_000, &[]),
        ];
        let svg = gantt_svg(&log, &procs, "idle lanes");
        let lanes = parsed_lanes(&svg);
        let ids: Vec<&str> = lanes.iter().map(|l| l.0.as_str()).collect();
        assert_eq!(
            ids,
            ["1:1", "1:2", "1:3", "1:4"],
            "the OS processor runs nothing"
        );
        let idle: Vec<bool> = lanes.iter().map(|l| l.1).collect();
        assert_eq!(idle, [false, true, false, true]);
        assert_eq!(lanes[0].3, None);
        let t1 = lanes[1].3.as_deref().unwrap();
        assert!(
            t1.starts_with("idle: got no work") && t1.contains("placed every task elsewhere"),
            "{t1}"
        );
        let g = lanes[3].3.as_deref().unwrap();
        assert!(g.contains("not in the default scope"), "{g}");
        // The full label, with the backend, uncut; the label column widened to fit it.
        assert_eq!(
            lanes[3].2,
            "gpu 0 llvmpipe (LLVM 15.0.6, 256 bits) (gl, software)"
        );
        assert_eq!(lanes[0].2, "cpu thread 0");
        assert!(
            svg.contains("2 tasks on 2 processors · 2 offered but idle"),
            "{svg}"
        );
        let doc = roxmltree::Document::parse(&svg).unwrap();
        let width: f64 = doc
            .root_element()
            .attribute("width")
            .unwrap()
            .parse()
            .unwrap();
        assert!(width >= WIDTH, "{width}");
    }

    #[test]
    fn a_long_label_widens_the_chart_instead_of_being_cut() {
        let mut procs = procs(1);
        let long = format!("gpu 0 {} (vulkan)", "a very long adapter name ".repeat(4));
        procs.last_mut().unwrap().description = long.clone();
        let log = vec![task(1, "gemm", 1, 0, 1_000_000, &[])];
        let svg = gantt_svg(&log, &procs, "long");
        let lanes = parsed_lanes(&svg);
        assert_eq!(lanes[1].2, long.as_str());
        assert!(lanes[1].1, "the GPU is idle");
        let doc = roxmltree::Document::parse(&svg).unwrap();
        let width: f64 = doc
            .root_element()
            .attribute("width")
            .unwrap()
            .parse()
            .unwrap();
        assert!(width > WIDTH + text_width(&long) - LABEL_W - 1.0, "{width}");
        // The plot keeps its width: a bar from 0 to the end spans it.
        let bar = doc
            .descendants()
            .find(|n| {
                n.has_tag_name("rect")
                    && n.children()
                        .any(|t| t.text().is_some_and(|t| t.starts_with("gemm #1")))
            })
            .unwrap();
        let w: f64 = bar.attribute("width").unwrap().parse().unwrap();
        assert!((w - (WIDTH - LABEL_W - RIGHT)).abs() < 1.0, "{w}");
    }

    #[test]
    fn bars_carry_their_names_where_they_fit() {
        // One long task and a short one on the same thread: 1 ms of 100 ms is under 10 px.
        let log = vec![
            task(1, "a long task name", 1, 0, 99_000_000, &[]),
            task(2, "short", 1, 99_000_000, 100_000_000, &[]),
        ];
        let svg = gantt_svg(&log, &procs(1), "labels");
        let doc = roxmltree::Document::parse(&svg).unwrap();
        let labels: Vec<&str> = doc
            .descendants()
            .filter(|n| n.has_tag_name("text") && n.attribute("class") == Some("bar-label"))
            .filter_map(|n| n.text())
            .collect();
        assert_eq!(labels, ["a long task name"]);
        // Hovering still names both.
        assert!(svg.contains("<title>short #2"));
    }

    #[test]
    fn the_legend_says_its_totals_are_summed_busy_time() {
        let svg = gantt_svg(&diamond(), &procs(2), "legend");
        let doc = roxmltree::Document::parse(&svg).unwrap();
        let note = doc
            .descendants()
            .find(|n| n.attribute("class") == Some("legend-note"))
            .and_then(|n| n.text())
            .expect("a note on the legend");
        assert!(
            note.contains("busy time summed over all of that name's tasks"),
            "{note}"
        );
        // And the totals are those sums: gemm ran 2.5 ms.
        let entries: Vec<&str> = doc
            .descendants()
            .filter(|n| n.has_tag_name("text"))
            .filter_map(|n| n.text())
            .collect();
        assert!(entries.contains(&"gemm (2.50 ms)"), "{entries:?}");
    }
}
