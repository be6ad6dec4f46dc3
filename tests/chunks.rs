//! Chunks: placement, collection, and freeing data when the last handle drops.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use dagger::prelude::*;
use dagger::ProcessorKind;

/// Counts its live instances.
struct Counted {
    live: Arc<AtomicUsize>,

    payload: Vec<u8>,
}

impl Counted {
    fn new(live: &Arc<AtomicUsize>, peak: &Arc<AtomicUsize>) -> Self {
        let now = live.fetch_add(1, Ordering::SeqCst) + 1;
        peak.fetch_max(now, Ordering::SeqCst);
        Counted {
            live: live.clone(),

            payload: vec![0; 1024],
        }
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.live.fetch_sub(1, Ordering::SeqCst);
    }
}

#[test]
fn long_chain_with_dropped_handles_keeps_o1_values_alive() {
    let ctx = Context::builder().threads(2).build().unwrap();
    let live = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let (l, p) = (live.clone(), peak.clone());
    let mut prev: DTask<Counted> = ctx.spawn(move || Counted::new(&l, &p), ());
    for _ in 0..20_000 {
        let (l, p) = (live.clone(), peak.clone());
        prev = ctx.spawn(
            move |x: Arc<Counted>| {
                let c = Counted::new(&l, &p);
                assert_eq!(x.payload.len(), c.payload.len());
                c
            },
            (prev.shared(),),
        );
    }
    prev.wait();
    assert_eq!(
        live.load(Ordering::SeqCst),
        1,
        "only the last value is alive"
    );
    assert!(
        peak.load(Ordering::SeqCst) <= 8,
        "peak {} live values for a chain",
        peak.load(Ordering::SeqCst)
    );
    drop(prev);
    // The worker that ran the last task lets go of it just after waking us.
    let t0 = std::time::Instant::now();
    while live.load(Ordering::SeqCst) != 0 && t0.elapsed() < std::time::Duration::from_secs(5) {
        std::thread::yield_now();
    }
    assert_eq!(live.load(Ordering::SeqCst), 0, "freed with the last handle");
}

#[test]
fn to_chunk_collect_and_placement() {
    let ctx = Context::builder().threads(2).build().unwrap();
    let c = ctx.to_chunk(vec![1.5f64, 2.5]);
    assert_eq!(c.collect().unwrap(), vec![1.5, 2.5]);
    assert!(c.memory_space().is_host());
    let t = ctx.processors_of_kind(ProcessorKind::Thread)[1];
    let placed = ctx.to_chunk_on(String::from("hi"), t).unwrap();
    assert_eq!(placed.collect().unwrap(), "hi");
    let len = ctx.spawn(|s: String| s.len(), (&placed,));
    assert_eq!(len.fetch().unwrap(), 2);
    let shared = ctx.spawn(|v: Arc<Vec<f64>>| v.len(), (c.shared(),));
    assert_eq!(shared.fetch().unwrap(), 2);
    // A chunk's value lives as long as the chunk.
    let live = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let chunk = ctx.to_chunk(Counted::new(&live, &peak));
    let task = ctx.spawn(|c: Arc<Counted>| c.payload.len(), (chunk.shared(),));
    assert_eq!(task.fetch().unwrap(), 1024);
    assert_eq!(live.load(Ordering::SeqCst), 1);
    drop(chunk);
    assert_eq!(live.load(Ordering::SeqCst), 0);
}
