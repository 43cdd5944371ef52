"""The C-simulation check of on-chip memory ports (hls/iseg_ports.h): its counting rules, and that it sees
real excesses in engine loops, not only the probe's."""

from __future__ import annotations

import numpy as np
import pytest
from _hls_harness import OP_LAYERNORM, OP_LINEAR, Blob, Harness, Scratch, build, layer, ln_mean


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


def _ln_linear(rng, t: int, c: int, n: int, cols: int, beat: int = 8):
    blob, sc = Blob(), Scratch(beat=beat)
    x = sc.alloc("x", (t, c), np.int16, rng.integers(-3000, 3000, (t, c)))
    h = sc.alloc("h", (t, c), np.int8)
    y = sc.alloc("y", (t, n), np.int8)
    ln = layer(op=OP_LAYERNORM, T=t, N=c, out_bits=8, in_=x, in_stride=sc.stride("x"), out=h,
               out_stride=sc.stride("h"), rq=blob.rq_table(1 << 30, 26, 3, c), **ln_mean(c))
    lin = layer(op=OP_LINEAR, T=t, K=c, N=n, out_bits=8, in_=h, in_stride=sc.stride("h"), out=y,
                out_stride=sc.stride("y"), w=blob.add_weights(rng.integers(-128, 128, (c, n)), cols), b=-1,
                rq=blob.rq_table(1 << 30, 30, 0, n))
    return ln, lin, blob, sc


def test_engine_loops_fit_their_banks(hls) -> None:
    """A plain LINEAR on the harness array: the A loader (8 bytes, two 4-element words of a row bank per step),
    the weight prefetch (min(beat, C) = 8 bytes: one row of w), the output lanes (4 consecutive channels of one row
    of the tile, constants cyclic over 4 banks): every pipelined loop within its banks, and within its m_axi beats
    (one whole-beat request per bundle and direction per step)."""
    rng = np.random.default_rng(1)
    _, lin, blob, sc = _ln_linear(rng, 9, 40, 12, hls.C)
    rc, _ = hls.run([lin], blob.array(), sc.array())
    assert rc == 0, hls.error()
    assert hls.ports() == []


@pytest.fixture(scope="module")
def hls_ln8(tmp_path_factory: pytest.TempPathFactory) -> Harness:
    """The harness with LN_LANES 8 over its 4-element words (A_WORD 4), on 16-byte beats and 16 columns (a trace put
    is up to 2 LN_LANES bytes, at most a beat: axi.h; the beat divides C): a legal build that the planner never
    makes (it keeps LN_LANES <= A_WORD: estimate.make_shape)."""
    return Harness(build(tmp_path_factory.mktemp("hls_ln8"), ln_lanes=8, axi=16, c=16))


def test_engine_excess_is_reported(hls, hls_ln8) -> None:
    """With LN_LANES 8 over 4-element words, the fused LayerNorm's normalise step reads and writes channels
    c .. c + 7 (c a multiple of 8) of a row in place: words c/4 and c/4 + 1 of the row's bank, two reads (port A's
    site, hls/schedule.h A_PORT_A: ln_words() = 2) and two writes (port B's), 4 accesses where the bank's 2 ports
    serve 2 at II 1. The check must see it in both loops the loader runs in (GEMM_A0: row block 0 alone; GEMM_STEP:
    blocks 1 and 2 under the tiles), and nothing else: the statistics step writes AXI_BYTES / 2 = 8 channels, two
    words, a request's two words on the bank's two ports (it runs in other steps than the normalise), the 8 lnrq
    banks take a channel each, and the m_axi side stays one request per bundle and direction
    (the 8-byte trace put lies in one 16-byte beat). The integers are the default harness's (LN_LANES 4, 8-byte
    beats, 8 columns)."""
    outs, ports = [], []
    for h in (hls, hls_ln8):
        rng = np.random.default_rng(2)
        ln, lin, blob, sc = _ln_linear(rng, 9, 40, 12, h.C, h.beat)
        buf = sc.array()
        rc, _ = h.run([ln, lin], blob.array(), buf)
        assert rc == 0, h.error()
        outs.append((sc.get(buf, "h"), sc.get(buf, "y")))
        ports.append(h.ports())  # (the report of the process's last run: read it before the next)
    assert hls_ln8.lib.h_ln_lanes() == 8
    assert ports == [[], [("GEMM_A0", "a", 4, 2), ("GEMM_STEP", "a", 4, 2)]]
    assert all(np.array_equal(a, b) for a, b in zip(*outs, strict=True))


# ---- m_axi bundles: whole-beat requests per iteration (hls/iseg_ports.h axi_req, hls/axi.h) ----
G0, G1, G2 = 0, 1, 2


