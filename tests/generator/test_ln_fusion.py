"""The encoder's final LayerNorm fused into the decoder's first GEMM (dec.proj / dec.head) although that GEMM
reads only rows 1..N+1 of it (the cls row is dropped by a view): the fusion rule, the windowed layer-table row
and its trace, the C-simulation bit-exact and strict on the computed rows, and its cycles = the estimate."""

from __future__ import annotations

import re
import shutil
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from iseg.errors import IsegError
from iseg.generator import estimate as est
from iseg.generator.cli import check_csim, generate
from iseg.generator.csim import CsimLibrary, build
from iseg.graph import Act, LayerNorm, Linear, SliceRows, build_graph
from iseg.random_model import PRESETS, calibration_image

from .conftest import build_projects, make_ckpt, write_config

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "hls"))
from _hls_harness import OP_LAYERNORM, OP_LINEAR, Blob, Harness, Scratch, layer, ln_mean  # noqa: E402
from _hls_harness import build as build_harness  # noqa: E402

BASE = replace(PRESETS["tiny"], layers=1, dec_layers=1)
# the harness's TestCfg (tests/hls/harness.cpp), as in test_estimate.py
HARNESS_SHAPE = est.ArrayShape(rows=4, cols=8, pack=2, out_lanes=4, ln_lanes=4, sm_lanes=3, axi_bytes=8, s_lanes=5)


# ---------------------------------------------------------------------------------------------
# the rule (estimate.ln_fusions) and the plan's table rows
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("decoder,head", [("mask", "dec.proj"), ("linear", "dec.head")])
def test_final_norm_is_fused_on_its_window(decoder: str, head: str) -> None:
    spec = replace(PRESETS["tiny"], decoder=decoder)
    g = build_graph(spec)
    fus = est.ln_fusions(g)
    n = spec.n_patches
    assert fus["enc.norm"] == ((head, 1, n),)
    blocks = [f"enc.{i}" for i in range(spec.layers)] + ([f"dec.{j}" for j in range(spec.dec_layers)]
                                                          if decoder == "mask" else [])
    for p in blocks:  # the full-window fusions of every block are kept
        t = g.acts[f"{p}.ln1"].shape[0]
        assert fus[f"{p}.ln1"] == ((f"{p}.qkv", 0, t),) and fus[f"{p}.ln2"] == ((f"{p}.fc1", 0, t),)
    # dec.norm: dec.proj_patch reads rows 0..N and dec.proj_classes rows N..N+k, the next two ops past the views:
    # a window in each; dec.mask_norm feeds the head, no Linear
    if decoder == "mask":
        assert fus["dec.norm"] == (("dec.proj_patch", 0, n), ("dec.proj_classes", n, spec.n_cls))
    assert "dec.mask_norm" not in fus
    costs = {c.name: c for c in est.op_costs(g, HARNESS_SHAPE)}
    assert costs["enc.norm"].kind == "fused" and costs["enc.norm"].cycles == 0


@pytest.mark.parametrize("start,stop", [(0, None), (0, 1)])
def test_no_fusion_when_another_op_reads_outside_the_window(start: int, stop: int | None) -> None:
    """Another op reading the cls row of enc.norm (all of it, or the cls row alone through a view) forbids it."""
    spec = replace(PRESETS["tiny"], decoder="linear")
    g = build_graph(spec)
    t, d = g.acts["enc.norm"].shape
    stop = t if stop is None else stop
    src = "enc.norm"
    if (start, stop) != (0, t):
        src = g.add(SliceRows("x.cls", ("enc.norm",), "x.cls", start=start, stop=stop), Act("x.cls", (stop, d), 8))
    g.add(Linear("x.lin", (src,), "x.lin", rows=stop - start, k=d, n=3, weight="x.w", rq="x.rq"),
          Act("x.lin", (stop - start, 3), 8))
    assert "enc.norm" not in est.ln_fusions(g)
    assert est.ln_fusions(g)["enc.0.ln1"] == (("enc.0.qkv", 0, t),)
    # a 16-bit LayerNorm is never fused (the loader feeds the array int8), even right before a full-width Linear
    # that reads all of it; the same pair with an 8-bit LayerNorm is (the control)
    for bits in (8, 16):
        g2 = build_graph(spec)
        src = g2.ops[[o.name for o in g2.ops].index("enc.norm")].inputs[0]
        g2.add(LayerNorm("x.ln", (src,), "x.ln", rq="x.ln", bits=bits), Act("x.ln", (t, d), bits))
        g2.add(Linear("x.lin", ("x.ln",), "x.lin", rows=t, k=d, n=3, weight="x.w", rq="x.rq"), Act("x.lin", (t, 3), 8))
        assert ("x.ln" in est.ln_fusions(g2)) == (bits == 8)


