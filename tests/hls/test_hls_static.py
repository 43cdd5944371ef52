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


def _call_of(name: str) -> str:
    """The pattern of a call of function ``name`` (templated or not), not of a member or qualified name."""
    return rf"(?<![\w.>:]){name}\s*(<[^;()]*>)?\s*\("


def _body_from(code: str, start: int) -> str:
    """The text from ``start`` (just past an opening brace) to its matching closing brace."""
    depth, i = 1, start
    while depth and i < len(code):
        depth += {"{": 1, "}": -1}.get(code[i], 0)
        i += 1
    return code[start:i - 1]


def _self_calls(code: str) -> tuple[int, list[str]]:
    """(functions seen, those whose body names the function itself) in C++ source ``code``."""
    seen, rec = 0, []
    for m in re.finditer(r"\b([A-Za-z_]\w*)\s*\([^;{}()]*(?:\([^()]*\)[^;{}()]*)*\)\s*(?:const\s*)?\{", code):
        name = m.group(1)
        if name in {"if", "for", "while", "switch", "catch", "sizeof", "return"}:
            continue
        seen += 1
        if re.search(_call_of(name), _body_from(code, m.end())):
            rec.append(name)
    return seen, rec


@pytest.mark.parametrize("path", HEADERS, ids=lambda p: p.name)
def test_no_recursion(path):
    """No function calls itself (the call graph across headers is acyclic by inclusion order, and
    each function body must not name its own function)."""
    assert _self_calls(code_of(path))[1] == [], path.name


def test_recursion_scanner_sees_functions():
    """The scanner above would pass vacuously if its pattern stopped matching: it must see the library's
    functions (171 when this test was written) and catch a recursive one, templated or not."""
    assert sum(_self_calls(code_of(p))[0] for p in HEADERS) >= 150
    code = ("template <int N>\ninline int f(int x, const int (&a)[N]) {\n    return x > 0 ? f<N>(x - 1, a) : a[0];\n}\n"
            "int g(long y) const {\n    if (y) { return h(y); }\n    return 0;\n}\n")
    assert _self_calls(code) == (2, ["f"])


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


@pytest.mark.parametrize("path", [p for p in HEADERS if p.name != "compat.h"], ids=lambda p: p.name)
def test_pipelined_loops_are_port_checked(path):
    """Every pipelined loop says so with ISEG_PIPELINE(ITS_LABEL, II) (compat.h: the PIPELINE pragma in
    synthesis, one iteration of the C-sim memory port check), never with a bare pragma the check cannot see."""
    code = code_of(path)
    assert "HLS PIPELINE" not in code, f"{path.name}: a PIPELINE pragma outside ISEG_PIPELINE"
    lines = code.splitlines()
    for i, line in enumerate(lines):
        m = re.match(r"(\s*)ISEG_PIPELINE(?:_AS)?\((\w+), ([12])(?:, [^;]+)?\);", line)
        if not m or path.name == "iseg_ports.h":
            continue
        j = next(j for j in range(i - 1, -1, -1) if re.match(r"\s*for\s*\(", lines[j]))
        label = next(p for p in reversed(lines[:j]) if p.strip()).strip().rstrip(":")
        assert label == m.group(2), f"{path.name}:{i + 1}: ISEG_PIPELINE({m.group(2)}) in loop {label}"


def test_port_checked_buffers_have_their_pragmas():
    """Each buffer the C-sim port check counts (ISEG_PORTS next to it) has its banking stated where it is declared:
    GemmBuffers' and AttSm's in engine.h (the statics g and sm), with the factor its bank function uses (so the
    check and the pragma describe the same memories)."""
    hls_dir = Path(HLS_DIR)
    gemm, att = (hls_dir / "gemm.h").read_text(), (hls_dir / "attention.h").read_text()
    engine = (hls_dir / "engine.h").read_text()
    want = {("g", "a"): "factor=kAWord", ("g", "w"): "dim=1 type=complete", ("g", "bias"): "factor=kOutLanes",
            ("g", "rq1"): "factor=kOutLanes", ("g", "lnrq"): "factor=kLnLanes",
            ("g", "gtab"): "dim=1 type=complete", ("sm", "s"): "factor=kSmLanes", ("sm", "q"): "factor=kAWord"}
    declared = {("g", b) for b in re.findall(r"ISEG_PORTS\((\w+),", gemm)}
    declared |= {("sm", b) for b in re.findall(r"ISEG_PORTS\((\w+),", att)}
    assert declared == set(want)
    for (obj, buf), factor in want.items():
        pragmas = re.findall(rf"ISEG_PRAGMA\(HLS ARRAY_(?:PARTITION|RESHAPE) variable={obj}\.{buf} ([^)]*)\)", engine)
        assert any(factor in p for p in pragmas), (obj, buf, pragmas)
    assert "return col % Cfg::OUT_LANES;" in gemm and "return c % Cfg::LN_LANES;" in gemm
    # the GELU table: a single-port LUTRAM copy per output lane (t_bank = lane), written in its own loop
    assert "static int t_bank(int lane) { return lane; }" in gemm
    assert "BIND_STORAGE variable=g.gtab type=ram_1p impl=lutram" in engine
    assert "key % Cfg::SM_LANES" in att and "kAWord = Cfg::A_WORD" in engine and "kSmLanes = Cfg::SM_LANES" in engine


