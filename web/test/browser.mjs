// The page in a real headless Chromium, against native `deploy predict` on the same weights and images:
// every box within 1 px and 0.01 confidence, the same count; the engine's SIMD128 kernels must be what runs;
// bad input must end as a message on the page with nothing left in the console.
// Run by scripts/test_web.sh (it builds web/dist first); DEPLOY_BIN names the native binary.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { browser, open, repo, serve } from './harness.mjs';

const WEIGHTS = 'crates/deploy/tests/fixtures/trained_mobileone/weights.safetensors';
const IMAGES = 'datasets/trees/images/val';
const RUNS = [
  { imgsz: 640, conf: 0.01 },
  { imgsz: 320, conf: 0.05 },
];
const deployBin = process.env.DEPLOY_BIN || join(process.env.CARGO_TARGET_DIR || '/var/tmp/yolo-target', 'release/deploy');

let failures = 0;
function check(ok, what) {
  console.log(`${ok ? 'ok  ' : 'FAIL'} ${what}`);
  if (!ok) failures++;
}

function native(run) {
  const out = mkdtempSync(join(tmpdir(), 'yolo-web-native-'));
  const r = spawnSync(deployBin, [
    'predict', '--weights', join(repo, WEIGHTS), '--source', join(repo, IMAGES), '--imgsz', String(run.imgsz),
    '--conf', String(run.conf), '--device', 'cpu', '--save', 'false', '--save-json', '--out', out,
  ], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`${deployBin} predict failed:\n${r.stderr}`);
  const json = JSON.parse(readFileSync(join(out, 'predictions.json'), 'utf8'));
  rmSync(out, { recursive: true });
  return json.map((d) => ({
    file: d.file_name,
    cls: d.category_id,
    conf: d.score,
    box: [d.bbox[0], d.bbox[1], d.bbox[0] + d.bbox[2], d.bbox[1] + d.bbox[3]],
  }));
}

// Each native box takes the unused page box of its class nearest to it; all must match within tolerance.
function compare(mine, theirs) {
  const used = new Set();
  let worstPx = 0;
  let worstConf = 0;
  let unmatched = 0;
  for (const t of theirs) {
    let best = null;
    for (const [i, m] of mine.entries()) {
      if (used.has(i) || m.cls !== t.cls) continue;
      const px = Math.max(...m.box.map((v, k) => Math.abs(v - t.box[k])));
      const dc = Math.abs(m.conf - t.conf);
      if (px <= 1 && dc <= 0.01 && (!best || px < best.px)) best = { i, px, dc };
    }
    if (!best) {
      unmatched++;
      continue;
    }
    used.add(best.i);
    worstPx = Math.max(worstPx, best.px);
    worstConf = Math.max(worstConf, best.dc);
  }
  return { unmatched, extra: mine.length - used.size, worstPx, worstConf };
}

