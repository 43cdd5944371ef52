"""One ``iseg-host`` run: sources -> pipeline (decode+fit+load ‖ compute ‖ restore+write) -> summary.

The rules that protect the user's files live here:

* every path the run would write is checked first (:func:`check_outputs`, which the command
  line calls before it even opens the backend): a file where a folder is needed, a folder where
  a file is, an unwritable place or a video container OpenCV cannot write is one line naming
  the path and its option, before anything is built, computed or written;
* outputs that exist and were not written by an earlier run of the same settings are never
  overwritten without ``--overwrite`` (checked there too);
* nothing is created before the first frame that succeeds (output folder, journal, video):
  a run whose inputs all fail leaves the disk as it found it;
* an interrupted run resumes: the journal (:class:`~iseg.host.outputs.Journal`) lists the frames
  whose outputs are complete; they are not computed again (image files are not even decoded,
  unless an annotated video needs them, in which case their labels are read back from disk);
* undecodable inputs are reported one line each, skipped and counted, never silently dropped.
"""

from __future__ import annotations

import os
import statistics
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from iseg.errors import IsegError
from iseg.host.backends import Backend
from iseg.host.inputs import Failure, Frame, Placement, Source, count_frames, fit, iter_frames, restore, video_fps
from iseg.host.manifest import Manifest
from iseg.host.outputs import (
    JOURNAL,
    JPEG_MAX_SIDE,
    Journal,
    VideoOut,
    check_video_out,
    color_table,
    overlay,
    save_overlay,
)
from iseg.host.pipeline import SlotPool, run_pipeline
from iseg.imageio import check_output_dir, check_output_file, read_labels_png, save_labels_png

DEFAULT_VIDEO_FPS = 10.0


@dataclass
class Options:
    """What the command line decided, minus the backend."""

    out: Path
    fit: str = "pad"
    overlay: bool = False
    alpha: float = 0.5
    video_out: Path | None = None
    video_fps: float | None = None
    overwrite: bool = False
    max_frames: int | None = None
    progress: bool = True


