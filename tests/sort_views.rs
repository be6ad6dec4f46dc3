//! Sorting 1-D DArrays against `slice::sort`, N-D axis permutations, slices (views) and
//! `copy_into` against ndarray, on awkward shapes whose edge blocks are not multiples of the
//! block size, on the CPU scope, each GPU and the default scope.

mod common;

use common::Rng;
use dagger::prelude::*;
use dagger::{ArrayError, SortOrder};
use ndarray::{ArrayD, IxDyn, Slice};

fn scopes(ctx: &Context) -> Vec<Scope> {
    let mut v = vec![Scope::cpu(), Scope::default_scope()];
    for info in common::gpus_or_skip(ctx, "the GPU scopes") {
        v.push(Scope::gpu(info.index));
    }
    v
}

fn on<R>(scope: &Scope, f: impl FnOnce() -> R) -> R {
    with_options(Options::new().scope(scope.clone()), f)
}

/// `n` values from `rng`: with `distinct` few, many repeat; every `nan_every`-th is NaN.
fn floats(rng: &mut Rng, n: usize, distinct: u64, nan_every: usize) -> Vec<f64> {
    (0..n)
        .map(|i| {
            if nan_every > 0 && i % nan_every == nan_every - 1 {
                f64::NAN
            } else {
                rng.below(distinct) as f64 - (distinct / 2) as f64 + 0.25
            }
        })
        .collect()
}

/// The reference: `slice::sort_by` with NaN above every number, reversed for descending.
fn reference(mut v: Vec<f64>, order: SortOrder) -> Vec<f64> {
    v.sort_by(|a, b| {
        a.partial_cmp(b)
            .unwrap_or_else(|| a.is_nan().cmp(&b.is_nan()))
    });
    if order == SortOrder::Descending {
        v.reverse();
    }
    v
}

fn same(a: &[f64], b: &[f64]) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|(x, y)| x == y || (x.is_nan() && y.is_nan()))
}

#[test]
fn sort_matches_slice_sort_with_duplicates_and_nan() {
    let ctx = Context::builder().threads(2).build().unwrap();
    let mut rng = Rng::new(11);
    let cases = [
        (1, 4, 10, 0),
        (17, 4, 5, 3),
        (100, 7, 1000, 0),
        (100, 7, 3, 0),
        (1000, 33, 1 << 40, 17),
        (1000, 33, 1, 0),
        (4099, 512, 50, 100),
        (64, 64, 20, 9),
    ];
    for scope in scopes(&ctx) {
        for &(n, block, distinct, nan_every) in &cases {
            let v = floats(&mut rng, n, distinct, nan_every);
            let host = ndarray::Array1::from(v.clone());
            for order in [SortOrder::Ascending, SortOrder::Descending] {
                let want = reference(v.clone(), order);
                let d64 = DArray::distribute(&ctx, &host, Blocks::new([block])).unwrap();
                let s = on(&scope, || d64.sort_with(order)).unwrap();
                assert_eq!(s.block_counts(), d64.block_counts(), "keeps the blocking");
                let got = s.collect1().unwrap().to_vec();
                assert!(
                    same(&got, &want),
                    "f64 n {n} block {block} {order:?} on {scope}"
                );
                let d32 = DArray::distribute(&ctx, &host.mapv(|x| x as f32), Blocks::new([block]))
                    .unwrap();
                let got: Vec<f64> = on(&scope, || d32.sort_with(order))
                    .unwrap()
                    .collect1()
                    .unwrap()
                    .iter()
                    .map(|&x| x as f64)
                    .collect();
                // Rounding to f32 keeps the order: the reference rounded is the f32 sort.
                let want32: Vec<f64> = want.iter().map(|&x| x as f32 as f64).collect();
                assert!(
                    same(&got, &want32),
                    "f32 n {n} block {block} {order:?} on {scope}"
                );
            }
        }
    }
}

