//! Kernels, batching, the pool, the pipeline cache and error handling, on every adapter.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use dagger_wgpu::shaders::{self, FillParams, MandelbrotParams, SaxpyParams};
use dagger_wgpu::testing::devices_for_tests;
use dagger_wgpu::{Binding, BindingKind, Device, GpuError};

fn saxpy_cpu(a: f32, x: &[f32], y: &[f32]) -> Vec<f32> {
    x.iter().zip(y).map(|(x, y)| a * x + y).collect()
}

fn run_saxpy(device: &Device, a: f32, x: &[f32], y: &[f32]) -> Vec<f32> {
    let pipeline = device.compile(shaders::SAXPY, "main").unwrap();
    let gx = device.upload(x).unwrap();
    let gy = device.upload(y).unwrap();
    let params = SaxpyParams {
        a,
        n: x.len() as u32,
    };
    device
        .launch_blocking(
            &pipeline,
            &[
                Binding::uniform(&params),
                Binding::Storage(&gx),
                Binding::Storage(&gy),
            ],
            params.workgroups(),
        )
        .unwrap();
    device.download(&gy).unwrap()
}

fn assert_close(got: &[f32], want: &[f32]) {
    assert_eq!(got.len(), want.len());
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        // The GPU may fuse a * x + y; allow one rounding of difference.
        let tol = 2.0 * f32::EPSILON * w.abs().max(1.0);
        assert!((g - w).abs() <= tol, "element {i}: got {g}, want {w}");
    }
}

#[test]
fn saxpy_matches_cpu() {
    for device in devices_for_tests() {
        for n in [1usize, 255, 256, 257, 10_007] {
            let x: Vec<f32> = (0..n).map(|i| (i as f32 * 0.37).sin()).collect();
            let y: Vec<f32> = (0..n).map(|i| (i as f32 * 0.11).cos() * 3.0).collect();
            assert_close(&run_saxpy(&device, 2.5, &x, &y), &saxpy_cpu(2.5, &x, &y));
        }
        let pipeline = device.compile(shaders::SAXPY, "main").unwrap();
        let kinds: Vec<BindingKind> = pipeline.bindings().iter().map(|b| b.kind).collect();
        assert_eq!(
            kinds,
            [
                BindingKind::Uniform,
                BindingKind::StorageRead,
                BindingKind::StorageReadWrite
            ]
        );
        assert_eq!(pipeline.workgroup_size(), [256, 1, 1]);
    }
}

#[test]
fn saxpy_beyond_one_dimension_of_workgroups() {
    for device in devices_for_tests() {
        let n = 65_535 * 256 + 1000;
        let params = SaxpyParams {
            a: -1.5,
            n: n as u32,
        };
        assert!(params.workgroups()[1] > 1, "needs a 2-D grid");
        let x: Vec<f32> = (0..n).map(|i| (i % 1000) as f32).collect();
        let y: Vec<f32> = (0..n).map(|i| (i % 7) as f32).collect();
        let got = run_saxpy(&device, -1.5, &x, &y);
        assert_close(&got, &saxpy_cpu(-1.5, &x, &y));
    }
}

#[test]
fn zero_length_launch() {
    for device in devices_for_tests() {
        let empty: [f32; 0] = [];
        assert!(run_saxpy(&device, 1.0, &empty, &empty).is_empty());
    }
}

#[test]
fn mandelbrot_matches_cpu() {
    for device in devices_for_tests() {
        let params = MandelbrotParams {
            width: 161,
            height: 97,
            center_x: -0.6,
            center_y: 0.0,
            scale: 3.0 / 161.0,
            max_iter: 64,
        };
        let pipeline = device.compile(shaders::MANDELBROT, "main").unwrap();
        let pixels = device
            .alloc(u64::from(params.width * params.height) * 4)
            .unwrap();
        device
            .launch_blocking(
                &pipeline,
                &[Binding::uniform(&params), Binding::Storage(&pixels)],
                params.workgroups(),
            )
            .unwrap();
        let got = device.download::<u32>(&pixels).unwrap();
        let mut inside_cpu = 0;
        let mut agree = 0;
        for py in 0..params.height {
            for px in 0..params.width {
                let cx = params.center_x + (px as f32 - params.width as f32 * 0.5) * params.scale;
                let cy = params.center_y + (py as f32 - params.height as f32 * 0.5) * params.scale;
                let (mut zx, mut zy, mut it) = (0.0f32, 0.0f32, 0);
                while it < params.max_iter && zx * zx + zy * zy <= 4.0 {
                    let t = zx * zx - zy * zy + cx;
                    zy = 2.0 * zx * zy + cy;
                    zx = t;
                    it += 1;
                }
                let inside = it == params.max_iter;
                inside_cpu += usize::from(inside);
                let pixel = got[(py * params.width + px) as usize];
                assert_eq!(pixel >> 24, 0xff, "alpha is opaque");
                if inside == (pixel == 0xff00_0000) {
                    agree += 1;
                }
            }
        }
        let total = (params.width * params.height) as usize;
        assert!(inside_cpu > total / 10, "the view shows the set");
        assert!(agree * 100 >= total * 99, "{agree} of {total} pixels agree");
    }
}

