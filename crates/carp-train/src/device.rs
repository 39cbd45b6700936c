//! Choosing the device (and so the backend) from a name, and listing what the build and the
//! machine offer.
//!
//! Names: `cpu` (Burn's flex backend, the default), `ndarray`, `wgpu[:N]`, `vulkan[:N]`,
//! `cuda[:N]`. `N` counts the GPUs of any type that the backend reaches, discrete ones first,
//! then integrated, then virtual (`wgpu` alone is `wgpu:0`); `wgpu:cpu` and `vulkan:cpu` pick
//! the software adapter (Mesa's lavapipe on Linux), which is how the GPU code path is tested
//! without a GPU.
//!
//! - `wgpu` (cargo feature `wgpu`): Burn's portable GPU backend, WGSL kernels compiled by naga,
//!   on whichever graphics API the machine offers (Vulkan, then DX12, then OpenGL; Metal on
//!   macOS).
//! - `vulkan` (cargo feature `vulkan`): the same runtime pinned to Vulkan, with cubecl's SPIR-V
//!   compiler (the faster path on real GPUs). With this feature compiled in, cubecl compiles
//!   SPIR-V for *every* Vulkan adapter, `wgpu` ones included.
//! - `cuda` (cargo feature `cuda`): cubecl's CUDA runtime; `N` is the CUDA ordinal.
//!
//! [`open`] never panics on a missing GPU: it enumerates the adapters itself (wgpu's own
//! `Instance` API, as cubecl does) and answers with a [`DeviceError`] that names what to
//! install or which device to pick. It also refuses the one configuration known to crash the
//! process instead of failing: SPIR-V kernels on lavapipe (a segfault inside Mesa 22.3's
//! `vkCreateComputePipelines`).
//!
//! A device is opened once per process; [`OpenOptions::float_dtype`] sets its default float
//! type at that moment (Burn's `Device::configure`, which must precede any tensor).

use crate::error::TrainError;
use burn::tensor::{Device, FloatDType};
use serde::Serialize;
use std::fmt;
use std::sync::Mutex;

/// Why a device name cannot be used.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DeviceError {
    /// Not a device name carp knows.
    #[error(
        "unknown device `{name}`: expected cpu, ndarray, wgpu[:N|:cpu], vulkan[:N|:cpu] or \
         cuda[:N] (`carp devices` lists what this build and machine offer)"
    )]
    Unknown {
        /// The name given.
        name: String,
    },
    /// The part after `:` is neither an index nor `cpu`.
    #[error("device `{name}`: `{adapter}` is not an adapter index (0, 1, ...) or `cpu`")]
    BadAdapter {
        /// The name given.
        name: String,
        /// The part after the colon.
        adapter: String,
    },
    /// The backend is not compiled into this build.
    #[error(
        "device `{name}` needs carp built with `--features {feature}` (this build has: {compiled})"
    )]
    NotCompiled {
        /// The name given.
        name: String,
        /// The cargo feature that adds it.
        feature: &'static str,
        /// The backends this build has.
        compiled: String,
    },
    /// The Vulkan loader library is missing, so no Vulkan adapter can be found.
    #[error(
        "device `{name}`: no Vulkan loader (libvulkan.so.1) on this machine. Install it with a \
         Vulkan driver: your GPU vendor's, or Mesa's (Debian/Ubuntu: `apt-get install libvulkan1 \
         mesa-vulkan-drivers`; the latter also brings the software adapter for `wgpu:cpu`)"
    )]
    NoVulkanLoader {
        /// The name given.
        name: String,
    },
    /// The backend reaches no adapter of the kind asked for.
    #[error("device `{name}`: {problem}. {hint}")]
    NoAdapter {
        /// The name given.
        name: String,
        /// What is missing: `no GPU adapter (found: llvmpipe (cpu))`, ...
        problem: String,
        /// What to do about it.
        hint: String,
    },
    /// The adapter's driver is known to crash the process on this build's kernels.
    #[error(
        "device `{name}`: {adapter} ({driver}) is a software Vulkan driver that crashes \
         (segfault in vkCreateComputePipelines, seen with Mesa 22.3) on cubecl's SPIR-V kernels, \
         which this build compiles for every Vulkan adapter because it has the `vulkan` feature. \
         {hint}"
    )]
    CrashProneDriver {
        /// The name given.
        name: String,
        /// The adapter's name.
        adapter: String,
        /// Its driver and version.
        driver: String,
        /// What to use instead.
        hint: String,
    },
    /// The backend found the adapter but could not start on it.
    #[error("device `{name}`: {message}")]
    Init {
        /// The name given.
        name: String,
        /// The backend's error.
        message: String,
    },
    /// The device was opened before with different options, or the backend refused them.
    #[error("device `{name}`: {message}")]
    Options {
        /// The name given.
        name: String,
        /// What conflicts.
        message: String,
    },
}

