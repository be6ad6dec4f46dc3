//! Host <-> device and device <-> device transfers are bit-exact on every adapter.

use dagger_wgpu::testing::devices_for_tests;
use dagger_wgpu::{Device, GpuError};

fn round_trip<T: bytemuck::Pod + std::fmt::Debug>(device: &Device, data: &[T]) -> Vec<T> {
    let buf = device.upload(data).expect("upload");
    assert_eq!(buf.len_bytes(), std::mem::size_of_val(data) as u64);
    assert_eq!(buf.device_index(), device.info().index);
    device.download::<T>(&buf).expect("download")
}

fn special_f32() -> Vec<f32> {
    let bits: [u32; 14] = [
        0x7fc0_0000, // quiet NaN
        0x7fc0_0001, // quiet NaN with payload
        0x7f80_0001, // signalling NaN
        0xffc1_2345, // negative NaN with payload
        0x8000_0000, // -0.0
        0x0000_0000, // +0.0
        0x0000_0001, // smallest subnormal
        0x807f_ffff, // largest negative subnormal
        0x0080_0000, // smallest normal
        0x7f80_0000, // +inf
        0xff80_0000, // -inf
        0x7f7f_ffff, // f32::MAX
        0x3f80_0000, // 1.0
        0xbeaa_aaab, // -1/3
    ];
    let mut v: Vec<f32> = bits.iter().map(|&b| f32::from_bits(b)).collect();
    // A longer tail so the copy is not a single tiny transfer.
    v.extend((0..100_003u32).map(|i| f32::from_bits(i.wrapping_mul(2_654_435_761))));
    v
}

#[test]
fn f32_round_trip_is_bit_exact_including_nan_payloads() {
    for device in devices_for_tests() {
        let data = special_f32();
        let back = round_trip(&device, &data);
        let want: Vec<u32> = data.iter().map(|x| x.to_bits()).collect();
        let got: Vec<u32> = back.iter().map(|x| x.to_bits()).collect();
        assert_eq!(got, want, "on {:?}", device.info().name);
    }
}

#[test]
fn integer_round_trips() {
    for device in devices_for_tests() {
        let i: Vec<i32> = (0..65_537).map(|k| (k * 7919) ^ i32::MIN).collect();
        assert_eq!(round_trip(&device, &i), i);
        let u: Vec<u32> = (0..4099u32).map(|k| k.wrapping_mul(0x9e37_79b9)).collect();
        assert_eq!(round_trip(&device, &u), u);
        let extremes = [i32::MIN, -1, 0, 1, i32::MAX];
        assert_eq!(round_trip(&device, &extremes), extremes);
    }
}

#[test]
fn f64_round_trip_on_devices_with_shader_f64() {
    let mut ran = 0;
    for device in devices_for_tests() {
        if !device.info().shader_f64 {
            println!("{}: no SHADER_F64, f64 not tested", device.info().name);
            continue;
        }
        let mut data: Vec<f64> = [
            f64::from_bits(0x7ff8_0000_0000_0001),
            f64::from_bits(0xfff0_0000_0000_0003),
            -0.0,
            f64::from_bits(1),
            f64::MAX,
            f64::NEG_INFINITY,
            std::f64::consts::PI,
        ]
        .to_vec();
        data.extend((0..10_000u64).map(|i| f64::from_bits(i.wrapping_mul(0x9e37_79b9_7f4a_7c15))));
        let back = round_trip(&device, &data);
        let want: Vec<u64> = data.iter().map(|x| x.to_bits()).collect();
        let got: Vec<u64> = back.iter().map(|x| x.to_bits()).collect();
        assert_eq!(got, want);
        ran += 1;
    }
    println!("f64 round trip ran on {ran} device(s)");
}

