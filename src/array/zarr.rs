//! Arrays in and out of Zarr stores (the format of zarr-python, `dask.array.from_zarr` and
//! `to_zarr`), one task per block.
//!
//! Reading opens the array's metadata at the call (its shape and data type are checked
//! there) and spawns one task per block that reads and decodes that block's region when it
//! runs. Writing makes the array's metadata, then one task per block encodes and stores that
//! block as one chunk, so the chunk shape is the block shape. A store is written beside its
//! path and moved there when complete: a reader never sees half of it, and nothing already
//! at the path (a store, a file, a symbolic link) is replaced or followed unless the caller
//! says so ([`Overwrite::Replace`]).
//!
//! Zarr v3 stores are written; v3 and v2 stores are read. Codecs read: `bytes`, `zstd`
//! (zarr-python's default), `gzip`, `sharding_indexed` and `crc32c`. Not built in: `blosc`
//! (zarr-python 2's default; it compiles the C library) and `transpose`.

use std::ops::Range;
use std::path::Path;
use std::sync::Arc;

use zarrs::array::codec::{CodecOptions, ZstdCodec};
use zarrs::array::{Array, ArrayBuilder, ArrayBytes, DataType, FillValue};
use zarrs::array_subset::ArraySubset;
use zarrs::filesystem::FilesystemStore;

use super::npy::sibling;
use super::{host_options, make_grid, ArrayError, Block, Blocking, Blocks, DArray, Element};
use super::{Grid, Overwrite};
use crate::{Context, DType};

/// What went wrong with a Zarr store: the source of an [`ArrayError::Zarr`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ZarrError {
    /// The path could not be read, created or moved (nothing there, no permission, ...).
    #[error("the file system refused")]
    Io(#[from] std::io::Error),
    /// A directory without array metadata.
    #[error(
        "no Zarr array here: the directory has no zarr.json (Zarr v3) or .zarray (Zarr v2); \
         pass the directory of an array, not of a group"
    )]
    NotAnArray,
    /// The store holds elements of another type than the array's.
    #[error("the store holds {stored} elements, not {}; {}", zarr_name(*.requested), data_type_advice(.stored))]
    DataType {
        /// The store's data type, as Zarr names it (`float64`, `int64`, ...).
        stored: String,
        /// The array's element type.
        requested: DType,
    },
    /// Blocks that are not one regular chunk grid: a Zarr array's chunks all have one shape
    /// (those at the far edge clipped).
    #[error(
        "the blocks along dimension {dim} start at {cuts:?}, which is not a regular grid of \
         chunks; rechunk the array to Blocks of one shape first"
    )]
    IrregularBlocks {
        /// The dimension.
        dim: usize,
        /// Where the blocks start and the last one ends along it.
        cuts: Vec<usize>,
    },
    /// The metadata could not be read, or names a codec or layout this build does not
    /// support (the Zarr library's error is the source).
    #[error("the array's metadata is invalid or not supported")]
    Metadata(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// Reading, decoding, encoding or storing the region of one block failed (the Zarr
    /// library's error is the source).
    #[error("the block {region:?}")]
    Block {
        /// The block's region, one range per dimension.
        region: Vec<Range<usize>>,
        /// Why.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// Zarr's name for an element type.
fn zarr_name(d: DType) -> &'static str {
    match d {
        DType::F32 => "float32",
        DType::F64 => "float64",
        DType::I32 => "int32",
        DType::U32 => "uint32",
    }
}

fn zarr_data_type(d: DType) -> DataType {
    match d {
        DType::F32 => DataType::Float32,
        DType::F64 => DataType::Float64,
        DType::I32 => DataType::Int32,
        DType::U32 => DataType::UInt32,
    }
}

/// What to change when a store's data type is not the array's.
fn data_type_advice(stored: &str) -> String {
    let ours = [DType::F32, DType::F64, DType::I32, DType::U32];
    match ours.into_iter().find(|&d| zarr_name(d) == stored) {
        Some(d) => format!("read it as DArray<{}>", d.wgsl()),
        None => "arrays hold float32, float64, int32 or uint32: convert the store to one of \
                 these first (for example with zarr-python's astype)"
            .into(),
    }
}

fn zarr_error(op: &'static str, path: &Path, source: impl Into<ZarrError>) -> ArrayError {
    ArrayError::Zarr {
        op,
        path: path.to_path_buf(),
        source: source.into(),
    }
}

/// How [`DArray::to_zarr_with`] compresses each chunk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Compression {
    /// The raw little-endian elements.
    Uncompressed,
    /// Zstandard at `level` (1 fastest to 22 smallest; 0 is zstd's default, 3), zarr-python's
    /// default codec.
    Zstd {
        /// The compression level.
        level: i32,
    },
}

