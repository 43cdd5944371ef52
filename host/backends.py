"""Where the frames are computed: a PYNQ board, an XRT (Alveo, Kria) card, or the emulated board.

All three backends implement one small interface, so the pipeline, the inputs and the outputs
never know which one runs:

* ``load(slot, image)``: pack a model-size RGB frame into input buffer ``slot`` and make it
  visible to the device (flush on Zynq, sync to the card under XRT). The pipeline calls it on
  its prepare thread, so this transfer overlaps the previous frame's compute.
* ``run(slot) -> labels``: start the kernel on that buffer, wait for it, return the (H, W) u8
  label map (a copy, so the output buffer can be reused at once).

Board libraries (``pynq``, ``pyxrt``) are imported only when their backend is chosen; their
absence is one line that says what to do. Everything board-specific comes from the project's
``manifest.json`` (buffer sizes, stream beat layouts, register offsets, IP and kernel names,
argument indices, data movers): the host is fixed code plus a generated manifest.

Buffers, the same for every backend: ``pixels`` (the packed input frame, one per slot),
``labels`` (the packed output), ``weights`` (``weights.bin``, checked and loaded once),
``scratch`` (the kernel's DDR working memory, ``scratch_bytes``, never cleared between frames).
The kernel reaches the scratch through two ``m_axi`` ports (``scratch`` on gmem1, ``scratch_b`` on
gmem2, so a loop can move two spans of it per cycle); both are given the one scratch buffer.
"""

from __future__ import annotations

import ctypes
import importlib
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from iseg.errors import IsegError
from iseg.host.csimlib import load_library
from iseg.host.manifest import Manifest

BACKENDS = ("emulate", "pynq", "xrt")
DONE_TIMEOUT_S = 30.0  # a 512² frame takes milliseconds; this long means the kernel hung
_LABEL_SPARE = 64  # bytes past a frame's labels in the S2MM buffer (a longer stream is then counted, not undefined)
# AXI DMA DMASR error bits (PG021; PYNQ's _SDMAChannel.wait() words them so)
_DMA_ERRORS = ((0x10, "DMA Internal Error (transfer length 0, or a stream longer than the buffer?)"),
               (0x20, "DMA Slave Error (cannot access memory map interface)"),
               (0x40, "DMA Decode Error (invalid address)"))


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
    """Byte layout of the pixel and label streams (:class:`~iseg.host.manifest.Streams`).

    Pixels: raster order, one pixel per ``pixel_word_bytes``-byte word, channel
    ``pixel_channels[i]`` in byte ``i`` (little-endian TDATA: byte 0 is bits 7..0), the remaining
    bytes zero. Labels: raster order, one class index in byte 0 of each ``label_word_bytes`` word.
    A stream beat carries several words (``pixels_per_beat``, ``labels_per_beat``) without changing
    these bytes: the DMA moves the buffer as it is, only a data mover counts beats.
    """

    def __init__(self, m: Manifest):
        self.h, self.w = m.image
        self.pixel_word = m.streams.pixel_word_bytes
        self.channels = ["rgb".index(c) for c in m.streams.pixel_channels]
        self.label_word = m.streams.label_word_bytes
        self.pixels_per_beat = m.streams.pixels_per_beat
        self.labels_per_beat = m.streams.labels_per_beat

    @property
    def words(self) -> int:
        """Words per frame on either stream: one per pixel."""
        return self.h * self.w

    @property
    def pixel_beats(self) -> int:
        return self.words // self.pixels_per_beat

    @property
    def label_beats(self) -> int:
        return self.words // self.labels_per_beat

    @property
    def pixel_bytes(self) -> int:
        return self.words * self.pixel_word

    @property
    def label_bytes(self) -> int:
        return self.words * self.label_word

    def pack(self, image: np.ndarray, out: np.ndarray) -> None:
        """Write the (H, W, 3) u8 frame into the u8 buffer ``out`` (``pixel_bytes`` long)."""
        if image.shape != (self.h, self.w, 3) or image.dtype != np.uint8:
            raise ValueError(f"frame {image.shape} {image.dtype} is not ({self.h}, {self.w}, 3) uint8")
        words = out.reshape(self.words, self.pixel_word)
        px = image.reshape(-1, 3)
        if self.pixel_word > 3:
            words[:, 3:] = 0
        for i, c in enumerate(self.channels):
            words[:, i] = px[:, c]

    def unpack(self, buf: np.ndarray) -> np.ndarray:
        """The label buffer -> a fresh (H, W) u8 array."""
        return buf.reshape(self.words, self.label_word)[:, 0].reshape(self.h, self.w).copy()


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
# PYNQ (Zynq): AXI DMA for the streams, s_axilite registers for pointers and control
# --------------------------------------------------------------------------------------------
# The calls below were checked against PYNQ 3.0's sources (Xilinx/PYNQ): pynq/overlay.py (Overlay,
# ip_dict, DefaultIP.read/write), pynq/mmio.py (write: offset a multiple of 4, value an ``int`` (exactly)
# or ``bytes``), pynq/buffer.py (allocate, PynqBuffer.physical_address / flush / invalidate /
# freebuffer) and pynq/lib/dma.py (_SDMAChannel.transfer / wait / idle / error / transferred). The
# register layout and ap_ctrl bits are Vitis HLS's (UG1399, "S_AXILITE Control Register Map").
_POLL_S = 1e-4  # between polls of a status register: frees the core for the prepare and finish threads


