//! Elementwise loops over host slices: the CPU side of `dagger`'s array block kernels.
//!
//! Each function here computes what one WGSL kernel of `shaders/array_*.wgsl` computes on a
//! device, over one block held as a row-major slice:
//!
//! | function | computes | shader |
//! |---|---|---|
//! | [`map`] | `out[i] = f(x[i])` | `array_map.wgsl` |
//! | [`zip`] | `out[i] = f(a[i], b[i])`, a length-1 input broadcast | `array_zip.wgsl` |
//! | [`fold`] | `x[0] ⊕ x[1] ⊕ ...` | `array_reduce.wgsl`, `reduce_all` |
//! | [`reduce_axis`] | a `[outer, len, inner]` block reduced over `len` | `array_reduce.wgsl`, `reduce_axis` |
//! | [`fill`] | `out[i] = v` | `array_fill.wgsl` |
//! | [`copy_box`] | a strided box of one block copied into another | `array_copy.wgsl` |
//! | [`random_box`] | uniform or normal random numbers by global index | `array_random.wgsl` |
//!
//! The operations are closures, so the element semantics (wrapping integers, WGSL's integer
//! division) belong to the caller; the loops are generic over any `Copy` element. The
//! random numbers are the exception: their bits must match the shader's on every
//! processor, so they are defined here, for `f32` and `f64` ([`RandomFloat`]).
//!
//! Like the dense kernels, these panic on a shape mismatch, which is a bug in the caller.
//!
//! ```
//! use dagger_cpu::elementwise::{fold, zip};
//!
//! let a = [1, 2, 3];
//! let mut out = [0; 3];
//! zip(&a, &[10], &mut out, |x, y| x + y); // the one-element side is broadcast
//! assert_eq!(out, [11, 12, 13]);
//! assert_eq!(fold(&out, |x, y| x + y), 36);
//! ```

/// The most dimensions a [`BoxMap`] has (as many as the shaders' box uniform holds).
pub const MAX_DIMS: usize = 8;

/// `out[i] = f(x[i])`.
///
/// # Panics
/// Panics if `x` and `out` differ in length.
#[track_caller]
pub fn map<T: Copy, U>(x: &[T], out: &mut [U], f: impl Fn(T) -> U) {
    assert_eq!(
        x.len(),
        out.len(),
        "map: the input has {} elements but the output {}",
        x.len(),
        out.len()
    );
    out.iter_mut().zip(x).for_each(|(o, &v)| *o = f(v));
}

/// `out[i] = f(a[i], b[i])`, where an input of length 1 stands for that element repeated
/// (broadcast) to the length of `out`.
///
/// # Panics
/// Panics if an input that is not broadcast differs in length from `out`.
///
/// ```
/// use dagger_cpu::elementwise::zip;
/// let mut out = [0.0; 2];
/// zip(&[8.0], &[2.0, 4.0], &mut out, |x, y| x / y);
/// assert_eq!(out, [4.0, 2.0]);
/// ```
#[track_caller]
pub fn zip<T: Copy>(a: &[T], b: &[T], out: &mut [T], f: impl Fn(T, T) -> T) {
    let n = out.len();
    for (side, len) in [("a", a.len()), ("b", b.len())] {
        assert!(
            len == n || len == 1,
            "zip: {side} has {len} elements; it needs {n} (as the output) or 1 (broadcast)"
        );
    }
    match (a.len(), b.len()) {
        (1, m) if m != 1 || n == 1 => {
            let x = a[0];
            out.iter_mut().zip(b).for_each(|(o, &y)| *o = f(x, y));
        }
        (_, 1) => {
            let y = b[0];
            out.iter_mut().zip(a).for_each(|(o, &x)| *o = f(x, y));
        }
        _ => out
            .iter_mut()
            .zip(a.iter().zip(b))
            .for_each(|(o, (&x, &y))| *o = f(x, y)),
    }
}

