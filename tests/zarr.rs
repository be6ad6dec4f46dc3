//! Arrays in and out of Zarr stores: round trips, stores zarr-python wrote, reads that happen
//! in the block tasks, and writes that never replace a store or follow a link unless asked.

mod common;

use std::path::{Path, PathBuf};

use dagger::array::{Compression, Element, Overwrite, ZarrError, ZarrOptions};
use dagger::prelude::*;
use dagger::ArrayError;
use ndarray::{ArrayD, IxDyn};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/zarr")
        .join(name)
}

fn ctx(threads: usize) -> Context {
    Context::builder()
        .threads(threads)
        .gpus(false)
        .build()
        .unwrap()
}

fn ramp<T: Element>(shape: &[usize]) -> ArrayD<T> {
    let n: usize = shape.iter().product();
    ArrayD::from_shape_vec(
        IxDyn(shape),
        (0..n).map(|i| T::from_f64(i as f64 - 3.0)).collect(),
    )
    .unwrap()
}

/// Every message along an error's source chain, joined.
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut s = e.source();
    while let Some(c) = s {
        out += ": ";
        out += &c.to_string();
        s = c.source();
    }
    out
}

/// The `ZarrError` somewhere along an error's source chain.
fn zarr_cause<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a ZarrError> {
    let mut s: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(c) = s {
        if let Some(z) = c.downcast_ref::<ZarrError>() {
            return Some(z);
        }
        s = c.source();
    }
    None
}

fn metadata(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path.join("zarr.json")).unwrap()).unwrap()
}

fn files_under(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p.strip_prefix(dir).unwrap().to_string_lossy().into_owned());
            }
        }
    }
    out.sort();
    out
}

fn round_trip<T: Element>(
    ctx: &Context,
    dir: &Path,
    shape: &[usize],
    block: &[usize],
    compression: Compression,
) {
    let a = ramp::<T>(shape);
    let d = DArray::distribute(ctx, &a, Blocks::new(block)).unwrap();
    let path = dir.join(format!(
        "{}-{shape:?}-{compression:?}.zarr",
        std::any::type_name::<T>()
    ));
    d.to_zarr_with(&path, ZarrOptions::new().compression(compression))
        .unwrap();
    // The chunks are the blocks (a block larger than the array is clipped to it; a
    // dimension with no elements has chunks of 1).
    let chunk: Vec<usize> = shape
        .iter()
        .zip(block)
        .map(|(&n, &b)| if n == 0 { 1 } else { b.min(n) })
        .collect();
    let meta = metadata(&path);
    assert_eq!(meta["zarr_format"], 3);
    assert_eq!(meta["shape"], serde_json::json!(shape));
    assert_eq!(
        meta["chunk_grid"]["configuration"]["chunk_shape"],
        serde_json::json!(chunk)
    );
    let codecs: Vec<&str> = meta["codecs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    match compression {
        Compression::Uncompressed => assert_eq!(codecs, ["bytes"]),
        _ => assert_eq!(codecs, ["bytes", "zstd"]),
    }
    // Read back with the store's chunks, then with another blocking: the same elements.
    let back = DArray::<T>::from_zarr(ctx, &path).unwrap();
    assert_eq!(back.shape(), shape);
    assert_eq!(back.block_counts(), d.block_counts(), "{path:?}");
    assert_eq!(back.collect().unwrap(), a, "{path:?}");
    let other: Vec<usize> = shape.iter().map(|&n| n.div_ceil(2).max(1)).collect();
    let back = DArray::<T>::from_zarr_with(ctx, &path, Blocks::new(other)).unwrap();
    assert_eq!(back.collect().unwrap(), a, "{path:?}");
}

