// schedule.h -- the engine's ONE pipelined loop (engine_pass) and the sequencer that drives it.
//
// Why one loop: an HLS tool builds every pipelined loop as a module of its own and shares no operator
// between modules, and it builds a function once per call site. The array (R x C MACs), the Shiftmax unit,
// the LayerNorm loader, the output lanes and the loaders used to be inlined into the GEMM, Q.K^T and P.V
// loops and the loops around them: three arrays on a part whose DSPs hold one, five Shiftmax units, three
// LayerNorm datapaths (docs/hls.md, "What csynth would likely find first"). Now every one of them is called
// at exactly one place, inside engine_pass's loop ENGINE_PASS, and engine_pass is called at exactly one
// place, in run_passes (tests/hls/test_hls_static.py checks both). What used to be a loop is a pass of
// ENGINE_PASS in one mode (PassMode: the former loop names, which C-simulation still reports ports and
// bursts under); a unit runs in an iteration when its mode and counters say so, and its operands are muxed
// by mode where two modes feed it (the array's left operand: a row block of g.a or a Q block).
//
// The sequencer (seq_next) is the layer schedule of gemm.h / attention.h written as a state machine: between
// passes it runs the setup (tables, the K/V load, loader and drain state) and hands out the next pass.
// The passes, their trip counts and the cycles charged are those of the loops they replace, so the C-sim
// cycle count still equals generator/estimate.py exactly.
//
// P.V at PV_II = 2 (u15 P on a packing array) is two iterations per key at II = 1: the low byte of P, then
// the high byte shifted by 8. Each is a u8 x int8 product, which packs two MACs per DSP48E2 like every other
// product of the array, so the array's left operand is 9 signed bits on a packing array (arr_a_bits) in
// every mode. The side jobs that take a key's products (the output and score lanes) run on the key's first
// iteration; the Shiftmax, which needs nothing of the array, steps on both (half of its block's steps under P.V
// would otherwise go unused). The integers are the same: the array only adds.
#pragma once

#include "attention.h"
#include "gemm.h"

