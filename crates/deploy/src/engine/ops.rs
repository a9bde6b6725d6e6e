//! The engine's memory-bound operations on NHWC maps: pooling, padding, nearest upsampling, channel-slice
//! copies, elementwise passes (activations, adds, products, BatchNorm), a transposed conv's gather and the
//! Detect decode (DFL softmax, anchors, sigmoid scores).

use super::simd::{Isa, Level};
use super::{par_ranges, Act, Dst, Src, Unary};

/// `k x k` max pooling with stride `s` and padding `p` (`window` = `[k, s, p]`; padding never wins, and a
/// NaN in the window comes out, as in PyTorch). Channels `0..c`.
pub fn max_pool<T: PoolValue>(
    level: Level,
    src: Src<T>,
    dst: Dst<T>,
    c: usize,
    window: [usize; 3],
    parallel: bool,
) {
    let pool = Pool {
        src,
        dst,
        c,
        window,
    };
    let job = |y0: usize, y1: usize| {
        // SAFETY: views valid for their geometry with `c` channels; jobs take disjoint output rows; the ISA
        // was detected when the engine was built.
        unsafe { T::pool_rows(level, &pool, y0, y1) }
    };
    par_ranges(dst.h, parallel, &job);
}

/// One max pooling: its maps, channels and `[k, s, p]`.
#[derive(Clone, Copy)]
pub struct Pool<T> {
    src: Src<T>,
    dst: Dst<T>,
    c: usize,
    window: [usize; 3],
}

/// What max pooling compares: float32 maps (vectorized per ISA), or u8 maps (quantization is monotone).
pub trait PoolValue: Copy + Send + Sync {
    /// Output rows `y0..y1` of `pool`.
    ///
    /// # Safety
    /// `level` was detected on this CPU; the views are valid for their geometry with `c` channels and no
    /// other thread writes these rows.
    unsafe fn pool_rows(level: Level, pool: &Pool<Self>, y0: usize, y1: usize);
}

impl PoolValue for f32 {
    unsafe fn pool_rows(level: Level, pool: &Pool<f32>, y0: usize, y1: usize) {
        pool_f32_on(level, pool, y0, y1)
    }
}

impl PoolValue for u8 {
    unsafe fn pool_rows(_: Level, pool: &Pool<u8>, y0: usize, y1: usize) {
        pool_rows_with::<u8, ByteMax>(pool, y0, y1)
    }
}

simd_kernel!(fn pool_f32_on = pool_f32(pool: &Pool<f32>, y0: usize, y1: usize));

/// # Safety
/// As [`PoolValue::pool_rows`], compiled with `I`'s target features.
#[inline(always)]
unsafe fn pool_f32<I: Isa>(pool: &Pool<f32>, y0: usize, y1: usize) {
    pool_rows_with::<f32, VectorMax<I>>(pool, y0, y1)
}

/// Folds a run of values into a running maximum (a trait, not a closure: a closure is not compiled with
/// its caller's target features, so its intrinsics would not inline).
trait MaxRun<T> {
    /// `acc[j] = max(acc[j], x[j])` for `j < n`.
    ///
    /// # Safety
    /// `acc` and `x` are valid for `n` values; compiled with the implementation's target features.
    unsafe fn max_run(acc: *mut T, x: *const T, n: usize);
}

struct ByteMax;

impl MaxRun<u8> for ByteMax {
    #[inline(always)]
    unsafe fn max_run(acc: *mut u8, x: *const u8, n: usize) {
        for j in 0..n {
            *acc.add(j) = (*acc.add(j)).max(*x.add(j));
        }
    }
}

struct VectorMax<I>(std::marker::PhantomData<I>);

impl<I: Isa> MaxRun<f32> for VectorMax<I> {
    #[inline(always)]
    unsafe fn max_run(acc: *mut f32, x: *const f32, n: usize) {
        let l = I::LANES;
        let mut j = 0;
        while j + l <= n {
            let m = I::max_keep_nan(I::load(acc.add(j)), I::load(x.add(j)));
            I::store(acc.add(j), m);
            j += l;
        }
        if j < n {
            let r = n - j;
            let m = I::max_keep_nan(I::load_n(acc.add(j), r), I::load_n(x.add(j), r));
            I::store_n(acc.add(j), m, r);
        }
    }
}

