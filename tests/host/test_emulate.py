"""The emulated board end to end: a real gen-hls project's C-simulation == the numpy reference.

A random tiny checkpoint goes through ``gen-hls`` (outputs hls + csim, so its C-simulation library
is compiled with g++), then ``iseg-host --emulate`` segments images and a video with it. Every
frame's labels must equal ``iseg.reference.run`` on the frame the host fed, in input order. The
emulated board is handed the boards' buffers (packed pixel beats, label bytes, weights, an
uncleared scratch), so a host packing mistake fails here as it would on a board.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from host_standins import XRT_BOARD, generated_manifest
from PIL import Image

from iseg import reference
from iseg.checkpoint import QuantizedCheckpoint, save
from iseg.generator import cli as gen_cli
from iseg.host.backends import EmulateBackend
from iseg.host.cli import main
from iseg.host.inputs import fit, restore
from iseg.host.manifest import load_manifest
from iseg.random_model import PRESETS, calibration_image, random_checkpoint

pytestmark = pytest.mark.csim


@pytest.fixture(scope="module")
def tiny_project(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, QuantizedCheckpoint]:
    """``gen-hls`` on a random tiny checkpoint (board kv260); the compiled library is cached in tmp, not ~/.cache."""
    root = tmp_path_factory.mktemp("emulate")
    mp = pytest.MonkeyPatch()
    mp.setenv("ISEG_CSIM_CACHE", str(root / "csim-cache"))
    ckpt = random_checkpoint(PRESETS["tiny"], seed=0)
    save(ckpt, root / "tiny.safetensors")
    cfg = {"checkpoint": "tiny.safetensors", "output": "build", "project": "tiny", "board": XRT_BOARD,
           "array": {"rows": 8, "cols": 8}, "outputs": ["hls", "csim"]}  # explicit: independent of the auto choice
    (root / "config.yaml").write_text(yaml.safe_dump(cfg))
    try:
        assert gen_cli.main([str(root / "config.yaml")]) == 0
        assert (root / "build" / "build" / "libiseg_csim.so").is_file()
        yield root / "build", ckpt
    finally:
        mp.undo()


def _want(ckpt: QuantizedCheckpoint, image: np.ndarray) -> np.ndarray:
    """The reference's labels for what the host feeds (pad fit) and restores."""
    model_img, placement = fit(image, ckpt.spec.image, "pad")
    labels, _ = reference.run(ckpt, model_img)
    return restore(labels, placement)


def _labels(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im)


def test_images_match_the_reference(tiny_project, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    project, ckpt = tiny_project
    h, w = ckpt.spec.image
    (tmp_path / "in").mkdir()
    images = {f"f{i}": calibration_image((h, w), seed=10 + i) for i in range(3)}
    images["odd"] = calibration_image((h + 17, w - 9), seed=20)  # shrunk + padded, labels restored
    for name, img in images.items():
        Image.fromarray(img).save(tmp_path / "in" / f"{name}.png")
    rc = main(["--emulate", str(project), str(tmp_path / "in"), "--out", str(tmp_path / "out"),
               "--json", "--no-progress"])
    cap = capsys.readouterr()
    assert rc == 0, cap.err
    summary = json.loads(cap.out)
    assert summary["backend"] == "emulate" and summary["frames"]["processed"] == 4
    for name, img in images.items():
        np.testing.assert_array_equal(_labels(tmp_path / "out" / "labels" / f"{name}.png"), _want(ckpt, img),
                                      err_msg=name)


def test_video_frames_match_the_reference_in_order(tiny_project, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    cv2 = pytest.importorskip("cv2", reason="video support needs opencv-python-headless")
    project, ckpt = tiny_project
    h, w = ckpt.spec.image
    clip = tmp_path / "clip.avi"
    vw = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (w, h))
    assert vw.isOpened()
    for i in range(5):  # every frame different, so a reordering shows
        vw.write(np.ascontiguousarray(calibration_image((h, w), seed=30 + i)[:, :, ::-1]))
    vw.release()
    cap = cv2.VideoCapture(str(clip))  # the frames as decoded, which is what the host feeds
    decoded = []
    while (got := cap.read())[0]:
        decoded.append(np.ascontiguousarray(got[1][:, :, ::-1]))
    cap.release()
    assert len(decoded) == 5
    rc = main(["--emulate", str(project), str(clip), "--out", str(tmp_path / "out"), "--json", "--no-progress"])
    out = capsys.readouterr()
    assert rc == 0, out.err
    assert json.loads(out.out)["frames"]["processed"] == 5
    got = [_labels(tmp_path / "out" / "labels" / "clip" / f"{i:06d}.png") for i in range(5)]
    wants = [_want(ckpt, f) for f in decoded]
    assert len({w.tobytes() for w in wants}) > 1, "frames too alike to show the order"
    for i, (g, want) in enumerate(zip(got, wants, strict=True)):
        np.testing.assert_array_equal(g, want, err_msg=f"frame {i}")


def test_the_emulator_computes_from_the_packed_buffers(tiny_project) -> None:
    """It reads the pixel beats the host packed (a wrong channel order changes the labels), and
    its scratch is not cleared between frames, as on a board: the same frame gives the same labels."""
    project, ckpt = tiny_project
    be = EmulateBackend(load_manifest(project))
    a, b = (calibration_image(ckpt.spec.image, seed=s) for s in (40, 41))
    want_a, _ = reference.run(ckpt, a)
    be.load(0, a)
    be.load(1, b)
    beats = be.pixels[0].reshape(-1, 4)
    np.testing.assert_array_equal(beats[:, :3], a.reshape(-1, 3))
    assert not beats[:, 3].any()
    np.testing.assert_array_equal(be.run(0), want_a)
    be.run(1)
    np.testing.assert_array_equal(be.run(0), want_a)  # after another frame in the same scratch
    be.fmt.channels = [2, 1, 0]  # a host packing BGR where the kernel expects RGB
    be.load(0, a)
    bgr, _ = reference.run(ckpt, np.ascontiguousarray(a[:, :, ::-1]))
    assert not np.array_equal(bgr, want_a)
    np.testing.assert_array_equal(be.run(0), bgr)


def _keys(node: object, prefix: str = "") -> set[str]:
    if not isinstance(node, dict):
        return set()
    out = set()
    for k, v in node.items():
        out.add(prefix + k)
        out |= _keys(v, prefix + k + ".")
    return out


def test_the_host_tests_read_the_manifest_gen_hls_writes(tiny_project) -> None:
    """The stand-in projects of the other host tests carry exactly the keys of a gen-hls project."""
    project, _ = tiny_project
    real = json.loads((project / "manifest.json").read_text())
    assert _keys(real) == _keys(generated_manifest(XRT_BOARD))
