"""``iseg train``: train the floating-point Segmenter on CPU, resumable bit for bit.

Determinism is by construction: the model is initialised under ``torch.manual_seed(seed)``, the
batches are a pure function of ``(seed, step)`` (:class:`~iseg.model.data.BatchOrder`), the
learning rate a pure function of ``step``, and there is no dropout. A checkpoint therefore only
needs the weights, the AdamW moments and the step: resuming replays exactly the losses an
uninterrupted run would produce (same machine, same thread count).

Output folder ``--out``:

- ``checkpoint.safetensors``: ``model.*`` weights and ``optim.<i>.<name>`` AdamW state;
- ``checkpoint.json``: step, epoch, the train and model configs, the loss of every step so far;
- ``model.safetensors``: the final FP model (:func:`~iseg.model.loaders.save_fp`) with its
  hyper-parameters and validation metrics in the metadata.

Both checkpoint files are written to temporary names and renamed; the JSON is written last and
names the step, which the weights' metadata repeats so a torn pair is detected.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open
from tqdm import tqdm

from iseg import cli, synth
from iseg.errors import IsegError
from iseg.imageio import atomic_write, check_output_dir, check_output_file

from .calibrate import add_threads_option, apply_threads
from .data import BatchOrder, FolderDataset, SynthDataset, collate
from .eval import evaluate_fp, format_metrics
from .loaders import save_fp, write_safetensors
from .segmenter import VARIANTS, Segmenter, SegmenterConfig, param_count, preset

__all__ = ["TrainConfig", "TrainResult", "add_arguments", "lr_at", "run", "train"]

CKPT_FORMAT = "iseg-train-checkpoint"
CKPT_VERSION = 1
IGNORE_INDEX = synth.IGNORE_INDEX


@dataclass(frozen=True)
class TrainConfig:
    """Everything that determines a training run besides the model config."""

    steps: int = 1500  # docs/model.md gives the full command of the built-in model
    batch_size: int = 32
    lr: float = 2e-3
    min_lr_ratio: float = 0.01  # final lr = lr * min_lr_ratio (cosine) / 0 (poly)
    weight_decay: float = 0.05
    warmup: int = 100
    schedule: str = "cosine"  # or "poly" (power 0.9, as Segmenter)
    grad_clip: float = 1.0  # max global grad norm; 0 disables
    seed: int = 0
    data: str = "synth"  # or a plain / ADE20K-style folder
    data_seed: int = 0
    train_count: int = 8000
    val_count: int = 500
    flip: bool = True
    ckpt_every: int = 500

    def __post_init__(self) -> None:
        # types first: the values also come from a run's checkpoint.json (a resume), where "5" or null would
        # otherwise end in a TypeError; NaN passes every comparison below, so the numbers must be finite
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if f.type in ("int", int) and (not isinstance(v, int) or isinstance(v, bool)):
                raise IsegError(f"train config: {f.name} must be an integer, got {v!r}")
            if f.type in ("float", float) and (not isinstance(v, int | float) or isinstance(v, bool)
                                               or not math.isfinite(v)):
                raise IsegError(f"train config: {f.name} must be a finite number, got {v!r}")
            if f.type in ("str", str) and not isinstance(v, str):
                raise IsegError(f"train config: {f.name} must be a string, got {v!r}")
            if f.type in ("bool", bool) and not isinstance(v, bool):
                raise IsegError(f"train config: {f.name} must be true or false, got {v!r}")
        for name in ("seed", "data_seed"):
            if getattr(self, name) > cli.SEED_MAX:
                raise IsegError(f"train config: {name} must be in 0..{cli.SEED_MAX}, got {getattr(self, name)}")
        for name in ("steps", "batch_size", "train_count", "ckpt_every"):
            if getattr(self, name) < 1:
                raise IsegError(f"train config: {name} must be >= 1, got {getattr(self, name)}")
        for name in ("warmup", "val_count", "seed", "data_seed"):
            if getattr(self, name) < 0:
                raise IsegError(f"train config: {name} must be >= 0, got {getattr(self, name)}")
        # past 1e30 AdamW's float32 step (lr / (1 - beta1)) overflows: a RuntimeError traceback (as iseg qat)
        if not 0 < self.lr <= 1e30 or self.weight_decay < 0 or self.grad_clip < 0 or not 0 <= self.min_lr_ratio <= 1:
            raise IsegError(
                "train config: lr must be in (0, 1e30], weight_decay and grad_clip >= 0, min_lr_ratio in 0..1"
            )
        if self.schedule not in ("cosine", "poly"):
            raise IsegError(f"train config: schedule must be 'cosine' or 'poly', got {self.schedule!r}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        if not isinstance(d, dict):
            raise IsegError(f"train config: expected a mapping, got {type(d).__name__}")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise IsegError(f"train config: unknown key {unknown[0]!r}")
        return cls(**d)


@dataclass
class TrainResult:
    """What a call to :func:`train` did: the losses of the steps it ran (all steps so far in
    ``all_losses``), the model, and the validation metrics if the run finished."""

    model: Segmenter
    losses: list[float]
    all_losses: list[float]
    step: int
    metrics: dict[str, Any] | None
    metrics_split: str = "val"  # "train" for a plain folder: it has no held-out images, so the score is on its own


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Learning rate of optimizer step ``step`` (0-based): linear warmup, then cosine or poly decay."""
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    span = max(1, cfg.steps - cfg.warmup)
    t = min(1.0, (step - cfg.warmup) / span)
    if cfg.schedule == "poly":
        return cfg.lr * (1.0 - t) ** 0.9
    low = cfg.lr * cfg.min_lr_ratio
    return low + (cfg.lr - low) * 0.5 * (1.0 + math.cos(math.pi * t))


