//! Max-pooling over channels-last `[B, H, W, C]` buffers (inference): the ImageNet stem's
//! 3x3 stride-2 pool without leaving NHWC.

use rayon::prelude::*;

/// Geometry of a max-pool: kernel, stride, symmetric padding (dilation 1, floor mode).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolShape {
    /// Images B.
    pub batch: usize,
    /// Channels C.
    pub c: usize,
    /// Input height.
    pub h: usize,
    /// Input width.
    pub w: usize,
    /// Kernel (height, width).
    pub kernel: [usize; 2],
    /// Stride (height, width).
    pub stride: [usize; 2],
    /// Padding on each side (height, width); padded cells never win.
    pub pad: [usize; 2],
}

impl PoolShape {
    /// Output height.
    pub fn out_h(&self) -> usize {
        (self.h + 2 * self.pad[0] - self.kernel[0]) / self.stride[0] + 1
    }

    /// Output width.
    pub fn out_w(&self) -> usize {
        (self.w + 2 * self.pad[1] - self.kernel[1]) / self.stride[1] + 1
    }

    /// Whether the shape is valid (padding at most half the kernel, as PyTorch requires).
    pub fn is_valid(&self) -> bool {
        self.batch > 0
            && self.c > 0
            && self.stride[0] > 0
            && self.stride[1] > 0
            && 2 * self.pad[0] <= self.kernel[0]
            && 2 * self.pad[1] <= self.kernel[1]
            && self.h + 2 * self.pad[0] >= self.kernel[0]
            && self.w + 2 * self.pad[1] >= self.kernel[1]
    }
}

/// `y [B, OH, OW, C]` = the maximum of each window of `x` `[B, H, W, C]`.
///
/// # Panics
///
/// Panics if a buffer length does not match `s`.
pub fn max_pool(s: &PoolShape, x: &[f32], y: &mut [f32]) {
    let (oh_n, ow_n, c) = (s.out_h(), s.out_w(), s.c);
    assert_eq!(x.len(), s.batch * s.h * s.w * c, "input length");
    assert_eq!(y.len(), s.batch * oh_n * ow_n * c, "output length");
    y.par_chunks_mut(ow_n * c)
        .enumerate()
        .for_each(|(row, out)| {
            let (b, oh) = (row / oh_n, row % oh_n);
            let image = &x[b * s.h * s.w * c..(b + 1) * s.h * s.w * c];
            let h0 = (oh * s.stride[0]) as isize - s.pad[0] as isize;
            for (ow, o) in out.chunks_exact_mut(c).enumerate() {
                o.fill(f32::NEG_INFINITY);
                let w0 = (ow * s.stride[1]) as isize - s.pad[1] as isize;
                for kh in 0..s.kernel[0] as isize {
                    let ih = h0 + kh;
                    if ih < 0 || ih >= s.h as isize {
                        continue;
                    }
                    for kw in 0..s.kernel[1] as isize {
                        let iw = w0 + kw;
                        if iw < 0 || iw >= s.w as isize {
                            continue;
                        }
                        let at = (ih as usize * s.w + iw as usize) * c;
                        for (v, &xv) in o.iter_mut().zip(&image[at..at + c]) {
                            // NaN propagates, as in PyTorch.
                            if xv > *v || xv.is_nan() {
                                *v = xv;
                            }
                        }
                    }
                }
            }
        });
}
