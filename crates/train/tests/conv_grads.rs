//! The convolution weight and input gradients on the CPU backend (vendor/burn-flex computes the depthwise and
//! dense cases itself) against the textbook sums computed here in plain loops: depthwise with stride,
//! padding and dilation, the 1x1 depthwise of MobileOne's downsampling blocks, grouped and dense convs.

use model::burn::tensor::module::conv2d;
use model::burn::tensor::ops::ConvOptions;
use model::burn::tensor::{Device, Tensor, TensorData};

fn values(n: usize, seed: usize) -> Vec<f32> {
    (0..n)
        .map(|i| (((i * 7919 + seed * 104729) % 2003) as f32 / 1001.5) - 1.0)
        .collect()
}

struct Case {
    b: usize,
    cin: usize,
    cout: usize,
    hw: usize,
    k: usize,
    stride: usize,
    pad: usize,
    dil: usize,
    groups: usize,
}

fn check(c: &Case) {
    let dev = Device::flex().autodiff();
    let cpg = c.cin / c.groups;
    let opg = c.cout / c.groups;
    let xs = values(c.b * c.cin * c.hw * c.hw, 1);
    let ws = values(c.cout * cpg * c.k * c.k, 2);
    let x = Tensor::<4>::from_data(TensorData::new(xs.clone(), [c.b, c.cin, c.hw, c.hw]), &dev)
        .require_grad();
    let w = Tensor::<4>::from_data(TensorData::new(ws.clone(), [c.cout, cpg, c.k, c.k]), &dev)
        .require_grad();
    let opts = ConvOptions::new([c.stride; 2], [c.pad; 2], [c.dil; 2], c.groups);
    let y = conv2d(x.clone(), w.clone(), None, opts);
    let [_, _, oh, ow] = y.dims();
    let rs = values(c.b * c.cout * oh * ow, 3);
    let r = Tensor::<4>::from_data(TensorData::new(rs.clone(), [c.b, c.cout, oh, ow]), &dev);
    let grads = (y * r).sum().backward();
    let got = w
        .grad(&grads)
        .unwrap()
        .into_data()
        .try_to_vec::<f32>()
        .unwrap();
    let got_x = x
        .grad(&grads)
        .unwrap()
        .into_data()
        .try_to_vec::<f32>()
        .unwrap();
    let mut want_x = vec![0f64; got_x.len()];

    let mut want = vec![0f64; got.len()];
    for co in 0..c.cout {
        let g = co / opg;
        for cil in 0..cpg {
            let ci = g * cpg + cil;
            for i in 0..c.k {
                for j in 0..c.k {
                    let mut s = 0f64;
                    for b in 0..c.b {
                        for y in 0..oh {
                            for x in 0..ow {
                                let ih = (y * c.stride + i * c.dil) as isize - c.pad as isize;
                                let iw = (x * c.stride + j * c.dil) as isize - c.pad as isize;
                                if ih < 0 || iw < 0 || ih >= c.hw as isize || iw >= c.hw as isize {
                                    continue;
                                }
                                let xi =
                                    ((b * c.cin + ci) * c.hw + ih as usize) * c.hw + iw as usize;
                                let rv = rs[((b * c.cout + co) * oh + y) * ow + x] as f64;
                                s += xs[xi] as f64 * rv;
                                let wv = ws[((co * cpg + cil) * c.k + i) * c.k + j] as f64;
                                want_x[xi] += wv * rv;
                            }
                        }
                    }
                    want[((co * cpg + cil) * c.k + i) * c.k + j] = s;
                }
            }
        }
    }
    let scale_x = want_x.iter().fold(0f64, |m, v| m.max(v.abs()));
    let diff_x = got_x
        .iter()
        .zip(&want_x)
        .fold(0f64, |m, (a, b)| m.max((*a as f64 - b).abs()));
    assert!(
        scale_x > 0.1 && diff_x <= 1e-5 * scale_x,
        "k{} s{} p{} d{} groups {}: input gradient off by {diff_x} (scale {scale_x})",
        c.k,
        c.stride,
        c.pad,
        c.dil,
        c.groups
    );
    let scale = want.iter().fold(0f64, |m, v| m.max(v.abs()));
    let diff = got
        .iter()
        .zip(&want)
        .fold(0f64, |m, (a, b)| m.max((*a as f64 - b).abs()));
    assert!(scale > 1.0, "a non-trivial gradient");
    assert!(
        diff <= 1e-5 * scale,
        "k{} s{} p{} d{} groups {}: weight gradient off by {diff} (scale {scale})",
        c.k,
        c.stride,
        c.pad,
        c.dil,
        c.groups
    );
}