def call_sites(name: str) -> list[str]:
    """Where the synthesisable headers call function ``name`` (its definition excluded): 'file:line' each."""
    sites = []
    for path in HEADERS:
        if path.name in (STREAM_STANDIN, "iseg_ports.h", "csim_api.h"):
            continue
        for i, line in enumerate(code_of(path).splitlines()):
            for m in re.finditer(_call_of(name), line):
                before = line[:m.start()].strip()
                if re.search(r"(\bvoid|\bbool|\bint|\blong|\b[A-Z]\w*(<\w+>)?|\w+\s*&|inline|int64_t|int32_t)$",
                             before):
                    continue  # a definition or declaration: `void name(`, `Pass name(`, `ABankReq<Cfg> name(`
                sites.append(f"{path.name}:{i + 1}")
    return sites


@pytest.mark.parametrize("unit", ["engine_pass", "run_passes", "array_step", "acc_to_drain", "drain_lanes",
                                  "drain_values", "out_rq", "ln_step", "ln_norm", "a_beat", "att_q_beat",
                                  "att_o_lanes", "att_sm_reads", "att_sm_tick", "sm_reads", "sm_step", "gemm_begin"])
def test_each_unit_is_built_once(unit):
    """An HLS tool builds a function once per call site and every pipelined loop as a module of its own, sharing
    no operator between them. So the array, the Shiftmax unit, the LayerNorm loader, the output lanes and the
    loaders each have ONE call site, inside the one engine loop (schedule.h engine_pass), which itself has one
    (run_passes), called once (engine.h). Three call sites of the array used to mean three arrays. The GEMM and P.V
    output lanes share one requant per lane (out_rq)."""
    sites = call_sites(unit)
    assert len(sites) == 1, f"{unit} is called at {sites}"
    want = {"run_passes": "engine.h", "gemm_begin": "engine.h", "sm_step": "attention.h",
            "sm_reads": "attention.h"}.get(unit, "schedule.h")
    assert sites[0].startswith(want + ":"), sites


def test_call_site_scanner_counts_calls():
    """The scanner behind test_each_unit_is_built_once: it finds the known two call sites of tp_out (MASK_PRODUCT's
    tp_step, and attention's K/V loader in the engine loop, kv_req), the one of tp_step (MASK_PRODUCT's loop) and the
    two of prefetch_beat (the first prefetch, the engine loop)."""
    assert sorted(s.split(":")[0] for s in call_sites("tp_out")) == ["gemm.h", "schedule.h"]
    assert [s.split(":")[0] for s in call_sites("tp_step")] == ["gemm.h"]
    assert sorted(s.split(":")[0] for s in call_sites("prefetch_beat")) == ["engine.h", "schedule.h"]


def test_layer_desc_layout(hls):
    assert hls.lib.h_sizeof_layer_desc() == ctypes.sizeof(LayerDesc) == 192  # 28 int32, GeluParams, 2 RqDesc


# ---------------------------------------------------------------------------------------------
# lane multipliers (hls/mul.h) against the estimate's list (generator/estimate.py MUL_SITES)
# ---------------------------------------------------------------------------------------------
_FUNC_DEF = re.compile(r"^(?:inline\s+|static\s+|constexpr\s+)*[A-Za-z_][\w:<>,\s&*]*?\b([a-z_]\w*)\s*\(")


def _template_args(code: str, i: int) -> tuple[list[str], int]:
    """The top-level template arguments of the ``<...>`` opening at ``code[i]``, and the index after it."""
    depth, j, parts, cur = 0, i, [], ""
    while True:
        ch = code[j]
        if ch == "<":
            depth += 1
            if depth == 1:
                j += 1
                continue
        elif ch == ">":
            depth -= 1
            if depth == 0:
                parts.append(cur.strip())
                return parts, j + 1
        elif ch == "," and depth == 1:
            parts.append(cur.strip())
            cur = ""
            j += 1
            continue
        cur += ch
        j += 1


