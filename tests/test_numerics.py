"""The numpy numerics reference: hand-checked edge values and properties against float maths."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from iseg import numerics as nx

# ---------------------------------------------------------------- dyadic + requant


@pytest.mark.parametrize("ratio", [1e-9, 3.3e-5, 0.1, 0.5, 0.999999999, 1.0, 1.7, 123.456, -0.37, 2.0 ** -31])
def test_dyadic_mantissa_range_and_accuracy(ratio: float) -> None:
    m, e = nx.dyadic(ratio)
    assert (1 << 30) <= abs(m) < (1 << 31)
    assert 1 <= e <= 62
    assert (m < 0) == (ratio < 0)
    assert abs(m * 2.0 ** -e - ratio) <= abs(ratio) * 2.0 ** -30


def test_dyadic_renormalises_a_mantissa_that_rounds_up_to_2_31() -> None:
    ratio = (2 ** 31 - 0.25) / 2 ** 31  # rounds half-up to 2^31
    assert nx.dyadic(ratio) == (1 << 30, 30)


def test_dyadic_rejects_unrepresentable() -> None:
    with pytest.raises(ValueError):
        nx.dyadic(2.0 ** 40)
    with pytest.raises(ValueError):
        nx.dyadic(float("nan"))
    assert nx.dyadic(0.0) == (0, 1)


def test_requant_hand_checked() -> None:
    # m * 2^-e = 0.5 exactly: 3 * 0.5 = 1.5 -> 2 (half up), -3 * 0.5 = -1.5 -> -1 (half toward +inf)
    m, e = 1 << 30, 31
    z = np.array([3, -3, 1, -1, 0, 1000, -1000])
    assert nx.requant(z, m, e).tolist() == [2, -1, 1, 0, 0, 127, -128]
    assert nx.requant(z, m, e, bits=16).tolist() == [2, -1, 1, 0, 0, 500, -500]
    # offset: + 0.5 in output units = 2^(e-1)
    assert nx.requant(np.array([0, 2]), m, e, o=1 << 30).tolist() == [1, 2]


def test_requant_per_channel_broadcasts_on_last_axis() -> None:
    z = np.array([[10, 10], [-10, -10]])
    m = np.array([1 << 30, 1 << 30])
    e = np.array([31, 32])  # x0.5, x0.25
    assert nx.requant(z, m, e).tolist() == [[5, 3], [-5, -2]]


def test_requant_refuses_wide_inputs() -> None:
    with pytest.raises(OverflowError):
        nx.requant(np.array([1 << 31]), 1 << 30, 31)


@settings(max_examples=200, deadline=None)
@given(st.integers(-(2 ** 31) + 1, 2 ** 31 - 1), st.floats(1e-6, 4.0))
def test_requant_matches_rounded_float(z: int, ratio: float) -> None:
    m, e = nx.dyadic(ratio)
    got = int(nx.requant(np.array([z]), m, e, bits=16)[0])
    exact = z * m / 2 ** e  # the dyadic product itself, rounded half up
    want = max(-32768, min(32767, math.floor(exact + 0.5)))
    assert got == want
    # and within one unit of the real ratio's product (before clamping)
    if abs(z * ratio) < 32000:
        assert abs(got - z * ratio) <= 0.5 + abs(z) * ratio * 2 ** -29


# ---------------------------------------------------------------- matmul


def test_exact_matmul_float_path_and_int_fallback_agree() -> None:
    rng = np.random.default_rng(0)
    a = rng.integers(-128, 128, size=(17, 300))
    b = rng.integers(-128, 128, size=(300, 9))
    want = a.astype(object).dot(b.astype(object)).astype(np.int64)
    assert np.array_equal(nx.exact_matmul(a, b), want)
    big = rng.integers(-(2 ** 40), 2 ** 40, size=(3, 5))  # forces the int64 path
    small = rng.integers(-4, 5, size=(5, 2))
    assert np.array_equal(nx.exact_matmul(big, small), big.astype(object).dot(small.astype(object)).astype(np.int64))


def test_linear_adds_bias_per_column() -> None:
    x = np.array([[1, 2]])
    w = np.array([[1, 0, -1], [2, 1, 3]])
    assert nx.linear(x, w, np.array([10, 20, 30])).tolist() == [[15, 22, 35]]


# ---------------------------------------------------------------- shexp


def test_shexp_hand_checked() -> None:
    x0 = -10  # s = 0.1
    # x = 0: q = 0, r = 0 -> (0 - x0) << n = 10 * 2^4
    assert int(nx.shexp(np.array(0), x0, 4)) == 160
    # x = -10 (real -1.0): t = -10 - 5 + 1 = -14; q = 1 (floor(-14/-10)), r = -4 -> ((-2) + 10) << 3 = 64
    assert int(nx.shexp(np.array(-10), x0, 4)) == 64
    # saturation: t below n*x0 is clamped there -> q == n -> ((0 >> 1) - x0) << 0 = 10
    assert int(nx.shexp(np.array(-1000), x0, 4)) == 10
    assert int(nx.shexp(np.array(-28), x0, 4)) == (((-40 - x0 * 4) >> 1) - x0) << 0


@settings(max_examples=100, deadline=None)
@given(st.floats(0.001, 0.1), st.integers(-2000, 0))
def test_shexp_tracks_exp(s: float, x: int) -> None:
    """2^-f ~ 1 - f/2 costs <= 6.1 %; t's integer steps and x0's rounding cost the rest, and log2(e) ~ 1.4375
    puts the exponent off by |x*s| * (log2(e) - 1.4375) bits, a relative |x*s| * 0.0036 (that term was missing:
    a dense sweep of s in [0.001, 0.1] x x in [-2000, 0] broke the bound at 3112 points, worst 1.06x; with it,
    none, worst 0.96x)."""
    x0 = math.floor(-1 / s)
    n = 15
    got = int(nx.shexp(np.array(x), x0, n))
    assert got < abs(x0) * 2 ** (n + 1)
    real = math.exp(x * s)
    if real > 2.0 ** -(n - 2):  # above the saturation floor
        approx = got / (abs(x0) * 2 ** n)
        log2e_err = abs(x * s) * (math.log2(math.e) - 1.4375) * math.log(2)
        tol = real * (0.062 + 2 / abs(x0) + abs(x * s) * s * 1.5 + log2e_err) + 2.0 ** -n * 4
        assert abs(approx - real) <= tol


# ---------------------------------------------------------------- shiftmax


def _softmax(x: np.ndarray, s: float) -> np.ndarray:
    z = x * s
    z = np.exp(z - z.max(axis=-1, keepdims=True))
    return z / z.sum(axis=-1, keepdims=True)


@pytest.mark.parametrize("tokens", [17, 197, 1025])
@pytest.mark.parametrize("variant,lo,hi", [("precise", 0.99, 1.01), ("ivit", 0.75, 1.0), ("precise8", 0.98, 1.02)])
def test_shiftmax_row_sums(tokens: int, variant: str, lo: float, hi: float) -> None:
    """Row sums on the u15 grid, Σ p·2^r / 2^15, on uniform random i8 rows (precise8 measured 0.992–1.005)."""
    rng = np.random.default_rng(tokens)
    v = nx.SHIFTMAX_VARIANTS[variant]
    for s in (0.02, 0.06, 0.12):
        x = rng.integers(-128, 128, size=(8, tokens))
        p, r = nx.shiftmax_with_shift(x, nx.shiftmax_x0(s, variant), variant)
        assert p.min() >= 0 and p.max() <= v.p_max and 0 <= r.min() and r.max() <= v.r_max
        sums = (p << r).sum(axis=-1) / 2 ** 15
        assert lo <= sums.min() and sums.max() <= hi, (variant, s, sums)


def test_precise8_worst_case_row_loses_mass() -> None:
    """The documented limit of precise8 (docs/numerics.md §5): one key holding about 1/4 of the mass gives r = 6
    (grid 2^-9), and 1024 keys of about 0.75/1024 = 2^-10.4 each are below half that grid: they round to 0, so
    the row keeps only the big key. precise keeps the sum. Scores 127 and 8 at scale 0.05, 1025 keys."""
    x = np.full((1, 1025), 8)
    x[0, 0] = 127
    x0 = nx.shiftmax_x0(0.05, "precise8")
    p, r = nx.shiftmax_with_shift(x, x0, "precise8")
    assert int(r[0, 0]) == 6 and (p[0, 1:] == 0).all()
    assert 0.25 <= (p[0, 0] << 6) / 2 ** 15 < 0.27
    q = nx.shiftmax(x, x0, "precise")
    assert abs(q.sum() / 2 ** 15 - 1) < 0.01 and (q[0, 1:] > 0).all()


@pytest.mark.parametrize("variant,tol", [("precise", 0.03), ("ivit", 0.1), ("precise8", 0.03 + 2 ** -7)])
def test_shiftmax_close_to_softmax(variant: str, tol: float) -> None:
    """real = p·2^(r-15); precise8's grid step is at most 2^-8 (r <= 7), its clamp costs at most 1.5 steps."""
    rng = np.random.default_rng(1)
    for s in (0.03, 0.08, 0.12):
        x = rng.integers(-128, 128, size=(16, 197))
        p, r = nx.shiftmax_with_shift(x, nx.shiftmax_x0(s, variant), variant)
        assert np.abs(p * 2.0 ** (r - 15) - _softmax(x, s)).max() < tol


