"""The analytic performance and resource model behind the planner and ``report.md``.

Everything here is integer arithmetic on shapes and board figures; no decision is left for the
templates. Two figures are computed per op:

* ``cycles`` -- the *scheduled* engine: loads, the array and the vector units overlap through
  double buffers (DATAFLOW), so an op costs its slowest stage plus the stalls that no buffer can
  hide (array fill/drain, the first weight tile of the frame, softmax of the first query block,
  ceil-tiling waste, output-stage or memory back-pressure).
* ``sequential`` -- the same work with no overlap between load, array and output stage: what a
  loop nest without DATAFLOW costs (the functional form of ``hls/engine.h``); an upper bound.

What each op counts (see ``docs/gen-hls.md``):

GEMM (linear layers, patch embedding, mask product): an R x C output-stationary array, K serial.
Tiles: ceil(T/R) x ceil(N/C), each max(K, drain) cycles, where drain = R*C / output-stage
throughput (double-buffered accumulators let the drain of one tile overlap the next tile's K
loop). Weights stream per column tile (K x C bytes, double-buffered): a column whose load is
longer than its compute stalls by the difference; only the first tile of the frame is fully
exposed (later layers prefetch theirs during the previous layer). Activations are read once per
layer if they (or, with the loop order swapped, the whole layer's weights) fit the on-chip
cache, else once per column tile (the DDR traffic is then charged against the scratch port).

Attention: per head, the query rows stream in blocks of R: Q_b K^T on the array (ceil(T/C) tiles
of d_head cycles), Shiftmax (exp+sum pass, then normalise pass, each T*R/lanes cycles on the
softmax unit, double-buffered against the array), then P V (P is u15: a 16x8 product, which
cannot share a DSP with a second MAC, so P V runs at half the packed rate). K and V of the head
are loaded on chip once per head (prefetched during the previous head).

Vector ops: LayerNorm feeds the next GEMM's left operand (its statistics come from the
producer's output stage), GELU and the residual add are fused in the GEMM output stage, so they
cost only when their lanes are slower than the array. Standalone ops (the mask LayerNorm, the
label upsampler, constant copies) cost elements / lanes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from iseg.generator.boards import Board
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

__all__ = ["ArrayShape", "OpCost", "UnitCost", "Units", "op_costs", "unit_costs", "choose_array", "mul_dsps"]

DSP_CAP = 0.80  # fraction of the DSPs the design may use (timing closure)
MEM_CAP = 0.80  # fraction of BRAM/URAM the buffers may use
LUT_CAP = 0.70  # fraction of the LUTs the design may use (routing)
PIPE = 16  # output-stage pipeline depth (requant, GELU, add), cycles
OUT_MULS = 3  # big multipliers per output-stage lane (RQ; GELU e*f + RQ; or add a*ma + b*mb)
PIXELS_PER_BEAT = 1  # pixel stream: one 32-bit 0x00BBGGRR word per beat (hls/patch_embed.h)
LABELS_PER_BEAT = 1  # label stream: one u8 label per beat (hls/argmax_upsample.h)
MAX_DIM = 64  # the engine's array limit (hls/engine.h: R, C <= 64)


def cdiv(a: int, b: int) -> int:
    return -(-a // b)


def even_at_least(x: float) -> int:
    """Lanes come in pairs (two 8-bit elements per 16-bit scratch word); at least 1."""
    n = math.ceil(max(x, 1.0))
    return n if n == 1 else n + (n % 2)


def mul_dsps(a_bits: int, b_bits: int, board: Board) -> int:
    """DSP slices of one a x b signed multiplier (27x18 on DSP48E2, 25x18 on DSP48E1)."""
    wa = 26 if board.dsp_kind == "DSP48E2" else 24
    return cdiv(a_bits, wa) * cdiv(b_bits, 17) if max(a_bits, b_bits) > 18 or min(a_bits, b_bits) > 17 else 1


@dataclass(frozen=True)
class ArrayShape:
    """The GEMM array and the vector units sized to keep up with it."""

    rows: int  # R: output rows (tokens) per tile
    cols: int  # C: output columns (channels) per tile
    pack: int  # int8 MACs per DSP (2 on DSP48E2: row pairs share the weight operand)
    out_lanes: int  # output-stage lanes (each OUT_MULS multipliers)
    ln_lanes: int  # LayerNorm normalise lanes
    sm_lanes: int  # Shiftmax exp lanes and normalise lanes
    bytes_per_cycle_w: int  # weight port
    bytes_per_cycle_s: int  # scratch port

    @property
    def macs(self) -> int:
        return self.rows * self.cols

    @property
    def dsps(self) -> int:
        return cdiv(self.macs, self.pack)


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
    """Estimate of one graph op on the planned engine."""

    name: str
    kind: str
    macs: int
    cycles: int
    sequential: int
    busy: int  # array cycles doing useful-shaped tiles (before stalls)
    stalls: tuple[tuple[str, int], ...]
    weight_bytes: int  # bytes fetched from the weights blob
    ddr_bytes: int  # scratch bytes read + written


def _mem_blocks(nbytes: int, parts: int, width_bits: int, board: Board, prefer_uram: bool) -> tuple[int, int]:
    """(BRAM36, URAM) for a buffer split into ``parts`` independent memories of ``width_bits``."""
    per = cdiv(nbytes, parts)
    if per * 8 <= 1024:  # tiny: LUTRAM / registers
        return 0, 0
    if prefer_uram and board.uram and per >= 4 * 1024:
        return 0, parts * max(cdiv(per, 36 * 1024), cdiv(width_bits, 72))
    return parts * max(cdiv(per, 4608), cdiv(width_bits, 72)), 0


def _dims(graph: Graph) -> dict[str, int]:
    ks = [op.k for op in graph.ops if isinstance(op, Linear)]
    ns = [op.n for op in graph.ops if isinstance(op, Linear)]
    att = [op for op in graph.ops if isinstance(op, Attention)]
    spec = graph.spec
    return {
        "kmax": max(ks + [3 * spec.patch * spec.patch, spec.dec_dim or 1]),
        "kmin": min(ks + [3 * spec.patch * spec.patch]),
        "nmin": min(ns),
        "tmax": max(op.rows for op in att),
        "dhmin": min(op.d_head for op in att),
        "dhmax": max(op.d_head for op in att),
        "cmax": max([spec.dim, spec.dec_dim, spec.n_cls]),
    }


def make_shape(rows: int, cols: int, graph: Graph, board: Board, clock_mhz: float) -> ArrayShape:
    """Size the vector units so that none of them is the bottleneck of the array's fastest op."""
    dims = _dims(graph)
    macs = rows * cols
    bpc = board.ddr_gbps * board.ddr_efficiency * 1e3 / clock_mhz  # bytes per cycle, whole memory
    port = board.axi_width // 8
    return ArrayShape(
        rows=rows, cols=cols, pack=board.macs_per_dsp if rows % 2 == 0 else 1,
        out_lanes=min(cols, even_at_least(macs / dims["kmin"])),
        ln_lanes=min(cols, even_at_least(macs / dims["nmin"])),
        sm_lanes=min(cols, even_at_least(macs / (3 * dims["dhmin"]))),
        bytes_per_cycle_w=max(1, min(port, int(bpc / 2))),
        bytes_per_cycle_s=max(1, min(port, int(bpc / 2))),
    )


