//! Tiled LU factorization, right-looking, without pivoting or with partial pivoting across
//! each panel: `DArray::lu` and its result [`Lu`].

use std::any::TypeId;
use std::marker::PhantomData;

use dagger_cpu::{Pivoting, Trans};
use dagger_wgpu::blas::GemmKernel;

use super::{block_of, owned_tile_options, tile_options, version_of, width, Gemm};
use crate::array::{host_options, ArrayError, Block, DArray};
use crate::chunk::Chunk;
use crate::datadeps::Version;
use crate::error::TaskError;
use crate::kernel::tiles::{
    cpu_tile_call, tile_call, GemmTile, LuPart, OwnBlockTile, PanelPartTile, PanelPivotsTile,
    PanelRowsTile, PanelTile, TrianglePartTile, ZeroPivot,
};
use crate::task::args::Deps;
use crate::task::DTask;
use crate::Priority;

/// The LU factorization of a square matrix, `P A = L U`, from [`DArray::lu`].
///
/// `L` (unit lower triangular) and `U` (upper triangular) are stored packed in one array
/// blocked as `A` was, as LAPACK's `?getrf` leaves them: [`factors`](Self::factors); `P`
/// is [`permutation`](Self::permutation). [`l`](Self::l) and [`u`](Self::u) give them
/// apart, [`solve`](Self::solve) solves `A X = B` with them.
#[derive(Clone, Debug)]
pub struct Lu<T> {
    factors: DArray<T>,
    perm: Vec<usize>,
}

impl<T: Gemm> Lu<T> {
    /// `L` and `U` packed: `U` on and above the diagonal, `L` below it (its unit diagonal
    /// not stored).
    pub fn factors(&self) -> &DArray<T> {
        &self.factors
    }

    /// `P` as a list of rows: row `i` of `P A` is row `permutation()[i]` of `A`. The
    /// identity without pivoting.
    pub fn permutation(&self) -> &[usize] {
        &self.perm
    }

    /// `L`: unit lower triangular, as a new array.
    pub fn l(&self) -> DArray<T> {
        self.part(LuPart::UnitLower)
    }

    /// `U`: upper triangular, as a new array.
    pub fn u(&self) -> DArray<T> {
        self.part(LuPart::Upper)
    }

    fn part(&self, part: LuPart) -> DArray<T> {
        let f = &self.factors;
        let ctx = f.context().clone();
        let grid = f.grid().clone();
        let (rc, cc) = (&grid.cuts[0], &grid.cuts[1]);
        let (nbr, nbc) = (rc.len() - 1, cc.len() - 1);
        let opts = host_options(&ctx).name("lu_part");
        let blocks = f
            .blocks()
            .iter()
            .enumerate()
            .map(|(ij, b)| {
                let (i, j) = (ij / nbc, ij % nbc);
                let tile = TrianglePartTile::<T> {
                    part,
                    rows: width(rc, i),
                    cols: width(cc, j),
                    row0: rc[i],
                    col0: cc[j],
                    _t: PhantomData,
                };
                let opts = owned_tile_options(&ctx, opts.clone(), (nbr, nbc), (i, j), true);
                triangle_part(&ctx, "lu_part", &opts, b, tile)
            })
            .collect();
        DArray::from_parts(&ctx, grid, blocks)
    }
}

/// A task keeping the part `tile` says of block `b` (the rest zero, or one on a unit
/// diagonal): what `L`, `U` and QR's `R` are made of.
pub(super) fn triangle_part<T: Gemm>(
    ctx: &crate::Context,
    name: &'static str,
    opts: &crate::Options,
    b: &Block<T>,
    tile: TrianglePartTile<T>,
) -> Block<T> {
    let mut deps = Deps::default();
    deps.list.push(b.arg().dep);
    let task = ctx.submit_kernel(
        name,
        TypeId::of::<TrianglePartTile<T>>(),
        opts.clone(),
        deps,
        None,
        Some(cpu_tile_call(
            "lu_part_tile",
            <T as dagger_cpu::Scalar>::NAME,
            tile,
        )),
    );
    Block::Task(DTask::from_core(task))
}