def test_shiftmax_edges() -> None:
    x0 = nx.shiftmax_x0(0.1, "precise")
    # a constant row is uniform
    p = nx.shiftmax(np.full((1, 4), 7), x0, "precise")
    assert p.tolist() == [[8192] * 4]
    # one dominant entry saturates at 32767, never 32768
    p = nx.shiftmax(np.array([[127, -128, -128, -128]]), x0, "precise")
    assert 32760 <= p[0, 0] <= 32767 and p[0, 1:].max() <= 1
    # ties give equal probabilities
    p = nx.shiftmax(np.array([[5, 5, -3]]), x0, "precise")
    assert p[0, 0] == p[0, 1] > p[0, 2]


def test_shiftmax_precise8_by_hand() -> None:
    """u8 mantissas and row shifts worked out by hand with x0 = -64 (k = 3, K = 16, rnd = 1, p_bits = 8).

    s0 = 16 + K = 32, e_max = |x0| << 15 = 2^21. Equal scores: every e = shexp(0) = 2^21; with N keys
    S = N·2^21, f = (2^47 - 1) // S = floor((2^26 - 2^-21) / N), and
      pm = min((2^21·f + 2^31) >> 32, 32767) = floor(f / 2^11 + 1/2)        (~ 2^15 / N)
      r  = max(0, bit_length(pm) - 8)
      p  = (2^21·f + 2^(31+r)) >> (32+r)  = floor(f / 2^(11+r) + 1/2)      (~ 2^(15-r) / N)
      N = 1:    f = 2^26 - 1,  pm = floor(32767.9995 + .5) = 32768 -> 32767, 15 bits, r = 7,
                p = floor(255.99999 + .5) = 256 -> clamped to 255
      N = 3:    f = 22369621,  pm = floor(10922.67 + .5) = 10923, 14 bits, r = 6, p = floor(170.67 + .5) = 171
      N = 4:    f = 2^24 - 1,  pm = floor(8191.9995 + .5) = 8192,  14 bits, r = 6, p = floor(127.99999 + .5) = 128
      N = 5:    f = 13421772,  pm = floor(6553.5996 + .5) = 6554,   13 bits, r = 5, p = floor(204.79998 + .5) = 205
      N = 100:  f = 671088,    pm = floor(327.68 + .5)  = 328,      9 bits, r = 1, p = floor(163.84 + .5) = 164
      N = 200:  f = 335544,    pm = floor(163.84 + .5)  = 164,      8 bits, r = 0, p = 164
      N = 1025: f = 65472,     pm = floor(31.97 + .5)   = 32,       6 bits, r = 0, p = 32
    (the plain u8 grid 2^-8 would give round(256 / 1025) = 0 for every key of the last row: all mass lost).
    One dominant score [127, -128, -128, -128]: the others have (x - max) << 3 = -2040, t clamps to 15·x0 =
    -960, q = 15, e = 64; S = 2^21 + 192, pm = floor(2^15·2^21 / S + .5) = floor(32765.0 + .5) = 32765,
    15 bits, r = 7; p0 = floor(2^8·2^21 / S + .5) = floor(255.977 + .5) = 256 -> 255, the others
    floor(64·2^8 / S + .5) = 0.
    """
    for n, want_p, want_r in [(1, 255, 7), (3, 171, 6), (4, 128, 6), (5, 205, 5), (100, 164, 1), (200, 164, 0),
                              (1025, 32, 0)]:
        p, r = nx.shiftmax_with_shift(np.full((1, n), 7), -64, "precise8")
        assert p.tolist() == [[want_p] * n] and r.tolist() == [[want_r]], n
        assert np.array_equal(nx.shiftmax(np.full((1, n), 7), -64, "precise8"), p)  # shiftmax: p only
    p, r = nx.shiftmax_with_shift(np.array([[127, -128, -128, -128]]), -64, "precise8")
    assert p.tolist() == [[255, 0, 0, 0]] and r.tolist() == [[7]]
    # the same rows in u15 (r = 0): 2^15 / N rounded, the dominant one clamped at 32767
    for n, want_p in [(1, 32767), (3, 10923), (100, 328), (1025, 32)]:
        p, r = nx.shiftmax_with_shift(np.full((1, n), 7), -64, "precise")
        assert p.tolist() == [[want_p] * n] and r.tolist() == [[0]], n


