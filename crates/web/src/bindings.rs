//! What `web/worker.js` calls, through wasm-bindgen. Errors are `JsError`s carrying our message; a panic or
//! an allocation failure traps (WebAssembly aborts), and the worker then reads `lastPanic()`.

use crate::{to_json, Model, Options};
use std::sync::Mutex;
use wasm_bindgen::prelude::*;

static PANIC: Mutex<String> = Mutex::new(String::new());

#[wasm_bindgen(start)]
fn start() {
    std::panic::set_hook(Box::new(|info| {
        if let Ok(mut p) = PANIC.lock() {
            *p = info.to_string();
        }
    }));
}

/// The last panic's message, empty if none (a failed allocation aborts without one).
#[wasm_bindgen(js_name = lastPanic)]
pub fn last_panic() -> String {
    PANIC.lock().map(|p| p.clone()).unwrap_or_default()
}

#[wasm_bindgen]
pub struct Yolo {
    model: Model,
}

fn js(e: anyhow::Error) -> JsError {
    JsError::new(&format!("{e:#}"))
}

#[wasm_bindgen]
impl Yolo {
    /// A model from our safetensors file's bytes; `name` stands for the file in messages.
    #[wasm_bindgen(constructor)]
    pub fn new(bytes: &[u8], name: &str) -> Result<Yolo, JsError> {
        Ok(Yolo {
            model: Model::from_bytes(bytes, name).map_err(js)?,
        })
    }

    #[wasm_bindgen(getter)]
    pub fn backend(&self) -> String {
        self.model.backend()
    }

    #[wasm_bindgen(getter)]
    pub fn names(&self) -> Vec<String> {
        self.model.names().to_vec()
    }

    /// Detections in an RGBA image as JSON: `[{cls, name, conf, box: [x1, y1, x2, y2]}]`.
    #[allow(clippy::too_many_arguments)]
    pub fn detect(
        &self,
        rgba: &[u8],
        width: u32,
        height: u32,
        imgsz: u32,
        conf: f32,
        iou: f32,
        max_det: u32,
    ) -> Result<String, JsError> {
        let o = Options {
            imgsz: imgsz as usize,
            conf,
            iou,
            max_det: max_det as usize,
        };
        let dets = self
            .model
            .detect_rgba(rgba, width, height, &o)
            .map_err(js)?;
        Ok(to_json(&dets, self.model.names()))
    }
}
