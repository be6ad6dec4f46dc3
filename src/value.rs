//! Type-erased values as the scheduler and processors see them.

use std::any::Any;
use std::fmt;
use std::sync::Arc;

/// A shared, type-erased value: a task's input or result as processors see it.
///
/// Users of `spawn` never touch `Value`: their functions receive typed arguments. It appears
/// where the framework is extended — [`Processor::move_in`](crate::Processor::move_in) and
/// [`Processor::execute`](crate::Processor::execute) — and carries the name of its type for
/// error messages.
///
/// ```
/// let v = dagger::Value::new(5_i64);
/// assert_eq!(v.downcast_ref::<i64>(), Some(&5));
/// assert!(v.type_name().contains("i64"));
/// ```
#[derive(Clone)]
pub struct Value {
    inner: Arc<dyn Any + Send + Sync>,
    type_name: &'static str,
}

impl Value {
    /// Wraps a value.
    pub fn new<T: Send + Sync + 'static>(value: T) -> Self {
        Value {
            inner: Arc::new(value),
            type_name: std::any::type_name::<T>(),
        }
    }

    /// Wraps an already shared value without copying it.
    pub fn from_arc<T: Send + Sync + 'static>(value: Arc<T>) -> Self {
        Value {
            inner: value,
            type_name: std::any::type_name::<T>(),
        }
    }

    /// The name of the wrapped type.
    pub fn type_name(&self) -> &'static str {
        self.type_name
    }

    /// Whether the wrapped value has type `T`.
    pub fn is<T: 'static>(&self) -> bool {
        self.inner.is::<T>()
    }

    /// A reference to the wrapped value if it has type `T`.
    pub fn downcast_ref<T: 'static>(&self) -> Option<&T> {
        self.inner.downcast_ref::<T>()
    }

    /// The shared value if it has type `T`, or `self` back.
    pub fn downcast_arc<T: Send + Sync + 'static>(self) -> Result<Arc<T>, Value> {
        let type_name = self.type_name;
        self.inner
            .downcast::<T>()
            .map_err(|inner| Value { inner, type_name })
    }

    /// An address identifying the shared value (equal for clones of one `Value`).
    #[cfg(feature = "wgpu")]
    pub(crate) fn addr(&self) -> usize {
        Arc::as_ptr(&self.inner) as *const () as usize
    }

    /// A weak reference, to tell whether the value is still alive.
    #[cfg(feature = "wgpu")]
    pub(crate) fn downgrade(&self) -> std::sync::Weak<dyn Any + Send + Sync> {
        Arc::downgrade(&self.inner)
    }

    /// The value, mutably, if it has type `T` and this handle is the only one: no clone
    /// and no weak reference (such as a device's copy of it) exists. A task can then update
    /// an input in place and return it as its result, since nothing else can see it.
    pub(crate) fn get_mut<T: 'static>(&mut self) -> Option<&mut T> {
        Arc::get_mut(&mut self.inner)?.downcast_mut::<T>()
    }

    /// Whether another clone of this value is alive (someone besides this handle holds it).
    pub(crate) fn is_shared(&self) -> bool {
        Arc::strong_count(&self.inner) > 1
    }

    /// The `TypeId` of the wrapped value.
    pub fn type_id_of_value(&self) -> std::any::TypeId {
        (*self.inner).type_id()
    }
}

impl fmt::Debug for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Value<{}>", self.type_name)
    }
}
