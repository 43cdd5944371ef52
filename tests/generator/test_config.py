"""gen-hls config and checkpoint errors: one line, non-zero exit, no output folder left behind."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from iseg.generator.cli import main

from .conftest import write_config


def _fails(capsys: pytest.CaptureFixture[str], cfg: Path, *needles: str) -> str:
    rc = main([str(cfg)])
    err = capsys.readouterr().err
    assert rc == 1
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    for n in needles:
        assert n in lines[0], lines[0]
    assert "Traceback" not in err
    assert not (cfg.parent / "out").exists()
    assert not [p for p in cfg.parent.iterdir() if p.name.startswith(".out.")], "temp folder left behind"
    return lines[0]


@pytest.mark.parametrize("extra, needles", [
    ({"colour": "red"}, ("config.yaml: colour: unknown key",)),
    ({"board": "zcu999"}, ("config.yaml: board:", "kv260")),
    ({"array": {"rows": 0, "cols": 8}}, ("config.yaml: array.rows: must be a positive integer",)),
    ({"array": {"rows": 4, "cols": 8, "depth": 2}}, ("array.depth: unknown key",)),
    ({"array": "big"}, ("config.yaml: array:", "auto")),
    ({"array": {"rows": 100, "cols": 8}}, ("array.rows: 100 exceeds",)),
    ({"array": {"rows": 4, "cols": 8, "macs_per_dsp": 3}}, ("config.yaml: array.macs_per_dsp: must be 1 or 2",)),
    ({"array": {"rows": 5, "cols": 8, "macs_per_dsp": 2}}, ("array.macs_per_dsp: 2 MACs per DSP", "even", "5 rows")),
    ({"board": "pynq-z2", "array": {"rows": 4, "cols": 8, "macs_per_dsp": 2}}, ("array.macs_per_dsp:", "DSP48E2")),
    ({"array": {"rows": 4, "cols": 8, "k_unroll": 3}}, ("config.yaml: array.k_unroll: must be 1, 2 or 4",)),
    ({"project": "9lives"}, ("config.yaml: project:", "C identifier")),
    ({"clock_mhz": -5}, ("config.yaml: clock_mhz:",)),
    ({"outputs": ["hls", "gds"]}, ("config.yaml: outputs[1]:",)),
    ({"image": [32, 32]}, ("config.yaml: image: 32x32 differs",)),
    ({"budget": 0.9}, ("config.yaml: budget: must be a mapping of dsp, lut, memory",)),
    ({"budget": {"dsp": 0}}, ("config.yaml: budget.dsp: must be a share of the device's DSPs in (0, 1]", "got 0")),
    ({"budget": {"lut": 1.5}}, ("config.yaml: budget.lut: must be a share", "got 1.5")),
    ({"budget": {"memory": "most"}}, ("config.yaml: budget.memory: must be a share", "'most'")),
    ({"budget": {"dsp": float("nan")}}, ("config.yaml: budget.dsp: must be a share", "nan")),
    ({"budget": {"gpus": 0.5}}, ("config.yaml: budget.gpus: unknown key (allowed: dsp, lut, memory)",)),
    ({"budget": {"dsp": 0.9}, "array": {"rows": 4, "cols": 8}}, ("config.yaml: budget: only array: auto uses it",
                                                                 "4x8")),
    ({"budget": {"dsp": 0.02}}, ("config.yaml: array: auto: no GEMM array fits kv260 within the budget (DSP 2 %",
                                 "limit 24 of 1248")),
])
def test_bad_config(tmp_path: Path, tiny_ckpt: Path, capsys, extra, needles) -> None:
    _fails(capsys, write_config(tmp_path, tiny_ckpt, **extra), *needles)


def test_budget_reaches_the_plan(tmp_path: Path, tiny_ckpt: Path) -> None:
    """budget: the auto array keeps to the given share (the rest default), the report and the resolved config say
    which budget it had, and a smaller one costs cycles: on KV260 the tiny model takes 733 DSPs at the default 80 %,
    a 4 x 8 array of 59 within 5 % (62 DSPs)."""
    import json

    import yaml

    def run(**kw) -> dict:
        assert main([str(write_config(tmp_path, tiny_ckpt, outputs=["report"], **kw))]) == 0
        return json.loads((tmp_path / "out" / "report.json").read_text())

    default = run()
    assert default["budget"] == {"dsp": 0.8, "lut": 0.7, "memory": 0.8}
    small = run(budget={"dsp": 0.05})
    assert small["budget"] == {"dsp": 0.05, "lut": 0.7, "memory": 0.8}
    assert small["totals"]["dsp"] <= int(0.05 * 1248) < default["totals"]["dsp"]
    assert small["totals"]["cycles"] > default["totals"]["cycles"]
    md = (tmp_path / "out" / "report.md").read_text()
    assert "array: auto within DSP 5 %, LUT 70 %, BRAM/URAM 80 % of the device" in md
    # the array-bound ceiling: the frame with only the array's steps (busy_cycles <= cycles)
    t = small["totals"]
    assert 0 < t["busy_cycles"] <= t["cycles"]
    assert f"| array-bound ceiling | {t['fps'] * t['cycles'] / t['busy_cycles']:.2f} FPS: the array steps " in md
    resolved = yaml.safe_load((tmp_path / "out" / "config.yaml").read_text())
    assert resolved["budget"] == {"dsp": 0.05, "lut": 0.7, "memory": 0.8}
    explicit = run(array={"rows": small["array"]["rows"], "cols": small["array"]["cols"]})
    assert explicit["budget"] is None  # an explicit array: the whole device
    assert "budget" not in yaml.safe_load((tmp_path / "out" / "config.yaml").read_text())


def test_missing_key(tmp_path: Path, tiny_ckpt: Path, capsys) -> None:
    _fails(capsys, write_config(tmp_path, tiny_ckpt, board=None), "config.yaml: board: missing")


def test_missing_checkpoint(tmp_path: Path, capsys) -> None:
    _fails(capsys, write_config(tmp_path, tmp_path / "nope.safetensors"), "checkpoint: no such file")


def test_truncated_checkpoint(tmp_path: Path, tiny_ckpt: Path, capsys) -> None:
    bad = tmp_path / "cut.safetensors"
    bad.write_bytes(tiny_ckpt.read_bytes()[:5000])
    _fails(capsys, write_config(tmp_path, bad), "truncated")


def test_not_yaml(tmp_path: Path, capsys) -> None:
    cfg = tmp_path / "config.yaml"
    cfg.write_text("board: [kv260\n")
    _fails(capsys, cfg, "not valid YAML")


def test_failed_regeneration_keeps_old_project(tmp_path: Path, tiny_ckpt: Path, capsys) -> None:
    cfg = write_config(tmp_path, tiny_ckpt, outputs=["report"])
    assert main([str(cfg)]) == 0
    before = sorted(p.name for p in (tmp_path / "out").iterdir())
    write_config(tmp_path, tiny_ckpt, outputs=["report"], array={"rows": 0, "cols": 1})
    assert main([str(cfg)]) == 1
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == before


def test_macs_per_dsp_is_kept(tmp_path: Path, tiny_ckpt: Path) -> None:
    """An even-row array without DSP packing (array.macs_per_dsp 1) reaches Cfg::PACK and the resolved config,
    which regenerates the same engine."""
    import json

    import yaml

    cfg = write_config(tmp_path, tiny_ckpt, outputs=["report", "hls"],
                       array={"rows": 4, "cols": 8, "macs_per_dsp": 1})
    assert main([str(cfg)]) == 0
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["array"]["macs_per_dsp"] == 1
    assert "static constexpr int PACK = 1;" in (tmp_path / "out" / "src" / "model_cfg.h").read_text()
    resolved = yaml.safe_load((tmp_path / "out" / "config.yaml").read_text())
    assert resolved["array"] == {"rows": 4, "cols": 8, "macs_per_dsp": 1}
    first = (tmp_path / "out" / "src" / "model_cfg.h").read_bytes()
    again = tmp_path / "again"  # the resolved config, generated again: the same engine
    again.mkdir()
    assert main([str(write_config(again, tiny_ckpt, outputs=["report", "hls"], array=resolved["array"]))]) == 0
    assert (again / "out" / "src" / "model_cfg.h").read_bytes() == first
    cfg2 = write_config(tmp_path, tiny_ckpt, outputs=["report", "hls"], array={"rows": 4, "cols": 8})
    assert main([str(cfg2)]) == 0  # the default for an even R on kv260: two MACs per DSP
    assert json.loads((tmp_path / "out" / "report.json").read_text())["array"]["macs_per_dsp"] == 2
    assert "static constexpr int PACK = 2;" in (tmp_path / "out" / "src" / "model_cfg.h").read_text()


def test_k_unroll_is_kept(tmp_path: Path, tiny_ckpt: Path) -> None:
    """array.k_unroll reaches Cfg::KD, the report and the resolved config (which regenerates the same engine); a K
    unroll the model's K or d_head does not allow is one line naming the key."""
    import json

    import yaml

    cfg = write_config(tmp_path, tiny_ckpt, outputs=["report", "hls"], array={"rows": 4, "cols": 8, "k_unroll": 4})
    assert main([str(cfg)]) == 0
    out = tmp_path / "out"
    assert json.loads((out / "report.json").read_text())["array"]["k_unroll"] == 4
    assert "static constexpr int KD = 4;" in (out / "src" / "model_cfg.h").read_text()
    resolved = yaml.safe_load((out / "config.yaml").read_text())
    assert resolved["array"] == {"rows": 4, "cols": 8, "macs_per_dsp": 2, "k_unroll": 4}
    first = (out / "src" / "model_cfg.h").read_bytes()
    again = tmp_path / "again"
    again.mkdir()
    assert main([str(write_config(again, tiny_ckpt, outputs=["report", "hls"], array=resolved["array"]))]) == 0
    assert (again / "out" / "src" / "model_cfg.h").read_bytes() == first


