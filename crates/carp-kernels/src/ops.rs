//! Burn glue: reaches the flex primitives behind a `Tensor` (plain, or under `Autodiff<Flex>`),
//! runs carp's kernels on them, and records custom backward steps in the autodiff graph.
//!
//! Every function returns `None` when a tensor is not an `f32` flex tensor (a GPU device,
//! another CPU backend, gradient checkpointing, another dtype): the caller then uses Burn's op.

use crate::batch_norm as bn;
use crate::conv::{self, ConvShape};
use crate::layout;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::{Autodiff, AutodiffBackend, Flex};
use burn::tensor::{DType, Tensor};

/// Flex under autodiff (no gradient checkpointing: the device default).
type Ad = Autodiff<Flex>;
/// An `Autodiff<Flex>` float primitive.
type AdTensor = burn::backend::tensor::FloatTensor<Ad>;

/// A tensor's flex primitive, tracked by autodiff or not.
enum Routed {
    Plain(FlexTensor),
    Tracked(AdTensor),
}

impl Routed {
    fn of<const D: usize>(t: &Tensor<D>) -> Option<Routed> {
        if t.dtype() != DType::F32 {
            return None;
        }
        if let Ok(p) = t.clone().try_into_primitive::<Flex>() {
            return Some(Routed::Plain(p));
        }
        t.clone()
            .try_into_primitive::<Ad>()
            .ok()
            .map(Routed::Tracked)
    }

    /// As an autodiff primitive (a plain tensor becomes a constant).
    fn tracked(self) -> AdTensor {
        match self {
            Routed::Plain(p) => Ad::from_inner(p),
            Routed::Tracked(t) => t,
        }
    }

    fn is_tracked(&self) -> bool {
        matches!(self, Routed::Tracked(_))
    }

    fn flex(&self) -> &FlexTensor {
        match self {
            Routed::Plain(p) => p,
            Routed::Tracked(t) => t.primitive(),
        }
    }
}

/// The output tensor of an op whose inputs were `tracked` or not.
fn wrap<const D: usize>(tracked: Option<AdTensor>, plain: Option<FlexTensor>) -> Tensor<D> {
    match (tracked, plain) {
        (Some(t), _) => Tensor::from_primitive::<Ad>(t),
        (None, Some(p)) => Tensor::from_primitive::<Flex>(p),
        (None, None) => unreachable!("an op returns one of the two"),
    }
}

/// Whether `t` lives on flex (tracked by autodiff or not), whatever its dtype.
pub(crate) fn is_flex<const D: usize>(t: &Tensor<D>) -> bool {
    t.clone().try_into_primitive::<Flex>().is_ok() || t.clone().try_into_primitive::<Ad>().is_ok()
}

/// Host copy of a 1-D tensor's values, or `None` if it is not on flex.
pub(crate) fn host_values(t: &Tensor<1>) -> Option<Vec<f32>> {
    Routed::of(t).map(|r| layout::contiguous(r.flex()).into_owned())
}

// ---------------------------------------------------------------------------------------------
// Convolution

fn conv_forward(s: &ConvShape, x: &FlexTensor, w: &FlexTensor) -> FlexTensor {
    let xd = layout::nhwc(x);
    let wk = conv::PreparedWeight::new(s, &layout::contiguous(w));
    let mut y = vec![0.0f32; s.rows() * s.c_out];
    conv::forward_prepared(s, &xd, &wk, &mut y, &|_, _| {});
    layout::from_nhwc(y, [s.batch, s.c_out, s.out_h(), s.out_w()])
}

#[derive(Debug)]
struct ConvBackward;

impl Backward<Flex, 2> for ConvBackward {
    /// Shape, the input (channels-last) and the weight.
    type State = (ConvShape, FlexTensor, FlexTensor);

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node_x, node_w] = ops.parents;
        let grad = grads.consume::<Flex>(&ops.node);
        let (s, x, w) = ops.state;
        let dy = layout::nhwc(&grad);
        if let Some(node) = node_w {
            let dw = conv::weight_grad(&s, &layout::nhwc(&x), &dy);
            let dw = layout::from_contiguous(dw, &[s.c_out, s.c_in, s.kh, s.kw]);
            grads.register::<Flex>(node.id, dw);
        }
        if let Some(node) = node_x {
            let mut dx = vec![0.0f32; s.batch * s.h * s.w * s.c_in];
            conv::input_grad(&s, &dy, &layout::contiguous(&w), &mut dx);
            let dx = layout::from_nhwc(dx, [s.batch, s.c_in, s.h, s.w]);
            grads.register::<Flex>(node.id, dx);
        }
    }
}

