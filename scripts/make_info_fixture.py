"""Record Ultralytics' own model summaries (parameters, gradients, GFLOPs, unfused and fused) for every scale of
both configs, for `crates/model/tests/info_parity.rs`.

    python scripts/make_info_fixture.py crates/model/tests/fixtures/info.json
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
from ultralytics.nn.tasks import DetectionModel  # noqa: E402
from ultralytics.utils.torch_utils import get_flops  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
rows = []
for cfg in ["configs/yolov8.yaml", "configs/yolov8-mobileone.yaml"]:
    d0 = yaml.safe_load((ROOT / cfg).read_text())
    for scale in ["n", "s", "m", "l", "x"]:
        for nc in [80, 3]:
            if nc == 3 and scale not in ("n", "s"):
                continue
            d = copy.deepcopy(d0)
            d["scale"] = scale
            m = DetectionModel(d, ch=3, nc=nc, verbose=False)
            params = sum(p.numel() for p in m.parameters())
            grads = sum(p.numel() for p in m.parameters() if p.requires_grad)
            gf = get_flops(m, 640)
            f = mobileone.reparameterize_all(copy.deepcopy(m))
            rows.append(
                {
                    "config": cfg,
                    "scale": scale,
                    "nc": nc,
                    "parameters": params,
                    "gradients": grads,
                    "gflops": gf,
                    "fused_parameters": sum(p.numel() for p in f.parameters()),
                    "fused_gflops": get_flops(f, 640),
                    "layers": len(m.model),
                }
            )
            print(rows[-1], file=sys.stderr)
import ultralytics

out = {"ultralytics": ultralytics.__version__, "torch": torch.__version__, "generator": "scripts/make_info_fixture.py", "models": rows}
Path(sys.argv[1]).write_text(json.dumps(out, indent=1) + "\n")
