"""Quantization of the FP Segmenter: torch integer ops, the integer mode, and fake-quant for QAT.

Three pieces, one per use:

- **Torch integer ops** (``requant_t``, ``shexp_t``, ``shiftmax_with_shift_t``, ``gelu_t``, ``ln_normalize_t``,
  ``int_add_t``, ``exact_matmul_t``): ``spec/numerics.md`` written once in torch int64, each
  bit-exact with its :mod:`iseg.numerics` twin (``tests/model/test_quant_ops.py``). Floor
  division is ``torch.div(..., rounding_mode="floor")`` and shifts are ``bitwise_*_shift`` on
  int64 (arithmetic), never C-style truncation.
- **Integer mode** (:class:`IntSegmenter`): executes the graph of :func:`iseg.graph.build_graph`
  op by op with those ops, on a batch of images, from a :class:`QuantizedCheckpoint`. Its trace
  uses the graph's op names, so it is compared with ``iseg.reference.run(..., trace=True)`` layer
  by layer (``tests/model/test_quant_exact.py``).
- **Fake quantization** (:class:`QuantSegmenter`): the float graph of I-Segmenter (§6: L2 norm
  removed, λ-GELU, nearest labels) around the FP model's own parameters, with an
  :class:`ActQuant` at every stored activation of the integer graph (same names). Modes:
  ``float`` (plain I-Segmenter float graph), ``calib`` (float, recording min/max ranges),
  ``fake`` (weights per output channel and activations per tensor rounded onto their integer
  grids with straight-through gradients; in training the ranges follow an EMA). The exporter
  (:mod:`iseg.model.export`) turns its ranges into the integer checkpoint.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from iseg import numerics as nx
from iseg.checkpoint import POS_BITS, QuantizedCheckpoint
from iseg.errors import IsegError
from iseg.graph import (
    Add,
    ArgmaxUpsample,
    Attention,
    ConcatConst,
    Embed,
    Gelu,
    LayerNorm,
    Linear,
    MaskProduct,
    Op,
    PatchEmbed,
    SliceRows,
    build_graph,
)

__all__ = [
    "ActQuant",
    "IntSegmenter",
    "QuantSegmenter",
    "act_bits",
    "exact_matmul_t",
    "fake_quant",
    "gelu_t",
    "int_add_t",
    "isqrt_t",
    "ln_normalize_t",
    "layernorm_t",
    "patch_embed_float",
    "requant_t",
    "round_half_even_div_t",
    "shexp_t",
    "shiftmax_t",
    "shiftmax_with_shift_t",
    "weight_scale",
]

I64 = torch.int64
_F64_EXACT = 1 << 53
INT32_MAX = nx.INT32_MAX


# ============================================================================================
# Torch integer ops (bit-exact twins of iseg.numerics)
# ============================================================================================
def _t(x: Any) -> torch.Tensor:
    """Anything integer -> int64 tensor (numpy arrays keep their values)."""
    if isinstance(x, torch.Tensor):
        return x.to(I64)
    return torch.as_tensor(np.asarray(x, dtype=np.int64))


def _shl(x: torch.Tensor, s: torch.Tensor | int) -> torch.Tensor:
    return torch.bitwise_left_shift(x, _t(s))


def _shr(x: torch.Tensor, s: torch.Tensor | int) -> torch.Tensor:
    return torch.bitwise_right_shift(x, _t(s))  # arithmetic on int64: floor


def clamp_bits_t(x: torch.Tensor, bits: int) -> torch.Tensor:
    return torch.clamp(x, -(1 << (bits - 1)), (1 << (bits - 1)) - 1)


def requant_t(z: Any, m: Any, e: Any, o: Any = 0, bits: int = 8) -> torch.Tensor:
    """``RQ_b(z, m, e, o) = clamp_b((z*m + o + 2^(e-1)) >> e)`` (§2); m/e/o broadcast on the last axis."""
    z, m, e, o = _t(z), _t(m), _t(e), _t(o)
    if z.numel() and int(z.abs().max()) >= 1 << 31:
        raise OverflowError("requant input exceeds 31 bits")
    return clamp_bits_t(_shr(z * m + o + _shl(torch.ones_like(e), e - 1), e), bits)


def exact_matmul_t(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Exact integer ``a @ b`` (int64): float64 while ``K·max|a|·max|b| < 2^53`` (exact in any order)."""
    a, b = _t(a), _t(b)
    amax = int(a.abs().max()) if a.numel() else 0
    bmax = int(b.abs().max()) if b.numel() else 0
    if a.shape[-1] * amax * bmax < _F64_EXACT:
        return torch.matmul(a.double(), b.double()).to(I64)
    return torch.matmul(a, b)


