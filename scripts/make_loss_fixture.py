"""Run Ultralytics' own v8DetectionLoss on fixed head outputs and targets, for crates/train/tests/loss_parity.rs.

    python scripts/make_loss_fixture.py crates/train/tests/fixtures/loss.safetensors

Cases: a batch of 4 non-square images (3 boxes; none; a crowded image of 25 overlapping boxes with tiny ones;
one large box) and a batch with no boxes at all. Stored: the raw head maps p3-p5 (B, 64 + nc, H, W), the
targets (batch_idx, cls, normalized xywh) and the three gained loss components (not multiplied by batch size).
"""

import sys
import types

import torch
from safetensors.torch import save_file
from ultralytics.utils.loss import v8DetectionLoss

torch.manual_seed(0)
NC, REG = 3, 16
H, W = 96, 128
strides = torch.tensor([8.0, 16.0, 32.0])


class FakeModel(torch.nn.Module):
    """Just what v8DetectionLoss reads: args, parameters, and the Detect layer's stride/nc/reg_max."""

    def __init__(self):
        super().__init__()
        self.p = torch.nn.Parameter(torch.zeros(1))
        self.args = types.SimpleNamespace(box=7.5, cls=0.5, dfl=1.5)
        self.model = [types.SimpleNamespace(stride=strides, nc=NC, reg_max=REG)]


def boxes(n, lo, hi, g):
    wh = torch.rand(n, 2, generator=g) * (hi - lo) + lo
    c = torch.rand(n, 2, generator=g) * (1 - wh) + wh / 2
    return torch.cat([c, wh], 1)


g = torch.Generator().manual_seed(1)
cases = {}
for name, per_image in {"mixed": [3, 0, 25, 1], "empty": [0, 0]}.items():
    B = len(per_image)
    feats = [torch.randn(B, 4 * REG + NC, H // int(s), W // int(s), generator=g) * 1.5 for s in strides]
    rows = []
    for b, n in enumerate(per_image):
        if n == 0:
            continue
        bx = boxes(n, 0.04, 0.5, g) if n != 1 else boxes(1, 0.6, 0.9, g)
        if n == 25:
            bx[:4, 2:] = torch.tensor([[0.05, 0.04]])  # tiny boxes (< 16 px) get the enlarged candidate area
        cls = torch.randint(0, NC, (n, 1), generator=g).float()
        rows.append(torch.cat([torch.full((n, 1), float(b)), cls, bx], 1))
    t = torch.cat(rows) if rows else torch.zeros(0, 6)
    loss_fn = v8DetectionLoss(FakeModel())
    bs = B
    preds = {
        "boxes": torch.cat([f[:, : 4 * REG].reshape(bs, 4 * REG, -1) for f in feats], 2),
        "scores": torch.cat([f[:, 4 * REG :].reshape(bs, NC, -1) for f in feats], 2),
        "feats": feats,
    }
    batch = {"batch_idx": t[:, 0], "cls": t[:, 1:2], "bboxes": t[:, 2:]}
    total, items = loss_fn(preds, batch)
    comps = torch.stack([items["box_loss"], items["cls_loss"], items["dfl_loss"]])
    print(name, "box cls dfl", comps.tolist(), "total", float(total.sum()))
    for i, f in enumerate(feats):
        cases[f"{name}.p{i + 3}"] = f.contiguous()
    cases[f"{name}.targets"] = t.contiguous()
    cases[f"{name}.loss"] = comps.contiguous()
    cases[f"{name}.total"] = total.sum().reshape(1)
save_file(cases, sys.argv[1], metadata={"generator": "scripts/make_loss_fixture.py", "imgsz": f"{H},{W}", "nc": str(NC)})
