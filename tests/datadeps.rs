//! Datadeps: in-place mutation ordered by In, Out and InOut accesses.

mod common;

use std::time::Duration;

use dagger::prelude::*;
use dagger::{Cell, EventKind, In, InOut, Out, Part, PartMut, PartRef, Ref, RefMut};
use ndarray::Array2;
use proptest::prelude::*;

fn ctx(threads: usize) -> Context {
    Context::builder().threads(threads).build().unwrap()
}

fn add_into(mut dst: RefMut<Vec<f64>>, src: Ref<Vec<f64>>) {
    for (d, s) in dst.iter_mut().zip(src.iter()) {
        *d += s;
    }
}

#[test]
fn daggers_add_chain() {
    let ctx = ctx(2);
    let init = |k: f64| (0..8).map(|i| i as f64 * k + 1.0).collect::<Vec<f64>>();
    let (a0, b0, c0) = (init(1.0), init(2.0), init(3.0));
    let (a, b, c, d) = (
        Cell::new(a0.clone()),
        Cell::new(b0.clone()),
        Cell::new(c0.clone()),
        Cell::new(vec![0.0; 8]),
    );
    ctx.spawn_datadeps(|r| {
        r.spawn(add_into, (InOut(&b), In(&a)));
        r.spawn(add_into, (InOut(&c), In(&a)));
        r.spawn(add_into, (InOut(&c), In(&b)));
        r.spawn(
            |mut d: RefMut<Vec<f64>>, c: Ref<Vec<f64>>| d.clone_from(&c),
            (Out(&d), In(&c)),
        );
    })
    .unwrap();
    let want: Vec<f64> = (0..8).map(|i| (a0[i] + b0[i]) + (a0[i] + c0[i])).collect();
    assert_eq!(c.get(), want);
    assert_eq!(d.get(), want);
}

#[test]
fn overlapping_range_writes_compose() {
    let ctx = ctx(2);
    let v = Cell::new(vec![0.0f64; 3]);
    ctx.spawn_datadeps(|r| {
        r.spawn(|mut v: PartMut<Vec<f64>>| v.fill(1.0), (Out(v.rows(0..2)),));
        r.spawn(
            |mut v: PartMut<Vec<f64>>| {
                assert_eq!((v.offset(), v.len()), (1, 2), "rows 1..3 only");
                v.fill(1.0)
            },
            (Out(v.rows(1..3)),),
        );
    })
    .unwrap();
    assert_eq!(v.get(), vec![1.0, 1.0, 1.0]);
}

#[test]
fn region_returns_its_value_or_the_first_error() {
    let ctx = ctx(2);
    let x = Cell::new(1i64);
    assert_eq!(ctx.spawn_datadeps(|_| 42).unwrap(), 42);
    let err = ctx
        .spawn_datadeps(|r| {
            r.spawn(|mut x: RefMut<i64>| *x += 1, (InOut(&x),));
            r.spawn(|_: RefMut<i64>| -> () { panic!("bad block") }, (InOut(&x),));
            r.spawn(|mut x: RefMut<i64>| *x += 100, (InOut(&x),));
            "unused"
        })
        .unwrap_err();
    assert!(err.to_string().contains("bad block"), "{err}");
    assert_eq!(x.get(), 2, "the task after the failure did not run");
    // The context and the cell are usable afterwards.
    ctx.spawn_datadeps(|r| r.spawn(|mut x: RefMut<i64>| *x = 7, (Out(&x),)))
        .unwrap();
    assert_eq!(x.get(), 7);
}

#[test]
fn a_cell_written_twice_by_one_task_is_an_error() {
    let ctx = ctx(1);
    let x = Cell::new(0i32);
    let e = ctx
        .spawn_datadeps(|r| r.spawn(|_: RefMut<i32>, _: Ref<i32>| (), (InOut(&x), In(&x))))
        .unwrap_err();
    assert!(e.to_string().contains("same cell"), "{e}");
}

