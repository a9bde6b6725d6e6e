// detect() on our page next to onnxruntime-web (its WASM backend, SIMD) running the same fused model, exported
// to ONNX by `deploy export`, in the same browser and run, at the same thread count. Ours times the whole
// detect (RGBA to RGB, letterbox, forward, NMS) inside its worker; onnxruntime-web times session.run alone
// on an input of the same letterboxed size. Prints a Markdown table (docs/web.md).
// Run by scripts/bench_web.sh; DEPLOY_BIN names the native binary (for the ONNX export).
import { spawnSync } from 'node:child_process';
import { mkdirSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { browser, open, repo, serve, webDir } from './harness.mjs';

const WEIGHTS = 'crates/deploy/tests/fixtures/trained_mobileone/weights.safetensors';
const IMAGE = 'datasets/trees/images/val/2019_YELL_2_541000_4977000_image_crop_r0_c0.jpg';
const SIZES = (process.env.SIZES || '640,320').split(',').map(Number);
const RUNS = Number(process.env.RUNS || 15);
const deployBin = process.env.DEPLOY_BIN || join(process.env.CARGO_TARGET_DIR || '/var/tmp/yolo-target', 'release/deploy');

const median = (v) => {
  const s = [...v].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

const server = await serve();
const b = await browser();
const rows = [];
try {
  const page = await open(b, `${server.url}/index.html`);
  const info = await page.evaluate(async (w) => {
    await yolo.load(w);
    return { backend: yolo.backend, isolated: crossOriginIsolated, cores: navigator.hardwareConcurrency, ua: navigator.userAgent };
  }, `/repo/${WEIGHTS}`);
  for (const imgsz of SIZES) {
    const out = join(webDir, 'dist/bench', String(imgsz));
    mkdirSync(out, { recursive: true });
    const r = spawnSync(deployBin, ['export', '--weights', join(repo, WEIGHTS), '--out', out, '--format', 'onnx',
      '--imgsz', String(imgsz), '--device', 'cpu'], { encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`deploy export failed:\n${r.stderr}`);
    const onnx = readdirSync(out).find((f) => f.endsWith('.onnx'));
    const ours = await page.evaluate(async (u, imgsz, runs) => {
      const bitmap = await createImageBitmap(await (await fetch(u)).blob(), { colorSpaceConversion: 'none' });
      const ms = [];
      for (let i = 0; i < runs + 3; i++) {
        await yolo.detect(bitmap, { imgsz });
        if (i >= 3) ms.push(yolo.lastMs);
      }
      return ms;
    }, `/repo/${IMAGE}`, imgsz, RUNS);
    for (const threads of [1, 2]) {
      // Each thread count in a fresh page: onnxruntime-web fixes its thread pool when it first starts.
      const ort = await open(b, `${server.url}/index.html`);
      const peer = await ort.evaluate(async (url, imgsz, threads, runs) => {
        const ort = await import('/ort/ort.wasm.min.mjs');
        ort.env.wasm.wasmPaths = '/ort/';
        ort.env.wasm.numThreads = threads;
        const session = await ort.InferenceSession.create(url, { executionProviders: ['wasm'], graphOptimizationLevel: 'all' });
        const x = new ort.Tensor('float32', new Float32Array(3 * imgsz * imgsz).fill(0.5), [1, 3, imgsz, imgsz]);
        const ms = [];
        for (let i = 0; i < runs + 3; i++) {
          const t0 = performance.now();
          await session.run({ [session.inputNames[0]]: x });
          if (i >= 3) ms.push(performance.now() - t0);
        }
        return ms;
      }, `/bench/${imgsz}/${onnx}`, imgsz, threads, RUNS);
      await ort.close();
      rows.push({ imgsz, threads, ours: threads === 1 ? median(ours) : null, peer: median(peer) });
    }
  }
  console.log(`\n${info.ua}; ${info.cores} cores; cross-origin isolated: ${info.isolated}; ours: ${info.backend}`);
  console.log(`model: ${WEIGHTS} (fused), image ${IMAGE.split('/').pop()} (400x400), median of ${RUNS} runs after 3\n`);
  console.log('| imgsz | threads | ours detect() ms | onnxruntime-web session.run ms | ours / onnxruntime-web |');
  console.log('|---|---|---|---|---|');
  for (const r of rows) {
    const ours = r.ours === null ? 'n/a (one thread)' : r.ours.toFixed(1);
    const ratio = r.ours === null ? '' : (r.ours / r.peer).toFixed(2);
    console.log(`| ${r.imgsz} | ${r.threads} | ${ours} | ${r.peer.toFixed(1)} | ${ratio} |`);
  }
} finally {
  await b.shut();
  server.close();
}
