//! The block kernels of DArray: each a [`WgslKernel`] built from a file in `shaders/` for
//! one element type, with a CPU implementation of the same operation, and cached so every
//! block of every array shares one kernel (and, on a GPU, one pipeline).

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use parking_lot::Mutex;

use super::element::{Element, Float};
use super::error::ArrayError;
use super::expr::Expr;
use crate::processor::wgpu::{Access, DType, KernelError, WgslKernel};

const MAP: &str = include_str!("../../shaders/array_map.wgsl");
const ZIP: &str = include_str!("../../shaders/array_zip.wgsl");
const REDUCE: &str = include_str!("../../shaders/array_reduce.wgsl");
const COPY: &str = include_str!("../../shaders/array_copy.wgsl");
const FILL: &str = include_str!("../../shaders/array_fill.wgsl");
const RANDOM: &str = include_str!("../../shaders/array_random.wgsl");

/// The most dimensions a block kernel indexes (the box uniform holds 8 extents).
pub(crate) const MAX_DIMS: usize = 8;

/// A box of elements inside two blocks: its shape, and where it starts and how it strides
/// in the source and the destination (`array_copy.wgsl`, `array_random.wgsl`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
pub(crate) struct BoxParams {
    pub(crate) ndim: u32,
    pub(crate) count: u32,
    pub(crate) src_off: u32,
    pub(crate) dst_off: u32,
    pub(crate) shape: [u32; MAX_DIMS],
    pub(crate) src_strides: [u32; MAX_DIMS],
    pub(crate) dst_strides: [u32; MAX_DIMS],
    /// `[seed low, seed high, destination length, 0]`.
    pub(crate) extra: [u32; 4],
}

/// A block seen as `[outer, len, inner]` for a reduction over `len`.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub(crate) struct ReduceShape {
    pub(crate) outer: u32,
    pub(crate) len: u32,
    pub(crate) inner: u32,
    pad: u32,
}

impl ReduceShape {
    pub(crate) fn new(outer: usize, len: usize, inner: usize) -> Self {
        ReduceShape {
            outer: outer as u32,
            len: len as u32,
            inner: inner as u32,
            pad: 0,
        }
    }
}

/// The length of a block to fill.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub(crate) struct Len {
    pub(crate) n: u32,
    pad: [u32; 3],
}

impl Len {
    pub(crate) fn new(n: usize) -> Self {
        Len {
            n: n as u32,
            pad: [0; 3],
        }
    }
}

/// A built-in elementwise function of one float.
#[derive(Clone, Debug)]
pub(crate) enum Unary {
    Neg,
    Abs,
    Sqrt,
    Exp,
    Ln,
    Sin,
    Cos,
    Tanh,
    Expr(Arc<Expr>),
}

impl Unary {
    /// Whether the function needs `exp`, `log`, `pow` or trigonometry: GPUs evaluate
    /// those in 32 bits only (SPIR-V's GLSL.std.450 set has no 64-bit `Exp`, `Log`,
    /// `Sin`, ...), so in `f64` they run on CPU threads.
    pub(crate) fn transcendental(&self) -> bool {
        match self {
            Unary::Neg | Unary::Abs | Unary::Sqrt => false,
            Unary::Exp | Unary::Ln | Unary::Sin | Unary::Cos | Unary::Tanh => true,
            Unary::Expr(e) => e.transcendental(),
        }
    }

    fn key(&self) -> String {
        match self {
            Unary::Expr(e) => format!("expr:{}", e.to_wgsl()),
            other => format!("{other:?}"),
        }
    }

    fn wgsl(&self) -> String {
        match self {
            Unary::Neg => "-x".into(),
            Unary::Abs => "abs(x)".into(),
            Unary::Sqrt => "sqrt(x)".into(),
            Unary::Exp => "exp(x)".into(),
            Unary::Ln => "log(x)".into(),
            Unary::Sin => "sin(x)".into(),
            Unary::Cos => "cos(x)".into(),
            Unary::Tanh => "tanh(x)".into(),
            Unary::Expr(e) => e.to_wgsl(),
        }
    }
}

/// A built-in elementwise function of two elements.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Binary {
    Add,
    Sub,
    Mul,
    Div,
    Min,
    Max,
    Pow,
}

