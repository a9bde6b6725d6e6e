"""What Ultralytics' camera-motion compensation (`GMC(method="sparseOptFlow")`, OpenCV underneath) computes on the
72-frame pan of make_track_fixture.py, for `crates/track/tests/gmc.rs`.

The frames are windows of a datasets/trees val tile; GMC only looks at them in grey, so the fixture stores the
grey tile (cv2.cvtColor of cv2.imread, the part the windows cover) as a PNG and the test cuts the same windows
from it (a grey frame given as RGB with equal channels converts back to the same grey). The script checks that
the clip OpenCV decodes holds exactly those windows, so this is what the package sees in track mode.

Recorded: for every frame the warp the package returns (2x3, float64), the number of corners and of points the
optical flow followed; for the first two frames the corners themselves and the flow's output (points, status),
so each OpenCV step is checked on its own; and the half-size grey of a 193x129 corner of the tile (an odd size,
OpenCV's general bilinear resize).

    python scripts/make_gmc_fixture.py
"""

import json
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "crates/track/tests/fixtures"


def main():
    sys.path.insert(0, str(ROOT / "scripts"))
    from make_track_fixture import FRAMES, H, SCENE, W, window_path, write_clip

    import ultralytics
    from ultralytics.trackers.utils.gmc import GMC

    path = window_path()
    scene = cv2.imread(str(SCENE))
    with tempfile.TemporaryDirectory() as t:
        clip = Path(t) / "pan.avi"
        write_clip(clip)
        cap = cv2.VideoCapture(str(clip))
        frames = []
        while True:
            ok, f = cap.read()
            if not ok:
                break
            frames.append(f)
    assert len(frames) == FRAMES, len(frames)
    for f, (x, y) in zip(frames, path):
        assert np.array_equal(f, scene[y : y + H, x : x + W]), (x, y)
    xmax, ymax = max(p[0] for p in path) + W, max(p[1] for p in path) + H
    grey = cv2.cvtColor(scene, cv2.COLOR_BGR2GRAY)[:ymax, :xmax]
    cv2.imwrite(str(OUT / "pan_grey.png"), grey)

    gmc = GMC(method="sparseOptFlow")
    params = gmc.feature_params
    rows = []
    first = {}
    prev_small, prev_pts = None, None
    for i, f in enumerate(frames):
        warp = gmc.apply(f)
        small = cv2.resize(cv2.cvtColor(f, cv2.COLOR_BGR2GRAY), (W // 2, H // 2))
        pts = cv2.goodFeaturesToTrack(small, mask=None, **params)
        row = {"warp": np.asarray(warp, dtype=np.float64).tolist(), "corners": 0 if pts is None else len(pts)}
        if prev_pts is not None:
            nxt, status, _ = cv2.calcOpticalFlowPyrLK(prev_small, small, prev_pts, None)
            row["followed"] = int(status.sum())
            if i == 1:
                first["flow"] = {"points": nxt.reshape(-1, 2).tolist(), "status": status.ravel().tolist()}
        if i < 2:
            first[f"corners{i}"] = pts.reshape(-1, 2).tolist()
        rows.append(row)
        prev_small, prev_pts = small, pts
    # Frames whose size does not halve exactly go through OpenCV's general bilinear resize.
    odd = np.ascontiguousarray(grey[:129, :193])
    odd_half = cv2.resize(odd, (193 // 2, 129 // 2))
    out = {
        "odd_half": {"size": [193, 129], "pixels": odd_half.ravel().tolist()},
        "ultralytics": ultralytics.__version__,
        "opencv": cv2.__version__,
        "generator": "scripts/make_gmc_fixture.py",
        "size": [W, H],
        "window": path,
        "frames": rows,
        **first,
    }
    (OUT / "gmc.json").write_text(json.dumps(out, separators=(",", ":")) + "\n")
    moved = sum(abs(r["warp"][0][2]) + abs(r["warp"][1][2]) for r in rows)
    print(f"{len(rows)} frames, total |translation| {moved:.1f} px", file=sys.stderr)


if __name__ == "__main__":
    main()
