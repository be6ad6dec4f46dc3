//! Fused elementwise chains against the same maps applied one by one: on CPU threads equal
//! to the bit (maps and reductions), on each GPU within a rounding or two, for block sizes
//! that do and do not divide the shape and lengths on both sides of the CPU chunk.

mod common;

use dagger::prelude::*;
use dagger::{ArrayError, Float, Fused};

fn scopes(ctx: &Context) -> Vec<(Scope, bool, bool)> {
    // (scope, runs f64, exact)
    let mut v = vec![(Scope::cpu(), true, true)];
    let gpus = common::gpus_or_skip(ctx, "the GPU scopes");
    for info in &gpus {
        v.push((Scope::gpu(info.index), info.shader_f64, false));
    }
    if !gpus.is_empty() {
        v.push((Scope::default_scope(), true, false));
        v.push((
            Scope::union([Scope::cpu(), Scope::gpus(..)]).unwrap(),
            true,
            false,
        ));
    }
    v
}

/// The chains compared: each as a fused chain and as the same maps one by one.
#[allow(clippy::type_complexity)]
fn chains<T: Float>() -> Vec<(
    &'static str,
    Box<dyn Fn(Fused<T>) -> Fused<T>>,
    Box<dyn Fn(&DArray<T>) -> DArray<T>>,
)> {
    let two = T::from_f64(2.0);
    let half = T::from_f64(0.5);
    vec![
        (
            "scalar ops",
            Box::new(move |f| -(f * two + half) / two - half),
            Box::new(move |a| -(a * two + half) / two - half),
        ),
        (
            "functions and expressions",
            Box::new(|f| {
                f.abs()
                    .sqrt()
                    .map_wgsl("x * x + max(x, 0.25)")
                    .unwrap()
                    .map_wgsl("min(x, 1.5) - 0.125")
                    .unwrap()
            }),
            Box::new(|a| {
                a.abs()
                    .sqrt()
                    .map_wgsl("x * x + max(x, 0.25)")
                    .unwrap()
                    .map_wgsl("min(x, 1.5) - 0.125")
                    .unwrap()
            }),
        ),
        (
            "ten maps",
            Box::new(|mut f| {
                for _ in 0..10 {
                    f = f.map_wgsl("x * 0.5 + 0.25").unwrap();
                }
                f
            }),
            Box::new(|a| {
                let mut a = a.clone();
                for _ in 0..10 {
                    a = a.map_wgsl("x * 0.5 + 0.25").unwrap();
                }
                a
            }),
        ),
        (
            "transcendental",
            Box::new(|f| f.exp().tanh().sin().map_wgsl("log(x + 2.0)").unwrap()),
            Box::new(|a| a.exp().tanh().sin().map_wgsl("log(x + 2.0)").unwrap()),
        ),
    ]
}

fn close<T: Float>(got: T, want: T, exact: bool, what: &str) {
    let (g, w) = (got.to_f64(), want.to_f64());
    if exact {
        assert!(g == w || (g.is_nan() && w.is_nan()), "{what}: {g} vs {w}");
    } else {
        assert!(
            (g - w).abs() <= 1e-5 * w.abs().max(1.0),
            "{what}: {g} vs {w}"
        );
    }
}

fn check<T: Float>(ctx: &Context, scope: &Scope, exact: bool) {
    for &(n, block) in &[
        (1, 4),
        (15, 4),
        (16, 16),
        (17, 5),
        (1023, 1024),
        (1025, 256),
        (3001, 1000),
    ] {
        let a = DArray::<T>::randn(ctx, [n], Blocks::new([block]), n as u64).unwrap();
        for (name, fused, unfused) in chains::<T>() {
            let what = format!("{name}, n {n}, block {block}, {} on {scope}", T::DTYPE);
            with_options(Options::new().scope(scope.clone()), || {
                let f = fused(a.fuse());
                let u = unfused(&a);
                let (fv, uv) = (f.eval().collect1().unwrap(), u.collect1().unwrap());
                for (i, (&x, &y)) in fv.iter().zip(&uv).enumerate() {
                    close(x, y, exact, &format!("{what}: element {i}"));
                }
                close(
                    f.sum().fetch().unwrap(),
                    u.sum().fetch().unwrap(),
                    exact,
                    &format!("{what}: sum"),
                );
                close(
                    f.max().unwrap().fetch().unwrap(),
                    u.max().unwrap().fetch().unwrap(),
                    exact,
                    &format!("{what}: max"),
                );
                close(
                    f.min().unwrap().fetch().unwrap(),
                    u.min().unwrap().fetch().unwrap(),
                    exact,
                    &format!("{what}: min"),
                );
                close(
                    f.mean().fetch().unwrap(),
                    u.mean().fetch().unwrap(),
                    exact,
                    &format!("{what}: mean"),
                );
            });
        }
    }
}

#[test]
fn fused_chains_equal_the_maps_one_by_one() {
    common::within(600, "fused chains", || {
        let ctx = Context::builder().threads(2).build().unwrap();
        for (scope, f64_ok, exact) in scopes(&ctx) {
            check::<f32>(&ctx, &scope, exact);
            if f64_ok {
                check::<f64>(&ctx, &scope, exact);
            }
        }
    });
}

#[test]
fn a_fused_chain_reads_each_block_once_in_one_task() {
    let ctx = Context::builder().threads(2).build().unwrap();
    let a = DArray::<f32>::ones(&ctx, [4096], Blocks::new([1024])).unwrap();
    a.wait().unwrap();
    ctx.enable_logging();
    let _ = ctx.fetch_logs();
    let mut f = a.fuse();
    for _ in 0..10 {
        f = f * 2.0 - 1.0;
    }
    assert_eq!(f.len(), 20);
    assert_eq!(f.sum().fetch().unwrap(), 4096.0);
    let tasks: Vec<_> = ctx
        .fetch_logs()
        .into_iter()
        .filter(|e| e.kind == dagger::EventKind::Task)
        .collect();
    // Four block tasks, three pairwise combines and the final one: no task per map.
    assert_eq!(
        tasks.len(),
        4 + 3 + 1,
        "{:?}",
        tasks.iter().map(|e| &e.name).collect::<Vec<_>>()
    );
}

#[test]
fn empty_chains_and_empty_arrays() {
    let ctx = Context::builder().threads(1).build().unwrap();
    let a = DArray::<f64>::fill(&ctx, [5], Blocks::new([2]), 3.0).unwrap();
    assert!(a.fuse().is_empty());
    assert_eq!(a.fuse().eval().collect1().unwrap().to_vec(), vec![3.0; 5]);
    assert_eq!(a.fuse().sum().fetch().unwrap(), 15.0);
    let e = DArray::<f32>::zeros(&ctx, [0], Blocks::new([2])).unwrap();
    assert_eq!((e.fuse() + 1.0).sum().fetch().unwrap(), 0.0);
    assert_eq!((e.fuse() + 1.0).prod().fetch().unwrap(), 1.0);
    assert!(matches!(
        e.fuse().max(),
        Err(ArrayError::EmptyReduction { .. })
    ));
    assert!(matches!(
        a.fuse().map_wgsl("x + y"),
        Err(ArrayError::Expr(_))
    ));
}