@pytest.mark.parametrize("accesses,beat,ii,want", [
    # a loader's beat and the output lanes' stage write: one request each way
    ([(G1, "scratch", 64, False), (G1, "scratch", 512, True)], 16, 1, []),
    # one beat requested from two sites (a cache and a read): one request
    ([(G1, "scratch", 96, False), (G1, "scratch", 96, False)], 16, 1, []),
    # the loader's beat and a residual's on one bundle: two requests at II 1
    ([(G1, "scratch", 64, False), (G1, "scratch", 2048, False)], 16, 1, [("AXI_PROBE", "gmem1.read", 2, 1)]),
    # ... the residual on the second port: one each
    ([(G1, "scratch", 64, False), (G2, "scratch", 2048, False)], 16, 1, []),
    # two writes of one bundle (output row and LayerNorm trace row)
    ([(G1, "scratch", 0, True), (G1, "scratch", 896, True)], 16, 1, [("AXI_PROBE", "gmem1.write", 2, 1)]),
    # II 2 (the K/V load): a K beat and a V beat of one row fit
    ([(G1, "scratch", 0, False), (G1, "scratch", 256, False)], 16, 2, []),
    # the two halves of a 16-byte record on an 8-byte port: two requests at II 1
    ([(G0, "blob", 32, False), (G0, "blob", 40, False)], 8, 1, [("AXI_PROBE", "gmem0.read", 2, 1)]),
    # prefetch and a pos row, both on the blob's one port
    ([(G0, "blob", 0, False), (G0, "blob", 1024, False)], 16, 1, [("AXI_PROBE", "gmem0.read", 2, 1)]),
])
def test_axi_counting_rules(hls, accesses, beat, ii, want) -> None:
    """Per iteration, the distinct beats requested on one bundle and direction; II of them fit. The same requests
    outside a pipelined loop are not counted."""
    assert hls.axi_probe(accesses, beat, ii) == want


def test_axi_request_is_a_whole_beat(hls) -> None:
    """A request at an address that is not a beat of its buffer stops the C-simulation: every access of the engine
    goes through hls/axi.h, which only ever asks for whole beats."""
    with pytest.raises(RuntimeError, match="not a whole beat"):
        hls.axi_probe([(G1, "scratch", 7, False)])


def test_axi_runs(hls) -> None:
    """Sequential runs across iterations (iseg_ports.h axi_burst): a request for the beat after the previous one of
    its bundle and direction (or the same beat) continues the run; a jump starts one. Reads and writes, and the
    bundles, are counted apart; a run's bytes are its distinct beats."""
    acc = [(0, G1, "scratch", 0, False), (1, G1, "scratch", 16, False), (2, G1, "scratch", 32, False),
           (3, G1, "scratch", 640, False), (4, G1, "scratch", 656, False),  # a jump: 2 runs of 48 + 32 bytes
           (0, G1, "scratch", 2048, True), (1, G1, "scratch", 2048, True), (2, G1, "scratch", 2064, True),
           (3, G2, "scratch", 96, False), (4, G2, "scratch", 320, False)]  # two one-beat runs
    assert hls.axi_probe(sorted(acc, key=lambda a: a[0])) == []
    assert hls.axi_bursts() == {("AXI_PROBE", "gmem1.read"): (80, 2), ("AXI_PROBE", "gmem1.write"): (32, 1),
                                ("AXI_PROBE", "gmem2.read"): (32, 2)}


