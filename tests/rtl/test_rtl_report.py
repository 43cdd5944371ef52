"""yosys resources of the Verilog units in the gen-hls report: measured, cached, or said to be missing.

yosys takes minutes on a large GEMM array, so these tests measure the smallest unit only
(``iseg_add``, ~10 s) with the cache in a temporary folder; nothing here invents a number.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from iseg.checkpoint import save
from iseg.errors import IsegError
from iseg.generator import rtl
from iseg.generator.cli import generate
from iseg.random_model import PRESETS, random_checkpoint

pytestmark = [pytest.mark.rtl, pytest.mark.usefixtures("yosys_allowed")]

needs_yosys = pytest.mark.skipif(shutil.which("yosys") is None, reason="yosys not installed")


def _no_yosys(*_a, **_k):
    raise AssertionError("yosys ran despite a cache hit")


@pytest.fixture()
def project_cfg(tmp_path: Path) -> Path:
    """A tiny random model with outputs [rtl, report] (no HLS golden vectors: fast)."""
    ckpt = tmp_path / "tiny.safetensors"
    save(random_checkpoint(PRESETS["tiny"], seed=3), ckpt)
    cfg = tmp_path / "config.yaml"
    cfg.write_text(yaml.safe_dump({"checkpoint": str(ckpt), "output": "out", "project": "iseg_rtl_report",
                                   "board": "kv260", "outputs": ["rtl", "report"]}))
    return cfg


def test_report_says_not_measured_without_yosys(project_cfg: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(project_cfg.parent / "no-tools"))
    out = generate(project_cfg)
    md = (out / "report.md").read_text()
    assert "## Verilog units" in md and "Not measured: yosys is not on PATH." in md
    data = json.loads((out / "report.json").read_text())
    assert data["rtl_resources"] == {"measured": False, "reason": "yosys is not on PATH"}
    assert (out / "report_cycles.png").is_file() and (out / "rtl" / "iseg_gemm.v").is_file()


def test_units_that_time_out_are_listed_not_estimated(project_cfg: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def timeout(_texts, top, *_a, **_k):
        raise rtl.YosysTimeout(f"yosys did not finish {top} within 1 s")

    monkeypatch.setattr(rtl, "yosys_disabled_reason", lambda: None)
    monkeypatch.setattr(rtl, "_yosys_version", lambda: "Yosys (stand-in)")
    monkeypatch.setattr(rtl, "yosys_resources", timeout)
    monkeypatch.setattr(rtl, "UNIT_SOURCES", {k: rtl.UNIT_SOURCES[k] for k in ("iseg_add", "iseg_gemm")})
    monkeypatch.setenv("ISEG_YOSYS_CACHE", str(project_cfg.parent / "cache"))
    monkeypatch.setenv("ISEG_YOSYS_TIMEOUT", "1")
    out = generate(project_cfg)
    want = {"measured": False, "reason": "yosys did not finish iseg_add within 1 s; "
                                         "yosys did not finish iseg_gemm within 1 s"}
    assert json.loads((out / "report.json").read_text())["rtl_resources"] == want
    assert "Not measured: yosys did not finish iseg_add" in (out / "report.md").read_text()
    # a timeout is cached: the same limit does not run yosys again, a longer one does
    monkeypatch.setattr(rtl, "yosys_resources", _no_yosys)
    out = generate(project_cfg)
    assert json.loads((out / "report.json").read_text())["rtl_resources"] == want
    monkeypatch.setenv("ISEG_YOSYS_TIMEOUT", "2")
    with pytest.raises(AssertionError, match="yosys ran"):
        generate(project_cfg)


def test_report_without_rtl_has_no_rtl_section(project_cfg: Path) -> None:
    cfg = yaml.safe_load(project_cfg.read_text())
    cfg["outputs"] = ["report"]
    project_cfg.write_text(yaml.safe_dump(cfg))
    out = generate(project_cfg)
    assert "Verilog units" not in (out / "report.md").read_text()
    assert "rtl_resources" not in json.loads((out / "report.json").read_text())


@needs_yosys
def test_report_table_is_measured_and_cached(project_cfg: Path, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    cache = tmp_path / "yosys-cache"
    monkeypatch.setenv("ISEG_YOSYS_CACHE", str(cache))
    monkeypatch.setattr(rtl, "UNIT_SOURCES", {"iseg_add": rtl.UNIT_SOURCES["iseg_add"]})
    out = generate(project_cfg)
    data = json.loads((out / "report.json").read_text())["rtl_resources"]
    assert data["measured"] and set(data["units"]) == {"iseg_add"}
    add = data["units"]["iseg_add"]
    assert add["DSP"] >= 1 and add["LUT"] > 0 and add["FF"] > 0 and data["total"] == add
    assert "| iseg_add |" in (out / "report.md").read_text()
    assert len(list(cache.glob("*.json"))) == 1
    first = (out / "report.md").read_bytes()

    # the second generation reads the cache: yosys must not run again, and the bytes are the same
    monkeypatch.setattr(rtl, "yosys_resources", _no_yosys)
    out = generate(project_cfg)
    assert (out / "report.md").read_bytes() == first


def test_measure_units_keys_the_cache_by_text(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Cache plumbing with a stand-in for yosys (its figures never reach a report)."""
    calls = []

    def counting(texts, top, *_a, **_k):
        calls.append(top)
        return {c: len(calls) for c in rtl.RESOURCE_COLUMNS}

    monkeypatch.setattr(rtl, "yosys_resources", counting)
    monkeypatch.setattr(rtl, "_yosys_version", lambda: "Yosys (stand-in)")
    r1 = rtl.render_rtl_units(rtl.example_params(0))
    r2 = rtl.render_rtl_units(rtl.example_params(1))  # other constants: another text, another key
    assert r1["iseg_add.v"] != r2["iseg_add.v"]
    a = rtl.measure_units(r1, ["iseg_add", "iseg_rq"], cache_dir=tmp_path)
    assert len(calls) == 2 and len(list(tmp_path.glob("*.json"))) == 2
    assert rtl.measure_units(r1, ["iseg_rq", "iseg_add"], cache_dir=tmp_path) == {"iseg_rq": a["iseg_rq"],
                                                                                 "iseg_add": a["iseg_add"]}
    assert len(calls) == 2
    rtl.measure_units(r2, ["iseg_add"], cache_dir=tmp_path)
    assert len(calls) == 3
    for f in tmp_path.glob("*.json"):
        f.write_text("{broken")  # a damaged entry is measured again
    rtl.measure_units(r1, ["iseg_add"], cache_dir=tmp_path)
    assert len(calls) == 4


