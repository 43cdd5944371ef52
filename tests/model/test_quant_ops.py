"""Every torch integer op of ``iseg.model.quant`` equals its ``iseg.numerics`` twin (np.array_equal).

Random inputs from hypothesis plus hand-picked extremes: negative operands of floor division and
shifts, the int64 bounds of the spec, zero-variance LayerNorm rows, saturated Shiftmax rows.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from hypothesis.extra import numpy as hnp  # noqa: E402

from iseg import numerics as nx  # noqa: E402
from iseg.model import quant as q  # noqa: E402

pytestmark = pytest.mark.torch


def same(t: torch.Tensor, a: np.ndarray) -> bool:
    return t.dtype == torch.int64 and np.array_equal(t.numpy(), np.asarray(a, dtype=np.int64))


SHAPES = hnp.array_shapes(min_dims=1, max_dims=3, max_side=9)


def ints(lo: int, hi: int, shape=SHAPES):
    return hnp.arrays(np.int64, shape, elements=st.integers(lo, hi))


I31 = (1 << 31) - 1


@settings(max_examples=100, deadline=None)
@given(z=ints(-I31, I31), m=st.integers(-(1 << 31) + 1, (1 << 31) - 1), e=st.integers(1, 62),
       o=st.integers(-(1 << 61) + 1, (1 << 61) - 1), bits=st.sampled_from([8, 16]))
def test_requant_scalar(z, m, e, o, bits):
    assert same(q.requant_t(z, m, e, o, bits), nx.requant(z, m, e, o, bits))


@settings(max_examples=100, deadline=None)
@given(data=st.data(), c=st.integers(1, 8), rows=st.integers(1, 5))
def test_requant_per_channel(data, c, rows):
    z = data.draw(ints(-I31, I31, (rows, c)))
    m = data.draw(ints(-(1 << 31) + 1, (1 << 31) - 1, (c,)))
    e = data.draw(ints(1, 62, (c,)))
    o = data.draw(ints(-(1 << 40), 1 << 40, (c,)))
    assert same(q.requant_t(z, m, e, o, 8), nx.requant(z, m, e, o, 8))


def test_requant_extremes_and_negative_rounding():
    z = np.array([-I31, -3, -2, -1, 0, 1, 2, 3, I31], dtype=np.int64)
    for m, e in [((1 << 30), 31), (-(1 << 31) + 1, 1), ((1 << 30) + 12345, 62), (0, 1)]:
        assert same(q.requant_t(z, m, e, -5, 16), nx.requant(z, m, e, -5, 16))
    with pytest.raises(OverflowError):
        q.requant_t(np.array([1 << 31]), 1 << 30, 30)


@settings(max_examples=100, deadline=None)
@given(x=ints(-(1 << 24), 0), x0=st.integers(-(1 << 16), -1), n=st.integers(1, 23))
def test_shexp(x, x0, n):
    assert same(q.shexp_t(x, x0, n), nx.shexp(x, x0, n))


@settings(max_examples=60, deadline=None)
@given(x=hnp.arrays(np.int64, st.tuples(st.integers(1, 4), st.integers(1, 80)), elements=st.integers(-128, 127)),
       scale=st.floats(0.002, 2.0), variant=st.sampled_from(sorted(nx.SHIFTMAX_VARIANTS)))
def test_shiftmax(x, scale, variant):
    """p and the row shift r (precise8: u8 mantissas, real = p·2^(r-15); u15 variants: r = 0)."""
    x0 = nx.shiftmax_x0(scale, variant)
    p, r = q.shiftmax_with_shift_t(x, x0, variant)
    want_p, want_r = nx.shiftmax_with_shift(x, x0, variant)
    assert same(p, want_p) and same(r, want_r)
    assert same(q.shiftmax_t(x, x0, variant), want_p)


def test_shiftmax_extreme_rows():
    rows = np.array([[127] * 7 + [-128], [-128] * 8, [0] * 8, [127] * 8, list(range(-128, 128, 32))])
    for variant in nx.SHIFTMAX_VARIANTS:
        for s in (0.001, 0.05, 1.0):
            x0 = nx.shiftmax_x0(s, variant)
            p, r = q.shiftmax_with_shift_t(rows, x0, variant)
            want_p, want_r = nx.shiftmax_with_shift(rows, x0, variant)
            assert same(p, want_p) and same(r, want_r)


@pytest.mark.parametrize("variant", sorted(nx.SHIFTMAX_VARIANTS))
def test_shiftmax_long_rows_every_shift(variant):
    """(heads, rows, keys) stacks of 1..1025 keys: precise8's r from 0 (diffuse rows) to 7 (a dominant key)."""
    rng = np.random.default_rng(3)
    seen = set()
    for n in (1, 5, 40, 100, 200, 1025):
        x = np.concatenate([rng.integers(-128, 128, size=(2, 3, n)), np.full((2, 1, n), 9),
                            np.clip(np.round(rng.normal(0, 4, size=(2, 2, n))), -128, 127).astype(np.int64)], axis=1)
        x[1, 0, 0] = 127
        x[1, 0, 1:] = -128
        for s in (0.01, 0.1, 0.7):
            x0 = nx.shiftmax_x0(s, variant)
            p, r = q.shiftmax_with_shift_t(x, x0, variant)
            want_p, want_r = nx.shiftmax_with_shift(x, x0, variant)
            assert same(p, want_p) and same(r, want_r), (n, s)
            assert tuple(r.shape) == (2, 6, 1)
            seen |= set(want_r.ravel().tolist())
    assert seen == (set(range(8)) if variant == "precise8" else {0}), seen


