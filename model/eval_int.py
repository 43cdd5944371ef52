"""``iseg eval CKPT_OR_FP --data SRC``: FP32, fake-quant and integer accuracy, and model sizes.

Given an FP model, three rows: the FP32 model as configured (its own upsampling and L2 switch),
the fake-quantized I-Segmenter (PTQ ranges from ``--calib``) and the integer model exported from
those ranges, run by the numpy reference (``--engine torch`` runs the bit-identical PyTorch
integer mode, batched, instead). Given a quantized checkpoint, the integer row only. Metrics are
those of :mod:`iseg.model.eval` (mIoU, per-class IoU, pixel accuracy) so every level is scored
the same way. ``--json`` prints ONE JSON object (NaN as null) and nothing else.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from typing import Any

import numpy as np

from iseg import cli
from iseg.checkpoint import META_KEY, QuantizedCheckpoint, load
from iseg.errors import IsegError

from .eval import IGNORE_INDEX, confusion, metrics

__all__ = ["add_arguments", "eval_fp32", "eval_fake", "eval_int", "fp32_bytes", "is_quantized", "run"]


def is_quantized(path: str) -> bool:
    """True for an ``iseg quantize`` checkpoint (safetensors with the integer metadata)."""
    if not str(path).endswith(".safetensors") or not os.path.isfile(path):
        return False
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="numpy") as fh:
            return META_KEY in (fh.metadata() or {})
    except Exception:  # not a readable safetensors: let the model loader name the problem
        return False


def _score(pred: np.ndarray, labels: np.ndarray, n_cls: int) -> dict[str, Any]:
    return metrics(confusion(pred, labels, n_cls))


def eval_fp32(fp: Any, images: np.ndarray, labels: np.ndarray, batch_size: int = 32) -> dict[str, Any]:
    """The FP model exactly as configured (normalised input, its own upsampling)."""
    import torch

    fp.eval()
    preds = []
    with torch.no_grad():
        for i in range(0, len(images), batch_size):
            px = torch.from_numpy(np.ascontiguousarray(images[i:i + batch_size])).permute(0, 3, 1, 2)
            preds.append(fp(fp.normalize(px)).argmax(1).numpy())
    return _score(np.concatenate(preds), labels, fp.n_cls)


def eval_fake(qm: Any, images: np.ndarray, labels: np.ndarray, batch_size: int = 32) -> dict[str, Any]:
    """A :class:`QuantSegmenter` in its current mode (fake or float), labels upsampled nearest."""
    qm.eval()
    pred = np.concatenate([qm.predict(images[i:i + batch_size]) for i in range(0, len(images), batch_size)])
    return _score(pred, labels, qm.cfg.n_cls)


def eval_int(ckpt: QuantizedCheckpoint, images: np.ndarray, labels: np.ndarray, engine: str = "numpy",
             batch_size: int = 32) -> dict[str, Any]:
    """The integer model: numpy reference image by image, or the PyTorch integer mode batched."""
    if engine == "torch":
        from .quant import IntSegmenter

        model = IntSegmenter(ckpt)
        pred = np.concatenate([model(images[i:i + batch_size])[0].numpy() for i in range(0, len(images), batch_size)])
    else:
        from iseg.graph import build_graph
        from iseg.reference import run as ref_run

        g = build_graph(ckpt.spec)
        pred = np.stack([ref_run(ckpt, img, graph=g)[0] for img in images])
    return _score(pred, labels, ckpt.spec.n_cls)


def fp32_bytes(fp: Any) -> int:
    """Bytes of the float32 parameters inference uses (the unused ImageNet head excluded)."""
    return int(sum(p.numel() * 4 for n, p in fp.named_parameters() if not n.startswith("encoder.head")))


def _clean(x: Any) -> Any:
    if isinstance(x, float):
        return None if math.isnan(x) else x
    if isinstance(x, dict):
        return {k: _clean(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_clean(v) for v in x]
    return x


def _row(m: dict[str, Any]) -> dict[str, Any]:
    return {"miou": m["miou"], "pixel_acc": m["pixel_acc"], "iou": m["iou"]}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``iseg eval CKPT_OR_FP``."""
    from .calibrate import add_quant_options

    parser.add_argument("model", help="quantized checkpoint, or FP model (.safetensors / Segmenter checkpoint)")
    parser.add_argument("--data", default="synthetic:val:100",
                        help="synthetic:val[:N] (default synthetic:val:100) or a dataset folder[:N]")
    parser.add_argument("--calib", default=None,
                        help="PTQ calibration images for an FP model (default synthetic:32)")
    parser.add_argument("--engine", choices=("numpy", "torch"), default="numpy",
                        help="integer engine: the numpy reference (default) or the bit-identical torch integer mode")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    add_quant_options(parser)
    # unset unless given: a quantized checkpoint's own operators are then not mistaken for a request (_fixed)
    parser.set_defaults(softmax=None, gelu=None)


