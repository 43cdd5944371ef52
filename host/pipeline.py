"""Three-stage frame pipeline: prepare ‖ compute ‖ finish, in order.

The accelerator is idle whenever the host is decoding, fitting or encoding, so those run on
their own threads: while frame ``i`` computes, frame ``i + 1`` is decoded, pre-processed and
loaded into the other input buffer (double buffering), and frame ``i - 1`` is post-processed
and written. Each stage is one thread and the stages talk through bounded FIFO queues, so
frames leave in the order they came in and at most ``depth`` frames wait between stages
(memory stays bounded on endless camera input).

Pillow, zlib, OpenCV and the board drivers release the GIL in their heavy parts, which is what
makes threads (rather than processes, which would have to copy every frame) enough here.

:class:`SlotPool` hands out the backend's input buffers: the prepare stage takes a free slot
before loading a frame into it, the compute stage gives it back once the frame has run.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

A = TypeVar("A")
B = TypeVar("B")
C = TypeVar("C")

_END = object()
_POLL = 0.05  # seconds between checks of the stop flag while blocked


class Stopped(Exception):
    """Raised inside a stage when the pipeline is shutting down (another stage failed, or Ctrl-C)."""


class SlotPool:
    """``n`` numbered buffers; :meth:`take` blocks until one is free (or the pipeline stops)."""

    def __init__(self, n: int, stop: threading.Event):
        self._free: queue.Queue[int] = queue.Queue()
        for i in range(n):
            self._free.put(i)
        self._stop = stop

    def take(self) -> int:
        while True:
            if self._stop.is_set():
                raise Stopped
            try:
                return self._free.get(timeout=_POLL)
            except queue.Empty:
                continue

    def give(self, slot: int) -> None:
        self._free.put(slot)


def _put(q: queue.Queue[Any], item: Any, stop: threading.Event) -> None:
    while True:
        if stop.is_set():
            raise Stopped
        try:
            q.put(item, timeout=_POLL)
            return
        except queue.Full:
            continue


def _get(q: queue.Queue[Any], stop: threading.Event) -> Any:
    while True:
        if stop.is_set():
            raise Stopped
        try:
            return q.get(timeout=_POLL)
        except queue.Empty:
            continue


def run_pipeline(
    items: Iterable[A],
    prepare: Callable[[A], B],
    compute: Callable[[B], C],
    finish: Callable[[C], None],
    depth: int = 2,
    stop: threading.Event | None = None,
) -> None:
    """Run ``finish(compute(prepare(x)))`` for every ``x`` of ``items``, stages overlapped, order kept.

    ``items`` is iterated (decoding happens there) and ``prepare`` is called on a reader thread,
    ``compute`` on the calling thread, ``finish`` on a writer thread. The first exception of any
    stage stops the pipeline and is re-raised here once every thread has exited. When the
    compute stage stops (its own exception, KeyboardInterrupt included), the frames it already
    computed are still finished: an interrupted accelerator's work is not thrown away.
    """
    stop = stop or threading.Event()  # set: reader and compute stop at once
    writer_abort = threading.Event()  # set: the writer stops without draining (it failed, or is told to)
    q_in: queue.Queue[Any] = queue.Queue(maxsize=depth)
    q_out: queue.Queue[Any] = queue.Queue(maxsize=depth)
    errors: list[BaseException] = []

    def reader() -> None:
        try:
            for x in items:
                _put(q_in, prepare(x), stop)
            _put(q_in, _END, stop)
        except Stopped:
            pass
        except BaseException as e:  # handed to the caller
            errors.append(e)
            stop.set()

    def writer() -> None:
        try:
            while (y := _get(q_out, writer_abort)) is not _END:
                finish(y)
        except Stopped:
            pass
        except BaseException as e:
            errors.append(e)
            writer_abort.set()
            stop.set()

    threads = [threading.Thread(target=reader, name="iseg-prepare", daemon=True),
               threading.Thread(target=writer, name="iseg-finish", daemon=True)]
    for t in threads:
        t.start()
    try:
        while (x := _get(q_in, stop)) is not _END:
            _put(q_out, compute(x), stop)
    except Stopped:
        pass
    except BaseException as e:
        errors.insert(0, e)
    finally:
        stop.set()  # the reader, if still running, has nothing left to feed
        try:
            _put(q_out, _END, writer_abort)  # the writer finishes what was computed, then ends
        except Stopped:
            pass
        for t in threads:
            t.join()
    if errors:
        raise errors[0]
