"""The element and row kernels of ``hls/`` against ``iseg.numerics``: bit-exact, random + extremes."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from iseg import numerics as nx

pytestmark = pytest.mark.csim

I31 = (1 << 31) - 1


# ---- requant -------------------------------------------------------------------------------
@settings(max_examples=200, deadline=None)
@given(z=st.lists(st.integers(-I31, I31), min_size=1, max_size=16),
       m=st.integers(-I31, I31), e=st.integers(1, 62), o=st.integers(-(1 << 60), 1 << 60),
       bits=st.sampled_from([8, 16]))
def test_requant_random(hls, z, m, e, o, bits):
    z = np.array(z, dtype=np.int64)
    assert np.array_equal(hls.requant(z, m, e, o, bits), nx.requant(z, m, e, o, bits))


@pytest.mark.parametrize("bits", [8, 16])
def test_requant_extremes_per_channel(hls, bits):
    z = np.array([[I31, -I31, 0, 1, -1, 1 << 30, -(1 << 30), 12345]] * 4, dtype=np.int64)
    m = np.array([I31, -I31, 1 << 30, -(1 << 30), 0, 1, I31, -1], dtype=np.int64)
    e = np.array([1, 62, 31, 30, 1, 1, 62, 2], dtype=np.int64)
    o = np.array([0, (1 << 60), -(1 << 60), 7, -7, 0, 1 << 59, 0], dtype=np.int64)
    assert np.array_equal(hls.requant(z, m, e, o, bits), nx.requant(z, m, e, o, bits))
    # ties: (z*m + 2^(e-1)) >> e rounds half toward +inf for both signs
    zt = np.array([[1, -1, 3, -3, 5, -5, 2, -2]], dtype=np.int64)
    assert np.array_equal(hls.requant(zt, 1, 1, 0, bits), nx.requant(zt, 1, 1, 0, bits))


# ---- shexp ---------------------------------------------------------------------------------
@settings(max_examples=200, deadline=None)
@given(x=st.lists(st.integers(-(1 << 20), 0), min_size=1, max_size=32), x0=st.integers(-(1 << 20), -1),
       n=st.sampled_from([0, 1, 15, 20, 23, 32]))
def test_shexp_random(hls, x, x0, n):
    x = np.array(x, dtype=np.int64)
    assert np.array_equal(hls.shexp(x, x0, n), nx.shexp(x, x0, n))


@pytest.mark.parametrize("n", [15, 20, 23])
@pytest.mark.parametrize("x0", [-1, -2, -7, -16, -161, -4096])
def test_shexp_every_q_including_saturation(hls, n, x0):
    """Sweep x so that q takes every value 0..n, including q == n (the saturated end)."""
    lo = (n + 2) * x0 * 2  # past the saturation point t <= n*x0
    x = np.arange(lo, 1, dtype=np.int64) if -lo < 20000 else np.linspace(lo, 0, 20001).astype(np.int64)
    got, want = hls.shexp(x, x0, n), nx.shexp(x, x0, n)
    assert np.array_equal(got, want)
    t = np.maximum(x + (x >> 1) - (x >> 4), n * x0)
    assert (t // x0 == n).any() and (t // x0 == 0).any()


# ---- isqrt / int_add -----------------------------------------------------------------------
def test_isqrt_digit(hls):
    rng = np.random.default_rng(1)
    edge = [0, 1, 2, 3, 4, 15, 16, 17, (1 << 62) - 1, (1 << 31) ** 2 - 1, ((1 << 31) - 1) ** 2]
    sq = rng.integers(0, 1 << 31, 200, dtype=np.int64) ** 2
    v = np.concatenate([edge, sq, sq - 1, sq + 1, rng.integers(0, 1 << 62, 2000, dtype=np.int64)])
    v = v[(v >= 0) & (v < (1 << 62))]
    assert np.array_equal(hls.isqrt(v), nx.isqrt(v))
    assert all(int(hls.isqrt(np.array([u]))[0]) == nx.isqrt_digit(int(u)) for u in v[:50])


@settings(max_examples=100, deadline=None)
@given(a=st.lists(st.integers(-32768, 32767), min_size=1, max_size=32), data=st.data(),
       ma=st.integers(-I31, I31), mb=st.integers(-I31, I31), e=st.integers(1, 62))
def test_int_add_random(hls, a, data, ma, mb, e):
    a = np.array(a, dtype=np.int64)
    b = np.array(data.draw(st.lists(st.integers(-32768, 32767), min_size=a.size, max_size=a.size)), dtype=np.int64)
    assert np.array_equal(hls.int_add(a, b, ma, mb, e), nx.int_add(a, b, ma, mb, e))


def test_int_add_saturates(hls):
    a = np.array([32767, -32768, 32767, -32768, 0])
    b = np.array([32767, -32768, -32768, 32767, 0])
    for ma, mb, e in [(1 << 30, 1 << 30, 30), (I31, I31, 31), (-(1 << 30), 1 << 30, 29)]:
        assert np.array_equal(hls.int_add(a, b, ma, mb, e), nx.int_add(a, b, ma, mb, e))


# ---- Shiftmax ------------------------------------------------------------------------------
@pytest.mark.parametrize("variant", ["precise", "ivit", "precise8"])
@pytest.mark.parametrize("n", [1, 2, 7, 64, 197, 257])
@pytest.mark.parametrize("scale", [0.01, 0.05, 0.12, 0.5])
def test_shiftmax_random_rows(hls, variant, n, scale):
    rng = np.random.default_rng(n)
    x = rng.integers(-128, 128, size=(5, n), dtype=np.int64)
    x0 = nx.shiftmax_x0(scale, variant)
    _same_shiftmax(hls, x, x0, variant)


def _same_shiftmax(hls, x, x0: int, variant: str) -> np.ndarray:
    """hls shiftmax_row's (p, r) == numerics.shiftmax_with_shift's; returns r."""
    p, r = hls.shiftmax_with_shift(x, x0, variant)
    p_ref, r_ref = nx.shiftmax_with_shift(x, x0, variant)
    assert np.array_equal(p, p_ref)
    assert np.array_equal(r, r_ref)
    return r


@pytest.mark.parametrize("variant", ["precise", "ivit", "precise8"])
def test_shiftmax_extremes(hls, variant):
    n = 300
    rows = np.array([
        np.full(n, -128), np.full(n, 127), np.full(n, 0),  # all ties
        np.where(np.arange(n) == 5, 127, -128),  # one spike
        np.where(np.arange(n) % 2 == 0, 127, -128),  # half/half
        np.arange(n) % 256 - 128,  # every value
    ], dtype=np.int64)
    for scale in (0.002, 0.05, 1.0):
        x0 = nx.shiftmax_x0(scale, variant)
        _same_shiftmax(hls, rows, x0, variant)


@pytest.mark.parametrize("n", [1, 2, 257, 320])  # <= the harness NMAX
def test_shiftmax_precise8_row_shift_extremes(hls, n):
    """precise8's per-row shift at both ends: a diffuse row (all ties, n >= 256: every p < 2^-8, so r = 0 and
    the u8 mantissas are precise's u15 values) and one dominant score (pm = 32767: r = 7)."""
    x0 = nx.shiftmax_x0(0.05, "precise8")
    ties = np.zeros((1, n), dtype=np.int64)
    spike = np.where(np.arange(n) == n // 2, 127, -128)[None, :]
    r = _same_shiftmax(hls, np.concatenate([ties, spike]), x0, "precise8")
    assert r[1, 0] == 7
    if n >= 256:
        assert r[0, 0] == 0
        assert np.array_equal(hls.shiftmax(ties, x0, "precise8"), hls.shiftmax(ties, x0, "precise"))
    # every r in between: a spike over n - 1 ties, the spike's margin sweeping the row maximum's probability
    rows = np.array([np.where(np.arange(300) == 0, m, 0) for m in range(0, 128)], dtype=np.int64)
    r_all = _same_shiftmax(hls, rows, x0, "precise8")
    assert set(r_all[:, 0].tolist()) == set(range(8))


@settings(max_examples=60, deadline=None)
@given(row=st.lists(st.integers(-128, 127), min_size=1, max_size=300), scale=st.floats(0.002, 2.0),
       variant=st.sampled_from(["precise", "ivit", "precise8"]))
def test_shiftmax_hypothesis(hls, row, scale, variant):
    x = np.array([row], dtype=np.int64)
    x0 = nx.shiftmax_x0(scale, variant)
    _same_shiftmax(hls, x, x0, variant)


# ---- GELU ----------------------------------------------------------------------------------
ALL_I8 = np.arange(-128, 128, dtype=np.int64)


@pytest.mark.parametrize("scale", [0.005, 0.02, 0.05, 0.1, 0.3])
def test_gelu_lambda_every_input(hls, scale):
    c = nx.gelu_consts(scale, "lambda")
    x = ALL_I8.reshape(1, -1)
    want = nx.gelu(x, c)
    assert np.array_equal(hls.gelu(x, c), want)
    assert np.array_equal(hls.gelu_lambda(ALL_I8, c), want[0])  # the element-wise path the GEMM fuses


@pytest.mark.parametrize("scale", [0.003, 0.005, 0.05, 0.3])
def test_gelu_shift_rows(hls, scale):
    """0.003: below s ~ 0.0046 the sum S of a row whose maximum is at most 0 passes 2^31 - 1 and its clamp acts
    (without that scale, dropping the clamp from hls/gelu.h survived every test)."""
    c = nx.gelu_consts(scale, "shift")
    rng = np.random.default_rng(3)
    x = np.concatenate([rng.integers(-128, 128, size=(6, 77)), np.full((1, 77), -128), np.full((1, 77), 127),
                        np.full((1, 77), 0), np.tile(ALL_I8[:77], (1, 1)), rng.integers(-128, 1, size=(2, 77)),
                        np.full((1, 77), -1)])
    assert np.array_equal(hls.gelu(x, c), nx.gelu(x, c))


@settings(max_examples=60, deadline=None)
@given(row=st.lists(st.integers(-128, 127), min_size=1, max_size=200), scale=st.floats(0.003, 0.5),
       variant=st.sampled_from(["lambda", "shift"]), k=st.integers(0, 3))
def test_gelu_hypothesis(hls, row, scale, variant, k):
    c = nx.gelu_consts(scale, variant, k=k)
    x = np.array([row], dtype=np.int64)
    assert np.array_equal(hls.gelu(x, c), nx.gelu(x, c))