#[test]
fn launches_are_batched_and_ordered() {
    for device in devices_for_tests() {
        let increment = device.compile(shaders::FILL, "increment").unwrap();
        let fill = device.compile(shaders::FILL, "fill").unwrap();
        let n = 1000;
        let out = device.alloc(n as u64 * 4).unwrap();
        let before = device.stats();
        let done = Arc::new(AtomicUsize::new(0));
        let start = FillParams { value: 7, n };
        device
            .launch(
                &fill,
                &[Binding::uniform(&start), Binding::Storage(&out)],
                start.workgroups(),
                {
                    let done = Arc::clone(&done);
                    move |r| {
                        r.unwrap();
                        done.fetch_add(1, Ordering::SeqCst);
                    }
                },
            )
            .unwrap();
        let launches = 300;
        for k in 0..launches {
            let p = FillParams { value: k, n };
            let done = Arc::clone(&done);
            device
                .launch(
                    &increment,
                    &[Binding::uniform(&p), Binding::Storage(&out)],
                    p.workgroups(),
                    move |r| {
                        r.unwrap();
                        done.fetch_add(1, Ordering::SeqCst);
                    },
                )
                .unwrap();
        }
        device.synchronize().unwrap();
        assert_eq!(done.load(Ordering::SeqCst), launches as usize + 1);
        let want = 7 + (0..launches).sum::<u32>();
        assert_eq!(
            device.download::<u32>(&out).unwrap(),
            vec![want; n as usize]
        );
        let after = device.stats();
        let (l, s) = (
            after.launches - before.launches,
            after.submits - before.submits,
        );
        println!("{}: {l} launches in {s} submits", device.info().name);
        assert_eq!(l, u64::from(launches) + 1);
        assert!(s < l, "{l} launches took {s} submits: no batching");
    }
}

#[test]
fn dropped_buffers_return_to_the_pool() {
    for device in devices_for_tests() {
        let a = device.alloc(10_000).unwrap();
        let s0 = device.stats();
        assert_eq!(s0.pool_misses, 1);
        assert_eq!(s0.bytes_allocated, a.capacity_bytes());
        drop(a);
        assert_eq!(device.pool_idle_bytes(), 16_384);
        let b = device.alloc(10_000).unwrap();
        let s1 = device.stats();
        assert_eq!(
            s1.pool_hits,
            s0.pool_hits + 1,
            "same size class must come from the pool"
        );
        assert_eq!(s1.bytes_allocated, s0.bytes_allocated);
        // A buffer used by a launch goes back once the launch is done, even if dropped early.
        let up = device.upload(&[1u32; 2500]).unwrap();
        drop(up);
        device.synchronize().unwrap();
        let c = device.alloc(10_000).unwrap();
        assert_eq!(device.stats().pool_hits, s1.pool_hits + 1);
        drop((b, c));
        device.trim_pool();
        assert_eq!(device.pool_idle_bytes(), 0);
        assert_eq!(device.stats().bytes_allocated, 0);
    }
}

#[test]
fn the_pool_keeps_at_most_its_cap_idle() {
    for device in devices_for_tests() {
        let bufs: Vec<_> = (0..3).map(|_| device.alloc(100 << 20).unwrap()).collect();
        let class = bufs[0].capacity_bytes();
        assert_eq!(device.stats().bytes_allocated, 3 * class);
        drop(bufs);
        let idle = device.pool_idle_bytes();
        assert!(idle <= dagger_wgpu::POOL_IDLE_CAP, "{idle} bytes idle");
        assert_eq!(idle, (dagger_wgpu::POOL_IDLE_CAP / class) * class);
        assert_eq!(
            device.stats().bytes_allocated,
            idle,
            "evicted buffers are freed"
        );
    }
}

