"""Video in, annotated video out (OpenCV), with the pynq stand-in as the accelerator."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from host_standins import MODEL, make_pynq_standin, standin_bitfile
from PIL import Image

from iseg.host.cli import main

cv2 = pytest.importorskip("cv2", reason="video support needs opencv-python-headless")


def _write_video(path: Path, n: int, size: tuple[int, int]) -> None:
    h, w = size
    vw = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 12.0, (w, h))
    assert vw.isOpened()
    for i in range(n):
        frame = np.zeros((h, w, 3), np.uint8)
        frame[:, : (i + 1) * w // n] = (40 * i, 100, 200)
        vw.write(frame)
    vw.release()


def _read_video(path: Path) -> tuple[int, tuple[int, int], float]:
    cap = cv2.VideoCapture(str(path))
    n, size = 0, None
    fps = cap.get(cv2.CAP_PROP_FPS)
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        n, size = n + 1, frame.shape[:2]
    cap.release()
    return n, size, fps


def test_video_round_trip(project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                          capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setitem(sys.modules, "pynq", make_pynq_standin([]))
    standin_bitfile(project, tmp_path / "iseg.bit")
    clip = tmp_path / "clip.mp4"
    _write_video(clip, 7, (40, 56))  # not the model size (32 x 48): shrunk + padded, labels restored
    out = tmp_path / "out"
    argv = ["--pynq", str(project), "--bitfile", str(tmp_path / "iseg.bit"), str(clip), "--out", str(out),
            "--video-out", str(tmp_path / "annotated.mp4"), "--overlay", "--json", "--no-progress"]
    assert main(argv) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["frames"]["processed"] == 7 and summary["video_out"] == str(tmp_path / "annotated.mp4")
    n, size, fps = _read_video(tmp_path / "annotated.mp4")
    assert (n, size) == (7, (40, 56)) and abs(fps - 12.0) < 0.01
    labels = sorted((out / "labels" / "clip").iterdir())
    assert [p.name for p in labels] == [f"{i:06d}.png" for i in range(7)]
    with Image.open(labels[0]) as im:
        assert im.size == (56, 40)
    assert len(list((out / "overlay" / "clip").iterdir())) == 7
    assert not list(tmp_path.glob(".tmp-*"))

    # a second run resumes everything; the video is complete, so nothing is redone
    assert main(argv) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["frames"]["processed"] == 0 and again["frames"]["resumed"] == 7


def test_images_to_video_and_unopenable_video(project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setitem(sys.modules, "pynq", make_pynq_standin([]))
    standin_bitfile(project, tmp_path / "iseg.bit")
    (tmp_path / "in").mkdir()
    for i in range(3):
        Image.fromarray(np.full((*MODEL, 3), 30 * i, np.uint8)).save(tmp_path / "in" / f"{i}.png")
    (tmp_path / "in" / "broken.mp4").write_bytes(b"not a video")
    rc = main(["--pynq", str(project), "--bitfile", str(tmp_path / "iseg.bit"), str(tmp_path / "in"),
               "--out", str(tmp_path / "out"), "--video-out", str(tmp_path / "v.avi"), "--no-progress"])
    cap = capsys.readouterr()
    assert rc == 1  # one input was unreadable: reported, the rest written
    assert [line for line in cap.err.splitlines() if "skipped" in line] == [
        f"iseg-host: skipped {tmp_path / 'in' / 'broken.mp4'}: cannot open {tmp_path / 'in' / 'broken.mp4'}"]
    assert "1 unreadable (skipped)" in cap.out
    n, size, fps = _read_video(tmp_path / "v.avi")
    assert (n, size, fps) == (3, MODEL, 10.0)


def test_annotated_video_gets_the_mode_of_an_ordinary_file(tmp_path: Path) -> None:
    # written to a mkstemp file (0600) and renamed: the video must end up with the umask's mode, like the PNGs
    import os

    from iseg.host.outputs import VideoOut

    old = os.umask(0o022)
    try:
        video = VideoOut(tmp_path / "v.avi", 10.0)
        video.write(np.zeros((16, 16, 3), np.uint8))
        video.close(keep=True)
    finally:
        os.umask(old)
    assert (tmp_path / "v.avi").stat().st_mode & 0o777 == 0o644


def test_frames_too_large_for_mpeg4_are_one_line_and_leave_no_folder(tmp_path: Path,
                                                                     capfd: pytest.CaptureFixture[str]) -> None:
    """A first frame wider than 8191 pixels: "cannot write this container (try .mp4 ...)" of an .mp4, after the
    video's folders were made (left behind, empty)."""
    from iseg.errors import IsegError
    from iseg.host.outputs import VideoOut

    video = VideoOut(tmp_path / "new" / "v.mp4", 10.0)
    with pytest.raises(IsegError, match=r"cannot write 8200x16 frames as mp4v: MPEG-4 holds at most 8191"):
        video.write(np.zeros((16, 8200, 3), np.uint8))
    video.close(keep=False)
    assert not (tmp_path / "new").exists()
    # OpenCV's own "[ERROR] ... Failed to initialize VideoWriter" lines (FFmpeg's are the command line's to quiet)
    assert "[ERROR" not in capfd.readouterr().err


def test_a_frame_that_does_not_decode_is_reported(project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """Corrupt bytes in the middle of an MJPEG AVI: the decoder dropped what did not decode (one frame, in a review's
    clip: "19 processed, 0 unreadable", exit 0, labels 10.. belonging to frames 11..; here it stops after 8) and the
    run said nothing. Now the shortfall against the container's frame count is reported and the exit status is 1."""
    monkeypatch.setitem(sys.modules, "pynq", make_pynq_standin([]))
    standin_bitfile(project, tmp_path / "iseg.bit")
    clip = tmp_path / "clip.avi"
    vw = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (48, 32))
    rng = np.random.default_rng(0)
    for _ in range(20):
        vw.write(rng.integers(0, 256, (32, 48, 3), dtype=np.uint8))
    vw.release()
    data = bytearray(clip.read_bytes())
    mid = len(data) // 2
    data[mid:mid + 1500] = bytes(1500)  # inside one frame's JPEG data: its Huffman decode fails
    clip.write_bytes(bytes(data))
    argv = ["--pynq", str(project), "--bitfile", str(tmp_path / "iseg.bit"), str(clip), "--out",
            str(tmp_path / "out"), "--no-progress"]
    assert main(argv) == 1
    cap = capsys.readouterr()
    n = len(list((tmp_path / "out" / "labels" / "clip").iterdir()))
    assert 0 < n < 20 and f"{n} frame(s) processed, 0 already done (resumed), 1 unreadable (skipped)" in cap.out
    assert f"iseg-host: skipped {clip}: decoded {n} of the 20 frames {clip} lists: a frame that did not" in cap.err


def test_a_video_that_cannot_take_its_name_is_one_line_and_leaves_no_temporary_file(tmp_path: Path) -> None:
    """The rename into place failing (a folder of that name made meanwhile) named the temporary file and left it
    in the user's folder."""
    from iseg.errors import IsegError
    from iseg.host.outputs import VideoOut

    video = VideoOut(tmp_path / "v.avi", 10.0)
    video.write(np.zeros((16, 16, 3), np.uint8))
    (tmp_path / "v.avi").mkdir()
    (tmp_path / "v.avi" / "x").write_text("in the way\n")
    with pytest.raises(IsegError) as exc:
        video.close(keep=True)
    assert str(exc.value).startswith(f"--video-out {tmp_path / 'v.avi'}: cannot write (")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["v.avi"]
