"""C-simulation (g++) of generated projects == the numpy reference, per layer and end to end."""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from iseg.errors import IsegError
from iseg.generator.cli import check_csim, generate, main
from iseg.generator.csim import CsimLibrary, build
from iseg.random_model import PRESETS, calibration_image

from .conftest import assert_csim_counts_the_plan, make_ckpt, write_config
from .synthesis_view import run_synthesis_view

pytestmark = [pytest.mark.csim, pytest.mark.skipif(shutil.which("g++") is None, reason="g++ not installed")]

BASE = replace(PRESETS["tiny"], layers=1, dec_layers=1)

VARIANTS = {
    # non-square image, mask decoder, d_head 16, precise Shiftmax, lambda-GELU
    "nonsquare_dh16": (replace(BASE, image=(48, 80), dim=32, heads=2, mlp_dim=64, dec_dim=32, dec_heads=2,
                               dec_mlp_dim=64), None),
    # linear decoder, d_head 32, I-ViT Shiftmax, ShiftGELU (a separate GELU row)
    "linear_ivit_shift": (replace(BASE, decoder="linear", softmax="ivit", gelu="shift", dim=64, heads=2), None),
    # d_head 64, mask decoder, explicit array that divides nothing (12 columns: 4-byte m_axi beats, axi_beat)
    "dh64_array3x12": (replace(BASE, dim=128, heads=2, mlp_dim=128, dec_dim=64, dec_heads=1, dec_mlp_dim=96,
                              n_cls=5), {"rows": 3, "cols": 12}),
    # u8 probabilities: Cfg::PV_II 1 (the P.V loop at the packed rate), mask decoder, d_head 16
    "precise8_pv_ii1": (replace(BASE, softmax="precise8", dim=32, heads=2, mlp_dim=64, dec_dim=32, dec_heads=2,
                                dec_mlp_dim=64), {"rows": 4, "cols": 8}),
    # odd sizes: 3x5 patch grid, 3 heads of 16, 7 classes, mask decoder with 2 blocks
    "odd_grid": (replace(BASE, image=(24, 40), dim=48, heads=3, mlp_dim=80, dec_dim=24, dec_heads=3,
                         dec_layers=2, dec_mlp_dim=40, n_cls=7), {"rows": 6, "cols": 12}),
    # one class: the per-channel requants of one channel (the linear head's, the mask decoder's class
    # LayerNorm's) are scalars, so nothing is loaded for them (estimate.rq_table)
    # the K unroll (Cfg::KD): 4 k a step through a packed chain, precise (P.V at PV_II 2), a 3 x 5 grid and 7 classes
    # (the decoder's 22 tokens: P.V's last step of 4 keys has 2 lanes past T, which read zero)
    "k_unroll4_packed": (replace(BASE, image=(24, 40), dim=48, heads=3, mlp_dim=80, dec_dim=24, dec_heads=3,
                                 dec_layers=2, dec_mlp_dim=40, n_cls=7), {"rows": 6, "cols": 12, "k_unroll": 4}),
    # KD 2 on a DSP per MAC, precise8, d_head 16
    "k_unroll2_unpacked_p8": (replace(BASE, softmax="precise8", dim=32, heads=2, mlp_dim=64, dec_dim=32, dec_heads=2,
                                      dec_mlp_dim=64), {"rows": 4, "cols": 8, "macs_per_dsp": 1, "k_unroll": 2}),
    "one_class_linear": (replace(BASE, decoder="linear", dim=32, heads=2, mlp_dim=64, n_cls=1), None),
    "one_class_mask": (replace(BASE, dim=32, heads=2, mlp_dim=64, dec_dim=16, dec_heads=1, dec_mlp_dim=32,
                               n_cls=1), None),
}


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_csim_matches_reference(name: str, tmp_path: Path) -> None:
    spec, array = VARIANTS[name]
    ckpt = make_ckpt(tmp_path, spec, seed=len(name))
    out = generate(write_config(tmp_path, ckpt, array=array, outputs=["hls"]))
    summary = check_csim(out, ckpt, "2")
    assert summary.startswith("csim PASS: 2 image(s)")
    assert "; cycles counted = estimate (" in summary and "; DDR bytes counted = estimate (" in summary
    assert summary.endswith("memory ports: every pipelined loop within its banks and its m_axi beats"), summary
    # the same project's synthesis view (__SYNTHESIS__: ap_int<ARR> accumulators, Vitis' streams, no checks) through
    # its test bench: it compiles as csynth's front end would see it and computes bit for bit
    ok, log = run_synthesis_view(out, tmp_path)
    assert ok, log
    if name == "dh64_array3x12":
        # the stores write whole beats and a GEMM tile's columns start at byte j C: the beat divides C = 12, so the
        # planner narrows the KV260's 16-byte ports to 4-byte beats (estimate.axi_beat), where a V beat of the
        # K/V load is one word of the weight buffer (schedule.h kv_start checks it)
        cfg_h = (out / "src" / "model_cfg.h").read_text()
        assert "static constexpr int AXI_BYTES = 4;" in cfg_h and "static constexpr int C = 12;" in cfg_h


