//! Device memory: the devices of the process, arrays resident on them, and moving values
//! between host and devices, with the replica cache that keeps a host value uploaded once
//! per device.

use std::any::TypeId;
use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use dagger_wgpu::{Device, GpuBuffer, GpuError};
use parking_lot::Mutex;

use super::budget::{Admission, DeviceMemory, Need, Owner, Replica, Resident, ToHostError};
use super::dtype::{DType, GpuScalar};
use crate::processor::{MemorySpace, MoveError};
use crate::value::Value;

/// Whether a device can hold elements of `dtype`.
pub(crate) fn device_holds(info: &dagger_wgpu::DeviceInfo, dtype: DType) -> Result<(), String> {
    if dtype == DType::F64 && !info.shader_f64 {
        Err(format!(
            "cannot hold f64: device `{}` ({}) lacks SHADER_F64",
            info.name, info.backend
        ))
    } else {
        Ok(())
    }
}

/// An array made on one device; as a task result it stands for the host type it was made
/// from (e.g. `Vec<f32>`), which [`to_host`] downloads on demand. Its own copy is a
/// [`Resident`] of the device's memory: under the device's budget it may move to host
/// memory and back without the array changing.
pub(crate) struct GpuArray {
    pub(crate) device: usize,
    pub(crate) len: usize,
    pub(crate) dtype: DType,
    pub(crate) host_type: TypeId,
    pub(crate) home: Arc<Resident>,
    /// Copies on other devices (or in another context's memory of this one).
    replicas: Mutex<Vec<Arc<Resident>>>,
}

/// A kernel's output buffer, before it becomes a [`GpuArray`] of the device's memory.
pub(crate) struct DeviceOutput {
    pub(crate) buffer: Arc<GpuBuffer>,
    pub(crate) len: usize,
    pub(crate) dtype: DType,
    pub(crate) host_type: TypeId,
}

impl DeviceOutput {
    pub(crate) fn new(buffer: Arc<GpuBuffer>, len: usize, dtype: DType, host_type: TypeId) -> Self {
        DeviceOutput {
            buffer,
            len,
            dtype,
            host_type,
        }
    }

    /// The output as an array whose own copy takes the room `admission` reserved.
    pub(crate) fn adopt(self, device: usize, admission: &mut Admission) -> GpuArray {
        let mover = movers()
            .get(&self.host_type)
            .expect("device arrays come from movable types");
        let home = admission.adopt(
            self.buffer,
            Owner::Array {
                host: OnceLock::new(),
                len: self.len,
                download: mover.download,
            },
        );
        GpuArray {
            device,
            len: self.len,
            dtype: self.dtype,
            host_type: self.host_type,
            home,
            replicas: Mutex::new(Vec::new()),
        }
    }
}

impl GpuArray {
    fn bytes(&self) -> u64 {
        (self.len * self.dtype.size()) as u64
    }
}

/// How a host type moves to and from a device.
struct Mover {
    dtype: DType,
    len: fn(&Value) -> usize,
    upload: fn(&Value, &Device) -> Result<GpuBuffer, GpuError>,
    download: fn(&Device, &GpuBuffer, usize) -> Result<Value, GpuError>,
}

fn upload_vec<T: GpuScalar>(v: &Value, d: &Device) -> Result<GpuBuffer, GpuError> {
    d.upload(v.downcast_ref::<Vec<T>>().expect("mover matches its type"))
}

fn download_vec<T: GpuScalar>(d: &Device, b: &GpuBuffer, len: usize) -> Result<Value, GpuError> {
    let mut v = d.download::<T>(b)?;
    v.truncate(len);
    Ok(Value::new(v))
}

fn len_vec<T: GpuScalar>(v: &Value) -> usize {
    v.downcast_ref::<Vec<T>>().map_or(0, Vec::len)
}

fn vec_mover<T: GpuScalar>() -> (TypeId, Mover) {
    (
        TypeId::of::<Vec<T>>(),
        Mover {
            dtype: T::DTYPE,
            len: len_vec::<T>,
            upload: upload_vec::<T>,
            download: download_vec::<T>,
        },
    )
}

fn movers() -> &'static HashMap<TypeId, Mover> {
    static M: OnceLock<HashMap<TypeId, Mover>> = OnceLock::new();
    M.get_or_init(|| {
        [
            vec_mover::<f32>(),
            vec_mover::<f64>(),
            vec_mover::<i32>(),
            vec_mover::<u32>(),
        ]
        .into_iter()
        .collect()
    })
}

