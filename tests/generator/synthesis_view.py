"""Build and run a generated project's test bench against its top compiled in the synthesis view.

Vitis defines ``__SYNTHESIS__`` for csynth, and ``hls/compat.h`` switches on it: the array's accumulators become
``ap_int<ARR>`` of the model's proven width, the streams Vitis' own, the checks and counters disappear. No C-sim
compiles that side, so an error in it (a ``?:`` mixing ``int`` and ``ap_int``: ambiguous for any C++ compiler)
would first show in a user's csynth. Here ``top.cpp`` is compiled with ``__SYNTHESIS__`` defined (after the
open-source ap_types, which refuse it: ``vitis_standin/synthesis_view.h``) and C++14 like ``hls.tcl``, by clang
(csynth's front end is clang-based; ``scripts/setup.sh`` installs it) for the syntax and g++ to run it; the test
bench (``-DISEG_VITIS``, the csim/cosim view) links against it and compares every traced layer and the labels with
the golden vectors. Used by the tests and by ``benchmarks/shape_sweep.py``.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

from iseg.generator.csim import ap_types_dir

STANDIN = Path(__file__).resolve().parent / "vitis_standin"


def run_synthesis_view(project: Path, work: Path, top_project: Path | None = None) -> tuple[bool, str]:
    """(passed, output): compile the synthesis view, link the test bench, run it from another folder.

    The top is a shared library exporting only its entry point (a version script): the few inline helpers not
    templated on the project's Cfg (``requant_w<N>``, ``mul_dsp<A, B>``, ...) are emitted by both compilations
    with different bodies (``ap_int`` operands, no checks), and in one executable the linker would keep the
    test bench's copy for both. ``top_project``: the copy whose ``top.cpp`` is compiled (default ``project``):
    a mutated copy changes the synthesis view and nothing the test bench computes itself (its own per-layer
    pass is the C-sim view).
    """
    if shutil.which("clang++") is None:
        return False, "clang++ not installed (bash scripts/setup.sh installs it)"
    top = top_project or project
    name = re.search(r'extern "C" void (\w+)\(', (top / "src" / "top.cpp").read_text())
    if name is None:
        return False, "no extern \"C\" top function in top.cpp"
    (work / "top.map").write_text(f"{{ global: {name.group(1)}; local: *; }};\n")
    inc = [f"-I{STANDIN}", f"-I{ap_types_dir()}", f"-I{project / 'src'}", f"-I{project / 'src' / 'hls'}"]
    view = ["-std=c++14", "-include", str(STANDIN / "synthesis_view.h"), f"-I{top / 'src'}",
            f"-I{top / 'src' / 'hls'}", *inc, str(top / "src" / "top.cpp")]
    lib, exe = work / "libtop_synth.so", work / "tb_synth"
    steps = [
        # csynth's front end is clang: what g++ lets through, clang may not
        ["clang++", "-fsyntax-only", "-Wno-unknown-pragmas", *view],
        ["g++", "-O1", "-Werror=return-type", "-fPIC", "-shared", *view,
         f"-Wl,--version-script={work / 'top.map'}", "-o", str(lib)],
        ["g++", "-std=c++14", "-O1", "-DISEG_VITIS", *inc, str(project / "tb" / "tb.cpp"), str(lib),
         f"-Wl,-rpath,{work}", "-o", str(exe)],
    ]
    for cmd in steps:
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode:
            return False, f"{cmd[0]}: " + done.stderr[-4000:]
    run = subprocess.run([str(exe)], capture_output=True, text=True, cwd=work,
                         env={"ISEG_PROJECT_DIR": str(project), "PATH": "/usr/bin:/bin"})
    return run.returncode == 0 and "tb: PASS" in run.stdout, run.stdout[-4000:] + run.stderr[-4000:]