@pytest.mark.parametrize("case", ["two", "gap", "reader_after", "overlap"])
def test_windows_in_consecutive_linears(case: str) -> None:
    """A LayerNorm read through two views by the two Linears right after it is fused into both, a window each;
    not when another op comes between them, nor when an op after them reads a row outside their windows. Two
    windows that overlap are each computed (a LayerNorm is row-wise: both agree on the shared rows)."""
    spec = replace(PRESETS["tiny"], decoder="linear")
    g = build_graph(spec)
    t, d = g.acts["enc.norm"].shape
    src = g.ops[[o.name for o in g.ops].index("enc.norm")].inputs[0]
    g.add(LayerNorm("x.ln", (src,), "x.ln", rq="x.ln", bits=8), Act("x.ln", (t, d), 8))
    cut = 3
    b0 = 1 if case == "overlap" else cut
    g.add(SliceRows("x.a", ("x.ln",), "x.a", start=0, stop=cut), Act("x.a", (cut, d), 8))
    g.add(SliceRows("x.b", ("x.ln",), "x.b", start=b0, stop=t), Act("x.b", (t - b0, d), 8))
    g.add(Linear("x.la", ("x.a",), "x.la", rows=cut, k=d, n=3, weight="x.w", rq="x.rq"), Act("x.la", (cut, 3), 8))
    if case == "gap":
        g.add(Linear("x.mid", ("enc.norm",), "x.mid", rows=t, k=d, n=3, weight="x.w", rq="x.rq"),
              Act("x.mid", (t, 3), 8))
    g.add(Linear("x.lb", ("x.b",), "x.lb", rows=t - b0, k=d, n=5, weight="x.w", rq="x.rq"),
          Act("x.lb", (t - b0, 5), 8))
    if case == "reader_after":
        g.add(LayerNorm("x.all", ("x.ln",), "x.all", rq="x.all", bits=8), Act("x.all", (t, d), 8))
    fus = est.ln_fusions(g)
    if case in ("gap", "reader_after"):
        assert "x.ln" not in fus
    else:
        assert fus["x.ln"] == (("x.la", 0, cut), ("x.lb", b0, t - b0))
        costs = {c.name: c for c in est.op_costs(g, HARNESS_SHAPE)}
        plain = est.gemm_cycles(HARNESS_SHAPE, t - b0, d, 5, bias=False, rq_tab=False, gelu=False,
                                prefetch_bytes=0)[0]
        assert costs["x.ln"].cycles == 0 and costs["x.lb"].cycles > plain  # each Linear pays its window's norm


def _engine_pairs(layers) -> set[tuple[str, str, int, int]]:
    """hls/engine.h ln_fusable, on the plan's table rows: (LayerNorm, LINEAR, first row, rows) of every fused pair."""
    out = set()
    for r, nx in zip(layers, layers[1:], strict=False):
        a, b = dict(r.fields), dict(nx.fields)
        if r.op == "LAYERNORM" and a["out_bits"] == "8" and nx.op == "LINEAR" and b["in"] == a["out"] \
                and b["in_stride"] == a["out_stride"] and b["K"] == a["N"] and b["T"] == a["T"]:
            out.add((r.ops[0], nx.ops[0], r.trace.row0, r.trace.rows))
    return out


