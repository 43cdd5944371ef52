"""The analytic performance and resource model behind the planner and ``report.md``.

It models the code of ``hls/`` as written -- loop by loop, the same trip counts the engine adds to
its C-simulation cycle counter (``ISEG_CYCLES``), so ``tests/generator/test_estimate.py`` can
compare the two exactly. One figure per op (``cycles``); the old "scheduled" figure of an
engine that did not exist is gone. What is counted (``docs/gen-hls.md``):

Every GEMM, attention and lone LayerNorm row runs as passes of ONE engine loop (``hls/schedule.h``), each pass
a mode of it with the trip count of the loop it replaced, set up by a sequencer call (SEQ_SETUP cycles each).
GEMM rows (LINEAR, PATCH_EMBED, MASK_PRODUCT; ``hls/gemm.h``): the per-channel constants
(max(N, their beats)); the first row block's left operand (R * ceil(K/W) beats, exposed); then
per (row block, column tile) max(K, drain, A share, weight share) iterations: the array step, the previous
tile's output lanes (ceil(R*C / OUT_LANES) steps), the next row block's left operand (its beats spread over the
block's column tiles) and the next LINEAR layer's weight prefetch (its beats spread over all tiles of this
layer), a row block's tiles and, where the loader's last write allows, the following blocks' in one pass
(``gemm_block_passes``); finally the last tile's drain. MASK_PRODUCT first loads its activation right operand
(N * ceil(K/W) beats); PATCH_EMBED first reads the pixel stream (PIX pixels a beat) and stages the patches, the
fill of grid row s overlapped with the staging of grid row s - 1 (``pixel_cycles``).
Attention (``hls/attention.h``): per head K_h / V_h loaded (a K and a V beat per step of the transposer, two
iterations: ``kv_load_iters``), head h + 1's under head h's passes (``ArrayShape.kv_overlap``), so only head 0's
and what the previous head's passes left add to a head's first pass, beside its Q(0) beats;
QK(0) (the Q.K^T key tiles with their fused score drain on S_LANES lanes); then per query
block i PV(i-1) (one key per iteration at II = PV_II, ``pv_ii_of``: 2 when the probabilities are u15 --
precise, ivit -- on a packing array, since u15 x int8 cannot share a DSP48E2 with a second MAC; 1 when
they are u8 -- precise8 -- an 8 x 8 product that packs like int8 x int8, or when the array does not
pack (pack 1: one DSP per PE, which takes a 16 x 8 product whole)) and QK(i+1) on the array while the
Shiftmax of block i advances one step per loop iteration (exp pass, one pipelined-divider latency,
normalise pass at SM_LANES elements per step; iterations, not cycles, whatever PV_II); what is left
of it runs alone; PV(nb-1) last. Blocks 2 .. nb-2 run on in block 1's pass where no block leaves a rest and each
block's Shiftmax ends the engine loop's depth before the block (``attention_chained``): one fill for all of them.
A LayerNorm followed by the Linear that reads its output (or a row window of it, or by Linears that each read
one window: ``ln_fusions``) is fused into that Linear's (each Linear's) left-operand loader (``ln_block_steps``:
a row's stats, its statistics chain, its normalise beside the later rows' stats). The other
LayerNorms, GELU (ShiftGELU only), adds, copies and the head run alone, at their
lanes. Every entry into a pipelined loop also pays the loop's depth (fill and drain): PIPE for the datapath,
PIPE_READ where an iteration reads an m_axi port (M_AXI_LATENCY more), PIPE_ENGINE for every pass of the engine
loop (the read, then the LayerNorm statistics chain; one schedule for every mode: docs/hls.md, item 12).

Resources: the lane multipliers are the calls of hls/mul.h, one entry per call and instance
(``MUL_SITES``, ``multipliers``), on their proven operand widths (``LaneWidths``): ``mul_dsps`` DSPs or
``mul_luts`` LUTs each; the rest of a lane's logic and the buffers' LUTs are rules of thumb.
"""

from __future__ import annotations

import collections
import functools
import itertools
import math
from collections.abc import Hashable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from iseg import numerics as inum
from iseg.errors import IsegError
from iseg.generator.boards import DEFAULT_BUDGET, Board, Budget
from iseg.graph import (
    Add,
    ArgmaxUpsample,
    Attention,
    ConcatConst,
    Embed,
    Gelu,
    Graph,
    LayerNorm,
    Linear,
    MaskProduct,
    Op,
    PatchEmbed,
    SliceRows,
)

__all__ = ["ArrayShape", "array_lut_per_mac", "pack_options",
           "OpCost", "UnitCost", "Units", "op_costs", "unit_costs", "choose_array", "overruns", "exceeds",
           "fit_kv_overlap", "array_luts", "output_luts", "kd_options",
           "mul_luts",
           "gemm_cycles", "gelu_row_cycles",
           "attention_cycles", "kv_load_iters", "better_sd_defer", "pv_ii_of", "ln_block_steps",
           "sm_block_steps",
           "LaneWidths", "Mul",
           "MUL_SITES", "STRUCT_WIDTHS", "multipliers", "row_units", "make_shape", "act_cache_budget", "wrows_needed",
           "mul_dsps", "sm_row_shift_of", "embed_fusions"]

PIPE = 16  # pipeline fill/drain of a loop's datapath, per entry (hls/compat.h kPipeDepth)
M_AXI_LATENCY = 64  # the m_axi read latency the schedule assumes (hls.tcl -m_axi_latency; hls/compat.h kMaxiLatency)
PIPE_READ = PIPE + M_AXI_LATENCY  # a loop whose iteration reads an m_axi beat and uses it (hls/compat.h kReadDepth)
DIV = 66  # one sequential 64-bit divider (hls/compat.h kDivCycles)
ISQRT = 22  # digit-by-digit square root steps of a variance below 2^43 (hls/layernorm.h kLnVarSteps: K <= 2047)
LN_DIV = 34  # the 1/sd divider: (2^31 - 1) // sd on 32 bits, W + 2 cycles as DIV's 64 (hls/layernorm.h kLnDivCycles)
LN_MEAN = 10  # a LayerNorm row's mean: the reciprocal product, the remainder's multiply, rounding (hls/gemm.h
# kLnMeanCycles; no divider: the generator gives each row the reciprocal of K, numerics.mean_reciprocal)
LN_VAR = 4  # its variance: one pipelined multiply (K mean comes from the remainder's; hls/gemm.h kLnVarCycles)
LN_CHAIN = LN_MEAN + LN_VAR + ISQRT + LN_DIV  # its mean, variance, square root, reciprocal (hls/gemm.h kLnChain)
LN_ISSUE = M_AXI_LATENCY + 8  # loader steps from a row's closed sums to its chain's issue (hls/gemm.h kLnIssue)
# the engine loop: the m_axi read and the statistics chain side by side (the chain runs on sums closed LN_ISSUE steps
# before), the longer of the two, and the datapath (hls/gemm.h kEngineDepth)
PIPE_ENGINE = PIPE + max(M_AXI_LATENCY, LN_CHAIN)
# the sequencer's cycles per call (hls/compat.h kSeqSetup: one per pass of the engine loop and one that ends the
# layer; 5-10 by the synthesis review, docs/hls.md item 1: an assumption, unverified without Vitis)
SEQ_SETUP = 8
RQ_RECORD = 16  # bytes of a per-channel requant record
LN_RING_LUT = 24  # LUTs per array row: the chain's R:1 read of a row's closed sums (27 + 43 bits, ~3 rows a LUT6)
# The chain's pipelined square root and divider, in LUTs, from their widths (hls/layernorm.h): a digit step of the root
# compares and subtracts 2 ISQRT bits; a restoring divider of 32 quotient bits subtracts 33 bits per bit. (They were
# charged 4000 each as the 32-step root of 62 bits and the 64-bit divider before the chain was narrowed.)
LN_ISQRT_LUT = ISQRT * 2 * ISQRT
# the normalise pass's cursor beside the stats pass's, since the two passes overlap (hls/gemm.h LnLoad rn, in, nat: a
# row of 7 bits, a channel of 12 and a start step of 16, a LUT a bit with their carries, and the start's compare, 8;
# less the wait counter's compare the passes' phases had, 4)
LN_CURSOR_LUT = 7 + 12 + 16 + 8 - 4
LN_DIV_LUT = 32 * 33
GELU_TABLE = 256  # entries (i8) of a fused lambda-GELU's RQ_8(GELU(x)) table (hls/gemm.h kGeluTable)