const server = await serve();
const b = await browser();
try {
  const page = await open(b, `${server.url}/index.html`);
  const backend = await page.evaluate(async (w) => (await yolo.load(w)).backend, `/repo/${WEIGHTS}`);
  check(backend === 'engine (Simd128)', `the page runs the engine's SIMD128 kernels: ${backend}`);

  const files = readdirSync(join(repo, IMAGES)).sort();
  for (const run of RUNS) {
    const theirs = native(run);
    const mine = [];
    for (const file of files) {
      const dets = await page.evaluate(async (url, o) => {
        const blob = await (await fetch(url)).blob();
        const bitmap = await createImageBitmap(blob, { colorSpaceConversion: 'none' });
        return yolo.detect(bitmap, o);
      }, `/repo/${IMAGES}/${file}`, run);
      mine.push(...dets.map((d) => ({ file, ...d })));
    }
    const byFile = (list, f) => list.filter((d) => d.file === f);
    let r = { unmatched: 0, extra: 0, worstPx: 0, worstConf: 0 };
    for (const f of files) {
      const c = compare(byFile(mine, f), byFile(theirs, f));
      r = {
        unmatched: r.unmatched + c.unmatched,
        extra: r.extra + c.extra,
        worstPx: Math.max(r.worstPx, c.worstPx),
        worstConf: Math.max(r.worstConf, c.worstConf),
      };
    }
    check(
      theirs.length > 0 && r.unmatched === 0 && r.extra === 0,
      `imgsz ${run.imgsz} conf ${run.conf}: page ${mine.length} boxes, native ${theirs.length}; unmatched ` +
        `${r.unmatched}, extra ${r.extra}; largest difference ${r.worstPx.toFixed(4)} px, ` +
        `${r.worstConf.toFixed(5)} conf`,
    );
  }

  // The API's bad input: each a rejected promise with a message.
  const rejects = (fn, arg) => page.evaluate(async (src, a) => {
    try {
      await eval(src)(a);
      return 'resolved';
    } catch (e) {
      return e.message;
    }
  }, fn, arg);
  let m = await rejects('(u) => yolo.load(u)', `/repo/${IMAGES}/${files[0]}`);
  check(/not a readable safetensors file/.test(m), `weights that are not ours: ${m}`);
  m = await rejects('(u) => yolo.load(u)', '/repo/no-such.safetensors');
  check(/HTTP 404/.test(m), `weights not found: ${m}`);
  // The browser's own line for the failed request is expected; nothing else may be there.
  const expected = page.problems.filter((p) => /404/.test(p));
  page.problems = page.problems.filter((p) => !/404/.test(p));
  check(expected.length === 1, `the 404 logged by the browser, once: ${expected.join('; ')}`);
  await page.evaluate((w) => yolo.load(w), `/repo/${WEIGHTS}`);
  m = await rejects('() => yolo.detect(new Blob([new Uint8Array([1, 2, 3])], { type: "image/jpeg" }))');
  check(/does not decode/.test(m), `an image that does not decode: ${m}`);
  m = await rejects(`async (u) => yolo.detect(await createImageBitmap(await (await fetch(u)).blob()), { imgsz: 16384 })`,
    `/repo/${IMAGES}/${files[0]}`);
  check(/out of memory/.test(m), `an input too large for the tab's memory: ${m}`);
  const after = await page.evaluate(async (u) => {
    const dets = await yolo.detect(await createImageBitmap(await (await fetch(u)).blob()), { imgsz: 320, conf: 0.25 });
    return `${yolo.backend}, ${dets.length} boxes`;
  }, `/repo/${IMAGES}/${files[0]}`);
  check(/^engine/.test(after), `after running out of memory the model is back: ${after}`);
  // A model too large for the tab: our weights whose YAML asks for 6x the channels (1.3e9 weights, 5 GB).
  m = await page.evaluate(async (u) => {
    const b = new Uint8Array(await (await fetch(u)).arrayBuffer());
    const n = Number(new DataView(b.buffer).getBigUint64(0, true));
    const header = JSON.parse(new TextDecoder().decode(b.subarray(8, 8 + n)));
    header.__metadata__.yaml = header.__metadata__.yaml.replace('  - 0.125\n  - 1024', '  - 6.0\n  - 16384');
    const text = JSON.stringify(header);
    const h = new TextEncoder().encode(text + ' '.repeat((8 - (text.length % 8)) % 8));
    const out = new Uint8Array(8 + h.length + b.length - 8 - n);
    new DataView(out.buffer).setBigUint64(0, BigInt(h.length), true);
    out.set(h, 8);
    out.set(b.subarray(8 + n), 8 + h.length);
    try {
      await yolo.load(out.buffer);
      return 'resolved';
    } catch (e) {
      return e.message;
    }
  }, `/repo/${WEIGHTS}`);
  check(/out of memory/.test(m), `a model too large for the tab's memory: ${m}`);
  const still = await page.evaluate(async (u) => {
    const dets = await yolo.detect(await createImageBitmap(await (await fetch(u)).blob()), { imgsz: 320, conf: 0.05 });
    return `${yolo.backend}, ${dets.length} boxes`;
  }, `/repo/${IMAGES}/${files[0]}`);
  check(/^engine/.test(still), `the model loaded before is back: ${still}`);
  check(page.problems.length === 0, `nothing in the console: ${page.problems.join('; ') || 'none'}`);

  // The page itself: weights by URL, an image chosen in the file input, the boxes and the time shown; bad
  // weights and an undecodable file as a message on the page.
  const ui = await open(b, `${server.url}/index.html?weights=/repo/${WEIGHTS}`);
  await ui.waitForFunction(() => /engine/.test(document.getElementById('backend').textContent));
  const input = await ui.$('#media-file');
  await input.uploadFile(join(repo, IMAGES, files[0]));
  await ui.waitForFunction(() => /ms per image/.test(document.getElementById('timing').textContent));
  const shown = await ui.$eval('#timing', (e) => e.textContent);
  check(/ms per image, \d+ boxes/.test(shown), `the page shows the time and boxes: ${shown}`);
  await input.uploadFile(join(repo, 'README.md'));
  await ui.waitForFunction(() => document.getElementById('message').textContent !== '');
  check(/does not decode/.test(await ui.$eval('#message', (e) => e.textContent)), 'an undecodable file: a message on the page');
  await ui.evaluate(() => document.getElementById('message').textContent = '');
  await (await ui.$('#weights-file')).uploadFile(join(repo, IMAGES, files[0]));
  await ui.waitForFunction(() => document.getElementById('message').textContent !== '');
  const said = await ui.$eval('#message', (e) => e.textContent);
  check(/not a readable safetensors file/.test(said), `weights that are not ours: a message on the page: ${said}`);
  const kept = await ui.$eval('#backend', (e) => e.textContent);
  check(/^engine/.test(kept), `the model loaded before stays: ${kept}`);
  // A video file, frame by frame: a 3 s WebM recorded in the browser from the val image drawn on a canvas.
  const webm = await ui.evaluate(async (u) => {
    const img = await createImageBitmap(await (await fetch(u)).blob());
    const c = document.createElement('canvas');
    [c.width, c.height] = [img.width, img.height];
    const g = c.getContext('2d');
    const rec = new MediaRecorder(c.captureStream(15), { mimeType: 'video/webm' });
    const parts = [];
    rec.ondataavailable = (e) => parts.push(e.data);
    const done = new Promise((ok) => (rec.onstop = ok));
    rec.start();
    const t0 = performance.now();
    while (performance.now() - t0 < 3000) {
      g.drawImage(img, 0, 0);
      await new Promise((ok) => setTimeout(ok, 50));
    }
    rec.stop();
    await done;
    const bytes = new Uint8Array(await new Blob(parts).arrayBuffer());
    let bin = '';
    for (const b of bytes) bin += String.fromCharCode(b);
    return btoa(bin);
  }, `/repo/${IMAGES}/${files[0]}`);
  const clip = join(mkdtempSync(join(tmpdir(), 'yolo-web-video-')), 'clip.webm');
  writeFileSync(clip, Buffer.from(webm, 'base64'));
  await ui.evaluate(() => document.getElementById('timing').textContent = '');
  await input.uploadFile(clip);
  await ui.waitForFunction(() => /ms per frame/.test(document.getElementById('timing').textContent)
    || document.getElementById('message').textContent !== '');
  const frames = await ui.$eval('#timing', (e) => e.textContent);
  check(/ms per frame/.test(frames), `a video file, frame by frame: ${frames} ${await ui.$eval('#message', (e) => e.textContent)}`);
  await ui.click('#stop');

  await ui.evaluate(() => {
    document.getElementById('message').textContent = '';
    document.getElementById('timing').textContent = '';
  });
  await ui.click('#webcam');
  await ui.waitForFunction(() => /ms per frame/.test(document.getElementById('timing').textContent)
    || document.getElementById('message').textContent !== '');
  const cam = await ui.$eval('#timing', (e) => e.textContent);
  check(/ms per frame/.test(cam), `the webcam, frame by frame: ${cam} ${await ui.$eval('#message', (e) => e.textContent)}`);
  await ui.click('#stop');
  check(ui.problems.length === 0, `nothing in the page's console: ${ui.problems.join('; ') || 'none'}`);
  rmSync(clip);
} finally {
  await b.shut();
  server.close();
}
if (failures) {
  console.error(`${failures} check(s) failed`);
  process.exit(1);
}
console.log('all browser checks passed');
process.exit(0);
