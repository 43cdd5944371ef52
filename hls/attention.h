// attention.h -- multi-head attention streamed by blocks of query rows (numerics.md §3, §5.1).
//
// Per head h: K_h and V_h are loaded on chip once (into the free half of the weight buffer: the
// qkv layer that precedes attention is done with it), then for each block of R query rows:
//   Q block      the left-operand loader (R x d_head bytes, one beat per cycle)
//   scores s     RQ_8(q_blk . K_h^T) on the array, key tiles of C columns; each tile's
//                requant runs on the output lanes during the next tile (as in gemm_layer)
//   P (R, T)     Shiftmax row by row, SM_LANES elements per cycle, written straight into the
//                array's left-operand buffer (u15)
//   out (R, dh)  RQ_8(P . V_h) on the array, K = T keys; P is u15, a 16 x 8 product that cannot
//                share a DSP48E2 with a second MAC: PV_STEP runs at II = 2 (half the packed rate)
// Only an (R, T) block of scores ever exists: never the full T x T matrix. The phases of one
// block run one after the other (Shiftmax is not yet overlapped with the array).
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
    const int W = Cfg::AXI_BYTES;
    int8_t s[Cfg::R][Cfg::NMAX];  // one row block of scores
    const int T = d.T;
    const int dh = d.d_head;
    const int D = d.heads * dh;
    const long st = d.in_stride;
    const uint8_t* qkv = scratch + d.in;
    int8_t(&kv)[Cfg::WROWS][Cfg::C] = g.w[g.wcur];
    const int kt_n = (T + Cfg::C - 1) / Cfg::C;   // key tiles of Q.K^T
    const int vt_n = (dh + Cfg::C - 1) / Cfg::C;  // channel tiles of P.V
    const int voff = kt_n * dh;                   // first V row in kv
    const int dbeats = (dh + W - 1) / W;
    const int dsteps = drain_steps<Cfg>();
    ISEG_CHECK(voff + long(vt_n) * T <= Cfg::WROWS, "ATTENTION: K_h and V_h exceed Cfg::WROWS");
    const RqParams rq_s = rq_channel(d.rq, blob, 0);
ATT_CONSTS:
    for (int c = 0; c < D; ++c) {
        ISEG_PRAGMA(HLS loop_tripcount min=1 max=768)
        ISEG_PRAGMA(HLS PIPELINE II=1)
        g.rq2[c] = rq_channel(d.rq2, blob, c);
    }
    ISEG_CYCLES(g.cycles, D + kPipeDepth);
