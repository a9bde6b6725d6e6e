// Runs a wasm32-wasip1 program (a cargo test binary) under Node's WASI, as cargo's target runner:
//   CARGO_TARGET_WASM32_WASIP1_RUNNER="node scripts/wasi_run.mjs" cargo test --target wasm32-wasip1 ...
// The root directory is preopened: tests read their fixtures by absolute path (CARGO_MANIFEST_DIR).
import { readFile } from "node:fs/promises";
import { WASI } from "node:wasi";
import process from "node:process";

const [wasmPath, ...args] = process.argv.slice(2);
const wasi = new WASI({
  version: "preview1",
  args: [wasmPath, ...args],
  env: process.env,
  preopens: { "/": "/" },
  returnOnExit: true,
});
const module = await WebAssembly.compile(await readFile(wasmPath));
const instance = await WebAssembly.instantiate(module, wasi.getImportObject());
process.exitCode = wasi.start(instance);
