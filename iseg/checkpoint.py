"""The quantized checkpoint: one ``.safetensors`` file holding integers only.

Layout (format ``iseg-quantized``, version 1; the full table is ``docs/checkpoint.md``):

* tensors: int8 weights ``(K, N)`` (used as ``x @ W``), int32 biases, int16 class embeddings, int8 pos_embed;
* metadata key ``iseg``: one JSON object with the hyper-parameters (:class:`ModelSpec`), class
  names and colours, operator variants, and every integer constant (``consts``: requant
  ``m/e/o``, add ``ma/mb/e``, Shiftmax ``x0``, GELU ``x0/n/k/L/em``).

:func:`expected_layout` derives, from the hyper-parameters alone, the name, shape and dtype of
every tensor and the name and kind of every constant. The writer and the reader both check
against it, so a checkpoint is either complete and in range or rejected with one line naming
the first thing wrong.
"""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from iseg import numerics as nx
from iseg.errors import IsegError
from iseg.imageio import atomic_write

FORMAT = "iseg-quantized"
VERSION = 1
META_KEY = "iseg"

DECODERS = ("mask", "linear")
SOFTMAX_VARIANTS = tuple(nx.SHIFTMAX_VARIANTS)  # the one table: iseg.numerics
GELU_VARIANTS = ("lambda", "shift")


