"""C-simulation speed of the hls/ kernels (g++, one core): GEMM MAC/s on Seg-T-shaped layers and
the seconds per Seg-T-Mask 512x512 frame, measured by running the whole frame's layer table.

    python benchmarks/csim_kernels.py [--array 16x16] [--opt=-O3] [--skip-frame]

Prints figures measured in this run (no assertions: these machines are noisy). Weights and
constants are random: the speed of integer C-simulation does not depend on the values.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "hls"))
from _hls_harness import (  # noqa: E402
    F_GELU,
    F_RESIDUAL,
    OP_ARGMAX_UPSAMPLE,
    OP_ATTENTION,
    OP_COPY_CONST,
    OP_EMBED_ADD,
    OP_LAYERNORM,
    OP_LINEAR,
    OP_MASK_PRODUCT,
    OP_PATCH_EMBED,
    Blob,
    Harness,
    Scratch,
    build,
    layer,
    ln_mean,
    rq_scalar,
)

from iseg import numerics as nx  # noqa: E402

# Seg-T-Mask/16 at 512x512, ADE20K classes
IMG, P, D, HEADS, F, LAYERS, DEC_LAYERS, NCLS = 512, 16, 192, 3, 768, 12, 2, 150
N = (IMG // P) ** 2
GELU = nx.gelu_consts(0.05, "lambda")
RQ8, RQ16 = rq_scalar(1 << 30, 40), rq_scalar(1 << 30, 34)


class Frame:
    """The full Seg-T-Mask layer table with random weights, and its MAC count."""

    def __init__(self, rng: np.random.Generator) -> None:
        self.rng, self.blob, self.sc, self.table, self.macs = rng, Blob(), Scratch(), [], 0

    def lin(self, x_off, t, k, n, out, bits, flags=0, res=None, bias=True, x_stride=None, out_stride=None):
        # a fused lambda-GELU + RQ_8 is a 256-entry table in the blob (hls/gemm.h load_gelu_table)
        kw = dict(gelu=GELU, cst=self.blob.add(nx.gelu_rq8_table(GELU, RQ8.m, RQ8.e, RQ8.o), np.int8)) \
            if flags & F_GELU else {}
        if flags & F_RESIDUAL:
            kw.update(in2=res, in2_stride=n, ma=1 << 30, mb=1 << 29, ea=30)
        self.table.append(layer(
            op=OP_LINEAR, flags=flags, T=t, K=k, N=n, out_bits=bits, in_=x_off, in_stride=x_stride or k, out=out,
            out_stride=out_stride or n, w=self.blob.add(self.rng.integers(-128, 128, (k, n)), np.int8),
            b=self.blob.add(self.rng.integers(-999, 999, n), np.int32) if bias else -1,
            rq=self.blob.rq_table(1 << 30, 40 if bits == 8 else 34, 0, n), **kw))
        self.macs += t * k * n

    def ln(self, x_off, t, c, out, bits=8):
        self.table.append(layer(op=OP_LAYERNORM, T=t, N=c, out_bits=bits, in_=x_off, in_stride=c, out=out,
                                out_stride=c, rq=self.blob.rq_table(1 << 30, 24 if bits == 8 else 18, 0, c),
                                **ln_mean(c)))

    def block(self, name: str, x: int, t: int) -> None:
        sc = self.sc
        a, qkv = sc.alloc(f"{name}.a", (t, D), np.int8), sc.alloc(f"{name}.qkv", (t, 3 * D), np.int8)
        o, h = sc.alloc(f"{name}.o", (t, D), np.int8), sc.alloc(f"{name}.h", (t, D), np.int8)
        f = sc.alloc(f"{name}.f", (t, F), np.int8)
        self.ln(x, t, D, a)
        self.lin(a, t, D, 3 * D, qkv, 8)
        self.table.append(layer(op=OP_ATTENTION, T=t, N=D, heads=HEADS, d_head=D // HEADS, in_=qkv, in_stride=3 * D,
                                out=o, out_stride=D, sm_x0=nx.shiftmax_x0(0.1, "precise"), rq=RQ8, rq2=RQ8))
        self.macs += 2 * t * t * D
        self.lin(o, t, D, D, x, 16, F_RESIDUAL, res=x)
        self.ln(x, t, D, h)
        self.lin(h, t, D, F, f, 8, F_GELU)
        self.lin(f, t, F, D, x, 16, F_RESIDUAL, res=x)

    def build(self) -> None:
        sc, blob = self.sc, self.blob
        K = 3 * P * P
        stage, tok = sc.alloc("stage", (N, K), np.int8), sc.alloc("tok", (N, D), np.int16)
        self.table.append(layer(op=OP_PATCH_EMBED, T=N, K=K, N=D, img_h=IMG, img_w=IMG, patch=P, out_bits=16,
                                in_=stage, in_stride=K, out=tok, out_stride=D,
                                w=blob.add(self.rng.integers(-128, 128, (K, D)), np.int8),
                                b=blob.add(np.zeros(D), np.int32), rq=blob.rq_table(1 << 30, 34, 0, D)))
        self.macs += N * K * D
        x = sc.alloc("x", (N + 1, D), np.int16)
        self.table.append(layer(op=OP_EMBED_ADD, T=N + 1, N=D, n_prefix=1, out_bits=16, in_=tok, in_stride=D, out=x,
                                out_stride=D, cst=blob.add(np.zeros((1, D)), np.int16),
                                b=blob.add(self.rng.integers(-99, 99, (N + 1, D)), np.int16), ma=1 << 30, mb=1 << 30,
                                ea=30))
        for i in range(LAYERS):
            self.block(f"enc{i}", x, N + 1)
        e = sc.alloc("enc", (N + 1, D), np.int8)
        self.ln(x, N + 1, D, e)
        td = N + NCLS
        dx = sc.alloc("dec.x", (td, D), np.int16)
        self.lin(e + D, N, D, D, dx, 16)
        self.table.append(layer(op=OP_COPY_CONST, T=NCLS, N=D, out_bits=16, out=dx + N * D * 2, out_stride=D,
                                cst=blob.add(self.rng.integers(-99, 99, (NCLS, D)), np.int16)))
        for j in range(DEC_LAYERS):
            self.block(f"dec{j}", dx, td)
        dn = sc.alloc("dec.n", (td, D), np.int8)
        self.ln(dx, td, D, dn)
        pp, cc = sc.alloc("pp", (N, D), np.int8), sc.alloc("cc", (NCLS, D), np.int8)
        self.lin(dn, N, D, D, pp, 8, bias=False)
        self.lin(dn + N * D, NCLS, D, D, cc, 8, bias=False)
        mk, mn = sc.alloc("mask", (N, NCLS), np.int16), sc.alloc("mask_n", (N, NCLS), np.int16)
        self.table.append(layer(op=OP_MASK_PRODUCT, T=N, K=D, N=NCLS, out_bits=16, in_=pp, in_stride=D, in2=cc,
                                in2_stride=D, out=mk, out_stride=NCLS, rq=RQ16))
        self.macs += N * D * NCLS
        self.ln(mk, N, NCLS, mn, bits=16)
        self.table.append(layer(op=OP_ARGMAX_UPSAMPLE, T=N, N=NCLS, img_h=IMG, img_w=IMG, patch=P, in_=mn,
                                in_stride=NCLS))


def time_layers(h: Harness, frame: Frame, blob: np.ndarray, scratch: np.ndarray, idx: list[int], reps: int = 3):
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        rc, _ = h.run([frame.table[i] for i in idx], blob, scratch)
        best = min(best, time.perf_counter() - t0)
        assert rc == 0, h.error()
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--array", default="16x16", help="systolic array RxC of the C-sim build")
    ap.add_argument("--opt", default="-O2", help="g++ optimisation flag")
    ap.add_argument("--skip-frame", action="store_true", help="only the per-layer figures")
    args = ap.parse_args()
    r, c = (int(v) for v in args.array.split("x"))
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        lib = build(Path(tmp), opt=args.opt, r=r, c=c, nmax=N + NCLS, kmax=N + NCLS, cmax=F, img=IMG)
        print(f"build: g++ {args.opt}, array {r}x{c}: {time.perf_counter() - t0:.1f} s")
        h = Harness(lib)
        frame = Frame(np.random.default_rng(0))
        frame.build()
        blob, scratch = frame.blob.array(), frame.sc.array()
        # per-layer GEMM throughput on the first encoder block (table entries 2..8)
        names = ["ln1", "qkv", "attention", "proj+res", "ln2", "fc1+gelu", "fc2+res"]
        t = N + 1
        macs = [0, t * D * 3 * D, 2 * t * t * D, t * D * D, 0, t * D * F, t * F * D]
        print(f"{'layer (T=1025)':<16}{'ms':>9}{'GMAC':>8}{'GMAC/s':>9}")
        for k, (name, mac) in enumerate(zip(names, macs, strict=True)):
            s = time_layers(h, frame, blob, scratch, [2 + k])
            rate = f"{mac / s / 1e9:9.2f}" if mac else f"{'-':>9}"
            print(f"{name:<16}{s * 1e3:9.1f}{mac / 1e9:8.3f}{rate}")
        if args.skip_frame:
            return
        pixels = np.random.default_rng(1).integers(0, 256, IMG * IMG * 3, dtype=np.uint8)
        t0 = time.perf_counter()
        rc, labels = h.run(frame.table, blob, scratch, pixels=pixels, n_labels=IMG * IMG)
        dt = time.perf_counter() - t0
        assert rc == 0, h.error()
        print(f"Seg-T-Mask 512x512 frame: {len(frame.table)} layers, {frame.macs / 1e9:.2f} GMAC, "
              f"{dt:.1f} s on one core ({frame.macs / dt / 1e9:.2f} GMAC/s overall; budget 60 s) "
              f"[pid {os.getpid()}]")


if __name__ == "__main__":
    main()