def _engine_fuses(layers) -> set[str]:
    return {ln for ln, _, _, _ in _engine_pairs(layers)}


@pytest.mark.parametrize("decoder", ["mask", "linear"])
def test_plan_windows_the_layernorm_row(decoder: str, tmp_path: Path) -> None:
    from iseg.checkpoint import load
    from iseg.generator.config import load_config
    from iseg.generator.plan import make_plan

    spec = replace(BASE, decoder=decoder)
    ckpt = make_ckpt(tmp_path, spec, seed=2)
    plan = make_plan(load_config(write_config(tmp_path, ckpt)), load(ckpt))
    g = build_graph(spec)
    # the engine fuses exactly the estimate's pairs, on its windows
    assert _engine_pairs(plan.layers) == {(ln, *w) for ln, ws in est.ln_fusions(g).items() for w in ws}
    lns = [r for r in plan.layers if r.op == "LAYERNORM"]
    assert len(lns) == len({r.ops[0] for r in lns}) + (decoder == "mask")  # dec.norm: a row per window
    rows = {r.ops[0]: r for r in plan.layers}
    ln, nxt = rows["enc.norm"], plan.layers[rows["enc.norm"].index + 1]
    f = {k: int(v) for k, v in ln.fields if k in ("T", "N", "in", "in_stride", "out", "out_stride")}
    n, d = spec.n_patches, spec.dim
    buf = {b.name: b for b in plan.buffers}
    res = int(dict(plan.layers[ln.index - 1].fields)["out"])  # the residual stream the norm reads (i16), row 0
    assert f["T"] == n and f["N"] == d
    assert f["in"] == res + f["in_stride"] * 2 and f["out"] == buf["enc.norm"].offset + f["out_stride"]
    assert nxt.ops[0] == ("dec.proj" if decoder == "mask" else "dec.head")
    assert (ln.trace.name, ln.trace.row0, ln.trace.rows, ln.trace.cols) == ("enc.norm", 1, n, d)
    assert rows["enc.0.ln1"].trace.row0 == 0 and rows["enc.0.ln1"].trace.rows == n + 1


def _overlapping_fusions(layers) -> list[tuple[str, str]]:
    """The fused (LAYERNORM, LINEAR) row pairs whose LINEAR output bytes overlap the LayerNorm's input bytes
    (other than an exact in-place update: same offset, same byte stride; hls/schedule.h gemm_begin ISEG_CHECK)."""
    bad = []
    fused = _engine_fuses(layers)
    for r, nx in zip(layers, layers[1:], strict=False):
        if r.op != "LAYERNORM" or r.ops[0] not in fused:
            continue
        a = {k: int(v) for k, v in r.fields if k in ("in", "in_stride")}
        b = {k: int(v) for k, v in nx.fields if k in ("T", "K", "N", "out", "out_stride", "out_bits")}
        ob = b["out_bits"] // 8
        out_end = b["out"] + ((b["T"] - 1) * b["out_stride"] + b["N"]) * ob
        in_end = a["in"] + ((b["T"] - 1) * a["in_stride"] + b["K"]) * 2
        in_place = b["out"] == a["in"] and b["out_stride"] * ob == 2 * a["in_stride"]
        if not in_place and b["out"] < in_end and a["in"] < out_end:
            bad.append((r.ops[0], nx.ops[0]))
    return bad


