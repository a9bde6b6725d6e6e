"""What Ultralytics' classification evaluation transform (`classify_transforms`: torchvision Resize on a PIL
image, CenterCrop, ToTensor) makes of images, for `crates/data/tests/classify.rs`.

The package's ClassificationDataset reads with cv2.imread, converts BGR to RGB and hands a PIL image to the
transform; each case here does the same on a region of a datasets/trees val tile (square, wide, tall, smaller
than the output so it is upscaled) at a few sizes. The crop the transform makes (8-bit, before ToTensor) is
written as a PNG (lossless); the script checks that ToTensor's output is exactly those bytes / 255. Pillow 13
resamples height first when it shrinks more than twice the width; the tall cases exercise that order.

    python scripts/make_classify_fixture.py
"""

import json
from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "crates/data/tests/fixtures/classify"
TILE = "datasets/trees/images/val/2019_YELL_2_541000_4977000_image_crop_r0_c0.jpg"
# (x, y, w, h) of the region, output size
CASES = [
    ((0, 0, 400, 400), 224),
    ((0, 0, 400, 400), 64),
    ((13, 40, 301, 170), 96),
    ((100, 7, 123, 389), 80),
    ((50, 60, 37, 29), 64),
    ((200, 200, 120, 90), 100),
    ((5, 5, 255, 254), 127),
]


def main():
    from ultralytics.data.augment import classify_transforms

    OUT.mkdir(parents=True, exist_ok=True)
    bgr = cv2.imread(str(ROOT / TILE))
    rows = []
    for i, ((x, y, w, h), size) in enumerate(CASES):
        region = np.ascontiguousarray(bgr[y : y + h, x : x + w])
        pil = Image.fromarray(cv2.cvtColor(region, cv2.COLOR_BGR2RGB))
        t = classify_transforms(size)
        resize, crop = t.transforms[0], t.transforms[1]
        out = np.array(crop(resize(pil)))
        tensor = t(pil)
        assert torch.equal(tensor, torch.from_numpy(out).permute(2, 0, 1).float() / 255), i
        name = f"case{i}.png"
        cv2.imwrite(str(OUT / name), cv2.cvtColor(out, cv2.COLOR_RGB2BGR))
        rows.append({"region": [x, y, w, h], "size": size, "resized": list(resize(pil).size), "crop": name})
    import PIL
    import torchvision
    import ultralytics

    meta = {"ultralytics": ultralytics.__version__, "pillow": PIL.__version__, "torchvision": torchvision.__version__}
    (OUT / "cases.json").write_text(json.dumps({"tile": TILE, "generator": "scripts/make_classify_fixture.py", **meta,
                                                "cases": rows}, indent=1) + "\n")
    print(len(rows), "cases")


if __name__ == "__main__":
    main()
