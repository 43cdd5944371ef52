"""Every ``iseg`` / ``gen-hls`` / ``iseg-host`` command of docs/walkthrough.md parses with the real parsers.

The commands are taken from the page's ```bash blocks (continuation lines joined, comments and anything
after a shell operator dropped) and handed to each program's own ``main``, with
``ArgumentParser.parse_args`` wrapped so that it stops right after parsing: nothing is executed (no
training, no C-simulation). Abbreviated options are turned off while parsing, so a flag renamed in the
code fails here even when the old name is a prefix of the new one. ``iseg-host``'s own argument checks
(``--bitfile`` belongs to ``--pynq``, ...) run too, since they need no files.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import re
import shlex
from pathlib import Path
from unittest import mock

import pytest

DOC = Path(__file__).resolve().parents[1] / "docs" / "walkthrough.md"
PROGRAMS = ("iseg", "gen-hls", "iseg-host")
SHELL_OPERATORS = {"|", "||", "&", "&&", ";", ">", ">>", "<", "2>", "2>&1", "(", ")"}


def doc_commands(text: str) -> list[list[str]]:
    """The argument lists (program first) of the commands in the ```bash blocks of ``text``."""
    commands = []
    for block in re.findall(r"^```bash\n(.*?)^```", text, flags=re.M | re.S):
        for line in block.replace("\\\n", " ").splitlines():
            lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
            lexer.whitespace_split = True
            words = []
            for word in lexer:
                if word in SHELL_OPERATORS or set(word) <= set("|&;<>()"):
                    break
                words.append(word)
            if len(words) > 1 and words[0] in PROGRAMS:
                commands.append(words)
    return commands


COMMANDS = doc_commands(DOC.read_text(encoding="utf-8"))


class Parsed(Exception):
    """Raised by the wrapped ``parse_args`` with the namespace, before the program does any work."""

    def __init__(self, namespace: argparse.Namespace) -> None:
        super().__init__("parsed")
        self.namespace = namespace


def _no_abbrev(parser: argparse.ArgumentParser) -> None:
    parser.allow_abbrev = False
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                _no_abbrev(sub)


_parse_args = argparse.ArgumentParser.parse_args


def _parse_and_stop(self: argparse.ArgumentParser, args=None, namespace=None):
    _no_abbrev(self)
    raise Parsed(_parse_args(self, args, namespace))


def _entry(program: str):
    if program == "iseg":
        from iseg.cli import main
    elif program == "gen-hls":
        from iseg.generator.cli import main
    else:
        from iseg.host.cli import build_parser

        def main(argv):  # the parser alone: iseg.host.cli.main also sets OpenCV's logging variables
            return build_parser().parse_args(argv)
    return main


def parse(words: list[str]) -> argparse.Namespace:
    """Parse ``words`` (program first) with that program's parser; fail with argparse's or the program's message."""
    program, argv = words[0], words[1:]
    main = _entry(program)
    err = io.StringIO()
    with mock.patch.object(argparse.ArgumentParser, "parse_args", _parse_and_stop), contextlib.redirect_stderr(err):
        try:
            status = main(argv)
        except Parsed as done:
            return done.namespace
        except SystemExit as exc:
            pytest.fail(f"{shlex.join(words)}\n  exit {exc.code}: {err.getvalue().strip()}")
    pytest.fail(f"{shlex.join(words)}\n  refused while parsing (status {status}): {err.getvalue().strip()}")


def test_doc_has_commands_of_every_program():
    assert DOC.is_file(), DOC
    for program in PROGRAMS:
        assert any(words[0] == program for words in COMMANDS), f"no `{program}` command found in {DOC.name}"


@pytest.mark.parametrize("words", COMMANDS, ids=[" ".join(w)[:80] for w in COMMANDS])
def test_command_parses(words: list[str]):
    ns = parse(words)
    if words[0] == "iseg":
        assert ns.command == words[1]
    elif words[0] == "iseg-host":
        from iseg.errors import IsegError
        from iseg.host.cli import _check

        try:
            _check(ns)
        except IsegError as exc:
            pytest.fail(f"{shlex.join(words)}\n  refused: {exc}")


def test_a_renamed_flag_is_caught():
    """The check itself: an unknown flag, and a prefix of a real one, both fail."""
    for words in (["iseg-host", "--emulate", "p", "x.png", "--out", "o", "--overlays"],
                  ["iseg-host", "--emulate", "p", "x.png", "--out", "o", "--overl"],
                  ["gen-hls", "config.yaml", "--csims"],
                  ["iseg", "quantize", "fp32.safetensors", "--cal", "synthetic:1", "--out", "q.safetensors"]):
        with pytest.raises(pytest.fail.Exception):
            parse(words)
