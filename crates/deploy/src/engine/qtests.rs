//! The INT8 convolution against the textbook integer sum: inputs and weights chosen on the quantization
//! grid, so the i32 sum of `(q - zero) * w` is known exactly and the kernel's float output is that sum times
//! the two scales plus the bias (the same float operations), for every ISA this CPU has.

use super::qconv::{quantize_weights, PackedQConv, QInput, QOutput, QuantIn, W_MAX};
use super::simd::Level;
use super::{Act, Dst, Src};

fn levels() -> Vec<Level> {
    testkit::or_skip(
        Level::available(),
        "the engine (no SIMD level on this CPU)",
        Level::REQUIREMENT,
    )
}

/// Deterministic integers in `lo..=hi`.
fn ints(n: usize, lo: i32, hi: i32, seed: u64) -> Vec<i32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15).wrapping_add(7);
    (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            lo + ((s >> 33) % (hi - lo + 1) as u64) as i32
        })
        .collect()
}

struct Case {
    cin: usize,
    cout: usize,
    k: usize,
    s: usize,
    p: usize,
    h: usize,
    w: usize,
    /// Floats per input pixel (a channel slice of a wider map when above `cin`).
    stride: usize,
    act: Act,
    add: bool,
}

fn check(c: &Case, x_q: &[i32], w_q: &[i32], qin: QuantIn, level: Level) {
    let taps = c.k * c.k;
    // Each channel's scale set so its largest weight is exactly W_MAX steps.
    let w_scale: Vec<f32> = (0..c.cout).map(|co| 0.01 + co as f32 * 0.003).collect();
    let mut wf = vec![0.0f32; c.cout * c.cin * taps];
    for co in 0..c.cout {
        for i in 0..c.cin * taps {
            wf[co * c.cin * taps + i] = w_q[co * c.cin * taps + i] as f32 * w_scale[co];
        }
    }
    let (q, ws) = quantize_weights(&wf, c.cout);
    for (a, b) in q.iter().zip(w_q) {
        assert_eq!(*a as i32, *b, "weights re-quantize to themselves");
    }
    let bias: Vec<f32> = (0..c.cout).map(|i| i as f32 * 0.25 - 1.0).collect();
    let mut x = vec![f32::NAN; c.h * c.w * c.stride];
    for pix in 0..c.h * c.w {
        for ch in 0..c.cin {
            x[pix * c.stride + ch] = (x_q[pix * c.cin + ch] - qin.zero as i32) as f32 * qin.scale;
        }
    }
    let full = PackedQConv::new(level, &wf, &bias, c.cout, c.cin, c.k, c.s, c.p, qin);
    // With VNNI where this CPU has it, and the AVX2 kernel on the same level.
    assert_eq!(
        full.uses_vnni(),
        level == Level::Avx512 && super::qconv::vnni_available()
    );
    let kernels = if full.uses_vnni() {
        vec![full.clone(), full.without_vnni()]
    } else {
        vec![full]
    };
    for pc in kernels {
        check_kernel(c, x_q, w_q, qin, level, &pc, &x, &bias, &ws);
    }
}

