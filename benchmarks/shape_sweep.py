"""Random-shape sweep: random models x boards x arrays through gen-hls and the C-simulation.

Each case draws a model shape (d_head 8..64, 1-4 heads, 1-3 layers, MLP ratio 1-4, patch 2-16, a 1..9 x 1..9
patch grid, 1-150 classes, both decoders, the three Shiftmax and two GELU variants), a board and an array
(``auto``, half of the time within a random ``budget``, or an explicit R x C, narrow ones included), generates the
project and C-simulates two images. A case
passes when the C-simulation is bit-exact with the reference on every layer and the labels, its cycle counter
and DDR byte counts equal the estimate, every pipelined loop stays within its memory banks and m_axi beats, and the
project's synthesis view (top.cpp with __SYNTHESIS__: ap_int<ARR> accumulators, Vitis' stream types, C++14;
tests/generator/synthesis_view.py) compiles and passes its test bench bit-exact.
A config the planner refuses (an explicit array with more DSPs than the board, a budget no array fits) counts as
refused, not failed.

This is how the estimate's two blind spots fixed with this script were found (a narrow explicit array's K/V load
beyond its ports; a one-class model's one-channel requants charged as tables). It is not in CI: a case takes
5-40 s (the g++ build dominates).

    python benchmarks/shape_sweep.py [--cases 20] [--seed 0]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import random
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

from iseg.checkpoint import ModelSpec, save  # noqa: E402
from iseg.errors import IsegError  # noqa: E402
from iseg.generator.boards import BOARDS  # noqa: E402
from iseg.generator.cli import check_csim, generate  # noqa: E402
from iseg.random_model import random_checkpoint  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the tests' synthesis-view runner
from tests.generator.synthesis_view import run_synthesis_view  # noqa: E402

CLEAN_TAIL = "memory ports: every pipelined loop within its banks and its m_axi beats"


def draw(rng: random.Random) -> tuple[ModelSpec, str, tuple[int, int, int] | None, dict[str, float] | None]:
    """One case: (model shape, board name, explicit array (rows, cols, K unroll) or None for auto, the auto array's
    budget or None for the default). The K unroll and then the budget are drawn last (the K unroll 1, 2 or 4, 1 twice
    as often; a budget for half of the auto arrays, each share 0.2..1 in steps of 0.05), so a seed draws the model,
    board and array it drew before they existed (2026-11-29)."""
    dh, heads, patch = rng.choice([8, 16, 24, 32, 48, 64]), rng.choice([1, 2, 3, 4]), rng.choice([2, 4, 8, 16])
    dim = dh * heads
    decoder = rng.choice(["mask", "linear"])
    dec_dh, dec_heads = rng.choice([16, 32, 64]), rng.choice([1, 2])
    dec = decoder == "mask" and rng.random() < 0.4
    spec = ModelSpec(dim=dim, heads=heads, layers=rng.choice([1, 2, 3]), mlp_dim=dim * rng.choice([1, 2, 3, 4]),
                     patch=patch, image=(patch * rng.randint(1, 9), patch * rng.randint(1, 9)),
                     n_cls=rng.choice([1, 2, 3, 7, 19, 33, 150]), decoder=decoder,
                     dec_dim=(dec_dh * dec_heads if dec else dim) if decoder == "mask" else 0,
                     dec_heads=(dec_heads if dec else heads) if decoder == "mask" else 0,
                     dec_layers=2, dec_mlp_dim=0, softmax=rng.choice(["ivit", "precise", "precise8"]),
                     gelu=rng.choice(["lambda", "shift"]))
    spec = dataclasses.replace(spec, dec_mlp_dim=4 * spec.dec_dim if decoder == "mask" else 0)
    board = rng.choice(sorted(BOARDS))
    array = None if rng.random() < 0.5 else (rng.choice([1, 2, 3, 5, 7, 8, 13, 16, 31]),
                                             rng.choice([1, 2, 3, 4, 8, 12, 16, 32, 40, 64]))
    if array is not None:
        array = (*array, rng.choice([1, 1, 2, 4]))
    budget = None
    if array is None and rng.random() < 0.5:
        budget = {k: rng.randint(4, 20) / 20 for k in ("dsp", "lut", "memory")}
    return spec, board, array, budget


def run_case(spec: ModelSpec, board: str, array: tuple[int, int, int] | None, seed: int,
             folder: Path, budget: dict[str, float] | None = None) -> tuple[str, str]:
    """(verdict, detail): PASS, REFUSED (the planner's one-line error) or FAIL."""
    import yaml

    ckpt = folder / "model.safetensors"
    save(random_checkpoint(spec, seed=seed), ckpt)
    cfg = {"checkpoint": str(ckpt), "output": str(folder / "out"), "project": "sweep", "board": board,
           "array": {"rows": array[0], "cols": array[1], "k_unroll": array[2]} if array else "auto",
           "outputs": ["hls"], **({"budget": budget} if budget else {})}
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    try:
        out = generate(path)
    except IsegError as e:
        return "REFUSED", str(e)
    try:
        summary = check_csim(out, ckpt, "2")
    except IsegError as e:
        return "FAIL", str(e)
    ok = ("cycles counted = estimate" in summary and "DDR bytes counted = estimate" in summary
          and summary.endswith(CLEAN_TAIL))
    if not ok:
        return "FAIL", summary
    synth_ok, log = run_synthesis_view(out, folder)
    return ("PASS", summary) if synth_ok else ("FAIL", f"synthesis view: {log.strip()}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cases", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    counts = {"PASS": 0, "REFUSED": 0, "FAIL": 0}
    t0 = time.perf_counter()
    for i in range(args.cases):
        seed = args.seed + i
        spec, board, array, budget = draw(random.Random(seed))
        with tempfile.TemporaryDirectory(prefix="iseg-sweep-") as tmp:
            t = time.perf_counter()
            verdict, detail = run_case(spec, board, array, seed, Path(tmp), budget)
        counts[verdict] += 1
        shape = (f"dim {spec.dim}/{spec.heads}h x{spec.layers} mlp {spec.mlp_dim} {spec.image[0]}x{spec.image[1]}"
                 f"/p{spec.patch} {spec.n_cls} cls {spec.decoder}"
                 + (f" dec {spec.dec_dim}/{spec.dec_heads}h" if spec.decoder == "mask" else "")
                 + f" {spec.softmax} {spec.gelu}")
        arr = (f"{array[0]}x{array[1]}" + (f"x{array[2]}" if array[2] > 1 else "")) if array else "auto"
        if budget:
            shape += " budget " + "/".join(f"{v:g}" for v in budget.values())
        print(f"seed {seed:5d} {verdict:7s} {time.perf_counter() - t:5.1f} s  {board:7s} {arr:6s} {shape}", flush=True)
        if verdict != "PASS":
            print(f"      {detail.splitlines()[0][:400]}", flush=True)
            for line in detail.splitlines()[1:4]:
                print(f"      {line}", flush=True)
    print(f"{args.cases} cases in {time.perf_counter() - t0:.0f} s: {counts['PASS']} pass (bit-exact, counted = "
          f"estimate, within ports, synthesis view bit-exact), {counts['REFUSED']} refused by the planner, "
          f"{counts['FAIL']} failed")
    return 1 if counts["FAIL"] else 0


if __name__ == "__main__":
    sys.exit(main())
