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

import functools
import hashlib
import json
import re
import threading
import types
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
    files["src/top.cpp"] = render_hls(plan, {}, sha)["src/top.cpp"]
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
# pynq stand-in: the "bitstream" file carries the project's block design script
# --------------------------------------------------------------------------------------------
WEIGHTS_ADDR = 0x8_1234_5000  # above 4 GiB: the high register word must be written
SCRATCH_ADDR = 0x0_7000_0000


def standin_bitfile(project: Path, path: Path) -> Path:
    """A stand-in ``.bit``: the project's ``scripts/bd.tcl``, from which the stand-in Overlay names its IPs."""
    path.write_bytes((project / "scripts" / "bd.tcl").read_bytes())
    return path


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
        """IPs named after the block design's cells, as PYNQ names them from the .hwh."""

        def __init__(self, bitfile: str) -> None:
            log.append(("Overlay", Path(bitfile).name))
            bd = Path(bitfile).read_text()
            kernel = re.search(r"create_bd_cell -type ip -vlnv xilinx\.com:hls:\S+ (\S+)", bd)
            dma = re.search(r"create_bd_cell -type ip -vlnv xilinx\.com:ip:axi_dma:\S+ (\S+)", bd)
            assert kernel and dma, "the block design has no HLS kernel or AXI DMA cell"
            k, d = kernel.group(1), dma.group(1)
            # the DMA must feed the kernel's pixel stream and take its label stream
            assert f"[get_bd_intf_pins {d}/M_AXIS_MM2S] [get_bd_intf_pins {k}/pixels]" in bd
            assert f"[get_bd_intf_pins {k}/labels] [get_bd_intf_pins {d}/S_AXIS_S2MM]" in bd
            setattr(self, k, IP())
            setattr(self, d, DMA())

    mod.allocate, mod.Overlay = allocate, Overlay
    return mod


# --------------------------------------------------------------------------------------------
# pyxrt stand-in: the "xclbin" file carries the project's link config and top.cpp
# --------------------------------------------------------------------------------------------
MOVER_ARGS = ("mem", "s", "size")  # the stand-in's model of the mm2s/s2mm data movers: (mem, stream, beats)


def standin_xclbin(project: Path, path: Path) -> Path:
    """A stand-in ``.xclbin``: the link config and top.cpp, from which the stand-in pyxrt wires its kernels."""
    path.write_text(json.dumps({"link_cfg": (project / "scripts" / "link.cfg").read_text(),
                                "top_cpp": (project / "src" / "top.cpp").read_text()}))
    return path


def _top_args(top_cpp: str) -> tuple[list[str], set[str]]:
    """Argument names of the synthesis top, in order, and which of them are streams."""
    m = re.search(r'extern "C" void \w+\((.*?)\)\s*\{', top_cpp, re.S)
    assert m, "no extern \"C\" top in top.cpp"
    params = [p.strip() for p in m.group(1).split(",")]
    names = [re.findall(r"\w+", p)[-1] for p in params]
    return names, {n for n, p in zip(names, params, strict=True) if "hls::stream" in p}


