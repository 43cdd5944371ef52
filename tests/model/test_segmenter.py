"""The FP Segmenter: shapes, padding, pos-embed resizing, switches, and the released key names."""

from __future__ import annotations

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")
F = torch.nn.functional

from iseg.errors import IsegError  # noqa: E402
from iseg.model.segmenter import (  # noqa: E402
    VARIANTS,
    Attention,
    LambdaGELU,
    Segmenter,
    SegmenterConfig,
    param_count,
    preset,
    resize_pos_embed,
)


def small_cfg(**kw) -> SegmenterConfig:
    base = dict(d_model=32, n_heads=2, n_layers=2, patch_size=8, image_size=(32, 48), n_cls=5,
                dec_n_heads=2, encoder_head_classes=7)
    return SegmenterConfig(**{**base, **kw})


def build(seed: int = 0, **kw) -> Segmenter:
    torch.manual_seed(seed)
    return Segmenter(small_cfg(**kw)).eval()


@pytest.mark.parametrize("decoder", ["mask_transformer", "linear"])
@pytest.mark.parametrize("hw", [(32, 48), (48, 24), (37, 50), (8, 8), (9, 71)])
def test_forward_shape_any_size(decoder: str, hw: tuple[int, int]) -> None:
    model = build(decoder=decoder)
    out = model(torch.randn(2, 3, *hw))
    assert out.shape == (2, 5, *hw)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("upsample", ["bilinear", "nearest"])
def test_padding_is_zero_pad_then_crop(upsample: str) -> None:
    """A 37x50 input must give the crop of the output on its zero-padded 40x56 version."""
    model = build(upsample=upsample)
    x = torch.randn(1, 3, 37, 50)
    padded = F.pad(x, (0, 6, 0, 3))
    assert padded.shape[-2:] == (40, 56)
    with torch.no_grad():
        torch.testing.assert_close(model(x), model(padded)[:, :, :37, :50], rtol=0, atol=1e-6)


def test_resize_pos_embed_hand_values() -> None:
    """2x2 grid [[0, 1], [2, 3]] -> 4x4, align_corners=False: x at 0, .25, .75, 1; y at 0, .5, 1.5, 2."""
    cls = torch.tensor([[[7.0]]])
    grid = torch.tensor([0.0, 1.0, 2.0, 3.0]).view(1, 4, 1)
    out = resize_pos_embed(torch.cat([cls, grid], 1), (2, 2), (4, 4), n_extra=1)
    assert out.shape == (1, 17, 1)
    assert out[0, 0, 0].item() == 7.0  # the cls token is kept as it is
    xs, ys = [0.0, 0.25, 0.75, 1.0], [0.0, 0.5, 1.5, 2.0]
    expect = torch.tensor([[y + x for x in xs] for y in ys]).view(1, 16, 1)
    torch.testing.assert_close(out[:, 1:], expect)
    same = torch.randn(1, 5, 3)
    assert resize_pos_embed(same, (2, 2), (2, 2), 1) is same


def test_pos_embed_resized_in_forward() -> None:
    """At the training size the stored pos_embed is used as is; at 16x16 (2x2 grid) its resize."""
    model = build()
    seen = {}
    model.encoder.blocks[0].register_forward_pre_hook(lambda m, a: seen.__setitem__("x", a[0]))
    with torch.no_grad():
        model(torch.zeros(1, 3, 16, 16))
        # zero image: patch tokens = conv bias; the rest is the position embedding
        pe = resize_pos_embed(model.encoder.pos_embed, (4, 6), (2, 2), 1)
        bias = model.encoder.patch_embed.proj.bias
        torch.testing.assert_close(seen["x"][0, 0], model.encoder.cls_token[0, 0] + pe[0, 0])
        torch.testing.assert_close(seen["x"][0, 1:], bias + pe[0, 1:])


def test_l2norm_switch_changes_masks() -> None:
    a, b = build(l2norm=True), build(l2norm=False)
    b.load_state_dict(a.state_dict())
    x = torch.randn(1, 3, 32, 48)
    with torch.no_grad():
        diff = (a(x) - b(x)).abs().max().item()
    assert diff > 1e-3


def test_nearest_vs_bilinear() -> None:
    """Same shapes; nearest replicates each grid logit over its PxP block, bilinear does not."""
    near, bil = build(upsample="nearest"), build(upsample="bilinear")
    x = torch.randn(2, 3, 32, 48)
    with torch.no_grad():
        yn, yb = near(x), bil(x)
        grid = near.decoder(near.encoder(x)[:, 1:], (32, 48))
    assert yn.shape == yb.shape == (2, 5, 32, 48)
    assert grid.shape == (2, 5, 4, 6)
    torch.testing.assert_close(yn, grid.repeat_interleave(8, 2).repeat_interleave(8, 3), rtol=0, atol=0)
    assert not torch.allclose(yn, yb)


