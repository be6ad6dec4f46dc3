//! Stencils: a weighted neighbourhood sum over N-D arrays, with halos exchanged between
//! blocks and a boundary condition at the array's edges ([`Stencil`], [`Boundary`],
//! `DArray::stencil`, `DArray::stencil_iter`).
//!
//! Each output block is made by tasks that are all kernels with a CPU and a WGSL
//! implementation: the block and its halo are assembled into a padded block by box copies
//! from the blocks that hold them (the boundary condition decides which elements those
//! are, or a fill gives the constant), then one stencil kernel (generated per stencil)
//! computes the block from it. So on a GPU scope an iterated stencil never leaves the
//! device, and on CPU threads it reads each padded block once. On CPU threads an iterated
//! stencil with a constant or wrapped outside takes up to eight steps per pass over the
//! blocks (temporal blocking): a halo that many times wider, and each block stepped in
//! strips small enough to stay in cache between steps.

use std::sync::Arc;

use dagger_cpu::elementwise::BoxMap;
use dagger_wgpu::array::groups;

use super::domain::{strides, Grid};
use super::element::Float;
use super::error::ArrayError;
use super::kernels::{self, BoxParams, Len, MAX_DIMS};
use super::{box_params, host_options, Block, DArray};
use crate::processor::wgpu::{Access, WgslKernel};
use crate::processor::Body;
use crate::processor::TaskFailure;
use crate::task::args::Deps;
use crate::value::Value;
use crate::{Chunk, DTask};

/// What a stencil reads past the edges of the array, per dimension (the modes of numpy's
/// `pad` and of Dagger.jl's `@stencil`).
#[derive(Clone, Copy, Debug, PartialEq)]
#[non_exhaustive]
pub enum Boundary<T> {
    /// Periodic: index `-1` is the last element.
    Wrap,
    /// A constant: every element past the edge is this value.
    Constant(T),
    /// The nearest edge element repeated: index `-k` is element 0.
    Clamp,
    /// Mirrored about the edge element, which is not repeated: index `-k` is element `k`
    /// (numpy's `reflect`); an extent of 1 reads its only element.
    Reflect,
}

/// A linear stencil: `out[i] = Σ w_k · in[i + o_k]` over its taps (offset `o_k`, weight
/// `w_k`), every offset with one entry per dimension of the array it is applied to.
///
/// ```
/// use dagger::Stencil;
/// let jacobi = Stencil::jacobi_5pt();
/// assert_eq!(jacobi.radius(), 1);
/// assert_eq!(jacobi.ndim(), 2);
/// let smooth = Stencil::new([(vec![-1], 0.25), (vec![0], 0.5), (vec![1], 0.25)])?;
/// assert_eq!(smooth.ndim(), 1);
/// assert!(Stencil::new([(vec![0, 1], 1.0), (vec![1], 1.0)]).is_err());
/// # Ok::<(), dagger::ArrayError>(())
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct Stencil {
    taps: Vec<(Vec<isize>, f64)>,
}

impl Stencil {
    /// A stencil of the taps given.
    ///
    /// # Errors
    /// [`ArrayError::InvalidStencil`] for no taps, offsets of different lengths, of no
    /// dimension or of more than 8.
    pub fn new(taps: impl IntoIterator<Item = (Vec<isize>, f64)>) -> Result<Self, ArrayError> {
        let taps: Vec<(Vec<isize>, f64)> = taps.into_iter().collect();
        let bad = |message: String| Err(ArrayError::InvalidStencil { message });
        let Some(nd) = taps.first().map(|t| t.0.len()) else {
            return bad("a stencil needs at least one tap".into());
        };
        if nd == 0 || nd > MAX_DIMS {
            return bad(format!("offsets have 1 to {MAX_DIMS} entries, not {nd}"));
        }
        if let Some(t) = taps.iter().find(|t| t.0.len() != nd) {
            return bad(format!(
                "the offset {:?} has {} entries but the first has {nd}",
                t.0,
                t.0.len()
            ));
        }
        Ok(Stencil { taps })
    }

