"""Fixture for the bit-exact resize and decode: what OpenCV (as installed with Ultralytics) gives for
cv2.resize(INTER_LINEAR) on real image crops at odd sizes, for cv2.imread on the val tiles, and for
Ultralytics' own LetterBox and load_image resize.

    /var/tmp/pyenv/bin/python scripts/make_cv2_fixture.py crates/data/tests/fixtures/cv2_resize

Writes (all images RGB PNG, lossless):
- src_*.png: crops of datasets/trees val tiles, decoded by cv2.imread;
- out_*.png: cv2.resize of a source to (w, h), INTER_LINEAR;
- cases.json: the resize cases, FNV-1a 64-bit hashes of cv2.imread's RGB bytes for every val tile, and hashes of
  LetterBox (predict: auto, stride 32) and load_image + LetterBox (val) outputs, with the versions used.
"""

import json
import math
import sys
from pathlib import Path

import cv2
import numpy as np
import ultralytics
from ultralytics.data.augment import LetterBox


def fnv1a64(data: bytes) -> str:
    h = 0xCBF29CE484222325
    for b in data:
        h ^= b
        h = (h * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return f"{h:016x}"


def rgb_hash(bgr: np.ndarray) -> str:
    return fnv1a64(np.ascontiguousarray(bgr[:, :, ::-1]).tobytes())


def load_image_val(bgr: np.ndarray, imgsz: int) -> np.ndarray:
    """Ultralytics 8.4 BaseDataset.load_image, rect mode (long side to imgsz, ceil, INTER_LINEAR)."""
    h0, w0 = bgr.shape[:2]
    r = imgsz / max(h0, w0)
    if r != 1:
        w, h = (min(math.ceil(w0 * r), imgsz), min(math.ceil(h0 * r), imgsz))
        bgr = cv2.resize(bgr, (w, h), interpolation=cv2.INTER_LINEAR)
    return bgr


def main():
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    tiles = sorted(Path("datasets/trees/images/val").glob("*.jpg"))
    a = cv2.imread(str(tiles[0]))
    b = cv2.imread(str(tiles[5]))
    sources = {
        "a_53x37": a[100:137, 200:253],
        "a_160x120": a[:120, 40:200],
        "b_61x61": b[7:68, 300:361],
        "b_9x7": b[50:57, 50:59],
        "b_1x1": b[0:1, 0:1],
    }
    for name, img in sources.items():
        cv2.imwrite(str(out / f"src_{name}.png"), np.ascontiguousarray(img))
    sizes = {
        "a_53x37": [(80, 61), (31, 29), (17, 9), (53, 80), (106, 74), (1, 1)],
        "a_160x120": [(333, 250), (320, 240), (80, 60), (97, 131), (159, 121), (3, 200)],
        "b_61x61": [(64, 64), (32, 32), (122, 122), (60, 62), (41, 41)],
        "b_9x7": [(19, 23), (5, 4), (640, 7)],
        "b_1x1": [(3, 3), (7, 2)],
    }
    cases = []
    for name, targets in sizes.items():
        for w, h in targets:
            r = cv2.resize(np.ascontiguousarray(sources[name]), (w, h), interpolation=cv2.INTER_LINEAR)
            f = f"out_{name}_to_{w}x{h}.png"
            cv2.imwrite(str(out / f), r)
            cases.append({"src": f"src_{name}.png", "w": w, "h": h, "out": f})

    decode = {t.name: rgb_hash(cv2.imread(str(t))) for t in tiles}

    letterbox = []
    for t in tiles[:2]:
        img = cv2.imread(str(t))
        for src, crop in [(t.name, img), (f"{t.name}[:300, :217]", img[:300, :217])]:
            for imgsz in (640, 320, 416):
                p = LetterBox((imgsz, imgsz), auto=True, stride=32)(image=np.ascontiguousarray(crop))
                v = load_image_val(np.ascontiguousarray(crop), imgsz)
                v = LetterBox((imgsz, imgsz), auto=False, scaleup=False)(image=v)
                letterbox.append(
                    {
                        "image": t.name,
                        "crop": list(crop.shape[:2]),
                        "imgsz": imgsz,
                        "predict_shape": list(p.shape[:2]),
                        "predict": rgb_hash(p),
                        "val_shape": list(v.shape[:2]),
                        "val": rgb_hash(v),
                    }
                )
    meta = {
        "opencv": cv2.__version__,
        "ultralytics": ultralytics.__version__,
        "resize": cases,
        "decode_fnv1a64_rgb": decode,
        "letterbox": letterbox,
    }
    (out / "cases.json").write_text(json.dumps(meta, indent=1) + "\n")
    print(f"{len(cases)} resize cases, {len(decode)} decodes, {len(letterbox)} letterboxes -> {out}")


if __name__ == "__main__":
    main()
