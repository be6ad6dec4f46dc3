//! Running the Python peers of the benchmarks (`benches/peers/`, embedded in the binary).
//!
//! The interpreter is chosen explicitly: `--python PATH`, else `$DAGGER_PYTHON`, else
//! `python3` from the absolute directories of `PATH` (never the current directory). It runs
//! in isolated mode (`-I`), so nothing in the current directory or the user's site-packages
//! is imported and the `PYTHON*` environment variables are ignored: a `numpy.py` lying in
//! the directory the benchmark was started from is never executed.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

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

/// Runs `script` (its source, fed on stdin) under `python -I` with `args` and returns its
/// standard output. OpenBLAS tuning variables of this machine are removed for the peer only.
pub(crate) fn run(python: &Path, script: &str, args: &[String]) -> Result<String, String> {
    let mut child = Command::new(python)
        .arg("-I")
        .arg("-")
        .args(args)
        .env_remove("OPENBLAS_CORETYPE")
        .env_remove("OPENBLAS_L2_SIZE")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
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
