"""Export: a calibrated :class:`QuantSegmenter` -> an integer-only :class:`QuantizedCheckpoint`.

Every float scale lives here and nowhere after: activations get per-tensor scales
``s = amax / (2^(b-1) - 1)`` from the recorded ranges, weights per-output-channel scales
(:func:`~iseg.model.quant.weight_scale`, the same function the fake quantizer uses), and every
scale ratio becomes a dyadic ``(m, e)`` (``spec/numerics.md`` §2). The folds:

- input normalisation -> patch-embed weights and bias over raw ``u - 128`` (input scale 1);
- LayerNorm gamma -> per-channel ``m = dyadic(gamma·sqrt(C)/2^30/s_out)``, beta -> ``o = round(beta/s_out·2^e)``;
- ``1/sqrt(d_head)`` -> the ``q·kᵀ`` requant; the Shiftmax ``x0`` from the score scale;
- residual adds -> ``(ma, mb, e)`` with one shared ``e``;
- GELU -> ``gelu_consts`` of the ``fc1`` output scale;
- the decoder L2 norm is absent from the graph (removed, as in I-Segmenter).

Proofs made here (an :class:`IsegError` names the layer otherwise): every linear accumulator
satisfies ``|acc| <= K·128·127 + max|b| < 2^31`` (int8 weights are clamped to ±127), and every
Shiftmax row sum ``S <= N·|x0|·2^16 < 2^(31+K)`` for ``precise`` (``ivit`` clamps ``S`` to
``2^31 - 1``, so ``f >= 1`` holds by construction).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from iseg import numerics as nx
from iseg.checkpoint import (
    POS_BITS,
    ModelSpec,
    QuantizedCheckpoint,
    check_pv_accumulator,
    check_shiftmax,
    default_class_colors,
    default_class_names,
)
from iseg.errors import IsegError

from .quant import QuantSegmenter, patch_embed_float, tensor_scale, weight_scale

__all__ = ["export", "clipped_warning", "model_spec", "rq_const", "add_const", "ln_const", "check_accumulator",
           "check_shiftmax", "check_pv_accumulator"]

# The smallest ratio numerics.dyadic represents (2^30 <= |m|, e <= 62: 2^-32). Below it |z·r| < 1/2 for every
# |z| < 2^31, so the product rounds to zero and m = 0 is the requant (the output is 0, or the LayerNorm's offset).
# It was 2^-61: a ratio in [2^-61, 2^-32) (a LayerNorm gamma below ~7e-4) was refused as "far out of range",
# while a smaller one exported.
_MIN_RATIO = 2.0 ** -32


def model_spec(qm: QuantSegmenter) -> ModelSpec:
    """The checkpoint hyper-parameters of a quantized FP model."""
    cfg = qm.cfg
    mask = cfg.decoder == "mask_transformer"
    names = tuple(cfg.class_names) or default_class_names(cfg.n_cls)
    colors = tuple(cfg.class_colors) or default_class_colors(cfg.n_cls)
    spec = ModelSpec(
        dim=cfg.d_model, heads=cfg.n_heads, layers=cfg.n_layers, mlp_dim=cfg.d_ff, patch=cfg.patch_size,
        image=tuple(cfg.image_size), n_cls=cfg.n_cls, decoder="mask" if mask else "linear",
        dec_dim=cfg.d_model if mask else 0, dec_heads=cfg.decoder_heads if mask else 0,
        dec_layers=cfg.dec_n_layers if mask else 2, dec_mlp_dim=cfg.d_ff if mask else 0,
        softmax=qm.softmax, gelu=qm.gelu, class_names=names, class_colors=colors)
    spec.validate()
    return spec


def _dyadic(ratio: float) -> tuple[int, int]:
    """§2 dyadic, with ratios too small for ``e <= 62`` mapped to ``m = 0`` (the output is then 0 or the offset)."""
    if abs(ratio) < _MIN_RATIO:
        return 0, 1
    return nx.dyadic(float(ratio))


def _pack(vals: list[int]) -> int | list[int]:
    return vals[0] if len(vals) == 1 else vals


def rq_const(ratios: Any) -> dict[str, Any]:
    """Per-channel (vector) or per-tensor (scalar) requant ``{m, e, o=0}`` of real ratios ``s_in/s_out``."""
    arr = np.atleast_1d(np.asarray(ratios, dtype=np.float64))
    me = [_dyadic(float(r)) for r in arr]
    c = {"m": [m for m, _ in me], "e": [e for _, e in me], "o": 0}
    if np.ndim(ratios) == 0:
        c["m"], c["e"] = c["m"][0], c["e"][0]
    return c


def ln_const(gamma: torch.Tensor, beta: torch.Tensor, s_out: float, bits: int = 8,
             clipped: list[int] | None = None) -> dict[str, Any]:
    """I-LayerNorm requant: gamma·sqrt(C)/2^30/s_out -> per-channel (m, e); beta/s_out·2^e -> o.

    The spec bounds ``|o| < 2^61``. A channel whose gamma spans few output steps gets a large e
    (e >= 54 when gamma·sqrt(C)/s_out < 128) and then ``beta/s_out·2^e`` can exceed that bound.
    Its offset is clipped to ``±(2^61 - 1)``; that is exact when the clipped offset still
    saturates the output for every input (``|o|/2^e - max|gamma term| >= 2^(b-1)``), otherwise
    the channel index is appended to ``clipped`` so the exporter can report it.
    """
    c = gamma.numel()
    ms, es, os_ = [], [], []
    lim = (1 << 61) - 1
    for ch, (g, b) in enumerate(zip(gamma.detach().double().tolist(), beta.detach().double().tolist(), strict=True)):
        ratio = g * math.sqrt(c) / (1 << 30) / s_out
        m, e = _dyadic(ratio)
        o = int(round(b / s_out * (1 << e)))
        if abs(o) > lim:
            o = lim if o > 0 else -lim
            if clipped is not None and lim / (1 << e) - abs(ratio) * (1 << 30) < (1 << (bits - 1)):
                clipped.append(ch)
        ms.append(m)
        es.append(e)
        os_.append(o)
    return {"m": ms, "e": es, "o": os_}


def add_const(s_a: float, s_b: float, s_out: float) -> dict[str, int]:
    """Integer add ``(ma, mb, e)``: one shared e, the larger multiplier in [2^29, 2^30]."""
    ra, rb = s_a / s_out, s_b / s_out
    big = max(ra, rb)
    if not (big > 0 and math.isfinite(big)):
        raise IsegError(f"residual add with scales {s_a}, {s_b} -> {s_out} has no finite ratio")
    e = int(min(46, max(1, 30 - math.ceil(math.log2(big)))))
    ma, mb = int(round(ra * (1 << e))), int(round(rb * (1 << e)))
    if max(ma, mb) >= 1 << 31:
        raise IsegError(f"residual add ratio {big:.4g} is too large for an int32 multiplier")
    return {"ma": ma, "mb": mb, "e": e}


def check_accumulator(name: str, k: int, bias: np.ndarray | None, a_max: int = 128) -> int:
    """Prove ``|acc| < 2^31`` from the shapes: ``K·a_max·127 + max|b|``; returns the bound."""
    bound = k * a_max * 127 + (int(np.abs(bias.astype(np.int64)).max()) if bias is not None and bias.size else 0)
    if bound >= 1 << 31:
        raise IsegError(f"{name}: accumulator bound {bound} (K = {k}) does not fit in int32")
    return bound


def clipped_warning(ckpt: QuantizedCheckpoint) -> str | None:
    """The one line a quantize / QAT run prints when a LayerNorm offset had to be clipped inexactly (ln_const: a
    channel whose gamma spans less than an output step gets e = 62, where |beta / s_out| >= 1/2 passes the
    spec's |o| < 2^61): that channel's integer output then saturates short of the float's. The checkpoint keeps
    the list in info.ln_offsets_clipped; before, nothing on the command line said so."""
    clipped = ckpt.info.get("ln_offsets_clipped") or {}
    if not clipped:
        return None
    where = "; ".join(f"{k} channel(s) {', '.join(map(str, v[:8]))}{' ...' if len(v) > 8 else ''}"
                      for k, v in clipped.items())
    return (f"warning: LayerNorm offsets clipped to the spec's |o| < 2^61, so those channels' outputs saturate short "
            f"of the float model's: {where} (a gamma far below beta; info.ln_offsets_clipped)")


class _Exporter:
    """Collects tensors and constants while walking the model in graph order."""

    def __init__(self, qm: QuantSegmenter, spec: ModelSpec) -> None:
        self.qm, self.spec = qm, spec
        self.s = qm.scales()
        self.tensors: dict[str, np.ndarray] = {}
        self.consts: dict[str, dict[str, Any]] = {}
        self.clipped: dict[str, list[int]] = {}  # LayerNorm channels whose beta offset was clipped inexactly

    def linear(self, key: str, w_kn: torch.Tensor, bias: torch.Tensor | None, s_in: float, s_out: float) -> None:
        """int8 weight (K, N) per output channel, int32 bias at s_in·s_w, per-channel requant to s_out."""
        w = w_kn.detach().double()
        s_w = weight_scale(w)
        self.tensors[f"{key}.weight"] = torch.clamp(torch.round(w / s_w), -127, 127).numpy().astype(np.int8)
        b = None
        if bias is not None:
            b = torch.round(bias.detach().double() / (s_in * s_w)).numpy()
            if np.abs(b).max(initial=0) >= 1 << 31:
                raise IsegError(f"{key}: bias does not fit in int32 at scale s_in·s_w")
            b = b.astype(np.int32)
            self.tensors[f"{key}.bias"] = b
        check_accumulator(key, w.shape[0], b)
        self.consts[f"{key}.rq"] = rq_const((s_in * s_w / s_out).numpy())

    def ln(self, key: str, norm: torch.nn.LayerNorm, out: str, bits: int = 8) -> None:
        clipped: list[int] = []
        self.consts[key] = ln_const(norm.weight, norm.bias, self.s[out], bits, clipped)
        if clipped:
            self.clipped[key] = clipped

    def block(self, p: str, blk: torch.nn.Module, x_in: str, rows: int) -> str:
        s, qm = self.s, self.qm
        d = blk.attn.qkv.in_features
        dh = d // blk.attn.heads
        self.ln(f"{p}.ln1", blk.norm1, f"{p}.ln1")
        self.linear(f"{p}.qkv", blk.attn.qkv.weight.t(), blk.attn.qkv.bias, s[f"{p}.ln1"], s[f"{p}.qkv"])
        s_qkv, s_sc = s[f"{p}.qkv"], s[f"{p}.attn.qk"]
        self.consts[f"{p}.attn.qk.rq"] = rq_const(s_qkv * s_qkv * dh ** -0.5 / s_sc)
        x0 = nx.shiftmax_x0(s_sc, qm.softmax)
        if x0 >= 0 or x0 < -(1 << 31):
            raise IsegError(f"{p}: Shiftmax x0 = {x0} is not a negative int32 (score scale {s_sc:.3g})")
        check_shiftmax(f"{p}.attn", rows, x0, qm.softmax)
        self.consts[f"{p}.attn.softmax"] = {"x0": x0}
        check_pv_accumulator(f"{p}.attn.pv", rows, x0, qm.softmax)
        # z = (P·V) << r is on the u15 grid for every variant (precise8 shifts its u8 mantissas back by r)
        self.consts[f"{p}.attn.pv.rq"] = rq_const(2.0 ** -nx.P_GRID_BITS * s_qkv / s[f"{p}.attn"])
        self.linear(f"{p}.proj", blk.attn.proj.weight.t(), blk.attn.proj.bias, s[f"{p}.attn"], s[f"{p}.proj"])
        self.consts[f"{p}.add1"] = add_const(s[x_in], s[f"{p}.proj"], s[f"{p}.add1"])
        self.ln(f"{p}.ln2", blk.norm2, f"{p}.ln2")
        self.linear(f"{p}.fc1", blk.mlp.fc1.weight.t(), blk.mlp.fc1.bias, s[f"{p}.ln2"], s[f"{p}.fc1"])
        try:
            g = nx.gelu_consts(s[f"{p}.fc1"], qm.gelu, lam=qm.lam)
        except ValueError as exc:
            raise IsegError(f"{p}.gelu: {exc}") from None
        self.consts[f"{p}.gelu"] = {"x0": g.x0, "n": g.n, "k": g.k, "L": g.L, "em": g.em}
        self.consts[f"{p}.gelu.rq"] = rq_const(s[f"{p}.fc1"] * 2.0 ** -7 / s[f"{p}.gelu"])
        self.linear(f"{p}.fc2", blk.mlp.fc2.weight.t(), blk.mlp.fc2.bias, s[f"{p}.gelu"], s[f"{p}.fc2"])
        self.consts[f"{p}.add2"] = add_const(s[f"{p}.add1"], s[f"{p}.fc2"], s[f"{p}.add2"])
        return f"{p}.add2"

    def run(self) -> None:
        qm, s, spec = self.qm, self.s, self.spec
        fp, cfg = qm.fp, qm.cfg
        enc = fp.encoder
        w_pe, b_pe = patch_embed_float(fp)
        self.linear("patch_embed", w_pe, b_pe, 1.0, s["patch_embed"])  # input: raw u - 128, scale 1
        s_pe = s["patch_embed"]
        self.tensors["cls_token"] = _int16(enc.cls_token[0], s_pe)
        pos = enc.pos_embed[0].detach().double()
        s_pos = float(tensor_scale(pos, POS_BITS))
        self.tensors["pos_embed"] = _int_bits(pos, s_pos, POS_BITS)
        self.consts["embed.add"] = add_const(s_pe, s_pos, s["embed"])
        x = "embed"
        n = spec.n_patches
        for i, blk in enumerate(enc.blocks):
            x = self.block(f"enc.{i}", blk, x, n + 1)
        self.ln("enc.norm", enc.norm, "enc.norm")
        dec = fp.decoder
        if cfg.decoder == "linear":
            self.linear("dec.head", dec.head.weight.t(), dec.head.bias, s["enc.norm"], s["dec.head"])
            return
        self.linear("dec.proj", dec.proj_dec.weight.t(), dec.proj_dec.bias, s["enc.norm"], s["dec.proj"])
        self.tensors["dec.cls_emb"] = _int16(dec.cls_emb[0], s["dec.proj"])
        x = "dec.proj"
        for j, blk in enumerate(dec.blocks):
            x = self.block(f"dec.{j}", blk, x, n + cfg.n_cls)
        self.ln("dec.norm", dec.decoder_norm, "dec.norm")
        self.linear("dec.proj_patch", dec.proj_patch, None, s["dec.norm"], s["dec.proj_patch"])
        self.linear("dec.proj_classes", dec.proj_classes, None, s["dec.norm"], s["dec.proj_classes"])
        check_accumulator("dec.mask", cfg.d_model, None)
        self.consts["dec.mask.rq"] = rq_const(s["dec.proj_patch"] * s["dec.proj_classes"] / s["dec.mask"])
        self.ln("dec.mask_norm", dec.mask_norm, "dec.mask_norm", bits=16)


def _int_bits(t: torch.Tensor, scale: float, bits: int) -> np.ndarray:
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    return torch.clamp(torch.round(t.detach().double() / scale), lo, hi).numpy().astype(f"int{bits}")


def _int16(t: torch.Tensor, scale: float) -> np.ndarray:
    return _int_bits(t, scale, 16)


def export(qm: QuantSegmenter, info: dict[str, Any] | None = None) -> QuantizedCheckpoint:
    """The integer checkpoint of a calibrated (or QAT-trained) model; validated against its layout."""
    ranges = qm.ranges()
    # NaN / inf first: a NaN range also fails `v > 0`, and "no recorded range" would send the
    # user looking at the calibration images instead of at the model
    bad = [k for k, v in ranges.items() if not math.isfinite(v)]
    if bad:
        raise IsegError(f"the FP model produced non-finite activations (NaN or inf) at {bad[0]!r}: "
                        f"its weights or inputs are not finite")
    dead = [k for k, v in ranges.items() if not v > 0]
    if dead:
        raise IsegError(f"activation {dead[0]!r} has no recorded range: calibrate on at least one image first")
    spec = model_spec(qm)
    ex = _Exporter(qm, spec)
    with torch.no_grad():
        ex.run()
    meta = {"source": "iseg.model.export", "gelu_lambda": qm.lam, "ranges": {k: round(v, 6) for k, v in ranges.items()}}
    if ex.clipped:
        meta["ln_offsets_clipped"] = ex.clipped
    meta.update(info or {})
    ckpt = QuantizedCheckpoint(spec, ex.tensors, ex.consts, meta)
    try:
        ckpt.validate()
    except IsegError as exc:
        raise IsegError(f"export produced an invalid checkpoint: {exc}") from None
    return ckpt
