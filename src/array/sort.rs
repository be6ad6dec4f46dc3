//! Sorting in parallel: [`DArray::sort`] (1-D), [`DArray::sort_axis`] (every lane along an
//! axis of an N-d array, as `numpy.sort(a, axis=k)`) and the argsorts, with [`SortOrder`].
//!
//! Every lane along the axis is sorted by the blocks it crosses, in three steps of block
//! tasks (Dagger.jl's `sort` over `dsort_chunks`, with exact splitters):
//!
//! 1. one task per block sorts each of the block's pieces of a lane: by their 64-bit keys
//!    alone for a sort (the zeros and NaNs, whose keys do not give back their bits, put
//!    back in input order), with a stable LSD radix sort of the keys with the elements for
//!    an argsort, the standard stable sort on short pieces;
//! 2. where the axis has more than one block, one task per row of blocks along it finds,
//!    for each lane and each block boundary of the result, how many elements of each sorted
//!    piece rank before that boundary (a binary search over the keys);
//! 3. one task per result block merges, for each lane, the runs of the sorted pieces that
//!    land in it, in one pass (a tournament over the runs' heads). Runs of `f64` or `f32`
//!    are merged two by two, a vector at a time, instead ([`dagger_cpu::merge_f64`],
//!    [`dagger_cpu::merge_f32`]), their zeros and NaNs (equal without equal bits) laid out
//!    in run order: 10⁸ uniform `f64` in two blocks, on two threads of an AMD Zen 4 VM,
//!    merged in 75–81 ms against 330 one element at a time.
//!
//! The result is blocked as the input, and the call returns at once: the splits are tasks
//! like the rest, so nothing waits on the caller's thread.

use std::sync::Arc;

use super::{host_options, ArrayError, Block, DArray, Element};
use crate::task::args::SharedList;

/// The order [`DArray::sort_with`], [`DArray::sort_axis`] and the argsorts put elements in.
/// Both orders are stable: elements that compare equal keep their input order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SortOrder {
    /// Smallest first; NaN last, as numpy's `sort`.
    Ascending,
    /// Largest first; NaN first (the reverse of ascending, except that elements that
    /// compare equal keep their input order here too).
    Descending,
}

impl SortOrder {
    /// What the keys are XORed with: reversing their order.
    fn flip(self) -> u64 {
        match self {
            SortOrder::Ascending => 0,
            SortOrder::Descending => u64::MAX,
        }
    }
}

/// Pieces of lanes at least this long are radix sorted; shorter ones by comparisons.
const RADIX_MIN: usize = 2048;

/// The ascending sort key of an element: a `u64` whose order is the elements' order, with
/// `-0.0` equal to `0.0` and every NaN equal to the others and above everything.
/// Each element type converts to `f64` exactly, so one mapping serves them all.
#[inline(always)]
fn key_of<T: Element>(x: T) -> u64 {
    let x = x.to_f64();
    if x.is_nan() {
        return u64::MAX;
    }
    // -0.0 == 0.0: both take the key of 0.0.
    let bits = if x == 0.0 { 0 } else { x.to_bits() };
    if bits >> 63 == 1 {
        !bits
    } else {
        bits | 1 << 63
    }
}

/// What a sort moves: an element (sort) or an element with its index along the axis
/// (argsort), and what it leaves in the result.
trait Item: Copy + Send + Sync + 'static {
    type In: Element;
    type Out: Element;
    fn new(x: Self::In, index: u32) -> Self;
    fn key(&self) -> u64;
    fn out(&self) -> Self::Out;
    /// Sorts `v` stably by key (XORed with `flip`).
    fn sort_piece(v: &mut [Self], flip: u64) {
        if v.len() >= RADIX_MIN {
            radix_sort(v, flip);
        } else {
            v.sort_by_key(|x| x.key() ^ flip);
        }
    }
    /// The lanes of `v`, each `len` long and one after another, each sorted; `start` is
    /// their first index along the axis.
    fn sorted_contiguous(v: &[Self::In], len: usize, start: usize, flip: u64) -> Vec<Self> {
        items_sorted(v, len, start, flip)
    }
    /// Merges the sorted `runs` (at least two) into `out` as [`merge_runs`] would, if this
    /// kind of item has a faster way; `false` (and `out` untouched) if not.
    fn merge_fast(_runs: &[&[Self]], _flip: u64, _out: &mut [Self::Out]) -> bool {
        false
    }
}

/// [`Item::sorted_contiguous`] by making the items, then sorting each lane of them.
fn items_sorted<I: Item>(v: &[I::In], len: usize, start: usize, flip: u64) -> Vec<I> {
    let mut out: Vec<I> = Vec::with_capacity(v.len());
    for lane in v.chunks(len) {
        out.extend(
            lane.iter()
                .enumerate()
                .map(|(t, &x)| I::new(x, (start + t) as u32)),
        );
    }
    for lane in out.chunks_mut(len) {
        I::sort_piece(lane, flip);
    }
    out
}

