//! Weight and input gradients of 2D convolutions (yolo-burn patch, see `vendor/README.md`).
//!
//! burn-backend's generic `conv2d_weight_backward` computes a grouped convolution's weight gradient with one
//! sliced convolution and one `slice_assign` per group. For a depthwise convolution (groups == channels)
//! that is one tiny convolution per channel: 40 ms for a 3x3 depthwise layer of 8x64x40x40 on 2 cores,
//! 25x its forward pass. Here the depthwise case is a direct loop (per channel, in parallel), the dense case
//! (groups 1) im2col + one batched GEMM, and every other case keeps burn's generic algorithm, copied below
//! because it is crate-private there. The input gradient of a depthwise convolution is a direct loop too:
//! burn's transposed convolution took 60 ms for an 8x32x80x80 depthwise layer (forward: 6 ms).

use crate::{Flex, FlexTensor, Layout};
use alloc::vec;
use alloc::vec::Vec;
use burn_backend::{
    DType, TensorMetadata,
    ops::{
        ConvOptions, ConvTransposeOptions, FloatTensorOps, ModuleOps,
        conv::{calculate_padding_out, pad_asymmetric_conv_input},
    },
    tensor::FloatTensor,
};
use burn_std::{Bytes, Shape, Slice};

pub(crate) fn conv2d_weight_backward(
    x: FloatTensor<Flex>,
    weight: FloatTensor<Flex>,
    output_grad: FloatTensor<Flex>,
    options: ConvOptions<2>,
) -> FloatTensor<Flex> {
    let (x, options) = pad_asymmetric_conv_input::<Flex, 2>(x, options);
    let w_shape: [usize; 4] = weight.shape().dims();
    let channels = x.shape().dims::<4>()[1];
    let depthwise = options.groups == channels && w_shape[0] == channels && w_shape[1] == 1;
    if depthwise && x.dtype() == DType::F32 && output_grad.dtype() == DType::F32 {
        return depthwise_f32(x, output_grad, w_shape, &options);
    }
    if options.groups == 1 && x.dtype() == DType::F32 && output_grad.dtype() == DType::F32 {
        dense_f32(x, output_grad, w_shape, &options)
    } else if options.groups == 1 {
        generic_no_groups(x, output_grad, w_shape, options)
    } else {
        generic_groups(x, weight, output_grad, options)
    }
}

pub(crate) fn conv2d_x_backward(
    x: FloatTensor<Flex>,
    weight: FloatTensor<Flex>,
    output_grad: FloatTensor<Flex>,
    options: ConvOptions<2>,
) -> FloatTensor<Flex> {
    let w_shape: [usize; 4] = weight.shape().dims();
    let x_shape: [usize; 4] = x.shape().dims();
    let channels = x_shape[1];
    let depthwise = options.groups == channels && w_shape[0] == channels && w_shape[1] == 1;
    if depthwise
        && !options.is_asymmetric()
        && weight.dtype() == DType::F32
        && output_grad.dtype() == DType::F32
    {
        return depthwise_x_f32(x_shape, weight, output_grad, &options);
    }
    // burn-backend 0.22.1 `conv2d_x_backward`: a transposed convolution, on the padded input when the
    // padding is asymmetric, cropped back.
    let input_shape = x.shape();
    let padding = options.padding;
    let asymmetric = options.is_asymmetric();
    let (x, options) = pad_asymmetric_conv_input::<Flex, 2>(x, options);
    let [_, _, in_h, in_w]: [usize; 4] = x.shape().dims();
    let [_, _, out_h, out_w]: [usize; 4] = output_grad.shape().dims();
    let pad = options.padding_begin();
    let pad_out = [
        calculate_padding_out(w_shape[2], options.stride[0], pad[0], options.dilation[0], in_h, out_h),
        calculate_padding_out(w_shape[3], options.stride[1], pad[1], options.dilation[1], in_w, out_w),
    ];
    let grad = Flex::conv_transpose2d(
        output_grad,
        weight,
        None,
        ConvTransposeOptions::new(options.stride, pad, pad_out, options.dilation, options.groups),
    );
    if !asymmetric {
        return grad;
    }
    let mut ranges: Vec<Slice> = input_shape.iter().map(|&n| Slice::from(0..n)).collect();
    for (dim, (begin, _)) in padding.iter().enumerate() {
        ranges[dim + 2] = Slice::from(*begin..*begin + input_shape[dim + 2]);
    }
    Flex::float_slice(grad, &ranges)
}

