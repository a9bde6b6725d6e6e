"""Score fixed predictions and ground truth with Ultralytics' own metric code (and pycocotools for a second
opinion), and run Ultralytics' NMS on fixed raw outputs, for crates/train/tests/metrics_parity.rs.

    python scripts/make_metrics_fixture.py crates/train/tests/fixtures/metrics.json
"""

import json
import sys
import types

import numpy as np
import torch
from ultralytics.engine.validator import BaseValidator
from ultralytics.utils.metrics import ap_per_class, box_iou
from ultralytics.utils.nms import non_max_suppression

rng = np.random.default_rng(0)
NC = 3
W, H = 640, 480


def rand_box():
    w, h = rng.uniform(12, 160), rng.uniform(12, 160)
    x, y = rng.uniform(0, W - w), rng.uniform(0, H - h)
    return [x, y, x + w, y + h]


images = []
for k in range(14):
    n_gt = 0 if k == 3 else int(rng.integers(1, 9))
    gt = [rand_box() for _ in range(n_gt)]
    gt_cls = [int(rng.choice(NC, p=[0.55, 0.35, 0.10])) for _ in range(n_gt)]
    preds = []
    for b, c in zip(gt, gt_cls):
        if rng.random() < 0.85:
            j = rng.normal(0, 0.08, 4) * np.array([b[2] - b[0], b[3] - b[1]] * 2)
            pc = c if rng.random() < 0.9 else int(rng.integers(0, NC))
            preds.append([*(np.array(b) + j).tolist(), float(rng.uniform(0.2, 1.0)), pc])
        if rng.random() < 0.2:  # a duplicate detection of the same object
            preds.append([*(np.array(b) + rng.normal(0, 3, 4)).tolist(), float(rng.uniform(0.05, 0.6)), c])
    for _ in range(int(rng.integers(0, 5))):
        preds.append([*rand_box(), float(rng.uniform(0.001, 0.7)), int(rng.integers(0, NC))])
    preds.sort(key=lambda p: -p[4])
    images.append({"gt": gt, "gt_cls": gt_cls, "pred": preds})

# Ultralytics: greedy matching per image, then ap_per_class over everything.
v = types.SimpleNamespace(iouv=torch.linspace(0.5, 0.95, 10))
tps, confs, pcls, tcls = [], [], [], []
for im in images:
    p = torch.tensor([q[:4] for q in im["pred"]], dtype=torch.float32).reshape(-1, 4)
    g = torch.tensor(im["gt"], dtype=torch.float32).reshape(-1, 4)
    pc = torch.tensor([q[5] for q in im["pred"]])
    gc = torch.tensor(im["gt_cls"])
    if len(g) and len(p):
        correct = BaseValidator.match_predictions(v, pc, gc, box_iou(g, p)).numpy()
    else:
        correct = np.zeros((len(p), 10), dtype=bool)
    im["correct"] = correct.astype(int).tolist()
    tps.append(correct)
    confs += [q[4] for q in im["pred"]]
    pcls += [q[5] for q in im["pred"]]
    tcls += im["gt_cls"]
tp, fp, p, r, f1, ap, uc, *_ = ap_per_class(np.concatenate(tps), np.array(confs), np.array(pcls), np.array(tcls))
ultra = {
    "classes": uc.tolist(),
    "p": p.tolist(),
    "r": r.tolist(),
    "ap50": ap[:, 0].tolist(),
    "ap": ap.mean(1).tolist(),
    "ap_all": ap.tolist(),
    "mp": float(p.mean()),
    "mr": float(r.mean()),
    "map50": float(ap[:, 0].mean()),
    "map": float(ap.mean()),
}

# pycocotools (COCO's own definition: 101-point sum, per-area ranges pooled, max 100 detections).
from pycocotools.coco import COCO  # noqa: E402
from pycocotools.cocoeval import COCOeval  # noqa: E402

gt_json = {"images": [], "annotations": [], "categories": [{"id": c} for c in range(NC)]}
dets = []
aid = 1
for i, im in enumerate(images):
    gt_json["images"].append({"id": i, "width": W, "height": H})
    for b, c in zip(im["gt"], im["gt_cls"]):
        w, h = b[2] - b[0], b[3] - b[1]
        gt_json["annotations"].append({"id": aid, "image_id": i, "category_id": c, "bbox": [b[0], b[1], w, h], "area": w * h, "iscrowd": 0})
        aid += 1
    for q in im["pred"]:
        dets.append({"image_id": i, "category_id": q[5], "bbox": [q[0], q[1], q[2] - q[0], q[3] - q[1]], "score": q[4]})
coco = COCO()
coco.dataset = gt_json
coco.createIndex()
ev = COCOeval(coco, coco.loadRes(dets), "bbox")
ev.evaluate()
ev.accumulate()
ev.summarize()
cocostats = {"map": float(ev.stats[0]), "map50": float(ev.stats[1])}

# NMS on raw (B, 4 + nc, A) outputs: xywh boxes in clusters, sigmoid-like scores.
raw = np.zeros((2, 4 + NC, 120), dtype=np.float32)
for b in range(2):
    centers = rng.uniform(50, 600, (8, 2))
    for a in range(120):
        c = centers[a % 8] + rng.normal(0, 6, 2)
        raw[b, :2, a] = c
        raw[b, 2:4, a] = rng.uniform(30, 90, 2)
        raw[b, 4:, a] = rng.uniform(0, 1, NC) ** 3
nms_cases = []
for conf, iou, multi, agn, classes, max_det in [
    (0.001, 0.7, True, False, None, 300),
    (0.25, 0.7, False, False, None, 300),
    (0.25, 0.45, False, True, None, 300),
    (0.1, 0.5, True, False, [0, 2], 7),
]:
    out = non_max_suppression(torch.from_numpy(raw.copy()), conf, iou, classes=classes, agnostic=agn, multi_label=multi, max_det=max_det)
    nms_cases.append(
        {"conf": conf, "iou": iou, "multi_label": multi, "agnostic": agn, "classes": classes, "max_det": max_det,
         "output": [o.numpy().tolist() for o in out]}
    )

import ultralytics  # noqa: E402

fixture = {
    "generator": "scripts/make_metrics_fixture.py",
    "ultralytics": ultralytics.__version__,
    "nc": NC,
    "images": images,
    "ultralytics_metrics": ultra,
    "pycocotools": cocostats,
    "nms_input": raw.tolist(),
    "nms_cases": nms_cases,
}
with open(sys.argv[1], "w") as f:
    json.dump(fixture, f)
print(json.dumps({"ultralytics": {k: ultra[k] for k in ("mp", "mr", "map50", "map")}, "pycocotools": cocostats}))
