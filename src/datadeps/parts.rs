//! Parts of a cell held at the same time: a task that declared a view of a cell
//! ([`Cell::rows`](super::Cell::rows), [`strict_upper`](super::Cell::strict_upper), ...)
//! gets access to that part only, so writers of parts that do not overlap run together.
//!
//! A cell keeps a table of the parts in use. Taking a part waits while an overlapping part
//! is in use by a writer (or, for a writer, by anyone); the whole value is read under the
//! same table, and written only under the cell's exclusive lock, which waits for every part
//! to be given back.

use std::ops::Range;
use std::sync::Arc;

use parking_lot::lock_api::ArcRwLockReadGuard;
use parking_lot::{Condvar, Mutex, RawRwLock, RwLock};

use super::Part;

/// The parts of one cell in use.
#[derive(Default)]
pub(crate) struct PartTable {
    active: Mutex<Vec<(u64, Part, bool)>>,
    freed: Condvar,
    next: std::sync::atomic::AtomicU64,
}

impl PartTable {
    fn conflicts(active: &[(u64, Part, bool)], part: &Part, write: bool) -> bool {
        active
            .iter()
            .any(|(_, p, w)| (write || *w) && p.overlaps(part))
    }

    /// Registers `part` once no overlapping part conflicts with it. Inside a task, waiting
    /// gives the worker's processor back.
    pub(crate) fn acquire(self: &Arc<Self>, part: Part, write: bool) -> Registration {
        let id = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut g = self.active.lock();
        if Self::conflicts(&g, &part, write) {
            drop(g);
            g = crate::sched::blocking(|| {
                let mut g = self.active.lock();
                while Self::conflicts(&g, &part, write) {
                    self.freed.wait(&mut g);
                }
                g
            });
        }
        g.push((id, part, write));
        Registration {
            table: self.clone(),
            id,
        }
    }
}

/// A part in use; given back when dropped.
pub(crate) struct Registration {
    table: Arc<PartTable>,
    id: u64,
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut g = self.table.active.lock();
        g.retain(|(id, _, _)| *id != self.id);
        drop(g);
        self.table.freed.notify_all();
    }
}

/// A value whose parts datadeps tasks can hold at the same time: seen as a matrix of
/// elements, row `i`, column `j` (a vector is a column: its element `i` is row `i`).
///
/// # Safety
///
/// `shape` must describe the elements `elem_ptr` reaches, and `elem_ptr` must return a
/// pointer to element `(i, j)`, distinct for distinct in-bounds `(i, j)`, without creating a
/// reference to any element (other tasks may be writing other elements meanwhile).
pub unsafe trait Partition: Send + Sync + 'static {
    /// The element type.
    type Elem: Send + Sync;
    /// Rows and columns.
    fn shape(&self) -> (usize, usize);
    /// A pointer to element `(i, j)`, which is in bounds.
    ///
    /// # Safety
    ///
    /// `this` points to a live value; `(i, j)` is within [`shape`](Self::shape).
    unsafe fn elem_ptr(this: *const Self, i: usize, j: usize) -> *mut Self::Elem;
}

// SAFETY: `Vec::as_ptr` creates no reference to the elements (the standard library
// guarantees it for the aliasing model), and element `i` is at offset `i`.
unsafe impl<E: Send + Sync + 'static> Partition for Vec<E> {
    type Elem = E;
    fn shape(&self) -> (usize, usize) {
        (self.len(), 1)
    }
    unsafe fn elem_ptr(this: *const Self, i: usize, _j: usize) -> *mut E {
        // SAFETY: the caller passes a live vector and an index in bounds.
        unsafe { (*this).as_ptr().add(i) as *mut E }
    }
}

// SAFETY: `ArrayBase::as_ptr` reads the array's pointer field and creates no reference to
// the elements; strides place distinct indices at distinct elements in an array that owns
// its data.
unsafe impl<E: Send + Sync + 'static> Partition for ndarray::Array2<E> {
    type Elem = E;
    fn shape(&self) -> (usize, usize) {
        self.dim()
    }
    unsafe fn elem_ptr(this: *const Self, i: usize, j: usize) -> *mut E {
        // SAFETY: the caller passes a live array and an index in bounds.
        unsafe {
            let a = &*this;
            let s = a.strides();
            a.as_ptr()
                .offset(i as isize * s[0] + j as isize * s[1])
                .cast_mut()
        }
    }
}