/// `gx[b, c, oh*s + i*d - p, ow*s + j*d - p] += w[c, 0, i, j] * gy[b, c, oh, ow]`, one (b, c) plane per task.
fn depthwise_x_f32(
    x_shape: [usize; 4],
    weight: FlexTensor,
    output_grad: FlexTensor,
    options: &ConvOptions<2>,
) -> FlexTensor {
    let weight = weight.to_contiguous();
    let gy = output_grad.to_contiguous();
    let [batch, channels, in_h, in_w] = x_shape;
    let [_, _, out_h, out_w]: [usize; 4] = gy.shape().dims();
    let [_, _, kh, kw]: [usize; 4] = weight.shape().dims();
    let [sh, sw] = options.stride;
    let [ph, pw] = options.padding_begin();
    let [dh, dw] = options.dilation;
    let wd: &[f32] = weight.storage();
    let gd: &[f32] = gy.storage();
    let plane = |bc: usize, gx: &mut [f32]| {
        let c = bc % channels;
        let gp = &gd[bc * out_h * out_w..][..out_h * out_w];
        for i in 0..kh {
            let (oh0, oh1) = valid(i, dh, ph, sh, in_h, out_h);
            for j in 0..kw {
                let (ow0, ow1) = valid(j, dw, pw, sw, in_w, out_w);
                if ow0 >= ow1 {
                    continue;
                }
                let wv = wd[(c * kh + i) * kw + j];
                for oh in oh0..oh1 {
                    let ih = oh * sh + i * dh - ph;
                    let grow = &gp[oh * out_w..][ow0..ow1];
                    let iw0 = ow0 * sw + j * dw - pw;
                    let xrow = &mut gx[ih * in_w..];
                    if sw == 1 {
                        for (dst, g) in xrow[iw0..iw0 + grow.len()].iter_mut().zip(grow) {
                            *dst += wv * g;
                        }
                    } else {
                        for (t, g) in grow.iter().enumerate() {
                            xrow[iw0 + t * sw] += wv * g;
                        }
                    }
                }
            }
        }
    };
    let mut out = vec![0f32; batch * channels * in_h * in_w];
    for_each_chunk(&mut out, in_h * in_w, plane);
    FlexTensor::new(
        Bytes::from_elems(out),
        Layout::contiguous(Shape::from(vec![batch, channels, in_h, in_w])),
        DType::F32,
    )
}

/// Runs `f(index, chunk)` over the `size`-long chunks of `out`, in parallel where rayon is enabled.
fn for_each_chunk(out: &mut [f32], size: usize, f: impl Fn(usize, &mut [f32]) + Send + Sync) {
    #[cfg(feature = "rayon")]
    {
        use rayon::prelude::*;
        out.par_chunks_mut(size)
            .enumerate()
            .for_each(|(i, chunk)| f(i, chunk));
    }
    #[cfg(not(feature = "rayon"))]
    for (i, chunk) in out.chunks_mut(size).enumerate() {
        f(i, chunk);
    }
}

/// Output positions `[lo, hi)` whose tap at kernel offset `k` falls inside the input:
/// `o * s + k * d - p` in `[0, n)`.
fn valid(k: usize, d: usize, p: usize, s: usize, n: usize, out: usize) -> (usize, usize) {
    let off = (k * d) as isize - p as isize;
    let lo = if off >= 0 {
        0
    } else {
        ((-off) as usize).div_ceil(s)
    };
    let last = n as isize - 1 - off;
    let hi = if last < 0 {
        0
    } else {
        (last as usize / s + 1).min(out)
    };
    (lo.min(out), hi.max(lo).min(out))
}

