// layernorm.h -- I-LayerNorm over the channels of one token (numerics.md §5.3).
//
//   mean = round_half_even(sum / C);  y = x - mean;  var = sum(y^2)  (int64)
//   sd = max(isqrt(var), 1);  f = (2^31 - 1) // sd;  z = (y * f) >> 1    (|z| <= 2^30)
//   out = RQ_bits(z, m_c, e_c, o_c)        gamma in m_c, beta in o_c, bits 8 or 16
//
// The square root is the exact digit-by-digit (restoring) algorithm, 32 fixed iterations: no
// Newton steps, no float. The datapath that streams rows through these is the LayerNorm loader of
// gemm.h (ln_step): fused into the next GEMM's left-operand load, or alone (schedule.h layernorm_begin).
#pragma once

#include "requant.h"

namespace iseg {

// Signed bits of a LayerNorm row sum over at most CMAX int16 channels (mul.h).
template <int CMAX>
constexpr int kLnSumBits() {
    return signed_bits_for(int64_t(CMAX) << 15);
}

// z = (y * f) >> 1, y = x - mean (|y| <= sd, kLnYBits), f = (2^31 - 1) // sd: |y * f| < 2^31.
inline int64_t ln_scale(int64_t y, int64_t f) {
    ISEG_PRAGMA(HLS INLINE)
    return mul_dsp<kLnYBits, kLnFBits>(y, f) >> 1;
}

// Exact floor(sqrt(v)) for 0 <= v < 2^62.
inline int64_t isqrt_digit(int64_t v) {
    int64_t res = 0;
    int64_t bit = int64_t(1) << 62;
ISQRT_DIGIT:
    for (int i = 0; i < 32; ++i) {
        ISEG_PIPELINE(ISQRT_DIGIT, 1);
        if (v >= res + bit) {
            v -= res + bit;
            res = (res >> 1) + bit;
        } else {
            res >>= 1;
        }
        bit >>= 2;
    }
    return res;
}

}  // namespace iseg
