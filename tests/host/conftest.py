"""Fixtures for the host tests (helpers in ``host_standins``)."""

from __future__ import annotations

from pathlib import Path

import pytest
from host_standins import write_project

from iseg.host.manifest import Manifest, load_manifest


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return write_project(tmp_path / "proj")


@pytest.fixture
def manifest(project: Path) -> Manifest:
    return load_manifest(project)
