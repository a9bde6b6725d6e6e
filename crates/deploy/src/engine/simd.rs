//! The vector instruction sets the engine's kernels are compiled for (AVX-512 and AVX2 + FMA on x86-64, NEON
//! on aarch64, SIMD128 on WebAssembly built with `-C target-feature=+simd128`), behind one small trait so
//! each kernel is written once. Every kernel entry point is a `#[target_feature]` function that calls the
//! generic, `#[inline(always)]` body with its ISA, so the body is compiled with that feature set
//! (`simd_kernel!` writes them).

#[cfg(target_arch = "aarch64")]
use std::arch::aarch64::*;
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
use std::arch::wasm32::*;
#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

/// Which kernels this CPU runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Avx512,
    Avx2,
    /// aarch64's Advanced SIMD (every aarch64 CPU has it).
    Neon,
    /// WebAssembly's 128-bit SIMD, chosen when the module is built (a runtime without it rejects the module).
    Simd128,
}

impl Level {
    /// The CPUs with a level, as a message names them.
    pub const REQUIREMENT: &'static str =
        "an x86-64 CPU with AVX2 and FMA or AVX-512, an aarch64 CPU (NEON), or WebAssembly with SIMD128";

    /// The best level this CPU supports; `None` where none is available (the burn path is used then).
    /// With `YOLO_ENGINE_AVX2` set, AVX2 even where AVX-512 is there (to time or test that path).
    pub fn detect() -> Option<Level> {
        let avx2_only = std::env::var_os("YOLO_ENGINE_AVX2").is_some();
        Self::available()
            .into_iter()
            .find(|l| !(avx2_only && *l == Level::Avx512))
    }

    /// Every level this CPU can run, best first (tests run each).
    pub fn available() -> Vec<Level> {
        let mut v = Vec::new();
        #[cfg(target_arch = "x86_64")]
        {
            if is_x86_feature_detected!("avx512f") {
                v.push(Level::Avx512);
            }
            if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
                v.push(Level::Avx2);
            }
        }
        #[cfg(target_arch = "aarch64")]
        if std::arch::is_aarch64_feature_detected!("neon") {
            v.push(Level::Neon);
        }
        if cfg!(all(target_arch = "wasm32", target_feature = "simd128")) {
            v.push(Level::Simd128);
        }
        v
    }

    /// Lanes per vector.
    pub fn lanes(self) -> usize {
        match self {
            Level::Avx512 => 16,
            Level::Avx2 => 8,
            Level::Neon | Level::Simd128 => 4,
        }
    }

    /// Output pixels per GEMM tile (rows of the register block).
    pub fn mr(self) -> usize {
        match self {
            Level::Avx512 => MR_512,
            Level::Avx2 => MR_256,
            Level::Neon => MR_NEON,
            Level::Simd128 => MR_WASM,
        }
    }

    /// The widest GEMM panel in vectors: what the register file holds next to `mr` rows of accumulators
    /// (AVX-512 and NEON have 32 registers, AVX2 16; WebAssembly's engines map SIMD128 onto the host's, so
    /// the x86 16 are what it can count on).
    pub fn max_panel(self) -> usize {
        match self {
            Level::Avx512 | Level::Neon => 3,
            Level::Avx2 | Level::Simd128 => 2,
        }
    }
}

pub const MR_512: usize = 8;
pub const MR_256: usize = 6;
pub const MR_NEON: usize = 8;
pub const MR_WASM: usize = 6;