@dataclass(frozen=True)
class ModelSpec:
    """Hyper-parameters of an I-Segmenter; everything else in the checkpoint follows from them."""

    dim: int
    heads: int
    layers: int
    mlp_dim: int
    patch: int
    image: tuple[int, int]  # (H, W), multiples of patch
    n_cls: int
    decoder: str = "mask"  # "mask" | "linear"
    dec_dim: int = 0  # mask decoder only
    dec_heads: int = 0
    dec_layers: int = 2
    dec_mlp_dim: int = 0
    softmax: str = "precise"
    gelu: str = "lambda"
    class_names: tuple[str, ...] = ()
    class_colors: tuple[tuple[int, int, int], ...] = ()

    @property
    def grid(self) -> tuple[int, int]:
        return self.image[0] // self.patch, self.image[1] // self.patch

    @property
    def n_patches(self) -> int:
        gh, gw = self.grid
        return gh * gw

    def validate(self) -> None:
        """Raise IsegError naming the first inconsistent hyper-parameter.

        Types are checked strictly (an int is not a bool or a float, a name is a str): the spec
        comes from a checkpoint's JSON, and a value of the wrong type would otherwise surface
        later as a traceback in ``iseg info`` or as a generated project the host refuses.
        """
        ints = ("dim", "heads", "layers", "mlp_dim", "patch", "n_cls")
        for k in ints:
            v = getattr(self, k)
            if not _is_int(v) or v < 1:
                raise IsegError(f"model.{k} must be a positive integer, got {v!r}")
        if self.dim % self.heads:
            raise IsegError(f"model.dim {self.dim} is not divisible by model.heads {self.heads}")
        if not isinstance(self.image, tuple | list) or len(self.image) != 2 or any(
                not _is_int(s) or s < 1 for s in self.image):
            raise IsegError(f"model.image must be [H, W] positive integers, got {self.image!r}")
        if self.image[0] % self.patch or self.image[1] % self.patch:
            raise IsegError(f"model.image {self.image[0]}x{self.image[1]} is not a multiple of "
                            f"patch {self.patch}")
        if self.n_cls > 256:
            raise IsegError(f"model.n_cls {self.n_cls} exceeds 256 (labels are u8)")
        if not isinstance(self.decoder, str) or self.decoder not in DECODERS:
            raise IsegError(f"model.decoder must be one of {DECODERS}, got {self.decoder!r}")
        for k in ("dec_dim", "dec_heads", "dec_layers", "dec_mlp_dim"):
            v = getattr(self, k)
            if not _is_int(v) or v < 0:
                raise IsegError(f"model.{k} must be a non-negative integer, got {v!r}")
        if self.decoder == "mask":
            for k in ("dec_dim", "dec_heads", "dec_layers", "dec_mlp_dim"):
                v = getattr(self, k)
                if v < 1:
                    raise IsegError(f"model.{k} must be a positive integer for the mask decoder, got {v!r}")
            if self.dec_dim % self.dec_heads:
                raise IsegError(f"model.dec_dim {self.dec_dim} is not divisible by model.dec_heads "
                                f"{self.dec_heads}")
        if not isinstance(self.softmax, str) or self.softmax not in SOFTMAX_VARIANTS:
            raise IsegError(f"model.softmax must be one of {SOFTMAX_VARIANTS}, got {self.softmax!r}")
        if not isinstance(self.gelu, str) or self.gelu not in GELU_VARIANTS:
            raise IsegError(f"model.gelu must be one of {GELU_VARIANTS}, got {self.gelu!r}")
        if not isinstance(self.class_names, tuple | list):
            raise IsegError(f"model.class_names must be a list of n_cls = {self.n_cls} strings, "
                            f"got {self.class_names!r}")
        if len(self.class_names) != self.n_cls:
            raise IsegError(f"model.class_names has {len(self.class_names)} entries, expected n_cls = {self.n_cls}")
        for i, name in enumerate(self.class_names):
            if not isinstance(name, str):
                raise IsegError(f"model.class_names[{i}] must be a string, got {name!r}")
        if not isinstance(self.class_colors, tuple | list) or len(self.class_colors) != self.n_cls:
            raise IsegError(f"model.class_colors must be {self.n_cls} [r, g, b] triples of integers in 0..255")
        for i, c in enumerate(self.class_colors):
            if not isinstance(c, tuple | list) or len(c) != 3 or any(not _is_int(v) or not 0 <= v <= 255 for v in c):
                shown = list(c) if isinstance(c, tuple) else c
                raise IsegError(f"model.class_colors[{i}] must be an [r, g, b] triple of integers in 0..255, "
                                f"got {shown!r}")

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["image"] = list(self.image)
        d["class_names"] = list(self.class_names)
        d["class_colors"] = [list(c) for c in self.class_colors]
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> ModelSpec:
        """The spec of a checkpoint's ``model`` object; IsegError (no path) on anything malformed."""
        if not isinstance(d, dict):
            raise IsegError(f"checkpoint metadata: 'model' must be an object, got {type(d).__name__}")
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(d) - known)
        if unknown:
            raise IsegError(f"checkpoint metadata: unknown model key {unknown[0]!r}")
        missing = [k for k in ("dim", "heads", "layers", "mlp_dim", "patch", "image", "n_cls") if k not in d]
        if missing:
            raise IsegError(f"checkpoint metadata: missing model key {missing[0]!r}")
        d = dict(d)
        # lists become tuples (the spec is frozen and hashable); anything else is left as it is
        # for validate() to name
        d["image"] = tuple(d["image"]) if isinstance(d["image"], list) else d["image"]
        names = d.get("class_names", ())
        d["class_names"] = tuple(names) if isinstance(names, list) else names
        colors = d.get("class_colors", ())
        if isinstance(colors, list):
            colors = tuple(tuple(c) if isinstance(c, list) else c for c in colors)
        d["class_colors"] = colors
        spec = cls(**d)
        spec.validate()
        return spec


def _is_int(v: Any) -> bool:
    """A JSON integer: ``True`` and ``1.0`` are not (both would pass ``int()`` silently)."""
    return isinstance(v, int) and not isinstance(v, bool)


def default_class_names(n: int) -> tuple[str, ...]:
    return tuple(f"class{i}" for i in range(n))


def default_class_colors(n: int) -> tuple[tuple[int, int, int], ...]:
    """A fixed, well-spread palette (golden-angle hues) so every class gets a distinct colour."""
    out = []
    for i in range(n):
        h = (i * 0.618033988749895) % 1.0
        r, g, b = _hsv(h, 0.75, 0.95 if i % 2 else 0.7)
        out.append((r, g, b))
    return tuple(out)


