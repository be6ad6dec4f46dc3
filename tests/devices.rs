//! The device interface from outside the crate: a new kind of device, defined with the
//! public API alone, runs the framework's own kernels in a memory space of its own.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use dagger::prelude::*;
use dagger::{
    Backend, Completion, MemorySpace, MoveError, Processor, ProcessorId, ProcessorKind, TaskCall,
    TaskError, TaskFailure, TaskInfo, Value,
};
use ndarray::Array2;

/// A value in the simulated device's memory: the host value it stands for, wrapped so that
/// nothing but the device can read it.
struct DeviceBuf {
    owner: u32,
    host: Value,
}

/// A device with its own memory space that finishes its work later, on a thread of its own,
/// running the CPU implementations of kernels over the values it holds.
struct SimDevice {
    id: u32,
    moved_in: AtomicUsize,
    moved_out: AtomicUsize,
    launched: AtomicUsize,
    /// Accept values from other devices' memory spaces directly.
    refuse_foreign: bool,
    /// What `move_in` saw as the source of each value.
    sources: parking_lot::Mutex<Vec<MemorySpace>>,
}

impl SimDevice {
    fn new(id: u32) -> Arc<Self> {
        Self::with(id, false)
    }

    fn with(id: u32, refuse_foreign: bool) -> Arc<Self> {
        Arc::new(SimDevice {
            id,
            moved_in: AtomicUsize::new(0),
            moved_out: AtomicUsize::new(0),
            launched: AtomicUsize::new(0),
            refuse_foreign,
            sources: parking_lot::Mutex::new(Vec::new()),
        })
    }

    fn space(&self) -> MemorySpace {
        MemorySpace::Custom {
            process: 1,
            id: self.id,
        }
    }
}

impl Processor for SimDevice {
    fn kind(&self) -> ProcessorKind {
        ProcessorKind::Custom("sim")
    }

    fn description(&self) -> String {
        format!("simulated device {}", self.id)
    }

    fn memory_space(&self) -> MemorySpace {
        self.space()
    }

    fn is_compatible(&self, task: &TaskInfo) -> bool {
        // Kernels it has an implementation for: it runs CPU implementations.
        task.has_implementation(&Backend::CPU)
    }

    fn move_in(&self, from: MemorySpace, value: Value) -> Result<Value, MoveError> {
        self.sources.lock().push(from);
        if from == self.space() {
            return Ok(value);
        }
        if !from.is_host() && self.refuse_foreign {
            return Err(MoveError::Unsupported {
                type_name: value.type_name(),
                from,
                to: self.space(),
            });
        }
        if !from.is_host() {
            // Another simulated device: read its buffer directly (a peer-to-peer copy).
            if let Some(buf) = value.downcast_ref::<DeviceBuf>() {
                self.moved_in.fetch_add(1, Ordering::SeqCst);
                return Ok(Value::new(DeviceBuf {
                    owner: self.id,
                    host: buf.host.clone(),
                }));
            }
        }
        self.moved_in.fetch_add(1, Ordering::SeqCst);
        Ok(Value::new(DeviceBuf {
            owner: self.id,
            host: value,
        }))
    }

    fn move_out(&self, value: Value) -> Result<Value, MoveError> {
        let buf = value
            .downcast_ref::<DeviceBuf>()
            .ok_or(MoveError::Unsupported {
                type_name: value.type_name(),
                from: self.space(),
                to: MemorySpace::LOCAL_HOST,
            })?;
        assert_eq!(buf.owner, self.id, "moved out by the device that holds it");
        self.moved_out.fetch_add(1, Ordering::SeqCst);
        Ok(buf.host.clone())
    }

    fn launch(&self, call: TaskCall, done: Completion) {
        self.launched.fetch_add(1, Ordering::SeqCst);
        let id = self.id;
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(1));
            let mut host = Vec::new();
            for v in call.inputs() {
                match v.downcast_ref::<DeviceBuf>() {
                    Some(b) if b.owner == id => host.push(b.host.clone()),
                    _ => {
                        return done.complete(Err(TaskFailure::msg(format!(
                            "an input is a `{}`, not a buffer of device {id}",
                            v.type_name()
                        ))))
                    }
                }
            }
            let out = call
                .run_with(&host)
                .map(|v| Value::new(DeviceBuf { owner: id, host: v }));
            done.complete(out);
        });
    }

    fn prior_gflops(&self) -> f64 {
        // Much faster than a CPU thread, so placement sends it work before measuring.
        1e6
    }
}