def make_pyxrt_standin(log: list[tuple]) -> types.ModuleType:
    mod = types.ModuleType("pyxrt")
    mod.__doc__ = "test stand-in for XRT's pyxrt module (records calls; not a card)"
    mod.xclBOSyncDirection = types.SimpleNamespace(XCL_BO_SYNC_BO_TO_DEVICE="to", XCL_BO_SYNC_BO_FROM_DEVICE="from")
    mod.ert_cmd_state = types.SimpleNamespace(ERT_CMD_STATE_COMPLETED="completed", ERT_CMD_STATE_TIMEOUT="timeout")
    counter = iter(range(1000))

    class xclbin:  # noqa: N801 - the real module's spelling
        def __init__(self, path: str) -> None:
            self.path = Path(path).name
            doc = json.loads(Path(path).read_text())
            cfg = doc["link_cfg"]
            top_args, top_streams = _top_args(doc["top_cpp"])
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
        def __init__(self, index: int) -> None:
            log.append(("device", index))
            self.xclbin: xclbin | None = None
            self.pending: list[run] = []

        def load_xclbin(self, xb: xclbin) -> str:
            log.append(("load_xclbin", xb.path))
            self.xclbin = xb
            return "uuid"

        def fabric(self) -> None:
            """Once mm2s, kernel and s2mm all run: move the pixels through the kernel into the label buffer."""
            xb = self.xclbin
            by_inst = {r.kernel.instance: r for r in self.pending}
            top = xb.top
            src = next((a for a, _, b, pb in xb.connect if b == top and pb == "pixels"), None)
            dst = next((b for a, pa, b, _ in xb.connect if a == top and pa == "labels"), None)
            if not all(i in by_inst for i in (src, top, dst)):
                return  # a stream kernel without its producer or consumer never finishes
            send, kern, recv = by_inst[src], by_inst[top], by_inst[dst]
            for name in ("weights", "scratch", "scratch_b"):  # the m_axi arguments, in the banks XRT assigned
                arg = kern.kernel.args.index(name)
                assert isinstance(kern.args.get(arg), bo) and kern.args[arg].group == kern.kernel.group_id(arg)
            # scratch_b is a second port onto the scratch: the very same buffer object, not a copy
            k_args = kern.kernel.args
            assert kern.args[k_args.index("scratch_b")] is kern.args[k_args.index("scratch")]
            beats, mem, size = MODEL[0] * MODEL[1], MOVER_ARGS.index("mem"), MOVER_ARGS.index("size")
            assert send.args[size] == beats and recv.args[size] == beats, "mover lengths are counted in beats"
            recv.args[mem].device_mem[:beats] = standin_kernel(send.args[mem].device_mem[: beats * 4])
            for r in (send, kern, recv):
                r.state = "completed"
                self.pending.remove(r)

    class bo:  # noqa: N801
        normal = "normal"

        def __init__(self, dev, size: int, flags, group: int) -> None:
            self.id, self.size, self.group = next(counter), size, group
            self.host = np.zeros(size, np.uint8)
            self.device_mem = np.zeros(size, np.uint8)
            log.append(("bo", self.id, size, flags, group))

        def write(self, data, offset: int) -> None:
            log.append(("bo.write", self.id, len(data), offset))
            self.host[offset:offset + len(data)] = np.frombuffer(bytes(data), np.uint8)

        def sync(self, direction, size: int, offset: int) -> None:
            log.append(("bo.sync", self.id, direction, size, offset))
            if direction == "to":
                self.device_mem[:] = self.host
            else:
                self.host[:] = self.device_mem

        def read(self, size: int, offset: int) -> np.ndarray:
            log.append(("bo.read", self.id, size, offset))
            return self.host[offset:offset + size].view(np.int8).copy()  # pyxrt returns a char array

    class kernel:  # noqa: N801
        shared = "shared"

        def __init__(self, dev: device, uuid, name: str, mode) -> None:
            m = re.fullmatch(r"(\w+):\{(\w+)\}", name)
            assert m, f"open one compute unit by 'kernel:{{instance}}', got {name!r}"
            inst = dev.xclbin.instances.get(m.group(2))
            if inst is None or inst[0] != m.group(1):
                raise RuntimeError(f"No compute units matching '{name}'")
            self.dev, self.name, self.instance = dev, m.group(1), m.group(2)
            self.args, self.streams, self.banks = inst[1], inst[2], inst[3]
            self.base = 100 * (next(counter) + 1)
            log.append(("kernel", name, mode, self.base))  # group_id(i): see below

        def group_id(self, i: int) -> int:
            """One group per memory bank, as in XRT: base + the index of the first argument that link.cfg's
            sp= puts in argument i's bank (base + i for an argument without an sp= line)."""
            assert self.args[i] not in self.streams, f"{self.instance}: argument {i} is a stream, it has no bank"
            bank = self.banks.get(self.args[i])
            if bank is None:
                return self.base + i
            return self.base + next(j for j, a in enumerate(self.args) if self.banks.get(a) == bank)

    class run:  # noqa: N801
        def __init__(self, k: kernel) -> None:
            self.kernel, self.args, self.state = k, {}, "new"

        def set_arg(self, i: int, value) -> None:
            assert self.kernel.args[i] not in self.kernel.streams, \
                f"{self.kernel.instance}: argument {i} ({self.kernel.args[i]}) is a stream; link.cfg connects it"
            self.args[i] = value

        def start(self) -> None:
            log.append(("start", self.kernel.instance))
            self.state = "running"
            self.kernel.dev.pending.append(self)
            self.kernel.dev.fabric()

        def wait(self, timeout_ms: int = 0) -> str:
            log.append(("wait", self.kernel.instance))
            return self.state if self.state == "completed" else "timeout"

    mod.device, mod.xclbin, mod.bo, mod.kernel, mod.run = device, xclbin, bo, kernel, run
    return mod
