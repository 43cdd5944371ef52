"""`iseg info / infer / random` on bad input: one exact line on stderr, exit 1, nothing written.

Each case is a defect a reviewer reproduced (a traceback, work lost after the fact, a bad value
accepted or silently replaced); the assertions pin the message, the status and the files left.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from safetensors import safe_open
from safetensors.numpy import load_file, save_file

from iseg import checkpoint as ck
from iseg import reference
from iseg.cli import main
from iseg.errors import IsegError

BUILTIN = Path(__file__).resolve().parents[1] / "model" / "builtin" / "builtin_int8.safetensors"


def _cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "iseg.cli", *args], capture_output=True, text=True, timeout=300,
                          cwd=cwd)


def _one_line(r: subprocess.CompletedProcess, text: str) -> None:
    """Exit status 1, exactly one stderr line, equal to ``iseg: error: TEXT``."""
    assert "Traceback" not in r.stderr
    assert r.stderr == f"iseg: error: {text}\n"
    assert r.returncode == 1


def _files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


@pytest.fixture(scope="module")
def meta() -> dict[str, Any]:
    with safe_open(str(BUILTIN), "numpy") as fh:
        return json.loads(fh.metadata()["iseg"])


@pytest.fixture(scope="module")
def tensors() -> dict[str, np.ndarray]:
    return load_file(str(BUILTIN))


def _write(path: Path, tensors: dict[str, np.ndarray], meta: Any) -> Path:
    save_file(tensors, str(path), metadata={"iseg": meta if isinstance(meta, str) else json.dumps(meta)})
    return path


# --------------------------------------------------------------------------------------------
# 1. output paths are checked before any work, and writes are atomic
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("out,msg", [
    ("afile/x.safetensors", "--out afile/x.safetensors: {cwd}/afile is not a folder"),
    (".", "--out .: is a folder, expected a file path"),
    ("", "--out: empty path (expected a file name)"),
    ("adir", "--out adir: is a folder, expected a file path"),
    ("new/", "--out new/: names a folder, expected a file path"),
])
def test_random_bad_out_is_one_line(tmp_path: Path, out: str, msg: str) -> None:
    (tmp_path / "afile").write_bytes(b"keep")
    (tmp_path / "adir").mkdir()
    before = _files(tmp_path)
    r = _cli("random", "--out", out, cwd=tmp_path)
    _one_line(r, msg.format(cwd=tmp_path))
    assert _files(tmp_path) == before and (tmp_path / "afile").read_bytes() == b"keep"


def test_infer_out_under_a_file_is_refused_before_work(tmp_path: Path) -> None:
    (tmp_path / "afile").write_bytes(b"")
    img = tmp_path / "a.png"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(img)
    r = _cli("infer", str(BUILTIN), str(img), "--out", "afile/sub", cwd=tmp_path)
    _one_line(r, f"--out afile/sub: {tmp_path}/afile is not a folder")
    r = _cli("infer", str(BUILTIN), str(img), "--out", str(img), cwd=tmp_path)
    _one_line(r, f"--out {img}: exists and is not a folder")


def test_checkpoint_save_failure_is_one_line_and_keeps_the_old_file(tmp_path: Path) -> None:
    """A write that fails late (here: the second output of qat) replaces nothing and names the path."""
    q = ck.load(BUILTIN)
    out = tmp_path / "q.safetensors"
    out.write_bytes(b"old")

    def fail() -> None:
        raise IsegError("second output refused")

    with pytest.raises(IsegError, match="^second output refused$"):
        ck.save(q, out, before_rename=fail)
    assert out.read_bytes() == b"old" and _files(tmp_path) == ["q.safetensors"]
    with pytest.raises(IsegError, match=r"cannot write the checkpoint \(Is a directory\)$"):
        ck.save(q, tmp_path)  # os.replace onto a folder: an OSError, reported as one line
    assert _files(tmp_path) == ["q.safetensors"]


# --------------------------------------------------------------------------------------------
# 2. checkpoint metadata: types and every integer constant's range, named with the file
# --------------------------------------------------------------------------------------------
def _mutate(meta: dict[str, Any], where: str, value: Any) -> dict[str, Any]:
    m = copy.deepcopy(meta)
    keys = where.split("/")
    d = m
    for k in keys[:-1]:
        d = d[int(k)] if isinstance(d, list) else d[k]
    last = keys[-1]
    if isinstance(d, list):
        d[int(last)] = value
    else:
        d[last] = value
    return m


@pytest.mark.parametrize("where,value,msg", [
    ("model/class_colors/0", "abc",
     "model.class_colors[0] must be an [r, g, b] triple of integers in 0..255, got 'abc'"),
    ("model/class_colors/0", [1.5, 2, 3],
     "model.class_colors[0] must be an [r, g, b] triple of integers in 0..255, got [1.5, 2, 3]"),
    ("model/class_colors/1", [1, 2, 256],
     "model.class_colors[1] must be an [r, g, b] triple of integers in 0..255, got [1, 2, 256]"),
    ("model/class_names/0", 5, "model.class_names[0] must be a string, got 5"),
    ("model/dim", 0, "model.dim must be a positive integer, got 0"),
    ("model/dim", True, "model.dim must be a positive integer, got True"),
    ("model/image", 96, "model.image must be [H, W] positive integers, got 96"),
    ("model/layers", 1 << 40, "checkpoint is missing tensor 'enc.3.qkv.weight' (model.layers = 1099511627776)"),
    ("consts/enc.0.gelu/x0", -2 ** 62,
     "constant enc.0.gelu.x0 = -4611686018427387904 must be a negative int32 (-2^31 <= x0 < 0)"),
    ("consts/enc.0.gelu/L", 10 ** 30,
     f"constant enc.0.gelu.L = {10 ** 30} outside [0, 2^31 - 129] (the HLS computes L - x in int32)"),
    ("consts/enc.0.gelu/L", 2 ** 40,
     f"constant enc.0.gelu.L = {2 ** 40} outside [0, 2^31 - 129] (the HLS computes L - x in int32)"),
    ("consts/enc.0.gelu/L", 2 ** 31 - 128,
     f"constant enc.0.gelu.L = {2 ** 31 - 128} outside [0, 2^31 - 129] (the HLS computes L - x in int32)"),
    ("consts/enc.0.gelu/em", -1,
     "constant enc.0.gelu.em = -1 outside [0, |x0| * 2^(n+1)) (the shift exponential's range)"),
    ("consts/enc.0.gelu/k", 1.0, "constant enc.0.gelu.k = 1.0 must be an integer"),
    ("consts/enc.0.gelu/x0", -(1 << 12),
     "constant enc.0.gelu: x0 = -4096, n = 20 (L = 133, k = 3) let the GELU exp reach 4258267136 >= 2^31; "
     "the sigmoid would leave [0, 127]"),
    ("consts/enc.0.add1/ma", 1 << 31, "constant enc.0.add1.ma = 2147483648 is not an int32"),
    ("consts/enc.0.add1/ma", True, "constant enc.0.add1.ma = True is not an int32"),
    ("info", [1], "metadata 'info' must be an object, got list"),
])
def test_bad_metadata_is_one_line_naming_file_and_field(tmp_path: Path, meta, tensors, where: str, value: Any,
                                                        msg: str) -> None:
    p = _write(tmp_path / "m.safetensors", tensors, _mutate(meta, where, value))
    with pytest.raises(IsegError) as exc:
        ck.load(p)
    assert str(exc.value) == f"{p}: {msg}"
    for cmd in (["info", str(p)], ["infer", str(p), str(p), "--out", str(tmp_path / "o")]):
        _one_line(_cli(*cmd), f"{p}: {msg}")
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("softmax", ["precise", "ivit"])
def test_a_shiftmax_x0_breaking_the_exporters_proofs_is_refused(tmp_path: Path, meta, tensors, softmax: str) -> None:
    """x0 = -2^31 passed the reader (a negative int32), though the exporter's proofs refuse it: with "precise" every
    probability became 0 (f = 0) and iseg infer exited 0; with "ivit" the P·V sum overflowed the requant (a
    traceback). The reader now runs the same two proofs (checkpoint.check_shiftmax, check_pv_accumulator)."""
    from iseg import numerics as nx

    m = _mutate(_mutate(meta, "consts/enc.0.attn.softmax/x0", -(2 ** 31)), "model/softmax", softmax)
    p = _write(tmp_path / "x.safetensors", tensors, m)
    n = meta["model"]["image"][0] // meta["model"]["patch"] * (meta["model"]["image"][1] // meta["model"]["patch"]) + 1
    if softmax == "precise":
        msg = (f"enc.0.attn: Shiftmax row sum bound {nx.shiftmax_sum_bound(n, -(2 ** 31))} (N = {n}, x0 = "
               "-2147483648) reaches 2^47; the score scale is too fine for 'precise'")
    else:
        bound = nx.shiftmax_p_sum_bound(n, -(2 ** 31), "ivit") * 128
        msg = f"enc.0.attn.pv: P·V accumulator bound {bound} (N = {n}, x0 = -2147483648, 'ivit') does not fit in int32"
    _one_line(_cli("infer", str(p), str(p), "--out", str(tmp_path / "o")), f"{p}: {msg}")
    assert not (tmp_path / "o").exists()


def test_bias_breaking_the_accumulator_bound_is_refused(tmp_path: Path, meta, tensors) -> None:
    """A crafted int32 bias would overflow the reference's requant (a traceback in iseg infer)."""
    t = dict(tensors)
    t["enc.0.fc1.bias"] = np.full_like(t["enc.0.fc1.bias"], 2 ** 31 - 1)
    p = _write(tmp_path / "b.safetensors", t, meta)
    w_max = int(np.abs(tensors["enc.0.fc1.weight"].astype(np.int64)).max())
    _one_line(_cli("infer", str(p), str(p), "--out", str(tmp_path / "o")),
              f"{p}: tensor 'enc.0.fc1.weight': the accumulator can reach {64 * 128 * w_max + 2 ** 31 - 1} >= 2^31 "
              f"(K = 64, max|W| = {w_max}, max|bias| = 2147483647)")
    assert not (tmp_path / "o").exists()


