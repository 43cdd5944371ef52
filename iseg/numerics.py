"""The integer numerics of I-Segmenter: the executable form of ``spec/numerics.md``.

Every other implementation (PyTorch integer mode, HLS C++, Verilog) is tested against these
functions with ``np.array_equal``. All run-time functions take and return integer arrays and
never touch a float; floats appear only in the offline helpers (``dyadic``, ``*_consts``) that
turn real scales into integer constants at export time.

Integer widths: every intermediate is held in int64 and bounded as the spec says; the bounds
are asserted where a caller could violate them.

Speed (Seg-T at 512² is ~46 M attention scores per image) comes from three rewrites that cannot
change a single bit, each stated where it is used and tested against a plain transcription of the
spec (``tests/test_numerics.py``, random and extreme inputs):

- **float BLAS for integer matmuls** (:func:`exact_matmul`): every partial sum, in whatever order
  the BLAS adds, is an integer of magnitude at most ``K * max|a| * max|b|``; up to 2^24 (float32)
  or 2^53 (float64) every such integer is representable, so every product and every addition is
  exact. Above the bound, int64.
- **tables for functions of a narrow input**: λ-ShiftGELU of an i8 input (:func:`_tabulate`) and,
  per row, Shiftmax's ``e`` and ``p`` as functions of ``max - x`` (256 values for i8 scores) are
  evaluated once per possible value, by the same code, and gathered: the same function of the
  same integers.
- **in-place int64 evaluation** (:func:`requant`, the end of :func:`shiftmax`): the spec's
  expression in the same order, written into one buffer instead of one temporary per operator.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = [
    "INT32_MAX",
    "dyadic",
    "clamp_bits",
    "requant",
    "exact_matmul",
    "linear",
    "shexp",
    "SHIFTMAX_VARIANTS",
    "shiftmax_x0",
    "shiftmax_p_sum_bound",
    "shiftmax_with_shift",
    "attention_pv",
    "P_GRID_BITS",
    "shiftmax",
    "GeluConsts",
    "gelu_consts",
    "gelu",
    "gelu_rq8_table",
    "isqrt",
    "round_half_even_div",
    "MEAN_K_MAX",
    "mean_reciprocal",
    "floor_by_reciprocal",
    "mean_by_reciprocal",
    "ln_normalize",
    "layernorm",
    "int_add",
    "argmax_labels",
    "upsample_nearest",
]

INT32_MAX = (1 << 31) - 1
_F32_EXACT = 1 << 24  # float32 represents every integer of magnitude <= 2^24
_F64_EXACT = 1 << 53  # float64: <= 2^53
_TABLE_MIN_RATIO = 4  # tabulate an elementwise function when the input has >= 4x more elements than values


def _abs_bound(a: np.ndarray) -> int:
    """An upper bound of ``|a|`` as a Python int: the dtype's for integers of at most 16 bits (no
    pass over the data), else ``max |a|`` (0 for an empty array; no temporary array)."""
    if a.dtype.kind in "iu" and a.dtype.itemsize <= 2:
        info = np.iinfo(a.dtype)
        return max(-int(info.min), int(info.max))
    return max(-int(a.min()), int(a.max())) if a.size else 0


def _tabulate(fn, x: np.ndarray, lo: int, hi: int) -> np.ndarray:
    """``fn(x)`` for an elementwise integer function ``fn`` and an integer array ``lo <= x <= hi``.

    When ``x`` has many more elements than the ``hi - lo + 1`` values it can take, ``fn`` runs once
    on each possible value (the same code on the same integers) and the results are gathered;
    otherwise ``fn`` runs on ``x`` itself. Either way the result is ``fn`` of each element.
    """
    n_values = hi - lo + 1
    if x.size < _TABLE_MIN_RATIO * n_values:
        return fn(np.asarray(x, dtype=np.int64))
    table = fn(np.arange(lo, hi + 1, dtype=np.int64))
    idx = np.asarray(x, dtype=np.intp) if lo == 0 else np.subtract(x, lo, dtype=np.intp)
    return np.take(table, idx, mode="clip")  # every index is in range: "clip" only skips the bounds check


# --------------------------------------------------------------------------------------------
# 2. Dyadic requantization
# --------------------------------------------------------------------------------------------
def dyadic(ratio: float) -> tuple[int, int]:
    """Offline: a real ratio -> ``(m, e)`` with ``2^30 <= |m| < 2^31``, ``e`` in [1, 62].

    ``ratio ~= m * 2^-e``. The mantissa is rounded half-up; a mantissa that rounds to 2^31 is
    renormalised. Ratios too small for ``e <= 62`` raise (they would requantize everything to
    zero); zero maps to ``(0, 1)``.
    """
    if not math.isfinite(ratio):
        raise ValueError(f"requant ratio {ratio!r} is not finite")
    if ratio == 0.0:
        return 0, 1
    mant, exp = math.frexp(abs(ratio))  # abs(ratio) = mant * 2^exp, mant in [0.5, 1)
    m = math.floor(mant * (1 << 31) + 0.5)
    e = 31 - exp
    if m == 1 << 31:
        m >>= 1
        e -= 1
    if not 1 <= e <= 62:
        raise ValueError(f"requant ratio {ratio!r} needs shift {e}, outside [1, 62]")
    return (-m if ratio < 0 else m), e


def clamp_bits(x: np.ndarray, bits: int) -> np.ndarray:
    """Clamp to the signed ``bits``-bit range."""
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    return np.clip(x, lo, hi)


def requant(z, m, e, o=0, bits: int = 8) -> np.ndarray:
    """``RQ_b(z, m, e, o) = clamp_b((z*m + o + 2^(e-1)) >> e)`` in int64.

    ``m``, ``e``, ``o`` are scalars or per-channel vectors broadcast along the last axis of
    ``z``. Requires ``|z| < 2^31`` so the int64 sum cannot overflow.
    """
    z = np.asarray(z)
    if z.dtype.kind not in "iu":
        z = z.astype(np.int64)
    m = np.asarray(m, dtype=np.int64)
    e = np.asarray(e, dtype=np.int64)
    o = np.asarray(o, dtype=np.int64)
    if z.dtype.itemsize > 2 and _abs_bound(z) >= 1 << 31:
        raise OverflowError("requant input exceeds 31 bits")
    # the spec's expression, evaluated in place in one int64 buffer:
    # |z*m| < 2^62 and |o + 2^(e-1)| < 2^62, so no step overflows
    y = np.empty(np.broadcast_shapes(z.shape, m.shape, e.shape, o.shape), dtype=np.int64)
    np.multiply(z, m, out=y)
    y += o + (np.int64(1) << (e - 1))
    y >>= e
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    return np.clip(y, lo, hi, out=y)


# --------------------------------------------------------------------------------------------
# 3. Linear layers and matmuls
# --------------------------------------------------------------------------------------------
def exact_matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Exact integer ``a @ b`` as int64.

    Float BLAS computes sums of products in some order; each partial sum is then an integer of
    magnitude at most ``bound = K * max|a| * max|b|`` (per call, in Python ints; the dtype's range
    stands for ``max|.|`` of 8- and 16-bit operands). Up to 2^24 every such integer is a float32,
    up to 2^53 a float64, so every product and every addition is exact and the result is the
    integer matmul. Seg-T: int8 x int8 with K <= 1024 (linear layers, Q·Kᵀ, mask product) runs in
    float32; u15 x int8 (P·V, K = tokens) in float64. Above 2^53, numpy's int64 matmul.
    """
    a = np.asarray(a)
    b = np.asarray(b)
    bound = a.shape[-1] * _abs_bound(a) * _abs_bound(b)
    if bound <= _F32_EXACT:
        ft = np.float32
    elif bound <= _F64_EXACT:
        ft = np.float64
    else:
        return np.matmul(a.astype(np.int64), b.astype(np.int64))
    return np.matmul(a.astype(ft), b.astype(ft)).astype(np.int64)


