//! 3x3 stride-1 convolutions by Winograd's minimal filtering F(2x2, 3x3) (Lavin & Gray, 2016): each 2x2 block
//! of output pixels comes from a 4x4 input tile through 16 element-wise products in the transformed domain
//! instead of 36 multiplies a pixel-channel, 2.25x fewer multiply-adds. The input transform runs on channel
//! vectors (NHWC keeps a pixel's channels contiguous); the 16 products summed over input channels are 16
//! small GEMMs done by the direct convolution's register-block kernel (MR tiles x NR output channels, the
//! transformed weights packed once like its panels); the output transform then adds the bias, applies the
//! activation and the residual add and stores the block. The transforms use only 0, +-1 and +-1/2, so the
//! rounding error stays within a few ulps of the direct sum's (checked against the textbook sum).

use super::conv::{kernel, ConvIo, Panel};
use super::simd::{Isa, Level};
use super::{par_ranges, Act};

/// Transformed weights `G g G^T` (4x4 per output/input channel pair), packed per panel as `[16][cin][NR]`.
#[derive(Debug, Clone)]
pub struct Winograd {
    w: Vec<f32>,
    offsets: Vec<usize>,
}

/// Zero bias for the GEMM stage (the real bias is added after the output transform); NV <= 3 vectors of 16.
static ZERO_BIAS: [f32; 48] = [0.0; 48];

impl Winograd {
    /// `weight` is PyTorch's `(cout, cin, 3, 3)`; `panels` are the direct convolution's.
    pub fn new(weight: &[f32], cout: usize, cin: usize, panels: &[Panel], lanes: usize) -> Self {
        // G = [[1, 0, 0], [1/2, 1/2, 1/2], [1/2, -1/2, 1/2], [0, 0, 1]]
        const G: [[f32; 3]; 4] = [
            [1.0, 0.0, 0.0],
            [0.5, 0.5, 0.5],
            [0.5, -0.5, 0.5],
            [0.0, 0.0, 1.0],
        ];
        let mut offsets = Vec::with_capacity(panels.len());
        let mut total = 0;
        for pn in panels {
            offsets.push(total);
            total += 16 * cin * pn.nv * lanes;
        }
        let mut w = vec![0.0f32; total];
        for (pn, &off) in panels.iter().zip(&offsets) {
            let nr = pn.nv * lanes;
            for j in 0..nr {
                let co = pn.col + j;
                if co >= cout {
                    continue;
                }
                for ci in 0..cin {
                    let g = &weight[(co * cin + ci) * 9..(co * cin + ci) * 9 + 9];
                    // u = G g G^T
                    let mut gg = [[0.0f32; 3]; 4];
                    for (a, row) in gg.iter_mut().enumerate() {
                        for (c, v) in row.iter_mut().enumerate() {
                            *v = (0..3).map(|b| G[a][b] * g[b * 3 + c]).sum();
                        }
                    }
                    for a in 0..4 {
                        for b in 0..4 {
                            let u: f32 = (0..3).map(|c| gg[a][c] * G[b][c]).sum();
                            w[off + ((a * 4 + b) * cin + ci) * nr + j] = u;
                        }
                    }
                }
            }
        }
        Winograd { w, offsets }
    }

    /// As [`super::conv::PackedConv::run`] for a 3x3, stride 1, padding 1 convolution.
    pub(super) fn run(&self, level: Level, g: Geometry, io: ConvIo, parallel: bool) {
        let tiles = io.dst.h.div_ceil(2) * io.dst.w.div_ceil(2);
        let blocks = tiles.div_ceil(level.mr());
        let bj = BlockJob { wg: self, g, io };
        let job = |b0: usize, b1: usize| {
            // SAFETY: the caller's views are valid for their geometry; blocks write disjoint output pixels;
            // the ISA was detected when the weights were packed.
            unsafe { blocks_on(level, &bj, b0, b1) }
        };
        par_ranges(blocks, parallel, &job);
    }
}

/// The packed weights' layout a Winograd convolution reads them with.
#[derive(Clone, Copy)]
pub(super) struct Geometry<'a> {
    pub panels: &'a [Panel],
    pub bias: &'a [f32],
    pub cin: usize,
    pub cout: usize,
}

