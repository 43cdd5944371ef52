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
    """Both files are what they claim: the QAT checkpoint, and the fine-tuned FP model (moved by the step, not a
    copy of the input)."""
    from iseg.checkpoint import load

    out, fp_out = tmp_path / "qa.safetensors", tmp_path / "sub" / "fp.safetensors"
    assert main(["qat", str(fp_path), "--out", str(out), *QAT, "--save-fp", str(fp_out)]) == 0
    assert out.is_file() and fp_out.is_file()
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["fp.safetensors", "qa.safetensors", "sub"]
    ck = load(out)
    assert ck.info["method"] == "qat" and ck.info["qat"]["steps"] == 1 and ck.info["fp_model"] == fp_path.name
    tuned, start = loaders.load_fp(fp_out), loaders.load_fp(fp_path)
    assert tuned.cfg == start.cfg == _cfg()
    assert loaders.read_fp_metadata(fp_out)["training"]["qat"]["steps"] == 1
    a, b = start.state_dict(), tuned.state_dict()
    assert a.keys() == b.keys() and any(not torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("flag", ["--seed", "--data-seed"])
def test_qat_negative_seed(fp_path, tmp_path, capsys, flag):
    assert main(["qat", str(fp_path), "--out", str(tmp_path / "q.safetensors"), *QAT, flag, "-1"]) == 1
    assert _err(capsys) == f"iseg: error: {flag} must be in 0..9223372036854775807, got -1\n"
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------------------------
# found by fuzzing the command line: tracebacks, hangs, a bad --export found after training
# --------------------------------------------------------------------------------------------
TRAIN = ["--d-model", "16", "--n-heads", "2", "--n-layers", "1", "--patch", "8", "--size", "16x16", "--steps", "1",
         "--batch-size", "1", "--train-count", "1", "--val-count", "0", "--no-progress"]


@pytest.mark.parametrize("args, msg", [
    (["--seed", "99999999999999999999999"], "--seed must be in 0..9223372036854775807, got 99999999999999999999999"),
    (["--data-seed", "-1"], "--data-seed must be in 0..9223372036854775807, got -1"),
    (["--d-model", "100000"], "--d-model must be in 1..2047, got 100000"),
    (["--n-layers", "100000"], "--n-layers must be in 1..256, got 100000"),
    (["--n-cls", "300"], "--n-cls must be in 1..256, got 300"),
    (["--lr", "inf"], "train config: lr must be a finite number, got inf"),
    (["--grad-clip", "nan"], "train config: grad_clip must be a finite number, got nan"),
    (["--weight-decay", "nan"], "train config: weight_decay must be a finite number, got nan"),
    (["--lr", "1e38"], "train config: lr must be in (0, 1e30], weight_decay and grad_clip >= 0, min_lr_ratio in 0..1"),
    (["--n-cls", "4"], "--n-cls 4: the synthetic scenes have 8 classes"),
    (["--export", "afile/m.safetensors"], "--export afile/m.safetensors: {tmp}/afile is not a folder"),
    (["--export", "run/model.safetensors"], "--export run/model.safetensors: is the run's own model.safetensors "
                                            "(give another path)"),
], ids=["seed-huge", "data-seed-neg", "d-model", "n-layers", "n-cls", "lr-inf", "clip-nan", "wd-nan", "lr-huge",
        "n-cls-below-synth", "export-under-file", "export-own"])
def test_train_flags_are_checked_before_anything(tmp_path, capsys, monkeypatch, args, msg):
    """--seed huge: a ValueError traceback from torch.manual_seed after the run folder was made; --d-model /
    --n-layers 100000: an allocator traceback or minutes building the model; NaN / inf accepted; --lr 1e38 and
    --n-cls below the scenes' classes: an AdamW / IndexError traceback and an empty run folder; a bad --export
    found after the training."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "afile").write_bytes(b"keep")
    assert main(["train", "--out", "run", *TRAIN, *args]) == 1
    assert capsys.readouterr().err == f"iseg: error: {msg.format(tmp=tmp_path)}\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"]


def test_train_labels_beyond_the_classes_are_one_line(tmp_path, capsys):
    """A folder label at or beyond --n-cls ended in the loss's IndexError traceback and an empty run folder."""
    data = _plain_folder(tmp_path / "ds", 2, top_label=9)
    run = tmp_path / "run"
    assert main(["train", "--out", str(run), *TRAIN, "--data", str(data), "--n-cls", "8"]) == 1
    assert capsys.readouterr().err == (f"iseg: error: annotation {data / 'labels' / 's0.png'} holds label 9: the "
                                       "model has 8 classes (0..7, 255 ignored)\n")
    assert not run.exists()


def test_qat_save_fp_must_not_replace_the_fp_model(fp_path, tmp_path, capsys):
    before = fp_path.read_bytes()
    assert main(["qat", str(fp_path), "--out", str(tmp_path / "q.safetensors"), *QAT, "--save-fp", str(fp_path)]) == 1
    assert capsys.readouterr().err == (f"iseg: error: --save-fp {fp_path}: is the FP model being fine-tuned (it would "
                                       "be replaced)\n")
    assert fp_path.read_bytes() == before and not (tmp_path / "q.safetensors").exists()


def test_train_empty_out_is_not_the_current_folder(tmp_path, capsys, monkeypatch):
    """``--out ""`` trained into the current folder (checkpoint.json, model.safetensors beside the user's files)."""
    monkeypatch.chdir(tmp_path)
    assert main(["train", "--out", "", *TRAIN]) == 1
    assert capsys.readouterr().err == "iseg: error: --out: empty path (expected a folder)\n"
    assert list(tmp_path.iterdir()) == []


def test_train_classes_json_nested_too_deeply(tmp_path, capsys):
    (tmp_path / "ds" / "images").mkdir(parents=True)
    (tmp_path / "ds" / "labels").mkdir()
    (tmp_path / "ds" / "classes.json").write_text("[" * 100000 + "]" * 100000)
    assert main(["train", "--out", str(tmp_path / "run"), *TRAIN, "--data", str(tmp_path / "ds")]) == 1
    assert capsys.readouterr().err == f"iseg: error: malformed {tmp_path}/ds/classes.json: JSON nested too deeply\n"
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("edit, msg", [
    (lambda d: d["train"].update(steps="5"), "train config: steps must be an integer, got '5'"),
    (lambda d: d["train"].update(lr=None), "train config: lr must be a finite number, got None"),
    (lambda d: d.update(train=[]), "{ck}: 'train' must be an object, got list"),
    (lambda d: d.pop("step"), "{ck}: 'step' must be an integer >= 0, got None"),
    (lambda d: d.update(losses="x"), "{ck}: 'losses' must be a list of numbers"),
], ids=["steps-str", "lr-null", "train-list", "no-step", "losses-str"])
def test_resume_of_a_damaged_checkpoint_json_is_one_line(tmp_path, capsys, edit, msg):
    """A TypeError, KeyError or ValueError traceback in the middle of the resume."""
    import json

    from iseg.model.train import CKPT_FORMAT, CKPT_VERSION

    run = tmp_path / "run"
    run.mkdir()
    doc = {"format": CKPT_FORMAT, "format_version": CKPT_VERSION, "step": 1, "epoch": 0, "losses": [1.0],
           "param_groups": [], "train": {"steps": 2, "train_count": 1, "val_count": 0},
           "model": {"d_model": 16, "n_heads": 2, "n_layers": 1, "patch_size": 8, "image_size": [16, 16],
                     "n_cls": 8}}
    edit(doc)
    (run / "checkpoint.json").write_text(json.dumps(doc))
    before = (run / "checkpoint.json").read_bytes()
    assert main(["train", "--out", str(run), "--resume", "--no-progress"]) == 1
    assert capsys.readouterr().err == f"iseg: error: {msg.format(ck=run / 'checkpoint.json')}\n"
    assert (run / "checkpoint.json").read_bytes() == before and sorted(p.name for p in run.iterdir()) == [
        "checkpoint.json"]


def test_a_calibration_count_beyond_the_memory_is_refused(fp_path, tmp_path, capsys):
    """synthetic:99999999999 made images until the process was killed."""
    assert main(["quantize", str(fp_path), "--calib", "synthetic:99999999999", "--out",
                 str(tmp_path / "q.safetensors")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("iseg: error: bad data source 'synthetic:99999999999': 99,999,999,999 images of 16x24 "
                          "need ") and err.endswith(" GiB; use fewer\n") and err.count("\n") == 1
    assert list(tmp_path.iterdir()) == []


def test_qat_lr_that_diverges_is_one_line(fp_path, tmp_path, capsys):
    """--lr 1e30: the run ended in export's ValueError (requant ratio ... outside [1, 62]); --lr inf was accepted."""
    out = tmp_path / "q.safetensors"
    for lr in ("inf", "1e38"):  # 1e38: AdamW's float32 step overflowed, a RuntimeError traceback
        assert main(["qat", str(fp_path), "--out", str(out), *QAT, "--lr", lr]) == 1
        assert _err(capsys) == "iseg: error: --steps and --batch-size must be >= 1 and --lr a number in (0, 1e30]\n"
    assert main(["qat", str(fp_path), "--out", str(out), *QAT, "--lr", "1e30"]) == 1
    err = _err(capsys)
    assert err.startswith("iseg: error: the fine-tuned model cannot be exported as integers (requant ratio ")
    assert err.endswith("): QAT diverged; lower --lr\n") and err.count("\n") == 1
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------------------------
# QAT on a user's folder; a folder calibration source decodes only what it keeps
# --------------------------------------------------------------------------------------------
def _plain_folder(root, n: int, top_label: int = 7, broken_after: int | None = None):
    """A plain-layout folder (images/ + labels/) of n 16x24 samples; labels 0..top_label; the samples from
    ``broken_after`` on are not images at all."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    for i in range(n):
        if broken_after is not None and i >= broken_after:
            (root / "images" / f"s{i}.png").write_bytes(b"not a png")
        else:
            Image.fromarray(rng.integers(0, 256, (16, 24, 3), dtype=np.uint8)).save(root / "images" / f"s{i}.png")
        lab = np.full((16, 24), i % (top_label + 1), np.uint8)
        lab[0, 0] = top_label
        Image.fromarray(lab).save(root / "labels" / f"s{i}.png")
    return root


def test_qat_trains_on_the_given_folder(fp_path, tmp_path, capsys, monkeypatch):
    """Before, `iseg qat` always fine-tuned on synthetic scenes whatever folder the user named. With --data DIR its
    batches are that folder's samples (the dataset qat() receives holds exactly them), and the checkpoint says so."""
    import numpy as np

    from iseg import synth
    from iseg.checkpoint import load
    from iseg.model import qat as qat_mod

    data = _plain_folder(tmp_path / "ds", 3)
    seen = {}
    real = qat_mod.qat

    def spy(*a, **kw):
        seen["ds"] = kw["dataset"]
        return real(*a, **kw)

    monkeypatch.setattr(qat_mod, "qat", spy)
    out = tmp_path / "q.safetensors"
    assert main(["qat", str(fp_path), "--out", str(out), *QAT, "--data", str(data)]) == 0
    want = list(synth.read_folder(data))
    assert len(seen["ds"]) == 3
    for (img, lab), (wimg, wlab, _) in zip(map(seen["ds"].sample, range(3)), want, strict=True):
        assert np.array_equal(img, wimg) and np.array_equal(lab, wlab)
    assert load(out).info["data"] == str(data)


def test_qat_data_errors_are_one_line(fp_path, tmp_path, capsys):
    out = tmp_path / "q.safetensors"
    assert main(["qat", str(fp_path), "--out", str(out), *QAT, "--data", str(tmp_path / "none")]) == 1
    assert _err(capsys) == f"iseg: error: --data {tmp_path / 'none'}: neither 'synthetic' nor a dataset folder\n"
    data = _plain_folder(tmp_path / "ds9", 2, top_label=9)  # the model has 8 classes
    assert main(["qat", str(fp_path), "--out", str(out), *QAT, "--data", str(data)]) == 1
    assert _err(capsys) == (f"iseg: error: annotation {data / 'labels' / 's0.png'} holds label 9: the model has 8 "
                            "classes (0..7, 255 ignored)\n")
    assert not out.exists()


def test_folder_source_decodes_only_what_it_keeps(tmp_path):
    """`--calib DIR:2` decoded the whole split, then kept 2 (tens of GB on ADE20K): the samples after the count
    are not even opened, so files there that are not images do not matter."""
    from iseg.errors import IsegError
    from iseg.model.calibrate import load_data

    data = _plain_folder(tmp_path / "ds", 5, broken_after=2)
    images, labels = load_data(f"{data}:2", (16, 24))
    assert images.shape == (2, 16, 24, 3) and labels.shape == (2, 16, 24)
    with pytest.raises(IsegError):
        load_data(f"{data}:3", (16, 24))


def test_large_folder_is_decoded_per_access(tmp_path, monkeypatch):
    """A folder beyond FolderDataset.CACHE_BYTES at the model's size (ADE20K at 512 x 512 is ~21 GB) is not held in
    memory: each access decodes its sample again; a small one is decoded once. Both give the folder's samples."""
    import numpy as np

    from iseg import synth
    from iseg.model.data import FolderDataset

    data = _plain_folder(tmp_path / "ds", 3)
    loads = []
    real = synth.FolderSample.load
    monkeypatch.setattr(synth.FolderSample, "load", lambda self: loads.append(self.name) or real(self))
    want = [(img, lab) for img, lab, _ in synth.read_folder(data)]
    loads.clear()
    for budget, decodes in ((1 << 30, 3), (3 * 16 * 24 * 4 - 1, 6)):  # the second: one byte short of the three
        monkeypatch.setattr(FolderDataset, "CACHE_BYTES", budget)
        ds = FolderDataset(data, size=(16, 24))
        for _ in range(2):
            for i in range(3):
                img, lab = ds[i]
                assert np.array_equal(img.permute(1, 2, 0).numpy(), want[i][0])
                assert np.array_equal(lab.numpy(), want[i][1]) and lab.dtype == torch.int64
        assert len(loads) == decodes, (budget, loads)
        loads.clear()


@pytest.mark.parametrize("budget", [1 << 30, 0], ids=["kept", "per-access"])
def test_bad_folder_file_is_refused_before_any_work(tmp_path, monkeypatch, budget):
    """A file that is not an image is refused when the dataset is made (kept samples are decoded then; a set
    decoded per access has its headers read), not at its first access hours into a training run."""
    from iseg.errors import IsegError
    from iseg.model.data import FolderDataset

    data = _plain_folder(tmp_path / "ds", 4, broken_after=3)
    monkeypatch.setattr(FolderDataset, "CACHE_BYTES", budget)
    with pytest.raises(IsegError, match=r"cannot read .*images/s3\.png: "):
        FolderDataset(data, size=(16, 24))


@pytest.mark.parametrize("cmd", ["quantize", "qat"])
def test_the_models_own_lambda_is_checked_before_the_work(tmp_path, capsys, cmd):
    """Without --lam the FP model's λ (6 here, past λ-ShiftGELU's bound for n = 20) is exported: it was checked only
    by the export, after the calibration or every QAT step, in a line that did not point to --lam."""
    from dataclasses import replace

    torch.manual_seed(0)
    fp = tmp_path / "fp6.safetensors"
    save_fp(Segmenter(replace(_cfg(), gelu_lambda=6.0)), fp)
    out = tmp_path / "q.safetensors"
    args = QAT if cmd == "qat" else ["--calib", "synthetic:1"]
    assert main([cmd, str(fp), "--out", str(out), *args]) == 1
    err = _err(capsys)
    assert err.startswith(f"iseg: error: {fp}: its GELU λ 6 cannot be exported (") and err.endswith("): give --lam\n")
    assert not out.exists()
