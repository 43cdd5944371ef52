"""``iseg-host``: segment images, folders, videos or a camera on a board or the emulated board.

    iseg-host --emulate build/<project> INPUTS... --out DIR [--overlay] [--video-out F]
              [--fit pad|resize] [--overwrite] [--json]
    iseg-host --pynq build/<project> --bitfile F INPUTS... --out DIR ...
    iseg-host --xrt  build/<project> --xclbin F [--device N] INPUTS... --out DIR ...

Exit status: 0 when every input was segmented, 1 when an input was unreadable (the others are
still written; each skipped input is one line on stderr) or on an error (one line, nothing
computed), 130 when interrupted (run the same command again to resume).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from iseg.errors import IsegError, quiet_closed_pipe
from iseg.host.backends import open_backend
from iseg.host.inputs import FIT_POLICIES, Source, collect_sources
from iseg.host.manifest import load_manifest
from iseg.host.outputs import JOURNAL, VIDEO_OUT_SUFFIXES
from iseg.host.run import Options, check_outputs, label_path, output_folders, overlay_path, segment

PROG = "iseg-host"


def _index(text: str) -> int:
    """An OpenCV camera index: a non-negative integer.

    Checked while parsing, because ``cv2.VideoCapture(-1)`` can crash the process (a segfault,
    no Python error), after the output folder was already made.
    """
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid camera index {text!r}: expected an integer >= 0") from None
    if n < 0:
        raise argparse.ArgumentTypeError(f"invalid camera index {n}: expected an integer >= 0")
    return n


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG,
        description="Run I-Segmenter segmentation on an FPGA board (PYNQ, XRT) or on the emulated board "
                    "(the generated project's C-simulation).",
    )
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--emulate", metavar="PROJECT", help="generated project folder; compute with its C-simulation")
    where.add_argument("--pynq", metavar="PROJECT", help="generated project folder; compute on a Zynq/Kria board")
    where.add_argument("--xrt", metavar="PROJECT", help="generated project folder; compute on an Alveo card")
    p.add_argument("--bitfile", help="bitstream for --pynq (its .hwh beside it)")
    p.add_argument("--xclbin", help="xclbin for --xrt")
    p.add_argument("--device", type=int, default=0, help="XRT device index (default 0)")
    p.add_argument("inputs", nargs="*", metavar="INPUT", help="image files, folders (searched recursively), videos")
    p.add_argument("--camera", type=_index, action="append", default=[], metavar="N", help="OpenCV camera index")
    p.add_argument("--out", required=True, help="output folder (labels/, overlay/, the resume journal)")
    p.add_argument("--fit", choices=FIT_POLICIES, default="pad",
                   help="pad: pad bottom/right to the model size (shrinking larger images first, keeping the "
                        "aspect ratio), crop the labels back; resize: stretch to the model size, resize the "
                        "labels back (nearest neighbour). Default pad.")
    p.add_argument("--overlay", action="store_true", help="also write colourised overlays (overlay/<name>.jpg)")
    p.add_argument("--alpha", type=float, default=0.5, help="overlay opacity of the class colours (default 0.5)")
    p.add_argument("--video-out", metavar="F",
                   help=f"write an annotated video of every frame ({', '.join(VIDEO_OUT_SUFFIXES)})")
    p.add_argument("--video-fps", type=float, help="frame rate of --video-out (default: the input video's, else 10)")
    p.add_argument("--max-frames", type=int, metavar="N", help="stop each video or camera after N frames")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs and restart from scratch")
    p.add_argument("--json", action="store_true", help="print the summary as JSON on stdout")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def _check(args: argparse.Namespace) -> None:
    # an empty path is not ".": `iseg-host ... "$DIR" --out "$OUT"` with both unset must not label the
    # current folder, recursively, into itself
    for flag in ("emulate", "pynq", "xrt"):  # the group's one flag, given '' (an unset "$PROJECT")
        value = getattr(args, flag)
        if value is not None and not value.strip():
            raise IsegError(f"--{flag}: empty path (expected a generated project folder)")
    if any(not raw.strip() for raw in args.inputs):
        raise IsegError("input '': empty path (name image files, folders or videos)")
    if not args.out.strip():
        raise IsegError("--out: empty path (expected a folder)")
    if args.video_out is not None and not args.video_out.strip():
        raise IsegError("--video-out: empty path (expected a file name)")
    if not 0.0 <= args.alpha <= 1.0:
        raise IsegError(f"--alpha must be in 0..1, got {args.alpha}")
    if args.max_frames is not None and args.max_frames < 1:
        raise IsegError(f"--max-frames must be >= 1, got {args.max_frames}")
    # OpenCV's writers refuse a rate below about 0.01 (only once the first frame is computed, with three
    # lines of their own on stderr); 0.1 is where an input video's own rate is believed (inputs.video_fps)
    if args.video_fps is not None and not 0.1 <= args.video_fps <= 1000:
        raise IsegError(f"--video-fps must be in 0.1..1000, got {args.video_fps}")
    if args.device < 0:
        raise IsegError(f"--device must be >= 0, got {args.device}")
    if args.bitfile and not args.pynq:
        raise IsegError("--bitfile belongs to --pynq")
    if args.xclbin and not args.xrt:
        raise IsegError("--xclbin belongs to --xrt")


def _check_inputs_kept(sources: list[Source], opts: Options) -> None:
    """Refuse a run whose outputs would replace one of its inputs (``--out`` or ``--video-out`` naming an
    input's place, e.g. ``iseg-host ... labels/ --out .``): with --overwrite the input would be lost."""
    inputs = {s.path.resolve(): s.path for s in sources if s.path is not None}

    def check(path: Path, what: str) -> None:
        src = inputs.get(path.resolve())
        if src is not None:
            raise IsegError(f"{what} would replace the input {src}")

    for s in sources:
        if s.kind == "image":
            outs = [label_path(opts.out, s.name)] + ([overlay_path(opts.out, s.name)] if opts.overlay else [])
            for p in outs:
                check(p, f"--out {opts.out}: {p.relative_to(opts.out).as_posix()}")
        else:  # a video's or camera's frames: <out>/labels/<name>/NNNNNN.png (and overlay/.../NNNNNN.jpg)
            folders = [opts.out / "labels" / s.name] + ([opts.out / "overlay" / s.name] if opts.overlay else [])
            for folder in folders:
                real = folder.resolve()
                for q, src in inputs.items():
                    if q.parent == real and q.suffix in (".png", ".jpg"):
                        raise IsegError(f"--out {opts.out}: the frames of {s.path or s.name} go to "
                                        f"{folder.relative_to(opts.out).as_posix()}/, which holds the input {src}")
    check(opts.out / JOURNAL, f"--out {opts.out}: {JOURNAL}")
    if opts.video_out is not None:
        check(opts.video_out, f"--video-out {opts.video_out}:")


def _quiet_opencv() -> None:
    """Keep OpenCV's and FFmpeg's own logging off stderr (read once, at their first use).

    An unopenable video or camera otherwise prints several lines of decoder and V4L2 warnings
    around the one ``skipped`` line the host prints for it. Set either variable to see them.
    """
    os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # AV_LOG_QUIET


@quiet_closed_pipe
def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``iseg-host`` console script."""
    _quiet_opencv()
    args = build_parser().parse_args(argv)
    backend = None
    try:
        _check(args)
        kind, project = next((k, getattr(args, k)) for k in ("emulate", "pynq", "xrt") if getattr(args, k))
        manifest = load_manifest(project)
        sources, ignored = collect_sources(args.inputs, args.camera, exclude=output_folders(Path(args.out)))
        opts = Options(
            out=Path(args.out), fit=args.fit, overlay=args.overlay, alpha=args.alpha,
            video_out=Path(args.video_out) if args.video_out else None, video_fps=args.video_fps,
            overwrite=args.overwrite, max_frames=args.max_frames, progress=not args.no_progress,
        )
        _check_inputs_kept(sources, opts)
        check_outputs(manifest, sources, opts)  # before the backend: a bad path costs no build, no frame
        backend = open_backend(kind, manifest, bitfile=args.bitfile, xclbin=args.xclbin, device=args.device)
        summary = segment(sources, backend, opts, ignored=ignored)
    except IsegError as e:
        print(f"{PROG}: {e}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # the reader of stdout left: errors.quiet_closed_pipe
        raise
    except OSError as e:  # the file system changed under the run (disk full, permissions): still one line
        where = f"{e.filename}: " if e.filename else ""
        print(f"{PROG}: {where}{e.strerror or e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    finally:
        if backend is not None:
            backend.close()
    if args.json:
        print(json.dumps(summary.as_json(), indent=2))
    else:
        for line in summary.lines():
            print(line)
    if summary.interrupted:
        print(f"{PROG}: interrupted; run the same command again to resume", file=sys.stderr)
        return 130
    return 1 if summary.failed else 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
