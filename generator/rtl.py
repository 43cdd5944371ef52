"""Verilog operator units rendered from ``templates/rtl`` (pure functions, no disk I/O).

Each unit computes one operator of ``spec/numerics.md`` bit for bit, behind valid/ready
(AXI-Stream style) ports. :class:`RtlParams` is the frozen, printable plan of the units: every
size and integer constant is fixed here, the templates only loop over and look up its values,
and all widths are derived (and bounds checked) in :func:`_context`, so the Verilog holds no
arithmetic the reference does not.

``render_rtl_units(params)`` returns ``{file name: Verilog text}``; ``UNIT_SOURCES`` says which
files each top-level unit needs. ``yosys_resources(text, top)`` synthesises a unit for
UltraScale+ with yosys and returns its LUT/FF/DSP/BRAM counts; ``measure_units`` does that for
several units in parallel behind a cache keyed by a hash of the Verilog text (the report of
``gen-hls`` uses it: yosys takes minutes on a large array, a cache hit milliseconds).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from importlib.resources import files
from pathlib import Path

import jinja2
import numpy as np

from iseg import numerics as nx
from iseg.errors import IsegError

__all__ = [
    "RtlParams",
    "UNIT_SOURCES",
    "example_params",
    "render_rtl_units",
    "unit_sources",
    "yosys_resources",
    "parse_yosys_stat",
    "measure_units",
    "yosys_cache_dir",
    "yosys_disabled_reason",
    "yosys_timeout",
    "YosysTimeout",
    "RESOURCE_COLUMNS",
]

# top-level unit -> the rendered files it needs (dependencies first)
UNIT_SOURCES: dict[str, tuple[str, ...]] = {
    "iseg_gemm": ("iseg_gemm_pe.v", "iseg_gemm.v"),
    "iseg_rq": ("iseg_skid.v", "iseg_rq_pipe.v", "iseg_rq.v"),
    "iseg_add": ("iseg_skid.v", "iseg_add.v"),
    "iseg_shiftmax": ("iseg_skid.v", "iseg_shexp.v", "iseg_div_seq.v", "iseg_shiftmax.v"),
    "iseg_gelu": ("iseg_skid.v", "iseg_shexp.v", "iseg_div_pipe.v", "iseg_gelu.v"),
    "iseg_layernorm": ("iseg_skid.v", "iseg_div_seq.v", "iseg_isqrt_seq.v", "iseg_rq_pipe.v", "iseg_layernorm.v"),
    "iseg_argmax_up": ("iseg_argmax_up.v",),
}

# one module per file (Verilator's DECLFILENAME rule); every file is rendered from `<name>.j2`
_TEMPLATES = tuple(sorted({name for names in UNIT_SOURCES.values() for name in names}))


@dataclass(frozen=True)
class RtlParams:
    """Sizes and integer constants of every RTL unit (one instance of each).

    Constants are exactly the checkpoint's integers: ``(m, e, o)`` per channel as in
    ``numerics.requant``, Shiftmax ``x0`` from ``shiftmax_x0``, GELU from ``gelu_consts``.
    """

    # systolic GEMM
    gemm_rows: int = 4
    gemm_cols: int = 4
    gemm_pack: bool = True
    gemm_kd: int = 1  # k per beat and per PE step (the K unroll: 1, 2 or 4)
    # stream requant (per channel) and residual add (per tensor)
    rq_lanes: int = 1
    rq_bits: int = 8
    rq_m: tuple[int, ...] = (1 << 30,)
    rq_e: tuple[int, ...] = (31,)
    rq_o: tuple[int, ...] = (0,)
    add_ma: int = 1 << 30
    add_mb: int = 1 << 30
    add_e: int = 30
    # Shiftmax
    sm_variant: str = "precise"
    sm_x0: int = -64
    sm_max_n: int = 64
    # GELU: lambda-ShiftGELU or (variant "shift") I-ViT ShiftGELU, whose per-row maximum needs a
    # row buffer of gelu_max_n elements (the MLP hidden width)
    gelu: nx.GeluConsts = field(default_factory=lambda: nx.gelu_consts(0.05))
    gelu_max_n: int = 64
    # I-LayerNorm
    ln_in_bits: int = 16
    ln_m: tuple[int, ...] = (1 << 30,)
    ln_e: tuple[int, ...] = (31,)
    ln_o: tuple[int, ...] = (0,)
    # argmax + nearest upsampler
    am_in_bits: int = 16
    am_grid_w: int = 4
    am_patch: int = 2

    def describe(self) -> str:
        """One line per field: the printable plan."""
        return "\n".join(f"{k} = {v}" for k, v in asdict(self).items())

    def to_dict(self) -> dict:
        """JSON-safe form (the testbenches receive the plan this way)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> RtlParams:
        """Inverse of :meth:`to_dict` (lists back to tuples, GELU constants back to a dataclass)."""
        kw = {k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}
        kw["gelu"] = nx.GeluConsts(**d["gelu"])
        return cls(**kw)