#[allow(clippy::too_many_arguments, clippy::needless_range_loop)]
fn check_kernel(
    c: &Case,
    x_q: &[i32],
    w_q: &[i32],
    qin: QuantIn,
    level: Level,
    pc: &PackedQConv,
    x: &[f32],
    bias: &[f32],
    ws: &[f32],
) {
    let taps = c.k * c.k;
    let (oh, ow) = (
        (c.h + 2 * c.p - c.k) / c.s + 1,
        (c.w + 2 * c.p - c.k) / c.s + 1,
    );
    let add: Vec<f32> = (0..oh * ow * c.cout)
        .map(|i| (i % 7) as f32 * 0.5)
        .collect();
    let mut qbuf = vec![0u8; pc.qbytes(c.h, c.w)];
    let mut y = vec![0.0f32; oh * ow * c.cout];
    let src = Src {
        ptr: x.as_ptr(),
        h: c.h,
        w: c.w,
        stride: c.stride,
    };
    let dst = Dst {
        ptr: y.as_mut_ptr(),
        h: oh,
        w: ow,
        stride: c.cout,
    };
    let add_src = c.add.then_some(Src {
        ptr: add.as_ptr(),
        h: oh,
        w: ow,
        stride: c.cout,
    });
    // The input as a u8 map: the channels past `cin` hold bytes the (zero) padding weights must ignore.
    let mut xb = vec![0xA5u8; c.h * c.w * c.stride + 4];
    for pix in 0..c.h * c.w {
        for ch in 0..c.cin {
            xb[pix * c.stride + ch] = x_q[pix * c.cin + ch] as u8;
        }
    }
    let qsrc = Src {
        ptr: xb.as_ptr(),
        h: c.h,
        w: c.w,
        stride: c.stride,
    };
    let oq = QuantIn {
        scale: 0.05,
        zero: 100,
    };
    for parallel in [false, true] {
        let float_in = QInput::Float(src, &mut qbuf);
        pc.run(float_in, QOutput::Float(dst), c.act, add_src, parallel);
        // From a u8 map, and requantized into one: the same floats, and those floats quantized.
        let mut y2 = vec![0.0f32; y.len()];
        let dst2 = Dst {
            ptr: y2.as_mut_ptr(),
            ..dst
        };
        let u8_in = QInput::Quantized(qsrc);
        pc.run(u8_in, QOutput::Float(dst2), c.act, add_src, parallel);
        assert_eq!(y2, y, "u8 map input");
        let mut yb = vec![0u8; y.len()];
        let qdst = Dst {
            ptr: yb.as_mut_ptr(),
            h: oh,
            w: ow,
            stride: c.cout,
        };
        let u8_in = QInput::Quantized(qsrc);
        pc.run(
            u8_in,
            QOutput::Quantized(qdst, oq),
            c.act,
            add_src,
            parallel,
        );
        let want: Vec<u8> = y.iter().map(|&v| oq.quantize(v)).collect();
        assert_eq!(yb, want, "u8 map output");
        for oy in 0..oh {
            for ox in 0..ow {
                for co in 0..c.cout {
                    let mut sum = 0i64;
                    for ky in 0..c.k {
                        for kx in 0..c.k {
                            let iy = (oy * c.s + ky) as isize - c.p as isize;
                            let ix = (ox * c.s + kx) as isize - c.p as isize;
                            if iy < 0 || ix < 0 || iy as usize >= c.h || ix as usize >= c.w {
                                continue;
                            }
                            let pix = iy as usize * c.w + ix as usize;
                            for ci in 0..c.cin {
                                let xv = (x_q[pix * c.cin + ci] - qin.zero as i32) as i64;
                                let wv = w_q[(co * c.cin + ci) * taps + ky * c.k + kx] as i64;
                                sum += xv * wv;
                            }
                        }
                    }
                    let pre = sum as i32 as f32 * (qin.scale * ws[co]) + bias[co];
                    let o = (oy * ow + ox) * c.cout + co;
                    let want = match c.act {
                        Act::None => pre,
                        Act::Relu => pre.max(0.0),
                        Act::Silu => pre / (1.0 + (-pre).exp()),
                    } + if c.add { add[o] } else { 0.0 };
                    let got = y[o];
                    assert!(
                        (got - want).abs() <= 1e-5 * want.abs().max(1.0),
                        "{level:?} (VNNI {}) cin {} cout {} k {} s {} p {} at ({oy}, {ox}, {co}): {got} vs {want} (sum {sum})",
                        pc.uses_vnni(), c.cin, c.cout, c.k, c.s, c.p
                    );
                }
            }
        }
    }
}