#[test]
fn sort_integers_and_the_empty_array() {
    let ctx = Context::builder().threads(2).build().unwrap();
    let mut rng = Rng::new(5);
    for (n, block) in [(0, 4), (2, 1), (333, 10), (1025, 100)] {
        let v: Vec<i32> = (0..n).map(|_| rng.below(200) as i32 - 100).collect();
        let d = DArray::distribute(
            &ctx,
            &ndarray::Array1::from(v.clone()),
            Blocks::new([block]),
        )
        .unwrap();
        let mut want = v.clone();
        want.sort();
        assert_eq!(
            d.sort().unwrap().collect1().unwrap().to_vec(),
            want,
            "i32 {n}"
        );
        let u: Vec<u32> = v.iter().map(|&x| x as u32).collect();
        let d = DArray::distribute(
            &ctx,
            &ndarray::Array1::from(u.clone()),
            Blocks::new([block]),
        )
        .unwrap();
        let mut want = u.clone();
        want.sort_by(|a, b| b.cmp(a));
        let got = d
            .sort_with(SortOrder::Descending)
            .unwrap()
            .collect1()
            .unwrap()
            .to_vec();
        assert_eq!(got, want, "u32 {n}");
    }
}

#[test]
fn sort_of_an_array_that_is_not_1d_names_its_shape() {
    let ctx = Context::builder().threads(1).build().unwrap();
    let a = DArray::<f32>::ones(&ctx, [3, 4], Blocks::new([2, 2])).unwrap();
    let e = a.sort().unwrap_err();
    assert!(
        matches!(&e, ArrayError::Dimensionality { expected: 1, shape } if shape == &vec![3, 4]),
        "{e}"
    );
    assert!(e.to_string().contains("[3, 4]"), "{e}");
}

fn random_nd(rng: &mut Rng, shape: &[usize]) -> ArrayD<f32> {
    ArrayD::from_shape_fn(IxDyn(shape), |_| rng.below(1000) as f32)
}

#[test]
fn permuted_axes_of_nd_arrays_match_ndarray() {
    let ctx = Context::builder().threads(2).build().unwrap();
    let mut rng = Rng::new(3);
    let cases: [(&[usize], &[usize], &[usize]); 4] = [
        (&[5, 3, 7], &[2, 2, 3], &[2, 0, 1]),
        (&[4, 1, 6, 3], &[3, 1, 4, 2], &[3, 1, 0, 2]),
        (&[9, 8], &[4, 5], &[1, 0]),
        (&[2, 3, 4, 5, 3], &[1, 2, 3, 2, 2], &[4, 3, 2, 1, 0]),
    ];
    for scope in scopes(&ctx) {
        for (shape, block, axes) in cases {
            let host = random_nd(&mut rng, shape);
            let d = DArray::distribute(&ctx, &host, Blocks::new(block)).unwrap();
            let p = on(&scope, || d.permuted_axes(axes)).unwrap();
            let want = host.clone().permuted_axes(IxDyn(axes));
            assert_eq!(p.shape(), want.shape());
            assert_eq!(
                p.collect().unwrap(),
                want,
                "{shape:?} by {axes:?} on {scope}"
            );
            // Permuting back gives the original.
            let mut inv = vec![0; axes.len()];
            for (i, &a) in axes.iter().enumerate() {
                inv[a] = i;
            }
            assert_eq!(p.permuted_axes(&inv).unwrap().collect().unwrap(), host);
        }
    }
    let d = DArray::<f32>::ones(&ctx, [2, 3, 4], Blocks::new([2, 2, 2])).unwrap();
    assert!(matches!(
        d.permuted_axes(&[0, 1]),
        Err(ArrayError::InvalidPermutation { .. })
    ));
    assert!(matches!(
        d.permuted_axes(&[0, 1, 3]),
        Err(ArrayError::InvalidPermutation { .. })
    ));
}

fn random_ranges(rng: &mut Rng, shape: &[usize]) -> Vec<std::ops::Range<usize>> {
    shape
        .iter()
        .map(|&n| {
            let a = rng.below(n as u64 + 1) as usize;
            let b = rng.below(n as u64 + 1) as usize;
            a.min(b)..a.max(b)
        })
        .collect()
}