def _write_u64(ip: Any, offset: int, value: int) -> None:
    """A 64-bit HLS pointer register: low word at ``offset``, high word at ``offset + 4``.

    PYNQ's MMIO.write accepts only a Python ``int`` (``type(data) is int``; a numpy integer raises
    ValueError) and stores it as one 32-bit word, so each half is masked and converted.
    """
    value = int(value)
    ip.write(offset, value & 0xFFFFFFFF)
    ip.write(offset + 4, (value >> 32) & 0xFFFFFFFF)


class PynqBackend(Backend):
    """``pynq.Overlay`` + ``pynq.allocate``: weights loaded into DDR once, pointers written once.

    IP names (``runtime.pynq``) are the block design's cells; register offsets and the ap_ctrl
    bits come from ``ports.control.registers`` and are checked against the register map PYNQ read
    from the bitstream's ``.hwh``. Per frame: arm the receive DMA, start the kernel (ap_start),
    send the pixels, wait for both DMA channels and for ap_done (polled with one deadline:
    PYNQ's own ``wait()`` has no timeout), check the label count, invalidate, unpack.
    """

    name = "pynq"

    def __init__(self, manifest: Manifest, bitfile: str | Path):
        super().__init__(manifest)
        names = manifest.need_pynq()  # a project of the other flow is named first: no package would fix it
        pynq = require("pynq", "pynq")
        bit = Path(bitfile)
        if not bit.is_file():
            raise IsegError(f"--bitfile {bit}: no such file")
        if bit.suffix == ".bit" and not bit.with_suffix(".hwh").is_file():
            raise IsegError(f"--bitfile {bit}: no {bit.with_suffix('.hwh').name} beside it (PYNQ reads the IP "
                            f"names, register map and DMA parameters from it; copy it from the Vivado project)")
        self.fmt = StreamFormat(manifest)
        regs = manifest.registers
        self.ctrl = regs.ap_ctrl
        self.ap_start = 1 << regs.ap_start_bit
        self.ap_done = 1 << regs.ap_done_bit
        weights = manifest.read_weights()
        try:
            self.overlay = pynq.Overlay(str(bit))
        except Exception as e:  # PYNQ raises ValueError, RuntimeError, OSError...: each is one line here
            raise IsegError(f"--bitfile {bit}: PYNQ could not load it ({type(e).__name__}: {e})") from None
        self.ip = self._ip(names.kernel_ip)
        self._check_registers(names.kernel_ip, regs)
        self.dma_name = names.dma_ip
        self.dma = self._ip(names.dma_ip)
        if getattr(self.dma, "sendchannel", None) is None or getattr(self.dma, "recvchannel", None) is None:
            raise IsegError(f"the bitstream's IP {names.dma_ip!r} is not an AXI DMA with both channels (PYNQ bound "
                            f"it to {type(self.dma).__name__}; does --bitfile match the project?)")
        self._buffers: list[Any] = []
        self.weights = self._alloc(pynq, len(weights))
        self.weights[:] = np.frombuffer(weights, np.uint8)
        self.weights.flush()
        self.scratch = self._alloc(pynq, max(manifest.scratch_bytes, 1))
        self.pixels = [self._alloc(pynq, self.fmt.pixel_bytes) for _ in range(self.slots)]
        # one spare 64-byte beat past the frame's labels: S2MM's length is the buffer's, and a stream longer than the
        # length is undefined (PG021 S2MM_LENGTH), so with room for more the received count tells a long stream too
        self.labels = self._alloc(pynq, self.fmt.label_bytes + _LABEL_SPARE)
        # Buffers the device writes start clean in the CPU's cache: no dirty line of them can be evicted later
        # over what the kernel (scratch) or the DMA (labels) wrote. A no-op for a non-cacheable buffer.
        self.scratch.flush()
        self.labels.flush()
        self._check_dma_reach(names.dma_ip)
        _write_u64(self.ip, regs.weights, self.weights.physical_address)
        _write_u64(self.ip, regs.scratch, self.scratch.physical_address)
        _write_u64(self.ip, regs.scratch_b, self.scratch.physical_address)  # same buffer, second port

    def _ip(self, name: str) -> Any:
        try:
            return getattr(self.overlay, name)
        except AttributeError:
            raise IsegError(f"the bitstream has no IP named {name!r} (does --bitfile match the project?)") from None
        except (RuntimeError, ValueError) as e:  # the overlay is not loaded, or the IP's driver refused it
            raise IsegError(f"the bitstream's IP {name!r} cannot be opened: {e}") from None

    def _check_registers(self, ip_name: str, regs: Any) -> None:
        """The manifest's pointer offsets against the register map in the ``.hwh`` (``ip_dict[ip]['registers']``).

        Vitis HLS names a 64-bit pointer's two words ``<arg>_1`` and ``<arg>_2`` (or the pointer ``<arg>``);
        a register map without these names is not compared. A mismatch would make the kernel read and write
        DDR at addresses nobody allocated, so it is one line before anything is written.
        """
        reg_map = (self.overlay.ip_dict.get(ip_name) or {}).get("registers") or {}
        for arg, offset in (("weights", regs.weights), ("scratch", regs.scratch), ("scratch_b", regs.scratch_b)):
            found = reg_map.get(f"{arg}_1") or reg_map.get(arg)
            if found is not None and found.get("address_offset") != offset:
                raise IsegError(f"the bitstream's {ip_name!r} has register {arg!r} at {found.get('address_offset')}, "
                                f"the manifest says {offset} (regenerate the project, or use its bitstream)")

    def _check_dma_reach(self, dma_name: str) -> None:
        """The AXI DMA reaches addresses below 2**c_addr_width (PG021; 32 unless the block design widened it)."""
        params = (self.overlay.ip_dict.get(dma_name) or {}).get("parameters") or {}
        width = int(params.get("c_addr_width", 32))
        for buf in (*self.pixels, self.labels):
            if int(buf.physical_address) + buf.nbytes > 1 << width:
                raise IsegError(f"buffer at {int(buf.physical_address):#x} is beyond the {width}-bit reach of the AXI "
                                f"DMA {dma_name!r} (widen its c_addr_width, or give the board's CMA low memory)")

    def _alloc(self, pynq: ModuleType, n: int) -> Any:
        try:
            buf = pynq.allocate(shape=(n,), dtype=np.uint8)
        except (RuntimeError, MemoryError) as e:
            raise IsegError(f"cannot allocate {n} bytes of contiguous memory on the board ({e})") from None
        self._buffers.append(buf)
        return buf

    def load(self, slot: int, image: np.ndarray) -> None:
        self.fmt.pack(image, self.pixels[slot])
        self.pixels[slot].flush()  # (transfer() flushes it again; this one overlaps the previous frame)

    def _wait(self, what: str, done: Any, deadline: float) -> None:
        while not done():
            if time.monotonic() > deadline:
                raise IsegError(f"{what} within {DONE_TIMEOUT_S:.0f} s: the kernel hung, or the bitstream does "
                                f"not match the project")
            time.sleep(_POLL_S)

    def run(self, slot: int) -> np.ndarray:
        send, recv = self.dma.sendchannel, self.dma.recvchannel
        deadline = time.monotonic() + DONE_TIMEOUT_S
        try:
            recv.transfer(self.labels)
            self.ip.write(self.ctrl, self.ap_start)  # bit 0 only: auto_restart (bit 7) stays off
            send.transfer(self.pixels[slot])
            for what, ch, dmasr in (("send (MM2S)", send, 0x04), ("receive (S2MM)", recv, 0x34)):
                # (a TLAST before the frame's last label leaves S2MM done and the kernel stalled on its next label,
                # its pixels unread: seen at once, not as a hang after the deadline)
                self._wait(f"the AXI DMA {what} channel did not finish",
                           lambda ch=ch: ch.idle or getattr(ch, "error", False) or self._short(recv), deadline)
                if self._short(recv):
                    raise self._tlast_error(recv.transferred)
                if getattr(ch, "error", False):
                    # an error halts the channel (PG021 DMASR.Halted), and PYNQ's wait() checks `running` first: it
                    # would say "DMA channel not started". The cause is in the channel's status register
                    status = int(self.dma.read(dmasr))
                    cause = next((text for bit, text in _DMA_ERRORS if status & bit), f"DMASR {status:#x}")
                    raise RuntimeError(f"{what} channel: {cause}")
                ch.wait()  # returns at once; the receive channel invalidates the label buffer
        except (RuntimeError, ValueError) as e:
            raise IsegError(f"AXI DMA {self.dma_name!r}: {e}") from None
        # ap_done is clear-on-read: the read that sees it is the one that ends the poll
        self._wait("the kernel did not signal ap_done", lambda: self.ip.read(self.ctrl) & self.ap_done, deadline)
        received = getattr(recv, "transferred", None)  # PYNQ >= 3.0: the S2MM length register after the frame
        if isinstance(received, int) and received != self.fmt.label_bytes:
            raise self._tlast_error(received)
        self.labels.invalidate()
        return self.fmt.unpack(self.labels[: self.fmt.label_bytes])

    def _tlast_error(self, received: int) -> IsegError:
        return IsegError(f"the kernel's label stream ended (TLAST) after {received} bytes, expected "
                         f"{self.fmt.label_bytes}")

    def _short(self, recv: Any) -> bool:
        """S2MM finished (TLAST) before the frame's labels were all in (``transferred``: PYNQ >= 3.0)."""
        received = getattr(recv, "transferred", None) if recv.idle else None
        return isinstance(received, int) and received < self.fmt.label_bytes

    def close(self) -> None:
        for buf in self._buffers:
            buf.freebuffer()
        self._buffers.clear()


