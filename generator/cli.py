"""``gen-hls config.yaml [--csim [--images DIR|N]]``: checkpoint + config -> Vitis HLS project.

The pipeline is a handful of plain calls in a fixed order: load config -> load checkpoint ->
plan -> render (pure) -> write (atomic) -> optionally build and check the C-simulation. Every
argument, the config, the checkpoint and the ``--images`` are checked before that pipeline starts:
a bad one is one line on stderr and exit status 1 with nothing written and nothing replaced (only
a previous gen-hls project or an empty folder is ever replaced). Ctrl-C is one line and status 130 (SIGTERM
143); the temporary folder is removed and a previous project stays.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import pickle
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from iseg.errors import IsegError, quiet_closed_pipe

if TYPE_CHECKING:  # numpy is imported where used: the command reaches its SIGINT handler sooner
    import numpy as np

__all__ = ["main", "generate", "check_csim", "GoldenWorker"]

# The worker pays ~0.3 s to start Python and numpy: worth it only for models whose reference run is long
# (Seg-T 512²: 62 MB of activations, ~2 s; the built-in and test models: < 1 MB, milliseconds).
GOLDEN_WORKER_MIN_ACT_BYTES = 8 << 20
_ONE_BLAS_THREAD = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


class GoldenWorker:
    """``emit.golden`` in a child process, so that the reference run overlaps planning and rendering.

    Started with the checkpoint and the image (all the reference run needs), told the plan's traced
    layer rows with :meth:`send_plan`, and asked for the result by :meth:`result` (the callback
    ``emit.render_project`` calls last). The child is a fresh ``python -c`` (no re-import of the
    caller's ``__main__``) with one BLAS thread: the parent keeps the other core busy with the plan,
    and a BLAS thread pool fighting for a shared core runs slower than one thread. The golden vectors
    are the same integers as an in-process ``emit.golden`` (tested); a failure in the child is raised
    here, before anything is written.
    """

    def __init__(self, ckpt: Any, image: np.ndarray):
        self._proc = subprocess.Popen(
            # SIGINT ignored: a Ctrl-C reaches the whole process group, and the parent alone reports it
            # (and stops this child in close()); the child would only add a KeyboardInterrupt traceback.
            [sys.executable, "-c", "import signal; signal.signal(signal.SIGINT, signal.SIG_IGN); "
             "from iseg.generator.cli import _golden_worker_main; _golden_worker_main()"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            env={**os.environ, **_ONE_BLAS_THREAD, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)})
        self._sender = threading.Thread(target=self._send, args=((ckpt, image),), daemon=True)
        self._sender.start()  # a 7 MB pickle into a pipe: do not wait for the child to read it
        self._plan_sent = False

    def _send(self, msg: Any) -> None:
        assert self._proc.stdin is not None
        try:
            pickle.dump(msg, self._proc.stdin, protocol=pickle.HIGHEST_PROTOCOL)
            self._proc.stdin.flush()
        except (BrokenPipeError, OSError):  # the child died: result() says so
            pass

    def send_plan(self, plan: Any) -> None:
        from iseg.generator import emit

        self._sender.join()
        self._send(emit.golden_layers(plan))
        self._plan_sent = True

    def result(self, plan: Any) -> Any:
        """The :class:`emit.Golden` of ``plan`` (sends the plan first if :meth:`send_plan` was not called)."""
        if not self._plan_sent:
            self.send_plan(plan)
        assert self._proc.stdout is not None
        try:
            status, value = pickle.load(self._proc.stdout)
        except (EOFError, pickle.UnpicklingError):
            self._proc.wait()
            raise IsegError(f"golden vectors: the reference worker process failed (exit status "
                            f"{self._proc.returncode}; its error is above)") from None
        self._proc.wait()
        if status != "ok":
            raise value
        return value

    def close(self) -> None:
        """Stop the child if it is still running (after an error elsewhere)."""
        if self._proc.poll() is None:
            self._proc.kill()
        self._proc.wait()
        for f in (self._proc.stdin, self._proc.stdout):
            if f is not None:
                try:
                    f.close()
                except OSError:
                    pass

    def __enter__(self) -> GoldenWorker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _golden_worker_main() -> None:
    """The child of :class:`GoldenWorker`: stdin (ckpt, image), then the golden layers; stdout the result."""
    from iseg.generator import emit
    from iseg.reference import run

    out = sys.stdout.buffer
    sys.stdout = sys.stderr  # nothing but the result on the pipe
    try:
        ckpt, image = pickle.load(sys.stdin.buffer)
        labels, ref = run(ckpt, image, trace=True)
        layers = pickle.load(sys.stdin.buffer)
        msg: tuple[str, Any] = ("ok", emit.golden_from_trace(layers, image, labels, ref))
    except EOFError:  # the parent went away
        return
    except Exception as exc:  # noqa: BLE001  (re-raised in the parent)
        msg = ("error", exc)
    try:
        data = pickle.dumps(msg, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception:  # noqa: BLE001  (an exception that does not pickle)
        data = pickle.dumps(("error", IsegError(f"golden vectors: {msg[1]}")))
    out.write(data)
    out.flush()


def generate(config_path: str | Path, *, quiet: bool = True, extra_outputs: tuple[str, ...] = (),
             golden_worker: bool | None = None, loaded: tuple[Any, Any] | None = None) -> Path:
    """Generate the project a config describes (plus ``extra_outputs``); returns its folder.

    ``golden_worker``: compute the test bench's golden vectors in a :class:`GoldenWorker` beside the
    plan (default: when the model's activations reach ``GOLDEN_WORKER_MIN_ACT_BYTES``). The project
    is the same byte for byte either way. ``loaded``: the (Config, checkpoint) of ``config_path``
    when the caller has already loaded and checked them (``main`` does, to check its arguments
    before any work), so they are read once.
    """
    from contextlib import nullcontext

    from iseg.checkpoint import load
    from iseg.generator import emit
    from iseg.generator.config import load_config
    from iseg.generator.plan import make_plan
    from iseg.generator.write import write_project
    from iseg.graph import build_graph
    from iseg.random_model import calibration_image

    cfg, ckpt = loaded if loaded is not None else (None, None)
    if cfg is None:
        cfg = load_config(config_path)
        ckpt = load(cfg.checkpoint)
    if any(o not in cfg.outputs for o in extra_outputs):  # recorded like the config's own (project config.yaml, README)
        cfg = dataclasses.replace(cfg, outputs=cfg.outputs + tuple(o for o in extra_outputs if o not in cfg.outputs))
    image = calibration_image(ckpt.spec.image, 0)
    if golden_worker is None:
        golden_worker = sum(a.nbytes for a in build_graph(ckpt.spec).acts.values()) >= GOLDEN_WORKER_MIN_ACT_BYTES
    with GoldenWorker(ckpt, image) if golden_worker and emit.has_testbench(cfg.outputs) else nullcontext() as worker:
        plan = make_plan(cfg, ckpt)
        if worker is not None:
            worker.send_plan(plan)
        files = emit.render_project(plan, ckpt, image, emit.library_headers(),
                                    golden_vectors=(lambda: worker.result(plan)) if worker is not None else None)
    if "rtl" in cfg.outputs:
        files.update(emit.render_rtl(plan, ckpt))
    _check_interrupted()
    kept, stale = write_project(files, cfg.output, protect=(cfg.source, cfg.checkpoint))
    out = Path(cfg.output)
    for folder in stale:  # never deleted here: a run killed mid-swap may have left the user's files in it
        print(f"gen-hls: note: {folder} was left by a gen-hls run that was killed (SIGKILL or a power cut); it may "
              "hold a previous project and files of yours: look, then delete it", file=sys.stderr, flush=True)
    if kept:  # never quiet: the user should know their files are there, and which
        more = f" and {len(kept) - 6} more" if len(kept) > 6 else ""
        print(f"gen-hls: kept what the previous project held besides its generated files: "
              f"{', '.join(kept[:6])}{more}", flush=True)
    if not quiet:
        print(plan.describe())
    return out


class _SyntheticImages(Sequence):
    """``--images N``: N calibration images, each made when the C-simulation reaches it (a large N
    must not hold N images in memory at once)."""

    def __init__(self, spec_image: tuple[int, int], n: int):
        self._shape = spec_image
        self._n = n

    def __len__(self) -> int:
        return self._n

    def __getitem__(self, i: int) -> tuple[str, np.ndarray]:  # type: ignore[override]
        from iseg.random_model import calibration_image

        if not 0 <= i < self._n:
            raise IndexError(i)
        return f"synthetic seed {i}", calibration_image(self._shape, 1000 + i)


def _images(spec_image: tuple[int, int], arg: str | None) -> Sequence[tuple[str, np.ndarray]]:
    """The ``--images`` of ``--csim``, checked (a folder's images loaded, sizes included): a count N
    of synthetic images or a folder of image files. Called before anything is written, so a bad
    argument or image costs no project."""
    from iseg.imageio import list_images, load_image

    if arg is None or re.fullmatch(r"[0-9]+", arg.strip()):
        n = 1 if arg is None else int(arg)
        if n < 1:
            raise IsegError(f"--images: N must be >= 1, got {arg!r}")
        return _SyntheticImages(spec_image, n)
    if not arg.strip():
        raise IsegError("--images: empty argument (give a count N >= 1 or a folder of images)")
    folder = Path(arg)
    if not folder.is_dir():
        raise IsegError(f"--images: {arg!r} is neither a count N >= 1 nor a folder of images")
    out = []
    h, w = spec_image
    for p in list_images([folder]):
        img = load_image(p)
        if img.shape[:2] != (h, w):
            raise IsegError(f"{p}: image is {img.shape[0]}x{img.shape[1]}, the model expects {h}x{w}")
        out.append((p.name, img))
    return out


def check_csim(project: Path, ckpt_path: Path, images: str | None | Sequence[tuple[str, np.ndarray]],
               ckpt: Any = None) -> str:
    """Build the C-simulation, run the images, compare every traced layer and the labels.

    ``images``: the ``--images`` argument, or the images :func:`_images` made of it; ``ckpt``: the
    checkpoint of ``ckpt_path`` if already loaded. Raises IsegError at the first mismatch (layer,
    name, flat index, both values); returns the PASS summary otherwise: one line, then a WARNING line for each
    count that differs from the estimate and each loop beyond its memory banks or m_axi beats (the data are
    bit-exact either way, so the exit status stays 0).
    """
    import numpy as np

    from iseg.checkpoint import load
    from iseg.generator.csim import CsimLibrary
    from iseg.reference import run

    if ckpt is None:
        ckpt = load(ckpt_path)
    imgs = _images(ckpt.spec.image, images) if images is None or isinstance(images, str) else images
    t0 = time.perf_counter()
    lib = CsimLibrary(project)
    t_build = time.perf_counter() - t0
    layers = 0
    t_run = 0.0
    for label, img in imgs:
        t1 = time.perf_counter()
        labels, trace = lib.run_traced(img)
        _check_interrupted()  # a Ctrl-C ctypes swallowed on entering the trace callback: the trace is partial
        t_run += time.perf_counter() - t1
        ref_labels, ref = run(ckpt, img, trace=True)
        for entry in lib.trace_map:
            if entry["name"] is None:
                continue
            got = trace[lib.trace_key(entry)]
            want = ref[entry["name"]][entry["row0"]:entry["row0"] + entry["rows"]]
            if got.shape != want.shape or not np.array_equal(got, want.astype(got.dtype)):
                diff = np.flatnonzero(got.reshape(-1) != want.reshape(-1).astype(got.dtype)) \
                    if got.shape == want.shape else [0]
                i = int(diff[0])
                raise IsegError(f"csim MISMATCH ({label}) layer {entry['layer']} {'+'.join(entry['ops'])} "
                                f"[{entry['name']}] at flat index {i}: csim {int(got.reshape(-1)[i])}, "
                                f"reference {int(want.reshape(-1)[i])}")
            layers += 1
        if not np.array_equal(labels, ref_labels):
            i = int(np.flatnonzero(labels.reshape(-1) != ref_labels.reshape(-1))[0])
            raise IsegError(f"csim MISMATCH ({label}) labels at flat index {i}: csim {int(labels.reshape(-1)[i])}, "
                            f"reference {int(ref_labels.reshape(-1)[i])}")
    counted, estimated = lib.cycles(-1), lib.manifest.get("estimate", {}).get("cycles")
    cyc = (f"cycles counted = estimate ({counted:,})" if counted == estimated
           else f"cycles counted {counted:,}, estimate {estimated:,}: DIFFERENT")
    moved = lib.axi_bytes()  # every m_axi access of the last run, by bundle (hls/iseg_ports.h)
    want = lib.manifest.get("estimate", {}).get("ddr_bytes", {})
    got = {"weights": moved["gmem0.read"] + moved["gmem0.write"],
           "scratch": sum(v for k, v in moved.items() if not k.startswith("gmem0"))}
    ddr = (f"DDR bytes counted = estimate ({got['weights']:,} weights + {got['scratch']:,} scratch)" if got == want
           else f"DDR bytes counted {got['weights']:,} weights + {got['scratch']:,} scratch, estimate "
                f"{want.get('weights', 0):,} + {want.get('scratch', 0):,}: DIFFERENT")
    ports = lib.ports()  # the last run's accesses per memory bank / m_axi bundle and iteration (hls/iseg_ports.h)
    summary = (f"csim PASS: {len(imgs)} image(s), {layers} layer outputs and labels bit-exact with the reference "
               f"(build {t_build:.1f} s, run {t_run / len(imgs):.2f} s/image); {cyc}; {ddr}; memory ports: "
               + ("every pipelined loop within its banks and its m_axi beats" if not ports else
                  f"{len(ports)} loop/buffer pair(s) exceed their banks or m_axi beats, so those loops cannot run "
                  f"at the II the estimate charges"))
    # bit-exact is the PASS; a count that differs from the estimate is the generator's model of its own engine
    # being wrong, said on a line of its own so that it is not lost in the summary
    warns = [f"{what} differ from the estimate: its figures (report.md, FPS) do not describe this engine; please "
             f"report it" for what, same in (("cycles", counted == estimated), ("DDR bytes", got == want)) if not same]
    return "\n".join([summary] + [f"  WARNING {e}" for e in warns + list(ports)])


def _check_csim_tools(outputs: tuple[str, ...]) -> None:
    """What the C-simulation build needs (C sources in the outputs, a C++ compiler, ap_int.h), checked
    before the project is written rather than found by ``csim.build`` after it."""
    from iseg.generator.csim import check_toolchain
    from iseg.generator.emit import has_testbench

    if not has_testbench(outputs):
        raise IsegError(f"--csim: the config's outputs ({', '.join(outputs)}) hold no C sources to simulate; "
                        "add hls or csim to outputs")
    check_toolchain()


# Set by the first SIGINT of main(). Python swallows an exception raised in a finaliser or weakref
# callback ("Exception ignored in ..."): an interrupt landing there is found through this flag at
# the next checkpoint instead (before the project is written, and before main reports success).
_INTERRUPTED = threading.Event()
_SIGNALLED: list[int] = []  # the signal that interrupted: exit 128 + it (130 for SIGINT, 143 for SIGTERM)
_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def _interrupt_once(signum: int, frame: object) -> None:
    """SIGINT or SIGTERM (``timeout``, a CI job's cancel, ``kill``): raise KeyboardInterrupt once and ignore the
    repeats, so the clean-up (temporary folder, a project moved aside, worker process) and the one-line report
    are not cut short by a second signal (``timeout`` signals the process and then its whole group). SIGTERM's
    default action ended the process at once, leaving the temporary folders."""
    _INTERRUPTED.set()
    _SIGNALLED.append(signum)
    for sig in _SIGNALS:
        signal.signal(sig, signal.SIG_IGN)
    raise KeyboardInterrupt


def _check_interrupted() -> None:
    """Raise the KeyboardInterrupt a finaliser swallowed (see ``_INTERRUPTED``)."""
    if _INTERRUPTED.is_set():
        raise KeyboardInterrupt


@quiet_closed_pipe
def main(argv: list[str] | None = None) -> int:
    """``gen-hls``: 0 done, 1 bad input (one line on stderr), 2 bad usage, 130 interrupted (143: SIGTERM)."""
    if threading.current_thread() is not threading.main_thread():  # no signal handlers off the main thread
        return _main(argv)
    _INTERRUPTED.clear()
    _SIGNALLED.clear()
    previous = {sig: signal.signal(sig, _interrupt_once) for sig in _SIGNALS}
    previous_hook = sys.unraisablehook

    def hook(unraisable: Any) -> None:  # the swallowed interrupt is reported once, by _main
        if not issubclass(unraisable.exc_type, KeyboardInterrupt):
            previous_hook(unraisable)

    sys.unraisablehook = hook
    try:
        return _main(argv)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        sys.unraisablehook = previous_hook
        _INTERRUPTED.clear()


def _main(argv: list[str] | None) -> int:
    ap = argparse.ArgumentParser(prog="gen-hls", description="Generate a Vitis HLS project of an integer-only "
                                 "Segmenter from a quantized checkpoint and a config.yaml.")
    ap.add_argument("config", help="config.yaml (see docs/gen-hls.md)")
    ap.add_argument("--csim", action="store_true", help="build the g++ C-simulation and check it bit for bit "
                    "against the numpy reference")
    ap.add_argument("--images", metavar="DIR|N", help="with --csim: N synthetic images (default 1) or a folder "
                    "of PNG/JPEG images of the model's size")
    ap.add_argument("--rtl", action="store_true", help="also write the Verilog units (rtl/), whatever the "
                    "config's outputs say")
    ap.add_argument("--plan", action="store_true",
                    help="also print the plan: the array, the engine limits, the layer table and the estimate "
                         "(the project is written as without it)")
    args = ap.parse_args(argv)
    try:
        from iseg.checkpoint import load
        from iseg.generator.config import load_config

        # Everything the command line and the inputs can get wrong is found here, before any work:
        # a bad flag, config, checkpoint or image must not cost (or replace) a project.
        if not args.config.strip():  # not "." (Path("") is): an unset "$CONFIG"
            raise IsegError("config: empty path (expected a config.yaml)")
        if args.images is not None and not args.csim:
            raise IsegError("--images needs --csim")
        cfg = load_config(args.config)
        if args.csim or "csim" in cfg.outputs:
            _check_csim_tools(cfg.outputs)
        ckpt = load(cfg.checkpoint)
        images = _images(ckpt.spec.image, args.images) if args.csim else None
        out = generate(args.config, quiet=not args.plan, extra_outputs=("rtl",) if args.rtl else (),
                       loaded=(cfg, ckpt))
        if "csim" in cfg.outputs and not args.csim:
            from iseg.generator.csim import build

            build(out)
        _check_interrupted()
        print(f"gen-hls: wrote {out}", flush=True)
        if images is not None:
            print(check_csim(out, cfg.checkpoint, images, ckpt=ckpt))
        _check_interrupted()
    except IsegError as exc:
        print(f"gen-hls: error: {exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # the reader of stdout left: errors.quiet_closed_pipe
        raise
    except OSError as exc:  # the file system refused a path the user named (a name too long): still one line
        from iseg.errors import os_error_line

        print(f"gen-hls: error: {os_error_line(exc)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as exc:
        from iseg.generator.write import InterruptedAfterWrite

        after = f" after {exc.args[0]} was written" if isinstance(exc, InterruptedAfterWrite) else ""
        print(f"gen-hls: interrupted{after}", file=sys.stderr)
        return 128 + (_SIGNALLED[0] if _SIGNALLED else signal.SIGINT)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