def test_shiftmax_precise8_shape_of_r() -> None:
    """r has the input's shape with a last axis of 1, per row of a (heads, rows, keys) stack."""
    x = np.stack([np.full((2, 5), 7), np.concatenate([np.full((2, 1), 127), np.full((2, 4), -128)], axis=1)])
    p, r = nx.shiftmax_with_shift(x, -64, "precise8")
    assert p.shape == (2, 2, 5) and r.shape == (2, 2, 1)
    assert r[..., 0].tolist() == [[5, 5], [7, 7]]  # N = 5: r = 5; dominant: r = 7


@pytest.mark.parametrize("tokens", [3, 17, 197, 1025])
def test_shiftmax_precise8_relation_to_precise_and_sum_bound(tokens: int) -> None:
    """On the same row, precise8 and precise share e, S, f; so

    - r = max(0, bit_length(pm) - 8) where pm is precise's p of the row maximum (the same expression);
    - r = 0: p is precise's p (the same rounding at 2^32; all p <= pm < 256, no clamp);
    - otherwise |p·2^r - p15| <= 2^(r-1): both round e·f / 2^32, at 2^r and at 1, so they differ by at
      most 2^(r-1) + 1/2, and the difference is an integer. Only the clamp p = 255 (256 before it)
      loses more: then p15 lies in (255·2^r, 256·2^r];
    - Σ p·2^r <= shiftmax_p_sum_bound (2^15 + 64·N), and Σ p·2^r is within N·2^(r-1) + 2^r·(#clamped)
      of precise's Σ p15 (~2^15): a diffuse row keeps its mass.
    """
    rng = np.random.default_rng(tokens + 8)
    seen_r = set()
    for s in (0.02, 0.06, 0.12, 0.5):
        x0 = nx.shiftmax_x0(s, "precise8")
        assert x0 == nx.shiftmax_x0(s, "precise")  # same k: the same exponentials
        x = np.concatenate([rng.integers(-128, 128, size=(8, tokens)),
                            np.clip(np.round(rng.normal(0, 10, size=(4, tokens))), -128, 127).astype(np.int64),
                            np.clip(np.round(rng.normal(0, 2, size=(4, tokens))), -128, 127).astype(np.int64),
                            np.full((1, tokens), 3)])
        p8, r = nx.shiftmax_with_shift(x, x0, "precise8")
        p15, r15 = nx.shiftmax_with_shift(x, x0, "precise")
        assert not r15.any() and np.array_equal(nx.shiftmax(x, x0, "precise"), p15)
        assert p8.min() >= 0 and p8.max() <= 255 and r.min() >= 0 and r.max() <= 7
        want_r = [max(0, int(m).bit_length() - 8) for m in p15.max(axis=-1)]
        assert r[:, 0].tolist() == want_r
        seen_r |= set(want_r)
        v = p8 << r
        flat = r[:, 0] == 0
        assert np.array_equal(p8[flat], p15[flat])
        clamped = (p8 == 255) & (p15 > 255 << r)
        near = np.abs(v - p15) <= (1 << r) // 2
        assert np.all(near | clamped)
        assert np.all(~clamped | (p15 <= 256 << r))
        sums = v.sum(axis=-1)
        assert sums.max() <= nx.shiftmax_p_sum_bound(tokens, x0, "precise8") == (1 << 15) + 64 * tokens
        slack = tokens * (1 << r[:, 0]) // 2 + (1 << r[:, 0]) * clamped.sum(axis=-1)
        assert np.all(np.abs(sums - p15.sum(axis=-1)) <= slack)
    assert len(seen_r) >= (2 if tokens < 10 else 3), seen_r  # N = 3: pm >= 2^15 / 3, so r is 6 or 7