# --------------------------------------------------------------------------------------------
# XRT (Alveo, Kria): pyxrt device, xclbin, buffer objects, three kernel runs per frame
# --------------------------------------------------------------------------------------------
# The calls below were checked against XRT's Python binding (Xilinx/XRT src/python/pybind11/src/pyxrt.cpp; the
# same in an older version, with hw_context but no runlist, and in the current one): device(int),
# xclbin(str), device.load_xclbin(xclbin) -> uuid, kernel(device, uuid, name, kernel.shared),
# kernel.group_id(int), bo(device, size, bo.normal, group), bo.write(buffer, seek),
# bo.sync(xclBOSyncDirection, size, offset), bo.read(size, skip) (a char array), run(kernel),
# run.set_arg(int, bo | int), run.start(), run.wait(timeout_ms) -> ert_cmd_state (ERT_CMD_STATE_TIMEOUT
# when the time ran out: src/runtime_src/core/common/api/xrt_kernel.cpp). pybind11 turns XRT's exceptions
# into RuntimeError (std::runtime_error, xrt_core::system_error), ValueError (std::invalid_argument),
# IndexError (std::out_of_range) or MemoryError (std::bad_alloc).
_XRT_ERRORS = (RuntimeError, ValueError, IndexError, MemoryError)


@contextmanager
def _xrt(what: str) -> Iterator[None]:
    """One line naming the step for an exception XRT raised while doing it."""
    try:
        yield
    except _XRT_ERRORS as e:
        raise IsegError(f"{what}: {e}") from None