def test_k_unroll_the_model_refuses(tmp_path: Path, capsys) -> None:
    """An MLP of 26 channels: KD 4 does not divide the second MLP layer's K, so its tiles' rows would not be whole
    words of w; the config names the key and the K unrolls the model allows."""
    from dataclasses import replace

    from iseg.random_model import PRESETS

    from .conftest import make_ckpt

    ckpt = make_ckpt(tmp_path, replace(PRESETS["tiny"], dim=16, heads=2, mlp_dim=26, dec_dim=16, dec_heads=2,
                                       dec_mlp_dim=32, layers=1, dec_layers=1), seed=1)
    line = _fails(capsys, write_config(tmp_path, ckpt, array={"rows": 4, "cols": 8, "k_unroll": 4}),
                  "array.k_unroll:", "multiple of it")
    assert "allows 1, 2" in line


@pytest.mark.csim
@pytest.mark.skipif(shutil.which("g++") is None, reason="g++ not installed")
def test_budget_array_csim(tmp_path: Path, tiny_ckpt: Path) -> None:
    """The array a small budget gives (the tiny model on KV260 within 5 % of the DSPs: 4 x 8 x 2, where the default
    budget gives 18 x 16 x 4) is a working engine: C-simulated bit-exact on every layer and the labels, its cycles
    and DDR bytes counted = the estimate, every loop within its banks and m_axi beats."""
    import json

    from iseg.generator.cli import check_csim

    cfg = write_config(tmp_path, tiny_ckpt, outputs=["report", "hls"], budget={"dsp": 0.05})
    assert main([str(cfg)]) == 0
    out = tmp_path / "out"
    report = json.loads((out / "report.json").read_text())
    assert (report["array"]["rows"], report["array"]["cols"], report["array"]["k_unroll"]) == (4, 8, 2)
    assert report["totals"]["dsp"] <= int(0.05 * 1248)
    summary = check_csim(out, tiny_ckpt, "1")
    assert summary.startswith("csim PASS: 1 image(s)"), summary
    assert "cycles counted = estimate" in summary and "DDR bytes counted = estimate" in summary, summary
    assert summary.endswith("every pipelined loop within its banks and its m_axi beats"), summary
