"""C-simulation: the generated C++ compiled by g++ into a shared library, driven through ctypes.

``build(project)`` compiles ``src/csim.cpp`` (the engine of ``hls/`` plus the generated layer
table) into ``build/libiseg_csim.so``. Builds are cached by the hash of every source byte and
the compiler command, per project (``build/libiseg_csim.sha256``) and across projects (a user
cache folder), so the same generated project is compiled once.

``CsimLibrary(project)`` is the API the host driver's emulated board uses: ``run(image)`` and
``run_traced(image)``. One lock per library serialises calls (the engine keeps its stream
storage in static arrays), so it is safe to call from any one worker thread at a time.
"""

from __future__ import annotations

import ctypes
import hashlib
import importlib.util
import json
import os
import shutil
import subprocess
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from iseg.errors import IsegError
from iseg.imageio import atomic_write

__all__ = ["build", "check_toolchain", "CsimLibrary", "ap_types_dir", "CXXFLAGS"]

# No -fno-gnu-unique / -Bsymbolic: the generated Cfg sits in an unnamed namespace (model_cfg.h), so
# the engine buffers and stream storage instantiated on it have internal linkage in every library.
CXXFLAGS = ("-O2", "-std=c++17", "-fPIC", "-shared")
_TRACE_FN = ctypes.CFUNCTYPE(None, ctypes.c_int, ctypes.c_void_p, ctypes.c_long)
_LOCKS: dict[str, threading.Lock] = {}
_LOCKS_GUARD = threading.Lock()


def ap_types_dir() -> Path:
    """``ap_int.h`` and friends from the pinned hls4ml wheel (g++ C-simulation only)."""
    spec = importlib.util.find_spec("hls4ml")
    if spec is None or spec.origin is None:
        raise IsegError("C-simulation needs the hls4ml wheel for ap_int.h: pip install hls4ml==1.3.0")
    return Path(spec.origin).parent / "templates" / "vivado" / "ap_types"


