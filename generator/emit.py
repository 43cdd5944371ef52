"""The emitters: pure functions ``render_*(plan, ...) -> {relative path: str | bytes}``.

No function here touches the output folder (``write.py`` is the only writer); reading the
package's own templates and HLS headers is the only I/O. Templates get the frozen plan plus a
``build`` dict of board-flow strings formatted here, so they only loop and look up.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass
from importlib.resources import files
from typing import Any

import jinja2
import numpy as np

from iseg import numerics as inum
from iseg.checkpoint import QuantizedCheckpoint
from iseg.generator import estimate
from iseg.generator.csim import CXXFLAGS as CSIM_CXXFLAGS
from iseg.generator.plan import Plan, TraceSpec, blob_bytes
from iseg.reference import run as reference_run

__all__ = ["Golden", "golden", "golden_layers", "golden_from_trace", "checksum", "render_hls", "render_weights",
           "render_tb", "render_scripts", "render_report", "render_manifest", "render_readme", "render_project",
           "has_testbench", "MANIFEST_FORMAT", "MANIFEST_VERSION", "trace_map"]

MANIFEST_FORMAT = "iseg-project"
MANIFEST_VERSION = 2  # 2: the streams carry words_per_beat pixels / labels a beat

Files = dict[str, str | bytes]
_CHECK_W = np.arange(1, 65522, dtype=np.int64)


def _env() -> jinja2.Environment:
    root = files("iseg.templates")
    return jinja2.Environment(loader=jinja2.FileSystemLoader(str(root)), undefined=jinja2.StrictUndefined,
                              trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True,
                              autoescape=False)


_ENV: jinja2.Environment | None = None


def _render(name: str, **ctx: Any) -> str:
    global _ENV
    if _ENV is None:
        _ENV = _env()
    return _ENV.get_template(name).render(**ctx)


def _fmt_mhz(v: float) -> str:
    return f"{v:g}"


def build_info(plan: Plan) -> dict[str, Any]:
    """Board-flow strings for the scripts (formatting of plan values, no new decisions)."""
    b = plan.board
    vitis = b.flow == "vitis"
    h, w = plan.spec.image
    info = {
        "clock_mhz": _fmt_mhz(plan.clock_mhz),
        # the kernel's clock never above the one HLS schedules for: the period rounded down to the ps, the link's
        # frequency (freqHz, kernel_frequency in whole MHz) down to the Hz and the MHz (299.6 MHz: 3.337 ns,
        # 299600000 Hz, 299 MHz; rounding to nearest gave 3.338 ns against 300 MHz)
        "clock_hz": str(math.floor(plan.clock_mhz * 1e6)),
        "clock_period_ns": f"{math.floor(1e6 / plan.clock_mhz) / 1e3:.3f}",
        # hls.tcl: the include folders as absolute paths under $root (csim and cosim compile in folders of
        # their own, sol1/csim/build and sol1/sim/wrapc), so the project still holds no absolute path;
        # ISEG_VITIS: Vitis' hls::stream and hls::axis in its csim and cosim too (hls/compat.h), the types the
        # co-simulation wrapper is built from
        "cflags": "-I$root/src -I$root/src/hls -std=c++14 -DISEG_VITIS",
        # the Makefile's csim-lib compiles as generator/csim.py build() does (one set of flags)
        "csim_cxxflags": " ".join(CSIM_CXXFLAGS),
        "flow_target": "vitis" if vitis else "vivado",
        "export_format": "xo" if vitis else "ip_catalog",
        "export_file": f"{plan.project}.xo" if vitis else f"{plan.project}_ip.zip",
        "deploy_target": "xclbin" if vitis else "bitstream",
        "deploy_what": "v++ link into build/" + plan.project + ".xclbin (scripts/link.cfg)" if vitis
        else "Vivado block design + bitstream (scripts/bd.tcl)",
        "deploy_command": (f"v++ -l -t hw --config scripts/link.cfg -o build/{plan.project}.xclbin "
                           f"build/{plan.project}.xo $(DATAMOVERS)") if vitis
        else "vivado -mode batch -source scripts/bd.tcl",
        # link.cfg connects mm2s_1 / s2mm_1, which gen-hls does not generate: without their .xo v++ fails late, on a
        # dangling stream_connect after the export's synthesis, so the Makefile stops at once (a parse-time $(error))
        "deploy_needs": "DATAMOVERS: the .xo files of the stream data movers mm2s and s2mm that scripts/link.cfg "
                        'connects (README.md), e.g. make xclbin DATAMOVERS="mm2s.xo s2mm.xo"' if vitis else "",
        "flow_files": [("scripts/link.cfg", "v++ link config (platform, memory banks, stream connections, clock)")]
        if vitis else [("scripts/bd.tcl", "Vivado block design: Zynq PS, kernel, AXI DMA for the streams")],
        "ps_master": "M_AXI_HPM0_FPD" if b.ps == "zynq_ultra_ps_e" else "M_AXI_GP0",
        "n_pixels": str(h * w),
        "fps": f"{plan.totals['fps']:.1f}",
        # hls.tcl: config_interface -m_axi_alignment_byte_size: the host's buffers are page-aligned; the Vivado IP
        # flow's default is 1 byte, the Vitis flow's 64 (UG1399, "Default Settings of Vivado/Vitis Flows"). Both
        # flows: 64. (The ports are arrays of whole beats, hls/axi.h: no automatic widening is needed.)
        "m_axi_alignment": "64",
        # hls.tcl: config_interface -m_axi_latency, in both flows: what the estimate charges (estimate.PIPE_READ)
        "m_axi_latency": str(estimate.M_AXI_LATENCY),
    }
    if vitis:
        # link.cfg: an embedded platform (KV260) has fixed clocks, chosen or derived with --clock.freqHz; an
        # Alveo platform's kernel clock is scalable, set with --kernel_frequency (UG1393, "Identifying
        # Platform Clocks", "Managing Clock Frequencies").
        # kernel_frequency is a general option: in the config file it goes before the first [section].
        info["link_fixed_clocks"] = bool(b.ps)
        info["kernel_frequency"] = str(math.floor(plan.clock_mhz))
    else:
        mhz = _fmt_mhz(plan.clock_mhz)
        if b.ps == "zynq_ultra_ps_e":
            # the PL clock the kernel runs at (the ZCU10x presets give pl_clk0 100 MHz)
            info["ps_clock_config"] = ("CONFIG.PSU__FPGA_PL0_ENABLE {1} "
                                       f"CONFIG.PSU__CRL_APB__PL0_REF_CTRL__FREQMHZ {{{mhz}}}")
            rule = 'apply_board_preset "{}"'
        else:
            info["ps_clock_config"] = f"CONFIG.PCW_FPGA0_PERIPHERAL_FREQMHZ {{{mhz}}}"
            # the DDR and FIXED_IO of processing_system7 are made external (the PS pins of the package)
            rule = 'make_external "FIXED_IO, DDR" apply_board_preset "{}" Master "Disable" Slave "Disable"'
        # the board preset (DDR, MIO, clocks of the board) only when the board files are installed
        info["ps_rule_board"], info["ps_rule_part"] = rule.format(1), rule.format(0)
    return info


# --------------------------------------------------------------------------------------------
# sources
# --------------------------------------------------------------------------------------------
def library_headers() -> dict[str, str]:
    """The header-only kernel library (package ``iseg.hls``), by file name."""
    root = files("iseg.hls")
    out = {}
    for entry in sorted(root.iterdir(), key=lambda p: p.name):
        if entry.name.endswith(".h"):
            out[entry.name] = entry.read_text(encoding="utf-8")
    return out


def _ident(name: str) -> str:
    return "k" + "".join(p.capitalize() for p in re.split(r"[^A-Za-z0-9]+", name) if p)


def render_hls(plan: Plan, headers: dict[str, str], blob_sha256: str) -> Files:
    out: Files = {f"src/hls/{k}": v for k, v in headers.items()}
    out["src/model_cfg.h"] = _render("hls/model_cfg.h.j2", plan=plan)
    out["src/top.cpp"] = _render("hls/top.cpp.j2", plan=plan)
    out["src/csim.cpp"] = _render("hls/csim.cpp.j2", plan=plan)
    idents = [_ident(s.name) for s in plan.blob]
    out["src/weights_layout.h"] = _render("hls/weights_layout.h.j2", plan=plan, seg_idents=idents,
                                          blob_sha256=blob_sha256)
    return out


def render_weights(plan: Plan, ckpt: QuantizedCheckpoint) -> Files:
    return {"weights.bin": blob_bytes(plan, ckpt)}


# --------------------------------------------------------------------------------------------
# golden vectors and the test bench
# --------------------------------------------------------------------------------------------
def _check_weights(n: int) -> np.ndarray:
    """``i % 65521 + 1`` for ``i < n`` as float64 (cached: the longest so far, sliced)."""
    global _CHECK_WF
    if _CHECK_WF.size < n:
        _CHECK_WF = np.tile(_CHECK_W.astype(np.float64), -(-n // 65521))
    return _CHECK_WF[:n]


_CHECK_WF = np.zeros(0)
_CHECK_CHUNK = 1 << 21  # float64 dot of a chunk of 16-bit values: |sum| < 2^21 * 2^16 * 2^16 = 2^53, exact


def checksum(values: np.ndarray) -> int:
    """sum_i v_i * (i % 65521 + 1) mod 2^64 over the flat signed values (the test bench's checksum)."""
    flat = np.ascontiguousarray(values).reshape(-1)
    if flat.dtype.kind not in "iu" or flat.dtype.itemsize > 2:  # wide values: int64, wrapping like uint64
        flat = flat.astype(np.int64)
        weights = np.tile(_CHECK_W, -(-flat.size // 65521))[:flat.size]
        return int(np.sum(flat * weights, dtype=np.int64).astype(np.uint64))
    # 8- or 16-bit values: |v| < 2^16 and w < 2^16, so each product is below 2^32 and every partial sum
    # of a chunk below 2^53: the float64 dot of a chunk is its exact integer sum (in any order). The
    # chunks add as Python ints, reduced mod 2^64 at the end (= the int64 sum wrapping like uint64).
    weights = _check_weights(flat.size)
    total = 0
    for i in range(0, flat.size, _CHECK_CHUNK):
        total += int(np.dot(flat[i:i + _CHECK_CHUNK].astype(np.float64), weights[i:i + _CHECK_CHUNK]))
    return total % (1 << 64)


def layer_slice(ref: dict[str, np.ndarray], tr: TraceSpec) -> np.ndarray:
    """The reference values a table row must produce (rows ``row0 .. row0+rows`` of its op)."""
    return ref[tr.name][tr.row0:tr.row0 + tr.rows]


@dataclass(frozen=True)
class Golden:
    image: bytes
    labels: bytes
    layers: tuple[tuple[int, int, int], ...]  # (row index, elements, checksum)


GoldenLayers = tuple[tuple[int, TraceSpec], ...]


def golden_layers(plan: Plan) -> GoldenLayers:
    """The layer rows the test bench checks: ``(row index, the activation rows it writes)``."""
    return tuple((row.index, row.trace) for row in plan.layers if row.trace is not None)


def golden_from_trace(layers: GoldenLayers, image: np.ndarray, labels: np.ndarray,
                      ref: dict[str, np.ndarray]) -> Golden:
    """The golden vectors from a reference run's labels and trace (``iseg.reference.run(..., trace=True)``)."""
    rows = []
    for index, tr in layers:
        v = layer_slice(ref, tr)
        rows.append((index, int(v.size), checksum(v)))
    return Golden(np.ascontiguousarray(image).tobytes(), np.ascontiguousarray(labels).tobytes(), tuple(rows))


def golden(plan: Plan, ckpt: QuantizedCheckpoint, image: np.ndarray) -> Golden:
    """Run the reference on ``image`` and checksum what every traced layer row writes."""
    labels, ref = reference_run(ckpt, image, trace=True)
    return golden_from_trace(golden_layers(plan), image, labels, ref)


def render_tb(plan: Plan, g: Golden) -> Files:
    out: Files = {
        "tb/tb.cpp": _render("hls/tb.cpp.j2", plan=plan),
        "tb/golden/image.bin": g.image,
        "tb/golden/labels.bin": g.labels,
        "tb/golden/layers.txt": "".join(f"{i} {n} {s}\n" for i, n, s in g.layers),
    }
    return out


# --------------------------------------------------------------------------------------------
# scripts, report, manifest, readme
# --------------------------------------------------------------------------------------------
def render_scripts(plan: Plan) -> Files:
    build = build_info(plan)
    out: Files = {
        "scripts/hls.tcl": _render("project/hls.tcl.j2", plan=plan, build=build),
        "Makefile": _render("project/Makefile.j2", plan=plan, build=build),
    }
    if plan.board.flow == "vitis":
        out["scripts/link.cfg"] = _render("project/link.cfg.j2", plan=plan, build=build)
    else:
        out["scripts/bd.tcl"] = _render("project/bd.tcl.j2", plan=plan, build=build)
    return out


def report_json(plan: Plan) -> dict[str, Any]:
    t = plan.totals
    return {
        "project": plan.project,
        "board": plan.board.name,
        "part": plan.board.part,
        "clock_mhz": plan.clock_mhz,
        "array": {"rows": plan.rows, "cols": plan.cols, "macs_per_dsp": plan.pack, "k_unroll": plan.engine["kd"],
                  "auto": plan.array_auto},
        "lanes": plan.lanes,
        "budget": None if plan.budget is None else asdict(plan.budget),
        "totals": {k: (round(v, 6) if isinstance(v, float) else v) for k, v in t.items()},
        "units": [vars(u) | {} for u in plan.units],
        "ops": [{"name": o.name, "kind": o.kind, "macs": o.macs, "cycles": o.cycles,
                 "stalls": dict(o.stalls), "weight_bytes": o.weight_bytes, "scratch_bytes": o.ddr_bytes}
                for o in plan.op_estimates],
    }


def _summary(plan: Plan) -> list[tuple[str, str]]:
    t = plan.totals
    return [
        ("array", f"{plan.rows} x {plan.cols}"
                  + (f" x {plan.engine['kd']} (k per step)" if plan.engine["kd"] > 1 else "")
                  + f" int8 MACs ({'auto' if plan.array_auto else 'explicit'}), {plan.pack} MAC/DSP"),
        ("P.V", f"{plan.engine['pv_ii']} cycle(s) per key (Shiftmax {plan.spec.softmax}: "
                f"u{inum.SHIFTMAX_VARIANTS[plan.spec.softmax].p_bits} probabilities"
                f"{', per-row shift' if inum.SHIFTMAX_VARIANTS[plan.spec.softmax].r_max else ''})"),
        ("cycles per frame", f"{t['cycles']:,}"),
        ("FPS", f"{t['fps']:.2f}"),
        ("latency", f"{t['latency_ms']:.2f} ms"),
        ("MACs per frame", f"{t['macs']:,}"),
        ("throughput", f"{t['gops']:.1f} GOP/s of {t['peak_gops']:.1f} peak"),
        ("array utilisation", f"{100 * t['array_util']:.1f} % of the array's MAC peak"),
        ("array-bound ceiling", f"{t['ceiling_fps']:.2f} FPS: the array steps "
                                f"{100 * t['busy_cycles'] / t['cycles']:.1f} % of the frame; with every other cycle "
                                "hidden under it, no schedule change on this array passes this"),
        ("board utilisation", f"{100 * t['board_peak_util']:.1f} % of all DSPs x {plan.board.macs_per_dsp} MACs"),
        ("weight traffic per frame", f"{t['weight_bytes_per_frame']:,} bytes"),
        ("scratch traffic per frame", f"{t['scratch_bytes_per_frame']:,} bytes"),
        ("DSP", f"{t['dsp']} of {plan.board.dsp} ({t['dsp_pct']:.1f} %)"),
        ("LUT", f"{t['lut']:,} of {plan.board.lut:,} ({100 * t['lut'] / plan.board.lut:.1f} %)"),
        ("budget", "array: auto within " + plan.budget.describe() + " of the device" if plan.budget is not None
         else "none: an explicit array, checked against the whole device"),
        ("weights blob / scratch", f"{plan.blob_bytes:,} / {plan.scratch_bytes:,} bytes"),
    ]


def _plots(plan: Plan) -> Files:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    kinds: dict[str, int] = {}
    for o in plan.op_estimates:
        kinds[o.kind] = kinds.get(o.kind, 0) + o.cycles
    fig, ax = plt.subplots(figsize=(7, 3.5), dpi=80)
    names = [k for k in kinds if kinds[k] > 0]
    ax.barh(names, [kinds[k] / 1e6 for k in names], color="#4477aa")
    ax.set_xlabel("Mcycles per frame")
    ax.set_title(f"{plan.project}: cycles by op kind ({plan.board.name}, {plan.clock_mhz:g} MHz)")
    fig.tight_layout()
    out: Files = {}
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None})
    plt.close(fig)
    out["report_cycles.png"] = buf.getvalue()
    # roofline: attainable GOP/s vs arithmetic intensity (MAC per DDR byte)
    peak = plan.totals["peak_gops"]
    bw = (plan.lanes["weight_bytes_per_cycle"] + plan.lanes["scratch_bytes_per_cycle"]) * plan.clock_mhz / 1e3
    fig, ax = plt.subplots(figsize=(6, 4), dpi=80)
    xs = np.logspace(-1, 4, 200)
    ax.loglog(xs, np.minimum(peak, 2 * xs * bw), color="black", lw=1)
    for o in plan.op_estimates:
        if o.macs and o.cycles:
            ai = o.macs / max(1, o.weight_bytes + o.ddr_bytes)
            ax.scatter([ai], [2 * o.macs * plan.clock_mhz / 1e3 / o.cycles], s=8, color="#cc6677")
    ax.set_xlabel("MAC per DDR byte")
    ax.set_ylabel("GOP/s")
    ax.set_title("roofline (GEMM ops)")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None})
    plt.close(fig)
    out["report_roofline.png"] = buf.getvalue()
    return out


