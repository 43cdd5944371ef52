"""The run logic with a stand-in accelerator: outputs, order, overlap, failures, resume, no overwrite."""

from __future__ import annotations

import json
import random
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from host_standins import COLORS, MODEL, StandInBackend, expected_labels
from PIL import Image

from iseg.errors import IsegError
from iseg.host.inputs import collect_sources
from iseg.host.manifest import Manifest
from iseg.host.outputs import JOURNAL
from iseg.host.run import Options, segment


def _images(folder: Path, n: int, shape: tuple[int, int] = MODEL, seed: int = 0) -> list[np.ndarray]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    imgs = []
    for i in range(n):
        img = rng.integers(0, 256, (*shape, 3), dtype=np.uint8)
        Image.fromarray(img).save(folder / f"f{i:03d}.png")
        imgs.append(img)
    return imgs


def _run(manifest: Manifest, inputs: list[Path], out: Path, backend=None, **kw) -> tuple:
    backend = backend or StandInBackend(manifest)
    sources, ignored = collect_sources([str(p) for p in inputs])
    lines: list[str] = []
    summary = segment(sources, backend, Options(out=out, progress=False, **kw), ignored=ignored, log=lines.append)
    return summary, backend, lines


def _labels(out: Path, name: str) -> np.ndarray:
    with Image.open(out / "labels" / f"{name}.png") as im:
        assert im.mode == "P"
        pal = np.frombuffer(im.palette.tobytes(), np.uint8).reshape(-1, 3)
        np.testing.assert_array_equal(pal[: len(COLORS)], np.asarray(COLORS, np.uint8))
        return np.asarray(im)


@pytest.mark.parametrize("policy", ["pad", "resize"])
def test_label_pngs_for_model_and_other_sizes(manifest: Manifest, tmp_path: Path, policy: str) -> None:
    exact = _images(tmp_path / "in", 2)
    small = np.random.default_rng(9).integers(0, 256, (20, 30, 3), dtype=np.uint8)
    Image.fromarray(small).save(tmp_path / "in" / "small.png")
    big = np.full((64, 100, 3), 7, np.uint8)  # constant: every policy must label it 7 % 5 everywhere
    Image.fromarray(big).save(tmp_path / "in" / "big.png")
    summary, _, lines = _run(manifest, [tmp_path / "in"], tmp_path / "out", fit=policy)
    assert summary.processed == 4 and not summary.failed and not lines
    for i, img in enumerate(exact):
        np.testing.assert_array_equal(_labels(tmp_path / "out", f"f{i:03d}"), expected_labels(img))
    got = _labels(tmp_path / "out", "small")
    assert got.shape == (20, 30)
    if policy == "pad":
        np.testing.assert_array_equal(got, expected_labels(small))
    big_labels = _labels(tmp_path / "out", "big")
    assert big_labels.shape == (64, 100) and (big_labels == 2).all()


def test_overlay_blends_class_colours(manifest: Manifest, tmp_path: Path) -> None:
    img = np.zeros((*MODEL, 3), np.uint8)
    img[..., 0] = 1  # class 1 = red everywhere
    (tmp_path / "in").mkdir()
    Image.fromarray(img).save(tmp_path / "in" / "one.png")
    _run(manifest, [tmp_path / "in" / "one.png"], tmp_path / "out", overlay=True, alpha=0.5)
    with Image.open(tmp_path / "out" / "overlay" / "one.jpg") as im:
        ov = np.asarray(im.convert("RGB")).astype(int)
    assert abs(ov[..., 0].mean() - 128) < 4 and ov[..., 1].mean() < 4 and ov[..., 2].mean() < 4


def test_overlay_weights_by_hand() -> None:
    """(1 - alpha) image + alpha colour, by hand: 200 under black at alpha 0.25 is 150, under white 213.75 -> 214
    with the u8 rounding of (200 * 192 + 255 * 64 + 128) >> 8 = 214. The CLI test's alpha 0.5 on a black image
    cannot tell alpha from 1 - alpha (a swap of the weights survived every test)."""
    from iseg.host.outputs import overlay

    img = np.full((2, 3, 3), 200, np.uint8)
    table = np.zeros((256, 3), np.uint8)
    table[1] = 255
    labels = np.array([[0, 0, 1], [1, 0, 1]], np.uint8)
    out = overlay(img, labels, table, alpha=0.25)
    want = np.where(labels[..., None] == 1, 214, 150)
    assert np.array_equal(out, np.broadcast_to(want, out.shape))


