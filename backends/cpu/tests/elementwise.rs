//! The elementwise loops against naive index arithmetic: broadcast on either side, folds
//! on both sides of the lane width, reductions along every axis of a 3-D block, strided and
//! permuted box copies, and random numbers in range, reproducible and independent of how
//! an array is split into blocks.

use dagger_cpu::elementwise::{
    copy_box, fill, fold, for_each_row, map, mix, random_box, random_key, random_value,
    reduce_axis, zip, BoxMap, RandomFloat, MAX_DIMS,
};

/// Row-major strides of `shape`.
fn strides(shape: &[usize]) -> Vec<usize> {
    let mut s = vec![1; shape.len()];
    for d in (0..shape.len().saturating_sub(1)).rev() {
        s[d] = s[d + 1] * shape[d + 1];
    }
    s
}

/// Every multi-index of `shape`, in row-major order.
fn indices(shape: &[usize]) -> Vec<Vec<usize>> {
    let mut out = vec![vec![]];
    for &n in shape {
        out = out
            .into_iter()
            .flat_map(|i| {
                (0..n).map(move |k| {
                    let mut j = i.clone();
                    j.push(k);
                    j
                })
            })
            .collect();
    }
    out
}

fn dot(i: &[usize], s: &[usize]) -> usize {
    i.iter().zip(s).map(|(a, b)| a * b).sum()
}

#[test]
fn map_applies_to_every_element() {
    let x: Vec<i32> = (0..37).collect();
    let mut out = vec![0.0f64; 37];
    map(&x, &mut out, |v| f64::from(v) * 0.5);
    for (i, o) in out.iter().enumerate() {
        assert_eq!(*o, i as f64 * 0.5);
    }
}

#[test]
#[should_panic(expected = "map: the input has 3 elements but the output 2")]
fn map_rejects_mismatched_lengths() {
    map(&[1, 2, 3], &mut [0; 2], |v| v);
}

#[test]
fn zip_broadcasts_either_side() {
    let a: Vec<i64> = (0..20).collect();
    let b: Vec<i64> = (100..120).collect();
    let sub = |x: i64, y: i64| x - y;

    let mut out = vec![0; 20];
    zip(&a, &b, &mut out, sub);
    assert!(out.iter().all(|&o| o == -100));

    zip(&[1000], &b, &mut out, sub);
    assert_eq!(out, b.iter().map(|y| 1000 - y).collect::<Vec<_>>());

    zip(&a, &[1000], &mut out, sub);
    assert_eq!(out, a.iter().map(|x| x - 1000).collect::<Vec<_>>());

    let mut one = [0];
    zip(&[7], &[3], &mut one, sub);
    assert_eq!(one, [4]);
}

#[test]
#[should_panic(expected = "zip: b has 3 elements")]
fn zip_rejects_mismatched_lengths() {
    zip(&[1, 2], &[1, 2, 3], &mut [0; 2], |x, y| x + y);
}

#[test]
fn fold_matches_a_sequential_fold_across_the_lane_width() {
    for n in [1, 2, 7, 8, 15, 16, 17, 24, 31, 100, 1001] {
        let x: Vec<u64> = (0..n as u64).map(|i| i * i + 3).collect();
        assert_eq!(
            fold(&x, |a, b| a + b),
            x.iter().sum::<u64>(),
            "sum, n = {n}"
        );
        assert_eq!(fold(&x, u64::max), *x.iter().max().unwrap(), "max, n = {n}");
        let w: Vec<u32> = (0..n as u32)
            .map(|i| i.wrapping_mul(2_654_435_761))
            .collect();
        assert_eq!(
            fold(&w, u32::wrapping_mul),
            w.iter().fold(1u32, |a, &b| a.wrapping_mul(b)),
            "wrapping product, n = {n}"
        );
    }
}