#[test]
fn overlap_rules() {
    let r = |a: std::ops::Range<usize>| Part::Rect {
        rows: a,
        cols: 0..usize::MAX,
    };
    assert!(!r(0..2).overlaps(&r(2..4)), "disjoint rows");
    assert!(r(0..3).overlaps(&r(2..4)));
    let lower = Part::Lower { strict: false };
    let upper = Part::Upper { strict: false };
    let slower = Part::Lower { strict: true };
    let supper = Part::Upper { strict: true };
    assert!(lower.overlaps(&upper), "both include the diagonal");
    assert!(!slower.overlaps(&supper));
    assert!(!slower.overlaps(&upper));
    assert!(!lower.overlaps(&supper));
    let block =
        |r: std::ops::Range<usize>, c: std::ops::Range<usize>| Part::Rect { rows: r, cols: c };
    assert!(!block(0..2, 2..4).overlaps(&lower), "strictly upper block");
    assert!(block(2..4, 0..2).overlaps(&slower));
    assert!(block(1..2, 1..2).overlaps(&lower), "a diagonal element");
    assert!(!block(1..2, 1..2).overlaps(&slower));
}

#[test]
fn disjoint_writes_do_not_wait_for_each_other() {
    let ctx = ctx(2);
    let v = Cell::new(vec![0u8; 4]);
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let rx = std::sync::Mutex::new(rx);
    let gate = ctx.spawn(move || rx.lock().unwrap().recv().unwrap(), ());
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let d2 = done.clone();
    let c2 = ctx.clone();
    let checker = std::thread::spawn(move || {
        c2.spawn_datadeps(|r| {
            r.spawn(
                |_: (), mut v: PartMut<Vec<u8>>| v.fill(1),
                (&gate, Out(v.rows(0..2))),
            );
            let b = r.spawn(|mut v: PartMut<Vec<u8>>| v.fill(2), (Out(v.rows(2..4)),));
            b.wait();
            d2.store(true, std::sync::atomic::Ordering::SeqCst);
            let c = r.spawn(|mut v: PartMut<Vec<u8>>| v.fill(3), (Out(v.rows(1..3)),));
            std::thread::sleep(Duration::from_millis(50));
            assert!(
                !c.is_ready(),
                "an overlapping write waits for the gated one"
            );
        })
        .unwrap();
        v
    });
    let t0 = std::time::Instant::now();
    while !done.load(std::sync::atomic::Ordering::SeqCst) {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "the disjoint write waited"
        );
        std::thread::yield_now();
    }
    std::thread::sleep(Duration::from_millis(100));
    tx.send(()).unwrap();
    let v = checker.join().unwrap();
    assert_eq!(v.get(), vec![1, 3, 3, 2]);
}

#[test]
fn readers_of_one_block_run_in_parallel() {
    let ctx = ctx(2);
    ctx.enable_logging();
    let x = Cell::new(vec![1.0f64; 1000]);
    ctx.spawn_datadeps(|r| {
        for _ in 0..4 {
            r.spawn(
                |x: Ref<Vec<f64>>| {
                    std::thread::sleep(Duration::from_millis(40));
                    x.iter().sum::<f64>()
                },
                (In(&x),),
            );
        }
    })
    .unwrap();
    let mut ev: Vec<_> = ctx
        .fetch_logs()
        .into_iter()
        .filter(|e| e.kind == EventKind::Task)
        .collect();
    ev.sort_by_key(|e| e.start_ns);
    assert_eq!(ev.len(), 4);
    let overlapping = ev
        .windows(2)
        .filter(|w| w[1].start_ns < w[0].end_ns)
        .count();
    assert!(overlapping >= 1, "some readers overlap in time: {ev:?}");
}

// ----- randomized: regions equal sequential execution ---------------------------------

const N: usize = 4;

#[derive(Clone, Debug)]
enum Reg {
    Rows(usize, usize),
    Cols(usize, usize),
    Block(usize, usize, usize, usize),
    Lower(bool),
    Upper(bool),
    All,
}

