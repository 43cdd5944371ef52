"""Planning: checkpoint + graph + board -> one frozen, printable :class:`Plan`.

Every number the emitters print is decided here: the array size, the engine's compile-time
limits, the weights-blob layout (byte offset of every tensor and constant table), the scratch
layout (byte offset of every activation, reused once dead), the layer table of ``hls/engine.h``
(one row per fused group of graph ops), the trace map that tells the C-simulation which graph
activation each table row produces, and the estimates. Templates only loop over it.

Fusion (decided here, executed by the engine): the position-embedding add (Embed) runs in the
PATCH_EMBED row's output stage (``estimate.embed_fusions``); a Linear followed by λ-GELU becomes one LINEAR
row with F_GELU; a Linear feeding a residual Add becomes one LINEAR row with F_RESIDUAL (in
place when the residual dies there); SliceRows are views (an offset and a stride); ConcatConst
writes the constant rows right after its input's rows in one shared buffer.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from iseg import numerics as inum
from iseg.checkpoint import ModelSpec, QuantizedCheckpoint
from iseg.errors import IsegError
from iseg.generator import estimate as est
from iseg.generator.boards import Board, Budget
from iseg.generator.config import Config
from iseg.graph import (
    Act,
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
    build_graph,
)
from iseg.reference import Consts

__all__ = ["Plan", "LayerRow", "Segment", "Buffer", "TraceSpec", "make_plan", "ALIGN"]

ALIGN = 64  # byte alignment of blob segments and scratch buffers (one AXI burst beat group)

# LayerDesc field order (hls/layer_desc.h); the template prints them in this order.
LAYER_FIELDS = ("op", "flags", "T", "K", "N", "heads", "d_head", "n_prefix", "img_h", "img_w", "patch", "out_bits",
                "in", "in_stride", "in2", "in2_stride", "out", "out_stride", "w", "b", "cst", "sm_variant",
                "sm_x0", "ma", "mb", "ea", "mean_m", "mean_sh", "gelu", "rq", "rq2")
# hls/shiftmax.h enum SmVariant: every variant of iseg.numerics.SHIFTMAX_VARIANTS, mapped explicitly
SM_VARIANT_CODES = {"precise": 0, "ivit": 1, "precise8": 2}
_OP_CODES = {"PATCH_EMBED": 1, "EMBED_ADD": 2, "LAYERNORM": 3, "LINEAR": 4, "ATTENTION": 5, "ADD": 6,
             "MASK_PRODUCT": 7, "ARGMAX_UPSAMPLE": 8, "GELU": 9, "COPY_CONST": 10}


@dataclass(frozen=True)
class Segment:
    """One piece of the weights blob."""

    name: str
    offset: int
    nbytes: int
    kind: str  # i8 tiles | i32 bias | i16 rows | rq table | i16 embed row 0 (i8 tiles: a (K, N) weight in w's
    # order, tile_weights; i16 embed row 0: int_add(cls, pos[0]) of an Embed, its tensors and add in `src`)
    src: tuple[str, ...] = ()
    stride: int = 0  # i16 rows: elements per row in the blob (rows padded to whole beats, _padded); 0: unpadded


@dataclass(frozen=True)
class Buffer:
    """One activation in the scratch memory (views of a buffer share its bytes)."""

    name: str
    offset: int
    nbytes: int
    rows: int
    cols: int
    elem_bytes: int
    stride: int  # row stride, elements


@dataclass(frozen=True)
class TraceSpec:
    """Which graph activation a table row writes: rows [row0, row0+rows) of op ``name``."""

    name: str
    row0: int
    rows: int
    cols: int
    stride: int
    elem_bytes: int
    signed: bool


@dataclass(frozen=True)
class LayerRow:
    index: int
    op: str  # OP_* name without prefix
    ops: tuple[str, ...]  # the graph ops this row executes
    fields: tuple[tuple[str, str], ...]  # LayerDesc fields, C++ literals, struct order
    trace: TraceSpec | None


@dataclass(frozen=True)
class UnitRow:
    name: str
    dsp: int
    bram36: int
    uram: int
    lut: int
    note: str


@dataclass(frozen=True)
class OpRow:
    name: str
    kind: str
    macs: int
    cycles: int
    stalls: tuple[tuple[str, int], ...]
    weight_bytes: int
    ddr_bytes: int


@dataclass(frozen=True)
class Plan:
    """Everything the emitters print. Frozen; ``describe()`` prints it."""

    project: str
    board: Board
    clock_mhz: float
    spec: ModelSpec
    checkpoint_name: str
    checkpoint_sha256: str
    outputs: tuple[str, ...]
    # engine configuration (struct Cfg)
    rows: int
    cols: int
    array_auto: bool
    pack: int
    kmax: int
    nmax: int
    cmax: int
    patch_max: int
    # memory
    blob: tuple[Segment, ...]
    blob_bytes: int
    buffers: tuple[Buffer, ...]
    scratch_bytes: int
    layers: tuple[LayerRow, ...]
    # estimates
    lanes: dict[str, int] = field(hash=False)
    engine: dict[str, int] = field(default_factory=dict, hash=False)  # struct Cfg schedule parameters
    units: tuple[UnitRow, ...] = ()
    op_estimates: tuple[OpRow, ...] = ()
    totals: dict[str, Any] = field(default_factory=dict, hash=False)
    widths: tuple[tuple[str, int], ...] = ()  # struct Cfg::Widths (hls/mul.h): proven lane multiplier widths
    graph_text: str = ""
    config_yaml: str = ""
    budget: Budget | None = None  # what array: auto could take of the device (None: an explicit array)

    def describe(self) -> str:
        t = self.totals
        out = [f"plan {self.project}: board {self.board.name} ({self.board.part}) @ {self.clock_mhz:g} MHz",
               f"array {self.rows}x{self.cols} ({'auto' if self.array_auto else 'explicit'}), "
               f"{self.pack} MAC/DSP; KMAX {self.kmax} NMAX {self.nmax} CMAX {self.cmax}",
               f"blob {self.blob_bytes} B in {len(self.blob)} segments; scratch {self.scratch_bytes} B in "
               f"{len(self.buffers)} buffers; {len(self.layers)} layer rows",
               f"estimate: {t['cycles']} cycles/frame, {t['fps']:.2f} FPS, {100 * t['array_util']:.1f} % of the "
               f"array's MAC peak; DSP {t['dsp']} BRAM36 {t['bram36']} URAM {t['uram']} LUT {t['lut']}"]
        if self.budget is not None:
            out.insert(2, f"budget of the auto array: {self.budget.describe()} of the device")
        for r in self.layers:
            out.append(f"  [{r.index:3}] {r.op:<15} {'+'.join(r.ops)}")
        return "\n".join(out)


# --------------------------------------------------------------------------------------------
# small helpers
# --------------------------------------------------------------------------------------------
def _align(n: int) -> int:
    return -(-n // ALIGN) * ALIGN


def _i64(v: int) -> str:
    return f"{int(v)}LL"


def _rq_values(ckpt: QuantizedCheckpoint, name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    m, e, o = ckpt.rq(name)
    return np.atleast_1d(m), np.atleast_1d(e), np.atleast_1d(o)


def rq_table_bytes(ckpt: QuantizedCheckpoint, name: str, channels: int) -> bytes:
    """Per-channel records {int32 m, int32 e, int64 o}, little-endian (hls/requant.h)."""
    m, e, o = _rq_values(ckpt, name)
    rec = np.zeros(channels, dtype=[("m", "<i4"), ("e", "<i4"), ("o", "<i8")])
    rec["m"] = np.broadcast_to(m, (channels,))
    rec["e"] = np.broadcast_to(e, (channels,))
    rec["o"] = np.broadcast_to(o, (channels,))
    return rec.tobytes()


class _Blob:
    """Assigns blob offsets; the bytes themselves are produced by ``render_weights``."""

    def __init__(self) -> None:
        self.segments: list[Segment] = []
        self.at = 0
        self.by_name: dict[str, int] = {}

    def add(self, name: str, nbytes: int, kind: str, src: tuple[str, ...] = (), stride: int = 0) -> int:
        if name in self.by_name:
            return self.by_name[name]
        off = self.at
        self.segments.append(Segment(name, off, nbytes, kind, src, stride))
        self.by_name[name] = off
        self.at = _align(off + nbytes)
        return off


class _Scratch:
    """First-fit allocation of activations with lifetimes; deterministic."""

    def __init__(self) -> None:
        self.live: list[tuple[int, int, str]] = []  # (offset, size, name)
        self.high = 0

    def alloc(self, name: str, nbytes: int) -> int:
        size = _align(max(nbytes, 1))
        at = 0
        for off, sz, _ in sorted(self.live):
            if at + size <= off:
                break
            at = max(at, off + sz)
        self.live.append((at, size, name))
        self.high = max(self.high, at + size)
        return at

    def free(self, name: str) -> None:
        self.live = [x for x in self.live if x[2] != name]


def _rq_desc(ckpt: QuantizedCheckpoint, name: str | None, channels: int, blob: _Blob) -> str:
    """RqDesc literal {o, m, e, tab, pad_}: scalar fields, or a per-channel table in the blob."""
    if name is None:
        return "{0LL, 0, 0, -1, 0}"
    m, e, o = _rq_values(ckpt, name)
    if m.size == 1 and e.size == 1 and o.size == 1:
        return f"{{{_i64(o[0])}, {int(m[0])}, {int(e[0])}, -1, 0}}"
    off = blob.add(f"{name}#rq", 16 * channels, "rq table")
    return f"{{0LL, 0, 0, {off}, 0}}"


def _sm_variant(variant: str) -> tuple[int, inum.ShiftmaxVariant]:
    """(hls/shiftmax.h SmVariant code, numerics constants) of a Shiftmax variant; an unknown one is an error
    here, not a silent ivit in the engine."""
    if variant not in SM_VARIANT_CODES or variant not in inum.SHIFTMAX_VARIANTS:
        raise IsegError(f"softmax: unknown Shiftmax variant {variant!r} (the engine knows "
                        f"{', '.join(SM_VARIANT_CODES)})")
    return SM_VARIANT_CODES[variant], inum.SHIFTMAX_VARIANTS[variant]


def _gelu_desc(ckpt: QuantizedCheckpoint, name: str | None) -> str:
    """GeluParams literal {em, variant, x0, n, k, L, pad_}."""
    if name is None:
        return "{0LL, 0, 0, 0, 0, 0, 0}"
    c = ckpt.consts[name]
    variant = 0 if ckpt.spec.gelu == "lambda" else 1
    return f"{{{_i64(c['em'])}, {variant}, {int(c['x0'])}, {int(c['n'])}, {int(c['k'])}, {int(c['L'])}, 0}}"


# --------------------------------------------------------------------------------------------
# the layer table
# --------------------------------------------------------------------------------------------
@dataclass
class _View:
    buf: str  # the owning buffer
    row0: int  # first row inside it
    rows: int
    cols: int
    elem_bytes: int


def _padded(cols: int, elem_bytes: int, beat: int) -> int:
    """Row stride (elements) of a ``cols``-wide scratch row: whole m_axi beats. The engine reads and writes the
    scratch a beat at a time and its stores write whole beats (hls/axi.h), so a row owns every byte of its last
    beat (the padding past ``cols`` is written, never read) and every row starts on a beat."""
    return -(-cols * elem_bytes // beat) * beat // elem_bytes


def _layers(graph: Graph, ckpt: QuantizedCheckpoint, cols: int,
            beat: int) -> tuple[list[LayerRow], _Blob, list[Buffer], int]:
    spec = graph.spec
    blob = _Blob()
    scratch = _Scratch()
    views: dict[str, _View] = {}
    buffers: dict[str, Buffer] = {}
    consumers: dict[str, list[Op]] = {}
    for op in graph.ops:
        for i in op.inputs:
            consumers.setdefault(i, []).append(op)
    ops = list(graph.ops)
    graph_op = {op.name: op for op in ops}
    fused_into: dict[str, str] = {}  # graph op name -> the op (row) that executes it
    ln_windows = est.ln_fusions(graph)  # LayerNorm -> its (LINEAR, row window)s: each run in that row's loader
    # a LINEAR that reads a fused LayerNorm's second window or later: the LayerNorm's row for that window goes right
    # before it (the first window's at the LayerNorm's own place, which its LINEAR follows past views)
    ln_later = {lin: (graph_op[ln], r0, t) for ln, ws in ln_windows.items() for lin, r0, t in ws[1:]}
    # decide fusion first; the position-embedding add runs in the PATCH_EMBED row's output stage
    fused_into.update(est.embed_fusions(graph))
    for op in ops:
        if isinstance(op, Linear):
            nxt = consumers.get(op.output, [])
            if len(nxt) == 1 and isinstance(nxt[0], Gelu) and spec.gelu == "lambda":
                fused_into[nxt[0].name] = op.name
            elif len(nxt) == 1 and isinstance(nxt[0], Add) and nxt[0].inputs[1] == op.output:
                fused_into[nxt[0].name] = op.name
    # the activation each row finally writes
    row_ops: list[list[Op]] = []
    for op in ops:
        if op.name in fused_into:
            if not row_ops or row_ops[-1][0].name != fused_into[op.name]:
                raise AssertionError(f"fused op {op.name} does not follow its producer")
            row_ops[-1].append(op)
            continue
        row_ops.append([op])
    # last use (row index) of every activation, through views
    def owner(name: str) -> str:
        return views[name].buf if name in views else name

    last_use: dict[str, int] = {}
    for i, group in enumerate(row_ops):
        for op in group:
            for inp in op.inputs:
                last_use[inp] = i
    # a LayerNorm fused into the next LINEAR row (est.ln_fusions) reads its input inside that row's loader,
    # row block by row block, while the row's output stage stores the blocks before: the input stays live
    # through the LINEAR row, else the LINEAR's output may be allocated over input rows not yet normalised
    row_of = {group[0].name: i for i, group in enumerate(row_ops)}
    for ln_name, ws in ln_windows.items():
        ln_in = graph_op[ln_name].inputs[0]
        last_use[ln_in] = max([last_use[ln_in]] + [row_of[lin_name] for lin_name, _, _ in ws])

    def act_bytes(a: Act) -> int:
        return a.nbytes

    def new_buffer(name: str, act: Act, rows: int | None = None) -> Buffer:
        rows = act.shape[0] if rows is None else rows
        cols = act.shape[1]
        eb = act.bits // 8
        stride = _padded(cols, eb, beat)
        off = scratch.alloc(name, rows * stride * eb)
        b = Buffer(name, off, rows * stride * eb, rows, cols, eb, stride)
        buffers[name] = b
        views[name] = _View(name, 0, act.shape[0], cols, eb)
        return b

    def addr(name: str) -> tuple[int, int]:
        """(byte offset, row stride in elements) of activation ``name``."""
        v = views[name]
        b = buffers[v.buf]
        return b.offset + v.row0 * b.stride * b.elem_bytes, b.stride

    # ConcatConst: its input is written straight into the first rows of the concatenated buffer
    concat_of: dict[str, Op] = {}
    for op in ops:
        if isinstance(op, ConcatConst):
            concat_of[op.inputs[0]] = op

    rows_out: list[LayerRow] = []
    freed: set[str] = set()

    def release(i: int) -> None:
        # free every buffer whose activations (and views of them) are all dead after row i
        for bname in sorted(set(buffers) - freed):
            users = [n for n in views if owner(n) == bname]
            if all(last_use.get(n, len(row_ops)) <= i for n in users):
                scratch.free(bname)
                freed.add(bname)

    def emit(i: int, kind: str, group: list[Op], f: dict[str, Any], trace: TraceSpec | None) -> None:
        vals = {k: 0 for k in LAYER_FIELDS}
        vals.update({"in": -1, "in2": -1, "out": -1, "w": -1, "b": -1, "cst": -1})
        vals["gelu"] = _gelu_desc(ckpt, None)
        vals["rq"] = vals["rq2"] = _rq_desc(ckpt, None, 1, blob)
        vals.update(f)
        vals["op"] = f"iseg::OP_{kind}"
        lits = tuple((k, str(vals[k])) for k in LAYER_FIELDS)
        rows_out.append(LayerRow(len(rows_out), kind, tuple(o.name for o in group), lits, trace))

    def trace_of(name: str, row0: int = 0, rows: int | None = None) -> TraceSpec:
        a = graph.acts[name]
        off, stride = addr(name)
        return TraceSpec(name, row0, a.shape[0] if rows is None else rows, a.shape[1], stride, a.bits // 8, a.signed)

    def emit_layernorm(i: int, group: list[Op], op: LayerNorm, r0: int, t: int) -> None:
        """The LAYERNORM row of rows [r0, r0 + t) of ``op`` (all of them, or the window a fused LINEAR reads)."""
        n = graph.acts[op.output].shape[1]
        cin, sin = addr(op.inputs[0])
        out, out_stride = addr(op.output)
        # the mean's reciprocal of N: the loader has no divider for it (hls/layernorm.h, numerics.mean_reciprocal)
        try:
            mean_m, mean_sh = inum.mean_reciprocal(n)
        except ValueError as exc:
            raise IsegError(f"checkpoint: {op.name}: {exc}") from None
        k_max = (1 << (est.STRUCT_WIDTHS["kLnKBits"] - 1)) - 1  # K's operand width in the loader's products
        if n > k_max:
            raise IsegError(f"checkpoint: {op.name}: a LayerNorm of {n} channels exceeds the engine's {k_max} "
                            "(hls/mul.h kLnKBits)")
        emit(i, "LAYERNORM", group, {"T": t, "N": n, "out_bits": op.bits, "in": cin + r0 * sin * 2, "in_stride": sin,
                                     "out": out + r0 * out_stride * (op.bits // 8), "out_stride": out_stride,
                                     "rq": _rq_desc(ckpt, op.rq, n, blob), "mean_m": mean_m, "mean_sh": mean_sh},
             trace_of(op.output, r0, t))

    for i, group in enumerate(row_ops):
        op = group[0]
        last = group[-1]
        out_act = graph.acts[last.output]
        if isinstance(op, SliceRows):
            v = views[op.inputs[0]]
            views[op.output] = _View(v.buf, v.row0 + op.start, op.stop - op.start, v.cols, v.elem_bytes)
            release(i)
            continue
        if isinstance(op, ConcatConst):
            src = graph.acts[op.inputs[0]]
            views[op.output] = _View(owner(op.inputs[0]), 0, out_act.shape[0], out_act.shape[1], 2)
            k = out_act.shape[0] - src.shape[0]
            # rows padded to whole beats, as the scratch's: the copy moves a beat per step (hls/engine.h COPY_BEAT)
            cs = _padded(out_act.shape[1], 2, beat)
            off = blob.add(op.const, k * cs * 2, "i16 rows", stride=cs)
            base, stride = addr(op.output)
            emit(i, "COPY_CONST", group, {"T": k, "N": out_act.shape[1], "out_bits": 16, "in_stride": cs,
                                          "out": base + src.shape[0] * stride * 2, "out_stride": stride, "cst": off},
                 trace_of(op.output, src.shape[0], k))
            release(i)
            continue
        # allocate the output of this row
        if last.output in concat_of:
            cat = concat_of[last.output]
            new_buffer(cat.output, graph.acts[cat.output])
            views[last.output] = _View(cat.output, 0, out_act.shape[0], out_act.shape[1], out_act.bits // 8)
        elif isinstance(op, ArgmaxUpsample):
            pass
        elif isinstance(last, Add) and last.name in fused_into and views[last.inputs[0]].row0 == 0 \
                and all(last_use.get(n, len(row_ops)) <= i for n in views if owner(n) == owner(last.inputs[0])):
            # residual update in place: the residual dies here
            v = views[last.inputs[0]]
            views[last.output] = _View(v.buf, 0, out_act.shape[0], out_act.shape[1], 2)
        else:
            new_buffer(last.output, out_act)
        f: dict[str, Any] = {}
        if not isinstance(op, ArgmaxUpsample):
            f["out"], f["out_stride"] = addr(last.output)
        if isinstance(op, PatchEmbed):
            t, k, n = spec.n_patches, 3 * spec.patch ** 2, spec.dim
            stage = scratch.alloc("patch_embed#stage", t * _padded(k, 1, beat))
            f.update(T=t, K=k, N=n, img_h=spec.image[0], img_w=spec.image[1], patch=spec.patch, out_bits=16,
                     **{"in": stage, "in_stride": _padded(k, 1, beat)},
                     w=blob.add(op.weight, est.tiled_weight_bytes(k, n, cols), "i8 tiles"),
                     b=blob.add(op.bias, 4 * n, "i32 bias"),
                     rq=_rq_desc(ckpt, op.rq, n, blob))
            if isinstance(last, Embed):  # est.embed_fusions: out row 1 + t = int_add(token t, pos[1 + t]),
                # row 0 = int_add(cls, pos[0]), a constant: computed here, stored as one row (hls/gemm.h
                # embed_fused); pos rows at blob offset in2
                c = ckpt.consts[last.add]
                # the output lanes read the pos rows a beat per step, like a residual: rows padded to beats
                ps = _padded(n, 2, beat)
                f.update(n_prefix=1, in2=blob.add(last.pos, (t + 1) * ps * 2, "i16 rows", stride=ps), in2_stride=ps,
                         cst=blob.add(f"{last.output}#prefix", n * 2, "i16 embed prefix",
                                      (last.cls, last.pos, last.add)),
                         ma=int(c["ma"]), mb=int(c["mb"]), ea=int(c["e"]))
            emit(i, "PATCH_EMBED", group, f, trace_of(last.output))
            scratch.free("patch_embed#stage")
        elif isinstance(op, Embed):
            n_rows, d = out_act.shape
            cin, sin = addr(op.inputs[0])
            c = ckpt.consts[op.add]
            f.update(T=n_rows, N=d, n_prefix=1, out_bits=16, **{"in": cin, "in_stride": sin},
                     b=blob.add(op.pos, n_rows * d * 2, "i16 rows"),
                     cst=blob.add(f"{op.output}#prefix", d * 2, "i16 embed prefix", (op.cls, op.pos, op.add)),
                     ma=int(c["ma"]), mb=int(c["mb"]), ea=int(c["e"]))
            emit(i, "EMBED_ADD", group, f, trace_of(op.output))
        elif isinstance(op, LayerNorm):
            # fused into the next LINEAR row (est.ln_fusions, hls/engine.h ln_fusable): only the row window
            # [r0, r0 + t) that LINEAR reads is computed, so the row (and its trace) covers just that window
            r0, t = ln_windows[op.name][0][1:] if op.name in ln_windows else (0, out_act.shape[0])
            emit_layernorm(i, group, op, r0, t)
        elif isinstance(op, Linear):
            if op.name in ln_later:  # a later window of a fused LayerNorm: its row right before this LINEAR's
                ln_op, r0, t = ln_later[op.name]
                emit_layernorm(i, [ln_op], ln_op, r0, t)
            cin, sin = addr(op.inputs[0])
            f.update(T=op.rows, K=op.k, N=op.n, out_bits=op.bits, **{"in": cin, "in_stride": sin},
                     w=blob.add(op.weight, est.tiled_weight_bytes(op.k, op.n, cols), "i8 tiles"),
                     b=blob.add(op.bias, 4 * op.n, "i32 bias") if op.bias else -1,
                     rq=_rq_desc(ckpt, op.rq, op.n, blob))
            flags = []
            if isinstance(last, Gelu):
                flags.append("iseg::F_GELU")
                # the fused stage RQ_8(lambda-GELU(.)) as a table of its 256 i8 inputs (numerics.gelu_rq8_table),
                # read by the output lanes (hls/gemm.h load_gelu_table): `cst` of a LINEAR row
                if any(np.ndim(v) for v in ckpt.rq(last.rq)):
                    raise IsegError(f"checkpoint: {last.rq}: the GELU output requant must be per-tensor")
                f.update(gelu=_gelu_desc(ckpt, last.consts),
                         cst=blob.add(f"{last.name}#gelu", est.GELU_TABLE, "gelu table", (last.consts, last.rq)))
            if isinstance(last, Add):
                flags.append("iseg::F_RESIDUAL")
                rin, rs = addr(last.inputs[0])
                c = ckpt.consts[last.add]
                f.update(in2=rin, in2_stride=rs, ma=int(c["ma"]), mb=int(c["mb"]), ea=int(c["e"]))
            f["flags"] = " | ".join(flags) if flags else "0"
            emit(i, "LINEAR", group, f, trace_of(last.output))
        elif isinstance(op, Gelu):
            t, n = out_act.shape
            cin, sin = addr(op.inputs[0])
            f.update(T=t, N=n, out_bits=8, **{"in": cin, "in_stride": sin}, gelu=_gelu_desc(ckpt, op.consts),
                     rq=_rq_desc(ckpt, op.rq, n, blob))
            emit(i, "GELU", group, f, trace_of(op.output))
        elif isinstance(op, Attention):
            cin, sin = addr(op.inputs[0])
            d = op.heads * op.d_head
            x0 = int(ckpt.consts[op.softmax]["x0"])
            f.update(T=op.rows, K=op.d_head, N=d, heads=op.heads, d_head=op.d_head, out_bits=8,
                     **{"in": cin, "in_stride": sin}, sm_variant=_sm_variant(op.variant)[0], sm_x0=x0,
                     rq=_rq_desc(ckpt, op.qk_rq, 1, blob), rq2=_rq_desc(ckpt, op.pv_rq, d, blob))
            emit(i, "ATTENTION", group, f, trace_of(op.output))
        elif isinstance(op, Add):
            t, n = out_act.shape
            a0, s0 = addr(op.inputs[0])
            a1, s1 = addr(op.inputs[1])
            c = ckpt.consts[op.add]
            f.update(T=t, N=n, out_bits=16, **{"in": a0, "in_stride": s0}, in2=a1, in2_stride=s1,
                     ma=int(c["ma"]), mb=int(c["mb"]), ea=int(c["e"]))
            emit(i, "ADD", group, f, trace_of(op.output))
        elif isinstance(op, MaskProduct):
            a0, s0 = addr(op.inputs[0])
            a1, s1 = addr(op.inputs[1])
            t, k = graph.acts[op.inputs[0]].shape
            n = graph.acts[op.inputs[1]].shape[0]
            f.update(T=t, K=k, N=n, out_bits=16, **{"in": a0, "in_stride": s0}, in2=a1, in2_stride=s1,
                     rq=_rq_desc(ckpt, op.rq, n, blob))
            emit(i, "MASK_PRODUCT", group, f, trace_of(op.output))
        elif isinstance(op, ArgmaxUpsample):
            cin, sin = addr(op.inputs[0])
            n = graph.acts[op.inputs[0]].shape[1]
            f.update(T=op.grid[0] * op.grid[1], N=n, img_h=spec.image[0], img_w=spec.image[1], patch=op.patch,
                     **{"in": cin, "in_stride": sin})
            emit(i, "ARGMAX_UPSAMPLE", group, f, None)
        else:  # pragma: no cover - build_graph makes only the ops above
            raise TypeError(f"no layer row for {type(op).__name__}")
        release(i)
    return rows_out, blob, sorted(buffers.values(), key=lambda b: (b.offset, b.name)), scratch.high


# --------------------------------------------------------------------------------------------
# lane multiplier widths (hls/mul.h struct Widths)
# --------------------------------------------------------------------------------------------
def _sbits(v: int) -> int:
    """Signed bits (sign included) of the values in [-v, v]."""
    return int(abs(int(v))).bit_length() + 1


def lane_widths(graph: Graph, ckpt: QuantizedCheckpoint) -> est.LaneWidths:
    """The proven operand widths of the lane multipliers for this model (numerics.md bounds, maxima over
    the layers that share the hardware). In C-simulation every operand is checked against them
    (hls/mul.h narrow); here each is checked against mul.h's worst case, which any checkpoint meets."""
    spec = graph.spec
    acc, score, pv, add_m, arr = [2], [2], [2], [2], [2]
    sm_x0, sm_f, gelu_x0, gelu_f = [2], [2], [2], [2]

    def max_abs(name: str | None) -> int:
        return int(np.max(np.abs(ckpt.tensors[name].astype(np.int64)))) if name else 0

    for op in graph.ops:
        if isinstance(op, (Linear, PatchEmbed, MaskProduct)):
            # |acc| <= K * 128 * 128 (int8 x int8, or pixels u - 128 in [-128, 127]), plus the bias
            k = op.k if isinstance(op, Linear) else (3 * spec.patch ** 2 if isinstance(op, PatchEmbed)
                                                     else graph.acts[op.inputs[0]].shape[1])
            acc.append(_sbits(k * 128 * 128 + max_abs(getattr(op, "bias", None))))
            arr.append(_sbits(k * 128 * 128))  # the array's accumulator holds the sum, the bias comes after
        elif isinstance(op, Attention):
            score.append(_sbits(op.d_head * 128 * 128))
            x0 = abs(int(ckpt.consts[op.softmax]["x0"]))
            v = _sm_variant(op.variant)[1]
            psum = inum.shiftmax_p_sum_bound(op.rows, -x0, op.variant)  # the exporter's proof (§3)
            pv.append(min(32, _sbits(psum * 128)))  # |v| <= 128
            # f is largest for the smallest S: the row max's exp, |x0| * 2^n (shexp of 0), clamped as S is
            s_min = x0 << inum.SHIFTMAX_N
            if v.clamp_sum:
                s_min = min(s_min, (1 << 31) - 1)
            sm_x0.append(_sbits(x0))
            sm_f.append(_sbits(((1 << (31 + v.K)) - 1) // s_min))
        elif isinstance(op, (Add, Embed)):
            c = ckpt.consts[op.add]
            add_m.append(max(_sbits(int(c["ma"])), _sbits(int(c["mb"]))))
        elif isinstance(op, Gelu):
            c = ckpt.consts[op.consts]
            x0 = abs(int(c["x0"]))
            if spec.gelu == "lambda":
                em = int(c["em"])
            else:  # ShiftGELU: em = shexp(-M) with M = max(row max, 0) <= 127
                em = int(inum.shexp(np.int64(-127), -x0, int(c["n"])))
            gelu_x0.append(_sbits(x0))
            gelu_f.append(_sbits(((1 << 31) - 1) // max(1, min(em, (1 << 31) - 1))))
    w = est.LaneWidths(ACC=max(acc), SCORE=max(score), PV=max(pv), ADD_M=max(add_m), SM_BASE=max(sm_x0),
                       SM_F=max(sm_f), SM_X0=max(sm_x0), GELU_BASE=max(gelu_x0), GELU_F=max(gelu_f),
                       GELU_X0=max(gelu_x0), ARR=max(max(arr), max(score), max(pv)))
    worst = est.LaneWidths()
    for name, v in w.items():
        if v > getattr(worst, name):
            raise IsegError(f"checkpoint: lane width {name} = {v} bits exceeds the numerics bound "
                            f"{getattr(worst, name)} (hls/mul.h DefaultWidths): the checkpoint breaks numerics.md")
    return w


# --------------------------------------------------------------------------------------------
# the plan
# --------------------------------------------------------------------------------------------
def _file_sha256(path: Any) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def make_plan(cfg: Config, ckpt: QuantizedCheckpoint, checkpoint_sha256: str | None = None) -> Plan:
    """Resolve every size, offset, table row and estimate for ``cfg`` and ``ckpt``."""
    from iseg.generator.config import resolved_yaml

    spec = ckpt.spec
    name = cfg.source.name
    if cfg.image is not None and tuple(cfg.image) != tuple(spec.image):
        raise IsegError(f"{name}: image: {cfg.image[0]}x{cfg.image[1]} differs from the checkpoint's "
                        f"{spec.image[0]}x{spec.image[1]} (its position embedding has one row per patch; "
                        f"re-export the model at that size)")
    board = cfg.board
    graph = build_graph(spec)
    widths = lane_widths(graph, ckpt)
    if cfg.array is None:
        try:
            shape = est.choose_array(graph, board, cfg.clock_mhz, widths, budget=cfg.budget)
        except ValueError as exc:
            raise IsegError(f"{name}: array: auto: {exc}") from None
    else:
        r, c = cfg.array
        for key, v in (("rows", r), ("cols", c)):
            if v > est.MAX_DIM:
                raise IsegError(f"{name}: array.{key}: {v} exceeds the engine's limit of {est.MAX_DIM}")
        beat = est.axi_beat(graph, c, board)
        if beat < 4:
            heads = sorted({op.d_head for op in graph.ops if isinstance(op, Attention)})
            raise IsegError(f"{name}: array.cols: {c} columns with heads of {', '.join(map(str, heads))} channels "
                            f"leave m_axi beats of {beat} bytes: the engine's stores write whole beats of at least 4 "
                            f"(columns and head sizes multiples of 4)")
        try:
            shape = est.make_shape(r, c, graph, board, cfg.clock_mhz, pack=cfg.array_pack)
        except ValueError as exc:
            raise IsegError(f"{name}: array.macs_per_dsp: {exc}") from None
        if cfg.array_kd != 1:
            try:
                shape = est.make_shape(r, c, graph, board, cfg.clock_mhz, pack=shape.pack, kd=cfg.array_kd)
            except ValueError as exc:
                raise IsegError(f"{name}: array.k_unroll: {exc}") from None
    if ALIGN % shape.axi_bytes:  # pragma: no cover - every board's beat is at most 64 bytes
        raise AssertionError(f"{shape.axi_bytes}-byte beats: buffers aligned to {ALIGN} bytes would share a beat")
    if cfg.array is not None:  # the device's memory may not hold the K/V overlap's weight rows
        shape, units = est.fit_kv_overlap(shape, graph, board, widths, None)
        shape = est.better_sd_defer(graph, shape)
    else:
        units = est.unit_costs(shape, graph, board, widths)
    over = est.overruns(units, board, None) if cfg.array is not None else ""
    if over:  # an explicit array may pass the planner's budget, never the device (a project that cannot fit)
        raise IsegError(f"{name}: array: {shape.rows}x{shape.cols} needs {over} on {board.name}")
    costs = est.op_costs(graph, shape)
    layers, blob, buffers, scratch_bytes = _layers(graph, ckpt, shape.cols, shape.axi_bytes)
    a_lanes = est.head_lanes(shape, graph)
    for row in layers:
        if row.op == "ARGMAX_UPSAMPLE":  # every argmax step within one beat (estimate.argmax_lane_options)
            fd = dict(row.fields)
            stride, base = int(fd["in_stride"]), int(fd["in"])
            beat = shape.axi_bytes
            if (2 * stride) % beat or base % beat or beat % (2 * a_lanes):  # pragma: no cover - planner invariant
                raise IsegError(f"{name}: argmax: {a_lanes} lanes, row stride {stride}, base {base}: "
                                f"a step would straddle a memory beat")
    att = [op for op in graph.ops if isinstance(op, Attention)]
    gemm_k = [op.k for op in graph.ops if isinstance(op, Linear)] + [3 * spec.patch ** 2, spec.dec_dim or 1]
    nmax = max(op.rows for op in att)
    kmax = max(gemm_k + [nmax] + [op.d_head for op in att]  # + the LayerNorm loader's rows (schedule.h layernorm_begin)
               + [graph.acts[op.output].shape[1] for op in graph.ops if isinstance(op, LayerNorm)])
    cmax = max(graph.acts[op.output].shape[1] for op in graph.ops if isinstance(op, (LayerNorm, Gelu)))
    cycles = sum(c.cycles for c in costs)
    macs = sum(c.macs for c in costs)
    busy = sum(c.busy for c in costs)
    f = cfg.clock_mhz * 1e6
    peak_macs_board = board.dsp * board.macs_per_dsp
    totals = {
        "cycles": cycles,
        "macs": macs,
        "fps": f / cycles,
        "latency_ms": 1e3 * cycles / f,
        "array_macs_per_cycle": shape.macs,
        "array_util": macs / (cycles * shape.macs),
        # the cycles the array steps (tile edges included): at most cycles; f / busy is what this array and tiling
        # would give with every other cycle hidden under it, a ceiling for schedule work
        "busy_cycles": busy,
        "ceiling_fps": f / max(1, busy),
        "board_peak_util": macs / (cycles * peak_macs_board),
        "gops": 2 * macs * f / cycles / 1e9,
        "peak_gops": 2 * shape.macs * f / 1e9,
        "weight_bytes_per_frame": sum(c.weight_bytes for c in costs),
        "scratch_bytes_per_frame": sum(c.ddr_bytes for c in costs),
        "dsp": units.dsp, "bram36": units.bram36, "uram": units.uram, "lut": units.lut,
        "dsp_pct": 100 * units.dsp / board.dsp,
        "stalls": _sum_stalls(costs),
    }
    sha = checkpoint_sha256 or _file_sha256(cfg.checkpoint)
    return Plan(
        project=cfg.project, board=board, clock_mhz=cfg.clock_mhz, spec=spec, checkpoint_name=cfg.checkpoint.name,
        checkpoint_sha256=sha, outputs=cfg.outputs, rows=shape.rows, cols=shape.cols, array_auto=cfg.array is None,
        pack=shape.pack, kmax=kmax, nmax=nmax, cmax=cmax, patch_max=spec.patch,
        blob=tuple(blob.segments), blob_bytes=blob.at, buffers=tuple(buffers), scratch_bytes=_align(scratch_bytes),
        layers=tuple(layers),
        lanes={"out": shape.out_lanes, "layernorm": shape.ln_lanes, "shiftmax": shape.sm_lanes, "score": shape.s_lanes,
               "weight_bytes_per_cycle": shape.axi_bytes, "scratch_bytes_per_cycle": shape.axi_bytes,
               "small_multipliers_on_luts": int(shape.small_fabric)},
        engine={"ncmax": _dims_ncmax(graph), "wrows": est.wrows_needed(graph, shape.cols, shape.kv_overlap, shape.kd),
                "kv_overlap": int(shape.kv_overlap), "sd_defer": int(shape.sd_defer), "kd": shape.kd,
                "axi_bytes": shape.axi_bytes, "out_lanes": shape.out_lanes, "sm_lanes": shape.sm_lanes,
                "ln_lanes": shape.ln_lanes, "s_lanes": shape.s_lanes, "pv_lanes": shape.pv_lanes,
                "dhmax": max([op.d_head for op in graph.ops if isinstance(op, Attention)] + [1]),
                "pv_ii": est.pv_ii_of(graph, shape.pack),
                "sm_row_shift": int(est.sm_row_shift_of(graph)),
                "a_lanes": a_lanes, "a_word": shape.a_word,
                # pixels / labels per beat of the two AXI-Streams (hls/patch_embed.h, argmax_upsample.h)
                "pix": est.pixel_beat_pixels(shape.axi_bytes, spec.patch),
                "lab": est.label_beat_labels(shape.axi_bytes, spec.patch),
                **{f"{b}_{k}": v for b, port in est.M_AXI.items() for k, v in port.items()},
                "row_ops": sum(1 << code for code in sorted({_OP_CODES[r.op] for r in layers})),
                # the weight buffer in URAM where the estimate placed it there (unit w_buffers): engine.h binds it
                # (BIND_STORAGE), where the tool would otherwise build BRAM the estimate does not charge. Nothing
                # else goes there: the score blocks are banks of bytes, which a URAM's 72-bit words would waste.
                "w_uram": int(any(u.name == "w_buffers" and u.uram > 0 for u in units.units))},
        units=tuple(UnitRow(u.name, u.dsp, u.bram36, u.uram, u.lut, u.note) for u in units.units),
        op_estimates=tuple(OpRow(c.name, c.kind, c.macs, c.cycles, c.stalls, c.weight_bytes,
                                 c.ddr_bytes) for c in costs),
        totals=totals, widths=widths.items() + (("SMALL_FABRIC", int(shape.small_fabric)),),
        graph_text=graph.describe(),
        config_yaml=resolved_yaml(cfg, spec.image, (shape.rows, shape.cols), sha, shape.pack, shape.kd),
        budget=cfg.budget if cfg.array is None else None,
    )


def _dims_ncmax(graph: Graph) -> int:
    """Most output channels of a GEMM or attention row (the per-channel constant buffers)."""
    ns = [op.n for op in graph.ops if isinstance(op, Linear)]
    ns += [op.heads * op.d_head for op in graph.ops if isinstance(op, Attention)]
    ns += [graph.acts[op.inputs[1]].shape[0] for op in graph.ops if isinstance(op, MaskProduct)]
    return max(ns + [graph.spec.dim])


def _sum_stalls(costs: list[est.OpCost]) -> dict[str, int]:
    agg: dict[str, int] = {}
    for c in costs:
        for k, v in c.stalls:
            agg[k] = agg.get(k, 0) + v
    return dict(sorted(agg.items()))


def tile_weights(w: np.ndarray, cols: int) -> np.ndarray:
    """A (K, N) int8 weight in the order of the engine's weight buffer (hls/gemm.h Prefetch): tile j of C = ``cols``
    columns after tile j - 1, each as K rows of C bytes W[k][j*C .. j*C + C), zero past N. The prefetcher then
    copies the blob sequentially, one or two words of w per step, whatever N and C are."""
    k, n = w.shape
    nt = -(-n // cols)
    padded = np.zeros((k, nt * cols), dtype=np.int8)
    padded[:, :n] = w
    return np.ascontiguousarray(padded.reshape(k, nt, cols).transpose(1, 0, 2))


def embed_prefix_rows(ckpt: QuantizedCheckpoint, cls: str, pos: str, add: str) -> np.ndarray:
    """The first rows of an Embed's output, int_add(cls, pos[:n_prefix]) (numerics.md §5.4): constants of the
    checkpoint, so the generator computes them and the engine stores them as they are (hls/gemm.h gemm_out
    ``pre``, hls/add.h embed_add_rows): one blob read per element there, not the cls row and a position row side
    by side on the blob's port (with the weight prefetch)."""
    c = ckpt.consts[add]
    n = ckpt.tensors[pos].shape[-1]
    x = ckpt.tensors[cls].reshape(-1, n)
    return inum.int_add(x, ckpt.tensors[pos].reshape(-1, n)[:len(x)], int(c["ma"]), int(c["mb"]), int(c["e"]), 16)


def gelu_table(ckpt: QuantizedCheckpoint, consts: str, rq: str) -> np.ndarray:
    """A fused lambda-GELU's table (hls/gemm.h load_gelu_table): RQ_8(lambda-GELU(x)) for x = -128..127, computed
    by the reference's own function of the checkpoint's integers (numerics.gelu_rq8_table), its constants read as
    the reference reads them (reference.Consts)."""
    gc = Consts(ckpt).gelu(consts, np.zeros(0, dtype=np.int64))
    m, e, o = ckpt.rq(rq)
    return inum.gelu_rq8_table(gc, int(m), int(e), int(o))


def blob_bytes(plan: Plan, ckpt: QuantizedCheckpoint) -> bytes:
    """The weights blob: every segment of ``plan.blob`` at its offset, zero padding between."""
    buf = bytearray(plan.blob_bytes)
    layout = {}
    for seg in plan.blob:
        layout[seg.name] = seg
        if seg.name.endswith("#rq"):
            cname = seg.name[:-3]
            data = rq_table_bytes(ckpt, cname, seg.nbytes // 16)
        elif seg.kind == "i8 tiles":
            data = tile_weights(ckpt.tensors[seg.name], plan.cols).tobytes()
        elif seg.kind == "i16 embed prefix":
            data = embed_prefix_rows(ckpt, *seg.src).astype("<i2").tobytes()
        elif seg.kind == "gelu table":
            data = gelu_table(ckpt, *seg.src).tobytes()
        else:
            t = ckpt.tensors[seg.name]
            dtype = np.dtype("<i2") if seg.kind == "i16 rows" else t.dtype.newbyteorder("<")  # int8 pos widened
            a = np.ascontiguousarray(t.astype(dtype))
            if seg.stride:  # rows padded to whole beats (zeros past each row)
                a = np.pad(a.reshape(a.shape[0], -1), ((0, 0), (0, seg.stride - a.shape[-1])))
            data = a.tobytes()
        if len(data) != seg.nbytes:
            raise AssertionError(f"blob segment {seg.name}: {len(data)} bytes, planned {seg.nbytes}")
        buf[seg.offset:seg.offset + seg.nbytes] = data
    return bytes(buf)
