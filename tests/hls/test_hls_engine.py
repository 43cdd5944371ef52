"""The engine on a hand-written layer table of a 1-block toy I-Segmenter, compared with numpy layer
by layer through the C-sim trace (the full-model check comes from the generator's own tests)."""

from __future__ import annotations

import numpy as np
import pytest
from _hls_harness import (
    F_GELU,
    F_RESIDUAL,
    OP_ARGMAX_UPSAMPLE,
    OP_ATTENTION,
    OP_COPY_CONST,
    OP_EMBED_ADD,
    OP_GELU,
    OP_LAYERNORM,
    OP_LINEAR,
    OP_MASK_PRODUCT,
    OP_PATCH_EMBED,
    SM_VARIANTS,
    Blob,
    Scratch,
    layer,
    ln_mean,
    rows_of,
    rq_scalar,
)

from iseg import numerics as nx
from iseg.reference import attention_core, im2col

pytestmark = pytest.mark.csim


def me_ch(z: np.ndarray, target: int) -> tuple[np.ndarray, np.ndarray]:
    z = np.abs(np.asarray(z)).reshape(-1, z.shape[-1]).max(axis=0)
    pairs = [nx.dyadic(target / max(1, int(v))) for v in z]
    return np.array([p[0] for p in pairs]), np.array([p[1] for p in pairs])


def me(z: np.ndarray, target: int) -> tuple[int, int]:
    return nx.dyadic(target / max(1, int(np.abs(z).max())))


class Toy:
    """Builds the table, the blob, the scratch map and the expected outputs, op by op."""

    def __init__(self, seed: int, cols: int) -> None:
        self.cols = cols  # the harness's C: LINEAR weights go into the blob in its tile order
        self.rng = np.random.default_rng(seed)
        self.blob, self.sc = Blob(), Scratch()
        self.table: list = []
        self.expect: list[tuple[str, np.ndarray]] = []  # (name, expected output) per table entry

    def emit(self, name: str, d, want: np.ndarray) -> None:
        self.table.append(d)
        self.expect.append((name, want))

    def w(self, k: int, n: int) -> np.ndarray:
        return self.rng.integers(-128, 128, (k, n))

    def linear(self, name, x, x_off, x_stride, n, *, bits, bias=True, flags=0, res=None, gelu=None):
        t, k = x.shape
        w = self.w(k, n)
        b = self.rng.integers(-3000, 3000, n) if bias else None
        acc = nx.linear(x, w, b)
        m, e = me_ch(acc, 100 if bits == 8 else 12000)
        y = nx.requant(acc, m, e, 0, bits)
        kw = {}
        if gelu is not None:
            g = nx.gelu(y, gelu)
            m2, e2 = me(g, 110)
            y = nx.requant(g, m2, e2, 0, 8)
            kw = dict(gelu=gelu, cst=self.blob.add(nx.gelu_rq8_table(gelu, m2, e2), np.int8))
        if res is not None:
            r_name, r_val = res
            y = nx.int_add(r_val, y, 1 << 30, 1 << 29, 30)
            o_name = r_name  # the residual add in place
            out = self.sc.offset(r_name)
            kw.update(in2=out, in2_stride=self.sc.stride(r_name), ma=1 << 30, mb=1 << 29, ea=30)
        else:
            o_name = name
            out = self.sc.alloc(name, (t, n), np.int8 if bits == 8 else np.int16)
        d = layer(op=OP_LINEAR, flags=flags, T=t, K=k, N=n, out_bits=bits, in_=x_off, in_stride=x_stride, out=out,
                  out_stride=self.sc.stride(o_name), w=self.blob.add_weights(w, self.cols),
                  b=self.blob.add(b, np.int32) if bias else -1, rq=self.blob.rq_table(m, e, 0, n), **kw)
        self.emit(name, d, y)
        return y, out

    def layernorm(self, name, x, x_off, x_stride, bits=8):
        t, c = x.shape
        z = nx.ln_normalize(x)
        m, e = me_ch(z, 100 if bits == 8 else 15000)
        m = m * self.rng.choice([-1, 1], c)
        o = self.rng.integers(-(1 << 20), 1 << 20, c) << 10
        y = nx.requant(z, m, e, o, bits)
        out = self.sc.alloc(name, (t, c), np.int8 if bits == 8 else np.int16)
        self.emit(name, layer(op=OP_LAYERNORM, T=t, N=c, out_bits=bits, in_=x_off, in_stride=x_stride, out=out,
                              out_stride=self.sc.stride(name), rq=self.blob.rq_table(m, e, o, c), **ln_mean(c)), y)
        return y, out


