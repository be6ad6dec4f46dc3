//! The `--out DIR` of `dagger trace` and `dagger demo`: checked before any work, and written
//! without following symbolic links or silently replacing files.
//!
//! A file is created only where nothing exists (`O_CREAT | O_EXCL`, which fails on any
//! symbolic link, dangling or not). With `--force` an existing file or link is replaced by
//! renaming a freshly created file over it: the link itself is replaced, never its target.

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// Why output could not be written.
#[derive(Debug, thiserror::Error)]
pub(crate) enum OutError {
    /// `--out` names something that is not a directory.
    #[error("--out {0}: not a directory; pass a directory (it is created if missing)")]
    NotADirectory(PathBuf),
    /// The directory could not be created.
    #[error("cannot create the output directory {dir}")]
    Create {
        dir: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The directory could not be read to look for existing output.
    #[error("cannot read the output directory {dir}")]
    Read {
        dir: PathBuf,
        #[source]
        source: io::Error,
    },
    /// An output file (or a link, or anything else) is already there.
    #[error("{0} already exists: pass --force to replace it")]
    Exists(PathBuf),
    /// An output name is taken by a directory, which even --force does not replace.
    #[error("{0} is a directory; remove it or choose another --out")]
    IsDirectory(PathBuf),
    /// Writing failed.
    #[error("cannot write {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// A checked output directory.
pub(crate) struct OutDir {
    dir: PathBuf,
    force: bool,
}

impl OutDir {
    /// Checks `dir` before any work: a directory, or created now if missing. Without
    /// `force`, fails if a file of the output is there already: `stem.ext` or
    /// `stem-N.ext` for each `(stem, ext)` of `outputs`.
    pub(crate) fn prepare(
        dir: &Path,
        force: bool,
        outputs: &[(&str, &str)],
    ) -> Result<OutDir, OutError> {
        match fs::metadata(dir) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => return Err(OutError::NotADirectory(dir.to_owned())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                // A dangling link at `dir` is not followed to create its target.
                if fs::symlink_metadata(dir).is_ok() {
                    return Err(OutError::NotADirectory(dir.to_owned()));
                }
                fs::create_dir_all(dir).map_err(|source| OutError::Create {
                    dir: dir.to_owned(),
                    source,
                })?;
            }
            Err(source) => {
                return Err(OutError::Read {
                    dir: dir.to_owned(),
                    source,
                })
            }
        }
        let out = OutDir {
            dir: dir.to_owned(),
            force,
        };
        if !force {
            let entries = fs::read_dir(dir).map_err(|source| OutError::Read {
                dir: dir.to_owned(),
                source,
            })?;
            let mut taken: Vec<PathBuf> = entries
                .filter_map(Result::ok)
                .filter(|e| {
                    let name = e.file_name();
                    let name = name.to_string_lossy();
                    outputs
                        .iter()
                        .any(|&(stem, ext)| is_output(&name, stem, ext))
                })
                .map(|e| e.path())
                .collect();
            taken.sort();
            if let Some(first) = taken.into_iter().next() {
                return Err(OutError::Exists(first));
            }
        }
        Ok(out)
    }

    /// The path of `name` in the directory.
    pub(crate) fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Writes `contents` to `name` in the directory, never through a symbolic link; an
    /// existing entry is an error unless --force was given, which replaces it.
    pub(crate) fn write(&self, name: &str, contents: impl AsRef<[u8]>) -> Result<(), OutError> {
        let path = self.path(name);
        let contents = contents.as_ref();
        let existing = fs::symlink_metadata(&path).ok();
        match existing {
            None => create_new(&path, contents),
            Some(m) if m.is_dir() => Err(OutError::IsDirectory(path)),
            Some(_) if !self.force => Err(OutError::Exists(path)),
            Some(_) => {
                // Write beside it, then rename over the entry: a link is replaced, not
                // followed, and readers never see a half-written file.
                let tmp = self
                    .dir
                    .join(format!(".{name}.{}.partial", std::process::id()));
                create_new(&tmp, contents)?;
                fs::rename(&tmp, &path).map_err(|source| {
                    let _ = fs::remove_file(&tmp);
                    OutError::Write { path, source }
                })
            }
        }
    }
}

/// Whether `name` is `stem.ext` or `stem-N.ext` (the per-context files of a trace).
fn is_output(name: &str, stem: &str, ext: &str) -> bool {
    let Some(rest) = name.strip_prefix(stem) else {
        return false;
    };
    let Some(middle) = rest.strip_suffix(ext).and_then(|r| r.strip_suffix('.')) else {
        return false;
    };
    middle.is_empty()
        || middle
            .strip_prefix('-')
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// Creates `path`, failing if anything (a file, a link, dangling or not) is there.
fn create_new(path: &Path, contents: &[u8]) -> Result<(), OutError> {
    let err = |source| OutError::Write {
        path: path.to_owned(),
        source,
    };
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(|source| {
            if source.kind() == io::ErrorKind::AlreadyExists {
                OutError::Exists(path.to_owned())
            } else {
                err(source)
            }
        })?;
    f.write_all(contents).map_err(err)
}

/// A path for a new directory of its own under the system's temporary directory, where a
/// command writes when not told `--out`: never into the working tree, and a second run
/// does not collide with the first.
pub(crate) fn new_temp_dir_path(command: &str) -> PathBuf {
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    std::env::temp_dir().join(format!("dagger-{command}-{stamp}-{}", std::process::id()))
}

#[cfg(test)]
mod tests {
    use super::is_output;

    #[test]
    fn output_names() {
        assert!(is_output("trace.json", "trace", "json"));
        assert!(is_output("trace-12.json", "trace", "json"));
        assert!(!is_output("trace-.json", "trace", "json"));
        assert!(!is_output("trace-x.json", "trace", "json"));
        assert!(!is_output("tracejson", "trace", "json"));
        assert!(!is_output("trace.json.bak", "trace", "json"));
    }
}
