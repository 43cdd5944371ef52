"""Measured cycles of the RTL units (Icarus + cocotb, no gaps, no backpressure) vs their ideal.

GEMM: an M x K x N product tiled on the R x C array; ideal = M*K*N / (R*C) cycles (every PE busy
every cycle), the rest is fill/drain and the tile hand-over. Vector units: cycles per element
against the ideal of one element per clock. Every run is also checked bit-exact against
iseg.numerics by the testbench (a wrong result aborts the benchmark).

    python benchmarks/rtl_throughput.py [--simulator icarus|verilator]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from iseg.generator.rtl import example_params
from iseg.sim.runner import run_unit


def _run(top: str, overrides: dict, extra: dict, sim: str, mode: str = "check") -> dict:
    with tempfile.TemporaryDirectory(prefix="iseg_bench_") as tmp:
        r = run_unit(top, example_params(7, **overrides), Path(tmp), simulator=sim, seed=7,
                     valid_prob=1.0, ready_prob=1.0, mode=mode, extra=extra)
        if not r.passed:
            raise SystemExit(f"{top}: simulation failed (not bit-exact); rerun tests/rtl")
        return r.figures


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--simulator", default="icarus", choices=["icarus", "verilator"])
    args = ap.parse_args()
    sim = args.simulator

    print(f"GEMM (simulator {sim}): cycles for M x K x N vs ideal M*K*N/(R*C)")
    print(f"{'array':>8} {'M x K x N':>14} {'cycles':>8} {'ideal':>8} {'ratio':>6} {'overhead/tile':>14}")
    for (R, C), (M, K, N) in [((4, 4), (16, 32, 16)), ((4, 4), (16, 128, 16)), ((8, 8), (16, 64, 16))]:
        f = _run("iseg_gemm", {"gemm_rows": R, "gemm_cols": C}, {"M": M, "K": K, "N": N}, sim, "bench")
        ideal = M * K * N // (R * C)
        tiles = f["tiles"]
        print(f"{R}x{C:<6} {f'{M}x{K}x{N}':>14} {f['cycles']:>8} {ideal:>8} {f['cycles'] / ideal:>6.2f} "
              f"{(f['cycles'] - ideal) / tiles:>14.1f}")

    print("\nvector units: cycles per element (ideal 1.00)")
    print(f"{'unit':>16} {'elements':>9} {'cycles':>8} {'cyc/elem':>9}  note")
    units = [
        ("iseg_rq", {"rq_lanes": 1}, {"n_rows": 40}, "elements", "per-channel requant, 1 lane"),
        ("iseg_add", {}, {"n_elems": 300}, "elements", "residual add"),
        ("iseg_gelu", {}, {"n_elems": 700}, "elements", "fully pipelined divider"),
        ("iseg_shiftmax", {"sm_max_n": 64}, {"max_len": 64, "n_rows": 8}, "elements",
         "3 passes + divider per row"),
        ("iseg_layernorm", {}, {"n_rows": 30}, "elements", "C=8: 3 passes + 2 dividers + sqrt per row"),
        ("iseg_argmax_up", {"am_grid_w": 8, "am_patch": 4}, {"grid_h": 4, "n_cls": 8}, "labels",
         "per output label (n_cls=8, P=4)"),
    ]
    for top, ov, extra, key, note in units:
        f = _run(top, ov, extra, sim)
        print(f"{top:>16} {f[key]:>9} {f['cycles']:>8} {f['cycles'] / f[key]:>9.2f}  {note}")


if __name__ == "__main__":
    main()
