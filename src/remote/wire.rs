//! How values cross process boundaries: [`Wire`] encodes `serde` types with postcard and
//! numeric vectors as their raw bytes (bytemuck), never element by element; a registry of
//! codecs by type lets type-erased [`Value`]s be encoded and decoded by their type's name,
//! which every rank of one program agrees on. A numeric vector large enough to travel as
//! a body apart ([`Body`]) is sent from its own memory and received into a vector of its
//! own element type, so neither side copies it.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::mem::MaybeUninit;
use std::sync::OnceLock;

use parking_lot::RwLock;
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::transport::{write_bytes, Body, TransportError};
use crate::value::Value;

/// Why a value could not be encoded or decoded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    /// The value's type cannot cross processes: no function registered with
    /// [`remote_fn!`](crate::remote_fn) takes or returns it, and it was not registered with
    /// [`register_type`].
    #[error("values of type `{type_name}` cannot be sent to another process: register the type with dagger::remote::register_type, or use it in a function registered with remote_fn!")]
    Unregistered {
        /// The type.
        type_name: String,
    },
    /// postcard refused the value or its bytes.
    #[error("encoding `{type_name}` failed")]
    Postcard {
        /// The type.
        type_name: &'static str,
        /// What postcard said.
        #[source]
        source: postcard::Error,
    },
    /// Raw bytes of the wrong length for a numeric vector.
    #[error("{len} bytes are not a whole number of `{type_name}` elements")]
    Length {
        /// The vector type.
        type_name: &'static str,
        /// The byte count.
        len: usize,
    },
    /// A value's bytes, sent apart from its message, could not be received.
    #[error("the bytes of a `{type_name}` could not be received")]
    Body {
        /// The type.
        type_name: &'static str,
        /// What the transport said.
        #[source]
        source: TransportError,
    },
    /// A value was not of the type its codec encodes.
    #[error("a codec for `{expected}` was given a `{found}`")]
    Mismatch {
        /// The codec's type.
        expected: &'static str,
        /// The value's type.
        found: &'static str,
    },
}

/// A value that can be sent to another process: any `serde` type.
///
/// Vectors of numbers (`Vec<f32>`, `Vec<f64>`, `Vec<i32>`, `Vec<i64>`, `Vec<u32>`,
/// `Vec<u64>`, `Vec<u8>`, ...) travel as their raw bytes; everything else as postcard.
///
/// ```
/// use dagger::remote::Wire;
/// let v = vec![1.5f64, -2.0, 3.25];
/// let mut bytes = Vec::new();
/// v.encode(&mut bytes)?;
/// assert_eq!(bytes.len(), 24, "raw little-endian f64s, no framing");
/// assert_eq!(Vec::<f64>::decode(&bytes)?, v);
/// let s = ("tile".to_string(), 7u32);
/// let mut b = Vec::new();
/// s.encode(&mut b)?;
/// assert_eq!(<(String, u32)>::decode(&b)?, s);
/// # Ok::<(), dagger::remote::WireError>(())
/// ```
pub trait Wire: Sized + Send + Sync + 'static {
    /// Appends the encoding of `self` to `out`.
    fn encode(&self, out: &mut Vec<u8>) -> Result<(), WireError>;
    /// The value `bytes` encode.
    fn decode(bytes: &[u8]) -> Result<Self, WireError>;
    /// How many bytes the encoding takes, or an estimate.
    fn encoded_len(&self) -> u64;
}

macro_rules! pod_vecs {
    ($m:ident) => {
        $m!(f32);
        $m!(f64);
        $m!(i8);
        $m!(i16);
        $m!(i32);
        $m!(i64);
        $m!(u8);
        $m!(u16);
        $m!(u32);
        $m!(u64);
    };
}

/// The raw bytes of `v` if it is a vector of numbers.
fn pod_bytes<T: 'static>(v: &T) -> Option<&[u8]> {
    let any = v as &dyn Any;
    macro_rules! try_vec {
        ($t:ty) => {
            if let Some(v) = any.downcast_ref::<Vec<$t>>() {
                return Some(bytemuck::cast_slice(v.as_slice()));
            }
        };
    }
    pod_vecs!(try_vec);
    None
}

