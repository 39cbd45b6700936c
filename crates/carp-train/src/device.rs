//! Choosing the device (and so the backend) from a name.

use crate::error::TrainError;
use burn::tensor::Device;

/// Parses `cpu` (Burn's flex backend), `ndarray`, `vulkan[:N]` or `cuda[:N]`.
///
/// GPU names need the matching cargo feature; without it the error says which one.
pub fn parse_device(name: &str) -> Result<Device, TrainError> {
    let (kind, index) = match name.split_once(':') {
        Some((k, i)) => {
            let index = i.parse::<usize>().map_err(|_| TrainError::Config {
                key: "run.device".into(),
                message: format!("bad device index in `{name}`"),
            })?;
            (k, index)
        }
        None => (name, 0),
    };
    let missing = |feature: &str| TrainError::Config {
        key: "run.device".into(),
        message: format!("device `{name}` needs carp built with `--features {feature}`"),
    };
    let _ = index;
    match kind {
        "cpu" | "flex" => Ok(Device::flex()),
        #[cfg(feature = "ndarray")]
        #[allow(deprecated)]
        "ndarray" => Ok(Device::ndarray()),
        #[cfg(not(feature = "ndarray"))]
        "ndarray" => Err(missing("ndarray")),
        #[cfg(feature = "vulkan")]
        "vulkan" | "gpu" => Ok(Device::vulkan(burn::tensor::DeviceKind::DiscreteGpu(index))),
        #[cfg(not(feature = "vulkan"))]
        "vulkan" | "gpu" => Err(missing("vulkan")),
        #[cfg(feature = "cuda")]
        "cuda" => Ok(Device::cuda(index)),
        #[cfg(not(feature = "cuda"))]
        "cuda" => Err(missing("cuda")),
        _ => Err(TrainError::Config {
            key: "run.device".into(),
            message: format!("unknown device `{name}` (cpu, ndarray, vulkan[:N], cuda[:N])"),
        }),
    }
}
