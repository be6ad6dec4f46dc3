//! The WGSL of `dagger`'s array block kernels, specialised per element type.
//!
//! Each `shaders/array_*.wgsl` file is a template over `f32` (so that it validates on its
//! own): its line `alias T = f32;` names the element type, and for the elementwise kernels
//! one small function (`op`, `combine`, `unit`) holds the operation. The functions here
//! return a file with both filled in for one kernel:
//!
//! | function | file | entry points |
//! |---|---|---|
//! | [`map_source`], [`map_chain_source`] | `array_map.wgsl` | `main` |
//! | [`zip_source`] | `array_zip.wgsl` | `main` |
//! | [`reduce_source`], [`map_reduce_source`] | `array_reduce.wgsl` | `reduce_all`, `reduce_axis` |
//! | [`copy_source`] | `array_copy.wgsl` | `gather`, `copy_into` |
//! | [`fill_source`] | `array_fill.wgsl` | `fill` |
//! | [`random_source`] | `array_random.wgsl` | `rand`, `randn` |
//!
//! The element type is given by its WGSL name: `"f32"`, `"f64"`, `"i32"` or `"u32"`. An
//! operation body is a WGSL expression in `x` (and `y`) of that type. Every kernel runs 256
//! invocations per workgroup; [`groups`] is the dispatch size for `n` invocations.
//!
//! ```
//! let wgsl = dagger_wgpu::array::zip_source("i32", "max(x, y)");
//! assert!(wgsl.contains("alias T = i32;"));
//! assert!(wgsl.contains("fn op(x: T, y: T) -> T { return max(x, y); }"));
//! dagger_wgpu::validate_wgsl(&wgsl).unwrap();
//! ```

/// `shaders/array_map.wgsl`: `out[i] = op(a[i])`, the template over `f32`.
pub const MAP_WGSL: &str = include_str!("../../../shaders/array_map.wgsl");
/// `shaders/array_zip.wgsl`: `out[i] = op(a[i], b[i])` with broadcast, the template.
pub const ZIP_WGSL: &str = include_str!("../../../shaders/array_zip.wgsl");
/// `shaders/array_reduce.wgsl`: a block reduced whole or along an axis, the template.
pub const REDUCE_WGSL: &str = include_str!("../../../shaders/array_reduce.wgsl");
/// `shaders/array_copy.wgsl`: strided box copies between blocks, the template.
pub const COPY_WGSL: &str = include_str!("../../../shaders/array_copy.wgsl");
/// `shaders/array_fill.wgsl`: a block of copies of one element, the template.
pub const FILL_WGSL: &str = include_str!("../../../shaders/array_fill.wgsl");
/// `shaders/array_random.wgsl`: random numbers by global index, the template.
pub const RANDOM_WGSL: &str = include_str!("../../../shaders/array_random.wgsl");

/// The line of every template that names its element type.
const ALIAS: &str = "alias T = f32;";

/// `template` for element type `scalar`, with the line `old` replaced by `new`.
#[track_caller]
fn specialise(template: &str, scalar: &str, old: &str, new: &str) -> String {
    assert!(
        matches!(scalar, "f32" | "f64" | "i32" | "u32"),
        "array kernels: element type `{scalar}` is not one of f32, f64, i32, u32"
    );
    debug_assert!(template.contains(old), "shader template lacks `{old}`");
    template
        .replacen(ALIAS, &format!("alias T = {scalar};"), 1)
        .replacen(old, new, 1)
}

/// `array_map.wgsl` for `scalar` with `op(x) = body`.
#[track_caller]
pub fn map_source(scalar: &str, body: &str) -> String {
    specialise(
        MAP_WGSL,
        scalar,
        "fn op(x: T) -> T { return x; }",
        &format!("fn op(x: T) -> T {{ return {body}; }}"),
    )
}

/// The body of a function of `x_in` applying `stages` (WGSL expressions in `x`) in order.
fn chain_body(stages: &[&str]) -> String {
    let mut body = String::from("var x = x_in; ");
    for s in stages {
        body.push_str(&format!("x = {s}; "));
    }
    body.push_str("return x;");
    body
}

