// add.h -- the integer add of two differently scaled tensors (numerics.md §5.4): the residual
// add, the position-embedding add.
//
//   out = clamp_bits((a*ma + b*mb + (1 << (e-1))) >> e)      one shared e, one rounding
#pragma once

#include "mul.h"

namespace iseg {

// a, b: i16 values; ma, mb: multipliers of MB signed bits (mul.h); e in [1, 62].
template <int MB>
inline int32_t int_add_w(int32_t a, int32_t b, int32_t ma, int32_t mb, int32_t e, int bits) {
    ISEG_PRAGMA(HLS INLINE)
    return clamp_bits((mul_dsp<kI16Bits, MB>(a, ma) + mul_dsp<kI16Bits, MB>(b, mb) + (int64_t(1) << (e - 1))) >> e,
                      bits);
}

// Any int32 ma, mb.
inline int32_t int_add(int32_t a, int32_t b, int32_t ma, int32_t mb, int32_t e, int bits) {
    return int_add_w<DefaultWidths::ADD_M>(a, b, ma, mb, e, bits);
}

// A whole ADD layer: out (T, N) i16 = int_add(a (T, N) i16, b (T, N) i16), row strides in elements. In the
// engine, b comes through the second scratch port (scratch_b, gmem2): two reads of one port per cycle would
// halve the loop's rate.
template <class W = DefaultWidths>
void add_rows(const uint8_t* a, long a_stride, const uint8_t* b, long b_stride, uint8_t* out,
                     long out_stride, int T, int N, int32_t ma, int32_t mb, int32_t e) {
ADD_T:
    for (int t = 0; t < T; ++t) {
        ISEG_PRAGMA(HLS loop_tripcount min=1 max=1025)
    ADD_N:
        for (int n = 0; n < N; ++n) {
            ISEG_PRAGMA(HLS loop_tripcount min=1 max=768)
            ISEG_PIPELINE(ADD_N, 1);
            ISEG_AXI_RD(GMEM1, a + (long(t) * a_stride + n) * 2, 2);
            ISEG_AXI_RD(GMEM2, b + (long(t) * b_stride + n) * 2, 2);  // b: the second scratch port
            ISEG_AXI_WR(GMEM1, out + (long(t) * out_stride + n) * 2, 2);
            const int32_t va = ld_i16(a + (long(t) * a_stride + n) * 2);
            const int32_t vb = ld_i16(b + (long(t) * b_stride + n) * 2);
            st_i16(out + (long(t) * out_stride + n) * 2, int_add_w<W::ADD_M>(va, vb, ma, mb, e, 16));
        }
    }
}

}  // namespace iseg

namespace iseg {

// EMBED_ADD: out (T, N) i16 = int_add(x, pos) where x = [cls (n_prefix, N) ; tok (T - n_prefix, N)].
// pos is an int16 row-major constant of the blob; tok rows come from scratch. The first n_prefix output rows,
// int_add(cls, pos[:n_prefix]), are constants: the generator computes them (plan.embed_prefix_rows) and `pre`
// holds them, so they are copied (one blob read per element, not two beside each other on the blob's port).
template <class W = DefaultWidths>
void embed_add_rows(const uint8_t* pre, const uint8_t* tok, long tok_stride, const uint8_t* pos,
                           uint8_t* out, long out_stride, int T, int N, int n_prefix, int32_t ma,
                           int32_t mb, int32_t e) {
EMBED_T:
    for (int t = 0; t < T; ++t) {
        ISEG_PRAGMA(HLS loop_tripcount min=1 max=1025)
        const bool cst = t < n_prefix;
        const uint8_t* xrow = cst ? pre + long(t) * N * 2 : tok + long(t - n_prefix) * tok_stride * 2;
    EMBED_N:
        for (int n = 0; n < N; ++n) {
            ISEG_PRAGMA(HLS loop_tripcount min=1 max=768)
            ISEG_PIPELINE(EMBED_N, 1);
            ISEG_AXI_WR(GMEM1, out + (long(t) * out_stride + n) * 2, 2);
            if (cst) {
                ISEG_AXI_RD(GMEM0, xrow + 2 * n, 2);
                st_i16(out + (long(t) * out_stride + n) * 2, ld_i16(xrow + 2 * n));
            } else {
                ISEG_AXI_RD(GMEM0, pos + (long(t) * N + n) * 2, 2);
                ISEG_AXI_RD(GMEM1, xrow + 2 * n, 2);
                const int32_t vb = ld_i16(pos + (long(t) * N + n) * 2);
                st_i16(out + (long(t) * out_stride + n) * 2,
                       int_add_w<W::ADD_M>(ld_i16(xrow + 2 * n), vb, ma, mb, e, 16));
            }
        }
    }
}

}  // namespace iseg