impl Binary {
    /// The function body for element type `dtype`. Integer division follows WGSL's rule
    /// (division by zero gives the dividend, `MIN / -1` wraps) explicitly, since not every
    /// backend's translation does.
    fn wgsl(self, dtype: DType) -> &'static str {
        match self {
            Binary::Add => "x + y",
            Binary::Sub => "x - y",
            Binary::Mul => "x * y",
            Binary::Div if dtype == DType::I32 => {
                "select(select(x / y, 0i - x, y == -1i), x, y == 0i)"
            }
            Binary::Div if dtype == DType::U32 => "select(x / y, x, y == 0u)",
            Binary::Div => "x / y",
            Binary::Min => "min(x, y)",
            Binary::Max => "max(x, y)",
            Binary::Pow => "pow(x, y)",
        }
    }
}

/// An associative reduction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Reduce {
    Sum,
    Prod,
    Min,
    Max,
}

impl Reduce {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Reduce::Sum => "sum",
            Reduce::Prod => "prod",
            Reduce::Min => "min",
            Reduce::Max => "max",
        }
    }

    /// The elementwise operation that combines two partial results.
    pub(crate) fn combine_op(self) -> Binary {
        match self {
            Reduce::Sum => Binary::Add,
            Reduce::Prod => Binary::Mul,
            Reduce::Min => Binary::Min,
            Reduce::Max => Binary::Max,
        }
    }

    fn apply<T: Element>(self, x: T, y: T) -> T {
        match self {
            Reduce::Sum => x.add(y),
            Reduce::Prod => x.mul(y),
            Reduce::Min => x.min_of(y),
            Reduce::Max => x.max_of(y),
        }
    }
}

