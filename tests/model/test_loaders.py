"""Loaders: the Segmenter release layout, timm encoder weights, and our FP .safetensors."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest
import yaml

torch = pytest.importorskip("torch")

from safetensors import safe_open  # noqa: E402
from safetensors.torch import save_file  # noqa: E402

from iseg.errors import IsegError  # noqa: E402
from iseg.model.loaders import (  # noqa: E402
    load_fp,
    load_model,
    load_segmenter_release,
    load_timm_encoder,
    read_fp_metadata,
    read_variant,
    save_fp,
)
from iseg.model.segmenter import Segmenter, SegmenterConfig, resize_pos_embed  # noqa: E402


def make_model(decoder: str = "mask_transformer", seed: int = 0, **kw) -> Segmenter:
    cfg = dict(d_model=64, n_heads=2, n_layers=2, patch_size=8, image_size=(32, 48), n_cls=6,
               decoder=decoder, encoder_head_classes=1000, normalization="deit", backbone="vit_tiny_test")
    torch.manual_seed(seed)
    return Segmenter(SegmenterConfig(**{**cfg, **kw})).eval()


def variant_doc(decoder: str = "mask_transformer", **net) -> dict:
    """What Segmenter's train.py dumps, image_size as a Python tuple (-> !!python/tuple)."""
    net_kwargs = dict(backbone="vit_tiny_test", d_model=64, n_heads=2, n_layers=2, patch_size=8,
                      image_size=(32, 48), normalization="deit", dropout=0.0, drop_path_rate=0.1,
                      distilled=False, n_cls=6,
                      decoder=dict(name=decoder, n_layers=2, drop_path_rate=0.0, dropout=0.1))
    net_kwargs.update(net)
    return dict(world_batch_size=8, version="normal", resume=True, net_kwargs=net_kwargs,
                dataset_kwargs=dict(dataset="ade20k", image_size=512, crop_size=512, batch_size=8),
                inference_kwargs=dict(im_size=512, window_size=512, window_stride=512), amp=False)


def write_release(folder: Path, model: Segmenter, variant: dict | None = None, **extra) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    opt = torch.optim.SGD(model.parameters(), lr=0.001, momentum=0.9)
    doc = dict(model=model.state_dict(), optimizer=opt.state_dict(),
               lr_scheduler={"last_epoch": 63, "base_lrs": [0.001], "power": 0.9},
               n_cls=model.n_cls, epoch=63)
    doc.update(extra)
    torch.save(doc, folder / "checkpoint.pth")
    text = yaml.dump(variant or variant_doc(model.cfg.decoder))
    (folder / "variant.yml").write_text(text)
    return folder / "checkpoint.pth"


@pytest.mark.parametrize("decoder", ["mask_transformer", "linear"])
def test_release_round_trip(tmp_path: Path, decoder: str) -> None:
    model = make_model(decoder)
    ckpt = write_release(tmp_path / "seg", model)
    text = (tmp_path / "seg" / "variant.yml").read_text()
    assert "!!python/tuple" in text  # the real gotcha is present in what we read
    with pytest.raises(yaml.constructor.ConstructorError):
        yaml.safe_load(text)
    for where in (ckpt, ckpt.parent):
        loaded = load_segmenter_release(where)
        assert loaded.cfg.image_size == (32, 48) and loaded.cfg.normalization == "deit"
        assert loaded.cfg.decoder == decoder and loaded.cfg.n_cls == 6
        x = torch.randn(2, 3, 40, 56)
        with torch.no_grad():
            torch.testing.assert_close(loaded(x), model(x), rtol=0, atol=0)
    assert load_model(ckpt.parent).cfg == loaded.cfg


def test_release_with_switches(tmp_path: Path) -> None:
    ckpt = write_release(tmp_path, make_model())
    m = load_segmenter_release(ckpt, l2norm=False, upsample="nearest")
    assert not m.cfg.l2norm and m.cfg.upsample == "nearest"
    with pytest.raises(IsegError, match="'d_model' cannot be overridden"):
        load_segmenter_release(ckpt, d_model=32)


