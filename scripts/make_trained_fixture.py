"""Fixture from a model trained by the real Ultralytics package (with the seed's MobileOneBlock registered):
its weights and what Ultralytics' own predict finds with them, so our `predict` can be compared on real
trained weights, through the binary, in `cargo test`.

    python scripts/train_ultralytics.py --config /var/tmp/yolov8t-mobileone-k4.yaml --epochs 30 --out /var/tmp/ul --name mo
    python scripts/make_trained_fixture.py /var/tmp/ul/mo/weights/best.pt crates/deploy/tests/fixtures/trained_mobileone

Writes weights.safetensors (scripts/pt_to_safetensors.py --half: the checkpoint's own float16 values, with the
model YAML in the metadata), and predictions.json: Ultralytics' detections (xyxy in original pixels, conf,
class) on the datasets/trees val tiles at each imgsz and conf listed there.
"""

import json
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import mobileone  # noqa: E402

mobileone.register()
import ultralytics  # noqa: E402
from ultralytics import YOLO  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def main():
    pt, out = Path(sys.argv[1]), Path(sys.argv[2])
    out.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [sys.executable, str(ROOT / "scripts/pt_to_safetensors.py"), "--half", str(pt), str(out / "weights.safetensors")],
        check=True,
    )
    model = YOLO(str(pt))
    source = ROOT / "datasets/trees/images/val"
    runs = []
    for imgsz in (320, 640):
        for conf in (0.25, 0.05, 0.01):
            dets = []
            for r in model.predict(str(source), imgsz=imgsz, conf=conf, iou=0.7, verbose=False, stream=True):
                for b, c, k in zip(r.boxes.xyxy.tolist(), r.boxes.conf.tolist(), r.boxes.cls.tolist()):
                    dets.append({"file_name": Path(r.path).name, "xyxy": b, "conf": c, "cls": int(k)})
            runs.append({"imgsz": imgsz, "conf": conf, "detections": dets})
            print(f"imgsz {imgsz} conf {conf}: {len(dets)} detections")
    meta = {"source": pt.name, "ultralytics": ultralytics.__version__, "runs": runs}
    (out / "predictions.json").write_text(json.dumps(meta) + "\n")


if __name__ == "__main__":
    main()
