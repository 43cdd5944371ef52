"""Reading and writing floating-point Segmenter weights, without pickle code execution.

Three layouts:

- **ours** (:func:`save_fp` / :func:`load_fp`): one ``.safetensors`` file holding the state
  dict, with metadata ``format = "iseg-fp32"``, ``format_version`` and ``config`` (the JSON of
  :class:`~iseg.model.segmenter.SegmenterConfig`: every hyper-parameter, the switches, the class
  names and colours), plus an optional ``training`` JSON (how it was trained, its val metrics).
- **the Segmenter release** (:func:`load_segmenter_release`): ``checkpoint.pth`` (a dict with
  ``model`` = the state dict, ``n_cls``, ``epoch``, ...) and ``variant.yml`` beside it. The YAML
  holds a ``!!python/tuple`` tag (``image_size``), read by a ``yaml.SafeLoader`` subclass that
  accepts that one tag; nothing goes through the unsafe loader.
- **timm ViT** (:func:`load_timm_encoder`): an encoder state dict (keys without ``encoder.``),
  from ``.pth`` or ``.safetensors``; ``pos_embed`` is resized to the model's grid.

All ``.pth`` files are read with ``torch.load(weights_only=True)``. Every mismatch (unknown
layout, first missing or unexpected key, first wrong shape) is an :class:`IsegError` naming it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
import yaml
from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open
from safetensors.torch import save as save_bytes

from iseg.errors import IsegError
from iseg.imageio import atomic_write

from .segmenter import NORMALIZATION, Segmenter, SegmenterConfig, resize_pos_embed

__all__ = [
    "FP_FORMAT",
    "FP_FORMAT_VERSION",
    "load_fp",
    "load_model",
    "load_segmenter_release",
    "load_state_dict_checked",
    "load_timm_encoder",
    "read_fp_metadata",
    "read_variant",
    "save_fp",
]

FP_FORMAT = "iseg-fp32"
FP_FORMAT_VERSION = 1


# ----------------------------------------------------------------------------------------------
# our format


def write_safetensors(path: str | os.PathLike[str], tensors: dict[str, torch.Tensor], meta: dict[str, str]) -> None:
    """``tensors`` and ``meta`` as one ``.safetensors`` at ``path`` (atomically), the same bytes for the same
    content: safetensors keeps the metadata in a hash map whose order changes from process to process, so its
    header is written again with sorted keys (the data and their offsets unchanged; padded to 8 bytes, as
    safetensors pads it)."""
    blob = save_bytes(tensors, metadata=meta)
    n = int.from_bytes(blob[:8], "little")
    header = json.dumps(json.loads(blob[8:8 + n]), sort_keys=True, separators=(",", ":")).encode()
    header += b" " * (-len(header) % 8)
    data = memoryview(blob)[8 + n:]

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            f.write(len(header).to_bytes(8, "little"))
            f.write(header)
            f.write(data)

    atomic_write(Path(path), write)


def save_fp(model: Segmenter, path: str | os.PathLike[str], training: dict[str, Any] | None = None) -> None:
    """Write ``model`` as one ``.safetensors`` (float32) with its config in the metadata.

    Written to a temporary sibling and renamed, so a reader never sees half a file.
    """
    path = Path(path)
    tensors = {k: v.detach().to(torch.float32).contiguous().clone() for k, v in model.state_dict().items()}
    meta = {
        "format": FP_FORMAT,
        "format_version": str(FP_FORMAT_VERSION),
        "config": json.dumps(model.cfg.to_dict(), sort_keys=True),
    }
    if training is not None:
        meta["training"] = json.dumps(training, sort_keys=True)
    write_safetensors(path, tensors, meta)


def read_fp_metadata(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The decoded metadata of one of our FP files: ``{"config": SegmenterConfig, "training": dict}``."""
    meta = _safetensors_metadata(path)
    if meta.get("format") != FP_FORMAT:
        raise IsegError(
            f"{path}: not an iseg FP model (metadata format {meta.get('format')!r}, expected {FP_FORMAT!r})"
        )
    version = meta.get("format_version")
    if version != str(FP_FORMAT_VERSION):
        raise IsegError(
            f"{path}: FP model format version {version!r} is not supported (this iseg reads "
            f"{FP_FORMAT_VERSION}); re-export it with a matching iseg"
        )
    if "config" not in meta:
        raise IsegError(f"{path}: metadata has no 'config'")
    try:
        cfg_doc = json.loads(meta["config"])
        training = json.loads(meta["training"]) if "training" in meta else {}
    except ValueError as e:
        raise IsegError(f"{path}: malformed JSON in the metadata ({e})") from None
    return {"config": SegmenterConfig.from_dict(cfg_doc), "training": training}