def multiplier_calls() -> list[tuple[str, str, str, str]]:
    """(enclosing function, binding, A, B) of every mul_dsp / mul_fabric / mul_lane call in hls/ (mul.h
    itself defines them)."""
    out = []
    for path in HEADERS:
        if path.name == "mul.h":
            continue
        code = code_of(path)
        for m in re.finditer(r"\bmul_(dsp|fabric|lane)\s*<", code):
            args, _ = _template_args(code, m.end() - 1)
            lines = code[:m.start()].splitlines()
            func = next(f.group(1) for ln in reversed(lines) if (f := _FUNC_DEF.match(ln))
                        and not re.match(r"(template|struct|enum|typedef|namespace|return)\b", ln))
            out.append((func, m.group(1), args[0], args[1]))
    return out


def test_multiplier_calls_match_the_estimate():
    """Every lane multiplier in hls/ is in generator/estimate.py's MUL_SITES with the same binding and width
    arguments, and every entry of MUL_SITES exists in the code (so unit_costs counts what the code builds)."""
    from collections import Counter

    from iseg.generator.estimate import MUL_SITES

    code = Counter(multiplier_calls())
    table = Counter({(f, impl, a, b): n for f, impl, a, b, n in MUL_SITES})
    assert code == table
    assert len(code) >= 10  # the parser found the calls


def test_bind_op_only_in_mul_h():
    """The only BIND_OP pragmas: mul_dsp's impl=dsp, mul_fabric's impl=fabric and the packed array multipliers'
    impl=dsp (mul.h mul_pack2, and each product of mul_pack2_chain, the K unroll's chain)."""
    pragmas = {p.name: re.findall(r"BIND_OP\s+variable=(\w+)\s+op=mul\s+impl=(\w+)", code_of(p)) for p in HEADERS}
    assert {k: v for k, v in pragmas.items() if v} == {"mul.h": [("p", "dsp"), ("p", "fabric"), ("p", "dsp"),
                                                                 ("m", "dsp")]}
    code = code_of(Path(HLS_DIR) / "mul.h")
    assert re.search(r"mul_dsp\(.*?BIND_OP variable=p op=mul impl=dsp", code, re.S)
    assert re.search(r"mul_fabric\(.*?BIND_OP variable=p op=mul impl=fabric", code, re.S)


def test_widths_match_the_estimate():
    """mul.h's structural widths and DefaultWidths are the estimate's STRUCT_WIDTHS and LaneWidths()."""
    from iseg.generator.estimate import STRUCT_WIDTHS, LaneWidths

    code = code_of(Path(HLS_DIR) / "mul.h")
    consts = {k: int(v) for k, v in re.findall(r"static constexpr int (k\w+) = (\d+);", code)}
    assert consts == STRUCT_WIDTHS
    body = re.search(r"struct DefaultWidths \{(.*?)\};", code, re.S).group(1)
    defaults = {k: int(v) for k, v in re.findall(r"static constexpr int (\w+) = (\d+);", body)}
    assert defaults == dict(LaneWidths().items()) | {"SMALL_FABRIC": 0}
    assert consts["kShexpQBits"] == (int(re.search(r"kShexpNMax = (\d+)", code_of(Path(HLS_DIR) / "shexp.h"))
                                         .group(1))).bit_length() + 1


def test_layernorm_chain_is_the_estimates():
    """The LayerNorm statistics chain of hls/gemm.h (mean by reciprocal, variance, square root, the 1/sd divider)
    is generator/estimate.py's LN_CHAIN, term by term (the C-sim cycle tests see only their sum)."""
    from iseg.generator import estimate as est

    gemm, compat = code_of(Path(HLS_DIR) / "gemm.h"), code_of(Path(HLS_DIR) / "compat.h")
    ln, mul = code_of(Path(HLS_DIR) / "layernorm.h"), code_of(Path(HLS_DIR) / "mul.h")
    consts = {k: int(v) for k, v in re.findall(r"static constexpr int (k\w+) = (\d+);", gemm + compat + mul)}
    assert (consts["kLnMeanCycles"], consts["kLnVarCycles"], consts["kDivCycles"]) == (est.LN_MEAN, est.LN_VAR, est.DIV)
    # the square root's steps and the 1/sd divider follow from K <= 2047 (kLnKBits): var < 2047 * 2^32 < 2^43
    expr = {k: v.split() for k, v in re.findall(r"static constexpr int (kLn\w+|kIsqrtSteps) = ([^;]+);", ln + gemm)}
    assert expr["kLnVarBits"] == ["(kLnKBits", "-", "1)", "+", "32"]
    assert expr["kLnVarSteps"] == ["(kLnVarBits", "+", "1)", "/", "2"] and expr["kIsqrtSteps"] == ["kLnVarSteps"]
    assert expr["kLnDivCycles"] == ["32", "+", "2"]
    assert est.ISQRT == (consts["kLnKBits"] - 1 + 32 + 1) // 2 == 22 and est.LN_DIV == 32 + 2
    chain = re.search(r"static constexpr int kLnChain = ([^;]+);", gemm).group(1).split()
    assert chain == ["kLnMeanCycles", "+", "kLnVarCycles", "+", "kIsqrtSteps", "+", "kLnDivCycles"]
    assert est.LN_CHAIN == est.LN_MEAN + est.LN_VAR + est.ISQRT + est.LN_DIV == 70


