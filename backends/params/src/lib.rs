//! Kernel parameters as types, shared by every `dagger` backend: [`Trans`], [`Triangle`],
//! [`Side`], [`Diag`], [`Accum`], [`Pivoting`].
//!
//! A `beta: f32` or a `bool` would hide what a GEMM or SYRK argument means; these say it.
//! The backends re-export them (`dagger_cpu::Trans`, `dagger_wgpu::blas::Trans`), so a
//! parameter chosen for one backend is passed unchanged to another.

#![warn(missing_docs, unreachable_pub)]

/// Whether a kernel uses a matrix as stored or transposed (`op(A) = A` or `Aᵀ`).
///
/// ```
/// use dagger_params::Trans;
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
    /// use dagger_params::Trans;
    /// assert_eq!(Trans::Yes.apply((2, 3)), (3, 2));
    /// ```
    pub fn apply<D>(self, (rows, cols): (D, D)) -> (D, D) {
        match self {
            Self::No => (rows, cols),
            Self::Yes => (cols, rows),
        }
    }
}

/// Which triangle (diagonal included) of a square matrix a kernel reads or writes.
///
/// ```
/// use dagger_params::Triangle;
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

/// On which side of the unknown the triangular matrix stands in a triangular solve (`trsm`).
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

/// Which row interchanges an LU factorization may make.
///
/// ```
/// use dagger_params::Pivoting;
/// assert_ne!(Pivoting::None, Pivoting::Partial);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Pivoting {
    /// None: `A = L U`. Stable for diagonally dominant or symmetric positive definite
    /// matrices; other nonsingular matrices can meet a zero pivot.
    None,
    /// Partial pivoting (LAPACK's `?getrf`): in each column the entry of largest magnitude
    /// on or below the diagonal becomes the pivot, so `P A = L U`.
    Partial,
}

/// What a kernel does with the previous contents of its output `C` (BLAS's `beta`).
///
/// `Replace` is `beta = 0` and `Add` is `beta = 1`; `Scale(beta)` is the general case.
/// As in BLAS, `Replace` and `Scale(0.0)` do not read `C`, so NaN or garbage in an output
/// that is being overwritten does not leak into the result.
///
/// ```
/// use dagger_params::Accum;
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

impl<T: Copy + PartialEq + From<u8>> Accum<T> {
    /// The BLAS `beta` this stands for.
    pub fn beta(self) -> T {
        match self {
            Self::Replace => T::from(0),
            Self::Add => T::from(1),
            Self::Scale(beta) => beta,
        }
    }

    /// `Scale(0)` as `Replace`, `Scale(1)` as `Add`, anything else unchanged.
    ///
    /// ```
    /// use dagger_params::Accum;
    /// assert_eq!(Accum::Scale(0.0f32).canonical(), Accum::Replace);
    /// assert_eq!(Accum::Scale(1.0f64).canonical(), Accum::Add);
    /// assert_eq!(Accum::Scale(0.5f64).canonical(), Accum::Scale(0.5));
    /// ```
    pub fn canonical(self) -> Self {
        match self {
            Self::Scale(b) if b == T::from(0) => Self::Replace,
            Self::Scale(b) if b == T::from(1) => Self::Add,
            other => other,
        }
    }
}

impl<T> Accum<T> {
    /// The same choice with `beta` converted by `f` (e.g. to the element type of another
    /// backend's kernel).
    ///
    /// ```
    /// use dagger_params::Accum;
    /// assert_eq!(Accum::Scale(0.5f32).map(f64::from), Accum::Scale(0.5f64));
    /// assert_eq!(Accum::<f32>::Add.map(f64::from), Accum::Add);
    /// ```
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Accum<U> {
        match self {
            Self::Replace => Accum::Replace,
            Self::Add => Accum::Add,
            Self::Scale(beta) => Accum::Scale(f(beta)),
        }
    }
}
