"""Numpy reference on a Seg-T-Mask-shaped random model (D 192, 3 heads, 12 layers, 512x512, 150 classes).

Prints seconds per image (wall and CPU: with a multi-threaded BLAS on a busy machine, CPU time can exceed
wall time or wall time the idle figure; ``OPENBLAS_NUM_THREADS=1`` gives the single-core figure) and the
process's peak resident memory. Targets: <= 10 s, <= 4 GB.
Run: python benchmarks/reference_seg_t.py [--images 3]
"""

from __future__ import annotations

import argparse
import resource
import time

from iseg import reference
from iseg.graph import build_graph
from iseg.random_model import PRESETS, calibration_image, random_checkpoint


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=3)
    args = ap.parse_args()
    t0 = time.perf_counter()
    q = random_checkpoint(PRESETS["seg-t-512"], seed=0)
    t_build = time.perf_counter() - t0
    g = build_graph(q.spec)
    times, cpus = [], []
    for i in range(args.images):
        img = calibration_image(q.spec.image, 100 + i)
        t, c = time.perf_counter(), time.process_time()
        reference.run(q, img, graph=g)
        times.append(time.perf_counter() - t)
        cpus.append(time.process_time() - c)
    t = time.perf_counter()
    _, trace = reference.run(q, calibration_image(q.spec.image, 1), graph=g, trace=True)
    t_trace = time.perf_counter() - t
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20
    best, mean = min(times), sum(times) / len(times)
    print(f"seg-t-512 random model: built + calibrated in {t_build:.1f} s, {q.n_params:,} parameters")
    print(f"reference: {mean:.2f} s per image (best {best:.2f} s over {len(times)}; "
          f"CPU {min(cpus):.2f}-{max(cpus):.2f} s; target <= 10 s: {'MET' if mean <= 10 else 'MISSED'})")
    print(f"reference with full per-op trace ({len(trace)} tensors): {t_trace:.2f} s")
    print(f"peak resident memory: {peak_gb:.2f} GB (target <= 4 GB: {'MET' if peak_gb <= 4 else 'MISSED'})")


if __name__ == "__main__":
    main()
