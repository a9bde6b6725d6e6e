//! INT8 dense convolution: the input map quantized per tensor to u8 (scale and zero point from calibration;
//! a u8 map already, [`super::qmaps`]), weights symmetric per output channel in s8, products summed exactly in
//! i32, then dequantized in the epilogue (`(acc - zero * sum(w)) * x_scale * w_scale + bias`) where bias,
//! activation and the residual add run as in the float kernel; the result is stored as float32, or requantized
//! with its readers' parameters into a u8 map. The quantize-dequantize points are those of a QDQ graph with
//! Q/DQ on each quantized convolution's input and weight (NNCF's and OpenVINO's placement), so a QDQ ONNX of
//! the same numbers is a reference for it.
//!
//! Weights use 7 bits (`-63..=63`): AVX2's `vpmaddubsw` adds two u8 x s8 products into an i16 with saturation,
//! and 2 x 255 x 63 = 32130 never saturates, on every CPU the same (oneDNN and ONNX Runtime reduce the
//! weight range on AVX2 for the same reason).
//!
//! The implicit GEMM is the float one's ([`super::conv`]): per tile of `MR` output pixels, one pointer per
//! pixel and tap into the quantized map (a row of zero points in the padding), weights packed per panel of
//! 16 output channels as `[tap][cin / 4][16][4]`, so four input channels of one pixel (one i32 broadcast)
//! meet sixteen channels' four weights in two `vpmaddubsw` + `vpmaddwd` pairs.

use super::conv::store_out;
use super::simd::Isa;
use super::{par_ranges, Act, Dst, Level, Src};

/// The largest weight magnitude (7 bits, see the module's notes).
pub const W_MAX: i32 = 63;
/// Output channels per panel.
const NR: usize = 16;
/// Output pixels per tile.
const MR: usize = 8;
/// Rows of the AVX2 register block (the tile's rows in two passes: 4 x 2 vectors of accumulators).
#[cfg(target_arch = "x86_64")]
const MR_AVX2: usize = 4;
/// `qtiles`' second argument: whether to use VNNI's `vpdpbusd`.
const VNNI: bool = true;
const NO_VNNI: bool = false;

/// Per-tensor asymmetric u8 quantization of a map: `q = clamp(round_half_even(x / scale) + zero, 0, 255)`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct QuantIn {
    pub scale: f32,
    pub zero: u8,
}

impl QuantIn {
    /// The parameters that map `lo..=hi` onto 0..=255 (the range widened to hold 0, so zero is exact).
    pub fn from_range(lo: f32, hi: f32) -> QuantIn {
        let (lo, hi) = (lo.min(0.0), hi.max(0.0));
        let scale = if hi > lo { (hi - lo) / 255.0 } else { 1.0 };
        let zero = (-lo / scale).round_ties_even().clamp(0.0, 255.0) as u8;
        QuantIn { scale, zero }
    }

    /// As the kernels do it: times the inverse scale, rounded half to even.
    #[inline(always)]
    pub fn quantize(&self, x: f32) -> u8 {
        quantize_one(x, 1.0 / self.scale, self.zero)
    }
}

/// Symmetric per-output-channel quantization of `(cout, per)` weights to `-W_MAX..=W_MAX`: the values and
/// each channel's scale (1 for an all-zero channel).
pub fn quantize_weights(w: &[f32], cout: usize) -> (Vec<i8>, Vec<f32>) {
    let per = w.len() / cout.max(1);
    let mut q = vec![0i8; w.len()];
    let mut scales = vec![1.0f32; cout];
    for co in 0..cout {
        let row = &w[co * per..(co + 1) * per];
        let m = row.iter().fold(0.0f32, |m, &v| m.max(v.abs()));
        if m > 0.0 {
            scales[co] = m / W_MAX as f32;
        }
        for (d, &v) in q[co * per..(co + 1) * per].iter_mut().zip(row) {
            *d = (v / scales[co])
                .round_ties_even()
                .clamp(-W_MAX as f32, W_MAX as f32) as i8;
        }
    }
    (q, scales)
}