/// Convolution of `x` `[B, C_in, H, W]` with `w` `[C_out, C_in, KH, KW]` on flex, or `None`.
pub(crate) fn conv2d(x: &Tensor<4>, w: &Tensor<4>, s: ConvShape) -> Option<Tensor<4>> {
    let (x, w) = (Routed::of(x)?, Routed::of(w)?);
    if !x.is_tracked() && !w.is_tracked() {
        return Some(wrap(None, Some(conv_forward(&s, x.flex(), w.flex()))));
    }
    let (x, w) = (x.tracked(), w.tracked());
    let out = match ConvBackward
        .prepare::<NoCheckpointing>([x.node(), w.node()])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => {
            let x_cl = layout::channels_last(x.primitive().clone());
            let wp = w.primitive().clone();
            let y = conv_forward(&s, &x_cl, &wp);
            prep.finish((s, x_cl, wp), y)
        }
        OpsKind::UnTracked(prep) => prep.finish(conv_forward(&s, x.primitive(), w.primitive())),
    };
    Some(wrap(Some(out), None))
}

// ---------------------------------------------------------------------------------------------
// BatchNorm (+ residual) (+ ReLU)

/// What the BatchNorm backward keeps from its forward.
#[derive(Clone, Debug)]
struct BnState {
    x: FlexTensor,
    y: FlexTensor,
    mean: Vec<f32>,
    inv_std: Vec<f32>,
    gamma: Vec<f32>,
    relu: bool,
}

#[derive(Debug)]
struct BnBackward;

impl BnBackward {
    fn run(
        state: BnState,
        grad: FlexTensor,
        grads: &mut Gradients,
        nodes: [Option<burn::backend::autodiff::NodeId>; 4],
    ) {
        let [node_x, node_gamma, node_beta, node_res] = nodes;
        let dy = layout::nhwc(&grad);
        let dims = layout::dims4(&state.x);
        let g = bn::backward(
            &dy,
            &layout::nhwc(&state.x),
            &layout::nhwc(&state.y),
            &state.mean,
            &state.inv_std,
            &state.gamma,
            state.relu,
            node_res.is_some(),
        );
        let c = state.gamma.len();
        if let Some(id) = node_x {
            grads.register::<Flex>(id, layout::from_nhwc(g.x, dims));
        }
        if let Some(id) = node_gamma {
            grads.register::<Flex>(id, layout::from_contiguous(g.gamma, &[c]));
        }
        if let Some(id) = node_beta {
            grads.register::<Flex>(id, layout::from_contiguous(g.beta, &[c]));
        }
        if let (Some(id), Some(r)) = (node_res, g.residual) {
            grads.register::<Flex>(id, layout::from_nhwc(r, dims));
        }
    }
}

impl Backward<Flex, 3> for BnBackward {
    type State = BnState;

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let grad = grads.consume::<Flex>(&ops.node);
        let [x, g, b] = ops.parents.map(|n| n.map(|n| n.id));
        BnBackward::run(ops.state, grad, grads, [x, g, b, None]);
    }
}

impl Backward<Flex, 4> for BnBackward {
    type State = BnState;

    fn backward(self, ops: Ops<Self::State, 4>, grads: &mut Gradients, _: &mut Checkpointer) {
        let grad = grads.consume::<Flex>(&ops.node);
        let [x, g, b, r] = ops.parents.map(|n| n.map(|n| n.id));
        BnBackward::run(ops.state, grad, grads, [x, g, b, r]);
    }
}

/// Output of a training-mode BatchNorm: the activation and the batch statistics.
pub(crate) struct BnTrain {
    pub y: Tensor<4>,
    pub mean: Vec<f32>,
    pub var: Vec<f32>,
}

