//! Helpers shared by the integration tests.

pub mod ranks;

use std::sync::mpsc;
use std::time::Duration;

use dagger::{Context, GpuInfo, ProcessorKind};

fn gpus_required() -> bool {
    std::env::var("DAGGER_REQUIRE_GPU").is_ok_and(|v| v == "1")
}

/// The GPUs of `ctx`. When there are none, prints that `what` is skipped — or, under
/// `DAGGER_REQUIRE_GPU=1` (as CI sets), fails the test instead.
#[allow(dead_code)]
pub fn gpus_or_skip(ctx: &Context, what: &str) -> Vec<GpuInfo> {
    let gpus: Vec<GpuInfo> = ctx
        .processors()
        .into_iter()
        .filter(|p| p.kind == ProcessorKind::Wgpu)
        .filter_map(|p| p.gpu)
        .collect();
    if gpus.is_empty() {
        let why = format!("no wgpu adapter found (errors: {:?})", ctx.gpu_errors());
        if gpus_required() {
            panic!("DAGGER_REQUIRE_GPU=1 but {why}; install mesa-vulkan-drivers");
        }
        eprintln!("skipped {what}: {why}");
    }
    gpus
}

/// Whether `gpus` has a second GPU for `what`. When not, prints that `what` is skipped — or,
/// under `DAGGER_REQUIRE_GPU=1` (CI has lavapipe and llvmpipe), fails the test instead.
#[allow(dead_code)]
pub fn has_two_gpus(gpus: &[GpuInfo], what: &str) -> bool {
    if gpus.len() >= 2 {
        return true;
    }
    let why = format!("it needs two GPUs and found {}", gpus.len());
    if gpus_required() {
        panic!("DAGGER_REQUIRE_GPU=1 but {why} (CI has Mesa's lavapipe and llvmpipe)");
    }
    eprintln!("skipped {what}: {why}");
    false
}

/// Runs `f` on its own thread and returns its value, failing the test if it takes longer
/// than `secs` seconds (a hang) and passing its panic on.
#[allow(dead_code)]
pub fn within<T: Send + 'static>(
    secs: u64,
    what: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)));
    });
    match rx.recv_timeout(Duration::from_secs(secs)) {
        Ok(Ok(v)) => v,
        Ok(Err(p)) => std::panic::resume_unwind(p),
        Err(_) => panic!("{what} did not finish within {secs} s: it hangs"),
    }
}

/// An error and its sources, joined with ": ", as a chain printer shows them.
#[allow(dead_code)]
pub fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(x) = src {
        s.push_str(": ");
        s.push_str(&x.to_string());
        src = x.source();
    }
    s
}

/// A kernel adding one to every element in place, on a GPU and (with `cpu`) on threads.
#[cfg(feature = "wgpu")]
#[allow(dead_code)]
pub fn increment(name: &str, cpu: bool) -> dagger::WgslKernel<(), f32> {
    let b = dagger::WgslKernel::<(), f32>::builder(
        name,
        "@group(0) @binding(0) var<storage, read_write> x: array<f32>;
         @compute @workgroup_size(64)
         fn main(@builtin(global_invocation_id) id: vec3<u32>) {
             if (id.x < arrayLength(&x)) { x[id.x] = x[id.x] + 1.0; }
         }",
        "main",
    )
    .inputs([dagger::Access::ReadWrite])
    .workgroups(|_, l| [(l[0] as u32).div_ceil(64).max(1), 1, 1]);
    let b = if cpu {
        b.cpu(|_, _, out| out.iter_mut().for_each(|v| *v += 1.0))
    } else {
        b
    };
    b.build().unwrap()
}

/// A small xorshift generator: random graphs that are the same for the same seed.
#[allow(dead_code)]
pub struct Rng(u64);

#[allow(dead_code)]
impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// A panic payload whose own `Drop` panics.
#[allow(dead_code)]
pub struct Bomb;

impl Drop for Bomb {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            panic!("the payload's drop panics too");
        }
    }
}

/// A fresh, empty directory `dagger-{area}-{tag}-{pid}` under the temporary directory, for
/// one test.
#[allow(dead_code)]
pub fn scratch(area: &str, tag: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("dagger-{area}-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Runs `code` under `$DAGGER_PYTHON` (else `python3`), isolated, with `args`, and checks
/// it prints `agrees`. When the interpreter or one of its modules is missing, says the check
/// was skipped for want of `what`; any other failure fails the test.
#[allow(dead_code)]
pub fn python_agrees(code: &str, args: &[&std::path::Path], agrees: &str, what: &str) {
    let python = std::env::var("DAGGER_PYTHON").unwrap_or_else(|_| "python3".into());
    let check = std::process::Command::new(&python)
        .args(["-I", "-c", code])
        .args(args)
        .output();
    match check {
        Ok(out) if out.status.success() => {
            assert!(String::from_utf8_lossy(&out.stdout).contains(agrees))
        }
        Ok(out) if String::from_utf8_lossy(&out.stderr).contains("No module named") => {
            eprintln!("skipped reading with {what}: {python} has no {what}")
        }
        Ok(out) => panic!(
            "{what} could not read what dagger wrote: {}",
            String::from_utf8_lossy(&out.stderr)
        ),
        Err(e) => eprintln!("skipped reading with {what}: no {python} ({e})"),
    }
}

/// The scopes the linear-algebra conformance tests run on, each with whether it runs f64
/// tiles: CPU, default, each GPU, and CPU with every GPU.
#[allow(dead_code)]
pub fn linalg_scopes(ctx: &Context) -> Vec<(dagger::Scope, bool)> {
    use dagger::Scope;
    let mut v = vec![(Scope::cpu(), true), (Scope::default_scope(), true)];
    let gpus = gpus_or_skip(ctx, "the GPU scopes");
    for info in &gpus {
        v.push((Scope::gpu(info.index), info.shader_f64));
    }
    if !gpus.is_empty() {
        let all_f64 = gpus.iter().all(|g| g.shader_f64);
        v.push((
            Scope::union([Scope::cpu(), Scope::gpus(..)]).unwrap(),
            all_f64,
        ));
    }
    v
}

/// Seeded uniform numbers in [-0.5, 0.5).
#[allow(dead_code)]
pub fn random_matrix(rows: usize, cols: usize, seed: u64) -> ndarray::Array2<f64> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    ndarray::Array2::from_shape_fn((rows, cols), |_| {
        s ^= s >> 12;
        s ^= s << 25;
        s ^= s >> 27;
        ((s.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 40) as f64 / (1u64 << 24) as f64) - 0.5
    })
}