def unit_costs(a: ArrayShape, graph: Graph, board: Board) -> Units:
    """DSP / BRAM / URAM / LUT per unit of the engine."""
    d = _dims(graph)
    big = mul_dsps(32, 32, board)
    u: list[UnitCost] = []
    acc_lut = 16 if a.pack == 2 else 8  # packed lanes: split + int32 accumulate in fabric (DPU-like)
    u.append(UnitCost("gemm_array", a.dsps, 0, 0, a.macs * acc_lut,
                      f"{a.rows}x{a.cols} int8 MACs, {a.pack} per DSP"))
    # tile buffers: left operand (R, KMAX) i16 x2, right operand (KMAX, C) i8 x2
    ba, ua = _mem_blocks(2 * a.rows * d["kmax"] * 2, a.rows, 16, board, False)
    bb, ub = _mem_blocks(2 * d["kmax"] * a.cols, 1, 8 * a.cols, board, True)
    u.append(UnitCost("gemm_buffers", 0, ba + bb, ua + ub, 2 * a.rows * 16,
                      "double-buffered left (R x KMAX) and right (KMAX x C) operand tiles"))
    u.append(UnitCost("output_stage", a.out_lanes * (OUT_MULS * big + 1), 0, 0, a.out_lanes * 1800,
                      f"{a.out_lanes} lanes: RQ, lambda-GELU (divider in LUTs), residual add"))
    u.append(UnitCost("layernorm", a.ln_lanes * 2 * big + 2, 0, 0, a.ln_lanes * 700 + 3000,
                      f"{a.ln_lanes} lanes: (y*f)>>1, RQ; one isqrt + divider per row"))
    sb, su = _mem_blocks(2 * a.rows * d["tmax"] * 8, a.sm_lanes, 64, board, True)
    u.append(UnitCost("shiftmax", a.sm_lanes * mul_dsps(24, 48, board), sb, su, a.sm_lanes * 900 + 4000,
                      f"{a.sm_lanes} exp lanes (shift/add only) + {a.sm_lanes} normalise lanes; "
                      "row buffer of R x T exps, double-buffered"))
    kb, ku = _mem_blocks(2 * 2 * d["tmax"] * d["dhmax"], a.cols, 8, board, True)
    u.append(UnitCost("attention_kv", 0, kb, ku, 2000, "K and V of one head on chip, double-buffered"))
    u.append(UnitCost("argmax_upsample", 0, 1, 0, 1500, "argmax on the grid, one line buffer of W/P labels"))
    u.append(UnitCost("axi_streams", 0, 4, 0, 6000, "pixel/label AXI-Stream, 2 m_axi masters, s_axilite"))
    return Units(tuple(u), sum(x.dsp for x in u), sum(x.bram36 for x in u), sum(x.uram for x in u),
                 sum(x.lut for x in u))


