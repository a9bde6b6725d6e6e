//! A CPU inference engine: the model's own dataflow ([`model::YoloModel::lower`], the description the ONNX
//! exporter reads too) is recorded as a graph of operations on NHWC float32 maps ([`graph`]), optimized by
//! passes that know no block ([`passes`]: activation and residual add in the conv epilogue, convs of one
//! input stacked), planned into kernels with pre-packed weights and buffers ([`plan`]: Concat inputs written
//! straight into their slice of the joined map, split halves as views), then run with AVX-512, AVX2, NEON or
//! SIMD128 kernels; map buffers are reused once their last reader has run. Batches run one image per thread;
//! a single image splits each operation across threads. Same output as [`model::YoloModel::forward`] (`(B, 4 + nc, A)`),
//! checked against it in `tests/engine.rs`.
//!
//! Fused and unfused models run (each BatchNorm a per-channel affine pass), so the fusion speed-up can be
//! measured on one engine. An operation without a kernel (a dilated conv) runs through burn by itself; only an
//! x86-64 CPU without AVX2 sends a whole model back to burn ([`Engine::new`] says why).
//!
//! An INT8 model ([`model::int8`]) runs its quantized convolutions, dense ([`qconv`]) and depthwise, on u8
//! inputs; the maps only INT8 operations read are stored as u8, requantized by their producers ([`qmaps`]).

// Every unsafe block says which invariant makes it sound (a SAFETY comment); clippy checks it.
#![deny(clippy::undocumented_unsafe_blocks)]

/// A kernel's dispatcher: `simd_kernel!(fn name = kernel(args))` defines `unsafe fn name(level, args)` that
/// runs `kernel::<I>(args)` with the ISA of `level`, each through a `#[target_feature]` entry of its own (the
/// feature has to be on a function for the kernel inlined into it to be compiled with that instruction set).
/// `kernel::<MR>` passes each level's register-block rows as a second generic argument, `kernel::<R>` a
/// given constant. Only the current architecture's levels are compiled.
macro_rules! simd_kernel {
    ($vis:vis fn $name:ident = $kernel:ident($($arg:ident: $ty:ty),* $(,)?)) => {
        simd_kernel!(@fn $vis $name ($($arg: $ty),*)
            [$kernel::<$crate::engine::simd::Avx512>] [$kernel::<$crate::engine::simd::Avx2>]
            [$kernel::<$crate::engine::simd::Neon>] [$kernel::<$crate::engine::simd::Simd128>]);
    };
    ($vis:vis fn $name:ident = $kernel:ident::<MR>($($arg:ident: $ty:ty),* $(,)?)) => {
        simd_kernel!(@fn $vis $name ($($arg: $ty),*)
            [$kernel::<$crate::engine::simd::Avx512, { $crate::engine::simd::MR_512 }>]
            [$kernel::<$crate::engine::simd::Avx2, { $crate::engine::simd::MR_256 }>]
            [$kernel::<$crate::engine::simd::Neon, { $crate::engine::simd::MR_NEON }>]
            [$kernel::<$crate::engine::simd::Simd128, { $crate::engine::simd::MR_WASM }>]);
    };
    ($vis:vis fn $name:ident = $kernel:ident::<$mr:ident>($($arg:ident: $ty:ty),* $(,)?)) => {
        simd_kernel!(@fn $vis $name ($($arg: $ty),*)
            [$kernel::<$crate::engine::simd::Avx512, $mr>] [$kernel::<$crate::engine::simd::Avx2, $mr>]
            [$kernel::<$crate::engine::simd::Neon, $mr>] [$kernel::<$crate::engine::simd::Simd128, $mr>]);
    };
    (@fn $vis:vis $name:ident ($($arg:ident: $ty:ty),*) [$($x512:tt)*] [$($x256:tt)*] [$($neon:tt)*] [$($wasm:tt)*]) => {
        /// # Safety
        /// `level` was detected on this CPU ([`Level::detect`] or [`Level::available`]), and the kernel's own
        /// contract holds for the arguments.
        #[allow(clippy::too_many_arguments)]
        $vis unsafe fn $name(level: $crate::engine::simd::Level, $($arg: $ty),*) {
            use $crate::engine::simd::Level as L;
            match level {
                #[cfg(target_arch = "x86_64")]
                L::Avx512 => simd_kernel!(@entry "avx512f" ($($arg: $ty),*) $($x512)*),
                #[cfg(target_arch = "x86_64")]
                L::Avx2 => simd_kernel!(@entry "avx2,fma" ($($arg: $ty),*) $($x256)*),
                #[cfg(target_arch = "aarch64")]
                L::Neon => simd_kernel!(@entry "neon" ($($arg: $ty),*) $($neon)*),
                #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
                L::Simd128 => simd_kernel!(@entry "simd128" ($($arg: $ty),*) $($wasm)*),
                #[allow(unreachable_patterns)]
                _ => unreachable!("{level:?} is not a level of this architecture"),
            }
        }
    };
    (@entry $feature:literal ($($arg:ident: $ty:ty),*) $($call:tt)*) => {{
        #[target_feature(enable = $feature)]
        unsafe fn entry($($arg: $ty),*) {
            $($call)*($($arg),*)
        }
        entry($($arg),*)
    }};
}