/// An INT8 convolution's packed weights and requantization constants.
#[derive(Debug, Clone)]
pub struct PackedQConv {
    pub k: usize,
    pub s: usize,
    pub p: usize,
    pub cin: usize,
    pub cout: usize,
    /// Input channels rounded up to 4 (the quantized map's pixel stride).
    pub cin4: usize,
    pub x: QuantIn,
    level: Level,
    /// AVX-512 VNNI's kernel (on an AVX-512 level where the CPU has it).
    vnni: bool,
    /// `[panel][tap][cin4 / 4][NR][4]`.
    w: Vec<i8>,
    /// Per padded output channel: `zero * sum(w)`, the zero point's share of the sum.
    comp: Vec<i32>,
    /// Per padded output channel: `x_scale * w_scale`.
    scale: Vec<f32>,
    bias: Vec<f32>,
    /// A pixel of zero points (the padding taps).
    zrow: Vec<u8>,
}

impl PackedQConv {
    /// `weight` is PyTorch's `(cout, cin, k, k)` float weights, quantized here ([`quantize_weights`]).
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
        x: QuantIn,
    ) -> PackedQConv {
        let (q, w_scale) = quantize_weights(weight, cout);
        let taps = k * k;
        let cin4 = cin.div_ceil(4) * 4;
        let cols = cout.div_ceil(NR) * NR;
        let mut w = vec![0i8; cols * taps * cin4];
        let mut comp = vec![0i32; cols];
        let mut scale = vec![0.0f32; cols];
        let mut b = vec![0.0f32; cols];
        for co in 0..cout {
            let (panel, j) = (co / NR, co % NR);
            let mut sum = 0i32;
            for t in 0..taps {
                for ci in 0..cin {
                    let v = q[(co * cin + ci) * taps + t];
                    sum += v as i32;
                    let at =
                        panel * taps * cin4 * NR + (t * cin4 + ci / 4 * 4) * NR + j * 4 + ci % 4;
                    w[at] = v;
                }
            }
            comp[co] = x.zero as i32 * sum;
            scale[co] = x.scale * w_scale[co];
            b[co] = bias[co];
        }
        PackedQConv {
            k,
            s,
            p,
            cin,
            cout,
            cin4,
            x,
            level,
            vnni: level == Level::Avx512 && vnni_available(),
            w,
            comp,
            scale,
            bias: b,
            zrow: vec![x.zero; cin4],
        }
    }

    /// The same convolution without the VNNI kernel (tests compare both).
    pub fn without_vnni(mut self) -> Self {
        self.vnni = false;
        self
    }

    pub fn uses_vnni(&self) -> bool {
        self.vnni
    }

    /// Bytes of quantized input for an `h x w` map.
    pub fn qbytes(&self, h: usize, w: usize) -> usize {
        h * w * self.cin4
    }

    /// Convolves `input` (quantized first into its byte buffer, `qbytes` long, when it is float) into
    /// `output` with `act` and `add` as [`super::conv::PackedConv::run`].
    pub fn run(&self, input: QInput, output: QOutput, act: Act, add: Option<Src>, parallel: bool) {
        let qsrc = match input {
            QInput::Quantized(v) => v,
            QInput::Float(src, q) => {
                quantize_map(self.level, src, self.cin, self.cin4, self.x, q, parallel)
            }
        };
        let (h, w) = output.size();
        let tiles = (h * w).div_ceil(MR);
        let job = QJob {
            pc: self,
            src: qsrc,
            dst: output,
            act,
            add,
        };
        let run = |t0: usize, t1: usize| {
            // SAFETY: the views are valid for their geometry, `q` holds the quantized map, tiles write
            // disjoint pixels, and the level (and VNNI, when used) was detected on this CPU.
            unsafe {
                if self.vnni {
                    qtiles_vnni_on(self.level, &job, t0, t1)
                } else {
                    qtiles_on(self.level, &job, t0, t1)
                }
            }
        };
        par_ranges(tiles, parallel, &run);
    }
}

