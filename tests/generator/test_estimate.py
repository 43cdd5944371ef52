"""The estimate models the engine's code: hand-computed cycle counts of small cases, and the cycle
count of the C-simulation (ISEG_CYCLES in hls/) equal to generator/estimate.py row by row."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "hls"))
from _hls_harness import (  # noqa: E402
    OP_ATTENTION,
    OP_LAYERNORM,
    OP_LINEAR,
    OP_PATCH_EMBED,
    SM_VARIANTS,
    Blob,
    Harness,
    Scratch,
    build,
    layer,
    ln_mean,
    rows_of,
    rq_scalar,
)

from iseg import numerics as inum  # noqa: E402
from iseg.generator import estimate as est  # noqa: E402
from iseg.graph import build_graph  # noqa: E402

# the harness's TestCfg (tests/hls/harness.cpp): R 4, C 8, AXI 8 bytes (the beat divides C), 4 output lanes, 3 Shiftmax
# lanes, 4 LayerNorm lanes, 5 score lanes
cdiv = est.cdiv
HARNESS_SHAPE = est.ArrayShape(rows=4, cols=8, pack=2, out_lanes=4, ln_lanes=4, sm_lanes=3, axi_bytes=8, s_lanes=5)
HARNESS_PIX, HARNESS_LAB = 2, 2  # its pixels / labels per stream beat (ISEG_TEST_PIX, ISEG_TEST_LAB)
# the loops' depths, charged once per entry (hls/compat.h, docs/hls.md item 12): the datapath 16; + the m_axi read
# latency 64 where an iteration reads a beat; the engine loop: 16 + the longer of the read and the LayerNorm statistics
# chain 70 (10 + 4 + 22 + 34), which runs on sums closed 64 + 8 loader steps before, beside the read
DATA, READ, ENGINE = 16, 16 + 64, 16 + max(64, 70)


def test_loop_depths() -> None:
    """The estimate's depths are the C++'s, term by term (tests/hls/test_hls_static.py reads those), and each is the
    sum its docstring states."""
    assert (est.PIPE, est.M_AXI_LATENCY, est.LN_CHAIN) == (16, 64, 70)
    assert (est.PIPE, est.PIPE_READ, est.PIPE_ENGINE) == (DATA, READ, ENGINE) == (16, 80, 86)
    assert est.LN_ISSUE == 64 + 8


def _prefetch0(k: int, n: int) -> int:
    """The harness's weight prefetch before the layer loop (ENGINE_PF0): K rows of each of ceil(N / C) tiles, C
    bytes each (the blob holds the weights in tiles), min(beat, C) = 8 bytes per step, + the depth of a reading loop."""
    return est.cdiv(k * est.cdiv(n, 8) * 8, 8) + READ


def test_gemm_cycles_by_hand() -> None:
    """T 10, K 20, N 12 on the harness array (R 4, C 8, 8-byte beats, 4 output lanes, A_WORD 4), per-channel rq
    and a bias, 200 bytes to prefetch."""
    a = HARNESS_SHAPE
    cycles, parts = est.gemm_cycles(a, 10, 20, 12, bias=True, rq_tab=True, gelu=False, prefetch_bytes=200)
    # the biases 2 per step (min(8 / 4, 4 output lanes)): ceil(12/2) + READ; then the 16-byte records, each two
    # 8-byte parts on the 8-byte port, one part per step: 12 * 2 + READ (both loops read gmem0)
    consts = (6 + READ) + (24 + READ)
    # 4 rows x ceil(20/8) steps (min(8-byte beat, two 4-element words) = 8 bytes per step), a pass of the engine loop
    a0 = 4 * 3 + ENGINE
    drain = 8  # ceil(4*8 / 4)
    # blocks 3 (rows 4, 4, 2), tiles 2: A share ceil(12/2) = 6, weight share: 200 bytes at min(8, C 8) = 8 per step
    # = 25 steps over 3 * 2 tiles, ceil(25/6) = 5; K 20 is the longest everywhere
    first = max(20, 6, 5)
    mid = max(20, drain, 6, 5)
    last = max(20, drain, 5)
    steps = first + (2 * 2 - 1) * mid + 2 * last  # block 0's tile 0; the other 3 tiles of blocks 0-1; block 2's 2
    assert steps == 120
    # each row block is a pass of the engine loop: a tile of 20 steps outlasts its A share by 14 < ENGINE, so the
    # array's first read of the next block could overtake the loader's last write of it (gemm_pass_blocks)
    assert est.gemm_block_passes(3, 20, 20, 6) == 3
    steps += 3 * ENGINE
    assert (consts, a0, steps) == (190, 98, 378)
    seq = 6 * 8  # the sequencer's calls: A0, the 3 blocks, the tail, the layer's end
    assert cycles == consts + a0 + steps + drain + ENGINE + seq == 808  # the last tile's output lanes: a pass too
    assert parts["sequencer"] == seq
    assert parts["array"] == 3 * 2 * 20


def test_attention_cycles_by_hand() -> None:
    """T 9 keys, 1 head of 16 on the harness array (R 4, C 8, 8-byte beats, 4 output lanes, 5 score lanes, 3
    Shiftmax lanes): blocks of 4, 4, 1 query rows, software-pipelined.

    P.V drains overlap like a GEMM layer's: channel tile j's drain (ceil(4 * 8 / 4) = 8 steps) runs in the first
    steps of tile j + 1's key loop, which runs max(T, drain) = 9 iterations, all tiles in one pass of the engine
    loop (one ENGINE); the last tile's drain runs alone (drain + ENGINE), except in PV(i-1) with a QK(i+1) after
    it, where it is left in the drain buffer and runs in QK(i+1)'s key tile 0 (max(d_head, drain) = 16 steps, so here
    for free), and that PV(i-1) is the first part of QK(i+1)'s pass (no ENGINE of its own: the two share no buffer,
    so the loop need not drain between them). A QK's score tiles drain in the next key tile's first ceil(32 / 5) = 7
    steps; its last one (SD_DEFER) in the next pass: QK(0)'s in QK(1)'s key tile 0, QK(i+1)'s in PV(i)'s channel
    tile 0 (max(T, 7) = 9 keys), and the Shiftmax of that block waits for them: 7 iterations in QK, 2 * 6 + 1 = 13
    in P.V, whose drain steps come on a key's first iteration (att_sm_wait). The Q block of QK(b + 1) loads
    under QK(b)'s key loop, 8 bytes (min(8-byte beat, two 4-element words of a row bank)) per iteration (8 steps
    under 32 iterations: hidden), so only each head's Q(0) is exposed. K_h goes through the transposer in chunks of
    one beat, 8 channels: two chunks. Under other passes (a later head's load, test_attention_kv_load_hides) a step
    is two engine-loop iterations, a K beat with two rows of write-out, then a V beat, both on gmem2: key tile 0's 8
    beats (steps 0-7), then key tile 1's one beat, which completes its tile and so waits until tile 0's 8 rows are
    written out two per step (steps 8-11), then tile 1's 8 rows (4 steps): 16 steps a chunk, 64 iterations. Head 0's
    load runs in its Q(0) pass, which lasts until it is done, and is dual: once Q(0)'s 8 beats are read (4 steps of
    two iterations, gmem1 busy), a step is one iteration, the V beat on gmem1 and one write-out row on port A of w
    beside the V word on port B: 8 + max(1, 8) + 8 = 24 steps a chunk, 48 - 4 + 8 = 52 iterations. Every loop is a
    pass of the engine loop: + ENGINE each. Here the Shiftmax is the bound (every block has a rest), so deferring the
    score drain costs: 1,436 cycles, 1,410 without it (test_score_drain_deferral_csim), which the planner weighs
    (estimate.better_sd_defer)."""
    a = HARNESS_SHAPE
    assert a.sd_defer
    cycles, parts = est.attention_cycles(a, 9, 1, 16)
    consts = 0  # the RQ_8 of P.V is per tensor: no table to load
    assert est.tp_chunk_steps(9, 16, 0, 8, 8) == est.tp_chunk_steps(9, 16, 1, 8, 8) == 8 + max(1, 4) + 4 == 16
    kv_it = 2 * 2 * 16
    assert est.kv_load_iters(9, 16, 8, 8) == kv_it
    assert est.tp_chunk_steps(9, 16, 0, 8, 8, 1) == 8 + max(1, 8) + 8 == 24  # one write-out row a step
    kv_first = 2 * 4 + (2 * 24 - 4)  # dual: Q(0)'s 8 beats beside 4 steps of two iterations, then one a step
    assert est.kv_load_iters(9, 16, 8, 8, 8) == kv_first == 52
    # Q beats past key tile 0's completion (ceil(17 / 2) = 9 steps > C = 8): the write-out would start at two rows a
    # step, so the load stays two iterations a step (kv_start); at 16 beats (8 steps) it is still dual
    assert est.kv_load_iters(9, 16, 8, 8, 17) == kv_it and est.kv_load_iters(9, 16, 8, 8, 16) == 2 * 8 + 48 - 8
    kv = kv_first - 4 * 2  # beyond Q(0)'s beats
    sd = 7  # a score tile's drain: ceil(4 * 8 / 5)
    q_it = 4 * 2
    qk0 = 16 + 1 * max(16, sd) + 0  # key tiles ceil(9/8) = 2; the last tile's drain deferred
    qk1 = max(16, sd) + max(16, sd)  # key tile 0 drains QK(0)'s last tile (7 <= 16: free)
    qk2 = max(16, 8) + max(16, sd)  # key tile 0 drains PV(0)'s last P.V tile
    drain = 8  # ceil(4 * 8 / 4)
    # channel tiles ceil(16/8) = 2; the PV loop runs two iterations a key (PV_II 2), the SM advancing in both
    pv_defer = 2 * max(9, sd) + 2 * max(9, drain)  # PV(0): the first part of QK(2)'s pass, whose ENGINE it shares
    pv = pv_defer + ENGINE + drain + ENGINE  # PV(1) (its own pass, then the last tile's drain alone), and PV(2)
    pv_it_defer, pv_it = pv_defer, pv_defer + drain  # the SM's steps under them (tile 0: a score tile too)
    sm_wait = 2 * (sd - 1) + 1  # under P.V: the score tile's last drain step is key 6's first iteration
    assert est.att_sm_wait(sd, 2) == sm_wait and est.att_sm_wait(sd, 1) == sd
    assert (qk0, qk1, qk2, pv_it_defer, pv_it, pv_defer, pv) == (32, 32, 32, 36, 44, 36, 216)
    q = q_it + ENGINE
    # ceil(9/3) = 3 steps per row pair in both passes (exp: rows (0, 2), (1, 3); normalise: (0, 2), (1, 3)); the
    # divider once, + 1: the last exp pair's second row enters it a step late
    sm_full = 2 * 3 + 66 + 1 + 2 * 3
    sm_last = 1 * 3 + 66 + 2 * 3  # one row's exp (a pair of one: no late row); the normalise pass covers all 4 rows
    assert a.sm_norm_lanes == 3  # min(SM_LANES, two 4-element words)
    assert (est.sm_block_steps(4, 4, 9, 3, 3), est.sm_block_steps(1, 4, 9, 3, 3)) == (sm_full, sm_last)
    assert est.sm_block_steps(4, 4, 9, 9, 8) == 4 * 1 + 2 * 2 + 66  # a row in one exp step: one row a step
    assert est.sm_block_steps(5, 6, 20, 8, 8) == 3 * 3 + 3 * 3 + 66  # pairs (0, 3), (1, 4), (2, -): no late row
    assert est.sm_block_steps(1, 5, 9, 9, 8) == 1 + 3 * 2 + 66  # R 5: pairs (0, 3), (1, 4), (2, -)
    rest0 = sm_full - (qk1 - sd)  # SM(0) under QK(1) (Q(2) loading in it), after block 0's last score tile
    rest1 = sm_full - (pv_it_defer + qk2 - sm_wait)  # SM(1) under PV(0) (its last drain in QK(2)), QK(2)
    rest2 = sm_last - (pv_it - sm_wait)  # SM(2) under PV(1)
    assert (rest0, rest1, rest2) == (54, 24, 44)
    body = (q + qk0 + ENGINE) + (qk1 + ENGINE + rest0 + ENGINE) + (pv_defer + qk2 + ENGINE + rest1 + ENGINE) + \
        (pv + rest2 + ENGINE) + pv
    # the sequencer's calls: Q(0), QK(0); block 0 QK(1) and SM(0)'s rest, block 1 PV(0) + QK(2) and SM(1)'s rest, block
    # 2 PV(1), its drain and SM(2)'s rest; the epilogue's PV and drain; the layer's end. The Q rests (Q(1), Q(2): 8
    # beats under 32 iterations) are empty: no pass, no call
    seq = (2 + 2 + 2 + 3 + 2 + 1) * 8
    assert cycles == consts + kv + body + seq == 1436
    assert parts["sequencer"] == seq
    assert parts["kv_load"] == kv and parts["q_load"] == q
    assert parts["shiftmax"] == rest0 + rest1 + rest2 + 3 * ENGINE
    assert parts["pv"] == pv_defer + 2 * pv and parts["qk"] == qk0 + qk1 + qk2 + 3 * ENGINE
    # without the deferral: each QK drains its last tile itself (+ 7), the Shiftmax does not wait (- 7 a block)
    serial = dataclasses.replace(a, sd_defer=False)
    assert est.attention_cycles(serial, 9, 1, 16)[0] == 1410


def test_attention_kv_load_hides() -> None:
    """Head h + 1's K/V load runs under head h's passes (hls/schedule.h KvLoad): the layer of
    test_attention_cycles_by_hand with two heads costs head 0's load beyond its Q(0) beats (44: dual, 52 iterations)
    once, and the second head nothing more: head 0's passes after Q(0) run more than a thousand iterations, far more
    than its load's 64 (two iterations a step: gmem1 is the Q loader's in those passes).
    The sequencer's calls: 11 a head (test_attention_cycles_by_hand), and the layer's end."""
    a = HARNESS_SHAPE
    one, p1 = est.attention_cycles(a, 9, 1, 16)
    two, p2 = est.attention_cycles(a, 9, 2, 16)
    seq1, seq2 = (11 + 1) * 8, (2 * 11 + 1) * 8
    assert p1["kv_load"] == p2["kv_load"] == 44
    assert two - p2["kv_load"] - seq2 == 2 * (one - p1["kv_load"] - seq1)
    assert two == 44 + 2 * 1296 + seq2


def test_wrows_hold_the_odd_heads_above_the_next_weights() -> None:
    """WROWS with the K/V overlap (hls/schedule.h attention_begin): the odd heads' K/V go to the top of the half that
    holds the next layer's prefetched weights, so a half must hold both. Seg-T on C 32: the encoder's heads take
    ceil(1025/32) * 64 + 2 * 1025 = 4,162 rows and the decoder's (1,174 keys with the class tokens) 37 * 64 + 2 *
    1,174 = 4,716; the projection after each, 192 * 6 = 1,152 rows. Without the overlap the largest need is the
    decoder's K/V (the MLP's 192 * 24 = 4,608 rows are fewer); with it, 4,716 + 1,152 = 5,868."""
    from iseg.random_model import PRESETS, with_classes

    g = build_graph(with_classes(PRESETS["seg-t-512"]))
    assert est.wrows_needed(g, 32, kv_overlap=False) == 4716
    assert est.wrows_needed(g, 32) == est.wrows_needed(g, 32, kv_overlap=True) == 4716 + 1152


def test_axi_beat_divides_c_and_heads() -> None:
    """The K/V load writes a V beat as one word of the weight buffer and every chunk of the transposer has a beat's
    rows (hls/schedule.h kv_start checks both): the beat divides C and every d_head (axi_beat). By hand, heads of 64
    and 16 on KV260 (16-byte port): C 8 -> 8-byte beats, C 24 -> 8 (16 does not divide 24), C 12 and 20 -> 4, C 16,
    32, 48, 64 -> 16; on U250 (64-byte port) C 64 -> 16 (the 16-channel head)."""
    from iseg.generator.boards import BOARDS
    from iseg.random_model import PRESETS

    spec = dataclasses.replace(PRESETS["tiny"], dim=128, heads=2, dec_dim=16, dec_heads=1)  # heads of 64, 16
    g = build_graph(spec)
    kv, u250 = BOARDS["kv260"], BOARDS["u250"]
    assert {c: est.axi_beat(g, c, kv) for c in (8, 12, 16, 20, 24, 32, 48, 64)} == {
        8: 8, 12: 4, 16: 16, 20: 4, 24: 8, 32: 16, 48: 16, 64: 16}
    assert est.axi_beat(g, 64, u250) == 16
    for board in (kv, u250):
        for c in range(4, 65, 4):
            w = est.axi_beat(g, c, board)
            assert c % w == 0 and 16 % w == 0 and 64 % w == 0, (board.name, c, w)
    # the old narrow arrays (C 5, C 2 on 16-byte beats) no longer exist: their beat is 1 or 2 bytes
    assert (est.axi_beat(g, 5, kv), est.axi_beat(g, 2, kv)) == (1, 2)
    for c in (5, 2):
        with pytest.raises(ValueError, match="multiple of 4 columns"):
            est.make_shape(4, c, g, kv, 250)


def test_one_channel_requant_loads_nothing() -> None:
    """A per-channel requant of one channel is a scalar (plan._rq_desc), so no table is loaded: a LINEAR of
    N 1 (a one-class head) costs its bias loop only (one iteration: min(8 / 4, 4 lanes) = 2 biases per iteration)
    + READ (the loop reads gmem0); N 2 adds a table loop of 2 records, each two 8-byte parts on the harness's 8-byte
    port, one part per iteration: 4 + READ."""
    a = HARNESS_SHAPE
    assert (est.rq_table(1), est.rq_table(2)) == (False, True)
    assert est.rq_table_cycles(a, 1, a.out_lanes) == 0
    bias_only = est.consts_cycles(a, 1, bias=True, rq_tab=True, gelu=False)
    assert bias_only == 1 + READ == 81
    assert est.consts_cycles(a, 2, bias=True, rq_tab=True, gelu=False) == 1 + READ + 2 * 2 + READ == 165


def test_attention_pv_ii1_by_hand() -> None:
    """The same layer as test_attention_cycles_by_hand with u8 probabilities (PV_II 1).

    Derivation: a P.V block (its PV pass, + ENGINE once) is channel tile 0 (T keys at PV_II cycles each), tiles
    j >= 1 (max(T, drain) iterations at PV_II cycles each: tile j - 1 drains in them) and, unless deferred,
    the last drain (drain + ENGINE, one cycle per step at any PV_II). So a pass costs T + (vt_n - 1) * max(T,
    drain) cycles less at PV_II 1 than at 2. Every head runs nb passes (PV(i-1) for i = 1 .. nb-1, and
    PV(nb-1)); the Shiftmax under them advances one step per loop iteration, so at PV_II 2 its shadow under
    PV(i-1) (blocks i = 1 .. nb-1) is those T + (vt_n - 1) * max(T, drain) iterations longer, less the longer wait
    for the block's last score tile (drained one step a key: 2 sd - 1 iterations instead of sd), while its rest
    (ATT_SM_REST) stays above zero. Hence, per attention layer: cycles(PV_II 2) - cycles(PV_II 1) = heads * (nb *
    (T + (vt_n - 1) * max(T, drain)) - (nb - 1) * (T + (vt_n - 1) * max(T, drain) - (sd - 1))). On the harness
    drain = ceil(4 * 8 / 4) = 8 < T 9, sd = 7."""
    a = HARNESS_SHAPE
    c2, p2 = est.attention_cycles(a, 9, 1, 16, 2)
    c1, p1 = est.attention_cycles(a, 9, 1, 16, 1)
    assert c2 == est.attention_cycles(a, 9, 1, 16)[0]  # 2 is the default: valid for every variant
    pv1_defer = 9 + 9  # tile 0: 9 keys at II 1; tile 1: max(9, drain 8) steps (drains tile 0); in QK(2)'s pass
    pv1 = pv1_defer + ENGINE + 8 + ENGINE  # a pass of its own, then the last tile's drain alone
    assert p1["pv"] == pv1_defer + 2 * pv1 == 414  # PV(0) deferred into QK(2); PV(1), PV(2) drain alone
    assert p2["pv"] == p1["pv"] + 3 * (9 + 9) == 468
    heads, nb, t, drain = 1, 3, 9, 8
    sd, extra = 7, t + 1 * max(t, drain)
    assert c2 - c1 == heads * (nb * extra - (nb - 1) * (extra - (sd - 1))) == 54 - 24
    assert p2["array"] - p1["array"] == 3 * 2 * 9 and p1["shiftmax"] - p2["shiftmax"] == 2 * (extra - (sd - 1))
    # two heads, T 21 (6 query blocks of R 4), d_head 8 (one channel tile)
    assert est.attention_cycles(a, 21, 2, 8, 2)[0] - est.attention_cycles(a, 21, 2, 8, 1)[0] == \
        2 * (6 * 21 - 5 * (21 - (sd - 1))) == 102
    with pytest.raises(ValueError, match="pv_ii"):
        est.attention_cycles(a, 9, 1, 16, 3)


def test_pixel_cycles_by_hand() -> None:
    """PATCH_EMBED's pixel path, image 8 x 12, P 4 (hls/patch_embed.h patch_unpack).

    Derivation: grid 2 x 3 patches, so gh = 2 grid rows of P * img_w = 4 * 12 = 48 pixels each. Staging a
    grid row writes 3 patches x 4 x 4 pixels x 3 bytes = 144 bytes = 3 bytes per pixel, so it runs in the
    same 48 beats as a fill, one pixel per beat. gh + 1 = 3 passes of the PE_BEAT loop, each 48 beats + PIPE:
    pass 0 fills row 0 into half 0 (prologue), pass 1 fills row 1 into half 1 while it stages row 0 from
    half 0, pass 2 stages row 1 (epilogue): 3 * (48 + 16) = 192. Unoverlapped (fill loop, then a staging
    loop per patch of P * P = 16 steps) it was 2 * (48 + 16 + 3 * (16 + 16)) = 320."""
    assert est.pixel_cycles(8, 12, 4) == 3 * (48 + 16) == 192
    assert est.pixel_cycles(4, 12, 4) == 2 * (48 + 16)  # one grid row: prologue + epilogue only
    assert est.pixel_cycles(512, 512, 16) == 33 * (16 * 512 + 16) == 270_864  # Seg-T 512^2, a pixel per beat
    # Cfg::PIX pixels per beat: the same passes of P * img_w / PIX beats (KV260: 4 pixels, a 128-bit beat)
    assert est.pixel_cycles(8, 12, 4, 2) == 3 * (24 + 16)
    assert est.pixel_cycles(512, 512, 16, 4) == 33 * (16 * 512 // 4 + 16) == 68_112


def test_stream_beats_rule() -> None:
    """Cfg::PIX and Cfg::LAB: the largest power of two (at most 16) that divides the patch and whose beat is no
    wider than an m_axi beat (4 bytes a pixel, 1 a label)."""
    assert [est.pixel_beat_pixels(w, 16) for w in (2, 4, 8, 16, 32, 64)] == [1, 1, 2, 4, 8, 16]
    assert [est.pixel_beat_pixels(16, p) for p in (2, 4, 6, 7, 8, 14, 16)] == [2, 4, 2, 1, 4, 2, 4]
    assert [est.label_beat_labels(w, 16) for w in (2, 4, 8, 16, 64)] == [2, 4, 8, 16, 16]
    assert [est.label_beat_labels(16, p) for p in (2, 4, 6, 7, 8, 14, 16, 32)] == [2, 4, 2, 1, 8, 2, 16, 16]


def test_pixel_line_buffer_is_a_ping_pong() -> None:
    """head_pixels holds 2 x P image rows, one memory per (half, channel): Seg-T 512^2 (P 16) has 6 memories
    of 16 * 512 bytes = 2 BRAM36 each (4608 bytes per BRAM36), + 2 for the argmax line buffer."""
    from iseg.generator.boards import BOARDS
    from iseg.random_model import PRESETS, with_classes

    g = build_graph(with_classes(PRESETS["seg-t-512"]))
    units = est.unit_costs(HARNESS_SHAPE, g, BOARDS["kv260"])
    head = next(u for u in units.units if u.name == "head_pixels")
    assert head.bram36 == 2 + 6 * 2


@pytest.mark.parametrize("softmax,want", [("precise", 2), ("ivit", 2), ("precise8", 1)])
def test_pv_ii_of_the_variant(softmax: str, want: int) -> None:
    """Cfg::PV_II from the probabilities' width (numerics.SHIFTMAX_VARIANTS p_bits <= 8: 1)."""
    from dataclasses import replace

    from iseg import numerics as nx
    from iseg.random_model import PRESETS

    assert (nx.SHIFTMAX_VARIANTS[softmax].p_bits <= 8) == (want == 1)
    assert est.pv_ii_of(build_graph(replace(PRESETS["tiny"], softmax=softmax))) == want


