// Runs the model off the page's thread: the WebAssembly module (dist/web.js, built by scripts/build_web.sh)
// lives here, so a model that exhausts its memory or crashes takes down only this worker, which yolo.js
// replaces.
import init, { Yolo, lastPanic } from './web.js';

const ready = init();
let model = null;

// An ImageBitmap's pixels as RGBA, without colour management or premultiplication (as `predict` reads a file).
function pixels(img) {
  if (typeof ImageBitmap !== 'undefined' && img instanceof ImageBitmap) {
    const canvas = new OffscreenCanvas(img.width, img.height);
    const g = canvas.getContext('2d', { willReadFrequently: true });
    g.drawImage(img, 0, 0);
    const d = g.getImageData(0, 0, img.width, img.height);
    img.close();
    return d;
  }
  return img;
}

function describe(e, wasm, op) {
  if (e instanceof WebAssembly.RuntimeError) {
    let panic = '';
    try {
      panic = lastPanic();
    } catch {
      // The instance may be unusable after the trap; the memory size below still says what happened.
    }
    // A failed allocation aborts without a panic; one over 2 GB (wasm32's largest) panics first.
    if (panic && !/capacity overflow|memory allocation/.test(panic)) {
      return { error: `the model crashed: ${panic}`, fatal: true };
    }
    const gb = wasm ? (wasm.memory.buffer.byteLength / 2 ** 30).toFixed(2) : '?';
    const [what, instead] = op === 'load'
      ? ['this model', 'a smaller model']
      : ['this model at this image size', 'a smaller imgsz or a smaller model'];
    return {
      error: `out of memory: WebAssembly in a tab holds 4 GB at most (2 GB in one buffer), and ${gb} GB were ` +
        `in use when ${what} asked for more; try ${instead}`,
      fatal: true,
    };
  }
  return { error: e instanceof Error ? e.message : String(e), fatal: false };
}

onmessage = async (ev) => {
  const { id, op } = ev.data;
  let wasm = null;
  try {
    wasm = await ready;
    if (op === 'load') {
      // Weights that fail to load leave the model loaded before in place.
      const loaded = new Yolo(new Uint8Array(ev.data.bytes), ev.data.name);
      if (model) model.free();
      model = loaded;
      postMessage({ id, ok: { backend: model.backend, names: model.names } });
    } else if (op === 'detect') {
      if (!model) throw new Error('no model loaded: call yolo.load(url) first');
      const img = pixels(ev.data.image);
      const o = ev.data.options;
      const t0 = performance.now();
      const json = model.detect(img.data, img.width, img.height, o.imgsz, o.conf, o.iou, o.max_det);
      const ms = performance.now() - t0;
      postMessage({ id, ok: { detections: JSON.parse(json), ms } });
    } else {
      throw new Error(`unknown request ${op}`);
    }
  } catch (e) {
    postMessage({ id, ...describe(e, wasm, op) });
  }
};