#[derive(Clone, Copy)]
struct QPtr(*mut u8);
// SAFETY: threads given the pointer write disjoint rows of the buffer it points into.
unsafe impl Send for QPtr {}
// SAFETY: as above.
unsafe impl Sync for QPtr {}

/// An INT8 convolution's input: a u8 map (its pixels may hold more channels than `cin`; the weights of
/// the channels past `cin` in the last group of four are zero), or a float map and the bytes to quantize it
/// into.
pub enum QInput<'a> {
    Quantized(Src<u8>),
    Float(Src, &'a mut [u8]),
}

/// An INT8 convolution's output: float32, or requantized into a u8 map.
#[derive(Clone, Copy)]
pub enum QOutput {
    Float(Dst),
    Quantized(Dst<u8>, QuantIn),
}

impl QOutput {
    /// `(h, w)` of the output map.
    pub fn size(&self) -> (usize, usize) {
        match self {
            QOutput::Float(d) => (d.h, d.w),
            QOutput::Quantized(d, _) => (d.h, d.w),
        }
    }
}

struct QJob<'a> {
    pc: &'a PackedQConv,
    src: Src<u8>,
    dst: QOutput,
    act: Act,
    add: Option<Src>,
}

// SAFETY: the job's pointers are read (the quantized map) or written at disjoint pixels by each thread.
unsafe impl Sync for QJob<'_> {}

simd_kernel!(fn qtiles_on = qtiles::<NO_VNNI>(job: &QJob, t0: usize, t1: usize));
simd_kernel!(fn qtiles_vnni_on = qtiles::<VNNI>(job: &QJob, t0: usize, t1: usize));
simd_kernel!(fn quantize_on = quantize_rows(src: Src, c: usize, stride: usize, x: QuantIn, q: *mut u8, y0: usize, y1: usize));

/// `c` channels of the float map `src` quantized with `x` into `q`, `stride` bytes per pixel (the channels past
/// `c` at the zero point), rows split across threads when `parallel`: the u8 view of it.
pub(super) fn quantize_map(
    level: Level,
    src: Src,
    c: usize,
    stride: usize,
    x: QuantIn,
    q: &mut [u8],
    parallel: bool,
) -> Src<u8> {
    let q = &mut q[..src.h * src.w * stride];
    let qp = QPtr(q.as_mut_ptr());
    let quant = |y0: usize, y1: usize| {
        // Whole values captured, not their pointer fields (the views are Sync).
        let (qp, src) = (qp, src);
        // SAFETY: rows y0..y1 lie inside the view (`c` channels per pixel) and `q` (`stride` bytes per pixel);
        // threads quantize disjoint rows; the level was detected on this CPU.
        unsafe { quantize_on(level, src, c, stride, x, qp.0, y0, y1) }
    };
    par_ranges(src.h, parallel, &quant);
    Src {
        ptr: q.as_ptr(),
        h: src.h,
        w: src.w,
        stride,
    }
}

/// Rows `y0..y1` of `src` quantized into `q` (`cin4` bytes per pixel, the padding channels at the zero point).
///
/// # Safety
/// Compiled with `I`'s target features; the rows lie inside `src` and `q`.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn quantize_rows<I: QMac>(
    src: Src,
    c: usize,
    stride: usize,
    x: QuantIn,
    q: *mut u8,
    y0: usize,
    y1: usize,
) {
    let inv = 1.0 / x.scale;
    if src.stride == c && stride == c {
        let (a, b) = (y0 * src.w * c, y1 * src.w * c);
        return I::quantize_row(src.ptr.add(a), b - a, inv, x.zero, q.add(a));
    }
    for pix in y0 * src.w..y1 * src.w {
        let to = q.add(pix * stride);
        I::quantize_row(src.ptr.add(pix * src.stride), c, inv, x.zero, to);
        for ch in c..stride {
            *to.add(ch) = x.zero;
        }
    }
}

