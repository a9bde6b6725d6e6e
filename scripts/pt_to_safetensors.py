"""Convert an Ultralytics .pt checkpoint to our safetensors format.

    python scripts/pt_to_safetensors.py runs/detect/train/weights/best.pt best.safetensors

The state_dict keeps Ultralytics' key names (float32, or float16 with --half; no num_batches_tracked); the metadata carries the model
YAML (`ckpt['model'].yaml`), scale, nc, class names and whether the model is fused, so `--weights` alone is
enough on our side. Checkpoints whose model contains MobileOneBlock unpickle through scripts/mobileone.py.
"""

import argparse
import json
import sys
from pathlib import Path

import torch
import yaml
from safetensors.torch import save_file

sys.path.insert(0, str(Path(__file__).parent))
import mobileone  # noqa: E402

mobileone.register()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("pt")
    ap.add_argument("out")
    ap.add_argument("--no-ema", action="store_true", help="use ckpt['model'] even when an EMA is present")
    ap.add_argument("--half", action="store_true", help="store float16 (Ultralytics saves checkpoints in float16)")
    a = ap.parse_args()

    ckpt = torch.load(a.pt, map_location="cpu", weights_only=False)
    model = ckpt if isinstance(ckpt, torch.nn.Module) else (None if a.no_ema else ckpt.get("ema")) or ckpt["model"]
    model = model.float()
    sd = {k: v.detach().float().contiguous() for k, v in model.state_dict().items() if "num_batches_tracked" not in k}
    if a.half:
        sd = {k: v.half() for k, v in sd.items()}
    cfg = dict(model.yaml)
    names = model.names
    if isinstance(names, dict):
        names = [names[i] for i in sorted(names)]
    nc = int(cfg.get("nc", len(names)))
    # Ultralytics' fuse() deletes the BatchNorm modules: the module tree says whether the model is fused.
    fused = not any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    meta = {
        "format": "yolo-burn/ultralytics-state-dict",
        "yaml": yaml.safe_dump({k: v for k, v in cfg.items() if k not in ("scale", "yaml_file", "channels")}, sort_keys=False),
        "scale": str(cfg.get("scale", "")),
        "nc": str(nc),
        "names": json.dumps(list(names)),
        "fused": str(fused).lower(),
        "source": Path(a.pt).name,
    }
    save_file(sd, a.out, metadata=meta)
    print(f"{a.out}: {len(sd)} tensors, scale {meta['scale']!r}, nc {nc}, fused {fused}")


if __name__ == "__main__":
    main()
