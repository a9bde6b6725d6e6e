"""Train the reference model with Ultralytics itself on datasets/trees (CPU), for the comparisons in the README:
our val/predict against theirs on the same weights, and our training against theirs.

    python scripts/train_ultralytics.py --epochs 40 --imgsz 320 --batch 8 --out runs/ultralytics
    python scripts/pt_to_safetensors.py runs/ultralytics/trees/weights/best.pt runs/ultralytics/best.safetensors

nbs is set to the batch size: with the default nominal batch of 64 the 42 training tiles give about 20
optimizer steps in a whole 30-epoch run and mAP stays at 0.
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import mobileone  # noqa: E402

mobileone.register()
from ultralytics import YOLO  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", default="configs/yolov8n-mobileone.yaml")
    ap.add_argument("--data", default="datasets/trees/data.yaml")
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--imgsz", type=int, default=320)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--out", default="runs/ultralytics")
    ap.add_argument("--name", default="trees")
    a = ap.parse_args()
    model = YOLO(str(ROOT / a.config))
    model.train(
        data=str(ROOT / a.data),
        epochs=a.epochs,
        imgsz=a.imgsz,
        batch=a.batch,
        nbs=a.batch,
        workers=a.workers,
        device="cpu",
        seed=0,
        deterministic=True,
        project=str(ROOT / a.out),
        name=a.name,
        exist_ok=True,
        plots=True,
        amp=False,
    )
    m = model.val(data=str(ROOT / a.data), imgsz=a.imgsz, batch=16, conf=0.001, iou=0.7, rect=False, plots=False)
    print(f"VAL mAP50 {m.box.map50:.4f} mAP50-95 {m.box.map:.4f} P {m.box.mp:.4f} R {m.box.mr:.4f}")


if __name__ == "__main__":
    main()
