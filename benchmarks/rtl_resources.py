"""yosys `synth_xilinx -family xcup` resource table of every RTL unit, and the DSP saving of
packing two int8 MACs per DSP48E2 in the GEMM array.

    python benchmarks/rtl_resources.py [--sizes 4x4 8x8]
"""

from __future__ import annotations

import argparse
import dataclasses

from iseg.generator.rtl import UNIT_SOURCES, example_params, render_rtl_units, unit_sources, yosys_resources

COLS = ("LUT", "FF", "CARRY", "LUTRAM", "DSP", "BRAM")


def _row(name: str, res: dict) -> str:
    return f"{name:>22} " + " ".join(f"{res[c]:>7}" for c in COLS)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", nargs="*", default=["4x4", "8x8"], help="GEMM array sizes RxC")
    args = ap.parse_args()
    p = example_params(0)
    rendered = render_rtl_units(p)
    print("unit resources (yosys 'synth_xilinx -family xcup -flatten', example constants)")
    print(f"{'unit':>22} " + " ".join(f"{c:>7}" for c in COLS))
    for top in sorted(UNIT_SOURCES):
        if top == "iseg_gemm":
            continue
        print(_row(top, yosys_resources(unit_sources(rendered, top), top)), flush=True)

    print("\nGEMM array: DSP48E2 with and without packing (two int8 MACs sharing `a` per DSP)")
    print(f"{'array':>22} " + " ".join(f"{c:>7}" for c in COLS) + "   DSP ratio  MACs/DSP")
    for size in args.sizes:
        R, C = (int(v) for v in size.lower().split("x"))
        res = {}
        for pack in (False, True):
            q = dataclasses.replace(p, gemm_rows=R, gemm_cols=C, gemm_pack=pack)
            res[pack] = yosys_resources(unit_sources(render_rtl_units(q), "iseg_gemm"), "iseg_gemm")
            tail = ""
            if pack:
                ratio = res[True]["DSP"] / max(res[False]["DSP"], 1)
                tail = f"   {ratio:>9.2f}  {R * C / max(res[True]['DSP'], 1):>8.2f}"
            print(_row(f"{R}x{C} {'packed' if pack else 'unpacked'}", res[pack]) + tail, flush=True)


if __name__ == "__main__":
    main()