@settings(max_examples=60, deadline=None)
@given(x=hnp.arrays(np.int64, st.tuples(st.integers(1, 4), st.integers(1, 40)), elements=st.integers(-128, 127)),
       scale=st.floats(0.01, 0.5), variant=st.sampled_from(["lambda", "shift"]), lam=st.sampled_from([3.0, 4.0]))
def test_gelu(x, scale, variant, lam):
    c = nx.gelu_consts(scale, variant, lam=lam)
    assert same(q.gelu_t(x, c), nx.gelu(x, c))


def test_gelu_full_int8_range():
    x = np.arange(-128, 128, dtype=np.int64).reshape(2, 128)
    for variant in ("lambda", "shift"):
        for s in (0.005, 0.05, 0.3):
            c = nx.gelu_consts(s, variant)
            assert same(q.gelu_t(x, c), nx.gelu(x, c))


@settings(max_examples=100, deadline=None)
@given(v=ints(0, (1 << 62) - 1))
def test_isqrt(v):
    assert same(q.isqrt_t(torch.from_numpy(v)), nx.isqrt(v))


def test_isqrt_perfect_squares_and_neighbours():
    r = np.array([0, 1, 2, 3, 46340, 46341, 2147483646, 2147483647], dtype=np.int64)
    v = np.concatenate([r * r, r * r + 1, np.maximum(r * r - 1, 0), [(1 << 62) - 1]])
    assert same(q.isqrt_t(torch.from_numpy(v)), nx.isqrt(v))


@settings(max_examples=100, deadline=None)
@given(s=ints(-(1 << 40), 1 << 40), c=st.integers(1, 1000))
def test_round_half_even_div(s, c):
    assert same(q.round_half_even_div_t(torch.from_numpy(s), c), nx.round_half_even_div(s, c))


@settings(max_examples=60, deadline=None)
@given(x=hnp.arrays(np.int64, st.tuples(st.integers(1, 4), st.integers(1, 64)),
                    elements=st.integers(-(1 << 15), (1 << 15) - 1)))
def test_ln_normalize_i16(x):
    assert same(q.ln_normalize_t(x), nx.ln_normalize(x))


