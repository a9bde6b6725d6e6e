"""One training step of a MobileOne classifier in the real Ultralytics package, for
crates/train/tests/classify_step.rs: the forward in training mode (BatchNorm on batch statistics, its running
statistics updated with PyTorch's momentum 0.1 and unbiased variance), v8ClassificationLoss (cross-entropy,
mean over the batch) and the backward.

    python scripts/make_cls_step_fixture.py crates/train/tests/fixtures/classify_step

The model is configs/yolov8-mobileone-cls.yaml's layout narrowed to four rows (stem Conv with ReLU, MobileOne
blocks with stride 2, 2 and 1, so one has the identity branch) and the Classify head, three classes, on a
batch of four 32x32 images. BatchNorm weights and running statistics are randomized so none is at its default.
Writes model.yaml, weights.safetensors (the state_dict before the step) and step.safetensors (input, classes,
logits, loss, every parameter's gradient as `grad.<name>`, every running statistic after as `after.<name>`).
"""

import sys
from pathlib import Path

import torch
import yaml
from safetensors.torch import save_file

sys.path.insert(0, str(Path(__file__).parent))
import mobileone  # noqa: E402

mobileone.register()
from ultralytics.nn.tasks import ClassificationModel  # noqa: E402
from ultralytics.utils.loss import v8ClassificationLoss  # noqa: E402

MODEL = {
    "nc": 3,
    "activation": "nn.ReLU()",
    "scales": {"t": [1.0, 1.0, 1024]},
    "backbone": [
        [-1, 1, "Conv", [16, 3, 2]],
        [-1, 1, "MobileOneBlock", [16, 4, 2]],
        [-1, 1, "MobileOneBlock", [32, 4, 2]],
        [-1, 1, "MobileOneBlock", [32, 4, 1]],
    ],
    "head": [[-1, 1, "Classify", ["nc"]]],
}


def main():
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    (out / "model.yaml").write_text(
        "# scripts/make_cls_step_fixture.py: configs/yolov8-mobileone-cls.yaml narrowed to four rows\n"
        + yaml.safe_dump(MODEL, sort_keys=False)
    )
    torch.manual_seed(0)
    m = ClassificationModel(str(out / "model.yaml"), nc=3, verbose=False)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for mod in m.modules():
            if isinstance(mod, torch.nn.BatchNorm2d):
                n = mod.num_features
                mod.weight.copy_(torch.rand(n, generator=g) + 0.5)
                mod.bias.copy_(torch.rand(n, generator=g) * 0.4 - 0.2)
                mod.running_mean.copy_(torch.rand(n, generator=g) - 0.5)
                mod.running_var.copy_(torch.rand(n, generator=g) * 1.5 + 0.5)
    sd = {k: v.detach().clone().contiguous() for k, v in m.state_dict().items() if "num_batches_tracked" not in k}
    save_file(sd, out / "weights.safetensors", metadata={"generator": "scripts/make_cls_step_fixture.py"})
    x = torch.rand(4, 3, 32, 32, generator=g)
    cls = torch.tensor([0, 2, 1, 2])
    m.train()
    logits = m(x)
    loss, items = v8ClassificationLoss()(logits, {"cls": cls})
    loss.backward()
    step = {"input": x, "classes": cls.float(), "logits": logits.detach(), "loss": loss.detach().reshape(1)}
    for k, p in m.named_parameters():
        step[f"grad.{k}"] = p.grad.detach().clone()
    for k, v in m.state_dict().items():
        if "running_" in k:
            step[f"after.{k}"] = v.detach().clone()
    import ultralytics

    save_file({k: v.contiguous() for k, v in step.items()}, out / "step.safetensors",
              metadata={"generator": "scripts/make_cls_step_fixture.py", "ultralytics": ultralytics.__version__,
                        "torch": torch.__version__})
    print("loss", float(loss), "params", sum(p.numel() for p in m.parameters()))


if __name__ == "__main__":
    main()
