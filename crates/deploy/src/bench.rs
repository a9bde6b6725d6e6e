//! Latency of the unfused vs fused model, measured side by side in one run (the two alternate every
//! iteration, so machine noise hits both alike).

use model::burn::tensor::{Device, Distribution, Tensor};
use model::YoloModel;
use std::time::Instant;

#[derive(Debug, Clone)]
pub struct BenchRow {
    pub batch: usize,
    pub variant: &'static str,
    pub median_ms: f64,
    pub p90_ms: f64,
    pub images_per_s: f64,
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    let i = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted[i]
}

fn run_once(m: &YoloModel, x: &Tensor<4>) -> f64 {
    let t = Instant::now();
    // Reading the output back makes lazy/async backends finish the work being timed.
    let _ = m.forward(x.clone()).into_data();
    t.elapsed().as_secs_f64() * 1e3
}

/// What to time: input size, batch sizes, untimed warm-up runs and timed runs per model.
pub struct BenchConfig {
    pub h: usize,
    pub w: usize,
    pub batches: Vec<usize>,
    pub warmup: usize,
    pub iters: usize,
}

/// Times `iters` forwards of each model per batch size after `warmup` untimed ones.
pub fn bench(
    unfused: &YoloModel,
    fused: &YoloModel,
    cfg: &BenchConfig,
    device: &Device,
) -> Vec<BenchRow> {
    let (h, w, warmup, iters) = (cfg.h, cfg.w, cfg.warmup, cfg.iters);
    let mut rows = Vec::new();
    for &b in &cfg.batches {
        let x = Tensor::<4>::random([b, 3, h, w], Distribution::Uniform(0.0, 1.0), device);
        for _ in 0..warmup {
            run_once(unfused, &x);
            run_once(fused, &x);
        }
        let mut tu = Vec::with_capacity(iters);
        let mut tf = Vec::with_capacity(iters);
        for i in 0..iters {
            if i % 2 == 0 {
                tu.push(run_once(unfused, &x));
                tf.push(run_once(fused, &x));
            } else {
                tf.push(run_once(fused, &x));
                tu.push(run_once(unfused, &x));
            }
        }
        for (variant, mut t) in [("unfused", tu), ("fused", tf)] {
            t.sort_by(f64::total_cmp);
            let median = percentile(&t, 0.5);
            rows.push(BenchRow {
                batch: b,
                variant,
                median_ms: median,
                p90_ms: percentile(&t, 0.9),
                images_per_s: b as f64 * 1e3 / median,
            });
        }
    }
    rows
}

pub fn render(rows: &[BenchRow]) -> String {
    let mut s = format!(
        "{:>5}  {:<8}{:>12}{:>12}{:>12}{:>16}\n",
        "batch", "model", "median ms", "p90 ms", "images/s", "fused speed-up"
    );
    for pair in rows.chunks(2) {
        let ratio = pair[0].median_ms / pair[1].median_ms;
        for r in pair {
            let sp = if r.variant == "fused" {
                format!("{ratio:.2}x")
            } else {
                String::new()
            };
            s += &format!(
                "{:>5}  {:<8}{:>12.1}{:>12.1}{:>12.1}{:>16}\n",
                r.batch, r.variant, r.median_ms, r.p90_ms, r.images_per_s, sp
            );
        }
    }
    s
}

/// Median time per layer (ms) over `iters` runs, the Detect head last, for unfused and fused side by side.
pub fn layer_times(m: &YoloModel, x: &Tensor<4>, iters: usize) -> Vec<f64> {
    let n = m.layers.len();
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