/// A vector ISA: the operations the kernels use.
///
/// # Safety
/// Every method is unsafe for the same two reasons, stated once here: it may only be called from a function
/// compiled with the implementation's target features (`avx512f`, `avx2` + `fma`, `neon` or `simd128`), which the engine
/// guarantees by calling kernels only through [`Level`]-selected `#[target_feature]` entries; and `load` /
/// `store` dereference `p` for `LANES` floats, which the caller keeps in bounds.
pub trait Isa: Copy {
    type V: Copy;
    const LANES: usize;
    unsafe fn zero() -> Self::V;
    unsafe fn splat(x: f32) -> Self::V;
    unsafe fn load(p: *const f32) -> Self::V;
    unsafe fn store(p: *mut f32, v: Self::V);
    /// The first `n < LANES` floats at `p` (the other lanes zero); reads only those `n`.
    unsafe fn load_n(p: *const f32, n: usize) -> Self::V;
    /// Stores the first `n < LANES` lanes of `v` at `p`; writes only those `n`.
    unsafe fn store_n(p: *mut f32, v: Self::V, n: usize);
    /// `a * b + c`
    unsafe fn fma(a: Self::V, b: Self::V, c: Self::V) -> Self::V;
    unsafe fn add(a: Self::V, b: Self::V) -> Self::V;
    unsafe fn sub(a: Self::V, b: Self::V) -> Self::V;
    unsafe fn mul(a: Self::V, b: Self::V) -> Self::V;
    /// x86 semantics: `b` where either is NaN (put the value that may be NaN second to keep it); NEON and
    /// SIMD128 return NaN where either is.
    unsafe fn max(a: Self::V, b: Self::V) -> Self::V;
    /// As [`Self::max`].
    unsafe fn min(a: Self::V, b: Self::V) -> Self::V;
    /// The larger of `cur` and `new`, NaN where either is NaN (PyTorch's max pooling).
    unsafe fn max_keep_nan(cur: Self::V, new: Self::V) -> Self::V;

    /// Transposes a `LANES x LANES` square: row `r` (the `LANES` floats at `rows + r * stride`) becomes
    /// column `r` of `out` (`LANES` rows of `LANES` floats). One value at a time unless an ISA shuffles.
    ///
    /// # Safety
    /// As the trait; `rows` is valid for `LANES` rows of `LANES` floats `stride` apart, `out` for
    /// `LANES * LANES` floats.
    #[inline(always)]
    unsafe fn transpose(rows: *const f32, stride: usize, out: *mut f32) {
        let l = Self::LANES;
        for r in 0..l {
            for c in 0..l {
                *out.add(c * l + r) = *rows.add(r * stride + c);
            }
        }
    }
    /// `1 / a`: the hardware estimate refined by one Newton step (a division costs several times more).
    unsafe fn recip(a: Self::V) -> Self::V;
    /// `2^n` for `t = n + EXP_MAGIC` with integral `n + 127` in [1, 254]: `t`'s low mantissa bits moved
    /// into the exponent field.
    unsafe fn pow2_from_magic(t: Self::V) -> Self::V;

    /// `exp(x)`: [`Self::exp_n`] of one vector.
    #[inline(always)]
    unsafe fn exp(x: Self::V) -> Self::V {
        Self::exp_n([x])[0]
    }

    /// `exp` of `N` vectors (about 1 ulp on the clamped range): Cephes' range reduction, then [`EXP_POLY`].
    /// Each step is applied to all `N` before the next, so the `N` dependency chains (about 14 operations
    /// deep) sit side by side and the core overlaps them.
    #[inline(always)]
    unsafe fn exp_n<const N: usize>(x: [Self::V; N]) -> [Self::V; N] {
        Self::exp_signed_n::<N, false>(x)
    }

