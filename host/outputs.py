"""What ``iseg-host`` writes: label PNGs, overlays, an annotated video, and the resume journal.

Layout of ``--out DIR``::

    DIR/labels/<name>.png     class indices, palette PNG coloured with the model's class colours
    DIR/overlay/<name>.jpg    (--overlay) the input with the class colours alpha-blended on top
    DIR/.iseg-host.jsonl      the journal: the run's settings, then one line per finished frame

Every file is written to a temporary sibling and renamed, so a reader (or a resumed run) never
sees half a file. Label PNGs and the atomic writer are :mod:`iseg.imageio`'s, the same code
``iseg infer`` writes with. Overlays are JPEG because a photo-like 512² PNG costs ~40 ms to
compress, longer than the accelerator takes for the frame; labels stay lossless PNG.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from iseg.errors import IsegError
from iseg.imageio import _umask, atomic_write, palette_bytes

JOURNAL = ".iseg-host.jsonl"
JOURNAL_VERSION = 1
OVERLAY_ALPHA = 0.5
_JPEG = {"quality": 90}  # 4:2:0: half the encode time of 4:4:4; overlays are for viewing
JPEG_MAX_SIDE = 65500  # libjpeg's JPEG_MAX_DIMENSION: a wider or taller overlay cannot be written


def color_table(colors: Sequence[Sequence[int]]) -> np.ndarray:
    """(256, 3) u8 look-up table from class index to colour."""
    return np.frombuffer(palette_bytes(colors), np.uint8).reshape(256, 3)


def overlay(image: np.ndarray, labels: np.ndarray, table: np.ndarray, alpha: float = OVERLAY_ALPHA) -> np.ndarray:
    """Alpha-blend the class colours over the image: ``(1 - alpha)·image + alpha·colour`` (u8, rounded).

    The pre-multiplied colours are looked up as one u64 per pixel (three u16 lanes and a spare):
    a 1-D gather is several times cheaper than indexing a (256, 3) table, and this runs per frame.
    """
    a = int(round(alpha * 256))
    lanes = np.zeros((256, 4), np.uint16)
    lanes[:, :3] = table.astype(np.uint16) * a + 128
    colour = lanes.view(np.uint64).ravel()[labels].view(np.uint16).reshape(*labels.shape, 4)[..., :3]
    mix = image.astype(np.uint16)
    mix *= 256 - a
    mix += colour
    mix >>= 8
    return mix.astype(np.uint8)


def save_overlay(path: Path, rgb: np.ndarray) -> None:
    atomic_write(path, lambda tmp: Image.fromarray(rgb).save(tmp, format="JPEG", **_JPEG))


# Containers OpenCV writes with the codec we pick for them (MJPG in .avi, mp4v in the others);
# "" is written as .mp4. Anything else is refused before the run, not after the first frame.
VIDEO_OUT_SUFFIXES = (".mp4", ".avi", ".mov", ".m4v", ".mkv")


def _fourcc_name(suffix: str) -> str:
    return "MJPG" if suffix.lower() == ".avi" else "mp4v"


def _cv2(option: str) -> Any:
    try:
        import cv2
    except ImportError:
        raise IsegError(f"{option} needs OpenCV: pip install 'iseg-fpga[video]'") from None
    return cv2


def check_video_out(path: Path) -> None:
    """Refuse a ``--video-out`` container or codec OpenCV cannot write, before any frame is computed.

    The suffix picks the container; a writer is then opened on a scratch file of that suffix in the
    system's temporary folder (never beside the user's files), because whether OpenCV can write it
    depends on how it was built, and finding out after the first frame leaves a half-done run.
    """
    suffix = path.suffix.lower()
    if suffix and suffix not in VIDEO_OUT_SUFFIXES:
        raise IsegError(f"--video-out {path}: cannot write a {path.suffix!r} video; use one of "
                        f"{', '.join(VIDEO_OUT_SUFFIXES)}")
    if not _can_write(suffix, (16, 16), 10.0):
        raise IsegError(f"--video-out {path}: this OpenCV cannot write {_fourcc_name(suffix)} into "
                        f"{suffix or '.mp4'} (try .avi)")


def _can_write(suffix: str, size: tuple[int, int], fps: float) -> bool:
    """Whether OpenCV opens a writer of this container, frame size (w, h) and rate, tried on a scratch file
    in the system's temporary folder (never beside the user's files). OpenCV's own log is silenced meanwhile:
    a refusal is the caller's one line, not two of OpenCV's about a scratch file before it."""
    cv2 = _cv2("--video-out")
    log = getattr(getattr(cv2, "utils", None), "logging", None)
    level = log.getLogLevel() if log is not None else None
    try:
        if log is not None:
            log.setLogLevel(log.LOG_LEVEL_SILENT)
        with tempfile.TemporaryDirectory(prefix="iseg-host-") as tmp:
            probe = Path(tmp) / f"probe{suffix or '.mp4'}"
            writer = cv2.VideoWriter(str(probe), cv2.VideoWriter_fourcc(*_fourcc_name(suffix)), fps, size)
            ok = writer.isOpened()
            writer.release()
    finally:
        if log is not None:
            log.setLogLevel(level)
    return ok


class VideoOut:
    """Annotated video (overlay frames) written to a temporary file and renamed on :meth:`close`.

    Nothing touches the disk before the first frame (a run whose inputs all fail leaves no trace).
    Every frame is resized to the first frame's size, because a video has one size; cv2 picks
    the container from the suffix, so the temporary name keeps it.
    """

    def __init__(self, path: Path, fps: float):
        self._cv2 = _cv2("--video-out")
        self.path = path
        self.fps = fps
        self._tmp: Path | None = None
        self._writer: Any = None
        self._size: tuple[int, int] | None = None
        self.frames = 0

    def _open(self, size: tuple[int, int]) -> None:
        cv2 = self._cv2
        fourcc_name = _fourcc_name(self.path.suffix)
        # probed first: whether a writer opens depends on the frame size (MPEG-4 stops at 8191 a side), and a
        # refusal after the mkdir below left the video's new folders behind, empty
        if not _can_write(self.path.suffix.lower(), size, self.fps):
            big = fourcc_name == "mp4v" and max(size) > 8191
            hint = ": MPEG-4 holds at most 8191 pixels a side, name an .avi (MJPG)" if big else ""
            raise IsegError(f"--video-out {self.path}: OpenCV cannot write {size[0]}x{size[1]} frames as "
                            f"{fourcc_name}{hint}")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=self.path.suffix or ".mp4", dir=self.path.parent)
        os.close(fd)
        self._tmp = Path(tmp)
        self._size = size
        fourcc = cv2.VideoWriter_fourcc(*fourcc_name)
        self._writer = cv2.VideoWriter(str(self._tmp), fourcc, self.fps, self._size)
        if not self._writer.isOpened():
            raise IsegError(f"--video-out {self.path}: OpenCV cannot write this container (try .mp4 or .avi)")

    def write(self, rgb: np.ndarray) -> None:
        if self._writer is None:
            self._open((rgb.shape[1], rgb.shape[0]))
        assert self._size is not None
        if (rgb.shape[1], rgb.shape[0]) != self._size:
            rgb = np.asarray(Image.fromarray(rgb).resize(self._size, Image.BILINEAR))
        self._writer.write(np.ascontiguousarray(rgb[:, :, ::-1]))
        self.frames += 1

    def close(self, keep: bool) -> None:
        """Finish the file; ``keep`` renames it into place, else the partial video is removed."""
        if self._writer is not None:
            self._writer.release()
            self._writer = None
        if self._tmp is None:
            return
        tmp, self._tmp = self._tmp, None
        try:
            if keep and self.frames:
                os.chmod(tmp, 0o666 & ~_umask())  # mkstemp made it 0600: the mode open() would give
                os.replace(tmp, self.path)
        except OSError as exc:  # named by the option, not by the temporary file (which goes)
            raise IsegError(f"--video-out {self.path}: cannot write ({exc.strerror or exc})") from None
        finally:
            tmp.unlink(missing_ok=True)


class Journal:
    """Resume journal: a settings line, then one JSON line per frame whose outputs are complete.

    A frame is appended only after all its files were renamed into place, so "in the journal"
    implies "complete on disk". A crash between a rename and the append only costs recomputing
    that frame: outputs of a run with the same settings may be overwritten by design.
    """

    def __init__(self, out: Path, settings: dict[str, Any]):
        self.path = out / JOURNAL
        self.settings = {"journal": JOURNAL_VERSION, **settings}
        self.done: dict[str, dict[str, Any]] = {}
        self._fh: Any = None
        self._fresh = True

    def read(self) -> bool:
        """Load an existing journal; True if there is one and it was written with these settings."""
        if not self.path.exists():
            return False
        try:
            lines = self.path.read_text(encoding="utf-8").splitlines()
            head = json.loads(lines[0]) if lines else None
        except (OSError, ValueError, UnicodeDecodeError):
            return False
        if head != self.settings:
            return False
        for line in lines[1:]:
            try:
                rec = json.loads(line)
                self.done[rec["frame"]] = rec
            except (ValueError, KeyError, TypeError):
                continue  # a line cut short by the interruption: that frame is simply redone
        return True

    def differences(self) -> list[str]:
        """Setting names in which an existing journal differs from ours (for the error message)."""
        try:
            head = json.loads(self.path.read_text(encoding="utf-8").splitlines()[0])
        except (OSError, ValueError, IndexError, UnicodeDecodeError):
            return ["unreadable journal"]
        if not isinstance(head, dict):
            return ["unreadable journal"]
        return sorted(k for k in set(head) | set(self.settings) if head.get(k) != self.settings.get(k))

    def start(self, fresh: bool) -> None:
        """Decide between a new journal (``fresh``: it will atomically replace an old one) and appending.

        Nothing is written yet: :meth:`begin` does that on the first frame that succeeds, so a run
        in which every input fails leaves neither an output folder nor a journal behind (and an
        old journal that ``--overwrite`` would replace survives such a run).
        """
        self._fresh = fresh or not self.path.exists()
        if self._fresh:
            self.done.clear()

    def begin(self) -> None:
        """Create the output folder and the journal (idempotent); called before a frame's files are written."""
        if self._fh is not None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self._fresh:
            text = json.dumps(self.settings, sort_keys=True) + "\n"
            atomic_write(self.path, lambda tmp: tmp.write_text(text, encoding="utf-8"))
            self._fresh = False
        else:
            _remove_leftovers(self.path.parent)
        self._fh = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - held for the whole run

    def record(self, frame: str, **info: Any) -> None:
        self.begin()
        rec = {"frame": frame, **info}
        self.done[frame] = rec
        self._fh.write(json.dumps(rec, sort_keys=True) + "\n")
        self._fh.flush()

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None


_LEFTOVER = re.compile(r"\.tmp-[a-z0-9_]{8}\.(png|jpg|json|mp4|avi)")  # atomic_write's and VideoOut's mkstemp names


def _remove_leftovers(out: Path) -> None:
    """The temporary files a killed run left in its output (``.tmp-XXXXXXXX.png`` and the like: a SIGKILL between
    a write and its rename), removed when a run resumes there; nothing else is touched."""
    for folder, _, names in os.walk(out):
        for name in names:
            if _LEFTOVER.fullmatch(name):
                Path(folder, name).unlink(missing_ok=True)
