#!/usr/bin/env bash
# The web page in a real browser: builds web/dist (scripts/build_web.sh), installs the test tools from
# web/package-lock.json (puppeteer-core, the headless Chromium in @sparticuz/chromium, onnxruntime-web) and
# runs web/test/browser.mjs: the page against native `deploy predict` on the same weights and images, and its
# messages for bad input. `scripts/test_web.sh bench` runs web/test/bench.mjs (ours next to onnxruntime-web).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/build_web.sh
(cd web && npm ci --no-audit --no-fund --loglevel=error)
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/yolo-target}"
cargo build -q --release -p deploy --bin deploy
export DEPLOY_BIN="$CARGO_TARGET_DIR/release/deploy"
if [ "${1:-}" = bench ]; then
    node web/test/bench.mjs
else
    node web/test/browser.mjs
fi