namespace iseg {

enum PassMode : int32_t {
    PM_GEMM_A0 = 0,  // a GEMM layer's first row block, loaded alone (A loader or LayerNorm loader)
    PM_GEMM,         // a row block's tiles: array, output lanes, next block's loader, weight prefetch
    PM_GEMM_TAIL,    // the last tile's output lanes
    PM_LN,           // a LAYERNORM row alone on the LayerNorm loader, block after block
    PM_Q_LOAD,       // Q beats alone (a head's first Q block, what a short key loop left), Shiftmax advancing
    PM_QK,           // a query block's key tiles: array, score lanes, next Q block, a pending P.V drain
    PM_PV,           // one channel tile of P.V: PV_II iterations per key, the previous tile's drain
    PM_O_STEP,       // the last P.V tile's output lanes alone, Shiftmax advancing
    PM_SM_REST,      // the Shiftmax alone
    kPassModes
};

// C-simulation's names of the modes (port and burst reports): the loops they replace.
inline const char* pass_mode_name(int m) {
    static const char* const names[kPassModes] = {"GEMM_A0",    "GEMM_STEP",  "GEMM_TAIL",
                                                  "LN_LAYER",   "ATT_Q_LOAD", "ATT_QK_STEP",
                                                  "ATT_PV_STEP", "ATT_O_STEP", "ATT_SM_REST"};
    return m >= 0 && m < kPassModes ? names[m] : "ENGINE_PASS";
}

// One pass: a mode, its iterations, and the per-mode constants of its counters.
struct Pass {
    int32_t mode;
    long total;           // iterations
    long cycles;          // what the loop it replaces charged (C-sim cycle count)
    int cur, t0;          // GEMM: half of g.a holding the pass's first row block, its first row
    int a_share, w_share; // GEMM: the steps of a tile that load the next block / prefetch the next layer
    int blocks;           // GEMM: the row blocks the pass runs, one after the other (gemm_pass_blocks)
    int a_share_n;        // GEMM: a later block's a_share (a block after it; the layer's last block: 0)
    int a_tiles;          // GEMM: the tiles of a block that load (the first ones: gemm_quiet_tiles)
    int steps_n, steps_l; // GEMM: a later block's tile steps (a block after it / the layer's last block)
    long in_step, out_step;          // GEMM: in0 / out0 from one row block to the next
    long al_step, ln_sstep, ln_dstep;  // GEMM: the loaders' src (A, LayerNorm) and dst (LayerNorm) per row block
    int steps, steps_p;   // GEMM: the first tile's steps, every later tile's; QK: key tile 0's, later ones'; LN: a block's
    int pf0, pf0_p;       // GEMM: a tile's first prefetch step (first tile / later tiles)
    int csteps;           // GEMM: output-lane steps of the embed's cls row (the first tile, nothing pending)
    bool fuse_ln;         // GEMM, GEMM_A0: the LayerNorm loader instead of the A loader
    int hoff, rows, half, qh;  // QK: the head's first channel (h * d_head), query rows, score half, Q half;
                               // PV, O_STEP: hoff, and (PV) the probability half (half)
    long in0, out0;       // GEMM: the residual / output offset (elements) of the block's first row; LN: the input
                          // and output bytes of a row block (the loader's step to the next block)
    long vrow;            // PV: channel tile 0's first V row in w (tile j's: + j T)
    int phalf;            // PV: the probability half of g.a it reads
    int pv_n0, pv_n1;     // PV: channel tile 0's keys (iterations: PV_II each), every later tile's
    int32_t mode2;        // a second mode the pass switches to at iteration at2 (-1: none): PV(i - 1) chained with
    long at2;             // QK(i + 1), one fill for both (schedule.h SQ_PV)
    RqParams rq_s;        // QK: the score requant
    int wh, koff;         // the half of w the array reads, and (QK, PV) the first row of the head's K/V in it
    bool sd_defer;        // QK: its last score tile drains in the next pass (ScoreDrain)
    // ATTENTION, a chain of query blocks in one pass (att_chain_ok): after block `blk`'s PV(blk - 1) and QK(blk + 1),
    // `chain` more blocks alike follow, each `blk_its` iterations, the next from iteration `nxt` (-1: none); their
    // setup runs in the loop (att_chain_next) on these running rows and offsets, with no multiplier
    int chain, blk;
    long nxt, blk_its;
    int qk_t, q_t;        // the next block's QK first query row, and that of the Q block loading under it
    long q_src, q_step;   // that Q block's scratch offset, and R rows of the qkv stride
    long pd_orow, pd_step;  // the next block's P.V first output row offset, and R rows of the output stride
};

inline Pass pass_of(int32_t mode, long total, long cycles) {
    Pass p = {};
    p.mode = mode;
    p.total = total;
    p.cycles = cycles;
    p.mode2 = -1;
    p.at2 = -1;
    p.nxt = -1;
    p.a_tiles = 1 << 30;  // every tile of a GEMM block loads unless the sequencer makes some quiet
    return p;
}

// Levels of the score lanes' maximum tree: ceil(log2(S_LANES)).
constexpr int score_tree_levels(int sl) {
    int n = 0, w = 1;
    while (w < sl) {
        w *= 2;
        ++n;
    }
    return n;
}

// The array's left operand width: 9 signed bits on a packing array (int8, u8, or a byte of a u15 P), 16 on one
// that does not pack (a DSP per PE takes u15 P whole).
template <class Cfg>
constexpr int arr_a_bits() {
    return pack_of<Cfg>::value == 2 ? 9 : 16;
}

// Attention's K/V loader: head h's K_h^T as (key tile, k) rows through the transposer (gemm.h tp_out / tp_req /
// tp_take), V_h as (channel tile, key) rows as the beats come, chunk by chunk of AXI_BYTES channels, into g.w[half]
// from row `off`. It is a unit of the engine loop: it runs in every iteration of an attention pass while it has
// iterations left, so head h + 1's K/V load under head h's passes, into the other half of the weight buffer (even
// heads: half wcur from row 0, where the qkv layer's weights were; odd heads: the other half from row kv_off, above
// the next layer's prefetched weights), and a head's first pass (its Q(0) load) only finishes what is left (all of
// it for head 0). A step is two iterations, both reading scratch_b (gmem2, which no other unit of an attention pass
// reads): the K iteration writes out up to two rows of the last complete key tile (the two port sites of g.w) and
// takes a K beat; the V iteration takes that key's V beat, one word of w (the beat divides C and d_head).
// A load the head's first pass starts (head 0's, every head's without kv_overlap: exposed) is `dual`: once the Q
// loader has read its beats, gmem1 is free for the rest of that pass, and a step is one iteration, the K beat on
// gmem2 and the V beat on gmem1, the write-out on port B of g.w (one row a step) and the V word on port A. It
// goes dual only where the Q beats end before chunk 0's first key tile is complete (kv_start), so that every
// write-out runs at one row a step (tp_chunk_steps ports = 1) and the iterations are a closed count
// (estimate.kv_load_iters).
struct KvLoad {
    long left;   // iterations left (0: idle)
    int h;       // the head it loads
    int half;    // g.w[half], rows [off, off + kv_rows)
    int off;
    int b;       // chunk (AXI_BYTES channels of every key)
    int s, steps;  // step of chunk b, and a chunk's steps (kv_chunk_steps: the same for every chunk)
    int par;     // 0: the K iteration, 1: the V iteration
    int n;       // the key the K iteration read (-1: none)
    // running offsets (no multiplier in the loop): the K beat of key tp.n in chunk b, the V beat of key n, the
    // first V row of chunk b's channel tile; the head's first K byte and its V columns' distance (D)
    long kat, vat, k0at, dv;
    int vrow;
    bool dual;  // a step an iteration once gmem1 is free (kv_req's `one`)
};

inline KvLoad kv_idle() {
    KvLoad l = {0, -1, 0, 0, 0, 0, 0, 0, -1, 0, 0, 0, 0, 0, false};
    return l;
}

// Rows of w one head's K_h^T and V_h take.
template <class Cfg>
int kv_rows(const LayerDesc& d) {
    return ((d.T + Cfg::C - 1) / Cfg::C) * d.d_head + ((d.d_head + Cfg::C - 1) / Cfg::C) * kd_rows<Cfg>(d.T);
}

// Steps of one chunk: every chunk has AXI_BYTES rows (the beat divides d_head), so the same. `ports`: the
// transposer's write-out rows a step (1 for a dual load).
template <class Cfg>
int kv_chunk_steps(const LayerDesc& d, int ports = 2) {
    return int(tp_chunk_steps(d.T, d.d_head, 0, Cfg::C, Cfg::AXI_BYTES, ports));
}

// The loader for head h into g.w[half] from row off: its iterations (estimate.kv_load_iters), two a step, or, for a
// load beside a Q block that reads gmem1 for its first q_busy iterations (-1: the load runs under other passes),
// two a step for those and one a step after them (dual) where the Q beats end before chunk 0's first key tile is
// complete: ceil(q_busy / 2) steps of two iterations, then the rest of the steps one each.
template <class Cfg>
KvLoad kv_start(const LayerDesc& d, int h, int half, int off, GemmBuffers<Cfg>& g, int q_busy = -1) {
    ISEG_CHECK(d.d_head % Cfg::AXI_BYTES == 0 && Cfg::C % Cfg::AXI_BYTES == 0,
               "K/V load: the beat must divide d_head and C (estimate.axi_beat)");
    ISEG_CHECK(off >= 0 && off + kv_rows<Cfg>(d) <= Cfg::WROWS, "ATTENTION: K_h and V_h exceed Cfg::WROWS");
    tp_begin(g.tp);
    KvLoad l = kv_idle();
    const int s1 = (q_busy + 1) / 2, chunks = d.d_head / Cfg::AXI_BYTES;
    l.dual = q_busy >= 0 && s1 <= (d.T < Cfg::C ? d.T : Cfg::C);
    l.steps = kv_chunk_steps<Cfg>(d, l.dual ? 1 : 2);
    l.left = l.dual ? long(chunks) * l.steps + s1 : 2L * chunks * l.steps;
    l.h = h;
    l.half = half;
    l.off = off;
    l.dv = long(d.heads) * d.d_head;
    l.k0at = d.in + l.dv + long(h) * d.d_head;  // k = columns [D, 2D), v = [2D, 3D)
    l.kat = l.k0at;
    l.vrow = off + ((d.T + Cfg::C - 1) / Cfg::C) * d.d_head;  // V_h's rows follow K_h^T's
    return l;
}

// The request half of an iteration: the K iteration's write-out (o: the transposer's rows) and the offset of the
// beat it reads (tp_req), or the V iteration's V beat; -1 for none. nb: the beat's bytes. `one` (a dual load's K
// iteration while gmem1 is free): the whole step, the write-out on o[1] alone and the same key's V beat at `vat1`
// (on gmem1; -1: none).
template <class Cfg>
long kv_req(KvLoad& l, const LayerDesc& d, GemmBuffers<Cfg>& g, WReq<Cfg> (&o)[2], int& nb, bool one, long& vat1) {
    ISEG_PRAGMA(HLS INLINE)
    nb = Cfg::AXI_BYTES;
    vat1 = -1L;
    if (l.par == 0) {
        tp_out<Cfg>(g.tp, d.T, l.b, l.half, l.off, o, one ? 1 : 0);
        const long at = tp_req<Cfg>(g.tp, l.kat, d.T, d.d_head, l.b, nb);
        if (one && at >= 0) vat1 = at + l.dv;
        return at;
    }
    // heads start on a beat (estimate.axi_beat), chunk b is a whole one
    return l.n >= 0 ? l.vat : -1L;
}

// The step half: v, the beat kv_req named (if any), into the transposer (K) or as the V word's write (o[0]); with
// `one`, both: v into the transposer and vv (kv_req's vat1) as the V word's write (o[0], the write-out on o[1]);
// then the counters.
template <class Cfg>
void kv_take(KvLoad& l, const LayerDesc& d, bool got, const beat_t<Cfg>& v, GemmBuffers<Cfg>& g, WReq<Cfg> (&o)[2],
             bool one, const beat_t<Cfg>& vv) {
    ISEG_PRAGMA(HLS INLINE)
    constexpr int W = Cfg::AXI_BYTES, C = Cfg::C;
    const int T = d.T, dh = d.d_head;
    // `one` only in a K iteration: a V iteration left from two-iteration steps (the Q beats ended after its K
    // iteration) takes its V beat from gmem2 as before, whatever gmem1 does
    const bool both = one && l.par == 0;
    const bool vhalf = l.par == 1 || both;  // this iteration takes a V beat
    if (l.par == 0) {
        l.n = -1;
        if (got) {
            l.vat = l.kat + l.dv;  // the same key's V beat
            l.kat += d.in_stride;  // the next key's K beat
            l.n = tp_take<Cfg>(g.tp, v, T, dh, l.b);
        }
        l.par = 1;
    }
    if (vhalf) {
        if (l.n >= 0) {  // channels [b W, b W + W) of key n: one word of V's channel tile (b W) / C, from byte (b W) % C
            const int k0 = l.b * W;
            o[0].ok = true;  // (a dual step's write-out took o[1]: tp_out p0 = 1)
            o[0].half = l.half;
            o[0].row = l.vrow + l.n;
        ATT_V_BYTE:
            for (int c = 0; c < C; ++c) {
                ISEG_PRAGMA(HLS UNROLL)
                const int j = c % W;
                if (c / W == (k0 % C) / W) {
                    o[0].v[c] = k0 + j < dh ? beat_i8(both ? vv : v, j) : int8_t(0);
                    o[0].m[c] = true;
                }
            }
        }
        l.par = 0;
        if (++l.s == l.steps) {
            ISEG_CHECK(g.tp.n == T && g.tp.wleft == 0, "ATTENTION: transposing loader step count mismatch");
            l.s = 0;
            ++l.b;
            if ((l.b * W) % C == 0) l.vrow += kd_rows<Cfg>(T);  // the next chunk starts a channel tile: its V rows
            l.kat = l.k0at + l.b * W;
            tp_begin(g.tp);
        }
    }
    --l.left;
}

// The score lanes' tile: the scores of key tile dn0.. of a Q.K^T block (half, rows, dcols keys), drained from g.dr
// at (sr, sk) in the first score_drain_steps steps of the next key tile, or, for a QK's last tile, of the next
// pass's P.V tile 0 or Q.K^T key tile 0 (deferred: Pass::sd_defer), where the array would otherwise wait for it.
// The Shiftmax of that block waits until it is drained (its rows' maxima and last keys).
struct ScoreDrain {
    bool pending;
    int half, rows, dn0, dcols;
    int sr, sk;  // the lanes' row in the drained tile and step within that row
};

// The state every pass may touch besides the buffers: loaders, drains, the weight prefetch.
// The two store stages (axi.h WrStage) live here, not in a pass: a tile's output lanes may run on into the next
// pass (a row's beat half put), so a stage is written out only when its puts move on, and by run_passes at the
// layer's end.
template <class Cfg>
struct PassState {
    ALoad al;    // the A loader (GEMM_A0: block 0; GEMM: block mb + 1)
    LnLoad ln;   // the LayerNorm loader (the same blocks, or LN_LAYER's)
    QLoad q;     // the Q loader
    KvLoad kv;   // attention's K/V loader (the next head's, or what is left of this head's)
    ScoreDrain sd;  // the Q.K^T tile the score lanes drain
    Drain dt;    // the GEMM tile in g.dr
    PvDrain pd;  // the P.V tile in g.dr
    WrStage<Cfg::AXI_BYTES> os;  // the output lanes' stores (gmem1)
    WrStage<Cfg::AXI_BYTES> ts;  // the LayerNorm loader's trace rows (gmem2)
};

// A Q.K^T block's row maxima, before its first score: registers (sm.mx is partitioned completely), one parallel store.
template <class Cfg>
void att_mx_init(AttSm<Cfg>& sm, int half) {
ATT_MX_INIT:
    for (int r = 0; r < Cfg::R; ++r) {
        ISEG_PRAGMA(HLS UNROLL)
        sm.mx[half][r] = -128;
    }
}

// The next block of a chained pass, set up in the engine loop where the sequencer would set it up between two
// passes (SQ_QR .. SQ_QK): block j = p.blk + 1 runs PV(j - 1) on probability half (j - 1) & 1 and QK(j + 1) into
// score half (j + 1) & 1 from Q half (j + 1) & 1, while SM(j) normalises half j & 1 and Q(j + 2) loads into half
// j & 1; every count is block 1's (att_chain_ok), every row and offset advances R rows from the last (no multiplier).
// `it`: the iteration it starts at. The loop resets its counters as at a pass's start (P.V channel tile 0).
template <class Cfg>
void att_chain_next(Pass& p, long it, const LayerDesc& d, AttSm<Cfg>& sm, PassState<Cfg>& ps) {
    constexpr int R = Cfg::R;
    const int T = d.T, j = ++p.blk;
    ISEG_CHECK(sm.st.phase == SM_DONE, "ATTENTION: a chained block's Shiftmax unfinished at its end");
    ISEG_CHECK(ps.q.b >= ps.q.beats, "ATTENTION: a chained block's Q load unfinished at its end");
    sm.st = sm_begin(j & 1, R);  // (block j <= nb - 2: R rows)
    ps.pd = pv_drain_at((j - 1) * R, R, (j - 1) & 1, p.pd_orow);  // (QK's key tile 0 drained the last one)
    p.pd_orow += p.pd_step;
    if (p.q_t < T) {
        ps.q = q_block<Cfg>(p.q_src, d.in_stride, T - p.q_t < R ? T - p.q_t : R, d.d_head, j & 1);
    } else {
        ps.q = q_none();
    }
    p.q_src += p.q_step;
    p.q_t += R;
    p.rows = T - p.qk_t < R ? T - p.qk_t : R;
    p.qk_t += R;
    p.half = p.qh = (j + 1) & 1;
    p.phalf = (j - 1) & 1;
    att_mx_init<Cfg>(sm, p.half);
    p.mode = PM_PV;
    p.at2 = it + (p.at2 - (p.nxt - p.blk_its));  // the P.V part's iterations, as block 1's
    p.nxt = --p.chain > 0 ? it + p.blk_its : -1;
}

// THE engine loop. One call site (run_passes); every unit below is called once in its body.
template <class Cfg>
void engine_pass(Pass p, const LayerDesc& d, const beat_t<Cfg>* blob, beat_t<Cfg>* scratch,
                 beat_t<Cfg>* scratch_b, GemmBuffers<Cfg>& g, AttSm<Cfg>& sm, Prefetch& pf, PassState<Cfg>& ps) {
    ISEG_PRAGMA(HLS INLINE)  // one call site: its state stays local values of run_layers (no struct ports)
    constexpr int R = Cfg::R, C = Cfg::C, PVII = pv_ii_of<Cfg>::value, AB = arr_a_bits<Cfg>(), KD = kd_of<Cfg>::value;
    int m = p.mode;  // a chained pass (PV, then QK) switches once, at iteration p.at2
    const int dsteps = drain_steps<Cfg>(), sdsteps = score_drain_steps<Cfg>(), pdsteps = pv_drain_steps<Cfg>();
    const int T = d.T, dh = d.d_head;
    const int kt_n = (T + C - 1) / C;
    // the array's steps of a tile (KD k a step: kd_steps): GEMM over K, QK over d_head, P.V over the keys, whose V rows
    // take whole words of w (kd_rows); a P.V step's lanes past T read zero
    const int ks = kd_steps<Cfg>(d.K), dhs = kd_steps<Cfg>(dh), ts = kd_steps<Cfg>(T), tw = kd_rows<Cfg>(T);
    // counters: GEMM tile nt / step s; QK key tile nt / step s; PV key s / part par; LN block nt / step s
    int nt = 0, s = 0, par = 0, steps = m == PM_PV ? p.pv_n0 : p.steps, pf0 = p.pf0;
    int &dn0 = ps.sd.dn0, &dcols = ps.sd.dcols;  // the score lanes' tile (ScoreDrain: it may be the previous pass's)
    // GEMM: the row block that runs (a pass runs p.blocks of them, gemm_pass_blocks): its half of g.a, first row,
    // load share, later tiles' steps, residual / output offsets; running, advanced at a block's end (no multiplier)
    int cur = p.cur, t0 = p.t0, a_share = p.a_share, gsteps_p = p.steps_p, blk = 0;
    long in0 = p.in0, out0 = p.out0;
    const int nt_g = (d.N + C - 1) / C;
    // C-simulation: the pass's first iteration id; a g.a row written in this pass is read by the array no sooner
    // than kEngineDepth iterations later (the block chain's promise, checked at the array's read below)
    const long long it0 = ISEG_ITER() + 1;
    (void)it0;
    long al0 = ps.al.src;  // the A loader's block's first row (ps.al.src runs with its rows)
    int &sr = ps.sd.sr, &sk = ps.sd.sk;  // the score lanes' row in the drained tile and step within that row
    long wbase = p.koff + (m == PM_PV ? p.vrow : 0);  // the tile's first row of w (running: no tile * K multiplier)
    int pc0 = 0;                    // PV: the channel tile's first channel (running: the tiles are one pass)
    // The m_axi reads: ONE request per bundle per iteration, its address muxed among the units that share the bundle
    // (gmem0: the output lanes' pos / cls rows or the weight prefetch; gmem1: the A loader, the LayerNorm
    // statistics or the Q loader; gmem2: the residuals), through a one-beat cache each (axi.h: steps that share a
    // beat request it once). A pass starts them empty, so nothing a layer wrote before is ever served stale; within
    // a pass one unit uses each (the modes never run two loaders of a bundle, and an embed's prefetch steps follow
    // its output lanes' steps, Pass::pf0), so a cached beat is always that unit's.
    RdCache<beat_t<Cfg> > c0, c1, c2;
    cache_reset(c0);
    cache_reset(c1);
    cache_reset(c2);
ENGINE_PASS:
    for (long i = 0; i < p.total; ++i) {
        ISEG_PRAGMA(HLS loop_tripcount min=1 max=92000)
        if (i == p.nxt) {  // a chain's next query block (att_chain_next), its P.V part first
            ISEG_CHECK(m == PM_QK && nt == kt_n + (p.sd_defer ? 0 : 1) && s == 0 && ps.sd.pending == p.sd_defer,
                       "Q.K^T: the key-tile counters left a chained block's tiles");
            att_chain_next<Cfg>(p, i, d, sm, ps);
            m = PM_PV;
            nt = s = par = 0;
            steps = p.pv_n0;
            wbase = p.koff + p.vrow;
            pc0 = 0;
        }
        if (i == p.at2) {  // the chained pass's second part (QK): its counters start as a pass's do
            ISEG_CHECK(m == PM_PV && par == 0 && s == 0 && pc0 >= dh, "P.V: the channel tiles left unfinished");
            m = p.mode2;
            ISEG_CHECK(!ps.sd.pending, "Q.K^T: a score tile still pending where a chained pass starts");
            nt = s = par = 0;
            steps = p.steps;
            wbase = p.koff;
        }
        const bool gemm = m == PM_GEMM, qk = m == PM_QK, pv = m == PM_PV;
        const bool split = pv && PVII == 2;  // P.V's u15 P byte by byte
        ISEG_PIPELINE_AS(ENGINE_PASS, 1, pass_mode_name(m));
        ISEG_PRAGMA(HLS DEPENDENCE variable=scratch inter false)
        ISEG_PRAGMA(HLS DEPENDENCE variable=scratch_b inter false)  // one buffer with scratch (top.cpp ALIAS)
        // a row's LayerNorm statistics are read kLnChain or more iterations after they are written (gemm.h ln_step:
        // a row's normalise starts kLnChain loader steps after its chain issues): no dependence the pipeline waits for
        ISEG_PRAGMA(HLS DEPENDENCE variable=g.ln_mean inter false)
        ISEG_PRAGMA(HLS DEPENDENCE variable=g.ln_f inter false)
        // a row's closed sums are read kLnIssue >= kMaxiLatency + 8 iterations after they are written (gemm.h ln_step;
        // C-simulation checks the distance)
        ISEG_PRAGMA(HLS DEPENDENCE variable=g.ln_sum inter false)
        ISEG_PRAGMA(HLS DEPENDENCE variable=g.ln_sq inter false)
        // g.a: the array reads the half no unit of this pass writes (loaders and Shiftmax fill the other one); the
        // LayerNorm normalise pass updates a word in place within one iteration; its stats-to-normalise distance is
        // at least kLnChain iterations, as above
        ISEG_PRAGMA(HLS DEPENDENCE variable=g.a inter false)
        // the array runs in this iteration: step s of GEMM tile nt / of QK key tile nt, key s of P.V (part par); it
        // reads its operand words through the ports below (A_PORT_A, Q_PORT_A) and steps after them
        const bool arr = (gemm && s < ks) || (qk && nt < kt_n && s < dhs) || (pv && s < ts);
        const int ah = gemm ? cur : p.phalf;  // the half of g.a it reads (GEMM, P.V)
        // The output lanes' drain registers, read once for whichever output lanes run (GEMM or P.V: never both in
        // one iteration), at their running row and step: one OUT_LANES-wide readout mux over R x C / OUT_LANES
        // registers per lane for both lane sets, the one the estimate charges (array_lut_per_mac). With PV_LANES past
        // OUT_LANES, P.V's outputs come through the score lanes' readout instead (WIDE_READ below, pv_lanes).
        constexpr int PVL = pv_lanes<Cfg>();
        constexpr bool pv_wide = PVL != Cfg::OUT_LANES;
        int32_t ov[Cfg::OUT_LANES];
        ISEG_PRAGMA(HLS ARRAY_PARTITION variable=ov type=complete)
        const bool pvo = !pv_wide && !(gemm || m == PM_GEMM_TAIL);
        const int orow = pvo ? ps.pd.r : ps.dt.r, ostep = pvo ? ps.pd.k : ps.dt.k;
    OUT_READ:
        for (int l = 0; l < Cfg::OUT_LANES; ++l) {
            ISEG_PRAGMA(HLS UNROLL)
            const int c = ostep * Cfg::OUT_LANES + l;
            ov[l] = orow < R && c < C ? int32_t(g.dr[orow][c]) : 0;
        }
        // The requant lanes (rq_lanes = max(OUT_LANES, S_LANES)), shared by three lane sets that never run in one
        // iteration: the GEMM output lanes (the previous tile, the embed's cls row, or the last tile alone), the P.V
        // output lanes (a pending tile in QK's key tile 0 or P.V's first keys, or the last tile alone) and the score
        // lanes (the previous key tile, in QK's key tiles 1..). The set that runs fills its operands (first half),
        // ONE requant per lane serves all three (OUT_RQ: the multipliers the estimate charges once, as the output
        // stage's), then the set stores (second half).
        constexpr int NQ = rq_lanes<Cfg>(), SL = Cfg::S_LANES;
        // When S_LANES divides C (every generated Cfg: estimate.make_shape), a step's scores lie in one row: lane l
        // reads dr[sr][sk * S_LANES + l] (running counters: an R x C / S_LANES mux per lane) and the row maximum
        // takes one compare tree over the lanes, not an S_LANES-deep chain of compares. The unit-test harness keeps
        // lanes that straddle rows.
        constexpr bool s_one_row = C % SL == 0;
        const bool go = (gemm && s < (ps.dt.pending ? dsteps : p.csteps)) || m == PM_GEMM_TAIL;
        const bool po = (((qk && nt == 0) || (pv && par == 0)) && ps.pd.pending && s < pdsteps) || m == PM_O_STEP;
        // the score lanes drain a tile: key tile nt - 1 in key tile nt, or the previous pass's last in key tile 0 or
        // in P.V's channel tile 0 (its first keys)
        const bool so = ps.sd.pending && s < sdsteps && (qk || (pv && pc0 == 0 && par == 0));
        // The score lanes' readout (S_LANES dividing C): the previous key tile's scores at (sr, sk), or, with PV_LANES
        // past OUT_LANES, the pending P.V tile's outputs at (pd.r, pd.k): never both in one iteration (so: key tiles
        // 1.., po: key tile 0, P.V's first keys, O_STEP). One S_LANES-wide mux over R x C / S_LANES registers per lane;
        // a P.V step takes part pd.k % PVW of window pd.k / PVW (PV_READ: a PVW:1 select per P.V lane, which the
        // estimate charges with the attention lanes).
        int32_t wv[SL];
        ISEG_PRAGMA(HLS ARRAY_PARTITION variable=wv type=complete)
        constexpr int PVW = pv_window<Cfg>();  // P.V steps a window (a power of two: a shift and a mask)
        const int wrow = so ? sr : ps.pd.r, wstep = so ? sk : ps.pd.k / PVW;
    WIDE_READ:
        for (int l = 0; l < SL; ++l) {
            ISEG_PRAGMA(HLS UNROLL)
            const int c = wstep * SL + l;
            wv[l] = s_one_row && wrow < R && c < C ? int32_t(g.dr[wrow][c]) : 0;
        }
        int32_t pvv[PVL];  // the P.V output lanes' drain registers: the output lanes' readout, or the score lanes'
        ISEG_PRAGMA(HLS ARRAY_PARTITION variable=pvv type=complete)
    PV_READ:
        for (int l = 0; l < PVL; ++l) {
            ISEG_PRAGMA(HLS UNROLL)
            pvv[l] = pv_wide ? wv[(ps.pd.k % PVW) * PVL + l % SL] : ov[l % Cfg::OUT_LANES];  // (in range either way)
        }
        const bool gcls = gemm && !ps.dt.pending;
        long oat = -1;  // the output lanes' store: its byte offset (-1: none)
        // gmem0 and gmem2: the GEMM output lanes' operands, or a weight prefetch beat (on gmem0, later in the iteration)
        const bool pf_go = gemm && s >= pf0 && s < pf0 + p.w_share && pf.pos < pf.total;
        LaneStep lst = {0, 0, -1L, -1L, 0, 0};
        if (go) lst = drain_req<Cfg>(d, ps.dt, gcls, gemm ? s : int(i));
        ISEG_CHECK(!(pf_go && lst.at0 >= 0), "engine loop: the weight prefetch and the embed's pos rows in one step");
        int npf = 0;
        const long pat = pf_go ? prefetch_req<Cfg>(pf, npf) : -1L;
        // gmem1: the left-operand loaders' read (their steps run after the stores, below), issued here, before the
        // iteration's store on gmem1 in program order: the tool need not order the read behind the write
        const bool a_step = gemm && s < a_share && nt < p.a_tiles;  // the block's load share in its first tiles
        const bool ln_go = (a_step && p.fuse_ln) || (m == PM_GEMM_A0 && p.fuse_ln) || m == PM_LN;
        const bool a_go = (a_step && !p.fuse_ln) || (m == PM_GEMM_A0 && !p.fuse_ln);
        const bool q_go = qk || m == PM_Q_LOAD;
        int n1 = 0;
        const long at1 = ln_go ? ln_req<Cfg>(ps.ln, n1) : a_go ? a_req<Cfg>(ps.al, n1) : q_go ? q_req<Cfg>(ps.q, dh, n1) : -1L;
        // attention's K/V loader (every attention mode, while it has iterations left): the transposer's write-out into
        // the two write requests of g.w (ws), and its beat's offset on gmem2, which only the GEMM's residuals use
        // besides; a dual load's whole step where a Q_LOAD pass leaves gmem1 free (its V beat there: vat1)
        const bool kv_go = ps.kv.left > 0 && (qk || pv || m == PM_Q_LOAD || m == PM_O_STEP || m == PM_SM_REST);
        const bool kv_one = kv_go && ps.kv.dual && m == PM_Q_LOAD && at1 < 0;
        WReq<Cfg> ws[2];
        ws[0] = w_req_none<Cfg>();
        ws[1] = w_req_none<Cfg>();
        int nkv = 0;
        long vat1 = -1L;
        const long kat = kv_go ? kv_req<Cfg>(ps.kv, d, g, ws, nkv, kv_one, vat1) : -1L;
        ISEG_CHECK(!(kat >= 0 && lst.at2 >= 0), "engine loop: the K/V loader and the residuals in one step");
        beat_t<Cfg> v0, v1, v2;
        beat_clear(v0);
        beat_clear(v1);
        beat_clear(v2);
        if (lst.at0 >= 0 || pat >= 0)
            v0 = ISEG_CACHE_RD(GMEM0, c0, blob, pat >= 0 ? pat : lst.at0, pat >= 0 ? npf : lst.n0);
        if (lst.at2 >= 0 || kat >= 0)
            v2 = ISEG_CACHE_RD(GMEM2, c2, scratch_b, kat >= 0 ? kat : lst.at2, kat >= 0 ? nkv : lst.n2);
        if (at1 >= 0 || vat1 >= 0)  // one request: a loader's beat, or a dual K/V step's V beat
            v1 = ISEG_CACHE_RD(GMEM1, c1, scratch, at1 >= 0 ? at1 : vat1, at1 >= 0 ? n1 : nkv);
        OutLane<Cfg> ol[NQ];
        ISEG_PRAGMA(HLS ARRAY_PARTITION variable=ol type=complete)
    OUT_LANE_OFF:  // lanes a set does not fill stay off (the output lanes fill OUT_LANES of NQ)
        for (int l = 0; l < NQ; ++l) {
            ISEG_PRAGMA(HLS UNROLL)
            ol[l].ok = ol[l].tab = false;
            ol[l].idx = 0;
        }
        if (go) {
            oat = drain_lanes<Cfg>(d, lst, v0, v2, g, ps.dt, gcls, ov, ol);
        } else if (po) {
            oat = att_o_lanes<Cfg>(d, p.hoff, ps.pd, sm, m == PM_O_STEP ? int(i) : s, pvv, ol);
        } else if (so) {
            ISEG_CHECK(!s_one_row || lane_pos_at(sr, sk, s, SL, C), "score lanes: the row/step counters left step s");
        ATT_S_LANE:
            for (int l = 0; l < NQ; ++l) {
                ISEG_PRAGMA(HLS UNROLL)
                const int e = s * SL + l;
                const int r = s_one_row ? sr : e / C, c = s_one_row ? sk * SL + l : e % C;
                ol[l].ok = l < SL && r < ps.sd.rows && c < dcols;
                if (ol[l].ok) ol[l].z = narrow<out_rq_bits<Cfg>()>(s_one_row ? wv[l < SL ? l : 0] : int32_t(g.dr[r][c]));
            }
        }
        int32_t oy[NQ];
        ISEG_PRAGMA(HLS ARRAY_PARTITION variable=oy type=complete)
        // the records: a lane's rq1 entry (one read site per bank), or the iteration's scalar, selected once for all
        // lanes (the GEMM's rq, P.V's rq2, the scores' rq); 16-bit outputs only from the GEMM
        const RqParams rq_one = so ? p.rq_s : rq_scalar_of(go ? d.rq : d.rq2);
        const bool wide = go && d.out_bits == 16;
    OUT_RQ:
        for (int l = 0; l < NQ; ++l) {
            ISEG_PRAGMA(HLS UNROLL)
            RqParams rq = rq_one;
            if (ol[l].ok && ol[l].tab) {
                ISEG_RD(g, rq1, g.o_bank(ol[l].idx), g.o_word(ol[l].idx));
                rq = g.rq1[ol[l].idx];
            }
            oy[l] = (go || po || so) && ol[l].ok ? out_rq<Cfg>(ol[l], rq, wide) : 0;
        }
        if (go) drain_values<Cfg>(d, g, gcls, ol, oy);  // the GELU table, the residual / embed add
        // the output lanes' store, GEMM (out_bits, OUT_LANES lanes) or P.V (a byte, PV_LANES lanes): the lanes' bytes
        // are contiguous, one put into the stage (its position in the beat a multiple of gcd(OUT_LANES, PV_LANES)
        // bytes), at most one beat written: one site
        constexpr int NS = Cfg::OUT_LANES > PVL ? Cfg::OUT_LANES : PVL, OU = gcd_of(Cfg::OUT_LANES, PVL);
        constexpr int NX = 2 * Cfg::OUT_LANES > PVL ? 2 * Cfg::OUT_LANES : PVL;  // a put's most bytes (at most a beat)
        const int obytes = go ? d.out_bits / 8 : 1;
        uint8_t ox[NX] = {};
        ISEG_PRAGMA(HLS ARRAY_PARTITION variable=ox type=complete)
        int on = 0;
    OUT_STORE:
        for (int l = 0; l < NS; ++l) {
            ISEG_PRAGMA(HLS UNROLL)
            if ((go || po) && ol[l].ok && (l + 1) * obytes <= NX) {  // (a GEMM's lanes: l < OUT_LANES, 2 bytes)
                put_act(ox, l * obytes, obytes, oy[l]);
                on += obytes;
            }
        }
        if ((go || po) && oat >= 0) ISEG_STAGE_PUT(OU, GMEM1, ps.os, scratch, oat, ox, on);
        // The score lanes' scores (so): lane l's goes to key dn0 + c of row r of block ps.sd.half, bank
        // s_bank(ps.sd.half, key). At most two lanes share a bank (the planner: estimate.score_lane_writes), the first on the bank's port A,
        // the second on its port B (S_PORT_A / S_PORT_B below); the row maxima are registers, updated here.
        constexpr int SM = Cfg::SM_LANES, SB = 2 * Cfg::SM_LANES;
        int s_pa[SB], s_pb[SB];  // per bank of sm.s: the score lane its port A / port B writes (-1: none)
        ISEG_PRAGMA(HLS ARRAY_PARTITION variable=s_pa type=complete)
        ISEG_PRAGMA(HLS ARRAY_PARTITION variable=s_pb type=complete)
        int s_row[SL], s_key[SL];
        int8_t s_val[SL];
        ISEG_PRAGMA(HLS ARRAY_PARTITION variable=s_row type=complete)
        ISEG_PRAGMA(HLS ARRAY_PARTITION variable=s_key type=complete)
        ISEG_PRAGMA(HLS ARRAY_PARTITION variable=s_val type=complete)
        bool s_two = false;  // some bank takes two score lanes (port B writes)
        if (so) {
        ATT_S_PORT_CLEAR:
            for (int b = 0; b < SB; ++b) {
                ISEG_PRAGMA(HLS UNROLL)
                s_pa[b] = s_pb[b] = -1;
            }
            int32_t sv[SL];  // the lanes' scores (-128 where a lane has none: neutral for the maximum)
            ISEG_PRAGMA(HLS ARRAY_PARTITION variable=sv type=complete)
        ATT_S_STORE:
            for (int l = 0; l < SL; ++l) {
                ISEG_PRAGMA(HLS UNROLL)
                const int e = s * SL + l;
                const int r = s_one_row ? sr : e / C, c = s_one_row ? sk * SL + l : e % C;
                sv[l] = -128;
                s_row[l] = r;
                s_key[l] = dn0 + c;
                s_val[l] = int8_t(oy[l]);
                if (ol[l].ok) {
                    const int b = sm.s_bank(ps.sd.half, dn0 + c);
                    if (s_pa[b] < 0) {
                        s_pa[b] = l;
                    } else {
                        ISEG_CHECK(s_pb[b] < 0,
                                   "score lanes: three scores in one bank of sm.s (estimate.score_lane_writes)");
                        s_pb[b] = l;
                        s_two = true;
                    }
                    sv[l] = oy[l];
                    if (!s_one_row && oy[l] > sm.mx[ps.sd.half][r]) sm.mx[ps.sd.half][r] = oy[l];  // (straddling lanes)
                }
            }
            if (s_one_row) {
            ATT_S_MAX_LEVEL:  // the maximum of the lanes as a tree: level v folds lane i + 2^v into lane i
                for (int v = 0; v < score_tree_levels(SL); ++v) {
                    ISEG_PRAGMA(HLS UNROLL)
                ATT_S_MAX_LANE:
                    for (int l = 0; l < SL; ++l) {
                        ISEG_PRAGMA(HLS UNROLL)
                        const int o = 1 << v;
                        if (l % (2 * o) == 0 && l + o < SL && sv[l + o] > sv[l]) sv[l] = sv[l + o];
                    }
                }
                if (sr < ps.sd.rows && sv[0] > sm.mx[ps.sd.half][sr]) sm.mx[ps.sd.half][sr] = sv[0];
                lane_pos_next(sr, sk, C / SL);
            }
        }
        // sm.s: exactly two accesses per bank (2 SM_LANES banks, (half, key mod SM_LANES)), one site per port.
        // Port A: the first score lane's write into the bank, or slot 0 of the Shiftmax step's reads; port B: the
        // second score lane's write, or slot 1 (the normalise pass's second row). The score lanes fill the block QK(i
        // + 1) makes while the Shiftmax reads block i (attention.h), the other half: a bank serves one of them in an
        // iteration (checked). A key's word in its bank is key / SM_LANES, indexed as word * SM_LANES + bank (a
        // constant lane after unrolling, docs/hls.md item 7).
        // (the Shiftmax of a block whose last score tile is still draining waits: its rows' maxima and last keys)
        // (in P.V on both iterations of a key at PV_II 2: the step's reads and writes are the same in either, and the
        // second one's ports are otherwise idle, so the Shiftmax under a P.V block takes every iteration of it)
        const bool sm_go = (qk || m == PM_Q_LOAD || m == PM_O_STEP || m == PM_SM_REST || pv) &&
                           !(ps.sd.pending && ps.sd.half == sm.st.half);
        SmReads srd = att_sm_reads<Cfg>(sm, d);
        if (!sm_go) srd.ok[0] = srd.ok[1] = false;
        int8_t xs[2][SM] = {};  // the scores the Shiftmax step reads: slot q's key i0 + o in xs[q][o]
        ISEG_PRAGMA(HLS ARRAY_PARTITION variable=xs type=complete)
        ISEG_CHECK(!(so && (srd.ok[0] || srd.ok[1]) && srd.half == ps.sd.half),
                   "sm.s ports: the score lanes' writes and the Shiftmax's reads on one half");
        const int ro = srd.i0 % SM;  // the bank of the slots' first key
    S_PORT_A:
        for (int h = 0; h < 2; ++h) {
            ISEG_PRAGMA(HLS UNROLL)
            if (!((so && h == ps.sd.half) || (srd.ok[0] && h == srd.half))) continue;  // nothing on this half's banks
        S_PORT_A_KEY:
            for (int kb = 0; kb < SM; ++kb) {
                ISEG_PRAGMA(HLS UNROLL)
                const int b = sm.s_bank(h, kb), o = kb >= ro ? kb - ro : kb - ro + SM;  // slot 0's key i0 + o is here
                const int lw = so && h == ps.sd.half ? s_pa[b] : -1;
                const bool rd = srd.ok[0] && h == srd.half && o < srd.n;
                if (lw >= 0 || rd) {
                    const int row = lw >= 0 ? s_row[lw] : srd.row[0];
                    const int wd = (lw >= 0 ? s_key[lw] : srd.i0 + o) / SM;
                    ISEG_RW(sm, s, b, sm.s_word(row, wd * SM + kb), lw >= 0);
                    if (lw >= 0)
                        sm.s[h][row][wd * SM + kb] = s_val[lw];
                    else
                        xs[0][o] = sm.s[h][row][wd * SM + kb];
                }
            }
        }
    S_PORT_B:
        for (int h = 0; h < 2; ++h) {
            ISEG_PRAGMA(HLS UNROLL)
            if (!((s_two && h == ps.sd.half) || (srd.ok[1] && h == srd.half))) continue;
        S_PORT_B_KEY:
            for (int kb = 0; kb < SM; ++kb) {
                ISEG_PRAGMA(HLS UNROLL)
                const int b = sm.s_bank(h, kb), o = kb >= ro ? kb - ro : kb - ro + SM;
                const int lw = s_two && h == ps.sd.half ? s_pb[b] : -1;
                const bool rd = srd.ok[1] && h == srd.half && o < srd.n;
                if (lw >= 0 || rd) {
                    const int row = lw >= 0 ? s_row[lw] : srd.row[1];
                    const int wd = (lw >= 0 ? s_key[lw] : srd.i0 + o) / SM;
                    ISEG_RW(sm, s, b, sm.s_word(row, wd * SM + kb), lw >= 0);
                    if (lw >= 0)
                        sm.s[h][row][wd * SM + kb] = s_val[lw];
                    else
                        xs[1][o] = sm.s[h][row][wd * SM + kb];
                }
            }
        }
        // The writers of g.a, as requests (gemm.h ABankReq): at most one of them runs in an iteration (a_beat and the
        // LayerNorm loader by fuse_ln, the Shiftmax only in attention's modes), into the half the array does not read.
        // Slot 0: the A loader's step, the LayerNorm statistics' beat, or the Shiftmax's row r; slot 1: the Shiftmax's
        // row r + ceil(R / 2). The left-operand loaders take the beat read above (one request, its address muxed by
        // mode): the next row block (GEMM), the first one (GEMM_A0), a LayerNorm alone (LN); the next Q block into the
        // other half of sm.q (QK, Q_LOAD).
        ABankReq<Cfg> sl[2];
        att_sm_tick<Cfg>(sm, d, xs, sm_go, sl);
        LnStep<Cfg> lns = ln_step_none<Cfg>();
        if (ln_go) {
            lns = ln_step<Cfg>(ps.ln, v1, g);
            sl[0] = lns.wr;
        }
        if (a_go) sl[0] = a_beat<Cfg>(ps.al, v1);
        ISEG_CHECK(int(sm_go && sm.st.phase != SM_DONE) + int(ln_go) + int(a_go) <= 1,
                   "engine loop: two writers of g.a in one iteration");
        if (pf_go) ws[0] = prefetch_beat<Cfg>(pf, v0);  // (never beside the K/V loader: GEMM modes only)
        if (kv_go) kv_take<Cfg>(ps.kv, d, kat >= 0, v2, g, ws, kv_one, v1);
        ABankReq<Cfg> qs = bank_req_none<Cfg>();  // the Q loader's step into sm.q
        if (q_go) qs = att_q_beat<Cfg>(ps.q, dh, v1);
        // g.a: exactly two accesses per bank (2 R row banks), one site per port. Port A reads or writes (one site,
        // its direction a run-time value: the two arms of one if / else): the array's word s / A_WORD of every row of
        // the half it reads, or the LayerNorm normalise step's word in place, or a request's first word. Port B writes:
        // a request's second word, or the LayerNorm's write-back, which ln_norm computes between the two from what
        // port A read (one iteration, so the pipeline carries nothing between them). A write request on a bank port A
        // reads for the array or the LayerNorm stops the C-simulation: the schedule never asks for it.
        constexpr int AW = Cfg::A_WORD, LNW = ln_words<Cfg>();
        const bool arr_a = arr && !qk, arr_q = arr && qk;
        const int aword = (KD * s) / AW, alane = (KD * s) % AW;  // the array's word of every row bank (g.a or sm.q), its
                                                                   // first lane (KD of them: KD divides AW)
        // the requests' banks (-1: none)
        const int b_s0 = sl[0].ok ? g.a_bank(sl[0].half, sl[0].row) : -1;
        const int b_s1 = sl[1].ok ? g.a_bank(sl[1].half, sl[1].row) : -1;
        const int b_ln = lns.rd ? g.a_bank(lns.half, lns.row) : -1;
        const bool s0a = bank_req_word(sl[0], 0), s1a = bank_req_word(sl[1], 0);  // port A: a slot's first word
        const bool s0b = bank_req_word(sl[0], 1), s1b = bank_req_word(sl[1], 1);  // port B: its second
        int16_t ard[KD][R];    // the array's operands from g.a: lanes alane.. of the word port A reads (the half ah)
        int16_t lrd[LNW][AW];  // the LayerNorm's words in place (port A of its bank)
        ISEG_PRAGMA(HLS ARRAY_PARTITION variable=ard type=complete dim=0)
        ISEG_PRAGMA(HLS ARRAY_PARTITION variable=lrd type=complete dim=0)
        // the schedule's promise, checked: no write request on a bank port A reads for the array or the LayerNorm
        ISEG_CHECK(!(arr_a && ((b_s0 >= 0 && sl[0].half == ah) || (b_s1 >= 0 && sl[1].half == ah))) &&
                       (b_ln < 0 || (b_ln != b_s0 && b_ln != b_s1)),
                   "g.a port A: a write request on a bank the array or the LayerNorm reads");
        ISEG_CHECK(!(arr_a && b_ln >= 0 && lns.half == ah), "g.a port A: the array and the LayerNorm read one bank");
    A_PORT_A:
        for (int h = 0; h < 2; ++h) {
            ISEG_PRAGMA(HLS UNROLL)
            // this half's rows that a request writes or the LayerNorm reads (-1: none); the array reads all of it (hr)
            const bool hr = arr_a && h == ah;
            const int r0 = b_s0 >= 0 && sl[0].half == h ? sl[0].row : -1;
            const int r1 = b_s1 >= 0 && sl[1].half == h ? sl[1].row : -1;
            const int rl = b_ln >= 0 && lns.half == h ? lns.row : -1;
            if (!hr && r0 < 0 && r1 < 0 && rl < 0) continue;  // nothing on this half's banks
        A_PORT_A_ROW:
            for (int r = 0; r < R; ++r) {
                ISEG_PRAGMA(HLS UNROLL)
                const int q = r == r0 ? 0 : r == r1 ? 1 : -1;
                const bool lr = r == rl, wr = q == 0 ? s0a : q == 1 ? s1a : false;
            A_PORT_A_W:  // one word (the LayerNorm: ln_words, 1 on every planned array)
                for (int j = 0; j < LNW; ++j) {
                    ISEG_PRAGMA(HLS UNROLL)
                    if ((wr || hr || lr) && (j == 0 || lr)) {
                        const int w = wr ? sl[q].w0 : lr ? lns.w0 + j : aword;
                        ISEG_RW(g, a, g.a_bank(h, r), w, wr);
                        if (wr) {
                            bank_word_write<AW>(g.a[h][r], w, sl[q].v, sl[q].m, 0);
                            g.a_at[h][r] = ISEG_ITER();
                        } else if (hr) {
                            ISEG_CHECK(g.a_at[h][r] < it0 || ISEG_ITER() - g.a_at[h][r] >= kEngineDepth,
                                       "g.a: the array read a row fewer than kEngineDepth iterations after its write "
                                       "in one pass (gemm_pass_blocks)");
                        A_LANE_U:
                            for (int u = 0; u < KD; ++u) {
                                ISEG_PRAGMA(HLS UNROLL)
                                ard[u][r] = g.a[h][r][w * AW + alane + u];
                            }
                        } else
                            bank_word_read<AW>(g.a[h][r], w, lrd[j]);
                    }
                }
            }
        }
        ABankReq<Cfg> lnw = bank_req_none<Cfg>();  // the LayerNorm's write-back (and its trace put on gmem2)
        if (ln_go) lnw = ln_norm<Cfg>(ps.ln, lns, lrd, ps.ts, scratch_b, g);
        const int b_lw = lnw.ok ? g.a_bank(lnw.half, lnw.row) : -1;
        ISEG_CHECK(b_lw < 0 || (b_lw != b_s0 && b_lw != b_s1),
                   "g.a port B: a write request and the LayerNorm's write-back on one bank");
    A_PORT_B:
        for (int h = 0; h < 2; ++h) {
            ISEG_PRAGMA(HLS UNROLL)
            const int r0 = b_s0 >= 0 && s0b && sl[0].half == h ? sl[0].row : -1;
            const int r1 = b_s1 >= 0 && s1b && sl[1].half == h ? sl[1].row : -1;
            const int rl = b_lw >= 0 && lnw.half == h ? lnw.row : -1;
            if (r0 < 0 && r1 < 0 && rl < 0) continue;
        A_PORT_B_ROW:
            for (int r = 0; r < R; ++r) {
                ISEG_PRAGMA(HLS UNROLL)
                const int q = r == r0 ? 0 : r == r1 ? 1 : -1;
                const bool lw = r == rl;  // (never a slot's bank: the LayerNorm is the iteration's writer)
            A_PORT_B_W:
                for (int j = 0; j < LNW; ++j) {
                    ISEG_PRAGMA(HLS UNROLL)
                    if ((q >= 0 && j == 0) || (lw && bank_req_word(lnw, j))) {
                        const int w = q >= 0 ? sl[q].w0 + 1 : lnw.w0 + j;
                        ISEG_WR(g, a, g.a_bank(h, r), w);
                        if (q >= 0)
                            bank_word_write<AW>(g.a[h][r], w, sl[q].v, sl[q].m, 1);
                        else
                            bank_word_write<AW>(g.a[h][r], w, lnw.v, lnw.m, j);
                        g.a_at[h][r] = ISEG_ITER();
                    }
                }
            }
        }
        // sm.q: the same two ports per bank. Port A: the array's word (QK) of the half it reads (p.qh), or the Q
        // loader's first word; port B: the Q loader's second word. The loader fills the other half (the next block).
        int16_t qrd[KD][R];  // the array's operands from sm.q (lanes alane.. of the word port A reads)
        ISEG_PRAGMA(HLS ARRAY_PARTITION variable=qrd type=complete dim=0)
        const bool qa = bank_req_word(qs, 0), qb = bank_req_word(qs, 1);
        ISEG_CHECK(!(arr_q && qs.ok && qs.half == p.qh), "sm.q port A: the Q loader's write on a bank the array reads");
    Q_PORT_A:
        for (int h = 0; h < 2; ++h) {
            ISEG_PRAGMA(HLS UNROLL)
            const bool hr = arr_q && h == p.qh;
            const int rq = qs.ok && qa && qs.half == h ? qs.row : -1;
            if (!hr && rq < 0) continue;
        Q_PORT_A_ROW:
            for (int r = 0; r < R; ++r) {
                ISEG_PRAGMA(HLS UNROLL)
                const bool wr = r == rq;
                if (wr || hr) {
                    const int w = wr ? qs.w0 : aword;
                    ISEG_RW(sm, q, sm.q_bank(h, r), w, wr);
                    if (wr)
                        bank_word_write<AW>(sm.q[h][r], w, qs.v, qs.m, 0);
                    else
                    Q_LANE_U:
                        for (int u = 0; u < KD; ++u) {
                            ISEG_PRAGMA(HLS UNROLL)
                            qrd[u][r] = sm.q[h][r][w * AW + alane + u];
                        }
                }
            }
        }
    Q_PORT_B:
        for (int h = 0; h < 2; ++h) {
            ISEG_PRAGMA(HLS UNROLL)
            const int rq = qs.ok && qb && qs.half == h ? qs.row : -1;
            if (rq < 0) continue;
        Q_PORT_B_ROW:
            for (int r = 0; r < R; ++r) {
                ISEG_PRAGMA(HLS UNROLL)
                if (r == rq) {
                    ISEG_WR(sm, q, sm.q_bank(h, r), qs.w0 + 1);
                    bank_word_write<AW>(sm.q[h][r], qs.w0 + 1, qs.v, qs.m, 1);
                }
            }
        }
        // g.w: exactly two accesses per half (a memory each), one site per port. Port A reads the array's row of the
        // half it reads (p.wh) or takes write request 0 (the weight prefetch's word, the transposer's first row or the
        // V word); port B takes write request 1 (the transposer's second row). The writers fill the half the array
        // does not read (the next layer's weights, the next head's K/V): a write on the array's half stops the run.
        const long w_row = wbase + long(KD) * s;  // the word of KD rows the array reads
        ISEG_CHECK(!(arr && ((ws[0].ok && ws[0].half == p.wh) || (ws[1].ok && ws[1].half == p.wh))),
                   "g.w ports: a write request on the half the array reads");
        int8_t wrd[KD][C];
        ISEG_PRAGMA(HLS ARRAY_PARTITION variable=wrd type=complete dim=0)
    W_PORT_A:
        for (int h = 0; h < 2; ++h) {
            ISEG_PRAGMA(HLS UNROLL)
            const bool rd = arr && h == p.wh, wr = !rd && ws[0].ok && ws[0].half == h;
            if (rd || wr) {
                const int row = rd ? int(w_row) : ws[0].row;
                ISEG_RW(g, w, h, g.w_word(row), wr);
                if (wr) {
                    w_word_write<Cfg>(g.w[h][row], ws[0]);
                } else {
                W_ROW_U:
                    for (int u = 0; u < KD; ++u) {
                        ISEG_PRAGMA(HLS UNROLL)
                    W_ROW_R:
                        for (int c = 0; c < C; ++c) {
                            ISEG_PRAGMA(HLS UNROLL)
                            wrd[u][c] = g.w[h][row + u][c];
                        }
                    }
                }
            }
        }
    W_PORT_B:
        for (int h = 0; h < 2; ++h) {
            ISEG_PRAGMA(HLS UNROLL)
            if (ws[1].ok && ws[1].half == h) {
                ISEG_WR(g, w, h, g.w_word(ws[1].row));
                w_word_write<Cfg>(g.w[h][ws[1].row], ws[1]);
            }
        }
        // the array step, on what port A read: a row's operands are lanes KD s mod A_WORD .. + KD - 1 of its word; a
        // P.V step's keys past T are zero (their rows of w are not V's)
        if (arr) {
            int16_t av[KD][R];
            ISEG_PRAGMA(HLS ARRAY_PARTITION variable=av type=complete dim=0)
        ARRAY_A_U:
            for (int u = 0; u < KD; ++u) {
                ISEG_PRAGMA(HLS UNROLL)
                const bool live = KD == 1 || !pv || long(KD) * s + u < T;
            ARRAY_A:
                for (int r = 0; r < R; ++r) {
                    ISEG_PRAGMA(HLS UNROLL)
                    const int16_t x = qk ? qrd[u][r] : ard[u][r];  // Q block (QK) or row block / P (GEMM, P.V)
                    av[u][r] = !live ? int16_t(0) : split ? int16_t(par ? x >> 8 : x & 0xff) : x;
                    ISEG_CHECK(fits_signed(av[u][r], AB), "array operand exceeds its width (arr_a_bits)");
                }
            }
            array_step<Cfg, AB, pack_of<Cfg>::value, KD>(g, av, wrd, s == 0 && par == 0, split && par ? 8 : 0);
        }
        if (so && s + 1 == sdsteps) ps.sd.pending = false;  // the tile is drained (a key tile's end may set the next)
        // counters; a tile's last step moves its sums to the drain registers (one copy, whichever mode)
        const bool tile_end = ((gemm || qk) && s + 1 == steps) || (pv && par + 1 == PVII && s + 1 == steps);
        if (tile_end) acc_to_drain<Cfg>(g);
        if (gemm) {
            if (++s == steps) {
                const int n0 = nt * C;
                ps.dt.t0 = t0;
                ps.dt.n0 = n0;
                ps.dt.rows = d.T - t0 < R ? d.T - t0 : R;
                ps.dt.cols = d.N - n0 < C ? d.N - n0 : C;
                ps.dt.pending = true;
                ps.dt.in_off = in0;
                ps.dt.out_off = out0;
                ps.dt.r = ps.dt.k = 0;
                wbase += d.K;
                ++nt;
                s = 0;
                steps = gsteps_p;
                pf0 = p.pf0_p;
                if (nt == nt_g && blk + 1 < p.blocks) {  // the pass's next row block: the one the loaders just filled
                    ISEG_CHECK(p.fuse_ln ? ps.ln.phase == LN_DONE : ps.al.r >= R,
                               "GEMM layer: a row block's loader incomplete at the block's end");
                    ++blk;
                    nt = 0;
                    wbase = 0;
                    cur ^= 1;
                    t0 += R;
                    in0 += p.in_step;
                    out0 += p.out_step;
                    const int tn = t0 + R;  // the block the loaders fill now, into the half just read
                    const bool more = tn < d.T;
                    const int rn = more ? (d.T - tn < R ? d.T - tn : R) : 0;
                    a_share = more ? p.a_share_n : 0;
                    steps = gsteps_p = more ? p.steps_n : p.steps_l;
                    al0 += p.al_step;
                    ps.al.src = al0;
                    ps.al.rows = rn;
                    ps.al.half = cur ^ 1;
                    ps.al.r = more ? 0 : R;
                    ps.al.kb = 0;
                    ps.ln.src += p.ln_sstep;
                    ps.ln.dst += p.ln_dstep;
                    ps.ln.rows = rn;
                    ps.ln.half = cur ^ 1;
                    ln_block_start(ps.ln);
                    ps.ln.phase = p.fuse_ln && more ? LN_RUN : LN_DONE;
                }
            }
        } else if (qk) {
            if (++s == steps) {
                if (nt < kt_n) {  // a key tile ended (not the drain-only tail): its scores drain next
                    dn0 = nt * C;
                    dcols = T - dn0 < C ? T - dn0 : C;
                    sr = sk = 0;
                    ps.sd.pending = true;
                    ps.sd.half = p.half;
                    ps.sd.rows = p.rows;
                }
                wbase += dh;
                ++nt;
                s = 0;
                steps = nt < kt_n ? p.steps_p : sdsteps;
            }
        } else if (pv) {
            if (par + 1 == PVII) {
                par = 0;
                ++s;
            } else {
                ++par;
            }
            if (tile_end) {  // the tile waits in g.dr: its drain runs in the next tile (the same pass), or after
                ps.pd.pending = true;
                ps.pd.c0 = pc0;
                ps.pd.cols = dh - pc0 < C ? dh - pc0 : C;
                ps.pd.orow = ps.pd.orow0;
                ps.pd.r = ps.pd.k = 0;
                pc0 += C;     // the next channel tile: its V rows follow this tile's (T in whole words of w)
                wbase += tw;
                s = 0;
                steps = p.pv_n1;
            }
        } else if (m == PM_LN) {
            if (++s == p.steps) {  // the next row block
                ISEG_CHECK(ps.ln.phase == LN_DONE, "LAYERNORM: loader block incomplete");
                s = 0;
                ++nt;
                const int t0 = nt * R;
                ps.ln.src += p.in0;  // steps taken by the sequencer, outside the loop
                ps.ln.dst += p.out0;
                ps.ln.rows = d.T - t0 < R ? d.T - t0 : R;
                ln_block_start(ps.ln);
            }
        }
    }
    const bool gemm = m == PM_GEMM, qk = m == PM_QK, pv = m == PM_PV;  // the last mode of the pass
    if (gemm) {
        ISEG_CHECK(nt == (d.N + C - 1) / C && s == 0, "GEMM layer: the tile counters left the block's tiles");
        ISEG_CHECK(ps.ln.phase == LN_DONE, "GEMM layer: fused LayerNorm loader incomplete");
    }
    if (qk) ISEG_CHECK(nt == kt_n + (p.sd_defer ? 0 : 1) && s == 0 && ps.sd.pending == p.sd_defer,
                       "Q.K^T: the key-tile counters left the block's tiles");
    if (pv) ISEG_CHECK(par == 0 && s == 0 && pc0 >= dh, "P.V: the channel tiles left unfinished");
}

// ---------------------------------------------------------------------------------------------
// Passes per layer, a bound (no unbounded loops): an attention layer of H heads and nb query blocks takes
// about H * nb * (channel tiles + 4).
static constexpr int kMaxPasses = 1 << 20;

// The sequencer: the schedule of one layer as a state machine. seq_begin starts it; each seq_next runs the
// setup before the next pass and returns it (false: the layer is done).
enum SeqPhase : int32_t {
    SQ_DONE = 0,
    SQ_GEMM_A0, SQ_GEMM_BLOCK, SQ_GEMM_TAIL,  // gemm_begin
    SQ_LN,                                    // layernorm_begin
    SQ_HEAD, SQ_QK0, SQ_QR0, SQ_BLOCK, SQ_PV, SQ_O, SQ_QK, SQ_QR, SQ_REST, SQ_BLOCK_END, SQ_EPI_PV, SQ_EPI_O,
    SQ_HEAD_END  // attention_begin
};

struct Seq {
    int32_t phase;
    LayerDesc ln;     // GEMM: the fused LayerNorm row (fuse_ln)
    bool fuse_ln;
    int a_blk, w_share, mb, mb_n, nt_n;  // GEMM
    int h, i, nb;                        // attention: head, query block, blocks
    bool defer;                          // attention: PV(i - 1)'s last drain deferred into QK(i + 1)
    bool chain;                          // attention: PV(i - 1) runs as the first part of QK(i + 1)'s pass
    long shadow, qk_it;                  // attention: Shiftmax steps taken inside the array passes
    int kvoff;                           // attention: the odd heads' first row of K/V in w[wcur ^ 1]
    RqParams rq_s;
};

// A GEMM layer: out (T, N) = stage(A (T, K) . B (K, N)) (gemm.h: the tile schedule). in: A int8 at scratch + d.in;
// B in w[g.wcur] (prefetched, or loaded for MASK_PRODUCT); bias / rq from the blob; with fuse_ln, the left
// operand comes through the LayerNorm loader from ln's input, and ln's output is written too.
template <class Cfg>
Seq gemm_begin(const LayerDesc& d, const beat_t<Cfg>* blob, GemmBuffers<Cfg>& g,
               const Prefetch& pf, const LayerDesc& ln, bool fuse_ln, PassState<Cfg>& ps) {
    Seq sq = {};
    sq.phase = SQ_GEMM_A0;
    sq.ln = ln;
    sq.fuse_ln = fuse_ln;
    const int W = Cfg::AXI_BYTES;
    load_consts<Cfg>(d, blob, g);
    if (fuse_ln) ln_consts<Cfg>(ln, blob, g);
    // the LayerNorm's input rows of block mb + 1 are read while the output stage stores block mb: this
    // layer's output must not overlap them (generator/plan.py keeps the input live through this row), unless
    // it is that input, updated in place row for row (same rows, same byte stride: each row is stored after
    // it was read)
    ISEG_CHECK(!fuse_ln || (d.out == ln.in && long(d.out_stride) * (d.out_bits / 8) == 2L * ln.in_stride) ||
                   d.out + (long(d.T - 1) * d.out_stride + d.N) * (d.out_bits / 8) <= ln.in ||
                   ln.in + (long(d.T - 1) * ln.in_stride + d.K) * 2 <= d.out,
               "GEMM layer: output overlaps the fused LayerNorm's input");
    ISEG_CHECK(d.K % kd_of<Cfg>::value == 0, "GEMM layer: Cfg::KD must divide K (a tile's rows of w are whole words)");
    sq.a_blk = fuse_ln ? ln_block_steps(Cfg::R, d.K, W, Cfg::LN_LANES) : a_beats(Cfg::R, d.K, load_lanes<Cfg>());
    sq.mb_n = (d.T + Cfg::R - 1) / Cfg::R;
    sq.nt_n = (d.N + Cfg::C - 1) / Cfg::C;
    const long tiles = long(sq.mb_n) * sq.nt_n;
    sq.w_share = int((prefetch_beats(pf, prefetch_lanes<Cfg>()) + tiles - 1) / tiles);
    const int rows0 = d.T < Cfg::R ? d.T : Cfg::R;
    const long lin = fuse_ln ? ln.in : 0, lout = fuse_ln ? ln.out : 0;
    ps.al = ALoad{long(d.in), long(d.in_stride), rows0, d.K, 0, 0, 0};
    ps.ln = ln_load(lin, lout, long(ln.in_stride), long(ln.out_stride), rows0, d.K, 1, 0,
                    fuse_ln ? LN_RUN : LN_DONE, ln, Cfg::AXI_BYTES);
    ps.dt = Drain{0, 0, 0, 0, false, 0, 0, 0, 0};
    return sq;
}

// A LAYERNORM row that is not fused into a GEMM (no LINEAR right after it reads its output: the mask norm before
// the argmax, i16 out) runs on the same LayerNorm loader, alone: row block
// after row block of R rows, ln_block_steps each, one pass. A row's input is read into a[0] (the stats pass)
// before its output row is stored (its normalise follows its chain), so the output may be the input, updated in
// place, as long as an output row never outruns its input row (stride: it then covers input rows already read),
// or the two must be disjoint.
template <class Cfg>
Seq layernorm_begin(const LayerDesc& d, const beat_t<Cfg>* blob, GemmBuffers<Cfg>& g, PassState<Cfg>& ps) {
    const int bytes = d.out_bits / 8;
    ISEG_CHECK((d.out == d.in && long(d.out_stride) * bytes <= 2L * d.in_stride) ||
                   d.out + (long(d.T - 1) * d.out_stride + d.N) * bytes <= d.in ||
                   d.in + (long(d.T - 1) * d.in_stride + d.N) * 2 <= d.out,
               "LAYERNORM: output overlaps the input of a later row");
    ln_consts<Cfg>(d, blob, g);
    ps.ln = ln_load(long(d.in), long(d.out), long(d.in_stride), long(d.out_stride), d.T < Cfg::R ? d.T : Cfg::R,
                    d.N, bytes, 0, LN_RUN, d, Cfg::AXI_BYTES);
    Seq sq = {};
    sq.phase = SQ_LN;
    return sq;
}

// Multi-head attention (attention.h: the block schedule). Per head: K_h and V_h on chip, then per query block
// b: PV(b - 1), QK(b + 1), what is left of SM(b); QK(0) the prologue, PV(nb - 1) the epilogue.
template <class Cfg>
Seq attention_begin(const LayerDesc& d, const beat_t<Cfg>* blob, GemmBuffers<Cfg>& g, const Prefetch& pf) {
    static_assert(Cfg::KMAX >= Cfg::NMAX, "P.V reduces over all keys: KMAX must be >= NMAX");
    const int kvr = kv_rows<Cfg>(d);
    ISEG_CHECK(d.d_head % kd_of<Cfg>::value == 0, "ATTENTION: Cfg::KD must divide d_head (K_h^T's rows: whole words)");
    ISEG_CHECK(kvr <= Cfg::WROWS, "ATTENTION: K_h and V_h exceed Cfg::WROWS");
    // the odd heads' K/V go to the top of the other half, whose first rows hold the next layer's prefetched weights
    // (the planner sizes WROWS for both: estimate.wrows_needed)
    const int kvoff = Cfg::WROWS - kvr;
    ISEG_CHECK(!kv_overlap_of<Cfg>::value || d.heads < 2 || pf.half != (g.wcur ^ 1) ||
                   (pf.total + Cfg::C - 1) / Cfg::C <= kvoff,
               "ATTENTION: the odd heads' K/V overlap the next layer's prefetched weights (WROWS too small)");
    // a per-channel RQ_8 of P.V is the output lanes' table, banked for OUT_LANES reads a step: P.V lanes past them
    // take rq2's scalar only (pv_lanes; the planner widens them only for a per-tensor rq2, the checkpoint's format)
    ISEG_CHECK(pv_lanes<Cfg>() == Cfg::OUT_LANES || d.rq2.tab < 0,
               "ATTENTION: a per-channel P.V requant needs PV_LANES = OUT_LANES (a table the lanes read)");
    load_rq_table<Cfg, 1>(d.rq2, d.heads * d.d_head, blob, g);
    Seq sq = {};
    sq.phase = SQ_HEAD;
    sq.nb = (d.T + Cfg::R - 1) / Cfg::R;
    sq.rq_s = rq_read<Cfg>(d.rq, blob, 0);
    sq.kvoff = kvoff;
    return sq;
}

// Where head h's K/V live: even heads in w[wcur] from row 0 (the qkv layer's weights are spent), odd heads in the
// other half from row sq.kvoff (attention_begin), so that the loader fills one while the array reads the other.
// (Cfg::KV_OVERLAP false: every head in w[wcur] from row 0.)
template <class Cfg>
int kv_half(const GemmBuffers<Cfg>& g, int h) {
    return kv_overlap_of<Cfg>::value ? g.wcur ^ (h & 1) : g.wcur;
}
template <class Cfg>
int kv_off(const Seq& sq, int h) {
    return kv_overlap_of<Cfg>::value && (h & 1) ? sq.kvoff : 0;
}

// Q.K^T of one query block: scores into s[half], row maxima into mx[half] (cleared here), Q block qh on the array;
// key tile 0 also drains a pending P.V tile. Its iterations: att_qk_steps.
template <class Cfg>
Pass qk_pass(const Seq& sq, const LayerDesc& d, int rows, int half, int qh, bool pd_pending, bool sd_pending,
             bool defer, AttSm<Cfg>& sm, const GemmBuffers<Cfg>& g) {
    att_mx_init<Cfg>(sm, half);
    const int dh = d.d_head, pdsteps = pv_drain_steps<Cfg>(), sdsteps = score_drain_steps<Cfg>();
    const int dhs = kd_steps<Cfg>(dh);  // the array's steps of a key tile
    const long total = att_qk_steps(d.T, dhs, Cfg::C, sdsteps, pd_pending, pdsteps, sd_pending, defer);
    Pass p = pass_of(PM_QK, total, total + kEngineDepth);
    p.hoff = sq.h * dh;
    p.rows = rows;
    p.half = half;
    p.qh = qh;
    p.steps = pd_pending && pdsteps > dhs ? pdsteps : dhs;
    if (sd_pending && sdsteps > p.steps) p.steps = sdsteps;
    p.sd_defer = defer;
    p.steps_p = sdsteps > dhs ? sdsteps : dhs;
    p.rq_s = sq.rq_s;
    p.wh = kv_half(g, sq.h);
    p.koff = kv_off<Cfg>(sq, sq.h);
    return p;
}

// A P.V block's pass part: every channel tile in one pass (tile 0 runs T keys; tile j >= 1 max(T, drain), tile
// j - 1's drain in its first keys; the last tile's drain after the pass, in O_STEP or in QK(i + 1)'s key tile 0), one
// pipeline fill for the block, not one per tile. A block starts with nothing pending (pv_drain). Sets p's mode to PV
// and p.total to the part's iterations (PV_II a key), adds them to p.cycles (one cycle each), and sets its fields;
// SQ_QK appends a chained QK after them (Pass::at2).
template <class Cfg>
void pv_part(Pass& p, const LayerDesc& d, const PvDrain& pd, bool sd_pending) {
    constexpr int C = Cfg::C, PVII = pv_ii_of<Cfg>::value;
    const int T = d.T, dh = d.d_head, dsteps = pv_drain_steps<Cfg>(), sdsteps = score_drain_steps<Cfg>();
    const int vt_n = (dh + C - 1) / C;
    ISEG_CHECK(!pd.pending, "P.V: a block's pass with a tile of the previous block still pending");
    // tile 0 drains the last QK's last score tile in its first keys when it is pending (ScoreDrain)
    const int ts = kd_steps<Cfg>(T);  // the array's steps of a channel tile (KD keys each)
    const long n0 = sd_pending && sdsteps > ts ? sdsteps : ts, n1 = dsteps > ts ? dsteps : ts;
    const long its = long(PVII) * (n0 + long(vt_n - 1) * n1);
    p.mode = PM_PV;
    p.total = its;
    p.cycles += its;
    p.phalf = pd.half;
    p.vrow = long((T + C - 1) / C) * dh;  // tile 0's first V row in w
    p.pv_n0 = int(n0);
    p.pv_n1 = int(n1);
}

// Whether query blocks 1 .. nb - 2 of a head run as one pass (Pass::chain), block i's PV(i - 1) and QK(i + 1) after
// block i - 1's, where each would be a pass of its own (one fill and one sequencer call each). Asked at block 1's
// pass, whose shadow (the Shiftmax steps its iterations give, sq.shadow + qk_it) and Q load are every chained
// block's: the blocks are alike (R rows, a Q block of R rows' beats, a deferred P.V tile and the same score tile
// pending). It holds when no block leaves a Q rest or a Shiftmax rest, the Shiftmax ending at least kEngineDepth
// iterations before the block does: the next block's P.V reads its probabilities (g.a, DEPENDENCE inter false) in
// the same pass, so no write may be closer to the read than the loop's depth (C-simulation checks it at the read,
// g.a_at). nb >= 4: at least two blocks. estimate.attention_cycles counts the same.
template <class Cfg>
bool att_chain_ok(const Seq& sq, const LayerDesc& d, long qk_it, const QLoad& q) {
    const long steps = sm_block_steps(Cfg::R, Cfg::R, d.T, Cfg::SM_LANES, sm_norm_lanes<Cfg>());
    return sq.i == 1 && sq.nb >= 4 && q.beats <= qk_it && sq.shadow + qk_it - steps >= kEngineDepth;
}

// Row blocks of a GEMM pass. Block b + 1 may follow block b in one pass (no drain of the loop between them) when the
// array's first read of it, the next tile's step 0, comes at least kEngineDepth iterations after the loader's last
// write of it, which falls in the first `a_share` steps of block b's last tile: g.a carries DEPENDENCE inter false,
// so nothing else would keep a read from overtaking a write in the pipeline (C-simulation checks the distance at
// every read: engine_pass, g.a_at). The boundary after the pass's first block has that block's last tile (`last0`
// steps: its only tile may be the layer's first); every later boundary a later tile (`later`), so they chain all or
// none. left: the layer's blocks from the pass's first on; a_share: a block's load share (a block after it); quiet:
// the block's last tiles that do not load (gemm_quiet_tiles), `later` steps each, after its last loading tile (`last0`
// steps for the pass's first block).
inline int gemm_pass_blocks(int left, int last0, int later, int a_share, int quiet = 0) {
    const long q = long(quiet) * later;
    if (left < 2 || last0 - a_share + q < kEngineDepth) return 1;
    return later - a_share + q < kEngineDepth ? 2 : left;
}

// The quiet tiles of a GEMM row block: its last `quiet` tiles do not load the next block, whose load is spread over
// the others, so that the loader's last write comes kEngineDepth iterations before the next block's first read and
// the blocks share one pass of the engine loop (gemm_pass_blocks) where a short K would end a pass per block (K 192 on
// a K-unrolled array: 48-step tiles). The fewest quiet tiles that do it without lengthening a tile (the share at most
// `later`, a later tile's steps without a load: gemm_tile_steps(K steps, drain, 0, ...)); 0 when every tile loading
// already lets the later blocks chain, or when nothing does. nt: the block's tiles; a_blk: the block's load steps.
inline int gemm_quiet_tiles(int nt, int a_blk, int later) {
    if (nt < 2 || a_blk <= 0) return 0;
    const int a0 = (a_blk + nt - 1) / nt;
    if ((later > a0 ? later : a0) - a0 >= kEngineDepth) return 0;
GEMM_QUIET:
    for (int q = 1; q < nt; ++q) {
        ISEG_PRAGMA(HLS loop_tripcount min=1 max=64)
        const int a = (a_blk + nt - q - 1) / (nt - q);
        if (a > later) return 0;
        if (later - a + long(q) * later >= kEngineDepth) return q;
    }
    return 0;
}

// The next pass of the layer (setup included); false when the layer is done.
template <class Cfg>
bool seq_next(Seq& sq, Pass& p, const LayerDesc& d, GemmBuffers<Cfg>& g,
              AttSm<Cfg>& sm, PassState<Cfg>& ps) {
    constexpr int R = Cfg::R, C = Cfg::C, PVII = pv_ii_of<Cfg>::value;
    const int dsteps = drain_steps<Cfg>(), pdsteps = pv_drain_steps<Cfg>();
    const int T = d.T, dh = d.d_head;
    const long st = d.in_stride;
    const long qkv = d.in;  // scratch offset of the qkv rows
SEQ_STEP:
    for (int k = 0; k < 8; ++k) {  // at most five phases hand out no pass before one does (an empty Q rest and
                                   // Shiftmax rest, SQ_BLOCK_END, SQ_BLOCK, SQ_PV, then SQ_QK's)
        switch (sq.phase) {
            // ---- GEMM: the first row block alone, the row blocks, the last tile's output lanes
            case SQ_GEMM_A0:
                p = pass_of(PM_GEMM_A0, sq.a_blk, sq.a_blk + kEngineDepth);
                p.fuse_ln = sq.fuse_ln;
                sq.phase = SQ_GEMM_BLOCK;
                sq.mb = 0;
                return true;
            case SQ_GEMM_BLOCK: {
                if (sq.mb == sq.mb_n) {
                    sq.phase = SQ_GEMM_TAIL;
                    break;
                }
                const int mb = sq.mb, t0 = mb * R, cur = mb & 1, tn = t0 + R;
                const bool more = mb + 1 < sq.mb_n;
                const int rn = more ? (d.T - tn < R ? d.T - tn : R) : 0;
                const LayerDesc& ln = sq.ln;
                const long lin = sq.fuse_ln ? ln.in : 0, lout = sq.fuse_ln ? ln.out : 0;
                ps.al = ALoad{d.in + long(tn) * d.in_stride, long(d.in_stride), rn, d.K, cur ^ 1,
                              more ? 0 : R, 0};
                ps.ln = ln_load(lin + long(tn) * ln.in_stride * 2, lout + long(tn) * ln.out_stride,
                                long(ln.in_stride), long(ln.out_stride), rn, d.K, 1, cur ^ 1,
                                sq.fuse_ln && more ? LN_RUN : LN_DONE, ln, Cfg::AXI_BYTES);
                // every tile after the layer's first has a pending one (gemm_tile_steps: its output stage); the
                // embed's output lanes read gmem0 first (pf0), the first tile's being the cls row (csteps)
                const int csteps = cls_steps<Cfg>(d);
                const int pf0_p = embed_fused(d) ? dsteps : 0;
                const int pf0 = embed_fused(d) ? (ps.dt.pending ? dsteps : csteps) : 0;
                const int ks = kd_steps<Cfg>(d.K);  // the array's steps of a tile
                const int steps_l = gemm_tile_steps(ks, dsteps, 0, pf0_p, sq.w_share);  // the layer's last: no load
                // a block's load share (a block after it), over its tiles but the last `quiet` (gemm_quiet_tiles: a
                // later tile without a load lasts steps_l)
                const int quiet = gemm_quiet_tiles(sq.nt_n, sq.a_blk, steps_l);
                const int a_n = (sq.a_blk + sq.nt_n - quiet - 1) / (sq.nt_n - quiet);
                const int a_share = more ? a_n : 0;
                const int steps = gemm_tile_steps(ks, ps.dt.pending ? dsteps : 0, a_share, pf0, sq.w_share);
                const int steps_n = gemm_tile_steps(ks, dsteps, a_n, pf0_p, sq.w_share);  // a block after it
                const int steps_p = more ? steps_n : steps_l;
                // the row blocks this pass runs (gemm_pass_blocks): one fill for all of them
                const int blocks = gemm_pass_blocks(sq.mb_n - mb, sq.nt_n - quiet == 1 ? steps : steps_n, steps_n, a_n,
                                                    quiet);
                const int nl = mb + blocks == sq.mb_n && blocks > 1 ? 1 : 0;  // the layer's last block among the later
                const long total = steps + long(sq.nt_n - 1) * steps_p +
                                   long(sq.nt_n) * (long(blocks - 1 - nl) * steps_n + long(nl) * steps_l);
                p = pass_of(PM_GEMM, total, total + kEngineDepth);
                p.wh = g.wcur;
                p.cur = cur;
                p.t0 = t0;
                p.a_share = a_share;
                p.w_share = sq.w_share;
                p.steps = steps;
                p.steps_p = steps_p;
                p.blocks = blocks;
                p.a_share_n = a_n;
                p.a_tiles = sq.nt_n - quiet;
                p.steps_n = steps_n;
                p.steps_l = steps_l;
                p.in_step = long(R) * d.in2_stride;
                p.out_step = long(R) * d.out_stride;
                p.al_step = long(R) * d.in_stride;
                p.ln_sstep = long(R) * ln.in_stride * 2;
                p.ln_dstep = long(R) * ln.out_stride;
                p.pf0 = pf0;
                p.pf0_p = pf0_p;
                p.csteps = csteps;
                p.fuse_ln = sq.fuse_ln;
                const long row0 = t0 + (embed_fused(d) ? d.n_prefix : 0);  // the output's first row of the block
                p.in0 = row0 * d.in2_stride;
                p.out0 = row0 * d.out_stride;
                sq.mb += blocks;
                return true;
            }
            case SQ_GEMM_TAIL:
                p = pass_of(PM_GEMM_TAIL, dsteps, dsteps + kEngineDepth);
                sq.phase = SQ_DONE;
                return true;
            // ---- LAYERNORM alone
            case SQ_LN: {
                const int blk = ln_block_steps(R, d.N, Cfg::AXI_BYTES, Cfg::LN_LANES);
                const long total = long((d.T + R - 1) / R) * blk;
                p = pass_of(PM_LN, total, total + kEngineDepth);
                p.steps = blk;
                p.in0 = long(R) * d.in_stride * 2;
                p.out0 = act_bytes(long(R) * d.out_stride, d.out_bits / 8);
                sq.phase = SQ_DONE;
                return true;
            }
            // ---- ATTENTION, head sq.h
            case SQ_HEAD: {  // Q(0), exposed, beside what is left of the head's K/V load (head 0: all of it)
                ps.q = q_block<Cfg>(qkv + long(sq.h) * dh, st, T < R ? T : R, dh, 0);
                if (sq.h == 0 || !kv_overlap_of<Cfg>::value)  // dual once Q(0)'s beats are read (q_req: T < R rows)
                    ps.kv = kv_start<Cfg>(d, sq.h, kv_half(g, sq.h), kv_off<Cfg>(sq, sq.h), g,
                                          (T < R ? T : R) * ((dh + load_lanes<Cfg>() - 1) / load_lanes<Cfg>()));
                ISEG_CHECK(ps.kv.h == sq.h, "ATTENTION: the K/V loader holds another head");
                sm.st = sm_idle();
                ps.pd = pv_drain(0, 0, 0, d.out_stride);
                ISEG_CHECK(!ps.sd.pending, "ATTENTION: a score tile pending at a head's start");
                const long n = ps.q.beats - ps.q.b, tot = n > ps.kv.left ? n : ps.kv.left;
                p = pass_of(PM_Q_LOAD, tot, tot > 0 ? tot + kEngineDepth : 0);
                sq.phase = SQ_QK0;
                return true;
            }
            case SQ_QK0: {  // QK(0), loading Q(1) under it; the next head's K/V load starts
                ISEG_CHECK(ps.kv.left == 0, "ATTENTION: a head's K/V load incomplete at its first Q.K^T");
                if (kv_overlap_of<Cfg>::value && sq.h + 1 < d.heads)
                    ps.kv = kv_start<Cfg>(d, sq.h + 1, kv_half(g, sq.h + 1), kv_off<Cfg>(sq, sq.h + 1), g);
                ps.q = sq.nb > 1 ? q_block<Cfg>(qkv + long(R) * st + long(sq.h) * dh, st, T - R < R ? T - R : R, dh, 1)
                                 : q_none();
                // its last score tile drains in block 0's QK(1) when there is one (ScoreDrain)
                p = qk_pass<Cfg>(sq, d, T < R ? T : R, 0, 0, ps.pd.pending, false, sd_defer_of<Cfg>::value && sq.nb > 1,
                                 sm, g);
                sq.phase = SQ_QR0;
                return true;
            }
            case SQ_QR0: {  // the Q(1) beats QK(0) left (none: no pass, and no call of its own)
                const long n = ps.q.beats - ps.q.b;
                sq.phase = SQ_BLOCK;
                sq.i = 0;
                if (n == 0) break;
                p = pass_of(PM_Q_LOAD, n, n + kEngineDepth);
                return true;
            }
            case SQ_BLOCK: {  // block i: SM(i) from s[i & 1] into g.a[i & 1], under PV(i - 1) and QK(i + 1)
                const int i = sq.i, t0 = i * R;
                sm.st = sm_begin(i & 1, T - t0 < R ? T - t0 : R);
                sq.shadow = 0;
                sq.defer = i + 1 < sq.nb;  // PV(i - 1)'s last drain under QK(i + 1)'s key tile 0
                // block i's last score tile drains in its first pass's first steps (PV(i - 1)'s tile 0, or QK(1)'s key
                // tile 0), the Shiftmax waiting for it
                // (in P.V(i - 1)'s tile 0 at one drain step a key, in QK(1)'s key tile 0 at one an iteration)
                if (ps.sd.pending) sq.shadow -= att_sm_wait(score_drain_steps<Cfg>(), i >= 1 ? PVII : 1);
                if (i >= 1) {
                    // the Shiftmax steps in every iteration of P.V (both of a key's at PV_II 2)
                    sq.shadow += att_pv_steps(kd_steps<Cfg>(T), (dh + C - 1) / C, pdsteps, sq.defer, ps.sd.pending,
                                              score_drain_steps<Cfg>(), PVII);
                    ps.pd = pv_drain(t0 - R, R, (i - 1) & 1, d.out_stride);
                    sq.phase = SQ_PV;
                } else {
                    sq.phase = SQ_QK;
                }
                break;
            }
            case SQ_PV:
            case SQ_EPI_PV: {  // every channel tile of P.V in one pass (pv_part)
                // With a QK(i + 1) after it (defer), PV(i - 1) is the first part of that QK's pass (SQ_QK chains
                // them): the two share no buffer (P.V reads g.a's probability half and V; Q.K^T reads a Q block and
                // K, writes the other score half), so the loop need not drain between them: one fill for the two.
                if (sq.phase == SQ_PV && sq.defer) {
                    sq.chain = true;
                    sq.phase = SQ_QK;
                    break;
                }
                p = pass_of(PM_PV, 0, kEngineDepth);
                pv_part<Cfg>(p, d, ps.pd, ps.sd.pending);
                p.hoff = sq.h * dh;
                p.rq_s = sq.rq_s;  // (the score lanes' requant: a pending score tile drains in tile 0)
                p.wh = kv_half(g, sq.h);
                p.koff = kv_off<Cfg>(sq, sq.h);
                sq.phase = sq.phase == SQ_EPI_PV ? SQ_EPI_O : SQ_O;
                return true;
            }
            case SQ_O:
            case SQ_EPI_O:  // the last P.V tile's output lanes alone
                p = pass_of(PM_O_STEP, pdsteps, pdsteps + kEngineDepth);
                p.hoff = sq.h * dh;
                sq.phase = sq.phase == SQ_EPI_O ? SQ_HEAD_END : SQ_QK;
                return true;
            case SQ_QK: {  // QK(i + 1) (its Q block loaded under QK(i)), loading Q(i + 2) under it
                if (!sq.defer) ps.pd.pending = false;  // drained alone (SQ_O), or nothing was pending
                const int i = sq.i;
                if (i + 1 >= sq.nb) {
                    sq.phase = SQ_REST;
                    break;
                }
                const int tn = (i + 1) * R, t2 = tn + R;
                ps.q = i + 2 < sq.nb ? q_block<Cfg>(qkv + long(t2) * st + long(sq.h) * dh, st, T - t2 < R ? T - t2 : R,
                                                    dh, i & 1)
                                     : q_none();
                // a chained PV(i - 1) leaves its last tile pending: QK's key tile 0 drains it
                // its last score tile drains in the next pass (PV(i)'s tile 0); a pending one of QK(i + 1 - 1) drains in
                // the chained PV(i - 1)'s tile 0, or, in block 0 (no P.V yet), in this QK's key tile 0
                p = qk_pass<Cfg>(sq, d, T - tn < R ? T - tn : R, (i + 1) & 1, (i + 1) & 1, sq.chain || ps.pd.pending,
                                 !sq.chain && ps.sd.pending, sd_defer_of<Cfg>::value, sm, g);
                sq.qk_it = p.total;
                if (sq.chain) {  // PV(i - 1) first, then QK(i + 1): the pass switches mode at iteration at2
                    const long qk_total = p.total;
                    pv_part<Cfg>(p, d, ps.pd, ps.sd.pending);
                    p.mode2 = PM_QK;
                    p.at2 = p.total;
                    p.total += qk_total;  // (p.cycles: QK's, its fill, and PV's iterations)
                    sq.chain = false;
                    if (att_chain_ok<Cfg>(sq, d, qk_total, ps.q)) {  // blocks 2 .. nb - 2 follow in this pass
                        const int n = sq.nb - 2;
                        p.blk = 1;
                        p.chain = n - 1;
                        p.blk_its = p.nxt = p.total;
                        p.cycles += long(n - 1) * p.total;
                        p.total *= n;
                        // block 2: QK(3) from row t2, loading Q(4) R rows after this pass's Q(3), and PV(1) R rows
                        // after this pass's PV(0)
                        p.qk_t = t2;
                        p.q_t = t2 + R;
                        p.q_step = long(R) * st;
                        p.q_src = ps.q.src + p.q_step;
                        p.pd_step = long(R) * d.out_stride;
                        p.pd_orow = ps.pd.orow0 + p.pd_step;
                        sq.i = sq.nb - 2;  // the sequencer goes on after the chain's last block
                    }
                }
                sq.phase = SQ_QR;
                return true;
            }
            case SQ_QR: {  // the Q beats QK(i + 1) left (none: no pass)
                const long n = ps.q.beats - ps.q.b;
                sq.shadow += sq.qk_it + n;  // the key loop, and the Q beats it left
                ps.pd.pending = false;      // QK's key tile 0 drained it
                sq.phase = SQ_REST;
                if (n == 0) break;
                p = pass_of(PM_Q_LOAD, n, n + kEngineDepth);
                return true;
            }
            case SQ_REST: {  // what is left of SM(i) (nothing: no pass)
                const int rows = T - sq.i * R < R ? T - sq.i * R : R;
                const long total = sm_block_steps(rows, R, T, Cfg::SM_LANES, sm_norm_lanes<Cfg>());
                const long rest = total > sq.shadow ? total - sq.shadow : 0;
                sq.phase = SQ_BLOCK_END;
                if (rest == 0) break;
                p = pass_of(PM_SM_REST, rest, rest + kEngineDepth);
                return true;
            }
            case SQ_BLOCK_END:
                ISEG_CHECK(sm.st.phase == SM_DONE, "ATTENTION: Shiftmax step count mismatch");
                if (++sq.i < sq.nb) {
                    sq.phase = SQ_BLOCK;
                } else {  // the epilogue: PV(nb - 1)
                    sm.st = sm_idle();
                    const int tl = (sq.nb - 1) * R;
                    ps.pd = pv_drain(tl, T - tl, (sq.nb - 1) & 1, d.out_stride);
                    sq.defer = false;
                    sq.phase = SQ_EPI_PV;
                }
                break;
            case SQ_HEAD_END:
                ps.pd.pending = false;
                if (++sq.h < d.heads) {
                    sq.phase = SQ_HEAD;
                    break;
                }
                ISEG_CHECK(ps.kv.left == 0 && !ps.sd.pending, "ATTENTION: the K/V loader or a score tile left at the end");
                sq.phase = SQ_DONE;
                return false;
            default:
                return false;
        }
    }
    ISEG_CHECK(false, "engine: the sequencer took too many phases without a pass");
    return false;
}

// Every pass of one layer (GEMM, LAYERNORM alone, ATTENTION), on the one engine loop: its only call site.
// The layer's stores are written out at its end (the stages' last beats: the end of a row, its padding).
template <class Cfg>
void run_passes(Seq& sq, const LayerDesc& d, const beat_t<Cfg>* blob, beat_t<Cfg>* scratch, beat_t<Cfg>* scratch_b,
                GemmBuffers<Cfg>& g, AttSm<Cfg>& sm, Prefetch& pf, PassState<Cfg>& ps) {
    Pass p = pass_of(PM_GEMM_A0, 0, 0);
    stage_reset(ps.os);
    stage_reset(ps.ts);
ENGINE_PASSES:
    for (int n = 0; n < kMaxPasses && seq_next<Cfg>(sq, p, d, g, sm, ps); ++n) {
        ISEG_PRAGMA(HLS loop_tripcount min=1 max=2000)
        engine_pass<Cfg>(p, d, blob, scratch, scratch_b, g, sm, pf, ps);
        ISEG_CYCLES(g.cycles, p.cycles + kSeqSetup);  // the pass, and the sequencer's call that set it up
    }
    ISEG_CYCLES(g.cycles, kSeqSetup);  // the call that ended the layer
    ISEG_CHECK(sq.phase == SQ_DONE, "engine: a layer's passes exceed kMaxPasses");
    ISEG_STAGE_FLUSH(GMEM1, ps.os, scratch);
    ISEG_STAGE_FLUSH(GMEM2, ps.ts, scratch_b);
}

}  // namespace iseg
