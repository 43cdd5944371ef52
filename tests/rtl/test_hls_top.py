"""Vendor level: a cocotb run on a Vitis-HLS-exported top. Skipped without an export, never faked."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

pytestmark = [pytest.mark.rtl, pytest.mark.vitis]


def test_hls_export_rtl_matches_reference(tmp_path):
    export = os.environ.get("ISEG_HLS_EXPORT_DIR")
    if not export:
        pytest.skip("set ISEG_HLS_EXPORT_DIR to a Vitis HLS RTL export (see sim/tb_hls_top.py)")
    from cocotb_tools.runner import get_results, get_runner

    d = Path(export)
    cfg = json.loads((d / "rtl_test.json").read_text())
    runner = get_runner(os.environ.get("ISEG_HLS_SIM", "icarus"))
    runner.build(sources=sorted(d.glob("*.v")), hdl_toplevel=cfg["top"], build_dir=tmp_path / "build",
                 timescale=("1ns", "1ps"))
    xml = tmp_path / "results.xml"
    try:
        runner.test(test_module="iseg.sim.tb_hls_top", hdl_toplevel=cfg["top"], build_dir=tmp_path / "build",
                    test_dir=tmp_path, results_xml=str(xml), extra_env={"ISEG_HLS_EXPORT_DIR": str(d)})
    except SystemExit:
        pass
    tests, failed = get_results(xml)
    assert tests == 1 and failed == 0
