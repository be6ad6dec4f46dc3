//! A progress bar on the terminal for long waits: tasks done of spawned, rate and ETA.
//!
//! Off by default; counting costs two relaxed atomic adds per task while it is on. The bar
//! is drawn on standard error, and only when standard error is a terminal.

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use super::Runtime;

#[derive(Default)]
pub(crate) struct Progress {
    pub(crate) on: AtomicBool,
    ticker: AtomicBool,
    pub(crate) spawned: AtomicU64,
    pub(crate) done: AtomicU64,
}

impl Progress {
    pub(crate) fn spawned(&self) {
        if self.on.load(Ordering::Relaxed) {
            self.spawned.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub(crate) fn finished(&self) {
        if self.on.load(Ordering::Relaxed) {
            self.done.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// One line of the bar.
pub(crate) fn render(done: u64, total: u64, rate: f64, width: usize) -> String {
    let frac = if total == 0 {
        1.0
    } else {
        done as f64 / total as f64
    };
    let filled = ((frac * width as f64).round() as usize).min(width);
    let eta = if rate > 0.0 {
        format!("{:.1}s", (total.saturating_sub(done)) as f64 / rate)
    } else {
        "?".into()
    };
    let rate = if rate >= 1e6 {
        format!("{:.1}M/s", rate / 1e6)
    } else if rate >= 1e3 {
        format!("{:.1}k/s", rate / 1e3)
    } else {
        format!("{rate:.0}/s")
    };
    format!(
        "[{}{}] {done}/{total} tasks  {rate}  ETA {eta}",
        "#".repeat(filled),
        "-".repeat(width - filled)
    )
}

pub(crate) fn set(rt: &Arc<Runtime>, on: bool) {
    rt.progress.on.store(on, Ordering::Relaxed);
    if !on || rt.progress.ticker.swap(true, Ordering::AcqRel) {
        return;
    }
    let weak: Weak<Runtime> = Arc::downgrade(rt);
    std::thread::Builder::new()
        .name("dagger-progress".into())
        .spawn(move || tick(weak))
        .expect("spawning the progress thread");
}

fn tick(rt: Weak<Runtime>) {
    let terminal = std::io::stderr().is_terminal();
    let mut shown = false;
    let mut busy_since: Option<Instant> = None;
    let mut last = (Instant::now(), 0u64);
    let mut rate = 0.0f64;
    loop {
        std::thread::sleep(Duration::from_millis(100));
        let Some(rt) = rt.upgrade() else { break };
        let p = &rt.progress;
        if !p.on.load(Ordering::Relaxed) {
            p.ticker.store(false, Ordering::Release);
            break;
        }
        let (done, total) = (
            p.done.load(Ordering::Relaxed),
            p.spawned.load(Ordering::Relaxed),
        );
        let now = Instant::now();
        let dt = now.duration_since(last.0).as_secs_f64();
        if dt > 0.0 {
            let inst = done.saturating_sub(last.1) as f64 / dt;
            rate = if rate == 0.0 {
                inst
            } else {
                0.7 * rate + 0.3 * inst
            };
        }
        last = (now, done);
        if done >= total {
            busy_since = None;
            if shown && terminal {
                eprint!("\r\x1b[2K");
                let _ = std::io::stderr().flush();
                shown = false;
            }
            continue;
        }
        let since = *busy_since.get_or_insert(now);
        if terminal && now.duration_since(since) > Duration::from_millis(300) {
            eprint!("\r\x1b[2K{}", render(done, total, rate, 30));
            let _ = std::io::stderr().flush();
            shown = true;
        }
    }
    if shown && terminal {
        eprint!("\r\x1b[2K");
    }
}

#[cfg(test)]
mod tests {
    use super::render;

    #[test]
    fn bar_shows_fraction_rate_and_eta() {
        let s = render(50, 100, 25.0, 10);
        assert!(s.starts_with("[#####-----]"), "{s}");
        assert!(s.contains("50/100 tasks"));
        assert!(s.contains("25/s"));
        assert!(s.contains("ETA 2.0s"));
        assert!(render(0, 0, 0.0, 4).starts_with("[####]"));
        assert!(render(1, 10, 2500.0, 4).contains("2.5k/s"));
    }
}
