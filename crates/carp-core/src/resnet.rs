//! ResNet backbones (18/34/50) with torchvision's parameter names, spec §1.
//!
//! Field names follow torchvision (`conv1`, `bn1`, `layer1.0.conv1`, `layer1.0.downsample.0`,
//! ...) so that a PyTorch state dict maps onto the module by prefix stripping only. Burn's
//! `BatchNorm` names its affine parameters `gamma`/`beta` where PyTorch says `weight`/`bias`;
//! that rename (and nothing else) is left to the importer.

use crate::collective::Group;
use crate::init;
use crate::norm::BatchNorm;
use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::pool::{MaxPool2d, MaxPool2dConfig};
use burn::nn::PaddingConfig2d;
use burn::tensor::{Device, Tensor};
use carp_kernels::conv_bn;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

/// Which ResNet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Arch {
    /// ResNet-18: basic blocks [2, 2, 2, 2], 512-d output.
    Resnet18,
    /// ResNet-34: basic blocks [3, 4, 6, 3], 512-d output.
    Resnet34,
    /// ResNet-50: bottleneck blocks [3, 4, 6, 3], 2048-d output.
    Resnet50,
}

impl Arch {
    /// Parses `resnet18`, `resnet34` or `resnet50`.
    pub fn parse(name: &str) -> Option<Self> {
        match name.to_ascii_lowercase().as_str() {
            "resnet18" => Some(Self::Resnet18),
            "resnet34" => Some(Self::Resnet34),
            "resnet50" => Some(Self::Resnet50),
            _ => None,
        }
    }

    /// Blocks per stage.
    pub fn layers(self) -> [usize; 4] {
        match self {
            Self::Resnet18 => [2, 2, 2, 2],
            Self::Resnet34 | Self::Resnet50 => [3, 4, 6, 3],
        }
    }

    /// Output channels of a block relative to its inner width (1 basic, 4 bottleneck).
    pub fn expansion(self) -> usize {
        match self {
            Self::Resnet50 => 4,
            _ => 1,
        }
    }
}

/// Configuration of a [`ResNet`] backbone.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ResNetConfig {
    /// Depth and block type.
    pub arch: Arch,
    /// Width of the first stage (64 in torchvision); stages use 1x, 2x, 4x, 8x of it.
    pub base_width: usize,
    /// 3x3 stride-1 first convolution and no max-pool, for 32x32 images (spec §1).
    pub small_stem: bool,
    /// Initialise the last BatchNorm scale of each residual branch to zero (spec §1).
    pub zero_init_residual: bool,
}

impl ResNetConfig {
    /// torchvision's configuration of `arch`: 64 base width, ImageNet stem, zero-init residual.
    pub fn new(arch: Arch) -> Self {
        Self {
            arch,
            base_width: 64,
            small_stem: false,
            zero_init_residual: true,
        }
    }

    /// Dimension of the pooled feature the backbone outputs.
    pub fn output_dim(&self) -> usize {
        self.base_width * 8 * self.arch.expansion()
    }

    /// Builds the backbone with torchvision's initialisation, drawn from `seed`.
    ///
    /// Convolutions: Kaiming normal, fan-out, ReLU gain; BatchNorm: scale 1, shift 0, except
    /// the last BatchNorm of each residual branch when `zero_init_residual` is set.
    ///
    /// # Panics
    ///
    /// Panics if `base_width` is zero.
    pub fn init(&self, device: &Device, seed: u64) -> ResNet {
        assert!(self.base_width > 0, "ResNet base_width must be positive");
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let w = self.base_width;
        let conv1 = if self.small_stem {
            conv(&mut rng, 3, w, 3, 1, 1, device)
        } else {
            conv(&mut rng, 3, w, 7, 2, 3, device)
        };
        let bn1 = BatchNorm::new(w, device);
        let maxpool = (!self.small_stem).then(|| {
            MaxPool2dConfig::new([3, 3])
                .with_strides([2, 2])
                .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                .init()
        });
        let expansion = self.arch.expansion();
        let bottleneck = expansion == 4;
        let mut in_ch = w;
        let mut stages = Vec::new();
        for (stage, &blocks) in self.arch.layers().iter().enumerate() {
            let width = w << stage;
            let stride = if stage == 0 { 1 } else { 2 };
            let mut layer = Vec::with_capacity(blocks);
            for b in 0..blocks {
                let s = if b == 0 { stride } else { 1 };
                let block = Block::new(
                    &mut rng,
                    in_ch,
                    width,
                    expansion,
                    s,
                    bottleneck,
                    self.zero_init_residual,
                    device,
                );
                in_ch = width * expansion;
                layer.push(block);
            }
            stages.push(layer);
        }
        let mut stages = stages.into_iter();
        ResNet {
            conv1,
            bn1,
            maxpool,
            layer1: stages.next().unwrap(),
            layer2: stages.next().unwrap(),
            layer3: stages.next().unwrap(),
            layer4: stages.next().unwrap(),
        }
    }
}

