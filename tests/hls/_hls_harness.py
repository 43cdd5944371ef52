"""Build and drive the C-simulation test harness (``tests/hls/harness.cpp``) through ctypes.

Also ``LayerDesc`` (``hls/layer_desc.h`` as a ctypes struct), a builder of the weights blob in the
layout of ``docs/hls.md`` (``Blob``) and a scratch allocator (``Scratch``), so tests can write layer
tables by hand in the binary form the generated tables compile to.

What hand-written and generated tables must share comes from the generator (``generator/plan.py``),
the one Python statement of it: the ``LayerDesc`` field order (``LAYER_FIELDS``, in which the
generated tables are written), the Shiftmax variant codes (``SM_VARIANT_CODES``, checked against
``enum SmVariant`` by ``test_hls_static``), the alignment of blob segments and scratch buffers
(``ALIGN``) and the row padding of scratch buffers and of the fused embed's pos rows (``_padded``: every
row a whole number of m_axi beats, which the engine reads and writes whole, ``hls/axi.h``), so hand
tables lie out as generated ones do. The tests here then check that order against the compiled C++
struct as well: its size in ``test_layer_desc_layout``, its order in every table they run (a
misplaced field lands in another field's slot).

What stays independent of the generator, on purpose: the tables themselves and the bytes they
point at. These tests check each kernel against ``iseg.numerics`` with operands, constants and
table rows chosen by hand — one-row tables, saturating or tying operands, strided and in-place
views, rows the engine must reject — which the planner cannot express (it lowers whole models from
a checkpoint and validates what it emits), and which would not be independent if it did: a table
built by the planner cannot tell an engine bug from a planner bug. Whole generated tables are
checked against the reference by ``tests/generator/test_csim.py``.
"""

from __future__ import annotations

import ctypes as C
import importlib.resources
import subprocess
from pathlib import Path

import numpy as np

from iseg.generator.plan import ALIGN, LAYER_FIELDS, SM_VARIANT_CODES, _padded
from iseg.numerics import mean_reciprocal

HERE = Path(__file__).resolve().parent
HLS_DIR = Path(str(importlib.resources.files("iseg.hls")))
HARNESS = HERE / "harness.cpp"
CXXFLAGS = ["-std=c++14", "-Wall", "-Wextra", "-Werror", "-shared", "-fPIC"]

# op codes and flags (hls/layer_desc.h)
OP_PATCH_EMBED, OP_EMBED_ADD, OP_LAYERNORM, OP_LINEAR, OP_ATTENTION = 1, 2, 3, 4, 5
OP_ADD, OP_MASK_PRODUCT, OP_ARGMAX_UPSAMPLE, OP_GELU, OP_COPY_CONST = 6, 7, 8, 9, 10
F_GELU, F_RESIDUAL = 1, 2
SM_VARIANTS = SM_VARIANT_CODES  # hls/shiftmax.h SmVariant (checked against the enum: test_hls_static)
GELU_VARIANTS = {"lambda": 0, "shift": 1}
BEAT = 8  # the harness's default m_axi beat, TestCfg::AXI_BYTES (ISEG_TEST_AXI in harness.cpp; Harness.beat)


class GeluParams(C.Structure):
    _fields_ = [("em", C.c_int64), ("variant", C.c_int32), ("x0", C.c_int32), ("n", C.c_int32),
                ("k", C.c_int32), ("L", C.c_int32), ("pad_", C.c_int32)]


class RqDesc(C.Structure):
    _fields_ = [("o", C.c_int64), ("m", C.c_int32), ("e", C.c_int32), ("tab", C.c_int32), ("pad_", C.c_int32)]


_STRUCT_FIELDS = {"gelu": GeluParams, "rq": RqDesc, "rq2": RqDesc}  # every other field is an int32_t


class LayerDesc(C.Structure):
    """``iseg::LayerDesc`` in the generator's field order (``in`` is spelled ``in_`` here: a Python keyword)."""

    _fields_ = [("in_" if f == "in" else f, _STRUCT_FIELDS.get(f, C.c_int32)) for f in LAYER_FIELDS]


def layer(**kw) -> LayerDesc:
    """A table entry like ``iseg::empty_layer()`` (offsets -1) with the given fields set."""
    d = LayerDesc()
    for f in ("in_", "in2", "out", "w", "b", "cst"):
        setattr(d, f, -1)
    d.rq.tab = -1
    d.rq2.tab = -1
    for k, v in kw.items():
        if k == "gelu":
            d.gelu = gelu_params(v)
        elif k in ("rq", "rq2"):
            setattr(d, k, v)
        else:
            setattr(d, k, int(v))
    return d