def linear(x: np.ndarray, w: np.ndarray, b: np.ndarray | None = None) -> np.ndarray:
    """``acc[t, c] = b[c] + sum_k x[t, k] * w[k, c]``; x (T, K) i8, w (K, C) i8, b (C,) i32."""
    acc = exact_matmul(x, w)
    if b is not None:
        acc = acc + np.asarray(b, dtype=np.int64)
    return acc


# --------------------------------------------------------------------------------------------
# 4. Shift exponential
# --------------------------------------------------------------------------------------------
def shexp(x, x0: int, n: int) -> np.ndarray:
    """``~ |x0| * 2^n * exp(x * s)`` for ``x <= 0``; ``x0 = floor(-1/s) < 0``.

    The result is below ``|x0| * 2^(n+1)``.
    """
    x = np.asarray(x, dtype=np.int64)
    x0 = int(x0)
    if x0 >= 0:
        raise ValueError(f"shexp needs x0 < 0, got {x0}")
    t = x + (x >> 1) - (x >> 4)
    t = np.maximum(t, n * x0)
    q = t // x0
    r = t - x0 * q
    return ((r >> 1) - x0) << (n - q)


# --------------------------------------------------------------------------------------------
# 5.1 Shiftmax
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ShiftmaxVariant:
    """The constants that distinguish the Shiftmax variants."""

    k: int  # extra fractional bits on the input difference
    K: int  # extra bits in the reciprocal
    rnd: int  # 1: round the final shift half-up
    clamp_sum: bool  # I-ViT clamps the row sum to int32
    p_bits: int = 15  # stored probability width: p in [0, 2^p_bits - 1], real = p * 2^(r - 15)

    @property
    def p_max(self) -> int:
        return (1 << self.p_bits) - 1

    @property
    def r_max(self) -> int:
        """Largest per-row shift r (0 for the u15 variants: their grid is 2^-15)."""
        return P_GRID_BITS - self.p_bits


