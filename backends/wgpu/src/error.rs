//! Error types: [`GpuError`] for everything a device does, [`ShaderError`] for WGSL that does
//! not parse or validate.

use std::fmt;

/// A WGSL shader that naga rejected, with the position naga points at.
///
/// `Display` quotes naga's full diagnostic, which names the file as `wgsl` and gives the
/// position as `wgsl:LINE:COLUMN` under a copy of the offending source line.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ShaderError {
    /// The source is not valid WGSL syntax, or names something that does not exist.
    #[error("WGSL parse error{}: {message}", at(*.location))]
    Parse {
        /// Where naga located the error, if it could.
        location: Option<SourcePosition>,
        /// naga's diagnostic, rendered with the offending source line.
        message: String,
        /// naga's error.
        #[source]
        source: naga::front::wgsl::ParseError,
    },
    /// The source parses but breaks a validation rule (types, address spaces, capabilities).
    #[error("WGSL validation error{}: {message}", at(*.location))]
    Validation {
        /// Where naga located the error, if it could.
        location: Option<SourcePosition>,
        /// naga's diagnostic, rendered with the offending source line.
        message: String,
        /// naga's error.
        #[source]
        source: Box<naga::WithSpan<naga::valid::ValidationError>>,
    },
    /// The module has no compute entry point of the requested name.
    #[error(
        "the shader has no compute entry point named `{entry_point}` (compute entry points: \
         {available:?}); pass one of those names or add `@compute fn {entry_point}`"
    )]
    MissingEntryPoint {
        /// The name that was asked for.
        entry_point: String,
        /// The compute entry points the module does have.
        available: Vec<String>,
    },
    /// The entry point uses a resource this runtime cannot bind.
    #[error(
        "`{entry_point}` uses @group({group}) @binding({binding}), which is {what}; \
         only storage and uniform buffers in @group(0) are supported"
    )]
    UnsupportedBinding {
        /// The entry point.
        entry_point: String,
        /// Bind group of the resource.
        group: u32,
        /// Binding index of the resource.
        binding: u32,
        /// What the resource is.
        what: String,
    },
}

impl ShaderError {
    /// Where naga located the error, if it did.
    pub fn location(&self) -> Option<SourcePosition> {
        match self {
            Self::Parse { location, .. } | Self::Validation { location, .. } => *location,
            _ => None,
        }
    }
}

/// A 1-based line and column in a WGSL source.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SourcePosition {
    /// 1-based line number.
    pub line: u32,
    /// 1-based column, in bytes.
    pub column: u32,
}

impl fmt::Display for SourcePosition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}:{}", self.line, self.column)
    }
}

fn at(location: Option<SourcePosition>) -> String {
    location.map(|l| format!(" at {l}")).unwrap_or_default()
}