ATT_HEAD:
    for (int h = 0; h < d.heads; ++h) {
        ISEG_PRAGMA(HLS loop_tripcount min=1 max=12)
        // K_h^T as (key tile, k) rows and V_h as (channel tile, key) rows, on chip
    ATT_KV_N:
        for (int n = 0; n < T; ++n) {
            ISEG_PRAGMA(HLS loop_tripcount min=1 max=1174)
        ATT_KV_BEAT:
            for (int b = 0; b < dbeats; ++b) {
                ISEG_PRAGMA(HLS loop_tripcount min=1 max=4)
                ISEG_PRAGMA(HLS PIPELINE II=2)
            ATT_KV_BYTE:
                for (int j = 0; j < W; ++j) {
                    const int k = b * W + j;
                    if (k < dh) {
                        kv[long(n / Cfg::C) * dh + k][n % Cfg::C] = int8_t(qkv[long(n) * st + D + long(h) * dh + k]);
                        kv[voff + long(k / Cfg::C) * T + n][k % Cfg::C] =
                            int8_t(qkv[long(n) * st + 2L * D + long(h) * dh + k]);
                    } else if (k < vt_n * Cfg::C) {
                        kv[voff + long(k / Cfg::C) * T + n][k % Cfg::C] = 0;  // P.V columns past d_head
                    }
                }
            }
        }
        ISEG_CYCLES(g.cycles, 2L * T * dbeats + kPipeDepth);
    ATT_QBLK:
        for (int t0 = 0; t0 < T; t0 += Cfg::R) {
            ISEG_PRAGMA(HLS loop_tripcount min=1 max=65)
            const int rows = T - t0 < Cfg::R ? T - t0 : Cfg::R;
            ALoad ql = {qkv + long(t0) * st + long(h) * dh, st, rows, dh, 1, 0, 0};
        ATT_Q_LOAD:
            for (int b = 0; b < a_beats(Cfg::R, dh, W); ++b) {
                ISEG_PRAGMA(HLS loop_tripcount min=1 max=128)
                ISEG_PRAGMA(HLS PIPELINE II=1)
                a_beat<Cfg>(ql, g);
            }
            ISEG_CYCLES(g.cycles, a_beats(Cfg::R, dh, W) + kPipeDepth);
            // scores = RQ_8(q_blk . K_h^T), one key tile at a time; tile j-1 drains during tile j
            acc_to_drain<Cfg>(g);
            int dn0 = 0, dcols = 0;
        ATT_KTILE:
            for (int j = 0; j <= kt_n; ++j) {
                ISEG_PRAGMA(HLS loop_tripcount min=1 max=75)
                const bool pend = j > 0;
                const int steps = j < kt_n ? (pend && dsteps > dh ? dsteps : dh) : dsteps;
            ATT_QK_STEP:
                for (int s2 = 0; s2 < steps; ++s2) {
                    ISEG_PRAGMA(HLS loop_tripcount min=64 max=96)
                    ISEG_PRAGMA(HLS PIPELINE II=1)
                    if (j < kt_n && s2 < dh) array_step<Cfg>(g, g.a[1], kv[long(j) * dh + s2], s2);
                    if (pend && s2 < dsteps) {
                    ATT_S_LANE:
                        for (int l = 0; l < Cfg::OUT_LANES; ++l) {
                            const int e = s2 * Cfg::OUT_LANES + l;
                            const int r = e / Cfg::C, c = e % Cfg::C;
                            if (r < rows && c < dcols) s[r][dn0 + c] = int8_t(requant(g.dr[r][c], rq_s, 8));
                        }
                    }
                }
                ISEG_CYCLES(g.cycles, steps);
                acc_to_drain<Cfg>(g);
                dn0 = j * Cfg::C;
                dcols = T - dn0 < Cfg::C ? T - dn0 : Cfg::C;
            }
            ISEG_CYCLES(g.cycles, kPipeDepth);
            // P = Shiftmax(s), into the left-operand buffer (rows beyond the matrix edge are zero)
        ATT_SM:
            for (int r = 0; r < Cfg::R; ++r) {
                if (r < rows) {
                    shiftmax_row<Cfg::NMAX, Cfg::SM_LANES>(s[r], T, d.sm_x0, d.sm_variant, g.a[0][r]);
                    ISEG_CYCLES(g.cycles, shiftmax_cycles(T, Cfg::SM_LANES));
                } else {
                ATT_SM_ZERO:
                    for (int i = 0; i < T; ++i) g.a[0][r][i] = 0;
                    ISEG_CYCLES(g.cycles, (T + Cfg::SM_LANES - 1) / Cfg::SM_LANES);
                }
            }
            // out_h = RQ_8(P . V_h), C output channels at a time (half rate: II = 2)
        ATT_VTILE:
            for (int c0 = 0; c0 < dh; c0 += Cfg::C) {
                ISEG_PRAGMA(HLS loop_tripcount min=1 max=8)
                const int cols = dh - c0 < Cfg::C ? dh - c0 : Cfg::C;
                const long vrow = voff + long(c0 / Cfg::C) * T;
            ATT_PV_STEP:
                for (int k = 0; k < T; ++k) {
                    ISEG_PRAGMA(HLS loop_tripcount min=1 max=1174)
                    ISEG_PRAGMA(HLS PIPELINE II=2)
                    array_step<Cfg>(g, g.a[0], kv[vrow + k], k);
                }
                ISEG_CYCLES(g.cycles, 2L * T + kPipeDepth);
                acc_to_drain<Cfg>(g);
            ATT_O_STEP:
                for (int s2 = 0; s2 < dsteps; ++s2) {
                    ISEG_PRAGMA(HLS PIPELINE II=1)
                ATT_O_LANE:
                    for (int l = 0; l < Cfg::OUT_LANES; ++l) {
                        const int e = s2 * Cfg::OUT_LANES + l;
                        const int r = e / Cfg::C, c = e % Cfg::C;
                        if (r < rows && c < cols) {
                            const int ch = h * dh + c0 + c;
                            scratch[d.out + long(t0 + r) * d.out_stride + ch] =
                                uint8_t(requant(g.dr[r][c], g.rq2[ch], 8) & 0xff);
                        }
                    }
                }
                ISEG_CYCLES(g.cycles, dsteps + kPipeDepth);
            }
        }
    }
}

}  // namespace iseg