def test_metadata_that_is_not_an_object(tmp_path: Path) -> None:
    p = _write(tmp_path / "ml.safetensors", {"x": np.zeros(1, np.int8)}, "[1]")
    _one_line(_cli("info", str(p)), f"{p}: metadata 'iseg' must be a JSON object, got list")


def test_checkpoint_folder_is_named_a_folder(tmp_path: Path) -> None:
    _one_line(_cli("info", str(tmp_path)), f"{tmp_path}: is a folder, expected a .safetensors checkpoint file")


def test_pipes_are_named_not_read(tmp_path: Path) -> None:
    """A FIFO as checkpoint or image is refused by name; before, infer said "no such file" of it."""
    os.mkfifo(tmp_path / "pipe")
    _one_line(_cli("info", str(tmp_path / "pipe")),
              f"{tmp_path / 'pipe'}: not a regular file, expected a .safetensors checkpoint file")
    ckpt = tmp_path / "m.safetensors"
    assert main(["random", "--out", str(ckpt)]) == 0
    _one_line(_cli("infer", str(ckpt), str(tmp_path / "pipe"), "--out", str(tmp_path / "o")),
              f"{tmp_path / 'pipe'}: not a regular file or folder (a pipe or device is not read)")
    assert not (tmp_path / "o").exists()