    /// `exp(x)`, or `exp(-x)` when `NEG` (the negation folded into the constants, one operation less
    /// than negating first).
    #[inline(always)]
    #[allow(clippy::excessive_precision, clippy::needless_range_loop)]
    unsafe fn exp_signed_n<const N: usize, const NEG: bool>(x: [Self::V; N]) -> [Self::V; N] {
        // With `NEG` the reduction runs on x' = -x: n = round(x' / ln 2) and r = x' - n ln 2 as -(x + n ln 2),
        // and the polynomial is evaluated at -r (its odd coefficients negated).
        let sign = if NEG { -1.0f32 } else { 1.0 };
        let (lo, hi) = if NEG { (-88.3, 87.3) } else { (-87.3, 88.3) };
        let mut r = [Self::zero(); N];
        let mut n = [Self::zero(); N];
        let mut t = [Self::zero(); N];
        for i in 0..N {
            // Constant first: x86 min/max return their second operand when one is NaN, so NaN propagates
            // (as in PyTorch) instead of being clamped to a number.
            let xi = Self::min(Self::splat(hi), Self::max(Self::splat(lo), x[i]));
            // n = round(x / ln 2) by adding 1.5 * 2^23 (whose ulp is 1), which also leaves n + 127 in the
            // low bits for 2^n: two operations fewer than round, convert, add and shift.
            t[i] = Self::fma(
                xi,
                Self::splat(sign * std::f32::consts::LOG2_E),
                Self::splat(EXP_MAGIC),
            );
            n[i] = Self::sub(t[i], Self::splat(EXP_MAGIC));
            // r (or -r with `NEG`) = x - n ln 2 in two steps (Cody and Waite).
            r[i] = Self::fma(n[i], Self::splat(-sign * 0.693_359_375), xi);
        }
        for i in 0..N {
            r[i] = Self::fma(n[i], Self::splat(sign * 2.121_944_4e-4), r[i]);
        }
        // e^r on |r| <= ln 2 / 2 by a degree-6 polynomial (1 + r + ... + c6 r^6, minimax for the relative
        // error, fitted in float64 and checked with float32 arithmetic: about 1 ulp, as Cephes' degree 7, one
        // multiply-add fewer). With `NEG`, r^k's coefficient changes sign for odd k.
        let mut p = [Self::splat(EXP_POLY[5]); N];
        for k in (0..5).rev() {
            let c = if NEG && k % 2 == 0 {
                -EXP_POLY[k]
            } else {
                EXP_POLY[k]
            };
            for i in 0..N {
                p[i] = Self::fma(p[i], r[i], Self::splat(c));
            }
        }
        let mut out = [Self::zero(); N];
        for i in 0..N {
            let e = Self::fma(p[i], r[i], Self::splat(1.0));
            out[i] = Self::scale_pow2(e, t[i], n[i]);
        }
        out
    }

    /// `e * 2^n`, where `t = n + EXP_MAGIC` ([`Self::pow2_from_magic`]).
    #[inline(always)]
    unsafe fn scale_pow2(e: Self::V, t: Self::V, _n: Self::V) -> Self::V {
        Self::mul(e, Self::pow2_from_magic(t))
    }

    /// `x * sigmoid(x)` of `N` vectors at once (see [`Isa::exp_n`]).
    #[inline(always)]
    #[allow(clippy::needless_range_loop)]
    unsafe fn silu_n<const N: usize>(x: [Self::V; N]) -> [Self::V; N] {
        let e = Self::exp_signed_n::<N, true>(x);
        let mut out = [Self::zero(); N];
        for i in 0..N {
            out[i] = Self::mul(x[i], Self::recip(Self::add(Self::splat(1.0), e[i])));
        }
        out
    }

    /// SiLU in place on `n` vectors at `p`, four at a time.
    ///
    /// # Safety
    /// Compiled with this ISA's target features; `p` is valid for `n * LANES` floats.
    #[inline(always)]
    unsafe fn silu_in_place(p: *mut f32, n: usize) {
        let l = Self::LANES;
        let mut i = 0;
        while i + 4 <= n {
            let mut x = [Self::zero(); 4];
            for (j, v) in x.iter_mut().enumerate() {
                *v = Self::load(p.add((i + j) * l));
            }
            let y = Self::silu_n(x);
            for (j, v) in y.into_iter().enumerate() {
                Self::store(p.add((i + j) * l), v);
            }
            i += 4;
        }
        while i < n {
            Self::store(p.add(i * l), Self::silu(Self::load(p.add(i * l))));
            i += 1;
        }
    }