def test_plan_precise8_vs_precise() -> None:
    """The same shapes on the same explicit array: the plan's frame differs by heads * nb * vt_n * T per
    attention layer (test_attention_pv_ii1_by_hand), the table says SM_PRECISE8 (2), the P.V requant input
    width is proven on the 2^-15 grid (z = (P.V) << r, row sum of p * 2^r < 2^15 + 64 T: u8 mantissas under a
    row shift r <= 7), the Shiftmax widths are precise's (same k, K)."""
    from dataclasses import replace

    from iseg import numerics as nx
    from iseg.generator.boards import BOARDS
    from iseg.generator.config import Config
    from iseg.generator.plan import _sbits, make_plan
    from iseg.graph import Attention
    from iseg.random_model import PRESETS, random_checkpoint

    cfg = Config(source=Path("e.yaml"), checkpoint=Path("none"), output=Path("none"), project="t",
                 board=BOARDS["kv260"], clock_mhz=250.0, array=(4, 8), image=None, outputs=("report",))
    plans = {}
    for sm in ("precise", "precise8"):
        ck = random_checkpoint(replace(PRESETS["tiny"], softmax=sm), seed=1)
        plans[sm] = (make_plan(cfg, ck, checkpoint_sha256="0" * 64), build_graph(ck.spec))
    (p2, graph), (p1, _) = plans["precise"], plans["precise8"]
    assert (p2.engine["pv_ii"], p1.engine["pv_ii"]) == (2, 1)
    att = [op for op in graph.ops if isinstance(op, Attention)]
    gain = sum(op.heads * est.cdiv(op.rows, 4) * est.cdiv(op.d_head, 8) * op.rows for op in att)
    assert p2.totals["cycles"] - p1.totals["cycles"] == gain > 0
    codes = {dict(r.fields)["sm_variant"] for r in p1.layers if r.op == "ATTENTION"}
    assert codes == {"2"}
    w1, w2 = dict(p1.widths), dict(p2.widths)
    tmax = max(op.rows for op in att)
    # |P.V| <= 128 * (the row's p sum bound), signed; the bound grows with the keys, so the widest row rules
    # (x0 does not enter the rounding variants' bound)
    for w, sm in ((w1, "precise8"), (w2, "precise")):
        assert w["PV"] == min(32, _sbits(128 * nx.shiftmax_p_sum_bound(tmax, -80, sm)))
    assert w2["PV"] <= w1["PV"] <= w2["PV"] + 1
    # By hand, T = 72 (tiny: 64 patches + 8 class tokens in the decoder):
    #   precise:  p sum < 2^15 + 72/2 = 32804;      128 * 32804 = 4198912, in [2^22, 2^23): 23 bits + sign = 24
    #   precise8: p sum < 2^15 + 72*2^7/2 = 37376;  128 * 37376 = 4784128, in [2^22, 2^23): 23 bits + sign = 24
    assert tmax == 72
    assert (w1["PV"], w2["PV"]) == (24, 24)
    assert _sbits(128 * nx.shiftmax_p_sum_bound(72, -80, "precise")) == 24


