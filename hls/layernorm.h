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

// The mean without a divider (numerics.md §5.3's round_half_even(sum / K), K a layer constant): the generator
// gives each LAYERNORM row the reciprocal of its channel count (LayerDesc mean_m, mean_sh:
// numerics.mean_reciprocal, whose docstring has the proof), l = ceil(log2 K), sh = 15 + 2 l, m = ceil(2^sh / K).
// For 0 <= n < 2^(15 + l), floor(n / K) = (n * m) >> sh (Granlund & Montgomery 1994, Thm 4.2). A row sum of K int16
// values, folded to n = sum or ~sum = -sum - 1 (sum < 0), is in [0, K 2^15 - 1]: the quotient is exact, then
// ~q undoes the fold (floor(sum / K) = ~floor(~sum / K) for sum < 0).
// Signed bits of m < 2^(16 + l) for every K <= CMAX (n: kLnSumBits<CMAX>, n <= CMAX 2^15).
template <int CMAX>
constexpr int kLnMeanMBits() {
    return 16 + signed_bits_for(CMAX - 1);  // 17 + ceil(log2 CMAX): signed_bits_for(v) = 1 + bit length of v
}

// (m, sh) is the mean reciprocal of K: sh = 15 + 2 ceil(log2 K) and 2^sh <= m K < 2^sh + K, i.e. m = ceil(2^sh / K)
// (the table check, engine.h check_layer). K <= 2^15 (numerics.MEAN_K_MAX): sh <= 45, |m K| < 2^46.
inline bool ln_mean_ok(int64_t K, int64_t m, int64_t sh) {
    if (K < 1 || K > (int64_t(1) << 15) || sh != 15 + 2 * (signed_bits_for(K - 1) - 1)) return false;
    const int64_t e = m * K - (int64_t(1) << sh);
    return e >= 0 && e < K;
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