    /// `x * sigmoid(x)`
    #[inline(always)]
    unsafe fn silu(x: Self::V) -> Self::V {
        Self::silu_n([x])[0]
    }

    #[inline(always)]
    unsafe fn sigmoid(x: Self::V) -> Self::V {
        let e = Self::exp_signed_n::<1, true>([x])[0];
        Self::recip(Self::add(Self::splat(1.0), e))
    }
}

/// `c1..c6` of `exp(r) ~ 1 + c1 r + ... + c6 r^6` on `|r| <= ln 2 / 2` (`scripts/fit_exp_poly.py`).
#[allow(clippy::excessive_precision)]
pub const EXP_POLY: [f32; 6] = [
    1.0,
    0.499_999_94,
    0.166_664_76,
    0.041_667_49,
    0.008_372_927,
    0.001_388_582_4,
];

/// `1.5 * 2^23 + 127`: floats near it are integers, and its mantissa's low bits are the exponent bias.
pub const EXP_MAGIC: f32 = 12_583_039.0;

#[cfg(target_arch = "x86_64")]
#[derive(Clone, Copy)]
pub struct Avx512;

#[cfg(target_arch = "x86_64")]
impl Isa for Avx512 {
    type V = __m512;
    const LANES: usize = 16;
    #[inline(always)]
    unsafe fn zero() -> __m512 {
        _mm512_setzero_ps()
    }
    #[inline(always)]
    unsafe fn splat(x: f32) -> __m512 {
        _mm512_set1_ps(x)
    }
    #[inline(always)]
    unsafe fn load(p: *const f32) -> __m512 {
        _mm512_loadu_ps(p)
    }
    #[inline(always)]
    unsafe fn store(p: *mut f32, v: __m512) {
        _mm512_storeu_ps(p, v)
    }
    #[inline(always)]
    unsafe fn load_n(p: *const f32, n: usize) -> __m512 {
        _mm512_maskz_loadu_ps(((1u32 << n) - 1) as u16, p)
    }
    #[inline(always)]
    unsafe fn store_n(p: *mut f32, v: __m512, n: usize) {
        _mm512_mask_storeu_ps(p, ((1u32 << n) - 1) as u16, v)
    }
    #[inline(always)]
    unsafe fn fma(a: __m512, b: __m512, c: __m512) -> __m512 {
        _mm512_fmadd_ps(a, b, c)
    }
    #[inline(always)]
    unsafe fn add(a: __m512, b: __m512) -> __m512 {
        _mm512_add_ps(a, b)
    }
    #[inline(always)]
    unsafe fn sub(a: __m512, b: __m512) -> __m512 {
        _mm512_sub_ps(a, b)
    }
    #[inline(always)]
    unsafe fn mul(a: __m512, b: __m512) -> __m512 {
        _mm512_mul_ps(a, b)
    }
    #[inline(always)]
    unsafe fn max(a: __m512, b: __m512) -> __m512 {
        _mm512_max_ps(a, b)
    }
    /// Three rounds of shuffles: 32-bit pairs, 64-bit pairs, then 128-bit lanes (twice).
    #[inline(always)]
    unsafe fn transpose(rows: *const f32, stride: usize, out: *mut f32) {
        // No closures: they are not compiled with the caller's target features, so intrinsics in them
        // would not inline.
        let mut r = [_mm512_setzero_ps(); 16];
        for (i, v) in r.iter_mut().enumerate() {
            *v = _mm512_loadu_ps(rows.add(i * stride));
        }
        let mut t = [_mm512_setzero_ps(); 16];
        for i in 0..8 {
            t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
            t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
        }
        // u[4g + j]: lane k holds column 4k + j of rows 4g..4g + 4.
        let mut u = [_mm512_setzero_ps(); 16];
        for g in 0..4 {
            let t0 = _mm512_castps_pd(t[4 * g]);
            let t1 = _mm512_castps_pd(t[4 * g + 1]);
            let t2 = _mm512_castps_pd(t[4 * g + 2]);
            let t3 = _mm512_castps_pd(t[4 * g + 3]);
            u[4 * g] = _mm512_castpd_ps(_mm512_unpacklo_pd(t0, t2));
            u[4 * g + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(t0, t2));
            u[4 * g + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(t1, t3));
            u[4 * g + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(t1, t3));
        }
        for j in 0..4 {
            let v_even = _mm512_shuffle_f32x4::<0x88>(u[j], u[4 + j]);
            let v_odd = _mm512_shuffle_f32x4::<0xDD>(u[j], u[4 + j]);
            let w_even = _mm512_shuffle_f32x4::<0x88>(u[8 + j], u[12 + j]);
            let w_odd = _mm512_shuffle_f32x4::<0xDD>(u[8 + j], u[12 + j]);
            // Output row 4k + j.
            let o = out.add(j * 16);
            _mm512_storeu_ps(o, _mm512_shuffle_f32x4::<0x88>(v_even, w_even));
            _mm512_storeu_ps(o.add(64), _mm512_shuffle_f32x4::<0x88>(v_odd, w_odd));
            _mm512_storeu_ps(o.add(128), _mm512_shuffle_f32x4::<0xDD>(v_even, w_even));
            _mm512_storeu_ps(o.add(192), _mm512_shuffle_f32x4::<0xDD>(v_odd, w_odd));
        }
    }
    #[inline(always)]
    unsafe fn max_keep_nan(cur: __m512, new: __m512) -> __m512 {
        // `cur` where either is NaN, then `new` where it is the NaN.
        let m = _mm512_max_ps(new, cur);
        _mm512_mask_mov_ps(m, _mm512_cmp_ps_mask::<_CMP_UNORD_Q>(new, new), new)
    }
    #[inline(always)]
    unsafe fn min(a: __m512, b: __m512) -> __m512 {
        _mm512_min_ps(a, b)
    }
    #[inline(always)]
    unsafe fn pow2_from_magic(t: __m512) -> __m512 {
        _mm512_castsi512_ps(_mm512_slli_epi32::<23>(_mm512_castps_si512(t)))
    }
    #[inline(always)]
    unsafe fn scale_pow2(e: __m512, _t: __m512, n: __m512) -> __m512 {
        _mm512_scalef_ps(e, n)
    }
    #[inline(always)]
    unsafe fn recip(a: __m512) -> __m512 {
        let r = _mm512_rcp14_ps(a);
        // r * (2 - a * r)
        _mm512_mul_ps(r, _mm512_fnmadd_ps(a, r, _mm512_set1_ps(2.0)))
    }
}

