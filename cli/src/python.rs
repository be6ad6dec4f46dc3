//! Running the Python peers of the benchmarks (`benches/peers/`, embedded in the binary).
//!
//! The interpreter is chosen explicitly: `--python PATH`, else `$DAGGER_PYTHON`, else
//! `python3` from the absolute directories of `PATH` (never the current directory). It runs
//! in isolated mode (`-I`), so nothing in the current directory or the user's site-packages
//! is imported and the `PYTHON*` environment variables are ignored: a `numpy.py` lying in
//! the directory the benchmark was started from is never executed.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::Duration;

/// How long a peer session may take to answer one command (its first answer includes
/// making its data): `$DAGGER_PEER_TIMEOUT` seconds, 600 by default. One that takes longer
/// is stopped and the benchmark goes on without it.
fn answer_limit() -> Duration {
    let secs = std::env::var("DAGGER_PEER_TIMEOUT")
        .ok()
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s > 0.0)
        .unwrap_or(600.0);
    Duration::from_secs_f64(secs)
}

/// The environment variable that names the interpreter when `--python` is not given.
const ENV: &str = "DAGGER_PYTHON";

/// The interpreter option every benchmark with Python peers takes.
#[derive(clap::Args)]
pub(crate) struct PythonArgs {
    /// The Python interpreter for the peers (default: $DAGGER_PYTHON, else `python3` from
    /// the absolute directories of PATH). It runs isolated (`python -I`): no current
    /// directory or user site-packages on sys.path, PYTHON* variables ignored.
    #[arg(long, value_name = "PATH")]
    python: Option<PathBuf>,
}

impl PythonArgs {
    /// The interpreter to run, resolved to a path.
    pub(crate) fn interpreter(&self) -> Result<PathBuf, String> {
        let chosen = self.python.clone().or_else(|| {
            std::env::var_os(ENV)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        });
        match chosen {
            // A bare name is looked up on PATH; anything with a directory is taken as given.
            Some(p) if p.components().count() > 1 || p.is_absolute() => Ok(p),
            Some(name) => on_path(&name)
                .ok_or_else(|| format!("no `{}` in the absolute directories of PATH", name.display())),
            None => on_path(Path::new("python3")).ok_or_else(|| {
                format!("no `python3` in the absolute directories of PATH: pass --python PATH or set {ENV}")
            }),
        }
    }
}

/// `name` in the first absolute directory of `PATH` that has it as an executable file.
/// Relative entries (`.`, the empty entry) are skipped: they mean the current directory.
fn on_path(name: &Path) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .filter(|dir| dir.is_absolute())
        .map(|dir| dir.join(name))
        .find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    let Ok(meta) = std::fs::metadata(p) else {
        return false;
    };
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        meta.is_file() && meta.permissions().mode() & 0o111 != 0
    }
    #[cfg(not(unix))]
    {
        meta.is_file()
    }
}

/// `python -I`, its three standard streams piped, without this machine's OpenBLAS tuning
/// variables (removed for the peer only); the caller adds the script and its arguments.
fn isolated(python: &Path) -> Command {
    let mut command = Command::new(python);
    command
        .arg("-I")
        .env_remove("OPENBLAS_CORETYPE")
        .env_remove("OPENBLAS_L2_SIZE")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

/// Runs `script` (its source, fed on stdin) under `python -I` with `args` and returns its
/// standard output. OpenBLAS tuning variables of this machine are removed for the peer only.
pub(crate) fn run(python: &Path, script: &str, args: &[String]) -> Result<String, String> {
    let mut child = isolated(python)
        .arg("-")
        .args(args)
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", python.display()))?;
    let fed = child
        .stdin
        .take()
        .map(|mut stdin| stdin.write_all(script.as_bytes()));
    let out = child
        .wait_with_output()
        .map_err(|e| format!("{} did not finish: {e}", python.display()))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let last = err.trim().lines().last().unwrap_or("");
        return Err(format!(
            "{} exited with {}: {last}",
            python.display(),
            out.status
        ));
    }
    if let Some(Err(e)) = fed {
        return Err(format!(
            "cannot feed the script to {}: {e}",
            python.display()
        ));
    }
    String::from_utf8(out.stdout)
        .map_err(|e| format!("{} printed non-UTF-8: {e}", python.display()))
}

