"""The generated project's ``manifest.json``: everything the fixed host code needs to know.

``gen-hls`` writes the manifest next to the HLS sources (``iseg.generator.emit.render_manifest``
is the authority on its keys; ``docs/gen-hls.md`` documents them); the host never parses C++ or
TCL and has no per-board code paths beyond the three backends (STYLE lesson 10). Everything a
backend reads is checked here, once, so a stale or foreign manifest is one line naming the key
before a board is touched. A manifest of another format or version is rejected with one line
saying how to fix it (regenerate the project).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from iseg.errors import IsegError

FORMAT = "iseg-project"
VERSION = 2  # 2: the streams carry words_per_beat pixels / labels a beat (1: one a beat, beat_bytes)
FILENAME = "manifest.json"
FLOWS = ("vivado", "vitis")
# Upper bounds of the numbers a backend allocates buffers from. A manifest beyond them is corrupt
# (or hand-edited), and must be one line here rather than a MemoryError or a crash in C later.
# LayerDesc (hls/layer_desc.h) holds scratch and weight offsets as int32, so neither buffer can
# exceed 2 GiB - 1; no model gen-hls can plan comes near 8192 pixels a side (its attention would
# not fit on any board), and an AXI-Stream beat wider than 64 bytes (512 bits) is no stream we write.
MAX_BUFFER_BYTES = 2**31 - 1
MAX_IMAGE_SIDE = 8192
MAX_BEAT_BYTES = 64
MAX_CLASSES = 256  # labels are one u8 per pixel


@dataclass(frozen=True)
class Streams:
    """Word and beat layouts of the AXI-Streams (``ports.pixels``, ``ports.labels``).

    Pixels: one per word of ``pixel_word_bytes``; byte ``i`` of a word holds channel ``pixel_channels[i]``, later
    bytes are zero; a beat carries ``pixels_per_beat`` words, word ``k`` in TDATA bits from ``8 k pixel_word_bytes``
    up. Labels: one class index per ``label_word_bytes`` word (in its byte 0), ``labels_per_beat`` words a beat. So
    the frame in memory is the same bytes whatever the beat width: only the DMA's stream width, and a data mover's
    count of beats, depend on it.
    """

    pixel_word_bytes: int
    pixel_channels: str  # a permutation of "rgb"
    label_word_bytes: int
    pixels_per_beat: int
    labels_per_beat: int


@dataclass(frozen=True)
class Registers:
    """The kernel's ``s_axilite`` map (``ports.control.registers``): byte offsets and ap_ctrl bits."""

    ap_ctrl: int
    ap_start_bit: int
    ap_done_bit: int
    weights: int  # 64-bit pointer: low word here, high word at +4
    scratch: int
    scratch_b: int  # the kernel's second m_axi port onto the scratch: the host writes the scratch's address here too


@dataclass(frozen=True)
class PynqNames:
    """``runtime.pynq``: overlay IP names (the block design's cell names in ``scripts/bd.tcl``)."""

    kernel_ip: str
    dma_ip: str


@dataclass(frozen=True)
class XrtMover:
    """A stream data mover of ``scripts/link.cfg``: its kernel, instance and argument indices."""

    kernel: str
    instance: str
    buffer_arg: int  # the buffer object it reads (mm2s) or writes (s2mm)
    beats_arg: int  # the transfer length, in stream beats


@dataclass(frozen=True)
class XrtNames:
    """``runtime.xrt``: the kernel instance, its ``m_axi`` argument indices, the two data movers."""

    kernel: str
    instance: str
    weights_arg: int
    scratch_arg: int
    scratch_b_arg: int  # the second m_axi port onto the scratch: set to the same buffer object as scratch_arg
    pixels: XrtMover  # mm2s: pixels buffer -> the kernel's pixel stream
    labels: XrtMover  # s2mm: the kernel's label stream -> labels buffer


