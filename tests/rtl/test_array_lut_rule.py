"""The planner's LUTs per packed MAC (estimate.array_lut_per_mac) against a synthesis of our own RTL PE.

templates/rtl/iseg_gemm_pe.v.j2 packs two int8 MACs per DSP48E2 and accumulates both products in 32-bit
fabric adders, as the HLS array does (hls/gemm.h: int32_t accumulators, products split out of one DSP).
yosys ``synth_xilinx -family xcup`` on a 4 x 4 array (~15 s) must land within 10 % of the rule; larger
arrays (``python benchmarks/rtl_resources.py --sizes 8x8 16x16``) measured 49.3 and 48.7 LUTs per MAC.
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import pytest

from iseg.generator import estimate as est
from iseg.generator.rtl import example_params, measure_units, render_rtl_units

pytestmark = [pytest.mark.rtl, pytest.mark.usefixtures("yosys_allowed"),
              pytest.mark.skipif(shutil.which("yosys") is None, reason="yosys not installed")]


def test_packed_array_luts_per_mac_match_yosys(tmp_path: Path) -> None:
    p = dataclasses.replace(example_params(0), gemm_rows=4, gemm_cols=4, gemm_pack=True)
    got = measure_units(render_rtl_units(p), ["iseg_gemm"], cache_dir=tmp_path)["iseg_gemm"]
    assert got["DSP"] == 8  # 16 MACs, two per DSP48E2
    rule = est.array_lut_per_mac(2)
    assert rule == 48
    assert abs(got["LUT"] / 16 - rule) <= 0.1 * rule, got


def test_rule_values() -> None:
    """32-bit accumulators: packed = adder (32) + readout (16); a DSP per MAC = readout + clear (16 + 16)."""
    assert (est.array_lut_per_mac(2), est.array_lut_per_mac(1)) == (48, 32)
    with pytest.raises(ValueError, match="pack"):
        est.array_lut_per_mac(3)
