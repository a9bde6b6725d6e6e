//! Dense convolution as an implicit GEMM over NHWC maps: no im2col buffer. Each tile of MR output pixels
//! gets one input-pixel pointer per row and kernel tap (a shared zero row where the tap falls in the
//! padding); weights are packed once into column panels of NR output channels laid out
//! `[tap][c_in][NR]`, so the register block (MR pixels x NR channels) streams one panel row per input
//! channel and broadcasts one input value per pixel. Bias is the accumulator's start value; activation and
//! the residual add run on the tile before it is stored, so a Conv+BN+SiLU(+add) is one pass over memory.

use super::qconv::{QMac, QOutput, QuantIn};
use super::simd::{Isa, Level, MR_512};
use super::winograd::{Geometry, Winograd};
use super::{par_ranges, Act, Dst, Src};

/// Winograd for 3x3 stride-1 convolutions unless `YOLO_ENGINE_DIRECT` is set (to time or test the direct path).
fn winograd_enabled() -> bool {
    std::env::var_os("YOLO_ENGINE_DIRECT").is_none()
}

/// The Winograd output tile: F(4x4, 3x3), or F(2x2, 3x3) with `YOLO_ENGINE_WINOGRAD=2`.
fn winograd_tile() -> usize {
    match std::env::var("YOLO_ENGINE_WINOGRAD").as_deref() {
        Ok("2") => 2,
        _ => 4,
    }
}

/// One column panel: output channels `col..col + lanes * nv`, weights at `offset` in [`PackedConv::w`].
#[derive(Debug, Clone)]
pub(super) struct Panel {
    pub col: usize,
    pub nv: usize,
    pub offset: usize,
}

/// A convolution's weights packed for one [`Level`].
#[derive(Debug, Clone)]
pub struct PackedConv {
    pub k: usize,
    pub s: usize,
    pub p: usize,
    pub cin: usize,
    pub cout: usize,
    level: Level,
    panels: Vec<Panel>,
    w: Vec<f32>,
    /// Bias per panel column (zero beyond `cout`), indexed like the panels' columns.
    bias: Vec<f32>,
    /// 3x3 stride-1 padding-1 convolutions run through Winograd (F(4x4, 3x3) or F(2x2, 3x3)) instead.
    wino: Option<Winograd>,
}

