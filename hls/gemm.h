// gemm.h -- the systolic int8 GEMM engine (numerics.md §3) and its fused output stage.
//
// The array: R x C multiply-accumulate PEs, output-stationary. For one output tile (R rows x C
// columns) the K loop feeds one column of the left operand (R values) and one row of the right
// operand (C values) per cycle to the fully unrolled PE grid; each PE keeps its int32
// accumulator. The left operand is 16 bits wide (int8 activations, or the u15 Shiftmax
// probabilities of P.V), the right operand int8. Every linear layer, Q.K^T, P.V and the mask
// product run on this one array (the engine passes the same GemmBuffers everywhere).
//
// Operands are staged in on-chip tile buffers by the loaders, which zero-fill the rows/columns
// beyond the matrix edge, so the array always computes a full tile and sizes need not be
// multiples of R or C. The output stage (gemm_out) fuses: + bias, per-channel RQ to 8 or 16
// bits, optional lambda-ShiftGELU + its own RQ_8, optional residual add (numerics.md §5.4).
//
// C-simulation speed: the K loop keeps the C-wide accumulator row innermost, contiguous int8
// weights and a broadcast activation, which g++ -O2/-O3 vectorises; there is no separate C-sim
// path.
#pragma once

#include "add.h"
#include "gelu.h"
#include "layer_desc.h"
#include "requant.h"