/// An element, for `sort`.
#[derive(Clone, Copy)]
#[repr(transparent)]
struct Val<T>(T);

// SAFETY: `Val<T>` is `repr(transparent)` over its one field, a `T`.
unsafe impl<T> bytemuck::TransparentWrapper<T> for Val<T> {}

impl<T: Element> Item for Val<T> {
    type In = T;
    type Out = T;
    #[inline(always)]
    fn new(x: T, _: u32) -> Self {
        Val(x)
    }
    #[inline(always)]
    fn key(&self) -> u64 {
        key_of(self.0)
    }
    #[inline(always)]
    fn out(&self) -> T {
        self.0
    }
    /// Long pieces: sorts the keys alone, then maps them back to elements ([`back`]).
    fn sort_piece(v: &mut [Self], flip: u64) {
        if v.len() < RADIX_MIN {
            v.sort_by_key(|x| x.key() ^ flip);
            return;
        }
        let mut keys: Vec<u64> = Vec::with_capacity(v.len());
        let specials = keys_of(v.iter().map(|x| x.0), flip, &mut keys);
        dagger_cpu::sort_keys(&mut keys);
        let mut taken = (0, 0);
        for (x, &k) in v.iter_mut().zip(&keys) {
            x.0 = back(k ^ flip, specials.as_ref(), &mut taken);
        }
    }

    /// Eight-byte elements: the keys are made straight from the block and sorted, and
    /// their buffer then becomes the result's: one array of the block's size is allocated
    /// instead of two (fresh memory costs a page fault a page, which on a virtual machine
    /// takes as long as sorting it).
    fn sorted_contiguous(v: &[T], len: usize, start: usize, flip: u64) -> Vec<Self> {
        let eight = |size: usize, align: usize| size == 8 && align == 8;
        if !eight(std::mem::size_of::<T>(), std::mem::align_of::<T>()) || len < RADIX_MIN {
            return items_sorted(v, len, start, flip);
        }
        let mut keys: Vec<u64> = Vec::with_capacity(v.len());
        // Per lane: its zeros and NaNs in input order, if it has -0.0 or a NaN.
        let mut lanes: Vec<Option<Specials<T>>> = Vec::with_capacity(v.len() / len);
        for lane in v.chunks(len) {
            let first = keys.len();
            lanes.push(keys_of(lane.iter().copied(), flip, &mut keys));
            dagger_cpu::sort_keys(&mut keys[first..]);
        }
        // Mapped in the keys' own buffer: the standard library collects a `Vec`'s
        // `into_iter().map()` in place when the items are of the same size and alignment.
        // Without NaN or -0.0 (the usual case), one map serves every element.
        if lanes.iter().all(Option::is_none) {
            return keys.into_iter().map(|k| Val(value_of(k ^ flip))).collect();
        }
        let (mut lane, mut taken) = (usize::MAX, (0, 0));
        keys.into_iter()
            .enumerate()
            .map(|(i, k)| {
                if i / len != lane {
                    (lane, taken) = (i / len, (0, 0));
                }
                Val(back(k ^ flip, lanes[lane].as_ref(), &mut taken))
            })
            .collect()
    }