fn sim_id(ctx: &Context, n: usize) -> ProcessorId {
    ctx.processors_of_kind(ProcessorKind::Custom("sim"))[n]
}

#[test]
fn a_new_device_kind_runs_a_darray_map_and_gemm_tiles_in_its_own_memory() {
    // Bounded: a lost completion or move fails the test instead of hanging it.
    common::within(
        60,
        "a new device kind runs a darray map and gemm tiles in its own memory",
        || {
            let dev = SimDevice::new(7);
            let ctx = Context::builder()
                .threads(2)
                .gpus(false)
                .processor(dev.clone())
                .build()
                .unwrap();
            let sim = sim_id(&ctx, 0);
            let host = Array2::from_shape_fn((6, 5), |(i, j)| (i * 5 + j) as f32 - 7.0);
            let other = Array2::from_shape_fn((5, 4), |(i, j)| (i as f32 + 1.0) / (j as f32 + 2.0));
            let a = DArray::distribute(&ctx, &host, Blocks::new([3, 5])).unwrap();
            let b = DArray::distribute(&ctx, &other, Blocks::new([5, 4])).unwrap();
            let on_dev = Options::new().scope(Scope::exact(sim));

            let mapped = with_options(on_dev.clone(), || a.map_wgsl("x * 2.0 + 1.0")).unwrap();
            let got = mapped.collect2().unwrap();
            assert_eq!(got, host.mapv(|x| x * 2.0 + 1.0));
            let after_map = (
                dev.moved_in.load(Ordering::SeqCst),
                dev.moved_out.load(Ordering::SeqCst),
                dev.launched.load(Ordering::SeqCst),
            );
            assert_eq!(after_map.2, 2, "one map task per block ran on the device");
            assert_eq!(after_map.0, 2, "each block was moved in once");
            assert_eq!(
                after_map.1, 2,
                "each result block was moved out once, to collect it"
            );

            let c = with_options(on_dev, || a.matmul(&b)).unwrap();
            let got = c.collect2().unwrap();
            let want = host.dot(&other);
            for (g, w) in got.iter().zip(want.iter()) {
                assert!((g - w).abs() <= 1e-4 * w.abs().max(1.0), "{g} vs {w}");
            }
            assert!(
                dev.launched.load(Ordering::SeqCst) >= after_map.2 + 2,
                "GEMM tiles ran on the device"
            );
            assert!(dev.moved_in.load(Ordering::SeqCst) > after_map.0);
            assert!(dev.moved_out.load(Ordering::SeqCst) > after_map.1);
            // Everything the device was handed came from host memory or from itself.
            assert!(dev
                .sources
                .lock()
                .iter()
                .all(|s| s.is_host() || *s == dev.space()));

            // The context keeps working on its threads.
            assert_eq!(ctx.spawn(|| 41 + 1, ()).fetch().unwrap(), 42);
        },
    );
}

#[test]
fn placement_sends_kernels_to_a_faster_device_and_closures_to_threads() {
    // Bounded: a lost completion or move fails the test instead of hanging it.
    common::within(
        60,
        "placement sends kernels to a faster device and closures to threads",
        || {
            let dev = SimDevice::new(3);
            let ctx = Context::builder()
                .threads(2)
                .gpus(false)
                .processor(dev.clone())
                .build()
                .unwrap();
            let sim = sim_id(&ctx, 0);
            let host = Array2::from_shape_fn((8, 8), |(i, j)| (i + j) as f32);
            let a = DArray::distribute(&ctx, &host, Blocks::new([4, 4])).unwrap();
            ctx.enable_logging();
            let either = Scope::union([Scope::cpu(), Scope::exact(sim)]).unwrap();
            let b = with_options(Options::new().scope(either.clone()), || {
                a.map_wgsl("x + 1.0")
            })
            .unwrap();
            assert_eq!(b.collect2().unwrap(), host.mapv(|x| x + 1.0));
            let on_sim = ctx
                .fetch_logs()
                .iter()
                .filter(|e| e.kind == dagger::EventKind::Task && e.processor == sim)
                .count();
            assert!(on_sim >= 1, "the cost model placed work on the device");
            // A closure is not something the device runs: under the same scope it runs on a thread.
            let t = ctx.spawn_with(Options::new().scope(either), || 5, ());
            assert_eq!(t.fetch().unwrap(), 5);
            assert_eq!(dev.launched.load(Ordering::SeqCst), on_sim);
        },
    );
}

