//! Arrays in and out of `.npy` files: round trips, files numpy wrote, and writes that never
//! replace a file or follow a link unless asked.

mod common;

use std::path::{Path, PathBuf};

use dagger::array::{Element, Overwrite};
use dagger::prelude::*;
use dagger::ArrayError;
use ndarray::{ArrayD, IxDyn};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/npy")
        .join(name)
}

fn ramp<T: Element>(shape: &[usize]) -> ArrayD<T> {
    let n: usize = shape.iter().product();
    ArrayD::from_shape_vec(
        IxDyn(shape),
        (0..n).map(|i| T::from_f64(i as f64 - 3.0)).collect(),
    )
    .unwrap()
}

fn round_trip<T: Element>(ctx: &Context, dir: &Path, shape: &[usize], block: &[usize]) {
    let a = ramp::<T>(shape);
    let d = DArray::distribute(ctx, &a, Blocks::new(block)).unwrap();
    let path = dir.join(format!("{}-{shape:?}.npy", std::any::type_name::<T>()));
    d.to_npy(&path).unwrap();
    // Read back with another blocking: the same elements, bit for bit.
    let other: Vec<usize> = shape.iter().map(|&n| n.div_ceil(2).max(1)).collect();
    let back = DArray::<T>::from_npy(ctx, &path, Blocks::new(other)).unwrap();
    assert_eq!(back.shape(), shape);
    assert_eq!(back.collect().unwrap(), a, "{path:?}");
}

#[test]
fn arrays_survive_a_round_trip_through_npy() {
    let ctx = Context::builder().threads(2).gpus(false).build().unwrap();
    let dir = common::scratch("npy", "round");
    round_trip::<f64>(&ctx, &dir, &[7, 5], &[3, 2]);
    round_trip::<f32>(&ctx, &dir, &[10], &[4]);
    round_trip::<i32>(&ctx, &dir, &[3, 4, 5], &[2, 3, 2]);
    round_trip::<u32>(&ctx, &dir, &[1, 9], &[1, 4]);
    // Values that are not small integers keep every bit.
    let odd = ArrayD::from_shape_vec(IxDyn(&[4]), vec![0.1f64, -0.0, f64::MAX, f64::NAN]).unwrap();
    let path = dir.join("odd.npy");
    DArray::distribute(&ctx, &odd, Blocks::new([3]))
        .unwrap()
        .to_npy(&path)
        .unwrap();
    let back = DArray::<f64>::from_npy(&ctx, &path, Blocks::new([4]))
        .unwrap()
        .collect()
        .unwrap();
    let bits = |a: &ArrayD<f64>| a.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&back), bits(&odd));
    // numpy reads what dagger wrote, when it is installed (the fixtures below cover the
    // other direction without it).
    common::python_agrees(
        "import sys, numpy as np; a = np.load(sys.argv[1]); \
         assert a.dtype == np.float64 and a.shape == (7, 5), (a.dtype, a.shape); \
         assert (a.ravel() == np.arange(35) - 3).all(); print('numpy agrees')",
        &[&dir.join("f64-[7, 5].npy")],
        "numpy agrees",
        "numpy",
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn files_numpy_wrote_are_read() {
    let ctx = Context::builder().threads(2).gpus(false).build().unwrap();
    let a = DArray::<f64>::from_npy(&ctx, fixture("f64_c_3x4.npy"), Blocks::new([2, 3]))
        .unwrap()
        .collect2()
        .unwrap();
    assert_eq!(
        a,
        ndarray::Array2::from_shape_fn((3, 4), |(i, j)| (10 * i + j) as f64)
    );
    // Fortran order comes back in the right places.
    let b = DArray::<f32>::from_npy(
        &ctx,
        fixture("f32_fortran_2x3x2.npy"),
        Blocks::new([1, 2, 2]),
    )
    .unwrap()
    .collect()
    .unwrap();
    assert_eq!(b.shape(), &[2, 3, 2]);
    for ((i, j, k), &v) in b
        .into_dimensionality::<ndarray::Ix3>()
        .unwrap()
        .indexed_iter()
    {
        assert_eq!(v, (100 * i + 10 * j + k) as f32 - 0.5, "at {:?}", (i, j, k));
    }
    let c = DArray::<i32>::from_npy(&ctx, fixture("i32_7.npy"), Blocks::new([3]))
        .unwrap()
        .collect()
        .unwrap();
    assert_eq!(c.into_raw_vec_and_offset().0, (-3..4).collect::<Vec<i32>>());

    // Another element type is an error naming the file, not a conversion.
    let e = DArray::<f32>::from_npy(&ctx, fixture("f64_c_3x4.npy"), Blocks::new([2, 2]))
        .map(|_| ())
        .unwrap_err();
    assert!(matches!(e, ArrayError::File { .. }), "{e:?}");
    assert!(e.to_string().contains("f64_c_3x4.npy"), "{e}");
    assert!(std::error::Error::source(&e).is_some());
    // As is a file that is not there, or not a .npy.
    let missing = DArray::<f32>::from_npy(&ctx, fixture("none.npy"), Blocks::new([2]));
    assert!(matches!(
        missing,
        Err(ArrayError::File { op: "opening", .. })
    ));
    let script = DArray::<f32>::from_npy(&ctx, fixture("make_npy.py"), Blocks::new([2]));
    assert!(matches!(script, Err(ArrayError::File { .. })));
}

#[cfg(unix)]
#[test]
fn writes_never_replace_a_file_or_follow_a_link_unasked() {
    let ctx = Context::builder().threads(1).gpus(false).build().unwrap();
    let dir = common::scratch("npy", "safe");
    let a = DArray::<f32>::ones(&ctx, [6], Blocks::new([4])).unwrap();

    // An existing file is refused and left as it was.
    let existing = dir.join("existing.npy");
    std::fs::write(&existing, b"keep me").unwrap();
    let e = a.to_npy(&existing).unwrap_err();
    assert!(e.to_string().contains("Overwrite::Replace"), "{e}");
    assert_eq!(std::fs::read(&existing).unwrap(), b"keep me");

    // A link is not written through, dangling or not.
    let target = dir.join("target.txt");
    std::fs::write(&target, b"target").unwrap();
    let link = dir.join("link.npy");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    assert!(a.to_npy(&link).is_err());
    let dangling_target = dir.join("nothing-here.npy");
    let dangling = dir.join("dangling.npy");
    std::os::unix::fs::symlink(&dangling_target, &dangling).unwrap();
    assert!(a.to_npy(&dangling).is_err());
    assert!(
        !dangling_target.exists(),
        "the dangling link's target was created"
    );

    // Replacing swaps in a new file: the link itself goes, its target stays as it was.
    a.to_npy_with(&link, Overwrite::Replace).unwrap();
    assert!(!std::fs::symlink_metadata(&link)
        .unwrap()
        .file_type()
        .is_symlink());
    assert_eq!(std::fs::read(&target).unwrap(), b"target");
    let back = DArray::<f32>::from_npy(&ctx, &link, Blocks::new([6]))
        .unwrap()
        .collect()
        .unwrap();
    assert_eq!(back.into_raw_vec_and_offset().0, vec![1.0f32; 6]);
    a.to_npy_with(&existing, Overwrite::Replace).unwrap();
    assert_ne!(std::fs::read(&existing).unwrap(), b"keep me");
    // No partial files are left beside them.
    let names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        names.iter().all(|n| !n.contains("partial")),
        "left behind: {names:?}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
