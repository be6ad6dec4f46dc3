//! Where the blocks of a DArray are computed when its context spans several ranks: spread
//! block-cyclically over a process grid, as ScaLAPACK and Dagger.jl's MPI mode spread
//! matrices. Each operation computes an output block on the rank that owns it, so the
//! blocks stay where they are made and only `collect`/`fetch` gathers them.

use super::domain::Grid;
use crate::{Context, Options, Scope};

/// The process grid `p x q` for `ranks` ranks: `p * q = ranks` with `p >= q` as close as
/// possible (3 x 1 for three ranks, 2 x 2 for four, 3 x 2 for six). Taller rather than
/// wider, so that the blocks of one block column (a Cholesky or LU panel) are spread over
/// ranks rather than all on one.
pub(crate) fn process_grid(ranks: usize) -> (usize, usize) {
    let ranks = ranks.max(1);
    let mut q = (ranks as f64).sqrt() as usize;
    while q > 1 && !ranks.is_multiple_of(q) {
        q -= 1;
    }
    let q = q.max(1);
    (ranks / q, q)
}

/// The rank owning the block at grid index `idx` of a grid with `counts` blocks per axis.
/// Matrices (and higher) are block-cyclic over the process grid by their first axis and
/// the rest of the index; vectors are cyclic over all ranks.
pub(crate) fn owner(ranks: usize, counts: &[usize], idx: &[usize]) -> usize {
    if ranks <= 1 || idx.is_empty() {
        return 0;
    }
    if idx.len() == 1 {
        return idx[0] % ranks;
    }
    let (p, q) = process_grid(ranks);
    // The trailing axes, row-major, as one column index.
    let col = idx[1..]
        .iter()
        .zip(&counts[1..])
        .fold(0, |acc, (&i, &n)| acc * n + i);
    (idx[0] % p) * q + col % q
}

/// The rank owning block `linear` of `grid` in `ctx`.
pub(crate) fn owner_of(ctx: &Context, grid: &Grid, linear: usize) -> usize {
    let ranks = ctx.ranks();
    if ranks <= 1 {
        return 0;
    }
    owner(ranks, &grid.counts(), &grid.unravel(linear))
}

/// Options for a task computing a block owned by `rank`: the scope in effect narrowed to
/// that rank's processors (and to CPU threads when `host_only`). `None` in one process, or
/// when the scope in effect leaves nothing on that rank (then the scope in effect decides).
pub(crate) fn owned_options(ctx: &Context, rank: usize, host_only: bool) -> Option<Options> {
    owned_scope(ctx, rank, host_only).map(|s| Options::new().scope(s))
}

/// The scope of [`owned_options`].
pub(crate) fn owned_scope(ctx: &Context, rank: usize, host_only: bool) -> Option<Scope> {
    if ctx.ranks() <= 1 {
        return None;
    }
    let mut s = Scope::worker(rank);
    if let Some(inner) = crate::get_options().get_scope() {
        s = inner.constrain(&s);
    }
    if host_only {
        s = s.constrain(&Scope::cpu());
    }
    ctx.resolve_scope(&s).is_ok().then_some(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn process_grids_are_as_square_as_the_rank_count_allows() {
        assert_eq!(process_grid(1), (1, 1));
        assert_eq!(process_grid(2), (2, 1));
        assert_eq!(process_grid(3), (3, 1));
        assert_eq!(process_grid(4), (2, 2));
        assert_eq!(process_grid(6), (3, 2));
        assert_eq!(process_grid(12), (4, 3));
    }

    #[test]
    fn blocks_are_cyclic_over_the_grid() {
        // 2 x 2 process grid over a 4 x 4 block grid.
        let owners: Vec<usize> = (0..16)
            .map(|l| owner(4, &[4, 4], &[l / 4, l % 4]))
            .collect();
        assert_eq!(owners, vec![0, 1, 0, 1, 2, 3, 2, 3, 0, 1, 0, 1, 2, 3, 2, 3]);
        // Every rank owns a quarter.
        for r in 0..4 {
            assert_eq!(owners.iter().filter(|&&o| o == r).count(), 4);
        }
        assert_eq!(owner(3, &[7], &[5]), 2);
        assert_eq!(owner(1, &[3, 3], &[2, 2]), 0);
    }
}
