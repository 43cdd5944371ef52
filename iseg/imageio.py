"""Image files in and label maps out, shared by ``iseg infer`` and the host driver.

Any readable image becomes (H, W, 3) uint8 RGB (grayscale, RGBA, palette and 16-bit images
are converted); unreadable or truncated files raise :class:`IsegError` naming the file. Label
maps are written as palette PNGs (pixel value = class index, palette = class colours), always
atomically (temporary name in the same folder, then rename).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from iseg.errors import IsegError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm")


def to_rgb8(img) -> np.ndarray:
    """A PIL image of any mode -> (H, W, 3) uint8 RGB."""
    from PIL import Image

    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        a = np.asarray(img, dtype=np.int64)
        a = (a >> 8) if a.max(initial=0) > 255 else a
        img = Image.fromarray(np.clip(a, 0, 255).astype(np.uint8), "L")
    if img.mode in ("RGBA", "LA") or (img.mode == "P" and "transparency" in img.info):
        img = img.convert("RGBA")
        bg = Image.new("RGBA", img.size, (0, 0, 0, 255))
        img = Image.alpha_composite(bg, img)
    return np.asarray(img.convert("RGB"), dtype=np.uint8)


def load_image(path: str | os.PathLike) -> np.ndarray:
    """Read an image file as (H, W, 3) uint8 RGB; IsegError names the file on any failure."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise IsegError(f"{path}: no such image file")
    try:
        with Image.open(path) as img:
            img.load()
            return to_rgb8(img)
    except UnidentifiedImageError:
        raise IsegError(f"{path}: not an image file") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise IsegError(f"{path}: unreadable image ({exc})") from None


def list_images(inputs: Iterable[str | os.PathLike]) -> list[Path]:
    """Expand files and folders (sorted, image suffixes only) into a list of image paths."""
    out: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            found = sorted(q for q in p.iterdir() if q.suffix.lower() in IMAGE_SUFFIXES and q.is_file())
            if not found:
                raise IsegError(f"{p}: folder holds no image files ({', '.join(IMAGE_SUFFIXES)})")
            out.extend(found)
        elif p.is_file():
            out.append(p)
        else:
            raise IsegError(f"{p}: no such file or folder")
    return out


def palette_bytes(colors: Sequence[Sequence[int]]) -> list[int]:
    pal = [int(v) for c in colors for v in c]
    return pal + [0] * (768 - len(pal))


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def encode_labels_png(labels: np.ndarray, colors: Sequence[Sequence[int]]) -> bytes:
    """Palette PNG bytes: pixel value = class index, palette = class colours."""
    import io

    from PIL import Image

    img = Image.fromarray(np.asarray(labels, dtype=np.uint8), "P")
    img.putpalette(palette_bytes(colors))
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=False)
    return buf.getvalue()


def save_labels_png(path: str | os.PathLike, labels: np.ndarray, colors: Sequence[Sequence[int]]) -> None:
    atomic_write_bytes(Path(path), encode_labels_png(labels, colors))


def fit_to_model(image: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Resize (bilinear) an RGB image to the model's (H, W); identity when it already fits."""
    if tuple(image.shape[:2]) == tuple(shape):
        return image
    from PIL import Image

    return np.asarray(Image.fromarray(image).resize((shape[1], shape[0]), Image.BILINEAR), dtype=np.uint8)


def labels_to_size(labels: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour resize of a label map back to an image's (H, W)."""
    if tuple(labels.shape) == tuple(shape):
        return labels
    h, w = labels.shape
    ys = (np.arange(shape[0]) * h) // shape[0]
    xs = (np.arange(shape[1]) * w) // shape[1]
    return labels[ys][:, xs]