def test_bounds_accept_the_extremes_the_reference_can_run(tmp_path: Path, meta, tensors) -> None:
    """The GELU bounds are not too tight: the largest accepted constants run through the reference."""
    m = copy.deepcopy(meta)
    for name in m["consts"]:
        if name.endswith(".gelu"):  # |x0| * 2^n < 2^31 and L at its int32 limit
            m["consts"][name] = {"x0": -2047, "n": 20, "k": 8, "L": ck.GELU_L_MAX, "em": (2047 << 21) - 1}
    q = ck.load(_write(tmp_path / "x.safetensors", tensors, m))
    labels, _ = reference.run(q, np.full((*q.spec.image, 3), 200, np.uint8))
    assert labels.shape == q.spec.image


# --------------------------------------------------------------------------------------------
# 3. iseg infer: skips on stderr with exit 1; clashing output names refused up front
# --------------------------------------------------------------------------------------------
def _png(path: Path, gray: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    a = np.random.default_rng(0).integers(0, 256, size=(40, 40) if gray else (40, 40, 3), dtype=np.uint8)
    Image.fromarray(a).save(path)


def test_infer_skipped_image_goes_to_stderr_and_fails(tmp_path: Path) -> None:
    _png(tmp_path / "good" / "a.png")
    (tmp_path / "good" / "b.png").write_text("notimage")
    r = _cli("infer", str(BUILTIN), str(tmp_path / "good"), "--out", str(tmp_path / "o"))
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert r.stderr == f"iseg: skipped: {tmp_path}/good/b.png: not an image file (unknown format)\n"
    assert r.stdout.count("\n") == 1  # the summary only: the skip is not on stdout
    assert r.stdout.startswith("iseg infer: 1 labelled, 0 already present (use --overwrite), "
                               "1 unreadable (skipped, exit status 1); ")
    assert _files(tmp_path / "o") == ["a.png"]  # the good one was still labelled


def test_infer_same_stem_in_two_folders_is_refused_up_front(tmp_path: Path) -> None:
    _png(tmp_path / "good" / "a.png")
    _png(tmp_path / "gray" / "a.png", gray=True)
    r = _cli("infer", str(BUILTIN), str(tmp_path / "good"), str(tmp_path / "gray"), "--out", str(tmp_path / "o"))
    _one_line(r, f"{tmp_path}/good/a.png and {tmp_path}/gray/a.png would both be written as a.png: "
                 f"rename one, or label them into different --out folders")
    assert not (tmp_path / "o").exists()
    # the same file named twice is one input, not a clash
    assert main(["infer", str(BUILTIN), str(tmp_path / "good"), str(tmp_path / "good" / "a.png"),
                 "--out", str(tmp_path / "o")]) == 0
    assert _files(tmp_path / "o") == ["a.png"]


def test_infer_overlay_name_clash(tmp_path: Path) -> None:
    _png(tmp_path / "a.png")
    _png(tmp_path / "a_overlay.png")
    r = _cli("infer", str(BUILTIN), str(tmp_path), "--overlay", "--out", str(tmp_path / "o"))
    _one_line(r, f"{tmp_path}/a.png and {tmp_path}/a_overlay.png would both be written as a_overlay.png: "
                 f"rename one, or label them into different --out folders")


def test_infer_into_the_input_folder_would_replace_an_input(tmp_path: Path) -> None:
    _png(tmp_path / "a.png")
    before = (tmp_path / "a.png").read_bytes()
    r = _cli("infer", str(BUILTIN), str(tmp_path), "--overwrite", "--out", str(tmp_path))
    _one_line(r, f"--out {tmp_path}: a.png would replace the input {tmp_path}/a.png")
    assert (tmp_path / "a.png").read_bytes() == before


# --------------------------------------------------------------------------------------------
# 4. numeric flags of iseg random
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("args,msg", [
    (["--seed", "-1"], "--seed must be in 0..9223372036854775807, got -1"),
    (["--seed", "x"], "--seed must be an integer, got 'x'"),
    (["--mlp-ratio", "0"], "--mlp-ratio must be in 1..64, got 0"),
    (["--dec-dim", "0"], "--dec-dim must be in 1..2047, got 0"),
    (["--dec-heads", "0"], "--dec-heads must be in 1..2047, got 0"),
    (["--dim", "1000000"], "--dim must be in 1..2047, got 1000000"),
    (["--layers", "100000"], "--layers must be in 1..256, got 100000"),
    (["--image", "65536"], "image 65536x65536 at patch 8 has 67108864 patches, more than 4096"),
    (["--dim", "2047", "--heads", "1", "--layers", "8"],
     "the model would have 516,128,533 parameters, more than 268,435,456"),
    (["--decoder", "linear", "--dec-dim", "8"],
     "--dec-dim: the linear decoder has no mask transformer to shape (give --decoder mask, or drop the flag)"),
    (["--decoder", "linear", "--dec-heads", "2"],
     "--dec-heads: the linear decoder has no mask transformer to shape (give --decoder mask, or drop the flag)"),
])
def test_random_numeric_flags(tmp_path: Path, args: list[str], msg: str) -> None:
    out = tmp_path / "r.safetensors"
    _one_line(_cli("random", *args, "--out", str(out)), msg)
    assert _files(tmp_path) == []


def test_random_explicit_ratio_is_used(tmp_path: Path) -> None:
    """An explicit --mlp-ratio / --dec-dim is taken as given (the default only when absent)."""
    out = tmp_path / "r.safetensors"
    assert main(["random", "--mlp-ratio", "2", "--dec-dim", "32", "--dec-heads", "1", "--out", str(out)]) == 0
    s = ck.load(out).spec
    assert (s.mlp_dim, s.dec_dim, s.dec_heads, s.dec_mlp_dim) == (128, 32, 1, 64)


# --------------------------------------------------------------------------------------------
# 5. found by fuzzing the command line: each used to end in a traceback, a hang or a user's file lost
# --------------------------------------------------------------------------------------------
def test_header_nested_too_deeply_is_one_line(tmp_path: Path) -> None:
    """A header of 200000 nested lists: json.loads raised RecursionError (a traceback in every command)."""
    head = b'{"a":' + b"[" * 200000 + b"]" * 200000 + b"}"
    p = tmp_path / "deep.safetensors"
    p.write_bytes(len(head).to_bytes(8, "little") + head)
    _one_line(_cli("info", str(p)), f"{p}: not a safetensors file (header is not JSON)")


LONG = "x" * 300  # more than the 255 bytes a file name may have (ENAMETOOLONG)


@pytest.mark.parametrize("args,msg", [
    (["random", "--out", f"d/{LONG}.safetensors"],
     f"--out d/{LONG}.safetensors: the name '{'x' * 20}...afetensors' is 312 bytes long, more than the 255 a file "
     "name may have"),
    (["infer", str(BUILTIN), "a.png", "--out", f"d/{LONG}"],
     f"--out d/{LONG}: the name '{'x' * 20}...xxxxxxxxxx' is 300 bytes long, more than the 255 a file name may have"),
    (["infer", str(BUILTIN), f"{LONG}.png", "--out", "o"], f"{LONG}.png: File name too long"),
    (["info", LONG], f"{LONG}: File name too long"),
    (["synth", "--count", "1", "--size", "16", "--out", f"d/{LONG}"],
     f"--out d/{LONG}: the name '{'x' * 20}...xxxxxxxxxx' is 300 bytes long, more than the 255 a file name may have"),
], ids=["random-out", "infer-out", "infer-input", "info", "synth-out"])
def test_a_name_too_long_is_one_line_and_makes_no_folder(tmp_path: Path, args: list[str], msg: str) -> None:
    """An OSError traceback (Path.exists raises ENAMETOOLONG), or the folder ``d`` left behind by the write."""
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "a.png")
    _one_line(_cli(*args, cwd=tmp_path), msg)
    assert _files(tmp_path) == ["a.png"]