#[test]
fn reduce_axis_matches_naive_on_every_axis() {
    let shape = [3, 5, 4];
    let x: Vec<i64> = (0..60).map(|i| (i * 7919) % 101 - 50).collect();
    let s = strides(&shape);
    for axis in 0..3 {
        let outer: usize = shape[..axis].iter().product();
        let len = shape[axis];
        let inner: usize = shape[axis + 1..].iter().product();
        let mut out = vec![0; outer * inner];
        reduce_axis(&x, len, inner, &mut out, |a, b| a.max(b));
        let mut naive = vec![i64::MIN; outer * inner];
        for i in indices(&shape) {
            let o = i[..axis]
                .iter()
                .zip(&shape[..axis])
                .fold(0, |a, (k, n)| a * n + k);
            let q = i[axis + 1..]
                .iter()
                .zip(&shape[axis + 1..])
                .fold(0, |a, (k, n)| a * n + k);
            let slot = &mut naive[o * inner + q];
            *slot = (*slot).max(x[dot(&i, &s)]);
        }
        assert_eq!(out, naive, "axis {axis}");
    }
}

#[test]
fn fill_sets_every_element() {
    let mut out = [0u32; 9];
    fill(&mut out, 5);
    assert_eq!(out, [5; 9]);
}

#[test]
fn copy_box_transposes_and_slices_strided_boxes() {
    // Source: a 4x6x5 block. Box: the 2x3x4 sub-box at (1, 2, 1), its axes permuted to
    // (2, 0, 1), written at offset 7 of a destination with padded strides.
    let sshape = [4, 6, 5];
    let src: Vec<i32> = (0..120).collect();
    let ss = strides(&sshape);
    let start = [1, 2, 1];
    let bshape = [4, 2, 3]; // the box in destination order: axes 2, 0, 1 of the source
    let perm = [2, 0, 1];
    let src_strides: Vec<usize> = perm.iter().map(|&p| ss[p]).collect();
    let dst_strides = [20, 5, 1]; // row length 5 > 3 and plane 20 > 10: padded
    let src_off = dot(&start, &ss);
    let b = BoxMap::new(&bshape, src_off, &src_strides, 7, &dst_strides);
    assert_eq!(b.len(), 24);
    let last = 7 + dot(&[3, 1, 2], &dst_strides);
    let mut dst = vec![-1; last + 1];
    copy_box(&b, &src, &mut dst);
    let mut written = 0;
    for i in indices(&bshape) {
        let mut at = start;
        for (d, &p) in perm.iter().enumerate() {
            at[p] += i[d];
        }
        assert_eq!(dst[7 + dot(&i, &dst_strides)], src[dot(&at, &ss)], "{i:?}");
        written += 1;
    }
    assert_eq!(written, 24);
    assert_eq!(dst.iter().filter(|&&v| v != -1).count(), 24);
}

#[test]
fn copy_box_of_no_dimensions_is_one_element() {
    let mut dst = [0; 3];
    copy_box(
        &BoxMap::new(&[], 4, &[], 1, &[]),
        &[0, 1, 2, 3, 42],
        &mut dst,
    );
    assert_eq!(dst, [0, 42, 0]);
}

#[test]
fn empty_box_visits_no_row() {
    let mut rows = 0;
    for_each_row(
        &BoxMap::new(&[3, 0, 2], 0, &[0, 2, 1], 0, &[0, 2, 1]),
        |_, _| rows += 1,
    );
    assert_eq!(rows, 0);
}

#[test]
fn for_each_row_visits_rows_in_order() {
    let shape = [2, 3, 4];
    let s = strides(&shape);
    let mut rows = Vec::new();
    for_each_row(&BoxMap::new(&shape, 0, &s, 100, &s), |a, b| {
        rows.push((a, b))
    });
    let expected: Vec<(usize, usize)> = (0..6).map(|r| (4 * r, 100 + 4 * r)).collect();
    assert_eq!(rows, expected);
}