def ln_mean(n: int) -> dict[str, int]:
    """A LAYERNORM row's mean reciprocal of its N channels (``mean_m``, ``mean_sh``), from ``iseg.numerics``: the
    table field the generator sets (plan.py), which the engine checks (engine.h check_layer)."""
    m, sh = mean_reciprocal(n)
    return {"mean_m": m, "mean_sh": sh}


def gelu_params(c) -> GeluParams:
    """From ``iseg.numerics.GeluConsts``."""
    return GeluParams(em=int(c.em), variant=GELU_VARIANTS[c.variant], x0=int(c.x0), n=int(c.n), k=int(c.k),
                      L=int(c.L))


def rq_scalar(m: int, e: int, o: int = 0) -> RqDesc:
    return RqDesc(o=int(o), m=int(m), e=int(e), tab=-1)


class Blob:
    """The weights blob: arrays appended at 64-byte aligned offsets, little-endian."""

    def __init__(self) -> None:
        self.buf = bytearray()

    def add(self, arr: np.ndarray, dtype) -> int:
        a = np.ascontiguousarray(np.asarray(arr).astype(np.dtype(dtype).newbyteorder("<")))
        self.buf.extend(b"\0" * (-len(self.buf) % ALIGN))
        off = len(self.buf)
        self.buf.extend(a.tobytes())
        return off

    def add_rows(self, arr: np.ndarray, dtype, beat: int = BEAT) -> tuple[int, int]:
        """A 2-D array as rows padded with zeros to whole ``beat``-byte beats (rows the engine reads a beat per
        step: the fused embed's pos rows, generator/plan.py ``_padded``): (blob offset, row stride in elements)."""
        a = np.asarray(arr)
        stride = _padded(a.shape[-1], np.dtype(dtype).itemsize, beat)
        rows = np.zeros((a.shape[0], stride), dtype=np.int64)
        rows[:, :a.shape[-1]] = a
        return self.add(rows, dtype), stride

    def add_weights(self, w: np.ndarray, cols: int) -> int:
        """A (K, N) int8 weight of a LINEAR / PATCH_EMBED row, in the engine's tile order (generator/plan.py
        tile_weights, what the prefetcher copies): ``cols`` is the harness's C."""
        from iseg.generator.plan import tile_weights

        return self.add(tile_weights(np.asarray(w).astype(np.int8), cols), np.int8)

    def rq_table(self, m, e, o, n: int) -> RqDesc:
        """Per-channel records {int32 m, int32 e, int64 o} (scalars are broadcast to n channels)."""
        rec = np.zeros(n, dtype=[("m", "<i4"), ("e", "<i4"), ("o", "<i8")])
        rec["m"], rec["e"], rec["o"] = np.broadcast_to(m, n), np.broadcast_to(e, n), np.broadcast_to(o, n)
        self.buf.extend(b"\0" * (-len(self.buf) % ALIGN))
        off = len(self.buf)
        self.buf.extend(rec.tobytes())
        return RqDesc(o=0, m=0, e=0, tab=off)

    def array(self) -> np.ndarray:
        return np.frombuffer(bytes(self.buf) + b"\0" * ALIGN, dtype=np.uint8).copy()