@dataclass
class Summary:
    """End-of-run figures; ``as_json()`` is what ``--json`` prints."""

    backend: str
    project: str
    processed: int = 0
    resumed: int = 0
    failed: list[dict[str, str]] = field(default_factory=list)
    ignored: int = 0
    wall_s: float = 0.0
    latency_ms: list[float] = field(default_factory=list)
    compute_ms: list[float] = field(default_factory=list)
    host_ms: list[float] = field(default_factory=list)
    interrupted: bool = False
    video_out: str | None = None

    @staticmethod
    def _stats(xs: list[float]) -> dict[str, float] | None:
        if not xs:
            return None
        s = sorted(xs)
        return {"mean": round(statistics.fmean(s), 3), "p50": round(s[len(s) // 2], 3),
                "p95": round(s[min(len(s) - 1, int(0.95 * len(s)))], 3), "max": round(s[-1], 3)}

    @property
    def fps(self) -> float:
        return self.processed / self.wall_s if self.wall_s > 0 and self.processed else 0.0

    def as_json(self) -> dict[str, Any]:
        return {
            "backend": self.backend, "project": self.project,
            "frames": {"processed": self.processed, "resumed": self.resumed, "failed": len(self.failed),
                       "ignored_files": self.ignored},
            "failed": self.failed, "wall_s": round(self.wall_s, 3), "fps": round(self.fps, 3),
            "latency_ms": self._stats(self.latency_ms), "compute_ms": self._stats(self.compute_ms),
            "host_ms": self._stats(self.host_ms), "interrupted": self.interrupted, "video_out": self.video_out,
        }

    def lines(self) -> list[str]:
        out = [f"{self.processed} frame(s) processed, {self.resumed} already done (resumed), "
               f"{len(self.failed)} unreadable (skipped)"
               + (f", {self.ignored} non-image file(s) in folders ignored" if self.ignored else "")]
        if self.processed:
            lat, comp, host = (self._stats(x) for x in (self.latency_ms, self.compute_ms, self.host_ms))
            assert lat and comp and host
            out.append(f"{self.fps:.2f} frames/s on {self.backend} ({self.wall_s:.2f} s); latency per frame "
                       f"mean {lat['mean']:.1f} ms, p95 {lat['p95']:.1f} ms; compute mean {comp['mean']:.1f} ms; "
                       f"host work mean {host['mean']:.1f} ms")
        if self.video_out:
            out.append(f"annotated video: {self.video_out}")
        return out


@dataclass
class _Job:
    """One frame travelling through the pipeline."""

    item: Frame | Failure
    t0: float
    host_s: float = 0.0
    placement: Placement | None = None
    slot: int | None = None
    labels: np.ndarray | None = None  # model-size from the backend, or restored when replayed
    replay: bool = False  # outputs already complete (resume): only the video needs the frame
    compute_s: float = 0.0


def output_folders(out: Path) -> tuple[Path, Path]:
    """The folders a run writes its frames into (labels/, overlay/): never inputs (inputs.collect_sources)."""
    return out / "labels", out / "overlay"


def label_path(out: Path, name: str) -> Path:
    return output_folders(out)[0] / f"{name}.png"


def overlay_path(out: Path, name: str) -> Path:
    return output_folders(out)[1] / f"{name}.jpg"


def _settings(manifest: Manifest, opts: Options) -> dict[str, Any]:
    """What makes two runs' outputs interchangeable (the backend does not: all compute the same labels)."""
    return {"project": manifest.project, "weights_sha256": manifest.weights_sha256, "image": list(manifest.image),
            "fit": opts.fit, "overlay": opts.overlay, "alpha": opts.alpha,
            "video_out": str(opts.video_out) if opts.video_out else None}


def _first_existing(out: Path, sources: list[Source], opts: Options) -> Path | None:
    """An output this run would write that already exists (videos and cameras: their folder)."""
    for s in sources:
        if s.kind == "image":
            cands = [label_path(out, s.name)] + ([overlay_path(out, s.name)] if opts.overlay else [])
            for p in cands:
                if p.exists():
                    return p
        else:
            for d in (out / "labels" / s.name, out / "overlay" / s.name):
                if d.is_dir() and any(d.iterdir()):
                    return d
    if opts.video_out is not None and opts.video_out.exists():
        return opts.video_out
    return None


def _check_paths(sources: list[Source], opts: Options) -> None:
    """Every path this run would write can be written; else one line naming it and its option.

    Checked before the backend is opened, so a typo costs no C-simulation build and no frame,
    and nothing is left half-written. (--overwrite replaces files, never folders.)
    """
    out = opts.out
    check_output_dir(out, "--out")
    check_output_file(out / JOURNAL, "--out")
    for s in sources:
        if s.kind == "image":
            for p in [label_path(out, s.name)] + ([overlay_path(out, s.name)] if opts.overlay else []):
                check_output_file(p, "--out")
            continue
        folders = [(out / "labels" / s.name, ".png")] + ([(out / "overlay" / s.name, ".jpg")] if opts.overlay else [])
        for d, suffix in folders:  # a video's frames: <name>/<frame:06d>.png, the count unknown yet
            check_output_dir(d, "--out")
            if d.is_dir():
                clash = next((c for c in d.iterdir() if c.suffix == suffix and c.is_dir()), None)
                if clash is not None:
                    check_output_file(clash, "--out")
    if opts.video_out is not None:
        video = Path(os.path.abspath(opts.video_out))
        folders = [Path(os.path.abspath(f)) for f in output_folders(out)]
        own = {Path(os.path.abspath(out)), Path(os.path.abspath(out / JOURNAL))}
        if video in own or any(video.is_relative_to(f) for f in folders):  # (found only after every frame)
            raise IsegError(f"--video-out {opts.video_out}: is the run's own --out, journal or labels/ / overlay/ "
                            "folder (give a file beside them)")
        check_output_file(opts.video_out, "--video-out")
        check_video_out(opts.video_out)


def check_outputs(manifest: Manifest, sources: list[Source], opts: Options) -> tuple[Journal, bool]:
    """Check the outputs and decide fresh run vs resume, writing nothing; returns (journal, resuming).

    Refuses unwritable paths and outputs of unknown origin or other settings (without
    --overwrite). The command line calls it before opening the backend; :func:`segment` again.
    """
    out = opts.out
    _check_paths(sources, opts)
    journal = Journal(out, _settings(manifest, opts))
    if opts.overwrite:
        journal.start(fresh=True)
        return journal, False
    if journal.read():
        journal.start(fresh=False)
        return journal, True
    if journal.path.exists():
        diff = ", ".join(journal.differences())
        raise IsegError(f"--out {out} holds the results of a run with other settings ({diff}): "
                        f"use --overwrite to replace them, or another --out")
    clash = _first_existing(out, sources, opts)
    if clash is not None:
        raise IsegError(f"{clash} already exists: use --overwrite to replace it, or another --out")
    journal.start(fresh=True)
    return journal, False


def _complete(out: Path, name: str, journal: Journal, opts: Options) -> bool:
    """True when the journal lists ``name`` and its files are on disk (a deleted file is redone)."""
    if name not in journal.done:
        return False
    return label_path(out, name).is_file() and (not opts.overlay or overlay_path(out, name).is_file())


def segment(
    sources: list[Source],
    backend: Backend,
    opts: Options,
    ignored: int = 0,
    log: Callable[[str], None] | None = None,
) -> Summary:
    """Segment every frame of ``sources`` on ``backend`` and write the outputs; return the summary.

    ``log`` receives one line per skipped input (default: stderr, above the progress bar).
    KeyboardInterrupt stops the pipeline cleanly (files written so far are complete and
    journaled) and returns a summary with ``interrupted`` set.
    """
    manifest = backend.manifest
    out = opts.out
    summary = Summary(backend=backend.name, project=manifest.project, ignored=ignored)
    journal, resuming = check_outputs(manifest, sources, opts)
    table = color_table(manifest.class_colors)
    stop = threading.Event()  # shared by the pipeline and the slot pool
    pool = SlotPool(backend.slots, stop)

    video: VideoOut | None = None
    video_key = f"@video:{opts.video_out}"
    if opts.video_out is not None and not (resuming and video_key in journal.done and opts.video_out.exists()):
        fps = opts.video_fps or next((f for s in sources if s.kind != "image" and (f := video_fps(s))), None)
        video = VideoOut(opts.video_out, fps or DEFAULT_VIDEO_FPS)

    total = count_frames(sources)
    bar = tqdm(total=total, unit="frame", disable=not opts.progress, file=sys.stderr, dynamic_ncols=True)
    say = log or (lambda line: tqdm.write(line, file=sys.stderr))

    todo = []
    for s in sources:  # finished image files need no decoding at all unless the video wants them
        if s.kind == "image" and video is None and _complete(out, s.name, journal, opts):
            summary.resumed += 1
            bar.update(1)
        else:
            todo.append(s)

    def frames() -> Iterator[_Job]:
        it = iter_frames(todo, opts.max_frames)
        while True:
            t0 = time.perf_counter()
            try:
                item = next(it)
            except StopIteration:
                return
            yield _Job(item, t0, host_s=time.perf_counter() - t0)

    def prepare(job: _Job) -> _Job:
        t = time.perf_counter()
        if isinstance(job.item, Frame):
            frame = job.item
            if _complete(out, frame.name, journal, opts):
                job.replay = True
                if video is not None:
                    job.labels = read_labels_png(label_path(out, frame.name))
            elif opts.overlay and max(frame.image.shape[:2]) > JPEG_MAX_SIDE:
                # skipped like an unreadable input: found at writing time it stopped the whole run, its
                # label PNG already written and not journaled
                h, w = frame.image.shape[:2]
                job.item = Failure(frame.name, frame.source, f"{w}x{h} pixels: a JPEG overlay holds at most "
                                   f"{JPEG_MAX_SIDE} a side (run it without --overlay)")
            else:
                model_img, job.placement = fit(frame.image, manifest.image, opts.fit)
                job.host_s += time.perf_counter() - t
                job.slot = pool.take()  # waiting for a free input buffer is not host work
                t = time.perf_counter()
                backend.load(job.slot, model_img)
        job.host_s += time.perf_counter() - t
        return job

    def compute(job: _Job) -> _Job:
        if job.slot is not None:
            t = time.perf_counter()
            try:
                job.labels = backend.run(job.slot)
            finally:
                pool.give(job.slot)
            job.compute_s = time.perf_counter() - t
        return job

    def finish(job: _Job) -> None:
        t = time.perf_counter()
        item = job.item
        if isinstance(item, Failure):
            where = item.source.path if item.source.path is not None else item.name
            say(f"iseg-host: skipped {where}: {item.reason}")
            summary.failed.append({"input": str(where), "reason": item.reason})
            bar.update(1 if item.source.kind == "image" else 0)
            return
        if job.replay:
            summary.resumed += 1
            if video is not None and job.labels is not None:
                video.write(overlay(item.image, job.labels, table, opts.alpha))
            bar.update(1)
            return
        assert job.labels is not None and job.placement is not None
        labels = restore(job.labels, job.placement)
        blend = overlay(item.image, labels, table, opts.alpha) if (opts.overlay or video is not None) else None
        if video is not None:  # first: a frame the video refuses leaves no unjournaled label file
            video.write(blend)
        journal.begin()  # the output folder and journal appear with the first frame that succeeds
        save_labels_png(label_path(out, item.name), labels, manifest.class_colors)
        if opts.overlay:
            save_overlay(overlay_path(out, item.name), blend)
        done = time.perf_counter()
        host_ms = (job.host_s + done - t) * 1e3
        latency_ms = (done - job.t0) * 1e3
        journal.record(item.name, latency_ms=round(latency_ms, 3), compute_ms=round(job.compute_s * 1e3, 3))
        summary.processed += 1
        summary.latency_ms.append(latency_ms)
        summary.compute_ms.append(job.compute_s * 1e3)
        summary.host_ms.append(host_ms)
        bar.set_postfix_str(f"{latency_ms:.0f} ms", refresh=False)
        bar.update(1)

    t_start = time.perf_counter()
    completed = False
    try:
        run_pipeline(frames(), prepare, compute, finish, depth=backend.slots, stop=stop)
        completed = True
    except KeyboardInterrupt:
        summary.interrupted = True
    finally:
        summary.wall_s = time.perf_counter() - t_start
        bar.close()
        if video is not None:
            video.close(keep=completed)
            if completed and video.frames:
                journal.record(video_key, frames=video.frames)
        journal.close()
    if opts.video_out is not None and opts.video_out.exists():
        summary.video_out = str(opts.video_out)
    return summary