# models whose fused LayerNorm input dies at the norm (the encoder's final norm): before the fix the planner
# freed it there and allocated the LINEAR's output over it, so the output stage overwrote input rows the
# loader had not read yet (131 classes: a MISMATCH in enc.norm; fewer classes only by luck of the timing)
BIG_N = {
    "linear_131": replace(PRESETS["tiny"], decoder="linear", n_cls=131, patch=4, layers=1),
    "linear_64": replace(PRESETS["tiny"], decoder="linear", n_cls=64, patch=4, layers=1),
    "mask_wide": replace(PRESETS["tiny"], patch=4, layers=1, dec_layers=1, dec_dim=192, dec_heads=3,
                         dec_mlp_dim=192),
    "mask_tiny": replace(PRESETS["tiny"], patch=4, layers=1, dec_layers=1),
}


@pytest.mark.parametrize("name", sorted(BIG_N))
def test_fused_layernorm_input_outlives_its_linear(name: str, tmp_path: Path) -> None:
    from iseg.checkpoint import load
    from iseg.generator.config import load_config
    from iseg.generator.plan import make_plan

    ckpt = make_ckpt(tmp_path, BIG_N[name], seed=0)
    plan = make_plan(load_config(write_config(tmp_path, ckpt, array={"rows": 8, "cols": 16})), load(ckpt))
    assert "enc.norm" in _engine_fuses(plan.layers)
    assert _overlapping_fusions(plan.layers) == []


@pytest.mark.csim
@pytest.mark.skipif(shutil.which("g++") is None, reason="g++ not installed")
@pytest.mark.parametrize("name", ["linear_131", "mask_wide"])
def test_csim_big_n_after_fused_norm(name: str, tmp_path: Path) -> None:
    """The reported case (linear decoder, 131 classes, patch 4, array 8 x 16) and a mask-decoder analogue: bit-exact
    (the engine also refuses an output over the fused norm's input), and the counter = the estimate."""
    ckpt = make_ckpt(tmp_path, BIG_N[name], seed=0)
    cfg = write_config(tmp_path, ckpt, array={"rows": 8, "cols": 16}, outputs=["hls", "csim"])
    proj = generate(cfg)
    build(proj)
    assert check_csim(proj, ckpt, "1").startswith("csim PASS: 1 image(s)")
    lib = CsimLibrary(proj)
    lib.run_traced(calibration_image(BIG_N[name].image, 0))
    assert lib.cycles(-1) == lib.manifest["estimate"]["cycles"]


# ---------------------------------------------------------------------------------------------
# the C-simulation: bit-exact, strict on the computed rows, cycles = the estimate
# ---------------------------------------------------------------------------------------------
VARIANTS = {
    "mask": (replace(BASE, dim=32, heads=2, mlp_dim=64, dec_dim=32, dec_heads=2, dec_mlp_dim=64),
             {"rows": 4, "cols": 8}),
    "linear": (replace(BASE, decoder="linear", softmax="precise8", dim=48, heads=3, mlp_dim=80), None),
    "mask_odd": (replace(BASE, image=(24, 40), dim=48, heads=3, mlp_dim=80, dec_dim=24, dec_heads=3,
                         dec_mlp_dim=40, n_cls=7), {"rows": 6, "cols": 12}),
    "linear_odd": (replace(BASE, decoder="linear", image=(48, 32), dim=40, heads=2, mlp_dim=72, n_cls=6),
                   {"rows": 5, "cols": 12}),
}


@pytest.fixture(scope="module")
def projects(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Path, Path]]:
    return build_projects(tmp_path_factory, VARIANTS, "lnf", seed_offset=5)


