//! The engine's memory-bound operations on NHWC maps: max pooling, nearest upsampling, channel-slice copies,
//! squeeze-excite and the Detect decode (DFL softmax, anchors, sigmoid scores).

use super::simd::{Isa, Level};
use super::{par_ranges, Dst, Src};

#[cfg(target_arch = "x86_64")]
use super::simd::{Avx2, Avx512};

/// `k x k` max pooling, stride 1, padding `k / 2` (padding never wins, as in PyTorch). Channels `0..c`.
pub fn max_pool(src: Src, dst: Dst, c: usize, k: usize, parallel: bool) {
    let r = (k / 2) as isize;
    let job = |y0: usize, y1: usize| {
        // Whole views, not their pointer fields, are captured (the views are Sync).
        let (src, dst) = (src, dst);
        for oy in y0..y1 {
            for ox in 0..dst.w {
                // SAFETY: views valid for their geometry; rows disjoint between jobs.
                let out = unsafe {
                    std::slice::from_raw_parts_mut(dst.ptr.add((oy * dst.w + ox) * dst.stride), c)
                };
                out.fill(f32::NEG_INFINITY);
                for dy in -r..=r {
                    let iy = oy as isize + dy;
                    if iy < 0 || iy as usize >= src.h {
                        continue;
                    }
                    for dx in -r..=r {
                        let ix = ox as isize + dx;
                        if ix < 0 || ix as usize >= src.w {
                            continue;
                        }
                        let inp = unsafe {
                            std::slice::from_raw_parts(
                                src.ptr
                                    .add((iy as usize * src.w + ix as usize) * src.stride),
                                c,
                            )
                        };
                        for (o, &i) in out.iter_mut().zip(inp) {
                            // Not f32::max: NaN must propagate as in PyTorch.
                            *o = if i > *o || i.is_nan() { i } else { *o };
                        }
                    }
                }
            }
        }
    };
    par_ranges(dst.h, parallel, &job);
}

/// Nearest-neighbour upsampling by `s`, channels `0..c`.
pub fn upsample(src: Src, dst: Dst, c: usize, s: usize) {
    for oy in 0..dst.h {
        for ox in 0..dst.w {
            // SAFETY: views valid for their geometry; source and destination never overlap.
            unsafe {
                std::ptr::copy_nonoverlapping(
                    src.ptr.add(((oy / s) * src.w + ox / s) * src.stride),
                    dst.ptr.add((oy * dst.w + ox) * dst.stride),
                    c,
                );
            }
        }
    }
}

/// Copies channels `0..c` of every pixel (a Concat input that could not be written in place).
pub fn copy(src: Src, dst: Dst, c: usize) {
    for i in 0..src.h * src.w {
        // SAFETY: views valid for their geometry; source and destination never overlap.
        unsafe {
            std::ptr::copy_nonoverlapping(
                src.ptr.add(i * src.stride),
                dst.ptr.add(i * dst.stride),
                c,
            );
        }
    }
}

/// Squeeze-excite followed by ReLU, in place on channels `0..c` of `x`: `relu(x * sigmoid(W2 relu(W1
/// mean(x) + b1) + b2))`.
#[derive(Debug, Clone)]
pub struct SqueezeExcite {
    pub c: usize,
    pub rd: usize,
    /// `(rd, c)` and `(c, rd)`, row-major, with their biases.
    pub w1: Vec<f32>,
    pub b1: Vec<f32>,
    pub w2: Vec<f32>,
    pub b2: Vec<f32>,
}

impl SqueezeExcite {
    pub fn run(&self, x: Dst) {
        let (c, rd) = (self.c, self.rd);
        let n = x.h * x.w;
        let mut mean = vec![0.0f64; c];
        for i in 0..n {
            // SAFETY: the view is valid for its geometry.
            let px = unsafe { std::slice::from_raw_parts(x.ptr.add(i * x.stride), c) };
            for (m, &v) in mean.iter_mut().zip(px) {
                *m += v as f64;
            }
        }
        let mean: Vec<f32> = mean.iter().map(|&m| (m / n as f64) as f32).collect();
        let hidden: Vec<f32> = (0..rd)
            .map(|j| {
                let s: f32 = (0..c).map(|i| self.w1[j * c + i] * mean[i]).sum::<f32>() + self.b1[j];
                s.max(0.0)
            })
            .collect();
        let gate: Vec<f32> = (0..c)
            .map(|i| {
                let s: f32 = (0..rd)
                    .map(|j| self.w2[i * rd + j] * hidden[j])
                    .sum::<f32>()
                    + self.b2[i];
                1.0 / (1.0 + (-s).exp())
            })
            .collect();
        for i in 0..n {
            // SAFETY: as above.
            let px = unsafe { std::slice::from_raw_parts_mut(x.ptr.add(i * x.stride), c) };
            for (v, &g) in px.iter_mut().zip(&gate) {
                *v = (*v * g).max(0.0);
            }
        }
    }
}