def example_params(seed: int = 0, channels: int = 8, **overrides) -> RtlParams:
    """Random but legal constants (``dyadic`` of random ratios), for tests and benchmarks."""
    rng = np.random.default_rng(seed)

    def dyad(lo: float, hi: float, n: int, neg: bool = False) -> tuple[tuple[int, ...], tuple[int, ...]]:
        ms, es = [], []
        for _ in range(n):
            r = float(rng.uniform(lo, hi)) * (-1 if neg and rng.random() < 0.25 else 1)
            m, e = nx.dyadic(r)
            ms.append(m)
            es.append(e)
        return tuple(ms), tuple(es)

    rq_m, rq_e = dyad(1e-4, 0.05, channels)
    rq_o = tuple(int(v) for v in rng.integers(-(1 << 40), 1 << 40, channels))
    ln_m, ln_e = dyad(1e-8, 2e-7, channels, neg=True)
    ln_o = tuple(int(round(float(rng.uniform(-4, 4)) * (1 << e))) for e in ln_e)
    base = dict(
        rq_m=rq_m, rq_e=rq_e, rq_o=rq_o,
        add_ma=int(rng.integers(1 << 28, 1 << 30)), add_mb=-int(rng.integers(1 << 28, 1 << 30)), add_e=30,
        sm_x0=nx.shiftmax_x0(0.08, "precise"),
        gelu=nx.gelu_consts(0.04),
        ln_m=ln_m, ln_e=ln_e, ln_o=ln_o,
    )
    base.update(overrides)
    return RtlParams(**base)


def _slit(v: int, w: int) -> str:
    """A signed Verilog literal of width ``w`` in two's complement hex (exact for -2^(w-1))."""
    lo, hi = -(1 << (w - 1)), (1 << (w - 1)) - 1
    if not lo <= v <= hi:
        raise IsegError(f"constant {v} does not fit in {w} signed bits")
    return f"{w}'sh{v & ((1 << w) - 1):x}"


def _rom(m: tuple[int, ...], e: tuple[int, ...], o: tuple[int, ...], what: str) -> list[dict[str, str]]:
    if not (len(m) == len(e) == len(o)) or not m:
        raise IsegError(f"{what}: m, e, o must be non-empty and of equal length, got {len(m)}, {len(e)}, {len(o)}")
    rows = []
    for i, (mi, ei, oi) in enumerate(zip(m, e, o, strict=True)):
        if not (mi == 0 or (1 << 30) <= abs(mi) < (1 << 31)):
            raise IsegError(f"{what}: m[{i}] = {mi} is not 0 or 2^30 <= |m| < 2^31")
        if not 1 <= ei <= 62:
            raise IsegError(f"{what}: e[{i}] = {ei} is outside [1, 62]")
        if abs(oi) >= 1 << 61:
            raise IsegError(f"{what}: |o[{i}]| = {abs(oi)} is not below 2^61")
        rows.append({"idx": str(i), "m": _slit(mi, 32), "e": f"6'd{ei}", "o": _slit(oi, 64)})
    return rows


