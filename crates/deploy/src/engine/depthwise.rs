//! Depthwise convolution (groups = channels) computed directly on NHWC maps: each output pixel is a sum
//! over the kernel taps of whole channel vectors, so the channels are the vector lanes and nothing is
//! gathered. Bias and activation are applied before the store.
//!
//! INT8: the input is a u8 map (or a float map quantized first) and the weights are integers (symmetric per
//! channel, as the dense INT8 kernel's); the sums run in float32 on `q - zero` and the integer weights, which
//! is exact (every product and partial sum is an integer below 2^24: 49 taps x 255 x 63 < 2^20), so they are
//! the i32 sums, then scaled by `x_scale * w_scale` with the bias added. Depthwise work is memory-bound; the
//! gain is in reading and writing bytes, not in integer multiplies.

use super::qconv::{quantize_map, quantize_weights, QInput, QMac, QOutput, QuantIn};
use super::simd::Level;
use super::{par_ranges, Act, Dst, Src};

/// A depthwise convolution's weights as `[tap][c]`.
#[derive(Debug, Clone)]
pub struct PackedDepthwise {
    pub k: usize,
    pub s: usize,
    pub p: usize,
    pub c: usize,
    level: Level,
    /// Float weights, or with `int8` the integer weights as floats.
    w: Vec<f32>,
    bias: Vec<f32>,
    pub int8: Option<DwInt8>,
}

/// An INT8 depthwise convolution's input quantization and per-channel `x_scale * w_scale`.
#[derive(Debug, Clone)]
pub struct DwInt8 {
    pub x: QuantIn,
    scale: Vec<f32>,
}

/// The epilogue constants one kernel call needs (pointers into the packed convolution).
#[derive(Clone, Copy)]
struct Epi {
    bias: *const f32,
    /// INT8: `x_scale * w_scale` per channel (the sums start at zero and are scaled before the bias).
    scale: Option<*const f32>,
    zero: f32,
}

/// What the kernel reads: float32 maps, or u8 maps whose values enter the sums as `q - zero`.
trait DwIn: Copy {
    /// # Safety
    /// `p` valid for `n <= LANES` values; compiled with `I`'s target features.
    unsafe fn load<I: QMac>(p: *const Self, n: usize, zero: f32) -> I::V;
}

impl DwIn for f32 {
    #[inline(always)]
    unsafe fn load<I: QMac>(p: *const f32, n: usize, _: f32) -> I::V {
        if n == I::LANES {
            I::load(p)
        } else {
            I::load_n(p, n)
        }
    }
}

impl DwIn for u8 {
    #[inline(always)]
    unsafe fn load<I: QMac>(p: *const u8, n: usize, zero: f32) -> I::V {
        I::sub(I::load_u8(p, n), I::splat(zero))
    }
}

impl PackedDepthwise {
    /// `weight` is PyTorch's `(c, 1, k, k)`.
    pub fn new(
        level: Level,
        weight: &[f32],
        bias: &[f32],
        c: usize,
        k: usize,
        s: usize,
        p: usize,
    ) -> Self {
        let taps = k * k;
        let mut w = vec![0.0f32; taps * c];
        for ch in 0..c {
            for t in 0..taps {
                w[t * c + ch] = weight[ch * taps + t];
            }
        }
        PackedDepthwise {
            k,
            s,
            p,
            c,
            level,
            w,
            bias: bias.to_vec(),
            int8: None,
        }
    }

    /// The INT8 convolution of float `weight` (quantized here) on inputs quantized with `x`.
    #[allow(clippy::too_many_arguments)]
    pub fn new_int8(
        level: Level,
        weight: &[f32],
        bias: &[f32],
        c: usize,
        k: usize,
        s: usize,
        p: usize,
        x: QuantIn,
    ) -> Self {
        let (q, w_scale) = quantize_weights(weight, c);
        let ints: Vec<f32> = q.iter().map(|&v| v as f32).collect();
        let mut pd = Self::new(level, &ints, bias, c, k, s, p);
        pd.int8 = Some(DwInt8 {
            x,
            scale: w_scale.iter().map(|&ws| x.scale * ws).collect(),
        });
        pd
    }

    /// Bytes of quantized input for an `h x w` map (INT8, when the input map is float).
    pub fn qbytes(&self, h: usize, w: usize) -> usize {
        h * w * self.c
    }

    /// Float in, float out.
    pub fn run(&self, src: Src, dst: Dst, act: Act, parallel: bool) {
        self.run_with(
            QInput::Float(src, &mut []),
            QOutput::Float(dst),
            act,
            parallel,
        )
    }