/// `x[0] ⊕ x[1] ⊕ ...` for an associative `⊕` (`f`), folded in eight independent lanes so
/// that the compiler can vectorise it; the lanes are combined in order at the end.
///
/// # Panics
/// Panics if `x` is empty.
///
/// ```
/// use dagger_cpu::elementwise::fold;
/// let x: Vec<u32> = (1..=100).collect();
/// assert_eq!(fold(&x, |a, b| a + b), 5050);
/// assert_eq!(fold(&[3.0f32], f32::max), 3.0);
/// ```
#[track_caller]
pub fn fold<T: Copy>(x: &[T], f: impl Fn(T, T) -> T) -> T {
    const L: usize = 8;
    assert!(!x.is_empty(), "fold: the input is empty");
    if x.len() < 2 * L {
        return x[1..].iter().fold(x[0], |a, &v| f(a, v));
    }
    let mut lanes: [T; L] = x[..L].try_into().expect("L elements");
    let rest = &x[L..];
    let mut chunks = rest.chunks_exact(L);
    for c in &mut chunks {
        for k in 0..L {
            lanes[k] = f(lanes[k], c[k]);
        }
    }
    let mut acc = lanes[1..].iter().fold(lanes[0], |a, &v| f(a, v));
    for &v in chunks.remainder() {
        acc = f(acc, v);
    }
    acc
}

/// A row-major block `x` seen as `[outer, len, inner]`, reduced over `len` with `f` into
/// `out` (`[outer, inner]`, `outer = out.len() / inner`).
///
/// # Panics
/// Panics if `inner` is zero, if `out` is not a whole number of rows of `inner`, or if `x`
/// is shorter than `out.len() * len`.
///
/// ```
/// use dagger_cpu::elementwise::reduce_axis;
/// // [[1, 2, 3], [4, 5, 6]] summed over its rows (outer = 1, len = 2, inner = 3).
/// let mut out = [0; 3];
/// reduce_axis(&[1, 2, 3, 4, 5, 6], 2, 3, &mut out, |a, b| a + b);
/// assert_eq!(out, [5, 7, 9]);
/// ```
#[track_caller]
pub fn reduce_axis<T: Copy>(
    x: &[T],
    len: usize,
    inner: usize,
    out: &mut [T],
    f: impl Fn(T, T) -> T,
) {
    assert!(inner > 0, "reduce_axis: inner is zero");
    assert!(
        out.len().is_multiple_of(inner) && x.len() >= out.len() * len,
        "reduce_axis: a [outer, {len}, {inner}] block of {} elements does not reduce to {}",
        x.len(),
        out.len()
    );
    for (o, out_row) in out.chunks_mut(inner).enumerate() {
        let base = o * len * inner;
        out_row.copy_from_slice(&x[base..base + inner]);
        for k in 1..len {
            let row = &x[base + k * inner..base + (k + 1) * inner];
            out_row
                .iter_mut()
                .zip(row)
                .for_each(|(a, &v)| *a = f(*a, v));
        }
    }
}

/// `out[i] = v`.
pub fn fill<T: Copy>(out: &mut [T], v: T) {
    out.fill(v);
}

/// A box of elements between two row-major blocks: its shape, and where it starts and how
/// it strides (in elements) in the source and in the destination.
///
/// ```
/// use dagger_cpu::elementwise::BoxMap;
/// // The 2x2 box at (1, 1) of a 3x3 source, written to the start of a 2x2 destination.
/// let b = BoxMap::new(&[2, 2], 4, &[3, 1], 0, &[2, 1]);
/// assert_eq!(b.len(), 4);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BoxMap {
    ndim: usize,
    shape: [usize; MAX_DIMS],
    src_off: usize,
    src_strides: [usize; MAX_DIMS],
    dst_off: usize,
    dst_strides: [usize; MAX_DIMS],
}