#[test]
fn int8_conv_matches_the_integer_sum() {
    let cases = [
        (3, 16, 3, 2, 1, 9, 11, 3, Act::Silu, false),
        (5, 20, 3, 1, 1, 7, 6, 8, Act::None, true),
        (17, 5, 1, 1, 0, 5, 9, 17, Act::Relu, false),
        (32, 33, 3, 2, 1, 8, 8, 40, Act::Silu, true),
        (8, 16, 5, 1, 2, 6, 5, 8, Act::None, false),
        (1, 1, 1, 1, 0, 3, 3, 1, Act::None, false),
    ];
    for level in levels() {
        for (i, &(cin, cout, k, s, p, h, w, stride, act, add)) in cases.iter().enumerate() {
            let c = Case {
                cin,
                cout,
                k,
                s,
                p,
                h,
                w,
                stride,
                act,
                add,
            };
            let x_q = ints(h * w * cin, 0, 255, i as u64);
            let mut w_q = ints(cout * cin * k * k, -W_MAX, W_MAX, 100 + i as u64);
            // Every channel reaches W_MAX, so its scale is the one the test chose.
            for co in 0..cout {
                w_q[co * cin * k * k] = if co % 2 == 0 { W_MAX } else { -W_MAX };
            }
            let qin = QuantIn {
                scale: 0.02,
                zero: (i * 40) as u8,
            };
            check(&c, &x_q, &w_q, qin, level);
        }
    }
}

/// All inputs 255 and all weights at the limit: the pairwise i16 sums of `vpmaddubsw` are at their largest.
#[test]
fn int8_conv_does_not_saturate_at_the_extremes() {
    for level in levels() {
        for sign in [1, -1] {
            let (cin, cout, k) = (64, 16, 3);
            let c = Case {
                cin,
                cout,
                k,
                s: 1,
                p: 1,
                h: 4,
                w: 5,
                stride: cin,
                act: Act::None,
                add: false,
            };
            let x_q = vec![255; 4 * 5 * cin];
            let w_q = vec![sign * W_MAX; cout * cin * k * k];
            let qin = QuantIn {
                scale: 0.01,
                zero: 0,
            };
            check(&c, &x_q, &w_q, qin, level);
        }
    }
}

#[test]
fn quantization_parameters_hold_the_range_and_an_exact_zero() {
    let q = QuantIn::from_range(-0.3, 5.0);
    assert_eq!(q.quantize(0.0), q.zero);
    assert_eq!(q.quantize(-0.3), 0);
    assert_eq!(q.quantize(5.0), 255);
    assert_eq!(q.quantize(100.0), 255);
    assert_eq!(q.quantize(-100.0), 0);
    // A range on one side of zero still holds zero.
    let pos = QuantIn::from_range(1.0, 2.0);
    assert_eq!(pos.zero, 0);
    assert_eq!(pos.quantize(2.0), 255);
    let (w, s) = quantize_weights(&[0.0, 0.0, 0.0, -1.0, 0.75, 0.25], 2);
    assert_eq!(s[0], 1.0, "an all-zero channel keeps scale 1");
    assert_eq!(&w[3..], &[-W_MAX as i8, 47, 16]);
}

