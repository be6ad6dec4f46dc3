//! Scopes: which processors a task may run on.
//!
//! A [`Scope`] is a description ("any thread", "GPU 0", "this exact processor", "the union
//! of these") that a context resolves against its processors. Resolution that leaves no
//! processor is an error the user sees at once, never a hang.

use std::fmt;
use std::ops::{Bound, RangeBounds};

use crate::processor::{ProcessorId, ProcessorKind};

/// Where a task may run (Dagger.jl's scopes).
///
/// ```
/// use dagger::prelude::*;
/// let ctx = Context::builder().threads(2).build()?;
/// let t = ctx.spawn_with(Options::new().scope(Scope::thread(1)), || 7, ());
/// assert_eq!(t.fetch()?, 7);
///
/// // Intersections that leave nothing fail at once, naming the scope.
/// let none = Scope::thread(0).constrain(&Scope::thread(1));
/// let err = ctx.spawn_with(Options::new().scope(none), || 7, ()).fetch().unwrap_err();
/// assert!(err.to_string().contains("no processor"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum Scope {
    /// Every processor, including those not enabled by default (Dagger's `AnyScope`).
    Any,
    /// The processors enabled by default (Dagger's `DefaultScope`).
    #[default]
    Default,
    /// Any processor of one process (Dagger's `ProcessScope`).
    Process(u32),
    /// Exactly one processor (Dagger's `ExactScope`).
    Exact(ProcessorId),
    /// Processors of one kind (Dagger's `ProcessorTypeScope`).
    Kind(ProcessorKind),
    /// CPU worker threads by thread index.
    Threads(IndexRange),
    /// GPU processors by GPU index (the order `dagger info` lists them).
    Gpus(IndexRange),
    /// GPU processors of one wgpu backend (`"vulkan"`, `"gl"`, `"metal"`, `"dx12"`).
    Backend(String),
    /// Any processor in any of the scopes (Dagger's `UnionScope`); never empty.
    Union(Vec<Scope>),
    /// Processors in every one of the scopes ([`Scope::constrain`]).
    Intersection(Vec<Scope>),
    /// Any processor of the ranks in the range (rank `r` is process `r + 1`; rank 0 is
    /// the head): Dagger's `worker=` scopes.
    Ranks(IndexRange),
}

/// A half-open range of indices; `end == None` means unbounded.
///
/// Ranges convert without overflow: `..=usize::MAX` is unbounded (every index), and a
/// range that starts after `usize::MAX` is empty.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub struct IndexRange {
    /// First index included.
    pub start: usize,
    /// First index excluded, if bounded.
    pub end: Option<usize>,
}

impl IndexRange {
    /// A range with no index in it.
    const EMPTY: IndexRange = IndexRange {
        start: 0,
        end: Some(0),
    };

    fn from_bounds(r: impl RangeBounds<usize>) -> Self {
        let start = match r.start_bound() {
            Bound::Included(&s) => s,
            Bound::Excluded(&s) => match s.checked_add(1) {
                Some(s) => s,
                // Nothing comes after usize::MAX.
                None => return IndexRange::EMPTY,
            },
            Bound::Unbounded => 0,
        };
        let end = match r.end_bound() {
            // `..=usize::MAX` includes every index, as an unbounded end does.
            Bound::Included(&e) => e.checked_add(1),
            Bound::Excluded(&e) => Some(e),
            Bound::Unbounded => None,
        };
        IndexRange { start, end }
    }

    /// Whether `i` is in the range.
    pub fn contains(&self, i: usize) -> bool {
        i >= self.start && self.end.is_none_or(|e| i < e)
    }
}

impl fmt::Display for IndexRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.end {
            Some(e) if self.start.checked_add(1) == Some(e) => write!(f, "{}", self.start),
            Some(e) => write!(f, "{}..{}", self.start, e),
            None => write!(f, "{}..", self.start),
        }
    }
}

/// An invalid scope.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ScopeError {
    /// `Scope::union` of no scopes.
    #[error("a union of no scopes contains no processor: pass at least one scope to Scope::union")]
    EmptyUnion,
}

impl Scope {
    /// Every processor, default-enabled or not.
    pub fn any() -> Scope {
        Scope::Any
    }

    /// The default-enabled processors (what a task gets without a scope).
    pub fn default_scope() -> Scope {
        Scope::Default
    }

    /// CPU worker thread `i`.
    pub fn thread(i: usize) -> Scope {
        Scope::Threads(IndexRange::from_bounds(i..=i))
    }

    /// CPU worker threads whose index is in `range` (e.g. `Scope::threads(..)`, `0..2`).
    pub fn threads(range: impl RangeBounds<usize>) -> Scope {
        Scope::Threads(IndexRange::from_bounds(range))
    }

    /// CPU worker threads only.
    pub fn cpu() -> Scope {
        Scope::Kind(ProcessorKind::Thread)
    }

    /// GPU `i`, in the order `dagger info` lists them (software devices included).
    pub fn gpu(i: usize) -> Scope {
        Scope::Gpus(IndexRange::from_bounds(i..=i))
    }

    /// GPUs whose index is in `range`.
    pub fn gpus(range: impl RangeBounds<usize>) -> Scope {
        Scope::Gpus(IndexRange::from_bounds(range))
    }

    /// GPUs of one wgpu backend, such as `"vulkan"` or `"gl"`.
    pub fn backend(name: impl Into<String>) -> Scope {
        Scope::Backend(name.into().to_ascii_lowercase())
    }

    /// Exactly the processor `id`.
    pub fn exact(id: ProcessorId) -> Scope {
        Scope::Exact(id)
    }

    /// Any processor of the given kind.
    pub fn kind(kind: ProcessorKind) -> Scope {
        Scope::Kind(kind)
    }