impl Default for Compression {
    /// Zstandard at level 3.
    fn default() -> Self {
        Compression::Zstd { level: 3 }
    }
}

/// How [`DArray::to_zarr_with`] writes: whether it may replace what is at the path, and how
/// it compresses. An [`Overwrite`] converts into the options with the default compression.
///
/// ```
/// use dagger::array::{Compression, Overwrite, ZarrOptions};
/// let o = ZarrOptions::new().compression(Compression::Uncompressed);
/// assert_eq!(o.get_overwrite(), Overwrite::Refuse);
/// assert_eq!(ZarrOptions::from(Overwrite::Replace).get_compression(), Compression::default());
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ZarrOptions {
    overwrite: Overwrite,
    compression: Compression,
}

impl ZarrOptions {
    /// Refuse an existing path; Zstandard at level 3.
    pub fn new() -> Self {
        Self::default()
    }

    /// What to do with an existing path.
    pub fn overwrite(mut self, overwrite: Overwrite) -> Self {
        self.overwrite = overwrite;
        self
    }

    /// How to compress the chunks.
    pub fn compression(mut self, compression: Compression) -> Self {
        self.compression = compression;
        self
    }

    /// What is done with an existing path.
    pub fn get_overwrite(&self) -> Overwrite {
        self.overwrite
    }

    /// How the chunks are compressed.
    pub fn get_compression(&self) -> Compression {
        self.compression
    }
}

impl From<Overwrite> for ZarrOptions {
    fn from(overwrite: Overwrite) -> Self {
        ZarrOptions::new().overwrite(overwrite)
    }
}

/// Codec work inside a block task stays on that task's thread: the scheduler already runs
/// one task per thread.
fn codec_options() -> CodecOptions {
    CodecOptions::builder().concurrent_target(1).build()
}

fn subset(region: &[Range<usize>]) -> ArraySubset {
    let ranges: Vec<Range<u64>> = region
        .iter()
        .map(|r| r.start as u64..r.end as u64)
        .collect();
    ArraySubset::new_with_ranges(&ranges)
}

/// Opens the array at the root of the store at `path`, checking its element type is `T`.
fn open<T: Element>(path: &Path) -> Result<Array<FilesystemStore>, ArrayError> {
    let meta = std::fs::metadata(path).map_err(|e| zarr_error("opening", path, e))?;
    if !meta.is_dir() {
        return Err(zarr_error("opening", path, ZarrError::NotAnArray));
    }
    if !path.join("zarr.json").exists() && !path.join(".zarray").exists() {
        return Err(zarr_error("opening", path, ZarrError::NotAnArray));
    }
    let store = FilesystemStore::new(path)
        .map_err(|e| zarr_error("opening", path, ZarrError::Metadata(Box::new(e))))?;
    let array = Array::open(Arc::new(store), "/")
        .map_err(|e| zarr_error("opening", path, ZarrError::Metadata(Box::new(e))))?;
    let stored = array.data_type().name();
    if stored != zarr_name(T::DTYPE) {
        return Err(zarr_error(
            "opening",
            path,
            ZarrError::DataType {
                stored,
                requested: T::DTYPE,
            },
        ));
    }
    Ok(array)
}