/// One opened device.
pub(crate) struct GpuState {
    pub(crate) device: Device,
}

/// The devices of this process, opened once and shared by every context.
pub(crate) struct GpuDevices {
    pub(crate) devices: Vec<GpuState>,
    pub(crate) errors: Vec<String>,
}

pub(crate) fn devices() -> &'static GpuDevices {
    static D: OnceLock<GpuDevices> = OnceLock::new();
    D.get_or_init(|| {
        let mut devices = Vec::new();
        let mut errors = Vec::new();
        for r in dagger_wgpu::open_devices() {
            match r {
                Ok(device) => devices.push(GpuState { device }),
                Err(e) => errors.push(e.to_string()),
            }
        }
        GpuDevices { devices, errors }
    })
}

pub(crate) fn space_of(device: usize) -> MemorySpace {
    MemorySpace::Device {
        process: 1,
        device: device as u32,
    }
}

fn failed(value: &Value, from: MemorySpace, to: MemorySpace, e: GpuError) -> MoveError {
    MoveError::Failed {
        type_name: value.type_name(),
        from,
        to,
        source: Box::new(e),
    }
}

/// Where a value is, for placement: its size, whether the host has it, and whether the
/// device asked about does.
pub(crate) struct Residence {
    bytes: u64,
    on_host: bool,
    on_device: bool,
}

impl Residence {
    /// The bytes that must move for the value to be on the device asked about (`None`: on
    /// the host). A value only on another device goes through the host: twice its size.
    pub(crate) fn bytes_to(&self, device: Option<usize>) -> u64 {
        match device {
            None if self.on_host => 0,
            None => self.bytes,
            Some(_) if self.on_device => 0,
            Some(_) if self.on_host => self.bytes,
            Some(_) => 2 * self.bytes,
        }
    }
}

/// Where `value` is with respect to `mem`'s device; `None` for values no device can hold
/// (they never move to one).
pub(crate) fn residence(value: &Value, mem: &DeviceMemory) -> Option<Residence> {
    if let Some(arr) = value.downcast_ref::<GpuArray>() {
        let here = |r: &Arc<Resident>| std::ptr::eq(&*r.mem, mem) && r.on_device();
        let on_device = here(&arr.home) || arr.replicas.lock().iter().any(here);
        return Some(Residence {
            bytes: arr.bytes(),
            on_host: arr.home.has_host(),
            on_device,
        });
    }
    let mover = movers().get(&value.type_id_of_value())?;
    let on_device = mem
        .replicas
        .lock()
        .get(&value.addr())
        .is_some_and(|(w, r)| w.strong_count() > 0 && r.clone().resident().on_device());
    Some(Residence {
        bytes: ((mover.len)(value) * mover.dtype.size()) as u64,
        on_host: true,
        on_device,
    })
}

/// The host value of `value` (in `space`), downloading it (once) if it is an array whose
/// only copy is on a device.
pub(crate) fn to_host(space: MemorySpace, value: &Value) -> Result<Value, MoveError> {
    let Some(arr) = value.downcast_ref::<GpuArray>() else {
        return Ok(value.clone());
    };
    let reload_failed = |e: crate::storage::ReloadError| MoveError::Failed {
        type_name: value.type_name(),
        from: space,
        to: MemorySpace::LOCAL_HOST,
        source: Box::new(e),
    };
    if let Some(v) = arr.home.host_value() {
        return v.map_err(reload_failed);
    }
    let dev = &devices().devices[arr.device].device;
    let lost = |source: Option<GpuError>| MoveError::Failed {
        type_name: value.type_name(),
        from: space,
        to: MemorySpace::LOCAL_HOST,
        source: Box::new(LostWithDevice {
            device: arr.device,
            len: arr.len,
            dtype: arr.dtype,
            source,
        }),
    };
    if dev.is_lost() {
        return Err(lost(None));
    }
    arr.home.to_host(dev).map_err(|e| match e {
        ToHostError::Gpu(e @ GpuError::DeviceLost { .. }) => lost(Some(e)),
        ToHostError::Gpu(e) => failed(value, space, MemorySpace::LOCAL_HOST, e),
        ToHostError::Reload(e) => reload_failed(e),
    })
}
/// A value that lived only in the memory of a device that was lost.
#[derive(Debug)]
struct LostWithDevice {
    device: usize,
    len: usize,
    dtype: DType,
    source: Option<GpuError>,
}

