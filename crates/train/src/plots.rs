//! PNG plots (PR curve, confusion matrix) drawn with plotters into a buffer and saved with the `image` crate.

use crate::metrics::DetMetrics;
use anyhow::{anyhow, Result};
use model::Task;
use plotters::prelude::*;
use std::path::Path;

/// plotters draws text with ab_glyph; the font ships with the data crate.
pub fn register_font() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = plotters::style::register_font("sans-serif", FontStyle::Normal, data::draw::FONT);
    });
}

fn save(buf: Vec<u8>, w: u32, h: u32, path: &Path) -> Result<()> {
    let img = image::RgbImage::from_raw(w, h, buf).ok_or_else(|| anyhow!("plot buffer size"))?;
    data::image_ops::save_rgb(&img, path)
}

/// Precision-recall curves at IoU 0.5, one line per class plus the mean.
pub fn pr_curve(path: &Path, m: &DetMetrics, names: &[String]) -> Result<()> {
    register_font();
    let (w, h) = (900u32, 700u32);
    let mut buf = vec![255u8; (w * h * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut buf, (w, h)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| anyhow!("{e:?}"))?;
        let mut chart = ChartBuilder::on(&root)
            .caption("Precision-Recall Curve", ("sans-serif", 26))
            .margin(20)
            .x_label_area_size(45)
            .y_label_area_size(55)
            .build_cartesian_2d(0f64..1f64, 0f64..1.01f64)
            .map_err(|e| anyhow!("{e:?}"))?;
        chart
            .configure_mesh()
            .x_desc("Recall")
            .y_desc("Precision")
            .label_style(("sans-serif", 16))
            .draw()
            .map_err(|e| anyhow!("{e:?}"))?;
        let xs: Vec<f64> = (0..1000).map(|i| i as f64 / 999.0).collect();
        for (i, c) in m.classes.iter().enumerate() {
            let col = data::draw::class_color(*c).0;
            let color = RGBColor(col[0], col[1], col[2]);
            let label = format!(
                "{} {:.3}",
                names.get(*c).map(String::as_str).unwrap_or("?"),
                m.ap50[i]
            );
            chart
                .draw_series(LineSeries::new(
                    xs.iter().copied().zip(m.pr_curve[i].iter().copied()),
                    color.stroke_width(1),
                ))
                .map_err(|e| anyhow!("{e:?}"))?
                .label(label)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
        }
        if !m.classes.is_empty() {
            let mean: Vec<f64> = (0..1000)
                .map(|k| m.pr_curve.iter().map(|c| c[k]).sum::<f64>() / m.pr_curve.len() as f64)
                .collect();
            chart
                .draw_series(LineSeries::new(
                    xs.iter().copied().zip(mean),
                    BLUE.stroke_width(3),
                ))
                .map_err(|e| anyhow!("{e:?}"))?
                .label(format!("all classes {:.3} mAP@0.5", m.map50()))
                .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLUE.stroke_width(3)));
        }
        chart
            .configure_series_labels()
            .label_font(("sans-serif", 16))
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .position(SeriesLabelPosition::LowerLeft)
            .draw()
            .map_err(|e| anyhow!("{e:?}"))?;
        root.present().map_err(|e| anyhow!("{e:?}"))?;
    }
    save(buf, w, h, path)
}

