"""Camera-motion compensation per frame: Ultralytics' GMC(method="sparseOptFlow") (OpenCV, with the threads the
package configures) next to ours (`cargo run --release -p track --example gmc_speed`), on the same frames (the
pan's grey tile from crates/track/tests/fixtures scaled up, moving one tile pixel per frame) at 1920x1080 and at
the pan's 192x128, alternating, median of 3 runs each. Prints the markdown table of docs/tracking.md.

    python scripts/gmc_speed.py [FRAMES]
"""

import statistics
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parent.parent


SIZES = [(1920, 1080, 5), (192, 128, 1)]


def frames(n, w, h, scale):
    tile = cv2.imread(str(ROOT / "crates/track/tests/fixtures/pan_grey.png"), cv2.IMREAD_GRAYSCALE)
    out = []
    for i in range(n):
        ys = (np.arange(h) // scale) % tile.shape[0]
        xs = (np.arange(w) // scale + i) % tile.shape[1]
        g = tile[ys][:, xs]
        out.append(cv2.merge([g, g, g]))
    return out


def theirs(fs):
    from ultralytics.trackers.utils.gmc import GMC

    gmc, times, dx = GMC(method="sparseOptFlow"), [], 0.0
    for f in fs:
        t = time.perf_counter()
        h = gmc.apply(f)
        times.append((time.perf_counter() - t) * 1e3)
        dx += h[0, 2]
    return statistics.median(times[1:]), dx / (len(fs) - 1)


def ours(n, w, h, scale):
    out = subprocess.run(["cargo", "run", "-q", "--release", "-p", "track", "--example", "gmc_speed", "--", str(n),
                          str(w), str(h), str(scale)],
                         cwd=ROOT, check=True, capture_output=True, text=True).stdout.split()
    return float(out[3]), float(out[5])


def main():
    import ultralytics.trackers.utils.gmc  # noqa: F401  (the package sets OpenCV's threads when imported)

    n = int(sys.argv[1]) if len(sys.argv) > 1 else 30
    print("| frames, median ms per frame | Ultralytics GMC (OpenCV %s, %d thread(s)) | ours | ours / theirs | mean x "
          "shift theirs / ours (px) |" % (cv2.__version__, cv2.getNumThreads()))
    print("|---|---|---|---|---|")
    for w, h, scale in SIZES:
        fs = frames(n, w, h, scale)
        a, b = [], []
        for _ in range(3):
            a.append(theirs(fs))
            b.append(ours(n, w, h, scale))
        ta, tb = statistics.median(x[0] for x in a), statistics.median(x[0] for x in b)
        print(f"| {w}x{h}, {n} | {ta:.2f} | {tb:.2f} | {tb / ta:.2f}x | {a[0][1]:.3f} / {b[0][1]:.3f} |")


if __name__ == "__main__":
    main()