@pytest.mark.parametrize("variant", ["precise", "precise8", "ivit"])
def test_shiftmax_p_sum_bound_holds(variant: str) -> None:
    """Σ p·2^r <= shiftmax_p_sum_bound on random, peaked, flat and extreme rows (N = 1..1025)."""
    rng = np.random.default_rng(5)
    for n in (1, 2, 7, 64, 197, 1025):
        for s in (0.01, 0.05, 0.2, 1.0):
            x0 = nx.shiftmax_x0(s, variant)
            x = np.concatenate([rng.integers(-128, 128, size=(6, n)), np.full((1, n), -128),
                                np.clip(np.round(rng.normal(0, 3, size=(3, n))), -128, 127).astype(np.int64),
                                np.resize([127, -128], (1, n))])
            p, r = nx.shiftmax_with_shift(x, x0, variant)
            assert (p << r).sum(axis=-1).max() <= nx.shiftmax_p_sum_bound(n, x0, variant), (n, s)


def test_attention_pv_shifts_each_row() -> None:
    """z = (Σ_k p·v) << r per output row (r = 0: the plain product)."""
    p = np.array([[255, 1, 0], [3, 4, 5]])
    r = np.array([[7], [0]])
    v = np.array([[1, -2], [-128, 127], [5, 5]], dtype=np.int8)
    assert nx.attention_pv(p, r, v).tolist() == [[(255 - 128) << 7, (-510 + 127) << 7], [3 - 512 + 25, -6 + 508 + 25]]


# ---------------------------------------------------------------- GELU


def _gelu(x: np.ndarray) -> np.ndarray:
    return 0.5 * x * (1 + np.vectorize(math.erf)(x / math.sqrt(2)))


def test_lambda_gelu_consts_hand_checked() -> None:
    c = nx.gelu_consts(0.05)  # lam 4, k 3, n 20
    assert c.L == 80 and c.k == 3 and c.n == 20
    assert c.x0 == math.floor(-1 / (1.702 * 0.05 / 8))
    assert c.em == int(nx.shexp(np.array(-(80 << 3)), c.x0, 20))
    # by hand: x0 = floor(-1 / 0.0106375) = floor(-94.007) = -95; shexp(-640): t = -640 - 320 + 40 = -920 (above
    # the clamp 20 * x0 = -1900), q = floor(-920 / -95) = 9, r = -920 + 855 = -65, ((-65 >> 1) + 95) << 11 = 62 << 11
    assert (c.x0, c.em) == (-95, 126976)
    with pytest.raises(ValueError):
        nx.gelu_consts(0.05, lam=8.0)  # 2*8*1.702*log2(e) > 20: would saturate


@pytest.mark.parametrize("s", [0.02, 0.05, 0.1])
def test_lambda_gelu_close_to_gelu(s: float) -> None:
    x = np.arange(-128, 128)
    y = nx.gelu(x, nx.gelu_consts(s)) * s / 128
    ref = _gelu(x * s)
    err = np.abs(y - ref)
    # sig has 7 fractional bits and f = (2^31-1)//S is coarse when S ~ |x0| 2^(n+1): the error
    # grows like |x| * (2^-7 + 1/f); measured worst case 4.7 % of |x| at s = 0.05
    assert err.mean() < 0.06
    assert np.all(err <= 0.01 + np.abs(x * s) * 0.05)
    assert y[x == 0] == 0


def test_gelu_outputs_fit_requant_input() -> None:
    c = nx.gelu_consts(0.3)
    y = nx.gelu(np.array([-128, 127]), c)
    assert np.abs(y).max() <= 128 * 127


def test_lambda_gelu_beats_shiftgelu_on_outliers() -> None:
    """The reason λ-ShiftGELU exists (numerics.md §5.2): an outlier in the token corrupts ShiftGELU."""
    rng = np.random.default_rng(3)
    bulk = rng.normal(0, 0.8, size=(64, 191))
    tokens = np.concatenate([bulk, np.full((64, 1), 20.0)], axis=1)
    s = 20.0 / 127
    x = np.clip(np.round(tokens / s), -128, 127).astype(np.int64)
    ref = _gelu(x * s)
    err_l = np.abs(nx.gelu(x, nx.gelu_consts(s)) * s / 128 - ref).mean()
    err_s = np.abs(nx.gelu(x, nx.gelu_consts(s, "shift")) * s / 128 - ref).mean()
    assert err_l < 0.03 < err_s


# ---------------------------------------------------------------- LayerNorm


def test_isqrt_exact_and_digit_by_digit_agree() -> None:
    rng = np.random.default_rng(0)
    v = np.concatenate([rng.integers(0, 2 ** 62, size=2000), [0, 1, 2, 3, 4, 8, 9, 2 ** 62 - 1]])
    r = nx.isqrt(v)
    assert all(int(a) == math.isqrt(int(b)) == nx.isqrt_digit(int(b)) for a, b in zip(r[:300], v[:300], strict=True))
    assert all(int(a) == math.isqrt(int(b)) for a, b in zip(r, v, strict=True))


def test_round_half_even_div() -> None:
    s = np.array([5, 6, 7, -5, -6, -7, 4, -4, 0])
    # /4: 1.25 1.5 1.75 -1.25 -1.5 -1.75 1 -1 0 -> 1 2 2 -1 -2 -2 1 -1 0
    assert nx.round_half_even_div(s, 4).tolist() == [1, 2, 2, -1, -2, -2, 1, -1, 0]
    assert nx.round_half_even_div(np.array([5, 15, -5]), 10).tolist() == [0, 2, 0]