def test_infer_empty_input_is_not_the_current_folder(tmp_path: Path) -> None:
    """``iseg infer M "$DIR" --out o`` with DIR unset labelled every image of the current folder."""
    _png(tmp_path / "a.png")
    _one_line(_cli("infer", str(BUILTIN), "", "--out", "o", cwd=tmp_path),
              "input '': empty path (name image files or folders)")
    assert _files(tmp_path) == ["a.png"]


def test_an_image_in_pillows_warning_range_adds_no_stderr_line(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """Between MAX_IMAGE_PIXELS and twice that Pillow printed a DecompressionBombWarning (two lines)."""
    import warnings

    from iseg import imageio

    _png(tmp_path / "a.png")  # 40 x 40 = 1600 pixels
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert imageio.load_image(tmp_path / "a.png").shape == (40, 40, 3)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 500)  # beyond twice the limit: refused, one line
    with pytest.raises(IsegError, match="refused: Image size"):
        imageio.load_image(tmp_path / "a.png")


def _synth(out: Path, *extra: str) -> subprocess.CompletedProcess:
    return _cli("synth", "--count", "2", "--size", "16", "--out", str(out), *extra)


def test_synth_keeps_a_users_files_of_the_same_name(tmp_path: Path) -> None:
    """``iseg synth --out data/`` replaced the user's data/images/0000.png (a photo) without a word."""
    (tmp_path / "data" / "images").mkdir(parents=True)
    (tmp_path / "data" / "images" / "0001.png").write_bytes(b"my photo")
    (tmp_path / "ade" / "annotations" / "training").mkdir(parents=True)
    (tmp_path / "ade" / "annotations" / "training" / "ADE_train_00000001.png").write_bytes(b"mine")
    (tmp_path / "cls").mkdir()
    (tmp_path / "cls" / "classes.json").write_text('{"names": ["road"]}')
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    for out, first, extra in (("data", "data/images/0001.png", ()),
                              ("ade", "ade/annotations/training/ADE_train_00000001.png", ("--layout", "ade20k")),
                              ("cls", "cls/classes.json", ())):
        _one_line(_synth(tmp_path / out, *extra),
                  f"{tmp_path / first} already exists and {tmp_path / out} is not a dataset iseg synth wrote (no "
                  "classes.json of iseg synth): refusing to replace it; name a new or empty folder")
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before
    assert sorted(p.name for p in (tmp_path / "data" / "images").iterdir()) == ["0001.png"]
    # a dataset iseg synth wrote is replaced, as before (the same command twice, or another count)
    assert _synth(tmp_path / "s").returncode == 0
    assert _cli("synth", "--count", "3", "--size", "16", "--out", str(tmp_path / "s")).returncode == 0


