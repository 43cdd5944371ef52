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


def build_projects(tmp_path_factory: pytest.TempPathFactory, variants: dict, prefix: str,
                   seed_offset: int = 0) -> dict[str, tuple[Path, Path, Path]]:
    """{name: (project, checkpoint, config)} of compiled hls + csim projects, one per (spec, array) variant;
    the checkpoint seed is len(name) + seed_offset."""
    from iseg.generator.cli import generate
    from iseg.generator.csim import build

    out = {}
    for name, (spec, array) in variants.items():
        folder = tmp_path_factory.mktemp(f"{prefix}_{name}")
        ckpt = make_ckpt(folder, spec, seed=len(name) + seed_offset)
        cfg = write_config(folder, ckpt, array=array, outputs=["hls", "csim"])
        proj = generate(cfg)
        build(proj)
        out[name] = (proj, ckpt, cfg)
    return out


def assert_csim_counts_the_plan(project: Path, ckpt: Path, plan, image_seed: int, n_attention: int) -> None:
    """Build and run a generated project's C-simulation on one calibration image: its labels are the
    reference's, and its cycle counter equals the plan's estimate for the frame and for each of its
    ``n_attention`` ATTENTION rows. And the DDR traffic the report states per frame is what the C-simulation
    moved through its m_axi ports: the blob's bytes on gmem0, the scratch's on gmem1 and gmem2."""
    import numpy as np

    from iseg.checkpoint import load
    from iseg.generator.csim import CsimLibrary, build
    from iseg.random_model import calibration_image
    from iseg.reference import run

    build(project)
    lib = CsimLibrary(project / "build" / "libiseg_csim.so")
    img = calibration_image(plan.spec.image, image_seed)
    assert np.array_equal(lib.run(img), run(load(ckpt), img)[0])
    assert lib.cycles(-1) == lib.manifest["estimate"]["cycles"] == plan.totals["cycles"]
    moved = lib.axi_bytes()
    assert moved["gmem0.read"] == plan.totals["weight_bytes_per_frame"] and moved["gmem0.write"] == 0
    assert moved["gmem1.read"] + moved["gmem1.write"] + moved["gmem2.read"] + moved["gmem2.write"] == \
        plan.totals["scratch_bytes_per_frame"]
    op_cycles = {o.name: o.cycles for o in plan.op_estimates}
    att = [r for r in plan.layers if r.op == "ATTENTION"]
    assert len(att) == n_attention
    for r in att:
        assert lib.cycles(r.index) == op_cycles[r.ops[0]], r.ops
