//! The engine's memory-bound operations on NHWC maps: pooling, padding, nearest upsampling, channel-slice
//! copies, elementwise passes (activations, adds, products, BatchNorm), a transposed conv's gather and the
//! Detect decode (DFL softmax, anchors, sigmoid scores).

use super::simd::{Isa, Level};
use super::{par_ranges, Act, Dst, Src, Unary};

/// `k x k` max pooling with stride `s` and padding `p` (padding never wins, as in PyTorch). Channels `0..c`.
pub fn max_pool<T: PoolValue>(
    src: Src<T>,
    dst: Dst<T>,
    c: usize,
    k: usize,
    s: usize,
    p: usize,
    parallel: bool,
) {
    // The window clamped to the map (padding never wins).
    let window = move |o: usize, n: usize| {
        let lo = (o * s).saturating_sub(p).min(n);
        let hi = (o * s + k).saturating_sub(p).min(n);
        lo..hi
    };
    let job = |y0: usize, y1: usize| {
        // Whole views, not their pointer fields, are captured (the views are Sync).
        let (src, dst) = (src, dst);
        if y0 >= y1 {
            return;
        }
        // Separable: each input row's horizontal maxima once, then each output pixel the max of its
        // window's rows (2k comparisons per value instead of k * k).
        let r0 = window(y0, src.h).start;
        let r1 = window(y1 - 1, src.h).end.max(r0);
        let row = dst.w * c;
        let mut hmax = vec![T::LOWEST; (r1 - r0) * row];
        for iy in r0..r1 {
            for ox in 0..dst.w {
                let o = &mut hmax[(iy - r0) * row + ox * c..][..c];
                for ix in window(ox, src.w) {
                    // SAFETY: (iy, ix) is inside the source map, which holds `c` channels per pixel.
                    let inp = unsafe {
                        std::slice::from_raw_parts(src.ptr.add((iy * src.w + ix) * src.stride), c)
                    };
                    for (o, &i) in o.iter_mut().zip(inp) {
                        *o = T::max(*o, i);
                    }
                }
            }
        }
        for oy in y0..y1 {
            for ox in 0..dst.w {
                // SAFETY: views valid for their geometry; rows disjoint between jobs.
                let out = unsafe {
                    std::slice::from_raw_parts_mut(dst.ptr.add((oy * dst.w + ox) * dst.stride), c)
                };
                out.fill(T::LOWEST);
                for iy in window(oy, src.h) {
                    let h = &hmax[(iy - r0) * row + ox * c..][..c];
                    for (o, &i) in out.iter_mut().zip(h) {
                        *o = T::max(*o, i);
                    }
                }
            }
        }
    };
    par_ranges(dst.h, parallel, &job);
}

/// What max pooling compares: float32 maps, or u8 maps (quantization is monotone).
pub trait PoolValue: Copy + Send + Sync {
    const LOWEST: Self;
    fn max(cur: Self, new: Self) -> Self;
}

impl PoolValue for f32 {
    const LOWEST: f32 = f32::NEG_INFINITY;
    #[inline(always)]
    fn max(cur: f32, new: f32) -> f32 {
        // Not f32::max: NaN must propagate as in PyTorch.
        if new > cur || new.is_nan() {
            new
        } else {
            cur
        }
    }
}

impl PoolValue for u8 {
    const LOWEST: u8 = 0;
    #[inline(always)]
    fn max(cur: u8, new: u8) -> u8 {
        cur.max(new)
    }
}

/// Zero padding: `dst` is `src` with `(left, right, top, bottom)` zero pixels around it. Channels `0..c`.
pub fn zero_pad(src: Src, dst: Dst, c: usize, pad: (usize, usize, usize, usize)) {
    let (left, _, top, _) = pad;
    for oy in 0..dst.h {
        for ox in 0..dst.w {
            // SAFETY: views valid for their geometry; the source pixel is inside the source map.
            unsafe {
                let out = dst.ptr.add((oy * dst.w + ox) * dst.stride);
                let (iy, ix) = (oy.wrapping_sub(top), ox.wrapping_sub(left));
                if iy < src.h && ix < src.w {
                    std::ptr::copy_nonoverlapping(
                        src.ptr.add((iy * src.w + ix) * src.stride),
                        out,
                        c,
                    );
                } else {
                    std::ptr::write_bytes(out, 0, c);
                }
            }
        }
    }
}