def _gemm(name: str, kind: str, t: int, k: int, n: int, a: ArrayShape, *, out_muls: int, w_bytes: int,
          in_bytes: int, out_bytes: int, res_bytes: int, half_rate: bool, first: bool, a_cached: bool,
          ln_feed: bool) -> OpCost:
    m_tiles, n_tiles = cdiv(t, a.rows), cdiv(n, a.cols)
    k_cycles = k * (2 if half_rate else 1)
    drain = cdiv(a.rows * a.cols * out_muls, OUT_MULS * a.out_lanes)
    per_tile = max(k_cycles, drain)
    busy = m_tiles * n_tiles * k_cycles
    compute = m_tiles * n_tiles * per_tile
    ideal = cdiv(t * k * n * (2 if half_rate else 1), a.macs)
    stalls: list[tuple[str, int]] = [("tile_edges", busy - ideal), ("output_stage", compute - busy)]
    # weights: column tiles of K x C, double-buffered against one column's compute
    tile_load = cdiv(k * a.cols, a.bytes_per_cycle_w)
    col_compute = m_tiles * per_tile
    w_stall = max(0, tile_load - col_compute) * (n_tiles - 1) + (tile_load if first else 0)
    stalls.append(("weight_load", w_stall))
    # scratch traffic: left operand once (cached) or once per column tile; residual in; output out
    act_in = t * k * in_bytes * (1 if a_cached else n_tiles)
    ddr = act_in + t * n * (out_bytes + res_bytes)
    mem = cdiv(ddr, a.bytes_per_cycle_s)
    stalls.append(("scratch_port", max(0, mem - compute)))
    ln = cdiv(t * k, a.ln_lanes) if ln_feed else 0
    stalls.append(("layernorm_feed", max(0, ln - max(compute, mem)) + (cdiv(a.rows * k, a.ln_lanes) if ln_feed else 0)))
    fill = a.rows + a.cols + PIPE
    stalls.append(("fill_drain", fill))
    cycles = ideal + sum(s for _, s in stalls)
    seq = m_tiles * n_tiles * (k_cycles + cdiv(a.rows * k * in_bytes, a.bytes_per_cycle_s)
                               + a.rows * a.cols + fill) + n_tiles * tile_load + ln
    return OpCost(name, kind, t * k * n, cycles, seq, busy, tuple(stalls), w_bytes, ddr)


