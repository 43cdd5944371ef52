"""The floating-point Segmenter (Strudel et al., ICCV 2021) and the I-Segmenter switches.

Our own code, written so that ``state_dict()`` keys and shapes are exactly those of the released
Segmenter checkpoints (``spec/segmenter.md``): the loaders copy tensors across without renaming.

The modules are deliberately plain (``nn.Linear``, ``nn.LayerNorm``, an explicit softmax, a
GELU module chosen by name) so that the integer/QAT side can swap them one by one. The switches
that turn Segmenter into the float counterpart of I-Segmenter live in :class:`SegmenterConfig`:

- ``l2norm``: Segmenter L2-normalises patch and class embeddings before the mask product;
  I-Segmenter removes it (there is no cheap integer L2 norm, and the patch side is redundant
  with ``mask_norm``).
- ``upsample``: ``"bilinear"`` (Segmenter) or ``"nearest"`` (I-Segmenter: labels replicated P×P,
  which commutes with argmax so the hardware upsamples labels instead of logits).
- ``gelu``: ``"erf"`` (exact) or ``"lambda"``: x·σ(1.702·clip(x, −λ, λ)), the float function that
  λ-ShiftGELU (``spec/numerics.md`` §5.2) approximates.
- ``normalization``: ``"vit"`` (mean = std = 0.5) or ``"deit"`` (ImageNet statistics).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from iseg.errors import IsegError

__all__ = [
    "NORMALIZATION",
    "VARIANTS",
    "Attention",
    "Block",
    "DecoderLinear",
    "LambdaGELU",
    "MaskTransformer",
    "Mlp",
    "PatchEmbedding",
    "Segmenter",
    "SegmenterConfig",
    "VisionTransformer",
    "param_count",
    "preset",
    "resize_pos_embed",
]

#: Input normalisation statistics (mean, std) per name, as in the Segmenter code.
NORMALIZATION: dict[str, tuple[tuple[float, float, float], tuple[float, float, float]]] = {
    "vit": ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
    "deit": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
}

LN_EPS = 1e-5  # nn.LayerNorm default, as in Segmenter (timm's own ViT uses 1e-6).


@dataclass(frozen=True)
class SegmenterConfig:
    """Every hyper-parameter of one Segmenter; JSON-serialisable via :meth:`to_dict`.

    ``image_size`` is the training size (H, W): it fixes the ``pos_embed`` grid; other input
    sizes resize the position embedding bilinearly at run time.
    """

    d_model: int
    n_heads: int
    n_layers: int
    patch_size: int
    image_size: tuple[int, int]
    n_cls: int
    mlp_ratio: int = 4
    decoder: str = "mask_transformer"  # or "linear"
    dec_n_layers: int = 2
    dec_n_heads: int | None = None  # None: d_model // 64 (at least 1), as Segmenter's factory
    channels: int = 3
    distilled: bool = False  # DeiT-distilled backbones carry a dist_token (2 extra tokens)
    encoder_head_classes: int = 1000  # the unused ImageNet head of the backbone
    l2norm: bool = True
    upsample: str = "bilinear"  # or "nearest"
    gelu: str = "erf"  # or "lambda"
    gelu_lambda: float = 4.0
    normalization: str = "vit"  # or "deit"
    backbone: str = ""  # informational (e.g. "vit_tiny_patch16_384")
    class_names: tuple[str, ...] = ()
    class_colors: tuple[tuple[int, int, int], ...] = ()

    def __post_init__(self) -> None:
        def bad(msg: str) -> IsegError:
            return IsegError(f"segmenter config: {msg}")

        for name in ("d_model", "n_heads", "n_layers", "patch_size", "n_cls", "mlp_ratio", "channels"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise bad(f"{name} must be a positive integer, got {v!r}")
        if self.d_model % self.n_heads:
            raise bad(f"d_model {self.d_model} is not a multiple of n_heads {self.n_heads}")
        size = tuple(self.image_size)
        if len(size) != 2 or any(not isinstance(s, int) or s < 1 for s in size):
            raise bad(f"image_size must be two positive integers, got {self.image_size!r}")
        object.__setattr__(self, "image_size", (int(size[0]), int(size[1])))
        if size[0] % self.patch_size or size[1] % self.patch_size:
            raise bad(f"image_size {size} is not a multiple of patch_size {self.patch_size}")
        if self.decoder not in ("mask_transformer", "linear"):
            raise bad(f"decoder must be 'mask_transformer' or 'linear', got {self.decoder!r}")
        if self.dec_n_layers < 0:
            raise bad(f"dec_n_layers must be >= 0, got {self.dec_n_layers}")
        if self.decoder == "mask_transformer" and self.d_model % self.decoder_heads:
            raise bad(f"d_model {self.d_model} is not a multiple of dec_n_heads {self.decoder_heads}")
        if self.upsample not in ("bilinear", "nearest"):
            raise bad(f"upsample must be 'bilinear' or 'nearest', got {self.upsample!r}")
        if self.gelu not in ("erf", "lambda"):
            raise bad(f"gelu must be 'erf' or 'lambda', got {self.gelu!r}")
        if not (self.gelu_lambda > 0):
            raise bad(f"gelu_lambda must be > 0, got {self.gelu_lambda!r}")
        if self.normalization not in NORMALIZATION:
            raise bad(f"normalization must be one of {sorted(NORMALIZATION)}, got {self.normalization!r}")
        object.__setattr__(self, "class_names", tuple(str(n) for n in self.class_names))
        object.__setattr__(
            self, "class_colors", tuple(tuple(int(c) for c in rgb) for rgb in self.class_colors)
        )
        if self.class_names and len(self.class_names) != self.n_cls:
            raise bad(f"{len(self.class_names)} class names for n_cls {self.n_cls}")
        if self.class_colors and (
            len(self.class_colors) != self.n_cls
            or any(len(c) != 3 or not all(0 <= v <= 255 for v in c) for c in self.class_colors)
        ):
            raise bad(f"class_colors must be n_cls={self.n_cls} RGB triples in 0..255")

    @property
    def d_ff(self) -> int:
        return self.mlp_ratio * self.d_model

    @property
    def decoder_heads(self) -> int:
        return self.dec_n_heads if self.dec_n_heads is not None else max(1, self.d_model // 64)

    @property
    def grid(self) -> tuple[int, int]:
        """Patch grid of the training size: the shape ``pos_embed`` is stored for."""
        return self.image_size[0] // self.patch_size, self.image_size[1] // self.patch_size

    @property
    def n_extra_tokens(self) -> int:
        return 2 if self.distilled else 1

    def replace(self, **changes: Any) -> SegmenterConfig:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types (tuples become lists)."""
        d = dataclasses.asdict(self)
        d["image_size"] = list(self.image_size)
        d["class_names"] = list(self.class_names)
        d["class_colors"] = [list(c) for c in self.class_colors]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SegmenterConfig:
        """Inverse of :meth:`to_dict`; an unknown or missing key is an error naming it."""
        if not isinstance(d, dict):
            raise IsegError(f"segmenter config: expected a mapping, got {type(d).__name__}")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise IsegError(f"segmenter config: unknown key {unknown[0]!r}")
        required = [f.name for f in dataclasses.fields(cls) if f.default is dataclasses.MISSING]
        for name in required:
            if name not in d:
                raise IsegError(f"segmenter config: missing key {name!r}")
        kw = dict(d)
        try:
            kw["image_size"] = tuple(kw["image_size"])
            if "class_names" in kw:
                kw["class_names"] = tuple(kw["class_names"])
            if "class_colors" in kw:
                kw["class_colors"] = tuple(tuple(c) for c in kw["class_colors"])
        except TypeError as e:
            raise IsegError(f"segmenter config: bad value ({e})") from None
        return cls(**kw)