def test_read_variant_accepts_only_the_tuple_tag(tmp_path: Path) -> None:
    p = tmp_path / "variant.yml"
    p.write_text(yaml.dump(variant_doc()))
    assert read_variant(p)["net_kwargs"]["image_size"] == (32, 48)
    marker = tmp_path / "pwned"
    p.write_text(f"net_kwargs: !!python/object/apply:os.system ['touch {marker}']\n")
    with pytest.raises(IsegError, match="not a readable variant file"):
        read_variant(p)
    assert not marker.exists()
    p.write_text("a: 1\n")
    with pytest.raises(IsegError, match="no 'net_kwargs'"):
        read_variant(p)


def test_release_missing_key(tmp_path: Path) -> None:
    model = make_model()
    sd = model.state_dict()
    del sd["encoder.blocks.1.mlp.fc2.bias"]
    folder = tmp_path / "r"
    folder.mkdir()
    torch.save({"model": sd, "n_cls": 6}, folder / "checkpoint.pth")
    (folder / "variant.yml").write_text(yaml.dump(variant_doc()))
    with pytest.raises(IsegError, match=r"missing key 'encoder\.blocks\.1\.mlp\.fc2\.bias'"):
        load_segmenter_release(folder)


def test_release_wrong_shape_and_unexpected_key(tmp_path: Path) -> None:
    model = make_model()
    sd = model.state_dict()
    sd["decoder.cls_emb"] = torch.zeros(1, 7, 64)
    folder = tmp_path / "a"
    write_release(folder, model)
    torch.save({"model": sd}, folder / "checkpoint.pth")
    msg = r"'decoder\.cls_emb' has shape \(1, 7, 64\), the model expects \(1, 6, 64\)"
    with pytest.raises(IsegError, match=msg):
        load_segmenter_release(folder)
    sd = model.state_dict()
    sd["encoder.blocks.0.ls1.gamma"] = torch.ones(64)
    torch.save({"model": sd}, folder / "checkpoint.pth")
    with pytest.raises(IsegError, match=r"unexpected key 'encoder\.blocks\.0\.ls1\.gamma'"):
        load_segmenter_release(folder)


def test_release_layout_errors(tmp_path: Path) -> None:
    model = make_model()
    folder = tmp_path / "b"
    ckpt = write_release(folder, model)
    torch.save(model.state_dict(), ckpt)  # a bare state dict: no 'model'
    with pytest.raises(IsegError, match="not a Segmenter checkpoint"):
        load_segmenter_release(ckpt)
    write_release(folder, model)
    (folder / "variant.yml").unlink()
    with pytest.raises(IsegError, match="variant.yml does not exist"):
        load_segmenter_release(ckpt)
    write_release(folder, model, variant=variant_doc(n_layers=3))
    with pytest.raises(IsegError, match=r"missing key 'encoder\.blocks\.2\.norm1\.weight'"):
        load_segmenter_release(ckpt)
    bad = variant_doc()
    del bad["net_kwargs"]["patch_size"]
    write_release(folder, model, variant=bad)
    with pytest.raises(IsegError, match="net_kwargs has no 'patch_size'"):
        load_segmenter_release(ckpt)
    write_release(folder, model, variant=variant_doc("deeplab"))
    with pytest.raises(IsegError, match="decoder 'deeplab' is not supported"):
        load_segmenter_release(ckpt)
    write_release(folder, model)
    with pytest.raises(IsegError, match="does not exist"):
        load_segmenter_release(folder / "nope.pth")


