#!/usr/bin/env bash
# The GPU check: ours (burn on wgpu) next to PyTorch on one NVIDIA GPU, in about 7 minutes. Builds nothing: it
# needs gpu-bundle/ (made by scripts/gpu_bundle.sh on a CPU machine: stripped release binaries, the Vulkan
# loader's .deb, the Ultralytics wheels), python3 with PyTorch, and nvidia-smi. Results: $OUT/gpu_check.md and
# gpu_check.json (OUT defaults to runs/gpu_check). What it measures: scripts/gpu_check.py.
#   scripts/gpu_check.sh              # on the GPU machine
#   scripts/gpu_check.sh --dry-run    # here: lavapipe (--device wgpu:cpu), tiny sizes, PyTorch on the CPU;
#                                     # YOLO_BIN=DIR uses binaries from DIR instead of the bundle
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-runs/gpu_check}
mkdir -p "$OUT"
BUNDLE=gpu-bundle
DRY=()
[[ ${1:-} == --dry-run ]] && DRY=(--dry-run)

BIN=${YOLO_BIN:-}
if [[ -z $BIN ]]; then
    BIN=/tmp/yolo-gpu-bin
    mkdir -p "$BIN"
    for f in "$BUNDLE"/bin/*.xz; do
        [[ -e $f ]] || { echo "no $BUNDLE/bin/*.xz: run scripts/gpu_bundle.sh first (or set YOLO_BIN)" >&2; exit 2; }
        python3 -c 'import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2], "wb"))' \
            "$f" "$BIN/$(basename "$f" .xz)"
        chmod +x "$BIN/$(basename "$f" .xz)"
    done
fi

# The Vulkan loader, where the machine has the driver but not the loader.
if ! ldconfig -p | grep -q 'libvulkan.so.1 '; then
    for f in "$BUNDLE"/debs/*.deb; do [[ -e $f ]] && dpkg -x "$f" /; done
    ldconfig
fi
# NVIDIA's Vulkan driver manifest where the driver is mounted under /usr/local/nvidia (containers).
nv_icd=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
if [[ -z ${VK_DRIVER_FILES:-} && -f $nv_icd && ${#DRY[@]} -eq 0 ]]; then
    export VK_DRIVER_FILES=$nv_icd
fi
# Ultralytics for the PyTorch side (PyTorch, OpenCV, NumPy, PyYAML are expected on the machine).
if compgen -G "$BUNDLE/wheels/*.whl" >/dev/null && ! python3 -c 'import ultralytics' 2>/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/yolo-site "$BUNDLE"/wheels/*.whl
    export PYTHONPATH=/tmp/yolo-site${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONUNBUFFERED=1
exec python3 scripts/gpu_check.py --bin "$BIN" --out "$OUT" "${DRY[@]}"
