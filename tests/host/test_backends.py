"""Board backends against stand-ins of ``pynq`` and ``pyxrt``, the manifest contract, and the CLI's one-line errors.

The stand-in modules are injected into ``sys.modules`` under the real names and record every
call; they wire themselves from the generated project's build scripts (``bd.tcl``, ``link.cfg``,
``top.cpp``), and their "kernel" computes ``label = red % n_cls`` from the bytes it was handed,
which checks the names in the manifest, the pixel packing and the label unpacking together.
Nothing here is a board measurement.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from host_standins import (
    MODEL,
    N_CLS,
    PYNQ_BOARD,
    SCRATCH_ADDR,
    WEIGHTS_ADDR,
    XRT_BOARD,
    expected_labels,
    generated_manifest,
    make_pynq_standin,
    make_pyxrt_standin,
    standin_bitfile,
    standin_xclbin,
    write_project,
)
from PIL import Image

from iseg.errors import IsegError
from iseg.generator.boards import BOARDS
from iseg.host import backends
from iseg.host.backends import PynqBackend, XrtBackend, open_backend
from iseg.host.cli import main
from iseg.host.manifest import Manifest, load_manifest


@pytest.fixture
def bitfile(project: Path, tmp_path: Path) -> Path:
    return standin_bitfile(project, tmp_path / "iseg.bit")


def test_pynq_sequence(manifest: Manifest, pynq_log: list[tuple], bitfile: Path) -> None:
    be = PynqBackend(manifest, bitfile)
    h, w = MODEL
    allocs = [e for e in pynq_log if e[0] == "allocate"]
    # the label buffer has a spare 64-byte beat: a stream longer than the frame is counted, not undefined (PG021)
    assert [a[1] for a in allocs] == [(manifest.weights_bytes,), (manifest.scratch_bytes,), (h * w * 4,),
                                      (h * w * 4,), (h * w + 64,)]
    assert all(a[2] == "|u1" for a in allocs)
    np.testing.assert_array_equal(np.asarray(be.weights), np.frombuffer(manifest.read_weights(), np.uint8))
    writes = [e for e in pynq_log if e[0] == "write"]
    assert writes == [("write", 0x10, WEIGHTS_ADDR & 0xFFFFFFFF), ("write", 0x14, WEIGHTS_ADDR >> 32),
                      ("write", 0x1C, SCRATCH_ADDR), ("write", 0x20, 0),
                      ("write", 0x28, SCRATCH_ADDR), ("write", 0x2C, 0)]
    # scratch (gmem1) and scratch_b (gmem2) are two ports onto one buffer: the same address in both
    regs = manifest.registers
    assert (regs.scratch, regs.scratch_b) == (0x1C, 0x28)
    assert be.scratch.physical_address == SCRATCH_ADDR
    assert pynq_log.index(("flush", WEIGHTS_ADDR)) < pynq_log.index(writes[0])
    # the buffers only the board writes are flushed once, so no dirty cache line of theirs is evicted over it later
    assert ("flush", SCRATCH_ADDR) in pynq_log and ("flush", be.labels.physical_address) in pynq_log
    setup = len(pynq_log)

    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for _ in range(3)]
    for i, img in enumerate(frames):
        slot = i % 2
        be.load(slot, img)
        np.testing.assert_array_equal(be.run(slot), expected_labels(img))
    per_frame = pynq_log[setup:]
    assert not any(e[0] == "allocate" for e in per_frame)  # weights (and everything) allocated once
    assert not any(e[0] == "write" and e[1] != 0x00 for e in per_frame)  # pointers written once
    pix0, lab = be.pixels[0].physical_address, be.labels.physical_address
    first = per_frame[: per_frame.index(("invalidate", lab), per_frame.index(("read", 0x00))) + 1]
    # load: pack + flush; run: arm the receive DMA, ap_start (bit 0 alone: no auto-restart), send (PYNQ flushes
    # again), both channels waited for (the receive wait invalidates the labels), ap_done read (clear on read,
    # so one read that sees it), labels invalidated before they are read
    assert first == [("flush", pix0), ("recv.transfer", lab, h * w + 64), ("write", 0x00, 1), ("flush", pix0),
                     ("send.transfer", pix0, h * w * 4), ("send.wait",), ("recv.wait",), ("invalidate", lab),
                     ("read", 0x00), ("invalidate", lab)]
    assert [e[1] for e in per_frame if e[0] == "send.transfer"] == [pix0, be.pixels[1].physical_address, pix0]
    be.close()
    assert sum(e[0] == "free" for e in pynq_log) == 5


def test_pynq_end_to_end_through_the_cli(project: Path, pynq_log: list[tuple], bitfile: Path,
                                         tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    imgs = [np.random.default_rng(i).integers(0, 256, (*MODEL, 3), dtype=np.uint8) for i in range(3)]
    (tmp_path / "in").mkdir()
    for i, img in enumerate(imgs):
        Image.fromarray(img).save(tmp_path / "in" / f"{i}.png")
    rc = main(["--pynq", str(project), "--bitfile", str(bitfile), str(tmp_path / "in"),
               "--out", str(tmp_path / "out"), "--json", "--no-progress"])
    assert rc == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["backend"] == "pynq" and summary["frames"]["processed"] == 3
    for i, img in enumerate(imgs):
        with Image.open(tmp_path / "out" / "labels" / f"{i}.png") as im:
            np.testing.assert_array_equal(np.asarray(im), expected_labels(img))
    assert sum(e[0] == "Overlay" for e in pynq_log) == 1
    assert sum(e[0] == "allocate" and e[1] == (load_manifest(project).weights_bytes,) for e in pynq_log) == 1


def _one_image(tmp_path: Path) -> Path:
    img = tmp_path / "a.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (*MODEL, 3), dtype=np.uint8)).save(img)
    return img


@pytest.mark.parametrize(("fault", "expect"), [
    ("hang", "iseg-host: the AXI DMA send (MM2S) channel did not finish within 0 s: the kernel hung, or the "
             "bitstream does not match the project"),
    # an error halts the channel and PYNQ's wait() then says "DMA channel not started": the cause is read from DMASR
    ("dma-decode-error", "iseg-host: AXI DMA 'dma': receive (S2MM) channel: DMA Decode Error (invalid address)"),
    ("short-labels", f"iseg-host: the kernel's label stream ended (TLAST) after {MODEL[0] * MODEL[1] // 2} bytes, "
                     f"expected {MODEL[0] * MODEL[1]}"),
    # S2MM's buffer has a spare beat: a stream longer than the frame is counted (past the length it is undefined)
    ("long-labels", f"iseg-host: the kernel's label stream ended (TLAST) after {MODEL[0] * MODEL[1] + 16} bytes, "
                    f"expected {MODEL[0] * MODEL[1]}"),
    # the kernel stalls after an early TLAST (its pixels unread, no ap_done): named at once, not as a hang
    ("early-tlast-stall", f"iseg-host: the kernel's label stream ended (TLAST) after {MODEL[0] * MODEL[1] // 2} "
                          f"bytes, expected {MODEL[0] * MODEL[1]}"),
])
def test_a_board_fault_during_a_frame_is_one_line(fault: str, expect: str, project: Path, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """PYNQ's DMA wait() spins with no timeout, so the host polls with its own deadline; DMA errors and a label
    stream cut short are one line, not a traceback or a hang."""
    monkeypatch.setitem(sys.modules, "pynq", make_pynq_standin([], fault=fault))
    monkeypatch.setattr(backends, "DONE_TIMEOUT_S", 0.05)
    bit = standin_bitfile(project, tmp_path / "iseg.bit")
    line = _err(capsys, ["--pynq", str(project), "--bitfile", str(bit), str(_one_image(tmp_path)),
                         "--out", str(tmp_path / "o"), "--no-progress"])
    assert line == expect
    assert not (tmp_path / "o").exists()


def test_bitstream_problems_are_one_line(project: Path, tmp_path: Path, pynq_log: list[tuple],
                                        capsys: pytest.CaptureFixture[str]) -> None:
    img = _one_image(tmp_path)

    def run(bit: Path) -> str:
        return _err(capsys, ["--pynq", str(project), "--bitfile", str(bit), str(img), "--out", str(tmp_path / "o")])

    bit = standin_bitfile(project, tmp_path / "iseg.bit")
    bit.with_suffix(".hwh").unlink()  # PYNQ needs the .hwh for the IP names, registers and DMA parameters
    assert run(bit) == (f"iseg-host: --bitfile {bit}: no iseg.hwh beside it (PYNQ reads the IP names, register "
                        f"map and DMA parameters from it; copy it from the Vivado project)")
    other = tmp_path / "design.xsa"  # not a .bit: left to PYNQ, whose error is the one line
    other.write_bytes(b"x")
    assert run(other) == f"iseg-host: --bitfile {other}: PYNQ could not load it (ValueError: Cannot find HWH or " \
                         f"TCL file for {other}.)"
    # a register map (from the .hwh) that disagrees with the manifest: pointers would go to the wrong registers
    doc = json.loads((project / "manifest.json").read_text())
    doc["ports"]["control"]["registers"]["scratch_b"]["offset"] = 0x34
    (project / "manifest.json").write_text(json.dumps(doc))
    bit = standin_bitfile(project, tmp_path / "iseg.bit")
    assert run(bit) == ("iseg-host: the bitstream's 'kernel' has register 'scratch_b' at 40, the manifest says 52 "
                        "(regenerate the project, or use its bitstream)")
    doc["ports"]["control"]["registers"]["scratch_b"]["offset"] = 0x28
    doc["runtime"]["pynq"]["dma_ip"] = "kernel"  # an IP that is not an AXI DMA
    (project / "manifest.json").write_text(json.dumps(doc))
    assert run(bit) == ("iseg-host: the bitstream's IP 'kernel' is not an AXI DMA with both channels (PYNQ bound it "
                        "to HlsIP; does --bitfile match the project?)")
    doc["runtime"]["pynq"]["dma_ip"] = "dma_0"
    (project / "manifest.json").write_text(json.dumps(doc))
    assert run(bit) == "iseg-host: the bitstream has no IP named 'dma_0' (does --bitfile match the project?)"
    assert not any(e[0] == "write" for e in pynq_log) and not (tmp_path / "o").exists()


def test_buffers_beyond_the_dma_reach_are_refused(project: Path, tmp_path: Path, pynq_log: list[tuple]) -> None:
    """An AXI DMA reaches 2**c_addr_width bytes (32 bits unless the block design widens it)."""
    bd = project / "scripts" / "bd.tcl"
    bd.write_text(bd.read_text().replace("CONFIG.c_include_sg {0}", "CONFIG.c_include_sg {0} CONFIG.c_addr_width {28}"))
    with pytest.raises(IsegError, match=r"buffer at 0x10000000 is beyond the 28-bit reach of the AXI DMA 'dma'"):
        PynqBackend(load_manifest(project), standin_bitfile(project, tmp_path / "iseg.bit"))
    assert not any(e[0] == "write" for e in pynq_log)


# --------------------------------------------------------------------------------------------
# XRT: data movers + kernel
# --------------------------------------------------------------------------------------------
@pytest.fixture
def xrt_project(tmp_path: Path) -> Path:
    return write_project(tmp_path / "xproj", board=XRT_BOARD)


def test_xrt_runs_the_data_movers_and_the_kernel(xrt_project: Path, monkeypatch: pytest.MonkeyPatch,
                                                 tmp_path: Path) -> None:
    log: list[tuple] = []
    monkeypatch.setitem(sys.modules, "pyxrt", make_pyxrt_standin(log))
    manifest = load_manifest(xrt_project)
    be = XrtBackend(manifest, standin_xclbin(xrt_project, tmp_path / "iseg.xclbin"))
    h, w = MODEL
    assert log[:2] == [("device", 0), ("load_xclbin", "iseg.xclbin")]
    kernels = [e for e in log if e[0] == "kernel"]
    assert [e[1:3] for e in kernels] == [("standin:{standin_1}", "shared"), ("mm2s:{mm2s_1}", "shared"),
                                         ("s2mm:{s2mm_1}", "shared")]
    k, mm2s, s2mm = (e[3] for e in kernels)  # group_id(i) = base + i
    bos = [e for e in log if e[0] == "bo"]
    # weights, scratch: the kernel's banks of arguments 2 and 3 (top.cpp); pixels, labels: the movers' mem (0)
    assert [(e[2], e[4]) for e in bos] == [(manifest.weights_bytes, k + 2), (manifest.scratch_bytes, k + 3),
                                           (h * w * 4, mm2s), (h * w * 4, mm2s), (h * w, s2mm)]
    # scratch_b (argument 4) is the scratch buffer again: no bo of its own, the same object as argument 3
    x = manifest.need_xrt()
    assert (x.weights_arg, x.scratch_arg, x.scratch_b_arg) == (2, 3, 4)
    assert be.kernel_run.args[3] is be.scratch and be.kernel_run.args[4] is be.scratch
    assert be.kernel.group_id(4) == be.kernel.group_id(3) == k + 3
    wid = bos[0][1]
    assert [e for e in log if e[0] in ("bo.write", "bo.sync") and e[1] == wid] == [
        ("bo.write", wid, manifest.weights_bytes, 0), ("bo.sync", wid, "to", manifest.weights_bytes, 0)]
    setup = len(log)
    rng = np.random.default_rng(1)
    for i in range(3):
        img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        be.load(i % 2, img)
        np.testing.assert_array_equal(be.run(i % 2), expected_labels(img))
    per_frame = log[setup:]
    assert not any(e[0] in ("bo", "bo.write", "kernel") and e[1] == wid for e in per_frame)  # weights once
    pix, lab = [bos[2][1], bos[3][1]], bos[4][1]
    frame = per_frame[: per_frame.index(("bo.read", lab, h * w, 0)) + 1]
    assert frame == [("bo.write", pix[0], h * w * 4, 0), ("bo.sync", pix[0], "to", h * w * 4, 0),
                     ("start", "s2mm_1"), ("start", "standin_1"), ("start", "mm2s_1"),
                     ("wait", "s2mm_1"), ("wait", "standin_1"), ("wait", "mm2s_1"),
                     ("bo.sync", lab, "from", h * w, 0), ("bo.read", lab, h * w, 0)]
    assert [e[1] for e in per_frame if e[0] == "bo.write"] == [pix[0], pix[1], pix[0]]  # double buffering


def test_xrt_names_come_from_the_manifest(xrt_project: Path, monkeypatch: pytest.MonkeyPatch,
                                          tmp_path: Path) -> None:
    """A manifest naming an instance the xclbin lacks fails with one line before any frame."""
    monkeypatch.setitem(sys.modules, "pyxrt", make_pyxrt_standin([]))
    xclbin = standin_xclbin(xrt_project, tmp_path / "iseg.xclbin")
    doc = json.loads((xrt_project / "manifest.json").read_text())
    doc["runtime"]["xrt"]["movers"]["pixels"]["instance"] = "mm2s_9"
    (xrt_project / "manifest.json").write_text(json.dumps(doc))
    with pytest.raises(IsegError, match="no kernel instance mm2s:mm2s_9"):
        XrtBackend(load_manifest(xrt_project), xclbin)


def test_scratch_ports_in_different_banks_are_refused(xrt_project: Path, monkeypatch: pytest.MonkeyPatch,
                                                      tmp_path: Path) -> None:
    """scratch and scratch_b share one buffer object, so an xclbin linking them to two banks is one line."""
    log: list[tuple] = []
    monkeypatch.setitem(sys.modules, "pyxrt", make_pyxrt_standin(log))
    cfg = xrt_project / "scripts" / "link.cfg"
    text = cfg.read_text()
    bank_w = re.search(r"^sp=\w+\.weights:(\S+)$", text, re.M).group(1)
    cfg.write_text(re.sub(r"^(sp=\w+\.scratch_b:)\S+$", rf"\g<1>{bank_w}", text, flags=re.M))
    with pytest.raises(IsegError, match=r"arguments 3 \(scratch\) and 4 \(scratch_b\) in different memory banks"):
        XrtBackend(load_manifest(xrt_project), standin_xclbin(xrt_project, tmp_path / "iseg.xclbin"))
    assert not any(e[0] == "bo" for e in log)  # refused before any buffer is allocated


def test_xrt_problems_are_one_line(xrt_project: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    """A missing card, an unreadable xclbin and a run that never completes: one line each, exit 1."""
    monkeypatch.setitem(sys.modules, "pyxrt", make_pyxrt_standin([]))
    monkeypatch.setattr(backends, "DONE_TIMEOUT_S", 0.05)
    xclbin = standin_xclbin(xrt_project, tmp_path / "iseg.xclbin")
    img = _one_image(tmp_path)
    base = ["--xrt", str(xrt_project), str(img), "--out", str(tmp_path / "o"), "--no-progress"]
    assert _err(capsys, [*base, "--xclbin", str(xclbin), "--device", "1"]) == (
        "iseg-host: cannot open XRT device 1 (xbutil examine lists the devices): Could not open device with index '1'")
    bad = tmp_path / "bad.xclbin"
    bad.write_bytes(b"\0" * 64)
    assert _err(capsys, [*base, "--xclbin", str(bad)]).startswith(f"iseg-host: --xclbin {bad}: not a readable xclbin")
    monkeypatch.setitem(sys.modules, "pyxrt", make_pyxrt_standin([], fault="hang"))
    assert _err(capsys, [*base, "--xclbin", str(xclbin)]) == (
        "iseg-host: the s2mm_1 run did not finish within 0 s: the kernel hung, or the xclbin does not match the "
        "project")
    assert not (tmp_path / "o").exists()


def test_the_wrong_board_flow_is_one_line(project: Path, xrt_project: Path, pynq_log: list[tuple],
                                          monkeypatch: pytest.MonkeyPatch, bitfile: Path) -> None:
    monkeypatch.setitem(sys.modules, "pyxrt", make_pyxrt_standin([]))
    with pytest.raises(IsegError, match=f"targets {XRT_BOARD} .*use --xrt"):
        PynqBackend(load_manifest(xrt_project), bitfile)
    with pytest.raises(IsegError, match=f"targets {PYNQ_BOARD} .*use --pynq"):
        XrtBackend(load_manifest(project), bitfile)
    # on a machine without either package (a PC): the flow is still what is named, not the package that
    # would not help (before: "the pynq backend needs the 'pynq' package" for a kv260 project)
    monkeypatch.setitem(sys.modules, "pynq", None)
    monkeypatch.setitem(sys.modules, "pyxrt", None)
    with pytest.raises(IsegError, match=f"targets {XRT_BOARD} .*use --xrt"):
        PynqBackend(load_manifest(xrt_project), bitfile)
    with pytest.raises(IsegError, match=f"targets {PYNQ_BOARD} .*use --pynq"):
        XrtBackend(load_manifest(project), bitfile)


# --------------------------------------------------------------------------------------------
# the manifest contract: what gen-hls writes is what the host reads, and it matches the scripts
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("board", [PYNQ_BOARD, XRT_BOARD])
def test_manifest_names_match_the_build_scripts(board: str, tmp_path: Path) -> None:
    proj = write_project(tmp_path / "p", board=board)
    m = load_manifest(proj)
    top = (proj / "src" / "top.cpp").read_text()
    params = re.search(r'extern "C" void (\w+)\((.*?)\)', top, re.S)
    assert params and params.group(1) == m.project
    args = [re.findall(r"\w+", p)[-1] for p in params.group(2).split(",")]
    # every m_axi port of top.cpp is in the manifest with its bundle and a pointer register; scratch_b is
    # the second port onto the scratch buffer (gmem2)
    doc = generated_manifest(board)
    m_axi = dict(re.findall(r"^#pragma HLS INTERFACE mode=m_axi port=(\w+) offset=slave bundle=(\w+)", top, re.M))
    assert m_axi == {"weights": "gmem0", "scratch": "gmem1", "scratch_b": "gmem2"}
    assert {k: v["bundle"] for k, v in doc["ports"].items() if v["interface"] == "m_axi"} == m_axi
    assert doc["ports"]["scratch_b"]["bytes"] == doc["ports"]["scratch"]["bytes"] == m.scratch_bytes
    assert set(m_axi) <= set(doc["ports"]["control"]["registers"])
    assert set(re.findall(r"^#pragma HLS INTERFACE mode=s_axilite port=(\w+)", top, re.M)) == {*m_axi, "return"}
    assert (m.registers.weights, m.registers.scratch, m.registers.scratch_b) == (0x10, 0x1C, 0x28)
    banks = BOARDS[board].banks
    if m.pynq is not None:
        bd = (proj / "scripts" / "bd.tcl").read_text()
        assert m.flow == "vivado" and m.xrt is None
        cell = r"create_bd_cell -type ip -vlnv xilinx\.com:"
        assert re.search(rf"{cell}hls:{m.project}:\S+ {m.pynq.kernel_ip}$", bd, re.M)
        assert re.search(rf"{cell}ip:axi_dma:\S+ {m.pynq.dma_ip}$", bd, re.M)
        pixel_bits = 8 * m.streams.pixel_word_bytes * m.streams.pixels_per_beat
        label_bits = 8 * m.streams.label_word_bytes * m.streams.labels_per_beat
        assert f"c_m_axis_mm2s_tdata_width {{{pixel_bits}}}" in bd
        assert f"c_s_axis_s2mm_tdata_width {{{label_bits}}}" in bd
        # PG021: the DMA's memory map at least as wide as its stream
        assert f"c_m_axi_mm2s_data_width {{{max(32, pixel_bits)}}}" in bd
        assert f"c_m_axi_s2mm_data_width {{{max(32, label_bits)}}}" in bd
        # each m_axi bundle to a PS HP port: the weights to the first, both scratch ports to the second
        hp = dict((b, port) for port, b in re.findall(
            rf"-config {{Slave /ps/(\S+) Clk auto}} \[get_bd_intf_pins {m.pynq.kernel_ip}/m_axi_(\w+)\]$", bd, re.M))
        assert hp == {"gmem0": banks[0], "gmem1": banks[1], "gmem2": banks[1]}
    else:
        x = m.xrt
        cfg = (proj / "scripts" / "link.cfg").read_text().splitlines()
        assert m.flow == "vitis" and x is not None
        assert f"nk={x.kernel}:1:{x.instance}" in cfg and x.kernel == m.project
        assert (args[x.weights_arg], args[x.scratch_arg], args[x.scratch_b_arg]) == ("weights", "scratch", "scratch_b")
        # each m_axi argument in a bank; scratch_b (the same buffer as scratch) in scratch's bank
        sp = dict(re.findall(rf"^sp={x.instance}\.(\w+):(\S+)$", "\n".join(cfg), re.M))
        assert sp == {"weights": banks[0], "scratch": banks[1], "scratch_b": banks[1]}
        stream = generated_manifest(board)["runtime"]["xrt"]["movers"]
        assert f"stream_connect={x.pixels.instance}.{stream['pixels']['stream']}:{x.instance}.pixels" in cfg
        assert f"stream_connect={x.instance}.labels:{x.labels.instance}.{stream['labels']['stream']}" in cfg
    assert doc["ports"]["pixels"]["tdata_bits"] == 8 * m.streams.pixel_word_bytes * m.streams.pixels_per_beat
    assert doc["ports"]["labels"]["tdata_bits"] == 8 * m.streams.label_word_bytes * m.streams.labels_per_beat


# Vivado's Tcl commands as recorders: `unknown` catches every command tclsh lacks and returns its last
# argument (so [get_bd_intf_pins kernel/m_axi_gmem2] is "kernel/m_axi_gmem2"); glob finds no build output here.
BD_TCL_STUBS = """
set ::calls {}
proc unknown {args} { lappend ::calls $args; return [lindex $args end] }
rename glob _real_glob
proc glob {args} { return [lindex $args end] }
source [lindex $::env(SCRIPT) 0]
foreach c $::calls {
    if {[lindex $c 0] eq "apply_bd_automation"} { puts "[lindex $c end] [lindex [lindex $c 4] 1]" }
}
"""


@pytest.mark.skipif(shutil.which("tclsh") is None, reason="tclsh not installed")
def test_bd_tcl_connects_every_kernel_master(tmp_path: Path) -> None:
    """bd.tcl runs as Tcl (Vivado's commands recorded) and connects the kernel's three m_axi masters: gmem0
    (weights) to the first HP port, gmem1 and gmem2 (the two ports onto the one scratch buffer) to the second."""
    proj = write_project(tmp_path / "p", board=PYNQ_BOARD)
    stub = tmp_path / "stub.tcl"
    stub.write_text(BD_TCL_STUBS)
    proc = subprocess.run(["tclsh", str(stub)], capture_output=True, text=True,
                          env={"SCRIPT": str(proj / "scripts" / "bd.tcl"), "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr
    conn = dict(line.split() for line in proc.stdout.splitlines())
    banks = BOARDS[PYNQ_BOARD].banks
    kernel = {pin: hp for pin, hp in conn.items() if pin.startswith("kernel/m_axi_")}
    assert kernel == {"kernel/m_axi_gmem0": f"/ps/{banks[0]}", "kernel/m_axi_gmem1": f"/ps/{banks[1]}",
                      "kernel/m_axi_gmem2": f"/ps/{banks[1]}"}
    assert conn["kernel/s_axi_control"].startswith("/ps/M_AXI_")


@pytest.mark.parametrize("key", ["ports.pixels.word_bytes", "ports.pixels.channels", "ports.labels.word_bytes",
                                 "ports.pixels.words_per_beat", "ports.labels.words_per_beat",
                                 "ports.control.registers.weights.offset", "ports.control.registers.scratch_b.offset",
                                 "runtime.flow", "runtime.pynq.dma_ip"])
def test_a_missing_contract_key_is_named(key: str, project: Path) -> None:
    doc = json.loads((project / "manifest.json").read_text())
    node = doc
    *parents, last = key.split(".")
    for k in parents:
        node = node[k]
    del node[last]
    (project / "manifest.json").write_text(json.dumps(doc))
    with pytest.raises(IsegError, match=re.escape(f"missing {key!r}")):
        load_manifest(project)


@pytest.mark.parametrize("board", [PYNQ_BOARD, XRT_BOARD])
def test_a_project_from_before_scratch_b_is_one_line(board: str, tmp_path: Path, pynq_log: list[tuple],
                                                     monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    """A manifest written before the kernel's second scratch port (gmem2) names the missing key and says
    to regenerate; a board would otherwise run a kernel whose scratch_b pointer was never set."""
    monkeypatch.setitem(sys.modules, "pyxrt", make_pyxrt_standin([]))
    proj = write_project(tmp_path / "old", board=board)
    doc = json.loads((proj / "manifest.json").read_text())
    del doc["ports"]["scratch_b"], doc["ports"]["control"]["registers"]["scratch_b"]
    if "xrt" in doc["runtime"]:
        del doc["runtime"]["xrt"]["args"]["scratch_b"]
    (proj / "manifest.json").write_text(json.dumps(doc))
    Image.new("RGB", (8, 8)).save(tmp_path / "a.png")
    flag, board_file = ("--pynq", "--bitfile") if board == PYNQ_BOARD else ("--xrt", "--xclbin")
    bit = standin_bitfile(proj, tmp_path / "iseg.bit") if board == PYNQ_BOARD else standin_xclbin(
        proj, tmp_path / "iseg.xclbin")
    line = _err(capsys, [flag, str(proj), board_file, str(bit), str(tmp_path / "a.png"), "--out", str(tmp_path / "o")])
    key = "ports.control.registers.scratch_b.offset" if board == PYNQ_BOARD else "runtime.xrt.args.scratch_b"
    assert line == f"iseg-host: {proj / 'manifest.json'}: missing {key!r} (regenerate the project with gen-hls)"
    assert not pynq_log and not (tmp_path / "o").exists()
    # an XRT manifest with the argument index but not the register: that key, named
    if board == XRT_BOARD:
        doc["runtime"]["xrt"]["args"]["scratch_b"] = 4
        (proj / "manifest.json").write_text(json.dumps(doc))
        with pytest.raises(IsegError, match=re.escape("missing 'ports.control.registers.scratch_b.offset' (regen")):
            load_manifest(proj)


# --------------------------------------------------------------------------------------------
# one-line errors
# --------------------------------------------------------------------------------------------
def _err(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    rc = main(argv)
    cap = capsys.readouterr()
    assert rc == 1, cap
    lines = cap.err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in cap.err, cap.err
    return lines[0]


def test_missing_board_library_is_one_line(project: Path, xrt_project: Path, tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
                                           bitfile: Path) -> None:
    monkeypatch.setitem(sys.modules, "pynq", None)  # import fails as on a PC
    monkeypatch.setitem(sys.modules, "pyxrt", None)
    Image.new("RGB", (8, 8)).save(tmp_path / "a.png")
    line = _err(capsys, ["--pynq", str(project), "--bitfile", str(bitfile), str(tmp_path / "a.png"),
                         "--out", str(tmp_path / "o")])
    assert line == ("iseg-host: the pynq backend needs the 'pynq' package (on the board image); "
                    "use --emulate on a PC")
    line = _err(capsys, ["--xrt", str(xrt_project), "--xclbin", "x.xclbin", str(tmp_path / "a.png"),
                         "--out", str(tmp_path / "o")])
    assert "the xrt backend needs the 'pyxrt' package" in line
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("case", ["missing", "file", "no-manifest", "bad-json", "format", "version", "no-image"])
def test_bad_project_is_one_line(case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    proj = tmp_path / "proj"
    if case == "file":
        proj.write_text("x")
    elif case != "missing":
        write_project(proj)
        m = proj / "manifest.json"
        doc = json.loads(m.read_text())
        if case == "no-manifest":
            m.unlink()
        elif case == "bad-json":
            m.write_text("{")
        elif case == "format":
            m.write_text(json.dumps({**doc, "format": "something-else"}))
        elif case == "version":
            m.write_text(json.dumps({**doc, "version": 99}))
        elif case == "no-image":
            del doc["image"]
            m.write_text(json.dumps(doc))
    Image.new("RGB", (8, 8)).save(tmp_path / "a.png")
    line = _err(capsys, ["--emulate", str(proj), str(tmp_path / "a.png"), "--out", str(tmp_path / "o")])
    expect = {"missing": "no such folder", "file": "not a folder", "no-manifest": "no manifest.json",
              "bad-json": "not valid JSON", "format": "format is 'something-else'", "version": "version 99",
              "no-image": "missing 'image'"}[case]
    assert line.startswith("iseg-host: ") and expect in line


def test_stale_weights_are_refused(manifest: Manifest, pynq_log: list[tuple], bitfile: Path) -> None:
    (manifest.root / "weights.bin").write_bytes(b"\0" * manifest.weights_bytes)
    with pytest.raises(IsegError, match="sha256 differs"):
        PynqBackend(manifest, bitfile)
    (manifest.root / "weights.bin").write_bytes(b"\0" * 1000)
    with pytest.raises(IsegError, match="1000 bytes, manifest says"):
        PynqBackend(manifest, bitfile)


def test_board_files_are_required(manifest: Manifest, pynq_log: list[tuple], tmp_path: Path) -> None:
    with pytest.raises(IsegError, match="^the pynq backend needs --bitfile F "):
        open_backend("pynq", manifest)
    with pytest.raises(IsegError, match=re.escape(f"--bitfile {tmp_path / 'none.bit'}: no such file")):
        open_backend("pynq", manifest, bitfile=str(tmp_path / "none.bit"))


def test_cli_input_errors_are_one_line(project: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "empty").mkdir()
    line = _err(capsys, ["--emulate", str(project), str(tmp_path / "empty"), "--out", str(tmp_path / "o")])
    assert line == f"iseg-host: input folder {tmp_path / 'empty'} holds no images or videos"
    line = _err(capsys, ["--emulate", str(project), str(tmp_path / "nope.jpg"), "--out", str(tmp_path / "o")])
    assert line == f"iseg-host: input {tmp_path / 'nope.jpg'}: no such file or folder"
    os.mkfifo(tmp_path / "pipe")  # before the check, decoding it blocked until a writer came
    line = _err(capsys, ["--emulate", str(project), str(tmp_path / "pipe"), "--out", str(tmp_path / "o")])
    assert line == f"iseg-host: input {tmp_path / 'pipe'}: not a regular file or folder (a pipe or device is not read)"
    assert not (tmp_path / "o").exists()
    assert load_manifest(project).n_cls == N_CLS