impl<T: Element> DArray<T> {
    /// Opens the Zarr array in the directory `path` as an array whose blocks are the
    /// store's chunks (Dask's `da.from_zarr`).
    ///
    /// The metadata is read at the call; each block is read and decoded by its own task
    /// when it runs, so the call returns before any chunk is read. Chunks missing from the
    /// store read as its fill value, as in every Zarr reader. The store's data type must be
    /// `T` (a `float64` store read as `DArray<f32>` is an error naming both, not a
    /// conversion). Available with the `zarr` cargo feature.
    ///
    /// ```
    /// use dagger::prelude::*;
    /// let ctx = Context::builder().threads(2).build()?;
    /// let dir = std::env::temp_dir().join(format!("dagger-zarr-doc-{}", std::process::id()));
    /// # let _ = std::fs::remove_dir_all(&dir);
    /// std::fs::create_dir_all(&dir)?;
    /// let path = dir.join("a.zarr");
    /// let a = DArray::<f32>::rand(&ctx, [300, 200], Blocks::new([128, 128]), 1)?;
    /// a.to_zarr(&path)?; // chunks of 128 x 128, compressed with zstd
    /// let b = DArray::<f32>::from_zarr(&ctx, &path)?;
    /// assert_eq!(b.block_counts(), vec![3, 2]);
    /// assert_eq!(b.collect()?, a.collect()?);
    /// # std::fs::remove_dir_all(&dir)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`ArrayError::Zarr`] when there is no array at `path`, its metadata cannot be read
    /// or its data type is not `T` (see [`ZarrError`]); the errors of
    /// [`from_zarr_with`](Self::from_zarr_with). A block that cannot be read or decoded
    /// fails its task: the error arrives at [`collect`](Self::collect) or
    /// [`wait`](Self::wait).
    pub fn from_zarr(ctx: &Context, path: impl AsRef<Path>) -> Result<Self, ArrayError> {
        let path = path.as_ref();
        let array = open::<T>(path)?;
        let n = array.dimensionality();
        let chunk: Vec<usize> = match array.chunk_shape(&vec![0; n]) {
            Ok(c) => c.iter().map(|x| x.get() as usize).collect(),
            Err(_) => array.shape().iter().map(|&x| (x as usize).max(1)).collect(),
        };
        Self::read_blocks(ctx, path, array, &Blocks::new(chunk))
    }

    /// [`from_zarr`](Self::from_zarr) with blocks of another shape than the store's
    /// chunks. Blocks that are whole multiples of the chunk shape read each chunk once;
    /// others read the chunks they overlap, and decode the ones they share once per block.
    ///
    /// ```
    /// use dagger::prelude::*;
    /// let ctx = Context::builder().threads(2).build()?;
    /// let dir = std::env::temp_dir().join(format!("dagger-zarr-doc2-{}", std::process::id()));
    /// # let _ = std::fs::remove_dir_all(&dir);
    /// std::fs::create_dir_all(&dir)?;
    /// let path = dir.join("a.zarr");
    /// DArray::<i32>::fill(&ctx, [10, 4], Blocks::new([3, 4]), -2)?.to_zarr(&path)?;
    /// let b = DArray::<i32>::from_zarr_with(&ctx, &path, Blocks::new([5, 2]))?;
    /// assert_eq!(b.block_counts(), vec![2, 2]);
    /// assert_eq!(b.sum().fetch()?, -80);
    /// # std::fs::remove_dir_all(&dir)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`from_zarr`](Self::from_zarr), and [`ArrayError::BlocksRank`] or
    /// [`ArrayError::ZeroBlock`] for a block shape that does not fit the store's shape.
    pub fn from_zarr_with(
        ctx: &Context,
        path: impl AsRef<Path>,
        blocks: impl Blocking,
    ) -> Result<Self, ArrayError> {
        let path = path.as_ref();
        let array = open::<T>(path)?;
        Self::read_blocks(ctx, path, array, &blocks)
    }

    fn read_blocks(
        ctx: &Context,
        path: &Path,
        array: Array<FilesystemStore>,
        blocks: &impl Blocking,
    ) -> Result<Self, ArrayError> {
        let shape: Vec<usize> = array.shape().iter().map(|&n| n as usize).collect();
        let grid = make_grid::<T>(ctx, &shape, blocks)?;
        let array = Arc::new(array);
        let path: Arc<Path> = path.into();
        let opts = host_options(ctx).name("from_zarr");
        let parts = grid
            .domains()
            .into_iter()
            .map(|dom| {
                let array = array.clone();
                let path = path.clone();
                Block::Task(ctx.try_spawn_with(
                    opts.clone(),
                    move || -> Result<Vec<T>, ArrayError> {
                        let region = dom.ranges().to_vec();
                        let fail = |e: Box<dyn std::error::Error + Send + Sync>| {
                            zarr_error(
                                "reading a block of",
                                &path,
                                ZarrError::Block {
                                    region: region.clone(),
                                    source: e,
                                },
                            )
                        };
                        let bytes = array
                            .retrieve_array_subset_opt(&subset(&region), &codec_options())
                            .map_err(|e| fail(Box::new(e)))?
                            .into_fixed()
                            .map_err(|e| fail(Box::new(e)))?;
                        Ok(bytemuck::pod_collect_to_vec::<u8, T>(&bytes))
                    },
                    (),
                ))
            })
            .collect();
        Ok(DArray::from_parts(ctx, grid, parts))
    }