/// Whether `(i, j)` is in `part`.
fn in_part(part: &Part, i: usize, j: usize) -> bool {
    match part {
        Part::Whole => true,
        Part::Rect { rows, cols } => rows.contains(&i) && cols.contains(&j),
        Part::Lower { strict } => {
            if *strict {
                j < i
            } else {
                j <= i
            }
        }
        Part::Upper { strict } => {
            if *strict {
                j > i
            } else {
                j >= i
            }
        }
    }
}

fn clamp(r: &Range<usize>, n: usize) -> Range<usize> {
    r.start.min(n)..r.end.min(n)
}

/// The elements of `part` in a value of `shape`, row by row.
fn indices(part: &Part, (m, n): (usize, usize)) -> impl Iterator<Item = (usize, usize)> + '_ {
    let (rows, cols) = match part {
        Part::Rect { rows, cols } => (clamp(rows, m), clamp(cols, n)),
        _ => (0..m, 0..n),
    };
    rows.flat_map(move |i| cols.clone().map(move |j| (i, j)))
        .filter(move |&(i, j)| in_part(part, i, j))
}

/// The run of rows of a vector's `part` (a vector is one column).
fn vec_span(part: &Part, len: usize) -> Range<usize> {
    match part {
        Part::Whole => 0..len,
        Part::Rect { rows, cols } if cols.contains(&0) => clamp(rows, len),
        Part::Rect { .. } => 0..0,
        Part::Lower { strict: false } => 0..len,
        Part::Lower { strict: true } => 1.min(len)..len,
        Part::Upper { strict: false } => 0..1.min(len),
        Part::Upper { strict: true } => 0..0,
    }
}

macro_rules! part_common {
    ($name:ident) => {
        impl<T: Partition> $name<T> {
            /// The part of the value this task declared.
            pub fn region(&self) -> &Part {
                &self.region
            }

            /// Rows and columns of the whole value.
            pub fn shape(&self) -> (usize, usize) {
                self.shape
            }

            /// Whether element `(i, j)` is in this part (and in bounds).
            pub fn contains(&self, i: usize, j: usize) -> bool {
                i < self.shape.0 && j < self.shape.1 && in_part(&self.region, i, j)
            }

            /// The elements of this part, row by row.
            pub fn indices(&self) -> impl Iterator<Item = (usize, usize)> + '_ {
                indices(&self.region, self.shape)
            }

            /// Element `(i, j)`, if it is in this part.
            pub fn get(&self, i: usize, j: usize) -> Option<&T::Elem> {
                // SAFETY: the element is in this task's part, which no writer holds.
                self.contains(i, j)
                    .then(|| unsafe { &*T::elem_ptr(self.base(), i, j) })
            }

            fn base(&self) -> *const T {
                ArcRwLockReadGuard::rwlock(&self.guard).data_ptr()
            }
        }

        impl<E: Send + Sync + 'static> std::ops::Deref for $name<Vec<E>> {
            type Target = [E];
            /// The rows of a vector in this part, as a slice (index 0 is the part's first row,
            /// [`offset`](Self::offset) in the vector).
            fn deref(&self) -> &[E] {
                let span = vec_span(&self.region, self.shape.0);
                // SAFETY: the span is this task's part, which no writer holds.
                unsafe {
                    std::slice::from_raw_parts(
                        <Vec<E> as Partition>::elem_ptr(self.base(), span.start, 0),
                        span.len(),
                    )
                }
            }
        }

        impl<E: Send + Sync + 'static> $name<Vec<E>> {
            /// The index in the vector of this part's first element.
            pub fn offset(&self) -> usize {
                vec_span(&self.region, self.shape.0).start
            }
        }
    };
}

/// Read access to a part of a cell inside a datadeps task ([`In`](super::In) of a view):
/// other tasks may write the parts that do not overlap it meanwhile.
///
/// For a vector it derefs to the slice of its rows; for any [`Partition`], elements are
/// read with [`get`](Self::get).
pub struct PartRef<T: Partition> {
    guard: ArcRwLockReadGuard<RawRwLock, T>,
    region: Part,
    shape: (usize, usize),
    _reg: Registration,
}

