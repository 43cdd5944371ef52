// layer_desc.h -- the layer table the engine runs: one LayerDesc per op of the graph.
//
// The generator emits the table as a `constexpr iseg::LayerDesc[]` in a generated header (and
// the C-sim tests build it at run time with the same binary layout). All offsets are BYTE
// offsets: `in`/`in2`/`out` into the activation scratch, `w`/`b`/`cst` and RqDesc::tab into the
// weights blob; -1 means "none". Strides are in ELEMENTS of the buffer they describe.
// docs/hls.md has the per-op table of which field means what; the summary is here:
//
//   PATCH_EMBED     pixels (img_h, img_w) from the stream -> im2col staging (T, K) int8 at `in`,
//                   K = 3*patch^2, then out = RQ_16(staging . W + b) like LINEAR (T, N) at `out`
//                   with n_prefix = 1 the embedding add is fused: out row 1 + t = int_add(token t, pos row
//                   1 + t at `in2`), row 0 = int_add(cst, pos row 0)  (ma, mb, ea), (T + 1, N) at `out`
//   EMBED_ADD       out (T, N) i16 = int_add([cst rows 0..n_prefix) ; in rows], pos at `b`)  (ma, mb, ea)
//   LAYERNORM       out (T, N) out_bits = RQ(ILN(in (T, N) i16)), per-channel gamma/beta in rq;
//                   mean_m, mean_sh: the mean's reciprocal of N (layernorm.h, numerics.mean_reciprocal)
//   LINEAR          out (T, N) = RQ_out_bits(in (T, K) i8 . W (K, N) i8 at `w` + b i32 at `b`)
//                   flags: F_GELU  -> then RQ_8(lambda-GELU(.)), a table at cst (out_bits must be 8)
//                          F_RESIDUAL -> then int_add(in2 (T, N) i16, .) (out_bits must be 16;
//                          out may equal in2: the update is element-wise in place)
//   ATTENTION       in (T, 3D) i8 = [q | k | v], D = heads*d_head -> out (T, D) i8
//                   per head: P = Shiftmax(RQ_8(q_h k_h^T), sm_x0, sm_variant) with rq (scalar),
//                   out_h = RQ_8((P . v_h) << r) with rq2 (r: P's per-row shift, 0 unless precise8)
//   ADD             out (T, N) i16 = int_add(in i16, in2 i16)   (ma, mb, ea)
//   MASK_PRODUCT    out (T, N) out_bits = RQ(in (T, K) i8 . in2 (N, K) i8 ^T)   (no bias)
//   ARGMAX_UPSAMPLE in (T, N) i16 logits, T = (img_h/patch)*(img_w/patch) -> labels stream
//                   (img_h, img_w) u8 raster order
//   GELU            out (T, N) i8 = RQ_8(GELU(in (T, N) i8)) with rq; either variant
//   COPY_CONST      out (T, N) elements of out_bits = blob rows at `cst`, in_stride elements apart (whole beats)
#pragma once

#include "gelu.h"
#include "requant.h"

namespace iseg {

enum Op : int32_t {
    OP_PATCH_EMBED = 1,
    OP_EMBED_ADD = 2,
    OP_LAYERNORM = 3,
    OP_LINEAR = 4,
    OP_ATTENTION = 5,
    OP_ADD = 6,
    OP_MASK_PRODUCT = 7,
    OP_ARGMAX_UPSAMPLE = 8,
    OP_GELU = 9,
    OP_COPY_CONST = 10,
};

enum LayerFlags : int32_t {
    F_GELU = 1,      // LINEAR: fused lambda-ShiftGELU + RQ_8 on the output path (a table at cst)
    F_RESIDUAL = 2,  // LINEAR: fused residual add with in2 (ma, mb, ea) on the output path
};

// Field order is the binary layout (natural alignment, no implicit padding: checked below and
// mirrored by tests/hls/_hls_harness.py). Unused fields are 0 (offsets -1).
struct LayerDesc {
    // what
    int32_t op;
    int32_t flags;
    // dims
    int32_t T;         // rows (tokens)
    int32_t K;         // reduction length
    int32_t N;         // output columns / channels
    int32_t heads;
    int32_t d_head;
    int32_t n_prefix;  // EMBED_ADD: constant rows (cls) before the scratch rows
    int32_t img_h;
    int32_t img_w;
    int32_t patch;
    int32_t out_bits;  // stored output width: 8 or 16
    // scratch (activation) byte offsets and element strides
    int32_t in;
    int32_t in_stride;
    int32_t in2;
    int32_t in2_stride;
    int32_t out;
    int32_t out_stride;
    // blob byte offsets
    int32_t w;    // int8 (K, N) weights in tiles of C columns (K rows of C bytes each, zero past N)
    int32_t b;    // int32 (N,) bias; EMBED_ADD: int16 (T, N) position embedding
    int32_t cst;  // EMBED_ADD / PATCH_EMBED: int16 (n_prefix, N) folded rows int_add(cls, pos[:n_prefix]); COPY_CONST: source rows;
                  // LINEAR with F_GELU: int8 (256,) RQ_8(lambda-GELU(x)) for x = -128..127 (gemm.h load_gelu_table)
    // Shiftmax
    int32_t sm_variant;  // SmVariant (shiftmax.h): SM_PRECISE 0, SM_IVIT 1, SM_PRECISE8 2 (u8 + row shift)
    int32_t sm_x0;
    // integer add (EMBED_ADD, ADD, fused residual)
    int32_t ma;
    int32_t mb;
    int32_t ea;
    // LAYERNORM: the mean's exact reciprocal of N, computed by the generator (numerics.mean_reciprocal): floor(n / N)
    // = (n * mean_m) >> mean_sh for the folded row sums n (layernorm.h), so the loader needs no divider for it
    int32_t mean_m;
    int32_t mean_sh;
    // GELU constants (fused F_GELU or GELU op)
    GeluParams gelu;
    // requant constants
    RqDesc rq;   // main output requant (ATTENTION: the score requant, scalar)
    RqDesc rq2;  // ATTENTION: the P.V output requant
};

static_assert(sizeof(GeluParams) == 32, "GeluParams layout changed: update docs/hls.md and the mirrors");
static_assert(sizeof(RqDesc) == 24, "RqDesc layout changed: update docs/hls.md and the mirrors");
static_assert(sizeof(LayerDesc) == 28 * 4 + 32 + 2 * 24, "LayerDesc layout changed: update docs/hls.md");

// A table entry with every offset "none" (-1) and every other field 0 (mean_m 0: no reciprocal, which check_layer
// refuses on a LAYERNORM row): generated tables start from it and set what the op uses (C++14 constexpr):
//     constexpr iseg::LayerDesc layer_3() { iseg::LayerDesc d = iseg::empty_layer(); d.op = iseg::OP_LINEAR; ...; return d; }
constexpr LayerDesc empty_layer() {
    LayerDesc d{};
    d.in = d.in2 = d.out = -1;
    d.w = d.b = d.cst = -1;
    d.rq.tab = -1;
    d.rq2.tab = -1;
    return d;
}

// Bytes per stored output element of a layer (what the trace hands out).
inline int layer_out_elem_bytes(const LayerDesc& d) {
    switch (d.op) {
        case OP_EMBED_ADD:
        case OP_ADD:
            return 2;
        case OP_ATTENTION:
        case OP_GELU:
            return 1;
        case OP_ARGMAX_UPSAMPLE:
            return 0;  // the output is the label stream, not scratch
        default:
            return d.out_bits / 8;
    }
}

}  // namespace iseg