type Cache = Mutex<HashMap<(TypeId, &'static str, String), Arc<dyn Any + Send + Sync>>>;

/// The kernel for (`family`, `key`, `T`), built once.
fn cached<P, T>(
    family: &'static str,
    key: String,
    make: impl FnOnce() -> Result<WgslKernel<P, T>, Box<KernelError>>,
) -> Result<WgslKernel<P, T>, ArrayError>
where
    P: bytemuck::Pod + Send + Sync + 'static,
    T: Element,
{
    static CACHE: OnceLock<Cache> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    let k = (TypeId::of::<T>(), family, key);
    if let Some(v) = cache.lock().get(&k) {
        return Ok(v
            .downcast_ref::<WgslKernel<P, T>>()
            .expect("one parameter type per family")
            .clone());
    }
    let name = format!("array_{family}_{}", T::DTYPE.wgsl());
    let kernel = make().map_err(|source| ArrayError::Kernel { name, source })?;
    cache.lock().insert(k, Arc::new(kernel.clone()));
    Ok(kernel)
}

/// `source` for element type `T`, with the line `old` replaced by `new`.
fn specialise<T: Element>(source: &str, old: &str, new: &str) -> String {
    debug_assert!(source.contains(old), "shader template lacks `{old}`");
    source
        .replacen(
            "alias T = f32;",
            &format!("alias T = {};", T::DTYPE.wgsl()),
            1,
        )
        .replacen(old, new, 1)
}

/// The workgroup count covering `n` invocations of 256, wrapped into y past 65535 groups.
pub(crate) fn groups(n: usize) -> [u32; 3] {
    let g = n.div_ceil(256).max(1) as u32;
    let x = g.min(65_535);
    [x, g.div_ceil(x), 1]
}

pub(crate) fn unary<T: Float>(op: &Unary) -> Result<WgslKernel<(), T>, ArrayError> {
    let body = op.wgsl();
    let source = specialise::<T>(
        MAP,
        "fn op(x: T) -> T { return x; }",
        &format!("fn op(x: T) -> T {{ return {body}; }}"),
    );
    let op = op.clone();
    cached("map", op.key(), move || {
        WgslKernel::builder(format!("map {body}"), source, "main")
            .inputs([Access::Read])
            .output(|_, lens| lens[0])
            .workgroups(|_, lens| groups(lens[0]))
            .cpu(move |_, ins, out| {
                let x = ins[0];
                macro_rules! each {
                    ($f:expr) => {
                        out.iter_mut().zip(x).for_each(|(o, &v)| *o = $f(v))
                    };
                }
                match &op {
                    Unary::Neg => each!(|v: T| -v),
                    Unary::Abs => each!(T::abs),
                    Unary::Sqrt => each!(T::sqrt),
                    Unary::Exp => each!(T::exp),
                    Unary::Ln => each!(T::ln),
                    Unary::Sin => each!(T::sin),
                    Unary::Cos => each!(T::cos),
                    Unary::Tanh => each!(T::tanh),
                    Unary::Expr(e) => e.eval(x, out),
                }
            })
            .build()
            .map_err(Box::new)
    })
}

fn zip_loop<T: Element>(a: &[T], b: &[T], out: &mut [T], f: impl Fn(T, T) -> T) {
    match (a.len(), b.len()) {
        (1, n) if n != 1 || out.len() == 1 => {
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

/// `out = op(a, b)`; an input of length 1 is broadcast.
pub(crate) fn binary<T: Element>(op: Binary) -> Result<WgslKernel<(), T>, ArrayError> {
    let source = specialise::<T>(
        ZIP,
        "fn op(x: T, y: T) -> T { return x + y; }",
        &format!("fn op(x: T, y: T) -> T {{ return {}; }}", op.wgsl(T::DTYPE)),
    );
    cached("zip", format!("{op:?}"), move || {
        WgslKernel::builder(format!("zip {}", op.wgsl(T::DTYPE)), source, "main")
            .inputs([Access::Read, Access::Read])
            .output(|_, lens| lens[0].max(lens[1]))
            .workgroups(|_, lens| groups(lens[0].max(lens[1])))
            .cpu(move |_, ins, out| {
                let (a, b) = (ins[0], ins[1]);
                match op {
                    Binary::Add => zip_loop(a, b, out, T::add),
                    Binary::Sub => zip_loop(a, b, out, T::sub),
                    Binary::Mul => zip_loop(a, b, out, T::mul),
                    Binary::Div => zip_loop(a, b, out, T::div),
                    Binary::Min => zip_loop(a, b, out, T::min_of),
                    Binary::Max => zip_loop(a, b, out, T::max_of),
                    Binary::Pow => zip_loop(a, b, out, T::pow_elem),
                }
            })
            .build()
            .map_err(Box::new)
    })
}

fn reduce_source<T: Element>(op: Reduce) -> String {
    specialise::<T>(
        REDUCE,
        "fn combine(x: T, y: T) -> T { return x + y; }",
        &format!(
            "fn combine(x: T, y: T) -> T {{ return {}; }}",
            op.combine_op().wgsl(T::DTYPE)
        ),
    )
}

/// `x[0] ⊕ x[1] ⊕ ...` in eight independent lanes, so the compiler can vectorise it.
fn fold_lanes<T: Element>(x: &[T], op: Reduce) -> T {
    const L: usize = 8;
    if x.len() < 2 * L {
        return x[1..].iter().fold(x[0], |a, &v| op.apply(a, v));
    }
    let mut lanes: [T; L] = x[..L].try_into().expect("L elements");
    let rest = &x[L..];
    let mut chunks = rest.chunks_exact(L);
    for c in &mut chunks {
        for k in 0..L {
            lanes[k] = op.apply(lanes[k], c[k]);
        }
    }
    let mut acc = lanes[1..].iter().fold(lanes[0], |a, &v| op.apply(a, v));
    for &v in chunks.remainder() {
        acc = op.apply(acc, v);
    }
    acc
}

/// One block reduced to one element.
pub(crate) fn reduce_all<T: Element>(op: Reduce) -> Result<WgslKernel<ReduceShape, T>, ArrayError> {
    let source = reduce_source::<T>(op);
    cached("reduce_all", format!("{op:?}"), move || {
        WgslKernel::builder(format!("{} of a block", op.name()), source, "reduce_all")
            .inputs([Access::Read])
            .output(|_, _| 1)
            .workgroups(|_, _| [1, 1, 1])
            .cpu(move |_, ins, out| {
                let x = ins[0];
                out[0] = fold_lanes(x, op);
            })
            .build()
            .map_err(Box::new)
    })
}

/// One block, seen as `[outer, len, inner]`, reduced over `len`.
pub(crate) fn reduce_axis<T: Element>(
    op: Reduce,
) -> Result<WgslKernel<ReduceShape, T>, ArrayError> {
    let source = reduce_source::<T>(op);
    cached("reduce_axis", format!("{op:?}"), move || {
        WgslKernel::builder(
            format!("{} along an axis of a block", op.name()),
            source,
            "reduce_axis",
        )
        .inputs([Access::Read])
        .output(|p: &ReduceShape, _| (p.outer * p.inner) as usize)
        .workgroups(|p: &ReduceShape, _| groups((p.outer * p.inner) as usize))
        .cpu(move |p: &ReduceShape, ins, out| {
            let (len, inner) = (p.len as usize, p.inner as usize);
            let x = ins[0];
            for (o, out_row) in out.chunks_mut(inner).enumerate() {
                let base = o * len * inner;
                out_row.copy_from_slice(&x[base..base + inner]);
                for k in 1..len {
                    let row = &x[base + k * inner..base + (k + 1) * inner];
                    out_row
                        .iter_mut()
                        .zip(row)
                        .for_each(|(a, &v)| *a = op.apply(*a, v));
                }
            }
        })
        .build()
        .map_err(Box::new)
    })
}

/// Calls `row(src, dst)` for the first element of each innermost row of the box; the row
/// has `shape[ndim - 1]` elements strided by the last source and destination strides.
pub(crate) fn for_each_row(p: &BoxParams, mut row: impl FnMut(usize, usize)) {
    let nd = p.ndim as usize;
    if p.count == 0 {
        return;
    }
    if nd == 0 {
        row(p.src_off as usize, p.dst_off as usize);
        return;
    }
    let mut idx = [0usize; MAX_DIMS];
    loop {
        let (mut s, mut d) = (p.src_off as usize, p.dst_off as usize);
        for (k, &i) in idx.iter().enumerate().take(nd - 1) {
            s += i * p.src_strides[k] as usize;
            d += i * p.dst_strides[k] as usize;
        }
        row(s, d);
        let mut k = nd - 1;
        loop {
            if k == 0 {
                return;
            }
            k -= 1;
            idx[k] += 1;
            if idx[k] < p.shape[k] as usize {
                break;
            }
            idx[k] = 0;
        }
    }
}

fn copy_box<T: Copy>(p: &BoxParams, src: &[T], dst: &mut [T]) {
    let nd = p.ndim as usize;
    let (n, ss, ds) = if nd == 0 {
        (1, 1, 1)
    } else {
        (
            p.shape[nd - 1] as usize,
            p.src_strides[nd - 1] as usize,
            p.dst_strides[nd - 1] as usize,
        )
    };
    for_each_row(p, |s, d| {
        if ss == 1 && ds == 1 {
            dst[d..d + n].copy_from_slice(&src[s..s + n]);
        } else {
            for k in 0..n {
                dst[d + k * ds] = src[s + k * ss];
            }
        }
    });
}

/// A fresh block holding a box of the source (`extra[2]` elements long).
pub(crate) fn gather<T: Element>() -> Result<WgslKernel<BoxParams, T>, ArrayError> {
    let source = specialise::<T>(
        COPY,
        "alias T = f32;",
        &format!("alias T = {};", T::DTYPE.wgsl()),
    );
    cached("gather", String::new(), move || {
        WgslKernel::builder("gather a box", source, "gather")
            .inputs([Access::Read])
            .output(|p: &BoxParams, _| p.extra[2] as usize)
            .workgroups(|p: &BoxParams, _| groups(p.count as usize))
            .cpu(|p: &BoxParams, ins, out| copy_box(p, ins[0], out))
            .build()
            .map_err(Box::new)
    })
}

/// The destination block with a box of the source written into it.
pub(crate) fn copy_into<T: Element>() -> Result<WgslKernel<BoxParams, T>, ArrayError> {
    let source = specialise::<T>(
        COPY,
        "alias T = f32;",
        &format!("alias T = {};", T::DTYPE.wgsl()),
    );
    cached("copy_into", String::new(), move || {
        WgslKernel::builder("copy a box into a block", source, "copy_into")
            .inputs([Access::Read, Access::ReadWrite])
            .workgroups(|p: &BoxParams, _| groups(p.count as usize))
            .cpu(|p: &BoxParams, ins, out| copy_box(p, ins[0], out))
            .build()
            .map_err(Box::new)
    })
}

/// A block of `n` copies of a one-element input.
pub(crate) fn fill<T: Element>() -> Result<WgslKernel<Len, T>, ArrayError> {
    let source = specialise::<T>(
        FILL,
        "alias T = f32;",
        &format!("alias T = {};", T::DTYPE.wgsl()),
    );
    cached("fill", String::new(), move || {
        WgslKernel::builder("fill a block", source, "fill")
            .inputs([Access::Read])
            .output(|p: &Len, _| p.n as usize)
            .workgroups(|p: &Len, _| groups(p.n as usize))
            .cpu(|_, ins, out| out.fill(ins[0][0]))
            .build()
            .map_err(Box::new)
    })
}

/// lowbias32, as `mix` in `array_random.wgsl`.
pub(crate) fn mix(mut x: u32) -> u32 {
    x ^= x >> 16;
    x = x.wrapping_mul(0x7feb_352d);
    x ^= x >> 15;
    x = x.wrapping_mul(0x846c_a68b);
    x ^= x >> 16;
    x
}

/// The value of the element with global index `g` (as `rand`/`randn` in
/// `array_random.wgsl`).
pub(crate) fn random_value<T: Float>(key: u32, g: u32, normal: bool) -> T {
    let h = mix(g ^ key);
    let u = T::unit(mix(h ^ 0x68e3_1da4), mix(h.wrapping_add(0x1b56_c4e9)));
    if !normal {
        return u;
    }
    let u1 = T::ONE.sub(u);
    let u2 = T::unit(mix(h ^ 0x2a7b_3c5d), mix(h.wrapping_add(0x7f4a_7c15)));
    (T::from_f64(-2.0).mul(u1.ln()))
        .sqrt()
        .mul(T::from_f64(std::f64::consts::TAU).mul(u2).cos())
}

/// The per-seed key of `element_hash` in `array_random.wgsl`.
pub(crate) fn random_key(seed: u64) -> u32 {
    mix(seed as u32 ^ mix((seed >> 32) as u32 ^ 0x85eb_ca6b))
}

/// A block of random numbers; `extra[0..2]` is the seed, the box maps block elements to
/// global indices.
pub(crate) fn random<T: Float>(normal: bool) -> Result<WgslKernel<BoxParams, T>, ArrayError> {
    let unit = match T::DTYPE {
        DType::F64 => "fn unit(r0: u32, r1: u32) -> T { return T(r0 >> 6u) * T(1.0 / 67108864.0) + T(r1 >> 5u) * T(1.0 / 9007199254740992.0); }",
        _ => "fn unit(r0: u32, r1: u32) -> T { return T(r0 >> 8u) * T(1.0 / 16777216.0); }",
    };
    let source = specialise::<T>(
        RANDOM,
        "fn unit(r0: u32, r1: u32) -> T { return T(r0 >> 8u) * T(1.0 / 16777216.0); }",
        unit,
    );
    let entry = if normal { "randn" } else { "rand" };
    cached("random", entry.into(), move || {
        WgslKernel::builder(entry, source, entry)
            .inputs([])
            .output(|p: &BoxParams, _| p.count as usize)
            .workgroups(|p: &BoxParams, _| groups(p.count as usize))
            .cpu(move |p: &BoxParams, _, out| {
                let key = random_key(u64::from(p.extra[0]) | (u64::from(p.extra[1]) << 32));
                let nd = p.ndim as usize;
                let (n, ss, ds) = if nd == 0 {
                    (1, 1, 1)
                } else {
                    (
                        p.shape[nd - 1],
                        p.src_strides[nd - 1],
                        p.dst_strides[nd - 1] as usize,
                    )
                };
                for_each_row(p, |s, d| {
                    for k in 0..n {
                        let g = (s as u32).wrapping_add(k.wrapping_mul(ss));
                        out[d + k as usize * ds] = random_value::<T>(key, g, normal);
                    }
                });
            })
            .build()
            .map_err(Box::new)
    })
}