#[test]
#[should_panic(expected = "at most 8")]
fn box_rejects_too_many_dimensions() {
    let nine = [1; MAX_DIMS + 1];
    BoxMap::new(&nine, 0, &nine, 0, &nine);
}

#[test]
fn random_values_are_in_range_and_reproducible() {
    let key = random_key(0x1234_5678_9abc_def0);
    let mut sum = 0.0;
    let n = 20_000u32;
    for g in 0..n {
        let u32_: f32 = random_value(key, g, false);
        let u64_: f64 = random_value(key, g, false);
        assert!((0.0..1.0).contains(&u32_), "{u32_}");
        assert!((0.0..1.0).contains(&u64_), "{u64_}");
        assert_eq!(u32_, random_value::<f32>(key, g, false));
        assert_eq!(u64_.to_bits(), random_value::<f64>(key, g, false).to_bits());
        let z: f64 = random_value(key, g, true);
        assert!(z.is_finite());
        sum += u64_;
    }
    let mean = sum / f64::from(n);
    assert!((mean - 0.5).abs() < 0.01, "mean {mean}");
    assert_ne!(random_key(1), random_key(2));
    assert_ne!(random_key(1), random_key(1 << 32));
    assert_ne!(
        random_value::<f64>(random_key(1), 0, false),
        random_value::<f64>(random_key(2), 0, false)
    );
}

#[test]
fn uniform_bits_are_exact_and_below_one() {
    assert_eq!(f32::uniform(0, u32::MAX), 0.0);
    assert_eq!(f32::uniform(1 << 8, 0), 1.0 / 16_777_216.0);
    assert!(f32::uniform(u32::MAX, u32::MAX) < 1.0);
    assert_eq!(f64::uniform(0, 1 << 5), 1.0 / 9_007_199_254_740_992.0);
    assert!(f64::uniform(u32::MAX, u32::MAX) < 1.0);
    assert_eq!(mix(0), 0);
}

#[test]
fn normal_values_have_unit_variance() {
    let key = random_key(99);
    let n = 50_000u32;
    let zs: Vec<f64> = (0..n).map(|g| random_value(key, g, true)).collect();
    let mean = zs.iter().sum::<f64>() / f64::from(n);
    let var = zs.iter().map(|z| (z - mean).powi(2)).sum::<f64>() / f64::from(n);
    assert!(mean.abs() < 0.02, "mean {mean}");
    assert!((var - 1.0).abs() < 0.03, "variance {var}");
}

#[test]
fn random_box_is_independent_of_the_blocking() {
    // A 6x7 array filled whole, then as four blocks of 3x4, 3x3, 3x4, 3x3.
    let shape = [6, 7];
    let gs = strides(&shape);
    for normal in [false, true] {
        let mut whole = vec![0.0f64; 42];
        random_box(&BoxMap::new(&shape, 0, &gs, 0, &gs), 5, normal, &mut whole);
        for (r0, c0, bshape) in [
            (0, 0, [3, 4]),
            (0, 4, [3, 3]),
            (3, 0, [3, 4]),
            (3, 4, [3, 3]),
        ] {
            let bs = strides(&bshape);
            let mut block = vec![0.0f64; bshape[0] * bshape[1]];
            let b = BoxMap::new(&bshape, r0 * 7 + c0, &gs, 0, &bs);
            random_box(&b, 5, normal, &mut block);
            for i in indices(&bshape) {
                assert_eq!(
                    block[dot(&i, &bs)].to_bits(),
                    whole[(r0 + i[0]) * 7 + c0 + i[1]].to_bits(),
                    "block at ({r0}, {c0}), {i:?}, normal = {normal}"
                );
            }
        }
        let mut other = vec![0.0f64; 42];
        random_box(&BoxMap::new(&shape, 0, &gs, 0, &gs), 6, normal, &mut other);
        assert_ne!(whole, other, "another seed gives other numbers");
    }
}
