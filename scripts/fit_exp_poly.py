"""Fits the engine's exp polynomial (crates/deploy/src/engine/simd.rs, EXP_POLY).

exp(r) ~ 1 + c1 r + ... + c6 r^6 on |r| <= ln 2 / 2 (what is left after the range reduction), minimax for the
relative error by a linear program over a grid (scipy), then the float32 coefficients checked with float32
Horner steps (each multiply-add rounded once, as an FMA): prints them and the worst error in ulps.

    python3 scripts/fit_exp_poly.py
"""
import numpy as np
from scipy.optimize import linprog

DEG = 6
h = np.log(2) / 2
r = np.linspace(-h, h, 4001)
# p(r) / e^r - 1 = (1 + sum c_k r^k) / e^r - 1, linear in c: |A c - b| <= t, minimize t.
A = np.stack([r**k / np.exp(r) for k in range(1, DEG + 1)], 1)
b = 1 - 1 / np.exp(r)
ones = np.ones((len(r), 1))
res = linprog(
    np.r_[np.zeros(DEG), 1],
    A_ub=np.vstack([np.hstack([A, -ones]), np.hstack([-A, -ones])]),
    b_ub=np.concatenate([b, -b]),
    bounds=[(None, None)] * DEG + [(0, None)],
    method="highs",
)
coef = [np.float32(c) for c in res.x[:DEG]]
print("c1..c6:", [repr(float(c)) for c in coef])

x = np.linspace(-h, h, 200001).astype(np.float32)
p = np.full_like(x, coef[-1])
for c in coef[-2::-1]:
    p = (p.astype(np.float64) * x + c).astype(np.float32)
e = (p.astype(np.float64) * x + 1.0).astype(np.float32)
err = np.abs(e.astype(np.float64) / np.exp(x.astype(np.float64)) - 1).max()
print(f"worst relative error in float32: {err:.3g} ({err / 2**-24:.2f} ulp)")