def test_unknown_softmax_variant_is_an_error() -> None:
    from dataclasses import replace

    from iseg.errors import IsegError
    from iseg.generator.plan import _sm_variant
    from iseg.random_model import PRESETS

    assert [_sm_variant(v)[0] for v in ("precise", "ivit", "precise8")] == [0, 1, 2]
    with pytest.raises(IsegError, match="unknown Shiftmax variant 'fast'"):
        _sm_variant("fast")
    with pytest.raises(IsegError, match="unknown Shiftmax variant 'fast'"):
        est.pv_ii_of(build_graph(replace(PRESETS["tiny"], softmax="fast")))


@pytest.fixture(scope="module")
def harness(tmp_path_factory: pytest.TempPathFactory) -> Harness:
    return Harness(build(tmp_path_factory.mktemp("est_hls")))


@pytest.fixture(scope="module")
def harness_pv1(tmp_path_factory: pytest.TempPathFactory) -> Harness:
    """The harness with Cfg::PV_II = 1 (u8 probabilities: the P.V loop at the packed rate)."""
    return Harness(build(tmp_path_factory.mktemp("est_hls_pv1"), pv_ii=1))


def test_gemm_pass_blocks_by_hand() -> None:
    """A GEMM's row blocks share a pass of the engine loop when a block's last tile outlasts its load share by
    ENGINE steps (the array's first read of the next block comes that long after the loader's last write of it).
    On the harness (R 4, 8 bytes a step): K 130, two column tiles: A share ceil(4 * 17 / 2) = 34, tiles of 130
    steps: 96 >= 86, so 3 blocks run in one pass; K 100: share 26, 74 < 86, which would be a pass each, so the last
    tile of a block is quiet (gemm_quiet_tiles): the first loads all 52 steps of the next block, and its last write
    comes 48 + 100 = 148 >= 86 steps before that block's first read: one pass again. A first block whose only
    tile is longer than the later ones (here 130 against 120) would take one more block with it: the rule's general
    case, which the sequencer never meets (a first block's one tile lasts at most a later block's: its cls steps are
    at most the drain, the rest the same), kept because it mirrors the C++."""
    assert ENGINE == 86
    assert est.gemm_block_passes(3, 130, 130, 34) == 1
    assert est.gemm_block_passes(3, 100, 100, 26) == 3
    assert (est.gemm_quiet_tiles(2, 68, 130), est.gemm_quiet_tiles(2, 52, 100)) == (0, 1)
    assert est.gemm_block_passes(3, 100, 100, 52, 1) == 1
    assert est.gemm_quiet_tiles(2, 220, 100) == 0  # a share of 220 would lengthen the 100-step tile: nothing chains
    # Seg-T's K 192 on KV260's 12 x 32 x 4: 18 tiles of 48 steps, 288 load steps; 16 a tile leave 32 < 86, one quiet
    # tile 48 - 17 + 48 = 79, two 48 - 18 + 96 = 126
    assert est.gemm_quiet_tiles(18, 288, 48) == 2
    assert est.gemm_quiet_tiles(1, 288, 48) == 0
    assert est.gemm_quiet_tiles(5, 12, 20) == 4  # (test_csim_counts_gemm's K 20 on five column tiles)
    assert est.gemm_block_passes(1, 10, 10, 0) == 1
    assert est.gemm_pass_blocks(5, 130, 120, 40) == 2  # 90 >= 86 after the first block, 80 after a later one
    assert est.gemm_block_passes(5, 130, 120, 40) == 4  # blocks 0-1, then 2, 3, 4 alone
    c1, p1 = est.gemm_cycles(HARNESS_SHAPE, 10, 130, 12, bias=True, rq_tab=True, gelu=False, prefetch_bytes=0)
    c3, p3 = est.gemm_cycles(HARNESS_SHAPE, 10, 100, 12, bias=True, rq_tab=True, gelu=False, prefetch_bytes=0)
    assert p1["steps"] == 3 * 2 * 130 + ENGINE and p1["sequencer"] == (1 + 3) * 8
    assert p3["steps"] == 3 * 2 * 100 + ENGINE and p3["sequencer"] == (1 + 3) * 8


@pytest.mark.parametrize("T,K,N", [(10, 20, 12), (33, 64, 40), (7, 96, 8), (10, 130, 12), (9, 112, 20),
                                   (10, 100, 12), (13, 20, 40)])
def test_csim_counts_gemm(harness: Harness, T: int, K: int, N: int) -> None:
    """One LINEAR row: the engine's counted cycles = estimate (+ its weight prefetch before the loop). K 130 and
    112 chain the row blocks in one pass with every tile loading, K 100 with its last tile quiet, K 20 on five column
    tiles with its last four quiet (gemm_quiet_tiles: 20 - 12 + 4 * 20 = 88 >= 86; test_gemm_pass_blocks_by_hand;
    the C-simulation checks the distance from the loader's write of a row to the array's read of it)."""
    _run_linear(harness, HARNESS_SHAPE, T, K, N, seed=T)  # (the row blocks chained or not)


def _run_linear(h: Harness, shape: est.ArrayShape, T: int, K: int, N: int, seed: int) -> dict[str, int]:
    """One LINEAR row of random int8 on ``h``: its outputs are the reference's accumulators, requantised, and its
    counted cycles the estimate's on ``shape`` (+ the weight prefetch before the loop). Returns the breakdown."""
    rng = np.random.default_rng(seed)
    blob, sc = Blob(), Scratch()
    x = sc.alloc("x", (T, K), np.int8, rng.integers(-128, 128, (T, K)))
    y = sc.alloc("y", (T, N), np.int8)
    d = layer(op=OP_LINEAR, T=T, K=K, N=N, out_bits=8, in_=x, in_stride=sc.stride("x"), out=y,
              out_stride=sc.stride("y"),
              w=blob.add_weights(w := rng.integers(-128, 128, (K, N)), h.C),
              b=blob.add(bias := rng.integers(-99, 99, N), np.int32),
              rq=blob.rq_table(1 << 30, 40, 0, N))
    out = sc.array()
    rc, _ = h.run([d], blob.array(), out)
    assert rc == 0, h.error()
    cycles, parts = est.gemm_cycles(shape, T, K, N, bias=True, rq_tab=True, gelu=False, prefetch_bytes=0)
    assert h.last_cycles() == cycles + _prefetch0(K, N)
    assert np.array_equal(sc.get(out, "y"), inum.requant(inum.linear(sc.get(out, "x"), w, bias), 1 << 30, 40, 0, 8))
    return parts


def _attention_row(seed: int, T: int, heads: int, dh: int, rq2_e: int, **kw):
    """One ATTENTION row over random int8 qkv (T, 3 * heads * dh) into "o": (row, blob, scratch)."""
    rng = np.random.default_rng(seed)
    blob, sc = Blob(), Scratch()
    D = heads * dh
    qkv = sc.alloc("qkv", (T, 3 * D), np.int8, rng.integers(-128, 128, (T, 3 * D)))
    o = sc.alloc("o", (T, D), np.int8)
    d = layer(op=OP_ATTENTION, T=T, N=D, heads=heads, d_head=dh, in_=qkv, in_stride=sc.stride("qkv"), out=o,
              out_stride=sc.stride("o"), sm_x0=-80, rq=rq_scalar(1 << 30, 40), rq2=rq_scalar(1 << 30, rq2_e), **kw)
    return d, blob, sc


def _attention_matches(h: Harness, shape: est.ArrayShape, T: int, heads: int, dh: int, seed: int,
                       pv_ii: int = 2) -> int:
    """Run an ATTENTION row (_attention_row, rq2 exponent 45) on harness h: its counted cycles must be the estimate's
    on ``shape`` and its outputs the reference's (iseg.reference.attention_core, then RQ_8). Returns the cycles."""
    from iseg.reference import attention_core

    d, blob, sc = _attention_row(seed, T, heads, dh, 45)
    buf = sc.array()
    rc, _ = h.run([d], blob.array(), buf)  # (the scratch, in place)
    assert rc == 0, h.error()
    assert h.last_cycles() == est.attention_cycles(shape, T, heads, dh, pv_ii)[0]
    z = attention_core(sc.get(buf, "qkv"), heads, lambda a: inum.requant(a, 1 << 30, 40, 0, 8), lambda _: -80,
                       "precise")
    assert np.array_equal(sc.get(buf, "o"), inum.requant(z, 1 << 30, 45, 0, 8))
    return h.last_cycles()


def _assert_same_outputs(harnesses, d, blob: Blob, sc: Scratch) -> None:
    """The row runs on every harness (engine Cfgs that differ in schedule only) with the same output."""
    outs = []
    for h in harnesses:
        buf = sc.array()
        rc, _ = h.run([d], blob.array(), buf)
        assert rc == 0, h.error()
        outs.append(sc.get(buf, "o"))
    assert all(np.array_equal(outs[0], x) for x in outs[1:])


@pytest.mark.parametrize("T,heads,dh", [(9, 1, 16), (21, 2, 8), (4, 1, 8), (40, 1, 64)])
def test_csim_counts_attention(harness: Harness, T: int, heads: int, dh: int) -> None:
    d, blob, sc = _attention_row(T, T, heads, dh, 45)
    rc, _ = harness.run([d], blob.array(), sc.array())
    assert rc == 0, harness.error()
    assert harness.last_cycles() == est.attention_cycles(HARNESS_SHAPE, T, heads, dh)[0]


@pytest.mark.parametrize("T,heads,dh", [(3, 2, 8), (3, 1, 8), (9, 1, 16), (5, 2, 16)])
def test_dual_kv_load_writes_the_reference_csim(harness: Harness, T: int, heads: int, dh: int) -> None:
    """A head's first-pass K/V load, dual once Q(0)'s beats are read (hls/schedule.h KvLoad::dual): the outputs are
    the reference's and the cycles the estimate's. Q(0) of T < R rows reads T * ceil(dh / 8) beats; an odd count
    (3: d_head 8, T 3) ends after a step's K iteration, so the next iteration is that step's V iteration, whose V beat
    comes from gmem2 as before although gmem1 is free; the load is dual from the step after (benchmarks/shape_sweep.py
    seed 37008 found the V word of that step taken from gmem1: a MISMATCH in the attention row)."""
    q_busy = min(T, 4) * cdiv(dh, 8)
    assert est.kv_load_iters(T, dh, 8, 8, q_busy) < est.kv_load_iters(T, dh, 8, 8)  # dual here
    _attention_matches(harness, HARNESS_SHAPE, T, heads, dh, T + dh)


@pytest.mark.parametrize("pv_ii", [1, 2])
def test_attention_chains_query_blocks(harness: Harness, pv_ii: int) -> None:
    """Query blocks 2 .. nb - 2 of a head run on in block 1's pass (hls/schedule.h att_chain_ok, att_chain_next)
    where no block leaves a Q or Shiftmax rest and each block's Shiftmax ends kEngineDepth iterations before the
    block: T 40 on the 4-row harness is 10 blocks, 7 of them chained, each without the fill (ENGINE) and the
    sequencer call (8) a pass of its own costs; with d_head 8 (T 100, 25 blocks) a block's Shiftmax ends too late
    at PV_II 1, so none chains (at PV_II 2, P.V's doubled iterations give it the room: 22). On the harness (PV_II
    2) the chained row's C-simulation counts the estimate's cycles and writes the reference's outputs."""
    assert est.attention_chained(HARNESS_SHAPE, 40, 64, pv_ii) == 7
    assert est.attention_chained(HARNESS_SHAPE, 100, 8, pv_ii) == (0 if pv_ii == 1 else 22)
    assert est.attention_chained(HARNESS_SHAPE, 12, 64, pv_ii) == 0  # 3 blocks: nothing to chain
    # a pass a block before (the estimate then: 8,538 / 11,738 cycles for one head, 16,396 / 22,796 for two), 7 x
    # (ENGINE + 8) = 658 cycles fewer a head now: each head chains its own blocks
    two, _ = est.attention_cycles(HARNESS_SHAPE, 40, 2, 64, pv_ii)
    assert est.attention_cycles(HARNESS_SHAPE, 40, 1, 64, pv_ii)[0] == {1: 8538, 2: 11738}[pv_ii] - 7 * (ENGINE + 8)
    assert two == {1: 16396, 2: 22796}[pv_ii] - 2 * 7 * (ENGINE + 8)
    if pv_ii == 2:  # the harness's PV_II; the row's outputs are the reference's
        assert _attention_matches(harness, HARNESS_SHAPE, 40, 2, 64, 7) == two


@pytest.fixture(scope="module")
def harness_pv_half(tmp_path_factory: pytest.TempPathFactory) -> Harness:
    """C 16 with 16 score lanes, whose bytes exceed the 8-byte beat: P.V drains through half of their readout window a
    step (PV_LANES 8, pv_window 2), twice the output lanes; 8 Shiftmax lanes keep the score writes at two a bank."""
    return Harness(build(tmp_path_factory.mktemp("est_hls_pvh"), c=16, s_lanes=16, pv_lanes=8, sm_lanes=8))


@pytest.mark.parametrize("T,heads,dh", [(21, 2, 8), (40, 1, 64), (37, 1, 16)])
def test_pv_drains_through_half_the_score_window(harness_pv_half: Harness, T: int, heads: int, dh: int) -> None:
    """Where S_LANES bytes exceed a beat, P.V's outputs take S_LANES / 2^j of the score lanes' readout window a step
    (estimate.ArrayShape.pv_lanes: 8 of 16 here, not the 4 output lanes): its drain is 4 x 16 / 8 = 8 steps, where the
    output lanes took 16 (QK's key tile 0 waits for it). The C-simulation counts the estimate's cycles and writes the
    reference's outputs; the estimate charges the window's 2:1 select per P.V lane and bit."""
    shape = dataclasses.replace(HARNESS_SHAPE, cols=16, s_lanes=16, sm_lanes=8)
    assert (shape.pv_lanes, shape.pv_window, shape.pv_drain) == (8, 2, 8)
    assert dataclasses.replace(shape, axi_bytes=16).pv_window == 1  # 16 bytes fit a 16-byte beat: the whole window
    _attention_matches(harness_pv_half, shape, T, heads, dh, T)


