//! The tiles of LU factorization and triangular solves: the panel factorization (a column
//! of blocks with partial pivoting, or without), taking the factored blocks out of the
//! panel, applying a panel's row interchanges to the blocks of another column (with the
//! triangular solve for `U` where it is needed), triangular solves of one block, row
//! gathers and triangle extraction. They have CPU implementations only (`dagger-cpu`'s
//! `getrf` and `trsm`): each is a named kernel (`dagger.lu_panel_tile.f64`, ...) that the
//! scheduler places on CPU threads, while the GEMM updates between them are GEMM tiles that
//! GPUs run too. Their parameters are `serde` types, and a factored panel — its blocks and
//! its row interchanges — is a value that crosses processes, so every tile runs on any rank.

use std::any::TypeId;
use std::marker::PhantomData;

use dagger_cpu::{Diag, MatMut, MatRef, Pivoting, Side, Threads, Trans, Triangle};
use parking_lot::Mutex;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::{block, owned_block, TileScalar};
use crate::kernel::{Kernel, KernelCall, ParamsCodec};
use crate::processor::TaskFailure;
use crate::value::Value;

/// A zero pivot met by an LU factorization or a zero on the diagonal of a triangular solve,
/// as a task's error.
#[derive(Debug, thiserror::Error)]
#[error("diagonal block ({block}, {block}) has a zero pivot at {pivot} (row {row} of the matrix)")]
pub(crate) struct ZeroPivot {
    pub(crate) block: usize,
    pub(crate) pivot: usize,
    pub(crate) row: usize,
}

impl ZeroPivot {
    /// The error its message describes: what reaches the head when the tile failed on
    /// another rank, which sends its errors as their messages.
    pub(crate) fn parse(message: &str) -> Option<Self> {
        let rest = message.strip_prefix("diagonal block (")?;
        let (block, rest) = rest.split_once(',')?;
        let rest = rest.split_once(") has a zero pivot at ")?.1;
        let (pivot, rest) = rest.split_once(" (row ")?;
        let row = rest.strip_suffix(" of the matrix)")?;
        Some(ZeroPivot {
            block: block.trim().parse().ok()?,
            pivot: pivot.trim().parse().ok()?,
            row: row.trim().parse().ok()?,
        })
    }
}

/// A tile that runs on CPU threads only.
pub(crate) trait CpuTile: Send + Sync + 'static {
    /// Computes the result from host inputs.
    fn run(&self, inputs: &mut [Value]) -> Result<Value, TaskFailure>;
    /// Floating-point operations of one run, if known.
    fn flops(&self) -> Option<f64> {
        None
    }
}

/// Parameters of a CPU tile: what its kernel runs, and what crosses processes with a call.
pub(crate) trait CpuTileParams: CpuTile + Serialize + DeserializeOwned {}

impl<P: CpuTile + Serialize + DeserializeOwned> CpuTileParams for P {}

/// A CPU tile with its parameters, as a call of its named kernel `dagger.<name>.<dtype>`,
/// registered once per tile type. The parameters travel to other ranks as the call's.
pub(crate) fn cpu_tile_call<P: CpuTileParams>(name: &str, dtype: &str, tile: P) -> KernelCall {
    cpu_tile_kernel::<P>(name, dtype).call(Value::new(tile))
}

/// The kernel of CPU tile `P`, named `dagger.<name>.<dtype>`, made once.
pub(super) fn cpu_tile_kernel<P: CpuTileParams>(name: &str, dtype: &str) -> Kernel {
    static KERNELS: std::sync::OnceLock<Mutex<std::collections::HashMap<TypeId, Kernel>>> =
        std::sync::OnceLock::new();
    KERNELS
        .get_or_init(Default::default)
        .lock()
        .entry(TypeId::of::<P>())
        .or_insert_with(|| {
            Kernel::builder(format!("dagger.{name}.{dtype}"))
                .params_codec(ParamsCodec::serde::<P>())
                .cpu_in_place(|params, inputs| {
                    params
                        .downcast_ref::<P>()
                        .ok_or_else(|| TaskFailure::msg("the tile's parameters have another type"))?
                        .run(inputs)
                })
                .flops(|params| params.downcast_ref::<P>().and_then(P::flops))
                .register()
        })
        .clone()
}