/// A convolution without bias, Kaiming-normal (fan-out, ReLU) initialised as in torchvision.
fn conv(
    rng: &mut ChaCha8Rng,
    c_in: usize,
    c_out: usize,
    k: usize,
    stride: usize,
    pad: usize,
    device: &Device,
) -> Conv2d {
    let mut layer = Conv2dConfig::new([c_in, c_out], [k, k])
        .with_stride([stride, stride])
        .with_padding(PaddingConfig2d::Explicit(pad, pad, pad, pad))
        .with_bias(false)
        .init(device);
    let fan_out = c_out * k * k;
    let std = (2.0 / fan_out as f64).sqrt();
    layer.weight = init::param(
        init::normal(rng, c_out * c_in * k * k, std),
        [c_out, c_in, k, k],
        device,
    );
    layer
}

fn batch_norm(channels: usize, zero: bool, device: &Device) -> BatchNorm {
    let mut bn = BatchNorm::new(channels, device);
    if zero {
        bn.gamma = init::param(vec![0.0; channels], [channels], device);
    }
    bn
}

/// A residual block: basic (two 3x3 convs) or bottleneck (1x1, 3x3, 1x1).
#[derive(Module, Debug)]
pub struct Block {
    /// First convolution (3x3 basic, 1x1 bottleneck).
    pub conv1: Conv2d,
    /// BatchNorm after `conv1`.
    pub bn1: BatchNorm,
    /// Second convolution (3x3; carries the stride).
    pub conv2: Conv2d,
    /// BatchNorm after `conv2`.
    pub bn2: BatchNorm,
    /// Third convolution (bottleneck only, 1x1 expansion).
    pub conv3: Option<Conv2d>,
    /// BatchNorm after `conv3` (bottleneck only).
    pub bn3: Option<BatchNorm>,
    /// Projection shortcut `(conv 1x1, BatchNorm)`, named `downsample.0` / `downsample.1`.
    pub downsample: Option<(Conv2d, BatchNorm)>,
}

impl Block {
    #[allow(clippy::too_many_arguments)]
    fn new(
        rng: &mut ChaCha8Rng,
        in_ch: usize,
        width: usize,
        expansion: usize,
        stride: usize,
        bottleneck: bool,
        zero_init: bool,
        device: &Device,
    ) -> Self {
        let out_ch = width * expansion;
        let (conv1, conv2, conv3) = if bottleneck {
            (
                conv(rng, in_ch, width, 1, 1, 0, device),
                conv(rng, width, width, 3, stride, 1, device),
                Some(conv(rng, width, out_ch, 1, 1, 0, device)),
            )
        } else {
            (
                conv(rng, in_ch, width, 3, stride, 1, device),
                conv(rng, width, width, 3, 1, 1, device),
                None,
            )
        };
        let downsample = (stride != 1 || in_ch != out_ch).then(|| {
            (
                conv(rng, in_ch, out_ch, 1, stride, 0, device),
                batch_norm(out_ch, false, device),
            )
        });
        Self {
            conv1,
            bn1: batch_norm(width, false, device),
            conv2,
            bn2: batch_norm(width, zero_init && !bottleneck, device),
            conv3,
            bn3: bottleneck.then(|| batch_norm(out_ch, zero_init, device)),
            downsample,
        }
    }