#[cfg(target_arch = "x86_64")]
#[derive(Clone, Copy)]
pub struct Avx2;

#[cfg(target_arch = "x86_64")]
impl Isa for Avx2 {
    type V = __m256;
    const LANES: usize = 8;
    #[inline(always)]
    unsafe fn zero() -> __m256 {
        _mm256_setzero_ps()
    }
    #[inline(always)]
    unsafe fn splat(x: f32) -> __m256 {
        _mm256_set1_ps(x)
    }
    #[inline(always)]
    unsafe fn load(p: *const f32) -> __m256 {
        _mm256_loadu_ps(p)
    }
    #[inline(always)]
    unsafe fn store(p: *mut f32, v: __m256) {
        _mm256_storeu_ps(p, v)
    }
    #[inline(always)]
    unsafe fn load_n(p: *const f32, n: usize) -> __m256 {
        _mm256_maskload_ps(p, avx2_mask(n))
    }
    #[inline(always)]
    unsafe fn store_n(p: *mut f32, v: __m256, n: usize) {
        _mm256_maskstore_ps(p, avx2_mask(n), v)
    }
    #[inline(always)]
    unsafe fn fma(a: __m256, b: __m256, c: __m256) -> __m256 {
        _mm256_fmadd_ps(a, b, c)
    }
    #[inline(always)]
    unsafe fn add(a: __m256, b: __m256) -> __m256 {
        _mm256_add_ps(a, b)
    }
    #[inline(always)]
    unsafe fn sub(a: __m256, b: __m256) -> __m256 {
        _mm256_sub_ps(a, b)
    }
    #[inline(always)]
    unsafe fn mul(a: __m256, b: __m256) -> __m256 {
        _mm256_mul_ps(a, b)
    }
    #[inline(always)]
    unsafe fn max(a: __m256, b: __m256) -> __m256 {
        _mm256_max_ps(a, b)
    }
    #[inline(always)]
    unsafe fn max_keep_nan(cur: __m256, new: __m256) -> __m256 {
        // `cur` where either is NaN, then `new` where it is the NaN.
        let m = _mm256_max_ps(new, cur);
        _mm256_blendv_ps(m, new, _mm256_cmp_ps::<_CMP_UNORD_Q>(new, new))
    }
    #[inline(always)]
    unsafe fn min(a: __m256, b: __m256) -> __m256 {
        _mm256_min_ps(a, b)
    }
    #[inline(always)]
    unsafe fn pow2_from_magic(t: __m256) -> __m256 {
        _mm256_castsi256_ps(_mm256_slli_epi32::<23>(_mm256_castps_si256(t)))
    }
    #[inline(always)]
    unsafe fn recip(a: __m256) -> __m256 {
        let r = _mm256_rcp_ps(a);
        _mm256_mul_ps(r, _mm256_fnmadd_ps(a, r, _mm256_set1_ps(2.0)))
    }
}