def test_loop_depths_are_the_estimates():
    """The depth each pipelined loop pays per entry (hls/compat.h, docs/hls.md item 12) is the estimate's, term by
    term: the datapath, + the m_axi read latency in a loop that reads, + the LayerNorm chain in the engine loop."""
    from iseg.generator import estimate as est

    gemm, compat = code_of(Path(HLS_DIR) / "gemm.h"), code_of(Path(HLS_DIR) / "compat.h")
    consts = {k: int(v) for k, v in re.findall(r"static constexpr int (k\w+) = (\d+);", compat)}
    assert (consts["kPipeDepth"], consts["kMaxiLatency"]) == (est.PIPE, est.M_AXI_LATENCY)
    assert re.search(r"static constexpr int kReadDepth = ([^;]+);", compat).group(1).split() == \
        ["kPipeDepth", "+", "kMaxiLatency"]
    assert re.search(r"static constexpr int kEngineDepth = ([^;]+);", gemm).group(1).split() == \
        ["kPipeDepth", "+", "(kMaxiLatency", ">", "kLnChain", "?", "kMaxiLatency", ":", "kLnChain)"]
    assert re.search(r"static constexpr int kLnIssue = ([^;]+);", gemm).group(1).split() == ["kMaxiLatency", "+", "8"]
    assert est.LN_ISSUE == est.M_AXI_LATENCY + 8
    assert est.PIPE_READ == est.PIPE + est.M_AXI_LATENCY
    assert est.PIPE_ENGINE == est.PIPE + max(est.M_AXI_LATENCY, est.LN_CHAIN)
    # the sequencer's cycles per call, and that run_passes charges them per pass and once at the layer's end
    assert consts["kSeqSetup"] == est.SEQ_SETUP
    sched = code_of(Path(HLS_DIR) / "schedule.h")
    assert "ISEG_CYCLES(g.cycles, p.cycles + kSeqSetup);" in sched and "ISEG_CYCLES(g.cycles, kSeqSetup);" in sched


def test_reading_loops_charge_the_read_latency():
    """A function whose loop reads an m_axi beat (ISEG_BEAT_RD / ISEG_CACHE_RD) charges that loop's depth with the
    read latency (kReadDepth, or kEngineDepth for the engine's passes): a cycle count of kPipeDepth alone there would
    leave the 64 cycles each entry waits for its first beat out of the estimate. The sequencer's passes
    (schedule.h seq_next) run the engine loop, whose reads are in engine_pass: they charge kEngineDepth."""
    for path in sorted(Path(HLS_DIR).glob("*.h")):
        code = code_of(path)
        # top-level definitions: a line at column 0 that opens a function (template / inline / a return type)
        starts = [m.start() for m in re.finditer(r"^(?:template|inline|void|long|bool|int|Pass|\w+<)[^;]*?\(",
                                                 code, re.M)] + [len(code)]
        for a, b in zip(starts, starts[1:], strict=False):
            body = code[a:b]
            reads = re.search(r"ISEG_(?:BEAT|CACHE)_RD\(", body) is not None
            for m in re.finditer(r"ISEG_CYCLES\([^;]*;", body):
                charged = m.group(0)
                if "kPipeDepth" in charged and "kReadDepth" not in charged and "kEngineDepth" not in charged:
                    assert not reads, f"{path.name}: {charged} in a function that reads an m_axi port"
    sched = code_of(Path(HLS_DIR) / "schedule.h")
    # every pass but run_passes' placeholder (0 iterations, 0 cycles)
    passes = [x for x in re.findall(r"pass_of\(PM_\w+, [^;]*;", sched) if not x.endswith(", 0, 0);")]
    assert len(passes) >= 10 and all("kEngineDepth" in x for x in passes), passes


