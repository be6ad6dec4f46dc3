//! The block kernels of DArray: each a [`WgslKernel`] assembled from the backends' pieces —
//! the WGSL that `dagger_wgpu::array` specialises for one element type, and the loop of
//! `dagger_cpu::elementwise` that computes the same operation on a CPU thread — and cached
//! so every block of every array shares one kernel (and, on a GPU, one pipeline).

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use dagger_cpu::elementwise::{self as cpu, BoxMap};
use dagger_wgpu::array::{self as wgsl, groups};
use parking_lot::Mutex;

use super::element::{Element, Float};
use super::error::ArrayError;
use super::expr::Expr;
use crate::processor::wgpu::{Access, DType, KernelError, WgslKernel};

/// The most dimensions a block kernel indexes: as many extents as the box uniform of the
/// shaders holds, and as a CPU [`BoxMap`] has.
pub(crate) const MAX_DIMS: usize = cpu::MAX_DIMS;

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

impl BoxParams {
    /// The box for the CPU loops.
    pub(crate) fn host(&self) -> BoxMap {
        let nd = self.ndim as usize;
        let widen = |v: &[u32; MAX_DIMS]| v.map(|x| x as usize);
        let (shape, src, dst) = (
            widen(&self.shape),
            widen(&self.src_strides),
            widen(&self.dst_strides),
        );
        BoxMap::new(
            &shape[..nd],
            self.src_off as usize,
            &src[..nd],
            self.dst_off as usize,
            &dst[..nd],
        )
    }