@pytest.fixture(scope="module")
def harness_pv_wide(tmp_path_factory: pytest.TempPathFactory) -> Harness:
    """The harness with 8 score lanes (they divide C) and P.V's outputs drained through them (PV_LANES 8); 4
    Shiftmax lanes, so that 8 scores of a step take at most two writes of a score bank (estimate.score_lane_writes)."""
    return Harness(build(tmp_path_factory.mktemp("est_hls_pvw"), s_lanes=8, pv_lanes=8, sm_lanes=4))


@pytest.mark.parametrize("T,heads,dh", [(9, 1, 16), (21, 2, 8), (40, 1, 64)])
def test_pv_drains_through_the_score_lanes(harness: Harness, harness_pv_wide: Harness, T: int, heads: int,
                                           dh: int) -> None:
    """PV_LANES = S_LANES: a P.V tile drains through the score lanes' readout and the shared requant lanes, 8 a step:
    ceil(4 * 8 / 8) = 4 steps instead of ceil(4 * 8 / 4) = 8. The same bytes as through the 4 output lanes, and the
    counted cycles are the estimate of that shape (ArrayShape.pv_lanes 8)."""
    d, blob, sc = _attention_row(T, T, heads, dh, 45)
    narrow, wide = sc.array(), sc.array()
    assert harness.run([d], blob.array(), narrow)[0] == 0, harness.error()
    assert harness_pv_wide.run([d], blob.array(), wide)[0] == 0, harness_pv_wide.error()
    assert np.array_equal(narrow, wide)
    shape = dataclasses.replace(HARNESS_SHAPE, s_lanes=8, sm_lanes=4)
    assert (shape.pv_lanes, shape.pv_drain, HARNESS_SHAPE.pv_lanes) == (8, 4, 4)  # 5 score lanes do not divide C
    assert harness_pv_wide.last_cycles() == est.attention_cycles(shape, T, heads, dh)[0]
    # a per-channel P.V requant reads a table banked for the output lanes: refused with PV_LANES past them
    blob2 = Blob()
    d.rq2 = blob2.rq_table(1 << 30, 45, 0, heads * dh)
    rc, _ = harness_pv_wide.run([d], blob2.array(), sc.array())
    assert rc != 0 and "a per-channel P.V requant needs PV_LANES = OUT_LANES" in harness_pv_wide.error()


@pytest.mark.parametrize("T,heads,dh", [(9, 1, 16), (21, 2, 8), (4, 1, 8), (40, 1, 64)])
@pytest.mark.parametrize("pv_ii", [1, 2])
def test_csim_counts_attention_precise8(harness: Harness, harness_pv1: Harness, T: int, heads: int, dh: int,
                                        pv_ii: int) -> None:
    """precise8 on both P.V loops: counted cycles = estimate; the outputs do not depend on PV_II."""
    d, blob, sc = _attention_row(T + 1, T, heads, dh, 38, sm_variant=SM_VARIANTS["precise8"])
    _assert_same_outputs((harness_pv1, harness), d, blob, sc)
    h = harness_pv1 if pv_ii == 1 else harness
    h.run([d], blob.array(), sc.array())
    assert h.last_cycles() == est.attention_cycles(HARNESS_SHAPE, T, heads, dh, pv_ii)[0]


@pytest.fixture(scope="module")
def harness_kv_serial(tmp_path_factory: pytest.TempPathFactory) -> Harness:
    """The harness with Cfg::KV_OVERLAP false: every head's K/V in the current half, loaded in its own Q(0) pass."""
    return Harness(build(tmp_path_factory.mktemp("est_hls_kvs"), kv_overlap=0))


@pytest.mark.parametrize("T,heads,dh", [(9, 1, 16), (21, 2, 8), (40, 3, 64)])
def test_kv_load_overlap_csim(harness: Harness, harness_kv_serial: Harness, T: int, heads: int, dh: int) -> None:
    """Head h + 1's K/V under head h (KV_OVERLAP, odd heads in the other half of w) gives the bytes of the serial
    load; each counts the cycles of its estimate, and with two heads or more the overlap saves every later head's
    load beyond its Q(0) beats (the harness's heads hide theirs whole)."""
    d, blob, sc = _attention_row(T, T, heads, dh, 45)
    _assert_same_outputs((harness, harness_kv_serial), d, blob, sc)
    serial = dataclasses.replace(HARNESS_SHAPE, kv_overlap=False)
    over_c, over_p = est.attention_cycles(HARNESS_SHAPE, T, heads, dh)
    ser_c, ser_p = est.attention_cycles(serial, T, heads, dh)
    harness.run([d], blob.array(), sc.array())
    assert harness.last_cycles() == over_c
    harness_kv_serial.run([d], blob.array(), sc.array())
    assert harness_kv_serial.last_cycles() == ser_c
    # a head's load beyond Q(0)'s 4 rows of beats, in its Q(0) pass: dual (est.kv_load_iters, q_busy = those beats)
    beyond = est.kv_load_iters(T, dh, 8, 8, 4 * cdiv(dh, 8)) - 4 * cdiv(dh, 8)
    single = est.kv_load_iters(T, dh, 8, 8) - 4 * cdiv(dh, 8)
    # dual where Q(0)'s beats end before chunk 0's first key tile completes: heads of 64 (32 beats, 16 steps > C) not
    assert (beyond < single) if cdiv(4 * cdiv(dh, 8), 2) <= min(T, 8) else (beyond == single and dh == 64)
    assert ser_p["kv_load"] == heads * beyond and over_p["kv_load"] == beyond
    assert ser_c - over_c == (heads - 1) * beyond


def test_kv_overlap_needs_the_rows(tmp_path_factory: pytest.TempPathFactory) -> None:
    """qkv LINEAR -> ATTENTION (2 heads of 32, T 40) -> proj LINEAR on the harness (C 8): the proj's weights are
    prefetched during the qkv layer into the other half of w (64 * 8 = 512 rows), where the odd head's K/V (5 * 32 +
    4 * 40 = 320 rows) go to the top. WROWS 832 holds both; at 800 (KMAX's minimum) they would meet, and the engine
    refuses the table in one line where the planner would have sized WROWS (estimate.wrows_needed); the serial load
    (KV_OVERLAP false) needs no more than the K/V's rows, and computes the same bytes."""
    rng = np.random.default_rng(7)
    blob, sc = Blob(), Scratch()
    T, K, heads, dh = 40, 32, 2, 32
    D = heads * dh
    x = sc.alloc("x", (T, K), np.int8, rng.integers(-128, 128, (T, K)))
    qkv = sc.alloc("qkv", (T, 3 * D), np.int8)
    o = sc.alloc("o", (T, D), np.int8)
    y = sc.alloc("y", (T, D), np.int8)
    rows = [layer(op=OP_LINEAR, T=T, K=K, N=3 * D, out_bits=8, in_=x, in_stride=sc.stride("x"), out=qkv,
                  out_stride=sc.stride("qkv"), w=blob.add_weights(rng.integers(-128, 128, (K, 3 * D)), 8),
                  b=blob.add(rng.integers(-99, 99, 3 * D), np.int32), rq=blob.rq_table(1 << 30, 38, 0, 3 * D)),
            layer(op=OP_ATTENTION, T=T, N=D, heads=heads, d_head=dh, in_=qkv, in_stride=sc.stride("qkv"), out=o,
                  out_stride=sc.stride("o"), sm_x0=-80, rq=rq_scalar(1 << 30, 40), rq2=rq_scalar(1 << 30, 45)),
            layer(op=OP_LINEAR, T=T, K=D, N=D, out_bits=8, in_=o, in_stride=sc.stride("o"), out=y,
                  out_stride=sc.stride("y"), w=blob.add_weights(rng.integers(-128, 128, (D, D)), 8),
                  b=blob.add(rng.integers(-99, 99, D), np.int32), rq=blob.rq_table(1 << 30, 40, 0, D))]
    outs = {}
    for name, defines in (("fits", dict(wrows=832)), ("serial", dict(wrows=800, kv_overlap=0)),
                          ("short", dict(wrows=800))):
        h = Harness(build(tmp_path_factory.mktemp(f"est_hls_wr_{name}"), **defines))
        out = sc.array()
        rc, _ = h.run(rows, blob.array(), out)
        if name == "short":
            assert rc != 0 and "the odd heads' K/V overlap the next layer's prefetched weights" in h.error()
        else:
            assert rc == 0, h.error()
            outs[name] = sc.get(out, "y")
    assert np.array_equal(outs["fits"], outs["serial"])


@pytest.fixture(scope="module")
def harness_sd_serial(tmp_path_factory: pytest.TempPathFactory) -> Harness:
    """The harness with Cfg::SD_DEFER false: every Q.K^T drains its last score tile in its own pass."""
    return Harness(build(tmp_path_factory.mktemp("est_hls_sds"), sd_defer=0))


@pytest.mark.parametrize("T,heads,dh", [(9, 1, 16), (4, 1, 8), (21, 2, 8), (40, 3, 64), (70, 1, 32)])
def test_score_drain_deferral_csim(harness: Harness, harness_sd_serial: Harness, T: int, heads: int, dh: int) -> None:
    """A Q.K^T's last score tile drained in the next pass (SD_DEFER, the Shiftmax of its block waiting for it) gives
    the bytes of the drain in its own pass, and each build counts the cycles of its estimate. T 4 is one query block:
    nothing to defer into, the same cycles either way."""
    d, blob, sc = _attention_row(T, T, heads, dh, 45)
    _assert_same_outputs((harness, harness_sd_serial), d, blob, sc)
    serial = dataclasses.replace(HARNESS_SHAPE, sd_defer=False)
    on, off = est.attention_cycles(HARNESS_SHAPE, T, heads, dh)[0], est.attention_cycles(serial, T, heads, dh)[0]
    harness.run([d], blob.array(), sc.array())
    assert harness.last_cycles() == on
    harness_sd_serial.run([d], blob.array(), sc.array())
    assert harness_sd_serial.last_cycles() == off
    if T <= 4:
        assert on == off


