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

// Exact floor(sqrt(v)) for 0 <= v < 4^STEPS: STEPS digit steps (two bits of v each).
template <int STEPS>
inline int64_t isqrt_steps(int64_t v) {
    static_assert(STEPS >= 1 && STEPS <= 32, "isqrt_steps: 1..32 steps");
    int64_t res = 0;
    int64_t bit = int64_t(1) << (2 * STEPS - 2);
ISQRT_DIGIT:
    for (int i = 0; i < STEPS; ++i) {
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

// Exact floor(sqrt(v)) for 0 <= v < 2^62.
inline int64_t isqrt_digit(int64_t v) { return isqrt_steps<32>(v); }

// A LayerNorm row's variance bound and what it sizes (the statistics chain, gemm.h kLnChain). var = sum((x -
// mean)^2) over K <= 2^(kLnKBits - 1) - 1 = 2047 channels (the planner refuses more), x and mean int16, so
// |x - mean| <= 2^16 - 1 and var < 2047 * 2^32 < 2^43: kLnVarSteps = 22 digit steps give the exact root (4^22 =
// 2^44 > var), where the general isqrt_digit takes 32, and sd = floor(sqrt(var)) < 2^22 (kLnSdBits unsigned).
static constexpr int kLnVarBits = (kLnKBits - 1) + 32;
static constexpr int kLnVarSteps = (kLnVarBits + 1) / 2;
static constexpr int kLnSdBits = kLnVarSteps;
// f = (2^31 - 1) // sd: a 32-bit signed dividend by a kLnSdBits + 1 signed divisor, so the tool builds a divider
// of 32 quotient bits (kLnDivCycles deep, compat.h's rule for a W-bit divider: W + 2), not the 64-bit one
// (kDivCycles) that int64_t `/` asks for.
static constexpr int kLnDivCycles = 32 + 2;
inline int64_t ln_sd(int64_t var) {
    ISEG_PRAGMA(HLS INLINE)
    ISEG_CHECK(var >= 0 && var < (int64_t(1) << (2 * kLnVarSteps)), "LayerNorm: a variance beyond kLnVarBits");
    const int64_t sd = isqrt_steps<kLnVarSteps>(var);
    return sd < 1 ? 1 : sd;
}
inline int64_t ln_recip(int64_t sd) {
    ISEG_PRAGMA(HLS INLINE)
    ISEG_CHECK(sd >= 1 && sd < (int64_t(1) << kLnSdBits), "LayerNorm: sd beyond kLnSdBits");
    const typename sbits<32>::type num = typename sbits<32>::type(kInt32Max);
    return int64_t(num / narrow<kLnSdBits + 1>(sd));  // both positive: `/` is floor here
}

}  // namespace iseg
