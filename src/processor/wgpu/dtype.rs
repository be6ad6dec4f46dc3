//! The element types of kernel arrays, with or without a GPU.

/// Element types a GPU buffer holds.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DType {
    /// 32-bit float.
    F32,
    /// 64-bit float (devices with `SHADER_F64` only).
    F64,
    /// 32-bit signed integer.
    I32,
    /// 32-bit unsigned integer.
    U32,
}

impl DType {
    /// Size of one element in bytes.
    pub fn size(self) -> usize {
        match self {
            DType::F64 => 8,
            _ => 4,
        }
    }

    /// The WGSL scalar type.
    pub fn wgsl(self) -> &'static str {
        match self {
            DType::F32 => "f32",
            DType::F64 => "f64",
            DType::I32 => "i32",
            DType::U32 => "u32",
        }
    }
}

impl std::fmt::Display for DType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.wgsl())
    }
}

mod sealed {
    pub trait Sealed {}
}

/// A scalar type GPUs hold: `f32`, `f64`, `i32`, `u32`.
pub trait GpuScalar: bytemuck::Pod + Send + Sync + sealed::Sealed + 'static {
    /// Its element type.
    const DTYPE: DType;
}

macro_rules! scalar {
    ($($t:ty => $d:ident),*) => {$(
        impl sealed::Sealed for $t {}
        impl GpuScalar for $t { const DTYPE: DType = DType::$d; }
    )*};
}
scalar!(f32 => F32, f64 => F64, i32 => I32, u32 => U32);
