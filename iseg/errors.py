"""The one exception type for bad user input.

Command-line entry points catch :class:`IsegError` and print its message as one line with a
non-zero exit; anything else is a bug and keeps its traceback.
"""


class IsegError(Exception):
    """Bad input (config, checkpoint, image, path): the message names the problem."""
