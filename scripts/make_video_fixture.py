"""A short video and what Ultralytics' predict writes for it, for `deploy predict --source clip.avi`.

The clip is a 192x128 window panning across a datasets/trees val tile (10 frames), written by OpenCV as FFV1 in AVI:
lossless and stored as BGR, so OpenCV's decoder and ours see the same pixels and the labels can be compared
number by number. The package predicts it with the Ultralytics-trained checkpoint whose weights are
crates/deploy/tests/fixtures/trained_mobileone/weights.safetensors (see make_trained_fixture.py), twice at imgsz
192 (no resize, no padding): every frame, and with vid_stride 3; its labels/*.txt (named `clip_<frame>.txt`)
are copied next to the clip.

A phone records portrait video as landscape frames plus a display matrix that says "turn 90 degrees to show".
rotated.mp4 stores the same panning window turned a quarter counter-clockwise (MPEG-4 part 2, 6 frames) and its
track header carries the matrix of a 90-degree clockwise display rotation (patched into the `tkhd` box, as a
phone writes it); OpenCV (so Ultralytics) turns the frames upright, and labels_rotated/ holds what the package
predicts on them.

    python scripts/make_video_fixture.py /var/tmp/ul/mo/weights/best.pt   # writes crates/deploy/tests/fixtures/video/
"""

import shutil
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "crates/deploy/tests/fixtures/video"
SCENE = ROOT / "datasets/trees/images/val/2019_YELL_2_541000_4977000_image_crop_r0_c0.jpg"
W, H, FRAMES = 192, 128, 10
CONF = 0.02


def write_lossless(path: Path, scene, corners, w: int, h: int, fps: float):
    """The `w` x `h` windows of `scene` at `corners` as FFV1 in AVI, checked to read back exactly (lossless:
    the package and our decoder see the same pixels)."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"FFV1"), fps, (w, h))
    assert writer.isOpened(), "OpenCV cannot write FFV1"
    frames = []
    for x, y in corners:
        assert 0 <= x <= scene.shape[1] - w and 0 <= y <= scene.shape[0] - h, (x, y)
        frame = np.ascontiguousarray(scene[y : y + h, x : x + w])
        writer.write(frame)
        frames.append(frame)
    writer.release()
    cap = cv2.VideoCapture(str(path))
    for i, want in enumerate(frames):
        ok, got = cap.read()
        assert ok and np.array_equal(got, want), f"frame {i} does not read back exactly"
    assert not cap.read()[0]


def write_clip(path: Path):
    write_lossless(path, cv2.imread(str(SCENE)), [(20 * i, 12 * i) for i in range(FRAMES)], W, H, 10.0)


def write_rotated(path: Path):
    import struct

    scene = cv2.imread(str(SCENE))
    tmp = path.with_suffix(".tmp.mp4")
    writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (H, W))
    for i in range(6):
        frame = np.ascontiguousarray(scene[12 * i : 12 * i + H, 20 * i : 20 * i + W])
        writer.write(np.ascontiguousarray(cv2.rotate(frame, cv2.ROTATE_90_COUNTERCLOCKWISE)))
    writer.release()
    data = bytearray(tmp.read_bytes())
    tmp.unlink()
    i = data.find(b"tkhd")
    # size/type, version+flags, times and ids (v0: 20 bytes, v1: 32), reserved, layer, group, volume, reserved.
    off = i + 4 + 4 + (32 if data[i + 4] == 1 else 20) + 8 + 2 + 2 + 2 + 2
    assert struct.unpack(">9i", data[off : off + 36]) == (65536, 0, 0, 0, 65536, 0, 0, 0, 1 << 30)
    data[off : off + 36] = struct.pack(">9i", 0, 65536, 0, -65536, 0, 0, 0, 0, 1 << 30)
    path.write_bytes(bytes(data))
    cap = cv2.VideoCapture(str(path))
    ok, frame = cap.read()
    assert ok and frame.shape == (H, W, 3), "OpenCV does not turn the frames upright"


def main():
    sys.path.insert(0, str(ROOT / "scripts"))
    import mobileone

    mobileone.register()
    from ultralytics import YOLO

    OUT.mkdir(parents=True, exist_ok=True)
    clip = OUT / "clip.avi"
    write_clip(clip)
    write_rotated(OUT / "rotated.mp4")
    with tempfile.TemporaryDirectory() as t:
        YOLO(sys.argv[1]).predict(source=str(OUT / "rotated.mp4"), imgsz=192, conf=CONF, save_txt=True,
                                  save_conf=True, save=False, project=t, name="p", exist_ok=True, device="cpu",
                                  verbose=False)
        dst = OUT / "labels_rotated"
        shutil.rmtree(dst, ignore_errors=True)
        shutil.copytree(Path(t) / "p/labels", dst)
        print("rotated:", sorted(p.name for p in dst.iterdir()))
    for stride in (1, 3):
        with tempfile.TemporaryDirectory() as t:
            model = YOLO(sys.argv[1])
            model.predict(source=str(clip), imgsz=192, conf=CONF, vid_stride=stride, save_txt=True,
                          save_conf=True, save=False, project=t, name="p", exist_ok=True, device="cpu",
                          verbose=False)
            dst = OUT / f"labels_stride{stride}"
            shutil.rmtree(dst, ignore_errors=True)
            shutil.copytree(Path(t) / "p/labels", dst)
            print(f"vid_stride {stride}:", sorted(p.name for p in dst.iterdir()))


if __name__ == "__main__":
    main()
