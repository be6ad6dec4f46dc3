//! Arrays in and out of `.npy` files, the format of numpy's `np.save` and `np.load`.
//!
//! A file is read whole into host memory and split into blocks, and written from the
//! gathered array: `.npy` holds one contiguous array, so there is no reading it block by
//! block. Writing never replaces a file or follows a symbolic link unless asked to
//! ([`Overwrite::Replace`]), and a replaced file is swapped in whole (written beside it, then
//! renamed), so a reader never sees half of it.

use std::fs::{File, OpenOptions};
use std::io::{BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

use ndarray_npy::{ReadNpyExt, WriteNpyExt};

use super::{check_fits, ArrayError, Blocking, DArray, Element};
use crate::Context;

/// What [`DArray::to_npy_with`] (and `DArray::to_zarr_with`, with the `zarr` feature) does
/// when the path already exists.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Overwrite {
    /// Refuse: the write fails (with [`ArrayError::File`] for a `.npy` file) and what is
    /// at the path (a file, a store, a link) is left as it was.
    #[default]
    Refuse,
    /// Replace what is at the path — a file, a store, or a symbolic link itself, never
    /// what a link points to — once the new file or store is completely written.
    Replace,
}

fn file_error(op: &'static str, path: &Path, source: impl Into<FileErrorSource>) -> ArrayError {
    ArrayError::File {
        op,
        path: path.to_path_buf(),
        source: source.into().0,
    }
}

/// The cause of a file error, boxed.
struct FileErrorSource(Box<dyn std::error::Error + Send + Sync>);

impl From<std::io::Error> for FileErrorSource {
    fn from(e: std::io::Error) -> Self {
        FileErrorSource(Box::new(e))
    }
}

impl From<ndarray_npy::ReadNpyError> for FileErrorSource {
    fn from(e: ndarray_npy::ReadNpyError) -> Self {
        FileErrorSource(Box::new(e))
    }
}

impl From<ndarray_npy::WriteNpyError> for FileErrorSource {
    fn from(e: ndarray_npy::WriteNpyError) -> Self {
        FileErrorSource(Box::new(e))
    }
}

impl<T: Element> DArray<T> {
    /// Reads a `.npy` file into a new array split by `blocks`.
    ///
    /// Any dimensionality; C or Fortran order; the file's element type must be `T` (a file
    /// of `float64` read as `DArray<f32>` is an error naming both, not a conversion).
    ///
    /// ```
    /// use dagger::prelude::*;
    /// let ctx = Context::builder().threads(2).build()?;
    /// let dir = std::env::temp_dir().join(format!("dagger-npy-doc-{}", std::process::id()));
    /// std::fs::create_dir_all(&dir)?;
    /// let path = dir.join("a.npy");
    /// # let _ = std::fs::remove_file(&path);
    /// let a = DArray::<f64>::ones(&ctx, [3, 4], Blocks::new([2, 2]))?;
    /// a.to_npy(&path)?;
    /// let b = DArray::<f64>::from_npy(&ctx, &path, Blocks::new([3, 1]))?;
    /// assert_eq!(b.collect()?, a.collect()?);
    /// # std::fs::remove_dir_all(&dir)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`ArrayError::File`] when the file cannot be opened or is not a `.npy` of `T`;
    /// [`ArrayError::OutOfMemory`] when it is larger than the memory arrays may take (before
    /// it is read); the errors of [`DArray::distribute`].
    pub fn from_npy(
        ctx: &Context,
        path: impl AsRef<Path>,
        blocks: impl Blocking,
    ) -> Result<Self, ArrayError> {
        let path = path.as_ref();
        let file = File::open(path).map_err(|e| file_error("opening", path, e))?;
        let len = file
            .metadata()
            .map_err(|e| file_error("reading the size of", path, e))?
            .len();
        // The file holds the elements and a short header: its length bounds what reading it
        // allocates.
        let what = || format!("reading {} ({len} bytes)", path.display());
        check_fits(
            what,
            len as u128,
            1,
            "read a smaller file, or raise DAGGER_MEMORY_LIMIT",
        )?;
        let array = ndarray::ArrayD::<T>::read_npy(BufReader::new(file))
            .map_err(|e| file_error("reading a .npy array from", path, e))?;
        DArray::distribute(ctx, &array, blocks)
    }

    /// Writes the array to a new `.npy` file at `path`, as `np.save` would (C order).
    ///
    /// Refuses to write over anything already at `path`, a symbolic link included; see
    /// [`to_npy_with`](Self::to_npy_with) to replace it.
    ///
    /// # Errors
    ///
    /// [`ArrayError::File`] when `path` exists or cannot be written, and the errors of
    /// [`collect`](Self::collect).
    pub fn to_npy(&self, path: impl AsRef<Path>) -> Result<(), ArrayError> {
        self.to_npy_with(path, Overwrite::Refuse)
    }

    /// [`to_npy`](Self::to_npy), saying what to do with an existing file at `path`.
    ///
    /// ```
    /// use dagger::prelude::*;
    /// use dagger::array::Overwrite;
    /// let ctx = Context::builder().threads(1).build()?;
    /// let dir = std::env::temp_dir().join(format!("dagger-npy-doc2-{}", std::process::id()));
    /// std::fs::create_dir_all(&dir)?;
    /// let path = dir.join("a.npy");
    /// let a = DArray::<f32>::zeros(&ctx, [5], Blocks::new([2]))?;
    /// a.to_npy(&path)?;
    /// assert!(a.to_npy(&path).is_err()); // there is a file now
    /// a.to_npy_with(&path, Overwrite::Replace)?;
    /// # std::fs::remove_dir_all(&dir)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`to_npy`](Self::to_npy); with [`Overwrite::Replace`], only when writing fails.
    pub fn to_npy_with(
        &self,
        path: impl AsRef<Path>,
        overwrite: Overwrite,
    ) -> Result<(), ArrayError> {
        let path = path.as_ref();
        let array = self.collect()?;
        let target = match overwrite {
            Overwrite::Refuse => path.to_path_buf(),
            Overwrite::Replace => sibling(path),
        };
        // `create_new` fails on anything at the path, a dangling symbolic link included, so
        // nothing is written through a link.
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&target)
            .map_err(|e| {
                let op = if e.kind() == std::io::ErrorKind::AlreadyExists {
                    "refusing to replace (pass Overwrite::Replace to replace it)"
                } else {
                    "creating"
                };
                file_error(op, &target, e)
            })?;
        let written = (|| {
            let mut w = BufWriter::new(file);
            array
                .write_npy(&mut w)
                .map_err(|e| file_error("writing a .npy array to", &target, e))?;
            w.flush()
                .map_err(|e| file_error("writing a .npy array to", &target, e))?;
            w.into_inner()
                .map_err(|e| file_error("writing a .npy array to", &target, e.into_error()))?
                .sync_all()
                .map_err(|e| file_error("writing a .npy array to", &target, e))
        })();
        if let Err(e) = written {
            let _ = std::fs::remove_file(&target);
            return Err(e);
        }
        if target != path {
            // Renaming replaces what is at `path` (a link itself, not its target) at once.
            if let Err(e) = std::fs::rename(&target, path) {
                let _ = std::fs::remove_file(&target);
                return Err(file_error("replacing", path, e));
            }
        }
        Ok(())
    }
}

/// A new file name beside `path`, for writing before a rename over it.
pub(super) fn sibling(path: &Path) -> PathBuf {
    static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.{}-{n}.partial", std::process::id()))
}