class XrtBackend(Backend):
    """``pyxrt``: the accelerator kernel plus the two stream data movers that ``link.cfg`` connects.

    The kernel's AXI-Streams are wired kernel to kernel at link time (``mm2s_1.s -> pixels``,
    ``labels -> s2mm_1.s``), so the host never passes a stream argument: it hands the pixel
    buffer to the mm2s mover, the label buffer to the s2mm mover, and only the ``m_axi``
    arguments (weights, scratch, and scratch_b: the same scratch buffer object, a second port onto
    it) to the kernel. Argument indices and names are the manifest's ``runtime.xrt``. One run
    object per kernel (two for mm2s: one per input slot) is made once with its arguments set; per
    frame the s2mm run, the kernel run and the mm2s run are started in that order (the receiver
    is ready before data flows), all three are waited for (one deadline), and the labels are synced
    back. Weights are written and synced once; pixels are synced in :meth:`load`, overlapping the
    previous frame.
    """

    name = "xrt"

    def __init__(self, manifest: Manifest, xclbin: str | Path, device: int = 0):
        super().__init__(manifest)
        names = manifest.need_xrt()  # a project of the other flow is named first: no package would fix it
        pyxrt = require("pyxrt", "xrt")
        path = Path(xclbin)
        if not path.is_file():
            raise IsegError(f"--xclbin {path}: no such file")
        self.fmt = StreamFormat(manifest)
        weights = manifest.read_weights()
        self._to = pyxrt.xclBOSyncDirection.XCL_BO_SYNC_BO_TO_DEVICE
        self._from = pyxrt.xclBOSyncDirection.XCL_BO_SYNC_BO_FROM_DEVICE
        self._completed = pyxrt.ert_cmd_state.ERT_CMD_STATE_COMPLETED
        self._timeout = pyxrt.ert_cmd_state.ERT_CMD_STATE_TIMEOUT
        with _xrt(f"cannot open XRT device {device} (xbutil examine lists the devices)"):
            self.device = pyxrt.device(device)
        with _xrt(f"--xclbin {path}: not a readable xclbin"):
            self.xclbin = pyxrt.xclbin(str(path))
        with _xrt(f"--xclbin {path}: the device refused it (built for another platform or shell?)"):
            uuid = self.device.load_xclbin(self.xclbin)

        def kernel(name: str, instance: str) -> Any:
            try:  # "name:{instance}" selects the compute unit that link.cfg wired
                return pyxrt.kernel(self.device, uuid, f"{name}:{{{instance}}}", pyxrt.kernel.shared)
            except _XRT_ERRORS as e:
                raise IsegError(f"the xclbin has no kernel instance {name}:{instance} ({e}); does --xclbin match "
                                f"the project and hold the data movers?") from None

        def group(k: Any, what: str, arg: int) -> int:
            with _xrt(f"the xclbin's {what} has no argument {arg} (does --xclbin match the project?)"):
                return k.group_id(arg)

        def bo(size: int, grp: int, what: str) -> Any:
            with _xrt(f"cannot allocate the {what} buffer ({size} bytes, memory group {grp})"):
                return pyxrt.bo(self.device, size, pyxrt.bo.normal, grp)

        self.kernel = kernel(names.kernel, names.instance)
        self.mm2s = kernel(names.pixels.kernel, names.pixels.instance)
        self.s2mm = kernel(names.labels.kernel, names.labels.instance)
        # scratch and scratch_b are one buffer on two ports. A buffer outside an argument's bank is not an
        # error for XRT: it copies it into a buffer of its own ("Allocating local copy of argument buffer in
        # connected bank", xrt_kernel.cpp validate_bo_at_index), and the two ports would no longer share it.
        g_scratch = group(self.kernel, "kernel", names.scratch_arg)
        if group(self.kernel, "kernel", names.scratch_b_arg) != g_scratch:
            raise IsegError(f"the xclbin puts kernel arguments {names.scratch_arg} (scratch) and "
                            f"{names.scratch_b_arg} (scratch_b) in different memory banks, but they share one "
                            f"buffer (does --xclbin match the project? its link.cfg maps both to one bank)")
        self.weights = bo(len(weights), group(self.kernel, "kernel", names.weights_arg), "weights")
        self.scratch = bo(max(manifest.scratch_bytes, 1), g_scratch, "scratch")
        g_pix = group(self.mm2s, "mm2s mover", names.pixels.buffer_arg)
        self.pixels = [bo(self.fmt.pixel_bytes, g_pix, "pixel") for _ in range(self.slots)]
        self.labels = bo(self.fmt.label_bytes, group(self.s2mm, "s2mm mover", names.labels.buffer_arg), "label")
        self._staging = [np.empty(self.fmt.pixel_bytes, np.uint8) for _ in range(self.slots)]
        with _xrt("cannot load the weights into the device"):
            self.weights.write(weights, 0)
            self.weights.sync(self._to, len(weights), 0)

        with _xrt("cannot set the kernel arguments (does --xclbin match the project?)"):
            self.kernel_run = pyxrt.run(self.kernel)
            self.kernel_run.set_arg(names.weights_arg, self.weights)
            self.kernel_run.set_arg(names.scratch_arg, self.scratch)
            self.kernel_run.set_arg(names.scratch_b_arg, self.scratch)  # same buffer object: one buffer, two ports
            self.send_runs = []
            for buf in self.pixels:
                r = pyxrt.run(self.mm2s)
                r.set_arg(names.pixels.buffer_arg, buf)
                r.set_arg(names.pixels.beats_arg, self.fmt.pixel_beats)
                self.send_runs.append(r)
            self.recv_run = pyxrt.run(self.s2mm)
            self.recv_run.set_arg(names.labels.buffer_arg, self.labels)
            self.recv_run.set_arg(names.labels.beats_arg, self.fmt.label_beats)
        self.names = names

    def load(self, slot: int, image: np.ndarray) -> None:
        self.fmt.pack(image, self._staging[slot])
        with _xrt("cannot move the frame to the device"):
            self.pixels[slot].write(self._staging[slot], 0)
            self.pixels[slot].sync(self._to, self.fmt.pixel_bytes, 0)

    def run(self, slot: int) -> np.ndarray:
        n = self.names
        runs = ((n.labels.instance, self.recv_run), (n.instance, self.kernel_run),
                (n.pixels.instance, self.send_runs[slot]))
        deadline = time.monotonic() + DONE_TIMEOUT_S
        with _xrt("XRT could not run the frame"):
            for _, r in runs:
                r.start()
            for what, r in runs:
                state = r.wait(max(1, round((deadline - time.monotonic()) * 1000)))  # 0 would mean "no timeout"
                if state == self._timeout:
                    raise IsegError(f"the {what} run did not finish within {DONE_TIMEOUT_S:.0f} s: the kernel hung, "
                                    f"or the xclbin does not match the project")
                if state != self._completed:
                    raise IsegError(f"the {what} run ended in state {getattr(state, 'name', state)}")
            self.labels.sync(self._from, self.fmt.label_bytes, 0)
            raw = self.labels.read(self.fmt.label_bytes, 0)
        return self.fmt.unpack(np.asarray(raw).view(np.uint8))


