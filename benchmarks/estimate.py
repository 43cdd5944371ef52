"""The analytic estimate of Seg-T-Mask 512x512 (150 classes) on every board (KV260 at 250 MHz first).

    python benchmarks/estimate.py [--model seg-t-512|seg-s-512] [--softmax precise|ivit|precise8]
                                  [--budget dsp=0.9,lut=0.75,memory=0.9] [--board kv260 ...]

Prints, per board: the auto-chosen array, DSPs, LUTs, FPS, % of the array's packed-DSP MAC peak, % of the whole
board's packed peak, the array-bound ceiling (the FPS with every cycle the array does not step hidden under it:
what no schedule change on this array and tiling can pass), the largest cycle sinks beyond the ideal array time
and the weight traffic, and the DSP / LUT split per unit. The cycle estimate needs only shapes, but the lane
multipliers' widths (hls/mul.h) come from the checkpoint's constants: a calibrated random checkpoint
(iseg.random_model, seed 0) stands in for a trained one; its widths are printed first. ``--softmax`` picks its
Shiftmax variant: with precise8 (u8 probabilities) a packed array runs P.V at the packed rate (Cfg::PV_II 1)
instead of half of it; an array with a DSP per MAC (1 MAC/DSP) runs it at II 1 with any variant.
``--budget`` gives the planner another share of each board's DSPs, LUTs and BRAM/URAM than the default
0.8 / 0.7 / 0.8 (config key ``budget``).
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace
from pathlib import Path

from iseg import numerics as nx
from iseg.errors import IsegError
from iseg.generator.boards import BOARDS
from iseg.generator.config import Config, parse_budget_option
from iseg.generator.plan import make_plan
from iseg.random_model import PRESETS, random_checkpoint, with_classes


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="seg-t-512", choices=["seg-t-512", "seg-s-512"])
    ap.add_argument("--softmax", default="precise", choices=list(nx.SHIFTMAX_VARIANTS),
                    help="Shiftmax variant of the random model (precise8: u8 probabilities, P.V at II 1)")
    ap.add_argument("--budget", default="", help="dsp=..,lut=..,memory=..: shares in (0, 1] (config key budget)")
    ap.add_argument("--board", nargs="*", choices=list(BOARDS), help="only these boards")
    args = ap.parse_args()
    try:
        budget = parse_budget_option(args.budget)
    except IsegError as exc:
        ap.error(str(exc))
    ckpt = random_checkpoint(replace(with_classes(PRESETS[args.model]), softmax=args.softmax), seed=0)
    first = True
    for name, board in BOARDS.items():
        if args.board and name not in args.board:
            continue
        clock = 250.0 if name == "kv260" else float(board.clock_mhz)
        cfg = Config(source=Path("estimate.yaml"), checkpoint=Path("none"), output=Path("none"), project="bench",
                     board=board, clock_mhz=clock, array=None, image=None, outputs=("report",), budget=budget)
        t0 = time.perf_counter()
        p = make_plan(cfg, ckpt, checkpoint_sha256="0" * 64)
        dt = time.perf_counter() - t0
        if first:
            print(f"{args.model}, softmax {args.softmax}, budget {budget.describe()}")
            print("lane widths (signed bits): " + ", ".join(f"{k} {v}" for k, v in p.widths))
            first = False
        t = p.totals
        top = sorted(t["stalls"].items(), key=lambda kv: -kv[1])[:5]
        kd = f"x{p.engine['kd']}" if p.engine["kd"] > 1 else "  "
        print(f"{name:<8} {clock:5.0f} MHz array {p.rows:>2}x{p.cols:<2}{kd} {p.pack} MAC/DSP, "
              f"P.V II {p.engine['pv_ii']}  "
              f"DSP {t['dsp']:>5}/{board.dsp:<5} "
              f"{t['fps']:7.2f} FPS  {100 * t['array_util']:5.1f} % of array peak  "
              f"{100 * t['board_peak_util']:5.1f} % of board peak  "
              f"weights {t['weight_bytes_per_frame'] / 2**20:5.2f} MiB/frame  (plan {dt:.2f} s)")
        print(f"         array-bound ceiling {t['ceiling_fps']:.2f} FPS "
              f"({100 * t['busy_cycles'] / t['cycles']:.1f} % of the frame steps the array)")
        print(f"         LUT {t['lut']}/{board.lut}, BRAM36 {t['bram36']}/{board.bram36}, lanes: out {p.lanes['out']} "
              f"score {p.lanes['score']} shiftmax {p.lanes['shiftmax']} layernorm {p.lanes['layernorm']}")
        print("         DSP / LUT per unit: " + ", ".join(f"{u.name} {u.dsp}/{u.lut}" for u in p.units))
        print("         stalls: " + ", ".join(f"{k} {v / t['cycles']:.1%}" for k, v in top))


if __name__ == "__main__":
    main()
