"""`iseg quantize` / `iseg qat` on bad input: one exact line, exit 1, before the work, nothing half-written."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from iseg.cli import main  # noqa: E402
from iseg.model import loaders  # noqa: E402
from iseg.model.loaders import save_fp  # noqa: E402
from iseg.model.segmenter import Segmenter, SegmenterConfig  # noqa: E402

pytestmark = pytest.mark.torch

QAT = ["--steps", "1", "--batch-size", "1", "--calib", "synthetic:1"]


def _cfg() -> SegmenterConfig:
    return SegmenterConfig(d_model=16, n_heads=2, n_layers=1, patch_size=8, image_size=(16, 24), n_cls=8,
                           dec_n_layers=1, dec_n_heads=2, l2norm=False, upsample="nearest", gelu="lambda",
                           gelu_lambda=3.0)


@pytest.fixture(scope="module")
def fp_path(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("fp") / "fp.safetensors"
    save_fp(Segmenter(_cfg()), path)
    return path


def _err(capsys) -> str:
    return capsys.readouterr().err


@pytest.mark.parametrize("cmd", ["quantize", "qat"])
def test_bad_out_is_refused_before_loading_anything(tmp_path, capsys, cmd):
    """The model path does not even exist: the --out error comes first, so no work can precede it."""
    (tmp_path / "afile").write_bytes(b"keep")
    extra = QAT if cmd == "qat" else []
    assert main([cmd, str(tmp_path / "missing.safetensors"), "--out", str(tmp_path / "afile" / "q.safetensors"),
                 *extra]) == 1
    assert _err(capsys) == f"iseg: error: --out {tmp_path}/afile/q.safetensors: {tmp_path}/afile is not a folder\n"
    assert main([cmd, str(tmp_path / "missing.safetensors"), "--out", str(tmp_path), *extra]) == 1
    assert _err(capsys) == f"iseg: error: --out {tmp_path}: is a folder, expected a file path\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"]


@pytest.mark.parametrize("cmd", ["quantize", "qat"])
def test_out_must_not_replace_the_fp_model(fp_path, capsys, cmd):
    before = fp_path.read_bytes()
    assert main([cmd, str(fp_path), "--out", str(fp_path), *(QAT if cmd == "qat" else [])]) == 1
    what = "quantized" if cmd == "quantize" else "fine-tuned"
    assert _err(capsys) == f"iseg: error: --out {fp_path}: is the FP model being {what} (it would be replaced)\n"
    assert fp_path.read_bytes() == before


@pytest.mark.parametrize("lam,msg", [
    ("nan", "--lam must be a finite number > 0, got 'nan'"),
    ("inf", "--lam must be a finite number > 0, got 'inf'"),
    ("0", "--lam must be a finite number > 0, got '0'"),
    ("x", "--lam must be a number, got 'x'"),
    ("5", "--lam 5: λ-ShiftGELU: 2·λ·1.702·log2(e) = 24.55 exceeds n = 20; the exp would saturate"),
])
def test_quantize_lam_is_checked_while_parsing(fp_path, tmp_path, capsys, lam, msg):
    assert main(["quantize", str(fp_path), "--calib", "synthetic:1", "--out", str(tmp_path / "q.safetensors"),
                 "--lam", lam]) == 1
    assert _err(capsys) == f"iseg: error: {msg}\n"
    assert list(tmp_path.iterdir()) == []


def test_quantize_nan_model_says_non_finite(tmp_path, capsys):
    model = Segmenter(_cfg())
    with torch.no_grad():
        model.encoder.patch_embed.proj.weight.fill_(float("nan"))
    bad = tmp_path / "nan.safetensors"
    save_fp(model, bad)
    out = tmp_path / "q.safetensors"
    assert main(["quantize", str(bad), "--calib", "synthetic:1", "--out", str(out)]) == 1
    err = _err(capsys)
    assert err.startswith("iseg: error: the FP model produced non-finite activations (NaN or inf) at ")
    assert err.count("\n") == 1 and not out.exists()


def test_qat_bad_save_fp_is_refused_before_training_and_keeps_out(fp_path, tmp_path, capsys):
    (tmp_path / "afile").write_bytes(b"")
    out = tmp_path / "qa.safetensors"
    out.write_bytes(b"previous run")
    assert main(["qat", str(fp_path), "--out", str(out), *QAT, "--save-fp", str(tmp_path / "afile" / "fp.st")]) == 1
    assert capsys.readouterr() == ("", f"iseg: error: --save-fp {tmp_path}/afile/fp.st: {tmp_path}/afile "
                                       f"is not a folder\n")
    assert out.read_bytes() == b"previous run"
    assert main(["qat", str(fp_path), "--out", str(out), *QAT, "--save-fp", str(out)]) == 1
    assert _err(capsys) == f"iseg: error: --save-fp {out}: is the same file as --out\n"


def test_qat_late_save_fp_failure_writes_neither(fp_path, tmp_path, capsys, monkeypatch):
    """A --save-fp write that fails after training (disk full) leaves --out as it was."""
    def full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(loaders, "save_fp", full)
    out = tmp_path / "qa.safetensors"
    out.write_bytes(b"previous run")
    fp_out = tmp_path / "fp.safetensors"
    assert main(["qat", str(fp_path), "--out", str(out), *QAT, "--save-fp", str(fp_out)]) == 1
    assert _err(capsys) == f"iseg: error: {fp_out}: cannot write (No space left on device)\n"
    assert out.read_bytes() == b"previous run"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["qa.safetensors"]


def test_qat_writes_both_outputs(fp_path, tmp_path, capsys):
    out, fp_out = tmp_path / "qa.safetensors", tmp_path / "sub" / "fp.safetensors"
    assert main(["qat", str(fp_path), "--out", str(out), *QAT, "--save-fp", str(fp_out)]) == 0
    assert out.is_file() and fp_out.is_file()
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["fp.safetensors", "qa.safetensors", "sub"]


@pytest.mark.parametrize("flag", ["--seed", "--data-seed"])
def test_qat_negative_seed(fp_path, tmp_path, capsys, flag):
    assert main(["qat", str(fp_path), "--out", str(tmp_path / "q.safetensors"), *QAT, flag, "-1"]) == 1
    assert _err(capsys) == f"iseg: error: {flag} must be in 0..9223372036854775807, got -1\n"
    assert list(tmp_path.iterdir()) == []
