// What the browser test and the benchmark share: a static server for the built page (web/dist at /), the
// repository (at /repo/, for weights and images) and onnxruntime-web (at /ort/), and a headless Chromium.
import chromium from '@sparticuz/chromium';
import puppeteer from 'puppeteer-core';
import { createServer } from 'node:http';
import { readFile, stat } from 'node:fs/promises';
import { extname, join, normalize, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const webDir = resolve(fileURLToPath(new URL('..', import.meta.url)));
export const repo = resolve(webDir, '..');

const TYPES = {
  '.html': 'text/html',
  '.js': 'text/javascript',
  '.mjs': 'text/javascript',
  '.wasm': 'application/wasm',
  '.json': 'application/json',
  '.jpg': 'image/jpeg',
  '.png': 'image/png',
};

const ROOTS = [
  ['/repo/', repo],
  ['/ort/', join(webDir, 'node_modules/onnxruntime-web/dist')],
  ['/', join(webDir, 'dist')],
];

// Cross-origin isolation (COOP + COEP) lets a page use SharedArrayBuffer, which threaded WebAssembly needs.
export async function serve() {
  const server = createServer(async (req, res) => {
    const path = decodeURIComponent(new URL(req.url, 'http://x').pathname);
    const [prefix, dir] = ROOTS.find(([p]) => path.startsWith(p));
    const file = normalize(join(dir, path.slice(prefix.length) || 'index.html'));
    const headers = {
      'Cross-Origin-Opener-Policy': 'same-origin',
      'Cross-Origin-Embedder-Policy': 'require-corp',
      'Cache-Control': 'no-store',
    };
    try {
      if (!file.startsWith(dir) || !(await stat(file)).isFile()) throw new Error('not found');
      const body = await readFile(file);
      res.writeHead(200, { ...headers, 'Content-Type': TYPES[extname(file)] || 'application/octet-stream' });
      res.end(body);
    } catch {
      res.writeHead(404, headers);
      res.end('not found');
    }
  });
  await new Promise((ok) => server.listen(0, '127.0.0.1', ok));
  const close = () => {
    server.closeAllConnections();
    server.close();
  };
  return { url: `http://127.0.0.1:${server.address().port}`, close };
}

export async function browser() {
  const b = await puppeteer.launch({
    executablePath: await chromium.executablePath(),
    // A synthetic camera (a test pattern), granted without a prompt, for the webcam path.
    args: [...chromium.args, '--use-fake-device-for-media-stream', '--use-fake-ui-for-media-stream'],
    headless: true,
    protocolTimeout: 600_000,
  });
  // Closing can wait forever on a page still holding a camera stream: the process is killed after 10 s.
  b.shut = async () => {
    const proc = b.process();
    const timer = setTimeout(() => proc?.kill('SIGKILL'), 10_000);
    await b.close().catch(() => proc?.kill('SIGKILL'));
    clearTimeout(timer);
  };
  return b;
}

// A page with every console error and uncaught exception recorded (a test fails on any it did not expect).
export async function open(b, url) {
  const page = await b.newPage();
  page.problems = [];
  page.on('pageerror', (e) => page.problems.push(`uncaught: ${e.message}`));
  page.on('console', (m) => {
    if (m.type() === 'error') page.problems.push(`console: ${m.text()}`);
  });
  await page.goto(url, { waitUntil: 'load' });
  await page.waitForFunction(() => window.yolo !== undefined);
  return page;
}