/// A peer script kept running between timed runs, so that its runs can alternate with the
/// benchmark's own (see `benches/peers/linalg.py --serve`): on a shared machine the load
/// changes within seconds, and two sides timed one after the other can meet different
/// loads. The script runs under `python -I -c SOURCE ARGS` (its standard input carries the
/// commands), answers each command line with one JSON line, and ends at end of input.
pub(crate) struct Session {
    python: PathBuf,
    child: Child,
    stdin: Option<ChildStdin>,
    /// The script's output lines, read on their own thread so that waiting for one has a
    /// deadline.
    lines: Receiver<std::io::Result<String>>,
    /// Reads the script's standard error to its end, so that a talkative script never
    /// blocks on a full pipe; its last line names what went wrong.
    stderr: Option<JoinHandle<String>>,
}

impl Session {
    /// Starts `script` with `args` and waits for its first line (the script's "ready",
    /// printed once its data is made and warmed up).
    pub(crate) fn start(python: &Path, script: &str, args: &[String]) -> Result<Self, String> {
        let mut child = isolated(python)
            .arg("-c")
            .arg(script)
            .args(args)
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", python.display()))?;
        let (Some(stdin), Some(stdout), Some(mut stderr)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            unreachable!("all three streams are piped")
        };
        let stderr = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = stderr.read_to_string(&mut text);
            text
        });
        let (send, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                if send.send(line).is_err() {
                    break;
                }
            }
        });
        let mut session = Self {
            python: python.to_path_buf(),
            child,
            stdin: Some(stdin),
            lines,
            stderr: Some(stderr),
        };
        session.answer()?;
        Ok(session)
    }

    /// Sends one command line and returns the JSON object the script answers with.
    pub(crate) fn call(&mut self, command: &str) -> Result<serde_json::Value, String> {
        let sent = match self.stdin.as_mut() {
            Some(stdin) => writeln!(stdin, "{command}").and_then(|()| stdin.flush()),
            None => return Err("the peer's input is closed".to_string()),
        };
        if let Err(e) = sent {
            // The script has most likely exited; its status says more than the pipe does.
            return Err(self
                .failure()
                .unwrap_or_else(|| format!("cannot write to it: {e}")));
        }
        self.answer()
    }

    /// The next line of the script's output, as JSON.
    fn answer(&mut self) -> Result<serde_json::Value, String> {
        let limit = answer_limit();
        match self.lines.recv_timeout(limit) {
            Ok(Ok(line)) => serde_json::from_str(line.trim())
                .map_err(|e| format!("unreadable line {:?}: {e}", line.trim())),
            Err(RecvTimeoutError::Timeout) => {
                let _ = self.child.kill();
                let _ = self.child.wait();
                Err(format!(
                    "{} gave no answer within {} s and was stopped (DAGGER_PEER_TIMEOUT sets \
                     the limit)",
                    self.python.display(),
                    limit.as_secs_f64()
                ))
            }
            Ok(Err(_)) | Err(RecvTimeoutError::Disconnected) => Err(self
                .failure()
                .unwrap_or_else(|| format!("{} ended its output", self.python.display()))),
        }
    }

    /// Closes the script's input, waits for it and describes how it ended, with the last
    /// line of its standard error; `None` if it ended well.
    fn failure(&mut self) -> Option<String> {
        self.stdin = None;
        let status = self.child.wait().ok()?;
        let err = self
            .stderr
            .take()
            .and_then(|h| h.join().ok())
            .unwrap_or_default();
        let last = err.trim().lines().last().unwrap_or("");
        (!status.success())
            .then(|| format!("{} exited with {status}: {last}", self.python.display()))
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        // End of input ends the script; a script that does not read it is killed.
        self.stdin = None;
        match self.child.try_wait() {
            Ok(Some(_)) => {}
            _ => {
                let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
                while std::time::Instant::now() < deadline {
                    if let Ok(Some(_)) = self.child.try_wait() {
                        return;
                    }
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                let _ = self.child.kill();
                let _ = self.child.wait();
            }
        }
    }
}
