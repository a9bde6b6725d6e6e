//! Convolution forward and forward+backward times on burn-flex for the layer shapes that dominate a
//! yolov8-mobileone n training step at 320 px (batch 8), as a markdown table. `scripts/bench_conv.py` prints
//! the same table for PyTorch; run both one after the other to compare.
//!
//! `cargo run --release --example conv_bench`

use model::burn::tensor::module::conv2d;
use model::burn::tensor::ops::ConvOptions;
use model::burn::tensor::{Device, Distribution, Tensor};
use std::time::Instant;

/// (batch, c_in, c_out, size, kernel, groups)
pub const SHAPES: [(usize, usize, usize, usize, usize, usize); 5] = [
    (8, 32, 32, 80, 3, 32),
    (8, 64, 64, 40, 3, 64),
    (8, 64, 64, 40, 3, 1),
    (8, 64, 64, 40, 1, 1),
    (8, 128, 128, 20, 1, 1),
];

fn ms<F: FnMut()>(mut f: F) -> f64 {
    f();
    let s = Instant::now();
    for _ in 0..5 {
        f();
    }
    s.elapsed().as_secs_f64() * 1e3 / 5.0
}

fn main() {
    startup::init();
    let dev = Device::flex().autodiff();
    println!("| shape | forward ms | forward+backward ms |");
    println!("|---|---|---|");
    for (b, c, co, hw, k, g) in SHAPES {
        let x = Tensor::<4>::random([b, c, hw, hw], Distribution::Normal(0.0, 1.0), &dev)
            .require_grad();
        let w = Tensor::<4>::random([co, c / g, k, k], Distribution::Normal(0.0, 0.1), &dev)
            .require_grad();
        let r = Tensor::<4>::random([b, co, hw, hw], Distribution::Normal(0.0, 1.0), &dev);
        let opts = ConvOptions::new([1, 1], [k / 2, k / 2], [1, 1], g);
        let fwd = ms(|| {
            let y = conv2d(x.clone().inner(), w.clone().inner(), None, opts.clone());
            let _ = y.sum().into_data();
        });
        let both = ms(|| {
            let y = conv2d(x.clone(), w.clone(), None, opts.clone());
            let grads = (y * r.clone()).sum().backward();
            let _ = w.grad(&grads).map(|t| t.sum().into_data());
            let _ = x.grad(&grads).map(|t| t.sum().into_data());
        });
        println!("| {b}x{c}->{co} {hw}x{hw} k{k} groups {g} | {fwd:.2} | {both:.2} |");
    }
}
