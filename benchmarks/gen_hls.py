"""Generation time of a Seg-T-Mask 512x512 project (random model, 150 classes); target <= 5 s.

    python benchmarks/gen_hls.py [--board kv260]

Prints the time of each stage (checkpoint load, plan, golden vectors, render, write) and the total.
The random checkpoint is made once (not timed).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import yaml

from iseg.checkpoint import load, save
from iseg.generator import emit
from iseg.generator.config import load_config
from iseg.generator.plan import make_plan
from iseg.generator.write import write_project
from iseg.random_model import PRESETS, calibration_image, random_checkpoint


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--board", default="kv260")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        folder = Path(d)
        save(random_checkpoint(PRESETS["seg-t-512"], seed=0), folder / "segt.safetensors")
        (folder / "config.yaml").write_text(yaml.safe_dump({
            "checkpoint": "segt.safetensors", "output": "out", "project": "iseg_segt", "board": args.board}))
        t = {}
        t0 = time.perf_counter()
        cfg = load_config(folder / "config.yaml")
        ckpt = load(cfg.checkpoint)
        t["load"] = time.perf_counter() - t0
        t1 = time.perf_counter()
        plan = make_plan(cfg, ckpt)
        t["plan"] = time.perf_counter() - t1
        t1 = time.perf_counter()
        g = emit.golden(plan, ckpt, calibration_image(ckpt.spec.image, 0))
        t["golden (reference run)"] = time.perf_counter() - t1
        t1 = time.perf_counter()
        files = emit.render_project(plan, ckpt, calibration_image(ckpt.spec.image, 0), emit.library_headers())
        t["render (incl. golden again)"] = time.perf_counter() - t1
        t1 = time.perf_counter()
        write_project(files, cfg.output)
        t["write"] = time.perf_counter() - t1
        total = t["load"] + t["plan"] + t["render (incl. golden again)"] + t["write"]
        for k, v in t.items():
            print(f"{k:<28} {v:6.2f} s")
        print(f"gen-hls Seg-T-Mask 512x512 ({args.board}): {total:.2f} s total (target <= 5 s), "
              f"{len(files)} files, weights.bin {plan.blob_bytes / 2**20:.2f} MiB, {len(plan.layers)} layer rows, "
              f"golden {len(g.layers)} checksums")


if __name__ == "__main__":
    main()