def shexp_t(x: Any, x0: int, n: int) -> torch.Tensor:
    """Shift exponential (§4): ``~ |x0|·2^n·exp(x·s)`` for ``x <= 0``."""
    x = _t(x)
    x0 = int(x0)
    if x0 >= 0:
        raise ValueError(f"shexp needs x0 < 0, got {x0}")
    t = x + _shr(x, 1) - _shr(x, 4)
    t = torch.clamp(t, min=n * x0)
    q = torch.div(t, x0, rounding_mode="floor")
    r = t - x0 * q
    return _shl(_shr(r, 1) - x0, n - q)


def shiftmax_with_shift_t(x: Any, x0: int, variant: str = "precise") -> tuple[torch.Tensor, torch.Tensor]:
    """Row-wise Shiftmax (§5.1) over the last axis: i8 scores -> ``(p, r)``, real = ``p·2^(r-15)`` (int64).

    ``r`` (shape ``(..., 1)``) is the row's shift: ``bit_length(pm) - p_bits`` (at least 0) for the row
    maximum's probability ``pm`` on the u15 grid, always 0 for the u15 variants; ``p`` is rounded at
    ``2^(s0 + r)`` and clamped at ``2^p_bits - 1``. Bit-exact with :func:`iseg.numerics.shiftmax_with_shift`.
    """
    v = nx.SHIFTMAX_VARIANTS[variant]
    x = _t(x)
    d = _shl(x - x.max(dim=-1, keepdim=True).values, v.k)
    e = shexp_t(d, x0, nx.SHIFTMAX_N)
    s = e.sum(dim=-1, keepdim=True)
    if v.clamp_sum:
        s = torch.clamp(s, max=INT32_MAX)
    f = torch.div(torch.full_like(s, (1 << (31 + v.K)) - 1), s, rounding_mode="floor")
    s0 = 31 - nx.P_GRID_BITS + v.K
    r = torch.zeros_like(f)
    if v.r_max:
        e_max = abs(int(x0)) << nx.SHIFTMAX_N  # the exp of the row maximum: e_max <= S, so e_max·f < 2^(31+K)
        pm = torch.clamp(_shr(e_max * f + v.rnd * (1 << (s0 - 1)), s0), max=(1 << nx.P_GRID_BITS) - 1)
        bits = sum((pm >= (1 << b)).to(I64) for b in range(nx.P_GRID_BITS))  # bit_length(pm), pm < 2^15
        r = torch.clamp(bits - v.p_bits, min=0)
    sh = s0 + r
    p = _shr(e * f + v.rnd * _shl(torch.ones_like(sh), sh - 1), sh)
    return torch.clamp(p, max=v.p_max), r


def shiftmax_t(x: Any, x0: int, variant: str = "precise") -> torch.Tensor:
    """The probabilities ``p`` of :func:`shiftmax_with_shift_t` (precise8: the u8 mantissas)."""
    return shiftmax_with_shift_t(x, x0, variant)[0]


def gelu_t(x: Any, c: nx.GeluConsts) -> torch.Tensor:
    """λ-ShiftGELU or I-ViT ShiftGELU (§5.2): i8 -> int64, real = y·s·2^-7."""
    x = _t(x)
    if c.variant == "lambda":
        xc = _shl(torch.clamp(x, -c.L, c.L), c.k)
        e = shexp_t(xc - c.M, c.x0, c.n)
        em: torch.Tensor | int = c.em
    else:
        big_m = torch.clamp(x.max(dim=-1, keepdim=True).values, min=0)
        e = shexp_t(x - big_m, c.x0, c.n)
        em = shexp_t(-big_m, c.x0, c.n)
    s = torch.clamp(e + em, max=INT32_MAX)
    f = torch.div(torch.full_like(s, INT32_MAX), s, rounding_mode="floor")
    return x * _shr(e * f, 24)


