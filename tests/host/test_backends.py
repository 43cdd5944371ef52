"""Board backends against stand-ins of ``pynq`` and ``pyxrt``, and the CLI's one-line errors.

The stand-in modules are injected into ``sys.modules`` under the real names and record every
call; their "kernel" computes ``label = red % n_cls`` from the bytes it was handed, which checks
the pixel packing and label unpacking too. Nothing here is a board measurement.
"""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import numpy as np
import pytest
from host_standins import (
    MODEL,
    N_CLS,
    SCRATCH_ADDR,
    WEIGHTS_ADDR,
    expected_labels,
    make_pynq_standin,
    standin_kernel,
    write_project,
)
from PIL import Image

from iseg.host.backends import PynqBackend, XrtBackend, open_backend
from iseg.host.cli import main
from iseg.host.manifest import Manifest, load_manifest


@pytest.fixture
def pynq_log(monkeypatch: pytest.MonkeyPatch) -> list[tuple]:
    log: list[tuple] = []
    monkeypatch.setitem(sys.modules, "pynq", make_pynq_standin(log))
    return log


@pytest.fixture
def bitfile(tmp_path: Path) -> Path:
    p = tmp_path / "iseg.bit"
    p.write_bytes(b"stand-in bitstream")
    return p


def test_pynq_sequence(manifest: Manifest, pynq_log: list[tuple], bitfile: Path) -> None:
    be = PynqBackend(manifest, bitfile)
    h, w = MODEL
    allocs = [e for e in pynq_log if e[0] == "allocate"]
    assert [a[1] for a in allocs] == [(manifest.weights_bytes,), (4096,), (h * w * 4,), (h * w * 4,), (h * w,)]
    assert all(a[2] == "|u1" for a in allocs)
    np.testing.assert_array_equal(np.asarray(be.weights), np.frombuffer(manifest.read_weights(), np.uint8))
    writes = [e for e in pynq_log if e[0] == "write"]
    assert writes == [("write", 0x10, WEIGHTS_ADDR & 0xFFFFFFFF), ("write", 0x14, WEIGHTS_ADDR >> 32),
                      ("write", 0x1C, SCRATCH_ADDR), ("write", 0x20, 0)]
    assert pynq_log.index(("flush", WEIGHTS_ADDR)) < pynq_log.index(writes[0])
    setup = len(pynq_log)

    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for _ in range(3)]
    for i, img in enumerate(frames):
        slot = i % 2
        be.load(slot, img)
        np.testing.assert_array_equal(be.run(slot), expected_labels(img))
    per_frame = pynq_log[setup:]
    assert not any(e[0] == "allocate" for e in per_frame)  # weights (and everything) allocated once
    assert not any(e[0] == "write" and e[1] != 0x00 for e in per_frame)  # pointers written once
    first = per_frame[: per_frame.index(("invalidate", be.labels.physical_address)) + 1]
    kinds = [e[0] for e in first]
    pix0 = be.pixels[0].physical_address
    assert first[0] == ("flush", pix0)
    assert kinds.index("recv.transfer") < kinds.index("write") < kinds.index("send.transfer")
    assert ("write", 0x00, 1) in first and ("send.transfer", pix0) in first
    assert kinds.index("send.wait") < kinds.index("read") and kinds.index("recv.wait") < kinds.index("read")
    assert [e[1] for e in per_frame if e[0] == "send.transfer"] == [pix0, be.pixels[1].physical_address, pix0]
    be.close()
    assert sum(e[0] == "free" for e in pynq_log) == 5


