//! Datadeps with kernel tasks: versions of cells move between host and devices, written
//! versions come back to their cells, a value current where it is needed is not copied
//! again, and random programs mixing kernels (on GPUs) and closures equal sequential runs.
//!
//! Without a wgpu adapter these tests print that they were skipped; with
//! `DAGGER_REQUIRE_GPU=1` (as CI sets) they fail instead.

mod common;

use std::sync::Mutex;

use dagger::prelude::*;
use dagger::{Access, Cell, In, InOut, Out, PartMut, PartRef, Ref, RefMut, WgslKernel};
use proptest::prelude::*;

/// Device counters are per process: tests that read them run one at a time.
static DEVICES: Mutex<()> = Mutex::new(());

fn lock() -> std::sync::MutexGuard<'static, ()> {
    DEVICES.lock().unwrap_or_else(|e| e.into_inner())
}

/// A context whose default scope holds every GPU (software ones included), with the number
/// of GPUs; `None` (after saying why) when there is none.
fn gpu_ctx() -> Option<(Context, usize)> {
    let ctx = Context::builder()
        .threads(2)
        .software_gpus(true)
        .build()
        .unwrap();
    let gpus = common::gpus_or_skip(&ctx, "this test").len();
    (gpus > 0).then_some((ctx, gpus))
}

#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
struct Span {
    c: i32,
    start: u32,
    end: u32,
    _pad: u32,
}

const AXPY: &str = "
struct Span { c: i32, start: u32, end: u32, pad: u32 }
@group(0) @binding(0) var<uniform> p: Span;
@group(0) @binding(1) var<storage, read> x: array<i32>;
@group(0) @binding(2) var<storage, read_write> y: array<i32>;
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) id: vec3<u32>) {
    let i = p.start + id.x;
    if (i < p.end) { y[i] = y[i] * p.c + x[i]; }
}";

const SCALE: &str = "
struct Span { c: i32, start: u32, end: u32, pad: u32 }
@group(0) @binding(0) var<uniform> p: Span;
@group(0) @binding(1) var<storage, read> x: array<i32>;
@group(0) @binding(2) var<storage, read_write> y: array<i32>;
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) id: vec3<u32>) {
    let i = p.start + id.x;
    if (i < p.end) { y[i] = x[i] * p.c; }
}";

fn groups(p: &Span) -> [u32; 3] {
    [(p.end - p.start).div_ceil(64).max(1), 1, 1]
}

/// `y[s] = y[s] * c + x[s]` over the span `s`.
fn axpy() -> WgslKernel<Span, i32> {
    WgslKernel::builder("axpy", AXPY, "main")
        .inputs([Access::Read, Access::ReadWrite])
        .workgroups(|p: &Span, _| groups(p))
        .cpu(|p: &Span, ins: &[&[i32]], y: &mut [i32]| {
            for i in p.start as usize..p.end as usize {
                y[i] = y[i].wrapping_mul(p.c).wrapping_add(ins[0][i]);
            }
        })
        .build()
        .unwrap()
}

/// `y[s] = x[s] * c`: overwrites the span of `y`.
fn scale() -> WgslKernel<Span, i32> {
    WgslKernel::builder("scale", SCALE, "main")
        .inputs([Access::Read, Access::ReadWrite])
        .workgroups(|p: &Span, _| groups(p))
        .cpu(|p: &Span, ins: &[&[i32]], y: &mut [i32]| {
            for i in p.start as usize..p.end as usize {
                y[i] = ins[0][i].wrapping_mul(p.c);
            }
        })
        .build()
        .unwrap()
}

fn all(n: usize, c: i32) -> Span {
    Span {
        c,
        start: 0,
        end: n as u32,
        _pad: 0,
    }
}

fn scopes(gpus: usize) -> Vec<(String, Scope)> {
    let mut s = vec![("default".to_string(), Scope::default_scope())];
    for g in 0..gpus {
        s.push((format!("gpu {g}"), Scope::gpu(g)));
    }
    s.push(("all gpus".into(), Scope::gpus(..)));
    s
}