def _hsv(h: float, s: float, v: float) -> tuple[int, int, int]:
    i = int(h * 6) % 6
    f = h * 6 - int(h * 6)
    p, q, t = v * (1 - s), v * (1 - f * s), v * (1 - (1 - f) * s)
    rgb = [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)][i]
    return tuple(int(round(c * 255)) for c in rgb)  # type: ignore[return-value]


# --------------------------------------------------------------------------------------------
# The layout every checkpoint of a given ModelSpec must have
# --------------------------------------------------------------------------------------------
# Constant kinds and the keys each holds.
CONST_KINDS: dict[str, tuple[str, ...]] = {
    "rq": ("m", "e", "o"),  # requant; each a scalar or a per-channel list
    "add": ("ma", "mb", "e"),
    "softmax": ("x0",),
    "gelu": ("x0", "n", "k", "L", "em"),
}


@dataclass(frozen=True)
class ConstSpec:
    kind: str
    channels: int = 1  # per-channel length for "rq"; 1 = per-tensor (scalar)


@dataclass
class Layout:
    tensors: dict[str, tuple[tuple[int, ...], str]] = field(default_factory=dict)  # name -> (shape, dtype)
    consts: dict[str, ConstSpec] = field(default_factory=dict)


def _block_layout(lay: Layout, p: str, d: int, f: int) -> None:
    lay.consts[f"{p}.ln1"] = ConstSpec("rq", d)
    lay.tensors[f"{p}.qkv.weight"] = ((d, 3 * d), "int8")
    lay.tensors[f"{p}.qkv.bias"] = ((3 * d,), "int32")
    lay.consts[f"{p}.qkv.rq"] = ConstSpec("rq", 3 * d)
    lay.consts[f"{p}.attn.qk.rq"] = ConstSpec("rq")
    lay.consts[f"{p}.attn.softmax"] = ConstSpec("softmax")
    lay.consts[f"{p}.attn.pv.rq"] = ConstSpec("rq")
    lay.tensors[f"{p}.proj.weight"] = ((d, d), "int8")
    lay.tensors[f"{p}.proj.bias"] = ((d,), "int32")
    lay.consts[f"{p}.proj.rq"] = ConstSpec("rq", d)
    lay.consts[f"{p}.add1"] = ConstSpec("add")
    lay.consts[f"{p}.ln2"] = ConstSpec("rq", d)
    lay.tensors[f"{p}.fc1.weight"] = ((d, f), "int8")
    lay.tensors[f"{p}.fc1.bias"] = ((f,), "int32")
    lay.consts[f"{p}.fc1.rq"] = ConstSpec("rq", f)
    lay.consts[f"{p}.gelu"] = ConstSpec("gelu")
    lay.consts[f"{p}.gelu.rq"] = ConstSpec("rq")
    lay.tensors[f"{p}.fc2.weight"] = ((f, d), "int8")
    lay.tensors[f"{p}.fc2.bias"] = ((d,), "int32")
    lay.consts[f"{p}.fc2.rq"] = ConstSpec("rq", d)
    lay.consts[f"{p}.add2"] = ConstSpec("add")


# The position embedding is stored with its own per-tensor scale and rescaled by the embedding
# add (numerics §5.4), so 8 bits suffice: int16 made it the largest non-int8 tensor of small
# models (docs/numerics.md, docs/quantization.md).
POS_BITS = 8


