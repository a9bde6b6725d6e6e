"""Tiled vs whole-image prediction on the full NEON scenes that datasets/trees' val tiles were cut from.

    pip download --no-deps deepforest==2.1.0 -d /tmp/df
    python scripts/tiled_demo.py --wheel /tmp/df/deepforest-2.1.0-py3-none-any.whl --weights W.safetensors \
        [--deploy target/release/deploy] [--data target/release/data] [--imgsz 640] [--tile 400]

The three val scenes and their Pascal VOC annotations come out of the deepforest wheel and go through
`data convert --from voc` (every crown class becomes `tree`); `deploy predict` runs on each whole scene
(letterboxed to --imgsz) and with `--tile` (tiles the size the model was trained on, 20% overlap; merged by NMS, or NMM as SAHI's default);
mAP50 and mAP50-95 are computed by Ultralytics' own `match_predictions` and `ap_per_class`. Prints a markdown table.
"""

import argparse
import subprocess
import tempfile
import types
import xml.etree.ElementTree as ET
import zipfile
from pathlib import Path

import numpy as np
import torch

TRAIN_SCENE = "2019_YELL_2_528000_4978000_image_crop2"


def load_rows(p, w, h, with_conf):
    rows = []
    if p.exists():
        for line in p.read_text().splitlines():
            v = [float(x) for x in line.split()]
            if not v:
                continue
            cx, cy, bw, bh = v[1] * w, v[2] * h, v[3] * w, v[4] * h
            rows.append([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2] + ([v[5]] if with_conf else []))
    return np.array(rows, dtype=np.float64).reshape(-1, 5 if with_conf else 4)


def evaluate(images, labels, preds):
    from PIL import Image
    from ultralytics.engine.validator import BaseValidator
    from ultralytics.utils.metrics import ap_per_class, box_iou

    v = types.SimpleNamespace(iouv=torch.linspace(0.5, 0.95, 10))
    tp, conf, pcls, tcls = [], [], [], []
    for img in sorted(images.iterdir()):
        w, h = Image.open(img).size
        gt = load_rows(labels / (img.stem + ".txt"), w, h, False)
        pr = load_rows(preds / (img.stem + ".txt"), w, h, True)
        tcls.append(np.zeros(len(gt)))
        if len(pr) == 0:
            continue
        iou = box_iou(torch.tensor(gt[:, :4]), torch.tensor(pr[:, :4])) if len(gt) else torch.zeros(0, len(pr))
        m = BaseValidator.match_predictions(v, torch.zeros(len(pr)), torch.zeros(len(gt)), iou)
        tp.append(m if isinstance(m, np.ndarray) else m.cpu().numpy())
        conf.append(pr[:, 4])
        pcls.append(np.zeros(len(pr)))
    r = ap_per_class(np.concatenate(tp), np.concatenate(conf), np.concatenate(pcls), np.concatenate(tcls))
    ap = r[5]  # (nc, 10)
    return float(ap[:, 0].mean()), float(ap.mean())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--wheel", required=True)
    ap.add_argument("--weights", required=True)
    ap.add_argument("--deploy", default="/var/tmp/yolo-target/release/deploy")
    ap.add_argument("--data", default="/var/tmp/yolo-target/release/data")
    ap.add_argument("--imgsz", type=int, default=640)
    ap.add_argument("--tile", type=int, default=400)
    ap.add_argument("--conf", type=float, default=0.001)
    a = ap.parse_args()
    zf = zipfile.ZipFile(a.wheel)
    with tempfile.TemporaryDirectory() as t:
        t = Path(t)
        voc = t / "voc"
        (voc / "Annotations").mkdir(parents=True)
        (voc / "JPEGImages").mkdir()
        for x in sorted(n for n in zf.namelist() if n.startswith("deepforest/data/") and n.endswith(".xml")):
            stem = Path(x).stem
            if stem == TRAIN_SCENE:
                continue
            root = ET.fromstring(zf.read(x))
            fn = root.find("filename")
            if fn is None:
                fn = ET.SubElement(root, "filename")
            fn.text = f"{stem}.png"  # the wheel's PNG (some XMLs name a .tif)
            ET.ElementTree(root).write(voc / "Annotations" / f"{stem}.xml")
            (voc / "JPEGImages" / f"{stem}.png").write_bytes(zf.read(f"deepforest/data/{stem}.png"))
        ds = t / "yolo"
        print(subprocess.run([a.data, "convert", "--from", "voc", str(voc), "--out", str(ds)], check=True,
                             capture_output=True, text=True).stdout.strip())
        images, labels = ds / "images/train", ds / "labels/train"
        rows = []
        tile = ["--tile", str(a.tile), "--overlap", "0.2"]
        for name, extra in [(f"whole image at {a.imgsz}", []),
                            (f"`--tile {a.tile} --overlap 0.2` (NMS, IOS 0.5)", tile),
                            (f"same, `--tile-match 0.8`", tile + ["--tile-match", "0.8"]),
                            (f"same, `--tile-merge nmm` (SAHI's default)", tile + ["--tile-merge", "nmm"]),
                            (f"same, `--tile-full`", tile + ["--tile-full"])]:
            out = t / f"pred{len(rows)}"
            r = subprocess.run([a.deploy, "predict", "--weights", a.weights, "--source", str(images), "--imgsz", str(a.imgsz),
                                "--conf", str(a.conf), "--save-txt", "--save-conf", "--save", "false", "--device", "cpu",
                                "--out", str(out), *extra], check=True, capture_output=True, text=True)
            m50, m = evaluate(images, labels, out / "labels")
            secs = r.stdout.strip().splitlines()[-1].split(" in ")[1].split(" s")[0]
            rows.append((name, m50, m, secs))
        print("| prediction on the 3 val scenes | mAP50 | mAP50-95 | seconds |\n|---|---:|---:|---:|")
        for name, m50, m, s in rows:
            print(f"| {name} | {m50:.3f} | {m:.3f} | {s} |")


if __name__ == "__main__":
    main()
