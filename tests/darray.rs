//! DArray conformance: every operation checked against ndarray, written once and run on
//! the CPU scope, on each GPU (`Scope::gpu(i)`), and on the default scope.
//!
//! Without a wgpu adapter the GPU cases print that they were skipped; with
//! `DAGGER_REQUIRE_GPU=1` (as CI sets) they fail instead.

// Tables of (name, array, reference function) read best inline.
#![allow(clippy::type_complexity)]

mod common;

use std::sync::OnceLock;

use dagger::prelude::*;
use dagger::{ArrayError, Element};
use ndarray::{Array, ArrayD, Axis, IxDyn};

fn ctx() -> &'static Context {
    static C: OnceLock<Context> = OnceLock::new();
    C.get_or_init(|| Context::builder().threads(2).build().unwrap())
}

/// Where a suite runs: a scope (none = the default), and whether it may use f64.
struct Env {
    scope: Option<Scope>,
    label: String,
    f64: bool,
}

impl Env {
    fn run<R>(&self, f: impl FnOnce() -> R) -> R {
        match &self.scope {
            Some(s) => with_options(Options::new().scope(s.clone()), f),
            None => f(),
        }
    }
}

fn gpu_envs() -> Vec<Env> {
    common::gpus_or_skip(ctx(), "the GPU environments")
        .into_iter()
        .map(|g| Env {
            scope: Some(Scope::gpu(g.index)),
            label: format!("gpu {} ({}, {})", g.index, g.name, g.backend),
            f64: g.shader_f64,
        })
        .collect()
}

fn envs(kind: &str) -> Vec<Env> {
    match kind {
        "cpu" => vec![Env {
            scope: Some(Scope::cpu()),
            label: "cpu".into(),
            f64: true,
        }],
        "gpu" => gpu_envs(),
        _ => vec![Env {
            scope: None,
            label: "default".into(),
            f64: true,
        }],
    }
}

