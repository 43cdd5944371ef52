"""Inputs: every image mode becomes RGB u8, fitting to the model size is undone exactly on the labels.

Image decoding is ``iseg.imageio.load_image``, the one reader ``iseg infer`` uses too.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from iseg.errors import IsegError
from iseg.host.inputs import (
    PAD_VALUE,
    Failure,
    Frame,
    collect_sources,
    fit,
    iter_frames,
    place,
    resize_nearest,
    restore,
)
from iseg.imageio import ImageError, read_labels_png, save_labels_png
from iseg.imageio import load_image as read_image


def _save(path: Path, im: Image.Image) -> Path:
    im.save(path)
    return path


def test_grayscale_becomes_three_equal_channels(tmp_path: Path) -> None:
    g = np.arange(20 * 30, dtype=np.uint16).reshape(20, 30) % 256
    rgb = read_image(_save(tmp_path / "g.png", Image.fromarray(g.astype(np.uint8), "L")))
    assert rgb.shape == (20, 30, 3) and rgb.dtype == np.uint8
    for c in range(3):
        np.testing.assert_array_equal(rgb[:, :, c], g)


def test_rgba_drops_alpha(tmp_path: Path) -> None:
    a = np.random.default_rng(1).integers(0, 256, (10, 12, 4), dtype=np.uint8)
    rgb = read_image(_save(tmp_path / "a.png", Image.fromarray(a, "RGBA")))
    np.testing.assert_array_equal(rgb, a[:, :, :3])


def test_palette_maps_through_its_palette(tmp_path: Path) -> None:
    idx = np.random.default_rng(2).integers(0, 4, (9, 7), dtype=np.uint8)
    pal = [10, 20, 30, 40, 50, 60, 70, 80, 90, 200, 210, 220] + [0] * (768 - 12)
    im = Image.frombytes("P", (7, 9), idx.tobytes())
    im.putpalette(pal)
    rgb = read_image(_save(tmp_path / "p.png", im))
    np.testing.assert_array_equal(rgb, np.asarray(pal[:12], np.uint8).reshape(4, 3)[idx])


def test_16_bit_keeps_the_top_byte(tmp_path: Path) -> None:
    """Pillow's own convert("RGB") would clip every value above 255 to white."""
    g = (np.arange(16 * 16, dtype=np.uint32).reshape(16, 16) * 257).astype(np.uint16)
    rgb = read_image(_save(tmp_path / "g16.png", Image.fromarray(g)))
    np.testing.assert_array_equal(rgb[:, :, 1], (g >> 8).astype(np.uint8))
    assert rgb.max() == 255 and rgb.min() == 0


def test_truncated_and_foreign_files_fail_with_a_reason(tmp_path: Path) -> None:
    img = np.random.default_rng(3).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    good = _save(tmp_path / "good.png", Image.fromarray(img))
    cut = tmp_path / "cut.png"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    txt = tmp_path / "notes.png"
    txt.write_text("not an image")
    for bad in (cut, txt):
        with pytest.raises(ImageError) as err:
            read_image(bad)
        assert str(err.value).startswith(f"{bad}: ") and err.value.reason in str(err.value)
    sources, _ = collect_sources([str(good), str(cut), str(txt)])
    items = list(iter_frames(sources))
    assert [type(i) for i in items] == [Frame, Failure, Failure]
    assert "truncated" in items[1].reason or "decode" in items[1].reason
    assert "not an image" in items[2].reason


def test_missing_path_and_empty_folder_are_errors(tmp_path: Path) -> None:
    with pytest.raises(IsegError, match="no such file"):
        collect_sources([str(tmp_path / "nope.png")])
    (tmp_path / "empty").mkdir()
    with pytest.raises(IsegError, match="holds no images"):
        collect_sources([str(tmp_path / "empty")])
    with pytest.raises(IsegError, match="no inputs"):
        collect_sources([])


def test_folders_are_sorted_recursive_and_count_ignored_files(tmp_path: Path) -> None:
    d = tmp_path / "shots"
    (d / "sub").mkdir(parents=True)
    for n in ("b.png", "a.jpg", "sub/c.bmp"):
        Image.new("RGB", (4, 4)).save(d / n)
    (d / "readme.txt").write_text("x")
    sources, ignored = collect_sources([str(d)])
    assert [s.name for s in sources] == ["a", "b", "sub/c"]
    assert ignored == 1