@dataclass(frozen=True)
class Manifest:
    """The parts of ``manifest.json`` the host uses, checked; ``raw`` keeps the whole document."""

    root: Path  # the project folder
    project: str
    board: str
    image: tuple[int, int]  # (H, W) the model's input size
    patch: int
    n_cls: int
    class_names: tuple[str, ...]
    class_colors: tuple[tuple[int, int, int], ...]
    weights_file: Path
    weights_bytes: int
    weights_sha256: str
    scratch_bytes: int
    streams: Streams
    registers: Registers
    flow: str  # "vivado" (bitstream, PYNQ) or "vitis" (xclbin, XRT)
    pynq: PynqNames | None  # None when the project builds no bitstream for PYNQ
    xrt: XrtNames | None  # None when the project builds no xclbin
    csim: dict[str, Any]
    raw: dict[str, Any]

    @property
    def path(self) -> Path:
        return self.root / FILENAME

    def read_weights(self) -> bytes:
        """The weight image, checked against the manifest's size and hash (a stale copy is an error)."""
        try:
            if self.weights_file.exists() and not self.weights_file.is_file():  # a device or pipe: never ends
                raise IsegError(f"{self.weights_file}: not a regular file; the weights are the project's "
                                f"weights.bin (regenerate the project with gen-hls)")
            size = self.weights_file.stat().st_size
            # the size first: a wrong file is not read whole (it may be any size)
            data = self.weights_file.read_bytes() if size == self.weights_bytes else b""
        except OSError as e:
            raise IsegError(f"{self.weights_file}: cannot read the weights ({e.strerror or e})") from None
        if size != self.weights_bytes:
            raise IsegError(f"{self.weights_file}: {size} bytes, manifest says {self.weights_bytes} "
                            f"(regenerate the project with gen-hls)")
        if len(data) != self.weights_bytes:
            raise IsegError(f"{self.weights_file}: {len(data)} bytes, manifest says {self.weights_bytes} "
                            f"(regenerate the project with gen-hls)")
        if hashlib.sha256(data).hexdigest() != self.weights_sha256:
            raise IsegError(f"{self.weights_file}: sha256 differs from the manifest (regenerate the project)")
        return data

    def need_pynq(self) -> PynqNames:
        """The overlay names, or one line saying which backend this project is for."""
        if self.pynq is None:
            raise IsegError(f"project {self.root} targets {self.board} ({self.flow} flow: an xclbin, no PYNQ "
                            f"bitstream): use --xrt")
        return self.pynq

    def need_xrt(self) -> XrtNames:
        if self.xrt is None:
            raise IsegError(f"project {self.root} targets {self.board} ({self.flow} flow: a PYNQ bitstream, no "
                            f"xclbin): use --pynq")
        return self.xrt


def _get(doc: dict[str, Any], key: str, kind: type | tuple[type, ...], where: Path,
         bounds: tuple[int, int] | None = None) -> Any:
    """``doc[k0][k1]...`` for the dotted ``key``, of type ``kind`` (an int within ``bounds``, if given).

    A defect names the key, so a stale or hand-edited manifest is one line, not a crash later.
    """
    node: Any = doc
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            raise IsegError(f"{where}: missing {key!r} (regenerate the project with gen-hls)")
        node = node[part]
    if not isinstance(node, kind) or isinstance(node, bool):
        raise IsegError(f"{where}: {key!r} has the wrong type ({type(node).__name__})")
    if isinstance(node, int) and node < 0:
        raise IsegError(f"{where}: {key!r} must not be negative, got {node}")
    if bounds is not None and not bounds[0] <= node <= bounds[1]:
        raise IsegError(f"{where}: {key!r} must be in {bounds[0]}..{bounds[1]}, got {node}")
    return node


def _streams(doc: dict[str, Any], path: Path, pixels: int) -> Streams:
    """The streams' layouts; ``pixels``: the frame's pixel count, which both streams' beats must divide."""
    word = _get(doc, "ports.pixels.word_bytes", int, path, (1, MAX_BEAT_BYTES))
    channels = _get(doc, "ports.pixels.channels", str, path)
    if sorted(channels) != ["b", "g", "r"] or word < 3:
        raise IsegError(f"{path}: ports.pixels must carry r, g, b in >= 3 bytes per word, got channels "
                        f"{channels!r} in {word} bytes")
    label_word = _get(doc, "ports.labels.word_bytes", int, path, (1, MAX_BEAT_BYTES))
    per = {}
    for port, w in (("pixels", word), ("labels", label_word)):
        key = f"ports.{port}.words_per_beat"
        n = per[port] = _get(doc, key, int, path, (1, MAX_BEAT_BYTES))
        if n * w > MAX_BEAT_BYTES or pixels % n:
            raise IsegError(f"{path}: {key!r} = {n} must divide the frame's {pixels} pixels and keep a beat within "
                            f"{MAX_BEAT_BYTES} bytes ({w} a word)")
    return Streams(word, channels, label_word, per["pixels"], per["labels"])


def _registers(doc: dict[str, Any], path: Path) -> Registers:
    regs = "ports.control.registers"
    return Registers(ap_ctrl=_get(doc, f"{regs}.ap_ctrl.offset", int, path),
                     ap_start_bit=_get(doc, f"{regs}.ap_ctrl.bits.ap_start", int, path),
                     ap_done_bit=_get(doc, f"{regs}.ap_ctrl.bits.ap_done", int, path),
                     weights=_get(doc, f"{regs}.weights.offset", int, path),
                     scratch=_get(doc, f"{regs}.scratch.offset", int, path),
                     scratch_b=_get(doc, f"{regs}.scratch_b.offset", int, path))


