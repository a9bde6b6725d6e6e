#!/usr/bin/env bash
# Training throughput side by side: ours (CPU, burn-flex) and Ultralytics (PyTorch CPU), same model
# (yolov8n-mobileone), data (datasets/trees, 42 tiles), imgsz 320, batch 8, nbs 8, no validation, run one after
# the other on the same machine. Prints images/s for each and the ratio.
#   scripts/bench_train.sh [epochs] [python]
set -euo pipefail
cd "$(dirname "$0")/.."
EPOCHS=${1:-3}
PY=${2:-/var/tmp/pyenv/bin/python}
BIN=${CARGO_TARGET_DIR:-/var/tmp/yolo-target}/release/train
IMAGES=$((42 * EPOCHS))
rm -rf runs/bench/ours runs/bench/ultra
t0=$(date +%s.%N)
"$BIN" --epochs "$EPOCHS" --val false --close-mosaic 0 --out runs/bench/ours >/dev/null 2>&1
t1=$(date +%s.%N)
"$PY" - "$EPOCHS" <<'PY' >/dev/null 2>&1
import sys
sys.path.insert(0, "scripts")
import mobileone
mobileone.register()
from ultralytics import YOLO
e = int(sys.argv[1])
YOLO("configs/yolov8n-mobileone.yaml").train(data="datasets/trees/data.yaml", epochs=e, imgsz=320, batch=8, nbs=8,
    workers=2, device="cpu", val=False, plots=False, close_mosaic=0, amp=False, project="runs/bench", name="ultra", exist_ok=True)
PY
t2=$(date +%s.%N)
python3 - "$t0" "$t1" "$t2" "$IMAGES" <<'PY'
import sys
t0, t1, t2, n = map(float, sys.argv[1:])
ours, ultra = n / (t1 - t0), n / (t2 - t1)
print(f"ours {ours:.2f} images/s ({t1 - t0:.1f} s), Ultralytics {ultra:.2f} images/s ({t2 - t1:.1f} s), ratio ours/theirs {ours / ultra:.2f}")
PY
