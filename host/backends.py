"""Where the frames are computed: a PYNQ board, an XRT (Alveo) card, or the emulated board.

All three backends implement one small interface, so the pipeline, the inputs and the outputs
never know which one runs:

* ``load(slot, image)``: pack a model-size RGB frame into input buffer ``slot`` and make it
  visible to the device (flush on Zynq, sync to the card on Alveo). The pipeline calls it on
  its prepare thread, so this transfer overlaps the previous frame's compute.
* ``run(slot) -> labels``: start the kernel on that buffer, wait for it, return the (H, W) u8
  label map (a copy, so the output buffer can be reused at once).

Board libraries (``pynq``, ``pyxrt``) are imported only when their backend is chosen; their
absence is one line that says what to do. Everything board-specific comes from the project's
``manifest.json`` (buffer sizes, stream formats, register offsets, kernel argument order): the
host is fixed code plus a generated manifest.

Buffers, the same for every backend and in this order: ``pixels`` (the packed input frame, one
per slot), ``labels`` (the packed output), ``weights`` (``weights.bin``, loaded once), ``scratch``
(the kernel's DDR working memory, ``scratch_bytes``).
"""

from __future__ import annotations

import importlib
import time
from abc import ABC, abstractmethod
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from iseg.errors import IsegError
from iseg.host.manifest import Manifest

BACKENDS = ("emulate", "pynq", "xrt")
AP_START = 0x1
AP_DONE = 0x2
DONE_TIMEOUT_S = 30.0  # a 512² frame takes milliseconds; this long means the kernel hung


