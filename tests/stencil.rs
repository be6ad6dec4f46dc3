//! Stencils against a direct loop over the whole array: every boundary condition, 1-D, 2-D
//! and 3-D, block sizes that do and do not divide the shape, halos wider than a block, on
//! the CPU scope, each GPU and the default scope; iterated stencils against repeated loops.

mod common;

use dagger::prelude::*;
use dagger::{ArrayError, Boundary, Stencil};
use ndarray::{ArrayD, IxDyn};

fn scopes(ctx: &Context) -> Vec<(Scope, bool)> {
    let mut v = vec![(Scope::cpu(), true), (Scope::default_scope(), true)];
    let gpus = common::gpus_or_skip(ctx, "the GPU scopes");
    for info in &gpus {
        v.push((Scope::gpu(info.index), info.shader_f64));
    }
    if !gpus.is_empty() {
        // CPU threads and GPUs together; f64 tiles avoid the GPUs without f64.
        v.push((Scope::union([Scope::cpu(), Scope::gpus(..)]).unwrap(), true));
    }
    v
}

/// Where index `g` of an extent `n` reads from, as the documentation says.
fn resolve(g: isize, n: usize, b: Boundary<f64>) -> Option<usize> {
    let n = n as isize;
    if (0..n).contains(&g) {
        return Some(g as usize);
    }
    match b {
        Boundary::Constant(_) => None,
        Boundary::Wrap => Some(g.rem_euclid(n) as usize),
        Boundary::Clamp => Some(if g < 0 { 0 } else { n as usize - 1 }),
        Boundary::Reflect => {
            // Mirror step by step about the edges.
            let mut g = g;
            while !(0..n).contains(&g) {
                if n == 1 {
                    return Some(0);
                }
                g = if g < 0 { -g } else { 2 * (n - 1) - g };
            }
            Some(g as usize)
        }
        _ => unreachable!(),
    }
}

/// The stencil by a direct loop over every element and tap.
fn direct(x: &ArrayD<f64>, s: &Stencil, b: Boundary<f64>) -> ArrayD<f64> {
    let shape = x.shape().to_vec();
    ArrayD::from_shape_fn(IxDyn(&shape), |idx| {
        let mut acc = 0.0;
        for (off, w) in s.taps() {
            let mut at = Vec::new();
            let mut constant = false;
            for d in 0..shape.len() {
                match resolve(idx[d] as isize + off[d], shape[d], b) {
                    Some(i) => at.push(i),
                    None => constant = true,
                }
            }
            acc += w * if constant {
                match b {
                    Boundary::Constant(c) => c,
                    _ => unreachable!(),
                }
            } else {
                x[IxDyn(&at)]
            };
        }
        acc
    })
}

fn random(shape: &[usize], seed: u64) -> ArrayD<f64> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    ArrayD::from_shape_fn(IxDyn(shape), |_| {
        s ^= s >> 12;
        s ^= s << 25;
        s ^= s >> 27;
        ((s.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 40) as f64 / (1u64 << 24) as f64) - 0.5
    })
}

const BOUNDARIES: [Boundary<f64>; 4] = [
    Boundary::Wrap,
    Boundary::Constant(0.75),
    Boundary::Clamp,
    Boundary::Reflect,
];

