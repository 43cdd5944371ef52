"""Whole model: the PyTorch integer mode equals the numpy reference on EVERY op output.

Random FP Segmenters of several shapes (mask and linear decoders, 1-3 heads, square and not,
both Shiftmax and both GELU variants) are calibrated, exported and run by both
``IntSegmenter`` (torch, batched) and ``iseg.reference.run`` (numpy, one image at a time); the
traces must be equal array for array (np.array_equal), op names taken from the graph. The
built-in model is checked the same way once ``model/builtin/builtin_fp32.safetensors`` exists.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from iseg import numerics as nx  # noqa: E402
from iseg.checkpoint import load, save  # noqa: E402
from iseg.errors import IsegError  # noqa: E402
from iseg.graph import build_graph  # noqa: E402
from iseg.model.calibrate import calibrate, load_data, quantize, to_pixels  # noqa: E402
from iseg.model.export import (  # noqa: E402
    add_const,
    check_accumulator,
    check_pv_accumulator,
    check_shiftmax,
    clipped_warning,
    export,
    ln_const,
    rq_const,
)
from iseg.model.quant import IntSegmenter, QuantSegmenter, patch_embed_float  # noqa: E402
from iseg.model.segmenter import Segmenter, SegmenterConfig  # noqa: E402
from iseg.reference import run  # noqa: E402

pytestmark = pytest.mark.torch

BUILTIN = Path(__file__).resolve().parents[2] / "model" / "builtin" / "builtin_fp32.safetensors"


def random_fp(seed: int, **kw) -> Segmenter:
    """An FP Segmenter with weights large enough to use every quantization range."""
    base = dict(d_model=32, n_heads=2, n_layers=2, patch_size=8, image_size=(32, 32), n_cls=5, dec_n_heads=2,
                dec_n_layers=1, l2norm=False, upsample="nearest", gelu="lambda")
    base.update(kw)
    torch.manual_seed(seed)
    fp = Segmenter(SegmenterConfig(**base)).eval()
    with torch.no_grad():
        for _, p in fp.named_parameters():
            p.add_(torch.randn_like(p) * 0.3)
    return fp


CASES = {
    "mask-precise-lambda": (dict(), "precise", "lambda"),
    "mask-ivit-shift-3heads-wide": (dict(d_model=48, n_heads=3, dec_n_heads=3, image_size=(24, 40), n_cls=7),
                                    "ivit", "shift"),
    "linear-1head-p4": (dict(decoder="linear", n_heads=1, patch_size=4, image_size=(16, 20), n_cls=3),
                        "precise", "lambda"),
    "mask-l2norm-deit": (dict(l2norm=True, normalization="deit", n_layers=1, dec_n_layers=2, gelu="erf"),
                         "precise", "lambda"),
    "mask-precise8-lambda": (dict(), "precise8", "lambda"),
    "linear-precise8-shift-p4": (dict(decoder="linear", patch_size=4, image_size=(16, 20), n_cls=4),
                                 "precise8", "shift"),
}


def assert_traces_equal(ckpt, images):
    labels_t, trace_t = IntSegmenter(ckpt)(images, trace=True)
    names = [op.output for op in build_graph(ckpt.spec).ops]
    for b, img in enumerate(images):
        labels_r, trace_r = run(ckpt, img, trace=True)
        assert sorted(trace_r) == sorted(names)
        for name in names:
            assert np.array_equal(trace_t[name][b].numpy(), trace_r[name].astype(np.int64)), f"image {b}: {name}"
        assert np.array_equal(labels_t[b].numpy(), labels_r)


@pytest.mark.parametrize("case", sorted(CASES))
def test_integer_mode_equals_reference_per_layer(case, tmp_path):
    kw, softmax, gelu = CASES[case]
    fp = random_fp(len(case), **kw)
    images, _ = load_data("synthetic:3", fp.cfg.image_size)
    ckpt = quantize(fp, images[:2], softmax=softmax, gelu=gelu)
    save(ckpt, tmp_path / "q.safetensors")  # the written file is what gen-hls reads: check that one
    ckpt = load(tmp_path / "q.safetensors")
    assert ckpt.spec.softmax == softmax and ckpt.spec.gelu == gelu
    assert_traces_equal(ckpt, images)


@pytest.mark.skipif(not BUILTIN.exists(), reason="built-in FP model not trained yet")
def test_builtin_integer_mode_equals_reference():
    from iseg.model.loaders import load_model

    fp = load_model(BUILTIN).eval()
    images, _ = load_data("synthetic:2", fp.cfg.image_size)
    assert_traces_equal(quantize(fp, images[:1]), images)


def test_float_mode_is_the_fp_model():
    """QuantSegmenter in float mode reproduces the FP I-Segmenter (L2 off, nearest) to 1e-4."""
    fp = random_fp(3)
    images, _ = load_data("synthetic:2", fp.cfg.image_size)
    px = to_pixels(images)
    with torch.no_grad():
        want = fp(fp.normalize(px))[:, :, ::8, ::8]
        got = QuantSegmenter(fp).set_mode("float")(px)
    torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)


def test_patch_embed_fold_is_exact_in_float():
    fp = random_fp(4, normalization="deit")
    images, _ = load_data("synthetic:1", fp.cfg.image_size)
    px = to_pixels(images)
    w, b = patch_embed_float(fp)
    p = fp.cfg.patch_size
    x = (px - 128.0).reshape(1, 3, 4, p, 4, p).permute(0, 2, 4, 3, 5, 1).reshape(1, 16, -1)
    with torch.no_grad():
        torch.testing.assert_close(x @ w + b, fp.encoder.patch_embed(fp.normalize(px)), atol=1e-4, rtol=1e-4)


def test_fake_quant_agrees_with_integer_model():
    """Fake quantization predicts what the integer model predicts on most tokens of a random model (>= 75 %)."""
    fp = random_fp(5)
    images, _ = load_data("synthetic:4", fp.cfg.image_size)
    qm = calibrate(QuantSegmenter(fp), images)
    with torch.no_grad():
        fake = qm(to_pixels(images)).argmax(1).numpy()
    labels, _ = IntSegmenter(export(qm))(images)
    agree = (labels[:, ::8, ::8].numpy() == fake).mean()
    assert agree >= 0.75, agree


def test_one_image_calibration_records_every_range():
    fp = random_fp(6)
    images, _ = load_data("synthetic:1", fp.cfg.image_size)
    qm = calibrate(QuantSegmenter(fp), images)
    assert all(v > 0 for v in qm.ranges().values())
    more = calibrate(QuantSegmenter(fp), load_data("synthetic:4", fp.cfg.image_size)[0])
    assert all(more.ranges()[k] >= v for k, v in qm.ranges().items())  # min/max over a superset


def test_export_requires_calibration():
    with pytest.raises(IsegError, match="no recorded range"):
        export(QuantSegmenter(random_fp(7)))


def test_accumulator_and_shiftmax_proofs():
    assert check_accumulator("x", 768, np.array([5], np.int32)) == 768 * 128 * 127 + 5
    with pytest.raises(IsegError, match="does not fit in int32"):
        check_accumulator("big", (1 << 31) // (128 * 127) + 1, None)
    check_shiftmax("ok", 1025, -1000, "precise")
    with pytest.raises(IsegError, match="row sum bound"):
        check_shiftmax("fine", 1 << 20, -(1 << 12), "precise")
    check_shiftmax("clamped", 1 << 20, -(1 << 12), "ivit")  # ivit clamps S: always f >= 1


def test_pv_accumulator_bound_follows_the_variant():
    """Σ p·2^r <= 2^15 + N·2^(r_max - 1) for the rounding variants (precise: N/2; precise8, r <= 7: 64·N);
    the P·V bound is that times 128, for the shifted z and (r >= 0) the accumulator before the shift."""
    assert nx.shiftmax_p_sum_bound(1025, -80, "precise") == (1 << 15) + 512
    assert nx.shiftmax_p_sum_bound(1025, -80, "precise8") == (1 << 15) + 64 * 1025
    assert check_pv_accumulator("x", 1025, -80, "precise8") == ((1 << 15) + 64 * 1025) * 128
    assert check_pv_accumulator("x", 1025, -80, "precise") == ((1 << 15) + 512) * 128
    # 2^15 + 64·N reaches 2^24 at N = 261633 keys: precise8 is refused there, precise is not
    assert check_pv_accumulator("x", 300_000, -80, "precise") < 1 << 31
    with pytest.raises(IsegError, match="P·V accumulator bound"):
        check_pv_accumulator("long", 300_000, -80, "precise8")
    # ivit: an unclamped S keeps Σp below 2^15; a clamped one (N·|x0|·2^16 > 2^31) has f = 1, p <= |x0|
    assert nx.shiftmax_p_sum_bound(197, -10, "ivit") == 1 << 15
    assert nx.shiftmax_p_sum_bound(4096, -1000, "ivit") == 4096 * 1000
    with pytest.raises(IsegError, match="P·V accumulator bound"):
        check_pv_accumulator("huge", 1 << 20, -(1 << 12), "ivit")


@pytest.mark.parametrize("softmax", sorted(nx.SHIFTMAX_VARIANTS))
def test_pv_accumulator_bound_covers_before_and_after_the_shift(softmax):
    """Worst-case values v = -128 (and +127) against real Shiftmax rows: |Σ p·v| <= |(Σ p·v) << r| <= the bound."""
    rng = np.random.default_rng(4)
    for n in (1, 3, 64, 1025):
        x = np.concatenate([rng.integers(-128, 128, size=(4, n)), np.full((1, n), 2),
                            np.concatenate([[[127]], np.full((1, n - 1), -128)], axis=1)])
        for scale in (0.02, 0.3):
            x0 = nx.shiftmax_x0(scale, softmax)
            p, r = nx.shiftmax_with_shift(x, x0, softmax)
            bound = check_pv_accumulator("t", n, x0, softmax)
            for val in (-128, 127):
                v = np.full((n, 2), val, np.int8)
                pre, z = np.abs(nx.exact_matmul(p, v)), np.abs(nx.attention_pv(p, r, v))
                assert pre.max() <= z.max() <= bound < 1 << 31, (n, scale)


def test_pv_requant_scale_is_the_u15_grid_for_every_variant():
    """The same calibrated model exported as precise and precise8: z = (P·V) << r is on the 2^-15 grid in
    both, so the P·V ratio 2^-15·s_qkv/s_attn is the same (not 2^7 larger for the u8 mantissas)."""
    fp = random_fp(8)
    images, _ = load_data("synthetic:2", fp.cfg.image_size)
    qm = calibrate(QuantSegmenter(fp, softmax="precise"), images)
    c15 = export(qm).consts
    qm.softmax = "precise8"
    c8 = export(qm).consts
    keys = [k for k in c15 if k.endswith(".attn.pv.rq")]
    assert keys and all(c8[k.replace(".pv.rq", ".softmax")] == c15[k.replace(".pv.rq", ".softmax")] for k in keys)
    for k in keys:
        r15 = c15[k]["m"] / 2 ** c15[k]["e"]
        r8 = c8[k]["m"] / 2 ** c8[k]["e"]
        assert c8[k] == c15[k] and math.isclose(r8, r15, rel_tol=0), k
        s = qm.scales()
        p = k[:-len(".attn.pv.rq")]
        assert math.isclose(r15, 2.0 ** -15 * s[f"{p}.qkv"] / s[f"{p}.attn"], rel_tol=2 ** -30), k


@pytest.mark.parametrize("softmax,rows_r,rows_p", [
    ("precise", [0, 0, 0], [[10923] * 3, [32767, 0, 0], [17076, 13980, 1712]]),
    ("ivit", [0, 0, 0], [[10923] * 3, [32767, 0, 0], [17076, 13980, 1712]]),
    # per row: pm = round(max_prob·2^15) (clamped at 32767), r = max(0, bit_length(pm) - 8), p = round(prob·2^(15-r))
    # row 0: pm = 10923 (14 bits), r = 6, p = round(512/3) = 171; row 1: pm = 32767, r = 7, 256 -> 255;
    # row 2: softmax(0.3, 0.1, -2) = (0.52111, 0.42665, 0.05225), pm = 17076, r = 7, p = round(prob·256)
    ("precise8", [6, 7, 7], [[171] * 3, [255, 0, 0], [133, 109, 13]]),
])
def test_fake_quant_of_attention_probabilities_uses_the_row_grid(softmax, rows_r, rows_p):
    """In fake mode the attention probabilities sit on the variant's grid (precise8: 2^(r-15) per row, clamped
    at 255·2^(r-15)); straight-through gradient; the integer model's logits track the fake ones."""
    fp = random_fp(5)
    images, _ = load_data("synthetic:4", fp.cfg.image_size)
    qm = calibrate(QuantSegmenter(fp, softmax=softmax), images)
    s = torch.tensor([[4.0, 4.0, 4.0], [30.0, 0.0, 0.0], [0.3, 0.1, -2.0]], requires_grad=True)
    pr = qm.attn_probs(s)  # calibrate leaves the model in fake mode
    grid = pr.detach().double() * torch.tensor([2.0 ** (15 - r) for r in rows_r], dtype=torch.float64)[:, None]
    assert torch.equal(grid, torch.round(grid)) and grid.tolist() == rows_p
    # the same grid in a (B, heads, T, T) batch: the row shift is per row, not per tensor
    pr4 = qm.attn_probs(s.detach().repeat(2, 3, 1, 1))
    assert torch.equal(pr4, pr.detach().repeat(2, 3, 1, 1))
    # straight-through: the gradient is the plain softmax's, not cut (zero) by the rounding; a loss that is not
    # constant over a row (sum(pr) is: each row sums to 1, so its gradient vanishes anyway)
    wts = torch.tensor([[1.0, -2.0, 0.5], [3.0, 1.0, -1.0], [-0.5, 2.0, 1.5]])
    (pr * wts).sum().backward()
    s_ref = s.detach().clone().requires_grad_(True)
    (s_ref.softmax(dim=-1) * wts).sum().backward()
    assert s_ref.grad.abs().max() > 0.1 and torch.allclose(s.grad, s_ref.grad, rtol=0, atol=1e-6)
    # fake-quant logits track the integer model's (argmax agreement of a random model is too noisy for u8 P)
    with torch.no_grad():
        fake = qm(to_pixels(images)).numpy()
    _, trace = IntSegmenter(export(qm))(images, trace=True)
    real = trace["dec.mask_norm"].numpy() * qm.scales()["dec.mask_norm"]  # (B, tokens, n_cls)
    fake = fake.reshape(fake.shape[0], fake.shape[1], -1).transpose(0, 2, 1)
    assert np.corrcoef(real.ravel(), fake.ravel())[0, 1] > 0.95


