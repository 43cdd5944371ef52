// gemm.h -- the systolic int8 GEMM engine (numerics.md §3), its fused output stage, and the
// overlapped schedule of a whole GEMM layer.
//
// The array: R x C multiply-accumulate PEs, output-stationary. For one output tile (R rows x C
// columns) each step of the K loop feeds one column of the left operand (R values) and one row of
// the right operand (C values) to the fully unrolled PE grid; each PE keeps its int32 accumulator.
// The left operand is stored 16 bits wide (int8 activations, or the Shiftmax probabilities of P.V: u15 for
// the precise / ivit variants, u8 for precise8) and enters the array as 9 signed bits on a packing array, the
// right operand int8. int8 x int8 and u8 x int8 pack two MACs per DSP48E2 (row pairs share the right
// operand); u15 x int8 does not, so P.V with u15 P goes through byte by byte, two steps per key, half the
// rate (schedule.h, Cfg::PV_II). Every linear layer, Q.K^T, P.V and the mask
// product run on this one array.
//
// The schedule of a GEMM layer (schedule.h: gemm_begin, then passes of the one engine loop) is ONE pass per row
// block, GEMM_STEP, whose iteration s does, in the same cycle:
//   * the array step k = s (while s < K),
//   * OUT_LANES elements of the PREVIOUS tile's output stage (its accumulators were copied to the
//     drain buffer when that tile ended): + bias, RQ, [lambda-GELU + RQ_8 | residual add | pos add], store
//     (PATCH_EMBED with the embed add fused: the first tile, with no previous one, drains the cls row),
//   * load_lanes bytes (two words of a row bank, at most a beat) of the NEXT row block's left operand
//     (ping-pong buffer a),
//     or, with a LayerNorm fused into the loader, one step of ln_step (stats / normalise),
//   * prefetch_lanes bytes (at most a beat, at most two rows of w) of the NEXT layer's weights into the
//     other half of the weight buffer
//     (ping-pong w: the whole layer's weights stay on chip, so each weight byte is read from DDR
//     once per frame and the left operand block once per layer).
// So a tile costs max(K, drain, A share, weight share) cycles, which is exactly what
// generator/estimate.py charges. Loop order: row blocks outer (the R x K block stays on chip across
// all column tiles), column tiles inner. The accumulators of the last tile drain after the loop.
//
// The functions here are the units; schedule.h calls each once, in the engine loop.
// C-simulation runs the same loop in the same order (bit-exact by construction: the arithmetic is
// untouched, only the data movement is scheduled); ISEG_CYCLES counts the iterations of every
// pipelined loop so tests can compare the count with the estimate.
#pragma once

#include "add.h"
#include "axi.h"
#include "gelu.h"
#include "layer_desc.h"
#include "layernorm.h"
#include "requant.h"