impl PackedConv {
    /// `weight` is PyTorch's `(cout, cin, k, k)`, row-major; `bias` has `cout` entries.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        level: Level,
        weight: &[f32],
        bias: &[f32],
        cout: usize,
        cin: usize,
        k: usize,
        s: usize,
        p: usize,
    ) -> PackedConv {
        let tile = (k == 3 && s == 1 && p == 1 && winograd_enabled()).then(winograd_tile);
        Self::with_winograd(level, weight, bias, cout, cin, k, s, p, tile)
    }

    /// As [`Self::new`], with Winograd's output tile (2 or 4) chosen, or `None` for the direct kernel; only a
    /// 3x3 stride-1 padding-1 convolution takes a tile.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn with_winograd(
        level: Level,
        weight: &[f32],
        bias: &[f32],
        cout: usize,
        cin: usize,
        k: usize,
        s: usize,
        p: usize,
        tile: Option<usize>,
    ) -> PackedConv {
        assert!(
            tile.is_none() || (k == 3 && s == 1 && p == 1),
            "Winograd takes 3x3 stride-1 padding-1 convolutions"
        );
        // At most 8 output channels would fill half of every AVX-512 vector: AVX2's 8 lanes carry them whole
        // (the same multiply-adds a cycle on Zen 4; yolo11n's 16 -> 8 3x3 at 160x160: 0.44 -> 0.31 ms).
        let level = match level {
            Level::Avx512 if cout <= 8 && Level::available().contains(&Level::Avx2) => Level::Avx2,
            l => l,
        };
        let lanes = level.lanes();
        let taps = k * k;
        let mut panels = Vec::new();
        let mut col = 0;
        let mut offset = 0;
        // Panel widths in vectors: as wide as the register file allows ([`Level::max_panel`]), splitting a
        // remainder of 4 as 2 + 2 rather than 3 + 1 (a 1-vector panel is the slowest).
        let max_nv = level.max_panel();
        while col < cout {
            let n = (cout - col).div_ceil(lanes);
            let nv = match n {
                4 if max_nv == 3 => 2,
                n => n.min(max_nv),
            };
            panels.push(Panel { col, nv, offset });
            offset += taps * cin * nv * lanes;
            col += nv * lanes;
        }
        let padded = col;
        let mut w = vec![0.0f32; offset];
        for pn in &panels {
            let nr = pn.nv * lanes;
            for t in 0..taps {
                for ci in 0..cin {
                    for j in 0..nr {
                        let co = pn.col + j;
                        if co < cout {
                            w[pn.offset + (t * cin + ci) * nr + j] =
                                weight[(co * cin + ci) * taps + t];
                        }
                    }
                }
            }
        }
        let mut b = vec![0.0f32; padded];
        b[..cout].copy_from_slice(bias);
        let wino = tile.map(|m| Winograd::new(weight, cout, cin, &panels, lanes, m));
        if wino.is_some() {
            // Only the transformed weights are read from here on.
            w = Vec::new();
        }
        PackedConv {
            k,
            s,
            p,
            cin,
            cout,
            level,
            panels,
            w,
            bias: b,
            wino,
        }
    }

    /// Runs the convolution of `src` into `dst` (`dst` holds `out_size` pixels), then `act`, then adds `add`
    /// (same geometry as `dst`). `zeros` holds at least `cin` zeros.
    pub fn run(
        &self,
        src: Src,
        dst: Dst,
        act: Act,
        add: Option<Src>,
        zeros: &[f32],
        parallel: bool,
    ) {
        debug_assert!(zeros.len() >= self.cin);
        if let Some(wg) = &self.wino {
            let io = ConvIo {
                src,
                dst,
                act,
                add,
                zeros,
            };
            let g = Geometry {
                panels: &self.panels,
                bias: &self.bias,
                cin: self.cin,
                cout: self.cout,
            };
            return wg.run(self.level, g, io, parallel);
        }
        self.run_direct(src, QOutput::Float(dst), act, add, zeros, parallel)
    }

    /// Whether [`Self::run_quantized`] takes this convolution (the direct kernel; Winograd stores floats).
    pub fn writes_u8(&self) -> bool {
        self.wino.is_none()
    }

    /// [`Self::run`] into a u8 map: the tile (after bias, activation and `add`) requantized with `q`. Only
    /// where [`Self::writes_u8`].
    #[allow(clippy::too_many_arguments)]
    pub fn run_quantized(
        &self,
        src: Src,
        dst: Dst<u8>,
        q: QuantIn,
        act: Act,
        add: Option<Src>,
        zeros: &[f32],
        parallel: bool,
    ) {
        assert!(self.writes_u8(), "a Winograd convolution stores float32");
        let out = QOutput::Quantized(dst, q);
        self.run_direct(src, out, act, add, zeros, parallel)
    }

    fn run_direct(
        &self,
        src: Src,
        out: QOutput,
        act: Act,
        add: Option<Src>,
        zeros: &[f32],
        parallel: bool,
    ) {
        let (h, w) = out.size();
        let m = h * w;
        let narrow = self.narrow();
        let mr = if narrow { MR_NARROW } else { self.level.mr() };
        let tiles = m.div_ceil(mr);
        let tj = TileJob {
            pc: self,
            src,
            out,
            act,
            add,
            zeros,
        };
        let job = |t0: usize, t1: usize| {
            // SAFETY: the caller's views are valid for their geometry and tiles write disjoint rows; the
            // kernel's ISA was detected at build time.
            unsafe {
                if narrow {
                    narrow_on(self.level, &tj, t0, t1)
                } else {
                    tiles_on(self.level, &tj, t0, t1)
                }
            }
        };
        par_ranges(tiles, parallel, &job);
    }
}