/// Registers the CPU tiles of LU and the solves for element type `T`.
pub(super) fn register_tiles<T: TileScalar>() {
    let dtype = <T as dagger_cpu::Scalar>::NAME;
    cpu_tile_kernel::<PanelTile<T>>("lu_panel_tile", dtype);
    cpu_tile_kernel::<PanelPartTile<T>>("lu_panel_part_tile", dtype);
    cpu_tile_kernel::<PanelPivotsTile<T>>("lu_pivots_tile", dtype);
    cpu_tile_kernel::<PanelRowsTile<T>>("lu_rows_tile", dtype);
    cpu_tile_kernel::<OwnBlockTile<T>>("own_block_tile", dtype);
    cpu_tile_kernel::<TriSolveTile<T>>("trsm_left_tile", dtype);
    cpu_tile_kernel::<GatherRowsTile<T>>("gather_rows_tile", dtype);
    cpu_tile_kernel::<TrianglePartTile<T>>("lu_part_tile", dtype);
}

/// A factored panel: its rows `P [A_kk; ...; A_nk]` as `L` and `U`, one block each, and
/// where each row came from: `perm[q]` is the row (counted from the panel's first row) that
/// row `q` of the permuted panel came from. Tiles on other ranks receive it as the blocks
/// and the rows.
///
/// The diagonal block stays in the panel, for the solves of the row tiles. Each block below
/// it is taken out by its part tile, not copied: the factors then hold it alone, and the
/// interchanges of later panels update it in place, however long the panel itself lives.
pub(crate) struct Panel<T> {
    blocks: Vec<Mutex<Option<Value>>>,
    perm: Vec<usize>,
    _t: PhantomData<fn() -> T>,
}

impl<T: TileScalar> Panel<T> {
    /// The diagonal block.
    fn top(&self) -> Result<Value, TaskFailure> {
        self.blocks[0]
            .lock()
            .clone()
            .ok_or_else(|| TaskFailure::msg("the factored panel has no diagonal block"))
    }
}

impl<T: TileScalar> Serialize for Panel<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        // A block taken out already is sent empty: its part tile ran in this process, and
        // no tile elsewhere reads it.
        let held: Vec<Value> = self
            .blocks
            .iter()
            .map(|b| {
                b.lock()
                    .clone()
                    .unwrap_or_else(|| Value::new(Vec::<T>::new()))
            })
            .collect();
        (blocks_of::<T, S>(&held)?, &self.perm).serialize(s)
    }
}

impl<'de, T: TileScalar> Deserialize<'de> for Panel<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let (blocks, perm) = <(Vec<Vec<T>>, Vec<usize>)>::deserialize(d)?;
        Ok(Panel {
            blocks: blocks
                .into_iter()
                .map(|b| Mutex::new((!b.is_empty()).then(|| Value::new(b))))
                .collect(),
            perm,
            _t: PhantomData,
        })
    }
}

/// The blocks of a factored panel as vectors, to be sent.
pub(super) fn blocks_of<T: TileScalar, S: Serializer>(
    blocks: &[Value],
) -> Result<Vec<&Vec<T>>, S::Error> {
    blocks
        .iter()
        .map(|b| {
            b.downcast_ref::<Vec<T>>().ok_or_else(|| {
                <S::Error as serde::ser::Error>::custom(format!(
                    "a panel block is a {}, not a {}",
                    b.type_name(),
                    std::any::type_name::<Vec<T>>()
                ))
            })
        })
        .collect()
}

/// Received blocks of a factored panel as values.
pub(super) fn values_of<T: TileScalar>(blocks: Vec<Vec<T>>) -> Vec<Value> {
    blocks.into_iter().map(Value::new).collect()
}

/// Factors the panel of step `block`: the blocks of its column from the diagonal down.
/// Inputs: those blocks (heights in `heights`), then the value the panel replaces (unread).
/// The result is the factored panel with its row interchanges, which the tiles applying
/// them take as an input.
#[derive(Serialize, Deserialize)]
#[serde(bound = "")]
pub(crate) struct PanelTile<T> {
    #[serde(with = "super::enum_wire::pivoting")]
    pub(crate) pivoting: Pivoting,
    pub(crate) block: usize,
    pub(crate) first_row: usize,
    pub(crate) heights: Vec<usize>,
    pub(crate) width: usize,
    pub(crate) _t: PhantomData<fn() -> T>,
}

