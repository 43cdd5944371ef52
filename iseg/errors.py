"""The one exception type for bad user input.

Command-line entry points catch :class:`IsegError` and print its message as one line with a
non-zero exit, and an ``OSError`` (the file system refusing a path the user named: a name too
long, no permission) likewise (:func:`os_error_line`); anything else is a bug and keeps its
traceback.
"""


class IsegError(Exception):
    """Bad input (config, checkpoint, image, path): the message names the problem."""


def os_error_line(exc: OSError) -> str:
    """One line for an OSError the file system raised on a user's path (a name too long, no permission)."""
    where = f"{exc.filename}: " if exc.filename else ""
    return f"{where}{exc.strerror or exc}"