/// Output pixels per tile for a convolution whose output channels fit one AVX-512 vector (the stem's 16):
/// 24 accumulators instead of 8, so each weight load feeds three times the multiply-adds.
const MR_NARROW: usize = 24;

impl PackedConv {
    fn narrow(&self) -> bool {
        self.level == Level::Avx512 && self.panels.iter().all(|p| p.nv == 1)
    }
}

/// What one convolution reads and writes: the input, the output, the activation, a map added after it, and
/// at least `cin` zeros for the padding taps.
#[derive(Clone, Copy)]
pub(super) struct ConvIo<'a> {
    pub src: Src,
    pub dst: Dst,
    pub act: Act,
    pub add: Option<Src>,
    pub zeros: &'a [f32],
}

/// What every tile of one direct convolution reads and writes.
#[derive(Clone, Copy)]
struct TileJob<'a> {
    pc: &'a PackedConv,
    src: Src,
    out: QOutput,
    act: Act,
    add: Option<Src>,
    zeros: &'a [f32],
}

simd_kernel!(fn tiles_on = run_tiles::<MR>(job: &TileJob, t0: usize, t1: usize));
simd_kernel!(fn narrow_on = run_tiles::<MR_NARROW>(job: &TileJob, t0: usize, t1: usize));

/// Output tiles `t0..t1` (`MR` pixels each).
///
/// # Safety
/// Compiled with `I`'s target features; the job's views are valid for their geometry (`src` with `cin`
/// channels, `dst` and `add` with `cout`, `dst` the convolution's output size), `zeros` holds `cin` zeros, and
/// no other thread writes these tiles.
#[inline(always)]
#[allow(clippy::needless_range_loop)]
unsafe fn run_tiles<I: QMac, const MR: usize>(job: &TileJob, t0: usize, t1: usize) {
    let (pc, src) = (job.pc, job.src);
    let (act, add, zeros) = (job.act, job.add, job.zeros);
    let (oh, ow) = job.out.size();
    let (k, s, p) = (pc.k, pc.s, pc.p);
    let m = oh * ow;
    // In a dense map (no channel slice) the k taps of one kernel row are k * cin consecutive floats, the
    // order the weights are packed in: one pointer per kernel row then serves them all, so a stem on 3
    // channels runs 9-long inner loops instead of 3-long ones. Pixels whose row crosses the map's edge are
    // gathered (with zeros) into `edge`.
    let rowwise = src.stride == pc.cin && k > 1;
    let (taps, span) = if rowwise {
        (k, k * pc.cin)
    } else {
        (k * k, pc.cin)
    };
    let zrow: Vec<f32> = if rowwise { vec![0.0; span] } else { Vec::new() };
    let zero = if rowwise {
        zrow.as_ptr()
    } else {
        zeros.as_ptr()
    };
    let mut edge = if rowwise {
        vec![0.0f32; MR * k * span]
    } else {
        Vec::new()
    };
    let mut rows: Vec<[*const f32; MR]> = vec![[zero; MR]; taps];
    // MR pixels x NR <= 48 channels (MR_NARROW only with one 16-channel vector).
    let mut tile = [0.0f32; 384];
    // A 1x1 stride-1 convolution reads pixel `mi` of its input for output pixel `mi`.
    let pointwise = k == 1 && s == 1 && p == 0;
    for t in t0..t1 {
        let m0 = t * MR;
        let valid = (m - m0).min(MR);
        let (mut oy, mut ox) = (m0 / ow, m0 % ow);
        if pointwise {
            for (r, row) in rows[0].iter_mut().enumerate() {
                // Rows past the end repeat the last valid pixel; their results are not stored.
                *row = src.ptr.add((m0 + r.min(valid - 1)) * src.stride);
            }
        } else if valid == MR && ox + MR <= ow && ox * s >= p && (ox + MR - 1) * s + k <= src.w + p
        {
            // The tile's pixels are consecutive in one output row and every tap lies inside the map across:
            // each tap's pointers step by `s` input pixels (the per-pixel bounds below cost as much as a
            // stem's multiply-adds).
            let step = s * src.stride;
            for ky in 0..k {
                let iy = (oy * s + ky) as isize - p as isize;
                let taps_of_row = if rowwise {
                    ky..ky + 1
                } else {
                    ky * k..(ky + 1) * k
                };
                if iy < 0 || iy as usize >= src.h {
                    for tap in taps_of_row {
                        rows[tap] = [zero; MR];
                    }
                    continue;
                }
                let base = src.ptr.add((iy as usize * src.w + ox * s - p) * src.stride);
                for (kx, tap) in taps_of_row.enumerate() {
                    for (r, row) in rows[tap].iter_mut().enumerate() {
                        *row = base.add(kx * src.stride + r * step);
                    }
                }
            }
        } else {
            for r in 0..MR {
                // Rows past the end repeat the last valid pixel; their results are not stored.
                if r > 0 && r < valid {
                    ox += 1;
                    if ox == ow {
                        (oy, ox) = (oy + 1, 0);
                    }
                }
                for ky in 0..k {
                    let iy = (oy * s + ky) as isize - p as isize;
                    let row_in = iy >= 0 && (iy as usize) < src.h;
                    if rowwise {
                        let ix0 = (ox * s) as isize - p as isize;
                        rows[ky][r] = if !row_in {
                            zero
                        } else if ix0 >= 0 && ix0 as usize + k <= src.w {
                            src.ptr
                                .add((iy as usize * src.w + ix0 as usize) * src.stride)
                        } else {
                            let g = edge.as_mut_ptr().add((r * k + ky) * span);
                            for kx in 0..k {
                                let ix = ix0 + kx as isize;
                                let to = g.add(kx * pc.cin);
                                if ix >= 0 && (ix as usize) < src.w {
                                    let from = src
                                        .ptr
                                        .add((iy as usize * src.w + ix as usize) * src.stride);
                                    std::ptr::copy_nonoverlapping(from, to, pc.cin);
                                } else {
                                    std::ptr::write_bytes(to, 0, pc.cin);
                                }
                            }
                            g
                        };
                        continue;
                    }
                    for kx in 0..k {
                        let ix = (ox * s + kx) as isize - p as isize;
                        rows[ky * k + kx][r] = if row_in && ix >= 0 && (ix as usize) < src.w {
                            src.ptr
                                .add((iy as usize * src.w + ix as usize) * src.stride)
                        } else {
                            zero
                        };
                    }
                }
            }
        }
        for pn in &pc.panels {
            let b = pc.w.as_ptr().add(pn.offset);
            let bias = pc.bias.as_ptr().add(pn.col);
            let nr = pn.nv * I::LANES;
            let ncols = (pc.cout - pn.col).min(nr);
            if let (QOutput::Float(d), true) = (job.out, valid == MR && ncols == nr) {
                // A whole tile of float32: activation, add and store straight from the registers.
                let to = RowsOut {
                    ptr: d.ptr.add(m0 * d.stride + pn.col),
                    stride: d.stride,
                    add: add.map(|a| (a.ptr.add(m0 * a.stride + pn.col), a.stride)),
                };
                match pn.nv {
                    1 => kernel_to::<I, MR, 1>(&rows, span, b, bias, act, to),
                    2 if MR <= MR_512 => kernel_to::<I, MR, 2>(&rows, span, b, bias, act, to),
                    _ if MR <= MR_512 => kernel_to::<I, MR, 3>(&rows, span, b, bias, act, to),
                    _ => unreachable!("a narrow convolution has one-vector panels"),
                }
                continue;
            }
            match pn.nv {
                1 => kernel::<I, MR, 1>(&rows, span, b, bias, act, &mut tile),
                // Wider panels only with the 8- and 6-row tiles (`narrow` takes one-vector panels).
                2 if MR <= MR_512 => kernel::<I, MR, 2>(&rows, span, b, bias, act, &mut tile),
                _ if MR <= MR_512 => kernel::<I, MR, 3>(&rows, span, b, bias, act, &mut tile),
                _ => unreachable!("a narrow convolution has one-vector panels"),
            }
            for r in 0..valid {
                let acc = tile.as_mut_ptr().add(r * nr);
                store_out::<I>(job.out, m0 + r, pn.col, acc, add, ncols);
            }
        }
    }
}