fn stencils() -> Vec<(Vec<usize>, Vec<usize>, Stencil)> {
    vec![
        // 1-D, radius 2 (wider than a block of 1), asymmetric weights.
        (
            vec![11],
            vec![3],
            Stencil::new([(vec![-2], 0.5), (vec![0], -1.0), (vec![1], 2.0)]).unwrap(),
        ),
        (
            vec![7],
            vec![1],
            Stencil::new([(vec![-2], 0.5), (vec![2], 0.25)]).unwrap(),
        ),
        // 2-D Jacobi, blocks that divide the shape and that do not.
        (vec![12, 8], vec![4, 4], Stencil::jacobi_5pt()),
        (vec![13, 9], vec![5, 4], Stencil::jacobi_5pt()),
        // 2-D with corners.
        (
            vec![6, 5],
            vec![4, 2],
            Stencil::new([(vec![-1, -1], 1.0), (vec![1, 1], -0.5), (vec![0, 0], 0.125)]).unwrap(),
        ),
        // 3-D 7-point.
        (
            vec![5, 4, 6],
            vec![2, 3, 4],
            Stencil::new([
                (vec![0, 0, 0], -6.0),
                (vec![1, 0, 0], 1.0),
                (vec![-1, 0, 0], 1.0),
                (vec![0, 1, 0], 1.0),
                (vec![0, -1, 0], 1.0),
                (vec![0, 0, 1], 1.0),
                (vec![0, 0, -1], 1.0),
            ])
            .unwrap(),
        ),
    ]
}

#[test]
fn stencils_match_a_direct_loop_for_every_boundary() {
    common::within(600, "stencils", || {
        let ctx = Context::builder().threads(2).build().unwrap();
        for (scope, f64_ok) in scopes(&ctx) {
            for (shape, block, s) in stencils() {
                let x = random(&shape, shape.iter().product::<usize>() as u64);
                for b in BOUNDARIES {
                    let want = direct(&x, &s, b);
                    let what = format!("{shape:?} blocks {block:?} {b:?} on {scope}");
                    with_options(Options::new().scope(scope.clone()), || {
                        let a =
                            DArray::distribute(&ctx, &x.mapv(|v| v as f32), Blocks::new(&block))
                                .unwrap();
                        let b32 = match b {
                            Boundary::Constant(c) => Boundary::Constant(c as f32),
                            Boundary::Wrap => Boundary::Wrap,
                            Boundary::Clamp => Boundary::Clamp,
                            _ => Boundary::Reflect,
                        };
                        let got = a.stencil(&s, b32).unwrap().collect().unwrap();
                        for (g, w) in got.iter().zip(&want) {
                            assert!((*g as f64 - w).abs() < 1e-5, "{what}: {g} vs {w}");
                        }
                        if f64_ok {
                            let a = DArray::distribute(&ctx, &x, Blocks::new(&block)).unwrap();
                            let got = a.stencil(&s, b).unwrap().collect().unwrap();
                            for (g, w) in got.iter().zip(&want) {
                                assert!((g - w).abs() < 1e-13, "{what} (f64): {g} vs {w}");
                            }
                        }
                    });
                }
            }
        }
    });
}

#[test]
fn iterated_jacobi_matches_repeated_loops() {
    common::within(600, "iterated stencils", || {
        let ctx = Context::builder().threads(2).build().unwrap();
        let x = random(&[10, 7], 3);
        for (scope, _) in scopes(&ctx) {
            for b in BOUNDARIES {
                let mut want = x.clone();
                for _ in 0..5 {
                    want = direct(&want, &Stencil::jacobi_5pt(), b);
                }
                let b32 = match b {
                    Boundary::Constant(c) => Boundary::Constant(c as f32),
                    Boundary::Wrap => Boundary::Wrap,
                    Boundary::Clamp => Boundary::Clamp,
                    _ => Boundary::Reflect,
                };
                let got = with_options(Options::new().scope(scope.clone()), || {
                    DArray::distribute(&ctx, &x.mapv(|v| v as f32), Blocks::new([4, 3]))
                        .unwrap()
                        .stencil_iter(&Stencil::jacobi_5pt(), b32, 5)
                        .unwrap()
                        .collect()
                        .unwrap()
                });
                for (g, w) in got.iter().zip(&want) {
                    assert!((*g as f64 - w).abs() < 1e-5, "{b:?} on {scope}: {g} vs {w}");
                }
            }
        }
    });
}

