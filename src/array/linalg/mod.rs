//! Dense linear algebra on 2-D arrays: GEMM with transposes, SYRK, tiled Cholesky, LU and QR
//! factorizations, triangular and general solves, the inverse and norms. Every tile is one task running a named tile kernel (see
//! `crate::kernel::tiles`: a CPU implementation from `dagger-cpu`, single-threaded per tile
//! so task parallelism never oversubscribes the cores, and a WGSL one); the scope and the
//! cost model decide where each tile runs.
//!
//! Split by algorithm: `gemm` (`DArray::gemm` and `matmul`), `syrk` (`syrk`, `mirror`),
//! `cholesky` (`cholesky`), `lu` (`lu`, [`Lu`]), `qr` (`qr`, [`Qr`]), `solve` (`solve_triangular`, `solve`,
//! `inv`, `eye`) and `norm` (`norm`); this module holds what they share.

mod cholesky;
mod gemm;
mod lu;
mod norm;
mod qr;
mod solve;
mod syrk;

pub use lu::Lu;
pub use norm::Norm;
pub use qr::Qr;
pub use solve::Solver;

use super::domain::Grid;
use super::{ArrayError, Block, DArray, Float};
use crate::chunk::Chunk;
use crate::datadeps::Version;
use crate::kernel::tiles::TileScalar;
use crate::task::DTask;

/// Element types with a GEMM on every processor: `f32` and `f64`.
pub trait Gemm: Float + TileScalar {}

impl Gemm for f32 {}

impl Gemm for f64 {}

/// Options of GEMM and SYRK tiles: named, and able to use CPU threads the scheduler lends
/// them when nothing else is waiting (the CPU kernels run single-threaded otherwise).
fn tile_options(name: &'static str) -> crate::Options {
    crate::Options::new().name(name).max_threads(usize::MAX)
}

/// `opts` for a tile that writes block `(i, j)` of a `bi x bj` block grid: when the
/// context spans several ranks, the tile runs on the rank owning that block (on its CPU
/// threads when `host_only`).
fn owned_tile_options(
    ctx: &crate::Context,
    opts: crate::Options,
    (bi, bj): (usize, usize),
    (i, j): (usize, usize),
    host_only: bool,
) -> crate::Options {
    if ctx.ranks() <= 1 {
        return opts;
    }
    let owner = crate::array::ranks::owner(ctx.ranks(), &[bi, bj], &[i, j]);
    match crate::array::ranks::owned_scope(ctx, owner, host_only) {
        Some(s) => opts.scope(s),
        None => opts,
    }
}

/// Lets the values the LU and QR tiles pass one another cross processes: the factored
/// panels (a pivoted LU panel with its row interchanges) and the interchanges alone.
fn register_wire_types() {
    fn of<T: Gemm>() {
        crate::remote::register_type::<crate::kernel::tiles::Panel<T>>();
        crate::remote::register_type::<crate::kernel::tiles::QrPanel<T>>();
    }
    of::<f32>();
    of::<f64>();
    crate::remote::register_type::<Vec<usize>>();
}

inventory::submit! { crate::kernel::BuiltinKernels(register_wire_types) }

fn width(cuts: &[usize], i: usize) -> usize {
    cuts[i + 1] - cuts[i]
}

fn version_of<T: Gemm>(b: &Block<T>) -> Version {
    match b {
        Block::Task(t) => Version::Task(t.core.clone()),
        Block::Data(c) => Version::Data(c.data.clone()),
    }
}

fn block_of<T: Gemm>(v: Version) -> Block<T> {
    match v {
        Version::Task(t) => Block::Task(DTask::from_core(t)),
        Version::Data(d) => Block::Data(Chunk::from_data(d)),
    }
}

impl<T: Gemm> DArray<T> {
    /// This array re-blocked symmetrically along its row cuts, with those cuts; an error
    /// naming the shape and `op` unless it is a square matrix.
    fn square_blocks(
        &self,
        op: &'static str,
        name: &'static str,
    ) -> Result<(DArray<T>, Vec<usize>), ArrayError> {
        let s = self.shape();
        if s.len() != 2 || s[0] != s[1] {
            return Err(ArrayError::NotAMatrix {
                op,
                needs: "a square matrix",
                name,
                shape: s,
            });
        }
        let cuts = self.grid().cuts[0].clone();
        let square = Grid {
            cuts: vec![cuts.clone(), cuts.clone()],
        };
        Ok((self.aligned_to(&square), cuts))
    }

    /// An error naming `op` and the operand unless `self` (called `a` in the message) and
    /// `other` (called `other_name`) are both 2-D.
    fn matrix_shape(
        &self,
        op: &'static str,
        other: &DArray<T>,
        other_name: &'static str,
    ) -> Result<(), ArrayError> {
        for (name, a) in [("a", self), (other_name, other)] {
            if a.ndim() != 2 {
                return Err(ArrayError::NotAMatrix {
                    op,
                    needs: "2-D arrays",
                    name,
                    shape: a.shape(),
                });
            }
        }
        Ok(())
    }
}
