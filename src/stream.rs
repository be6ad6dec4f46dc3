//! Streaming: stages that run again and again, each taking the previous one's outputs
//! through a bounded buffer (Dagger.jl's `spawn_streaming`).
//!
//! Each stage is a long-running task placed like any task (within its options' scope). It
//! takes a small share of its processor while it waits for items, so every stage of a
//! pipeline runs at once however few processors there are. A full buffer blocks the stage
//! that fills it (back-pressure), so memory stays bounded by the buffers whatever the
//! number of items. The stream finishes when its source returns `None`: each stage then
//! drains its input and ends. A stage that fails stops the whole stream: the stages before
//! it stop producing, those after it end with an error saying the stream stopped, and
//! [`Context::spawn_streaming`] returns the failure.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crossbeam_channel::{bounded, Receiver};

use crate::context::Context;
use crate::error::TaskError;
use crate::options::Options;
use crate::processor::TaskFailure;
use crate::sched::TaskCore;
use crate::task::DTask;

/// The buffer between two stages when none is set.
pub const DEFAULT_STREAM_BUFFER: usize = 16;

/// The output of a stream stage, consumed by the next stage (once).
#[must_use = "a stream's items go nowhere unless a stage consumes it"]
pub struct Stream<T> {
    rx: Receiver<T>,
    stage: usize,
}

impl<T> std::fmt::Debug for Stream<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stream")
            .field("stage", &self.stage)
            .finish()
    }
}

/// Shared by the stages of one streaming block.
#[derive(Default)]
struct Control {
    stopped: AtomicBool,
    /// The stage whose failure stopped the stream.
    cause: parking_lot::Mutex<Option<usize>>,
}

impl Control {
    fn stop(&self, stage: usize) {
        self.cause.lock().get_or_insert(stage);
        self.stopped.store(true, Ordering::Release);
    }
    fn is_stopped(&self) -> bool {
        self.stopped.load(Ordering::Acquire)
    }
}

fn stopped_err(stage: usize) -> TaskFailure {
    TaskFailure::msg(format!(
        "stream stage {stage} stopped: an earlier stage of the stream failed"
    ))
}

/// Adds stages to a stream (see [`Context::spawn_streaming`]).
pub struct StreamBuilder<'c> {
    ctx: &'c Context,
    buffer: usize,
    control: Arc<Control>,
    stages: Vec<Arc<TaskCore>>,
}

impl std::fmt::Debug for StreamBuilder<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamBuilder")
            .field("buffer", &self.buffer)
            .field("stages", &self.stages.len())
            .finish()
    }
}

