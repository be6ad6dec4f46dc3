//! A lost GPU fails the tasks sent to it with an error that says so; other processors and
//! the context keep working. (Its own test binary: the device stays lost for the process.)

mod common;

use dagger::prelude::*;
use dagger::{Access, ProcessorKind, WgslKernel};

#[test]
fn a_lost_device_fails_its_tasks_and_nothing_else() {
    let ctx = Context::builder().threads(2).build().unwrap();
    if common::gpus_or_skip(&ctx, "this test").is_empty() {
        return;
    }
    let gpus = ctx.processors_of_kind(ProcessorKind::Wgpu);
    let double = WgslKernel::<(), f32>::builder(
        "double",
        "@group(0) @binding(0) var<storage, read_write> x: array<f32>;
         @compute @workgroup_size(64)
         fn main(@builtin(global_invocation_id) id: vec3<u32>) {
             if (id.x < arrayLength(&x)) { x[id.x] = 2.0 * x[id.x]; }
         }",
        "main",
    )
    .inputs([Access::ReadWrite])
    .workgroups(|_, l| [(l[0] as u32).div_ceil(64).max(1), 1, 1])
    .cpu(|_, _, out| out.iter_mut().for_each(|v| *v *= 2.0))
    .build()
    .unwrap();
    let last = gpus.len() - 1;
    let on = |i: usize| Options::new().scope(Scope::gpu(i));
    let before = ctx
        .spawn_kernel_with(on(last), &double, (), [vec![1.0f32; 16].into()])
        .unwrap();
    assert_eq!(before.fetch().unwrap(), vec![2.0; 16]);

    ctx.gpu_device(last)
        .expect("the device behind the GPU")
        .destroy();

    let after = ctx
        .spawn_kernel_with(on(last), &double, (), [vec![1.0f32; 16].into()])
        .unwrap();
    let e = after.fetch().unwrap_err();
    let mut chain = e.to_string();
    let mut src = std::error::Error::source(&e);
    while let Some(s) = src {
        chain.push_str(&format!(": {s}"));
        src = s.source();
    }
    assert!(
        chain.contains("lost"),
        "the error chain names the loss: {chain}"
    );
    let dependent = ctx.spawn(|v: Vec<f32>| v.len(), (&after,));
    assert!(dependent.fetch().is_err(), "its dependents fail too");
    // Everything else carries on: the CPU, and the other GPU if there is one.
    let cpu = ctx
        .spawn_kernel_with(
            Options::new().scope(Scope::cpu()),
            &double,
            (),
            [vec![1.0f32; 4].into()],
        )
        .unwrap();
    assert_eq!(cpu.fetch().unwrap(), vec![2.0; 4]);
    if last > 0 {
        let other = ctx
            .spawn_kernel_with(on(0), &double, (), [vec![3.0f32; 4].into()])
            .unwrap();
        assert_eq!(other.fetch().unwrap(), vec![6.0; 4]);
    }
    assert_eq!(ctx.spawn(|| 5, ()).fetch().unwrap(), 5);
}