impl<T: Gemm> DArray<T> {
    /// The LU factorization `P A = L U` of a square matrix, tiled (Dagger.jl's `lu`).
    ///
    /// Right-looking over the blocks of the diagonal: at step `k` one task factors the
    /// panel — the blocks of column `k` from the diagonal down — with `dagger-cpu`'s
    /// recursive `getrf` (with [`Pivoting::Partial`], choosing each pivot from the whole
    /// panel), in a column-major copy and on every CPU thread idle when it starts; tasks
    /// then apply its row interchanges to the other columns' blocks and solve for the
    /// blocks of `U` to its right, and GEMM tiles update the trailing matrix. All are
    /// tasks of one datadeps region ordered by the blocks they read and write, so the next
    /// panel starts as soon as its column is updated, beside the rest of the update; the
    /// tiles of that column have [`Priority::High`], so that free threads take them before
    /// the rest. The GEMM updates run on CPU threads or GPUs as the scope allows; the panel,
    /// interchange and solve tiles have CPU implementations only and run on CPU threads (on
    /// any CPU thread when the scope holds none). A non-square blocking is made square along
    /// the row cuts. Waits for the factorization.
    ///
    /// Over several ranks every tile runs on the rank owning the block it writes (the panel
    /// on the diagonal block's): the factored panel, with its row interchanges, is a value
    /// the other tiles take as an input wherever they run, and only the interchanges reach
    /// the caller's process, to form [`Lu::permutation`].
    ///
    /// # Errors
    ///
    /// [`ArrayError::Singular`] naming the diagonal block and the pivot (also as a row of
    /// the matrix) where an exactly zero pivot stopped the factorization — with partial
    /// pivoting the matrix is singular there; without, it may need pivoting; shape errors
    /// for a matrix that is not square.
    ///
    /// ```
    /// use dagger::prelude::*;
    /// use dagger::{ArrayError, Pivoting};
    /// let ctx = Context::builder().threads(2).build()?;
    /// let a = ndarray::arr2(&[[1.0, 2.0], [4.0, 2.0]]);
    /// let lu = DArray::distribute(&ctx, &a, Blocks::new([1, 1]))?.lu(Pivoting::Partial)?;
    /// assert_eq!(lu.permutation(), &[1, 0]); // P A = [[4, 2], [1, 2]]
    /// assert_eq!(lu.l().collect2()?, ndarray::arr2(&[[1.0, 0.0], [0.25, 1.0]]));
    /// assert_eq!(lu.u().collect2()?, ndarray::arr2(&[[4.0, 2.0], [0.0, 1.5]]));
    /// // Without pivoting, [[0, 1], [1, 0]] meets a zero pivot at once.
    /// let swap = ndarray::arr2(&[[0.0, 1.0], [1.0, 0.0]]);
    /// let err = DArray::distribute(&ctx, &swap, Blocks::new([1, 1]))?.lu(Pivoting::None).unwrap_err();
    /// assert!(matches!(err, ArrayError::Singular { block: 0, row: 0, .. }), "{err}");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn lu(&self, pivoting: Pivoting) -> Result<Lu<T>, ArrayError> {
        let (a, cuts) = self.square_blocks("lu", "a")?;
        let nb = cuts.len() - 1;
        let n = cuts[nb];
        let ctx = self.context().clone();
        let w = |i: usize| width(&cuts, i);
        let host = host_options(&ctx);
        // Each tile runs on the rank owning the block it writes, on CPU threads unless it
        // is a GEMM.
        let opts = |name: &'static str, (i, j): (usize, usize)| {
            owned_tile_options(&ctx, host.clone().name(name), (nb, nb), (i, j), true)
        };
        let dtype = <T as dagger_cpu::Scalar>::NAME;
        let empty = || version_of(&Block::Data(Chunk::new(Vec::<T>::new())));
        let factor = ctx.spawn_datadeps(|r| {
            let mut keys: Vec<u64> = a.blocks().iter().map(|b| r.track(version_of(b))).collect();
            let mut pivots: Vec<u64> = Vec::with_capacity(nb);
            for k in 0..nb {
                let first_row = cuts[k];
                // The next panel's column is on the critical path: its interchanges, solve
                // and updates run before the rest of the step's, on whichever thread is
                // free first.
                let urgency = |j: usize| {
                    if j == k + 1 {
                        Priority::High
                    } else {
                        Priority::Normal
                    }
                };
                // Local (from the panel's first row) row ranges of the blocks k.. of a column.
                let local = |i: usize| (cuts[i] - first_row, w(i));
                let panel = r.track(empty());
                let mut args: Vec<(u64, bool)> =
                    (k..nb).map(|i| (keys[i * nb + k], false)).collect();
                args.push((panel, true));
                r.submit_versioned(
                    "lu_panel".into(),
                    TypeId::of::<PanelTile<T>>(),
                    // The panel holds up everything after it: it takes the CPU threads
                    // that are idle when it starts (the GEMMs of its getrf use them).
                    opts("lu_panel", (k, k))
                        .max_threads(usize::MAX)
                        .priority(Priority::High),
                    &args,
                    None,
                    Some(cpu_tile_call(
                        "lu_panel_tile",
                        dtype,
                        PanelTile::<T> {
                            pivoting,
                            block: k,
                            first_row,
                            heights: (k..nb).map(w).collect(),
                            width: w(k),
                            _t: PhantomData,
                        },
                    )),
                );
                if k == 0 && pivoting == Pivoting::Partial {
                    // The blocks that the first interchanges change in place (all but the
                    // first row and column), made the factorization's own while the first
                    // panel runs: each is a copy when the caller's array holds it.
                    for j in 1..nb {
                        for i in 1..nb {
                            r.submit_versioned(
                                "lu_own".into(),
                                TypeId::of::<OwnBlockTile<T>>(),
                                opts("lu_own", (i, j)),
                                &[(keys[i * nb + j], true)],
                                None,
                                Some(cpu_tile_call(
                                    "own_block_tile",
                                    dtype,
                                    OwnBlockTile::<T> { _t: PhantomData },
                                )),
                            );
                        }
                    }
                }
                if pivoting == Pivoting::Partial {
                    // The interchanges alone, for the caller: nothing in the region waits
                    // for them.
                    let p = r.track(empty());
                    r.submit_versioned(
                        "lu_pivots".into(),
                        TypeId::of::<PanelPivotsTile<T>>(),
                        opts("lu_pivots", (k, k)),
                        &[(panel, false), (p, true)],
                        None,
                        Some(cpu_tile_call(
                            "lu_pivots_tile",
                            dtype,
                            PanelPivotsTile::<T> { _t: PhantomData },
                        )),
                    );
                    pivots.push(p);
                }
                for i in k..nb {
                    r.submit_versioned(
                        "lu_panel_part".into(),
                        TypeId::of::<PanelPartTile<T>>(),
                        opts("lu_panel_part", (i, k)).priority(Priority::High),
                        &[(panel, false), (keys[i * nb + k], true)],
                        None,
                        Some(cpu_tile_call(
                            "lu_panel_part_tile",
                            dtype,
                            PanelPartTile::<T> {
                                index: i - k,
                                _t: PhantomData,
                            },
                        )),
                    );
                }
                // The next panel's column first, then the rest of the trailing matrix,
                // then the columns of L on the left, which nothing waits for.
                for j in (k + 1..nb).chain(0..k) {
                    let solve = (j > k).then(|| w(k));
                    if pivoting == Pivoting::None {
                        if let Some(s) = solve {
                            // U_kj = L_kk⁻¹ A_kj
                            r.submit_versioned(
                                "lu_rows".into(),
                                TypeId::of::<PanelRowsTile<T>>(),
                                opts("lu_rows", (k, j)).priority(urgency(j)),
                                &[(panel, false), (keys[k * nb + j], true)],
                                None,
                                Some(cpu_tile_call(
                                    "lu_rows_tile",
                                    dtype,
                                    PanelRowsTile::<T> {
                                        cols: w(j),
                                        parts: vec![],
                                        own: Some(local(k)),
                                        out: local(k),
                                        solve: Some(s),
                                        _t: PhantomData,
                                    },
                                )),
                            );
                        }
                        continue;
                    }
                    // Block k of column j after the interchanges gathers rows from all
                    // blocks k..; it goes to a new key, since the blocks below still read
                    // the old one.
                    let top = r.track(empty());
                    let mut args: Vec<(u64, bool)> =
                        (k..nb).map(|i| (keys[i * nb + j], false)).collect();
                    args.push((panel, false));
                    args.rotate_right(1);
                    args.push((top, true));
                    r.submit_versioned(
                        "lu_rows".into(),
                        TypeId::of::<PanelRowsTile<T>>(),
                        opts("lu_rows", (k, j)).priority(urgency(j)),
                        &args,
                        None,
                        Some(cpu_tile_call(
                            "lu_rows_tile",
                            dtype,
                            PanelRowsTile::<T> {
                                cols: w(j),
                                parts: (k..nb).map(local).collect(),
                                own: None,
                                out: local(k),
                                solve,
                                _t: PhantomData,
                            },
                        )),
                    );
                    // A block below takes its rows from itself or from block k.
                    for i in k + 1..nb {
                        r.submit_versioned(
                            "lu_rows".into(),
                            TypeId::of::<PanelRowsTile<T>>(),
                            opts("lu_rows", (i, j)).priority(urgency(j)),
                            &[
                                (panel, false),
                                (keys[k * nb + j], false),
                                (keys[i * nb + j], true),
                            ],
                            None,
                            Some(cpu_tile_call(
                                "lu_rows_tile",
                                dtype,
                                PanelRowsTile::<T> {
                                    cols: w(j),
                                    parts: vec![local(k)],
                                    own: Some(local(i)),
                                    out: local(i),
                                    solve: None,
                                    _t: PhantomData,
                                },
                            )),
                        );
                    }
                    // The block's earlier version has all its readers: freed once they ran.
                    r.untrack(std::mem::replace(&mut keys[k * nb + j], top));
                }
                // Every reader of the panel is submitted: untracked, it is freed once they
                // ran, and the blocks of L it shares memory with can then be updated in
                // place by the interchanges of later panels instead of copied.
                r.untrack(panel);
                // A_ij -= L_ik U_kj, the next panel's column first.
                for j in k + 1..nb {
                    for i in k + 1..nb {
                        let tile = GemmTile::<T> {
                            kernel: GemmKernel::Tiled,
                            op_a: Trans::No,
                            op_b: Trans::No,
                            alpha: -T::ONE,
                            beta: T::ONE,
                            m: w(i),
                            n: w(j),
                            a: vec![(w(i), w(k))],
                            b: vec![(w(k), w(j))],
                        };
                        r.submit_versioned(
                            "gemm".into(),
                            TypeId::of::<GemmTile<T>>(),
                            owned_tile_options(&ctx, tile_options("gemm"), (nb, nb), (i, j), false)
                                .priority(urgency(j)),
                            &[
                                (keys[i * nb + k], false),
                                (keys[k * nb + j], false),
                                (keys[i * nb + j], true),
                            ],
                            None,
                            Some(tile_call("gemm_tile", tile)),
                        );
                    }
                }
            }
            let latest: Vec<Version> = keys.iter().map(|&k| r.latest(k)).collect();
            let pivots: Vec<Version> = pivots.iter().map(|&p| r.latest(p)).collect();
            (latest, pivots)
        });
        let (latest, pivots) = factor.map_err(singular)?;
        let mut perm: Vec<usize> = (0..n).collect();
        for (k, p) in pivots.into_iter().enumerate() {
            let p = pivots_of(p).map_err(ArrayError::Task)?;
            let r0 = cuts[k];
            let old = perm[r0..].to_vec();
            for (q, &src) in p.iter().enumerate() {
                perm[r0 + q] = old[src];
            }
        }
        let blocks = latest.into_iter().map(block_of).collect();
        Ok(Lu {
            factors: DArray::from_parts(&ctx, a.grid().clone(), blocks),
            perm,
        })
    }
}

/// A panel's row interchanges, from the task that took them out of it (on whichever rank
/// it ran).
fn pivots_of(v: Version) -> Result<Vec<usize>, TaskError> {
    match v {
        Version::Task(t) => DTask::<Vec<usize>>::from_core(t).fetch(),
        Version::Data(d) => Chunk::<Vec<usize>>::from_data(d).collect(),
    }
}

/// A region's error as an array error: a zero pivot by name, anything else as is.
pub(super) fn singular(e: TaskError) -> ArrayError {
    if let TaskError::Failed { cause, .. } = e.root_cause() {
        // The typed error, or (from another rank) its message somewhere in the chain.
        let mut link: Option<&(dyn std::error::Error + 'static)> = Some(&**cause);
        while let Some(err) = link {
            let found = match err.downcast_ref::<ZeroPivot>() {
                Some(z) => Some((z.block, z.pivot, z.row)),
                None => ZeroPivot::parse(&err.to_string()).map(|z| (z.block, z.pivot, z.row)),
            };
            if let Some((block, pivot, row)) = found {
                return ArrayError::Singular { block, pivot, row };
            }
            link = err.source();
        }
    }
    ArrayError::Task(e)
}