def a_word_options(axi_bytes: int) -> tuple[int, ...]:
    """Cfg::A_WORD candidates: i16 elements per word of a left-operand bank (g.a, attention's Q blocks; each row
    bank is reshaped by it, hls/gemm.h). The loaders write two words of a row bank per step (its two ports) and
    the Shiftmax normalise pass two words of a probability row, so wider words load faster and normalise on
    more lanes, at more BRAMs per bank: 64-bit words (one BRAM36 of 512 x 72 per bank of up to 2048 elements;
    a quarter of the beat on wide ports) or twice that. The array search weighs both."""
    small = max(4, axi_bytes // 4)
    return (small, 2 * small)


@functools.lru_cache(maxsize=1 << 16)  # the array search asks for ~10^4 distinct shapes on a large board
def score_lane_writes(rows: int, cols: int, s_lanes: int, sm_lanes: int) -> int:
    """The most writes one bank of the score blocks gets in one step of attention's score lanes (hls/attention.h
    ATT_S_LANE): a step stores S_LANES scores of the R x C tile, row-major, at keys dn0 + c (dn0 = j C), into
    banks (key mod SM_LANES) (AttSm::s_bank); scores of two rows, or of one row SM_LANES keys apart, share a
    bank. Over every step and key tile; a bank takes two (its ports)."""
    period = sm_lanes // math.gcd(cols, sm_lanes)  # distinct dn0 mod SM_LANES over the key tiles
    e = np.arange(rows * cols)
    bank = (np.arange(period)[:, None] * cols + e % cols) % sm_lanes
    key = (e // s_lanes) * sm_lanes + bank  # (step, bank) per element and key tile
    return int(max(np.bincount(row).max() for row in key))


def axi_beat(graph: Graph, cols: int, board: Board) -> int:
    """Cfg::AXI_BYTES, the bytes of one m_axi beat: the board's port width, halved until every store of the engine
    covers whole beats. The m_axi ports are arrays of beats (hls/axi.h): a store writes a whole beat, staged from
    the lanes, so no two stores may share one. Rows are padded to whole beats (plan._layers), so a store is safe
    when its first column is a beat boundary: a GEMM's tile j starts at byte j C of an int8 row (2 j C of an int16
    one), head h's P.V output at byte h d_head + j C. So the beat divides C and every d_head; a model whose heads
    or an array whose columns leave less than 4 bytes is refused (plan.make_plan, make_shape)."""
    heads = _memo("head_sizes", graph, lambda: frozenset(op.d_head for op in graph.ops if isinstance(op, Attention)))
    w = board.axi_width // 8
    grains = {cols} | heads
    while w > 1 and any(g % w for g in grains):
        w //= 2
    return w


def tiled_weight_bytes(k: int, n: int, cols: int) -> int:
    """Bytes of a (K, N) weight in the blob's tile order (plan.tile_weights: N padded to whole tiles of C): what
    the prefetcher copies, and the blob segment's size."""
    return k * cdiv(n, cols) * cols


def tp_chunk_steps(n: int, k: int, b: int, c: int, w: int, ports: int = 2) -> int:
    """hls/gemm.h tp_chunk_steps: steps of chunk ``b`` (bytes [b w, b w + w) of each of ``n`` source rows of
    ``k`` bytes) of the transposing loader (B^T of MASK_PRODUCT, K_h^T of attention): tile 0's beats, each later
    tile's beats or the previous tile's write-out (``ports`` rows of w per step: two, one beside a dual K/V step's V
    word) if longer, the last write-out."""
    h = cdiv(min(w, k - b * w), ports)
    tiles = cdiv(n, c)
    if tiles <= 1:
        return n + h
    last = n - (tiles - 1) * c
    return c + (tiles - 2) * max(c, h) + max(last, h) + h


def tp_cycles(n: int, k: int, c: int, w: int, ii: int) -> int:
    """Cycles of a transposing load of an (n, k) source: every chunk's loop at ``ii`` cycles per step (+ PIPE_READ)."""
    return sum(ii * tp_chunk_steps(n, k, b, c, w) + PIPE_READ for b in range(cdiv(k, w)))
MAX_DIM = 64  # the engine's array limit (hls/engine.h EngineChecks: R, C <= 64)
SM_LANES = 8  # Shiftmax elements per cycle
COLS = (8, 16, 24, 32, 48, 64)
# the array search's lane configurations: (output lanes (0: W/2), SM_LANES, S_LANES (0: = output lanes,
# -1: a key tile's score drain within d_head steps), LN_LANES (0: = output lanes))
# The list: every configuration that won on some board for Seg-T-Mask (both Shiftmax variants) when all
# 120 combinations of (0/4/2/1, 32/16/8/4/2, -1/0, 0/4/2) were searched, plus the small ones.
LANE_CONFIGS = ((0, 32, -1, 0), (0, 32, -1, 4), (0, 16, -1, 0), (0, 16, -1, 4), (0, 16, -1, 2), (0, 16, 0, 0),
                (0, 8, -1, 0), (0, 8, -1, 4), (0, 8, 0, 0), (4, 16, -1, 0), (4, 16, -1, 4), (4, 8, -1, 0),
                (4, 8, 0, 0), (2, 4, -1, 0), (2, 4, 0, 0), (2, 2, -1, 0), (1, 4, -1, 0), (1, 4, -1, 2),
                (1, 2, -1, 0), (1, 2, -1, 2), (1, 2, 0, 0), (1, 1, 0, 0))


def cdiv(a: int, b: int) -> int:
    return -(-a // b)


def mul_luts(a_bits: int, b_bits: int) -> int:
    """LUTs of an a x b multiplier bound to fabric (BIND_OP impl=fabric): ~ one LUT per partial-product bit."""
    return a_bits * b_bits


@functools.lru_cache(maxsize=1 << 12)  # pure, and the array search asks ~60 k times
def mul_dsps(a_bits: int, b_bits: int, board: Board) -> int:
    """DSP slices of one a x b signed multiplier (widths include the sign) bound to DSPs: the wider operand on
    the 27-bit port (25 on DSP48E1), the other on the 18-bit port; a wider operand is split into chunks of 26
    (24) and 17 magnitude bits, one DSP per pair of chunks (the cheaper orientation)."""
    pa = 26 if board.dsp_kind == "DSP48E2" else 24
    a, b = max(a_bits, 2) - 1, max(b_bits, 2) - 1
    return min(cdiv(a, pa) * cdiv(b, 17), cdiv(b, pa) * cdiv(a, 17))


@dataclass(frozen=True)
class LaneWidths:
    """Proven signed operand widths of the lane multipliers, sign included (hls/mul.h; the generated Cfg's
    ``struct Widths``, computed by ``plan.lane_widths`` from the checkpoint). The defaults are mul.h's
    ``DefaultWidths``: valid for any checkpoint."""

    ACC: int = 33  # acc + bias of a GEMM output
    SCORE: int = 32  # Q.K^T accumulator
    PV: int = 32  # P.V requant input (P.V) << r (r: the row shift, 0 unless precise8)
    ADD_M: int = 32  # int_add multipliers ma, mb
    SM_BASE: int = 33  # Shiftmax exp mantissa (<= |x0|)
    SM_F: int = 48  # Shiftmax reciprocal
    SM_X0: int = 33  # Shiftmax x0
    GELU_BASE: int = 33  # GELU exp mantissa
    GELU_F: int = 32  # GELU reciprocal
    GELU_X0: int = 33  # GELU x0
    ARR: int = 32  # the GEMM array's accumulators (hls/gemm.h acc_t): max(K * 2^14 of the GEMMs, SCORE, PV)

    def items(self) -> tuple[tuple[str, int], ...]:
        return tuple((k, getattr(self, k)) for k in self.__dataclass_fields__)


# structural widths of hls/mul.h (numerics.md bounds, any checkpoint)
STRUCT_WIDTHS = {"kRqMBits": 32, "kI8Bits": 8, "kSigBits": 8, "kI16Bits": 16, "kGeluYBits": 15, "kLnYBits": 18,
                 "kLnFBits": 32, "kLnZBits": 31, "kShexpQBits": 7, "kLnKBits": 12}

# Every multiplier call of hls/: (function, binding, A, B as spelled in the code, calls in that function);
# binding "lane" = mul_lane, DSPs or LUTs as the planner chose (ArrayShape.small_fabric, Widths::SMALL_FABRIC).
# tests/hls/test_hls_static.py checks this table against the mul_dsp / mul_fabric / mul_lane calls of hls/.
MUL_SITES: tuple[tuple[str, str, str, str, int], ...] = (
    ("requant_w", "dsp", "ZB", "kRqMBits", 1),
    ("int_add_w", "dsp", "kI16Bits", "MB", 2),
    ("shexp_parts", "lane", "X0B", "kShexpQBits", 1),
    ("gelu_core", "dsp", "W::GELU_BASE", "W::GELU_F", 1),
    ("gelu_core", "lane", "kI8Bits", "kSigBits", 1),
    ("sm_norm", "dsp", "BASE", "F", 1),
    ("sm_row_shift", "dsp", "X0B", "F", 1),
    ("ln_scale", "dsp", "kLnYBits", "kLnFBits", 1),
    ("ln_step", "dsp", "kI16Bits", "kI16Bits", 1),
    ("ln_step", "dsp", "kLnSumBits<Cfg::CMAX>()", "kLnMeanMBits<Cfg::CMAX>()", 1),
    ("ln_step", "dsp", "kI16Bits", "kLnSumBits<Cfg::CMAX>()", 1),
    ("ln_step", "dsp", "kLnKBits + kI16Bits", "kI16Bits", 1),
    ("ln_step", "lane", "kLnKBits", "kI16Bits", 1),
)


@dataclass(frozen=True)
class Mul:
    """One multiplier instance of the engine: ``count`` copies of call ``site`` (a MUL_SITES function) with
    operands of ``a`` x ``b`` signed bits, bound to ``impl`` ("dsp" or "fabric")."""

    unit: str
    site: str
    impl: str
    a: int
    b: int
    count: int
    what: str

    def dsps(self, board: Board) -> int:
        return self.count * mul_dsps(self.a, self.b, board) if self.impl == "dsp" else 0

    def luts(self) -> int:
        return self.count * mul_luts(self.a, self.b) if self.impl == "fabric" else 0


def _ln_sum_bits(cmax: int) -> int:
    """hls/layernorm.h kLnSumBits<CMAX>: signed bits of a row sum of CMAX int16 channels."""
    return (cmax << 15).bit_length() + 1


def _ln_mean_m_bits(cmax: int) -> int:
    """hls/layernorm.h kLnMeanMBits<CMAX>: signed bits of the mean's reciprocal m < 2^(16 + ceil(log2 K)) for every
    K <= CMAX (iseg.numerics.mean_reciprocal)."""
    return 17 + (cmax - 1).bit_length()


def multipliers(a: ArrayShape, graph: Graph, w: LaneWidths) -> list[Mul]:
    """Every lane multiplier the engine instantiates (one rule per multiplier, docs/gen-hls.md), per unit:
    the code of hls/ call by call (MUL_SITES), with the lane counts of ``a`` and the widths ``w``."""
    s = STRUCT_WIDTHS
    m, q = s["kRqMBits"], s["kShexpQBits"]
    lane = "fabric" if a.small_fabric else "dsp"  # mul_lane's binding
    ol, sl, sm, ll, lw = a.out_lanes, a.score_lanes, a.sm_lanes, a.ln_lanes, max(1, a.axi_bytes // 2)
    nl = a.sm_norm_lanes
    gelu = [("shexp_parts", lane, w.GELU_X0, q, "GELU exp: x0 * q"),
            ("gelu_core", "dsp", w.GELU_BASE, w.GELU_F, "GELU: mantissa * f"),
            ("gelu_core", lane, s["kI8Bits"], s["kSigBits"], "GELU: x * sig")]
    out: list[Mul] = []

    def add(unit: str, count: int, rows: list[tuple[str, str, int, int, str]]) -> None:
        out.extend(Mul(unit, site, impl, x, y, count, what) for site, impl, x, y, what in rows)

    # (a fused lambda-GELU + RQ_8 is a table lookup per lane: gemm.h load_gelu_table, no multiplier)
    # ONE set of requant lanes, max(OUT_LANES, S_LANES), for the GEMM output (acc + bias), P.V output and score
    # lanes, which never run in one iteration (schedule.h OUT_RQ, gemm.h out_rq: the widest of their operands)
    add("output_stage", max(ol, sl), [("requant_w", "dsp", max(w.ACC, w.PV, w.SCORE), m,
                                       "RQ(acc + bias), P.V RQ_8, score RQ_8 (OUT_RQ)")])
    add("output_stage", ol, [("int_add_w", "dsp", s["kI16Bits"], w.ADD_M, "residual * ma"),
                             ("int_add_w", "dsp", s["kI16Bits"], w.ADD_M, "y * mb")])
    add("shiftmax", 2 * sm, [("shexp_parts", lane, w.SM_X0, q, "exp and normalise passes (two rows each): x0 * q")])
    add("shiftmax", 2 * nl, [("sm_norm", "dsp", w.SM_BASE, w.SM_F, "normalise (two rows): mantissa * f")])
    if sm_row_shift_of(graph):  # Cfg::SM_ROW_SHIFT: built for precise8 models only
        add("shiftmax", 1, [("sm_row_shift", "dsp", w.SM_X0, w.SM_F, "row shift (with the divider): |x0| * f")])
    add("layernorm", lw, [("ln_step", "dsp", s["kI16Bits"], s["kI16Bits"], "loader stats: x * x")])
    add("layernorm", ll, [("ln_scale", "dsp", s["kLnYBits"], s["kLnFBits"], "loader: y * f"),
                          ("requant_w", "dsp", s["kLnZBits"], m, "loader: RQ_8(z)")])
    cmax = _memo("cmax", graph, lambda: max(  # Cfg::CMAX
        graph.acts[op.output].shape[1] for op in graph.ops if isinstance(op, (LayerNorm, Gelu))))
    add("layernorm", 1, [("ln_step", "dsp", _ln_sum_bits(cmax), _ln_mean_m_bits(cmax),
                          "loader row: the mean's floor quotient, n * m (no divider)"),
                         ("ln_step", lane, s["kLnKBits"], s["kI16Bits"], "loader row: K * q (the remainder; K mean)"),
                         ("ln_step", "dsp", s["kI16Bits"], _ln_sum_bits(cmax), "loader row: mean * sum"),
                         ("ln_step", "dsp", s["kLnKBits"] + s["kI16Bits"], s["kI16Bits"], "loader row: K mean * mean")])
    rows = row_units(graph)
    # gelu_row: OUT_LANES lanes of GELU + RQ_8 (GELU_ROW: one gelu_core per lane, either variant), the row's em
    add("gelu_row", ol * rows["gelu"], [*gelu, ("requant_w", "dsp", s["kGeluYBits"], m, "GELU_ROW RQ_8")])
    add("gelu_row", rows["gelu"], [("shexp_parts", lane, w.GELU_X0, q, "row exp of the max: x0 * q")])
    add("adds", rows["add"] + rows["embed_add"], [("int_add_w", "dsp", s["kI16Bits"], w.ADD_M, "a * ma"),
                                                  ("int_add_w", "dsp", s["kI16Bits"], w.ADD_M, "b * mb")])
    return out


def _mul_sums(graph: Graph, a: ArrayShape, w: LaneWidths, board: Board) -> dict[str, tuple[int, int]]:
    """(DSPs, LUTs) of the lane multipliers per unit: ``multipliers`` depends on the lane counts, the beat and the
    binding, not on the array's rows, columns or K unroll, so the array search computes it once per lane set."""
    lanes = replace(a, rows=2, cols=8, kd=1, pack=1, a_lanes=0, kv_overlap=True, sd_defer=True)
    return dict(_memo("mul_sums", graph, lambda: _mul_sums_of(graph, lanes, w, board), (lanes, w, board.name)))


def _mul_sums_of(graph: Graph, a: ArrayShape, w: LaneWidths, board: Board) -> dict[str, tuple[int, int]]:
    out: dict[str, tuple[int, int]] = {}
    for m in multipliers(a, graph, w):
        d, lut = out.get(m.unit, (0, 0))
        out[m.unit] = (d + m.dsps(board), lut + m.luts())
    return out


def row_units(graph: Graph) -> dict[str, int]:
    """Which row units the engine builds for this model (Cfg::ROW_OPS, hls/engine.h builds_op): 1 if the
    table has a GELU row (ShiftGELU: not fused), an ADD row (not fused into a Linear), an EMBED_ADD row."""
    return dict(_memo("row_units", graph, lambda: _row_units(graph)))


def _row_units(graph: Graph) -> dict[str, int]:
    spec = graph.spec
    producer = {op.output: op for op in graph.ops}
    lam = spec.gelu == "lambda"
    fused = {op.name for op in graph.ops if isinstance(op, (Gelu, Add))  # as op_costs
             and isinstance(producer.get(op.inputs[-1]), Linear) and (not isinstance(op, Gelu) or lam)}
    return {"gelu": int(any(isinstance(op, Gelu) and op.name not in fused for op in graph.ops)),
            "add": int(any(isinstance(op, Add) and op.name not in fused for op in graph.ops)),
            "embed_add": int(any(isinstance(op, Embed) and op.name not in embed_fusions(graph) for op in graph.ops))}


@dataclass(frozen=True)
class ArrayShape:
    """The GEMM array and the engine parameters of struct Cfg that set its schedule."""

    rows: int  # R: output rows (tokens) per tile
    cols: int  # C: output columns (channels) per tile
    pack: int  # int8 MACs per DSP (2 on DSP48E2 when R is even: row pairs share the weight)
    out_lanes: int  # OUT_LANES: output-stage elements per cycle
    ln_lanes: int  # LN_LANES: LayerNorm channels per cycle
    sm_lanes: int  # SM_LANES: Shiftmax elements per cycle
    axi_bytes: int  # AXI_BYTES: bytes per m_axi beat (both ports)
    s_lanes: int = 0  # S_LANES: attention score requant lanes (0: as many as out_lanes)
    small_fabric: bool = False  # Widths::SMALL_FABRIC: the small lane multipliers (mul_lane) on LUTs
    a_word: int = 4  # A_WORD: i16 elements per word of a left-operand bank (a_word_options)
    a_lanes: int = 0  # A_LANES: argmax classes per step of the head (0: argmax_lanes's rule; head_lanes)
    kv_overlap: bool = True  # KV_OVERLAP: head h + 1's K/V load under head h (odd heads in the other half of w)
    sd_defer: bool = True  # SD_DEFER: a Q.K^T's last score tile drains in the next pass (the Shiftmax waits for it)
    kd: int = 1  # KD: k per step of a PE (the K unroll: a chain of KD multipliers per PE, kd_options)

    @property
    def macs(self) -> int:
        return self.rows * self.cols * self.kd

    @property
    def dsps(self) -> int:
        return cdiv(self.macs, self.pack)

    def steps(self, n: int) -> int:
        """The array's steps of a reduction over ``n`` (hls/gemm.h kd_steps): KD k a step."""
        return cdiv(n, self.kd)

    def w_rows(self, n: int) -> int:
        """Rows of w that a reduction over ``n`` takes (hls/gemm.h kd_rows): whole words of KD rows."""
        return self.steps(n) * self.kd

    @property
    def drain(self) -> int:
        return cdiv(self.rows * self.cols, self.out_lanes)

    @property
    def score_lanes(self) -> int:
        return self.s_lanes or self.out_lanes

    @property
    def score_drain(self) -> int:
        return cdiv(self.rows * self.cols, self.score_lanes)

    @property
    def pv_lanes(self) -> int:
        """Cfg::PV_LANES (hls/attention.h pv_lanes): P.V's outputs drain through the score lanes' readout and the
        shared requant lanes when they divide C (a step's lanes in one row), at S_LANES / 2^j lanes, the most whose
        bytes fit a beat (one put), when that is more than the output lanes; else through the output lanes. P.V's
        requant is per tensor (the checkpoint's format: iseg.checkpoint refuses a `pv.rq` of more than one value), so
        no table bank bounds the lanes."""
        s, o = self.score_lanes, self.out_lanes
        if self.cols % s:
            return o
        p = s  # the most that fit a beat: S_LANES over a power of two (a window of the readout: pv_window)
        while p > self.axi_bytes and p % 2 == 0:
            p //= 2
        return p if o < p <= self.axi_bytes else o

    @property
    def pv_window(self) -> int:
        """hls/attention.h pv_window: P.V steps per window of the score lanes' readout (S_LANES / PV_LANES, a power
        of two; 1 when P.V drains through the output lanes): a step's PV_LANES outputs are one part of it, picked by
        the step's low bits."""
        return self.score_lanes // self.pv_lanes if self.pv_lanes != self.out_lanes else 1

    @property
    def pv_drain(self) -> int:
        """Steps of a P.V tile's drain (hls/attention.h pv_drain_steps)."""
        return cdiv(self.rows * self.cols, self.pv_lanes)

    @property
    def sm_norm_lanes(self) -> int:
        """hls/attention.h sm_norm_lanes: the Shiftmax normalise pass writes at most two words of a probability
        row's bank (g.a) per step, on each of the two rows it normalises at once (2 x this many lanes)."""
        return min(self.sm_lanes, 2 * self.a_word)

    @property
    def prefetch_lanes(self) -> int:
        """hls/gemm.h prefetch_lanes: weight bytes the prefetcher copies per step, at most a beat and at most C
        (one or two words of the weight buffer: its two ports)."""
        return min(self.axi_bytes, self.cols)

    @property
    def load_lanes(self) -> int:
        """hls/gemm.h load_lanes: bytes the left-operand and Q loaders move per step, two words of a row bank
        (its two ports), at most a beat."""
        return min(self.axi_bytes, 2 * self.a_word)


@dataclass(frozen=True)
class UnitCost:
    name: str
    dsp: int
    bram36: int
    uram: int
    lut: int
    note: str


@dataclass(frozen=True)
class Units:
    units: tuple[UnitCost, ...]
    dsp: int
    bram36: int
    uram: int
    lut: int


@dataclass(frozen=True)
class OpCost:
    """Estimate of one graph op on the engine (cycles = the C-sim count of its table row)."""

    name: str
    kind: str
    macs: int
    cycles: int
    busy: int  # array cycles doing MACs (K per tile, PV_II * T per P.V tile)
    stalls: tuple[tuple[str, int], ...]  # where the other cycles go
    weight_bytes: int  # bytes fetched from the weights blob
    ddr_bytes: int  # scratch bytes read + written


def _mem_blocks(nbytes: int, parts: int, width_bits: int, board: Board, prefer_uram: bool) -> tuple[int, int]:
    """(BRAM36, URAM) for a buffer split into ``parts`` independent memories of ``width_bits``. A BRAM36 takes
    any aspect ratio up to 72 bits wide (512 x 72 .. 32K x 1); a URAM is always 4096 words of 72 bits, so a
    memory of W bits and D words takes ceil(W / 72) x ceil(D / 4096) of them (engine.h binds the weight buffer
    there: BIND_STORAGE impl=uram)."""
    per = cdiv(nbytes, parts)
    if per * 8 <= 1024:  # tiny: LUTRAM / registers
        return 0, 0
    if prefer_uram and board.uram and per >= 4 * 1024:
        words = cdiv(per * 8, width_bits)
        return 0, parts * cdiv(width_bits, 72) * cdiv(words, 4096)
    return parts * max(cdiv(per, 4608), cdiv(width_bits, 72)), 0


_MEMO: dict[tuple[str, int, int], tuple[Graph, Any]] = {}


def _memo(kind: str, graph: Graph, fn: Any, arg: Hashable = 0) -> Any:
    """Graph-only figures, computed once per graph: the array search asks for them thousands of times.

    Keyed by ``id(graph)``; the entry keeps the graph alive so that the id cannot be reused while cached."""
    key = (kind, id(graph), arg)
    hit = _MEMO.get(key)
    if hit is not None and hit[0] is graph:
        return hit[1]
    if len(_MEMO) > 1 << 15:  # (the array search keys its bounds and lane sums here too: thousands a search)
        _MEMO.clear()
    value = fn()
    _MEMO[key] = (graph, value)
    return value


def _dims(graph: Graph) -> dict[str, int]:
    return dict(_memo("dims", graph, lambda: _dims_of(graph)))


def _dims_of(graph: Graph) -> dict[str, int]:
    spec = graph.spec
    lin = [op for op in graph.ops if isinstance(op, Linear)]
    att = [op for op in graph.ops if isinstance(op, Attention)]
    return {
        "kmax": max([op.k for op in lin] + [3 * spec.patch ** 2] + [op.rows for op in att]
                    + [graph.acts[op.output].shape[1] for op in graph.ops if isinstance(op, LayerNorm)]),
        "tmax": max(op.rows for op in att),
        "dhmax": max(op.d_head for op in att),
        "ncmax": max([op.n for op in lin] + [spec.dim, spec.n_cls] + [op.heads * op.d_head for op in att]),
        "cmax": max([spec.dim, spec.dec_dim or 1, spec.n_cls]),
    }


def wrows_needed(graph: Graph, cols: int, kv_overlap: bool = True, kd: int = 1) -> int:
    """Rows of one half of the weight buffer: every GEMM's K * ceil(N/C), every head's K_h and V_h, and, where
    attention has two heads or more, the odd heads' K/V above the next layer's prefetched weights in the other half
    (hls/schedule.h attention_begin: the next head's K/V load while this one runs). With a K unroll ``kd`` (Cfg::KD)
    the buffer is words of kd rows: V_h's channel tiles take T rounded up to whole words (kd_rows), and so does the
    total."""
    return int(_memo("wrows", graph, lambda: _wrows_needed(graph, cols, kv_overlap, kd), (cols, kv_overlap, kd)))


def _wrows_needed(graph: Graph, cols: int, kv_overlap: bool, kd: int = 1) -> int:
    spec = graph.spec
    need = [3 * spec.patch ** 2 * cdiv(spec.dim, cols)]
    need += [op.k * cdiv(op.n, cols) for op in graph.ops if isinstance(op, Linear)]
    for i, op in enumerate(graph.ops):
        if isinstance(op, MaskProduct):
            t, k = graph.acts[op.inputs[0]].shape
            need.append(k * cdiv(graph.acts[op.inputs[1]].shape[0], cols))
        if isinstance(op, Attention):
            kv = cdiv(op.rows, cols) * op.d_head + cdiv(op.d_head, cols) * cdiv(op.rows, kd) * kd
            nxt = next((o for o in graph.ops[i + 1:] if isinstance(o, Linear)), None)
            need.append(kv + (nxt.k * cdiv(nxt.n, cols) if nxt is not None and op.heads > 1 and kv_overlap else 0))
    return cdiv(max(need + [_dims(graph)["kmax"]]), kd) * kd


def array_lut_per_mac(pack: int, acc_bits: int = 32, kd: int = 1) -> int:
    """LUTs per MAC of the GEMM array (docs/gen-hls.md, "LUTs of the array"), with ``acc_bits``-bit
    accumulators (hls/gemm.h acc_t: the model's proven width ``LaneWidths.ARR`` in synthesis; 32 at worst).

    Every PE pays the readout: the output lanes and the score lanes each select among the R x C drain copies
    (``g.dr``), a LUT6 being a 4:1 mux, i.e. 2 x 1/4 LUT per accumulator bit. (The GEMM's and P.V's output
    lanes share one readout, hls/schedule.h ``ov``; both lane sets divide C, so a lane's mux has R x C / lanes
    inputs and each set costs R x C / 4 LUTs per bit whatever its lane count.) Then:

    - pack 2 (two int8 MACs per DSP48E2, WP486): the DSP yields two products, so each is accumulated in a
      fabric adder (one LUT per bit on the carry chain, the clear folded into it): 32-bit: 32 + 16 = 48. Our
      RTL PE (templates/rtl/iseg_gemm_pe.v.j2: the same two 32-bit fabric accumulators and a result readout)
      measures 47.3 / 49.3 / 48.7 LUTs per MAC at 4x4 / 8x8 / 16x16 under yosys (``benchmarks/rtl_resources.py
      --sizes``; tests/rtl/test_array_lut_rule.py checks the 4x4 one).
    - pack 1 (a DSP per MAC): the product and the accumulation are one DSP multiply-add with the accumulator
      in its P register (Vitis HLS mul->add matching, UG1399; Vivado's MACC inference, UG901); in fabric stay
      the readout and the clear before each tile (a select on the accumulator, two bits per LUT6_2): 32-bit:
      16 + 16 = 32. Unverified without Vitis (yosys does not absorb an accumulator into a DSP48E2: our unpacked
      RTL PE measures 45.3 at 16x16); if HLS kept the adder in fabric, pack 1 would cost as much as pack 2
      per MAC (docs/gen-hls.md gives the KV260 figures of that case).

    With a K unroll ``kd`` (Cfg::KD) those are the LUTs of one output, whose accumulator takes kd MACs a step: a
    chain of kd DSPs adds their products through PCIN before it (packed products too: the low field's sum of 4 stays
    in its 18 bits, mul.h mul_pack2_chain; the split's sign borrow is the high accumulator's carry-in), so per MAC
    they divide by kd (rounded up here; ``array_luts`` counts them per output). Unverified without Vitis: whether
    the tool builds the chain as a cascade (Vitis HLS has DSP intrinsics for it, hls_dsp_builtins.h) or as an
    adder tree in fabric."""
    if pack not in (1, 2):
        raise ValueError(f"pack must be 1 or 2, not {pack}")
    return cdiv(output_luts(pack, acc_bits), kd)


def output_luts(pack: int, acc_bits: int = 32) -> int:
    """LUTs of one output of the array (an accumulator, or a pair's share on a packing array): see
    ``array_lut_per_mac``, which is this over the MACs the output takes per step."""
    half = cdiv(acc_bits, 2)
    return acc_bits + half if pack == 2 else 2 * half


def array_luts(a: ArrayShape, acc_bits: int) -> int:
    """LUTs of the GEMM array: R x C outputs at ``output_luts``, and with a K unroll (kd > 1) the zero select of
    P.V's lanes past the keys (hls/schedule.h ARRAY_A_U: 9 or 16 bits of R x KD operands, two bits a LUT6_2)."""
    ab = 9 if a.pack == 2 else 16
    return a.rows * a.cols * output_luts(a.pack, acc_bits) + (cdiv(a.rows * a.kd * ab, 2) if a.kd > 1 else 0)


def pack_options(rows: int, board: Board) -> tuple[int, ...]:
    """Cfg::PACK values an R-row array can take on ``board``: 2 needs a DSP48E2 (27 x 18: two int8 products
    18 bits apart) and an even R (row pairs share a DSP); 1 is always possible."""
    return (2, 1) if board.macs_per_dsp == 2 and rows % 2 == 0 else (1,)


def kd_options(graph: Graph) -> tuple[int, ...]:
    """Cfg::KD values the model allows: those dividing every GEMM's K (patch embedding, linear layers, the mask
    product) and every d_head, so that a tile's rows of w and K_h^T's are whole words of KD rows (hls/schedule.h
    gemm_begin / attention_begin check it). P.V's keys need not be a multiple: the lanes past T read zero."""
    return tuple(_memo("kd_options", graph, lambda: _kd_options(graph)))


def _kd_options(graph: Graph) -> tuple[int, ...]:
    spec = graph.spec
    ks = [3 * spec.patch ** 2] + [op.k for op in graph.ops if isinstance(op, Linear)]
    ks += [graph.acts[op.inputs[0]].shape[1] for op in graph.ops if isinstance(op, MaskProduct)]
    ks += [op.d_head for op in graph.ops if isinstance(op, Attention)]
    return tuple(kd for kd in (1, 2, 4) if all(k % kd == 0 for k in ks))


def make_shape(rows: int, cols: int, graph: Graph, board: Board, clock_mhz: float, lanes: int = 0,
               sm_lanes: int = SM_LANES, s_lanes: int = 0, ln_lanes: int = 0, small_fabric: bool = False,
               pack: int = 0, a_word: int = 0, kd: int = 1) -> ArrayShape:
    """Engine parameters for an R x C array: the output lanes read a residual and write an output of
    at most 2 bytes each per cycle, so a W-byte port carries at most W/2 lanes (``lanes`` 0 = that), and
    their number divides C, so that a step's elements lie in one row of the tile (one span per m_axi port:
    hls/iseg_ports.h);
    LayerNorm normalises ``ln_lanes`` channels per cycle (0 = as many as the output lanes; at most ``a_word``
    and rounded down to a power of two, so that its in-place read and write are one word each; ``a_word`` 0 =
    the first of ``a_word_options``). The score
    lanes write on chip only: ``s_lanes`` 0 = as many as the output lanes, -1 = enough that a key
    tile's score drain fits in a key tile's steps. ``pack``: Cfg::PACK (``pack_options``), 0 = the most MACs per
    DSP the board and R allow. ``kd``: Cfg::KD, k per step of a PE (``kd_options``)."""
    del clock_mhz
    if kd not in kd_options(graph):
        raise ValueError(f"a K unroll of {kd} needs every GEMM's K and every d_head to be a multiple of it "
                         f"(this model allows {', '.join(map(str, kd_options(graph)))})")
    options = pack_options(rows, board)
    if pack and pack not in options:
        raise ValueError(f"{pack} MACs per DSP needs a DSP48E2 board and an even number of rows "
                         f"({board.name}, {rows} rows: {' or '.join(map(str, options))})")
    w = axi_beat(graph, cols, board)
    if w < 4:
        raise ValueError(f"{cols} columns: the engine's stores need a multiple of 4 columns and of 4 channels per "
                         "head (whole m_axi beats of at least 4 bytes, estimate.axi_beat)")
    # a power of two at most w / 2: a lane step's outputs (and residuals), 2 bytes each at most, are one span of one
    # beat, in one row of the tile (w divides C)
    n = max(1, min(lanes, w // 2) if lanes else w // 2)
    n = 1 << (n.bit_length() - 1)
    a_word = a_word or a_word_options(w)[0]
    ln = min(ln_lanes or n, a_word, w // 2)  # a LayerNorm step's trace output: at most a beat
    ln = 1 << (ln.bit_length() - 1)
    if s_lanes < 0:
        dh = min([*_memo("head_sizes", graph, lambda: frozenset(
            op.d_head for op in graph.ops if isinstance(op, Attention))), rows * cols])
        s_lanes = max(n, cdiv(rows * cols, cdiv(dh, kd)))
    # the score lanes divide C (at most C of them), like the output lanes: a step's scores lie in one row of the
    # tile, so each lane reads the drain registers through an R x C / S_LANES mux indexed by counters and the row
    # maximum is one compare tree, not an S_LANES-deep chain (hls/schedule.h ATT_S_LANE)
    divisors = [d for d in range(1, cols + 1) if cols % d == 0]
    s_lanes = next(d for d in divisors if d >= min(s_lanes or n, cols))
    while s_lanes > 1 and score_lane_writes(rows, cols, s_lanes, sm_lanes) > 2:
        s_lanes = max(d for d in divisors if d < s_lanes)  # the writes must fit the two ports of each score bank
    return ArrayShape(rows=rows, cols=cols, pack=pack or options[0],
                      out_lanes=n, ln_lanes=ln, sm_lanes=sm_lanes, axi_bytes=w, s_lanes=s_lanes,
                      small_fabric=small_fabric, a_word=a_word, kd=kd)


def unit_costs(a: ArrayShape, graph: Graph, board: Board, widths: LaneWidths | None = None) -> Units:
    """DSP / BRAM / URAM / LUT per unit of the engine (the buffers of hls/gemm.h, attention.h ...). The lane
    multipliers are ``multipliers()``: DSPs by ``mul_dsps``, fabric ones by ``mul_luts``; the rest of a lane's
    logic is a LUT rule of thumb per lane."""
    d = _dims(graph)
    wr = wrows_needed(graph, a.cols, a.kv_overlap, a.kd)
    per_unit = _mul_sums(graph, a, widths or LaneWidths(), board)

    def mdsp(unit: str) -> int:
        return per_unit.get(unit, (0, 0))[0]

    def mlut(unit: str) -> int:
        return per_unit.get(unit, (0, 0))[1]

    u: list[UnitCost] = []
    w = widths or LaneWidths()
    lpm = array_lut_per_mac(a.pack, w.ARR, a.kd)
    unroll = f" x {a.kd} k a step (a chain of {a.kd} DSPs per output)" if a.kd > 1 else ""
    u.append(UnitCost("gemm_array", a.dsps, 0, 0, array_luts(a, w.ARR),
                      f"{a.rows}x{a.cols}{unroll} MACs, {a.pack} per DSP ({w.ARR}-bit accumulators, {lpm} LUTs per "
                      "MAC)"))
    aw = 16 * a.a_word
    ba, ua = _mem_blocks(2 * a.rows * d["kmax"] * 2, 2 * a.rows, aw, board, False)
    u.append(UnitCost("a_buffers", 0, ba, ua, 2 * a.rows * 16,
                      f"left operand R x KMAX i16, ping-pong, a bank per row of {aw}-bit words"))
    bw, uw = _mem_blocks(2 * wr * a.cols, 2, 8 * a.cols * a.kd, board, True)
    words = f", words of {a.kd} rows" if a.kd > 1 else ""
    u.append(UnitCost("w_buffers", 0, bw, uw, 500,
                      f"weights / K_h, V_h: 2 x {wr} rows x C bytes (prefetch ping-pong{words})"))
    # the requant lanes' operand select: the GEMM's acc + bias, P.V's (P.V) << r or a score, at the widest of the
    # three (a LUT6 per bit selects among them); the record is an rq1 read or the iteration's scalar, as before
    nq, zb = max(a.out_lanes, a.score_lanes), max(w.ACC, w.PV, w.SCORE)
    u.append(UnitCost("output_stage", mdsp("output_stage"), 0, 0,
                      a.out_lanes * (900 + gelu_table_luts()) + nq * zb + mlut("output_stage"),
                      f"{a.out_lanes} lanes: bias, lambda-GELU + RQ_8 (a {GELU_TABLE}-entry table per lane), "
                      f"residual add (gemm.h OUT_LANE); {max(a.out_lanes, a.score_lanes)} requant lanes shared with "
                      "the P.V output and score lanes (schedule.h OUT_RQ)"))
    # P.V's lanes on a part of the score lanes' readout window: a pv_window:1 select per lane and bit (PV_READ)
    pvw = a.pv_lanes * w.ARR * mux_luts(a.pv_window)
    u.append(UnitCost("attention_lanes", mdsp("attention_lanes"), 0, 0, (a.score_lanes + a.out_lanes) * 300 + pvw,
                      "score lanes (store, row maximum) and P.V output lanes (addressing, store); their requant is "
                      "the output stage's (schedule.h ATT_S_LANE, attention.h ATT_O_LANE)"))
    u.append(UnitCost("layernorm", mdsp("layernorm"), 0, 0,
                      a.ln_lanes * 400 + LN_ISQRT_LUT + LN_DIV_LUT + LN_RING_LUT * a.rows + LN_CURSOR_LUT +
                      mlut("layernorm"),
                      f"the LayerNorm loader (fused into a GEMM's left operand, or alone): {a.ln_lanes} normalise "
                      f"lanes; isqrt ({ISQRT} steps) + the 1/sd divider (32 bits), pipelined (LUTs; the mean has no "
                      f"divider: a reciprocal multiply); the closed sums' read mux over {a.rows} rows (gemm.h "
                      "ln_sum, ln_sq); the normalise pass's own cursor beside the stats pass's"))
    # the score blocks as the C++ banks them (AttSm): 2 x SM_LANES memories of bytes, BRAM (a URAM's fixed 72-bit
    # words would hold one byte each)
    sb, su = _mem_blocks(2 * a.rows * d["tmax"] + d["tmax"] * 8, 2 * a.sm_lanes, 8, board, False)
    qb, qu = _mem_blocks(2 * a.rows * d["dhmax"] * 2, 2 * a.rows, aw, board, False)  # ping-pong Q blocks
    u.append(UnitCost("shiftmax", mdsp("shiftmax"), sb + qb, su + qu, a.sm_lanes * 1100 + 6500 + mlut("shiftmax"),
                      f"{a.sm_lanes} lanes (shift-exp comparators in LUTs, mantissa*f normalise on DSPs, pipelined "
                      "divider); 2 x R x T scores (ping-pong), 2 x R x DHMAX Q blocks (ping-pong)"))
    rows = row_units(graph)
    gb = cdiv(max(a.axi_bytes, a.out_lanes), 2)  # hls/gelu.h gelu_banks
    xb, xu = _mem_blocks(d["cmax"], gb, 8, board, False)  # x and y rows (i8), cyclic over gb banks each
    u.append(UnitCost("gelu_row", mdsp("gelu_row"), 2 * xb * rows["gelu"], 2 * xu * rows["gelu"],
                      (1000 + 1000 * a.out_lanes) * rows["gelu"] + mlut("gelu_row"),
                      f"ShiftGELU row op (engine.h gelu_layer, built for gelu: shift): per row a load pass and a "
                      f"store pass of a beat per cycle, the GELU + RQ_8 pass at {a.out_lanes} lanes (a pipelined "
                      f"divider each) and the row's divider; x and y rows cyclic over {gb} banks"))
    u.append(UnitCost("adds", mdsp("adds"), 0, 0, 300 * (rows["add"] + rows["embed_add"]),
                      "ADD and EMBED_ADD rows (those in the table): one int_add each"))
    # bias + rq1 cyclic over the output lanes, the LayerNorm's records over its lanes (gemm.h GemmBuffers)
    cb, cu = _mem_blocks(d["ncmax"] * (4 + RQ_RECORD), a.out_lanes, 64, board, False)
    lb_, lu_ = _mem_blocks(d["cmax"] * RQ_RECORD, a.ln_lanes, 64, board, False)
    u.append(UnitCost("consts", 0, cb + lb_, cu + lu_, 500, f"bias + rq1 per output channel ({a.out_lanes} "
                      f"banks), LayerNorm records ({a.ln_lanes} banks)"))
    # a dual K/V step (hls/schedule.h KvLoad::dual) takes the V word's bytes from gmem1's beat or gmem2's: a 2:1 byte
    # select AXI_BYTES wide (two 2:1 muxes of a shared select a LUT6), and its write-out row on w's port B (where the
    # transposer's second row went: the row index one less, 8); its V word stays on port A (gemm.h tp_out p0)
    dual = 4 * a.axi_bytes + 8
    u.append(UnitCost("transposer", 0, 0, 0, 3 * a.cols * a.axi_bytes + dual,
                      "C x AXI_BYTES ping-pong registers of the transposing loader (MASK_PRODUCT B^T, K_h^T); the dual "
                      "K/V step's port-B and V-beat selects"))
    # the patch line buffer is a ping-pong of 2 x P image rows, one memory per (half, channel) of P * img_w
    # bytes (hls/patch_embed.h ARRAY_PARTITION dim 1 and 4), so that a beat fills one half and stages the other
    # (words of PIX columns, ARRAY_RESHAPE: a stream beat's pixels in one word of each)
    lb, _ = _mem_blocks(2 * graph.spec.patch * graph.spec.image[1] * 3, 6,
                        8 * pixel_beat_pixels(a.axi_bytes, graph.spec.patch), board, False)
    al = head_lanes(a, graph)
    u.append(UnitCost("head_pixels", 0, 2 + lb, 0, 3000 + A_LANE_LUT * al,
                      f"patch line buffer (2 x P rows, ping-pong), argmax label line (2 x gw, ping-pong), "
                      f"{al} argmax lanes"))
    # ~2,500 LUTs per m_axi master, ~1,000 LUTs for the streams and the s_axilite (rules of thumb, unverified
    # without Vitis); the masters' FIFOs by their burst lengths and outstanding requests (M_AXI)
    u.append(UnitCost("axi", 0, m_axi_fifo_bram36(a.axi_bytes), 0, 8500, "pixel/label AXI-Stream, 3 m_axi masters "
                      "(weights, scratch, scratch_b; FIFOs of outstanding x burst beats), s_axilite"))
    u.append(UnitCost("m_axi_beats", 0, 0, 0, beat_luts(a, graph),
                      f"the ports' {a.axi_bytes}-byte beats (hls/axi.h): byte selects, store stages, read caches, the "
                      "engine loop's request address selects"))
    return Units(tuple(u), sum(x.dsp for x in u), sum(x.bram36 for x in u), sum(x.uram for x in u),
                 sum(x.lut for x in u))


# The m_axi adapters (top.cpp pragmas). A channel's FIFO holds outstanding x burst beats (UG1399,
# num_read_outstanding: "a FIFO of size num_read_outstanding * max_read_burst_length * word_size"). The engine's
# accesses are single whole beats (hls/axi.h: a read cache's miss, a stage's write, at run-time addresses under
# conditions), which Vitis does not merge into bursts, so each is a one-beat transaction and a channel sustains
# outstanding / latency of them per cycle: long bursts buy nothing, requests in flight are what hides DDR latency
# (docs/hls.md, "m_axi ports"). So short bursts (4 beats, for the few sequential loops the tool may burst: the
# constant tables, the GELU row op) and 64 outstanding requests on every channel the engine uses.
M_AXI = {"gmem0": {"read_burst": 4, "read_outstanding": 64, "write_burst": 2, "write_outstanding": 1},
         "gmem1": {"read_burst": 4, "read_outstanding": 64, "write_burst": 4, "write_outstanding": 64},
         "gmem2": {"read_burst": 4, "read_outstanding": 64, "write_burst": 4, "write_outstanding": 64}}


def m_axi_fifo_bram36(axi_bytes: int) -> int:
    """BRAM36 of the m_axi adapters' read and write FIFOs (outstanding x burst beats of ``axi_bytes`` each);
    a FIFO of up to 1 Kbit is LUTRAM."""
    total = 0
    for port in M_AXI.values():
        for d in ("read", "write"):
            nbytes = port[f"{d}_outstanding"] * port[f"{d}_burst"] * axi_bytes
            total += cdiv(nbytes, 4608) if nbytes * 8 > 1024 else 0
    return total


def mux_luts(k: int) -> int:
    """LUTs per bit of a k-input select: a LUT6 takes a 4:1 mux, each further LUT 3 more inputs (rule of thumb)."""
    return 0 if k <= 1 else cdiv(k - 1, 3)


BEAT_CACHE_LUT = 16  # a one-beat read cache's 32-bit beat-index compare and load enable (hls/axi.h RdCache)


def beat_luts(a: ArrayShape, graph: Graph) -> int:
    """LUTs of the m_axi beat logic (hls/axi.h; its registers are flip-flops, not counted, as elsewhere): the byte
    selects that take a span out of a beat at a run-time position (beat_take: B / U positions), the store stages
    (stage_put: per staged byte a select among the bytes of a put that can land on it and its own value, for the
    beat and the next one, and the written beat's select), the read caches' compares, and the engine loop's
    request address selects (gmem0: the pos / cls row or the prefetch; gmem1: three loaders). Per unit the engine
    builds (row_units)."""
    beat, rows = a.axi_bytes, row_units(graph)

    def take(n: int, u: int) -> int:
        return 8 * n * mux_luts(beat // u)

    def stage(u: int, n: int) -> int:  # puts of at most n bytes at multiples of u
        return 8 * beat * (2 * mux_luts(min(beat // u, cdiv(n, u)) + 1) + 1)

    def cache() -> int:  # the compare, and the hit's data select (the held beat or the bus's)
        return BEAT_CACHE_LUT + 8 * beat * mux_luts(2)

    al = min(beat, 2 * a.a_word)  # hls/gemm.h load_lanes
    engine = (3 * cache() + 64 * (mux_luts(2) + mux_luts(3)) + 2 * take(al, al)
              + 2 * take(2 * a.out_lanes, 2 * a.out_lanes)
              # the output lanes' store: 2 OUT_LANES bytes of a GEMM, PV_LANES of P.V, at multiples of their gcd
              + stage(math.gcd(a.out_lanes, a.pv_lanes), max(2 * a.out_lanes, a.pv_lanes))
              + stage(a.ln_lanes, 2 * a.ln_lanes))
    adds = (rows["add"] + rows["embed_add"]) * (2 * cache() + 2 * take(2, 2) + stage(2, 2))
    pix = pixel_beat_pixels(beat, graph.spec.patch)  # the pixel path's puts: 3 PIX bytes at multiples of their gcd
    # (COPY_CONST moves whole beats at beat offsets: no select) the pixel path's puts
    copy_pixels = stage(math.gcd(3 * pix, beat), 3 * pix)
    gelu_table = cache() + take(1, 1)  # gemm.h load_gelu_table: an entry a cycle out of a cached beat
    head = cache() + take(2 * head_lanes(a, graph), 2 * head_lanes(a, graph))
    return engine + adds + copy_pixels + gelu_table + head


A_LANES_MAX = 8  # most argmax lanes (Cfg::A_LANES, hls/argmax_upsample.h)
A_LANE_LUT = 48  # LUTs per argmax lane: a 16-bit signed compare + the 16-bit value / 8-bit class mux


PIX_MAX = 16  # most pixels per pixel-stream beat (Cfg::PIX: 512-bit TDATA)
LAB_MAX = 16  # most labels per label-stream beat (Cfg::LAB: 128-bit TDATA)


def pixel_beat_pixels(axi_bytes: int, patch: int) -> int:
    """Cfg::PIX, pixels per beat of the pixel stream (hls/patch_embed.h): the largest power of two <= PIX_MAX whose
    beat (4 bytes a pixel) is no wider than an m_axi beat, so that its 3 PIX staged bytes are one put of the pixel
    path's store (and the stream no wider than the memory side of the DMA that feeds it), and that divides the patch
    (a beat's pixels lie in one patch row)."""
    p = 1
    while 2 * p <= PIX_MAX and 8 * p <= axi_bytes and patch % (2 * p) == 0:
        p *= 2
    return p


def label_beat_labels(axi_bytes: int, patch: int) -> int:
    """Cfg::LAB, labels per beat of the label stream (hls/argmax_upsample.h): the largest power of two <= LAB_MAX,
    no wider than an m_axi beat (the DMA's memory side), that divides the patch: a beat's labels then lie in one
    patch, LAB copies of its label."""
    n = 1
    while 2 * n <= LAB_MAX and 2 * n <= axi_bytes and patch % (2 * n) == 0:
        n *= 2
    return n


def head_cycles(img_h: int, img_w: int, patch: int, n_cls: int, lanes: int, lab: int = 1) -> int:
    """ARGMAX_UPSAMPLE (hls/argmax_upsample.h): gh + 1 passes of one AU_STEP loop (+ PIPE_READ each: it reads the
    logits). Pass s
    advances the argmax of grid row s (A = gw * ceil(n_cls / lanes) steps) into one half of the ping-pong
    label line while it emits the B = P * img_w / lab label beats (``lab``: Cfg::LAB labels each) of grid row s - 1
    from the other: max(A, B) steps; pass 0 only computes (prologue), pass gh only emits (epilogue)."""
    gh, gw = img_h // patch, img_w // patch
    arg, beats = gw * cdiv(n_cls, lanes), patch * img_w // lab
    return arg + PIPE_READ + (gh - 1) * (max(arg, beats) + PIPE_READ) + beats + PIPE_READ


def argmax_lane_options(n_cls: int, axi_bytes: int) -> list[int]:
    """The argmax lane counts whose steps each read within ONE memory beat: powers of two <= min(A_LANES_MAX,
    AXI_BYTES / 2). A step reads the 2 * lanes bytes of classes j * lanes ...; the logits rows start on a beat
    (plan._padded: rows are whole beats), so every step starts at a multiple of 2 * lanes bytes, which (2 * lanes |
    AXI_BYTES, both powers of two) never straddles a beat, whatever ``n_cls`` (the row's last step reads fewer
    classes). More than ``n_cls`` lanes would idle: capped there. 1 always qualifies."""
    out = [1]
    while out[-1] * 2 <= min(A_LANES_MAX, n_cls) and axi_bytes % (4 * out[-1]) == 0:
        out.append(out[-1] * 2)
    return out


def head_lanes(a: ArrayShape, graph: Graph) -> int:
    """Cfg::A_LANES of the shape: its own (the array search's choice under the LUT cap), else the rule's."""
    return a.a_lanes or argmax_lanes(graph, a.axi_bytes)


def head_lane_choices(graph: Graph, axi_bytes: int) -> list[int]:
    """The A_LANES the array search tries, most first: the rule's (``argmax_lanes``), then each smaller option
    (fewer comparators, a longer head) for a shape the rule's lanes would take past the LUT cap."""
    rule = argmax_lanes(graph, axi_bytes)
    return [n for n in reversed(argmax_lane_options(_head_classes(graph), axi_bytes)) if n <= rule] or [1]


def _head_classes(graph: Graph) -> int:
    return next((graph.acts[op.inputs[0]].shape[1] for op in graph.ops if isinstance(op, ArgmaxUpsample)), 1)


def argmax_lanes(graph: Graph, axi_bytes: int) -> int:
    """Cfg::A_LANES: among ``argmax_lane_options`` (powers of two, one beat of i16 logits at most), the fewest with
    which a grid row's argmax (gw * ceil(classes / lanes) steps) hides behind its P * img_w / LAB label beats; the
    largest of them when none is enough. 1 without a head."""
    for op in graph.ops:
        if isinstance(op, ArgmaxUpsample):
            ncls, gw = graph.acts[op.inputs[0]].shape[1], op.grid[1]
            beats = op.patch * graph.spec.image[1] // label_beat_labels(axi_bytes, op.patch)
            options = argmax_lane_options(ncls, axi_bytes)
            return next((n for n in options if gw * cdiv(ncls, n) <= beats), options[-1])
    return 1


def pixel_cycles(img_h: int, img_w: int, patch: int, pix: int = 1) -> int:
    """PATCH_EMBED's pixel path (hls/patch_embed.h patch_unpack): gh + 1 passes of one PE_BEAT loop of
    P * img_w / pix beats (``pix``: Cfg::PIX pixels each; + PIPE: the pixels come on a stream, no m_axi read). Pass s
    reads grid row s into one half of the ping-pong line buffer while it stages grid row s - 1 from the other (3 bytes
    per pixel, as many as the fill reads, so the two share the beats); pass 0 only fills, pass gh only stages."""
    return (img_h // patch + 1) * (patch * img_w // pix + PIPE)


def ln_block_steps(a: ArrayShape, k: int) -> int:
    """hls/gemm.h ln_block_steps: steps of the LayerNorm loader for one row block of K channels: stats at
    AXI_BYTES/2 i16 channels a step (S a row), each row's chain issued LN_ISSUE steps after its sums close
    (LN_CHAIN cycles: mean by reciprocal, variance, square root, reciprocal divider), its normalise at LN_LANES
    channels a step (N a row) from LN_CHAIN steps after that or the previous row's end, beside the later rows'
    stats: row r's starts at S - 1 + LN_ISSUE + LN_CHAIN + r max(S, N), the last ends the block."""
    s, n = cdiv(k, max(1, a.axi_bytes // 2)), cdiv(k, a.ln_lanes)
    return s - 1 + LN_ISSUE + LN_CHAIN + (a.rows - 1) * max(s, n) + n


def table_its(n: int, per_it: int, parts: int) -> int:
    """hls/gemm.h table_its: iterations of a constant table's loop, ``per_it`` entries an iteration, ``parts``
    iterations an entry."""
    return cdiv(n, per_it) * parts


def rq_table(n: int) -> bool:
    """Whether a per-channel requant of ``n`` channels is a table in the blob: one of a single channel is
    stored as a scalar (plan._rq_desc: m, e and o of size 1), which the lanes read from the layer's row, so
    nothing is loaded (hls/gemm.h load_rq_table returns at once)."""
    return n > 1


def rq_table_cycles(a: ArrayShape, n: int, lanes: int) -> int:
    """hls/gemm.h load_rq_table: n requant records (16 bytes) into a table banked over ``lanes``: min(W / 16,
    lanes) records per iteration, or ceil(16 / W) iterations per record on a port narrower than a record; one
    pipelined loop (a burst on gmem0). Nothing for a scalar (``rq_table``)."""
    if not rq_table(n):
        return 0
    w = a.axi_bytes
    return table_its(n, 1 if w < RQ_RECORD else min(w // RQ_RECORD, lanes), cdiv(RQ_RECORD, w)) + PIPE_READ


def gelu_row_cycles(a: ArrayShape, rows: int, c: int) -> int:
    """hls/engine.h gelu_layer: a GELU row op of ``rows`` rows x ``c`` channels (ShiftGELU, not fused). Per row,
    with B = ceil(c / AXI_BYTES) beats and G = ceil(c / OUT_LANES) lane steps:

    - ``B + PIPE_READ``  GELU_LOAD: a beat of the row per cycle from the scratch, its max folded in;
    - ``DIV``            em = shexp(-max), a sequential divider, before the GELU pass;
    - ``G + PIPE + DIV`` GELU_ROW: OUT_LANES elements per cycle (a shexp, a divider, two multipliers and the RQ_8
      each): the divider is in the loop's depth;
    - ``B + PIPE``       GELU_STORE: a beat of the output row per cycle (writes only).

    = rows * ((B + PIPE_READ) + (G + PIPE + DIV) + DIV + (B + PIPE)). The requant is per-tensor (one scale:
    model/export.py), so no
    table is loaded; a per-channel one would add ``rq_table_cycles(a, c, a.out_lanes)`` once (gemm.h
    load_rq_table into rq1)."""
    beats, steps = cdiv(c, a.axi_bytes), cdiv(c, a.out_lanes)
    return rows * ((beats + PIPE_READ) + (steps + PIPE + DIV) + DIV + (beats + PIPE))


def gelu_table_luts() -> int:
    """LUTs of one output lane's copy of the GELU table (hls/gemm.h gtab): GELU_TABLE x 8 bits of single-port
    distributed RAM, a RAM256X1S (4 LUTs) per bit."""
    return 4 * 8 * cdiv(GELU_TABLE, 256)


def gelu_table_cycles() -> int:
    """hls/gemm.h load_gelu_table: a fused lambda-GELU's GELU_TABLE entries, one per iteration (each lane's copy is
    single-port LUTRAM), into every output lane's copy."""
    return GELU_TABLE + PIPE_READ


def consts_cycles(a: ArrayShape, n: int, *, bias: bool, rq_tab: bool, gelu: bool, ln_k: int = 0) -> int:
    """hls/gemm.h load_consts (+ ln_consts of a fused LayerNorm of ``ln_k`` channels): the biases at
    min(W / 4, OUT_LANES) per iteration (the loop runs, empty, without them), then the per-channel requant
    table in its own loop (a per-tensor requant loads nothing), then a fused GELU's table."""
    c = (table_its(n, min(max(a.axi_bytes // 4, 1), a.out_lanes), 1) if bias else 0) + PIPE_READ
    c += rq_table_cycles(a, n, a.out_lanes) * int(rq_tab) + (gelu_table_cycles() if gelu else 0)
    return c + rq_table_cycles(a, ln_k, a.ln_lanes)


def gemm_cycles(a: ArrayShape, t: int, k: int, n: int, *, bias: bool, rq_tab: bool, gelu: bool,
                prefetch_bytes: int, ln: bool = False, embed: bool = False) -> tuple[int, dict[str, int]]:
    """hls/schedule.h, the passes of a GEMM layer (gemm_begin) one by one: (cycles, breakdown).

    ``ln``: a LayerNorm fused into the left-operand loader (its per-channel constants, then ln_block_steps
    per row block). ``embed``: the position-embedding add fused into the output stage (``embed_fusions``):
    the pos operand is read like a residual (no extra step), and row 0's ceil(N / OUT_LANES) output-lane
    steps run in the first tile, whose output lanes are otherwise idle (gemm.h cls_steps): that tile lasts
    at least as long. The pos rows and row 0 come through gmem0, the prefetcher's port, so in that layer a
    tile's prefetch steps follow its output-lane steps (schedule.h ``Pass::pf0``)."""
    cyc, parts = _gemm_cycles(a, t, k, n, bias, rq_tab, gelu, prefetch_bytes, ln, embed)
    return cyc, dict(parts)


@functools.lru_cache(maxsize=1 << 14)  # the array search evaluates the same layer shapes many times
def _gemm_cycles(a: ArrayShape, t: int, k: int, n: int, bias: bool, rq_tab: bool, gelu: bool,
                 prefetch_bytes: int, ln: bool, embed: bool = False) -> tuple[int, tuple[tuple[str, int], ...]]:
    r = a.rows
    consts = consts_cycles(a, n, bias=bias, rq_tab=rq_tab, gelu=gelu, ln_k=k if ln else 0)
    a_blk = ln_block_steps(a, k) if ln else r * cdiv(k, a.load_lanes)
    a0 = a_blk + PIPE_ENGINE
    mb, nt = cdiv(t, r), cdiv(n, a.cols)
    pf0 = a.drain if embed else 0  # the embed's prefetch steps follow the output lanes' (gmem0)
    ks = a.steps(k)  # the array's steps of a tile
    w_share = cdiv(cdiv(prefetch_bytes, a.prefetch_lanes), mb * nt) if prefetch_bytes else 0
    # GEMM_STEP trip per (block b, tile j): max(K, drain unless the very first tile, A share unless
    # the last block, weight share) -- summed in closed form over the three kinds of tile
    last = max(ks, a.drain, pf0 + w_share)
    # a block's load share, over its tiles but the last `quiet` (gemm_quiet_tiles; a later tile without a load lasts
    # `last`)
    quiet = gemm_quiet_tiles(nt, a_blk, last)
    a_share = cdiv(a_blk, nt - quiet)
    cls = cdiv(n, a.out_lanes) if embed else 0
    first = max(ks, a_share if mb > 1 else 0, cls + w_share)
    mid = max(ks, a.drain, a_share, pf0 + w_share)
    if mb == 1:
        steps = first + (nt - 1) * last
    else:
        steps = first + ((mb - 1) * nt - 1) * mid + nt * last
    passes = gemm_block_passes(mb, first if nt - quiet == 1 else mid, mid, a_share, quiet)
    steps += passes * PIPE_ENGINE  # the row blocks' passes of the engine loop (schedule.h SQ_GEMM_BLOCK)
    tail = a.drain + PIPE_ENGINE
    seq = (passes + 3) * SEQ_SETUP  # the sequencer: A0's pass, the blocks', the tail's, the call that ends the layer
    return consts + a0 + steps + tail + seq, (("consts", consts), ("a_prologue", a0), ("steps", steps),
                                              ("tail", tail), ("sequencer", seq), ("array", mb * nt * ks))


def gemm_pass_blocks(left: int, last0: int, later: int, a_share: int, quiet: int = 0) -> int:
    """hls/schedule.h gemm_pass_blocks: the row blocks one GEMM pass runs from its first on (``left`` of the layer's
    blocks from there): block b + 1 follows block b in the pass when block b's last loading tile (``last0`` steps for
    the pass's first block, ``later`` for the others) and its ``quiet`` tiles after it (``later`` steps each) outlast
    its load share by PIPE_ENGINE steps, so that the array's first read of block b + 1 comes that many iterations
    after the loader's last write of it."""
    q = quiet * later
    if left < 2 or last0 - a_share + q < PIPE_ENGINE:
        return 1
    return 2 if later - a_share + q < PIPE_ENGINE else left


def gemm_quiet_tiles(nt: int, a_blk: int, later: int) -> int:
    """hls/schedule.h gemm_quiet_tiles: the last tiles of a row block that do not load the next block, whose load is
    spread over the others, so that the blocks share one pass (``gemm_pass_blocks``) where a short K would end a pass
    per block: the fewest that do it without lengthening a tile (the share at most ``later``, a later tile's steps
    without a load); 0 when every tile loading already lets the later blocks chain, or when nothing does."""
    if nt < 2 or a_blk <= 0:
        return 0
    a0 = cdiv(a_blk, nt)
    if max(later, a0) - a0 >= PIPE_ENGINE:
        return 0
    for q in range(1, nt):
        share = cdiv(a_blk, nt - q)
        if share > later:
            return 0
        if later - share + q * later >= PIPE_ENGINE:
            return q
    return 0


def gemm_block_passes(mb: int, last0: int, later: int, a_share: int, quiet: int = 0) -> int:
    """Passes of the engine loop that run a GEMM's ``mb`` row blocks: the sequencer's greedy ``gemm_pass_blocks``
    from block 0 (``last0``: block 0's last loading tile), then from the first block it left (whose last loading tile
    is a later one, ``later`` steps)."""
    b, passes = 0, 0
    while b < mb:
        b += gemm_pass_blocks(mb - b, last0 if b == 0 else later, later, a_share, quiet)
        passes += 1
    return passes


def pv_ii_of(graph: Graph, pack: int = 2) -> int:
    """Cfg::PV_II, the P.V loop's initiation interval (hls/attention.h), one for the whole engine, from the
    Shiftmax variants and ``pack`` (ArrayShape.pack, Cfg::PACK: int8 MACs per DSP): 1 when the array does not
    pack (pack 1: each PE has a DSP of its own, whose 25 x 18 / 27 x 18 multiplier takes a u15 x int8 product
    whole) or when every attention layer's probabilities have at most 8 bits (precise8: u8 x int8 packs two
    MACs per DSP48E2 like int8 x int8); else 2 (u15 x int8 cannot share a DSP: half the packed rate). A model
    without attention gets 2 (no P.V loop runs; 2 is valid for every variant)."""
    if pack not in (1, 2):
        raise ValueError(f"pack must be 1 or 2, not {pack}")
    bits = _p_bits(graph)
    return 1 if bits and (pack == 1 or max(bits) <= 8) else 2


def sm_row_shift_of(graph: Graph) -> bool:
    """Cfg::SM_ROW_SHIFT: the Shiftmax unit builds the per-row shift r (hls/shiftmax.h sm_row_shift: one
    |x0| * f multiplier and rmax comparators) only when an attention layer has u8 probabilities (precise8,
    ``p_bits`` < 15); for the u15 variants r is 0 and the unit is left out."""
    return any(b < 15 for b in _p_bits(graph))


def _p_bits(graph: Graph) -> tuple[int, ...]:
    """The probability widths (numerics.SHIFTMAX_VARIANTS p_bits) of the attention layers, in graph order."""
    return tuple(_memo("p_bits", graph, lambda: _p_bits_of(graph)))


def _p_bits_of(graph: Graph) -> tuple[int, ...]:
    bits = []
    for op in graph.ops:
        if isinstance(op, Attention):
            v = inum.SHIFTMAX_VARIANTS.get(op.variant)
            if v is None:
                raise IsegError(f"{op.name}: unknown Shiftmax variant {op.variant!r} "
                                f"(known: {', '.join(inum.SHIFTMAX_VARIANTS)})")
            bits.append(v.p_bits)
    return tuple(bits)


def sm_block_steps(rows: int, r: int, t: int, lanes: int, nlanes: int) -> int:
    """hls/shiftmax.h sm_block_steps: Shiftmax steps of a block of ``rows`` valid rows out of R, ``t`` keys: the
    exp pass over the valid rows, two rows per step at ``lanes`` each (one row a step when a row takes one step:
    the divider takes one row a step, a pair's second at the next pair's first step), the normalise pass over all
    R, two rows per step at ``nlanes`` each, one divider latency (+ 1 when the last pair's second row issued a step
    late)."""
    pairs = t > lanes  # shiftmax.h sm_exp_pairs
    exp = (cdiv(rows, 2) if pairs else rows) * cdiv(t, lanes)
    return exp + cdiv(r, 2) * cdiv(t, nlanes) + DIV + (1 if pairs and rows % 2 == 0 else 0)


def att_sm_wait(sd: int, pv_ii: int) -> int:
    """hls/attention.h att_sm_wait: iterations a block's Shiftmax waits at its first pass's start while the block's
    last score tile drains (``sd`` steps): one step an iteration in Q.K^T (``pv_ii`` 1), one a key in P.V, on a key's
    first iteration (the drain's last step is iteration pv_ii * (sd - 1))."""
    return pv_ii * (sd - 1) + 1


def kv_load_iters(t: int, dh: int, cols: int, axi_bytes: int, q_busy: int = -1) -> int:
    """Engine-loop iterations of one head's K/V load (hls/schedule.h KvLoad, kv_start): every chunk of ``axi_bytes``
    channels takes tp_chunk_steps steps of two iterations (the K beat with the transposer's write-out, then the V
    beat). A load beside a Q block whose beats take gmem1 for the first ``q_busy`` iterations (a head's first pass;
    -1: a load under other passes) is dual where those end before chunk 0's first key tile is complete: ceil(q_busy /
    2) steps of two iterations, then a step an iteration (the V beat on gmem1), the write-out one row a step."""
    s1, chunks = cdiv(q_busy, 2), cdiv(dh, axi_bytes)
    if q_busy >= 0 and s1 <= min(t, cols):
        return sum(tp_chunk_steps(t, dh, b, cols, axi_bytes, 1) for b in range(chunks)) + s1
    return sum(2 * tp_chunk_steps(t, dh, b, cols, axi_bytes) for b in range(chunks))


def attention_cycles(a: ArrayShape, t: int, heads: int, dh: int, pv_ii: int = 2) -> tuple[int, dict[str, int]]:
    """hls/attention.h and schedule.h, pass by pass: (cycles, breakdown).

    Per head: Q(0) beside what is left of the head's K/V load (head 0: all of it; head h + 1's loads under head h's
    passes, one step per two iterations of any of them), then QK(0) (Q(1) loading under it), then per query block i:
    PV(i-1) and QK(i+1) (Q(i+2) loading under it, load_lanes bytes per iteration; what it leaves runs alone) on the
    array with SM(i) advancing one step per iteration of their loops, the rest of SM(i) alone;
    PV(nb-1) (epilogue). Blocks 2 .. nb-2 chained into block 1's pass (schedule.h att_chain_ok) pay no fill and no
    sequencer call of their own. ``pv_ii``: Cfg::PV_II, cycles per key of the P.V loop (``pv_ii_of(graph, a.pack)``)."""
    if pv_ii not in (1, 2):
        raise ValueError(f"pv_ii must be 1 or 2, not {pv_ii}")
    cyc, parts, _ = _attention_cycles(a, t, heads, dh, pv_ii)
    return cyc, dict(parts)


def attention_chained(a: ArrayShape, t: int, dh: int, pv_ii: int = 2) -> int:
    """Query blocks per head that run on in block 1's pass (hls/schedule.h att_chain_ok: blocks 2 .. nb - 2, each
    without a fill and a sequencer call of its own); 0 where the blocks do not chain."""
    return _attention_cycles(a, t, 1, dh, pv_ii)[2]


@functools.lru_cache(maxsize=1 << 12)
def _attention_cycles(a: ArrayShape, t: int, heads: int, dh: int,
                      pv_ii: int) -> tuple[int, tuple[tuple[str, int], ...], int]:
    w, r = a.axi_bytes, a.rows
    kt, vt = cdiv(t, a.cols), cdiv(dh, a.cols)
    dhs, ts = a.steps(dh), a.steps(t)  # the array's steps of a key tile (QK) and of a channel tile (P.V)
    # the RQ_8 of P.V is per tensor (its scale is s_P s_V: spec/numerics.md), so no table is loaded
    # (hls/attention.h load_rq_table returns at once); a per-channel one would cost rq_table_cycles
    consts = 0
    kv_it = kv_load_iters(t, dh, a.cols, w)  # a load under the previous head's passes
    q_it = r * cdiv(dh, a.load_lanes)
    kv_first = kv_load_iters(t, dh, a.cols, w, min(t, r) * cdiv(dh, a.load_lanes))  # beside Q(0): dual
    dr = a.pv_drain  # a P.V tile's drain (PV_LANES a step)

    sd = a.score_drain  # a score tile's drain (S_LANES a step)

    def qk_it(pv_pending: bool, sd_pending: bool = False, defer: bool = False) -> int:  # att_qk_steps
        # key tile 0 also drains a deferred P.V tile, or the previous QK's last score tile (block 0); a QK's own last
        # score tile drains in the next pass when there is one (defer: schedule.h ScoreDrain)
        first = max([dhs] + ([dr] if pv_pending else []) + ([sd] if sd_pending else []))
        return first + (kt - 1) * max(dhs, sd) + (0 if defer else sd)

    def pv_iters(defer: bool, sd_pending: bool) -> int:  # att_pv_steps: tile 0 T keys, tile j >= 1 max(T, drain)
        # (drains j - 1), PV_II iterations a key; tile 0 drains a pending score tile in its first keys (max(T, score
        # drain)); one pass of the engine loop for every channel tile (schedule.h SQ_PV: one fill), then the last
        # drain's; a deferred PV(i-1) is the first part of QK(i+1)'s pass (its fill is QK's). The Shiftmax steps in
        # every one of these iterations (both of a key's at PV_II 2)
        return pv_ii * (max(ts, sd) if sd_pending else ts) + (vt - 1) * pv_ii * max(ts, dr) + (0 if defer else dr)

    def pv_cyc(defer: bool, sd_pending: bool) -> int:
        return pv_iters(defer, sd_pending) + (0 if defer else 2 * PIPE_ENGINE)

    def q_left(qk: int) -> int:  # ATT_Q_LOAD pass: the Q beats a key loop of qk iterations leaves (one per iteration)
        return max(0, q_it - qk)

    nb = cdiv(t, r)
    # each QK's last score tile drains in the next pass (QK(0)'s in QK(1)'s key tile 0): sd_defer
    deferred = a.sd_defer and nb > 1
    sm_lanes, sm_norm = a.sm_lanes, a.sm_norm_lanes
    qk0 = qk_it(False, False, deferred)
    q_total = q_it + PIPE_ENGINE  # Q(0) of a head, exposed (its K/V rest beside it: kv); Q(b+1) loads under QK(b)
    left = q_left(qk0) if nb > 1 else 0
    q_total += left + PIPE_ENGINE if left else 0
    # the sequencer's calls a head (schedule.h seq_next): Q(0), QK(0), the epilogue's PV(nb-1) and its drain, and the
    # passes counted below; a Q rest or a Shiftmax rest with nothing to do is no pass and no call
    calls = 4 + (1 if left else 0)
    shadow_kv = qk0 + left  # the iterations of a head's passes after Q(0): the next head's K/V load runs in them
    qk_total = qk0 + PIPE_ENGINE  # prologue QK(0)
    pv_total = pv_cyc(False, False)  # epilogue PV(nb-1)
    shadow_kv += pv_iters(False, False)
    rest_total = 0
    chain = nb >= 4  # blocks 1 .. nb - 2 in one pass (att_chain_ok), unless one of them leaves a rest (below)
    for i in range(nb):
        rows = min(r, t - i * r)
        defer = i + 1 < nb  # PV(i-1)'s last channel tile drains in QK(i+1)'s key tile 0
        # SM(i) waits while block i's last score tile drains: in PV(i-1)'s tile 0 one drain step a key (its first
        # iteration), in QK(1)'s key tile 0 one an iteration (attention.h att_sm_wait)
        shadow = -att_sm_wait(sd, pv_ii if i >= 1 else 1) if deferred else 0
        if i >= 1:
            pv_total += pv_cyc(defer, deferred)
            shadow_kv += pv_iters(defer, deferred)
            shadow += pv_iters(defer, deferred)
            calls += 0 if defer else 2  # (deferred: the first part of QK(i+1)'s pass) its pass, its drain's
        if i + 1 < nb:
            qk = qk_it(i >= 1, deferred and i == 0, deferred)
            qk_total += qk + PIPE_ENGINE
            left = q_left(qk) if i + 2 < nb else 0  # Q(i+2) under QK(i+1)
            q_total += left + PIPE_ENGINE if left else 0
            shadow += qk + left
            shadow_kv += qk + left
            calls += 2 if left else 1
        steps = sm_block_steps(rows, r, t, sm_lanes, sm_norm)
        if 1 <= i < nb - 1 and (left or shadow - steps < PIPE_ENGINE):
            chain = False
        rest = max(0, steps - shadow)
        rest_total += rest + PIPE_ENGINE if rest else 0
        shadow_kv += rest
        calls += 1 if rest else 0
    chained = nb - 3 if chain else 0  # blocks 2 .. nb - 2 run on in block 1's pass (PV(0), QK(2)): no fill, no call
    qk_total -= chained * PIPE_ENGINE
    calls -= chained
    # the K/V loads beyond Q(0)'s beats, which their pass waits for: head 0's whole load, each later head's part that
    # the previous head's passes left (kv_overlap; without it every head's whole load)
    later = max(0, kv_it - shadow_kv - q_it) if a.kv_overlap else max(0, kv_first - q_it)
    kv = max(0, kv_first - q_it) + (heads - 1) * later
    seq = (heads * calls + 1) * SEQ_SETUP  # and the call that ends the layer
    parts = (("consts", consts), ("kv_load", kv), ("q_load", heads * q_total), ("qk", heads * qk_total),
             ("shiftmax", heads * rest_total), ("pv", heads * pv_total), ("sequencer", seq),
             ("array", heads * nb * (kt * dhs + vt * pv_ii * ts)))
    return consts + kv + heads * (q_total + qk_total + pv_total + rest_total) + seq, parts, chained


def _layernorm(t: int, c: int, a: ArrayShape) -> int:
    """hls/schedule.h layernorm_begin: a LayerNorm that is not fused runs on the loader alone (its per-channel
    constants, then ln_block_steps per block of R rows, one pipelined loop)."""
    return rq_table_cycles(a, c, a.ln_lanes) + cdiv(t, a.rows) * ln_block_steps(a, c) + PIPE_ENGINE + 2 * SEQ_SETUP


def _cost(name: str, kind: str, macs: int, cycles: int, parts: dict[str, int], ideal: int, w_bytes: int,
          ddr: int) -> OpCost:
    """OpCost with the breakdown as stalls: everything above the ideal array time is a stall."""
    busy = parts.pop("array", 0)
    stalls = [("tile_edges", max(0, busy - ideal))] if busy else []
    stalls += [(k, v) for k, v in parts.items() if k not in ("steps", "qk", "pv")]
    if "steps" in parts:
        stalls.append(("step_overrun", parts["steps"] - busy))
    if "qk" in parts:
        stalls.append(("array_overhead", parts["qk"] + parts["pv"] - busy))
    return OpCost(name, kind, macs, cycles, busy, tuple(stalls), w_bytes, ddr)


def _simple(name: str, kind: str, cycles: int, ddr: int, w_bytes: int = 0) -> OpCost:
    return OpCost(name, kind, 0, cycles, 0, (("vector", cycles),), w_bytes, ddr)


def _fused(name: str, kind: str) -> OpCost:
    return OpCost(name, kind, 0, 0, 0, (), 0, 0)


def embed_fusions(graph: Graph) -> dict[str, str]:
    """The position-embedding adds that run in the patch embedding's GEMM output stage (hls/gemm.h
    embed_fused): Embed name -> its PatchEmbed. The one rule of the planner (the PATCH_EMBED row with
    n_prefix 1 and the Embed's output) and of the estimate: an Embed right after (in graph order) the
    PatchEmbed whose output only it reads, with one constant (cls) row before the patch rows."""
    def rule() -> dict[str, str]:
        ops = list(graph.ops)
        out: dict[str, str] = {}
        for i, op in enumerate(ops[1:], 1):
            pe = ops[i - 1]
            if not (isinstance(op, Embed) and isinstance(pe, PatchEmbed) and op.inputs == (pe.output,)):
                continue
            if sum(pe.output in o.inputs for o in ops) != 1:
                continue
            if graph.acts[op.output].shape[0] - graph.acts[pe.output].shape[0] == 1:
                out[op.name] = pe.name
        return out
    return dict(_memo("embed_fusions", graph, rule))


def ln_fusions(graph: Graph) -> dict[str, tuple[tuple[str, int, int], ...]]:
    """The LayerNorms that run inside a Linear's left-operand loader (hls/engine.h ln_fusable):
    LayerNorm name -> the (Linear, first row, rows) row windows of its output those Linears read, in graph order.

    A LayerNorm with an int8 output is fused into the next ops in graph order past SliceRows views while they
    are Linears each reading one row window [r0, r0 + rows) of the output, directly or through views, over all
    of its channels (K == N), until every op that reads the output reads inside one of their windows. Each
    window is then computed in its own Linear's loader: the plan writes one LAYERNORM row per window, right
    before its Linear (generator/plan.py), and the rows outside every window are never written (nothing reads
    them: the encoder's cls row before dec.proj / dec.head). Two windows: the mask decoder's final norm, whose
    patch rows feed dec.proj_patch and class rows dec.proj_classes (a LayerNorm is row-wise, so a window's rows
    are those of the whole)."""
    return dict(_memo("ln_fusions", graph, lambda: _ln_fusions(graph)))


def _ln_fusions(graph: Graph) -> dict[str, tuple[tuple[str, int, int], ...]]:
    consumers: dict[str, list[Op]] = {}
    for op in graph.ops:
        for i in op.inputs:
            consumers.setdefault(i, []).append(op)
    ops = list(graph.ops)
    out: dict[str, tuple[tuple[str, int, int], ...]] = {}
    for i, ln in enumerate(ops):
        act = graph.acts[ln.output]
        if not isinstance(ln, LayerNorm) or act.bits != 8:
            continue
        readers: list[tuple[Op, int, int]] = []  # (op, first row, rows) of the LayerNorm output it reads
        stack = [(ln.output, 0)]
        while stack:
            name, r0 = stack.pop()
            for c in consumers.get(name, []):
                if isinstance(c, SliceRows):
                    stack.append((c.output, r0 + c.start))
                else:
                    readers.append((c, r0, graph.acts[name].shape[0]))
        j = i + 1
        while j < len(ops) and isinstance(ops[j], SliceRows):
            j += 1
        wins: list[tuple[str, int, int]] = []
        while j < len(ops) and isinstance(ops[j], Linear):
            lin = ops[j]
            win = [(r0, rows) for c, r0, rows in readers if c is lin]
            if len(win) != 1 or lin.k != act.shape[1] or lin.rows != win[0][1]:
                break
            wins.append((lin.name, *win[0]))
            if all(any(r0 <= s and s + n <= r0 + rows for _, r0, rows in wins) for _, s, n in readers):
                out[ln.name] = tuple(wins)
                break
            j += 1
    return out


def _graph_context(graph: Graph) -> tuple[dict[str, list[Op]], dict[str, Op], list[Op], dict[str, tuple[str, int, int]],
                                          set[str], dict[str, str], set[str]]:
    """op_costs' graph-only figures (computed once per graph: the array search costs thousands of shapes):
    each activation's consumers and producer, the ops, the LayerNorm fusions, the embedding adds fused into their
    PatchEmbed (Embed -> PatchEmbed) and those PatchEmbeds.

    A LayerNorm followed (in graph order, past views) by the Linear that reads its int8 output (or a row window of
    it) runs inside that Linear's left-operand loader on the Linear's rows (hls/engine.h ln_fusable, ln_fusions):
    its cost is the Linear's (gemm_cycles ln=True), it costs 0 itself. An Embed after its PatchEmbed adds in the
    PatchEmbed's output stage (embed_fusions)."""
    consumers: dict[str, list[Op]] = {}
    for op in graph.ops:
        for i in op.inputs:
            consumers.setdefault(i, []).append(op)
    producer = {op.output: op for op in graph.ops}
    ln_windows = ln_fusions(graph)
    embed_fused = embed_fusions(graph)
    return (consumers, producer, list(graph.ops), ln_windows, {w[0] for ws in ln_windows.values() for w in ws},
            embed_fused, set(embed_fused.values()))


def _weight_context(graph: Graph, cols: int) -> tuple[dict[str, int], list[str], dict[str, int]]:
    """op_costs' figures of one array width: the weight bytes of the prefetched ops (PatchEmbed, Linear), in
    tiles of C columns (plan.tile_weights), their order, and after each op the bytes of the next prefetch."""
    spec = graph.spec
    w_of = {}
    for op in graph.ops:
        if isinstance(op, PatchEmbed):
            w_of[op.name] = tiled_weight_bytes(3 * spec.patch ** 2, spec.dim, cols)
        elif isinstance(op, Linear):
            w_of[op.name] = tiled_weight_bytes(op.k, op.n, cols)
    nxt_pf: dict[str, int] = {}
    upcoming = 0
    for o in reversed(graph.ops):
        nxt_pf[o.name] = upcoming
        if o.name in w_of:
            upcoming = w_of[o.name]
    return w_of, [op.name for op in graph.ops if op.name in w_of], nxt_pf


def op_costs(graph: Graph, a: ArrayShape, act_cache_bytes: int = 0) -> list[OpCost]:
    """One estimate per graph op, in graph order (fused ops cost 0: their table row pays).

    ``act_cache_bytes`` is unused (the engine keeps one row block and one layer's weights on chip)."""
    del act_cache_bytes
    spec = graph.spec
    consumers, producer, ops, ln_windows, ln_fused, embed_fused, pe_embed = _memo("op_costs", graph,
                                                                                  lambda: _graph_context(graph))
    w_of, pf_order, nxt_pf = _memo("op_costs_cols", graph, lambda: _weight_context(graph, a.cols), a.cols)

    def next_prefetch(after: str) -> int:
        return nxt_pf[after]

    out: list[OpCost] = []
    wa = a.axi_bytes
    for op in ops:
        act = graph.acts[op.output]
        if isinstance(op, (Linear, PatchEmbed, MaskProduct)):
            if isinstance(op, PatchEmbed):
                t, k, n = spec.n_patches, 3 * spec.patch ** 2, spec.dim
                bias, rq_tab, gelu = True, rq_table(n), False
                wb, kind = w_of[op.name] + (4 + RQ_RECORD * rq_tab) * n, "patch_embed"
            elif isinstance(op, Linear):
                t, k, n = op.rows, op.k, op.n
                nxt = consumers.get(op.output, [])
                gelu = len(nxt) == 1 and isinstance(nxt[0], Gelu) and spec.gelu == "lambda"  # fused: its table
                bias, rq_tab = bool(op.bias), rq_table(n)
                wb = w_of[op.name] + (4 * n if op.bias else 0) + RQ_RECORD * n * rq_tab + GELU_TABLE * gelu
                kind = "linear"
            else:
                t, k = graph.acts[op.inputs[0]].shape
                n = graph.acts[op.inputs[1]].shape[0]
                bias, rq_tab, gelu, wb, kind = False, False, False, 0, "mask_product"
            emb = op.name in pe_embed
            cyc, parts = gemm_cycles(a, t, k, n, bias=bias, rq_tab=rq_tab, gelu=gelu,
                                     prefetch_bytes=next_prefetch(op.name), ln=op.name in ln_fused, embed=emb)
            if isinstance(op, MaskProduct):
                parts["load_b"] = tp_cycles(n, k, a.cols, wa, 1)  # in2^T through the transposer
                cyc += parts["load_b"]
            if isinstance(op, PatchEmbed):
                parts["pixels"] = pixel_cycles(*spec.image, spec.patch, pixel_beat_pixels(wa, spec.patch))
                cyc += parts["pixels"]
            if op.name == pf_order[0]:  # the first prefetch runs before the layer loop
                parts["prefetch0"] = cdiv(w_of[op.name], a.prefetch_lanes) + PIPE_READ
                cyc += parts["prefetch0"]
            # the DDR bytes the engine moves (the C-simulation counts them: tests/generator/conftest.py)
            res = any(isinstance(c, Add) for c in consumers.get(op.output, []))
            ddr = t * k + t * n * (2 if res else act.bits // 8) + (t * n * 2 if res else 0)
            if op.name in ln_fused:  # reads the LayerNorm's i16 input, writes its i8 output, loads its records
                ddr += 2 * t * k
                wb += RQ_RECORD * k * rq_table(k)
            if isinstance(op, PatchEmbed):  # the pixel path stages the patches (t x k bytes) for the A loader
                ddr += t * k
            if isinstance(op, MaskProduct):  # B = in2^T comes from the scratch through the transposer
                ddr += n * k
            if emb:  # + row 0 written; pos rows 1..t and the folded row 0 read from the blob like a residual
                ddr += 2 * n
                wb += 2 * (t + 1) * n
            out.append(_cost(op.name, kind, t * k * n, cyc, parts, cdiv(t * k * n, a.macs), wb, ddr))
        elif isinstance(op, Attention):
            pv_ii = pv_ii_of(graph, a.pack)
            cyc, parts = attention_cycles(a, op.rows, op.heads, op.d_head, pv_ii)
            # ideal array time: Q.K^T at one key tile step per cycle, P.V at PV_II cycles per key (1 on an
            # unpacked array: R x C MACs per cycle, one DSP each)
            ideal = cdiv(op.heads * op.rows * op.rows * op.d_head * (1 + pv_ii), a.macs)
            out.append(_cost(op.name, "attention", 2 * op.heads * op.rows ** 2 * op.d_head, cyc, parts, ideal, 0,
                             op.heads * 3 * op.rows * op.d_head + op.rows * op.heads * op.d_head))
        elif isinstance(op, (Gelu, Add)) and isinstance(producer.get(op.inputs[-1]), Linear) and (
                not isinstance(op, Gelu) or spec.gelu == "lambda"):
            out.append(_fused(op.name, "fused"))
        elif isinstance(op, Gelu):
            rows, c = act.shape
            out.append(_simple(op.name, "gelu", gelu_row_cycles(a, rows, c), 2 * rows * c))
        elif isinstance(op, Embed) and op.name in embed_fused:
            out.append(_fused(op.name, "fused"))
        elif isinstance(op, Embed):
            rows, c = act.shape
            out.append(_simple(op.name, "embed_add", rows * (c + PIPE_READ), 4 * rows * c, 2 * rows * c))  # pos: blob
        elif isinstance(op, LayerNorm) and op.name in ln_windows:
            out.append(_fused(op.name, "fused"))
        elif isinstance(op, LayerNorm):
            rows, c = act.shape
            out.append(_simple(op.name, "layernorm", _layernorm(rows, c, a), rows * c * (2 + act.bits // 8),
                               RQ_RECORD * c * rq_table(c)))
        elif isinstance(op, Add):
            rows, c = act.shape
            out.append(_simple(op.name, "add", rows * (c + PIPE_READ), 6 * rows * c))
        elif isinstance(op, SliceRows):
            out.append(_fused(op.name, "view"))
        elif isinstance(op, ConcatConst):
            rows, c = graph.acts[op.output].shape
            k = rows - graph.acts[op.inputs[0]].shape[0]
            # blob -> scratch, a beat per step over every row (hls/engine.h COPY_BEAT: rows padded to beats)
            out.append(_simple(op.name, "copy", k * cdiv(2 * c, wa) + PIPE_READ, 2 * k * c, 2 * k * c))
        elif isinstance(op, ArgmaxUpsample):
            h, wi = spec.image
            ncls = graph.acts[op.inputs[0]].shape[1]
            gh, gw = op.grid
            cyc = head_cycles(h, wi, op.patch, ncls, head_lanes(a, graph),
                              label_beat_labels(a.axi_bytes, op.patch))
            out.append(_simple(op.name, "argmax_upsample", cyc, gh * gw * ncls * 2))
        else:  # pragma: no cover - build_graph makes only the ops above
            raise TypeError(f"no estimate for op {type(op).__name__}")
    return out


def act_cache_budget(board: Board, units: Units) -> int:
    """Kept for callers: the engine has no activation cache beyond one row block (0)."""
    del board, units
    return 0


def array_macs(graph: Graph) -> int:
    """MACs of the frame that run on the GEMM array (linear layers, patch embedding, QK and PV, mask product).

    The array does at most R x C of them per cycle, so ``ceil(array_macs / (R*C))`` is a lower bound of any
    frame's cycles: every GEMM tile costs >= K steps, every QK key tile >= d_head, every PV pass >= PV_II * T."""
    def count() -> int:
        total = 0
        for op in graph.ops:
            if isinstance(op, Linear):
                total += op.rows * op.k * op.n
            elif isinstance(op, PatchEmbed):
                total += op.grid[0] * op.grid[1] * 3 * op.patch ** 2 * op.dim
            elif isinstance(op, Attention):
                total += 2 * op.heads * op.rows * op.rows * op.d_head
            elif isinstance(op, MaskProduct):
                (t, k), (n, _) = graph.acts[op.inputs[0]].shape, graph.acts[op.inputs[1]].shape
                total += t * k * n
        return total
    return int(_memo("array_macs", graph, count))


def _array_ops(graph: Graph) -> tuple[tuple[tuple[tuple[int, int, int], int], ...],
                                       tuple[tuple[tuple[int, int, int], int], ...]]:
    """The frame's GEMMs as (T, K, N) and its attention layers as (T, heads, d_head), each distinct shape with its
    count, for ``steps_bound``."""
    def ops() -> tuple[tuple[tuple[tuple[int, int, int], int], ...], tuple[tuple[tuple[int, int, int], int], ...]]:
        spec = graph.spec
        gemms: collections.Counter[tuple[int, int, int]] = collections.Counter()
        atts: collections.Counter[tuple[int, int, int]] = collections.Counter()
        for op in graph.ops:
            if isinstance(op, Linear):
                gemms[(op.rows, op.k, op.n)] += 1
            elif isinstance(op, PatchEmbed):
                gemms[(spec.n_patches, 3 * spec.patch ** 2, spec.dim)] += 1
            elif isinstance(op, MaskProduct):
                (t, k), (n, _) = graph.acts[op.inputs[0]].shape, graph.acts[op.inputs[1]].shape
                gemms[(t, k, n)] += 1
            elif isinstance(op, Attention):
                atts[(op.rows, op.heads, op.d_head)] += 1
        return tuple(sorted(gemms.items())), tuple(sorted(atts.items()))
    return _memo("array_ops", graph, ops)


def steps_bound(graph: Graph, a: ArrayShape) -> int:
    """A lower bound of the frame's cycles on ``a`` (the array search prunes with it, tested to change nothing):
    the engine-loop steps of the array's tiles alone. A GEMM tile lasts at least max(ceil(K / KD), the previous
    tile's drain) but the layer's first; a Q.K^T key tile max(d_head / KD, the previous one's score drain) but
    the block's first; a P.V channel tile PV_II ceil(T / KD) iterations."""
    key = (a.rows, a.cols, a.kd, a.drain, a.score_drain, pv_ii_of(graph, a.pack))
    return int(_memo("steps_bound", graph, lambda: _steps_bound(graph, *key), key))


def _steps_bound(graph: Graph, rows: int, cols: int, kd: int, drain: int, sdrain: int, pv_ii: int) -> int:
    gemms, atts = _array_ops(graph)
    total = 0
    for (t, k, n), count in gemms:
        ks, tiles = cdiv(k, kd), cdiv(t, rows) * cdiv(n, cols)
        total += count * (ks + (tiles - 1) * max(ks, drain))
    for (t, heads, dh), count in atts:
        dhs, kt, nb = cdiv(dh, kd), cdiv(t, cols), cdiv(t, rows)
        total += count * heads * nb * (dhs + (kt - 1) * max(dhs, sdrain) + cdiv(dh, cols) * pv_ii * cdiv(t, kd))
    return total


def choose_array(graph: Graph, board: Board, clock_mhz: float, widths: LaneWidths | None = None,
                 prune: bool = True, budget: Budget = DEFAULT_BUDGET) -> ArrayShape:
    """The R x C array with the best estimated frame time that fits ``budget`` (the share of the board's DSPs,
    LUTs and BRAM/URAM the design may take: config ``budget``, boards.Budget), over a
    few lane configurations (output, Shiftmax, score and LayerNorm lanes), both packings of the array
    (``pack_options``: two MACs per DSP with fabric accumulators, or a DSP per MAC that accumulates in the DSP
    and runs P.V at II 1), the K unrolls the model allows (``kd_options``: KD k a step per PE, through a chain of
    KD DSPs per output, whose accumulators and readout are then shared by KD MACs; the widest first, which
    prunes the most), both bindings of the small lane multipliers (mul_lane: DSPs or LUTs; on a tie
    the fewer DSPs) and, for a shape the head's argmax lanes would take past a cap, fewer of them
    (``head_lane_choices``). ``widths``: the model's proven
    multiplier widths (plan.lane_widths; None = the worst case of any checkpoint). ``prune``: skip the
    cycle count of a candidate whose lower bound (array_macs) is already above the best frame so far; the
    choice is the same (tested), only faster."""
    best: tuple[tuple[int, int], ArrayShape] | None = None
    near: list[tuple[tuple[int, int], ArrayShape]] = []  # every candidate weighed, for better_sd_defer below
    cap = _limit(board, "dsp", budget)
    macs = array_macs(graph)
    cols_ok = [c for c in COLS if axi_beat(graph, c, board) >= 4]
    for (lanes, sm, sl, ln), ai, kd in itertools.product(LANE_CONFIGS, (0, 1), kd_options(graph)[::-1]):
        for cols in cols_ok:
            aw = a_word_options(axi_beat(graph, cols, board))[ai]
            for rows in range(2, MAX_DIM + 1, 2):
                if rows * cols * kd // board.macs_per_dsp > cap:
                    break
                if prune and best is not None and cdiv(macs, rows * cols * kd) > best[0][0]:
                    continue  # even at 100 % of the array this shape cannot beat the best frame
                any_fit = False
                for pack in pack_options(rows, board):
                    fits = []  # the small multipliers on DSPs, then on LUTs (the cycles are the same)
                    for fab in (False, True):
                        a0 = make_shape(rows, cols, graph, board, clock_mhz, lanes, sm, sl, ln, fab, pack, aw, kd)
                        if prune and best is not None and steps_bound(graph, a0) > best[0][0]:
                            any_fit = True  # (not a resource: a larger shape may still be faster)
                            break  # its tiles' steps and drains alone exceed the best frame (fab: the same cycles)
                        # the most head lanes that fit, with the K/V loads overlapped where the weight buffer can
                        # hold the odd heads' K/V too (wrows_needed), else without (tried only when the memory is
                        # what does not fit: the search's time)
                        for al in head_lane_choices(graph, a0.axi_bytes):
                            a, units = fit_kv_overlap(replace(a0, a_lanes=al), graph, board, widths, budget)
                            if not exceeds(units, board, budget):
                                fits.append((units.dsp, a))
                                break
                    if not fits:
                        continue
                    any_fit = True
                    dsp, a = min(fits, key=lambda x: x[0])
                    cycles = sum(c.cycles for c in op_costs(graph, a))  # the pack sets PV_II
                    key = (cycles, dsp)
                    near.append((key, a))
                    if best is None or key < best[0]:
                        best = (key, a)
                if not any_fit:
                    break  # every resource grows with the rows
    if best is None:
        if not cols_ok:  # the beat divides every d_head (axi_beat): heads of 18 channels leave 2 bytes whatever C
            heads = sorted({op.d_head for op in graph.ops if isinstance(op, Attention) and op.d_head % 4})
            raise ValueError(f"heads of {', '.join(map(str, heads))} channels leave m_axi beats of less than 4 bytes "
                             "for any column count: the engine's stores write whole beats of at least 4 (head sizes "
                             "multiples of 4)")
        c0 = min(cols_ok)
        a = make_shape(2, c0, graph, board, clock_mhz, *LANE_CONFIGS[-1], True, pack_options(2, board)[0],
                       min(a_word_options(axi_beat(graph, c0, board))))
        over = overruns(unit_costs(a, graph, board, widths), board, budget)
        if not over:  # pragma: no cover - with its small multipliers on DSPs the smallest may be the one that fits
            over = "more than the budget allows with either binding of its small multipliers"
        within = "" if budget == DEFAULT_BUDGET else f" within the budget ({budget.describe()})"
        raise ValueError(f"no GEMM array fits {board.name}{within}: the smallest, 2x{c0} with the fewest lanes, "
                         f"needs {over}")
    # SD_DEFER is weighed after the search (inside it, it would double its time), on the candidates within SD_NEAR of
    # the best: flipping it moves a frame by a few per cent either way, so the best after it may be another candidate
    # (u50: 54x64x2 without the deferral beats 52x32x4 with it by 1.7 %)
    limit = best[0][0] * (1 + SD_NEAR)
    flipped = [(_sd_defer_weighed(graph, a), dsp, a) for (cycles, dsp), a in near if cycles <= limit]
    return min(flipped, key=lambda x: (x[0][0], x[1]))[0][1]


SD_NEAR = 0.03  # choose_array: the candidates SD_DEFER is weighed on, within this fraction of the best frame


def better_sd_defer(graph: Graph, a: ArrayShape) -> ArrayShape:
    """``a`` with the faster SD_DEFER. Deferring a Q.K^T's last score tile into the next pass saves its drain where
    the Shiftmax is hidden under the array, and costs where the Shiftmax is the bound (it waits for the drain): the
    two are weighed on the frame, once for the chosen array (not inside the search, which would double its time)."""
    return _sd_defer_weighed(graph, a)[1]


def _sd_defer_weighed(graph: Graph, a: ArrayShape) -> tuple[int, ArrayShape]:
    """better_sd_defer with the frame's cycles of the shape it returns (choose_array ranks by them)."""
    other = replace(a, sd_defer=not a.sd_defer)
    cyc = {x: sum(c.cycles for c in op_costs(graph, x)) for x in (a, other)}
    return (cyc[other], other) if cyc[other] < cyc[a] else (cyc[a], a)


# The resources a design must fit: (Units / Board field, name).
RESOURCES = (("dsp", "DSPs"), ("bram36", "BRAM36"), ("uram", "URAM"), ("lut", "LUTs"))
MEMORY = ("bram36", "uram")


def _limit(board: Board, field: str, budget: Budget | None) -> int:
    """How much of Board.``field`` a design may take: ``budget``'s share of it, or all of it (None)."""
    total = getattr(board, field)
    return int(total * budget.share(field)) if budget is not None else total


def exceeds(units: Units, board: Board, budget: Budget | None, fields: tuple[str, ...] = ()) -> bool:
    """Whether ``units`` need more than ``board`` of any of ``fields`` (all resources when empty; ``budget`` as in
    ``overruns``, without its names: the array search asks this of every candidate)."""
    return any(getattr(units, f) > _limit(board, f, budget) for f, _ in RESOURCES if not fields or f in fields)


def fit_kv_overlap(a: ArrayShape, graph: Graph, board: Board, widths: LaneWidths | None,
                   budget: Budget | None) -> tuple[ArrayShape, Units]:
    """``a`` and its units, with the K/V overlap off where the odd heads' weight rows (``wrows_needed``) are what
    takes it past the memory: only the memory differs between the two, so the serial load is counted only when
    the logic fits and the memory does not (the array search's time)."""
    units = unit_costs(a, graph, board, widths)
    if a.kv_overlap and exceeds(units, board, budget, MEMORY) and not exceeds(units, board, budget, ("dsp", "lut")):
        lean = replace(a, kv_overlap=False)
        lean_units = unit_costs(lean, graph, board, widths)
        if not exceeds(lean_units, board, budget, MEMORY):
            return lean, lean_units
    return a, units


def overruns(units: Units, board: Board, budget: Budget | None) -> str:
    """What ``units`` needs beyond ``board`` (``budget``: the planner's share of each resource; None: the whole
    device), each with the unit that takes the most of it, so that a refusal names the resource to shrink:
    e.g. a 1024-token model's K/V and score buffers on a 140-BRAM Zynq-7020. Empty when nothing exceeds."""
    out = []
    for field, what in RESOURCES:
        total = getattr(board, field)
        need, limit = getattr(units, field), _limit(board, field, budget)
        if need > limit:
            top = max(units.units, key=lambda u: getattr(u, field))
            share = f" of {total}" if budget is not None else ""
            out.append(f"{need:,} {what} (limit {limit:,}{share}; {top.name} {getattr(top, field):,})")
    return ", ".join(out)