@pytest.mark.parametrize("decoder,softmax,gelu", [("linear", "precise", "lambda"), ("mask", "ivit", "shift"),
                                                  ("mask", "precise8", "lambda")])
def test_toy_model_layer_by_layer(hls, decoder, softmax, gelu):
    H = W = 32
    P, D, heads, F, ncls = 8, 32, 2, 64, 5
    dh = D // heads
    gh, gw = H // P, W // P
    N = gh * gw
    T = N + 1
    toy = Toy(seed=11 if decoder == "linear" else 12, cols=hls.C)
    rng, blob, sc = toy.rng, toy.blob, toy.sc
    img = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)

    # patch embedding
    K = 3 * P * P
    wpe, bpe = toy.w(K, D), rng.integers(-20000, 20000, D)
    acc = nx.linear(im2col(img, P), wpe, bpe)
    m, e = me_ch(acc, 12000)
    tok = nx.requant(acc, m, e, 0, 16)
    t_off = sc.alloc("tok", (N, D), np.int16)
    toy.emit("patch_embed", layer(op=OP_PATCH_EMBED, T=N, K=K, N=D, img_h=H, img_w=W, patch=P, out_bits=16,
                                  in_=sc.alloc("stage", (N, K), np.int8), in_stride=sc.stride("stage"), out=t_off,
                                  out_stride=sc.stride("tok"),
                                  w=blob.add_weights(wpe, hls.C), b=blob.add(bpe, np.int32),
                                  rq=blob.rq_table(m, e, 0, D)), tok)
    # [cls ; tok] (+) pos
    cls = rng.integers(-12000, 12000, (1, D))
    pos = rng.integers(-12000, 12000, (T, D))
    x = nx.int_add(np.concatenate([cls, tok]), pos, 3 << 28, 1 << 29, 30)
    x_off = sc.alloc("x", (T, D), np.int16)
    toy.emit("embed", layer(op=OP_EMBED_ADD, T=T, N=D, n_prefix=1, out_bits=16, in_=t_off, in_stride=sc.stride("tok"),
                            out=x_off, out_stride=sc.stride("x"), cst=blob.add(x[:1], np.int16),
                            b=blob.add(pos, np.int16), ma=3 << 28, mb=1 << 29, ea=30), x)
    # encoder block
    a, a_off = toy.layernorm("ln1", x, x_off, sc.stride("x"))
    qkv, q_off = toy.linear("qkv", a, a_off, sc.stride("ln1"), 3 * D, bits=8)
    sacc = nx.exact_matmul(qkv[:, :dh], qkv[:, D:D + dh].T)
    ms, es = me(sacc, 127)
    x0 = nx.shiftmax_x0(0.1, softmax)
    pv = attention_core(qkv, heads, lambda z: nx.requant(z, ms, es, 0, 8), lambda s: x0, softmax)
    mo, eo = me(pv, 100)
    o = nx.requant(pv, mo, eo, 0, 8)
    o_off = sc.alloc("attn", (T, D), np.int8)
    toy.emit("attn", layer(op=OP_ATTENTION, T=T, N=D, heads=heads, d_head=dh, in_=q_off, in_stride=sc.stride("qkv"),
                           out=o_off, out_stride=sc.stride("attn"), sm_variant=SM_VARIANTS[softmax], sm_x0=x0,
                           rq=rq_scalar(ms, es), rq2=rq_scalar(mo, eo)), o)
    x, _ = toy.linear("proj+add", o, o_off, sc.stride("attn"), D, bits=16, flags=F_RESIDUAL, res=("x", x))
    h, h_off = toy.layernorm("ln2", x, x_off, sc.stride("x"))
    gc = nx.gelu_consts(0.05, gelu)
    if gelu == "lambda":
        h, h_off = toy.linear("fc1+gelu", h, h_off, sc.stride("ln2"), F, bits=8, flags=F_GELU, gelu=gc)
        h_stride = sc.stride("fc1+gelu")
    else:  # ShiftGELU needs the row maximum: a separate GELU layer
        h, f_off = toy.linear("fc1", h, h_off, sc.stride("ln2"), F, bits=8)
        g = nx.gelu(h, gc)
        mg, eg = me(g, 110)
        h = nx.requant(g, mg, eg, 0, 8)
        h_off = sc.alloc("gelu", (T, F), np.int8)
        toy.emit("gelu", layer(op=OP_GELU, T=T, N=F, out_bits=8, in_=f_off, in_stride=sc.stride("fc1"), out=h_off,
                               out_stride=sc.stride("gelu"), gelu=gc, rq=rq_scalar(mg, eg)), h)
        h_stride = sc.stride("gelu")
    x, _ = toy.linear("fc2+add", h, h_off, h_stride, D, bits=16, flags=F_RESIDUAL, res=("x", x))
    enc, e_off = toy.layernorm("enc.norm", x, x_off, sc.stride("x"))
    patches, p_off = enc[1:], sc.offset("enc.norm", 1)  # drop cls: a view from row 1, no op
    # decoder
    if decoder == "linear":
        logits, l_off = toy.linear("head", patches, p_off, sc.stride("enc.norm"), ncls, bits=16)
        l_stride = sc.stride("head")
    else:
        dtok, d_off = toy.linear("proj_dec", patches, p_off, sc.stride("enc.norm"), D, bits=16)
        sc.regions.pop("proj_dec")  # re-home it inside a (N + ncls, D) buffer, then append cls_emb rows
        d_off = sc.alloc("dec_x", (N + ncls, D), np.int16)
        toy.table[-1].out, toy.table[-1].out_stride = d_off, sc.stride("dec_x")
        cls_emb = rng.integers(-12000, 12000, (ncls, D))
        cst, cs = blob.add_rows(cls_emb, np.int16)
        toy.emit("cls_emb", layer(op=OP_COPY_CONST, T=ncls, N=D, out_bits=16, out=sc.offset("dec_x", N),
                                  out_stride=sc.stride("dec_x"), cst=cst, in_stride=cs), cls_emb)
        dn, dn_off = toy.layernorm("dec.norm", np.concatenate([dtok, cls_emb]), d_off, sc.stride("dec_x"))
        pp, pp_off = toy.linear("proj_patch", dn[:N], dn_off, sc.stride("dec.norm"), D, bits=8, bias=False)
        cc, cc_off = toy.linear("proj_classes", dn[N:], sc.offset("dec.norm", N), sc.stride("dec.norm"), D, bits=8,
                                bias=False)
        macc = nx.exact_matmul(pp, cc.T)
        mm, em = me(macc, 15000)
        mk = nx.requant(macc, mm, em, 0, 16)
        mk_off = sc.alloc("mask", (N, ncls), np.int16)
        toy.emit("mask", layer(op=OP_MASK_PRODUCT, T=N, K=D, N=ncls, out_bits=16, in_=pp_off,
                               in_stride=sc.stride("proj_patch"), in2=cc_off, in2_stride=sc.stride("proj_classes"),
                               out=mk_off, out_stride=sc.stride("mask"), rq=rq_scalar(mm, em)), mk)
        logits, l_off = toy.layernorm("mask_norm", mk, mk_off, sc.stride("mask"), bits=16)
        l_stride = sc.stride("mask_norm")
    labels = nx.upsample_nearest(nx.argmax_labels(logits).reshape(gh, gw), P)
    toy.emit("labels", layer(op=OP_ARGMAX_UPSAMPLE, T=N, N=ncls, img_h=H, img_w=W, patch=P, in_=l_off,
                             in_stride=l_stride), labels)

    traced: list[tuple[int, bytes]] = []
    rc, got_labels = hls.run(toy.table, blob.array(), sc.array(), pixels=img.reshape(-1), n_labels=H * W,
                             trace=lambda i, data: traced.append((i, data)))
    assert rc == 0, hls.error()
    assert [i for i, _ in traced] == list(range(len(toy.table)))
    for (i, data), (name, want), d in zip(traced, toy.expect, toy.table, strict=True):
        if d.op == OP_ARGMAX_UPSAMPLE:
            assert data == b""
            continue
        dt = np.int16 if want.dtype == np.int64 and (d.out_bits == 16 or d.op == OP_EMBED_ADD) else np.int8
        got = rows_of(data, dt, *want.shape, d.out_stride)  # the trace: T rows at the (padded) output stride
        assert np.array_equal(got, want), f"layer {i} ({name}) differs from numpy"
    assert np.array_equal(got_labels.reshape(H, W), labels)
    assert len(np.unique(labels)) > 1  # the toy model is not degenerate


