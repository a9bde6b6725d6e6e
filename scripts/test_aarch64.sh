#!/usr/bin/env bash
# The CPU engine on aarch64 (NEON), cross-compiled and run under qemu-user: the engine's kernel tests, the
# engine against burn on every fixture, and `deploy verify` on each parity fixture, which must report the
# engine's NEON rows (a model sent back to burn fails this). No speed is measured under emulation.
# Needs: rustup target aarch64-unknown-linux-gnu, apt gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/yolo-target}"
target=aarch64-unknown-linux-gnu
sysroot=/usr/aarch64-linux-gnu
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER="qemu-aarch64 -L $sysroot"
# The kernel tests fail instead of passing with no SIMD level to run.
export YOLO_REQUIRE_ALL=1
# CPU only: the wgpu backend is not what this checks, and leaving it out halves the build.
flags=(--release --target "$target" -p deploy --no-default-features)

echo "== engine kernel tests (aarch64, qemu)"
cargo test "${flags[@]}" --lib engine
echo "== engine against burn on every fixture (aarch64, qemu)"
cargo test "${flags[@]}" --test engine
echo "== deploy verify on the parity fixtures (aarch64, qemu)"
cargo build "${flags[@]}" --bin deploy
bin="$CARGO_TARGET_DIR/$target/release/deploy"
checked=0
for fx in crates/deploy/tests/fixtures/*/; do
    [ -f "$fx/meta.json" ] || continue
    out=$(qemu-aarch64 -L "$sysroot" "$bin" verify --fixture "$fx" 2>&1) || {
        echo "$out"
        echo "FAIL: deploy verify $fx" >&2
        exit 1
    }
    if ! grep -q "(engine, Neon)" <<<"$out" || grep -q "not run" <<<"$out"; then
        echo "$out"
        echo "FAIL: $fx did not run on the NEON engine" >&2
        exit 1
    fi
    echo "ok  $fx"
    checked=$((checked + 1))
done
[ "$checked" -gt 0 ] || { echo "FAIL: no parity fixtures found" >&2; exit 1; }
echo "aarch64: $checked fixtures verified on the NEON engine"
