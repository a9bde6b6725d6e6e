//! Latency of the ways this build can run one model, measured side by side in one run: burn unfused, burn
//! fused and the inference engine on the fused model. Every timed iteration runs each variant once, in a
//! rotating order, so machine noise hits all alike.

use crate::engine::Engine;
use model::burn::tensor::{Device, Distribution, Tensor, TensorData};
use model::YoloModel;
use std::time::Instant;

#[derive(Debug, Clone, serde::Serialize)]
pub struct BenchRow {
    pub batch: usize,
    pub variant: String,
    pub median_ms: f64,
    pub p90_ms: f64,
    pub images_per_s: f64,
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    let i = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted[i]
}

/// Runs an NCHW batch `(x, b, h, w)` and returns once the output is on the host.
pub type RunFn<'a> = Box<dyn Fn(&[f32], usize, usize, usize) + 'a>;

/// One way to run the model.
pub struct Variant<'a> {
    pub name: String,
    pub run: RunFn<'a>,
}

impl<'a> Variant<'a> {
    pub fn burn(name: &str, m: &'a YoloModel, device: &'a Device) -> Self {
        Variant {
            name: name.to_string(),
            run: Box::new(move |x, b, h, w| {
                let t = Tensor::<4>::from_data(TensorData::new(x.to_vec(), [b, 3, h, w]), device);
                // Reading the output back makes lazy/async backends finish the work being timed.
                let _ = m.forward(t).into_data();
            }),
        }
    }

    pub fn engine(name: &str, e: &'a Engine) -> Self {
        Variant {
            name: name.to_string(),
            run: Box::new(move |x, b, h, w| {
                let _ = e.run(x, b, h, w);
            }),
        }
    }
}

/// What to time: input size, batch sizes, untimed warm-up runs and timed runs per variant.
pub struct BenchConfig {
    pub h: usize,
    pub w: usize,
    pub batches: Vec<usize>,
    pub warmup: usize,
    pub iters: usize,
}

/// Times `iters` runs of each variant per batch size after `warmup` untimed ones.
pub fn bench(variants: &[Variant<'_>], cfg: &BenchConfig, device: &Device) -> Vec<BenchRow> {
    let (h, w) = (cfg.h, cfg.w);
    let mut rows = Vec::new();
    for &b in &cfg.batches {
        let x = Tensor::<4>::random([b, 3, h, w], Distribution::Uniform(0.0, 1.0), device)
            .into_data()
            .try_to_vec::<f32>()
            .unwrap_or_default();
        for _ in 0..cfg.warmup {
            for v in variants {
                (v.run)(&x, b, h, w);
            }
        }
        let mut t: Vec<Vec<f64>> = vec![Vec::with_capacity(cfg.iters); variants.len()];
        for i in 0..cfg.iters {
            for k in 0..variants.len() {
                let j = (i + k) % variants.len();
                let t0 = Instant::now();
                (variants[j].run)(&x, b, h, w);
                t[j].push(t0.elapsed().as_secs_f64() * 1e3);
            }
        }
        for (v, mut ts) in variants.iter().zip(t) {
            ts.sort_by(f64::total_cmp);
            let median = percentile(&ts, 0.5);
            rows.push(BenchRow {
                batch: b,
                variant: v.name.clone(),
                median_ms: median,
                p90_ms: percentile(&ts, 0.9),
                images_per_s: b as f64 * 1e3 / median,
            });
        }
    }
    rows
}

/// The table, each row's speed-up relative to the first variant of its batch.
pub fn render(rows: &[BenchRow]) -> String {
    let mut s = format!(
        "{:>5}  {:<16}{:>12}{:>12}{:>12}{:>14}\n",
        "batch", "variant", "median ms", "p90 ms", "images/s", "vs first"
    );
    let mut base = f64::NAN;
    let mut last_batch = usize::MAX;
    for r in rows {
        if r.batch != last_batch {
            base = r.median_ms;
            last_batch = r.batch;
        }
        s += &format!(
            "{:>5}  {:<16}{:>12.1}{:>12.1}{:>12.1}{:>13.2}x\n",
            r.batch,
            r.variant,
            r.median_ms,
            r.p90_ms,
            r.images_per_s,
            base / r.median_ms
        );
    }
    s
}

/// Median time per layer (ms) over `iters` runs, the Detect head last, for unfused and fused side by side.
pub fn layer_times(m: &YoloModel, x: &Tensor<4>, iters: usize) -> Vec<f64> {
    let n = m.model.len();
    let mut samples: Vec<Vec<f64>> = vec![Vec::new(); n];
    for _ in 0..iters {
        let mut last = Instant::now();
        let raw = m.forward_raw_observed(x.clone(), &mut |i, y| {
            // One element read back forces the layer to finish before the clock is read.
            let _ = y.clone().slice([0..1, 0..1, 0..1, 0..1]).into_data();
            samples[i].push(last.elapsed().as_secs_f64() * 1e3);
            last = Instant::now();
        });
        let _ = m.detect().decode(&raw).into_data();
        samples[n - 1].push(last.elapsed().as_secs_f64() * 1e3);
    }
    samples
        .into_iter()
        .map(|mut v| {
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        })
        .collect()
}

pub fn render_layers(m: &YoloModel, unfused: &[f64], fused: &[f64]) -> String {
    let mut s = format!(
        "{:>3}  {:<16}{:>12}{:>12}{:>9}\n",
        "idx", "module", "unfused ms", "fused ms", "ratio"
    );
    for (i, l) in m.spec.layers.iter().enumerate() {
        let name = l.module.type_name().rsplit('.').next().unwrap_or("");
        s += &format!(
            "{:>3}  {:<16}{:>12.1}{:>12.1}{:>8.2}x\n",
            i,
            name,
            unfused[i],
            fused[i],
            unfused[i] / fused[i].max(1e-9)
        );
    }
    let (tu, tf): (f64, f64) = (unfused.iter().sum(), fused.iter().sum());
    s += &format!(
        "{:>3}  {:<16}{:>12.1}{:>12.1}{:>8.2}x\n",
        "",
        "total",
        tu,
        tf,
        tu / tf
    );
    s
}
