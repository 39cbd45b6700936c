//! The EMA teacher update, spec §5.

use crate::path::ParamPath;
use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::tensor::Tensor;
use std::collections::HashMap;

/// `t = m·t + (1 - m)·s` for every trainable parameter, spec §5.
///
/// Student and teacher parameters are paired by module path, never by visit order; BatchNorm
/// running statistics are skipped (the teacher tracks its own). Teacher parameters stay free of
/// gradients. Returns the updated teacher.
///
/// # Panics
///
/// Panics if a teacher parameter has no student counterpart of the same shape.
pub fn ema_update<M: Module>(teacher: M, student: &M, momentum: f64) -> M {
    let mut collect = Collect {
        path: ParamPath::default(),
        values: HashMap::new(),
    };
    student.visit(&mut collect);
    let mut mapper = Ema {
        path: ParamPath::default(),
        values: collect.values,
        momentum,
    };
    teacher.map(&mut mapper)
}

struct Collect {
    path: ParamPath,
    values: HashMap<String, Tensor<1>>,
}

impl ModuleVisitor for Collect {
    fn enter_module(&mut self, name: &str, _: &str) {
        self.path.push(name);
    }
    fn exit_module(&mut self, _: &str, _: &str) {
        self.path.pop();
    }
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if self.path.is_running_stat() {
            return;
        }
        let value = param.val().inner();
        let n = value.shape().num_elements();
        self.values.insert(self.path.join(), value.reshape([n]));
    }
}

struct Ema {
    path: ParamPath,
    values: HashMap<String, Tensor<1>>,
    momentum: f64,
}

impl ModuleMapper for Ema {
    fn enter_module(&mut self, name: &str, _: &str) {
        self.path.push(name);
    }
    fn exit_module(&mut self, _: &str, _: &str) {
        self.path.pop();
    }
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        if self.path.is_running_stat() {
            return param;
        }
        let key = self.path.join();
        let student = self
            .values
            .remove(&key)
            .unwrap_or_else(|| panic!("EMA: the student has no parameter `{key}`"));
        let (id, tensor, mapper) = param.consume();
        let autodiff = tensor.is_autodiff();
        let t = tensor.inner();
        let shape = t.shape();
        assert_eq!(
            shape.num_elements(),
            student.shape().num_elements(),
            "EMA: `{key}` has different sizes in student and teacher"
        );
        let s = student.reshape(shape);
        let updated = t.mul_scalar(self.momentum) + s.mul_scalar(1.0 - self.momentum);
        let updated = if autodiff {
            Tensor::from_inner(updated)
        } else {
            updated
        };
        Param::from_mapped_value(id, updated, mapper)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::head::CarpHeadConfig;
    use burn::tensor::Device;

    fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
        t.into_data().try_to_vec::<f32>().unwrap()
    }

    #[test]
    fn averages_parameters_by_path_and_skips_running_stats() {
        let device = Device::flex();
        let cfg = CarpHeadConfig {
            in_dim: 3,
            hidden_dim: 4,
            bottleneck_dim: 2,
            out_dim: 5,
            nlayers: 2,
            use_bn: true,
        };
        let student = cfg.init(&device, 1);
        let teacher = cfg.init(&device, 2);
        // Give the student's BatchNorm running mean a value the teacher must not receive.
        let _ = student.forward(Tensor::ones([4, 3], &device));
        let s_w = values(student.mlp[0].weight.val());
        let t_w = values(teacher.mlp[0].weight.val());
        let t_rm = values(teacher.norms[0].running_mean.value_sync());
        let teacher = ema_update(teacher, &student, 0.75);
        let got = values(teacher.mlp[0].weight.val());
        for ((g, s), t) in got.iter().zip(&s_w).zip(&t_w) {
            assert!((g - (0.75 * t + 0.25 * s)).abs() < 1e-7);
        }
        let v = values(teacher.last_layer.weight_v.val());
        assert_eq!(v.len(), 10);
        assert_eq!(values(teacher.norms[0].running_mean.value_sync()), t_rm);
    }

    #[test]
    fn momentum_one_keeps_the_teacher_and_zero_copies_the_student() {
        let device = Device::flex();
        let cfg = CarpHeadConfig::new(3);
        let cfg = CarpHeadConfig {
            hidden_dim: 4,
            bottleneck_dim: 2,
            out_dim: 5,
            ..cfg
        };
        let student = cfg.init(&device, 1);
        let teacher = cfg.init(&device, 2);
        let t0 = values(teacher.mlp[1].weight.val());
        let teacher = ema_update(teacher, &student, 1.0);
        assert_eq!(values(teacher.mlp[1].weight.val()), t0);
        let teacher = ema_update(teacher, &student, 0.0);
        assert_eq!(
            values(teacher.mlp[1].weight.val()),
            values(student.mlp[1].weight.val())
        );
    }
}
