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

// One row, either variant. in: x (n,) int8; out: y (n,) int32.
template <int NMAX, class W = DefaultWidths>
void gelu_row(const int8_t x[NMAX], int n, const GeluParams& g, int32_t y[NMAX]) {
    if (g.variant == GELU_LAMBDA) {
    GELU_LAMBDA_ROW:
        for (int i = 0; i < n; ++i) {
            ISEG_PRAGMA(HLS loop_tripcount min=1 max=3072)
            ISEG_PIPELINE(GELU_LAMBDA_ROW, 1);
            y[i] = gelu_lambda<W>(x[i], g);
        }
        return;
    }
    int32_t M = 0;  // max(row max, 0) keeps both exps in the domain x <= 0
GELU_SHIFT_MAX:
    for (int i = 0; i < n; ++i) {
        ISEG_PRAGMA(HLS loop_tripcount min=1 max=3072)
        ISEG_PIPELINE(GELU_SHIFT_MAX, 1);
        if (x[i] > M) M = x[i];
    }
    const int64_t em = shexp_w<W::GELU_X0, W::SMALL_FABRIC>(-int64_t(M), g.x0, g.n);
GELU_SHIFT_ROW:
    for (int i = 0; i < n; ++i) {
        ISEG_PRAGMA(HLS loop_tripcount min=1 max=3072)
        ISEG_PIPELINE(GELU_SHIFT_ROW, 1);
        y[i] = gelu_core<W>(x[i], int64_t(x[i]) - M, em, g.x0, g.n);
    }
}

}  // namespace iseg