def isqrt_t(v: torch.Tensor) -> torch.Tensor:
    """Exact floor square root of int64 ``0 <= v < 2^62`` (float estimate, then exact correction)."""
    v = _t(v)
    if v.numel() and (int(v.min()) < 0 or int(v.max()) >= 1 << 62):
        raise ValueError("isqrt needs 0 <= v < 2^62")
    r = torch.floor(torch.sqrt(v.double())).to(I64)
    for _ in range(4):
        r = torch.where(r * r > v, r - 1, r)
    for _ in range(4):
        r = torch.where((r + 1) * (r + 1) <= v, r + 1, r)
    return r


def round_half_even_div_t(s: torch.Tensor, c: int) -> torch.Tensor:
    """``round_half_even(s / c)`` exactly, ``c > 0``."""
    q = torch.div(s, c, rounding_mode="floor")
    r = s - q * c
    up = (2 * r > c) | ((2 * r == c) & (torch.remainder(q, 2) == 1))
    return q + up.to(I64)


def ln_normalize_t(x: Any) -> torch.Tensor:
    """I-LayerNorm before its requant (§5.3): ``z`` with ``|z| <= 2^30``."""
    x = _t(x)
    mean = round_half_even_div_t(x.sum(dim=-1, keepdim=True), x.shape[-1])
    y = x - mean
    sd = torch.clamp(isqrt_t((y * y).sum(dim=-1, keepdim=True)), min=1)
    f = torch.div(torch.full_like(sd, INT32_MAX), sd, rounding_mode="floor")
    return _shr(y * f, 1)


def layernorm_t(x: Any, m: Any, e: Any, o: Any, bits: int = 8) -> torch.Tensor:
    """I-LayerNorm with gamma folded into per-channel ``m`` and beta into ``o``."""
    return requant_t(ln_normalize_t(x), m, e, o, bits)


def int_add_t(a: Any, b: Any, ma: int, mb: int, e: int, bits: int = 16) -> torch.Tensor:
    """Integer add of two differently scaled tensors (§5.4): one shared shift, one rounding."""
    a, b = _t(a), _t(b)
    return clamp_bits_t(_shr(a * int(ma) + b * int(mb) + (1 << (int(e) - 1)), int(e)), bits)