@pytest.mark.csim
@pytest.mark.skipif(shutil.which("g++") is None, reason="g++ not installed")
@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_csim_bit_exact_and_cycles(name: str, projects) -> None:
    from iseg.checkpoint import load
    from iseg.reference import run

    proj, ckpt, cfg = projects[name]
    assert check_csim(proj, ckpt, "2").startswith("csim PASS: 2 image(s)")
    lib = CsimLibrary(proj)
    spec = VARIANTS[name][0]
    n = spec.n_patches
    entry = next(e for e in lib.trace_map if e["ops"] == ["enc.norm"])
    assert (entry["row0"], entry["rows"]) == (1, n)
    img = calibration_image(spec.image, 4)
    _, trace = lib.run_traced(img)
    _, ref = run(load(ckpt), img, trace=True)
    assert lib.trace_key(entry) == f"enc.norm[1:{n + 1}]"
    assert np.array_equal(trace[f"enc.norm[1:{n + 1}]"], ref["enc.norm"][1:])
    assert "enc.norm" not in trace  # the cls row is never computed, never compared
    # the engine's counter = the estimate: the fused norm's row counts 0, its GEMM row pays it
    est_of = {o.name: o.cycles for o in _plan_rows(cfg)}
    head = "dec.proj" if spec.decoder == "mask" else "dec.head"
    layer = {e["ops"][0]: e["layer"] for e in lib.trace_map}
    assert lib.cycles(layer["enc.norm"]) == est_of["enc.norm"] == 0
    if spec.decoder == "mask":  # dec.norm: a row per window, each fused into its projection, compared on its rows
        ents = [e for e in lib.trace_map if e["ops"] == ["dec.norm"]]
        assert [(e["row0"], e["rows"]) for e in ents] == [(0, n), (n, spec.n_cls)]
        for e in ents:
            assert np.array_equal(trace[lib.trace_key(e)], ref["dec.norm"][e["row0"]:e["row0"] + e["rows"]])
            assert lib.cycles(e["layer"]) == 0 and lib.trace_map[e["layer"] + 1]["ops"][0].startswith("dec.proj_")
    assert lib.cycles(layer[head]) == est_of[head] > 0
    assert lib.cycles(-1) == lib.manifest["estimate"]["cycles"]


def _plan_rows(cfg_path: Path):
    from iseg.checkpoint import load
    from iseg.generator.config import load_config
    from iseg.generator.plan import make_plan

    cfg = load_config(cfg_path)
    return make_plan(cfg, load(cfg.checkpoint)).op_estimates


