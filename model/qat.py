"""Quantization-aware fine-tuning (``iseg qat``), single process or DDP under ``torchrun``.

Start from PTQ ranges (calibration images), then train the FP parameters through the fake
quantizers of :class:`QuantSegmenter` (straight-through rounding, activation ranges following an
EMA with momentum 0.95) on the loss of what the integer model outputs: logits on the token grid,
upsampled nearest (labels are replicated P×P in hardware). The result is exported as an integer
checkpoint.

Distributed: ``torchrun --nproc_per_node 2 -m iseg.model.qat ...`` (or the ``iseg qat`` CLI under
torchrun) starts a gloo process group from the ``RANK``/``WORLD_SIZE`` environment. The global
batch of step s is the same as a single-process run's (:class:`BatchOrder`); rank r takes items
``r::world``, DDP averages the gradients and :class:`ActQuant` all-reduces the range maxima, so a
2-process run computes the single-process run up to float summation order. Rank 0 writes.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.utils.data import Dataset

from iseg import cli
from iseg.checkpoint import QuantizedCheckpoint, save
from iseg.errors import IsegError

from .calibrate import add_quant_options, apply_threads, calibrate, check_model_lam, load_data
from .data import BatchOrder, FolderDataset, SynthDataset, collate
from .quant import QuantSegmenter

__all__ = ["QatConfig", "add_arguments", "main", "qat", "run"]

IGNORE_INDEX = 255


@dataclass(frozen=True)
class QatConfig:
    """The fine-tuning schedule: short, cosine to zero, no weight decay.

    lr 2e-4: the EMA ranges (momentum 0.95 of batch maxima) are tighter than the min/max PTQ
    ranges they start from, and the weights must adapt to the extra clipping. On the built-in
    model (300 steps, 200 val images) lr 1e-5 / 5e-5 / 2e-4 gave integer mIoU 69.76 / 69.89 /
    70.16 % against 70.43 % for PTQ-32 (the candidates were compared on that val set).
    """

    steps: int = 300
    batch_size: int = 16
    lr: float = 2e-4
    seed: int = 0
    data_seed: int = 0
    train_count: int = 20000
    momentum: float = 0.95
    grad_clip: float = 1.0

    def lr_at(self, step: int) -> float:
        return self.lr * 0.5 * (1.0 + math.cos(math.pi * step / max(1, self.steps)))


def _world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def qat(fp: torch.nn.Module, calib_images: np.ndarray, cfg: QatConfig, softmax: str = "precise",
        gelu: str = "lambda", lam: float | None = None, log: Any = print,
        dataset: Dataset | None = None) -> QuantSegmenter:
    """Fine-tune ``fp`` in place through fake quantization; returns the trained QuantSegmenter.

    ``dataset``: the training batches' samples (``FolderDataset`` of a user's folder); None = ``cfg.train_count``
    synthetic train scenes. Under an initialised process group each rank trains its share of every global batch.
    """
    rank, world = _world()
    if cfg.batch_size % world:
        raise IsegError(f"--batch-size {cfg.batch_size} is not a multiple of the {world} processes")
    torch.manual_seed(cfg.seed)
    lam = float(fp.cfg.gelu_lambda if lam is None else lam)
    qm = QuantSegmenter(fp, gelu=gelu, lam=lam, softmax=softmax, momentum=cfg.momentum)
    calibrate(qm, calib_images)
    for name, p in fp.named_parameters():  # the unused classification head takes no part
        if name.startswith("encoder.head"):
            p.requires_grad_(False)
    params = [p for p in fp.parameters() if p.requires_grad]
    net: torch.nn.Module = qm
    if world > 1:
        net = torch.nn.parallel.DistributedDataParallel(qm, forward_sync_buffers=False)
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=0.0)
    ds = dataset if dataset is not None else SynthDataset("train", cfg.train_count, fp.cfg.image_size, cfg.data_seed)
    order = BatchOrder(len(ds), cfg.batch_size, cfg.seed)
    p = fp.cfg.patch_size
    qm.train()
    qm.set_mode("fake")
    for step in range(cfg.steps):
        for g in opt.param_groups:
            g["lr"] = cfg.lr_at(step)
        images, labels = collate(ds, order.batch(step)[rank::world])
        logits = net(images.float())
        logits = logits.repeat_interleave(p, 2).repeat_interleave(p, 3)
        loss = F.cross_entropy(logits, labels, ignore_index=IGNORE_INDEX)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
        opt.step()
        value = float(loss.detach())
        if world > 1:  # the global batch's loss (each process's mean over its own pixels, weighted by them), so
            # that the log is the batch's and every process sees the same divergence (one raising alone would leave
            # the others waiting in the next collective)
            n = float((labels != IGNORE_INDEX).sum())
            both = torch.tensor([value * n if n else 0.0, n], dtype=torch.float64)
            dist.all_reduce(both)
            value = float(both[0] / both[1]) if both[1] > 0 else value
        if not math.isfinite(value):
            raise IsegError(f"QAT diverged at step {step} (loss {value}): lower --lr")
        if rank == 0 and (step % 50 == 0 or step == cfg.steps - 1):
            log(f"qat step {step + 1}/{cfg.steps} loss {value:.4f}")
    qm.eval()
    return qm


# ----------------------------------------------------------------------------------------------
# command line: iseg qat
def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``iseg qat FP_MODEL --out CKPT``."""
    parser.add_argument("model", help="FP model (.safetensors of `iseg train`, or a Segmenter checkpoint)")
    parser.add_argument("--out", required=True, help="quantized checkpoint to write (.safetensors)")
    parser.add_argument("--calib", default="synthetic:32", help="images for the initial ranges (default synthetic:32)")
    parser.add_argument("--data", default="synthetic",
                        help="training batches: 'synthetic' (default: scenes of iseg.synth) or a plain / ADE20K-style "
                             "dataset folder (its train split)")
    parser.add_argument("--steps", type=int, default=QatConfig.steps, help=f"steps (default {QatConfig.steps})")
    parser.add_argument("--batch-size", type=int, default=QatConfig.batch_size,
                        help=f"global batch (all processes; default {QatConfig.batch_size})")
    parser.add_argument("--lr", type=float, default=QatConfig.lr, help=f"peak lr, cosine (default {QatConfig.lr:g})")
    parser.add_argument("--seed", type=cli.int_arg("--seed", 0, cli.SEED_MAX), default=0)
    parser.add_argument("--save-fp", default=None, help="also write the fine-tuned float weights here")
    add_quant_options(parser)