    /// The 5-point Jacobi step on a 2-D grid: the mean of the four neighbours.
    pub fn jacobi_5pt() -> Self {
        Stencil {
            taps: vec![
                (vec![-1, 0], 0.25),
                (vec![1, 0], 0.25),
                (vec![0, -1], 0.25),
                (vec![0, 1], 0.25),
            ],
        }
    }

    /// The taps: (offset, weight).
    pub fn taps(&self) -> &[(Vec<isize>, f64)] {
        &self.taps
    }

    /// The dimensions of the arrays it applies to.
    pub fn ndim(&self) -> usize {
        self.taps[0].0.len()
    }

    /// The largest offset in any dimension: the width of the halo.
    pub fn radius(&self) -> usize {
        self.taps
            .iter()
            .flat_map(|t| t.0.iter())
            .map(|o| o.unsigned_abs())
            .max()
            .unwrap_or(0)
    }

    /// The WGSL of the kernel: `out[i]` from the padded block, taps inlined.
    fn wgsl(&self, scalar: &str) -> String {
        let mut sum = Vec::new();
        for (off, w) in &self.taps {
            let mut idx = String::from("b");
            for (d, &o) in off.iter().enumerate() {
                if o != 0 {
                    idx.push_str(&format!(" + ({o}) * ps({d}u)"));
                }
            }
            sum.push(format!("T({w:?}) * src[u32({idx})]"));
        }
        STENCIL_WGSL
            .replacen("alias T = f32;", &format!("alias T = {scalar};"), 1)
            .replacen("return T(0.0);", &format!("return {};", sum.join(" + ")), 1)
    }
}

/// The template of the stencil kernel: `sum` returns the stencil at padded offset `b`.
const STENCIL_WGSL: &str = r#"// A stencil over one block, from the block padded with its halo.
alias T = f32;

struct Params {
    ndim: u32,
    count: u32,
    radius: u32,
    pad: u32,
    shape: array<vec4<u32>, 2>,
    pstrides: array<vec4<u32>, 2>,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> src: array<T>;
@group(0) @binding(2) var<storage, read_write> out: array<T>;

fn ps(k: u32) -> i32 { return i32(p.pstrides[k / 4u][k % 4u]); }

fn sum(b: i32) -> T { return T(0.0); }

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) id: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let i = id.x + id.y * groups.x * 256u;
    if (i >= p.count) { return; }
    var rem = i;
    var base = 0u;
    for (var k = i32(p.ndim) - 1; k >= 0; k = k - 1) {
        let kk = u32(k);
        let e = p.shape[kk / 4u][kk % 4u];
        base = base + (rem % e + p.radius) * p.pstrides[kk / 4u][kk % 4u];
        rem = rem / e;
    }
    out[i] = sum(i32(base));
}
"#;

/// The parameters of the stencil kernel: the output block's shape and the padded block's
/// strides.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
pub(crate) struct StencilParams {
    ndim: u32,
    count: u32,
    radius: u32,
    pad: u32,
    shape: [u32; MAX_DIMS],
    pstrides: [u32; MAX_DIMS],
}

fn stencil_kernel<T: Float>(s: &Stencil) -> Result<WgslKernel<StencilParams, T>, ArrayError> {
    let source = s.wgsl(T::DTYPE.wgsl());
    let taps = s.taps.clone();
    kernels::cached("stencil", format!("{:?}", s.taps), move || {
        WgslKernel::builder(
            kernels::named::<T>(format!("stencil {taps:?}")),
            source,
            "main",
        )
        .local()
        .inputs([Access::Read])
        .output(|p: &StencilParams, _| p.count as usize)
        .workgroups(|p: &StencilParams, _| groups(p.count as usize))
        .cpu(move |p: &StencilParams, ins, out| stencil_cpu(&taps, p, ins[0], out))
        .build()
        .map_err(Box::new)
    })
}