# "precise8" (this project's extension, docs/numerics.md §5): "precise" with each row's probabilities
# stored as u8 mantissas under one per-row shift r (a shared exponent): real = p * 2^(r - 15), r chosen
# so that the row's largest probability keeps 8 significant bits. P.V is then an 8 x 8 product that
# a DSP48E2 packs with a second MAC (the full array rate), and the shift comes back in the P.V drain
# (z = (P.V) << r, on the u15 grid), so a diffuse row (all p < 2^-7) loses nothing against precise.
SHIFTMAX_VARIANTS: dict[str, ShiftmaxVariant] = {
    "ivit": ShiftmaxVariant(k=0, K=0, rnd=0, clamp_sum=True),
    "precise": ShiftmaxVariant(k=3, K=16, rnd=1, clamp_sum=False),
    "precise8": ShiftmaxVariant(k=3, K=16, rnd=1, clamp_sum=False, p_bits=8),
}
P_GRID_BITS = 15  # the probabilities' grid: real = p * 2^(r - 15)
SHIFTMAX_N = 15


def shiftmax_x0(scale: float, variant: str) -> int:
    """Offline: ``x0 = floor(-2^k / s)`` for the score scale ``s``."""
    v = SHIFTMAX_VARIANTS[variant]
    return math.floor(-(1 << v.k) / scale)


def shiftmax_sum_bound(n_keys: int, x0: int) -> int:
    """Largest possible row sum: each exp is below ``|x0| * 2^(n+1)``."""
    return n_keys * (abs(x0) << (SHIFTMAX_N + 1))


def shiftmax_p_sum_bound(n_keys: int, x0: int, variant: str) -> int:
    """Largest row sum ``Σ p·2^r`` of one Shiftmax row of ``n_keys`` probabilities, on the u15 grid.

    It bounds the P·V value ``z = (Σ p·v) << r`` by ``128·`` this. Rounding variants: ``Σ e·f <= S·f <
    2^(31+K)`` and each p adds at most 1/2 of rounding at its grid ``2^r``, so ``Σ p·2^r < 2^15 + N·2^(r-1)``
    (precise: ``2^15 + N/2``; precise8, r <= 7: ``2^15 + 64·N``). Truncating I-ViT: ``Σp < 2^15`` while S is
    not clamped; with a clamped S, ``f = 1`` and each ``p <= min(e >> 16, p_max)`` with ``e <= |x0|·2^16``,
    so ``Σp <= N`` times the largest p.
    """
    v = SHIFTMAX_VARIANTS[variant]
    if v.rnd:
        return (1 << P_GRID_BITS) + (n_keys << v.r_max) // 2
    e_max = abs(x0) << (SHIFTMAX_N + 1)
    return max(1 << P_GRID_BITS, n_keys * min(v.p_max, e_max >> (31 - P_GRID_BITS + v.K)))