namespace iseg {

template <class Cfg>
struct GemmBuffers {
    static_assert(Cfg::R >= 1 && Cfg::C >= 1, "the array needs at least one row and one column");
    static_assert(Cfg::KMAX >= 1, "KMAX must be positive");
    int16_t a[Cfg::R][Cfg::KMAX];  // in: (R, K) left operand row block (int8 values or u15)
    int8_t b[Cfg::KMAX][Cfg::C];   // in: (K, C) right operand column tile
    int32_t acc[Cfg::R][Cfg::C];   // out: (R, C) accumulators
};

// Left operand rows from int8 memory. src: (rows, k) int8, row stride `stride` bytes.
template <class Cfg>
void gemm_load_a(GemmBuffers<Cfg>& g, const uint8_t* src, long stride, int rows, int k) {
GEMM_LOAD_A_R:
    for (int r = 0; r < Cfg::R; ++r) {
    GEMM_LOAD_A_K:
        for (int kk = 0; kk < k; ++kk) {
            ISEG_PRAGMA(HLS loop_tripcount min=1 max=768)
            ISEG_PRAGMA(HLS PIPELINE II=1)
            g.a[r][kk] = r < rows ? int16_t(int8_t(src[long(r) * stride + kk])) : int16_t(0);
        }
    }
}

// Right operand tile: element (kk, c) = src[kk*rs + c*cs], int8; columns >= cols are zero.
// Weights (K, N) row-major: rs = N, cs = 1. A transposed activation (e.g. K_h^T): rs = 1, cs = row stride.
template <class Cfg>
void gemm_load_b(GemmBuffers<Cfg>& g, const uint8_t* src, long rs, long cs, int cols, int k) {
GEMM_LOAD_B_K:
    for (int kk = 0; kk < k; ++kk) {
        ISEG_PRAGMA(HLS loop_tripcount min=1 max=768)
        ISEG_PRAGMA(HLS PIPELINE II=1)
    GEMM_LOAD_B_C:
        for (int c = 0; c < Cfg::C; ++c) {
            g.b[kk][c] = c < cols ? int8_t(src[long(kk) * rs + long(c) * cs]) : int8_t(0);
        }
    }
}

// THE array: acc = a(R, k) . b(k, C). in: g.a, g.b; out: g.acc (int32; the exporter proves
// |acc| < 2^31 from the shapes).
template <class Cfg>
void gemm_array(GemmBuffers<Cfg>& g, int k) {
    ISEG_PRAGMA(HLS INLINE off)
    ISEG_PRAGMA(HLS ARRAY_PARTITION variable=g.a dim=1 complete)
    ISEG_PRAGMA(HLS ARRAY_PARTITION variable=g.b dim=2 complete)
    ISEG_PRAGMA(HLS ARRAY_PARTITION variable=g.acc dim=0 complete)
GEMM_ZERO_R:
    for (int r = 0; r < Cfg::R; ++r) {
        ISEG_PRAGMA(HLS UNROLL)
    GEMM_ZERO_C:
        for (int c = 0; c < Cfg::C; ++c) g.acc[r][c] = 0;
    }
GEMM_K:
    for (int kk = 0; kk < k; ++kk) {
        ISEG_PRAGMA(HLS loop_tripcount min=1 max=768)
        ISEG_PRAGMA(HLS PIPELINE II=1)
    GEMM_R:
        for (int r = 0; r < Cfg::R; ++r) {
            const int32_t a = g.a[r][kk];
        GEMM_C:
            for (int c = 0; c < Cfg::C; ++c) g.acc[r][c] += a * int32_t(g.b[kk][c]);
        }
    }
}

// The fused output stage of one element (column c of a LINEAR / PATCH_EMBED / MASK_PRODUCT):
// RQ_out_bits(acc + bias), then [RQ_8(lambda-GELU(.)) with rq2] or [int_add(res, .)].
// `res` is the residual operand (i16), used only with F_RESIDUAL.
inline int32_t gemm_out(int32_t acc, int32_t bias, const RqParams& rq1, const RqParams& rq2,
                        const LayerDesc& d, int32_t res) {
    ISEG_PRAGMA(HLS INLINE)
    int32_t y = requant(int64_t(acc) + bias, rq1, d.out_bits);
    if (d.flags & F_GELU) y = requant(gelu_lambda(y, d.gelu), rq2, 8);
    if (d.flags & F_RESIDUAL) y = int_add(res, y, d.ma, d.mb, d.ea, 16);
    return y;
}

// A whole GEMM layer: out (T, N) = stage(A (T, K) . B (K, N)).
// in: A int8 at scratch + d.in (row stride d.in_stride); B int8 at b_src, element (k, n) at
// b_src[k*b_rs + n*b_cs]; bias int32 (N,) at blob + d.b unless d.b < 0; residual i16 at
// scratch + d.in2 (row stride d.in2_stride) with F_RESIDUAL.
// out: (T, N) int8/int16 at scratch + d.out, row stride d.out_stride.
// Loop order: column tiles outer (each weight byte is fetched once per layer), row blocks inner.
template <class Cfg>
void gemm_layer(const LayerDesc& d, const uint8_t* blob, uint8_t* scratch, GemmBuffers<Cfg>& g,
                const uint8_t* b_src, long b_rs, long b_cs) {
    const int bytes = d.out_bits / 8;
    int32_t bias[Cfg::C];
    RqParams rq1[Cfg::C], rq2[Cfg::C];
GEMM_NT:
    for (int n0 = 0; n0 < d.N; n0 += Cfg::C) {
        ISEG_PRAGMA(HLS loop_tripcount min=1 max=48)
        const int cols = d.N - n0 < Cfg::C ? d.N - n0 : Cfg::C;
        gemm_load_b<Cfg>(g, b_src + long(n0) * b_cs, b_rs, b_cs, cols, d.K);
    GEMM_CONSTS:
        for (int c = 0; c < Cfg::C; ++c) {
            const int ch = n0 + c < d.N ? n0 + c : d.N - 1;
            bias[c] = d.b >= 0 ? ld_i32(blob + d.b + 4L * ch) : 0;
            rq1[c] = rq_channel(d.rq, blob, ch);
            rq2[c] = rq_channel(d.rq2, blob, ch);
        }
    GEMM_MT:
        for (int t0 = 0; t0 < d.T; t0 += Cfg::R) {
            ISEG_PRAGMA(HLS loop_tripcount min=1 max=65)
            const int rows = d.T - t0 < Cfg::R ? d.T - t0 : Cfg::R;
            gemm_load_a<Cfg>(g, scratch + d.in + long(t0) * d.in_stride, d.in_stride, rows, d.K);
            gemm_array<Cfg>(g, d.K);
        GEMM_OUT_R:
            for (int r = 0; r < rows; ++r) {
                uint8_t* orow = scratch + d.out + (long(t0 + r) * d.out_stride + n0) * bytes;
                const uint8_t* rrow = scratch + d.in2 + (long(t0 + r) * d.in2_stride + n0) * 2;
            GEMM_OUT_C:
                for (int c = 0; c < cols; ++c) {
                    ISEG_PRAGMA(HLS PIPELINE II=1)
                    const int32_t res = (d.flags & F_RESIDUAL) ? int32_t(ld_i16(rrow + 2 * c)) : 0;
                    st_act(orow + c * bytes, bytes, gemm_out(g.acc[r][c], bias[c], rq1[c], rq2[c], d, res));
                }
            }
        }
    }
}

}  // namespace iseg