/// The stencil on CPU threads: a row (the last dimension) at a time, tap by tap, so each
/// inner loop is a vectorisable sweep over contiguous elements.
fn stencil_cpu<T: Float>(taps: &[(Vec<isize>, f64)], p: &StencilParams, src: &[T], out: &mut [T]) {
    let nd = p.ndim as usize;
    let shape: Vec<usize> = p.shape[..nd].iter().map(|&x| x as usize).collect();
    let ps: Vec<isize> = p.pstrides[..nd].iter().map(|&x| x as isize).collect();
    let r = p.radius as isize;
    let row = shape[nd - 1];
    if row == 0 {
        return;
    }
    let offs: Vec<(isize, T)> = taps
        .iter()
        .map(|(o, w)| (o.iter().zip(&ps).map(|(a, b)| a * b).sum(), T::from_f64(*w)))
        .collect();
    for (ri, orow) in out.chunks_mut(row).enumerate() {
        // The padded offset of this row's first element.
        let mut rem = ri;
        let mut base = r * ps[nd - 1];
        for d in (0..nd - 1).rev() {
            base += ((rem % shape[d]) as isize + r) * ps[d];
            rem /= shape[d];
        }
        for (k, &(o, w)) in offs.iter().enumerate() {
            let s = &src[(base + o) as usize..(base + o) as usize + row];
            if k == 0 {
                orow.iter_mut().zip(s).for_each(|(y, &x)| *y = w.mul(x));
            } else {
                orow.iter_mut()
                    .zip(s)
                    .for_each(|(y, &x)| *y = y.add(w.mul(x)));
            }
        }
    }
}

/// The most applications of a stencil one pass over the blocks makes.
const MAX_STEPS_PER_PASS: usize = 8;

/// Several applications of a stencil to one padded block (see `DArray::stencil_steps`).
struct Steps {
    steps: usize,
    /// The stencil's radius; the halo is `steps` times this.
    radius: usize,
    /// The padded block's shape.
    pshape: Vec<usize>,
    /// Per dimension, how many padded positions below and above lie outside the array.
    outside: Vec<(usize, usize)>,
    /// Whether positions outside the array hold the constant again after each step.
    reset: bool,
}

/// The scratch one strip of a block is stepped in (each of two generations): small enough
/// that both stay in a core's cache between steps.
const STRIP_BYTES: usize = 384 << 10;

impl Steps {
    /// Steps the assembled padded block `padded` and writes the block to `out`, in strips
    /// along the first dimension: each strip is copied with its halo into `a`, stepped
    /// between `a` and `b` while both are in cache, and its rows written to `out`. A strip
    /// recomputes the halo rows it shares with its neighbours; strips too thin for that to
    /// pay are not made (the whole block is one strip).
    fn run_block<T: Float>(
        &self,
        taps: &[(Vec<isize>, f64)],
        pad: T,
        padded: &[T],
        a: &mut Vec<T>,
        b: &mut Vec<T>,
        out: &mut [T],
    ) {
        let h = self.steps * self.radius;
        let slab: usize = self.pshape[1..].iter().product();
        let out_slab: usize = self.pshape[1..].iter().map(|&p| p - 2 * h).product();
        let rows = self.pshape[0] - 2 * h;
        let fit = (STRIP_BYTES / std::mem::size_of::<T>() / slab.max(1)).saturating_sub(2 * h);
        let strip = if fit >= 4 * h.max(1) {
            fit.min(rows)
        } else {
            rows
        };
        let (below, above) = self.outside[0];
        let mut first = 0;
        while first < rows {
            let last = (first + strip).min(rows);
            let mut part = Steps {
                steps: self.steps,
                radius: self.radius,
                pshape: self.pshape.clone(),
                outside: self.outside.clone(),
                reset: self.reset,
            };
            part.pshape[0] = last - first + 2 * h;
            part.outside[0] = (
                below.saturating_sub(first),
                above.saturating_sub(rows - last),
            );
            let len = part.pshape[0] * slab;
            a.clear();
            a.extend_from_slice(&padded[first * slab..first * slab + len]);
            b.resize(len, pad);
            part.run(taps, pad, a, b, &mut out[first * out_slab..last * out_slab]);
            first = last;
        }
    }