    /// Writes the array to a new Zarr v3 store in the directory `path` (Dask's
    /// `to_zarr`), one task per block, each block one chunk compressed with Zstandard
    /// (level 3); returns when every chunk is written.
    ///
    /// The chunk shape is the block shape: rechunk first for another one. Refuses to write
    /// over anything already at `path`, a symbolic link included; see
    /// [`to_zarr_with`](Self::to_zarr_with) to replace it or choose the compression.
    /// zarr-python and Dask read the store (`zarr.open_array(path)`, `da.from_zarr(path)`).
    /// Available with the `zarr` cargo feature.
    ///
    /// # Errors
    ///
    /// [`ArrayError::Zarr`] when `path` exists or cannot be written, or the blocks are not
    /// a regular grid ([`ZarrError::IrregularBlocks`]: after a `slice` or `concatenate`);
    /// the error of the first block that failed, computing it or writing it. Nothing is
    /// left at `path` after an error.
    pub fn to_zarr(&self, path: impl AsRef<Path>) -> Result<(), ArrayError> {
        self.to_zarr_with(path, ZarrOptions::new())
    }

    /// [`to_zarr`](Self::to_zarr), saying what to do with an existing store at `path` and
    /// how to compress: an [`Overwrite`] or [`ZarrOptions`].
    ///
    /// ```
    /// use dagger::prelude::*;
    /// use dagger::array::{Compression, Overwrite, ZarrOptions};
    /// let ctx = Context::builder().threads(1).build()?;
    /// let dir = std::env::temp_dir().join(format!("dagger-zarr-doc3-{}", std::process::id()));
    /// # let _ = std::fs::remove_dir_all(&dir);
    /// std::fs::create_dir_all(&dir)?;
    /// let path = dir.join("a.zarr");
    /// let a = DArray::<f64>::ones(&ctx, [5], Blocks::new([2]))?;
    /// a.to_zarr(&path)?;
    /// assert!(a.to_zarr(&path).is_err()); // there is a store now
    /// a.to_zarr_with(&path, Overwrite::Replace)?;
    /// let raw = ZarrOptions::new()
    ///     .overwrite(Overwrite::Replace)
    ///     .compression(Compression::Uncompressed);
    /// (&a * 2.0).to_zarr_with(&path, raw)?;
    /// assert_eq!(DArray::<f64>::from_zarr(&ctx, &path)?.sum().fetch()?, 10.0);
    /// # std::fs::remove_dir_all(&dir)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`to_zarr`](Self::to_zarr); with [`Overwrite::Replace`], not for an existing
    /// path. What was at `path` is left as it was after an error.
    pub fn to_zarr_with(
        &self,
        path: impl AsRef<Path>,
        options: impl Into<ZarrOptions>,
    ) -> Result<(), ArrayError> {
        let path = path.as_ref();
        let options = options.into();
        let chunk = chunk_shape(self.grid()).map_err(|e| zarr_error("writing", path, e))?;
        let stage = sibling(path);
        // Refusing: reserve the path with an empty directory, which fails on anything there
        // (a dangling symbolic link included), so nothing is written through a link.
        if options.overwrite == Overwrite::Refuse {
            std::fs::create_dir(path).map_err(|e| {
                let op = if e.kind() == std::io::ErrorKind::AlreadyExists {
                    "refusing to replace (pass Overwrite::Replace to replace it)"
                } else {
                    "creating"
                };
                zarr_error(op, path, e)
            })?;
        }
        let written = self
            .write_store(&stage, &chunk, options.compression)
            .and_then(|()| move_into_place(&stage, path, options.overwrite));
        if written.is_err() {
            let _ = std::fs::remove_dir_all(&stage);
            if options.overwrite == Overwrite::Refuse {
                let _ = std::fs::remove_dir(path);
            }
        }
        written
    }