def _param_groups(model: Segmenter, weight_decay: float) -> list[dict[str, Any]]:
    """Decay matrices and conv kernels only: norms, biases, tokens and embeddings are exempt."""
    decay, keep = [], []
    for name, p in model.named_parameters():
        is_matrix = p.ndim >= 2 and not name.endswith(("pos_embed", "cls_token", "dist_token", "cls_emb"))
        (decay if is_matrix else keep).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": keep, "weight_decay": 0.0}]


def _make_optimizer(model: Segmenter, cfg: TrainConfig) -> torch.optim.AdamW:
    return torch.optim.AdamW(_param_groups(model, cfg.weight_decay), lr=cfg.lr, betas=(0.9, 0.999))


# ----------------------------------------------------------------------------------------------
# checkpoints


def _save_checkpoint(
    out: Path, model: Segmenter, opt: torch.optim.Optimizer, step: int, epoch: int,
    tcfg: TrainConfig, losses: list[float],
) -> None:
    tensors = {f"model.{k}": v.detach().contiguous().clone() for k, v in model.state_dict().items()}
    sd = opt.state_dict()
    for i, st in sd["state"].items():
        for name, val in st.items():
            t = val if isinstance(val, torch.Tensor) else torch.tensor(val)
            tensors[f"optim.{i}.{name}"] = t.detach().contiguous().clone()
    meta = {"format": CKPT_FORMAT, "format_version": str(CKPT_VERSION), "step": str(step)}
    write_safetensors(out / "checkpoint.safetensors", tensors, meta)
    doc = {
        "format": CKPT_FORMAT,
        "format_version": CKPT_VERSION,
        "step": step,
        "epoch": epoch,
        "train": tcfg.to_dict(),
        "model": model.cfg.to_dict(),
        "param_groups": [{k: v for k, v in g.items()} for g in sd["param_groups"]],
        "losses": losses,
    }
    text = json.dumps(doc, indent=1) + "\n"
    atomic_write(out / "checkpoint.json", lambda tmp: tmp.write_text(text, encoding="utf-8"))


def read_checkpoint_json(out: str | os.PathLike[str]) -> dict[str, Any]:
    """The ``checkpoint.json`` of a run folder, checked for format and version."""
    path = Path(out) / "checkpoint.json"
    if not path.is_file():
        raise IsegError(f"{out} holds no training checkpoint (checkpoint.json is missing)")
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise IsegError(f"{path}: unreadable ({e})") from None
    except RecursionError:
        raise IsegError(f"{path}: unreadable (JSON nested too deeply)") from None
    if not isinstance(doc, dict) or doc.get("format") != CKPT_FORMAT:
        raise IsegError(f"{path}: not an iseg training checkpoint")
    if doc.get("format_version") != CKPT_VERSION:
        version = doc.get("format_version")
        raise IsegError(f"{path}: checkpoint version {version!r}, this iseg reads {CKPT_VERSION}")
    # what a resume reads besides the two configs (checked by from_dict): a damaged or hand-edited file
    # is one line here, not a KeyError or ValueError in the middle of the resume
    step = doc.get("step")
    if not isinstance(step, int) or isinstance(step, bool) or step < 0:
        raise IsegError(f"{path}: 'step' must be an integer >= 0, got {step!r}")
    losses = doc.get("losses")
    if not isinstance(losses, list) or any(not isinstance(v, int | float) or isinstance(v, bool) for v in losses):
        raise IsegError(f"{path}: 'losses' must be a list of numbers")
    groups = doc.get("param_groups")
    if not isinstance(groups, list) or any(not isinstance(g, dict) for g in groups):
        raise IsegError(f"{path}: 'param_groups' must be a list of objects")
    for key in ("model", "train"):
        if not isinstance(doc.get(key), dict):
            raise IsegError(f"{path}: {key!r} must be an object, got {type(doc.get(key)).__name__}")
    return doc