/// The confusion matrix `matrix[predicted][true]`, each column normalised by its true-class count; `labels`
/// name its rows and columns (a detector's end with `background`).
pub fn confusion(path: &Path, matrix: &[Vec<f64>], labels: &[String]) -> Result<()> {
    register_font();
    let n = matrix.len();
    if labels.len() != n {
        return Err(anyhow!(
            "{} labels for a {n}x{n} confusion matrix",
            labels.len()
        ));
    }
    let (w, h) = (300 + 60 * n as u32, 260 + 60 * n as u32);
    let mut buf = vec![255u8; (w * h * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut buf, (w, h)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| anyhow!("{e:?}"))?;
        let mut chart = ChartBuilder::on(&root)
            .caption("Confusion Matrix Normalized", ("sans-serif", 22))
            .margin(20)
            .x_label_area_size(60)
            .y_label_area_size(110)
            .build_cartesian_2d((0..n - 1).into_segmented(), (0..n - 1).into_segmented())
            .map_err(|e| anyhow!("{e:?}"))?;
        // Predicted class r is drawn on row n-1-r, so the first class is on top like Ultralytics' plot.
        let name_of = |v: &SegmentValue<usize>, flip: bool| match v {
            SegmentValue::CenterOf(i) if *i < n => {
                labels[if flip { n - 1 - *i } else { *i }].clone()
            }
            _ => String::new(),
        };
        chart
            .configure_mesh()
            .disable_mesh()
            .x_desc("True")
            .y_desc("Predicted")
            .x_labels(n)
            .y_labels(n)
            .x_label_formatter(&|v| name_of(v, false))
            .y_label_formatter(&|v| name_of(v, true))
            .label_style(("sans-serif", 14))
            .draw()
            .map_err(|e| anyhow!("{e:?}"))?;
        let col_sum: Vec<f64> = (0..n)
            .map(|c| (0..n).map(|r| matrix[r][c]).sum::<f64>())
            .collect();
        let value = |r: usize, c: usize| {
            if col_sum[c] > 0.0 {
                matrix[r][c] / col_sum[c]
            } else {
                0.0
            }
        };
        let mut cells = Vec::new();
        let mut texts = Vec::new();
        for r in 0..n {
            for c in 0..n {
                let v = value(r, c);
                let shade = (255.0 * (1.0 - 0.8 * v)) as u8;
                let row = n - 1 - r;
                cells.push(Rectangle::new(
                    [
                        (SegmentValue::Exact(c), SegmentValue::Exact(row)),
                        (SegmentValue::Exact(c + 1), SegmentValue::Exact(row + 1)),
                    ],
                    RGBColor(shade, shade, 255).filled(),
                ));
                texts.push(Text::new(
                    format!("{v:.2}"),
                    (SegmentValue::CenterOf(c), SegmentValue::CenterOf(row)),
                    ("sans-serif", 16).into_font().color(&BLACK).pos(
                        plotters::style::text_anchor::Pos::new(
                            plotters::style::text_anchor::HPos::Center,
                            plotters::style::text_anchor::VPos::Center,
                        ),
                    ),
                ));
            }
        }
        chart.draw_series(cells).map_err(|e| anyhow!("{e:?}"))?;
        chart.draw_series(texts).map_err(|e| anyhow!("{e:?}"))?;
        root.present().map_err(|e| anyhow!("{e:?}"))?;
    }
    save(buf, w, h, path)
}

/// A classifier's confusion matrix of image counts (`counts[predicted][true]`), drawn as [`confusion`].
pub fn classify_confusion(path: &Path, counts: &[Vec<u64>], names: &[String]) -> Result<()> {
    let m: Vec<Vec<f64>> = counts
        .iter()
        .map(|row| row.iter().map(|&v| v as f64).collect())
        .collect();
    confusion(path, &m, names)
}

/// Reads one quantity off an epoch's results.
type Metric = fn(&crate::results::EpochResult) -> f64;