mod attention;
mod conv;
mod depthwise;
mod graph;
mod op;
mod ops;
mod passes;
mod plan;
pub mod qconv;
mod qmaps;
#[cfg(test)]
mod qtests;
mod simd;
mod team;
#[cfg(test)]
mod tests;
mod winograd;

pub use plan::QuantTable;
pub use qconv::QuantIn;
pub use simd::Level;

use op::{Op, View};
use rayon::prelude::*;
use std::sync::Mutex;

/// Why a model cannot run on the engine, or why an input cannot.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("the inference engine needs {}", Level::REQUIREMENT)]
    NoSimd,
    #[error("the inference engine does not support {0}")]
    Unsupported(String),
    #[error("input {h}x{w}: {what}")]
    BadInput { h: usize, w: usize, what: String },
}

/// The activation a kernel applies before it stores (the conv, depthwise and BatchNorm epilogues).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Act {
    None,
    Relu,
    Silu,
}

/// A standalone elementwise function: an activation, or the sigmoid of a squeeze-excite gate (which no
/// epilogue takes: the kernels stay as small as the models that run them need).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unary {
    Relu,
    Silu,
    Sigmoid,
}

impl Unary {
    /// The epilogue that computes this function, where one does.
    pub fn epilogue(self) -> Option<Act> {
        match self {
            Unary::Relu => Some(Act::Relu),
            Unary::Silu => Some(Act::Silu),
            Unary::Sigmoid => None,
        }
    }

    /// # Safety
    /// As [`Act::vector`].
    #[inline(always)]
    pub(crate) unsafe fn vector<I: simd::Isa>(self, v: I::V) -> I::V {
        match self {
            Unary::Relu => Act::Relu.vector::<I>(v),
            Unary::Silu => Act::Silu.vector::<I>(v),
            Unary::Sigmoid => I::sigmoid(v),
        }
    }

    pub(crate) fn scalar(self, v: f32) -> f32 {
        match self {
            Unary::Relu => Act::Relu.scalar(v),
            Unary::Silu => Act::Silu.scalar(v),
            Unary::Sigmoid => 1.0 / (1.0 + (-v).exp()),
        }
    }
}

impl Act {
    /// On one vector, inside a kernel compiled for `I`.
    ///
    /// # Safety
    /// Called from code compiled with `I`'s target features ([`simd::Isa`]).
    #[inline(always)]
    pub(crate) unsafe fn vector<I: simd::Isa>(self, v: I::V) -> I::V {
        match self {
            Act::None => v,
            // Zero first: x86 max returns its second operand for NaN (NEON's and SIMD128's return NaN), so NaN
            // propagates as in PyTorch.
            Act::Relu => I::max(I::zero(), v),
            Act::Silu => I::silu(v),
        }
    }

    /// [`Self::vector`] on `N` vectors at once, SiLU's chains side by side ([`simd::Isa::silu_n`]).
    ///
    /// # Safety
    /// As [`Self::vector`].
    #[inline(always)]
    pub(crate) unsafe fn vectors<I: simd::Isa, const N: usize>(
        self,
        mut v: [I::V; N],
    ) -> [I::V; N] {
        // Plain loops: written with `array::map` and a closure, Winograd's ReLU convolutions measured
        // 1.1-1.4x slower.
        match self {
            Act::None => {}
            Act::Relu => {
                for x in v.iter_mut() {
                    *x = I::max(I::zero(), *x);
                }
            }
            Act::Silu => v = I::silu_n(v),
        }
        v
    }

    pub(crate) fn scalar(self, v: f32) -> f32 {
        match self {
            Act::None => v,
            Act::Relu => depthwise::relu(v),
            Act::Silu => v / (1.0 + (-v).exp()),
        }
    }
}

/// A read-only NHWC view: `h * w` pixels, `stride` values apart, starting at the first channel read. Maps
/// are float32; a map that only INT8 operations read is stored as u8 (`Src<u8>`, see [`qmaps`]).
#[derive(Clone, Copy)]
pub struct Src<T = f32> {
    pub ptr: *const T,
    pub h: usize,
    pub w: usize,
    pub stride: usize,
}

/// A writable NHWC view, as [`Src`].
#[derive(Clone, Copy)]
pub struct Dst<T = f32> {
    pub ptr: *mut T,
    pub h: usize,
    pub w: usize,
    pub stride: usize,
}

// SAFETY: a view is a plain pointer into a workspace buffer (or a caller's slice) that outlives every
// operation given it; sending one to another thread is sending the pointer.
unsafe impl<T> Send for Src<T> {}
// SAFETY: threads sharing a source view only read through it.
unsafe impl<T> Sync for Src<T> {}
// SAFETY: as for `Src`.
unsafe impl<T> Send for Dst<T> {}
// SAFETY: operations that share a destination view across threads write disjoint pixels (`par_ranges`
// hands each thread its own range of rows, tiles or pixels).
unsafe impl<T> Sync for Dst<T> {}

/// Runs `job(start, end)` over `0..n`, split across the thread pool when `parallel`.
pub(crate) fn par_ranges(n: usize, parallel: bool, job: &(dyn Fn(usize, usize) + Sync)) {
    let threads = rayon::current_num_threads();
    if !parallel || threads < 2 || n < 2 {
        job(0, n);
        return;
    }
    let chunks = n.min(threads * 4);
    if team::run(n, chunks, job) {
        return;
    }
    (0..chunks)
        .into_par_iter()
        .for_each(|c| job(c * n / chunks, (c + 1) * n / chunks));
}