    /// The convolution of `input` into `output`: a u8 output row is computed in float, then quantized. An
    /// INT8 convolution quantizes a float input into its bytes first; a float one reads floats only.
    pub fn run_with(&self, input: QInput, output: QOutput, act: Act, parallel: bool) {
        let (dst, oh) = (output, output.size().0);
        let level = self.level;
        let Some(int8) = &self.int8 else {
            let QInput::Float(src, _) = input else {
                unreachable!("u8 maps are read only by INT8 operations (qmaps)")
            };
            let epi = Epi {
                bias: self.bias.as_ptr(),
                scale: None,
                zero: 0.0,
            };
            let job = |y0: usize, y1: usize| {
                // SAFETY: views valid for their geometry, output rows disjoint between jobs, ISA detected.
                unsafe { rows_on(level, self, src, dst, epi, act, y0, y1) }
            };
            return par_ranges(oh, parallel, &job);
        };
        let src = match input {
            QInput::Quantized(v) => v,
            QInput::Float(src, q) => quantize_map(level, src, self.c, self.c, int8.x, q, parallel),
        };
        let epi = Epi {
            bias: self.bias.as_ptr(),
            scale: Some(int8.scale.as_ptr()),
            zero: int8.x.zero as f32,
        };
        let job = |y0: usize, y1: usize| {
            // SAFETY: as above, `src` a u8 map's view.
            unsafe { qrows_on(level, self, src, dst, epi, act, y0, y1) }
        };
        par_ranges(oh, parallel, &job);
    }
}

// SAFETY: the epilogue's pointers are only read, into the packed convolution that outlives the call.
unsafe impl Send for Epi {}
// SAFETY: as above.
unsafe impl Sync for Epi {}

simd_kernel!(fn rows_on = rows::<f32>(pd: &PackedDepthwise, src: Src, dst: QOutput, epi: Epi, act: Act, y0: usize, y1: usize));
simd_kernel!(fn qrows_on = rows::<u8>(pd: &PackedDepthwise, src: Src<u8>, dst: QOutput, epi: Epi, act: Act, y0: usize, y1: usize));
/// Output pixels computed together along a row: independent accumulators (no single dependent chain of
/// multiply-adds per output) that share each weight load.
const PX: usize = 4;

/// Output rows `y0..y1`: the pixels whose window lies inside the map horizontally in blocks of [`PX`], the
/// border pixels one at a time with their out-of-map taps left out; channels a vector at a time, a partial
/// vector masked. Into a u8 map, each row is computed into a float row first and quantized from there.
///
/// # Safety
/// Compiled with `I`'s target features; `src` and `dst` are valid for their geometry with at least `pd.c`
/// channels per pixel, `dst` is the convolution's output size, and no other thread writes rows `y0..y1`.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn rows<I: QMac, T: DwIn>(
    pd: &PackedDepthwise,
    src: Src<T>,
    dst: QOutput,
    epi: Epi,
    act: Act,
    y0: usize,
    y1: usize,
) {
    let (k, s, p) = (pd.k, pd.s, pd.p);
    let (_, dst_w) = dst.size();
    // Output columns x_lo..x_hi have every tap inside the map: x * s >= p and x * s - p + k <= src.w.
    let x_lo = p.div_ceil(s).min(dst_w);
    let x_hi = if src.w + p >= k {
        ((src.w + p - k) / s + 1).min(dst_w)
    } else {
        0
    }
    .max(x_lo);
    let mut taps: Vec<(usize, *const T)> = Vec::with_capacity(k * k);
    let mut scratch = match dst {
        QOutput::Quantized(..) => vec![0.0f32; dst_w * pd.c],
        QOutput::Float(_) => Vec::new(),
    };
    for oy in y0..y1 {
        let (orow, ostride) = match dst {
            QOutput::Quantized(..) => (scratch.as_mut_ptr(), pd.c),
            QOutput::Float(d) => (d.ptr.add(oy * d.w * d.stride), d.stride),
        };
        let o = (orow, ostride);
        // Kernel rows inside the map: 0 <= oy * s + ky - p < src.h.
        let ky_lo = p.saturating_sub(oy * s).min(k);
        let ky_hi = (src.h + p).saturating_sub(oy * s).min(k).max(ky_lo);
        let rows = ky_lo..ky_hi;
        for ox in (0..x_lo).chain(x_hi..dst_w) {
            pixel::<I, T>(pd, src, o, epi, act, (oy, ox), &mut taps);
        }
        let mut ox = x_lo;
        while ox + PX <= x_hi {
            block::<I, T, PX>(pd, src, o, epi, act, (oy, ox), rows.clone());
            ox += PX;
        }
        while ox < x_hi {
            block::<I, T, 1>(pd, src, o, epi, act, (oy, ox), rows.clone());
            ox += 1;
        }
        if let QOutput::Quantized(d, q) = dst {
            let (inv, row) = (1.0 / q.scale, d.ptr.add(oy * d.w * d.stride));
            if d.stride == pd.c {
                I::quantize_row(orow, d.w * pd.c, inv, q.zero, row);
            } else {
                for x in 0..d.w {
                    I::quantize_row(orow.add(x * pd.c), pd.c, inv, q.zero, row.add(x * d.stride));
                }
            }
        }
    }
}