def _fixed(args: argparse.Namespace, ckpt: QuantizedCheckpoint) -> None:
    """Refuse the FP-model options on a quantized checkpoint: its operators and ranges are fixed, so they were
    ignored and the table read as the variant asked for (``--softmax ivit`` scored the precise model)."""
    # λ and the calibration source as its provenance records them (info): the same value restates the checkpoint
    # (docs/quantization.md: refused only when "other than what it holds"); unrecorded, any value is refused
    own = {"softmax": ckpt.spec.softmax, "gelu": ckpt.spec.gelu, "lam": ckpt.info.get("gelu_lambda"),
           "calib": ckpt.info.get("calib")}
    asked = [f"--{k} {getattr(args, k)}" for k in ("softmax", "gelu", "lam", "calib")
             if getattr(args, k) is not None and getattr(args, k) != own.get(k)]
    if asked:
        raise IsegError(f"{args.model}: a quantized checkpoint ({ckpt.spec.softmax} Shiftmax, {ckpt.spec.gelu} GELU, "
                        f"ranges fixed): {', '.join(asked)} applies to an FP model only")


def run(args: argparse.Namespace) -> int:
    """``iseg eval``: prints a table (or one JSON object with ``--json``)."""
    from .calibrate import apply_threads, load_data

    apply_threads(args)

    doc: dict[str, Any] = {"model": str(args.model), "data": args.data}
    if is_quantized(args.model):
        ckpt = load(args.model)
        _fixed(args, ckpt)
        images, labels = load_data(args.data, ckpt.spec.image, "val", data_seed=args.data_seed)
        doc["images"] = int(len(images))
        doc["int"] = _row(eval_int(ckpt, images, labels, args.engine))
        doc["sizes"] = {"int_bytes": ckpt.n_bytes}
        names = ckpt.spec.class_names
    else:
        from .calibrate import calibrate
        from .export import export
        from .loaders import load_model
        from .quant import QuantSegmenter

        fp = load_model(args.model)
        size = fp.cfg.image_size
        images, labels = load_data(args.data, size, "val", data_seed=args.data_seed)
        calib_src = args.calib or "synthetic:32"
        calib, _ = load_data(calib_src, size, "train", data_seed=args.data_seed)
        lam = float(fp.cfg.gelu_lambda if args.lam is None else args.lam)
        qm = calibrate(QuantSegmenter(fp, gelu=args.gelu or "lambda", lam=lam, softmax=args.softmax or "precise"),
                       calib)
        try:
            ckpt = export(qm, {"method": "ptq", "calib": calib_src})
        except ValueError as exc:  # a scale no int32 requant can hold (nx.dyadic): the weights are far out of range
            raise IsegError(f"{args.model}: cannot be exported as integers ({exc})") from None
        doc["images"] = int(len(images))
        doc["fp32"] = _row(eval_fp32(fp, images, labels))
        doc["fake_quant"] = _row(eval_fake(qm, images, labels))
        doc["int"] = _row(eval_int(ckpt, images, labels, args.engine))
        doc["sizes"] = {"fp32_bytes": fp32_bytes(fp), "int_bytes": ckpt.n_bytes,
                        "ratio": fp32_bytes(fp) / ckpt.n_bytes}
        names = fp.cfg.class_names or ckpt.spec.class_names
    doc["class_names"] = list(names)
    n_cls = len(doc["int"]["iou"])
    stray = int(((labels != IGNORE_INDEX) & ((labels < 0) | (labels >= n_cls))).sum())
    doc["skipped_pixels"] = stray  # mmsegmentation skips them; a user with 1-based labels must hear of it
    if args.json:
        print(json.dumps(_clean(doc), sort_keys=True))
        return 0
    print(f"{doc['model']} on {doc['data']} ({doc['images']} images)")
    for key in ("fp32", "fake_quant", "int"):
        if key in doc:
            r = doc[key]
            print(f"  {key:<11} mIoU {100 * r['miou']:6.2f} %   pixel acc {100 * r['pixel_acc']:6.2f} %")
    for key in ("fp32", "fake_quant", "int"):
        if key in doc:
            cells = " ".join("   n/a" if math.isnan(v) else f"{100 * v:6.2f}" for v in doc[key]["iou"])
            print(f"  IoU {key:<11} {cells}")
    print("  classes         " + " ".join(f"{n[:6]:>6}" for n in names))
    s = doc["sizes"]
    line = f"  sizes: int {s['int_bytes']} bytes"
    if "fp32_bytes" in s:
        line += f", fp32 {s['fp32_bytes']} bytes, ratio {s['ratio']:.2f}"
    print(line)
    if stray:
        print(f"  note: {stray:,} ground-truth pixels ({100 * stray / labels.size:.2f} %) hold classes outside "
              f"0..{n_cls - 1} (not the ignore value {IGNORE_INDEX}) and were skipped")
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m iseg.model.eval_int ...``: the same as ``iseg eval ...``."""
    return cli.command("eval", argv)


if __name__ == "__main__":
    sys.exit(main())