/// The head's outputs: for Detect one raw map buffer per level; for Classify one `1 x 1` map of logits.
#[derive(Debug, Clone)]
struct DetectOut {
    maps: Vec<usize>,
    strides: Vec<f32>,
    reg_max: usize,
    nc: usize,
    /// A classifier: the output is the softmax of the one map's `nc` logits.
    classify: bool,
}

impl DetectOut {
    /// Channels of each head map.
    fn channels(&self) -> usize {
        if self.classify {
            self.nc
        } else {
            4 * self.reg_max + self.nc
        }
    }
}

/// Per-thread memory: one buffer per slot, grown to the largest map assigned to it.
#[derive(Default)]
struct Workspace {
    slots: Vec<Vec<f32>>,
    zeros: Vec<f32>,
    /// An INT8 convolution's quantized input.
    qbuf: Vec<u8>,
}

/// Where each buffer lives for one input size: its `(h, w)`, its workspace slot, and each slot's floats.
struct Layout {
    dims: Vec<(usize, usize)>,
    slot_of: Vec<usize>,
    need: Vec<usize>,
    /// Bytes of the largest quantized input.
    qneed: usize,
}

/// What a calibration hook is shown before each dense convolution: the parameters of its weights and its
/// input, `h * w` pixels of `c` channels.
pub struct ConvInput<'a> {
    pub ids: &'a [model::burn::module::ParamId],
    pub values: &'a [f32],
    pub h: usize,
    pub w: usize,
    pub c: usize,
}

/// An INT8 convolution's input as its kernel quantizes it: `h * w` pixels of `c` bytes (NHWC).
pub struct QuantizedInput<'a> {
    pub ids: &'a [model::burn::module::ParamId],
    pub q: &'a [u8],
    pub h: usize,
    pub w: usize,
    pub c: usize,
}

/// Called before an operation runs, with the maps it reads.
type Hook<'a> = &'a mut dyn FnMut(usize, &Op, &Maps);

/// Every buffer of one pass: its pointer (a u8 map's bytes lie in its slot's floats) and geometry.
pub(super) struct Maps<'a> {
    bases: Vec<*mut f32>,
    dims: &'a [(usize, usize)],
    slot_of: &'a [usize],
    channels: &'a [usize],
}

impl Maps<'_> {
    fn at(&self, v: View) -> (*mut f32, usize, usize, usize) {
        let (h, w) = self.dims[v.buf];
        (self.bases[self.slot_of[v.buf]], h, w, self.channels[v.buf])
    }

    pub fn src(&self, v: View) -> Src {
        let d = self.dst(v);
        Src {
            ptr: d.ptr,
            h: d.h,
            w: d.w,
            stride: d.stride,
        }
    }

    pub fn dst(&self, v: View) -> Dst {
        let (base, h, w, stride) = self.at(v);
        // SAFETY: `off` is below the buffer's channel count, within the slot sized for the pass.
        let ptr = unsafe { base.add(v.off) };
        Dst { ptr, h, w, stride }
    }

    /// A u8 map's view: bytes, `channels` per pixel.
    pub fn qsrc(&self, v: View) -> Src<u8> {
        let d = self.qdst(v);
        Src {
            ptr: d.ptr,
            h: d.h,
            w: d.w,
            stride: d.stride,
        }
    }

    pub fn qdst(&self, v: View) -> Dst<u8> {
        let (base, h, w, stride) = self.at(v);
        // SAFETY: a u8 map's slot holds its `h * w * channels` bytes (and 4 more); `off` is below `channels`.
        let ptr = unsafe { (base as *mut u8).add(v.off) };
        Dst { ptr, h, w, stride }
    }

    /// An INT8 operation's input: the u8 map as it is, or the float map and the bytes to quantize it into.
    pub fn input<'b>(&self, v: View, u8: bool, qbuf: &'b mut [u8]) -> qconv::QInput<'b> {
        if u8 {
            qconv::QInput::Quantized(self.qsrc(v))
        } else {
            qconv::QInput::Float(self.src(v), qbuf)
        }
    }

    /// An operation's output: the float map, or the u8 map with its quantization.
    pub fn output(&self, v: View, q: Option<QuantIn>) -> qconv::QOutput {
        match q {
            Some(q) => qconv::QOutput::Quantized(self.qdst(v), q),
            None => qconv::QOutput::Float(self.dst(v)),
        }
    }
}

/// A fused model lowered for the CPU.
pub struct Engine {
    level: Level,
    ops: Vec<Op>,
    /// Channels of each buffer.
    channels: Vec<usize>,
    /// The operations that first write and last read each buffer (none for a buffer never used).
    life: Vec<Option<(usize, usize)>>,
    input: usize,
    detect: DetectOut,
    max_cin: usize,
    /// Each buffer's quantization where it is a u8 map ([`qmaps`]).
    quantized: Vec<Option<QuantIn>>,
    workspaces: Mutex<Vec<Workspace>>,
    /// Spinning helpers for an image split across cores.
    team: team::Team,
}

