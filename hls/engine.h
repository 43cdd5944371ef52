// engine.h -- the layer-sequential engine: runs a layer table on ONE instance of each unit.
//
// The systolic GEMM array (gemm.h) is time-multiplexed across every LINEAR, PATCH_EMBED,
// MASK_PRODUCT layer and both matmuls of every ATTENTION layer: all of them share the single
// GemmBuffers declared here. Activations live in one scratch memory at the byte offsets of the
// table, reached through two m_axi ports (scratch, and scratch_b for the second access of a loop
// iteration: residual and ADD operands, LayerNorm trace rows); weights and constants in one read-only
// blob (m_axi). The ports are arrays of whole beats (axi.h). Layout and ports: docs/hls.md.
//
// The config struct (the generator writes one per project):
//   struct Cfg {
//     static constexpr int R, C;            // systolic array rows x columns
//     static constexpr int KMAX;            // longest reduction: max(K of every GEMM, tokens, LayerNorm channels) >= NMAX
//     static constexpr int NMAX;            // most tokens (rows of an attention layer)
//     static constexpr int CMAX;            // most channels of a row op (LAYERNORM, GELU)
//     static constexpr int DHMAX;           // largest d_head (the Q block of attention)
//     static constexpr int IMG_H, IMG_W;    // largest image (line buffers, C-sim stream depth)
//     static constexpr int PATCH_MAX;       // largest patch side
//     static constexpr int PIX, LAB;        // pixels / labels per stream beat (powers of two dividing the patch)
//     static constexpr int n_layers;        // table length (run_engine only)
//     static constexpr iseg::LayerDesc layers[n_layers];   // the table (run_engine only)
//   };
//
// A synthesis top (the generator's top.cpp) is a thin wrapper:
//   void iseg_top(hls::stream<iseg::pix_beat_t<Cfg> >& pixels, hls::stream<iseg::label_beat_t<Cfg> >& labels,
//                 const iseg::beat_t<Cfg>* weights, iseg::beat_t<Cfg>* scratch, iseg::beat_t<Cfg>* scratch_b) {
//   #pragma HLS INTERFACE mode=axis port=pixels
//   #pragma HLS INTERFACE mode=axis port=labels
//   #pragma HLS INTERFACE mode=m_axi port=weights offset=slave bundle=gmem0
//   #pragma HLS INTERFACE mode=m_axi port=scratch offset=slave bundle=gmem1
//   #pragma HLS INTERFACE mode=m_axi port=scratch_b offset=slave bundle=gmem2   (same buffer as scratch)
//   #pragma HLS INTERFACE mode=s_axilite port=return
//       iseg::run_engine<Cfg>(pixels, labels, weights, scratch, scratch_b);
//   }
#pragma once

#include "add.h"
#include "argmax_upsample.h"
#include "attention.h"
#include "gemm.h"
#include "schedule.h"
#include "gelu.h"
#include "layer_desc.h"
#include "layernorm.h"
#include "patch_embed.h"
#include "requant.h"