/// `P` neighbouring interior output pixels from `(oy, ox)` on, every channel.
///
/// # Safety
/// As [`rows`]; every tap of these pixels in kernel rows `ky` is inside the source map.
#[inline(always)]
unsafe fn block<I: QMac, T: DwIn, const P: usize>(
    pd: &PackedDepthwise,
    src: Src<T>,
    (orow, ostride): (*mut f32, usize),
    epi: Epi,
    act: Act,
    (oy, ox): (usize, usize),
    ky: std::ops::Range<usize>,
) {
    let (k, s, p, c, l) = (pd.k, pd.s, pd.p, pd.c, I::LANES);
    let x0 = ox * s - p;
    let out = orow.add(ox * ostride);
    let mut ch = 0;
    while ch < c {
        let n = (c - ch).min(l);
        // A full vector, or the first n lanes: what lies past the channels is neither read nor written.
        let load = |q: *const f32| if n == l { I::load(q) } else { I::load_n(q, n) };
        let bias = load(epi.bias.add(ch));
        let mut acc = [if epi.scale.is_some() { I::zero() } else { bias }; P];
        for ky in ky.clone() {
            let row = src
                .ptr
                .add(((oy * s + ky - p) * src.w + x0) * src.stride + ch);
            for kx in 0..k {
                let w = load(pd.w.as_ptr().add((ky * k + kx) * c + ch));
                for (j, a) in acc.iter_mut().enumerate() {
                    let x = T::load::<I>(row.add((j * s + kx) * src.stride), n, epi.zero);
                    *a = I::fma(x, w, *a);
                }
            }
        }
        if let Some(sc) = epi.scale {
            let sc = load(sc.add(ch));
            for a in acc.iter_mut() {
                *a = I::fma(*a, sc, bias);
            }
        }
        for (j, v) in act.vectors::<I, P>(acc).into_iter().enumerate() {
            let o = out.add(j * ostride + ch);
            if n == l {
                I::store(o, v)
            } else {
                I::store_n(o, v, n)
            }
        }
        ch += l;
    }
}

/// One output pixel whose window may reach past the map (its out-of-map taps are left out).
///
/// # Safety
/// As [`rows`].
#[inline(always)]
unsafe fn pixel<I: QMac, T: DwIn>(
    pd: &PackedDepthwise,
    src: Src<T>,
    (orow, ostride): (*mut f32, usize),
    epi: Epi,
    act: Act,
    (oy, ox): (usize, usize),
    taps: &mut Vec<(usize, *const T)>,
) {
    let (k, s, p, c, l) = (pd.k, pd.s, pd.p, pd.c, I::LANES);
    taps.clear();
    for ky in 0..k {
        let iy = (oy * s + ky) as isize - p as isize;
        if iy < 0 || iy as usize >= src.h {
            continue;
        }
        for kx in 0..k {
            let ix = (ox * s + kx) as isize - p as isize;
            if ix < 0 || ix as usize >= src.w {
                continue;
            }
            let px = src
                .ptr
                .add((iy as usize * src.w + ix as usize) * src.stride);
            taps.push((ky * k + kx, px));
        }
    }
    let out = orow.add(ox * ostride);
    let mut ch = 0;
    while ch < c {
        let n = (c - ch).min(l);
        let load = |q: *const f32| if n == l { I::load(q) } else { I::load_n(q, n) };
        let bias = load(epi.bias.add(ch));
        let mut acc = if epi.scale.is_some() { I::zero() } else { bias };
        for &(t, px) in taps.iter() {
            let x = T::load::<I>(px.add(ch), n, epi.zero);
            acc = I::fma(x, load(pd.w.as_ptr().add(t * c + ch)), acc);
        }
        if let Some(sc) = epi.scale {
            acc = I::fma(acc, load(sc.add(ch)), bias);
        }
        let v = act.vector::<I>(acc);
        if n == l {
            I::store(out.add(ch), v)
        } else {
            I::store_n(out.add(ch), v, n)
        }
        ch += l;
    }
}

/// ReLU that keeps NaN (f32::max would turn it into 0).
pub(super) fn relu(v: f32) -> f32 {
    if v < 0.0 {
        0.0
    } else {
        v
    }
}
