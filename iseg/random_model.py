"""Valid quantized checkpoints of any shape, without torch: for tests and benchmarks.

Weights are random int8. Every constant is *calibrated* while the reference runs once on a
calibration image: each requant maps the 99.9th percentile of the integers it receives to
most of its output range, so activations are neither saturated nor all zero at any depth
(``tests/test_random_model.py`` checks it). The calibration goes through the reference's
``Consts`` hook, so the checkpoint and the reference cannot disagree on the graph.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np

from iseg import numerics as nx
from iseg.checkpoint import (
    ConstSpec,
    ModelSpec,
    QuantizedCheckpoint,
    default_class_colors,
    default_class_names,
    expected_layout,
)
from iseg.errors import IsegError
from iseg.reference import RQ, Consts, run

PRESETS: dict[str, ModelSpec] = {
    "tiny": ModelSpec(dim=64, heads=2, layers=2, mlp_dim=256, patch=8, image=(64, 64), n_cls=8,
                      dec_dim=64, dec_heads=2, dec_layers=2, dec_mlp_dim=256),
    "seg-t-512": ModelSpec(dim=192, heads=3, layers=12, mlp_dim=768, patch=16, image=(512, 512), n_cls=150,
                           dec_dim=192, dec_heads=3, dec_layers=2, dec_mlp_dim=768),
    "seg-s-512": ModelSpec(dim=384, heads=6, layers=12, mlp_dim=1536, patch=16, image=(512, 512), n_cls=150,
                           dec_dim=384, dec_heads=6, dec_layers=2, dec_mlp_dim=1536),
}

# Upper bounds of `iseg random` (each refused with one line before anything is allocated):
MAX_DIM = 2047  # encoder / decoder width: the engine's LayerNorm takes K <= 2047 channels (hls/mul.h kLnKBits)
MAX_MLP_DIM = 131071  # fc2's K: |acc| <= K*128*128 < 2^31 (numerics.md §3, the accumulator proof)
MAX_PATCH = 208  # the patch vector K = 3*P*P under the same proof
MAX_PATCHES = 4096  # tokens: the numpy reference holds heads x T^2 int64 scores while calibrating
MAX_LAYERS = 256  # a sanity bound (Seg-L has 24)
MAX_PARAMS = 1 << 28  # a sanity bound on the integer parameters (Seg-B has ~100 M, Seg-L ~300 M)

_Q = 0.999  # calibration percentile
_TARGET = {8: 100.0, 16: 8000.0}  # where the percentile lands in the output range


def with_classes(spec: ModelSpec) -> ModelSpec:
    """Fill in default class names and colours when a spec has none."""
    if spec.class_names:
        return spec
    return replace(spec, class_names=default_class_names(spec.n_cls),
                   class_colors=default_class_colors(spec.n_cls))


def calibration_image(shape: tuple[int, int], seed: int) -> np.ndarray:
    """A smooth, textured random RGB image (blocks of colour plus noise), u8."""
    rng = np.random.default_rng(seed)
    h, w = shape
    coarse = rng.integers(0, 256, size=(max(h // 16, 1) + 1, max(w // 16, 1) + 1, 3)).astype(np.float64)
    yy = np.linspace(0, coarse.shape[0] - 1, h)
    xx = np.linspace(0, coarse.shape[1] - 1, w)
    img = coarse[np.round(yy).astype(int)][:, np.round(xx).astype(int)]
    img += rng.normal(0, 20, size=(h, w, 3))
    return np.clip(img, 0, 255).astype(np.uint8)


def _ratio_to_rq(ratio: np.ndarray) -> tuple[list[int], list[int]]:
    ms, es = [], []
    for r in np.atleast_1d(ratio):
        m, e = nx.dyadic(float(min(max(r, 2.0 ** -40), 2.0 ** 29)))
        ms.append(m)
        es.append(e)
    return ms, es


def _pack(vals: list[int]) -> int | list[int]:
    return vals[0] if len(vals) == 1 else vals


class Calibrator(Consts):
    """Chooses each constant from the integers it is about to be applied to, and records it."""

    def __init__(self, ckpt: QuantizedCheckpoint, rng: np.random.Generator, lam: float = 4.0):
        super().__init__(ckpt)
        self.spec = ckpt.spec
        self.layout = expected_layout(ckpt.spec)
        self.consts = ckpt.consts  # filled in as the reference runs
        self.rng = rng
        self.lam = lam

    def _channels(self, key: str) -> int:
        cs: ConstSpec = self.layout.consts[key]
        return cs.channels

    def rq(self, key: str, z: np.ndarray, bits: int) -> RQ:
        a = np.abs(np.asarray(z, dtype=np.float64)).reshape(-1, z.shape[-1])
        if self._channels(key) > 1:
            q = np.quantile(a, _Q, axis=0)
        else:
            q = np.array([np.quantile(a, _Q)])
        ms, es = _ratio_to_rq(_TARGET[bits] / np.maximum(q, 1.0))
        self.consts[key] = {"m": _pack(ms), "e": _pack(es), "o": 0}
        return Consts.rq(self, key, z, bits)

    def ln(self, key: str, z: np.ndarray, bits: int) -> RQ:
        c = z.shape[-1]
        gamma = self.rng.uniform(0.6, 1.4, size=c)
        beta = self.rng.normal(0.0, 0.2, size=c)
        s_out = 4.0 / _TARGET[bits]
        ms, es, os_ = [], [], []
        for g_, b_ in zip(gamma, beta, strict=True):
            m, e = nx.dyadic(g_ * math.sqrt(c) / (1 << 30) / s_out)
            ms.append(m)
            es.append(e)
            os_.append(int(round(b_ / s_out * (1 << e))))
        self.consts[key] = {"m": ms, "e": es, "o": os_}
        return Consts.rq(self, key, z, bits)

    def add(self, key: str, a: np.ndarray, b: np.ndarray) -> tuple[int, int, int]:
        qa = max(float(np.quantile(np.abs(a.astype(np.float64)), _Q)), 1.0)
        qb = max(float(np.quantile(np.abs(b.astype(np.float64)), _Q)), 1.0)
        ra, rb = _TARGET[16] / (2 * qa), _TARGET[16] / (2 * qb)
        e = int(min(46, max(1, 30 - math.ceil(math.log2(max(ra, rb))))))
        self.consts[key] = {"ma": int(round(ra * (1 << e))), "mb": int(round(rb * (1 << e))), "e": e}
        return Consts.add(self, key, a, b)

    def softmax_x0(self, key: str, scores: np.ndarray) -> int:
        std = float(np.std(scores.astype(np.float64))) + 1.0
        x0 = nx.shiftmax_x0(2.0 / std, self.spec.softmax)  # scores span a few units of real logit
        self.consts[key] = {"x0": x0}
        return x0

    def gelu(self, key: str, x: np.ndarray) -> nx.GeluConsts:
        q = max(float(np.quantile(np.abs(x.astype(np.float64)), _Q)), 1.0)
        g = nx.gelu_consts(3.0 / q, self.spec.gelu, lam=self.lam)
        self.consts[key] = {"x0": g.x0, "n": g.n, "k": g.k, "L": g.L, "em": g.em}
        return g


def random_weights(spec: ModelSpec, rng: np.random.Generator) -> dict[str, np.ndarray]:
    tensors: dict[str, np.ndarray] = {}
    for name, (shape, dtype) in expected_layout(spec).tensors.items():
        if dtype == "int8":
            t = np.clip(np.round(rng.normal(0, 32, size=shape)), -128, 127)
        elif dtype == "int32":  # biases: small against the accumulator of K terms of ~32*30
            t = np.round(rng.normal(0, 2000, size=shape))
        else:  # int16 embeddings
            t = np.clip(np.round(rng.normal(0, 3000, size=shape)), -32768, 32767)
        tensors[name] = t.astype(dtype)
    return tensors


def random_checkpoint(spec: ModelSpec, seed: int = 0, image: np.ndarray | None = None) -> QuantizedCheckpoint:
    """A complete, validated checkpoint with random weights and calibrated constants."""
    spec = with_classes(spec)
    spec.validate()
    rng = np.random.default_rng(seed)
    tensors = random_weights(spec, rng)
    ckpt = QuantizedCheckpoint(spec, tensors, {}, {"source": "random", "seed": seed})
    img = calibration_image(spec.image, seed) if image is None else image
    run(ckpt, img, consts=Calibrator(ckpt, rng))
    ckpt.validate()
    return ckpt


def check_size(spec: ModelSpec) -> None:
    """Refuse a shape beyond the bounds above (one IsegError line) before any weight is drawn."""
    for k, hi in (("dim", MAX_DIM), ("mlp_dim", MAX_MLP_DIM), ("patch", MAX_PATCH), ("layers", MAX_LAYERS)):
        if getattr(spec, k) > hi:
            raise IsegError(f"model.{k} = {getattr(spec, k)} exceeds {hi}")
    if spec.decoder == "mask":
        for k, hi in (("dec_dim", MAX_DIM), ("dec_mlp_dim", MAX_MLP_DIM)):
            if getattr(spec, k) > hi:
                raise IsegError(f"model.{k} = {getattr(spec, k)} exceeds {hi}")
    if spec.n_patches > MAX_PATCHES:
        raise IsegError(f"image {spec.image[0]}x{spec.image[1]} at patch {spec.patch} has {spec.n_patches} "
                        f"patches, more than {MAX_PATCHES}")
    n = sum(math.prod(shape) for shape, _ in expected_layout(spec).tensors.values())
    if n > MAX_PARAMS:
        raise IsegError(f"the model would have {n:,} parameters, more than {MAX_PARAMS:,}")


def parse_hw(text: str) -> tuple[int, int]:
    """'512', '512x384' -> (H, W)."""
    try:
        parts = [int(p) for p in text.lower().split("x")]
    except ValueError:
        raise IsegError(f"bad image size {text!r}: expected H or HxW, e.g. 512x384") from None
    if len(parts) == 1:
        parts = parts * 2
    if len(parts) != 2 or min(parts) < 1:
        raise IsegError(f"bad image size {text!r}: expected H or HxW, e.g. 512x384")
    return parts[0], parts[1]