def _load_checkpoint(out: Path, model: Segmenter, opt: torch.optim.Optimizer, doc: dict[str, Any]) -> None:
    path = out / "checkpoint.safetensors"
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
        tensors = load_file(str(path))
    except (SafetensorError, OSError) as e:
        raise IsegError(f"{path}: unreadable ({e})") from None
    if meta.get("step") != str(doc["step"]):
        raise IsegError(
            f"{path}: holds step {meta.get('step')}, checkpoint.json says {doc['step']} (torn write?)"
        )
    model_sd = {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}
    from .loaders import load_state_dict_checked

    load_state_dict_checked(model, model_sd, str(path))
    state: dict[int, dict[str, torch.Tensor]] = {}
    for k, v in tensors.items():
        if k.startswith("optim."):
            _, i, name = k.split(".", 2)
            state.setdefault(int(i), {})[name] = v
    groups = doc["param_groups"]
    for g in groups:
        if isinstance(g.get("betas"), list):
            g["betas"] = tuple(g["betas"])
    try:
        opt.load_state_dict({"state": state, "param_groups": groups})
    except (ValueError, KeyError) as e:
        raise IsegError(f"{path}: optimizer state does not fit the model ({e})") from None


# ----------------------------------------------------------------------------------------------
# training


def _datasets(tcfg: TrainConfig, model_cfg: SegmenterConfig) -> tuple[Any, Any, str]:
    """The training set, the set scored at the end and its split's name: a plain folder has no validation split,
    so the end's score is over the training images themselves, and is named so."""
    size = model_cfg.image_size
    if tcfg.data == "synth":
        if model_cfg.n_cls < synth.NUM_CLASSES:  # scene labels beyond the model's classes: the loss's IndexError
            raise IsegError(f"--n-cls {model_cfg.n_cls}: the synthetic scenes have {synth.NUM_CLASSES} classes")
        cache = tcfg.train_count * size[0] * size[1] * 4 <= 2**30  # up to 1 GiB of uint8 scenes
        return (SynthDataset("train", tcfg.train_count, size, tcfg.data_seed, cache=cache),
                SynthDataset("val", max(1, tcfg.val_count), size, tcfg.data_seed), "val")
    ade = (Path(tcfg.data) / "annotations").is_dir()
    train_ds = FolderDataset(tcfg.data, "train" if ade else None, size=size, n_cls=model_cfg.n_cls)
    if not ade:
        return train_ds, train_ds, "train"
    return train_ds, FolderDataset(tcfg.data, "val", size=size, n_cls=model_cfg.n_cls), "val"