impl Reg {
    fn contains(&self, i: usize, j: usize) -> bool {
        match *self {
            Reg::Rows(a, b) => (a..b).contains(&i),
            Reg::Cols(a, b) => (a..b).contains(&j),
            Reg::Block(a, b, c, d) => (a..b).contains(&i) && (c..d).contains(&j),
            Reg::Lower(strict) => {
                if strict {
                    j < i
                } else {
                    j <= i
                }
            }
            Reg::Upper(strict) => {
                if strict {
                    j > i
                } else {
                    j >= i
                }
            }
            Reg::All => true,
        }
    }
    fn view<'a>(&self, c: &'a Cell<Array2<i64>>) -> dagger::View<'a, Array2<i64>> {
        match *self {
            Reg::Rows(a, b) => c.rows(a..b),
            Reg::Cols(a, b) => c.cols(a..b),
            Reg::Block(a, b, x, y) => c.block(a..b, x..y),
            Reg::Lower(false) => c.lower(),
            Reg::Lower(true) => c.strict_lower(),
            Reg::Upper(false) => c.upper(),
            Reg::Upper(true) => c.strict_upper(),
            Reg::All => c.all(),
        }
    }
}

#[derive(Clone, Debug)]
struct Op {
    write: (usize, Reg, bool), // cell, region, overwrite (Out) or update (InOut)
    read: Option<(usize, Reg)>,
    k: i64,
}

fn reg() -> impl Strategy<Value = Reg> {
    let r = (0..N, 1..=N).prop_map(|(a, l)| (a, (a + l).min(N)));
    prop_oneof![
        r.clone().prop_map(|(a, b)| Reg::Rows(a, b)),
        r.clone().prop_map(|(a, b)| Reg::Cols(a, b)),
        (r.clone(), r).prop_map(|((a, b), (c, d))| Reg::Block(a, b, c, d)),
        any::<bool>().prop_map(Reg::Lower),
        any::<bool>().prop_map(Reg::Upper),
        Just(Reg::All),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    (
        (0..3usize, reg(), any::<bool>()),
        proptest::option::of((0..3usize, reg())),
        -5i64..5,
    )
        .prop_map(|(w, r, k)| Op {
            read: r.filter(|(c, _)| *c != w.0),
            write: w,
            k,
        })
}

fn apply(op: &Op, dst: &mut [i64], src: Option<&[i64]>) {
    let extra: i64 = match (&op.read, src) {
        (Some((_, r)), Some(s)) => (0..N * N)
            .filter(|e| r.contains(e / N, e % N))
            .map(|e| s[e])
            .fold(0i64, |a, b| a.wrapping_add(b)),
        _ => 0,
    };
    for (e, d) in dst.iter_mut().enumerate() {
        if op.write.1.contains(e / N, e % N) {
            *d = if op.write.2 {
                op.k.wrapping_add(extra)
            } else {
                d.wrapping_mul(3).wrapping_add(op.k).wrapping_add(extra)
            };
        }
    }
}

/// `apply` on the parts a region task holds: it reads and writes nothing else.
fn apply_parts(op: &Op, dst: &mut PartMut<Array2<i64>>, src: Option<&PartRef<Array2<i64>>>) {
    let extra: i64 = src.map_or(0, |s| {
        s.indices()
            .map(|(i, j)| *s.get(i, j).expect("in the part"))
            .fold(0i64, |a, b| a.wrapping_add(b))
    });
    dst.for_each_mut(|_, _, d| {
        *d = if op.write.2 {
            op.k.wrapping_add(extra)
        } else {
            d.wrapping_mul(3).wrapping_add(op.k).wrapping_add(extra)
        };
    });
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, .. ProptestConfig::default() })]

    #[test]
    fn random_regions_equal_sequential_execution(ops in proptest::collection::vec(op(), 1..40), threads in 1usize..4) {
        let init: Vec<Vec<i64>> = (0..3).map(|c| (0..(N * N) as i64).map(|e| e * 7 + c).collect()).collect();
        let mut seq = init.clone();
        for o in &ops {
            let src = o.read.as_ref().map(|(c, _)| seq[*c].clone());
            apply(o, &mut seq[o.write.0], src.as_deref());
        }
        let cells: Vec<Cell<Array2<i64>>> = init
            .iter()
            .map(|v| Cell::new(Array2::from_shape_vec((N, N), v.clone()).unwrap()))
            .collect();
        let ctx = ctx(threads);
        ctx.spawn_datadeps(|r| {
            for o in &ops {
                let w = o.write.1.view(&cells[o.write.0]);
                let o2 = o.clone();
                match &o.read {
                    Some((c, reg)) => {
                        let rd = reg.view(&cells[*c]);
                        if o.write.2 {
                            r.spawn(move |mut d: PartMut<Array2<i64>>, s: PartRef<Array2<i64>>| apply_parts(&o2, &mut d, Some(&s)), (Out(w), In(rd)));
                        } else {
                            r.spawn(move |mut d: PartMut<Array2<i64>>, s: PartRef<Array2<i64>>| apply_parts(&o2, &mut d, Some(&s)), (InOut(w), In(rd)));
                        }
                    }
                    None => {
                        if o.write.2 {
                            r.spawn(move |mut d: PartMut<Array2<i64>>| apply_parts(&o2, &mut d, None), (Out(w),));
                        } else {
                            r.spawn(move |mut d: PartMut<Array2<i64>>| apply_parts(&o2, &mut d, None), (InOut(w),));
                        }
                    }
                }
            }
        }).unwrap();
        for c in 0..3 {
            prop_assert_eq!(cells[c].get().iter().copied().collect::<Vec<_>>(), seq[c].clone(), "cell {}", c);
        }
    }
}

