//! Depthwise convolution (groups = channels) computed directly on NHWC maps: each output pixel is a sum
//! over the kernel taps of whole channel vectors, so the channels are the vector lanes and nothing is
//! gathered. Bias and activation are applied before the store.

use super::simd::{Isa, Level};
use super::{par_ranges, Act, Dst, Src};

/// A depthwise convolution's weights as `[tap][c]`.
#[derive(Debug, Clone)]
pub struct PackedDepthwise {
    pub k: usize,
    pub s: usize,
    pub p: usize,
    pub c: usize,
    level: Level,
    w: Vec<f32>,
    bias: Vec<f32>,
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
        }
    }

    pub fn run(&self, src: Src, dst: Dst, act: Act, parallel: bool) {
        let job = |y0: usize, y1: usize| {
            // SAFETY: views valid for their geometry, output rows disjoint between jobs, ISA detected.
            unsafe { rows_on(self.level, self, src, dst, act, y0, y1) }
        };
        par_ranges(dst.h, parallel, &job);
    }
}

simd_kernel!(fn rows_on = rows(pd: &PackedDepthwise, src: Src, dst: Dst, act: Act, y0: usize, y1: usize));

/// Output pixels computed together along a row: independent accumulators (no single dependent chain of
/// multiply-adds per output) that share each weight load.
const PX: usize = 4;

/// Output rows `y0..y1`: the pixels whose window lies inside the map horizontally in blocks of [`PX`], the
/// border pixels one at a time with their out-of-map taps left out; channels a vector at a time, a partial
/// vector masked.
///
/// # Safety
/// Compiled with `I`'s target features; `src` and `dst` are valid for their geometry with at least `pd.c`
/// channels per pixel, `dst` is the convolution's output size, and no other thread writes rows `y0..y1`.
#[inline(always)]
unsafe fn rows<I: Isa>(pd: &PackedDepthwise, src: Src, dst: Dst, act: Act, y0: usize, y1: usize) {
    let (k, s, p) = (pd.k, pd.s, pd.p);
    // Output columns x_lo..x_hi have every tap inside the map: x * s >= p and x * s - p + k <= src.w.
    let x_lo = p.div_ceil(s).min(dst.w);
    let x_hi = if src.w + p >= k {
        ((src.w + p - k) / s + 1).min(dst.w)
    } else {
        0
    }
    .max(x_lo);
    let mut taps: Vec<(usize, *const f32)> = Vec::with_capacity(k * k);
    for oy in y0..y1 {
        // Kernel rows inside the map: 0 <= oy * s + ky - p < src.h.
        let ky_lo = p.saturating_sub(oy * s).min(k);
        let ky_hi = (src.h + p).saturating_sub(oy * s).min(k).max(ky_lo);
        let rows = ky_lo..ky_hi;
        for ox in (0..x_lo).chain(x_hi..dst.w) {
            pixel::<I>(pd, src, dst, act, (oy, ox), &mut taps);
        }
        let mut ox = x_lo;
        while ox + PX <= x_hi {
            block::<I, PX>(pd, src, dst, act, (oy, ox), rows.clone());
            ox += PX;
        }
        while ox < x_hi {
            block::<I, 1>(pd, src, dst, act, (oy, ox), rows.clone());
            ox += 1;
        }
    }
}

/// `P` neighbouring interior output pixels from `(oy, ox)` on, every channel.
///
/// # Safety
/// As [`rows`]; every tap of these pixels in kernel rows `ky` is inside the source map.
#[inline(always)]
unsafe fn block<I: Isa, const P: usize>(
    pd: &PackedDepthwise,
    src: Src,
    dst: Dst,
    act: Act,
    (oy, ox): (usize, usize),
    ky: std::ops::Range<usize>,
) {
    let (k, s, p, c, l) = (pd.k, pd.s, pd.p, pd.c, I::LANES);
    let x0 = ox * s - p;
    let out = dst.ptr.add((oy * dst.w + ox) * dst.stride);
    let mut ch = 0;
    while ch < c {
        let n = (c - ch).min(l);
        // A full vector, or the first n lanes: what lies past the channels is neither read nor written.
        let load = |q: *const f32| if n == l { I::load(q) } else { I::load_n(q, n) };
        let mut acc = [load(pd.bias.as_ptr().add(ch)); P];
        for ky in ky.clone() {
            let row = src
                .ptr
                .add(((oy * s + ky - p) * src.w + x0) * src.stride + ch);
            for kx in 0..k {
                let w = load(pd.w.as_ptr().add((ky * k + kx) * c + ch));
                for (j, a) in acc.iter_mut().enumerate() {
                    *a = I::fma(load(row.add((j * s + kx) * src.stride)), w, *a);
                }
            }
        }
        for (j, v) in act.vectors::<I, P>(acc).into_iter().enumerate() {
            let o = out.add(j * dst.stride + ch);
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
unsafe fn pixel<I: Isa>(
    pd: &PackedDepthwise,
    src: Src,
    dst: Dst,
    act: Act,
    (oy, ox): (usize, usize),
    taps: &mut Vec<(usize, *const f32)>,
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
    let out = dst.ptr.add((oy * dst.w + ox) * dst.stride);
    let mut ch = 0;
    while ch < c {
        let n = (c - ch).min(l);
        let load = |q: *const f32| if n == l { I::load(q) } else { I::load_n(q, n) };
        let mut acc = load(pd.bias.as_ptr().add(ch));
        for &(t, px) in taps.iter() {
            acc = I::fma(load(px.add(ch)), load(pd.w.as_ptr().add(t * c + ch)), acc);
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