    /// `f64` and `f32` runs are merged by [`dagger_cpu::merge_f64`] and
    /// [`dagger_cpu::merge_f32`], a vector at a time, two by two ([`merge_tree`]), except
    /// for the two kinds of elements that compare equal without having equal bits: zeros
    /// (`-0.0 == 0.0`) and NaNs. Sorted by key, each run holds those together, so each run
    /// is cut at them into five ranges: below the first such key, equal to it, between the
    /// two, equal to the second, above. The ranges of equal keys are put one after another
    /// in run order (which is what a stable merge does with equal keys), the others merged.
    /// In those, the order is `total_cmp`'s, in which equal elements have equal bits.
    fn merge_fast(runs: &[&[Self]], flip: u64, out: &mut [T]) -> bool {
        use std::any::TypeId;
        if ![TypeId::of::<f64>(), TypeId::of::<f32>()].contains(&TypeId::of::<T>()) {
            return false;
        }
        let direction = if flip == 0 {
            dagger_cpu::Direction::Ascending
        } else {
            dagger_cpu::Direction::Descending
        };
        // The casts are identities: `T` is the type they cast to.
        let merge = |a: &[T], b: &[T], out: &mut [T]| {
            if TypeId::of::<T>() == TypeId::of::<f64>() {
                let f64s = bytemuck::cast_slice::<T, f64>;
                dagger_cpu::merge_f64(f64s(a), f64s(b), direction, bytemuck::cast_slice_mut(out));
            } else {
                let f32s = bytemuck::cast_slice::<T, f32>;
                dagger_cpu::merge_f32(f32s(a), f32s(b), direction, bytemuck::cast_slice_mut(out));
            }
        };
        let mut equal = [ZERO_KEY ^ flip, u64::MAX ^ flip];
        equal.sort_unstable();
        let cuts: Vec<[usize; 6]> = runs
            .iter()
            .map(|r| {
                let below = |k: u64| r.partition_point(|x| x.key() ^ flip < k);
                let upto = |k: u64| r.partition_point(|x| x.key() ^ flip <= k);
                let [e0, e1] = equal;
                [0, below(e0), upto(e0), below(e1), upto(e1), r.len()]
            })
            .collect();
        let mut scratch = if runs.len() > 2 {
            vec![T::default(); out.len()]
        } else {
            Vec::new()
        };
        let mut at = 0;
        for range in 0..5 {
            let parts: Vec<&[T]> = runs
                .iter()
                .zip(&cuts)
                .map(|(r, c)| {
                    <Self as bytemuck::TransparentWrapper<T>>::peel_slice(
                        &r[c[range]..c[range + 1]],
                    )
                })
                .filter(|p| !p.is_empty())
                .collect();
            let len: usize = parts.iter().map(|p| p.len()).sum();
            let dst = &mut out[at..at + len];
            if range % 2 == 1 {
                let mut t = 0;
                for p in parts {
                    dst[t..t + p.len()].copy_from_slice(p);
                    t += p.len();
                }
            } else {
                let room = if parts.len() > 2 { len } else { 0 };
                merge_tree(&parts, dst, &mut scratch[..room], &merge);
            }
            at += len;
        }
        true
    }
}

/// The elements of a lane that share their key with others of different bits, in input
/// order: all its zeros (`-0.0 == 0.0`) and all its NaNs.
struct Specials<T> {
    zeros: Vec<T>,
    nans: Vec<T>,
}

/// Appends the keys (XORed with `flip`) of `lane` to `keys`. `None` if mapping the keys
/// back ([`value_of`]) gives exactly the elements; else the lane's zeros and NaNs, which it
/// does not give back (the key of `-0.0` maps back to `0.0`, every NaN's to one NaN).
fn keys_of<T: Element>(
    lane: impl Iterator<Item = T> + Clone,
    flip: u64,
    keys: &mut Vec<u64>,
) -> Option<Specials<T>> {
    // Most lanes hold neither NaN nor -0.0: their keys are made in one pass without
    // branches (which vectorizes), and the lane is made again, as below, only if it does.
    let start = keys.len();
    let mut special = false;
    keys.extend(lane.clone().map(|x| {
        let f = x.to_f64();
        let bits = f.to_bits();
        special |= f.is_nan() | (bits == 1 << 63);
        // Negative: all bits flipped; otherwise the sign bit set (see `key_of`).
        (bits ^ (((bits as i64 >> 63) as u64) | 1 << 63)) ^ flip
    }));
    if !special {
        return None;
    }
    keys.truncate(start);
    let mut sp = Specials {
        zeros: Vec::new(),
        nans: Vec::new(),
    };
    keys.extend(lane.map(|x| {
        let k = key_of(x);
        if k == u64::MAX {
            sp.nans.push(x);
        } else if k == ZERO_KEY {
            sp.zeros.push(x);
        }
        k ^ flip
    }));
    Some(sp)
}

/// The next element of a lane sorted by key, from its ascending key `k`: the lane's zeros
/// and NaNs (`specials`, if it has `-0.0` or NaNs) in input order, as a stable sort leaves
/// them, since equal keys lie together once sorted. `taken` counts the zeros and the NaNs
/// given so far.
#[inline(always)]
fn back<T: Element>(k: u64, specials: Option<&Specials<T>>, taken: &mut (usize, usize)) -> T {
    match specials {
        Some(sp) if k == ZERO_KEY => {
            taken.0 += 1;
            sp.zeros[taken.0 - 1]
        }
        Some(sp) if k == u64::MAX => {
            taken.1 += 1;
            sp.nans[taken.1 - 1]
        }
        _ => value_of(k),
    }
}

/// The element of ascending key `k` (for the NaN key, one NaN).
#[inline(always)]
fn value_of<T: Element>(k: u64) -> T {
    T::from_f64(f64::from_bits(if k >> 63 == 1 {
        k & !(1 << 63)
    } else {
        !k
    }))
}

/// The key of `0.0` (and `-0.0`).
const ZERO_KEY: u64 = 1 << 63;

/// An element and its index along the axis, for `argsort`.
#[derive(Clone, Copy)]
struct Indexed<T> {
    x: T,
    index: u32,
}

impl<T: Element> Item for Indexed<T> {
    type In = T;
    type Out = u32;
    #[inline(always)]
    fn new(x: T, index: u32) -> Self {
        Indexed { x, index }
    }
    #[inline(always)]
    fn key(&self) -> u64 {
        key_of(self.x)
    }
    #[inline(always)]
    fn out(&self) -> u32 {
        self.index
    }
}

