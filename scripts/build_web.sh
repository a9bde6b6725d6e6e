#!/usr/bin/env bash
# Builds the web page into web/dist/: the `web` crate for wasm32-unknown-unknown with SIMD128 (flags in
# .cargo/config.toml), its JavaScript bindings by wasm-bindgen, and the page's own files. Serve web/dist/
# over HTTP (a module worker does not load from file://), e.g. `python3 -m http.server -d web/dist`.
#
# wasm-bindgen rather than wasm-pack or trunk: it is the one tool the bindings need (wasm-pack wraps it and
# downloads its own copy at run time; trunk is an application bundler, and this page has no bundling step).
# Needs: rustup target add wasm32-unknown-unknown; wasm-bindgen-cli at the version in crates/web/Cargo.toml
# (installed here with cargo if missing).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${YOLO_WASM_TARGET_DIR:-/var/tmp/yolo-wasm-target}"
version=$(sed -n 's/^wasm-bindgen = "=\(.*\)"/\1/p' crates/web/Cargo.toml)
[ -n "$version" ] || { echo "no wasm-bindgen version pinned in crates/web/Cargo.toml" >&2; exit 1; }
if [ "$(wasm-bindgen --version 2>/dev/null | cut -d' ' -f2)" != "$version" ]; then
    echo "== cargo install wasm-bindgen-cli $version"
    cargo install -q wasm-bindgen-cli --version "$version"
fi
rustup target add wasm32-unknown-unknown >/dev/null 2>&1 || true
echo "== cargo build -p web (wasm32-unknown-unknown, SIMD128)"
cargo build --release --target wasm32-unknown-unknown -p web
rm -rf web/dist
mkdir -p web/dist
# The name section (0.9 MB of function names) only dresses up traces in the browser's console; messages are ours.
wasm-bindgen --target web --no-typescript --remove-name-section --remove-producers-section --out-dir web/dist \
    "$CARGO_TARGET_DIR/wasm32-unknown-unknown/release/web.wasm"
cp web/index.html web/yolo.js web/worker.js web/dist/
echo "web/dist: $(du -sh web/dist | cut -f1) ($(du -h web/dist/web_bg.wasm | cut -f1) of WebAssembly)"