/// One tile's integer sums and their dequantization: `tile[r][j] = (sum - comp[j]) * scale[j] + bias[j]`
/// for `MR` pixels and `NR` channels, and the quantization of a row of floats.
pub(super) trait QMac: Isa {
    /// # Safety
    /// Compiled with the ISA's target features; each row pointer is valid for `groups * 4` bytes, `w` for
    /// `rows.len() * groups * NR * 4`, `comp`, `scale` and `bias` for `NR` values and `tile` for `MR * NR`.
    /// Every x86-64 level runs the AVX2 kernel (AVX-512F implies AVX2); the others the portable one.
    #[inline(always)]
    unsafe fn qtile(
        rows: &[[*const u8; MR]],
        groups: usize,
        w: *const i8,
        ep: Epilogue,
        tile: *mut f32,
    ) {
        #[cfg(target_arch = "x86_64")]
        qtile_avx2(rows, groups, w, ep, tile);
        #[cfg(not(target_arch = "x86_64"))]
        qtile_portable(rows, groups, w, ep, tile);
    }

    /// [`Self::qtile`] with VNNI where the ISA has it (only AVX-512 does; the others run `qtile`).
    ///
    /// # Safety
    /// As [`Self::qtile`], and [`vnni_available`] said yes.
    #[inline(always)]
    unsafe fn qtile_vnni(
        rows: &[[*const u8; MR]],
        groups: usize,
        w: *const i8,
        ep: Epilogue,
        tile: *mut f32,
    ) {
        Self::qtile(rows, groups, w, ep, tile)
    }

    /// [`Self::qtile_vnni`], the activation, and the tile's first `store.rows` rows requantized into a u8 map
    /// (what [`qtiles`] does through the tile in memory, the same numbers).
    ///
    /// # Safety
    /// As [`Self::qtile_vnni`]; `store` points at `rows` pixels of at least `cols` bytes, `stride` apart.
    #[inline(always)]
    unsafe fn qtile_vnni_u8(
        rows: &[[*const u8; MR]],
        groups: usize,
        w: *const i8,
        ep: Epilogue,
        act: Act,
        store: U8Rows,
    ) {
        let mut tile = [0.0f32; MR * NR];
        let tp = tile.as_mut_ptr();
        Self::qtile_vnni(rows, groups, w, ep, tp);
        let l = Self::LANES;
        for i in 0..MR * NR / l {
            let v = act.vector::<Self>(Self::load(tp.add(i * l)));
            Self::store(tp.add(i * l), v);
        }
        for r in 0..store.rows {
            Self::quantize_row(
                tp.add(r * NR),
                store.cols,
                store.inv,
                store.zero,
                store.first.add(r * store.stride),
            );
        }
    }

    /// `n <= LANES` bytes as floats (the other lanes zero).
    ///
    /// # Safety
    /// Compiled with the ISA's target features; `p` valid for `n` bytes.
    #[inline(always)]
    unsafe fn load_u8(p: *const u8, n: usize) -> Self::V {
        load_u8_scalar::<Self>(p, n)
    }

    /// `dst[i] = clamp(round_half_even(src[i] * inv) + zero, 0, 255)` for `n` values.
    ///
    /// # Safety
    /// Compiled with the ISA's target features; `src` valid for `n` floats and `dst` for `n` bytes.
    #[inline(always)]
    unsafe fn quantize_row(src: *const f32, n: usize, inv: f32, zero: u8, dst: *mut u8) {
        #[cfg(target_arch = "x86_64")]
        quantize_row_avx2(src, n, inv, zero, dst);
        #[cfg(not(target_arch = "x86_64"))]
        for i in 0..n {
            *dst.add(i) = quantize_one(*src.add(i), inv, zero);
        }
    }
}