impl<T: TileScalar> CpuTile for PanelTile<T> {
    fn run(&self, inputs: &mut [Value]) -> Result<Value, TaskFailure> {
        let w = self.width;
        let h: usize = self.heights.iter().sum();
        // The panel is factored in column-major order, the blocks copied in and out: the
        // column steps of `getrf` then run down contiguous columns instead of touching one
        // element per row (and page) of row-major blocks.
        let zero = T::from_f64_rounded(0.0);
        let ld = dagger_cpu::column_major_ld(h);
        let mut scratch = PanelScratch::<T>::take(ld * w);
        let lu = &mut scratch.buf[..ld * w];
        let mut first = 0;
        for (i, (input, &hi)) in inputs.iter().zip(&self.heights).enumerate() {
            MatMut::with_ld(&mut lu[first.min(ld * w)..], w, hi, ld)
                .t()
                .copy_from(MatRef::new(block::<T>(input, i)?, hi, w));
            first += hi;
        }
        let mut piv = vec![0; w];
        dagger_cpu::getrf(
            self.pivoting,
            MatMut::with_ld(lu, w, h, ld).t(),
            &mut piv,
            Threads(crate::task_threads()),
        )
        .map_err(|e| match e {
            dagger_cpu::GetrfError::ZeroPivot { pivot } => TaskFailure::from(ZeroPivot {
                block: self.block,
                pivot,
                row: self.first_row + pivot,
            }),
            other => TaskFailure::from(other),
        })?;
        let mut perm: Vec<usize> = (0..h).collect();
        for (j, &p) in piv.iter().enumerate() {
            perm.swap(j, p);
        }
        let mut first = 0;
        let blocks = self
            .heights
            .iter()
            .map(|&hi| {
                let mut b = vec![zero; hi * w];
                MatMut::new(&mut b, hi, w)
                    .copy_from(MatRef::with_ld(&lu[first.min(ld * w)..], w, hi, ld).t());
                first += hi;
                Mutex::new(Some(Value::new(b)))
            })
            .collect();
        Ok(Value::new(Panel::<T> {
            blocks,
            perm,
            _t: PhantomData,
        }))
    }

    fn flops(&self) -> Option<f64> {
        let (h, w) = (self.heights.iter().sum::<usize>() as f64, self.width as f64);
        Some(h * w * w - w * w * w / 3.0)
    }
}

/// The column-major buffer a panel is factored in, kept by each thread between panels:
/// a fresh one of 16 MiB (a 4096x512 `f64` panel) cost more in page faults than copying
/// the panel into it. Buffers up to [`PANEL_SCRATCH_KEEP`] bytes are kept; a thread holds
/// one, of the largest panel it factored.
struct PanelScratch<T: 'static> {
    buf: Vec<T>,
}

thread_local! {
    static PANEL_SCRATCH: std::cell::RefCell<Option<Box<dyn std::any::Any>>> =
        const { std::cell::RefCell::new(None) };
}

/// The largest panel buffer a thread keeps, in bytes.
const PANEL_SCRATCH_KEEP: usize = 64 << 20;

impl<T: TileScalar> PanelScratch<T> {
    /// The thread's buffer, of at least `len` elements (its contents unspecified), or a new
    /// one.
    fn take(len: usize) -> Self {
        let kept = PANEL_SCRATCH
            .with_borrow_mut(Option::take)
            .and_then(|b| b.downcast::<Vec<T>>().ok());
        let mut buf = kept.map(|b| *b).unwrap_or_default();
        if buf.len() < len {
            buf = vec![T::from_f64_rounded(0.0); len];
        }
        PanelScratch { buf }
    }
}

impl<T: 'static> Drop for PanelScratch<T> {
    fn drop(&mut self) {
        if std::mem::size_of_val(self.buf.as_slice()) <= PANEL_SCRATCH_KEEP {
            let buf = std::mem::take(&mut self.buf);
            PANEL_SCRATCH.with_borrow_mut(|kept| *kept = Some(Box::new(buf)));
        }
    }
}

/// Block `index` (counted from the diagonal) of a factored panel's column, shared with the
/// panel. Inputs: the panel, then the block replaced (unread).
#[derive(Serialize, Deserialize)]
#[serde(bound = "")]
pub(crate) struct PanelPartTile<T> {
    pub(crate) index: usize,
    pub(crate) _t: PhantomData<fn() -> T>,
}