impl From<DeviceError> for TrainError {
    fn from(e: DeviceError) -> Self {
        TrainError::Config {
            key: "run.device".into(),
            message: e.to_string(),
        }
    }
}

/// The backend a device name selects.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    /// Burn's flex CPU backend (`cpu`).
    Flex,
    /// Burn's ndarray CPU backend (deprecated upstream).
    NdArray,
    /// Burn's wgpu backend: WGSL (naga) on Vulkan, Metal, DX12 or OpenGL.
    Wgpu,
    /// The wgpu runtime pinned to Vulkan, SPIR-V kernels.
    Vulkan,
    /// cubecl's CUDA runtime.
    Cuda,
}

impl BackendKind {
    /// Every backend carp knows, in the order `carp devices` lists them.
    pub const ALL: [BackendKind; 5] = [
        BackendKind::Flex,
        BackendKind::NdArray,
        BackendKind::Wgpu,
        BackendKind::Vulkan,
        BackendKind::Cuda,
    ];

    /// The name used in `--device` (`cpu` for flex).
    pub fn device_name(self) -> &'static str {
        match self {
            BackendKind::Flex => "cpu",
            BackendKind::NdArray => "ndarray",
            BackendKind::Wgpu => "wgpu",
            BackendKind::Vulkan => "vulkan",
            BackendKind::Cuda => "cuda",
        }
    }

    /// The cargo feature that compiles it in (`None` for the always-present flex).
    pub fn feature(self) -> Option<&'static str> {
        match self {
            BackendKind::Flex => None,
            BackendKind::NdArray => Some("ndarray"),
            BackendKind::Wgpu => Some("wgpu"),
            BackendKind::Vulkan => Some("vulkan"),
            BackendKind::Cuda => Some("cuda"),
        }
    }

    /// Whether this build has it. `wgpu` devices exist in a `vulkan`-only build too (Burn's
    /// `vulkan` feature includes its wgpu runtime), with SPIR-V kernels on Vulkan adapters.
    pub fn compiled(self) -> bool {
        match self {
            BackendKind::Flex => true,
            BackendKind::NdArray => cfg!(feature = "ndarray"),
            BackendKind::Wgpu => cfg!(any(feature = "wgpu", feature = "vulkan")),
            BackendKind::Vulkan => cfg!(feature = "vulkan"),
            BackendKind::Cuda => cfg!(feature = "cuda"),
        }
    }

    /// Whether its devices are adapters of the wgpu runtime (enumerated by [`adapters`]).
    pub fn is_wgpu_runtime(self) -> bool {
        matches!(self, BackendKind::Wgpu | BackendKind::Vulkan)
    }
}

/// Which device of a backend.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AdapterSelector {
    /// The N-th GPU the backend reaches: discrete ones first, then integrated, then virtual
    /// (for CUDA, the CUDA ordinal). Always 0 for the CPU backends.
    Gpu(usize),
    /// The software adapter (lavapipe, llvmpipe, WARP).
    Software,
}

/// A parsed `--device` name; nothing is opened or enumerated yet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct DeviceSpec {
    /// The backend.
    pub backend: BackendKind,
    /// Which of its devices.
    pub adapter: AdapterSelector,
}

impl DeviceSpec {
    /// Parses `cpu`, `flex`, `ndarray`, `wgpu[:N|:cpu]`, `vulkan[:N|:cpu]`, `cuda[:N]`.
    ///
    /// Only the syntax is checked; whether the backend is compiled in and the adapter exists
    /// is [`open`]'s to say.
    pub fn parse(name: &str) -> Result<Self, DeviceError> {
        let (kind, adapter) = match name.split_once(':') {
            Some((k, a)) => (k, Some(a)),
            None => (name, None),
        };
        let backend = match kind {
            "cpu" | "flex" => BackendKind::Flex,
            "ndarray" => BackendKind::NdArray,
            "wgpu" => BackendKind::Wgpu,
            "vulkan" => BackendKind::Vulkan,
            "cuda" => BackendKind::Cuda,
            _ => {
                return Err(DeviceError::Unknown {
                    name: name.to_string(),
                })
            }
        };
        let bad = || DeviceError::BadAdapter {
            name: name.to_string(),
            adapter: adapter.unwrap_or_default().to_string(),
        };
        let adapter = match (backend, adapter) {
            (_, None) => AdapterSelector::Gpu(0),
            (BackendKind::Flex | BackendKind::NdArray, Some(_)) => return Err(bad()),
            (BackendKind::Wgpu | BackendKind::Vulkan, Some("cpu")) => AdapterSelector::Software,
            (_, Some(index)) => AdapterSelector::Gpu(index.parse().map_err(|_| bad())?),
        };
        Ok(Self { backend, adapter })
    }
}

