"""Train a small MobileOne classifier with the real Ultralytics package on datasets/trees_cls, then record what
its validator says about it, for the parity test of `yolo val` on a classifier (crates/train/tests/classify_val.rs).

    python scripts/make_classify_val_fixture.py --out crates/train/tests/fixtures/classify_val

Writes weights.safetensors (the trained model's state_dict, unfused), model.yaml (the YAML built, one scale
't'), meta.json (imgsz, names, top1/top5 of ClassificationValidator) and predictions.json (per validation
image, in the dataset's order: the class, the validator's top-5 class ids and the probabilities of all classes).
"""

import argparse
import copy
import json
import shutil
import sys
import tempfile
from pathlib import Path

import torch
import yaml
from safetensors.torch import save_file

sys.path.insert(0, str(Path(__file__).parent))
import mobileone  # noqa: E402

mobileone.register()
from ultralytics import YOLO  # noqa: E402
from ultralytics.data.augment import classify_transforms  # noqa: E402
from ultralytics.data.dataset import ClassificationDataset  # noqa: E402
from ultralytics.cfg import get_cfg  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", default="configs/yolov8-mobileone-cls.yaml")
    ap.add_argument("--width", type=float, default=0.25)
    ap.add_argument("--data", default="datasets/trees_cls")
    ap.add_argument("--imgsz", type=int, default=64)
    ap.add_argument("--epochs", type=int, default=15)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    d = yaml.safe_load((ROOT / a.config).read_text())
    d["scales"] = {"t": [1.0, a.width, 1024]}
    d["nc"] = 2
    (out / "model.yaml").write_text(yaml.safe_dump(d, sort_keys=False))
    tmp = Path(tempfile.mkdtemp())
    model = YOLO(str(out / "model.yaml"), task="classify")
    model.train(
        data=str(ROOT / a.data), epochs=a.epochs, imgsz=a.imgsz, batch=32, workers=0, device="cpu", seed=0,
        deterministic=True, project=str(tmp), name="run", plots=False, amp=False, verbose=False,
    )
    best = YOLO(str(tmp / "run" / "weights" / "best.pt"))
    net = best.model.float().eval()
    sd = {k: v.detach().float().contiguous() for k, v in net.state_dict().items() if "num_batches_tracked" not in k}
    save_file(sd, out / "weights.safetensors")
    metrics = best.val(data=str(ROOT / a.data), imgsz=a.imgsz, batch=16, workers=0, device="cpu", plots=False)

    # The validator's own dataset and transform, image by image.
    args = get_cfg(overrides={"imgsz": a.imgsz, "task": "classify"})
    ds = ClassificationDataset(str(ROOT / a.data / "val"), args, augment=False, prefix="val", names=net.names)
    preds = []
    with torch.no_grad():
        for i in range(len(ds)):
            s = ds[i]
            p = net(s["img"][None])
            p = p[0] if isinstance(p, (list, tuple)) else p
            top = p.argsort(1, descending=True)[0, :5].tolist()
            f = Path(ds.samples[i][0]).relative_to(ROOT / a.data)
            preds.append({"file": str(f), "cls": int(s["cls"]), "top5": top, "probs": p[0].tolist()})
    import ultralytics

    meta = {
        "imgsz": a.imgsz,
        "scale": "t",
        "nc": 2,
        "names": [net.names[i] for i in range(len(net.names))],
        "data": a.data,
        "top1": metrics.top1,
        "top5": metrics.top5,
        "epochs": a.epochs,
        "generator": "scripts/make_classify_val_fixture.py",
        "ultralytics": ultralytics.__version__,
        "torch": torch.__version__,
    }
    (out / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    (out / "predictions.json").write_text(json.dumps(preds) + "\n")
    print(json.dumps(meta))
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
