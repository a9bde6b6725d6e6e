//! A CPU inference engine for fused models: the model is lowered once into a list of operations on NHWC
//! float32 maps with pre-packed weights (conv with its bias, activation and residual add in one pass,
//! depthwise conv computed directly, Concat inputs written straight into their slice of the joined map, map
//! buffers reused once their last reader has run), then runs with AVX-512 or AVX2 kernels. Batches run one
//! image per thread; a single image splits each operation across threads. Same output as
//! [`model::YoloModel::forward`] (`(B, 4 + nc, A)`), checked against it in `tests/engine.rs`.
//!
//! Unfused models run too (each BatchNorm a per-channel affine pass, MobileOne branches summed), so the
//! fusion speed-up can be measured on one engine. Burn stays the engine for training and for what this one
//! does not cover (grouped convolutions other than depthwise, dilation, CPUs without AVX2): [`Engine::new`]
//! says why it cannot take a model.

/// `#[target_feature]` entry points that call a generic kernel with one SIMD level's types each: the feature
/// has to be on a function of its own for the kernel inlined into it to be compiled with that instruction set.
/// `simd_entries!(kernel(args) { name: "features" <generic args>; ... })`.
macro_rules! simd_entries {
    ($kernel:ident $params:tt { $($name:ident: $feature:literal <$($g:tt),+>;)+ }) => {
        $( simd_entry!($name, $feature, $kernel, [$($g),+], $params); )+
    };
}

macro_rules! simd_entry {
    ($name:ident, $feature:literal, $kernel:ident, [$($g:tt),+], ($($arg:ident: $ty:ty),* $(,)?)) => {
        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = $feature)]
        unsafe fn $name($($arg: $ty),*) {
            $kernel::<$($g),+>($($arg),*)
        }
    };
}

/// The call for `level`: `on_level!(level, avx512_call, avx2_call)` (the engine is built only for x86-64).
macro_rules! on_level {
    ($level:expr, $avx512:expr, $avx2:expr) => {
        match $level {
            #[cfg(target_arch = "x86_64")]
            Level::Avx512 => $avx512,
            #[cfg(target_arch = "x86_64")]
            Level::Avx2 => $avx2,
            #[cfg(not(target_arch = "x86_64"))]
            _ => unreachable!("the engine is only built on x86-64"),
        }
    };
}

mod conv;
mod depthwise;
mod lower;
mod ops;
mod simd;
#[cfg(test)]
mod tests;
mod winograd;

pub use simd::Level;

use conv::PackedConv;
use depthwise::PackedDepthwise;
use ops::{Affine, SqueezeExcite};
use rayon::prelude::*;
use std::sync::Mutex;