def test_pynq_end_to_end_through_the_cli(project: Path, pynq_log: list[tuple], bitfile: Path,
                                         tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    imgs = [np.random.default_rng(i).integers(0, 256, (*MODEL, 3), dtype=np.uint8) for i in range(3)]
    (tmp_path / "in").mkdir()
    for i, img in enumerate(imgs):
        Image.fromarray(img).save(tmp_path / "in" / f"{i}.png")
    rc = main(["--pynq", str(project), "--bitfile", str(bitfile), str(tmp_path / "in"),
               "--out", str(tmp_path / "out"), "--json", "--no-progress"])
    assert rc == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["backend"] == "pynq" and summary["frames"]["processed"] == 3
    for i, img in enumerate(imgs):
        with Image.open(tmp_path / "out" / "labels" / f"{i}.png") as im:
            np.testing.assert_array_equal(np.asarray(im), expected_labels(img))
    assert sum(e[0] == "Overlay" for e in pynq_log) == 1
    assert sum(e[0] == "allocate" and e[1] == (1000,) for e in pynq_log) == 1


# --------------------------------------------------------------------------------------------
# pyxrt stand-in
# --------------------------------------------------------------------------------------------
def make_pyxrt_standin(log: list[tuple]) -> types.ModuleType:
    mod = types.ModuleType("pyxrt")
    mod.__doc__ = "test stand-in for XRT's pyxrt module (records calls; not a card)"
    mod.xclBOSyncDirection = types.SimpleNamespace(XCL_BO_SYNC_BO_TO_DEVICE="to", XCL_BO_SYNC_BO_FROM_DEVICE="from")
    mod.ert_cmd_state = types.SimpleNamespace(ERT_CMD_STATE_COMPLETED="completed")
    counter = iter(range(100))

    class device:  # noqa: N801 - the real module's spelling
        def __init__(self, index: int) -> None:
            log.append(("device", index))

        def load_xclbin(self, xb) -> str:
            log.append(("load_xclbin", xb.path))
            return "uuid"

    class xclbin:  # noqa: N801
        def __init__(self, path: str) -> None:
            self.path = Path(path).name

    class bo:  # noqa: N801
        normal = "normal"

        def __init__(self, dev, size: int, flags, group: int) -> None:
            self.id, self.size = next(counter), size
            self.host = np.zeros(size, np.uint8)
            self.device_mem = np.zeros(size, np.uint8)
            log.append(("bo", self.id, size, flags, group))

        def write(self, data, offset: int) -> None:
            log.append(("bo.write", self.id, len(data), offset))
            self.host[offset:offset + len(data)] = np.frombuffer(bytes(data), np.uint8)

        def sync(self, direction, size: int, offset: int) -> None:
            log.append(("bo.sync", self.id, direction, size, offset))
            if direction == "to":
                self.device_mem[:] = self.host
            else:
                self.host[:] = self.device_mem

        def read(self, size: int, offset: int) -> np.ndarray:
            log.append(("bo.read", self.id, size, offset))
            return self.host[offset:offset + size].copy()

    class run:  # noqa: N801
        def wait(self) -> str:
            log.append(("run.wait",))
            return "completed"

    class kernel:  # noqa: N801
        shared = "shared"

        def __init__(self, dev, uuid, name: str, mode) -> None:
            log.append(("kernel", name, mode))

        def group_id(self, i: int) -> int:
            return 100 + i

        def __call__(self, *bos) -> run:
            log.append(("kernel()", *(b.id for b in bos)))
            pixels, labels = bos[0], bos[1]
            labels.device_mem[:] = standin_kernel(pixels.device_mem)
            return run()

    mod.device, mod.xclbin, mod.bo, mod.kernel = device, xclbin, bo, kernel
    return mod


def test_xrt_sequence(manifest: Manifest, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    log: list[tuple] = []
    monkeypatch.setitem(sys.modules, "pyxrt", make_pyxrt_standin(log))
    xclbin = tmp_path / "iseg.xclbin"
    xclbin.write_bytes(b"stand-in")
    be = XrtBackend(manifest, xclbin)
    h, w = MODEL
    assert log[:3] == [("device", 0), ("load_xclbin", "iseg.xclbin"), ("kernel", "iseg_top", "shared")]
    bos = [e for e in log if e[0] == "bo"]
    # args order pixels, labels, weights, scratch -> group ids 100..103
    assert [(e[2], e[4]) for e in bos] == [(1000, 102), (4096, 103), (h * w * 4, 100), (h * w * 4, 100), (h * w, 101)]
    wid = bos[0][1]
    assert [e for e in log if e[0] in ("bo.write", "bo.sync") and e[1] == wid] == [
        ("bo.write", wid, 1000, 0), ("bo.sync", wid, "to", 1000, 0)]
    setup = len(log)
    rng = np.random.default_rng(1)
    for i in range(3):
        img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        be.load(i % 2, img)
        np.testing.assert_array_equal(be.run(i % 2), expected_labels(img))
    per_frame = log[setup:]
    assert not any(e[0] in ("bo", "bo.write") and e[1] == wid for e in per_frame)  # weights once
    calls = [e for e in per_frame if e[0] == "kernel()"]
    pix = [bos[2][1], bos[3][1]]
    assert calls == [("kernel()", p, bos[4][1], wid, bos[1][1]) for p in (pix[0], pix[1], pix[0])]
    kinds = [e[0] for e in per_frame[:6]]
    assert kinds == ["bo.write", "bo.sync", "kernel()", "run.wait", "bo.sync", "bo.read"]


# --------------------------------------------------------------------------------------------
# one-line errors
# --------------------------------------------------------------------------------------------
def _err(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    rc = main(argv)
    cap = capsys.readouterr()
    assert rc == 1, cap
    lines = cap.err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in cap.err, cap.err
    return lines[0]


def test_missing_board_library_is_one_line(project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture[str], bitfile: Path) -> None:
    monkeypatch.setitem(sys.modules, "pynq", None)  # import fails as on a PC
    monkeypatch.setitem(sys.modules, "pyxrt", None)
    Image.new("RGB", (8, 8)).save(tmp_path / "a.png")
    line = _err(capsys, ["--pynq", str(project), "--bitfile", str(bitfile), str(tmp_path / "a.png"),
                         "--out", str(tmp_path / "o")])
    assert line == ("iseg-host: the pynq backend needs the 'pynq' package (on the board image); "
                    "use --emulate on a PC")
    line = _err(capsys, ["--xrt", str(project), "--xclbin", "x.xclbin", str(tmp_path / "a.png"),
                         "--out", str(tmp_path / "o")])
    assert "the xrt backend needs the 'pyxrt' package" in line
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("case", ["missing", "file", "no-manifest", "bad-json", "format", "version", "no-image"])
def test_bad_project_is_one_line(case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    proj = tmp_path / "proj"
    if case == "file":
        proj.write_text("x")
    elif case != "missing":
        write_project(proj)
        m = proj / "manifest.json"
        doc = json.loads(m.read_text())
        if case == "no-manifest":
            m.unlink()
        elif case == "bad-json":
            m.write_text("{")
        elif case == "format":
            m.write_text(json.dumps({**doc, "format": "something-else"}))
        elif case == "version":
            m.write_text(json.dumps({**doc, "version": 99}))
        elif case == "no-image":
            del doc["image"]
            m.write_text(json.dumps(doc))
    Image.new("RGB", (8, 8)).save(tmp_path / "a.png")
    line = _err(capsys, ["--emulate", str(proj), str(tmp_path / "a.png"), "--out", str(tmp_path / "o")])
    expect = {"missing": "no such folder", "file": "not a folder", "no-manifest": "no manifest.json",
              "bad-json": "not valid JSON", "format": "format is 'something-else'", "version": "version 99",
              "no-image": "missing 'image'"}[case]
    assert line.startswith("iseg-host: ") and expect in line


def test_stale_weights_are_refused(manifest: Manifest, pynq_log: list[tuple], bitfile: Path) -> None:
    (manifest.root / "weights.bin").write_bytes(b"\0" * 1000)
    with pytest.raises(Exception, match="sha256 differs"):
        PynqBackend(manifest, bitfile)


def test_board_files_are_required(manifest: Manifest, pynq_log: list[tuple], tmp_path: Path) -> None:
    with pytest.raises(Exception, match="needs --bitfile"):
        open_backend("pynq", manifest)
    with pytest.raises(Exception, match="no such file"):
        open_backend("pynq", manifest, bitfile=str(tmp_path / "none.bit"))


def test_cli_input_errors_are_one_line(project: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "empty").mkdir()
    line = _err(capsys, ["--emulate", str(project), str(tmp_path / "empty"), "--out", str(tmp_path / "o")])
    assert line == f"iseg-host: input folder {tmp_path / 'empty'} holds no images or videos"
    line = _err(capsys, ["--emulate", str(project), str(tmp_path / "nope.jpg"), "--out", str(tmp_path / "o")])
    assert line == f"iseg-host: input {tmp_path / 'nope.jpg'}: no such file or folder"
    assert load_manifest(project).n_cls == N_CLS
