"""Post-training quantization: ranges from N calibration images, then export (``iseg quantize``).

``calibrate`` runs the float I-Segmenter graph (:class:`QuantSegmenter` in ``calib`` mode) over
the images and records ``max |x|`` of every quantized activation (min/max over the images,
``spec/numerics.md`` §7; N = 1 is one-shot PTQ). Calibration images come from the synthetic
*train* split by default, never from the split that is evaluated.

Data sources (shared with ``iseg eval`` and ``iseg qat``):
``synthetic:N`` (N train scenes), ``synthetic:val:N`` / ``synthetic:train:N``, or a dataset
folder (``plain`` or ADE20K layout, resized to the model's size; ``DIR:N`` keeps the first N).
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from pathlib import Path

import numpy as np
import torch

from iseg import cli, synth
from iseg import numerics as nx
from iseg.checkpoint import save
from iseg.errors import IsegError

from .quant import QuantSegmenter

__all__ = ["add_arguments", "add_threads_option", "apply_threads", "calibrate", "load_data", "quantize", "run"]


def load_data(source: str, size: tuple[int, int], split: str = "train", count: int | None = None,
              data_seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Images (N, H, W, 3) u8 and labels (N, H, W) u8 at ``size`` from ``source`` (see module doc)."""
    parts = source.split(":")
    n = count
    if parts[0] in ("synthetic", "synth"):
        rest = parts[1:]
        if rest and rest[0] in ("train", "val"):
            split, rest = rest[0], rest[1:]
        if rest:
            n = _count(rest[0], source)
        if len(rest) > 1:
            raise IsegError(f"bad data source {source!r}: expected synthetic[:train|val][:N]")
        n = 100 if n is None else n
        _check_fits(n, size, source)
        samples = [synth.make_sample(synth.sample_seed(split, data_seed, i), size) for i in range(n)]
    else:
        path = source
        if len(parts) > 1 and parts[-1].isdigit() and not Path(source).exists():
            path, n = ":".join(parts[:-1]), _count(parts[-1], source)
        if not os.path.isdir(path):
            raise IsegError(f"data source {source!r} is neither synthetic[:train|val][:N] nor a dataset folder")
        from .data import FolderDataset

        ade = os.path.isdir(os.path.join(path, "annotations"))
        ds = FolderDataset(path, split if ade else None, size=size, limit=n)
        _check_fits(len(ds), size, source)  # listed, not decoded yet: refuse what cannot be stacked in memory
        samples = [ds.sample(i) for i in range(len(ds))]
    if not samples:
        raise IsegError(f"data source {source!r} holds no images")
    return np.stack([s[0] for s in samples]), np.stack([s[1] for s in samples])


def _check_fits(n: int, size: tuple[int, int], source: str) -> None:
    """Refuse N images that cannot be held in memory (synthetic:99999999999 ran until it was killed)."""
    need = n * size[0] * size[1] * 4  # u8 RGB + u8 labels, held together
    try:
        have = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return
    if need > have:
        raise IsegError(f"bad data source {source!r}: {n:,} images of {size[0]}x{size[1]} need {need / 2**30:,.1f} GiB "
                        f"in memory, this machine has {have / 2**30:,.1f} GiB; use fewer")


