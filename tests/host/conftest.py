"""Fixtures for the host tests (helpers in ``host_standins``)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from host_standins import make_pynq_standin, write_project

from iseg.host.manifest import Manifest, load_manifest


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return write_project(tmp_path / "proj")


@pytest.fixture
def manifest(project: Path) -> Manifest:
    return load_manifest(project)


@pytest.fixture
def pynq_log(monkeypatch: pytest.MonkeyPatch) -> list[tuple]:
    """The pynq stand-in installed as ``pynq`` for the test; its call log (what the board was asked to do)."""
    log: list[tuple] = []
    monkeypatch.setitem(sys.modules, "pynq", make_pynq_standin(log))
    return log