impl StreamBuilder<'_> {
    /// The capacity (in items, at least 1) of the buffers after the stages added from now
    /// on (default [`DEFAULT_STREAM_BUFFER`]).
    pub fn buffer(&mut self, items: usize) -> &mut Self {
        self.buffer = items.max(1);
        self
    }

    fn stage_options(&self, opts: Options, what: &str) -> Options {
        let n = self.stages.len();
        let opts = if opts.get_occupancy().is_none() {
            opts.occupancy(0.0)
        } else {
            opts
        };
        if opts.get_name().is_none() {
            opts.name(format!("stream {what} {n}"))
        } else {
            opts
        }
    }

    fn add(
        &mut self,
        opts: Options,
        run: impl FnOnce() -> Result<(), TaskFailure> + Send + 'static,
    ) {
        let t = self
            .ctx
            .try_spawn_with(opts, move || run().map_err(TaskFailureError), ());
        self.added(t.core);
    }

    /// Records a stage's task; one that failed at once (no processor in its scope) stops
    /// the stream before the next stage starts.
    fn added(&mut self, core: Arc<TaskCore>) {
        if matches!(core.result.get(), Some(Err(_))) {
            self.control.stop(self.stages.len());
        }
        self.stages.push(core);
    }

    /// A source: `next()` is called again and again, each item going into the stream,
    /// until it returns `None`, which finishes the stream.
    pub fn source<T, F>(&mut self, next: F) -> Stream<T>
    where
        T: Send + 'static,
        F: FnMut() -> Option<T> + Send + 'static,
    {
        self.source_with(Options::new(), next)
    }

    /// [`source`](Self::source) with options (such as a scope) for the stage.
    pub fn source_with<T, F>(&mut self, opts: Options, mut next: F) -> Stream<T>
    where
        T: Send + 'static,
        F: FnMut() -> Option<T> + Send + 'static,
    {
        let (tx, rx) = bounded(self.buffer);
        let control = self.control.clone();
        let stage = self.stages.len();
        let opts = self.stage_options(opts, "source");
        self.add(opts, move || {
            while !control.is_stopped() {
                let Some(item) = guard(&control, stage, || Ok(next()))? else {
                    break;
                };
                if tx.send(item).is_err() {
                    break;
                }
            }
            Ok(())
        });
        Stream { rx, stage }
    }

    /// A stage: `f` is called on each item of `input`, its value going into the returned
    /// stream.
    pub fn stage<T, U, F>(&mut self, input: Stream<T>, mut f: F) -> Stream<U>
    where
        T: Send + 'static,
        U: Send + 'static,
        F: FnMut(T) -> U + Send + 'static,
    {
        self.try_stage_with(Options::new(), input, move |x| {
            Ok::<U, std::convert::Infallible>(f(x))
        })
    }

    /// [`stage`](Self::stage) with options (such as a scope) for the stage.
    pub fn stage_with<T, U, F>(&mut self, opts: Options, input: Stream<T>, mut f: F) -> Stream<U>
    where
        T: Send + 'static,
        U: Send + 'static,
        F: FnMut(T) -> U + Send + 'static,
    {
        self.try_stage_with(opts, input, move |x| {
            Ok::<U, std::convert::Infallible>(f(x))
        })
    }

    /// A fallible stage: an `Err` from `f` fails the stage and stops the stream.
    pub fn try_stage<T, U, E, F>(&mut self, input: Stream<T>, f: F) -> Stream<U>
    where
        T: Send + 'static,
        U: Send + 'static,
        E: Into<Box<dyn std::error::Error + Send + Sync>>,
        F: FnMut(T) -> Result<U, E> + Send + 'static,
    {
        self.try_stage_with(Options::new(), input, f)
    }

    /// [`try_stage`](Self::try_stage) with options for the stage.
    pub fn try_stage_with<T, U, E, F>(
        &mut self,
        opts: Options,
        input: Stream<T>,
        mut f: F,
    ) -> Stream<U>
    where
        T: Send + 'static,
        U: Send + 'static,
        E: Into<Box<dyn std::error::Error + Send + Sync>>,
        F: FnMut(T) -> Result<U, E> + Send + 'static,
    {
        let (tx, rx) = bounded(self.buffer);
        let control = self.control.clone();
        let stage = self.stages.len();
        let opts = self.stage_options(opts, "stage");
        self.add(opts, move || {
            pump(&control, stage, input.rx, |x| {
                let y = guard(&control, stage, || {
                    f(x).map_err(|e| TaskFailure::Error(e.into()))
                })?;
                Ok(tx.send(y).is_ok())
            })
        });
        Stream { rx, stage }
    }

    /// A stage that launches `kernel` with `params` on each item, on a processor its
    /// options' scope allows (a GPU, say), and passes the kernel's output on. The stage
    /// itself waits on a host thread, giving it back while each kernel runs.
    pub fn kernel_stage<P, T>(
        &mut self,
        opts: Options,
        input: Stream<Vec<T>>,
        kernel: &crate::WgslKernel<P, T>,
        params: P,
    ) -> Stream<Vec<T>>
    where
        P: bytemuck::Pod + Send + Sync,
        T: crate::GpuScalar,
    {
        let ctx = self.ctx.clone();
        let kernel = kernel.clone();
        let kernel_opts = opts.clone();
        let host_opts = Options::new().name(format!("stream kernel stage {}", self.stages.len()));
        self.try_stage_with(host_opts, input, move |item: Vec<T>| {
            let task = ctx.spawn_kernel_with(kernel_opts.clone(), &kernel, params, [item.into()]);
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>(task?.fetch()?)
        })
    }

    /// A sink: folds every item of `input` into `init` with `f`; the returned task's value
    /// is the fold once the stream has finished.
    pub fn sink<T, A, F>(&mut self, input: Stream<T>, init: A, f: F) -> DTask<A>
    where
        T: Send + 'static,
        A: Send + Sync + 'static,
        F: FnMut(&mut A, T) + Send + 'static,
    {
        self.sink_with(Options::new(), input, init, f)
    }

    /// [`sink`](Self::sink) with options for the stage.
    pub fn sink_with<T, A, F>(
        &mut self,
        opts: Options,
        input: Stream<T>,
        init: A,
        mut f: F,
    ) -> DTask<A>
    where
        T: Send + 'static,
        A: Send + Sync + 'static,
        F: FnMut(&mut A, T) + Send + 'static,
    {
        let control = self.control.clone();
        let stage = self.stages.len();
        let opts = self.stage_options(opts, "sink");
        let t = self.ctx.try_spawn_with(
            opts,
            move || {
                let mut acc = init;
                pump(&control, stage, input.rx, |x| {
                    guard(&control, stage, || {
                        f(&mut acc, x);
                        Ok(())
                    })?;
                    Ok(true)
                })
                .map_err(TaskFailureError)?;
                Ok::<A, TaskFailureError>(acc)
            },
            (),
        );
        self.added(t.core.clone());
        t
    }
}