// ----- parts of one cell held at the same time ------------------------------------------

#[test]
fn writers_of_disjoint_rows_run_at_the_same_time() {
    common::within(60, "disjoint rows", || {
        let ctx = ctx(2);
        let v = Cell::new(vec![0u32; 2]);
        // Warm the threads up so the timing measures the region only.
        ctx.spawn(|| (), ()).fetch().unwrap();
        let t0 = std::time::Instant::now();
        ctx.spawn_datadeps(|r| {
            for k in 0..2usize {
                r.spawn(
                    move |mut v: PartMut<Vec<u32>>| {
                        assert_eq!((v.offset(), v.len()), (k, 1), "its own row only");
                        std::thread::sleep(Duration::from_millis(300));
                        v[0] = k as u32 + 1;
                    },
                    (InOut(v.rows(k..k + 1)),),
                );
            }
        })
        .unwrap();
        let took = t0.elapsed();
        assert_eq!(v.get(), vec![1, 2]);
        assert!(took >= Duration::from_millis(300), "{took:?}");
        assert!(
            took < Duration::from_millis(500),
            "they ran one after the other: {took:?}"
        );
    });
}

#[test]
fn writers_of_strict_triangles_run_at_the_same_time() {
    common::within(60, "strict triangles", || {
        let ctx = ctx(2);
        let m = Cell::new(Array2::<i32>::zeros((4, 4)));
        ctx.spawn(|| (), ()).fetch().unwrap();
        let t0 = std::time::Instant::now();
        ctx.spawn_datadeps(|r| {
            r.spawn(
                |mut u: PartMut<Array2<i32>>| {
                    assert!(u.get_mut(1, 0).is_none() && u.get_mut(2, 2).is_none());
                    std::thread::sleep(Duration::from_millis(300));
                    u.for_each_mut(|i, j, x| *x = (10 * i + j) as i32);
                },
                (Out(m.strict_upper()),),
            );
            r.spawn(
                |mut l: PartMut<Array2<i32>>| {
                    assert!(l.get_mut(0, 1).is_none() && l.get(3, 3).is_none());
                    std::thread::sleep(Duration::from_millis(300));
                    l.for_each_mut(|_, _, x| *x = -1);
                },
                (Out(m.strict_lower()),),
            );
        })
        .unwrap();
        let took = t0.elapsed();
        assert!(took < Duration::from_millis(500), "{took:?}");
        let got = m.get();
        for i in 0..4 {
            for j in 0..4 {
                let want = match j.cmp(&i) {
                    std::cmp::Ordering::Greater => (10 * i + j) as i32,
                    std::cmp::Ordering::Less => -1,
                    std::cmp::Ordering::Equal => 0,
                };
                assert_eq!(got[(i, j)], want, "({i}, {j})");
            }
        }
    });
}