def expected_layout(spec: ModelSpec) -> Layout:
    """Every tensor (name, shape, dtype) and constant (name, kind) a checkpoint of ``spec`` holds."""
    lay = Layout()
    d, p = spec.dim, spec.patch
    n = spec.n_patches
    lay.tensors["patch_embed.weight"] = ((3 * p * p, d), "int8")  # k = (py*P + px)*3 + c
    lay.tensors["patch_embed.bias"] = ((d,), "int32")
    lay.consts["patch_embed.rq"] = ConstSpec("rq", d)
    lay.tensors["cls_token"] = ((1, d), "int16")
    lay.tensors["pos_embed"] = ((n + 1, d), f"int{POS_BITS}")
    lay.consts["embed.add"] = ConstSpec("add")
    for i in range(spec.layers):
        _block_layout(lay, f"enc.{i}", d, spec.mlp_dim)
    lay.consts["enc.norm"] = ConstSpec("rq", d)
    if spec.decoder == "linear":
        lay.tensors["dec.head.weight"] = ((d, spec.n_cls), "int8")
        lay.tensors["dec.head.bias"] = ((spec.n_cls,), "int32")
        lay.consts["dec.head.rq"] = ConstSpec("rq", spec.n_cls)
        return lay
    dd = spec.dec_dim
    lay.tensors["dec.proj.weight"] = ((d, dd), "int8")
    lay.tensors["dec.proj.bias"] = ((dd,), "int32")
    lay.consts["dec.proj.rq"] = ConstSpec("rq", dd)
    lay.tensors["dec.cls_emb"] = ((spec.n_cls, dd), "int16")
    for j in range(spec.dec_layers):
        _block_layout(lay, f"dec.{j}", dd, spec.dec_mlp_dim)
    lay.consts["dec.norm"] = ConstSpec("rq", dd)
    lay.tensors["dec.proj_patch.weight"] = ((dd, dd), "int8")
    lay.consts["dec.proj_patch.rq"] = ConstSpec("rq", dd)
    lay.tensors["dec.proj_classes.weight"] = ((dd, dd), "int8")
    lay.consts["dec.proj_classes.rq"] = ConstSpec("rq", dd)
    lay.consts["dec.mask.rq"] = ConstSpec("rq")
    lay.consts["dec.mask_norm"] = ConstSpec("rq", spec.n_cls)
    return lay


# --------------------------------------------------------------------------------------------
# Constants: validation of ranges
# --------------------------------------------------------------------------------------------
_I32 = 1 << 31  # int32 range: -_I32 <= v < _I32
# GELU field bounds (numerics.md §4, §5.2; hls/gelu.h GeluParams: em int64, x0 / n / k / L int32):
# x0 is a negative int32 (shexp's n * x0 and ((r >> 1) - x0) << n stay inside int64 for n <= 30);
# hls/gelu.h computes L - clamp(x, -L, L) in int32 for an int8 x, so L + 128 must fit an int32;
# em = shexp(-(L << k), x0, n) is below |x0| * 2^(n+1) (numerics.md §4).
GELU_N_MAX = 30
GELU_K_MAX = 8
GELU_L_MAX = (1 << 31) - 1 - 128


def _as_list(v: Any, n: int, what: str) -> list[int]:
    vals = v if isinstance(v, list) else [v]
    if any(not isinstance(x, int) or isinstance(x, bool) for x in vals):
        raise IsegError(f"constant {what} must hold integers")
    if len(vals) not in (1, n):
        raise IsegError(f"constant {what} has {len(vals)} values, expected 1 or {n}")
    return vals


def validate_const(name: str, cs: ConstSpec, value: Any) -> None:
    """Raise IsegError naming the constant whose value is missing or out of range."""
    if not isinstance(value, dict):
        raise IsegError(f"constant {name!r} must be an object with keys {CONST_KINDS[cs.kind]}")
    keys = CONST_KINDS[cs.kind]
    for k in keys:
        if k not in value and not (cs.kind == "rq" and k == "o"):
            raise IsegError(f"constant {name!r} is missing {k!r}")
    extra = sorted(set(value) - set(keys))
    if extra:
        raise IsegError(f"constant {name!r} has unknown key {extra[0]!r}")
    if cs.kind == "rq":
        ms = _as_list(value["m"], cs.channels, f"{name}.m")
        es = _as_list(value["e"], cs.channels, f"{name}.e")
        os_ = _as_list(value.get("o", 0), cs.channels, f"{name}.o")
        for m in ms:
            if m != 0 and not (1 << 30) <= abs(m) < (1 << 31):
                raise IsegError(f"constant {name}.m = {m} outside 2^30 <= |m| < 2^31")
        for e in es:
            if not 1 <= e <= 62:
                raise IsegError(f"constant {name}.e = {e} outside [1, 62]")
        for o in os_:
            if abs(o) >= 1 << 61:
                raise IsegError(f"constant {name}.o = {o} outside |o| < 2^61")
    elif cs.kind == "add":
        for k in ("ma", "mb"):
            v = value[k]
            if not _is_int(v) or not -_I32 <= v < _I32:
                raise IsegError(f"constant {name}.{k} = {v!r} is not an int32")
        if not _is_int(value["e"]) or not 1 <= value["e"] <= 46:
            raise IsegError(f"constant {name}.e = {value['e']!r} outside [1, 46]")
    elif cs.kind == "softmax":
        x0 = value["x0"]
        if not _is_int(x0) or not -_I32 <= x0 < 0:
            raise IsegError(f"constant {name}.x0 = {x0!r} must be a negative int32")
    elif cs.kind == "gelu":
        _validate_gelu(name, value)