namespace iseg {

// Cfg::A_WORD: i16 elements per word of a left-operand bank (g.a, attention's Q blocks), chosen by the planner
// (generator/estimate.py a_word_options: 64-bit words, one BRAM36 per bank of up to 2048 elements, or wider
// ones at more BRAMs): each row bank is reshaped by this factor (ARRAY_RESHAPE cyclic on k), so the array
// step reads one word per row and a loader writes one word per port. load_lanes: elements a loader writes
// into one row bank per step, two words (the bank's two ports: the array reads the other half of the
// ping-pong), at most one beat: with 4-element words a 16-byte beat takes two steps.
template <class Cfg>
constexpr int load_lanes() {
    return Cfg::AXI_BYTES < 2 * Cfg::A_WORD ? Cfg::AXI_BYTES : 2 * Cfg::A_WORD;
}

// The transposing loader's C x AXI_BYTES ping-pong (registers), see load_b_transposed.
template <class Cfg>
struct Transposer {
    int8_t t[2][Cfg::C][Cfg::AXI_BYTES];
    int n;         // next source row of this chunk
    int wg, wj;    // tile being written out, its next row
    int wleft;     // rows of it left to write
    int wrow;      // its first row of w (tile * K: running, kbase)
    int kbase;     // the first row of w of the tile the beats fill (advanced K per tile: no multiplier)
};

// A fused lambda-GELU (F_GELU) and its RQ_8 are one function of the i8 input (the first requant's output), so
// the output lanes look the result up in a table of kGeluTable entries the generator computes with the
// reference's own function (numerics.gelu_rq8_table; blob offset `cst` of the LINEAR row). This replaces, per
// lane, a shift-exp (32 comparators), a 64-bit divider and three multipliers (docs/hls.md, "What csynth would
// likely find first", item 5). ShiftGELU needs its row's maximum and stays a row op (engine.h gelu_layer).
static constexpr int kGeluTable = 256;

// A left-operand row of n elements as the banks hold it: whole words of A_WORD (the reshape makes ceil(n / A_WORD)
// words either way), so a port access is always a whole word (schedule.h's ports of g.a and sm.q).
template <class Cfg>
constexpr int a_row_len(int n) {
    return (n + Cfg::A_WORD - 1) / Cfg::A_WORD * Cfg::A_WORD;
}

// Cfg::KD: the array's K unroll. Each PE takes KD consecutive k of its output per step (a chain of KD multipliers,
// on DSP48E2 a PCIN cascade, adding before the accumulator), so a tile's K loop runs ceil(K / KD) steps: the array
// reads KD lanes of a left-operand word (KD divides A_WORD) and a word of KD rows of w (g.w reshaped by KD). On a
// packing array the chain adds packed products: the low field's sum of KD products of at most 255 x 128 stays within
// its 18 signed bits for KD <= 4 (mul.h mul_pack2_chain), so the two accumulators sit at the chain's end, one pair
// per KD x 2 MACs. The planner makes KD divide every GEMM's K and every d_head (estimate.kd_options); P.V's keys
// need not be a multiple (the lanes past T read zero). A Cfg without KD gets 1.
template <class Cfg, class = void>
struct kd_of {
    static constexpr int value = 1;
};
template <class Cfg>
struct kd_of<Cfg, typename iseg_void<decltype(Cfg::KD)>::type> {
    static constexpr int value = Cfg::KD;
    static_assert(value == 1 || value == 2 || value == 4, "Cfg::KD must be 1, 2 or 4");
    static_assert(Cfg::A_WORD % value == 0, "Cfg::KD must divide A_WORD (the array's lanes of one word)");
};

// Array steps of a reduction over n: ceil(n / KD); and the rows of w that n takes, n rounded up to whole words.
template <class Cfg>
constexpr int kd_steps(int n) {
    return (n + kd_of<Cfg>::value - 1) / kd_of<Cfg>::value;
}
template <class Cfg>
constexpr int kd_rows(int n) {
    return kd_steps<Cfg>(n) * kd_of<Cfg>::value;
}

// Right operand of one layer as rows of C int8: row (tile j, k) = W[k][j*C .. j*C + C).
template <class Cfg>
struct GemmBuffers {
    static_assert(Cfg::R >= 1 && Cfg::C >= 1, "the array needs at least one row and one column");
    static_assert(Cfg::KMAX >= 1 && Cfg::WROWS >= Cfg::KMAX, "WROWS must hold at least one K x C tile");
    static_assert(Cfg::WROWS % kd_of<Cfg>::value == 0, "WROWS must be whole words of KD rows (Cfg::KD)");
    static_assert(Cfg::AXI_BYTES >= 1 && Cfg::OUT_LANES >= 1, "AXI_BYTES and OUT_LANES must be positive");
    static_assert(Cfg::A_WORD >= 1 && Cfg::A_WORD <= 64, "A_WORD: elements per word of a left-operand bank");
    int16_t a[2][Cfg::R][a_row_len<Cfg>(Cfg::KMAX)];  // left operand row blocks (int8, u15 or u8 P), ping-pong
    int8_t w[2][Cfg::WROWS][Cfg::C];    // a whole layer's right operand, ping-pong (current / prefetch)
    typedef typename acc_bits<widths_of<Cfg>::type::ARR>::type acc_t;  // compat.h: ap_int<ARR> in synthesis
    acc_t acc[Cfg::R][Cfg::C];          // the array's accumulators
    acc_t dr[Cfg::R][Cfg::C];           // the previous tile, drained by the output lanes
    int32_t bias[Cfg::NCMAX];           // per-channel constants of the current layer
    RqParams rq1[Cfg::NCMAX];           // the output lanes' requant records (GEMM: rq; attention's P.V: rq2)
    int8_t gtab[Cfg::OUT_LANES][kGeluTable];  // a fused lambda-GELU's RQ_8(GELU(x)), a LUTRAM copy per output lane
    RqParams lnrq[Cfg::CMAX];           // per-channel gamma/beta of a LayerNorm fused into the A loader
    RqDesc ln_rq;                       // its requant (per-tensor: the scalar, no table)
    int64_t ln_mean[Cfg::R], ln_f[Cfg::R];  // its per-row statistics (mean, (2^31 - 1) // sd)
    int64_t ln_sum[Cfg::R], ln_sq[Cfg::R];  // each row's sums, closed, waiting for the chain (ln_step: kLnIssue)
    long long ln_at[Cfg::R];                // C-simulation: the iteration that closed them (ISEG_ITER; -1: unknown)
    long long ln_iss[Cfg::R];               // C-simulation: the iteration that issued a row's chain (ISEG_ITER)
    long long a_at[2][Cfg::R];              // C-simulation: the iteration that last wrote a row of g.a (ISEG_ITER)
    Transposer<Cfg> tp;                 // the transposing loader (B^T of MASK_PRODUCT, K_h^T of attention)
    int wcur;                           // half of w holding the current layer's weights
    long long cycles;                   // C-sim only: counted pipeline cycles (ISEG_CYCLES)
    // The banking the estimate charges (generator/estimate.py unit_costs; the pragmas are in run_layers,
    // where g is declared; docs/hls.md "On-chip memory banking"), and the C-sim port counters that check
    // the accesses against it (iseg_ports.h):
    //   a      dims 1, 2 complete, dim 3 reshaped cyclic A_WORD: a bank per (half, row), word = k / A_WORD
    //   w      dim 1 complete, dim 3 reshaped complete, dim 2 reshaped cyclic KD: a memory per half, word = KD rows
    //          of C bytes (KD 1: a row), the array's step reads one; a writer writes a row of a word (byte enables)
    //   bias, rq1        cyclic OUT_LANES: the output lanes read OUT_LANES consecutive channels (a row of the
    //                    tile; wrapping to the next row can put two in one bank, which its two ports take)
    //   lnrq             cyclic LN_LANES: the LayerNorm loader's normalise lanes, likewise
    //   gtab   dim 1 complete: a copy per output lane, each one single-port LUTRAM (256 x 8 bits: 32 LUTs) that
    //          its lane reads in the engine loop and the table's load writes, an entry per iteration, in its own loop
    //   acc, dr, ln_mean, ln_f registers (complete): no port limit
    static constexpr int A_WORD = Cfg::A_WORD;
    static int a_bank(int half, int r) { return half * Cfg::R + r; }
    static int w_word(int row) { return row / kd_of<Cfg>::value; }
    static int o_bank(int col) { return col % Cfg::OUT_LANES; }
    static int o_word(int col) { return col / Cfg::OUT_LANES; }
    static int l_bank(int c) { return c % Cfg::LN_LANES; }
    static int l_word(int c) { return c / Cfg::LN_LANES; }
    static int t_bank(int lane) { return lane; }
    ISEG_PORTS(a, 2 * Cfg::R);
    ISEG_PORTS(w, 2);
    ISEG_PORTS(bias, Cfg::OUT_LANES);
    ISEG_PORTS(rq1, Cfg::OUT_LANES);
    ISEG_PORTS(lnrq, Cfg::LN_LANES);
    ISEG_PORTS(gtab, Cfg::OUT_LANES);
};

// ---------------------------------------------------------------------------------------------
// The weight prefetcher: a copy of a layer's weights into w[half]. The blob holds them in the order of w
// itself, tile by tile (generator/plan.py "i8 tiles": tile j, row k, C bytes W[k][j*C .. j*C + C), zero past
// N), so the copy is sequential: byte p goes to row p / C, column p % C. A step moves prefetch_lanes bytes,
// at most a beat and at most C, so it touches at most two words (rows) of w: the memory's two ports. Its
// state survives across tiles (and layers).
// The loaders' state holds byte offsets into the port they read, never pointers: a struct of pointers that
// outlives one expression is a pointer to a pointer for the HLS tool (docs/hls.md, "What csynth would likely
// find first"), and an offset names its m_axi port at the access.
struct Prefetch {
    long src;            // blob offset of the layer's weights: K * ceil(N / C) * C bytes, 64-byte aligned
    long pos, total;     // bytes copied, bytes to copy
    int half;
};

inline Prefetch prefetch_none() {
    Prefetch p = {0, 0, 0, 0};
    return p;
}

template <class Cfg>
constexpr int prefetch_lanes() {
    return Cfg::AXI_BYTES < Cfg::C ? Cfg::AXI_BYTES : Cfg::C;
}

inline long prefetch_beats(const Prefetch& p, int lanes) { return (p.total - p.pos + lanes - 1) / lanes; }

// One step: prefetch_lanes bytes of the blob into the weight buffer. The step's byte count is taken once and
// the position advanced once: sixteen unrolled `if (pos < total) ++pos` would be a serial compare/increment
// chain carried from one iteration to the next (docs/hls.md, "What csynth would likely find first").
// The loaders of the engine loop come in two halves: *_req names the span a step reads (its byte offset, -1 for
// none, and its bytes), and the step itself takes the beat that holds it. So the engine loop makes ONE request per
// m_axi bundle per iteration, its address muxed among the loaders that share the bundle (schedule.h), where a read
// inside each loader would be a request site of its own: the union of the loop's modes would ask the bundle for
// one request per site (docs/hls.md, item 11).
template <class Cfg>
long prefetch_req(const Prefetch& p, int& n) {
    ISEG_PRAGMA(HLS INLINE)
    constexpr int L = prefetch_lanes<Cfg>();
    const long left = p.total - p.pos;
    n = left <= 0 ? 0 : (left < L ? int(left) : L);
    // L = AXI_BYTES (estimate.axi_beat makes the beat divide C) and the weights start on a beat: a whole beat
    ISEG_CHECK(L == Cfg::AXI_BYTES && (p.src + p.pos) % Cfg::AXI_BYTES == 0, "weight prefetch: not a whole beat");
    return n > 0 ? p.src + p.pos : -1L;
}

// A write of one word of the weight buffer (a row of C bytes), the bytes where m: what the weight prefetch and
// attention's K/V loader hand the engine loop's two port sites of g.w (schedule.h W_PORT_A / W_PORT_B), as the
// writers of g.a hand theirs an ABankReq. The caller names the port: its access macro, then w_word_write.
template <class Cfg>
struct WReq {
    bool ok;
    int half, row;
    int8_t v[Cfg::C];
    bool m[Cfg::C];
};

template <class Cfg>
WReq<Cfg> w_req_none() {
    ISEG_PRAGMA(HLS INLINE)
    WReq<Cfg> q;
    q.ok = false;
    q.half = q.row = 0;
W_REQ_CLEAR:
    for (int c = 0; c < Cfg::C; ++c) {
        ISEG_PRAGMA(HLS UNROLL)
        q.v[c] = 0;
        q.m[c] = false;
    }
    return q;
}

template <class Cfg>
void w_word_write(int8_t (&row)[Cfg::C], const WReq<Cfg>& q) {
    ISEG_PRAGMA(HLS INLINE)
W_WORD_W:
    for (int c = 0; c < Cfg::C; ++c) {
        ISEG_PRAGMA(HLS UNROLL)
        if (q.m[c]) row[c] = q.v[c];
    }
}

// v: the beat at prefetch_req's offset, as one word's write: a step's L bytes lie in one row of w (L divides C and
// the weights start on a row), at column (pos mod C), a multiple of L, so byte c of the row takes lane c mod L.
template <class Cfg>
WReq<Cfg> prefetch_beat(Prefetch& p, const beat_t<Cfg>& v) {
    ISEG_PRAGMA(HLS INLINE)
    constexpr int L = prefetch_lanes<Cfg>();
    static_assert(Cfg::C % L == 0, "a prefetch step's bytes lie in one row of w");
    const long left = p.total - p.pos;
    const int n = left <= 0 ? 0 : (left < L ? int(left) : L);
    WReq<Cfg> q = w_req_none<Cfg>();
    if (n > 0) {
        const int c0 = int(p.pos % Cfg::C);
        ISEG_CHECK(c0 % L == 0, "weight prefetch: a step that is not a whole lane group of a row");
        q.ok = true;
        q.half = p.half;
        q.row = int(p.pos / Cfg::C);
    PF_BYTE:
        for (int c = 0; c < Cfg::C; ++c) {
            ISEG_PRAGMA(HLS UNROLL)
            const int j = c % L;
            if (c / L == c0 / L && j < n) {
                q.v[c] = beat_i8(v, j);
                q.m[c] = true;
            }
        }
    }
    p.pos += n;
    return q;
}

// Start prefetching layer d's weights (LINEAR / PATCH_EMBED) into the half not in use.
template <class Cfg>
Prefetch prefetch_start(const LayerDesc& d, const GemmBuffers<Cfg>& g) {
    Prefetch p = {long(d.w), 0, long(d.K) * ((d.N + Cfg::C - 1) / Cfg::C) * Cfg::C, g.wcur ^ 1};
    return p;
}

// ---------------------------------------------------------------------------------------------
// Writes into a left-operand row bank (g.a, attention's sm.q: a bank per (half, row), words of A_WORD elements) as
// REQUESTS. An HLS tool schedules the engine loop once for every path of every mode, and gives each access site of
// the source an operation of its own on the bank's two ports; it shares a port only between the arms of one
// if / else, and it does not prove separate `if`s on the loop's mode flags exclusive. Four units wrote g.a, each
// at its own sites (the A loader, the LayerNorm statistics and its in-place normalise, the Shiftmax normalise),
// beside the array's read: 9 operations per bank per iteration, II 5 (docs/hls.md, "What csynth would likely find
// first", item 11). In any one iteration at most one of them writes, at most two words of a row bank, in the half
// the array does not read. So each writer returns what it would write, and the engine loop (schedule.h) makes
// exactly two accesses per bank: port A reads (the array's word, the LayerNorm's in-place word) or writes a
// request's first word, port B writes its second word (or the LayerNorm's write-back).
template <class Cfg>
struct ABankReq {
    bool ok;
    int half, row;                 // the bank: a_bank(half, row) (q_bank for sm.q)
    int w0;                        // the first word: elements w0 A_WORD .. w0 A_WORD + 2 A_WORD - 1
    int16_t v[2 * Cfg::A_WORD];    // their values
    bool m[2 * Cfg::A_WORD];       // which of them are written (the byte enables of the two words)
};

template <class Cfg>
ABankReq<Cfg> bank_req_none() {
    ISEG_PRAGMA(HLS INLINE)
    ABankReq<Cfg> q = ABankReq<Cfg>();  // value-initialised: nothing valid, every element disabled
    ISEG_PRAGMA(HLS ARRAY_PARTITION variable=q.v type=complete)
    ISEG_PRAGMA(HLS ARRAY_PARTITION variable=q.m type=complete)
    return q;
}

// The request of a writer that puts LANES elements from element c0 (a multiple of LANES) of row `row` of `half`: its
// first word, and in e0 where c0 lies in it (0 whenever LANES is a multiple of A_WORD, as on every planned array).
// The writers fill v[e0 + j], m[e0 + j] (a_beat, ln_step's statistics, attention.h att_q_beat and att_sm_tick).
template <class Cfg, int LANES>
ABankReq<Cfg> bank_req_at(int half, int row, int c0, int& e0) {
    ISEG_PRAGMA(HLS INLINE)
    ABankReq<Cfg> q = bank_req_none<Cfg>();
    q.ok = true;
    q.half = half;
    q.row = row;
    q.w0 = c0 / Cfg::A_WORD;
    e0 = LANES % Cfg::A_WORD == 0 ? 0 : c0 % Cfg::A_WORD;
    return q;
}

// Whether request q writes anything of its word j (0: port A's, 1: port B's).
template <class Cfg>
bool bank_req_word(const ABankReq<Cfg>& q, int j) {
    ISEG_PRAGMA(HLS INLINE)
    bool any = false;
BANK_REQ_ANY:
    for (int e = 0; e < Cfg::A_WORD; ++e) {
        ISEG_PRAGMA(HLS UNROLL)
        any = any || q.m[j * Cfg::A_WORD + e];
    }
    return any;
}

// Word w of a row of a bank reshaped by AW (a row of whole words, a_row_len): elements w AW + e, e a constant after
// unrolling, so the tool sees the bank's word and lane, not a run-time element index (docs/hls.md item 7). Written
// from word j of a request (its enabled elements: byte enables), or read whole.
template <int AW, int N, int NV>
void bank_word_write(int16_t (&row)[N], int w, const int16_t (&v)[NV], const bool (&m)[NV], int j) {
    ISEG_PRAGMA(HLS INLINE)
    static_assert(N % AW == 0, "a row of whole words");
    ISEG_CHECK(w >= 0 && (w + 1) * AW <= N, "left-operand bank: a word past the row");
BANK_WORD_W:
    for (int e = 0; e < AW; ++e) {
        ISEG_PRAGMA(HLS UNROLL)
        if (m[j * AW + e]) row[w * AW + e] = v[j * AW + e];
    }
}
template <int AW, int N>
void bank_word_read(const int16_t (&row)[N], int w, int16_t (&o)[AW]) {
    ISEG_PRAGMA(HLS INLINE)
    static_assert(N % AW == 0, "a row of whole words");
BANK_WORD_R:
    for (int e = 0; e < AW; ++e) {
        ISEG_PRAGMA(HLS UNROLL)
        o[e] = row[w * AW + e];
    }
}

// The left-operand loader: row block `t0` into a[half], load_lanes bytes of one row per step (two words of its
// bank); rows >= rows are zero. Addresses are running (src advances a stride per row): no row * stride
// multiplier in the engine loop (docs/hls.md, "What csynth would likely find first", 64-bit address multiplies).
struct ALoad {
    long src;            // scratch offset of row r of the block (row 0 at the start)
    long stride;         // bytes
    int rows, K, half;
    int r, kb;           // next step: row r, byte kb of the row
};

inline int a_beats(int R, int K, int L) { return R * ((K + L - 1) / L); }

// A step's AL bytes of its row lie in one beat (rows start on one, AL divides it): a_req names them, a_beat takes
// them from that beat (with AL < AXI_BYTES two steps share a beat: the engine's read cache requests it once).
template <class Cfg>
long a_req(const ALoad& l, int& n) {
    ISEG_PRAGMA(HLS INLINE)
    constexpr int AL = load_lanes<Cfg>();
    n = l.K - l.kb < AL ? l.K - l.kb : AL;
    return l.r < Cfg::R && l.r < l.rows ? l.src + l.kb : -1L;
}

// The step's bytes as a request for row l.r of a[l.half] (the engine loop's ports write it).
template <class Cfg>
ABankReq<Cfg> a_beat(ALoad& l, const beat_t<Cfg>& v) {
    ISEG_PRAGMA(HLS INLINE)
    constexpr int AL = load_lanes<Cfg>(), AW = Cfg::A_WORD;
    // AL elements from a multiple of AL fill whole words (AL = 2 AW: both) or lie in one (AL divides AW)
    static_assert(AL % AW == 0 || AW % AL == 0, "load_lanes and A_WORD: one a multiple of the other");
    if (l.r >= Cfg::R) return bank_req_none<Cfg>();
    uint8_t x[AL] = {};
    ISEG_PRAGMA(HLS ARRAY_PARTITION variable=x type=complete)
    if (l.r < l.rows) beat_take<AL>(v, int((l.src + l.kb) % Cfg::AXI_BYTES), x);
    int e0 = 0;
    ABankReq<Cfg> q = bank_req_at<Cfg, AL>(l.half, l.r, l.kb, e0);
A_BYTE:
    for (int j = 0; j < AL; ++j) {
        ISEG_PRAGMA(HLS UNROLL)
        if (l.kb + j < l.K) {
            q.v[e0 + j] = l.r < l.rows ? int16_t(int8_t(x[j])) : int16_t(0);
            q.m[e0 + j] = true;
        }
    }
    l.kb += AL;
    if (l.kb >= l.K) {
        l.kb = 0;
        ++l.r;
        l.src += l.stride;
    }
    return q;
}

// The LayerNorm loader (a LAYERNORM row fused into the next LINEAR row, numerics.md §5.3): loads a
// row block of the LayerNorm's i16 INPUT into a[half] and normalises it in place, one step per call:
//   stats      AXI_BYTES/2 i16 channels per step (one beat): a[half][r][c] = x, sum, sum of squares
//              (var = sum(x^2) - 2 mean sum(x) + C mean^2 = sum((x - mean)^2), exactly);
//   chain      a row's mean (a reciprocal multiply and the remainder's, layernorm.h: no divider), variance (one
//              multiply), square root and reciprocal divider are one pipelined chain of kLnChain cycles. It is NOT
//              issued in the step that reads the row's last beat: that step only closes the sums into g.ln_sum /
//              g.ln_sq, and the chain runs kLnIssue loader steps later (at least as many iterations), on the closed
//              sums, so in the engine loop's schedule the m_axi read and the chain lie side by side, not end to end
//              (kEngineDepth: the longer of the two, not their sum; docs/hls.md item 12). Rows close every S steps
//              in order, and the issues follow in order, one per S steps, whatever the phase;
//   normalise  LN_LANES channels per step (at most A_WORD, a power of two: the planner's choice, so the
//              in-place read and write are one word each of the row's bank): a = RQ_8(((x - mean) * f) >> 1),
//              also stored to the LayerNorm's output rows in scratch (the table's LAYERNORM row output, for
//              the trace). Row r's normalise starts kLnChain steps after its chain issues, or when row r - 1's
//              ends, whichever is later, beside the statistics of the rows after it (another row bank of the
//              same half: the stats write and the normalise's read on port A, its write-back on port B). So a
//              block takes S - 1 + kLnIssue + kLnChain + (R - 1) max(S, N) + N steps (ln_block_steps; S, N: a row's
//              stats and normalise steps), where the passes one after the other took R (S + N) and what the chain
//              exceeded of the slack (R (S + N) = 576 on Seg-T's K = 192 on 16-byte beats at 8 lanes and R 12,
//              453 now).
//              The engine loop declares the sums and the statistics free of inter-iteration dependences
//              (schedule.h: DEPENDENCE ... inter false), which these distances make true (C-simulation checks both
//              in iterations: g.ln_at, g.ln_iss).
// Rows past `rows` stay zero. ln_block_steps() steps per block, whatever `rows` is.
static constexpr int kIsqrtSteps = kLnVarSteps;  // the root of a variance below 2^43 (layernorm.h ln_sd): 22 steps
// mean: q = (n * mean_m) >> mean_sh, a 2-DSP product (4 cycles, as every pipelined multiply here), its shift and
// the sign folds (1); r = sum - K q, a multiply (4); the rounding compare and select (1). No divider.
static constexpr int kLnMeanCycles = 10;
static constexpr int kLnVarCycles = 4;  // var = sq - 2 mean sum + (K mean) mean: one pipelined multiply (K mean is
                                        // the remainder's K q, + K if the mean rounded up)
static constexpr int kLnChain = kLnMeanCycles + kLnVarCycles + kIsqrtSteps + kLnDivCycles;  // mean, var, sqrt, 1/sd
// Loader steps from the step that closes a row's sums to the one that issues its chain: the close writes the sums
// kMaxiLatency cycles into its iteration (the beat's latency), plus the square's multiply and the adds (8 at most),
// and the issue reads them at the start of its own.
static constexpr int kLnIssue = kMaxiLatency + 8;
// The engine loop's depth (schedule.h engine_pass, compat.h): its longest path in one iteration is the m_axi read
// (kMaxiLatency, then what uses the beat) or the LayerNorm chain (issued on sums closed kLnIssue steps before, not on
// this iteration's beat), whichever is longer, and the datapath. Every mode shares it (the loop is scheduled once
// for all: docs/hls.md, item 12), so every pass of the engine pays it once.
static constexpr int kEngineDepth = kPipeDepth + (kMaxiLatency > kLnChain ? kMaxiLatency : kLnChain);
enum LnPhase : int32_t { LN_RUN = 0, LN_DONE = 1 };  // a block in progress (statistics and / or normalise), or none

struct LnLoad {
    long src;               // scratch offset of the LayerNorm input (i16), row 0 of the block
    long dst;               // of its output (out_bits: 8 into a GEMM, 8 or 16 alone), row 0 of the block, written
                            // through the second scratch port (scratch_b, gmem2: the output lanes store beside it)
    long sstride, dstride;  // elements
    int rows, K, bytes, half;
    int mean_m, mean_sh;    // the mean's reciprocal of K (the LAYERNORM row's, layernorm.h)
    int phase;
    int r, i;               // the statistics pass: row r (R: done), channel i
    int rn, in;             // the normalise pass: row rn (R: the block is done), channel in
    int64_t sum, sq;
    long srow;              // running offsets (no row * stride multiplier): row r of the stats pass,
    long drow;              // and row rn of the normalise pass
    int S;                  // stats steps of a row
    int t, ci, next;        // the block's loader steps so far; the next row whose chain issues, at step `next`
    int nat;                // the step from which row rn may be normalised: its chain's issue + kLnChain
};

inline int ln_beat_lanes(int W) { return W / 2 > 0 ? W / 2 : 1; }

// The loader at the start of a block whose input starts at l.src (phase LN_RUN; ln_load, and the LAYERNORM pass's
// next block in schedule.h): the stats pass from row 0, the first chain issue kLnIssue steps after row 0's sums
// close, row 0's normalise kLnChain steps after that.
inline void ln_block_start(LnLoad& l) {
    l.phase = LN_RUN;
    l.r = l.i = l.rn = l.in = 0;
    l.sum = l.sq = 0;
    l.srow = l.src;
    l.drow = l.dst;
    l.t = l.ci = 0;
    l.next = l.S - 1 + kLnIssue;
    l.nat = l.next + kLnChain;
}

// A loader at the start of its block (phase LN_RUN, or LN_DONE for none); ln: the LAYERNORM row (its mean
// reciprocal); W: Cfg::AXI_BYTES.
inline LnLoad ln_load(long src, long dst, long sstride, long dstride, int rows, int K, int bytes,
                      int half, int phase, const LayerDesc& ln, int W) {
    const int lw = ln_beat_lanes(W);
    LnLoad l = {src, dst, sstride, dstride, rows, K, bytes, half, ln.mean_m, ln.mean_sh, phase, 0, 0, 0, 0, 0, 0,
                src, dst, (K + lw - 1) / lw, 0, 0, 0, 0};
    ln_block_start(l);
    l.phase = phase;  // LN_DONE: no block
    return l;
}

// Element count -> bytes of an 8- or 16-bit row (a shift, not a multiplier).
inline long act_bytes(long n, int bytes) { return n << (bytes >> 1); }

// Steps of a block (the normalise pass ends last): row r's normalise starts at S - 1 + kLnIssue + kLnChain +
// r max(S, N) (its chain's result, or row r - 1's end), and takes N steps.
inline int ln_block_steps(int R, int K, int W, int lanes) {
    const int lw = ln_beat_lanes(W);
    const int S = (K + lw - 1) / lw, N = (K + lanes - 1) / lanes;
    return S - 1 + kLnIssue + kLnChain + (R - 1) * (S > N ? S : N) + N;
}

// The statistics step's read: lw = AXI_BYTES / 2 channels, a whole beat of the row (rows start on a beat).
template <class Cfg>
long ln_req(const LnLoad& l, int& n) {
    ISEG_PRAGMA(HLS INLINE)
    const int lw = ln_beat_lanes(Cfg::AXI_BYTES);
    n = 2 * (l.K - l.i < lw ? l.K - l.i : lw);
    ISEG_CHECK(l.phase != LN_RUN || l.r >= l.rows || (l.srow + 2L * l.i) % Cfg::AXI_BYTES == 0,
               "LayerNorm stats: not a whole beat");
    return l.phase == LN_RUN && l.r < l.rows ? l.srow + 2L * l.i : -1L;
}

// Words of g.a a normalise step reads and writes back in place: LN_LANES channels from a multiple of LN_LANES (one
// word on every planned array: LN_LANES <= A_WORD, estimate.make_shape; two in the harness build that exceeds the
// bank's ports on purpose, tests/hls/test_hls_ports.py).
template <class Cfg>
constexpr int ln_words() {
    return (Cfg::LN_LANES + Cfg::A_WORD - 1) / Cfg::A_WORD;
}

// One step of the loader, first half (around the engine loop's ports of g.a, schedule.h): a statistics step returns
// the beat's channels as a write request; a normalise step (of an earlier row, in the same step or not) names the
// words it reads in place (ln_norm, the second half, takes what the port read and returns the write-back).
template <class Cfg>
struct LnStep {
    ABankReq<Cfg> wr;   // the statistics step's write: lw channels of row r into a[half]
    bool norm;          // a normalise step: ln_norm runs on the words read
    bool rd;            // ... of a row in the block (rows past `rows` stay zero: no access)
    int half, row, w0;  // the words it reads: ln_words() from w0 of row rn
};

// No step (the loader does not run in this iteration).
template <class Cfg>
LnStep<Cfg> ln_step_none() {
    ISEG_PRAGMA(HLS INLINE)
    LnStep<Cfg> o;
    o.wr = bank_req_none<Cfg>();
    o.norm = o.rd = false;
    o.half = o.row = o.w0 = 0;
    return o;
}

// v: the beat at ln_req's offset (stats).
template <class Cfg>
LnStep<Cfg> ln_step(LnLoad& l, const beat_t<Cfg>& v, GemmBuffers<Cfg>& g) {
    ISEG_PRAGMA(HLS INLINE)
    constexpr int AW = Cfg::A_WORD, LW = Cfg::AXI_BYTES / 2 > 0 ? Cfg::AXI_BYTES / 2 : 1;
    static_assert(LW % AW == 0 || AW % LW == 0, "a statistics step: whole words, or within one");
    static_assert(LW <= 2 * AW && Cfg::LN_LANES <= 2 * AW, "the loader's steps: at most two words of a row bank");
    const int r = l.r;
    LnStep<Cfg> o = ln_step_none<Cfg>();
    // the chain of the row whose sums closed kLnIssue steps ago (during later rows' stats or after them), on the
    // closed sums, not on this step's beat
    if (l.phase != LN_DONE && l.ci < Cfg::R && l.t == l.next) {
        const int ci = l.ci;
        ISEG_CHECK(g.ln_at[ci] < 0 || ISEG_ITER() - g.ln_at[ci] >= kLnIssue,
                   "LayerNorm: a row's chain issued fewer than kLnIssue iterations after its sums closed");
        const int64_t sum = g.ln_sum[ci], sq = g.ln_sq[ci];
        // mean = round_half_even(sum / K) without a divider (layernorm.h): q = floor(sum / K) from the row's
        // reciprocal on the folded sum, r = sum - K q in [0, K), then half to even
        const bool neg = sum < 0;
        const int64_t n = neg ? ~sum : sum;  // 0 <= n < K 2^15
        const int64_t qn = mul_dsp<kLnSumBits<Cfg::CMAX>(), kLnMeanMBits<Cfg::CMAX>()>(n, l.mean_m) >> l.mean_sh;
        const int64_t q = neg ? ~qn : qn;  // in [-2^15, 2^15 - 1]
        const int64_t kq = mul_lane<kLnKBits, kI16Bits, widths_of<Cfg>::type::SMALL_FABRIC>(l.K, q);
        const int64_t rem = sum - kq;
        const bool up = 2 * rem > l.K || (2 * rem == l.K && (q & 1) != 0);
        const int64_t mean = q + (up ? 1 : 0);  // an int16 value
        const int64_t kmean = kq + (up ? l.K : 0);  // K mean
        ISEG_CHECK(rem >= 0 && rem < l.K && mean == round_half_even_div(sum, l.K),
                   "LayerNorm mean: the reciprocal multiply differs from the division (LayerDesc mean_m, mean_sh)");
        const int64_t var = sq - 2 * mul_dsp<kI16Bits, kLnSumBits<Cfg::CMAX>()>(mean, sum) +
                            mul_dsp<kLnKBits + kI16Bits, kI16Bits>(kmean, mean);
        // var = sum((x - mean)^2)
        const int64_t sd = ln_sd(var);  // max(isqrt(var), 1), 22 digit steps
        g.ln_mean[ci] = mean;
        g.ln_f[ci] = ln_recip(sd);  // (2^31 - 1) // sd on a 32-bit divider
        g.ln_iss[ci] = ISEG_ITER();
        ++l.ci;
        l.next += l.S;
    }
    const int t = l.t;  // this step
    if (l.phase != LN_DONE) ++l.t;
    o.half = l.half;
    o.row = l.rn;
    o.w0 = l.in / AW;
    if (l.phase == LN_RUN && l.rn < Cfg::R && t >= l.nat) {  // row rn's normalise, its chain's result in
        ISEG_CHECK(l.in > 0 || g.ln_iss[l.rn] < 0 || ISEG_ITER() - g.ln_iss[l.rn] >= kLnChain,
                   "LayerNorm: a row normalised fewer than kLnChain iterations after its chain issued");
        o.norm = true;
        o.rd = l.rn < l.rows;
    }
    if (l.phase == LN_RUN && l.r < Cfg::R) {
        int e0 = 0;
        o.wr = bank_req_at<Cfg, LW>(l.half, r, l.i, e0);
    LNL_STATS:
        for (int j = 0; j < Cfg::AXI_BYTES; ++j) {
            ISEG_PRAGMA(HLS UNROLL)
            const int c = l.i + j;
            if (j < LW && c < l.K) {
                const int64_t x = r < l.rows ? int64_t(beat_i16(v, 2 * j)) : 0;
                o.wr.v[e0 + j] = int16_t(x);
                o.wr.m[e0 + j] = true;
                l.sum += x;
                l.sq += mul_dsp<kI16Bits, kI16Bits>(x, x);
            }
        }
        l.i += LW;
        if (l.i >= l.K) {  // the row's sums close: its chain issues kLnIssue steps later (above)
            g.ln_sum[r] = l.sum;
            g.ln_sq[r] = l.sq;
            g.ln_at[r] = ISEG_ITER();
            l.sum = l.sq = 0;
            l.i = 0;
            l.srow += 2 * l.sstride;
            ++l.r;
        }
    }
    return o;
}

// The second half of a normalise step (st.norm): x holds the ln_words() words port A read at st.w0 of row l.r, in
// place; returns their write-back (port B) and puts the LayerNorm's own output (the trace rows) on the second scratch
// port. ts: the stage of those stores (their puts run along a row, LN_LANES elements each: a put starts at a
// multiple of LN_LANES bytes).
template <class Cfg>
ABankReq<Cfg> ln_norm(LnLoad& l, const LnStep<Cfg>& st, const int16_t (&x)[ln_words<Cfg>()][Cfg::A_WORD],
                      WrStage<Cfg::AXI_BYTES>& ts, beat_t<Cfg>* scratch_b, GemmBuffers<Cfg>& g) {
    ISEG_PRAGMA(HLS INLINE)
    constexpr int AW = Cfg::A_WORD, LL = Cfg::LN_LANES;
    static_assert(LL % AW == 0 || AW % LL == 0, "LN_LANES and A_WORD: one a multiple of the other");
    ABankReq<Cfg> q = bank_req_none<Cfg>();
    if (!st.norm) return q;
    const int r = l.rn;
    ISEG_CHECK(st.row == r && st.w0 == l.in / AW, "LayerNorm normalise: the read left its step");
    q.ok = st.rd;
    q.half = st.half;
    q.row = r;
    q.w0 = st.w0;
    const int e0 = LL % AW == 0 ? 0 : l.in % AW;  // LN_LANES < A_WORD: the step's lanes lie in one word
    uint8_t xo[2 * LL] = {};  // the LayerNorm's own output (the trace rows), put on the second port
    ISEG_PRAGMA(HLS ARRAY_PARTITION variable=xo type=complete)
LNL_NORM:
    for (int j = 0; j < LL; ++j) {
        ISEG_PRAGMA(HLS UNROLL)
        const int c = l.in + j, e = e0 + j;
        if (c < l.K && st.rd) {
            ISEG_RD(g, lnrq, g.l_bank(c), g.l_word(c));
            const int64_t z = ln_scale(int64_t(x[e / AW][e % AW]) - g.ln_mean[r], g.ln_f[r]);
            const int32_t y = requant_w<kLnZBits>(z, rq_at(g.ln_rq, g.lnrq, c), 8 * l.bytes);
            q.v[e] = int16_t(y);
            q.m[e] = true;
            put_act(xo, int(act_bytes(j, l.bytes)), l.bytes, y);
        }
    }
    if (st.rd)
        ISEG_STAGE_PUT(LL, GMEM2, ts, scratch_b, l.drow + act_bytes(l.in, l.bytes), xo,
                       act_bytes(l.K - l.in < LL ? l.K - l.in : LL, l.bytes));
    l.in += LL;
    if (l.in >= l.K) {  // the next row: its chain issues S steps after this one's
        l.in = 0;
        l.drow += act_bytes(l.dstride, l.bytes);
        l.nat += l.S;
        if (++l.rn == Cfg::R) l.phase = LN_DONE;
    }
    return q;
}

// ---------------------------------------------------------------------------------------------
// Per-channel constants (biases, requant records) from the blob into their on-chip banks. Each table is
// its own pipelined loop reading the table sequentially, one beat's worth per iteration (a burst on gmem0):
// one loop reading a bias and two records per channel would ask the port for three spans per cycle.
//   biases   bias_lanes = min(AXI_BYTES / 4, OUT_LANES) per iteration (consecutive channels: one bank each)
//   records  16 bytes each: rq_recs(lanes) = min(AXI_BYTES / 16, lanes) whole records per iteration, or, on a
//            port narrower than a record, rq_parts = ceil(16 / AXI_BYTES) iterations per record (the parts
//            are collected in a register; the record is written with its last part)
// A per-tensor requant (tab < 0) has no table: the lanes use its scalar (rq_at), nothing is loaded.
// Cycles: generator/estimate.py table_its, the same figures.
template <class Cfg>
constexpr int bias_lanes() {
    return Cfg::AXI_BYTES / 4 < 1 ? 1 : (Cfg::AXI_BYTES / 4 < Cfg::OUT_LANES ? Cfg::AXI_BYTES / 4 : Cfg::OUT_LANES);
}
template <class Cfg, int LANES>
constexpr int rq_recs() {
    return Cfg::AXI_BYTES < kRqRecordBytes ? 1
                                            : (Cfg::AXI_BYTES / kRqRecordBytes < LANES ? Cfg::AXI_BYTES / kRqRecordBytes
                                                                                       : LANES);
}
template <class Cfg>
constexpr int rq_parts() {
    return (kRqRecordBytes + Cfg::AXI_BYTES - 1) / Cfg::AXI_BYTES;
}
inline long table_its(int n, int per_it, int parts) { return long((n + per_it - 1) / per_it) * parts; }

// The requant of channel c: the loaded table, or the per-tensor scalar.
inline RqParams rq_at(const RqDesc& d, const RqParams* tab, int c) {
    ISEG_PRAGMA(HLS INLINE)
    return d.tab >= 0 ? tab[c] : rq_scalar_of(d);
}

// The (m, e, o) of channel c (sequential code: the record's beats one after the other), or the scalar.
template <class Cfg>
RqParams rq_read(const RqDesc& d, const beat_t<Cfg>* blob, int c) {
    if (d.tab < 0) return rq_scalar_of(d);
    constexpr int W = Cfg::AXI_BYTES, PARTS = rq_parts<Cfg>(), SPAN = W < kRqRecordBytes ? W : kRqRecordBytes;
    uint8_t rec[kRqRecordBytes] = {};
    const long at = d.tab + long(c) * kRqRecordBytes;  // records are 16-byte aligned in a 64-byte aligned table
RQ_READ:
    for (int p = 0; p < PARTS; ++p) {
        const beat_t<Cfg> v = ISEG_BEAT_RD(GMEM0, blob, at + p * SPAN, SPAN);
    RQ_READ_B:
        for (int j = 0; j < SPAN; ++j) rec[p * SPAN + j] = beat_byte(v, int((at + p * SPAN) % W) + j);
    }
    return rq_record(rec);
}

// Which table of GemmBuffers a record loop fills (its bank function and port counters).
template <class Cfg, int WHICH>
struct RqTable;
template <class Cfg>
struct RqTable<Cfg, 1> {
    static constexpr int LANES = Cfg::OUT_LANES;
    static RqParams* of(GemmBuffers<Cfg>& g) { return g.rq1; }
    static void port(GemmBuffers<Cfg>& g, int c) { ISEG_WR(g, rq1, g.o_bank(c), g.o_word(c)); }
};
template <class Cfg>
struct RqTable<Cfg, 3> {
    static constexpr int LANES = Cfg::LN_LANES;
    static RqParams* of(GemmBuffers<Cfg>& g) { return g.lnrq; }
    static void port(GemmBuffers<Cfg>& g, int c) { ISEG_WR(g, lnrq, g.l_bank(c), g.l_word(c)); }
};

// The n records of d's table into table WHICH (1: rq1, 3: lnrq); nothing for a per-tensor requant.
// A table starts on a beat (blob segments are 64-byte aligned) and each iteration reads whole records or one part
// of one: a whole beat, at its first byte.
template <class Cfg, int WHICH>
void load_rq_table(const RqDesc& d, int n, const beat_t<Cfg>* blob, GemmBuffers<Cfg>& g) {
    if (d.tab < 0) return;
    constexpr int RPI = rq_recs<Cfg, RqTable<Cfg, WHICH>::LANES>(), PARTS = rq_parts<Cfg>();
    constexpr int W = Cfg::AXI_BYTES;
    RqParams* dst = RqTable<Cfg, WHICH>::of(g);
    const long its = table_its(n, RPI, PARTS);
    uint8_t rb[kRqRecordBytes] = {};  // the parts of a record (a port narrower than a record)
    ISEG_PRAGMA(HLS ARRAY_PARTITION variable=rb type=complete)
RQ_TABLE:
    for (long i = 0; i < its; ++i) {
        ISEG_PRAGMA(HLS loop_tripcount min=1 max=768)
        ISEG_PIPELINE(RQ_TABLE, 1);
        const int c0 = int(i / PARTS) * RPI, p = int(i % PARTS);
        const int recs = n - c0 < RPI ? n - c0 : RPI;
        const long at = long(c0) * kRqRecordBytes + long(p) * W;
        const int span = recs * kRqRecordBytes - p * W < W ? recs * kRqRecordBytes - p * W : W;
        ISEG_CHECK((d.tab + at) % W == 0, "rq table: not a whole beat");
        const beat_t<Cfg> v = ISEG_BEAT_RD(GMEM0, blob, d.tab + at, span);
    RQ_PART:
        for (int j = 0; j < W && j < kRqRecordBytes; ++j) {
            ISEG_PRAGMA(HLS UNROLL)
            if (PARTS > 1 && j < span) rb[p * W + j] = beat_byte(v, j);
        }
        if (p == PARTS - 1) {
        RQ_REC:
            for (int r = 0; r < RPI; ++r) {
                ISEG_PRAGMA(HLS UNROLL)
                if (r < recs) {
                    uint8_t rec[kRqRecordBytes] = {};
                    ISEG_PRAGMA(HLS ARRAY_PARTITION variable=rec type=complete)
                RQ_REC_BYTE:  // (the index is masked: with parts, a record is rb and the beat index never used)
                    for (int j = 0; j < kRqRecordBytes; ++j)
                        rec[j] = PARTS > 1 ? rb[j] : beat_byte(v, (r * kRqRecordBytes + j) & (W - 1));
                    RqTable<Cfg, WHICH>::port(g, c0 + r);
                    dst[c0 + r] = rq_record(rec);
                }
            }
        }
    }
    ISEG_CYCLES(g.cycles, its + kReadDepth);
}

// The biases of d (i32, N of them) into g.bias, bias_lanes per iteration.
// An iteration's 4 BL bytes lie in one beat at a multiple of 4 BL (BL divides AXI_BYTES / 4; the table starts on
// a beat).
template <class Cfg>
void load_bias(const LayerDesc& d, const beat_t<Cfg>* blob, GemmBuffers<Cfg>& g) {
    constexpr int BL = bias_lanes<Cfg>();
    const long its = d.b >= 0 ? table_its(d.N, BL, 1) : 0;
GEMM_BIAS:
    for (long i = 0; i < its; ++i) {
        ISEG_PRAGMA(HLS loop_tripcount min=1 max=768)
        ISEG_PIPELINE(GEMM_BIAS, 1);
        const int c0 = int(i) * BL;
        const long at = d.b + 4L * c0;
        uint8_t x[4 * BL] = {};
        ISEG_PRAGMA(HLS ARRAY_PARTITION variable=x type=complete)
        beat_take<4 * BL>(ISEG_BEAT_RD(GMEM0, blob, at, 4 * (d.N - c0 < BL ? d.N - c0 : BL)),
                          int(at % Cfg::AXI_BYTES), x);
    GEMM_BIAS_L:
        for (int l = 0; l < BL; ++l) {
            ISEG_PRAGMA(HLS UNROLL)
            const int c = c0 + l;
            if (c < d.N) {
                ISEG_WR(g, bias, g.o_bank(c), g.o_word(c));
                g.bias[c] = int32_t(uint32_t(x[4 * l]) | (uint32_t(x[4 * l + 1]) << 8) | (uint32_t(x[4 * l + 2]) << 16) |
                                    (uint32_t(x[4 * l + 3]) << 24));
            }
        }
    }
    if (d.b < 0) {  // no bias: zeros (on chip, no port)
    GEMM_BIAS_ZERO:
        for (int c = 0; c < d.N; ++c) g.bias[c] = 0;
    }
    ISEG_CYCLES(g.cycles, its + kReadDepth);
}

// The per-channel (m, e, o) of a LayerNorm row (gamma, beta) into g.lnrq.
template <class Cfg>
void ln_consts(const LayerDesc& ln, const beat_t<Cfg>* blob, GemmBuffers<Cfg>& g) {
    g.ln_rq = ln.rq;
    load_rq_table<Cfg, 3>(ln.rq, ln.N, blob, g);
}

// A PATCH_EMBED row with n_prefix 1 runs the position-embedding add (the graph's Embed op) in its output
// stage (generator/estimate.py embed_fusions decides it, for the planner and the estimate): its output is
// the Embed's (1 + T, N) i16, row 1 + t = int_add(RQ_16(acc + bias) of token t, pos[1 + t]) and row 0 =
// int_add(cls, pos[0]), with the Embed's (ma, mb, ea). The constants are i16 rows of the blob: row 0, a
// constant computed by the generator (plan.embed_prefix_rows), at `cst` (N), pos at blob byte offset `in2` (T + 1 rows,
// row stride in2_stride elements). Both are read on gmem0, the weight prefetcher's port: in this layer the
// prefetch steps of a tile wait until its output lanes are done (schedule.h Pass::pf0).
inline bool embed_fused(const LayerDesc& d) { return d.op == OP_PATCH_EMBED && d.n_prefix > 0; }

// The end of the fused output stage of one element (column c of a LINEAR / PATCH_EMBED / MASK_PRODUCT). Before it:
// y = RQ_out_bits(acc + bias) (the engine loop's out_rq), or with F_GELU the lane's table entry for it, RQ_8(lambda-
// GELU(y)) (drain_values). Then [int_add(res, y)] (F_RESIDUAL) or [int_add(y, pos)] (embed_fused: `res` is the pos
// value; with `pre`, the output is the constant row value pre_v, the embed's row 0, already added). `res` is the
// residual / pos operand (i16). One int_add per lane for both adds (its operands muxed): int_add(a, b, ma, mb) =
// clamp((a*ma + b*mb + 2^(e-1)) >> e), so the order matters only with the multipliers, and each keeps its own
// (residual: res * ma; embed: token * ma). W: the lane widths (mul.h; W::ADD_M the add multipliers').
template <class W>
inline int32_t gemm_post(int32_t y, const LayerDesc& d, int32_t res, bool pre = false, int32_t pre_v = 0) {
    ISEG_PRAGMA(HLS INLINE)
    if (pre) return pre_v;
    const bool emb = embed_fused(d);
    if ((d.flags & F_RESIDUAL) || emb) {
        const int32_t a = emb ? y : res, b = emb ? res : y;
        y = int_add_w<W::ADD_M>(a, b, d.ma, d.mb, d.ea, 16);
    }
    return y;
}

// A set of lanes that drains a tile row by row (they divide C): its running position, row r of the tile and step
// k within that row. lane_pos_at: that is step s's (C-simulation checks it against the step index);
// lane_pos_next: to the next step, true when that starts the next row. The GEMM and P.V output lanes and the
// score lanes keep one each (gemm.h drain_lanes, attention.h att_o_lanes, schedule.h ATT_S_LANE).
inline bool lane_pos_at(int r, int k, int s, int lanes, int C) {
    return r == s * lanes / C && k * lanes == s * lanes % C;
}
inline bool lane_pos_next(int& r, int& k, int steps_per_row) {
    if (++k < steps_per_row) return false;
    k = 0;
    ++r;
    return true;
}

// A tile waiting for (or in) the output stage (the embed's constant row 0 drains through the same lanes, flagged
// `cls` at drain_lanes, during the layer's first tile).
struct Drain {
    int t0, n0, rows, cols;
    bool pending;
    long in_off, out_off;  // running: the current row's residual / output offset (elements), set at the tile's
    int r, k;              // end (schedule.h Pass::in0 / out0); the row of the tile and the step within it
};

constexpr int max_of(int a, int b) { return a > b ? a : b; }

// The requant lanes of the engine loop: the output lanes (OUT_LANES) and attention's score lanes (S_LANES) never
// run in one iteration, so they share max(OUT_LANES, S_LANES) of them (schedule.h OUT_RQ).
template <class Cfg>
constexpr int rq_lanes() {
    return max_of(Cfg::OUT_LANES, Cfg::S_LANES);
}

// Their operand width: the widest of the GEMM's acc + bias (ACC), P.V's (PV) and the scores (SCORE).
template <class Cfg>
constexpr int out_rq_bits() {
    return max_of(max_of(widths_of<Cfg>::type::ACC, widths_of<Cfg>::type::PV), widths_of<Cfg>::type::SCORE);
}

// One requant lane between its two halves. drain_lanes (or attention.h att_o_lanes, or the score lanes) fills it;
// the engine loop runs ONE requant per lane on it (out_rq); drain_values and the loop's one output store site
// (OUT_STORE), or the score lanes' stores, finish. The GEMM output, P.V output and score lanes never run in one
// iteration, so one set of requant multipliers serves all three (schedule.h OUT_RQ), as one readout (ov) serves
// the two output lane sets. The operand is held at its proven width and the record as an rq1 index, so what the
// three sets feed each multiplier is a narrow select.
template <class Cfg>
struct OutLane {
    bool ok;
    bool tab;      // the record is rq1[idx] (a per-channel table: the GEMM's rq, P.V's rq2), else the iteration's scalar
    int idx;       // the GEMM's column, the P.V output's channel
    typename sbits<out_rq_bits<Cfg>()>::type z;  // the operand: acc + bias (GEMM), (P.V) << r (P.V), a score (Q.K^T)
    int32_t res;   // GEMM: the residual / pos operand
    int32_t pre;   // GEMM: the embed's cls row value
};

// The one requant of a requant lane: record rq (rq1[idx] or the iteration's scalar), RQ to 16 bits, then for an
// 8-bit output the clamp to 8 bits. Both clamps have constant bounds (clamp_8(clamp_16(y)) = clamp_8(y)), where a
// run-time `bits` would put a shifter and two run-time comparators in every lane.
template <class Cfg>
inline int32_t out_rq(const OutLane<Cfg>& o, const RqParams& rq, bool wide) {
    ISEG_PRAGMA(HLS INLINE)
    const int32_t y = requant_w<out_rq_bits<Cfg>()>(int64_t(o.z), rq, 16);
    return wide ? y : clamp_bits(y, 8);
}

// One step of the GEMM output lanes: OUT_LANES elements of one row of the drained tile t, or (cls) of the embed's
// cls row instead (a flag, not a second Drain: one state object, no select between two of them). OUT_LANES divides
// C (estimate.make_shape), so a step's lanes lie in one row of the tile: the row's offsets are the running
// t.in_off / t.out_off, advanced a stride per row (no row * stride multiplier in the loop, docs/hls.md "What csynth
// would likely find first"), and the row and column group come from running counters, not e0 / C and e0 % C: lane
// l reads dr[r][k * L + l] (ov, the engine loop's readout), a mux over R x C / L registers.
// The operands of a step are 2 OUT_LANES contiguous bytes of one row, in one beat (rows start on a beat, 2
// OUT_LANES divides it): drain_req names them, the pos or cls row on gmem0, the residual on gmem2; the engine loop
// reads them (one request per bundle per iteration, gemm.h prefetch_req) and drain_lanes takes them.
struct LaneStep {
    long c0;          // the step's first column
    int nok;          // lanes with an output
    long at0, at2;    // byte offsets of the gmem0 span (pos / cls row) and the gmem2 span (residuals); -1: none
    int n0, n2;
};

template <class Cfg>
LaneStep drain_req(const LayerDesc& d, const Drain& t, bool cls, int s) {
    ISEG_PRAGMA(HLS INLINE)
    constexpr int L = Cfg::OUT_LANES;
    ISEG_CHECK(cls || lane_pos_at(t.r, t.k, s, L, Cfg::C), "GEMM output lanes: the row/step counters left step s");
    LaneStep st;
    st.c0 = cls ? long(s) * L : long(t.n0) + long(t.k) * L;
    const int left = cls ? int(d.N - st.c0) : (t.r < t.rows ? t.cols - t.k * L : 0);
    st.nok = left < 0 ? 0 : (left < L ? left : L);
    const bool emb = embed_fused(d);
    st.n0 = st.n2 = 2 * st.nok;
    // the embed's pos row (row t0 + r + 1 of the blob's pos) or its cls row; or the residual
    st.at0 = st.nok > 0 && (emb || cls) ? (cls ? d.cst + 2 * st.c0 : d.in2 + 2 * (t.in_off + st.c0)) : -1L;
    st.at2 = st.nok > 0 && !(emb || cls) && (d.flags & F_RESIDUAL) ? d.in2 + 2 * (t.in_off + st.c0) : -1L;
    return st;
}

// The first half of the step: the lanes' requant operands and records, residual / pos operands into o, from the
// beats v0 (gmem0) and v2 (gmem2) that hold drain_req's spans. Returns the byte offset of the step's store (lane 0's
// output; the lanes' outputs are contiguous), or -1 when no lane has an output.
template <class Cfg>
long drain_lanes(const LayerDesc& d, const LaneStep& st, const beat_t<Cfg>& v0, const beat_t<Cfg>& v2,
                 GemmBuffers<Cfg>& g, Drain& t, bool cls, const int32_t (&ov)[Cfg::OUT_LANES],
                 OutLane<Cfg> (&o)[rq_lanes<Cfg>()]) {
    ISEG_PRAGMA(HLS INLINE)
    constexpr int L = Cfg::OUT_LANES, W = Cfg::AXI_BYTES;
    static_assert(Cfg::C % L == 0 && W % (2 * L) == 0, "a lane step: one row of the tile, one beat (make_shape)");
    const int bytes = d.out_bits / 8;
    const bool emb = embed_fused(d);
    uint8_t xp[2 * L] = {}, xr[2 * L] = {};  // pos / cls row values, residuals: i16 each
    ISEG_PRAGMA(HLS ARRAY_PARTITION variable=xp type=complete)
    ISEG_PRAGMA(HLS ARRAY_PARTITION variable=xr type=complete)
    if (st.at0 >= 0) beat_take<2 * L>(v0, int(st.at0 % W), xp);
    if (st.at2 >= 0) beat_take<2 * L>(v2, int(st.at2 % W), xr);
OUT_LANE:
    for (int l = 0; l < L; ++l) {
        ISEG_PRAGMA(HLS UNROLL)
        const long col = st.c0 + l;
        o[l].ok = l < st.nok;
        if (o[l].ok) {
            const int32_t p = int32_t(int16_t(uint16_t(uint16_t(xp[2 * l]) | uint16_t(uint16_t(xp[2 * l + 1]) << 8))));
            const int32_t q = int32_t(int16_t(uint16_t(uint16_t(xr[2 * l]) | uint16_t(uint16_t(xr[2 * l + 1]) << 8))));
            o[l].pre = cls ? p : 0;
            o[l].res = cls ? 0 : (emb ? p : q);
            ISEG_RD(g, bias, g.o_bank(col), g.o_word(col));
            // both arms int32_t: `0 : ov[l]` mixed int with ap_int<ARR> in synthesis, ambiguous to any compiler
            const int32_t acc = cls ? int32_t(0) : ov[l];
            o[l].z = narrow<out_rq_bits<Cfg>()>(int64_t(acc) + g.bias[col]);
            o[l].tab = d.rq.tab >= 0;
            o[l].idx = int(col);
        }
    }
    const long at = st.nok > 0 ? d.out + act_bytes((cls ? 0L : t.out_off) + st.c0, bytes) : -1L;
    if (!cls && lane_pos_next(t.r, t.k, Cfg::C / L)) {  // the next row's offsets
        t.in_off += d.in2_stride;
        t.out_off += d.out_stride;
    }
    return at;
}

// The second half: y = RQ_out_bits(acc + bias) of each lane (out_rq), then the fused lambda-GELU + RQ_8 (a lookup
// in the lane's copy of the table: y is i8 there, out_bits 8) or the residual / embed add (gemm_post): the values
// the engine loop stores (schedule.h OUT_STORE, one store site for the GEMM and P.V output lanes).
template <class Cfg>
void drain_values(const LayerDesc& d, GemmBuffers<Cfg>& g, bool cls, const OutLane<Cfg> (&o)[rq_lanes<Cfg>()],
                  int32_t (&y)[rq_lanes<Cfg>()]) {
    ISEG_PRAGMA(HLS INLINE)
OUT_POST:
    for (int l = 0; l < Cfg::OUT_LANES; ++l) {
        ISEG_PRAGMA(HLS UNROLL)
        if (o[l].ok) {
            int32_t v = y[l];
            if (d.flags & F_GELU) {
                ISEG_CHECK(v >= -128 && v <= 127, "F_GELU: the first requant's output must be i8");
                const int x = (v + 128) & (kGeluTable - 1);
                ISEG_RD(g, gtab, g.t_bank(l), x);
                v = g.gtab[l][x];
            }
            y[l] = gemm_post<typename widths_of<Cfg>::type>(v, d, o[l].res, cls, o[l].pre);
        }
    }
}

template <class Cfg>
int drain_steps() {
    return (Cfg::R * Cfg::C + Cfg::OUT_LANES - 1) / Cfg::OUT_LANES;
}

// Output-lane steps of the embed's cls row (embed_fused), 0 otherwise.
template <class Cfg>
int cls_steps(const LayerDesc& d) {
    return embed_fused(d) ? (d.N + Cfg::OUT_LANES - 1) / Cfg::OUT_LANES : 0;
}

// One array step: acc[r][c] = (first ? 0 : acc[r][c]) + sum over u < KD of (a[u][r] * w[u][c] << sh), a[u][r] in AB
// signed bits (schedule.h arr_a_bits: 9 on a packing array, whose DSP48E2 holds two such products of one w[u][c]),
// w[u][c] int8: KD consecutive k of the output per step (Cfg::KD, kd_of). `first` starts a tile's sums (no
// separate clear of the accumulators); sh = 8 for the high byte of a u15 P (P.V at PV_II = 2). The operand types are
// AB and 8 bits in synthesis (compat.h arr_bits), so the multipliers are built at that width; the caller checks the
// operands against AB in C-simulation.
// PACK 2 (a packing array): row pairs (2i, 2i + 1) share each w[u][c] through a chain of KD DSP48E2 (mul.h
// mul_pack2_chain: the packed products add in the chain, split once at its end, accumulated in fabric); PACK 1: a
// chain of KD products per PE, whose last add (into the accumulator) the tool can keep in the DSP's post-adder.
template <class Cfg, int AB, int PACK, int KD>
void array_step(GemmBuffers<Cfg>& g, const int16_t (&a)[KD][Cfg::R], const int8_t (&w)[KD][Cfg::C], bool first,
                int sh) {
    ISEG_PRAGMA(HLS INLINE)
    typedef typename GemmBuffers<Cfg>::acc_t acc_t;
    typedef typename arr_bits<AB>::type a_t;
    typedef typename arr_bits<8>::type w_t;
    static_assert(PACK == 1 || (AB == 9 && Cfg::R % 2 == 0), "a packing array: 9-bit operands, row pairs");
    if (PACK == 2) {
        if (KD > 1) {  // the chain's operands (mul_pack2_chain leaves them to its caller): a in [-128, 255], w int8
        GEMM_CHK_U:
            for (int u = 0; u < KD; ++u) {
                ISEG_PRAGMA(HLS UNROLL)
            GEMM_CHK_R:
                for (int r = 0; r < Cfg::R; ++r) {
                    ISEG_PRAGMA(HLS UNROLL)
                    ISEG_CHECK(a[u][r] >= -128 && a[u][r] <= 255,
                               "packed array multiplier: an operand outside [-128, 255] x int8");
                }
            }
        }
    GEMM_RP:
        for (int rp = 0; rp < Cfg::R / 2; ++rp) {
            ISEG_PRAGMA(HLS UNROLL)
            typename arr_wide<27>::type ap[KD];  // the row pair's packed operands, one per DSP of each column's chain
            ISEG_PRAGMA(HLS ARRAY_PARTITION variable=ap type=complete)
        GEMM_PU:
            for (int u = 0; u < KD; ++u) {
                ISEG_PRAGMA(HLS UNROLL)
                ap[u] = pack_a27(a[u][2 * rp], a[u][2 * rp + 1]);
            }
        GEMM_CP:
            for (int c = 0; c < Cfg::C; ++c) {
                ISEG_PRAGMA(HLS UNROLL)
                int32_t wc[KD];
                ISEG_PRAGMA(HLS ARRAY_PARTITION variable=wc type=complete)
            GEMM_PW:
                for (int u = 0; u < KD; ++u) {
                    ISEG_PRAGMA(HLS UNROLL)
                    wc[u] = w[u][c];
                }
                const Pack2 pp = KD == 1 ? mul_pack2(a[0][2 * rp], a[0][2 * rp + 1], wc[0])  // (checks its operands)
                                         : mul_pack2_chain<KD>(ap, wc);
                g.acc[2 * rp][c] = (first ? acc_t(0) : g.acc[2 * rp][c]) + acc_t(acc_t(pp.hi) << sh);
                g.acc[2 * rp + 1][c] = (first ? acc_t(0) : g.acc[2 * rp + 1][c]) + acc_t(acc_t(pp.lo) << sh);
            }
        }
        return;
    }
GEMM_R:
    for (int r = 0; r < Cfg::R; ++r) {
        ISEG_PRAGMA(HLS UNROLL)
    GEMM_C:
        for (int c = 0; c < Cfg::C; ++c) {
            ISEG_PRAGMA(HLS UNROLL)
            acc_t sum = first ? acc_t(0) : g.acc[r][c];
        GEMM_U:
            for (int u = 0; u < KD; ++u) {
                ISEG_PRAGMA(HLS UNROLL)
                sum += acc_t(acc_t(a_t(a[u][r]) * w_t(w[u][c])) << sh);
            }
            g.acc[r][c] = sum;
        }
    }
}

// The finished tile's sums to the drain registers: one parallel register transfer (acc and dr are partitioned
// completely; UNROLL, so no loop is left for the tool to pipeline). The accumulators are not cleared: the next
// tile's first array step overwrites them (array_step `first`).
template <class Cfg>
void acc_to_drain(GemmBuffers<Cfg>& g) {
    ISEG_PRAGMA(HLS INLINE)
ACC_COPY_R:
    for (int r = 0; r < Cfg::R; ++r) {
        ISEG_PRAGMA(HLS UNROLL)
    ACC_COPY_C:
        for (int c = 0; c < Cfg::C; ++c) {
            ISEG_PRAGMA(HLS UNROLL)
            // the proof of acc_t's width, checked on every finished sum (compat.h acc_bits)
            ISEG_CHECK(fits_signed(g.acc[r][c], widths_of<Cfg>::type::ARR),
                       "array accumulator exceeds its proven width (Widths::ARR)");
            g.dr[r][c] = g.acc[r][c];
        }
    }
}

// A fused lambda-GELU's table (kGeluTable i8 at blob offset d.cst) into every output lane's copy, an entry per
// iteration: each copy is a single-port LUTRAM (its lane reads it in another loop), so one write per cycle; 256
// cycles a layer. Nothing without F_GELU.
template <class Cfg>
void load_gelu_table(const LayerDesc& d, const beat_t<Cfg>* blob, GemmBuffers<Cfg>& g) {
    if (!(d.flags & F_GELU)) return;
    RdCache<beat_t<Cfg> > c;  // a beat holds AXI_BYTES entries: requested once
    cache_reset(c);
GELU_TABLE:
    for (int x = 0; x < kGeluTable; ++x) {
        ISEG_PIPELINE(GELU_TABLE, 1);
        const int8_t v = beat_i8(ISEG_CACHE_RD(GMEM0, c, blob, d.cst + x, 1), int((d.cst + x) % Cfg::AXI_BYTES));
    GELU_TABLE_L:
        for (int l = 0; l < Cfg::OUT_LANES; ++l) {
            ISEG_PRAGMA(HLS UNROLL)
            ISEG_WR(g, gtab, g.t_bank(l), x);
            g.gtab[l][x] = v;
        }
    }
    ISEG_CYCLES(g.cycles, kGeluTable + kReadDepth);
}

// Per-channel constants of a GEMM layer: biases, the rq1 table, a fused GELU's table, one loop each.
template <class Cfg>
void load_consts(const LayerDesc& d, const beat_t<Cfg>* blob, GemmBuffers<Cfg>& g) {
    load_bias<Cfg>(d, blob, g);
    load_rq_table<Cfg, 1>(d.rq, d.N, blob, g);
    load_gelu_table<Cfg>(d, blob, g);
}

// A tile's steps: the longest of its jobs -- the array's K steps, the previous tile's output stage (dsteps,
// 0 for the layer's first tile), its share of the next row block's load, its weight share after pf0 steps.
inline int gemm_tile_steps(int k, int dsteps, int a_share, int pf0, int w_share) {
    int steps = k;
    if (dsteps > steps) steps = dsteps;
    if (a_share > steps) steps = a_share;
    if (pf0 + w_share > steps) steps = pf0 + w_share;
    return steps;
}

// The transposing loader: row n of an (N, K) int8 source (byte stride `stride`) goes down column n % C of
// rows (n / C) * K + k of w[half] (MASK_PRODUCT's B = in2^T, attention's K_h^T). A memory beat holds
// W = AXI_BYTES bytes of one source row, i.e. one byte of W different rows of w: written as it comes, that
// is W writes into one memory per cycle. So the loader works chunk by chunk (bytes [b W, b W + W) of every
// source row, one beat per step) and collects the beats of C consecutive source rows (one key tile) in a
// C x W transposer, ping-pong, which it writes out as whole words of w, one per port per step (two), while
// the next C beats come in. A beat that completes a tile waits until the previous tile is written out
// (only when C < W / 2); the last tile's rows are written after the last beat. Columns past N are written 0.

// Rows of w a tile of chunk b writes out: the chunk's bytes of a source row.
inline int tp_chunk_rows(int K, int b, int W) { return K - b * W < W ? K - b * W : W; }

// Steps of one chunk (b) of the transposing loader: tile 0's beats, each later tile's beats or the previous
// tile's write-out (`ports` rows per step: two, or one where the other write port takes a V word, schedule.h
// KvLoad::dual) if that is longer, then the last tile's write-out.
inline long tp_chunk_steps(int N, int K, int b, int C, int W, int ports = 2) {
    const int h = (tp_chunk_rows(K, b, W) + ports - 1) / ports;
    const int tiles = (N + C - 1) / C;
    if (tiles <= 1) return long(N) + h;
    const int last = N - (tiles - 1) * C;
    return long(C) + long(tiles - 2) * (C > h ? C : h) + (last > h ? last : h) + h;
}

template <class Cfg>
void tp_begin(Transposer<Cfg>& t) {
    t.n = 0;
    t.wg = t.wj = t.wleft = t.wrow = t.kbase = 0;
}

// A step of chunk b comes in three parts, so that the engine loop can run it beside other units (schedule.h: its
// one request per m_axi bundle, its two port sites per memory): tp_out, the write-out of up to two rows of the
// last complete tile as write requests into w[half] (rows from `off`); then tp_req, the beat of source row t.n this
// step reads (unless it would complete a tile while rows are still waiting); then tp_take, that beat into the
// transposer. tp_step is the three for MASK_PRODUCT's own loop. `p0`: the first of the two write requests the
// write-out may take (0: both; 1: o[1] only, one row a step, o[0] left for the caller's V word: port A already
// takes the V word in a V iteration, port B a transposer row, so a dual K/V step adds no input to either port).
template <class Cfg>
void tp_out(Transposer<Cfg>& t, int N, int b, int half, int off, WReq<Cfg> (&o)[2], int p0 = 0) {
    ISEG_PRAGMA(HLS INLINE)
    constexpr int W = Cfg::AXI_BYTES, C = Cfg::C;
TP_OUT:
    for (int p = 0; p < 2; ++p) {
        ISEG_PRAGMA(HLS UNROLL)
        o[p] = w_req_none<Cfg>();
        if (t.wleft > 0 && p >= p0) {
            const int valid = N - t.wg * C;
            o[p].ok = true;
            o[p].half = half;
            o[p].row = off + t.wrow + b * W + t.wj;
        TP_OUT_C:
            for (int c = 0; c < C; ++c) {
                ISEG_PRAGMA(HLS UNROLL)
                o[p].v[c] = c < valid ? t.t[t.wg & 1][c][t.wj] : int8_t(0);
                o[p].m[c] = true;
            }
            ++t.wj;
            --t.wleft;
        }
    }
}

// Whether this step reads a beat (the beat of source row t.n, chunk b: the caller's running offset `at`, nb its
// bytes), or -1.
template <class Cfg>
long tp_req(const Transposer<Cfg>& t, long at, int N, int K, int b, int& nb) {
    ISEG_PRAGMA(HLS INLINE)
    constexpr int W = Cfg::AXI_BYTES, C = Cfg::C;
    nb = K - b * W < W ? K - b * W : W;
    if (t.n >= N) return -1L;
    const bool completes = t.n % C == C - 1 || t.n == N - 1;
    if (completes && t.wleft > 0) return -1L;
    // chunk b of row n: a whole beat (rows and, for K_h^T, heads start on one: estimate.axi_beat)
    ISEG_CHECK(at % W == 0, "transposing loader: not a whole beat");
    return at;
}

// The beat tp_req named into the transposer; returns its source row.
template <class Cfg>
int tp_take(Transposer<Cfg>& t, const beat_t<Cfg>& v, int N, int K, int b) {
    ISEG_PRAGMA(HLS INLINE)
    constexpr int W = Cfg::AXI_BYTES, C = Cfg::C;
    const int n = t.n, tile = n / C;
    const bool completes = n % C == C - 1 || n == N - 1;
TP_IN:
    for (int j = 0; j < W; ++j) {
        ISEG_PRAGMA(HLS UNROLL)
        const int k = b * W + j;
        t.t[tile & 1][n % C][j] = k < K ? beat_i8(v, j) : int8_t(0);
    }
    if (completes) {
        t.wg = tile;
        t.wj = 0;
        t.wleft = tp_chunk_rows(K, b, W);
        t.wrow = t.kbase;
        t.kbase += K;
    }
    ++t.n;
    return n;
}

// One whole step of chunk b (MASK_PRODUCT's loop, its own ports). Returns the source row read, or -1.
template <class Cfg>
int tp_step(Transposer<Cfg>& t, const beat_t<Cfg>* port, long src, long stride, int N, int K, int b, int half,
            GemmBuffers<Cfg>& g) {
    ISEG_PRAGMA(HLS INLINE)
    WReq<Cfg> o[2];
    tp_out<Cfg>(t, N, b, half, 0, o);
TP_OUT_W:
    for (int p = 0; p < 2; ++p) {
        ISEG_PRAGMA(HLS UNROLL)
        if (o[p].ok) {
            ISEG_WR(g, w, half, g.w_word(o[p].row));
            w_word_write<Cfg>(g.w[half][o[p].row], o[p]);
        }
    }
    int nb = 0;
    const long at = tp_req<Cfg>(t, src + long(t.n) * stride + b * Cfg::AXI_BYTES, N, K, b, nb);
    if (at < 0) return -1;
    const beat_t<Cfg> v = ISEG_BEAT_RD(GMEM1, port, at, nb);
    return tp_take<Cfg>(t, v, N, K, b);
}

// MASK_PRODUCT's right operand is an activation (in2 (N, K) int8, B = in2^T), produced by the
// previous layer, so it cannot be prefetched: load it into w[g.wcur] (exposed) through the transposer.
template <class Cfg>
void load_b_transposed(const LayerDesc& d, const beat_t<Cfg>* scratch, GemmBuffers<Cfg>& g) {
    const int W = Cfg::AXI_BYTES;
    const int kb_n = (d.K + W - 1) / W;
    Transposer<Cfg>& tp = g.tp;
MP_LOAD_CHUNK:
    for (int b = 0; b < kb_n; ++b) {
        ISEG_PRAGMA(HLS loop_tripcount min=1 max=48)
        const long steps = tp_chunk_steps(d.N, d.K, b, Cfg::C, W);
        tp_begin(tp);
    MP_LOAD_STEP:
        for (long s = 0; s < steps; ++s) {
            ISEG_PRAGMA(HLS loop_tripcount min=1 max=160)
            ISEG_PIPELINE(MP_LOAD_STEP, 1);
            tp_step<Cfg>(tp, scratch, d.in2, d.in2_stride, d.N, d.K, b, g.wcur, g);
        }
        ISEG_CHECK(tp.n == d.N && tp.wleft == 0, "MASK_PRODUCT: transposing loader step count mismatch");
        ISEG_CYCLES(g.cycles, steps + kReadDepth);
    }
}

}  // namespace iseg
