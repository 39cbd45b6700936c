//! Mixed precision (issue 12): the float type of the forward and backward passes.
//!
//! Master weights, the LARS momentum, the EMA teacher and the BatchNorm running statistics
//! stay f32 in every mode. In `bf16` / `f16` the views are cast to the reduced type and the
//! layers follow their input's type, as PyTorch's autocast does: convolutions, linear layers
//! and the prototype layer cast their f32 weights to it at each use (the gradient flows
//! back through the cast to the f32 weight), BatchNorm computes its statistics in f32 and
//! casts its output back, and the logits are cast to f32 before the block softmax, so the
//! loss (softmax, log-clamp at `f32::EPSILON`, entropy) is always f32 (spec §4). `f16` also
//! needs dynamic loss scaling ([`crate::scaler::GradScaler`]).

use burn::tensor::{DType, Device, FloatDType};
use serde::{Deserialize, Serialize};

/// The float type of the forward and backward passes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// Everything f32 [default].
    #[default]
    F32,
    /// bfloat16 forward and backward (f32's range, 8-bit mantissa): no loss scaling needed.
    Bf16,
    /// IEEE half forward and backward with dynamic loss scaling (the release's `--use_fp16`).
    F16,
}

impl Precision {
    /// Every mode, in the order the CLI lists them.
    pub const ALL: [Precision; 3] = [Precision::F32, Precision::Bf16, Precision::F16];

    /// The mode's name as the configuration and the CLI write it: `f32`, `bf16`, `f16`.
    pub fn name(self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::Bf16 => "bf16",
            Precision::F16 => "f16",
        }
    }

    /// The mode named `name` (`f32`, `bf16`, `f16`).
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.name() == name)
    }

    /// The float type the forward and backward passes run in.
    pub fn dtype(self) -> FloatDType {
        match self {
            Precision::F32 => FloatDType::F32,
            Precision::Bf16 => FloatDType::BF16,
            Precision::F16 => FloatDType::F16,
        }
    }

    /// Whether the mode needs dynamic loss scaling (f16's 5-bit exponent underflows small
    /// gradients).
    pub fn needs_loss_scaling(self) -> bool {
        self == Precision::F16
    }

    /// Whether `device` stores and computes in this mode's type (Burn's
    /// `Device::supports_dtype`: storage, conversion and arithmetic). Flex supports all three;
    /// a GPU may lack one (bf16 on many Vulkan devices has conversions only).
    pub fn is_supported_on(self, device: &Device) -> bool {
        device.supports_dtype(DType::from(self.dtype()))
    }
}

/// The reduced float type (bf16, f16) of a tensor of type `dtype`, if it is one: the layers
/// that keep f32 weights compute in it.
pub fn reduced(dtype: DType) -> Option<FloatDType> {
    match dtype {
        DType::BF16 => Some(FloatDType::BF16),
        DType::F16 => Some(FloatDType::F16),
        _ => None,
    }
}

impl std::fmt::Display for Precision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_flex_supports_every_mode() {
        for p in Precision::ALL {
            assert_eq!(Precision::parse(p.name()), Some(p));
            let toml = serde_json::to_string(&p).unwrap();
            assert_eq!(toml, format!("\"{}\"", p.name()));
            assert!(p.is_supported_on(&Device::flex()), "{p}");
        }
        assert_eq!(Precision::parse("fp16"), None);
        assert_eq!(Precision::default(), Precision::F32);
        assert!(Precision::F16.needs_loss_scaling() && !Precision::Bf16.needs_loss_scaling());
    }
}
