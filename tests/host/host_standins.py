"""Helpers for the host tests: a hand-written project manifest and a stand-in backend.

Nothing here pretends to be a board: the stand-ins compute a trivial, checkable function of the
pixels (``label = red % n_cls``) so the tests can tell whether frames were routed, fitted and
restored correctly. No figure from them is a board result.
"""

from __future__ import annotations

import hashlib
import json
import threading
import types
from pathlib import Path

import numpy as np

from iseg.host.backends import Backend
from iseg.host.manifest import Manifest

N_CLS = 5
MODEL = (32, 48)  # (H, W): not square, so row/column mix-ups show
COLORS = [[0, 0, 0], [255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 0]]
PORTS = {
    "pixels": {"protocol": "axis", "beat_bytes": 4, "order": "rgb"},
    "labels": {"protocol": "axis", "beat_bytes": 1},
    "s_axilite": {"ap_ctrl": 0x00, "weights": 0x10, "scratch": 0x1C},
    "pynq": {"kernel_ip": "iseg_top_0", "dma_ip": "axi_dma_0"},
    "xrt": {"kernel": "iseg_top", "args": ["pixels", "labels", "weights", "scratch"]},
}


def expected_labels(image: np.ndarray) -> np.ndarray:
    """What every stand-in computes: the red channel modulo the class count."""
    return (image[:, :, 0] % N_CLS).astype(np.uint8)


def write_project(root: Path, **override: object) -> Path:
    """A minimal project folder: manifest.json + weights.bin (no C++; for the stand-in backends)."""
    root.mkdir(parents=True, exist_ok=True)
    weights = bytes(np.random.default_rng(0).integers(0, 256, 1000, dtype=np.uint8))
    (root / "weights.bin").write_bytes(weights)
    doc = {
        "format": "iseg-project", "version": 1, "project": "standin", "board": "kv260",
        "part": "xck26-sfvc784-2LV-c", "clock_mhz": 250, "image": list(MODEL), "patch": 8, "n_cls": N_CLS,
        "classes": {"names": [f"c{i}" for i in range(N_CLS)], "colors": COLORS},
        "weights": {"file": "weights.bin", "bytes": len(weights), "sha256": hashlib.sha256(weights).hexdigest()},
        "scratch_bytes": 4096, "ports": PORTS,
        "csim": {"library": "build/libiseg_csim.so", "entry": "iseg_csim_run"},
    }
    doc.update(override)
    (root / "manifest.json").write_text(json.dumps(doc))
    return root


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


WEIGHTS_ADDR = 0x8_1234_5000  # above 4 GiB: the high register word must be written
SCRATCH_ADDR = 0x0_7000_0000


def standin_kernel(pixels: np.ndarray) -> np.ndarray:
    """The stand-in accelerator: unpack RGB0 beats, label = red % n_cls, one label per byte."""
    beats = np.asarray(pixels, np.uint8).reshape(-1, 4)
    assert (beats[:, 3] == 0).all()
    return (beats[:, 0] % N_CLS).astype(np.uint8)


def make_pynq_standin(log: list[tuple]) -> types.ModuleType:
    mod = types.ModuleType("pynq")
    mod.__doc__ = "test stand-in for the pynq package (records calls; not a board)"
    addresses = iter([WEIGHTS_ADDR, SCRATCH_ADDR] + [0x1000_0000 * (i + 1) for i in range(16)])

    class Buffer(np.ndarray):
        def flush(self) -> None:
            log.append(("flush", self.physical_address))

        def invalidate(self) -> None:
            log.append(("invalidate", self.physical_address))

        def freebuffer(self) -> None:
            log.append(("free", self.physical_address))

    def allocate(shape, dtype):
        buf = np.zeros(shape, dtype).view(Buffer)
        buf.physical_address = next(addresses)
        log.append(("allocate", shape, np.dtype(dtype).str, buf.physical_address))
        return buf

    class IP:
        def __init__(self) -> None:
            self.regs: dict[int, int] = {}

        def write(self, offset: int, value: int) -> None:
            log.append(("write", offset, value))
            self.regs[offset] = value

        def read(self, offset: int) -> int:
            log.append(("read", offset))
            return 0x2 if self.regs.get(offset) == 0x1 else 0  # ap_done once started

    class Channel:
        def __init__(self, dma: DMA, name: str) -> None:
            self.dma, self.name, self.buf = dma, name, None

        def transfer(self, buf) -> None:
            log.append((f"{self.name}.transfer", buf.physical_address))
            self.buf = buf

        def wait(self) -> None:
            log.append((f"{self.name}.wait",))
            if self.name == "send":
                self.dma.result = standin_kernel(self.buf)
            else:
                self.buf[:] = self.dma.result

    class DMA:
        def __init__(self) -> None:
            self.sendchannel, self.recvchannel = Channel(self, "send"), Channel(self, "recv")
            self.result = None

    class Overlay:
        def __init__(self, bitfile: str) -> None:
            log.append(("Overlay", Path(bitfile).name))
            self.iseg_top_0 = IP()
            self.axi_dma_0 = DMA()

    mod.allocate, mod.Overlay = allocate, Overlay
    return mod
