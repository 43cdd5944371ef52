"""Helpers for the host tests: a generated project (manifest and build scripts) and stand-in accelerators.

The project is not hand-written: :func:`write_project` plans a small random model for a real
board with ``gen-hls``'s own planner and renders ``manifest.json``, ``src/top.cpp`` and the build
scripts with its own emitters, so the manifest the host tests read cannot drift from the one
``gen-hls`` writes.

Nothing here pretends to be a board: the stand-ins compute a trivial, checkable function of the
pixels (``label = red % n_cls``) so the tests can tell whether frames were routed, packed,
fitted and restored correctly. The ``pynq`` and ``pyxrt`` stand-ins take their wiring from the
generated build scripts (the block design's cell names and connections; the link config's
kernel instances, memory banks and stream connections, and ``top.cpp``'s argument list), the way the real
libraries take it from the bitstream's ``.hwh`` and the xclbin. No figure from them is a board result.
"""

from __future__ import annotations

import enum
import functools
import hashlib
import json
import re
import threading
import types
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np

from iseg.host.backends import Backend
from iseg.host.manifest import Manifest

N_CLS = 5
MODEL = (32, 48)  # (H, W): not square, so row/column mix-ups show
COLORS = [[0, 0, 0], [255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 0]]
PYNQ_BOARD = "zcu104"  # Vivado flow: bitstream + block design (PYNQ)
XRT_BOARD = "kv260"  # Vitis flow: xclbin + data movers (XRT)


@functools.cache
def _generated(board: str) -> dict[str, bytes]:
    """manifest.json, weights.bin, src/top.cpp and scripts/* of a small random model planned for ``board``."""
    from iseg.generator.boards import BOARDS
    from iseg.generator.config import Config
    from iseg.generator.emit import render_hls, render_manifest, render_scripts
    from iseg.generator.plan import blob_bytes, make_plan
    from iseg.random_model import PRESETS, random_checkpoint

    spec = replace(PRESETS["tiny"], dim=16, heads=2, layers=1, mlp_dim=32, dec_dim=16, dec_heads=2, dec_layers=1,
                   dec_mlp_dim=32, image=MODEL, patch=8, n_cls=N_CLS, class_names=tuple(f"c{i}" for i in range(N_CLS)),
                   class_colors=tuple(tuple(c) for c in COLORS))
    ckpt = random_checkpoint(spec, seed=0)
    b = BOARDS[board]
    nowhere = Path("/nonexistent")  # the plan reads no file when given the checkpoint's hash
    cfg = Config(source=nowhere / "config.yaml", checkpoint=nowhere / "standin.safetensors", output=nowhere / "out",
                 project="standin", board=b, clock_mhz=float(b.clock_mhz), array=(8, 8), image=None, outputs=("hls",))
    plan = make_plan(cfg, ckpt, checkpoint_sha256="0" * 64)
    blob = blob_bytes(plan, ckpt)
    sha = hashlib.sha256(blob).hexdigest()
    files = {"weights.bin": blob, **render_manifest(plan, len(blob), sha), **render_scripts(plan)}
    hls = render_hls(plan, {}, sha)
    files["src/top.cpp"], files["src/model_cfg.h"] = hls["src/top.cpp"], hls["src/model_cfg.h"]
    return {k: v.encode() if isinstance(v, str) else v for k, v in files.items()}


def generated_manifest(board: str = PYNQ_BOARD) -> dict:
    """The manifest ``gen-hls``'s emitter writes for the stand-in model on ``board``."""
    return json.loads(_generated(board)["manifest.json"])


def write_project(root: Path, board: str = PYNQ_BOARD, **override: object) -> Path:
    """A project folder as gen-hls writes it (minus the HLS library), ``override`` replacing manifest keys."""
    for rel, data in _generated(board).items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    if override:
        doc = json.loads((root / "manifest.json").read_text())
        doc.update(override)
        (root / "manifest.json").write_text(json.dumps(doc))
    return root


def expected_labels(image: np.ndarray) -> np.ndarray:
    """What every stand-in computes: the red channel modulo the class count."""
    return (image[:, :, 0] % N_CLS).astype(np.uint8)


def standin_kernel(pixels: np.ndarray) -> np.ndarray:
    """The stand-in accelerator: unpack 0x00BBGGRR beats, label = red % n_cls, one label per beat."""
    beats = np.asarray(pixels, np.uint8).reshape(-1, 4)
    assert (beats[:, 3] == 0).all(), "pixel beats must carry 0 in bits 31..24"
    return (beats[:, 0] % N_CLS).astype(np.uint8)