def _validate_gelu(name: str, value: dict[str, Any]) -> None:
    """Every GELU constant inside the range the numpy reference and the HLS engine compute with."""
    for k in CONST_KINDS["gelu"]:
        if not _is_int(value[k]):
            raise IsegError(f"constant {name}.{k} = {value[k]!r} must be an integer")
    x0, n, k, big_l, em = (value[key] for key in ("x0", "n", "k", "L", "em"))
    if not -_I32 <= x0 < 0:
        raise IsegError(f"constant {name}.x0 = {x0} must be a negative int32 (-2^31 <= x0 < 0)")
    if not 1 <= n <= GELU_N_MAX:
        raise IsegError(f"constant {name}.n = {n} outside [1, {GELU_N_MAX}]")
    if not 0 <= k <= GELU_K_MAX:
        raise IsegError(f"constant {name}.k = {k} outside [0, {GELU_K_MAX}]")
    if not 0 <= big_l <= GELU_L_MAX:
        raise IsegError(f"constant {name}.L = {big_l} outside [0, 2^31 - 129] (the HLS computes L - x in int32)")
    if not 0 <= em < (-x0) << (n + 1):
        raise IsegError(f"constant {name}.em = {em} outside [0, |x0| * 2^(n+1)) (the shift exponential's range)")


def _check_gelu_exp(name: str, value: dict[str, Any], variant: str) -> None:
    """The sigmoid ``sig = (e * f) >> 24`` stays in [0, 127] only while every exp ``e`` is below 2^31.

    Once ``S = min(e + em, 2^31 - 1)`` clamps, ``f = 1`` and ``sig = e >> 24`` (numerics.md §5.2): a
    larger ``e`` overflows the reference's 31-bit requant input and the HLS's 8-bit sig. The largest
    ``e`` comes from the largest exp argument an int8 input can reach: 0 for ``shift`` (``x = M``),
    ``-((L - min(L, 127)) << k)`` for ``lambda``.
    """
    x0, n, k, big_l = value["x0"], value["n"], value["k"], value["L"]
    arg = 0 if variant == "shift" else -((big_l - min(big_l, 127)) << k)
    e_max = int(nx.shexp(np.int64(arg), x0, n))
    if e_max >= _I32:
        raise IsegError(f"constant {name}: x0 = {x0}, n = {n} (L = {big_l}, k = {k}) let the GELU exp reach "
                        f"{e_max} >= 2^31; the sigmoid would leave [0, 127]")


def check_shiftmax(name: str, n_keys: int, x0: int, variant: str) -> None:
    """Prove the Shiftmax row sum ``S < 2^(31+K)`` (so ``f >= 1``) from ``N`` and ``x0``: the exporter's proof, and
    the reader's again (a file whose x0 breaks it gave every probability 0, silently)."""
    v = nx.SHIFTMAX_VARIANTS[variant]
    if v.clamp_sum:  # ivit: S is clamped to 2^31 - 1 < 2^31
        return
    bound = nx.shiftmax_sum_bound(n_keys, x0)
    if bound >= 1 << (31 + v.K):
        raise IsegError(f"{name}: Shiftmax row sum bound {bound} (N = {n_keys}, x0 = {x0}) reaches 2^{31 + v.K}; "
                        f"the score scale is too fine for {variant!r}")


