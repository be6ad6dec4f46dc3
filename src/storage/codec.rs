//! What a value weighs and how it is written to disk and read back: a registry by type.
//!
//! Numeric vectors and `ndarray` arrays of the primitive number types are registered from
//! the start and spill as raw bytes. Users register their own types with [`register`] (a
//! [`Spill`] implementation), [`register_serde`] (through serde and postcard) or
//! [`register_size`] (counted against the memory limit, never spilled).

use std::any::TypeId;
use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::marker::PhantomData;
use std::sync::{Arc, LazyLock};

use bytemuck::Pod;
use ndarray::{Array, Dimension, IxDyn};
use parking_lot::RwLock;

use crate::value::Value;

/// A type whose values can be weighed, written to disk and read back: what lets a context
/// keep it under a memory limit.
///
/// Implemented for `Vec<T>`, `ndarray::Array<T, D>` (numbers spill as raw bytes), `String`,
/// `bool` and the number types; the vectors and arrays of the primitive number types
/// (`f32`, `f64`, `i8` to `i64`, `u8` to `u64`), the numbers themselves, `bool` and
/// `String` are registered from the start. A type of the user's
/// is registered once with [`register`].
///
/// ```
/// use std::io::{self, Read, Write};
/// use dagger::storage::{self, Spill};
///
/// struct Samples(Vec<f32>);
///
/// impl Spill for Samples {
///     fn bytes(&self) -> u64 {
///         self.0.bytes()
///     }
///     fn write_to(&self, w: &mut dyn Write) -> io::Result<()> {
///         self.0.write_to(w)
///     }
///     fn read_from(r: &mut dyn Read) -> io::Result<Self> {
///         Vec::<f32>::read_from(r).map(Samples)
///     }
/// }
///
/// storage::register::<Samples>();
/// assert!(storage::is_spillable::<Samples>());
/// ```
pub trait Spill: Sized + Send + Sync + 'static {
    /// The bytes the value occupies in memory (what counts against a limit).
    fn bytes(&self) -> u64;
    /// Writes the value.
    fn write_to(&self, w: &mut dyn Write) -> io::Result<()>;
    /// Reads back a value written by [`write_to`](Spill::write_to).
    fn read_from(r: &mut dyn Read) -> io::Result<Self>;
}

fn read_u64(r: &mut dyn Read) -> io::Result<u64> {
    let mut b = [0u8; 8];
    r.read_exact(&mut b)?;
    Ok(u64::from_le_bytes(b))
}

/// A length read from a file, checked against what a `usize` and memory can hold.
fn read_len(r: &mut dyn Read, elem: usize) -> io::Result<usize> {
    let n = read_u64(r)?;
    usize::try_from(n)
        .ok()
        .filter(|n| n.checked_mul(elem.max(1)).is_some())
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("a stored length of {n} elements does not fit in memory"),
            )
        })
}

impl<T: Pod + Send + Sync> Spill for Vec<T> {
    fn bytes(&self) -> u64 {
        (self.capacity() * std::mem::size_of::<T>()) as u64
    }

    fn write_to(&self, w: &mut dyn Write) -> io::Result<()> {
        w.write_all(&(self.len() as u64).to_le_bytes())?;
        w.write_all(bytemuck::cast_slice(self))
    }

    fn read_from(r: &mut dyn Read) -> io::Result<Self> {
        let n = read_len(r, std::mem::size_of::<T>())?;
        let mut v = vec![T::zeroed(); n];
        r.read_exact(bytemuck::cast_slice_mut(&mut v))?;
        Ok(v)
    }
}

impl<T: Pod + Send + Sync, D: Dimension + 'static> Spill for Array<T, D> {
    fn bytes(&self) -> u64 {
        (self.len() * std::mem::size_of::<T>()) as u64
    }

    fn write_to(&self, w: &mut dyn Write) -> io::Result<()> {
        w.write_all(&(self.ndim() as u64).to_le_bytes())?;
        for &d in self.shape() {
            w.write_all(&(d as u64).to_le_bytes())?;
        }
        match self.as_slice() {
            Some(s) => w.write_all(bytemuck::cast_slice(s)),
            None => {
                let s: Vec<T> = self.iter().copied().collect();
                w.write_all(bytemuck::cast_slice(&s))
            }
        }
    }

    fn read_from(r: &mut dyn Read) -> io::Result<Self> {
        let ndim = read_len(r, 8)?;
        if ndim > 64 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("a stored array of {ndim} dimensions"),
            ));
        }
        let mut shape = Vec::with_capacity(ndim);
        for _ in 0..ndim {
            shape.push(read_len(r, 1)?);
        }
        let n = shape
            .iter()
            .try_fold(1usize, |a, &d| a.checked_mul(d))
            .ok_or_else(|| {
                io::Error::new(io::ErrorKind::InvalidData, "a stored shape overflows")
            })?;
        let mut v = vec![T::zeroed(); n];
        r.read_exact(bytemuck::cast_slice_mut(&mut v))?;
        Array::from_shape_vec(IxDyn(&shape), v)
            .and_then(|a| a.into_dimensionality::<D>())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
    }
}