#[test]
fn binding_too_large_is_rejected_and_the_device_keeps_working() {
    for device in devices_for_tests() {
        let info = device.info().clone();
        let limit = info.max_storage_binding_size;
        let saxpy = device.compile(shaders::SAXPY, "main").unwrap();
        let err = if limit + 4 <= info.max_buffer_size && limit <= 1 << 30 {
            let small = device.upload(&[1.0f32; 4]).unwrap();
            let big = device.alloc(limit + 4).unwrap();
            let params = SaxpyParams { a: 1.0, n: 4 };
            device
                .launch(
                    &saxpy,
                    &[
                        Binding::uniform(&params),
                        Binding::Storage(&small),
                        Binding::Storage(&big),
                    ],
                    params.workgroups(),
                    |_| panic!("a rejected launch must not call back"),
                )
                .unwrap_err()
        } else {
            info.check_storage_binding(2, limit + 4).unwrap_err()
        };
        match &err {
            GpuError::BindingTooLarge {
                binding,
                bytes,
                limit: l,
            } => {
                assert_eq!((*binding, *bytes, *l), (2, limit + 4, limit));
            }
            other => panic!("expected BindingTooLarge, got {other}"),
        }
        let text = err.to_string();
        assert!(
            text.contains(&limit.to_string()) && text.contains("binding 2"),
            "{text}"
        );
        assert_close(
            &run_saxpy(&device, 2.0, &[1.0, 2.0], &[3.0, 4.0]),
            &[5.0, 8.0],
        );
    }
}

#[test]
fn launch_arguments_are_validated_before_enqueue() {
    for device in devices_for_tests() {
        let saxpy = device.compile(shaders::SAXPY, "main").unwrap();
        let x = device.upload(&[1.0f32; 8]).unwrap();
        let params = SaxpyParams { a: 1.0, n: 8 };
        let never = |_: Result<(), GpuError>| panic!("a rejected launch must not call back");

        let err = device
            .launch(
                &saxpy,
                &[Binding::uniform(&params), Binding::Storage(&x)],
                [1, 1, 1],
                never,
            )
            .unwrap_err();
        assert!(
            matches!(
                err,
                GpuError::BindingCount {
                    expected: 3,
                    got: 2,
                    ..
                }
            ),
            "{err}"
        );

        let err = device
            .launch(
                &saxpy,
                &[
                    Binding::Storage(&x),
                    Binding::Storage(&x),
                    Binding::Storage(&x),
                ],
                [1, 1, 1],
                never,
            )
            .unwrap_err();
        assert!(
            matches!(err, GpuError::BindingKind { binding: 0, .. }),
            "{err}"
        );

        let err = device
            .launch(
                &saxpy,
                &[
                    Binding::Uniform(&[0u8; 4]),
                    Binding::Storage(&x),
                    Binding::Storage(&x),
                ],
                [1, 1, 1],
                never,
            )
            .unwrap_err();
        assert!(
            matches!(err, GpuError::UniformTooSmall { needed: 8, .. }),
            "{err}"
        );

        let limit = device.info().max_compute_workgroups_per_dimension;
        let err = device
            .launch(
                &saxpy,
                &[
                    Binding::uniform(&params),
                    Binding::Storage(&x),
                    Binding::Storage(&x),
                ],
                [1, limit + 1, 1],
                never,
            )
            .unwrap_err();
        match err {
            GpuError::TooManyWorkgroups {
                dimension: 1,
                count,
                limit: l,
            } => {
                assert_eq!((count, l), (limit + 1, limit));
            }
            other => panic!("expected TooManyWorkgroups, got {other}"),
        }
        assert_eq!(device.stats().launches, 0);
    }
}