def _attention(op: Attention, a: ArrayShape, half_pv: bool) -> OpCost:
    t, dh, h = op.rows, op.d_head, op.heads
    blocks = cdiv(t, a.rows)
    key_tiles, dh_tiles = cdiv(t, a.cols), cdiv(dh, a.cols)
    qk_drain = cdiv(a.rows * a.cols, OUT_MULS * a.out_lanes)
    qk = key_tiles * max(dh, qk_drain)
    pv_k = t * (2 if half_pv else 1)
    pv = dh_tiles * max(pv_k, cdiv(a.rows * a.cols, OUT_MULS * a.out_lanes))
    sm_pass = cdiv(a.rows * t, a.sm_lanes)  # exp+sum, and separately normalise
    block = max(qk + pv, sm_pass)
    kv_load = cdiv(2 * t * dh, a.bytes_per_cycle_s)
    macs = 2 * h * t * t * dh
    ideal = cdiv(h * t * t * dh * (3 if half_pv else 2), a.macs)
    busy = h * blocks * (key_tiles * dh + dh_tiles * pv_k)
    fill = a.rows + a.cols + PIPE
    stalls = (
        ("tile_edges", busy - ideal),
        ("output_stage", h * blocks * (qk + pv - key_tiles * dh - dh_tiles * pv_k)),
        ("softmax", h * (blocks * (block - qk - pv) + 2 * sm_pass)),
        ("kv_load", kv_load),  # first head; the others are prefetched
        ("fill_drain", h * fill),
    )
    cycles = ideal + sum(s for _, s in stalls)
    seq = h * (blocks * (qk + pv + 2 * sm_pass + cdiv(a.rows * dh, a.bytes_per_cycle_s)) + kv_load + fill)
    ddr = h * (3 * t * dh) + t * h * dh
    return OpCost(op.name, "attention", macs, cycles, seq, busy, stalls, 0, ddr)


def _vector(name: str, kind: str, elems: int, lanes: int, ddr: int, a: ArrayShape) -> OpCost:
    c = cdiv(elems, lanes)
    mem = cdiv(ddr, a.bytes_per_cycle_s)
    cycles = max(c, mem) + PIPE
    return OpCost(name, kind, 0, cycles, c + mem + PIPE, 0, (("memory", max(0, mem - c)), ("pipeline", PIPE)), 0, ddr)


def _fused(name: str, kind: str) -> OpCost:
    return OpCost(name, kind, 0, 0, 0, 0, (), 0, 0)


