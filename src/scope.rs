//! Scopes: which processors a task may run on.
//!
//! A [`Scope`] is a description ("any thread", "GPU 0", "this exact processor", "the union
//! of these") that a context resolves against its processors. Resolution that leaves no
//! processor is an error the user sees at once, never a hang.

use std::fmt;
use std::ops::{Bound, RangeBounds};
use std::sync::Arc;

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
///
/// Scopes compare by meaning: two scopes are equal when they simplify to the same scope
/// ([`Scope::simplify`]), so a union written in another order, or an intersection with the
/// default scope, equals what it describes.
///
/// ```
/// use dagger::prelude::*;
/// let ctx = Context::builder().threads(2).build()?;
/// let t0 = ctx.processors_of_kind(dagger::ProcessorKind::Thread)[0];
/// assert_eq!(Scope::default().constrain(&Scope::exact(t0)), Scope::exact(t0));
/// assert_eq!(Scope::threads(0..4).constrain(&Scope::threads(2..8)), Scope::threads(2..4));
/// assert!(Scope::thread(1).is_subset(&Scope::cpu()));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug, Default)]
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
    /// No processor: what an intersection of scopes that share none simplifies to.
    Empty,
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

    /// Whether the range holds no index.
    pub fn is_empty(&self) -> bool {
        self.end.is_some_and(|e| e <= self.start)
    }

    fn intersect(&self, o: &IndexRange) -> IndexRange {
        let start = self.start.max(o.start);
        let end = match (self.end, o.end) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, None) => a,
            (None, b) => b,
        };
        let r = IndexRange { start, end };
        if r.is_empty() {
            IndexRange::EMPTY
        } else {
            r
        }
    }

    fn covers(&self, o: &IndexRange) -> bool {
        o.is_empty()
            || (self.start <= o.start
                && match (self.end, o.end) {
                    (None, _) => true,
                    (Some(_), None) => false,
                    (Some(a), Some(b)) => b <= a,
                })
    }

    /// The union of two ranges that overlap or touch.
    fn join(&self, o: &IndexRange) -> Option<IndexRange> {
        let touch = |a: &IndexRange, b: &IndexRange| a.end.is_none_or(|e| b.start <= e);
        let (lo, hi) = if self.start <= o.start {
            (self, o)
        } else {
            (o, self)
        };
        if !touch(lo, hi) {
            return None;
        }
        let end = match (lo.end, hi.end) {
            (Some(a), Some(b)) => Some(a.max(b)),
            _ => None,
        };
        Some(IndexRange {
            start: lo.start,
            end,
        })
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
///
/// ```
/// use dagger::{Scope, ScopeError};
///
/// let err = Scope::union(Vec::new()).unwrap_err();
/// assert_eq!(err, ScopeError::EmptyUnion);
/// assert!(err.to_string().contains("pass at least one scope"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ScopeError {
    /// `Scope::union` of no scopes.
    #[error("a union of no scopes contains no processor: pass at least one scope to Scope::union")]
    EmptyUnion,
    /// A keyed scope ([`ScopeKeys`], [`scope!`](crate::scope!)) with no key.
    #[error("a keyed scope needs at least one key, such as `thread = 0` or `worker = 1`")]
    NoKeys,
    /// A key no one defined.
    #[error(
        "unknown scope key `{key}`: the keys are {known}, and those added with register_scope_key"
    )]
    UnknownKey {
        /// The key.
        key: String,
        /// The built-in keys.
        known: &'static str,
    },
    /// A key given a value of the wrong kind.
    #[error("scope key `{key}` takes {expected}, got {got:?}")]
    KeyValue {
        /// The key.
        key: String,
        /// What it takes.
        expected: &'static str,
        /// What it was given.
        got: KeyValue,
    },
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

    /// The processors in both `self` and `other` (Dagger.jl's `constraint`). Whether the
    /// result is empty may depend on the context's processors; a task on an empty scope
    /// fails at once, naming the scope.
    ///
    /// [`Scope::Any`] and [`Scope::Default`] add no condition to a scope that names
    /// processors: `Scope::default().constrain(&Scope::gpu(0))` is GPU 0 even where that GPU
    /// is not enabled by default, as `Scope::gpu(0)` alone is. The result keeps the form it
    /// was written in (errors show it so); [`simplify`](Self::simplify) reduces it.
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
            // The default scope stands for "no preference": beside a scope that names
            // processors, it adds no condition (see `constrain`).
            Scope::Intersection(v) => {
                let named = v.iter().any(|s| !matches!(s, Scope::Any | Scope::Default));
                v.iter()
                    .all(|s| (named && matches!(s, Scope::Any | Scope::Default)) || s.contains(p))
            }
            Scope::Empty => false,
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
            Scope::Empty => f.write_str("none"),
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