fn slice_of<T: Clone>(a: &ArrayD<T>, r: &[std::ops::Range<usize>]) -> ArrayD<T> {
    a.slice_each_axis(|ax| Slice::from(r[ax.axis.index()].clone()))
        .to_owned()
}

#[test]
fn views_match_ndarray_slices() {
    let ctx = Context::builder().threads(2).build().unwrap();
    let mut rng = Rng::new(8);
    for _ in 0..40 {
        let shape = [
            1 + rng.below(13) as usize,
            1 + rng.below(9) as usize,
            1 + rng.below(5) as usize,
        ];
        let block = [
            1 + rng.below(5) as usize,
            1 + rng.below(4) as usize,
            1 + rng.below(3) as usize,
        ];
        let host = random_nd(&mut rng, &shape);
        let d = DArray::distribute(&ctx, &host, Blocks::new(block)).unwrap();
        let r = random_ranges(&mut rng, &shape);
        let v = d.slice(&r).unwrap();
        assert_eq!(
            v.collect().unwrap(),
            slice_of(&host, &r),
            "{shape:?} {block:?} {r:?}"
        );
    }
}

#[test]
fn copy_into_writes_the_region_and_nothing_else() {
    let ctx = Context::builder().threads(2).build().unwrap();
    let mut rng = Rng::new(21);
    for scope in scopes(&ctx) {
        for _ in 0..25 {
            let shape = [
                1 + rng.below(12) as usize,
                1 + rng.below(10) as usize,
                1 + rng.below(4) as usize,
            ];
            let dblock = [
                1 + rng.below(5) as usize,
                1 + rng.below(4) as usize,
                1 + rng.below(3) as usize,
            ];
            let r = random_ranges(&mut rng, &shape);
            let rshape: Vec<usize> = r.iter().map(|x| x.len()).collect();
            let sblock: Vec<usize> = rshape
                .iter()
                .map(|&n| 1 + rng.below(n.max(1) as u64 + 1) as usize)
                .collect();
            let dst_host = random_nd(&mut rng, &shape);
            let src_host = random_nd(&mut rng, &rshape).mapv(|x| x + 5000.0);
            let mut dst = DArray::distribute(&ctx, &dst_host, Blocks::new(dblock)).unwrap();
            let before = dst.clone();
            let src = DArray::distribute(&ctx, &src_host, Blocks::new(sblock.clone())).unwrap();
            on(&scope, || src.copy_into(&mut dst, &r)).unwrap();
            let mut want = dst_host.clone();
            want.slice_each_axis_mut(|ax| Slice::from(r[ax.axis.index()].clone()))
                .assign(&src_host);
            let what =
                format!("{shape:?} blocks {dblock:?}, region {r:?} blocks {sblock:?} on {scope}");
            assert_eq!(dst.collect().unwrap(), want, "{what}");
            assert_eq!(
                before.collect().unwrap(),
                dst_host,
                "other handles keep the old contents: {what}"
            );
        }
    }
}

#[test]
fn copy_into_aligned_blocks_and_errors() {
    let ctx = Context::builder().threads(2).build().unwrap();
    let mut dst = DArray::<f64>::zeros(&ctx, [6, 6], Blocks::new([2, 3])).unwrap();
    let src = DArray::<f64>::ones(&ctx, [4, 3], Blocks::new([2, 3])).unwrap();
    src.copy_into(&mut dst, &[2..6, 3..6]).unwrap();
    assert_eq!(dst.sum().fetch().unwrap(), 12.0);
    assert_eq!(
        dst.slice(&[2..6, 3..6]).unwrap().collect().unwrap(),
        src.collect().unwrap()
    );
    let e = src.copy_into(&mut dst, &[0..4, 0..4]).unwrap_err();
    assert!(
        e.to_string().contains("[4, 3]") && e.to_string().contains("[4, 4]"),
        "{e}"
    );
    let e = src.copy_into(&mut dst, &[4..8, 0..3]).unwrap_err();
    assert!(matches!(e, ArrayError::SliceOutOfBounds { .. }), "{e}");
    let one_range: Vec<std::ops::Range<usize>> = std::iter::once(0..4).collect();
    assert!(src.copy_into(&mut dst, &one_range).is_err());
}