    /// Any processor of process `process` (1 is the local process).
    pub fn process(process: u32) -> Scope {
        Scope::Process(process)
    }

    /// Any processor of rank `rank` of a group of processes (0 is the head; see
    /// [`remote`](crate::remote)). Combine it with threads or GPUs by
    /// [`constrain`](Self::constrain): `Scope::worker(2).constrain(&Scope::thread(1))` is
    /// Dagger's `scope(worker=2, thread=1)`.
    ///
    /// ```
    /// use dagger::prelude::*;
    /// let ctx = Context::builder().threads(1).build()?;
    /// // Every processor but the process itself.
    /// assert_eq!(ctx.resolve_scope(&Scope::worker(0))?.len(), ctx.processors().len() - 1);
    /// assert!(ctx.resolve_scope(&Scope::worker(1)).is_err(), "a single process has rank 0 only");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn worker(rank: usize) -> Scope {
        Scope::Ranks(IndexRange::from_bounds(rank..=rank))
    }

    /// Any processor of the ranks in `range` (e.g. `Scope::workers(1..)`: every rank but
    /// the head).
    pub fn workers(range: impl RangeBounds<usize>) -> Scope {
        Scope::Ranks(IndexRange::from_bounds(range))
    }

    /// Any processor in any of `scopes`. An empty list is an error.
    pub fn union(scopes: impl IntoIterator<Item = Scope>) -> Result<Scope, ScopeError> {
        let scopes: Vec<Scope> = scopes.into_iter().collect();
        match scopes.len() {
            0 => Err(ScopeError::EmptyUnion),
            1 => Ok(scopes.into_iter().next().expect("one scope")),
            _ => Ok(Scope::Union(scopes)),
        }
    }

    /// The union of processor identifiers. An empty list is an error.
    pub fn processors(ids: impl IntoIterator<Item = ProcessorId>) -> Result<Scope, ScopeError> {
        Scope::union(ids.into_iter().map(Scope::Exact))
    }

    /// The processors in both `self` and `other`. Whether the result is empty depends on the
    /// context's processors; a task on an empty scope fails at once, naming the scope.
    pub fn constrain(&self, other: &Scope) -> Scope {
        let mut parts = Vec::new();
        for s in [self, other] {
            match s {
                Scope::Intersection(v) => parts.extend(v.iter().cloned()),
                s => parts.push(s.clone()),
            }
        }
        Scope::Intersection(parts)
    }

    /// Whether the processor described by `p` is in this scope.
    pub(crate) fn contains(&self, p: &ProcView<'_>) -> bool {
        match self {
            Scope::Any => p.kind != ProcessorKind::Os,
            Scope::Default => p.default_enabled,
            Scope::Process(n) => p.id.process() == *n && p.kind != ProcessorKind::Os,
            Scope::Exact(id) => p.id == *id,
            Scope::Kind(k) => p.kind == *k,
            Scope::Threads(r) => p.thread.is_some_and(|t| r.contains(t)),
            Scope::Gpus(r) => p.gpu.is_some_and(|g| r.contains(g)),
            Scope::Backend(b) => p.backend.is_some_and(|pb| pb.eq_ignore_ascii_case(b)),
            Scope::Union(v) => v.iter().any(|s| s.contains(p)),
            Scope::Intersection(v) => v.iter().all(|s| s.contains(p)),
            Scope::Ranks(r) => {
                p.kind != ProcessorKind::Os && r.contains(p.id.process() as usize - 1)
            }
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let list = |f: &mut fmt::Formatter<'_>, v: &[Scope], sep: &str| -> fmt::Result {
            f.write_str("(")?;
            for (i, s) in v.iter().enumerate() {
                if i > 0 {
                    f.write_str(sep)?;
                }
                write!(f, "{s}")?;
            }
            f.write_str(")")
        };
        match self {
            Scope::Any => f.write_str("any"),
            Scope::Default => f.write_str("default"),
            Scope::Process(n) => write!(f, "process({n})"),
            Scope::Exact(id) => write!(f, "exact({id})"),
            Scope::Kind(k) => write!(f, "kind({k})"),
            Scope::Threads(r) => write!(f, "threads({r})"),
            Scope::Gpus(r) => write!(f, "gpus({r})"),
            Scope::Backend(b) => write!(f, "backend({b})"),
            Scope::Union(v) => list(f, v, " ∪ "),
            Scope::Intersection(v) => list(f, v, " ∩ "),
            Scope::Ranks(r) => write!(f, "workers({r})"),
        }
    }
}

/// What a scope needs to know about a processor to decide membership.
pub(crate) struct ProcView<'a> {
    pub(crate) id: ProcessorId,
    pub(crate) kind: ProcessorKind,
    pub(crate) default_enabled: bool,
    pub(crate) thread: Option<usize>,
    pub(crate) gpu: Option<usize>,
    pub(crate) backend: Option<&'a str>,
}

/// A set of processor indices.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub(crate) struct ProcSet {
    words: smallvec::SmallVec<[u64; 2]>,
}

impl ProcSet {
    pub(crate) fn insert(&mut self, i: usize) {
        let w = i / 64;
        if self.words.len() <= w {
            self.words.resize(w + 1, 0);
        }
        self.words[w] |= 1 << (i % 64);
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.words.iter().all(|&w| w == 0)
    }

    pub(crate) fn len(&self) -> usize {
        self.words.iter().map(|w| w.count_ones() as usize).sum()
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = usize> + '_ {
        self.words.iter().enumerate().flat_map(|(wi, &w)| {
            let mut w = w;
            std::iter::from_fn(move || {
                if w == 0 {
                    return None;
                }
                let b = w.trailing_zeros() as usize;
                w &= w - 1;
                Some(wi * 64 + b)
            })
        })
    }
}
