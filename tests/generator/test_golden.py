"""Golden vectors: the fast checksum, and the worker process of ``gen-hls`` (same bytes as in-process)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from iseg.checkpoint import load
from iseg.errors import IsegError
from iseg.generator import emit
from iseg.generator.cli import GoldenWorker, generate
from iseg.random_model import calibration_image

from .conftest import write_config


def _checksum_int64(values: np.ndarray) -> int:
    """The test bench's checksum as the spec states it: int64 products, the sum wrapping mod 2^64."""
    flat = np.ascontiguousarray(values).reshape(-1).astype(np.int64)
    w = np.arange(flat.size, dtype=np.int64) % 65521 + 1
    return int(np.sum(flat * w, dtype=np.int64).astype(np.uint64))


@pytest.mark.parametrize("dtype,n", [("int8", 1000), ("int16", 200_000), ("uint8", 70_000), ("uint16", 3 << 20),
                                     ("int32", 5000), ("int64", 131_100)])
def test_checksum_matches_int64_formula(dtype: str, n: int) -> None:
    info = np.iinfo(dtype)
    rng = np.random.default_rng(n)
    v = rng.integers(max(info.min, -(2 ** 40)), min(info.max, 2 ** 40), size=n, endpoint=True).astype(dtype)
    assert emit.checksum(v) == _checksum_int64(v)
    top = np.full(n, info.max, dtype=dtype)  # the largest sums (uint16 x 3 Mi: two float chunks)
    assert emit.checksum(top) == _checksum_int64(top)
    assert emit.checksum(np.full(n, info.min, dtype=dtype)) == _checksum_int64(np.full(n, info.min, dtype=dtype))


def _tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_worker_and_in_process_projects_are_identical(tmp_path: Path, tiny_ckpt: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a = generate(write_config(tmp_path / "a", tiny_ckpt, outputs=["hls"]), golden_worker=True)
    b = generate(write_config(tmp_path / "b", tiny_ckpt, outputs=["hls"]), golden_worker=False)
    assert _tree(a) == _tree(b)


def test_worker_error_is_raised_in_the_parent(tmp_path: Path, tiny_ckpt: Path) -> None:
    ckpt = load(tiny_ckpt)
    wrong = calibration_image((ckpt.spec.image[0] + 8, ckpt.spec.image[1]), 0)  # the reference refuses it
    with GoldenWorker(ckpt, wrong) as worker, pytest.raises(IsegError, match="model expects"):
        worker.result(type("P", (), {"layers": ()})())