impl Engine {
    /// Lowers a fused model. Errors say what the engine cannot run (the caller then uses burn).
    /// A model read from an INT8 file runs its quantized convolutions in INT8.
    pub fn new(model: &model::YoloModel) -> Result<Engine, EngineError> {
        let level = Level::detect().ok_or(EngineError::NoSimd)?;
        Self::with_level(model, level)
    }

    /// [`Self::new`] with the kernels of a given level (tests run both where the CPU has them).
    pub fn with_level(model: &model::YoloModel, level: Level) -> Result<Engine, EngineError> {
        Self::int8_engine(model, level, true)
    }

    /// An INT8 model's engine with every map float32 (each INT8 convolution quantizes its input itself):
    /// what u8 maps gain is timed against it, and the outputs of both are the same.
    pub fn with_float_maps(model: &model::YoloModel) -> Result<Engine, EngineError> {
        let level = Level::detect().ok_or(EngineError::NoSimd)?;
        Self::int8_engine(model, level, false)
    }

    fn int8_engine(
        model: &model::YoloModel,
        level: Level,
        u8_maps: bool,
    ) -> Result<Engine, EngineError> {
        let table = match &model.int8 {
            Some(info) => Some(int8_table(model, info)?),
            None => None,
        };
        Self::planned(
            model,
            level,
            plan::Options {
                quant: table.as_ref(),
                keep_weights: false,
                u8_maps,
            },
        )
    }

    /// Maps stored as u8 ([`qmaps`]).
    pub fn u8_maps(&self) -> usize {
        self.quantized.iter().filter(|q| q.is_some()).count()
    }

    /// A float engine that keeps each dense convolution's weights, for [`Self::int8_errors`].
    pub fn for_calibration(model: &model::YoloModel) -> Result<Engine, EngineError> {
        let level = Level::detect().ok_or(EngineError::NoSimd)?;
        Self::planned(
            model,
            level,
            plan::Options {
                quant: None,
                keep_weights: true,
                u8_maps: false,
            },
        )
    }

    fn planned(
        model: &model::YoloModel,
        level: Level,
        opts: plan::Options<'_>,
    ) -> Result<Engine, EngineError> {
        let mut g =
            graph::Graph::record(model).map_err(|e| EngineError::Unsupported(e.to_string()))?;
        passes::optimize(&mut g);
        let mut p = plan::plan(&g, level, opts);
        let quantized = if opts.u8_maps {
            qmaps::assign(&mut p.ops, p.channels.len(), p.input, &p.outputs)
        } else {
            vec![None; p.channels.len()]
        };
        let head = match model.classify_head() {
            Some(c) => DetectOut {
                maps: p.outputs.clone(),
                strides: vec![],
                reg_max: 0,
                nc: c.nc(),
                classify: true,
            },
            None => {
                let d = model.detect();
                DetectOut {
                    maps: p.outputs.clone(),
                    strides: d.strides.clone(),
                    reg_max: d.reg_max,
                    nc: d.nc,
                    classify: false,
                }
            }
        };
        let ch = head.channels();
        if let Some(&b) = p.outputs.iter().find(|&&b| p.channels[b] != ch) {
            return Err(EngineError::Unsupported(format!(
                "a head map of {} channels (the head has {ch})",
                p.channels[b]
            )));
        }
        let life = lifetimes(&p.ops, p.channels.len(), p.input, &p.outputs);
        Ok(Engine {
            level,
            ops: p.ops,
            channels: p.channels,
            life,
            input: p.input,
            detect: head,
            max_cin: p.max_cin,
            quantized,
            workspaces: Mutex::new(Vec::new()),
            team: team::Team::default(),
        })
    }

    pub fn level(&self) -> Level {
        self.level
    }

    pub fn nc(&self) -> usize {
        self.detect.nc
    }

    /// Whether the model is a classifier (its output is `nc` probabilities per image).
    pub fn is_classifier(&self) -> bool {
        self.detect.classify
    }

    /// Floats of one image's decoded output `(4 + nc, A)`, or a classifier's `nc`.
    fn out_len(&self, dims: &[(usize, usize)]) -> usize {
        if self.detect.classify {
            return self.detect.nc;
        }
        let a: usize = self
            .detect
            .maps
            .iter()
            .map(|&m| dims[m].0 * dims[m].1)
            .sum();
        (4 + self.detect.nc) * a
    }

    /// Every buffer's size for an `h x w` input, and the workspace slots that hold them.
    fn layout(&self, h: usize, w: usize) -> Result<Layout, EngineError> {
        let dims = self.sizes(h, w)?;
        // A u8 map in floats, with 4 bytes more: the INT8 kernel reads a pixel's last channels 4 at a time.
        let floats: Vec<usize> = dims
            .iter()
            .zip(&self.channels)
            .zip(&self.quantized)
            .map(|((&(h, w), &c), q)| match q {
                Some(_) => (h * w * c + 4).div_ceil(4),
                None => h * w * c,
            })
            .collect();
        let (slot_of, need) = assign_slots(&self.life, &floats);
        let qneed = self
            .ops
            .iter()
            .map(|op| match op {
                Op::QConv {
                    pq,
                    src,
                    src_u8: false,
                    ..
                } => {
                    let (h, w) = dims[src.buf];
                    pq.qbytes(h, w)
                }
                Op::Depthwise {
                    pd,
                    src,
                    src_u8: false,
                    ..
                } if pd.int8.is_some() => {
                    let (h, w) = dims[src.buf];
                    pd.qbytes(h, w)
                }
                _ => 0,
            })
            .max()
            .unwrap_or(0);
        Ok(Layout {
            dims,
            slot_of,
            need,
            qneed,
        })
    }

