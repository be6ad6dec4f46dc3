//! A picture drawn by a user's WGSL kernel: the Mandelbrot set, written as a PNG.
//!
//! ```sh
//! cargo run --release --example mandelbrot -- mandelbrot.png
//! ```

use std::path::Path;

use dagger::prelude::*;
use dagger::WgslKernel;

/// Matches `struct Params` in shaders/mandelbrot.wgsl.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub struct View {
    /// Image width in pixels.
    pub width: u32,
    /// Image height in pixels.
    pub height: u32,
    /// Real part at the centre.
    pub center_x: f32,
    /// Imaginary part at the centre.
    pub center_y: f32,
    /// Width of a pixel in the complex plane.
    pub scale: f32,
    /// Iterations before a point counts as inside.
    pub max_iter: u32,
}

fn colour(p: &View, x: u32, y: u32) -> u32 {
    let cx = p.center_x + (x as f32 - p.width as f32 * 0.5) * p.scale;
    let cy = p.center_y + (y as f32 - p.height as f32 * 0.5) * p.scale;
    let (mut zx, mut zy, mut iter) = (0.0f32, 0.0f32, 0u32);
    while iter < p.max_iter && zx * zx + zy * zy <= 4.0 {
        let t = zx * zx - zy * zy + cx;
        zy = 2.0 * zx * zy + cy;
        zx = t;
        iter += 1;
    }
    let mut rgba = 0xff00_0000u32;
    if iter < p.max_iter {
        let t = iter as f32 / p.max_iter as f32;
        let c = |v: f32| (255.0 * v.clamp(0.0, 1.0)) as u32;
        rgba |= c(9.0 * (1.0 - t) * t * t * t)
            | c(15.0 * (1.0 - t) * (1.0 - t) * t * t) << 8
            | c(8.5 * (1.0 - t) * (1.0 - t) * (1.0 - t) * t) << 16;
    }
    rgba
}

/// The kernel: shaders/mandelbrot.wgsl, and the same computation on the CPU.
pub fn mandelbrot_kernel() -> Result<WgslKernel<View, u32>, dagger::KernelError> {
    WgslKernel::builder(
        "mandelbrot",
        include_str!("../shaders/mandelbrot.wgsl"),
        "main",
    )
    .inputs([])
    .output(|p: &View, _| (p.width * p.height) as usize)
    .workgroups(|p: &View, _| [p.width.div_ceil(16), p.height.div_ceil(16), 1])
    .cpu(|p: &View, _, out| {
        for (i, px) in out.iter_mut().enumerate() {
            *px = colour(p, i as u32 % p.width, i as u32 / p.width);
        }
    })
    .build()
}

/// The standard view of the whole set.
pub fn default_view(width: u32, height: u32) -> View {
    View {
        width,
        height,
        center_x: -0.6,
        center_y: 0.0,
        scale: 3.0 / width as f32,
        max_iter: 256,
    }
}

/// Renders `view` under `scope` and returns the RGBA pixels.
pub fn render(
    ctx: &Context,
    scope: Scope,
    view: View,
) -> Result<Vec<u32>, Box<dyn std::error::Error>> {
    let kernel = mandelbrot_kernel()?;
    Ok(ctx
        .spawn_kernel_with(Options::new().scope(scope), &kernel, view, [])?
        .fetch()?)
}

/// Writes RGBA pixels (red in the lowest byte) as a PNG.
pub fn write_png(path: &Path, width: u32, height: u32, pixels: &[u32]) -> std::io::Result<()> {
    let file = std::io::BufWriter::new(std::fs::File::create(path)?);
    let mut enc = png::Encoder::new(file, width, height);
    enc.set_color(png::ColorType::Rgba);
    enc.set_depth(png::BitDepth::Eight);
    let mut w = enc.write_header().map_err(std::io::Error::other)?;
    let bytes: Vec<u8> = pixels.iter().flat_map(|p| p.to_le_bytes()).collect();
    w.write_image_data(&bytes).map_err(std::io::Error::other)?;
    w.finish().map_err(std::io::Error::other)
}

/// Prints an error the way a user reads it: its message, then each cause on a line.
#[allow(dead_code)]
fn main() {
    if let Err(e) = try_main() {
        eprintln!("error: {e}");
        let mut cause = e.source();
        while let Some(c) = cause {
            eprintln!("  caused by: {c}");
            cause = c.source();
        }
        std::process::exit(1);
    }
}

#[allow(dead_code)]
fn try_main() -> Result<(), Box<dyn std::error::Error>> {
    let out = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "mandelbrot.png".into());
    let ctx = Context::new()?;
    let view = default_view(1024, 768);
    let has_gpu = ctx
        .processors()
        .iter()
        .any(|p| p.kind == dagger::ProcessorKind::Wgpu);
    let scope = if has_gpu { Scope::gpu(0) } else { Scope::cpu() };
    let pixels = render(&ctx, scope.clone(), view)?;
    write_png(Path::new(&out), view.width, view.height, &pixels)?;
    println!(
        "wrote {out} ({}x{}, rendered on {scope})",
        view.width, view.height
    );
    Ok(())
}
