//! Depthwise convolution (groups = channels) computed directly on NHWC maps: each output pixel is a sum
//! over the kernel taps of whole channel vectors, so the channels are the vector lanes and nothing is
//! gathered. Bias and activation are applied before the store.

use super::simd::{Isa, Level};
use super::{par_ranges, Act, Dst, Src};

#[cfg(target_arch = "x86_64")]
use super::simd::{Avx2, Avx512};

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
            unsafe {
                on_level!(
                    self.level,
                    rows_avx512(self, src, dst, act, y0, y1),
                    rows_avx2(self, src, dst, act, y0, y1)
                )
            }
        };
        par_ranges(dst.h, parallel, &job);
    }
}

simd_entries!(rows(pd: &PackedDepthwise, src: Src, dst: Dst, act: Act, y0: usize, y1: usize) {
    rows_avx512: "avx512f" <Avx512>;
    rows_avx2: "avx2,fma" <Avx2>;
});

/// Output rows `y0..y1`.
///
/// # Safety
/// Compiled with `I`'s target features; `src` and `dst` are valid for their geometry with at least `pd.c`
/// channels per pixel, `dst` is the convolution's output size, and no other thread writes rows `y0..y1`.
#[inline(always)]
unsafe fn rows<I: Isa>(pd: &PackedDepthwise, src: Src, dst: Dst, act: Act, y0: usize, y1: usize) {
    let (k, s, p, c) = (pd.k, pd.s, pd.p, pd.c);
    let l = I::LANES;
    let cv = c / l * l;
    let mut taps: Vec<(usize, *const f32)> = Vec::with_capacity(k * k);
    let mut tail = vec![0.0f32; c - cv];
    for oy in y0..y1 {
        for ox in 0..dst.w {
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
            while ch < cv {
                let mut acc = I::load(pd.bias.as_ptr().add(ch));
                for &(t, px) in &taps {
                    acc = I::fma(
                        I::load(px.add(ch)),
                        I::load(pd.w.as_ptr().add(t * c + ch)),
                        acc,
                    );
                }
                let acc = match act {
                    Act::None => acc,
                    Act::Relu => I::max(I::zero(), acc),
                    Act::Silu => I::silu(acc),
                };
                I::store(out.add(ch), acc);
                ch += l;
            }
            if cv < c {
                for (j, v) in tail.iter_mut().enumerate() {
                    *v = pd.bias[cv + j];
                }
                for &(t, px) in &taps {
                    for (j, v) in tail.iter_mut().enumerate() {
                        *v += *px.add(cv + j) * pd.w[t * c + cv + j];
                    }
                }
                for (j, &v) in tail.iter().enumerate() {
                    *out.add(cv + j) = match act {
                        Act::None => v,
                        Act::Relu => relu(v),
                        Act::Silu => v / (1.0 + (-v).exp()),
                    };
                }
            }
        }
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
