//! 3x3 stride-1 convolutions by Winograd's minimal filtering (Lavin & Gray, 2016). F(4x4, 3x3), the default:
//! each 4x4 block of output pixels comes from a 6x6 input tile through 36 element-wise products in the
//! transformed domain instead of 144 multiplies a pixel-channel, 4x fewer multiply-adds; F(2x2, 3x3)
//! (`YOLO_ENGINE_WINOGRAD=2`): 2x2 blocks from 4x4 tiles, 2.25x fewer. The input transform runs on channel
//! vectors (NHWC keeps a pixel's channels contiguous); the products summed over input channels are small GEMMs
//! done by the direct convolution's register-block kernel (MR tiles x NR output channels, the transformed
//! weights packed once like its panels); the output transform then adds the bias, applies the activation and
//! the residual add and stores the block. F(2x2)'s transforms use only 0, +-1 and +-1/2 (a few ulps from the
//! direct sum); F(4x4)'s multiply by up to 8 on the way out and its weights by sixths, so its rounding error
//! is larger, measured against the textbook sum and every fixture (see `engine::tests` and `tests/engine.rs`).

use super::conv::{kernel, ConvIo, Panel};
use super::simd::{Isa, Level};
use super::{par_ranges, Act};

/// Transformed weights `G g G^T` (TxT per output/input channel pair), packed per panel as `[T*T][cin][NR]`.
#[derive(Debug, Clone)]
pub struct Winograd {
    w: Vec<f32>,
    offsets: Vec<usize>,
    /// Output tile side: 2 for F(2x2, 3x3), 4 for F(4x4, 3x3).
    m: usize,
}