impl BoxMap {
    /// The box of `shape` starting at element `src_off` of the source and `dst_off` of the
    /// destination. No dimensions (`shape = []`) is one element.
    ///
    /// # Panics
    /// Panics if the box has more than [`MAX_DIMS`] dimensions or a stride list differs in
    /// length from `shape`.
    #[track_caller]
    pub fn new(
        shape: &[usize],
        src_off: usize,
        src_strides: &[usize],
        dst_off: usize,
        dst_strides: &[usize],
    ) -> Self {
        let ndim = shape.len();
        assert!(
            ndim <= MAX_DIMS,
            "BoxMap: {ndim} dimensions, at most {MAX_DIMS}"
        );
        assert!(
            src_strides.len() == ndim && dst_strides.len() == ndim,
            "BoxMap: shape has {ndim} dimensions but the strides {} and {}",
            src_strides.len(),
            dst_strides.len()
        );
        let mut b = BoxMap {
            ndim,
            src_off,
            dst_off,
            ..Default::default()
        };
        b.shape[..ndim].copy_from_slice(shape);
        b.src_strides[..ndim].copy_from_slice(src_strides);
        b.dst_strides[..ndim].copy_from_slice(dst_strides);
        b
    }

    /// The number of elements in the box.
    pub fn len(&self) -> usize {
        self.shape[..self.ndim].iter().product()
    }

    /// Whether the box has no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The innermost row: `(length, source stride, destination stride)`.
    fn row(&self) -> (usize, usize, usize) {
        match self.ndim {
            0 => (1, 1, 1),
            nd => (
                self.shape[nd - 1],
                self.src_strides[nd - 1],
                self.dst_strides[nd - 1],
            ),
        }
    }
}

/// Calls `row(src, dst)` with the source and destination offsets of the first element of
/// each innermost row of the box, in row-major order; the row has `shape[ndim - 1]`
/// elements strided by the last source and destination strides.
///
/// ```
/// use dagger_cpu::elementwise::{for_each_row, BoxMap};
/// let mut rows = Vec::new();
/// for_each_row(&BoxMap::new(&[2, 3], 1, &[10, 1], 0, &[3, 1]), |s, d| rows.push((s, d)));
/// assert_eq!(rows, [(1, 0), (11, 3)]);
/// ```
pub fn for_each_row(b: &BoxMap, mut row: impl FnMut(usize, usize)) {
    let nd = b.ndim;
    if b.is_empty() {
        return;
    }
    if nd == 0 {
        row(b.src_off, b.dst_off);
        return;
    }
    let mut idx = [0usize; MAX_DIMS];
    loop {
        let (mut s, mut d) = (b.src_off, b.dst_off);
        for (k, &i) in idx.iter().enumerate().take(nd - 1) {
            s += i * b.src_strides[k];
            d += i * b.dst_strides[k];
        }
        row(s, d);
        let mut k = nd - 1;
        loop {
            if k == 0 {
                return;
            }
            k -= 1;
            idx[k] += 1;
            if idx[k] < b.shape[k] {
                break;
            }
            idx[k] = 0;
        }
    }
}

/// Copies the box from `src` into `dst`.
///
/// # Panics
/// Panics if the box reaches past the end of either slice.
///
/// ```
/// use dagger_cpu::elementwise::{copy_box, BoxMap};
/// let src = [0, 1, 2, 3, 4, 5, 6, 7, 8]; // 3x3
/// let mut dst = [0; 4];
/// copy_box(&BoxMap::new(&[2, 2], 4, &[3, 1], 0, &[2, 1]), &src, &mut dst);
/// assert_eq!(dst, [4, 5, 7, 8]);
/// ```
pub fn copy_box<T: Copy>(b: &BoxMap, src: &[T], dst: &mut [T]) {
    let (n, ss, ds) = b.row();
    for_each_row(b, |s, d| {
        if ss == 1 && ds == 1 {
            dst[d..d + n].copy_from_slice(&src[s..s + n]);
        } else {
            for k in 0..n {
                dst[d + k * ds] = src[s + k * ss];
            }
        }
    });
}

/// lowbias32, the integer hash `mix` of `array_random.wgsl`.
///
/// ```
/// assert_eq!(dagger_cpu::elementwise::mix(0), 0);
/// assert_ne!(dagger_cpu::elementwise::mix(1), 1);
/// ```
pub fn mix(mut x: u32) -> u32 {
    x ^= x >> 16;
    x = x.wrapping_mul(0x7feb_352d);
    x ^= x >> 15;
    x = x.wrapping_mul(0x846c_a68b);
    x ^= x >> 16;
    x
}

/// The per-seed key of `element_hash` in `array_random.wgsl`.
pub fn random_key(seed: u64) -> u32 {
    mix(seed as u32 ^ mix((seed >> 32) as u32 ^ 0x85eb_ca6b))
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for f32 {}
    impl Sealed for f64 {}
}