/// Everything that can go wrong on a device.
///
/// Every message says what to change. Errors that happen after a launch was enqueued (a
/// captured wgpu validation error, device loss) are delivered to that launch's completion
/// callback; the device stays usable unless the error is [`GpuError::DeviceLost`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GpuError {
    /// The device is gone (driver reset, `destroy`, or an unrecoverable error). Every later
    /// call on it fails with this error; open the devices again to continue.
    #[error("GPU device `{device}` was lost: {reason}; reopen the devices to continue")]
    DeviceLost {
        /// Adapter name.
        device: String,
        /// What the driver or wgpu said.
        reason: String,
    },
    /// The device could not allocate memory.
    #[error(
        "GPU device `{device}` is out of memory allocating {bytes} bytes: {message}; \
         free buffers or use smaller blocks"
    )]
    OutOfMemory {
        /// Adapter name.
        device: String,
        /// Size of the failed allocation.
        bytes: u64,
        /// What wgpu said.
        message: String,
    },
    /// A storage buffer is larger than one shader binding may be on this device.
    #[error(
        "binding {binding} is {bytes} bytes, above this device's max_storage_binding_size of \
         {limit} bytes; split the block so each binding is at most {limit} bytes"
    )]
    BindingTooLarge {
        /// Binding index in group 0.
        binding: u32,
        /// Size of the buffer bound there.
        bytes: u64,
        /// The device limit.
        limit: u64,
    },
    /// Uniform data is larger than the device allows for one uniform binding.
    #[error(
        "uniform binding {binding} is {bytes} bytes, above this device's \
         max_uniform_buffer_binding_size of {limit} bytes; pass large data in a storage buffer"
    )]
    UniformTooLarge {
        /// Binding index in group 0.
        binding: u32,
        /// Size of the uniform data.
        bytes: u64,
        /// The device limit.
        limit: u64,
    },
    /// Uniform data is smaller than the type the shader declares for it.
    #[error(
        "uniform binding {binding} got {bytes} bytes but the shader's type needs {needed}; \
         pass the whole parameter struct (with its padding)"
    )]
    UniformTooSmall {
        /// Binding index in group 0.
        binding: u32,
        /// Size of the data passed.
        bytes: u64,
        /// Size of the shader's type.
        needed: u64,
    },
    /// A single buffer is larger than the device can allocate.
    #[error(
        "a buffer of {bytes} bytes exceeds this device's max_buffer_size of {limit} bytes; \
         split the data into blocks of at most {limit} bytes"
    )]
    BufferTooLarge {
        /// Requested size.
        bytes: u64,
        /// The device limit.
        limit: u64,
    },
    /// A dispatch asked for more workgroups in one dimension than the device allows.
    #[error(
        "dispatch of {count} workgroups in dimension {dimension} exceeds this device's \
         max_compute_workgroups_per_dimension of {limit}; spread the work over more dimensions \
         (e.g. a 2-D grid) or launch several times"
    )]
    TooManyWorkgroups {
        /// 0 = x, 1 = y, 2 = z.
        dimension: usize,
        /// Requested workgroup count.
        count: u32,
        /// The device limit.
        limit: u32,
    },
    /// The number of bindings passed does not match what the entry point uses.
    #[error(
        "`{entry_point}` uses {expected} bindings in group 0 (binding indices {indices:?}) but \
         {got} were passed; pass exactly one `Binding` per used binding, in index order"
    )]
    BindingCount {
        /// Entry point of the pipeline.
        entry_point: String,
        /// Bindings the entry point uses.
        expected: usize,
        /// Their binding indices, in order.
        indices: Vec<u32>,
        /// Bindings passed.
        got: usize,
    },
    /// A binding of the wrong kind (storage buffer vs uniform data) was passed.
    #[error("binding {binding} is declared as {expected} in the shader but {got} was passed")]
    BindingKind {
        /// Binding index in group 0.
        binding: u32,
        /// What the shader declares.
        expected: &'static str,
        /// What was passed.
        got: &'static str,
    },
    /// A buffer or pipeline belongs to another device.
    #[error(
        "{what} belongs to device {owner} but was used on device {device}; move the data with \
         download + upload (or `Device::transfer`) first"
    )]
    WrongDevice {
        /// What was passed (e.g. "binding 2", "the pipeline").
        what: String,
        /// Index of the device that owns it.
        owner: usize,
        /// Index of the device it was used on.
        device: usize,
    },
    /// A download asked for an element type whose size does not divide the buffer's length.
    #[error(
        "a buffer of {bytes} bytes cannot be read as elements of {elem_size} bytes; \
         download it with an element type whose size divides {bytes}"
    )]
    ElementSize {
        /// Logical buffer length.
        bytes: u64,
        /// `size_of::<T>()`.
        elem_size: usize,
    },
    /// A shader uses a feature (`f64`, `f16`) this device was not opened with.
    #[error(
        "the shader needs {missing}, which device {device} (`{name}`) lacks; run it on a device \
         whose DeviceInfo has {missing} set (or use f32)"
    )]
    MissingFeature {
        /// Index of the device.
        device: usize,
        /// Adapter name.
        name: String,
        /// The missing features, e.g. `SHADER_F64`.
        missing: String,
        /// naga's complaint against this device's capabilities.
        #[source]
        source: Box<ShaderError>,
    },
    /// A shader that naga rejected, or that the driver would not compile.
    #[error("shader rejected: {0}")]
    Shader(#[from] ShaderError),
    /// wgpu reported a validation or internal error for an operation (captured with an error
    /// scope). The device keeps working.
    #[error("wgpu rejected {operation}: {message}")]
    Wgpu {
        /// What was being done.
        operation: String,
        /// wgpu's description.
        message: String,
    },
    /// A device could not be opened from its adapter.
    #[error("could not open adapter `{adapter}` ({backend}): {message}")]
    Open {
        /// Adapter name.
        adapter: String,
        /// Backend name.
        backend: String,
        /// Why.
        message: String,
    },
    /// A blocking method was called from a completion callback, which runs on the device's own
    /// server thread and would wait for itself.
    #[error(
        "`{what}` was called on device `{device}` from one of its own completion callbacks, \
         which would wait for itself; send the work to another thread instead"
    )]
    Reentrant {
        /// Adapter name.
        device: String,
        /// The method called.
        what: &'static str,
    },
    /// The device's server thread is gone (it panicked or was shut down).
    #[error("the server thread of device `{device}` stopped; reopen the devices")]
    ServerGone {
        /// Adapter name.
        device: String,
    },
}
