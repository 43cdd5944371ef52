"""The whole-model numpy reference: executes the graph with ``iseg.numerics`` (no torch).

``run(ckpt, image)`` returns the (H, W) u8 label map and, on request, a trace of every op's
output (named as in the graph: ``enc.0.qkv``, ``dec.mask_norm``...). Every other level
(PyTorch integer mode, HLS C-simulation, RTL) is compared against this trace.

Constants are fetched through a :class:`Consts` object. The default reads the checkpoint; the
random-model builder substitutes one that *chooses* each constant from the integer values it
is about to requantize, which is how a random model gets activations that use their range.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from iseg import numerics as nx
from iseg.checkpoint import QuantizedCheckpoint
from iseg.errors import IsegError
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
    build_graph,
)

RQ = tuple[np.ndarray, np.ndarray, np.ndarray]


class Consts:
    """Constant look-up from a checkpoint. Sub-classes may compute constants from the data."""

    def __init__(self, ckpt: QuantizedCheckpoint):
        self.ckpt = ckpt

    def tensor(self, name: str) -> np.ndarray:
        return self.ckpt.tensors[name]

    def rq(self, key: str, z: np.ndarray, bits: int) -> RQ:
        return self.ckpt.rq(key)

    def ln(self, key: str, z: np.ndarray, bits: int) -> RQ:
        return self.ckpt.rq(key)

    def add(self, key: str, a: np.ndarray, b: np.ndarray) -> tuple[int, int, int]:
        c = self.ckpt.consts[key]
        return int(c["ma"]), int(c["mb"]), int(c["e"])

    def softmax_x0(self, key: str, scores: np.ndarray) -> int:
        return int(self.ckpt.consts[key]["x0"])

    def gelu(self, key: str, x: np.ndarray) -> nx.GeluConsts:
        c = self.ckpt.consts[key]
        return nx.GeluConsts(self.ckpt.spec.gelu, x0=int(c["x0"]), n=int(c["n"]), k=int(c["k"]),
                             L=int(c["L"]), em=int(c["em"]))


def im2col(image: np.ndarray, p: int) -> np.ndarray:
    """(H, W, 3) u8 -> (N, 3·P·P) int64 of ``u - 128``, k = (py*P + px)*3 + c, patches in raster order."""
    h, w, _ = image.shape
    x = image.astype(np.int64) - 128
    x = x.reshape(h // p, p, w // p, p, 3).transpose(0, 2, 1, 3, 4)
    return x.reshape((h // p) * (w // p), p * p * 3)


def attention_core(qkv: np.ndarray, heads: int, qk_rq: Callable[[np.ndarray], np.ndarray],
                   x0: Callable[[np.ndarray], int], variant: str) -> np.ndarray:
    """Concatenated per-head ``P·V`` (int64, before the output requant)."""
    t, d3 = qkv.shape
    d = d3 // 3
    dh = d // heads
    out = np.empty((t, d), dtype=np.int64)
    for h in range(heads):
        q = qkv[:, h * dh:(h + 1) * dh]
        k = qkv[:, d + h * dh:d + (h + 1) * dh]
        v = qkv[:, 2 * d + h * dh:2 * d + (h + 1) * dh]
        s = qk_rq(nx.exact_matmul(q, k.T)).astype(np.int8)  # RQ_8: i8 scores (Shiftmax reads 1 byte each)
        p, r = nx.shiftmax_with_shift(s, x0(s), variant)
        out[:, h * dh:(h + 1) * dh] = nx.attention_pv(p, r, v)
    return out


def _narrow(x: np.ndarray, bits: int, signed: bool = True) -> np.ndarray:
    if not signed:
        return x.astype(np.uint8)
    return x.astype({8: np.int8, 16: np.int16, 32: np.int32}[bits])


def run_op(op: Op, env: dict[str, np.ndarray], c: Consts, g: Graph) -> np.ndarray:
    """Execute one op on the activations in ``env``; returns its output (narrow dtype)."""
    ins = [env[i] for i in op.inputs]
    out_act = g.acts[op.output]
    if isinstance(op, PatchEmbed):
        acc = nx.linear(im2col(ins[0], op.patch), c.tensor(op.weight), c.tensor(op.bias))
        y = nx.requant(acc, *c.rq(op.rq, acc, 16), bits=16)
    elif isinstance(op, Embed):
        tok = np.concatenate([c.tensor(op.cls).astype(np.int64), ins[0].astype(np.int64)], axis=0)
        pos = c.tensor(op.pos).astype(np.int64)
        y = nx.int_add(tok, pos, *c.add(op.add, tok, pos))
    elif isinstance(op, LayerNorm):
        z = nx.ln_normalize(ins[0])
        y = nx.requant(z, *c.ln(op.rq, z, op.bits), bits=op.bits)
    elif isinstance(op, Linear):
        acc = nx.linear(ins[0], c.tensor(op.weight), None if op.bias is None else c.tensor(op.bias))
        y = nx.requant(acc, *c.rq(op.rq, acc, op.bits), bits=op.bits)
    elif isinstance(op, Gelu):
        gy = nx.gelu(ins[0], c.gelu(op.consts, ins[0]))
        y = nx.requant(gy, *c.rq(op.rq, gy, 8), bits=8)
    elif isinstance(op, Attention):
        acc = attention_core(
            ins[0], op.heads,
            lambda z: nx.requant(z, *c.rq(op.qk_rq, z, 8), bits=8),
            lambda s: c.softmax_x0(op.softmax, s), op.variant)
        y = nx.requant(acc, *c.rq(op.pv_rq, acc, 8), bits=8)
    elif isinstance(op, Add):
        y = nx.int_add(ins[0], ins[1], *c.add(op.add, ins[0], ins[1]))
    elif isinstance(op, SliceRows):
        y = ins[0][op.start:op.stop]
    elif isinstance(op, ConcatConst):
        y = np.concatenate([ins[0], c.tensor(op.const).astype(ins[0].dtype)], axis=0)
    elif isinstance(op, MaskProduct):
        acc = nx.exact_matmul(ins[0], ins[1].T)
        y = nx.requant(acc, *c.rq(op.rq, acc, 16), bits=16)
    elif isinstance(op, ArgmaxUpsample):
        gh, gw = op.grid
        y = nx.upsample_nearest(nx.argmax_labels(ins[0]).reshape(gh, gw), op.patch)
    else:  # pragma: no cover - the graph builder makes only the ops above
        raise TypeError(f"no reference for op {type(op).__name__}")
    return _narrow(np.asarray(y), out_act.bits, out_act.signed)


def check_image(image: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise IsegError(f"image must be an (H, W, 3) uint8 RGB array, got {image.dtype} {image.shape}")
    if tuple(image.shape[:2]) != tuple(shape):
        raise IsegError(f"image is {image.shape[0]}x{image.shape[1]}, the model expects {shape[0]}x{shape[1]}")
    return image


def run(ckpt: QuantizedCheckpoint, image: np.ndarray, *, trace: bool = False, consts: Consts | None = None,
        graph: Graph | None = None) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Labels (H, W) u8 of one image, and the per-op trace (empty unless ``trace``)."""
    g = graph or build_graph(ckpt.spec)
    c = consts or Consts(ckpt)
    env: dict[str, np.ndarray] = {"image": check_image(image, ckpt.spec.image)}
    live_until = {}
    for i, op in enumerate(g.ops):
        for name in op.inputs:
            live_until[name] = i
    for i, op in enumerate(g.ops):
        env[op.output] = run_op(op, env, c, g)
        if not trace:  # free what no later op reads (keeps Seg-T at 512² small)
            for name in op.inputs:
                if live_until.get(name) == i:
                    env.pop(name, None)
    labels = env[g.ops[-1].output]
    return labels, ({k: v for k, v in env.items() if k != "image"} if trace else {})
