"""What Ultralytics' trackers do on a panning clip, for `crates/track/tests/parity.rs`.

The clip (written to a temporary folder; `window` in the fixture says where each frame was cut) is a 192x128 window over a datasets/trees val tile, 72 frames, moving with changing speed and turning
(so the camera motion matters), written by OpenCV as FFV1 in AVI (lossless, so every decoder sees the same
pixels). The package tracks it with the Ultralytics-trained weights of the video fixture
(crates/deploy/tests/fixtures/trained_mobileone, see make_trained_fixture.py) at imgsz 192 with its track-mode
defaults (conf 0.1) with bytetrack.yaml, botsort.yaml as shipped (camera-motion compensation by sparse optical
flow) and botsort.yaml with `gmc_method: none`, and again with low
thresholds (conf 0.005, no score fusion) so that many tracks start, get lost and are found again. Every call
of the tracker is recorded: the detections it was given (cx, cy, w, h, conf, cls as float32, in the frame's
pixels) and what it returned (x1, y1, x2, y2, track id, score, cls, detection index). The test feeds the same
detections to our trackers, so it checks association alone, without the detector.

It also writes the pan's first 24 frames (the slow part) as crates/deploy/tests/fixtures/video/pan24.avi and
tracks that with `save_txt` and `save_conf` through each tracker YAML, for `crates/deploy/tests/track_cli.rs`:
the labels go to video/track_<run>/labels/ next to the YAML used (video/track_<run>/tracker.yaml).

The weights are the fixture's own (trained_mobileone/weights.safetensors, made by the package and stored with
their YAML), put back into an Ultralytics checkpoint for the run.

    python scripts/make_track_fixture.py
"""

import json
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "crates/track/tests/fixtures"
SCENE = ROOT / "datasets/trees/images/val/2019_YELL_2_541000_4977000_image_crop_r0_c0.jpg"
W, H, FRAMES = 192, 128, 72


def window_path():
    """Integer window corners: right and slowly down, speeding up, then a turn downwards and back left."""
    pts, x, y = [], 0.0, 0.0
    for i in range(FRAMES):
        pts.append((int(round(x)), int(round(y))))
        if i < 36:
            x += 1.0 + 0.25 * i  # 1 .. 9.75 px per frame
            y += 1.0
        else:
            x -= 2.0 + 0.1 * (i - 36)
            y += 4.0 + 0.1 * (i - 36)
    return pts


def write_clip(path: Path, frames=FRAMES):
    from make_video_fixture import write_lossless

    write_lossless(path, cv2.imread(str(SCENE)), window_path()[:frames], W, H, 30.0)


def checkpoint_from_fixture(dst: Path) -> str:
    """An Ultralytics checkpoint holding trained_mobileone/weights.safetensors: the model its metadata's YAML
    builds, with those tensors."""
    import torch
    import yaml
    from safetensors import safe_open
    from ultralytics.nn.tasks import DetectionModel

    src = ROOT / "crates/deploy/tests/fixtures/trained_mobileone/weights.safetensors"
    with safe_open(str(src), "pt") as f:
        meta = f.metadata()
        sd = {k: f.get_tensor(k).float() for k in f.keys()}
    cfg = yaml.safe_load(meta["yaml"])
    model = DetectionModel(cfg, ch=3, nc=int(meta["nc"]), verbose=False)
    missing, unexpected = model.load_state_dict(sd, strict=False)
    assert not unexpected and all(k.endswith("num_batches_tracked") for k in missing), (missing, unexpected)
    model.names = dict(enumerate(json.loads(meta["names"])))
    model.eval()
    torch.save({"model": model, "train_args": {}}, dst)
    return str(dst)


def labels(weights: str, clip: Path, tracker_yaml: str, conf, dst: Path):
    """Ultralytics' own label files for `yolo track` on `clip`, copied to dst/labels with the YAML beside."""
    import shutil

    from ultralytics import YOLO

    shutil.rmtree(dst, ignore_errors=True)
    dst.mkdir(parents=True)
    shutil.copy(tracker_yaml, dst / "tracker.yaml")
    with tempfile.TemporaryDirectory() as t:
        YOLO(weights).track(source=str(clip), imgsz=192, tracker=tracker_yaml, conf=conf, save=False,
                            save_txt=True, save_conf=True, project=t, name="p", exist_ok=True, device="cpu",
                            verbose=False)
        src = Path(t) / "p/labels"
        if src.exists():
            shutil.copytree(src, dst / "labels")
        else:
            (dst / "labels").mkdir()
    return sorted(p.name for p in (dst / "labels").iterdir())