/// `T` from raw bytes if it is a vector of numbers (`None` if it is not such a type).
fn pod_from_bytes<T: 'static>(bytes: &[u8]) -> Option<Result<T, WireError>> {
    pod_vec_filled(bytes.len(), |buf| {
        write_bytes(buf, bytes);
        Ok(())
    })
}

/// `T`, if it is a vector of numbers, of `len` bytes that `fill` writes into its memory
/// (not initialized before, so it is written once); `None` if `T` is not such a type, and
/// then `fill` is not called. When `fill` returns `Ok` it must have written every byte it
/// was given.
fn pod_vec_filled<T: 'static>(
    len: usize,
    fill: impl FnOnce(&mut [MaybeUninit<u8>]) -> Result<(), WireError>,
) -> Option<Result<T, WireError>> {
    let id = TypeId::of::<T>();
    macro_rules! try_vec {
        ($t:ty) => {
            if id == TypeId::of::<Vec<$t>>() {
                let size = std::mem::size_of::<$t>();
                if len % size != 0 {
                    return Some(Err(WireError::Length {
                        type_name: std::any::type_name::<T>(),
                        len,
                    }));
                }
                let mut v: Vec<$t> = Vec::with_capacity(len / size);
                let spare = &mut v.spare_capacity_mut()[..len / size];
                // SAFETY: the slice covers the `len` bytes of `len / size` elements the
                // vector has room for; `MaybeUninit<u8>` has alignment 1 and asks nothing
                // of the bytes it holds.
                let bytes = unsafe {
                    std::slice::from_raw_parts_mut(
                        spare.as_mut_ptr().cast::<MaybeUninit<u8>>(),
                        len,
                    )
                };
                if let Err(e) = fill(bytes) {
                    return Some(Err(e));
                }
                // SAFETY: `fill` returned `Ok`, so it wrote all `len` bytes of the first
                // `len / size` elements, and any bytes are a valid number of this type.
                unsafe { v.set_len(len / size) };
                let boxed: Box<dyn Any> = Box::new(v);
                return Some(Ok(*boxed.downcast::<T>().expect("the type was checked")));
            }
        };
    }
    pod_vecs!(try_vec);
    None
}

impl<T: Serialize + DeserializeOwned + Send + Sync + 'static> Wire for T {
    fn encode(&self, out: &mut Vec<u8>) -> Result<(), WireError> {
        if let Some(b) = pod_bytes(self) {
            out.extend_from_slice(b);
            return Ok(());
        }
        let buf = std::mem::take(out);
        *out = postcard::to_extend(self, buf).map_err(|source| WireError::Postcard {
            type_name: std::any::type_name::<T>(),
            source,
        })?;
        Ok(())
    }

    fn decode(bytes: &[u8]) -> Result<Self, WireError> {
        if let Some(v) = pod_from_bytes::<T>(bytes) {
            return v;
        }
        postcard::from_bytes(bytes).map_err(|source| WireError::Postcard {
            type_name: std::any::type_name::<T>(),
            source,
        })
    }

    fn encoded_len(&self) -> u64 {
        match pod_bytes(self) {
            Some(b) => b.len() as u64,
            // Walks the value without writing it.
            None => postcard::experimental::serialized_size(self)
                .map_or(std::mem::size_of::<T>() as u64, |n| n as u64),
        }
    }
}

/// Encodes and decodes type-erased values of one type.
#[derive(Clone, Copy)]
pub(crate) struct Codec {
    pub(crate) type_name: &'static str,
    encode: fn(&Value, &mut Vec<u8>) -> Result<(), WireError>,
    decode: fn(&[u8]) -> Result<Value, WireError>,
    len: fn(&Value) -> u64,
    /// The value's memory, when its encoding is exactly that (a numeric vector).
    raw: fn(&Value) -> Option<&[u8]>,
    /// Receives a value whose encoding came as a body.
    recv: fn(Body) -> Result<Value, WireError>,
}

fn raw_of<T: 'static>(v: &Value) -> Option<&[u8]> {
    v.downcast_ref::<T>().and_then(pod_bytes)
}

