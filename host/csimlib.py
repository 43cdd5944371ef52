"""The emulated board's C-simulation library: built for this manifest, loaded, or one line why not.

The library is compiled from the project's generated headers, and its buffers are sized by them,
not by ``manifest.json``: ``src/model_cfg.h`` fixes the image (``IMG_H``, ``IMG_W``, and the
``img_h``/``img_w`` of the layer table's pixel and label layers) and ``src/weights_layout.h``
the weight image and the scratch (``kBytes``, ``kScratchBytes``). The host allocates its buffers
from the manifest, so a manifest that disagrees (hand-edited, or copied from another project)
would let the C code read or write past them: a segfault or a heap corruption after label files
were written. The library exports no function reporting its sizes (``hls/csim_api.h``), so
they are read from those headers, which is what it was built from: ``csim.build`` recompiles
whenever a header byte changes (its hash stamp covers every ``src`` header).
"""

from __future__ import annotations

import ctypes
import re
from pathlib import Path

from iseg.errors import IsegError
from iseg.host.manifest import Manifest

MODEL_CFG = "src/model_cfg.h"
WEIGHTS_LAYOUT = "src/weights_layout.h"
_CONST = re.compile(r"static\s+constexpr\s+\w+\s+(\w+)\s*=\s*(\d+)\s*;")
_OP = re.compile(r"iseg::OP_(\w+)\s*,\s*//\s*op\b")
_FIELD = re.compile(r"(-?\d+)\s*,\s*//\s*(img_h|img_w)\b")
_SHA = re.compile(r"//\s*sha256 of weights\.bin:\s*([0-9a-f]{64})")
IMAGE_OPS = ("PATCH_EMBED", "ARGMAX_UPSAMPLE")  # the layers that read the pixel stream, write the labels


def _read(root: Path, rel: str) -> str:
    path = root / rel
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        why = getattr(e, "strerror", None) or e
        raise IsegError(f"{path}: cannot read it to check the C-simulation's sizes ({why}); "
                        f"regenerate the project with gen-hls") from None


def _const(text: str, name: str, where: Path) -> int:
    values = {m.group(1): int(m.group(2)) for m in _CONST.finditer(text)}
    if name not in values:
        raise IsegError(f"{where}: no constant {name} (regenerate the project with gen-hls)")
    return values[name]


def compiled_sizes(root: Path) -> dict[str, object]:
    """What the library of project ``root`` is built for: image, table image sizes, weights, scratch."""
    cfg_text = _read(root, MODEL_CFG)
    lay_text = _read(root, WEIGHTS_LAYOUT)
    cfg, lay = root / MODEL_CFG, root / WEIGHTS_LAYOUT
    table: list[tuple[str, int, int]] = []  # (op, img_h, img_w) of the layers that touch the streams
    op: str | None = None
    dims: dict[str, int] = {}
    for line in cfg_text.splitlines():
        if m := _OP.search(line):
            op, dims = m.group(1), {}
        elif op in IMAGE_OPS and (m := _FIELD.search(line)):
            dims[m.group(2)] = int(m.group(1))
            if len(dims) == 2:
                table.append((op, dims["img_h"], dims["img_w"]))
                op = None
    sha = _SHA.search(lay_text)
    return {"image": (_const(cfg_text, "IMG_H", cfg), _const(cfg_text, "IMG_W", cfg)), "table": table,
            "weights_bytes": _const(lay_text, "kBytes", lay), "scratch_bytes": _const(lay_text, "kScratchBytes", lay),
            "weights_sha256": sha.group(1) if sha else None}


def check_manifest(m: Manifest) -> None:
    """Refuse a manifest whose sizes differ from those the C-simulation is compiled with (one line)."""
    got = compiled_sizes(m.root)
    h, w = m.image
    differ = []
    if got["image"] != (h, w):
        ch, cw = got["image"]  # type: ignore[misc]
        differ.append(f"image {h}x{w}, the library {ch}x{cw} ({MODEL_CFG} IMG_H, IMG_W)")
    for op, th, tw in got["table"] if not differ else ():  # type: ignore[attr-defined]
        if (th, tw) != (h, w):
            differ.append(f"image {h}x{w}, its {op} layer {th}x{tw} ({MODEL_CFG})")
            break
    if got["scratch_bytes"] != m.scratch_bytes:
        differ.append(f"scratch_bytes {m.scratch_bytes}, the library {got['scratch_bytes']} "
                      f"({WEIGHTS_LAYOUT} kScratchBytes)")
    if got["weights_bytes"] != m.weights_bytes:
        differ.append(f"weights.bytes {m.weights_bytes}, the library {got['weights_bytes']} ({WEIGHTS_LAYOUT} kBytes)")
    if got["weights_sha256"] is not None and got["weights_sha256"] != m.weights_sha256:
        differ.append(f"weights.sha256 differs from the one in {WEIGHTS_LAYOUT}")
    if differ:
        raise IsegError(f"{m.path} does not match the C-simulation it would run: {'; '.join(differ)} "
                        f"(regenerate the project with gen-hls)")


def load_library(m: Manifest) -> tuple[ctypes.CDLL, Path]:
    """Build (cached) and load the project's C-simulation library, checked against the manifest first.

    A library replaced or truncated on disk is copied again by ``csim.build`` (its stamp holds the library's own
    sha256); one that still does not load (a bad cache entry) stops the run with one line.
    The emulated board runs the build without the memory-port check (``csim.build(port_check=False)``):
    the same labels and cycles, 15-20 % less time per frame (benchmarks/csim_frame.py); ``gen-hls --csim`` is
    where ports are checked.
    """
    from iseg.generator import csim

    if not (m.root / "src" / "csim.cpp").is_file():
        csim.build(m.root)  # its one line: generate the project with outputs hls or csim
    check_manifest(m)
    try:
        lib_path = csim.build(m.root, port_check=False)  # cached: a hash check when up to date
    except OSError as e:
        raise IsegError(f"{m.root}: cannot build the C-simulation library ({e.strerror or e})") from None
    try:
        return ctypes.CDLL(str(lib_path.resolve())), lib_path
    except OSError as e:
        raise IsegError(f"{lib_path}: cannot load the C-simulation library ({e}); delete it and the csim cache "
                        f"(ISEG_CSIM_CACHE, default ~/.cache/iseg/csim) and run again") from None
