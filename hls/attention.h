// attention.h -- multi-head attention streamed by blocks of query rows (numerics.md §3, §5.1).
//
// Per head h: K_h and V_h are loaded on chip once (into the free half of the weight buffer: the
// qkv layer that precedes attention is done with it; K_h^T through gemm.h's transposing loader), then for
// each block b of R query rows three phases:
//   QK(b)   the scores RQ_8(q_blk . K_h^T) on the array, key tiles of C columns; each tile's requant
//           runs on S_LANES score lanes during the next tile (as in gemm_layer) and keeps the row
//           maxima. Its Q block (R x d_head bytes, load_lanes per cycle) was loaded into one half of the
//           ping-pong q during QK(b-1)'s loop; QK(b) loads Q(b+1) into the other half the same way
//           (only Q(0) of a head, and beats a short key loop leaves, run alone: att_q_rest)
//   SM(b)   Shiftmax of the block (shiftmax.h sm_step: SM_LANES elements per step, exp + sum pass,
//           divider, normalise pass), written straight into an array left-operand buffer (u15 for
//           precise / ivit, u8 mantissas for precise8) with each row's shift r next to it (sm.rs:
//           real p = p * 2^(r - 15); r = 0 for the u15 variants)
//   PV(b)   RQ_8(P . V_h) on the array, K = T keys, one key per iteration, at Cfg::PV_II cycles per
//           iteration (pv_ii_of, chosen by the planner from the model's Shiftmax variant and Cfg::PACK):
//             u15 P (precise, ivit) on a packing array (PACK 2): a 16 x 8 product that cannot share a
//               DSP48E2 with a second MAC: PV_II = 2, half the packed rate;
//             u8 P (precise8): an 8 x 8 product (a u8 is a 9-bit signed value: a1 << 18 + a2 fits the
//               27-bit port next to its row pair's) packs like int8 x int8: PV_II = 1, the full rate;
//             an array that does not pack (PACK 1: a DSP per PE, DSP48E1 25 x 18 or DSP48E2 27 x 18)
//               takes a 16 x 8 product whole: PV_II = 1 for every variant.
//           PV_II = 2 is valid for every variant (the engine rejects PV_II = 1 with u15 P when PACK = 2).
//           The drain shifts each output row back to the 2^-15 grid, z = (P . V) << r, before the
//           output requant (whose constants assume that grid; Widths::PV bounds the shifted z).
// Software-pipelined over the blocks with ping-pong score blocks (s[2]) and probability blocks
// (g.a[2], with their row shifts rs[2]): iteration i runs PV(i-1) then QK(i+1) on the array while
// SM(i) advances one step per iteration of every one of those loops (in the same pipelined loops,
// like gemm.h's prefetch); what is left of SM(i) after them runs alone (ATT_SM_REST). QK(0) is the
// prologue, PV(nb-1) the epilogue. Only two (R, T) blocks of scores ever exist: never the full T x T matrix.
//
// in: qkv (T, 3D) int8 at scratch + d.in, row stride d.in_stride; q = columns [0, D), k = [D, 2D),
//     v = [2D, 3D), head h = columns [h*dh, (h+1)*dh) of each (D = heads * d_head).
// out: (T, D) int8 at scratch + d.out, row stride d.out_stride (heads concatenated).
// Constants: d.rq = score requant (scalar: 1/sqrt(dh) folded in), d.sm_x0 / d.sm_variant,
//            d.rq2 = output requant (scalar or per channel of D).
#pragma once

#include "gemm.h"
#include "shiftmax.h"

