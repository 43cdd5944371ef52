"""The one exception type for bad user input.

Command-line entry points catch :class:`IsegError` and print its message as one line with a
non-zero exit, and an ``OSError`` (the file system refusing a path the user named: a name too
long, no permission) likewise (:func:`os_error_line`); anything else is a bug and keeps its
traceback. A closed standard output (the reader left: ``iseg-host ... | head -1``) is neither: the entry points
exit 141 quietly (:func:`quiet_closed_pipe`), as a program the shell saw killed by SIGPIPE.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable


class IsegError(Exception):
    """Bad input (config, checkpoint, image, path): the message names the problem."""


def os_error_line(exc: OSError) -> str:
    """One line for an OSError the file system raised on a user's path (a name too long, no permission)."""
    where = f"{exc.filename}: " if exc.filename else ""
    return f"{where}{exc.strerror or exc}"


CLOSED_PIPE = 141  # 128 + SIGPIPE: the status a shell reports for a program whose reader went away


def quiet_closed_pipe(main: Callable[..., int]) -> Callable[..., int]:
    """A console entry point that exits CLOSED_PIPE without a traceback when the reader of its standard output goes
    away (a BrokenPipeError: the entry points' one-line OSError handlers let it through)."""

    @functools.wraps(main)
    def run(*args: object, **kwargs: object) -> int:
        try:
            try:
                return main(*args, **kwargs)
            finally:  # the last lines (argparse's help before its SystemExit too) are written here, not at exit
                sys.stdout.flush()
        except BrokenPipeError:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())  # the interpreter's own flush at exit would raise again
            return CLOSED_PIPE

    return run