/// The AVX2 lane mask of the first `n` lanes (a lane is on when its sign bit is set).
///
/// # Safety
/// Called from code compiled with AVX2.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn avx2_mask(n: usize) -> __m256i {
    _mm256_cmpgt_epi32(
        _mm256_set1_epi32(n as i32),
        _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7),
    )
}

#[cfg(target_arch = "aarch64")]
#[derive(Clone, Copy)]
pub struct Neon;

#[cfg(target_arch = "aarch64")]
impl Isa for Neon {
    type V = float32x4_t;
    const LANES: usize = 4;
    #[inline(always)]
    unsafe fn zero() -> float32x4_t {
        vdupq_n_f32(0.0)
    }
    #[inline(always)]
    unsafe fn splat(x: f32) -> float32x4_t {
        vdupq_n_f32(x)
    }
    #[inline(always)]
    unsafe fn load(p: *const f32) -> float32x4_t {
        vld1q_f32(p)
    }
    #[inline(always)]
    unsafe fn store(p: *mut f32, v: float32x4_t) {
        vst1q_f32(p, v)
    }
    #[inline(always)]
    unsafe fn load_n(p: *const f32, n: usize) -> float32x4_t {
        // No masked loads: the first n lanes through a stack copy.
        let mut a = [0.0f32; 4];
        std::ptr::copy_nonoverlapping(p, a.as_mut_ptr(), n);
        vld1q_f32(a.as_ptr())
    }
    #[inline(always)]
    unsafe fn store_n(p: *mut f32, v: float32x4_t, n: usize) {
        let mut a = [0.0f32; 4];
        vst1q_f32(a.as_mut_ptr(), v);
        std::ptr::copy_nonoverlapping(a.as_ptr(), p, n);
    }
    #[inline(always)]
    unsafe fn fma(a: float32x4_t, b: float32x4_t, c: float32x4_t) -> float32x4_t {
        vfmaq_f32(c, a, b)
    }
    #[inline(always)]
    unsafe fn add(a: float32x4_t, b: float32x4_t) -> float32x4_t {
        vaddq_f32(a, b)
    }
    #[inline(always)]
    unsafe fn sub(a: float32x4_t, b: float32x4_t) -> float32x4_t {
        vsubq_f32(a, b)
    }
    #[inline(always)]
    unsafe fn mul(a: float32x4_t, b: float32x4_t) -> float32x4_t {
        vmulq_f32(a, b)
    }
    #[inline(always)]
    unsafe fn max(a: float32x4_t, b: float32x4_t) -> float32x4_t {
        vmaxq_f32(a, b)
    }
    #[inline(always)]
    unsafe fn max_keep_nan(cur: float32x4_t, new: float32x4_t) -> float32x4_t {
        vmaxq_f32(cur, new)
    }
    #[inline(always)]
    unsafe fn min(a: float32x4_t, b: float32x4_t) -> float32x4_t {
        vminq_f32(a, b)
    }
    #[inline(always)]
    unsafe fn pow2_from_magic(t: float32x4_t) -> float32x4_t {
        vreinterpretq_f32_s32(vshlq_n_s32::<23>(vreinterpretq_s32_f32(t)))
    }
    #[inline(always)]
    unsafe fn recip(a: float32x4_t) -> float32x4_t {
        // The estimate has 8 bits; each step r * (2 - a * r) doubles them.
        let r = vrecpeq_f32(a);
        let r = vmulq_f32(r, vrecpsq_f32(a, r));
        vmulq_f32(r, vrecpsq_f32(a, r))
    }
}