/// Where a tile's rows go in a u8 map: `rows` pixels from `first`, `stride` bytes apart, `cols` channels each,
/// quantized with `inv` (1 / scale) and `zero`.
#[derive(Clone, Copy)]
pub(super) struct U8Rows {
    first: *mut u8,
    stride: usize,
    rows: usize,
    cols: usize,
    inv: f32,
    zero: u8,
}

/// A panel's requantization constants.
#[derive(Clone, Copy)]
pub(super) struct Epilogue {
    comp: *const i32,
    scale: *const f32,
    bias: *const f32,
}

/// [`QMac::load_u8`] a byte at a time (a partial vector, or an ISA without a widening load).
///
/// # Safety
/// As [`QMac::load_u8`].
#[inline(always)]
unsafe fn load_u8_scalar<I: Isa>(p: *const u8, n: usize) -> I::V {
    let mut f = [0.0f32; 16];
    for (i, v) in f.iter_mut().enumerate().take(n) {
        *v = *p.add(i) as f32;
    }
    if n == I::LANES {
        I::load(f.as_ptr())
    } else {
        I::load_n(f.as_ptr(), n)
    }
}

#[inline(always)]
fn quantize_one(x: f32, inv: f32, zero: u8) -> u8 {
    ((x * inv).round_ties_even() + zero as f32).clamp(0.0, 255.0) as u8
}