/// Write access to a part of a cell inside a datadeps task ([`Out`](super::Out) or
/// [`InOut`](super::InOut) of a view): the task reaches its part only, so tasks writing
/// parts that do not overlap run at the same time.
///
/// For a vector it derefs (mutably) to the slice of its rows; for any [`Partition`],
/// elements are reached with [`get_mut`](Self::get_mut) and
/// [`for_each_mut`](Self::for_each_mut).
///
/// ```
/// use dagger::prelude::*;
/// use dagger::{Cell, InOut, PartMut};
/// let ctx = Context::builder().threads(2).build()?;
/// let m = Cell::new(ndarray::Array2::<f64>::zeros((3, 3)));
/// ctx.spawn_datadeps(|r| {
///     r.spawn(|mut u: PartMut<ndarray::Array2<f64>>| u.for_each_mut(|_, _, x| *x = 1.0),
///             (InOut(m.strict_upper()),));
///     r.spawn(|mut l: PartMut<ndarray::Array2<f64>>| {
///         assert!(l.get_mut(0, 1).is_none(), "outside its part");
///         l.for_each_mut(|_, _, x| *x = -1.0)
///     }, (InOut(m.strict_lower()),));
/// })?;
/// assert_eq!(m.get(), ndarray::array![[0., 1., 1.], [-1., 0., 1.], [-1., -1., 0.]]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct PartMut<T: Partition> {
    guard: ArcRwLockReadGuard<RawRwLock, T>,
    region: Part,
    shape: (usize, usize),
    _reg: Registration,
}

part_common!(PartRef);
part_common!(PartMut);

impl<T: Partition> PartRef<T> {
    /// Calls `f` with each element of this part and its row and column.
    pub fn for_each(&self, mut f: impl FnMut(usize, usize, &T::Elem)) {
        for (i, j) in indices(&self.region, self.shape) {
            // SAFETY: the element is in this task's part, which no writer holds.
            f(i, j, unsafe { &*T::elem_ptr(self.base(), i, j) });
        }
    }
}

impl<T: Partition> PartMut<T> {
    /// Element `(i, j)` to change, if it is in this part.
    pub fn get_mut(&mut self, i: usize, j: usize) -> Option<&mut T::Elem> {
        // SAFETY: the element is in this task's part, which only this task holds; `&mut
        // self` keeps the reference unique.
        self.contains(i, j)
            .then(|| unsafe { &mut *T::elem_ptr(self.base(), i, j) })
    }

    /// Calls `f` with each element of this part, to change, and its row and column.
    pub fn for_each_mut(&mut self, mut f: impl FnMut(usize, usize, &mut T::Elem)) {
        let base = self.base();
        for (i, j) in indices(&self.region, self.shape) {
            // SAFETY: as for `get_mut`; each element is visited once.
            f(i, j, unsafe { &mut *T::elem_ptr(base, i, j) });
        }
    }
}

impl<E: Send + Sync + 'static> std::ops::DerefMut for PartMut<Vec<E>> {
    fn deref_mut(&mut self) -> &mut [E] {
        let span = vec_span(&self.region, self.shape.0);
        // SAFETY: the span is this task's part, which only this task holds; `&mut self`
        // keeps the slice unique.
        unsafe {
            std::slice::from_raw_parts_mut(
                <Vec<E> as Partition>::elem_ptr(self.base(), span.start, 0),
                span.len(),
            )
        }
    }
}

/// Takes part `region` of a cell: the cell's shared lock (so the value is not replaced
/// meanwhile), then the part in its table.
fn take<T: Partition>(
    lock: &Arc<RwLock<T>>,
    table: &Arc<PartTable>,
    region: &Part,
    write: bool,
) -> (
    ArcRwLockReadGuard<RawRwLock, T>,
    (usize, usize),
    Registration,
) {
    let guard = match lock.try_read_arc() {
        Some(g) => g,
        None => crate::sched::blocking(|| lock.read_arc()),
    };
    let shape = guard.shape();
    let reg = table.acquire(region.clone(), write);
    (guard, shape, reg)
}

pub(crate) fn part_ref<T: Partition>(
    lock: Arc<RwLock<T>>,
    table: Arc<PartTable>,
    region: Part,
) -> PartRef<T> {
    let (guard, shape, reg) = take(&lock, &table, &region, false);
    PartRef {
        guard,
        region,
        shape,
        _reg: reg,
    }
}

pub(crate) fn part_mut<T: Partition>(
    lock: Arc<RwLock<T>>,
    table: Arc<PartTable>,
    region: Part,
) -> PartMut<T> {
    let (guard, shape, reg) = take(&lock, &table, &region, true);
    PartMut {
        guard,
        region,
        shape,
        _reg: reg,
    }
}