def load_fp(path: str | os.PathLike[str]) -> Segmenter:
    """Rebuild a :class:`Segmenter` from a file written by :func:`save_fp` (eval mode)."""
    cfg = read_fp_metadata(path)["config"]
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError) as e:
        raise IsegError(f"{path}: cannot read tensors ({e})") from None
    model = Segmenter(cfg)
    load_state_dict_checked(model, state, str(path))
    return model.eval()


def _safetensors_metadata(path: str | os.PathLike[str]) -> dict[str, str]:
    if not Path(path).is_file():
        raise IsegError(f"model file {path} does not exist")
    try:
        with safe_open(str(path), framework="pt") as f:
            return dict(f.metadata() or {})
    except (SafetensorError, OSError) as e:
        raise IsegError(f"{path}: not a readable .safetensors file ({e})") from None


# ----------------------------------------------------------------------------------------------
# shared checks


def load_state_dict_checked(model: torch.nn.Module, state: dict[str, Any], source: str) -> None:
    """``model.load_state_dict(state)`` after naming the first missing/unexpected key or bad shape."""
    expected = model.state_dict()
    for key in expected:
        if key not in state:
            raise IsegError(f"{source}: missing key {key!r}")
    for key in state:
        if key not in expected:
            raise IsegError(f"{source}: unexpected key {key!r} (not in the Segmenter layout)")
    for key, ref in expected.items():
        val = state[key]
        if not isinstance(val, torch.Tensor):
            raise IsegError(f"{source}: {key!r} is a {type(val).__name__}, not a tensor")
        if tuple(val.shape) != tuple(ref.shape):
            raise IsegError(
                f"{source}: {key!r} has shape {tuple(val.shape)}, the model expects {tuple(ref.shape)}"
            )
        if not val.is_floating_point():
            raise IsegError(f"{source}: {key!r} has dtype {val.dtype}, expected floating point")
    model.load_state_dict({k: v.to(torch.float32) for k, v in state.items()})


def _torch_load(path: Path) -> Any:
    """``torch.load(weights_only=True)``: tensors and plain containers only, no code runs."""
    if not path.is_file():
        raise IsegError(f"checkpoint {path} does not exist")
    try:
        return torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - torch raises many types (UnpicklingError, RuntimeError, ...)
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise IsegError(f"{path}: cannot be read as a weights-only torch file ({first})") from None


# ----------------------------------------------------------------------------------------------
# the Segmenter release: checkpoint.pth + variant.yml


class _VariantLoader(yaml.SafeLoader):
    """SafeLoader plus exactly one tag: ``!!python/tuple`` (how ``yaml.dump`` writes a tuple)."""


_VariantLoader.add_constructor(
    "tag:yaml.org,2002:python/tuple",
    lambda loader, node: tuple(loader.construct_sequence(node, deep=True)),
)


