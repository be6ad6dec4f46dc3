//! Which GEMM shader runs, a choice that exists with or without a device.

/// Which GEMM shader runs; see the `blas` module docs for the tiling.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum GemmKernel {
    /// One invocation per element of `C`, reading `A` and `B` straight from storage.
    /// A reference to check [`GemmKernel::Tiled`] against.
    Naive,
    /// 128x128 tiles of `C` per workgroup, 8x8 register micro-tiles, 8-deep panels of `A`
    /// and `B` in workgroup memory.
    #[default]
    Tiled,
}