// ----- meaning: simplification, equality, subsets ------------------------------------------

/// The order simplified unions and intersections list their members in.
fn rank(s: &Scope) -> (u8, String) {
    let r = match s {
        Scope::Any => 0,
        Scope::Default => 1,
        Scope::Process(_) => 2,
        Scope::Kind(_) => 3,
        Scope::Backend(_) => 4,
        Scope::Threads(_) => 5,
        Scope::Gpus(_) => 6,
        Scope::Exact(_) => 7,
        Scope::Union(_) => 8,
        Scope::Intersection(_) => 9,
        Scope::Empty => 10,
        Scope::Ranks(_) => 11,
    };
    (r, format!("{s:?}"))
}

/// Whether `a` and `b` are written the same way.
fn same_form(a: &Scope, b: &Scope) -> bool {
    use Scope::*;
    match (a, b) {
        (Any, Any) | (Default, Default) | (Empty, Empty) => true,
        (Process(x), Process(y)) => x == y,
        (Exact(x), Exact(y)) => x == y,
        (Kind(x), Kind(y)) => x == y,
        (Threads(x), Threads(y)) | (Gpus(x), Gpus(y)) | (Ranks(x), Ranks(y)) => x == y,
        (Backend(x), Backend(y)) => x.eq_ignore_ascii_case(y),
        (Union(x), Union(y)) | (Intersection(x), Intersection(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same_form(a, b))
        }
        _ => false,
    }
}

/// Whether every processor in `a` is in `b` in every context, for simplified leaves and
/// simplified composites. False when that cannot be shown without a context.
fn provably_within(a: &Scope, b: &Scope) -> bool {
    use Scope::*;
    match (a, b) {
        (Empty, _) => true,
        (_, Any) => true,
        (Union(v), _) => v.iter().all(|s| provably_within(s, b)),
        (_, Intersection(v)) => v.iter().all(|s| provably_within(a, s)),
        (Intersection(v), _) => v.iter().any(|s| provably_within(s, b)),
        (_, Union(v)) => v.iter().any(|s| provably_within(a, s)),
        _ if same_form(a, b) => true,
        (Threads(x), Threads(y)) | (Gpus(x), Gpus(y)) | (Ranks(x), Ranks(y)) => y.covers(x),
        // Rank r is process r + 1.
        (Process(p), Ranks(r)) => *p >= 1 && r.contains(*p as usize - 1),
        (Exact(id), Ranks(r)) => id.process() >= 1 && r.contains(id.process() as usize - 1),
        (Threads(_), Kind(ProcessorKind::Thread)) => true,
        (Kind(ProcessorKind::Thread) | Threads(_), Default) => true,
        (Gpus(_) | Backend(_), Kind(ProcessorKind::Wgpu)) => true,
        (Exact(id), Process(p)) => id.process() == *p,
        _ => false,
    }
}

/// Whether no processor can be in both `a` and `b`, in any context (simplified leaves).
fn provably_disjoint(a: &Scope, b: &Scope) -> bool {
    use Scope::*;
    let kind_of = |s: &Scope| match s {
        Threads(_) => Some(ProcessorKind::Thread),
        Gpus(_) | Backend(_) => Some(ProcessorKind::Wgpu),
        Kind(k) => Some(*k),
        _ => None,
    };
    if let (Some(x), Some(y)) = (kind_of(a), kind_of(b)) {
        if x != y {
            return true;
        }
    }
    match (a, b) {
        (Empty, _) | (_, Empty) => true,
        (Process(x), Process(y)) => x != y,
        (Exact(x), Exact(y)) => x != y,
        (Exact(id), Process(p)) | (Process(p), Exact(id)) => id.process() != *p,
        (Backend(x), Backend(y)) => !x.eq_ignore_ascii_case(y),
        (Threads(x), Threads(y)) | (Gpus(x), Gpus(y)) | (Ranks(x), Ranks(y)) => {
            x.intersect(y).is_empty()
        }
        (Process(p), Ranks(r)) | (Ranks(r), Process(p)) => *p == 0 || !r.contains(*p as usize - 1),
        _ => false,
    }
}

