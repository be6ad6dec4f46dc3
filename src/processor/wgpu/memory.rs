//! Device memory: the devices of the process, arrays resident on them, and moving values
//! between host and devices, with the replica cache that keeps a host value uploaded once
//! per device.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::sync::{Arc, OnceLock, Weak};

use dagger_wgpu::{Device, GpuBuffer, GpuError};
use parking_lot::Mutex;

use super::dtype::{DType, GpuScalar};
use super::DeviceInput;
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

/// An array resident on one device; as a task result it stands for the host type it was
/// made from (e.g. `Vec<f32>`), which `host_value` downloads on demand.
pub(crate) struct GpuArray {
    pub(crate) device: usize,
    pub(crate) buffer: Arc<GpuBuffer>,
    pub(crate) len: usize,
    pub(crate) dtype: DType,
    pub(crate) host_type: TypeId,
    host: OnceLock<Value>,
    replicas: Mutex<Vec<(usize, Arc<GpuBuffer>)>>,
}

impl GpuArray {
    pub(crate) fn new(
        device: usize,
        buffer: Arc<GpuBuffer>,
        len: usize,
        dtype: DType,
        host_type: TypeId,
    ) -> Self {
        GpuArray {
            device,
            buffer,
            len,
            dtype,
            host_type,
            host: OnceLock::new(),
            replicas: Mutex::new(Vec::new()),
        }
    }

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

/// A host value's copy on a device, kept while the value lives.
type Replica = (Weak<dyn Any + Send + Sync>, Arc<GpuBuffer>);

/// One opened device and the replicas of host values uploaded to it.
pub(crate) struct GpuState {
    pub(crate) device: Device,
    replicas: Mutex<HashMap<usize, Replica>>,
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
                Ok(device) => devices.push(GpuState {
                    device,
                    replicas: Mutex::new(HashMap::new()),
                }),
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

/// Where a value is, for placement: its size, whether the host has it, and which devices
/// do (as the value itself or as a cached replica).
pub(crate) struct Residence {
    bytes: u64,
    on_host: bool,
    devices: smallvec::SmallVec<[usize; 2]>,
}

impl Residence {
    /// The bytes that must move for the value to be on `device` (`None`: the host). A value
    /// only on another device goes through the host: twice its size.
    pub(crate) fn bytes_to(&self, device: Option<usize>) -> u64 {
        match device {
            None if self.on_host => 0,
            None => self.bytes,
            Some(d) if self.devices.contains(&d) => 0,
            Some(_) if self.on_host => self.bytes,
            Some(_) => 2 * self.bytes,
        }
    }
}

/// Where `value` is; `None` for values no device can hold (they never move to one).
pub(crate) fn residence(value: &Value) -> Option<Residence> {
    if let Some(arr) = value.downcast_ref::<GpuArray>() {
        let mut devices = smallvec::smallvec![arr.device];
        devices.extend(arr.replicas.lock().iter().map(|(i, _)| *i));
        return Some(Residence {
            bytes: arr.bytes(),
            on_host: arr.host.get().is_some(),
            devices,
        });
    }
    let mover = movers().get(&value.type_id_of_value())?;
    let key = value.addr();
    let on = |s: &GpuState| {
        s.replicas
            .lock()
            .get(&key)
            .is_some_and(|(w, _)| w.strong_count() > 0)
    };
    Some(Residence {
        bytes: ((mover.len)(value) * mover.dtype.size()) as u64,
        on_host: true,
        devices: devices()
            .devices
            .iter()
            .enumerate()
            .filter(|(_, s)| on(s))
            .map(|(i, _)| i)
            .collect(),
    })
}

/// The host value of `value` (in `space`), downloading it (once) if it is an array on a
/// device.
pub(crate) fn to_host(space: MemorySpace, value: &Value) -> Result<Value, MoveError> {
    let Some(arr) = value.downcast_ref::<GpuArray>() else {
        return Ok(value.clone());
    };
    if let Some(v) = arr.host.get() {
        return Ok(v.clone());
    }
    let mover = movers()
        .get(&arr.host_type)
        .expect("device arrays come from movable types");
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
    let v = (mover.download)(dev, &arr.buffer, arr.len).map_err(|e| match e {
        GpuError::DeviceLost { .. } => lost(Some(e)),
        e => failed(value, space, MemorySpace::LOCAL_HOST, e),
    })?;
    Ok(arr.host.get_or_init(|| v).clone())
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

/// `value` (now in `from`) resident on device `dev`: its buffer, length and type, uploaded
/// unless it was resident already, on the device or in its replica cache.
pub(crate) fn to_device(
    from: MemorySpace,
    value: &Value,
    dev: usize,
) -> Result<DeviceInput, MoveError> {
    let to = space_of(dev);
    let state = &devices().devices[dev];
    let info = state.device.info();
    if let Some(arr) = value.downcast_ref::<GpuArray>() {
        let input = |buffer| DeviceInput {
            buffer,
            len: arr.len,
            dtype: arr.dtype,
        };
        if arr.device == dev {
            return Ok(input(arr.buffer.clone()));
        }
        if let Some((_, b)) = arr.replicas.lock().iter().find(|(i, _)| *i == dev) {
            return Ok(input(b.clone()));
        }
        device_holds(info, arr.dtype).map_err(|_| MoveError::Unsupported {
            type_name: value.type_name(),
            from,
            to,
        })?;
        let host = to_host(from, value)?;
        let mover = movers().get(&arr.host_type).expect("movable");
        let buf =
            Arc::new((mover.upload)(&host, &state.device).map_err(|e| failed(value, from, to, e))?);
        arr.replicas.lock().push((dev, buf.clone()));
        return Ok(input(buf));
    }
    let tid = value.type_id_of_value();
    let Some(mover) = movers().get(&tid) else {
        return Err(MoveError::Unsupported {
            type_name: value.type_name(),
            from,
            to,
        });
    };
    if device_holds(info, mover.dtype).is_err() || !from.is_host() {
        return Err(MoveError::Unsupported {
            type_name: value.type_name(),
            from,
            to,
        });
    }
    let len = (mover.len)(value);
    let key = value.addr();
    {
        let cache = state.replicas.lock();
        if let Some((weak, buf)) = cache.get(&key) {
            if weak.strong_count() > 0 {
                return Ok(DeviceInput {
                    buffer: buf.clone(),
                    len,
                    dtype: mover.dtype,
                });
            }
        }
    }
    let buf =
        Arc::new((mover.upload)(value, &state.device).map_err(|e| failed(value, from, to, e))?);
    let mut cache = state.replicas.lock();
    // Forget replicas of values that are gone, returning their buffers to the pool.
    cache.retain(|_, (w, _)| w.strong_count() > 0);
    cache.insert(key, (value.downgrade(), buf.clone()));
    Ok(DeviceInput {
        buffer: buf,
        len,
        dtype: mover.dtype,
    })
}