/// What every block of one Winograd convolution reads and writes.
#[derive(Clone, Copy)]
struct BlockJob<'a> {
    wg: &'a Winograd,
    g: Geometry<'a>,
    io: ConvIo<'a>,
}

simd_kernel!(fn blocks_on = run_blocks::<MR>(job: &BlockJob, b0: usize, b1: usize));

/// `B^T d B` on 16 values (one 4x4 tile, row-major), each a vector of channels.
/// B^T = [[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]].
/// # Safety
/// Compiled with `I`'s target features (pure register arithmetic).
#[inline(always)]
unsafe fn input_transform<I: Isa>(d: &[I::V; 16]) -> [I::V; 16] {
    let mut t = [I::zero(); 16];
    for c in 0..4 {
        let (d0, d1, d2, d3) = (d[c], d[4 + c], d[8 + c], d[12 + c]);
        t[c] = I::sub(d0, d2);
        t[4 + c] = I::add(d1, d2);
        t[8 + c] = I::sub(d2, d1);
        t[12 + c] = I::sub(d1, d3);
    }
    let mut v = [I::zero(); 16];
    for r in 0..4 {
        let (t0, t1, t2, t3) = (t[r * 4], t[r * 4 + 1], t[r * 4 + 2], t[r * 4 + 3]);
        v[r * 4] = I::sub(t0, t2);
        v[r * 4 + 1] = I::add(t1, t2);
        v[r * 4 + 2] = I::sub(t2, t1);
        v[r * 4 + 3] = I::sub(t1, t3);
    }
    v
}

/// `A^T m A`: the 2x2 outputs (row-major) of one tile. A^T = [[1, 1, 1, 0], [0, 1, -1, -1]].
/// # Safety
/// Compiled with `I`'s target features (pure register arithmetic).
#[inline(always)]
unsafe fn output_transform<I: Isa>(m: &[I::V; 16]) -> [I::V; 4] {
    let mut t = [I::zero(); 8];
    for c in 0..4 {
        let (m0, m1, m2, m3) = (m[c], m[4 + c], m[8 + c], m[12 + c]);
        t[c] = I::add(I::add(m0, m1), m2);
        t[4 + c] = I::sub(I::sub(m1, m2), m3);
    }
    let mut y = [I::zero(); 4];
    for r in 0..2 {
        let (t0, t1, t2, t3) = (t[r * 4], t[r * 4 + 1], t[r * 4 + 2], t[r * 4 + 3]);
        y[r * 2] = I::add(I::add(t0, t1), t2);
        y[r * 2 + 1] = I::sub(I::sub(t1, t2), t3);
    }
    y
}

