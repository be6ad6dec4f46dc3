//! The WGSL kernels of `shaders/` this crate ships, with their parameter structs.

/// `shaders/saxpy.wgsl`, entry point `main`: `y = a * x + y` over f32.
/// Bindings: 0 = [`SaxpyParams`] uniform, 1 = x (read), 2 = y (read-write).
pub const SAXPY: &str = include_str!("../../../shaders/saxpy.wgsl");

/// `shaders/mandelbrot.wgsl`, entry point `main`: one RGBA8 pixel (packed in a u32, red in
/// the lowest byte) per invocation. Bindings: 0 = [`MandelbrotParams`] uniform, 1 = pixels.
pub const MANDELBROT: &str = include_str!("../../../shaders/mandelbrot.wgsl");

/// `shaders/fill.wgsl`, entry points `fill` (`out[i] = value`) and `increment`
/// (`out[i] += value`) over u32. Bindings: 0 = [`FillParams`] uniform, 1 = out.
pub const FILL: &str = include_str!("../../../shaders/fill.wgsl");

/// Largest workgroup count per dimension every WebGPU device supports.
const PORTABLE_MAX_WORKGROUPS: u32 = 65_535;

/// A grid of `ceil(n / per_group)` workgroups, spread over x and y when it does not fit in x.
/// Kernels then compute `id.x + id.y * num_workgroups.x * per_group`.
pub fn grid_1d(n: u32, per_group: u32) -> [u32; 3] {
    let groups = n.div_ceil(per_group);
    if groups <= PORTABLE_MAX_WORKGROUPS {
        [groups, 1, 1]
    } else {
        [
            PORTABLE_MAX_WORKGROUPS,
            groups.div_ceil(PORTABLE_MAX_WORKGROUPS),
            1,
        ]
    }
}

/// Uniform parameters of [`SAXPY`].
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct SaxpyParams {
    /// The scalar `a`.
    pub a: f32,
    /// Number of elements.
    pub n: u32,
}

impl SaxpyParams {
    /// The dispatch covering `n` elements (2-D above 65535 * 256 elements).
    pub fn workgroups(&self) -> [u32; 3] {
        grid_1d(self.n, 256)
    }
}

/// Uniform parameters of [`MANDELBROT`].
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct MandelbrotParams {
    /// Image width in pixels.
    pub width: u32,
    /// Image height in pixels.
    pub height: u32,
    /// Real part of the point at the image centre.
    pub center_x: f32,
    /// Imaginary part of the point at the image centre.
    pub center_y: f32,
    /// Width of one pixel in the complex plane.
    pub scale: f32,
    /// Iterations before a point counts as inside the set.
    pub max_iter: u32,
}

impl MandelbrotParams {
    /// The dispatch covering the image with 16x16 workgroups.
    pub fn workgroups(&self) -> [u32; 3] {
        [self.width.div_ceil(16), self.height.div_ceil(16), 1]
    }
}

/// Uniform parameters of [`FILL`].
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct FillParams {
    /// Value written (`fill`) or added (`increment`).
    pub value: u32,
    /// Number of elements.
    pub n: u32,
}

impl FillParams {
    /// The dispatch covering `n` elements with 64-wide workgroups.
    pub fn workgroups(&self) -> [u32; 3] {
        [self.n.div_ceil(64), 1, 1]
    }
}
