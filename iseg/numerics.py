"""The integer numerics of I-Segmenter: the executable form of ``spec/numerics.md``.

Every other implementation (PyTorch integer mode, HLS C++, Verilog) is tested against these
functions with ``np.array_equal``. All run-time functions take and return integer arrays and
never touch a float; floats appear only in the offline helpers (``dyadic``, ``*_consts``) that
turn real scales into integer constants at export time.

Integer widths: every intermediate is held in int64 and bounded as the spec says; the bounds
are asserted where a caller could violate them.
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
    "shiftmax",
    "GeluConsts",
    "gelu_consts",
    "gelu",
    "isqrt",
    "round_half_even_div",
    "ln_normalize",
    "layernorm",
    "int_add",
    "argmax_labels",
    "upsample_nearest",
]

INT32_MAX = (1 << 31) - 1
_F64_EXACT = 1 << 53


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
    z = np.asarray(z, dtype=np.int64)
    m = np.asarray(m, dtype=np.int64)
    e = np.asarray(e, dtype=np.int64)
    o = np.asarray(o, dtype=np.int64)
    if z.size and int(np.abs(z).max()) >= 1 << 31:
        raise OverflowError("requant input exceeds 31 bits")
    y = (z * m + o + (np.int64(1) << (e - 1))) >> e
    return clamp_bits(y, bits)


# --------------------------------------------------------------------------------------------
# 3. Linear layers and matmuls
# --------------------------------------------------------------------------------------------
def exact_matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Exact integer ``a @ b`` as int64.

    float64 BLAS is exact while every partial sum stays below 2^53; the bound
    ``K * max|a| * max|b|`` is checked per call, else numpy's int64 matmul is used.
    """
    a = np.asarray(a)
    b = np.asarray(b)
    k = a.shape[-1]
    amax = int(np.abs(a).max()) if a.size else 0
    bmax = int(np.abs(b).max()) if b.size else 0
    if k * amax * bmax < _F64_EXACT:
        return np.matmul(a.astype(np.float64), b.astype(np.float64)).astype(np.int64)
    return np.matmul(a.astype(np.int64), b.astype(np.int64))


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
    """The constants that distinguish the two Shiftmax variants."""

    k: int  # extra fractional bits on the input difference
    K: int  # extra bits in the reciprocal
    rnd: int  # 1: round the final shift half-up
    clamp_sum: bool  # I-ViT clamps the row sum to int32


SHIFTMAX_VARIANTS: dict[str, ShiftmaxVariant] = {
    "ivit": ShiftmaxVariant(k=0, K=0, rnd=0, clamp_sum=True),
    "precise": ShiftmaxVariant(k=3, K=16, rnd=1, clamp_sum=False),
}
SHIFTMAX_N = 15


def shiftmax_x0(scale: float, variant: str) -> int:
    """Offline: ``x0 = floor(-2^k / s)`` for the score scale ``s``."""
    v = SHIFTMAX_VARIANTS[variant]
    return math.floor(-(1 << v.k) / scale)


def shiftmax_sum_bound(n_keys: int, x0: int) -> int:
    """Largest possible row sum: each exp is below ``|x0| * 2^(n+1)``."""
    return n_keys * (abs(x0) << (SHIFTMAX_N + 1))


def shiftmax(x: np.ndarray, x0: int, variant: str = "precise") -> np.ndarray:
    """Row-wise (last axis) integer softmax. x i8 scores -> p u15 (real = p * 2^-15), int64."""
    v = SHIFTMAX_VARIANTS[variant]
    x = np.asarray(x, dtype=np.int64)
    d = (x - x.max(axis=-1, keepdims=True)) << v.k
    e = shexp(d, x0, SHIFTMAX_N)
    s = e.sum(axis=-1, keepdims=True)
    if v.clamp_sum:
        s = np.minimum(s, INT32_MAX)
    f = ((np.int64(1) << (31 + v.K)) - 1) // s
    p = (e * f + v.rnd * (np.int64(1) << (15 + v.K))) >> (16 + v.K)
    return np.minimum(p, 32767)


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
    x = np.asarray(x, dtype=np.int64)
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
