//! Sorting along an axis and argsort against a stable `slice::sort_by` of every lane (numpy's
//! semantics: NaN last ascending, ties in input order), on blockings that do and do not
//! divide the shape, and against numpy itself when it is there.

mod common;

use common::Rng;
use dagger::prelude::*;
use dagger::{ArrayError, SortOrder};
use ndarray::{ArrayD, Axis, IxDyn};
use std::cmp::Ordering;

/// numpy's order: NaN above every number and equal to every NaN; `-0.0 == 0.0`.
fn cmp(a: f64, b: f64, order: SortOrder) -> Ordering {
    let o = a
        .partial_cmp(&b)
        .unwrap_or_else(|| a.is_nan().cmp(&b.is_nan()));
    match order {
        SortOrder::Ascending => o,
        SortOrder::Descending => o.reverse(),
    }
}

/// The stable argsort of every lane along `axis`, and the sorted lanes.
fn reference(a: &ArrayD<f64>, axis: usize, order: SortOrder) -> (ArrayD<f64>, ArrayD<u32>) {
    let mut sorted = a.clone();
    let mut idx = a.mapv(|_| 0u32);
    for ((lane, mut s), mut i) in a
        .lanes(Axis(axis))
        .into_iter()
        .zip(sorted.lanes_mut(Axis(axis)))
        .zip(idx.lanes_mut(Axis(axis)))
    {
        let mut ix: Vec<usize> = (0..lane.len()).collect();
        ix.sort_by(|&p, &q| cmp(lane[p], lane[q], order)); // stable
        for (t, &p) in ix.iter().enumerate() {
            s[t] = lane[p];
            i[t] = p as u32;
        }
    }
    (sorted, idx)
}

/// Bit for bit, so that `-0.0` and `0.0` in the wrong places fail; any NaN matches any NaN.
fn same_bits(got: &ArrayD<f64>, want: &ArrayD<f64>) -> bool {
    got.shape() == want.shape()
        && got
            .iter()
            .zip(want)
            .all(|(x, y)| x.to_bits() == y.to_bits() || (x.is_nan() && y.is_nan()))
}

/// Values with many repeats (`distinct` of them), signed zeros of both signs, and NaN at
/// every `nan_every`-th place.
fn values(rng: &mut Rng, shape: &[usize], distinct: u64, nan_every: usize) -> ArrayD<f64> {
    let mut k = 0;
    ArrayD::from_shape_fn(IxDyn(shape), |_| {
        k += 1;
        let r = rng.below(distinct + 2);
        if nan_every > 0 && k % nan_every == 0 {
            f64::NAN
        } else if r == distinct {
            -0.0
        } else if r == distinct + 1 {
            0.0
        } else {
            r as f64 - (distinct / 2) as f64 + 0.5
        }
    })
}

const ORDERS: [SortOrder; 2] = [SortOrder::Ascending, SortOrder::Descending];

fn check(ctx: &Context, host: &ArrayD<f64>, block: &[usize], axis: usize) {
    let d = DArray::distribute(ctx, host, Blocks::new(block)).unwrap();
    for order in ORDERS {
        let what = format!(
            "shape {:?} blocks {block:?} axis {axis} {order:?}",
            host.shape()
        );
        let (want, want_idx) = reference(host, axis, order);
        let s = d.sort_axis(axis, order).unwrap();
        assert_eq!(s.subdomains(), d.subdomains(), "keeps the blocking: {what}");
        assert!(same_bits(&s.collect().unwrap(), &want), "sort {what}");
        let i = d.argsort_axis(axis, order).unwrap();
        assert_eq!(i.subdomains(), d.subdomains(), "keeps the blocking: {what}");
        assert_eq!(i.collect().unwrap(), want_idx, "argsort {what}");
    }
}

#[test]
fn sort_and_argsort_along_each_axis_of_2d_arrays() {
    let ctx = Context::builder().threads(2).build().unwrap();
    let mut rng = Rng::new(17);
    // (shape, blocks): dividing the shape, not dividing it, one block, blocks of one.
    let cases: [([usize; 2], [usize; 2]); 6] = [
        ([12, 9], [4, 3]),
        ([13, 10], [5, 4]),
        ([7, 11], [7, 11]),
        ([6, 5], [1, 1]),
        ([40, 3], [9, 2]),
        ([3, 300], [2, 70]),
    ];
    for (shape, block) in cases {
        for (distinct, nan_every) in [(4, 5), (1000, 0), (2, 0)] {
            let host = values(&mut rng, &shape, distinct, nan_every);
            for axis in 0..2 {
                check(&ctx, &host, &block, axis);
            }
        }
    }
}