#[test]
fn buffers_and_pipelines_of_another_device_are_rejected() {
    let first = devices_for_tests();
    let second = devices_for_tests();
    for (a, b) in first.iter().zip(&second) {
        let on_a = a.upload(&[1.0f32; 4]).unwrap();
        let saxpy_b = b.compile(shaders::SAXPY, "main").unwrap();
        let y_b = b.upload(&[1.0f32; 4]).unwrap();
        let params = SaxpyParams { a: 1.0, n: 4 };
        let never = |_: Result<(), GpuError>| panic!("a rejected launch must not call back");
        let err = b
            .launch(
                &saxpy_b,
                &[
                    Binding::uniform(&params),
                    Binding::Storage(&on_a),
                    Binding::Storage(&y_b),
                ],
                [1, 1, 1],
                never,
            )
            .unwrap_err();
        assert!(matches!(err, GpuError::WrongDevice { .. }), "{err}");
        assert!(err.to_string().contains("binding 1"), "{err}");
        let saxpy_a = a.compile(shaders::SAXPY, "main").unwrap();
        let err = b
            .launch(
                &saxpy_a,
                &[
                    Binding::uniform(&params),
                    Binding::Storage(&y_b),
                    Binding::Storage(&y_b),
                ],
                [1, 1, 1],
                never,
            )
            .unwrap_err();
        assert!(matches!(err, GpuError::WrongDevice { .. }), "{err}");
        assert!(matches!(
            b.download::<f32>(&on_a),
            Err(GpuError::WrongDevice { .. })
        ));
    }
}

#[test]
fn invalid_shader_fails_at_compile_with_its_line() {
    for device in devices_for_tests() {
        let bad = "@group(0) @binding(0) var<storage, read_write> out: array<u32>;\n\
                   @compute @workgroup_size(1)\n\
                   fn main() {\n    out[0] = undefined_name;\n}\n";
        let err = device.compile(bad, "main").unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, GpuError::Shader(_)), "{text}");
        assert!(text.contains("line 4"), "{text}");
        assert!(text.contains("undefined_name"), "{text}");

        let err = device.compile(shaders::SAXPY, "nope").unwrap_err();
        assert!(err.to_string().contains("main"), "{err}");
    }
}

#[test]
fn f64_shader_needs_shader_f64() {
    let source = "@group(0) @binding(0) var<storage, read_write> v: array<f64>;\n\
                  @compute @workgroup_size(64)\n\
                  fn main(@builtin(global_invocation_id) id: vec3<u32>) {\n\
                      if (id.x < arrayLength(&v)) { v[id.x] = v[id.x] * 2.0lf + 1.0lf; }\n\
                  }\n";
    for device in devices_for_tests() {
        let compiled = device.compile(source, "main");
        if !device.info().shader_f64 {
            let err = compiled.unwrap_err();
            println!("{}: {err}", device.info().name);
            assert!(matches!(err, GpuError::MissingFeature { .. }), "{err}");
            assert!(err.to_string().contains("shader_f64"), "{err}");
            continue;
        }
        let pipeline = compiled.unwrap();
        let data: Vec<f64> = (0..1000).map(|i| f64::from(i) / 3.0).collect();
        let buf = device.upload(&data).unwrap();
        device
            .launch_blocking(&pipeline, &[Binding::Storage(&buf)], [16, 1, 1])
            .unwrap();
        let want: Vec<f64> = data.iter().map(|x| x * 2.0 + 1.0).collect();
        assert_eq!(device.download::<f64>(&buf).unwrap(), want);
    }
}

#[test]
fn compiling_twice_hits_the_cache() {
    for device in devices_for_tests() {
        let a = device.compile(shaders::SAXPY, "main").unwrap();
        let b = device.compile(shaders::SAXPY, "main").unwrap();
        assert_eq!(a, b);
        let c = device.compile(shaders::FILL, "fill").unwrap();
        assert_ne!(a, c);
        let s = device.stats();
        assert_eq!((s.compiles, s.compile_cache_hits), (2, 1));
    }
}

#[test]
fn wgpu_validation_error_reaches_the_callback_and_the_device_keeps_working() {
    // The shader needs 4096 bytes at binding 0; binding 16 bytes is a wgpu validation error
    // that only wgpu detects.
    let source = "@group(0) @binding(0) var<storage, read_write> block: array<u32, 1024>;\n\
                  @compute @workgroup_size(1)\n\
                  fn main() { block[0] = 1u; }\n";
    for device in devices_for_tests() {
        let pipeline = device.compile(source, "main").unwrap();
        assert_eq!(pipeline.bindings()[0].min_bytes, 4096);
        let small = device.upload(&[0u32; 4]).unwrap();
        let err = device
            .launch_blocking(&pipeline, &[Binding::Storage(&small)], [1, 1, 1])
            .unwrap_err();
        println!("{}: {err}", device.info().name);
        assert!(matches!(err, GpuError::Wgpu { .. }), "{err}");
        let big = device.zeroed(4096).unwrap();
        device
            .launch_blocking(&pipeline, &[Binding::Storage(&big)], [1, 1, 1])
            .unwrap();
        assert_eq!(device.download::<u32>(&big).unwrap()[..2], [1, 0]);
    }
}

