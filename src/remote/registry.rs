//! Functions registered by name: what another process can be asked to run.
//!
//! [`remote_fn!`](crate::remote_fn) registers a function at link time (every rank runs the
//! same binary, so every rank has the same table); its name is the path of its type, which
//! is what a task spawned with [`Context::spawn_remote`](crate::Context::spawn_remote)
//! carries. Registering a function also registers the codecs of its argument and result
//! types.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use super::wire::{register_type, Wire};
use crate::processor::TaskFailure;
use crate::value::Value;

/// The body of a registered function over host values.
pub(crate) type Call = Arc<dyn Fn(&[Value]) -> Result<Value, TaskFailure> + Send + Sync>;

/// A function registered for other processes: its name and type-erased body.
#[doc(hidden)]
pub struct Registration {
    pub(crate) name: &'static str,
    pub(crate) call: Call,
}

impl Registration {
    /// Registers `f`, which returns its result.
    pub fn new<Args, F: RemoteCallable<Args>>(f: F) -> Registration {
        F::register_types();
        Registration {
            name: std::any::type_name::<F>(),
            call: Arc::new(move |inputs: &[Value]| f.call(inputs)),
        }
    }
}

/// An entry of the link-time table [`remote_fn!`](crate::remote_fn) adds to.
#[doc(hidden)]
pub struct RemoteFnEntry {
    make: fn() -> Registration,
}

impl RemoteFnEntry {
    /// An entry made by `make` when the table is first read.
    pub const fn new(make: fn() -> Registration) -> Self {
        RemoteFnEntry { make }
    }
}

inventory::collect!(RemoteFnEntry);

fn table() -> &'static HashMap<&'static str, Call> {
    static T: OnceLock<HashMap<&'static str, Call>> = OnceLock::new();
    T.get_or_init(|| {
        inventory::iter::<RemoteFnEntry>
            .into_iter()
            .map(|e| {
                let r = (e.make)();
                (r.name, r.call)
            })
            .collect()
    })
}

/// The registered function named `name`, with its name as a static string.
pub(crate) fn lookup(name: &str) -> Option<(&'static str, Call)> {
    table().get_key_value(name).map(|(k, v)| (*k, v.clone()))
}

/// Whether a function of type `F` is registered.
pub(crate) fn is_registered<F: 'static>() -> bool {
    table().contains_key(std::any::type_name::<F>())
}

/// The names of the registered functions, sorted.
///
/// ```
/// fn triple(x: i64) -> i64 { 3 * x }
/// dagger::remote_fn!(triple);
/// assert!(dagger::remote::registered().iter().any(|n| n.ends_with("triple")));
/// ```
pub fn registered() -> Vec<&'static str> {
    let mut v: Vec<&'static str> = table().keys().copied().collect();
    v.sort_unstable();
    v
}

/// A function another process can run: a `fn` (or non-capturing closure) whose arguments
/// and result are [`Wire`] types. Implemented for functions of up to six arguments, and,
/// through [`Fallible`], for those returning `Result`.
pub trait RemoteCallable<Args>: Copy + Send + Sync + 'static {
    /// What the task's handle yields.
    type Output: Wire;
    #[doc(hidden)]
    fn call(&self, inputs: &[Value]) -> Result<Value, TaskFailure>;
    #[doc(hidden)]
    fn register_types();
}

/// A function returning `Result<R, E>`, whose `Err` fails its task: wrap it as
/// `Fallible(f)` in [`remote_fn!`](crate::remote_fn) and
/// [`spawn_remote`](crate::Context::spawn_remote) (see there).
#[derive(Clone, Copy, Debug)]
pub struct Fallible<F>(pub F);

fn arg<A: Wire + Clone>(inputs: &[Value], i: usize) -> Result<A, TaskFailure> {
    let v = inputs.get(i).ok_or_else(|| {
        TaskFailure::msg(format!(
            "a registered function expected argument {i} but got {} arguments",
            inputs.len()
        ))
    })?;
    v.downcast_ref::<A>()
        .cloned()
        .ok_or(TaskFailure::ArgumentType {
            index: i,
            expected: std::any::type_name::<A>(),
            found: v.type_name(),
        })
}

macro_rules! callable {
    ($($a:ident $i:tt),*) => {
        impl<Func, R, $($a),*> RemoteCallable<($($a,)*)> for Func
        where
            Func: Fn($($a),*) -> R + Copy + Send + Sync + 'static,
            R: Wire,
            $($a: Wire + Clone,)*
        {
            type Output = R;
            #[allow(unused_variables)]
            fn call(&self, inputs: &[Value]) -> Result<Value, TaskFailure> {
                Ok(Value::new((self)($(arg::<$a>(inputs, $i)?),*)))
            }
            fn register_types() {
                register_type::<R>();
                $(register_type::<$a>();)*
            }
        }

        impl<Func, R, E, $($a),*> RemoteCallable<(Fallible<()>, $($a,)*)> for Fallible<Func>
        where
            Func: Fn($($a),*) -> Result<R, E> + Copy + Send + Sync + 'static,
            R: Wire,
            E: Into<Box<dyn std::error::Error + Send + Sync>>,
            $($a: Wire + Clone,)*
        {
            type Output = R;
            #[allow(unused_variables)]
            fn call(&self, inputs: &[Value]) -> Result<Value, TaskFailure> {
                match (self.0)($(arg::<$a>(inputs, $i)?),*) {
                    Ok(r) => Ok(Value::new(r)),
                    Err(e) => Err(TaskFailure::Error(e.into())),
                }
            }
            fn register_types() {
                register_type::<R>();
                $(register_type::<$a>();)*
            }
        }
    };
}

callable!();
callable!(A0 0);
callable!(A0 0, A1 1);
callable!(A0 0, A1 1, A2 2);
callable!(A0 0, A1 1, A2 2, A3 3);
callable!(A0 0, A1 1, A2 2, A3 3, A4 4);
callable!(A0 0, A1 1, A2 2, A3 3, A4 4, A5 5);

/// Registers functions by name so that other processes of the same program can run them
/// (see [`Context::spawn_remote`](crate::Context::spawn_remote)). Use it at item level,
/// anywhere in the program: the table is built at link time, so every rank has it before
/// `main` runs. `remote_fn!(Fallible(f))` registers a function returning `Result`, whose
/// `Err` fails its task.
///
/// ```
/// fn add1(x: i64) -> i64 { x + 1 }
/// fn parse(s: String) -> Result<i64, std::num::ParseIntError> { s.parse() }
/// dagger::remote_fn!(add1);
/// dagger::remote_fn!(dagger::remote::Fallible(parse));
/// ```
#[macro_export]
macro_rules! remote_fn {
    ($($f:tt)+) => {
        $crate::__inventory::submit! {
            $crate::remote::RemoteFnEntry::new(|| $crate::remote::Registration::new($($f)+))
        }
    };
}
