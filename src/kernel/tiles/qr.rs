//! The tiles of Householder QR: the panel factorization (a column of blocks, by
//! `dagger-cpu`'s `geqrt`) and taking its parts out. The panel has a CPU implementation
//! only; everything else QR does is GEMM tiles, which GPUs run too. Like LU's, the tiles'
//! parameters and the factored panel cross processes, so they run on any rank.

use std::marker::PhantomData;

use dagger_cpu::{Accum, MatMut, MatRef, Threads, Trans};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::lu::{blocks_of, cpu_tile_kernel, values_of};
use super::{block, CpuTile, TileScalar};
use crate::processor::TaskFailure;
use crate::value::Value;

/// Registers the CPU tiles of QR for element type `T`.
pub(super) fn register_tiles<T: TileScalar>() {
    let dtype = <T as dagger_cpu::Scalar>::NAME;
    cpu_tile_kernel::<QrPanelTile<T>>("qr_panel_tile", dtype);
    cpu_tile_kernel::<QrPartTile<T>>("qr_part_tile", dtype);
}

/// A factored QR panel, one value per block of its column: the packed factors (`R` on and
/// above the diagonal, the Householder vectors below), the Householder vectors `V` on their
/// own (unit lower triangular at the top, zeros above), and `Y = V T`, so that the panel's
/// reflector `Q = I - V T Vᵀ` is applied with two products: `Qᵀ B = B - V (Yᵀ B)` and
/// `Q B = B - Y (Vᵀ B)`.
pub(crate) struct QrPanel<T> {
    width: usize,
    packed: Vec<Value>,
    v: Vec<Value>,
    y: Vec<Value>,
    _t: PhantomData<fn() -> T>,
}

/// Sent as the packed factors, `Y` and the width; `V` is the packed factors' part below the
/// diagonal, with a unit diagonal, and is remade on arrival.
impl<T: TileScalar> Serialize for QrPanel<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        (
            self.width,
            blocks_of::<T, S>(&self.packed)?,
            blocks_of::<T, S>(&self.y)?,
        )
            .serialize(s)
    }
}

impl<'de, T: TileScalar> Deserialize<'de> for QrPanel<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let (width, packed, y) = <(usize, Vec<Vec<T>>, Vec<Vec<T>>)>::deserialize(d)?;
        let mut v = packed.clone();
        unit_lower(&mut v, width);
        Ok(QrPanel {
            width,
            packed: values_of(packed),
            v: values_of(v),
            y: values_of(y),
            _t: PhantomData,
        })
    }
}

/// The Householder vectors from the packed factors of a panel `width` wide, split in
/// blocks: ones on the diagonal of its first rows and zeros above it.
fn unit_lower<T: TileScalar>(blocks: &mut [Vec<T>], width: usize) {
    let mut r = 0;
    for b in blocks {
        for row in b.chunks_exact_mut(width.max(1)) {
            if r < width {
                row[r] = T::from_f64_rounded(1.0);
                row[r + 1..].fill(T::from_f64_rounded(0.0));
            }
            r += 1;
        }
    }
}

/// Factors the panel of a QR step: the blocks of one column from the diagonal down.
/// Inputs: those blocks (heights in `heights`, all `width` wide), then the value the panel
/// replaces (unread).
#[derive(Serialize, Deserialize)]
#[serde(bound = "")]
pub(crate) struct QrPanelTile<T> {
    pub(crate) heights: Vec<usize>,
    pub(crate) width: usize,
    pub(crate) _t: PhantomData<fn() -> T>,
}

impl<T: TileScalar> CpuTile for QrPanelTile<T> {
    fn run(&self, inputs: &mut [Value]) -> Result<Value, TaskFailure> {
        let w = self.width;
        let h: usize = self.heights.iter().sum();
        let mut a = Vec::with_capacity(h * w);
        for (i, input) in inputs.iter().enumerate().take(self.heights.len()) {
            a.extend_from_slice(block::<T>(input, i)?);
        }
        let zero = T::from_f64_rounded(0.0);
        let mut t = vec![zero; w * w];
        let threads = Threads(crate::task_threads());
        dagger_cpu::geqrt(
            MatMut::new(&mut a, h, w),
            MatMut::new(&mut t, w, w),
            threads,
        );
        let mut v = a.clone();
        unit_lower(std::slice::from_mut(&mut v), w);
        let mut y = vec![zero; h * w];
        dagger_cpu::gemm(
            Trans::No,
            Trans::No,
            T::from_f64_rounded(1.0),
            MatRef::new(&v, h, w),
            MatRef::new(&t, w, w),
            Accum::Replace,
            MatMut::new(&mut y, h, w),
            threads,
        );
        let split = |x: &[T]| -> Vec<Value> {
            let mut first = 0;
            self.heights
                .iter()
                .map(|&hi| {
                    let b = Value::new(x[first * w..(first + hi) * w].to_vec());
                    first += hi;
                    b
                })
                .collect()
        };
        Ok(Value::new(QrPanel::<T> {
            width: w,
            packed: split(&a),
            v: split(&v),
            y: split(&y),
            _t: PhantomData,
        }))
    }

    fn flops(&self) -> Option<f64> {
        let (h, w) = (self.heights.iter().sum::<usize>() as f64, self.width as f64);
        Some(2.0 * h * w * w - 2.0 * w * w * w / 3.0 + 2.0 * h * w * w)
    }
}

/// Which part of a factored QR panel a [`QrPartTile`] takes.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub(crate) enum QrPart {
    /// The packed factors of a block.
    Packed,
    /// The Householder vectors of a block.
    V,
    /// `V T` of a block.
    Y,
}

/// Block `index` (counted from the diagonal) of one part of a factored QR panel, shared
/// with the panel. Inputs: the panel, then the value replaced (unread).
#[derive(Serialize, Deserialize)]
#[serde(bound = "")]
pub(crate) struct QrPartTile<T> {
    pub(crate) part: QrPart,
    pub(crate) index: usize,
    pub(crate) _t: PhantomData<fn() -> T>,
}

impl<T: TileScalar> CpuTile for QrPartTile<T> {
    fn run(&self, inputs: &mut [Value]) -> Result<Value, TaskFailure> {
        let p = inputs[0]
            .downcast_ref::<QrPanel<T>>()
            .ok_or(TaskFailure::ArgumentType {
                index: 0,
                expected: std::any::type_name::<QrPanel<T>>(),
                found: inputs[0].type_name(),
            })?;
        let part = match self.part {
            QrPart::Packed => &p.packed,
            QrPart::V => &p.v,
            QrPart::Y => &p.y,
        };
        Ok(part[self.index].clone())
    }
}
