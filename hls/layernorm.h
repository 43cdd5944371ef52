// layernorm.h -- I-LayerNorm over the channels of one token (numerics.md §5.3).
//
//   mean = round_half_even(sum / C);  y = x - mean;  var = sum(y^2)  (int64)
//   sd = max(isqrt(var), 1);  f = (2^31 - 1) // sd;  z = (y * f) >> 1    (|z| <= 2^30)
//   out = RQ_bits(z, m_c, e_c, o_c)        gamma in m_c, beta in o_c, bits 8 or 16
//
// The square root is the exact digit-by-digit (restoring) algorithm, 32 fixed iterations: no
// Newton steps, no float. The row is buffered once (CMAX) and read three times.
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
        ISEG_PRAGMA(HLS PIPELINE II=1)
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

// One token. in: x (C,) int16 at `src` (little-endian); out: (C,) of out_bits at `dst`.
// Per-channel (m, e, o) from rq (blob table or scalar).
// LANES channels per cycle in each of the three passes: layernorm_cycles().
template <int CMAX, int LANES = 1>
void layernorm_row(const uint8_t* src, int C, const RqDesc& rq, const uint8_t* blob, int out_bits, uint8_t* dst) {
    int32_t x[CMAX];
    int64_t sum = 0;
LN_LOAD:
    for (int c0 = 0; c0 < C; c0 += LANES) {
        ISEG_PRAGMA(HLS loop_tripcount min=1 max=768)
        ISEG_PRAGMA(HLS PIPELINE II=1)
    LN_LOAD_L:
        for (int c = c0; c < (c0 + LANES < C ? c0 + LANES : C); ++c) {
            x[c] = ld_i16(src + 2 * c);
            sum += x[c];
        }
    }
    const int64_t mean = round_half_even_div(sum, C);
    int64_t var = 0;
LN_VAR:
    for (int c0 = 0; c0 < C; c0 += LANES) {
        ISEG_PRAGMA(HLS loop_tripcount min=1 max=768)
        ISEG_PRAGMA(HLS PIPELINE II=1)
    LN_VAR_L:
        for (int c = c0; c < (c0 + LANES < C ? c0 + LANES : C); ++c) {
            const int64_t y = x[c] - mean;
            var += mul_dsp<kLnYBits, kLnYBits>(y, y);
        }
    }
    int64_t sd = isqrt_digit(var);
    if (sd < 1) sd = 1;
    const int64_t f = kInt32Max / sd;  // both positive: `/` is floor here
    const int bytes = out_bits / 8;
LN_OUT:
    for (int c0 = 0; c0 < C; c0 += LANES) {
        ISEG_PRAGMA(HLS loop_tripcount min=1 max=768)
        ISEG_PRAGMA(HLS PIPELINE II=1)
    LN_OUT_L:
        for (int c = c0; c < (c0 + LANES < C ? c0 + LANES : C); ++c) {
            const int64_t z = ln_scale(x[c] - mean, f);
            st_act(dst + c * bytes, bytes, requant_w<kLnZBits>(z, rq_channel(rq, blob, c), out_bits));
        }
    }
}

// Cycles of layernorm_row<CMAX, LANES> on a row of C channels: three passes, the 32-step square
// root and one divider (the C-sim count and the estimate's).
inline long layernorm_cycles(int C, int lanes) { return 3L * ((C + lanes - 1) / lanes + kPipeDepth) + 32 + kDivCycles; }

}  // namespace iseg