def _context(p: RtlParams) -> dict:
    """Resolve every width and check every bound: the only arithmetic before the text."""
    if p.gemm_rows < 1 or p.gemm_cols < 1:
        raise IsegError(f"GEMM array {p.gemm_rows}x{p.gemm_cols}: rows and columns must be >= 1")
    if p.gemm_kd not in (1, 2, 4):
        raise IsegError(f"GEMM K unroll {p.gemm_kd}: must be 1, 2 or 4 (a packed chain's low field holds 4 products)")
    if p.rq_bits not in (8, 16):
        raise IsegError(f"rq_bits must be 8 or 16, got {p.rq_bits}")
    if p.rq_lanes < 1 or len(p.rq_m) % p.rq_lanes:
        raise IsegError(f"rq_lanes = {p.rq_lanes} must divide the {len(p.rq_m)} requant channels")
    if not 1 <= p.add_e <= 62 or max(abs(p.add_ma), abs(p.add_mb)) >= 1 << 31:
        raise IsegError("residual add: e in [1, 62] and |ma|, |mb| < 2^31")
    if p.sm_variant not in nx.SHIFTMAX_VARIANTS:
        raise IsegError(f"unknown Shiftmax variant {p.sm_variant!r}")
    v = nx.SHIFTMAX_VARIANTS[p.sm_variant]
    # The unit implements two constant sets (PRECISE = 1 / 0) and any probability width P_BITS:
    # "precise" and "precise8" differ only in p_bits (the per-row shift r = max(0, bit_length(pm) - p_bits)
    # is 0 for p_bits = 15), so both are PRECISE = 1.
    def consts_of(var: nx.ShiftmaxVariant) -> tuple:
        return (var.k, var.K, var.rnd, var.clamp_sum)

    consts = consts_of(v)
    if consts not in (consts_of(nx.SHIFTMAX_VARIANTS["precise"]), consts_of(nx.SHIFTMAX_VARIANTS["ivit"])):
        raise IsegError(f"Shiftmax variant {p.sm_variant!r}: (k, K, rnd, clamp) = {consts} has no RTL form")
    if not 1 <= v.p_bits <= nx.P_GRID_BITS:
        raise IsegError(f"Shiftmax variant {p.sm_variant!r}: p_bits = {v.p_bits} is not in 1..{nx.P_GRID_BITS} "
                        f"(the u15 grid; r = 15 - p_bits at most, in the 4-bit TUSER)")
    precise = not v.clamp_sum
    if p.sm_x0 >= 0:
        raise IsegError(f"Shiftmax x0 must be negative, got {p.sm_x0}")
    sm_e_w = (abs(p.sm_x0) << (nx.SHIFTMAX_N + 1)).bit_length()
    bound = nx.shiftmax_sum_bound(p.sm_max_n, p.sm_x0)
    if precise and bound >= 1 << 47:
        raise IsegError(f"Shiftmax: rows of {p.sm_max_n} with x0 = {p.sm_x0} can reach S >= 2^47 (f would be 0)")
    sm_s_w = max(32, bound.bit_length())
    if sm_s_w > 48 or sm_e_w > 40:
        raise IsegError(f"Shiftmax: row sum needs {sm_s_w} bits (> 48); shorten sm_max_n or coarsen x0")
    g = p.gelu
    if g.variant not in nx.GELU_VARIANTS:
        raise IsegError(f"unknown GELU variant {g.variant!r}")
    shift = g.variant == "shift"
    gelu_e_w = (abs(g.x0) << (g.n + 1)).bit_length()
    # exp argument: x - M in [-255, 0] for ShiftGELU, xc - M in [-2M, 0] for lambda
    gelu_d_w = 10 if shift else (2 * g.M).bit_length() + 1
    if gelu_e_w > 31 or gelu_d_w > 30 or g.x0 >= 0 or (not shift and (g.L < 1 or g.em < 1)):
        raise IsegError(f"GELU constants out of range for the RTL unit (e needs {gelu_e_w} bits, max 31)")
    if p.gelu_max_n < 1:
        raise IsegError(f"gelu_max_n must be >= 1, got {p.gelu_max_n}")
    if not 2 <= p.ln_in_bits <= 24:
        raise IsegError(f"LayerNorm input width must be 2..24 bits, got {p.ln_in_bits}")
    c_w = len(p.ln_m).bit_length()
    if 2 * p.ln_in_bits + c_w + 2 > 63:  # iseg_layernorm.v.j2's V_W (the variance's width) within int64
        raise IsegError(f"LayerNorm of {len(p.ln_m)} channels at {p.ln_in_bits} input bits: the variance needs "
                        f"2 x {p.ln_in_bits} + {c_w} + 2 > 63 bits (fewer channels or input bits)")
    if not 2 <= p.am_in_bits <= 32 or p.am_grid_w < 1 or p.am_patch < 1:
        raise IsegError("argmax: input width 2..32, grid width and patch >= 1")
    return {
        "gemm": {"rows": p.gemm_rows, "cols": p.gemm_cols, "pack": int(p.gemm_pack), "kd": p.gemm_kd},
        "rq": {"lanes": p.rq_lanes, "bits": p.rq_bits, "channels": len(p.rq_m),
               "rom": _rom(p.rq_m, p.rq_e, p.rq_o, "requant")},
        "add": {"ma": _slit(p.add_ma, 64), "mb": _slit(p.add_mb, 64), "e": p.add_e},
        "sm": {"precise": int(precise), "p_bits": v.p_bits, "x0": p.sm_x0, "max_n": p.sm_max_n, "e_w": sm_e_w,
               "s_w": sm_s_w},
        "gelu": {"shift": int(shift), "L": g.L, "k": g.k, "x0": g.x0, "n": g.n, "em": g.em, "d_w": gelu_d_w,
                 "e_w": gelu_e_w, "max_n": p.gelu_max_n},
        "ln": {"in_bits": p.ln_in_bits, "out_bits": 8, "channels": len(p.ln_m),
               "c_w": len(p.ln_m).bit_length(), "rom": _rom(p.ln_m, p.ln_e, p.ln_o, "layernorm")},
        "am": {"in_bits": p.am_in_bits, "grid_w": p.am_grid_w, "patch": p.am_patch},
    }