fn sorted(mut v: Vec<Scope>) -> Vec<Scope> {
    v.sort_by_cached_key(rank);
    v.dedup_by(|a, b| same_form(a, b));
    v
}

impl Scope {
    /// The same set of processors, written in its simplest form: nested unions and
    /// intersections flattened and sorted, overlapping thread and GPU ranges merged or
    /// intersected, members implied by others dropped, `Any` and `Default` dropped beside
    /// scopes that name processors, and intersections that can hold no processor in any
    /// context reduced to [`Scope::Empty`]. Equality of scopes compares simplified forms.
    ///
    /// ```
    /// use dagger::Scope;
    /// let s = Scope::union([Scope::thread(2), Scope::threads(0..2), Scope::any()]).unwrap();
    /// assert_eq!(s.simplify().to_string(), "any");
    /// let s = Scope::union([Scope::thread(2), Scope::threads(0..2)]).unwrap();
    /// assert_eq!(s.simplify().to_string(), "threads(0..3)");
    /// assert_eq!(Scope::cpu().constrain(&Scope::gpu(0)).simplify(), Scope::Empty);
    /// ```
    pub fn simplify(&self) -> Scope {
        match self {
            Scope::Threads(r) if r.is_empty() => Scope::Empty,
            Scope::Gpus(r) if r.is_empty() => Scope::Empty,
            Scope::Backend(b) => Scope::Backend(b.to_ascii_lowercase()),
            Scope::Union(v) => simplify_union(v),
            Scope::Intersection(v) => simplify_intersection(v),
            s => s.clone(),
        }
    }

    /// Whether every processor in `self` is in `other`, whatever the context: decided on
    /// the scopes alone. `false` means it could not be shown — `Scope::exact(id)` is within
    /// `Scope::cpu()` only in contexts where `id` is a CPU thread, so it is not shown here;
    /// ask a context ([`Context::compatible_processors`](crate::Context::compatible_processors))
    /// for the answer there.
    ///
    /// ```
    /// use dagger::Scope;
    /// assert!(Scope::threads(1..3).is_subset(&Scope::threads(0..4)));
    /// assert!(Scope::gpu(0).is_subset(&Scope::any()));
    /// assert!(!Scope::cpu().is_subset(&Scope::thread(0)));
    /// ```
    pub fn is_subset(&self, other: &Scope) -> bool {
        provably_within(&self.simplify(), &other.simplify())
    }

    /// Whether `self` and `other` can share no processor, whatever the context.
    pub fn is_disjoint(&self, other: &Scope) -> bool {
        matches!(self.constrain(other).simplify(), Scope::Empty)
    }
}

fn simplify_union(v: &[Scope]) -> Scope {
    let mut flat = Vec::new();
    let mut stack: Vec<Scope> = v.iter().map(Scope::simplify).collect();
    while let Some(s) = stack.pop() {
        match s {
            Scope::Union(inner) => stack.extend(inner),
            Scope::Empty => {}
            Scope::Any => return Scope::Any,
            s => flat.push(s),
        }
    }
    // Merge thread ranges, and GPU ranges, that overlap or touch.
    let mut merged: Vec<Scope> = Vec::new();
    for s in flat {
        let mut s = s;
        loop {
            let pos = merged.iter().position(|m| match (m, &s) {
                (Scope::Threads(a), Scope::Threads(b)) | (Scope::Gpus(a), Scope::Gpus(b)) => {
                    a.join(b).is_some()
                }
                _ => false,
            });
            let Some(pos) = pos else { break };
            let m = merged.swap_remove(pos);
            s = match (m, s) {
                (Scope::Threads(a), Scope::Threads(b)) => {
                    Scope::Threads(a.join(&b).expect("ranges touch"))
                }
                (Scope::Gpus(a), Scope::Gpus(b)) => Scope::Gpus(a.join(&b).expect("ranges touch")),
                _ => unreachable!("only ranges merge"),
            };
        }
        merged.push(s);
    }
    // Drop members contained in another member.
    let merged = sorted(merged);
    let keep: Vec<Scope> = merged
        .iter()
        .enumerate()
        .filter(|(i, s)| {
            !merged
                .iter()
                .enumerate()
                .any(|(j, o)| j != *i && provably_within(s, o) && !provably_within(o, s))
        })
        .map(|(_, s)| s.clone())
        .collect();
    match keep.len() {
        0 => Scope::Empty,
        1 => keep.into_iter().next().expect("one member"),
        _ => Scope::Union(keep),
    }
}

