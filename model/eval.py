"""Segmentation metrics (pure numpy) and the evaluation of the floating-point model.

:func:`confusion` and :func:`metrics` take label arrays only, so the integer evaluation (numpy
reference, C-simulation, board) reuses them unchanged: every level is scored the same way.
Conventions (those of mmsegmentation): pixels whose ground truth is the ignore value (255) or
outside ``0..n_cls-1`` are skipped; a class absent from both prediction and ground truth has
IoU ``nan`` and is left out of the mean.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import numpy as np

from iseg.errors import IsegError

__all__ = ["confusion", "evaluate_fp", "format_metrics", "metrics"]

IGNORE_INDEX = 255


def confusion(pred: np.ndarray, gt: np.ndarray, n_cls: int) -> np.ndarray:
    """Confusion matrix ``conf[g, p]`` (int64, (n_cls, n_cls)): pixels of true class g predicted p.

    ``pred`` and ``gt`` are integer arrays of the same shape (any number of images).
    """
    pred = np.asarray(pred)
    gt = np.asarray(gt)
    if pred.shape != gt.shape:
        raise IsegError(f"prediction shape {pred.shape} differs from ground truth {gt.shape}")
    gt = gt.astype(np.int64).ravel()
    pred = pred.astype(np.int64).ravel()
    keep = (gt >= 0) & (gt < n_cls)
    gt, pred = gt[keep], pred[keep]
    if pred.size and (pred.min() < 0 or pred.max() >= n_cls):
        raise IsegError(f"prediction holds class {int(pred.max())} outside 0..{n_cls - 1}")
    return np.bincount(gt * n_cls + pred, minlength=n_cls * n_cls).reshape(n_cls, n_cls)


def metrics(conf: np.ndarray) -> dict[str, Any]:
    """mIoU, per-class IoU, pixel accuracy, mean class accuracy from a confusion matrix.

    Returns ``{"miou", "pixel_acc", "mean_acc": float, "iou", "acc": list[float], "pixels": int}``;
    per-class values are ``nan`` where undefined (union resp. ground truth empty).
    """
    conf = np.asarray(conf, dtype=np.float64)
    tp = np.diag(conf)
    gt_count = conf.sum(axis=1)
    union = gt_count + conf.sum(axis=0) - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.where(union > 0, tp / union, np.nan)
        acc = np.where(gt_count > 0, tp / gt_count, np.nan)
    total = conf.sum()
    nanmean = lambda a: float(np.nanmean(a)) if np.isfinite(a).any() else math.nan  # noqa: E731
    return {
        "miou": nanmean(iou),
        "pixel_acc": float(tp.sum() / total) if total else math.nan,
        "mean_acc": nanmean(acc),
        "iou": [float(v) for v in iou],
        "acc": [float(v) for v in acc],
        "pixels": int(total),
    }


def format_metrics(m: dict[str, Any], class_names: Iterable[str] = ()) -> str:
    """Human-readable summary: one headline line, then one line per class."""
    names = list(class_names)
    lines = [
        f"mIoU {100 * m['miou']:.2f} %  pixel acc {100 * m['pixel_acc']:.2f} %  "
        f"mean acc {100 * m['mean_acc']:.2f} %  ({m['pixels']} pixels)"
    ]
    for c, v in enumerate(m["iou"]):
        name = names[c] if c < len(names) else f"class {c}"
        lines.append(f"  {c:3d} {name:<16s} IoU {'   n/a' if math.isnan(v) else f'{100 * v:6.2f}'}")
    return "\n".join(lines)


def evaluate_fp(model: Any, dataset: Any, batch_size: int = 16, progress: bool = False) -> dict[str, Any]:
    """Metrics of a float :class:`~iseg.model.segmenter.Segmenter` over a dataset of (u8 image, labels).

    Same-size samples are batched; the model pads non-multiples of P itself.
    """
    import torch
    from tqdm import tqdm

    model.eval()
    n_cls = model.n_cls
    conf = np.zeros((n_cls, n_cls), np.int64)
    idx = list(range(len(dataset)))
    batches = [idx[i : i + batch_size] for i in range(0, len(idx), batch_size)]
    with torch.no_grad():
        for batch in tqdm(batches, desc="eval", disable=not progress, leave=False):
            items = [dataset[i] for i in batch]
            groups: dict[tuple[int, ...], list[tuple[Any, Any]]] = {}
            for img, lab in items:
                groups.setdefault(tuple(img.shape), []).append((img, lab))
            for group in groups.values():
                imgs = torch.stack([g[0] for g in group])
                labs = torch.stack([g[1] for g in group])
                pred = model(model.normalize(imgs)).argmax(1)
                conf += confusion(pred.numpy(), labs.numpy(), n_cls)
    return metrics(conf)
