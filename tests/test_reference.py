"""The whole-model reference on random models: shapes, decoders, structure, range use."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from iseg import numerics as nx
from iseg import reference
from iseg.checkpoint import ModelSpec
from iseg.errors import IsegError
from iseg.graph import build_graph
from iseg.random_model import PRESETS, calibration_image, random_checkpoint

SHAPES = {
    "tiny-mask": PRESETS["tiny"],
    "nonsquare-linear": ModelSpec(dim=48, heads=3, layers=2, mlp_dim=96, patch=8, image=(32, 56), n_cls=5,
                                  decoder="linear"),
    "nonsquare-mask-ivit-shift": ModelSpec(dim=32, heads=2, layers=1, mlp_dim=64, patch=4, image=(24, 16), n_cls=3,
                                           dec_dim=32, dec_heads=1, dec_layers=2, dec_mlp_dim=64,
                                           softmax="ivit", gelu="shift"),
    "tiny-mask-precise8": replace(PRESETS["tiny"], softmax="precise8"),
    "one-class-odd": ModelSpec(dim=24, heads=1, layers=1, mlp_dim=40, patch=2, image=(6, 10), n_cls=1,
                               dec_dim=16, dec_heads=1, dec_layers=1, dec_mlp_dim=24),
}


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_reference_runs_and_traces_every_op(name: str) -> None:
    spec = SHAPES[name]
    q = random_checkpoint(spec, seed=1)
    g = build_graph(q.spec)
    img = calibration_image(spec.image, 9)
    labels, trace = reference.run(q, img, trace=True)
    assert labels.shape == spec.image and labels.dtype == np.uint8
    assert int(labels.max()) < spec.n_cls
    for op in g.ops:
        act = g.acts[op.output]
        assert trace[op.output].shape == act.shape, op.name
        assert trace[op.output].dtype.itemsize * 8 == act.bits, op.name
    again, _ = reference.run(q, img)
    assert np.array_equal(labels, again)


def test_labels_are_upsampled_argmax_of_the_logits() -> None:
    q = random_checkpoint(PRESETS["tiny"], seed=2)
    labels, trace = reference.run(q, calibration_image(q.spec.image, 4), trace=True)
    gh, gw = q.spec.grid
    grid = nx.argmax_labels(trace["dec.mask_norm"]).reshape(gh, gw)
    assert np.array_equal(labels, nx.upsample_nearest(grid, q.spec.patch))
    # a nearest upsample of the logits, then argmax, is the same map
    up = nx.upsample_nearest(trace["dec.mask_norm"].reshape(gh, gw, -1), q.spec.patch)
    assert np.array_equal(labels, nx.argmax_labels(up))


def test_linear_layer_matches_hand_computation() -> None:
    q = random_checkpoint(PRESETS["tiny"], seed=5)
    _, trace = reference.run(q, calibration_image(q.spec.image, 0), trace=True)
    x = trace["enc.1.ln2"].astype(np.int64)
    w = q.tensors["enc.1.fc1.weight"].astype(np.int64)
    b = q.tensors["enc.1.fc1.bias"].astype(np.int64)
    m, e, o = q.rq("enc.1.fc1.rq")
    acc = x @ w + b
    want = np.clip((acc * m + o + (np.int64(1) << (e - 1))) >> e, -128, 127)
    assert np.array_equal(trace["enc.1.fc1"], want)


def test_patch_embed_im2col_order() -> None:
    img = np.zeros((4, 4, 3), np.uint8)
    img[1, 2] = (10, 20, 30)  # patch (0, 1) of a 2x2-patch grid, py = 1, px = 0
    cols = reference.im2col(img, 2)
    k = (1 * 2 + 0) * 3
    assert cols.shape == (4, 12)
    assert cols[1, k:k + 3].tolist() == [10 - 128, 20 - 128, 30 - 128]
    assert np.count_nonzero(cols + 128) == 3


@pytest.mark.parametrize("softmax", sorted(nx.SHIFTMAX_VARIANTS))
def test_random_model_activations_use_their_range(softmax: str) -> None:
    """Every variant, u8 P included: the P·V requant is calibrated, so attention outputs are neither 0 nor saturated."""
    q = random_checkpoint(replace(PRESETS["tiny"], softmax=softmax), seed=7)
    assert q.spec.softmax == softmax
    _, trace = reference.run(q, calibration_image(q.spec.image, 11), trace=True)
    for name, t in trace.items():
        if t.dtype == np.uint8:
            continue
        a = np.abs(t.astype(np.int64))
        full = 127 if t.dtype == np.int8 else 32767
        assert np.mean(t == 0) < 0.2, f"{name}: mostly zero"
        assert np.mean(a >= full) < 0.1, f"{name}: saturated"
        assert np.quantile(a, 0.99) > full / 16, f"{name}: uses too little of its range"


def test_precise8_attention_is_the_shifted_u8_probabilities_times_v() -> None:
    """One head recomputed by hand from the trace: (p, r) = shiftmax_with_shift(..., "precise8"), p u8 mantissas,
    z = (p @ v) << r per row (back on the 2^-15 grid), then the P·V requant."""
    q = random_checkpoint(replace(PRESETS["tiny"], softmax="precise8"), seed=3)
    _, trace = reference.run(q, calibration_image(q.spec.image, 5), trace=True)
    qkv = trace["enc.0.qkv"].astype(np.int64)
    d, heads = q.spec.dim, q.spec.heads
    x0 = int(q.consts["enc.0.attn.softmax"]["x0"])
    acc = reference.attention_core(qkv, heads, lambda z: nx.requant(z, *q.rq("enc.0.attn.qk.rq"), bits=8),
                                   lambda s: x0, "precise8")
    dh = d // heads
    for h in range(heads):
        qh, kh, vh = (qkv[:, j * d + h * dh:j * d + (h + 1) * dh] for j in range(3))
        s = nx.requant(qh @ kh.T, *q.rq("enc.0.attn.qk.rq"), bits=8)
        p, r = nx.shiftmax_with_shift(s, x0, "precise8")
        assert np.array_equal(p, nx.shiftmax(s, x0, "precise8"))
        assert 0 <= p.min() and p.max() <= 255 and r.shape == (len(s), 1) and 0 <= r.min() and r.max() <= 7
        # r keeps the row's largest probability at 8 significant bits: 128 <= max p (unless r = 0)
        assert np.all((p.max(-1) >= 128) | (r[:, 0] == 0))
        # the rows' mass on the u15 grid: 2^15 within N/2 steps of 2^r (plus one clamped step)
        mass = (p << r).sum(-1)
        assert np.all(np.abs(mass - (1 << 15)) <= (len(s) // 2 + 2) << r[:, 0])
        assert np.array_equal(acc[:, h * dh:(h + 1) * dh], (p @ vh) << r)
    assert np.array_equal(trace["enc.0.attn"], nx.requant(acc, *q.rq("enc.0.attn.pv.rq"), bits=8))


def test_wrong_image_is_one_line_error() -> None:
    q = random_checkpoint(PRESETS["tiny"], seed=0)
    with pytest.raises(IsegError, match="the model expects 64x64"):
        reference.run(q, np.zeros((32, 64, 3), np.uint8))
    with pytest.raises(IsegError, match="uint8 RGB"):
        reference.run(q, np.zeros((64, 64), np.uint8))


def test_graph_describe_lists_every_op() -> None:
    g = build_graph(replace(PRESETS["tiny"], layers=1))
    text = g.describe()
    assert len(text.splitlines()) == len(g.ops)
    assert "Attention" in text and "dec.mask_norm" in text
