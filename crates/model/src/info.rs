//! Model summaries: the per-layer table Ultralytics prints, and the totals as JSON.

use crate::error::Result;
use crate::graph::{Layer, YoloModel};
use crate::nn::{Named, Slot};
use serde::Serialize;

#[derive(Debug, Clone, Serialize)]
pub struct LayerInfo {
    pub index: usize,
    pub from: String,
    pub n: usize,
    pub params: usize,
    pub module: String,
    pub args: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct ModelInfo {
    pub config: String,
    pub scale: String,
    pub nc: usize,
    pub imgsz: [usize; 2],
    pub layers: Vec<LayerInfo>,
    pub parameters: usize,
    pub gradients: usize,
    pub gflops: f64,
    pub fused_parameters: usize,
    pub fused_gflops: f64,
}

fn count(layer: &mut Layer) -> (usize, usize) {
    let mut n = 0;
    let mut frozen = 0;
    let mut f = |_: String, slot: Slot<'_>| {
        if slot.is_parameter() {
            n += slot.numel();
        }
        if matches!(slot, Slot::Frozen(_)) {
            frozen += slot.numel();
        }
    };
    layer.visit_named("", &mut f);
    (n, frozen)
}

/// Summarises an unfused model (it is fused on a copy for the fused figures).
pub fn model_info(model: &YoloModel, h: usize, w: usize) -> Result<ModelInfo> {
    let mut m = model.clone();
    let spec = m.spec.clone();
    let mut layers = Vec::new();
    let mut total = 0;
    let mut frozen = 0;
    for (l, ls) in m.model.iter_mut().zip(&spec.layers) {
        let (np, fz) = count(l);
        total += np;
        frozen += fz;
        let from = if ls.from_is_list {
            format!("{:?}", ls.from_raw)
        } else {
            ls.from_raw[0].to_string()
        };
        layers.push(LayerInfo {
            index: ls.index,
            from,
            n: ls.n_display,
            params: np,
            module: ls.module.type_name().to_string(),
            args: ls.args_display.clone(),
        });
    }
    let fused = model.clone().fuse();
    Ok(ModelInfo {
        config: spec.source.clone(),
        scale: spec.scale.clone(),
        nc: spec.nc,
        imgsz: [h, w],
        layers,
        parameters: total,
        gradients: total - frozen,
        gflops: model.gflops(h, w)?,
        fused_parameters: fused.parameter_count(),
        fused_gflops: fused.gflops(h, w)?,
    })
}

fn thousands(n: usize) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The table in Ultralytics' layout, then the summary lines.
pub fn render_table(info: &ModelInfo) -> String {
    let mut s = format!(
        "{:>3}{:>20}{:>3}{:>10}  {:<45}{:<30}\n",
        "", "from", "n", "params", "module", "arguments"
    );
    for l in &info.layers {
        s += &format!(
            "{:>3}{:>20}{:>3}{:>10}  {:<45}{:<30}\n",
            l.index, l.from, l.n, l.params, l.module, l.args
        );
    }
    s += &format!(
        "{} summary (scale {}, nc {}, {}x{}): {} layers, {} parameters, {} gradients, {:.2} GFLOPs\n",
        info.config,
        if info.scale.is_empty() { "-" } else { &info.scale },
        info.nc,
        info.imgsz[0],
        info.imgsz[1],
        info.layers.len(),
        thousands(info.parameters),
        thousands(info.gradients),
        info.gflops
    );
    s += &format!(
        "fused: {} parameters, {:.2} GFLOPs\n",
        thousands(info.fused_parameters),
        info.fused_gflops
    );
    s
}
