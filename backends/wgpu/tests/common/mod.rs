//! Helpers shared by the BLAS test files: seeded data, moving f64 reference data to and from
//! a device in the element type under test, and relative errors.

// Each test binary uses its own subset.
#![allow(dead_code)]

use dagger_wgpu::blas::Dtype;
use dagger_wgpu::{Device, GpuBuffer};

/// xorshift64*: seeded test data without dependencies.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    /// Uniform in [-1, 1), exactly representable in f32.
    pub fn next(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let bits = self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 40;
        bits as f64 / (1u64 << 23) as f64 - 1.0
    }

    pub fn vec(&mut self, len: usize) -> Vec<f64> {
        (0..len).map(|_| self.next()).collect()
    }
}

/// The element types `device` can run: f32, and f64 where it has `SHADER_F64`.
pub fn dtypes(device: &Device) -> Vec<Dtype> {
    if device.info().shader_f64 {
        vec![Dtype::F32, Dtype::F64]
    } else {
        vec![Dtype::F32]
    }
}

/// `x` as the device will hold it.
pub fn rounded(x: f64, dtype: Dtype) -> f64 {
    match dtype {
        Dtype::F32 => f64::from(x as f32),
        _ => x,
    }
}

pub fn upload(device: &Device, data: &[f64], dtype: Dtype) -> GpuBuffer {
    match dtype {
        Dtype::F32 => {
            let v: Vec<f32> = data.iter().map(|&x| x as f32).collect();
            device.upload(&v).unwrap()
        }
        Dtype::F64 => device.upload(data).unwrap(),
        _ => unreachable!(),
    }
}

pub fn download(device: &Device, buf: &GpuBuffer, dtype: Dtype) -> Vec<f64> {
    match dtype {
        Dtype::F32 => device
            .download::<f32>(buf)
            .unwrap()
            .into_iter()
            .map(f64::from)
            .collect(),
        Dtype::F64 => device.download::<f64>(buf).unwrap(),
        _ => unreachable!(),
    }
}

/// ‖got − want‖ / ‖want‖ (Frobenius), or ‖got − want‖ when `want` is zero.
pub fn rel_error(got: &[f64], want: &[f64]) -> f64 {
    assert_eq!(got.len(), want.len());
    let diff: f64 = got.iter().zip(want).map(|(g, w)| (g - w) * (g - w)).sum();
    let norm: f64 = want.iter().map(|w| w * w).sum();
    if norm == 0.0 {
        diff.sqrt()
    } else {
        (diff / norm).sqrt()
    }
}