#: Backbone presets of the paper (P = 16, 512² ADE20K, 150 classes) and our synthetic-data model.
VARIANTS: dict[str, dict[str, Any]] = {
    "tiny": dict(d_model=192, n_heads=3, n_layers=12, patch_size=16, image_size=(512, 512), n_cls=150,
                 backbone="vit_tiny_patch16_384"),
    "small": dict(d_model=384, n_heads=6, n_layers=12, patch_size=16, image_size=(512, 512), n_cls=150,
                  backbone="vit_small_patch16_384"),
    "base": dict(d_model=768, n_heads=12, n_layers=12, patch_size=16, image_size=(512, 512), n_cls=150,
                 backbone="vit_base_patch16_384"),
    "large": dict(d_model=1024, n_heads=16, n_layers=24, patch_size=16, image_size=(512, 512), n_cls=150,
                  backbone="vit_large_patch16_384"),
    # Trained on iseg.synth (docs/model.md): I-Segmenter switches, small unused head.
    "builtin": dict(d_model=64, n_heads=2, n_layers=3, patch_size=4, image_size=(96, 96), n_cls=8,
                    dec_n_heads=2, encoder_head_classes=8, l2norm=False, upsample="nearest",
                    gelu="lambda", backbone="iseg_builtin"),
}


