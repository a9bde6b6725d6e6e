"""Classifier training quality side by side: Ultralytics and our `train` binary on the same data, model, recipe
and seeds, one after the other on this machine (CPU). Prints each run's top-1 at its best epoch (fitness =
(top-1 + top-5) / 2, the epoch whose weights become best) and at its last, and the means over the seeds.

    python scripts/compare_cls_training.py --seeds 0 1 2 --epochs 15 --out runs/cls_compare
    python scripts/compare_cls_training.py --config configs/ultralytics/yolov8-cls.yaml --depth 0.33 --width 0.25 \
        --seeds 0 1 2 3 4 --epochs 10      # yolov8n-cls

Recipe of scripts/make_classify_val_fixture.py: configs/yolov8-mobileone-cls.yaml at width 0.25 ('t'),
datasets/trees_cls, imgsz 64, batch 32, nominal batch 64, optimizer auto (AdamW at lr 0.001667), 8.4's
classify augmentations. The seeds differ between the two (torch's generator and ours), so only the spread over
several seeds compares.
"""

import argparse
import csv
import os
import subprocess
import sys
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).parent))
import mobileone  # noqa: E402

mobileone.register()
from ultralytics import YOLO  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def read_results(path):
    rows = list(csv.DictReader(open(path)))
    top1 = [float(r["metrics/accuracy_top1"]) for r in rows]
    top5 = [float(r["metrics/accuracy_top5"]) for r in rows]
    best = max(range(len(rows)), key=lambda i: ((top1[i] + top5[i]) / 2, -i))
    return top1[best], top1[-1], len(rows)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", default="configs/yolov8-mobileone-cls.yaml")
    ap.add_argument("--depth", type=float, default=1.0)
    ap.add_argument("--width", type=float, default=0.25)
    ap.add_argument("--data", default="datasets/trees_cls")
    ap.add_argument("--imgsz", type=int, default=64)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--epochs", type=int, default=15)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--out", default="runs/cls_compare")
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                    help="recipe keys for both (Ultralytics' names), e.g. erasing=0 auto_augment=none hsv_h=0")
    ap.add_argument("--bin", default=os.path.join(os.environ.get("CARGO_TARGET_DIR", "/var/tmp/yolo-target"), "release/train"))
    a = ap.parse_args()
    out = (ROOT / a.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    d = yaml.safe_load((ROOT / a.config).read_text())
    d["scales"] = {"t": [a.depth, a.width, 1024]}
    d["nc"] = 2
    model_yaml = out / "model.yaml"
    model_yaml.write_text(yaml.safe_dump(d, sort_keys=False))
    keys = {}
    for kv in a.set:
        k, v = kv.split("=", 1)
        keys[k] = yaml.safe_load(v)
    hyp = out / "hyp.yaml"
    hyp.write_text(yaml.safe_dump(keys))
    # Ultralytics spells "no policy" as an empty auto_augment.
    ul_keys = {k: ("" if k == "auto_augment" and v == "none" else v) for k, v in keys.items()}
    table = []
    for seed in a.seeds:
        t0 = time.time()
        YOLO(str(model_yaml), task="classify").train(
            data=str(ROOT / a.data), epochs=a.epochs, imgsz=a.imgsz, batch=a.batch, workers=2, device="cpu",
            seed=seed, deterministic=True, project=str(out), name=f"ultralytics{seed}", exist_ok=True, plots=False,
            amp=False, verbose=False, **ul_keys,
        )
        t1 = time.time()
        ours = out / f"ours{seed}"
        subprocess.run(["rm", "-rf", str(ours)], check=True)
        subprocess.run(
            [a.bin, "--config", str(model_yaml), "--scale", "t", "--data", str(ROOT / a.data), "--epochs", str(a.epochs),
             "--imgsz", str(a.imgsz), "--batch", str(a.batch), "--nbs", "64", "--seed", str(seed), "--workers", "2",
             "--device", "cpu", "--dump", "0", "--hyp", str(hyp), "--out", str(ours)],
            check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        t2 = time.time()
        u = read_results(out / f"ultralytics{seed}" / "results.csv")
        o = read_results(ours / "results.csv")
        table.append((seed, u, o, t1 - t0, t2 - t1))
        print(f"seed {seed}: Ultralytics top1 best {u[0]:.4f} last {u[1]:.4f} ({t1 - t0:.0f} s) | "
              f"ours top1 best {o[0]:.4f} last {o[1]:.4f} ({t2 - t1:.0f} s)", flush=True)
    n = len(table)
    mu = [sum(r[1][k] for r in table) / n for k in (0, 1)]
    mo = [sum(r[2][k] for r in table) / n for k in (0, 1)]
    def sd(xs):
        m = sum(xs) / len(xs)
        return (sum((x - m) ** 2 for x in xs) / max(len(xs) - 1, 1)) ** 0.5

    su = [sd([r[1][k] for r in table]) for k in (0, 1)]
    so = [sd([r[2][k] for r in table]) for k in (0, 1)]
    print(f"mean over {n} seeds (sd): Ultralytics best {mu[0]:.4f} ({su[0]:.4f}) last {mu[1]:.4f} ({su[1]:.4f}) | "
          f"ours best {mo[0]:.4f} ({so[0]:.4f}) last {mo[1]:.4f} ({so[1]:.4f}) | "
          f"difference best {mo[0] - mu[0]:+.4f} last {mo[1] - mu[1]:+.4f}")


if __name__ == "__main__":
    main()
