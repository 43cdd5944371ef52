"""The whole model-side path end to end, and the shipped built-in checkpoints.

train (a few steps, tiny model) -> PTQ (1 calibration image) -> export -> save -> ``iseg.checkpoint.load``
-> ``iseg.reference.run`` equals the PyTorch integer mode on every op output; then the shipped
``model/builtin/builtin_int8.safetensors``: it loads, it was exported from the shipped
``builtin_fp32.safetensors`` (same shape, same int8 weights), and its labels from the numpy
reference equal the torch integer mode on a synthetic val image.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from iseg import synth  # noqa: E402
from iseg.checkpoint import load, save  # noqa: E402
from iseg.graph import build_graph  # noqa: E402
from iseg.model.calibrate import load_data, quantize  # noqa: E402
from iseg.model.loaders import load_fp  # noqa: E402
from iseg.model.quant import IntSegmenter  # noqa: E402
from iseg.model.segmenter import SegmenterConfig  # noqa: E402
from iseg.model.train import TrainConfig, train  # noqa: E402
from iseg.reference import run  # noqa: E402

pytestmark = pytest.mark.torch

BUILTIN = Path(__file__).resolve().parents[2] / "model" / "builtin"
FP32, INT8 = BUILTIN / "builtin_fp32.safetensors", BUILTIN / "builtin_int8.safetensors"

# P = 4 like the built-in model; the I-Segmenter switches of the built-in preset
TINY = SegmenterConfig(d_model=32, n_heads=2, n_layers=1, patch_size=4, image_size=(32, 32), n_cls=8,
                       dec_n_layers=1, dec_n_heads=2, encoder_head_classes=8, l2norm=False, gelu="lambda",
                       class_names=synth.CLASS_NAMES, class_colors=synth.CLASS_COLORS)
FAST = TrainConfig(steps=4, batch_size=4, lr=3e-3, warmup=0, train_count=8, val_count=2, ckpt_every=4)


def assert_same_trace(ckpt, images: np.ndarray) -> None:
    labels_t, trace_t = IntSegmenter(ckpt)(images, trace=True)
    names = [op.output for op in build_graph(ckpt.spec).ops]
    for b, img in enumerate(images):
        labels_r, trace_r = run(ckpt, img, trace=True)
        assert sorted(trace_r) == sorted(names)
        for name in names:
            assert np.array_equal(trace_t[name][b].numpy(), trace_r[name].astype(np.int64)), f"image {b}: {name}"
        assert np.array_equal(labels_t[b].numpy(), labels_r), f"image {b}: labels"


def test_train_quantize_export_load_reference(tmp_path: Path) -> None:
    torch.set_num_threads(1)
    train(TINY, FAST, tmp_path / "run", progress=False, log=lambda m: None)
    fp = load_fp(tmp_path / "run" / "model.safetensors").eval()
    assert fp.cfg.patch_size == 4 and fp.cfg.image_size == (32, 32)
    calib, _ = load_data("synthetic:train:1", fp.cfg.image_size)
    ckpt = quantize(fp, calib)
    assert ckpt.info["calib_images"] == 1
    save(ckpt, tmp_path / "q.safetensors")
    back = load(tmp_path / "q.safetensors")
    assert back.spec == ckpt.spec
    for name, t in ckpt.tensors.items():
        assert np.array_equal(back.tensors[name], t), name
    images, _ = load_data("synthetic:val:2", fp.cfg.image_size, "val")
    assert_same_trace(back, images)


@pytest.mark.skipif(not INT8.exists(), reason="no shipped built-in integer model")
def test_shipped_int8_loads_and_reference_equals_torch() -> None:
    ckpt = load(INT8)
    image, _ = load_data("synthetic:val:1", ckpt.spec.image, "val")
    labels_t, _ = IntSegmenter(ckpt)(image)
    labels_r, _ = run(ckpt, image[0])
    assert labels_r.shape == ckpt.spec.image
    assert np.array_equal(labels_t[0].numpy(), labels_r)


@pytest.mark.skipif(not (INT8.exists() and FP32.exists()), reason="no shipped built-in models")
def test_shipped_int8_is_exported_from_shipped_fp32() -> None:
    """Same shape, and the int8 weights (a function of the FP weights only) of a fresh export."""
    shipped = load(INT8)
    fp = load_fp(FP32).eval()
    cfg = fp.cfg
    assert shipped.spec.image == cfg.image_size and shipped.spec.patch == cfg.patch_size
    assert (shipped.spec.dim, shipped.spec.heads, shipped.spec.layers) == (cfg.d_model, cfg.n_heads, cfg.n_layers)
    assert shipped.spec.n_cls == cfg.n_cls
    fresh = quantize(fp, load_data("synthetic:train:1", cfg.image_size)[0])
    weights = [n for n, t in fresh.tensors.items() if t.dtype == np.int8]
    assert weights
    for name in weights:
        assert np.array_equal(shipped.tensors[name], fresh.tensors[name]), f"{name}: int8 file is stale"