def _count(text: str, source: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise IsegError(f"bad data source {source!r}: {text!r} is not an image count") from None
    if n < 1:
        raise IsegError(f"bad data source {source!r}: the image count must be >= 1")
    return n


def to_pixels(images: np.ndarray) -> torch.Tensor:
    """(N, H, W, 3) u8 -> (N, 3, H, W) float pixel values 0..255 (what QuantSegmenter takes)."""
    return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float()


@torch.no_grad()
def calibrate(qm: QuantSegmenter, images: np.ndarray, batch_size: int = 16) -> QuantSegmenter:
    """Record activation ranges (running max of |x|) over ``images``; resets earlier ranges."""
    qm.eval()
    for a in qm.acts.values():
        a.amax.zero_()  # type: ignore[union-attr]
    qm.set_mode("calib")
    for i in range(0, len(images), batch_size):
        qm(to_pixels(images[i:i + batch_size]))
    return qm.set_mode("fake")


def quantize(fp: torch.nn.Module, images: np.ndarray, softmax: str = "precise", gelu: str = "lambda",
             lam: float | None = None, info: dict | None = None):  # -> QuantizedCheckpoint
    """One call PTQ: wrap, calibrate on ``images``, export. ``lam`` defaults to the model's λ."""
    from .export import export

    lam = float(fp.cfg.gelu_lambda if lam is None else lam)
    qm = QuantSegmenter(fp, gelu=gelu, lam=lam, softmax=softmax)
    calibrate(qm, images)
    meta = {"method": "ptq", "calib_images": int(len(images))}
    meta.update(info or {})
    return export(qm, meta)


# ----------------------------------------------------------------------------------------------
# command line: iseg quantize
def add_quant_options(parser: argparse.ArgumentParser) -> None:
    """Options shared by ``quantize`` and ``qat``: the integer operator variants."""
    parser.add_argument("--softmax", choices=tuple(nx.SHIFTMAX_VARIANTS), default="precise",
                        help="Shiftmax variant (default precise; precise8: u8 mantissas under a per-row shift, "
                             "P·V packs 2 per DSP)")
    parser.add_argument("--gelu", choices=("lambda", "shift"), default="lambda",
                        help="integer GELU: λ-ShiftGELU (default) or I-ViT ShiftGELU")
    parser.add_argument("--lam", type=lam_arg, default=None,
                        help="λ of λ-ShiftGELU, > 0 and at most ~4.07 (n = 20 headroom bits) (default: the model's)")
    parser.add_argument("--data-seed", type=cli.int_arg("--data-seed", 0, cli.SEED_MAX), default=0,
                        help="synthetic data seed (default 0)")
    add_threads_option(parser)


def add_threads_option(parser: argparse.ArgumentParser) -> None:
    """``--threads`` of every torch command (train, quantize, qat, eval): one bound, one message."""
    parser.add_argument("--threads", type=cli.int_arg("--threads", 1, 1024), default=None,
                        help="torch CPU threads (default: torch's, one per core; 1 on a machine other jobs share, "
                             "where more can be many times slower; the float sums, so the result, may depend on it)")


def apply_threads(args: argparse.Namespace) -> None:
    """Sets ``--threads`` (add_threads_option) before any torch work: torch fixes its pool on first use."""
    if getattr(args, "threads", None) is not None:
        torch.set_num_threads(args.threads)


def check_model_lam(fp: torch.nn.Module, gelu: str, lam: float | None, model: str) -> None:
    """Without --lam the FP model's own λ is the one exported: checked here, before the calibration or the QAT
    steps (it was checked only by the export, after all the work, in a line that did not point to --lam)."""
    if gelu != "lambda" or lam is not None:
        return
    own = float(fp.cfg.gelu_lambda)
    try:
        nx.gelu_consts(1.0, "lambda", lam=own)
    except ValueError as exc:
        raise IsegError(f"{model}: its GELU λ {own:g} cannot be exported ({exc}): give --lam") from None


def lam_arg(text: str) -> float:
    """``--lam``: a finite λ > 0 that λ-ShiftGELU accepts (``2·λ·1.702·log2(e) <= n``, numerics.md §5.2).

    Checked while parsing, so a NaN is not discovered after calibration as a misleading
    "no recorded range", and a λ the exp cannot hold is refused before any image is loaded.
    """
    try:
        lam = float(text)
    except ValueError:
        raise IsegError(f"--lam must be a number, got {text!r}") from None
    if not math.isfinite(lam) or lam <= 0:
        raise IsegError(f"--lam must be a finite number > 0, got {text!r}")
    try:
        nx.gelu_consts(1.0, "lambda", lam=lam)  # the one place that knows the bound
    except ValueError as exc:
        raise IsegError(f"--lam {text}: {exc}") from None
    return lam


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``iseg quantize FP_MODEL --calib SRC --out CKPT``."""
    parser.add_argument("model", help="FP model (.safetensors of `iseg train`, or a Segmenter checkpoint)")
    parser.add_argument("--calib", default="synthetic:32",
                        help="calibration images: synthetic[:train|val]:N or a dataset folder[:N] "
                             "(default synthetic:32)")
    parser.add_argument("--out", required=True, help="quantized checkpoint to write (.safetensors)")
    add_quant_options(parser)


def run(args: argparse.Namespace) -> int:
    """``iseg quantize``: PTQ from N images; prints one summary line."""
    from iseg.imageio import check_output_file

    from .export import clipped_warning
    from .loaders import load_model

    apply_threads(args)
    out = check_output_file(args.out, "--out")  # before minutes of calibration, not after
    if out.resolve() == Path(args.model).resolve():
        raise IsegError(f"--out {args.out}: is the FP model being quantized (it would be replaced)")
    fp = load_model(args.model)
    check_model_lam(fp, args.gelu, args.lam, args.model)
    fp.eval()
    images, _ = load_data(args.calib, fp.cfg.image_size, "train", data_seed=args.data_seed)
    try:
        ckpt = quantize(fp, images, args.softmax, args.gelu, args.lam,
                        info={"fp_model": os.path.basename(str(args.model)), "calib": args.calib})
    except ValueError as exc:  # a scale no int32 requant can hold (nx.dyadic): the weights are far out of range
        raise IsegError(f"{args.model}: cannot be exported as integers ({exc})") from None
    save(ckpt, out)
    print(f"wrote {args.out}: {ckpt.n_bytes} bytes of integer tensors, calibrated on {len(images)} image(s) "
          f"({ckpt.spec.softmax} Shiftmax, {ckpt.spec.gelu} GELU)")
    warning = clipped_warning(ckpt)
    if warning:
        print(f"iseg quantize: {warning}", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m iseg.model.calibrate ...``: the same as ``iseg quantize ...``."""
    return cli.command("quantize", argv)


if __name__ == "__main__":
    sys.exit(main())