class Scratch:
    """The activation scratch: named regions at 64-byte aligned byte offsets, every row padded to whole m_axi beats
    (generator/plan.py ``_padded``): the engine reads the scratch a beat at a time and its stores write whole beats
    (hls/axi.h), so each row starts on a beat and owns the padding past its last element (written as zeros, never
    read). A region of shape (..., cols) is prod(leading dims) rows of ``cols`` elements (a 1-D one: one row);
    ``stride(name)`` is its padded row stride in elements, what a layer table passes; ``get`` returns the region
    without its padding."""

    def __init__(self, beat: int = BEAT) -> None:
        self.beat = beat
        self.size = 0
        self.regions: dict[str, tuple[int, tuple[int, ...], np.dtype]] = {}
        self.strides: dict[str, int] = {}
        self.init: dict[str, np.ndarray] = {}

    @staticmethod
    def _rows_cols(shape: tuple[int, ...]) -> tuple[int, int]:
        return int(np.prod(shape[:-1])), int(shape[-1])

    def alloc(self, name: str, shape: tuple[int, ...], dtype, init: np.ndarray | None = None) -> int:
        self.size += -self.size % ALIGN
        off = self.size
        dt = np.dtype(dtype).newbyteorder("<")
        rows, cols = self._rows_cols(tuple(shape))
        stride = _padded(cols, dt.itemsize, self.beat)
        self.regions[name] = (off, tuple(shape), dt)
        self.strides[name] = stride
        self.size += rows * stride * dt.itemsize
        if init is not None:
            self.init[name] = np.asarray(init).astype(dt).reshape(shape)
        return off

    def stride(self, name: str) -> int:
        """The padded row stride of region ``name``, in elements."""
        return self.strides[name]

    def offset(self, name: str, row: int = 0, col: int = 0) -> int:
        """The byte offset of element (row, col) of region ``name`` (a view that starts there)."""
        off, _, dt = self.regions[name]
        return off + (row * self.strides[name] + col) * dt.itemsize

    def array(self) -> np.ndarray:
        buf = np.zeros(self.size + ALIGN, dtype=np.uint8)
        for name, a in self.init.items():
            off, shape, dt = self.regions[name]
            rows, cols = self._rows_cols(shape)
            padded = np.zeros((rows, self.strides[name]), dtype=dt)
            padded[:, :cols] = a.reshape(rows, cols)
            buf[off:off + padded.nbytes] = np.frombuffer(padded.tobytes(), dtype=np.uint8)
        return buf

    def get(self, buf: np.ndarray, name: str) -> np.ndarray:
        off, shape, dt = self.regions[name]
        rows, cols = self._rows_cols(shape)
        n = rows * self.strides[name] * dt.itemsize
        padded = np.frombuffer(buf[off:off + n].tobytes(), dtype=dt).reshape(rows, self.strides[name])
        return padded[:, :cols].reshape(shape).astype(dt.newbyteorder("="))

    def padding(self, buf: np.ndarray, name: str) -> np.ndarray:
        """The padding bytes past each row of region ``name``: (rows, padding bytes per row), u8."""
        off, shape, dt = self.regions[name]
        rows, cols = self._rows_cols(shape)
        row_bytes = self.strides[name] * dt.itemsize
        return buf[off:off + rows * row_bytes].reshape(rows, row_bytes)[:, cols * dt.itemsize:]


def rows_of(data: bytes, dtype, rows: int, cols: int, stride: int) -> np.ndarray:
    """A layer's traced output (``Harness.run``'s ``trace``: T rows at ``stride`` elements, the last cut at its
    ``cols``-th) as a (rows, cols) array without the padding."""
    dt = np.dtype(dtype).newbyteorder("<")
    flat = np.frombuffer(data, dtype=dt)
    assert flat.size == (rows - 1) * stride + cols, "traced bytes: not T rows of the stride"
    flat = np.concatenate([flat, np.zeros(stride - cols, dtype=dt)])
    return flat.reshape(rows, stride)[:, :cols].astype(dt.newbyteorder("="))


TRACE_FN = C.CFUNCTYPE(None, C.c_int, C.c_void_p, C.c_long)


