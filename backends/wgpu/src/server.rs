//! The server thread of one device: it alone owns the queue and encodes commands.
//!
//! Loop: block for one command, drain whatever else is already in the channel (up to
//! [`MAX_BATCH`]), encode all of it into one command encoder, submit once, block in
//! `device.poll(Wait)` until that submission is done, then answer the batch (completion
//! callbacks, downloads, fences) and release the buffers it used back to the pool.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use crossbeam_channel::{Receiver, Sender};
use parking_lot::Mutex;

use crate::buffer::BufferInner;
use crate::core::Core;
use crate::error::GpuError;
use crate::pipeline::Pipeline;
use crate::stats::Counters;

/// Most commands encoded into one command buffer.
pub(crate) const MAX_BATCH: usize = 512;

/// Completion callback of a launch.
pub(crate) type DoneFn = Box<dyn FnOnce(Result<(), GpuError>) + Send + 'static>;

/// What a launch binds at one binding index.
pub(crate) enum Resource {
    Buffer(Arc<BufferInner>),
    Uniform(Vec<u8>),
}

pub(crate) struct Launch {
    pub(crate) pipeline: Pipeline,
    pub(crate) resources: Vec<(u32, Resource)>,
    pub(crate) workgroups: [u32; 3],
    pub(crate) on_done: DoneFn,
}

pub(crate) enum Command {
    /// Copy a filled, unmapped staging buffer into `dst`.
    Upload {
        staging: wgpu::Buffer,
        dst: Arc<BufferInner>,
    },
    /// Device-local copy of `src` into `dst` (same logical length).
    Copy {
        src: Arc<BufferInner>,
        dst: Arc<BufferInner>,
    },
    /// Fill `dst` with zero bytes.
    Zero {
        dst: Arc<BufferInner>,
    },
    /// Copy `src` into a new mappable buffer, map it and send it back mapped.
    Download {
        src: Arc<BufferInner>,
        reply: Sender<Result<wgpu::Buffer, GpuError>>,
    },
    Launch(Box<Launch>),
    /// Answer once everything before it is done.
    Fence {
        reply: Sender<Result<(), GpuError>>,
    },
    /// Finish what is queued, then stop.
    Shutdown,
}

pub(crate) fn run(core: Arc<Core>, queue: wgpu::Queue, rx: Receiver<Command>) {
    let _ = core.server_thread.set(std::thread::current().id());
    let server = Server { core, queue };
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(cmd) => batch.push(cmd),
                Err(_) => break,
            }
        }
        let shutdown = batch.iter().any(|c| matches!(c, Command::Shutdown));
        server.run_batch(batch);
        if shutdown {
            break;
        }
    }
}

struct Server {
    core: Arc<Core>,
    queue: wgpu::Queue,
}

type MapSlot = Arc<Mutex<Option<Result<(), wgpu::BufferAsyncError>>>>;

/// Everything one batch must answer or keep alive until the GPU is done with it.
#[derive(Default)]
struct Batch {
    /// Launch callbacks, with the error that launch already failed with, if any.
    done: Vec<(DoneFn, Option<GpuError>)>,
    downloads: Vec<Download>,
    fences: Vec<Sender<Result<(), GpuError>>>,
    buffers: Vec<Arc<BufferInner>>,
    raw: Vec<wgpu::Buffer>,
    bind_groups: Vec<wgpu::BindGroup>,
    encoded: usize,
}

struct Download {
    staging: Option<wgpu::Buffer>,
    slot: MapSlot,
    reply: Sender<Result<wgpu::Buffer, GpuError>>,
    error: Option<GpuError>,
}

/// Why a whole batch failed; turned into one `GpuError` per waiter.
#[derive(Clone)]
enum Failure {
    Lost,
    Wgpu(String),
}

