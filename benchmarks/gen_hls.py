"""Generation time of a Seg-T-Mask 512x512 project (random model, 150 classes); target <= 5 s.

    python benchmarks/gen_hls.py [--board kv260] [--repeat 3]

Runs the stages of ``gen-hls`` (``cli.generate``) one by one and prints the wall time of each:
checkpoint load, plan, render and write, with the golden vectors (the reference run on one image
plus the per-layer checksums) computed by a ``GoldenWorker`` process beside the plan and rendering,
as ``gen-hls`` does; "golden wait" is how long rendering waited for them. Then the same golden
vectors in-process (``emit.golden``) for comparison. The CPU seconds of the main process and of the
worker estimate the time on an otherwise idle machine (2 cores: the larger of the two).
The random checkpoint is made once (not timed).
"""

from __future__ import annotations

import argparse
import resource
import statistics
import tempfile
import time
from pathlib import Path

import yaml

from iseg.checkpoint import load, save
from iseg.generator import emit
from iseg.generator.cli import GoldenWorker
from iseg.generator.config import load_config
from iseg.generator.plan import make_plan
from iseg.generator.write import write_project
from iseg.random_model import PRESETS, calibration_image, random_checkpoint

TARGET_S = 5.0


def _children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def generate_timed(folder: Path) -> dict[str, float]:
    """One generation, stage by stage (wall seconds) plus CPU seconds of the main process and the worker."""
    t: dict[str, float] = {}
    c0, w0 = time.process_time(), _children_cpu()
    t0 = time.perf_counter()
    cfg = load_config(folder / "config.yaml")
    ckpt = load(cfg.checkpoint)
    image = calibration_image(ckpt.spec.image, 0)
    t["load"] = time.perf_counter() - t0
    with GoldenWorker(ckpt, image) as worker:
        t1 = time.perf_counter()
        plan = make_plan(cfg, ckpt)
        worker.send_plan(plan)
        t["plan"] = time.perf_counter() - t1

        def golden() -> emit.Golden:
            t2 = time.perf_counter()
            g = worker.result(plan)
            t["golden wait"] = time.perf_counter() - t2
            return g

        t1 = time.perf_counter()
        files = emit.render_project(plan, ckpt, image, emit.library_headers(), golden_vectors=golden)
        t["render (incl. golden wait)"] = time.perf_counter() - t1
    t1 = time.perf_counter()
    write_project(files, cfg.output)
    t["write"] = time.perf_counter() - t1
    t["total"] = time.perf_counter() - t0
    t["cpu main"] = time.process_time() - c0
    t["cpu worker"] = _children_cpu() - w0
    t["files"] = len(files)
    t["rows"] = len(plan.layers)
    return t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--board", default="kv260")
    ap.add_argument("--repeat", type=int, default=3, help="generations to time (default 3)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        folder = Path(d)
        save(random_checkpoint(PRESETS["seg-t-512"], seed=0), folder / "segt.safetensors")
        (folder / "config.yaml").write_text(yaml.safe_dump({
            "checkpoint": "segt.safetensors", "output": "out", "project": "iseg_segt", "board": args.board}))
        runs = [generate_timed(folder) for _ in range(args.repeat)]
        keys = ["load", "plan", "render (incl. golden wait)", "golden wait", "write", "total", "cpu main",
                "cpu worker"]
        print(f"{'stage (s)':<28} " + " ".join(f"{'run ' + str(i + 1):>7}" for i in range(len(runs)))
              + f" {'median':>7}")
        for k in keys:
            vals = [r[k] for r in runs]
            print(f"{k:<28} " + " ".join(f"{v:7.2f}" for v in vals) + f" {statistics.median(vals):7.2f}")
        cfg = load_config(folder / "config.yaml")
        ckpt = load(cfg.checkpoint)
        plan = make_plan(cfg, ckpt)
        t1, c1 = time.perf_counter(), time.process_time()
        g = emit.golden(plan, ckpt, calibration_image(ckpt.spec.image, 0))
        print(f"{'golden in-process':<28} {time.perf_counter() - t1:7.2f} (cpu {time.process_time() - c1:.2f}; "
              f"{len(g.layers)} checksums)")
        totals = [r["total"] for r in runs]
        quiet = statistics.median(max(r["cpu main"], r["cpu worker"]) for r in runs)
        print(f"gen-hls Seg-T-Mask 512x512 ({args.board}): {statistics.median(totals):.2f} s total "
              f"(median of {len(runs)}, {min(totals):.2f}-{max(totals):.2f}; target <= {TARGET_S:g} s: "
              f"{'MET' if statistics.median(totals) <= TARGET_S else 'MISSED'}); idle-machine estimate from "
              f"CPU time {quiet:.2f} s ({'MET' if quiet <= TARGET_S else 'MISSED'}); {runs[0]['files']:.0f} files, "
              f"{runs[0]['rows']:.0f} layer rows")


if __name__ == "__main__":
    main()