/// Runs `body`; a failure (an error or a panic) stops the stream before it is passed on.
fn guard<R>(
    control: &Control,
    stage: usize,
    body: impl FnOnce() -> Result<R, TaskFailure>,
) -> Result<R, TaskFailure> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(body)) {
        Ok(Ok(r)) => Ok(r),
        Ok(Err(e)) => {
            control.stop(stage);
            Err(e)
        }
        Err(p) => {
            control.stop(stage);
            std::panic::resume_unwind(p)
        }
    }
}

/// Feeds each item of `rx` to `each` (which returns false when the next stage is gone)
/// until the input ends; fails if it ended because the stream stopped.
fn pump<T>(
    control: &Control,
    stage: usize,
    rx: Receiver<T>,
    mut each: impl FnMut(T) -> Result<bool, TaskFailure>,
) -> Result<(), TaskFailure> {
    loop {
        match rx.recv() {
            Ok(x) => {
                if control.is_stopped() {
                    return Err(stopped_err(stage));
                }
                if !each(x)? {
                    return Ok(());
                }
            }
            Err(_) if control.is_stopped() => return Err(stopped_err(stage)),
            Err(_) => return Ok(()),
        }
    }
}

/// A stage's failure as an error a task returns.
struct TaskFailureError(TaskFailure);

impl From<TaskFailureError> for Box<dyn std::error::Error + Send + Sync> {
    fn from(e: TaskFailureError) -> Self {
        match e.0 {
            TaskFailure::Error(e) => e,
            TaskFailure::Panic(m) => m.into(),
            TaskFailure::ArgumentType {
                index,
                expected,
                found,
            } => format!("argument {index} is a {found}, not a {expected}").into(),
        }
    }
}

impl Context {
    /// Builds a stream with `f` and runs it to the end (Dagger.jl's `spawn_streaming`):
    /// every stage added through the [`StreamBuilder`] runs again and again, taking the
    /// previous stage's items through a bounded buffer, until the source finishes the
    /// stream. Returns `f`'s value (typically the [`sink`](StreamBuilder::sink)'s task)
    /// once every stage has ended, or the failure that stopped the stream.
    ///
    /// ```
    /// use dagger::prelude::*;
    /// let ctx = Context::builder().threads(2).build()?;
    /// let total = ctx.spawn_streaming(|s| {
    ///     let mut i = 0u64;
    ///     let nums = s.source(move || { i += 1; (i <= 100).then_some(i) });
    ///     let squares = s.stage(nums, |x: u64| x * x);
    ///     s.sink(squares, 0u64, |acc, x| *acc += x)
    /// })?;
    /// assert_eq!(total.fetch()?, 338_350);
    ///
    /// // A failing stage stops the stream, and is the error.
    /// let err = ctx.spawn_streaming(|s| {
    ///     let mut i = 0u32;
    ///     let nums = s.source(move || { i += 1; Some(i) }); // endless
    ///     let checked = s.try_stage(nums, |x: u32| if x < 50 { Ok(x) } else { Err("too big") });
    ///     s.sink(checked, 0u32, |acc, x| *acc += x)
    /// }).unwrap_err();
    /// assert!(err.to_string().contains("too big"), "{err}");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn spawn_streaming<R>(
        &self,
        f: impl FnOnce(&mut StreamBuilder<'_>) -> R,
    ) -> Result<R, TaskError> {
        let mut b = StreamBuilder {
            ctx: self,
            buffer: DEFAULT_STREAM_BUFFER,
            control: Arc::default(),
            stages: Vec::new(),
        };
        let out = f(&mut b);
        let stages = std::mem::take(&mut b.stages);
        let control = b.control.clone();
        drop(b);
        for s in &stages {
            crate::sched::block_on(s);
        }
        let error = |s: &Arc<TaskCore>| match s.result.get() {
            Some(Err(e)) => Some(e.clone()),
            _ => None,
        };
        // The stage whose failure stopped the stream is the cause; the others only stopped.
        let cause = *control.cause.lock();
        match cause
            .and_then(|i| error(&stages[i]))
            .or_else(|| stages.iter().find_map(error))
        {
            Some(e) => Err(e),
            None => Ok(out),
        }
    }
}