impl fmt::Display for DeviceSpec {
    /// The canonical name: `cpu`, `ndarray`, `wgpu:0`, `wgpu:cpu`, `cuda:1`, ...
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = self.backend.device_name();
        match (self.backend, self.adapter) {
            (BackendKind::Flex | BackendKind::NdArray, _) => f.write_str(name),
            (_, AdapterSelector::Software) => write!(f, "{name}:cpu"),
            (_, AdapterSelector::Gpu(i)) => write!(f, "{name}:{i}"),
        }
    }
}

/// Settings applied when a device is opened for the first time in the process.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OpenOptions {
    /// Default float type of the device's tensors (`None`: the backend's, f32). Burn fixes it
    /// at the device's first tensor, so it can only be chosen here.
    pub float_dtype: Option<FloatDType>,
}

/// The backends compiled into this build, comma-separated (`cpu, wgpu`).
pub fn compiled_backends() -> String {
    BackendKind::ALL
        .iter()
        .filter(|b| b.compiled())
        .map(|b| b.device_name())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Devices opened so far in this process, with the options they were opened with.
///
/// The lock also serialises adapter enumeration and runtime start-up: the Vulkan loader
/// crashes when instances are created and destroyed on several threads at once (cubecl keeps
/// its own lock for the same reason).
static OPENED: Mutex<Vec<(DeviceSpec, OpenOptions, Device)>> = Mutex::new(Vec::new());

/// Opens the device `spec` names, or explains why it cannot.
///
/// The first call for a device starts its runtime (for wgpu devices: picks the adapter,
/// checks the driver, creates the wgpu device) and applies `options`; later calls return the
/// same device and fail only if `options` differ from the first call's.
pub fn open(spec: &DeviceSpec, options: &OpenOptions) -> Result<Device, DeviceError> {
    let mut opened = OPENED.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, first, device)) = opened.iter().find(|(s, _, _)| s == spec) {
        if first != options {
            return Err(DeviceError::Options {
                name: spec.to_string(),
                message: format!(
                    "already opened in this process with {first:?}, now asked for {options:?}"
                ),
            });
        }
        return Ok(device.clone());
    }
    let mut device = start(spec)?;
    if let Some(dtype) = options.float_dtype {
        device.configure(dtype).map_err(|e| DeviceError::Options {
            name: spec.to_string(),
            message: e.to_string(),
        })?;
    }
    opened.push((*spec, *options, device.clone()));
    Ok(device)
}

/// Parses and opens a device name with default options (f32): `cpu`, `wgpu:cpu`, `vulkan:1`, ...
pub fn parse_device(name: &str) -> Result<Device, TrainError> {
    Ok(open(&DeviceSpec::parse(name)?, &OpenOptions::default())?)
}

fn not_compiled(spec: &DeviceSpec) -> DeviceError {
    DeviceError::NotCompiled {
        name: spec.to_string(),
        feature: spec.backend.feature().unwrap_or("default"),
        compiled: compiled_backends(),
    }
}

/// Starts the runtime of a device (not yet opened in this process).
fn start(spec: &DeviceSpec) -> Result<Device, DeviceError> {
    if !spec.backend.compiled() {
        return Err(not_compiled(spec));
    }
    match spec.backend {
        BackendKind::Flex => Ok(Device::flex()),
        #[cfg(feature = "ndarray")]
        #[allow(deprecated)]
        BackendKind::NdArray => Ok(Device::ndarray()),
        #[cfg(any(feature = "wgpu", feature = "vulkan"))]
        BackendKind::Wgpu | BackendKind::Vulkan => wgpu_runtime::start(spec),
        #[cfg(feature = "cuda")]
        BackendKind::Cuda => match spec.adapter {
            AdapterSelector::Gpu(i) => Ok(Device::cuda(i)),
            AdapterSelector::Software => Err(DeviceError::BadAdapter {
                name: spec.to_string(),
                adapter: "cpu".into(),
            }),
        },
        #[allow(unreachable_patterns)]
        _ => Err(not_compiled(spec)),
    }
}

