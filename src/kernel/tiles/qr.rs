//! The tiles of Householder QR: the panel factorization (a column of blocks, by
//! `dagger-cpu`'s `geqrt`) and taking its parts out. The panel has a CPU implementation
//! only; everything else QR does is GEMM tiles, which GPUs run too.

use std::marker::PhantomData;

use dagger_cpu::{Accum, MatMut, MatRef, Threads, Trans};

use super::{block, CpuTile, TileScalar};
use crate::processor::TaskFailure;
use crate::value::Value;

/// A factored QR panel, one value per block of its column: the packed factors (`R` on and
/// above the diagonal, the Householder vectors below), the Householder vectors `V` on their
/// own (unit lower triangular at the top, zeros above), and `Y = V T`, so that the panel's
/// reflector `Q = I - V T Vᵀ` is applied with two products: `Qᵀ B = B - V (Yᵀ B)` and
/// `Q B = B - Y (Vᵀ B)`.
pub(crate) struct QrPanel<T> {
    packed: Vec<Value>,
    v: Vec<Value>,
    y: Vec<Value>,
    _t: PhantomData<fn() -> T>,
}

/// Factors the panel of a QR step: the blocks of one column from the diagonal down.
/// Inputs: those blocks (heights in `heights`, all `width` wide), then the value the panel
/// replaces (unread).
pub(crate) struct QrPanelTile<T> {
    pub(crate) heights: Vec<usize>,
    pub(crate) width: usize,
    pub(crate) _t: PhantomData<fn() -> T>,
}

impl<T: TileScalar> CpuTile for QrPanelTile<T> {
    fn run(&self, inputs: &[Value]) -> Result<Value, TaskFailure> {
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
        for r in 0..w.min(h) {
            v[r * w + r] = T::from_f64_rounded(1.0);
            v[r * w + r + 1..(r + 1) * w].fill(zero);
        }
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
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
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
pub(crate) struct QrPartTile<T> {
    pub(crate) part: QrPart,
    pub(crate) index: usize,
    pub(crate) _t: PhantomData<fn() -> T>,
}

impl<T: TileScalar> CpuTile for QrPartTile<T> {
    fn run(&self, inputs: &[Value]) -> Result<Value, TaskFailure> {
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