/// `gw[c, 0, i, j] = sum over b, oh, ow of gy[b, c, oh, ow] * x[b, c, oh*s + i*d - p, ow*s + j*d - p]`.
fn depthwise_f32(
    x: FlexTensor,
    output_grad: FlexTensor,
    w_shape: [usize; 4],
    options: &ConvOptions<2>,
) -> FlexTensor {
    let x = x.to_contiguous();
    let gy = output_grad.to_contiguous();
    let [batch, channels, in_h, in_w]: [usize; 4] = x.shape().dims();
    let [_, _, out_h, out_w]: [usize; 4] = gy.shape().dims();
    let [_, _, kh, kw] = w_shape;
    let [sh, sw] = options.stride;
    let [ph, pw] = options.padding_begin();
    let [dh, dw] = options.dilation;
    let xd: &[f32] = x.storage();
    let gd: &[f32] = gy.storage();

    let per_channel = |c: usize, acc: &mut [f32]| {
        for b in 0..batch {
            let xp = &xd[(b * channels + c) * in_h * in_w..][..in_h * in_w];
            let gp = &gd[(b * channels + c) * out_h * out_w..][..out_h * out_w];
            for i in 0..kh {
                let (oh0, oh1) = valid(i, dh, ph, sh, in_h, out_h);
                for j in 0..kw {
                    let (ow0, ow1) = valid(j, dw, pw, sw, in_w, out_w);
                    if ow0 >= ow1 {
                        continue;
                    }
                    let mut sum = 0f32;
                    for oh in oh0..oh1 {
                        let ih = oh * sh + i * dh - ph;
                        let grow = &gp[oh * out_w..][ow0..ow1];
                        let xrow = &xp[ih * in_w..];
                        let iw0 = ow0 * sw + j * dw - pw;
                        if sw == 1 {
                            let xs = &xrow[iw0..iw0 + grow.len()];
                            sum += grow.iter().zip(xs).map(|(g, v)| g * v).sum::<f32>();
                        } else {
                            sum += grow
                                .iter()
                                .enumerate()
                                .map(|(t, g)| g * xrow[iw0 + t * sw])
                                .sum::<f32>();
                        }
                    }
                    acc[i * kw + j] += sum;
                }
            }
        }
    };

    let mut out = vec![0f32; channels * kh * kw];
    for_each_chunk(&mut out, kh * kw, per_channel);
    FlexTensor::new(
        Bytes::from_elems(out),
        Layout::contiguous(Shape::from(vec![channels, 1, kh, kw])),
        DType::F32,
    )
}

/// `gw[co] = sum over b of gy[b, co, :] . cols[b]^T`: im2col of the input (`[B, Cin*kh*kw, L]`) and one
/// batched GEMM, instead of burn's convolution of the batch-swapped input with the output gradient as the
/// kernel (one narrow GEMM per input channel, plus three transposes).
fn dense_f32(
    x: FlexTensor,
    output_grad: FlexTensor,
    w_shape: [usize; 4],
    options: &ConvOptions<2>,
) -> FlexTensor {
    let x = x.to_contiguous();
    let [batch, cin, in_h, in_w]: [usize; 4] = x.shape().dims();
    let [_, cout, out_h, out_w]: [usize; 4] = output_grad.shape().dims();
    let [_, _, kh, kw] = w_shape;
    let [sh, sw] = options.stride;
    let [ph, pw] = options.padding_begin();
    let [dh, dw] = options.dilation;
    let l = out_h * out_w;
    let kk = cin * kh * kw;
    let xd: &[f32] = x.storage();

    // One (b, ci) plane of the input fills kh*kw rows of length L.
    let fill = |bc: usize, rows: &mut [f32]| {
        let xp = &xd[bc * in_h * in_w..][..in_h * in_w];
        for i in 0..kh {
            let (oh0, oh1) = valid(i, dh, ph, sh, in_h, out_h);
            for j in 0..kw {
                let (ow0, ow1) = valid(j, dw, pw, sw, in_w, out_w);
                let row = &mut rows[(i * kw + j) * l..][..l];
                for oh in oh0..oh1 {
                    let ih = oh * sh + i * dh - ph;
                    let dst = &mut row[oh * out_w..][ow0..ow1];
                    let iw0 = ow0 * sw + j * dw - pw;
                    let src = &xp[ih * in_w..];
                    if sw == 1 {
                        dst.copy_from_slice(&src[iw0..iw0 + dst.len()]);
                    } else {
                        for (t, v) in dst.iter_mut().enumerate() {
                            *v = src[iw0 + t * sw];
                        }
                    }
                }
            }
        }
    };
    let mut cols = vec![0f32; batch * kk * l];
    for_each_chunk(&mut cols, kh * kw * l, fill);
    let cols = FlexTensor::new(
        Bytes::from_elems(cols),
        Layout::contiguous(Shape::from(vec![batch, kk, l])),
        DType::F32,
    );
    let gy = Flex::float_reshape(output_grad, Shape::from(vec![batch, cout, l]));
    let per_batch = Flex::float_matmul(gy, Flex::float_swap_dims(cols, 1, 2));
    let gw = Flex::float_sum_dim(per_batch, 0);
    Flex::float_reshape(gw, Shape::from(vec![cout, cin, kh, kw]))
}

