//! [`Pipeline`]: a compiled compute entry point with its reflected bindings.

use std::fmt;
use std::sync::Arc;

use crate::shader::BindingInfo;

/// A compiled compute pipeline (automatic layout, bind group 0) on one device.
///
/// A cheap `Clone` handle. `Device::compile` caches pipelines by (source, entry point), so
/// compiling the same shader twice returns handles to the same pipeline: `==` compares that
/// identity.
#[derive(Clone)]
pub struct Pipeline {
    pub(crate) inner: Arc<PipelineInner>,
}

pub(crate) struct PipelineInner {
    pub(crate) device_uid: u64,
    pub(crate) device_index: usize,
    pub(crate) entry_point: String,
    pub(crate) pipeline: wgpu::ComputePipeline,
    /// Layout of group 0; `None` when the entry point binds nothing.
    pub(crate) layout: Option<wgpu::BindGroupLayout>,
    pub(crate) bindings: Vec<BindingInfo>,
    pub(crate) workgroup_size: [u32; 3],
}

impl Pipeline {
    /// The group-0 bindings the entry point uses, in binding-index order. `Device::launch`
    /// takes one [`crate::Binding`] per element, in this order.
    pub fn bindings(&self) -> &[BindingInfo] {
        &self.inner.bindings
    }

    /// Name of the entry point.
    pub fn entry_point(&self) -> &str {
        &self.inner.entry_point
    }

    /// `@workgroup_size` of the entry point (unset dimensions are 1).
    pub fn workgroup_size(&self) -> [u32; 3] {
        self.inner.workgroup_size
    }

    /// Index of the device it was compiled for.
    pub fn device_index(&self) -> usize {
        self.inner.device_index
    }
}

impl PartialEq for Pipeline {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }
}

impl Eq for Pipeline {}

impl fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pipeline")
            .field("device", &self.inner.device_index)
            .field("entry_point", &self.inner.entry_point)
            .field("bindings", &self.inner.bindings)
            .field("workgroup_size", &self.inner.workgroup_size)
            .finish()
    }
}