#[test]
fn an_iterated_stencil_on_a_gpu_runs_every_task_there() {
    let ctx = Context::builder().threads(2).build().unwrap();
    if common::gpus_or_skip(&ctx, "stencil placement").is_empty() {
        return;
    }
    let gpu = ctx.processors_of_kind(dagger::ProcessorKind::Wgpu)[0];
    let a = DArray::<f32>::ones(&ctx, [16, 16], Blocks::new([8, 8])).unwrap();
    a.wait().unwrap();
    ctx.enable_logging();
    let _ = ctx.fetch_logs();
    let b = with_options(Options::new().scope(Scope::gpu(0)), || {
        a.stencil_iter(&Stencil::jacobi_5pt(), Boundary::Wrap, 3)
            .unwrap()
    });
    b.wait().unwrap();
    let tasks: Vec<_> = ctx
        .fetch_logs()
        .into_iter()
        .filter(|e| e.kind == dagger::EventKind::Task)
        .collect();
    assert!(!tasks.is_empty());
    assert!(
        tasks.iter().all(|e| e.processor == gpu),
        "every task on the GPU"
    );
    assert!(b.collect2().unwrap().iter().all(|&x| x == 1.0));
}

#[test]
fn stencils_that_do_not_fit_are_errors() {
    let ctx = Context::builder().threads(1).build().unwrap();
    let a = DArray::<f32>::ones(&ctx, [4, 4], Blocks::new([2, 2])).unwrap();
    let one_d = Stencil::new([(vec![1], 1.0)]).unwrap();
    assert!(matches!(
        a.stencil(&one_d, Boundary::Wrap),
        Err(ArrayError::InvalidStencil { .. })
    ));
    assert!(matches!(
        Stencil::new([]),
        Err(ArrayError::InvalidStencil { .. })
    ));
    assert!(matches!(
        Stencil::new([(vec![], 1.0)]),
        Err(ArrayError::InvalidStencil { .. })
    ));
}

#[test]
fn passes_of_several_steps_equal_one_step_at_a_time_bit_for_bit() {
    common::within(600, "stencil passes", || {
        let ctx = Context::builder().threads(2).gpus(false).build().unwrap();
        let mut cases = stencils();
        // Blocks large enough to be stepped in strips (f64 rows of ~320 elements), one
        // dividing the shape and one not.
        cases.push((vec![650, 300], vec![300, 300], Stencil::jacobi_5pt()));
        cases.push((vec![400, 256], vec![200, 256], Stencil::jacobi_5pt()));
        for (shape, blocks, st) in cases {
            let x = random(&shape, 11);
            for b in [Boundary::Constant(0.75), Boundary::Wrap] {
                for iters in [1usize, 2, 3, 7, 9] {
                    let a = DArray::distribute(&ctx, &x, Blocks::new(blocks.clone())).unwrap();
                    let nblocks: usize = shape
                        .iter()
                        .zip(&blocks)
                        .map(|(n, b)| n.div_ceil(*b))
                        .product();
                    ctx.enable_logging();
                    let _ = ctx.fetch_logs();
                    let fused = a.stencil_iter(&st, b, iters).unwrap().collect().unwrap();
                    let passes = ctx
                        .fetch_logs()
                        .iter()
                        .filter(|e| e.kind == dagger::EventKind::Task && &*e.name == "stencil")
                        .count();
                    let mut one = a.clone();
                    for _ in 0..iters {
                        one = one.stencil(&st, b).unwrap();
                    }
                    let one = one.collect().unwrap();
                    let same = fused
                        .iter()
                        .zip(one.iter())
                        .all(|(f, o)| f.to_bits() == o.to_bits());
                    assert!(same, "{shape:?} in {blocks:?}, {b:?}, {iters} steps");
                    if iters > 1 {
                        assert!(
                            passes < iters * nblocks,
                            "several steps per pass: {passes} block tasks for {iters} steps \
                             of {nblocks} blocks"
                        );
                    }
                }
            }
        }
    });
}