/// Receives a `T` from `body`: a numeric vector straight into a vector of its element
/// type (written once, never zeroed first), anything else through its encoding.
fn recv_of<T: Wire>(body: Body) -> Result<Value, WireError> {
    let failed = |source| WireError::Body {
        type_name: std::any::type_name::<T>(),
        source,
    };
    let mut body = Some(body);
    let len = body.as_ref().map_or(0, Body::len);
    let pod = pod_vec_filled::<T>(len, |buf| {
        let body = body.take().expect("filled once");
        body.recv_into_uninit(buf).map_err(failed)
    });
    if let Some(v) = pod {
        return v.map(Value::new);
    }
    let body = body.expect("not a numeric vector: the body is still here");
    let bytes = body.recv_vec().map_err(failed)?;
    T::decode(&bytes).map(Value::new)
}

impl Codec {
    pub(crate) fn of<T: Wire>() -> Codec {
        Codec {
            type_name: std::any::type_name::<T>(),
            encode: |v, out| match v.downcast_ref::<T>() {
                Some(x) => x.encode(out),
                None => Err(WireError::Mismatch {
                    expected: std::any::type_name::<T>(),
                    found: v.type_name(),
                }),
            },
            decode: |b| T::decode(b).map(Value::new),
            len: |v| v.downcast_ref::<T>().map_or(0, Wire::encoded_len),
            raw: raw_of::<T>,
            recv: recv_of::<T>,
        }
    }

    pub(crate) fn encode(&self, v: &Value, out: &mut Vec<u8>) -> Result<(), WireError> {
        (self.encode)(v, out)
    }

    pub(crate) fn decode(&self, bytes: &[u8]) -> Result<Value, WireError> {
        (self.decode)(bytes)
    }

    pub(crate) fn len(&self, v: &Value) -> u64 {
        (self.len)(v)
    }
}

#[derive(Default)]
struct Codecs {
    by_id: HashMap<TypeId, Codec>,
    by_name: HashMap<&'static str, Codec>,
}

fn codecs() -> &'static RwLock<Codecs> {
    static C: OnceLock<RwLock<Codecs>> = OnceLock::new();
    C.get_or_init(|| {
        let mut c = Codecs::default();
        macro_rules! builtin {
            ($t:ty) => {
                c.add(TypeId::of::<Vec<$t>>(), Codec::of::<Vec<$t>>());
                c.add(TypeId::of::<$t>(), Codec::of::<$t>());
            };
        }
        pod_vecs!(builtin);
        c.add(TypeId::of::<()>(), Codec::of::<()>());
        c.add(TypeId::of::<bool>(), Codec::of::<bool>());
        c.add(TypeId::of::<String>(), Codec::of::<String>());
        c.add(TypeId::of::<usize>(), Codec::of::<usize>());
        c.add(TypeId::of::<isize>(), Codec::of::<isize>());
        RwLock::new(c)
    })
}

impl Codecs {
    fn add(&mut self, id: TypeId, c: Codec) {
        self.by_id.insert(id, c);
        self.by_name.insert(c.type_name, c);
    }
}

/// Lets values of type `T` cross processes as task inputs, results and kernel parameters.
/// Types that functions registered with [`remote_fn!`](crate::remote_fn) take or return
/// are registered already, as are numbers, their vectors, `bool`, `String` and `()`.
///
/// ```
/// #[derive(serde::Serialize, serde::Deserialize)]
/// struct Params { alpha: f64 }
/// dagger::remote::register_type::<Params>();
/// ```
pub fn register_type<T: Wire>() {
    let id = TypeId::of::<T>();
    if codecs().read().by_id.contains_key(&id) {
        return;
    }
    codecs().write().add(id, Codec::of::<T>());
}