impl Spill for String {
    fn bytes(&self) -> u64 {
        self.capacity() as u64
    }

    fn write_to(&self, w: &mut dyn Write) -> io::Result<()> {
        w.write_all(&(self.len() as u64).to_le_bytes())?;
        w.write_all(self.as_bytes())
    }

    fn read_from(r: &mut dyn Read) -> io::Result<Self> {
        let n = read_len(r, 1)?;
        let mut v = vec![0u8; n];
        r.read_exact(&mut v)?;
        String::from_utf8(v).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
    }
}

macro_rules! scalars {
    ($($t:ty),*) => {$(
        impl Spill for $t {
            fn bytes(&self) -> u64 {
                std::mem::size_of::<$t>() as u64
            }
            fn write_to(&self, w: &mut dyn Write) -> io::Result<()> {
                w.write_all(&self.to_le_bytes())
            }
            fn read_from(r: &mut dyn Read) -> io::Result<Self> {
                let mut b = [0u8; std::mem::size_of::<$t>()];
                r.read_exact(&mut b)?;
                Ok(<$t>::from_le_bytes(b))
            }
        }
    )*};
}

scalars!(f32, f64, i8, i16, i32, i64, i128, u8, u16, u32, u64, u128, isize, usize);

impl Spill for bool {
    fn bytes(&self) -> u64 {
        1
    }
    fn write_to(&self, w: &mut dyn Write) -> io::Result<()> {
        w.write_all(&[*self as u8])
    }
    fn read_from(r: &mut dyn Read) -> io::Result<Self> {
        let mut b = [0u8; 1];
        r.read_exact(&mut b)?;
        Ok(b[0] != 0)
    }
}

/// How the store handles values of one type, with the type erased.
pub(crate) trait Codec: Send + Sync {
    /// The value's size in memory.
    fn bytes(&self, v: &Value) -> u64;
    /// Whether values can be written out at all.
    fn spillable(&self) -> bool;
    fn write(&self, v: &Value, w: &mut dyn Write) -> io::Result<()>;
    fn read(&self, r: &mut dyn Read) -> io::Result<Value>;
}

fn wrong_type(v: &Value) -> io::Error {
    io::Error::other(format!("the codec was asked to write a {}", v.type_name()))
}

struct BySpill<T>(PhantomData<fn() -> T>);

impl<T: Spill> Codec for BySpill<T> {
    fn bytes(&self, v: &Value) -> u64 {
        v.downcast_ref::<T>().map_or(0, T::bytes)
    }
    fn spillable(&self) -> bool {
        true
    }
    fn write(&self, v: &Value, w: &mut dyn Write) -> io::Result<()> {
        v.downcast_ref::<T>()
            .ok_or_else(|| wrong_type(v))?
            .write_to(w)
    }
    fn read(&self, r: &mut dyn Read) -> io::Result<Value> {
        T::read_from(r).map(Value::new)
    }
}

struct BySerde<T> {
    size: fn(&T) -> u64,
}

impl<T> Codec for BySerde<T>
where
    T: serde::Serialize + serde::de::DeserializeOwned + Send + Sync + 'static,
{
    fn bytes(&self, v: &Value) -> u64 {
        v.downcast_ref::<T>().map_or(0, self.size)
    }
    fn spillable(&self) -> bool {
        true
    }
    fn write(&self, v: &Value, w: &mut dyn Write) -> io::Result<()> {
        let x = v.downcast_ref::<T>().ok_or_else(|| wrong_type(v))?;
        let bytes = postcard::to_allocvec(x).map_err(io::Error::other)?;
        w.write_all(&(bytes.len() as u64).to_le_bytes())?;
        w.write_all(&bytes)
    }
    fn read(&self, r: &mut dyn Read) -> io::Result<Value> {
        let n = read_len(r, 1)?;
        let mut bytes = vec![0u8; n];
        r.read_exact(&mut bytes)?;
        postcard::from_bytes::<T>(&bytes)
            .map(Value::new)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
    }
}

