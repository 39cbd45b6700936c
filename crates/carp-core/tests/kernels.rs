//! The ResNets with carp's CPU kernels (issue 13) against the same networks on Burn's own ops:
//! features, every parameter gradient and the BatchNorm running statistics after a training
//! forward, for ResNet-18 with the small stem and ResNet-50 with the ImageNet stem (narrow
//! widths), and the inference features.

use burn::module::{Module, ModuleVisitor, Param};
use burn::tensor::{Device, Distribution, Tensor, TensorData};
use carp_core::path::ParamPath;
use carp_core::resnet::{Arch, ResNet, ResNetConfig};
use carp_kernels::with_burn_ops;
use rand::{Rng, SeedableRng};
use std::collections::BTreeMap;

fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().convert::<f32>().try_to_vec::<f32>().unwrap()
}

fn close(what: &str, a: &[f32], b: &[f32], rel: f32) {
    assert_eq!(a.len(), b.len(), "{what}: lengths");
    let scale = b.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    let tol = rel * (1.0 + scale);
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        assert!(
            (x - y).abs() <= tol,
            "{what}[{i}]: carp {x} vs burn {y} (tol {tol})"
        );
    }
}

/// Every float tensor of the module (parameters and running statistics), by path.
struct Collect<'a> {
    grads: Option<&'a burn::optim::GradientsParams>,
    path: ParamPath,
    out: BTreeMap<String, Vec<f32>>,
}

impl ModuleVisitor for Collect<'_> {
    fn enter_module(&mut self, name: &str, _: &str) {
        self.path.push(name);
    }
    fn exit_module(&mut self, _: &str, _: &str) {
        self.path.pop();
    }
    fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<D>>) {
        let key = self.path.join();
        match self.grads {
            Some(g) => {
                if let Some(t) = g.get::<D>(p.id) {
                    self.out.insert(key, values(t));
                }
            }
            None => {
                self.out.insert(key, values(p.val()));
            }
        }
    }
}

fn collect(m: &ResNet, grads: Option<&burn::optim::GradientsParams>) -> BTreeMap<String, Vec<f32>> {
    let mut v = Collect {
        grads,
        path: ParamPath::default(),
        out: BTreeMap::new(),
    };
    m.visit(&mut v);
    v.out
}

/// A fixed pseudo-random tensor (the same values on every call, unlike `Tensor::random`).
fn fixed<const D: usize>(shape: [usize; D], seed: u64, device: &Device) -> Tensor<D> {
    let n = shape.iter().product::<usize>();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let v: Vec<f32> = (0..n).map(|_| rng.random_range(-1.0f32..1.0)).collect();
    Tensor::from_data(TensorData::new(v, shape), device)
}

/// Features, gradients (of a fixed projection of the features) and state after one step.
fn train_step(cfg: &ResNetConfig, size: usize) -> [BTreeMap<String, Vec<f32>>; 3] {
    let device = Device::flex().autodiff();
    let net = cfg.init(&device, 11);
    let x = fixed([6, 3, size, size], 1, &device);
    let feats = net.forward(x);
    let proj = fixed(feats.dims(), 2, &device);
    let loss = carp_core::reduce::ordered_sum(feats.clone() * proj);
    let grads = burn::optim::GradientsParams::from_grads(loss.backward(), &net);
    let mut f = BTreeMap::new();
    f.insert("features".to_string(), values(feats));
    [f, collect(&net, Some(&grads)), collect(&net, None)]
}

fn compare(cfg: ResNetConfig, size: usize) {
    let carp = train_step(&cfg, size);
    let burn = with_burn_ops(|| train_step(&cfg, size));
    for (part, (a, b)) in ["features", "gradients", "state"]
        .iter()
        .zip(carp.iter().zip(&burn))
    {
        assert_eq!(
            a.keys().collect::<Vec<_>>(),
            b.keys().collect::<Vec<_>>(),
            "{part}: same tensors"
        );
        for (k, va) in a {
            // Gradients pass through up to 20 layers: a looser relative tolerance.
            close(&format!("{part} {k}"), va, &b[k], 2e-3);
        }
    }
}

#[test]
fn resnet18_small_stem_training_matches_burn_ops() {
    let mut cfg = ResNetConfig::new(Arch::Resnet18);
    cfg.base_width = 8;
    cfg.small_stem = true;
    // Non-zero residual BatchNorm scales, so every branch carries gradient.
    cfg.zero_init_residual = false;
    compare(cfg, 16);
}

#[test]
fn resnet50_imagenet_stem_training_matches_burn_ops() {
    let mut cfg = ResNetConfig::new(Arch::Resnet50);
    cfg.base_width = 4;
    cfg.zero_init_residual = false;
    compare(cfg, 40);
}

#[test]
fn inference_features_match_burn_ops() {
    let device = Device::flex();
    for (arch, small, size) in [(Arch::Resnet18, true, 32), (Arch::Resnet50, false, 48)] {
        let mut cfg = ResNetConfig::new(arch);
        cfg.base_width = 8;
        cfg.small_stem = small;
        cfg.zero_init_residual = false;
        let net = cfg.init(&device, 3);
        let x = Tensor::<4>::random([3, 3, size, size], Distribution::Normal(0.0, 1.0), &device);
        let a = values(net.forward(x.clone()));
        let b = values(with_burn_ops(|| net.forward(x)));
        close(&format!("{arch:?} inference features"), &a, &b, 1e-4);
    }
}