class StandInBackend(Backend):
    """Test stand-in for an accelerator: ``label = red % n_cls``; records what it was given.

    ``on_run(index)`` is called before each frame computes (delays, interruptions, barriers).
    """

    name = "stand-in"

    def __init__(self, manifest: Manifest, on_run=None, on_load=None):
        super().__init__(manifest)
        self.frames: list[np.ndarray | None] = [None] * self.slots
        self.loaded: list[np.ndarray] = []
        self.runs = 0
        self.on_run = on_run
        self.on_load = on_load
        self.lock = threading.Lock()

    def load(self, slot: int, image: np.ndarray) -> None:
        assert image.shape == (*self.manifest.image, 3) and image.dtype == np.uint8
        with self.lock:
            index = len(self.loaded)
            self.loaded.append(image.copy())
        if self.on_load:
            self.on_load(index)
        self.frames[slot] = image.copy()

    def run(self, slot: int) -> np.ndarray:
        if self.on_run:
            self.on_run(self.runs)
        self.runs += 1
        frame = self.frames[slot]
        assert frame is not None
        return expected_labels(frame)


# --------------------------------------------------------------------------------------------
# pynq stand-in: the "bitstream" is a .bit with its .hwh, the .hwh carrying the project's block design
# script and top.cpp (what a real .hwh describes: cells, connections, IP parameters, register map)
# --------------------------------------------------------------------------------------------
# It mirrors PYNQ 3.0's API, checked against Xilinx/PYNQ's sources:
#   pynq/buffer.py     allocate(shape, dtype="u4", target=None, **kwargs) -> PynqBuffer (device_address,
#                      physical_address, coherent, cacheable, flush, invalidate, sync_to_device,
#                      sync_from_device, freebuffer, close); buffers are allocated with coherent=False
#                      (pynq/pl_server/xrt_device.py _xrt_allocate), so flush / invalidate do matter
#   pynq/mmio.py       write(offset, data): offset >= 0 and a multiple of 4 (MemoryError), data exactly an
#                      int or bytes (ValueError), stored as np.uint32; read(offset=0, length=4) -> int
#   pynq/overlay.py    Overlay(bitfile_name, dtbo=None, download=True, ignore_version=False, device=None);
#                      IPs as attributes (AttributeError "Could not find IP or hierarchy ..."), ip_dict;
#                      DefaultIP.read(offset=0) / write(offset, value)
#   pynq/pl_server/device.py  get_bitfile_metadata: ValueError "Cannot find HWH or TCL file for ..."
#   pynq/lib/dma.py    DMA(.sendchannel, .recvchannel, .buffer_max_size = 2**c_sg_length_width - 1);
#                      _SDMAChannel.transfer(array, start=0, nbytes=0), wait() (no timeout: it spins until
#                      idle or raises RuntimeError for the DMASR error bits), idle, error, running, transferred
# The kernel's control register follows Vitis HLS (UG1399 "S_AXILITE Control Register Map"): ap_start
# bit 0 (self-clearing), ap_done bit 1 (clear on read), ap_idle bit 2; 64-bit pointers from 0x10, a
# low word, a high word and a reserved word each, in the order of the synthesis top's arguments.
WEIGHTS_ADDR = 0x8_1234_5000  # above 4 GiB: the high register word must be written
SCRATCH_ADDR = 0x0_7000_0000
PYNQ_FAULTS = ("hang", "dma-decode-error", "short-labels", "long-labels",
               "early-tlast-stall")  # make_pynq_standin(log, fault=...)


def standin_bitfile(project: Path, path: Path) -> Path:
    """A stand-in ``.bit`` and its ``.hwh``: the block design and the top the stand-in Overlay is built from."""
    path.write_bytes(b"stand-in bitstream")
    path.with_suffix(".hwh").write_text(json.dumps({"bd_tcl": (project / "scripts" / "bd.tcl").read_text(),
                                                    "top_cpp": (project / "src" / "top.cpp").read_text()}))
    return path


def _hls_registers(top_cpp: str) -> dict[str, dict]:
    """The s_axilite register map Vitis HLS gives the top: CTRL at 0, pointers from 0x10 (``<arg>_1``, ``<arg>_2``)."""
    names, streams = _top_args(top_cpp)
    lite = set(re.findall(r"^#pragma HLS INTERFACE mode=s_axilite port=(\w+)", top_cpp, re.M))
    regs = {"CTRL": {"address_offset": 0x00, "size": 32}, "GIER": {"address_offset": 0x04, "size": 32},
            "IP_IER": {"address_offset": 0x08, "size": 32}, "IP_ISR": {"address_offset": 0x0C, "size": 32}}
    offset = 0x10
    for arg in names:
        if arg in lite and arg not in streams:
            regs[f"{arg}_1"] = {"address_offset": offset, "size": 32}
            regs[f"{arg}_2"] = {"address_offset": offset + 4, "size": 32}
            offset += 12
    return regs


