"""Record the state_dict keys and shapes the real Ultralytics package gives every config we ship and every
family YAML (unfused, and fused: MobileOne reparameterized, then Ultralytics' Conv+BN fuse), plus one model of
the blocks no YAML uses (DWConv, a strided GhostBottleneck, C2, ConvTranspose2d, MobileOneBlock with SE), for
`crates/model/tests/named.rs`: our names come from our structs' field names, and this says they are the
package's.

The models are the ones the test builds: each YAML's text with `depth_multiple: 1.0` -> 0.33 and
`width_multiple: 1.0` -> 0.25 (small and quick, same structure), its first scale, nc 3.

    python scripts/make_names_fixture.py crates/model/tests/fixtures/names.json
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

ROOT = Path(__file__).resolve().parent.parent

# Recorded with the keys (`text`), so the test builds this very model.
BLOCKS = """nc: 3
backbone:
  - [-1, 1, Conv, [16, 3, 2]]
  - [-1, 1, DWConv, [32, 3, 2]]
  - [-1, 1, GhostBottleneck, [32, 3, 2]]
  - [-1, 1, GhostBottleneck, [32, 3, 1]]
  - [-1, 1, C2, [32, True]]
  - [-1, 1, MobileOneBlock, [32, 2, 1, 1, 'zeros', False, True]]
  - [-1, 1, nn.ConvTranspose2d, [32, 2, 2]]
  - [-1, 1, Conv, [32, 3, 2]]
head:
  - [[-1], 1, Detect, [nc]]
"""


def small(text):
    return text.replace("depth_multiple: 1.0", "depth_multiple: 0.33").replace(
        "width_multiple: 1.0", "width_multiple: 0.25"
    )


def keys(model):
    return [[k, list(v.shape)] for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")]


def record(name, text, keep_text=False):
    d = yaml.safe_load(text)
    if d.get("scales") and not d.get("scale"):
        d["scale"] = next(iter(d["scales"]))
    m = DetectionModel(d, ch=3, nc=3, verbose=False)
    f = mobileone.reparameterize_all(copy.deepcopy(m))
    out = {"name": name, "scale": d.get("scale"), "unfused": keys(m), "fused": keys(f)}
    if keep_text:
        out["text"] = text
    return out


def main():
    models = []
    for sub in ["configs", "configs/ultralytics"]:
        for p in sorted((ROOT / sub).glob("*.yaml")):
            models.append(record(f"{sub}/{p.name}", small(p.read_text())))
            print(models[-1]["name"], len(models[-1]["unfused"]), file=sys.stderr)
    models.append(record("blocks.yaml", BLOCKS, keep_text=True))
    import ultralytics

    out = {
        "ultralytics": ultralytics.__version__,
        "torch": torch.__version__,
        "generator": "scripts/make_names_fixture.py",
        "models": models,
    }
    Path(sys.argv[1]).write_text(json.dumps(out, separators=(",", ":")) + "\n")


if __name__ == "__main__":
    main()
