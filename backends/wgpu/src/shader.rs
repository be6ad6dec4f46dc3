//! WGSL validation with naga and reflection of the bindings an entry point uses.

use crate::error::{ShaderError, SourcePosition};

/// Parses and validates WGSL with every naga capability enabled (f64, f16, ...).
///
/// Use [`validate_wgsl_with`] to validate against what one device supports; `Device::compile`
/// does that itself.
///
/// # Errors
///
/// A [`ShaderError`] whose `Display` quotes naga's diagnostic including `wgsl:LINE:COLUMN`.
pub fn validate_wgsl(source: &str) -> Result<naga::Module, ShaderError> {
    validate_wgsl_with(source, naga::valid::Capabilities::all()).map(|(module, _)| module)
}

/// Parses and validates WGSL with the given capabilities, returning the module and naga's
/// analysis of it.
///
/// # Errors
///
/// A [`ShaderError`] whose `Display` quotes naga's diagnostic including `wgsl:LINE:COLUMN`.
pub fn validate_wgsl_with(
    source: &str,
    capabilities: naga::valid::Capabilities,
) -> Result<(naga::Module, naga::valid::ModuleInfo), ShaderError> {
    let module = naga::front::wgsl::parse_str(source).map_err(|e| ShaderError::Parse {
        location: e.location(source).map(position),
        message: e.emit_to_string(source),
        source: e,
    })?;
    let info = naga::valid::Validator::new(naga::valid::ValidationFlags::all(), capabilities)
        .validate(&module)
        .map_err(|e| ShaderError::Validation {
            location: e.location(source).map(position),
            message: e.emit_to_string(source),
            source: Box::new(e),
        })?;
    Ok((module, info))
}

fn position(l: naga::SourceLocation) -> SourcePosition {
    SourcePosition {
        line: l.line_number,
        column: l.line_position,
    }
}

/// How a shader declares one binding of group 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum BindingKind {
    /// `var<storage, read>`: bind a [`crate::GpuBuffer`] with [`crate::Binding::Storage`].
    StorageRead,
    /// `var<storage, read_write>`: bind a [`crate::GpuBuffer`] with
    /// [`crate::Binding::Storage`]; the launch may write it.
    StorageReadWrite,
    /// `var<uniform>`: pass the bytes with [`crate::Binding::Uniform`].
    Uniform,
}

impl BindingKind {
    /// Whether this binding takes a storage buffer.
    pub fn is_storage(self) -> bool {
        matches!(self, Self::StorageRead | Self::StorageReadWrite)
    }

    pub(crate) fn describe(self) -> &'static str {
        match self {
            Self::StorageRead => "a read-only storage buffer",
            Self::StorageReadWrite => "a read-write storage buffer",
            Self::Uniform => "uniform data",
        }
    }
}

/// One binding of group 0 that an entry point uses, found by naga reflection.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct BindingInfo {
    /// `@binding(N)` index.
    pub binding: u32,
    /// Storage (read-only or read-write) or uniform.
    pub kind: BindingKind,
    /// Smallest size in bytes the bound data may have (for a runtime-sized array: the fixed
    /// part plus one element).
    pub min_bytes: u64,
    /// Name of the variable in the shader, if it has one.
    pub name: Option<String>,
}

/// What a compute entry point needs: its bindings in index order and its workgroup size.
#[derive(Clone, Debug)]
pub(crate) struct EntryReflection {
    pub(crate) bindings: Vec<BindingInfo>,
    pub(crate) workgroup_size: [u32; 3],
}

/// Validates `source` (assuming every capability) and lists the group-0 bindings that
/// `entry_point` uses, in binding order — what a caller must bind to launch it.
///
/// ```
/// let src = "@group(0) @binding(0) var<storage, read_write> out: array<u32>;
/// @compute @workgroup_size(64) fn main(@builtin(global_invocation_id) id: vec3<u32>) { out[id.x] = 1u; }";
/// let b = dagger_wgpu::reflect_wgsl(src, "main").unwrap();
/// assert_eq!(b.len(), 1);
/// assert!(b[0].kind.is_storage());
/// ```
pub fn reflect_wgsl(source: &str, entry_point: &str) -> Result<Vec<BindingInfo>, ShaderError> {
    let (module, info) = validate_wgsl_with(source, naga::valid::Capabilities::all())?;
    Ok(reflect(&module, &info, entry_point)?.bindings)
}

/// Reflects the group-0 bindings that `entry_point` actually uses (unused declarations are
/// left out, as wgpu's automatic layout leaves them out).
pub(crate) fn reflect(
    module: &naga::Module,
    info: &naga::valid::ModuleInfo,
    entry_point: &str,
) -> Result<EntryReflection, ShaderError> {
    let computes = || {
        module
            .entry_points
            .iter()
            .enumerate()
            .filter(|(_, ep)| ep.stage == naga::ShaderStage::Compute)
    };
    let (index, ep) = computes()
        .find(|(_, ep)| ep.name == entry_point)
        .ok_or_else(|| ShaderError::MissingEntryPoint {
            entry_point: entry_point.to_owned(),
            available: computes().map(|(_, ep)| ep.name.clone()).collect(),
        })?;
    let uses = info.get_entry_point(index);
    let gctx = module.to_ctx();
    let mut bindings = Vec::new();
    for (handle, var) in module.global_variables.iter() {
        let Some(res) = &var.binding else { continue };
        if uses[handle].is_empty() {
            continue;
        }
        let unsupported = |what: &str| ShaderError::UnsupportedBinding {
            entry_point: entry_point.to_owned(),
            group: res.group,
            binding: res.binding,
            what: what.to_owned(),
        };
        let kind = match var.space {
            naga::AddressSpace::Storage { access } => {
                if access.contains(naga::StorageAccess::STORE) {
                    BindingKind::StorageReadWrite
                } else {
                    BindingKind::StorageRead
                }
            }
            naga::AddressSpace::Uniform => BindingKind::Uniform,
            naga::AddressSpace::Handle => return Err(unsupported("a texture or sampler")),
            other => return Err(unsupported(&format!("in address space {other:?}"))),
        };
        if res.group != 0 {
            return Err(unsupported("outside group 0"));
        }
        let min_bytes = u64::from(module.types[var.ty].inner.size(gctx));
        bindings.push(BindingInfo {
            binding: res.binding,
            kind,
            min_bytes,
            name: var.name.clone(),
        });
    }
    bindings.sort_by_key(|b| b.binding);
    Ok(EntryReflection {
        bindings,
        workgroup_size: ep.workgroup_size,
    })
}