/// Stores `n` values of a tile row, adding `add` first when `ADD`.
///
/// # Safety
/// Compiled with `I`'s target features; `out`, `acc` and (when `ADD`) `add` are valid for `n` floats.
#[inline(always)]
pub(super) unsafe fn store_row<I: Isa, const ADD: bool>(
    out: *mut f32,
    acc: *const f32,
    add: *const f32,
    n: usize,
) {
    let mut j = 0;
    while j + I::LANES <= n {
        let mut v = I::load(acc.add(j));
        if ADD {
            v = I::add(v, I::load(add.add(j)));
        }
        I::store(out.add(j), v);
        j += I::LANES;
    }
    while j < n {
        let mut v = *acc.add(j);
        if ADD {
            v += *add.add(j);
        }
        *out.add(j) = v;
        j += 1;
    }
}

/// Output pixel `mi`'s channels `col..col + n` from the tile row `acc` (after the activation): plus `add`, then
/// stored as float32 or requantized into a u8 map (as its reader would quantize the float this row would have
/// stored; `acc` is overwritten with the sum then).
///
/// # Safety
/// Compiled with `I`'s target features; `acc` holds `n` floats, and `out` and `add` hold pixel `mi` with at
/// least `col + n` channels.
#[inline(always)]
pub(super) unsafe fn store_out<I: QMac>(
    out: QOutput,
    mi: usize,
    col: usize,
    acc: *mut f32,
    add: Option<Src>,
    n: usize,
) {
    let add = add.map(|a| a.ptr.add(mi * a.stride + col));
    match out {
        QOutput::Quantized(d, q) => {
            if let Some(a) = add {
                store_row::<I, true>(acc, acc, a, n);
            }
            I::quantize_row(
                acc,
                n,
                1.0 / q.scale,
                q.zero,
                d.ptr.add(mi * d.stride + col),
            );
        }
        QOutput::Float(d) => {
            let o = d.ptr.add(mi * d.stride + col);
            match add {
                Some(a) => store_row::<I, true>(o, acc, a, n),
                None => store_row::<I, false>(o, acc, acc, n),
            }
        }
    }
}

