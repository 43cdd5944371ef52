"""Frame sources for ``iseg-host``: image files, folders, video files and cameras.

Everything the accelerator sees is an RGB u8 image of the model's size, but users hand us
whatever they have: greyscale, RGBA, palette and 16-bit images, of any size. This module turns
each command-line input into a stream of :class:`Frame` objects (or :class:`Failure` objects
for inputs that cannot be decoded, so the caller reports and counts them instead of dying on
the first bad file), and fits each image to the model size in a way that can be undone on the
labels (:func:`fit` / :func:`restore`).

Fit policies (``--fit``):

* ``pad`` (default): the image is placed at the top-left of a model-size canvas filled with
  :data:`PAD_VALUE`; labels are cropped back to the image. An image larger than the model in
  either dimension is first shrunk, keeping its aspect ratio, until it fits (letterboxing);
  its labels are cropped and then nearest-neighbour resized back to the original size.
* ``resize``: the image is resized (bilinear) to the model size, ignoring the aspect ratio;
  labels are nearest-neighbour resized back to the original size.

Both policies are "scale into a content box at the top-left, pad the rest", which is why one
:class:`Placement` describes either.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from iseg.errors import IsegError
from iseg.imageio import IMAGE_SUFFIXES, ImageError, fit_to_model, load_image, resize_nearest

__all__ = ["IMAGE_SUFFIXES", "VIDEO_SUFFIXES", "FIT_POLICIES", "PAD_VALUE", "Source", "Frame", "Failure",
           "collect_sources", "iter_frames", "video_fps", "count_frames", "Placement", "place", "fit",
           "resize_nearest", "restore"]

VIDEO_SUFFIXES = frozenset({".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv"})
FIT_POLICIES = ("pad", "resize")
# The integer model sees ``u - 128``: padding with 128 feeds exactly zero, which is what
# Segmenter's zero padding of a mean/std-normalised image amounts to (close to the mean colour).
PAD_VALUE = 128


# --------------------------------------------------------------------------------------------
# Sources: what the command line names
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Source:
    """One input: ``kind`` is ``image``, ``video`` or ``camera``; ``name`` is its output name."""

    kind: str
    name: str  # output name without suffix, "/"-separated (e.g. "street/0001" or "clip")
    path: Path | None = None
    camera: int | None = None


@dataclass
class Frame:
    """A decoded RGB frame and where it came from."""

    name: str  # output name of this frame ("img", "clip/000012", "camera0/000003")
    source: Source
    image: np.ndarray  # (H, W, 3) u8, original size


@dataclass
class Failure:
    """An input (or a video's frame stream) that could not be decoded: reported, counted, skipped."""

    name: str
    source: Source
    reason: str


def _has_cv2() -> bool:
    try:
        import cv2  # noqa: F401
    except ImportError:
        return False
    return True


def _need_cv2(what: str) -> None:
    if not _has_cv2():
        raise IsegError(f"{what} needs OpenCV: pip install 'iseg-fpga[video]' (opencv-python-headless)")


def collect_sources(paths: list[str], cameras: list[int] = (),
                    exclude: tuple[Path, ...] = ()) -> tuple[list[Source], int]:
    """Expand command-line inputs into sources; return them and the number of ignored folder entries.

    A missing path or an empty folder is an error before any work (a typo should not cost a long
    run). A file named explicitly is always tried, whatever its suffix: if it does not decode it is
    reported and skipped like any unreadable file. Inside folders (sorted, recursive) only files
    with an image or video suffix are taken; the others are counted so the summary can say so.
    Files under ``exclude`` (the run's own output folders, run.output_folders) are not inputs: with --out inside an
    input folder, running again to resume took the first run's labels for images to label.
    """
    skip = tuple(Path(os.path.realpath(x)) for x in exclude)
    sources: list[Source] = []
    ignored = 0
    for raw in paths:
        p = Path(raw)
        if not p.exists():
            raise IsegError(f"input {raw}: no such file or folder")
        if p.is_dir():
            found = 0
            for f in sorted(q for q in p.rglob("*") if q.is_file()):
                if skip and any(Path(os.path.realpath(f)).is_relative_to(x) for x in skip):
                    continue  # the run's own output, not an input
                suffix = f.suffix.lower()
                rel = f.relative_to(p).with_suffix("").as_posix()
                name = f"{p.name}/{rel}" if len(paths) > 1 else rel
                if suffix in IMAGE_SUFFIXES:
                    sources.append(Source("image", name, f))
                elif suffix in VIDEO_SUFFIXES:
                    _need_cv2(f"video input {f}")
                    sources.append(Source("video", name, f))
                else:
                    ignored += 1
                    continue
                found += 1
            if not found:
                raise IsegError(f"input folder {raw} holds no images or videos")
        elif p.suffix.lower() in VIDEO_SUFFIXES:
            _need_cv2(f"video input {raw}")
            sources.append(Source("video", p.stem, p))
        elif not p.is_file():  # a FIFO or device: the image decoder would block or read forever
            raise IsegError(f"input {raw}: not a regular file or folder (a pipe or device is not read)")
        else:
            sources.append(Source("image", p.stem, p))
    for n in cameras:
        _need_cv2(f"--camera {n}")
        sources.append(Source("camera", f"camera{n}", camera=n))
    if not sources:
        raise IsegError("no inputs: name image files, folders, videos or --camera N")
    seen: dict[str, Source] = {}
    for s in sources:
        if s.name in seen:
            a, b = seen[s.name], s
            raise IsegError(f"inputs {a.path} and {b.path} would both write outputs named {s.name!r}: "
                            f"rename one or run them separately")
        seen[s.name] = s
    # A video's or camera's frames are <name>/<frame:06d>: an image named inside that folder (a folder
    # `clip/` of extracted frames next to `clip.mp4`) would have its labels overwritten by a frame's.
    streams = {s.name: s for s in sources if s.kind != "image"}
    for s in sources:
        parts = s.name.split("/")
        for k in range(1, len(parts)):
            v = streams.get("/".join(parts[:k]))
            if v is not None:
                what = v.path if v.path is not None else f"--camera {v.camera}"
                raise IsegError(f"inputs {what} and {s.path} would both write into labels/{v.name}/ "
                                f"(the frames of {what}): rename one or run them separately")
    return sources, ignored


# --------------------------------------------------------------------------------------------
# Decoding (image files: iseg.imageio.load_image, shared with ``iseg infer``)
# --------------------------------------------------------------------------------------------
def _video_frames(src: Source, max_frames: int | None) -> Iterator[Frame | Failure]:
    import cv2

    cap = cv2.VideoCapture(str(src.path) if src.path is not None else src.camera)
    what = f"camera {src.camera}" if src.kind == "camera" else str(src.path)
    try:
        if not cap.isOpened():
            yield Failure(src.name, src, f"cannot open {what}")
            return
        i = 0
        while max_frames is None or i < max_frames:
            ok, bgr = cap.read()
            if not ok or bgr is None:
                break
            yield Frame(f"{src.name}/{i:06d}", src, np.ascontiguousarray(bgr[:, :, ::-1]))
            i += 1
        if i == 0:
            yield Failure(src.name, src, f"no decodable frame in {what}")
        elif src.kind == "video" and (max_frames is None or i < max_frames):
            # the decoder drops a frame that does not decode and goes on: its labels and all after it would be
            # numbered one lower than their frames, silently. The container's own count tells (when it has one)
            listed = cap.get(cv2.CAP_PROP_FRAME_COUNT)
            if 0 < listed < 2**31 and i < int(listed):
                yield Failure(src.name, src, f"decoded {i} of the {int(listed)} frames {what} lists: a frame that "
                              "did not decode was dropped (the labels after it are numbered one lower than their "
                              "frames) or the file ends early")
    finally:
        cap.release()


def video_fps(src: Source) -> float | None:
    """Frame rate of a video or camera source, if it reports a sensible one."""
    import cv2

    cap = cv2.VideoCapture(str(src.path) if src.path is not None else src.camera)
    try:
        fps = float(cap.get(cv2.CAP_PROP_FPS)) if cap.isOpened() else 0.0
    finally:
        cap.release()
    return fps if 0.1 < fps < 1000 else None


def count_frames(sources: list[Source]) -> int | None:
    """Expected number of frames (for the progress bar); None when a camera makes it open-ended."""
    total = 0
    for s in sources:
        if s.kind == "camera":
            return None
        if s.kind == "image":
            total += 1
            continue
        import cv2

        cap = cv2.VideoCapture(str(s.path))
        total += max(int(cap.get(cv2.CAP_PROP_FRAME_COUNT)), 0) if cap.isOpened() else 0
        cap.release()
    return total


def iter_frames(sources: list[Source], max_frames: int | None = None) -> Iterator[Frame | Failure]:
    """Decode every source in order; undecodable inputs become :class:`Failure` items, not exceptions.

    ``max_frames`` bounds each video or camera source (a camera never ends on its own).
    """
    for src in sources:
        if src.kind == "image":
            assert src.path is not None
            try:
                yield Frame(src.name, src, load_image(src.path))
            except ImageError as e:  # the caller prints the path next to the reason
                yield Failure(src.name, src, e.reason)
        else:
            yield from _video_frames(src, max_frames)


# --------------------------------------------------------------------------------------------
# Fitting to the model size and back
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Placement:
    """Where an image went on the model canvas: scaled to ``content`` (h, w) at the top-left."""

    original: tuple[int, int]
    content: tuple[int, int]


def place(shape: tuple[int, int], model: tuple[int, int], policy: str) -> Placement:
    """The content box of an ``shape`` image on a ``model`` canvas under ``policy``."""
    if policy not in FIT_POLICIES:
        raise IsegError(f"unknown fit policy {policy!r}: expected one of {', '.join(FIT_POLICIES)}")
    h, w = shape
    mh, mw = model
    if policy == "resize":
        return Placement((h, w), (mh, mw))
    if h <= mh and w <= mw:
        return Placement((h, w), (h, w))
    s = min(mh / h, mw / w)
    return Placement((h, w), (max(1, min(mh, round(h * s))), max(1, min(mw, round(w * s)))))


def fit(image: np.ndarray, model: tuple[int, int], policy: str = "pad") -> tuple[np.ndarray, Placement]:
    """(H, W, 3) u8 -> model-size (mh, mw, 3) u8 and the placement that :func:`restore` undoes."""
    pl = place(image.shape[:2], model, policy)
    ch, cw = pl.content
    if (ch, cw) == tuple(model) and pl.original == pl.content:
        return np.ascontiguousarray(image), pl
    content = fit_to_model(image, pl.content)
    canvas = np.full((model[0], model[1], 3), PAD_VALUE, np.uint8)
    canvas[:ch, :cw] = content
    return canvas, pl


def restore(labels: np.ndarray, pl: Placement) -> np.ndarray:
    """Model-size labels -> labels of the original image (crop the content box, then resize back)."""
    ch, cw = pl.content
    out = labels[:ch, :cw]
    if pl.content != pl.original:
        out = resize_nearest(out, pl.original)
    return np.ascontiguousarray(out)