def _cache_dir() -> Path:
    base = os.environ.get("ISEG_CSIM_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(Path.home(), ".cache"), "iseg", "csim")
    return Path(base)


def _sources_hash(project: Path, cmd: list[str]) -> str:
    h = hashlib.sha256()
    h.update(" ".join(cmd).encode())
    for p in [project / "src" / "csim.cpp", *sorted((project / "src").glob("*.h")),
              *sorted((project / "src" / "hls").glob("*.h"))]:
        h.update(p.relative_to(project).as_posix().encode())
        h.update(p.read_bytes())
    return h.hexdigest()


def check_toolchain(cxx: str | None = None) -> str:
    """The C++ compiler (``cxx``, else ``$CXX``, else g++) and ``ap_int.h`` the build needs; returns the
    compiler. gen-hls calls it before writing a project, so a missing tool costs no project."""
    cxx = cxx or os.environ.get("CXX", "g++")
    if shutil.which(cxx) is None:
        raise IsegError(f"C-simulation needs a C++ compiler: {cxx!r} not found")
    if not (ap_types_dir() / "ap_int.h").is_file():
        raise IsegError(f"C-simulation needs ap_int.h: not found in {ap_types_dir()}")
    return cxx


def build(project_dir: str | os.PathLike, cxx: str | None = None, port_check: bool = True) -> Path:
    """Compile the project's C-simulation library (cached); returns ``build/libiseg_csim.so``.

    ``port_check=False`` builds ``build/libiseg_csim_fast.so`` with ``-DISEG_NO_PORT_CHECK``: the same
    arithmetic, checks and cycle count without counting every access per memory bank and m_axi bundle (15-20 %
    of a Seg-T frame); its port report is empty and its m_axi byte counts zero. The host's emulated board runs it.
    """
    project = Path(project_dir)
    src = project / "src" / "csim.cpp"
    if not src.is_file():
        raise IsegError(f"{project}: no src/csim.cpp (generate the project with outputs hls or csim)")
    cxx = check_toolchain(cxx)
    flags = [] if port_check else ["-DISEG_NO_PORT_CHECK"]
    # ap_private.h's __FILE__ would put the wheel's absolute path into the library: mapped to a relative name
    ap = ap_types_dir()
    cmd = [cxx, *CXXFLAGS, *flags, f"-ffile-prefix-map={ap}=ap_types", "-Isrc", "-Isrc/hls", f"-I{ap}", "-o", "OUT",
           "src/csim.cpp"]
    digest = _sources_hash(project, cmd)
    name = "libiseg_csim" if port_check else "libiseg_csim_fast"
    out = project / "build" / f"{name}.so"
    stamp = project / "build" / f"{name}.sha256"
    # the stamp: the sources' digest and the library's own sha256, so that a library truncated or replaced on disk
    # is rebuilt rather than loaded (a truncated .so mapped by dlopen ends the process with SIGBUS, no message)
    if out.is_file() and stamp.is_file() and stamp.read_text().split() == [digest, _file_sha256(out)]:
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    cached = _cache_dir() / f"{digest}.so"
    if not cached.is_file():
        cached.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(suffix=".so", dir=cached.parent)
        os.close(fd)
        try:  # an interrupted compile leaves no empty .so in the cache
            run = [c if c != "OUT" else tmp for c in cmd]
            proc = subprocess.run(run, cwd=project, capture_output=True, text=True)
            if proc.returncode != 0:
                first = next((ln for ln in proc.stderr.splitlines() if "error" in ln), proc.stderr.strip()[:300])
                raise IsegError(f"{project}: g++ failed to compile the C-simulation: {first}")
            os.replace(tmp, cached)
        finally:
            Path(tmp).unlink(missing_ok=True)
    try:  # temporary names of their own: processes building one project at once do not share one
        atomic_write(out, lambda tmp: shutil.copyfile(cached, tmp))
        atomic_write(stamp, lambda tmp: tmp.write_text(f"{digest} {_file_sha256(cached)}\n"))
    except OSError as exc:  # a full disk: no half library left, and the line names the project's file
        stamp.unlink(missing_ok=True)
        raise IsegError(f"{out}: cannot write the C-simulation library: {exc.strerror or exc}") from None
    return out


def _file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@dataclass(frozen=True)
class PortExcess:
    """One (pipelined loop, on-chip buffer) pair of the C-sim port check: ``worst`` distinct accesses to one
    bank in one iteration where ``allowed`` (2 x II) fit, in ``iterations`` iterations of the last run."""

    loop: str
    buffer: str
    worst: int
    allowed: int
    iterations: int

    def __str__(self) -> str:
        if self.buffer.startswith("gmem"):  # an m_axi bundle: beats per iteration, II of them fit
            bundle, direction = self.buffer.split(".")
            return (f"{self.loop}: m_axi {bundle} needs up to {self.worst} {direction} beats per iteration, "
                    f"{self.allowed} fit ({self.iterations} iterations)")
        return (f"{self.loop}: {self.buffer} gets up to {self.worst} accesses per bank per iteration, "
                f"{self.allowed} fit ({self.iterations} iterations)")


@dataclass(frozen=True)
class StaticDemand:
    """The union of one pipelined loop's paths on one on-chip buffer or m_axi bundle (``hls/iseg_ports.h``,
    StaticEntry): an HLS tool schedules every access site of the loop body in every iteration, whichever mode or
    branch runs. ``demand``: operations per iteration summed over the ``sites`` that reached the buffer's worst
    bank (words), or the bundle (whole-beat requests, hls/axi.h)."""

    loop: str
    buffer: str
    demand: int
    sites: int

    @property
    def ii(self) -> int:
        """The initiation interval the demand allows: two operations per bank and cycle (true dual-port memories),
        one request per bundle, direction and cycle."""
        return self.demand if self.buffer.startswith("gmem") else -(-self.demand // 2)


@dataclass(frozen=True)
class Burst:
    """The sequential runs one (pipelined loop, m_axi bundle and direction) made in a C-simulation run: ``bytes``
    requested in ``bursts`` runs (a request for the beat after the previous one, or the same, continues a run)."""

    loop: str
    port: str  # gmemN.read | gmemN.write
    bytes: int
    bursts: int

    def mean_beats(self, beat: int) -> float:
        return self.bytes / max(1, self.bursts) / beat


class CsimLibrary:
    """A generated project's C-simulation, loaded with ctypes.

    ``CsimLibrary(project_dir)`` (builds if needed) or ``CsimLibrary(path/to/libiseg_csim.so)``
    (the project is the library's grandparent folder). Reads ``manifest.json`` and
    ``weights.bin`` of the project once.
    """

    def __init__(self, path_or_project: str | os.PathLike):
        p = Path(path_or_project)
        if p.is_dir():
            self.project = p
            self.path = build(p)
        else:
            self.project = p.parent.parent
            self.path = p
        man_path = self.project / "manifest.json"
        if not man_path.is_file():
            raise IsegError(f"{self.project}: no manifest.json (not a gen-hls project)")
        self.manifest = json.loads(man_path.read_text())
        self.image_shape = tuple(self.manifest["image"])
        w = (self.project / self.manifest["weights"]["file"]).read_bytes()
        if len(w) != self.manifest["weights"]["bytes"]:
            raise IsegError(f"{self.project}: weights.bin has {len(w)} bytes, manifest says "
                            f"{self.manifest['weights']['bytes']}")
        self._weights = np.frombuffer(w, dtype=np.uint8).copy()
        self._scratch = np.zeros(self.manifest["scratch_bytes"], dtype=np.uint8)
        self.trace_map = self.manifest["csim"]["trace"]
        self._lib = ctypes.CDLL(str(self.path.resolve()))
        self._run = getattr(self._lib, self.manifest["csim"]["entry"])
        self._run.restype = ctypes.c_int
        self._run.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, _TRACE_FN]
        self._err = self._lib.iseg_csim_last_error
        self._err.restype = ctypes.c_char_p
        with _LOCKS_GUARD:
            self._lock = _LOCKS.setdefault(str(self.path.resolve()), threading.Lock())

    def _check(self, image: np.ndarray) -> np.ndarray:
        image = np.asarray(image)
        h, w = self.image_shape
        if image.dtype != np.uint8 or image.shape != (h, w, 3):
            raise IsegError(f"image must be ({h}, {w}, 3) uint8 RGB, got {image.dtype} {image.shape}")
        return np.ascontiguousarray(image)

    def _call(self, image: np.ndarray, trace_fn) -> np.ndarray:
        img = self._check(image)
        labels = np.zeros(self.image_shape, dtype=np.uint8)
        with self._lock:
            self._scratch[:] = 0
            rc = self._run(self._weights.ctypes.data, img.ctypes.data, labels.ctypes.data, self._scratch.ctypes.data,
                           trace_fn)
            if rc != 0:
                raise IsegError(f"C-simulation error: {self._err().decode(errors='replace')}")
        return labels

    def cycles(self, layer: int = -1) -> int:
        """Cycles the engine counted (ISEG_CYCLES, hls/csim_api.h) for one layer row of the last run, or the
        whole frame (``-1``): the figure `generator/estimate.py` must equal."""
        fn = self._lib.iseg_csim_cycles
        fn.restype, fn.argtypes = ctypes.c_longlong, [ctypes.c_int]
        with self._lock:
            return int(fn(layer))

    def ports(self) -> list[PortExcess]:
        """The on-chip memory port check of the last run (``hls/iseg_ports.h``): every (pipelined loop,
        buffer) whose iterations asked one memory bank for more accesses than its ports give (2 per cycle),
        i.e. where the tool would have to raise the loop's II above what the estimate charges. Empty when
        every loop fits its banking."""
        rows = self._report("iseg_csim_ports", "port check: more (loop, buffer) excesses")
        return [PortExcess(loop, buffer, int(worst), int(allowed), int(iters))
                for loop, buffer, worst, allowed, iters in rows]

    def static_demand(self) -> list[StaticDemand]:
        """The static demand of the last run (``StaticDemand``), largest implied II first. Measured, not checked (the
        engine loop's is II 1 on every bank and bundle since its banks take their accesses through two port sites
        each: docs/hls.md, "What csynth would likely find first", item 11)."""
        rows = self._report("iseg_csim_static", "static demand: more (loop, buffer) pairs")
        out = [StaticDemand(loop, buf, int(demand), int(sites)) for loop, buf, demand, sites in rows]
        return sorted(out, key=lambda e: (-e.ii, e.loop, e.buffer))

    def _report(self, name: str, overflow: str) -> list[list[str]]:
        """The lines of a text report of the C ABI (``int fn(char* buf, long len)``: line count, -1 on overflow),
        split into fields."""
        fn = getattr(self._lib, name)
        fn.restype, fn.argtypes = ctypes.c_int, [ctypes.c_char_p, ctypes.c_long]
        buf = ctypes.create_string_buffer(1 << 16)
        with self._lock:
            n = fn(buf, len(buf))
        if n < 0:
            raise IsegError(f"C-simulation {overflow} than its table holds")
        return [line.split() for line in buf.value.decode().splitlines()]

    def axi_bytes(self) -> dict[str, int]:
        """Bytes the last run moved through each m_axi bundle and direction (``hls/iseg_ports.h``: every access of
        the engine is counted), keyed ``gmem0.read`` ... ``gmem2.write``: the frame's DDR traffic as executed."""
        fn = self._lib.iseg_csim_axi_bytes
        fn.restype, fn.argtypes = None, [ctypes.POINTER(ctypes.c_longlong)]
        out = (ctypes.c_longlong * 6)()
        with self._lock:
            fn(out)
        return {f"gmem{b}.{d}": int(out[2 * b + i]) for b in range(3) for i, d in enumerate(("read", "write"))}

    def bursts(self) -> list[Burst]:
        """The sequential runs of the last run's m_axi accesses per (pipelined loop, bundle, direction)
        (``hls/iseg_ports.h`` axi_burst), largest traffic first."""
        rows = self._report("iseg_csim_bursts", "burst count: more (loop, bundle) pairs")
        out = [Burst(loop, port, int(b), int(r)) for loop, port, b, r in rows]
        return sorted(out, key=lambda x: (-x.bytes, x.loop, x.port))

    def run(self, image: np.ndarray) -> np.ndarray:
        """Labels (H, W) u8 of one (H, W, 3) u8 image."""
        return self._call(image, _TRACE_FN())

    def run_traced(self, image: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Labels and every layer row's output, keyed by graph op name.

        Rows that write part of an activation (the decoder's class tokens) are keyed
        ``name[row0:row1]``.
        """
        raw: dict[int, bytes] = {}
        raised: list[BaseException] = []

        def cb(layer: int, data: int | None, nbytes: int) -> None:
            # ctypes reports an exception raised in a callback (a Ctrl-C landing there) and carries on: the trace
            # would then lack layers, and be compared as if complete. Kept, and raised once the frame returns.
            try:
                raw[layer] = ctypes.string_at(data, nbytes) if data and nbytes > 0 else b""
            except BaseException as exc:  # noqa: BLE001 - re-raised below
                raised.append(exc)

        fn = _TRACE_FN(cb)
        labels = self._call(image, fn)
        if raised:
            raise raised[0]
        out: dict[str, np.ndarray] = {}
        for entry in self.trace_map:
            if entry["name"] is None or entry["layer"] not in raw:
                continue
            out[self.trace_key(entry)] = self._unpack(entry, raw[entry["layer"]])
        return labels, out

    @staticmethod
    def trace_key(entry: dict) -> str:
        if entry["row0"] == 0:
            return entry["name"]
        return f"{entry['name']}[{entry['row0']}:{entry['row0'] + entry['rows']}]"

    @staticmethod
    def _unpack(entry: dict, data: bytes) -> np.ndarray:
        eb, rows, cols, stride = entry["elem_bytes"], entry["rows"], entry["cols"], entry["stride"]
        dt = np.dtype({1: "i1", 2: "<i2"}[eb]) if entry["signed"] else np.dtype("u1")
        flat = np.frombuffer(data, dtype=dt)
        full = np.zeros(rows * stride, dtype=dt)
        full[:flat.size] = flat
        return full.reshape(rows, stride)[:, :cols].copy()