    /// `(h, w)` of every buffer for an `h x w` input.
    fn sizes(&self, h: usize, w: usize) -> Result<Vec<(usize, usize)>, EngineError> {
        let mut dims: Vec<Option<(usize, usize)>> = vec![None; self.channels.len()];
        dims[self.input] = Some((h, w));
        let bad = |what: String| EngineError::BadInput { h, w, what };
        for op in &self.ops {
            let out = op.out_size(&dims).map_err(bad)?;
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

    /// Eval output for an NCHW batch `x` (`b * 3 * h * w` floats, RGB in 0..1): `(b, 4 + nc, A)`, flattened (a
    /// classifier's `(b, nc)` probabilities).
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
        let layout = self.layout(h, w)?;
        let dims = &layout.dims;
        let per_out = self.out_len(dims);
        let ch = self.detect.channels();
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
                &layout,
                o,
                parallel,
                want_raw,
                None,
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
        let layout = self.layout(h, w)?;
        let dims = &layout.dims;
        let mut out = vec![0.0f32; self.out_len(dims)];
        let mut ws = self.take_workspace();
        // Each operation, then the decode, then the input's conversion to NHWC.
        let mut samples: Vec<Vec<f64>> = vec![Vec::new(); self.ops.len() + 2];
        for _ in 0..iters.max(1) {
            let mut t = vec![0.0; self.ops.len() + 2];
            self.run_image(
                &mut ws,
                &x[..3 * h * w],
                &layout,
                &mut out,
                true,
                false,
                Some(&mut t),
                None,
            );
            for (s, v) in samples.iter_mut().zip(t) {
                s.push(v);
            }
        }
        self.give_workspace(ws);
        let median = |mut s: Vec<f64>| {
            s.sort_by(f64::total_cmp);
            s[s.len() / 2]
        };
        let input = median(samples.pop().unwrap_or_default());
        let decode = median(samples.pop().unwrap_or_default());
        let mut rows: Vec<(String, f64)> = vec![("input (NCHW to NHWC)".into(), input)];
        rows.extend(self.ops.iter().zip(samples).map(|(op, s)| {
            let (oh, ow) = dims[op.writes()];
            let what = op.describe();
            (format!("{what} @{oh}x{ow}"), median(s))
        }));
        rows.push((
            if self.detect.classify {
                "softmax".into()
            } else {
                "decode (DFL, anchors, sigmoid)".into()
            },
            decode,
        ));
        Ok(rows)
    }

    /// Runs one image (`3 * h * w` floats, NCHW) and shows `f` the input of every dense convolution before it
    /// runs (INT8 calibration).
    pub fn conv_inputs(
        &self,
        x: &[f32],
        h: usize,
        w: usize,
        f: &mut dyn FnMut(ConvInput<'_>),
    ) -> Result<(), EngineError> {
        let layout = self.layout(h, w)?;
        let channels = &self.channels;
        let mut hook = |_: usize, op: &Op, maps: &Maps| {
            let (s, ids, c) = match op {
                Op::Conv { pc, src, ids, .. } => (src, ids, pc.cin),
                Op::Depthwise { pd, src, ids, .. } => (src, ids, pd.c),
                _ => return,
            };
            if ids.is_empty() {
                return;
            }
            let v = maps.src(*s);
            debug_assert!(s.off + c <= channels[s.buf]);
            let mut values = Vec::with_capacity(v.h * v.w * c);
            for p in 0..v.h * v.w {
                // SAFETY: the view holds `h * w` pixels of at least `c` channels, `stride` apart.
                values.extend_from_slice(unsafe {
                    std::slice::from_raw_parts(v.ptr.add(p * v.stride), c)
                });
            }
            f(ConvInput {
                ids,
                values: &values,
                h: v.h,
                w: v.w,
                c,
            });
        };
        self.run_hooked(x, &layout, true, &mut hook);
        Ok(())
    }

    /// Each INT8-eligible convolution's output error on one image when it alone runs in INT8 with `quant`'s
    /// input parameters (its input computed in float): adds the squared error and the squared float output
    /// to `acc`, keyed by the first parameter of its weights.
    pub fn int8_errors(
        &self,
        x: &[f32],
        h: usize,
        w: usize,
        quant: &QuantTable,
        acc: &mut std::collections::HashMap<model::burn::module::ParamId, (f64, f64)>,
    ) -> Result<(), EngineError> {
        let layout = self.layout(h, w)?;
        let dims = layout.dims.clone();
        let level = self.level;
        let mut hook = |_: usize, op: &Op, maps: &Maps| {
            let (s, d, act, ids, cw) = match op {
                Op::Conv {
                    src,
                    dst,
                    act,
                    ids,
                    raw: Some(cw),
                    ..
                }
                | Op::Depthwise {
                    src,
                    dst,
                    act,
                    ids,
                    raw: Some(cw),
                    ..
                } => (src, dst, *act, ids, cw),
                _ => return,
            };
            let Some(&x) = ids.first().and_then(|i| quant.get(i)) else {
                return;
            };
            let v = maps.src(*s);
            let (oh, ow) = dims[d.buf];
            let n = oh * ow * cw.cout;
            let (mut yf, mut yq) = (vec![0.0f32; n], vec![0.0f32; n]);
            let mk = |y: &mut Vec<f32>| Dst {
                ptr: y.as_mut_ptr(),
                h: oh,
                w: ow,
                stride: cw.cout,
            };
            match op {
                Op::Depthwise { pd, .. } => {
                    let (c, k, st, p) = (pd.c, pd.k, pd.s, pd.p);
                    let pq =
                        depthwise::PackedDepthwise::new_int8(level, &cw.w, &cw.b, c, k, st, p, x);
                    pd.run(v, mk(&mut yf), act, false);
                    let mut q = vec![0u8; pq.qbytes(v.h, v.w)];
                    let output = qconv::QOutput::Float(mk(&mut yq));
                    pq.run_with(qconv::QInput::Float(v, &mut q), output, act, false);
                }
                Op::Conv { pc, .. } => {
                    let pq = qconv::PackedQConv::new(
                        level, &cw.w, &cw.b, pc.cout, pc.cin, pc.k, pc.s, pc.p, x,
                    );
                    let zeros = vec![0.0f32; pc.cin];
                    pc.run(v, mk(&mut yf), act, None, &zeros, false);
                    let mut q = vec![0u8; pq.qbytes(v.h, v.w)];
                    let output = qconv::QOutput::Float(mk(&mut yq));
                    pq.run(qconv::QInput::Float(v, &mut q), output, act, None, false);
                }
                _ => return,
            }
            let e = acc.entry(ids[0]).or_insert((0.0, 0.0));
            for (a, b) in yf.iter().zip(&yq) {
                e.0 += ((a - b) as f64).powi(2);
                e.1 += (*a as f64).powi(2);
            }
        };
        self.run_hooked(x, &layout, false, &mut hook);
        Ok(())
    }

    /// Runs one image (`3 * h * w` floats, NCHW) and shows `f` each INT8 convolution's quantized input (`h *
    /// w` pixels of `c` bytes, NHWC) as its kernel computes it: the reference of the per-layer test. When `f`
    /// returns values (as many, the same layout), the convolution runs on those instead, so each layer can be
    /// fed a reference's input and checked alone.
    pub fn int8_inputs(
        &self,
        x: &[f32],
        h: usize,
        w: usize,
        f: &mut dyn FnMut(QuantizedInput<'_>) -> Option<Vec<u8>>,
    ) -> Result<(), EngineError> {
        let layout = self.layout(h, w)?;
        let mut hook = |_: usize, op: &Op, maps: &Maps| {
            let (s, ids, src_u8, x, cin) = match op {
                Op::QConv {
                    pq,
                    src,
                    ids,
                    src_u8,
                    ..
                } => (src, ids, *src_u8, pq.x, pq.cin),
                Op::Depthwise {
                    pd,
                    src,
                    ids,
                    src_u8,
                    ..
                } => match &pd.int8 {
                    Some(i) => (src, ids, *src_u8, i.x, pd.c),
                    None => return,
                },
                _ => return,
            };
            let (v, b) = (maps.src(*s), maps.qsrc(*s));
            let mut q = Vec::with_capacity(v.h * v.w * cin);
            for p in 0..v.h * v.w {
                if src_u8 {
                    // SAFETY: the u8 map holds `h * w` pixels of at least `cin` channels, `stride` apart.
                    q.extend_from_slice(unsafe {
                        std::slice::from_raw_parts(b.ptr.add(p * b.stride), cin)
                    });
                    continue;
                }
                // SAFETY: the view holds `h * w` pixels of at least `cin` channels, `stride` apart.
                let px = unsafe { std::slice::from_raw_parts(v.ptr.add(p * v.stride), cin) };
                q.extend(px.iter().map(|&v| x.quantize(v)));
            }
            let Some(fed) = f(QuantizedInput {
                ids,
                q: &q,
                h: v.h,
                w: v.w,
                c: cin,
            }) else {
                return;
            };
            assert_eq!(fed.len(), q.len(), "values fed to an INT8 layer");
            let (d, bd) = (maps.dst(*s), maps.qdst(*s));
            for p in 0..v.h * v.w {
                for c in 0..cin {
                    let q = fed[p * cin + c];
                    // SAFETY: as above; the map is written before the operation that reads it runs, by this
                    // thread alone (the pass is not parallel).
                    unsafe {
                        if src_u8 {
                            *bd.ptr.add(p * bd.stride + c) = q;
                        } else {
                            // Dequantized: the layer quantizes it back to `q`.
                            *d.ptr.add(p * d.stride + c) = (q as f32 - x.zero as f32) * x.scale;
                        }
                    }
                }
            }
        };
        self.run_hooked(x, &layout, false, &mut hook);
        Ok(())
    }

    /// One image (the first `3 * h * w` floats of `x`) through every operation with `hook` shown each
    /// before it runs; the output is dropped.
    fn run_hooked(&self, x: &[f32], layout: &Layout, parallel: bool, hook: Hook<'_>) {
        let (h, w) = layout.dims[self.input];
        let mut out = vec![0.0f32; self.out_len(&layout.dims)];
        let mut ws = self.take_workspace();
        self.run_image(
            &mut ws,
            &x[..3 * h * w],
            layout,
            &mut out,
            parallel,
            false,
            None,
            Some(hook),
        );
        self.give_workspace(ws);
    }

    /// The map group each convolution reads (by the first parameter of its weights): convolutions of one
    /// group share their input quantization, so the maps between them can be u8 ([`qmaps`]).
    pub fn input_groups(&self) -> std::collections::HashMap<model::burn::module::ParamId, usize> {
        let groups = qmaps::groups(&self.ops, self.channels.len());
        self.ops
            .iter()
            .filter_map(|op| match op {
                Op::Conv { src, ids, .. }
                | Op::QConv { src, ids, .. }
                | Op::Depthwise { src, ids, .. } => ids.first().map(|id| (*id, groups[src.buf])),
                _ => None,
            })
            .collect()
    }

    /// Operations that run in INT8.
    pub fn int8_ops(&self) -> usize {
        self.ops
            .iter()
            .filter(|op| match op {
                Op::QConv { .. } => true,
                Op::Depthwise { pd, .. } => pd.int8.is_some(),
                _ => false,
            })
            .count()
    }

    fn take_workspace(&self) -> Workspace {
        let mut ws = self
            .workspaces
            .lock()
            .map(|mut v| v.pop())
            .unwrap_or(None)
            .unwrap_or_default();
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
        layout: &Layout,
        out: &mut [f32],
        parallel: bool,
        want_raw: bool,
        mut times: Option<&mut Vec<f64>>,
        mut hook: Option<Hook<'_>>,
    ) -> Vec<Vec<f32>> {
        let _session = if parallel {
            self.team.session(rayon::current_num_threads())
        } else {
            None
        };
        let (dims, slot_of) = (&layout.dims, &layout.slot_of);
        // Size every slot first: pointers taken below stay valid for the whole pass.
        if ws.slots.len() < layout.need.len() {
            ws.slots.resize_with(layout.need.len(), Vec::new);
        }
        for (s, n) in ws.slots.iter_mut().zip(&layout.need) {
            if s.len() < *n {
                s.resize(*n, 0.0);
            }
        }
        if ws.qbuf.len() < layout.qneed {
            ws.qbuf.resize(layout.qneed, 0);
        }
        let (h, w) = dims[self.input];
        let t0 = times.is_some().then(crate::clock::Instant::now);
        {
            // NCHW planes to NHWC pixels, rows split across threads for a single image.
            let inp = &mut ws.slots[slot_of[self.input]];
            let plane = h * w;
            let dst = Dst {
                ptr: inp.as_mut_ptr(),
                h,
                w,
                stride: 3,
            };
            let (r, rest) = x.split_at(plane);
            let (g, b) = rest.split_at(plane);
            let job = |y0: usize, y1: usize| {
                // The whole view is captured, not its pointer field (the view is Sync).
                let out = dst;
                let (p0, p1) = (y0 * w, y1 * w);
                // SAFETY: pixels p0..p1 lie inside the slot (h * w * 3 floats); rows are disjoint between jobs.
                let out =
                    unsafe { std::slice::from_raw_parts_mut(out.ptr.add(p0 * 3), (p1 - p0) * 3) };
                // Whole slices zipped: the compiler interleaves the three planes with vector shuffles.
                let planes = r[p0..p1].iter().zip(&g[p0..p1]).zip(&b[p0..p1]);
                for (px, ((&r, &g), &b)) in out.chunks_exact_mut(3).zip(planes) {
                    px.copy_from_slice(&[r, g, b]);
                }
            };
            par_ranges(h, parallel, &job);
        }
        if let (Some(t), Some(t0)) = (times.as_deref_mut(), t0) {
            t[self.ops.len() + 1] += t0.elapsed().as_secs_f64() * 1e3;
        }
        // Pointers taken once: the slots were sized above and are not resized during the pass.
        let maps = Maps {
            bases: ws.slots.iter_mut().map(|s| s.as_mut_ptr()).collect(),
            dims,
            slot_of,
            channels: &self.channels,
        };
        for (oi, op) in self.ops.iter().enumerate() {
            if let Some(h) = hook.as_deref_mut() {
                h(oi, op, &maps);
            }
            // No clock read unless timed: in a browser each is a call out to JavaScript.
            let t0 = times.is_some().then(crate::clock::Instant::now);
            op.run(self.level, &maps, &ws.zeros, &mut ws.qbuf, parallel);
            if let (Some(t), Some(t0)) = (times.as_deref_mut(), t0) {
                t[oi] += t0.elapsed().as_secs_f64() * 1e3;
            }
        }
        let ch = self.detect.channels();
        let raw: Vec<Vec<f32>> = if want_raw {
            self.detect
                .maps
                .iter()
                .map(|&m| {
                    let (mh, mw) = dims[m];
                    ws.slots[slot_of[m]][..mh * mw * ch].to_vec()
                })
                .collect()
        } else {
            Vec::new()
        };
        if self.detect.classify {
            let m = self.detect.maps[0];
            let t0 = crate::clock::Instant::now();
            softmax_into(&ws.slots[slot_of[m]][..ch], out);
            if let Some(t) = times {
                t[self.ops.len()] += t0.elapsed().as_secs_f64() * 1e3;
            }
            return raw;
        }
        let levels: Vec<ops::LevelMap<'_>> = self
            .detect
            .maps
            .iter()
            .zip(&self.detect.strides)
            .map(|(&m, &st)| {
                let (mh, mw) = dims[m];
                ops::LevelMap {
                    map: &ws.slots[slot_of[m]][..mh * mw * ch],
                    h: mh,
                    w: mw,
                    stride: st,
                }
            })
            .collect();
        let t0 = crate::clock::Instant::now();
        ops::decode(
            self.level,
            &levels,
            self.detect.reg_max,
            self.detect.nc,
            out,
            parallel,
        );
        if let Some(t) = times {
            t[self.ops.len()] += t0.elapsed().as_secs_f64() * 1e3;
        }
        raw
    }
}

/// Each convolution weight's parameter with its state_dict key.
pub fn conv_weight_keys(
    model: &model::YoloModel,
) -> std::collections::HashMap<model::burn::module::ParamId, String> {
    use model::nn::{NamedRef, Slot};
    let mut keys = std::collections::HashMap::new();
    model.for_each_named("", &mut |k, slot| {
        if let Slot::W4(p) = slot {
            keys.insert(p.id, k);
        }
    });
    keys
}

/// The engine's table for an INT8 model: each quantized weight's parameter with its input quantization.
pub fn int8_table(
    model: &model::YoloModel,
    info: &model::int8::Int8Info,
) -> Result<QuantTable, EngineError> {
    let keys = conv_weight_keys(model);
    let ids: std::collections::HashMap<&str, model::burn::module::ParamId> =
        keys.iter().map(|(id, k)| (k.as_str(), *id)).collect();
    let mut table = QuantTable::new();
    for (k, q) in &info.inputs {
        let id = ids.get(k.as_str()).ok_or_else(|| {
            EngineError::Unsupported(format!(
                "INT8 input for {k}, which is not a convolution weight of this model"
            ))
        })?;
        table.insert(
            *id,
            QuantIn {
                scale: q.scale,
                zero: q.zero,
            },
        );
    }
    Ok(table)
}

/// A classifier's probabilities: softmax of `logits` (max subtracted, as PyTorch's) into `out`.
fn softmax_into(logits: &[f32], out: &mut [f32]) {
    let max = logits.iter().fold(f32::NEG_INFINITY, |m, &x| m.max(x));
    let mut sum = 0.0f32;
    for (o, &x) in out.iter_mut().zip(logits) {
        *o = (x - max).exp();
        sum += *o;
    }
    for o in out.iter_mut() {
        *o /= sum;
    }
}

/// The first operation that writes and the last that reads each buffer. The input is written before the
/// first operation; it and the Detect maps are kept to the end.
fn lifetimes(ops: &[Op], n: usize, input: usize, keep: &[usize]) -> Vec<Option<(usize, usize)>> {
    let mut life: Vec<Option<(usize, usize)>> = vec![None; n];
    let mut touch = |b: usize, i: usize| {
        let e = life[b].get_or_insert((i, i));
        e.1 = e.1.max(i);
    };
    touch(input, 0);
    for (i, op) in ops.iter().enumerate() {
        touch(op.writes(), i);
        for r in op.reads() {
            touch(r, i);
        }
    }
    for &k in keep.iter().chain(std::iter::once(&input)) {
        if let Some(e) = life[k].as_mut() {
            e.1 = ops.len();
        }
    }
    life
}

/// Assigns buffers (`floats` each) to workspace slots in the order they are first written: a buffer takes
/// the smallest free slot that holds it, else grows the largest free one, else opens a slot; its slot is
/// free again after its last reader. Returns each buffer's slot and each slot's size.
fn assign_slots(life: &[Option<(usize, usize)>], floats: &[usize]) -> (Vec<usize>, Vec<usize>) {
    let mut order: Vec<usize> = (0..life.len()).filter(|&b| life[b].is_some()).collect();
    order.sort_by_key(|&b| (life[b].map(|l| l.0), b));
    let mut slot_of = vec![0usize; life.len()];
    let mut need: Vec<usize> = Vec::new();
    let (mut live, mut free): (Vec<usize>, Vec<usize>) = (Vec::new(), Vec::new());
    for b in order {
        let Some((first, _)) = life[b] else { continue };
        // Free what died strictly before this buffer's first write.
        live.retain(|&o| match life[o] {
            Some((_, last)) if last < first => {
                free.push(slot_of[o]);
                false
            }
            _ => true,
        });
        let best = free
            .iter()
            .enumerate()
            .filter(|&(_, &s)| need[s] >= floats[b])
            .min_by_key(|&(_, &s)| need[s])
            .or_else(|| free.iter().enumerate().max_by_key(|&(_, &s)| need[s]))
            .map(|(i, _)| i);
        let s = match best {
            Some(i) => free.swap_remove(i),
            None => {
                need.push(0);
                need.len() - 1
            }
        };
        need[s] = need[s].max(floats[b]);
        slot_of[b] = s;
        live.push(b);
    }
    (slot_of, need)
}
