"""``iseg``: the model-side command line (info, infer, random, synth, train, quantize, qat, eval).

Each sub-command lives in its own module exposing ``add_arguments(parser)`` and
``run(args) -> int``; only the chosen one is imported, so ``iseg info`` never pays for torch.
A module's own stand-alone ``main`` (``python -m iseg.model.train``, ``torchrun -m
iseg.model.qat``) is :func:`command`, so every entry point parses and fails the same way.

Exit status, as for ``gen-hls`` and ``iseg-host``: 0 done; 1 bad input (an :class:`IsegError`:
one line on stderr, no traceback); 2 a malformed command line (argparse's usage error, or no
command); 130 interrupted.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence

from iseg.errors import IsegError, os_error_line, quiet_closed_pipe

# name -> (module, one-line help). Torch commands live in iseg.model.
COMMANDS: dict[str, tuple[str, str]] = {
    "info": ("iseg.commands", "summarise a quantized checkpoint"),
    "infer": ("iseg.commands", "label images with the numpy integer reference"),
    "random": ("iseg.commands", "write a random (calibrated) quantized checkpoint"),
    "synth": ("iseg.synth", "write a synthetic segmentation dataset"),
    "train": ("iseg.model.train", "train the floating-point Segmenter (needs torch)"),
    "quantize": ("iseg.model.calibrate", "PTQ: calibrate on N images and export a quantized checkpoint (needs torch)"),
    "qat": ("iseg.model.qat", "quantization-aware fine-tuning, then export (needs torch; torchrun for DDP)"),
    "eval": ("iseg.model.eval_int", "mIoU / pixel accuracy of FP32, fake-quant and integer models"),
}


def _load(name: str):
    module = COMMANDS[name][0]
    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.split(".")[0] == "torch":
            raise IsegError(f"`iseg {name}` needs PyTorch: pip install 'iseg-fpga[torch]'") from None
        raise
    if hasattr(mod, f"add_{name}_arguments"):
        return getattr(mod, f"add_{name}_arguments"), getattr(mod, f"run_{name}")
    return mod.add_arguments, mod.run


SEED_MAX = (1 << 63) - 1  # a --seed's range: torch.manual_seed's (numpy takes any seed >= 0)


def int_arg(option: str, lo: int, hi: int | None = None) -> Callable[[str], int]:
    """An argparse ``type`` for an integer flag in ``[lo, hi]``.

    A bad value is an :class:`IsegError` raised during parsing (argparse lets it through), so it
    is refused before any work, as one line with exit status 1 like every other bad input.
    """
    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise IsegError(f"{option} must be an integer, got {text!r}") from None
        if v < lo or (hi is not None and v > hi):
            span = f">= {lo}" if hi is None else f"in {lo}..{hi}"
            raise IsegError(f"{option} must be {span}, got {v}")
        return v

    return parse


def _refuse_empty(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """An empty argument (an unset "$MODEL") is no path and no value: Path("") is ".", the current folder, and an
    empty --image was taken for "the preset's size". One line naming the argument, for every sub-command."""
    for action in parser._actions:
        if action.dest in ("out", "inputs"):  # the commands name these themselves ("--out: empty path (expected a
            continue                          # folder)"), which says more
        value = getattr(args, action.dest, None)
        values = value if isinstance(value, list) else [value]
        if any(isinstance(v, str) and not v.strip() for v in values):
            name = action.option_strings[-1] if action.option_strings else action.dest
            raise IsegError(f"{name}: empty value (an unset variable?)")


@quiet_closed_pipe
def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="iseg", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    chosen = next((a for a in argv if not a.startswith("-")), None)
    try:
        for name, (_, help_) in COMMANDS.items():
            p = sub.add_parser(name, help=help_, description=help_)
            if name == chosen:
                add, run = _load(name)
                add(p)
                p.set_defaults(func=run)
        args = parser.parse_args(argv)
        if not getattr(args, "func", None):
            parser.print_help()
            return 2
        _refuse_empty(sub.choices[chosen], args)
        return int(args.func(args) or 0)
    except IsegError as exc:
        print(f"iseg: error: {exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # the reader of stdout left: errors.quiet_closed_pipe
        raise
    except OSError as exc:  # the file system refused a path the user named (a name too long): still one line
        print(f"iseg: error: {os_error_line(exc)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("iseg: interrupted", file=sys.stderr)
        return 130


def command(name: str, argv: Sequence[str] | None = None) -> int:
    """``iseg NAME *argv`` (``argv`` defaults to ``sys.argv[1:]``): a sub-command module's stand-alone ``main``."""
    return main([name, *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