def op_costs(graph: Graph, a: ArrayShape, act_cache_bytes: int) -> list[OpCost]:
    """One estimate per graph op, in graph order (fused ops cost 0: their producer pays)."""
    spec = graph.spec
    consumers: dict[str, list[Op]] = {}
    for op in graph.ops:
        for i in op.inputs:
            consumers.setdefault(i, []).append(op)
    producer = {op.output: op for op in graph.ops}
    half = a.pack == 2
    out: list[OpCost] = []
    first = True
    for op in graph.ops:
        act = graph.acts[op.output]
        if isinstance(op, (Linear, PatchEmbed)):
            if isinstance(op, PatchEmbed):
                t, k, n = spec.n_patches, 3 * spec.patch ** 2, spec.dim
                w = k * n + 20 * n
                in_b = 1
            else:
                t, k, n = op.rows, op.k, op.n
                w = k * n + (4 * n if op.bias else 0) + 16 * n
                in_b = 1
            nxt = consumers.get(op.output, [])
            gelu = any(isinstance(c, Gelu) for c in nxt)
            res = any(isinstance(c, Add) for c in nxt)
            src = producer.get(op.inputs[0])
            while isinstance(src, SliceRows):
                src = producer.get(src.inputs[0])
            cost = _gemm(op.name, "patch_embed" if isinstance(op, PatchEmbed) else "linear", t, k, n, a,
                         out_muls=3 if (gelu or res) else 1, w_bytes=w, in_bytes=in_b,
                         out_bytes=1 if gelu else 2 if res else act.bits // 8, res_bytes=2 if res else 0,
                         half_rate=False, first=first, a_cached=min(t * k, k * n) <= act_cache_bytes,
                         ln_feed=isinstance(src, LayerNorm))
            if isinstance(op, PatchEmbed):  # the pixel stream feeds im2col
                pix = cdiv(spec.image[0] * spec.image[1], PIXELS_PER_BEAT)
                if pix > cost.cycles:
                    cost = OpCost(cost.name, cost.kind, cost.macs, pix + PIPE, cost.sequential + pix, cost.busy,
                                  cost.stalls + (("pixel_stream", pix + PIPE - cost.cycles),), cost.weight_bytes,
                                  cost.ddr_bytes)
            first = False
            out.append(cost)
        elif isinstance(op, MaskProduct):
            t, k = graph.acts[op.inputs[0]].shape
            n = graph.acts[op.inputs[1]].shape[0]
            out.append(_gemm(op.name, "mask_product", t, k, n, a, out_muls=1, w_bytes=0, in_bytes=1, out_bytes=2,
                             res_bytes=0, half_rate=False, first=False, a_cached=t * k <= act_cache_bytes,
                             ln_feed=False))
        elif isinstance(op, Attention):
            out.append(_attention(op, a, half))
        elif isinstance(op, (Gelu, Add)) and isinstance(producer.get(op.inputs[-1]), Linear):
            out.append(_fused(op.name, "fused"))
        elif isinstance(op, Embed):
            out.append(_fused(op.name, "fused"))  # pos add in the patch-embed output stage
        elif isinstance(op, LayerNorm):
            nxt = consumers.get(op.output, [])
            while nxt and isinstance(nxt[0], SliceRows):
                nxt = consumers.get(nxt[0].output, [])
            if nxt and all(isinstance(c, Linear) for c in nxt):
                out.append(_fused(op.name, "fused"))  # normalises the next GEMM's left operand
            else:
                rows, c = act.shape
                out.append(_vector(op.name, "layernorm", rows * c, a.ln_lanes, rows * c * (2 + act.bits // 8), a))
        elif isinstance(op, (Gelu, Add)):
            rows, c = act.shape
            out.append(_vector(op.name, "vector", rows * c, a.out_lanes, rows * c * 4, a))
        elif isinstance(op, SliceRows):
            out.append(_fused(op.name, "view"))
        elif isinstance(op, ConcatConst):
            rows, c = graph.acts[op.output].shape
            k = rows - graph.acts[op.inputs[0]].shape[0]
            out.append(_vector(op.name, "copy", k * c, a.bytes_per_cycle_s, 4 * k * c, a))
        elif isinstance(op, ArgmaxUpsample):
            h, w = spec.image
            ncls = graph.acts[op.inputs[0]].shape[1]
            gh, gw = op.grid
            arg = cdiv(gh * gw * ncls, a.out_lanes)
            lab = cdiv(h * w, LABELS_PER_BEAT)
            out.append(OpCost(op.name, "argmax_upsample", 0, max(arg, lab) + PIPE, arg + lab + PIPE, 0,
                              (("label_stream", max(0, lab - arg)), ("pipeline", PIPE)), 0, gh * gw * ncls * 2))
        else:  # pragma: no cover - build_graph makes only the ops above
            raise TypeError(f"no estimate for op {type(op).__name__}")
    return out


def act_cache_budget(board: Board, units: Units) -> int:
    """On-chip bytes left for caching a whole left operand after the engine's fixed buffers."""
    total = int(board.onchip_bytes * MEM_CAP)
    used = units.bram36 * 4608 + units.uram * 36 * 1024
    return max(0, (total - used) // 2)


def choose_array(graph: Graph, board: Board, clock_mhz: float) -> ArrayShape:
    """The R x C array with the best estimated frame time that fits DSP_CAP and MEM_CAP."""
    best: tuple[tuple[int, int], ArrayShape] | None = None
    cap = int(board.dsp * DSP_CAP)
    rows_set = list(range(2, MAX_DIM + 1, 2))
    for cols in (8, 16, 24, 32, 48, 64):
        for rows in rows_set:
            if rows * cols // board.macs_per_dsp > cap:
                break
            a = make_shape(rows, cols, graph, board, clock_mhz)
            units = unit_costs(a, graph, board)
            if (units.dsp > cap or units.bram36 > board.bram36 * MEM_CAP or units.uram > board.uram * MEM_CAP
                    or units.lut > board.lut * LUT_CAP):
                continue
            cycles = sum(c.cycles for c in op_costs(graph, a, act_cache_budget(board, units)))
            key = (cycles, units.dsp)
            if best is None or key < best[0]:
                best = (key, a)
    if best is None:
        raise ValueError(f"no GEMM array fits {board.name}")
    return best[1]