def run(args: argparse.Namespace) -> int:
    """``iseg qat``; under torchrun (``WORLD_SIZE`` > 1) joins a gloo process group first."""
    from iseg.imageio import check_output_file

    from .export import clipped_warning, export
    from .loaders import load_model, save_fp

    if args.steps < 1 or args.batch_size < 1 or not 0 < args.lr <= 1e30:  # (NaN and inf fail the comparison)
        # past 1e30 AdamW's float32 step (lr / (1 - beta1)) overflows: a RuntimeError traceback at --lr 1e38
        raise IsegError("--steps and --batch-size must be >= 1 and --lr a number in (0, 1e30]")
    apply_threads(args)
    # every output path is checked before training (a bad one found afterwards loses the run)
    out = check_output_file(args.out, "--out")
    fp_out = check_output_file(args.save_fp, "--save-fp") if args.save_fp is not None else None
    if fp_out is not None and fp_out.resolve() == out.resolve():
        raise IsegError(f"--save-fp {args.save_fp}: is the same file as --out")
    if out.resolve() == Path(args.model).resolve():
        raise IsegError(f"--out {args.out}: is the FP model being fine-tuned (it would be replaced)")
    if fp_out is not None and fp_out.resolve() == Path(args.model).resolve():
        raise IsegError(f"--save-fp {args.save_fp}: is the FP model being fine-tuned (it would be replaced)")
    started = False
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
        dist.init_process_group("gloo")
        started = True
    try:
        rank, world = _world()
        fp = load_model(args.model)
        check_model_lam(fp, args.gelu, args.lam, args.model)
        images, _ = load_data(args.calib, fp.cfg.image_size, "train", data_seed=args.data_seed)
        cfg = QatConfig(steps=args.steps, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                        data_seed=args.data_seed)
        qm = qat(fp, images, cfg, args.softmax, args.gelu, args.lam, dataset=_train_data(args.data, fp))
        if rank == 0:
            try:
                ckpt: QuantizedCheckpoint = export(qm, {"method": "qat", "qat": cfg.__dict__, "processes": world,
                                                        "calib": args.calib, "data": args.data,
                                                        "fp_model": os.path.basename(str(args.model))})
            except ValueError as exc:  # a scale no int32 requant can hold (nx.dyadic): the weights ran away
                raise IsegError(f"the fine-tuned model cannot be exported as integers ({exc}): QAT diverged; "
                                "lower --lr") from None

            def write_fp() -> None:  # inside the checkpoint's atomic write: both files or neither
                try:
                    save_fp(fp, fp_out, training={"qat": cfg.__dict__})
                except OSError as exc:
                    raise IsegError(f"{fp_out}: cannot write ({exc.strerror or exc})") from None

            save(ckpt, out, before_rename=write_fp if fp_out is not None else None)
            print(f"wrote {args.out}: QAT {cfg.steps} steps x {cfg.batch_size} on {world} process(es)")
            warning = clipped_warning(ckpt)
            if warning:
                print(f"iseg qat: {warning}", file=sys.stderr)
        if world > 1:
            dist.barrier()
    finally:
        if started:
            dist.destroy_process_group()
    return 0


def _train_data(source: str, fp: torch.nn.Module) -> Dataset | None:
    """``--data``: None for the synthetic scenes, else the folder's train split at the model's size (a label beyond
    the model's classes is refused by FolderDataset, naming its file)."""
    if source in ("synthetic", "synth"):
        return None
    if not os.path.isdir(source):
        raise IsegError(f"--data {source}: neither 'synthetic' nor a dataset folder")
    ade = os.path.isdir(os.path.join(source, "annotations"))
    return FolderDataset(source, "train" if ade else None, size=fp.cfg.image_size, n_cls=fp.n_cls)


def main(argv: list[str] | None = None) -> int:
    """``python -m iseg.model.qat ...`` (what ``torchrun -m`` starts): the same as ``iseg qat ...``."""
    return cli.command("qat", argv)


if __name__ == "__main__":
    sys.exit(main())