#[test]
fn sort_and_argsort_along_the_axes_of_a_3d_array() {
    let ctx = Context::builder().threads(2).build().unwrap();
    let mut rng = Rng::new(29);
    for (shape, block) in [([4, 5, 23], [3, 2, 6]), ([2, 3, 16], [2, 3, 4])] {
        let host = values(&mut rng, &shape, 6, 7);
        for axis in 0..3 {
            check(&ctx, &host, &block, axis);
        }
    }
}

#[test]
fn long_1d_arrays_are_radix_sorted_stably_across_blocks() {
    let ctx = Context::builder().threads(2).build().unwrap();
    let mut rng = Rng::new(3);
    // Pieces long enough for the radix sort; 7000 does not divide 50_000.
    for (n, block, distinct, nan_every) in [(50_000, 7000, 30, 11), (20_000, 5000, 1 << 40, 0)] {
        let host = values(&mut rng, &[n], distinct, nan_every);
        let d = DArray::distribute(&ctx, &host, Blocks::new([block])).unwrap();
        for order in ORDERS {
            let (want, want_idx) = reference(&host, 0, order);
            let s = d.sort_with(order).unwrap();
            assert_eq!(s.block_counts(), d.block_counts());
            assert!(same_bits(&s.collect().unwrap(), &want), "n {n} {order:?}");
            let i = d.argsort_with(order).unwrap().collect().unwrap();
            assert_eq!(i, want_idx, "argsort n {n} {order:?}");
        }
    }
}

#[test]
fn runs_of_two_and_more_blocks_merge_as_one_sort_with_and_without_nan_and_signed_zeros() {
    // Two blocks, then five: each result block merges two runs, or up to five two by two,
    // a vector at a time for `f64` and `f32` (their zeros and NaNs laid out in run order),
    // one at a time for other types. Lengths around whole vectors, runs that
    // interleave and runs one wholly below the other, few distinct values and many.
    let ctx = Context::builder().threads(2).build().unwrap();
    let mut rng = Rng::new(29);
    for (n, parts) in [16usize, 17, 31, 1000, 20_001]
        .into_iter()
        .flat_map(|n| [(n, 2), (n, 5)])
    {
        let block = n.div_ceil(parts);
        let mut hosts: Vec<(&str, ArrayD<f64>)> = vec![
            (
                "few distinct",
                values(&mut rng, &[n], 7, 0).mapv(|x| x + 0.0),
            ),
            (
                "many distinct",
                values(&mut rng, &[n], 1 << 40, 0).mapv(|x| x + 0.0),
            ),
            ("with -0.0", values(&mut rng, &[n], 9, 0)),
            (
                "with NaN",
                values(&mut rng, &[n], 1 << 20, 13).mapv(|x| x + 0.0),
            ),
        ];
        // Ascending then descending halves: the runs do not interleave.
        let split = ArrayD::from_shape_fn(IxDyn(&[n]), |i| {
            let i = i[0] as f64;
            if i < block as f64 {
                i
            } else {
                -i
            }
        });
        hosts.push(("disjoint runs", split));
        for (what, host) in hosts {
            let d = DArray::distribute(&ctx, &host, Blocks::new([block])).unwrap();
            assert_eq!(d.block_counts(), vec![n.div_ceil(block)]);
            let d32 =
                DArray::distribute(&ctx, &host.mapv(|x| x as f32), Blocks::new([block])).unwrap();
            for order in ORDERS {
                let (want, _) = reference(&host, 0, order);
                let got = d.sort_with(order).unwrap().collect().unwrap();
                assert!(same_bits(&got, &want), "{what}, n {n}, {order:?}");
                // Rounding to f32 keeps the order; values it makes equal are the same bits.
                let got = d32.sort_with(order).unwrap().collect().unwrap();
                assert!(
                    got.iter().zip(&want).all(|(x, y)| {
                        x.to_bits() == (*y as f32).to_bits() || (x.is_nan() && y.is_nan())
                    }),
                    "f32 {what}, n {n}, {order:?}"
                );
            }
            let i = d.argsort().unwrap().collect().unwrap();
            assert_eq!(
                i,
                reference(&host, 0, SortOrder::Ascending).1,
                "argsort {what}, n {n}"
            );
        }
        // Not f64: merged one element at a time.
        let ints = values(&mut rng, &[n], 1 << 30, 0).mapv(|x| x.floor() as i32);
        let d = DArray::distribute(&ctx, &ints, Blocks::new([block])).unwrap();
        let mut want = ints.iter().copied().collect::<Vec<_>>();
        want.sort();
        assert_eq!(
            d.sort()
                .unwrap()
                .collect()
                .unwrap()
                .into_raw_vec_and_offset()
                .0,
            want
        );
    }
}