def test_attention_matches_sdpa() -> None:
    """Our explicit-softmax attention against torch's fused kernel (an independent implementation)."""
    torch.manual_seed(1)
    att = Attention(24, 3)
    x = torch.randn(2, 7, 24)
    qkv = att.qkv(x).reshape(2, 7, 3, 3, 8).permute(2, 0, 3, 1, 4)
    ref = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2]).transpose(1, 2).reshape(2, 7, 24)
    torch.testing.assert_close(att(x), att.proj(ref), rtol=1e-5, atol=1e-6)


def test_lambda_gelu_hand_values() -> None:
    g = LambdaGELU(4.0)
    x = torch.tensor([0.0, 1.0, -1.0, 10.0, -10.0], dtype=torch.float64)
    sig = lambda v: 1.0 / (1.0 + math.exp(-v))  # noqa: E731
    expect = [0.0, sig(1.702), -sig(-1.702), 10 * sig(1.702 * 4), -10 * sig(-1.702 * 4)]
    torch.testing.assert_close(g(x), torch.tensor(expect, dtype=torch.float64), rtol=1e-12, atol=1e-12)
    # Outside ±λ it is linear: slope σ(±6.808)
    assert abs((g(torch.tensor([20.0])) - g(torch.tensor([10.0]))).item() / 10 - sig(6.808)) < 1e-6
    erf_model = build(gelu="erf")
    assert isinstance(erf_model.encoder.blocks[0].mlp.act, torch.nn.GELU)
    assert isinstance(build(gelu="lambda").decoder.blocks[1].mlp.act, LambdaGELU)


def _block_keys(prefix: str) -> list[str]:
    names = ["norm1", "attn.qkv", "attn.proj", "norm2", "mlp.fc1", "mlp.fc2"]
    return [f"{prefix}.{n}.{p}" for n in names for p in ("weight", "bias")]


def test_state_dict_keys_are_the_released_names() -> None:
    """Keys written out from spec/segmenter.md, not derived from the code."""
    enc = ["encoder.patch_embed.proj.weight", "encoder.patch_embed.proj.bias", "encoder.cls_token",
           "encoder.pos_embed", "encoder.norm.weight", "encoder.norm.bias", "encoder.head.weight",
           "encoder.head.bias"]
    enc += _block_keys("encoder.blocks.0") + _block_keys("encoder.blocks.1")
    mask = ["decoder.cls_emb", "decoder.proj_dec.weight", "decoder.proj_dec.bias",
            "decoder.decoder_norm.weight", "decoder.decoder_norm.bias",
            "decoder.mask_norm.weight", "decoder.mask_norm.bias",
            "decoder.proj_patch", "decoder.proj_classes"]
    mask += _block_keys("decoder.blocks.0") + _block_keys("decoder.blocks.1")
    sd = build().state_dict()
    assert sorted(sd) == sorted(enc + mask)
    assert sd["encoder.pos_embed"].shape == (1, 1 + 4 * 6, 32)
    assert sd["encoder.blocks.0.attn.qkv.weight"].shape == (96, 32)
    assert sd["encoder.blocks.0.mlp.fc1.weight"].shape == (128, 32)
    assert sd["decoder.cls_emb"].shape == (1, 5, 32)
    assert sd["decoder.proj_patch"].shape == (32, 32)
    assert sd["decoder.mask_norm.weight"].shape == (5,)
    assert sd["encoder.head.weight"].shape == (7, 32)
    lin = build(decoder="linear").state_dict()
    assert sorted(lin) == sorted(enc + ["decoder.head.weight", "decoder.head.bias"])
    dist = Segmenter(small_cfg(distilled=True)).state_dict()
    assert {"encoder.dist_token", "encoder.head_dist.weight"} <= set(dist)
    assert dist["encoder.pos_embed"].shape == (1, 2 + 24, 32)


def test_mask_decoder_by_hand() -> None:
    """Class tokens go AFTER the patches; proj_* are used as x @ W; mask_norm normalises over classes."""
    model = build(l2norm=True)
    dec = model.decoder
    x = torch.randn(1, 24, 32)
    with torch.no_grad():
        h = torch.cat([dec.proj_dec(x), dec.cls_emb], 1)
        for blk in dec.blocks:
            h = blk(h)
        h = dec.decoder_norm(h)
        p, c = h[0, :24] @ dec.proj_patch, h[0, 24:] @ dec.proj_classes
        p, c = p / p.norm(dim=-1, keepdim=True), c / c.norm(dim=-1, keepdim=True)
        m = p @ c.T
        m = (m - m.mean(-1, keepdim=True)) / torch.sqrt(m.var(-1, unbiased=False, keepdim=True) + 1e-5)
        m = m * dec.mask_norm.weight + dec.mask_norm.bias
        torch.testing.assert_close(dec(x, (32, 48))[0], m.T.reshape(5, 4, 6), rtol=1e-5, atol=1e-5)


