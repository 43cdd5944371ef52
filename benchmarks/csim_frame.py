"""C-simulation seconds for one Seg-T-Mask 512x512 frame, with the bit-exact check; target <= 60 s.

    python benchmarks/csim_frame.py [--softmax precise|ivit|precise8] [--budget dsp=0.9,lut=0.75,memory=0.9]

Generates the project of a random Seg-T checkpoint, compiles it with g++ (time printed
separately), runs one frame untraced and one traced, and compares every layer and the labels with
the numpy reference. ``--budget``: the config's ``budget`` (the share of KV260's DSPs, LUTs and BRAM/URAM the
planner's array may take), to C-simulate the array another budget gives.
"""

from __future__ import annotations

import argparse
import json
import re
import tempfile
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import yaml

from iseg import numerics as nx
from iseg.checkpoint import save
from iseg.errors import IsegError
from iseg.generator.cli import generate
from iseg.generator.config import parse_budget_option
from iseg.generator.csim import CsimLibrary, build
from iseg.random_model import PRESETS, calibration_image, random_checkpoint
from iseg.reference import run


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--softmax", default="precise", choices=list(nx.SHIFTMAX_VARIANTS),
                    help="Shiftmax variant of the random model (precise8: P.V at the packed rate)")
    ap.add_argument("--budget", default="", help="dsp=..,lut=..,memory=..: shares in (0, 1] (config key budget)")
    args = ap.parse_args()
    try:
        budget = parse_budget_option(args.budget)
    except IsegError as exc:
        ap.error(str(exc))
    with tempfile.TemporaryDirectory() as d:
        folder = Path(d)
        ckpt = random_checkpoint(replace(PRESETS["seg-t-512"], softmax=args.softmax), seed=0)
        save(ckpt, folder / "segt.safetensors")
        (folder / "config.yaml").write_text(yaml.safe_dump({
            "checkpoint": "segt.safetensors", "output": "out", "project": "iseg_segt", "board": "kv260",
            "outputs": ["hls"], "budget": asdict(budget)}))
        out = generate(folder / "config.yaml")
        t0 = time.perf_counter()
        build(out)
        t_build = time.perf_counter() - t0
        lib = CsimLibrary(out)
        img = calibration_image(ckpt.spec.image, 1)
        t0 = time.perf_counter()
        labels = lib.run(img)
        t_frame = time.perf_counter() - t0
        counted = lib.cycles(-1)
        ports = lib.ports()
        moved = lib.axi_bytes()
        bursts = lib.bursts()
        static = lib.static_demand()
        t0 = time.perf_counter()
        labels_t, trace = lib.run_traced(img)
        t_traced = time.perf_counter() - t0
        fast = CsimLibrary(build(out, port_check=False))  # the emulated board's build: no per-access counting
        t0 = time.perf_counter()
        labels_f = fast.run(img)
        t_fast = time.perf_counter() - t0
        same_fast = np.array_equal(labels_f, labels) and fast.cycles(-1) == counted
        t0 = time.perf_counter()
        ref_labels, ref = run(ckpt, img, trace=True)
        t_ref = time.perf_counter() - t0
        bad = [e["name"] for e in lib.trace_map if e["name"] is not None and not np.array_equal(
            trace[lib.trace_key(e)], ref[e["name"]][e["row0"]:e["row0"] + e["rows"]])]
        exact = not bad and np.array_equal(labels, ref_labels) and np.array_equal(labels_t, ref_labels)
        print(f"g++ build            {t_build:6.1f} s")
        print(f"C-sim frame          {t_frame:6.1f} s (target <= 60 s)")
        print(f"C-sim frame, traced  {t_traced:6.1f} s")
        print(f"C-sim frame, no port check (the emulated board) {t_fast:6.1f} s "
              f"({'same labels and cycles' if same_fast else 'DIFFERENT'})")
        print(f"numpy reference      {t_ref:6.1f} s (ratio C-sim / reference {t_frame / t_ref:.1f}x)")
        manifest = json.loads((out / "manifest.json").read_text())
        est, fps = manifest["estimate"]["cycles"], manifest["estimate"]["fps"]
        print(f"cycles counted       {counted:,} (estimate {est:,}: {'equal' if counted == est else 'DIFFERENT'})")
        verdict = "yes" if exact else "NO: " + ", ".join(bad[:3])
        traced = sum(1 for e in lib.trace_map if e["name"] is not None)  # the head's row is the labels
        print(f"bit-exact: {verdict} ({traced} layer rows + labels)")
        verdict = "every pipelined loop within its banks and its m_axi beats" if not ports else "EXCEEDED:"
        print(f"memory ports         {verdict}")
        for e in ports:
            print(f"  {e}")
        total = sum(moved.values())
        stated = manifest["estimate"]["ddr_bytes"]
        same = moved["gmem0.read"] == stated["weights"] and total - moved["gmem0.read"] == stated["scratch"]
        verdict = "= the estimate" if same else "estimate DIFFERENT"
        print(f"DDR traffic (C-sim)  {total / 2**20:.1f} MiB/frame ({verdict}), "
              f"{total * fps / 1e9:.2f} GB/s at the estimate's {fps:.3f} FPS: "
              + ", ".join(f"{k} {v / 2**20:.1f}" for k, v in moved.items()))
        beat = int(re.search(r"AXI_BYTES = (\d+);", (out / "src" / "model_cfg.h").read_text()).group(1))
        print(f"sequential runs per loop and port ({beat}-byte beats; 95 % of the traffic):")
        print(f"  {'loop':<18} {'port':<12} {'MiB':>7} {'runs':>9} {'beats/run':>10}")
        seen = 0
        for b in bursts:
            if seen >= 0.95 * total:
                break
            seen += b.bytes
            print(f"  {b.loop:<18} {b.port:<12} {b.bytes / 2**20:7.2f} {b.bursts:9,} {b.mean_beats(beat):10.1f}")
        # what the checks above cannot see: a tool schedules every access site of a loop in every iteration
        # (docs/hls.md, "What csynth would likely find first", item 11): the demand of every buffer and bundle the
        # engine loop reached, its worst bank's operations summed over the sites that reach it
        eng = [e for e in static if e.loop == "ENGINE_PASS"]
        worst = max((e.ii for e in eng), default=1)
        verdict = "II 1, as the estimate charges" if worst == 1 else f"II >= {worst} where the estimate charges 1"
        print(f"static demand of the engine loop (the union of its modes' access sites): {verdict}")
        print(f"  {'buffer':<12} {'operations':>10} {'sites':>6} {'II':>4}   "
              "(banks: words, 2 ports; m_axi: whole-beat requests)")
        for e in sorted(eng, key=lambda e: (-e.ii, e.buffer.startswith("gmem"), e.buffer)):
            print(f"  {e.buffer:<12} {e.demand:10} {e.sites:6} {e.ii:4}")


if __name__ == "__main__":
    main()