/// One Detect level's raw map (NHWC, `4 * reg_max + nc` channels) and its stride.
pub struct LevelMap<'a> {
    pub map: &'a mut [f32],
    pub h: usize,
    pub w: usize,
    pub stride: f32,
}

/// Decodes the levels of one image into `out` `(4 + nc, A)`, channel-major: cx, cy, w, h in input pixels,
/// then sigmoid scores, anchors in level order and row-major, as [`model::nn::Detect::decode`].
pub fn decode(
    level: Level,
    levels: &mut [LevelMap<'_>],
    reg_max: usize,
    nc: usize,
    out: &mut [f32],
) {
    let a_total: usize = levels.iter().map(|l| l.h * l.w).sum();
    let ch = 4 * reg_max + nc;
    let mut a0 = 0;
    let mut e = vec![0.0f32; 4 * reg_max];
    for lv in levels.iter_mut() {
        let n = lv.h * lv.w;
        // Scores: sigmoid in place over the contiguous class channels, vectorized.
        for px in lv.map.chunks_exact_mut(ch) {
            sigmoid_in_place(level, &mut px[4 * reg_max..]);
        }
        for (i, px) in lv.map.chunks_exact(ch).enumerate() {
            let a = a0 + i;
            let mut d = [0.0f32; 4];
            dfl(level, &px[..4 * reg_max], reg_max, &mut e, &mut d);
            let (cx, cy) = ((i % lv.w) as f32 + 0.5, (i / lv.w) as f32 + 0.5);
            let (x1, y1, x2, y2) = (cx - d[0], cy - d[1], cx + d[2], cy + d[3]);
            out[a] = (x1 + x2) / 2.0 * lv.stride;
            out[a_total + a] = (y1 + y2) / 2.0 * lv.stride;
            out[2 * a_total + a] = (x2 - x1) * lv.stride;
            out[3 * a_total + a] = (y2 - y1) * lv.stride;
            for (j, &s) in px[4 * reg_max..].iter().enumerate() {
                out[(4 + j) * a_total + a] = s;
            }
        }
        a0 += n;
    }
}

/// The DFL expectation of each box side: `sum_j j * softmax(logits)_j`, with the exponentials vectorized.
fn dfl(level: Level, logits: &[f32], reg_max: usize, e: &mut [f32], d: &mut [f32; 4]) {
    for (side, seg) in logits.chunks_exact(reg_max.max(1)).enumerate().take(4) {
        let m = seg.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        for (o, &x) in e[side * reg_max..].iter_mut().zip(seg) {
            *o = x - m;
        }
    }
    exp_in_place(level, &mut e[..4 * reg_max]);
    for (side, dv) in d.iter_mut().enumerate() {
        let seg = &e[side * reg_max..(side + 1) * reg_max];
        let (mut sum, mut dot) = (0.0f32, 0.0f32);
        for (j, &v) in seg.iter().enumerate() {
            sum += v;
            dot += v * j as f32;
        }
        *dv = dot / sum;
    }
}

fn exp_in_place(level: Level, x: &mut [f32]) {
    // SAFETY: the ISA was detected when the engine was built.
    unsafe {
        match level {
            #[cfg(target_arch = "x86_64")]
            Level::Avx512 => exp_avx512(x),
            #[cfg(target_arch = "x86_64")]
            Level::Avx2 => exp_avx2(x),
            #[cfg(not(target_arch = "x86_64"))]
            _ => unreachable!("the engine is only built on x86-64"),
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn exp_avx512(x: &mut [f32]) {
    exp_slice::<Avx512>(x)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn exp_avx2(x: &mut [f32]) {
    exp_slice::<Avx2>(x)
}

#[inline(always)]
unsafe fn exp_slice<I: Isa>(x: &mut [f32]) {
    let mut chunks = x.chunks_exact_mut(I::LANES);
    for c in &mut chunks {
        I::store(c.as_mut_ptr(), I::exp(I::load(c.as_ptr())));
    }
    for v in chunks.into_remainder() {
        *v = v.exp();
    }
}

pub(super) fn sigmoid_in_place(level: Level, x: &mut [f32]) {
    // SAFETY: the ISA was detected when the engine was built.
    unsafe {
        match level {
            #[cfg(target_arch = "x86_64")]
            Level::Avx512 => sigmoid_avx512(x),
            #[cfg(target_arch = "x86_64")]
            Level::Avx2 => sigmoid_avx2(x),
            #[cfg(not(target_arch = "x86_64"))]
            _ => unreachable!("the engine is only built on x86-64"),
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn sigmoid_avx512(x: &mut [f32]) {
    sigmoid_slice::<Avx512>(x)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn sigmoid_avx2(x: &mut [f32]) {
    sigmoid_slice::<Avx2>(x)
}

#[inline(always)]
unsafe fn sigmoid_slice<I: Isa>(x: &mut [f32]) {
    let mut chunks = x.chunks_exact_mut(I::LANES);
    for c in &mut chunks {
        I::store(c.as_mut_ptr(), I::sigmoid(I::load(c.as_ptr())));
    }
    for v in chunks.into_remainder() {
        *v = 1.0 / (1.0 + (-*v).exp());
    }
}