#[test]
fn writers_of_overlapping_rows_still_take_turns() {
    common::within(60, "overlapping rows", || {
        let ctx = ctx(2);
        let v = Cell::new(vec![0u32; 3]);
        let t0 = std::time::Instant::now();
        ctx.spawn_datadeps(|r| {
            r.spawn(
                |mut v: PartMut<Vec<u32>>| {
                    std::thread::sleep(Duration::from_millis(150));
                    v.fill(1)
                },
                (Out(v.rows(0..2)),),
            );
            r.spawn(
                |mut v: PartMut<Vec<u32>>| {
                    std::thread::sleep(Duration::from_millis(150));
                    v.iter_mut().for_each(|x| *x += 10)
                },
                (InOut(v.rows(1..3)),),
            );
        })
        .unwrap();
        assert!(t0.elapsed() >= Duration::from_millis(300));
        assert_eq!(v.get(), vec![1, 11, 10]);
    });
}

#[test]
fn reading_the_whole_cell_waits_for_a_part_being_written() {
    common::within(60, "whole read after part write", || {
        let ctx = ctx(2);
        let v = Cell::new(vec![0u32; 2]);
        let (started_tx, started_rx) = std::sync::mpsc::channel();
        let region = {
            let (ctx, v) = (ctx.clone(), v.clone());
            std::thread::spawn(move || {
                ctx.spawn_datadeps(|r| {
                    r.spawn(
                        move |mut p: PartMut<Vec<u32>>| {
                            started_tx.send(()).unwrap();
                            std::thread::sleep(Duration::from_millis(200));
                            p[0] = 7;
                        },
                        (Out(v.rows(1..2)),),
                    );
                })
                .unwrap()
            })
        };
        started_rx.recv().unwrap();
        // Outside any region: the read waits for the part to be given back.
        assert_eq!(v.get(), vec![0, 7]);
        region.join().unwrap();
    });
}

#[test]
fn try_spawn_fails_the_region_without_a_panic() {
    let ctx = ctx(2);
    let x = Cell::new(5i64);
    let y = Cell::new(0i64);
    let err = ctx
        .spawn_datadeps(|r| {
            r.try_spawn(
                |x: Ref<i64>| -> Result<i64, String> {
                    if *x > 3 {
                        Err(format!("{} is too large", *x))
                    } else {
                        Ok(*x)
                    }
                },
                (In(&x),),
            );
            let bad = r.try_spawn(
                |mut x: RefMut<i64>| "nope".parse::<i64>().map(|v| *x = v),
                (InOut(&x),),
            );
            r.spawn(|mut x: RefMut<i64>| *x += 1, (InOut(&x),));
            let ok = r.try_spawn(
                |mut y: RefMut<i64>| -> Result<(), std::io::Error> {
                    *y = 1;
                    Ok(())
                },
                (InOut(&y),),
            );
            (bad, ok)
        })
        .unwrap_err();
    assert!(
        err.to_string().contains("5 is too large"),
        "the first failure: {err}"
    );
    assert!(!matches!(err, TaskError::Panicked { .. }), "{err:?}");
    assert_eq!(x.get(), 5, "the writer after the failing one did not run");
    assert_eq!(y.get(), 1, "independent tasks ran");
}

/// A value whose drop is seen.
struct Watched(
    &'static std::sync::atomic::AtomicBool,
    #[allow(dead_code)] Vec<u8>,
);

impl Drop for Watched {
    fn drop(&mut self) {
        self.0.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

#[test]
fn a_finished_tasks_value_that_nothing_reads_is_freed_while_the_region_runs() {
    use std::sync::atomic::{AtomicBool, Ordering};
    static DROPPED: AtomicBool = AtomicBool::new(false);
    let ctx = ctx(1);
    let x = Cell::new(0u32);
    let later = ctx
        .spawn_datadeps(|r| {
            let first = r.spawn(
                |mut x: RefMut<u32>| {
                    *x += 1;
                    Watched(&DROPPED, vec![0; 1 << 20])
                },
                (Out(&x),),
            );
            drop(first);
            // Ordered after the first task; by the time it runs, nothing holds the first
            // task's value any more, the region included.
            r.spawn(
                |x: Ref<u32>| {
                    let t = std::time::Instant::now();
                    while !DROPPED.load(Ordering::SeqCst) && t.elapsed() < Duration::from_secs(5) {
                        std::thread::sleep(Duration::from_millis(1));
                    }
                    (*x, DROPPED.load(Ordering::SeqCst))
                },
                (In(&x),),
            )
        })
        .unwrap();
    assert_eq!(
        later.fetch().unwrap(),
        (1, true),
        "the region kept the value"
    );
}