#[test]
fn callbacks_may_panic_and_may_not_block_on_their_device() {
    for device in devices_for_tests() {
        let fill = device.compile(shaders::FILL, "fill").unwrap();
        let out = device.alloc(64 * 4).unwrap();
        let p = FillParams { value: 3, n: 64 };
        let bindings = [Binding::uniform(&p), Binding::Storage(&out)];
        device
            .launch(&fill, &bindings, p.workgroups(), |_| {
                panic!("callback panics")
            })
            .unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let inner = device.clone();
        device
            .launch(&fill, &bindings, p.workgroups(), move |_| {
                let _ = tx.send(inner.synchronize());
            })
            .unwrap();
        let reentrant = rx.recv().unwrap();
        assert!(
            matches!(reentrant, Err(GpuError::Reentrant { .. })),
            "{reentrant:?}"
        );
        device
            .launch_blocking(&fill, &bindings, p.workgroups())
            .unwrap();
        assert_eq!(device.download::<u32>(&out).unwrap(), vec![3; 64]);
    }
}

#[test]
fn lost_device_fails_every_later_call() {
    for device in devices_for_tests() {
        let fill = device.compile(shaders::FILL, "fill").unwrap();
        let out = device.upload(&[0u32; 64]).unwrap();
        device.synchronize().unwrap();
        device.destroy();
        assert!(device.is_lost());
        let p = FillParams { value: 1, n: 64 };
        let is_lost = |r: Result<(), GpuError>| {
            assert!(matches!(r, Err(GpuError::DeviceLost { .. })), "{r:?}");
        };
        is_lost(device.launch(
            &fill,
            &[Binding::uniform(&p), Binding::Storage(&out)],
            [1, 1, 1],
            |_| (),
        ));
        is_lost(device.synchronize());
        is_lost(device.upload(&[1u32]).map(drop));
        is_lost(device.download::<u32>(&out).map(drop));
        is_lost(device.alloc(16).map(drop));
        is_lost(device.compile(shaders::SAXPY, "main").map(drop));
        let err = device.synchronize().unwrap_err();
        assert!(err.to_string().contains(&device.info().name), "{err}");
    }
}

#[test]
fn buffers_outlive_their_device_handle() {
    for device in devices_for_tests() {
        let buf = device.upload(&[5u32; 100]).unwrap();
        let clone = device.clone();
        drop(device);
        assert_eq!(clone.download::<u32>(&buf).unwrap(), vec![5; 100]);
        drop(clone);
        drop(buf);
    }
}

#[test]
fn losing_the_device_with_work_in_flight_fails_that_work_cleanly() {
    for device in devices_for_tests() {
        let increment = device.compile(shaders::FILL, "increment").unwrap();
        let out = device.zeroed(4096 * 4).unwrap();
        let p = FillParams { value: 1, n: 4096 };
        let (tx, rx) = std::sync::mpsc::channel();
        for _ in 0..200 {
            let tx = tx.clone();
            device
                .launch(
                    &increment,
                    &[Binding::uniform(&p), Binding::Storage(&out)],
                    p.workgroups(),
                    move |r| {
                        tx.send(r).unwrap();
                    },
                )
                .unwrap();
        }
        drop(tx);
        // Let the server get into the middle of the work before the loss.
        std::thread::sleep(std::time::Duration::from_millis(3));
        device.destroy();
        let results: Vec<Result<(), GpuError>> = rx.iter().collect();
        assert_eq!(results.len(), 200, "every callback runs exactly once");
        let lost = results
            .iter()
            .filter(|r| matches!(r, Err(GpuError::DeviceLost { .. })))
            .count();
        let ok = results.iter().filter(|r| r.is_ok()).count();
        println!("{}: {ok} finished, {lost} lost", device.info().name);
        assert_eq!(ok + lost, 200, "{results:?}");
        assert!(matches!(
            device.synchronize(),
            Err(GpuError::DeviceLost { .. })
        ));
    }
}
