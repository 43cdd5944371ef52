"""The estimate models the engine's code: hand-computed cycle counts of small cases, and the cycle
count of the C-simulation (ISEG_CYCLES in hls/) equal to generator/estimate.py row by row."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "hls"))
from _hls_harness import (  # noqa: E402
    OP_ATTENTION,
    OP_LAYERNORM,
    OP_LINEAR,
    Blob,
    Harness,
    Scratch,
    build,
    layer,
    rq_scalar,
)

from iseg.generator import estimate as est  # noqa: E402

# the harness's TestCfg (tests/hls/harness.cpp): R 4, C 8, AXI 16 bytes, 3 output lanes, 3 Shiftmax
# lanes, 5 LayerNorm lanes, 5 score lanes
HARNESS_SHAPE = est.ArrayShape(rows=4, cols=8, pack=2, out_lanes=3, ln_lanes=5, sm_lanes=3, axi_bytes=16, s_lanes=5)


def test_gemm_cycles_by_hand() -> None:
    """T 10, K 20, N 12 on the harness array, per-channel rq and a bias, 200 bytes to prefetch."""
    a = HARNESS_SHAPE
    cycles, parts = est.gemm_cycles(a, 10, 20, 12, bias=True, rq_tab=True, rq2_tab=False, prefetch_bytes=200)
    consts = max(12, 3 + 12 * 1) + 16  # bias 48 B = 3 beats, one 16-B record per channel
    a0 = 4 * 2 + 16  # 4 rows x ceil(20/16) beats + pipeline
    drain = 11  # ceil(4*8 / 3)
    # blocks 3 (rows 4, 4, 2), tiles 2: A share ceil(8/2) = 4, weight share ceil(13 beats / 6 tiles) = 3
    first = max(20, 4, 3)
    mid = max(20, drain, 4, 3)
    last = max(20, drain, 3)
    steps = first + (2 * 2 - 1) * mid + 2 * last
    assert (consts, a0, steps) == (31, 24, 120)
    assert cycles == consts + a0 + steps + drain + 16 == 202
    assert parts["array"] == 3 * 2 * 20


def test_attention_cycles_by_hand() -> None:
    """T 9 keys, 1 head of 16 on the harness array: blocks of 4, 4, 1 query rows, software-pipelined."""
    a = HARNESS_SHAPE
    cycles, parts = est.attention_cycles(a, 9, 1, 16)
    consts = 16 + 16
    kv = 2 * 9 * 1 + 16
    q_it, qk_it = 4 * 1, 16 + 1 * max(16, 7) + 7  # key tiles ceil(9/8) = 2, score drain ceil(32/5) = 7
    pv_it = 2 * (9 + 11)  # channel tiles ceil(16/8) = 2; the PV loop runs T iterations at II = 2
    q, qk, pv = q_it + 16, qk_it + 16, 2 * (2 * 9 + 16 + 11 + 16)
    sm_full = 4 * 3 + 66 + 4 * 3  # ceil(9/3) = 3 steps per row and pass, the divider's latency once
    sm_last = 1 * 3 + 66 + 1 * 3 + 3 * 3  # one row + three zero-filled rows
    assert (est.sm_block_steps(4, 4, 9, 3), est.sm_block_steps(1, 4, 9, 3)) == (sm_full, sm_last)
    rest0 = sm_full - (q_it + qk_it)  # SM(0) under QK(1)
    rest1 = sm_full - (pv_it + q_it + qk_it)  # SM(1) under PV(0), QK(2)
    rest2 = sm_last - pv_it  # SM(2) under PV(1)
    assert (rest0, rest1, rest2) == (47, 7, 41)
    body = (q + qk) + (q + qk + rest0 + 16) + (pv + q + qk + rest1 + 16) + (pv + rest2 + 16) + pv
    assert cycles == consts + kv + body
    assert parts["shiftmax"] == rest0 + rest1 + rest2 + 3 * 16


@pytest.fixture(scope="module")
def harness(tmp_path_factory: pytest.TempPathFactory) -> Harness:
    return Harness(build(tmp_path_factory.mktemp("est_hls")))


@pytest.mark.parametrize("T,K,N", [(10, 20, 12), (33, 64, 40), (7, 96, 8)])
def test_csim_counts_gemm(harness: Harness, T: int, K: int, N: int) -> None:
    """One LINEAR row: the engine's counted cycles = estimate (+ its weight prefetch before the loop)."""
    rng = np.random.default_rng(T)
    blob, sc = Blob(), Scratch()
    x = sc.alloc("x", (T, K), np.int8, rng.integers(-128, 128, (T, K)))
    y = sc.alloc("y", (T, N), np.int8)
    d = layer(op=OP_LINEAR, T=T, K=K, N=N, out_bits=8, in_=x, in_stride=K, out=y, out_stride=N,
              w=blob.add(rng.integers(-128, 128, (K, N)), np.int8), b=blob.add(rng.integers(-99, 99, N), np.int32),
              rq=blob.rq_table(1 << 30, 40, 0, N))
    rc, _ = harness.run([d], blob.array(), sc.array())
    assert rc == 0, harness.error()
    cycles, _ = est.gemm_cycles(HARNESS_SHAPE, T, K, N, bias=True, rq_tab=True, rq2_tab=False, prefetch_bytes=0)
    assert harness.last_cycles() == cycles + est.cdiv(K * N, 16) + est.PIPE


