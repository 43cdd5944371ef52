"""The position-embedding add (graph op ``embed``) fused into the patch embedding's GEMM output stage: the rule
(estimate.embed_fusions, one for the planner and the estimate), the fused PATCH_EMBED table row and its trace
(the embed output), the C-simulation bit-exact on both decoders, non-square images, P = 4 and 16 and a single
grid row, its counter = the estimate, and a wrong pos value / a wrong ma caught by --csim naming the row."""

from __future__ import annotations

import re
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from iseg import numerics as nx
from iseg.errors import IsegError
from iseg.generator import estimate as est
from iseg.generator.cli import check_csim
from iseg.generator.csim import CsimLibrary
from iseg.graph import Act, Linear, build_graph
from iseg.random_model import PRESETS, calibration_image

from .conftest import build_projects, make_ckpt, write_config

BASE = replace(PRESETS["tiny"], layers=1, dec_layers=1)
SHAPE = est.ArrayShape(rows=4, cols=8, pack=2, out_lanes=3, ln_lanes=5, sm_lanes=3, axi_bytes=16, s_lanes=5)


def test_rule_and_costs() -> None:
    g = build_graph(PRESETS["tiny"])
    assert est.embed_fusions(g) == {"embed": "patch_embed"}
    costs = {c.name: c for c in est.op_costs(g, SHAPE)}
    assert costs["embed"].kind == "fused" and costs["embed"].cycles == 0
    assert est.row_units(g)["embed_add"] == 0  # no EMBED_ADD row: the engine leaves embed_add_rows out
    # the patch embedding pays the cls row in its first tile: max(K, ..., ceil(D / OUT_LANES))
    spec = g.spec
    t, k, n = spec.n_patches, 3 * spec.patch ** 2, spec.dim
    plain, _ = est.gemm_cycles(SHAPE, t, k, n, bias=True, rq_tab=True, gelu=False, prefetch_bytes=0)
    fused, _ = est.gemm_cycles(SHAPE, t, k, n, bias=True, rq_tab=True, gelu=False, prefetch_bytes=0, embed=True)
    assert fused - plain == max(0, est.cdiv(n, SHAPE.out_lanes) - max(k, est.cdiv(SHAPE.rows * est.cdiv(k, 16),
                                                                                   est.cdiv(n, 8))))
    # another reader of the patch embedding's output: no fusion, the EMBED_ADD row stays (and its unit)
    g2 = build_graph(PRESETS["tiny"])
    g2.add(Linear("x.lin", ("patch_embed",), "x.lin", rows=spec.n_patches, k=n, n=3, weight="x.w", rq="x.rq"),
           Act("x.lin", (spec.n_patches, 3), 8))
    assert est.embed_fusions(g2) == {}
    assert est.row_units(g2)["embed_add"] == 1
    assert {c.name: c for c in est.op_costs(g2, SHAPE)}["embed"].kind == "embed_add"


@pytest.mark.parametrize("decoder", ["mask", "linear"])
def test_plan_row(decoder: str, tmp_path: Path) -> None:
    from iseg.checkpoint import load
    from iseg.generator.config import load_config
    from iseg.generator.plan import embed_prefix_rows, make_plan

    spec = replace(BASE, decoder=decoder)
    ck = make_ckpt(tmp_path, spec, seed=1)
    plan = make_plan(load_config(write_config(tmp_path, ck)), load(ck))
    assert "EMBED_ADD" not in {r.op for r in plan.layers}
    assert (plan.engine["row_ops"] >> 2) & 1 == 0
    row = plan.layers[0]
    f = dict(row.fields)
    seg = {s.name: s for s in plan.blob}
    assert row.op == "PATCH_EMBED" and row.ops == ("patch_embed", "embed")
    assert f["n_prefix"] == "1" and int(f["in2"]) == seg["pos_embed"].offset
    # row 0 = int_add(cls, pos[0]) is a constant: folded by the generator into one blob row at cst
    pre = seg["embed#prefix"]
    assert int(f["cst"]) == pre.offset and pre.kind == "i16 embed prefix" and pre.nbytes == spec.dim * 2
    ckpt = load(ck)
    c0 = ckpt.consts["embed.add"]
    want0 = nx.int_add(ckpt.tensors["cls_token"].reshape(-1), ckpt.tensors["pos_embed"].reshape(-1, spec.dim)[0],
                       int(c0["ma"]), int(c0["mb"]), int(c0["e"]))
    assert np.array_equal(embed_prefix_rows(ckpt, "cls_token", "pos_embed", "embed.add")[0], want0)
    assert "cls_token" not in seg  # the cls row itself is not needed on the board
    assert int(f["in2_stride"]) == spec.dim and seg["pos_embed"].nbytes == (spec.n_patches + 1) * spec.dim * 2
    c = load(ck).consts["embed.add"]
    assert (int(f["ma"]), int(f["mb"]), int(f["ea"])) == (int(c["ma"]), int(c["mb"]), int(c["e"]))
    assert (row.trace.name, row.trace.row0, row.trace.rows) == ("embed", 0, spec.n_patches + 1)
    assert "patch_embed" not in {b.name for b in plan.buffers}  # the intermediate is never stored


