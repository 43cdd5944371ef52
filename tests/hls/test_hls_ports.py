"""The C-simulation check of on-chip memory ports (hls/iseg_ports.h): its counting rules, and that it sees
real excesses in engine loops, not only the probe's."""

from __future__ import annotations

import numpy as np
import pytest
from _hls_harness import OP_LAYERNORM, OP_LINEAR, Blob, Scratch, layer


@pytest.mark.parametrize("accesses,ii,want", [
    ([(0, True), (1, True)], 1, []),  # two writes: the two ports
    ([(0, True), (1, True), (2, True)], 1, [("PORT_PROBE", "m", 3, 2)]),  # a third word: one too many
    ([(5, True)] * 6, 1, []),  # bytes of one word written together: one byte-enabled write
    ([(5, False)] * 3 + [(6, True)], 1, []),  # one word read three times is one read
    ([(5, False), (5, True), (6, True)], 1, [("PORT_PROBE", "m", 3, 2)]),  # read and write of a word: two
    ([(w, False) for w in range(4)], 2, []),  # II = 2: four accesses fit
    ([(w, True) for w in range(5)], 2, [("PORT_PROBE", "m", 5, 4)]),
])
def test_counting_rules(hls, accesses, ii, want) -> None:
    """One pipelined iteration on a one-bank buffer; the same accesses again outside any pipelined loop (the
    probe's sequential part) are never counted."""
    assert hls.port_probe(accesses, ii) == want


def _ln_linear(rng, t: int, c: int, n: int, cols: int):
    blob, sc = Blob(), Scratch()
    x = sc.alloc("x", (t, c), np.int16, rng.integers(-3000, 3000, (t, c)))
    h = sc.alloc("h", (t, c), np.int8)
    y = sc.alloc("y", (t, n), np.int8)
    ln = layer(op=OP_LAYERNORM, T=t, N=c, out_bits=8, in_=x, in_stride=c, out=h, out_stride=c,
               rq=blob.rq_table(1 << 30, 26, 3, c))
    lin = layer(op=OP_LINEAR, T=t, K=c, N=n, out_bits=8, in_=h, in_stride=c, out=y, out_stride=n,
                w=blob.add_weights(rng.integers(-128, 128, (c, n)), cols), b=-1, rq=blob.rq_table(1 << 30, 30, 0, n))
    return ln, lin, blob, sc


def test_engine_loops_fit_their_banks(hls) -> None:
    """A plain LINEAR on the harness array: the A loader (8 bytes, two 4-element words of a row bank per step),
    the weight prefetch (min(beat, C) bytes: at most two rows of w), the output lanes (3 consecutive channels,
    constants cyclic over 3 banks): every pipelined loop within its banks."""
    rng = np.random.default_rng(1)
    _, lin, blob, sc = _ln_linear(rng, 9, 40, 12, hls.C)
    rc, _ = hls.run([lin], blob.array(), sc.array())
    assert rc == 0, hls.error()
    assert hls.ports() == []


def test_engine_excess_is_reported(hls) -> None:
    """The harness runs LN_LANES 5 with 4-element words (A_WORD 4): the fused LayerNorm's normalise step reads and
    writes five channels in place, i.e. two words of a row bank each way, 4 accesses where 2 fit. The planner never
    emits that (LN_LANES <= A_WORD, a power of two); the check must see it in both loops the loader runs in."""
    rng = np.random.default_rng(2)
    ln, lin, blob, sc = _ln_linear(rng, 9, 40, 12, hls.C)
    rc, _ = hls.run([ln, lin], blob.array(), sc.array())
    assert rc == 0, hls.error()
    got = {(loop, buf): (worst, allowed) for loop, buf, worst, allowed in hls.ports()}
    assert got == {("GEMM_A0", "a"): (4, 2), ("GEMM_STEP", "a"): (4, 2)}
