"""Synthetic segmentation data: determinism, shapes, class coverage, learnability cues, file layouts."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from iseg.errors import IsegError
from iseg.synth import (
    ADE_LABEL_OFFSET,
    CLASS_COLORS,
    CLASS_NAMES,
    IGNORE_INDEX,
    NUM_CLASSES,
    colorize,
    make_sample,
    make_split,
    parse_size,
    read_folder,
    sample_seed,
    synth_main,
    write_dataset,
)


@pytest.fixture(scope="module")
def corpus() -> list[tuple[np.ndarray, np.ndarray]]:
    """Forty 96x128 training scenes shared by the statistics tests (generated once: keeps the suite fast)."""
    return list(make_split("train", 40, (96, 128), seed=3))


def test_class_tables_are_consistent() -> None:
    assert NUM_CLASSES == len(CLASS_NAMES) == len(CLASS_COLORS) == 8
    assert CLASS_NAMES[0] == "background"
    assert len(set(CLASS_NAMES)) == NUM_CLASSES
    assert len(set(CLASS_COLORS)) == NUM_CLASSES
    assert all(len(c) == 3 and all(0 <= x <= 255 for x in c) for c in CLASS_COLORS)


def test_same_seed_same_bytes_different_seed_differs() -> None:
    a_img, a_lab = make_sample(7, (64, 80))
    b_img, b_lab = make_sample(7, (64, 80))
    assert a_img.tobytes() == b_img.tobytes() and a_lab.tobytes() == b_lab.tobytes()
    c_img, c_lab = make_sample(8, (64, 80))
    assert not np.array_equal(a_img, c_img)
    assert not np.array_equal(a_lab, c_lab)


@pytest.mark.parametrize("size", [(64, 64), (48, 112), (128, 72), (8, 8)])
def test_shapes_and_dtypes(size: tuple[int, int]) -> None:
    img, lab = make_sample(1, size)
    assert img.shape == (*size, 3) and img.dtype == np.uint8
    assert lab.shape == size and lab.dtype == np.uint8
    assert lab.max() < NUM_CLASSES


def test_all_classes_appear_and_labels_in_range(corpus: list[tuple[np.ndarray, np.ndarray]]) -> None:
    counts = np.zeros(256, np.int64)
    for _, lab in corpus:
        counts += np.bincount(lab.ravel(), minlength=256)
    assert np.all(counts[:NUM_CLASSES] > 0), counts[:NUM_CLASSES]
    assert counts[NUM_CLASSES:].sum() == 0
    # Background dominates but objects are a sizeable share: a model must learn them.
    frac = counts[1:NUM_CLASSES].sum() / counts.sum()
    assert 0.15 < frac < 0.7, frac


def test_objects_span_several_patches(corpus: list[tuple[np.ndarray, np.ndarray]]) -> None:
    """A visible class region averages well over one 16x16 patch, so patch-16 ViTs can see it."""
    areas = [int((lab == c).sum()) for _, lab in corpus for c in range(1, NUM_CLASSES) if (lab == c).any()]
    assert np.mean(areas) > 3 * 16 * 16
    assert np.median(areas) > 2 * 16 * 16


def test_labels_match_image_colours(corpus: list[tuple[np.ndarray, np.ndarray]]) -> None:
    """Labels describe the pixels: class mean colours are far apart and a nearest-mean-colour rule,
    fitted on half of the scenes, labels most pixels of the other half (colour is a real cue)."""
    fit, held = corpus[:20], corpus[20:]
    sums = np.zeros((NUM_CLASSES, 3))
    n = np.zeros(NUM_CLASSES)
    for img, lab in fit:
        for c in range(NUM_CLASSES):
            m = lab == c
            sums[c] += img[m].sum(axis=0)
            n[c] += m.sum()
    means = sums / n[:, None]
    # each object class's mean chromaticity is closest to its own declared colour
    declared = np.asarray(CLASS_COLORS, np.float64)
    cos = (means @ declared.T) / np.outer(np.linalg.norm(means, axis=1), np.linalg.norm(declared, axis=1))
    for c in range(1, NUM_CLASSES):
        assert np.argmax(cos[c]) == c, (CLASS_NAMES[c], means[c].round())
    dist = np.linalg.norm(means[:, None] - means[None], axis=-1)
    assert dist[~np.eye(NUM_CLASSES, dtype=bool)].min() > 35, dist.round()
    correct = total = 0
    for img, lab in held:
        px = img.reshape(-1, 3).astype(np.float64)
        pred = np.argmin(((px[:, None] - means[None]) ** 2).sum(-1), axis=1)
        correct += int((pred == lab.ravel()).sum())
        total += lab.size
    assert correct / total > 0.85, correct / total


def test_background_is_textured_not_flat(corpus: list[tuple[np.ndarray, np.ndarray]]) -> None:
    stds = [img[lab == 0].astype(np.float64).std(axis=0).mean() for img, lab in corpus]
    assert np.median(stds) > 5


def test_split_seeds_are_disjoint() -> None:
    train = {sample_seed("train", 0, i) for i in range(1000)}
    val = {sample_seed("val", 0, i) for i in range(1000)}
    other = {sample_seed("train", 1, i) for i in range(1000)}
    assert not train & val and not train & other and len(train) == 1000
    assert sample_seed("train", 0, 3) == 6 and sample_seed("val", 2, 3) == (2 << 32) + 7
    (t_img, _), (v_img, _) = next(make_split("train", 1, (32, 32))), next(make_split("val", 1, (32, 32)))
    assert not np.array_equal(t_img, v_img)
    assert np.array_equal(next(make_split("val", 1, (32, 32)))[0], make_sample(1, (32, 32))[0])


@pytest.mark.parametrize(
    "call",
    [
        lambda: make_sample(-1, (32, 32)),
        lambda: make_sample(1.5, (32, 32)),  # type: ignore[arg-type]
        lambda: make_sample(1, (32,)),  # type: ignore[arg-type]
        lambda: make_sample(1, (4, 32)),
        lambda: make_sample(1, (32, 32.0)),  # type: ignore[arg-type]
        lambda: make_split("test", 3, (32, 32)),
        lambda: make_split("train", -1, (32, 32)),
        lambda: make_split("train", 2**31 + 1, (32, 32)),  # past the index limit: refused at once, not listed
        lambda: make_split("val", 1, (32, 32), seed=-1),  # checked at the call, not at the first next()
        lambda: parse_size("128by96"),
        lambda: parse_size("128x"),
        lambda: parse_size("0x64"),
        lambda: parse_size("64x64x3"),
    ],
)
def test_bad_inputs_raise_iseg_error(call) -> None:
    with pytest.raises(IsegError):
        call()


def test_parse_size() -> None:
    assert parse_size("96x128") == (96, 128)
    assert parse_size(" 64X48 ") == (64, 48)
    assert parse_size("32") == (32, 32)


def test_colorize_uses_palette() -> None:
    lab = np.array([[0, 1], [7, IGNORE_INDEX]], np.uint8)
    rgb = colorize(lab)
    assert rgb.shape == (2, 2, 3)
    assert tuple(rgb[0, 1]) == CLASS_COLORS[1] and tuple(rgb[1, 0]) == CLASS_COLORS[7]
    assert tuple(rgb[1, 1]) == (0, 0, 0)


def test_plain_layout_round_trip(tmp_path: Path) -> None:
    counts = write_dataset(tmp_path, 3, (40, 56), seed=5, layout="plain")
    assert counts == {"train": 3, "val": 0}
    assert sorted(p.name for p in (tmp_path / "images").iterdir()) == ["0000.png", "0001.png", "0002.png"]
    assert not list(tmp_path.rglob("*.tmp")) and not list(tmp_path.rglob(".tmp-*"))
    with Image.open(tmp_path / "labels" / "0000.png") as im:
        assert im.mode == "P"  # viewable in colour, indices preserved
    got = list(read_folder(tmp_path))
    want = list(make_split("train", 3, (40, 56), seed=5))
    assert [name for _, _, name in got] == ["0000", "0001", "0002"]
    for (img, lab, _), (w_img, w_lab) in zip(got, want, strict=True):
        assert np.array_equal(img, w_img) and np.array_equal(lab, w_lab)  # PNG: lossless


def test_ade20k_layout_round_trip(tmp_path: Path) -> None:
    counts = write_dataset(tmp_path, 5, (48, 64), seed=2, layout="ade20k", val_fraction=0.4)
    assert counts == {"train": 3, "val": 2}
    tr = sorted(p.name for p in (tmp_path / "images" / "training").iterdir())
    assert tr == ["ADE_train_00000001.jpg", "ADE_train_00000002.jpg", "ADE_train_00000003.jpg"]
    assert len(list((tmp_path / "annotations" / "validation").glob("*.png"))) == 2
    # On disk the ADE convention holds: class c stored as c + 1, so 0 (ignore) never appears.
    with Image.open(tmp_path / "annotations" / "training" / "ADE_train_00000001.png") as im:
        raw = np.asarray(im)
    want_lab = make_sample(sample_seed("train", 2, 0), (48, 64))[1]
    assert np.array_equal(raw, want_lab + ADE_LABEL_OFFSET)
    meta = json.loads((tmp_path / "classes.json").read_text())
    assert meta["names"] == list(CLASS_NAMES) and meta["label_offset"] == 1
    assert [tuple(c) for c in meta["colors"]] == list(CLASS_COLORS)

    got = list(read_folder(tmp_path))
    want = list(make_split("train", 3, (48, 64), seed=2)) + list(make_split("val", 2, (48, 64), seed=2))
    assert [n for _, _, n in got][0] == "training/ADE_train_00000001"
    assert [n for _, _, n in got][-1] == "validation/ADE_val_00000002"
    for (img, lab, _), (w_img, w_lab) in zip(got, want, strict=True):
        assert np.array_equal(lab, w_lab)  # offset round-trips exactly
        assert np.abs(img.astype(int) - w_img).mean() < 5  # JPEG q95: close, not exact
    assert len(list(read_folder(tmp_path, split="val"))) == 2


def test_ade_reader_maps_zero_to_ignore(tmp_path: Path) -> None:
    """Real ADE20K annotations contain 0 ("other"): it must come back as the ignore index."""
    (tmp_path / "images" / "training").mkdir(parents=True)
    (tmp_path / "annotations" / "training").mkdir(parents=True)
    Image.fromarray(np.zeros((2, 3, 3), np.uint8)).save(tmp_path / "images" / "training" / "a.jpg")
    Image.fromarray(np.array([[0, 1, 2], [8, 0, 3]], np.uint8)).save(
        tmp_path / "annotations" / "training" / "a.png"
    )
    ((img, lab, name),) = list(read_folder(tmp_path))  # no classes.json: ADE default offset
    assert name == "training/a" and img.shape == (2, 3, 3)
    assert lab.tolist() == [[IGNORE_INDEX, 0, 1], [7, IGNORE_INDEX, 2]]


def test_reader_rejects_missing_and_malformed_folders(tmp_path: Path) -> None:
    with pytest.raises(IsegError, match="does not exist"):
        read_folder(tmp_path / "nope")
    with pytest.raises(IsegError, match="neither"):
        read_folder(tmp_path)
    write_dataset(tmp_path / "p", 2, (16, 16), layout="plain")
    (tmp_path / "p" / "labels" / "0001.png").unlink()
    with pytest.raises(IsegError, match="0001.png"):
        read_folder(tmp_path / "p")
    write_dataset(tmp_path / "q", 1, (16, 16), layout="plain")
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(tmp_path / "q" / "labels" / "0000.png")
    with pytest.raises(IsegError, match="mode RGB"):
        list(read_folder(tmp_path / "q"))
    Image.fromarray(np.zeros((8, 16), np.uint8)).save(tmp_path / "q" / "labels" / "0000.png")
    with pytest.raises(IsegError, match="8x16"):
        list(read_folder(tmp_path / "q"))
    (tmp_path / "q" / "images" / "0000.png").write_bytes(b"not a png")
    with pytest.raises(IsegError, match="cannot read"):
        list(read_folder(tmp_path / "q"))
    (tmp_path / "q" / "classes.json").write_text("{bad json")
    with pytest.raises(IsegError, match="classes.json"):
        read_folder(tmp_path / "q")
    (tmp_path / "e" / "images").mkdir(parents=True)
    (tmp_path / "e" / "labels").mkdir()
    with pytest.raises(IsegError, match="no images"):
        read_folder(tmp_path / "e")
    with pytest.raises(IsegError, match="plain layout"):
        read_folder(tmp_path / "p", split="train")


def test_an_empty_ade20k_split_is_named(tmp_path: Path) -> None:
    """`iseg synth --count 1 --layout ade20k` writes no validation image: `iseg eval --data DIR` said the folder
    "holds no images", beside the training image it holds."""
    write_dataset(tmp_path / "a", 1, (16, 16), layout="ade20k")
    assert len(list(read_folder(tmp_path / "a", split="train"))) == 1
    with pytest.raises(IsegError, match=r"a/images/validation holds no images$"):
        read_folder(tmp_path / "a", split="val")


def test_write_dataset_rejects_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(IsegError, match="layout"):
        write_dataset(tmp_path, 1, (16, 16), layout="coco")
    with pytest.raises(IsegError, match="no validation split"):
        write_dataset(tmp_path, 4, (16, 16), layout="plain", val_fraction=0.5)
    with pytest.raises(IsegError, match="val fraction"):
        write_dataset(tmp_path, 4, (16, 16), layout="ade20k", val_fraction=1.5)
    (tmp_path / "file").write_text("x")
    with pytest.raises(IsegError, match="not a folder"):
        write_dataset(tmp_path / "file", 1, (16, 16))
    with pytest.raises(IsegError, match=r"count 10000000000000 too large \(limit 2\*\*31"):
        write_dataset(tmp_path / "huge", 10**13, (16, 16))  # listed 10^13 seeds first, empty folders left
    assert not (tmp_path / "huge").exists()


def test_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "ds"
    rc = synth_main(
        [
            "--count",
            "4",
            "--size",
            "24x40",
            "--seed",
            "9",
            "--out",
            str(out),
            "--layout",
            "ade20k",
            "--val-fraction",
            "0.25",
        ]
    )
    assert rc == 0
    assert "3 training and 1 validation" in capsys.readouterr().out
    shapes = {(img.shape, lab.shape) for img, lab, _ in read_folder(out)}
    assert shapes == {((24, 40, 3), (24, 40))}
    rc = synth_main(["--count", "2", "--size", "24by40", "--out", str(tmp_path / "bad")])
    assert rc == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--size" in err
    assert not (tmp_path / "bad").exists()
