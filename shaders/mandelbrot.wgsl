// Mandelbrot set: one invocation per pixel, writes RGBA8 packed into a u32
// (red in the lowest byte) per pixel, row-major.
//
// Bindings (group 0): 0 = Params uniform, 1 = pixels (read_write, width * height u32).
// Dispatch ceil(width / 16) x ceil(height / 16) workgroups.

struct Params {
    width: u32,
    height: u32,
    // Point of the complex plane at the image centre.
    center_x: f32,
    center_y: f32,
    // Width of one pixel in the complex plane.
    scale: f32,
    max_iter: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read_write> pixels: array<u32>;

@compute @workgroup_size(16, 16)
fn main(@builtin(global_invocation_id) id: vec3<u32>) {
    if (id.x >= params.width || id.y >= params.height) {
        return;
    }
    let cx = params.center_x + (f32(id.x) - f32(params.width) * 0.5) * params.scale;
    let cy = params.center_y + (f32(id.y) - f32(params.height) * 0.5) * params.scale;
    var zx = 0.0;
    var zy = 0.0;
    var iter = 0u;
    loop {
        if (iter >= params.max_iter || zx * zx + zy * zy > 4.0) {
            break;
        }
        let t = zx * zx - zy * zy + cx;
        zy = 2.0 * zx * zy + cy;
        zx = t;
        iter = iter + 1u;
    }
    var rgba = 0xff000000u;
    if (iter < params.max_iter) {
        let t = f32(iter) / f32(params.max_iter);
        let r = u32(255.0 * clamp(9.0 * (1.0 - t) * t * t * t, 0.0, 1.0));
        let g = u32(255.0 * clamp(15.0 * (1.0 - t) * (1.0 - t) * t * t, 0.0, 1.0));
        let b = u32(255.0 * clamp(8.5 * (1.0 - t) * (1.0 - t) * (1.0 - t) * t, 0.0, 1.0));
        rgba = rgba | r | (g << 8u) | (b << 16u);
    }
    pixels[id.y * params.width + id.x] = rgba;
}