/// Training-mode `act(BN(x) + r)` with batch statistics on flex, or `None`.
pub(crate) fn batch_norm_train(
    x: &Tensor<4>,
    gamma: &Tensor<1>,
    beta: &Tensor<1>,
    residual: Option<&Tensor<4>>,
    eps: f64,
    relu: bool,
) -> Option<BnTrain> {
    let xr = Routed::of(x)?;
    let gr = Routed::of(gamma)?;
    let br = Routed::of(beta)?;
    let rr = match residual {
        Some(r) => Some(Routed::of(r)?),
        None => None,
    };
    let x_cl = layout::channels_last(xr.flex().clone());
    let dims = layout::dims4(&x_cl);
    let c = dims[1];
    let xd = layout::nhwc(&x_cl);
    let (mean, var) = bn::batch_stats(&xd, c);
    let gamma_v = layout::contiguous(gr.flex()).into_owned();
    let beta_v = layout::contiguous(br.flex()).into_owned();
    let (scale, shift) = bn::fold(&gamma_v, &beta_v, &mean, &var, eps);
    let res_cl = rr.as_ref().map(|r| layout::channels_last(r.flex().clone()));
    let res_d = res_cl.as_ref().map(layout::nhwc);
    let mut y = vec![0.0f32; xd.len()];
    bn::scale_shift(&xd, &scale, &shift, res_d.as_deref(), relu, &mut y);
    drop(res_d);
    let y = layout::from_nhwc(y, dims);
    drop(xd);
    let any_tracked = xr.is_tracked()
        || gr.is_tracked()
        || br.is_tracked()
        || rr.as_ref().is_some_and(Routed::is_tracked);
    if !any_tracked {
        return Some(BnTrain {
            y: wrap(None, Some(y)),
            mean,
            var,
        });
    }
    let inv_std: Vec<f32> = var
        .iter()
        .map(|&v| (1.0 / (v as f64 + eps).sqrt()) as f32)
        .collect();
    let state = BnState {
        x: x_cl,
        y: y.clone(),
        mean: mean.clone(),
        inv_std,
        gamma: gamma_v,
        relu,
    };
    let (x, g, b) = (xr.tracked(), gr.tracked(), br.tracked());
    let out = match rr {
        None => match BnBackward
            .prepare::<NoCheckpointing>([x.node(), g.node(), b.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => prep.finish(state, y),
            OpsKind::UnTracked(prep) => prep.finish(y),
        },
        Some(r) => {
            let r = r.tracked();
            match BnBackward
                .prepare::<NoCheckpointing>([x.node(), g.node(), b.node(), r.node()])
                .compute_bound()
                .stateful()
            {
                OpsKind::Tracked(prep) => prep.finish(state, y),
                OpsKind::UnTracked(prep) => prep.finish(y),
            }
        }
    };
    Some(BnTrain {
        y: wrap(Some(out), None),
        mean,
        var,
    })
}

/// Inference-mode `act(x · scale + shift + r)` on flex (no autodiff), or `None`.
pub(crate) fn scale_shift(
    x: &Tensor<4>,
    scale: &[f32],
    shift: &[f32],
    residual: Option<&Tensor<4>>,
    relu: bool,
) -> Option<Tensor<4>> {
    let Routed::Plain(xp) = Routed::of(x)? else {
        return None;
    };
    let rp = match residual {
        Some(r) => match Routed::of(r)? {
            Routed::Plain(p) => Some(p),
            Routed::Tracked(_) => return None,
        },
        None => None,
    };
    let dims = layout::dims4(&xp);
    let xd = layout::nhwc(&xp);
    let rd = rp.as_ref().map(layout::nhwc);
    let mut y = vec![0.0f32; xd.len()];
    bn::scale_shift(&xd, scale, shift, rd.as_deref(), relu, &mut y);
    Some(wrap(None, Some(layout::from_nhwc(y, dims))))
}

/// Inference-mode convolution followed by `act(· scale + shift + r)`, applied to each GEMM
/// tile while it is in cache; flex without autodiff only, or `None`.
pub(crate) fn conv2d_scale_shift(
    x: &Tensor<4>,
    w: &Tensor<4>,
    s: ConvShape,
    scale: &[f32],
    shift: &[f32],
    residual: Option<&Tensor<4>>,
    relu: bool,
) -> Option<Tensor<4>> {
    let (Routed::Plain(xp), Routed::Plain(wp)) = (Routed::of(x)?, Routed::of(w)?) else {
        return None;
    };
    let rp = match residual {
        Some(r) => match Routed::of(r)? {
            Routed::Plain(p) => Some(p),
            Routed::Tracked(_) => return None,
        },
        None => None,
    };
    let xd = layout::nhwc(&xp);
    let wk = conv::PreparedWeight::new(&s, &layout::contiguous(&wp));
    let rd = rp.as_ref().map(layout::nhwc);
    let mut y = vec![0.0f32; s.rows() * s.c_out];
    conv::forward_prepared(&s, &xd, &wk, &mut y, &|r0, tile: &mut [f32]| {
        let res = rd
            .as_deref()
            .map(|r| &r[r0 * s.c_out..r0 * s.c_out + tile.len()]);
        bn::apply_rows_inplace(tile, scale, shift, res, relu);
    });
    Some(wrap(
        None,
        Some(layout::from_nhwc(
            y,
            [s.batch, s.c_out, s.out_h(), s.out_w()],
        )),
    ))
}

/// Inference max-pool on flex (no autodiff), or `None`.
pub(crate) fn max_pool(x: &Tensor<4>, s: crate::pool::PoolShape) -> Option<Tensor<4>> {
    let Routed::Plain(xp) = Routed::of(x)? else {
        return None;
    };
    let xd = layout::nhwc(&xp);
    let mut y = vec![0.0f32; s.batch * s.out_h() * s.out_w() * s.c];
    crate::pool::max_pool(&s, &xd, &mut y);
    Some(wrap(
        None,
        Some(layout::from_nhwc(y, [s.batch, s.c, s.out_h(), s.out_w()])),
    ))
}