/// Why a model cannot run on the engine, or why an input cannot.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("the inference engine needs an x86-64 CPU with AVX2 and FMA or AVX-512")]
    NoSimd,
    #[error("the inference engine runs fused models only ({0} is not fused)")]
    NotFused(String),
    #[error("the inference engine does not support {0}")]
    Unsupported(String),
    #[error("input {h}x{w}: {what}")]
    BadInput { h: usize, w: usize, what: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Act {
    None,
    Relu,
    Silu,
}

/// A read-only NHWC view: `h * w` pixels, `stride` floats apart, starting at the first channel read.
#[derive(Clone, Copy)]
pub struct Src {
    pub ptr: *const f32,
    pub h: usize,
    pub w: usize,
    pub stride: usize,
}

/// A writable NHWC view, as [`Src`].
#[derive(Clone, Copy)]
pub struct Dst {
    pub ptr: *mut f32,
    pub h: usize,
    pub w: usize,
    pub stride: usize,
}

// SAFETY: views are plain pointers into workspace buffers that outlive every operation; operations that
// share a view across threads write disjoint pixels.
unsafe impl Send for Src {}
unsafe impl Sync for Src {}
unsafe impl Send for Dst {}
unsafe impl Sync for Dst {}

/// Runs `job(start, end)` over `0..n`, split across the thread pool when `parallel`.
pub(crate) fn par_ranges(n: usize, parallel: bool, job: &(dyn Fn(usize, usize) + Sync)) {
    let threads = rayon::current_num_threads();
    if !parallel || threads < 2 || n < 2 {
        job(0, n);
        return;
    }
    let chunks = n.min(threads * 4);
    (0..chunks)
        .into_par_iter()
        .for_each(|c| job(c * n / chunks, (c + 1) * n / chunks));
}

/// A channel slice of a map buffer.
#[derive(Debug, Clone, Copy)]
struct View {
    buf: usize,
    off: usize,
}

#[derive(Debug, Clone)]
enum Op {
    Conv {
        pc: PackedConv,
        src: View,
        dst: View,
        act: Act,
        add: Option<View>,
    },
    Depthwise {
        pd: PackedDepthwise,
        src: View,
        dst: View,
        act: Act,
    },
    SqueezeExcite {
        se: SqueezeExcite,
        x: View,
    },
    /// An unfused model's BatchNorm (see [`Affine`]).
    Affine {
        a: Affine,
        src: View,
        dst: View,
        act: Act,
        acc: bool,
        add: Option<View>,
    },
    MaxPool {
        k: usize,
        c: usize,
        src: View,
        dst: View,
    },
    Upsample {
        s: usize,
        c: usize,
        src: View,
        dst: View,
    },
    Copy {
        c: usize,
        src: View,
        dst: View,
    },
}

impl Op {
    fn reads(&self) -> Vec<usize> {
        match self {
            Op::Conv { src, add, .. } => {
                let mut v = vec![src.buf];
                v.extend(add.map(|a| a.buf));
                v
            }
            Op::Depthwise { src, .. }
            | Op::MaxPool { src, .. }
            | Op::Upsample { src, .. }
            | Op::Copy { src, .. } => vec![src.buf],
            Op::SqueezeExcite { x, .. } => vec![x.buf],
            Op::Affine {
                src, dst, acc, add, ..
            } => {
                let mut v = vec![src.buf];
                v.extend(acc.then_some(dst.buf));
                v.extend(add.map(|a| a.buf));
                v
            }
        }
    }

    fn writes(&self) -> usize {
        match self {
            Op::Conv { dst, .. }
            | Op::Depthwise { dst, .. }
            | Op::MaxPool { dst, .. }
            | Op::Upsample { dst, .. }
            | Op::Copy { dst, .. }
            | Op::Affine { dst, .. } => dst.buf,
            Op::SqueezeExcite { x, .. } => x.buf,
        }
    }
}

/// The Detect head's outputs: one raw map buffer per level.
#[derive(Debug, Clone)]
struct DetectOut {
    maps: Vec<usize>,
    strides: Vec<f32>,
    reg_max: usize,
    nc: usize,
}

/// Per-thread memory: one buffer per slot, grown to the largest map assigned to it.
#[derive(Default)]
struct Workspace {
    slots: Vec<Vec<f32>>,
    zeros: Vec<f32>,
}

/// A fused model lowered for the CPU.
pub struct Engine {
    level: Level,
    ops: Vec<Op>,
    /// Channels of each buffer and the workspace slot it lives in.
    channels: Vec<usize>,
    slot_of: Vec<usize>,
    slots: usize,
    input: usize,
    detect: DetectOut,
    max_cin: usize,
    workspaces: Mutex<Vec<Workspace>>,
}

impl Engine {
    /// Lowers a fused model. Errors say what the engine cannot run (the caller then uses burn).
    pub fn new(model: &model::YoloModel) -> Result<Engine, EngineError> {
        let level = Level::detect().ok_or(EngineError::NoSimd)?;
        Self::with_level(model, level)
    }

    /// [`Self::new`] with the kernels of a given level (tests run both where the CPU has them).
    pub fn with_level(model: &model::YoloModel, level: Level) -> Result<Engine, EngineError> {
        let l = lower::lower(model, level)?;
        let slot_of = assign_slots(&l.ops, l.channels.len(), l.input, &l.detect.maps);
        let slots = slot_of.iter().copied().max().map_or(0, |m| m + 1);
        Ok(Engine {
            level,
            ops: l.ops,
            channels: l.channels,
            slot_of,
            slots,
            input: l.input,
            detect: l.detect,
            max_cin: l.max_cin,
            workspaces: Mutex::new(Vec::new()),
        })
    }

    pub fn level(&self) -> Level {
        self.level
    }

    pub fn nc(&self) -> usize {
        self.detect.nc
    }

    /// Floats of one image's decoded output `(4 + nc, A)`.
    fn out_len(&self, dims: &[(usize, usize)]) -> usize {
        let a: usize = self
            .detect
            .maps
            .iter()
            .map(|&m| dims[m].0 * dims[m].1)
            .sum();
        (4 + self.detect.nc) * a
    }

    /// `(h, w)` of every buffer for an `h x w` input.
    fn sizes(&self, h: usize, w: usize) -> Result<Vec<(usize, usize)>, EngineError> {
        let mut dims: Vec<Option<(usize, usize)>> = vec![None; self.channels.len()];
        dims[self.input] = Some((h, w));
        let bad = |what: String| EngineError::BadInput { h, w, what };
        for op in &self.ops {
            let src = op.reads()[0];
            let (sh, sw) =
                dims[src].ok_or_else(|| bad("a map is read before it is written".into()))?;
            let out = match op {
                Op::Conv { pc, .. } => conv_out(pc.k, pc.s, pc.p, sh, sw).map_err(bad)?,
                Op::Depthwise { pd, .. } => conv_out(pd.k, pd.s, pd.p, sh, sw).map_err(bad)?,
                Op::Upsample { s, .. } => (sh * s, sw * s),
                Op::MaxPool { .. }
                | Op::Copy { .. }
                | Op::SqueezeExcite { .. }
                | Op::Affine { .. } => (sh, sw),
            };
            if let Op::Conv { add: Some(a), .. } = op {
                if dims[a.buf] != Some(out) {
                    return Err(bad("a residual add of two different sizes".into()));
                }
            }
            let d = op.writes();
            match dims[d] {
                Some(prev) if prev != out => {
                    return Err(bad(format!(
                        "Concat inputs of different sizes ({}x{} and {}x{})",
                        prev.0, prev.1, out.0, out.1
                    )))
                }
                _ => dims[d] = Some(out),
            }
        }
        dims.into_iter()
            .map(|d| d.ok_or_else(|| bad("a map is never written".into())))
            .collect()
    }

    /// Eval output for an NCHW batch `x` (`b * 3 * h * w` floats, RGB in 0..1): `(b, 4 + nc, A)`, flattened.
    pub fn run(&self, x: &[f32], b: usize, h: usize, w: usize) -> Result<Vec<f32>, EngineError> {
        Ok(self.run_inner(x, b, h, w, false)?.0)
    }

    /// [`Self::run`] plus the raw head maps per level as NCHW `(b, 4 * reg_max + nc, h_i, w_i)`.
    pub fn run_with_raw(
        &self,
        x: &[f32],
        b: usize,
        h: usize,
        w: usize,
    ) -> Result<(Vec<f32>, Vec<Vec<f32>>), EngineError> {
        self.run_inner(x, b, h, w, true)
    }

    fn run_inner(
        &self,
        x: &[f32],
        b: usize,
        h: usize,
        w: usize,
        want_raw: bool,
    ) -> Result<(Vec<f32>, Vec<Vec<f32>>), EngineError> {
        if x.len() != b * 3 * h * w {
            return Err(EngineError::BadInput {
                h,
                w,
                what: format!("{} floats for a batch of {b}", x.len()),
            });
        }
        let dims = self.sizes(h, w)?;
        let per_out = self.out_len(&dims);
        let ch = 4 * self.detect.reg_max + self.detect.nc;
        let mut out = vec![0.0f32; b * per_out];
        let mut raw: Vec<Vec<f32>> = if want_raw {
            self.detect
                .maps
                .iter()
                .map(|&m| vec![0.0f32; b * ch * dims[m].0 * dims[m].1])
                .collect()
        } else {
            Vec::new()
        };
        let threads = rayon::current_num_threads().max(1);
        let img = 3 * h * w;
        // Whole groups of `threads` images run one per thread; the rest split each operation.
        let grouped = if threads > 1 {
            b / threads * threads
        } else {
            0
        };
        let run_one = |i: usize, o: &mut [f32], parallel: bool| -> Vec<Vec<f32>> {
            let mut ws = self.take_workspace();
            let r = self.run_image(
                &mut ws,
                &x[i * img..(i + 1) * img],
                &dims,
                o,
                parallel,
                want_raw,
                None,
            );
            self.give_workspace(ws);
            r
        };
        let mut raws: Vec<Vec<Vec<f32>>> = vec![Vec::new(); b];
        {
            let (head, tail) = out.split_at_mut(grouped * per_out);
            let (rh, rt) = raws.split_at_mut(grouped);
            head.par_chunks_mut(per_out.max(1))
                .zip(rh.par_iter_mut())
                .enumerate()
                .for_each(|(i, (o, r))| *r = run_one(i, o, false));
            for (j, (o, r)) in tail
                .chunks_mut(per_out.max(1))
                .zip(rt.iter_mut())
                .enumerate()
            {
                *r = run_one(grouped + j, o, true);
            }
        }
        if want_raw {
            for (bi, levels) in raws.iter().enumerate() {
                for (li, m) in levels.iter().enumerate() {
                    let n = m.len() / ch;
                    let dst = &mut raw[li][bi * ch * n..(bi + 1) * ch * n];
                    for p in 0..n {
                        for c in 0..ch {
                            dst[c * n + p] = m[p * ch + c];
                        }
                    }
                }
            }
        }
        Ok((out, raw))
    }

    /// Median milliseconds per operation over `iters` single-image runs, with a description of each.
    pub fn profile(
        &self,
        x: &[f32],
        h: usize,
        w: usize,
        iters: usize,
    ) -> Result<Vec<(String, f64)>, EngineError> {
        let dims = self.sizes(h, w)?;
        let mut out = vec![0.0f32; self.out_len(&dims)];
        let mut ws = self.take_workspace();
        let mut samples: Vec<Vec<f64>> = vec![Vec::new(); self.ops.len() + 1];
        for _ in 0..iters.max(1) {
            let mut t = vec![0.0; self.ops.len() + 1];
            self.run_image(
                &mut ws,
                &x[..3 * h * w],
                &dims,
                &mut out,
                true,
                false,
                Some(&mut t),
            );
            for (s, v) in samples.iter_mut().zip(t) {
                s.push(v);
            }
        }
        self.give_workspace(ws);
        let mut decode = samples.pop().unwrap_or_default();
        decode.sort_by(f64::total_cmp);
        let mut rows: Vec<(String, f64)> = self
            .ops
            .iter()
            .zip(samples)
            .map(|(op, mut s)| {
                s.sort_by(f64::total_cmp);
                let (oh, ow) = dims[op.writes()];
                let what = match op {
                    Op::Conv { pc, act, add, .. } => format!(
                        "conv {k}x{k}/{s} {}->{} {act:?}{}",
                        pc.cin,
                        pc.cout,
                        if add.is_some() { " +add" } else { "" },
                        k = pc.k,
                        s = pc.s
                    ),
                    Op::Depthwise { pd, act, .. } => {
                        format!("depthwise {k}x{k}/{s} {} {act:?}", pd.c, k = pd.k, s = pd.s)
                    }
                    Op::SqueezeExcite { se, .. } => format!("squeeze-excite {}", se.c),
                    Op::Affine { a, act, acc, .. } => format!(
                        "batchnorm {} {act:?}{}",
                        a.c,
                        if *acc { " +sum" } else { "" }
                    ),
                    Op::MaxPool { k, c, .. } => format!("maxpool {k}x{k} {c}"),
                    Op::Upsample { s, c, .. } => format!("upsample x{s} {c}"),
                    Op::Copy { c, .. } => format!("copy {c}"),
                };
                (format!("{what} @{oh}x{ow}"), s[s.len() / 2])
            })
            .collect();
        rows.push((
            "decode (DFL, anchors, sigmoid)".into(),
            decode[decode.len() / 2],
        ));
        Ok(rows)
    }

    fn take_workspace(&self) -> Workspace {
        let mut ws = self
            .workspaces
            .lock()
            .map(|mut v| v.pop())
            .unwrap_or(None)
            .unwrap_or_default();
        if ws.slots.len() < self.slots {
            ws.slots.resize_with(self.slots, Vec::new);
        }
        if ws.zeros.len() < self.max_cin {
            ws.zeros = vec![0.0; self.max_cin];
        }
        ws
    }

    fn give_workspace(&self, ws: Workspace) {
        if let Ok(mut v) = self.workspaces.lock() {
            v.push(ws);
        }
    }

    /// One image through every operation; writes its decoded output to `out`, returns the raw NHWC maps
    /// when asked.
    #[allow(clippy::too_many_arguments)]
    fn run_image(
        &self,
        ws: &mut Workspace,
        x: &[f32],
        dims: &[(usize, usize)],
        out: &mut [f32],
        parallel: bool,
        want_raw: bool,
        mut times: Option<&mut Vec<f64>>,
    ) -> Vec<Vec<f32>> {
        // Size every slot first: pointers taken below stay valid for the whole pass.
        let mut need = vec![0usize; self.slots];
        for (bi, &(h, w)) in dims.iter().enumerate() {
            let s = self.slot_of[bi];
            need[s] = need[s].max(h * w * self.channels[bi]);
        }
        for (s, n) in ws.slots.iter_mut().zip(&need) {
            if s.len() < *n {
                s.resize(*n, 0.0);
            }
        }
        let (h, w) = dims[self.input];
        {
            // NCHW planes to NHWC pixels, rows split across threads for a single image.
            let inp = &mut ws.slots[self.slot_of[self.input]];
            let plane = h * w;
            let dst = Dst {
                ptr: inp.as_mut_ptr(),
                h,
                w,
                stride: 3,
            };
            let job = |y0: usize, y1: usize| {
                // The whole view is captured, not its pointer field (the view is Sync).
                let out = dst;
                for p in y0 * w..y1 * w {
                    for c in 0..3 {
                        // SAFETY: p < h * w and the slot holds h * w * 3 floats; rows are disjoint.
                        unsafe { *out.ptr.add(p * 3 + c) = x[c * plane + p] };
                    }
                }
            };
            par_ranges(h, parallel, &job);
        }
        let ptr = |ws: &mut Workspace, v: View| -> *mut f32 {
            // SAFETY: `off` is below the buffer's channel count, within the slot sized above.
            unsafe { ws.slots[self.slot_of[v.buf]].as_mut_ptr().add(v.off) }
        };
        let src = |ws: &mut Workspace, v: View| {
            let (h, w) = dims[v.buf];
            Src {
                ptr: ptr(ws, v),
                h,
                w,
                stride: self.channels[v.buf],
            }
        };
        let dst = |ws: &mut Workspace, v: View| {
            let (h, w) = dims[v.buf];
            Dst {
                ptr: ptr(ws, v),
                h,
                w,
                stride: self.channels[v.buf],
            }
        };
        for (oi, op) in self.ops.iter().enumerate() {
            let t0 = std::time::Instant::now();
            match op {
                Op::Conv {
                    pc,
                    src: s,
                    dst: d,
                    act,
                    add,
                } => {
                    let (sv, dv) = (src(ws, *s), dst(ws, *d));
                    let av = add.map(|a| src(ws, a));
                    pc.run(sv, dv, *act, av, &ws.zeros, parallel);
                }
                Op::Depthwise {
                    pd,
                    src: s,
                    dst: d,
                    act,
                } => {
                    let (sv, dv) = (src(ws, *s), dst(ws, *d));
                    pd.run(sv, dv, *act, parallel);
                }
                Op::SqueezeExcite { se, x } => se.run(dst(ws, *x)),
                Op::Affine {
                    a,
                    src: s,
                    dst: d,
                    act,
                    acc,
                    add,
                } => {
                    let (sv, dv) = (src(ws, *s), dst(ws, *d));
                    let av = add.map(|v| src(ws, v));
                    a.run(self.level, sv, dv, *act, *acc, av, parallel);
                }
                Op::MaxPool {
                    k,
                    c,
                    src: s,
                    dst: d,
                } => {
                    let (sv, dv) = (src(ws, *s), dst(ws, *d));
                    ops::max_pool(sv, dv, *c, *k, parallel);
                }
                Op::Upsample {
                    s: f,
                    c,
                    src: s,
                    dst: d,
                } => {
                    let (sv, dv) = (src(ws, *s), dst(ws, *d));
                    ops::upsample(sv, dv, *c, *f);
                }
                Op::Copy { c, src: s, dst: d } => {
                    let (sv, dv) = (src(ws, *s), dst(ws, *d));
                    ops::copy(sv, dv, *c);
                }
            }
            if let Some(t) = times.as_deref_mut() {
                t[oi] += t0.elapsed().as_secs_f64() * 1e3;
            }
        }
        let ch = 4 * self.detect.reg_max + self.detect.nc;
        let raw: Vec<Vec<f32>> = if want_raw {
            self.detect
                .maps
                .iter()
                .map(|&m| {
                    let (mh, mw) = dims[m];
                    ws.slots[self.slot_of[m]][..mh * mw * ch].to_vec()
                })
                .collect()
        } else {
            Vec::new()
        };
        // Decode reads each level's map from its own slot (the maps live until the end, in distinct slots).
        let mut taken: Vec<(usize, Vec<f32>)> = self
            .detect
            .maps
            .iter()
            .map(|&m| {
                let s = self.slot_of[m];
                (s, std::mem::take(&mut ws.slots[s]))
            })
            .collect();
        {
            let mut levels: Vec<ops::LevelMap<'_>> = taken
                .iter_mut()
                .zip(&self.detect.maps)
                .zip(&self.detect.strides)
                .map(|(((_, v), &m), &st)| {
                    let (mh, mw) = dims[m];
                    ops::LevelMap {
                        map: &mut v[..mh * mw * ch],
                        h: mh,
                        w: mw,
                        stride: st,
                    }
                })
                .collect();
            let t0 = std::time::Instant::now();
            ops::decode(
                self.level,
                &mut levels,
                self.detect.reg_max,
                self.detect.nc,
                out,
                parallel,
            );
            if let Some(t) = times {
                t[self.ops.len()] += t0.elapsed().as_secs_f64() * 1e3;
            }
        }
        for (s, v) in taken {
            ws.slots[s] = v;
        }
        raw
    }
}

/// A convolution's output size, or why the map is too small for its kernel.
fn conv_out(k: usize, s: usize, p: usize, h: usize, w: usize) -> Result<(usize, usize), String> {
    if h + 2 * p < k || w + 2 * p < k {
        return Err(format!("a {h}x{w} map is smaller than a {k}x{k} kernel"));
    }
    Ok(((h + 2 * p - k) / s + 1, (w + 2 * p - k) / s + 1))
}

/// Assigns buffers to workspace slots: a buffer takes a free slot when first written and frees it after
/// its last reader. The input and the Detect maps keep theirs to the end.
fn assign_slots(ops: &[Op], n: usize, input: usize, keep: &[usize]) -> Vec<usize> {
    let end = ops.len();
    let mut first = vec![usize::MAX; n];
    let mut last = vec![0usize; n];
    first[input] = 0;
    for (i, op) in ops.iter().enumerate() {
        let d = op.writes();
        first[d] = first[d].min(i);
        last[d] = last[d].max(i);
        for r in op.reads() {
            last[r] = last[r].max(i);
        }
    }
    for &k in keep.iter().chain(std::iter::once(&input)) {
        last[k] = end;
    }
    let mut slot_of = vec![usize::MAX; n];
    let mut free: Vec<usize> = Vec::new();
    let mut next = 0;
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by_key(|&b| (first[b], b));
    let mut live: Vec<usize> = Vec::new();
    for b in order {
        if first[b] == usize::MAX {
            continue;
        }
        // Free what died strictly before this buffer's first write.
        live.retain(|&o| {
            if last[o] < first[b] {
                free.push(slot_of[o]);
                false
            } else {
                true
            }
        });
        slot_of[b] = free.pop().unwrap_or_else(|| {
            next += 1;
            next - 1
        });
        live.push(b);
    }
    for s in slot_of.iter_mut() {
        if *s == usize::MAX {
            *s = 0;
        }
    }
    slot_of
}