fn simplify_intersection(v: &[Scope]) -> Scope {
    let mut flat = Vec::new();
    let mut stack: Vec<Scope> = v.iter().map(Scope::simplify).collect();
    while let Some(s) = stack.pop() {
        match s {
            Scope::Intersection(inner) => stack.extend(inner),
            Scope::Empty => return Scope::Empty,
            s => flat.push(s),
        }
    }
    let named = flat
        .iter()
        .any(|s| !matches!(s, Scope::Any | Scope::Default));
    if !named {
        // Only `Any` and `Default`: the default processors are among all of them.
        return if flat.iter().any(|s| matches!(s, Scope::Default)) {
            Scope::Default
        } else {
            Scope::Any
        };
    }
    flat.retain(|s| !matches!(s, Scope::Any | Scope::Default));
    // Intersect thread ranges, and GPU ranges.
    let mut threads: Option<IndexRange> = None;
    let mut gpus: Option<IndexRange> = None;
    let mut rest = Vec::new();
    for s in flat {
        match s {
            Scope::Threads(r) => threads = Some(threads.map_or(r, |t| t.intersect(&r))),
            Scope::Gpus(r) => gpus = Some(gpus.map_or(r, |g| g.intersect(&r))),
            s => rest.push(s),
        }
    }
    for (r, make) in [
        (threads, Scope::Threads as fn(IndexRange) -> Scope),
        (gpus, Scope::Gpus),
    ] {
        if let Some(r) = r {
            if r.is_empty() {
                return Scope::Empty;
            }
            rest.push(make(r));
        }
    }
    let rest = sorted(rest);
    for (i, a) in rest.iter().enumerate() {
        for b in &rest[i + 1..] {
            if provably_disjoint(a, b) {
                return Scope::Empty;
            }
        }
    }
    // Drop members that contain another member.
    let keep: Vec<Scope> = rest
        .iter()
        .enumerate()
        .filter(|(i, s)| {
            !rest.iter().enumerate().any(|(j, o)| {
                j != *i && provably_within(o, s) && (!provably_within(s, o) || j < *i)
            })
        })
        .map(|(_, s)| s.clone())
        .collect();
    match keep.len() {
        0 => Scope::Any,
        1 => keep.into_iter().next().expect("one member"),
        _ => Scope::Intersection(keep),
    }
}

impl PartialEq for Scope {
    fn eq(&self, other: &Scope) -> bool {
        same_form(self, other) || same_form(&self.simplify(), &other.simplify())
    }
}

impl Eq for Scope {}

impl std::hash::Hash for Scope {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        rank(&self.simplify()).hash(state);
    }
}

// ----- keyed scopes -------------------------------------------------------------------------

/// The value of one key of a keyed scope: a number, several numbers, or a name.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyValue {
    /// One number, such as a thread, worker or GPU index.
    Int(i64),
    /// Several numbers.
    Ints(Vec<i64>),
    /// A name, such as a wgpu backend.
    Name(String),
}

macro_rules! key_ints {
    ($($t:ty),*) => {$(
        impl From<$t> for KeyValue {
            fn from(v: $t) -> Self {
                KeyValue::Int(v as i64)
            }
        }
        impl From<Vec<$t>> for KeyValue {
            fn from(v: Vec<$t>) -> Self {
                KeyValue::Ints(v.into_iter().map(|x| x as i64).collect())
            }
        }
        impl<const N: usize> From<[$t; N]> for KeyValue {
            fn from(v: [$t; N]) -> Self {
                KeyValue::Ints(v.into_iter().map(|x| x as i64).collect())
            }
        }
        impl From<std::ops::Range<$t>> for KeyValue {
            fn from(v: std::ops::Range<$t>) -> Self {
                KeyValue::Ints(v.map(|x| x as i64).collect())
            }
        }
    )*};
}
key_ints!(i32, i64, u32, u64, usize);

impl From<&str> for KeyValue {
    fn from(v: &str) -> Self {
        KeyValue::Name(v.to_owned())
    }
}

impl From<String> for KeyValue {
    fn from(v: String) -> Self {
        KeyValue::Name(v)
    }
}

