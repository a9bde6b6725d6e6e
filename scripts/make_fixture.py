"""Make a parity fixture with the real Ultralytics package (the format `deploy verify` reads).

    python scripts/make_fixture.py --config configs/yolov8-mobileone.yaml --width 0.0625 --nc 3 \
        --imgsz 96,128 --out crates/deploy/tests/fixtures/mobileone_nc3_96x128

Writes weights.safetensors, input.safetensors, expected.safetensors (output, p3, p4, p5, fused_output),
fused_weights.safetensors, model.yaml (the YAML actually built) and meta.json. A classifier's YAML (a Classify
head) builds Ultralytics' ClassificationModel: its expected.safetensors holds output (softmax, 1 x nc), logits
and fused_output, and meta.json says "task": "classify". BatchNorm weights and statistics
and the class biases are randomised so that fusion and scores are non-trivial. --width/--depth replace the
YAML's scales by one scale 't' so fixtures stay small.
"""

import argparse
import copy
import json
import sys
from pathlib import Path

import torch
import yaml
from safetensors.torch import save_file

sys.path.insert(0, str(Path(__file__).parent))
import mobileone  # noqa: E402

mobileone.register()
from ultralytics.nn.tasks import ClassificationModel, DetectionModel  # noqa: E402


def randomize_bn(model, g):
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                n = m.num_features
                m.weight.copy_(torch.rand(n, generator=g) + 0.5)
                m.bias.copy_(torch.randn(n, generator=g) * 0.1)
                m.running_mean.copy_(torch.randn(n, generator=g) * 0.2)
                m.running_var.copy_(torch.rand(n, generator=g) * 1.5 + 0.5)


def state_dict(m):
    return {k: v.detach().float().contiguous() for k, v in m.state_dict().items() if "num_batches_tracked" not in k}


def classify_fixture(a, d, scale, out):
    """A ClassificationModel with random BN statistics and a spread of class biases, so that the softmax is not
    flat."""
    model = ClassificationModel(copy.deepcopy(d), ch=3, nc=a.nc, verbose=False)
    g = torch.Generator().manual_seed(a.seed + 1)
    randomize_bn(model, g)
    with torch.no_grad():
        head = model.model[-1]
        head.linear.bias.copy_(torch.randn(a.nc, generator=g))
    model.eval()
    h, w = (int(v) for v in a.imgsz.split(","))
    x = torch.rand(1, 3, h, w, generator=g)
    with torch.no_grad():
        y, logits = model(x)
        fused = mobileone.reparameterize_all(copy.deepcopy(model))
        yf = fused(x)
        yf = yf[0] if isinstance(yf, (tuple, list)) else yf
    save_file(state_dict(model), out / "weights.safetensors")
    save_file(state_dict(fused), out / "fused_weights.safetensors")
    save_file({"images": x.contiguous()}, out / "input.safetensors")
    save_file(
        {"output": y.contiguous(), "logits": logits.contiguous(), "fused_output": yf.contiguous()},
        out / "expected.safetensors",
    )
    import ultralytics

    meta = {
        "task": "classify",
        "config": "model.yaml",
        "scale": scale,
        "nc": a.nc,
        "imgsz": [h, w],
        "source_config": a.config,
        "parameters": sum(p.numel() for p in model.parameters()),
        "fused_parameters": sum(p.numel() for p in fused.parameters()),
        "max_abs_fused_vs_unfused": float((y - yf).abs().max()),
        "generator": "scripts/make_fixture.py",
        "ultralytics": ultralytics.__version__,
        "torch": torch.__version__,
    }
    (out / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    print(json.dumps(meta))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", required=True)
    ap.add_argument("--scale", default=None)
    ap.add_argument("--width", type=float, default=None)
    ap.add_argument("--depth", type=float, default=0.33)
    ap.add_argument("--nc", type=int, default=80)
    ap.add_argument("--imgsz", default="64,96", help="H,W")
    ap.add_argument("--use-se", action="store_true", help="set use_se on every MobileOneBlock row")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()

    torch.manual_seed(a.seed)
    d = yaml.safe_load(Path(a.config).read_text())
    scale = a.scale or "n"
    if a.width is not None:
        d["scales"] = {"t": [a.depth, a.width, 1024]}
        scale = "t"
    if a.use_se:
        for row in d["backbone"] + d["head"]:
            if row[2] == "MobileOneBlock":
                row[3] = list(row[3][:3]) + [1, "zeros", False, True]  # the seed's use_se is its 7th argument
    d["nc"] = a.nc
    d["scale"] = scale
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    built_yaml = {k: v for k, v in d.items() if k != "scale"}
    (out / "model.yaml").write_text(yaml.safe_dump(built_yaml, sort_keys=False))

    classify = d["head"][-1][2] == "Classify"
    if classify:
        return classify_fixture(a, d, scale, out)
    model = DetectionModel(copy.deepcopy(d), ch=3, nc=a.nc, verbose=False)
    g = torch.Generator().manual_seed(a.seed + 1)
    randomize_bn(model, g)
    with torch.no_grad():
        det = model.model[-1]
        for seq in det.cv3:
            seq[-1].bias.copy_(torch.rand(a.nc, generator=g) * 3 - 2.5)
    model.eval()

    h, w = (int(v) for v in a.imgsz.split(","))
    x = torch.rand(1, 3, h, w, generator=g)
    with torch.no_grad():
        y, preds = model(x)
        feats = preds["feats"]
        raw = [torch.cat([det.cv2[i](feats[i]), det.cv3[i](feats[i])], 1) for i in range(det.nl)]
        fused = mobileone.reparameterize_all(copy.deepcopy(model))
        yf = fused(x)
        yf = yf[0] if isinstance(yf, (tuple, list)) else yf

    save_file(state_dict(model), out / "weights.safetensors")
    save_file(state_dict(fused), out / "fused_weights.safetensors")
    save_file({"images": x.contiguous()}, out / "input.safetensors")
    exp = {"output": y.contiguous(), "fused_output": yf.contiguous()}
    exp.update({f"p{i + 3}": r.contiguous() for i, r in enumerate(raw)})
    save_file(exp, out / "expected.safetensors")
    n_params = sum(p.numel() for p in model.parameters())
    meta = {
        "config": "model.yaml",
        "scale": scale,
        "nc": a.nc,
        "imgsz": [h, w],
        "source_config": a.config,
        "parameters": n_params,
        "fused_parameters": sum(p.numel() for p in fused.parameters()),
        "max_abs_fused_vs_unfused": float((y - yf).abs().max()),
        "generator": "scripts/make_fixture.py",
    }
    import ultralytics

    meta["ultralytics"] = ultralytics.__version__
    meta["torch"] = torch.__version__
    (out / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    print(json.dumps(meta))


if __name__ == "__main__":
    main()