/// results.png: the training curves (losses, metrics) per epoch, one small chart each, in `task`'s columns.
pub fn results_png(path: &Path, rows: &[crate::results::EpochResult], task: Task) -> Result<()> {
    register_font();
    let detect: [(&str, Metric); 10] = [
        ("train/box_loss", |r| r.train[0]),
        ("train/cls_loss", |r| r.train[1]),
        ("train/dfl_loss", |r| r.train[2]),
        ("metrics/precision(B)", |r| r.p),
        ("metrics/recall(B)", |r| r.r),
        ("val/box_loss", |r| r.val[0]),
        ("val/cls_loss", |r| r.val[1]),
        ("val/dfl_loss", |r| r.val[2]),
        ("metrics/mAP50(B)", |r| r.map50),
        ("metrics/mAP50-95(B)", |r| r.map),
    ];
    let classify: [(&str, Metric); 4] = [
        ("train/loss", |r| r.train[0]),
        ("metrics/accuracy_top1", |r| r.top1),
        ("val/loss", |r| r.val[0]),
        ("metrics/accuracy_top5", |r| r.top5),
    ];
    let (series, grid, (w, h)): (&[(&str, Metric)], _, (u32, u32)) = match task {
        Task::Detect => (&detect, (2, 5), (1500, 600)),
        Task::Classify => (&classify, (2, 2), (900, 600)),
    };
    let mut buf = vec![255u8; (w * h * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut buf, (w, h)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| anyhow!("{e:?}"))?;
        for (area, (name, f)) in root.split_evenly(grid).iter().zip(series) {
            // NaN or infinite values (a diverged run) are left out: an infinite axis range never ends
            // tick generation.
            let pts: Vec<(f64, f64)> = rows
                .iter()
                .map(|r| ((r.epoch + 1) as f64, f(r)))
                .filter(|p| p.1.is_finite())
                .collect();
            let (lo, hi) = pts
                .iter()
                .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), p| {
                    (a.min(p.1), b.max(p.1))
                });
            let (lo, hi) = if pts.is_empty() {
                (0.0, 1.0)
            } else if hi > lo {
                (lo, hi)
            } else {
                (lo.min(0.0), lo.max(0.0) + 1.0)
            };
            let x_hi = pts.last().map(|p| p.0).unwrap_or(1.0).max(2.0);
            let mut chart = ChartBuilder::on(area)
                .caption(name, ("sans-serif", 16))
                .margin(8)
                .x_label_area_size(22)
                .y_label_area_size(45)
                .build_cartesian_2d(1f64..x_hi, lo..hi + (hi - lo) * 0.05)
                .map_err(|e| anyhow!("{e:?}"))?;
            chart
                .configure_mesh()
                .light_line_style(WHITE)
                .label_style(("sans-serif", 11))
                .draw()
                .map_err(|e| anyhow!("{e:?}"))?;
            chart
                .draw_series(LineSeries::new(pts.clone(), BLUE.stroke_width(2)))
                .map_err(|e| anyhow!("{e:?}"))?;
            chart
                .draw_series(pts.iter().map(|&p| Circle::new(p, 2, BLUE.filled())))
                .map_err(|e| anyhow!("{e:?}"))?;
        }
        root.present().map_err(|e| anyhow!("{e:?}"))?;
    }
    save(buf, w, h, path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::results::EpochResult;

    /// A diverged run (NaN and infinite losses) still gets its plot, in bounded time.
    #[test]
    fn results_png_with_nan_and_infinite_values_finishes() {
        let rows: Vec<EpochResult> = (0..4)
            .map(|e| EpochResult {
                epoch: e,
                train: [1.0, f64::NAN, f64::INFINITY],
                val: [f64::NAN, f64::NEG_INFINITY, 2.0 - e as f64],
                p: f64::NAN,
                map: if e == 2 { f64::INFINITY } else { 0.1 },
                ..Default::default()
            })
            .collect();
        let path = std::env::temp_dir().join(format!("yolo-nan-plot-{}.png", std::process::id()));
        let (tx, rx) = std::sync::mpsc::channel();
        let p = path.clone();
        std::thread::spawn(move || {
            let _ = tx.send(results_png(&p, &rows, Task::Detect).map_err(|e| e.to_string()));
        });
        let r = rx
            .recv_timeout(std::time::Duration::from_secs(60))
            .expect("results_png must finish on NaN/inf values");
        r.unwrap();
        assert!(std::fs::metadata(&path).unwrap().len() > 1000);
        std::fs::remove_file(&path).ok();
    }
}