fn panel<T: TileScalar>(v: &Value) -> Result<&Panel<T>, TaskFailure> {
    v.downcast_ref::<Panel<T>>()
        .ok_or(TaskFailure::ArgumentType {
            index: 0,
            expected: std::any::type_name::<Panel<T>>(),
            found: v.type_name(),
        })
}

impl<T: TileScalar> CpuTile for PanelPartTile<T> {
    fn run(&self, inputs: &mut [Value]) -> Result<Value, TaskFailure> {
        let p = panel::<T>(&inputs[0])?;
        if self.index == 0 {
            return p.top();
        }
        p.blocks
            .get(self.index)
            .and_then(|b| b.lock().take())
            .ok_or_else(|| {
                TaskFailure::msg(format!(
                    "block {} of the factored panel was taken out already",
                    self.index
                ))
            })
    }
}

/// A factored panel's row interchanges, as a `Vec<usize>` (see [`Panel`]): what the head
/// fetches to form the permutation, without the panel's blocks. Input: the panel.
#[derive(Serialize, Deserialize)]
#[serde(bound = "")]
pub(crate) struct PanelPivotsTile<T> {
    pub(crate) _t: PhantomData<fn() -> T>,
}

impl<T: TileScalar> CpuTile for PanelPivotsTile<T> {
    fn run(&self, inputs: &mut [Value]) -> Result<Value, TaskFailure> {
        Ok(Value::new(panel::<T>(&inputs[0])?.perm.clone()))
    }
}

/// A block as a buffer that the factorization alone holds: moved on when nothing else
/// holds it, else copied. Input: the block, written.
///
/// The first interchanges of an LU copy each block of the matrix they change, as the
/// caller's array stays intact. Made by this tile, that copy runs as soon as the
/// factorization starts, while the first panel holds up everything else, and the
/// interchanges then update the copy in place.
#[derive(Serialize, Deserialize)]
#[serde(bound = "")]
pub(crate) struct OwnBlockTile<T> {
    pub(crate) _t: PhantomData<fn() -> T>,
}

impl<T: TileScalar> CpuTile for OwnBlockTile<T> {
    fn run(&self, inputs: &mut [Value]) -> Result<Value, TaskFailure> {
        Ok(Value::new(owned_block::<T>(inputs, 0)?))
    }
}

/// One block of another column after a panel's row interchanges: rows `out` (counted from
/// the panel's first row) of the permuted column, gathered from the blocks `parts`
/// (`(first row, height)` each, in input order). With `solve`, the result is then the
/// block of `U` on the panel's rows: `L_kk⁻¹` times it, `L_kk` the unit lower triangle at
/// the top of the panel.
///
/// Inputs: the panel, the parts that are read only, then the block written: when `own` is
/// set it is the part at `own`, else it is not read.
#[derive(Serialize, Deserialize)]
#[serde(bound = "")]
pub(crate) struct PanelRowsTile<T> {
    pub(crate) cols: usize,
    pub(crate) parts: Vec<(usize, usize)>,
    pub(crate) own: Option<(usize, usize)>,
    pub(crate) out: (usize, usize),
    pub(crate) solve: Option<usize>,
    pub(crate) _t: PhantomData<fn() -> T>,
}