def test_engine_runs_by_hand(hls) -> None:
    """A (9, 40) x (40, 12) LINEAR on the harness (R 4, C 8, 8-byte beats): the first prefetch copies the blob's
    40 x 16 tiled weight bytes in one run; the A prologue reads rows 0-3 of the input (a 40-byte stride, whole
    beats), one run of 160 bytes, each beat requested once (the loader's cache); the rq table, 12 records of 16
    bytes, one run. (The probe's sequential accesses are not counted.)"""
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
        hls.axi_probe([(bundle, buf, 0, False)])


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
    """A LayerNorm fused into a LINEAR on the harness array (LN_LANES 4, A_WORD 4, 8-byte beats): the engine loop's
    static demand on a left-operand bank of g.a, counted by hand. Every access of g.a in the loop goes through its
    two port sites per bank (hls/schedule.h A_PORT_A, A_PORT_B), whichever unit asked for it:
      - port A, one read-or-write site: the array's read (word s / 4), the LayerNorm statistics' write (AXI_BYTES / 2 =
        4 channels from a multiple of 4: one word) or the normalise step's in-place read (LN_LANES 4: one word);
        one word per bank and iteration;
      - port B, one write site: the normalise step's write-back (one word; the statistics' request has no second
        word here, so port B is idle on its steps);
    1 + 1 = 2 operations from 2 sites per bank: the bank's two ports at II 1. Before the ports, each unit was a site of
    its own: 1 + 1 + 1 + 1 = 4 from 4 sites (the array, the statistics, the normalise read, the normalise write), II 2
    (docs/hls.md, "What csynth would likely find first", item 11). (The A loader's and the Shiftmax's requests, which
    this run does not make, go through the same two sites.)"""
    rng = np.random.default_rng(2)
    ln, lin, blob, sc = _ln_linear(rng, 9, 40, 12, hls.C)
    rc, _ = hls.run([ln, lin], blob.array(), sc.array())
    assert rc == 0, hls.error()
    got = hls.static()
    demand, sites = got[("ENGINE_PASS", "a")]
    assert sites == 2 and demand == 1 + 1, got  # port A (array, stats, normalise read), port B (write-back)
    # the m_axi side counts requests of whole beats per iteration (hls/axi.h): the output lanes' store, one put into
    # the stage from one site (at most one beat written per put), the LayerNorm statistics' read of one beat
    # (4 i16 channels), and the LayerNorm's trace put on the second port
    assert got[("ENGINE_PASS", "gmem1.write")] == (1, 1), got
    assert got[("ENGINE_PASS", "gmem1.read")] == (1, 1), got
    assert got[("ENGINE_PASS", "gmem2.write")] == (1, 1), got


def test_engine_attention_static_demand(hls) -> None:
    """One attention layer on the harness (R 4, C 8, A_WORD 4, 8-byte beats, SM_LANES 3, S_LANES 5): the static demand
    of the other banked buffers the ports serve, counted by hand.
      - sm.q: port A reads the array's word (QK) or writes the Q loader's first word (8 channels a step, from a
        multiple of 8: words w, w + 1), port B writes its second: 1 + 1 from 2 sites;
      - sm.s: port A writes the first score lane of a bank or reads slot 0 of the Shiftmax step (one key per bank:
        its lanes read consecutive keys of a row, at most SM_LANES); port B the second score lane (S_LANES 5 over
        3 banks: two in a bank, estimate.score_lane_writes) or slot 1 (the normalise pass's second row): 1 + 1 from
        2 sites. Before the ports: 3 (a Q write site of two words, the array's read) and 4 (the score store site's
        two, the Shiftmax's read site's two: the normalise pass reads two rows of a bank);
      - g.a: port A reads P for the array (P.V) or writes the Shiftmax's row r (its first word), port B writes the
        row's second word (3 lanes from a multiple of 3 can straddle two words): 1 + 1 (3 before: the array's read
        site, the Shiftmax's write site's two words)."""
    from test_hls_layers import check_attention  # the layer tests' attention row, checked against the reference

    check_attention(hls, "precise", 13, 2, 16)  # 13 keys: the normalise pass's lanes straddle words and rows end
    assert hls.ports() == []
    got = hls.static()
    for buf in ("q", "s", "a"):
        assert got[("ENGINE_PASS", buf)] == (2, 2), (buf, got)


@pytest.mark.parametrize("which,buf", [(0, "g.a"), (1, "sm.q"), (3, "g.w")])
def test_engine_port_clash_is_caught(hls, which: int, buf: str) -> None:
    """The two ports per bank hold only because a bank's writer and its reader never share a half (the loaders fill
    the next block, the Shiftmax reads the score block QK is not writing): one port A per bank serves one of them. A
    writer aimed at the half the other unit reads (the A loader at the array's half of g.a, the Q loader at the
    array's half of sm.q, the weight prefetch at the array's half of w) would lose an access on hardware,
    so the engine loop stops the C-simulation; the same pass the schedule's way runs within its ports."""
    assert hls.lib.h_engine_clash(which, 0) == 0, hls.error()
    assert hls.ports() == []
    assert hls.lib.h_engine_clash(which, 1) == 1
    assert f"{buf} port" in hls.error(), hls.error()


def test_shiftmax_waits_for_the_score_lanes(hls) -> None:
    """The Shiftmax aimed at the score block the score lanes are draining (h_engine_clash 2): since a Q.K^T's last
    score tile may drain in the next pass (schedule.h ScoreDrain), the Shiftmax of a block waits while a tile of that
    block is pending, so its reads never meet the lanes' writes on one half of sm.s: the pass runs within its ports
    (the engine's check of that clash stays as the backstop)."""
    for clash in (0, 1):
        assert hls.lib.h_engine_clash(2, clash) == 0, hls.error()
        assert hls.ports() == []