/// The INT8 depthwise kernel (float sums of integer values, see `depthwise.rs`) against the textbook i32 sum:
/// odd channel counts (a partial vector), strides, padding (the border taps left out), every activation; from
/// a float map and from a u8 map (the same floats), and requantized into a u8 map.
#[test]
fn int8_depthwise_matches_the_integer_sum() {
    use super::depthwise::PackedDepthwise;
    let cases = [
        (5, 3, 1, 1, 7, 9, Act::Relu),
        (19, 3, 2, 1, 8, 7, Act::Silu),
        (33, 5, 1, 2, 6, 6, Act::None),
        (16, 3, 1, 0, 5, 5, Act::Relu),
    ];
    for level in levels() {
        for (i, &(c, k, s, p, h, w, act)) in cases.iter().enumerate() {
            let taps = k * k;
            let x_q = ints(h * w * c, 0, 255, 300 + i as u64);
            let mut w_q = ints(c * taps, -W_MAX, W_MAX, 400 + i as u64);
            for ch in 0..c {
                w_q[ch * taps] = if ch % 2 == 0 { W_MAX } else { -W_MAX };
            }
            let ws: Vec<f32> = (0..c).map(|ch| 0.02 + ch as f32 * 0.001).collect();
            let wf: Vec<f32> = (0..c * taps)
                .map(|j| w_q[j] as f32 * ws[j / taps])
                .collect();
            let bias: Vec<f32> = (0..c).map(|ch| ch as f32 * 0.1 - 0.5).collect();
            let qin = QuantIn {
                scale: 0.03,
                zero: (i * 50) as u8,
            };
            let pd = PackedDepthwise::new_int8(level, &wf, &bias, c, k, s, p, qin);
            let x: Vec<f32> = x_q
                .iter()
                .map(|&v| (v - qin.zero as i32) as f32 * qin.scale)
                .collect();
            let xb: Vec<u8> = x_q.iter().map(|&v| v as u8).collect();
            let (oh, ow) = ((h + 2 * p - k) / s + 1, (w + 2 * p - k) / s + 1);
            let mut y = vec![0.0f32; oh * ow * c];
            let mut y2 = vec![0.0f32; oh * ow * c];
            let mut yb = vec![0u8; oh * ow * c];
            let mut qbuf = vec![0u8; pd.qbytes(h, w)];
            let src = Src {
                ptr: x.as_ptr(),
                h,
                w,
                stride: c,
            };
            let qsrc = Src {
                ptr: xb.as_ptr(),
                h,
                w,
                stride: c,
            };
            let dst = |ptr: *mut f32| Dst {
                ptr,
                h: oh,
                w: ow,
                stride: c,
            };
            let oq = QuantIn {
                scale: 0.04,
                zero: 60,
            };
            for parallel in [false, true] {
                let input = QInput::Float(src, &mut qbuf);
                pd.run_with(input, QOutput::Float(dst(y.as_mut_ptr())), act, parallel);
                let input = QInput::Quantized(qsrc);
                pd.run_with(input, QOutput::Float(dst(y2.as_mut_ptr())), act, parallel);
                assert_eq!(y2, y, "{level:?} case {i}: u8 map input");
                let qdst = Dst {
                    ptr: yb.as_mut_ptr(),
                    h: oh,
                    w: ow,
                    stride: c,
                };
                let input = QInput::Quantized(qsrc);
                pd.run_with(input, QOutput::Quantized(qdst, oq), act, parallel);
                let want: Vec<u8> = y.iter().map(|&v| oq.quantize(v)).collect();
                assert_eq!(yb, want, "{level:?} case {i}: u8 map output");
            }
            for oy in 0..oh {
                for ox in 0..ow {
                    for ch in 0..c {
                        let mut sum = 0i64;
                        for ky in 0..k {
                            for kx in 0..k {
                                let iy = (oy * s + ky) as isize - p as isize;
                                let ix = (ox * s + kx) as isize - p as isize;
                                if iy < 0 || ix < 0 || iy as usize >= h || ix as usize >= w {
                                    continue;
                                }
                                let xv =
                                    x_q[(iy as usize * w + ix as usize) * c + ch] - qin.zero as i32;
                                sum += xv as i64 * w_q[ch * taps + ky * k + kx] as i64;
                            }
                        }
                        let pre = sum as f32 * (qin.scale * ws[ch]) + bias[ch];
                        let want = match act {
                            Act::None => pre,
                            Act::Relu => pre.max(0.0),
                            Act::Silu => pre / (1.0 + (-pre).exp()),
                        };
                        let got = y[(oy * ow + ox) * c + ch];
                        assert!(
                            (got - want).abs() <= 1e-5 * want.abs().max(1.0),
                            "{level:?} c {c} k {k} s {s} p {p} at ({oy}, {ox}, {ch}): {got} vs {want} (sum {sum})"
                        );
                    }
                }
            }
        }
    }
}
