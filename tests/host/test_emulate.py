"""The emulated board end to end: a real gen-hls project's C-simulation == the numpy reference.

Skipped (never faked) while gen-hls or its C-simulation library builder is unavailable: the
emulate backend must run the generated C++, not the numpy reference under another name.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from iseg import reference
from iseg.checkpoint import save
from iseg.host.cli import main
from iseg.random_model import PRESETS, calibration_image, random_checkpoint

pytestmark = pytest.mark.csim


def _generator():
    try:
        return importlib.import_module("iseg.generator.cli"), importlib.import_module("iseg.generator.csim")
    except ImportError as e:
        pytest.skip(f"gen-hls with C-simulation is not available yet ({e}); no generated project to emulate")


@pytest.fixture(scope="module")
def tiny_project(tmp_path_factory: pytest.TempPathFactory):
    gen_cli, _ = _generator()
    root = tmp_path_factory.mktemp("emulate")
    ckpt = random_checkpoint(PRESETS["tiny"], seed=0)
    save(ckpt, root / "tiny.safetensors")
    cfg = {"checkpoint": "tiny.safetensors", "output": "build", "project": "tiny", "board": "kv260",
           "outputs": ["hls", "csim"]}
    (root / "config.yaml").write_text(yaml.safe_dump(cfg))
    assert gen_cli.main([str(root / "config.yaml")]) == 0
    manifests = sorted((root / "build").rglob("manifest.json"))
    assert manifests, "gen-hls wrote no manifest.json"
    return manifests[0].parent, ckpt


def test_emulate_matches_the_reference(tiny_project, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    project, ckpt = tiny_project
    h, w = ckpt.spec.image
    (tmp_path / "in").mkdir()
    images = {f"f{i}": calibration_image((h, w), seed=10 + i) for i in range(3)}
    for name, img in images.items():
        Image.fromarray(img).save(tmp_path / "in" / f"{name}.png")
    rc = main(["--emulate", str(project), str(tmp_path / "in"), "--out", str(tmp_path / "out"),
               "--json", "--no-progress"])
    assert rc == 0, capsys.readouterr().err
    summary = json.loads(capsys.readouterr().out)
    assert summary["backend"] == "emulate" and summary["frames"]["processed"] == 3
    for name, img in images.items():
        want, _ = reference.run(ckpt, img)
        with Image.open(tmp_path / "out" / "labels" / f"{name}.png") as im:
            np.testing.assert_array_equal(np.asarray(im), want)