def require(module: str, backend: str) -> ModuleType:
    """Import a board library, or fail with one line naming the package and the alternative."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise IsegError(f"the {backend} backend needs the '{module}' package (on the board image); "
                        f"use --emulate on a PC") from None


# --------------------------------------------------------------------------------------------
# Stream formats: how a frame becomes the bytes the DMA moves, and back
# --------------------------------------------------------------------------------------------
class StreamFormat:
    """Byte layout of the pixel and label streams, read from ``ports.pixels`` / ``ports.labels``.

    Pixels: raster order, one pixel per ``beat_bytes``-byte beat, channel ``order[i]`` in byte
    ``i`` (little-endian TDATA: byte 0 is bits 7..0), the remaining bytes zero. Labels: raster
    order, one class index in byte 0 of each ``beat_bytes``-byte beat.
    """

    def __init__(self, m: Manifest):
        self.h, self.w = m.image
        self.pixel_beat = int(m.port("pixels", "beat_bytes"))
        order = str(m.port("pixels", "order")).lower()
        if sorted(order) != ["b", "g", "r"] or self.pixel_beat < 3:
            raise IsegError(f"{m.root}/manifest.json: ports.pixels must carry r, g, b in >= 3 bytes, "
                            f"got order {order!r} in {self.pixel_beat} bytes")
        self.channels = ["rgb".index(c) for c in order]
        self.label_beat = int(m.port("labels", "beat_bytes"))
        if self.label_beat < 1:
            raise IsegError(f"{m.root}/manifest.json: ports.labels.beat_bytes must be >= 1")

    @property
    def pixel_bytes(self) -> int:
        return self.h * self.w * self.pixel_beat

    @property
    def label_bytes(self) -> int:
        return self.h * self.w * self.label_beat

    def pack(self, image: np.ndarray, out: np.ndarray) -> None:
        """Write the (H, W, 3) u8 frame into the u8 buffer ``out`` (``pixel_bytes`` long)."""
        if image.shape != (self.h, self.w, 3) or image.dtype != np.uint8:
            raise ValueError(f"frame {image.shape} {image.dtype} is not ({self.h}, {self.w}, 3) uint8")
        beats = out.reshape(self.h * self.w, self.pixel_beat)
        px = image.reshape(-1, 3)
        if self.pixel_beat > 3:
            beats[:, 3:] = 0
        for i, c in enumerate(self.channels):
            beats[:, i] = px[:, c]

    def unpack(self, buf: np.ndarray) -> np.ndarray:
        """The label buffer -> a fresh (H, W) u8 array."""
        return buf.reshape(self.h * self.w, self.label_beat)[:, 0].reshape(self.h, self.w).copy()


class Backend(ABC):
    """One accelerator (real or emulated) with ``slots`` input buffers; see the module docstring."""

    name: str = ""
    slots: int = 2

    def __init__(self, manifest: Manifest):
        self.manifest = manifest

    @abstractmethod
    def load(self, slot: int, image: np.ndarray) -> None:
        """Move a model-size RGB u8 frame into input buffer ``slot``."""

    @abstractmethod
    def run(self, slot: int) -> np.ndarray:
        """Compute the frame in ``slot``; return its (H, W) u8 labels."""

    def close(self) -> None:  # noqa: B027 - only backends that hold device buffers need it
        """Release buffers and devices (idempotent)."""


# --------------------------------------------------------------------------------------------
# PYNQ (Zynq, Kria): AXI DMA for the streams, s_axilite registers for pointers and control
# --------------------------------------------------------------------------------------------
def _write_u64(ip: Any, offset: int, value: int) -> None:
    """A 64-bit HLS pointer register: low word at ``offset``, high word at ``offset + 4``."""
    ip.write(offset, value & 0xFFFFFFFF)
    ip.write(offset + 4, (value >> 32) & 0xFFFFFFFF)


class PynqBackend(Backend):
    """``pynq.Overlay`` + ``pynq.allocate``: weights loaded into DDR once, pointers written once.

    Per frame: arm the receive DMA, start the kernel (ap_start), send the pixels, wait for both
    DMA channels, then wait for ap_done.
    """

    name = "pynq"

    def __init__(self, manifest: Manifest, bitfile: str | Path):
        super().__init__(manifest)
        pynq = require("pynq", "pynq")
        bit = Path(bitfile)
        if not bit.is_file():
            raise IsegError(f"--bitfile {bit}: no such file")
        self.fmt = StreamFormat(manifest)
        regs = manifest.port("s_axilite")
        self.ctrl = int(manifest.port("s_axilite", "ap_ctrl"))
        weights = manifest.read_weights()
        self.overlay = pynq.Overlay(str(bit))
        self.ip = self._ip(manifest.port("pynq", "kernel_ip"))
        self.dma = self._ip(manifest.port("pynq", "dma_ip"))
        self._buffers: list[Any] = []
        self.weights = self._alloc(pynq, len(weights))
        self.weights[:] = np.frombuffer(weights, np.uint8)
        self.weights.flush()
        self.scratch = self._alloc(pynq, max(manifest.scratch_bytes, 1))
        self.pixels = [self._alloc(pynq, self.fmt.pixel_bytes) for _ in range(self.slots)]
        self.labels = self._alloc(pynq, self.fmt.label_bytes)
        _write_u64(self.ip, int(regs["weights"]), int(self.weights.physical_address))
        _write_u64(self.ip, int(regs["scratch"]), int(self.scratch.physical_address))

    def _ip(self, name: str) -> Any:
        try:
            return getattr(self.overlay, name)
        except AttributeError:
            raise IsegError(f"the bitstream has no IP named {name!r} (does --bitfile match the project?)") from None

    def _alloc(self, pynq: ModuleType, n: int) -> Any:
        buf = pynq.allocate(shape=(n,), dtype=np.uint8)
        self._buffers.append(buf)
        return buf

    def load(self, slot: int, image: np.ndarray) -> None:
        self.fmt.pack(image, self.pixels[slot])
        self.pixels[slot].flush()

    def run(self, slot: int) -> np.ndarray:
        self.dma.recvchannel.transfer(self.labels)
        self.ip.write(self.ctrl, AP_START)
        self.dma.sendchannel.transfer(self.pixels[slot])
        self.dma.sendchannel.wait()
        self.dma.recvchannel.wait()
        deadline = time.monotonic() + DONE_TIMEOUT_S
        while not self.ip.read(self.ctrl) & AP_DONE:
            if time.monotonic() > deadline:
                raise IsegError(f"the kernel did not signal ap_done within {DONE_TIMEOUT_S:.0f} s")
        self.labels.invalidate()
        return self.fmt.unpack(self.labels)

    def close(self) -> None:
        for buf in self._buffers:
            buf.freebuffer()
        self._buffers.clear()


# --------------------------------------------------------------------------------------------
# XRT (Alveo): pyxrt device, xclbin, buffer objects, kernel runs with arguments
# --------------------------------------------------------------------------------------------
class XrtBackend(Backend):
    """``pyxrt``: one buffer object per kernel argument, in the manifest's argument order.

    Weights are written and synced to the card once; per frame the pixels are synced in
    :meth:`load` (overlapping the previous frame), the kernel runs, the labels are synced back.
    """

    name = "xrt"

    def __init__(self, manifest: Manifest, xclbin: str | Path, device: int = 0):
        super().__init__(manifest)
        pyxrt = require("pyxrt", "xrt")
        path = Path(xclbin)
        if not path.is_file():
            raise IsegError(f"--xclbin {path}: no such file")
        self.fmt = StreamFormat(manifest)
        args = list(manifest.port("xrt", "args"))
        if sorted(args) != ["labels", "pixels", "scratch", "weights"]:
            raise IsegError(f"{manifest.root}/manifest.json: ports.xrt.args must order pixels, labels, "
                            f"weights, scratch; got {args!r}")
        self.args = args
        weights = manifest.read_weights()
        self._to = pyxrt.xclBOSyncDirection.XCL_BO_SYNC_BO_TO_DEVICE
        self._from = pyxrt.xclBOSyncDirection.XCL_BO_SYNC_BO_FROM_DEVICE
        self._completed = pyxrt.ert_cmd_state.ERT_CMD_STATE_COMPLETED
        self.device = pyxrt.device(device)
        self.xclbin = pyxrt.xclbin(str(path))
        uuid = self.device.load_xclbin(self.xclbin)
        self.kernel = pyxrt.kernel(self.device, uuid, str(manifest.port("xrt", "kernel")), pyxrt.kernel.shared)

        def bo(arg: str, n: int) -> Any:
            return pyxrt.bo(self.device, n, pyxrt.bo.normal, self.kernel.group_id(args.index(arg)))

        self.weights = bo("weights", len(weights))
        self.weights.write(weights, 0)
        self.weights.sync(self._to, len(weights), 0)
        self.scratch = bo("scratch", max(manifest.scratch_bytes, 1))
        self.pixels = [bo("pixels", self.fmt.pixel_bytes) for _ in range(self.slots)]
        self.labels = bo("labels", self.fmt.label_bytes)
        self._staging = [np.empty(self.fmt.pixel_bytes, np.uint8) for _ in range(self.slots)]

    def load(self, slot: int, image: np.ndarray) -> None:
        self.fmt.pack(image, self._staging[slot])
        self.pixels[slot].write(self._staging[slot], 0)
        self.pixels[slot].sync(self._to, self.fmt.pixel_bytes, 0)

    def run(self, slot: int) -> np.ndarray:
        bufs = {"pixels": self.pixels[slot], "labels": self.labels, "weights": self.weights, "scratch": self.scratch}
        state = self.kernel(*(bufs[a] for a in self.args)).wait()
        if state != self._completed:
            raise IsegError(f"the kernel run ended in state {state}")
        self.labels.sync(self._from, self.fmt.label_bytes, 0)
        raw = np.frombuffer(bytes(self.labels.read(self.fmt.label_bytes, 0)), np.uint8)
        return self.fmt.unpack(raw)


# --------------------------------------------------------------------------------------------
# Emulated board: the generated project's C-simulation library
# --------------------------------------------------------------------------------------------
class EmulateBackend(Backend):
    """The project's C-simulation shared library stands in for the board (built if missing)."""

    name = "emulate"

    def __init__(self, manifest: Manifest):
        super().__init__(manifest)
        from iseg.generator import csim

        lib = manifest.root / str(manifest.csim.get("library", ""))
        if not lib.is_file():
            csim.build(manifest.root)
        self.lib = csim.CsimLibrary(manifest.root)
        self.frames: list[np.ndarray | None] = [None] * self.slots

    def load(self, slot: int, image: np.ndarray) -> None:
        self.frames[slot] = np.ascontiguousarray(image, np.uint8)

    def run(self, slot: int) -> np.ndarray:
        frame = self.frames[slot]
        assert frame is not None, "run() before load()"
        return np.ascontiguousarray(self.lib.run(frame), np.uint8)


def open_backend(kind: str, manifest: Manifest, bitfile: str | None = None, xclbin: str | None = None,
                 device: int = 0) -> Backend:
    """The backend named ``kind`` for ``manifest`` (board files checked here, before any work)."""
    if kind == "emulate":
        return EmulateBackend(manifest)
    if kind == "pynq":
        if not bitfile:
            raise IsegError("the pynq backend needs --bitfile F (the .bit next to its .hwh)")
        return PynqBackend(manifest, bitfile)
    if kind == "xrt":
        if not xclbin:
            raise IsegError("the xrt backend needs --xclbin F")
        return XrtBackend(manifest, xclbin, device)
    raise IsegError(f"unknown backend {kind!r}: expected one of {', '.join(BACKENDS)}")