def test_colliding_output_names_are_refused(tmp_path: Path) -> None:
    for sub in ("x", "y"):
        (tmp_path / sub).mkdir()
        Image.new("RGB", (4, 4)).save(tmp_path / sub / "img.png")
    with pytest.raises(IsegError, match="both write outputs"):
        collect_sources([str(tmp_path / "x" / "img.png"), str(tmp_path / "y" / "img.png")])


def test_image_inside_a_videos_frame_folder_is_refused(tmp_path: Path) -> None:
    """`clip/000000.png` and the video `clip.mp4` both write labels/clip/000000.png: the image's would be lost."""
    pytest.importorskip("cv2")
    (tmp_path / "clip").mkdir()
    Image.new("RGB", (4, 4)).save(tmp_path / "clip" / "000000.png")
    (tmp_path / "clip.mp4").write_bytes(b"")  # never opened: the names clash before any decoding
    with pytest.raises(IsegError, match=r"both write into labels/clip/"):
        collect_sources([str(tmp_path)])
    with pytest.raises(IsegError, match=r"both write into labels/clip/"):
        collect_sources([str(tmp_path / "clip"), str(tmp_path / "clip.mp4")])


@pytest.mark.parametrize("shape", [(32, 48), (20, 30), (32, 10), (1, 1)])
def test_pad_places_top_left_and_restores_exactly(shape: tuple[int, int]) -> None:
    img = np.random.default_rng(4).integers(0, 256, (*shape, 3), dtype=np.uint8)
    canvas, pl = fit(img, (32, 48), "pad")
    assert canvas.shape == (32, 48, 3)
    np.testing.assert_array_equal(canvas[: shape[0], : shape[1]], img)
    assert (canvas[shape[0]:] == PAD_VALUE).all() and (canvas[:, shape[1]:] == PAD_VALUE).all()
    labels = canvas[:, :, 0] % 7
    np.testing.assert_array_equal(restore(labels, pl), img[:, :, 0] % 7)


@pytest.mark.parametrize("shape", [(64, 48), (100, 300), (33, 49)])
def test_pad_shrinks_larger_images_keeping_aspect(shape: tuple[int, int]) -> None:
    pl = place(shape, (32, 48), "pad")
    ch, cw = pl.content
    assert ch <= 32 and cw <= 48 and (ch == 32 or cw == 48)
    assert abs(ch / cw - shape[0] / shape[1]) < 0.1 * shape[0] / shape[1] + 1 / min(ch, cw)
    img = np.zeros((*shape, 3), np.uint8)
    canvas, pl = fit(img, (32, 48), "pad")
    assert restore(np.zeros((32, 48), np.uint8), pl).shape == shape


@pytest.mark.parametrize("shape", [(16, 24), (64, 96), (50, 20)])
def test_resize_fills_the_model_and_maps_labels_back(shape: tuple[int, int]) -> None:
    img = np.zeros((*shape, 3), np.uint8)
    img[:, shape[1] // 2:] = 200  # right half a different colour
    canvas, pl = fit(img, (32, 48), "resize")
    assert canvas.shape == (32, 48, 3) and pl.content == (32, 48)
    labels = (canvas[:, :, 0] > 100).astype(np.uint8)
    back = restore(labels, pl)
    assert back.shape == shape
    np.testing.assert_array_equal(back[:, : shape[1] // 2 - 2], 0)
    np.testing.assert_array_equal(back[:, shape[1] // 2 + 2:], 1)


def test_nearest_resize_is_exact_for_integer_factors() -> None:
    lab = np.random.default_rng(5).integers(0, 9, (8, 6), dtype=np.uint8)
    up = resize_nearest(lab, (24, 12))
    np.testing.assert_array_equal(up, np.repeat(np.repeat(lab, 3, 0), 2, 1))
    np.testing.assert_array_equal(resize_nearest(up, (8, 6)), lab)


def test_unknown_fit_policy() -> None:
    with pytest.raises(IsegError, match="unknown fit policy"):
        place((4, 4), (8, 8), "stretch")


def test_label_png_round_trip_in_class_colours(tmp_path: Path) -> None:
    labels = np.random.default_rng(6).integers(0, 5, (9, 13), dtype=np.uint8)
    colors = [[0, 0, 0], [255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 0]]
    save_labels_png(tmp_path / "sub" / "l.png", labels, colors)
    assert [p.name for p in (tmp_path / "sub").iterdir()] == ["l.png"]  # no temporary left behind
    np.testing.assert_array_equal(read_labels_png(tmp_path / "sub" / "l.png"), labels)
    with Image.open(tmp_path / "sub" / "l.png") as im:
        assert im.mode == "P"
        np.testing.assert_array_equal(np.asarray(im.convert("RGB")), np.asarray(colors, np.uint8)[labels])
