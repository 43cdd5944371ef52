"""The C-simulation check of on-chip memory ports (hls/iseg_ports.h): its counting rules, and that it sees
real excesses in engine loops, not only the probe's."""

from __future__ import annotations

import numpy as np
import pytest
from _hls_harness import OP_LAYERNORM, OP_LINEAR, Blob, Scratch, layer, ln_mean


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
               rq=blob.rq_table(1 << 30, 26, 3, c), **ln_mean(c))
    lin = layer(op=OP_LINEAR, T=t, K=c, N=n, out_bits=8, in_=h, in_stride=c, out=y, out_stride=n,
                w=blob.add_weights(rng.integers(-128, 128, (c, n)), cols), b=-1, rq=blob.rq_table(1 << 30, 30, 0, n))
    return ln, lin, blob, sc


def test_engine_loops_fit_their_banks(hls) -> None:
    """A plain LINEAR on the harness array: the A loader (8 bytes, two 4-element words of a row bank per step),
    the weight prefetch (min(beat, C) bytes: at most two rows of w), the output lanes (3 consecutive channels,
    constants cyclic over 3 banks): every pipelined loop within its banks (the m_axi side of this run:
    test_engine_axi_excess_is_reported)."""
    rng = np.random.default_rng(1)
    _, lin, blob, sc = _ln_linear(rng, 9, 40, 12, hls.C)
    rc, _ = hls.run([lin], blob.array(), sc.array())
    assert rc == 0, hls.error()
    assert [p for p in hls.ports() if not p[1].startswith("gmem")] == []


def test_engine_excess_is_reported(hls) -> None:
    """The harness runs LN_LANES 5 with 4-element words (A_WORD 4): the fused LayerNorm's normalise step reads and
    writes five channels in place, i.e. two words of a row bank each way, 4 accesses where 2 fit. The planner never
    emits that (LN_LANES <= A_WORD, a power of two); the check must see it in both loops the loader runs in."""
    rng = np.random.default_rng(2)
    ln, lin, blob, sc = _ln_linear(rng, 9, 40, 12, hls.C)
    rc, _ = hls.run([ln, lin], blob.array(), sc.array())
    assert rc == 0, hls.error()
    got = {(loop, buf): (worst, allowed) for loop, buf, worst, allowed in hls.ports() if not buf.startswith("gmem")}
    assert got == {("GEMM_A0", "a"): (4, 2), ("GEMM_STEP", "a"): (4, 2)}


# ---- m_axi bundles: beats per iteration (hls/iseg_ports.h axi_use) ----
G0, G1, G2 = 0, 1, 2


@pytest.mark.parametrize("accesses,beat,ii,want", [
    # a loader's 8 bytes of a row and the output lanes' 6-byte store: one span each way
    ([(G1, "scratch", 64, 8, False), (G1, "scratch", 512, 6, True)], 16, 1, []),
    # a row read byte by byte (8 accesses, adjacent): one span, one beat
    ([(G1, "scratch", 100 + j, 1, False) for j in range(8)], 16, 1, []),
    # an unaligned span of a whole beat is still one beat of its burst
    ([(G1, "scratch", 7, 16, False)], 16, 1, []),
    # 17 bytes: two beats at II 1
    ([(G1, "scratch", 0, 17, False)], 16, 1, [("AXI_PROBE", "gmem1.read", 2, 1)]),
    # the loader's row and a residual operand on one bundle: two spans, two beats
    ([(G1, "scratch", 64, 8, False), (G1, "scratch", 2048, 2, False)], 16, 1, [("AXI_PROBE", "gmem1.read", 2, 1)]),
    # ... the residual on the second port: one each
    ([(G1, "scratch", 64, 8, False), (G2, "scratch", 2048, 2, False)], 16, 1, []),
    # two writes of one bundle (output row and LayerNorm trace row)
    ([(G1, "scratch", 0, 4, True), (G1, "scratch", 900, 4, True)], 16, 1, [("AXI_PROBE", "gmem1.write", 2, 1)]),
    # II 2 (the K/V load): a K beat and a V beat of one row fit
    ([(G1, "scratch", 0, 16, False), (G1, "scratch", 256, 16, False)], 16, 2, []),
    # a 16-byte record on an 8-byte port: two beats at II 1
    ([(G0, "blob", 32, 16, False)], 8, 1, [("AXI_PROBE", "gmem0.read", 2, 1)]),
    # prefetch and a pos row, both on the blob's one port
    ([(G0, "blob", 0, 16, False), (G0, "blob", 1024, 2, False)], 16, 1, [("AXI_PROBE", "gmem0.read", 2, 1)]),
])
def test_axi_counting_rules(hls, accesses, beat, ii, want) -> None:
    """Per iteration, the spans of one bundle and direction are merged and cost ceil(bytes / beat) beats each;
    II beats fit. The same accesses outside a pipelined loop are not counted."""
    assert hls.axi_probe(accesses, beat, ii) == want


def test_axi_runs(hls) -> None:
    """Sequential runs across iterations (iseg_ports.h axi_burst): an access starting inside or at the end of the
    previous span of its bundle and direction continues the run; a jump, or the other stream in between, starts
    one. Reads and writes, and the bundles, are counted apart."""
    acc = [(0, G1, "scratch", 0, 8, False), (1, G1, "scratch", 8, 8, False), (2, G1, "scratch", 16, 8, False),
           (3, G1, "scratch", 640, 8, False), (4, G1, "scratch", 648, 8, False),  # a jump: 2 runs of 24 + 16 bytes
           (0, G1, "scratch", 2048, 4, True), (1, G1, "scratch", 2052, 4, True), (2, G1, "scratch", 2052, 4, True),
           (3, G2, "scratch", 100, 2, False), (4, G2, "scratch", 300, 2, False)]  # two one-element runs
    assert hls.axi_probe(sorted(acc, key=lambda a: a[0])) == []
    assert hls.axi_bursts() == {("AXI_PROBE", "gmem1.read"): (40, 2), ("AXI_PROBE", "gmem1.write"): (12, 1),
                                ("AXI_PROBE", "gmem2.read"): (4, 2)}