/// The portable sum (NEON and SIMD128 have no integer kernel yet: correct, not fast).
#[cfg(not(target_arch = "x86_64"))]
#[inline(always)]
unsafe fn qtile_portable(
    rows: &[[*const u8; MR]],
    groups: usize,
    w: *const i8,
    ep: Epilogue,
    tile: *mut f32,
) {
    let mut acc = [[0i32; NR]; MR];
    let mut wp = w;
    for tap in rows {
        for g in 0..groups {
            for (r, a) in acc.iter_mut().enumerate() {
                let x = tap[r].add(g * 4);
                for (j, aj) in a.iter_mut().enumerate() {
                    let mut s = 0i32;
                    for i in 0..4 {
                        s += *x.add(i) as i32 * *wp.add(j * 4 + i) as i32;
                    }
                    *aj += s;
                }
            }
            wp = wp.add(NR * 4);
        }
    }
    for (r, a) in acc.iter().enumerate() {
        for (j, &v) in a.iter().enumerate() {
            *tile.add(r * NR + j) =
                (v - *ep.comp.add(j)) as f32 * *ep.scale.add(j) + *ep.bias.add(j);
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[inline(always)]
#[allow(clippy::needless_range_loop)]
unsafe fn qtile_avx2(
    rows: &[[*const u8; MR]],
    groups: usize,
    w: *const i8,
    ep: Epilogue,
    tile: *mut f32,
) {
    for half in 0..MR / MR_AVX2 {
        qtile_avx2_rows(rows, half * MR_AVX2, groups, w, ep, tile);
    }
}

/// Rows `r0..r0 + MR_AVX2` of the tile.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
#[allow(clippy::needless_range_loop)]
unsafe fn qtile_avx2_rows(
    rows: &[[*const u8; MR]],
    r0: usize,
    groups: usize,
    w: *const i8,
    ep: Epilogue,
    tile: *mut f32,
) {
    use std::arch::x86_64::*;
    let ones = _mm256_set1_epi16(1);
    let mut a = [[_mm256_setzero_si256(); 2]; MR_AVX2];
    let mut wp = w;
    for tap in rows {
        let mut ptrs = [tap[r0]; MR_AVX2];
        ptrs.copy_from_slice(&tap[r0..r0 + MR_AVX2]);
        for _ in 0..groups {
            let w0 = _mm256_loadu_si256(wp as *const __m256i);
            let w1 = _mm256_loadu_si256(wp.add(32) as *const __m256i);
            for r in 0..MR_AVX2 {
                let x = _mm256_set1_epi32((ptrs[r] as *const i32).read_unaligned());
                let p0 = _mm256_madd_epi16(_mm256_maddubs_epi16(x, w0), ones);
                let p1 = _mm256_madd_epi16(_mm256_maddubs_epi16(x, w1), ones);
                a[r][0] = _mm256_add_epi32(a[r][0], p0);
                a[r][1] = _mm256_add_epi32(a[r][1], p1);
            }
            for p in ptrs.iter_mut() {
                *p = p.add(4);
            }
            wp = wp.add(NR * 4);
        }
    }
    for v in 0..2 {
        let comp = _mm256_loadu_si256(ep.comp.add(v * 8) as *const __m256i);
        let scale = _mm256_loadu_ps(ep.scale.add(v * 8));
        let bias = _mm256_loadu_ps(ep.bias.add(v * 8));
        for r in 0..MR_AVX2 {
            let f = _mm256_cvtepi32_ps(_mm256_sub_epi32(a[r][v], comp));
            _mm256_storeu_ps(
                tile.add((r0 + r) * NR + v * 8),
                _mm256_fmadd_ps(f, scale, bias),
            );
        }
    }
}

/// The tile with AVX-512 VNNI: one `vpdpbusd` per pixel and group of 4 input channels adds the four u8 x s8
/// products of all 16 channels into their i32 sums (exact, no i16 step).
///
/// # Safety
/// As [`QMac::qtile`]; the CPU has AVX-512 F, BW, VL and VNNI ([`vnni_available`]).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn qtile_vnni(
    rows: &[[*const u8; MR]],
    groups: usize,
    w: *const i8,
    ep: Epilogue,
    tile: *mut f32,
) {
    use std::arch::x86_64::*;
    let f = vnni_sums(rows, groups, w, ep);
    for (r, v) in f.iter().enumerate() {
        _mm512_storeu_ps(tile.add(r * NR), *v);
    }
}

/// [`qtile_vnni`] requantized into a u8 map from the registers: dequantized, activated, then
/// `clamp(round(x * inv) + zero, 0, 255)` as [`QMac::quantize_row`] computes it (the same instructions' rounding;
/// negative values to 0 before the unsigned saturating narrow).
///
/// # Safety
/// As [`qtile_vnni`]; `store` as [`QMac::qtile_vnni_u8`].
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn qtile_vnni_u8(
    rows: &[[*const u8; MR]],
    groups: usize,
    w: *const i8,
    ep: Epilogue,
    act: Act,
    store: U8Rows,
) {
    use std::arch::x86_64::*;
    let f = act.vectors::<super::simd::Avx512, MR>(vnni_sums(rows, groups, w, ep));
    let (inv, zero) = (
        _mm512_set1_ps(store.inv),
        _mm512_set1_epi32(store.zero as i32),
    );
    let mask: __mmask16 = if store.cols >= NR {
        0xFFFF
    } else {
        (1u16 << store.cols) - 1
    };
    for (r, v) in f.iter().enumerate().take(store.rows) {
        let q = _mm512_add_epi32(_mm512_cvtps_epi32(_mm512_mul_ps(*v, inv)), zero);
        let bytes = _mm512_cvtusepi32_epi8(_mm512_max_epi32(q, _mm512_setzero_si512()));
        _mm_mask_storeu_epi8(store.first.add(r * store.stride) as *mut i8, mask, bytes);
    }
}

/// The tile's sums with VNNI, dequantized with the bias added: `MR` vectors of the panel's 16 channels.
///
/// # Safety
/// As [`qtile_vnni`].
#[cfg(target_arch = "x86_64")]
#[inline(always)]
#[allow(clippy::needless_range_loop)]
unsafe fn vnni_sums(
    rows: &[[*const u8; MR]],
    groups: usize,
    w: *const i8,
    ep: Epilogue,
) -> [std::arch::x86_64::__m512; MR] {
    use std::arch::x86_64::*;
    let mut a = [_mm512_setzero_si512(); MR];
    let mut wp = w;
    for tap in rows {
        let mut ptrs = *tap;
        for _ in 0..groups {
            let wv = _mm512_loadu_si512(wp as *const __m512i);
            for r in 0..MR {
                let x = _mm512_set1_epi32((ptrs[r] as *const i32).read_unaligned());
                a[r] = _mm512_dpbusd_epi32(a[r], x, wv);
            }
            for p in ptrs.iter_mut() {
                *p = p.add(4);
            }
            wp = wp.add(NR * 4);
        }
    }
    let comp = _mm512_loadu_si512(ep.comp as *const __m512i);
    let scale = _mm512_loadu_ps(ep.scale);
    let bias = _mm512_loadu_ps(ep.bias);
    let mut f = [_mm512_setzero_ps(); MR];
    for r in 0..MR {
        f[r] = _mm512_fmadd_ps(
            _mm512_cvtepi32_ps(_mm512_sub_epi32(a[r], comp)),
            scale,
            bias,
        );
    }
    f
}

/// Whether this CPU runs [`qtile_vnni`] (unless `YOLO_ENGINE_NO_VNNI` is set, to time or test the AVX2 kernel).
pub fn vnni_available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::env::var_os("YOLO_ENGINE_NO_VNNI").is_none()
            && is_x86_feature_detected!("avx512f")
            && is_x86_feature_detected!("avx512bw")
            && is_x86_feature_detected!("avx512vl")
            && is_x86_feature_detected!("avx512vnni")
    }
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// 32 floats at a time: converted with round-half-even, packed with unsigned saturation (the clamp).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn quantize_row_avx2(src: *const f32, n: usize, inv: f32, zero: u8, dst: *mut u8) {
    use std::arch::x86_64::*;
    let (vinv, vzero) = (_mm256_set1_ps(inv), _mm256_set1_epi32(zero as i32));
    let order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    let mut i = 0;
    while i + 32 <= n {
        let q = |k: usize| {
            _mm256_add_epi32(
                _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(src.add(i + 8 * k)), vinv)),
                vzero,
            )
        };
        let ab = _mm256_packs_epi32(q(0), q(1));
        let cd = _mm256_packs_epi32(q(2), q(3));
        let bytes = _mm256_permutevar8x32_epi32(_mm256_packus_epi16(ab, cd), order);
        _mm256_storeu_si256(dst.add(i) as *mut __m256i, bytes);
        i += 32;
    }
    while i + 8 <= n {
        let v = _mm256_add_epi32(
            _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(src.add(i)), vinv)),
            vzero,
        );
        // In-lane packs: the low 4 bytes of each 128-bit lane are the lane's 4 values.
        let b = _mm256_packus_epi16(_mm256_packs_epi32(v, v), _mm256_setzero_si256());
        let lo = _mm256_castsi256_si128(b);
        let hi = _mm256_extracti128_si256::<1>(b);
        _mm_storel_epi64(dst.add(i) as *mut __m128i, _mm_unpacklo_epi32(lo, hi));
        i += 8;
    }
    while i < n {
        *dst.add(i) = quantize_one(*src.add(i), inv, zero);
        i += 1;
    }
}