def preset(name: str, **overrides: Any) -> SegmenterConfig:
    """A :class:`SegmenterConfig` from a named variant, with any field overridden."""
    if name not in VARIANTS:
        raise IsegError(f"unknown model variant {name!r} (known: {', '.join(VARIANTS)})")
    return SegmenterConfig(**{**VARIANTS[name], **overrides})


# ----------------------------------------------------------------------------------------------
# Building blocks (names = the released state-dict names)


class LambdaGELU(nn.Module):
    """x·σ(1.702·clip(x, −λ, λ)): the float function λ-ShiftGELU computes in integers.

    Clipping the sigmoid's argument (not x) keeps the function x-linear outside ±λ, so outliers
    pass through unchanged instead of saturating an exponential.
    """

    def __init__(self, lam: float = 4.0) -> None:
        super().__init__()
        self.lam = float(lam)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(1.702 * x.clamp(-self.lam, self.lam))

    def extra_repr(self) -> str:
        return f"lam={self.lam}"


def make_gelu(cfg: SegmenterConfig) -> nn.Module:
    return LambdaGELU(cfg.gelu_lambda) if cfg.gelu == "lambda" else nn.GELU()


class PatchEmbedding(nn.Module):
    """Conv2d(C → d, P×P, stride P): (B, C, H, W) → (B, N, d), N = (H/P)(W/P), raster order."""

    def __init__(self, patch_size: int, channels: int, d_model: int) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Conv2d(channels, d_model, kernel_size=patch_size, stride=patch_size)

    def forward(self, im: torch.Tensor) -> torch.Tensor:
        return self.proj(im).flatten(2).transpose(1, 2)


