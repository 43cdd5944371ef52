"""Bad command lines, output paths and manifests: one line on stderr, a non-zero exit, nothing half-written.

The runs go through ``main()`` with the pynq stand-in (``host_standins``) as the board, so the
checks are those of the real command line; the ``Overlay`` entry of the stand-in's log tells
whether the board was opened, i.e. whether a check came before any work.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from host_standins import MODEL, expected_labels, standin_bitfile, write_project
from PIL import Image

from iseg.errors import IsegError
from iseg.host.cli import main
from iseg.host.manifest import load_manifest
from iseg.host.outputs import JOURNAL


@pytest.fixture
def argv(project: Path, tmp_path: Path) -> list[str]:
    """``--pynq PROJECT --bitfile F --no-progress``: the stand-in board, ready for inputs and --out."""
    bit = standin_bitfile(project, tmp_path / "iseg.bit")
    return ["--pynq", str(project), "--bitfile", str(bit), "--no-progress"]


@pytest.fixture
def image(tmp_path: Path) -> tuple[Path, np.ndarray]:
    img = np.random.default_rng(1).integers(0, 256, (*MODEL, 3), dtype=np.uint8)
    path = tmp_path / "a.png"
    Image.fromarray(img).save(path)
    return path, img


def _one_line(capsys: pytest.CaptureFixture[str], args: list[str], rc: int = 1) -> str:
    got = main(args)
    cap = capsys.readouterr()
    assert got == rc, cap
    lines = cap.err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in cap.err, cap.err
    return lines[0]


def _opened(log: list[tuple]) -> bool:
    return any(entry[0] == "Overlay" for entry in log)


def _tree(root: Path) -> dict[str, bytes | None]:
    """Every path under ``root`` with its bytes (None for folders): to show nothing changed."""
    return {p.relative_to(root).as_posix(): (p.read_bytes() if p.is_file() else None)
            for p in sorted(root.rglob("*"))}


# --------------------------------------------------------------------------------------------
# 1. output paths are checked before any work
# --------------------------------------------------------------------------------------------
def test_out_under_a_file_is_one_line_before_any_work(argv: list[str], image: tuple[Path, np.ndarray],
                                                      tmp_path: Path, pynq_log: list[tuple],
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "afile").write_text("a file")
    line = _one_line(capsys, [*argv, str(image[0]), "--out", str(tmp_path / "afile" / "h")])
    assert line == f"iseg-host: --out {tmp_path / 'afile' / 'h'}: {tmp_path / 'afile'} is not a folder"
    assert not _opened(pynq_log)
    assert (tmp_path / "afile").read_text() == "a file"


def test_video_out_under_a_file_is_one_line_and_leaves_no_out(argv: list[str], image: tuple[Path, np.ndarray],
                                                              tmp_path: Path, pynq_log: list[tuple],
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "afile").write_text("a file")
    video = tmp_path / "afile" / "v.mp4"
    line = _one_line(capsys, [*argv, str(image[0]), "--out", str(tmp_path / "v2"), "--video-out", str(video)])
    assert line == f"iseg-host: --video-out {video}: {tmp_path / 'afile'} is not a folder"
    assert not (tmp_path / "v2").exists() and not _opened(pynq_log)


def test_video_out_that_is_a_folder_is_one_line(argv: list[str], image: tuple[Path, np.ndarray], tmp_path: Path,
                                                pynq_log: list[tuple], capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "v.mp4").mkdir()
    line = _one_line(capsys, [*argv, str(image[0]), "--out", str(tmp_path / "o"), "--video-out",
                              str(tmp_path / "v.mp4")])
    assert line == f"iseg-host: --video-out {tmp_path / 'v.mp4'}: is a folder, expected a file path"
    assert not (tmp_path / "o").exists() and not _opened(pynq_log)


@pytest.mark.parametrize("video", ["o", "o/labels", "o/overlay", "o/overlay/v.mp4", "o/" + JOURNAL])
def test_video_out_among_the_runs_own_outputs_is_refused_up_front(argv: list[str], image: tuple[Path, np.ndarray],
                                                                 tmp_path: Path, pynq_log: list[tuple],
                                                                 capsys: pytest.CaptureFixture[str],
                                                                 video: str) -> None:
    """--video-out naming --out or a folder the run makes passed the check (they did not exist yet) and failed
    after every frame, naming a temporary file it left behind."""
    line = _one_line(capsys, [*argv, str(image[0]), "--out", str(tmp_path / "o"), "--overlay", "--video-out",
                              str(tmp_path / video)])
    assert line == (f"iseg-host: --video-out {tmp_path / video}: is the run's own --out, journal or labels/ / "
                    "overlay/ folder (give a file beside them)")
    assert not (tmp_path / "o").exists() and not _opened(pynq_log)


@pytest.mark.parametrize("blocker", [JOURNAL, "labels/a.png", "labels", "overlay/a.jpg"])
def test_overwrite_onto_a_folder_is_one_line_and_changes_nothing(
        blocker: str, argv: list[str], image: tuple[Path, np.ndarray], tmp_path: Path, pynq_log: list[tuple],
        capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    assert main([*argv, str(image[0]), "--out", str(out), "--overlay"]) == 0
    capsys.readouterr()
    target = out / blocker
    if target.is_dir():  # labels: a file where the run wants its folder
        for p in target.iterdir():
            p.unlink()
        target.rmdir()
        target.write_text("not a folder")
    else:
        target.unlink()
        target.mkdir()
        (target / "keep.txt").write_text("user data")
    before = _tree(out)
    pynq_log.clear()
    line = _one_line(capsys, [*argv, str(image[0]), "--out", str(out), "--overlay", "--overwrite"])
    # the one shared check of the iseg commands (iseg.imageio check_output_file): the path written, then why
    want = (f"--out {out / 'labels' / 'a.png'}: {target} is not a folder" if blocker == "labels"
            else f"--out {target}: is a folder, expected a file path")
    assert line == f"iseg-host: {want}"
    assert _tree(out) == before and not _opened(pynq_log)


def test_a_video_frame_file_that_is_a_folder_is_one_line(argv: list[str], tmp_path: Path, pynq_log: list[tuple],
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    cv2 = pytest.importorskip("cv2", reason="video support needs opencv-python-headless")
    clip = tmp_path / "clip.avi"
    vw = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (MODEL[1], MODEL[0]))
    for _ in range(2):
        vw.write(np.zeros((*MODEL, 3), np.uint8))
    vw.release()
    (tmp_path / "out" / "labels" / "clip" / "000001.png").mkdir(parents=True)
    line = _one_line(capsys, [*argv, str(clip), "--out", str(tmp_path / "out"), "--overwrite"])
    assert line.endswith(f"{tmp_path / 'out' / 'labels' / 'clip' / '000001.png'}: is a folder, expected a file path")
    assert not (tmp_path / "out" / JOURNAL).exists() and not _opened(pynq_log)


# --------------------------------------------------------------------------------------------
# 2. camera index
# --------------------------------------------------------------------------------------------
# The command line in a child process with the pynq stand-in: a crash there (OpenCV segfaults on
# VideoCapture(-1) in some builds) is a failed test, not a dead test session.
_CHILD = """
import sys
sys.path.insert(0, sys.argv.pop(1))
from host_standins import make_pynq_standin
sys.modules["pynq"] = make_pynq_standin([])
from iseg.host.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.parametrize("index", ["-1", "x"])
def test_a_bad_camera_index_is_refused_while_parsing(index: str, argv: list[str], tmp_path: Path) -> None:
    """VideoCapture(-1) can segfault inside OpenCV: it must never be reached (argparse's exit 2)."""
    r = subprocess.run([sys.executable, "-c", _CHILD, str(Path(__file__).parent), *argv, "--camera", index,
                        "--max-frames", "1", "--out", str(tmp_path / "h5")], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert r.stderr.splitlines()[-1] == (f"iseg-host: error: argument --camera: invalid camera index "
                                         f"{index if index == '-1' else repr(index)}: expected an integer >= 0")
    assert "Traceback" not in r.stderr and not (tmp_path / "h5").exists()


def test_a_negative_device_is_one_line(project: Path, image: tuple[Path, np.ndarray], tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    line = _one_line(capsys, ["--xrt", str(project), "--xclbin", "x.xclbin", "--device", "-2", str(image[0]),
                              "--out", str(tmp_path / "o")])
    assert line == "iseg-host: --device must be >= 0, got -2"


# --------------------------------------------------------------------------------------------
# 3. manifest numbers the buffers are allocated from (the emulated board's cross-check with the
#    compiled library is in test_emulate.py)
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("override", "expect"), [
    ({"scratch_bytes": 0}, "'scratch_bytes' must be in 1..2147483647, got 0"),
    ({"scratch_bytes": 10**14}, "'scratch_bytes' must be in 1..2147483647, got 100000000000000"),
    ({"image": [96000, 96000]}, "'image' must be [H, W], integers in 1..8192, got [96000, 96000]"),
    ({"image": [32, True]}, "'image' must be [H, W], integers in 1..8192, got [32, True]"),
    ({"image": [32, 44]}, "'image' 32x44 is not a multiple of 'patch' 8"),
    ({"patch": 0}, "'patch' must be in 1..8192, got 0"),
    ({"n_cls": 0}, "'n_cls' must be in 1..256, got 0"),
    ({"weights": {"file": "weights.bin", "bytes": 2**40, "sha256": "0" * 64}}, "'weights.bytes' must be in"),
    ({"ports": "pixels"}, "missing 'ports.pixels.word_bytes'"),
])
def test_manifest_numbers_are_bounded(override: dict, expect: str, tmp_path: Path, pynq_log: list[tuple],
                                      image: tuple[Path, np.ndarray], capsys: pytest.CaptureFixture[str]) -> None:
    proj = write_project(tmp_path / "proj", **override)
    with pytest.raises(IsegError, match=re.escape(expect)):
        load_manifest(proj)
    bit = standin_bitfile(proj, tmp_path / "iseg.bit")
    line = _one_line(capsys, ["--pynq", str(proj), "--bitfile", str(bit), str(image[0]), "--out",
                              str(tmp_path / "o"), "--no-progress"])
    assert line.startswith(f"iseg-host: {proj / 'manifest.json'}: ") and expect in line
    assert not (tmp_path / "o").exists() and not _opened(pynq_log)


def test_huge_beats_are_refused(tmp_path: Path) -> None:
    proj = write_project(tmp_path / "proj")
    doc = json.loads((proj / "manifest.json").read_text())
    doc["ports"]["labels"]["word_bytes"] = 10**9
    (proj / "manifest.json").write_text(json.dumps(doc))
    with pytest.raises(IsegError, match=re.escape("'ports.labels.word_bytes' must be in 1..64, got 1000000000")):
        load_manifest(proj)


@pytest.mark.parametrize("port,per,word", [("pixels", 32, 4), ("labels", 7, 1), ("pixels", 0, 4)])
def test_stream_beats_must_fit(tmp_path: Path, port: str, per: int, word: int) -> None:
    """words_per_beat: a beat of at most 64 bytes (32 pixel words are 128) that divides the frame (7 labels do not
    divide 32 x 48), at least one word."""
    proj = write_project(tmp_path / "proj")
    doc = json.loads((proj / "manifest.json").read_text())
    doc["ports"][port]["words_per_beat"] = per
    (proj / "manifest.json").write_text(json.dumps(doc))
    with pytest.raises(IsegError, match=re.escape(f"'ports.{port}.words_per_beat'")):
        load_manifest(proj)


# --------------------------------------------------------------------------------------------
# 4. nothing half-written: the container is checked first, and failed runs leave no folder
# --------------------------------------------------------------------------------------------
def test_unknown_video_container_is_refused_before_any_frame(argv: list[str], image: tuple[Path, np.ndarray],
                                                             tmp_path: Path, pynq_log: list[tuple],
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("cv2", reason="video support needs opencv-python-headless")
    video = tmp_path / "v1.xyz"
    line = _one_line(capsys, [*argv, str(image[0]), "--out", str(tmp_path / "v1"), "--video-out", str(video)])
    assert line.startswith(f"iseg-host: --video-out {video}: cannot write a '.xyz' video; use one of .mp4, .avi")
    assert not (tmp_path / "v1").exists() and not video.exists() and not _opened(pynq_log)
    assert not list(tmp_path.glob(".tmp-*"))


def test_a_run_whose_inputs_all_fail_leaves_no_output_folder(argv: list[str], tmp_path: Path, pynq_log: list[tuple],
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "junk.png").write_bytes(b"\x89PNG but not really")
    (tmp_path / "in" / "empty.jpg").write_bytes(b"")
    out = tmp_path / "out"
    assert main([*argv, str(tmp_path / "in"), "--out", str(out), "--video-out", str(tmp_path / "sub" / "v.avi")]) == 1
    cap = capsys.readouterr()
    assert len([line for line in cap.err.splitlines() if line.startswith("iseg-host: skipped ")]) == 2
    assert "0 frame(s) processed" in cap.out
    assert not out.exists() and not (tmp_path / "sub").exists()


def test_a_failed_run_keeps_the_users_files_and_adds_nothing(argv: list[str], tmp_path: Path, pynq_log: list[tuple],
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    (tmp_path / "bad.png").write_bytes(b"not an image")
    assert main([*argv, str(tmp_path / "bad.png"), "--out", str(out)]) == 1
    capsys.readouterr()
    assert _tree(out) == {"notes.txt": b"mine"}


def test_an_unopenable_video_is_one_line_and_leaves_no_output_folder(argv: list[str], tmp_path: Path) -> None:
    """In a child process: OpenCV reads its log settings once, at its first use."""
    pytest.importorskip("cv2", reason="video support needs opencv-python-headless")
    fake = tmp_path / "fake.mp4"
    fake.write_bytes(b"not a video")
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENCV_")}
    r = subprocess.run([sys.executable, "-c", _CHILD, str(Path(__file__).parent), *argv, str(fake), "--out",
                        str(tmp_path / "v3")], capture_output=True, text=True, timeout=120, env=env)
    assert r.returncode == 1, r.stderr
    assert r.stderr.splitlines() == [f"iseg-host: skipped {fake}: cannot open {fake}"]
    assert not (tmp_path / "v3").exists()


def test_the_journal_appears_with_the_first_good_frame(argv: list[str], image: tuple[Path, np.ndarray],
                                                       tmp_path: Path, pynq_log: list[tuple],
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    """One good input among bad ones: the run is journaled and resumable as before."""
    (tmp_path / "bad.png").write_bytes(b"not an image")
    out = tmp_path / "out"
    args = [*argv, str(tmp_path / "bad.png"), str(image[0]), "--out", str(out)]
    assert main(args) == 1
    capsys.readouterr()
    lines = (out / JOURNAL).read_text().splitlines()
    assert [json.loads(line).get("frame") for line in lines[1:]] == ["a"]
    with Image.open(out / "labels" / "a.png") as im:
        np.testing.assert_array_equal(np.asarray(im), expected_labels(image[1]))
    assert main(args) == 1
    assert "1 already done (resumed)" in capsys.readouterr().out


def test_out_inside_the_input_folder_resumes(argv: list[str], image: tuple[Path, np.ndarray], tmp_path: Path,
                                            pynq_log: list[tuple], capsys: pytest.CaptureFixture[str]) -> None:
    """``iseg-host ... shots --out shots``: the run again (to resume) took the first run's labels/a.png for an input
    and refused ("would replace the input"); the run's own output folders are not inputs."""
    shots = tmp_path / "shots"
    shots.mkdir()
    image[0].rename(shots / "a.png")
    args = [*argv, str(shots), "--out", str(shots)]
    assert main(args) == 0
    assert "1 frame(s) processed" in capsys.readouterr().out
    assert main([*args, "--overlay"]) == 1  # other settings: the journal says so, not a clash with its own labels
    assert "holds the results of a run with other settings (overlay)" in capsys.readouterr().err
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "0 frame(s) processed" in out and "1 already done (resumed)" in out


def test_emulate_without_a_csim_source_says_how_to_generate_it(project: Path, image: tuple[Path, np.ndarray],
                                                               tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    line = _one_line(capsys, ["--emulate", str(project), str(image[0]), "--out", str(tmp_path / "o")])
    assert line == f"iseg-host: {project}: no src/csim.cpp (generate the project with outputs hls or csim)"
    assert not (tmp_path / "o").exists()


# --------------------------------------------------------------------------------------------
# 5. found by fuzzing the command line: an input replaced, a hang, a run into the current folder
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("where, extra", [("labels", []), ("overlay", ["--overlay"])])
def test_an_output_that_would_replace_an_input_is_refused(where: str, extra: list[str], argv: list[str],
                                                          tmp_path: Path, pynq_log: list[tuple],
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    """``iseg-host ... labels/ --out . --overwrite`` replaced the input labels/a.png with its own label map."""
    img = np.random.default_rng(2).integers(0, 256, (*MODEL, 3), dtype=np.uint8)
    name = "a.png" if where == "labels" else "a.jpg"
    (tmp_path / where).mkdir()
    Image.fromarray(img).save(tmp_path / where / name)
    before = _tree(tmp_path)
    for over in ([], ["--overwrite"]):
        line = _one_line(capsys, [*argv, str(tmp_path / where / name), "--out", str(tmp_path), *extra, *over])
        assert line == (f"iseg-host: --out {tmp_path}: {where}/{name} would replace the input "
                        f"{tmp_path / where / name}")
    assert _tree(tmp_path) == before and not _opened(pynq_log)


def test_the_journal_or_video_out_replacing_an_input_is_refused(argv: list[str], image: tuple[Path, np.ndarray],
                                                                tmp_path: Path, pynq_log: list[tuple],
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / JOURNAL).write_text("mine")
    line = _one_line(capsys, [*argv, str(tmp_path / JOURNAL), str(image[0]), "--out", str(tmp_path), "--overwrite"])
    assert line == f"iseg-host: --out {tmp_path}: {JOURNAL} would replace the input {tmp_path / JOURNAL}"
    pytest.importorskip("cv2", reason="video support needs opencv-python-headless")
    clip = tmp_path / "clip.avi"
    clip.write_bytes(b"the user's video")  # never opened: the check comes first
    line = _one_line(capsys, [*argv, str(clip), "--out", str(tmp_path / "o"), "--video-out", str(clip),
                              "--overwrite"])
    assert line == f"iseg-host: --video-out {clip}: would replace the input {clip}"
    assert clip.read_bytes() == b"the user's video" and (tmp_path / JOURNAL).read_text() == "mine"
    assert not (tmp_path / "o").exists() and not _opened(pynq_log)


@pytest.mark.parametrize("args, line", [
    (["", "--out", "o"], "input '': empty path (name image files, folders or videos)"),
    (["a.png", "--out", ""], "--out: empty path (expected a folder)"),
    (["a.png", "--out", "o", "--video-out", ""], "--video-out: empty path (expected a file name)"),
])
def test_an_empty_path_is_not_the_current_folder(args: list[str], line: str, argv: list[str],
                                                 image: tuple[Path, np.ndarray], tmp_path: Path,
                                                 pynq_log: list[tuple], capsys: pytest.CaptureFixture[str],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """``--out ""`` wrote labels/ and the journal into the current folder; ``--video-out ""`` was ignored;
    an input ``""`` labelled the current folder, recursively."""
    monkeypatch.chdir(tmp_path)
    before = _tree(tmp_path)
    assert _one_line(capsys, [*argv, *args]) == f"iseg-host: {line}"
    assert _tree(tmp_path) == before and not _opened(pynq_log)


@pytest.mark.parametrize("flag", ["--emulate", "--pynq", "--xrt"])
def test_an_empty_project_path_is_one_line(flag: str, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """``--emulate "$PROJECT"`` with PROJECT unset ended in a StopIteration traceback (no flag of the group held a
    truthy value)."""
    monkeypatch.chdir(tmp_path)
    assert _one_line(capsys, [flag, "", "a.png", "--out", "o"]) == (
        f"iseg-host: {flag}: empty path (expected a generated project folder)")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("edit, expect", [
    (lambda doc: "[" * 100000 + "]" * 100000, "not valid JSON (nested too deeply)"),
    (lambda doc: doc.update(version=True), "version True is not supported"),
    (lambda doc: doc.update(version=1.0), "version 1.0 is not supported"),
    (lambda doc: doc["classes"]["colors"].__setitem__(0, [True, 0, 0]), "classes.colors must be"),
    *[(lambda doc, name=name: doc["weights"].update(file=name),
       f"'weights.file' must name a file inside the project folder, got {name!r}")
      for name in ("/dev/zero", "../weights.bin", "", ".", "w\0b")],
], ids=["deep", "version-true", "version-float", "colour-bool", "weights-devzero", "weights-parent", "weights-empty",
        "weights-dot", "weights-nul"])
def test_manifest_defects_found_by_fuzzing(edit, expect: str, tmp_path: Path) -> None:
    """A traceback (RecursionError, ValueError: embedded null byte), an accepted bool, or a run that read
    /dev/zero until the memory ran out."""
    proj = write_project(tmp_path / "proj")
    doc = json.loads((proj / "manifest.json").read_text())
    text = edit(doc)
    (proj / "manifest.json").write_text(text if isinstance(text, str) else json.dumps(doc))
    with pytest.raises(IsegError) as exc:
        load_manifest(proj)
    assert str(exc.value).startswith(f"{proj / 'manifest.json'}: ") and expect in str(exc.value)


def test_weights_that_are_not_a_regular_file_are_not_read(tmp_path: Path) -> None:
    """weights.bin a FIFO (or a link to /dev/zero) hung the run (or read until the memory ran out)."""
    proj = write_project(tmp_path / "proj")
    (proj / "weights.bin").unlink()
    os.mkfifo(proj / "weights.bin")
    with pytest.raises(IsegError, match=re.escape(f"{proj / 'weights.bin'}: not a regular file; the weights are the "
                                                  "project's weights.bin (regenerate the project with gen-hls)")):
        load_manifest(proj).read_weights()
    (proj / "weights.bin").unlink()
    (proj / "weights.bin").write_bytes(b"\0" * 10)
    with pytest.raises(IsegError, match=r"weights.bin: 10 bytes, manifest says \d+ "):
        load_manifest(proj).read_weights()


@pytest.mark.parametrize("fps", ["1e-300", "0.001", "0", "1001"])
def test_a_video_rate_opencv_cannot_write_is_refused_first(fps: str, argv: list[str], image: tuple[Path, np.ndarray],
                                                           tmp_path: Path, pynq_log: list[tuple],
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    """--video-fps 1e-300 passed the check, then OpenCV refused the writer after the first frame (three lines of
    its own on stderr, and "cannot write this container" of an .avi)."""
    line = _one_line(capsys, [*argv, str(image[0]), "--out", str(tmp_path / "o"), "--video-out",
                              str(tmp_path / "v.avi"), "--video-fps", fps])
    assert line == f"iseg-host: --video-fps must be in 0.1..1000, got {float(fps)}"
    assert not (tmp_path / "o").exists() and not _opened(pynq_log)