def test_synth_refuses_before_writing_when_a_target_is_a_folder(tmp_path: Path) -> None:
    """classes.json a folder: the images were written, then "Is a directory" (half a dataset)."""
    (tmp_path / "s" / "classes.json").mkdir(parents=True)
    _one_line(_synth(tmp_path / "s"),
              f"{tmp_path}/s/classes.json: is a folder (or not a regular file) where the dataset writes a file")
    assert _files(tmp_path) == ["s", "s/classes.json"]


def test_synth_empty_out_is_not_the_current_folder(tmp_path: Path) -> None:
    _one_line(_cli("synth", "--count", "1", "--size", "16", "--out", "", cwd=tmp_path),
              "--out: empty path (expected a folder)")
    assert _files(tmp_path) == []


@pytest.mark.parametrize("text, msg", [
    ('"info": {', "metadata 'iseg' is not valid JSON (NaN is not a JSON number)"),
    ('"dim": 64', "metadata 'iseg' is not valid JSON (Infinity is not a JSON number)"),
], ids=["info-nan", "dim-inf"])
def test_nan_in_the_metadata_is_not_json(tmp_path: Path, meta, tensors, text: str, msg: str) -> None:
    """Python's json reads NaN / Infinity: ``iseg info --json`` then printed NaN (its output was not JSON)."""
    raw = json.dumps(meta)
    assert text in raw
    bad = raw.replace(text, '"info": {"loss": NaN, ' if text.startswith('"info"') else '"dim": Infinity', 1)
    p = _write(tmp_path / "n.safetensors", tensors, bad)
    _one_line(_cli("info", "--json", str(p)), f"{p}: {msg}")


def test_class_names_that_are_not_a_list(tmp_path: Path, meta, tensors) -> None:
    """Said "model.class_names has 'abcdefgh' entries"."""
    p = _write(tmp_path / "c.safetensors", tensors, _mutate(meta, "model/class_names", "abcdefgh"))
    _one_line(_cli("info", str(p)), f"{p}: model.class_names must be a list of n_cls = 8 strings, got 'abcdefgh'")
