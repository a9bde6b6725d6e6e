//! The kernels against textbook sums (every ISA this CPU has): odd channel counts that leave partial vectors
//! and panels, strides, padding, channel-slice views into wider buffers, residual adds, activations.

use super::conv::PackedConv;
use super::depthwise::PackedDepthwise;
use super::simd::{Isa, Level};
use super::{ops, Act, Dst, Src, Unary};

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

const ACTS: [Act; 3] = [Act::None, Act::Relu, Act::Silu];

/// Every SIMD level this CPU runs; none is a skip (a failure under `YOLO_REQUIRE_ALL=1`), not a pass.
fn levels() -> Vec<Level> {
    testkit::or_skip(
        Level::available(),
        "the engine (no SIMD level on this CPU)",
        Level::REQUIREMENT,
    )
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
        // YOLOv5's stem: 6x6, stride 2, padding 2, on 3 channels.
        (3, 16, 6, 2, 2, 14, 10),
        (64, 144, 3, 1, 1, 6, 5),
        (2, 3, 1, 1, 0, 1, 1),
        // Winograd with one-vector panels, channel tails and 1-pixel maps.
        (16, 16, 3, 1, 1, 9, 7),
        (40, 100, 3, 1, 1, 4, 3),
        (3, 5, 3, 1, 1, 1, 1),
        // F(4x4, 3x3) tiles cut by the map's edges, more tiles than one block, 128 input channels.
        (128, 48, 3, 1, 1, 11, 14),
        (8, 16, 3, 1, 1, 17, 9),
        // Rows wide enough for whole tiles inside one output row, away from its edges (pointers stepped).
        (3, 16, 3, 2, 1, 9, 130),
        (8, 32, 3, 2, 1, 7, 40),
        (4, 20, 5, 1, 2, 3, 30),
    ];
    for level in levels() {
        for (ci, &(cin, cout, k, s, p, h, w)) in cases.iter().enumerate() {
            for act in ACTS {
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
                // 3x3 stride-1 convolutions by F(4x4, 3x3), F(2x2, 3x3) and the direct kernel.
                let tiles: &[Option<usize>] = if k == 3 && s == 1 && p == 1 {
                    &[Some(4), Some(2), None]
                } else {
                    &[None]
                };
                for &tile in tiles {
                    let pc = PackedConv::with_winograd(level, &wt, &b, cout, cin, k, s, p, tile);
                    // A channel slice of a wider map, and a dense map (one pointer per kernel row).
                    for (with_add, dense) in
                        [(false, false), (true, false), (false, true), (true, true)]
                    {
                        let mut ybuf = vec![7.0f32; oh * ow * ys];
                        let zeros = vec![0.0f32; cin];
                        let input = if dense {
                            src(&x, h, w, cin)
                        } else {
                            src(&xbuf[2..], h, w, xs)
                        };
                        pc.run(
                            input,
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
                                "{level:?} case {ci} {act:?} tile {tile:?} add {with_add} dense {dense}: pixel {px} channel {co}: {got} vs {e}"
                            );
                            }
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
            // c, k, s, p, h, w: vector tails (masked), blocks of interior pixels and their remainders,
            // GhostConv's 5x5, strided windows, a one-row map and a map smaller than the kernel.
            [
                (20, 3, 1, 1, 7, 5),
                (32, 3, 2, 1, 9, 8),
                (3, 1, 2, 0, 5, 5),
                (4, 5, 1, 2, 9, 13),
                (16, 5, 1, 2, 6, 11),
                (37, 3, 2, 1, 7, 12),
                (8, 3, 1, 1, 1, 9),
                (5, 5, 1, 2, 3, 3),
            ]
            .iter()
            .enumerate()
        {
            let wt = values(c * k * k, 10 + ci as u64);
            let b = values(c, 20 + ci as u64);
            let x = values(h * w * c, 30 + ci as u64);
            let (want, oh, ow) = conv_ref(&x, h, w, c, &wt, &b, c, k, s, p, true);
            let pd = PackedDepthwise::new(level, &wt, &b, c, k, s, p);
            for act in ACTS {
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
    // 3 channels (scalar tails only) and 37 (whole vectors and a tail on every level); NaNs in a tail and
    // in vector lanes, one of them the first value of its windows (the running maximum starts as NaN).
    for (level, c) in Level::available()
        .into_iter()
        .flat_map(|l| [(l, 3), (l, 37)])
    {
        max_pool_case(level, c);
    }
}

fn max_pool_case(level: Level, c: usize) {
    let (h, w) = (6, 5);
    let mut x = values(h * w * c, 5);
    x[(2 * w + 2) * c + 1] = f32::NAN;
    if c > 32 {
        x[4 * c + 20] = f32::NAN;
        x[33] = f32::NAN;
    }
    // k, s, p: SPPF's same-size 5x5, YOLOv3-tiny's 2x2 stride 2 and 2x2 stride 1, a padded stride 2.
    // Split across threads too (each job takes its own output rows), and on u8 maps: the max of the
    // quantized values is the quantized max.
    let q = super::QuantIn::from_range(-3.0, 3.0);
    let xq: Vec<u8> = x.iter().map(|&v| q.quantize(v)).collect();
    for (k, s, p, parallel) in [
        (5, 1, 2, false),
        (2, 2, 0, false),
        (2, 1, 0, false),
        (3, 2, 1, false),
        (5, 1, 2, true),
        (3, 2, 1, true),
    ] {
        let (oh, ow) = ((h + 2 * p - k) / s + 1, (w + 2 * p - k) / s + 1);
        let mut y = vec![0.0f32; oh * ow * c];
        let (sx, dy) = (src(&x, h, w, c), dst(&mut y, oh, ow, c));
        ops::max_pool(level, sx, dy, c, [k, s, p], parallel);
        let mut yq = vec![0u8; oh * ow * c];
        let (qs, qd) = (
            Src {
                ptr: xq.as_ptr(),
                h,
                w,
                stride: c,
            },
            Dst {
                ptr: yq.as_mut_ptr(),
                h: oh,
                w: ow,
                stride: c,
            },
        );
        ops::max_pool(level, qs, qd, c, [k, s, p], parallel);
        let nan_free: Vec<u8> = y
            .iter()
            .zip(&yq)
            .map(|(&v, &b)| if v.is_nan() { b } else { q.quantize(v) })
            .collect();
        assert_eq!(yq, nan_free, "k{k} s{s} p{p}: u8 max pool");
        for oy in 0..oh {
            for ox in 0..ow {
                for ch in 0..c {
                    let mut m = f32::NEG_INFINITY;
                    let mut nan = false;
                    for ky in 0..k {
                        for kx in 0..k {
                            let (iy, ix) =
                                ((oy * s + ky).wrapping_sub(p), (ox * s + kx).wrapping_sub(p));
                            if iy < h && ix < w {
                                let v = x[(iy * w + ix) * c + ch];
                                nan |= v.is_nan();
                                m = m.max(v);
                            }
                        }
                    }
                    let g = y[(oy * ow + ox) * c + ch];
                    if nan {
                        assert!(
                            g.is_nan(),
                            "{level:?} c{c} k{k} s{s} p{p}: NaN in the window must come out"
                        );
                    } else {
                        assert_eq!(g, m, "{level:?} k{k} s{s} p{p} at ({oy}, {ox}, {ch})");
                    }
                }
            }
        }
    }
}

#[test]
fn zero_pad_places_the_map_inside_zeros() {
    let (h, w, c) = (3, 4, 5);
    let x = values(h * w * c, 8);
    let pad = (0, 1, 2, 1);
    let (oh, ow) = (h + 3, w + 1);
    // The output is channels 1.. of a wider buffer.
    let ys = c + 2;
    let mut y = vec![9.0f32; oh * ow * ys];
    ops::zero_pad(src(&x, h, w, c), dst(&mut y[1..], oh, ow, ys), c, pad);
    for oy in 0..oh {
        for ox in 0..ow {
            for ch in 0..ys {
                let got = y[(oy * ow + ox) * ys + ch];
                let want = if ch == 0 || ch > c {
                    9.0
                } else if (2..2 + h).contains(&oy) && ox < w {
                    x[((oy - 2) * w + ox) * c + ch - 1]
                } else {
                    0.0
                };
                assert_eq!(got, want, "({oy}, {ox}, {ch})");
            }
        }
    }
}

#[test]
fn elementwise_passes_match_their_formulas() {
    let (h, w, c) = (5, 3, 21);
    let a = values(h * w * c, 40);
    let b = values(h * w * c, 41);
    let gate = values(c, 42);
    let aff = ops::Affine::from_bn(
        &values(c, 43),
        &values(c, 44),
        &values(c, 45),
        &vec![0.7; c],
        1e-3,
    );
    for level in levels() {
        for act in ACTS {
            for (name, kind, bv) in [
                ("relu", ops::Ew::Unary(Unary::Relu), None),
                ("silu", ops::Ew::Unary(Unary::Silu), None),
                ("sigmoid", ops::Ew::Unary(Unary::Sigmoid), None),
                ("add", ops::Ew::Add, Some(&b)),
                ("mul", ops::Ew::Mul, Some(&b)),
                ("gate", ops::Ew::MulBroadcast, Some(&gate)),
                ("batchnorm", ops::Ew::Affine(&aff), None),
                ("batchnorm + add", ops::Ew::Affine(&aff), Some(&b)),
            ] {
                let mut y = vec![0.0f32; h * w * c];
                ops::EwJob {
                    kind,
                    act,
                    c,
                    a: src(&a, h, w, c),
                    // The gate is one pixel, the other second inputs a whole map.
                    b: bv.map(|v| {
                        let (bh, bw) = if v.len() == c { (1, 1) } else { (h, w) };
                        src(v, bh, bw, c)
                    }),
                    dst: dst(&mut y, h, w, c),
                }
                .run(level, true);
                for p in 0..h * w {
                    for ch in 0..c {
                        let x = a[p * c + ch] as f64;
                        let other = |v: &Vec<f32>| {
                            if v.len() == c {
                                v[ch] as f64
                            } else {
                                v[p * c + ch] as f64
                            }
                        };
                        let e = match kind {
                            ops::Ew::Unary(f) => {
                                let y = match f {
                                    Unary::Relu => x.max(0.0),
                                    Unary::Silu => x / (1.0 + (-x).exp()),
                                    Unary::Sigmoid => 1.0 / (1.0 + (-x).exp()),
                                };
                                act_ref(y, act)
                            }
                            ops::Ew::Add => act_ref(x + other(&b), act),
                            ops::Ew::Mul => act_ref(x * other(&b), act),
                            ops::Ew::MulBroadcast => act_ref(x * other(&gate), act),
                            ops::Ew::Affine(f) => {
                                let y = act_ref(x * f.scale[ch] as f64 + f.shift[ch] as f64, act);
                                y + bv.map_or(0.0, other)
                            }
                        };
                        let g = y[p * c + ch] as f64;
                        assert!(
                            (g - e).abs() <= 2e-6 * (1.0 + e.abs()),
                            "{level:?} {name} {act:?} at ({p}, {ch}): {g} vs {e}"
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn global_average_pool_is_the_channel_mean() {
    let (h, w, c) = (7, 6, 9);
    let x = values(h * w * c, 50);
    let mut y = vec![0.0f32; c];
    ops::global_avg_pool(src(&x, h, w, c), dst(&mut y, 1, 1, c), c);
    for ch in 0..c {
        let m: f64 = (0..h * w).map(|p| x[p * c + ch] as f64).sum::<f64>() / (h * w) as f64;
        assert!((y[ch] as f64 - m).abs() < 1e-6, "channel {ch}");
    }
}

/// The textbook transposed conv (PyTorch's `(cin, cout, k, k)` weights) against the engine's 1x1 conv into
/// every tap's products followed by the gather.
#[test]
fn transposed_conv_matches_the_textbook_scatter() {
    for level in levels() {
        // cin, cout, k, s, p, h, w: YOLOv6's 2x2 stride 2, overlapping taps, padding.
        for (ci, &(cin, cout, k, s, p, h, w)) in [
            (8, 5, 2, 2, 0, 3, 4),
            (3, 7, 3, 2, 1, 4, 3),
            (4, 4, 4, 2, 1, 2, 5),
        ]
        .iter()
        .enumerate()
        {
            let wt = values(cin * cout * k * k, 60 + ci as u64);
            let b = values(cout, 70 + ci as u64);
            let x = values(h * w * cin, 80 + ci as u64);
            let (oh, ow) = ((h - 1) * s + k - 2 * p, (w - 1) * s + k - 2 * p);
            let mut want = vec![0.0f64; oh * ow * cout];
            for (i, v) in want.iter_mut().enumerate() {
                *v = b[i % cout] as f64;
            }
            for iy in 0..h {
                for ix in 0..w {
                    for ky in 0..k {
                        for kx in 0..k {
                            let (oy, ox) =
                                ((iy * s + ky).wrapping_sub(p), (ix * s + kx).wrapping_sub(p));
                            if oy >= oh || ox >= ow {
                                continue;
                            }
                            for co in 0..cout {
                                for c in 0..cin {
                                    want[(oy * ow + ox) * cout + co] += x[(iy * w + ix) * cin + c]
                                        as f64
                                        * wt[((c * cout + co) * k + ky) * k + kx] as f64;
                                }
                            }
                        }
                    }
                }
            }
            // The engine's own rearrangement (output channel tap * cout + co of a 1x1 conv), checked here
            // against the textbook scatter.
            let taps = k * k;
            let cols = super::graph::taps_as_channels(&wt, cin, cout, k);
            let pc = PackedConv::new(
                level,
                &cols,
                &vec![0.0; taps * cout],
                taps * cout,
                cin,
                1,
                1,
                0,
            );
            let mut mid = vec![0.0f32; h * w * taps * cout];
            let zeros = vec![0.0f32; cin];
            pc.run(
                src(&x, h, w, cin),
                dst(&mut mid, h, w, taps * cout),
                Act::None,
                None,
                &zeros,
                false,
            );
            let mut y = vec![0.0f32; oh * ow * cout];
            ops::col2im(
                src(&mid, h, w, taps * cout),
                dst(&mut y, oh, ow, cout),
                k,
                s,
                p,
                &b,
                true,
            );
            for (i, (&g, &e)) in y.iter().zip(&want).enumerate() {
                assert!(
                    (g as f64 - e).abs() < 1e-5,
                    "{level:?} case {ci} at {i}: {g} vs {e}"
                );
            }
        }
    }
}

/// Ultralytics' attention core in float64 (per head `softmax(q^T k * key_dim^-0.5)` applied to `v`).
#[test]
fn attention_matches_the_textbook_softmax() {
    use super::attention::{attention, AttentionShape};
    for level in levels() {
        // heads, key_dim, head_dim, h, w: vector tails in both the pixel and the value loops.
        // Also several blocks of pixels and several register chunks of values (C2PSA's 32/64 at n scale).
        let cases = [
            (2, 8, 16, 3, 5),
            (1, 5, 11, 4, 4),
            (3, 16, 32, 2, 9),
            (2, 32, 64, 7, 9),
            (1, 3, 40, 6, 7),
        ];
        for (ci, &(heads, kd, hd, h, w)) in cases.iter().enumerate() {
            let (n, per) = (h * w, 2 * kd + hd);
            let cq = heads * per;
            let x = values(n * cq, 90 + ci as u64);
            let c = heads * hd;
            let mut y = vec![0.0f32; n * 2 * c];
            attention(
                level,
                AttentionShape {
                    heads,
                    key_dim: kd,
                    head_dim: hd,
                },
                src(&x, h, w, cq),
                dst(&mut y, h, w, 2 * c),
                ci % 2 == 0,
            );
            let scale = (kd as f64).powf(-0.5);
            for head in 0..heads {
                let at = |p: usize, ch: usize| x[p * cq + head * per + ch] as f64;
                for i in 0..n {
                    let logits: Vec<f64> = (0..n)
                        .map(|j| (0..kd).map(|d| at(i, d) * at(j, kd + d)).sum::<f64>() * scale)
                        .collect();
                    let m = logits.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                    let e: Vec<f64> = logits.iter().map(|l| (l - m).exp()).collect();
                    let sum: f64 = e.iter().sum();
                    for d in 0..hd {
                        let want: f64 = (0..n).map(|j| e[j] / sum * at(j, 2 * kd + d)).sum();
                        let got = y[i * 2 * c + head * hd + d] as f64;
                        assert!(
                            (got - want).abs() < 1e-5,
                            "{level:?} case {ci} head {head} pixel {i} dim {d}: {got} vs {want}"
                        );
                        assert_eq!(y[i * 2 * c + c + head * hd + d] as f64, at(i, 2 * kd + d));
                    }
                }
            }
        }
    }
}

/// `exp` (`f == 0`), `sigmoid` (1) or SiLU (2) in place, a vector at a time.
///
/// # Safety
/// Compiled with `I`'s target features; `x.len()` is a multiple of `LANES`.
#[inline(always)]
unsafe fn vector_fn<I: Isa>(x: &mut [f32], f: u8) {
    for c in x.chunks_exact_mut(I::LANES) {
        let v = I::load(c.as_ptr());
        let y = match f {
            0 => I::exp(v),
            1 => I::sigmoid(v),
            _ => I::silu(v),
        };
        I::store(c.as_mut_ptr(), y);
    }
}

simd_kernel!(fn vector_fn_on = vector_fn(x: &mut [f32], f: u8));

#[test]
fn vector_exp_and_sigmoid_are_accurate() {
    for level in levels() {
        let mut x: Vec<f32> = (0..4000).map(|i| (i as f32 - 2000.0) * 0.05).collect();
        x.extend([
            -200.0, 200.0, 0.0, -0.0, 1e-8, -87.0, 88.0, 0.3466, -0.3466, 30.0,
        ]);
        x.resize(x.len().next_multiple_of(16), 0.5);
        let sigmoid = |v: f64| 1.0 / (1.0 + (-v).exp());
        for f in 0..3u8 {
            let mut got = x.clone();
            // SAFETY: the level is available on this CPU; the length is a multiple of every level's lanes.
            unsafe { vector_fn_on(level, &mut got, f) };
            for (&xi, &g) in x.iter().zip(&got) {
                let v = xi as f64;
                let (want, tol) = match f {
                    // Inside the clamped range (about 1 ulp, as Cephes).
                    0 if v.abs() <= 87.0 => (v.exp(), 2.5e-7 * v.exp()),
                    0 => continue,
                    1 => (sigmoid(v), 2e-7 + 1e-6 * sigmoid(v)),
                    _ => (v * sigmoid(v), 1e-30 + 4e-7 * (v * sigmoid(v)).abs()),
                };
                assert!(
                    (g as f64 - want).abs() <= tol,
                    "{level:?} fn {f} at {xi}: {g}, want {want}"
                );
            }
        }
    }
}

/// SiLU in every epilogue (the direct conv's tile, Winograd's 4x4 and 2x2 outputs, depthwise pixel blocks), where
/// it runs several vectors at once, against the formula in float64 over -100..100: each kernel passes its
/// input through (an identity 1x1, a 3x3 and a depthwise 3x3 with only the centre tap).
#[test]
fn silu_epilogues_match_the_formula_over_a_wide_range() {
    let (c, h, w) = (24, 9, 11);
    let x: Vec<f32> = (0..h * w * c)
        .map(|i| (i as f32 / (h * w * c) as f32 - 0.5) * 200.0)
        .collect();
    let bias = vec![0.0f32; c];
    let identity = |k: usize| {
        let mut wt = vec![0.0f32; c * c * k * k];
        for o in 0..c {
            wt[(o * c + o) * k * k + (k * k) / 2] = 1.0;
        }
        wt
    };
    let mut centre = vec![0.0f32; c * 9];
    for o in 0..c {
        centre[o * 9 + 4] = 1.0;
    }
    let zeros = vec![0.0f32; c];
    for level in levels() {
        for kind in [
            "direct 1x1",
            "winograd 4x4",
            "winograd 2x2",
            "depthwise 3x3",
        ] {
            // Winograd's transforms round the pass-through by the neighbours' magnitude, so SiLU is checked
            // on what the same kernel gives without an activation.
            let run = |act: Act| {
                let mut y = vec![0.0f32; h * w * c];
                let (xs, ys) = (src(&x, h, w, c), dst(&mut y, h, w, c));
                match kind {
                    "direct 1x1" => PackedConv::new(level, &identity(1), &bias, c, c, 1, 1, 0)
                        .run(xs, ys, act, None, &zeros, false),
                    "winograd 4x4" | "winograd 2x2" => {
                        let tile = if kind == "winograd 4x4" { 4 } else { 2 };
                        PackedConv::with_winograd(
                            level,
                            &identity(3),
                            &bias,
                            c,
                            c,
                            3,
                            1,
                            1,
                            Some(tile),
                        )
                        .run(xs, ys, act, None, &zeros, false)
                    }
                    _ => PackedDepthwise::new(level, &centre, &bias, c, 3, 1, 1)
                        .run(xs, ys, act, false),
                }
                y
            };
            let (lin, y) = (run(Act::None), run(Act::Silu));
            for (&g, &v) in y.iter().zip(&lin) {
                let e = v as f64 / (1.0 + (-(v as f64)).exp());
                assert!(
                    (g as f64 - e).abs() <= 1e-6 * e.abs().max(1.0),
                    "{level:?} {kind}: silu({v}) = {g}, want {e}"
                );
            }
            assert!(lin.iter().any(|&v| v < -80.0) && lin.iter().any(|&v| v > 80.0));
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
        for act in ACTS {
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

/// A float convolution writing a u8 map (the stem before an INT8 layer): its bytes are its float output
/// quantized, for the stem's narrow kernel on 3 channels, a wide one with a residual add, split across threads.
#[test]
fn float_conv_requantizes_into_a_u8_map() {
    let levels = testkit::or_skip(
        Level::available(),
        "the engine (no SIMD level on this CPU)",
        Level::REQUIREMENT,
    );
    let q = super::QuantIn::from_range(-0.5, 4.0);
    for level in levels {
        for (cin, cout, k, s, p, add) in [(3, 16, 3, 2, 1, false), (8, 40, 1, 1, 0, true)] {
            let (h, w) = (9, 11);
            let (oh, ow) = ((h + 2 * p - k) / s + 1, (w + 2 * p - k) / s + 1);
            let x = values(h * w * cin, 3);
            let wt = values(cout * cin * k * k, 4);
            let b = values(cout, 5);
            let a = values(oh * ow * cout, 6);
            let pc = PackedConv::new(level, &wt, &b, cout, cin, k, s, p);
            assert!(pc.writes_u8());
            let zeros = vec![0.0f32; cin];
            let add_src = add.then(|| src(&a, oh, ow, cout));
            for parallel in [false, true] {
                let mut y = vec![0.0f32; oh * ow * cout];
                let d = dst(&mut y, oh, ow, cout);
                pc.run(src(&x, h, w, cin), d, Act::Silu, add_src, &zeros, parallel);
                let mut yq = vec![0u8; oh * ow * cout];
                let qd = Dst {
                    ptr: yq.as_mut_ptr(),
                    h: oh,
                    w: ow,
                    stride: cout,
                };
                let xs = src(&x, h, w, cin);
                pc.run_quantized(xs, qd, q, Act::Silu, add_src, &zeros, parallel);
                let want: Vec<u8> = y.iter().map(|&v| q.quantize(v)).collect();
                assert_eq!(yq, want, "{level:?} {cin}->{cout} k{k} s{s}");
            }
        }
    }
}

/// The decode against the formula in float64 on every level: two maps whose anchor counts and class counts
/// are not multiples of any vector width (partial anchor blocks, scores in tails), reg_max 16 and 1.
#[test]
fn decode_matches_the_formula() {
    for level in levels() {
        for (reg_max, nc) in [(16, 5), (16, 80), (1, 3)] {
            let ch = 4 * reg_max + nc;
            let sizes = [(3usize, 7usize, 8.0f32), (2, 3, 16.0)];
            let maps: Vec<Vec<f32>> = sizes
                .iter()
                .enumerate()
                .map(|(i, &(h, w, _))| {
                    values(h * w * ch, 20 + i as u64)
                        .into_iter()
                        .map(|v| v * 6.0)
                        .collect()
                })
                .collect();
            let levels_in: Vec<ops::LevelMap<'_>> = maps
                .iter()
                .zip(&sizes)
                .map(|(m, &(h, w, stride))| ops::LevelMap {
                    map: m,
                    h,
                    w,
                    stride,
                })
                .collect();
            let a_total: usize = sizes.iter().map(|&(h, w, _)| h * w).sum();
            for parallel in [false, true] {
                let mut out = vec![f32::NAN; (4 + nc) * a_total];
                ops::decode(level, &levels_in, reg_max, nc, &mut out, parallel);
                let mut a = 0;
                for (m, &(h, w, stride)) in maps.iter().zip(&sizes) {
                    for i in 0..h * w {
                        let px = &m[i * ch..(i + 1) * ch];
                        let side = |k: usize| {
                            let seg = &px[k * reg_max..(k + 1) * reg_max];
                            let mx = seg.iter().fold(f64::MIN, |m, &v| m.max(v as f64));
                            let e: Vec<f64> = seg.iter().map(|&v| (v as f64 - mx).exp()).collect();
                            let sum: f64 = e.iter().sum();
                            e.iter().enumerate().map(|(j, v)| j as f64 * v).sum::<f64>() / sum
                        };
                        let (cx, cy) = ((i % w) as f64 + 0.5, (i / w) as f64 + 0.5);
                        let (x1, y1, x2, y2) =
                            (cx - side(0), cy - side(1), cx + side(2), cy + side(3));
                        let st = stride as f64;
                        let mut want = vec![
                            (x1 + x2) / 2.0 * st,
                            (y1 + y2) / 2.0 * st,
                            (x2 - x1) * st,
                            (y2 - y1) * st,
                        ];
                        want.extend(
                            px[4 * reg_max..]
                                .iter()
                                .map(|&v| 1.0 / (1.0 + (-(v as f64)).exp())),
                        );
                        for (r, &e) in want.iter().enumerate() {
                            let g = out[r * a_total + a + i] as f64;
                            assert!(
                                (g - e).abs() <= 1e-5 * (1.0 + e.abs()),
                                "{level:?} reg_max {reg_max} nc {nc}: row {r} anchor {} = {g}, want {e}",
                                a + i
                            );
                        }
                    }
                    a += h * w;
                }
            }
        }
    }
}
