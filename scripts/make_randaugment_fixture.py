"""Apply RandAugment's operations (torchvision's `_apply_op` on PIL images with bilinear interpolation, as
Ultralytics' classify training runs them) to a few crops of datasets/trees_cls, for
crates/data/tests/randaugment.rs.

    python scripts/make_randaugment_fixture.py crates/data/tests/fixtures/randaugment

Writes in{k}.png (the inputs, decoded by Pillow), out{k}.png (every operation's output on input k, stacked top
to bottom in the order of ops.json) and ops.json: the operations with the magnitude exactly as `_apply_op`
received it (RandAugment's float32 table at magnitude 9 of 31, both signs, and the ends of the ranges). Also
RandomResizedCrop's resize of given regions: crop.png (its input), crops.png (`F.resized_crop` of each region of
ops.json's "crops" to 32x32, stacked) for crates/data/tests/classify_augment.rs.
"""

import json
import sys
from pathlib import Path

import PIL
import torch
import torchvision
from PIL import Image
from torchvision.transforms import InterpolationMode
from torchvision.transforms.autoaugment import RandAugment, _apply_op

ROOT = Path(__file__).resolve().parent.parent
INPUTS = [
    "datasets/trees_cls/val/tree/SOAP_061_r0_c0_036.jpg",
    "datasets/trees_cls/train/background",
]


def main():
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    images = []
    for p in INPUTS:
        p = ROOT / p
        if p.is_dir():
            p = sorted(p.glob("*.jpg"))[7]
        images.append(Image.open(p).convert("RGB").crop((0, 0, 40, 40)))
    # A non-square crop too: the filters' borders and the statistics see another shape.
    images.append(images[0].crop((3, 5, 37, 27)))
    space = RandAugment()._augmentation_space(31, (64, 64))
    colour = ["Brightness", "Color", "Contrast", "Sharpness"]
    plan = []
    for op in colour:
        table = space[op][0]
        for m in [table[9].item(), -table[9].item(), table[30].item(), -table[30].item()]:
            plan.append((op, m))
    for m in [space["Posterize"][0][9].item(), 4, 1]:
        plan.append(("Posterize", float(m)))
    for m in [space["Solarize"][0][9].item(), 0.0, 128.0]:
        plan.append(("Solarize", m))
    plan += [("AutoContrast", 0.0), ("Equalize", 0.0)]
    for op in ["ShearX", "ShearY", "Rotate"]:
        table = space[op][0]
        for m in [table[9].item(), -table[9].item(), table[30].item(), -table[30].item()]:
            plan.append((op, m))
    plan += [("Rotate", 90.0), ("Rotate", 180.0)]
    for op in ["TranslateX", "TranslateY"]:
        table = space[op][0]  # at 64 px: int() of 8.16 and 29.0
        for m in [table[9].item(), -table[9].item(), table[30].item() / 2, -table[30].item() / 2]:
            plan.append((op, m))
    for k, im in enumerate(images):
        im.save(out / f"in{k}.png")
        w, h = im.size
        stack = Image.new("RGB", (w, h * len(plan)))
        for i, (op, m) in enumerate(plan):
            stack.paste(_apply_op(im, op, m, interpolation=InterpolationMode.BILINEAR, fill=None), (0, i * h))
        stack.save(out / f"out{k}.png")
    entries = [{"op": op, "magnitude": m} for op, m in plan]
    from torchvision.transforms import functional as TF

    big = Image.open(ROOT / "datasets/trees_cls/val/tree/SOAP_061_r0_c0_036.jpg").convert("RGB")
    big.save(out / "crop.png")
    bw, bh = big.size
    regions = [(0, 0, bh, bw), (3, 5, 30, 41), (10, 2, bh - 12, 17), (0, 9, 7, 40), (bh - 20, bw - 25, 20, 25)]
    crops = Image.new("RGB", (32, 32 * len(regions)))
    for k, (i, j, h, w) in enumerate(regions):
        crops.paste(TF.resized_crop(big, i, j, h, w, [32, 32], InterpolationMode.BILINEAR, antialias=True), (0, 32 * k))
    crops.save(out / "crops.png")
    meta = {
        "generator": "scripts/make_randaugment_fixture.py",
        "torchvision": torchvision.__version__,
        "pillow": PIL.__version__,
        "torch": torch.__version__,
        "inputs": len(images),
        "ops": entries,
        "crops": [{"region": list(r), "size": 32} for r in regions],
    }
    (out / "ops.json").write_text(json.dumps(meta, indent=1) + "\n")
    print(len(entries), "operations on", len(images), "inputs")


if __name__ == "__main__":
    main()
