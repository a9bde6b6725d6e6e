"""Compare our `deploy predict --save-json` output with Ultralytics' predict on the same weights and images.

    python scripts/compare_predict.py --pt runs/ultralytics/trees/weights/best.pt \
        --ours runs/predict/predict/predictions.json --source datasets/trees/images/val --imgsz 320 --conf 0.25

A detection matches when an unmatched one of the other side has the same class, IoU >= 0.9 and a confidence
within 0.01. Match rate = matched / max(ours, theirs).
"""

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import mobileone  # noqa: E402

mobileone.register()
from ultralytics import YOLO  # noqa: E402


def iou(a, b):
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter + 1e-12)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--pt", required=True)
    ap.add_argument("--ours", required=True)
    ap.add_argument("--source", required=True)
    ap.add_argument("--imgsz", type=int, default=640)
    ap.add_argument("--conf", type=float, default=0.25)
    ap.add_argument("--iou", type=float, default=0.7)
    a = ap.parse_args()
    ours = defaultdict(list)
    for d in json.load(open(a.ours)):
        x, y, w, h = d["bbox"]
        ours[d["file_name"]].append(([x, y, x + w, y + h], d["score"], d["category_id"]))
    theirs = defaultdict(list)
    for r in YOLO(a.pt).predict(a.source, imgsz=a.imgsz, conf=a.conf, iou=a.iou, verbose=False, stream=True):
        name = Path(r.path).name
        for b, c, k in zip(r.boxes.xyxy.tolist(), r.boxes.conf.tolist(), r.boxes.cls.tolist()):
            theirs[name].append((b, c, int(k)))
    matched = n_ours = n_theirs = 0
    worst_conf = 0.0
    for name in set(ours) | set(theirs):
        o, t = ours[name], theirs[name]
        n_ours += len(o)
        n_theirs += len(t)
        used = [False] * len(o)
        for tb, tc, tk in t:
            best, bi = 0.0, -1
            for i, (ob, oc, ok) in enumerate(o):
                if not used[i] and ok == tk and abs(oc - tc) <= 0.01:
                    v = iou(tb, ob)
                    if v > best:
                        best, bi = v, i
            if bi >= 0 and best >= 0.9:
                used[bi] = True
                matched += 1
                worst_conf = max(worst_conf, abs(o[bi][1] - tc))
    rate = matched / max(n_ours, n_theirs, 1)
    print(f"ours {n_ours} detections, Ultralytics {n_theirs}, matched {matched}: match rate {rate:.4f} "
          f"(largest confidence difference among matches {worst_conf:.4f})")


if __name__ == "__main__":
    main()