def check_pv_accumulator(name: str, n_keys: int, x0: int, variant: str) -> int:
    """Prove ``|P·V| < 2^31`` before and after the row shift; returns the bound ``128 · Σ p·2^r``.

    With i8 values (``|v| <= 128``) the shifted ``|z| = |Σ p·v|·2^r <= 128 · Σ p·2^r``, and the array's
    accumulator before the shift, ``|Σ p·v| <= 128 · Σ p``, is no larger (``r >= 0``); ``Σ p·2^r`` is
    :func:`iseg.numerics.shiftmax_p_sum_bound` (the u15 grid, every variant).
    """
    bound = nx.shiftmax_p_sum_bound(n_keys, x0, variant) * 128
    if bound >= 1 << 31:
        raise IsegError(f"{name}: P·V accumulator bound {bound} (N = {n_keys}, x0 = {x0}, {variant!r}) "
                        f"does not fit in int32")
    return bound


# --------------------------------------------------------------------------------------------
# The checkpoint object, writer, reader
# --------------------------------------------------------------------------------------------
@dataclass
class QuantizedCheckpoint:
    """A validated quantized model: hyper-parameters, integer tensors, integer constants."""

    spec: ModelSpec
    tensors: dict[str, np.ndarray]
    consts: dict[str, dict[str, Any]]
    info: dict[str, Any] = field(default_factory=dict)  # free-form provenance (calibration, source)

    def validate(self) -> None:
        """Raise IsegError naming the first tensor or constant that does not fit the spec."""
        self.spec.validate()
        # A layer count far beyond the file (a corrupt "layers": 2^40) must be named before
        # expected_layout lists every block: look for the first missing block, never past the file.
        blocks = [("enc", self.spec.layers)] + ([("dec", self.spec.dec_layers)] if self.spec.decoder == "mask" else [])
        for prefix, count in blocks:
            for i in range(count):
                if f"{prefix}.{i}.qkv.weight" not in self.tensors:
                    raise IsegError(f"checkpoint is missing tensor '{prefix}.{i}.qkv.weight' "
                                    f"(model.{'layers' if prefix == 'enc' else 'dec_layers'} = {count})")
        lay = expected_layout(self.spec)
        for name, (shape, dtype) in lay.tensors.items():
            if name not in self.tensors:
                raise IsegError(f"checkpoint is missing tensor {name!r}")
            t = self.tensors[name]
            if str(t.dtype) != dtype:
                raise IsegError(f"tensor {name!r} has dtype {t.dtype}, expected {dtype}")
            if tuple(t.shape) != shape:
                raise IsegError(f"tensor {name!r} has shape {tuple(t.shape)}, expected {shape}")
        extra = sorted(set(self.tensors) - set(lay.tensors))
        if extra:
            raise IsegError(f"checkpoint has unexpected tensor {extra[0]!r}")
        self._check_accumulators(lay)
        for name, cs in lay.consts.items():
            if name not in self.consts:
                raise IsegError(f"checkpoint is missing constant {name!r}")
            validate_const(name, cs, self.consts[name])
            if cs.kind == "gelu":
                _check_gelu_exp(name, self.consts[name], self.spec.gelu)
        extra = sorted(set(self.consts) - set(lay.consts))
        if extra:
            raise IsegError(f"checkpoint has unexpected constant {extra[0]!r}")
        keys = {"enc": self.spec.n_patches + 1, "dec": self.spec.n_patches + self.spec.n_cls}
        for prefix, count in blocks:  # the exporter's two attention proofs, on the file's own x0
            for i in range(count):
                p, x0 = f"{prefix}.{i}", self.consts[f"{prefix}.{i}.attn.softmax"]["x0"]
                check_shiftmax(f"{p}.attn", keys[prefix], x0, self.spec.softmax)
                check_pv_accumulator(f"{p}.attn.pv", keys[prefix], x0, self.spec.softmax)

    def _check_accumulators(self, lay: Layout) -> None:
        """Every Linear's ``|x @ W + b| < 2^31`` for int8 inputs (numerics.md §3, the exporter's proof).

        The reference's requant refuses a wider input (an OverflowError deep in ``iseg infer``) and
        the engine's int32 accumulator would wrap, so a file whose weights and biases break the
        bound (``K·128·max|W| + max|b|``) is refused here, naming the layer.
        """
        for name, (shape, _) in lay.tensors.items():
            if not name.endswith(".weight"):
                continue
            w = self.tensors[name]
            w_max = max(-int(w.min()), int(w.max())) if w.size else 0
            b = self.tensors.get(name[: -len(".weight")] + ".bias")
            b_max = max(-int(b.min()), int(b.max())) if b is not None and b.size else 0
            bound = shape[0] * 128 * w_max + b_max
            if bound >= _I32:
                raise IsegError(f"tensor {name!r}: the accumulator can reach {bound} >= 2^31 "
                                f"(K = {shape[0]}, max|W| = {w_max}, max|bias| = {b_max})")

    # convenient typed access -------------------------------------------------------------
    def rq(self, name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(m, e, o) as int64 arrays (shape () for per-tensor, (C,) per-channel)."""
        c = self.consts[name]
        return (np.asarray(c["m"], dtype=np.int64), np.asarray(c["e"], dtype=np.int64),
                np.asarray(c.get("o", 0), dtype=np.int64))

    def metadata(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "version": VERSION,
            "model": self.spec.to_json(),
            "consts": self.consts,
            "info": self.info,
        }

    @property
    def n_params(self) -> int:
        return int(sum(t.size for t in self.tensors.values()))

    @property
    def n_bytes(self) -> int:
        return int(sum(t.nbytes for t in self.tensors.values()))


def save(ckpt: QuantizedCheckpoint, path: str | os.PathLike, *,
         before_rename: Callable[[], None] | None = None) -> None:
    """Validate, then write atomically (temp file in the same folder, then rename).

    ``before_rename`` runs once the temporary file is complete and before it replaces ``path``:
    a command with a second output (``iseg qat --save-fp``) writes it there, so when either
    write fails neither file is replaced. A write that fails (disk full, permissions) is one
    IsegError naming the path, and leaves whatever ``path`` held before.
    """
    from safetensors.numpy import save_file

    ckpt.validate()
    path = Path(path)
    meta = {META_KEY: json.dumps(ckpt.metadata(), sort_keys=True, separators=(",", ":"))}
    tensors = {k: np.ascontiguousarray(v) for k, v in sorted(ckpt.tensors.items())}

    def write(tmp: Path) -> None:
        save_file(tensors, str(tmp), metadata=meta)
        if before_rename is not None:
            before_rename()

    try:
        atomic_write(path, write)
    except OSError as exc:
        raise IsegError(f"{path}: cannot write the checkpoint ({exc.strerror or exc})") from None


def _check_container(path: Path) -> None:
    """Name what is wrong with a file that is not a complete safetensors container."""
    size = path.stat().st_size
    if size < 8:
        raise IsegError(f"{path}: not a safetensors file (only {size} bytes)")
    with open(path, "rb") as fh:
        (n,) = struct.unpack("<Q", fh.read(8))
        first = fh.read(1)
        if first != b"{" or n > 100_000_000:
            raise IsegError(f"{path}: not a safetensors file (no JSON header)")
        if n > size - 8:
            raise IsegError(f"{path}: truncated: the header needs {n + 8} bytes, the file has {size}")
        head = first + fh.read(n - 1)
    try:
        header = json.loads(head)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):  # RecursionError: nested far too deep
        raise IsegError(f"{path}: not a safetensors file (header is not JSON)") from None
    if not isinstance(header, dict):
        raise IsegError(f"{path}: not a safetensors file (header is not an object)")
    end = 0
    for k, v in header.items():
        if k == "__metadata__":
            continue
        try:
            end = max(end, int(v["data_offsets"][1]))
        except (TypeError, KeyError, IndexError, ValueError):
            raise IsegError(f"{path}: corrupt safetensors header entry {k!r}") from None
    if 8 + n + end > size:
        raise IsegError(f"{path}: truncated: tensor data ends at byte {8 + n + end}, file has {size}")


class _NotJson(Exception):
    """``NaN``, ``Infinity`` or ``-Infinity`` in a JSON text (Python's json accepts them)."""


def _not_json(name: str) -> None:
    raise _NotJson(name)


def load(path: str | os.PathLike) -> QuantizedCheckpoint:
    """Read and validate a quantized checkpoint; any defect is one IsegError line."""
    from safetensors import safe_open

    path = Path(path)
    if not path.exists():
        raise IsegError(f"{path}: no such checkpoint file")
    if path.is_dir():
        raise IsegError(f"{path}: is a folder, expected a .safetensors checkpoint file")
    if not path.is_file():  # a FIFO's size reads 0 and safetensors would block on it
        raise IsegError(f"{path}: not a regular file, expected a .safetensors checkpoint file")
    _check_container(path)
    try:
        with safe_open(str(path), framework="numpy") as fh:
            raw_meta = fh.metadata() or {}
            tensors = {k: fh.get_tensor(k) for k in fh.keys()}
    except IsegError:
        raise
    except Exception as exc:  # safetensors raises its own error types; name the file
        raise IsegError(f"{path}: unreadable safetensors file ({exc})") from None
    if META_KEY not in raw_meta and raw_meta.get("format") == "iseg-fp32":  # model/loaders.py FP_FORMAT
        raise IsegError(f"{path}: a floating-point model (`iseg train`), not a quantized checkpoint: quantize it "
                        f"first (`iseg quantize {path} --calib synthetic:1 --out q.safetensors`)")
    if META_KEY not in raw_meta:
        raise IsegError(f"{path}: safetensors file without I-Segmenter metadata (not a quantized "
                        f"checkpoint; make one with `iseg quantize` or `iseg random`)")
    try:  # NaN and Infinity are not JSON (`iseg info --json` would print them as they are)
        meta = json.loads(raw_meta[META_KEY], parse_constant=_not_json)
    except (json.JSONDecodeError, RecursionError):
        raise IsegError(f"{path}: metadata {META_KEY!r} is not valid JSON") from None
    except _NotJson as exc:
        raise IsegError(f"{path}: metadata {META_KEY!r} is not valid JSON ({exc} is not a JSON number)") from None
    if not isinstance(meta, dict):
        raise IsegError(f"{path}: metadata {META_KEY!r} must be a JSON object, got {type(meta).__name__}")
    if meta.get("format") != FORMAT:
        raise IsegError(f"{path}: format {meta.get('format')!r}, expected {FORMAT!r}")
    if not _is_int(meta.get("version")) or meta.get("version") != VERSION:
        raise IsegError(f"{path}: checkpoint format version {meta.get('version')!r} is not supported "
                        f"(this iseg reads version {VERSION}; re-export the model with this iseg)")
    for k in ("model", "consts"):
        if not isinstance(meta.get(k), dict):
            raise IsegError(f"{path}: metadata has no {k!r} object")
    info = meta.get("info", {})
    if not isinstance(info, dict):
        raise IsegError(f"{path}: metadata 'info' must be an object, got {type(info).__name__}")
    try:
        spec = ModelSpec.from_json(meta["model"])
        ckpt = QuantizedCheckpoint(spec, tensors, meta["consts"], info)
        ckpt.validate()
    except IsegError as exc:
        raise IsegError(f"{path}: {exc}") from None
    except TypeError as exc:  # e.g. a model key of the wrong kind reaching the dataclass
        raise IsegError(f"{path}: bad model hyper-parameters ({exc})") from None
    return ckpt
