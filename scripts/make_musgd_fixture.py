"""Run Ultralytics' own MuSGD, with the parameter groups its trainer builds, for crates/train/tests/musgd_parity.rs.

    python scripts/make_musgd_fixture.py crates/train/tests/fixtures/musgd

Builds configs/yolov8-mobileone.yaml at a tiny width (nc 3) with the real package, asks
`BaseTrainer.build_optimizer(name="MuSGD")` for its groups (Muon for conv filters, 3x lr for the class branch
Detect.cv3, decay on Muon weights only), then takes three steps with fixed gradients, learning rates and momenta
(the values warmup would set). Gradients are small enough that Ultralytics' norm-10 clipping would not act.
Muon's Newton-Schulz runs in bfloat16 in the package; the run is made twice, once as shipped (`after_bf16`) and
once with the iteration in float32 (`after_f32`), which is what a float32 implementation must reproduce.
The gradients come from a formula the Rust test repeats (`fixture_grad`), so they are not stored. Writes
model.yaml, weights.safetensors (initial), steps.safetensors (lr, momentum per step) and expected.safetensors
(the trained tensors after the three float32 steps).
"""

import copy
import sys
import types
from pathlib import Path

import torch
import yaml
from safetensors.torch import save_file

sys.path.insert(0, str(Path(__file__).parent))
import mobileone  # noqa: E402

mobileone.register()
from ultralytics.engine.trainer import BaseTrainer  # noqa: E402
from ultralytics.nn.tasks import DetectionModel  # noqa: E402

LR, MOMENTUM, DECAY = 0.01, 0.9, 5e-4
SCALES = [0.3, 0.8, 1.0]  # lr factor per step (warmup ramp, then the schedule)
MOMENTA = [0.8, 0.85, 0.9]


def fixture_grad(shape, t, step):
    """2e-3 * sin(0.37 i + 1.3 step + 0.11 t) over the flat index i of tensor number t (sorted names)."""
    i = torch.arange(shape.numel(), dtype=torch.float64)
    return (2e-3 * torch.sin(0.37 * i + 1.3 * step + 0.11 * t)).float().reshape(shape)


def run(d, init, grads, bf16):
    model = DetectionModel(copy.deepcopy(d), ch=3, nc=d["nc"], verbose=False)
    model.load_state_dict(init)
    for p in model.parameters():
        p.requires_grad_(True)
    model.model[-1].dfl.conv.weight.requires_grad_(False)  # frozen by the trainer, as in ours
    trainer = types.SimpleNamespace(args=types.SimpleNamespace(), data={"nc": d["nc"]})
    opt = BaseTrainer.build_optimizer(trainer, model, name="MuSGD", lr=LR, momentum=MOMENTUM, decay=DECAY)
    for x in opt.param_groups:
        x["base_lr"] = x["lr"]
    names = {id(p): k for k, p in model.named_parameters()}
    original = torch.Tensor.bfloat16
    if not bf16:
        torch.Tensor.bfloat16 = lambda t: t.float()
    try:
        for step, (s, m) in enumerate(zip(SCALES, MOMENTA)):
            for x in opt.param_groups:
                x["lr"] = x["base_lr"] * s
                x["momentum"] = m
            for p in model.parameters():
                p.grad = grads[step][names[id(p)]].clone() if p.requires_grad else None
            opt.step()
    finally:
        torch.Tensor.bfloat16 = original
    return {k: v.detach().clone() for k, v in model.named_parameters()}


def main():
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    d = yaml.safe_load(Path("configs/yolov8-mobileone.yaml").read_text())
    d["scales"] = {"t": [0.33, 0.0625, 1024]}
    d["scale"] = "t"
    d["nc"] = 3
    (out / "model.yaml").write_text(yaml.safe_dump({k: v for k, v in d.items() if k != "scale"}, sort_keys=False))
    model = DetectionModel(copy.deepcopy(d), ch=3, nc=3, verbose=False)
    init = {k: v.detach().clone() for k, v in model.state_dict().items()}
    params = sorted(k for k, _ in model.named_parameters() if "dfl" not in k)
    grads = [{k: fixture_grad(init[k].shape, t, step) for t, k in enumerate(params)} for step in range(len(SCALES))]
    norm = max(torch.cat([v.flatten() for v in gs.values()]).norm().item() for gs in grads)
    assert norm < 10.0, f"gradient norm {norm} would be clipped"
    after_f32 = run(d, init, grads, bf16=False)
    after_bf16 = run(d, init, grads, bf16=True)
    save_file({k: v.contiguous() for k, v in init.items()}, str(out / "weights.safetensors"))
    steps = {}
    steps["lr"] = torch.tensor([LR * s for s in SCALES], dtype=torch.float32)
    steps["momentum"] = torch.tensor(MOMENTA, dtype=torch.float32)
    save_file(steps, str(out / "steps.safetensors"))
    expected = {k: v for k, v in after_f32.items() if k in params}
    save_file(expected, str(out / "expected.safetensors"))
    moved = max((after_f32[k] - init[k]).abs().max().item() for k in params)
    gap = max((after_f32[k] - after_bf16[k]).abs().max().item() for k in params)
    print(f"{len(params)} tensors, largest move {moved:.3e}, f32 vs bf16 Newton-Schulz {gap:.3e}")


if __name__ == "__main__":
    main()