    /// Steps `a` (a padded block) `steps` times, using `b` as the other generation, and
    /// writes the block itself to `out`.
    fn run<T: Float>(
        &self,
        taps: &[(Vec<isize>, f64)],
        pad: T,
        a: &mut [T],
        b: &mut [T],
        out: &mut [T],
    ) {
        let nd = self.pshape.len();
        let pstr = strides(&self.pshape);
        let offs: Vec<(isize, T)> = taps
            .iter()
            .map(|(o, w)| {
                let off = o.iter().zip(&pstr).map(|(&a, &b)| a * b as isize).sum();
                (off, T::from_f64(*w))
            })
            .collect();
        let (mut src, mut dst) = (a, b);
        for step in 1..=self.steps {
            sweep(&offs, &self.pshape, &pstr, step * self.radius, src, dst);
            if self.reset && step < self.steps {
                self.reset_outside(&pstr, pad, dst);
            }
            std::mem::swap(&mut src, &mut dst);
        }
        // The block: `steps * radius` in from every face of the padded block.
        let h = self.steps * self.radius;
        let shape: Vec<usize> = self.pshape.iter().map(|&p| p - 2 * h).collect();
        let row = shape[nd - 1];
        if row == 0 {
            return;
        }
        for (ri, orow) in out.chunks_mut(row).enumerate() {
            let mut rem = ri;
            let mut at = h * pstr[nd - 1];
            for d in (0..nd - 1).rev() {
                at += (rem % shape[d] + h) * pstr[d];
                rem /= shape[d];
            }
            orow.copy_from_slice(&src[at..at + row]);
        }
    }

    /// Sets the padded positions outside the array to the constant.
    fn reset_outside<T: Copy>(&self, pstr: &[usize], pad: T, x: &mut [T]) {
        let nd = self.pshape.len();
        let row = self.pshape[nd - 1];
        let rows: usize = self.pshape[..nd - 1].iter().product();
        let (below, above) = self.outside[nd - 1];
        for ri in 0..rows {
            let mut rem = ri;
            let mut outside = false;
            for d in (0..nd - 1).rev() {
                let p = rem % self.pshape[d];
                rem /= self.pshape[d];
                let (lo, hi) = self.outside[d];
                outside |= p < lo || p >= self.pshape[d] - hi;
            }
            let start = if nd == 1 { 0 } else { ri * pstr[nd - 2] };
            let r = &mut x[start..start + row];
            if outside {
                r.fill(pad);
            } else {
                r[..below].fill(pad);
                r[row - above..].fill(pad);
            }
        }
    }
}

/// One application of a stencil to the part of a padded block `lo` positions in from
/// every face: `dst` there from `src` (both the whole padded block), a row at a time, tap
/// by tap in the order `stencil_cpu` takes them.
fn sweep<T: Float>(
    offs: &[(isize, T)],
    pshape: &[usize],
    pstr: &[usize],
    lo: usize,
    src: &[T],
    dst: &mut [T],
) {
    let nd = pshape.len();
    if pshape.iter().any(|&p| p < 2 * lo + 1) {
        return;
    }
    let region: Vec<usize> = pshape.iter().map(|&p| p - 2 * lo).collect();
    let row = region[nd - 1];
    let rows: usize = region[..nd - 1].iter().product();
    for ri in 0..rows {
        let mut rem = ri;
        let mut base = lo * pstr[nd - 1];
        for d in (0..nd - 1).rev() {
            base += (rem % region[d] + lo) * pstr[d];
            rem /= region[d];
        }
        let o = &mut dst[base..base + row];
        for (k, &(off, w)) in offs.iter().enumerate() {
            let at = (base as isize + off) as usize;
            let s = &src[at..at + row];
            if k == 0 {
                o.iter_mut().zip(s).for_each(|(y, &x)| *y = w.mul(x));
            } else {
                o.iter_mut().zip(s).for_each(|(y, &x)| *y = y.add(w.mul(x)));
            }
        }
    }
}

