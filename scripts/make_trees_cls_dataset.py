"""Build datasets/trees_cls (an image-folder classification dataset) from datasets/trees: square crops centred on
tree crowns (class `tree`) and square patches of the same tiles that hold no crown (class `background`).

    python scripts/make_trees_cls_dataset.py --trees datasets/trees --out datasets/trees_cls

train/ and val/ come from datasets/trees' train tiles (one scene), split by tile (every fifth tile, from the
third, is val/), so val/ measures what a classifier learnt on unseen tiles of the scene it trained on; test/
comes from datasets/trees' val tiles (three other scenes), the harder cross-scene question. No crop from the
detection val tiles is in train/ or val/, so a backbone pretrained on train/ has not seen the detector's
validation images. A crown
crop is the crown box grown by a quarter to a square (shifted to stay inside the tile), at least 24 px. A
background patch has a side drawn from the crown crops' sides, no crown centre inside it, and no crown box
covering more than 10% of it. Capped per class and split; a fixed seed makes the set reproducible. JPEG
quality 90. Needs Pillow only.
"""

import argparse
import random
from pathlib import Path

from PIL import Image

CAP = {"train": 300, "val": 100, "test": 120}
# Which datasets/trees split each split's tiles come from, and which of them (by sorted index) it takes.
SOURCE = {
    "train": ("train", lambda i: i % 5 != 2),
    "val": ("train", lambda i: i % 5 == 2),
    "test": ("val", lambda i: True),
}
MIN_SIDE = 24
GROW = 1.25
MAX_COVER = 0.10


def boxes_of(label_file, w, h):
    out = []
    for line in label_file.read_text().splitlines():
        p = line.split()
        if len(p) != 5:
            continue
        cx, cy, bw, bh = (float(v) for v in p[1:])
        out.append(((cx - bw / 2) * w, (cy - bh / 2) * h, (cx + bw / 2) * w, (cy + bh / 2) * h))
    return out


def square_inside(cx, cy, side, w, h):
    side = min(side, w, h)
    x0 = min(max(cx - side / 2, 0), w - side)
    y0 = min(max(cy - side / 2, 0), h - side)
    return (round(x0), round(y0), round(x0) + round(side), round(y0) + round(side))


def overlap(a, b):
    iw = min(a[2], b[2]) - max(a[0], b[0])
    ih = min(a[3], b[3]) - max(a[1], b[1])
    return max(iw, 0) * max(ih, 0)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--trees", default="datasets/trees")
    ap.add_argument("--out", default="datasets/trees_cls")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    rng = random.Random(a.seed)
    trees, out = Path(a.trees), Path(a.out)
    for split, cap in CAP.items():
        crowns, backgrounds = [], []
        src, take = SOURCE[split]
        tiles = [t for i, t in enumerate(sorted((trees / "images" / src).glob("*.jpg"))) if take(i)]
        for tile in tiles:
            im = Image.open(tile).convert("RGB")
            w, h = im.size
            boxes = boxes_of(trees / "labels" / src / (tile.stem + ".txt"), w, h)
            sides = []
            for i, (x0, y0, x1, y1) in enumerate(boxes):
                side = max(MIN_SIDE, max(x1 - x0, y1 - y0) * GROW)
                sides.append(side)
                crowns.append((tile, i, im.crop(square_inside((x0 + x1) / 2, (y0 + y1) / 2, side, w, h))))
            for j in range(400):
                if not sides:
                    break
                side = rng.choice(sides)
                r = square_inside(rng.uniform(0, w), rng.uniform(0, h), side, w, h)
                area = (r[2] - r[0]) * (r[3] - r[1])
                centre_in = any(r[0] <= (b[0] + b[2]) / 2 <= r[2] and r[1] <= (b[1] + b[3]) / 2 <= r[3] for b in boxes)
                if centre_in or any(overlap(r, b) > MAX_COVER * area for b in boxes):
                    continue
                backgrounds.append((tile, j, im.crop(r)))
        for name, items in (("tree", crowns), ("background", backgrounds)):
            rng.shuffle(items)
            d = out / split / name
            d.mkdir(parents=True, exist_ok=True)
            for tile, k, crop in sorted(items[:cap], key=lambda t: (t[0].name, t[1])):
                crop.save(d / f"{tile.stem}_{k:03d}.jpg", quality=90)
            print(f"{split}/{name}: {min(cap, len(items))} of {len(items)}")


if __name__ == "__main__":
    main()