/// A float type random numbers are made in, with the same bits as `array_random.wgsl`
/// computes: `f32` and `f64`. Sealed.
pub trait RandomFloat: Copy + sealed::Sealed {
    /// A uniform number in `[0, 1)` from two random words, computed exactly (the same bits
    /// on every processor): 24 bits of `r0` for `f32`, 26 of `r0` and 27 of `r1` for `f64`.
    ///
    /// ```
    /// use dagger_cpu::elementwise::RandomFloat;
    /// assert_eq!(f32::uniform(u32::MAX, 0), 1.0 - f32::EPSILON / 2.0);
    /// assert_eq!(f64::uniform(0, 0), 0.0);
    /// ```
    fn uniform(r0: u32, r1: u32) -> Self;

    /// A standard normal number from two uniform ones (Box–Muller):
    /// `sqrt(-2 ln(1 - u)) cos(2π u2)`.
    fn box_muller(u: Self, u2: Self) -> Self;
}

impl RandomFloat for f32 {
    fn uniform(r0: u32, _r1: u32) -> Self {
        (r0 >> 8) as f32 * (1.0 / 16_777_216.0)
    }

    fn box_muller(u: Self, u2: Self) -> Self {
        let u1 = 1.0 - u;
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU as f32 * u2).cos()
    }
}

impl RandomFloat for f64 {
    fn uniform(r0: u32, r1: u32) -> Self {
        (r0 >> 6) as f64 * (1.0 / 67_108_864.0) + (r1 >> 5) as f64 * (1.0 / 9_007_199_254_740_992.0)
    }

    fn box_muller(u: Self, u2: Self) -> Self {
        let u1 = 1.0 - u;
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }
}

/// The random number at global index `g` for the seed's `key` ([`random_key`]): uniform in
/// `[0, 1)`, or standard normal if `normal` (as `rand` and `randn` in
/// `array_random.wgsl`). It depends only on `key` and `g`.
///
/// ```
/// use dagger_cpu::elementwise::{random_key, random_value};
/// let key = random_key(42);
/// let x: f64 = random_value(key, 7, false);
/// assert!((0.0..1.0).contains(&x));
/// assert_eq!(x, random_value(key, 7, false));
/// ```
pub fn random_value<T: RandomFloat>(key: u32, g: u32, normal: bool) -> T {
    let h = mix(g ^ key);
    let u = T::uniform(mix(h ^ 0x68e3_1da4), mix(h.wrapping_add(0x1b56_c4e9)));
    if !normal {
        return u;
    }
    let u2 = T::uniform(mix(h ^ 0x2a7b_3c5d), mix(h.wrapping_add(0x7f4a_7c15)));
    T::box_muller(u, u2)
}

/// Fills `out` with random numbers for `seed`: the box maps each element of `out` (its
/// destination side) to a global index (its source side, taken modulo 2³², as the shader's
/// `u32` arithmetic does), and the element gets [`random_value`] of that index. So the
/// same seed gives the same array whatever its blocking.
///
/// ```
/// use dagger_cpu::elementwise::{random_box, BoxMap};
/// // A 4-element array filled whole, and its second half filled as a block on its own.
/// let mut whole = [0.0f32; 4];
/// random_box(&BoxMap::new(&[4], 0, &[1], 0, &[1]), 7, false, &mut whole);
/// let mut half = [0.0f32; 2];
/// random_box(&BoxMap::new(&[2], 2, &[1], 0, &[1]), 7, false, &mut half);
/// assert_eq!(half, whole[2..]);
/// ```
pub fn random_box<T: RandomFloat>(b: &BoxMap, seed: u64, normal: bool, out: &mut [T]) {
    let key = random_key(seed);
    let (n, ss, ds) = b.row();
    let (n, ss) = (n as u32, ss as u32);
    for_each_row(b, |s, d| {
        for k in 0..n {
            let g = (s as u32).wrapping_add(k.wrapping_mul(ss));
            out[d + k as usize * ds] = random_value::<T>(key, g, normal);
        }
    });
}