/// Output rows `y0..y1` of `pool`, separably: each output row's window rows reduced into one row of vertical
/// maxima, then each output pixel the maximum of its window's columns there (2k comparisons per value, one
/// row of scratch).
///
/// # Safety
/// As [`PoolValue::pool_rows`], compiled with `M`'s target features.
#[inline(always)]
unsafe fn pool_rows_with<T: Copy, M: MaxRun<T>>(pool: &Pool<T>, y0: usize, y1: usize) {
    let Pool {
        src,
        dst,
        c,
        window: [k, s, p],
    } = *pool;
    // The window clamped to the map (padding never wins); never empty for an output inside the map.
    let window = |o: usize, n: usize| {
        let lo = (o * s).saturating_sub(p).min(n);
        let hi = (o * s + k).saturating_sub(p).min(n);
        lo..hi
    };
    if y0 >= y1 || dst.w == 0 || c == 0 {
        return;
    }
    // Every window holds a pixel of the map (PyTorch pads at most half a kernel), so each value of the row of
    // maxima is written before it is read: the first windows end past 0 when k > p, and window starts only
    // grow, so the last ones decide the rest.
    assert!(
        k > p && window(y1 - 1, src.h).start < src.h && window(dst.w - 1, src.w).start < src.w,
        "max pool {k}x{k}/{s} pad {p}: a window outside the {}x{} map",
        src.h,
        src.w
    );
    let mut vrow: Vec<T> = Vec::with_capacity(src.w * c);
    let vp = vrow.as_mut_ptr();
    for oy in y0..y1 {
        for (i, iy) in window(oy, src.h).enumerate() {
            for ix in 0..src.w {
                let from = src.ptr.add((iy * src.w + ix) * src.stride);
                if i == 0 {
                    std::ptr::copy_nonoverlapping(from, vp.add(ix * c), c);
                } else {
                    M::max_run(vp.add(ix * c), from, c);
                }
            }
        }
        for ox in 0..dst.w {
            let out = dst.ptr.add((oy * dst.w + ox) * dst.stride);
            let cols = window(ox, src.w);
            std::ptr::copy_nonoverlapping(vp.add(cols.start * c), out, c);
            for ix in cols.start + 1..cols.end {
                M::max_run(out, vp.add(ix * c), c);
            }
        }
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
    pub map: &'a [f32],
    pub h: usize,
    pub w: usize,
    pub stride: f32,
}

/// Decodes the levels of one image into `out` `(4 + nc, A)`, channel-major: cx, cy, w, h in input pixels,
/// then sigmoid scores, anchors in level order and row-major, as [`model::nn::Detect::decode`].
pub fn decode(
    level: Level,
    levels: &[LevelMap<'_>],
    reg_max: usize,
    nc: usize,
    out: &mut [f32],
    parallel: bool,
) {
    let a_total: usize = levels.iter().map(|l| l.h * l.w).sum();
    let ch = 4 * reg_max + nc;
    assert!(out.len() >= (4 + nc) * a_total);
    let mut a0 = 0;
    for lv in levels {
        let n = lv.h * lv.w;
        assert!(lv.map.len() >= n * ch);
        let job = Decode {
            map: lv.map.as_ptr(),
            w: lv.w,
            stride: lv.stride,
            reg_max,
            nc,
            out: out.as_mut_ptr(),
            a0,
            a_total,
        };
        let run = |i0: usize, i1: usize| {
            // SAFETY: the map holds `n` anchors of `ch` channels and `out` `(4 + nc) * a_total` floats
            // (asserted above); jobs take disjoint anchors; the ISA was detected when the engine was built.
            unsafe { decode_on(level, &job, i0, i1) }
        };
        par_ranges(n, parallel, &run);
        a0 += n;
    }
}

/// One level's decode: its map, width and stride, and where its anchors go in the output.
#[derive(Clone, Copy)]
struct Decode {
    map: *const f32,
    w: usize,
    stride: f32,
    reg_max: usize,
    nc: usize,
    out: *mut f32,
    a0: usize,
    a_total: usize,
}

// SAFETY: the pointers are only dereferenced by jobs on disjoint anchors, while `decode` borrows the maps
// and the output.
unsafe impl Sync for Decode {}

simd_kernel!(fn decode_on = decode_anchors(job: &Decode, i0: usize, i1: usize));

/// Anchors `i0..i1` of one level, `LANES` at a time with one anchor per lane: their channels are transposed
/// into a channel-major block first, so the DFL softmax, the sigmoid and the stores into the channel-major
/// output are all whole vectors (one anchor at a time, the output's rows a page apart cost a TLB miss per
/// value stored).
///
/// # Safety
/// Compiled with `I`'s target features; the map holds anchors `i0..i1` with `4 * reg_max + nc` channels, the
/// output `(4 + nc) * a_total` floats, and no other thread writes these anchors.
#[inline(always)]
unsafe fn decode_anchors<I: Isa>(job: &Decode, i0: usize, i1: usize) {
    let (l, rm, nc) = (I::LANES, job.reg_max, job.nc);
    let ch = 4 * rm + nc;
    let mut block = vec![0.0f32; ch * l];
    let bp = block.as_mut_ptr();
    let mut b0 = i0;
    while b0 < i1 {
        let nb = (i1 - b0).min(l);
        let mut ax = [0.0f32; 16];
        let mut ay = [0.0f32; 16];
        let mut px = [job.map; 16];
        for j in 0..l {
            // Lanes past the end repeat the last anchor; they are not stored.
            let i = b0 + j.min(nb - 1);
            px[j] = job.map.add(i * ch);
            ax[j] = (i % job.w) as f32 + 0.5;
            ay[j] = (i / job.w) as f32 + 0.5;
        }
        // A whole block's channels a square of LANES at a time; a partial block's and the channels past the
        // last square one value at a time.
        let squares = if nb == l { ch / l } else { 0 };
        for sq in 0..squares {
            I::transpose(px[0].add(sq * l), ch, bp.add(sq * l * l));
        }
        for c in squares * l..ch {
            // Opaque to the compiler, which would otherwise vectorize over channels into scatter stores
            // (slower on Zen 4 than these scalar copies).
            let c = std::hint::black_box(c);
            let to = bp.add(c * l);
            for (j, p) in px[..l].iter().enumerate() {
                *to.add(j) = *p.add(c);
            }
        }
        let row = |r: usize| job.out.add(r * job.a_total + job.a0 + b0);
        let mut d = [I::zero(); 4];
        for (side, dv) in d.iter_mut().enumerate() {
            *dv = dfl_side::<I>(bp.add(side * rm * l), rm);
        }
        let (cx, cy) = (I::load(ax.as_ptr()), I::load(ay.as_ptr()));
        let (x1, y1) = (I::sub(cx, d[0]), I::sub(cy, d[1]));
        let (x2, y2) = (I::add(cx, d[2]), I::add(cy, d[3]));
        let (half, st) = (I::splat(0.5), I::splat(job.stride));
        let boxes = [
            I::mul(I::mul(I::add(x1, x2), half), st),
            I::mul(I::mul(I::add(y1, y2), half), st),
            I::mul(I::sub(x2, x1), st),
            I::mul(I::sub(y2, y1), st),
        ];
        for (r, v) in boxes.into_iter().enumerate() {
            store_lanes::<I>(row(r), v, nb);
        }
        for c in 0..nc {
            let v = I::sigmoid(I::load(bp.add((4 * rm + c) * l)));
            store_lanes::<I>(row(4 + c), v, nb);
        }
        b0 += nb;
    }
}

/// The first `n <= LANES` lanes of `v` at `p`.
///
/// # Safety
/// Compiled with `I`'s target features; `p` is valid for `n` floats.
#[inline(always)]
unsafe fn store_lanes<I: Isa>(p: *mut f32, v: I::V, n: usize) {
    if n == I::LANES {
        I::store(p, v)
    } else {
        I::store_n(p, v, n)
    }
}

/// One box side's DFL expectation per lane, `sum_j j * softmax(logits)_j`: `seg` holds the side's `rm`
/// logits as `rm` vectors.
///
/// # Safety
/// Compiled with `I`'s target features; `seg` is valid for `rm * LANES` floats, `rm >= 1`.
#[inline(always)]
unsafe fn dfl_side<I: Isa>(seg: *const f32, rm: usize) -> I::V {
    let l = I::LANES;
    let mut m = I::load(seg);
    for j in 1..rm {
        m = I::max(m, I::load(seg.add(j * l)));
    }
    let (mut sum, mut dot) = (I::zero(), I::zero());
    let mut j = 0;
    // Four exponentials side by side (each is a long dependent chain).
    while j + 4 <= rm {
        let mut x = [m; 4];
        for (k, x) in x.iter_mut().enumerate() {
            *x = I::sub(I::load(seg.add((j + k) * l)), m);
        }
        let e = I::exp_n(x);
        for (k, e) in e.into_iter().enumerate() {
            sum = I::add(sum, e);
            dot = I::fma(e, I::splat((j + k) as f32), dot);
        }
        j += 4;
    }
    while j < rm {
        let e = I::exp(I::sub(I::load(seg.add(j * l)), m));
        sum = I::add(sum, e);
        dot = I::fma(e, I::splat(j as f32), dot);
        j += 1;
    }
    I::mul(dot, I::recip(sum))
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