#[cfg(target_arch = "x86_64")]
impl QMac for super::simd::Avx2 {
    #[inline(always)]
    unsafe fn load_u8(p: *const u8, n: usize) -> std::arch::x86_64::__m256 {
        use std::arch::x86_64::*;
        if n == 8 {
            _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_loadl_epi64(p as *const __m128i)))
        } else {
            load_u8_scalar::<Self>(p, n)
        }
    }
}

#[cfg(target_arch = "x86_64")]
impl QMac for super::simd::Avx512 {
    #[inline(always)]
    unsafe fn qtile_vnni_u8(
        rows: &[[*const u8; MR]],
        groups: usize,
        w: *const i8,
        ep: Epilogue,
        act: Act,
        store: U8Rows,
    ) {
        qtile_vnni_u8(rows, groups, w, ep, act, store)
    }

    #[inline(always)]
    unsafe fn load_u8(p: *const u8, n: usize) -> std::arch::x86_64::__m512 {
        use std::arch::x86_64::*;
        if n == 16 {
            _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_loadu_si128(p as *const __m128i)))
        } else {
            load_u8_scalar::<Self>(p, n)
        }
    }

    #[inline(always)]
    unsafe fn qtile_vnni(
        rows: &[[*const u8; MR]],
        groups: usize,
        w: *const i8,
        ep: Epilogue,
        tile: *mut f32,
    ) {
        qtile_vnni(rows, groups, w, ep, tile)
    }
}

