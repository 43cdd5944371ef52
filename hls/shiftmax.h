// shiftmax.h -- row-wise integer softmax (numerics.md §5.1), all three variants.
//
//   d = (x - max(x)) << k;  e = shexp(d, x0, 15);  S = sum(e)  (ivit: min(S, 2^31 - 1))
//   f = ((1 << (31+K)) - 1) // S;  s0 = 16 + K
//   pm = min((e_max*f + rnd * 2^(s0-1)) >> s0, 32767),  e_max = |x0| << 15 (the exp of the row's max)
//   r = max(0, bit_length(pm) - PB)                    (the row's shift: 0 for PB = 15)
//   p = min((e*f + rnd * 2^(s0+r-1)) >> (s0+r), 2^PB - 1),  real = p * 2^(r-15)
//
//   variant    k  K   rnd  S clamped  PB (p_bits)
//   precise    3  16  1    no         15   (the default)
//   ivit       0  0   0    yes        15   (the I-ViT formulation)
//   precise8   3  16  1    no         8    (u8 mantissas under a per-row shift r in [0, 7], a shared
//                                           exponent: P.V packs two MACs per DSP48E2, and the drain
//                                           shifts each output row's P.V back by r, attention.h)
//
// For PB = 15 (r = 0) the shifts are the spec's 15 + K and 16 + K and the clamp 32767. The constants
// of a variant are sm_consts (one place, iseg.numerics.SHIFTMAX_VARIANTS mirrored); r is
// iseg.numerics.shiftmax_with_shift's, computed once per row next to the divider (sm_row_shift).
//
// Streamed over one row in four passes: max, exp + sum, one reciprocal (+ row shift), normalise. The exps are
// kept in a row buffer (mantissa and shift, e < |x0| * 2^16 < 2^47) between the sum and the
// normalisation. shiftmax_row is the reference form (unit tests); the engine runs sm_step.
#pragma once

#include "shexp.h"

