//! Processors: the tree, and a user-defined processor (Dagger.jl's FakeProc test).

use std::sync::Arc;

use dagger::prelude::*;
use dagger::{
    MemorySpace, MoveError, Processor, ProcessorKind, TaskCall, TaskFailure, TaskInfo, Value,
};

#[derive(Clone, Debug, PartialEq)]
struct FakeVal(i64);

/// Moves integers in as `FakeVal`s and adds 42 to every result.
struct FakeProc;

impl Processor for FakeProc {
    fn kind(&self) -> ProcessorKind {
        ProcessorKind::Custom("fake")
    }
    fn memory_space(&self) -> MemorySpace {
        MemorySpace::Custom { process: 1, id: 7 }
    }
    fn is_compatible(&self, _task: &TaskInfo) -> bool {
        true
    }
    fn move_in(&self, from: MemorySpace, value: Value) -> Result<Value, MoveError> {
        match value.downcast_ref::<i64>() {
            Some(&x) => Ok(Value::new(FakeVal(x))),
            None if value.is::<FakeVal>() => Ok(value),
            None => Err(MoveError::Unsupported {
                type_name: value.type_name(),
                from,
                to: self.memory_space(),
            }),
        }
    }
    fn execute(&self, call: TaskCall) -> Result<Value, TaskFailure> {
        let out = call.run()?;
        let v = out
            .downcast_ref::<FakeVal>()
            .ok_or_else(|| TaskFailure::msg("fake processor expects FakeVal results"))?;
        Ok(Value::new(FakeVal(v.0 + 42)))
    }
}

fn fakesum(a: FakeVal, b: FakeVal, c: FakeVal, d: FakeVal, e: FakeVal) -> FakeVal {
    FakeVal(a.0 + b.0 + c.0 + d.0 + e.0)
}

#[test]
fn fake_processor_sums_to_57() {
    let ctx = Context::builder()
        .threads(2)
        .processor(Arc::new(FakeProc))
        .build()
        .unwrap();
    let fake = ctx.processors_of_kind(ProcessorKind::Custom("fake"))[0];
    let xs: Vec<DTask<i64>> = (1..=5i64).map(|i| ctx.spawn(|x: i64| x, (i,))).collect();
    let s = ctx.spawn_with(
        Options::new().scope(Scope::exact(fake)),
        fakesum,
        (
            xs[0].moved::<FakeVal>(),
            xs[1].moved::<FakeVal>(),
            xs[2].moved::<FakeVal>(),
            xs[3].moved::<FakeVal>(),
            xs[4].moved::<FakeVal>(),
        ),
    );
    assert_eq!(s.fetch().unwrap(), FakeVal(57));
    // Nothing lands on the fake processor by default (it is not default-enabled).
    ctx.enable_logging();
    let t = ctx.spawn(|| 1, ());
    t.wait();
    assert!(ctx.fetch_logs().iter().all(|e| e.processor != fake));
}

#[test]
fn a_moved_type_the_function_does_not_take_is_a_clear_error() {
    let ctx = Context::builder()
        .threads(1)
        .processor(Arc::new(FakeProc))
        .build()
        .unwrap();
    let fake = ctx.processors_of_kind(ProcessorKind::Custom("fake"))[0];
    let x = ctx.spawn(|| 3i64, ());
    // Takes i64, but the fake processor moves i64 in as FakeVal.
    let t = ctx.spawn_with(
        Options::new().scope(Scope::exact(fake)),
        |x: i64| FakeVal(x),
        (&x,),
    );
    let e = t.fetch().unwrap_err().to_string();
    assert!(e.contains("argument 0"), "{e}");
    assert!(e.contains("FakeVal"), "{e}");
    // A value that cannot be moved in is a move error naming the input.
    let s = ctx.spawn(|| "text".to_string(), ());
    let t = ctx.spawn_with(
        Options::new().scope(Scope::exact(fake)),
        |s: String| FakeVal(s.len() as i64),
        (&s,),
    );
    let e = t.fetch().unwrap_err();
    assert!(matches!(e, dagger::TaskError::Move { index: 0, .. }), "{e}");
    assert!(std::error::Error::source(&e)
        .unwrap()
        .to_string()
        .contains("String"));
}

#[test]
fn processor_tree_has_os_root_and_thread_children() {
    let ctx = Context::builder()
        .threads(3)
        .processor(Arc::new(FakeProc))
        .build()
        .unwrap();
    let procs = ctx.processors();
    let os: Vec<_> = procs
        .iter()
        .filter(|p| p.kind == ProcessorKind::Os)
        .collect();
    assert_eq!(os.len(), 1);
    let os = os[0];
    assert_eq!(os.parent, None);
    let threads: Vec<_> = procs
        .iter()
        .filter(|p| p.kind == ProcessorKind::Thread)
        .collect();
    assert_eq!(threads.len(), 3);
    for t in &threads {
        assert_eq!(t.parent, Some(os.id));
        assert!(os.children.contains(&t.id));
        assert!(t.default_enabled);
        assert!(t.memory_space.is_host());
    }
    let fake = procs
        .iter()
        .find(|p| p.kind == ProcessorKind::Custom("fake"))
        .unwrap();
    assert_eq!(fake.parent, Some(os.id));
    assert!(!fake.default_enabled);
    assert_eq!(ctx.num_threads(), 3);
    // The trait object answers for itself.
    let p = ctx.processor(threads[1].id).unwrap();
    assert_eq!(p.kind(), ProcessorKind::Thread);
    assert!(p.default_enabled());
}

#[test]
fn default_threads_is_one_per_core() {
    let ctx = Context::new().unwrap();
    let cores = std::thread::available_parallelism().unwrap().get();
    assert_eq!(ctx.num_threads(), cores);
    assert!(Context::builder().threads(0).build().is_err());
}