/// Lets values of a plain-old-data type `T` (such as a kernel's parameters) cross
/// processes as their raw bytes.
///
/// ```
/// #[repr(C)]
/// #[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
/// struct Params { a: f32, n: u32 }
/// dagger::remote::register_pod::<Params>();
/// ```
pub fn register_pod<T: bytemuck::Pod + Send + Sync>() {
    let id = TypeId::of::<T>();
    if codecs().read().by_id.contains_key(&id) {
        return;
    }
    let codec = Codec {
        type_name: std::any::type_name::<T>(),
        encode: |v, out| match v.downcast_ref::<T>() {
            Some(x) => {
                out.extend_from_slice(bytemuck::bytes_of(x));
                Ok(())
            }
            None => Err(WireError::Mismatch {
                expected: std::any::type_name::<T>(),
                found: v.type_name(),
            }),
        },
        decode: |b| {
            bytemuck::try_pod_read_unaligned::<T>(b)
                .map(Value::new)
                .map_err(|_| WireError::Length {
                    type_name: std::any::type_name::<T>(),
                    len: b.len(),
                })
        },
        len: |_| std::mem::size_of::<T>() as u64,
        raw: |v| v.downcast_ref::<T>().map(bytemuck::bytes_of),
        recv: |body| {
            let bytes = body.recv_vec().map_err(|source| WireError::Body {
                type_name: std::any::type_name::<T>(),
                source,
            })?;
            bytemuck::try_pod_read_unaligned::<T>(&bytes)
                .map(Value::new)
                .map_err(|_| WireError::Length {
                    type_name: std::any::type_name::<T>(),
                    len: bytes.len(),
                })
        },
    };
    codecs().write().add(id, codec);
}

/// The codec of a type, looked up again after the built-in kernels registered theirs
/// (the values tiles pass one another) when it is missing.
pub(crate) fn codec_of(id: TypeId) -> Option<Codec> {
    let found = codecs().read().by_id.get(&id).copied();
    match found {
        None if crate::kernel::register_builtin() => codecs().read().by_id.get(&id).copied(),
        found => found,
    }
}

/// The codec of a type by name, looked up again after the built-in kernels registered
/// theirs when it is missing.
pub(crate) fn codec_named(name: &str) -> Option<Codec> {
    let found = codecs().read().by_name.get(name).copied();
    match found {
        None if crate::kernel::register_builtin() => codecs().read().by_name.get(name).copied(),
        found => found,
    }
}

/// A type-erased value with its type's name and encoding.
pub(crate) fn encode_value(v: &Value) -> Result<(&'static str, Vec<u8>), WireError> {
    let codec = codec_of(v.type_id_of_value()).ok_or_else(|| WireError::Unregistered {
        type_name: v.type_name().to_owned(),
    })?;
    let mut out = Vec::with_capacity(codec.len(v) as usize + 16);
    codec.encode(v, &mut out)?;
    Ok((codec.type_name, out))
}

/// The type's name and memory of a value whose encoding is exactly its memory.
pub(crate) fn raw_value(v: &Value) -> Option<(&'static str, &[u8])> {
    let codec = codec_of(v.type_id_of_value())?;
    (codec.raw)(v).map(|b| (codec.type_name, b))
}

/// A value of the type named `type_name` received from `body`.
pub(crate) fn recv_value(type_name: &str, body: Body) -> Result<Value, WireError> {
    let codec = codec_named(type_name).ok_or_else(|| WireError::Unregistered {
        type_name: type_name.to_owned(),
    })?;
    (codec.recv)(body)
}

/// Appends the encoding of a type-erased value to `out`; returns its type's name.
pub(crate) fn encode_value_into(v: &Value, out: &mut Vec<u8>) -> Result<&'static str, WireError> {
    let codec = codec_of(v.type_id_of_value()).ok_or_else(|| WireError::Unregistered {
        type_name: v.type_name().to_owned(),
    })?;
    out.reserve(codec.len(v) as usize);
    codec.encode(v, out)?;
    Ok(codec.type_name)
}

/// The value of type `type_name` that `bytes` encode.
pub(crate) fn decode_value(type_name: &str, bytes: &[u8]) -> Result<Value, WireError> {
    codec_named(type_name)
        .ok_or_else(|| WireError::Unregistered {
            type_name: type_name.to_owned(),
        })?
        .decode(bytes)
}

/// Encoded size of a type-erased value, if its type is known (else `None`).
pub(crate) fn encoded_len(v: &Value) -> Option<u64> {
    codec_of(v.type_id_of_value()).map(|c| c.len(v))
}

/// Bytes inside a message, serialized in one piece rather than byte by byte.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Bytes(pub(crate) Vec<u8>);

impl Serialize for Bytes {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for Bytes {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Bytes;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("bytes")
            }
            fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Bytes, E> {
                Ok(Bytes(v.to_vec()))
            }
            fn visit_byte_buf<E: serde::de::Error>(self, v: Vec<u8>) -> Result<Bytes, E> {
                Ok(Bytes(v))
            }
        }
        d.deserialize_byte_buf(V)
    }
}