#[test]
fn daggers_add_chain_with_kernels_on_every_scope() {
    let Some((ctx, gpus)) = gpu_ctx() else { return };
    let _g = lock();
    let (axpy, scale) = (axpy(), scale());
    let n = 100;
    let init = |k: i32| (0..n as i32).map(|i| i * k + 1).collect::<Vec<i32>>();
    for (name, scope) in scopes(gpus) {
        let (a0, b0, c0) = (init(1), init(2), init(3));
        let (a, b, c, d) = (
            Cell::new(a0.clone()),
            Cell::new(b0.clone()),
            Cell::new(c0.clone()),
            Cell::new(vec![0; n]),
        );
        let value = ctx
            .spawn_datadeps(|r| {
                let o = || Options::new().scope(scope.clone());
                r.spawn_kernel_with(o(), &axpy, all(n, 1), [In(&a).into(), InOut(&b).into()])
                    .unwrap();
                r.spawn_kernel_with(o(), &axpy, all(n, 1), [In(&a).into(), InOut(&c).into()])
                    .unwrap();
                r.spawn_kernel_with(o(), &axpy, all(n, 1), [In(&b).into(), InOut(&c).into()])
                    .unwrap();
                r.spawn_kernel_with(o(), &scale, all(n, 1), [In(&c).into(), Out(&d).into()])
                    .unwrap();
                "done"
            })
            .unwrap_or_else(|e| panic!("{name}: {e:?}"));
        assert_eq!(value, "done");
        let want: Vec<i32> = (0..n).map(|i| (a0[i] + b0[i]) + (a0[i] + c0[i])).collect();
        assert_eq!(c.get(), want, "{name}: C");
        assert_eq!(d.get(), want, "{name}: D");
        assert_eq!(a.get(), a0, "{name}: A is only read");
        let b_want: Vec<i32> = (0..n).map(|i| a0[i] + b0[i]).collect();
        assert_eq!(b.get(), b_want, "{name}: B");
    }
}

#[test]
fn values_current_where_needed_are_not_copied_again() {
    let Some((ctx, _)) = gpu_ctx() else { return };
    let _g = lock();
    let axpy = axpy();
    let n = 1 << 16;
    let dev = ctx.gpu_device(0).expect("gpu 0");
    let a = Cell::new(vec![1; n]);
    let c = Cell::new(vec![0; n]);
    let on_gpu = || Options::new().scope(Scope::gpu(0));
    let before = dev.stats();
    ctx.spawn_datadeps(|r| {
        for k in 1..=4 {
            r.spawn_kernel_with(
                on_gpu(),
                &axpy,
                all(n, k),
                [In(&a).into(), InOut(&c).into()],
            )
            .unwrap();
        }
    })
    .unwrap();
    let after = dev.stats();
    // c = ((((0·1 + 1)·2 + 1)·3 + 1)·4 + 1) = 41
    assert!(c.get().iter().all(|&v| v == 41), "{:?}", &c.get()[..4]);
    assert_eq!(a.get(), vec![1; n], "a read only");
    // a and c went up once each; every later task found them (a's cached copy, c's latest
    // version) on the device. Only c, written, came back.
    assert_eq!(
        after.uploads - before.uploads,
        2,
        "uploads: {before:?} -> {after:?}"
    );
    assert_eq!(after.downloads - before.downloads, 1, "downloads");
    assert_eq!(after.download_bytes - before.download_bytes, (n * 4) as u64);
    assert_eq!(after.launches - before.launches, 4);

    // A closure between kernels needs c on the host: one download there, one upload after,
    // and one download at the end.
    let before = dev.stats();
    ctx.spawn_datadeps(|r| {
        r.spawn_kernel_with(
            on_gpu(),
            &axpy,
            all(n, 1),
            [In(&a).into(), InOut(&c).into()],
        )
        .unwrap();
        r.spawn(
            |mut c: RefMut<Vec<i32>>| c.iter_mut().for_each(|v| *v *= 2),
            (InOut(&c),),
        );
        r.spawn_kernel_with(
            on_gpu(),
            &axpy,
            all(n, 1),
            [In(&a).into(), InOut(&c).into()],
        )
        .unwrap();
    })
    .unwrap();
    let after = dev.stats();
    assert!(c.get().iter().all(|&v| v == (41 + 1) * 2 + 1));
    assert_eq!(
        after.downloads - before.downloads,
        2,
        "{before:?} -> {after:?}"
    );
    // a (a new value: it left and re-entered its cell), c, and c again after the closure.
    assert_eq!(after.uploads - before.uploads, 3);
}