#[test]
fn long_lanes_of_2d_arrays_cross_blocks() {
    let ctx = Context::builder().threads(2).build().unwrap();
    let mut rng = Rng::new(71);
    // Pieces of lanes long enough for the radix sort, along the last axis and the first.
    let host = values(&mut rng, &[3, 5000], 40, 23);
    check(&ctx, &host, &[2, 2100], 1);
    let host = values(&mut rng, &[5000, 3], 1 << 30, 0);
    check(&ctx, &host, &[2100, 2], 0);
}

#[test]
fn argsort_keeps_ties_in_input_order() {
    let ctx = Context::builder().threads(2).build().unwrap();
    let v = [2.0, 1.0, f64::NAN, 2.0, 0.0, -0.0, 1.0, f64::NAN, 2.0, 0.0];
    let d = DArray::distribute(&ctx, &ndarray::arr1(&v), Blocks::new([3])).unwrap();
    let up = d.argsort().unwrap().collect1().unwrap().to_vec();
    assert_eq!(up, vec![4, 5, 9, 1, 6, 0, 3, 8, 2, 7]);
    let down = d
        .argsort_with(SortOrder::Descending)
        .unwrap()
        .collect1()
        .unwrap()
        .to_vec();
    assert_eq!(down, vec![2, 7, 0, 3, 8, 1, 6, 4, 5, 9]);
    // Equal zeros keep their order in the sorted values too.
    let s = d.sort().unwrap().collect1().unwrap();
    let signs: Vec<bool> = s.iter().take(3).map(|x| x.is_sign_negative()).collect();
    assert_eq!(signs, vec![false, true, false]);
}

#[test]
fn integer_and_f32_arrays_sort_along_an_axis() {
    let ctx = Context::builder().threads(2).build().unwrap();
    let mut rng = Rng::new(8);
    let host = values(&mut rng, &[9, 14], 50, 0);
    for axis in 0..2 {
        for order in ORDERS {
            let (want, want_idx) = reference(&host, axis, order);
            let i32s =
                DArray::distribute(&ctx, &host.mapv(|x| x.floor() as i32), Blocks::new([4, 5]))
                    .unwrap();
            assert_eq!(
                i32s.sort_axis(axis, order).unwrap().collect().unwrap(),
                want.mapv(|x| x.floor() as i32),
                "i32 axis {axis} {order:?}"
            );
            let u32s = DArray::distribute(
                &ctx,
                &host.mapv(|x| (x + 100.0) as u32),
                Blocks::new([2, 3]),
            )
            .unwrap();
            assert_eq!(
                u32s.sort_axis(axis, order).unwrap().collect().unwrap(),
                want.mapv(|x| (x + 100.0) as u32),
                "u32 axis {axis} {order:?}"
            );
            let f32s =
                DArray::distribute(&ctx, &host.mapv(|x| x as f32), Blocks::new([5, 5])).unwrap();
            assert_eq!(
                f32s.argsort_axis(axis, order).unwrap().collect().unwrap(),
                want_idx,
                "f32 argsort axis {axis} {order:?}"
            );
        }
    }
}

#[test]
fn bad_axes_and_dimensions_are_errors_that_say_what_to_change() {
    let ctx = Context::builder().threads(1).build().unwrap();
    let a = DArray::<f64>::ones(&ctx, [3, 4], Blocks::new([2, 2])).unwrap();
    let e = a.sort_axis(2, SortOrder::Ascending).unwrap_err();
    assert!(
        matches!(e, ArrayError::AxisOutOfRange { axis: 2, ndim: 2 }),
        "{e}"
    );
    assert!(e.to_string().contains("use an axis below 2"), "{e}");
    let e = a.argsort_axis(5, SortOrder::Descending).unwrap_err();
    assert!(
        matches!(e, ArrayError::AxisOutOfRange { axis: 5, ndim: 2 }),
        "{e}"
    );
    let e = a.argsort().unwrap_err();
    assert!(
        matches!(&e, ArrayError::Dimensionality { expected: 1, shape } if shape == &vec![3, 4]),
        "{e}"
    );
}

