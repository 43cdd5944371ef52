// gelu.h -- lambda-ShiftGELU (this project's GELU) and I-ViT's ShiftGELU (numerics.md §5.2).
//
//   lambda: xc = clamp(x, -L, L) << k;  e = shexp(xc - M, x0, n);  em = shexp(-M, x0, n)  (M = L << k,
//           em precomputed offline)
//   shift:  M = max(max(row), 0);  e = shexp(x - M, x0, n);  em = shexp(-M, x0, n)  (per row)
//   both:   S = min(e + em, 2^31 - 1);  f = (2^31 - 1) // S;  sig = (e*f) >> 24;  y = x * sig
//
// in: x int8 (the RQ_8 output of fc1), real = x * s; out: y int32, real = y * s * 2^-7,
// |y| <= 128 * 127. The lambda variant is element-wise (so the GEMM fuses it into its output
// stage); the shift variant needs the row maximum, so it only exists as a row op (gelu_row).
#pragma once

#include "shexp.h"

namespace iseg {

enum GeluVariant : int32_t { GELU_LAMBDA = 0, GELU_SHIFT = 1 };

struct GeluParams {
    int64_t em;  // lambda: shexp(-(L << k), x0, n), offline
    int32_t variant;
    int32_t x0;  // < 0
    int32_t n;   // headroom bits, <= kShexpNMax
    int32_t k;   // lambda: extra fractional bits
    int32_t L;   // lambda: clip bound in input units
    int32_t pad_;
};

// THE GELU maths, shared by both variants: `arg` = the shifted exp argument (<= 0), `em` the
// exp of the offset. e * f is computed as (mantissa * f) << shift (the same integer: e = base << sh),
// a GELU_BASE x GELU_F multiplier (mul.h widths W); x * sig is 8 x 8 (mul_lane).
template <class W = DefaultWidths>
inline int32_t gelu_core(int32_t x, int64_t arg, int64_t em, int32_t x0, int n) {
    ISEG_PRAGMA(HLS INLINE)
    const ShexpParts e = shexp_parts<W::GELU_X0, W::SMALL_FABRIC>(arg, x0, n);
    int64_t S = (e.base << e.sh) + em;
    if (S > kInt32Max) S = kInt32Max;
    const int64_t f = kInt32Max / S;  // both positive: `/` is floor here
    const int64_t sig = mul_dsp<W::GELU_BASE, W::GELU_F>(e.base, f) << e.sh >> 24;  // [0, 127]
    return int32_t(mul_lane<kI8Bits, kSigBits, W::SMALL_FABRIC>(x, sig));
}

// lambda-ShiftGELU of one element. xc * 2^k - M = -((L - xc) << k), a shift of a value >= 0.
template <class W = DefaultWidths>
inline int32_t gelu_lambda(int32_t x, const GeluParams& g) {
    ISEG_PRAGMA(HLS INLINE)
    const int32_t xc = x < -g.L ? -g.L : (x > g.L ? g.L : x);
    return gelu_core<W>(x, -(int64_t(g.L - xc) << g.k), g.em, g.x0, g.n);
}

// ---------------------------------------------------------------------------------------------
// One row of the GELU row op (engine.h gelu_layer; the harness runs the same pieces): the row in x, its
// outputs through `out`. Three pipelined passes, at II 1:
//   load   a beat of BEAT bytes per iteration into x, folded into the row max (gelu_take, in the caller's
//          loop: the caller owns the m_axi access)
//   GELU   LANES elements per iteration (gelu_row): LANES gelu_core sets (a shexp, a divider, two
//          multipliers each), either variant (the exp argument is a select: one set per lane, not two)
//   store  a beat per iteration out of y (the caller's loop)
// x and y are cyclic over gelu_banks = ceil(max(BEAT, LANES) / 2) banks: any run of at most 2 x banks
// consecutive elements puts at most two in a bank, so each pass stays within a bank's two ports.
template <int BEAT, int LANES>
constexpr int gelu_banks() {
    return ((BEAT > LANES ? BEAT : LANES) + 1) / 2;
}

template <int NMAX, int BANKS>
struct GeluRowBuf {
    static_assert(NMAX >= 1 && BANKS >= 1, "GeluRowBuf: NMAX and BANKS must be positive");
    int8_t x[NMAX];  // the input row
    int8_t y[NMAX];  // the output row (the layer: RQ_8(GELU(x)), i8)
    static int bank(int i) { return i % BANKS; }
    static int word(int i) { return i / BANKS; }
    ISEG_PORTS(x, BANKS);
    ISEG_PORTS(y, BANKS);
};

// One beat of the load pass: cnt (<= BEAT) bytes p[0..cnt) into x[c0..c0+cnt), returns max(M, their max).
// (M starts at 0 per row: max(row max, 0) keeps both exps in the domain x <= 0.)
template <int BEAT, class Buf>
inline int32_t gelu_take(Buf& r, const uint8_t* p, int c0, int cnt, int32_t M) {
    ISEG_PRAGMA(HLS INLINE)
    int32_t bm = 0;  // the beat's max (a compare tree), then one compare with the carried M
GELU_TAKE:
    for (int l = 0; l < BEAT; ++l) {
        ISEG_PRAGMA(HLS UNROLL)
        if (l < cnt) {
            const int8_t v = int8_t(p[l]);
            ISEG_WR(r, x, Buf::bank(c0 + l), Buf::word(c0 + l));
            r.x[c0 + l] = v;
            if (v > bm) bm = v;
        }
    }
    return bm > M ? bm : M;
}

// The GELU pass of one row, either variant, LANES elements per iteration: out(c, y) receives element c's
// GELU (i32, real = y * s * 2^-7). M: max(row max, 0) (the shift variant; the lambda one ignores it).
// Before the loop, the shift variant's em = shexp(-M) (a sequential divider: kDivCycles, the caller counts it).
template <int LANES, class W = DefaultWidths, class Buf, class Out>
void gelu_row(const Buf& r, int n, int32_t M, const GeluParams& g, Out& out) {
    const bool lam = g.variant == GELU_LAMBDA;
    const int64_t em = lam ? g.em : shexp_w<W::GELU_X0, W::SMALL_FABRIC>(-int64_t(M), g.x0, g.n);
    const long its = (long(n) + LANES - 1) / LANES;
GELU_ROW:
    for (long i = 0; i < its; ++i) {
        ISEG_PRAGMA(HLS loop_tripcount min=1 max=3072)
        ISEG_PIPELINE(GELU_ROW, 1);
    GELU_LANE:
        for (int l = 0; l < LANES; ++l) {
            ISEG_PRAGMA(HLS UNROLL)
            const int c = int(i) * LANES + l;
            if (c < n) {
                ISEG_RD(r, x, Buf::bank(c), Buf::word(c));
                const int32_t x = r.x[c];
                const int32_t xc = x < -g.L ? -g.L : (x > g.L ? g.L : x);  // gelu_lambda's argument
                const int64_t arg = lam ? -(int64_t(g.L - xc) << g.k) : int64_t(x) - M;
                out(c, gelu_core<W>(x, arg, em, g.x0, g.n));
            }
        }
    }
}

}  // namespace iseg