    /// `relu(branch(x) + shortcut(x))`.
    ///
    /// Each convolution goes through [`carp_kernels::conv_bn`] with the BatchNorm after it and,
    /// on the last one, the residual add and ReLU: carp's fused CPU kernels on flex, Burn's
    /// ops on other devices.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let identity = match &self.downsample {
            Some((conv, bn)) => conv_bn(x.clone(), conv, bn, None, false),
            None => x.clone(),
        };
        let out = conv_bn(x, &self.conv1, &self.bn1, None, true);
        match (&self.conv3, &self.bn3) {
            (Some(conv3), Some(bn3)) => {
                let out = conv_bn(out, &self.conv2, &self.bn2, None, true);
                conv_bn(out, conv3, bn3, Some(identity), true)
            }
            _ => conv_bn(out, &self.conv2, &self.bn2, Some(identity), true),
        }
    }
}

/// A ResNet without its classification layer: images in, pooled features out (spec §1).
#[derive(Module, Debug)]
pub struct ResNet {
    /// Stem convolution (7x7 stride 2, or 3x3 stride 1 for the small stem).
    pub conv1: Conv2d,
    /// Stem BatchNorm.
    pub bn1: BatchNorm,
    /// Stem max-pool (absent with the small stem).
    pub maxpool: Option<MaxPool2d>,
    /// Stage 1.
    pub layer1: Vec<Block>,
    /// Stage 2.
    pub layer2: Vec<Block>,
    /// Stage 3.
    pub layer3: Vec<Block>,
    /// Stage 4.
    pub layer4: Vec<Block>,
}

impl ResNet {
    /// Synchronises every BatchNorm over `group` in training mode (`None`: each process
    /// alone), see [`BatchNorm`].
    pub fn set_group(&mut self, group: Option<Group>) {
        self.bn1.group = group.clone();
        for block in [
            &mut self.layer1,
            &mut self.layer2,
            &mut self.layer3,
            &mut self.layer4,
        ]
        .into_iter()
        .flatten()
        {
            for bn in [
                Some(&mut block.bn1),
                Some(&mut block.bn2),
                block.bn3.as_mut(),
            ]
            .into_iter()
            .flatten()
            .chain(block.downsample.as_mut().map(|(_, bn)| bn))
            {
                bn.group = group.clone();
            }
        }
    }

    /// Globally average-pooled features.
    ///
    /// # Shapes
    ///
    /// - `images`: `[B, 3, H, W]`
    /// - output: `[B, C]` with `C` = [`ResNetConfig::output_dim`]
    pub fn forward(&self, images: Tensor<4>) -> Tensor<2> {
        let mut x = conv_bn(images, &self.conv1, &self.bn1, None, true);
        if let Some(pool) = &self.maxpool {
            x = carp_kernels::max_pool2d(x, pool);
        }
        for layer in [&self.layer1, &self.layer2, &self.layer3, &self.layer4] {
            for block in layer {
                x = block.forward(x);
            }
        }
        let [b, c, h, w] = x.dims();
        x.reshape([b, c, h * w]).mean_dim(2).reshape([b, c])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::module::{ModuleVisitor, Param};
    use std::collections::BTreeMap;

    struct Shapes {
        path: Vec<String>,
        out: BTreeMap<String, Vec<usize>>,
    }
    impl ModuleVisitor for Shapes {
        fn enter_module(&mut self, name: &str, _: &str) {
            self.path.push(name.to_string());
        }
        fn exit_module(&mut self, _: &str, _: &str) {
            self.path.pop();
        }
        fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<D>>) {
            self.out
                .insert(self.path.join("."), p.lazy_shape().to_vec());
        }
    }

