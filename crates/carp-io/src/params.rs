//! A module's tensors by path, on the host, and back.

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::tensor::{Tensor, TensorData};
use carp_core::path::ParamPath;
use std::collections::BTreeMap;

/// An f32 tensor on the host.
#[derive(Clone, Debug, PartialEq)]
pub struct HostTensor {
    /// Dimensions.
    pub shape: Vec<usize>,
    /// Row-major values.
    pub values: Vec<f32>,
}

impl HostTensor {
    /// Copies a device tensor to the host (as f32).
    pub fn from_tensor<const D: usize>(tensor: Tensor<D>) -> Self {
        let shape = tensor.shape().to_vec();
        let values = tensor
            .into_data()
            .convert::<f32>()
            .try_to_vec::<f32>()
            .expect("converted to f32");
        Self { shape, values }
    }
}

/// Every float tensor of `module` (parameters and BatchNorm running statistics), keyed by
/// `prefix` + module path.
///
/// BatchNorm keeps its latest running-statistics update pending until it is synchronised;
/// the values are read through [`Module::valid`], which synchronises them first.
pub fn collect<M: Module>(module: &M, prefix: &str) -> BTreeMap<String, HostTensor> {
    let mut visitor = Collect {
        path: ParamPath::default(),
        prefix: prefix.to_string(),
        out: BTreeMap::new(),
    };
    module.valid().visit(&mut visitor);
    visitor.out
}

struct Collect {
    path: ParamPath,
    prefix: String,
    out: BTreeMap<String, HostTensor>,
}

impl ModuleVisitor for Collect {
    fn enter_module(&mut self, name: &str, _: &str) {
        self.path.push(name);
    }
    fn exit_module(&mut self, _: &str, _: &str) {
        self.path.pop();
    }
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let key = format!("{}{}", self.prefix, self.path.join());
        self.out.insert(key, HostTensor::from_tensor(param.val()));
    }
}

/// A tensor that [`apply`] could not place.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ApplyIssue {
    /// No tensor of that name was given.
    Missing(String),
    /// The given tensor has another shape.
    Shape {
        /// Tensor name.
        key: String,
        /// Shape in the module.
        expected: Vec<usize>,
        /// Shape given.
        found: Vec<usize>,
    },
}

/// Replaces every float tensor of `module` by `tensors[prefix + path]`, keeping each
/// parameter's device, autodiff and gradient settings. Returns the module and the tensors
/// that could not be placed (those parameters keep their value).
pub fn apply<M: Module>(
    module: M,
    tensors: &BTreeMap<String, HostTensor>,
    prefix: &str,
) -> (M, Vec<ApplyIssue>) {
    let mut mapper = Apply {
        path: ParamPath::default(),
        prefix: prefix.to_string(),
        tensors,
        issues: Vec::new(),
    };
    let module = module.map(&mut mapper);
    (module, mapper.issues)
}

struct Apply<'a> {
    path: ParamPath,
    prefix: String,
    tensors: &'a BTreeMap<String, HostTensor>,
    issues: Vec<ApplyIssue>,
}

impl ModuleMapper for Apply<'_> {
    fn enter_module(&mut self, name: &str, _: &str) {
        self.path.push(name);
    }
    fn exit_module(&mut self, _: &str, _: &str) {
        self.path.pop();
    }
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let key = format!("{}{}", self.prefix, self.path.join());
        let Some(host) = self.tensors.get(&key) else {
            self.issues.push(ApplyIssue::Missing(key));
            return param;
        };
        let (id, tensor, mapper) = param.consume();
        let expected = tensor.shape().to_vec();
        if expected != host.shape {
            self.issues.push(ApplyIssue::Shape {
                key,
                expected,
                found: host.shape.clone(),
            });
            return Param::from_mapped_value(id, tensor, mapper);
        }
        let require_grad = tensor.is_require_grad();
        let device = tensor.device();
        let shape: [usize; D] = host.shape.clone().try_into().expect("rank checked above");
        let mut value =
            Tensor::<D>::from_data(TensorData::new(host.values.clone(), shape), &device);
        if require_grad {
            value = value.require_grad();
        }
        Param::from_mapped_value(id, value, mapper)
    }
}