class Attention(nn.Module):
    """Multi-head self-attention with a fused ``qkv`` and an explicit softmax (swappable)."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.scale = (dim // heads) ** -0.5
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, N, C = x.shape
        # (B, N, 3C) -> (3, B, heads, N, C/heads): the released layout of the fused weight
        qkv = self.qkv(x).reshape(B, N, 3, self.heads, C // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        attn = (q @ k.transpose(-2, -1)) * self.scale  # (B, heads, N, N)
        attn = attn.softmax(dim=-1)
        x = (attn @ v).transpose(1, 2).reshape(B, N, C)
        return self.proj(x)


class Mlp(nn.Module):
    """``fc1`` → GELU → ``fc2`` (Segmenter calls it FeedForward; the keys are ``mlp.fc1/fc2``)."""

    def __init__(self, dim: int, hidden: int, act: nn.Module) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = act
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    """Pre-norm transformer block: x += attn(norm1(x)); x += mlp(norm2(x))."""

    def __init__(self, dim: int, heads: int, hidden: int, act: nn.Module) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=LN_EPS)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim, eps=LN_EPS)
        self.mlp = Mlp(dim, hidden, act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


def resize_pos_embed(
    pos_embed: torch.Tensor, old_grid: tuple[int, int], new_grid: tuple[int, int], n_extra: int
) -> torch.Tensor:
    """Resize (1, n_extra + Ho·Wo, d) to (1, n_extra + Hn·Wn, d): bilinear on the grid.

    The extra (cls/dist) tokens are kept as they are; ``align_corners=False`` as in Segmenter.
    """
    if tuple(old_grid) == tuple(new_grid):
        return pos_embed
    extra, grid = pos_embed[:, :n_extra], pos_embed[:, n_extra:]
    d = pos_embed.shape[-1]
    if grid.shape[1] != old_grid[0] * old_grid[1]:
        raise IsegError(f"pos_embed has {grid.shape[1]} grid tokens, not {old_grid[0]}x{old_grid[1]}")
    grid = grid.reshape(1, old_grid[0], old_grid[1], d).permute(0, 3, 1, 2)
    grid = F.interpolate(grid, size=tuple(new_grid), mode="bilinear", align_corners=False)
    grid = grid.permute(0, 2, 3, 1).reshape(1, new_grid[0] * new_grid[1], d)
    return torch.cat([extra, grid], dim=1)


def _init_weights(m: nn.Module) -> None:
    if isinstance(m, nn.Linear):
        nn.init.trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.LayerNorm):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)


class VisionTransformer(nn.Module):
    """The ViT encoder: tokens (B, n_extra + N, d) after the final ``norm``."""

    def __init__(self, cfg: SegmenterConfig) -> None:
        super().__init__()
        d = cfg.d_model
        self.patch_size = cfg.patch_size
        self.grid = cfg.grid
        self.n_extra = cfg.n_extra_tokens
        self.patch_embed = PatchEmbedding(cfg.patch_size, cfg.channels, d)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, d))
        if cfg.distilled:
            self.dist_token = nn.Parameter(torch.zeros(1, 1, d))
        self.pos_embed = nn.Parameter(torch.zeros(1, self.n_extra + self.grid[0] * self.grid[1], d))
        self.blocks = nn.ModuleList(
            [Block(d, cfg.n_heads, cfg.d_ff, make_gelu(cfg)) for _ in range(cfg.n_layers)]
        )
        self.norm = nn.LayerNorm(d, eps=LN_EPS)
        self.head = nn.Linear(d, cfg.encoder_head_classes)  # unused for segmentation
        if cfg.distilled:
            self.head_dist = nn.Linear(d, cfg.encoder_head_classes)
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        if cfg.distilled:
            nn.init.trunc_normal_(self.dist_token, std=0.02)
        self.apply(_init_weights)

    def forward(self, im: torch.Tensor) -> torch.Tensor:
        B, _, H, W = im.shape
        x = self.patch_embed(im)  # (B, N, d)
        extra = [self.cls_token.expand(B, -1, -1)]
        if self.n_extra == 2:
            extra.append(self.dist_token.expand(B, -1, -1))
        x = torch.cat([*extra, x], dim=1)
        new_grid = (H // self.patch_size, W // self.patch_size)
        x = x + resize_pos_embed(self.pos_embed, self.grid, new_grid, self.n_extra)
        for blk in self.blocks:
            x = blk(x)
        return self.norm(x)


class DecoderLinear(nn.Module):
    """``head`` Linear(d, n_cls) on the patch tokens → (B, n_cls, H/P, W/P)."""

    def __init__(self, cfg: SegmenterConfig) -> None:
        super().__init__()
        self.patch_size = cfg.patch_size
        self.head = nn.Linear(cfg.d_model, cfg.n_cls)
        self.apply(_init_weights)

    def forward(self, x: torch.Tensor, im_size: tuple[int, int]) -> torch.Tensor:
        gh, gw = im_size[0] // self.patch_size, im_size[1] // self.patch_size
        x = self.head(x)  # (B, N, n_cls)
        return x.transpose(1, 2).reshape(x.shape[0], -1, gh, gw)


class MaskTransformer(nn.Module):
    """Segmenter's mask-transformer decoder; class embeddings are appended AFTER the patches."""

    def __init__(self, cfg: SegmenterConfig) -> None:
        super().__init__()
        d = cfg.d_model
        self.patch_size = cfg.patch_size
        self.n_cls = cfg.n_cls
        self.l2norm = cfg.l2norm
        self.blocks = nn.ModuleList(
            [Block(d, cfg.decoder_heads, cfg.d_ff, make_gelu(cfg)) for _ in range(cfg.dec_n_layers)]
        )
        self.cls_emb = nn.Parameter(torch.randn(1, cfg.n_cls, d))
        self.proj_dec = nn.Linear(d, d)
        scale = d**-0.5
        self.proj_patch = nn.Parameter(scale * torch.randn(d, d))  # used as x @ W (not W^T)
        self.proj_classes = nn.Parameter(scale * torch.randn(d, d))
        self.decoder_norm = nn.LayerNorm(d, eps=LN_EPS)
        self.mask_norm = nn.LayerNorm(cfg.n_cls, eps=LN_EPS)
        self.apply(_init_weights)
        nn.init.trunc_normal_(self.cls_emb, std=0.02)

    def forward(self, x: torch.Tensor, im_size: tuple[int, int]) -> torch.Tensor:
        gh, gw = im_size[0] // self.patch_size, im_size[1] // self.patch_size
        x = self.proj_dec(x)
        x = torch.cat([x, self.cls_emb.expand(x.shape[0], -1, -1)], dim=1)
        for blk in self.blocks:
            x = blk(x)
        x = self.decoder_norm(x)
        patches, classes = x[:, : -self.n_cls], x[:, -self.n_cls :]
        patches = patches @ self.proj_patch
        classes = classes @ self.proj_classes
        if self.l2norm:
            patches = patches / patches.norm(dim=-1, keepdim=True)
            classes = classes / classes.norm(dim=-1, keepdim=True)
        masks = self.mask_norm(patches @ classes.transpose(1, 2))  # (B, N, n_cls)
        return masks.transpose(1, 2).reshape(x.shape[0], self.n_cls, gh, gw)


