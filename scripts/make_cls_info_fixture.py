"""Record Ultralytics' own summaries of classification models (parameters, gradients, GFLOPs at 640 and 224,
unfused and fused) for `crates/model/tests/info_parity.rs`: every scale of yolov8-cls.yaml, yolo11-cls.yaml at
n and s, our MobileOneNet YAML and the classifier with yolov8-mobileone's backbone (the seed's block registered
the blog's way).

    python scripts/make_cls_info_fixture.py crates/model/tests/fixtures/cls_info.json
"""

import copy
import json
import sys
from pathlib import Path

import torch
import yaml

sys.path.insert(0, str(Path(__file__).parent))
import mobileone  # noqa: E402

mobileone.register()
from ultralytics.nn.tasks import ClassificationModel  # noqa: E402
from ultralytics.utils.torch_utils import get_flops  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
PLAN = [
    ("configs/ultralytics/yolov8-cls.yaml", ["n", "s", "m", "l", "x"]),
    ("configs/ultralytics/yolo11-cls.yaml", ["n", "s"]),
    ("configs/yolov8-mobileone-cls.yaml", ["n", "s"]),
    ("configs/yolov8-mobileone-backbone-cls.yaml", ["n", "m"]),
]
rows = []
for cfg, scales in PLAN:
    d0 = yaml.safe_load((ROOT / cfg).read_text())
    for scale in scales:
        for nc in [1000, 3]:
            if nc == 3 and scale != "n":
                continue
            d = copy.deepcopy(d0)
            d["scale"] = scale
            m = ClassificationModel(d, ch=3, nc=nc, verbose=False)
            f = mobileone.reparameterize_all(copy.deepcopy(m))
            rows.append(
                {
                    "config": cfg,
                    "scale": scale,
                    "nc": nc,
                    "parameters": sum(p.numel() for p in m.parameters()),
                    "gradients": sum(p.numel() for p in m.parameters() if p.requires_grad),
                    "gflops": get_flops(m, 640),
                    "fused_parameters": sum(p.numel() for p in f.parameters()),
                    "fused_gflops": get_flops(f, 640),
                    "gflops_224": get_flops(m, 224),
                    "fused_gflops_224": get_flops(f, 224),
                    "layers": len(m.model),
                }
            )
            print(rows[-1], file=sys.stderr)
import ultralytics

out = {
    "ultralytics": ultralytics.__version__,
    "torch": torch.__version__,
    "generator": "scripts/make_cls_info_fixture.py",
    "models": rows,
}
Path(sys.argv[1]).write_text(json.dumps(out, indent=1) + "\n")