#[test]
fn zero_length_and_odd_lengths() {
    for device in devices_for_tests() {
        let empty: [f32; 0] = [];
        let buf = device.upload(&empty).unwrap();
        assert_eq!(buf.len_bytes(), 0);
        assert!(buf.is_empty());
        assert!(buf.capacity_bytes() >= 4);
        assert!(device.download::<f32>(&buf).unwrap().is_empty());
        let a = device.alloc(0).unwrap();
        assert_eq!(a.len_bytes(), 0);
        let z = device.zeroed(0).unwrap();
        assert!(device.download::<u32>(&z).unwrap().is_empty());
        assert!(device.copy(&buf).unwrap().is_empty());
        for len in [1usize, 2, 3, 5, 7, 4097] {
            let bytes: Vec<u8> = (0..len).map(|i| (i * 31 + 7) as u8).collect();
            assert_eq!(round_trip(&device, &bytes), bytes, "{len} bytes");
        }
        // 6 bytes cannot be read as u32.
        let six = device.upload(&[1u8, 2, 3, 4, 5, 6]).unwrap();
        let err = device.download::<u32>(&six).unwrap_err();
        assert!(matches!(err, GpuError::ElementSize { .. }), "{err}");
    }
}

#[test]
fn copy_and_zeroed() {
    for device in devices_for_tests() {
        let data: Vec<u32> = (0..1000).collect();
        let src = device.upload(&data).unwrap();
        let dup = device.copy(&src).unwrap();
        drop(src);
        assert_eq!(device.download::<u32>(&dup).unwrap(), data);
        // A pooled buffer may hold old data; zeroed must clear it.
        drop(dup);
        device.synchronize().unwrap();
        let z = device.zeroed(4000).unwrap();
        assert_eq!(device.download::<u32>(&z).unwrap(), vec![0u32; 1000]);
    }
}

#[test]
fn device_to_device_is_bit_exact() {
    let devices = devices_for_tests();
    if devices.len() < 2 {
        println!(
            "device-to-device: {} device(s), need 2; not tested",
            devices.len()
        );
        return;
    }
    let data = special_f32();
    for a in &devices {
        for b in &devices {
            if a.same_device(b) {
                continue;
            }
            let on_a = a.upload(&data).unwrap();
            let host = a.download::<f32>(&on_a).unwrap();
            let on_b = b.upload(&host).unwrap();
            let back = b.download::<f32>(&on_b).unwrap();
            let moved = a.transfer(&on_a, b).unwrap();
            assert_eq!(moved.device_index(), b.info().index);
            let moved_back = b.download::<f32>(&moved).unwrap();
            for got in [&back, &moved_back] {
                assert!(
                    got.iter()
                        .zip(&data)
                        .all(|(x, y)| x.to_bits() == y.to_bits()),
                    "{} -> {} changed bits",
                    a.info().name,
                    b.info().name
                );
            }
            println!(
                "{}/{} -> {}/{}: ok",
                a.info().backend,
                a.info().name,
                b.info().backend,
                b.info().name
            );
        }
    }
}

#[test]
fn concurrent_users_of_one_device() {
    for device in devices_for_tests() {
        std::thread::scope(|s| {
            for t in 0..4u32 {
                let device = device.clone();
                s.spawn(move || {
                    for round in 0..10u32 {
                        let data: Vec<u32> =
                            (0..513).map(|i| i ^ (t << 20) ^ (round << 10)).collect();
                        let buf = device.upload(&data).unwrap();
                        assert_eq!(device.download::<u32>(&buf).unwrap(), data);
                    }
                });
            }
        });
        let stats = device.stats();
        assert_eq!(stats.uploads, 40);
        assert_eq!(stats.downloads, 40);
        assert_eq!(stats.upload_bytes, 40 * 513 * 4);
    }
}

#[test]
fn buffer_too_large_for_the_device() {
    for device in devices_for_tests() {
        let limit = device.info().max_buffer_size;
        let err = device.alloc(limit + 1).unwrap_err();
        match &err {
            GpuError::BufferTooLarge { bytes, limit: l } => {
                assert_eq!((*bytes, *l), (limit + 1, limit));
            }
            other => panic!("expected BufferTooLarge, got {other}"),
        }
        assert!(err.to_string().contains(&limit.to_string()), "{err}");
    }
}