#[test]
fn arrays_survive_a_round_trip_through_zarr() {
    let ctx = ctx(2);
    let dir = common::scratch("zarr", "round");
    let zstd = Compression::default();
    let raw = Compression::Uncompressed;
    // Edge blocks smaller than the chunks in every dimension.
    round_trip::<f64>(&ctx, &dir, &[7, 5], &[3, 2], zstd);
    round_trip::<f64>(&ctx, &dir, &[7, 5], &[3, 2], raw);
    round_trip::<f32>(&ctx, &dir, &[10], &[4], zstd);
    round_trip::<f32>(&ctx, &dir, &[129, 17], &[64, 16], raw);
    round_trip::<i32>(&ctx, &dir, &[3, 4, 5], &[2, 3, 2], zstd);
    round_trip::<u32>(&ctx, &dir, &[1, 9], &[1, 4], raw);
    round_trip::<u32>(&ctx, &dir, &[2, 3, 2, 3], &[1, 2, 2, 2], zstd);
    // One block larger than the array; an array with no elements.
    round_trip::<i32>(&ctx, &dir, &[3], &[5], raw);
    round_trip::<f32>(&ctx, &dir, &[0, 4], &[2, 2], zstd);

    // An uncompressed chunk holds the block's raw little-endian elements; a compressed
    // one of a constant block is smaller.
    let ones = DArray::<f32>::ones(&ctx, [64, 64], Blocks::new([32, 64])).unwrap();
    let raw_path = dir.join("ones-raw.zarr");
    ones.to_zarr_with(&raw_path, ZarrOptions::new().compression(raw))
        .unwrap();
    assert_eq!(files_under(&raw_path), ["c/0/0", "c/1/0", "zarr.json"]);
    let chunk = std::fs::read(raw_path.join("c/1/0")).unwrap();
    assert_eq!(chunk.len(), 32 * 64 * 4);
    assert_eq!(&chunk[..4], &1.0f32.to_le_bytes());
    let zstd_path = dir.join("ones-zstd.zarr");
    ones.to_zarr(&zstd_path).unwrap();
    assert!(std::fs::metadata(zstd_path.join("c/1/0")).unwrap().len() < 1024);

    // Values that are not small integers keep every bit.
    let odd = ArrayD::from_shape_vec(IxDyn(&[4]), vec![0.1f64, -0.0, f64::MAX, f64::NAN]).unwrap();
    let path = dir.join("odd.zarr");
    DArray::distribute(&ctx, &odd, Blocks::new([3]))
        .unwrap()
        .to_zarr(&path)
        .unwrap();
    let back = DArray::<f64>::from_zarr(&ctx, &path)
        .unwrap()
        .collect()
        .unwrap();
    let bits = |a: &ArrayD<f64>| a.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&back), bits(&odd));

    // A computed array is written from its block tasks.
    let a = DArray::<f64>::rand(&ctx, [50, 30], Blocks::new([16, 16]), 9).unwrap();
    let b = (&a * 2.0 + 1.0).sqrt();
    let path = dir.join("computed.zarr");
    b.to_zarr(&path).unwrap();
    assert_eq!(
        DArray::<f64>::from_zarr(&ctx, &path)
            .unwrap()
            .collect()
            .unwrap(),
        b.collect().unwrap()
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn stores_zarr_python_wrote_are_read() {
    let ctx = ctx(2);
    // zarr-python's default codecs (zstd); 5 x 7 in chunks of 2 x 3, so the last row and
    // column of chunks are clipped.
    let a = DArray::<f32>::from_zarr(&ctx, fixture("f32_5x7_zstd.zarr")).unwrap();
    assert_eq!(a.shape(), vec![5, 7]);
    assert_eq!(a.block_counts(), vec![3, 3]);
    assert_eq!(a.subdomains()[8].ranges(), &[4..5, 6..7]);
    let expect = ndarray::Array2::from_shape_fn((5, 7), |(i, j)| (10 * i + j) as f32 - 0.5);
    assert_eq!(a.collect2().unwrap(), expect);
    // Blocks across chunk boundaries read the same elements.
    let b = DArray::<f32>::from_zarr_with(&ctx, fixture("f32_5x7_zstd.zarr"), Blocks::new([3, 4]))
        .unwrap();
    assert_eq!(b.block_counts(), vec![2, 2]);
    assert_eq!(b.collect2().unwrap(), expect);

    let c = DArray::<i32>::from_zarr(&ctx, fixture("i32_10_raw.zarr")).unwrap();
    assert_eq!(c.block_counts(), vec![3]);
    assert_eq!(
        c.collect1().unwrap().to_vec(),
        (-5..5).collect::<Vec<i32>>()
    );

    let d = DArray::<f64>::from_zarr(&ctx, fixture("f64_3x4x2_gzip.zarr")).unwrap();
    assert_eq!(d.block_counts(), vec![2, 2, 1]);
    let d = d.collect().unwrap();
    assert_eq!(d.shape(), &[3, 4, 2]);
    for ((i, j, k), &v) in d
        .into_dimensionality::<ndarray::Ix3>()
        .unwrap()
        .indexed_iter()
    {
        assert_eq!(
            v,
            (100 * i + 10 * j + k) as f64 + 0.25,
            "at {:?}",
            (i, j, k)
        );
    }

    // Sharded: a block per shard.
    let f = DArray::<i32>::from_zarr(&ctx, fixture("i32_8x6_sharded.zarr")).unwrap();
    assert_eq!(f.block_counts(), vec![2, 1]);
    assert_eq!(
        f.collect2().unwrap(),
        ndarray::Array2::from_shape_fn((8, 6), |(i, j)| (6 * i + j) as i32)
    );

    // Chunks that were never written read as the fill value.
    let e = DArray::<u32>::from_zarr(&ctx, fixture("u32_4x4_fill.zarr"))
        .unwrap()
        .collect2()
        .unwrap();
    assert_eq!(
        e,
        ndarray::array![[0, 1, 7, 7], [2, 3, 7, 7], [7, 7, 7, 7], [7, 7, 7, 7]]
    );
}

#[test]
fn wrong_types_missing_stores_and_wrong_ranks_are_errors_that_say_so() {
    let ctx = ctx(1);
    // Another element type is an error naming the store and the type to read instead.
    let e = DArray::<f64>::from_zarr(&ctx, fixture("f32_5x7_zstd.zarr")).unwrap_err();
    assert!(
        matches!(
            &e,
            ArrayError::Zarr {
                op: "opening",
                source: ZarrError::DataType { .. },
                ..
            }
        ),
        "{e:?}"
    );
    let msg = chain(&e);
    assert!(msg.contains("f32_5x7_zstd.zarr"), "{msg}");
    assert!(msg.contains("float32") && msg.contains("float64"), "{msg}");
    assert!(msg.contains("read it as DArray<f32>"), "{msg}");
    // A type arrays cannot hold says to convert.
    let e = DArray::<i32>::from_zarr(&ctx, fixture("i64_3.zarr")).unwrap_err();
    let msg = chain(&e);
    assert!(
        msg.contains("int64") && msg.contains("convert the store"),
        "{msg}"
    );

    // Nothing at the path: the file system's error is the cause.
    let e = DArray::<f32>::from_zarr(&ctx, fixture("none.zarr")).unwrap_err();
    match &e {
        ArrayError::Zarr {
            source: ZarrError::Io(io),
            ..
        } => assert_eq!(io.kind(), std::io::ErrorKind::NotFound),
        other => panic!("{other:?}"),
    }
    // A directory that is not an array, and a file.
    for not_a_store in [fixture(""), fixture("make_zarr.py")] {
        let e = DArray::<f32>::from_zarr(&ctx, &not_a_store).unwrap_err();
        assert!(
            matches!(
                e,
                ArrayError::Zarr {
                    source: ZarrError::NotAnArray,
                    ..
                }
            ),
            "{not_a_store:?}: {e:?}"
        );
    }
    // A directory whose metadata is not Zarr's.
    let dir = common::scratch("zarr", "bad-meta");
    std::fs::write(
        dir.join("zarr.json"),
        b"{\"zarr_format\": 3, \"node_type\": 7}",
    )
    .unwrap();
    let e = DArray::<f32>::from_zarr(&ctx, &dir).unwrap_err();
    assert!(
        matches!(
            &e,
            ArrayError::Zarr {
                source: ZarrError::Metadata(_),
                ..
            }
        ),
        "{e:?}"
    );
    assert!(std::error::Error::source(&e).unwrap().source().is_some());
    std::fs::remove_dir_all(&dir).unwrap();

    // Blocks of another rank than the store's.
    let e = DArray::<f32>::from_zarr_with(&ctx, fixture("f32_5x7_zstd.zarr"), Blocks::new([2]))
        .unwrap_err();
    assert!(
        matches!(e, ArrayError::BlocksRank { ref shape, .. } if shape == &[5, 7]),
        "{e:?}"
    );
}

#[test]
fn blocks_are_read_by_their_tasks_not_at_the_call() {
    let ctx = ctx(1);
    let dir = common::scratch("zarr", "lazy");
    let path = dir.join("a.zarr");
    DArray::distribute(&ctx, &ramp::<i32>(&[8]), Blocks::new([4]))
        .unwrap()
        .to_zarr_with(
            &path,
            ZarrOptions::new().compression(Compression::Uncompressed),
        )
        .unwrap();

    // Hold the only thread, so no block task can run until the chunks have changed.
    let (started_tx, started) = std::sync::mpsc::channel();
    let (release, gate) = std::sync::mpsc::channel::<()>();
    let gate_task = ctx.spawn(
        move || {
            started_tx.send(()).unwrap();
            gate.recv().unwrap();
        },
        (),
    );
    started.recv().unwrap();
    let a = DArray::<i32>::from_zarr(&ctx, &path).unwrap();
    assert_eq!(a.num_blocks(), 2);

    // New elements for the first chunk; the second cut short.
    let new: Vec<u8> = [40i32, 41, 42, 43]
        .iter()
        .flat_map(|x| x.to_le_bytes())
        .collect();
    std::fs::write(path.join("c/0"), new).unwrap();
    std::fs::write(path.join("c/1"), [1u8, 2, 3]).unwrap();
    release.send(()).unwrap();
    gate_task.wait();

    // The first block was read after the call: it has the new elements.
    assert_eq!(
        a.slice_axis(0, 0..4).unwrap().collect1().unwrap().to_vec(),
        vec![40, 41, 42, 43]
    );
    // The second fails its task, naming the store and the block.
    let e = a.collect().unwrap_err();
    assert!(matches!(e, ArrayError::Task(_)), "{e:?}");
    let msg = chain(&e);
    assert!(msg.contains("a.zarr") && msg.contains("4..8"), "{msg}");
    assert!(
        matches!(zarr_cause(&e), Some(ZarrError::Block { region, .. }) if region.len() == 1 && region[0] == (4..8)),
        "{msg}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[cfg(unix)]
#[test]
fn writes_never_replace_a_store_or_follow_a_link_unasked() {
    let ctx = ctx(2);
    let dir = common::scratch("zarr", "safe");
    let a = DArray::<f32>::ones(&ctx, [6], Blocks::new([4])).unwrap();
    let twos = DArray::<f32>::fill(&ctx, [6], Blocks::new([4]), 2.0).unwrap();
    let read = |p: &Path| {
        DArray::<f32>::from_zarr(&ctx, p)
            .unwrap()
            .collect1()
            .unwrap()
            .to_vec()
    };

    // An existing store, file or directory is refused and left as it was.
    let store = dir.join("store.zarr");
    a.to_zarr(&store).unwrap();
    let e = twos.to_zarr(&store).unwrap_err();
    assert!(e.to_string().contains("Overwrite::Replace"), "{e}");
    assert!(
        matches!(
            &e,
            ArrayError::Zarr {
                source: ZarrError::Io(_),
                ..
            }
        ),
        "{e:?}"
    );
    assert_eq!(read(&store), vec![1.0; 6]);
    let file = dir.join("file");
    std::fs::write(&file, b"keep me").unwrap();
    assert!(a.to_zarr(&file).is_err());
    assert_eq!(std::fs::read(&file).unwrap(), b"keep me");

    // A link is not written through, dangling or not.
    let target = dir.join("target");
    std::fs::create_dir(&target).unwrap();
    std::fs::write(target.join("kept"), b"target").unwrap();
    let link = dir.join("link.zarr");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    assert!(a.to_zarr(&link).is_err());
    assert_eq!(files_under(&target), ["kept"]);
    let dangling_target = dir.join("nothing-here.zarr");
    let dangling = dir.join("dangling.zarr");
    std::os::unix::fs::symlink(&dangling_target, &dangling).unwrap();
    assert!(a.to_zarr(&dangling).is_err());
    assert!(
        !dangling_target.exists(),
        "the dangling link's target was created"
    );

    // Replacing swaps in a new store: the link itself goes, its target stays as it was.
    twos.to_zarr_with(&link, Overwrite::Replace).unwrap();
    assert!(!std::fs::symlink_metadata(&link)
        .unwrap()
        .file_type()
        .is_symlink());
    assert_eq!(files_under(&target), ["kept"]);
    assert_eq!(read(&link), vec![2.0; 6]);
    twos.to_zarr_with(&dangling, Overwrite::Replace).unwrap();
    assert!(!dangling_target.exists());
    assert_eq!(read(&dangling), vec![2.0; 6]);
    // A store is replaced whole: no chunk of the old one is left.
    let wide = DArray::<f32>::ones(&ctx, [6], Blocks::new([2])).unwrap();
    wide.to_zarr_with(&store, Overwrite::Replace).unwrap();
    twos.to_zarr_with(&store, Overwrite::Replace).unwrap();
    assert_eq!(files_under(&store), ["c/0", "c/1", "zarr.json"]);
    assert_eq!(read(&store), vec![2.0; 6]);
    twos.to_zarr_with(&file, Overwrite::Replace).unwrap();
    assert_eq!(read(&file), vec![2.0; 6]);

    // Blocks that are not a chunk grid are refused, leaving nothing behind.
    let big = DArray::<f32>::ones(&ctx, [12], Blocks::new([4])).unwrap();
    let sliced = big.slice_axis(0, 1..10).unwrap();
    let irregular = dir.join("irregular.zarr");
    let e = sliced.to_zarr(&irregular).unwrap_err();
    assert!(
        matches!(
            e,
            ArrayError::Zarr {
                source: ZarrError::IrregularBlocks { dim: 0, .. },
                ..
            }
        ),
        "{e:?}"
    );
    assert!(!irregular.exists());
    // A last block larger than the others is not a clipped chunk either.
    let two = DArray::<f32>::ones(&ctx, [2], Blocks::new([2])).unwrap();
    let three = DArray::<f32>::ones(&ctx, [3], Blocks::new([3])).unwrap();
    let joined = DArray::concatenate(&[&two, &three], 0).unwrap();
    assert!(matches!(
        joined.to_zarr(&irregular),
        Err(ArrayError::Zarr {
            source: ZarrError::IrregularBlocks { .. },
            ..
        })
    ));
    assert!(!irregular.exists());
    sliced
        .rechunk(Blocks::new([4]))
        .unwrap()
        .to_zarr(&irregular)
        .unwrap();
    assert_eq!(read(&irregular), vec![1.0; 9]);

    // A block that fails fails the write, and nothing is left at the path.
    let failing = a.map(|x| {
        assert!(x < 0.0, "a failing block");
        x
    });
    let failed = dir.join("failed.zarr");
    let e = failing.to_zarr(&failed).unwrap_err();
    assert!(matches!(e, ArrayError::Task(_)), "{e:?}");
    assert!(std::fs::symlink_metadata(&failed).is_err());
    // Nor anything else: no staged stores are left beside them.
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "dangling.zarr",
            "file",
            "irregular.zarr",
            "link.zarr",
            "store.zarr",
            "target"
        ]
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn zarr_python_reads_what_dagger_wrote() {
    let ctx = ctx(2);
    let dir = common::scratch("zarr", "python");
    let a = DArray::distribute(&ctx, &ramp::<f64>(&[7, 5]), Blocks::new([3, 2])).unwrap();
    a.to_zarr(dir.join("f64.zarr")).unwrap();
    let b = DArray::distribute(&ctx, &ramp::<u32>(&[2, 3, 4]), Blocks::new([1, 2, 4])).unwrap();
    b.to_zarr_with(
        dir.join("u32.zarr"),
        ZarrOptions::new().compression(Compression::Uncompressed),
    )
    .unwrap();
    common::python_agrees(
        "import sys, numpy as np, zarr\n\
             a = zarr.open_array(sys.argv[1], mode='r')\n\
             assert a.dtype == np.float64 and a.shape == (7, 5) and a.chunks == (3, 2), a.info\n\
             assert (a[...].ravel() == np.arange(35) - 3).all(), a[...]\n\
             b = zarr.open_array(sys.argv[2], mode='r')\n\
             assert b.dtype == np.uint32 and b.shape == (2, 3, 4), b.info\n\
             assert (b[...].ravel() == np.maximum(np.arange(24) - 3, 0)).all(), b[...]\n\
             print('zarr agrees')",
        &[&dir.join("f64.zarr"), &dir.join("u32.zarr")],
        "zarr agrees",
        "zarr",
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
