//! Ultralytics' `Attention` core (C2PSA) on an NHWC qkv map: per head, each pixel's query against every
//! pixel's key, softmax over pixels, the weighted sum of values. Keys are gathered transposed (`[d][pixel]`)
//! so a query's logits are vector multiply-adds over pixels, and values row-major so the weighted sum is one
//! multiply-add per key and vector of values.

use super::simd::{Isa, Level};
use super::{par_ranges, Dst, Src};

/// The geometry: `heads` blocks of `key_dim` query, `key_dim` key and `head_dim` value channels.
#[derive(Debug, Clone, Copy)]
pub struct AttentionShape {
    pub heads: usize,
    pub key_dim: usize,
    pub head_dim: usize,
}

/// One head's keys and values gathered from the qkv map, and where its outputs go.
struct HeadJob<'a> {
    shape: AttentionShape,
    head: usize,
    src: Src,
    dst: Dst,
    /// `[key_dim][n_pad]`
    kt: &'a [f32],
    /// `[n][hd_pad]`
    v: &'a [f32],
    /// Keys per row of `kt` (whole blocks of pixels).
    n_pad: usize,
    /// Values per row of `v` (whole vectors).
    hd_pad: usize,
}

/// Pixels of a block of logits: four vectors, so each query broadcast feeds four multiply-adds.
const BLOCK: usize = 4;

/// Writes the attended values (channels `0..heads * head_dim`) and `v` itself (the next as many) of every
/// pixel of `src` into `dst`.
pub fn attention(level: Level, shape: AttentionShape, src: Src, dst: Dst, parallel: bool) {
    let AttentionShape {
        heads,
        key_dim: kd,
        head_dim: hd,
    } = shape;
    let n = src.h * src.w;
    let lanes = level.lanes();
    // Keys padded with zero pixels to whole blocks, values with zero channels to whole vectors: the inner
    // loops then run on full vectors only (the padded logits are never read).
    let n_pad = n.next_multiple_of(BLOCK * lanes);
    let hd_pad = hd.next_multiple_of(lanes);
    let per_head = 2 * kd + hd;
    let c = heads * hd;
    let mut kt = vec![0.0f32; kd * n_pad];
    let mut v = vec![0.0f32; n * hd_pad];
    for head in 0..heads {
        let base = head * per_head;
        for j in 0..n {
            // SAFETY: pixel j of the source holds `heads * per_head` channels.
            let px =
                unsafe { std::slice::from_raw_parts(src.ptr.add(j * src.stride + base), per_head) };
            for d in 0..kd {
                kt[d * n_pad + j] = px[kd + d];
            }
            v[j * hd_pad..j * hd_pad + hd].copy_from_slice(&px[2 * kd..]);
            // SAFETY: pixel j of the destination holds 2c channels.
            unsafe {
                std::ptr::copy_nonoverlapping(
                    px.as_ptr().add(2 * kd),
                    dst.ptr.add(j * dst.stride + c + head * hd),
                    hd,
                );
            }
        }
        let hj = HeadJob {
            shape,
            head,
            src,
            dst,
            kt: &kt,
            v: &v,
            n_pad,
            hd_pad,
        };
        let job = |i0: usize, i1: usize| {
            // SAFETY: views valid for their geometry, query pixels disjoint between jobs, ISA detected.
            unsafe { head_on(level, &hj, i0, i1) }
        };
        par_ranges(n, parallel, &job);
    }
}

simd_kernel!(fn head_on = head_rows::<MR>(job: &HeadJob, i0: usize, i1: usize));

/// Query pixels `i0..i1` of one head, `QB` at a time (4 with 32 vector registers, 2 with 16: each key and
/// value vector loaded feeds that many queries' multiply-adds, which one query at a time left load-bound).
///
/// # Safety
/// Compiled with `I`'s target features; `src` holds `heads * (2 * key_dim + head_dim)` channels per pixel and
/// `dst` `2 * heads * head_dim`, both of the same size; `kt` holds `key_dim` rows of `n_pad` keys (a multiple
/// of `BLOCK * LANES`) and `v` `n` rows of `hd_pad` values (a multiple of `LANES`); no other thread writes
/// these pixels.
#[inline(always)]
unsafe fn head_rows<I: Isa, const MR: usize>(job: &HeadJob, i0: usize, i1: usize) {
    if MR >= 8 {
        head_blocks::<I, 4>(job, i0, i1)
    } else {
        head_blocks::<I, 2>(job, i0, i1)
    }
}

