"""The numpy-only sub-commands of ``iseg``: info, infer, random."""

from __future__ import annotations

import argparse
import json
import sys
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


def output_names(paths: list[Path], overlay: bool, out: Path | None = None) -> list[Path]:
    """The inputs, one per output name; IsegError when two different files would write the same one.

    Outputs are named after the input's stem, so ``a/x.png`` and ``b/x.png`` (or ``x.png`` and
    ``x.jpg``) would silently share ``x.png``: the second would be skipped as "already present"
    or overwrite the first. The same file named twice is kept once. With ``out``, an output that
    would replace one of the inputs (``--out`` = the input folder) is refused too.
    """
    inputs = {p.resolve(): p for p in paths}
    owner: dict[str, Path] = {}
    kept: list[Path] = []
    seen: set[Path] = set()
    for path in paths:
        real = path.resolve()
        if real in seen:
            continue
        seen.add(real)
        names = [f"{path.stem}.png"] + ([f"{path.stem}_overlay.png"] if overlay else [])
        for name in names:
            if name in owner:
                raise IsegError(f"{owner[name]} and {path} would both be written as {name}: rename one, "
                                f"or label them into different --out folders")
            owner[name] = path
            if out is not None and (out / name).resolve() in inputs:
                raise IsegError(f"--out {out}: {name} would replace the input {inputs[(out / name).resolve()]}")
        kept.append(path)
    return kept


def run_infer(args: argparse.Namespace) -> int:
    """Label images with the numpy reference: the same image reading and label PNGs as ``iseg-host``.

    Everything that can be checked is checked before the first image is labelled (checkpoint,
    inputs, output folder, output-name clashes). An unreadable image is skipped with a line on
    stderr; the others are still labelled, and the exit status is then 1 so a script notices.
    """
    from PIL import Image

    from iseg import imageio, reference
    from iseg.graph import build_graph

    out = imageio.check_output_dir(args.out, "--out")
    q = ck.load(args.checkpoint)
    paths = output_names(imageio.list_images(args.inputs), args.overlay, out)
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
            print(f"iseg: skipped: {exc}", file=sys.stderr)
            failed += 1
            continue
        labels, _ = reference.run(q, imageio.fit_to_model(image, q.spec.image), graph=graph)
        labels = imageio.resize_nearest(labels, image.shape[:2])
        try:
            imageio.save_labels_png(dest, labels, q.spec.class_colors)
            if args.overlay:
                blend = Image.fromarray((0.5 * image + 0.5 * colors[labels]).astype(np.uint8))
                imageio.atomic_write(out / f"{path.stem}_overlay.png",
                                     lambda tmp, im=blend: im.save(tmp, format="PNG"))
        except OSError as exc:
            raise IsegError(f"{dest}: cannot write ({exc.strerror or exc}); {done} image(s) were labelled") from None
        done += 1
    dt = time.perf_counter() - t0
    tail = f"{failed} unreadable (skipped, exit status 1)" if failed else "0 unreadable"
    print(f"iseg infer: {done} labelled, {skipped} already present (use --overwrite), {tail}; "
          f"{dt / max(done, 1):.2f} s per image -> {out}")
    return 1 if failed else 0