class Evil:
    def __reduce__(self):  # runs on unpickling with the unsafe loader
        return (print, ("executed",))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_release_never_unpickles_code(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model = make_model()
    folder = tmp_path / "c"
    ckpt = write_release(folder, model)
    with open(ckpt, "wb") as f:
        pickle.dump({"model": model.state_dict(), "extra": Evil()}, f)
    with pytest.raises(IsegError, match="cannot be read as a weights-only torch file"):
        load_segmenter_release(ckpt)
    torch.save({"model": model.state_dict(), "extra": Evil()}, ckpt)
    with pytest.raises(IsegError, match="weights-only"):
        load_segmenter_release(ckpt)
    assert "executed" not in capsys.readouterr().out


def timm_state(model: Segmenter) -> dict:
    return {k[len("encoder."):]: v.clone() for k, v in model.state_dict().items() if k.startswith("encoder.")}


def test_timm_encoder_same_grid(tmp_path: Path) -> None:
    src = make_model(seed=1)
    dst = make_model(seed=2)
    notes = load_timm_encoder(dst, timm_state(src))
    assert notes == []
    for k, v in src.encoder.state_dict().items():
        torch.testing.assert_close(dst.encoder.state_dict()[k], v, rtol=0, atol=0)
    # the decoder is untouched
    torch.testing.assert_close(dst.decoder.cls_emb, make_model(seed=2).decoder.cls_emb)


def test_timm_encoder_resizes_pos_embed_and_skips_head(tmp_path: Path) -> None:
    """A 224-px-style checkpoint: square 3x3 grid, 21k-class head, saved as .pth and .safetensors."""
    src = make_model(seed=1)
    sd = timm_state(src)
    sd["pos_embed"] = torch.randn(1, 1 + 9, 64)
    sd["head.weight"], sd["head.bias"] = torch.randn(21843, 64), torch.randn(21843)
    torch.save({"model": sd}, tmp_path / "deit.pth")
    save_file({k: v.contiguous() for k, v in sd.items()}, str(tmp_path / "vit.safetensors"))
    for path in (tmp_path / "deit.pth", tmp_path / "vit.safetensors"):
        dst = make_model(seed=2)
        head = dst.encoder.head.weight.clone()
        notes = load_timm_encoder(dst, path)
        assert "pos_embed resized from 3x3 to 4x6" in notes
        assert any("head.weight kept" in n for n in notes)
        expect = resize_pos_embed(sd["pos_embed"], (3, 3), (4, 6), 1)
        torch.testing.assert_close(dst.encoder.pos_embed, expect)
        torch.testing.assert_close(dst.encoder.head.weight, head)
        torch.testing.assert_close(dst.encoder.blocks[1].attn.qkv.weight, sd["blocks.1.attn.qkv.weight"])
    with pytest.raises(IsegError, match=r"'head\.weight' has shape \(21843, 64\)"):
        load_timm_encoder(make_model(), tmp_path / "deit.pth", strict_head=True)


def test_timm_encoder_errors(tmp_path: Path) -> None:
    src = make_model()
    sd = timm_state(src)
    sd["blocks.0.ls1.gamma"] = torch.ones(64)
    with pytest.raises(IsegError, match=r"unexpected key 'blocks\.0\.ls1\.gamma'"):
        load_timm_encoder(make_model(), sd)
    sd = timm_state(src)
    del sd["norm.bias"]
    with pytest.raises(IsegError, match=r"missing key 'norm\.bias'"):
        load_timm_encoder(make_model(), sd)
    with pytest.raises(IsegError, match="a Segmenter checkpoint, not timm weights"):
        load_timm_encoder(make_model(), src.state_dict())
    sd = timm_state(src)
    sd["pos_embed"] = torch.randn(1, 1 + 10, 64)
    with pytest.raises(IsegError, match="not a square grid"):
        load_timm_encoder(make_model(), sd)


def test_fp_safetensors_round_trip(tmp_path: Path) -> None:
    model = make_model(class_names=tuple("abcdef"), class_colors=((1, 2, 3),) * 6, l2norm=False,
                       gelu="lambda")
    path = tmp_path / "m.safetensors"
    save_fp(model, path, training={"val": {"miou": 0.5}})
    loaded = load_fp(path)
    assert loaded.cfg == model.cfg
    x = torch.randn(1, 3, 32, 48)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x), rtol=0, atol=0)
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata()
    assert meta["format"] == "iseg-fp32" and meta["format_version"] == "1"
    cfg = json.loads(meta["config"])
    for key in ("d_model", "n_heads", "n_layers", "mlp_ratio", "patch_size", "image_size", "n_cls", "decoder",
                "l2norm", "upsample", "gelu", "normalization", "class_names", "class_colors"):
        assert key in cfg, key
    assert cfg["class_names"] == list("abcdef") and cfg["image_size"] == [32, 48]
    assert read_fp_metadata(path)["training"] == {"val": {"miou": 0.5}}
    assert load_model(path).cfg == model.cfg
    assert [p.name for p in tmp_path.iterdir()] == ["m.safetensors"]  # no temporary left behind


