"""Shared pytest options: fidelity levels are markers; the slow and Verilator levels are opt-in."""

from __future__ import annotations

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--slow", action="store_true", help="run slow end-to-end cases")
    parser.addoption("--verilator", action="store_true", help="also run RTL tests under Verilator")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    skips = {
        "slow": (config.getoption("--slow"), "slow case: run with --slow"),
        "verilator": (config.getoption("--verilator"), "Verilator run: opt in with --verilator"),
    }
    for item in items:
        for marker, (enabled, why) in skips.items():
            if marker in item.keywords and not enabled:
                item.add_marker(pytest.mark.skip(reason=why))
