"""Measured cycles of the RTL units (Icarus + cocotb, no gaps, no backpressure) vs their ideal.

GEMM: an M x K x N product tiled on the R x C array; ideal = M*K*N / (R*C) cycles (every PE busy
every cycle), the rest is fill/drain and the tile hand-over. Vector units: cycles per element
against the ideal of one element per clock, over the whole run and in the steady state of
back-to-back rows (between the ends of the second and the last output rows, so the fill and
drain of the unit's row pipeline are excluded). Every run is also checked bit-exact against
iseg.numerics by the testbench (a wrong result aborts the benchmark).

    python benchmarks/rtl_throughput.py [--simulator icarus|verilator] [--long]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from iseg import numerics as nx
from iseg.generator.rtl import example_params
from iseg.sim.runner import run_unit


def _run(top: str, overrides: dict, extra: dict, sim: str, mode: str = "check") -> dict:
    with tempfile.TemporaryDirectory(prefix="iseg_bench_") as tmp:
        params = example_params(7, **overrides)
        r = run_unit(top, params, Path(tmp), simulator=sim, seed=7,
                     valid_prob=1.0, ready_prob=1.0, mode=mode, extra=extra)
        if not r.passed:
            raise SystemExit(f"{top}: simulation failed (not bit-exact); rerun tests/rtl")
        return r.figures


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--simulator", default="icarus", choices=["icarus", "verilator"])
    ap.add_argument("--long", action="store_true", help="also Shiftmax rows of 1025 keys (512x512 Seg-T)")
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

    print("\nvector units: cycles per element (ideal 1.00); 'steady' = back-to-back rows, fill and drain excluded")
    print(f"{'unit':>16} {'rows x len':>11} {'cycles':>8} {'cyc/elem':>9} {'steady':>7}  note")
    gelu_shift = nx.gelu_consts(0.05, variant="shift")
    units = [
        ("iseg_rq", {"rq_lanes": 1}, {"n_rows": 40}, "check", "elements", "per-channel requant, 1 lane"),
        ("iseg_add", {}, {"n_elems": 300}, "check", "elements", "residual add"),
        ("iseg_gelu", {}, {"bench_len": 192, "n_rows": 6}, "bench", "elements", "lambda-ShiftGELU"),
        ("iseg_gelu", {"gelu": gelu_shift, "gelu_max_n": 768}, {"bench_len": 768, "n_rows": 6}, "bench",
         "elements", "ShiftGELU (per-row max), rows of 768"),
        ("iseg_shiftmax", {"sm_max_n": 64}, {"bench_len": 64, "n_rows": 8}, "bench", "elements",
         "rows of 64 (divider-bound below 52)"),
        ("iseg_shiftmax", {"sm_max_n": 197}, {"bench_len": 197, "n_rows": 8}, "bench", "elements", "rows of 197"),
        ("iseg_layernorm", {}, {"n_rows": 12}, "bench", "elements", "C = 8: bound by the per-row scalar chain"),
        ("iseg_layernorm", {"channels": 192}, {"n_rows": 8}, "bench", "elements", "C = 192"),
        ("iseg_argmax_up", {"am_grid_w": 8, "am_patch": 4}, {"grid_h": 4, "n_cls": 8}, "check", "labels",
         "per output label (n_cls=8, P=4)"),
    ]
    if args.long:
        units.insert(6, ("iseg_shiftmax", {"sm_max_n": 1025}, {"bench_len": 1025, "n_rows": 6}, "bench",
                         "elements", "rows of 1025"))
    for top, ov, extra, mode, key, note in units:
        f = _run(top, ov, extra, sim, mode)
        shape = f"{f['rows']} x {f[key] // f['rows']}" if "rows" in f else f"{f[key]}"
        steady = f"{f['steady']:.2f}" if "steady" in f else "-"
        print(f"{top:>16} {shape:>11} {f['cycles']:>8} {f['cycles'] / f[key]:>9.2f} {steady:>7}  {note}")

if __name__ == "__main__":
    main()