/// Nearest-neighbour upsampling by `s`, channels `0..c`; output rows split across threads when `parallel`.
pub fn upsample<T: Copy + Send + Sync>(
    src: Src<T>,
    dst: Dst<T>,
    c: usize,
    s: usize,
    parallel: bool,
) {
    let job = |y0: usize, y1: usize| {
        let (src, dst) = (src, dst);
        for oy in y0..y1 {
            for ox in 0..dst.w {
                // SAFETY: views valid for their geometry; source and destination never overlap; rows
                // disjoint between jobs.
                unsafe {
                    std::ptr::copy_nonoverlapping(
                        src.ptr.add(((oy / s) * src.w + ox / s) * src.stride),
                        dst.ptr.add((oy * dst.w + ox) * dst.stride),
                        c,
                    );
                }
            }
        }
    };
    par_ranges(dst.h, parallel, &job);
}

/// Copies channels `0..c` of every pixel (a Concat input that could not be written in place); rows split
/// across threads when `parallel`.
pub fn copy<T: Copy + Send + Sync>(src: Src<T>, dst: Dst<T>, c: usize, parallel: bool) {
    let job = |y0: usize, y1: usize| {
        let (src, dst) = (src, dst);
        for i in y0 * src.w..y1 * src.w {
            // SAFETY: views valid for their geometry; source and destination never overlap; rows disjoint
            // between jobs.
            unsafe {
                std::ptr::copy_nonoverlapping(
                    src.ptr.add(i * src.stride),
                    dst.ptr.add(i * dst.stride),
                    c,
                );
            }
        }
    };
    par_ranges(src.h, parallel, &job);
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
    map_in_place(level, x, MapFn::Exp)
}

pub(super) fn sigmoid_in_place(level: Level, x: &mut [f32]) {
    map_in_place(level, x, MapFn::Sigmoid)
}

#[derive(Clone, Copy)]
enum MapFn {
    Exp,
    Sigmoid,
}

fn map_in_place(level: Level, x: &mut [f32], f: MapFn) {
    // SAFETY: the ISA was detected when the engine was built.
    unsafe { map_on(level, x, f) }
}

simd_kernel!(fn map_on = map_slice(x: &mut [f32], f: MapFn));

/// # Safety
/// Compiled with `I`'s target features (the slice bounds every access).
#[inline(always)]
unsafe fn map_slice<I: Isa>(x: &mut [f32], f: MapFn) {
    let mut chunks = x.chunks_exact_mut(I::LANES);
    for c in &mut chunks {
        let v = I::load(c.as_ptr());
        let y = match f {
            MapFn::Exp => I::exp(v),
            MapFn::Sigmoid => I::sigmoid(v),
        };
        I::store(c.as_mut_ptr(), y);
    }
    for v in chunks.into_remainder() {
        *v = match f {
            MapFn::Exp => v.exp(),
            MapFn::Sigmoid => 1.0 / (1.0 + (-*v).exp()),
        };
    }
}

/// Inference BatchNorm as a per-channel affine map, for models run unfused:
/// `dst = act(src * scale + shift) (+ add)`.
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

    pub fn run(
        &self,
        level: Level,
        src: Src,
        dst: Dst,
        act: Act,
        add: Option<Src>,
        parallel: bool,
    ) {
        let job = EwJob {
            kind: Ew::Affine(self),
            act,
            c: self.c,
            a: src,
            b: add,
            dst,
        };
        job.run(level, parallel);
    }
}

/// What an elementwise pass computes per channel before its activation (`b` is the second input).
#[derive(Clone, Copy)]
pub enum Ew<'a> {
    /// A function of `a` alone.
    Unary(Unary),
    Add,
    Mul,
    /// `a * b[channel]`: `b` is a `1 x 1` map (a squeeze-excite gate).
    MulBroadcast,
    /// `a * scale + shift`, then the activation, then `+ b` where given.
    Affine(&'a Affine),
}

/// One elementwise pass over every pixel of `dst`: `act(kind(a, b))`.
#[derive(Clone, Copy)]
pub struct EwJob<'a> {
    pub kind: Ew<'a>,
    pub act: Act,
    pub c: usize,
    pub a: Src,
    pub b: Option<Src>,
    pub dst: Dst,
}

impl EwJob<'_> {
    pub fn run(&self, level: Level, parallel: bool) {
        let pixels = self.dst.h * self.dst.w;
        let job = |p0: usize, p1: usize| {
            // SAFETY: views valid for their geometry (sizes checked before the run), pixel ranges disjoint
            // between jobs, ISA detected when the engine was built.
            unsafe { ew_on(level, self, p0, p1) }
        };
        par_ranges(pixels, parallel && pixels * self.c >= 1 << 14, &job);
    }
}

simd_kernel!(fn ew_on = ew_pixels(job: &EwJob, p0: usize, p1: usize));