/// The type of an adapter, as the graphics API reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum AdapterKind {
    /// A discrete GPU.
    Discrete,
    /// A GPU sharing memory with the CPU.
    Integrated,
    /// A virtualised GPU.
    Virtual,
    /// A software rasteriser running on the CPU (lavapipe, llvmpipe, WARP).
    Cpu,
    /// Anything else (Burn cannot select these).
    Other,
}

/// One adapter a GPU backend reaches.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Adapter {
    /// The `--device` name that selects it (`wgpu:0`, `wgpu:cpu`), or `None` if Burn cannot
    /// select it (type `Other`, or a second software adapter).
    pub device: Option<String>,
    /// Its type.
    pub kind: AdapterKind,
    /// The adapter's name (`NVIDIA GeForce RTX 4090`, `llvmpipe (LLVM 15.0.6, 256 bits)`).
    pub name: String,
    /// The driver's name (`NVIDIA`, `llvmpipe`).
    pub driver: String,
    /// The driver's version text (`Mesa 22.3.6 (LLVM 15.0.6)`).
    pub driver_info: String,
    /// The graphics API it was found on (`Vulkan`, `Metal`, `Dx12`, `Gl`).
    pub api: String,
    /// The kernel language this build uses on it: `WGSL` or `SPIR-V`.
    pub kernels: &'static str,
    /// Why opening it would be refused, if it would.
    pub refused: Option<String>,
}

/// What one backend offers on this machine, for `carp devices`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct BackendReport {
    /// The backend.
    pub backend: BackendKind,
    /// The cargo feature that adds it.
    pub feature: Option<&'static str>,
    /// Whether this build has it.
    pub compiled: bool,
    /// Its adapters, in `--device` order (GPU runtimes that can list them; empty otherwise).
    pub adapters: Vec<Adapter>,
    /// Why a GPU runtime compiled in lists no adapter (what to install).
    pub adapter_error: Option<String>,
    /// A remark: what the backend runs on, or why it is not listed.
    pub note: String,
}

/// What this build and machine offer, one entry per backend carp knows.
pub fn report() -> Vec<BackendReport> {
    BackendKind::ALL
        .iter()
        .map(|&backend| {
            let compiled = backend.compiled();
            let mut listed = Ok(Vec::new());
            let note = match backend {
                BackendKind::Flex => "Burn's flex backend on the CPU (default)",
                BackendKind::NdArray => "Burn's ndarray backend on the CPU",
                BackendKind::Cuda => "cuda:N is the CUDA device ordinal N (not listed here)",
                BackendKind::Wgpu if compiled && cfg!(feature = "vulkan") => {
                    "WGSL kernels; SPIR-V on Vulkan adapters (this build has `vulkan`)"
                }
                BackendKind::Wgpu => "WGSL kernels on Vulkan, Metal, DX12 or OpenGL",
                BackendKind::Vulkan => "SPIR-V kernels, Vulkan only",
            };
            if compiled && backend.is_wgpu_runtime() {
                let _lock = OPENED.lock().unwrap_or_else(|e| e.into_inner());
                listed = adapters(backend);
            }
            let (adapters, adapter_error) = match listed {
                Ok(a) => (a, None),
                Err(e) => (Vec::new(), Some(e.to_string())),
            };
            BackendReport {
                backend,
                feature: backend.feature(),
                compiled,
                adapters,
                adapter_error,
                note: note.to_string(),
            }
        })
        .collect()
}

/// The adapters of a wgpu-runtime backend (`wgpu` or `vulkan`) on this machine, in `--device`
/// order; an error when the backend is not compiled in or no graphics API answers.
pub fn adapters(backend: BackendKind) -> Result<Vec<Adapter>, DeviceError> {
    let spec = DeviceSpec {
        backend,
        adapter: AdapterSelector::Gpu(0),
    };
    if !backend.compiled() || !backend.is_wgpu_runtime() {
        return Err(not_compiled(&spec));
    }
    #[cfg(any(feature = "wgpu", feature = "vulkan"))]
    {
        wgpu_runtime::list(&spec)
    }
    #[cfg(not(any(feature = "wgpu", feature = "vulkan")))]
    {
        Err(not_compiled(&spec))
    }
}