def test_tiny_parameter_count() -> None:
    """Seg-T-Mask/16 on ADE20K is quoted at 7M parameters; the exact count by formula."""
    d, f, n, L = 192, 768, 150, 12
    block = 4 * d + (d * 3 * d + 3 * d) + (d * d + d) + (d * f + f) + (f * d + d)
    enc = 3 * 16 * 16 * d + d + d + (1 + 32 * 32) * d + L * block + 2 * d + (d * 1000 + 1000)
    dec = (d * d + d) + n * d + 2 * block + 2 * d + 2 * d * d + 2 * n
    model = Segmenter(preset("tiny"))
    assert param_count(model) == enc + dec == 6_906_388


def test_presets() -> None:
    assert preset("small").d_model == 384 and preset("small").n_heads == 6
    assert preset("base").d_model == 768 and preset("base").decoder_heads == 12
    assert preset("tiny").decoder_heads == 3 and preset("tiny").d_ff == 768
    b = preset("builtin")
    assert not b.l2norm and b.gelu == "lambda" and b.n_cls == 8
    with pytest.raises(IsegError, match="unknown model variant 'huge'"):
        preset("huge")
    assert set(VARIANTS) >= {"tiny", "small", "base", "builtin"}


@pytest.mark.parametrize(
    "kw, msg",
    [
        (dict(n_heads=3), "not a multiple of n_heads"),
        (dict(image_size=(30, 48)), "not a multiple of patch_size"),
        (dict(decoder="fcn"), "decoder must be"),
        (dict(upsample="bicubic"), "upsample must be"),
        (dict(gelu="tanh"), "gelu must be"),
        (dict(normalization="imagenet"), "normalization must be"),
        (dict(class_names=("a", "b")), "2 class names for n_cls 5"),
        (dict(d_model=0), "d_model must be a positive integer"),
    ],
)
def test_config_errors(kw: dict, msg: str) -> None:
    with pytest.raises(IsegError, match=msg):
        small_cfg(**kw)


def test_config_dict_round_trip() -> None:
    cfg = small_cfg(class_names=tuple("abcde"), class_colors=((1, 2, 3),) * 5, l2norm=False)
    assert SegmenterConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(IsegError, match="unknown key 'depth'"):
        SegmenterConfig.from_dict({**cfg.to_dict(), "depth": 3})
    d = cfg.to_dict()
    del d["n_cls"]
    with pytest.raises(IsegError, match="missing key 'n_cls'"):
        SegmenterConfig.from_dict(d)


def test_normalize_and_predict() -> None:
    model = build(normalization="deit")
    px = torch.tensor([0, 255, 128], dtype=torch.uint8).view(1, 3, 1, 1)
    got = model.normalize(px).flatten()
    expect = torch.tensor([(0 - 0.485) / 0.229, (1 - 0.456) / 0.224, (128 / 255 - 0.406) / 0.225])
    torch.testing.assert_close(got, expect)
    img = np.random.default_rng(0).integers(0, 256, (20, 30, 3), dtype=np.uint8)
    labels = model.predict(img)
    assert labels.shape == (20, 30) and labels.dtype == np.uint8 and labels.max() < 5
    with pytest.raises(IsegError, match="expected an RGB image"):
        model.predict(img[..., 0])


def test_sliding_window() -> None:
    """One window covering the image equals forward; overlapping windows average their logits."""
    model = build()
    x = torch.randn(1, 3, 32, 48)
    with torch.no_grad():
        torch.testing.assert_close(model.sliding_logits(x, 64, 64), model(x), rtol=0, atol=0)
        got = model.sliding_logits(x, 32, 16)  # windows at x = 0 and 16: columns 16..31 seen twice
        left, right = model(x[..., :32]), model(x[..., 16:])
    torch.testing.assert_close(got[..., :16], left[..., :16])
    torch.testing.assert_close(got[..., 16:32], (left[..., 16:] + right[..., :16]) / 2)
    torch.testing.assert_close(got[..., 32:], right[..., 16:])
    with pytest.raises(IsegError, match="stride"):
        model.sliding_logits(x, 32, 40)