def train(
    model_cfg: SegmenterConfig,
    tcfg: TrainConfig,
    out: str | os.PathLike[str],
    resume: bool = False,
    stop_at: int | None = None,
    progress: bool = True,
    log: Any = print,
) -> TrainResult:
    """Train (or resume) into folder ``out``; return the losses of this call.

    ``stop_at`` ends the call after that many steps in total (writing a checkpoint), as an
    interruption would; a later ``resume=True`` call continues to ``tcfg.steps``. The final
    model and its validation metrics are written only when step ``tcfg.steps`` is reached.
    """
    out = Path(out)
    if resume:
        doc = read_checkpoint_json(out)
        tcfg = TrainConfig.from_dict(doc["train"])
        model_cfg = SegmenterConfig.from_dict(doc["model"])
    elif (out / "checkpoint.json").exists():
        raise IsegError(f"{out} already holds a training run: resume it or choose another output folder")
    train_ds, val_ds, val_split = _datasets(tcfg, model_cfg)  # bad data fails before anything is written
    torch.manual_seed(tcfg.seed)
    model = Segmenter(model_cfg)  # and a model too large for the memory (before the folder is made)
    opt = _make_optimizer(model, tcfg)
    order = BatchOrder(len(train_ds), tcfg.batch_size, tcfg.seed, tcfg.flip)
    if not resume:
        order.batch(0)  # the first epoch's order (a --train-count beyond the memory) before the folder is made
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise IsegError(f"cannot create output folder {out}: {e.strerror or e}") from None

    start, all_losses = 0, []
    if resume:
        _load_checkpoint(out, model, opt, doc)
        start, all_losses = int(doc["step"]), [float(x) for x in doc["losses"]]
        log(f"resuming {out} at step {start}/{tcfg.steps}")
    else:
        log(f"training {model_cfg.backbone or 'segmenter'}: {param_count(model):,} parameters, "
            f"{tcfg.steps} steps of {tcfg.batch_size}")
    end = tcfg.steps if stop_at is None else min(tcfg.steps, stop_at)
    losses: list[float] = []
    model.train()
    bar = tqdm(range(start, end), initial=start, total=tcfg.steps, desc="train", disable=not progress)
    for step in bar:
        for g in opt.param_groups:
            g["lr"] = lr_at(step, tcfg)
        images, labels = collate(train_ds, order.batch(step))
        logits = model(model.normalize(images))
        loss = F.cross_entropy(logits, labels, ignore_index=IGNORE_INDEX)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if tcfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), tcfg.grad_clip)
        opt.step()
        value = float(loss.item())
        if not math.isfinite(value):
            raise IsegError(f"training diverged at step {step} (loss {value}): lower --lr")
        losses.append(value)
        all_losses.append(value)
        bar.set_postfix(loss=f"{value:.4f}", lr=f"{lr_at(step, tcfg):.2e}")
        done = step + 1
        if done % tcfg.ckpt_every == 0 or done == end:
            _save_checkpoint(out, model, opt, done, order.epoch_of(done), tcfg, all_losses)
    bar.close()
    if start >= end and end < tcfg.steps:
        log(f"nothing to do: checkpoint already at step {start}")

    step = max(start, end)
    metrics = None
    model.eval()
    if step >= tcfg.steps:
        metrics = evaluate_fp(model, val_ds, batch_size=64, progress=progress) if tcfg.val_count else None
        training = {"steps": tcfg.steps, "train": tcfg.to_dict(),
                    "final_loss": all_losses[-1] if all_losses else None}
        if metrics is not None:
            training["val"] = {"split": val_split, "count": len(val_ds), "miou": metrics["miou"],
                               "pixel_acc": metrics["pixel_acc"], "iou": metrics["iou"]}
            log(format_metrics(metrics, model_cfg.class_names))
        save_fp(model, out / "model.safetensors", training=training)
        tail = f" (final loss {all_losses[-1]:.4f})" if all_losses else ""
        log(f"wrote {out / 'model.safetensors'}{tail}")
    return TrainResult(model=model, losses=losses, all_losses=all_losses, step=step, metrics=metrics,
                       metrics_split=val_split)


# ----------------------------------------------------------------------------------------------
# command line

#: (flag dest, TrainConfig field) pairs; their CLI defaults are None so that a resume can tell
#: an explicit value (which must agree with the stored run) from an absent one.
_TRAIN_FLAGS = ("steps", "batch_size", "lr", "weight_decay", "warmup", "schedule", "seed", "data",
                "data_seed", "train_count", "val_count", "ckpt_every", "grad_clip", "min_lr_ratio")
