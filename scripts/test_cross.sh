#!/usr/bin/env bash
# The CPU engine on another architecture, cross-compiled and run under emulation:
#   scripts/test_cross.sh aarch64   NEON, under qemu-aarch64 (apt gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user)
#   scripts/test_cross.sh wasm      WebAssembly SIMD128 (wasm32-wasip1), under Node's WASI (node >= 20)
# Each runs the engine's kernel tests, the engine against burn on every fixture, and `deploy verify` on every
# parity fixture, which must report that level's engine rows (a model sent back to burn fails this). No speed is
# measured under emulation. Needs the rustup target (aarch64-unknown-linux-gnu or wasm32-wasip1).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
case "${1:-}" in
aarch64)
    target=aarch64-unknown-linux-gnu
    level=Neon
    tests=engine:: # the kernels and the helper threads
    export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/yolo-target}"
    export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
    runner=(qemu-aarch64 -L /usr/aarch64-linux-gnu)
    bin=deploy
    ;;
wasm)
    target=wasm32-wasip1
    level=Simd128
    tests=engine::tests # the kernels (WASI has no threads: the team's tests need them)
    # Its own folder: RUSTFLAGS differ, and the WebAssembly build of burn is kept apart from the native one.
    export CARGO_TARGET_DIR="${YOLO_WASM_TARGET_DIR:-/var/tmp/yolo-wasm-target}"
    export RUSTFLAGS="-C target-feature=+simd128"
    runner=(node --no-warnings "$root/scripts/wasi_run.mjs")
    bin=deploy.wasm
    ;;
*)
    echo "usage: $0 aarch64|wasm" >&2
    exit 2
    ;;
esac
upper=$(tr 'a-z-' 'A-Z_' <<<"$target")
export "CARGO_TARGET_${upper}_RUNNER=${runner[*]}"
# The kernel tests fail instead of passing with no SIMD level to run.
export YOLO_REQUIRE_ALL=1
# CPU only: the wgpu backend is not what this checks, and leaving it out halves the build.
flags=(--release --target "$target" -p deploy --no-default-features)

echo "== engine kernel tests ($target)"
cargo test "${flags[@]}" --lib "$tests"
echo "== engine against burn on every fixture ($target)"
cargo test "${flags[@]}" --test engine
echo "== deploy verify on the parity fixtures ($target)"
cargo build "${flags[@]}" --bin deploy
checked=0
for fx in "$root"/crates/deploy/tests/fixtures/*/; do
    [ -f "$fx/meta.json" ] || continue
    out=$("${runner[@]}" "$CARGO_TARGET_DIR/$target/release/$bin" verify --fixture "$fx" 2>&1) || {
        echo "$out"
        echo "FAIL: deploy verify $fx ($target)" >&2
        exit 1
    }
    if ! grep -q "(engine, $level)" <<<"$out" || grep -q "not run" <<<"$out"; then
        echo "$out"
        echo "FAIL: $fx did not run on the $level engine" >&2
        exit 1
    fi
    echo "ok  $fx"
    checked=$((checked + 1))
done
[ "$checked" -gt 0 ] || { echo "FAIL: no parity fixtures found" >&2; exit 1; }
echo "$target: $checked fixtures verified on the $level engine"