def shiftmax_with_shift(x: np.ndarray, x0: int, variant: str = "precise") -> tuple[np.ndarray, np.ndarray]:
    """Row-wise (last axis) integer softmax: (p, r), real = p * 2^(r - 15); p int64 (..., n), r int64 (..., 1).

    With ``s0 = 16 + K`` (the spec's final shift), ``f = (2^(31+K) - 1) // S`` and the row maximum's
    probability on the u15 grid ``pm = min((e_max*f + rnd*2^(s0-1)) >> s0, 32767)`` (``e_max = shexp(0) =
    |x0|*2^15``, the exp of the row's largest score):

        r = max(0, bit_length(pm) - p_bits)                          # 0 for the u15 variants
        p = min((e*f + rnd * 2^(s0 + r - 1)) >> (s0 + r), 2^p_bits - 1)

    For the u15 variants (r = 0) this is the spec's §5.1 line exactly.
    """
    v = SHIFTMAX_VARIANTS[variant]
    x = np.asarray(x)
    if x.dtype.kind not in "iu":
        x = x.astype(np.int64)
    shape = x.shape
    x = x.reshape(-1, shape[-1])
    mx = x.max(axis=-1, keepdims=True)
    s0 = 31 - P_GRID_BITS + v.K
    e_max = np.int64(abs(x0) << SHIFTMAX_N)

    def exp(u: np.ndarray) -> np.ndarray:  # e = shexp((x - max) << k) as a function of u = max - x
        return shexp(-u << v.k, x0, SHIFTMAX_N)

    def recip(s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:  # row sums S -> (f, r)
        if v.clamp_sum:
            s = np.minimum(s, INT32_MAX)
        f = ((np.int64(1) << (31 + v.K)) - 1) // s
        if v.r_max == 0:
            return f, np.zeros_like(f)
        pm = np.minimum((e_max * f + v.rnd * (np.int64(1) << (s0 - 1))) >> s0, (1 << P_GRID_BITS) - 1)
        bits = np.zeros_like(pm)  # bit_length(pm), pm < 2^15
        for b in range(P_GRID_BITS):
            bits += pm >= (np.int64(1) << b)
        return f, np.maximum(bits - v.p_bits, 0)

    def prob(e: np.ndarray, f: np.ndarray, r: np.ndarray) -> np.ndarray:  # e, f, r -> p
        p = e * f  # e <= S, so e*f < 2^(31+K)
        sh = s0 + r
        p += v.rnd * (np.int64(1) << (sh - 1))
        p >>= sh
        return np.minimum(p, v.p_max, out=p)

    rows, n = x.shape
    w = int(mx.max()) - int(x.min()) + 1 if x.size else 1  # u takes at most w values: 0 <= u < w
    if n < _TABLE_MIN_RATIO * w:
        e = exp(np.subtract(mx, x, dtype=np.int64))
        f, r = recip(e.sum(axis=-1, keepdims=True))
        return prob(e, f, r).reshape(shape), r.reshape(shape[:-1] + (1,))
    # Long rows of narrow scores (w <= 256 for i8): e and p are functions of u per row, so evaluate them
    # on the w possible values (the same code on the same integers), get S = sum_u count(u) * e(u) from
    # each row's histogram of u, and gather p by the flat index row * w + u.
    flat = np.subtract(mx + np.arange(rows, dtype=np.int64)[:, None] * w, x, dtype=np.int64)
    counts = np.bincount(flat.reshape(-1), minlength=rows * w).reshape(rows, w)
    e_of_u = exp(np.arange(w, dtype=np.int64))
    f, r = recip((counts * e_of_u).sum(axis=-1, keepdims=True))
    p_of_u = prob(np.broadcast_to(e_of_u, (rows, w)), f, r)
    p = np.take(p_of_u, flat, mode="clip")  # indices < rows * w: "clip" only skips the check
    return p.reshape(shape), r.reshape(shape[:-1] + (1,))


def shiftmax(x: np.ndarray, x0: int, variant: str = "precise") -> np.ndarray:
    """The probabilities p of :func:`shiftmax_with_shift` (u15 variants: real = p * 2^-15; precise8: the
    u8 mantissas, whose row shifts only :func:`attention_pv` needs)."""
    return shiftmax_with_shift(x, x0, variant)[0]


def attention_pv(p: np.ndarray, r: np.ndarray, v: np.ndarray) -> np.ndarray:
    """P·V on the u15 grid: ``z = (Σ_k p·v) << r`` per row (r = 0 for the u15 variants), int64.

    The array computes ``Σ p·v`` on the stored p (u8 for precise8); the row shift is applied once per
    output in the drain, before the output requant (whose constants assume the 2^-15 grid).
    """
    return exact_matmul(p, v) << r


# --------------------------------------------------------------------------------------------
# 5.2 lambda-ShiftGELU (and I-ViT ShiftGELU)
# --------------------------------------------------------------------------------------------
GELU_VARIANTS = ("lambda", "shift")


@dataclass(frozen=True)
class GeluConsts:
    """Integer constants of one GELU instance (all computed offline)."""

    variant: str  # "lambda" or "shift"
    x0: int
    n: int
    k: int = 0
    L: int = 0  # clip bound in input units (lambda only)
    em: int = 0  # shexp(-M, x0, n) (lambda only)

    @property
    def M(self) -> int:
        return self.L << self.k


def gelu_consts(scale: float, variant: str = "lambda", lam: float = 4.0, k: int = 3,
                n: int = 20) -> GeluConsts:
    """Offline: the constants of λ-ShiftGELU (or ShiftGELU) for an input scale ``s``."""
    if variant == "shift":
        return GeluConsts("shift", x0=math.floor(-1.0 / (1.702 * scale)), n=23)
    if variant != "lambda":
        raise ValueError(f"unknown GELU variant {variant!r}")
    if 2 * lam * 1.702 * math.log2(math.e) > n:
        raise ValueError(f"λ-ShiftGELU: 2·λ·1.702·log2(e) = {2 * lam * 1.702 * math.log2(math.e):.2f} "
                         f"exceeds n = {n}; the exp would saturate")
    L = math.floor(lam / scale)
    s1 = 1.702 * scale / (1 << k)
    x0 = math.floor(-1.0 / s1)
    M = L << k
    em = int(shexp(np.int64(-M), x0, n))
    return GeluConsts("lambda", x0=x0, n=n, k=k, L=L, em=em)


def gelu(x: np.ndarray, c: GeluConsts) -> np.ndarray:
    """λ-ShiftGELU (or ShiftGELU). x i8 -> y int64, real = y * s * 2^-7, |y| <= 127 * 128."""
    x = np.asarray(x)
    if c.variant == "lambda" and x.size:  # elementwise in x: through a table of its values (256 for i8)
        return _tabulate(lambda v: _gelu_int64(v, c), x, int(x.min()), int(x.max()))
    return _gelu_int64(np.asarray(x, dtype=np.int64), c)


def gelu_rq8_table(c: GeluConsts, m: int, e: int, o: int = 0) -> np.ndarray:
    """``RQ_8(λ-ShiftGELU(x))`` for every i8 ``x``: int8[256], entry ``x + 128``.

    Why: λ-ShiftGELU is elementwise and its input is i8, so with a per-tensor output requant the whole fused
    stage is a function of 256 values. The engine looks it up (hls/gemm.h, the GEMM output lanes) instead of
    building a shift-exp, a 64-bit divider and three multipliers per lane; the table is this function of the
    same integers, so it is exact by construction. ShiftGELU needs its row's maximum and has no such table.
    """
    if c.variant != "lambda":
        raise ValueError(f"gelu_rq8_table: only λ-ShiftGELU is elementwise, not {c.variant!r}")
    if np.ndim(m) or np.ndim(e) or np.ndim(o):
        raise ValueError("gelu_rq8_table: the GELU output requant must be per-tensor")
    x = np.arange(-128, 128, dtype=np.int64)
    return requant(gelu(x, c), m, e, o, bits=8).astype(np.int8)


def _gelu_int64(x: np.ndarray, c: GeluConsts) -> np.ndarray:
    """The formula of :func:`gelu` on an int64 array."""
    if c.variant == "lambda":
        xc = np.clip(x, -c.L, c.L) << c.k
        e = shexp(xc - c.M, c.x0, c.n)
        em = np.int64(c.em)
    else:  # I-ViT ShiftGELU: per-token (last axis) maximum (at least 0), no clip
        M = np.maximum(x.max(axis=-1, keepdims=True), 0)  # >= 0 keeps both exps in domain
        e = shexp(x - M, c.x0, c.n)
        em = shexp(-M, c.x0, c.n)
    S = np.minimum(e + em, INT32_MAX)
    f = INT32_MAX // S
    sig = (e * f) >> 24
    return x * sig


# --------------------------------------------------------------------------------------------
# 5.3 I-LayerNorm
# --------------------------------------------------------------------------------------------
def isqrt(v: np.ndarray) -> np.ndarray:
    """Exact floor square root of non-negative int64 values (vectorised, no float rounding)."""
    v = np.asarray(v, dtype=np.int64)
    if v.size and (int(v.min()) < 0 or int(v.max()) >= 1 << 62):
        raise ValueError("isqrt needs 0 <= v < 2^62")
    # float estimate (off by at most one below 2^62), then corrected exactly
    r = np.floor(np.sqrt(v.astype(np.float64))).astype(np.int64)
    for _ in range(4):
        r = np.where(r * r > v, r - 1, r)
    for _ in range(4):
        r = np.where((r + 1) * (r + 1) <= v, r + 1, r)
    return r


def isqrt_digit(v: int) -> int:
    """Digit-by-digit (restoring) square root: the hardware algorithm, for cross-checks."""
    v = int(v)
    res, bit = 0, 1 << 62
    while bit > v:
        bit >>= 2
    while bit:
        if v >= res + bit:
            v -= res + bit
            res = (res >> 1) + bit
        else:
            res >>= 1
        bit >>= 2
    return res


def round_half_even_div(s: np.ndarray, c: int) -> np.ndarray:
    """``round_half_even(s / c)`` for int64 ``s`` and positive int ``c``, exactly."""
    s = np.asarray(s, dtype=np.int64)
    q, r = np.divmod(s, c)  # floor semantics: 0 <= r < c
    up = (2 * r > c) | ((2 * r == c) & (q % 2 == 1))
    return q + up.astype(np.int64)


MEAN_K_MAX = 1 << 15  # mean_reciprocal's divisors: m < 2^31 (an int32 table field), n * m < 2^61 (int64)


def mean_reciprocal(k: int) -> tuple[int, int]:
    """Offline: the LayerNorm mean's divisor ``K`` (a layer constant) -> ``(m, sh)``, so that the engine computes
    ``round_half_even_div(s, K)`` with a multiply instead of a 64-bit divider (:func:`mean_by_reciprocal`, the
    same integers as hls/gemm.h ``ln_step``).

    With ``l = ceil(log2 K)`` (``2^(l-1) < K <= 2^l``; 0 for K = 1), ``N = 15 + l``, ``sh = N + l = 15 + 2 l`` and
    ``m = ceil(2^sh / K)``: ``floor(n / K) = (n * m) >> sh`` for every ``0 <= n < 2^N`` (Granlund & Montgomery
    1994, Thm 4.2: it needs ``2^sh <= m K <= 2^sh + 2^l``). Proof: ``m K = 2^sh + e`` with ``0 <= e < K <= 2^l``;
    write ``n = q K + r``, ``0 <= r <= K - 1``; then ``n m / 2^sh = q + r / K + n e / (K 2^sh)``, and
    ``n e / (K 2^sh) < 2^N 2^l / (K 2^(N + l)) = 1 / K``, so the fraction part lies in ``[0, (K - 1) / K + 1 / K)
    = [0, 1)`` and the floor is ``q``.

    The dividends: a row sum ``s`` of K int16 values lies in ``[-K 2^15, K (2^15 - 1)]``; folded to
    ``n = s`` (s >= 0) or ``n = ~s = -s - 1`` (s < 0), ``0 <= n <= K 2^15 - 1 < 2^(15 + l) = 2^N``, and
    ``floor(s / K) = ~floor(~s / K)`` for s < 0 (``-s - 1 = a K + b``, ``0 <= b < K``, gives
    ``s = -(a + 1) K + (K - 1 - b)``). So one multiply, a shift and two bitwise NOTs give the floor quotient.

    Widths: ``2^(15 + l) <= m < 2^(16 + l)`` (``m = 2^(15 + l)`` exactly when K is a power of two; below
    ``2^(16 + l)`` because ``K > 2^(l - 1)``), so ``m`` takes ``17 + l`` signed bits and ``n`` ``16 + l``; the
    product is below ``2^(31 + 2 l)``. For ``K <= MEAN_K_MAX = 2^15``: ``m < 2^31`` (int32), ``sh <= 45``, the
    product below ``2^61`` (int64). The engine's LayerNorm takes ``K <= 2047`` (hls/mul.h kLnKBits): ``m < 2^27``,
    ``n < 2^26``, a 27 x 28-bit product (two DSP48E2)."""
    k = int(k)
    if not 1 <= k <= MEAN_K_MAX:
        raise ValueError(f"mean_reciprocal: K = {k} is outside 1..{MEAN_K_MAX}")
    sh = 15 + 2 * (k - 1).bit_length()  # (k - 1).bit_length() = ceil(log2 k)
    return -(-(1 << sh) // k), sh


def floor_by_reciprocal(s: np.ndarray, k: int, m: int, sh: int) -> np.ndarray:
    """``floor(s / K)`` for row sums ``s`` of K int16 values and ``(m, sh) = mean_reciprocal(K)``: one multiply, a
    shift and two bitwise NOTs (the proof is :func:`mean_reciprocal`'s; the sums are checked against its range)."""
    s = np.asarray(s, dtype=np.int64)
    if s.size and (int(s.min()) < -(k << 15) or int(s.max()) > k * ((1 << 15) - 1)):
        raise ValueError(f"floor_by_reciprocal: a sum outside the range of {k} int16 values")
    neg = s < 0
    n = np.where(neg, ~s, s)  # 0 <= n < K 2^15
    qn = (n * np.int64(m)) >> sh
    return np.where(neg, ~qn, qn)


def mean_by_reciprocal(s: np.ndarray, k: int, m: int, sh: int) -> np.ndarray:
    """``round_half_even_div(s, K)`` the engine's way (hls/gemm.h ``ln_step``): the floor quotient ``q`` by the
    reciprocal (:func:`floor_by_reciprocal`), the remainder ``r = s - K q`` in ``[0, K)``, then round half to even
    exactly as :func:`round_half_even_div` does (numerics.md §5.3)."""
    s = np.asarray(s, dtype=np.int64)
    q = floor_by_reciprocal(s, k, m, sh)
    r = s - q * k  # 0 <= r < K
    up = (2 * r > k) | ((2 * r == k) & (q % 2 == 1))
    return q + up.astype(np.int64)


def ln_normalize(x: np.ndarray) -> np.ndarray:
    """I-LayerNorm before its requant: ``z``, ``|z| <= 2^30``, real value ``z * sqrt(C) / 2^30``."""
    x = np.asarray(x, dtype=np.int64)
    mean = round_half_even_div(x.sum(axis=-1, keepdims=True), x.shape[-1])
    y = x - mean
    var = (y * y).sum(axis=-1, keepdims=True)
    sd = np.maximum(isqrt(var), 1)
    f = INT32_MAX // sd
    return (y * f) >> 1


def layernorm(x: np.ndarray, m, e, o, bits: int = 8) -> np.ndarray:
    """I-LayerNorm over the last axis: gamma folded into per-channel ``m``, beta into ``o``."""
    return requant(ln_normalize(x), m, e, o, bits)


# --------------------------------------------------------------------------------------------
# 5.4 Integer add
# --------------------------------------------------------------------------------------------
def int_add(a, b, ma: int, mb: int, e: int, bits: int = 16) -> np.ndarray:
    """``clamp_16((a*ma + b*mb + 2^(e-1)) >> e)``: one shared shift, one rounding."""
    a = np.asarray(a, dtype=np.int64)
    b = np.asarray(b, dtype=np.int64)
    return clamp_bits((a * int(ma) + b * int(mb) + (1 << (int(e) - 1))) >> int(e), bits)


# --------------------------------------------------------------------------------------------
# 5.5 Argmax and nearest-neighbour upsampling
# --------------------------------------------------------------------------------------------
def argmax_labels(logits: np.ndarray) -> np.ndarray:
    """Argmax over the last axis, ties to the lowest index (numpy's rule), as uint8."""
    return np.argmax(np.asarray(logits), axis=-1).astype(np.uint8)


def upsample_nearest(labels: np.ndarray, p: int) -> np.ndarray:
    """Replicate each label of an (h, w) grid into a p×p block: (h*p, w*p)."""
    return np.repeat(np.repeat(labels, p, axis=0), p, axis=1)
