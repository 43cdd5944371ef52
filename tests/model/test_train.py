"""Training (schedule, batch order, loss goes down, exact resume, CLI) and the metrics it reports."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from safetensors import safe_open  # noqa: E402

from iseg import synth  # noqa: E402
from iseg.cli import main as iseg_main  # noqa: E402
from iseg.errors import IsegError  # noqa: E402
from iseg.model.data import BatchOrder, SynthDataset, collate  # noqa: E402
from iseg.model.eval import confusion, evaluate_fp, metrics  # noqa: E402
from iseg.model.loaders import load_fp, read_fp_metadata  # noqa: E402
from iseg.model.segmenter import SegmenterConfig  # noqa: E402
from iseg.model.train import TrainConfig, lr_at, main, train  # noqa: E402

TINY = SegmenterConfig(d_model=32, n_heads=2, n_layers=1, patch_size=8, image_size=(32, 32), n_cls=8,
                       dec_n_layers=1, dec_n_heads=1, encoder_head_classes=8, l2norm=False, gelu="lambda",
                       class_names=synth.CLASS_NAMES, class_colors=synth.CLASS_COLORS)
FAST = TrainConfig(steps=5, batch_size=6, lr=3e-3, warmup=0, train_count=10, val_count=4, ckpt_every=2)


# ----------------------------------------------------------------------------------------------
# metrics


def test_confusion_and_metrics_by_hand() -> None:
    gt = np.array([[0, 0, 1, 1], [2, 2, 255, 1]])
    pred = np.array([[0, 1, 1, 1], [2, 0, 0, 1]])
    conf = confusion(pred, gt, 4)
    expect = np.zeros((4, 4), np.int64)
    expect[0, 0], expect[0, 1], expect[1, 1], expect[2, 2], expect[2, 0] = 1, 1, 3, 1, 1
    np.testing.assert_array_equal(conf, expect)
    m = metrics(conf)
    # IoU0 = 1/(2+2-1) = 1/3, IoU1 = 3/(3+4-3) = 3/4, IoU2 = 1/(2+1-1) = 1/2, class 3 absent: nan
    assert m["iou"][:3] == pytest.approx([1 / 3, 3 / 4, 1 / 2], abs=1e-12)
    assert math.isnan(m["iou"][3])
    assert m["miou"] == pytest.approx((1 / 3 + 3 / 4 + 1 / 2) / 3, abs=1e-12)
    assert m["pixel_acc"] == pytest.approx(5 / 7, abs=1e-12) and m["pixels"] == 7
    assert m["mean_acc"] == pytest.approx((1 / 2 + 1 + 1 / 2) / 3, abs=1e-12)
    with pytest.raises(IsegError, match="outside 0..3"):
        confusion(np.array([4]), np.array([0]), 4)
    with pytest.raises(IsegError, match="shape"):
        confusion(np.zeros(3), np.zeros(4), 4)


def test_metrics_perfect_and_empty() -> None:
    labels = np.random.default_rng(0).integers(0, 5, (3, 16, 16))
    m = metrics(confusion(labels, labels, 5))
    assert m["miou"] == 1.0 and m["pixel_acc"] == 1.0
    assert math.isnan(metrics(np.zeros((3, 3), np.int64))["miou"])


# ----------------------------------------------------------------------------------------------
# schedule and data order


def test_lr_schedule_hand_values() -> None:
    c = TrainConfig(steps=110, warmup=10, lr=1e-3, min_lr_ratio=0.01)
    assert lr_at(0, c) == pytest.approx(1e-4) and lr_at(9, c) == pytest.approx(1e-3)
    assert lr_at(10, c) == pytest.approx(1e-3)
    assert lr_at(60, c) == pytest.approx((1e-3 + 1e-5) / 2)  # cosine half way
    assert lr_at(110, c) == pytest.approx(1e-5)
    p = TrainConfig(steps=110, warmup=10, lr=1e-3, schedule="poly")
    assert lr_at(60, p) == pytest.approx(1e-3 * 0.5**0.9)


def test_batch_order_is_a_pure_function_of_seed_and_step() -> None:
    o = BatchOrder(n=10, batch_size=4, seed=3)
    picks = [o.batch(s) for s in range(5)]  # 20 positions = two epochs
    assert picks == [BatchOrder(10, 4, 3).batch(s) for s in range(5)]
    flat = [i for b in picks for i, _ in b]
    assert sorted(flat[:10]) == list(range(10)) and sorted(flat[10:]) == list(range(10))
    assert flat[:10] != flat[10:]  # epochs are reshuffled
    assert any(f for b in picks for _, f in b) and not all(f for b in picks for _, f in b)
    assert not any(f for b in (BatchOrder(10, 4, 3, flip=False).batch(s) for s in range(5)) for _, f in b)
    assert o.epoch_of(2) == 0 and o.epoch_of(3) == 1


def test_synth_dataset_and_flip() -> None:
    ds = SynthDataset("train", 3, (16, 24), data_seed=5)
    img, lab = ds[1]
    ref_img, ref_lab = synth.make_sample(synth.sample_seed("train", 5, 1), (16, 24))
    np.testing.assert_array_equal(img.permute(1, 2, 0).numpy(), ref_img)
    np.testing.assert_array_equal(lab.numpy(), ref_lab)
    x, y = collate(ds, [(1, True), (0, False)])
    assert x.shape == (2, 3, 16, 24) and x.dtype == torch.uint8 and y.dtype == torch.int64
    np.testing.assert_array_equal(y[0].numpy(), ref_lab[:, ::-1])
    with pytest.raises(IsegError):
        SynthDataset("test", 3, (16, 16))


# ----------------------------------------------------------------------------------------------
# training


@pytest.fixture(scope="module")
def full_run(tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("full")
    return out, train(TINY, FAST, out, progress=False, log=lambda m: None)


def test_loss_decreases(full_run) -> None:
    _, res = full_run
    assert len(res.losses) == 5 and res.step == 5
    assert res.losses[0] > math.log(8) * 0.8  # starts near chance level
    assert res.losses[-1] < res.losses[0] - 0.1


def test_resume_replays_the_same_losses(full_run, tmp_path: Path) -> None:
    out_full, res = full_run
    first = train(TINY, FAST, tmp_path, stop_at=3, progress=False, log=lambda m: None)
    assert len(first.losses) == 3 and first.metrics is None
    assert not (tmp_path / "model.safetensors").exists()
    doc = json.loads((tmp_path / "checkpoint.json").read_text())
    assert doc["step"] == 3 and doc["epoch"] == 1  # 18 samples of 10
    second = train(TINY, FAST, tmp_path, resume=True, progress=False, log=lambda m: None)
    assert first.losses + second.losses == res.losses  # exact, not approximately
    assert second.all_losses == res.losses
    a, b = load_fp(out_full / "model.safetensors"), load_fp(tmp_path / "model.safetensors")
    for k, v in a.state_dict().items():
        assert torch.equal(v, b.state_dict()[k]), k
    with pytest.raises(IsegError, match="already holds a training run"):
        train(TINY, FAST, tmp_path, progress=False, log=lambda m: None)


def test_final_model_metadata(full_run) -> None:
    out, res = full_run
    with safe_open(str(out / "model.safetensors"), framework="pt") as f:
        meta = f.metadata()
    cfg = json.loads(meta["config"])
    assert cfg["class_names"] == list(synth.CLASS_NAMES) and cfg["patch_size"] == 8
    training = json.loads(meta["training"])
    assert training["steps"] == 5 and training["val"]["count"] == 4
    assert training["val"]["miou"] == pytest.approx(res.metrics["miou"])
    # evaluate_fp is deterministic and agrees with what training reported
    again = evaluate_fp(load_fp(out / "model.safetensors"), SynthDataset("val", 4, (32, 32)))
    assert again["miou"] == pytest.approx(res.metrics["miou"], abs=1e-12)


def test_torn_checkpoint_is_detected(tmp_path: Path) -> None:
    cfg = TrainConfig(steps=2, batch_size=2, warmup=0, train_count=4, val_count=0, ckpt_every=1)
    train(TINY, cfg, tmp_path, stop_at=1, progress=False, log=lambda m: None)
    doc = json.loads((tmp_path / "checkpoint.json").read_text())
    doc["step"] = 2
    (tmp_path / "checkpoint.json").write_text(json.dumps(doc))
    with pytest.raises(IsegError, match="torn write"):
        train(TINY, cfg, tmp_path, resume=True, progress=False, log=lambda m: None)
    with pytest.raises(IsegError, match="holds no training checkpoint"):
        train(TINY, cfg, tmp_path / "empty", resume=True, progress=False, log=lambda m: None)


def test_cli_train_resume_and_flag_check(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    common = ["--out", str(out), "--no-progress"]
    argv = common + ["--size", "32x32", "--d-model", "32", "--n-heads", "2", "--n-layers", "1",
                     "--steps", "3", "--batch-size", "2", "--train-count", "4", "--val-count", "2",
                     "--warmup", "0", "--export", str(tmp_path / "exported.safetensors")]
    assert main(argv) == 0
    cap = capsys.readouterr()
    assert "val mIoU" in cap.out
    assert re.search(r"wrote .*model\.safetensors \(final loss \d+\.\d{4}\)", cap.err)  # also with --no-progress
    m = load_fp(tmp_path / "exported.safetensors")
    assert m.cfg.image_size == (32, 32) and m.cfg.n_cls == 8 and m.cfg.encoder_head_classes == 8
    assert m.cfg.class_names == synth.CLASS_NAMES and not m.cfg.l2norm
    assert iseg_main(["eval", str(tmp_path / "exported.safetensors"), "--data", "synthetic:val:3", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["images"] == 3 and 0 <= doc["fp32"]["miou"] <= 1 and len(doc["fp32"]["iou"]) == 8
    assert main(common + ["--resume", "--lr", "0.5"]) == 1
    assert "--lr 0.5 differs from the stored run's 0.002" in capsys.readouterr().err
    assert main(common + ["--resume", "--d-model", "64"]) == 1
    assert "--d-model cannot be given with --resume" in capsys.readouterr().err
    assert main(common + ["--resume", "--variant", "tiny"]) == 1  # was taken silently: --variant had a default
    assert "--variant cannot be given with --resume" in capsys.readouterr().err
    assert main(common + ["--steps", "3"]) == 1
    assert "already holds a training run" in capsys.readouterr().err
    assert main(["--out", str(tmp_path / "x"), "--data", str(tmp_path / "nodata"), "--n-cls", "3"]) == 1
    assert "does not exist" in capsys.readouterr().err
    # a typo said "synthetc has no classes.json: give --n-cls", as if the folder existed
    assert main(["--out", str(tmp_path / "x"), "--data", "synthetc"]) == 1
    assert capsys.readouterr().err == "iseg: error: --data synthetc: does not exist (give synth, or a dataset folder)\n"


def test_train_on_a_folder(tmp_path: Path) -> None:
    """An ADE20K-style folder written by iseg.synth trains through the same loop."""
    data = tmp_path / "ade"
    synth.write_dataset(data, 6, (32, 32), seed=1, layout="ade20k", val_fraction=0.34)
    cfg = TrainConfig(steps=2, batch_size=2, warmup=0, data=str(data), val_count=1, ckpt_every=5)
    res = train(TINY, cfg, tmp_path / "run", progress=False, log=lambda m: None)
    assert res.metrics is not None and res.metrics["pixels"] == 2 * 32 * 32


def test_plain_folder_score_is_named_the_training_images(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A plain folder has no validation split: the end's score is over its training images, and was recorded and
    printed as "val" (with --val-count ignored)."""
    data = tmp_path / "plain"
    synth.write_dataset(data, 3, (32, 32), seed=1, layout="plain")
    out = tmp_path / "run"
    assert main(["--out", str(out), "--no-progress", "--size", "32x32", "--d-model", "32", "--n-heads", "2",
                 "--n-layers", "1", "--steps", "1", "--batch-size", "2", "--warmup", "0", "--data", str(data)]) == 0
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert re.fullmatch(r"train mIoU \d+\.\d\d %  pixel acc \d+\.\d\d % \(the training images: a plain folder has "
                        r"no validation split\)", line), line
    val = read_fp_metadata(out / "model.safetensors")["training"]["val"]
    assert val["split"] == "train" and val["count"] == 3


def test_dataset_reads_16_bit_images_as_inference_does(tmp_path: Path) -> None:
    """Pillow's convert("RGB") clips 16-bit greyscale to white: the dataset loader took every such image as
    255 while iseg infer / iseg-host (imageio.to_rgb8) read its top byte."""
    from PIL import Image

    from iseg.imageio import load_image

    (tmp_path / "images").mkdir()
    (tmp_path / "labels").mkdir()
    g = (np.arange(12 * 16, dtype=np.uint16).reshape(12, 16) * 300).astype(np.uint16)
    Image.fromarray(g).save(tmp_path / "images" / "a.png")
    Image.fromarray(np.zeros((12, 16), np.uint8)).save(tmp_path / "labels" / "a.png")
    img, _ = synth.folder_samples(tmp_path)[0].load()
    assert np.array_equal(img, load_image(tmp_path / "images" / "a.png"))
    assert np.array_equal(img[:, :, 0], (g >> 8).astype(np.uint8))  # by hand: the top byte, grey in all three