def test_static_table_entry_point(hls):
    """``run_engine<Cfg>`` on a constexpr table, and the ISEG_CSIM_ENTRY C ABI of a generated csim.cpp: harness.cpp's
    COPY_CONST of the blob's 2 x 3 i16 (rows of 6 bytes padded to a beat) into two scratch rows of one beat each (6
    bytes and the padding, the blob's zeros: whole beats, hls/axi.h); nothing past them is touched."""
    import ctypes as C

    rs = -(-6 // hls.beat) * hls.beat  # the row stride in bytes: 6 bytes padded to a beat
    blob = np.zeros(64, np.uint8)
    rows = np.frombuffer(np.arange(1, 7, dtype="<i2").tobytes(), np.uint8)
    blob[:6], blob[rs:rs + 6] = rows[:6], rows[6:]
    want = np.full(64, 0xA5, np.uint8)
    want[:2 * rs] = 0
    want[:6], want[rs:rs + 6] = rows[:6], rows[6:]
    scratch = np.full(64, 0xA5, np.uint8)
    assert hls.lib.h_run_static(blob.ctypes.data_as(C.c_void_p), scratch.ctypes.data_as(C.c_void_p)) == 0
    assert np.array_equal(scratch, want)
    scratch[:] = 0xA5
    fn = hls.lib.iseg_csim_run
    fn.argtypes = [C.c_void_p] * 4 + [C.c_void_p]
    assert fn(blob.ctypes.data, None, None, scratch.ctypes.data, None) == 0
    assert np.array_equal(scratch, want)


@pytest.mark.parametrize("T,C,N", [(9, 24, 8), (14, 40, 17)])
def test_layernorm_window_fused_into_linear(hls, T, C, N):
    """The encoder's final norm -> dec.proj / dec.head: the LINEAR reads rows 1..T of a (T, C) LayerNorm output
    (the cls row is dropped by a view). The generator writes the LAYERNORM row for that window only (T - 1 rows,
    in and out at row 1): it is fused into the LINEAR's loader, the bytes are numpy's, the cls row is never
    written, and the LayerNorm's trace is exactly the window."""
    toy = Toy(seed=T + C, cols=hls.C)
    sc = toy.sc
    x = toy.rng.integers(-3000, 3000, (T, C))
    x_off = sc.alloc("x", (T, C), np.int16, x)
    y, h_off = toy.layernorm("enc.norm", x, x_off, sc.stride("x"))
    ln = toy.table[-1]
    ln.T, ln.in_, ln.out = T - 1, sc.offset("x", 1), sc.offset("enc.norm", 1)  # the window: rows 1 .. T of the op
    z, z_off = toy.linear("dec.proj", y[1:], sc.offset("enc.norm", 1), sc.stride("enc.norm"), N, bits=16)
    scratch = sc.array()
    scratch[h_off:sc.offset("enc.norm", 1)] = 0x5A  # the cls row of the LayerNorm output (and its padding): kept
    traced: list[tuple[int, bytes]] = []
    rc, _ = hls.run(toy.table, toy.blob.array(), scratch, trace=lambda i, data: traced.append((i, data)))
    assert rc == 0, hls.error()
    h = toy.sc.get(scratch, "enc.norm")
    assert np.array_equal(h[1:], y[1:]) and np.all(h[0].view(np.uint8) == 0x5A)
    assert np.array_equal(toy.sc.get(scratch, "dec.proj"), z)
    assert [i for i, _ in traced] == [0, 1]
    assert np.array_equal(rows_of(traced[0][1], np.int8, T - 1, C, sc.stride("enc.norm")), y[1:])
    assert hls.last_cycles() > 0


# ---- the position-embedding add fused into PATCH_EMBED's output stage (gemm.h embed_fused) ---------------
def _embed_tables(rng, img, P, D, ma, mb, ea, cols, big=False):
    """The same patch embedding + embed add as two rows (PATCH_EMBED, EMBED_ADD) and as one fused row
    (PATCH_EMBED with n_prefix 1: pos at blob offset in2, its rows padded to whole beats, which the output lanes read
    a beat per step (in2_stride; EMBED_ADD reads its own unpadded copy an element at a time); at cst, in both tables,
    the output's row 0 int_add(cls, pos[0]), the constant the generator folds: plan.embed_prefix_rows); numpy's
    expected (1 + T, D) output."""
    H, W = img.shape[:2]
    T, K = (H // P) * (W // P), 3 * P * P
    wpe, bpe = rng.integers(-128, 128, (K, D)), rng.integers(-20000, 20000, D)
    acc = nx.linear(im2col(img, P), wpe, bpe)
    m, e = me_ch(acc, 30000 if big else 12000)
    tok = nx.requant(acc, m, e, 0, 16)
    lim = 32768 if big else 12000
    cls, pos = rng.integers(-lim, lim, (1, D)), rng.integers(-lim, lim, (T + 1, D))
    want = nx.int_add(np.concatenate([cls, tok]), pos, ma, mb, ea)
    blob, sc = Blob(), Scratch()
    pe = dict(op=OP_PATCH_EMBED, T=T, K=K, N=D, img_h=H, img_w=W, patch=P, out_bits=16,
              in_=sc.alloc("stage", (T, K), np.int8), in_stride=sc.stride("stage"), w=blob.add_weights(wpe, cols),
              b=blob.add(bpe, np.int32), rq=blob.rq_table(m, e, 0, D))
    c_off, p_off = blob.add(nx.int_add(cls, pos[:1], ma, mb, ea), np.int16), blob.add(pos, np.int16)
    pp_off, pp_stride = blob.add_rows(pos, np.int16)
    tok_off, x_off = sc.alloc("tok", (T, D), np.int16), sc.alloc("x", (T + 1, D), np.int16)
    two = [layer(**pe, out=tok_off, out_stride=sc.stride("tok")),
           layer(op=OP_EMBED_ADD, T=T + 1, N=D, n_prefix=1, out_bits=16, in_=tok_off, in_stride=sc.stride("tok"),
                 out=x_off, out_stride=sc.stride("x"), cst=c_off, b=p_off, ma=ma, mb=mb, ea=ea)]
    fused = [layer(**pe, out=x_off, out_stride=sc.stride("x"), n_prefix=1, in2=pp_off, in2_stride=pp_stride,
                   cst=c_off, ma=ma, mb=mb, ea=ea)]
    return two, fused, blob, sc, want


@pytest.mark.parametrize("P,H,W,D,big", [(2, 4, 8, 40, False), (4, 8, 12, 24, True), (8, 8, 32, 17, False)])
def test_embed_add_fused_into_patch_embed(hls, P, H, W, D, big):
    """Bit-exact with numpy and with the two-row table (asymmetric ma / mb: the operand order counts; `big`: the
    i16 clamp is reached); P = 8 on an 8-pixel-high image is a single grid row."""
    rng = np.random.default_rng(P * 100 + D)
    img = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
    ma, mb, ea = (3 << 28, 1 << 29, 30) if not big else (7 << 27, -(5 << 26), 28)
    two, fused, blob, sc, want = _embed_tables(rng, img, P, D, ma, mb, ea, hls.C, big)
    if big:
        assert (np.abs(want) == 32767).any() or (want == -32768).any()
    b = blob.array()
    s2, s1 = sc.array(), sc.array()
    assert hls.run(two, b, s2, pixels=img.reshape(-1))[0] == 0, hls.error()
    assert hls.run(fused, b, s1, pixels=img.reshape(-1))[0] == 0, hls.error()
    assert np.array_equal(sc.get(s2, "x"), want)
    assert np.array_equal(sc.get(s1, "x"), want)
    assert not sc.get(s1, "tok").any()  # the patch_embed intermediate is never written


def test_embed_fused_cycles_by_hand(hls):
    """4 x 8 image, P = 2 (T = 8 patches, K = 12), D = 56, on the harness (R 4, C 8, 8-byte beats, 4 output
    lanes: drain ceil(32/4) = 8; per loop entry 16 + 64 = 80 where the loop reads m_axi, 16 + max(64, 70) = 86 per
    pass of the engine loop, 16 for the pixel path, which reads a stream). D = 56 keeps the cls row longer than the K
    loop at 4 output lanes (ceil(56/4) = 14 > 12), so the count shows it (at D = 40 it would hide: ceil(40/4) = 10).
    Hand-worked, the fused PATCH_EMBED row:
      prefetch0 (before the loop)  12 rows x 7 tiles x 8 bytes, min(8, C) = 8 per step: 84 + 80 = 164
      pixels                       (4/2 + 1) * (2 * 8 / 2 + 16) (2 pixels a stream beat)       = 72
      consts: biases, 2 per step (min(8/4, 4 lanes))     ceil(56/2) + 80 = 108
              rq1 records, a 16-byte record in ceil(16/8) = 2 steps   56 * 2 + 80 = 192   -> 300
      A prologue                   4 * ceil(12/8) + 86 (8 bytes, two words of a row bank, per step) = 94
      steps: 2 row blocks x 7 column tiles, A share ceil(8/7) = 2, no weight share;
        first tile max(K 12, A 2, row 0 ceil(56/4) = 14) = 14 (the output lanes' only idle tile runs row 0)
        6 middle tiles max(12, drain 8, 2, pf0 8) = 12, 7 tiles of the last block max(12, 8, 8) = 12
                                                                                   -> 14 + 72 + 84 = 170
        and a pass per row block (a tile of 12 steps outlasts its A share by 10 < 86: gemm_pass_blocks)
                                                                                     170 + 2 * 86 = 342
      tail                         8 + 86                                                       = 94
      sequencer                    8 per call: A0, the two blocks, the tail, the layer's end: 5 * 8 = 40
      -> 164 + 72 + 300 + 94 + 342 + 94 + 40                                                    = 1106
    The two-row table: the same GEMM with a first tile of 12 (868), then EMBED_ADD 9 * (56 + 80) = 1224: 2328."""
    from iseg.generator import estimate as est

    rng = np.random.default_rng(3)
    img = rng.integers(0, 256, (4, 8, 3), dtype=np.uint8)
    two, fused, blob, sc, want = _embed_tables(rng, img, 2, 56, 3 << 28, 1 << 29, 30, hls.C)
    b = blob.array()
    s2, s1 = sc.array(), sc.array()
    assert hls.run(two, b, s2, pixels=img.reshape(-1))[0] == 0, hls.error()
    c_two = hls.last_cycles()
    assert hls.run(fused, b, s1, pixels=img.reshape(-1))[0] == 0, hls.error()
    c_fused = hls.last_cycles()
    assert np.array_equal(sc.get(s1, "x"), want) and np.array_equal(sc.get(s2, "x"), want)
    shape = est.ArrayShape(rows=4, cols=8, pack=2, out_lanes=4, ln_lanes=4, sm_lanes=3, axi_bytes=8, s_lanes=5)
    g_f, _ = est.gemm_cycles(shape, 8, 12, 56, bias=True, rq_tab=True, gelu=False, prefetch_bytes=0, embed=True)
    g_p, _ = est.gemm_cycles(shape, 8, 12, 56, bias=True, rq_tab=True, gelu=False, prefetch_bytes=0)
    assert (g_f, g_p, est.pixel_cycles(4, 8, 2, 2)) == (300 + 94 + 342 + 94 + 40, 868, 72)
    assert c_fused == 164 + 72 + g_f == 1106
    assert c_two == 164 + 72 + g_p + 9 * (56 + 80) == 2328