namespace iseg {

// The engine's compile-time invariants.
template <class Cfg>
struct EngineChecks {
    static_assert(Cfg::R >= 1 && Cfg::R <= 64, "array rows R must be in [1, 64]");
    static_assert(Cfg::C >= 1 && Cfg::C <= 64, "array columns C must be in [1, 64]");
    static_assert(Cfg::NMAX >= 1 && Cfg::KMAX >= Cfg::NMAX, "KMAX must cover NMAX (P.V reduces over keys)");
    static_assert(Cfg::KMAX >= 3 * Cfg::PATCH_MAX * Cfg::PATCH_MAX, "KMAX must cover the patch vector 3*P*P");
    static_assert(Cfg::CMAX >= 1 && Cfg::NCMAX >= 1, "CMAX and NCMAX must be positive");
    static_assert(Cfg::WROWS >= Cfg::KMAX, "WROWS must hold at least one K x C tile");
    static_assert(Cfg::AXI_BYTES >= 1 && Cfg::OUT_LANES >= 1 && Cfg::SM_LANES >= 1 && Cfg::LN_LANES >= 1 &&
                      Cfg::S_LANES >= 1,
                  "beat width and lane counts must be positive");
    static_assert(Cfg::DHMAX >= 1, "DHMAX (largest d_head) must be positive");
    static_assert(Cfg::PATCH_MAX >= 1 && Cfg::IMG_W % Cfg::PATCH_MAX == 0 && Cfg::IMG_H % Cfg::PATCH_MAX == 0,
                  "image sides must be multiples of the patch");
    static constexpr bool ok = true;
};

inline bool rq_ok(const RqDesc& r) { return r.tab >= 0 || (r.e >= 1 && r.e <= 62); }

// The row ops a generated Cfg builds: Cfg::ROW_OPS, bit (1 << op) set = its unit is in the hardware
// (the planner sets the ops of the model's table); a Cfg without ROW_OPS builds every op. Only the
// units of their own are left out: GELU (the ShiftGELU row unit), ADD (add_rows) and EMBED_ADD
// (embed_add_rows; absent when the embed add is fused into PATCH_EMBED's output stage).
template <class Cfg, class = void>
struct row_ops_of {
    static constexpr uint32_t value = 0xffffffffu;
};
template <class Cfg>
struct row_ops_of<Cfg, typename iseg_void<decltype(Cfg::ROW_OPS)>::type> {
    static constexpr uint32_t value = Cfg::ROW_OPS;
};
template <class Cfg>
constexpr bool builds_op(int op) {
    return ((row_ops_of<Cfg>::value >> op) & 1u) != 0;
}

// C-simulation check of one table entry against the config (compiles to nothing in synthesis).
template <class Cfg>
void check_layer(const LayerDesc& d) {
    ISEG_CHECK(d.T >= 1 && d.N >= 1, "layer table: T and N must be >= 1");
    ISEG_CHECK(d.op < 1 || d.op > 31 || builds_op<Cfg>(d.op),
               "layer table: op not built into this engine (Cfg::ROW_OPS)");
    switch (d.op) {
        case OP_PATCH_EMBED:
            ISEG_CHECK(d.patch >= 1 && d.patch <= Cfg::PATCH_MAX, "PATCH_EMBED: patch exceeds Cfg::PATCH_MAX");
            ISEG_CHECK(d.img_h <= Cfg::IMG_H && d.img_w <= Cfg::IMG_W, "PATCH_EMBED: image exceeds Cfg::IMG_H/IMG_W");
            ISEG_CHECK(d.img_h % d.patch == 0 && d.img_w % d.patch == 0, "PATCH_EMBED: image not a multiple of patch");
            ISEG_CHECK(d.K == 3 * d.patch * d.patch && d.in_stride >= d.K, "PATCH_EMBED: K must be 3*P*P, in_stride >= K");
            ISEG_CHECK(d.T == (d.img_h / d.patch) * (d.img_w / d.patch), "PATCH_EMBED: T must be the patch count");
            // n_prefix 1: the position-embedding add fused into the output stage (gemm.h embed_fused)
            ISEG_CHECK(d.n_prefix == 0 || (d.n_prefix == 1 && d.flags == 0 && d.out_bits == 16 && d.ea >= 1 &&
                                           d.ea <= 62 && d.in2 >= 0 && d.cst >= 0 && d.in2_stride >= d.N),
                       "PATCH_EMBED: a fused embed add needs n_prefix 1, out_bits 16, ea in [1, 62], pos and cls");
            /* fall through */
        case OP_LINEAR:
        case OP_MASK_PRODUCT:
            ISEG_CHECK(d.K >= 1 && d.K <= Cfg::KMAX, "GEMM layer: K exceeds Cfg::KMAX");
            ISEG_CHECK(d.N <= Cfg::NCMAX, "GEMM layer: N exceeds Cfg::NCMAX");
            ISEG_CHECK(long(d.K) * ((d.N + Cfg::C - 1) / Cfg::C) <= Cfg::WROWS,
                       "GEMM layer: K * ceil(N / C) exceeds Cfg::WROWS (the on-chip weight buffer)");
            ISEG_CHECK(d.out_bits == 8 || d.out_bits == 16, "GEMM layer: out_bits must be 8 or 16");
            ISEG_CHECK(rq_ok(d.rq), "GEMM layer: scalar rq.e must be in [1, 62]");
            ISEG_CHECK(!((d.flags & F_GELU) && (d.flags & F_RESIDUAL)), "GEMM layer: F_GELU and F_RESIDUAL exclude each other");
            if (d.flags & F_GELU) {
                ISEG_CHECK(d.out_bits == 8 && d.gelu.variant == GELU_LAMBDA,
                           "F_GELU: needs out_bits 8 and the lambda variant (ShiftGELU needs a row: use a GELU layer)");
                ISEG_CHECK(d.cst >= 0, "F_GELU: needs its table (cst: RQ_8(lambda-GELU(x)) for x = -128..127)");
            }
            if (d.flags & F_RESIDUAL) {
                ISEG_CHECK(d.out_bits == 16 && d.ea >= 1 && d.ea <= 62, "F_RESIDUAL: needs out_bits 16, ea in [1, 62]");
            }
            ISEG_CHECK(d.op != OP_MASK_PRODUCT || (d.flags == 0 && d.b < 0), "MASK_PRODUCT: no bias, no fused stage");
            break;
        case OP_ATTENTION:
            ISEG_CHECK(d.T <= Cfg::NMAX, "ATTENTION: T exceeds Cfg::NMAX");
            ISEG_CHECK(d.heads * d.d_head <= Cfg::NCMAX, "ATTENTION: D exceeds Cfg::NCMAX");
            ISEG_CHECK(d.heads >= 1 && d.d_head >= 1 && d.d_head <= Cfg::KMAX && d.d_head <= Cfg::DHMAX,
                       "ATTENTION: bad heads/d_head (d_head <= Cfg::DHMAX)");
            ISEG_CHECK(d.in_stride >= 3 * d.heads * d.d_head && d.out_stride >= d.heads * d.d_head,
                       "ATTENTION: strides too small for 3*D in / D out");
            ISEG_CHECK(d.sm_x0 < 0 && sm_variant_ok(d.sm_variant),
                       "ATTENTION: sm_x0 must be < 0, sm_variant precise, ivit or precise8");
            ISEG_CHECK(pv_ii_of<Cfg>::value == 2 || sm_p_bits(d.sm_variant) <= 8 || pack_of<Cfg>::value == 1,
                       "ATTENTION: Cfg::PV_II 1 needs u8 probabilities (sm_variant precise8) or an array that "
                       "does not pack (Cfg::PACK 1)");
            ISEG_CHECK(sm_row_shift_of<Cfg>::value || sm_p_bits(d.sm_variant) == 15,
                       "ATTENTION: sm_variant precise8 needs the Shiftmax row shift (Cfg::SM_ROW_SHIFT)");
            ISEG_CHECK(d.rq.tab < 0 && rq_ok(d.rq) && rq_ok(d.rq2), "ATTENTION: score rq must be scalar, e in [1, 62]");
            break;
        case OP_LAYERNORM:
            ISEG_CHECK(d.N <= Cfg::CMAX, "LAYERNORM: N exceeds Cfg::CMAX");
            ISEG_CHECK(d.N <= Cfg::KMAX, "LAYERNORM: N exceeds Cfg::KMAX (the loader's row buffer)");
            ISEG_CHECK(d.out_bits == 8 || d.out_bits == 16, "LAYERNORM: out_bits must be 8 or 16");
            ISEG_CHECK(rq_ok(d.rq), "LAYERNORM: scalar rq.e must be in [1, 62]");
            ISEG_CHECK(ln_mean_ok(d.N, d.mean_m, d.mean_sh),
                       "LAYERNORM: mean_m, mean_sh must be the mean reciprocal of N (numerics.mean_reciprocal)");
            break;
        case OP_GELU:
            ISEG_CHECK(d.N <= Cfg::CMAX, "GELU: N exceeds Cfg::CMAX");
            ISEG_CHECK(rq_ok(d.rq), "GELU: scalar rq.e must be in [1, 62]");
            break;
        case OP_EMBED_ADD:
            ISEG_CHECK(d.n_prefix >= 0 && d.n_prefix <= d.T, "EMBED_ADD: bad n_prefix");
            /* fall through */
        case OP_ADD:
            ISEG_CHECK(d.ea >= 1 && d.ea <= 62, "ADD: ea must be in [1, 62]");
            break;
        case OP_ARGMAX_UPSAMPLE:
            ISEG_CHECK(d.patch >= 1 && d.img_h <= Cfg::IMG_H && d.img_w <= Cfg::IMG_W,
                       "ARGMAX_UPSAMPLE: image exceeds Cfg::IMG_H/IMG_W");
            ISEG_CHECK(d.img_h % d.patch == 0 && d.img_w % d.patch == 0 &&
                           d.T == (d.img_h / d.patch) * (d.img_w / d.patch),
                       "ARGMAX_UPSAMPLE: T must be the patch count of the image");
            ISEG_CHECK(d.N <= 256, "ARGMAX_UPSAMPLE: labels are u8: at most 256 classes");
            break;
        case OP_COPY_CONST: {
            ISEG_CHECK(d.out_bits == 8 || d.out_bits == 16, "COPY_CONST: out_bits must be 8 or 16");
            const int W = Cfg::AXI_BYTES, bytes = d.out_bits / 8;
            ISEG_CHECK(d.cst % W == 0 && d.out % W == 0 && (long(d.in_stride) * bytes) % W == 0 &&
                           (long(d.out_stride) * bytes) % W == 0 && d.in_stride >= d.N && d.out_stride >= d.N,
                       "COPY_CONST: the blob's and the scratch's rows must start on whole beats (rows padded to beats)");
            break;
        }
        default:
            ISEG_CHECK(false, "layer table: unknown op code");
    }
    if (d.flags & F_GELU || d.op == OP_GELU) {
        ISEG_CHECK(d.gelu.x0 < 0 && d.gelu.n >= 0 && d.gelu.n <= kShexpNMax, "GELU: x0 must be < 0, n in [0, 32]");
    }
}

// The GELU pass's output lanes of gelu_layer: RQ_8 of each lane's GELU into y (the requant record of
// channel c from the rq1 table, banked like the GEMM output lanes': LANES consecutive channels, a bank each).
template <class Cfg, class Buf>
struct GeluRqOut {
    const RqDesc& rq;
    GemmBuffers<Cfg>& g;
    Buf& r;
    void operator()(int c, int32_t y) const {
        ISEG_PRAGMA(HLS INLINE)
        if (rq.tab >= 0) ISEG_RD(g, rq1, g.o_bank(c), g.o_word(c));
        ISEG_WR(r, y, Buf::bank(c), Buf::word(c));
        r.y[c] = int8_t(requant_w<kGeluYBits>(y, rq_at(rq, g.rq1, c), 8));
    }
};

// GELU layer: out (T, N) i8 = RQ_8(GELU(in (T, N) i8)), either variant (gelu.h "One row of the GELU row op").
// A per-channel requant is loaded first into g.rq1 (load_rq_table, counted there). Per row, with
// B = ceil(N / AXI_BYTES) beats and G = ceil(N / OUT_LANES) lane steps:
//   GELU_LOAD  B + PIPE   a beat of the row per cycle (gmem1), its max folded in
//   em         DIV        shexp(-M), a sequential divider (counted for either variant)
//   GELU_ROW   G + PIPE   OUT_LANES elements per cycle: GELU and RQ_8 into y
//   GELU_STORE B + PIPE   a beat of y per cycle (gmem1)
// = T * (2 * (B + PIPE) + G + PIPE + DIV): generator/estimate.py gelu_row_cycles, the same formula.
template <class Cfg>
void gelu_layer(const LayerDesc& d, const beat_t<Cfg>* blob, beat_t<Cfg>* scratch, GemmBuffers<Cfg>& g) {
    constexpr int W = Cfg::AXI_BYTES, L = Cfg::OUT_LANES, NB = gelu_banks<Cfg::AXI_BYTES, Cfg::OUT_LANES>();
    typedef GeluRowBuf<Cfg::CMAX, NB> Buf;
    static Buf r;  // x, y: cyclic over NB banks (gelu.h gelu_banks; generator/estimate.py charges them)
    constexpr int kNB = NB;
    (void)kNB;  // read by the pragmas only
    ISEG_PRAGMA(HLS ARRAY_PARTITION variable=r.x type=cyclic factor=kNB)
    ISEG_PRAGMA(HLS ARRAY_PARTITION variable=r.y type=cyclic factor=kNB)
    ISEG_CHECK(d.rq.tab < 0 || d.N <= Cfg::NCMAX, "GELU: a per-channel requant needs N <= NCMAX (the rq1 table)");
    load_rq_table<Cfg, 1>(d.rq, d.N, blob, g);
    const GeluRqOut<Cfg, Buf> out = {d.rq, g, r};
    const long beats = (long(d.N) + W - 1) / W, steps = (long(d.N) + L - 1) / L;
    (void)steps;  // read by the C-sim cycle count only
GELU_T:
    for (int t = 0; t < d.T; ++t) {
        ISEG_PRAGMA(HLS loop_tripcount min=1 max=1025)
        const long src = d.in + long(t) * d.in_stride;  // rows start on a beat: a beat per iteration
        const long dst = d.out + long(t) * d.out_stride;
        int32_t M = 0;
    GELU_LOAD:
        for (long b = 0; b < beats; ++b) {
            ISEG_PRAGMA(HLS loop_tripcount min=1 max=192)
            ISEG_PIPELINE(GELU_LOAD, 1);
            const int c0 = int(b) * W, cnt = d.N - c0 < W ? d.N - c0 : W;
            const beat_t<Cfg> v = ISEG_BEAT_RD(GMEM1, scratch, src + c0, cnt);
            uint8_t x[W] = {};
            ISEG_PRAGMA(HLS ARRAY_PARTITION variable=x type=complete)
        GELU_LOAD_B:
            for (int j = 0; j < W; ++j) x[j] = beat_byte(v, j);
            M = gelu_take<W>(r, x, c0, cnt, M);
        }
        gelu_row<L, typename widths_of<Cfg>::type>(r, d.N, M, d.gelu, out);
    GELU_STORE:
        for (long b = 0; b < beats; ++b) {
            ISEG_PRAGMA(HLS loop_tripcount min=1 max=192)
            ISEG_PIPELINE(GELU_STORE, 1);
            const int c0 = int(b) * W, cnt = d.N - c0 < W ? d.N - c0 : W;
            beat_t<Cfg> v;
            beat_clear(v);  // past the row's end: its padding
        GELU_STORE_L:
            for (int l = 0; l < W; ++l) {
                ISEG_PRAGMA(HLS UNROLL)
                if (l < cnt) {
                    ISEG_RD(r, y, Buf::bank(c0 + l), Buf::word(c0 + l));
                    beat_set(v, l, uint8_t(r.y[c0 + l]));
                }
            }
            ISEG_BEAT_WR(GMEM1, scratch, dst + c0, v, cnt);
        }
    }
    // GELU_LOAD reads (kReadDepth), GELU_ROW holds each lane's divider (kDivCycles deep), GELU_STORE only writes
    ISEG_CYCLES(g.cycles, long(d.T) * ((beats + kReadDepth) + (steps + kPipeDepth + kDivCycles) + kDivCycles +
                                      (beats + kPipeDepth)));
}

// Trace hook that does nothing (the synthesis top).
struct NoTrace {
    void operator()(int, const LayerDesc&, const void*, long long) const {}
};

// LINEAR and PATCH_EMBED read their weights from the blob: those are prefetched.
inline bool prefetched(const LayerDesc& d) { return d.op == OP_LINEAR || d.op == OP_PATCH_EMBED; }
inline bool uses_array(const LayerDesc& d) { return prefetched(d) || d.op == OP_MASK_PRODUCT; }

// A LAYERNORM row is fused into the LINEAR row right after it (the LayerNorm loader of gemm.h) when
// that row's left operand is exactly the LayerNorm's int8 output. generator/estimate.py ln_fusions fuses
// the same pairs: a LayerNorm followed in graph order by the Linear that reads its output, or a row
// window of it (the encoder's final norm -> dec.proj / dec.head, past the cls row), or Linears that each read
// one window (dec.norm -> dec.proj_patch, dec.proj_classes); then the generator writes a LAYERNORM row for each
// window only (T, in, out: rows r0 .. r0 + T of the graph op), right before its LINEAR, so the rows nothing
// reads are never computed and this test holds as is.
inline bool ln_fusable(const LayerDesc* table, int n_layers, int i) {
    if (table[i].op != OP_LAYERNORM || table[i].out_bits != 8 || i + 1 >= n_layers) return false;
    const LayerDesc& n = table[i + 1];
    return n.op == OP_LINEAR && n.in == table[i].out && n.in_stride == table[i].out_stride && n.K == table[i].N &&
           n.T == table[i].T;
}

// The next prefetched layer after entry i (or -1).
inline int next_prefetched(const LayerDesc* table, int n_layers, int i) {
NEXT_PF:
    for (int j = i + 1; j < n_layers; ++j) {
        ISEG_PRAGMA(HLS loop_tripcount min=1 max=8)
        if (prefetched(table[j])) return j;
    }
    return -1;
}

// Run `n_layers` entries of `table`. PixIn / LabOut: hls::stream<pix_beat_t<Cfg>> / hls::stream<label_beat_t<Cfg>>
// (or anything with read() / write()). trace(i, desc, scratch, cycles) after every layer, with the
// layer's counted cycles (C-sim; 0 in synthesis).
//
// Schedule: the weights of every LINEAR / PATCH_EMBED layer are prefetched into the free half of
// the on-chip weight buffer during the previous GEMM layer (the first one before the loop, exposed);
// a LAYERNORM row that feeds the next LINEAR row runs inside that row's left-operand loader
// (ln_fusable, gemm.h ln_step); every other op runs alone (attention, adds, the head; another LayerNorm runs
// on that loader alone, schedule.h layernorm_begin).
template <class Cfg, class PixIn, class LabOut, class Trace>
void run_layers(PixIn& pixels, LabOut& labels, const beat_t<Cfg>* weights, beat_t<Cfg>* scratch,
                beat_t<Cfg>* scratch_b, const LayerDesc* table, int n_layers, Trace& trace) {
    static_assert(EngineChecks<Cfg>::ok, "");
    static GemmBuffers<Cfg> g;  // THE array's buffers, shared by every layer (static: no 1 MB stack frame)
    // the banking GemmBuffers states (gemm.h) and the estimate charges; the C-sim port check counts against it
    constexpr int kAWord = Cfg::A_WORD, kOutLanes = Cfg::OUT_LANES, kLnLanes = Cfg::LN_LANES, kKd = kd_of<Cfg>::value;
    (void)kAWord, (void)kOutLanes, (void)kLnLanes, (void)kKd;  // read by the pragmas only
    ISEG_PRAGMA(HLS ARRAY_PARTITION variable=g.a dim=1 type=complete)
    ISEG_PRAGMA(HLS ARRAY_PARTITION variable=g.a dim=2 type=complete)
    ISEG_PRAGMA(HLS ARRAY_RESHAPE variable=g.a dim=3 type=cyclic factor=kAWord)
    ISEG_PRAGMA(HLS ARRAY_PARTITION variable=g.w dim=1 type=complete)
    ISEG_PRAGMA(HLS ARRAY_RESHAPE variable=g.w dim=3 type=complete)
    ISEG_PRAGMA(HLS ARRAY_RESHAPE variable=g.w dim=2 type=cyclic factor=kKd)  // a word: KD rows (the array's step)
    ISEG_PRAGMA(HLS ARRAY_PARTITION variable=g.acc dim=0 type=complete)
    ISEG_PRAGMA(HLS ARRAY_PARTITION variable=g.dr dim=0 type=complete)
    ISEG_PRAGMA(HLS ARRAY_PARTITION variable=g.ln_mean dim=0 type=complete)
    ISEG_PRAGMA(HLS ARRAY_PARTITION variable=g.ln_f dim=0 type=complete)
    ISEG_PRAGMA(HLS ARRAY_PARTITION variable=g.ln_sum dim=0 type=complete)
    ISEG_PRAGMA(HLS ARRAY_PARTITION variable=g.ln_sq dim=0 type=complete)
    ISEG_PRAGMA(HLS ARRAY_PARTITION variable=g.tp.t dim=0 type=complete)
    ISEG_PRAGMA(HLS ARRAY_PARTITION variable=g.bias type=cyclic factor=kOutLanes)
    ISEG_PRAGMA(HLS ARRAY_PARTITION variable=g.rq1 type=cyclic factor=kOutLanes)
    ISEG_PRAGMA(HLS ARRAY_PARTITION variable=g.lnrq type=cyclic factor=kLnLanes)
    ISEG_PRAGMA(HLS ARRAY_PARTITION variable=g.gtab dim=1 type=complete)
    ISEG_PRAGMA(HLS BIND_STORAGE variable=g.gtab type=ram_1p impl=lutram)
    static AttSm<Cfg> sm;  // attention's ping-pong score and Q blocks, row maxima, the Shiftmax state
    constexpr int kSmLanes = Cfg::SM_LANES;
    (void)kSmLanes;
    ISEG_PRAGMA(HLS ARRAY_PARTITION variable=sm.s dim=1 type=complete)
    ISEG_PRAGMA(HLS ARRAY_PARTITION variable=sm.s dim=3 type=cyclic factor=kSmLanes)
    ISEG_PRAGMA(HLS ARRAY_PARTITION variable=sm.q dim=1 type=complete)
    ISEG_PRAGMA(HLS ARRAY_PARTITION variable=sm.q dim=2 type=complete)
    ISEG_PRAGMA(HLS ARRAY_RESHAPE variable=sm.q dim=3 type=cyclic factor=kAWord)
    ISEG_PRAGMA(HLS ARRAY_PARTITION variable=sm.mx dim=0 type=complete)
    ISEG_PRAGMA(HLS ARRAY_PARTITION variable=sm.rs dim=0 type=complete)
    ISEG_PRAGMA(HLS ARRAY_PARTITION variable=sm.f dim=0 type=complete)
#if ISEG_W_URAM  // where the estimate charges it as URAM (model_cfg.h, from generator/estimate.py unit_costs)
    ISEG_PRAGMA(HLS BIND_STORAGE variable=g.w type=ram_t2p impl=uram)
#endif
    PassState<Cfg> ps = {};  // the loaders and drains of the engine loop (schedule.h)
    ISEG_PRAGMA(HLS ARRAY_PARTITION variable=ps.os.b type=complete)  // the store stages: a register per byte (axi.h)
    ISEG_PRAGMA(HLS ARRAY_PARTITION variable=ps.ts.b type=complete)
    g.wcur = 0;
    g.cycles = 0;
    ISEG_CHECK(scratch_b == scratch, "engine: scratch_b must be the scratch buffer (a second port onto it)");
    ISEG_AXI_BIND(Cfg::AXI_BYTES, weights, scratch);
    // C-sim: the whole table is checked before anything runs (the first prefetch reads a later row's weights)
ENGINE_CHECK:
    for (int i = 0; i < n_layers; ++i) check_layer<Cfg>(table[i]);
    Prefetch pf = prefetch_none();
    int pf_layer = next_prefetched(table, n_layers, -1);
    if (pf_layer >= 0) {
        pf = prefetch_start<Cfg>(table[pf_layer], g);
        const long beats = prefetch_beats(pf, prefetch_lanes<Cfg>());
    ENGINE_PF0:
        for (long b = 0; b < beats; ++b) {
            ISEG_PRAGMA(HLS loop_tripcount min=1 max=9216)
            ISEG_PIPELINE(ENGINE_PF0, 1);
            int n = 0;
            const long at = prefetch_req<Cfg>(pf, n);
            beat_t<Cfg> v;
            beat_clear(v);
            if (at >= 0) v = ISEG_BEAT_RD(GMEM0, weights, at, n);
            const WReq<Cfg> q = prefetch_beat<Cfg>(pf, v);
            if (q.ok) {
                ISEG_WR(g, w, q.half, g.w_word(q.row));
                w_word_write<Cfg>(g.w[q.half][q.row], q);
            }
        }
        ISEG_CYCLES(g.cycles, beats + kReadDepth);
    }
    long long before = 0;
    LayerDesc ln = empty_layer();  // a LAYERNORM row waiting for its LINEAR (ln_fusable)
    bool fuse_ln = false;
ENGINE_LAYERS:
    for (int i = 0; i < n_layers; ++i) {
        ISEG_PRAGMA(HLS loop_tripcount min=1 max=256)
        const LayerDesc d = table[i];
        if (prefetched(d)) {  // its weights are in the other half: swap
            ISEG_CHECK(pf_layer == i && pf.pos == pf.total, "engine: weight prefetch incomplete");
            g.wcur ^= 1;
        }
        if (uses_array(d)) {  // start the next prefetch in the shadow of this layer
            const int j = next_prefetched(table, n_layers, i);
            if (j >= 0 && j != pf_layer) {
                pf_layer = j;
                pf = prefetch_start<Cfg>(table[j], g);
            }
        }
        // every GEMM, attention and lone LayerNorm runs as passes of the ONE engine loop (schedule.h): one call
        // site here, whatever the op
        Seq sq = {};
        sq.phase = SQ_DONE;
        bool gemm = false;  // one gemm_begin call for the three GEMM ops (one copy of its table loaders)
        switch (d.op) {
            case OP_PATCH_EMBED:
                patch_unpack<Cfg>(pixels, d.img_h, d.img_w, d.patch, scratch, d.in, d.in_stride, g.cycles);
                gemm = true;
                break;
            case OP_LINEAR:
                gemm = true;
                break;
            case OP_MASK_PRODUCT:  // B = in2^T: element (k, n) = in2[n][k]
                load_b_transposed<Cfg>(d, scratch, g);
                gemm = true;
                break;
            case OP_ATTENTION:
                sq = attention_begin<Cfg>(d, weights, g, pf);
                break;
            case OP_LAYERNORM:
                if (ln_fusable(table, n_layers, i)) {  // runs inside the next LINEAR row
                    ln = d;
                    fuse_ln = true;
                    break;
                }
                sq = layernorm_begin<Cfg>(d, weights, g, ps);  // alone, on the same loader
                break;
            case OP_GELU:
                if (builds_op<Cfg>(OP_GELU)) gelu_layer<Cfg>(d, weights, scratch, g);
                break;
            case OP_ADD:
                if (builds_op<Cfg>(OP_ADD))
                    add_rows<typename widths_of<Cfg>::type>(scratch, d.in, d.in_stride, scratch_b, d.in2, d.in2_stride,
                                                            scratch, d.out, d.out_stride, d.T, d.N, d.ma, d.mb, d.ea);
                ISEG_CYCLES(g.cycles, long(d.T) * (d.N + kReadDepth));
                break;
            case OP_EMBED_ADD:
                if (builds_op<Cfg>(OP_EMBED_ADD))
                    embed_add_rows<typename widths_of<Cfg>::type>(weights, d.cst, scratch, d.in, d.in_stride, d.b,
                                                              scratch, d.out, d.out_stride, d.T, d.N, d.n_prefix, d.ma,
                                                              d.mb, d.ea);
                ISEG_CYCLES(g.cycles, long(d.T) * (d.N + kReadDepth));
                break;
            case OP_COPY_CONST: {  // a whole beat per iteration: the blob's rows are padded to beats like the scratch's
                constexpr int W = Cfg::AXI_BYTES;
                const int bytes = d.out_bits / 8, rb = d.N * bytes, beats = (rb + W - 1) / W;  // a row's bytes, beats
                const long sstep = act_bytes(d.in_stride, bytes), dstep = act_bytes(d.out_stride, bytes);
                const long n = long(d.T) * beats;
                long src = d.cst, dst = d.out;  // row t's first beat in the blob and in the scratch (running)
                int b = 0;
            COPY_BEAT:
                for (long i = 0; i < n; ++i) {
                    ISEG_PRAGMA(HLS loop_tripcount min=1 max=3600)
                    ISEG_PIPELINE(COPY_BEAT, 1);
                    const int nb = rb - b * W < W ? rb - b * W : W;  // the row's bytes in this beat (its padding: 0s)
                    const long o = long(b) * W;
                    ISEG_BEAT_WR(GMEM1, scratch, dst + o, ISEG_BEAT_RD(GMEM0, weights, src + o, nb), nb);
                    if (++b == beats) {
                        b = 0;
                        src += sstep;
                        dst += dstep;
                    }
                }
                ISEG_CYCLES(g.cycles, n + kReadDepth);
                break;
            }
            case OP_ARGMAX_UPSAMPLE:
                argmax_upsample<Cfg>(scratch, d.in, d.in_stride, d.N, d.img_h, d.img_w, d.patch, labels, g.cycles);
                break;
            default:
                break;
        }
        if (gemm) sq = gemm_begin<Cfg>(d, weights, g, pf, ln, fuse_ln && d.op == OP_LINEAR, ps);
        if (sq.phase != SQ_DONE) run_passes<Cfg>(sq, d, weights, scratch, scratch_b, g, sm, pf, ps);
        if (fuse_ln && d.op == OP_LINEAR) {  // the fused LayerNorm's output exists only now
            trace(i - 1, ln, scratch, 0);
            fuse_ln = false;
        }
        if (!(fuse_ln && d.op == OP_LAYERNORM)) {
            // a PATCH_EMBED row with the embed add fused writes the embed's 1 + T rows (the trace hands them out)
            LayerDesc o = d;
            if (embed_fused(d)) o.T += d.n_prefix;
            trace(i, o, scratch, g.cycles - before);
            before = g.cycles;
        }
    }
}

// The synthesis entry: the table is the generated Cfg::layers.
template <class Cfg>
void run_engine(hls::stream<pix_beat_t<Cfg> >& pixels, hls::stream<label_beat_t<Cfg> >& labels,
                const beat_t<Cfg>* weights, beat_t<Cfg>* scratch, beat_t<Cfg>* scratch_b) {
    NoTrace none;
    run_layers<Cfg>(pixels, labels, weights, scratch, scratch_b, Cfg::layers, Cfg::n_layers, none);
}

}  // namespace iseg
