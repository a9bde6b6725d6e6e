"""Ultralytics' own detection YAMLs (configs/ultralytics, copied unchanged from the installed package) as the
package builds them: model summaries for `crates/model/tests/family_parity.rs` and, through make_fixture.py,
small forward-parity fixtures for `crates/deploy/tests/parity.rs`.

    python scripts/make_family_fixtures.py

Writes crates/model/tests/fixtures/family_info.json (every config in SUMMARIES, scales n and s or the YAML's
own multiples, nc 80 and 3) and crates/deploy/tests/fixtures/family_<config>_nc3_64 for FORWARD (width 1/16,
64x64 input; 128 for the P6 models, whose largest stride is 64), about 3 MB each.
"""

import copy
import json
import subprocess
import sys
from pathlib import Path

import torch
import yaml

sys.path.insert(0, str(Path(__file__).parent))
import mobileone  # noqa: E402

mobileone.register()
import ultralytics  # noqa: E402
from ultralytics.nn.tasks import DetectionModel  # noqa: E402
from ultralytics.utils.torch_utils import get_flops  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def summary(cfg, scale, nc):
    d = yaml.safe_load((ROOT / cfg).read_text())
    if scale:
        d["scale"] = scale
    m = DetectionModel(d, ch=3, nc=nc, verbose=False)
    f = mobileone.reparameterize_all(copy.deepcopy(m))
    return {
        "config": cfg,
        "scale": scale or "",
        "nc": nc,
        "parameters": sum(p.numel() for p in m.parameters()),
        "gradients": sum(p.numel() for p in m.parameters() if p.requires_grad),
        "gflops": get_flops(m, 640),
        "fused_parameters": sum(p.numel() for p in f.parameters()),
        "fused_gflops": get_flops(f, 640),
        "layers": len(m.model),
        "strides": [int(s) for s in m.stride.tolist()],
    }


SUMMARIES = ["yolov8-p2", "yolov8-p6", "yolov8-ghost", "yolov8-ghost-p2", "yolov8-ghost-p6", "yolov5",
             "yolov5-p6", "yolov6", "yolov3", "yolov3-spp", "yolov3-tiny", "yolo11"]
FORWARD = SUMMARIES


def main():
    names = sys.argv[1:] or SUMMARIES
    rows = []
    for name in names:
        cfg = f"configs/ultralytics/{name}.yaml"
        has_scales = "scales" in yaml.safe_load((ROOT / cfg).read_text())
        for scale in ("n", "s") if has_scales else (None,):
            for nc in (80, 3):
                rows.append(summary(cfg, scale, nc))
        if name == "yolo11":  # C3k2 switches to C3k blocks at the m, l and x scales
            rows.append(summary(cfg, "m", 80))
            print(rows[-1], file=sys.stderr)
        if name not in FORWARD:
            continue
        p6 = "p6" in name
        size = "128,128" if p6 else "64,64"
        out = ROOT / f"crates/deploy/tests/fixtures/family_{name}_nc3_{size.split(',')[0]}"
        subprocess.run(
            [sys.executable, str(ROOT / "scripts/make_fixture.py"), "--config", str(ROOT / cfg), "--width",
             "0.0625", "--nc", "3", "--imgsz", size, "--out", str(out)],
            check=True,
        )
    out = {
        "ultralytics": ultralytics.__version__,
        "torch": torch.__version__,
        "generator": "scripts/make_family_fixtures.py",
        "models": rows,
    }
    (ROOT / "crates/model/tests/fixtures/family_info.json").write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
