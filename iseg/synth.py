"""Seeded synthetic segmentation data: textured scenes of coloured shapes and their label maps.

No dataset can be downloaded where this project is built and tested, so every model is trained and
checked on scenes generated here. The scenes are made to be *learnable* by a small ViT (patch 8 or
16 at 64-128 px): each object class has its own shape, hue and texture (all in the object's own
rotated frame, so they survive rotation and scale), objects span several patches, and the background
is muted (low saturation) so that colour alone already separates most of it. Nuisances a real model
must cope with are present too: textured backgrounds, occlusion, colour jitter, global brightness
change and pixel noise.

Everything is pure numpy and deterministic: one integer seed gives the same bytes on every machine
(``numpy.random.Generator`` / PCG64 keeps its streams stable across numpy releases).

Label maps are ``uint8`` ``H x W`` holding class indices ``0 .. NUM_CLASSES-1`` (``0`` is
background); :data:`IGNORE_INDEX` (255) marks "not annotated" pixels (synthetic scenes have none,
real ADE20K annotations do).

Two folder layouts are written and read (:func:`write_dataset`, :func:`read_folder`):

* ``plain``: ``images/0000.png`` + ``labels/0000.png`` (labels as a palette PNG whose indices are
  the class indices, so they open as a colour picture in any viewer).
* ``ade20k``: ``images/{training,validation}/ADE_{train,val}_00000001.jpg`` +
  ``annotations/{training,validation}/ADE_....png`` with the ADE20K convention: annotation value
  ``0`` means "other / ignore" and class ``c`` is stored as ``c + 1`` (so our background, class 0,
  is stored as 1). Reading subtracts the offset and maps stored 0 to :data:`IGNORE_INDEX` — the same
  as mmsegmentation's ``reduce_zero_label`` — so real ADE20K folders load with the same code.

Both layouts also get a ``classes.json`` (names, colours, label offset, ignore index).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from iseg import cli
from iseg.errors import IsegError
from iseg.imageio import atomic_write, check_output_dir

__all__ = [
    "ADE_LABEL_OFFSET",
    "CLASS_COLORS",
    "CLASS_NAMES",
    "IGNORE_INDEX",
    "NUM_CLASSES",
    "add_arguments",
    "colorize",
    "make_sample",
    "make_split",
    "parse_size",
    "read_folder",
    "folder_samples",
    "FolderSample",
    "run",
    "sample_seed",
    "synth_main",
    "write_dataset",
]

#: Class names; index = class id. 0 is the (textured, muted) background.
CLASS_NAMES: tuple[str, ...] = (
    "background",
    "disc",
    "rectangle",
    "triangle",
    "ring",
    "stripes",
    "blob",
    "cross",
)
#: Base RGB colour of each class. Objects are drawn near these hues (with jitter) so the colours also
#: serve as the visualisation palette. Background is grey: the real background is muted noise.
CLASS_COLORS: tuple[tuple[int, int, int], ...] = (
    (128, 128, 128),  # background: muted grey-brown textures
    (220, 45, 45),  # disc: red, sphere shading
    (45, 80, 225),  # rectangle: blue, fine checkerboard
    (40, 185, 60),  # triangle: green, linear shading
    (235, 215, 40),  # ring: yellow, concentric bands
    (170, 55, 205),  # stripes: purple, two-tone stripes
    (40, 205, 215),  # blob: cyan, speckle
    (245, 135, 25),  # cross: orange, dot grid
)
NUM_CLASSES: int = len(CLASS_NAMES)
#: Label value for "not annotated"; loss functions and metrics skip it.
IGNORE_INDEX: int = 255
#: ADE20K stores class ``c`` as ``c + 1`` and uses 0 for "other / ignore".
ADE_LABEL_OFFSET: int = 1

_MIN_SIDE = 8
_MAX_SIDE = 8192
_SPLITS = ("train", "val")
_ADE_SPLITS = {"train": ("training", "ADE_train_"), "val": ("validation", "ADE_val_")}
_LAYOUTS = ("plain", "ade20k")
_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
_JPEG_QUALITY = 95
_FORMAT_VERSION = 1


# --------------------------------------------------------------------------------------------
# validation helpers


def _check_size(size: object) -> tuple[int, int]:
    """Return ``(H, W)`` or raise: sizes arrive from users and CLI strings."""
    if not isinstance(size, (tuple, list)) or len(size) != 2:
        raise IsegError(f"image size must be (height, width), got {size!r}")
    h, w = size
    for name, v in (("height", h), ("width", w)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
            raise IsegError(f"image {name} must be an integer, got {v!r}")
        if not _MIN_SIDE <= int(v) <= _MAX_SIDE:
            raise IsegError(f"image {name} {v} is outside {_MIN_SIDE}..{_MAX_SIDE}")
    return int(h), int(w)


def _check_nonneg_int(name: str, v: object) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or int(v) < 0:
        raise IsegError(f"{name} must be a non-negative integer, got {v!r}")
    return int(v)


def parse_size(text: str) -> tuple[int, int]:
    """Parse ``"HxW"`` (e.g. ``"96x128"``: 96 rows, 128 columns) or ``"N"`` (square) into ``(H, W)``."""
    parts = text.strip().lower().split("x")
    if len(parts) == 1:
        parts = parts * 2
    if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
        raise IsegError(f"bad --size {text!r}: expected HxW such as 128x96")
    return _check_size((int(parts[0]), int(parts[1])))


# --------------------------------------------------------------------------------------------
# drawing


def _smooth_noise(rng: np.random.Generator, h: int, w: int, cells: int, channels: int) -> np.ndarray:
    """Value noise: a coarse random grid upsampled with smoothstep-bilinear weights, ``(h, w, c)``.

    Cheap (a handful of gathers) and gives the blotchy low-frequency texture of real backgrounds.
    """
    gh = max(1, round(cells * h / max(h, w)))
    gw = max(1, round(cells * w / max(h, w)))
    grid = rng.standard_normal((gh + 1, gw + 1, channels)).astype(np.float32)
    y = np.linspace(0.0, gh, h, endpoint=False, dtype=np.float32)
    x = np.linspace(0.0, gw, w, endpoint=False, dtype=np.float32)
    y0 = y.astype(np.int64)
    x0 = x.astype(np.int64)
    fy = y - y0
    fx = x - x0
    fy = (fy * fy * (3 - 2 * fy))[:, None, None]
    fx = (fx * fx * (3 - 2 * fx))[None, :, None]
    top = grid[y0][:, x0] * (1 - fx) + grid[y0][:, x0 + 1] * fx
    bot = grid[y0 + 1][:, x0] * (1 - fx) + grid[y0 + 1][:, x0 + 1] * fx
    return top * (1 - fy) + bot * fy


def _background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Muted textured background ``(h, w, 3)`` float32: grey-brown base, blotches, gradient, tiles."""
    base = rng.uniform(70.0, 170.0) + rng.normal(0.0, 10.0, size=3)
    img = np.empty((h, w, 3), np.float32)
    img[:] = base.astype(np.float32)
    # Blotches: mostly luminance with a little per-channel tint so saturation stays low.
    lum = _smooth_noise(rng, h, w, int(rng.integers(2, 9)), 1)
    tint = _smooth_noise(rng, h, w, int(rng.integers(2, 6)), 3)
    img += lum * np.float32(rng.uniform(10.0, 28.0)) + tint * np.float32(6.0)
    # Linear illumination gradient in a random direction.
    ang = rng.uniform(0.0, 2 * np.pi)
    yy = np.linspace(-0.5, 0.5, h, dtype=np.float32)[:, None]
    xx = np.linspace(-0.5, 0.5, w, dtype=np.float32)[None, :]
    img += (np.float32(rng.uniform(0.0, 50.0)) * (np.cos(ang) * xx + np.sin(ang) * yy))[..., None]
    # Sometimes a floor-tile pattern, low contrast.
    if rng.random() < 0.35:
        period = int(rng.integers(6, 24))
        tiles = ((np.arange(h)[:, None] // period + np.arange(w)[None, :] // period) % 2).astype(np.float32)
        img += (tiles * np.float32(rng.uniform(6.0, 18.0)))[..., None]
    return img


def _texture(cls: int, u: np.ndarray, v: np.ndarray, r2: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Per-class brightness factor in the object frame (``u``, ``v`` in object radii).

    Textures differ by statistic, not only by hue, so a model can use either cue.
    """
    if cls == 1:  # disc: sphere shading with an off-centre highlight
        return 0.7 + 0.45 * (1.0 - r2) + 0.25 * np.exp(-((u + 0.35) ** 2 + (v + 0.35) ** 2) * 6.0)
    if cls == 2:  # rectangle: fine checkerboard
        return 1.0 + 0.18 * np.sign(np.sin(np.pi * u / 0.2) * np.sin(np.pi * v / 0.2))
    if cls == 3:  # triangle: linear shading along its axis
        return 0.95 + 0.2 * v
    if cls == 4:  # ring: concentric bands
        return 1.0 + 0.15 * np.cos(np.sqrt(r2) * 2 * np.pi * 4.0)
    if cls == 5:  # stripes: strong two-tone stripes (purple and pale lilac handled by the factor)
        return np.where(np.sin(2 * np.pi * 2.5 * u) > 0, 1.2, 0.6)
    if cls == 6:  # blob: per-pixel speckle
        return 1.0 + rng.uniform(-0.22, 0.22, size=u.shape).astype(np.float32)
    # cross: dot grid
    return 1.0 + 0.2 * np.cos(2 * np.pi * 3.0 * u) * np.cos(2 * np.pi * 3.0 * v)


_TRI_NORMALS = np.array([[np.cos(a), np.sin(a)] for a in np.deg2rad([-90.0, 30.0, 150.0])], np.float32)


def _shape_mask(cls: int, u: np.ndarray, v: np.ndarray, r2: np.ndarray, params: np.ndarray) -> np.ndarray:
    """Inside-test of class ``cls`` in the object frame; ``params`` are per-object shape draws."""
    if cls == 1:  # disc (slightly elliptic)
        return u * u + (v / params[0]) ** 2 <= 1.0
    if cls == 2:  # rectangle, aspect 0.45..1
        return (np.abs(u) <= 1.0) & (np.abs(v) <= params[1])
    if cls == 3:  # equilateral triangle of circumradius 1 (inradius 0.5)
        return (
            (u * _TRI_NORMALS[0, 0] + v * _TRI_NORMALS[0, 1] <= 0.5)
            & (u * _TRI_NORMALS[1, 0] + v * _TRI_NORMALS[1, 1] <= 0.5)
            & (u * _TRI_NORMALS[2, 0] + v * _TRI_NORMALS[2, 1] <= 0.5)
        )
    if cls == 4:  # ring (annulus)
        return (r2 <= 1.0) & (r2 >= params[2] ** 2)
    if cls == 5:  # striped ellipse
        return u * u + (v / 0.75) ** 2 <= 1.0
    if cls == 6:  # blob: wobbly radius
        theta = np.arctan2(v, u)
        rad = 0.8 + 0.15 * np.sin(3 * theta + params[3]) + 0.1 * np.sin(5 * theta + params[4])
        return r2 <= rad * rad
    # cross (plus sign)
    return ((np.abs(u) <= 1.0) & (np.abs(v) <= 0.32)) | ((np.abs(u) <= 0.32) & (np.abs(v) <= 1.0))


def _draw_object(img: np.ndarray, labels: np.ndarray, cls: int, rng: np.random.Generator) -> None:
    """Paint one object of class ``cls`` over ``img``/``labels`` in place (occluding earlier ones)."""
    h, w = labels.shape
    side = min(h, w)
    radius = float(rng.uniform(0.15, 0.32) * side)
    cy = float(rng.uniform(0.08, 0.92) * h)
    cx = float(rng.uniform(0.08, 0.92) * w)
    ang = float(rng.uniform(0.0, 2 * np.pi))
    params = np.array(
        [
            rng.uniform(0.8, 1.2),
            rng.uniform(0.45, 1.0),
            rng.uniform(0.5, 0.65),
            rng.uniform(0, 2 * np.pi),
            rng.uniform(0, 2 * np.pi),
        ],
        np.float32,
    )
    colour = np.asarray(CLASS_COLORS[cls], np.float32) + rng.normal(0.0, 12.0, 3).astype(np.float32)
    colour *= np.float32(rng.uniform(0.85, 1.15))
    # Work on the bounding box only: keeps 512^2 scenes fast.
    reach = radius * 1.25
    y0, y1 = max(0, int(cy - reach)), min(h, int(np.ceil(cy + reach)) + 1)
    x0, x1 = max(0, int(cx - reach)), min(w, int(np.ceil(cx + reach)) + 1)
    if y0 >= y1 or x0 >= x1:
        return
    dy = (np.arange(y0, y1, dtype=np.float32) + 0.5 - cy)[:, None]
    dx = (np.arange(x0, x1, dtype=np.float32) + 0.5 - cx)[None, :]
    c, s = np.float32(np.cos(ang) / radius), np.float32(np.sin(ang) / radius)
    u = dx * c + dy * s
    v = dy * c - dx * s
    r2 = u * u + v * v
    mask = _shape_mask(cls, u, v, r2, params)
    tex = np.asarray(_texture(cls, u, v, r2, rng), np.float32)
    patch = img[y0:y1, x0:x1]
    patch[mask] = (tex[..., None] * colour)[mask]
    labels[y0:y1, x0:x1][mask] = cls


def make_sample(seed: int, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """One scene: ``(image uint8 (H, W, 3), labels uint8 (H, W))``, a pure function of ``seed``/``size``.

    ``size`` is ``(height, width)``; they need not be equal. 2-5 objects with random class,
    position, scale, rotation and colour jitter are painted in order (later ones occlude earlier
    ones), then a global brightness change and Gaussian pixel noise are applied to the image only.
    """
    h, w = _check_size(size)
    seed = _check_nonneg_int("seed", seed)
    rng = np.random.default_rng(seed)
    img = _background(rng, h, w)
    labels = np.zeros((h, w), np.uint8)
    for cls in rng.integers(1, NUM_CLASSES, size=int(rng.integers(2, 6))):
        _draw_object(img, labels, int(cls), rng)
    img *= np.float32(rng.uniform(0.8, 1.2))
    img += rng.standard_normal((h, w, 3), dtype=np.float32) * np.float32(rng.uniform(1.0, 6.0))
    np.clip(img, 0.0, 255.0, out=img)
    return np.rint(img).astype(np.uint8), labels


def sample_seed(split: str, seed: int, index: int) -> int:
    """Seed of sample ``index`` of ``split``: ``seed * 2**32 + index * 2 + (split == "val")``.

    Train seeds are even and validation seeds odd, so the two splits never share a scene for any
    base seed or count, and different base seeds give disjoint sets (up to 2**31 samples each).
    """
    if split not in _SPLITS:
        raise IsegError(f"unknown split {split!r}: expected one of {', '.join(_SPLITS)}")
    seed = _check_nonneg_int("seed", seed)
    index = _check_nonneg_int("index", index)
    if index >= 2**31:
        raise IsegError(f"sample index {index} too large (limit 2**31)")
    return (seed << 32) | (index << 1) | (split == "val")


def _check_count(count: int) -> int:
    """A sample count within sample_seed's index limit: every index below it is valid, so the seeds need no list
    (a count of 10^13 listed them for minutes, and left empty folders, before the first sample)."""
    count = _check_nonneg_int("count", count)
    if count > 2**31:
        raise IsegError(f"count {count} too large (limit 2**31 samples a split and seed)")
    return count


def make_split(
    name: str, count: int, size: tuple[int, int], seed: int = 0
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield ``count`` samples of split ``name`` (``"train"`` or ``"val"``); see :func:`sample_seed`.

    Arguments are checked here, not on the first ``next()``, so mistakes surface where they are made.
    """
    size = _check_size(size)
    count = _check_count(count)
    sample_seed(name, seed, 0)  # the split and the seed, checked here
    return (make_sample(sample_seed(name, seed, i), size) for i in range(count))


def colorize(labels: np.ndarray) -> np.ndarray:
    """Labels ``(H, W)`` -> RGB ``(H, W, 3)`` with :data:`CLASS_COLORS`; ignore/unknown becomes black."""
    lut = np.zeros((256, 3), np.uint8)
    lut[:NUM_CLASSES] = np.asarray(CLASS_COLORS, np.uint8)
    return lut[np.asarray(labels, np.uint8)]


# --------------------------------------------------------------------------------------------
# files


def _save_image(path: Path, array: np.ndarray, fmt: str, palette: bool = False) -> None:
    """Encode ``array`` as ``fmt``; ``palette`` stores 2-D indices as a P-mode PNG coloured by class."""
    im = Image.fromarray(np.ascontiguousarray(array))
    if palette:
        im = Image.frombytes("P", im.size, np.ascontiguousarray(array, np.uint8).tobytes())
        pal = np.zeros((256, 3), np.uint8)
        pal[:NUM_CLASSES] = np.asarray(CLASS_COLORS, np.uint8)
        im.putpalette(pal.tobytes())
    # 4:4:4 chroma: small synthetic objects lose their colour edges under 4:2:0 subsampling.
    kwargs = {"quality": _JPEG_QUALITY, "subsampling": 0} if fmt == "JPEG" else {}
    atomic_write(path, lambda tmp: im.save(tmp, format=fmt, **kwargs))


def _classes_doc(layout: str) -> dict[str, object]:
    return {
        "format_version": _FORMAT_VERSION,
        "layout": layout,
        "names": list(CLASS_NAMES),
        "colors": [list(c) for c in CLASS_COLORS],
        "label_offset": ADE_LABEL_OFFSET if layout == "ade20k" else 0,
        "ignore_index": IGNORE_INDEX,
        "note": (
            "annotation value 0 = other/ignore, class c stored as c+1"
            if layout == "ade20k"
            else "label value = class index, 255 = ignore"
        ),
    }


def _is_synth_dataset(out: Path) -> bool:
    """Whether ``out`` holds a dataset this module wrote (its ``classes.json``)."""
    try:
        doc = json.loads((out / "classes.json").read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return False
    return isinstance(doc, dict) and "format_version" in doc and doc.get("names") == list(CLASS_NAMES)


def _check_targets(out: Path, layout: str, counts: dict[str, int], digits: int) -> None:
    """Refuse, before anything is written, to replace a file of the user's or to write where a folder is.

    The files a run writes already exist when the folder is a previous ``iseg synth`` dataset (replaced:
    re-running a command gives the same bytes), or when it is someone's own data (``data/images/0000.png``
    a photo): then nothing is replaced. Found by listing the folders, not by naming every target (a count
    may be huge).
    """
    if layout == "plain":
        folders = [(out / "images", r"(\d+)\.png", counts["train"], digits, 0),
                   (out / "labels", r"(\d+)\.png", counts["train"], digits, 0)]
    else:
        folders = []
        for split, n in counts.items():
            folder, prefix = _ADE_SPLITS[split]
            folders += [(out / "images" / folder, re.escape(prefix) + r"(\d+)\.jpg", n, 8, 1),
                        (out / "annotations" / folder, re.escape(prefix) + r"(\d+)\.png", n, 8, 1)]
    found = [out / "classes.json"] if os.path.lexists(out / "classes.json") else []
    for folder, pattern, n, width, first in folders:
        if not folder.is_dir():
            continue
        for name in sorted(os.listdir(folder)):
            m = re.fullmatch(pattern, name)
            if m and len(m[1]) == width and first <= int(m[1]) < n + first:
                found.append(folder / name)
    for p in found:
        if p.is_dir() or not p.is_file():
            raise IsegError(f"{p}: is a folder (or not a regular file) where the dataset writes a file")
    if found and not _is_synth_dataset(out):
        raise IsegError(f"{found[0]} already exists and {out} is not a dataset iseg synth wrote (no classes.json "
                        "of iseg synth): refusing to replace it; name a new or empty folder")


def write_dataset(
    out_dir: str | os.PathLike[str],
    count: int,
    size: tuple[int, int],
    seed: int = 0,
    layout: str = "plain",
    val_fraction: float | None = None,
) -> dict[str, int]:
    """Write ``count`` samples to ``out_dir``; return the number written per split.

    ``plain``: ``images/NNNN.png`` + ``labels/NNNN.png`` (palette PNG of class indices), all from the
    ``train`` split; it has no split folders, so a non-zero ``val_fraction`` is an error.
    ``ade20k``: ``round(count * val_fraction)`` (default 0.2) samples of the ``val`` split go to
    ``validation``, the rest of the ``train`` split to ``training``; images are JPEG (quality 95)
    like ADE20K, annotations PNG with the ADE offset (stored = class + 1, 0 = ignore).
    Every file is written to a temporary name and renamed. Files of the same name are replaced only
    in a dataset ``iseg synth`` wrote (its ``classes.json``); in any other folder they are refused
    before anything is written (:func:`_check_targets`). Other files already in ``out_dir`` are left alone.
    """
    if layout not in _LAYOUTS:
        raise IsegError(f"unknown layout {layout!r}: expected one of {', '.join(_LAYOUTS)}")
    size = _check_size(size)
    count = _check_count(count)
    seed = _check_nonneg_int("seed", seed)
    if val_fraction is None:
        val_fraction = 0.2 if layout == "ade20k" else 0.0
    if (
        isinstance(val_fraction, bool)
        or not isinstance(val_fraction, (int, float))
        or not (0.0 <= val_fraction <= 1.0)
    ):
        raise IsegError(f"val fraction must be in 0..1, got {val_fraction!r}")
    if layout == "plain" and val_fraction > 0:
        raise IsegError("the plain layout has no validation split: use --layout ade20k or --val-fraction 0")
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise IsegError(f"output {out} exists and is not a folder")

    n_val = round(count * val_fraction)
    counts = {"train": count - n_val, "val": n_val}
    digits = max(4, len(str(count - 1)))
    _check_targets(out, layout, counts, digits)
    try:
        if layout == "plain":
            (out / "images").mkdir(parents=True, exist_ok=True)
            (out / "labels").mkdir(parents=True, exist_ok=True)
            for i, (img, lab) in enumerate(make_split("train", count, size, seed)):
                _save_image(out / "images" / f"{i:0{digits}d}.png", img, "PNG")
                _save_image(out / "labels" / f"{i:0{digits}d}.png", lab, "PNG", palette=True)
        else:
            for split, n in counts.items():
                folder, prefix = _ADE_SPLITS[split]
                (out / "images" / folder).mkdir(parents=True, exist_ok=True)
                (out / "annotations" / folder).mkdir(parents=True, exist_ok=True)
                for i, (img, lab) in enumerate(make_split(split, n, size, seed)):
                    stem = f"{prefix}{i + 1:08d}"
                    _save_image(out / "images" / folder / f"{stem}.jpg", img, "JPEG")
                    ade = lab + np.uint8(ADE_LABEL_OFFSET)
                    _save_image(out / "annotations" / folder / f"{stem}.png", ade, "PNG")
        text = json.dumps(_classes_doc(layout), indent=2) + "\n"
        atomic_write(out / "classes.json", lambda tmp: tmp.write_text(text, encoding="utf-8"))
    except OSError as e:
        raise IsegError(f"cannot write dataset to {out}: {e.strerror or e}") from e
    return counts


def _read_offset(root: Path, default: int) -> int:
    """Label offset from ``classes.json`` if present (real ADE20K folders have none: use the default)."""
    path = root / "classes.json"
    if not path.exists():
        return default
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        offset = doc.get("label_offset", default)
    except (OSError, ValueError, AttributeError) as e:
        raise IsegError(f"malformed {path}: {e}") from e
    if isinstance(offset, bool) or offset not in (0, 1):
        raise IsegError(f"malformed {path}: label_offset must be 0 or 1, got {offset!r}")
    return int(offset)


def _pairs(images: Path, labels: Path) -> list[tuple[Path, Path]]:
    """Match every image to ``labels/<stem>.png``; a missing folder or annotation is an error."""
    for d in (images, labels):
        if not d.is_dir():
            raise IsegError(f"dataset folder {d} is missing")
    files = sorted(p for p in images.iterdir() if p.suffix.lower() in _IMAGE_SUFFIXES and p.is_file())
    pairs = []
    for p in files:
        lab = labels / f"{p.stem}.png"
        if not lab.is_file():
            raise IsegError(f"image {p} has no annotation {lab}")
        pairs.append((p, lab))
    return pairs


def _check_label_mode(lab_path: Path, mode: str) -> None:
    if mode not in ("L", "P"):
        raise IsegError(f"annotation {lab_path} has mode {mode}: expected 8-bit indices (L or P)")


def _load(img_path: Path, lab_path: Path, offset: int) -> tuple[np.ndarray, np.ndarray]:
    from iseg.imageio import to_rgb8

    path = img_path  # the file being read, named when it fails
    try:
        with warnings.catch_warnings():  # Pillow's DecompressionBombWarning: two lines on stderr
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(img_path) as im:
                img = to_rgb8(im)  # as iseg infer and iseg-host read it: Pillow's convert clips 16-bit to white
            path = lab_path
            with Image.open(lab_path) as im:
                _check_label_mode(lab_path, im.mode)
                raw = np.asarray(im).astype(np.uint8, copy=True)
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as e:
        raise IsegError(f"cannot read {path}: {e}") from e
    if raw.shape != img.shape[:2]:
        raise IsegError(
            f"annotation {lab_path} is {raw.shape[0]}x{raw.shape[1]}, image is {img.shape[0]}x{img.shape[1]}"
        )
    if offset:
        labels = np.where(raw == 0, np.uint8(IGNORE_INDEX), raw - np.uint8(offset))
        labels[raw == IGNORE_INDEX] = IGNORE_INDEX
    else:
        labels = raw
    return img, labels.astype(np.uint8)


def read_folder(
    path: str | os.PathLike[str], split: str | None = None
) -> Iterator[tuple[np.ndarray, np.ndarray, str]]:
    """Iterate ``(image uint8 (H, W, 3), labels uint8 (H, W), name)`` over a ``plain`` or ``ade20k`` folder
    (:func:`folder_samples` lists them, each decoded here in turn)."""
    listing = folder_samples(path, split)
    return ((*s.load(), s.name) for s in listing)


@dataclass(frozen=True)
class FolderSample:
    """One sample of a dataset folder, not yet decoded: ``load()`` reads it (``(image, labels)`` u8)."""

    image: Path
    labels: Path
    name: str
    offset: int

    def load(self) -> tuple[np.ndarray, np.ndarray]:
        return _load(self.image, self.labels, self.offset)

    def check(self) -> None:
        """What ``load`` would refuse that the files' headers show (format, label mode, sizes), without decoding
        the pixels: a dataset decoded per access is still checked before the first training step."""
        path = self.image  # the file being read, named when it fails
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                with Image.open(self.image) as im:
                    size = im.size
                path = self.labels
                with Image.open(self.labels) as lab:
                    _check_label_mode(self.labels, lab.mode)
                    if lab.size != size:
                        raise IsegError(f"annotation {self.labels} is {lab.size[1]}x{lab.size[0]}, image is "
                                        f"{size[1]}x{size[0]}")
        except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as e:
            raise IsegError(f"cannot read {path}: {e}") from e


def folder_samples(path: str | os.PathLike[str], split: str | None = None) -> list[FolderSample]:
    """The samples of a ``plain`` or ``ade20k`` folder, listed and paired, none decoded (a dataset of 20k images
    need not be held in memory: ``FolderSample.load`` reads one when it is wanted).

    The layout is detected: ``annotations/`` means ADE20K (split ``"train"``/``"val"`` picks one of
    ``training``/``validation``, ``None`` reads both; names are ``training/ADE_train_00000001``), else
    ``images/`` + ``labels/`` is plain (``split`` must be ``None``; names are file stems).
    ADE annotations are mapped back to class indices (stored 0 -> :data:`IGNORE_INDEX`). The folder
    structure and the image/annotation pairing are checked before the first sample is decoded.
    """
    root = Path(path)
    if not root.is_dir():
        raise IsegError(f"dataset folder {root} does not exist")
    jobs: list[tuple[Path, Path, str]] = []
    if (root / "annotations").is_dir():
        offset = _read_offset(root, ADE_LABEL_OFFSET)
        if split is not None and split not in _ADE_SPLITS:
            raise IsegError(f"unknown split {split!r}: expected one of {', '.join(_SPLITS)}")
        if split is not None:
            wanted = [_ADE_SPLITS[split][0]]
        else:  # both splits, but a folder holding only one of them is fine
            wanted = [f for f, _ in _ADE_SPLITS.values() if (root / "annotations" / f).is_dir()]
            if not wanted:
                raise IsegError(f"dataset folder {root}/annotations has neither training/ nor validation/")
        for folder in wanted:
            pairs = _pairs(root / "images" / folder, root / "annotations" / folder)
            jobs += [(i, lab, f"{folder}/{i.stem}") for i, lab in pairs]
    elif (root / "images").is_dir() or (root / "labels").is_dir():
        if split is not None:
            raise IsegError(f"dataset folder {root} has the plain layout, which has no {split!r} split")
        offset = _read_offset(root, 0)
        jobs = [(i, lab, i.stem) for i, lab in _pairs(root / "images", root / "labels")]
    else:
        raise IsegError(f"dataset folder {root} has neither images/+labels/ nor images/+annotations/")
    if not jobs:  # an ADE20K folder with images of the other split only: name the split that is empty
        where = f"{root}/images/{_ADE_SPLITS[split][0]}" if split is not None else f"dataset folder {root}"
        raise IsegError(f"{where} holds no images")
    return [FolderSample(i, lab, name, offset) for i, lab, name in jobs]


# --------------------------------------------------------------------------------------------
# command line


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the ``iseg synth`` options (``iseg synth``, :func:`synth_main`)."""
    parser.add_argument("--count", type=int, required=True, help="number of samples to write")
    parser.add_argument("--size", required=True, help="image size HxW, e.g. 128x96 (rows x columns)")
    parser.add_argument("--seed", type=int, default=0, help="base seed (default 0)")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--layout", choices=_LAYOUTS, default="plain", help="folder layout (default plain)")
    parser.add_argument(
        "--val-fraction",
        type=float,
        default=None,
        help="share of samples in the validation split (ade20k only; default 0.2)",
    )


def run(args: argparse.Namespace) -> int:
    """Execute ``iseg synth`` from parsed ``args``; raises :class:`IsegError` on bad input."""
    size = parse_size(args.size)
    check_output_dir(args.out, "--out")  # an empty --out is not ".", a path under a file is named
    counts = write_dataset(args.out, args.count, size, args.seed, args.layout, args.val_fraction)
    if args.layout == "ade20k":
        print(f"wrote {counts['train']} training and {counts['val']} validation samples ({size[0]}x{size[1]}, "
              f"ade20k layout) to {args.out}")
    else:  # the plain layout has no splits: its scenes are those of the train split
        print(f"wrote {counts['train']} samples ({size[0]}x{size[1]}, plain layout: train-split scenes) to {args.out}")
    return 0


def synth_main(argv: list[str] | None = None) -> int:
    """``python -m iseg.synth --count N --size HxW --out DIR``: the same as ``iseg synth ...``."""
    return cli.command("synth", argv)


if __name__ == "__main__":
    raise SystemExit(synth_main())
