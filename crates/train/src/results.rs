//! results.csv: one row per epoch in Ultralytics' columns, written by the trainer and drawn by `plots`.

use anyhow::Result;
use std::path::Path;

/// One row of results.csv.
#[derive(Debug, Clone, Default)]
pub struct EpochResult {
    pub epoch: usize,
    pub train: [f64; 3],
    pub p: f64,
    pub r: f64,
    pub map50: f64,
    pub map: f64,
    pub val: [f64; 3],
    pub lr: [f64; 3],
    pub seconds: f64,
}

pub const CSV_HEADER: &str = "epoch,time,train/box_loss,train/cls_loss,train/dfl_loss,metrics/precision(B),metrics/recall(B),metrics/mAP50(B),metrics/mAP50-95(B),val/box_loss,val/cls_loss,val/dfl_loss,lr/pg0,lr/pg1,lr/pg2";

impl EpochResult {
    pub fn csv(&self) -> String {
        format!(
            "{},{:.1},{:.5},{:.5},{:.5},{:.5},{:.5},{:.5},{:.5},{:.5},{:.5},{:.5},{:.6},{:.6},{:.6}",
            self.epoch + 1,
            self.seconds,
            self.train[0],
            self.train[1],
            self.train[2],
            self.p,
            self.r,
            self.map50,
            self.map,
            self.val[0],
            self.val[1],
            self.val[2],
            self.lr[0],
            self.lr[1],
            self.lr[2]
        )
    }

    pub fn parse(line: &str) -> Option<EpochResult> {
        let v: Vec<f64> = line
            .split(',')
            .map(|x| x.trim().parse().ok())
            .collect::<Option<_>>()?;
        (v.len() == 15).then(|| EpochResult {
            epoch: v[0] as usize - 1,
            seconds: v[1],
            train: [v[2], v[3], v[4]],
            p: v[5],
            r: v[6],
            map50: v[7],
            map: v[8],
            val: [v[9], v[10], v[11]],
            lr: [v[12], v[13], v[14]],
        })
    }
}

/// The rows of an earlier results.csv for epochs before `before` (a resumed run continues it); none when the
/// file is missing.
pub fn read_csv(path: &Path, before: usize) -> Vec<EpochResult> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .skip(1)
        .filter_map(EpochResult::parse)
        .filter(|r| r.epoch < before)
        .collect()
}

/// Writes every row (atomically: a run killed mid-write keeps the previous file).
pub fn write_csv(path: &Path, rows: &[EpochResult]) -> Result<()> {
    let mut csv = format!("{CSV_HEADER}\n");
    for row in rows {
        csv += &row.csv();
        csv.push('\n');
    }
    model::weights::write_atomic(path, csv.as_bytes())?;
    Ok(())
}