#[test]
fn a_failed_kernel_leaves_the_last_good_version_and_the_error() {
    let Some((ctx, _)) = gpu_ctx() else { return };
    let _g = lock();
    let axpy = axpy();
    let n = 8;
    let a = Cell::new(vec![1; n]);
    let short = Cell::new(vec![1; 4]);
    let c = Cell::new(vec![0; n]);
    let err = ctx
        .spawn_datadeps(|r| {
            r.spawn_kernel_with(
                Options::new().scope(Scope::gpu(0)),
                &axpy,
                all(n, 1),
                [In(&a).into(), InOut(&c).into()],
            )
            .unwrap();
            // A closure that fails, then a kernel after it on the same cell.
            r.spawn(|_c: Ref<Vec<i32>>| panic!("no good"), (In(&c),));
            r.spawn(|_: Ref<Vec<i32>>| panic!("boom"), (In(&short),));
            r.spawn_kernel(&axpy, all(n, 5), [In(&a).into(), InOut(&c).into()])
                .unwrap();
        })
        .unwrap_err();
    assert!(format!("{err:?}").contains("no good"), "{err:?}");
    // The second kernel writes c after the failed reader, so it failed too: c holds the
    // first kernel's version.
    assert_eq!(c.get(), vec![1; n]);
    assert_eq!(short.get(), vec![1; 4]);
    // Wrong access for the kernel's bindings, or a wrong number of arguments: an error at
    // the call, and nothing spawned, so the region itself succeeds.
    let errs = ctx
        .spawn_datadeps(|r| {
            let access = r
                .spawn_kernel(&axpy, all(n, 1), [InOut(&a).into(), InOut(&c).into()])
                .unwrap_err();
            let count = r
                .spawn_kernel(&axpy, all(n, 1), [In(&a).into()])
                .unwrap_err();
            (access, count)
        })
        .unwrap();
    assert_eq!(
        errs.0,
        dagger::KernelArgsError::Access {
            kernel: axpy.name().to_owned(),
            index: 0,
            read_write: false
        }
    );
    assert!(
        errs.0
            .to_string()
            .ends_with("binds input 0 read-only, so pass it as In"),
        "{}",
        errs.0
    );
    assert!(
        matches!(
            errs.1,
            dagger::KernelArgsError::Count {
                expected: 2,
                given: 1,
                ..
            }
        ),
        "{:?}",
        errs.1
    );
    assert!(
        errs.1.to_string().contains("takes 2 input arrays"),
        "{}",
        errs.1
    );
    assert_eq!(c.get(), vec![1; n], "nothing ran");
    // One cell read and written by the same task.
    let err = ctx
        .spawn_datadeps(|r| {
            r.spawn_kernel(&axpy, all(n, 1), [In(&c).into(), InOut(&c).into()])
                .unwrap();
        })
        .unwrap_err();
    assert!(format!("{err:?}").contains("twice"), "{err:?}");
    // The context and the cells are fine afterwards.
    ctx.spawn_datadeps(|r| {
        r.spawn_kernel(&axpy, all(n, 1), [In(&a).into(), InOut(&c).into()])
            .unwrap();
    })
    .unwrap();
    assert_eq!(c.get(), vec![2; n]);
}

#[derive(Clone, Debug)]
enum Op {
    /// Kernel `y[s] = y[s] * c + x[s]`.
    Axpy {
        x: usize,
        y: usize,
        s: (u32, u32),
        c: i32,
    },
    /// Kernel `y[s] = x[s] * c`.
    Scale {
        x: usize,
        y: usize,
        s: (u32, u32),
        c: i32,
    },
    /// Closure on the host over a view of one cell: `y[s] += 1`.
    Bump { y: usize, s: (u32, u32) },
    /// Closure reading a view of `x` into the sum at the end of `y`.
    Sum { x: usize, y: usize, s: (u32, u32) },
}

const CELLS: usize = 3;
const LEN: u32 = 40;

fn span() -> impl Strategy<Value = (u32, u32)> {
    (0..LEN, 0..LEN).prop_map(|(a, b)| if a <= b { (a, b + 1) } else { (b, a + 1) })
}

fn pair() -> impl Strategy<Value = (usize, usize)> {
    (0..CELLS, 1..CELLS).prop_map(|(x, d)| (x, (x + d) % CELLS))
}

