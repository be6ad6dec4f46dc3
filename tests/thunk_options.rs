//! The options of Dagger.jl's `delayed`, in Rust's idiom: cached thunks recomputed after
//! eviction, arguments passed as chunks (`meta`), and values as a processor moved them in.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use dagger::prelude::*;
use dagger::{
    delayed_cached, delayed_with, MemorySpace, MoveError, Processor, ProcessorKind, TaskCall,
    TaskFailure, TaskInfo, Value,
};

fn ctx(threads: usize) -> Context {
    Context::builder()
        .threads(threads)
        .gpus(false)
        .build()
        .unwrap()
}

#[test]
fn a_cached_thunk_is_reused_and_recomputed_after_eviction() {
    let ctx = ctx(2);
    let (ra, rb) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let (ra2, rb2) = (ra.clone(), rb.clone());
    let a = delayed_cached(
        move |x: u64| {
            ra2.fetch_add(1, Ordering::SeqCst);
            x + 1
        },
        (1u64,),
    );
    let b = delayed_cached(
        move |a: u64, k: String| {
            rb2.fetch_add(1, Ordering::SeqCst);
            format!("{k}{}", a * 10)
        },
        (&a, "v".to_string()),
    );
    for _ in 0..3 {
        assert_eq!(b.collect_on(&ctx).unwrap(), "v20");
    }
    assert_eq!(
        (ra.load(Ordering::SeqCst), rb.load(Ordering::SeqCst)),
        (1, 1)
    );
    // Evicting the last result recomputes it from its inputs, which are still cached.
    assert!(b.evict());
    assert!(!b.is_spawned());
    assert!(!b.evict(), "nothing left to evict");
    assert_eq!(b.collect_on(&ctx).unwrap(), "v20");
    assert_eq!(
        (ra.load(Ordering::SeqCst), rb.load(Ordering::SeqCst)),
        (1, 2)
    );
    // Evicting both recomputes both, inputs first.
    assert!(a.evict() && b.evict());
    assert_eq!(b.compute_on(&ctx).unwrap().collect().unwrap(), "v20");
    assert_eq!(
        (ra.load(Ordering::SeqCst), rb.load(Ordering::SeqCst)),
        (2, 3)
    );
}

#[test]
fn plain_thunks_run_once_and_cannot_be_evicted() {
    let ctx = ctx(1);
    let runs = Arc::new(AtomicUsize::new(0));
    let r = runs.clone();
    let t = delayed(
        move || {
            r.fetch_add(1, Ordering::SeqCst);
            7
        },
        (),
    );
    assert_eq!(t.collect_on(&ctx).unwrap(), 7);
    assert!(!t.evict());
    assert_eq!(t.collect_on(&ctx).unwrap(), 7);
    assert_eq!(runs.load(Ordering::SeqCst), 1);
}

#[test]
fn meta_arguments_arrive_as_chunks() {
    let ctx = ctx(2);
    let big = delayed(|| vec![3u32; 1000], ());
    let len = delayed(
        |c: Chunk<Vec<u32>>| {
            let shared = c.collect_shared().unwrap();
            (shared.len(), c.memory_space().is_host())
        },
        (big.as_chunk(),),
    );
    assert_eq!(len.collect_on(&ctx).unwrap(), (1000, true));
    let t = ctx.spawn(|| 5i64, ());
    let u = ctx.spawn(|c: Chunk<i64>| c.collect().unwrap() * 2, (t.as_chunk(),));
    assert_eq!(u.fetch().unwrap(), 10);
}

#[derive(Clone, Debug, PartialEq)]
struct Boxed(i64);

/// Moves integers in as `Boxed`.
struct Boxer;

impl Processor for Boxer {
    fn kind(&self) -> ProcessorKind {
        ProcessorKind::Custom("boxer")
    }
    fn memory_space(&self) -> MemorySpace {
        MemorySpace::Custom { process: 1, id: 9 }
    }
    fn is_compatible(&self, _task: &TaskInfo) -> bool {
        true
    }
    fn move_in(&self, from: MemorySpace, value: Value) -> Result<Value, MoveError> {
        match value.downcast_ref::<i64>() {
            Some(&x) => Ok(Value::new(Boxed(x))),
            None => Err(MoveError::Unsupported {
                type_name: value.type_name(),
                from,
                to: self.memory_space(),
            }),
        }
    }
    fn execute(&self, call: TaskCall) -> Result<Value, TaskFailure> {
        call.run()
    }
}

#[test]
fn a_thunk_passes_its_value_as_the_processor_moved_it() {
    let ctx = Context::builder()
        .threads(1)
        .gpus(false)
        .processor(Arc::new(Boxer))
        .build()
        .unwrap();
    let boxer = ctx.processors_of_kind(ProcessorKind::Custom("boxer"))[0];
    let x = delayed(|| 20i64, ());
    let y = delayed(|| 22i64, ());
    let s = delayed_with(
        Options::new().scope(Scope::exact(boxer)),
        |a: Boxed, b: Boxed| a.0 + b.0,
        (x.moved::<Boxed>(), y.moved::<Boxed>()),
    );
    assert_eq!(s.collect_on(&ctx).unwrap(), 42);
}