def test_fp_safetensors_errors(tmp_path: Path) -> None:
    other = tmp_path / "timm.safetensors"
    save_file({"a": torch.zeros(2)}, str(other))
    with pytest.raises(IsegError, match="not an iseg FP model"):
        load_fp(other)
    bad = tmp_path / "v9.safetensors"
    save_file({"a": torch.zeros(2)}, str(bad), metadata={"format": "iseg-fp32", "format_version": "9"})
    with pytest.raises(IsegError, match="format version '9' is not supported"):
        load_fp(bad)
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"\x00" * 20)
    with pytest.raises(IsegError, match="not a readable .safetensors file"):
        load_fp(junk)
    with pytest.raises(IsegError, match="does not exist"):
        load_model(tmp_path / "absent.safetensors")
    (tmp_path / "x.onnx").write_bytes(b"")
    with pytest.raises(IsegError, match="unknown model layout"):
        load_model(tmp_path / "x.onnx")
    model = make_model()
    path = tmp_path / "ok.safetensors"
    save_fp(model, path)
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata()
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    del tensors["decoder.mask_norm.bias"]
    save_file(tensors, str(path), metadata=meta)
    with pytest.raises(IsegError, match=r"missing key 'decoder\.mask_norm\.bias'"):
        load_fp(path)


BUILTIN = Path(__file__).resolve().parents[2] / "model" / "builtin" / "builtin_fp32.safetensors"


@pytest.mark.skipif(not BUILTIN.exists(), reason="built-in FP model not trained yet")
def test_builtin_model_file() -> None:
    """The shipped weights: small, the I-Segmenter switches, and still segmenting the synthetic val split."""
    from iseg import synth
    from iseg.model.data import SynthDataset
    from iseg.model.eval import evaluate_fp

    assert BUILTIN.stat().st_size < 2 * 2**20
    meta = read_fp_metadata(BUILTIN)
    cfg = meta["config"]
    assert cfg.class_names == synth.CLASS_NAMES and cfg.n_cls == synth.NUM_CLASSES
    assert not cfg.l2norm and cfg.gelu == "lambda" and cfg.patch_size == 4 and cfg.upsample == "nearest"
    assert meta["training"]["val"]["miou"] >= 0.85
    m = evaluate_fp(load_fp(BUILTIN), SynthDataset("val", 16, cfg.image_size), batch_size=16)
    assert m["miou"] > 0.8  # 16 scenes, nearest labels: measured 0.876 on 200 (docs/model.md)


def test_fp_file_bytes_are_a_function_of_the_model(tmp_path: Path) -> None:
    """safetensors writes its metadata map in an order that changes per call (8 saves of 4 keys gave 8 files):
    save_fp rewrites the header with sorted keys, so the same model and training record give the same bytes, and
    the file still loads to the same tensors."""
    model = make_model()
    blobs = set()
    for i in range(6):
        save_fp(model, tmp_path / f"m{i}.safetensors", training={"steps": 3, "val": {"miou": 0.5}})
        blobs.add((tmp_path / f"m{i}.safetensors").read_bytes())
    assert len(blobs) == 1
    blob = blobs.pop()
    n = int.from_bytes(blob[:8], "little")
    assert n % 8 == 0
    header = json.loads(blob[8:8 + n])
    assert list(header) == sorted(header) and list(header["__metadata__"]) == sorted(header["__metadata__"])
    back = load_fp(tmp_path / "m0.safetensors")
    for (k, a), (k2, b) in zip(model.state_dict().items(), back.state_dict().items(), strict=True):
        assert k == k2 and torch.equal(a, b)
    assert read_fp_metadata(tmp_path / "m0.safetensors")["training"] == {"steps": 3, "val": {"miou": 0.5}}
