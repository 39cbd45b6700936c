//! Channels-last (NHWC) storage for Burn's `[B, C, H, W]` flex tensors.
//!
//! carp's kernels keep activations NHWC in memory while their logical shape stays
//! `[B, C, H, W]`: a flex tensor whose strides are `[H·W·C, 1, W·C, C]` (PyTorch calls this
//! "channels last"). Any Burn op still reads such a tensor correctly through its strides, and
//! the next carp kernel reads it without a copy.

use burn::backend::flex::{FlexTensor, Layout};
use burn::tensor::{Bytes, DType, Shape};
use rayon::prelude::*;
use std::borrow::Cow;

/// `[B, C, H, W]` of a 4-D flex tensor.
pub(crate) fn dims4(t: &FlexTensor) -> [usize; 4] {
    let s = t.layout().shape();
    assert_eq!(s.num_dims(), 4, "expected a 4-D tensor");
    [s[0], s[1], s[2], s[3]]
}

/// Whether `t` is stored densely channels-last (sizes of 1 match any stride).
pub(crate) fn is_channels_last(t: &FlexTensor) -> bool {
    let [b, c, h, w] = dims4(t);
    let want = [(h * w * c) as isize, 1, (w * c) as isize, c as isize];
    let sizes = [b, c, h, w];
    let strides = t.layout().strides();
    (0..4).all(|i| sizes[i] <= 1 || strides[i] == want[i])
}

/// The NHWC data of a 4-D `f32` tensor: borrowed when it is channels-last already, gathered
/// through its strides (any layout, broadcast included) otherwise.
pub(crate) fn nhwc(t: &FlexTensor) -> Cow<'_, [f32]> {
    let [b, c, h, w] = dims4(t);
    let n = b * c * h * w;
    let storage: &[f32] = t.storage();
    let start = t.layout().start_offset();
    if is_channels_last(t) {
        return Cow::Borrowed(&storage[start..start + n]);
    }
    let st = t.layout().strides();
    let (sb, sc, sh, sw) = (st[0], st[1], st[2], st[3]);
    let mut out = vec![0.0f32; n];
    let per_image = h * w * c;
    out.par_chunks_mut(per_image.max(1))
        .enumerate()
        .for_each(|(bi, img)| {
            let base = start as isize + bi as isize * sb;
            for hi in 0..h {
                for wi in 0..w {
                    let at = base + hi as isize * sh + wi as isize * sw;
                    let row = &mut img[(hi * w + wi) * c..(hi * w + wi + 1) * c];
                    for (ci, v) in row.iter_mut().enumerate() {
                        *v = storage[(at + ci as isize * sc) as usize];
                    }
                }
            }
        });
    Cow::Owned(out)
}

/// Wraps an NHWC buffer as a `[B, C, H, W]` flex tensor with channels-last strides.
pub(crate) fn from_nhwc(data: Vec<f32>, [b, c, h, w]: [usize; 4]) -> FlexTensor {
    assert_eq!(data.len(), b * c * h * w, "NHWC buffer length");
    let strides = vec![(h * w * c) as isize, 1, (w * c) as isize, c as isize];
    let layout = Layout::new(Shape::new([b, c, h, w]), strides, 0);
    FlexTensor::new(Bytes::from_elems(data), layout, DType::F32)
}

/// Wraps a contiguous row-major buffer as a flex tensor of `shape`.
pub(crate) fn from_contiguous(data: Vec<f32>, shape: &[usize]) -> FlexTensor {
    assert_eq!(data.len(), shape.iter().product::<usize>(), "buffer length");
    let layout = Layout::contiguous(Shape::from(shape.to_vec()));
    FlexTensor::new(Bytes::from_elems(data), layout, DType::F32)
}

/// The contiguous row-major data of an `f32` flex tensor (borrowed when it already is).
pub(crate) fn contiguous(t: &FlexTensor) -> Cow<'_, [f32]> {
    let n = t.layout().num_elements();
    if let Some((start, end)) = t.layout().contiguous_offsets() {
        let storage: &[f32] = t.storage();
        debug_assert_eq!(end - start, n);
        return Cow::Borrowed(&storage[start..end]);
    }
    let data = t.to_contiguous();
    let storage: &[f32] = data.storage();
    let start = data.layout().start_offset();
    Cow::Owned(storage[start..start + n].to_vec())
}

/// A channels-last copy of `t` that can be stored (an O(1) clone when it already is one).
pub(crate) fn channels_last(t: FlexTensor) -> FlexTensor {
    if is_channels_last(&t) && t.layout().start_offset() == 0 {
        return t;
    }
    let dims = dims4(&t);
    let data = nhwc(&t).into_owned();
    from_nhwc(data, dims)
}
