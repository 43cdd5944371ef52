"""Fixtures of the gen-hls tests: small random checkpoints written once per session."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from iseg.checkpoint import save
from iseg.random_model import PRESETS, random_checkpoint


@pytest.fixture(scope="session", autouse=True)
def _csim_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Compiled C-simulation libraries are cached in a session folder, not the user's cache."""
    mp = pytest.MonkeyPatch()
    mp.setenv("ISEG_CSIM_CACHE", str(tmp_path_factory.mktemp("csim-cache")))
    mp.setenv("ISEG_YOSYS", "off")  # yosys on a real-size GEMM array takes minutes: tests/rtl measures units
    yield
    mp.undo()


@pytest.fixture(scope="session")
def tiny_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("ckpt") / "tiny.safetensors"
    save(random_checkpoint(PRESETS["tiny"], seed=3), path)
    return path


def small_spec(**kw):
    """A small model (fast reference and compile) with overrides."""
    return replace(PRESETS["tiny"], layers=1, dec_layers=1, **kw)


def write_config(folder: Path, ckpt: Path, **kw) -> Path:
    """A config next to a copy-free checkpoint reference (absolute path is fine in a test)."""
    data = {"checkpoint": str(ckpt), "output": "out", "project": "iseg_test", "board": "kv260"}
    data.update(kw)
    data = {k: v for k, v in data.items() if v is not None}
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def make_ckpt(folder: Path, spec, seed: int = 0) -> Path:
    path = folder / "model.safetensors"
    save(random_checkpoint(spec, seed=seed), path)
    return path