def record(weights: str, clip: Path, tracker_yaml: str, conf=None):
    from ultralytics import YOLO
    from ultralytics.trackers.byte_tracker import BYTETracker

    calls = []
    orig = BYTETracker.update

    def update(self, results, img=None, feats=None, **kw):
        dets = np.concatenate([results.xywh, results.conf[:, None], results.cls[:, None]], axis=1)
        out = orig(self, results, img, feats, **kw)
        calls.append({"dets": dets.astype(np.float32).tolist(), "tracks": np.asarray(out).tolist()})
        return out

    BYTETracker.update = update
    try:
        with tempfile.TemporaryDirectory() as t:
            YOLO(weights).track(source=str(clip), imgsz=192, tracker=tracker_yaml, conf=conf, save=False,
                                project=t, name="p", exist_ok=True, device="cpu", verbose=False)
    finally:
        BYTETracker.update = orig
    return calls


def main():
    sys.path.insert(0, str(ROOT / "scripts"))
    import mobileone

    mobileone.register()
    import ultralytics

    OUT.mkdir(parents=True, exist_ok=True)
    ckpt_dir = tempfile.TemporaryDirectory()
    weights = checkpoint_from_fixture(Path(ckpt_dir.name) / "fixture.pt")
    clip_dir = tempfile.TemporaryDirectory()
    clip = Path(clip_dir.name) / "pan.avi"
    write_clip(clip)
    video = ROOT / "crates/deploy/tests/fixtures/video"
    write_clip(video / "pan24.avi", 24)
    cfg_dir = Path(ultralytics.__file__).parent / "cfg/trackers"
    # The fixture's detector is weak (its scores stay below 0.07 on this clip: the defaults track nothing), so
    # each tracker also runs with thresholds low enough for many tracks to start, be lost and be found again
    # (and IoU costs alone: weighted by such scores no pair would ever match).
    low = {"track_high_thresh: 0.25": "track_high_thresh: 0.03", "track_low_thresh: 0.1": "track_low_thresh: 0.005",
           "new_track_thresh: 0.25": "new_track_thresh: 0.03", "fuse_score: True": "fuse_score: False"}
    runs = {}
    with tempfile.TemporaryDirectory() as t:
        # botsort.yaml as shipped (camera motion by sparseOptFlow), and with `gmc_method: none`.
        for key, name, gmc in [("bytetrack", "bytetrack", None), ("botsort_gmc_none", "botsort", "none"),
                               ("botsort", "botsort", None)]:
            text = (cfg_dir / f"{name}.yaml").read_text()
            if gmc:
                text = text.replace("gmc_method: sparseOptFlow", f"gmc_method: {gmc}")
            for suffix, subs, conf in [("", {}, None), ("_low", low, 0.005)]:
                for a, b in subs.items():
                    assert a in text, a
                    text = text.replace(a, b)
                path = Path(t) / f"{key}{suffix}.yaml"
                path.write_text(text)
                key = key.removesuffix("_low") + suffix
                runs[key] = {"tracker": text, "conf": conf, "calls": record(weights, clip, str(path), conf)}
                got = labels(weights, video / "pan24.avi", str(path), conf, video / f"track_{key}")
                print(key, "labels:", got, file=sys.stderr)
    for k, v in runs.items():
        ids = {int(r[4]) for c in v["calls"] for r in c["tracks"]}
        print(k, len(v["calls"]), "frames,", len(ids), "ids", file=sys.stderr)
    out = {
        "ultralytics": ultralytics.__version__,
        "generator": "scripts/make_track_fixture.py",
        "window": window_path(),
        "runs": runs,
    }
    (OUT / "tracks.json").write_text(json.dumps(out, separators=(",", ":")) + "\n")


if __name__ == "__main__":
    main()