/// burn-backend 0.22.1 `conv2d_weight_grad_no_groups` (other dtypes).
fn generic_no_groups(
    x: FloatTensor<Flex>,
    output_grad: FloatTensor<Flex>,
    weight_shape: [usize; 4],
    options: ConvOptions<2>,
) -> FloatTensor<Flex> {
    let x_swapped = Flex::float_swap_dims(x, 0, 1);
    let output_grad_swapped = Flex::float_swap_dims(output_grad, 0, 1);
    let weight_grad_swapped = Flex::conv2d(
        x_swapped,
        output_grad_swapped,
        None,
        ConvOptions::new(options.dilation, options.padding_begin(), options.stride, 1),
    );
    let mut weight_grad = Flex::float_swap_dims(weight_grad_swapped, 0, 1);
    if weight_grad.shape().dims::<4>() != weight_shape {
        let slices: Vec<Slice> = weight_shape.iter().map(|&n| Slice::from(0..n)).collect();
        weight_grad = Flex::float_slice(weight_grad, &slices);
    }
    weight_grad
}

/// burn-backend 0.22.1 `conv2d_weight_grad_groups`.
fn generic_groups(
    x: FloatTensor<Flex>,
    weight: FloatTensor<Flex>,
    output_grad: FloatTensor<Flex>,
    options: ConvOptions<2>,
) -> FloatTensor<Flex> {
    let mut weight_grad = Flex::float_zeros(
        weight.shape(),
        &crate::FlexDevice,
        weight.dtype().into(),
    );
    let [channels_out, increment_ci, k1, k2]: [usize; 4] = weight_grad.shape().dims();
    let increment_co = channels_out / options.groups;
    let x_swapped = Flex::float_swap_dims(x, 0, 1);
    let output_grad_swapped = Flex::float_swap_dims(output_grad, 0, 1);
    for g in 0..options.groups {
        let x = Flex::float_slice(
            x_swapped.clone(),
            &[Slice::from(g * increment_ci..(g + 1) * increment_ci)],
        );
        let grad = Flex::float_slice(
            output_grad_swapped.clone(),
            &[Slice::from(g * increment_co..(g + 1) * increment_co)],
        );
        let mut tmp = Flex::conv2d(
            x,
            grad,
            None,
            ConvOptions::new(options.dilation, options.padding_begin(), options.stride, 1),
        );
        tmp = Flex::float_swap_dims(tmp, 0, 1);
        let [_, _, t1, t2]: [usize; 4] = tmp.shape().dims();
        if t1 != k1 || t2 != k2 {
            tmp = Flex::float_slice(
                tmp,
                &[
                    Slice::from(0..increment_co),
                    Slice::from(0..increment_ci),
                    Slice::from(0..k1),
                    Slice::from(0..k2),
                ],
            );
        }
        weight_grad = Flex::float_slice_assign(
            weight_grad,
            &[
                Slice::from(g * increment_co..(g + 1) * increment_co),
                Slice::from(0..increment_ci),
                Slice::from(0..k1),
                Slice::from(0..k2),
            ],
            tmp,
        );
    }
    weight_grad
}
