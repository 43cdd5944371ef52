"""The emulated board end to end: a real gen-hls project's C-simulation == the numpy reference.

A random tiny checkpoint goes through ``gen-hls`` (outputs hls + csim, so its C-simulation library
is compiled with g++), then ``iseg-host --emulate`` segments images and a video with it. Every
frame's labels must equal ``iseg.reference.run`` on the frame the host fed, in input order. The
emulated board is handed the boards' buffers (packed pixel beats, label bytes, weights, an
uncleared scratch), so a host packing mistake fails here as it would on a board.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
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


# --------------------------------------------------------------------------------------------
# the manifest against the compiled library: the C code trusts the buffer sizes it was built with
# --------------------------------------------------------------------------------------------
_MAIN = "import sys; from iseg.host.cli import main; sys.exit(main(sys.argv[1:]))"


@pytest.mark.parametrize("edit", ["scratch_small", "image_small", "image_large"])
def test_a_manifest_that_differs_from_the_library_is_one_line(edit: str, tiny_project, tmp_path: Path) -> None:
    """Run in a child process: without the check these are a segfault or a heap corruption (abort)."""
    project, ckpt = tiny_project
    proj = Path(shutil.copytree(project, tmp_path / "proj"))
    doc = json.loads((proj / "manifest.json").read_text())
    h, w = ckpt.spec.image
    want = {"scratch_small": f"scratch_bytes 1000, the library {doc['scratch_bytes']}",
            "image_small": f"image {h // 2}x{w // 2}, the library {h}x{w}",
            "image_large": f"image {2 * h}x{2 * w}, the library {h}x{w}"}[edit]
    if edit == "scratch_small":
        doc["scratch_bytes"] = 1000
    else:
        doc["image"] = [h // 2, w // 2] if edit == "image_small" else [2 * h, 2 * w]
    (proj / "manifest.json").write_text(json.dumps(doc))
    Image.fromarray(calibration_image((h, w), seed=60)).save(tmp_path / "a.png")
    r = subprocess.run([sys.executable, "-c", _MAIN, "--emulate", str(proj), str(tmp_path / "a.png"), "--out",
                        str(tmp_path / "out"), "--no-progress"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 1, (r.returncode, r.stderr[-500:])
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"iseg-host: {proj / 'manifest.json'} does not match the "
                                                   f"C-simulation it would run: "), r.stderr
    assert want in lines[0]
    assert not (tmp_path / "out").exists()


def test_a_library_that_does_not_load_is_rebuilt_once(tiny_project, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    """A replaced .so whose hash stamp still matches is copied again from the cache (or recompiled);
    if that does not load either, the run stops with one line naming the library."""
    project, ckpt = tiny_project
    img = calibration_image(ckpt.spec.image, seed=61)
    Image.fromarray(img).save(tmp_path / "a.png")
    from iseg.generator import csim

    proj = Path(shutil.copytree(project, tmp_path / "proj"))
    lib = csim.build(proj, port_check=False)  # the emulated board's library, built here, never loaded
    assert lib == proj / "build" / "libiseg_csim_fast.so"
    good = lib.read_bytes()
    lib.write_bytes(b"junk, not ELF")
    assert main(["--emulate", str(proj), str(tmp_path / "a.png"), "--out", str(tmp_path / "out"), "--no-progress"]) == 0
    capsys.readouterr()
    assert lib.read_bytes() == good
    np.testing.assert_array_equal(_labels(tmp_path / "out" / "labels" / "a.png"), _want(ckpt, img))

    proj2 = Path(shutil.copytree(project, tmp_path / "proj2"))  # never loaded: dlopen has no handle on it
    lib2 = csim.build(proj2, port_check=False)
    lib2.write_bytes(b"junk, not ELF")
    digest = (proj2 / "build" / "libiseg_csim_fast.sha256").read_text().split()[0]  # sources digest, library sha
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / f"{digest}.so").write_bytes(b"junk in the cache too")
    monkeypatch.setenv("ISEG_CSIM_CACHE", str(tmp_path / "cache"))
    rc = main(["--emulate", str(proj2), str(tmp_path / "a.png"), "--out", str(tmp_path / "out2"), "--no-progress"])
    cap = capsys.readouterr()
    assert rc == 1
    lines = cap.err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in cap.err, cap.err
    assert lines[0].startswith(f"iseg-host: {lib2}: cannot load the C-simulation library (")
    assert not (tmp_path / "out2").exists()


def test_a_project_without_its_generated_headers_is_one_line(tiny_project, tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    """The sizes the library is compiled with come from src/weights_layout.h: no header, no guessing."""
    project, ckpt = tiny_project
    proj = Path(shutil.copytree(project, tmp_path / "proj"))
    (proj / "src" / "weights_layout.h").unlink()
    Image.fromarray(calibration_image(ckpt.spec.image, seed=62)).save(tmp_path / "a.png")
    rc = main(["--emulate", str(proj), str(tmp_path / "a.png"), "--out", str(tmp_path / "out"), "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 1 and err == (f"iseg-host: {proj / 'src' / 'weights_layout.h'}: cannot read it to check the "
                               f"C-simulation's sizes (No such file or directory); regenerate the project with "
                               f"gen-hls\n")
    assert not (tmp_path / "out").exists()
