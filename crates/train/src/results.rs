//! results.csv: one row per epoch in Ultralytics' columns (a detector's or a classifier's), written by the
//! trainer and drawn by `plots`.

use anyhow::Result;
use model::Task;
use std::path::Path;

/// One row of results.csv. A classifier uses `train[0]`, `val[0]` (its one loss), `top1` and `top5`.
#[derive(Debug, Clone, Default)]
pub struct EpochResult {
    pub epoch: usize,
    pub train: [f64; 3],
    pub p: f64,
    pub r: f64,
    pub map50: f64,
    pub map: f64,
    pub top1: f64,
    pub top5: f64,
    pub val: [f64; 3],
    pub lr: [f64; 3],
    pub seconds: f64,
}

pub const CSV_HEADER: &str = "epoch,time,train/box_loss,train/cls_loss,train/dfl_loss,metrics/precision(B),metrics/recall(B),metrics/mAP50(B),metrics/mAP50-95(B),val/box_loss,val/cls_loss,val/dfl_loss,lr/pg0,lr/pg1,lr/pg2";

/// A classifier's columns, as Ultralytics' classify trainer writes them.
pub const CLASSIFY_CSV_HEADER: &str = "epoch,time,train/loss,metrics/accuracy_top1,metrics/accuracy_top5,val/loss,lr/pg0,lr/pg1,lr/pg2";

pub fn header(task: Task) -> &'static str {
    match task {
        Task::Detect => CSV_HEADER,
        Task::Classify => CLASSIFY_CSV_HEADER,
    }
}

impl EpochResult {
    /// The row's values in `task`'s columns.
    fn values(&self, task: Task) -> Vec<f64> {
        let head = [(self.epoch + 1) as f64, self.seconds];
        let body: Vec<f64> = match task {
            Task::Detect => [
                &self.train[..],
                &[self.p, self.r, self.map50, self.map],
                &self.val[..],
            ]
            .concat(),
            Task::Classify => vec![self.train[0], self.top1, self.top5, self.val[0]],
        };
        [&head[..], &body, &self.lr[..]].concat()
    }

    pub fn csv(&self, task: Task) -> String {
        let v = self.values(task);
        let last = v.len() - 3;
        v.iter()
            .enumerate()
            .map(|(i, x)| match i {
                0 => format!("{x}"),
                1 => format!("{x:.1}"),
                i if i >= last => format!("{x:.6}"),
                _ => format!("{x:.5}"),
            })
            .collect::<Vec<_>>()
            .join(",")
    }

    /// A row of either task's columns (told apart by their count).
    pub fn parse(line: &str) -> Option<EpochResult> {
        let v: Vec<f64> = line
            .split(',')
            .map(|x| x.trim().parse().ok())
            .collect::<Option<_>>()?;
        let (first, last) = (v.first()?, v.len().checked_sub(3)?);
        let mut r = EpochResult {
            epoch: (*first as usize).checked_sub(1)?,
            seconds: v[1],
            lr: [v[last], v[last + 1], v[last + 2]],
            ..Default::default()
        };
        match v.len() {
            15 => {
                r.train = [v[2], v[3], v[4]];
                (r.p, r.r, r.map50, r.map) = (v[5], v[6], v[7], v[8]);
                r.val = [v[9], v[10], v[11]];
            }
            9 => {
                r.train[0] = v[2];
                (r.top1, r.top5) = (v[3], v[4]);
                r.val[0] = v[5];
            }
            _ => return None,
        }
        Some(r)
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

/// Writes every row in `task`'s columns (atomically: a run killed mid-write keeps the previous file).
pub fn write_csv(path: &Path, rows: &[EpochResult], task: Task) -> Result<()> {
    let mut csv = format!("{}\n", header(task));
    for row in rows {
        csv += &row.csv(task);
        csv.push('\n');
    }
    model::weights::write_atomic(path, csv.as_bytes())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A row written in either task's columns reads back as the same values.
    #[test]
    fn rows_round_trip_in_both_layouts() {
        let r = EpochResult {
            epoch: 4,
            train: [1.25, 0.5, 0.75],
            p: 0.5,
            r: 0.25,
            map50: 0.125,
            map: 0.0625,
            top1: 0.75,
            top5: 1.0,
            val: [2.5, 1.5, 0.5],
            lr: [0.001, 0.002, 0.003],
            seconds: 12.5,
        };
        for task in [Task::Detect, Task::Classify] {
            let line = r.csv(task);
            assert_eq!(
                line.split(',').count(),
                header(task).split(',').count(),
                "{line}"
            );
            let back = EpochResult::parse(&line).unwrap();
            assert_eq!(back.values(task), r.values(task), "{task:?}: {line}");
        }
        assert!(EpochResult::parse("1,2,3").is_none());
    }
}