def test_unreadable_inputs_are_reported_counted_and_skipped(manifest: Manifest, tmp_path: Path) -> None:
    _images(tmp_path / "in", 3)
    good = (tmp_path / "in" / "f001.png").read_bytes()
    (tmp_path / "in" / "f001.png").write_bytes(good[: len(good) // 3])  # truncated
    (tmp_path / "in" / "junk.png").write_bytes(b"\x89PNG but not really")
    (tmp_path / "in" / "notes.txt").write_text("ignored, and counted")
    summary, _, lines = _run(manifest, [tmp_path / "in"], tmp_path / "out")
    assert summary.processed == 2 and len(summary.failed) == 2 and summary.ignored == 1
    assert len(lines) == 2 and all(line.startswith("iseg-host: skipped ") and "\n" not in line for line in lines)
    assert sorted(Path(f["input"]).name for f in summary.failed) == ["f001.png", "junk.png"]
    assert sorted(p.name for p in (tmp_path / "out" / "labels").iterdir()) == ["f000.png", "f002.png"]
    assert summary.as_json()["frames"] == {"processed": 2, "resumed": 0, "failed": 2, "ignored_files": 1}


def test_an_image_too_wide_for_a_jpeg_overlay_is_skipped_not_fatal(manifest: Manifest, tmp_path: Path) -> None:
    """libjpeg writes at most 65500 pixels a side: that frame is skipped, the others are written."""
    _images(tmp_path / "in", 2)
    Image.new("RGB", (65501, 2), (7, 7, 7)).save(tmp_path / "in" / "wide.png")
    summary, _, lines = _run(manifest, [tmp_path / "in"], tmp_path / "out", overlay=True)
    assert summary.processed == 2 and [Path(f["input"]).name for f in summary.failed] == ["wide.png"]
    assert len(lines) == 1 and "65501x2" in lines[0] and "--overlay" in lines[0]
    assert sorted(p.name for p in (tmp_path / "out" / "labels").iterdir()) == ["f000.png", "f001.png"]
    Image.new("RGB", (65501, 2)).save(tmp_path / "wide_only.png")
    summary, _, _ = _run(manifest, [tmp_path / "wide_only.png"], tmp_path / "none", overlay=True)
    assert summary.processed == 0 and not (tmp_path / "none").exists()  # nothing half-written


def test_order_is_kept_under_random_delays(manifest: Manifest, tmp_path: Path) -> None:
    imgs = _images(tmp_path / "in", 12, seed=3)
    rng = random.Random(0)
    backend = StandInBackend(manifest, on_run=lambda i: time.sleep(rng.random() * 0.01),
                             on_load=lambda i: time.sleep(rng.random() * 0.01))
    summary, backend, _ = _run(manifest, [tmp_path / "in"], tmp_path / "out", backend=backend)
    assert summary.processed == 12
    for i, img in enumerate(imgs):
        np.testing.assert_array_equal(backend.loaded[i], img)
        np.testing.assert_array_equal(_labels(tmp_path / "out", f"f{i:03d}"), expected_labels(img))
    journal = (tmp_path / "out" / JOURNAL).read_text().splitlines()
    assert [json.loads(line)["frame"] for line in journal[1:]] == [f"f{i:03d}" for i in range(12)]


def test_next_frame_is_loaded_while_the_current_one_computes(manifest: Manifest, tmp_path: Path) -> None:
    """Frame 0's compute waits for frame 1's load: only an overlapped pipeline gets past it."""
    _images(tmp_path / "in", 3)
    second_loaded = threading.Event()
    overlapped: list[bool] = []

    def on_load(i: int) -> None:
        if i == 1:
            second_loaded.set()

    def on_run(i: int) -> None:
        if i == 0:
            overlapped.append(second_loaded.wait(timeout=10))

    backend = StandInBackend(manifest, on_run=on_run, on_load=on_load)
    summary, _, _ = _run(manifest, [tmp_path / "in"], tmp_path / "out", backend=backend)
    assert overlapped == [True] and summary.processed == 3


def test_interrupted_run_resumes_where_it_stopped(manifest: Manifest, tmp_path: Path) -> None:
    imgs = _images(tmp_path / "in", 6)

    def interrupt(i: int) -> None:
        if i == 3:
            raise KeyboardInterrupt

    first, _, _ = _run(manifest, [tmp_path / "in"], tmp_path / "out", backend=StandInBackend(manifest, interrupt))
    assert first.interrupted and first.processed == 3
    assert not list((tmp_path / "out" / "labels").glob(".tmp-*"))
    second, backend, _ = _run(manifest, [tmp_path / "in"], tmp_path / "out")
    assert not second.interrupted and second.resumed == 3 and second.processed == 3
    assert backend.runs == 3 and len(backend.loaded) == 3  # finished files were not even decoded
    for i, img in enumerate(imgs):
        np.testing.assert_array_equal(_labels(tmp_path / "out", f"f{i:03d}"), expected_labels(img))
    third, backend, _ = _run(manifest, [tmp_path / "in"], tmp_path / "out")
    assert third.resumed == 6 and backend.runs == 0


def test_a_resume_removes_what_a_killed_run_left(manifest: Manifest, tmp_path: Path) -> None:
    """A SIGKILL between a frame's write and its rename leaves .tmp-XXXXXXXX.png (atomic_write's mkstemp name) in
    labels/ or a video's frame folder: a resume removed none of them. It removes those, and only those."""
    _images(tmp_path / "in", 3)

    def interrupt(i: int) -> None:
        if i == 1:
            raise KeyboardInterrupt

    _run(manifest, [tmp_path / "in"], tmp_path / "out", backend=StandInBackend(manifest, interrupt))
    labels = tmp_path / "out" / "labels"
    (labels / "clip").mkdir()
    left = [labels / ".tmp-abcd1234.png", labels / "clip" / ".tmp-x_9yz0w1.png",
            tmp_path / "out" / ".tmp-q1w2e3r4.json"]
    mine = [labels / ".tmp-mine.png", labels / "notes.txt", labels / ".tmp-abcd1234.png.bak"]
    for f in left + mine:
        f.write_bytes(b"x")
    summary, _, _ = _run(manifest, [tmp_path / "in"], tmp_path / "out")
    assert summary.resumed == 1 and summary.processed == 2
    assert [f for f in left if f.exists()] == [] and all(f.read_bytes() == b"x" for f in mine)


def test_a_deleted_output_is_redone_on_resume(manifest: Manifest, tmp_path: Path) -> None:
    _images(tmp_path / "in", 3)
    _run(manifest, [tmp_path / "in"], tmp_path / "out")
    (tmp_path / "out" / "labels" / "f001.png").unlink()
    summary, backend, _ = _run(manifest, [tmp_path / "in"], tmp_path / "out")
    assert summary.processed == 1 and summary.resumed == 2 and backend.runs == 1


def test_existing_outputs_need_overwrite(manifest: Manifest, tmp_path: Path) -> None:
    _images(tmp_path / "in", 2)
    out = tmp_path / "out"
    _run(manifest, [tmp_path / "in"], out)
    before = (out / "labels" / "f000.png").read_bytes()
    with pytest.raises(IsegError, match="other settings.*fit.*--overwrite"):
        _run(manifest, [tmp_path / "in"], out, fit="resize")
    (out / JOURNAL).unlink()  # outputs of unknown origin
    with pytest.raises(IsegError, match="f000.png already exists.*--overwrite"):
        _run(manifest, [tmp_path / "in"], out)
    assert (out / "labels" / "f000.png").read_bytes() == before
    summary, backend, _ = _run(manifest, [tmp_path / "in"], out, fit="resize", overwrite=True)
    assert summary.processed == 2 and backend.runs == 2


def test_out_must_be_a_folder(manifest: Manifest, tmp_path: Path) -> None:
    _images(tmp_path / "in", 1)
    (tmp_path / "out").write_text("a file")
    with pytest.raises(IsegError, match="not a folder"):
        _run(manifest, [tmp_path / "in"], tmp_path / "out")


def test_a_backend_error_stops_the_run_with_its_message(manifest: Manifest, tmp_path: Path) -> None:
    _images(tmp_path / "in", 4)

    def fail(i: int) -> None:
        if i == 1:
            raise IsegError("the kernel did not signal ap_done")

    with pytest.raises(IsegError, match="ap_done"):
        _run(manifest, [tmp_path / "in"], tmp_path / "out", backend=StandInBackend(manifest, fail))
    assert [p.name for p in (tmp_path / "out" / "labels").iterdir()] == ["f000.png"]


def test_host_work_excludes_waiting_for_a_free_input_buffer(manifest: Manifest, tmp_path: Path) -> None:
    # compute-bound run: the prepare thread waits for a slot most of the time; that is not host work
    _images(tmp_path / "in", 6)
    backend = StandInBackend(manifest, on_run=lambda i: time.sleep(0.1))
    summary, _, _ = _run(manifest, [tmp_path / "in"], tmp_path / "out", backend=backend)
    assert summary.processed == 6
    assert np.mean(summary.compute_ms) >= 100
    assert np.mean(summary.host_ms) < 50  # was ~100 ms: the wait for the slot was counted