_LN_MEAN_PROG = r"""
#include <cstdio>
#include "layernorm.h"
template <int C>
void widths() { std::printf("%d %d %d\n", C, iseg::kLnSumBits<C>(), iseg::kLnMeanMBits<C>()); }
int main() {
    widths<1>(); widths<2>(); widths<3>(); widths<24>(); widths<192>(); widths<768>(); widths<1024>();
    widths<1025>(); widths<2047>();
    long long k, m, sh;  // ln_mean_ok of the rows on stdin
    while (std::scanf("%lld %lld %lld", &k, &m, &sh) == 3) std::printf("%d\n", iseg::ln_mean_ok(k, m, sh) ? 1 : 0);
    return 0;
}
"""


def test_mean_reciprocal_widths_and_table_check(tmp_path):
    """hls/layernorm.h against iseg.numerics.mean_reciprocal and the estimate: kLnSumBits / kLnMeanMBits are
    estimate._ln_sum_bits / _ln_mean_m_bits, and just wide enough for the folded sums and the reciprocals of every
    K <= CMAX; ln_mean_ok (check_layer) accepts numerics' (m, sh) for every K in 1..4096 and refuses m one off
    either way, another shift, K = 0 and K past numerics.MEAN_K_MAX."""
    import subprocess

    from iseg import numerics as nx
    from iseg.generator import estimate as est

    src = tmp_path / "m.cpp"
    src.write_text(_LN_MEAN_PROG)
    exe = tmp_path / "m"
    subprocess.run(["g++", "-std=c++14", "-O1", f"-I{HLS_DIR}", str(src), "-o", str(exe)], check=True)
    rows, want = [], []
    for k in range(1, 4097):
        m, sh = nx.mean_reciprocal(k)
        rows += [(k, m, sh), (k, m - 1, sh), (k, m + 1, sh), (k, m, sh + 2)]
        want += [1, 0, 0, 0]
    m, sh = nx.mean_reciprocal(nx.MEAN_K_MAX)
    rows += [(nx.MEAN_K_MAX, m, sh), (0, 1 << 15, 15), (nx.MEAN_K_MAX + 1, m, sh + 2)]
    want += [1, 0, 0]
    out = subprocess.run([str(exe)], input="".join(f"{k} {m} {sh}\n" for k, m, sh in rows), check=True,
                         capture_output=True, text=True).stdout.split("\n")
    for line in out[:9]:
        c, sum_bits, m_bits = map(int, line.split())
        assert (sum_bits, m_bits) == (est._ln_sum_bits(c), est._ln_mean_m_bits(c))
        top = max(nx.mean_reciprocal(k)[0] for k in range(1, c + 1))
        assert top.bit_length() + 1 == m_bits  # the widest m fits, with no bit to spare
        assert ((c << 15) - 1).bit_length() + 1 <= sum_bits  # the folded sum n <= K 2^15 - 1
    assert [int(v) for v in out[9:] if v] == want


_WIDTH_PROG = r"""
#include <cstdio>
#include "mul.h"
int main() {
    // exact products at the edges of the widths (also through ap_int with -DISEG_AP_INT)
    long long bad = 0;
    const int64_t a9[] = {-256, -255, -1, 0, 1, 200, 255};
    const int64_t b27[] = {-67108864, -5, 0, 7, 67108863};
    for (int64_t a : a9)
        for (int64_t b : b27) {
            if (iseg::mul_dsp<9, 27>(a, b) != a * b) ++bad;
            if (iseg::mul_fabric<9, 27>(a, b) != a * b) ++bad;
            if (iseg::mul_lane<9, 27, 1>(a, b) != a * b) ++bad;
        }
    if (iseg::mul_dsp<32, 32>(-2147483648LL, -2147483648LL) != 4611686018427387904LL) ++bad;
    int caught = 0;
    try { iseg::mul_dsp<9, 27>(256, 1); } catch (const iseg::CsimError&) { ++caught; }
    try { iseg::mul_fabric<8, 8>(3, -129); } catch (const iseg::CsimError&) { ++caught; }
    try { iseg::mul_dsp<9, 27>(-257, 1); } catch (const iseg::CsimError&) { ++caught; }
    std::printf("%lld %d\n", bad, caught);
    return 0;
}
"""


