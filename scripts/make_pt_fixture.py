"""A tiny real Ultralytics checkpoint for `--weights best.pt`: the package trains the fixture yolov8-mobileone
(crates/deploy/tests/fixtures/mobileone_nc3_96x128/model.yaml, scale t) for one epoch on datasets/trees at 64 px and
writes best.pt (a zip holding the pickled model object: EMA in float16, the YAML as its `yaml` dict, the optimizer
stripped); scripts/pt_to_safetensors.py --half converts it, as the reference our reader must equal.

    python scripts/make_pt_fixture.py   # writes crates/model/tests/fixtures/pt/{tiny.pt, tiny.safetensors}
"""

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "crates/model/tests/fixtures/pt"
sys.path.insert(0, str(ROOT / "scripts"))
import mobileone  # noqa: E402

mobileone.register()


def main():
    from ultralytics import YOLO

    yaml = ROOT / "crates/deploy/tests/fixtures/mobileone_nc3_96x128/model.yaml"
    with tempfile.TemporaryDirectory() as t:
        # No scale letter in the name: the package takes the YAML's first scale (t) and keeps no `scale` key.
        shutil.copy(yaml, Path(t) / "tiny.yaml")
        model = YOLO(str(Path(t) / "tiny.yaml"))
        model.train(data=str(ROOT / "datasets/trees/data.yaml"), epochs=1, imgsz=64, batch=4, workers=0,
                    device="cpu", plots=False, val=True, amp=False, project=t, name="run", exist_ok=True, seed=0)
        OUT.mkdir(parents=True, exist_ok=True)
        shutil.copy(Path(t) / "run/weights/best.pt", OUT / "tiny.pt")
    subprocess.run([sys.executable, str(ROOT / "scripts/pt_to_safetensors.py"), str(OUT / "tiny.pt"),
                    str(OUT / "tiny.safetensors"), "--half"], check=True)


if __name__ == "__main__":
    main()
