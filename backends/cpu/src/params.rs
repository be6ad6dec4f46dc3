//! Kernel parameters as types: [`Trans`], [`Triangle`], [`Side`], [`Diag`], [`Accum`],
//! [`Threads`].

/// Whether a kernel uses a matrix as stored or transposed (`op(A) = A` or `Aᵀ`).
///
/// ```
/// use dagger_cpu::Trans;
/// assert_eq!(Trans::Yes.flip(), Trans::No);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Trans {
    /// `op(A) = A`.
    #[default]
    No,
    /// `op(A) = Aᵀ`.
    Yes,
}

impl Trans {
    /// The other choice.
    pub fn flip(self) -> Self {
        match self {
            Self::No => Self::Yes,
            Self::Yes => Self::No,
        }
    }

    /// Shape of `op(A)` for an `A` of shape `(rows, cols)`.
    ///
    /// ```
    /// use dagger_cpu::Trans;
    /// assert_eq!(Trans::Yes.apply((2, 3)), (3, 2));
    /// ```
    pub fn apply(self, (rows, cols): (usize, usize)) -> (usize, usize) {
        match self {
            Self::No => (rows, cols),
            Self::Yes => (cols, rows),
        }
    }
}

/// Which triangle (diagonal included) of a square matrix a kernel reads or writes.
///
/// ```
/// use dagger_cpu::Triangle;
/// assert!(Triangle::Lower.contains(2, 1) && !Triangle::Lower.contains(1, 2));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Triangle {
    /// Elements `(i, j)` with `i >= j`.
    Lower,
    /// Elements `(i, j)` with `i <= j`.
    Upper,
}

impl Triangle {
    /// The other triangle.
    pub fn flip(self) -> Self {
        match self {
            Self::Lower => Self::Upper,
            Self::Upper => Self::Lower,
        }
    }

    /// Whether element `(i, j)` lies in this triangle (the diagonal belongs to both).
    pub fn contains(self, i: usize, j: usize) -> bool {
        match self {
            Self::Lower => i >= j,
            Self::Upper => i <= j,
        }
    }
}

/// On which side of the unknown the triangular matrix stands in [`crate::trsm`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Side {
    /// Solve `op(A) X = alpha B`.
    Left,
    /// Solve `X op(A) = alpha B`.
    Right,
}

/// Whether a triangular matrix has a unit diagonal that is not stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Diag {
    /// The diagonal is stored and used.
    NonUnit,
    /// The diagonal is taken to be all ones; the stored diagonal is not read.
    Unit,
}

/// What a kernel does with the previous contents of its output `C` (BLAS's `beta`).
///
/// `Replace` is `beta = 0` and `Add` is `beta = 1`; `Scale(beta)` is the general case.
/// As in BLAS, `Replace` and `Scale(0.0)` do not read `C`, so NaN or garbage in an output
/// that is being overwritten does not leak into the result.
///
/// ```
/// use dagger_cpu::Accum;
/// assert_eq!(Accum::Scale(1.0f32).beta(), 1.0);
/// assert_eq!(Accum::<f64>::Replace.beta(), 0.0);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub enum Accum<T> {
    /// `C = alpha op(A) op(B)`; the previous `C` is not read.
    #[default]
    Replace,
    /// `C = alpha op(A) op(B) + C`.
    Add,
    /// `C = alpha op(A) op(B) + beta C`.
    Scale(T),
}

impl<T: crate::Scalar> Accum<T> {
    /// The BLAS `beta` this stands for.
    pub fn beta(self) -> T {
        match self {
            Self::Replace => T::from_f64_rounded(0.0),
            Self::Add => T::from_f64_rounded(1.0),
            Self::Scale(beta) => beta,
        }
    }

    /// `Scale(0)` as `Replace`, `Scale(1)` as `Add`.
    pub(crate) fn canonical(self) -> Self {
        match self {
            Self::Scale(b) if b == T::from_f64_rounded(0.0) => Self::Replace,
            Self::Scale(b) if b == T::from_f64_rounded(1.0) => Self::Add,
            other => other,
        }
    }
}

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
