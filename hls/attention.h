// attention.h -- multi-head attention streamed by blocks of query rows (numerics.md §3, §5.1).
//
// Per head h: K_h and V_h are loaded on chip once (K_h^T through gemm.h's transposing loader), into the
// weight buffer: even heads into the current half, which the qkv layer that precedes attention is done with,
// odd heads into the top of the other half, above the next layer's prefetched weights. Head h + 1's load runs
// under head h's passes (schedule.h KvLoad, one unit of the engine loop), so only head 0's is exposed. Then for
// each block b of R query rows three phases:
//   QK(b)   the scores RQ_8(q_blk . K_h^T) on the array, key tiles of C columns; each tile's requant
//           runs on S_LANES score lanes during the next tile (as in a GEMM layer) and keeps the row
//           maxima. Its Q block (R x d_head bytes, load_lanes per cycle) was loaded into one half of the
//           ping-pong q during QK(b-1)'s loop; QK(b) loads Q(b+1) into the other half the same way
//           (only Q(0) of a head, and beats a short key loop leaves, run alone: an ATT_Q_LOAD pass)
//   SM(b)   Shiftmax of the block (shiftmax.h sm_step: SM_LANES elements per step, exp + sum pass,
//           divider, normalise pass), written straight into an array left-operand buffer (u15 for
//           precise / ivit, u8 mantissas for precise8) with each row's shift r next to it (sm.rs:
//           real p = p * 2^(r - 15); r = 0 for the u15 variants)
//   PV(b)   RQ_8(P . V_h) on the array, K = T keys, at Cfg::PV_II cycles per key (PV_II iterations of the
//           II = 1 engine loop, schedule.h; pv_ii_of, chosen by the planner from the model's Shiftmax variant and Cfg::PACK):
//             u15 P (precise, ivit) on a packing array (PACK 2): a 16 x 8 product that cannot share a
//               DSP48E2 with a second MAC: PV_II = 2, its two bytes one after the other, half the packed rate;
//             u8 P (precise8): an 8 x 8 product (a u8 is a 9-bit signed value: a1 << 18 + a2 fits the
//               27-bit port next to its row pair's) packs like int8 x int8: PV_II = 1, the full rate;
//             an array that does not pack (PACK 1: a DSP per PE, DSP48E1 25 x 18 or DSP48E2 27 x 18)
//               takes a 16 x 8 product whole: PV_II = 1 for every variant.
//           PV_II = 2 is valid for every variant (the engine rejects PV_II = 1 with u15 P when PACK = 2).
//           The drain shifts each output row back to the 2^-15 grid, z = (P . V) << r, before the
//           output requant (whose constants assume that grid; Widths::PV bounds the shifted z).
// Software-pipelined over the blocks with ping-pong score blocks (s[2]) and probability blocks
// (g.a[2], with their row shifts rs[2]): iteration i runs PV(i-1) then QK(i+1) on the array while
// SM(i) advances one step per iteration of every one of those passes (one per key in P.V), like a GEMM's
// prefetch; what is left of SM(i) after them runs alone (ATT_SM_REST). The units are here; the schedule is
// schedule.h's sequencer (seq_next), which runs every pass on the one engine loop. QK(0) is the
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
    int16_t q[2][Cfg::R][a_row_len<Cfg>(Cfg::DHMAX)];  // the Q blocks, ping-pong (QK(b) reads q[b & 1])
    SmState st;
    // Banking (as GemmBuffers; the pragmas are in engine.h run_layers, where sm is declared):
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

// Cfg::KV_OVERLAP: head h + 1's K/V load runs under head h's passes, the odd heads' K/V in the other half of the
// weight buffer, above the next layer's prefetched weights (estimate.wrows_needed sizes WROWS for it); false: every
// head's K/V in the current half, each loaded in its head's first pass (a board whose memory cannot hold both). A
// Cfg without KV_OVERLAP overlaps.
template <class Cfg, class = void>
struct kv_overlap_of {
    static constexpr bool value = true;
};
template <class Cfg>
struct kv_overlap_of<Cfg, typename iseg_void<decltype(Cfg::KV_OVERLAP)>::type> {
    static constexpr bool value = Cfg::KV_OVERLAP;
};

