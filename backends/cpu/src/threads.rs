//! [`Threads`]: how many threads a CPU kernel call may use.

/// How many threads one kernel call may use.
///
/// A block kernel runs inside one task, and the scheduler already runs one task per CPU
/// thread, so the default is [`Threads::SEQ`]: the calling thread only. `Threads(n)` with
/// `n > 1` lets the kernel (faer's, or the packed GEMM's, which gives each thread a range of
/// `C`'s columns) split the block over `n` threads of rayon's global pool; `Threads(0)`
/// means all of them. With the `openblas` feature, the count is given to OpenBLAS
/// (`openblas_set_num_threads`, process-wide) before each call whose count differs from the
/// last one; `trsm` and `potrf` run on the calling thread.
///
/// ```
/// use dagger_cpu::Threads;
/// assert_eq!(Threads::default(), Threads::SEQ);
/// assert_eq!(Threads::SEQ, Threads(1));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Threads(pub usize);

impl Threads {
    /// The calling thread only.
    pub const SEQ: Self = Self(1);

    /// faer's parallelism setting for this count.
    pub(crate) fn par(self) -> faer::Par {
        match self.0 {
            1 => faer::Par::Seq,
            n => faer::Par::rayon(n),
        }
    }
}

impl Default for Threads {
    fn default() -> Self {
        Self::SEQ
    }
}
