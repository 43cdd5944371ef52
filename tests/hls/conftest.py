"""Fixtures of the HLS C-simulation tests: ONE compiled harness per session (g++ is slow)."""

from __future__ import annotations

import pytest
from _hls_harness import BEAT, Harness, build


@pytest.fixture(scope="session")
def hls(tmp_path_factory: pytest.TempPathFactory) -> Harness:
    """The harness on a small, deliberately awkward array (R=4, C=8: no test size is a multiple), 8-byte beats."""
    h = Harness(build(tmp_path_factory.mktemp("hls_build")))
    assert h.beat == BEAT, "Scratch's default beat must be the harness's AXI_BYTES"
    return h