@pytest.mark.parametrize("ap_int", [False, True], ids=["int64", "ap_int"])
def test_narrow_multipliers_exact_and_checked(tmp_path, ap_int):
    """mul_dsp / mul_fabric give the exact product at the edges of their widths (native C-sim and the ap_int
    types of synthesis), and an operand outside its proven width stops the C-simulation (never wraps)."""
    import subprocess

    from iseg.generator.csim import ap_types_dir

    src = tmp_path / "w.cpp"
    src.write_text(_WIDTH_PROG)
    flags = ["-DISEG_AP_INT", f"-I{ap_types_dir()}"] if ap_int else []
    exe = tmp_path / "w"
    subprocess.run(["g++", "-std=c++14", "-O1", *flags, f"-I{HLS_DIR}", str(src), "-o", str(exe)], check=True)
    out = subprocess.run([str(exe)], check=True, capture_output=True, text=True).stdout.split()
    assert out == ["0", "3"]


_LN_ROOT_PROG = r"""
#include <cstdio>
#include "layernorm.h"
int main() {
    // sd = max(isqrt(var), 1) on kLnVarSteps digit steps and f = (2^31 - 1) // sd on the 32-bit divider, for the
    // variances on stdin; then the two checks at the widths' edges
    long long v;
    while (std::scanf("%lld", &v) == 1) {
        const long long sd = iseg::ln_sd(v);
        std::printf("%lld %lld\n", sd, (long long)iseg::ln_recip(sd));
    }
    int caught = 0;
    try { iseg::ln_sd(1LL << 44); } catch (const iseg::CsimError&) { ++caught; }
    try { iseg::ln_recip(1LL << 22); } catch (const iseg::CsimError&) { ++caught; }
    try { iseg::ln_recip(0); } catch (const iseg::CsimError&) { ++caught; }
    std::printf("caught %d %d %d\n", caught, iseg::kLnVarSteps, iseg::kLnSdBits);
    return 0;
}
"""