impl Server {
    fn run_batch(&self, commands: Vec<Command>) {
        let core = &*self.core;
        let mut batch = Batch::default();
        // Encoding, submitting and waiting call into the driver; answering (which runs
        // callbacks that may wait for other threads) does not hold it.
        let driver = core.driver();
        let mut encoder = core
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("dagger batch"),
            });
        let alive = core.check_alive().is_ok();
        for cmd in commands {
            if alive {
                self.encode(cmd, &mut encoder, &mut batch);
            } else {
                Self::take_waiters(cmd, &mut batch);
            }
        }

        let mut failure = None;
        if alive && batch.encoded > 0 {
            let n = batch.encoded;
            let (submitted, err) = core.scoped(|| {
                let index = self.queue.submit([encoder.finish()]);
                for d in &batch.downloads {
                    if let Some(staging) = &d.staging {
                        let slot = Arc::clone(&d.slot);
                        staging.map_async(wgpu::MapMode::Read, .., move |r| {
                            *slot.lock() = Some(r);
                        });
                    }
                }
                index
            });
            Counters::add(&core.stats.submits, 1);
            if let Some(e) = err {
                failure = Some(Failure::Wgpu(format!("batch of {n} commands: {e}")));
            }
            let poll = core.device.poll(wgpu::PollType::Wait {
                submission_index: Some(submitted),
                timeout: None,
            });
            if let Err(e) = poll {
                failure.get_or_insert(Failure::Wgpu(format!("waiting for the GPU: {e}")));
            }
        } else {
            drop(encoder);
        }
        drop(driver);
        let uncaptured = std::mem::take(&mut *core.uncaptured.lock());
        if !uncaptured.is_empty() {
            failure.get_or_insert(Failure::Wgpu(uncaptured.join("; ")));
        }
        if core.lost.get().is_some() {
            failure = Some(Failure::Lost);
        }
        self.answer(batch, failure);
    }

    /// Encodes one command, or records why it failed.
    fn encode(&self, cmd: Command, encoder: &mut wgpu::CommandEncoder, batch: &mut Batch) {
        let core = &*self.core;
        match cmd {
            Command::Upload { staging, dst } => {
                encoder.copy_buffer_to_buffer(&staging, 0, dst.raw(), 0, dst.padded_len());
                batch.raw.push(staging);
                batch.buffers.push(dst);
                batch.encoded += 1;
            }
            Command::Copy { src, dst } => {
                encoder.copy_buffer_to_buffer(src.raw(), 0, dst.raw(), 0, src.padded_len());
                batch.buffers.extend([src, dst]);
                batch.encoded += 1;
            }
            Command::Zero { dst } => {
                encoder.clear_buffer(dst.raw(), 0, None);
                batch.buffers.push(dst);
                batch.encoded += 1;
            }
            Command::Download { src, reply } => {
                let size = src.padded_len();
                let (staging, err) = core.scoped(|| {
                    core.device.create_buffer(&wgpu::BufferDescriptor {
                        label: Some("dagger download staging"),
                        size,
                        usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                        mapped_at_creation: false,
                    })
                });
                let mut download = Download {
                    staging: None,
                    slot: MapSlot::default(),
                    reply,
                    error: None,
                };
                match err {
                    Some(e) => {
                        download.error =
                            Some(core.wgpu_error("creating a download buffer", size, e))
                    }
                    None => {
                        encoder.copy_buffer_to_buffer(src.raw(), 0, &staging, 0, size);
                        download.staging = Some(staging);
                        batch.buffers.push(src);
                        batch.encoded += 1;
                    }
                }
                batch.downloads.push(download);
            }
            Command::Launch(launch) => self.encode_launch(*launch, encoder, batch),
            Command::Fence { reply } => batch.fences.push(reply),
            Command::Shutdown => {}
        }
    }

    fn encode_launch(&self, launch: Launch, encoder: &mut wgpu::CommandEncoder, batch: &mut Batch) {
        let core = &*self.core;
        let Launch {
            pipeline,
            resources,
            workgroups,
            on_done,
        } = launch;
        let p = &pipeline.inner;
        let mut bind_group = None;
        if let Some(layout) = &p.layout {
            let (made, err) = core.scoped(|| {
                let uniforms: Vec<(u32, wgpu::Buffer)> = resources
                    .iter()
                    .filter_map(|(binding, r)| match r {
                        Resource::Uniform(bytes) => Some((*binding, self.uniform_buffer(bytes))),
                        Resource::Buffer(_) => None,
                    })
                    .collect();
                let entries: Vec<wgpu::BindGroupEntry<'_>> = resources
                    .iter()
                    .map(|(binding, r)| {
                        let resource = match r {
                            Resource::Buffer(b) => {
                                wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                                    buffer: b.raw(),
                                    offset: 0,
                                    size: wgpu::BufferSize::new(b.padded_len()),
                                })
                            }
                            Resource::Uniform(_) => uniforms
                                .iter()
                                .find(|(i, _)| i == binding)
                                .map(|(_, u)| u.as_entire_binding())
                                .expect("a uniform buffer was made for every uniform binding"),
                        };
                        wgpu::BindGroupEntry {
                            binding: *binding,
                            resource,
                        }
                    })
                    .collect();
                let bg = core.device.create_bind_group(&wgpu::BindGroupDescriptor {
                    label: Some(&p.entry_point),
                    layout,
                    entries: &entries,
                });
                (bg, uniforms)
            });
            if let Some(e) = err {
                let what = format!("binding the resources of `{}`", p.entry_point);
                batch
                    .done
                    .push((on_done, Some(core.wgpu_error(&what, 0, e))));
                return;
            }
            let (bg, uniforms) = made;
            batch.raw.extend(uniforms.into_iter().map(|(_, u)| u));
            bind_group = Some(bg);
        }
        {
            let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some(&p.entry_point),
                timestamp_writes: None,
            });
            pass.set_pipeline(&p.pipeline);
            if let Some(bg) = &bind_group {
                pass.set_bind_group(0, bg, &[]);
            }
            pass.dispatch_workgroups(workgroups[0], workgroups[1], workgroups[2]);
        }
        batch.bind_groups.extend(bind_group);
        batch
            .buffers
            .extend(resources.into_iter().filter_map(|(_, r)| match r {
                Resource::Buffer(b) => Some(b),
                Resource::Uniform(_) => None,
            }));
        batch.done.push((on_done, None));
        batch.encoded += 1;
    }

    /// A uniform buffer holding `bytes`, zero-padded to a multiple of 16 bytes.
    fn uniform_buffer(&self, bytes: &[u8]) -> wgpu::Buffer {
        let size = (bytes.len() as u64).max(16).next_multiple_of(16);
        let buffer = self.core.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("dagger uniform"),
            size,
            usage: wgpu::BufferUsages::UNIFORM,
            mapped_at_creation: true,
        });
        if let Ok(mut view) = buffer.get_mapped_range_mut(..) {
            view.slice(..bytes.len()).copy_from_slice(bytes);
        }
        buffer.unmap();
        buffer
    }

    /// On a lost device: keep only who must be told.
    fn take_waiters(cmd: Command, batch: &mut Batch) {
        match cmd {
            Command::Download { reply, .. } => batch.downloads.push(Download {
                staging: None,
                slot: MapSlot::default(),
                reply,
                error: None,
            }),
            Command::Launch(launch) => batch.done.push((launch.on_done, None)),
            Command::Fence { reply } => batch.fences.push(reply),
            Command::Upload { .. }
            | Command::Copy { .. }
            | Command::Zero { .. }
            | Command::Shutdown => {}
        }
    }

    /// Lets the batch's resources go, then tells every waiter how it went.
    fn answer(&self, batch: Batch, failure: Option<Failure>) {
        let core = &*self.core;
        // Release the batch's resources first, so whoever is woken below finds its buffers
        // back in the pool.
        let Batch {
            done,
            downloads,
            fences,
            buffers,
            raw,
            bind_groups,
            encoded: _,
        } = batch;
        {
            let _driver = core.driver();
            drop(bind_groups);
            drop(raw);
            drop(buffers);
        }
        let lost = core.lost.get().is_some();
        let error = |what: &str| -> Option<GpuError> {
            match &failure {
                None if lost => core.lost_error(),
                None => None,
                Some(Failure::Lost) => core.lost_error(),
                Some(Failure::Wgpu(message)) => Some(core.or_lost(GpuError::Wgpu {
                    operation: what.to_owned(),
                    message: message.clone(),
                })),
            }
        };
        for (on_done, own) in done {
            let result = match own.or_else(|| error("a launch")) {
                Some(e) => Err(e),
                None => Ok(()),
            };
            // A panicking callback must not take the device down with it.
            let _ = catch_unwind(AssertUnwindSafe(move || on_done(result)));
        }
        for d in downloads {
            let result = match (d.error.or_else(|| error("a download")), d.staging) {
                (Some(e), _) => Err(e),
                (None, None) => Err(core.lost_error().unwrap_or_else(|| GpuError::Wgpu {
                    operation: "a download".to_owned(),
                    message: "no staging buffer".to_owned(),
                })),
                (None, Some(staging)) => match self.wait_mapped(&d.slot) {
                    Ok(()) => Ok(staging),
                    Err(e) => Err(e),
                },
            };
            let _ = d.reply.send(result);
        }
        let fence = if lost { core.lost_error() } else { None };
        for reply in fences {
            let _ = reply.send(match &fence {
                Some(_) => Err(core.lost_error().expect("device is lost")),
                None => Ok(()),
            });
        }
    }

    /// The map callback of a download normally ran inside the batch's poll; if not yet, keep
    /// polling (blocking) until it does.
    fn wait_mapped(&self, slot: &MapSlot) -> Result<(), GpuError> {
        for _ in 0..3 {
            if let Some(r) = slot.lock().take() {
                return r.map_err(|e| {
                    self.core.or_lost(GpuError::Wgpu {
                        operation: "mapping a download buffer".to_owned(),
                        message: e.to_string(),
                    })
                });
            }
            if let Some(lost) = self.core.lost_error() {
                return Err(lost);
            }
            let _driver = self.core.driver();
            let _ = self.core.device.poll(wgpu::PollType::wait_indefinitely());
        }
        Err(GpuError::Wgpu {
            operation: "mapping a download buffer".to_owned(),
            message: "the map callback never ran".to_owned(),
        })
    }
}