/// Bits of the key each pass of the radix sort orders by.
const DIGIT: u32 = 8;
/// Passes over 64-bit keys.
const PASSES: usize = 64usize.div_ceil(DIGIT as usize);

/// A least-significant-digit radix sort on the keys, [`DIGIT`] bits a pass (stable),
/// skipping the digits all keys share.
fn radix_sort<I: Item>(v: &mut [I], flip: u64) {
    const BUCKETS: usize = 1 << DIGIT;
    const MASK: u64 = (1 << DIGIT) - 1;
    let n = v.len();
    let mut counts = vec![[0usize; BUCKETS]; PASSES];
    for x in v.iter() {
        let k = x.key() ^ flip;
        for (d, c) in counts.iter_mut().enumerate() {
            c[((k >> (DIGIT as usize * d)) & MASK) as usize] += 1;
        }
    }
    let mut buf: Vec<I> = v.to_vec();
    let mut in_v = true;
    for (d, c) in counts.iter().enumerate() {
        if c.contains(&n) {
            continue;
        }
        let mut at = vec![0usize; BUCKETS];
        let mut sum = 0;
        for (a, &c) in at.iter_mut().zip(c) {
            *a = sum;
            sum += c;
        }
        let (src, dst): (&[I], &mut [I]) = if in_v { (v, &mut buf) } else { (&buf, v) };
        let shift = DIGIT as usize * d;
        for x in src {
            let b = (((x.key() ^ flip) >> shift) & MASK) as usize;
            dst[at[b]] = *x;
            at[b] += 1;
        }
        in_v = !in_v;
    }
    if !in_v {
        v.copy_from_slice(&buf);
    }
}

/// The lanes of a row-major block along an axis: `outer * inner` lanes of `len` elements;
/// element `t` of lane `o * inner + i` is at `(o * len + t) * inner + i`.
#[derive(Clone, Copy, Debug)]
struct Lanes {
    outer: usize,
    len: usize,
    inner: usize,
}

impl Lanes {
    fn of(shape: &[usize], axis: usize) -> Self {
        Lanes {
            outer: shape[..axis].iter().product(),
            len: shape[axis],
            inner: shape[axis + 1..].iter().product(),
        }
    }

    fn count(self) -> usize {
        self.outer * self.inner
    }

    #[inline]
    fn at(self, lane: usize, t: usize) -> usize {
        let (o, i) = (lane / self.inner, lane % self.inner);
        (o * self.len + t) * self.inner + i
    }
}

/// A block's lanes, each sorted, one after another (lane `l` at `l * g.len`); `start` is
/// the block's first index along the axis.
fn sorted_lanes<I: Item>(v: &[I::In], g: Lanes, start: usize, flip: u64) -> Vec<I> {
    if v.is_empty() {
        return Vec::new();
    }
    if g.inner == 1 {
        return I::sorted_contiguous(v, g.len, start, flip);
    }
    let mut out: Vec<I> = Vec::with_capacity(v.len());
    for l in 0..g.count() {
        out.extend((0..g.len).map(|t| I::new(v[g.at(l, t)], (start + t) as u32)));
    }
    for lane in out.chunks_mut(g.len) {
        I::sort_piece(lane, flip);
    }
    out
}

/// Writes sorted lane `l` into the row-major block `out` of lanes `g`.
fn write_lane<I: Item>(out: &mut [I::Out], g: Lanes, l: usize, lane: &[I]) {
    if g.inner == 1 {
        for (o, x) in out[l * g.len..(l + 1) * g.len].iter_mut().zip(lane) {
            *o = x.out();
        }
    } else {
        for (t, x) in lane.iter().enumerate() {
            out[g.at(l, t)] = x.out();
        }
    }
}

/// Merges the sorted `runs` into `out` two by two, a balanced tree of `merge` calls, each
/// level one pass over the elements. `scratch` is as long as `out` if there are more than
/// two runs: each half of the runs is merged into it (with `out` as that half's own scratch)
/// and the two halves from it into `out`.
fn merge_tree<T: Copy>(
    runs: &[&[T]],
    out: &mut [T],
    scratch: &mut [T],
    merge: &impl Fn(&[T], &[T], &mut [T]),
) {
    match runs {
        [] => {}
        [r] => out.copy_from_slice(r),
        [a, b] => merge(a, b, out),
        _ => {
            let (left, right) = runs.split_at(runs.len() / 2);
            let n: usize = left.iter().map(|r| r.len()).sum();
            let (sl, sr) = scratch.split_at_mut(n);
            let (ol, or) = out.split_at_mut(n);
            merge_tree(left, sl, ol, merge);
            merge_tree(right, sr, or, merge);
            merge(sl, sr, out);
        }
    }
}