#[test]
fn move_in_is_told_the_true_source_space_and_a_refusal_is_a_move_error() {
    // Bounded: a lost completion or move fails the test instead of hanging it.
    common::within(
        60,
        "move in is told the true source space and a refusal is a move error",
        || {
            let first = SimDevice::new(1);
            let second = SimDevice::new(2);
            let strict = SimDevice::with(3, true);
            let ctx = Context::builder()
                .threads(1)
                .gpus(false)
                .processor(first.clone())
                .processor(second.clone())
                .processor(strict.clone())
                .build()
                .unwrap();
            let (p1, p2, p3) = (sim_id(&ctx, 0), sim_id(&ctx, 1), sim_id(&ctx, 2));
            let x = DArray::distribute(&ctx, &ndarray::arr1(&[1.0f32, 2.0, 3.0]), Blocks::new([3]))
                .unwrap();
            let on = |p| Options::new().scope(Scope::exact(p));
            // Made on device 1, then used on device 2: device 2 is told it comes from device 1.
            let y = with_options(on(p1), || x.map_wgsl("x + 1.0")).unwrap();
            let z = with_options(on(p2), || y.map_wgsl("x * 10.0")).unwrap();
            assert_eq!(z.collect1().unwrap().to_vec(), vec![20.0, 30.0, 40.0]);
            assert_eq!(*second.sources.lock(), vec![first.space()]);
            assert_eq!(
                first.moved_out.load(Ordering::SeqCst),
                0,
                "device 2 took device 1's buffer directly"
            );

            // The strict device refuses values from another device's space: they come to it through
            // the host, moved out by the device that holds them.
            let w = with_options(on(p3), || y.map_wgsl("x - 1.0")).unwrap();
            assert_eq!(w.collect1().unwrap().to_vec(), vec![1.0, 2.0, 3.0]);
            assert_eq!(
                *strict.sources.lock(),
                vec![first.space(), MemorySpace::LOCAL_HOST]
            );
            assert_eq!(first.moved_out.load(Ordering::SeqCst), 1);

            // A processor that refuses a value outright fails the task with a move error naming the
            // input, and the context carries on.
            struct Refuser(parking_lot::Mutex<Vec<MemorySpace>>);
            impl Processor for Refuser {
                fn kind(&self) -> ProcessorKind {
                    ProcessorKind::Custom("refuser")
                }
                fn memory_space(&self) -> MemorySpace {
                    MemorySpace::Custom { process: 1, id: 99 }
                }
                fn is_compatible(&self, _: &TaskInfo) -> bool {
                    true
                }
                fn move_in(&self, from: MemorySpace, value: Value) -> Result<Value, MoveError> {
                    self.0.lock().push(from);
                    Err(MoveError::Unsupported {
                        type_name: value.type_name(),
                        from,
                        to: self.memory_space(),
                    })
                }
            }
            let refusing = Arc::new(Refuser(parking_lot::Mutex::new(Vec::new())));
            let ctx = Context::builder()
                .threads(1)
                .gpus(false)
                .processor(first.clone())
                .processor(refusing.clone())
                .build()
                .unwrap();
            let p1 = sim_id(&ctx, 0);
            let refuser = ctx.processors_of_kind(ProcessorKind::Custom("refuser"))[0];
            let chunk = ctx.to_chunk_on(vec![1.0f32], p1).unwrap();
            let t = ctx.spawn_with(on(refuser), |v: Vec<f32>| v.len(), (&chunk,));
            match t.fetch().unwrap_err() {
                TaskError::Move { index, error, .. } => {
                    assert_eq!(index, 0);
                    let msg = error.to_string();
                    assert!(msg.contains("custom99@1"), "{msg}");
                }
                e => panic!("expected a move error, got {e}"),
            }
            // Offered from device 1's space first, then from the host.
            assert_eq!(
                *refusing.0.lock(),
                vec![first.space(), MemorySpace::LOCAL_HOST]
            );
            assert_eq!(ctx.spawn(|| 7, ()).fetch().unwrap(), 7);
        },
    );
}