def _env() -> jinja2.Environment:
    # Verilog's replication `{{n{x}}}` collides with Jinja's `{{`, so RTL templates use `{= =}`.
    loader = jinja2.FileSystemLoader(str(files("iseg.templates") / "rtl"))
    return jinja2.Environment(
        loader=loader, undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True,
        keep_trailing_newline=True, variable_start_string="{=", variable_end_string="=}",
    )


def render_rtl_units(params: RtlParams) -> dict[str, str]:
    """Render every unit: ``{file name: Verilog-2005 text}``; deterministic, writes nothing."""
    ctx = _context(params)
    env = _env()
    return {name: env.get_template(name + ".j2").render(**ctx) for name in _TEMPLATES}


def unit_sources(rendered: dict[str, str], top: str) -> dict[str, str]:
    """The subset of rendered files that unit ``top`` needs."""
    if top not in UNIT_SOURCES:
        raise IsegError(f"unknown RTL unit {top!r}; known: {', '.join(UNIT_SOURCES)}")
    return {name: rendered[name] for name in UNIT_SOURCES[top]}


# --------------------------------------------------------------------------------------------
# yosys resource estimate
# --------------------------------------------------------------------------------------------
def parse_yosys_stat(stat: dict, top: str) -> dict[str, int]:
    """LUT/FF/DSP/BRAM/carry counts of ``top`` from yosys ``stat -json`` output (hierarchy flattened)."""
    mods = stat.get("modules", {})
    key = top if top in mods else f"\\{top}"
    if key not in mods:
        raise IsegError(f"yosys stat has no module {top!r} (have {', '.join(mods)})")
    cells: dict[str, int] = mods[key].get("num_cells_by_type", {})
    out = {"LUT": 0, "FF": 0, "DSP": 0, "BRAM": 0, "CARRY": 0, "LUTRAM": 0}
    for cell, n in cells.items():
        if cell.startswith("LUT"):
            out["LUT"] += n
        elif cell.startswith("FD"):
            out["FF"] += n
        elif cell.startswith("DSP48"):
            out["DSP"] += n
        elif cell.startswith("RAMB36"):
            out["BRAM"] += n
        elif cell.startswith("RAMB18"):
            out["BRAM"] += math.ceil(n / 2)
        elif cell.startswith("CARRY"):
            out["CARRY"] += n
        elif cell.startswith(("RAM32", "RAM64", "RAM128", "RAM256", "SRL")):
            out["LUTRAM"] += n
    return out