/// Where a whole tile goes from the registers: MR consecutive output pixels `stride` floats apart, and the
/// map added to them (its pointer at the same pixel and channel, its stride).
#[derive(Clone, Copy)]
struct RowsOut {
    ptr: *mut f32,
    stride: usize,
    add: Option<(*const f32, usize)>,
}

/// [`kernel`] for a tile whose MR pixels and NV vectors all exist in a float32 output: the activation and the
/// add run on the accumulators, which are stored straight to the output (no round trip through a tile).
///
/// # Safety
/// As [`kernel`]; `to.ptr` (and the add's pointer) are valid for MR rows of `NV * LANES` floats at their
/// strides.
#[inline(always)]
#[allow(clippy::needless_range_loop)]
unsafe fn kernel_to<I: Isa, const MR: usize, const NV: usize>(
    rows: &[[*const f32; MR]],
    cin: usize,
    b: *const f32,
    bias: *const f32,
    act: Act,
    to: RowsOut,
) {
    let l = I::LANES;
    let mut acc = accumulate::<I, MR, NV>(rows, cin, b, bias);
    match act {
        Act::None => {}
        Act::Relu => {
            for r in 0..MR {
                for v in 0..NV {
                    acc[r][v] = I::max(I::zero(), acc[r][v]);
                }
            }
        }
        Act::Silu => {
            // Four vectors at a time (SiLU's exp is a long dependent chain), indices constant once unrolled.
            let n = MR * NV;
            let mut i = 0;
            while i + 4 <= n {
                let x = [
                    acc[i / NV][i % NV],
                    acc[(i + 1) / NV][(i + 1) % NV],
                    acc[(i + 2) / NV][(i + 2) % NV],
                    acc[(i + 3) / NV][(i + 3) % NV],
                ];
                let y = I::silu_n(x);
                for (j, y) in y.into_iter().enumerate() {
                    acc[(i + j) / NV][(i + j) % NV] = y;
                }
                i += 4;
            }
            while i < n {
                acc[i / NV][i % NV] = I::silu(acc[i / NV][i % NV]);
                i += 1;
            }
        }
    }
    for r in 0..MR {
        let o = to.ptr.add(r * to.stride);
        for v in 0..NV {
            let mut x = acc[r][v];
            if let Some((a, stride)) = to.add {
                x = I::add(x, I::load(a.add(r * stride + v * l)));
            }
            I::store(o.add(v * l), x);
        }
    }
}

