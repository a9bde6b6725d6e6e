// window.yolo: our detector in the page.
//   await yolo.load(urlOrFile)                 our safetensors weights (fused or not), by URL, File, Blob or bytes
//   await yolo.detect(image, {imgsz, conf, iou, max_det, threads})
//        -> [{cls, name, conf, box: [x1, y1, x2, y2]}] in the image's pixels (ImageBitmap, ImageData, or
//           anything createImageBitmap takes: <img>, <canvas>, <video>, VideoFrame, Blob)
//   yolo.backend                               what runs the model, e.g. "engine (Simd128)"
//   yolo.lastMs                                the last detect's milliseconds inside the worker
// The model runs in a worker (worker.js). If it runs out of memory or crashes, the worker is replaced and the
// model loaded again, and the call that failed rejects with a message.

const DEFAULTS = { imgsz: 640, conf: 0.25, iou: 0.7, max_det: 300, threads: 1 };

class YoloApi {
  backend = 'none (no model loaded)';
  names = [];
  lastMs = null;
  #worker = null;
  #pending = new Map();
  #next = 0;
  #model = null; // { bytes, name } of the loaded model, to load it again into a new worker

  constructor() {
    this.#start();
  }

  #start() {
    const w = new Worker(new URL('./worker.js', import.meta.url), { type: 'module' });
    w.onmessage = (ev) => {
      const p = this.#pending.get(ev.data.id);
      if (!p) return;
      this.#pending.delete(ev.data.id);
      if ('ok' in ev.data) p.resolve(ev.data.ok);
      else p.reject(Object.assign(new Error(ev.data.error), { fatal: ev.data.fatal }));
    };
    // A worker that fails to start (its module or the .wasm not found, no WebAssembly SIMD in this browser).
    w.onerror = (ev) => {
      ev.preventDefault();
      const msg = `the detector could not start (${ev.message || 'worker error'}): this page needs ` +
        'WebAssembly SIMD (Chrome 91+, Firefox 89+, Safari 16.4+) and dist/web_bg.wasm next to it';
      for (const p of this.#pending.values()) p.reject(new Error(msg));
      this.#pending.clear();
    };
    this.#worker = w;
  }

  #call(msg, transfer = []) {
    const id = this.#next++;
    return new Promise((resolve, reject) => {
      this.#pending.set(id, { resolve, reject });
      this.#worker.postMessage({ id, ...msg }, transfer);
    });
  }

  // A failed call that trapped: a new worker, the model loaded again, then the error passed on.
  async #recover(e) {
    if (!e.fatal) throw e;
    this.#worker.terminate();
    for (const p of this.#pending.values()) p.reject(e);
    this.#pending.clear();
    this.#start();
    if (this.#model) {
      try {
        await this.#call({ op: 'load', ...this.#model });
      } catch (again) {
        this.#model = null;
        this.backend = 'none (no model loaded)';
        throw new Error(`${e.message}; loading the model again failed: ${again.message}`);
      }
    }
    throw e;
  }

  async load(src) {
    let bytes;
    let name;
    if (typeof src === 'string' || src instanceof URL) {
      name = String(src);
      let r;
      try {
        r = await fetch(src);
      } catch (e) {
        throw new Error(`${name}: cannot fetch (${e.message})`);
      }
      if (!r.ok) throw new Error(`${name}: HTTP ${r.status} ${r.statusText}`);
      bytes = await r.arrayBuffer();
    } else if (src instanceof Blob) {
      name = src.name || 'the weights file';
      bytes = await src.arrayBuffer();
    } else if (src instanceof ArrayBuffer || ArrayBuffer.isView(src)) {
      name = 'the weights';
      bytes = src instanceof ArrayBuffer ? src : src.buffer.slice(src.byteOffset, src.byteOffset + src.byteLength);
    } else {
      throw new TypeError('yolo.load takes a URL, a File or Blob, or an ArrayBuffer of our safetensors weights');
    }
    const model = { bytes, name };
    let r;
    try {
      r = await this.#call({ op: 'load', ...model });
    } catch (e) {
      // The model loaded before stays (the worker keeps it, and a new worker loads it again).
      return this.#recover(e);
    }
    this.#model = model;
    this.backend = r.backend;
    this.names = r.names;
    return { backend: r.backend, names: r.names };
  }

  async detect(image, options = {}) {
    const o = { ...DEFAULTS, ...options };
    for (const k of ['imgsz', 'conf', 'iou', 'max_det']) {
      if (typeof o[k] !== 'number' || !Number.isFinite(o[k])) {
        throw new TypeError(`yolo.detect: option ${k} must be a number, not ${o[k]}`);
      }
    }
    let msg;
    const transfer = [];
    if (typeof ImageData !== 'undefined' && image instanceof ImageData) {
      msg = { data: image.data, width: image.width, height: image.height };
    } else {
      let bitmap;
      try {
        // A copy, transferred to the worker: the caller's image stays usable. No colour management, so the
        // pixels are the file's, as `predict` reads them.
        bitmap = await createImageBitmap(image, { colorSpaceConversion: 'none', premultiplyAlpha: 'none' });
      } catch (e) {
        throw new Error(`the image does not decode (${e.message})`);
      }
      msg = bitmap;
      transfer.push(bitmap);
    }
    // This build runs on one thread (threads need cross-origin isolation and a threaded WebAssembly build).
    const opts = { imgsz: o.imgsz, conf: o.conf, iou: o.iou, max_det: o.max_det };
    let r;
    try {
      r = await this.#call({ op: 'detect', image: msg, options: opts }, transfer);
    } catch (e) {
      return this.#recover(e);
    }
    this.lastMs = r.ms;
    return r.detections;
  }
}

window.yolo = new YoloApi();
