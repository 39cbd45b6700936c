//! The student/teacher pair and its multi-crop forward, spec §1-§2.

use crate::collective::Group;
use crate::head::{CarpHead, CarpHeadConfig};
use crate::resnet::{ResNet, ResNetConfig};
use burn::module::Module;
use burn::tensor::{Device, Tensor};
use serde::{Deserialize, Serialize};

/// Backbone + head configuration of one network.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CarpModelConfig {
    /// The ResNet backbone.
    pub backbone: ResNetConfig,
    /// The CARP head (its `in_dim` must equal the backbone's output).
    pub head: CarpHeadConfig,
}

impl CarpModelConfig {
    /// Builds one network; the same `seed` always gives the same weights.
    ///
    /// # Panics
    ///
    /// Panics if the head's input does not match the backbone's output.
    pub fn init(&self, device: &Device, seed: u64) -> CarpModel {
        assert_eq!(
            self.head.in_dim,
            self.backbone.output_dim(),
            "head in_dim must equal the backbone output"
        );
        CarpModel {
            backbone: self.backbone.init(device, seed),
            head: self.head.init(device, seed.wrapping_add(0x9e37_79b9)),
        }
    }
}

/// One network: ResNet backbone followed by the CARP head.
#[derive(Module, Debug)]
pub struct CarpModel {
    /// Backbone (features for evaluation).
    pub backbone: ResNet,
    /// Projection head (prototype logits for the loss).
    pub head: CarpHead,
}

/// What one network outputs for a step's views.
#[derive(Clone, Debug)]
pub struct ViewsOutput {
    /// The head's bottleneck vectors (the prototype layer's input, not normalised),
    /// `[sum_g V_g * B, bottleneck_dim]`.
    pub bottleneck: Tensor<2>,
    /// Prototype logits, `[sum_g V_g * B, K]`.
    pub logits: Tensor<2>,
}

impl CarpModel {
    /// Synchronises every BatchNorm (backbone and head) over `group` in training mode.
    pub fn set_group(&mut self, group: Option<Group>) {
        self.backbone.set_group(group.clone());
        self.head.set_group(group);
    }

    /// Bottleneck vectors and logits of several groups of views, each group one resolution
    /// and one backbone call (DINO's `MultiCropWrapper`); the head then runs once on all
    /// features.
    ///
    /// # Shapes
    ///
    /// - `groups[g]`: `[V_g * B, 3, H_g, W_g]`, views in view-major order
    /// - outputs: `[sum_g V_g * B, _]` in the same order
    pub fn forward_views(&self, groups: &[Tensor<4>]) -> ViewsOutput {
        let features: Vec<Tensor<2>> = groups
            .iter()
            .map(|g| self.backbone.forward(g.clone()))
            .collect();
        let bottleneck = self.head.bottleneck(Tensor::cat(features, 0));
        let logits = self.head.last_layer.forward(bottleneck.clone());
        ViewsOutput { bottleneck, logits }
    }
}

/// The student (trained by gradients) and its EMA teacher (spec §1).
#[derive(Module, Debug)]
pub struct StudentTeacher {
    /// Trained by the optimiser.
    pub student: CarpModel,
    /// Exponential moving average of the student; receives no gradients.
    pub teacher: CarpModel,
    /// The processes of a data-parallel run (`None`: this process alone): their BatchNorm
    /// statistics and the entropy term's mean assignment are shared.
    #[module(skip)]
    pub group: Option<Group>,
}

impl StudentTeacher {
    /// Student and teacher with identical initial weights but separate BatchNorm statistics.
    ///
    /// Both are built from the same seed rather than cloned, because a cloned module shares
    /// its running-statistics buffers with the original.
    pub fn new(config: &CarpModelConfig, device: &Device, seed: u64) -> Self {
        Self {
            student: config.init(device, seed),
            teacher: config.init(device, seed).no_grad(),
            group: None,
        }
    }

    /// Makes both networks and the loss work over the processes of `group` (spec §4,
    /// SyncBatchNorm); `None` for one process.
    pub fn set_group(&mut self, group: Option<Group>) {
        self.set_groups(group, true);
    }

    /// Shares the entropy term's mean assignment over `group` and, when `sync_bn`, the
    /// BatchNorm statistics of both networks (`sync_bn = false`: per-process BatchNorm).
    pub fn set_groups(&mut self, group: Option<Group>, sync_bn: bool) {
        let bn = group.clone().filter(|_| sync_bn);
        self.student.set_group(bn.clone());
        self.teacher.set_group(bn);
        self.group = group;
    }
}