def test_add_const_shares_one_shift():
    c = add_const(0.01, 0.003, 0.02)
    assert c["ma"] < 1 << 31 and c["mb"] < 1 << 31
    assert math.isclose(c["ma"] / 2 ** c["e"], 0.5, rel_tol=1e-8)
    assert math.isclose(c["mb"] / 2 ** c["e"], 0.15, rel_tol=1e-8)


def test_a_ratio_too_small_for_dyadic_is_a_zero_multiplier():
    """dyadic represents ratios down to 2^-32 (2^30 <= m, e <= 62); the exporter mapped only those below 2^-61 to
    m = 0, so a LayerNorm gamma of 1e-4 was refused as "far out of range" while 1e-20 exported. Below 2^-32,
    |z·r| < 1/2 for every |z| < 2^31: the product rounds to 0, so m = 0 is exact."""
    assert (rq_const(2.0 ** -32)["m"], rq_const(2.0 ** -32)["e"]) == (1 << 30, 62)
    for r in (2.0 ** -33, 2.0 ** -40, 2.0 ** -61, -(2.0 ** -50), 1e-300):
        assert (rq_const(r)["m"], rq_const(r)["e"]) == (0, 1), r
    for gamma in (1e-4, 1e-20, 0.0):
        c = ln_const(torch.tensor([gamma, 1.0]), torch.tensor([0.3, 0.0]), s_out=0.05)
        assert c["m"][0] == 0 and c["m"][1] != 0
        z = np.array([[-(1 << 30), 1 << 30]])  # the extreme normalised values: channel 0 is its offset alone
        out = nx.requant(z, c["m"][0], c["e"][0], c["o"][0], 8)
        assert np.array_equal(out, [[6, 6]])  # round(0.3 / 0.05) = 6