def test_mean_reciprocal_by_hand() -> None:
    """(m, sh) = (ceil(2^sh / K), 15 + 2 ceil(log2 K)), and the mean through it, worked by hand."""
    assert nx.mean_reciprocal(1) == (1 << 15, 15)  # l 0: n * 2^15 >> 15 = n
    assert nx.mean_reciprocal(3) == (174763, 19)  # 3 * 174763 = 2^19 + 1
    assert nx.mean_reciprocal(4) == (1 << 17, 19)  # a power of two: m = 2^(15 + l) exactly
    assert nx.mean_reciprocal(192) == (11184811, 31)  # Seg-T: 192 * 11184811 = 2^31 + 64
    assert nx.mean_reciprocal(2047) == (67141649, 37)  # 2047 * 67141649 = 2^37 + 2031 (< 2^27: 28 signed bits)
    m, sh = nx.mean_reciprocal(3)
    # 7 / 3: n = 7, 7 * 174763 = 1223341 >> 19 = 2, r 1 -> 2; -7 / 3: n = ~(-7) = 6, 6 * 174763 >> 19 = 2,
    # q = ~2 = -3, r = -7 + 9 = 2, 2 r > 3 -> -2
    assert nx.mean_by_reciprocal(np.array([7, -7, 0, -1, 4, -4]), 3, m, sh).tolist() == [2, -2, 0, 0, 1, -1]
    m, sh = nx.mean_reciprocal(4)  # ties: 1.5 -> 2, 2.5 -> 2, -1.5 -> -2, -2.5 -> -2, 0.5 -> 0, -0.5 -> 0
    assert nx.mean_by_reciprocal(np.array([6, 10, -6, -10, 2, -2]), 4, m, sh).tolist() == [2, 2, -2, -2, 0, 0]
    m, sh = nx.mean_reciprocal(192)  # the row sums' extremes, and 0.5 -> 0, 1.5 -> 2
    s = np.array([192 * 32767, -192 * 32768, 96, 288, -96, -288])
    assert nx.mean_by_reciprocal(s, 192, m, sh).tolist() == [32767, -32768, 0, 2, 0, -2]


def test_mean_reciprocal_bounds() -> None:
    """For every K <= MEAN_K_MAX: Granlund-Montgomery's condition 2^sh <= m K < 2^sh + K <= 2^sh + 2^l, and the
    widths the docstring states (m in [2^(15 + l), 2^(16 + l)), an int32; n m < 2^(31 + 2 l) <= 2^61)."""
    for k in range(1, nx.MEAN_K_MAX + 1):
        m, sh = nx.mean_reciprocal(k)
        lg = (sh - 15) // 2
        assert sh == 15 + 2 * lg and (1 << lg) >= k and (lg == 0 or (1 << (lg - 1)) < k)
        assert 0 <= m * k - (1 << sh) < k
        assert (1 << (15 + lg)) <= m < (1 << (16 + lg)) and m < (1 << 31)
        assert (k << 15) * m < (1 << 61)
    for bad in (0, -1, nx.MEAN_K_MAX + 1):
        with pytest.raises(ValueError, match="outside"):
            nx.mean_reciprocal(bad)
    m, sh = nx.mean_reciprocal(5)
    with pytest.raises(ValueError, match="outside the range"):
        nx.mean_by_reciprocal(np.array([5 * 32767 + 1]), 5, m, sh)
    with pytest.raises(ValueError, match="outside the range"):
        nx.floor_by_reciprocal(np.array([-5 * 32768 - 1]), 5, m, sh)