def render_report(plan: Plan, rtl_resources: dict[str, Any] | None = None, plots: bool = True) -> Files:
    """``report.md``/``report.json`` (and, with ``plots``, the PNG figures).

    ``rtl_resources`` (from :func:`render_rtl`) adds the yosys table of the Verilog units:
    ``{"measured": True, "tool": ..., "units": {unit: {LUT, FF, ...}}, "total": {...},
    "not_measured": {unit: reason}}`` or ``{"measured": False, "reason": ...}``; without it the
    report has no RTL section.
    """
    from iseg.generator.rtl import RESOURCE_COLUMNS

    rtl = None
    if rtl_resources is not None:
        rtl = {"measured": bool(rtl_resources.get("measured")), "reason": rtl_resources.get("reason", ""),
               "tool": rtl_resources.get("tool", ""), "columns": list(RESOURCE_COLUMNS),
               "rows": [[u, *(f"{res[c]:,}" for c in RESOURCE_COLUMNS)]
                        for u, res in rtl_resources.get("units", {}).items()],
               "total": [f"{rtl_resources['total'][c]:,}" for c in RESOURCE_COLUMNS]
               if "total" in rtl_resources else [],
               "missing": sorted(rtl_resources.get("not_measured", {}).items())}
    data = report_json(plan)
    if rtl_resources is not None:
        data["rtl_resources"] = rtl_resources
    out: Files = {
        "report.md": _render("project/report.md.j2", plan=plan, build=build_info(plan), summary=_summary(plan),
                             rtl=rtl),
        "report.json": json.dumps(data, indent=1, sort_keys=True) + "\n",
    }
    if plots:
        out.update(_plots(plan))
    return out