#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
#[derive(Clone, Copy)]
pub struct Simd128;

#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
impl Isa for Simd128 {
    type V = v128;
    const LANES: usize = 4;
    #[inline(always)]
    unsafe fn zero() -> v128 {
        f32x4_splat(0.0)
    }
    #[inline(always)]
    unsafe fn splat(x: f32) -> v128 {
        f32x4_splat(x)
    }
    #[inline(always)]
    unsafe fn load(p: *const f32) -> v128 {
        v128_load(p as *const v128)
    }
    #[inline(always)]
    unsafe fn store(p: *mut f32, v: v128) {
        v128_store(p as *mut v128, v)
    }
    #[inline(always)]
    unsafe fn load_n(p: *const f32, n: usize) -> v128 {
        let mut a = [0.0f32; 4];
        std::ptr::copy_nonoverlapping(p, a.as_mut_ptr(), n);
        v128_load(a.as_ptr() as *const v128)
    }
    #[inline(always)]
    unsafe fn store_n(p: *mut f32, v: v128, n: usize) {
        let mut a = [0.0f32; 4];
        v128_store(a.as_mut_ptr() as *mut v128, v);
        std::ptr::copy_nonoverlapping(a.as_ptr(), p, n);
    }
    #[inline(always)]
    unsafe fn fma(a: v128, b: v128, c: v128) -> v128 {
        // SIMD128 has no fused multiply-add (relaxed-simd's is not bit-stable across engines).
        f32x4_add(f32x4_mul(a, b), c)
    }
    #[inline(always)]
    unsafe fn add(a: v128, b: v128) -> v128 {
        f32x4_add(a, b)
    }
    #[inline(always)]
    unsafe fn sub(a: v128, b: v128) -> v128 {
        f32x4_sub(a, b)
    }
    #[inline(always)]
    unsafe fn mul(a: v128, b: v128) -> v128 {
        f32x4_mul(a, b)
    }
    #[inline(always)]
    unsafe fn max(a: v128, b: v128) -> v128 {
        f32x4_max(a, b)
    }
    #[inline(always)]
    unsafe fn max_keep_nan(cur: v128, new: v128) -> v128 {
        f32x4_max(cur, new)
    }
    #[inline(always)]
    unsafe fn min(a: v128, b: v128) -> v128 {
        f32x4_min(a, b)
    }
    #[inline(always)]
    unsafe fn pow2_from_magic(t: v128) -> v128 {
        i32x4_shl(t, 23)
    }
    #[inline(always)]
    unsafe fn recip(a: v128) -> v128 {
        f32x4_div(f32x4_splat(1.0), a)
    }
}