def _mean_edges(k: int) -> np.ndarray:
    """Row sums of K int16 values at the edges: the extremes, 0, and around multiples and half-multiples of K
    (ties when K is even) near both ends and the middle."""
    lo, hi = -k << 15, k * ((1 << 15) - 1)
    j = np.array([-32768, -32767, -32766, -4097, -2, -1, 0, 1, 2, 4097, 32765, 32766, 32767], dtype=np.int64)
    off = np.array([-1, 0, 1, k // 2 - 1, k // 2, k // 2 + 1, (k + 1) // 2, k - 1], dtype=np.int64)
    s = np.concatenate([(j[:, None] * k + off[None, :]).ravel(), [lo, lo + 1, hi - 1, hi, -1, 0, 1]])
    return s[(s >= lo) & (s <= hi)]


def _check_mean(s: np.ndarray, k: int) -> None:
    """The floor quotient (the proof's claim) and the rounded mean (what the engine stores) against the division.
    The rounding alone would hide a quotient one too low at r = 0 or one too high at r = K - 1 (the remainder K or
    -1 rounds to the same mean), so the quotient is compared on its own."""
    m, sh = nx.mean_reciprocal(k)
    assert np.array_equal(nx.floor_by_reciprocal(s, k, m, sh), s // k), k
    assert np.array_equal(nx.mean_by_reciprocal(s, k, m, sh), nx.round_half_even_div(s, k)), k


def test_mean_by_reciprocal_exhaustive_k() -> None:
    """Every K in 1..4096 (the engine takes K <= 2047) at the edges of the row-sum range, against the division."""
    for k in range(1, 4097):
        _check_mean(_mean_edges(k), k)


@pytest.mark.parametrize("k", [1, 2, 3, 7, 8, 24, 192])
def test_mean_by_reciprocal_every_sum(k: int) -> None:
    """Every row sum in the range (K 2^16 of them)."""
    _check_mean(np.arange(-k << 15, k * ((1 << 15) - 1) + 1, dtype=np.int64), k)


def test_mean_by_reciprocal_random() -> None:
    """A million random (K, sum) pairs, K up to MEAN_K_MAX, against the division."""
    rng = np.random.default_rng(53)
    ks = np.concatenate([rng.integers(1, 4097, 1500), rng.integers(4097, nx.MEAN_K_MAX + 1, 500)])
    for k in ks.tolist():
        _check_mean(rng.integers(-k << 15, k * ((1 << 15) - 1), 500, endpoint=True), k)


def test_layernorm_constant_row_gives_beta() -> None:
    x = np.full((2, 8), -300)
    m, e = nx.dyadic(1.0)
    o = 5 << e  # beta = 5 output units
    assert nx.layernorm(x, m, e, o).tolist() == [[5] * 8] * 2


@settings(max_examples=50, deadline=None)
@given(st.integers(0, 2 ** 31), st.sampled_from([8, 64, 192, 150]), st.floats(5.0, 5000.0))
def test_layernorm_close_to_float(seed: int, c: int, spread: float) -> None:
    """Error budget: the integer mean (round half even: 0.5/sd), floor(sqrt(sum y^2)) (relative 1/sqrt(sum y^2),
    plus C/8/sum from the mean's offset), the requant. The sd's relative error scales the normalised part,
    ref - beta: it scaled |ref| until a row of sd 3.1 with beta < 0 fell outside (hypothesis: seed 4677, c 8,
    spread 5.0); 20,000 draws of this budget, half at spreads of 5 to 8, stay 0.012 inside it."""
    rng = np.random.default_rng(seed)
    x = np.clip(np.round(rng.normal(rng.normal(0, 100), spread, size=(4, c))), -32768, 32767).astype(np.int64)
    s_out = 4 / 120
    gamma = rng.uniform(0.5, 1.5, size=c)
    beta = rng.normal(0, 0.3, size=c)
    ms, es, os_ = [], [], []
    for g, b in zip(gamma, beta, strict=True):
        m, e = nx.dyadic(g * math.sqrt(c) / 2 ** 30 / s_out)
        ms.append(m)
        es.append(e)
        os_.append(round(b / s_out * 2 ** e))
    y = nx.layernorm(x, np.array(ms), np.array(es), np.array(os_)) * s_out
    xf = x.astype(np.float64)
    ref = (xf - xf.mean(-1, keepdims=True)) / np.sqrt(xf.var(-1, keepdims=True)) * gamma + beta
    inside = np.abs(ref) < 127 * s_out
    sd = np.sqrt(xf.var(-1, keepdims=True))
    var_sum = ((xf - xf.mean(-1, keepdims=True)) ** 2).sum(-1, keepdims=True)
    rel = 1 / np.sqrt(np.maximum(var_sum, 1)) + c / (8 * np.maximum(var_sum, 1))
    tol = 0.04 + 0.5 / np.maximum(sd, 1e-9) * gamma.max() + np.abs(ref - beta) * rel
    assert np.all((np.abs(y - ref) <= tol)[inside])


def test_layernorm_close_to_float_small_spread_row() -> None:
    """The example hypothesis found against the old budget, kept: it must hold every run, not by chance."""
    test_layernorm_close_to_float.hypothesis.inner_test(4677, 8, 5.0)


def test_layernorm_bounds_on_extreme_rows() -> None:
    x = np.array([[32767] + [-32768] * 191, [-32768] * 191 + [32767]])
    z = nx.ln_normalize(x)
    assert np.abs(z).max() <= 2 ** 30
    wide = np.array([[32767, -32768] * 512])  # 1024 channels of extreme i16: var < 2^62 still
    assert np.abs(nx.ln_normalize(wide)).max() <= 2 ** 30


# ---------------------------------------------------------------- add, argmax, upsample


def test_int_add_hand_checked_and_saturates() -> None:
    # 0.5*a + 0.25*b with e = 2: ma = 2, mb = 1
    assert nx.int_add(np.array([3, -3]), np.array([1, 1]), 2, 1, 2).tolist() == [2, -1]
    big = nx.int_add(np.array([32767]), np.array([32767]), 1 << 20, 1 << 20, 20)
    assert big.tolist() == [32767]


def test_argmax_ties_go_to_the_lowest_class() -> None:
    logits = np.array([[1, 5, 5], [7, 7, 7], [-3, -4, -2]])
    assert nx.argmax_labels(logits).tolist() == [1, 0, 2]


def test_argmax_then_upsample_equals_upsample_then_argmax() -> None:
    rng = np.random.default_rng(0)
    logits = rng.integers(-5, 5, size=(3, 4, 6))  # many ties
    a = nx.upsample_nearest(nx.argmax_labels(logits), 4)
    up = np.repeat(np.repeat(logits, 4, axis=0), 4, axis=1)
    assert np.array_equal(a, nx.argmax_labels(up))
    assert a.shape == (12, 16)


# ---------------------------------------------------------------- fast paths vs the spec in Python ints
# numerics.py evaluates some ops through float BLAS, tables and in-place int64 buffers (its module
# docstring says why each is exact). These tests hold each against a line-by-line transcription of
# spec/numerics.md in Python ints (no width, no overflow), on random and extreme inputs.


def _spec_requant(z: int, m: int, e: int, o: int, bits: int) -> int:
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    return max(lo, min(hi, (z * m + o + (1 << (e - 1))) >> e))


def _spec_shexp(x: int, x0: int, n: int) -> int:
    t = x + (x >> 1) - (x >> 4)
    t = max(t, n * x0)
    q = t // x0
    r = t - x0 * q
    return ((r >> 1) - x0) << (n - q)


def _spec_shiftmax_row(row: list[int], x0: int, variant: str) -> list[int]:
    k, kk, rnd, clamp = {"ivit": (0, 0, 0, True), "precise": (3, 16, 1, False)}[variant]
    mx = max(row)
    e = [_spec_shexp((x - mx) << k, x0, 15) for x in row]
    s = sum(e)
    if clamp:
        s = min(s, (1 << 31) - 1)
    f = ((1 << (31 + kk)) - 1) // s
    return [min((v * f + rnd * (1 << (15 + kk))) >> (16 + kk), 32767) for v in e]


def _spec_shiftmax8_row(row: list[int], x0: int) -> tuple[list[int], int]:
    """precise8 written out: precise's e, S and f; pm = precise's p of the row maximum (e_max = |x0|·2^15),
    r = max(0, bit_length(pm) - 8), then each p rounded at 2^(31+r), shifted by 32 + r, clamped at 255."""
    mx = max(row)
    e = [_spec_shexp((x - mx) << 3, x0, 15) for x in row]
    f = ((1 << 47) - 1) // sum(e)
    pm = min((-x0 << 15) * f + (1 << 31) >> 32, 32767)
    r = max(0, pm.bit_length() - 8)
    return [min((v * f + (1 << (31 + r))) >> (32 + r), 255) for v in e], r


def _spec_lambda_gelu(x: int, c: nx.GeluConsts) -> int:
    xc = max(-c.L, min(c.L, x)) << c.k
    e = _spec_shexp(xc - c.M, c.x0, c.n)
    s = min(e + c.em, (1 << 31) - 1)
    f = ((1 << 31) - 1) // s
    return x * ((e * f) >> 24)


@pytest.mark.parametrize("k,alo,ahi,blo,bhi,path", [
    (192, -128, 127, -128, 127, "float32"),
    (1024, -128, -128, -128, -128, "float32"),  # bound exactly 2^24: every partial sum still exact
    (1025, -128, 127, -128, 127, "float64"),
    (1174, 0, 32767, -128, 127, "float64"),  # P·V: u15 x i8 over the decoder's tokens
    (64, -(2 ** 40), 2 ** 40, -(2 ** 13), 2 ** 13, "int64"),
])
def test_exact_matmul_paths_match_python_ints(k: int, alo: int, ahi: int, blo: int, bhi: int, path: str) -> None:
    rng = np.random.default_rng(k)
    a = rng.integers(alo, ahi + 1, size=(9, k), endpoint=False)
    b = rng.integers(blo, bhi + 1, size=(k, 7), endpoint=False)
    a[0, :] = alo if abs(alo) >= abs(ahi) else ahi  # a row and a column of the extreme value
    b[:, 0] = blo if abs(blo) >= abs(bhi) else bhi
    if ahi <= 127 and alo >= -128:
        a = a.astype(np.int8)
    if bhi <= 127 and blo >= -128:
        b = b.astype(np.int8)
    want = np.array(a.astype(object).dot(b.astype(object)), dtype=np.int64)
    got = nx.exact_matmul(a, b)
    assert got.dtype == np.int64 and np.array_equal(got, want), path


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2 ** 32 - 1), st.sampled_from([8, 16]), st.sampled_from(["int8", "int16", "int32", "int64"]))
def test_requant_matches_python_ints(seed: int, bits: int, dtype: str) -> None:
    rng = np.random.default_rng(seed)
    lim = {"int8": 127, "int16": 32767, "int32": 2 ** 31 - 1, "int64": 2 ** 31 - 1}[dtype]
    z = rng.integers(-lim, lim + 1, size=(6, 5))
    z[0] = [-lim, lim, 0, -1, 1]
    z = z.astype(dtype)
    m = rng.integers(2 ** 30, 2 ** 31, size=5) * rng.choice([-1, 1], size=5)
    e = rng.integers(1, 63, size=5)
    o = rng.integers(-(2 ** 60), 2 ** 60, size=5)
    o[0] = 0
    got = nx.requant(z, m, e, o, bits=bits)
    want = [[_spec_requant(int(z[i, j]), int(m[j]), int(e[j]), int(o[j]), bits) for j in range(5)] for i in range(6)]
    assert got.tolist() == want
    # per-tensor constants
    got = nx.requant(z, int(m[1]), int(e[1]), bits=bits)
    assert got.tolist() == [[_spec_requant(int(v), int(m[1]), int(e[1]), 0, bits) for v in r] for r in z]


@pytest.mark.parametrize("variant", ["precise", "ivit", "precise8"])
@pytest.mark.parametrize("x0", [-1, -8, -120, -3000, -(1 << 20)])
@pytest.mark.parametrize("n", [3, 200, 1025])  # short rows: direct path; long rows: per-row tables
def test_shiftmax_matches_python_ints(variant: str, x0: int, n: int) -> None:
    rng = np.random.default_rng(n - x0)
    rows = [rng.integers(-128, 128, size=n),
            np.full(n, -128), np.full(n, 127), np.full(n, 5),
            np.resize([-128, 127], n),  # the widest difference (u up to 255)
            np.clip(np.round(rng.normal(0, 20, size=n)), -128, 127)]
    x = np.stack(rows).astype(np.int8)
    got, got_r = nx.shiftmax_with_shift(x, x0, variant)
    if variant == "precise8":
        want, want_r = zip(*[_spec_shiftmax8_row([int(v) for v in r], x0) for r in x], strict=True)
    else:  # the u15 variants: the spec's §5.1 line, unchanged, and r = 0
        want, want_r = [_spec_shiftmax_row([int(v) for v in r], x0, variant) for r in x], [0] * len(x)
    assert got.dtype == np.int64 and got.tolist() == list(want) and got_r[:, 0].tolist() == list(want_r)
    assert np.array_equal(nx.shiftmax(x, x0, variant), got)
    # same integers from int64 input and from a 3-D (heads, rows, keys) stack
    assert np.array_equal(nx.shiftmax(x.astype(np.int64), x0, variant), got)
    p3, r3 = nx.shiftmax_with_shift(np.stack([x, x[::-1]]), x0, variant)
    assert np.array_equal(p3, np.stack([got, got[::-1]])) and np.array_equal(r3, np.stack([got_r, got_r[::-1]]))


@pytest.mark.parametrize("variant", ["precise", "ivit", "precise8"])
def test_shiftmax_table_path_equals_direct_path(variant: str) -> None:
    """Long rows of i8 scores go through the per-row tables; one extra row of wide scores forces the direct
    path on the whole array (w > n / 4). Both give the same p and r on the i8 rows."""
    rng = np.random.default_rng(11)
    n = 1025
    x = np.concatenate([rng.integers(-128, 128, size=(3, n)), np.full((1, n), 4), np.resize([127, -128], (1, n)),
                        np.clip(np.round(rng.normal(0, 2, size=(3, n))), -128, 127).astype(np.int64),
                        np.concatenate([[[127]], np.full((1, n - 1), -128)], axis=1)])  # dominant: r = 7
    seen_r = set()
    for s in (0.02, 0.1, 0.6):
        x0 = nx.shiftmax_x0(s, variant)
        p_tab, r_tab = nx.shiftmax_with_shift(x.astype(np.int8), x0, variant)  # w <= 256: n >= 4w, tables
        wide = np.concatenate([x, np.resize([0, -100000], (1, n))])  # w > 100000 > n / 4: direct
        p_dir, r_dir = nx.shiftmax_with_shift(wide, x0, variant)
        assert np.array_equal(p_tab, p_dir[:-1]) and np.array_equal(r_tab, r_dir[:-1]), s
        seen_r |= set(r_tab[:, 0].tolist())
    assert len(seen_r) >= (3 if variant == "precise8" else 1) and (variant == "precise8" or seen_r == {0})


def test_shiftmax_wide_scores_take_the_direct_path() -> None:
    x = np.array([[0, -5000, 3, -70000], [10, 10, 9, -1]])
    x0 = nx.shiftmax_x0(0.01, "precise")
    assert nx.shiftmax(x, x0).tolist() == [_spec_shiftmax_row(r, x0, "precise") for r in x.tolist()]


@pytest.mark.parametrize("s", [0.005, 0.02, 0.1, 0.9])
def test_lambda_gelu_table_matches_python_ints(s: float) -> None:
    c = nx.gelu_consts(s)
    every = np.arange(-128, 128)
    want = {int(v): _spec_lambda_gelu(int(v), c) for v in every}
    assert nx.gelu(every, c).tolist() == [want[int(v)] for v in every]  # 256 values: direct path
    x = np.random.default_rng(1).integers(-128, 128, size=(300, 40)).astype(np.int8)  # table path
    got = nx.gelu(x, c)
    assert got.dtype == np.int64 and got.tolist() == [[want[int(v)] for v in r] for r in x]


@pytest.mark.parametrize("s,m,e,o", [(0.02, 1 << 30, 31, 0), (0.1, -(3 << 29), 33, 5 << 20), (0.005, 1 << 30, 37, 0)])
def test_gelu_rq8_table_is_the_fused_stage(s: float, m: int, e: int, o: int) -> None:
    """The engine's table (hls/gemm.h load_gelu_table) entry x + 128 is RQ_8(lambda-GELU(x)), in Python ints."""
    c = nx.gelu_consts(s)
    t = nx.gelu_rq8_table(c, m, e, o)
    want = [max(-128, min(127, (_spec_lambda_gelu(x, c) * m + o + (1 << (e - 1))) >> e)) for x in range(-128, 128)]
    assert t.dtype == np.int8 and t.shape == (256,) and t.tolist() == want
    assert len(set(want)) > 8  # not a constant table: these scales use the range
    with pytest.raises(ValueError, match="elementwise"):
        nx.gelu_rq8_table(nx.gelu_consts(s, "shift"), m, e, o)
    with pytest.raises(ValueError, match="per-tensor"):
        nx.gelu_rq8_table(c, np.array([m, m]), e, o)


def test_tabulate_is_the_function_itself() -> None:
    x = np.random.default_rng(2).integers(-7, 40, size=5000)
    fn = lambda v: v * v - 3 * v  # noqa: E731
    assert np.array_equal(nx._tabulate(fn, x, -7, 39), fn(x))
    assert np.array_equal(nx._tabulate(fn, x[:10], -7, 39), fn(x[:10]))  # short input: no table


# --------------------------------------------------------------------------------------------
# pinned by hand: mutants of these survived a suite whose every check takes its constants from the same function
# --------------------------------------------------------------------------------------------
def test_dyadic_shift_range_ends_at_62() -> None:
    """§2: e in [1, 62]; 2^-32 is the smallest ratio (m = 2^30, e = 62), 2^-33 needs e = 63 and is refused
    (the exporter writes m = 0 below 2^-32, docs/numerics.md item 6). A bound of 63 survived every test."""
    assert nx.dyadic(2.0 ** -32) == (1 << 30, 62)
    with pytest.raises(ValueError, match="needs shift 63"):
        nx.dyadic(2.0 ** -33)
    assert nx.dyadic(0.75) == (3 << 29, 31) and nx.dyadic(-1.0) == (-(1 << 30), 30)


def test_exact_matmul_is_exact_where_float32_would_round() -> None:
    """int8 operands of 100..127 over K = 2000 (Seg-S fc2 has K = 1536): bound 2000 * 128 * 128 > 2^24, so
    float32 would round partial sums; ±128 operands (every other large-K test) make every product a multiple
    of 128 and hide it. Against int64 by hand."""
    rng = np.random.default_rng(5)
    a = rng.integers(100, 128, (6, 2000)).astype(np.int8)
    b = rng.integers(100, 128, (2000, 5)).astype(np.int8)
    want = a.astype(np.int64) @ b.astype(np.int64)
    assert np.array_equal(nx.exact_matmul(a, b), want)
    wrong = np.matmul(a.astype(np.float32), b.astype(np.float32)).astype(np.int64)
    assert not np.array_equal(wrong, want)  # the case is one where float32 is not enough


def test_gelu_constants_by_hand() -> None:
    """§5.2 by hand. ShiftGELU (I-ViT): k = 0, n = 23, x0 = floor(-1 / (1.702 s)); s = 0.05: -1 / 0.0851 = -11.75
    -> -12. λ-ShiftGELU, s = 0.03: L = floor(4 / 0.03) = 133, x0 = floor(-8 / (1.702 * 0.03)) = floor(-156.68) =
    -157, M = 133 << 3 = 1064, em = shexp(-M, x0, 20). (n = 22 and a ceil for L survived every test.)"""
    c = nx.gelu_consts(0.05, "shift")
    assert (c.variant, c.x0, c.n) == ("shift", -12, 23)
    c = nx.gelu_consts(0.03)
    assert (c.variant, c.L, c.x0, c.n, c.k) == ("lambda", 133, -157, 20, 3)
    assert c.em == int(nx.shexp(np.int64(-1064), -157, 20))