thread_local! {
    /// Each thread's block buffers ([`run_blocks`]).
    static SCRATCH: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Zero bias for the GEMM stage (the real bias is added after the output transform); NV <= 3 vectors of 16.
static ZERO_BIAS: [f32; 48] = [0.0; 48];

/// F(2x2, 3x3)'s G.
const G2: [[f64; 3]; 4] = [
    [1.0, 0.0, 0.0],
    [0.5, 0.5, 0.5],
    [0.5, -0.5, 0.5],
    [0.0, 0.0, 1.0],
];

/// F(4x4, 3x3)'s G (interpolation points 0, 1, -1, 2, -2 and infinity, as Lavin & Gray).
const G4: [[f64; 3]; 6] = [
    [1.0 / 4.0, 0.0, 0.0],
    [-1.0 / 6.0, -1.0 / 6.0, -1.0 / 6.0],
    [-1.0 / 6.0, 1.0 / 6.0, -1.0 / 6.0],
    [1.0 / 24.0, 1.0 / 12.0, 1.0 / 6.0],
    [1.0 / 24.0, -1.0 / 12.0, 1.0 / 6.0],
    [0.0, 0.0, 1.0],
];

impl Winograd {
    /// `weight` is PyTorch's `(cout, cin, 3, 3)`; `panels` are the direct convolution's; `m` the output tile
    /// side (2 or 4).
    pub fn new(
        weight: &[f32],
        cout: usize,
        cin: usize,
        panels: &[Panel],
        lanes: usize,
        m: usize,
    ) -> Self {
        let g: &[[f64; 3]] = if m == 4 { &G4 } else { &G2 };
        let t = g.len();
        let mut offsets = Vec::with_capacity(panels.len());
        let mut total = 0;
        for pn in panels {
            offsets.push(total);
            total += t * t * cin * pn.nv * lanes;
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
                    let k = &weight[(co * cin + ci) * 9..(co * cin + ci) * 9 + 9];
                    // u = G k G^T, in float64 (G4's sixths and twenty-fourths are not exact in float32)
                    let mut gk = [[0.0f64; 3]; 6];
                    for (a, row) in gk.iter_mut().enumerate().take(t) {
                        for (c, v) in row.iter_mut().enumerate() {
                            *v = (0..3).map(|b| g[a][b] * k[b * 3 + c] as f64).sum();
                        }
                    }
                    for a in 0..t {
                        for b in 0..t {
                            let u: f64 = (0..3).map(|c| gk[a][c] * g[b][c]).sum();
                            w[off + ((a * t + b) * cin + ci) * nr + j] = u as f32;
                        }
                    }
                }
            }
        }
        Winograd { w, offsets, m }
    }

    /// As [`super::conv::PackedConv::run`] for a 3x3, stride 1, padding 1 convolution.
    pub(super) fn run(&self, level: Level, g: Geometry, io: ConvIo, parallel: bool) {
        let tiles = io.dst.h.div_ceil(self.m) * io.dst.w.div_ceil(self.m);
        let blocks = tiles.div_ceil(level.mr());
        let bj = BlockJob { wg: self, g, io };
        let job = |b0: usize, b1: usize| {
            // SAFETY: the caller's views are valid for their geometry; blocks write disjoint output pixels;
            // the ISA was detected when the weights were packed.
            unsafe {
                if self.m == 4 {
                    blocks4_on(level, &bj, b0, b1)
                } else {
                    blocks2_on(level, &bj, b0, b1)
                }
            }
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

simd_kernel!(fn blocks2_on = run_blocks2::<MR>(job: &BlockJob, b0: usize, b1: usize));
simd_kernel!(fn blocks4_on = run_blocks4::<MR>(job: &BlockJob, b0: usize, b1: usize));

/// # Safety
/// As [`run_blocks`].
#[inline(always)]
unsafe fn run_blocks2<I: Isa, const MR: usize>(job: &BlockJob, b0: usize, b1: usize) {
    run_blocks::<I, F2, MR>(job, b0, b1)
}

/// # Safety
/// As [`run_blocks`].
#[inline(always)]
unsafe fn run_blocks4<I: Isa, const MR: usize>(job: &BlockJob, b0: usize, b1: usize) {
    run_blocks::<I, F4, MR>(job, b0, b1)
}

/// One Winograd tiling: `M x M` outputs from a `T x T` input tile, `T = M + 2`. Values are row-major in
/// arrays of 36 (the largest tile); only the first `T * T` (in) and `M * M` (out) are used.
trait Tile {
    const M: usize;
    const T: usize;
    /// `B^T d B`.
    ///
    /// # Safety
    /// Compiled with `I`'s target features (pure register arithmetic).
    unsafe fn input<I: Isa>(d: &[I::V; 36]) -> [I::V; 36];
    /// `A^T m A`.
    ///
    /// # Safety
    /// As [`Self::input`].
    unsafe fn output<I: Isa>(m: &[I::V; 36]) -> [I::V; 16];
}

/// F(2x2, 3x3).
struct F2;
/// F(4x4, 3x3).
struct F4;

impl Tile for F2 {
    const M: usize = 2;
    const T: usize = 4;

    /// B^T = [[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]].
    #[inline(always)]
    unsafe fn input<I: Isa>(d: &[I::V; 36]) -> [I::V; 36] {
        let mut t = [I::zero(); 16];
        for c in 0..4 {
            let (d0, d1, d2, d3) = (d[c], d[4 + c], d[8 + c], d[12 + c]);
            t[c] = I::sub(d0, d2);
            t[4 + c] = I::add(d1, d2);
            t[8 + c] = I::sub(d2, d1);
            t[12 + c] = I::sub(d1, d3);
        }
        let mut v = [I::zero(); 36];
        for r in 0..4 {
            let (t0, t1, t2, t3) = (t[r * 4], t[r * 4 + 1], t[r * 4 + 2], t[r * 4 + 3]);
            v[r * 4] = I::sub(t0, t2);
            v[r * 4 + 1] = I::add(t1, t2);
            v[r * 4 + 2] = I::sub(t2, t1);
            v[r * 4 + 3] = I::sub(t1, t3);
        }
        v
    }

    /// A^T = [[1, 1, 1, 0], [0, 1, -1, -1]].
    #[inline(always)]
    unsafe fn output<I: Isa>(m: &[I::V; 36]) -> [I::V; 16] {
        let mut t = [I::zero(); 8];
        for c in 0..4 {
            let (m0, m1, m2, m3) = (m[c], m[4 + c], m[8 + c], m[12 + c]);
            t[c] = I::add(I::add(m0, m1), m2);
            t[4 + c] = I::sub(I::sub(m1, m2), m3);
        }
        let mut y = [I::zero(); 16];
        for r in 0..2 {
            let (t0, t1, t2, t3) = (t[r * 4], t[r * 4 + 1], t[r * 4 + 2], t[r * 4 + 3]);
            y[r * 2] = I::add(I::add(t0, t1), t2);
            y[r * 2 + 1] = I::sub(I::sub(t1, t2), t3);
        }
        y
    }
}

/// F(4x4, 3x3)'s 1-D input transform of six values (one row of B^T per output):
/// B^T = [[4, 0, -5, 0, 1, 0], [0, -4, -4, 1, 1, 0], [0, 4, -4, -1, 1, 0], [0, -2, -1, 2, 1, 0],
///        [0, 2, -1, -2, 1, 0], [0, 4, 0, -5, 0, 1]].
///
/// # Safety
/// Compiled with `I`'s target features (pure register arithmetic).
#[inline(always)]
unsafe fn b4<I: Isa>(d: [I::V; 6]) -> [I::V; 6] {
    let (four, minus_five, two) = (I::splat(4.0), I::splat(-5.0), I::splat(2.0));
    let (minus_four, minus_two) = (I::splat(-4.0), I::splat(-2.0));
    let s12 = I::add(d[1], d[2]);
    let s34 = I::add(d[3], d[4]);
    let d12 = I::sub(d[1], d[2]);
    let d43 = I::sub(d[4], d[3]);
    let d42 = I::sub(d[4], d[2]);
    let d31 = I::sub(d[3], d[1]);
    [
        I::fma(four, d[0], I::fma(minus_five, d[2], d[4])),
        I::fma(minus_four, s12, s34),
        I::fma(four, d12, d43),
        I::fma(two, d31, d42),
        I::fma(minus_two, d31, d42),
        I::fma(four, d[1], I::fma(minus_five, d[3], d[5])),
    ]
}

/// F(4x4, 3x3)'s 1-D output transform of six values:
/// A^T = [[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0], [0, 1, -1, 8, -8, 1]].
///
/// # Safety
/// As [`b4`].
#[inline(always)]
unsafe fn a4<I: Isa>(m: [I::V; 6]) -> [I::V; 4] {
    let s12 = I::add(m[1], m[2]);
    let d12 = I::sub(m[1], m[2]);
    let s34 = I::add(m[3], m[4]);
    let d34 = I::sub(m[3], m[4]);
    [
        I::add(I::add(m[0], s12), s34),
        I::fma(I::splat(2.0), d34, d12),
        I::fma(I::splat(4.0), s34, s12),
        I::add(I::fma(I::splat(8.0), d34, d12), m[5]),
    ]
}

impl Tile for F4 {
    const M: usize = 4;
    const T: usize = 6;

    #[inline(always)]
    unsafe fn input<I: Isa>(d: &[I::V; 36]) -> [I::V; 36] {
        let mut t = [I::zero(); 36];
        for c in 0..6 {
            let col = b4::<I>(std::array::from_fn(|k| d[k * 6 + c]));
            for (k, x) in col.into_iter().enumerate() {
                t[k * 6 + c] = x;
            }
        }
        let mut v = [I::zero(); 36];
        for r in 0..6 {
            let row = b4::<I>(std::array::from_fn(|k| t[r * 6 + k]));
            v[r * 6..r * 6 + 6].copy_from_slice(&row);
        }
        v
    }

    #[inline(always)]
    unsafe fn output<I: Isa>(m: &[I::V; 36]) -> [I::V; 16] {
        let mut t = [I::zero(); 24];
        for c in 0..6 {
            let col = a4::<I>(std::array::from_fn(|k| m[k * 6 + c]));
            for (k, x) in col.into_iter().enumerate() {
                t[k * 6 + c] = x;
            }
        }
        let mut y = [I::zero(); 16];
        for r in 0..4 {
            let row = a4::<I>(std::array::from_fn(|k| t[r * 6 + k]));
            y[r * 4..r * 4 + 4].copy_from_slice(&row);
        }
        y
    }
}

/// Blocks `b0..b1` of `MR` output tiles of `F`.
///
/// # Safety
/// As the direct convolution's tiles ([`super::conv`]): compiled with `I`'s target features, the job's views
/// valid for their geometry, `zeros` holding `cin` zeros, and no other thread writing these blocks.
#[inline(always)]
#[allow(clippy::needless_range_loop)]
unsafe fn run_blocks<I: Isa, F: Tile, const MR: usize>(job: &BlockJob, b0: usize, b1: usize) {
    let (wg, g, src, dst) = (job.wg, job.g, job.io.src, job.io.dst);
    let (act, add, zeros) = (job.io.act, job.io.add, job.io.zeros);
    let (fm, ft) = (F::M, F::T);
    let tt = ft * ft;
    let l = I::LANES;
    let cin = g.cin;
    let tw = dst.w.div_ceil(fm);
    let tiles = dst.h.div_ceil(fm) * tw;
    // Transformed inputs of one block, [T*T][MR][cin]; products, [T*T][MR][NR]: this thread's scratch, kept
    // between calls (fresh zeroed buffers of up to 300 KB a chunk cost page faults and a memset each time).
    // Every value is written before it is read.
    let mut scratch = SCRATCH.with(|s| std::mem::take(&mut *s.borrow_mut()));
    let need = tt * MR * (cin + 48);
    if scratch.len() < need {
        scratch.resize(need, 0.0);
    }
    let (v, m) = scratch.split_at_mut(tt * MR * cin);
    for blk in b0..b1 {
        let t0 = blk * MR;
        let valid = (tiles - t0).min(MR);
        for r in 0..MR {
            // Rows past the end repeat the last valid tile; their results are not stored.
            let t = t0 + r.min(valid - 1);
            let (ty, tx) = (t / tw, t % tw);
            let mut px = [zeros.as_ptr(); 36];
            for i in 0..ft {
                let iy = (fm * ty + i) as isize - 1;
                for j in 0..ft {
                    let ix = (fm * tx + j) as isize - 1;
                    if iy >= 0 && (iy as usize) < src.h && ix >= 0 && (ix as usize) < src.w {
                        px[i * ft + j] = src
                            .ptr
                            .add((iy as usize * src.w + ix as usize) * src.stride);
                    }
                }
            }
            let vp = v.as_mut_ptr();
            let mut c = 0;
            while c < cin {
                // A channel tail is a partial vector (zeros in the other lanes, which nothing stores).
                let n = (cin - c).min(l);
                let mut d = [I::zero(); 36];
                for k in 0..tt {
                    d[k] = if n == l {
                        I::load(px[k].add(c))
                    } else {
                        I::load_n(px[k].add(c), n)
                    };
                }
                let tv = F::input::<I>(&d);
                for k in 0..tt {
                    let to = vp.add((k * MR + r) * cin + c);
                    if n == l {
                        I::store(to, tv[k]);
                    } else {
                        I::store_n(to, tv[k], n);
                    }
                }
                c += l;
            }
        }
        for (pn, &off) in g.panels.iter().zip(&wg.offsets) {
            let nr = pn.nv * l;
            for k in 0..tt {
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
                    let mut mv = [I::zero(); 36];
                    for k in 0..tt {
                        mv[k] = I::load(mp.add((k * MR + r) * nr + j));
                    }
                    let bv = I::load(g.bias.as_ptr().add(pn.col + j));
                    let mut y = F::output::<I>(&mv);
                    for v in y.iter_mut().take(fm * fm) {
                        *v = I::add(*v, bv);
                    }
                    // Four outputs' activations side by side (independent chains overlap).
                    for q in (0..fm * fm).step_by(4) {
                        let a = act.vectors::<I, 4>([y[q], y[q + 1], y[q + 2], y[q + 3]]);
                        y[q..q + 4].copy_from_slice(&a);
                    }
                    let n = (ncols - j).min(l);
                    for a in 0..fm {
                        let oy = fm * ty + a;
                        if oy >= dst.h {
                            break;
                        }
                        for b in 0..fm {
                            let ox = fm * tx + b;
                            if ox >= dst.w {
                                break;
                            }
                            let px = oy * dst.w + ox;
                            let out = dst.ptr.add(px * dst.stride + pn.col + j);
                            let val = y[a * fm + b];
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
    SCRATCH.with(|s| *s.borrow_mut() = scratch);
}