/// `array_map.wgsl` for `scalar` with `op` the composition of `stages`, WGSL expressions in
/// `x` applied in order (the first to the element): a chain of elementwise maps as one
/// kernel, each intermediate value kept in a register.
///
/// ```
/// let wgsl = dagger_wgpu::array::map_chain_source("f32", &["x * 2.0", "sqrt(x)"]);
/// assert!(wgsl.contains("fn op(x_in: T) -> T { var x = x_in; x = x * 2.0; x = sqrt(x); return x; }"));
/// dagger_wgpu::validate_wgsl(&wgsl).unwrap();
/// ```
#[track_caller]
pub fn map_chain_source(scalar: &str, stages: &[&str]) -> String {
    specialise(
        MAP_WGSL,
        scalar,
        "fn op(x: T) -> T { return x; }",
        &format!("fn op(x_in: T) -> T {{ {} }}", chain_body(stages)),
    )
}

/// `array_reduce.wgsl` for `scalar` with `combine(x, y) = combine` (associative), each
/// element first passed through `stages` as in [`map_chain_source`]: a chain of maps and
/// the reduction at its end in one pass over the block.
///
/// ```
/// let wgsl = dagger_wgpu::array::map_reduce_source("f32", &["x + 1.0"], "x + y");
/// assert!(wgsl.contains("fn load(x_in: T) -> T { var x = x_in; x = x + 1.0; return x; }"));
/// dagger_wgpu::validate_wgsl(&wgsl).unwrap();
/// ```
#[track_caller]
pub fn map_reduce_source(scalar: &str, stages: &[&str], combine: &str) -> String {
    reduce_source(scalar, combine).replacen(
        "fn load(x: T) -> T { return x; }",
        &format!("fn load(x_in: T) -> T {{ {} }}", chain_body(stages)),
        1,
    )
}

/// `array_zip.wgsl` for `scalar` with `op(x, y) = body`.
#[track_caller]
pub fn zip_source(scalar: &str, body: &str) -> String {
    specialise(
        ZIP_WGSL,
        scalar,
        "fn op(x: T, y: T) -> T { return x + y; }",
        &format!("fn op(x: T, y: T) -> T {{ return {body}; }}"),
    )
}

/// `array_reduce.wgsl` for `scalar` with `combine(x, y) = body` (associative).
#[track_caller]
pub fn reduce_source(scalar: &str, body: &str) -> String {
    specialise(
        REDUCE_WGSL,
        scalar,
        "fn combine(x: T, y: T) -> T { return x + y; }",
        &format!("fn combine(x: T, y: T) -> T {{ return {body}; }}"),
    )
}

/// `array_copy.wgsl` for `scalar`.
#[track_caller]
pub fn copy_source(scalar: &str) -> String {
    specialise(COPY_WGSL, scalar, ALIAS, &format!("alias T = {scalar};"))
}

/// `array_fill.wgsl` for `scalar`.
#[track_caller]
pub fn fill_source(scalar: &str) -> String {
    specialise(FILL_WGSL, scalar, ALIAS, &format!("alias T = {scalar};"))
}

/// `array_random.wgsl` for `scalar` (`"f32"` or `"f64"`), whose `unit` turns random words
/// into a uniform number in `[0, 1)` exactly: 24 bits for `f32`, 53 for `f64`.
#[track_caller]
pub fn random_source(scalar: &str) -> String {
    const UNIT_F32: &str =
        "fn unit(r0: u32, r1: u32) -> T { return T(r0 >> 8u) * T(1.0 / 16777216.0); }";
    const UNIT_F64: &str = "fn unit(r0: u32, r1: u32) -> T { return T(r0 >> 6u) * T(1.0 / 67108864.0) + T(r1 >> 5u) * T(1.0 / 9007199254740992.0); }";
    let unit = if scalar == "f64" { UNIT_F64 } else { UNIT_F32 };
    specialise(RANDOM_WGSL, scalar, UNIT_F32, unit)
}

/// The workgroup count covering `n` invocations of 256, wrapped into y past 65535 groups
/// (the per-dimension limit); at least one group.
///
/// ```
/// use dagger_wgpu::array::groups;
/// assert_eq!(groups(0), [1, 1, 1]);
/// assert_eq!(groups(257), [2, 1, 1]);
/// assert_eq!(groups(256 * 65_536), [65_535, 2, 1]);
/// ```
pub fn groups(n: usize) -> [u32; 3] {
    let g = n.div_ceil(256).max(1) as u32;
    let x = g.min(65_535);
    [x, g.div_ceil(x), 1]
}