/// Merges sorted `runs` stably (of equal keys, those of earlier runs first) in one pass,
/// handing each element in order to `put`: a tournament over the runs' heads.
fn merge_runs<I: Item>(runs: &[&[I]], flip: u64, mut put: impl FnMut(&I)) {
    match runs {
        [] => {}
        [a] => a.iter().for_each(put),
        [a, b] => {
            // Each head's key computed once.
            let (mut i, mut j) = (0, 0);
            if let (Some(x), Some(y)) = (a.first(), b.first()) {
                let (mut ka, mut kb) = (x.key() ^ flip, y.key() ^ flip);
                loop {
                    if kb < ka {
                        put(&b[j]);
                        j += 1;
                        match b.get(j) {
                            Some(y) => kb = y.key() ^ flip,
                            None => break,
                        }
                    } else {
                        put(&a[i]);
                        i += 1;
                        match a.get(i) {
                            Some(x) => ka = x.key() ^ flip,
                            None => break,
                        }
                    }
                }
            }
            a[i..].iter().chain(&b[j..]).for_each(put);
        }
        _ => {
            // A winner tree over the heads, each as (key << 32 | run), so that equal keys
            // go to the earlier run; an exhausted run's head is u128::MAX.
            let size = runs.len().next_power_of_two();
            let mut pos = vec![0usize; runs.len()];
            let head = |r: usize, at: usize| -> u128 {
                match runs.get(r).and_then(|run| run.get(at)) {
                    Some(x) => u128::from(x.key() ^ flip) << 32 | r as u128,
                    None => u128::MAX,
                }
            };
            let mut tree = vec![u128::MAX; 2 * size];
            for r in 0..size {
                tree[size + r] = head(r, 0);
            }
            for i in (1..size).rev() {
                tree[i] = tree[2 * i].min(tree[2 * i + 1]);
            }
            let total: usize = runs.iter().map(|r| r.len()).sum();
            for _ in 0..total {
                let r = (tree[1] & 0xffff_ffff) as usize;
                put(&runs[r][pos[r]]);
                pos[r] += 1;
                let mut i = size + r;
                tree[i] = head(r, pos[r]);
                while i > 1 {
                    i /= 2;
                    tree[i] = tree[2 * i].min(tree[2 * i + 1]);
                }
            }
        }
    }
}