/// Keys and values describing a scope, as Dagger.jl's `scope(worker=1, thread=2)`: built
/// with [`set`](Self::set) or the [`scope!`](crate::scope!) macro, turned into a [`Scope`]
/// by the key of highest precedence (ties go to the key whose name sorts first), which sees
/// all the keys.
///
/// Built-in keys, precedence 0: `thread`/`threads` (CPU threads by index, on the workers
/// given by `worker`/`workers` if any) and `worker`/`workers` (processes). Precedence 1:
/// `gpu`/`gpus` (GPUs by index) and `backend` (GPUs of a wgpu backend, narrowed by `gpu`).
/// Add your own with [`register_scope_key`].
///
/// ```
/// use dagger::{scope, Scope, ScopeKeys};
/// assert_eq!(scope!(thread = 1)?, Scope::thread(1));
/// assert_eq!(scope!(threads = [0, 1, 2])?, Scope::threads(0..3));
/// assert_eq!(scope!(worker = 1, thread = 0)?, Scope::process(1).constrain(&Scope::thread(0)));
/// assert_eq!(ScopeKeys::new().set("gpu", 0).set("thread", 3).build()?, Scope::gpu(0));
/// assert!(scope!(nonsense = 1).is_err());
/// # Ok::<(), dagger::ScopeError>(())
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[must_use]
pub struct ScopeKeys {
    keys: Vec<(String, KeyValue)>,
}

impl ScopeKeys {
    /// No keys.
    pub fn new() -> Self {
        ScopeKeys::default()
    }

    /// Sets `key` to `value` (replacing an earlier value).
    pub fn set(mut self, key: &str, value: impl Into<KeyValue>) -> Self {
        let value = value.into();
        match self.keys.iter_mut().find(|(k, _)| k == key) {
            Some(e) => e.1 = value,
            None => self.keys.push((key.to_owned(), value)),
        }
        self
    }

    /// The value of `key`, if set.
    pub fn get(&self, key: &str) -> Option<&KeyValue> {
        self.keys.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// The indices `key` (or its plural `keys`) names, if set.
    pub fn indices(&self, key: &str, plural: &str) -> Result<Option<Vec<usize>>, ScopeError> {
        let (name, v) = match (self.get(key), self.get(plural)) {
            (Some(v), _) => (key, v),
            (None, Some(v)) => (plural, v),
            (None, None) => return Ok(None),
        };
        let bad = || ScopeError::KeyValue {
            key: name.to_owned(),
            expected: "non-negative indices",
            got: v.clone(),
        };
        let ints = match v {
            KeyValue::Int(i) => vec![*i],
            KeyValue::Ints(v) => v.clone(),
            KeyValue::Name(_) => return Err(bad()),
        };
        ints.into_iter()
            .map(|i| usize::try_from(i).map_err(|_| bad()))
            .collect::<Result<Vec<_>, _>>()
            .map(Some)
    }

    /// The scope the keys describe.
    pub fn build(&self) -> Result<Scope, ScopeError> {
        let mut best: Option<(i32, &str, Arc<dyn ScopeKey>)> = None;
        for (k, _) in &self.keys {
            let key = lookup_key(k).ok_or_else(|| ScopeError::UnknownKey {
                key: k.clone(),
                known: BUILTIN_KEYS,
            })?;
            let p = key.precedence();
            let better = match &best {
                None => true,
                Some((bp, bn, _)) => p > *bp || (p == *bp && k.as_str() < *bn),
            };
            if better {
                best = Some((p, k, key));
            }
        }
        match best {
            Some((_, _, key)) => key.to_scope(self),
            None => Err(ScopeError::NoKeys),
        }
    }
}

/// Builds a [`Scope`] from keys, as Dagger.jl's `scope(worker=1, thread=2)`; returns
/// `Result<Scope, ScopeError>`. See [`ScopeKeys`] for the keys.
///
/// ```
/// use dagger::prelude::*;
/// let ctx = Context::builder().threads(2).build()?;
/// let t = ctx.spawn_with(Options::new().scope(dagger::scope!(thread = 1)?), || 5, ());
/// assert_eq!(t.fetch()?, 5);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[macro_export]
macro_rules! scope {
    () => {
        $crate::ScopeKeys::new().build()
    };
    ($($k:ident = $v:expr),+ $(,)?) => {
        $crate::ScopeKeys::new()$(.set(stringify!($k), $v))+.build()
    };
}

/// A key of keyed scopes (Dagger.jl's `to_scope` and `scope_key_precedence`): registered
/// under a name with [`register_scope_key`].
///
/// ```
/// use dagger::{register_scope_key, scope, Scope, ScopeError, ScopeKey, ScopeKeys};
/// /// `numa = n`: the two CPU threads of NUMA node n.
/// struct Numa;
/// impl ScopeKey for Numa {
///     fn precedence(&self) -> i32 { 2 }
///     fn to_scope(&self, keys: &ScopeKeys) -> Result<Scope, ScopeError> {
///         let n = keys.indices("numa", "numas")?.unwrap_or_default();
///         Scope::union(n.into_iter().map(|n| Scope::threads(2 * n..2 * n + 2)))
///     }
/// }
/// register_scope_key("numa", Numa);
/// assert_eq!(scope!(numa = 1, thread = 0)?, Scope::threads(2..4));
/// # Ok::<(), ScopeError>(())
/// ```
pub trait ScopeKey: Send + Sync + 'static {
    /// Which key decides when several are given: the highest precedence (default 0).
    fn precedence(&self) -> i32 {
        0
    }