fn op(closures: bool) -> BoxedStrategy<Op> {
    let kernels = prop_oneof![
        (pair(), span(), -2..3i32).prop_map(|((x, y), s, c)| Op::Axpy { x, y, s, c }),
        (pair(), span(), -2..3i32).prop_map(|((x, y), s, c)| Op::Scale { x, y, s, c }),
    ];
    if !closures {
        return kernels.boxed();
    }
    prop_oneof![
        2 => kernels,
        1 => (0..CELLS, span()).prop_map(|(y, s)| Op::Bump { y, s }),
        1 => (pair(), span().prop_filter("leaves the last element", |s| s.1 < LEN))
            .prop_map(|((x, y), s)| Op::Sum { x, y, s }),
    ]
    .boxed()
}

fn sequential(init: &[Vec<i32>], ops: &[Op]) -> Vec<Vec<i32>> {
    let mut v = init.to_vec();
    let r = |s: (u32, u32)| s.0 as usize..s.1 as usize;
    for op in ops {
        match *op {
            Op::Axpy { x, y, s, c } => {
                let xs = v[x].clone();
                for (y, x) in v[y][r(s)].iter_mut().zip(&xs[r(s)]) {
                    *y = y.wrapping_mul(c).wrapping_add(*x);
                }
            }
            Op::Scale { x, y, s, c } => {
                let xs = v[x].clone();
                for (y, x) in v[y][r(s)].iter_mut().zip(&xs[r(s)]) {
                    *y = x.wrapping_mul(c);
                }
            }
            Op::Bump { y, s } => v[y][r(s)].iter_mut().for_each(|y| *y = y.wrapping_add(1)),
            Op::Sum { x, y, s } => {
                let sum = v[x][s.0 as usize..s.1 as usize]
                    .iter()
                    .fold(0i32, |a, b| a.wrapping_add(*b));
                let last = LEN as usize - 1;
                v[y][last] = v[y][last].wrapping_add(sum);
            }
        }
    }
    v
}

/// Runs `ops` in a region, kernels within `scope`, closures on the default scope.
fn run(ctx: &Context, scope: &Scope, init: &[Vec<i32>], ops: &[Op]) -> Vec<Vec<i32>> {
    let (axpy, scale) = (axpy(), scale());
    let cells: Vec<Cell<Vec<i32>>> = init.iter().map(|v| Cell::new(v.clone())).collect();
    let span = |s: (u32, u32), c| Span {
        c,
        start: s.0,
        end: s.1,
        _pad: 0,
    };
    ctx.spawn_datadeps(|r| {
        let o = || Options::new().scope(scope.clone());
        for op in ops {
            match *op {
                Op::Axpy { x, y, s, c } => {
                    let args = [In(&cells[x]).into(), InOut(&cells[y]).into()];
                    r.spawn_kernel_with(o(), &axpy, span(s, c), args).unwrap();
                }
                Op::Scale { x, y, s, c } => {
                    let args = [In(&cells[x]).into(), Out(&cells[y]).into()];
                    r.spawn_kernel_with(o(), &scale, span(s, c), args).unwrap();
                }
                Op::Bump { y, s } => {
                    let rows = s.0 as usize..s.1 as usize;
                    r.spawn(
                        move |mut v: PartMut<Vec<i32>>| {
                            for x in v.iter_mut() {
                                *x = x.wrapping_add(1);
                            }
                        },
                        (InOut(cells[y].rows(rows)),),
                    );
                }
                Op::Sum { x, y, s } => {
                    let rows = s.0 as usize..s.1 as usize;
                    let last = LEN as usize - 1;
                    r.spawn(
                        move |mut out: PartMut<Vec<i32>>, src: PartRef<Vec<i32>>| {
                            let sum = src.iter().fold(0i32, |a, b| a.wrapping_add(*b));
                            out[0] = out[0].wrapping_add(sum);
                        },
                        (
                            InOut(cells[y].rows(last..last + 1)),
                            In(cells[x].rows(rows)),
                        ),
                    );
                }
            }
        }
    })
    .unwrap();
    cells.iter().map(Cell::get).collect()
}

