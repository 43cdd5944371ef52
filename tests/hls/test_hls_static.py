"""Static properties of the synthesisable headers in ``hls/``: integer-only, no dynamic memory, no
recursion, one C-sim/synthesis switch, labelled loops, and the LayerDesc binary layout."""

from __future__ import annotations

import ctypes
import re
from pathlib import Path

import pytest
from _hls_harness import HLS_DIR, LayerDesc

HEADERS = sorted(Path(HLS_DIR).glob("*.h"))
STREAM_STANDIN = "iseg_stream.h"  # C-simulation only (never seen by the HLS compiler)


def code_of(path: Path) -> str:
    """The source without comments and string literals."""
    s = path.read_text()
    s = re.sub(r"/\*.*?\*/", " ", s, flags=re.S)
    s = re.sub(r"//[^\n]*", " ", s)
    return re.sub(r'"(\\.|[^"\\])*"', '""', s)


def test_headers_exist():
    names = {p.name for p in HEADERS}
    for want in ["compat.h", "iseg_stream.h", "requant.h", "gemm.h", "shiftmax.h", "gelu.h", "layernorm.h",
                 "add.h", "argmax_upsample.h", "patch_embed.h", "attention.h", "engine.h", "layer_desc.h",
                 "csim_api.h"]:
        assert want in names


@pytest.mark.parametrize("path", HEADERS, ids=lambda p: p.name)
def test_integer_only_static_memory(path):
    code = code_of(path)
    for pat, what in [(r"\bfloat\b", "float"), (r"\bdouble\b", "double"), (r"\bnew\b", "new"),
                      (r"\bdelete\s*[\[(\w]", "delete"),
                      (r"\bmalloc\b|\bcalloc\b|\brealloc\b|\bfree\s*\(", "malloc/free"),
                      (r"std::vector|std::deque|std::string|std::list|std::map", "std containers"),
                      (r"\bgoto\b", "goto")]:
        assert not re.search(pat, code), f"{path.name} uses {what}"


@pytest.mark.parametrize("path", HEADERS, ids=lambda p: p.name)
def test_no_recursion(path):
    """No function calls itself (the call graph across headers is acyclic by inclusion order, and
    each function body must not name its own function)."""
    code = code_of(path)
    for m in re.finditer(r"\b([A-Za-z_]\w*)\s*\([^;{}()]*(?:\([^()]*\)[^;{}()]*)*\)\s*(?:const\s*)?\{", code):
        name = m.group(1)
        if name in {"if", "for", "while", "switch", "catch", "sizeof", "return"}:
            continue
        depth, i = 1, m.end()
        while depth and i < len(code):
            depth += {"{": 1, "}": -1}.get(code[i], 0)
            i += 1
        body = code[m.end():i - 1]
        assert not re.search(rf"(?<![\w.>:]){name}\s*(<[^;()]*>)?\s*\(", body), f"{path.name}: {name} recurses"


def test_one_synthesis_switch():
    users = [p.name for p in HEADERS if "__SYNTHESIS__" in code_of(p)]
    assert users == ["compat.h"]


@pytest.mark.parametrize("path", [p for p in HEADERS if p.name not in (STREAM_STANDIN, "csim_api.h")],
                         ids=lambda p: p.name)
def test_loops_are_labelled(path):
    """Every loop of a kernel header carries a label (reports name loops by label)."""
    lines = code_of(path).splitlines()
    for i, line in enumerate(lines):
        if re.match(r"\s*for\s*\(", line):
            prev = next(p for p in reversed(lines[:i]) if p.strip())
            assert re.match(r"\s*[A-Z][A-Z0-9_]*:\s*$", prev), f"{path.name}:{i + 1}: unlabelled loop"


def test_layer_desc_layout(hls):
    assert hls.lib.h_sizeof_layer_desc() == ctypes.sizeof(LayerDesc) == 184
