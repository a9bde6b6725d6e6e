"""Build datasets/trees (YOLO format) from the NEON sample data shipped in the deepforest 2.1.0 wheel.

    pip download --no-deps deepforest==2.1.0 -d /tmp/df
    python scripts/make_trees_dataset.py --wheel /tmp/df/deepforest-2.1.0-py3-none-any.whl --out datasets/trees

Four aerial RGB scenes with 951 tree crowns annotated in Pascal VOC xml are cut into ~400 px JPEG tiles, one
class `tree` (SOAP_061's Alive/Dead labels both become tree). The split is by source scene, so no scene has tiles
in both train and val: train = 2019_YELL_2_528000_4978000 (the large scene), val = the other three. Boxes cut by
a tile edge are clipped and kept when at least 40% of the crown is inside the tile. Needs Pillow only.
"""

import argparse
import io
import math
import xml.etree.ElementTree as ET
import zipfile
from pathlib import Path

from PIL import Image

TILE = 400
KEEP = 0.4
TRAIN = {"2019_YELL_2_528000_4978000_image_crop2"}


def positions(length, tile):
    n = max(1, math.ceil(length / tile))
    if n == 1:
        return [0]
    return [round(i * (length - tile) / (n - 1)) for i in range(n)]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--wheel", required=True)
    ap.add_argument("--out", default="datasets/trees")
    a = ap.parse_args()
    out = Path(a.out)
    zf = zipfile.ZipFile(a.wheel)
    xmls = sorted(n for n in zf.namelist() if n.startswith("deepforest/data/") and n.endswith(".xml"))
    counts = {"train": [0, 0], "val": [0, 0]}
    scenes = {"train": [], "val": []}
    for split in counts:
        (out / "images" / split).mkdir(parents=True, exist_ok=True)
        (out / "labels" / split).mkdir(parents=True, exist_ok=True)
    total_src = 0
    for x in xmls:
        stem = Path(x).stem
        root = ET.fromstring(zf.read(x))
        boxes = []
        for o in root.findall("object"):
            b = o.find("bndbox")
            boxes.append([float(b.find(k).text) for k in ("xmin", "ymin", "xmax", "ymax")])
        total_src += len(boxes)
        img = Image.open(io.BytesIO(zf.read(f"deepforest/data/{stem}.png"))).convert("RGB")
        W, H = img.size
        split = "train" if stem in TRAIN else "val"
        scenes[split].append(f"{stem} ({W}x{H}, {len(boxes)} crowns)")
        tw, th = min(TILE, W), min(TILE, H)
        for r, y0 in enumerate(positions(H, th)):
            for c, x0 in enumerate(positions(W, tw)):
                lines = []
                for x1, y1, x2, y2 in boxes:
                    cx1, cy1 = max(x1, x0), max(y1, y0)
                    cx2, cy2 = min(x2, x0 + tw), min(y2, y0 + th)
                    if cx2 <= cx1 or cy2 <= cy1:
                        continue
                    if (cx2 - cx1) * (cy2 - cy1) < KEEP * (x2 - x1) * (y2 - y1):
                        continue
                    bx, by = (cx1 + cx2) / 2 - x0, (cy1 + cy2) / 2 - y0
                    lines.append(f"0 {bx / tw:.6f} {by / th:.6f} {(cx2 - cx1) / tw:.6f} {(cy2 - cy1) / th:.6f}")
                name = f"{stem}_r{r}_c{c}"
                img.crop((x0, y0, x0 + tw, y0 + th)).save(out / "images" / split / f"{name}.jpg", quality=90)
                (out / "labels" / split / f"{name}.txt").write_text("\n".join(lines) + ("\n" if lines else ""))
                counts[split][0] += 1
                counts[split][1] += len(lines)
    (out / "data.yaml").write_text(
        "# Tree crowns in NEON aerial RGB tiles (see README.md). Paths are relative to this file.\n"
        "train: images/train\nval: images/val\nnames:\n  0: tree\n"
    )
    (out / "LICENSE.md").write_text(
        "Imagery: National Ecological Observatory Network (NEON) airborne observation platform RGB imagery,\n"
        "released under CC0 1.0 (public domain). Credit: NEON, Battelle.\n\n"
        "Annotations: the sample data of the DeepForest package (weecology/DeepForest, deepforest 2.1.0 on PyPI),\n"
        "MIT License, Copyright (c) Ben Weinstein and contributors.\n\n"
        "Converted to YOLO format by scripts/make_trees_dataset.py of this repository.\n"
    )
    readme = [
        "# trees: tree crowns in NEON aerial imagery (YOLO format)",
        "",
        f"Made by `scripts/make_trees_dataset.py` from the `deepforest/data/` folder of the deepforest 2.1.0 wheel:",
        f"{total_src} annotated crowns in {len(xmls)} scenes, cut into {TILE} px tiles (JPEG quality 90), one class `tree`.",
        "Split by source scene (no scene in both): ",
        "",
        "| split | scenes | tiles | boxes |",
        "|---|---|---|---|",
    ]
    for s in ("train", "val"):
        readme.append(f"| {s} | {'; '.join(scenes[s])} | {counts[s][0]} | {counts[s][1]} |")
    readme += [
        "",
        f"Boxes cut by a tile edge are clipped and kept when at least {int(KEEP * 100)}% of the crown is inside.",
        "Licences and credit: LICENSE.md.",
        "",
    ]
    (out / "README.md").write_text("\n".join(readme))
    print(counts)


if __name__ == "__main__":
    main()
