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
                super::depthwise::relu(s)
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
                *v = super::depthwise::relu(*v * g);
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
/// then sigmoid scores, anchors in level order and row-major, as [`model::nn::Detect::decode`]. The maps'
/// score channels are overwritten with their sigmoid.
pub fn decode(
    level: Level,
    levels: &mut [LevelMap<'_>],
    reg_max: usize,
    nc: usize,
    out: &mut [f32],
    parallel: bool,
) {
    let a_total: usize = levels.iter().map(|l| l.h * l.w).sum();
    let ch = 4 * reg_max + nc;
    assert!(out.len() >= (4 + nc) * a_total);
    let out = Dst {
        ptr: out.as_mut_ptr(),
        h: 1,
        w: (4 + nc) * a_total,
        stride: 1,
    };
    let mut a0 = 0;
    for lv in levels.iter_mut() {
        let n = lv.h * lv.w;
        assert!(lv.map.len() >= n * ch);
        let map = Dst {
            ptr: lv.map.as_mut_ptr(),
            h: lv.h,
            w: lv.w,
            stride: ch,
        };
        let st = lv.stride;
        let job = |i0: usize, i1: usize| {
            let (map, out) = (map, out);
            let mut e = vec![0.0f32; 4 * reg_max];
            for i in i0..i1 {
                // SAFETY: anchor i's channels lie within the map (asserted above); jobs take disjoint anchors.
                let px = unsafe { std::slice::from_raw_parts_mut(map.ptr.add(i * ch), ch) };
                sigmoid_in_place(level, &mut px[4 * reg_max..]);
                let mut d = [0.0f32; 4];
                dfl(level, &px[..4 * reg_max], reg_max, &mut e, &mut d);
                let (cx, cy) = ((i % map.w) as f32 + 0.5, (i / map.w) as f32 + 0.5);
                let (x1, y1, x2, y2) = (cx - d[0], cy - d[1], cx + d[2], cy + d[3]);
                let a = a0 + i;
                let vals = [
                    (x1 + x2) / 2.0 * st,
                    (y1 + y2) / 2.0 * st,
                    (x2 - x1) * st,
                    (y2 - y1) * st,
                ];
                // SAFETY: row r, anchor a is inside `out` ((4 + nc) * a_total, asserted); anchors disjoint.
                unsafe {
                    for (r, v) in vals.into_iter().enumerate() {
                        *out.ptr.add(r * a_total + a) = v;
                    }
                    for (j, &sc) in px[4 * reg_max..].iter().enumerate() {
                        *out.ptr.add((4 + j) * a_total + a) = sc;
                    }
                }
            }
        };
        par_ranges(n, parallel, &job);
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
    map_in_place(level, x, Unary::Exp)
}

pub(super) fn sigmoid_in_place(level: Level, x: &mut [f32]) {
    map_in_place(level, x, Unary::Sigmoid)
}

#[derive(Clone, Copy)]
enum Unary {
    Exp,
    Sigmoid,
}

fn map_in_place(level: Level, x: &mut [f32], f: Unary) {
    // SAFETY: the ISA was detected when the engine was built.
    unsafe { on_level!(level, map_avx512(x, f), map_avx2(x, f)) }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn map_avx512(x: &mut [f32], f: Unary) {
    map_slice::<Avx512>(x, f)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn map_avx2(x: &mut [f32], f: Unary) {
    map_slice::<Avx2>(x, f)
}

#[inline(always)]
unsafe fn map_slice<I: Isa>(x: &mut [f32], f: Unary) {
    let mut chunks = x.chunks_exact_mut(I::LANES);
    for c in &mut chunks {
        let v = I::load(c.as_ptr());
        let y = match f {
            Unary::Exp => I::exp(v),
            Unary::Sigmoid => I::sigmoid(v),
        };
        I::store(c.as_mut_ptr(), y);
    }
    for v in chunks.into_remainder() {
        *v = match f {
            Unary::Exp => v.exp(),
            Unary::Sigmoid => 1.0 / (1.0 + (-*v).exp()),
        };
    }
}

/// Inference BatchNorm as a per-channel affine map, for models run unfused:
/// `dst = act((acc ? dst : 0) + src * scale + shift) (+ add)`. `acc` sums the branches of an unfused
/// MobileOne block into one map before its activation.
#[derive(Debug, Clone)]
pub struct Affine {
    pub c: usize,
    pub scale: Vec<f32>,
    pub shift: Vec<f32>,
}

impl Affine {
    /// From BatchNorm weight, bias, running mean and variance.
    pub fn from_bn(gamma: &[f32], beta: &[f32], mean: &[f32], var: &[f32], eps: f64) -> Affine {
        let scale: Vec<f32> = gamma
            .iter()
            .zip(var)
            .map(|(&g, &v)| (g as f64 / (v as f64 + eps).sqrt()) as f32)
            .collect();
        let shift = beta
            .iter()
            .zip(mean)
            .zip(&scale)
            .map(|((&b, &m), &s)| b - m * s)
            .collect();
        Affine {
            c: gamma.len(),
            scale,
            shift,
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub fn run(
        &self,
        level: Level,
        src: Src,
        dst: Dst,
        act: super::Act,
        acc: bool,
        add: Option<Src>,
        parallel: bool,
    ) {
        let rj = RowJob {
            a: self,
            src,
            dst,
            act,
            acc,
            add,
        };
        let job = |y0: usize, y1: usize| {
            // SAFETY: views valid for their geometry, rows disjoint between jobs, ISA detected.
            unsafe { on_level!(level, affine_avx512(&rj, y0, y1), affine_avx2(&rj, y0, y1)) }
        };
        par_ranges(dst.h, parallel, &job);
    }
}

/// What every row range of one affine pass reads and writes (`acc`: add to what `dst` holds).
#[derive(Clone, Copy)]
struct RowJob<'a> {
    a: &'a Affine,
    src: Src,
    dst: Dst,
    act: super::Act,
    acc: bool,
    add: Option<Src>,
}

simd_entries!(affine_rows(job: &RowJob, y0: usize, y1: usize) {
    affine_avx512: "avx512f" <Avx512>;
    affine_avx2: "avx2,fma" <Avx2>;
});

#[inline(always)]
unsafe fn affine_rows<I: Isa>(job: &RowJob, y0: usize, y1: usize) {
    use super::Act;
    let (a, src, dst) = (job.a, job.src, job.dst);
    let (act, acc, add) = (job.act, job.acc, job.add);
    let c = a.c;
    let l = I::LANES;
    let one = |x: f32, i: usize, prev: f32| -> f32 {
        let y = prev + x * a.scale[i] + a.shift[i];
        match act {
            Act::None => y,
            Act::Relu => super::depthwise::relu(y),
            Act::Silu => y / (1.0 + (-y).exp()),
        }
    };
    for p in y0 * dst.w..y1 * dst.w {
        let s = src.ptr.add(p * src.stride);
        let d = dst.ptr.add(p * dst.stride);
        let r = add.map(|v| v.ptr.add(p * v.stride));
        let mut i = 0;
        while i + l <= c {
            let mut y = I::fma(
                I::load(s.add(i)),
                I::load(a.scale.as_ptr().add(i)),
                I::load(a.shift.as_ptr().add(i)),
            );
            if acc {
                y = I::add(y, I::load(d.add(i)));
            }
            y = match act {
                Act::None => y,
                Act::Relu => I::max(I::zero(), y),
                Act::Silu => I::silu(y),
            };
            if let Some(r) = r {
                y = I::add(y, I::load(r.add(i)));
            }
            I::store(d.add(i), y);
            i += l;
        }
        while i < c {
            let prev = if acc { *d.add(i) } else { 0.0 };
            let mut y = one(*s.add(i), i, prev);
            if let Some(r) = r {
                y += *r.add(i);
            }
            *d.add(i) = y;
            i += 1;
        }
    }
}