VARIANTS = {
    "mask_p16": (replace(BASE, image=(32, 48)), None),                                      # P = 16, 2 x 3
    "linear_p4": (replace(BASE, decoder="linear", patch=4, image=(12, 20), dim=32, heads=2), {"rows": 4, "cols": 8}),
    "mask_p4_one_row": (replace(BASE, patch=4, image=(4, 28), dim=40, heads=2, dec_dim=24, dec_heads=2), None),
    "linear_one_row_odd": (replace(BASE, decoder="linear", image=(16, 48), dim=48, heads=3), {"rows": 3, "cols": 12}),
}


@pytest.fixture(scope="module")
def projects(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Path, Path]]:
    return build_projects(tmp_path_factory, VARIANTS, "emb")


@pytest.mark.csim
@pytest.mark.skipif(shutil.which("g++") is None, reason="g++ not installed")
@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_csim_bit_exact_and_cycles(name: str, projects) -> None:
    from iseg.checkpoint import load
    from iseg.generator.config import load_config
    from iseg.generator.plan import make_plan
    from iseg.reference import run

    proj, ckpt, cfg = projects[name]
    assert check_csim(proj, ckpt, "2").startswith("csim PASS: 2 image(s)")
    lib = CsimLibrary(proj)
    spec = VARIANTS[name][0]
    img = calibration_image(spec.image, 1)
    _, trace = lib.run_traced(img)
    _, ref = run(load(ckpt), img, trace=True)
    assert "patch_embed" not in trace and np.array_equal(trace["embed"], ref["embed"])
    entry = next(e for e in lib.trace_map if e["ops"] == ["patch_embed", "embed"])
    plan = make_plan(load_config(cfg), load(ckpt))
    ops = {o.name: o for o in plan.op_estimates}
    assert ops["embed"].cycles == 0
    assert lib.cycles(entry["layer"]) == ops["patch_embed"].cycles > 0
    assert lib.cycles(-1) == lib.manifest["estimate"]["cycles"] == plan.totals["cycles"]


@pytest.mark.csim
@pytest.mark.skipif(shutil.which("g++") is None, reason="g++ not installed")
def test_wrong_pos_or_ma_is_caught(projects, tmp_path: Path) -> None:
    """One pos value changed in weights.bin, one value of the folded row 0, or the embed's ma changed in the layer
    table: a MISMATCH naming the fused row (patch_embed+embed [embed])."""
    proj, ckpt, _ = projects["mask_p16"]
    mut = tmp_path / "pos"
    shutil.copytree(proj, mut)
    layout = (mut / "src" / "weights_layout.h").read_text()
    off = int(re.search(r"= (\d+);  // pos_embed:", layout).group(1))
    blob = bytearray((mut / "weights.bin").read_bytes())
    d = VARIANTS["mask_p16"][0].dim
    at = off + 2 * (d + 3)  # pos[1][3]: token 0, channel 3
    v = int.from_bytes(blob[at:at + 2], "little", signed=True)
    blob[at:at + 2] = (v + 20000 if v < 0 else v - 20000).to_bytes(2, "little", signed=True)
    (mut / "weights.bin").write_bytes(bytes(blob))
    with pytest.raises(IsegError, match=rf"MISMATCH .* layer 0 patch_embed\+embed \[embed\] at flat index {d + 3}:"):
        check_csim(mut, ckpt, "1")
    mut2 = tmp_path / "ma"
    shutil.copytree(proj, mut2)
    cfg_h = mut2 / "src" / "model_cfg.h"
    text = cfg_h.read_text()
    block = text.index("PATCH_EMBED: patch_embed + embed")
    m = re.compile(r"(-?\d+),  // ma\n").search(text, block)
    text = text[:m.start()] + f"{int(m.group(1)) // 2 + 12345},  // ma\n" + text[m.end():]
    cfg_h.write_text(text)
    # row 0 is the folded constant: ma shows from row 1 on
    with pytest.raises(IsegError, match=rf"MISMATCH .* layer 0 patch_embed\+embed \[embed\] at flat index {d}:"):
        check_csim(mut2, ckpt, "1")
    mut3 = tmp_path / "row0"
    shutil.copytree(proj, mut3)
    off = int(re.search(r"= (\d+);  // embed#prefix:", (mut3 / "src" / "weights_layout.h").read_text()).group(1))
    blob = bytearray((mut3 / "weights.bin").read_bytes())
    v = int.from_bytes(blob[off + 10:off + 12], "little", signed=True)  # row 0, channel 5
    blob[off + 10:off + 12] = (v ^ 1).to_bytes(2, "little", signed=True)
    (mut3 / "weights.bin").write_bytes(bytes(blob))
    with pytest.raises(IsegError, match=r"MISMATCH .* layer 0 patch_embed\+embed \[embed\] at flat index 5:"):
        check_csim(mut3, ckpt, "1")
