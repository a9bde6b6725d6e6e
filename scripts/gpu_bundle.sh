#!/usr/bin/env bash
# Prepares gpu-bundle/ for scripts/gpu_check.sh, on a CPU machine with the Rust toolchain and network access to
# the package registries: the release binaries it runs (stripped, xz-compressed: the GPU machine has no Rust
# toolchain and gets at most 64 MiB), the Vulkan loader's .deb (the GPU machine may have the NVIDIA driver but
# no loader) and the Ultralytics wheels for the PyTorch side (PyTorch itself is expected there).
#   scripts/gpu_bundle.sh            # then: scripts/gpu_check.sh on the GPU machine, gpu-bundle/ carried along
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/yolo-target}"
B=gpu-bundle
rm -rf "$B" && mkdir -p "$B/bin" "$B/debs" "$B/wheels"

cargo build --release -p train --bin bench_step -p data
# Without the `video` feature: the GPU machine has no FFmpeg libraries to link at run time.
cargo build --release -p deploy --no-default-features --features wgpu
for bin in bench_step deploy data; do
    strip -o "$B/bin/$bin" "$CARGO_TARGET_DIR/release/$bin"
    xz -T0 -6 "$B/bin/$bin"
done

# The loader only (libvulkan.so.1); the NVIDIA ICD comes with the driver.
lists=$(mktemp -d)
mkdir -p "$lists/partial"
apt_o=(-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 "-oDir::State::Lists=$lists")
apt-get "${apt_o[@]}" update -qq
(cd "$B/debs" && apt-get "${apt_o[@]}" download libvulkan1)
rm -rf "$lists"

PY=${PY:-python3}
"$PY" -m pip download -q --no-deps --only-binary=:all: -d "$B/wheels" ultralytics==8.4.190 ultralytics-thop
du -sh "$B"/* "$B"