    /// The scope of all `keys` (this key among them).
    fn to_scope(&self, keys: &ScopeKeys) -> Result<Scope, ScopeError>;
}

/// Adds (or replaces) the scope key `name`.
pub fn register_scope_key(name: &str, key: impl ScopeKey) {
    user_keys().write().insert(name.to_owned(), Arc::new(key));
}

const BUILTIN_KEYS: &str = "thread, threads, worker, workers, gpu, gpus, backend";

fn user_keys() -> &'static parking_lot::RwLock<std::collections::HashMap<String, Arc<dyn ScopeKey>>>
{
    static KEYS: std::sync::OnceLock<
        parking_lot::RwLock<std::collections::HashMap<String, Arc<dyn ScopeKey>>>,
    > = std::sync::OnceLock::new();
    KEYS.get_or_init(Default::default)
}

fn lookup_key(name: &str) -> Option<Arc<dyn ScopeKey>> {
    if let Some(k) = user_keys().read().get(name) {
        return Some(k.clone());
    }
    Some(match name {
        "thread" | "threads" => Arc::new(Builtin::Thread),
        "worker" | "workers" => Arc::new(Builtin::Worker),
        "gpu" | "gpus" => Arc::new(Builtin::Gpu),
        "backend" => Arc::new(Builtin::Backend),
        _ => return None,
    })
}

enum Builtin {
    Thread,
    Worker,
    Gpu,
    Backend,
}

fn union_of(ids: Vec<usize>, one: fn(usize) -> Scope, key: &str) -> Result<Scope, ScopeError> {
    Scope::union(ids.into_iter().map(one))
        .map(|s| s.simplify())
        .map_err(|_| ScopeError::KeyValue {
            key: key.to_owned(),
            expected: "at least one index",
            got: KeyValue::Ints(Vec::new()),
        })
}

impl ScopeKey for Builtin {
    fn precedence(&self) -> i32 {
        match self {
            Builtin::Thread | Builtin::Worker => 0,
            Builtin::Gpu | Builtin::Backend => 1,
        }
    }

    fn to_scope(&self, keys: &ScopeKeys) -> Result<Scope, ScopeError> {
        let workers = match keys.indices("worker", "workers")? {
            Some(w) => Some(union_of(w, |w| Scope::process(w as u32), "worker")?),
            None => None,
        };
        let base = match self {
            Builtin::Worker => return workers.ok_or(ScopeError::NoKeys),
            Builtin::Thread => union_of(
                keys.indices("thread", "threads")?.unwrap_or_default(),
                Scope::thread,
                "thread",
            )?,
            Builtin::Gpu => union_of(
                keys.indices("gpu", "gpus")?.unwrap_or_default(),
                Scope::gpu,
                "gpu",
            )?,
            Builtin::Backend => {
                let b = match keys.get("backend") {
                    Some(KeyValue::Name(n)) => Scope::backend(n.as_str()),
                    v => {
                        return Err(ScopeError::KeyValue {
                            key: "backend".into(),
                            expected: "a backend name such as \"vulkan\"",
                            got: v.cloned().unwrap_or(KeyValue::Ints(Vec::new())),
                        })
                    }
                };
                match keys.indices("gpu", "gpus")? {
                    Some(g) => b.constrain(&union_of(g, Scope::gpu, "gpu")?),
                    None => b,
                }
            }
        };
        Ok(match workers {
            Some(w) => w.constrain(&base),
            None => base,
        })
    }
}