/// Where padded position `g` (a global index, possibly outside `0..n`) reads from under
/// `boundary`: a global index, or `None` for the constant.
fn source_index<T>(g: isize, n: usize, boundary: &Boundary<T>) -> Option<usize> {
    let n = n as isize;
    if (0..n).contains(&g) {
        return Some(g as usize);
    }
    match boundary {
        Boundary::Constant(_) => None,
        Boundary::Wrap => Some(g.rem_euclid(n) as usize),
        Boundary::Clamp => Some(g.clamp(0, n - 1) as usize),
        Boundary::Reflect if n == 1 => Some(0),
        Boundary::Reflect => {
            let period = 2 * (n - 1);
            let m = g.rem_euclid(period);
            Some(if m < n { m } else { period - m } as usize)
        }
    }
}

/// One dimension of a padded block as runs: (first padded position, length, source) with
/// the source `(block index along the dimension, first index within it)` of consecutive
/// elements, or `None` for the constant.
type Run = (usize, usize, Option<(usize, usize)>);

fn runs<T>(cuts: &[usize], range: std::ops::Range<usize>, r: usize, b: &Boundary<T>) -> Vec<Run> {
    let n = *cuts.last().expect("cuts start at 0");
    let block_of = |g: usize| cuts.partition_point(|&c| c <= g) - 1;
    let mut out: Vec<Run> = Vec::new();
    for (pos, g) in (range.start as isize - r as isize..range.end as isize + r as isize).enumerate()
    {
        let src = source_index(g, n, b).map(|s| {
            let k = block_of(s);
            (k, s - cuts[k])
        });
        if let Some(last) = out.last_mut() {
            let extends = match (last.2, src) {
                (None, None) => true,
                (Some((k0, i0)), Some((k, i))) => k0 == k && i0 + last.1 == i,
                _ => false,
            };
            if extends {
                last.1 += 1;
                continue;
            }
        }
        out.push((pos, 1, src));
    }
    out
}