def test_disabled_by_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ISEG_YOSYS", "off")
    assert rtl.yosys_disabled_reason() == "ISEG_YOSYS is off"


def test_yosys_failure_is_one_error(tmp_path: Path) -> None:
    if shutil.which("yosys") is None:
        pytest.skip("yosys not installed")
    with pytest.raises(IsegError, match="yosys failed on iseg_broken"):
        rtl.yosys_resources("module iseg_broken(input wire a); assign b = ; endmodule", "iseg_broken")


def test_render_rtl_takes_the_gelu_variant_from_the_checkpoint(tmp_path: Path) -> None:
    from dataclasses import replace

    for variant, flag in (("shift", "SHIFT = 1"), ("lambda", "SHIFT = 0")):
        spec = replace(PRESETS["tiny"], gelu=variant, softmax="ivit")
        ckpt = tmp_path / f"{variant}.safetensors"
        save(random_checkpoint(spec, 2), ckpt)
        cfg = tmp_path / f"{variant}.yaml"
        cfg.write_text(yaml.safe_dump({"checkpoint": str(ckpt), "output": f"out_{variant}", "project": "g",
                                       "board": "kv260", "outputs": ["rtl"]}))
        out = generate(cfg)
        gelu = (out / "rtl" / "iseg_gelu.v").read_text()
        assert flag in gelu and f"MAX_N = {spec.mlp_dim}" in gelu
        assert "PRECISE = 0" in (out / "rtl" / "iseg_shiftmax.v").read_text()