def test_clipped_layernorm_offsets_are_one_warning_line():
    """ln_const clips an offset past the spec's |o| < 2^61 (e = 62 and |beta / s_out| >= 1/2); the channel's output
    then saturates short of the float's. `iseg quantize` / `iseg qat` printed nothing (only info held it)."""
    from types import SimpleNamespace

    clipped: list[int] = []
    c = ln_const(torch.tensor([1.0, 0.25]), torch.tensor([0.0, 1.0]), s_out=1.0, clipped=clipped)  # 2^-31.5
    assert clipped == [1] and c["e"][1] == 62 and c["o"][1] == (1 << 61) - 1
    assert clipped_warning(SimpleNamespace(info={})) is None
    line = clipped_warning(SimpleNamespace(info={"ln_offsets_clipped": {"enc.0.ln1": clipped}}))
    assert line == ("warning: LayerNorm offsets clipped to the spec's |o| < 2^61, so those channels' outputs saturate "
                    "short of the float model's: enc.0.ln1 channel(s) 1 (a gamma far below beta; "
                    "info.ln_offsets_clipped)")


def test_class_token_is_on_the_patch_embedding_grid():
    """The class token joins the patch embedding's output ahead of the position add, so it is quantised at the
    patch embedding's scale s_pe (16 bits), by hand here. At s_embed instead (the scale after the add), the
    model tests did not notice: in them s_embed / s_pe is about 1.003, below their argmax and correlation checks."""
    fp = random_fp(8)
    images, _ = load_data("synthetic:2", fp.cfg.image_size)
    qm = calibrate(QuantSegmenter(fp), images)
    ck = export(qm)
    s_pe = qm.scales()["patch_embed"]
    cls = fp.encoder.cls_token[0].detach().double().numpy()
    want = np.clip(np.round(cls / s_pe), -32768, 32767).astype(np.int16)
    assert ck.tensors["cls_token"].dtype == np.int16 and np.array_equal(ck.tensors["cls_token"], want)
    assert np.abs(want).max() > 100  # values large enough that another scale's rounding would differ