namespace iseg {

enum SmVariant : int32_t { SM_PRECISE = 0, SM_IVIT = 1, SM_PRECISE8 = 2 };

static constexpr int kShiftmaxN = 15;
static constexpr int kSmRMax = 7;  // the largest row shift of any variant: 15 - 8 (precise8)

inline bool sm_variant_ok(int32_t v) { return v == SM_PRECISE || v == SM_IVIT || v == SM_PRECISE8; }

// Probability bits of a variant: u15 (precise, ivit) or u8 (precise8). attention.h's P.V runs at
// II = 1 only when the probabilities are u8 (an 8 x 8 product the packed DSP48E2 takes).
inline int sm_p_bits(int32_t variant) { return variant == SM_PRECISE8 ? 8 : 15; }

// The run-time constants of a variant (iseg.numerics.SHIFTMAX_VARIANTS): in hardware a few muxes.
struct SmConsts {
    int k;         // extra fractional bits on the input difference
    int K;         // extra bits of the reciprocal
    bool clamp;    // ivit: S clamped to int32
    int shift;     // s0 = 16 + K (the final shift on the 2^-15 grid; a row adds its r)
    int64_t rnd;   // rnd * 2^(s0 - 1) (a row's rounding term: rnd << r)
    int32_t pmax;  // 2^PB - 1
    int rmax;      // 15 - PB: the largest row shift (0 for the u15 variants)
};

inline SmConsts sm_consts(int32_t variant) {
    ISEG_PRAGMA(HLS INLINE)
    const bool ivit = variant == SM_IVIT;
    const int pb = sm_p_bits(variant);
    SmConsts c;
    c.k = ivit ? 0 : 3;
    c.K = ivit ? 0 : 16;
    c.clamp = ivit;
    c.shift = 16 + c.K;
    c.rnd = ivit ? 0 : (int64_t(1) << (15 + c.K));
    c.pmax = (int32_t(1) << pb) - 1;
    c.rmax = 15 - pb;
    return c;
}

// d = (x - max) << k = -((max - x) << k): a shift of a value >= 0, then the shift exponential, as a
// mantissa and a shift (shexp.h). W: the lane widths (mul.h).
template <class W>
inline ShexpParts sm_exp(int8_t x, int32_t mx, int k, int32_t x0) {
    ISEG_PRAGMA(HLS INLINE)
    return shexp_parts<W::SM_X0, W::SMALL_FABRIC>(-(int64_t(mx - x) << k), x0, kShiftmaxN);
}

// The row shift r = max(0, bit_length(pm) - PB) of a row with reciprocal f, pm = min((e_max * f + rnd *
// 2^(s0-1)) >> s0, 32767) the row maximum's probability on the 2^-15 grid. e_max = |x0| << 15 (shexp of
// 0), so e_max * f = (|x0| * f) << 15: one X0B x F multiplier per Shiftmax unit (not per lane), in the
// divider's step; |x0| * f < 2^(16+K) (e_max <= S). bit_length(min(pm, 32767)) - PB is a row of rmax
// comparators (pm >= 2^(PB + j - 1), j = 1..rmax): none for the u15 variants (r = 0).
template <int X0B, int F>
inline int sm_row_shift(int32_t x0, int64_t f, const SmConsts& c) {
    ISEG_PRAGMA(HLS INLINE)
    const int64_t pm = ((mul_dsp<X0B, F>(-int64_t(x0), f) << kShiftmaxN) + c.rnd) >> c.shift;
    int r = 0;
SM_ROW_SHIFT:
    for (int j = 1; j <= kSmRMax; ++j) {
        ISEG_PRAGMA(HLS UNROLL)
        r += (j <= c.rmax && pm >= (int64_t(1) << (kShiftmaxN - c.rmax + j - 1))) ? 1 : 0;
    }
    return r;
}

// p = min((e * f + (rnd << r)) >> (s0 + r), 2^PB - 1) with e = base << sh: (base * f) << sh is the same
// integer, a BASE x F multiplier (mul.h) instead of a 47 x 47 one. e * f < 2^(31+K) <= 2^47.
template <int BASE, int F>
inline int16_t sm_norm(const ShexpParts& e, int64_t f, int r, const SmConsts& c) {
    ISEG_PRAGMA(HLS INLINE)
    const int64_t v = ((mul_dsp<BASE, F>(e.base, f) << e.sh) + (c.rnd << r)) >> (c.shift + r);
    return int16_t(v > c.pmax ? int64_t(c.pmax) : v);
}

// in: x (n,) int8 scores, real = x * s; out: p (n,) u<PB> held in int16 and the row shift r,
// real = p * 2^(r - 15) (PB 15: r = 0; PB 8: r in [0, 7]).
// x0 = floor(-2^k / s) < 0 (offline). n in [1, NMAX]. The exporter proves S < 2^(31+K).
// LANES elements per cycle in each pass: 3 * ceil(n / LANES) cycles + one divider (r with it) + 3
// pipeline fills (shiftmax_cycles).
template <int NMAX, int LANES = 1>
void shiftmax_row(const int8_t x[NMAX], int n, int32_t x0, int32_t variant, int16_t p[NMAX], uint8_t& rsh) {
    const SmConsts c = sm_consts(variant);
    ShexpParts ebuf[NMAX];  // row buffer of the exps (mantissa, shift)

    int32_t mx = -128;
SM_MAX:
    for (int i0 = 0; i0 < n; i0 += LANES) {
        ISEG_PRAGMA(HLS loop_tripcount min=1 max=1025)
        ISEG_PIPELINE(SM_MAX, 1);
    SM_MAX_L:
        for (int i = i0; i < i0 + LANES; ++i) {
            if (i < n && x[i] > mx) mx = x[i];
        }
    }
    int64_t S = 0;
SM_EXP:
    for (int i0 = 0; i0 < n; i0 += LANES) {
        ISEG_PRAGMA(HLS loop_tripcount min=1 max=1025)
        ISEG_PIPELINE(SM_EXP, 1);
    SM_EXP_L:
        for (int i = i0; i < (i0 + LANES < n ? i0 + LANES : n); ++i) {
            const ShexpParts e = sm_exp<DefaultWidths>(x[i], mx, c.k, x0);
            ebuf[i] = e;
            S += e.base << e.sh;
        }
    }
    if (c.clamp && S > kInt32Max) S = kInt32Max;
    const int64_t f = ((int64_t(1) << (31 + c.K)) - 1) / S;  // both positive: `/` is floor here
    const int r = sm_row_shift<DefaultWidths::SM_X0, DefaultWidths::SM_F>(x0, f, c);
    rsh = uint8_t(r);
SM_NORM:
    for (int i0 = 0; i0 < n; i0 += LANES) {
        ISEG_PRAGMA(HLS loop_tripcount min=1 max=1025)
        ISEG_PIPELINE(SM_NORM, 1);
    SM_NORM_L:
        for (int i = i0; i < (i0 + LANES < n ? i0 + LANES : n); ++i) {
            p[i] = sm_norm<DefaultWidths::SM_BASE, DefaultWidths::SM_F>(ebuf[i], f, r, c);
        }
    }
}

// Cycles of shiftmax_row<NMAX, LANES> on a row of n (the C-sim count and the estimate's).
inline long shiftmax_cycles(int n, int lanes) { return 3L * ((n + lanes - 1) / lanes + kPipeDepth) + kDivCycles; }

// ---------------------------------------------------------------------------------------------
// Shiftmax of a block of R score rows as a STEP MACHINE, so that attention.h can advance it by one
// step per iteration of its array loops (P.V of the previous block, Q.K^T of the next one) the
// way gemm.h advances the weight prefetch. The row maxima come with the scores (the score drain
// keeps them), so there is no max pass. Phases, one step each:
//   EXP   LANES elements of each of two rows, r and r + ceil(rows / 2) (the block's valid rows in pairs, read
//         through the score banks' two ports as NORM reads its pair): S += shexp(d, x0, 15) per row; at the
//         pair's end its rows' S go into the divider, a pipelined unit that takes one row a step: row r at
//         once, the second row at the next step (the next pair's first: a pair lasts at least two steps, else
//         EXP takes one row a step, sm_exp_pairs). f = (2^(31+K) - 1) // S, and behind it the row shift r =
//         sm_row_shift(x0, f) (one |x0| * f product and rmax comparators; built only when ROW_SHIFT, the engine's
//         Cfg::SM_ROW_SHIFT for precise8 models, else r = 0), kept with the probability block (rs[half][row],
//         ping-pong like p)
//   WAIT  kDivCycles steps once per block, + 1 when the last pair's second row issued a step late: the last
//         row's divider latency
//   NORM  NLANES elements of each of two rows, r and r + ceil(R/2) (NLANES <= LANES: the writes into a
//         probability row's memory bank are what bounds them, attention.h sm_norm_lanes; two rows are two
//         banks, and their scores two words of each score bank): the exp is recomputed from the int8 score
//         (no row buffer of exps), p = min((e * f + (rnd << r)) >> (16 + K + r), 2^PB - 1); a row past
//         `rows` (the matrix edge) gets p = 0 (and r = 0)
// The two passes share ONE set of 2 x LANES shift exponentials (two rows of LANES a step, whichever the phase).
// Same integers as shiftmax_row.
enum SmPhase : int32_t { SM_EXP = 0, SM_WAIT = 1, SM_NORM = 2, SM_DONE = 4 };

struct SmState {
    int32_t half;   // which score block / probability block
    int32_t r;      // current row (EXP, NORM: the pair's first row)
    int32_t rows;   // valid rows of the block
    int32_t phase;  // SmPhase
    int32_t i;      // next element of the rows, or WAIT tick
    int64_t S, S2;  // running sums of the pair's exps
    int32_t pend;   // the row whose sum waits a step for the divider (-1: none), its sum Sp
    int64_t Sp;
};

inline SmState sm_begin(int half, int rows) {
    SmState st = {half, 0, rows, rows > 0 ? SM_EXP : SM_NORM, 0, 0, 0, -1, 0};
    return st;
}

inline SmState sm_idle() {
    SmState st = {0, 0, 0, SM_DONE, 0, 0, 0, -1, 0};
    return st;
}

// Whether EXP takes its rows in pairs: when a row lasts at least two steps (n > LANES), so that the divider, one row
// a step, takes a pair's second row at the next pair's first step.
inline bool sm_exp_pairs(int n, int lanes) { return n > lanes; }

// EXP's row distance within a pair: ceil(rows / 2) (pairs), or `rows` (one row a step: no second row is valid).
inline int sm_exp_half(int rows, bool pairs) { return pairs ? (rows + 1) / 2 : rows; }

// WAIT's steps: the divider's latency, + 1 when the last EXP pair has two rows (an even `rows` in pairs), whose
// second row enters the divider a step late.
inline int sm_wait_steps(int rows, bool pairs) { return kDivCycles + (pairs && rows % 2 == 0 ? 1 : 0); }

// The second row of the step's pair (slot 1): EXP's r + sm_exp_half, NORM's r + ceil(R / 2).
template <int R, int LANES>
inline int sm_pair_row(const SmState& st, int n) {
    ISEG_PRAGMA(HLS INLINE)
    return st.r + (st.phase == SM_EXP ? sm_exp_half(st.rows, sm_exp_pairs(n, LANES)) : (R + 1) / 2);
}

// Steps of one block: ceil(rows / 2) * ceil(n / LANES) (exp, two rows per step; rows * ceil(n / LANES) when
// n <= LANES) + ceil(R / 2) * ceil(n / NLANES) (normalise, two rows per step) + kDivCycles (+ 1 after a last pair of
// two rows: its second row enters the divider a step late).
inline long sm_block_steps(int rows, int R, int n, int lanes, int nlanes) {
    const bool pairs = sm_exp_pairs(n, lanes);
    const long ex = long(sm_exp_half(rows, pairs)) * ((n + lanes - 1) / lanes);
    return ex + long((R + 1) / 2) * ((n + nlanes - 1) / nlanes) + sm_wait_steps(rows, pairs);
}

// The scores one step reads, named before the step (the engine loop's ports of the score blocks serve them, and
// sm_step takes them as xs): keys [i0, i0 + n) of row row[q] of block `half` for each slot q that is ok. EXP: LANES
// keys of rows r and r + ceil(rows / 2) (slot 1 only when that row is valid; slot 0 alone when the rows go one a step,
// sm_exp_pairs); NORM: NLANES keys of rows r and r + ceil(R / 2) (a row past `rows` reads nothing: its p are 0).
// Each slot's keys lie in distinct banks (n <= LANES = the banks of a half, AttSm::s_bank), so a slot takes one
// access per bank: slot 0 port A's, slot 1 port B's.
struct SmReads {
    bool ok[2];
    int half, row[2], i0, n;
};

template <int R, int LANES, int NLANES>
SmReads sm_reads(const SmState& st, int n) {
    ISEG_PRAGMA(HLS INLINE)
    SmReads q;
    q.half = st.half;
    q.i0 = st.i;
    q.ok[0] = q.ok[1] = false;
    const bool in_exp = st.phase == SM_EXP;
    q.row[0] = st.r;
    q.row[1] = sm_pair_row<R, LANES>(st, n);
    const int lanes = in_exp ? LANES : NLANES;
    q.n = n - st.i < lanes ? n - st.i : lanes;
    if (in_exp) {
        q.ok[0] = true;
        q.ok[1] = q.row[1] < st.rows;
    } else if (st.phase == SM_NORM) {
    SMS_READ_ROW:
        for (int s = 0; s < 2; ++s) {
            ISEG_PRAGMA(HLS UNROLL)
            q.ok[s] = q.row[s] < R && q.row[s] < st.rows;
        }
    }
    return q;
}

// What a normalise step writes into the probability block `half`: NLANES probabilities of row row[q] (slot q: rows
// r and r + ceil(R / 2)) from key i0, those of keys below n (a row past `rows` gets zeros). The caller turns them
// into write requests of the probability rows' banks (attention.h att_sm_tick).
template <int NLANES>
struct SmOut {
    bool ok[2];
    int half, row[2], i0, n;
    int16_t p[2][NLANES];
};

// One step. xs: the scores sm_reads named (slot q's key i0 + l in xs[q][l]), mx: the score blocks' row maxima, n keys,
// R rows per block; returns the normalise step's probabilities (u15 or u8 in int16); rs: the probability blocks' row
// shifts (real = p * 2^(rs - 15)), f: the per-row reciprocals of the block. W: the lane widths (mul.h). ROW_SHIFT:
// build the row shift (sm_row_shift, for precise8: the caller's Cfg::SM_ROW_SHIFT); without it r = 0 (right for
// the u15 variants only: the engine checks). The step reads and writes no banked memory itself: its scores come in
// and its probabilities go out through the engine loop's two ports per bank (schedule.h).
template <int R, int LANES, int NLANES, class W, bool ROW_SHIFT = true>
SmOut<NLANES> sm_step(SmState& st, const int8_t (&xs)[2][LANES], const int32_t (&mx)[2][R], int n, int32_t x0,
                      int32_t variant, uint8_t (&rs)[2][R], int64_t (&f)[R]) {
    ISEG_PRAGMA(HLS INLINE)
    static_assert(NLANES <= LANES, "the normalise pass takes its exps from the step's LANES per row");
    const SmConsts c = sm_consts(variant);
    const int h = st.half, r = st.r;
    constexpr int RH = (R + 1) / 2;  // row pairs (r, r + RH); with R odd the last pair is one row
    SmOut<NLANES> o;
    o.ok[0] = o.ok[1] = false;
    o.half = h;
    o.row[0] = r;
    o.row[1] = r + RH;
    o.i0 = st.i;
    o.n = n;
    const bool in_exp = st.phase == SM_EXP;
    const bool pairs = sm_exp_pairs(n, LANES);
    const int re = sm_exp_half(st.rows, pairs);  // EXP's pair (r, r + re)
    int row[2];
    row[0] = r;
    row[1] = sm_pair_row<R, LANES>(st, n);
    // the step's shift exponentials: two rows of LANES, one set for both passes
    ShexpParts e[2][LANES];
SMS_SHEXP:
    for (int q = 0; q < 2; ++q) {
        ISEG_PRAGMA(HLS UNROLL)
    SMS_SHEXP_L:
        for (int l = 0; l < LANES; ++l) {
            ISEG_PRAGMA(HLS UNROLL)
            e[q][l] = sm_exp<W>(xs[q][l], mx[h][row[q] < R ? row[q] : R - 1], c.k, x0);
        }
    }
    // the divider's one row this step: a pending pair's second row, or a pair's (or a lone row's) first at its end
    bool dv = st.pend >= 0;
    int drow = st.pend;
    int64_t dS = st.Sp;
    st.pend = -1;
    if (in_exp) {
        const bool two = row[1] < st.rows;
    SMS_EXP_L:
        for (int l = 0; l < LANES; ++l) {
            ISEG_PRAGMA(HLS UNROLL)
            if (st.i + l < n) {
                st.S += e[0][l].base << e[0][l].sh;
                if (two) st.S2 += e[1][l].base << e[1][l].sh;
            }
        }
        st.i += LANES;
        if (st.i >= n) {
            ISEG_CHECK(!dv, "Shiftmax: two rows for the divider in one step");
            dv = true;
            drow = r;
            dS = st.S;
            if (two) {
                st.pend = row[1];
                st.Sp = st.S2;
            }
            st.i = 0;
            st.S = st.S2 = 0;
            st.r = r + 1;
            if (st.r >= re) {
                st.r = 0;
                st.phase = SM_WAIT;
            }
        }
    } else if (st.phase == SM_WAIT) {
        if (++st.i == sm_wait_steps(st.rows, pairs)) {
            st.i = 0;
            st.phase = SM_NORM;
        }
    } else if (st.phase == SM_NORM) {
    SMS_NORM_ROW:
        for (int q = 0; q < 2; ++q) {
            ISEG_PRAGMA(HLS UNROLL)
            const int rw = r + q * RH;
            o.ok[q] = rw < R;
            if (rw < R) {
                const bool zero = rw >= st.rows;
                const int rr = ROW_SHIFT ? int(rs[h][rw]) : 0;
                if (zero && st.i == 0) rs[h][rw] = 0;
            SMS_NORM_L:
                for (int l = 0; l < NLANES; ++l) {
                    ISEG_PRAGMA(HLS UNROLL)
                    o.p[q][l] = zero || st.i + l >= n ? int16_t(0)
                                                      : sm_norm<W::SM_BASE, W::SM_F>(e[q][l], f[rw], rr, c);
                }
            }
        }
        st.i += NLANES;
        if (st.i >= n) {
            st.i = 0;
            st.r = r + 1;
            if (st.r >= RH) st.phase = SM_DONE;
        }
    }
    if (dv) {  // ONE divider (and row shift) site
        if (c.clamp && dS > kInt32Max) dS = kInt32Max;
        const int64_t fr = ((int64_t(1) << (31 + c.K)) - 1) / dS;  // both positive: `/` is floor here
        f[drow] = fr;
        rs[h][drow] = ROW_SHIFT ? uint8_t(sm_row_shift<W::SM_X0, W::SM_F>(x0, fr, c)) : uint8_t(0);
    }
    return o;
}

}  // namespace iseg