# --------------------------------------------------------------------------------------------
# Emulated board: the generated project's C-simulation library, fed the boards' buffers
# --------------------------------------------------------------------------------------------
_CSIM_LOCKS: dict[str, threading.Lock] = {}
_CSIM_LOCKS_GUARD = threading.Lock()


class EmulateBackend(Backend):
    """The project's C-simulation shared library stands in for the board (built if missing).

    It is handed the buffers a board gets, in the same roles: the packed pixel beats of the
    input slot, the label buffer, ``weights.bin`` (size and sha256 checked, loaded once) and a
    scratch buffer that is *not* cleared between frames (DDR on a board is not either). The
    C entry ``iseg_csim_run(weights, pixels, labels, scratch, trace)`` (``csim.entry``) is
    called through ctypes with them. Its pixel argument is three bytes per pixel, from which it
    rebuilds each pixel's 32-bit word of a TDATA beat as ``p[0] | p[1] << 8 | p[2] << 16``, so the emulated DMA
    forwards bytes 0..2 of every word exactly as packed (whatever the channel order says) and
    checks that the other bytes are zero, as the 0x00BBGGRR word requires; labels come back one
    byte per label. A packing mistake in the host therefore shows up as wrong labels here, as it
    would on a board.
    """

    name = "emulate"

    def __init__(self, manifest: Manifest):
        super().__init__(manifest)
        self.fmt = StreamFormat(manifest)
        if self.fmt.pixel_word < 3:
            raise IsegError(f"{manifest.path}: the C-simulation takes 3 bytes per pixel word, the manifest "
                            f"says {self.fmt.pixel_word}")
        # The C code sizes nothing itself: it reads and writes our buffers as far as the sizes it was
        # compiled with. So they are checked against the manifest before anything is allocated or called.
        lib, lib_path = load_library(manifest)
        self.weights = np.frombuffer(manifest.read_weights(), np.uint8).copy()
        try:
            self.scratch = np.zeros(manifest.scratch_bytes, np.uint8)
            self.pixels = [np.zeros(self.fmt.pixel_bytes, np.uint8) for _ in range(self.slots)]
            self.labels = np.zeros(self.fmt.label_bytes, np.uint8)
            self._lab = np.zeros(self.fmt.words, np.uint8)  # the C entry writes one byte per label
        except MemoryError:
            raise IsegError(f"{manifest.path}: not enough memory for the emulated board's buffers "
                            f"(scratch {manifest.scratch_bytes} bytes, image {self.fmt.h}x{self.fmt.w})") from None
        try:
            self._entry = getattr(lib, str(manifest.csim.get("entry", "iseg_csim_run")))
            self._error = getattr(lib, str(manifest.csim.get("error", "iseg_csim_last_error")))
        except AttributeError as e:
            raise IsegError(f"{lib_path}: not this project's C-simulation library ({e})") from None
        self._entry.restype = ctypes.c_int
        self._entry.argtypes = [ctypes.c_void_p] * 5
        self._error.restype = ctypes.c_char_p
        self._error.argtypes = []
        self._lib = lib
        with _CSIM_LOCKS_GUARD:  # one library's stream storage is static: one frame at a time per library
            self._lock = _CSIM_LOCKS.setdefault(str(lib_path.resolve()), threading.Lock())

    def load(self, slot: int, image: np.ndarray) -> None:
        self.fmt.pack(image, self.pixels[slot])

    def run(self, slot: int) -> np.ndarray:
        words = self.pixels[slot].reshape(self.fmt.words, self.fmt.pixel_word)
        if self.fmt.pixel_word > 3 and words[:, 3:].any():
            raise IsegError("emulated board: pixel words carry non-zero bytes above bits 23..0")
        wire = np.ascontiguousarray(words[:, :3])
        with self._lock:
            rc = self._entry(self.weights.ctypes.data, wire.ctypes.data, self._lab.ctypes.data,
                             self.scratch.ctypes.data, None)
            if rc != 0:
                raise IsegError(f"C-simulation error: {self._error().decode(errors='replace')}")
            self.labels.reshape(self.fmt.words, self.fmt.label_word)[:, 0] = self._lab
        return self.fmt.unpack(self.labels)


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