# --------------------------------------------------------------------------------------------
# iseg random
# --------------------------------------------------------------------------------------------
def add_random_arguments(p: argparse.ArgumentParser) -> None:
    from iseg.cli import SEED_MAX, int_arg
    from iseg.random_model import MAX_DIM, MAX_LAYERS, MAX_PATCH, PRESETS

    p.add_argument("--preset", choices=sorted(PRESETS), help="start from a preset shape")
    p.add_argument("--out", required=True, help="output .safetensors file")
    p.add_argument("--dim", type=int_arg("--dim", 1, MAX_DIM), help=f"encoder width (1..{MAX_DIM})")
    p.add_argument("--heads", type=int_arg("--heads", 1, MAX_DIM))
    p.add_argument("--layers", type=int_arg("--layers", 1, MAX_LAYERS), help=f"encoder layers (1..{MAX_LAYERS})")
    p.add_argument("--mlp-ratio", type=int_arg("--mlp-ratio", 1, 64), help="MLP hidden size = ratio * dim (default 4)")
    p.add_argument("--image", help="H or HxW, multiples of the patch (at most 4096 patches)")
    p.add_argument("--patch", type=int_arg("--patch", 1, MAX_PATCH))
    p.add_argument("--classes", type=int_arg("--classes", 1, 256))
    p.add_argument("--decoder", choices=ck.DECODERS)
    p.add_argument("--dec-dim", type=int_arg("--dec-dim", 1, MAX_DIM), help="mask decoder width (default: dim)")
    p.add_argument("--dec-heads", type=int_arg("--dec-heads", 1, MAX_DIM), help="mask decoder heads (default: heads)")
    p.add_argument("--softmax", choices=ck.SOFTMAX_VARIANTS)
    p.add_argument("--gelu", choices=ck.GELU_VARIANTS)
    p.add_argument("--seed", type=int_arg("--seed", 0, SEED_MAX), default=0)


def spec_from_args(args: argparse.Namespace) -> ck.ModelSpec:
    from iseg.random_model import PRESETS, parse_hw

    spec = PRESETS[args.preset or "tiny"]
    kw: dict = {}
    for a, f in (("dim", "dim"), ("heads", "heads"), ("layers", "layers"), ("patch", "patch"),
                 ("classes", "n_cls"), ("decoder", "decoder"), ("softmax", "softmax"), ("gelu", "gelu")):
        v = getattr(args, a)
        if v is not None:
            kw[f] = v
    if args.image is not None:  # '' is refused by parse_hw, not taken for "the preset's"
        kw["image"] = parse_hw(args.image)
    spec = replace(spec, **kw)
    if spec.decoder != "mask":
        given = [f for f, v in (("--dec-dim", args.dec_dim), ("--dec-heads", args.dec_heads)) if v is not None]
        if given:  # silently dropped, a user would believe the flag shaped the model
            raise IsegError(f"{given[0]}: the {spec.decoder} decoder has no mask transformer to shape "
                            "(give --decoder mask, or drop the flag)")
    # `is None`, not `or`: an explicit 0 is refused by the flag's type, never replaced by a default
    ratio = args.mlp_ratio if args.mlp_ratio is not None else spec.mlp_dim // PRESETS[args.preset or "tiny"].dim
    dec_dim = args.dec_dim if args.dec_dim is not None else (spec.dim if args.dim else spec.dec_dim)
    dec_heads = args.dec_heads if args.dec_heads is not None else (spec.heads if args.heads else spec.dec_heads)
    spec = replace(spec, mlp_dim=ratio * spec.dim, dec_dim=dec_dim, dec_heads=dec_heads,
                   dec_mlp_dim=ratio * dec_dim, class_names=(), class_colors=())
    return spec


def run_random(args: argparse.Namespace) -> int:
    from iseg.imageio import check_output_file
    from iseg.random_model import check_size, random_checkpoint, with_classes

    out = check_output_file(args.out, "--out")
    spec = with_classes(spec_from_args(args))
    spec.validate()
    check_size(spec)
    try:
        q = random_checkpoint(spec, seed=args.seed)
    except MemoryError:
        raise IsegError(f"not enough memory to build a {spec.dim}-wide, {spec.layers}-layer model at "
                        f"{spec.image[0]}x{spec.image[1]}; choose a smaller shape") from None
    ck.save(q, out)
    print(f"iseg random: wrote {args.out} ({q.n_params:,} parameters, {spec.image[0]}x{spec.image[1]}, "
          f"{spec.n_cls} classes, {spec.decoder} decoder)")
    return 0
