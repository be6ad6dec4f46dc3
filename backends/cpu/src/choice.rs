//! [`GemmKernel`]: which of the crate's GEMM kernels [`crate::gemm`] runs on this CPU.

use std::sync::OnceLock;

/// The environment variable that names the GEMM kernel, overriding the choice by CPU.
pub const GEMM_KERNEL_VAR: &str = "DAGGER_CPU_GEMM";

/// A kernel that can run [`crate::gemm`] on the CPU.
///
/// [`gemm_kernel`] says which one `gemm` uses here; [`crate::gemm_with`] runs a given one.
/// Their results agree to rounding (they add in different orders), and each is checked
/// against the same reference in this crate's tests.
///
/// ```
/// use dagger_cpu::GemmKernel;
///
/// let kernel: GemmKernel = "faer".parse().unwrap();
/// assert_eq!(kernel, GemmKernel::Faer);
/// assert_eq!(kernel.name(), "faer");
/// assert!(kernel.available());
/// let err = "blis".parse::<GemmKernel>().unwrap_err();
/// assert!(err.to_string().contains("avx512, faer or openblas"));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum GemmKernel {
    /// This crate's packed, cache-blocked kernel with AVX-512 micro-kernels (x86-64 CPUs
    /// with AVX-512F), named `"avx512"`.
    Packed,
    /// faer's matrix product (its own AVX-512, AVX2 or portable kernels), named `"faer"`.
    Faer,
    /// The system OpenBLAS's `?gemm` (cargo feature `openblas`), named `"openblas"`.
    OpenBlas,
}

impl GemmKernel {
    /// Every kernel, in the order of their names in messages.
    pub const ALL: [GemmKernel; 3] = [GemmKernel::Packed, GemmKernel::Faer, GemmKernel::OpenBlas];

    /// The kernel's name, as [`GEMM_KERNEL_VAR`] and `parse` take it.
    pub fn name(self) -> &'static str {
        match self {
            GemmKernel::Packed => "avx512",
            GemmKernel::Faer => "faer",
            GemmKernel::OpenBlas => "openblas",
        }
    }

    /// Whether this build on this CPU has the kernel: `Packed` needs AVX-512F, `OpenBlas`
    /// the `openblas` cargo feature; faer is always there.
    pub fn available(self) -> bool {
        match self {
            #[cfg(target_arch = "x86_64")]
            GemmKernel::Packed => crate::packed::available(),
            #[cfg(not(target_arch = "x86_64"))]
            GemmKernel::Packed => false,
            GemmKernel::Faer => true,
            GemmKernel::OpenBlas => cfg!(feature = "openblas"),
        }
    }
}

impl std::fmt::Display for GemmKernel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A name that is not one of [`GemmKernel`]'s.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown GEMM kernel `{0}`: use avx512, faer or openblas")]
pub struct UnknownGemmKernel(pub String);

impl std::str::FromStr for GemmKernel {
    type Err = UnknownGemmKernel;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        GemmKernel::ALL
            .into_iter()
            .find(|k| k.name() == s)
            .ok_or_else(|| UnknownGemmKernel(s.to_owned()))
    }
}

/// The kernel [`crate::gemm`] runs in this process, decided once, at the first call.
///
/// - [`GEMM_KERNEL_VAR`] (`DAGGER_CPU_GEMM`), when set to a kernel this build and CPU have,
///   names it. A value that is not a kernel's name, or names one that is not available, is
///   passed over (the `dagger` tool refuses to start with it, naming the choices).
/// - Otherwise `openblas` with the `openblas` feature.
/// - Otherwise the packed kernel where the CPU has AVX-512F, except on AMD's family 19h
///   (Zen 4, which runs each 512-bit FMA as two 256-bit halves), where faer's was faster:
///   on a 2-core Zen 4 VM, one 1024³ f64 product took 40–42 ms with faer against 42–50
///   with the packed kernel, and a 4096² f64 DArray GEMM on both cores reached 100–104
///   GFLOP/s against 97.5–99.6 (faster in 5 of 5 alternated runs). On a CPU with full-width
///   AVX-512 units and a 2 MiB L2, faer's ran 15–20% behind the packed kernel.
/// - Otherwise faer.
///
/// ```
/// let kernel = dagger_cpu::gemm_kernel();
/// assert!(kernel.available());
/// assert_eq!(kernel.name(), dagger_cpu::gemm_backend_name());
/// ```
pub fn gemm_kernel() -> GemmKernel {
    static CHOICE: OnceLock<GemmKernel> = OnceLock::new();
    *CHOICE.get_or_init(|| {
        let named = std::env::var(GEMM_KERNEL_VAR)
            .ok()
            .and_then(|v| v.parse::<GemmKernel>().ok())
            .filter(|k| k.available());
        named.unwrap_or_else(by_cpu)
    })
}

/// The kernel for this build and CPU when none is named.
fn by_cpu() -> GemmKernel {
    if GemmKernel::OpenBlas.available() {
        GemmKernel::OpenBlas
    } else if GemmKernel::Packed.available() && !double_pumped_avx512() {
        GemmKernel::Packed
    } else {
        GemmKernel::Faer
    }
}

/// Whether this is an AMD CPU of family 19h (Zen 3 and Zen 4; of these only Zen 4 has
/// AVX-512, executed on 256-bit units).
fn double_pumped_avx512() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::__cpuid;
        // `cpuid` exists on every x86-64 CPU, with leaves 0 and 1 always.
        let (vendor, sig) = (__cpuid(0), __cpuid(1));
        let amd = (vendor.ebx, vendor.edx, vendor.ecx) == (0x6874_7541, 0x6974_6e65, 0x444d_4163);
        let base = (sig.eax >> 8) & 0xf;
        let family = if base == 0xf {
            base + ((sig.eax >> 20) & 0xff)
        } else {
            base
        };
        amd && family == 0x19
    }
    #[cfg(not(target_arch = "x86_64"))]
    false
}
