"""The numpy-only sub-commands of ``iseg``: info, infer, random."""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from iseg import checkpoint as ck
from iseg.errors import IsegError


# --------------------------------------------------------------------------------------------
# iseg info
# --------------------------------------------------------------------------------------------
def add_info_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoint", help="quantized checkpoint (.safetensors)")
    p.add_argument("--json", action="store_true", help="print one JSON object")


def summary(q: ck.QuantizedCheckpoint) -> dict:
    s = q.spec
    return {
        "image": list(s.image), "patch": s.patch, "tokens": s.n_patches + 1,
        "encoder": {"dim": s.dim, "heads": s.heads, "layers": s.layers, "mlp_dim": s.mlp_dim},
        "decoder": ({"kind": "mask", "dim": s.dec_dim, "heads": s.dec_heads, "layers": s.dec_layers,
                     "mlp_dim": s.dec_mlp_dim} if s.decoder == "mask" else {"kind": "linear"}),
        "classes": s.n_cls, "softmax": s.softmax, "gelu": s.gelu,
        "parameters": q.n_params, "bytes": q.n_bytes,
        "weights_int8_bytes": int(sum(t.nbytes for t in q.tensors.values() if t.dtype == np.int8)),
        "constants": len(q.consts), "info": q.info,
    }


def run_info(args: argparse.Namespace) -> int:
    q = ck.load(args.checkpoint)
    d = summary(q)
    if args.json:
        print(json.dumps(d, sort_keys=True))
        return 0
    s = q.spec
    dec = d["decoder"]
    print(f"{args.checkpoint}: I-Segmenter quantized checkpoint (format {ck.FORMAT} v{ck.VERSION})")
    print(f"  input      {s.image[0]}x{s.image[1]} RGB, patch {s.patch}, {s.grid[0]}x{s.grid[1]} patches "
          f"+ cls = {d['tokens']} tokens")
    print(f"  encoder    dim {s.dim}, {s.heads} heads, {s.layers} layers, MLP {s.mlp_dim}")
    if dec["kind"] == "mask":
        print(f"  decoder    mask transformer: dim {dec['dim']}, {dec['heads']} heads, {dec['layers']} layers, "
              f"MLP {dec['mlp_dim']}")
    else:
        print("  decoder    linear")
    names = ", ".join(s.class_names[:6]) + (", ..." if s.n_cls > 6 else "")
    print(f"  classes    {s.n_cls} ({names})")
    print(f"  operators  softmax {s.softmax}, GELU {s.gelu}")
    print(f"  size       {d['parameters']:,} integer parameters, {d['bytes']:,} bytes "
          f"({d['weights_int8_bytes']:,} in int8 weights), {d['constants']} constant groups")
    return 0


# --------------------------------------------------------------------------------------------
# iseg infer
# --------------------------------------------------------------------------------------------
def add_infer_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoint", help="quantized checkpoint (.safetensors)")
    p.add_argument("inputs", nargs="+", help="image files or folders")
    p.add_argument("--out", required=True, help="output folder for label PNGs")
    p.add_argument("--overlay", action="store_true", help="also write colourised overlays")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs")


def run_infer(args: argparse.Namespace) -> int:
    """Label images with the numpy reference: the same image reading and label PNGs as ``iseg-host``."""
    from PIL import Image

    from iseg import imageio, reference
    from iseg.graph import build_graph

    q = ck.load(args.checkpoint)
    paths = imageio.list_images(args.inputs)
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise IsegError(f"{out}: exists and is not a folder")
    graph = build_graph(q.spec)
    colors = np.asarray(q.spec.class_colors, dtype=np.float64)
    done = failed = skipped = 0
    t0 = time.perf_counter()
    for path in paths:
        dest = out / f"{path.stem}.png"
        if dest.exists() and not args.overwrite:
            skipped += 1
            continue
        try:
            image = imageio.load_image(path)
        except IsegError as exc:
            print(f"iseg: skipped: {exc}")
            failed += 1
            continue
        labels, _ = reference.run(q, imageio.fit_to_model(image, q.spec.image), graph=graph)
        labels = imageio.resize_nearest(labels, image.shape[:2])
        imageio.save_labels_png(dest, labels, q.spec.class_colors)
        if args.overlay:
            blend = Image.fromarray((0.5 * image + 0.5 * colors[labels]).astype(np.uint8))
            imageio.atomic_write(out / f"{path.stem}_overlay.png", lambda tmp, im=blend: im.save(tmp, format="PNG"))
        done += 1
    dt = time.perf_counter() - t0
    print(f"iseg infer: {done} labelled, {skipped} already present (use --overwrite), {failed} unreadable; "
          f"{dt / max(done, 1):.2f} s per image -> {out}")
    return 1 if failed and not done else 0


# --------------------------------------------------------------------------------------------
# iseg random
# --------------------------------------------------------------------------------------------
def add_random_arguments(p: argparse.ArgumentParser) -> None:
    from iseg.random_model import PRESETS

    p.add_argument("--preset", choices=sorted(PRESETS), help="start from a preset shape")
    p.add_argument("--out", required=True, help="output .safetensors file")
    p.add_argument("--dim", type=int)
    p.add_argument("--heads", type=int)
    p.add_argument("--layers", type=int)
    p.add_argument("--mlp-ratio", type=int, help="MLP hidden size = ratio * dim (default 4)")
    p.add_argument("--image", help="H or HxW, multiples of the patch")
    p.add_argument("--patch", type=int)
    p.add_argument("--classes", type=int)
    p.add_argument("--decoder", choices=ck.DECODERS)
    p.add_argument("--dec-dim", type=int, help="mask decoder width (default: dim)")
    p.add_argument("--dec-heads", type=int, help="mask decoder heads (default: heads)")
    p.add_argument("--softmax", choices=ck.SOFTMAX_VARIANTS)
    p.add_argument("--gelu", choices=ck.GELU_VARIANTS)
    p.add_argument("--seed", type=int, default=0)


def spec_from_args(args: argparse.Namespace) -> ck.ModelSpec:
    from iseg.random_model import PRESETS, parse_hw

    spec = PRESETS[args.preset or "tiny"]
    kw: dict = {}
    for a, f in (("dim", "dim"), ("heads", "heads"), ("layers", "layers"), ("patch", "patch"),
                 ("classes", "n_cls"), ("decoder", "decoder"), ("softmax", "softmax"), ("gelu", "gelu")):
        v = getattr(args, a)
        if v is not None:
            kw[f] = v
    if args.image:
        kw["image"] = parse_hw(args.image)
    spec = replace(spec, **kw)
    ratio = args.mlp_ratio or (spec.mlp_dim // PRESETS[args.preset or "tiny"].dim)
    dec_dim = args.dec_dim or (spec.dim if args.dim else spec.dec_dim)
    dec_heads = args.dec_heads or (spec.heads if args.heads else spec.dec_heads)
    spec = replace(spec, mlp_dim=ratio * spec.dim, dec_dim=dec_dim, dec_heads=dec_heads,
                   dec_mlp_dim=ratio * dec_dim, class_names=(), class_colors=())
    return spec


def run_random(args: argparse.Namespace) -> int:
    from iseg.random_model import random_checkpoint, with_classes

    spec = with_classes(spec_from_args(args))
    spec.validate()
    q = random_checkpoint(spec, seed=args.seed)
    ck.save(q, args.out)
    print(f"iseg random: wrote {args.out} ({q.n_params:,} parameters, {spec.image[0]}x{spec.image[1]}, "
          f"{spec.n_cls} classes, {spec.decoder} decoder)")
    return 0
