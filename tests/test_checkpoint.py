"""The quantized checkpoint: round trip, and one clear line for every kind of defect."""

from __future__ import annotations

import json
import struct
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from iseg import checkpoint as ck
from iseg.errors import IsegError
from iseg.random_model import PRESETS, random_checkpoint


@pytest.fixture(scope="module")
def tiny() -> ck.QuantizedCheckpoint:
    return random_checkpoint(PRESETS["tiny"], seed=3)


def _rewrite(path: Path, tensors: dict, meta: dict) -> None:
    from safetensors.numpy import save_file

    save_file(tensors, str(path), metadata={"iseg": json.dumps(meta)})


def test_round_trip_is_exact(tiny: ck.QuantizedCheckpoint, tmp_path: Path) -> None:
    p = tmp_path / "m.safetensors"
    ck.save(tiny, p)
    back = ck.load(p)
    assert back.spec == tiny.spec
    assert back.consts == json.loads(json.dumps(tiny.consts))
    assert set(back.tensors) == set(tiny.tensors)
    for k, v in tiny.tensors.items():
        assert back.tensors[k].dtype == v.dtype and np.array_equal(back.tensors[k], v)


@pytest.mark.parametrize("softmax", ck.SOFTMAX_VARIANTS)
def test_round_trip_keeps_the_shiftmax_variant(softmax: str, tmp_path: Path) -> None:
    q = random_checkpoint(replace(PRESETS["tiny"], layers=1, softmax=softmax), seed=1)
    ck.save(q, tmp_path / "m.safetensors")
    back = ck.load(tmp_path / "m.safetensors")
    assert back.spec.softmax == softmax and back.spec == q.spec
    assert back.consts == json.loads(json.dumps(q.consts))


def test_save_is_deterministic(tiny: ck.QuantizedCheckpoint, tmp_path: Path) -> None:
    ck.save(tiny, tmp_path / "a.safetensors")
    ck.save(tiny, tmp_path / "b.safetensors")
    assert (tmp_path / "a.safetensors").read_bytes() == (tmp_path / "b.safetensors").read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.safetensors", "b.safetensors"]  # no temp left


def test_layout_covers_both_decoders() -> None:
    lay = ck.expected_layout(ck.ModelSpec(dim=64, heads=2, layers=1, mlp_dim=128, patch=8, image=(16, 24),
                                          n_cls=3, decoder="linear"))
    assert lay.tensors["pos_embed"] == ((7, 64), "int8")
    assert lay.tensors["patch_embed.weight"] == ((192, 64), "int8")
    assert "dec.head.weight" in lay.tensors and "dec.cls_emb" not in lay.tensors
    assert lay.consts["enc.0.qkv.rq"].channels == 192


@pytest.mark.parametrize("what,match", [
    ("truncated", "truncated"),
    ("foreign", "not a safetensors file"),
    ("empty", "not a safetensors file"),
    ("no_meta", "without I-Segmenter metadata"),
    ("fp_model", "a floating-point model (`iseg train`), not a quantized checkpoint: quantize it first"),
    ("version", "version 99 is not supported"),
    ("missing_tensor", "missing tensor 'enc.1.fc2.weight'"),
    ("bad_shape", "tensor 'enc.0.qkv.weight' has shape"),
    ("bad_dtype", "tensor 'patch_embed.bias' has dtype int64, expected int32"),
    ("bad_e", "constant enc.0.fc1.rq.e = 63 outside [1, 62]"),
    ("bad_m", "outside 2^30 <= |m| < 2^31"),
    ("missing_const", "missing constant 'dec.mask.rq'"),
    ("bad_spec", "model.dim 64 is not divisible by model.heads 3"),
])
def test_defects_give_one_clear_line(tiny: ck.QuantizedCheckpoint, tmp_path: Path, what: str, match: str) -> None:
    good = tmp_path / "good.safetensors"
    ck.save(tiny, good)
    bad = tmp_path / "bad.safetensors"
    meta = tiny.metadata()
    tensors = dict(tiny.tensors)
    if what == "truncated":
        bad.write_bytes(good.read_bytes()[:-100])
    elif what == "foreign":
        bad.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(200))
    elif what == "empty":
        bad.write_bytes(b"")
    elif what == "no_meta":
        from safetensors.numpy import save_file

        save_file({"x": np.zeros(3, np.int8)}, str(bad))
    elif what == "fp_model":  # what model/loaders.py save_fp writes: format iseg-fp32, no quantized metadata
        from safetensors.numpy import save_file

        save_file({"x": np.zeros(3, np.float32)}, str(bad), metadata={"format": "iseg-fp32", "format_version": "1"})
    else:
        if what == "version":
            meta["version"] = 99
        elif what == "missing_tensor":
            del tensors["enc.1.fc2.weight"]
        elif what == "bad_shape":
            tensors["enc.0.qkv.weight"] = tensors["enc.0.qkv.weight"][:, :10].copy()
        elif what == "bad_dtype":
            tensors["patch_embed.bias"] = tensors["patch_embed.bias"].astype(np.int64)
        elif what == "bad_e":
            meta["consts"] = json.loads(json.dumps(meta["consts"]))
            meta["consts"]["enc.0.fc1.rq"]["e"][5] = 63
        elif what == "bad_m":
            meta["consts"] = json.loads(json.dumps(meta["consts"]))
            meta["consts"]["enc.0.attn.qk.rq"]["m"] = 12345
        elif what == "missing_const":
            meta["consts"] = {k: v for k, v in meta["consts"].items() if k != "dec.mask.rq"}
        elif what == "bad_spec":
            meta["model"] = dict(meta["model"], heads=3)
        _rewrite(bad, tensors, meta)
    with pytest.raises(IsegError, match=match.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")
                       .replace("]", r"\]").replace("^", r"\^").replace("|", r"\|")) as info:
        ck.load(bad)
    assert "\n" not in str(info.value)


def test_header_claims_more_than_the_file(tmp_path: Path) -> None:
    p = tmp_path / "x.safetensors"
    p.write_bytes(struct.pack("<Q", 10 ** 6) + b"{" + b" " * 50)
    with pytest.raises(IsegError, match="truncated"):
        ck.load(p)


def test_spec_validation_names_the_key() -> None:
    spec = replace(PRESETS["tiny"], image=(60, 64), class_names=("a",) * 8, class_colors=((0, 0, 0),) * 8)
    with pytest.raises(IsegError, match="not a multiple of patch 8"):
        spec.validate()
    with pytest.raises(IsegError, match="n_cls 300 exceeds 256"):
        replace(spec, image=(64, 64), n_cls=300).validate()


def test_saved_files_get_the_umask_mode_and_leave_no_temporaries(tiny: ck.QuantizedCheckpoint, tmp_path: Path) -> None:
    """The atomic writer's temporary is 0600 (mkstemp), and safetensors recreates it: the final file must
    still have the mode an ordinary open() gives (0644 under umask 022), like any other output."""
    import os

    old = os.umask(0o022)
    try:
        ck.save(tiny, tmp_path / "q.safetensors")
        (tmp_path / "plain").write_bytes(b"")
    finally:
        os.umask(old)
    assert (tmp_path / "q.safetensors").stat().st_mode & 0o777 == 0o644 == (tmp_path / "plain").stat().st_mode & 0o777
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plain", "q.safetensors"]