def make_pynq_standin(log: list[tuple], fault: str | None = None) -> types.ModuleType:
    """The stand-in ``pynq`` module; ``fault`` (one of PYNQ_FAULTS) makes the fabric misbehave as a board can."""
    assert fault is None or fault in PYNQ_FAULTS
    mod = types.ModuleType("pynq")
    mod.__doc__ = "test stand-in for the pynq package (records calls; not a board)"
    addresses = iter([WEIGHTS_ADDR, SCRATCH_ADDR] + [0x1000_0000 * (i + 1) for i in range(16)])
    ddr: dict[int, np.ndarray] = {}  # physical address -> the DDR behind that buffer (what devices see)

    class PynqBuffer(np.ndarray):
        """A cacheable contiguous buffer: the array is the CPU's (cached) view, ``ddr[address]`` what devices see."""

        def __array_finalize__(self, obj) -> None:
            if isinstance(obj, PynqBuffer) and getattr(obj, "coherent", None) is not None:
                offset = self.__array_interface__["data"][0] - obj.__array_interface__["data"][0]
                self.device_address, self.coherent = obj.device_address + offset, obj.coherent
            else:
                self.device_address, self.coherent = None, None

        @property
        def physical_address(self) -> int:
            return self.device_address

        @property
        def cacheable(self) -> bool:
            return not self.coherent

        def _span(self) -> tuple[np.ndarray, np.ndarray]:
            base = next(a for a in ddr if a <= self.device_address < a + len(ddr[a]))
            start = self.device_address - base
            assert self.flags.c_contiguous
            return ddr[base][start:start + self.nbytes], self.reshape(-1).view(np.uint8)

        def flush(self) -> None:
            log.append(("flush", self.device_address))
            mem, cpu = self._span()
            mem[:] = cpu

        def invalidate(self) -> None:
            log.append(("invalidate", self.device_address))
            mem, cpu = self._span()
            cpu[:] = mem

        def sync_to_device(self) -> None:
            self.flush()

        def sync_from_device(self) -> None:
            self.invalidate()

        def freebuffer(self) -> None:
            log.append(("free", self.device_address))

        def close(self) -> None:
            warnings.warn(".close no longer functional - use scopes to manage buffers", DeprecationWarning,
                          stacklevel=2)

    def allocate(shape, dtype="u4", target=None, **kwargs):
        buf = np.zeros(shape, dtype).view(PynqBuffer)
        buf.device_address, buf.coherent = next(addresses), False
        ddr[buf.device_address] = np.zeros(buf.nbytes, np.uint8)
        log.append(("allocate", shape, np.dtype(dtype).str, buf.device_address))
        return buf

    def mmio_check(offset: int) -> None:
        if offset < 0:
            raise ValueError("Offset cannot be negative.")
        if offset % 4:
            raise MemoryError("Unaligned write: offset must be multiple of 4.")

    class HlsIP:
        """DefaultIP on the HLS kernel: its register file, with the Vitis HLS ap_ctrl_hs behaviour."""

        def __init__(self, fabric: Fabric, registers: dict[str, dict]) -> None:
            self.fabric, self.registers = fabric, registers
            self.regs: dict[int, int] = {}
            self.running, self.done = False, False

        def write(self, offset: int, value) -> None:
            mmio_check(offset)
            if type(value) is not int and type(value) is not bytes:
                raise ValueError("Data type must be int or bytes.")
            assert type(value) is int, "the host writes registers one 32-bit word at a time"
            word = int(np.uint32(value))  # numpy refuses a value wider than the register
            log.append(("write", offset, word))
            if offset == 0x00:
                assert word & 0x80 == 0, "auto_restart: the kernel would run again by itself"
                if word & 0x1 and not self.running:
                    self.running = True
                    self.fabric.step()
            else:
                self.regs[offset] = word

        def read(self, offset: int = 0) -> int:
            mmio_check(offset)
            log.append(("read", offset))
            if offset == 0x00:
                value = (int(self.done) << 1) | (int(not self.running) << 2)
                self.done = False  # ap_done: clear on read
                return value
            return self.regs.get(offset, 0)

        def pointer(self, arg: str) -> int:
            lo = self.registers[f"{arg}_1"]["address_offset"]
            return self.regs.get(lo, 0) | self.regs.get(lo + 4, 0) << 32

    class Channel:
        """_SDMAChannel of pynq/lib/dma.py (simple mode)."""

        def __init__(self, fabric: Fabric, name: str, max_size: int, align: int) -> None:
            self.fabric, self.name, self._max_size, self._align = fabric, name, max_size, align
            self._flush_before = name == "send"
            self._first_transfer, self._idle, self._status = True, False, 0x0
            self._active_buffer, self._nbytes, self.transferred = None, 0, 0

        @property
        def running(self) -> bool:  # PYNQ: DMASR.Halted clear; an error halts the channel (PG021)
            return not self.error

        @property
        def idle(self) -> bool:
            return self._idle

        @property
        def error(self) -> bool:
            return self._status & 0x70 != 0

        def transfer(self, array, start: int = 0, nbytes: int = 0) -> None:
            if not self._idle and not self._first_transfer:
                raise RuntimeError("DMA channel not idle")
            if nbytes == 0:
                nbytes = array.nbytes - start
            if nbytes > self._max_size:
                raise ValueError(f"Transfer size is {nbytes} bytes, which exceeds the maximum DMA buffer size "
                                 f"{self._max_size}.")
            if (array.physical_address + start) % self._align:
                raise RuntimeError("DMA does not support unaligned transfers; Starting address must be aligned to "
                                   f"{self._align} bytes.")
            if self._flush_before:
                array.flush()
            log.append((f"{self.name}.transfer", array.physical_address, nbytes))
            self._active_buffer, self._nbytes = array, nbytes
            self._first_transfer, self._idle, self.transferred = False, False, 0
            self.fabric.step()

        def wait(self) -> None:
            log.append((f"{self.name}.wait",))
            if not self.running:  # PYNQ checks this first: on a halted (errored) channel the error bits go unread
                raise RuntimeError("DMA channel not started")
            if self.error:
                raise RuntimeError({0x10: "DMA Internal Error (transfer length 0?)",
                                    0x20: "DMA Slave Error (cannot access memory map interface)",
                                    0x40: "DMA Decode Error (invalid address)"}[self._status & 0x70])
            # PYNQ spins here until idle, with no timeout: on a board a transfer that never ends hangs the host
            assert self._idle, f"{self.name}channel.wait() on a transfer that never ends: the host would hang"
            if not self._flush_before:
                self._active_buffer.invalidate()
            self.transferred = self._nbytes

    class DMA:
        def __init__(self, fabric: Fabric, params: dict[str, int]) -> None:
            self.buffer_max_size = (1 << params["c_sg_length_width"]) - 1
            self.sendchannel = Channel(fabric, "send", self.buffer_max_size, params["c_m_axi_mm2s_data_width"] // 8)
            self.recvchannel = Channel(fabric, "recv", self.buffer_max_size, params["c_m_axi_s2mm_data_width"] // 8)

        def read(self, offset: int = 0) -> int:  # DefaultIP.read: MM2S_DMASR 0x04, S2MM_DMASR 0x34 (PG021)
            ch = {0x04: self.sendchannel, 0x34: self.recvchannel}[offset]
            return ch._status | int(ch.error)  # bit 0: Halted

    class Fabric:
        """The PL: once the kernel runs and both DMA channels are armed, the frame flows through the kernel."""

        def __init__(self) -> None:
            self.ip: HlsIP | None = None
            self.dma: DMA | None = None

        def step(self) -> None:
            ip, send, recv = self.ip, self.dma.sendchannel, self.dma.recvchannel
            armed = ip.running and send._active_buffer is not None and not send._idle
            if not (armed and recv._active_buffer is not None and not recv._idle) or fault == "hang":
                return  # a stream kernel without its input or its output never finishes
            # the kernel's m_axi masters follow its pointer registers into DDR
            weights, scratch = ip.pointer("weights"), ip.pointer("scratch")
            assert weights in ddr and ddr[weights].any(), "weights pointer: not a flushed buffer"
            assert scratch in ddr and ip.pointer("scratch_b") == scratch, "scratch_b must point at the scratch"
            mem, _ = send._active_buffer._span()
            labels = standin_kernel(mem[: send._nbytes])  # what MM2S streams out of DDR
            if fault == "short-labels":
                labels = labels[: len(labels) // 2]  # TLAST early
            elif fault == "long-labels":
                labels = np.concatenate([labels, labels[:16]])  # TLAST a beat late
            out, _ = recv._active_buffer._span()
            if fault == "early-tlast-stall":  # TLAST early and the kernel, its next label refused, stalls: S2MM done,
                half = labels[: len(labels) // 2]  # MM2S never (the pixels are not all read), ap_done never
                out[: len(half)] = half
                recv._nbytes, recv._idle, recv.transferred = len(half), True, len(half)
                return
            send._idle = True
            if fault == "dma-decode-error":
                recv._status = 0x40
            elif len(labels) > recv._nbytes:
                recv._status = 0x10  # S2MM length reached before TLAST: DMAIntErr
            else:
                out[: len(labels)] = labels
                # S2MM stops at TLAST; its length register (PYNQ's `transferred`) holds the count from then on
                recv._nbytes, recv._idle, recv.transferred = len(labels), True, len(labels)
            ip.running, ip.done = False, True

    class Overlay:
        """IPs named after the block design's cells, as PYNQ names them from the .hwh."""

        def __init__(self, bitfile_name: str, dtbo=None, download: bool = True, ignore_version: bool = False,
                     device=None) -> None:
            if not Path(bitfile_name).is_file():
                raise OSError(f"Bitstream file {bitfile_name} does not exist.")
            hwh = Path(bitfile_name).with_suffix(".hwh")
            if not hwh.is_file():
                raise ValueError(f"Cannot find HWH or TCL file for {bitfile_name}.")
            log.append(("Overlay", Path(bitfile_name).name))
            doc = json.loads(hwh.read_text())
            bd = doc["bd_tcl"]
            kernel = re.search(r"create_bd_cell -type ip -vlnv xilinx\.com:hls:\S+ (\S+)", bd)
            dma = re.search(r"create_bd_cell -type ip -vlnv xilinx\.com:ip:axi_dma:\S+ (\S+)", bd)
            assert kernel and dma, "the block design has no HLS kernel or AXI DMA cell"
            k, d = kernel.group(1), dma.group(1)
            # the DMA must feed the kernel's pixel stream and take its label stream
            assert f"[get_bd_intf_pins {d}/M_AXIS_MM2S] [get_bd_intf_pins {k}/pixels]" in bd
            assert f"[get_bd_intf_pins {k}/labels] [get_bd_intf_pins {d}/S_AXIS_S2MM]" in bd
            # the DMA's parameters as the .hwh lists them: set in bd.tcl, else the IP's defaults (PG021)
            params = {"c_sg_length_width": 14, "c_addr_width": 32, "c_include_sg": 1,
                      "c_m_axi_mm2s_data_width": 32, "c_m_axi_s2mm_data_width": 32}
            params.update({key: int(v) for key, v in re.findall(r"CONFIG\.(c_\w+) \{(\d+)\}", bd)})
            assert params["c_include_sg"] == 0, "the host drives the DMA in simple (direct register) mode"
            fabric = Fabric()
            registers = _hls_registers(doc["top_cpp"])
            fabric.ip, fabric.dma = HlsIP(fabric, registers), DMA(fabric, params)
            self.ip_dict = {k: {"type": "xilinx.com:hls", "registers": registers, "parameters": {}},
                            d: {"type": "xilinx.com:ip:axi_dma:7.1",
                                "parameters": {key: str(v) for key, v in params.items()}}}
            self._ips = {k: fabric.ip, d: fabric.dma}

        def __getattr__(self, key: str):
            if key.startswith("_") or key not in self._ips:
                raise AttributeError(f"Could not find IP or hierarchy {key} in overlay")
            return self._ips[key]

    mod.allocate, mod.Overlay = allocate, Overlay
    return mod


# --------------------------------------------------------------------------------------------
# pyxrt stand-in: the "xclbin" file carries the project's link config and top.cpp
# --------------------------------------------------------------------------------------------
# It mirrors XRT's Python binding, checked against Xilinx/XRT src/python/pybind11/src/pyxrt.cpp (the same
# calls in an older version, with hw_context but no runlist, and in the current one) and
# src/runtime_src/core/common/api/xrt_kernel.cpp:
#   xclBOSyncDirection, ert_cmd_state: module-level enums (values of xrt/detail/xclbin.h and ert.h)
#   device(int); device.load_xclbin(xclbin | str) -> uuid
#   xclbin(str)
#   kernel(device, uuid, name[, kernel.cu_access_mode]) (``kernel.shared`` exported into the class), with
#       "name:{cu}" selecting compute units (UG1393 "Kernel Handle and Compute Units"); group_id(int)
#   bo(device, size, bo.flags, memory_group) (``bo.normal`` exported into the class); write(buffer, seek);
#       read(size, skip) -> a char array; sync(direction, size, offset) or sync(direction); map(); size(); address()
#   run(kernel); set_arg(int, bo) / set_arg(int, int); start(); wait() (no timeout) / wait(timeout_ms) ->
#       ert_cmd_state, ERT_CMD_STATE_TIMEOUT when the time ran out; state()
# pybind11 refuses arguments of other types with TypeError, as the stand-in does; XRT's own errors
# arrive as RuntimeError.
MOVER_ARGS = ("mem", "s", "size")  # the stand-in's model of the mm2s/s2mm data movers: (mem, stream, beats)
XRT_FAULTS = ("hang",)


def standin_xclbin(project: Path, path: Path) -> Path:
    """A stand-in ``.xclbin``: the link config and top.cpp, from which the stand-in pyxrt wires its kernels, and
    model_cfg.h, whose PIX / LAB give the kernel's stream widths (a real xclbin's metadata holds them)."""
    path.write_text(json.dumps({"link_cfg": (project / "scripts" / "link.cfg").read_text(),
                                "top_cpp": (project / "src" / "top.cpp").read_text(),
                                "model_cfg_h": (project / "src" / "model_cfg.h").read_text()}))
    return path


def _top_args(top_cpp: str) -> tuple[list[str], set[str]]:
    """Argument names of the synthesis top, in order, and which of them are streams."""
    m = re.search(r'extern "C" void \w+\((.*?)\)\s*\{', top_cpp, re.S)
    assert m, "no extern \"C\" top in top.cpp"
    params = [p.strip() for p in m.group(1).split(",")]
    names = [re.findall(r"\w+", p)[-1] for p in params]
    return names, {n for n, p in zip(names, params, strict=True) if "hls::stream" in p}


def _int_arg(value, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise TypeError(f"{what}: incompatible function arguments ({type(value).__name__})")
    return int(value)


def make_pyxrt_standin(log: list[tuple], fault: str | None = None) -> types.ModuleType:
    """The stand-in ``pyxrt`` module; ``fault="hang"``: no run ever completes."""
    assert fault is None or fault in XRT_FAULTS
    mod = types.ModuleType("pyxrt")
    mod.__doc__ = "test stand-in for XRT's pyxrt module (records calls; not a card)"
    xclBOSyncDirection = enum.Enum("xclBOSyncDirection", [  # noqa: N806 - the real module's spelling
        ("XCL_BO_SYNC_BO_TO_DEVICE", 0), ("XCL_BO_SYNC_BO_FROM_DEVICE", 1),
        ("XCL_BO_SYNC_BO_GMIO_TO_AIE", 2), ("XCL_BO_SYNC_BO_AIE_TO_GMIO", 3)])
    ert_cmd_state = enum.Enum("ert_cmd_state", [  # values of ert.h
        ("ERT_CMD_STATE_NEW", 1), ("ERT_CMD_STATE_QUEUED", 2), ("ERT_CMD_STATE_COMPLETED", 4),
        ("ERT_CMD_STATE_ERROR", 5), ("ERT_CMD_STATE_ABORT", 6), ("ERT_CMD_STATE_SUBMITTED", 7),
        ("ERT_CMD_STATE_TIMEOUT", 8), ("ERT_CMD_STATE_NORESPONSE", 9), ("ERT_CMD_STATE_SKERROR", 10),
        ("ERT_CMD_STATE_SKCRASHED", 11)])
    sync_name = {xclBOSyncDirection.XCL_BO_SYNC_BO_TO_DEVICE: "to",
                 xclBOSyncDirection.XCL_BO_SYNC_BO_FROM_DEVICE: "from"}
    counter = iter(range(1000))

    class uuid:  # noqa: N801 - the real module's spelling
        def __init__(self, text: str) -> None:
            self.text = text

        def to_string(self) -> str:
            return self.text

    class xclbin:  # noqa: N801
        def __init__(self, path: str) -> None:
            self.path = Path(path).name
            try:
                doc = json.loads(Path(path).read_text())
                cfg = doc["link_cfg"]
                top_args, top_streams = _top_args(doc["top_cpp"])
                # words (pixels, labels) per beat of the kernel's two streams
                self.per_beat = {k: int(re.search(rf"static constexpr int {k} = (\d+);", doc["model_cfg_h"]).group(1))
                                 for k in ("PIX", "LAB")}
            except (OSError, ValueError, KeyError, AssertionError, AttributeError) as e:
                raise RuntimeError(f"Invalid xclbin '{path}'") from e
            # instance -> (kernel name, argument names, stream arguments, {argument: memory bank (sp=)})
            self.instances: dict[str, tuple[str, list[str], set[str], dict[str, str]]] = {}
            for kern, inst in re.findall(r"^nk=(\w+):\d+:(\w+)$", cfg, re.M):
                banks = {arg: bank for i, arg, bank in re.findall(r"^sp=(\w+)\.(\w+):(\S+)$", cfg, re.M)
                         if i == inst}
                self.instances[inst] = (kern, top_args, top_streams, banks)
            self.top = next(iter(self.instances))
            self.connect = re.findall(r"^stream_connect=(\w+)\.(\w+):(\w+)\.(\w+)$", cfg, re.M)
            for a, _, b, _ in self.connect:  # data movers: in stream_connect, not built from the project
                for inst in (a, b):
                    if inst not in self.instances:
                        self.instances[inst] = (inst.rsplit("_", 1)[0], list(MOVER_ARGS), {"s"}, {})

    class device:  # noqa: N801
        def __init__(self, index: int = 0) -> None:
            index = _int_arg(index, "device")
            if index != 0:  # the stand-in host has one card
                raise RuntimeError(f"Could not open device with index '{index}'")
            log.append(("device", index))
            self.xclbin: xclbin | None = None
            self.pending: list[run] = []

        def load_xclbin(self, xb) -> uuid:
            if isinstance(xb, str):
                xb = xclbin(xb)
            if not isinstance(xb, xclbin):
                raise TypeError("load_xclbin(): incompatible function arguments")
            log.append(("load_xclbin", xb.path))
            self.xclbin = xb
            return uuid("standin-uuid")

        def fabric(self) -> None:
            """Once mm2s, kernel and s2mm all run: move the pixels through the kernel into the label buffer."""
            xb = self.xclbin
            by_inst = {r.kernel.instance: r for r in self.pending}
            top = xb.top
            src = next((a for a, _, b, pb in xb.connect if b == top and pb == "pixels"), None)
            dst = next((b for a, pa, b, _ in xb.connect if a == top and pa == "labels"), None)
            if not all(i in by_inst for i in (src, top, dst)) or fault == "hang":
                return  # a stream kernel without its producer or consumer never finishes
            send, kern, recv = by_inst[src], by_inst[top], by_inst[dst]
            for name in ("weights", "scratch", "scratch_b"):  # the m_axi arguments, in the banks XRT assigned
                arg = kern.kernel.args.index(name)
                assert isinstance(kern.args.get(arg), bo) and kern.args[arg].group == kern.kernel.group_id(arg)
            # scratch_b is a second port onto the scratch: the very same buffer object, not a copy
            k_args = kern.kernel.args
            assert kern.args[k_args.index("scratch_b")] is kern.args[k_args.index("scratch")]
            px, mem, size = MODEL[0] * MODEL[1], MOVER_ARGS.index("mem"), MOVER_ARGS.index("size")
            assert send.args[size] == px // xb.per_beat["PIX"] and recv.args[size] == px // xb.per_beat["LAB"], \
                "mover lengths are counted in beats of the streams' widths"
            recv.args[mem].device_mem[:px] = standin_kernel(send.args[mem].device_mem[: px * 4])
            for r in (send, kern, recv):
                r._state = ert_cmd_state.ERT_CMD_STATE_COMPLETED
                self.pending.remove(r)

    class bo:  # noqa: N801
        flags = enum.Enum("flags", [("normal", 0), ("cacheable", 1 << 24), ("svm", 1 << 27),
                                    ("device_only", 1 << 28), ("host_only", 1 << 29), ("p2p", 1 << 30)])

        def __init__(self, dev, size, flags, group) -> None:
            if not isinstance(dev, device) or not isinstance(flags, bo.flags):
                raise TypeError("bo(): incompatible constructor arguments")
            size, group = _int_arg(size, "bo size"), _int_arg(group, "bo group")
            self.id, self._size, self.group = next(counter), size, group
            self.host = np.zeros(size, np.uint8)  # the host-side copy of an Alveo buffer
            self.device_mem = np.zeros(size, np.uint8)  # the card's DDR
            log.append(("bo", self.id, size, flags.name, group))

        def _range(self, size: int, offset: int) -> slice:
            if offset + size > self._size:
                raise RuntimeError(f"bo: offset {offset} + size {size} beyond the buffer's {self._size} bytes")
            return slice(offset, offset + size)

        def write(self, data, seek: int) -> None:
            raw = np.frombuffer(memoryview(data).cast("B"), np.uint8)  # any buffer-protocol object
            log.append(("bo.write", self.id, raw.size, seek))
            self.host[self._range(raw.size, _int_arg(seek, "seek"))] = raw

        def sync(self, direction, size=None, offset=None) -> None:
            if not isinstance(direction, xclBOSyncDirection):
                raise TypeError("sync(): incompatible function arguments")
            size = self._size if size is None else _int_arg(size, "size")
            offset = 0 if offset is None else _int_arg(offset, "offset")
            log.append(("bo.sync", self.id, sync_name[direction], size, offset))
            span = self._range(size, offset)
            if direction is xclBOSyncDirection.XCL_BO_SYNC_BO_TO_DEVICE:
                self.device_mem[span] = self.host[span]
            else:
                self.host[span] = self.device_mem[span]

        def read(self, size: int, skip: int) -> np.ndarray:
            log.append(("bo.read", self.id, size, skip))
            return self.host[self._range(_int_arg(size, "size"), _int_arg(skip, "skip"))].view(np.int8).copy()

        def map(self) -> memoryview:
            return memoryview(self.host)

        def size(self) -> int:
            return self._size

        def address(self) -> int:
            return 0x4000_0000 + 0x100_0000 * self.id

    # exported enum values: pybind11's export_values() puts them in the enclosing class too
    for f in bo.flags:
        setattr(bo, f.name, f)

    class kernel:  # noqa: N801
        cu_access_mode = enum.Enum("cu_access_mode", [("exclusive", 0), ("shared", 1), ("none", 2)])

        def __init__(self, dev, xclbin_id, name: str, mode=None) -> None:
            mode = kernel.cu_access_mode.shared if mode is None else mode
            if not isinstance(dev, device) or not isinstance(xclbin_id, uuid) or not isinstance(name, str) \
                    or not isinstance(mode, kernel.cu_access_mode):
                raise TypeError("kernel(): incompatible constructor arguments")
            m = re.fullmatch(r"(\w+):\{(\w+)\}", name)
            assert m, f"open one compute unit by 'kernel:{{instance}}', got {name!r}"
            inst = dev.xclbin.instances.get(m.group(2))
            if inst is None or inst[0] != m.group(1):
                raise RuntimeError(f"No compute units matching '{name}'")
            self.dev, self.name, self.instance = dev, m.group(1), m.group(2)
            self.args, self.streams, self.banks = inst[1], inst[2], inst[3]
            self.base = 100 * (next(counter) + 1)
            log.append(("kernel", name, mode.name, self.base))  # group_id(i): see below

        def group_id(self, i: int) -> int:
            """One group per memory bank, as in XRT: base + the index of the first argument that link.cfg's
            sp= puts in argument i's bank (base + i for an argument without an sp= line)."""
            i = _int_arg(i, "group_id")
            if not 0 <= i < len(self.args):
                raise IndexError(f"{self.instance}: no argument {i}")
            assert self.args[i] not in self.streams, f"{self.instance}: argument {i} is a stream, it has no bank"
            bank = self.banks.get(self.args[i])
            if bank is None:
                return self.base + i
            return self.base + next(j for j, a in enumerate(self.args) if self.banks.get(a) == bank)

    for m_ in kernel.cu_access_mode:
        setattr(kernel, m_.name, m_)

    class run:  # noqa: N801
        def __init__(self, k: kernel) -> None:
            if not isinstance(k, kernel):
                raise TypeError("run(): incompatible constructor arguments")
            self.kernel, self.args, self._state = k, {}, ert_cmd_state.ERT_CMD_STATE_NEW

        def set_arg(self, i: int, value) -> None:
            i = _int_arg(i, "set_arg index")
            if not isinstance(value, bo):
                value = _int_arg(value, "set_arg value")
            assert self.kernel.args[i] not in self.kernel.streams, \
                f"{self.kernel.instance}: argument {i} ({self.kernel.args[i]}) is a stream; link.cfg connects it"
            self.args[i] = value

        def start(self) -> None:
            log.append(("start", self.kernel.instance))
            assert self._state is not ert_cmd_state.ERT_CMD_STATE_SUBMITTED, "started again while running"
            self._state = ert_cmd_state.ERT_CMD_STATE_SUBMITTED
            self.kernel.dev.pending.append(self)
            self.kernel.dev.fabric()

        def wait(self, timeout_ms: int | None = None) -> ert_cmd_state:
            log.append(("wait", self.kernel.instance))
            if self._state is ert_cmd_state.ERT_CMD_STATE_COMPLETED:
                return self._state
            # wait() (or wait(0)) blocks until the run completes: on a card a run that never ends hangs the host
            assert timeout_ms, f"{self.kernel.instance}: wait() without a timeout on a run that never ends"
            return ert_cmd_state.ERT_CMD_STATE_TIMEOUT

        def state(self) -> ert_cmd_state:
            return self._state

    mod.xclBOSyncDirection, mod.ert_cmd_state, mod.uuid = xclBOSyncDirection, ert_cmd_state, uuid
    mod.device, mod.xclbin, mod.bo, mod.kernel, mod.run = device, xclbin, bo, kernel, run
    return mod