_MODEL_FLAGS = {"d_model": "d_model", "n_heads": "n_heads", "n_layers": "n_layers", "patch": "patch_size",
                "decoder": "decoder", "l2norm": "l2norm", "upsample": "upsample", "gelu": "gelu",
                "normalization": "normalization", "n_cls": "n_cls", "mlp_ratio": "mlp_ratio"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``iseg train`` (the lead wires this into ``iseg/cli.py``)."""
    d = TrainConfig()
    parser.add_argument("--out", required=True, help="run folder (checkpoints and model.safetensors)")
    parser.add_argument("--resume", action="store_true", help="continue the run stored in --out")
    parser.add_argument("--variant", default=None, choices=sorted(VARIANTS),  # None: builtin (a resume: stored)
                        help="model preset (default builtin: the synthetic-data model)")
    from iseg.random_model import MAX_DIM, MAX_LAYERS, MAX_PATCH

    # the sizes the rest of the toolchain takes (as `iseg random`: the HLS LayerNorm's width, the
    # accumulator proof's patch), refused while parsing: --n-layers 100000 built a model for minutes
    m = parser.add_argument_group("model (override the preset)")
    m.add_argument("--d-model", type=cli.int_arg("--d-model", 1, MAX_DIM), help=f"1..{MAX_DIM}")
    m.add_argument("--n-heads", type=cli.int_arg("--n-heads", 1, MAX_DIM))
    m.add_argument("--n-layers", type=cli.int_arg("--n-layers", 1, MAX_LAYERS), help=f"1..{MAX_LAYERS}")
    m.add_argument("--mlp-ratio", type=cli.int_arg("--mlp-ratio", 1, 64))
    m.add_argument("--patch", type=cli.int_arg("--patch", 1, MAX_PATCH), help=f"patch size P (1..{MAX_PATCH})")
    m.add_argument("--size", help="training image size HxW (default: the preset's)")
    m.add_argument("--n-cls", type=cli.int_arg("--n-cls", 1, 256), help="classes (default: from the data; 1..256)")
    m.add_argument("--decoder", choices=("mask_transformer", "linear"))
    m.add_argument("--l2norm", action=argparse.BooleanOptionalAction, default=None,
                   help="L2-normalise in the mask decoder (Segmenter) or not (I-Segmenter)")
    m.add_argument("--upsample", choices=("bilinear", "nearest"))
    m.add_argument("--gelu", choices=("erf", "lambda"))
    m.add_argument("--normalization", choices=("vit", "deit"))
    t = parser.add_argument_group("training")
    t.add_argument("--steps", type=int, help=f"optimizer steps (default {d.steps})")
    t.add_argument("--batch-size", type=int, help=f"default {d.batch_size}")
    t.add_argument("--lr", type=float, help=f"peak AdamW learning rate (default {d.lr})")
    t.add_argument("--min-lr-ratio", type=float, help=f"final/peak lr, cosine (default {d.min_lr_ratio})")
    t.add_argument("--weight-decay", type=float, help=f"default {d.weight_decay}")
    t.add_argument("--warmup", type=int, help=f"linear warmup steps (default {d.warmup})")
    t.add_argument("--schedule", choices=("cosine", "poly"), help=f"default {d.schedule}")
    t.add_argument("--grad-clip", type=float, help=f"max gradient norm, 0 = off (default {d.grad_clip})")
    t.add_argument("--seed", type=cli.int_arg("--seed", 0, cli.SEED_MAX),
                   help="initialisation and batch-order seed (default 0)")
    t.add_argument("--data", help="'synth' (default) or a plain / ADE20K-style dataset folder")
    t.add_argument("--data-seed", type=cli.int_arg("--data-seed", 0, cli.SEED_MAX),
                   help="seed of the synthetic scenes (default 0)")
    t.add_argument("--train-count", type=int, help=f"synthetic training scenes (default {d.train_count})")
    t.add_argument("--val-count", type=int,
                   help=f"synthetic validation scenes scored at the end (default {d.val_count}; 0: no score; a "
                        "folder's whole validation split is scored, a plain folder's training images)")
    t.add_argument("--no-flip", dest="flip", action="store_false", default=None, help="no flip augmentation")
    t.add_argument("--ckpt-every", type=int, help=f"checkpoint period in steps (default {d.ckpt_every})")
    add_threads_option(t)
    t.add_argument("--export", help="also copy the final model.safetensors to this path")
    t.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")


def _class_info(data: str) -> tuple[int | None, tuple[str, ...], tuple[tuple[int, int, int], ...]]:
    if data == "synth":
        return synth.NUM_CLASSES, synth.CLASS_NAMES, synth.CLASS_COLORS
    if not Path(data).is_dir():  # a typo (--data synthetc) is named as such, not as a folder without classes.json
        what = "is not a folder" if Path(data).exists() else "does not exist"
        raise IsegError(f"--data {data}: {what} (give synth, or a dataset folder)")
    path = Path(data) / "classes.json"
    if not path.is_file():
        return None, (), ()
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        names = tuple(str(n) for n in doc["names"])
        colors = tuple(tuple(int(v) for v in c) for c in doc.get("colors", []))
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise IsegError(f"malformed {path}: {e}") from None
    except RecursionError:
        raise IsegError(f"malformed {path}: JSON nested too deeply") from None
    return len(names), names, colors


def _configs_from_args(args: argparse.Namespace) -> tuple[SegmenterConfig, TrainConfig]:
    tkw = {k: getattr(args, k) for k in _TRAIN_FLAGS if getattr(args, k) is not None}
    if args.flip is not None:
        tkw["flip"] = args.flip
    tcfg = TrainConfig(**tkw)
    mkw = {f: getattr(args, dest) for dest, f in _MODEL_FLAGS.items() if getattr(args, dest) is not None}
    if args.size is not None:  # '' is refused by parse_size, not taken for "the variant's"
        mkw["image_size"] = synth.parse_size(args.size)
    n_cls, names, colors = _class_info(tcfg.data)
    if "n_cls" not in mkw:
        if n_cls is None:
            raise IsegError(f"{tcfg.data} has no classes.json: give --n-cls")
        mkw["n_cls"] = n_cls
    if mkw["n_cls"] == n_cls:
        mkw.update(class_names=names, class_colors=colors)
    variant = args.variant or "builtin"
    base = VARIANTS[variant]
    if base.get("encoder_head_classes") == base.get("n_cls") and "n_cls" in mkw:
        mkw.setdefault("encoder_head_classes", mkw["n_cls"])
    return preset(variant, **mkw), tcfg


def _check_resume_flags(args: argparse.Namespace, doc: dict[str, Any]) -> None:
    stored = doc["train"]
    for k in _TRAIN_FLAGS + ("flip",):
        v = getattr(args, k)
        if v is not None and v != stored.get(k):
            flag = "--no-flip" if k == "flip" else "--" + k.replace("_", "-")
            raise IsegError(f"{flag} {v} differs from the stored run's {stored.get(k)}: a resume continues "
                            "the stored run unchanged")
    mflags = ([d for d in _MODEL_FLAGS if getattr(args, d) is not None] + (["size"] if args.size is not None else [])
              + (["variant"] if args.variant is not None else []))
    if mflags:
        flag = "--" + mflags[0].replace("_", "-")
        raise IsegError(f"{flag} cannot be given with --resume (the model is stored)")


def run(args: argparse.Namespace) -> int:
    """Execute ``iseg train``; raises :class:`IsegError` on bad input."""
    apply_threads(args)
    # every output path is checked before training (a bad --export found afterwards cost the run)
    check_output_dir(args.out, "--out")
    export = check_output_file(args.export, "--export") if args.export is not None else None
    if export is not None and export.resolve() == (Path(args.out) / "model.safetensors").resolve():
        raise IsegError(f"--export {args.export}: is the run's own model.safetensors (give another path)")
    log = lambda msg: print(msg, file=sys.stderr)  # noqa: E731 - progress and notes to stderr
    try:
        if args.resume:
            doc = read_checkpoint_json(args.out)
            _check_resume_flags(args, doc)
            result = train(SegmenterConfig.from_dict(doc["model"]), TrainConfig.from_dict(doc["train"]),
                           args.out, resume=True, progress=args.progress, log=log)
        else:
            model_cfg, tcfg = _configs_from_args(args)
            result = train(model_cfg, tcfg, args.out, progress=args.progress, log=log)
    except MemoryError:
        raise IsegError("not enough memory for this model and data (choose a smaller model, --batch-size or "
                        "--train-count)") from None
    except RuntimeError as e:  # torch's allocator: "DefaultCPUAllocator: can't allocate memory: ..."
        if "can't allocate memory" not in str(e):
            raise
        raise IsegError("not enough memory for this model and data (choose a smaller model, --batch-size or "
                        "--train-count)") from None
    if export is not None:
        src = Path(args.out) / "model.safetensors"
        try:
            atomic_write(export, lambda tmp: shutil.copyfile(src, tmp))
        except OSError as e:
            raise IsegError(f"cannot export to {args.export}: {e.strerror or e}") from None
        log(f"exported {args.export}")
    if result.metrics is not None:
        m = result.metrics
        split = result.metrics_split
        seen = " (the training images: a plain folder has no validation split)" if split == "train" else ""
        print(f"{split} mIoU {100 * m['miou']:.2f} %  pixel acc {100 * m['pixel_acc']:.2f} %{seen}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m iseg.model.train ...``: the same as ``iseg train ...``."""
    return cli.command("train", argv)


if __name__ == "__main__":
    raise SystemExit(main())
