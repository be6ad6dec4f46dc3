//! Values in files: task arguments read from a file inside the task ([`File`]), task results
//! written to one ([`Context::tofile`](crate::Context::tofile)), chunks saved and loaded
//! ([`Chunk::save`](crate::Chunk::save), [`Chunk::load`](crate::Chunk::load)), and the
//! format of saved values and checkpoints.
//!
//! A saved value is a small header — a magic string, a version and the value's type name —
//! followed by the value as its [`Spill`](super::Spill) codec writes it. Files are created
//! new (never written over, never through a link); a file that must be replaced is written
//! beside it and renamed over it.

use std::fmt;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::codec;
use crate::value::Value;

const MAGIC: &[u8; 8] = b"DAGGERv1";

/// What went wrong saving or loading a value.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StorageError {
    /// Reading or writing the file failed.
    #[error("{what} {path}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Why it failed.
        #[source]
        source: io::Error,
    },
    /// The file exists and is not written over.
    #[error("{path} exists; remove it or save elsewhere (files are never written over)")]
    Exists {
        /// The file.
        path: PathBuf,
    },
    /// The file holds a value of another type.
    #[error("{path} holds a `{found}`, not a `{expected}`")]
    Type {
        /// The file.
        path: PathBuf,
        /// The type asked for.
        expected: &'static str,
        /// The type in the file.
        found: String,
    },
    /// The file is not a saved value.
    #[error("{path} is not a value saved by dagger: {reason}")]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The type has no way to be written.
    #[error("values of type `{type_name}` cannot be saved: register the type with dagger::storage::register or register_serde")]
    NotSaveable {
        /// The type.
        type_name: &'static str,
    },
}

fn io_err<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> StorageError + 'a {
    move |source| StorageError::Io {
        what,
        path: path.to_path_buf(),
        source,
    }
}

/// Writes `value` with its header to a new file at `path` (never over an existing file or
/// through a link).
pub(crate) fn save_value(value: &Value, path: &Path) -> Result<u64, StorageError> {
    let codec =
        codec::codec_of(value)
            .filter(|c| c.spillable())
            .ok_or(StorageError::NotSaveable {
                type_name: value.type_name(),
            })?;
    let f = std::fs::File::options()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(|e| {
            if e.kind() == io::ErrorKind::AlreadyExists {
                StorageError::Exists {
                    path: path.to_path_buf(),
                }
            } else {
                io_err("creating", path)(e)
            }
        })?;
    let mut w = BufWriter::with_capacity(1 << 16, f);
    let name = value.type_name().as_bytes();
    let written = (|| {
        w.write_all(MAGIC)?;
        w.write_all(&(name.len() as u32).to_le_bytes())?;
        w.write_all(name)?;
        codec.write(value, &mut w)?;
        w.flush()?;
        w.get_ref().sync_data()
    })();
    match written {
        Ok(()) => Ok(std::fs::metadata(path).map_or(0, |m| m.len())),
        Err(e) => {
            drop(w);
            let _ = std::fs::remove_file(path);
            Err(io_err("writing", path)(e))
        }
    }
}

/// Writes `value` to `path` through a new file beside it renamed over it: a reader sees
/// the old file or the whole new one, and a link at `path` is replaced, not followed.
pub(crate) fn save_value_replacing(value: &Value, path: &Path) -> Result<u64, StorageError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.{}.partial", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    let n = save_value(value, &tmp)?;
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        io_err("renaming the new file over", path)(e)
    })?;
    Ok(n)
}

/// Reads a value saved by [`save_value`]; `expected` (a type name) is checked when given.
pub(crate) fn load_value(
    path: &Path,
    expected: Option<&'static str>,
) -> Result<Value, StorageError> {
    let f = std::fs::File::open(path).map_err(io_err("opening", path))?;
    let mut r = BufReader::with_capacity(1 << 16, f);
    let codec = read_header(&mut r, path, expected)?;
    codec.read(&mut r).map_err(io_err("reading", path))
}

/// What a saved value's file holds: its codec, where the value starts, and its size.
pub(crate) struct Saved {
    pub(crate) codec: Arc<dyn codec::Codec>,
    pub(crate) offset: u64,
    pub(crate) len: u64,
}

/// Reads the header of a value saved at `path`, checking it holds an `expected`.
pub(crate) fn open_saved(path: &Path, expected: &'static str) -> Result<Saved, StorageError> {
    let f = std::fs::File::open(path).map_err(io_err("opening", path))?;
    let total = f.metadata().map_err(io_err("reading", path))?.len();
    let mut r = BufReader::with_capacity(4096, f);
    let codec = read_header(&mut r, path, Some(expected))?;
    let offset = io::Seek::stream_position(&mut r).map_err(io_err("reading", path))?;
    Ok(Saved {
        codec,
        offset,
        len: total.saturating_sub(offset),
    })
}