# ============================================================================================
# Integer mode: the graph executed with the torch integer ops
# ============================================================================================
class IntSegmenter(nn.Module):
    """The integer I-Segmenter of a checkpoint, in torch: ``forward(images) -> labels``.

    ``images``: (B, H, W, 3) uint8 (numpy or torch). Every tensor and constant is read from the
    checkpoint once and kept as an int64 buffer; nothing here is float except the exact float64
    matmul path of :func:`exact_matmul_t`.
    """

    def __init__(self, ckpt: QuantizedCheckpoint) -> None:
        super().__init__()
        ckpt.validate()
        self.spec = ckpt.spec
        self.graph = build_graph(ckpt.spec)
        self._tensors = {k: torch.from_numpy(np.asarray(v, dtype=np.int64)) for k, v in ckpt.tensors.items()}
        self._rq = {k: tuple(torch.from_numpy(a) for a in ckpt.rq(k)) for k, c in ckpt.consts.items() if "m" in c}
        self._consts = ckpt.consts

    def _gelu(self, key: str) -> nx.GeluConsts:
        c = self._consts[key]
        return nx.GeluConsts(self.spec.gelu, x0=int(c["x0"]), n=int(c["n"]), k=int(c["k"]), L=int(c["L"]),
                             em=int(c["em"]))

    def _add(self, key: str) -> tuple[int, int, int]:
        c = self._consts[key]
        return int(c["ma"]), int(c["mb"]), int(c["e"])

    def _op(self, op: Op, env: dict[str, torch.Tensor]) -> torch.Tensor:
        ins = [env[i] for i in op.inputs]
        tn, rq = self._tensors, self._rq
        bsz = ins[0].shape[0]
        if isinstance(op, PatchEmbed):
            acc = exact_matmul_t(im2col_t(ins[0], op.patch), tn[op.weight]) + tn[op.bias]
            return requant_t(acc, *rq[op.rq], bits=16)
        if isinstance(op, Embed):
            tok = torch.cat([tn[op.cls].expand(bsz, -1, -1), ins[0]], dim=1)
            return int_add_t(tok, tn[op.pos], *self._add(op.add))
        if isinstance(op, LayerNorm):
            return layernorm_t(ins[0], *rq[op.rq], bits=op.bits)
        if isinstance(op, Linear):
            acc = exact_matmul_t(ins[0], tn[op.weight])
            if op.bias is not None:
                acc = acc + tn[op.bias]
            return requant_t(acc, *rq[op.rq], bits=op.bits)
        if isinstance(op, Gelu):
            return requant_t(gelu_t(ins[0], self._gelu(op.consts)), *rq[op.rq], bits=8)
        if isinstance(op, Attention):
            qkv = ins[0]
            b, t, d3 = qkv.shape
            d = d3 // 3
            heads = qkv.view(b, t, 3, op.heads, op.d_head).permute(2, 0, 3, 1, 4)  # (3, B, h, T, dh)
            s = requant_t(exact_matmul_t(heads[0], heads[1].transpose(-1, -2)), *rq[op.qk_rq], bits=8)
            p, r = shiftmax_with_shift_t(s, int(self._consts[op.softmax]["x0"]), op.variant)
            o = _shl(exact_matmul_t(p, heads[2]), r)  # z = (P·V) << r: back on the u15 grid (numerics.attention_pv)
            o = o.transpose(1, 2).reshape(b, t, d)
            return requant_t(o, *rq[op.pv_rq], bits=8)
        if isinstance(op, Add):
            return int_add_t(ins[0], ins[1], *self._add(op.add))
        if isinstance(op, SliceRows):
            return ins[0][:, op.start:op.stop]
        if isinstance(op, ConcatConst):
            return torch.cat([ins[0], tn[op.const].expand(bsz, -1, -1)], dim=1)
        if isinstance(op, MaskProduct):
            return requant_t(exact_matmul_t(ins[0], ins[1].transpose(-1, -2)), *rq[op.rq], bits=16)
        if isinstance(op, ArgmaxUpsample):
            gh, gw = op.grid
            lab = torch.argmax(ins[0], dim=-1).reshape(bsz, gh, gw)  # ties: first index
            return lab.repeat_interleave(op.patch, 1).repeat_interleave(op.patch, 2)
        raise TypeError(f"no integer mode for op {type(op).__name__}")  # pragma: no cover

    @torch.no_grad()
    def forward(self, images: Any, trace: bool = False) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Labels (B, H, W) uint8 and, with ``trace``, every op output (int64) by graph op name."""
        img = images if isinstance(images, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(images))
        if img.dtype != torch.uint8 or img.ndim != 4 or img.shape[-1] != 3:
            raise IsegError(f"images must be (B, H, W, 3) uint8, got {img.dtype} {tuple(img.shape)}")
        if tuple(img.shape[1:3]) != tuple(self.spec.image):
            raise IsegError(f"images are {img.shape[1]}x{img.shape[2]}, the model expects "
                            f"{self.spec.image[0]}x{self.spec.image[1]}")
        env: dict[str, torch.Tensor] = {"image": img}
        for op in self.graph.ops:
            env[op.output] = self._op(op, env)
        labels = env[self.graph.ops[-1].output].to(torch.uint8)
        return labels, ({k: v for k, v in env.items() if k != "image"} if trace else {})


def im2col_t(images: torch.Tensor, p: int) -> torch.Tensor:
    """(B, H, W, 3) u8 -> (B, N, 3·P·P) int64 of ``u - 128``, k = (py*P + px)*3 + c (raster patches)."""
    b, h, w, _ = images.shape
    x = images.to(I64) - 128
    x = x.reshape(b, h // p, p, w // p, p, 3).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(b, (h // p) * (w // p), p * p * 3)


# ============================================================================================
# Fake quantization
# ============================================================================================
def fake_quant(x: torch.Tensor, scale: torch.Tensor, bits: int) -> torch.Tensor:
    """Round onto ``scale·[-2^(b-1), 2^(b-1)-1]``; gradient passes inside the range, zero outside."""
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    y = torch.maximum(torch.minimum(x, hi * scale), lo * scale)
    return y + (torch.round(y / scale) * scale - y).detach()


def weight_scale(w_kn: torch.Tensor) -> torch.Tensor:
    """Per-output-channel int8 scale of a (K, N) weight: ``max_k |w| / 127`` (a dead column gets 1)."""
    amax = w_kn.detach().abs().amax(dim=0)
    return torch.where(amax > 0, amax / 127.0, torch.ones_like(amax))


def tensor_scale(t: torch.Tensor, bits: int) -> torch.Tensor:
    """Per-tensor scale of a constant (pos_embed): ``max |t| / (2^(b-1) - 1)``."""
    amax = t.detach().abs().max()
    return torch.where(amax > 0, amax, torch.ones_like(amax)) / ((1 << (bits - 1)) - 1)


class ActQuant(nn.Module):
    """Range observer and fake quantizer of one activation tensor (symmetric, per tensor).

    ``amax`` is the recorded range: running max of ``|x|`` in ``calib`` mode (min/max over the
    calibration images, §7), EMA ``momentum`` of the batch maximum while training in ``fake``
    mode. Under ``torch.distributed`` the batch maximum is all-reduced, so every rank holds the
    same ranges (DDP then runs without forward buffer syncing).
    """

    def __init__(self, bits: int, momentum: float = 0.95) -> None:
        super().__init__()
        self.bits = bits
        self.momentum = momentum
        self.mode = "float"
        self.register_buffer("amax", torch.zeros((), dtype=torch.float32))

    @property
    def qmax(self) -> int:
        return (1 << (self.bits - 1)) - 1

    def scale(self) -> torch.Tensor:
        return torch.clamp(self.amax, min=1e-8) / self.qmax

    def _batch_amax(self, x: torch.Tensor) -> torch.Tensor:
        m = x.detach().abs().max().float()
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.all_reduce(m, op=torch.distributed.ReduceOp.MAX)
        return m

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mode == "calib":
            self.amax.copy_(torch.maximum(self.amax, self._batch_amax(x)))
            return x
        if self.mode == "fake":
            if self.training:
                m = self._batch_amax(x)
                new = m if float(self.amax) == 0.0 else self.momentum * self.amax + (1 - self.momentum) * m
                self.amax.copy_(new)
            return fake_quant(x, self.scale(), self.bits)
        return x

    def extra_repr(self) -> str:
        return f"bits={self.bits}, amax={float(self.amax):.4g}, mode={self.mode}"


def _block_acts(p: str) -> dict[str, int]:
    return {f"{p}.ln1": 8, f"{p}.qkv": 8, f"{p}.attn.qk": 8, f"{p}.attn": 8, f"{p}.proj": 16, f"{p}.add1": 16,
            f"{p}.ln2": 8, f"{p}.fc1": 8, f"{p}.gelu": 8, f"{p}.fc2": 16, f"{p}.add2": 16}


def act_bits(cfg: Any) -> dict[str, int]:
    """Every quantized activation of the integer graph (graph op names; ``attn.qk`` = the scores) -> bits."""
    acts = {"patch_embed": 16, "embed": 16}
    for i in range(cfg.n_layers):
        acts.update(_block_acts(f"enc.{i}"))
    acts["enc.norm"] = 8
    if cfg.decoder == "linear":
        acts["dec.head"] = 16
        return acts
    acts["dec.proj"] = 16
    for j in range(cfg.dec_n_layers):
        acts.update(_block_acts(f"dec.{j}"))
    acts.update({"dec.norm": 8, "dec.proj_patch": 8, "dec.proj_classes": 8, "dec.mask": 16, "dec.mask_norm": 16})
    return acts


def patch_embed_float(fp: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """The patch-embed conv with the input normalisation folded in: (W (3P², d), b (d,)) over ``u - 128``.

    normalised = (u/255 - mean)/std = (u - 128)/(255·std) + (128/255 - mean)/std, so
    ``W[k, o] = w[o, c, py, px] / (255·std_c)`` with ``k = (py·P + px)·3 + c`` and
    ``b[o] = bias[o] + Σ w[o, c, py, px]·(128/255 - mean_c)/std_c``.
    """
    conv = fp.encoder.patch_embed.proj
    w = conv.weight  # (d, 3, P, P)
    mean = fp.mean.view(1, 3, 1, 1).to(w.dtype)
    std = fp.std.view(1, 3, 1, 1).to(w.dtype)
    w_eff = (w / (255.0 * std)).permute(2, 3, 1, 0).reshape(-1, w.shape[0])
    b_eff = conv.bias + (w * ((128.0 / 255.0 - mean) / std)).sum(dim=(1, 2, 3))
    return w_eff, b_eff


class QuantSegmenter(nn.Module):
    """The I-Segmenter graph (§6) in float around an FP :class:`Segmenter`'s parameters, with fake quantizers.

    ``forward(pixels)`` takes raw pixel values (B, 3, H, W) (uint8 or float 0..255, the model's
    training size) and returns mask logits on the token grid (B, n_cls, H/P, W/P); labels are
    their argmax replicated P×P (nearest), as the integer model does. The decoder L2 norm is
    removed whatever ``fp.cfg.l2norm`` says (the integer graph has none). ``gelu`` and ``lam``
    pick the float function the integer GELU approximates: ``lambda`` = x·σ(1.702·clip(x, ±λ)),
    ``shift`` = x·σ(1.702·x).
    """

    def __init__(self, fp: nn.Module, gelu: str = "lambda", lam: float = 4.0, softmax: str = "precise",
                 momentum: float = 0.95) -> None:
        super().__init__()
        cfg = fp.cfg
        if cfg.distilled:
            raise IsegError("distilled backbones (2 extra tokens) have no integer graph")
        if cfg.channels != 3:
            raise IsegError(f"the integer graph takes RGB images, the model has {cfg.channels} channels")
        if gelu not in nx.GELU_VARIANTS:
            raise IsegError(f"--gelu must be one of {nx.GELU_VARIANTS}, got {gelu!r}")
        if softmax not in nx.SHIFTMAX_VARIANTS:
            raise IsegError(f"--softmax must be one of {tuple(nx.SHIFTMAX_VARIANTS)}, got {softmax!r}")
        self.fp = fp
        self.cfg = cfg
        self.gelu, self.lam, self.softmax = gelu, float(lam), softmax
        self.bits = act_bits(cfg)
        self.acts = nn.ModuleDict({k.replace(".", "__"): ActQuant(b, momentum) for k, b in self.bits.items()})
        self.mode = "float"

    # ----------------------------------------------------------------------------- plumbing
    def act(self, name: str) -> ActQuant:
        return self.acts[name.replace(".", "__")]  # type: ignore[return-value]

    def set_mode(self, mode: str) -> QuantSegmenter:
        """``float`` | ``calib`` | ``fake`` for every quantizer (and the weights)."""
        if mode not in ("float", "calib", "fake"):
            raise ValueError(f"unknown mode {mode!r}")
        self.mode = mode
        for a in self.acts.values():
            a.mode = mode  # type: ignore[union-attr]
        return self

    def ranges(self) -> dict[str, float]:
        """Recorded ``max |x|`` of every activation, by graph name."""
        return {k: float(self.act(k).amax) for k in self.bits}

    def scales(self) -> dict[str, float]:
        return {k: float(self.act(k).scale()) for k in self.bits}

    def _q(self, name: str, x: torch.Tensor) -> torch.Tensor:
        return self.act(name)(x)

    def _w(self, w_kn: torch.Tensor) -> torch.Tensor:
        """Fake-quantize a (K, N) weight per output channel (fake mode only)."""
        if self.mode != "fake":
            return w_kn
        return fake_quant(w_kn, weight_scale(w_kn), 8)

    def _linear(self, x: torch.Tensor, lin: nn.Linear) -> torch.Tensor:
        return x @ self._w(lin.weight.t()) + lin.bias

    def _act_fn(self, x: torch.Tensor) -> torch.Tensor:
        arg = x.clamp(-self.lam, self.lam) if self.gelu == "lambda" else x
        return x * torch.sigmoid(1.702 * arg)

    def attn_probs(self, s: torch.Tensor) -> torch.Tensor:
        """Softmax of the scores; in fake mode on Shiftmax's output grid (straight-through gradient).

        u15 variants: the grid ``2^-15``, clamped at ``32767·2^-15``. precise8 (u8 mantissas under a per-row
        shift): per row, ``pm = min(round(max_prob·2^15), 32767)``, ``r = max(0, bit_length(pm) - 8)``, the
        grid ``2^(r-15)`` and the clamp ``255·2^(r-15)``, so QAT sees the rounding the integer P·V will see.
        """
        pr = s.softmax(dim=-1)
        if self.mode != "fake":
            return pr
        sv = nx.SHIFTMAX_VARIANTS[self.softmax]
        g = nx.P_GRID_BITS
        with torch.no_grad():
            r = torch.zeros_like(pr[..., :1])
            if sv.r_max:
                pm = torch.clamp(torch.round(pr.amax(dim=-1, keepdim=True) * (1 << g)), max=(1 << g) - 1)
                bits = sum((pm >= (1 << b)).to(pr.dtype) for b in range(g))  # bit_length(pm)
                r = torch.clamp(bits - sv.p_bits, min=0)
            step = torch.exp2(r - g)  # the row's grid 2^(r-15)
            q = torch.clamp(torch.round(pr / step), max=sv.p_max) * step
        return pr + (q - pr).detach()

    def _block(self, p: str, blk: nn.Module, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        heads = blk.attn.heads
        dh = d // heads
        a = self._q(f"{p}.ln1", F.layer_norm(x, (d,), blk.norm1.weight, blk.norm1.bias, blk.norm1.eps))
        qkv = self._q(f"{p}.qkv", self._linear(a, blk.attn.qkv))
        q, k, v = qkv.reshape(b, t, 3, heads, dh).permute(2, 0, 3, 1, 4)
        s = self._q(f"{p}.attn.qk", (q @ k.transpose(-2, -1)) * dh ** -0.5)
        pr = self.attn_probs(s)
        o = self._q(f"{p}.attn", (pr @ v).transpose(1, 2).reshape(b, t, d))
        o = self._q(f"{p}.proj", self._linear(o, blk.attn.proj))
        x = self._q(f"{p}.add1", x + o)
        h = self._q(f"{p}.ln2", F.layer_norm(x, (d,), blk.norm2.weight, blk.norm2.bias, blk.norm2.eps))
        h = self._q(f"{p}.fc1", self._linear(h, blk.mlp.fc1))
        h = self._q(f"{p}.gelu", self._act_fn(h))
        h = self._q(f"{p}.fc2", self._linear(h, blk.mlp.fc2))
        return self._q(f"{p}.add2", x + h)

    def pos_embed(self) -> torch.Tensor:
        pos = self.fp.encoder.pos_embed[0]
        if self.mode == "fake":
            pos = fake_quant(pos, tensor_scale(pos, POS_BITS), POS_BITS)
        return pos

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        """Raw pixels (B, 3, H, W) -> logits (B, n_cls, H/P, W/P) on the token grid."""
        cfg, fp = self.cfg, self.fp
        b, _, h, w = pixels.shape
        if (h, w) != tuple(cfg.image_size):
            raise IsegError(f"images are {h}x{w}, the quantized model runs at {cfg.image_size[0]}x{cfg.image_size[1]}")
        p = cfg.patch_size
        gh, gw = h // p, w // p
        x = pixels.float() - 128.0
        x = x.reshape(b, 3, gh, p, gw, p).permute(0, 2, 4, 3, 5, 1).reshape(b, gh * gw, p * p * 3)
        w_pe, b_pe = patch_embed_float(fp)
        tok = x @ self._w(w_pe) + b_pe
        enc = fp.encoder
        x = self._q("patch_embed", torch.cat([enc.cls_token.expand(b, -1, -1), tok], dim=1))
        x = self._q("embed", x + self.pos_embed())
        for i, blk in enumerate(enc.blocks):
            x = self._block(f"enc.{i}", blk, x)
        x = self._q("enc.norm", F.layer_norm(x, (cfg.d_model,), enc.norm.weight, enc.norm.bias, enc.norm.eps))
        x = x[:, 1:]
        dec = fp.decoder
        if cfg.decoder == "linear":
            m = self._q("dec.head", self._linear(x, dec.head))
        else:
            x = self._linear(x, dec.proj_dec)
            x = self._q("dec.proj", torch.cat([x, dec.cls_emb.expand(b, -1, -1)], dim=1))
            for j, blk in enumerate(dec.blocks):
                x = self._block(f"dec.{j}", blk, x)
            nrm = dec.decoder_norm
            x = self._q("dec.norm", F.layer_norm(x, (cfg.d_model,), nrm.weight, nrm.bias, nrm.eps))
            n = gh * gw
            pp = self._q("dec.proj_patch", x[:, :n] @ self._w(dec.proj_patch))
            cc = self._q("dec.proj_classes", x[:, n:] @ self._w(dec.proj_classes))
            m = self._q("dec.mask", pp @ cc.transpose(-2, -1))
            mn = dec.mask_norm
            m = self._q("dec.mask_norm", F.layer_norm(m, (cfg.n_cls,), mn.weight, mn.bias, mn.eps))
        return m.transpose(1, 2).reshape(b, cfg.n_cls, gh, gw)

    @torch.no_grad()
    def predict(self, images: np.ndarray) -> np.ndarray:
        """(B, H, W, 3) u8 -> labels (B, H, W) u8 (argmax on the grid, nearest upsampling)."""
        px = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2)
        lab = self.forward(px).argmax(1)
        p = self.cfg.patch_size
        return lab.repeat_interleave(p, 1).repeat_interleave(p, 2).to(torch.uint8).numpy()

