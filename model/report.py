"""Quantization report: the accuracy targets and the operator ablation, measured in one run.

With fixed seeds on the synthetic val split: FP32 mIoU; the mIoU drop of the integer model after
one-shot PTQ (1 calibration image), PTQ on 32 images and QAT, each measured twice: from the FP32
model as configured (``drop_*``, the issue's figure; bilinear logit upsampling for the built-in
model) and from the float I-Segmenter graph of the same weights (``qdrop_*``: argmax on the patch
grid + nearest label replication, the pure quantization cost); the FP32/int size ratio; then an
ablation (integer mIoU after PTQ-32 unless marked float): ShiftGELU vs λ-ShiftGELU for λ in
3, 4, 6, 8; every Shiftmax variant of ``iseg.numerics.SHIFTMAX_VARIANTS`` (``precise``, ``ivit``,
``precise8``, ...); decoder L2 norm kept vs removed (float); bilinear vs nearest upsampling (float).
λ = 6 and 8 have no integer form under ``spec/numerics.md`` §5.2
(``2·λ·1.702·log2(e) <= n`` needs n >= 29.5 / 39.3, and ``|x0|·2^n`` then overflows the int32
sigmoid sum): their integer cell says so and their fake-quant figure is given.

The integer rows run the PyTorch integer mode (bit-identical to the numpy reference, tested
layer by layer in ``tests/model/test_quant_exact.py``) because it batches.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

from iseg import numerics as nx
from iseg.errors import IsegError

from .calibrate import calibrate, load_data
from .eval_int import eval_fake, eval_fp32, eval_int, fp32_bytes
from .export import export
from .qat import QatConfig, qat
from .quant import QuantSegmenter

__all__ = ["TARGETS", "ablation", "add_arguments", "format_report", "main", "markdown", "measure", "run"]

#: (key, comparison, threshold) of the issue's targets; drops in mIoU points.
TARGETS: tuple[tuple[str, str, float], ...] = (
    ("fp32_miou", ">=", 85.0),
    ("drop_ptq1", "<=", 3.0),
    ("drop_ptq32", "<=", 1.5),
    ("drop_qat", "<=", 0.5),
    ("size_ratio", ">=", 3.8),
)


def _pct(m: dict[str, Any]) -> float:
    return 100.0 * m["miou"]


def _int_miou(fp: Any, calib: np.ndarray, images: np.ndarray, labels: np.ndarray, softmax: str = "precise",
              gelu: str = "lambda", lam: float = 4.0) -> tuple[float, float, Any]:
    """(integer mIoU, fake-quant mIoU, checkpoint) of PTQ on ``calib``; int is NaN when not realisable."""
    qm = calibrate(QuantSegmenter(fp, gelu=gelu, lam=lam, softmax=softmax), calib)
    fake = _pct(eval_fake(qm, images, labels))
    try:
        ckpt = export(qm, {"method": "ptq", "calib_images": len(calib)})
    except IsegError:
        return math.nan, fake, None
    return _pct(eval_int(ckpt, images, labels, engine="torch")), fake, ckpt


def measure(fp: Any, n_val: int = 200, qat_steps: int = 300, data_seed: int = 0, seed: int = 0,
            log: Any = print, softmax: str = "precise") -> dict[str, Any]:
    """The target figures (percent / points) and the QAT model's checkpoint under ``'_qat_ckpt'``."""
    fp.eval()
    size = fp.cfg.image_size
    lam = float(fp.cfg.gelu_lambda)
    images, labels = load_data(f"synthetic:val:{n_val}", size, "val", data_seed=data_seed)
    calib, _ = load_data("synthetic:train:32", size, "train", data_seed=data_seed)
    out: dict[str, Any] = {"n_val": n_val, "data_seed": data_seed, "qat_steps": qat_steps, "lambda": lam,
                           "softmax": softmax,
                           "upsample": fp.cfg.upsample, "l2norm": fp.cfg.l2norm, "patch": fp.cfg.patch_size,
                           "image_size": list(size)}
    out["fp32_miou"] = _pct(eval_fp32(fp, images, labels))
    # the float I-Segmenter graph of the same weights (nearest labels, no L2): what quantization starts from
    out["fp32_iseg_miou"] = _pct(eval_fp32(_variant(fp, upsample="nearest", l2norm=False), images, labels))
    base = out["fp32_iseg_miou"]
    out["block_oracle_miou"] = block_oracle_miou(labels, fp.cfg.patch_size, fp.cfg.n_cls)
    log(f"FP32 mIoU {out['fp32_miou']:.2f} as configured, {base:.2f} as I-Segmenter (nearest, no L2)")
    m1, f1, _ = _int_miou(fp, calib[:1], images, labels, softmax=softmax, lam=lam)
    m32, f32, ck32 = _int_miou(fp, calib, images, labels, softmax=softmax, lam=lam)
    out.update(ptq1_miou=m1, ptq1_fake=f1, ptq32_miou=m32, ptq32_fake=f32)
    log(f"PTQ-1 int {m1:.2f} (fake {f1:.2f}); PTQ-32 int {m32:.2f} (fake {f32:.2f})")
    ft = copy.deepcopy(fp)
    qm = qat(ft, calib, QatConfig(steps=qat_steps, seed=seed, data_seed=data_seed), softmax=softmax,
             lam=lam, log=log)
    ckq = export(qm, {"method": "qat", "qat_steps": qat_steps, "calib_images": len(calib)})
    out["qat_miou"] = _pct(eval_int(ckq, images, labels, engine="torch"))
    out["qat_fake"] = _pct(eval_fake(qm, images, labels))
    log(f"QAT int {out['qat_miou']:.2f} (fake {out['qat_fake']:.2f})")
    # the issue's figures: drops from the FP32 model as configured (its own upsampling)
    out["drop_ptq1"] = out["fp32_miou"] - m1
    out["drop_ptq32"] = out["fp32_miou"] - m32
    out["drop_qat"] = out["fp32_miou"] - out["qat_miou"]
    # the pure quantization cost: drops from the float I-Segmenter graph of the same weights
    out["qdrop_ptq1"] = base - m1
    out["qdrop_ptq32"] = base - m32
    out["qdrop_qat"] = base - out["qat_miou"]
    out["fp32_bytes"], out["int_bytes"] = fp32_bytes(fp), ck32.n_bytes
    out["size_ratio"] = out["fp32_bytes"] / out["int_bytes"]
    out["targets"] = {k: _meets(out[k], op, t) for k, op, t in TARGETS}
    out["_ptq32_ckpt"], out["_qat_ckpt"] = ck32, ckq
    return out