/// Where rank `r` of the merged pieces `segs` (each sorted) falls in each: the counts
/// `p[b]` (summing to `r`) of the first elements of each piece that rank before it. Equal
/// keys rank in piece order, then in order within a piece: the input order.
fn split<I: Item>(segs: &[&[I]], r: usize, flip: u64, p: &mut Vec<usize>) {
    let total: usize = segs.iter().map(|s| s.len()).sum();
    if r == 0 || r >= total {
        p.extend(segs.iter().map(|s| if r == 0 { 0 } else { s.len() }));
        return;
    }
    let below = |s: &[I], v: u64| s.partition_point(|x| x.key() ^ flip < v);
    let upto = |s: &[I], v: u64| s.partition_point(|x| x.key() ^ flip <= v);
    // The key of the element at rank r: the smallest v with more than r keys <= v.
    let (mut lo, mut hi) = (0u64, u64::MAX);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if segs.iter().map(|s| upto(s, mid)).sum::<usize>() > r {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    let v = lo;
    let mut need = r - segs.iter().map(|s| below(s, v)).sum::<usize>();
    for s in segs {
        let (a, e) = (below(s, v), upto(s, v));
        let take = (e - a).min(need);
        need -= take;
        p.push(a + take);
    }
}

/// The split plan of one row of blocks along the axis: for lane `l`, result block `j`
/// (`0..=m`, `m` the blocks along the axis) and piece `b`, entry `(l * (m + 1) + j) * m + b`
/// is where result block `j` starts in piece `b` of lane `l`.
fn plan<I: Item>(blocks: &[Arc<Vec<I>>], lens: &[usize], lanes: usize, flip: u64) -> Vec<usize> {
    let m = blocks.len();
    let mut ranks = vec![0];
    for &n in lens {
        ranks.push(ranks.last().copied().unwrap_or(0) + n);
    }
    let mut p = Vec::with_capacity(lanes * (m + 1) * m);
    for l in 0..lanes {
        let segs: Vec<&[I]> = (0..m)
            .map(|b| &blocks[b][l * lens[b]..(l + 1) * lens[b]])
            .collect();
        for &r in &ranks {
            split(&segs, r, flip, &mut p);
        }
    }
    p
}

/// `a` sorted along `axis` (items `I`: elements, or elements with their indices).
fn sort_along<I: Item>(
    a: &DArray<I::In>,
    axis: usize,
    order: SortOrder,
) -> Result<DArray<I::Out>, ArrayError> {
    let ndim = a.ndim();
    if axis >= ndim {
        return Err(ArrayError::AxisOutOfRange { axis, ndim });
    }
    let ctx = a.context().clone();
    let grid = a.grid().clone();
    let flip = order.flip();
    let opts = host_options(&ctx);
    let counts = grid.counts();
    let m = counts[axis];
    let mut out: Vec<Option<Block<I::Out>>> = vec![None; grid.num_blocks()];
    // Each row of blocks along the axis: the blocks whose index along it is 0.
    for first in 0..grid.num_blocks() {
        let idx = grid.unravel(first);
        if idx[axis] != 0 {
            continue;
        }
        let ids: Vec<usize> = (0..m)
            .map(|j| {
                let mut k = idx.clone();
                k[axis] = j;
                grid.ravel(&k)
            })
            .collect();
        let geo: Vec<Lanes> = ids
            .iter()
            .map(|&i| Lanes::of(&grid.domain(i).shape(), axis))
            .collect();
        if m == 1 {
            // The lanes are whole in the block: sort them there.
            let g = geo[0];
            out[ids[0]] = Some(Block::Task(ctx.spawn_with(
                opts.clone().name("sort_lanes"),
                move |v: Arc<Vec<I::In>>| {
                    let sorted = sorted_lanes::<I>(&v, g, 0, flip);
                    let mut res = vec![I::Out::default(); v.len()];
                    if g.len > 0 {
                        for (l, lane) in sorted.chunks(g.len).enumerate() {
                            write_lane::<I>(&mut res, g, l, lane);
                        }
                    }
                    res
                },
                (a.blocks()[ids[0]].shared(),),
            )));
            continue;
        }
        let pieces: Vec<_> = ids
            .iter()
            .zip(&geo)
            .enumerate()
            .map(|(j, (&i, &g))| {
                let start = grid.cuts[axis][j];
                ctx.spawn_with(
                    opts.clone().name("sort_pieces"),
                    move |v: Arc<Vec<I::In>>| sorted_lanes::<I>(&v, g, start, flip),
                    (a.blocks()[i].shared(),),
                )
            })
            .collect();
        let lens: Arc<Vec<usize>> = Arc::new(geo.iter().map(|g| g.len).collect());
        let lanes = geo[0].count();
        let shared = || SharedList(pieces.iter().map(|t| t.shared()).collect());
        let l2 = lens.clone();
        let splits = ctx.spawn_with(
            opts.clone().name("sort_splits"),
            move |blocks: Vec<Arc<Vec<I>>>| plan(&blocks, &l2, lanes, flip),
            (shared(),),
        );
        for (j, (&i, &g)) in ids.iter().zip(&geo).enumerate() {
            let lens = lens.clone();
            out[i] = Some(Block::Task(ctx.spawn_with(
                opts.clone().name("sort_merge"),
                move |blocks: Vec<Arc<Vec<I>>>, p: Arc<Vec<usize>>| {
                    let mut res = vec![I::Out::default(); lanes * g.len];
                    for l in 0..lanes {
                        let at = |j: usize, b: usize| p[(l * (m + 1) + j) * m + b];
                        let runs: Vec<&[I]> = blocks
                            .iter()
                            .enumerate()
                            .map(|(b, piece)| {
                                &piece[l * lens[b]..(l + 1) * lens[b]][at(j, b)..at(j + 1, b)]
                            })
                            .filter(|run| !run.is_empty())
                            .collect();
                        let mut t = 0;
                        if g.inner == 1 {
                            let dst = &mut res[l * g.len..(l + 1) * g.len];
                            if runs.len() >= 2 && I::merge_fast(&runs, flip, dst) {
                                continue;
                            }
                            merge_runs(&runs, flip, |x| {
                                dst[t] = x.out();
                                t += 1;
                            });
                        } else {
                            merge_runs(&runs, flip, |x| {
                                res[g.at(l, t)] = x.out();
                                t += 1;
                            });
                        }
                    }
                    res
                },
                (shared(), splits.shared()),
            )));
        }
    }
    let blocks = out
        .into_iter()
        .map(|b| b.expect("every block is in one row"))
        .collect();
    Ok(DArray::from_parts(&ctx, grid, blocks))
}

impl<T: Element> DArray<T> {
    fn only_1d(&self) -> Result<(), ArrayError> {
        if self.ndim() != 1 {
            return Err(ArrayError::Dimensionality {
                expected: 1,
                shape: self.shape(),
            });
        }
        Ok(())
    }

    /// The elements of a 1-D array in ascending order, NaN last (numpy's `sort`); see
    /// [`sort_with`](Self::sort_with).
    ///
    /// ```
    /// use dagger::prelude::*;
    /// let ctx = Context::builder().threads(2).build()?;
    /// let a = DArray::distribute(&ctx, &ndarray::arr1(&[3.0, f64::NAN, -1.0, 2.0, -1.0]), Blocks::new([2]))?;
    /// let s = a.sort()?.collect1()?;
    /// assert_eq!(s.slice(ndarray::s![..4]).to_vec(), vec![-1.0, -1.0, 2.0, 3.0]);
    /// assert!(s[4].is_nan());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn sort(&self) -> Result<DArray<T>, ArrayError> {
        self.sort_with(SortOrder::Ascending)
    }

    /// The elements of a 1-D array sorted in `order`, blocked as this array (Dagger.jl's
    /// `sort`): [`sort_axis`](Self::sort_axis) along its one axis.
    ///
    /// # Errors
    ///
    /// [`ArrayError::Dimensionality`] naming the shape unless the array is 1-D (sort an
    /// N-d array with [`sort_axis`](Self::sort_axis)).
    ///
    /// ```
    /// use dagger::prelude::*;
    /// use dagger::SortOrder;
    /// let ctx = Context::builder().threads(2).build()?;
    /// let a = DArray::distribute(&ctx, &ndarray::arr1(&[5u32, 1, 4, 1, 3, 9, 2]), Blocks::new([3]))?;
    /// let d = a.sort_with(SortOrder::Descending)?;
    /// assert_eq!(d.collect1()?.to_vec(), vec![9, 5, 4, 3, 2, 1, 1]);
    /// assert_eq!(d.block_counts(), a.block_counts());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn sort_with(&self, order: SortOrder) -> Result<DArray<T>, ArrayError> {
        self.only_1d()?;
        self.sort_axis(0, order)
    }

    /// Every lane along `axis` sorted on its own, as `numpy.sort(a, axis)`: element
    /// `[i, .., t, .., k]` of the result (`t` at `axis`) is the `t`-th smallest (in `order`)
    /// of the lane `[i, .., :, .., k]`. The result is blocked as this array.
    ///
    /// The sort is stable: elements that compare equal keep their order along the axis.
    /// That shows for `-0.0` and `0.0` (equal, so neither moves past the other) and for
    /// NaNs, which all compare equal and sort above every number: last in
    /// [`SortOrder::Ascending`] (as numpy) and first in [`SortOrder::Descending`].
    ///
    /// Lanes crossing several blocks are sorted by the blocks they cross, without gathering
    /// them: each block sorts its pieces of the lanes (a radix sort of 64-bit keys when
    /// long), a task per row of blocks along `axis` finds exactly which elements of the
    /// sorted pieces rank in each result block, and a task per result block merges them in
    /// one pass. All of it runs on CPU
    /// threads (the scope's, or any when it holds none); the call returns at once.
    ///
    /// # Errors
    ///
    /// [`ArrayError::AxisOutOfRange`] unless `axis < self.ndim()`. What fails in a block
    /// arrives as [`ArrayError::Task`] when the result is collected.
    ///
    /// ```
    /// use dagger::prelude::*;
    /// use dagger::SortOrder;
    /// use ndarray::array;
    /// let ctx = Context::builder().threads(2).build()?;
    /// let a = DArray::distribute(&ctx, &array![[3.0, 1.0, 2.0], [f64::NAN, 0.5, -1.0]], Blocks::new([1, 2]))?;
    /// let rows = a.sort_axis(1, SortOrder::Ascending)?.collect2()?;
    /// assert_eq!(rows.row(0).to_vec(), vec![1.0, 2.0, 3.0]);
    /// assert_eq!(rows.row(1).slice(ndarray::s![..2]).to_vec(), vec![-1.0, 0.5]);
    /// assert!(rows[[1, 2]].is_nan());
    /// let cols = a.sort_axis(0, SortOrder::Descending)?.collect2()?;
    /// assert!(cols[[0, 0]].is_nan());
    /// assert_eq!(cols.row(1).to_vec(), vec![3.0, 0.5, -1.0]);
    /// assert!(a.sort_axis(2, SortOrder::Ascending).is_err());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn sort_axis(&self, axis: usize, order: SortOrder) -> Result<DArray<T>, ArrayError> {
        sort_along::<Val<T>>(self, axis, order)
    }

    /// The indices that sort a 1-D array in ascending order (numpy's `argsort` with
    /// `kind="stable"`): see [`argsort_axis`](Self::argsort_axis).
    ///
    /// ```
    /// use dagger::prelude::*;
    /// let ctx = Context::builder().threads(2).build()?;
    /// let a = DArray::distribute(&ctx, &ndarray::arr1(&[2.0, f64::NAN, 1.0, 2.0, 0.0]), Blocks::new([2]))?;
    /// assert_eq!(a.argsort()?.collect1()?.to_vec(), vec![4, 2, 0, 3, 1]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn argsort(&self) -> Result<DArray<u32>, ArrayError> {
        self.argsort_with(SortOrder::Ascending)
    }

    /// The indices that sort a 1-D array in `order`; see [`argsort_axis`](Self::argsort_axis).
    ///
    /// # Errors
    ///
    /// [`ArrayError::Dimensionality`] naming the shape unless the array is 1-D;
    /// [`ArrayError::IndexOverflow`] for more than `u32::MAX` elements.
    pub fn argsort_with(&self, order: SortOrder) -> Result<DArray<u32>, ArrayError> {
        self.only_1d()?;
        self.argsort_axis(0, order)
    }

    /// For every lane along `axis`, the indices along it that sort the lane in `order`
    /// (`numpy.argsort(a, axis, kind="stable")`), blocked as this array: taking the lane's
    /// elements at those indices gives [`sort_axis`](Self::sort_axis). Indices are `u32`
    /// (the widest integer element type).
    ///
    /// Ties keep their input order (the sort is stable), in both orders: the indices of
    /// equal elements ascend. NaNs are equal to each other and above every number.
    ///
    /// # Errors
    ///
    /// [`ArrayError::AxisOutOfRange`] unless `axis < self.ndim()`;
    /// [`ArrayError::IndexOverflow`] if the axis is longer than `u32::MAX`.
    ///
    /// ```
    /// use dagger::prelude::*;
    /// use dagger::SortOrder;
    /// use ndarray::array;
    /// let ctx = Context::builder().threads(2).build()?;
    /// let a = DArray::distribute(&ctx, &array![[1, 0, 1, 0], [7, 8, 9, 7]], Blocks::new([2, 3]))?;
    /// let i = a.argsort_axis(1, SortOrder::Descending)?.collect2()?;
    /// assert_eq!(i, array![[0, 2, 1, 3], [2, 1, 0, 3]]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn argsort_axis(&self, axis: usize, order: SortOrder) -> Result<DArray<u32>, ArrayError> {
        if let Some(&len) = self.shape().get(axis) {
            if len > u32::MAX as usize {
                return Err(ArrayError::IndexOverflow { len });
            }
        }
        sort_along::<Indexed<T>>(self, axis, order)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_order_like_the_numbers_with_nan_last() {
        let xs = [
            f64::NEG_INFINITY,
            -1e300,
            -1.0,
            -f64::MIN_POSITIVE,
            0.0,
            f64::MIN_POSITIVE,
            1.0,
            1e300,
            f64::INFINITY,
        ];
        for w in xs.windows(2) {
            assert!(key_of(w[0]) < key_of(w[1]), "{} < {}", w[0], w[1]);
        }
        assert_eq!(key_of(-0.0f64), key_of(0.0f64));
        assert_eq!(key_of(f64::NAN), key_of(-f64::NAN));
        assert!(key_of(f64::INFINITY) < key_of(f64::NAN));
        assert!(key_of(-3i32) < key_of(2i32));
        assert!(key_of(7u32) < key_of(u32::MAX));
    }

    /// Against the standard library's stable sort by key: sizes about the insertion sort's
    /// and far past a 256-way pass, both orders, keys spread over all 64 bits, keys that
    /// differ only in their lowest bits, few distinct keys, NaNs and signed zeros.
    #[test]
    fn radix_sort_matches_a_stable_sort() {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let kinds: [&dyn Fn(u64) -> f64; 5] = [
            &|r| f64::from_bits(r),
            &|r| 1.0 + (r % 1000) as f64 * f64::EPSILON,
            &|r| (r % 7) as f64,
            &|r| [0.0, -0.0, f64::NAN, -f64::NAN, 1.5][(r % 5) as usize],
            &|r| (r >> 11) as f64 / (1u64 << 53) as f64,
        ];
        for n in [0, 1, 2, 31, 32, 33, 255, 257, 1000, 70_000] {
            for (k, kind) in kinds.iter().enumerate() {
                let v: Vec<Indexed<f64>> = (0..n as u32)
                    .map(|i| Indexed::new(kind(next()), i))
                    .collect();
                for flip in [0, u64::MAX] {
                    let mut got = v.clone();
                    radix_sort(&mut got, flip);
                    let mut want = v.clone();
                    want.sort_by_key(|x| x.key() ^ flip);
                    let idx = |w: &[Indexed<f64>]| w.iter().map(|x| x.index).collect::<Vec<_>>();
                    assert_eq!(idx(&got), idx(&want), "n {n}, kind {k}, flip {flip:x}");
                }
            }
        }
    }

    #[test]
    fn radix_sort_is_stable() {
        let mut v: Vec<Indexed<f32>> = (0..10_000u32)
            .map(|i| Indexed::new(((i * 7919) % 13) as f32, i))
            .collect();
        radix_sort(&mut v, 0);
        for w in v.windows(2) {
            assert!(w[0].x < w[1].x || (w[0].x == w[1].x && w[0].index < w[1].index));
        }
    }
}
