//! The kernels against textbook sums (every ISA this CPU has): odd channel counts that leave partial vectors
//! and panels, strides, padding, channel-slice views into wider buffers, residual adds, activations.

use super::conv::PackedConv;
use super::depthwise::PackedDepthwise;
use super::simd::Level;
use super::{ops, Act, Dst, Src};

/// A view of `data` as an NHWC map of `h x w` pixels, `stride` floats apart.
fn src(data: &[f32], h: usize, w: usize, stride: usize) -> Src {
    Src {
        ptr: data.as_ptr(),
        h,
        w,
        stride,
    }
}

/// A writable [`src`].
fn dst(data: &mut [f32], h: usize, w: usize, stride: usize) -> Dst {
    Dst {
        ptr: data.as_mut_ptr(),
        h,
        w,
        stride,
    }
}

fn levels() -> Vec<Level> {
    Level::available()
}

/// Deterministic values in [-1, 1).
fn values(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

fn act_ref(x: f64, act: Act) -> f64 {
    match act {
        Act::None => x,
        Act::Relu => x.max(0.0),
        Act::Silu => x / (1.0 + (-x).exp()),
    }
}

/// The textbook convolution on NHWC with `groups` 1 or `c`, in float64.
#[allow(clippy::too_many_arguments)]
fn conv_ref(
    x: &[f32],
    h: usize,
    w: usize,
    cin: usize,
    wt: &[f32],
    b: &[f32],
    cout: usize,
    k: usize,
    s: usize,
    p: usize,
    depthwise: bool,
) -> (Vec<f64>, usize, usize) {
    let (oh, ow) = ((h + 2 * p - k) / s + 1, (w + 2 * p - k) / s + 1);
    let cg = if depthwise { 1 } else { cin };
    let mut y = vec![0.0f64; oh * ow * cout];
    for oy in 0..oh {
        for ox in 0..ow {
            for co in 0..cout {
                let mut acc = b[co] as f64;
                for ky in 0..k {
                    for kx in 0..k {
                        let (iy, ix) = (
                            (oy * s + ky) as isize - p as isize,
                            (ox * s + kx) as isize - p as isize,
                        );
                        if iy < 0 || ix < 0 || iy as usize >= h || ix as usize >= w {
                            continue;
                        }
                        for ci in 0..cg {
                            let c_in = if depthwise { co } else { ci };
                            acc += x[(iy as usize * w + ix as usize) * cin + c_in] as f64
                                * wt[((co * cg + ci) * k + ky) * k + kx] as f64;
                        }
                    }
                }
                y[(oy * ow + ox) * cout + co] = acc;
            }
        }
    }
    (y, oh, ow)
}

#[test]
fn dense_conv_matches_the_textbook_sum() {
    let cases = [
        // cin, cout, k, s, p, h, w
        (3, 16, 3, 2, 1, 13, 11),
        (5, 37, 3, 1, 1, 7, 9),
        (16, 48, 1, 1, 0, 5, 6),
        (7, 8, 5, 2, 2, 9, 9),
        (64, 144, 3, 1, 1, 6, 5),
        (2, 3, 1, 1, 0, 1, 1),
        // Winograd F(2x2, 3x3) with one-vector panels, channel tails and 1-pixel maps.
        (16, 16, 3, 1, 1, 9, 7),
        (40, 100, 3, 1, 1, 4, 3),
        (3, 5, 3, 1, 1, 1, 1),
    ];
    for level in levels() {
        for (ci, &(cin, cout, k, s, p, h, w)) in cases.iter().enumerate() {
            for act in [Act::None, Act::Relu, Act::Silu] {
                let wt = values(cout * cin * k * k, 1 + ci as u64);
                let b = values(cout, 100 + ci as u64);
                // The input is channels 2.. of a wider buffer; the output goes to channels 3.. of another.
                let (xs, ys) = (cin + 5, cout + 4);
                let xbuf = values(h * w * xs, 200 + ci as u64);
                let x: Vec<f32> = (0..h * w)
                    .flat_map(|i| xbuf[i * xs + 2..i * xs + 2 + cin].to_vec())
                    .collect();
                let (want, oh, ow) = conv_ref(&x, h, w, cin, &wt, &b, cout, k, s, p, false);
                let add = values(oh * ow * cout, 300 + ci as u64);
                let pc = PackedConv::new(level, &wt, &b, cout, cin, k, s, p);
                for with_add in [false, true] {
                    let mut ybuf = vec![7.0f32; oh * ow * ys];
                    let zeros = vec![0.0f32; cin];
                    pc.run(
                        src(&xbuf[2..], h, w, xs),
                        dst(&mut ybuf[3..], oh, ow, ys),
                        act,
                        with_add.then_some(src(&add, oh, ow, cout)),
                        &zeros,
                        ci % 2 == 0,
                    );
                    for px in 0..oh * ow {
                        for c in 0..ys {
                            let got = ybuf[px * ys + c];
                            if c < 3 || c >= 3 + cout {
                                assert_eq!(
                                    got, 7.0,
                                    "{level:?} case {ci}: wrote outside its slice"
                                );
                                continue;
                            }
                            let co = c - 3;
                            let mut e = act_ref(want[px * cout + co], act);
                            if with_add {
                                e += add[px * cout + co] as f64;
                            }
                            let tol = 1e-5 * (1.0 + (cin * k * k) as f64).sqrt();
                            assert!(
                                (got as f64 - e).abs() <= tol,
                                "{level:?} case {ci} {act:?} add {with_add}: pixel {px} channel {co}: {got} vs {e}"
                            );
                        }
                    }
                }
            }
        }
    }
}

#[test]
fn depthwise_conv_matches_the_textbook_sum() {
    for level in levels() {
        for (ci, &(c, k, s, p, h, w)) in
            [(20, 3, 1, 1, 7, 5), (32, 3, 2, 1, 9, 8), (3, 1, 2, 0, 5, 5)]
                .iter()
                .enumerate()
        {
            let wt = values(c * k * k, 10 + ci as u64);
            let b = values(c, 20 + ci as u64);
            let x = values(h * w * c, 30 + ci as u64);
            let (want, oh, ow) = conv_ref(&x, h, w, c, &wt, &b, c, k, s, p, true);
            let pd = PackedDepthwise::new(level, &wt, &b, c, k, s, p);
            for act in [Act::None, Act::Relu, Act::Silu] {
                let mut y = vec![0.0f32; oh * ow * c];
                pd.run(src(&x, h, w, c), dst(&mut y, oh, ow, c), act, true);
                for (i, (&g, &e)) in y.iter().zip(&want).enumerate() {
                    let e = act_ref(e, act);
                    assert!(
                        (g as f64 - e).abs() <= 1e-5,
                        "{level:?} case {ci} {act:?} at {i}: {g} vs {e}"
                    );
                }
            }
        }
    }
}

#[test]
fn max_pool_matches_pytorch_semantics_including_nan() {
    let (h, w, c) = (6, 5, 3);
    let mut x = values(h * w * c, 5);
    x[(2 * w + 2) * c + 1] = f32::NAN;
    let mut y = vec![0.0f32; h * w * c];
    ops::max_pool(src(&x, h, w, c), dst(&mut y, h, w, c), c, 5, false);
    for oy in 0..h {
        for ox in 0..w {
            for ch in 0..c {
                let mut m = f32::NEG_INFINITY;
                let mut nan = false;
                for iy in oy.saturating_sub(2)..(oy + 3).min(h) {
                    for ix in ox.saturating_sub(2)..(ox + 3).min(w) {
                        let v = x[(iy * w + ix) * c + ch];
                        nan |= v.is_nan();
                        m = m.max(v);
                    }
                }
                let g = y[(oy * w + ox) * c + ch];
                if nan {
                    assert!(g.is_nan(), "NaN in the window must come out");
                } else {
                    assert_eq!(g, m);
                }
            }
        }
    }
}

#[test]
fn vector_exp_and_sigmoid_are_accurate() {
    for level in levels() {
        let mut x: Vec<f32> = (0..4000).map(|i| (i as f32 - 2000.0) * 0.05).collect();
        x.extend([-200.0, 200.0, 0.0, -0.0, 1e-8]);
        let want: Vec<f64> = x
            .iter()
            .map(|&v| 1.0 / (1.0 + (-(v as f64)).exp()))
            .collect();
        let mut got = x.clone();
        ops::sigmoid_in_place(level, &mut got);
        for (i, (&g, &e)) in got.iter().zip(&want).enumerate() {
            assert!(
                (g as f64 - e).abs() <= 2e-7 + 1e-6 * e,
                "{level:?} sigmoid({}) = {g}, want {e}",
                x[i]
            );
        }
    }
}

/// A NaN input stays NaN through every activation (as in PyTorch), so a broken model is visible downstream.
#[test]
fn nan_propagates_through_conv_depthwise_and_activations() {
    for level in levels() {
        let (c, h, w) = (16, 3, 3);
        let mut x = vec![0.5f32; h * w * c];
        x[(w + 1) * c] = f32::NAN;
        let zeros = vec![0.0f32; c];
        for act in [Act::None, Act::Relu, Act::Silu] {
            let wt = vec![0.1f32; c * c];
            let pc = PackedConv::new(level, &wt, &vec![0.0; c], c, c, 1, 1, 0);
            let mut y = vec![0.0f32; h * w * c];
            pc.run(
                src(&x, h, w, c),
                dst(&mut y, h, w, c),
                act,
                None,
                &zeros,
                false,
            );
            assert!(
                y[(w + 1) * c..(w + 2) * c].iter().all(|v| v.is_nan()),
                "{level:?} {act:?}"
            );
            assert!(y[..c].iter().all(|v| v.is_finite()));
            let pd = PackedDepthwise::new(level, &vec![0.1; c * 9], &vec![0.0; c], c, 3, 1, 1);
            let mut y = vec![0.0f32; h * w * c];
            pd.run(src(&x, h, w, c), dst(&mut y, h, w, c), act, false);
            assert!(
                y[0].is_nan(),
                "{level:?} {act:?}: the corner window holds the NaN"
            );
        }
    }
}