def block_oracle_miou(labels: np.ndarray, p: int, n_cls: int) -> float:
    """mIoU of the best possible P×P-replicated labelling: each block gets its true majority class.

    The ceiling of any model whose labels are computed on the token grid and upsampled nearest.
    """
    n, h, w = labels.shape
    blocks = labels.reshape(n, h // p, p, w // p, p).transpose(0, 1, 3, 2, 4).reshape(-1, p * p).astype(np.int64)
    counts = np.zeros((blocks.shape[0], 256), np.int64)
    np.add.at(counts, (np.repeat(np.arange(blocks.shape[0]), p * p), blocks.ravel()), 1)
    counts[:, n_cls:] = 0  # ignore-labelled pixels vote for nothing
    major = counts.argmax(1).reshape(n, h // p, w // p)
    pred = np.repeat(np.repeat(major, p, 1), p, 2)
    from .eval import confusion, metrics

    return 100.0 * metrics(confusion(pred, labels, n_cls))["miou"]


def _meets(v: float, op: str, t: float) -> bool:
    return bool(v >= t) if op == ">=" else bool(v <= t)


def ablation(fp: Any, n_val: int = 200, data_seed: int = 0, log: Any = print) -> list[dict[str, Any]]:
    """Rows ``{group, variant, int, fake, float}`` (mIoU %, NaN where not applicable)."""
    fp.eval()
    size = fp.cfg.image_size
    images, labels = load_data(f"synthetic:val:{n_val}", size, "val", data_seed=data_seed)
    calib, _ = load_data("synthetic:train:32", size, "train", data_seed=data_seed)
    rows: list[dict[str, Any]] = []

    def add(group: str, variant: str, i: float = math.nan, f: float = math.nan, fl: float = math.nan,
            note: str = "") -> None:
        rows.append({"group": group, "variant": variant, "int": i, "fake": f, "float": fl, "note": note})
        log(f"{group:<10} {variant:<22} int {i:6.2f} fake {f:6.2f} float {fl:6.2f} {note}")

    i, f, _ = _int_miou(fp, calib, images, labels, gelu="shift")
    add("gelu", "ShiftGELU (I-ViT)", i, f)
    for lam in (3.0, 4.0, 6.0, 8.0):
        i, f, _ = _int_miou(fp, calib, images, labels, gelu="lambda", lam=lam)
        need = 2 * lam * 1.702 * math.log2(math.e)
        add("gelu", f"λ-ShiftGELU λ={lam:g}", i, f,
            note="" if not math.isnan(i) else f"no integer form: needs n >= {need:.1f} > 20")
    for sm in nx.SHIFTMAX_VARIANTS:  # every Shiftmax variant, so a new one shows up in the ablation
        i, f, _ = _int_miou(fp, calib, images, labels, softmax=sm, lam=float(fp.cfg.gelu_lambda))
        add("softmax", f"Shiftmax {sm}", i, f)
    for l2 in (True, False):
        add("decoder", f"L2 norm {'kept' if l2 else 'removed'}", fl=_pct(eval_fp32(_variant(fp, l2norm=l2), images,
                                                                                  labels)))
    for up in ("bilinear", "nearest"):
        add("upsample", up, fl=_pct(eval_fp32(_variant(fp, upsample=up), images, labels)))
    return rows


def _variant(fp: Any, **switches: Any) -> Any:
    """The same weights under other float switches (L2 norm, upsampling)."""
    from .segmenter import Segmenter

    m = Segmenter(fp.cfg.replace(**switches))
    m.load_state_dict(fp.state_dict())
    return m.eval()


def _f(v: float) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "n/a"
    text = f"{v:.2f}"
    return "0.00" if text == "-0.00" else text


def markdown(res: dict[str, Any], rows: list[dict[str, Any]], command: str) -> str:
    """The measured tables as markdown (what ``--write-docs`` puts into docs/quantization.md)."""
    lines = [f"Measured with `{command}` ({res['n_val']} synthetic val images, data seed {res['data_seed']}, "
             f"QAT {res['qat_steps']} steps).", "",
             f"| figure | vs FP32 as configured ({res['upsample']}): the issue's figure | "
             f"vs the same weights with nearest labels: quantization only | target | met |",
             "|---|---|---|---|---|"]
    names = {"fp32_miou": "FP32 mIoU (%)", "drop_ptq1": "one-shot PTQ drop (points)",
             "drop_ptq32": "PTQ-32 drop (points)", "drop_qat": "QAT drop (points)", "size_ratio": "size FP32 / int"}
    alt = {"fp32_miou": "fp32_iseg_miou", "drop_ptq1": "qdrop_ptq1", "drop_ptq32": "qdrop_ptq32",
           "drop_qat": "qdrop_qat", "size_ratio": "size_ratio"}
    for k, op, t in TARGETS:
        a = res.get(alt[k], math.nan)
        met = "yes" if res["targets"][k] else "NO"
        if k != "size_ratio" and _meets(a, op, t) != res["targets"][k]:
            met += f" ({'yes' if _meets(a, op, t) else 'NO'} for quantization only)"
        lines.append(f"| {names[k]} | {_f(res[k])} | {_f(a)} | {op} {t:g} | {met} |")
    lines += ["", f"The FP32 model scores {_f(res['fp32_miou'])} % as configured ({res['upsample']} logit "
                  f"upsampling, L2 {'on' if res['l2norm'] else 'off'}) and {_f(res['fp32_iseg_miou'])} % as the "
                  f"float I-Segmenter graph of the same weights (argmax on the patch grid, labels replicated "
                  f"P×P, decoder L2 norm removed), which is what the integer model computes. Ceiling of any "
                  f"P×P-replicated labelling of these images (true majority class per {res.get('patch', 'P')}×"
                  f"{res.get('patch', 'P')} block): {_f(res['block_oracle_miou'])} %.",
              "", f"Integer mIoU: one-shot PTQ {_f(res['ptq1_miou'])} %, PTQ-32 {_f(res['ptq32_miou'])} %, "
                  f"QAT {_f(res['qat_miou'])} % (fake-quant {_f(res['ptq1_fake'])} / {_f(res['ptq32_fake'])} / "
                  f"{_f(res['qat_fake'])} %); {res['fp32_bytes']} bytes FP32 vs {res['int_bytes']} bytes int.",
              "", "| ablation | variant | integer mIoU (%) | fake-quant mIoU (%) | float mIoU (%) | note |",
              "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['group']} | {r['variant']} | {_f(r['int'])} | {_f(r['fake'])} | {_f(r['float'])} | "
                     f"{r['note']} |")
    return "\n".join(lines) + "\n"


def format_report(res: dict[str, Any], rows: list[dict[str, Any]]) -> str:
    return markdown(res, rows, "iseg.model.report")


_BEGIN, _END = "<!-- report:begin -->", "<!-- report:end -->"


def write_docs(path: Path, text: str) -> None:
    """Replace the measured block of ``docs/quantization.md`` (between the report markers)."""
    doc = path.read_text(encoding="utf-8")
    if _BEGIN not in doc or _END not in doc:
        raise IsegError(f"{path} has no {_BEGIN} ... {_END} block to fill")
    head, rest = doc.split(_BEGIN, 1)
    _, tail = rest.split(_END, 1)
    path.write_text(f"{head}{_BEGIN}\n{text}{_END}{tail}", encoding="utf-8")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="FP model (.safetensors)")
    parser.add_argument("--val", type=int, default=200, help="synthetic val images (default 200)")
    parser.add_argument("--qat-steps", type=int, default=300)
    parser.add_argument("--data-seed", type=int, default=0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--softmax", choices=tuple(nx.SHIFTMAX_VARIANTS), default="precise",
                        help="Shiftmax variant of the PTQ and QAT models (default precise)")
    parser.add_argument("--no-ablation", action="store_true")
    parser.add_argument("--write-docs", default=None, help="fill the measured block of this markdown file")
    parser.add_argument("--export-qat", default=None, help="write the QAT integer checkpoint here")
    parser.add_argument("--export-ptq", default=None, help="write the PTQ-32 integer checkpoint here")
    parser.add_argument("--json", default=None, help="write all figures to this JSON file")


def run(args: argparse.Namespace) -> int:
    from iseg.checkpoint import save

    from .loaders import load_model

    if args.threads:
        torch.set_num_threads(args.threads)
    fp = load_model(args.model)
    res = measure(fp, args.val, args.qat_steps, args.data_seed, args.seed, softmax=args.softmax)
    rows = [] if args.no_ablation else ablation(fp, args.val, args.data_seed)
    if args.export_qat:
        save(res["_qat_ckpt"], args.export_qat)
    if args.export_ptq:
        save(res["_ptq32_ckpt"], args.export_ptq)
    command = "python benchmarks/quant_report.py " + " ".join(sys.argv[1:]) if sys.argv else "iseg.model.report"
    text = markdown(res, rows, command)
    print(text)
    if args.write_docs:
        write_docs(Path(args.write_docs), text)
    if args.json:
        public = {k: v for k, v in res.items() if not k.startswith("_")}
        Path(args.json).write_text(json.dumps({"targets": public, "ablation": rows}, indent=2, default=str))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="quant_report", description=__doc__.splitlines()[0])
    add_arguments(parser)
    try:
        return run(parser.parse_args(argv))
    except IsegError as exc:
        print(f"quant_report: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