impl<T: TileScalar> CpuTile for PanelRowsTile<T> {
    fn run(&self, inputs: &mut [Value]) -> Result<Value, TaskFailure> {
        let last = inputs.len() - 1;
        let (inputs, written) = inputs.split_at_mut(last);
        let written = &mut written[0];
        let p = panel::<T>(&inputs[0])?;
        let c = self.cols;
        let mut sources: Vec<((usize, usize), &Vec<T>)> = Vec::new();
        for (i, &part) in self.parts.iter().enumerate() {
            sources.push((part, block::<T>(&inputs[1 + i], 1 + i)?));
        }
        let (first, height) = self.out;
        let mut out = match self.own {
            Some(own) => {
                if self.solve.is_none() && (first..first + height).all(|q| p.perm[q] == q) {
                    // No row of this block moves: it stays as it is, shared.
                    return Ok(written.clone());
                }
                let (r0, h) = own;
                let from_own = |q: usize| p.perm[q] != q && (r0..r0 + h).contains(&p.perm[q]);
                if self.solve.is_none()
                    && own == self.out
                    && !(first..first + height).any(from_own)
                    && written.get_mut::<Vec<T>>().is_some()
                {
                    // Rows that move here all come from other blocks (as below a panel's
                    // diagonal block, which gives rows only to the rows it takes): they are
                    // written over the block in place, which nothing else holds.
                    written
                        .get_mut::<Vec<T>>()
                        .map(std::mem::take)
                        .expect("checked unique above")
                } else {
                    let data = block::<T>(&*written, last)?;
                    sources.push((own, data));
                    data.clone()
                }
            }
            None => {
                // Every row comes from an input: gathered in order, not zeroed first.
                let mut out = Vec::with_capacity(height * c);
                for q in first..first + height {
                    out.extend_from_slice(panel_row(&sources, p.perm[q], c)?);
                }
                out
            }
        };
        if self.own.is_some() {
            for q in first..first + height {
                let src = p.perm[q];
                if src != q {
                    let t = q - first;
                    out[t * c..(t + 1) * c].copy_from_slice(panel_row(&sources, src, c)?);
                }
            }
        }
        if let Some(w) = self.solve {
            let top = p.top()?;
            dagger_cpu::trsm(
                Side::Left,
                Triangle::Lower,
                Trans::No,
                Diag::Unit,
                T::from_f64_rounded(1.0),
                MatRef::new(block::<T>(&top, 0)?, w, w),
                MatMut::new(&mut out, height, c),
            );
        }
        Ok(Value::new(out))
    }

    fn flops(&self) -> Option<f64> {
        self.solve.map(|w| (w * w) as f64 * self.cols as f64)
    }
}

/// Row `src` (counted from the panel's first row) of the column whose blocks `sources`
/// holds (`(first row, height)` and data each), `c` wide.
fn panel_row<'s, T>(
    sources: &[((usize, usize), &'s Vec<T>)],
    src: usize,
    c: usize,
) -> Result<&'s [T], TaskFailure> {
    let ((r0, _), data) = sources
        .iter()
        .find(|((r0, h), _)| (*r0..r0 + h).contains(&src))
        .ok_or_else(|| TaskFailure::msg(format!("row {src} of the panel is in no input")))?;
    Ok(&data[(src - r0) * c..(src - r0 + 1) * c])
}

/// `op(A)⁻¹ B` or `B op(A)⁻¹` for a triangular diagonal block `A` (`m x m` or `n x n`) and
/// a block `B` (`m x n`). Inputs: `A`, `B`. A zero on `A`'s diagonal (unless `Diag::Unit`)
/// is a [`ZeroPivot`] at block `block`, whose first row is `first_row`.
#[derive(Serialize, Deserialize)]
#[serde(bound = "")]
pub(crate) struct TriSolveTile<T> {
    #[serde(with = "super::enum_wire::side")]
    pub(crate) side: Side,
    #[serde(with = "super::enum_wire::triangle")]
    pub(crate) triangle: Triangle,
    #[serde(with = "super::enum_wire::trans")]
    pub(crate) trans: Trans,
    #[serde(with = "super::enum_wire::diag")]
    pub(crate) diag: Diag,
    pub(crate) m: usize,
    pub(crate) n: usize,
    pub(crate) block: usize,
    pub(crate) first_row: usize,
    pub(crate) _t: PhantomData<fn() -> T>,
}

impl<T: TileScalar> CpuTile for TriSolveTile<T> {
    fn run(&self, inputs: &mut [Value]) -> Result<Value, TaskFailure> {
        let mut b = owned_block::<T>(inputs, 1)?;
        let a = block::<T>(&inputs[0], 0)?;
        let k = match self.side {
            Side::Left => self.m,
            Side::Right => self.n,
        };
        if self.diag == Diag::NonUnit {
            if let Some(pivot) = (0..k).find(|&i| a[i * k + i] == T::from_f64_rounded(0.0)) {
                return Err(ZeroPivot {
                    block: self.block,
                    pivot,
                    row: self.first_row + pivot,
                }
                .into());
            }
        }
        dagger_cpu::trsm(
            self.side,
            self.triangle,
            self.trans,
            self.diag,
            T::from_f64_rounded(1.0),
            MatRef::new(a, k, k),
            MatMut::new(&mut b, self.m, self.n),
        );
        Ok(Value::new(b))
    }

