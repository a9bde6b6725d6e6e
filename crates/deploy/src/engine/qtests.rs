//! The INT8 convolution against the textbook integer sum: inputs and weights chosen on the quantization
//! grid, so the i32 sum of `(q - zero) * w` is known exactly and the kernel's float output is that sum times
//! the two scales plus the bias (the same float operations), for every ISA this CPU has.

use super::qconv::{quantize_weights, PackedQConv, QuantIn, W_MAX};
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
    for parallel in [false, true] {
        pc.run(src, dst, c.act, add_src, &mut qbuf, parallel);
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
