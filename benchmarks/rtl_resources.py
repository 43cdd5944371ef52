"""yosys `synth_xilinx -family xcup` resource table of every RTL unit, and the DSP saving of
packing two int8 MACs per DSP48E2 in the GEMM array.

Results go through the same cache as the gen-hls report (``$ISEG_YOSYS_CACHE`` or
``~/.cache/iseg/yosys``, keyed by the Verilog text), so a second run is instant.

    python benchmarks/rtl_resources.py [--sizes 4x4 8x8 4x5]
"""

from __future__ import annotations

import argparse
import dataclasses

from iseg import numerics as nx
from iseg.generator.rtl import RESOURCE_COLUMNS, UNIT_SOURCES, example_params, measure_units, render_rtl_units

COLS = RESOURCE_COLUMNS


def _row(name: str, res: dict) -> str:
    return f"{name:>24} " + " ".join(f"{res[c]:>7}" for c in COLS)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", nargs="*", default=["4x4", "8x8"], help="GEMM array sizes RxC (C may be odd)")
    args = ap.parse_args()
    p = example_params(0)
    print("unit resources (yosys 'synth_xilinx -family xcup -flatten', example constants)")
    print(f"{'unit':>24} " + " ".join(f"{c:>7}" for c in COLS))
    tops = [t for t in sorted(UNIT_SOURCES) if t != "iseg_gemm"]
    res = measure_units(render_rtl_units(p), tops)
    for top in tops:
        print(_row(top, res[top]), flush=True)
    variants = [
        ("iseg_gelu shift, 768", dict(gelu=nx.gelu_consts(0.05, variant="shift"), gelu_max_n=768), "iseg_gelu"),
        ("iseg_shiftmax 1025", dict(sm_max_n=1025), "iseg_shiftmax"),
        ("iseg_layernorm C=192", dict(channels=192), "iseg_layernorm"),
    ]
    for name, ov, top in variants:
        q = example_params(0, **ov)
        print(_row(name, measure_units(render_rtl_units(q), [top])[top]), flush=True)

    print("\nGEMM array: DSP48E2 with and without packing (two int8 MACs sharing `a` per DSP)")
    print(f"{'array':>24} " + " ".join(f"{c:>7}" for c in COLS) + "   DSP ratio  MACs/DSP")
    for size in args.sizes:
        R, C = (int(v) for v in size.lower().split("x"))
        got = {}
        for pack in (False, True):
            q = dataclasses.replace(p, gemm_rows=R, gemm_cols=C, gemm_pack=pack)
            got[pack] = measure_units(render_rtl_units(q), ["iseg_gemm"])["iseg_gemm"]
            tail = ""
            if pack:
                ratio = got[True]["DSP"] / max(got[False]["DSP"], 1)
                tail = f"   {ratio:>9.2f}  {R * C / max(got[True]['DSP'], 1):>8.2f}"
            print(_row(f"{R}x{C} {'packed' if pack else 'unpacked'}", got[pack]) + tail, flush=True)


if __name__ == "__main__":
    main()
