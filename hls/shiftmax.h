// shiftmax.h -- row-wise integer softmax (numerics.md §5.1), both variants.
//
//   d = (x - max(x)) << k;  e = shexp(d, x0, 15);  S = sum(e)  (ivit: min(S, 2^31 - 1))
//   f = ((1 << (31+K)) - 1) // S;  p = min((e*f + rnd*(1 << (15+K))) >> (16+K), 32767)
//
//   variant   k  K   rnd  S clamped
//   precise   3  16  1    no       (the default)
//   ivit      0  0   0    yes      (the I-ViT formulation)
//
// Streamed over one row in four passes: max, exp + sum, one reciprocal, normalise. The exps are
// kept in a row buffer (int64: e < |x0| * 2^16 < 2^47) between the sum and the normalisation.
#pragma once

#include "shexp.h"

namespace iseg {

enum SmVariant : int32_t { SM_PRECISE = 0, SM_IVIT = 1 };

static constexpr int kShiftmaxN = 15;

// in: x (n,) int8 scores, real = x * s; out: p (n,) u15 held in int16, real = p * 2^-15.
// x0 = floor(-2^k / s) < 0 (offline). n in [1, NMAX]. The exporter proves S < 2^(31+K).
// LANES elements per cycle in each pass: 3 * ceil(n / LANES) cycles + one divider + 3 pipeline fills
// (shiftmax_cycles).
template <int NMAX, int LANES = 1>
void shiftmax_row(const int8_t x[NMAX], int n, int32_t x0, int32_t variant, int16_t p[NMAX]) {
    const bool ivit = variant == SM_IVIT;
    const int k = ivit ? 0 : 3;
    const int K = ivit ? 0 : 16;
    const int64_t rnd = ivit ? 0 : (int64_t(1) << (15 + K));
    int64_t ebuf[NMAX];  // row buffer of the exps

    int32_t mx = -128;
SM_MAX:
    for (int i0 = 0; i0 < n; i0 += LANES) {
        ISEG_PRAGMA(HLS loop_tripcount min=1 max=1025)
        ISEG_PRAGMA(HLS PIPELINE II=1)
    SM_MAX_L:
        for (int i = i0; i < i0 + LANES; ++i) {
            if (i < n && x[i] > mx) mx = x[i];
        }
    }
    int64_t S = 0;
SM_EXP:
    for (int i0 = 0; i0 < n; i0 += LANES) {
        ISEG_PRAGMA(HLS loop_tripcount min=1 max=1025)
        ISEG_PRAGMA(HLS PIPELINE II=1)
    SM_EXP_L:
        for (int i = i0; i < (i0 + LANES < n ? i0 + LANES : n); ++i) {
        const int64_t d = int64_t(x[i] - mx) * (int64_t(1) << k);  // <= 0; a multiply, not a << of a negative
        const int64_t e = shexp(d, x0, kShiftmaxN);
        ebuf[i] = e;
        S += e;
        }
    }
    if (ivit && S > kInt32Max) S = kInt32Max;
    const int64_t f = ((int64_t(1) << (31 + K)) - 1) / S;  // both positive: `/` is floor here
SM_NORM:
    for (int i0 = 0; i0 < n; i0 += LANES) {
        ISEG_PRAGMA(HLS loop_tripcount min=1 max=1025)
        ISEG_PRAGMA(HLS PIPELINE II=1)
    SM_NORM_L:
        for (int i = i0; i < (i0 + LANES < n ? i0 + LANES : n); ++i) {
            const int64_t v = (ebuf[i] * f + rnd) >> (16 + K);
            p[i] = int16_t(v > 32767 ? 32767 : v);
        }
    }
}

// Cycles of shiftmax_row<NMAX, LANES> on a row of n (the C-sim count and the estimate's).
inline long shiftmax_cycles(int n, int lanes) { return 3L * ((n + lanes - 1) / lanes + kPipeDepth) + kDivCycles; }

}  // namespace iseg