@pytest.mark.parametrize("H,W,P,D", [(8, 12, 4, 8), (16, 48, 16, 12), (4, 64, 4, 5), (20, 8, 4, 16)])
def test_csim_counts_patch_embed(harness: Harness, H: int, W: int, P: int, D: int) -> None:
    """One PATCH_EMBED row (single grid row, odd grid-row count, non-square): counted cycles = the GEMM's
    estimate + the pixel path (``pixel_cycles``) + its weight prefetch before the loop."""
    rng = np.random.default_rng(H * W + P)
    T, K = (H // P) * (W // P), 3 * P * P
    blob, sc = Blob(), Scratch()
    d = layer(op=OP_PATCH_EMBED, T=T, K=K, N=D, img_h=H, img_w=W, patch=P, out_bits=16,
              in_=sc.alloc("stage", (T, K), np.int8), in_stride=sc.stride("stage"),
              out=sc.alloc("tok", (T, D), np.int16), out_stride=sc.stride("tok"),
              w=blob.add_weights(rng.integers(-128, 128, (K, D)), harness.C),
              b=blob.add(rng.integers(-99, 99, D), np.int32), rq=blob.rq_table(1 << 30, 40, 0, D))
    rc, _ = harness.run([d], blob.array(), sc.array(), pixels=rng.integers(0, 256, H * W * 3, dtype=np.uint8))
    assert rc == 0, harness.error()
    cycles, _ = est.gemm_cycles(HARNESS_SHAPE, T, K, D, bias=True, rq_tab=True, gelu=False, prefetch_bytes=0)
    assert harness.last_cycles() == cycles + est.pixel_cycles(H, W, P, HARNESS_PIX) + _prefetch0(K, D)


def test_csim_counts_layernorm(harness: Harness) -> None:
    """A LayerNorm alone runs on the loader (schedule.h layernorm_begin), hand-worked on the harness (R 4, 8-byte
    beats: 8 / 2 = 4 stats lanes, 4 LayerNorm lanes): consts 23 records of two 8-byte parts, one part per step,
    46 + READ = 126; 2 row blocks (6 rows; a block is R rows of steps whatever its valid rows) of 171 steps = 342,
    one pass of the engine loop: + ENGINE, and two calls of the sequencer (the pass's, the layer's end): + 2 * 8 ->
    126 + 342 + 86 + 16 = 570. A block: a row's stats take S = ceil(23/4) = 6 steps; its chain issues 64 + 8 steps
    after its sums close (step 5 for row 0), then runs mean 10 (the reciprocal product 4 and fold 1, the remainder's
    multiply 4, rounding 1: no divider) + variance 4 (one multiply) + square root 22 (a variance below 2^43) + the 1/sd
    divider 34 (32 bits) = 70 cycles, so row 0's normalise starts at step 5 + 72 + 70 = 147 and each later row's
    max(S, N) = 6 steps after it (its chain's result, and the row before done), N = ceil(23/4) = 6 steps each, beside
    the later rows' stats: 147 + 3 * 6 + 6 = 171 (172 when the normalise pass waited for every row's stats, 4 * (6 +
    6) + the 124 steps the chain then exceeded of (R - 1) * 6)."""
    rng = np.random.default_rng(3)
    blob, sc = Blob(), Scratch()
    x = sc.alloc("x", (6, 23), np.int16, rng.integers(-999, 999, (6, 23)))
    y = sc.alloc("y", (6, 23), np.int8)
    d = layer(op=OP_LAYERNORM, T=6, N=23, out_bits=8, in_=x, in_stride=sc.stride("x"), out=y, out_stride=sc.stride("y"),
              rq=blob.rq_table(1 << 30, 24, 0, 23), **ln_mean(23))
    rc, _ = harness.run([d], blob.array(), sc.array())
    assert rc == 0, harness.error()
    assert (est.LN_MEAN, est.LN_VAR, est.ISQRT, est.LN_DIV) == (10, 4, 22, 34)
    assert est.ln_block_steps(HARNESS_SHAPE, 23) == 6 - 1 + 72 + 70 + 3 * 6 + 6 == 171
    assert harness.last_cycles() == est._layernorm(6, 23, HARNESS_SHAPE) == 126 + 2 * 171 + ENGINE + 16 == 570


@pytest.mark.parametrize("T,C,N", [(10, 23, 12), (9, 40, 17), (10, 130, 96)])
def test_csim_counts_layernorm_fused_into_linear(harness: Harness, T: int, C: int, N: int) -> None:
    """A LAYERNORM row followed by the LINEAR reading its output runs inside that LINEAR's left-operand
    loader: same bytes as the two rows run apart (the LayerNorm output too), cycles = the estimate."""
    rng = np.random.default_rng(T + C)
    blob, sc = Blob(), Scratch()
    x = sc.alloc("x", (T, C), np.int16, rng.integers(-3000, 3000, (T, C)))
    h = sc.alloc("h", (T, C), np.int8)
    y = sc.alloc("y", (T, N), np.int8)
    ln = layer(op=OP_LAYERNORM, T=T, N=C, out_bits=8, in_=x, in_stride=sc.stride("x"), out=h, out_stride=sc.stride("h"),
               rq=blob.rq_table(1 << 30, 26, 3, C), **ln_mean(C))
    lin = layer(op=OP_LINEAR, T=T, K=C, N=N, out_bits=8, in_=h, in_stride=sc.stride("h"), out=y,
                out_stride=sc.stride("y"),
                w=blob.add_weights(rng.integers(-128, 128, (C, N)), harness.C),
                b=blob.add(rng.integers(-99, 99, N), np.int32),
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
    # the trace: T rows of the LayerNorm output at its padded stride
    assert np.array_equal(rows_of(traced[0], np.int8, T, C, sc.stride("h")), sc.get(apart, "h"))
    assert sorted(traced) == [0, 1]
    cycles, _ = est.gemm_cycles(HARNESS_SHAPE, T, C, N, bias=True, rq_tab=True, gelu=False, prefetch_bytes=0,
                                ln=True)
    assert harness.last_cycles() == cycles + _prefetch0(C, N)


# ---------------------------------------------------------------------------------------------
# lane multipliers: the DSP rule, the proven widths, the per-unit counts
# ---------------------------------------------------------------------------------------------
def test_mul_dsps_rule_by_hand() -> None:
    """27 x 18 signed per DSP48E2 (25 x 18 on DSP48E1), the wider operand on the wide port, wider operands
    split into 26- (24-) and 17-bit chunks."""
    from iseg.generator.boards import BOARDS

    kv, z2 = BOARDS["kv260"], BOARDS["pynq-z2"]
    cases = {(27, 18): 1, (18, 27): 1, (9, 27): 1, (28, 18): 2, (19, 19): 2, (25, 32): 2, (22, 32): 2,
             (31, 32): 4, (33, 32): 4, (16, 31): 2, (47, 47): 6, (9, 29): 2, (8, 8): 1}
    assert {k: est.mul_dsps(*k, kv) for k in cases} == cases
    assert (est.mul_dsps(25, 18, z2), est.mul_dsps(26, 18, z2), est.mul_dsps(27, 18, z2)) == (1, 2, 2)


def test_lane_widths_of_the_builtin_model() -> None:
    """plan.lane_widths from the built-in checkpoint's constants, worked out by hand: fc2 K 256 (bias < 2^13),
    d_head 32, 584 tokens (576 patches + 8 classes), Shiftmax x0 in -170..-41, GELU x0 down to -295 with
    em >= 202752, add m < 2^30."""
    from iseg.checkpoint import load
    from iseg.generator.plan import lane_widths
    from iseg.graph import build_graph

    ck = load(Path(__file__).resolve().parents[2] / "model" / "builtin" / "builtin_int8.safetensors")
    w = lane_widths(build_graph(ck.spec), ck)
    assert w == est.LaneWidths(
        ACC=(256 * 128 * 128 + 4674).bit_length() + 1,  # 24
        SCORE=(32 * 128 * 128).bit_length() + 1,  # 21
        PV=((32768 + 584 // 2 + 1) * 128).bit_length() + 1,  # 24
        ADD_M=31, SM_BASE=9, SM_X0=9,
        SM_F=(((1 << 47) - 1) // (41 << 15)).bit_length() + 1,  # 104755299: 28
        GELU_BASE=10, GELU_X0=10, GELU_F=((2 ** 31 - 1) // 202752).bit_length() + 1,  # 10591: 15
            ARR=max((256 * 128 * 128).bit_length() + 1, 21, 24))  # the array's sum (no bias), SCORE, PV: 24
    assert (w.ACC, w.SCORE, w.PV, w.SM_F, w.GELU_F) == (24, 21, 24, 28, 15)


def test_unit_dsps_by_hand() -> None:
    """The KV260 lane DSPs for widths ACC 25, SCORE 22, PV 24, ADD_M 31, Shiftmax 9 x 27, GELU 9 x 15."""
    from iseg.generator.boards import BOARDS
    from iseg.random_model import PRESETS, with_classes

    graph = build_graph(with_classes(PRESETS["seg-t-512"]))
    w = est.LaneWidths(ACC=25, SCORE=22, PV=24, ADD_M=31, SM_BASE=9, SM_F=27, SM_X0=9, GELU_BASE=9, GELU_F=15,
                       GELU_X0=9)
    a = est.ArrayShape(rows=18, cols=64, pack=2, out_lanes=8, ln_lanes=4, sm_lanes=16, axi_bytes=16, s_lanes=18)
    units = {u.name: u for u in est.unit_costs(a, graph, BOARDS["kv260"], w).units}
    # max(8 output, 18 score) = 18 requant lanes of max(25, 24, 22)x32 (2 each: the GEMM output, P.V output and
    # score lanes share them) + per output lane add 2 x 16x31 (2 + 2); the fused lambda-GELU + RQ_8 is a table lookup
    assert units["output_stage"].dsp == 18 * 2 + 8 * 4
    assert units["attention_lanes"].dsp == 0
    # the exp pass's x0*q 9x7 on 16 lanes; the normalise pass's x0*q and mantissa*f 9x27 on 8 per row (two
    # 4-element words of a probability row's bank per step), two rows at once; no row shift |x0|*f (Seg-T is
    # precise: no SM_ROW_SHIFT)
    assert a.sm_norm_lanes == 8
    assert units["shiftmax"].dsp == 16 * 1 + 2 * 8 * (1 + 1)
    # the loader (a LayerNorm alone runs on it too): 8 squares 16x16, 4 lanes of y*f 18x32 (2) + RQ 31x32 (4),
    # per row the mean's reciprocal product n * m 26x27 (CMAX 768: n < 768 * 2^15 < 2^25, m < 2^(16 + 10); 25 and
    # 26 magnitude bits: one 26-bit chunk by two 17-bit chunks, 2), the remainder's K * q 12x16 (1), mean * sum
    # 16x26 (1), K mean * mean 28x16 (2)
    assert (est._ln_sum_bits(768), est._ln_mean_m_bits(768), est.mul_dsps(26, 27, BOARDS["kv260"])) == (26, 27, 2)
    assert units["layernorm"].dsp == 8 + 4 * 6 + (2 + 1 + 1 + 2)
    fab = est.unit_costs(dataclasses.replace(a, small_fabric=True), graph, BOARDS["kv260"], w)
    fab_units = {u.name: u for u in fab.units}
    assert fab_units["output_stage"].dsp == 18 * 2 + 8 * 4
    assert fab_units["output_stage"].lut == units["output_stage"].lut
    # a lane's table: 256 x 8 bits of single-port distributed RAM, a RAM256X1S (4 LUTs) per bit; the 18 requant
    # lanes' operand select at max(25, 24, 22) bits, a LUT per bit
    assert est.gelu_table_luts() == 4 * 8
    assert units["output_stage"].lut == 8 * (900 + 32) + 18 * 25
    assert fab_units["shiftmax"].dsp == 16 and fab_units["shiftmax"].lut - units["shiftmax"].lut == (16 + 16) * 63


def test_multipliers_are_the_code_sites() -> None:
    """Every counted multiplier names a MUL_SITES call with a matching binding (mul_lane: either)."""
    from iseg.random_model import PRESETS, with_classes

    graph = build_graph(dataclasses.replace(with_classes(PRESETS["seg-t-512"]), softmax="precise8"))
    sites = {(f, impl) for f, impl, *_ in est.MUL_SITES}
    for fab in (False, True):
        muls = est.multipliers(dataclasses.replace(HARNESS_SHAPE, small_fabric=fab), graph, est.LaneWidths())
        for m in muls:
            assert (m.site, m.impl) in sites or ((m.site, "lane") in sites and m.impl == ("fabric" if fab else "dsp"))
        assert {m.site for m in muls} == {f for f, *_ in est.MUL_SITES}  # precise8: the row shift too


@pytest.mark.parametrize("gelu", ["lambda", "shift"])
def test_row_units_are_the_tables_ops(gelu: str) -> None:
    """The estimate counts the GELU / ADD / EMBED_ADD row units exactly when the plan's table has such rows
    (Cfg::ROW_OPS: the engine builds only those)."""
    from dataclasses import replace

    from iseg.generator.boards import BOARDS
    from iseg.generator.config import Config
    from iseg.generator.plan import make_plan
    from iseg.random_model import PRESETS, random_checkpoint

    ck = random_checkpoint(replace(PRESETS["tiny"], gelu=gelu), seed=1)
    cfg = Config(source=Path("e.yaml"), checkpoint=Path("none"), output=Path("none"), project="t",
                 board=BOARDS["kv260"], clock_mhz=250.0, array=(4, 8), image=None, outputs=("report",))
    plan = make_plan(cfg, ck, checkpoint_sha256="0" * 64)
    ops = plan.engine["row_ops"]
    built = {"gelu": (ops >> 9) & 1, "add": (ops >> 6) & 1, "embed_add": (ops >> 2) & 1}
    assert est.row_units(build_graph(ck.spec)) == built
    # the embedding add is fused into the patch-embedding GEMM (estimate.embed_fusions): no EMBED_ADD row is built
    assert built == {"gelu": int(gelu == "shift"), "add": 0, "embed_add": 0}
    units = {u.name: u for u in plan.units}
    assert (units["gelu_row"].dsp > 0) == (gelu == "shift")


def test_gelu_row_lanes_and_cycles_by_hand() -> None:
    """The ShiftGELU row op (hls/engine.h gelu_layer) builds OUT_LANES lanes of gelu_core (x0*q, mantissa*f,
    x*sig) + RQ_8, and one x0*q for the row's em; a lambda model builds no GELU row (fused into the GEMM output
    stage). Seg-T's encoder GELU on KV260-like 16-byte beats and 4 lanes, by hand: 1025 rows of 768 channels,
    B = 768/16 = 48 beats, G = 768/4 = 192 lane steps, per row: the load (48 + READ: it reads), the GELU pass
    (192 + 16 + 66: each lane's divider is in its depth), em's divider 66 and the store (48 + 16: it only writes),
    128 + 274 + 66 + 64 = 532, 1025 * 532 = 545,300; on 8-byte beats and one lane (pynq-z2-like), a row of 70:
    (9 + 80) + (70 + 16 + 66) + 66 + (9 + 16) = 332."""
    from iseg.random_model import PRESETS, with_classes

    w = est.LaneWidths()
    for gelu, rows in (("shift", 1), ("lambda", 0)):
        graph = build_graph(dataclasses.replace(with_classes(PRESETS["tiny"]), gelu=gelu))
        for lanes in (1, 3, 8):
            muls = est.multipliers(dataclasses.replace(HARNESS_SHAPE, out_lanes=lanes), graph, w)
            got = {(m.site, m.what): m.count for m in muls if m.unit == "gelu_row"}
            assert got == {("shexp_parts", "GELU exp: x0 * q"): lanes * rows,
                           ("gelu_core", "GELU: mantissa * f"): lanes * rows,
                           ("gelu_core", "GELU: x * sig"): lanes * rows,
                           ("requant_w", "GELU_ROW RQ_8"): lanes * rows,
                           ("shexp_parts", "row exp of the max: x0 * q"): rows}
    kv = dataclasses.replace(HARNESS_SHAPE, out_lanes=4, axi_bytes=16)
    assert est.gelu_row_cycles(kv, 1025, 768) == 1025 * ((48 + READ) + (192 + DATA + 66) + 66 + (48 + DATA)) == 545_300
    pz = dataclasses.replace(HARNESS_SHAPE, out_lanes=1, axi_bytes=8)
    assert est.gelu_row_cycles(pz, 1, 70) == (9 + READ) + (70 + DATA + 66) + 66 + (9 + DATA) == 332


def test_array_macs_by_hand_and_a_lower_bound() -> None:
    """array_macs of a tiny model counted by hand; ceil(macs / (R*C)) never exceeds the frame's cycles."""
    from iseg.generator.boards import BOARDS
    from iseg.random_model import PRESETS, with_classes

    spec = with_classes(PRESETS["tiny"])
    assert spec.decoder == "mask"
    graph = build_graph(spec)
    d, p, n, c, dd = spec.dim, spec.patch, spec.n_patches, spec.n_cls, spec.dec_dim

    def block(t: int, dim: int, f: int) -> int:  # qkv, proj, fc1, fc2, then QK + PV over all heads: 2 T^2 dim
        return t * dim * 3 * dim + t * dim * dim + 2 * t * dim * f + 2 * t * t * dim

    expect = (n * 3 * p * p * d + spec.layers * block(n + 1, d, spec.mlp_dim)  # patch embedding, encoder
              + n * d * dd + spec.dec_layers * block(n + c, dd, spec.dec_mlp_dim)  # proj_dec, decoder blocks
              + n * dd * dd + c * dd * dd + n * dd * c)  # proj_patch, proj_classes, the mask product
    assert est.array_macs(graph) == expect
    for rows, cols in ((2, 8), (6, 16), (12, 32)):
        a = est.make_shape(rows, cols, graph, BOARDS["kv260"], 250.0)
        assert est.cdiv(expect, rows * cols) <= sum(c.cycles for c in est.op_costs(graph, a))


@pytest.mark.parametrize("board", ["kv260", "pynq-z2"])
def test_pruned_array_search_is_exact(board: str) -> None:
    """The lower-bound pruning changes the search's time, not its choice."""
    from iseg.generator.boards import BOARDS
    from iseg.random_model import PRESETS, with_classes

    graph = build_graph(with_classes(PRESETS["tiny"]))
    b = BOARDS[board]
    assert est.choose_array(graph, b, b.clock_mhz) == est.choose_array(graph, b, b.clock_mhz, prune=False)


# ---- the head: ARGMAX_UPSAMPLE (hls/argmax_upsample.h) ------------------------------------------------------
def test_head_cycles_by_hand() -> None:
    """The overlapped head, image 8 x 12, P 4, 5 classes (hls/argmax_upsample.h).

    Derivation: grid gh = 2 rows of gw = 3 tokens; a grid row is B = P * img_w = 4 * 12 = 48 label beats. With
    3 lanes a token takes ceil(5 / 3) = 2 argmax steps (classes 0-2, then 3-4), a grid row A = 3 * 2 = 6 steps.
    gh + 1 = 3 passes of one AU_STEP loop of max(argmax steps, beats) + READ (the loop reads the logits: 16 + 64):
    pass 0 computes row 0 into half 0 (prologue, 6 + 80 = 86), pass 1 computes row 1 into half 1 while it sends
    row 0 (max(6, 48) + 80 = 128), pass 2 sends row 1 (epilogue, 48 + 80 = 128): 342. With 1 lane A = 15: 95 + 128
    + 128 = 351. When the argmax is the longer part (8 x 8, P 4, 150 classes: gw 2, B 32): 1 lane A = 300, 380 +
    380 + 112 = 872; 8 lanes A = 2 * 19 = 38, 118 + 118 + 112 = 348."""
    assert est.head_cycles(8, 12, 4, 5, 3) == (6 + READ) + (48 + READ) + (48 + READ) == 342
    assert est.head_cycles(8, 12, 4, 5, 1) == 95 + 128 + 128 == 351
    assert est.head_cycles(4, 12, 4, 5, 3) == 86 + 128  # one grid row: prologue + epilogue only
    assert est.head_cycles(8, 8, 4, 150, 1) == 380 + 380 + 112 == 872
    assert est.head_cycles(8, 8, 4, 150, 8) == 118 + 118 + 112 == 348
    # Seg-T 512^2, 150 classes, P 16: A = 32 * 150 = 4800 hides behind B = 8192 (it was 431,616 unoverlapped)
    assert est.head_cycles(512, 512, 16, 150, 1) == 4880 + 31 * 8272 + 8272 == 269_584
    # 16 labels a beat (KV260): B = 8192 / 16 = 512; with 8 lanes A = 32 * 19 = 608 is the longer part
    assert est.head_cycles(512, 512, 16, 150, 8, 16) == 32 * (608 + READ) + (512 + READ) == 22_608
    assert est.head_cycles(8, 12, 4, 5, 3, 4) == (6 + READ) + (12 + READ) + (12 + READ)


def test_argmax_lanes_rule() -> None:
    """Cfg::A_LANES: powers of two <= min(8, AXI_BYTES / 2, classes), whatever the class count (the logits rows
    start on a beat: argmax_lane_options); the fewest with which a grid row's argmax (gw * ceil(classes / lanes)
    steps) fits in its P * img_w beats, else the largest; their comparators are charged in head_pixels (48 LUTs
    each)."""
    from iseg.generator.boards import BOARDS
    from iseg.random_model import PRESETS, with_classes

    def spec(ncls: int, patch: int):
        return with_classes(dataclasses.replace(PRESETS["seg-t-512"], n_cls=ncls, class_names=(),
                                                class_colors=(), patch=patch))

    # A grid row's label beats: P * img_w / LAB (label_beat_labels: LAB labels a beat, the largest power of two
    # dividing P within the m_axi beat and 16), 512 on every 512-wide image below with a 16-byte beat.
    segt = spec(150, 16)
    assert est.argmax_lane_options(150, 16) == [1, 2, 4, 8]  # the old rule (lanes divide 150): [1, 2]
    # gw 32, 512 beats (LAB 16): even 8 lanes take 32 * 19 = 608: the largest, 8 (with a label a beat: 1 lane,
    # 32 * 150 = 4800 <= 8192)
    assert est.argmax_lanes(build_graph(segt), 16) == 8
    # P 8, gw 64: LAB 2, 4, 8, 8, 8 on beats of 2 ... 64 bytes, so 2048, 1024, 512, 512, 512 beats; 64 * ceil(150/L)
    # fits none of them: the largest lanes the beat allows (1 on 2 bytes, 2 on 4, 4 on 8, then 8)
    p8 = build_graph(spec(150, 8))
    assert [est.argmax_lanes(p8, w) for w in (2, 4, 8, 16, 64)] == [1, 2, 4, 8, 8]
    # P 4, gw 128, 512 beats (LAB 4): 128 * 19 = 2432 does not fit either: the largest, 8 once the beat holds 8 i16
    p4 = build_graph(spec(150, 4))
    assert [est.argmax_lanes(p4, w) for w in (8, 16, 64)] == [4, 8, 8]
    # 37 classes (prime; the old rule: 1 lane only), 16-byte beats, 512 beats a grid row: P 4 (gw 128) and P 8
    # (gw 64) need more than 8 lanes: 8; P 16 (gw 32): 32 * ceil(37/4) = 320 fits, 32 * 19 = 608 does not: 4
    assert est.argmax_lane_options(37, 64) == [1, 2, 4, 8]
    assert [est.argmax_lanes(build_graph(spec(37, p)), 16) for p in (4, 8, 16)] == [8, 8, 4]
    # 64 classes, P 4 (gw 128): 1024 beats on 2-byte beats (LAB 2), else 512; 128 * ceil(64/L) fits none: capped by
    # the beat (1, 2, 4, then 8)
    assert [est.argmax_lanes(build_graph(spec(64, 4)), w) for w in (2, 4, 8, 16, 64)] == [1, 2, 4, 8, 8]
    assert [est.argmax_lanes(build_graph(spec(64, 2)), w) for w in (8, 16, 64)] == [4, 8, 8]  # 512 beats: 32 needed
    assert est.argmax_lanes(build_graph(spec(64, 16)), 16) == 4  # gw 32, 512 beats: 32 * 16 = 512 fits
    # fewer classes than the beat's lanes: capped at the classes (more lanes would idle)
    assert [est.argmax_lane_options(n, 64) for n in (1, 2, 3, 5)] == [[1], [1, 2], [1, 2], [1, 2, 4]]
    heads = {w: next(u for u in est.unit_costs(dataclasses.replace(HARNESS_SHAPE, axi_bytes=w), p8,
                                                BOARDS["kv260"]).units if u.name == "head_pixels") for w in (4, 8)}
    assert heads[8].lut - heads[4].lut == (4 - 2) * est.A_LANE_LUT


@pytest.fixture(scope="module")
def harness_a8(tmp_path_factory: pytest.TempPathFactory) -> Harness:
    """The harness with 8 argmax lanes: 16 bytes of i16, so 16-byte beats, and C 16 (the beat divides C)."""
    return Harness(build(tmp_path_factory.mktemp("est_hls_a8"), a_lanes=8, axi=16, c=16))


def test_argmax_lane_steps_stay_in_one_beat(harness_a8: Harness) -> None:
    """Every allowed lane count: each step of each logits row (a row padded to whole beats, plan._padded, from a
    beat-aligned base) reads bytes within ONE memory beat, whatever the class count, the last step of a row reading
    fewer classes; so the AU_STEP loop can run at II = 1 on hardware, as the C-sim counts. The padding is what makes
    it so: on unpadded rows (stride = classes) the same lanes straddle beats (150 classes, 8 lanes, 16-byte beats:
    row 1 starts at byte 300 = 18 * 16 + 12). The C-simulation's span check (hls/axi.h beat_read) enforces it: 150
    and 37 classes at 8 lanes on 16-byte beats (both refused by the old rule, lanes dividing the classes) run on
    padded rows, labels and cycles as expected, and are refused on unpadded ones."""
    from _hls_harness import OP_ARGMAX_UPSAMPLE

    from iseg import numerics as nx
    from iseg.generator.plan import _padded

    def straddles(ncls: int, lanes: int, axi: int, stride: int) -> bool:
        for t in range(2 * axi):
            for j in range(est.cdiv(ncls, lanes)):
                first = 2 * stride * t + 2 * lanes * j
                last = first + 2 * min(lanes, ncls - lanes * j) - 1
                if first // axi != last // axi:
                    return True
        return False

    for axi in (2, 4, 8, 16, 32, 64):
        for ncls in range(1, 160):
            options = est.argmax_lane_options(ncls, axi)
            assert options == [n for n in (1, 2, 4, 8) if n == 1 or n <= min(8, axi // 2, ncls)], (ncls, axi)
            stride = _padded(ncls, 2, axi)
            assert not any(straddles(ncls, n, axi, stride) for n in options), (ncls, axi, options)
    assert straddles(150, 8, 16, 150) and straddles(37, 8, 16, 37) and straddles(37, 4, 16, 37)

    h = harness_a8
    assert (h.beat, h.C) == (16, 16)
    for H, W, P, ncls in ((8, 8, 4, 150), (16, 32, 8, 37)):  # steps: 18 of 8 + one of 6; 4 of 8 + one of 5
        rng = np.random.default_rng(ncls)
        gh, gw = H // P, W // P
        logits = rng.integers(-32768, 32768, (gh * gw, ncls))
        assert 8 in est.argmax_lane_options(ncls, h.beat)
        for padded in (True, False):
            sc = Scratch(beat=h.beat)
            if padded:
                m, stride = sc.alloc("m", (gh * gw, ncls), np.int16, logits), sc.stride("m")
                assert stride == _padded(ncls, 2, 16) != ncls
            else:  # one flat region: the rows back to back, stride = classes
                m, stride = sc.alloc("m", (gh * gw * ncls,), np.int16, logits.reshape(-1)), ncls
            d = layer(op=OP_ARGMAX_UPSAMPLE, T=gh * gw, N=ncls, img_h=H, img_w=W, patch=P, in_=m, in_stride=stride)
            rc, labels = h.run([d], Blob().array(), sc.array(), n_labels=H * W)
            if not padded:
                assert rc != 0 and "a span leaves its beat" in h.error(), (ncls, rc)
                continue
            assert rc == 0, h.error()
            want = nx.upsample_nearest(nx.argmax_labels(logits).reshape(gh, gw), P)
            assert np.array_equal(labels.reshape(H, W), want)
            assert h.last_cycles() == est.head_cycles(H, W, P, ncls, 8, HARNESS_LAB)


@pytest.mark.parametrize("H,W,P,ncls", [(8, 12, 4, 5), (16, 64, 16, 150), (20, 8, 4, 1), (64, 48, 8, 2),
                                        (8, 8, 4, 150)])
def test_csim_counts_argmax_upsample(harness: Harness, H: int, W: int, P: int, ncls: int) -> None:
    """One ARGMAX_UPSAMPLE row (TestCfg::A_LANES = 4, LAB = 2): counted cycles = ``head_cycles``, labels =
    numerics."""
    from _hls_harness import OP_ARGMAX_UPSAMPLE

    from iseg import numerics as nx

    rng = np.random.default_rng(H + W + ncls)
    gh, gw = H // P, W // P
    logits = rng.integers(-32768, 32768, (gh * gw, ncls))
    sc = Scratch()
    d = layer(op=OP_ARGMAX_UPSAMPLE, T=gh * gw, N=ncls, img_h=H, img_w=W, patch=P,
              in_=sc.alloc("m", (gh * gw, ncls), np.int16, logits), in_stride=sc.stride("m"))
    rc, labels = harness.run([d], Blob().array(), sc.array(), n_labels=H * W)
    assert rc == 0, harness.error()
    assert np.array_equal(labels.reshape(H, W), nx.upsample_nearest(nx.argmax_labels(logits).reshape(gh, gw), P))
    assert harness.last_cycles() == est.head_cycles(H, W, P, ncls, 4, HARNESS_LAB)


@pytest.mark.csim
def test_generated_head_lanes_are_the_estimate(tmp_path: Path) -> None:
    """A generated project whose head needs lanes (linear decoder, 36 classes, P 4, gw 16; the 8-column array's
    8-byte beats: 4 labels a stream beat, so 4 * 64 / 4 = 64 beats per grid row): 1 lane would take 16 * 36 = 576
    steps, 2 lanes 288, 4 lanes 16 * 9 = 144, none within 64: Cfg::A_LANES = 4, the most an 8-byte beat of i16
    logits allows; the C-simulation's labels are the reference's, the labels row and the frame count the planned
    cycles."""
    from iseg.checkpoint import load
    from iseg.generator.cli import generate
    from iseg.generator.config import load_config
    from iseg.generator.csim import CsimLibrary
    from iseg.generator.csim import build as build_csim
    from iseg.generator.plan import make_plan
    from iseg.random_model import PRESETS, calibration_image
    from iseg.reference import run

    from .conftest import make_ckpt, write_config

    spec = dataclasses.replace(PRESETS["tiny"], layers=1, dec_layers=1, decoder="linear", n_cls=36, patch=4,
                               image=(32, 64))
    ckpt = make_ckpt(tmp_path, spec, seed=5)
    cfg = write_config(tmp_path, ckpt, array={"rows": 4, "cols": 8}, outputs=["hls", "csim"])
    out = generate(cfg)
    cfg_h = (out / "src" / "model_cfg.h").read_text()
    assert "static constexpr int A_LANES = 4;" in cfg_h and "static constexpr int LAB = 4;" in cfg_h
    plan = make_plan(load_config(cfg), load(ckpt))
    assert plan.engine["a_lanes"] == 4 and plan.engine["lab"] == 4 and plan.engine["axi_bytes"] == 8
    build_csim(out)
    lib = CsimLibrary(out / "build" / "libiseg_csim.so")
    img = calibration_image(spec.image, 4)
    assert np.array_equal(lib.run(img), run(load(ckpt), img)[0])
    assert lib.cycles(-1) == plan.totals["cycles"]
    head = next(r for r in plan.layers if r.op == "ARGMAX_UPSAMPLE")
    cyc = {o.name: o.cycles for o in plan.op_estimates}[head.ops[0]]
    assert lib.cycles(head.index) == cyc == est.head_cycles(32, 64, 4, 36, 4, 4)


# ---- P.V at II 1 on arrays that do not pack; the Shiftmax row shift only for precise8 ----------------------
@pytest.mark.parametrize("softmax,pack,want", [("precise", 2, 2), ("ivit", 2, 2), ("precise8", 2, 1),
                                               ("precise", 1, 1), ("ivit", 1, 1), ("precise8", 1, 1)])
def test_pv_ii_of_variant_and_pack(softmax: str, pack: int, want: int) -> None:
    """Cfg::PV_II = 1 if p_bits <= 8 or the array does not pack (a DSP per PE takes u15 x int8 whole), else 2."""
    from dataclasses import replace

    from iseg.random_model import PRESETS

    g = build_graph(replace(PRESETS["tiny"], softmax=softmax))
    assert est.pv_ii_of(g, pack) == want
    with pytest.raises(ValueError, match="pack"):
        est.pv_ii_of(g, 3)


def test_pv_ii_of_follows_the_shape_pack() -> None:
    """make_shape decides pack (DSP48E1 boards: 1; DSP48E2: 2 for even R, 1 for odd R); op_costs takes PV_II from
    it: precise attention costs exactly heads * nb * vt_n * T array cycles less on the unpacked array."""
    from dataclasses import replace

    from iseg.generator.boards import BOARDS
    from iseg.graph import Attention
    from iseg.random_model import PRESETS

    g = build_graph(replace(PRESETS["tiny"], softmax="precise"))
    shapes = {(b, r): est.make_shape(r, 8, g, BOARDS[b], 100.0) for b in ("kv260", "pynq-z2") for r in (4, 3)}
    assert {k: (s.pack, est.pv_ii_of(g, s.pack)) for k, s in shapes.items()} == {
        ("kv260", 4): (2, 2), ("kv260", 3): (1, 1), ("pynq-z2", 4): (1, 1), ("pynq-z2", 3): (1, 1)}
    packed, unpacked = shapes["kv260", 4], dataclasses.replace(shapes["kv260", 4], pack=1)
    att = [op for op in g.ops if isinstance(op, Attention)]
    c2 = {c.name: c for c in est.op_costs(g, packed)}
    c1 = {c.name: c for c in est.op_costs(g, unpacked)}
    for op in att:
        nb, vt = est.cdiv(op.rows, 4), est.cdiv(op.d_head, 8)
        assert c2[op.name].cycles - c1[op.name].cycles == op.heads * nb * vt * op.rows > 0
        # busy array time: P.V at one key per cycle (R x C MACs, each its own DSP); the tile-edge stall is what
        # the busy time has above the ideal 2 * heads * T^2 * dh / (R * C)
        assert c2[op.name].busy - c1[op.name].busy == op.heads * nb * vt * op.rows
        ideal1 = est.cdiv(2 * op.heads * op.rows ** 2 * op.d_head, 32)
        assert dict(c1[op.name].stalls)["tile_edges"] == c1[op.name].busy - ideal1


@pytest.mark.parametrize("softmax", ["precise", "ivit", "precise8"])
def test_row_shift_multiplier_only_for_precise8(softmax: str) -> None:
    """The Shiftmax row-shift multiplier (sm_row_shift: |x0| * f) is built and counted (Cfg::SM_ROW_SHIFT) only
    when the model uses precise8: one DSP less for the u15 variants."""
    from dataclasses import replace

    from iseg.generator.boards import BOARDS
    from iseg.random_model import PRESETS

    g = build_graph(replace(PRESETS["tiny"], softmax=softmax))
    w = est.LaneWidths()
    sites = [m for m in est.multipliers(HARNESS_SHAPE, g, w) if m.site == "sm_row_shift"]
    assert est.sm_row_shift_of(g) == (softmax == "precise8")
    assert len(sites) == (softmax == "precise8")
    g8 = build_graph(replace(PRESETS["tiny"], softmax="precise8"))
    kv = BOARDS["kv260"]
    sm = {name: next(u for u in est.unit_costs(HARNESS_SHAPE, graph, kv, w).units if u.name == "shiftmax").dsp
          for name, graph in (("this", g), ("precise8", g8))}
    assert sm["precise8"] - sm["this"] == (0 if softmax == "precise8" else est.mul_dsps(w.SM_X0, w.SM_F, kv))


def test_row_shift_multiplier_is_one_dsp_on_kv260_plan() -> None:
    """The plan's engine says SM_ROW_SHIFT for precise8 only; with proven widths the multiplier is 1 DSP."""
    from dataclasses import replace

    from iseg.generator.boards import BOARDS
    from iseg.generator.config import Config
    from iseg.generator.plan import make_plan
    from iseg.random_model import PRESETS, random_checkpoint

    cfg = Config(source=Path("e.yaml"), checkpoint=Path("none"), output=Path("none"), project="t",
                 board=BOARDS["kv260"], clock_mhz=250.0, array=(4, 8), image=None, outputs=("report",))
    plans = {sm: make_plan(cfg, random_checkpoint(replace(PRESETS["tiny"], softmax=sm), seed=1),
                           checkpoint_sha256="0" * 64) for sm in ("precise", "precise8")}
    assert {sm: p.engine["sm_row_shift"] for sm, p in plans.items()} == {"precise": 0, "precise8": 1}
    w = dict(plans["precise8"].widths)
    assert (w["SM_X0"], w["SM_F"]) == (9, 27) and est.mul_dsps(w["SM_X0"], w["SM_F"], BOARDS["kv260"]) == 1


@pytest.fixture(scope="module")
def harness_nopack(tmp_path_factory: pytest.TempPathFactory) -> Harness:
    """The harness with Cfg::PACK = 1 and Cfg::PV_II = 1 (P.V at one key per cycle for every variant)."""
    return Harness(build(tmp_path_factory.mktemp("est_hls_nopack"), pack=1, pv_ii=1))


@pytest.mark.parametrize("variant", ["precise", "ivit"])
@pytest.mark.parametrize("T,heads,dh", [(9, 1, 16), (21, 2, 8), (40, 1, 64)])
def test_csim_counts_attention_unpacked(harness: Harness, harness_nopack: Harness, variant: str, T: int, heads: int,
                                        dh: int) -> None:
    """u15 P at PV_II 1 on a non-packing Cfg: the same outputs as at PV_II 2, counted cycles = estimate."""
    d, blob, sc = _attention_row(T + 2, T, heads, dh, 45, sm_variant=SM_VARIANTS[variant])
    _assert_same_outputs((harness_nopack, harness), d, blob, sc)
    harness_nopack.run([d], blob.array(), sc.array())
    shape = dataclasses.replace(HARNESS_SHAPE, pack=1)
    assert harness_nopack.last_cycles() == est.attention_cycles(shape, T, heads, dh, 1)[0]


@pytest.mark.csim
def test_generated_pynq_z2_precise_pv_ii1(tmp_path: Path) -> None:
    """A generated pynq-z2 project (DSP48E1: the array does not pack) with precise Shiftmax: Cfg::PACK 1,
    Cfg::PV_II 1, no row shift; the C-simulation is the reference's and counts the planned cycles."""
    from iseg.checkpoint import load
    from iseg.generator.cli import generate
    from iseg.generator.config import load_config
    from iseg.generator.plan import make_plan
    from iseg.random_model import PRESETS

    from .conftest import assert_csim_counts_the_plan, make_ckpt, write_config

    spec = dataclasses.replace(PRESETS["tiny"], layers=1, dec_layers=1, softmax="precise", dim=32, heads=2,
                               mlp_dim=64, dec_dim=32, dec_heads=2, dec_mlp_dim=64)
    ckpt = make_ckpt(tmp_path, spec, seed=12)
    cfg = write_config(tmp_path, ckpt, board="pynq-z2", array={"rows": 4, "cols": 8}, outputs=["hls", "csim"])
    out = generate(cfg)
    text = (out / "src" / "model_cfg.h").read_text()
    for line in ("static constexpr int PACK = 1;", "static constexpr int PV_II = 1;",
                 "static constexpr bool SM_ROW_SHIFT = false;"):
        assert line in text
    plan = make_plan(load_config(cfg), load(ckpt))
    assert (plan.pack, plan.engine["pv_ii"], plan.engine["sm_row_shift"]) == (1, 1, 0)
    assert_csim_counts_the_plan(out, ckpt, plan, image_seed=5, n_attention=2)


def test_array_pack_is_a_planner_choice() -> None:
    """Cfg::PACK 2 needs a DSP48E2 and an even R; 1 is always possible. The array's DSPs and LUTs follow
    array_lut_per_mac: 4 x 8 = 32 MACs on 16 DSPs (48 LUTs each) or on 32 DSPs (32 LUTs each)."""
    from iseg.generator.boards import BOARDS
    from iseg.random_model import PRESETS

    kv, pz = BOARDS["kv260"], BOARDS["pynq-z2"]
    assert (est.pack_options(4, kv), est.pack_options(5, kv), est.pack_options(4, pz)) == ((2, 1), (1,), (1,))
    g = build_graph(PRESETS["tiny"])
    a2, a1 = est.make_shape(4, 8, g, kv, 250), est.make_shape(4, 8, g, kv, 250, pack=1)
    assert (a2.pack, a1.pack, a2.dsps, a1.dsps) == (2, 1, 16, 32)
    arr = {a.pack: next(u for u in est.unit_costs(a, g, kv).units if u.name == "gemm_array") for a in (a1, a2)}
    assert (arr[2].dsp, arr[2].lut, arr[1].dsp, arr[1].lut) == (16, 32 * 48, 32, 32 * 32)
    with pytest.raises(ValueError, match="even number of rows"):
        est.make_shape(5, 8, g, kv, 250, pack=2)
    with pytest.raises(ValueError, match="DSP48E2"):
        est.make_shape(4, 8, g, pz, 100, pack=2)


def test_choose_array_weighs_both_packings(monkeypatch: pytest.MonkeyPatch) -> None:
    """The search returns the best frame over both packings: without the K unroll (KD 1) on KV260 (a DSP per MAC
    wins: packed MACs cost more LUTs) and on ZCU104 (packing wins), the choice equals the better of the two
    searches restricted to one packing each, and the two restricted searches differ, so ignoring either packing
    changes the answer."""
    from iseg.generator.boards import BOARDS
    from iseg.random_model import PRESETS, with_classes

    g = build_graph(with_classes(PRESETS["seg-t-512"]))
    options = est.pack_options
    monkeypatch.setattr(est, "kd_options", lambda graph: (1,))

    def frame(a: est.ArrayShape) -> int:
        return sum(c.cycles for c in est.op_costs(g, a))

    for name, clock, winner in (("kv260", 250, 1), ("zcu104", 250, 2)):
        board = BOARDS[name]
        best = est.choose_array(g, board, clock)
        only = {}
        for pack in (1, 2):
            monkeypatch.setattr(est, "pack_options", lambda r, b, p=pack: tuple(x for x in options(r, b) if x == p))
            only[pack] = frame(est.choose_array(g, board, clock))
        monkeypatch.setattr(est, "pack_options", options)
        assert best.pack == winner and frame(best) == min(only.values()) == only[winner], name
        assert only[3 - winner] > only[winner], name


def test_choose_array_weighs_the_k_unroll(monkeypatch: pytest.MonkeyPatch) -> None:
    """On KV260 the K unroll wins: a chain of 4 DSPs per output shares its accumulators and readout among 4 MACs,
    so a packed array of more MACs fits the LUTs than KD 1's 896 (one DSP each); the search restricted to KD 1 is
    slower by more than a fifth, and the chosen design's frame is the best of the three restricted searches (each KD
    alone)."""
    from iseg.generator.boards import BOARDS
    from iseg.random_model import PRESETS, with_classes

    g = build_graph(with_classes(PRESETS["seg-t-512"]))
    board = BOARDS["kv260"]
    options = est.kd_options(g)
    assert options == (1, 2, 4)  # K 768, 192, 768; d_head 64

    def frame(a: est.ArrayShape) -> int:
        return sum(c.cycles for c in est.op_costs(g, a))

    best = est.choose_array(g, board, 250)
    only = {}
    for kd in options:
        monkeypatch.setattr(est, "kd_options", lambda graph, k=kd: (k,))
        only[kd] = frame(est.choose_array(g, board, 250))
    assert (best.kd, best.pack) == (4, 2) and best.macs > 1.5 * 896  # (worst-case lane widths: 22 x 16 x 4)
    assert frame(best) == min(only.values()) == only[4]
    assert only[1] > 1.2 * only[4]


def test_lane_list_is_not_beaten_by_the_full_grid() -> None:
    """LANE_CONFIGS keeps the winners of the full grid of lane combinations (output 0/4/2/1, Shiftmax
    32/16/8/4/2, score -1/0, LayerNorm 0/4/2): on pynq-z2 (the board whose search is cheap) with the calibrated
    Seg-T checkpoint's widths, no single combination gives a faster frame than the list's choice."""
    import itertools

    from iseg.generator.boards import BOARDS
    from iseg.generator.plan import lane_widths
    from iseg.random_model import PRESETS, random_checkpoint, with_classes

    ck = random_checkpoint(with_classes(PRESETS["seg-t-512"]), seed=0)
    g = build_graph(ck.spec)
    w, b = lane_widths(g, ck), BOARDS["pynq-z2"]
    best = sum(c.cycles for c in est.op_costs(g, est.choose_array(g, b, 100, w)))
    orig = est.LANE_CONFIGS
    compared = []
    try:
        for combo in itertools.product((0, 4, 2, 1), (32, 16, 8, 4, 2), (-1, 0), (0, 4, 2)):
            est.LANE_CONFIGS = (combo,)
            try:
                a = est.choose_array(g, b, 100, w)
            except ValueError:  # no array of this combination fits pynq-z2
                continue
            assert sum(c.cycles for c in est.op_costs(g, a)) >= best, combo
            compared.append(combo)
    finally:
        est.LANE_CONFIGS = orig
    # most combinations do not fit the board: the check above must still have compared some (measured: 28 of 120 fit)
    assert len(compared) >= 10, compared


def test_bank_rules_by_hand() -> None:
    """The planner's side of the memory port check (hls/iseg_ports.h checks the engine's side in C-sim)."""
    from iseg.generator.boards import BOARDS
    from iseg.generator.plan import tile_weights
    from iseg.random_model import PRESETS

    # score lanes (ATT_S_LANE): R 2, C 4, 8 lanes, banks key mod 2: one step stores both rows, keys 0..3 each,
    # so banks 0, 1, 0, 1 twice: 4 writes per bank; 4 lanes (one row per step) hit a bank twice; 2 lanes once
    assert est.score_lane_writes(2, 4, 8, 2) == 4
    assert est.score_lane_writes(2, 4, 4, 2) == 2 and est.score_lane_writes(2, 4, 2, 2) == 1
    # C 6 and 4 banks: key tile 1 starts at key 6 (bank 2), so its row 0 hits banks 2, 3, 0, 1, 2, 3
    assert est.score_lane_writes(1, 6, 6, 4) == 2
    # make_shape lowers S_LANES (a divisor of C) until each bank takes at most two: 14 lanes on R 36 x C 24 fit
    assert est.score_lane_writes(36, 24, 14, 16) == 2
    # V beats of the K/V load, d_head 64: the beat divides C (axi_beat), so a beat's channels lie in one tile, one
    # word of the weight buffer: C 24 -> 8-byte beats on KV260 (16-byte port) and U250 (64-byte) alike; C 64 on
    # U250 -> 64-byte beats
    segt = build_graph(PRESETS["seg-t-512"])
    kv, u250 = BOARDS["kv260"], BOARDS["u250"]
    assert est.axi_beat(segt, 24, kv) == est.axi_beat(segt, 24, u250) == 8
    assert est.axi_beat(segt, 64, u250) == 64
    # the blob's weights in the weight buffer's order: tile j = columns [j C, j C + C), K rows each, zero past N
    w = np.arange(10, dtype=np.int8).reshape(2, 5)
    assert tile_weights(w, 4).tolist() == [[[0, 1, 2, 3], [5, 6, 7, 8]], [[4, 0, 0, 0], [9, 0, 0, 0]]]
    assert est.a_word_options(16) == (4, 8) and est.a_word_options(64) == (16, 32)


def test_chosen_array_fits_the_banks() -> None:
    """choose_array's KV260 Seg-T design: score lanes, V beats, LayerNorm lanes (<= A_WORD, a power of two)
    and the normalise lanes all within two accesses per bank and cycle."""
    from iseg.generator.boards import BOARDS
    from iseg.random_model import PRESETS, with_classes

    g = build_graph(with_classes(PRESETS["seg-t-512"]))
    a = est.choose_array(g, BOARDS["kv260"], 250)
    assert est.score_lane_writes(a.rows, a.cols, a.score_lanes, a.sm_lanes) <= 2
    assert a.cols % a.axi_bytes == 0 and 64 % a.axi_bytes == 0  # a V beat: one word of the weight buffer
    assert a.ln_lanes <= a.a_word and a.a_word % a.ln_lanes == 0
    assert a.sm_norm_lanes <= 2 * a.a_word and a.load_lanes <= 2 * a.a_word and a.prefetch_lanes <= a.cols


# ---- the K unroll (Cfg::KD): KD k per step of a PE --------------------------------------------------------------
@pytest.fixture(scope="module", params=[(2, 2, 2), (4, 2, 2), (4, 1, 1)], ids=["kd2", "kd4", "kd4_nopack"])
def harness_kd(request: pytest.FixtureRequest,
               tmp_path_factory: pytest.TempPathFactory) -> tuple[Harness, est.ArrayShape]:
    """The harness with Cfg::KD 2 or 4 (packed, PV_II 2; and unpacked, PV_II 1), and its estimate's shape."""
    kd, pack, pv_ii = request.param
    lib = build(tmp_path_factory.mktemp(f"est_hls_kd{kd}_{pack}"), kd=kd, pack=pack, pv_ii=pv_ii)
    return Harness(lib), dataclasses.replace(HARNESS_SHAPE, kd=kd, pack=pack)


@pytest.mark.parametrize("T,K,N", [(10, 128, 12), (9, 40, 20), (1, 8, 8), (13, 112, 17)])
def test_k_unroll_gemm_csim(harness_kd: tuple[Harness, est.ArrayShape], T: int, K: int, N: int) -> None:
    """A LINEAR row on the K-unrolled array: the reference's values, and the counted cycles = the estimate, whose
    tiles take ceil(K / KD) steps (10 x 128 x 12 on 4 x 8: 32 steps a tile at KD 4, where the drain's 8 and the
    A share's 64 / 2 = 32 do not bind)."""
    h, shape = harness_kd
    parts = _run_linear(h, shape, T, K, N, seed=T + K)
    assert parts["array"] == cdiv(T, 4) * cdiv(N, 8) * K // shape.kd


def test_k_unroll_gemm_extremes(harness_kd: tuple[Harness, est.ArrayShape]) -> None:
    """Every product at the packed chain's bound: x = 255 would not pass the int8 input, so x = -128 against w = -128
    (the low field's sum of 4 products 2^16, inside 18 signed bits) and 127 x -128: the reference's sums exactly."""
    h, _ = harness_kd
    T, K, N = 4, 16, 8
    blob, sc = Blob(), Scratch()
    xv = np.where(np.arange(T)[:, None] % 2 == 0, -128, 127) * np.ones((T, K), np.int64)
    x = sc.alloc("x", (T, K), np.int8, xv)
    y = sc.alloc("y", (T, N), np.int16)
    wv = np.full((K, N), -128)
    wv[:, 1::2] = 127
    d = layer(op=OP_LINEAR, T=T, K=K, N=N, out_bits=16, in_=x, in_stride=sc.stride("x"), out=y,
              out_stride=sc.stride("y"), w=blob.add_weights(wv, h.C), b=blob.add(np.zeros(N, np.int64), np.int32),
              rq=blob.rq_table(1 << 30, 38, 0, N))
    out = sc.array()
    rc, _ = h.run([d], blob.array(), out)
    assert rc == 0, h.error()
    want = inum.requant(inum.linear(xv, wv, np.zeros(N, np.int64)), 1 << 30, 38, 0, 16)
    assert np.array_equal(sc.get(out, "y"), want)
    assert abs(int(want[0, 0])) > 1000  # 16 x 2^14 = 2^18 through a 2^-8 requant: not a saturated or zero case


@pytest.mark.parametrize("T,heads,dh", [(9, 1, 16), (21, 2, 8), (4, 1, 8), (40, 1, 64), (23, 3, 16)])
def test_k_unroll_attention_csim(harness: Harness, harness_kd: tuple[Harness, est.ArrayShape], T: int, heads: int,
                                 dh: int) -> None:
    """An ATTENTION row on the K-unrolled array gives the outputs of the KD 1 engine (the same integers: P.V's keys
    past T read zero, T 9, 21, 23 not a multiple of KD), and its counted cycles are the estimate's, whose key tiles
    take d_head / KD steps and P.V's channel tiles ceil(T / KD)."""
    h, shape = harness_kd
    d, blob, sc = _attention_row(T, T, heads, dh, 45)
    _assert_same_outputs([harness, h], d, blob, sc)  # (the unpacked one at PV_II 1: the same integers)
    pv_ii = 1 if shape.pack == 1 else 2
    cyc, parts = est.attention_cycles(shape, T, heads, dh, pv_ii)
    assert h.last_cycles() == cyc
    kd = shape.kd
    assert parts["array"] == heads * cdiv(T, 4) * (cdiv(T, 8) * dh // kd + cdiv(dh, 8) * pv_ii * cdiv(T, kd))


def test_k_unroll_needs_divisible_k(harness_kd: tuple[Harness, est.ArrayShape]) -> None:
    """A GEMM whose K is not a multiple of KD stops the C-simulation in one line (the planner never emits one:
    estimate.kd_options)."""
    h, shape = harness_kd
    T, K, N = 4, 4 * shape.kd + 1, 8
    rng = np.random.default_rng(0)
    blob, sc = Blob(), Scratch()
    x = sc.alloc("x", (T, K), np.int8, rng.integers(-128, 128, (T, K)))
    y = sc.alloc("y", (T, N), np.int8)
    d = layer(op=OP_LINEAR, T=T, K=K, N=N, out_bits=8, in_=x, in_stride=sc.stride("x"), out=y,
              out_stride=sc.stride("y"), w=blob.add_weights(rng.integers(-128, 128, (K, N)), h.C),
              b=blob.add(np.zeros(N, np.int64), np.int32), rq=blob.rq_table(1 << 30, 40, 0, N))
    rc, _ = h.run([d], blob.array(), sc.array())
    assert rc != 0 and "KD must divide K" in h.error()


def test_choose_array_keeps_to_its_budget() -> None:
    """choose_array's ``budget`` (config ``budget``): every share bounds what the chosen design takes of its resource,
    a larger budget never gives a slower frame (the search only gains candidates), and the default budget is the
    planner's 80 % DSP / 70 % LUT / 80 % memory. On KV260, Seg-T (`precise8`): 12x32x4 at the default, 14x32x4
    within 90 / 75 / 90 % (C-simulated bit-exact with 8,077,657 counted cycles = the estimate,
    `benchmarks/csim_frame.py --softmax precise8 --budget dsp=0.9,lut=0.75,memory=0.9`)."""
    from iseg.generator.boards import BOARDS, DEFAULT_BUDGET, Budget
    from iseg.generator.plan import lane_widths
    from iseg.random_model import PRESETS, random_checkpoint, with_classes

    ck = random_checkpoint(dataclasses.replace(with_classes(PRESETS["seg-t-512"]), softmax="precise8"), seed=0)
    g = build_graph(ck.spec)
    w, b = lane_widths(g, ck), BOARDS["kv260"]
    assert DEFAULT_BUDGET == Budget(dsp=0.8, lut=0.7, memory=0.8)
    frames = []
    for budget in (Budget(dsp=0.5, lut=0.5, memory=0.6), DEFAULT_BUDGET, Budget(dsp=0.9, lut=0.75, memory=0.9)):
        a = est.choose_array(g, b, 250, w, budget=budget)
        u = est.unit_costs(a, g, b, w)
        assert u.dsp <= int(b.dsp * budget.dsp) and u.lut <= int(b.lut * budget.lut)
        assert u.bram36 <= int(b.bram36 * budget.memory) and u.uram <= int(b.uram * budget.memory)
        assert not est.exceeds(u, b, budget) and est.overruns(u, b, budget) == ""
        frames.append((sum(c.cycles for c in est.op_costs(g, a)), (a.rows, a.cols, a.kd)))
    assert frames[0][0] > frames[1][0] > frames[2][0], frames
    assert [f[1] for f in frames[1:]] == [(12, 32, 4), (14, 32, 4)]
    assert est.choose_array(g, b, 250, w) == est.choose_array(g, b, 250, w, budget=DEFAULT_BUDGET)


@pytest.mark.parametrize("text, expected", [
    ("", (0.8, 0.7, 0.8)),
    ("dsp=0.9", (0.9, 0.7, 0.8)),
    ("dsp=0.9,lut=0.75,memory=0.9", (0.9, 0.75, 0.9)),
    ("memory=1", (0.8, 0.7, 1.0)),
])
def test_parse_budget_option(text: str, expected: tuple[float, float, float]) -> None:
    from iseg.generator.config import parse_budget_option

    b = parse_budget_option(text)
    assert (b.dsp, b.lut, b.memory) == expected


@pytest.mark.parametrize("text, needle", [
    ("dsp=1.2", "--budget: budget.dsp: must be a share of the device's DSPs in (0, 1]"),
    ("lut=abc", "--budget: budget.lut: must be a share"),
    ("dsp", "--budget: budget.dsp: must be a share"),
    ("cpu=0.5", "--budget: budget.cpu: unknown key"),
    ("dsp=nan", "--budget: budget.dsp: must be a share"),
])
def test_parse_budget_option_refuses(text: str, needle: str) -> None:
    from iseg.errors import IsegError
    from iseg.generator.config import parse_budget_option

    with pytest.raises(IsegError) as exc:
        parse_budget_option(text)
    assert needle in str(exc.value)


def test_memory_blocks_by_hand() -> None:
    """estimate._mem_blocks against hand counts (a URAM depth of 8192 and a LUTRAM threshold in bytes survived every
    test before). BRAM36: 36 Kbit = 4,608 bytes, at most 72 bits wide; URAM: 4,096 words of 72 bits; 1 Kbit or
    less: LUTRAM or registers."""
    from iseg.generator.boards import BOARDS

    kv = BOARDS["kv260"]
    # 80,000 bytes in 2 memories of 72-bit words: 40,000 bytes = 4,445 words each -> 2 URAMs each
    assert est._mem_blocks(80_000, 2, 72, kv, True) == (0, 4)
    # the same on BRAM: ceil(40,000 / 4,608) = 9 each
    assert est._mem_blocks(80_000, 2, 72, kv, False) == (18, 0)
    # width first: 144-bit words need 2 BRAM36 side by side even for 5,000 bytes (2 by depth too)
    assert est._mem_blocks(5_000, 1, 144, kv, False) == (2, 0)
    assert est._mem_blocks(5_000, 1, 288, kv, False) == (4, 0)
    # 1,024 bits (128 bytes) is LUTRAM; 129 bytes takes a block
    assert est._mem_blocks(128, 1, 8, kv, False) == (0, 0)
    assert est._mem_blocks(129, 1, 8, kv, False) == (1, 0)
    # URAM only from 4 KiB a memory: 4,095 bytes stay in one BRAM36, 4,096 (456 words) take one URAM
    assert est._mem_blocks(4_095, 1, 72, kv, True) == (1, 0)
    assert est._mem_blocks(4_096, 1, 72, kv, True) == (0, 1)
