"""The head (hls/argmax_upsample.h): the overlapped argmax + nearest upsampler against ``iseg.numerics``
(``argmax_labels`` then ``upsample_nearest``, as ``iseg.reference`` ArgmaxUpsample), bit-exact, with 1, 4 and 8
argmax lanes (Cfg::A_LANES), and its counted cycles equal to ``estimate.head_cycles``."""

from __future__ import annotations

import numpy as np
import pytest
from _hls_harness import OP_ARGMAX_UPSAMPLE, Blob, Harness, Scratch, build, layer

from iseg import numerics as nx
from iseg.generator import estimate as est

pytestmark = pytest.mark.csim

LANES = [1, 4, 8]  # the harness's TestCfg::A_LANES: 4 by default (a whole 8-byte beat of i16), 8 on 16-byte beats


@pytest.fixture(scope="module")
def heads(tmp_path_factory: pytest.TempPathFactory) -> dict[int, Harness]:
    out = {4: Harness(build(tmp_path_factory.mktemp("head4")))}
    out[1] = Harness(build(tmp_path_factory.mktemp("head1"), a_lanes=1))
    # 8 lanes of i16 are 16 bytes: a 16-byte beat, whose GEMM stores need C a multiple of 16 (estimate.axi_beat)
    out[8] = Harness(build(tmp_path_factory.mktemp("head8"), a_lanes=8, axi=16, c=16))
    return out


def run_head(h: Harness, logits: np.ndarray, H: int, W: int, P: int, pad: int = 0) -> np.ndarray:
    """One ARGMAX_UPSAMPLE row on (T, ncls) logits, rows ``pad`` elements longer than ncls (the padding
    32767: a class read past ncls would win), guards around the logits untouched."""
    T, ncls = logits.shape
    stride = ncls + pad
    rows = np.full((T, stride), 32767, np.int64)
    rows[:, :ncls] = logits
    sc = Scratch(beat=h.beat)
    sc.alloc("guard_a", (32,), np.int16, np.full(32, 32767))
    m = sc.alloc("m", (T, stride), np.int16, rows)  # (and its beat padding, 0)
    sc.alloc("guard_b", (32,), np.int16, np.full(32, 32767))
    d = layer(op=OP_ARGMAX_UPSAMPLE, T=T, N=ncls, img_h=H, img_w=W, patch=P, in_=m, in_stride=sc.stride("m"))
    rc, labels = h.run([d], Blob().array(), sc.array(), n_labels=H * W)
    assert rc == 0, h.error()
    return labels.reshape(H, W)


def want(logits: np.ndarray, H: int, W: int, P: int) -> np.ndarray:
    return nx.upsample_nearest(nx.argmax_labels(logits).reshape(H // P, W // P), P)


def tie_logits(rng: np.random.Generator, T: int, ncls: int) -> np.ndarray:
    """Small values (many ties, the lowest class must win) and the edge rows: all equal, all -32768, all 32767,
    the maximum only in the last class, 32767 twice, -32768 except one class."""
    x = rng.integers(-3, 3, (T, ncls))
    edges = [np.zeros(ncls), np.full(ncls, -32768), np.full(ncls, 32767)]
    last = np.full(ncls, -32768)
    last[-1] = 32767
    edges.append(last)
    if ncls >= 3:
        two = np.full(ncls, -5)
        two[[1, ncls - 1]] = 32767
        edges.append(two)
        one = np.full(ncls, -32768)
        one[ncls // 2] = -32767
        edges.append(one)
    for i, e in enumerate(edges[:T]):
        x[(i * 7) % T] = e
    return x


@pytest.mark.parametrize("lanes", LANES)
@pytest.mark.parametrize("H,W,P,ncls", [
    (32, 48, 16, 5),    # non-square, 2 x 3 grid
    (4, 12, 4, 7),      # a single grid row (prologue + epilogue only), 7 classes: not a multiple of 4 or 8
    (16, 64, 16, 3),    # a single grid row, P 16
    (12, 8, 4, 150),    # tall, 150 classes (a partial last step for 4 and 8 lanes)
    (20, 8, 4, 1),      # one class: every label 0, an odd grid-row count (the last row in half 0)
    (64, 64, 8, 2),     # 8 x 8 grid
    (8, 64, 4, 16),     # wide: the argmax is shorter than the beats
    (4, 4, 4, 9),       # one token
])
def test_head_bit_exact_and_counted(heads: dict[int, Harness], lanes: int, H: int, W: int, P: int,
                                    ncls: int) -> None:
    rng = np.random.default_rng(H * W + P + ncls)
    logits = tie_logits(rng, (H // P) * (W // P), ncls)
    h = heads[lanes]
    got = run_head(h, logits, H, W, P, pad=3)
    assert np.array_equal(got, want(logits, H, W, P))
    assert h.last_cycles() == est.head_cycles(H, W, P, ncls, lanes, 2)  # the harness's LAB (ISEG_TEST_LAB)


@pytest.mark.parametrize("lanes", LANES)
def test_head_ties_lowest_class_wins_across_lanes_and_steps(heads: dict[int, Harness], lanes: int) -> None:
    """Token i holds its maximum at classes i and i + k for every k, including pairs in one step (lanes),
    in different steps, and at the last class; all tokens distinct so a label in the wrong cell shows."""
    ncls, H, W, P = 23, 8, 32, 4
    T = (H // P) * (W // P)  # 16 tokens
    logits = np.full((T, ncls), -32768, np.int64)
    for t in range(T):
        top = 32767 if t % 2 else -32767
        logits[t, t] = top                           # the first maximum: class t
        logits[t, min(ncls - 1, t + 1 + t % 9)] = top  # a tie 1..9 classes later: same or a later step
        if t % 3 == 0:
            logits[t, -1] = top                      # and one at the last class
    got = run_head(heads[lanes], logits, H, W, P)
    assert np.array_equal(got, want(logits, H, W, P))
    assert np.array_equal(got[::P, ::P].reshape(-1), np.arange(T) % ncls)


def test_head_random_full_range(heads: dict[int, Harness]) -> None:
    """Random i16 logits over the whole range, every lane count: the same labels."""
    rng = np.random.default_rng(5)
    H, W, P, ncls = 48, 40, 8, 37
    logits = rng.integers(-32768, 32768, ((H // P) * (W // P), ncls))
    ref = want(logits, H, W, P)
    for h in heads.values():
        assert np.array_equal(run_head(h, logits, H, W, P), ref)


@pytest.mark.parametrize("a_lanes,axi", [(3, 16), (6, 16), (8, 8)])
def test_head_lanes_must_tile_a_beat(tmp_path, a_lanes: int, axi: int) -> None:
    """A_LANES not a power of two (3: a step of 37 classes reads bytes 12-17, across two 16-byte beats), or wider
    than a beat, does not compile (static_assert in argmax_upsample.h)."""
    with pytest.raises(RuntimeError, match="A_LANES"):
        build(tmp_path, a_lanes=a_lanes, axi=axi)
