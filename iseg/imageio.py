"""Image files in and label maps out: the one implementation ``iseg infer``, ``gen-hls --csim`` and ``iseg-host`` share.

It lives in the core package because ``iseg infer`` must not depend on the host package; the
host imports it. Reading: any decodable image becomes (H, W, 3) uint8 RGB -- greyscale is
replicated, alpha is dropped (the colours under it are what the camera saw), palettes are
applied, 16- and 32-bit images keep their top 8 bits (Pillow's own ``convert("RGB")`` would
clip them to white). A file that cannot be decoded raises :class:`ImageError`, whose ``reason``
the host reports next to the path. Writing: label maps are palette PNGs (pixel value = class
index, palette = class colours), always atomic (temporary sibling, then rename), so a reader or
a resumed run never sees half a file.
"""

from __future__ import annotations

import os
import tempfile
import warnings
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from iseg.errors import IsegError

__all__ = ["IMAGE_SUFFIXES", "ImageError", "to_rgb8", "load_image", "list_images", "palette_bytes",
           "atomic_write", "atomic_write_bytes", "save_labels_png", "read_labels_png", "fit_to_model",
           "resize_nearest", "check_output_file", "check_output_dir", "check_path_names"]

IMAGE_SUFFIXES = frozenset(
    {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pnm", ".pbm", ".tga"}
)
# Labels are flat regions: zlib level 1 compresses them nearly as well as level 6 in a fraction
# of the time (~1 ms at 512², which matters when the accelerator's frame takes a few ms).
_PNG_LEVEL = 1


class ImageError(IsegError):
    """An image file that cannot be decoded; ``reason`` is the message without the path."""

    def __init__(self, path: Path, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


# --------------------------------------------------------------------------------------------
# reading
# --------------------------------------------------------------------------------------------
def to_rgb8(img: Image.Image) -> np.ndarray:
    """Any PIL image -> (H, W, 3) u8 RGB.

    16-bit modes (``I;16*``) keep their top byte, so 0..65535 maps to 0..255 whatever the
    content (a data-dependent rule would make the same scene darker or brighter per file). Mode
    ``I`` holding 16-bit data (PNG decodes 16-bit greyscale so) is treated alike; genuine 32-bit
    data keeps bits 31..24. Float images are taken as 0..1 when their maximum is at most 1, else
    as 0..255. Alpha is dropped.
    """
    mode = img.mode
    if mode.startswith("I;16") or mode == "I":
        a = np.asarray(img).astype(np.int64)
        a = a >> 24 if mode == "I" and a.max(initial=0) > 65535 else a >> 8
        g = np.clip(a, 0, 255).astype(np.uint8)
        return np.repeat(g[:, :, None], 3, axis=2)
    if mode == "F":
        a = np.asarray(img, dtype=np.float64)
        scale = 255.0 if np.nanmax(a, initial=0.0) <= 1.0 else 1.0
        g = np.clip(np.nan_to_num(a * scale), 0, 255).round().astype(np.uint8)
        return np.repeat(g[:, :, None], 3, axis=2)
    if mode != "RGB":
        img = img.convert("RGB")
    return np.asarray(img, dtype=np.uint8)


def load_image(path: str | os.PathLike) -> np.ndarray:
    """Decode one image file fully (a truncated file fails here, not later) as (H, W, 3) u8 RGB.

    Raises :class:`ImageError` (an :class:`IsegError` naming the file) on any failure.
    """
    path = Path(path)
    if not path.is_file():
        raise ImageError(path, "no such image file")
    try:
        with warnings.catch_warnings():
            # Pillow warns (several lines on stderr) between MAX_IMAGE_PIXELS and twice that, and refuses
            # beyond: such an image is decoded as any other, the refusal is the one line below
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                img.load()
                return to_rgb8(img)
    except UnidentifiedImageError:
        raise ImageError(path, "not an image file (unknown format)") from None
    except Image.DecompressionBombError as exc:
        raise ImageError(path, f"refused: {exc}") from None
    except (OSError, ValueError, SyntaxError) as exc:  # truncated, corrupt, unreadable
        raise ImageError(path, f"cannot decode: {exc}") from None


def list_images(inputs: Iterable[str | os.PathLike]) -> list[Path]:
    """Expand files and folders (sorted, not recursive, image suffixes only) into image paths."""
    out: list[Path] = []
    for item in inputs:
        if not os.fspath(item).strip():  # not ".": an unset shell variable must not label the current folder
            raise IsegError("input '': empty path (name image files or folders)")
        p = Path(item)
        if p.is_dir():
            found = sorted(q for q in p.iterdir() if q.suffix.lower() in IMAGE_SUFFIXES and q.is_file())
            if not found:
                raise IsegError(f"{p}: folder holds no image files ({', '.join(sorted(IMAGE_SUFFIXES))})")
            out.extend(found)
        elif p.is_file():
            out.append(p)
        elif p.exists():  # a FIFO or device: reading it could block forever or never end
            raise IsegError(f"{p}: not a regular file or folder (a pipe or device is not read)")
        else:
            raise IsegError(f"{p}: no such file or folder")
    return out


# --------------------------------------------------------------------------------------------
# writing
# --------------------------------------------------------------------------------------------
def check_path_names(path: Path, what: str) -> None:
    """Raise IsegError when a part of ``path`` is longer than its file system allows (ENAMETOOLONG).

    Checked up front: a missing folder above the long name would otherwise be made before the write
    fails, and ``Path.exists`` raises on such a path instead of answering.
    """
    folder = Path(".")
    for parent in path.absolute().parents:  # the nearest folder that exists answers for the limit
        if os.path.isdir(parent):
            folder = parent
            break
    try:
        name_max = os.pathconf(folder, "PC_NAME_MAX")
    except (OSError, ValueError):
        name_max = 255
    for part in path.parts:
        size = len(os.fsencode(part))
        if size > name_max:
            shown = part if len(part) <= 40 else f"{part[:20]}...{part[-10:]}"
            raise IsegError(f"{what}: the name {shown!r} is {size} bytes long, more than the {name_max} "
                            "a file name may have")


def _check_creatable(path: Path, what: str) -> None:
    """Raise IsegError unless every missing folder above ``path`` can be made: the nearest existing
    ancestor must be a writable folder (checked without creating anything, so a refused command
    leaves no empty folders behind)."""
    for parent in path.absolute().parents:
        if parent.exists():
            if not parent.is_dir():
                raise IsegError(f"{what}: {parent} is not a folder")
            if not os.access(parent, os.W_OK | os.X_OK):
                raise IsegError(f"{what}: folder {parent} is not writable")
            return
        if parent.is_symlink():  # a dangling link: mkdir would fail on it
            raise IsegError(f"{what}: {parent} is a broken symbolic link")


def check_output_file(path: str | os.PathLike, option: str) -> Path:
    """Check, before any work is done, that ``path`` (the value of ``option``) can be written as a file.

    A command that computes for minutes and only then finds its output path unusable loses the
    work; every command therefore checks all its output paths first. Refused: an empty path, a
    path naming a folder (existing, or spelled with a trailing slash), an existing non-regular
    file (a device, a socket), and a path whose folders cannot be created. Returns the path.
    """
    text = os.fspath(path)
    if not text.strip():
        raise IsegError(f"{option}: empty path (expected a file name)")
    what = f"{option} {text}"
    p = Path(text)
    check_path_names(p, what)
    if p.is_dir():
        raise IsegError(f"{what}: is a folder, expected a file path")
    if text.endswith(("/", os.sep)) or p.name in ("", ".", ".."):
        raise IsegError(f"{what}: names a folder, expected a file path")
    if p.exists() and not p.is_file():
        raise IsegError(f"{what}: exists and is not a regular file")
    _check_creatable(p, what)
    return p


def check_output_dir(path: str | os.PathLike, option: str) -> Path:
    """Check, before any work is done, that ``path`` (the value of ``option``) is or can become a folder."""
    text = os.fspath(path)
    if not text.strip():
        raise IsegError(f"{option}: empty path (expected a folder)")
    what = f"{option} {text}"
    p = Path(text)
    check_path_names(p, what)
    if p.exists():
        if not p.is_dir():
            raise IsegError(f"{what}: exists and is not a folder")
        if not os.access(p, os.W_OK | os.X_OK):
            raise IsegError(f"{what}: folder is not writable")
        return p
    _check_creatable(p, what)
    return p


def atomic_write(path: Path, write: Callable[[Path], object]) -> None:
    """Call ``write(tmp)`` on a temporary file beside ``path``, then rename it over ``path``.

    The temporary name keeps the suffix (writers that pick the format from it still work) and
    starts with ``.tmp-``, so leftovers of a killed process are easy to recognise.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        # mkstemp makes 0600 (and some writers, safetensors' among them, recreate the file): the result is
        # an ordinary file, so give it the mode open() would have
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: Path, data: bytes) -> None:
    atomic_write(path, lambda tmp: tmp.write_bytes(data))


def palette_bytes(colors: Sequence[Sequence[int]]) -> bytes:
    """768-byte PNG palette: class i gets colour i, unused entries black."""
    pal = np.zeros((256, 3), np.uint8)
    if len(colors):
        pal[: len(colors)] = np.asarray(colors, np.uint8).reshape(-1, 3)
    return pal.tobytes()


def save_labels_png(path: str | os.PathLike, labels: np.ndarray, colors: Sequence[Sequence[int]]) -> None:
    """(H, W) u8 class indices as a palette PNG in the class colours (pixel value = class index), atomically."""
    labels = np.ascontiguousarray(labels, np.uint8)
    if labels.ndim != 2:
        raise ValueError(f"labels must be (H, W), got shape {labels.shape}")
    img = Image.frombytes("P", (labels.shape[1], labels.shape[0]), labels.tobytes())
    img.putpalette(palette_bytes(colors))
    atomic_write(Path(path), lambda tmp: img.save(tmp, format="PNG", compress_level=_PNG_LEVEL))


def read_labels_png(path: str | os.PathLike) -> np.ndarray:
    """Read back a label PNG written by :func:`save_labels_png` (class indices, not colours)."""
    with Image.open(path) as img:
        if img.mode not in ("P", "L"):
            raise IsegError(f"{path}: not a label PNG (mode {img.mode})")
        return np.asarray(img).astype(np.uint8, copy=True)


# --------------------------------------------------------------------------------------------
# sizes
# --------------------------------------------------------------------------------------------
def fit_to_model(image: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Resize (bilinear) an RGB image to (H, W) = ``shape``; identity when it already has that size."""
    if tuple(image.shape[:2]) == tuple(shape):
        return image
    return np.asarray(Image.fromarray(image).resize((shape[1], shape[0]), Image.BILINEAR), dtype=np.uint8)


def resize_nearest(labels: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour resize of a (h, w) label map to ``shape``, sampling pixel centres.

    Centre sampling is symmetric: an integer upscale followed by the same downscale returns the
    input, and no edge row is favoured.
    """
    h, w = labels.shape
    oh, ow = shape
    if (h, w) == (oh, ow):
        return labels
    rows = ((2 * np.arange(oh) + 1) * h) // (2 * oh)
    cols = ((2 * np.arange(ow) + 1) * w) // (2 * ow)
    return labels[rows[:, None], cols[None, :]]