/// Pixels `p0..p1` of one elementwise pass.
///
/// # Safety
/// Compiled with `I`'s target features; the views are valid for their geometry with at least `c` channels
/// (`b` one pixel for [`Ew::MulBroadcast`]), and no other thread writes these pixels of `dst`.
#[inline(always)]
unsafe fn ew_pixels<I: Isa>(job: &EwJob, p0: usize, p1: usize) {
    let (c, act, l) = (job.c, job.act, I::LANES);
    for p in p0..p1 {
        let a = job.a.ptr.add(p * job.a.stride);
        let b = job.b.map(|b| match job.kind {
            Ew::MulBroadcast => b.ptr,
            _ => b.ptr.add(p * b.stride),
        });
        let d = job.dst.ptr.add(p * job.dst.stride);
        let mut i = 0;
        while i + l <= c {
            let x = I::load(a.add(i));
            let y = match (job.kind, b) {
                (Ew::Unary(f), _) => f.vector::<I>(x),
                (Ew::Add, Some(b)) => I::add(x, I::load(b.add(i))),
                (Ew::Mul | Ew::MulBroadcast, Some(b)) => I::mul(x, I::load(b.add(i))),
                (Ew::Affine(f), _) => I::fma(
                    x,
                    I::load(f.scale.as_ptr().add(i)),
                    I::load(f.shift.as_ptr().add(i)),
                ),
                _ => x,
            };
            let mut y = act.vector::<I>(y);
            if let (Ew::Affine(_), Some(b)) = (job.kind, b) {
                y = I::add(y, I::load(b.add(i)));
            }
            I::store(d.add(i), y);
            i += l;
        }
        while i < c {
            let x = *a.add(i);
            let y = match (job.kind, b) {
                (Ew::Unary(f), _) => f.scalar(x),
                (Ew::Add, Some(b)) => x + *b.add(i),
                (Ew::Mul | Ew::MulBroadcast, Some(b)) => x * *b.add(i),
                (Ew::Affine(f), _) => x * f.scale[i] + f.shift[i],
                _ => x,
            };
            let mut y = act.scalar(y);
            if let (Ew::Affine(_), Some(b)) = (job.kind, b) {
                y += *b.add(i);
            }
            *d.add(i) = y;
            i += 1;
        }
    }
}

/// The mean of each channel over the map, into the one pixel of `dst`. Channels `0..c`.
pub fn global_avg_pool(src: Src, dst: Dst, c: usize) {
    let n = src.h * src.w;
    let mut sum = vec![0.0f64; c];
    for i in 0..n {
        // SAFETY: the view is valid for its geometry.
        let px = unsafe { std::slice::from_raw_parts(src.ptr.add(i * src.stride), c) };
        for (m, &v) in sum.iter_mut().zip(px) {
            *m += v as f64;
        }
    }
    // SAFETY: `dst` holds one pixel of at least `c` channels.
    let out = unsafe { std::slice::from_raw_parts_mut(dst.ptr, c) };
    for (o, s) in out.iter_mut().zip(sum) {
        *o = (s / n as f64) as f32;
    }
}

/// The second half of a transposed convolution: `src` holds, per input pixel, every tap's products
/// (`k * k * cout` channels, tap-major); each output pixel gathers the taps that land on it, plus the bias.
pub fn col2im(src: Src, dst: Dst, k: usize, s: usize, p: usize, bias: &[f32], parallel: bool) {
    let cout = bias.len();
    let job = |y0: usize, y1: usize| {
        let (src, dst) = (src, dst);
        for oy in y0..y1 {
            for ox in 0..dst.w {
                // SAFETY: views valid for their geometry; output rows disjoint between jobs.
                let out = unsafe {
                    std::slice::from_raw_parts_mut(
                        dst.ptr.add((oy * dst.w + ox) * dst.stride),
                        cout,
                    )
                };
                out.copy_from_slice(bias);
                for ky in 0..k {
                    let ty = oy + p;
                    if ty < ky || !(ty - ky).is_multiple_of(s) || (ty - ky) / s >= src.h {
                        continue;
                    }
                    let iy = (ty - ky) / s;
                    for kx in 0..k {
                        let tx = ox + p;
                        if tx < kx || !(tx - kx).is_multiple_of(s) || (tx - kx) / s >= src.w {
                            continue;
                        }
                        let ix = (tx - kx) / s;
                        // SAFETY: (iy, ix) is inside the source map, which has k * k * cout channels.
                        let taps = unsafe {
                            std::slice::from_raw_parts(
                                src.ptr
                                    .add((iy * src.w + ix) * src.stride + (ky * k + kx) * cout),
                                cout,
                            )
                        };
                        for (o, &v) in out.iter_mut().zip(taps) {
                            *o += v;
                        }
                    }
                }
            }
        }
    };
    par_ranges(dst.h, parallel, &job);
}