#[test]
fn a_thread_reads_a_device_value_only_through_the_device() {
    // Bounded: a lost completion or move fails the test instead of hanging it.
    common::within(
        60,
        "a thread reads a device value only through the device",
        || {
            let dev = SimDevice::new(5);
            let ctx = Context::builder()
                .threads(1)
                .gpus(false)
                .processor(dev.clone())
                .build()
                .unwrap();
            let sim = sim_id(&ctx, 0);
            let chunk = ctx.to_chunk_on(vec![1.0f32, 2.0], sim).unwrap();
            assert_eq!(chunk.memory_space(), dev.space());
            let n = ctx.spawn(|v: Vec<f32>| v.iter().sum::<f32>(), (&chunk,));
            assert_eq!(n.fetch().unwrap(), 3.0);
            assert_eq!(dev.moved_out.load(Ordering::SeqCst), 1);
            assert_eq!(chunk.collect().unwrap(), vec![1.0, 2.0]);
            assert_eq!(dev.moved_out.load(Ordering::SeqCst), 2);
        },
    );
}

#[test]
fn a_chunk_for_a_processor_of_another_context_is_an_error_not_a_panic() {
    // Bounded: a lost completion or move fails the test instead of hanging it.
    common::within(
        60,
        "a chunk for a processor of another context is an error not a panic",
        || {
            let small = Context::builder().threads(1).gpus(false).build().unwrap();
            let big = Context::builder()
                .threads(4)
                .gpus(false)
                .processor(SimDevice::new(11))
                .build()
                .unwrap();
            let foreign = sim_id(&big, 0);
            let err = small.to_chunk_on(vec![1u8], foreign).unwrap_err();
            assert!(
                err.to_string().contains("could not be moved")
                    || err.to_string().contains("moving"),
                "{err}"
            );
            let source = std::error::Error::source(&err)
                .expect("a cause")
                .to_string();
            assert!(source.contains(&foreign.to_string()), "{source}");
            // The context is unaffected.
            assert_eq!(small.spawn(|| 2, ()).fetch().unwrap(), 2);
        },
    );
}

/// A processor whose `launch` misbehaves in the ways a device driver might.
struct Faulty {
    mode: &'static str,
}

impl Processor for Faulty {
    fn kind(&self) -> ProcessorKind {
        ProcessorKind::Custom("faulty")
    }
    fn memory_space(&self) -> MemorySpace {
        MemorySpace::LOCAL_HOST
    }
    fn is_compatible(&self, _: &TaskInfo) -> bool {
        true
    }
    fn launch(&self, call: TaskCall, done: Completion) {
        match self.mode {
            "panic" => panic!("the driver crashed"),
            "drop" => drop((call, done)),
            "late" => {
                std::thread::spawn(move || {
                    std::thread::sleep(Duration::from_millis(20));
                    done.complete(call.run());
                });
            }
            _ => unreachable!(),
        }
    }
}

#[test]
fn a_launch_that_panics_or_forgets_its_completion_fails_the_task_and_nothing_hangs() {
    for (mode, expect) in [
        ("panic", "panicked"),
        ("drop", "without reporting a result"),
        ("late", ""),
    ] {
        let ctx = Context::builder()
            .threads(1)
            .gpus(false)
            .processor(Arc::new(Faulty { mode }))
            .build()
            .unwrap();
        let p = ctx.processors_of_kind(ProcessorKind::Custom("faulty"))[0];
        let (tx, rx) = std::sync::mpsc::channel();
        let c = ctx.clone();
        std::thread::spawn(move || {
            let t = c.spawn_with(Options::new().scope(Scope::exact(p)), || 5, ());
            let _ = tx.send(t.fetch());
        });
        let got = rx
            .recv_timeout(Duration::from_secs(20))
            .unwrap_or_else(|_| panic!("{mode}: fetch did not return"));
        match (mode, got) {
            ("late", Ok(v)) => assert_eq!(v, 5),
            (_, Err(e)) => assert!(e.to_string().contains(expect), "{mode}: {e}"),
            (_, Ok(v)) => panic!("{mode}: expected a failure, got {v}"),
        }
        // The processor's capacity came back: it takes the next task.
        let again = ctx.spawn_with(Options::new().scope(Scope::exact(p)), || 6, ());
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(again.fetch().is_ok());
        });
        assert!(
            rx.recv_timeout(Duration::from_secs(20)).is_ok(),
            "{mode}: wedged"
        );
        assert_eq!(ctx.spawn(|| 7, ()).fetch().unwrap(), 7);
    }
}