@settings(max_examples=80, deadline=None)
@given(x=hnp.arrays(np.int64, st.tuples(st.integers(1, 3), st.integers(1, 16)),
                    elements=st.integers(-(1 << 27), (1 << 27) - 1)))
def test_ln_normalize_i32(x):
    """Mask-logit widths: |x| < 2^27 keeps the variance below the spec's 2^62 for C <= 16."""
    assert same(q.ln_normalize_t(x), nx.ln_normalize(x))


def test_layernorm_edge_rows():
    x = np.array([[5] * 6, [-32768] * 5 + [32767], [0, 0, 0, 0, 0, 1], [-1, -2, -3, -4, -5, -7]], dtype=np.int64)
    m = np.array([1 << 30, -(1 << 30), (1 << 31) - 1, 0, 1 << 30, 1 << 30])
    e = np.array([30, 31, 40, 1, 62, 20])
    o = np.array([0, -7, 1 << 35, 3, -(1 << 60), 1])
    assert same(q.layernorm_t(x, m, e, o, 8), nx.layernorm(x, m, e, o, 8))
    assert same(q.layernorm_t(x, m, e, o, 16), nx.layernorm(x, m, e, o, 16))


@settings(max_examples=60, deadline=None)
@given(data=st.data(), ma=st.integers(-(1 << 31) + 1, (1 << 31) - 1), mb=st.integers(-(1 << 31) + 1, (1 << 31) - 1),
       e=st.integers(1, 46))
def test_int_add(data, ma, mb, e):
    a = data.draw(ints(-(1 << 15), (1 << 15) - 1, (3, 5)))
    b = data.draw(ints(-(1 << 15), (1 << 15) - 1, (3, 5)))
    assert same(q.int_add_t(a, b, ma, mb, e), nx.int_add(a, b, ma, mb, e))


@settings(max_examples=60, deadline=None)
@given(data=st.data(), k=st.integers(1, 50), big=st.booleans())
def test_exact_matmul(data, k, big):
    """Both twins against Python ints. ``big`` takes the int64 path (K·|a|·|b| >= 2^53) but stays inside int64:
    50·(2^28)^2 < 2^62. (At 2^30 the sums left int64 and both twins wrapped alike: equal to each other, not to
    the product.)"""
    lim = (1 << 28) if big else 127
    a = data.draw(ints(-lim, lim, (3, k)))
    b = data.draw(ints(-lim, lim, (k, 4)))
    want = np.array(a.astype(object).dot(b.astype(object)), dtype=np.int64)
    assert np.array_equal(nx.exact_matmul(a, b), want)
    assert same(q.exact_matmul_t(a, b), want)


def test_exact_matmul_int64_corner():
    """The largest sum the int64 path above draws, by hand: 50 products of (2^28 - 1)^2 = 50·(2^56 - 2^29 + 1)
    = 3602879675052851250 (62 bits, odd: no float64 holds it), with both signs."""
    lim = (1 << 28) - 1
    a = np.full((2, 50), lim, dtype=np.int64)
    a[1] = -lim
    b = np.full((50, 3), lim, dtype=np.int64)
    b[:, 1] = -lim
    big = 3602879675052851250
    want = np.array([[big, -big, big], [-big, big, -big]], dtype=np.int64)
    assert np.array_equal(nx.exact_matmul(a, b), want)
    assert same(q.exact_matmul_t(a, b), want)


def test_floor_semantics_on_negatives():
    """The spec's // and >> are floor: -7 // 2 = -4 and -7 >> 1 = -4 (C would give -3)."""
    x = torch.tensor([-7], dtype=torch.int64)
    assert int(q._shr(x, 1)) == -4
    assert int(torch.div(x, 2, rounding_mode="floor")) == -4
    assert same(q.shexp_t(np.array([-1, -15, -16, -17]), -3, 5), nx.shexp(np.array([-1, -15, -16, -17]), -3, 5))
