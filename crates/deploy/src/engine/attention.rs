//! Ultralytics' `Attention` core (C2PSA) on an NHWC qkv map: per head, each pixel's query against every
//! pixel's key, softmax over pixels, the weighted sum of values. Keys are gathered transposed (`[d][pixel]`)
//! so a query's logits are vector multiply-adds over pixels, and values row-major so the weighted sum is one
//! multiply-add per key and vector of values.

use super::simd::{Isa, Level};
use super::{par_ranges, Dst, Src};

#[cfg(target_arch = "x86_64")]
use super::simd::{Avx2, Avx512};

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
    /// `[key_dim][n]`
    kt: &'a [f32],
    /// `[n][head_dim]`
    v: &'a [f32],
}

/// Writes the attended values (channels `0..heads * head_dim`) and `v` itself (the next as many) of every
/// pixel of `src` into `dst`.
pub fn attention(level: Level, shape: AttentionShape, src: Src, dst: Dst, parallel: bool) {
    let AttentionShape {
        heads,
        key_dim: kd,
        head_dim: hd,
    } = shape;
    let n = src.h * src.w;
    let per_head = 2 * kd + hd;
    let c = heads * hd;
    let mut kt = vec![0.0f32; kd * n];
    let mut v = vec![0.0f32; n * hd];
    for head in 0..heads {
        let base = head * per_head;
        for j in 0..n {
            // SAFETY: pixel j of the source holds `heads * per_head` channels.
            let px =
                unsafe { std::slice::from_raw_parts(src.ptr.add(j * src.stride + base), per_head) };
            for d in 0..kd {
                kt[d * n + j] = px[kd + d];
            }
            v[j * hd..(j + 1) * hd].copy_from_slice(&px[2 * kd..]);
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
        };
        let job = |i0: usize, i1: usize| {
            // SAFETY: views valid for their geometry, query pixels disjoint between jobs, ISA detected.
            unsafe { on_level!(level, head_avx512(&hj, i0, i1), head_avx2(&hj, i0, i1)) }
        };
        par_ranges(n, parallel, &job);
    }
}

simd_entries!(head_rows(job: &HeadJob, i0: usize, i1: usize) {
    head_avx512: "avx512f" <Avx512>;
    head_avx2: "avx2,fma" <Avx2>;
});

/// Query pixels `i0..i1` of one head.
///
/// # Safety
/// Compiled with `I`'s target features; `src` holds `heads * (2 * key_dim + head_dim)` channels per pixel and
/// `dst` `2 * heads * head_dim`, both of the same size; `kt` and `v` hold the head's gathered keys and values;
/// no other thread writes these pixels.
#[inline(always)]
unsafe fn head_rows<I: Isa>(job: &HeadJob, i0: usize, i1: usize) {
    let AttentionShape {
        key_dim: kd,
        head_dim: hd,
        ..
    } = job.shape;
    let (src, dst) = (job.src, job.dst);
    let n = src.h * src.w;
    let l = I::LANES;
    let scale = (kd as f32).powf(-0.5);
    let base = job.head * (2 * kd + hd);
    let mut logits = vec![0.0f32; n];
    let mut y = vec![0.0f32; hd];
    for i in i0..i1 {
        let q = src.ptr.add(i * src.stride + base);
        logits.fill(0.0);
        for d in 0..kd {
            let qd = I::splat(*q.add(d));
            let row = job.kt.as_ptr().add(d * n);
            let mut j = 0;
            while j + l <= n {
                let lp = logits.as_mut_ptr().add(j);
                I::store(lp, I::fma(qd, I::load(row.add(j)), I::load(lp)));
                j += l;
            }
            while j < n {
                logits[j] += *q.add(d) * *row.add(j);
                j += 1;
            }
        }
        // Softmax over pixels of `scale * q.k`, as PyTorch: exp(x - max) / sum.
        let m = logits.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b)) * scale;
        let mut sum = 0.0f32;
        for z in logits.iter_mut() {
            *z = (*z * scale - m).exp();
            sum += *z;
        }
        y.fill(0.0);
        for (j, &pj) in logits.iter().enumerate() {
            let pv = I::splat(pj);
            let vj = job.v.as_ptr().add(j * hd);
            let mut d = 0;
            while d + l <= hd {
                let yp = y.as_mut_ptr().add(d);
                I::store(yp, I::fma(pv, I::load(vj.add(d)), I::load(yp)));
                d += l;
            }
            while d < hd {
                y[d] += pj * *vj.add(d);
                d += 1;
            }
        }
        let out = dst.ptr.add(i * dst.stride + job.head * hd);
        for (d, &yd) in y.iter().enumerate() {
            *out.add(d) = yd / sum;
        }
    }
}
