"""MOT metrics (IDF1, MOTA, id switches) and speed of our `track` and Ultralytics' on the 72-frame pan of
make_track_fixture.py, against the ground truth the pan gives: the tile's labelled crowns shifted by the window
(ids = label rows), kept while their centre is in the frame and clipped to it.

Both trackers run with the fixture's weights and the same YAMLs (the low thresholds of the fixture: the defaults
track nothing with this weak detector), ours through the binary. Only tracked boxes (rows with an id) count.
Speed, side by side in this run (alternating, median of 5): frames/s of Ultralytics' `track` (the model loaded
first), of ours, and of our `predict` on the same clip (what tracking adds). Needs `pip install motmetrics`.
Prints markdown tables (docs/tracking.md).

    python scripts/mot_metrics.py target/release/deploy
"""

import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import motmetrics as mm
import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
import make_track_fixture as mtf  # noqa: E402

ROOT = mtf.ROOT


def ground_truth():
    scene = cv2.imread(str(mtf.SCENE))
    sh, sw = scene.shape[:2]
    rows = np.loadtxt(ROOT / "datasets/trees/labels/val" / (mtf.SCENE.stem + ".txt"), ndmin=2)
    boxes = np.stack(
        [(rows[:, 1] - rows[:, 3] / 2) * sw, (rows[:, 2] - rows[:, 4] / 2) * sh,
         (rows[:, 1] + rows[:, 3] / 2) * sw, (rows[:, 2] + rows[:, 4] / 2) * sh], 1)
    frames = []
    for x, y in mtf.window_path():
        b = boxes - [x, y, x, y]
        cx, cy = (b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2
        keep = (cx >= 0) & (cx < mtf.W) & (cy >= 0) & (cy < mtf.H)
        b = np.clip(b, 0, [mtf.W, mtf.H, mtf.W, mtf.H])
        frames.append((np.flatnonzero(keep), b[keep]))
    return frames


def tracks_from_labels(labels: Path, stem: str):
    """Per frame (1-based file names `stem_N.txt`): ids and xyxy boxes of the rows with an id."""
    out = []
    for f in range(1, mtf.FRAMES + 1):
        p = labels / f"{stem}_{f}.txt"
        ids, boxes = [], []
        if p.exists():
            for line in p.read_text().split("\n"):
                v = line.split()
                if len(v) == 7:
                    cx, cy, w, h = (float(t) for t in v[1:5])
                    ids.append(int(v[6]))
                    boxes.append([(cx - w / 2) * mtf.W, (cy - h / 2) * mtf.H, (cx + w / 2) * mtf.W,
                                  (cy + h / 2) * mtf.H])
        out.append((ids, np.array(boxes).reshape(-1, 4)))
    return out


def iou_distance(a, b):
    """1 - IoU between xyxy boxes, NaN (no match) below IoU 0.5 (motmetrics' own helper needs NumPy 1)."""
    d = np.full((len(a), len(b)), np.nan)
    for i, p in enumerate(a):
        for j, q in enumerate(b):
            iw = max(0.0, min(p[2], q[2]) - max(p[0], q[0]))
            ih = max(0.0, min(p[3], q[3]) - max(p[1], q[1]))
            inter = iw * ih
            iou = inter / ((p[2] - p[0]) * (p[3] - p[1]) + (q[2] - q[0]) * (q[3] - q[1]) - inter)
            if iou >= 0.5:
                d[i, j] = 1.0 - iou
    return d


def metrics(gt, tracks, name):
    acc = mm.MOTAccumulator(auto_id=True)
    for (gids, gb), (tids, tb) in zip(gt, tracks):
        acc.update(list(gids), list(tids), iou_distance(gb, tb))
    return mm.metrics.create().compute(acc, metrics=["idf1", "mota", "num_switches", "num_matches",
                                                     "num_false_positives", "num_misses"], name=name)


def ours_fps(cmd):
    """Frames/s from our closing line."""
    out = subprocess.run(cmd, check=True, capture_output=True, text=True)
    return float(re.search(r"([0-9.]+) frames/s", out.stdout + out.stderr).group(1))


def speed(ours_bin: Path, weights: str, clip: Path, yaml_path: Path, t: Path):
    from ultralytics import YOLO

    t.mkdir(parents=True, exist_ok=True)
    common = ["--weights", str(ROOT / "crates/deploy/tests/fixtures/trained_mobileone/weights.safetensors"),
              "--source", str(clip), "--imgsz", "192", "--conf", "0.005", "--save", "false", "--device", "cpu",
              "--out"]
    model = YOLO(weights)
    theirs, ours_t, ours_p = [], [], []
    for i in range(5):
        model.predictor = None  # a fresh tracker each run, as a new call from the command line
        t0 = time.perf_counter()
        for _ in model.track(source=str(clip), imgsz=192, conf=0.005, tracker=str(yaml_path), stream=True,
                             save=False, verbose=False, device="cpu"):
            pass
        theirs.append(mtf.FRAMES / (time.perf_counter() - t0))
        ours_t.append(ours_fps([str(ours_bin), "track", *common, str(t / f"st{i}"), "--tracker", str(yaml_path)]))
        ours_p.append(ours_fps([str(ours_bin), "predict", *common, str(t / f"sp{i}"), "--batch", "1"]))
    return statistics.median(theirs), statistics.median(ours_t), statistics.median(ours_p)


def main():
    ours_bin = Path(sys.argv[1]).resolve()
    mtf.sys.path.insert(0, str(ROOT / "scripts"))
    import mobileone

    mobileone.register()
    gt = ground_truth()
    rows = []
    with tempfile.TemporaryDirectory() as t:
        t = Path(t)
        clip = t / "pan.avi"
        mtf.write_clip(clip)
        weights = mtf.checkpoint_from_fixture(t / "fixture.pt")
        for run in ["bytetrack_low", "botsort_gmc_none_low", "botsort_low"]:
            yaml_path = ROOT / f"crates/deploy/tests/fixtures/video/track_{run}/tracker.yaml"
            theirs = mtf.labels(weights, clip, str(yaml_path), 0.005, t / f"theirs_{run}")
            assert theirs, "the package tracked nothing"
            subprocess.run([str(ours_bin), "track", "--weights",
                            str(ROOT / "crates/deploy/tests/fixtures/trained_mobileone/weights.safetensors"),
                            "--source", str(clip), "--tracker", str(yaml_path), "--imgsz", "192", "--conf", "0.005",
                            "--save-txt", "--save-conf", "--save", "false", "--device", "cpu", "--out", str(t / f"ours_{run}")],
                           check=True, capture_output=True)
            for who, labels in [("Ultralytics", t / f"theirs_{run}/labels"), ("ours", t / f"ours_{run}/labels")]:
                m = metrics(gt, tracks_from_labels(labels, "pan"), who).iloc[0]
                rows.append((run, who, m))
        fps = {run: speed(ours_bin, weights, clip, ROOT / f"crates/deploy/tests/fixtures/video/track_{run}/tracker.yaml",
                          t / run)
               for run in ["bytetrack_low", "botsort_low"]}
    print("| tracker | who | IDF1 | MOTA | id switches | matches | false positives | misses |")
    print("|---|---|---|---|---|---|---|---|")
    for run, who, m in rows:
        print(f"| {run} | {who} | {m.idf1:.3f} | {m.mota:.3f} | {int(m.num_switches)} | {int(m.num_matches)} | "
              f"{int(m.num_false_positives)} | {int(m.num_misses)} |")
    for run, (theirs, ours_t, ours_p) in fps.items():
        print()
        print(f"| {run}, 72 frames at 192 px, CPU, median of 5 alternating runs | frames/s | ours / theirs |")
        print("|---|---|---|")
        print(f"| Ultralytics `track` (model loaded first) | {theirs:.1f} | |")
        print(f"| ours `track` | {ours_t:.1f} | {ours_t / theirs:.2f}x |")
        print(f"| ours `predict`, no tracker | {ours_p:.1f} | tracking costs {100 * (ours_p / ours_t - 1):.1f}% |")


if __name__ == "__main__":
    main()