#[test]
fn conv_gradients_equal_the_textbook_sums() {
    let dw = |k, stride, pad, dil| Case {
        b: 3,
        cin: 6,
        cout: 6,
        hw: 11,
        k,
        stride,
        pad,
        dil,
        groups: 6,
    };
    check(&dw(3, 1, 1, 1));
    check(&dw(3, 2, 1, 1));
    check(&dw(1, 2, 0, 1));
    check(&dw(3, 1, 2, 2));
    check(&dw(5, 3, 0, 1));
    check(&Case {
        b: 2,
        cin: 4,
        cout: 6,
        hw: 9,
        k: 3,
        stride: 1,
        pad: 1,
        dil: 1,
        groups: 2,
    });
    check(&Case {
        b: 2,
        cin: 3,
        cout: 5,
        hw: 10,
        k: 3,
        stride: 2,
        pad: 1,
        dil: 1,
        groups: 1,
    });
}

/// vendor/burn-flex's float32 sigmoid (parallel, vectorizable exp) against the float64 formula, NaN kept.
#[test]
fn flex_sigmoid_matches_the_formula() {
    let mut xs: Vec<f32> = (0..200_001)
        .map(|i| (i as f32 - 100_000.0) * 1e-3)
        .collect();
    xs.extend([-1000.0, 1000.0, 0.0, -0.0, 1e-9, f32::NAN]);
    let n = xs.len();
    let t = Tensor::<1>::from_data(TensorData::new(xs.clone(), [n]), &Device::flex());
    // A shared input (as SiLU's: x is kept for the product) takes the copying path, a unique one the in-place.
    let kept = t.clone();
    let shared = model::burn::tensor::activation::sigmoid(t)
        .into_data()
        .try_into_vec::<f32>()
        .unwrap();
    let unique = model::burn::tensor::activation::sigmoid(kept)
        .into_data()
        .try_into_vec::<f32>()
        .unwrap();
    assert_eq!(
        shared.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
        unique.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
    );
    for (&x, &g) in xs.iter().zip(&unique) {
        if x.is_nan() {
            assert!(g.is_nan(), "sigmoid(NaN) must be NaN");
            continue;
        }
        let want = 1.0 / (1.0 + (-(x as f64)).exp());
        assert!(
            (g as f64 - want).abs() <= 2e-7 + 1e-6 * want,
            "sigmoid({x}) = {g}, want {want}"
        );
    }
}

/// vendor/burn-flex's elementwise ops split over threads past 64K-256K elements (in-place SIMD, non-SIMD binary,
/// broadcast in place, unary): the same values as computed one element at a time here.
#[test]
fn flex_parallel_elementwise_ops_match_serial_sums() {
    let dev = Device::flex();
    let (n, c, h, w) = (4, 64, 40, 40);
    let len = n * c * h * w;
    let xs: Vec<f32> = (0..len)
        .map(|i| ((i * 7919) % 1000) as f32 * 1e-3 - 0.5)
        .collect();
    let ys: Vec<f32> = (0..len)
        .map(|i| ((i * 104729) % 997) as f32 * 1e-3 + 0.1)
        .collect();
    let gs: Vec<f32> = (0..c).map(|i| i as f32 * 0.01 - 0.3).collect();
    let x = || Tensor::<4>::from_data(TensorData::new(xs.clone(), [n, c, h, w]), &dev);
    let y = || Tensor::<4>::from_data(TensorData::new(ys.clone(), [n, c, h, w]), &dev);
    let g = Tensor::<4>::from_data(TensorData::new(gs.clone(), [1, c, 1, 1]), &dev);
    let vec = |t: Tensor<4>| t.into_data().try_into_vec::<f32>().unwrap();
    let close = |got: &[f32], want: &dyn Fn(usize) -> f32, what: &str| {
        for (i, &v) in got.iter().enumerate() {
            let e = want(i);
            assert!(
                (v - e).abs() <= 1e-6 * (1.0 + e.abs()),
                "{what}[{i}]: {v} vs {e}"
            );
        }
    };
    close(&vec(x() + y()), &|i| xs[i] + ys[i], "add");
    close(
        &vec(x().abs().powf(y())),
        &|i| xs[i].abs().powf(ys[i]),
        "abs, powf",
    );
    // Per-channel broadcast, as BatchNorm's scale: in place into the unique x.
    let ch = |i: usize| (i / (h * w)) % c;
    close(
        &vec(x() * g.clone()),
        &|i| xs[i] * gs[ch(i)],
        "broadcast mul",
    );
    close(&vec(x().exp()), &|i| xs[i].exp(), "exp");
}
