// add.h -- the integer add of two differently scaled tensors (numerics.md §5.4): the residual
// add, the position-embedding add.
//
//   out = clamp_bits((a*ma + b*mb + (1 << (e-1))) >> e)      one shared e, one rounding
#pragma once

#include "axi.h"
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

// The two bytes of an i16 at byte `off` of a beat (off even: a position among B / 2).
template <class T>
inline int32_t beat_i16_at(const T& v, long off) {
    ISEG_PRAGMA(HLS INLINE)
    uint8_t x[2] = {};
    beat_take<2>(v, int(off % beat_bytes<T>::value), x);
    return int32_t(int16_t(uint16_t(uint16_t(x[0]) | uint16_t(uint16_t(x[1]) << 8))));
}

// The m_axi side of a row op that reads two i16 streams and writes one, an element per iteration (ADD, EMBED_ADD):
// a one-beat read cache per input, a store stage for the output (axi.h).
template <class T>
struct RowIo {
    RdCache<T> x, y;
    WrStage<beat_bytes<T>::value> o;
};

template <class T>
inline void row_io_reset(RowIo<T>& io) {
    cache_reset(io.x);
    cache_reset(io.y);
    stage_reset(io.o);
}

// A whole ADD layer: out (T, N) i16 = int_add(a (T, N) i16, b (T, N) i16), row strides in elements, byte offsets
// a, b, out into the scratch ports (arrays of beats, axi.h). In the engine, b comes through the second scratch port
// (scratch_b, gmem2): two reads of one port per cycle would halve the loop's rate. An element per iteration: each
// operand through a one-beat cache (a beat is requested once), the output through a store stage.
template <class W = DefaultWidths, class T>
void add_rows(const T* pa, long a, long a_stride, const T* pb, long b, long b_stride, T* po, long out,
              long out_stride, int rows, int N, int32_t ma, int32_t mb, int32_t e) {
    RowIo<T> io;
    ISEG_PRAGMA(HLS ARRAY_PARTITION variable=io.o.b type=complete)
    row_io_reset(io);
ADD_T:
    for (int t = 0; t < rows; ++t) {
        ISEG_PRAGMA(HLS loop_tripcount min=1 max=1025)
    ADD_N:
        for (int n = 0; n < N; ++n) {
            ISEG_PRAGMA(HLS loop_tripcount min=1 max=768)
            ISEG_PIPELINE(ADD_N, 1);
            // a beat is written (the stage) only after the stream has moved past it, and never read again, even in
            // place (out = a): no carried dependence through the ports (pb is the same buffer on gmem2)
            ISEG_PRAGMA(HLS DEPENDENCE variable=pa inter false)
            ISEG_PRAGMA(HLS DEPENDENCE variable=pb inter false)
            ISEG_PRAGMA(HLS DEPENDENCE variable=po inter false)
            const long oa = a + (long(t) * a_stride + n) * 2, ob = b + (long(t) * b_stride + n) * 2;
            const long oo = out + (long(t) * out_stride + n) * 2;
            const int32_t va = beat_i16_at(ISEG_CACHE_RD(GMEM1, io.x, pa, oa, 2), oa);
            const int32_t vb = beat_i16_at(ISEG_CACHE_RD(GMEM2, io.y, pb, ob, 2), ob);  // b: the second scratch port
            uint8_t x[2] = {};
            put_act(x, 0, 2, int_add_w<W::ADD_M>(va, vb, ma, mb, e, 16));
            ISEG_STAGE_PUT(2, GMEM1, io.o, po, oo, x, 2);
        }
    }
    ISEG_STAGE_FLUSH(GMEM1, io.o, po);
}

}  // namespace iseg

namespace iseg {

// EMBED_ADD: out (T, N) i16 = int_add(x, pos) where x = [cls (n_prefix, N) ; tok (T - n_prefix, N)].
// pos is an int16 row-major constant of the blob (unpadded rows: N elements); tok rows come from scratch. The
// first n_prefix output rows, int_add(cls, pos[:n_prefix]), are constants: the generator computes them
// (plan.embed_prefix_rows) and `pre` holds them, so they are copied. Blob offsets pre, pos; scratch offsets tok,
// out. The blob's one read per iteration is a constant row or a pos row (one site, its address muxed).
template <class W = DefaultWidths, class T>
void embed_add_rows(const T* blob, long pre, const T* scratch, long tok, long tok_stride, long pos, T* po, long out,
                    long out_stride, int rows, int N, int n_prefix, int32_t ma, int32_t mb, int32_t e) {
    RowIo<T> io;
    ISEG_PRAGMA(HLS ARRAY_PARTITION variable=io.o.b type=complete)
    row_io_reset(io);
EMBED_T:
    for (int t = 0; t < rows; ++t) {
        ISEG_PRAGMA(HLS loop_tripcount min=1 max=1025)
        const bool cst = t < n_prefix;
        const long xrow = cst ? pre + long(t) * N * 2 : tok + long(t - n_prefix) * tok_stride * 2;
    EMBED_N:
        for (int n = 0; n < N; ++n) {
            ISEG_PRAGMA(HLS loop_tripcount min=1 max=768)
            ISEG_PIPELINE(EMBED_N, 1);
            ISEG_PRAGMA(HLS DEPENDENCE variable=scratch inter false)  // as ADD_N: written behind the stream
            ISEG_PRAGMA(HLS DEPENDENCE variable=po inter false)
            const long og = cst ? xrow + 2 * n : pos + (long(t) * N + n) * 2;  // gmem0: the constant row, or pos
            const int32_t vg = beat_i16_at(ISEG_CACHE_RD(GMEM0, io.x, blob, og, 2), og);
            int32_t y = vg;
            if (!cst) {
                const long ox = xrow + 2 * n;
                y = int_add_w<W::ADD_M>(beat_i16_at(ISEG_CACHE_RD(GMEM1, io.y, scratch, ox, 2), ox), vg, ma, mb, e, 16);
            }
            uint8_t x[2] = {};
            put_act(x, 0, 2, y);
            ISEG_STAGE_PUT(2, GMEM1, io.o, po, out + (long(t) * out_stride + n) * 2, x, 2);
        }
    }
    ISEG_STAGE_FLUSH(GMEM1, io.o, po);
}

}  // namespace iseg