@pytest.mark.csim
@pytest.mark.skipif(shutil.which("g++") is None, reason="g++ not installed")
def test_wrong_value_in_a_computed_row_is_caught(projects, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The comparison stays strict on the computed rows: one value of the window's last row changed in the
    trace, or the norm's requant table changed in weights.bin, is a MISMATCH naming enc.norm."""
    proj, ckpt, _ = projects["mask"]
    n, d = VARIANTS["mask"][0].n_patches, VARIANTS["mask"][0].dim
    key = f"enc.norm[1:{n + 1}]"
    real = CsimLibrary.run_traced

    def corrupt(self, image):
        labels, trace = real(self, image)
        trace[key][n - 1, d - 1] ^= 1
        return labels, trace

    monkeypatch.setattr(CsimLibrary, "run_traced", corrupt)
    with pytest.raises(IsegError, match=rf"MISMATCH .* layer \d+ enc\.norm \[enc\.norm\] at flat index "
                                        rf"{n * d - 1}: csim -?\d+, reference -?\d+"):
        check_csim(proj, ckpt, "1")
    monkeypatch.undo()
    # the same through the hardware path: channel 0's requant multiplier of enc.norm, negated
    mut = tmp_path / "mut"
    shutil.copytree(proj, mut)
    layout = (mut / "src" / "weights_layout.h").read_text()
    off = int(re.search(r"= (\d+);  // enc\.norm#rq:", layout).group(1))
    blob = bytearray((mut / "weights.bin").read_bytes())
    m = int.from_bytes(blob[off:off + 4], "little", signed=True)
    blob[off:off + 4] = (-m).to_bytes(4, "little", signed=True)
    (mut / "weights.bin").write_bytes(bytes(blob))
    with pytest.raises(IsegError, match=r"MISMATCH .* layer \d+ enc\.norm \[enc\.norm\] at flat index 0:"):
        check_csim(mut, ckpt, "1")


# ---------------------------------------------------------------------------------------------
# the counter on the harness, and the cycles saved by hand
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def harness(tmp_path_factory: pytest.TempPathFactory) -> Harness:
    return Harness(build_harness(tmp_path_factory.mktemp("lnf_hls")))


@pytest.mark.csim
@pytest.mark.parametrize("in_place", [False, True])
def test_engine_refuses_output_over_the_fused_norm_input(harness: Harness, in_place: bool) -> None:
    """The LINEAR's output stage stores row block mb while the fused loader reads block mb + 1 of the norm's
    input: an output overlapping those input rows is refused (ISEG_CHECK), an exact in-place update is not."""
    rng = np.random.default_rng(7)
    t, c, n = 12, 16, 8
    blob, sc = Blob(), Scratch()
    x = sc.alloc("x", (t, c), np.int16, rng.integers(-3000, 3000, (t, c)))
    h = sc.alloc("h", (t, c), np.int8)
    sc.alloc("pad", (t, c), np.int16)
    ln = layer(op=OP_LAYERNORM, T=t, N=c, out_bits=8, in_=x, in_stride=c, out=h, out_stride=c,
               rq=blob.rq_table(1 << 30, 26, 3, c), **ln_mean(c))
    # i16 output, N = c / 2 columns: row stride 2 * n bytes; in place = the input's own stride (c elements)
    out, stride = (x, c) if in_place else (x + 64, n)
    lin = layer(op=OP_LINEAR, T=t, K=c, N=n, out_bits=16, in_=h, in_stride=c, out=out, out_stride=stride,
                w=blob.add_weights(rng.integers(-128, 128, (c, n)), harness.C),
                b=-1, rq=blob.rq_table(1 << 30, 30, 0, n))
    rc, _ = harness.run([ln, lin], blob.array(), sc.array())
    if in_place:
        assert rc == 0, harness.error()
    else:
        assert rc != 0 and "overlaps the fused LayerNorm's input" in harness.error()


@pytest.mark.csim
def test_cycles_saved_by_hand(harness: Harness) -> None:
    """A (9, 24) LayerNorm (cls + 8 patch rows) feeding an (8 x 24) . (24 x 8) LINEAR on rows 1..9, on the harness
    (R 4, C 8, 8-byte beats, 4 LayerNorm lanes, 4 output lanes: drain = ceil(32 / 4) = 8 steps, ISQRT 32, DIV 66: a
    block's statistics read AXI_BYTES / 2 = 4 channels a step, S = ceil(24/4) = 6 steps a row, its normalise 4 lanes,
    N = 6 a row; a row's statistics chain, mean 10 (the reciprocal product, the remainder's multiply, rounding: no
    divider) + variance 4 + square root 22 + reciprocal divider 34 = 70, issues 64 + 8 steps after the row's sums
    close, and the row's normalise starts when it is done or the row before is, beside the later rows' stats: row 0
    at 5 + 72 + 70 = 147, the last at 147 + 3 * 6, done at 171 = a block (172 when the normalise waited for every
    row's stats: 4 * 12 + the 124 steps the chain exceeded of 3 * 6); 16-byte records on 8-byte beats take 2 steps
    each). Loop depths (hls/compat.h): a loop that reads m_axi pays READ = 16 + 64 per entry, a pass of
    the engine loop ENGINE = 16 + max(64, 70) = 86 (the chain beside the read); the sequencer 8 per call (a pass's,
    and the one that ends the layer). Before:
    the norm ran alone on all 9 rows, then the LINEAR; now only the 8 rows the LINEAR reads are normalised, in its
    loader. Hand-worked:
      standalone norm   on the loader alone: consts 24 records x 2 + 80 = 128; 3 row blocks of
                        171 steps, one pass: + 86; 2 calls                 = 128 + 513 + 86 + 16 = 743
      plain LINEAR      consts: biases min(8 / 4, 4) = 2 per step ceil(8/2) + 80 = 84, rq records 8 x 2 + 80 = 96:
                        180; A prologue 4 * ceil(24/8) + 86 = 98 (8 bytes per step: two words of a row bank);
                        2 row blocks x 1 tile, a pass each (24 - 12 < 86: gemm_pass_blocks):
                        max(24, A share 12) + max(24, 8) + 2 x 86 = 220; tail 8 + 86 = 94; 5 calls = 40
                        -> 180 + 98 + 220 + 94 + 40                                        = 632
      fused LINEAR      consts 180 + 24 records x 2 + 80 = 308; LayerNorm block 171 steps, prologue 257; steps
                        max(24, 171) + max(24, 8) + 2 x 86 = 367; tail 94; 5 calls 40
                        -> 308 + 257 + 367 + 94 + 40                                       = 1066
      saved             743 + 632 - 1066                                                   = 309
    (the LINEAR's own weight prefetch before the layer loop, 24 rows of one 8-byte tile at min(8, C) = 8 bytes per
    step + 80 = 104, is paid both ways)."""
    rng = np.random.default_rng(5)
    t, c, n = 9, 24, 8
    blob, sc = Blob(), Scratch()
    x = sc.alloc("x", (t, c), np.int16, rng.integers(-3000, 3000, (t, c)))
    h = sc.alloc("h", (t, c), np.int8)
    y = sc.alloc("y", (t - 1, n), np.int8)
    rq_ln = blob.rq_table(1 << 30, 26, 3, c)
    full = layer(op=OP_LAYERNORM, T=t, N=c, out_bits=8, in_=x, in_stride=c, out=h, out_stride=c, rq=rq_ln,
                 **ln_mean(c))
    window = layer(op=OP_LAYERNORM, T=t - 1, N=c, out_bits=8, in_=x + 2 * c, in_stride=c, out=h + c, out_stride=c,
                   rq=rq_ln, **ln_mean(c))
    lin = layer(op=OP_LINEAR, T=t - 1, K=c, N=n, out_bits=8, in_=h + c, in_stride=c, out=y, out_stride=n,
                w=blob.add_weights(rng.integers(-128, 128, (c, n)), harness.C),
                b=blob.add(rng.integers(-99, 99, n), np.int32),
                rq=blob.rq_table(1 << 30, 38, 0, n))
    b = blob.array()
    before, after = sc.array(), sc.array()
    rc, _ = harness.run([full, lin], b, before)  # the old table: the norm is not fusable, runs alone
    assert rc == 0, harness.error()
    c_before = harness.last_cycles()
    rc, _ = harness.run([window, lin], b, after)
    assert rc == 0, harness.error()
    c_after = harness.last_cycles()
    assert np.array_equal(sc.get(after, "y"), sc.get(before, "y"))
    assert np.array_equal(sc.get(after, "h")[1:], sc.get(before, "h")[1:]) and not sc.get(after, "h")[0].any()
    prefetch = est.cdiv(c * 1 * 8, 8) + est.PIPE_READ  # one tile of C = 8 columns, 8 bytes per step
    plain, _ = est.gemm_cycles(HARNESS_SHAPE, t - 1, c, n, bias=True, rq_tab=True, gelu=False, prefetch_bytes=0)
    fused, _ = est.gemm_cycles(HARNESS_SHAPE, t - 1, c, n, bias=True, rq_tab=True, gelu=False, prefetch_bytes=0,
                               ln=True)
    assert est.LN_CHAIN == 10 + 4 + 22 + 34 == 70
    assert (est._layernorm(t, c, HARNESS_SHAPE), plain, fused, prefetch) == (743, 632, 1066, 104)
    assert c_before == 743 + 632 + 104 and c_after == 1066 + 104
    assert c_before - c_after == 309