    /// Trainable parameters (BatchNorm running statistics excluded), as torchvision counts them.
    fn trainable(m: &ResNet) -> usize {
        shapes(m)
            .iter()
            .filter(|(k, _)| !k.ends_with("running_mean") && !k.ends_with("running_var"))
            .map(|(_, s)| s.iter().product::<usize>())
            .sum()
    }

    fn shapes(m: &ResNet) -> BTreeMap<String, Vec<usize>> {
        let mut v = Shapes {
            path: vec![],
            out: BTreeMap::new(),
        };
        m.visit(&mut v);
        v.out
    }

    #[test]
    fn resnet50_has_torchvision_names_and_parameter_count() {
        let device = Device::flex();
        let m = ResNetConfig::new(Arch::Resnet50).init(&device, 0);
        let s = shapes(&m);
        assert_eq!(s["conv1.weight"], vec![64, 3, 7, 7]);
        assert_eq!(s["layer1.0.downsample.0.weight"], vec![256, 64, 1, 1]);
        assert_eq!(s["layer1.0.downsample.1.running_mean"], vec![256]);
        assert_eq!(s["layer4.2.conv3.weight"], vec![2048, 512, 1, 1]);
        assert_eq!(s["layer3.5.bn2.gamma"], vec![256]);
        assert!(!s.contains_key("layer1.1.downsample.0.weight"));
        // torchvision resnet50 without fc: 25,557,032 - 2,049,000 = 23,508,032 parameters.
        assert_eq!(trainable(&m), 23_508_032);
    }

    #[test]
    fn resnet18_parameter_count_matches_torchvision() {
        let device = Device::flex();
        let m = ResNetConfig::new(Arch::Resnet18).init(&device, 0);
        // torchvision resnet18: 11,689,512 - fc (512*1000 + 1000) = 11,176,512.
        assert_eq!(trainable(&m), 11_176_512);
        let s = shapes(&m);
        assert_eq!(s["layer2.0.downsample.0.weight"], vec![128, 64, 1, 1]);
        assert_eq!(s["layer1.0.conv2.weight"], vec![64, 64, 3, 3]);
    }

    #[test]
    fn zero_init_residual_and_small_stem() {
        let device = Device::flex();
        let mut cfg = ResNetConfig::new(Arch::Resnet18);
        cfg.small_stem = true;
        cfg.base_width = 8;
        let m = cfg.init(&device, 3);
        let g: Vec<f32> = m.layer1[0]
            .bn2
            .gamma
            .val()
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        assert!(g.iter().all(|&x| x == 0.0));
        let g1: Vec<f32> = m.layer1[0]
            .bn1
            .gamma
            .val()
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        assert!(g1.iter().all(|&x| x == 1.0));
        assert_eq!(m.conv1.weight.dims(), [8, 3, 3, 3]);
        assert!(m.maxpool.is_none());
        let y = m.forward(Tensor::zeros([2, 3, 32, 32], &device));
        assert_eq!(y.dims(), [2, 64]);
        assert_eq!(cfg.output_dim(), 64);
    }

    #[test]
    fn conv_init_has_kaiming_fan_out_std() {
        let device = Device::flex();
        let m = ResNetConfig::new(Arch::Resnet18).init(&device, 1);
        let w: Vec<f32> = m.layer4[0]
            .conv2
            .weight
            .val()
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        let n = w.len() as f64;
        let var = w.iter().map(|&x| (x as f64).powi(2)).sum::<f64>() / n;
        let expected = 2.0 / (512.0 * 9.0);
        assert!(
            (var / expected - 1.0).abs() < 0.02,
            "var {var} vs {expected}"
        );
    }

    #[test]
    fn same_seed_same_weights() {
        let device = Device::flex();
        let mut cfg = ResNetConfig::new(Arch::Resnet18);
        cfg.base_width = 4;
        let stem = |seed| -> Vec<f32> {
            let net = cfg.init(&device, seed);
            net.conv1
                .weight
                .val()
                .into_data()
                .try_to_vec::<f32>()
                .unwrap()
        };
        let (a, b, c) = (stem(7), stem(7), stem(8));
        assert_eq!(a, b);
        assert_ne!(a, c);
    }
}