/// Blocks `b0..b1` of `MR` 2x2 output tiles.
///
/// # Safety
/// As the direct convolution's tiles ([`super::conv`]): compiled with `I`'s target features, the job's views
/// valid for their geometry, `zeros` holding `cin` zeros, and no other thread writing these blocks.
#[inline(always)]
#[allow(clippy::needless_range_loop)]
unsafe fn run_blocks<I: Isa, const MR: usize>(job: &BlockJob, b0: usize, b1: usize) {
    let (wg, g, src, dst) = (job.wg, job.g, job.io.src, job.io.dst);
    let (act, add, zeros) = (job.io.act, job.io.add, job.io.zeros);
    let l = I::LANES;
    let cin = g.cin;
    let tw = dst.w.div_ceil(2);
    let tiles = dst.h.div_ceil(2) * tw;
    // Transformed inputs of one block, [16][MR][cin]; products, [16][MR][NR].
    let mut v = vec![0.0f32; 16 * MR * cin];
    let mut m = vec![0.0f32; 16 * MR * 48];
    let full = cin / l * l;
    for blk in b0..b1 {
        let t0 = blk * MR;
        let valid = (tiles - t0).min(MR);
        for r in 0..MR {
            // Rows past the end repeat the last valid tile; their results are not stored.
            let t = t0 + r.min(valid - 1);
            let (ty, tx) = (t / tw, t % tw);
            let mut px = [zeros.as_ptr(); 16];
            for i in 0..4 {
                let iy = (2 * ty + i) as isize - 1;
                for j in 0..4 {
                    let ix = (2 * tx + j) as isize - 1;
                    if iy >= 0 && (iy as usize) < src.h && ix >= 0 && (ix as usize) < src.w {
                        px[i * 4 + j] = src
                            .ptr
                            .add((iy as usize * src.w + ix as usize) * src.stride);
                    }
                }
            }
            let vp = v.as_mut_ptr();
            let mut c = 0;
            while c < full {
                let mut d = [I::zero(); 16];
                for k in 0..16 {
                    d[k] = I::load(px[k].add(c));
                }
                let tv = input_transform::<I>(&d);
                for k in 0..16 {
                    I::store(vp.add((k * MR + r) * cin + c), tv[k]);
                }
                c += l;
            }
            while c < cin {
                let d: [f32; 16] = std::array::from_fn(|k| *px[k].add(c));
                let mut t = [0.0f32; 16];
                for cc in 0..4 {
                    t[cc] = d[cc] - d[8 + cc];
                    t[4 + cc] = d[4 + cc] + d[8 + cc];
                    t[8 + cc] = d[8 + cc] - d[4 + cc];
                    t[12 + cc] = d[4 + cc] - d[12 + cc];
                }
                for rr in 0..4 {
                    let (a0, a1, a2, a3) = (t[rr * 4], t[rr * 4 + 1], t[rr * 4 + 2], t[rr * 4 + 3]);
                    *vp.add(((rr * 4) * MR + r) * cin + c) = a0 - a2;
                    *vp.add(((rr * 4 + 1) * MR + r) * cin + c) = a1 + a2;
                    *vp.add(((rr * 4 + 2) * MR + r) * cin + c) = a2 - a1;
                    *vp.add(((rr * 4 + 3) * MR + r) * cin + c) = a1 - a3;
                }
                c += 1;
            }
        }
        for (pn, &off) in g.panels.iter().zip(&wg.offsets) {
            let nr = pn.nv * l;
            for k in 0..16 {
                let row: [*const f32; MR] =
                    std::array::from_fn(|r| v.as_ptr().add((k * MR + r) * cin));
                let rows = [row];
                let b = wg.w.as_ptr().add(off + k * cin * nr);
                let tile = &mut m[k * MR * nr..(k + 1) * MR * nr];
                match pn.nv {
                    1 => kernel::<I, MR, 1>(&rows, cin, b, ZERO_BIAS.as_ptr(), Act::None, tile),
                    2 => kernel::<I, MR, 2>(&rows, cin, b, ZERO_BIAS.as_ptr(), Act::None, tile),
                    _ => kernel::<I, MR, 3>(&rows, cin, b, ZERO_BIAS.as_ptr(), Act::None, tile),
                }
            }
            let ncols = (g.cout - pn.col).min(nr);
            let mp = m.as_ptr();
            for r in 0..valid {
                let t = t0 + r;
                let (ty, tx) = (t / tw, t % tw);
                let mut j = 0;
                while j < ncols {
                    let mut mv = [I::zero(); 16];
                    for k in 0..16 {
                        mv[k] = I::load(mp.add((k * MR + r) * nr + j));
                    }
                    let bv = I::load(g.bias.as_ptr().add(pn.col + j));
                    let mut y = output_transform::<I>(&mv);
                    for v in y.iter_mut() {
                        *v = I::add(*v, bv);
                    }
                    // The four outputs' activations side by side (independent chains overlap).
                    let y = act.vectors::<I, 4>(y);
                    let n = (ncols - j).min(l);
                    for a in 0..2 {
                        let oy = 2 * ty + a;
                        if oy >= dst.h {
                            break;
                        }
                        for b in 0..2 {
                            let ox = 2 * tx + b;
                            if ox >= dst.w {
                                break;
                            }
                            let px = oy * dst.w + ox;
                            let out = dst.ptr.add(px * dst.stride + pn.col + j);
                            let val = y[a * 2 + b];
                            let addp = add.map(|s| s.ptr.add(px * s.stride + pn.col + j));
                            if n == l {
                                let val = match addp {
                                    Some(ap) => I::add(val, I::load(ap)),
                                    None => val,
                                };
                                I::store(out, val);
                            } else {
                                let mut tmp = [0.0f32; 16];
                                I::store(tmp.as_mut_ptr(), val);
                                for q in 0..n {
                                    let mut x = tmp[q];
                                    if let Some(ap) = addp {
                                        x += *ap.add(q);
                                    }
                                    *out.add(q) = x;
                                }
                            }
                        }
                    }
                    j += l;
                }
            }
        }
    }
}