impl<T: Float> DArray<T> {
    /// The stencil `s` applied to every element (Dagger.jl's `@stencil`), with `boundary`
    /// deciding what is read past the array's edges. The result is blocked as this array.
    ///
    /// For each block, box-copy tasks assemble the block with its halo (`s.radius()` wide)
    /// from the blocks holding it, and one stencil task computes the block: all kernels with
    /// CPU and WGSL implementations, so the scope alone decides where they run.
    ///
    /// # Errors
    /// [`ArrayError::InvalidStencil`] when the stencil's offsets do not have one entry per
    /// dimension of the array.
    ///
    /// ```
    /// use dagger::prelude::*;
    /// use dagger::{Boundary, Stencil};
    /// let ctx = Context::builder().threads(2).build()?;
    /// let a = DArray::distribute(&ctx, &ndarray::arr1(&[1.0f32, 2.0, 3.0, 4.0]), Blocks::new([3]))?;
    /// let diff = Stencil::new([(vec![1], 1.0), (vec![-1], -1.0)])?; // x[i+1] - x[i-1]
    /// let wrap = a.stencil(&diff, Boundary::Wrap)?.collect1()?;
    /// assert_eq!(wrap.to_vec(), vec![2.0 - 4.0, 2.0, 2.0, 1.0 - 3.0]);
    /// let zero = a.stencil(&diff, Boundary::Constant(0.0))?.collect1()?;
    /// assert_eq!(zero.to_vec(), vec![2.0, 2.0, 2.0, -3.0]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn stencil(&self, s: &Stencil, boundary: Boundary<T>) -> Result<DArray<T>, ArrayError> {
        self.stencil_steps(s, boundary, 1)
    }

    /// Whether the scope in effect holds a device: then every step is a kernel that can run
    /// there, one application at a time.
    fn stencil_on_devices(&self) -> bool {
        let ctx = self.context();
        let scope = crate::get_options()
            .get_scope()
            .cloned()
            .unwrap_or_default();
        let devices = ctx.processors_of_kind(crate::ProcessorKind::Wgpu);
        ctx.resolve_scope(&scope)
            .is_ok_and(|ids| ids.iter().any(|id| devices.contains(id)))
    }

    /// `steps` applications of `s` in one pass per block: each block is assembled with a
    /// halo `steps` times as wide and stepped that many times in place (the part still
    /// exact shrinking by the radius each step). `steps > 1` only on CPU threads, for
    /// boundaries whose outside is the same at every step (a constant, or the wrapped
    /// array itself).
    fn stencil_steps(
        &self,
        s: &Stencil,
        boundary: Boundary<T>,
        steps: usize,
    ) -> Result<DArray<T>, ArrayError> {
        let nd = self.ndim();
        if s.ndim() != nd {
            return Err(ArrayError::InvalidStencil {
                message: format!(
                    "its offsets have {} entries but the array {:?} has {nd} dimensions",
                    s.ndim(),
                    self.shape()
                ),
            });
        }
        let kernel = stencil_kernel::<T>(s)?;
        let copy_into = kernels::copy_into::<T>()?;
        let fill = kernels::fill::<T>()?;
        let pad_value = match boundary {
            Boundary::Constant(c) => c,
            _ => T::ZERO,
        };
        let pad = Chunk::new(vec![pad_value]);
        let ctx = self.context();
        let taps: Arc<Vec<(Vec<isize>, f64)>> = Arc::new(s.taps.clone());
        // Where the scope holds a device, every step is a kernel that can run there; on CPU
        // threads alone, one task per block assembles the halo and applies the stencil.
        let on_devices = self.stencil_on_devices();
        debug_assert!(
            steps == 1 || !on_devices,
            "several steps run on CPU threads only"
        );
        let (radius, steps) = (s.radius(), steps.max(1));
        // The halo: wide enough for every step.
        let r = radius * steps;
        let grid: &Grid = self.grid();
        let blocks = grid
            .domains()
            .into_iter()
            .map(|dom| {
                let shape = dom.shape();
                let pshape: Vec<usize> = shape.iter().map(|&e| e + 2 * r).collect();
                let pstr = strides(&pshape);
                let plen: usize = pshape.iter().product();
                let per_dim: Vec<Vec<Run>> = (0..nd)
                    .map(|d| runs(&grid.cuts[d], dom.ranges()[d].clone(), r, &boundary))
                    .collect();
                let count: usize = per_dim.iter().map(Vec::len).product();
                // The box copies that assemble the padded block: (source block, box).
                let mut copies: Vec<(usize, BoxParams)> = Vec::with_capacity(count);
                for k in 0..count {
                    let mut rem = k;
                    let mut pick: Vec<&Run> = vec![&per_dim[0][0]; nd];
                    for d in (0..nd).rev() {
                        pick[d] = &per_dim[d][rem % per_dim[d].len()];
                        rem /= per_dim[d].len();
                    }
                    let Some(src): Option<Vec<(usize, usize)>> =
                        pick.iter().map(|run| run.2).collect()
                    else {
                        continue; // the constant, already filled in
                    };
                    let bidx: Vec<usize> = src.iter().map(|s| s.0).collect();
                    let b = grid.ravel(&bidx);
                    let sstr = strides(&grid.domain(b).shape());
                    let soff: usize = (0..nd).map(|d| src[d].1 * sstr[d]).sum();
                    let doff: usize = (0..nd).map(|d| pick[d].0 * pstr[d]).sum();
                    let bshape: Vec<usize> = pick.iter().map(|run| run.1).collect();
                    copies.push((b, box_params(&bshape, soff, &sstr, doff, &pstr, plen)));
                }
                let mut params = StencilParams {
                    ndim: nd as u32,
                    count: dom.len() as u32,
                    radius: r as u32,
                    ..Default::default()
                };
                for d in 0..nd {
                    params.shape[d] = shape[d] as u32;
                    params.pstrides[d] = pstr[d] as u32;
                }
                if steps > 1 {
                    // Padded positions outside the array, per dimension: (below, above).
                    let outside: Vec<(usize, usize)> = (0..nd)
                        .map(|d| {
                            let range = dom.ranges()[d].clone();
                            let n = *grid.cuts[d].last().expect("cuts");
                            (
                                r.saturating_sub(range.start),
                                (range.end + r).saturating_sub(n),
                            )
                        })
                        .collect();
                    let plan = Steps {
                        steps,
                        radius,
                        pshape: pshape.clone(),
                        outside,
                        reset: matches!(boundary, Boundary::Constant(_)),
                    };
                    return self.stencil_on_host(
                        &taps,
                        &copies,
                        plen,
                        pad_value,
                        params,
                        Some(plan),
                    );
                }
                if !on_devices {
                    return self.stencil_on_host(&taps, &copies, plen, pad_value, params, None);
                }
                let mut padded =
                    DArray::<T>::launch(ctx, &fill, Len::new(plen), vec![(&pad).into()]);
                for (b, p) in copies {
                    padded = DArray::<T>::launch(
                        ctx,
                        &copy_into,
                        p,
                        vec![self.blocks()[b].arg(), padded.arg()],
                    );
                }
                DArray::<T>::launch(ctx, &kernel, params, vec![padded.arg()])
            })
            .collect();
        Ok(DArray::from_parts(ctx, grid.clone(), blocks))
    }

    /// One block of a stencil on a CPU thread: the padded block assembled from the blocks
    /// `copies` read and the stencil applied, in one task.
    fn stencil_on_host(
        &self,
        taps: &Arc<Vec<(Vec<isize>, f64)>>,
        copies: &[(usize, BoxParams)],
        plen: usize,
        pad_value: T,
        params: StencilParams,
        plan: Option<Steps>,
    ) -> Block<T> {
        let ctx = self.context();
        let mut sources: Vec<usize> = copies.iter().map(|c| c.0).collect();
        sources.sort_unstable();
        sources.dedup();
        let mut deps = Deps::default();
        for &b in &sources {
            deps.list.push(self.blocks()[b].arg().dep);
        }
        let boxes: Vec<(usize, BoxMap)> = copies
            .iter()
            .map(|(b, p)| (sources.binary_search(b).expect("listed"), p.host()))
            .collect();
        let taps = taps.clone();
        // Elements no box covers hold the constant.
        let fill = boxes.iter().map(|(_, b)| b.len()).sum::<usize>() != plen;
        let body: Body = Box::new(move |inputs: &mut [Value]| {
            // The padded block is scratch of this thread, reused from block to block and
            // iteration to iteration: no fresh pages to fault in each time.
            thread_local! {
                static SCRATCH: std::cell::RefCell<Box<dyn std::any::Any>> =
                    std::cell::RefCell::new(Box::new(()));
                static STEPPED: std::cell::RefCell<Box<dyn std::any::Any>> =
                    std::cell::RefCell::new(Box::new(()));
            }
            SCRATCH.with(|scratch| {
                let mut any = scratch.borrow_mut();
                if !any.is::<Vec<T>>() {
                    *any = Box::new(Vec::<T>::new());
                }
                let padded = any.downcast_mut::<Vec<T>>().expect("made above");
                padded.resize(plen, pad_value);
                if fill {
                    padded.fill(pad_value);
                }
                for (i, bx) in &boxes {
                    let src = inputs[*i]
                        .downcast_ref::<Vec<T>>()
                        .ok_or_else(|| TaskFailure::msg("a stencil input is not a block"))?;
                    dagger_cpu::elementwise::copy_box(bx, src, &mut padded[..plen]);
                }
                let mut out = vec![T::ZERO; params.count as usize];
                match &plan {
                    None => stencil_cpu(&taps, &params, &padded[..plen], &mut out),
                    Some(plan) => STEPPED.with(|strips| {
                        let mut any = strips.borrow_mut();
                        if !any.is::<[Vec<T>; 2]>() {
                            *any = Box::new([Vec::<T>::new(), Vec::<T>::new()]);
                        }
                        let [a, b] = any.downcast_mut::<[Vec<T>; 2]>().expect("made above");
                        plan.run_block(&taps, pad_value, &padded[..plen], a, b, &mut out);
                    }),
                }
                Ok(Value::new(out))
            })
        });
        let task = ctx.submit_kernel(
            "stencil",
            std::any::TypeId::of::<StencilParams>(),
            host_options(ctx).name("stencil"),
            deps,
            Some(body),
            None,
        );
        Block::Task(DTask::from_core(task))
    }

    /// `iterations` applications of [`stencil`](Self::stencil), each reading the previous
    /// one's result (Jacobi-style: two generations of blocks alive at a time, the older
    /// freed as soon as the newer is computed). On a GPU scope every task of every
    /// iteration runs on the device, so the blocks stay there until collected.
    ///
    /// On CPU threads with a [`Constant`](Boundary::Constant) or [`Wrap`](Boundary::Wrap)
    /// boundary, up to eight applications run in one pass over the blocks (temporal
    /// blocking): each block is assembled with a halo that many times wider and stepped in
    /// cache-sized scratch, so memory is read and written once per pass. The results are
    /// the same, bit for bit: every element sums the same taps in the same order.
    ///
    /// # Errors
    /// As [`stencil`](Self::stencil).
    ///
    /// ```
    /// use dagger::prelude::*;
    /// use dagger::{Boundary, Stencil};
    /// let ctx = Context::builder().threads(2).build()?;
    /// let a = DArray::<f64>::ones(&ctx, [6, 6], Blocks::new([4, 4]))?;
    /// // The mean of the neighbours of a constant field is the constant.
    /// let b = a.stencil_iter(&Stencil::jacobi_5pt(), Boundary::Clamp, 20)?;
    /// assert!(b.collect2()?.iter().all(|&x| x == 1.0));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn stencil_iter(
        &self,
        s: &Stencil,
        boundary: Boundary<T>,
        iterations: usize,
    ) -> Result<DArray<T>, ArrayError> {
        // On CPU threads, with an outside that does not change between steps, several steps
        // run per pass over the blocks: the halo is that many times wider, and each block
        // is read from memory and written once per pass rather than once per step.
        let per_pass = match boundary {
            Boundary::Constant(_) | Boundary::Wrap if !self.stencil_on_devices() => {
                let smallest = self
                    .grid()
                    .cuts
                    .iter()
                    .flat_map(|c| c.windows(2).map(|w| w[1] - w[0]))
                    .min()
                    .unwrap_or(0);
                (smallest / (16 * s.radius().max(1))).clamp(2, MAX_STEPS_PER_PASS)
            }
            _ => 1,
        };
        let mut a = self.clone();
        let mut left = iterations;
        while left > 0 {
            let steps = per_pass.min(left);
            a = a.stencil_steps(s, boundary, steps)?;
            left -= steps;
        }
        Ok(a)
    }
}