@pytest.fixture(scope="module")
def tiny_project(tmp_path_factory: pytest.TempPathFactory, tiny_ckpt: Path) -> Path:
    folder = tmp_path_factory.mktemp("csim")
    out = generate(write_config(folder, tiny_ckpt, outputs=["hls", "csim"]))
    build(out)  # every test below may run alone (-k): none relies on another having compiled the library
    return out


def test_library_holds_no_absolute_path(tiny_project: Path) -> None:
    """The built library names the ap_types headers relatively (-ffile-prefix-map): ap_private.h's __FILE__ put the
    wheel's absolute path into it, so a project folder with its build/ was not relocatable."""
    from iseg.generator.csim import ap_types_dir

    lib = (tiny_project / "build" / "libiseg_csim.so").read_bytes()
    assert str(ap_types_dir()).encode() not in lib and str(tiny_project).encode() not in lib
    assert b"ap_types/etc/ap_private.h" in lib  # the same __FILE__, relative


def test_library_copy_on_a_full_disk_leaves_nothing(tiny_project: Path, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """The cached library's copy into build/ failing half way (a full disk) left build/libiseg_csim.so.tmp behind and a
    line naming the cache's file; now nothing is left and the line names the project's library."""
    import errno
    import shutil as real_shutil

    from iseg.generator import csim

    proj = tmp_path / "p"
    real_shutil.copytree(tiny_project, proj)
    for f in ("libiseg_csim.so", "libiseg_csim.sha256"):
        (proj / "build" / f).unlink()

    def full(src: object, dst: object) -> None:
        Path(str(dst)).write_bytes(b"half")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(csim.shutil, "copyfile", full)
    with pytest.raises(IsegError) as exc:
        build(proj)
    lib = proj / "build" / "libiseg_csim.so"
    assert str(exc.value) == f"{lib}: cannot write the C-simulation library: No space left on device"
    left = sorted(p.name for p in (proj / "build").iterdir())
    assert not any(n.startswith("libiseg_csim.") for n in left), left


def test_a_truncated_library_with_its_stamp_is_copied_again(tiny_project: Path, tmp_path: Path) -> None:
    """The stamp held only the sources' digest: a library truncated on disk was taken as up to date, and dlopen
    of it ended the process with SIGBUS and no message (a review: any length from 1,000 to 60,000 bytes). The
    stamp also holds the library's own sha256, so it is copied again from the cache."""
    proj = Path(shutil.copytree(tiny_project, tmp_path / "p"))
    lib = proj / "build" / "libiseg_csim.so"
    good = lib.read_bytes()
    lib.write_bytes(good[:5000])
    assert build(proj) == lib and lib.read_bytes() == good
    stamp = (proj / "build" / "libiseg_csim.sha256").read_text().split()
    assert len(stamp) == 2 and stamp[1] == __import__("hashlib").sha256(good).hexdigest()


def test_builds_of_one_project_at_once_do_not_share_a_temporary_file(tiny_project: Path, tmp_path: Path) -> None:
    """Every build copied the cached library through build/<lib>.so.tmp: processes building one project at once
    truncated each other's copy (a review: 4 concurrent iseg-host --emulate runs, segfaults and 'cannot write')."""
    import threading

    proj = Path(shutil.copytree(tiny_project, tmp_path / "p"))
    good = (proj / "build" / "libiseg_csim.so").read_bytes()
    errors: list[BaseException] = []

    def run() -> None:
        try:
            for _ in range(10):
                (proj / "build" / "libiseg_csim.sha256").unlink(missing_ok=True)  # out of date: copied again
                build(proj)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and (proj / "build" / "libiseg_csim.so").read_bytes() == good
    assert not [p.name for p in (proj / "build").iterdir() if "tmp" in p.name]


def test_an_exception_in_the_trace_callback_is_raised(tiny_project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """ctypes reports an exception raised in a callback and carries on: a Ctrl-C landing in the trace callback
    during gen-hls --csim left a partial trace, compared as if complete (a KeyError traceback, exit 1). It is raised
    once the frame returns."""
    import ctypes

    from iseg.generator import csim

    lib = CsimLibrary(tiny_project)
    img = calibration_image(PRESETS["tiny"].image, 0)  # tiny_ckpt's model
    real, calls = ctypes.string_at, []

    def string_at(*args: object) -> bytes:
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*args)

    monkeypatch.setattr(csim.ctypes, "string_at", string_at)
    with pytest.raises(KeyboardInterrupt):
        lib.run_traced(img)
    assert len(calls) > 3  # the frame ran to its end (the C code cannot be stopped in a callback)


def test_cli_csim_pass(tiny_project: Path, capsys) -> None:
    cfg = tiny_project.parent / "config.yaml"
    assert main([str(cfg), "--csim", "--images", "2"]) == 0
    out = capsys.readouterr().out
    assert "csim PASS: 2 image(s)" in out


def test_library_api(tiny_project: Path, tiny_ckpt: Path) -> None:
    from iseg.checkpoint import load
    from iseg.reference import run

    lib = CsimLibrary(tiny_project / "build" / "libiseg_csim.so")
    ck = load(tiny_ckpt)
    img = calibration_image(ck.spec.image, 7)
    labels = lib.run(img)
    ref_labels, ref = run(ck, img, trace=True)
    assert labels.dtype == np.uint8 and np.array_equal(labels, ref_labels)
    _, trace = lib.run_traced(img)
    assert np.array_equal(trace["enc.0.qkv"], ref["enc.0.qkv"])
    # the engine's cycle counter is the estimate of the manifest, frame and first layer row
    assert lib.cycles(-1) == lib.manifest["estimate"]["cycles"] > lib.cycles(0) > 0
    with pytest.raises(IsegError, match="uint8"):
        lib.run(img.astype(np.int16))


def test_images_folder(tiny_project: Path, tiny_ckpt: Path, tmp_path: Path) -> None:
    from PIL import Image

    for s in range(2):
        Image.fromarray(calibration_image((64, 64), 50 + s)).save(tmp_path / f"{s}.png")
    assert "PASS: 2 image(s)" in check_csim(tiny_project, tiny_ckpt, str(tmp_path))
    Image.fromarray(calibration_image((32, 64), 1)).save(tmp_path / "z.png")
    with pytest.raises(IsegError, match="z.png: image is 32x64"):
        check_csim(tiny_project, tiny_ckpt, str(tmp_path))


def _copy(project: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "mut"
    shutil.copytree(project, dst)
    return dst


def test_mutated_weights_fail_naming_the_layer(tiny_project: Path, tiny_ckpt: Path, tmp_path: Path) -> None:
    """One byte of enc.0.fc1's weights flipped in weights.bin: --csim names that layer."""
    proj = _copy(tiny_project, tmp_path)
    layout = (proj / "src" / "weights_layout.h").read_text()
    off = int(re.search(r"kEnc0Fc1Weight = (\d+);", layout).group(1))
    blob = bytearray((proj / "weights.bin").read_bytes())
    blob[off + 5] ^= 0x55
    (proj / "weights.bin").write_bytes(bytes(blob))
    with pytest.raises(IsegError, match=r"MISMATCH .* layer \d+ enc\.0\.fc1\+enc\.0\.gelu .*flat index \d+: "
                                        r"csim -?\d+, reference -?\d+"):
        check_csim(proj, tiny_ckpt, "1")


def test_mutated_layer_table_fails_naming_the_layer(tiny_project: Path, tiny_ckpt: Path, tmp_path: Path,
                                                    capsys) -> None:
    """The score requant shift of enc.1.attn changed in model_cfg.h: --csim names that layer."""
    proj = _copy(tiny_project, tmp_path)
    cfg_h = proj / "src" / "model_cfg.h"
    text = cfg_h.read_text()
    block = text.index("enc.1.attn\n")
    rq = re.compile(r"\{(-?\d+)LL, (-?\d+), (\d+), -1, 0\},  // rq\n")
    m = rq.search(text, block)
    new = f"{{{m.group(1)}LL, {m.group(2)}, {int(m.group(3)) + 1}, -1, 0}},  // rq\n"
    text = text[:m.start()] + new + text[m.end():]
    cfg_h.write_text(text)
    man = json.loads((proj / "manifest.json").read_text())
    assert man["csim"]["library"] == "build/libiseg_csim.so"
    with pytest.raises(IsegError, match=r"MISMATCH .* layer \d+ enc\.1\.attn "):
        check_csim(proj, tiny_ckpt, "1")


@pytest.mark.parametrize("softmax,pv_ii", [("precise8", 1), ("precise", 2)])
def test_pv_ii_cycles_are_the_estimate(softmax: str, pv_ii: int, tmp_path: Path) -> None:
    """The generated Cfg::PV_II follows the Shiftmax variant (u8 probabilities: 1), the C-simulation matches
    the reference, and its cycle counter equals the plan's estimate, per attention row and per frame."""
    from iseg.checkpoint import load
    from iseg.generator.config import load_config
    from iseg.generator.plan import make_plan

    spec = replace(BASE, softmax=softmax, dim=32, heads=2, mlp_dim=64, dec_dim=32, dec_heads=2, dec_mlp_dim=64)
    ckpt = make_ckpt(tmp_path, spec, seed=11)
    cfg = write_config(tmp_path, ckpt, array={"rows": 4, "cols": 8}, outputs=["hls", "csim"])
    out = generate(cfg)
    assert f"static constexpr int PV_II = {pv_ii};" in (out / "src" / "model_cfg.h").read_text()
    plan = make_plan(load_config(cfg), load(ckpt))
    assert plan.engine["pv_ii"] == pv_ii
    assert_csim_counts_the_plan(out, ckpt, plan, image_seed=3, n_attention=2)  # one encoder, one decoder block


def test_accumulator_width_is_checked(tiny_project: Path, tiny_ckpt: Path, tmp_path: Path) -> None:
    """Widths::ARR (the array accumulators' proven width, ap_int<ARR> in synthesis) narrowed by hand in
    model_cfg.h: the C-simulation's int32 accumulators hold sums that no longer fit, and acc_to_drain stops
    the run with its one-line reason instead of letting the narrow synthesis type wrap silently."""
    proj = _copy(tiny_project, tmp_path)
    cfg_h = proj / "src" / "model_cfg.h"
    text = cfg_h.read_text()
    m = re.search(r"static constexpr int ARR = (\d+);", text)
    assert m and 16 <= int(m.group(1)) <= 32, "the tiny model's ARR"
    cfg_h.write_text(text[:m.start()] + "static constexpr int ARR = 10;" + text[m.end():])
    with pytest.raises(IsegError, match=r"array accumulator exceeds its proven width"):
        check_csim(proj, tiny_ckpt, "1")


def test_estimate_mismatch_is_a_warning_line(tiny_project: Path, tiny_ckpt: Path, tmp_path: Path) -> None:
    """A manifest whose estimate is off by one cycle and one byte: still PASS (bit-exact is the contract, exit 0),
    but each difference is a WARNING line of its own, not a word inside the summary."""
    proj = _copy(tiny_project, tmp_path)
    man = json.loads((proj / "manifest.json").read_text())
    man["estimate"]["cycles"] += 1
    man["estimate"]["ddr_bytes"]["scratch"] += 1
    (proj / "manifest.json").write_text(json.dumps(man))
    lines = check_csim(proj, tiny_ckpt, "1").splitlines()
    assert lines[0].startswith("csim PASS: 1 image(s)") and ": DIFFERENT" in lines[0]
    assert lines[1:] == [f"  WARNING {w} differ from the estimate: its figures (report.md, FPS) do not describe this "
                         f"engine; please report it" for w in ("cycles", "DDR bytes")]


def test_synthesis_view_wraps_a_narrowed_accumulator(tiny_project: Path, tmp_path: Path) -> None:
    """The synthesis view really computes with ap_int<ARR>: its top compiled from a copy whose Widths::ARR is
    narrowed wraps silently (no check exists in synthesis) and the test bench names the wrong labels, while its
    own per-layer pass (the C-sim view, correct ARR) passes. The untouched project passes the same way."""
    assert run_synthesis_view(tiny_project, tmp_path)[0]
    mutant = _copy(tiny_project, tmp_path / "mutant")
    cfg_h = mutant / "src" / "model_cfg.h"
    text = cfg_h.read_text()
    m = re.search(r"static constexpr int ARR = (\d+);", text)
    assert m, "Widths::ARR in model_cfg.h"
    cfg_h.write_text(text[:m.start()] + f"static constexpr int ARR = {int(m.group(1)) - 8};" + text[m.end():])
    ok, log = run_synthesis_view(tiny_project, tmp_path, top_project=mutant)
    assert not ok and "tb: FAIL label at pixel" in log and "tb: FAIL layer" not in log, log


def test_build_without_the_port_check(tiny_project: Path, tiny_ckpt: Path) -> None:
    """csim.build(port_check=False) (the emulated board's library): the same labels, layer outputs and cycle count
    as the checked build; no port report and no m_axi counts (the counting is compiled out)."""
    fast = CsimLibrary(build(tiny_project, port_check=False))
    full = CsimLibrary(tiny_project / "build" / "libiseg_csim.so")
    img = calibration_image(full.image_shape, 7)
    labels_fast, trace_fast = fast.run_traced(img)
    cycles_fast = fast.cycles(-1)
    labels_full, trace_full = full.run_traced(img)
    assert np.array_equal(labels_fast, labels_full) and trace_fast.keys() == trace_full.keys()
    assert all(np.array_equal(trace_fast[k], trace_full[k]) for k in trace_full)
    assert cycles_fast == full.cycles(-1) == full.manifest["estimate"]["cycles"]
    assert sum(full.axi_bytes().values()) > 0 and full.bursts()
    fast.run(img)
    assert fast.ports() == [] and set(fast.axi_bytes().values()) == {0} and fast.bursts() == []


@pytest.mark.parametrize("board,beat", [("pynq-z2", 8), ("u250", 64)])
def test_csim_on_other_beats(board: str, beat: int, tmp_path: Path) -> None:
    """pynq-z2's 64-bit ports (AXI_BYTES 8: a 16-byte requant record in two iterations, collected in a register)
    and u250's 512-bit ones (AXI_BYTES 64: four records and up to 16 biases per iteration): the loaders' step sizes
    (load_lanes, prefetch_lanes, the constant tables) differ from the 16-byte boards'; bit-exact, counter =
    estimate, within the banks and the m_axi beats. The stores write whole beats, so the beat divides every d_head
    (estimate.axi_beat): u250's 64-byte beats need heads of 64 channels."""
    wide = replace(BASE, dim=128, heads=2, mlp_dim=128, dec_dim=128, dec_heads=2, dec_mlp_dim=128)
    spec = BASE if beat < 64 else wide
    ckpt = make_ckpt(tmp_path, spec, seed=3)
    out = generate(write_config(tmp_path, ckpt, outputs=["hls"], board=board))
    assert f"static constexpr int AXI_BYTES = {beat};" in (out / "src" / "model_cfg.h").read_text()
    summary = check_csim(out, ckpt, "1")
    assert "; cycles counted = estimate (" in summary and "; DDR bytes counted = estimate (" in summary, summary
    assert summary.endswith("memory ports: every pipelined loop within its banks and its m_axi beats"), summary