/// The adapter selection rules, kept free of wgpu types so they are tested in every build.
#[cfg_attr(not(any(feature = "wgpu", feature = "vulkan")), allow(dead_code))]
mod selection {
    use super::{Adapter, AdapterKind};

    /// The order `--device NAME:N` counts GPUs in, and the per-type index Burn selects them by.
    pub fn rank(kind: AdapterKind) -> Option<usize> {
        match kind {
            AdapterKind::Discrete => Some(0),
            AdapterKind::Integrated => Some(1),
            AdapterKind::Virtual => Some(2),
            AdapterKind::Cpu | AdapterKind::Other => None,
        }
    }

    /// For each adapter (in enumeration order), its `--device` suffix (`0`, `1`, `cpu`) and its
    /// index among the adapters of its own type (what Burn's `DeviceKind` counts), or `None`
    /// when it cannot be selected.
    pub fn assign(kinds: &[AdapterKind]) -> Vec<Option<(String, usize)>> {
        let mut out = vec![None; kinds.len()];
        let mut per_type = [0usize; 3];
        let mut order: Vec<usize> = (0..kinds.len())
            .filter(|&i| rank(kinds[i]).is_some())
            .collect();
        // Stable: within a type, enumeration order (the order Burn counts them in).
        order.sort_by_key(|&i| rank(kinds[i]));
        for (n, &i) in order.iter().enumerate() {
            let r = rank(kinds[i]).expect("filtered");
            out[i] = Some((n.to_string(), per_type[r]));
            per_type[r] += 1;
        }
        // Burn's `DeviceKind::Cpu` takes the first software adapter.
        if let Some(i) = kinds.iter().position(|&k| k == AdapterKind::Cpu) {
            out[i] = Some(("cpu".to_string(), 0));
        }
        out
    }

    /// A one-line list of adapters for error messages: `llvmpipe (LLVM 15.0.6) [cpu]`.
    pub fn summary(adapters: &[Adapter]) -> String {
        if adapters.is_empty() {
            return "none".into();
        }
        adapters
            .iter()
            .map(|a| {
                let kind = serde_json::to_value(a.kind).expect("enum serialises");
                format!("{} [{}]", a.name, kind.as_str().unwrap_or("?"))
            })
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Whether a driver is Mesa's lavapipe, which segfaults on cubecl's SPIR-V kernels.
    pub fn is_lavapipe(kind: AdapterKind, driver: &str, name: &str) -> bool {
        kind == AdapterKind::Cpu && (driver == "llvmpipe" || name.starts_with("llvmpipe"))
    }
}

#[cfg(any(feature = "wgpu", feature = "vulkan"))]
mod wgpu_runtime {
    //! Enumeration and start-up of the wgpu runtime's devices, the way cubecl-wgpu 0.11.3
    //! does it (`runtime.rs`: `settle`, `probe`, `select_from_adapter_list`), so that the
    //! adapter listed is the adapter Burn opens.

    use super::selection::{assign, is_lavapipe, summary};
    use super::{Adapter, AdapterKind, AdapterSelector, BackendKind, DeviceError, DeviceSpec};
    use burn::tensor::wgpu::{wgpu, WgpuBackend, WgpuInitError};
    use burn::tensor::{Device, DeviceKind};

    /// SPIR-V is compiled for every Vulkan adapter in builds with the `vulkan` feature.
    const SPIRV: bool = cfg!(feature = "vulkan");

    /// The graphics APIs a backend tries, best first (cubecl's `backend_candidates` and
    /// `AutoGraphicsApi::chain`).
    fn candidates(backend: BackendKind) -> Vec<wgpu::Backend> {
        match backend {
            BackendKind::Vulkan => vec![wgpu::Backend::Vulkan],
            _ if cfg!(target_os = "macos") => vec![wgpu::Backend::Metal],
            _ => vec![
                wgpu::Backend::Vulkan,
                wgpu::Backend::Dx12,
                wgpu::Backend::Gl,
            ],
        }
    }

    /// Polls a future to completion: wgpu's native adapter enumeration is synchronous under
    /// its async signature, so the first poll answers.
    fn block_on<F: std::future::Future>(future: F) -> F::Output {
        let mut future = std::pin::pin!(future);
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        loop {
            if let std::task::Poll::Ready(v) = future.as_mut().poll(&mut cx) {
                return v;
            }
            std::thread::yield_now();
        }
    }