#[cfg(target_arch = "aarch64")]
impl QMac for super::simd::Neon {}

#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
impl QMac for super::simd::Simd128 {}

/// Output tiles `t0..t1`.
///
/// # Safety
/// Compiled with `I`'s target features; the job's views are valid for their geometry (`dst` and `add` with
/// `cout` channels, the quantized map with `cin4` bytes per pixel), and no other thread writes these tiles.
#[inline(always)]
#[allow(clippy::needless_range_loop)]
unsafe fn qtiles<I: QMac, const USE_VNNI: bool>(job: &QJob, t0: usize, t1: usize) {
    let (pc, src) = (job.pc, job.src);
    let (oh, ow) = job.dst.size();
    let (k, s, p) = (pc.k, pc.s, pc.p);
    let taps = k * k;
    let groups = pc.cin4 / 4;
    let m = oh * ow;
    let zero = pc.zrow.as_ptr();
    let mut rows: Vec<[*const u8; MR]> = vec![[zero; MR]; taps];
    let l = I::LANES;
    let mut tile = [0.0f32; MR * NR];
    for t in t0..t1 {
        let m0 = t * MR;
        let valid = (m - m0).min(MR);
        for r in 0..MR {
            let mi = m0 + r.min(valid - 1);
            let (oy, ox) = (mi / ow, mi % ow);
            for ky in 0..k {
                let iy = (oy * s + ky) as isize - p as isize;
                let row_in = iy >= 0 && (iy as usize) < src.h;
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
        for (panel, col) in (0..pc.cout).step_by(NR).enumerate() {
            let w = pc.w.as_ptr().add(panel * taps * pc.cin4 * NR);
            let ep = Epilogue {
                comp: pc.comp.as_ptr().add(col),
                scale: pc.scale.as_ptr().add(col),
                bias: pc.bias.as_ptr().add(col),
            };
            let tp = tile.as_mut_ptr();
            let ncols = (pc.cout - col).min(NR);
            if let (true, QOutput::Quantized(d, q), None) = (USE_VNNI, job.dst, job.add) {
                // Straight from the accumulators to the u8 map.
                let store = U8Rows {
                    first: d.ptr.add(m0 * d.stride + col),
                    stride: d.stride,
                    rows: valid,
                    cols: ncols,
                    inv: 1.0 / q.scale,
                    zero: q.zero,
                };
                I::qtile_vnni_u8(&rows, groups, w, ep, job.act, store);
                continue;
            }
            if USE_VNNI {
                I::qtile_vnni(&rows, groups, w, ep, tp);
            } else {
                I::qtile(&rows, groups, w, ep, tp);
            }
            match job.act {
                Act::None => {}
                Act::Relu => {
                    for i in 0..MR * NR / l {
                        I::store(tp.add(i * l), I::max(I::zero(), I::load(tp.add(i * l))));
                    }
                }
                Act::Silu => I::silu_in_place(tp, MR * NR / l),
            }
            for r in 0..valid {
                store_out::<I>(job.dst, m0 + r, col, tp.add(r * NR), job.add, ncols);
            }
        }
    }
}