    /// Writes the metadata and every block into a new store at `dir`.
    fn write_store(
        &self,
        dir: &Path,
        chunk: &[u64],
        compression: Compression,
    ) -> Result<(), ArrayError> {
        std::fs::create_dir(dir).map_err(|e| zarr_error("creating", dir, e))?;
        let metadata_error = |e: Box<dyn std::error::Error + Send + Sync>| {
            zarr_error("writing the metadata of", dir, ZarrError::Metadata(e))
        };
        let store = FilesystemStore::new(dir).map_err(|e| metadata_error(Box::new(e)))?;
        let shape: Vec<u64> = self.shape().iter().map(|&n| n as u64).collect();
        let mut builder = ArrayBuilder::new(
            shape,
            chunk.to_vec(),
            zarr_data_type(T::DTYPE),
            FillValue::from(vec![0u8; T::DTYPE.size()]),
        );
        if let Compression::Zstd { level } = compression {
            builder.bytes_to_bytes_codecs(vec![Arc::new(ZstdCodec::new(level, false))]);
        }
        let array = builder
            .build(Arc::new(store), "/")
            .map_err(|e| metadata_error(Box::new(e)))?;
        array
            .store_metadata()
            .map_err(|e| metadata_error(Box::new(e)))?;
        let array = Arc::new(array);
        let ctx = self.context();
        let dir: Arc<Path> = dir.into();
        let opts = host_options(ctx).name("to_zarr");
        let tasks: Vec<_> = self
            .blocks()
            .iter()
            .zip(self.subdomains())
            .map(|(b, dom)| {
                let array = array.clone();
                let dir = dir.clone();
                ctx.try_spawn_with(
                    opts.clone(),
                    move |v: Arc<Vec<T>>| -> Result<(), ArrayError> {
                        let region = dom.ranges().to_vec();
                        let bytes = ArrayBytes::new_flen(bytemuck::cast_slice::<T, u8>(&v));
                        array
                            .store_array_subset_opt(&subset(&region), bytes, &codec_options())
                            .map_err(|e| {
                                zarr_error(
                                    "writing a block of",
                                    &dir,
                                    ZarrError::Block {
                                        region,
                                        source: Box::new(e),
                                    },
                                )
                            })
                    },
                    (b.shared(),),
                )
            })
            .collect();
        for t in &tasks {
            t.wait();
        }
        match tasks.iter().find_map(|t| t.error()) {
            Some(e) => Err(ArrayError::Task(e)),
            None => Ok(()),
        }
    }
}

/// The chunk shape of a store whose chunks are the blocks of `grid`: the first block's
/// shape, when every block but the last along each dimension has it.
fn chunk_shape(grid: &Grid) -> Result<Vec<u64>, ZarrError> {
    grid.cuts
        .iter()
        .enumerate()
        .map(|(dim, cuts)| {
            let widths: Vec<usize> = cuts.windows(2).map(|w| w[1] - w[0]).collect();
            let first = widths.first().copied().unwrap_or(1).max(1);
            let regular = widths
                .iter()
                .enumerate()
                .all(|(i, &w)| w == first || (i + 1 == widths.len() && w < first));
            if regular {
                Ok(first as u64)
            } else {
                Err(ZarrError::IrregularBlocks {
                    dim,
                    cuts: cuts.clone(),
                })
            }
        })
        .collect()
}

/// Moves the complete store at `stage` to `path`: over the empty directory that reserved it
/// (refusing), or in place of whatever is there (replacing: a store, a file, or a link
/// itself, never what a link points to).
fn move_into_place(stage: &Path, path: &Path, overwrite: Overwrite) -> Result<(), ArrayError> {
    let replacing = |e| zarr_error("replacing", path, e);
    match overwrite {
        // Renaming a directory over an empty one replaces it at once.
        Overwrite::Refuse => std::fs::rename(stage, path).map_err(replacing),
        Overwrite::Replace => {
            let old = match std::fs::symlink_metadata(path) {
                Ok(meta) => {
                    // A directory cannot be renamed over a store, a file or a link: move
                    // the old one aside first, and back if the new one cannot go in.
                    let aside = sibling(path);
                    std::fs::rename(path, &aside).map_err(replacing)?;
                    Some((aside, meta.is_dir()))
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
                Err(e) => return Err(replacing(e)),
            };
            if let Err(e) = std::fs::rename(stage, path) {
                if let Some((aside, _)) = &old {
                    let _ = std::fs::rename(aside, path);
                }
                return Err(replacing(e));
            }
            if let Some((aside, is_dir)) = old {
                // `remove_dir_all` removes a link itself; `is_dir` is false for links.
                let _ = if is_dir {
                    std::fs::remove_dir_all(&aside)
                } else {
                    std::fs::remove_file(&aside)
                };
            }
            Ok(())
        }
    }
}