    /// The adapters one graphics API reaches (cubecl's `probe`).
    fn probe(api: wgpu::Backend) -> Vec<wgpu::AdapterInfo> {
        if !wgpu::Instance::enabled_backend_features().contains(api.into()) {
            return Vec::new();
        }
        let instance = wgpu::Instance::new(wgpu::InstanceDescriptor {
            backends: api.into(),
            ..wgpu::InstanceDescriptor::new_without_display_handle()
        });
        block_on(instance.enumerate_adapters(api.into()))
            .iter()
            .map(wgpu::Adapter::get_info)
            .collect()
    }

    /// The API the backend settles on and its adapters (cubecl's `settle`): the first
    /// candidate with a GPU, else the first with anything.
    fn settle(backend: BackendKind) -> Option<(wgpu::Backend, Vec<wgpu::AdapterInfo>)> {
        let mut software_only = None;
        for api in candidates(backend) {
            let found = probe(api);
            if found.iter().any(|a| a.device_type != wgpu::DeviceType::Cpu) {
                return Some((api, found));
            }
            if software_only.is_none() && !found.is_empty() {
                software_only = Some((api, found));
            }
        }
        software_only
    }

    fn kind_of(t: wgpu::DeviceType) -> AdapterKind {
        match t {
            wgpu::DeviceType::DiscreteGpu => AdapterKind::Discrete,
            wgpu::DeviceType::IntegratedGpu => AdapterKind::Integrated,
            wgpu::DeviceType::VirtualGpu => AdapterKind::Virtual,
            wgpu::DeviceType::Cpu => AdapterKind::Cpu,
            wgpu::DeviceType::Other => AdapterKind::Other,
        }
    }

    /// Whether the Vulkan loader library can be loaded (wgpu finds no Vulkan adapter without
    /// it, and says nothing).
    #[cfg(target_os = "linux")]
    fn vulkan_loader_present() -> bool {
        // SAFETY: dlopen/dlclose of a system library by name; the handle is not used otherwise.
        unsafe {
            let handle = libc::dlopen(
                c"libvulkan.so.1".as_ptr(),
                libc::RTLD_NOW | libc::RTLD_LOCAL,
            );
            if handle.is_null() {
                return false;
            }
            libc::dlclose(handle);
        }
        true
    }

    #[cfg(not(target_os = "linux"))]
    fn vulkan_loader_present() -> bool {
        true
    }

    /// An enumerated adapter with what Burn needs to select it.
    struct Found {
        adapter: Adapter,
        select: Option<DeviceKind>,
    }

    /// The adapters of `spec`'s backend; errors name the device as `name`.
    fn enumerate(spec: &DeviceSpec, name: String) -> Result<Vec<Found>, DeviceError> {
        let Some((api, infos)) = settle(spec.backend) else {
            if candidates(spec.backend).contains(&wgpu::Backend::Vulkan) && !vulkan_loader_present()
            {
                return Err(DeviceError::NoVulkanLoader { name });
            }
            let apis: Vec<String> = candidates(spec.backend)
                .iter()
                .map(|a| format!("{a:?}"))
                .collect();
            return Err(DeviceError::NoAdapter {
                name,
                problem: format!("no adapter on {}", apis.join(", ")),
                hint: "Install your GPU's driver (with Vulkan support on Linux), or Mesa's \
                       software one for `wgpu:cpu` (Debian/Ubuntu: `apt-get install libvulkan1 \
                       mesa-vulkan-drivers`); `cpu` needs nothing"
                    .into(),
            });
        };
        let kinds: Vec<AdapterKind> = infos.iter().map(|i| kind_of(i.device_type)).collect();
        let slots = assign(&kinds);
        let backend = spec.backend.device_name();
        let spirv = SPIRV && api == wgpu::Backend::Vulkan;
        Ok(infos
            .into_iter()
            .zip(kinds)
            .zip(slots)
            .map(|((info, kind), slot)| {
                let select = slot.as_ref().map(|(_, i)| match kind {
                    AdapterKind::Discrete => DeviceKind::DiscreteGpu(*i),
                    AdapterKind::Integrated => DeviceKind::IntegratedGpu(*i),
                    AdapterKind::Virtual => DeviceKind::VirtualGpu(*i),
                    _ => DeviceKind::Cpu,
                });
                let refused = (spirv && is_lavapipe(kind, &info.driver, &info.name))
                    .then(|| "lavapipe crashes on SPIR-V kernels".to_string());
                Found {
                    adapter: Adapter {
                        device: slot.map(|(suffix, _)| format!("{backend}:{suffix}")),
                        kind,
                        name: info.name,
                        driver: info.driver,
                        driver_info: info.driver_info,
                        api: format!("{api:?}"),
                        kernels: if spirv { "SPIR-V" } else { "WGSL" },
                        refused,
                    },
                    select,
                }
            })
            .collect())
    }

