//! Tiled Cholesky factorization: POTRF tiles on the diagonal, TRSM below it, SYRK and GEMM
//! tiles for the trailing updates; `DArray::cholesky`.

use std::any::TypeId;
use std::marker::PhantomData;
use std::sync::Arc;

use dagger_cpu::{Trans, Triangle};
use dagger_wgpu::blas::GemmKernel;

use super::{block_of, owned_tile_options, tile_options, version_of, width, Gemm};
use crate::array::{ArrayError, Block, DArray};
use crate::chunk::Chunk;
use crate::error::TaskError;
use crate::kernel::tiles::{
    first_gpu_pivot, tile_call, GemmTile, NotPositiveDefinite, PivotReports, PotrfTile, SyrkTile,
    TrsmTile,
};

impl<T: Gemm> DArray<T> {
    /// The Cholesky factor `L` of a symmetric positive definite matrix (`self = L Lᵀ`),
    /// lower triangular with zeros above the diagonal. Only the lower triangle of `self` is
    /// read.
    ///
    /// Tiled as Dagger.jl's `cholesky`: for each diagonal block a `potrf`, `trsm`s down its
    /// column, then `syrk` and `gemm` updates of the trailing matrix, all tile tasks of one
    /// datadeps region ordered by the blocks they read and write, so the updates of step `k`
    /// overlap the factorization of step `k + 1`. Every tile kind has a CPU implementation
    /// (`dagger-cpu`) and a WGSL one, so tiles run on CPU threads or GPUs as the scope allows
    /// and the cost model prefers; block versions move between memory spaces as the region
    /// needs them. A non-square blocking is made square along the row cuts. Waits for the
    /// factorization.
    ///
    /// # Errors
    ///
    /// [`ArrayError::NotPositiveDefinite`] naming the diagonal block and the pivot (also as
    /// a row of the matrix) where the factorization broke down; shape errors for a matrix
    /// that is not square.
    ///
    /// ```
    /// use dagger::prelude::*;
    /// use dagger::ArrayError;
    /// let ctx = Context::builder().threads(2).build()?;
    /// // [[4, 2], [2, 5]] = L Lᵀ with L = [[2, 0], [1, 2]]
    /// let a = ndarray::arr2(&[[4.0, 2.0], [2.0, 5.0]]);
    /// let l = DArray::distribute(&ctx, &a, Blocks::new([1, 1]))?.cholesky()?.collect2()?;
    /// assert_eq!(l, ndarray::arr2(&[[2.0, 0.0], [1.0, 2.0]]));
    /// let bad = ndarray::arr2(&[[1.0, 2.0], [2.0, 1.0]]);
    /// let err = DArray::distribute(&ctx, &bad, Blocks::new([1, 1]))?.cholesky().unwrap_err();
    /// assert!(matches!(err, ArrayError::NotPositiveDefinite { block: 1, row: 1, .. }), "{err}");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn cholesky(&self) -> Result<DArray<T>, ArrayError> {
        self.cholesky_with(GemmKernel::Tiled)
    }

    /// [`cholesky`](Self::cholesky) with a choice of GPU kernel for the GEMM tiles.
    pub fn cholesky_with(&self, kernel: GemmKernel) -> Result<DArray<T>, ArrayError> {
        let (a, cuts) = self.square_blocks("cholesky", "a")?;
        let nb = cuts.len() - 1;
        let ctx = self.context().clone();
        let w = |i: usize| width(&cuts, i);
        // Every tile runs on the rank owning the block it writes; a `potrf` sent to another
        // rank runs on its CPU threads, which report a failed pivot themselves.
        let remote = ctx.ranks() > 1;
        let opts = |name: &'static str| crate::Options::new().name(name);
        let on = |opts: crate::Options, (i, j): (usize, usize), host_only: bool| {
            owned_tile_options(&ctx, opts, (nb, nb), (i, j), host_only)
        };
        let reports: PivotReports = Arc::default();
        let factor = ctx.spawn_datadeps(|r| {
            let keys: Vec<Option<u64>> = (0..nb * nb)
                .map(|ij| (ij / nb >= ij % nb).then(|| r.track(version_of(&a.blocks()[ij]))))
                .collect();
            let key = |i: usize, j: usize| keys[i * nb + j].expect("lower blocks are tracked");
            for (k, &first_row) in cuts[..nb].iter().enumerate() {
                r.submit_versioned(
                    "potrf".into(),
                    TypeId::of::<PotrfTile<T>>(),
                    on(opts("potrf"), (k, k), remote),
                    &[(key(k, k), true)],
                    None,
                    Some(tile_call(
                        "potrf_tile",
                        PotrfTile::<T> {
                            block: k,
                            first_row,
                            n: w(k),
                            reports: reports.clone(),
                            _t: PhantomData,
                        },
                    )),
                );
                for i in k + 1..nb {
                    r.submit_versioned(
                        "trsm".into(),
                        TypeId::of::<TrsmTile<T>>(),
                        on(opts("trsm"), (i, k), false),
                        &[(key(k, k), false), (key(i, k), true)],
                        None,
                        Some(tile_call(
                            "trsm_tile",
                            TrsmTile::<T> {
                                m: w(i),
                                n: w(k),
                                _t: PhantomData,
                            },
                        )),
                    );
                }
                for i in k + 1..nb {
                    // A_ii -= A_ik A_ikᵀ
                    let tile = SyrkTile::<T> {
                        triangle: Triangle::Lower,
                        op: Trans::No,
                        alpha: -T::ONE,
                        beta: T::ONE,
                        n: w(i),
                        a: vec![(w(i), w(k))],
                    };
                    r.submit_versioned(
                        "syrk".into(),
                        TypeId::of::<SyrkTile<T>>(),
                        on(tile_options("syrk"), (i, i), false),
                        &[(key(i, k), false), (key(i, i), true)],
                        None,
                        Some(tile_call("syrk_tile", tile)),
                    );
                    for j in k + 1..i {
                        // A_ij -= A_ik A_jkᵀ
                        let tile = GemmTile::<T> {
                            kernel,
                            op_a: Trans::No,
                            op_b: Trans::Yes,
                            alpha: -T::ONE,
                            beta: T::ONE,
                            m: w(i),
                            n: w(j),
                            a: vec![(w(i), w(k))],
                            b: vec![(w(j), w(k))],
                        };
                        r.submit_versioned(
                            "gemm".into(),
                            TypeId::of::<GemmTile<T>>(),
                            on(tile_options("gemm"), (i, j), false),
                            &[(key(i, k), false), (key(j, k), false), (key(i, j), true)],
                            None,
                            Some(tile_call("gemm_tile", tile)),
                        );
                    }
                }
            }
            keys.iter()
                .map(|k| k.map(|k| r.latest(k)))
                .collect::<Vec<_>>()
        });
        let latest = factor.map_err(not_positive_definite)?;
        // GPU tiles report a bad pivot in a buffer rather than by failing.
        first_gpu_pivot(&reports).map_err(|e| ArrayError::NotPositiveDefinite {
            block: e.block,
            pivot: e.pivot,
            row: e.row,
        })?;
        let blocks = latest
            .into_iter()
            .enumerate()
            .map(|(ij, v)| match v {
                Some(v) => block_of(v),
                None => Block::Data(Chunk::new(vec![T::ZERO; w(ij / nb) * w(ij % nb)])),
            })
            .collect();
        Ok(DArray::from_parts(&ctx, a.grid().clone(), blocks))
    }
}

/// A region's error as an array error: a non-positive pivot by name, anything else as is.
fn not_positive_definite(e: TaskError) -> ArrayError {
    if let TaskError::Failed { cause, .. } = e.root_cause() {
        // The typed error, or (from another rank) its message somewhere in the chain.
        let mut link: Option<&(dyn std::error::Error + 'static)> = Some(&**cause);
        while let Some(err) = link {
            let found = match err.downcast_ref::<NotPositiveDefinite>() {
                Some(npd) => Some((npd.block, npd.pivot, npd.row)),
                None => NotPositiveDefinite::parse(&err.to_string())
                    .map(|npd| (npd.block, npd.pivot, npd.row)),
            };
            if let Some((block, pivot, row)) = found {
                return ArrayError::NotPositiveDefinite { block, pivot, row };
            }
            link = err.source();
        }
    }
    ArrayError::Task(e)
}