// Cfg::SD_DEFER: a Q.K^T's last score tile drains in the next pass (P.V's channel tile 0, or QK(1)'s key tile 0), where
// the array would otherwise wait for it, the Shiftmax of its block waiting instead (schedule.h ScoreDrain); the planner
// sets it where that is faster (estimate.better_sd_defer: not where the Shiftmax is the bound). Default true.
template <class Cfg, class = void>
struct sd_defer_of {
    static constexpr bool value = true;
};
template <class Cfg>
struct sd_defer_of<Cfg, typename iseg_void<decltype(Cfg::SD_DEFER)>::type> {
    static constexpr bool value = Cfg::SD_DEFER;
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

// The scores the Shiftmax step of this iteration reads (none once the block is done): the engine loop reads them
// through its two ports per score bank (schedule.h S_PORT_A / S_PORT_B) before the step runs.
template <class Cfg>
SmReads att_sm_reads(const AttSm<Cfg>& sm, const LayerDesc& d) {
    ISEG_PRAGMA(HLS INLINE)
    SmReads q = sm_reads<Cfg::R, Cfg::SM_LANES, sm_norm_lanes<Cfg>()>(sm.st, d.T);
    if (sm.st.phase == SM_DONE) q.ok[0] = q.ok[1] = false;
    return q;
}

// One Shiftmax step (nothing when `go` is false, or once the block is done), called from the engine loop on the
// scores xs it read (att_sm_reads). A normalise step's probabilities of its two rows come back as two write requests
// into the probability block's row banks of g.a (slots 0 and 1: port A writes a slot's first word, port B its
// second; sm_norm_lanes keeps a row's lanes within two words).
template <class Cfg>
void att_sm_tick(AttSm<Cfg>& sm, const LayerDesc& d, const int8_t (&xs)[2][Cfg::SM_LANES], bool go,
                 ABankReq<Cfg> (&slot)[2]) {
    ISEG_PRAGMA(HLS INLINE)
    constexpr int AW = Cfg::A_WORD, NL = sm_norm_lanes<Cfg>();
    slot[0] = bank_req_none<Cfg>();
    slot[1] = bank_req_none<Cfg>();
    if (!go || sm.st.phase == SM_DONE) return;
    const SmOut<NL> o = sm_step<Cfg::R, Cfg::SM_LANES, NL, typename widths_of<Cfg>::type, sm_row_shift_of<Cfg>::value>(
        sm.st, xs, sm.mx, d.T, d.sm_x0, d.sm_variant, sm.rs, sm.f);
ATT_SM_SLOT:
    for (int q = 0; q < 2; ++q) {
        ISEG_PRAGMA(HLS UNROLL)
        if (o.ok[q]) {
            int e0 = 0;
            slot[q] = bank_req_at<Cfg, NL>(o.half, o.row[q], o.i0, e0);
        ATT_SM_SLOT_L:
            for (int l = 0; l < NL; ++l) {
                ISEG_PRAGMA(HLS UNROLL)
                if (o.i0 + l < o.n) {
                    ISEG_CHECK(e0 + l < 2 * AW, "Shiftmax normalise: a row's lanes span more than two words of g.a");
                    slot[q].v[e0 + l] = o.p[q][l];
                    slot[q].m[e0 + l] = true;
                }
            }
        }
    }
}

// Steps of the score drain: S_LANES score requants per step (on-chip writes only, so not bounded by
// the memory port like OUT_LANES).
template <class Cfg>
int score_drain_steps() {
    return (Cfg::R * Cfg::C + Cfg::S_LANES - 1) / Cfg::S_LANES;
}

// The P.V output lanes: Cfg::PV_LANES, OUT_LANES or, where the planner can, S_LANES / 2^j. P.V's outputs are bytes
// under a per-tensor requant (rq2 a scalar: no table bank to read per lane), so with S_LANES dividing C they drain
// through the score lanes' readout of g.dr and the shared requant lanes, one beat-aligned put a step, instead of
// OUT_LANES (which the GEMM's residual and GELU bound): R * C / PV_LANES steps, where R * C / OUT_LANES ran past d_head
// in Q.K^T's key tile 0. Where S_LANES bytes exceed a beat, a step takes PV_LANES = S_LANES / 2^j of a readout window
// (pv_window steps a window; estimate.ArrayShape.pv_lanes).
template <class Cfg>
constexpr int pv_lanes() {
    static_assert(Cfg::PV_LANES == Cfg::OUT_LANES ||
                      (Cfg::C % Cfg::S_LANES == 0 && Cfg::S_LANES % Cfg::PV_LANES == 0 &&
                       ((Cfg::S_LANES / Cfg::PV_LANES) & (Cfg::S_LANES / Cfg::PV_LANES - 1)) == 0),
                  "PV_LANES: OUT_LANES, or S_LANES / 2^j when S_LANES divides C (the score lanes' readout)");
    return Cfg::PV_LANES;
}

// P.V drain steps per window of the score lanes' readout: S_LANES / PV_LANES (a power of two), 1 through the output
// lanes. Step k reads window k / pv_window, part k % pv_window of it (schedule.h WIDE_READ, PV_READ).
template <class Cfg>
constexpr int pv_window() {
    return pv_lanes<Cfg>() == Cfg::OUT_LANES ? 1 : Cfg::S_LANES / pv_lanes<Cfg>();
}

// Steps of a P.V tile's drain.
template <class Cfg>
int pv_drain_steps() {
    return (Cfg::R * Cfg::C + pv_lanes<Cfg>() - 1) / pv_lanes<Cfg>();
}

// A P.V output tile waiting in g.dr for its drain (PV_LANES outputs per step, ATT_O_LANE).
struct PvDrain {
    bool pending;
    int t0, rows, half, c0, cols;  // query rows [t0, t0 + rows) of the probability block half, channels c0 ..
    long orow0;                    // t0 * out_stride (taken once, outside the engine loop)
    long orow;                     // running: the current row's output offset, reset to orow0 when a tile ends,
    int r, k;                      // its row in the tile and the step within that row (no row * stride
};                                 // multiplier, no e / C in the loop)

// A P.V block's drain state before its first tile: query rows [t0, t0 + rows) of probability block half, whose first
// output row is at orow0 (t0 * out_stride, which the engine loop's chained blocks advance instead: att_chain_next).
inline PvDrain pv_drain_at(int t0, int rows, int half, long orow0) {
    PvDrain p = {false, t0, rows, half, 0, 0, orow0, orow0, 0, 0};
    return p;
}

inline PvDrain pv_drain(int t0, int rows, int half, long out_stride) {
    return pv_drain_at(t0, rows, half, long(t0) * out_stride);
}

// Iterations of a QK pass (the Q.K^T key tiles and their drains, without the pipeline fill); pv_pending:
// key tile 0 also drains the previous block's last P.V tile (pdsteps = pv_drain_steps) and runs max(dh, pdsteps);
// sd_pending: it drains the previous QK's last score tile instead (dsteps); defer: this QK's own last score tile
// drains in the next pass (schedule.h ScoreDrain), not in dsteps steps of its own at the end.
inline long att_qk_steps(int T, int dh, int C, int dsteps, bool pv_pending = false, int pdsteps = 0,
                         bool sd_pending = false, bool defer = false) {
    const int kt_n = (T + C - 1) / C;
    int first = pv_pending && pdsteps > dh ? pdsteps : dh;
    if (sd_pending && dsteps > first) first = dsteps;
    return first + long(kt_n - 1) * (dsteps > dh ? dsteps : dh) + (defer ? 0 : dsteps);
}

// Iterations of a P.V block (its PV passes and O_STEP, without the pipeline fills): tile 0 runs T keys, tile j >= 1
// max(T, pdsteps) (tile j - 1 drains in its first pdsteps keys), PV_II iterations a key (pvii); the last tile's drain
// runs alone (pdsteps iterations) unless deferred into the next QK's key tile 0. sd_pending: tile 0 drains the last
// QK's last score tile in its first dsteps keys (max(T, dsteps)). The Shiftmax steps in every one of them but those it
// waits for that drain (att_sm_wait): schedule.h counts its steps under P.V with this.
inline long att_pv_steps(int T, int vt_n, int pdsteps, bool defer, bool sd_pending = false, int dsteps = 0,
                         int pvii = 1) {
    return long(pvii) * ((sd_pending && dsteps > T ? dsteps : T) + long(vt_n - 1) * (pdsteps > T ? pdsteps : T)) +
           (defer ? 0 : pdsteps);
}

// Iterations the Shiftmax of a block waits at its first pass's start while the block's last score tile drains
// (dsteps score-lane steps): in Q.K^T's key tile 0 one step an iteration (pvii 1); in P.V's tile 0 one step a key, on
// the key's first iteration, so the drain's last step is iteration pvii * (dsteps - 1) and the Shiftmax steps from
// the one after it.
inline long att_sm_wait(int dsteps, int pvii) { return long(pvii) * (dsteps - 1) + 1; }

// Step s2 of the drain of P.V tile pd from g.dr, first half: PV_LANES outputs of the head whose first channel is
// hoff (h * d_head, taken outside the loop), their requant operands (P.V) << r (back on the 2^-15 grid) and records
// (an index into rq1, where attention_begin loads rq2's table, or rq2's scalar), into o; the engine loop's one
// requant per lane (gemm.h out_rq, shared with the GEMM output lanes) makes RQ_8 of them, and its one store site
// (schedule.h OUT_STORE) puts the bytes. ov: the drain registers of the step's lanes, as the loop's readout gave them
// (the output lanes' with PV_LANES = OUT_LANES, the score lanes' with PV_LANES = S_LANES). Returns the byte offset of
// that store (lane 0's; the lanes' bytes are contiguous), -1 when no lane has an output. As gemm.h drain_lanes: a
// step's lanes share one row (PV_LANES divides C), its offset running. Steps come in order from 0 after the tile
// ended (pd.orow = pd.orow0, pd.k = 0).
template <class Cfg>
long att_o_lanes(const LayerDesc& d, int hoff, PvDrain& pd, const AttSm<Cfg>& sm, int s2,
                 const int32_t (&ov)[pv_lanes<Cfg>()], OutLane<Cfg> (&o)[rq_lanes<Cfg>()]) {
    ISEG_PRAGMA(HLS INLINE)
    constexpr int L = pv_lanes<Cfg>();
    static_assert(Cfg::C % L == 0, "a lane step: one row of the tile (estimate.make_shape)");
    ISEG_CHECK(lane_pos_at(pd.r, pd.k, s2, L, Cfg::C), "P.V output lanes: the row/step counters left step s2");
    const int r = pd.r, c0 = pd.k * L;
    const int left = r < pd.rows ? pd.cols - c0 : 0;
    const int nok = left < 0 ? 0 : (left < L ? left : L);
    const int rsh = sm_row_shift_of<Cfg>::value && r < Cfg::R ? int(sm.rs[pd.half][r]) : 0;
ATT_O_LANE:
    for (int l = 0; l < L; ++l) {
        ISEG_PRAGMA(HLS UNROLL)
        o[l].ok = l < nok;
        if (o[l].ok) {
            // ov: the readout the GEMM output lanes share (gemm.h drain_lanes)
            o[l].z = narrow<out_rq_bits<Cfg>()>(int64_t(ov[l]) << rsh);
            o[l].tab = d.rq2.tab >= 0;
            o[l].idx = hoff + pd.c0 + c0 + l;
            o[l].res = o[l].pre = 0;
        }
    }
    const long at = nok > 0 ? d.out + pd.orow + hoff + pd.c0 + c0 : -1L;
    if (lane_pos_next(pd.r, pd.k, Cfg::C / L)) pd.orow += d.out_stride;  // the next row
    return at;
}

// The loader of one Q block: query rows [t0, t0 + rows) of head h into q[half] (rows past `rows` zero),
// load_lanes channels (two words of a row bank) per call. The Q block of QK(b + 1) is loaded during QK(b)'s
// key loop (the QK pass loads ps.q), into the other half of the ping-pong q; only the first block of a head, and what a
// short key loop leaves, is exposed.
struct QLoad {
    long src;            // scratch offset of row t0 + r of head h's q columns (advanced a stride per row)
    long st;             // row stride (bytes)
    int rows, half;
    int b, beats;        // next step, steps of the block (R * ceil(d_head / load_lanes); 0: nothing to load)
    int r, kb;           // step b's row and first column: counters, not b / dbeats and b % dbeats (dividers)
};

inline QLoad q_none() {
    QLoad l = {0, 0, 0, 0, 0, 0, 0, 0};
    return l;
}

template <class Cfg>
QLoad q_block(long src, long st, int rows, int dh, int half) {
    constexpr int AL = load_lanes<Cfg>();
    QLoad l = {src, st, rows, half, 0, Cfg::R * ((dh + AL - 1) / AL), 0, 0};
    return l;
}

// A step's AL bytes lie in one beat (rows and heads start on one, AL divides it: estimate.axi_beat): q_req names
// them (gemm.h prefetch_req: the loaders' two halves), att_q_beat takes them from that beat.
template <class Cfg>
long q_req(const QLoad& l, int dh, int& n) {
    ISEG_PRAGMA(HLS INLINE)
    constexpr int AL = load_lanes<Cfg>();
    n = dh - l.kb < AL ? dh - l.kb : AL;
    return l.b < l.beats && l.r < l.rows ? l.src + l.kb : -1L;
}

// The step's channels as a write request for row r of q[l.half] (the engine loop's ports of sm.q write it, as
// gemm.h a_beat's into g.a).
template <class Cfg>
ABankReq<Cfg> att_q_beat(QLoad& l, int dh, const beat_t<Cfg>& v) {
    ISEG_PRAGMA(HLS INLINE)
    constexpr int AL = load_lanes<Cfg>();
    if (l.b >= l.beats) return bank_req_none<Cfg>();
    const int r = l.r, kb = l.kb;
    ISEG_CHECK(r == l.b / ((dh + AL - 1) / AL) && kb == (l.b % ((dh + AL - 1) / AL)) * AL,
               "Q load: the row/column counters left step b");
    uint8_t x[AL] = {};
    ISEG_PRAGMA(HLS ARRAY_PARTITION variable=x type=complete)
    if (r < l.rows) beat_take<AL>(v, int((l.src + kb) % Cfg::AXI_BYTES), x);
    int e0 = 0;
    ABankReq<Cfg> q = bank_req_at<Cfg, AL>(l.half, r, kb, e0);
ATT_Q_BYTE:
    for (int j = 0; j < AL; ++j) {
        ISEG_PRAGMA(HLS UNROLL)
        if (kb + j < dh) {
            q.v[e0 + j] = r < l.rows ? int16_t(int8_t(x[j])) : int16_t(0);
            q.m[e0 + j] = true;
        }
    }
    ++l.b;
    l.kb += AL;
    if (l.kb >= dh) {  // the row's last beat: the next row (running address: no r * stride multiplier)
        l.kb = 0;
        ++l.r;
        l.src += l.st;
    }
    return q;
}

}  // namespace iseg