/// One test per (check, scope kind).
macro_rules! conformance {
    ($($check:ident),* $(,)?) => {
        mod cpu { $( #[test] fn $check() { for e in super::envs("cpu") { super::$check(&e) } } )* }
        mod gpu { $( #[test] fn $check() { for e in super::envs("gpu") { super::$check(&e) } } )* }
        mod default_scope { $( #[test] fn $check() { for e in super::envs("default") { super::$check(&e) } } )* }
    };
}

conformance!(
    constructors,
    random_is_blocking_and_processor_independent,
    distribute_and_collect,
    unary_functions,
    binary_operators,
    integer_arithmetic,
    map_expressions,
    full_reductions,
    axis_reductions,
    transpose_and_permute,
    slicing,
    concatenation,
    rechunking,
    errors_at_the_call,
);

/// Shapes and blockings on both sides of block edges: 1×1, partial last blocks, 1-D, 3-D.
fn cases() -> Vec<(Vec<usize>, Vec<usize>)> {
    vec![
        (vec![1], vec![1]),
        (vec![17], vec![4]),
        (vec![1, 1], vec![1, 1]),
        (vec![15, 16], vec![16, 16]),
        (vec![17, 33], vec![4, 8]),
        (vec![5, 3, 7], vec![2, 2, 3]),
    ]
}

fn close(label: &str, what: &str, got: &ArrayD<f64>, want: &ArrayD<f64>, tol: f64) {
    assert_eq!(got.shape(), want.shape(), "{label}: {what}: shape");
    for (i, (g, w)) in got.iter().zip(want.iter()).enumerate() {
        let ok = (g - w).abs() <= tol * w.abs().max(1.0) || (g.is_nan() && w.is_nan());
        assert!(ok, "{label}: {what}: element {i}: got {g}, want {w}");
    }
}

fn f64s<T: Element>(a: &ArrayD<T>) -> ArrayD<f64> {
    a.mapv(|x| x.to_f64())
}

fn tol<T: Element>() -> f64 {
    if T::DTYPE == dagger::DType::F64 {
        1e-9
    } else {
        2e-5
    }
}

fn constructors(e: &Env) {
    let c = ctx();
    for (shape, block) in cases() {
        let (z, o, f, i) = e.run(|| {
            (
                DArray::<f32>::zeros(c, &shape, Blocks::new(&block)).unwrap(),
                DArray::<u32>::ones(c, &shape, Blocks::new(&block)).unwrap(),
                DArray::<f32>::fill(c, &shape, Blocks::new(&block), 2.5).unwrap(),
                DArray::<i32>::fill(c, &shape, Blocks::new(&block), -3).unwrap(),
            )
        });
        assert_eq!(
            z.collect().unwrap(),
            ArrayD::<f32>::zeros(IxDyn(&shape)),
            "{}",
            e.label
        );
        assert_eq!(
            o.collect().unwrap(),
            ArrayD::<u32>::ones(IxDyn(&shape)),
            "{}",
            e.label
        );
        assert_eq!(
            f.collect().unwrap(),
            ArrayD::from_elem(IxDyn(&shape), 2.5),
            "{}",
            e.label
        );
        assert_eq!(
            i.collect().unwrap(),
            ArrayD::from_elem(IxDyn(&shape), -3),
            "{}",
            e.label
        );
    }
    let empty = e.run(|| DArray::<f32>::zeros(c, [0, 5], Blocks::new([2, 2])).unwrap());
    assert_eq!(empty.num_blocks(), 0);
    assert_eq!(empty.collect().unwrap().shape(), &[0, 5]);
    let auto = e.run(|| DArray::<f32>::ones(c, [300, 200], AutoBlocks::new()).unwrap());
    assert!(auto.num_blocks() >= 1);
    assert_eq!(auto.sum().fetch().unwrap(), 60_000.0, "{}", e.label);
}

fn random_is_blocking_and_processor_independent(e: &Env) {
    let c = ctx();
    let reference = with_options(Options::new().scope(Scope::cpu()), || {
        DArray::<f32>::rand(c, [37, 23], Blocks::new([37, 23]), 99)
            .unwrap()
            .collect()
            .unwrap()
    });
    for block in [[5, 7], [1, 23], [37, 1], [16, 16]] {
        let a = e.run(|| DArray::<f32>::rand(c, [37, 23], Blocks::new(block), 99).unwrap());
        assert_eq!(
            a.collect().unwrap(),
            reference,
            "{}: rand with blocks {block:?}",
            e.label
        );
    }
    assert!(reference.iter().all(|&x| (0.0..1.0).contains(&x)));
    let other = DArray::<f32>::rand(c, [37, 23], Blocks::new([8, 8]), 100)
        .unwrap()
        .collect()
        .unwrap();
    assert_ne!(other, reference, "a different seed gives different numbers");
    if e.f64 {
        let r64 = with_options(Options::new().scope(Scope::cpu()), || {
            DArray::<f64>::rand(c, [1000], Blocks::new([1000]), 3)
                .unwrap()
                .collect()
                .unwrap()
        });
        let a = e.run(|| DArray::<f64>::rand(c, [1000], Blocks::new([33]), 3).unwrap());
        assert_eq!(a.collect().unwrap(), r64, "{}: f64 rand", e.label);
        let n = with_options(Options::new().scope(Scope::cpu()), || {
            DArray::<f64>::randn(c, [1000], Blocks::new([1000]), 3)
                .unwrap()
                .collect()
                .unwrap()
        });
        let m = e.run(|| DArray::<f64>::randn(c, [1000], Blocks::new([64]), 3).unwrap());
        close(&e.label, "f64 randn", &m.collect().unwrap(), &n, 1e-9);
    }
    let n = with_options(Options::new().scope(Scope::cpu()), || {
        DArray::<f32>::randn(c, [20_000], Blocks::new([20_000]), 5)
            .unwrap()
            .collect()
            .unwrap()
    });
    let m = e.run(|| DArray::<f32>::randn(c, [20_000], Blocks::new([3000]), 5).unwrap());
    close(
        &e.label,
        "randn",
        &f64s(&m.collect().unwrap()),
        &f64s(&n),
        1e-4,
    );
    let mean = n.mean().unwrap();
    let var = n.mapv(|x| (x - mean) * (x - mean)).mean().unwrap();
    assert!(
        mean.abs() < 0.03 && (var - 1.0).abs() < 0.05,
        "mean {mean}, var {var}"
    );
}

fn distribute_and_collect(e: &Env) {
    let c = ctx();
    for (shape, block) in cases() {
        let host = Array::from_shape_fn(IxDyn(&shape), |i| {
            ndarray::Dimension::slice(&i)
                .iter()
                .fold(0i32, |a, &x| a * 31 + x as i32)
        });
        let a = e.run(|| DArray::distribute(c, &host, Blocks::new(&block)).unwrap());
        assert_eq!(a.shape(), shape);
        assert_eq!(a.collect().unwrap(), host);
        let doms = a.subdomains();
        assert_eq!(doms.iter().map(|d| d.len()).sum::<usize>(), host.len());
    }
    let v = e.run(|| {
        DArray::distribute(c, &ndarray::array![1.0f32, 2.0, 3.0], Blocks::new([2])).unwrap()
    });
    assert_eq!(v.collect1().unwrap(), ndarray::array![1.0, 2.0, 3.0]);
    assert!(matches!(
        v.collect2(),
        Err(ArrayError::Dimensionality { expected: 2, .. })
    ));
    let empty = e.run(|| {
        DArray::distribute(c, &Array::<f32, _>::zeros((3, 0)), Blocks::new([2, 2])).unwrap()
    });
    assert_eq!(empty.collect2().unwrap().shape(), &[3, 0]);
    let owned = e.run(|| DArray::<f32>::ones(c, [9, 9], Blocks::new([4, 4])).unwrap() * 3.0);
    assert_eq!(
        owned.into_ndarray().unwrap(),
        ArrayD::from_elem(IxDyn(&[9, 9]), 3.0)
    );
}

fn unary_for<T: dagger::Float>(e: &Env) {
    let c = ctx();
    for (shape, block) in cases() {
        let a = e.run(|| DArray::<T>::rand(c, &shape, Blocks::new(&block), 11).unwrap());
        let ha = f64s(&a.collect().unwrap());
        let ops: Vec<(&str, DArray<T>, fn(f64) -> f64)> = e.run(|| {
            let shifted = &a + T::from_f64(0.5);
            let f = |name, a, f: fn(f64) -> f64| (name, a, f);
            vec![
                f("neg", -&a, |x| -x),
                f("abs", (&a - T::from_f64(0.5)).abs(), |x| (x - 0.5).abs()),
                f("sqrt", a.sqrt(), f64::sqrt),
                f("exp", a.exp(), f64::exp),
                f("ln", shifted.ln(), |x| (x + 0.5).ln()),
                f("sin", a.sin(), f64::sin),
                f("cos", a.cos(), f64::cos),
                f("tanh", a.tanh(), f64::tanh),
                f("powf", shifted.powf(T::from_f64(2.5)), |x| {
                    (x + 0.5).powf(2.5)
                }),
            ]
        });
        for (name, got, f) in ops {
            let what = format!("{name} {shape:?} {}", std::any::type_name::<T>());
            close(
                &e.label,
                &what,
                &f64s(&got.collect().unwrap()),
                &ha.mapv(f),
                tol::<T>() * 10.0,
            );
        }
    }
}

fn unary_functions(e: &Env) {
    unary_for::<f32>(e);
    if e.f64 {
        unary_for::<f64>(e);
    }
}

fn binary_for<T: dagger::Float>(e: &Env) {
    let c = ctx();
    for (shape, block) in cases() {
        let other_block: Vec<usize> = block.iter().map(|b| b + 1).collect();
        let (a, b) = e.run(|| {
            (
                DArray::<T>::rand(c, &shape, Blocks::new(&block), 1).unwrap(),
                // Blocked differently: the right operand is rechunked to the left's blocks.
                DArray::<T>::rand(c, &shape, Blocks::new(&other_block), 2).unwrap() + T::ONE,
            )
        });
        let (ha, hb) = (f64s(&a.collect().unwrap()), f64s(&b.collect().unwrap()));
        let s = T::from_f64(1.5);
        let results: Vec<(&str, DArray<T>, ArrayD<f64>)> = e.run(|| {
            vec![
                ("a+b", (&a + &b).unwrap(), &ha + &hb),
                ("a-b", (&a - &b).unwrap(), &ha - &hb),
                ("a*b", (&a * &b).unwrap(), &ha * &hb),
                ("a/b", (&a / &b).unwrap(), &ha / &hb),
                (
                    "min",
                    a.minimum(&b).unwrap(),
                    ndarray::Zip::from(&ha)
                        .and(&hb)
                        .map_collect(|x, y| x.min(*y)),
                ),
                (
                    "max",
                    a.maximum(&b).unwrap(),
                    ndarray::Zip::from(&ha)
                        .and(&hb)
                        .map_collect(|x, y| x.max(*y)),
                ),
                (
                    "pow",
                    b.pow(&a).unwrap(),
                    ndarray::Zip::from(&hb)
                        .and(&ha)
                        .map_collect(|x, y| x.powf(*y)),
                ),
                ("a+s", &a + s, ha.mapv(|x| x + 1.5)),
                ("a-s", &a - s, ha.mapv(|x| x - 1.5)),
                ("a*s", &a * s, ha.mapv(|x| x * 1.5)),
                ("a/s", &a / s, ha.mapv(|x| x / 1.5)),
                (
                    "min s",
                    a.minimum_scalar(T::from_f64(0.5)),
                    ha.mapv(|x| x.min(0.5)),
                ),
                (
                    "max s",
                    a.maximum_scalar(T::from_f64(0.5)),
                    ha.mapv(|x| x.max(0.5)),
                ),
                (
                    "chain",
                    ((&a * s + T::ONE) - &b).unwrap() / T::from_f64(2.0),
                    (&ha.mapv(|x| x * 1.5 + 1.0) - &hb) / 2.0,
                ),
            ]
        });
        for (name, got, want) in results {
            let what = format!("{name} {shape:?} {}", std::any::type_name::<T>());
            close(
                &e.label,
                &what,
                &f64s(&got.collect().unwrap()),
                &want,
                tol::<T>() * 10.0,
            );
        }
    }
}

fn binary_operators(e: &Env) {
    binary_for::<f32>(e);
    if e.f64 {
        binary_for::<f64>(e);
    }
    // Scalars on the left.
    let c = ctx();
    let a = e.run(|| DArray::<f32>::fill(c, [5, 4], Blocks::new([2, 3]), 4.0).unwrap());
    let r = e.run(|| (1.0 - &a, 2.0 / &a, 3.0 * &a, 1.0 + &a));
    assert_eq!(
        r.0.collect().unwrap(),
        ArrayD::from_elem(IxDyn(&[5, 4]), -3.0)
    );
    assert_eq!(
        r.1.collect().unwrap(),
        ArrayD::from_elem(IxDyn(&[5, 4]), 0.5)
    );
    assert_eq!(
        r.2.collect().unwrap(),
        ArrayD::from_elem(IxDyn(&[5, 4]), 12.0)
    );
    assert_eq!(
        r.3.collect().unwrap(),
        ArrayD::from_elem(IxDyn(&[5, 4]), 5.0)
    );
}

fn integer_arithmetic(e: &Env) {
    let c = ctx();
    let ha = Array::from_shape_fn((7, 9), |(i, j)| i as i32 * 1_000_000_007 - j as i32 * 3);
    let hb = Array::from_shape_fn((7, 9), |(i, j)| (i as i32 - 3) * (j as i32 % 4));
    let (a, b) = e.run(|| {
        (
            DArray::distribute(c, &ha, Blocks::new([3, 4])).unwrap(),
            DArray::distribute(c, &hb, Blocks::new([7, 2])).unwrap(),
        )
    });
    let z = |f: fn(i32, i32) -> i32| {
        ndarray::Zip::from(&ha)
            .and(&hb)
            .map_collect(|&x, &y| f(x, y))
            .into_dyn()
    };
    let r = e.run(|| {
        [
            (&a + &b).unwrap(),
            (&a - &b).unwrap(),
            (&a * &b).unwrap(),
            (&a / &b).unwrap(),
            a.minimum(&b).unwrap(),
            a.maximum(&b).unwrap(),
        ]
    });
    let want = [
        z(i32::wrapping_add),
        z(i32::wrapping_sub),
        z(i32::wrapping_mul),
        z(|x, y| if y == 0 { x } else { x.wrapping_div(y) }),
        z(std::cmp::min),
        z(std::cmp::max),
    ];
    for (i, (g, w)) in r.iter().zip(want).enumerate() {
        assert_eq!(g.collect().unwrap(), w, "{}: integer op {i}", e.label);
    }
    let u = e.run(|| DArray::<u32>::fill(c, [10], Blocks::new([3]), 7).unwrap() * 3u32 - 1u32);
    assert_eq!(u.collect1().unwrap().to_vec(), vec![20u32; 10]);
}

fn map_expressions(e: &Env) {
    let c = ctx();
    for (shape, block) in cases() {
        let a = e.run(|| DArray::<f32>::randn(c, &shape, Blocks::new(&block), 4).unwrap());
        let ha = f64s(&a.collect().unwrap());
        let exprs: [(&str, fn(f64) -> f64); 4] = [
            ("x * 2.0 + 1.0", |x| x * 2.0 + 1.0),
            ("-(x - 3) / (1 + abs(x))", |x| -(x - 3.0) / (1.0 + x.abs())),
            ("max(min(x, 0.5), -0.5) + pow(abs(x), 1.5)", |x| {
                x.clamp(-0.5, 0.5) + x.abs().powf(1.5)
            }),
            (
                "sqrt(exp(x)) * sin(x) + cos(x) - tanh(x) + log(2.0 + x * x)",
                |x| x.exp().sqrt() * x.sin() + x.cos() - x.tanh() + (2.0 + x * x).ln(),
            ),
        ];
        for (src, f) in exprs {
            let got = e.run(|| a.map_wgsl(src).unwrap());
            close(
                &e.label,
                src,
                &f64s(&got.collect().unwrap()),
                &ha.mapv(f),
                2e-4,
            );
        }
        // A Rust closure runs on CPU threads whatever the scope.
        let m = e.run(|| a.map(|x| (x * 10.0) as i32));
        assert_eq!(
            m.collect().unwrap(),
            a.collect().unwrap().mapv(|x| (x * 10.0) as i32)
        );
    }
    if e.f64 {
        let a = e.run(|| DArray::<f64>::rand(c, [33, 5], Blocks::new([8, 5]), 4).unwrap());
        let got = e.run(|| a.map_wgsl("x * x - 0.25 / (x + 1)").unwrap());
        close(
            &e.label,
            "f64 expression",
            &got.collect().unwrap(),
            &a.collect().unwrap().mapv(|x| x * x - 0.25 / (x + 1.0)),
            1e-12,
        );
    }
}

fn full_reductions_for<T: dagger::Float>(e: &Env) {
    let c = ctx();
    for (shape, block) in cases() {
        let a = e.run(|| {
            DArray::<T>::rand(c, &shape, Blocks::new(&block), 8).unwrap() + T::from_f64(0.5)
        });
        let ha = f64s(&a.collect().unwrap());
        let n = ha.len() as f64;
        let (s, p, lo, hi, m) = e.run(|| {
            (
                a.sum(),
                a.prod(),
                a.min().unwrap(),
                a.max().unwrap(),
                a.mean(),
            )
        });
        let got = |t: DTask<T>| t.fetch().unwrap().to_f64();
        let t = tol::<T>() * 20.0;
        let check = |what: &str, g: f64, w: f64| {
            assert!(
                (g - w).abs() <= t * w.abs().max(1.0),
                "{}: {what} {shape:?}: got {g}, want {w}",
                e.label
            )
        };
        check("sum", got(s), ha.sum());
        check("prod", got(p), ha.product());
        check("min", got(lo), ha.fold(f64::INFINITY, |a, &b| a.min(b)));
        check("max", got(hi), ha.fold(f64::NEG_INFINITY, |a, &b| a.max(b)));
        check("mean", got(m), ha.sum() / n);
    }
}

fn full_reductions(e: &Env) {
    full_reductions_for::<f32>(e);
    if e.f64 {
        full_reductions_for::<f64>(e);
    }
    let c = ctx();
    let i = e.run(|| {
        DArray::<i32>::distribute(
            c,
            &Array::from_shape_fn((40, 30), |(i, j)| i as i32 - j as i32),
            Blocks::new([16, 16]),
        )
        .unwrap()
    });
    let (s, lo, hi) = e.run(|| (i.sum(), i.min().unwrap(), i.max().unwrap()));
    assert_eq!(
        (s.fetch().unwrap(), lo.fetch().unwrap(), hi.fetch().unwrap()),
        (6000, -29, 39)
    );
    // Empty arrays: sum 0, prod 1, mean NaN, min/max an error at the call.
    let empty = e.run(|| DArray::<f32>::zeros(c, [0, 4], Blocks::new([2, 2])).unwrap());
    assert_eq!(e.run(|| empty.sum()).fetch().unwrap(), 0.0);
    assert_eq!(e.run(|| empty.prod()).fetch().unwrap(), 1.0);
    assert!(e.run(|| empty.mean()).fetch().unwrap().is_nan());
    let err = empty.min().unwrap_err();
    assert!(
        matches!(err, ArrayError::EmptyReduction { op: "min", .. }),
        "{err}"
    );
}

fn axis_reductions(e: &Env) {
    let c = ctx();
    for (shape, block) in cases() {
        let a = e.run(|| DArray::<f32>::rand(c, &shape, Blocks::new(&block), 21).unwrap() + 0.5);
        let ha = f64s(&a.collect().unwrap());
        for axis in 0..shape.len() {
            let r = e.run(|| {
                [
                    a.sum_axis(axis).unwrap(),
                    a.prod_axis(axis).unwrap(),
                    a.min_axis(axis).unwrap(),
                    a.max_axis(axis).unwrap(),
                    a.mean_axis(axis).unwrap(),
                ]
            });
            let want = [
                ha.sum_axis(Axis(axis)),
                ha.map_axis(Axis(axis), |v| v.product()),
                ha.map_axis(Axis(axis), |v| v.fold(f64::INFINITY, |a, &b| a.min(b))),
                ha.map_axis(Axis(axis), |v| v.fold(f64::NEG_INFINITY, |a, &b| a.max(b))),
                ha.mean_axis(Axis(axis)).unwrap(),
            ];
            for (k, (g, w)) in r.iter().zip(want).enumerate() {
                let what = format!("reduction {k} along {axis} of {shape:?}");
                close(&e.label, &what, &f64s(&g.collect().unwrap()), &w, 1e-4);
            }
        }
    }
    let empty = e.run(|| DArray::<f32>::ones(c, [3, 0, 2], Blocks::new([2, 2, 2])).unwrap());
    let s = e.run(|| empty.sum_axis(1).unwrap());
    assert_eq!(s.collect().unwrap(), ArrayD::<f32>::zeros(IxDyn(&[3, 2])));
    assert_eq!(
        e.run(|| empty.sum_axis(0).unwrap())
            .collect()
            .unwrap()
            .shape(),
        &[0, 2]
    );
    assert!(empty.max_axis(1).is_err());
    let i = e.run(|| DArray::<u32>::ones(c, [6, 5], Blocks::new([4, 4])).unwrap());
    assert_eq!(
        e.run(|| i.sum_axis(1).unwrap())
            .collect1()
            .unwrap()
            .to_vec(),
        vec![5; 6]
    );
}

fn transpose_and_permute(e: &Env) {
    let c = ctx();
    for (shape, block) in cases() {
        let a = e.run(|| DArray::<f32>::rand(c, &shape, Blocks::new(&block), 2).unwrap());
        let ha = a.collect().unwrap();
        assert_eq!(
            e.run(|| a.t()).collect().unwrap(),
            ha.clone().reversed_axes(),
            "{}",
            e.label
        );
        assert_eq!(e.run(|| a.t().t()).collect().unwrap(), ha);
    }
    let a = e.run(|| {
        DArray::<i32>::distribute(
            c,
            &Array::from_shape_fn((4, 5, 6), |(i, j, k)| (i * 100 + j * 10 + k) as i32),
            Blocks::new([3, 2, 4]),
        )
        .unwrap()
    });
    let ha = a.collect().unwrap();
    for axes in [[0, 2, 1], [1, 0, 2], [2, 0, 1], [1, 2, 0]] {
        let p = e.run(|| a.permuted_axes(&axes).unwrap());
        assert_eq!(
            p.collect().unwrap(),
            ha.clone().permuted_axes(IxDyn(&axes)),
            "{}: {axes:?}",
            e.label
        );
    }
    assert!(matches!(
        a.permuted_axes(&[0, 0, 1]),
        Err(ArrayError::InvalidPermutation { .. })
    ));
}

fn slicing(e: &Env) {
    let c = ctx();
    let host = Array::from_shape_fn((17, 13), |(i, j)| (i * 13 + j) as f32);
    let a = e.run(|| DArray::distribute(c, &host, Blocks::new([4, 5])).unwrap());
    for r in [
        [0..17, 0..13],
        [3..9, 2..11],
        [4..8, 5..10],
        [16..17, 12..13],
        [5..5, 0..13],
        [1..16, 7..8],
    ] {
        let s = e.run(|| a.slice(&r).unwrap());
        let want = host
            .slice(ndarray::s![r[0].clone(), r[1].clone()])
            .to_owned()
            .into_dyn();
        assert_eq!(s.collect().unwrap(), want, "{}: slice {r:?}", e.label);
        // A slice is an array like any other.
        let doubled = e.run(|| &s * 2.0);
        assert_eq!(doubled.collect().unwrap(), want.mapv(|x| x * 2.0));
    }
    let s = e.run(|| a.slice_axis(1, 3..4).unwrap());
    assert_eq!(
        s.collect().unwrap(),
        host.slice(ndarray::s![.., 3..4]).to_owned().into_dyn()
    );
    let a3 = e.run(|| DArray::<f32>::rand(c, [6, 7, 8], Blocks::new([4, 3, 5]), 6).unwrap());
    let s3 = e.run(|| a3.slice(&[1..6, 2..7, 0..3]).unwrap());
    assert_eq!(
        s3.collect().unwrap(),
        a3.collect()
            .unwrap()
            .slice(ndarray::s![1..6, 2..7, 0..3])
            .to_owned()
            .into_dyn()
    );
    let err = a.slice(&[0..18, 0..1]).unwrap_err();
    assert!(matches!(err, ArrayError::SliceOutOfBounds { .. }), "{err}");
    let one_range = 0..1;
    assert!(
        a.slice(std::slice::from_ref(&one_range)).is_err(),
        "a 3-D array needs three ranges"
    );
}

fn concatenation(e: &Env) {
    let c = ctx();
    let ha = Array::from_shape_fn((5, 7), |(i, j)| (i * 7 + j) as f32);
    let hb = Array::from_shape_fn((3, 7), |(i, j)| -((i * 7 + j) as f32));
    let hc = Array::from_shape_fn((5, 2), |(i, j)| (100 + i * 2 + j) as f32);
    let (a, b, cc) = e.run(|| {
        (
            DArray::distribute(c, &ha, Blocks::new([2, 3])).unwrap(),
            DArray::distribute(c, &hb, Blocks::new([3, 4])).unwrap(),
            DArray::distribute(c, &hc, Blocks::new([5, 1])).unwrap(),
        )
    });
    let v = e.run(|| DArray::concatenate(&[&a, &b, &a], 0).unwrap());
    assert_eq!(
        v.collect().unwrap(),
        ndarray::concatenate(Axis(0), &[ha.view(), hb.view(), ha.view()])
            .unwrap()
            .into_dyn()
    );
    let h = e.run(|| DArray::concatenate(&[&a, &cc], 1).unwrap());
    assert_eq!(
        h.collect().unwrap(),
        ndarray::concatenate(Axis(1), &[ha.view(), hc.view()])
            .unwrap()
            .into_dyn()
    );
    let empty = e.run(|| DArray::<f32>::zeros(c, [0, 7], Blocks::new([2, 2])).unwrap());
    let w = e.run(|| DArray::concatenate(&[&empty, &b], 0).unwrap());
    assert_eq!(w.collect().unwrap(), hb.clone().into_dyn());
    let err = DArray::concatenate(&[&a, &b], 1).unwrap_err();
    assert!(
        err.to_string().contains("[5, 7]") && err.to_string().contains("[3, 7]"),
        "{err}"
    );
    assert!(matches!(
        DArray::<f32>::concatenate(&[], 0),
        Err(ArrayError::NothingToConcatenate)
    ));
    let x = e.run(|| DArray::<f32>::ones(c, [4], Blocks::new([3])).unwrap());
    let y = e.run(|| DArray::<f32>::zeros(c, [2], Blocks::new([1])).unwrap());
    assert_eq!(
        e.run(|| DArray::concatenate(&[&x, &y], 0).unwrap())
            .collect1()
            .unwrap()
            .to_vec(),
        vec![1.0, 1.0, 1.0, 1.0, 0.0, 0.0]
    );
}

fn rechunking(e: &Env) {
    let c = ctx();
    let a = e.run(|| DArray::<f32>::rand(c, [23, 19], Blocks::new([5, 4]), 12).unwrap());
    let ha = a.collect().unwrap();
    for block in [[23, 19], [1, 19], [6, 6], [5, 4], [7, 3], [100, 100]] {
        let r = e.run(|| a.rechunk(Blocks::new(block)).unwrap());
        assert_eq!(
            r.collect().unwrap(),
            ha,
            "{}: rechunk to {block:?}",
            e.label
        );
        let counts: Vec<usize> = [23, 19]
            .iter()
            .zip(block)
            .map(|(n, b): (&usize, usize)| n.div_ceil(b))
            .collect();
        assert_eq!(r.block_counts(), counts);
    }
    let a3 = e.run(|| DArray::<i32>::fill(c, [4, 5, 6], Blocks::new([3, 3, 3]), 9).unwrap());
    let r = e.run(|| a3.rechunk(AutoBlocks::new()).unwrap());
    assert_eq!(
        r.collect().unwrap(),
        ArrayD::from_elem(IxDyn(&[4, 5, 6]), 9)
    );
}

fn errors_at_the_call(e: &Env) {
    let c = ctx();
    let (a, b) = e.run(|| {
        (
            DArray::<f32>::ones(c, [4, 5], Blocks::new([2, 2])).unwrap(),
            DArray::<f32>::ones(c, [5, 4], Blocks::new([2, 2])).unwrap(),
        )
    });
    let err = (&a + &b).unwrap_err();
    assert!(matches!(err, ArrayError::ShapeMismatch { op: "add", .. }));
    assert!(
        err.to_string().contains("[4, 5]") && err.to_string().contains("[5, 4]"),
        "{err}"
    );
    assert!(a.minimum(&b).is_err() && a.pow(&b).is_err());
    assert!(matches!(
        a.sum_axis(2),
        Err(ArrayError::AxisOutOfRange { axis: 2, ndim: 2 })
    ));
    assert!(matches!(
        DArray::<f32>::zeros(c, [4, 5], Blocks::new([2])),
        Err(ArrayError::BlocksRank { .. })
    ));
    assert!(matches!(
        DArray::<f32>::zeros(c, [4, 5], Blocks::new([2, 0])),
        Err(ArrayError::ZeroBlock { .. })
    ));
    let err = a.map_wgsl("x + floor(x)").unwrap_err();
    // The message is the expression's own, once: no source repeats it.
    assert!(err.to_string().contains("unknown name `floor`"), "{err}");
    assert!(std::error::Error::source(&err).is_none());
    assert!(a.map_wgsl("x }; fn evil() {").is_err());
    assert!(matches!(
        DArray::<f32>::zeros(c, [1; 9], Blocks::new([1; 9])),
        Err(ArrayError::TooManyDimensions { .. })
    ));
}

/// f64 on a device without `SHADER_F64` (the GL adapter) is an error naming the reason,
/// and the context keeps working.
#[test]
fn f64_on_a_device_without_it_is_a_clear_error() {
    let Some(g) = gpu_envs().into_iter().find(|g| !g.f64) else {
        eprintln!("skipped: no GPU without f64 here");
        return;
    };
    let c = ctx();
    let a = g.run(|| DArray::<f64>::ones(c, [10], Blocks::new([4])).unwrap() * 2.0);
    let err = a.collect().unwrap_err();
    let mut text = err.to_string();
    let mut src = std::error::Error::source(&err);
    while let Some(s) = src {
        text += &format!(": {s}");
        src = s.source();
    }
    assert!(text.contains("f64"), "{}: {text}", g.label);
    let ok = g.run(|| DArray::<f32>::ones(c, [10], Blocks::new([4])).unwrap() * 2.0);
    assert_eq!(ok.sum().fetch().unwrap(), 20.0);
}