@pytest.mark.parametrize("ap_int", [False, True], ids=["int64", "ap_int"])
def test_layernorm_root_and_reciprocal_at_their_widths(tmp_path, ap_int):
    """The LayerNorm chain's narrowed square root (22 digit steps: var < 2047 * (2^16 - 1)^2 < 2^43) and 1/sd divider
    (32 bits) are numerics.md's max(isqrt(var), 1) and (2^31 - 1) // sd on every variance a K <= 2047 row can have,
    its extremes included, in C-simulation's int64 and in synthesis' ap_int; past their widths C-simulation stops."""
    import math
    import subprocess

    import numpy as np

    from iseg.generator.csim import ap_types_dir

    src = tmp_path / "r.cpp"
    src.write_text(_LN_ROOT_PROG)
    flags = ["-DISEG_AP_INT", f"-I{ap_types_dir()}"] if ap_int else []
    exe = tmp_path / "r"
    subprocess.run(["g++", "-std=c++14", "-O1", *flags, f"-I{HLS_DIR}", str(src), "-o", str(exe)], check=True)
    top = 2047 * (2**16 - 1) ** 2  # the largest variance: K 2047, every |x - mean| = 2^16 - 1
    assert top < 2**43
    rng = np.random.default_rng(7)
    vs = [0, 1, 2, 3, 4, 8, 9, 2**20, 2**32 - 1, 2**32, top - 1, top, 2**43 - 1, 2**44 - 1]
    vs += [int(x) ** 2 + d for x in rng.integers(1, 2**21, 200) for d in (-1, 0, 1)]
    vs += [int(x) for x in rng.integers(0, 2**44, 300, dtype=np.int64)]
    out = subprocess.run([str(exe)], input="".join(f"{v}\n" for v in vs), check=True, capture_output=True,
                         text=True).stdout.splitlines()
    for v, line in zip(vs, out, strict=False):
        sd = max(math.isqrt(v), 1)
        assert line.split() == [str(sd), str((2**31 - 1) // sd)], v
    assert out[len(vs)] == "caught 3 22 22"


_ACC_PROG = r"""
#include <cstdio>
#include <stdint.h>
#include <ap_int.h>
int main() {
    // the synthesis acc_t (compat.h acc_bits: ap_int<N>) against the C-sim int32: int8 x int8 products whose
    // partial sums leave 16 bits (6 x 16384 = 98304) while the finished sum fits (98304 - 5 x 16256 = 17024)
    ap_int<16> narrow = 0;
    int32_t wide = 0, peak = 0;
    for (int k = 0; k < 11; ++k) {
        const int32_t p = k < 6 ? int32_t(-128) * int32_t(-128) : int32_t(127) * int32_t(-128);
        narrow += p;
        wide += p;
        if (wide > peak) peak = wide;
    }
    std::printf("%d %d %d\n", int(narrow), wide, peak);
    return 0;
}
"""


def test_narrow_accumulator_wraps_to_the_exact_sum(tmp_path):
    """The array's accumulators are ap_int<Widths::ARR> in synthesis and int32 in C-simulation (compat.h
    acc_bits): the same numbers whenever the finished sum fits, which acc_to_drain checks, even when a
    partial sum does not (addition modulo 2^N), compiled with the real ap_int headers."""
    import subprocess

    from iseg.generator.csim import ap_types_dir

    src = tmp_path / "acc.cpp"
    src.write_text(_ACC_PROG)
    exe = tmp_path / "acc"
    subprocess.run(["g++", "-std=c++14", "-O1", f"-I{ap_types_dir()}", str(src), "-o", str(exe)], check=True)
    narrow, wide, peak = map(int, subprocess.run([str(exe)], check=True, capture_output=True, text=True).stdout.split())
    assert narrow == wide == 17024 and peak == 98304 > (1 << 15) - 1


# ---------------------------------------------------------------------------------------------
# Shiftmax variant codes: hls/shiftmax.h enum SmVariant = generator/plan.py SM_VARIANT_CODES
# ---------------------------------------------------------------------------------------------
def sm_variant_enum() -> dict[str, int]:
    """``enum SmVariant`` of hls/shiftmax.h as {enumerator: value} (every enumerator spelled ``NAME = int``)."""
    code = code_of(Path(HLS_DIR) / "shiftmax.h")
    m = re.search(r"\benum\s+SmVariant\b[^{]*\{([^}]*)\}", code)
    assert m, "hls/shiftmax.h: no enum SmVariant"
    items = [s.strip() for s in m.group(1).split(",") if s.strip()]
    out = {}
    for it in items:
        em = re.fullmatch(r"(SM_\w+)\s*=\s*(\d+)", it)
        assert em, f"enum SmVariant: {it!r} has no explicit value"
        out[em.group(1)] = int(em.group(2))
    return out


def test_sm_variant_codes_match_the_enum():
    """The generator's (and the tests') variant codes are the C++ enum's: SM_<NAME> = code for every variant,
    no enumerator left over, and sm_variant_ok accepts exactly those enumerators."""
    from iseg.generator.plan import SM_VARIANT_CODES

    enum = sm_variant_enum()
    assert enum == {f"SM_{name.upper()}": code for name, code in SM_VARIANT_CODES.items()}
    ok = re.search(r"\bsm_variant_ok\s*\([^)]*\)\s*\{([^}]*)\}", code_of(Path(HLS_DIR) / "shiftmax.h")).group(1)
    assert set(re.findall(r"\bSM_\w+", ok)) == set(enum)


def test_sm_variant_codes_cover_the_numerics():
    """SM_VARIANT_CODES names exactly the variants of iseg.numerics.SHIFTMAX_VARIANTS, with distinct codes."""
    from iseg import numerics as nx
    from iseg.checkpoint import SOFTMAX_VARIANTS
    from iseg.generator.plan import SM_VARIANT_CODES

    assert set(SM_VARIANT_CODES) == set(nx.SHIFTMAX_VARIANTS) == set(SOFTMAX_VARIANTS)
    assert len(set(SM_VARIANT_CODES.values())) == len(SM_VARIANT_CODES)


def function_body(code: str, name: str) -> str:
    """The body of the (first) definition of function ``name`` in ``code`` (comments already stripped)."""
    m = re.search(rf"\b{name}\s*\([^;{{]*\)\s*\{{", code)
    assert m, name
    return _body_from(code, m.end())


# run-time operands an address is scaled by: a row stride, a tile's K or d_head, an element size
_STRIDE = (r"\*\s*(?:long\()?\s*(?:l\.(?:stride|sstride|dstride|st|bytes)"
           r"|d\.(?:out_stride|in2_stride|in_stride|K|d_head)|dh|bytes)\b")


def _runtime_scaled(line: str) -> bool:
    """A product of two run-time values scaling an address: a _STRIDE multiply whose left operand is not a
    compile-time constant (a literal, or the array's R: shift-add networks, not multipliers)."""
    for m in re.finditer(_STRIDE, line):
        if not re.search(r"(?:\b\d+|\bR\)?|Cfg::\w+\)?)\s*$", line[:m.start()]):
            return True
    return False


@pytest.mark.parametrize("unit", [("schedule.h", "engine_pass"), ("gemm.h", "a_beat"), ("gemm.h", "ln_step"),
                                  ("gemm.h", "ln_norm"), ("gemm.h", "drain_lanes"), ("gemm.h", "drain_values"),
                                  ("gemm.h", "prefetch_beat"), ("attention.h", "att_q_beat"),
                                  ("attention.h", "att_o_lanes"), ("attention.h", "att_sm_tick"),
                                  ("gemm.h", "tp_out"), ("gemm.h", "tp_req"), ("gemm.h", "tp_take"),
                                  ("schedule.h", "kv_req"), ("schedule.h", "kv_take")])
def test_engine_loop_scales_no_address_at_run_time(unit):
    """The units inside the engine loop keep running addresses (a pointer or offset advanced a stride per row,
    a tile base advanced K per tile), so the loop holds no run-time row * stride multiplier: each would be a 64-bit
    product on DSPs that no unit of the estimate charges. The one exception is the lanes that straddle rows,
    which only the unit-test harness builds (`one_row ?` is a constexpr true in every generated Cfg)."""
    path, name = unit
    body = function_body(code_of(Path(HLS_DIR) / path), name)
    found = [ln.strip() for ln in body.splitlines() if _runtime_scaled(ln) and "one_row ?" not in ln]
    assert not found, f"{name}: {found}"


def test_stride_scanner_sees_a_multiply():
    """The pattern behind the test above matches the multiplies it was written to keep out."""
    for line in ["l.src + long(l.r) * l.stride + l.kb", "long(pd.t0 + r0) * d.out_stride", "(out_row + col) * bytes",
                 "long(nt) * d.K + s", "h * dh + pd.c0"]:
        assert _runtime_scaled(line), line
    for line in ["l.src += l.stride", "l.srow += 2 * l.sstride", "ps.ln.src += long(R) * d.in_stride * 2"]:
        assert not _runtime_scaled(line), line


# ---------------------------------------------------------------------------------------------
# the packed array multiplier (hls/mul.h mul_pack2): two products of one DSP48E2, exact
# ---------------------------------------------------------------------------------------------
_PACK2_PROG = r"""
#include <cstdio>
#include <stdint.h>
#include "mul.h"
static long bad = 0, n = 0;
static void one(int ah, int al, int w) {
    const iseg::Pack2 p = iseg::mul_pack2(ah, al, w);
    ++n;
    if (p.hi != ah * w || p.lo != al * w) ++bad;
}
int main() {
#ifdef EXHAUSTIVE  // every pair of operands in [-128, 255] (int8 and u8) and every int8 w
    for (int ah = -128; ah < 256; ++ah)
        for (int al = -128; al < 256; ++al)
            for (int w = -128; w < 128; ++w) one(ah, al, w);
#else  // the edges of every operand against every w, and a pseudo-random sample
    const int e[] = {-128, -127, -2, -1, 0, 1, 2, 126, 127, 128, 129, 254, 255};
    for (int ah : e)
        for (int al : e)
            for (int w = -128; w < 128; ++w) one(ah, al, w);
    uint32_t x = 12345;
    for (int i = 0; i < 200000; ++i) {
        x = x * 1664525u + 1013904223u;
        one(int((x >> 23) % 384) - 128, int(((x >> 14) & 511) % 384) - 128, int((x >> 6) & 255) - 128);
    }
#endif
    std::printf("%ld %ld\n", n, bad);
    return 0;
}
"""


@pytest.mark.parametrize("view", ["csim", "synthesis"])
def test_packed_multiplier_is_exact(tmp_path, view):
    """mul_pack2 (a_hi * 2^18 + a_lo) * w splits into a_hi * w and a_lo * w exactly: every operand triple of the
    array's range ([-128, 255]^2 x int8) in the C-simulation types (int64), the edges and a sample in the
    synthesis types (ap_int<27>, <35>: the synthesis view, __SYNTHESIS__ defined after the ap_types headers,
    where a_hi = -256 would overflow the 27-bit A port: the range is checked in C-simulation)."""
    import subprocess

    from iseg.generator.csim import ap_types_dir

    src = tmp_path / "pack2.cpp"
    src.write_text(_PACK2_PROG)
    exe = tmp_path / "pack2"
    standin = Path(__file__).resolve().parents[1] / "generator" / "vitis_standin"
    flags = (["-DEXHAUSTIVE"] if view == "csim" else
             [f"-I{standin}", "-include", str(standin / "synthesis_view.h")])
    subprocess.run(["g++", "-std=c++14", "-O2", *flags, f"-I{ap_types_dir()}", f"-I{HLS_DIR}", str(src), "-o",
                    str(exe)], check=True)
    n, bad = map(int, subprocess.run([str(exe)], check=True, capture_output=True, text=True).stdout.split())
    assert bad == 0 and n >= (384 * 384 * 256 if view == "csim" else 200000)