def build(out_dir: Path, opt: str = "-O2", **defines: int) -> Path:
    """Compile the harness into a shared library (ISEG_TEST_<NAME>=value for each define)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    tag = "_".join(f"{k}{v}" for k, v in sorted(defines.items())) or "default"
    lib = out_dir / f"iseg_harness_{tag}{opt}.so"
    flags = [f"-DISEG_TEST_{k.upper()}={v}" for k, v in sorted(defines.items())]
    cmd = ["g++", *CXXFLAGS, opt, *flags, f"-I{HLS_DIR}", str(HARNESS), "-o", str(lib)]
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        raise RuntimeError(f"harness build failed:\n{' '.join(cmd)}\n{res.stderr[-4000:]}")
    return lib


def _p(a: np.ndarray, ctype):
    return a.ctypes.data_as(C.POINTER(ctype))


def _port_lines(fn) -> list[tuple[str, str, int, int]]:
    buf = C.create_string_buffer(1 << 14)
    n = fn(buf, C.c_long(len(buf)))
    assert n >= 0, "port report table overflowed"
    rows = [line.split() for line in buf.value.decode().splitlines()]
    assert len(rows) == n
    return [(r[0], r[1], int(r[2]), int(r[3])) for r in rows]


def _static_rows(buf) -> dict[tuple[str, str], tuple[int, int]]:
    rows = [line.split() for line in buf.value.decode().splitlines()]
    return {(r[0], r[1]): (int(r[2]), int(r[3])) for r in rows}


class Harness:
    """ctypes front end of one compiled harness library."""

    def __init__(self, path: Path) -> None:
        self.lib = C.CDLL(str(path))
        L = self.lib
        L.h_last_error.restype = C.c_char_p
        L.h_stream_script.restype = C.c_long
        L.h_last_cycles.restype = C.c_longlong
        L.h_run.argtypes = [C.POINTER(LayerDesc), C.c_int, C.c_void_p, C.c_void_p, C.c_void_p, C.c_void_p, TRACE_FN]
        self.R = L.h_array_rows()
        self.C = L.h_array_cols()
        self.beat = L.h_axi_bytes()  # TestCfg::AXI_BYTES: Scratch(beat=...) of a build that overrides it

    def error(self) -> str:
        return self.lib.h_last_error().decode()

    def ports(self) -> list[tuple[str, str, int, int]]:
        """The memory port check of the last ``run`` (hls/iseg_ports.h): (loop, buffer, worst accesses of one bank
        in one iteration, accesses that fit) for every pair that exceeded its banks."""
        return _port_lines(self.lib.h_ports)

    def port_probe(self, accesses: list[tuple[int, bool]], ii: int = 1) -> list[tuple[str, str, int, int]]:
        """One pipelined iteration making ``accesses`` ((word, is_write) on a one-bank buffer): the report."""
        words = (C.c_int * len(accesses))(*[w for w, _ in accesses])
        wr = (C.c_int * len(accesses))(*[int(x) for _, x in accesses])
        return _port_lines(lambda buf, n: self.lib.h_port_probe(words, wr, len(accesses), ii, buf, n))

    def axi_probe(self, accesses: list[tuple], beat: int = 16, ii: int = 1) -> list[tuple[str, str, int, int]]:
        """A pipelined loop making m_axi requests ``accesses`` ((bundle 0-2, "blob" | "scratch", byte offset of a
        whole beat, is_write), all in one iteration, or each with its iteration number first) with ``beat``-byte
        beats: the port report. A C-sim error raises RuntimeError."""
        rows = [a if len(a) == 5 else (0, *a) for a in accesses]
        flat = [v for it, b, buf, off, wr in rows for v in (it, b, int(buf == "scratch"), off, int(wr))]
        arr = (C.c_int * max(1, len(flat)))(*flat)
        lines = _port_lines(lambda buf, n: max(0, self.lib.h_axi_probe(beat, arr, len(rows), ii, buf, n)))
        if self.error():
            raise RuntimeError(self.error())
        return lines

    def static_probe(self, accesses: list[tuple[int, int, int]]) -> dict[tuple[str, str], tuple[int, int]]:
        """A pipelined loop on a one-bank buffer, ``accesses`` = (iteration, site 0 | 1, word): the static demand
        report {(loop, buffer): (demand, sites)} (hls/iseg_ports.h, the union of the loop's paths)."""
        flat = [v for a in accesses for v in a]
        arr = (C.c_int * max(1, len(flat)))(*flat)
        buf = C.create_string_buffer(1 << 12)
        assert self.lib.h_static_probe(arr, len(accesses), buf, C.c_long(len(buf))) >= 0
        return _static_rows(buf)

    def static(self) -> dict[tuple[str, str], tuple[int, int]]:
        """The static demand of the last ``run``: {(source loop, buffer or gmemN.read|write): (demand, sites)}."""
        buf = C.create_string_buffer(1 << 14)
        assert self.lib.h_static(buf, C.c_long(len(buf))) >= 0, "static demand table overflowed"
        return _static_rows(buf)

    def axi_bursts(self) -> dict[tuple[str, str], tuple[int, int]]:
        """The sequential runs of the last probe or run: {(loop, "gmemN.read|write"): (bytes, runs)}."""
        buf = C.create_string_buffer(1 << 14)
        n = self.lib.h_axi_bursts(buf, C.c_long(len(buf)))
        assert n >= 0, "burst table overflowed"
        rows = [line.split() for line in buf.value.decode().splitlines()]
        return {(r[0], r[1]): (int(r[2]), int(r[3])) for r in rows}

    def last_cycles(self) -> int:
        """Cycles the engine counted (ISEG_CYCLES) in the last ``run``."""
        return int(self.lib.h_last_cycles())

    # ---- element kernels ----
    def requant(self, z, m, e, o, bits: int) -> np.ndarray:
        z = np.ascontiguousarray(z, dtype=np.int64)
        nch = z.shape[-1] if z.ndim else 1
        m, e, o = (np.ascontiguousarray(np.broadcast_to(v, (nch,)), dtype=t)
                   for v, t in ((m, np.int32), (e, np.int32), (o, np.int64)))
        out = np.empty(z.shape, dtype=np.int32)
        self.lib.h_requant(_p(z, C.c_int64), C.c_long(z.size), nch, _p(m, C.c_int32), _p(e, C.c_int32),
                           _p(o, C.c_int64), bits, _p(out, C.c_int32))
        return out.astype(np.int64)

    def shexp(self, x, x0: int, n: int) -> np.ndarray:
        x = np.ascontiguousarray(x, dtype=np.int64)
        out = np.empty_like(x)
        self.lib.h_shexp(_p(x, C.c_int64), C.c_long(x.size), C.c_int32(x0), n, _p(out, C.c_int64))
        return out

    def isqrt(self, v) -> np.ndarray:
        v = np.ascontiguousarray(v, dtype=np.int64)
        out = np.empty_like(v)
        self.lib.h_isqrt(_p(v, C.c_int64), C.c_long(v.size), _p(out, C.c_int64))
        return out

    def int_add(self, a, b, ma: int, mb: int, e: int, bits: int = 16) -> np.ndarray:
        a = np.ascontiguousarray(a, dtype=np.int32)
        b = np.ascontiguousarray(b, dtype=np.int32)
        out = np.empty_like(a)
        self.lib.h_int_add(_p(a, C.c_int32), _p(b, C.c_int32), C.c_long(a.size), C.c_int32(ma), C.c_int32(mb),
                           C.c_int32(e), bits, _p(out, C.c_int32))
        return out.astype(np.int64)

    def shiftmax(self, x, x0: int, variant: str) -> np.ndarray:
        return self.shiftmax_with_shift(x, x0, variant)[0]

    def shiftmax_with_shift(self, x, x0: int, variant: str) -> tuple[np.ndarray, np.ndarray]:
        """(p (rows, n), r (rows, 1)) of hls/shiftmax.h shiftmax_row: real = p * 2^(r - 15)."""
        x = np.ascontiguousarray(x, dtype=np.int8)
        rows, n = x.shape
        p = np.empty((rows, n), dtype=np.int16)
        r = np.empty((rows, 1), dtype=np.uint8)
        rc = self.lib.h_shiftmax(_p(x, C.c_int8), rows, n, C.c_int32(x0), SM_VARIANTS[variant], _p(p, C.c_int16),
                                 _p(r, C.c_uint8))
        if rc:
            raise RuntimeError(self.error())
        return p.astype(np.int64), r.astype(np.int64)

    def gelu(self, x, consts) -> np.ndarray:
        x = np.ascontiguousarray(x, dtype=np.int8)
        rows, n = x.shape
        y = np.empty((rows, n), dtype=np.int32)
        g = gelu_params(consts)
        if self.lib.h_gelu(_p(x, C.c_int8), rows, n, C.byref(g), _p(y, C.c_int32)):
            raise RuntimeError(self.error())
        return y.astype(np.int64)

    def gelu_lambda(self, x, consts) -> np.ndarray:
        x = np.ascontiguousarray(x, dtype=np.int8)
        y = np.empty(x.shape, dtype=np.int32)
        g = gelu_params(consts)
        self.lib.h_gelu_lambda(_p(x, C.c_int8), C.c_long(x.size), C.byref(g), _p(y, C.c_int32))
        return y.astype(np.int64)

    def stream_script(self, depth: int, ops: list[int]) -> tuple[list[int] | None, int]:
        arr = np.ascontiguousarray(ops, dtype=np.int32)
        out = np.zeros(max(1, len(ops)), dtype=np.int32)
        high = C.c_long(0)
        n = self.lib.h_stream_script(depth, _p(arr, C.c_int32), len(ops), _p(out, C.c_int32), C.byref(high))
        return (None if n < 0 else out[:n].tolist()), high.value

    # ---- the engine ----
    def run(self, table: list[LayerDesc], blob: np.ndarray, scratch: np.ndarray, pixels: np.ndarray | None = None,
            n_labels: int = 0, trace=None) -> tuple[int, np.ndarray]:
        """Run a table; returns (rc, labels). ``trace(layer, bytes)`` receives each layer's output."""
        tab = (LayerDesc * len(table))(*table)
        pix = np.ascontiguousarray(pixels if pixels is not None else np.zeros(1, np.uint8), dtype=np.uint8)
        labels = np.zeros(max(1, n_labels), dtype=np.uint8)
        if trace is None:
            cb = TRACE_FN(0)
        else:
            def _cb(i: int, data: int, nbytes: int) -> None:
                trace(i, C.string_at(data, nbytes) if data else b"")
            cb = TRACE_FN(_cb)
        rc = self.lib.h_run(tab, len(table), blob.ctypes.data, pix.ctypes.data, labels.ctypes.data,
                            scratch.ctypes.data, cb)
        return rc, labels[:n_labels]