class Segmenter(nn.Module):
    """Encoder + decoder; ``forward`` takes a normalised float image (B, 3, H, W), any H and W.

    It pads right/bottom with zeros to multiples of P, runs, upsamples the logits to the padded
    size and crops back, returning logits (B, n_cls, H, W). :meth:`normalize` and
    :meth:`predict` take raw uint8 pixels.
    """

    def __init__(self, cfg: SegmenterConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.n_cls = cfg.n_cls
        self.patch_size = cfg.patch_size
        self.encoder = VisionTransformer(cfg)
        self.decoder = MaskTransformer(cfg) if cfg.decoder == "mask_transformer" else DecoderLinear(cfg)
        mean, std = NORMALIZATION[cfg.normalization]
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)

    def forward(self, im: torch.Tensor) -> torch.Tensor:
        H0, W0 = im.shape[-2:]
        P = self.patch_size
        pad_h, pad_w = -H0 % P, -W0 % P
        if pad_h or pad_w:
            im = F.pad(im, (0, pad_w, 0, pad_h), value=0.0)
        H, W = im.shape[-2:]
        x = self.encoder(im)[:, self.cfg.n_extra_tokens :]
        masks = self.decoder(x, (H, W))
        if self.cfg.upsample == "nearest":
            masks = F.interpolate(masks, size=(H, W), mode="nearest")
        else:
            masks = F.interpolate(masks, size=(H, W), mode="bilinear", align_corners=False)
        return masks[:, :, :H0, :W0]

    @torch.no_grad()
    def sliding_logits(self, im: torch.Tensor, window: int, stride: int) -> torch.Tensor:
        """Segmenter's evaluation on large images: average the logits of window×window crops.

        Windows start every ``stride`` pixels, the last one flush with the border, so every pixel
        is covered; a side shorter than ``window`` is one (padded) window. Returns (B, n_cls, H, W).
        """
        if window < 1 or not 1 <= stride <= window:
            raise IsegError(f"sliding window needs 1 <= stride <= window, got {window} and {stride}")
        B, _, H, W = im.shape

        def starts(n: int) -> list[int]:
            if n <= window:
                return [0]
            s = list(range(0, n - window, stride))
            return s + [n - window]

        out = im.new_zeros(B, self.n_cls, H, W)
        count = im.new_zeros(1, 1, H, W)
        for y in starts(H):
            for x in starts(W):
                crop = im[:, :, y : y + window, x : x + window]
                out[:, :, y : y + crop.shape[2], x : x + crop.shape[3]] += self.forward(crop)
                count[:, :, y : y + crop.shape[2], x : x + crop.shape[3]] += 1
        return out / count

    def normalize(self, pixels: torch.Tensor) -> torch.Tensor:
        """uint8-valued (B, 3, H, W) → (pixels/255 − mean)/std, the model's input."""
        return (pixels.float() / 255.0 - self.mean) / self.std

    @torch.no_grad()
    def predict(self, image: np.ndarray) -> np.ndarray:
        """One RGB uint8 image (H, W, 3) → labels uint8 (H, W), argmax ties to the lowest class."""
        if image.ndim != 3 or image.shape[2] != 3:
            raise IsegError(f"expected an RGB image of shape (H, W, 3), got {image.shape}")
        x = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None]
        logits = self.forward(self.normalize(x.to(self.mean.device)))
        return logits[0].argmax(0).to(torch.uint8).cpu().numpy()


def param_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