fn inits() -> impl Strategy<Value = Vec<Vec<i32>>> {
    proptest::collection::vec(proptest::collection::vec(-5..6i32, LEN as usize), CELLS)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Kernels only, on all GPUs: versions move between the two devices through the host.
    #[test]
    fn random_kernel_programs_on_gpus_equal_sequential(
        init in inits(),
        ops in proptest::collection::vec(op(false), 1..16),
    ) {
        let Some((ctx, _)) = gpu_ctx() else { return Ok(()) };
        let _g = lock();
        prop_assert_eq!(run(&ctx, &Scope::gpus(..), &init, &ops), sequential(&init, &ops));
    }

    /// Kernels and host closures over views: cells go in and out of versions as tasks need
    /// them. Kernels on the GPUs, then on the default scope (CPU threads and GPUs).
    #[test]
    fn random_mixed_programs_equal_sequential(
        init in inits(),
        ops in proptest::collection::vec(op(true), 1..20),
    ) {
        let Some((ctx, _)) = gpu_ctx() else { return Ok(()) };
        let _g = lock();
        let want = sequential(&init, &ops);
        prop_assert_eq!(&run(&ctx, &Scope::gpus(..), &init, &ops), &want);
        prop_assert_eq!(&run(&ctx, &Scope::default_scope(), &init, &ops), &want);
    }
}

#[test]
fn a_cell_whose_kernel_failed_gets_its_last_good_version_back() {
    let Some((ctx, _)) = gpu_ctx() else { return };
    let _g = lock();
    // No CPU implementation: on the CPU scope it cannot run at all.
    let gpu_only = WgslKernel::<Span, i32>::builder("gpu only", AXPY, "main")
        .inputs([Access::Read, Access::ReadWrite])
        .workgroups(|p: &Span, _| groups(p))
        .build()
        .unwrap();
    let n = 16;
    let (x, c) = (Cell::new(vec![1; n]), Cell::new(vec![5; n]));
    let err = ctx
        .spawn_datadeps(|r| {
            let on_cpu = Options::new().scope(Scope::cpu());
            r.spawn_kernel_with(
                on_cpu,
                &gpu_only,
                all(n, 2),
                [In(&x).into(), InOut(&c).into()],
            )
            .unwrap();
            // The closure needs c back in its cell after a kernel that failed.
            r.spawn(|c: Ref<Vec<i32>>| c.len(), (In(&c),));
            // A later kernel on c waits for the failed accesses and fails with them.
            r.spawn_kernel(&axpy(), all(n, 3), [In(&x).into(), InOut(&c).into()])
                .unwrap();
        })
        .unwrap_err();
    assert!(format!("{err}").contains("gpu only"), "{err}");
    assert_eq!(
        c.get(),
        vec![5; n],
        "c is back, as it was before the region"
    );
    assert_eq!(x.get(), vec![1; n]);
}

#[test]
fn kernel_arguments_that_do_not_fit_are_an_error_at_the_call() {
    // No GPU needed: the check happens before anything is placed.
    let ctx = Context::builder().threads(1).build().unwrap();
    let axpy = axpy();
    let (x, y) = (ctx.to_chunk(vec![1; 4]), ctx.to_chunk(vec![2; 4]));
    let err = ctx
        .spawn_kernel(&axpy, all(4, 1), [(&x).into()])
        .unwrap_err();
    assert_eq!(
        err,
        dagger::KernelArgsError::Count {
            kernel: axpy.name().to_owned(),
            expected: 2,
            given: 1
        }
    );
    assert!(
        err.to_string()
            .contains("takes 2 input arrays (as declared by `inputs`) but was given 1"),
        "{err}"
    );
    let three = [(&x).into(), (&y).into(), (&y).into()];
    assert!(ctx.spawn_kernel(&axpy, all(4, 1), three).is_err());
    // The right arguments run.
    let ok = ctx
        .spawn_kernel(&axpy, all(4, 1), [(&x).into(), (&y).into()])
        .unwrap();
    assert_eq!(ok.fetch().unwrap(), vec![3; 4]);

    let (a, c) = (Cell::new(vec![1; 4]), Cell::new(vec![0; 4]));
    let errs = ctx
        .spawn_datadeps(|r| {
            let count = r
                .spawn_kernel(&axpy, all(4, 1), [In(&a).into()])
                .unwrap_err();
            let access = r
                .spawn_kernel(&axpy, all(4, 1), [In(&a).into(), In(&c).into()])
                .unwrap_err();
            (count, access)
        })
        .unwrap();
    assert!(matches!(
        errs.0,
        dagger::KernelArgsError::Count {
            expected: 2,
            given: 1,
            ..
        }
    ));
    assert_eq!(
        errs.1.to_string(),
        "kernel `axpy` binds input 1 read_write, so pass it as Out or InOut"
    );
    assert_eq!(c.get(), vec![0; 4], "nothing was spawned");
}