def _runtime(doc: dict[str, Any], path: Path) -> tuple[str, PynqNames | None, XrtNames | None]:
    flow = _get(doc, "runtime.flow", str, path)
    if flow not in FLOWS:
        raise IsegError(f"{path}: runtime.flow must be one of {', '.join(FLOWS)}, got {flow!r}")
    pynq = xrt = None
    if "pynq" in doc["runtime"]:
        pynq = PynqNames(_get(doc, "runtime.pynq.kernel_ip", str, path), _get(doc, "runtime.pynq.dma_ip", str, path))
    if "xrt" in doc["runtime"]:
        x = "runtime.xrt"

        def mover(port: str) -> XrtMover:
            m = f"{x}.movers.{port}"
            return XrtMover(_get(doc, f"{m}.kernel", str, path), _get(doc, f"{m}.instance", str, path),
                            _get(doc, f"{m}.args.buffer", int, path), _get(doc, f"{m}.args.beats", int, path))

        xrt = XrtNames(_get(doc, f"{x}.kernel", str, path), _get(doc, f"{x}.instance", str, path),
                       _get(doc, f"{x}.args.weights", int, path), _get(doc, f"{x}.args.scratch", int, path),
                       _get(doc, f"{x}.args.scratch_b", int, path), mover("pixels"), mover("labels"))
    if pynq is None and xrt is None:
        raise IsegError(f"{path}: runtime names neither a pynq nor an xrt section (regenerate the project)")
    return flow, pynq, xrt


def _weights_file(doc: dict[str, Any], path: Path) -> str:
    """``weights.file``: a file of the project folder (gen-hls writes ``weights.bin``), never a path out of it."""
    name = _get(doc, "weights.file", str, path)
    parts = Path(name).parts
    if not name or "\0" in name or Path(name).is_absolute() or ".." in parts or name in (".", "./"):
        raise IsegError(f"{path}: 'weights.file' must name a file inside the project folder, got {name!r} "
                        "(regenerate the project with gen-hls)")
    return name


def load_manifest(project: str | Path) -> Manifest:
    """Read and check ``<project>/manifest.json``; every defect is one IsegError line."""
    root = Path(project)
    if not root.exists():
        raise IsegError(f"project {root}: no such folder (run gen-hls first)")
    if not root.is_dir():
        raise IsegError(f"project {root}: not a folder (pass the generated project folder, not a file)")
    path = root / FILENAME
    if not path.is_file():
        raise IsegError(f"project {root}: no {FILENAME} (not a gen-hls project, or generated by an older version)")
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise IsegError(f"{path}: not valid JSON ({e})") from None
    except RecursionError:
        raise IsegError(f"{path}: not valid JSON (nested too deeply)") from None
    if not isinstance(doc, dict):
        raise IsegError(f"{path}: not a JSON object")
    if doc.get("format") != FORMAT:
        raise IsegError(f"{path}: format is {doc.get('format')!r}, expected {FORMAT!r}")
    version = doc.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version != VERSION:  # true == 1.0 == 1
        raise IsegError(f"{path}: version {version!r} is not supported (this iseg-host reads "
                        f"version {VERSION}; regenerate the project with this gen-hls)")
    image = _get(doc, "image", list, path)
    if len(image) != 2 or any(not isinstance(v, int) or isinstance(v, bool) or not 1 <= v <= MAX_IMAGE_SIDE
                              for v in image):
        raise IsegError(f"{path}: 'image' must be [H, W], integers in 1..{MAX_IMAGE_SIDE}, got {image!r}")
    patch = _get(doc, "patch", int, path, (1, MAX_IMAGE_SIDE))
    if image[0] % patch or image[1] % patch:  # the model sees a whole grid of patches, nothing else
        raise IsegError(f"{path}: 'image' {image[0]}x{image[1]} is not a multiple of 'patch' {patch}")
    n_cls = _get(doc, "n_cls", int, path, (1, MAX_CLASSES))
    names = _get(doc, "classes.names", list, path)
    colors = _get(doc, "classes.colors", list, path)
    if len(names) != n_cls:
        raise IsegError(f"{path}: classes.names must list {n_cls} names")
    if (len(colors) != n_cls
            or any(not isinstance(c, list) or len(c) != 3
                   or any(not isinstance(v, int) or isinstance(v, bool) or not 0 <= v <= 255 for v in c)
                   for c in colors)):
        raise IsegError(f"{path}: classes.colors must be {n_cls} [r, g, b] triples in 0..255")
    flow, pynq, xrt = _runtime(doc, path)
    return Manifest(
        root=root,
        project=_get(doc, "project", str, path),
        board=_get(doc, "board", str, path),
        image=(image[0], image[1]),
        patch=patch,
        n_cls=n_cls,
        class_names=tuple(str(n) for n in names),
        class_colors=tuple((c[0], c[1], c[2]) for c in colors),
        weights_file=root / _weights_file(doc, path),
        weights_bytes=_get(doc, "weights.bytes", int, path, (1, MAX_BUFFER_BYTES)),
        weights_sha256=_get(doc, "weights.sha256", str, path),
        scratch_bytes=_get(doc, "scratch_bytes", int, path, (1, MAX_BUFFER_BYTES)),
        streams=_streams(doc, path, image[0] * image[1]),
        registers=_registers(doc, path),
        flow=flow,
        pynq=pynq,
        xrt=xrt,
        csim=_get(doc, "csim", dict, path),
        raw=doc,
    )