def read_variant(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Parse a Segmenter ``variant.yml`` (safe loader + the ``!!python/tuple`` tag only)."""
    path = Path(path)
    if not path.is_file():
        raise IsegError(f"variant file {path} does not exist (it belongs beside checkpoint.pth)")
    try:
        doc = yaml.load(path.read_text(encoding="utf-8"), Loader=_VariantLoader)  # noqa: S506 - safe subclass
    except yaml.YAMLError as e:
        first = str(e).strip().splitlines()[0]
        raise IsegError(f"{path}: not a readable variant file ({first})") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("net_kwargs"), dict):
        raise IsegError(f"{path}: no 'net_kwargs' mapping (not a Segmenter variant.yml)")
    return doc


def _config_from_variant(
    net: dict[str, Any], state: dict[str, Any], n_cls: Any, source: str
) -> SegmenterConfig:
    for key in ("d_model", "n_heads", "n_layers", "patch_size", "image_size", "decoder"):
        if key not in net:
            raise IsegError(f"{source}: net_kwargs has no {key!r}")
    dec = net["decoder"]
    if not isinstance(dec, dict) or "name" not in dec:
        raise IsegError(f"{source}: net_kwargs.decoder has no 'name'")
    if dec["name"] not in ("mask_transformer", "linear"):
        raise IsegError(f"{source}: decoder {dec['name']!r} is not supported (mask_transformer, linear)")
    size = net["image_size"]
    if isinstance(size, int):
        size = (size, size)
    n_cls = net.get("n_cls", n_cls)
    if n_cls is None:
        raise IsegError(f"{source}: neither net_kwargs nor the checkpoint gives 'n_cls'")
    backbone = str(net.get("backbone", ""))
    norm = net.get("normalization", "deit" if "deit" in backbone else "vit")
    if norm not in NORMALIZATION:
        raise IsegError(f"{source}: unknown normalization {norm!r}")
    d = net["d_model"]
    fc1 = state.get("encoder.blocks.0.mlp.fc1.weight")
    head = state.get("encoder.head.weight")
    mlp_ratio = fc1.shape[0] // d if isinstance(fc1, torch.Tensor) and isinstance(d, int) and d > 0 else 4
    try:
        return SegmenterConfig(
            d_model=d,
            n_heads=net["n_heads"],
            n_layers=net["n_layers"],
            patch_size=net["patch_size"],
            image_size=tuple(size),
            n_cls=int(n_cls),
            mlp_ratio=max(1, mlp_ratio),
            decoder=dec["name"],
            dec_n_layers=int(dec.get("n_layers", 2)) if dec["name"] == "mask_transformer" else 2,
            distilled=bool(net.get("distilled", "encoder.dist_token" in state)),
            encoder_head_classes=int(head.shape[0]) if isinstance(head, torch.Tensor) else 1000,
            normalization=norm,
            backbone=backbone,
        )
    except (TypeError, ValueError) as e:
        raise IsegError(f"{source}: bad net_kwargs ({e})") from None


#: Config fields that do not change any weight shape: safe to override on loaded weights.
_SWITCHES = frozenset({"l2norm", "upsample", "gelu", "gelu_lambda", "class_names", "class_colors"})


def load_segmenter_release(path: str | os.PathLike[str], **switches: Any) -> Segmenter:
    """Load an original Segmenter ``checkpoint.pth`` (or its folder) with ``variant.yml`` beside it.

    ``switches`` override config fields that do not change the weights' shapes (``l2norm``,
    ``upsample``, ``gelu``, ...), e.g. to evaluate a released model with I-Segmenter's switches.
    """
    path = Path(path)
    ckpt_path = path / "checkpoint.pth" if path.is_dir() else path
    variant = read_variant(ckpt_path.parent / "variant.yml")
    doc = _torch_load(ckpt_path)
    if not isinstance(doc, dict) or "model" not in doc or not isinstance(doc["model"], dict):
        raise IsegError(f"{ckpt_path}: not a Segmenter checkpoint (expected a dict holding 'model')")
    state = doc["model"]
    variant_path = str(ckpt_path.parent / "variant.yml")
    cfg = _config_from_variant(variant["net_kwargs"], state, doc.get("n_cls"), variant_path)
    if "n_cls" in doc and doc["n_cls"] != cfg.n_cls:
        raise IsegError(f"{ckpt_path}: n_cls {doc['n_cls']} differs from variant.yml's {cfg.n_cls}")
    if switches:
        bad = sorted(set(switches) - _SWITCHES)
        if bad:
            raise IsegError(
                f"{bad[0]!r} cannot be overridden on a released checkpoint (only {sorted(_SWITCHES)})"
            )
        cfg = cfg.replace(**switches)
    model = Segmenter(cfg)
    load_state_dict_checked(model, state, str(ckpt_path))
    return model.eval()


# ----------------------------------------------------------------------------------------------
# timm ViT encoder weights


def _read_state_dict(path: Path) -> dict[str, Any]:
    if path.suffix == ".safetensors":
        _safetensors_metadata(path)  # existence + readability, with our messages
        try:
            return load_file(str(path))
        except (SafetensorError, OSError) as e:
            raise IsegError(f"{path}: cannot read tensors ({e})") from None
    doc = _torch_load(path)
    if isinstance(doc, dict):
        for wrapper in ("model", "state_dict"):  # DeiT/older releases wrap the state dict
            if isinstance(doc.get(wrapper), dict):
                return doc[wrapper]
        return doc
    raise IsegError(f"{path}: expected a state dict, found a {type(doc).__name__}")


def load_timm_encoder(
    model: Segmenter, weights: str | os.PathLike[str] | dict[str, Any], strict_head: bool = False
) -> list[str]:
    """Copy timm ViT weights into ``model.encoder``; return notes about what was adapted.

    ``pos_embed`` trained on another grid (e.g. 14×14 at 224 px) is resized bilinearly to the
    model's grid, keeping the cls/dist tokens, as Segmenter does when it starts from ImageNet
    weights. The classification ``head`` is unused: one of another size (ImageNet-21k, or none)
    is skipped with a note unless ``strict_head``.
    """
    source = str(weights) if not isinstance(weights, dict) else "timm state dict"
    state = dict(weights) if isinstance(weights, dict) else _read_state_dict(Path(weights))
    if any(k.startswith("encoder.") for k in state):
        raise IsegError(f"{source}: keys start with 'encoder.': a Segmenter checkpoint, not timm weights")
    enc = model.encoder
    notes: list[str] = []
    # timm's `fc_norm` is Identity for token pooling and has no parameters; drop empty extras.
    pos = state.get("pos_embed")
    if isinstance(pos, torch.Tensor) and pos.ndim == 3 and tuple(pos.shape) != tuple(enc.pos_embed.shape):
        n_grid = pos.shape[1] - enc.n_extra
        side = int(round(n_grid**0.5))
        if side * side != n_grid or pos.shape[2] != enc.pos_embed.shape[2]:
            raise IsegError(
                f"{source}: 'pos_embed' has shape {tuple(pos.shape)}, not a square grid the model "
                f"(expects {tuple(enc.pos_embed.shape)}) can resize"
            )
        state["pos_embed"] = resize_pos_embed(pos, (side, side), enc.grid, enc.n_extra)
        notes.append(f"pos_embed resized from {side}x{side} to {enc.grid[0]}x{enc.grid[1]}")
    own = enc.state_dict()
    for key in ("head.weight", "head.bias", "head_dist.weight", "head_dist.bias"):
        if key not in own:
            continue
        val = state.get(key)
        if val is None or (not strict_head and tuple(val.shape) != tuple(own[key].shape)):
            state[key] = own[key]
            why = "absent" if val is None else "other size"
            notes.append(f"{key} kept from the model ({why} in the source)")
    load_state_dict_checked(enc, state, source)
    return notes


# ----------------------------------------------------------------------------------------------
# one entry point for the CLI


def load_model(path: str | os.PathLike[str]) -> Segmenter:
    """Any FP model: our ``.safetensors``, or a Segmenter ``checkpoint.pth`` / folder holding one."""
    p = Path(path)
    if p.suffix == ".safetensors":
        return load_fp(p)
    if (p.is_dir() and (p / "checkpoint.pth").is_file()) or p.suffix in (".pth", ".pt"):
        return load_segmenter_release(p)
    if not p.exists():
        raise IsegError(f"model {p} does not exist")
    raise IsegError(
        f"{p}: unknown model layout (expected an iseg .safetensors, or a Segmenter checkpoint.pth "
        f"with variant.yml beside it)"
    )