/// [`head_rows`] with `QB` queries a block.
///
/// # Safety
/// As [`head_rows`].
#[inline(always)]
#[allow(clippy::needless_range_loop)]
unsafe fn head_blocks<I: Isa, const QB: usize>(job: &HeadJob, i0: usize, i1: usize) {
    let AttentionShape {
        key_dim: kd,
        head_dim: hd,
        ..
    } = job.shape;
    let (src, dst, n_pad, hd_pad) = (job.src, job.dst, job.n_pad, job.hd_pad);
    let n = src.h * src.w;
    let l = I::LANES;
    let scale = I::splat((kd as f32).powf(-0.5));
    let base = job.head * (2 * kd + hd);
    // Each query's logits, then its softmax numerators: `[QB][n_pad]`.
    let mut logits = vec![0.0f32; QB * n_pad];
    let lp = logits.as_mut_ptr();
    let mut y = vec![0.0f32; QB * hd_pad];
    let mut i = i0;
    while i < i1 {
        let nq = (i1 - i).min(QB);
        // Queries past the end repeat the last; their results are not stored.
        let mut q = [src.ptr; QB];
        for (b, qb) in q.iter_mut().enumerate() {
            *qb = src.ptr.add((i + b.min(nq - 1)) * src.stride + base);
        }
        // logits = (q . k_j) * scale, as PyTorch's `(q^T k) * scale`.
        for j in (0..n_pad).step_by(BLOCK * l) {
            let mut acc = [[I::zero(); BLOCK]; QB];
            for d in 0..kd {
                let row = job.kt.as_ptr().add(d * n_pad + j);
                let mut kv = [I::zero(); BLOCK];
                for (b, k) in kv.iter_mut().enumerate() {
                    *k = I::load(row.add(b * l));
                }
                for qb in 0..QB {
                    let qd = I::splat(*q[qb].add(d));
                    for b in 0..BLOCK {
                        acc[qb][b] = I::fma(qd, kv[b], acc[qb][b]);
                    }
                }
            }
            for qb in 0..QB {
                for b in 0..BLOCK {
                    I::store(lp.add(qb * n_pad + j + b * l), I::mul(acc[qb][b], scale));
                }
            }
        }
        // Softmax over the n real pixels, as PyTorch: exp(x - max) / sum.
        let mut sums = [0.0f32; QB];
        for (qb, sum) in sums.iter_mut().enumerate() {
            *sum = softmax_numerators::<I>(std::slice::from_raw_parts_mut(lp.add(qb * n_pad), n));
        }
        // The weighted sums of values, up to four vectors of channels per query held in registers across
        // all pixels.
        let mut d0 = 0;
        while d0 < hd_pad {
            match (hd_pad - d0) / l {
                1 => weighted::<I, 1, QB>(lp, n, n_pad, job.v, hd_pad, d0, &mut y),
                2 => weighted::<I, 2, QB>(lp, n, n_pad, job.v, hd_pad, d0, &mut y),
                3 => weighted::<I, 3, QB>(lp, n, n_pad, job.v, hd_pad, d0, &mut y),
                _ => weighted::<I, 4, QB>(lp, n, n_pad, job.v, hd_pad, d0, &mut y),
            }
            d0 += 4 * l;
        }
        for qb in 0..nq {
            let out = dst.ptr.add((i + qb) * dst.stride + job.head * hd);
            for (d, &yd) in y[qb * hd_pad..qb * hd_pad + hd].iter().enumerate() {
                *out.add(d) = yd / sums[qb];
            }
        }
        i += nq;
    }
}

/// Replaces `x` with `exp(x - max(x))` and returns their sum.
///
/// # Safety
/// Compiled with `I`'s target features.
#[inline(always)]
unsafe fn softmax_numerators<I: Isa>(x: &mut [f32]) -> f32 {
    let (n, l) = (x.len(), I::LANES);
    let whole = n - n % l;
    let xp = x.as_mut_ptr();
    let mut mv = I::splat(f32::NEG_INFINITY);
    for j in (0..whole).step_by(l) {
        mv = I::max(mv, I::load(xp.add(j)));
    }
    let mut lanes = [0.0f32; 16];
    I::store(lanes.as_mut_ptr(), mv);
    let m = lanes[..l]
        .iter()
        .chain(&x[whole..])
        .fold(f32::NEG_INFINITY, |a, &b| a.max(b));
    let (mv, mut sv) = (I::splat(m), I::zero());
    for j in (0..whole).step_by(l) {
        let e = I::exp(I::sub(I::load(xp.add(j)), mv));
        I::store(xp.add(j), e);
        sv = I::add(sv, e);
    }
    I::store(lanes.as_mut_ptr(), sv);
    let mut sum: f32 = lanes[..l].iter().sum();
    for z in &mut x[whole..] {
        *z = (*z - m).exp();
        sum += *z;
    }
    sum
}

/// `y[q][d0 .. d0 + NV * LANES] = sum_j p[q][j] * v[j][d0 ..]` for the `QB` queries, `p[q]` the `n` values at
/// `p + q * p_stride` and `y[q]` at `q * stride` in `y`.
///
/// # Safety
/// Compiled with `I`'s target features; `p` holds `QB` rows of `p_stride >= n` floats, `v` holds `n` rows of
/// `stride` floats, `d0 + NV * LANES <= stride` and `y` holds `QB * stride`.
#[inline(always)]
#[allow(clippy::needless_range_loop)]
unsafe fn weighted<I: Isa, const NV: usize, const QB: usize>(
    p: *const f32,
    n: usize,
    p_stride: usize,
    v: &[f32],
    stride: usize,
    d0: usize,
    y: &mut [f32],
) {
    let l = I::LANES;
    let mut acc = [[I::zero(); NV]; QB];
    let mut vp = v.as_ptr().add(d0);
    for j in 0..n {
        let mut vv = [I::zero(); NV];
        for (c, x) in vv.iter_mut().enumerate() {
            *x = I::load(vp.add(c * l));
        }
        for qb in 0..QB {
            let pv = I::splat(*p.add(qb * p_stride + j));
            for c in 0..NV {
                acc[qb][c] = I::fma(pv, vv[c], acc[qb][c]);
            }
        }
        vp = vp.add(stride);
    }
    for qb in 0..QB {
        for c in 0..NV {
            I::store(y.as_mut_ptr().add(qb * stride + d0 + c * l), acc[qb][c]);
        }
    }
}
