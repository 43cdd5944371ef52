"""`iseg` command line: random, info, infer, synth; bad input is one line and exit status 1."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from iseg import checkpoint as ck
from iseg import reference
from iseg.cli import main
from iseg.imageio import load_image


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "iseg.cli", *args], capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    p = tmp_path_factory.mktemp("m") / "tiny.safetensors"
    assert main(["random", "--preset", "tiny", "--out", str(p), "--seed", "4"]) == 0
    return p


def test_random_explicit_shape(tmp_path: Path) -> None:
    out = tmp_path / "r.safetensors"
    rc = main(["random", "--dim", "32", "--heads", "2", "--layers", "1", "--image", "24x40", "--patch", "8",
               "--classes", "4", "--decoder", "linear", "--softmax", "ivit", "--gelu", "shift", "--out", str(out)])
    assert rc == 0
    q = ck.load(out)
    assert (q.spec.dim, q.spec.heads, q.spec.layers, q.spec.image, q.spec.n_cls) == (32, 2, 1, (24, 40), 4)
    assert (q.spec.decoder, q.spec.softmax, q.spec.gelu, q.spec.mlp_dim) == ("linear", "ivit", "shift", 128)


def test_random_precise8_runs_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``iseg random --softmax precise8``: the file says so, info prints it, the reference runs."""
    out = tmp_path / "p8.safetensors"
    assert main(["random", "--preset", "tiny", "--softmax", "precise8", "--out", str(out), "--seed", "2"]) == 0
    q = ck.load(out)
    assert q.spec.softmax == "precise8"
    assert main(["info", str(out)]) == 0
    assert "softmax precise8" in capsys.readouterr().out
    labels, _ = reference.run(q, np.zeros((*q.spec.image, 3), np.uint8))
    assert labels.shape == q.spec.image


