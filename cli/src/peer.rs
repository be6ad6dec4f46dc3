//! Python peers kept running beside a benchmark, their runs alternating with its own.
//!
//! On a shared machine the speed drifts by tens of percent within seconds, so two sides
//! timed one after the other can meet different loads, and their ratio then measures the
//! drift as much as the code. A peer here is a script of `benches/peers/` started with
//! `--serve` (a [`Session`]): it makes its data, warms up and prints `{"ready": true}`, then
//! answers each line `run` it reads with one JSON line, the timing of a run.
//! [`Peers::alternate`] runs one of the benchmark's own runs and then one run of each peer,
//! as many times as asked, and each side reports its best.
//!
//! Each side's timed run comes right after an untimed run of its own (the peer scripts make
//! one before each timed run, and `alternate` before each of ours), as in a loop of runs.
//! This VM's kernel reports memory freed to it to the host within seconds (free page
//! reporting), and touching it again then costs a fault on the host: a side that allocates
//! its result anew each run (numpy does, 128 MiB for a 4096² `f64` product) found its
//! memory cold after the other side's run, while dagger's allocator keeps what it freed.
//! Timed straight after the other side, OpenBLAS reached 136–145 GFLOP/s for that product
//! and 54–78 for an LU of the same size; after a run of its own, 163–168 and 84–85, as when
//! it runs alone.

use std::path::PathBuf;
use std::time::Duration;

use super::python::{PythonArgs, Session};

/// The pause before each timed run when runs alternate with a peer's: threads of the side
/// that ran last (OpenBLAS's, dask's, ours) spin for a while before they sleep, and would
/// otherwise take cycles from the side that runs next.
const PAUSE: Duration = Duration::from_millis(300);

/// Whether a run of ours is timed, or only warms up for the timed one after it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Timed {
    /// The run counts: its time is kept if it is the best.
    Yes,
    /// The run only warms up.
    No,
}

/// Which field of a peer's answers is kept, and which of its values is the best.
#[derive(Clone, Copy)]
pub(crate) enum Best {
    /// The largest value of the field (a rate, such as `gflops`).
    Highest(&'static str),
    /// The smallest value of the field (a time, such as `secs`).
    Lowest(&'static str),
}

impl Best {
    fn field(self) -> &'static str {
        match self {
            Best::Highest(f) | Best::Lowest(f) => f,
        }
    }

    fn of(self, a: f64, b: f64) -> f64 {
        match self {
            Best::Highest(_) => a.max(b),
            Best::Lowest(_) => a.min(b),
        }
    }
}

/// One peer script in `--serve` mode.
struct Peer {
    name: &'static str,
    session: Option<Session>,
    keep: Best,
    /// The best run so far.
    best: Option<f64>,
}

impl Peer {
    /// Times one run; a peer that fails is noted, loses the runs it made, and is not asked
    /// again.
    fn run(&mut self) {
        let Some(session) = self.session.as_mut() else {
            return;
        };
        let field = self.keep.field();
        let value = session.call("run").and_then(|v| {
            v[field]
                .as_f64()
                .ok_or_else(|| format!("a line without `{field}`: {v}"))
        });
        match value {
            Ok(x) => self.best = Some(self.best.map_or(x, |b| self.keep.of(b, x))),
            Err(e) => {
                eprintln!("note: the {} peer stopped: {e}", self.name);
                self.session = None;
                self.best = None;
            }
        }
    }
}

/// The peers of one benchmark run (none when they were not asked for, or cannot run).
pub(crate) struct Peers {
    python: Option<PathBuf>,
    peers: Vec<Peer>,
}

impl Peers {
    /// No peers unless `wanted`; then the interpreter `python` names, or a note that the
    /// peers will not run.
    pub(crate) fn new(wanted: bool, python: &PythonArgs) -> Self {
        let python = if wanted {
            python
                .interpreter()
                .map_err(|e| eprintln!("note: the peers did not run: {e}"))
                .ok()
        } else {
            None
        };
        Self {
            python,
            peers: Vec::new(),
        }
    }

    /// Whether peers may be started (they were asked for and there is an interpreter).
    pub(crate) fn wanted(&self) -> bool {
        self.python.is_some()
    }

    /// Starts `script` with `args` and `--serve`, waiting until it is ready (its data made
    /// and warmed up); the field `keep` names is read from each of its answers. A peer that
    /// cannot start is noted and left out.
    pub(crate) fn start(&mut self, name: &'static str, script: &str, args: &[String], keep: Best) {
        let Some(python) = self.python.as_deref() else {
            return;
        };
        let mut argv = args.to_vec();
        argv.push("--serve".to_string());
        match Session::start(python, script, &argv) {
            Ok(session) => self.peers.push(Peer {
                name,
                session: Some(session),
                keep,
                best: None,
            }),
            Err(e) => eprintln!("note: the {name} peer did not run: {e}"),
        }
    }

    /// Runs `ours` `repeat` times (at least once), each time followed by one run of each
    /// peer, with a pause before every run when there are peers. `ours` is told whether
    /// its run is timed: with peers, each timed run of ours comes right after an untimed
    /// one, as each of theirs does (see the module's documentation).
    pub(crate) fn alternate<E>(
        &mut self,
        repeat: usize,
        mut ours: impl FnMut(Timed) -> Result<(), E>,
    ) -> Result<(), E> {
        for _ in 0..repeat.max(1) {
            if !self.peers.is_empty() {
                // The peers' threads spin for a moment after a run: let them stop.
                std::thread::sleep(PAUSE);
                ours(Timed::No)?;
            }
            ours(Timed::Yes)?;
            for peer in &mut self.peers {
                // Our workers, too, spin for a moment before they sleep.
                std::thread::sleep(PAUSE);
                peer.run();
            }
        }
        Ok(())
    }

    /// The best run of the peer `name`, if it started and every run asked of it succeeded.
    pub(crate) fn best(&self, name: &str) -> Option<f64> {
        self.peers
            .iter()
            .find(|p| p.name == name)
            .and_then(|p| p.best)
    }
}

#[cfg(test)]
mod tests {
    use super::{Best, Peer, Peers, Timed};

    fn runs_of_ours(peers: &mut Peers, repeat: usize) -> Vec<Timed> {
        let mut runs = Vec::new();
        peers
            .alternate(repeat, |timed| {
                runs.push(timed);
                Ok::<(), ()>(())
            })
            .unwrap();
        runs
    }

    #[test]
    fn with_peers_each_timed_run_of_ours_follows_an_untimed_one() {
        let mut alone = Peers {
            python: None,
            peers: Vec::new(),
        };
        assert_eq!(runs_of_ours(&mut alone, 2), [Timed::Yes, Timed::Yes]);
        // A peer that stopped still alternates (its runs are skipped).
        let mut beside = Peers {
            python: None,
            peers: vec![Peer {
                name: "stopped",
                session: None,
                keep: Best::Highest("gflops"),
                best: None,
            }],
        };
        assert_eq!(
            runs_of_ours(&mut beside, 2),
            [Timed::No, Timed::Yes, Timed::No, Timed::Yes]
        );
    }
}