    pub(super) fn list(spec: &DeviceSpec) -> Result<Vec<Adapter>, DeviceError> {
        let name = spec.backend.device_name().to_string();
        let mut found: Vec<Adapter> = enumerate(spec, name)?
            .into_iter()
            .map(|f| f.adapter)
            .collect();
        // `--device` order: selectable GPUs by their index, then the software adapter, then
        // the rest.
        found.sort_by_key(
            |a| match a.device.as_deref().and_then(|d| d.split_once(':')) {
                Some((_, "cpu")) => (1, 0),
                Some((_, n)) => (0, n.parse::<usize>().unwrap_or(0)),
                None => (2, 0),
            },
        );
        Ok(found)
    }

    pub(super) fn start(spec: &DeviceSpec) -> Result<Device, DeviceError> {
        let name = spec.to_string();
        let found = enumerate(spec, name.clone())?;
        let wanted = match spec.adapter {
            AdapterSelector::Software => format!("{}:cpu", spec.backend.device_name()),
            AdapterSelector::Gpu(i) => format!("{}:{i}", spec.backend.device_name()),
        };
        let adapters: Vec<Adapter> = found.iter().map(|f| f.adapter.clone()).collect();
        let Some(chosen) = found
            .into_iter()
            .find(|f| f.adapter.device.as_deref() == Some(wanted.as_str()))
        else {
            let gpus = adapters
                .iter()
                .filter(|a| a.device.as_ref().is_some_and(|d| !d.ends_with(":cpu")))
                .count();
            let software = adapters
                .iter()
                .find_map(|a| a.device.clone().filter(|d| d.ends_with(":cpu")));
            let problem = match spec.adapter {
                AdapterSelector::Software => {
                    format!("no software adapter (found: {})", summary(&adapters))
                }
                AdapterSelector::Gpu(_) if gpus == 0 => {
                    format!("no GPU adapter (found: {})", summary(&adapters))
                }
                AdapterSelector::Gpu(i) => {
                    format!(
                        "GPU {i} asked for, but there are {gpus} ({})",
                        summary(&adapters)
                    )
                }
            };
            let hint = match (spec.adapter, software) {
                (AdapterSelector::Gpu(_), Some(sw)) if gpus == 0 => format!(
                    "`{sw}` runs on the software adapter (slow: for tests), `cpu` on Burn's CPU \
                     backend"
                ),
                (AdapterSelector::Gpu(_), _) if gpus > 0 => {
                    format!("Pick one of {gpus} (`carp devices` lists them)")
                }
                (AdapterSelector::Software, _) => "Install Mesa's software Vulkan driver \
                     (Debian/Ubuntu: `apt-get install mesa-vulkan-drivers`)"
                    .into(),
                _ => "Install your GPU's driver (with Vulkan support on Linux); `cpu` needs \
                      nothing"
                    .into(),
            };
            return Err(DeviceError::NoAdapter {
                name,
                problem,
                hint,
            });
        };
        if chosen.adapter.refused.is_some() {
            let hint = if spec.backend == BackendKind::Vulkan {
                "Use `wgpu:cpu` from a build with `--features wgpu` and without `vulkan` (WGSL \
                 kernels run on lavapipe), or `cpu`"
            } else {
                "Build with `--features wgpu` alone (WGSL kernels run on lavapipe), or use `cpu`"
            };
            return Err(DeviceError::CrashProneDriver {
                name,
                adapter: chosen.adapter.name,
                driver: chosen.adapter.driver_info,
                hint: hint.into(),
            });
        }
        let kind = chosen.select.expect("a listed device is selectable");
        let graphics_api = match spec.backend {
            BackendKind::Vulkan => WgpuBackend::Vulkan,
            _ => WgpuBackend::Auto,
        };
        let result = Device::wgpu_options()
            .device_kind(kind.clone())
            .graphics_api(graphics_api)
            .init();
        match result {
            Ok(device) => Ok(device),
            // Started already outside `open` (a tensor created on `Device::wgpu(..)`): the
            // runtime is registered under the same id, so the plain handle reaches it.
            Err(WgpuInitError::Registration { .. }) => Ok(match spec.backend {
                #[cfg(feature = "vulkan")]
                BackendKind::Vulkan => Device::vulkan(kind),
                _ => Device::wgpu(kind),
            }),
            Err(e) => Err(DeviceError::Init {
                name,
                message: format!("{} on {}: {e}", chosen.adapter.name, chosen.adapter.api),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::selection::{assign, is_lavapipe};
    use super::*;

    #[test]
    fn names_parse_and_print_canonically() {
        for (name, canonical) in [
            ("cpu", "cpu"),
            ("flex", "cpu"),
            ("ndarray", "ndarray"),
            ("wgpu", "wgpu:0"),
            ("wgpu:2", "wgpu:2"),
            ("wgpu:cpu", "wgpu:cpu"),
            ("vulkan", "vulkan:0"),
            ("vulkan:cpu", "vulkan:cpu"),
            ("cuda:1", "cuda:1"),
        ] {
            let spec = DeviceSpec::parse(name).unwrap();
            assert_eq!(spec.to_string(), canonical, "{name}");
            assert_eq!(DeviceSpec::parse(canonical).unwrap(), spec);
        }
        assert_eq!(
            DeviceSpec::parse("wgpu:cpu").unwrap().adapter,
            AdapterSelector::Software
        );
    }

    #[test]
    fn bad_names_are_refused_with_what_was_given() {
        for (name, needle) in [
            ("gpu", "unknown device `gpu`"),
            ("metal", "unknown device"),
            ("wgpu:x", "`x` is not an adapter index"),
            ("wgpu:-1", "`-1` is not an adapter index"),
            ("cuda:cpu", "`cpu` is not an adapter index"),
            ("cpu:0", "`0` is not an adapter index"),
        ] {
            let err = DeviceSpec::parse(name).unwrap_err().to_string();
            assert!(err.contains(needle), "{name}: {err}");
        }
    }

    /// A backend missing from the build names the feature that adds it and what the build has.
    #[test]
    fn missing_backend_names_its_feature() {
        for backend in BackendKind::ALL.into_iter().filter(|b| !b.compiled()) {
            let spec = DeviceSpec {
                backend,
                adapter: AdapterSelector::Gpu(0),
            };
            let err = open(&spec, &OpenOptions::default())
                .unwrap_err()
                .to_string();
            let feature = backend.feature().unwrap();
            assert!(err.contains(&format!("--features {feature}")), "{err}");
            assert!(err.contains("this build has: cpu"), "{err}");
        }
    }

    /// GPUs count discrete first, then integrated, then virtual, each type in enumeration
    /// order; the per-type index is what Burn's `DeviceKind` selects; the first software
    /// adapter is `:cpu`; `Other` adapters and further software ones are not selectable.
    #[test]
    fn adapters_are_numbered_discrete_first() {
        use AdapterKind::*;
        let kinds = [Cpu, Integrated, Discrete, Other, Virtual, Discrete, Cpu];
        let got = assign(&kinds);
        let want = [
            Some(("cpu", 0)),
            Some(("2", 0)),
            Some(("0", 0)),
            None,
            Some(("3", 0)),
            Some(("1", 1)),
            None,
        ];
        for (g, w) in got.iter().zip(want) {
            assert_eq!(g.as_ref().map(|(s, i)| (s.as_str(), *i)), w);
        }
    }

    #[test]
    fn lavapipe_is_recognised() {
        assert!(is_lavapipe(
            AdapterKind::Cpu,
            "llvmpipe",
            "llvmpipe (LLVM 15.0.6, 256 bits)"
        ));
        assert!(!is_lavapipe(AdapterKind::Discrete, "NVIDIA", "NVIDIA RTX"));
        assert!(!is_lavapipe(
            AdapterKind::Cpu,
            "WARP",
            "Microsoft Basic Render Driver"
        ));
    }

    /// Reopening returns the same device; other options for an opened device are refused
    /// (Burn fixes the float type at the first tensor).
    #[test]
    fn reopening_with_other_options_is_refused() {
        let spec = DeviceSpec::parse("cpu").unwrap();
        open(&spec, &OpenOptions::default()).unwrap();
        assert!(open(&spec, &OpenOptions::default()).is_ok());
        let f16 = OpenOptions {
            float_dtype: Some(FloatDType::F16),
        };
        let err = open(&spec, &f16).unwrap_err().to_string();
        assert!(err.contains("already opened"), "{err}");
    }
}