struct SizeOnly<T> {
    size: fn(&T) -> u64,
}

impl<T: Send + Sync + 'static> Codec for SizeOnly<T> {
    fn bytes(&self, v: &Value) -> u64 {
        v.downcast_ref::<T>().map_or(0, self.size)
    }
    fn spillable(&self) -> bool {
        false
    }
    fn write(&self, v: &Value, _: &mut dyn Write) -> io::Result<()> {
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            format!("{} is registered with a size only", v.type_name()),
        ))
    }
    fn read(&self, _: &mut dyn Read) -> io::Result<Value> {
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "a type registered with a size only",
        ))
    }
}

/// Codecs by type, and by type name (for files that name their type).
#[derive(Default)]
struct Registry {
    by_id: HashMap<TypeId, Arc<dyn Codec>>,
    by_name: HashMap<&'static str, Arc<dyn Codec>>,
}

impl Registry {
    fn insert<T: 'static>(&mut self, c: Arc<dyn Codec>) {
        self.by_id.insert(TypeId::of::<T>(), c.clone());
        self.by_name.insert(std::any::type_name::<T>(), c);
    }
}

fn builtin<T: Spill>(m: &mut Registry) {
    m.insert::<T>(Arc::new(BySpill::<T>(PhantomData)));
}

macro_rules! numbers {
    ($m:ident: $($t:ty),*) => {$(
        builtin::<Vec<$t>>($m);
        builtin::<ndarray::ArrayD<$t>>($m);
        builtin::<ndarray::Array1<$t>>($m);
        builtin::<ndarray::Array2<$t>>($m);
        builtin::<ndarray::Array3<$t>>($m);
    )*};
}

static REGISTRY: LazyLock<RwLock<Registry>> = LazyLock::new(|| {
    let mut m = Registry::default();
    let r = &mut m;
    numbers!(r: f32, f64, i8, i16, i32, i64, u8, u16, u32, u64);
    builtin::<String>(r);
    builtin::<bool>(r);
    macro_rules! one {
        ($($t:ty),*) => {$( builtin::<$t>(r); )*};
    }
    one!(f32, f64, i8, i16, i32, i64, i128, u8, u16, u32, u64, u128, isize, usize);
    RwLock::new(m)
});

/// Registers `T` as spillable through its [`Spill`] implementation (replacing an earlier
/// registration of `T`).
pub fn register<T: Spill>() {
    REGISTRY
        .write()
        .insert::<T>(Arc::new(BySpill::<T>(PhantomData)));
}

/// Registers `T` as spillable through serde (encoded with postcard), weighed in memory by
/// `size`.
///
/// ```
/// #[derive(serde::Serialize, serde::Deserialize)]
/// struct Table { names: Vec<String> }
///
/// dagger::storage::register_serde::<Table>(|t| t.names.iter().map(|n| n.len() as u64 + 24).sum());
/// assert!(dagger::storage::is_spillable::<Table>());
/// ```
pub fn register_serde<T>(size: fn(&T) -> u64)
where
    T: serde::Serialize + serde::de::DeserializeOwned + Send + Sync + 'static,
{
    REGISTRY.write().insert::<T>(Arc::new(BySerde { size }));
}

/// Registers the size of `T`'s values without a way to write them: they count against the
/// memory limit and always stay in memory.
///
/// ```
/// struct Handle(Vec<u8>);
/// dagger::storage::register_size::<Handle>(|h| h.0.capacity() as u64);
/// assert!(!dagger::storage::is_spillable::<Handle>());
/// ```
pub fn register_size<T: Send + Sync + 'static>(size: fn(&T) -> u64) {
    REGISTRY.write().insert::<T>(Arc::new(SizeOnly { size }));
}

/// Whether values of `T` can be spilled to disk (registered with [`register`] or
/// [`register_serde`], or built in).
pub fn is_spillable<T: 'static>() -> bool {
    REGISTRY
        .read()
        .by_id
        .get(&TypeId::of::<T>())
        .is_some_and(|c| c.spillable())
}

/// The codec of a value's type, if registered.
pub(crate) fn codec_of(v: &Value) -> Option<Arc<dyn Codec>> {
    REGISTRY.read().by_id.get(&v.type_id_of_value()).cloned()
}

/// The codec of the type named `name` (as `std::any::type_name` gives it), if registered.
pub(crate) fn codec_by_name(name: &str) -> Option<Arc<dyn Codec>> {
    REGISTRY.read().by_name.get(name).cloned()
}
