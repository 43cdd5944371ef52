"""``iseg quantize`` / ``iseg eval`` entry points on a tiny FP model: files, JSON, errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from iseg.checkpoint import load  # noqa: E402
from iseg.errors import IsegError  # noqa: E402
from iseg.model import calibrate as cal  # noqa: E402
from iseg.model import eval_int  # noqa: E402
from iseg.model.loaders import save_fp  # noqa: E402
from iseg.model.segmenter import Segmenter, SegmenterConfig  # noqa: E402

pytestmark = pytest.mark.torch


@pytest.fixture(scope="module")
def fp_path(tmp_path_factory):
    torch.manual_seed(0)
    cfg = SegmenterConfig(d_model=16, n_heads=2, n_layers=1, patch_size=8, image_size=(16, 24), n_cls=8,
                          dec_n_layers=1, dec_n_heads=2, l2norm=False, upsample="nearest", gelu="lambda",
                          gelu_lambda=3.0)
    path = tmp_path_factory.mktemp("fp") / "fp.safetensors"
    save_fp(Segmenter(cfg), path)
    return path


def test_quantize_cli_writes_a_valid_checkpoint(fp_path, tmp_path, capsys):
    out = tmp_path / "q.safetensors"
    assert cal.main([str(fp_path), "--calib", "synthetic:2", "--out", str(out), "--softmax", "ivit",
                     "--gelu", "lambda"]) == 0
    ck = load(out)
    assert ck.spec.softmax == "ivit" and ck.info["calib_images"] == 2
    assert ck.info["gelu_lambda"] == 3.0  # the model's λ by default
    assert ck.consts["enc.0.gelu"]["L"] > 0
    assert "wrote" in capsys.readouterr().out


@pytest.mark.parametrize("softmax", ["precise", "ivit", "precise8"])
def test_quantize_cli_accepts_every_shiftmax_variant(fp_path, tmp_path, softmax):
    """``--softmax`` takes its choices from numerics.SHIFTMAX_VARIANTS: precise8 (u8 P) included."""
    out = tmp_path / "q.safetensors"
    assert cal.main([str(fp_path), "--calib", "synthetic:1", "--out", str(out), "--softmax", softmax]) == 0
    assert load(out).spec.softmax == softmax


def test_eval_json_fp_model_is_one_object(fp_path, capsys):
    assert eval_int.main([str(fp_path), "--data", "synthetic:val:3", "--calib", "synthetic:1", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)  # exactly one JSON document on stdout
    assert doc["images"] == 3
    for key in ("fp32", "fake_quant", "int"):
        assert 0.0 <= doc[key]["pixel_acc"] <= 1.0 and len(doc[key]["iou"]) == 8
    assert doc["sizes"]["ratio"] > 3.0  # int8 weights vs float32


def test_eval_checkpoint_engines_agree(fp_path, tmp_path, capsys):
    out = tmp_path / "q.safetensors"
    cal.main([str(fp_path), "--calib", "synthetic:1", "--out", str(out)])
    capsys.readouterr()
    docs = []
    for engine in ("numpy", "torch"):
        assert eval_int.main([str(out), "--data", "synthetic:val:2", "--engine", engine, "--json"]) == 0
        docs.append(json.loads(capsys.readouterr().out))
    assert docs[0]["int"] == docs[1]["int"] and "fp32" not in docs[0]


def test_data_sources(tmp_path):
    imgs, labs = cal.load_data("synthetic:val:2", (16, 16))
    assert imgs.shape == (2, 16, 16, 3) and imgs.dtype == np.uint8 and labs.shape == (2, 16, 16)
    tr, _ = cal.load_data("synthetic:2", (16, 16))
    assert not np.array_equal(tr, imgs)  # calibration defaults to the train split
    for bad in ("synthetic:val:x", "synthetic:0", str(tmp_path / "missing")):
        with pytest.raises(IsegError):
            cal.load_data(bad, (16, 16))


def test_quantize_cli_reports_bad_model(tmp_path, capsys):
    assert cal.main([str(tmp_path / "nope.safetensors"), "--out", str(tmp_path / "q.safetensors")]) == 1
    assert "error" in capsys.readouterr().err


def test_report_fills_only_the_marked_block(tmp_path):
    from iseg.model.report import write_docs

    doc = tmp_path / "q.md"
    doc.write_text("# head\n<!-- report:begin -->\nold\n<!-- report:end -->\ntail\n", encoding="utf-8")
    write_docs(doc, "| new |\n")
    assert doc.read_text(encoding="utf-8") == "# head\n<!-- report:begin -->\n| new |\n<!-- report:end -->\ntail\n"
    (tmp_path / "bare.md").write_text("no markers", encoding="utf-8")
    with pytest.raises(IsegError, match="no <!-- report:begin -->"):
        write_docs(tmp_path / "bare.md", "x")


def test_eval_names_labels_outside_the_classes(fp_path, tmp_path, capsys):
    """Ground truth outside 0..n_cls-1 (not 255) is skipped as mmsegmentation does, and counted aloud:
    a dataset stored 1-based would otherwise score silently wrong."""
    from PIL import Image

    out = tmp_path / "q.safetensors"
    cal.main([str(fp_path), "--calib", "synthetic:1", "--out", str(out)])
    data = tmp_path / "ds"
    (data / "images").mkdir(parents=True)
    (data / "labels").mkdir()
    lab = np.zeros((16, 24), np.uint8)
    lab[:2, :5] = 8  # 10 pixels of a ninth class of an 8-class model
    lab[5, :3] = 255  # 3 ignored pixels: not counted
    Image.fromarray(np.full((16, 24, 3), 90, np.uint8)).save(data / "images" / "a.png")
    Image.fromarray(lab).save(data / "labels" / "a.png")
    capsys.readouterr()
    assert eval_int.main([str(out), "--data", str(data), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["skipped_pixels"] == 10
    assert eval_int.main([str(out), "--data", str(data)]) == 0
    assert ("note: 10 ground-truth pixels (2.60 %) hold classes outside 0..7 (not the ignore value 255) "
            "and were skipped") in capsys.readouterr().out


def test_eval_refuses_fp_options_on_a_quantized_checkpoint(fp_path, tmp_path, capsys):
    """``--softmax ivit`` (or --gelu, --lam, --calib) on a quantized checkpoint was ignored: the table scored its
    own operators under the variant the user asked for."""
    out = tmp_path / "q.safetensors"
    cal.main([str(fp_path), "--calib", "synthetic:1", "--out", str(out)])
    capsys.readouterr()
    for extra in (["--softmax", "ivit"], ["--gelu", "shift"], ["--lam", "2.0"], ["--calib", "synthetic:2"]):
        assert eval_int.main([str(out), "--data", "synthetic:val:1", *extra]) == 1
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and f"{' '.join(extra)} applies to an FP model only" in err
    # its own variants, stated, are no contradiction; nor are its λ and calibration source as its info records them
    # (docs/quantization.md: refused only when "other than what it holds"; they were refused whatever the value)
    assert eval_int.main([str(out), "--data", "synthetic:val:1", "--softmax", "precise", "--gelu", "lambda"]) == 0
    lam = str(load(out).info["gelu_lambda"])
    assert eval_int.main([str(out), "--data", "synthetic:val:1", "--lam", lam, "--calib", "synthetic:1"]) == 0