namespace iseg {

// The Shiftmax side of attention: ping-pong score blocks with their row maxima, the row
// reciprocals, the row shifts of the probability blocks and the step machine of the block being normalised.
template <class Cfg>
struct AttSm {
    int8_t s[2][Cfg::R][Cfg::NMAX];
    int32_t mx[2][Cfg::R];
    uint8_t rs[2][Cfg::R];  // row shifts of the probability blocks g.a[2] (ping-pong with them)
    int64_t f[Cfg::R];  // the per-row reciprocals of the block being normalised
    int16_t q[2][Cfg::R][Cfg::DHMAX];  // the Q blocks, ping-pong (QK(b) reads q[b & 1])
    SmState st;
    // Banking (as GemmBuffers; the pragmas are in attention(), where sm is declared):
    //   s   dim 1 complete, dim 3 cyclic SM_LANES: a bank per (half, key mod SM_LANES), so the Shiftmax
    //       lanes read SM_LANES consecutive keys of a row from distinct banks
    //   q   dims 1, 2 complete, dim 3 reshaped cyclic A_WORD: a bank per (half, row), word = channel / A_WORD
    //       (as g.a: the Q loader writes load_lanes channels, two words, per step)
    //   mx, rs, f   registers
    static int s_bank(int half, int key) { return half * Cfg::SM_LANES + key % Cfg::SM_LANES; }
    static long s_word(int r, int key) {
        return long(r) * ((Cfg::NMAX + Cfg::SM_LANES - 1) / Cfg::SM_LANES) + key / Cfg::SM_LANES;
    }
    static int q_bank(int half, int r) { return half * Cfg::R + r; }
    ISEG_PORTS(s, 2 * Cfg::SM_LANES);
    ISEG_PORTS(q, 2 * Cfg::R);
};

// sm_step's accesses to the score blocks (sm.s) and the probability blocks (g.a), for the port check.
template <class Cfg>
struct AttPorts {
    AttSm<Cfg>* sm;
    GemmBuffers<Cfg>* g;
    void x(int h, int r, int i) const {
        ISEG_RD(*sm, s, AttSm<Cfg>::s_bank(h, i), AttSm<Cfg>::s_word(r, i));
        (void)h, (void)r, (void)i;
    }
    void p(int h, int r, int i) const {
        ISEG_WR(*g, a, GemmBuffers<Cfg>::a_bank(h, r), i / GemmBuffers<Cfg>::A_WORD);
        (void)h, (void)r, (void)i;
    }
};

// Initiation interval of the P.V loop: Cfg::PV_II (1: u8 probabilities, the packed rate; 2: u15, half
// of it); a Cfg without PV_II gets 2, which holds for every Shiftmax variant.
template <class Cfg, class = void>
struct pv_ii_of {
    static constexpr int value = 2;
};
template <class Cfg>
struct pv_ii_of<Cfg, typename iseg_void<decltype(Cfg::PV_II)>::type> {
    static constexpr int value = Cfg::PV_II;
    static_assert(value == 1 || value == 2, "Cfg::PV_II must be 1 (u8 P) or 2 (u15 P)");
};

// Initiation interval of the K/V load (ATT_KV_STEP): Cfg::KV_II (estimate.kv_ii_of: 2, or more when an
// explicit narrow array makes a V beat span more than two rows of C); a Cfg without KV_II gets 2.
template <class Cfg, class = void>
struct kv_ii_of {
    static constexpr int value = 2;
};
template <class Cfg>
struct kv_ii_of<Cfg, typename iseg_void<decltype(Cfg::KV_II)>::type> {
    static constexpr int value = Cfg::KV_II;
    static_assert(value >= 2, "Cfg::KV_II must be at least 2 (the transposer's two rows of w per step)");
};

// Int8 MACs per DSP of the array: Cfg::PACK (2: row pairs share a DSP48E2; 1: a DSP per PE, which takes
// a u15 x int8 P.V product whole, so PV_II = 1 holds for every variant); a Cfg without PACK gets 2.
template <class Cfg, class = void>
struct pack_of {
    static constexpr int value = 2;
};
template <class Cfg>
struct pack_of<Cfg, typename iseg_void<decltype(Cfg::PACK)>::type> {
    static constexpr int value = Cfg::PACK;
    static_assert(value == 1 || value == 2, "Cfg::PACK must be 1 or 2");
};

// Whether the Shiftmax unit builds the per-row shift r (shiftmax.h sm_row_shift: one |x0| * f multiplier
// and rmax comparators): Cfg::SM_ROW_SHIFT, set by the planner for precise8 models only (r = 0 for the
// u15 variants); a Cfg without SM_ROW_SHIFT builds it. Without it the engine rejects precise8 layers.
template <class Cfg, class = void>
struct sm_row_shift_of {
    static constexpr bool value = true;
};
template <class Cfg>
struct sm_row_shift_of<Cfg, typename iseg_void<decltype(Cfg::SM_ROW_SHIFT)>::type> {
    static constexpr bool value = Cfg::SM_ROW_SHIFT;
};

// Shiftmax lanes of the normalise pass, per row: SM_LANES, at most two words of a probability row's bank (g.a)
// per step (its two ports; the array reads the other half). It normalises two rows at once (two banks of g.a,
// and two words of each score bank: their two ports). The exp pass reads the scores, SM_LANES banks.
template <class Cfg>
constexpr int sm_norm_lanes() {
    return Cfg::SM_LANES < 2 * Cfg::A_WORD ? Cfg::SM_LANES : 2 * Cfg::A_WORD;
}

// One Shiftmax step (nothing once the block is done), called from the array loops.
template <class Cfg>
void att_sm_tick(AttSm<Cfg>& sm, const LayerDesc& d, GemmBuffers<Cfg>& g) {
    ISEG_PRAGMA(HLS INLINE)
    if (sm.st.phase != SM_DONE)
        sm_step<Cfg::R, Cfg::NMAX, Cfg::KMAX, Cfg::SM_LANES, sm_norm_lanes<Cfg>(), typename widths_of<Cfg>::type,
                sm_row_shift_of<Cfg>::value>(sm.st, sm.s, sm.mx, d.T, d.sm_x0, d.sm_variant, g.a, sm.rs, sm.f,
                                             AttPorts<Cfg>{&sm, &g});
}

// Steps of the score drain: S_LANES score requants per step (on-chip writes only, so not bounded by
// the memory port like OUT_LANES).
template <class Cfg>
int score_drain_steps() {
    return (Cfg::R * Cfg::C + Cfg::S_LANES - 1) / Cfg::S_LANES;
}

// A P.V output tile waiting in g.dr for its drain (OUT_LANES outputs per step, ATT_O_LANE).
struct PvDrain {
    bool pending;
    int t0, rows, half, c0, cols;  // query rows [t0, t0 + rows) of the probability block half, channels c0 ..
};

// Loop iterations of att_qk (the Q.K^T key tiles and their drains, without the pipeline fill); pv_pending:
// key tile 0 also drains the previous block's last P.V tile (pdsteps = drain_steps) and runs max(dh, pdsteps).
inline long att_qk_steps(int T, int dh, int C, int dsteps, bool pv_pending = false, int pdsteps = 0) {
    const int kt_n = (T + C - 1) / C;
    const int first = pv_pending && pdsteps > dh ? pdsteps : dh;
    return first + long(kt_n - 1) * (dsteps > dh ? dsteps : dh) + dsteps;
}

// Loop iterations of att_pv (without the pipeline fills; cycles are PV_II per key iteration, one per drain
// step): tile 0 runs T keys, tile j >= 1 max(T, pdsteps) (tile j - 1 drains in its first pdsteps iterations),
// the last tile's drain runs alone (pdsteps) unless deferred into the next QK's key tile 0.
inline long att_pv_steps(int T, int vt_n, int pdsteps, bool defer) {
    return T + long(vt_n - 1) * (pdsteps > T ? pdsteps : T) + (defer ? 0 : pdsteps);
}

// Step s2 of the drain of P.V tile pd from g.dr: OUT_LANES outputs of head h, RQ_8((P . V) << r) to scratch.
template <class Cfg>
void att_o_step(const LayerDesc& d, uint8_t* scratch, int h, const PvDrain& pd, const AttSm<Cfg>& sm,
                const GemmBuffers<Cfg>& g, int s2) {
    ISEG_PRAGMA(HLS INLINE)
    const int dh = d.d_head;
    // as gemm.h drain_step: a step's lanes share one row when OUT_LANES divides C, its offset taken once
    constexpr bool one_row = Cfg::C % Cfg::OUT_LANES == 0;
    const int r0 = s2 * Cfg::OUT_LANES / Cfg::C;
    const long out_row0 = long(pd.t0 + r0) * d.out_stride;
ATT_O_LANE:
    for (int l = 0; l < Cfg::OUT_LANES; ++l) {
        const int e = s2 * Cfg::OUT_LANES + l;
        const int r = one_row ? r0 : e / Cfg::C, c = e % Cfg::C;
        if (r < pd.rows && c < pd.cols) {
            const int ch = h * dh + pd.c0 + c;
            const int rsh = sm_row_shift_of<Cfg>::value ? int(sm.rs[pd.half][r]) : 0;
            ISEG_RD(g, rq2, g.o_bank(ch), g.o_word(ch));
            const int64_t z = int64_t(g.dr[r][c]) << rsh;  // back on the 2^-15 grid
            const long out_row = one_row ? out_row0 : long(pd.t0 + r) * d.out_stride;
            ISEG_AXI_WR(GMEM1, scratch + d.out + out_row + ch, 1);
            scratch[d.out + out_row + ch] =
                uint8_t(requant_w<widths_of<Cfg>::type::PV>(z, rq_at(d.rq2, g.rq2, ch), 8) & 0xff);
        }
    }
}

// The loader of one Q block: query rows [t0, t0 + rows) of head h into q[half] (rows past `rows` zero),
// load_lanes channels (two words of a row bank) per call. The Q block of QK(b + 1) is loaded during QK(b)'s
// key loop (att_qk's `nq`), into the other half of the ping-pong q; only the first block of a head, and what a
// short key loop leaves, is exposed.
struct QLoad {
    const uint8_t* src;  // row t0 of head h's q columns
    long st;             // row stride (bytes)
    int rows, half;
    int b, beats;        // next step, steps of the block (R * ceil(d_head / load_lanes); 0: nothing to load)
    int r, kb;           // step b's row and first column: counters, not b / dbeats and b % dbeats (dividers)
};

inline QLoad q_none() {
    QLoad l = {nullptr, 0, 0, 0, 0, 0, 0, 0};
    return l;
}

template <class Cfg>
QLoad q_block(const uint8_t* src, long st, int rows, int dh, int half) {
    constexpr int AL = load_lanes<Cfg>();
    QLoad l = {src, st, rows, half, 0, Cfg::R * ((dh + AL - 1) / AL), 0, 0};
    return l;
}

template <class Cfg>
void att_q_beat(QLoad& l, int dh, AttSm<Cfg>& sm) {
    ISEG_PRAGMA(HLS INLINE)
    if (l.b >= l.beats) return;
    constexpr int AL = load_lanes<Cfg>();
    const int r = l.r, kb = l.kb;
    ISEG_CHECK(r == l.b / ((dh + AL - 1) / AL) && kb == (l.b % ((dh + AL - 1) / AL)) * AL,
               "Q load: the row/column counters left step b");
    if (r < l.rows) ISEG_AXI_RD(GMEM1, l.src + long(r) * l.st + kb, dh - kb < AL ? dh - kb : AL);
ATT_Q_BYTE:
    for (int j = 0; j < AL; ++j) {
        ISEG_PRAGMA(HLS UNROLL)
        if (kb + j < dh) {
            ISEG_WR(sm, q, sm.q_bank(l.half, r), (kb + j) / GemmBuffers<Cfg>::A_WORD);
            sm.q[l.half][r][kb + j] = r < l.rows ? int16_t(int8_t(l.src[long(r) * l.st + kb + j])) : int16_t(0);
        }
    }
    ++l.b;
    l.kb += AL;
    if (l.kb >= dh) {  // the row's last beat: the next row
        l.kb = 0;
        ++l.r;
    }
}

// The steps of `l` not yet taken, alone (one per cycle), SM advancing: the first Q block of a head, or the
// tail of a prefetch whose key loop was shorter than the block.
template <class Cfg>
void att_q_rest(QLoad& l, int dh, AttSm<Cfg>& sm, const LayerDesc& d, GemmBuffers<Cfg>& g) {
    const int n = l.beats - l.b;
ATT_Q_LOAD:
    for (int b = 0; b < n; ++b) {
        ISEG_PRAGMA(HLS loop_tripcount min=0 max=256)
        ISEG_PIPELINE(ATT_Q_LOAD, 1);
        att_q_beat<Cfg>(l, dh, sm);
        att_sm_tick<Cfg>(sm, d, g);
    }
    ISEG_CYCLES(g.cycles, n > 0 ? n + kPipeDepth : 0);
}

// Scores of one query block: s[half] = RQ_8(q[qh] . K_h^T), row maxima into mx[half], SM advancing; one beat
// of the next Q block (nq, into q[qh ^ 1]) per iteration.
template <class Cfg>
void att_qk(const LayerDesc& d, uint8_t* scratch, int h, int rows, int half, int qh, QLoad& nq,
            const int8_t (&kv)[Cfg::WROWS][Cfg::C], const RqParams& rq_s, const PvDrain& pd, AttSm<Cfg>& sm,
            GemmBuffers<Cfg>& g) {
    const int T = d.T, dh = d.d_head;
    const int kt_n = (T + Cfg::C - 1) / Cfg::C;
    const int dsteps = score_drain_steps<Cfg>();
    const int pdsteps = drain_steps<Cfg>();
ATT_MX_INIT:
    for (int r = 0; r < Cfg::R; ++r) {
        ISEG_PRAGMA(HLS UNROLL)  // registers (sm.mx is partitioned completely): one parallel store
        sm.mx[half][r] = -128;
    }
    // Clears the accumulators (the drain buffer is not read before tile 0 ends). With a pending P.V tile
    // (pd) g.dr holds it and the accumulators are already clear (att_pv ended with acc_to_drain): key tile 0
    // drains it (first pdsteps iterations) before its own acc_to_drain overwrites g.dr.
    if (!pd.pending) acc_to_drain<Cfg>(g);
    int dn0 = 0, dcols = 0;
    // The key tiles and their steps are ONE pipelined loop (tile counters advanced inside): the pipeline fills
    // once per query block, not once per key tile (docs/hls.md, "What csynth would likely find first"). Tile 0
    // also drains a pending P.V tile, tiles 1..kt_n - 1 the previous key tile's scores, tile kt_n only those.
    const int steps0 = pd.pending && pdsteps > dh ? pdsteps : dh;
    const int steps_mid = dsteps > dh ? dsteps : dh;
    const long total = steps0 + long(kt_n - 1) * steps_mid + dsteps;
    int j = 0, s2 = 0, steps = steps0;
ATT_QK_STEP:
    for (long i = 0; i < total; ++i) {
        ISEG_PRAGMA(HLS loop_tripcount min=64 max=7200)
        ISEG_PIPELINE(ATT_QK_STEP, 1);
        const bool pend = j > 0;
        const bool pvd = j == 0 && pd.pending;  // the previous block's last P.V tile drains in key tile 0
        if (j < kt_n && s2 < dh) {
            ISEG_RD_ROWS(sm, q, sm.q_bank(qh, 0), Cfg::R, s2 / GemmBuffers<Cfg>::A_WORD);
            ISEG_RD(g, w, g.wcur, long(j) * dh + s2);
            array_step<Cfg>(g, sm.q[qh], kv[long(j) * dh + s2], s2);
        }
        att_q_beat<Cfg>(nq, dh, sm);  // the next block's Q into the other half
        if (pend && s2 < dsteps) {
        ATT_S_LANE:
            for (int l = 0; l < Cfg::S_LANES; ++l) {
                const int e = s2 * Cfg::S_LANES + l;
                const int r = e / Cfg::C, c = e % Cfg::C;
                if (r < rows && c < dcols) {
                    ISEG_WR(sm, s, sm.s_bank(half, dn0 + c), sm.s_word(r, dn0 + c));
                    const int32_t v = requant_w<widths_of<Cfg>::type::SCORE>(g.dr[r][c], rq_s, 8);
                    sm.s[half][r][dn0 + c] = int8_t(v);
                    if (v > sm.mx[half][r]) sm.mx[half][r] = v;
                }
            }
        }
        if (pvd && s2 < pdsteps) att_o_step<Cfg>(d, scratch, h, pd, sm, g, s2);
        att_sm_tick<Cfg>(sm, d, g);
        if (++s2 == steps) {  // the key tile's last step: its sums to the drain registers, the next tile
            acc_to_drain<Cfg>(g);
            dn0 = j * Cfg::C;
            dcols = T - dn0 < Cfg::C ? T - dn0 : Cfg::C;
            ++j;
            s2 = 0;
            steps = j < kt_n ? steps_mid : dsteps;
        }
    }
    ISEG_CYCLES(g.cycles, total + kPipeDepth);
    ISEG_CHECK(j == kt_n + 1 && s2 == 0, "Q.K^T: the key-tile counters left the block's tiles");
}

// One iteration of the P.V loop: key k (< T) of P = g.a[half] times row k of V_h, step k of the previous
// channel tile's drain (pd, while k < pdsteps) and one Shiftmax step (one per iteration whatever the initiation
// interval: attention()'s `shadow` counts iterations).
template <class Cfg>
void att_pv_step(const LayerDesc& d, uint8_t* scratch, int h, int half, const int8_t (&kv)[Cfg::WROWS][Cfg::C],
                 long vrow, int k, const PvDrain& pd, int pdsteps, AttSm<Cfg>& sm, GemmBuffers<Cfg>& g) {
    ISEG_PRAGMA(HLS INLINE)
    if (k < d.T) {
        ISEG_RD_ROWS(g, a, g.a_bank(half, 0), Cfg::R, k / g.A_WORD);
        ISEG_RD(g, w, g.wcur, vrow + k);
        array_step<Cfg>(g, g.a[half], kv[vrow + k], k);
    }
    if (pd.pending && k < pdsteps) att_o_step<Cfg>(d, scratch, h, pd, sm, g, k);
    att_sm_tick<Cfg>(sm, d, g);
}

// out rows [t0, t0 + rows), head h = RQ_8((P . V_h) << r) with P = g.a[half], r = sm.rs[half], SM advancing.
// Channel tile j's drain runs inside tile j + 1's loop (as in gemm_layer); the last tile's drain runs alone
// after the loop, or with defer it is left pending in g.dr (pd) for the next att_qk's key tile 0.
template <class Cfg>
void att_pv(const LayerDesc& d, uint8_t* scratch, int h, int t0, int rows, int half,
            const int8_t (&kv)[Cfg::WROWS][Cfg::C], bool defer, PvDrain& pd, AttSm<Cfg>& sm, GemmBuffers<Cfg>& g) {
    const int T = d.T, dh = d.d_head;
    const int voff = ((T + Cfg::C - 1) / Cfg::C) * dh;  // first V row in kv
    const int pdsteps = drain_steps<Cfg>();
    pd = PvDrain{false, t0, rows, half, 0, 0};  // tile c0's drain becomes pending after its key loop
ATT_VTILE:
    for (int c0 = 0; c0 < dh; c0 += Cfg::C) {
        ISEG_PRAGMA(HLS loop_tripcount min=1 max=8)
        const int cols = dh - c0 < Cfg::C ? dh - c0 : Cfg::C;
        const long vrow = voff + long(c0 / Cfg::C) * T;
        const int n = pd.pending && pdsteps > T ? pdsteps : T;
        // Two copies of the loop, one per initiation interval (an HLS pragma cannot take a template
        // expression): the compile-time PV_II keeps exactly one of them. Same body, same order.
        if (pv_ii_of<Cfg>::value == 1) {
        ATT_PV_STEP_II1:
            for (int k = 0; k < n; ++k) {
                ISEG_PRAGMA(HLS loop_tripcount min=1 max=1174)
                ISEG_PIPELINE(ATT_PV_STEP_II1, 1);
                att_pv_step<Cfg>(d, scratch, h, half, kv, vrow, k, pd, pdsteps, sm, g);
            }
        } else {
        ATT_PV_STEP_II2:
            for (int k = 0; k < n; ++k) {
                ISEG_PRAGMA(HLS loop_tripcount min=1 max=1174)
                ISEG_PIPELINE(ATT_PV_STEP_II2, 2);
                att_pv_step<Cfg>(d, scratch, h, half, kv, vrow, k, pd, pdsteps, sm, g);
            }
        }
        ISEG_CYCLES(g.cycles, long(pv_ii_of<Cfg>::value) * n + kPipeDepth);
        acc_to_drain<Cfg>(g);
        pd.pending = true;
        pd.c0 = c0;
        pd.cols = cols;
    }
    if (defer) return;
ATT_O_STEP:
    for (int s2 = 0; s2 < pdsteps; ++s2) {
        ISEG_PRAGMA(HLS loop_tripcount min=1 max=256)
        ISEG_PIPELINE(ATT_O_STEP, 1);
        att_o_step<Cfg>(d, scratch, h, pd, sm, g, s2);
        att_sm_tick<Cfg>(sm, d, g);
    }
    ISEG_CYCLES(g.cycles, pdsteps + kPipeDepth);
    pd.pending = false;
}

template <class Cfg>
void attention(const LayerDesc& d, const uint8_t* blob, uint8_t* scratch, const uint8_t* scratch_b,
               GemmBuffers<Cfg>& g) {
    static_assert(Cfg::KMAX >= Cfg::NMAX, "P.V reduces over all keys: KMAX must be >= NMAX");
    const int W = Cfg::AXI_BYTES;
    static AttSm<Cfg> sm;  // ping-pong score and Q blocks, row maxima, the Shiftmax state
    constexpr int kAWord = Cfg::A_WORD, kSmLanes = Cfg::SM_LANES, kKvII = kv_ii_of<Cfg>::value;
    (void)kAWord, (void)kSmLanes, (void)kKvII;  // read by the pragmas only (kKvII also by the cycle count)
    ISEG_PRAGMA(HLS ARRAY_PARTITION variable=sm.s dim=1 type=complete)
    ISEG_PRAGMA(HLS ARRAY_PARTITION variable=sm.s dim=3 type=cyclic factor=kSmLanes)
    ISEG_PRAGMA(HLS ARRAY_PARTITION variable=sm.q dim=1 type=complete)
    ISEG_PRAGMA(HLS ARRAY_PARTITION variable=sm.q dim=2 type=complete)
    ISEG_PRAGMA(HLS ARRAY_RESHAPE variable=sm.q dim=3 type=cyclic factor=kAWord)
    ISEG_PRAGMA(HLS ARRAY_PARTITION variable=sm.mx dim=0 type=complete)
    ISEG_PRAGMA(HLS ARRAY_PARTITION variable=sm.rs dim=0 type=complete)
    ISEG_PRAGMA(HLS ARRAY_PARTITION variable=sm.f dim=0 type=complete)
    const int T = d.T;
    const int dh = d.d_head;
    const int D = d.heads * dh;
    const long st = d.in_stride;
    const uint8_t* qkv = scratch + d.in;
    const uint8_t* qkv_b = scratch_b + d.in;  // the V beats of the K/V load: the second port
    int8_t(&kv)[Cfg::WROWS][Cfg::C] = g.w[g.wcur];
    const int kt_n = (T + Cfg::C - 1) / Cfg::C;   // key tiles of Q.K^T
    const int vt_n = (dh + Cfg::C - 1) / Cfg::C;  // channel tiles of P.V
    const int voff = kt_n * dh;                   // first V row in kv
    const int dbeats = (dh + W - 1) / W;
    const int nb = (T + Cfg::R - 1) / Cfg::R;     // query blocks
    ISEG_CHECK(voff + long(vt_n) * T <= Cfg::WROWS, "ATTENTION: K_h and V_h exceed Cfg::WROWS");
    const RqParams rq_s = rq_channel(d.rq, blob, 0);
    load_rq_table<Cfg, 2>(d.rq2, D, blob, g);  // the per-channel RQ_8 of P.V
ATT_HEAD:
    for (int h = 0; h < d.heads; ++h) {
        ISEG_PRAGMA(HLS loop_tripcount min=1 max=12)
        // K_h^T as (key tile, k) rows through the transposer (gemm.h tp_step), V_h as (channel tile, key)
        // rows as the beats come: chunk by chunk of AXI_BYTES channels, a K and a V beat of one key per
        // iteration (II = KV_II, 2: the transposer's two rows of w per step beside the V words, each V beat one
        // or two words of w; more on an explicit array narrower than AXI_BYTES / 2, whose V beats span more
        // rows). Both beats are single-beat runs (a key's row is a stride away from the next), so K
        // comes through scratch and V through scratch_b: half a request per cycle on each port, not one on one
        // (docs/hls.md, "Bursts").
    ATT_KV_CHUNK:
        for (int b = 0; b < dbeats; ++b) {
            ISEG_PRAGMA(HLS loop_tripcount min=1 max=4)
            const long steps = tp_chunk_steps(T, dh, b, Cfg::C, W);
            tp_begin(g.tp);
        ATT_KV_STEP:
            for (long s2 = 0; s2 < steps; ++s2) {
                ISEG_PRAGMA(HLS loop_tripcount min=1 max=1200)
                ISEG_PIPELINE(ATT_KV_STEP, kKvII);
                const int n = tp_step<Cfg>(g.tp, qkv + D + long(h) * dh, st, T, dh, b, g.wcur, g);
                if (n >= 0) {
                    ISEG_AXI_RD(GMEM2, qkv_b + long(n) * st + 2L * D + long(h) * dh + b * W,
                                dh - b * W < W ? dh - b * W : W);
                ATT_V_BYTE:
                    for (int j = 0; j < W; ++j) {
                        const int k = b * W + j;
                        if (k < vt_n * Cfg::C) {  // P.V columns past d_head are 0
                            const long row = voff + long(k / Cfg::C) * T + n;
                            ISEG_WR(g, w, g.wcur, row);
                            kv[row][k % Cfg::C] = k < dh ? int8_t(qkv_b[long(n) * st + 2L * D + long(h) * dh + k]) : 0;
                        }
                    }
                }
            }
            ISEG_CHECK(g.tp.n == T && g.tp.wleft == 0, "ATTENTION: transposing loader step count mismatch");
            ISEG_CYCLES(g.cycles, long(kKvII) * steps + kPipeDepth);
        }
        // prologue: QK(0), nothing to overlap
        sm.st = sm_idle();
        const int rows0 = T < Cfg::R ? T : Cfg::R;
        PvDrain pd = {false, 0, 0, 0, 0, 0};  // a P.V tile left in g.dr for the next att_qk
        QLoad q0 = q_block<Cfg>(qkv + long(h) * dh, st, rows0, dh, 0);
        att_q_rest<Cfg>(q0, dh, sm, d, g);  // Q(0), exposed
        QLoad nq = nb > 1 ? q_block<Cfg>(qkv + long(Cfg::R) * st + long(h) * dh, st,
                                         T - Cfg::R < Cfg::R ? T - Cfg::R : Cfg::R, dh, 1)
                          : q_none();  // Q(1) under QK(0)
        att_qk<Cfg>(d, scratch, h, rows0, 0, 0, nq, kv, rq_s, pd, sm, g);
        att_q_rest<Cfg>(nq, dh, sm, d, g);
    ATT_QBLK:
        for (int i = 0; i < nb; ++i) {
            ISEG_PRAGMA(HLS loop_tripcount min=1 max=65)
            const int t0 = i * Cfg::R;
            const int rows = T - t0 < Cfg::R ? T - t0 : Cfg::R;
            sm.st = sm_begin(i & 1, rows);  // SM(i): s[i&1] -> g.a[i&1]
            long shadow = 0;                // SM steps taken inside the array loops
            const bool defer = i + 1 < nb;  // PV(i-1)'s last drain under QK(i+1)'s key tile 0
            if (i >= 1) {                   // PV(i-1)
                att_pv<Cfg>(d, scratch, h, t0 - Cfg::R, Cfg::R, (i - 1) & 1, kv, defer, pd, sm, g);
                shadow += att_pv_steps(T, vt_n, drain_steps<Cfg>(), defer);  // iterations, not cycles: any PV_II
            }
            if (i + 1 < nb) {  // QK(i+1) (its Q block loaded under QK(i)), loading Q(i+2) under it
                const int tn = t0 + Cfg::R, t2 = tn + Cfg::R;
                const int rn = T - tn < Cfg::R ? T - tn : Cfg::R;
                nq = i + 2 < nb ? q_block<Cfg>(qkv + long(t2) * st + long(h) * dh, st,
                                               T - t2 < Cfg::R ? T - t2 : Cfg::R, dh, i & 1)
                                : q_none();
                const long qk_it =
                    att_qk_steps(T, dh, Cfg::C, score_drain_steps<Cfg>(), pd.pending, drain_steps<Cfg>());
                att_qk<Cfg>(d, scratch, h, rn, (i + 1) & 1, (i + 1) & 1, nq, kv, rq_s, pd, sm, g);
                shadow += qk_it + (nq.beats - nq.b);  // the key loop, and the Q beats it left (att_q_rest)
                att_q_rest<Cfg>(nq, dh, sm, d, g);
                pd.pending = false;
            }
            const long total = sm_block_steps(rows, Cfg::R, T, Cfg::SM_LANES, sm_norm_lanes<Cfg>());
            const long rest = total > shadow ? total - shadow : 0;
        ATT_SM_REST:
            for (long s2 = 0; s2 < rest; ++s2) {
                ISEG_PRAGMA(HLS loop_tripcount min=0 max=20000)
                ISEG_PIPELINE(ATT_SM_REST, 1);
                att_sm_tick<Cfg>(sm, d, g);
            }
            ISEG_CYCLES(g.cycles, rest > 0 ? rest + kPipeDepth : 0);
            ISEG_CHECK(sm.st.phase == SM_DONE, "ATTENTION: Shiftmax step count mismatch");
        }
        // epilogue: PV(nb-1)
        sm.st = sm_idle();
        const int tl = (nb - 1) * Cfg::R;
        att_pv<Cfg>(d, scratch, h, tl, T - tl, (nb - 1) & 1, kv, false, pd, sm, g);
    }
}

}  // namespace iseg
