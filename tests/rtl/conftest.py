"""Fixtures of the RTL tests."""

from __future__ import annotations

import pytest


@pytest.fixture()
def yosys_allowed(monkeypatch: pytest.MonkeyPatch) -> None:
    """A test that decides about yosys itself: other suites may have switched it off for the session
    (ISEG_YOSYS=off, tests/generator/conftest.py)."""
    monkeypatch.delenv("ISEG_YOSYS", raising=False)