    fn flops(&self) -> Option<f64> {
        let k = match self.side {
            Side::Left => self.m,
            Side::Right => self.n,
        };
        Some((self.m * self.n * k) as f64)
    }
}

/// One block of `P B`: row `q` of the result is row `rows[q]` of `B`'s column of blocks,
/// gathered from the blocks `parts` (`(first row, height)` each, in input order), all
/// `cols` wide. Inputs: those blocks.
#[derive(Serialize, Deserialize)]
#[serde(bound = "")]
pub(crate) struct GatherRowsTile<T> {
    pub(crate) cols: usize,
    pub(crate) parts: Vec<(usize, usize)>,
    pub(crate) rows: Vec<usize>,
    pub(crate) _t: PhantomData<fn() -> T>,
}

impl<T: TileScalar> CpuTile for GatherRowsTile<T> {
    fn run(&self, inputs: &mut [Value]) -> Result<Value, TaskFailure> {
        let c = self.cols;
        let mut out = Vec::with_capacity(self.rows.len() * c);
        for &src in &self.rows {
            let i = self
                .parts
                .iter()
                .position(|(r0, h)| (*r0..r0 + h).contains(&src))
                .ok_or_else(|| TaskFailure::msg(format!("row {src} is in no input")))?;
            let data = block::<T>(&inputs[i], i)?;
            let r = src - self.parts[i].0;
            out.extend_from_slice(&data[r * c..(r + 1) * c]);
        }
        Ok(Value::new(out))
    }
}

/// Which part of a packed LU a [`TrianglePartTile`] keeps.
#[derive(Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum LuPart {
    /// The strict lower triangle, with ones on the diagonal.
    UnitLower,
    /// The upper triangle, diagonal included.
    Upper,
}

/// A block (`rows x cols`, its first element at `(row0, col0)` of the matrix) of `L` or
/// `U` from the packed LU. Input: that block of the packed LU.
#[derive(Serialize, Deserialize)]
#[serde(bound = "")]
pub(crate) struct TrianglePartTile<T> {
    pub(crate) part: LuPart,
    pub(crate) rows: usize,
    pub(crate) cols: usize,
    pub(crate) row0: usize,
    pub(crate) col0: usize,
    pub(crate) _t: PhantomData<fn() -> T>,
}

impl<T: TileScalar> CpuTile for TrianglePartTile<T> {
    fn run(&self, inputs: &mut [Value]) -> Result<Value, TaskFailure> {
        let mut out = owned_block::<T>(inputs, 0)?;
        let (zero, one) = (T::from_f64_rounded(0.0), T::from_f64_rounded(1.0));
        for i in 0..self.rows {
            for j in 0..self.cols {
                let (gi, gj) = (self.row0 + i, self.col0 + j);
                let x = &mut out[i * self.cols + j];
                match self.part {
                    LuPart::UnitLower if gi == gj => *x = one,
                    LuPart::UnitLower if gi < gj => *x = zero,
                    LuPart::Upper if gi > gj => *x = zero,
                    _ => {}
                }
            }
        }
        Ok(Value::new(out))
    }
}

#[cfg(test)]
mod tests {
    use super::{CpuTile, OwnBlockTile};
    use crate::value::Value;
    use std::marker::PhantomData;

    #[test]
    fn own_block_moves_a_block_held_once_and_copies_a_shared_one() {
        let tile = OwnBlockTile::<f64> { _t: PhantomData };
        let data = vec![1.0f64, 2.0, 3.0];
        let at = data.as_ptr();
        let mut alone = [Value::new(data)];
        let out = tile.run(&mut alone).unwrap();
        let moved = out.downcast_ref::<Vec<f64>>().unwrap();
        assert_eq!(moved, &[1.0, 2.0, 3.0]);
        assert_eq!(moved.as_ptr(), at, "a block held once is moved, not copied");

        let shared = Value::new(vec![4.0f64, 5.0]);
        let mut inputs = [shared.clone()];
        let out = tile.run(&mut inputs).unwrap();
        let copy = out.downcast_ref::<Vec<f64>>().unwrap();
        let original = shared.downcast_ref::<Vec<f64>>().unwrap();
        assert_eq!(copy, original);
        assert_ne!(copy.as_ptr(), original.as_ptr(), "a shared block is copied");
    }
}