#[test]
fn empty_arrays_and_scopes() {
    let ctx = Context::builder().threads(2).build().unwrap();
    let e = DArray::<f32>::zeros(&ctx, [0, 4], Blocks::new([2, 2])).unwrap();
    assert_eq!(
        e.sort_axis(1, SortOrder::Ascending).unwrap().shape(),
        vec![0, 4]
    );
    assert_eq!(
        e.argsort_axis(0, SortOrder::Ascending).unwrap().shape(),
        vec![0, 4]
    );
    // Under a GPU scope the sort runs on CPU threads all the same.
    let mut rng = Rng::new(4);
    let host = values(&mut rng, &[10, 6], 5, 3);
    let (want, _) = reference(&host, 0, SortOrder::Ascending);
    let d = DArray::distribute(&ctx, &host, Blocks::new([3, 4])).unwrap();
    let mut scopes = vec![Scope::cpu(), Scope::default_scope()];
    for info in common::gpus_or_skip(&ctx, "the GPU scopes") {
        scopes.push(Scope::gpu(info.index));
    }
    for scope in scopes {
        let s = with_options(Options::new().scope(scope.clone()), || {
            d.sort_axis(0, SortOrder::Ascending)
        })
        .unwrap();
        assert!(same_bits(&s.collect().unwrap(), &want), "on {scope}");
    }
}

#[test]
fn numpy_agrees_on_sort_and_stable_argsort() {
    let ctx = Context::builder().threads(2).build().unwrap();
    let dir = common::scratch("sort", "numpy");
    let mut rng = Rng::new(12);
    let host = values(&mut rng, &[3, 37, 29], 9, 13);
    let d = DArray::distribute(&ctx, &host, Blocks::new([2, 10, 8])).unwrap();
    let input = dir.join("a.npy");
    d.to_npy(&input).unwrap();
    let mut files = vec![input];
    for axis in 0..3 {
        let s = dir.join(format!("sort{axis}.npy"));
        d.sort_axis(axis, SortOrder::Ascending)
            .unwrap()
            .to_npy(&s)
            .unwrap();
        let i = dir.join(format!("argsort{axis}.npy"));
        d.argsort_axis(axis, SortOrder::Ascending)
            .unwrap()
            .to_npy(&i)
            .unwrap();
        files.extend([s, i]);
    }
    let args: Vec<&std::path::Path> = files.iter().map(|p| p.as_path()).collect();
    common::python_agrees(
        "import sys, numpy as np\n\
         a = np.load(sys.argv[1])\n\
         ok = True\n\
         for k in range(3):\n\
         \x20   s, i = np.load(sys.argv[2 + 2 * k]), np.load(sys.argv[3 + 2 * k])\n\
         \x20   ok &= np.array_equal(np.sort(a, axis=k), s, equal_nan=True)\n\
         \x20   ok &= np.array_equal(np.argsort(a, axis=k, kind='stable'), i)\n\
         print('agree' if ok else 'differ')\n",
        &args,
        "agree",
        "numpy",
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn nan_payloads_and_signed_zeros_come_back_in_input_order() {
    let ctx = Context::builder().threads(2).build().unwrap();
    let mut rng = Rng::new(44);
    let other_nan = f64::from_bits(f64::NAN.to_bits() | 5);
    // Long pieces (radix sorted) with one NaN, with NaNs of several bits, with -0.0.
    let specials: [&[f64]; 3] = [&[f64::NAN], &[f64::NAN, other_nan, -f64::NAN], &[-0.0]];
    for special in specials {
        let v: Vec<f64> = (0..30_000)
            .map(|i| {
                if i % 97 == 0 {
                    special[(i / 97) % special.len()]
                } else if i % 89 == 0 {
                    0.0
                } else {
                    rng.below(5000) as f64 - 2500.0
                }
            })
            .collect();
        let host = ndarray::Array1::from(v).into_dyn();
        for block in [30_000, 7_000] {
            let d64 = DArray::distribute(&ctx, &host, Blocks::new([block])).unwrap();
            let d32 =
                DArray::distribute(&ctx, &host.mapv(|x| x as f32), Blocks::new([block])).unwrap();
            for order in ORDERS {
                let (want, _) = reference(&host, 0, order);
                let got = d64.sort_with(order).unwrap().collect().unwrap();
                let what = format!("{special:?} blocks of {block} {order:?}");
                assert!(
                    got.iter()
                        .zip(&want)
                        .all(|(a, b)| a.to_bits() == b.to_bits()),
                    "f64 {what}"
                );
                let got = d32.sort_with(order).unwrap().collect().unwrap();
                assert!(
                    got.iter()
                        .zip(&want)
                        .all(|(a, b)| a.to_bits() == (*b as f32).to_bits()),
                    "f32 {what}"
                );
            }
        }
    }
}