def test_engine_runs_by_hand(hls) -> None:
    """A (9, 40) x (40, 12) LINEAR on the harness (R 4, C 8): the first prefetch copies the blob's 40 x 16 tiled
    weight bytes in one run; the A prologue reads rows 0-3 of the contiguous (40-byte stride) input, one run of
    160 bytes; the rq table, 12 records of 16 bytes, one run. (The probe's sequential accesses are not counted.)"""
    rng = np.random.default_rng(4)
    _, lin, blob, sc = _ln_linear(rng, 9, 40, 12, hls.C)
    rc, _ = hls.run([lin], blob.array(), sc.array())
    assert rc == 0, hls.error()
    got = hls.axi_bursts()
    assert got[("ENGINE_PF0", "gmem0.read")] == (40 * 2 * 8, 1)
    assert got[("GEMM_A0", "gmem1.read")] == (4 * 40, 1)
    assert got[("RQ_TABLE", "gmem0.read")] == (12 * 16, 1)


@pytest.mark.parametrize("bundle,buf", [(G0, "scratch"), (G1, "blob"), (G2, "blob")])
def test_axi_bundle_must_carry_its_buffer(hls, bundle: int, buf: str) -> None:
    """An access naming a bundle that does not reach its buffer (gmem0 is the blob; gmem1 and gmem2 the scratch)
    stops the C-simulation: the bundle tags in the engine are checked against the addresses."""
    with pytest.raises(RuntimeError, match="bundle that does not carry its buffer"):
        hls.axi_probe([(bundle, buf, 0, 4, False)])


def test_engine_axi_excess_is_reported(hls) -> None:
    """The harness array has 8 columns and 3 output lanes: steps whose 3 elements straddle two rows of the tile
    store two spans through gmem1, 2 beats where 1 fits, in the GEMM loop (not in its tail: the last tile, token 8
    of 9, is one row). The planner never emits that (its output lanes divide C: estimate.make_shape); the check
    must see it."""
    assert hls.C == 8
    rng = np.random.default_rng(3)
    _, lin, blob, sc = _ln_linear(rng, 9, 40, 12, hls.C)
    rc, _ = hls.run([lin], blob.array(), sc.array())
    assert rc == 0, hls.error()
    got = {(loop, buf): (worst, allowed) for loop, buf, worst, allowed in hls.ports()}
    assert got == {("GEMM_STEP", "gmem1.write"): (2, 1)}


# ---- the static demand: the union of a loop's paths (hls/iseg_ports.h SiteTable) ------------------------------
@pytest.mark.parametrize("accesses,want", [
    ([(0, 0, 5)], (1, 1)),  # one site, one word
    ([(0, 0, 5), (0, 0, 5)], (1, 1)),  # the same word twice from one site: one operation
    ([(0, 0, 5), (0, 0, 6)], (2, 1)),  # one (unrolled) site, two words in an iteration: two operations
    ([(0, 0, 5), (1, 1, 7)], (2, 2)),  # two sites that never run in one iteration: still two operations
    ([(0, 0, 5), (0, 0, 6), (1, 1, 7), (2, 0, 1)], (3, 2)),  # site 0 at most 2 words, site 1 one
    ([(0, 0, 5), (0, 1, 5)], (2, 2)),  # two sites on one word in one iteration: one access, two operations
])
def test_static_counting_rules(hls, accesses, want) -> None:
    """The per-iteration check counts what an iteration does; the static demand is what a tool that schedules
    every path at once must provide: per site its most words in one iteration, summed over the sites."""
    assert hls.static_probe(accesses) == {("STATIC_PROBE", "m"): want}
    if len({a[0] for a in accesses}) > 1:  # spread over iterations: each iteration alone fits two ports
        assert hls.port_probe([(w, False) for it, _, w in accesses if it == 0]) == []


def test_engine_static_demand_is_measured(hls) -> None:
    """A LayerNorm fused into a LINEAR on the harness array: the engine loop's static demand on the left-operand
    banks counts the array's read (1 word), the LayerNorm statistics' writes (2 words) and the normalise pass's
    in-place read and write (2 each: LN_LANES 5 over 4-element words), whichever mode ran them, 7 operations on
    one bank where its two ports serve 2 per cycle (docs/hls.md, "What csynth would likely find first", item 11)."""
    rng = np.random.default_rng(2)
    ln, lin, blob, sc = _ln_linear(rng, 9, 40, 12, hls.C)
    rc, _ = hls.run([ln, lin], blob.array(), sc.array())
    assert rc == 0, hls.error()
    got = hls.static()
    demand, sites = got[("ENGINE_PASS", "a")]
    assert sites == 4 and demand == 1 + 2 + 2 + 2, got  # array, stats, normalise read, normalise write
    # the m_axi side, a request per byte: the output lanes' i8 stores (one site, a byte per lane), the LayerNorm
    # statistics' i16 reads (a beat of 16 bytes: AXI_BYTES / 2 channels per step)
    assert got[("ENGINE_PASS", "gmem1.write")] == (hls.lib.h_out_lanes(), 1), got
    assert got[("ENGINE_PASS", "gmem1.read")] == (16, 1), got