/// MR pixels x NV vectors of output channels over every tap and input channel, starting from the bias.
///
/// # Safety
/// As [`kernel`].
#[inline(always)]
#[allow(clippy::needless_range_loop)]
unsafe fn accumulate<I: Isa, const MR: usize, const NV: usize>(
    rows: &[[*const f32; MR]],
    cin: usize,
    b: *const f32,
    bias: *const f32,
) -> [[I::V; NV]; MR] {
    let l = I::LANES;
    let mut acc = [[I::zero(); NV]; MR];
    for v in 0..NV {
        let bv = I::load(bias.add(v * l));
        for a in acc.iter_mut() {
            a[v] = bv;
        }
    }
    let mut bp = b;
    for tap in rows {
        let mut ptrs = *tap;
        for _ in 0..cin {
            let mut bv = [I::zero(); NV];
            for (v, x) in bv.iter_mut().enumerate() {
                *x = I::load(bp.add(v * l));
            }
            for r in 0..MR {
                let av = I::splat(*ptrs[r]);
                for v in 0..NV {
                    acc[r][v] = I::fma(av, bv[v], acc[r][v]);
                }
            }
            for p in ptrs.iter_mut() {
                *p = p.add(1);
            }
            bp = bp.add(NV * l);
        }
    }
    acc
}

/// The register block: MR pixels x NV vectors of output channels over every tap and input channel, then the
/// activation; written row-major (`NV * LANES` per row) into `tile`. Indexed loops over constant bounds on
/// purpose: fully unrolled, they keep every accumulator in a register.
///
/// # Safety
/// Compiled with `I`'s target features; every row pointer is valid for `cin` floats, `b` for
/// `taps * cin * NV * LANES` packed weights, `bias` for `NV * LANES` floats and `tile` holds `MR * NV * LANES`.
#[inline(always)]
#[allow(clippy::needless_range_loop)]
pub(super) unsafe fn kernel<I: Isa, const MR: usize, const NV: usize>(
    rows: &[[*const f32; MR]],
    cin: usize,
    b: *const f32,
    bias: *const f32,
    act: Act,
    tile: &mut [f32],
) {
    let l = I::LANES;
    let acc = accumulate::<I, MR, NV>(rows, cin, b, bias);
    // Stores with constant indices only, so the accumulators stay in registers through the loops above;
    // the activation then runs over the tile in L1.
    let tp = tile.as_mut_ptr();
    for r in 0..MR {
        for v in 0..NV {
            I::store(tp.add((r * NV + v) * l), acc[r][v]);
        }
    }
    match act {
        Act::None => {}
        Act::Relu => {
            for i in 0..MR * NV {
                I::store(tp.add(i * l), I::max(I::zero(), I::load(tp.add(i * l))));
            }
        }
        Act::Silu => I::silu_in_place(tp, MR * NV),
    }
}