fn read_header(
    r: &mut dyn Read,
    path: &Path,
    expected: Option<&'static str>,
) -> Result<Arc<dyn codec::Codec>, StorageError> {
    let format = |reason: String| StorageError::Format {
        path: path.to_path_buf(),
        reason,
    };
    let mut magic = [0u8; 8];
    r.read_exact(&mut magic)
        .map_err(|_| format("too short".into()))?;
    if &magic != MAGIC {
        return Err(format("no DAGGERv1 header".into()));
    }
    let mut len = [0u8; 4];
    r.read_exact(&mut len)
        .map_err(|_| format("the header is cut short".into()))?;
    let len = u32::from_le_bytes(len) as usize;
    if len > 4096 {
        return Err(format(format!("a type name of {len} bytes")));
    }
    let mut name = vec![0u8; len];
    r.read_exact(&mut name)
        .map_err(|_| format("the header is cut short".into()))?;
    let name = String::from_utf8(name).map_err(|_| format("the type name is not UTF-8".into()))?;
    if let Some(e) = expected {
        if e != name {
            return Err(StorageError::Type {
                path: path.to_path_buf(),
                expected: e,
                found: name,
            });
        }
    }
    codec::codec_by_name(&name).ok_or_else(|| {
        format(format!(
            "its type `{name}` is not registered in this program (dagger::storage::register)"
        ))
    })
}

type Reader<T> = dyn Fn(&Path) -> io::Result<T> + Send + Sync;

/// A file as a task argument (Dagger.jl's `File`): the task receives the value read from
/// it, read inside the task when it runs — not when it is spawned — by the reader given.
///
/// ```
/// use dagger::prelude::*;
/// use dagger::File;
///
/// let dir = std::env::temp_dir().join(format!("dagger-file-doc-{}", std::process::id()));
/// std::fs::create_dir_all(&dir)?;
/// let path = dir.join("numbers.txt");
/// let _ = std::fs::remove_file(&path);
///
/// let ctx = Context::builder().threads(1).build()?;
/// let numbers = File::open(&path, |p| {
///     let text = std::fs::read_to_string(p)?;
///     Ok(text.split_whitespace().map(|w| w.parse::<i64>().unwrap_or(0)).collect::<Vec<_>>())
/// });
/// // The file is written after the task is spawned: it is read when the task runs.
/// let gate = ctx.spawn({ let path = path.clone(); move || std::fs::write(path, "1 2 3").is_ok() }, ());
/// let sum = ctx.spawn(|_: bool, v: Vec<i64>| v.iter().sum::<i64>(), (&gate, numbers));
/// assert_eq!(sum.fetch()?, 6);
/// # std::fs::remove_dir_all(&dir)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct File<T> {
    path: Arc<Path>,
    reader: Arc<Reader<T>>,
}

impl<T> Clone for File<T> {
    fn clone(&self) -> Self {
        File {
            path: self.path.clone(),
            reader: self.reader.clone(),
        }
    }
}

impl<T> fmt::Debug for File<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("File")
            .field("path", &self.path)
            .field("type", &std::any::type_name::<T>())
            .finish()
    }
}

/// Why a [`File`] could not be read.
#[derive(Debug, thiserror::Error)]
#[error("reading {path}")]
pub struct FileReadError {
    /// The file.
    pub path: PathBuf,
    /// What the reader said.
    #[source]
    pub source: io::Error,
}

impl<T: Send + Sync + 'static> File<T> {
    /// The file at `path`, read by `reader` when a task takes it.
    pub fn open(
        path: impl AsRef<Path>,
        reader: impl Fn(&Path) -> io::Result<T> + Send + Sync + 'static,
    ) -> Self {
        File {
            path: Arc::from(path.as_ref()),
            reader: Arc::new(reader),
        }
    }

    /// A value saved by [`Chunk::save`](crate::Chunk::save) or written by
    /// [`Context::tofile`](crate::Context::tofile) without a writer of its own.
    pub fn saved(path: impl AsRef<Path>) -> Self {
        File::open(path, |p| {
            let v = load_value(p, Some(std::any::type_name::<T>())).map_err(|e| match e {
                StorageError::Io { source, .. } => source,
                other => io::Error::new(io::ErrorKind::InvalidData, other.to_string()),
            })?;
            v.downcast_arc::<T>()
                .map_err(|_| io::Error::other("the saved value changed type"))
                .and_then(|a| {
                    Arc::try_unwrap(a).map_err(|_| io::Error::other("the value is shared"))
                })
        })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads the value now.
    pub fn read(&self) -> Result<T, FileReadError> {
        (self.reader)(&self.path).map_err(|source| FileReadError {
            path: self.path.to_path_buf(),
            source,
        })
    }
}