def test_info_text_and_json(model: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["info", str(model)]) == 0
    text = capsys.readouterr().out
    assert "64x64 RGB, patch 8" in text and "2 heads, 2 layers" in text and "mask transformer" in text
    assert main(["info", "--json", str(model)]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["parameters"] == ck.load(model).n_params and d["classes"] == 8


@pytest.mark.parametrize("content,msg", [(None, "no such checkpoint"), (b"hello, not a model", "not a safetensors"),
                                         ("trunc", "truncated")])
def test_info_bad_file_is_one_line(model: Path, tmp_path: Path, content, msg: str) -> None:
    p = tmp_path / "bad.safetensors"
    if content == "trunc":
        p.write_bytes(model.read_bytes()[:5000])
    elif content is not None:
        p.write_bytes(content)
    r = _cli("info", str(p))
    assert r.returncode == 1
    assert r.stderr.count("\n") == 1 and msg in r.stderr and "Traceback" not in r.stderr


def test_infer_writes_reference_labels(model: Path, tmp_path: Path) -> None:
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    rng = np.random.default_rng(0)
    arrays = []
    for i in range(2):
        a = rng.integers(0, 256, size=(64, 64, 3), dtype=np.uint8)
        Image.fromarray(a).save(imgs / f"im{i}.png")
        arrays.append(a)
    Image.fromarray(arrays[0][:, :, 0]).save(imgs / "gray.png")  # grayscale input is converted
    (imgs / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    out = tmp_path / "out"
    # broken.png is skipped (on stderr) and makes the exit status 1; the others are still labelled
    assert main(["infer", str(model), str(imgs), "--out", str(out)]) == 1
    q = ck.load(model)
    for i, a in enumerate(arrays):
        want, _ = reference.run(q, a)
        got = np.asarray(Image.open(out / f"im{i}.png"))
        assert np.array_equal(got, want)
    assert (out / "gray.png").exists() and not (out / "broken.png").exists()
    # the grayscale input is labelled as the RGB image of three equal channels
    gray_rgb = np.repeat(arrays[0][:, :, :1], 3, axis=2)
    assert np.array_equal(np.asarray(Image.open(out / "gray.png")), reference.run(q, gray_rgb)[0])
    # no overwrite without --overwrite: the file is left as it is
    (out / "im0.png").write_bytes(b"keep")
    main(["infer", str(model), str(imgs / "im0.png"), "--out", str(out)])
    assert (out / "im0.png").read_bytes() == b"keep"


def test_load_image_modes(tmp_path: Path) -> None:
    a = np.arange(48, dtype=np.uint8).reshape(4, 4, 3)
    Image.fromarray(a).convert("RGBA").save(tmp_path / "a.png")
    Image.fromarray(a).convert("P").save(tmp_path / "p.png")
    Image.fromarray(np.arange(16, dtype=np.uint16).reshape(4, 4) * 4000).save(tmp_path / "g16.png")
    assert np.array_equal(load_image(tmp_path / "a.png"), a)
    assert load_image(tmp_path / "p.png").shape == (4, 4, 3)
    g = load_image(tmp_path / "g16.png")
    assert g.shape == (4, 4, 3) and g[0, 1, 0] == 4000 >> 8


def test_synth_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``iseg synth`` writes the samples of iseg.synth's generator for its --count, --size and --seed (plain layout,
    PNG: lossless), not only some files; its line names no validation split the plain layout does not have."""
    from iseg.synth import make_split, read_folder

    assert main(["synth", "--count", "2", "--size", "32x48", "--seed", "1", "--out", str(tmp_path / "d")]) == 0
    assert capsys.readouterr().out == f"wrote 2 samples (32x48, plain layout: train-split scenes) to {tmp_path / 'd'}\n"
    assert len(list((tmp_path / "d" / "images").glob("*.png"))) == 2
    got = list(read_folder(tmp_path / "d"))
    want = list(make_split("train", 2, (32, 48), seed=1))
    assert [name for _, _, name in got] == ["0000", "0001"]
    for (img, lab, _), (w_img, w_lab) in zip(got, want, strict=True):
        assert img.shape == (32, 48, 3) and np.array_equal(img, w_img) and np.array_equal(lab, w_lab)


def test_bad_arguments_are_one_line() -> None:
    r = _cli("random", "--preset", "tiny", "--image", "63", "--out", "/tmp/never.safetensors")
    assert r.returncode == 1 and "not a multiple of patch 8" in r.stderr and "Traceback" not in r.stderr
    assert not Path("/tmp/never.safetensors").exists()
    r = _cli("infer", "/nonexistent.safetensors", "x.png", "--out", "/tmp/o")
    assert r.returncode == 1 and "no such checkpoint file" in r.stderr


def test_exit_status_convention(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """0 done, 1 bad input (one line), 2 malformed command line: as gen-hls and iseg-host."""
    assert main([]) == 2
    with pytest.raises(SystemExit) as exc:
        main(["synth", "--count", "2"])  # --size, --out missing: argparse's usage error
    assert exc.value.code == 2
    capsys.readouterr()
    assert main(["synth", "--count", "2", "--size", "24by40", "--out", str(tmp_path / "d")]) == 1
    err = capsys.readouterr().err
    assert err == "iseg: error: bad --size '24by40': expected HxW such as 128x96\n"


@pytest.mark.parametrize("argv, line", [
    (["random", "--preset", "tiny", "--image", "", "--out", "o"], "--image: empty value (an unset variable?)"),
    (["train", "--steps", "1", "--size", "", "--out", "o"], "--size: empty value (an unset variable?)"),
    (["info", ""], "checkpoint: empty value (an unset variable?)"),
    (["infer", "", "a.png", "--out", "o"], "checkpoint: empty value (an unset variable?)"),
])
def test_an_empty_argument_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                      monkeypatch: pytest.MonkeyPatch, argv: list[str], line: str) -> None:
    """``--image ''`` (an unset "$SIZE") was taken for "the preset's size" and wrote a 64x64 model, exit 0; an empty
    checkpoint was reported as ".: is a folder"."""
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 1
    assert capsys.readouterr().err == f"iseg: error: {line}\n"
    assert list(tmp_path.iterdir()) == []


def test_module_entry_is_the_cli(tmp_path: Path) -> None:
    """``python -m iseg.synth`` is ``iseg synth``: same parser, same one-line error, same status."""
    r = subprocess.run([sys.executable, "-m", "iseg.synth", "--count", "1", "--size", "24by40", "--out",
                        str(tmp_path / "d")], capture_output=True, text=True, timeout=300)
    assert r.returncode == 1 and r.stderr == "iseg: error: bad --size '24by40': expected HxW such as 128x96\n"
    assert not (tmp_path / "d").exists()


@pytest.mark.parametrize("tool", ["iseg", "gen-hls"])
def test_closed_stdout_exits_quietly(model: Path, tmp_path: Path, tool: str) -> None:
    """A reader that leaves early (`iseg info m | head -1`, `gen-hls cfg --plan | head -1`) is no error of the
    user's: no traceback, no error line, the status of a program killed by SIGPIPE (141), as
    errors.quiet_closed_pipe promises (iseg-host's main is wrapped the same way)."""
    if tool == "iseg":
        cmd = ["iseg.cli", "info", str(model)]
    else:
        cfg = tmp_path / "c.yaml"
        cfg.write_text(f"checkpoint: {model}\noutput: out\nproject: p\nboard: kv260\noutputs: [report]\n")
        cmd = ["iseg.generator.cli", str(cfg), "--plan"]
    proc = subprocess.Popen([sys.executable, "-m", *cmd], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()  # before the interpreter has started: every write of the command meets a closed pipe
    err = proc.stderr.read()
    assert proc.wait(timeout=300) == 141, err.decode()
    assert err == b""
