"""The generated project: complete, deterministic, relocatable, synthesisable-looking, scripts in order."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import yaml

from iseg.checkpoint import save
from iseg.generator import estimate as est
from iseg.generator.boards import BOARDS
from iseg.generator.cli import generate, main
from iseg.generator.emit import MANIFEST_FORMAT
from iseg.random_model import PRESETS, random_checkpoint

from .conftest import write_config

EXAMPLES = sorted((Path(__file__).resolve().parents[2] / "examples").glob("*.yaml"))


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory, tiny_ckpt: Path) -> Path:
    folder = tmp_path_factory.mktemp("proj")
    return generate(write_config(folder, tiny_ckpt))


def _tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and "build" not in p.relative_to(root).parts}


def test_complete(project: Path) -> None:
    names = set(_tree(project))
    for f in ("src/top.cpp", "src/model_cfg.h", "src/csim.cpp", "src/weights_layout.h", "src/hls/engine.h",
              "weights.bin", "tb/tb.cpp", "tb/golden/image.bin", "tb/golden/labels.bin", "tb/golden/layers.txt",
              "scripts/hls.tcl", "scripts/link.cfg", "Makefile", "report.md", "report.json", "report_cycles.png",
              "report_roofline.png", "manifest.json", "README.md", "config.yaml"):
        assert f in names, f


def test_manifest(project: Path) -> None:
    m = json.loads((project / "manifest.json").read_text())
    assert m["format"] == MANIFEST_FORMAT and m["version"] == 2
    for k in ("project", "board", "part", "clock_mhz", "image", "patch", "n_cls", "classes", "weights",
              "scratch_bytes", "ports", "csim"):
        assert k in m
    assert m["weights"]["bytes"] == (project / "weights.bin").stat().st_size
    assert m["csim"] == m["csim"] | {"library": "build/libiseg_csim.so", "entry": "iseg_csim_run"}
    assert m["ports"]["control"]["registers"]["ap_ctrl"]["offset"] == 0
    # the streams: the words a beat are model_cfg.h's PIX / LAB, the beats the frame's pixels over them
    cfg_h = (project / "src" / "model_cfg.h").read_text()
    pix, lab = (int(re.search(rf"static constexpr int {k} = (\d+);", cfg_h).group(1)) for k in ("PIX", "LAB"))
    px = m["image"][0] * m["image"][1]
    assert {k: m["ports"]["pixels"][k] for k in ("tdata_bits", "word_bytes", "words_per_beat", "beats")} == {
        "tdata_bits": 32 * pix, "word_bytes": 4, "words_per_beat": pix, "beats": px // pix}
    assert {k: m["ports"]["labels"][k] for k in ("tdata_bits", "word_bytes", "words_per_beat", "beats")} == {
        "tdata_bits": 8 * lab, "word_bytes": 1, "words_per_beat": lab, "beats": px // lab}
    assert pix > 1 and lab > 1  # the test model's patch and 16-byte beats allow several


def test_kernel_interface(project: Path) -> None:
    """Three m_axi masters: gmem0 the weights, gmem1 and gmem2 (scratch_b) two ports onto the one scratch
    buffer; their pointer registers and (kv260: Vitis flow) argument indices and banks agree everywhere."""
    m = json.loads((project / "manifest.json").read_text())
    ports, regs = m["ports"], m["ports"]["control"]["registers"]
    assert {k: (v["bundle"], v["access"], v["bytes"]) for k, v in ports.items() if v["interface"] == "m_axi"} == {
        "weights": ("gmem0", "read", m["weights"]["bytes"]), "scratch": ("gmem1", "read-write", m["scratch_bytes"]),
        "scratch_b": ("gmem2", "read-write", m["scratch_bytes"])}
    assert ports["scratch_b"]["aliases"] == "scratch"
    assert {k: (regs[k]["offset"], regs[k]["bytes"]) for k in ("weights", "scratch", "scratch_b")} == {
        "weights": (0x10, 8), "scratch": (0x1C, 8), "scratch_b": (0x28, 8)}
    assert m["runtime"]["xrt"]["args"] == {"weights": 2, "scratch": 3, "scratch_b": 4}
    cfg = (project / "scripts" / "link.cfg").read_text()
    banks = BOARDS["kv260"].banks
    assert dict(re.findall(r"^sp=iseg_test_1\.(\w+):(\S+)$", cfg, re.M)) == {
        "weights": banks[0], "scratch": banks[1], "scratch_b": banks[1]}


def test_m_axi_fifos_are_charged(project: Path) -> None:
    """The adapters' FIFOs are outstanding x burst beats (UG1399): the pragmas top.cpp states cost what the
    report's "axi" unit charges, hand-checked for the kv260 16-byte beats: every channel the engine uses holds 64
    outstanding 4-beat bursts, 64 x 4 x 16 B = 4 KiB (one BRAM36 of 4.5 KiB each: gmem0's read, gmem1's and gmem2's
    read and write); gmem0's write FIFO, 1 x 2 x 16 B, is LUTRAM."""
    top = (project / "src" / "top.cpp").read_text()
    assert "const iseg::beat_t<Cfg>* weights" in top  # the ports: arrays of AXI_BYTES-byte beats (hls/axi.h)
    beat = int(re.search(r"AXI_BYTES = (\d+);", (project / "src" / "model_cfg.h").read_text()).group(1))
    assert beat == 16
    total = 0
    for line in re.findall(r"^#pragma HLS INTERFACE mode=m_axi .*$", top, re.M):
        kv = dict(re.findall(r"(\w+)=(\d+)", line))
        for d in ("read", "write"):
            nbytes = int(kv[f"num_{d}_outstanding"]) * int(kv[f"max_{d}_burst_length"]) * beat
            total += -(-nbytes // 4608) if nbytes * 8 > 1024 else 0
    units = {u["name"]: u for u in json.loads((project / "report.json").read_text())["units"]}
    assert total == units["axi"]["bram36"] == 1 + 2 + 2


def test_alias_pragma_meets_its_requirements(project: Path) -> None:
    """UG1399 "pragma HLS alias": every aliased port is a top-level m_axi argument on a bundle of its own, no port is
    in two ALIAS pragmas, all have the same depth, and their offset is slave or direct (not off). scratch and
    scratch_b are one buffer (distance 0), so the test bench also passes one array for both."""
    top = (project / "src" / "top.cpp").read_text()
    ports = {}
    for line in re.findall(r"^#pragma HLS INTERFACE mode=m_axi (.*)$", top, re.M):
        kv = dict(re.findall(r"(\w+)=(\w+)", line))
        ports[kv["port"]] = kv
    aliases = re.findall(r"^#pragma HLS ALIAS ports=(\S+) distance=(\d+)$", top, re.M)
    assert aliases == [("scratch,scratch_b", "0")]
    names = [n for group, _ in aliases for n in group.split(",")]
    assert len(names) == len(set(names)) and all(n in ports for n in names)
    assert len({ports[n]["bundle"] for n in names}) == len(names)
    assert len({ports[n]["depth"] for n in names}) == 1
    assert all(ports[n]["offset"] in ("slave", "direct") for n in names)
    assert re.search(r"\(pix, lab, g_blob, g_scratch, g_scratch\);", (project / "tb" / "tb.cpp").read_text())


def test_deterministic_and_relocatable(tmp_path: Path, tiny_ckpt: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a = generate(write_config(tmp_path / "a", tiny_ckpt, outputs=["hls", "report"]))
    b = generate(write_config(tmp_path / "b", tiny_ckpt, outputs=["hls", "report"]))
    ta, tb = _tree(a), _tree(b)
    assert ta.keys() == tb.keys()
    for k in ta:
        assert ta[k] == tb[k], f"{k} differs between two generations"
    for k, v in ta.items():
        assert str(tmp_path).encode() not in v, f"{k} holds an absolute path"
        assert b"/root/" not in v and b"/home/" not in v, k


SYNTH = ("src/top.cpp", "src/model_cfg.h", "src/weights_layout.h")


def _strip_comments(text: str) -> str:
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    return re.sub(r"//[^\n]*", "", text)


def test_synthesisable_sources(project: Path) -> None:
    """No float/double, heap, std::vector, recursion or unbounded loop in the synthesised code."""
    lib = sorted((project / "src" / "hls").glob("*.h"))
    files = [project / f for f in SYNTH] + [p for p in lib if p.name not in ("iseg_stream.h", "csim_api.h")]
    for path in files:
        code = _strip_comments(path.read_text())
        code = re.sub(r'"[^"\n]*"', '""', code)  # string literals (check messages)
        for bad in (r"\bfloat\b", r"\bdouble\b", r"\bnew\b", r"\bmalloc\b", r"\bfree\s*\(", r"std::vector",
                    r"while\s*\(\s*(1|true)\s*\)", r"for\s*\(\s*;\s*;\s*\)"):
            assert not re.search(bad, code), f"{path.name}: {bad}"
        # recursion: a function whose body calls itself by name
        for m in re.finditer(r"\n(?:inline |static |template <[^>]*>\s*)*[\w:<>]+\s+(\w+)\(([^)]*)\)\s*\{", code):
            name = m.group(1)
            body_start = m.end()
            depth, i = 1, body_start
            while depth and i < len(code):
                depth += {"{": 1, "}": -1}.get(code[i], 0)
                i += 1
            assert not re.search(rf"\b{name}\s*(<[^;]*?>)?\s*\(", code[body_start:i]), f"{path.name}: {name} recurses"


TCL_STUBS = """
set ::calls {}
foreach p {open_project set_top add_files open_solution set_part create_clock csim_design csynth_design
           cosim_design export_design config_export config_interface} {
    proc $p {args} [format {lappend ::calls [list %s {*}$args]} $p]
}
rename exit _real_exit
proc exit {args} {}
set argv $::env(STEPS)
source [lindex $::env(SCRIPT) 0]
foreach c $::calls { puts $c }
"""
SETUP = ["open_project", "set_top", "add_files", "add_files", "add_files", "add_files", "open_solution", "set_part",
         "create_clock", "config_interface", "config_interface"]


@pytest.mark.skipif(shutil.which("tclsh") is None, reason="tclsh not installed")
@pytest.mark.parametrize("steps, expected", [
    ("csim csynth cosim export", SETUP + ["csim_design", "csynth_design", "cosim_design", "export_design"]),
    ("cosim", SETUP + ["csynth_design", "cosim_design"]),
    ("csim", SETUP + ["csim_design"]),
])
@pytest.mark.parametrize("via", ["tclargs", "env"])
def test_hls_tcl_order(project: Path, tmp_path: Path, steps: str, expected: list[str], via: str) -> None:
    """The steps come from -tclargs (vitis_hls) or, with no arguments, from ISEG_HLS_STEPS (vitis-run)."""
    stub = tmp_path / "stub.tcl"
    stub.write_text(TCL_STUBS)
    env = {"STEPS": steps if via == "tclargs" else "", "SCRIPT": str(project / "scripts" / "hls.tcl"),
           "PATH": "/usr/bin:/bin"}
    if via == "env":
        env["ISEG_HLS_STEPS"] = steps
    proc = subprocess.run(["tclsh", str(stub)], capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr
    assert [c.split()[0] for c in proc.stdout.splitlines()] == expected
    calls = proc.stdout.splitlines()  # no HLS project yet: every step starts one afresh
    assert calls[0].startswith("open_project -reset ") and any(c.startswith("open_solution -reset sol1") for c in calls)
    assert ("csim_design -O" in calls) == ("csim" in steps)
    tcl = (project / "scripts" / "hls.tcl").read_text()
    assert f"set_part {BOARDS['kv260'].part}" in tcl and "create_clock -period 4.000" in tcl
    # the test bench's data files are test bench files; widening needs the pointers' alignment (UG1399)
    assert "add_files -tb weights.bin" in tcl and "add_files -tb tb/golden" in tcl
    assert "config_interface -m_axi_alignment_byte_size 64" in tcl
    # the read latency the estimate charges in every reading loop's depth (estimate.PIPE_READ), in both flows
    assert f"config_interface -m_axi_latency {est.M_AXI_LATENCY}" in tcl


REUSE = ["open_project", "open_solution", "set_part", "create_clock", "config_interface", "config_interface"]


@pytest.mark.skipif(shutil.which("tclsh") is None, reason="tclsh not installed")
@pytest.mark.parametrize("synthesised", [True, False])
@pytest.mark.parametrize("steps", ["csim", "cosim", "export", "cosim export", "csynth cosim"])
def test_hls_tcl_reuses_the_project(project: Path, tmp_path: Path, steps: str, synthesised: bool) -> None:
    """Only csynth starts the HLS project afresh: with one on disk, csim, cosim and export reopen it without -reset
    (so `make csynth cosim export` synthesises once), and cosim or export synthesise first only when the solution
    holds no synthesised RTL."""
    root = tmp_path / "p"
    shutil.copytree(project / "scripts", root / "scripts")
    hls = root / "build" / "hls_iseg_test"
    (hls / "sol1").mkdir(parents=True)
    (hls / "hls.app").write_text("")
    if synthesised:
        (hls / "sol1" / "syn" / "verilog").mkdir(parents=True)
    stub = tmp_path / "stub.tcl"
    stub.write_text(TCL_STUBS)
    proc = subprocess.run(["tclsh", str(stub)], capture_output=True, text=True,
                          env={"STEPS": steps, "SCRIPT": str(root / "scripts" / "hls.tcl"), "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr
    calls = proc.stdout.splitlines()
    names = [c.split()[0] for c in calls]
    if "csynth" in steps:
        assert names == SETUP + ["csynth_design", "cosim_design"] and calls[0].startswith("open_project -reset")
        return
    assert names[:len(REUSE)] == REUSE and not any("-reset" in c for c in calls)
    assert calls[0] == "open_project build/hls_iseg_test"
    synth = ["csynth_design"] if not synthesised and steps != "csim" else []
    tail = {"csim": ["csim_design"], "cosim": ["cosim_design"], "export": ["export_design"],
            "cosim export": ["cosim_design", "export_design"]}[steps]
    assert names[len(REUSE):] == synth + tail


@pytest.mark.skipif(shutil.which("g++") is None or shutil.which("make") is None, reason="g++/make not installed")
def test_testbench_builds_and_passes_from_another_folder(project: Path, tmp_path: Path) -> None:
    """tb.cpp declares the top exactly as top.cpp defines it (csim and cosim compile the two together) and
    reads its files under ISEG_PROJECT_DIR, which hls.tcl sets: Vitis HLS runs the test bench in folders of its
    own (sol1/csim/build, sol1/sim/wrapc). `make tb` builds it with g++."""
    build = subprocess.run(["make", "-C", str(project), "build/tb"], capture_output=True, text=True)
    assert build.returncode == 0, build.stdout + build.stderr
    run = subprocess.run([str(project / "build" / "tb")], capture_output=True, text=True, cwd=tmp_path,
                         env={"ISEG_PROJECT_DIR": str(project), "PATH": "/usr/bin:/bin"})
    assert run.returncode == 0 and "tb: PASS" in run.stdout, run.stdout + run.stderr
    assert "set ::env(ISEG_PROJECT_DIR) $root" in (project / "scripts" / "hls.tcl").read_text()


@pytest.mark.skipif(shutil.which("g++") is None or shutil.which("make") is None, reason="g++/make not installed")
def test_testbench_fails_on_one_layer_checksum(project: Path, tmp_path: Path) -> None:
    """The test bench's per-layer check, made to fail: one intermediate layer's golden checksum off by one is
    'tb: FAIL layer <i>' and exit 1 (a check that compared the element counts only survived every test: the
    only failing bench seen before failed on its labels)."""
    proj = Path(shutil.copytree(project, tmp_path / "p"))
    golden = proj / "tb" / "golden" / "layers.txt"
    rows = golden.read_text().splitlines()
    i = len(rows) // 2  # a layer in the middle, not the last (whose labels would fail too)
    idx, count, total = rows[i].split()
    rows[i] = f"{idx} {count} {int(total) + 1}"
    golden.write_text("\n".join(rows) + "\n")
    build = subprocess.run(["make", "-C", str(proj), "build/tb"], capture_output=True, text=True)
    assert build.returncode == 0, build.stdout + build.stderr
    run = subprocess.run([str(proj / "build" / "tb")], capture_output=True, text=True, cwd=tmp_path,
                         env={"ISEG_PROJECT_DIR": str(proj), "PATH": "/usr/bin:/bin"})
    assert run.returncode == 1, run.stdout + run.stderr
    assert f"tb: FAIL layer {idx} (" in run.stdout and f"expected {int(total) + 1} over {count}" in run.stdout


@pytest.mark.skipif(shutil.which("g++") is None, reason="g++ not installed")
@pytest.mark.parametrize("name", ["beat", "g_sum", "run"])
def test_project_may_take_the_testbench_names(tmp_path: Path, tiny_ckpt: Path, name: str) -> None:
    """The test bench keeps its own names in namespace iseg_tb and calls the top as ::project, so a project may be
    called like any of them: tb.cpp and top.cpp compile together (config.py refuses only the global names)."""
    from iseg.generator.csim import ap_types_dir

    proj = generate(write_config(tmp_path, tiny_ckpt, project=name, outputs=["hls"]))
    cmd = ["g++", "-std=c++17", "-fsyntax-only", f"-I{proj / 'src'}", f"-I{proj / 'src' / 'hls'}",
           f"-I{ap_types_dir()}"]
    for src in ("tb/tb.cpp", "src/top.cpp"):
        build = subprocess.run([*cmd, str(proj / src)], capture_output=True, text=True)
        assert build.returncode == 0, build.stderr[-3000:]


@pytest.mark.skipif(shutil.which("g++") is None, reason="g++ not installed")
def test_reserved_names_snapshot_is_current() -> None:
    """Every name the generated sources' C headers declare or define (probed with this machine's g++) is in the
    snapshot config.py refuses: a project of such a name would not compile (getenv: conflicting declaration)."""
    from iseg.generator.reserved import probe_names
    from iseg.generator.reserved_names import C_LIBRARY_NAMES

    missing = sorted(probe_names() - C_LIBRARY_NAMES)
    assert not missing, f"run python -m iseg.generator.reserved: {len(missing)} names missing, {missing[:20]}"
    assert {"getenv", "rand", "uint8_t", "stdin", "div_t"} <= C_LIBRARY_NAMES


def test_testbench_builds_with_vitis_types(project: Path, tmp_path: Path) -> None:
    """Under Vitis' csim and cosim (hls.tcl's -DISEG_VITIS) the top and the test bench use Vitis' hls::stream and
    hls::axis, not our stand-in: the co-simulation wrapper is built from the synthesised signature, so the test
    bench must pass those very types. Built here with named stand-ins of hls_stream.h (Vitis' C-sim stream's shape:
    an unbounded FIFO, no attach()) and ap_axi_sdata.h (vitis_standin/), it compiles and passes bit-exact."""
    from iseg.generator.csim import ap_types_dir

    assert "-DISEG_VITIS" in (project / "scripts" / "hls.tcl").read_text()
    exe, check = tmp_path / "tb_vitis", tmp_path / "types.cpp"
    check.write_text('#include <type_traits>\n#include "model_cfg.h"\n'
                     'static_assert(!ISEG_OWN_STREAMS, "our stream stand-in under ISEG_VITIS");\n'
                     'static_assert(std::is_same<iseg::label_beat_t<Cfg>, hls::axis<ap_uint<8 * Cfg::LAB>, 0, 0, 0> >'
                     '::value, "");\n'
                     'static_assert(std::is_same<iseg::pix_beat_t<Cfg>, ap_uint<32 * Cfg::PIX> >::value, "");\n')
    cmd = ["g++", "-std=c++14", "-O1", "-DISEG_VITIS", f"-I{Path(__file__).parent / 'vitis_standin'}",
           f"-I{ap_types_dir()}", f"-I{project / 'src'}", f"-I{project / 'src' / 'hls'}",
           str(project / "tb" / "tb.cpp"), str(project / "src" / "top.cpp"), str(check), "-o", str(exe)]
    build = subprocess.run(cmd, capture_output=True, text=True)
    assert build.returncode == 0, build.stderr[-3000:]
    run = subprocess.run([str(exe)], capture_output=True, text=True, cwd=tmp_path,
                         env={"ISEG_PROJECT_DIR": str(project), "PATH": "/usr/bin:/bin"})
    assert run.returncode == 0 and "tb: PASS" in run.stdout, run.stdout + run.stderr


@pytest.mark.skipif(shutil.which("tclsh") is None, reason="tclsh not installed")
def test_hls_tcl_rejects_unknown_step(project: Path, tmp_path: Path) -> None:
    stub = tmp_path / "stub.tcl"
    stub.write_text(TCL_STUBS)
    proc = subprocess.run(["tclsh", str(stub)], capture_output=True, text=True,
                          env={"STEPS": "synth", "SCRIPT": str(project / "scripts" / "hls.tcl"),
                               "PATH": "/usr/bin:/bin"})
    assert proc.returncode != 0 and "unknown step" in proc.stderr


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.stem)
def test_examples_generate(example: Path, tmp_path: Path, tiny_ckpt: Path) -> None:
    """Every example config generates a complete project (a random checkpoint stands in when absent)."""
    data = yaml.safe_load(example.read_text())
    ckpt = (example.parent / data["checkpoint"]).resolve()
    if not ckpt.is_file():
        ckpt = tiny_ckpt
    data["checkpoint"] = str(ckpt)
    data["output"] = "out"
    data["outputs"] = [o for o in data.get("outputs", ["hls", "report"]) if o != "csim"]
    cfg = tmp_path / example.name
    cfg.write_text(yaml.safe_dump(data))
    assert main([str(cfg)]) == 0
    out = tmp_path / "out"
    board = BOARDS[data["board"]]
    flow_file = "scripts/link.cfg" if board.flow == "vitis" else "scripts/bd.tcl"
    for f in ("src/top.cpp", "weights.bin", "manifest.json", "report.md", flow_file, "tb/tb.cpp"):
        assert (out / f).is_file(), f
    assert board.part in (out / "scripts" / "hls.tcl").read_text()
    # the buffers the estimate charges as URAM are bound to URAM in the C++ (model_cfg.h -> engine.h BIND_STORAGE)
    units = {u["name"]: u for u in json.loads((out / "report.json").read_text())["units"]}
    cfg_h = (out / "src" / "model_cfg.h").read_text()
    assert f"#define ISEG_W_URAM {int(units['w_buffers']['uram'] > 0)}\n" in cfg_h, units["w_buffers"]
    assert units["shiftmax"]["uram"] == 0 and "ISEG_S_URAM" not in cfg_h  # byte banks: never URAM
    assert cfg_h.index("#define ISEG_W_URAM") < cfg_h.index('#include "engine.h"')
    project = data.get("project", "iseg")
    if board.flow == "vitis":
        cfg = (out / "scripts" / "link.cfg").read_text()
        general = cfg.split("\n[", 1)[0]  # the general options: before the first [section]
        assert f"platform={board.platform}" in general
        # a Kria SOM loads the design through dfx-mgr first (xmutil loadapp); an Alveo card takes the xclbin alone
        assert ("xmutil loadapp" in (out / "README.md").read_text()) == bool(board.ps)
        if board.ps:  # embedded: fixed platform clocks, picked or derived with --clock.freqHz, the movers' too
            hz = int(board.clock_mhz * 1e6)
            assert re.search(rf"^\[clock\]\n#.*\nfreqHz={hz}:{project}_1\nfreqHz={hz}:mm2s_1\nfreqHz={hz}:s2mm_1$",
                             cfg, re.M) and "\nkernel_frequency" not in cfg
        else:  # Alveo: the scalable kernel clock, --kernel_frequency (a general option)
            assert re.search(r"^kernel_frequency=\d+$", general, re.M) and "\n[clock]" not in cfg
    else:
        bd = (out / "scripts" / "bd.tcl").read_text()
        assert board.board_part in bd and "assign_bd_address" in bd
        clock = ("PSU__CRL_APB__PL0_REF_CTRL__FREQMHZ" if board.ps == "zynq_ultra_ps_e"
                 else "PCW_FPGA0_PERIPHERAL_FREQMHZ")
        assert f"CONFIG.{clock} {{{board.clock_mhz:g}}}" in bd, clock


@pytest.mark.parametrize("board, mhz, period, link", [
    ("u50", 299.6, "3.337", "kernel_frequency=299\n"),  # to nearest: 3.338 ns and 300 MHz, faster than scheduled
    ("u50", 142.857, "7.000", "kernel_frequency=142\n"),
    ("kv260", 287.5, "3.478", "freqHz=287500000:iseg_test_1\n"),
    ("kv260", 250, "4.000", "freqHz=250000000:iseg_test_1\n"),
])
def test_kernel_clock_never_above_the_scheduled_one(tmp_path: Path, tiny_ckpt: Path, board: str, mhz: float,
                                                    period: str, link: str) -> None:
    """HLS schedules for the period rounded down to the ps; the link's clock is rounded down (whole MHz on an Alveo
    platform, Hz on an embedded one), so the kernel never runs faster than it was scheduled for."""
    out = generate(write_config(tmp_path, tiny_ckpt, board=board, clock_mhz=mhz, outputs=["hls"]))
    assert f"create_clock -period {period} -name default\n" in (out / "scripts" / "hls.tcl").read_text()
    cfg = (out / "scripts" / "link.cfg").read_text()
    assert link in cfg
    f_link = int(link.split("=")[1].split(":")[0].strip()) * (1e6 if board == "u50" else 1)
    assert f_link <= mhz * 1e6 <= 1e9 / float(period)


@pytest.mark.skipif(shutil.which("make") is None, reason="make not installed")
def test_make_xclbin_needs_the_data_movers(project: Path) -> None:
    """link.cfg connects mm2s_1 / s2mm_1, which gen-hls does not generate: `make xclbin` without DATAMOVERS stops
    at once (before the export's synthesis) with a line naming the variable; with them it runs export then v++."""
    env = {"PATH": "/usr/bin:/bin", "PYTHON": "true"}
    run = subprocess.run(["make", "-n", "-C", str(project), "xclbin"], capture_output=True, text=True, env=env)
    assert run.returncode == 2 and "make xclbin needs DATAMOVERS: the .xo files of the stream data movers" in run.stderr
    assert "vitis_hls" not in run.stdout
    run = subprocess.run(["make", "-n", "-C", str(project), "xclbin", "DATAMOVERS=m.xo s.xo"], capture_output=True,
                         text=True, env=env)
    assert run.returncode == 0, run.stderr
    assert "ISEG_HLS_STEPS=export" in run.stdout and "build/iseg_test.xo m.xo s.xo" in run.stdout
    ok = subprocess.run(["make", "-n", "-C", str(project), "tb"], capture_output=True, text=True, env=env)
    assert ok.returncode == 0, ok.stderr  # the other targets do not ask for it


@pytest.mark.parametrize("array", ["auto", {"rows": 4, "cols": 8}])
def test_project_config_regenerates_the_project(tmp_path: Path, tiny_ckpt: Path, array) -> None:
    """The project's config.yaml is a valid gen-hls config (no key the schema refuses, no budget beside an explicit
    array) that, with the checkpoint copied beside it, generates the same project byte for byte."""
    out = generate(write_config(tmp_path, tiny_ckpt, array=array, outputs=["hls", "report"]))
    text = (out / "config.yaml").read_text()
    data = yaml.safe_load(text)
    assert data["array"] == ("auto" if array == "auto" else {"rows": 4, "cols": 8, "macs_per_dsp": 2})
    assert ("budget" in data) == (array == "auto") and data["output"] == "regenerated"
    assert re.search(r"^# checkpoint sha256: [0-9a-f]{64}$", text, re.M)
    assert ("# array: auto chose " in text) == (array == "auto")
    shutil.copy(tiny_ckpt, out / data["checkpoint"])
    assert main([str(out / "config.yaml")]) == 0
    again = _tree(out / "regenerated")
    first = {k: v for k, v in _tree(out).items() if not k.startswith("regenerated/") and k != data["checkpoint"]}
    assert again == first


def test_linear_decoder_and_shift_gelu_generate(tmp_path: Path) -> None:
    from dataclasses import replace

    spec = replace(PRESETS["tiny"], decoder="linear", gelu="shift", softmax="ivit")
    path = tmp_path / "m.safetensors"
    save(random_checkpoint(spec, 1), path)
    out = generate(write_config(tmp_path, path, outputs=["hls"]))
    cfg_h = (out / "src" / "model_cfg.h").read_text()
    assert "iseg::OP_GELU" in cfg_h and "iseg::OP_MASK_PRODUCT" not in cfg_h


def test_rtl_flag_adds_the_verilog_units(tmp_path: Path, tiny_ckpt: Path) -> None:
    cfg = write_config(tmp_path, tiny_ckpt, outputs=["hls"])
    assert main([str(cfg)]) == 0
    assert not (tmp_path / "out" / "rtl").exists()
    assert main([str(cfg), "--rtl"]) == 0
    units = sorted(p.name for p in (tmp_path / "out" / "rtl").glob("*.v"))
    assert "iseg_gemm.v" in units and "iseg_layernorm.v" in units and "iseg_shiftmax.v" in units
    text = (tmp_path / "out" / "rtl" / "iseg_rq.v").read_text()
    assert "module iseg_rq" in text
    # the GEMM (no bias adder) feeds iseg_rq: the bias is in its offsets, o + b·m (it was left out: RQ(x @ W))
    from iseg.checkpoint import load

    ck = load(tiny_ckpt)
    m, _, o = (np.broadcast_to(np.atleast_1d(v), (len(ck.tensors["enc.0.fc1.bias"]),)) for v in ck.rq("enc.0.fc1.rq"))
    want = [int(oi) + int(b) * int(mi) for oi, b, mi in zip(o, ck.tensors["enc.0.fc1.bias"], m, strict=True)]
    assert any(w != int(oi) for w, oi in zip(want, o, strict=True))  # the tiny model's bias is not zero
    for w in want[:4]:
        assert f"64'sh{w & ((1 << 64) - 1):x}" in text