@pytest.mark.parametrize("T,heads,dh", [(9, 1, 16), (21, 2, 8), (4, 1, 8), (40, 1, 64)])
def test_csim_counts_attention(harness: Harness, T: int, heads: int, dh: int) -> None:
    rng = np.random.default_rng(T)
    blob, sc = Blob(), Scratch()
    D = heads * dh
    qkv = sc.alloc("qkv", (T, 3 * D), np.int8, rng.integers(-128, 128, (T, 3 * D)))
    o = sc.alloc("o", (T, D), np.int8)
    d = layer(op=OP_ATTENTION, T=T, N=D, heads=heads, d_head=dh, in_=qkv, in_stride=3 * D, out=o, out_stride=D,
              sm_x0=-80, rq=rq_scalar(1 << 30, 40), rq2=rq_scalar(1 << 30, 45))
    rc, _ = harness.run([d], blob.array(), sc.array())
    assert rc == 0, harness.error()
    assert harness.last_cycles() == est.attention_cycles(HARNESS_SHAPE, T, heads, dh)[0]


def test_csim_counts_layernorm(harness: Harness) -> None:
    rng = np.random.default_rng(3)
    blob, sc = Blob(), Scratch()
    x = sc.alloc("x", (6, 23), np.int16, rng.integers(-999, 999, (6, 23)))
    y = sc.alloc("y", (6, 23), np.int8)
    d = layer(op=OP_LAYERNORM, T=6, N=23, out_bits=8, in_=x, in_stride=23, out=y, out_stride=23,
              rq=blob.rq_table(1 << 30, 24, 0, 23))
    rc, _ = harness.run([d], blob.array(), sc.array())
    assert rc == 0, harness.error()
    assert harness.last_cycles() == 6 * (3 * (est.cdiv(23, 5) + est.PIPE) + est.ISQRT + est.DIV)


@pytest.mark.parametrize("T,C,N", [(10, 23, 12), (9, 40, 17)])
def test_csim_counts_layernorm_fused_into_linear(harness: Harness, T: int, C: int, N: int) -> None:
    """A LAYERNORM row followed by the LINEAR reading its output runs inside that LINEAR's left-operand
    loader: same bytes as the two rows run apart (the LayerNorm output too), cycles = the estimate."""
    rng = np.random.default_rng(T + C)
    blob, sc = Blob(), Scratch()
    x = sc.alloc("x", (T, C), np.int16, rng.integers(-3000, 3000, (T, C)))
    h = sc.alloc("h", (T, C), np.int8)
    y = sc.alloc("y", (T, N), np.int8)
    ln = layer(op=OP_LAYERNORM, T=T, N=C, out_bits=8, in_=x, in_stride=C, out=h, out_stride=C,
               rq=blob.rq_table(1 << 30, 26, 3, C))
    lin = layer(op=OP_LINEAR, T=T, K=C, N=N, out_bits=8, in_=h, in_stride=C, out=y, out_stride=N,
                w=blob.add(rng.integers(-128, 128, (C, N)), np.int8), b=blob.add(rng.integers(-99, 99, N), np.int32),
                rq=blob.rq_table(1 << 30, 38, 0, N))
    b = blob.array()
    apart = sc.array()
    for row in (ln, lin):
        rc, _ = harness.run([row], b, apart)
        assert rc == 0, harness.error()
    fused = sc.array()
    traced: dict[int, bytes] = {}
    rc, _ = harness.run([ln, lin], b, fused, trace=lambda i, data: traced.setdefault(i, data))
    assert rc == 0, harness.error()
    assert np.array_equal(sc.get(fused, "h"), sc.get(apart, "h"))
    assert np.array_equal(sc.get(fused, "y"), sc.get(apart, "y"))
    assert traced[0] == sc.get(apart, "h").tobytes() and sorted(traced) == [0, 1]
    cycles, _ = est.gemm_cycles(HARNESS_SHAPE, T, C, N, bias=True, rq_tab=True, rq2_tab=False, prefetch_bytes=0,
                                ln=True)
    assert harness.last_cycles() == cycles + est.cdiv(C * N, 16) + est.PIPE