def trace_map(plan: Plan) -> list[dict[str, Any]]:
    """Which graph activation each layer row writes (for C-simulation comparisons)."""
    return [{"layer": r.index, "ops": list(r.ops), "name": r.trace.name, "row0": r.trace.row0, "rows": r.trace.rows,
             "cols": r.trace.cols, "stride": r.trace.stride, "elem_bytes": r.trace.elem_bytes,
             "signed": r.trace.signed} if r.trace else {"layer": r.index, "ops": list(r.ops), "name": None}
            for r in plan.layers]


def render_manifest(plan: Plan, blob_size: int, blob_sha256: str) -> Files:
    """``manifest.json``: the whole contract of the fixed host code (``iseg-host``) with this project.

    The host parses no C++ or TCL, so everything it must agree on with the generated hardware is
    spelled out here: stream beat layouts, the register map, and the names the build scripts give
    the kernel and its helpers -- the PYNQ overlay cells of ``bd.tcl`` (Vivado flow) or the XRT
    kernel instance, its ``m_axi`` argument indices (``top.cpp``) and the stream data movers of
    ``link.cfg`` (Vitis flow). ``tests/host`` checks these names against the rendered scripts.
    """
    s = plan.spec
    if plan.board.flow == "vitis":
        # top.cpp's argument order: pixels 0, labels 1 (AXI-Streams, wired by link.cfg), weights 2, scratch 3,
        # scratch_b 4 (a second m_axi port onto the scratch: the host passes it the same buffer object).
        # Data movers as link.cfg connects them (mm2s_1.s -> pixels, labels -> s2mm_1.s): the Vitis
        # tutorials' mm2s/s2mm(mem, s, size) kernels, size counted in stream beats.
        mover_args = {"buffer": 0, "beats": 2}
        runtime: dict[str, Any] = {"flow": "vitis", "xrt": {
            "kernel": plan.project, "instance": f"{plan.project}_1",
            "args": {"weights": 2, "scratch": 3, "scratch_b": 4},
            "movers": {"pixels": {"kernel": "mm2s", "instance": "mm2s_1", "stream": "s", "args": mover_args},
                       "labels": {"kernel": "s2mm", "instance": "s2mm_1", "stream": "s", "args": mover_args}}}}
    else:
        # bd.tcl's cell names (PYNQ names overlay IPs after them): the HLS kernel and the AXI DMA
        # whose MM2S channel feeds the pixel stream and whose S2MM channel takes the labels.
        runtime = {"flow": "vivado", "pynq": {"kernel_ip": "kernel", "dma_ip": "dma"}}
    pix, lab, n_pix = plan.engine["pix"], plan.engine["lab"], s.image[0] * s.image[1]
    m = {
        "format": MANIFEST_FORMAT,
        "version": MANIFEST_VERSION,
        "project": plan.project,
        "board": plan.board.name,
        "part": plan.board.part,
        "clock_mhz": plan.clock_mhz,
        "image": list(s.image),
        "patch": s.patch,
        "n_cls": s.n_cls,
        "classes": {"names": list(s.class_names), "colors": [list(c) for c in s.class_colors]},
        "weights": {"file": "weights.bin", "bytes": blob_size, "sha256": blob_sha256},
        "scratch_bytes": plan.scratch_bytes,
        "kernel": plan.project,
        "ports": {
            # word_bytes / channels: one pixel per word, channel channels[i] in its byte i; words_per_beat words a
            # beat, word k in TDATA bits 8 k word_bytes and up (hls/patch_embed.h: Cfg::PIX, Cfg::LAB), so the frame
            # in memory is one word per pixel (label) whatever the beat
            "pixels": {"interface": "axis", "tdata_bits": 32 * pix, "word_bytes": 4, "words_per_beat": pix,
                       "channels": "rgb", "format": "0x00BBGGRR words (R in bits 0-7)", "order": "raster",
                       "beats": n_pix // pix, "tlast": False},
            "labels": {"interface": "axis", "tdata_bits": 8 * lab, "word_bytes": 1, "words_per_beat": lab,
                       "format": "u8 class index", "order": "raster", "beats": n_pix // lab, "tlast": True},
            "weights": {"interface": "m_axi", "bundle": "gmem0", "access": "read", "bytes": blob_size},
            "scratch": {"interface": "m_axi", "bundle": "gmem1", "access": "read-write", "bytes": plan.scratch_bytes},
            # A second AXI master onto the same DDR buffer (residual / ADD-operand and V-beat reads, LayerNorm trace
            # writes), so a loop that moves two spans of the scratch per cycle has a port for each.
            "scratch_b": {"interface": "m_axi", "bundle": "gmem2", "access": "read-write", "bytes": plan.scratch_bytes,
                          "aliases": "scratch"},
            # Vitis HLS's map (UG1399 "S_AXILITE Control Register Map"): 0x00-0x0c control/GIE/IER/ISR, then the
            # s_axilite arguments in argument order (the axis streams have none); a 64-bit pointer (m_axi_addr64 is
            # on in both flows) takes two data words and one reserved word, so 0x10, 0x1c, 0x28 -- as in the
            # generated x<top>_hw.h of any top with three pointers first.
            "control": {
                "interface": "s_axilite", "bundle": "control",
                "registers": {
                    "ap_ctrl": {"offset": 0x00, "bits": {"ap_start": 0, "ap_done": 1, "ap_idle": 2, "ap_ready": 3,
                                                         "auto_restart": 7}},
                    "gie": {"offset": 0x04},
                    "ier": {"offset": 0x08},
                    "isr": {"offset": 0x0C},
                    "weights": {"offset": 0x10, "bytes": 8},
                    "scratch": {"offset": 0x1C, "bytes": 8},
                    "scratch_b": {"offset": 0x28, "bytes": 8},  # the scratch buffer's address again
                },
                "note": "Vitis HLS layout for this top; confirm against build/hls_*/sol1/impl/misc/drivers",
            },
        },
        "runtime": runtime,
        "estimate": {"fps": round(plan.totals["fps"], 3), "cycles": plan.totals["cycles"],
                     # DDR bytes per frame: the blob (gmem0) and the scratch (gmem1 + gmem2), both directions
                     "ddr_bytes": {"weights": plan.totals["weight_bytes_per_frame"],
                                   "scratch": plan.totals["scratch_bytes_per_frame"]}},
        "csim": {"library": "build/libiseg_csim.so", "entry": "iseg_csim_run", "error": "iseg_csim_last_error",
                 "trace": trace_map(plan)},
    }
    return {"manifest.json": json.dumps(m, indent=1) + "\n"}


def render_readme(plan: Plan) -> Files:
    return {"README.md": _render("project/README.md.j2", plan=plan, build=build_info(plan)),
            "config.yaml": plan.config_yaml}


def has_testbench(outputs: tuple[str, ...] | list[str]) -> bool:
    """Whether a project with these outputs gets the HLS sources and the test bench (and so golden vectors)."""
    return "hls" in outputs or "csim" in outputs


def render_project(plan: Plan, ckpt: QuantizedCheckpoint, image: np.ndarray, headers: dict[str, str],
                   golden_vectors: Callable[[], Golden] | None = None) -> Files:
    """Every file of the generated project (relative path -> content).

    ``golden_vectors`` returns :func:`golden` of this plan, checkpoint and image (default: computed
    here); it is called last, so that golden vectors computed elsewhere (``cli.generate``'s worker
    process) overlap the rest of the rendering.
    """
    out: Files = {}
    weights = render_weights(plan, ckpt)
    blob = weights["weights.bin"]
    assert isinstance(blob, bytes)
    sha = hashlib.sha256(blob).hexdigest()
    hls = has_testbench(plan.outputs)
    if hls:
        out.update(render_hls(plan, headers, sha))
        out.update(render_scripts(plan))
    out.update(weights)
    if "report" in plan.outputs:
        out.update(render_report(plan))
    out.update(render_manifest(plan, len(blob), sha))
    out.update(render_readme(plan))
    if hls:
        out.update(render_tb(plan, golden_vectors() if golden_vectors else golden(plan, ckpt, image)))
    return dict(sorted(out.items()))


def render_rtl(plan: Plan, ckpt: QuantizedCheckpoint) -> Files:
    """Verilog units of the operators with this model's constants (first encoder block's).

    The GELU unit takes the checkpoint's variant (``spec.gelu``: lambda-ShiftGELU or I-ViT
    ShiftGELU, whose row buffer holds the widest MLP hidden layer). When the plan's outputs
    include ``report``, ``report.md`` and ``report.json`` are returned again with the yosys
    LUT/FF/DSP/BRAM table of these units (they replace :func:`render_report`'s texts; the plots
    stay). yosys results are cached by a hash of the Verilog text (``generator.rtl.measure_units``,
    ``$ISEG_YOSYS_CACHE``), each unit within ``$ISEG_YOSYS_TIMEOUT`` seconds (default 300); a unit
    that fails or times out is listed as not measured, and without yosys (or with ``ISEG_YOSYS=off``)
    the report says that the units were not measured. Nothing is estimated in their place.
    """
    from iseg import numerics as nx
    from iseg.errors import IsegError
    from iseg.generator.rtl import (
        RESOURCE_COLUMNS,
        UNIT_SOURCES,
        RtlParams,
        measure_units,
        render_rtl_units,
        yosys_disabled_reason,
    )

    def lst(v: Any, n: int) -> tuple[int, ...]:
        return tuple(int(x) for x in np.broadcast_to(np.atleast_1d(v), (n,)))

    def rq3(name: str) -> tuple[tuple[int, ...], ...]:
        vals = ckpt.rq(name)
        n = max(np.atleast_1d(v).size for v in vals)
        return tuple(lst(v, n) for v in vals)

    spec = ckpt.spec
    m, e, o = rq3("enc.0.fc1.rq")
    # iseg_rq takes the GEMM's accumulator, which has no bias adder: the bias is folded into the offset offline,
    # RQ(acc + b) = (acc·m + (o + b·m) + 2^(e-1)) >> e (docs/rtl.md, iseg_rq.v.j2). It was left out: the rendered
    # chain computed RQ(x @ W), not the model's RQ(x @ W + b)
    bias = np.asarray(ckpt.tensors["enc.0.fc1.bias"], dtype=np.int64).tolist()
    o = tuple(oi + bi * mi for oi, bi, mi in zip(o, bias, m, strict=True))  # (per channel: rq3's length)
    lm, le, lo = rq3("enc.0.ln1")
    add = ckpt.consts["enc.0.add1"]
    g = ckpt.consts["enc.0.gelu"]
    gc = nx.GeluConsts(spec.gelu, x0=int(g["x0"]), n=int(g["n"]), k=int(g["k"]), L=int(g["L"]), em=int(g["em"]))
    params = RtlParams(
        gemm_rows=plan.rows, gemm_cols=plan.cols, gemm_pack=plan.pack == 2, gemm_kd=plan.engine["kd"],
        rq_m=m, rq_e=e, rq_o=o, add_ma=int(add["ma"]), add_mb=int(add["mb"]), add_e=int(add["e"]),
        sm_variant=spec.softmax, sm_x0=int(ckpt.consts["enc.0.attn.softmax"]["x0"]), sm_max_n=plan.nmax,
        gelu=gc, gelu_max_n=max(spec.mlp_dim, spec.dec_mlp_dim),
        ln_m=lm, ln_e=le, ln_o=lo, am_grid_w=plan.spec.grid[1], am_patch=plan.spec.patch,
    )
    units = render_rtl_units(params)
    out: Files = {f"rtl/{k}": v for k, v in units.items()}
    if "report" in plan.outputs:
        tops = sorted(UNIT_SOURCES)
        reason = yosys_disabled_reason()
        table: dict[str, Any]
        if reason is None:
            failures: dict[str, str] = {}
            try:
                res = measure_units(units, tops, failures=failures)
            except IsegError as exc:
                reason, res = str(exc), {}
            if res:
                total = {c: sum(r[c] for r in res.values()) for c in RESOURCE_COLUMNS}
                table = {"measured": True, "tool": "yosys synth_xilinx -family xcup -flatten", "units": res,
                         "total": total, "not_measured": failures}
            elif reason is None:
                reason = "; ".join(failures.values())
        if reason is not None:
            table = {"measured": False, "reason": reason}
        out.update(render_report(plan, rtl_resources=table, plots=False))
    return out