def yosys_resources(verilog: str | dict[str, str], top: str, family: str = "xcup",
                    timeout: float = 900.0) -> dict[str, int]:
    """Synthesise ``top`` with ``yosys synth_xilinx -family <family> -flatten`` and count cells.

    ``verilog`` is one text or ``{file name: text}`` (as from :func:`unit_sources`). Runs in a
    temporary directory; needs ``yosys`` on PATH.
    """
    exe = shutil.which("yosys")
    if exe is None:
        raise IsegError("yosys is not installed (apt-get install yosys)")
    texts = {"unit.v": verilog} if isinstance(verilog, str) else dict(verilog)
    with tempfile.TemporaryDirectory(prefix="iseg_yosys_") as tmp:
        d = Path(tmp)
        for name, text in texts.items():
            (d / name).write_text(text)
        reads = " ".join(f"read_verilog {d / name};" for name in texts)
        script = (f"{reads} synth_xilinx -family {family} -flatten -top {top}; "
                  f"tee -q -o {d / 'stat.json'} stat -json")
        try:
            proc = subprocess.run([exe, "-q", "-p", script], capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise YosysTimeout(f"yosys did not finish {top} within {timeout:g} s") from None
        if proc.returncode != 0:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
            raise IsegError(f"yosys failed on {top}: {' | '.join(tail)}")
        stat = json.loads((d / "stat.json").read_text())
    return parse_yosys_stat(stat, top)


# --------------------------------------------------------------------------------------------
# cached, parallel measurement (the gen-hls report)
# --------------------------------------------------------------------------------------------
RESOURCE_COLUMNS = ("LUT", "FF", "CARRY", "LUTRAM", "DSP", "BRAM")


class YosysTimeout(IsegError):
    """yosys did not finish a unit within the time limit."""


def yosys_cache_dir() -> Path:
    """``$ISEG_YOSYS_CACHE``, else ``~/.cache/iseg/yosys``."""
    env = os.environ.get("ISEG_YOSYS_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "iseg" / "yosys"


def yosys_disabled_reason() -> str | None:
    """Why the resources cannot be measured here (``None`` when yosys can run)."""
    if os.environ.get("ISEG_YOSYS", "").strip().lower() in ("0", "off", "no", "false"):
        return "ISEG_YOSYS is off"
    if shutil.which("yosys") is None:
        return "yosys is not on PATH"
    return None


def _yosys_version() -> str:
    exe = shutil.which("yosys")
    if exe is None:
        raise IsegError("yosys is not installed (apt-get install yosys)")
    proc = subprocess.run([exe, "-V"], capture_output=True, text=True, timeout=60)
    return proc.stdout.strip()


def _cache_key(texts: dict[str, str], top: str, family: str, version: str) -> str:
    h = hashlib.sha256()
    for part in (version, family, top, *[f"{name}\0{texts[name]}" for name in sorted(texts)]):
        h.update(part.encode())
        h.update(b"\0")
    return h.hexdigest()


def yosys_timeout() -> float:
    """Seconds one unit may take: ``$ISEG_YOSYS_TIMEOUT``, else 300."""
    env = os.environ.get("ISEG_YOSYS_TIMEOUT", "").strip()
    try:
        return float(env) if env else 300.0
    except ValueError:
        raise IsegError(f"ISEG_YOSYS_TIMEOUT must be a number of seconds, got {env!r}") from None


def measure_units(rendered: dict[str, str], tops: Sequence[str], family: str = "xcup",
                  cache_dir: Path | None = None, jobs: int | None = None, timeout: float | None = None,
                  failures: dict[str, str] | None = None) -> dict[str, dict[str, int]]:
    """yosys LUT/FF/DSP/BRAM counts of each unit in ``tops`` (``{top: counts}``, in ``tops`` order).

    Results are cached as ``<sha256>.json`` in ``cache_dir`` (default :func:`yosys_cache_dir`),
    keyed by the unit's Verilog text, the top, the family and the yosys version, so a repeated
    generation of the same model costs nothing. Missing units run in parallel (``jobs``, default
    the CPU count), each within ``timeout`` seconds (default :func:`yosys_timeout`). A unit that
    times out is cached as such (measured again only with a longer limit) and raises
    :class:`YosysTimeout`, or, when a ``failures`` dict is given, is left out of the result with
    its one-line reason recorded there. Any other yosys failure raises ``IsegError``.
    """
    cache = Path(cache_dir) if cache_dir is not None else yosys_cache_dir()
    limit = yosys_timeout() if timeout is None else timeout
    version = _yosys_version()
    keys = {top: _cache_key(unit_sources(rendered, top), top, family, version) for top in tops}
    out: dict[str, dict[str, int]] = {}
    failed: dict[str, str] = {}
    for top, key in keys.items():
        path = cache / f"{key}.json"
        if path.is_file():
            try:
                entry = json.loads(path.read_text())
                if "resources" in entry:
                    out[top] = {k: int(v) for k, v in entry["resources"].items()}
                elif float(entry["timeout"]) >= limit:  # it timed out before with at least this limit
                    failed[top] = str(entry["failed"])
            except (ValueError, KeyError, TypeError, AttributeError):
                pass  # a damaged entry is measured again and overwritten

    def run(top: str) -> dict[str, int] | str:
        try:
            return yosys_resources(unit_sources(rendered, top), top, family, limit)
        except YosysTimeout as exc:
            return str(exc)

    todo = [top for top in tops if top not in out and top not in failed]
    if todo:
        with ThreadPoolExecutor(max_workers=jobs or os.cpu_count() or 1) as pool:
            results = list(pool.map(run, todo))
        cache.mkdir(parents=True, exist_ok=True)
        for top, res in zip(todo, results, strict=True):
            if isinstance(res, str):
                failed[top] = res
                entry = {"top": top, "family": family, "yosys": version, "failed": res, "timeout": limit}
            else:
                out[top] = res
                entry = {"top": top, "family": family, "yosys": version, "resources": res}
            fd, tmp = tempfile.mkstemp(dir=cache, prefix=".tmp-", suffix=".json")
            with os.fdopen(fd, "w") as f:
                json.dump(entry, f, indent=1, sort_keys=True)
            os.replace(tmp, cache / f"{keys[top]}.json")
    if failed:
        if failures is None:
            raise YosysTimeout("; ".join(failed[t] for t in tops if t in failed))
        failures.update({t: failed[t] for t in tops if t in failed})
    return {top: out[top] for top in tops if top in out}