impl std::fmt::Display for LostWithDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the {}-element {} array in the memory of gpu {} was lost with the device (no host \
             copy had been made); compute it again",
            self.len, self.dtype, self.device
        )
    }
}

impl std::error::Error for LostWithDevice {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source.as_ref().map(|e| e as _)
    }
}

/// A value a task takes on a device, as a wgpu processor's `move_in` leaves it: the value
/// itself, made resident when the task is admitted (see [`stage`] and [`need`]).
#[derive(Clone)]
pub(crate) struct Staged {
    value: Value,
    from: MemorySpace,
    pub(crate) len: usize,
    pub(crate) dtype: DType,
}

/// `value` (now in `from`) as an input of a task on device `dev`, or why it cannot be one.
pub(crate) fn stage(from: MemorySpace, value: &Value, dev: usize) -> Result<Staged, MoveError> {
    let to = space_of(dev);
    let info = devices().devices[dev].device.info();
    let unsupported = || MoveError::Unsupported {
        type_name: value.type_name(),
        from,
        to,
    };
    if let Some(arr) = value.downcast_ref::<GpuArray>() {
        if arr.device != dev {
            device_holds(info, arr.dtype).map_err(|_| unsupported())?;
        }
        return Ok(Staged {
            value: value.clone(),
            from,
            len: arr.len,
            dtype: arr.dtype,
        });
    }
    let mover = movers()
        .get(&value.type_id_of_value())
        .ok_or_else(unsupported)?;
    if device_holds(info, mover.dtype).is_err() || !from.is_host() {
        return Err(unsupported());
    }
    Ok(Staged {
        value: value.clone(),
        from,
        len: (mover.len)(value),
        dtype: mover.dtype,
    })
}

/// What `staged` needs in `mem`: the resident holding it there (found, or made and
/// remembered), and how to upload it when it is not on the device.
pub(crate) fn need(staged: &Staged, mem: &Arc<DeviceMemory>) -> Need {
    let dev = mem.device;
    let bytes = dagger_wgpu::allocation_size((staged.len * staged.dtype.size()) as u64);
    let (from, to) = (staged.from, space_of(dev));
    if let Some(arr) = staged.value.downcast_ref::<GpuArray>() {
        let resident = if Arc::ptr_eq(&arr.home.mem, mem) {
            arr.home.clone()
        } else {
            let mut reps = arr.replicas.lock();
            match reps.iter().find(|r| Arc::ptr_eq(&r.mem, mem)) {
                Some(r) => r.clone(),
                None => {
                    let r = Resident::new(mem, bytes, Owner::Copy);
                    reps.push(r.clone());
                    r
                }
            }
        };
        let value = staged.value.clone();
        let host_type = arr.host_type;
        return Need {
            resident,
            upload: Box::new(move || {
                let host = to_host(from, &value)?;
                let mover = movers().get(&host_type).expect("movable");
                (mover.upload)(&host, &devices().devices[dev].device)
                    .map_err(|e| failed(&value, from, to, e))
            }),
        };
    }
    let key = staged.value.addr();
    let resident = {
        let mut cache = mem.replicas.lock();
        match cache.get(&key) {
            Some((w, r)) if w.strong_count() > 0 => r.clone().resident(),
            _ => {
                let r = Resident::new(mem, bytes, Owner::Copy);
                // Forget copies of values that are gone, freeing their buffers.
                let gone: Vec<Replica> = {
                    let dead: Vec<usize> = cache
                        .iter()
                        .filter(|(_, (w, _))| w.strong_count() == 0)
                        .map(|(k, _)| *k)
                        .collect();
                    dead.iter().filter_map(|k| cache.remove(k)).collect()
                };
                cache.insert(key, (staged.value.downgrade(), r.clone()));
                drop(cache);
                drop(gone);
                r
            }
        }
    };
    let value = staged.value.clone();
    Need {
        resident,
        upload: Box::new(move || {
            let mover = movers()
                .get(&value.type_id_of_value())
                .expect("staged values are movable");
            (mover.upload)(&value, &devices().devices[dev].device)
                .map_err(|e| failed(&value, from, to, e))
        }),
    }
}
