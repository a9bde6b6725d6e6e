"""Fixture for `val` against Ultralytics' standalone `yolo val` on non-square images.

    python scripts/train_ultralytics.py --epochs 40 --imgsz 320 --batch 8 --out /var/tmp/ul
    /var/tmp/pyenv/bin/python scripts/make_rect_val_fixture.py /var/tmp/ul/trees/weights/best.pt \
        crates/train/tests/fixtures/rect_val

Crops the 14 datasets/trees val tiles to 14 different aspect ratios (h/w 0.4 ... 2.5, all distinct so numpy's
unstable argsort cannot reorder ties across batches), keeps each box clipped to its crop when at least 40% of
it is left (so both tools read the same labels), and writes images/val, labels/val and data.yaml. The weights,
a yolov8-mobileone n trained on datasets/trees by the package, are written as weights.safetensors
(scripts/pt_to_safetensors.py --half: the checkpoint's float16 values); the real package then validates exactly
those values (model built from the YAML in the file, MobileOneBlock registered) with `YOLO.val`: imgsz 320 and
640, batch 4, rectangular batches (its default) and `rect=False`, and writes expected.json with mAP50,
mAP50-95, P and R.
"""

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np
import torch
import yaml
from safetensors import safe_open

sys.path.insert(0, str(Path(__file__).parent))
import mobileone  # noqa: E402

mobileone.register()
import ultralytics  # noqa: E402
from ultralytics import YOLO  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
# (w, h) of each crop of a 400x400 tile: h/w 0.4, 0.5, 0.56, 0.64, 0.72, 0.8, 0.88, 1.0, 1.14, 1.25, 1.43, 1.67,
# 2.0, 2.5.
SIZES = [(400, 160), (400, 200), (400, 224), (400, 256), (400, 288), (400, 320), (400, 352), (400, 400),
         (350, 400), (320, 400), (280, 400), (240, 400), (200, 400), (160, 400)]


def crop_dataset(out):
    src = ROOT / "datasets/trees"
    names = sorted(p.name for p in (src / "images/val").glob("*.jpg"))
    assert len(names) == len(SIZES), names
    (out / "images/val").mkdir(parents=True, exist_ok=True)
    (out / "labels/val").mkdir(parents=True, exist_ok=True)
    for i, (name, (w, h)) in enumerate(zip(names, SIZES)):
        img = cv2.imread(str(src / "images/val" / name))
        H, W = img.shape[:2]
        # A different corner per image, so crops keep different crowns.
        x0 = [0, W - w][i % 2]
        y0 = [0, H - h][(i // 2) % 2]
        cv2.imwrite(str(out / "images/val" / name), img[y0:y0 + h, x0:x0 + w], [cv2.IMWRITE_JPEG_QUALITY, 92])
        rows = []
        for line in (src / "labels/val" / name).with_suffix(".txt").read_text().split("\n"):
            if not line.strip():
                continue
            c, cx, cy, bw, bh = line.split()
            cx, cy, bw, bh = float(cx) * W, float(cy) * H, float(bw) * W, float(bh) * H
            a = np.array([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2])
            b = np.clip(a - [x0, y0, x0, y0], 0, [w, h, w, h])
            if (b[2] - b[0]) * (b[3] - b[1]) < 0.4 * bw * bh or b[2] - b[0] < 2 or b[3] - b[1] < 2:
                continue
            rows.append(f"{c} {(b[0] + b[2]) / 2 / w:.6f} {(b[1] + b[3]) / 2 / h:.6f} "
                        f"{(b[2] - b[0]) / w:.6f} {(b[3] - b[1]) / h:.6f}")
        (out / "labels/val" / name).with_suffix(".txt").write_text("\n".join(rows) + "\n")
    (out / "data.yaml").write_text(
        "# datasets/trees val tiles cropped to 14 aspect ratios (scripts/make_rect_val_fixture.py).\n"
        "train: images/val\nval: images/val\nnames:\n  0: tree\n"
    )


def load_model(weights):
    with safe_open(str(weights), "pt") as f:
        meta = f.metadata()
        sd = {k: f.get_tensor(k).float() for k in f.keys()}
    d = yaml.safe_load(meta["yaml"])
    d["scale"] = meta.get("scale") or next(iter(d["scales"]))
    # Ultralytics takes the scale from the file name (guess_model_scale), not from the dict.
    tmp = Path(tempfile.mkdtemp()) / f"yolov8{d['scale']}-mobileone.yaml"
    tmp.write_text(yaml.safe_dump(d))
    model = YOLO(str(tmp))
    missing, unexpected = model.model.load_state_dict(sd, strict=False)
    assert not missing and not unexpected, (missing, unexpected)
    return model


def main():
    pt, out = Path(sys.argv[1]), Path(sys.argv[2])
    crop_dataset(out)
    weights = out / "weights.safetensors"
    subprocess.run([sys.executable, str(ROOT / "scripts/pt_to_safetensors.py"), "--half", str(pt), str(weights)],
                   check=True)
    model = load_model(weights)
    runs = []
    for imgsz in (320, 640):
        for rect in (True, False):
            m = model.val(data=str(out / "data.yaml"), imgsz=imgsz, batch=4, rect=rect, conf=0.001, iou=0.7,
                          plots=False, verbose=False, device="cpu", workers=0)
            r = {"imgsz": imgsz, "batch": 4, "rect": rect, "map50": float(m.box.map50), "map": float(m.box.map),
                 "precision": float(m.box.mp), "recall": float(m.box.mr)}
            print(r)
            runs.append(r)
    meta = {"weights": pt.name, "ultralytics": ultralytics.__version__,
            "torch": torch.__version__, "runs": runs}
    (out / "expected.json").write_text(json.dumps(meta, indent=1) + "\n")


if __name__ == "__main__":
    main()