    /// The seed of a random block (`extra[0..2]`).
    fn seed(&self) -> u64 {
        u64::from(self.extra[0]) | (u64::from(self.extra[1]) << 32)
    }
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
/// A block kernel's name: what it does and its element type (kernels are registered by
/// name, one per element type).
pub(crate) fn named<T: Element>(label: impl std::fmt::Display) -> String {
    format!("{label} [{}]", T::DTYPE)
}

pub(crate) fn cached<P, T>(
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

pub(crate) fn unary<T: Float>(op: &Unary) -> Result<WgslKernel<(), T>, ArrayError> {
    let body = op.wgsl();
    let source = wgsl::map_source(T::DTYPE.wgsl(), &body);
    let op = op.clone();
    cached("map", op.key(), move || {
        let b = WgslKernel::builder(named::<T>(format!("map {body}")), source, "main");
        // A kernel made from an expression exists only where the expression was written.
        let b = if matches!(op, Unary::Expr(_)) {
            b.local()
        } else {
            b
        };
        b.inputs([Access::Read])
            .output(|_, lens| lens[0])
            .workgroups(|_, lens| groups(lens[0]))
            .cpu(move |_, ins, out| {
                let x = ins[0];
                match &op {
                    Unary::Neg => cpu::map(x, out, |v: T| -v),
                    Unary::Abs => cpu::map(x, out, T::abs),
                    Unary::Sqrt => cpu::map(x, out, T::sqrt),
                    Unary::Exp => cpu::map(x, out, T::exp),
                    Unary::Ln => cpu::map(x, out, T::ln),
                    Unary::Sin => cpu::map(x, out, T::sin),
                    Unary::Cos => cpu::map(x, out, T::cos),
                    Unary::Tanh => cpu::map(x, out, T::tanh),
                    Unary::Expr(e) => e.eval(x, out),
                }
            })
            .build()
            .map_err(Box::new)
    })
}

/// The WGSL of a chain of maps, one expression per stage.
fn stage_sources(stages: &[Arc<Expr>]) -> Vec<String> {
    stages.iter().map(|e| e.to_wgsl()).collect()
}

/// `out = s_k(...s_1(a))` for a chain of stages: one pass over the block, one WGSL kernel.
pub(crate) fn map_chain<T: Float>(stages: &[Arc<Expr>]) -> Result<WgslKernel<(), T>, ArrayError> {
    let wgsl: Vec<String> = stage_sources(stages);
    let refs: Vec<&str> = wgsl.iter().map(String::as_str).collect();
    let source = wgsl::map_chain_source(T::DTYPE.wgsl(), &refs);
    let label = wgsl.join(" | ");
    let stages = stages.to_vec();
    cached("map_chain", label.clone(), move || {
        WgslKernel::builder(named::<T>(format!("fused map {label}")), source, "main")
            .local()
            .inputs([Access::Read])
            .output(|_, lens| lens[0])
            .workgroups(|_, lens| groups(lens[0]))
            .cpu(move |_, ins, out| Expr::eval_chain(&stages, ins[0], out))
            .build()
            .map_err(Box::new)
    })
}

/// One block mapped through a chain of stages and reduced to one element, in one pass.
pub(crate) fn map_reduce_all<T: Float>(
    op: Reduce,
    stages: &[Arc<Expr>],
) -> Result<WgslKernel<ReduceShape, T>, ArrayError> {
    let wgsl: Vec<String> = stage_sources(stages);
    let refs: Vec<&str> = wgsl.iter().map(String::as_str).collect();
    let source = wgsl::map_reduce_source(T::DTYPE.wgsl(), &refs, op.combine_op().wgsl(T::DTYPE));
    let label = wgsl.join(" | ");
    let stages = stages.to_vec();
    cached("map_reduce_all", format!("{op:?} {label}"), move || {
        WgslKernel::builder(
            named::<T>(format!("fused {} of {label}", op.name())),
            source,
            "reduce_all",
        )
        .local()
        .inputs([Access::Read])
        .output(|_, _| 1)
        .workgroups(|_, _| [1, 1, 1])
        .cpu(move |_, ins, out| out[0] = Expr::fold_chain(&stages, ins[0], |a, b| op.apply(a, b)))
        .build()
        .map_err(Box::new)
    })
}

/// `out = op(a, b)`; an input of length 1 is broadcast.
pub(crate) fn binary<T: Element>(op: Binary) -> Result<WgslKernel<(), T>, ArrayError> {
    let source = wgsl::zip_source(T::DTYPE.wgsl(), op.wgsl(T::DTYPE));
    cached("zip", format!("{op:?}"), move || {
        WgslKernel::builder(
            named::<T>(format!("zip {}", op.wgsl(T::DTYPE))),
            source,
            "main",
        )
        .inputs([Access::Read, Access::Read])
        .output(|_, lens| lens[0].max(lens[1]))
        .workgroups(|_, lens| groups(lens[0].max(lens[1])))
        .cpu(move |_, ins, out| {
            let (a, b) = (ins[0], ins[1]);
            match op {
                Binary::Add => cpu::zip(a, b, out, T::add),
                Binary::Sub => cpu::zip(a, b, out, T::sub),
                Binary::Mul => cpu::zip(a, b, out, T::mul),
                Binary::Div => cpu::zip(a, b, out, T::div),
                Binary::Min => cpu::zip(a, b, out, T::min_of),
                Binary::Max => cpu::zip(a, b, out, T::max_of),
                Binary::Pow => cpu::zip(a, b, out, T::pow_elem),
            }
        })
        .build()
        .map_err(Box::new)
    })
}

fn reduce_source<T: Element>(op: Reduce) -> String {
    wgsl::reduce_source(T::DTYPE.wgsl(), op.combine_op().wgsl(T::DTYPE))
}

/// One block reduced to one element.
pub(crate) fn reduce_all<T: Element>(op: Reduce) -> Result<WgslKernel<ReduceShape, T>, ArrayError> {
    let source = reduce_source::<T>(op);
    cached("reduce_all", format!("{op:?}"), move || {
        WgslKernel::builder(
            named::<T>(format!("{} of a block", op.name())),
            source,
            "reduce_all",
        )
        .inputs([Access::Read])
        .output(|_, _| 1)
        .workgroups(|_, _| [1, 1, 1])
        .cpu(move |_, ins, out| {
            let x = ins[0];
            out[0] = cpu::fold(x, |a, b| op.apply(a, b));
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
            named::<T>(format!("{} along an axis of a block", op.name())),
            source,
            "reduce_axis",
        )
        .inputs([Access::Read])
        .output(|p: &ReduceShape, _| (p.outer * p.inner) as usize)
        .workgroups(|p: &ReduceShape, _| groups((p.outer * p.inner) as usize))
        .cpu(move |p: &ReduceShape, ins, out| {
            let (len, inner) = (p.len as usize, p.inner as usize);
            cpu::reduce_axis(ins[0], len, inner, out, |a, b| op.apply(a, b));
        })
        .build()
        .map_err(Box::new)
    })
}

/// A fresh block holding a box of the source (`extra[2]` elements long).
pub(crate) fn gather<T: Element>() -> Result<WgslKernel<BoxParams, T>, ArrayError> {
    let source = wgsl::copy_source(T::DTYPE.wgsl());
    cached("gather", String::new(), move || {
        WgslKernel::builder(named::<T>("gather a box"), source, "gather")
            .inputs([Access::Read])
            .output(|p: &BoxParams, _| p.extra[2] as usize)
            .workgroups(|p: &BoxParams, _| groups(p.count as usize))
            .cpu(|p: &BoxParams, ins, out| cpu::copy_box(&p.host(), ins[0], out))
            .build()
            .map_err(Box::new)
    })
}

/// The destination block with a box of the source written into it.
pub(crate) fn copy_into<T: Element>() -> Result<WgslKernel<BoxParams, T>, ArrayError> {
    let source = wgsl::copy_source(T::DTYPE.wgsl());
    cached("copy_into", String::new(), move || {
        WgslKernel::builder(named::<T>("copy a box into a block"), source, "copy_into")
            .inputs([Access::Read, Access::ReadWrite])
            .workgroups(|p: &BoxParams, _| groups(p.count as usize))
            .cpu(|p: &BoxParams, ins, out| cpu::copy_box(&p.host(), ins[0], out))
            .build()
            .map_err(Box::new)
    })
}

/// A block of `n` copies of a one-element input.
pub(crate) fn fill<T: Element>() -> Result<WgslKernel<Len, T>, ArrayError> {
    let source = wgsl::fill_source(T::DTYPE.wgsl());
    cached("fill", String::new(), move || {
        WgslKernel::builder(named::<T>("fill a block"), source, "fill")
            .inputs([Access::Read])
            .output(|p: &Len, _| p.n as usize)
            .workgroups(|p: &Len, _| groups(p.n as usize))
            .cpu(|_, ins, out| cpu::fill(out, ins[0][0]))
            .build()
            .map_err(Box::new)
    })
}

/// A block of random numbers; `extra[0..2]` is the seed, the box maps block elements to
/// global indices.
pub(crate) fn random<T: Float>(normal: bool) -> Result<WgslKernel<BoxParams, T>, ArrayError> {
    let source = wgsl::random_source(T::DTYPE.wgsl());
    let entry = if normal { "randn" } else { "rand" };
    cached("random", entry.into(), move || {
        WgslKernel::builder(named::<T>(entry), source, entry)
            .inputs([])
            .output(|p: &BoxParams, _| p.count as usize)
            .workgroups(|p: &BoxParams, _| groups(p.count as usize))
            .cpu(move |p: &BoxParams, _, out| {
                cpu::random_box::<T>(&p.host(), p.seed(), normal, out)
            })
            .build()
            .map_err(Box::new)
    })
}

/// Makes every block kernel of one element type that every rank can make by name: the
/// elementwise operations, reductions, copies, fills and random numbers (not the ones
/// made from expressions, which are local to the process that wrote them).
fn register_builtin<T: Element>() {
    for op in [
        Binary::Add,
        Binary::Sub,
        Binary::Mul,
        Binary::Div,
        Binary::Min,
        Binary::Max,
        Binary::Pow,
    ] {
        // Some operations have no WGSL for some element types (`pow` of integers).
        let _ = binary::<T>(op);
    }
    for op in [Reduce::Sum, Reduce::Prod, Reduce::Min, Reduce::Max] {
        let _ = reduce_all::<T>(op);
        let _ = reduce_axis::<T>(op);
    }
    let _ = gather::<T>();
    let _ = copy_into::<T>();
    let _ = fill::<T>();
}

fn register_builtin_float<T: Float>() {
    register_builtin::<T>();
    for op in [
        Unary::Neg,
        Unary::Abs,
        Unary::Sqrt,
        Unary::Exp,
        Unary::Ln,
        Unary::Sin,
        Unary::Cos,
        Unary::Tanh,
    ] {
        let _ = unary::<T>(&op);
    }
    let _ = random::<T>(false);
    let _ = random::<T>(true);
}

/// Registers the block kernels of every element type (see `Kernel::lookup`).
pub(crate) fn register_all_builtin() {
    register_builtin::<i32>();
    register_builtin::<u32>();
    register_builtin_float::<f32>();
    register_builtin_float::<f64>();
}
