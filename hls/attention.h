// attention.h -- multi-head attention streamed by blocks of query rows (numerics.md §3, §5.1).
//
// For each head h and each block of R query rows:
//   scores s (R, T) = RQ_8(q_blk . K_h^T)        the GEMM array, key tiles of C columns
//   P      (R, T)   = Shiftmax(s) row by row     u15, written straight into the array's A buffer
//   out    (R, dh)  = RQ_8(P . V_h)              the GEMM array again, K = T keys
// Only an (R, T) block of scores ever exists: never the full T x T matrix.
//
// in: qkv (T, 3D) int8 at scratch + d.in, row stride d.in_stride; q = columns [0, D), k = [D, 2D),
//     v = [2D, 3D), head h = columns [h*dh, (h+1)*dh) of each (D = heads * d_head).
// out: (T, D) int8 at scratch + d.out, row stride d.out_stride (heads concatenated).
// Constants: d.rq = score requant (scalar: 1/sqrt(dh) folded in), d.sm_x0 / d.sm_variant,
//            d.rq2 = output requant (scalar or per channel of D).
#pragma once

#include "gemm.h"
#include "shiftmax.h"

namespace iseg {

template <class Cfg>
void attention(const LayerDesc& d, const uint8_t* blob, uint8_t* scratch, GemmBuffers<Cfg>& g) {
    static_assert(Cfg::KMAX >= Cfg::NMAX, "P.V reduces over all keys: KMAX must be >= NMAX");
    int8_t s[Cfg::R][Cfg::NMAX];  // one row block of scores
    const int T = d.T;
    const int dh = d.d_head;
    const int D = d.heads * dh;
    const long st = d.in_stride;
    const uint8_t* qkv = scratch + d.in;
    const RqParams rq_s = rq_channel(d.rq, blob, 0);
ATT_HEAD:
    for (int h = 0; h < d.heads; ++h) {
        ISEG_PRAGMA(HLS loop_tripcount min=1 max=12)
    ATT_QBLK:
        for (int t0 = 0; t0 < T; t0 += Cfg::R) {
            ISEG_PRAGMA(HLS loop_tripcount min=1 max=65)
            const int rows = T - t0 < Cfg::R ? T - t0 : Cfg::R;
            // scores = RQ_8(q_blk . K_h^T), one key tile at a time
            gemm_load_a<Cfg>(g, qkv + long(t0) * st + long(h) * dh, st, rows, dh);
        ATT_KTILE:
            for (int n0 = 0; n0 < T; n0 += Cfg::C) {
                ISEG_PRAGMA(HLS loop_tripcount min=1 max=65)
                const int cols = T - n0 < Cfg::C ? T - n0 : Cfg::C;
                gemm_load_b<Cfg>(g, qkv + long(n0) * st + D + long(h) * dh, 1, st, cols, dh);
                gemm_array<Cfg>(g, dh);
            ATT_S_R:
                for (int r = 0; r < Cfg::R; ++r) {
                ATT_S_C:
                    for (int c = 0; c < cols; ++c) {
                        ISEG_PRAGMA(HLS PIPELINE II=1)
                        s[r][n0 + c] = int8_t(requant(g.acc[r][c], rq_s, 8));
                    }
                }
            }
            // P = Shiftmax(s), into the A buffer (rows beyond the matrix edge are zero)
        ATT_SM:
            for (int r = 0; r < Cfg::R; ++r) {
                if (r < rows) {
                    shiftmax_row<Cfg::NMAX>(s[r], T, d.sm_x0, d.sm_variant, g.a[r]);
                } else {
                ATT_SM_ZERO:
                    for (int i = 0; i < T; ++i) g.a[r][i] = 0;
                }
            }
            // out_h = RQ_8(P . V_h), C output channels at a time
        ATT_VTILE:
            for (int c0 = 0; c0 < dh; c0 += Cfg::C) {
                ISEG_PRAGMA(HLS loop_tripcount min=1 max=8)
                const int cols = dh - c0 < Cfg::C ? dh - c0 : Cfg::C;
                gemm_load_b<Cfg>(g, qkv + 2L * D + long(h) * dh + c0, st, 1, cols, T);
                gemm_array<Cfg>(g, T);
            ATT_O_R:
                for (int r = 0; r < rows; ++r) {
                    uint8_t* orow = scratch + d.out + long(t0 + r) * d.out_stride + long(h) * dh + c0;
                ATT_O_C:
                    for (int c = 0; c < cols; ++c) {
                        ISEG_PRAGMA(HLS PIPELINE II=1)
                        const RqParams rq_o = rq_channel(d.rq2, blob, h * dh + c0 + c);
                        orow[c] = uint8_t(requant(g.acc[r][c], rq_o, 8) & 0xff);
                    }
                }
            }
        }
    }
}

}  // namespace iseg
