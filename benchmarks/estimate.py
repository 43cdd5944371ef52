"""The analytic estimate of Seg-T-Mask 512x512 (150 classes) on every board (KV260 at 250 MHz first).

    python benchmarks/estimate.py [--model seg-t-512|seg-s-512]

Prints, per board: the auto-chosen array, DSPs, FPS, % of the array's packed-DSP MAC peak, % of the
whole board's packed peak, the largest cycle sinks beyond the ideal array time and the weight traffic.
The estimate needs no checkpoint values, only shapes: a zero checkpoint stands in.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from iseg.checkpoint import QuantizedCheckpoint, expected_layout
from iseg.generator.boards import BOARDS
from iseg.generator.config import Config
from iseg.generator.plan import make_plan
from iseg.random_model import PRESETS, with_classes


def shape_only_checkpoint(name: str) -> QuantizedCheckpoint:
    spec = with_classes(PRESETS[name])
    lay = expected_layout(spec)
    tensors = {k: np.zeros(shape, dtype=dt) for k, (shape, dt) in lay.tensors.items()}
    consts = {}
    for k, cs in lay.consts.items():
        consts[k] = {"rq": {"m": 1 << 30, "e": 31, "o": 0}, "add": {"ma": 1, "mb": 1, "e": 1},
                     "softmax": {"x0": -100}, "gelu": {"x0": -100, "n": 20, "k": 3, "L": 10, "em": 1}}[cs.kind]
    return QuantizedCheckpoint(spec, tensors, consts)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="seg-t-512", choices=["seg-t-512", "seg-s-512"])
    args = ap.parse_args()
    ckpt = shape_only_checkpoint(args.model)
    for name, board in BOARDS.items():
        clock = 250.0 if name == "kv260" else float(board.clock_mhz)
        cfg = Config(source=Path("estimate.yaml"), checkpoint=Path("none"), output=Path("none"), project="bench",
                     board=board, clock_mhz=clock, array=None, image=None, outputs=("report",))
        t0 = time.perf_counter()
        p = make_plan(cfg, ckpt, checkpoint_sha256="0" * 64)
        dt = time.perf_counter() - t0
        t = p.totals
        top = sorted(t["stalls"].items(), key=lambda kv: -kv[1])[:5]
        print(f"{name:<8} {clock:5.0f} MHz array {p.rows:>2}x{p.cols:<2} DSP {t['dsp']:>5}/{board.dsp:<5} "
              f"{t['fps']:7.2f} FPS  {100 * t['array_util']:5.1f} % of array peak  "
              f"{100 * t['board_peak_util']:5.1f} % of board peak  "
              f"weights {t['weight_bytes_per_frame'] / 2**20:5.2f} MiB/frame  (plan {dt:.2f} s)")
        print("         stalls: " + ", ".join(f"{k} {v / t['cycles']:.1%}" for k, v in top))


if __name__ == "__main__":
    main()
