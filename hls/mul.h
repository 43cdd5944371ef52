// mul.h -- THE lane multipliers: every multiply of two run-time values outside the GEMM array goes
// through mul_dsp or mul_fabric, with its operands narrowed to their PROVEN widths, so the HLS tool
// builds a multiplier of that size (not the 64 x 64 one that int64_t arithmetic asks for), bound to
// DSP slices or to LUTs by a BIND_OP pragma. Multiplications by compile-time constants (shift-add
// networks) and address arithmetic are not lane multipliers.
//
//   mul_dsp<A, B>(a, b)      a in A signed bits, b in B signed bits -> the exact product, on DSPs
//   mul_fabric<A, B>(a, b)   the same on LUTs (BIND_OP impl=fabric)
//   mul_lane<A, B, FAB>(a, b)  a small multiplier whose binding the planner chose for the board
//                              (Widths::SMALL_FABRIC: 1 = LUTs where DSPs are the scarcer resource)
//
// Widths are signed bit counts, sign included (an unsigned U-bit value needs U + 1). They are either
// structural (numerics.md bounds that hold for every checkpoint: the constants below) or per model
// (`struct Widths` of the generated Cfg, computed by generator/plan.py from the checkpoint's
// constants and shapes). In C-simulation narrow() checks every operand against its width
// (ISEG_CHECK: a width violation stops the run with an error, it never wraps silently); the product
// of ap_int<A> and ap_int<B> is ap_int<A + B>, exact. generator/estimate.py lists every call below
// with its widths and binding (estimate.multipliers; tests/hls/test_hls_static.py checks that the
// list and the calls agree).
#pragma once

#include "intmath.h"

namespace iseg {

// ---- structural widths (numerics.md), signed bits --------------------------------------------
static constexpr int kRqMBits = 32;      // requant m: |m| < 2^31
static constexpr int kI8Bits = 8;        // int8 activations (GELU input x)
static constexpr int kSigBits = 8;       // GELU sig in [0, 127]
static constexpr int kI16Bits = 16;      // int16 residual stream / LayerNorm input / add operands
static constexpr int kGeluYBits = 15;    // GELU output y = x * sig: |y| <= 128 * 127 < 2^14
static constexpr int kLnYBits = 18;      // LayerNorm y = x - mean, x and mean int16: |y| < 2^16
static constexpr int kLnFBits = 32;      // LayerNorm f = (2^31 - 1) // sd, sd >= 1
static constexpr int kLnZBits = 31;      // LayerNorm z = (y * f) >> 1 in [-2^30, 2^30 - 1] (|y| <= sd)
static constexpr int kShexpQBits = 7;    // shexp quotient q in [0, kShexpNMax = 32]
static constexpr int kLnKBits = 12;      // LayerNorm channel count K <= 2047 (engine: CMAX)

// Worst-case per-model widths: valid for any checkpoint the exporter accepts. A Cfg without a
// `struct Widths` (the unit-test harness) gets these.
struct DefaultWidths {
    static constexpr int ACC = 33;        // acc + bias of a GEMM output: two int32
    static constexpr int SCORE = 32;      // Q.K^T accumulator (int32)
    static constexpr int PV = 32;         // P.V requant input (P.V) << r, on the 2^-15 grid (int32)
    static constexpr int ADD_M = 32;      // int_add multipliers ma, mb (int32)
    static constexpr int SM_BASE = 33;    // Shiftmax exp mantissa, <= |x0| (x0 int32)
    static constexpr int SM_F = 48;       // Shiftmax reciprocal (2^47 - 1) // S
    static constexpr int SM_X0 = 33;      // Shiftmax x0 (int32, negative): |x0| <= 2^31
    static constexpr int GELU_BASE = 33;  // GELU exp mantissa, <= |x0|
    static constexpr int GELU_F = 32;     // GELU reciprocal (2^31 - 1) // S
    static constexpr int GELU_X0 = 33;    // GELU x0
    static constexpr int ARR = 32;        // the GEMM array's accumulators (gemm.h acc_t): int32
    static constexpr int SMALL_FABRIC = 0;  // mul_lane binding: 0 DSPs, 1 LUTs
};

// Signed bits of the values in [-v, v] (v >= 0), for structural widths computed from Cfg sizes.
constexpr int signed_bits_for(int64_t v) {
    int b = 1;
    while (v > 0) {
        v >>= 1;
        ++b;
    }
    return b;
}

// Cfg::Widths if the Cfg has one, else DefaultWidths (C++14 detection).
template <class T>
struct iseg_void {
    typedef void type;
};
template <class Cfg, class = void>
struct widths_of {
    typedef DefaultWidths type;
};
template <class Cfg>
struct widths_of<Cfg, typename iseg_void<typename Cfg::Widths>::type> {
    typedef typename Cfg::Widths type;
};

// True if v fits in `bits` signed bits.
inline bool fits_signed(int64_t v, int bits) {
    if (bits >= 64) return true;
    const int64_t hi = (int64_t(1) << (bits - 1)) - 1;
    return v >= -hi - 1 && v <= hi;
}

// v as an N-bit signed value; C-simulation checks that it fits (its proof held for this input).
template <int N>
inline typename sbits<N>::type narrow(int64_t v) {
    ISEG_PRAGMA(HLS INLINE)
    static_assert(N >= 2 && N <= 64, "narrow<N>: 2..64 bits");
    ISEG_CHECK(fits_signed(v, N), "lane multiplier operand exceeds its proven width (mul.h)");
    return typename sbits<N>::type(v);
}

template <int A, int B>
inline int64_t mul_dsp(int64_t a, int64_t b) {
    ISEG_PRAGMA(HLS INLINE)
    static_assert(A + B <= 96, "mul_dsp: product too wide");
    const typename sbits<A + B>::type p = narrow<A>(a) * narrow<B>(b);
    ISEG_PRAGMA(HLS BIND_OP variable=p op=mul impl=dsp)
    return int64_t(p);
}

template <int A, int B>
inline int64_t mul_fabric(int64_t a, int64_t b) {
    ISEG_PRAGMA(HLS INLINE)
    static_assert(A + B <= 96, "mul_fabric: product too wide");
    const typename sbits<A + B>::type p = narrow<A>(a) * narrow<B>(b);
    ISEG_PRAGMA(HLS BIND_OP variable=p op=mul impl=fabric)
    return int64_t(p);
}

// mul_lane: mul_dsp (FAB = 0) or mul_fabric (FAB = 1).
template <int A, int B, int FAB>
struct LaneMul;
template <int A, int B>
struct LaneMul<A, B, 0> {
    static int64_t run(int64_t a, int64_t b) {
        ISEG_PRAGMA(HLS INLINE)
        return mul_dsp<A, B>(a, b);
    }
};
template <int A, int B>
struct LaneMul<A, B, 1> {
    static int64_t run(int64_t a, int64_t b) {
        ISEG_PRAGMA(HLS INLINE)
        return mul_fabric<A, B>(a, b);
    }
};
template <int A, int B, int FAB>
inline int64_t mul_lane(int64_t a, int64_t b) {
    ISEG_PRAGMA(HLS INLINE)
    return LaneMul<A, B, FAB>::run(a, b);
}

// ---- the packed array multiplier (AMD WP486) ----------------------------------------------------
// Two products of one DSP48E2 that share their right operand: a_hi and a_lo in [-128, 255] (int8, u8 or a byte
// of a u15 P: 9 signed bits, never below -128; gemm.h array_step on a packing array, Cfg::PACK 2), w in 8 signed
// bits. The A port takes a_hi * 2^18 + a_lo, which fits its 27 signed bits for that range (not for a_hi = -256),
// so the 35-bit product is a_hi * w * 2^18 + a_lo * w. |a_lo * w| <= 255 * 128 < 2^17 fits 18 signed bits, so the low field, sign-extended, is a_lo * w exactly, and the high field, once that sign is
// borrowed back, a_hi * w. An HLS tool does not pack two multiplies into one DSP on its own; written this way
// it sees one 27 x 8 product (BIND_OP impl=dsp) and a few LUTs of split. Exact in C-simulation too (int64).
struct Pack2 {
    int32_t hi, lo;
};

// The packed left operand of a row pair, a_hi * 2^18 + a_lo (27 signed bits for a_hi, a_lo in [-128, 255]): formed
// once a step per row pair and shared by every column's chain (gemm.h array_step).
inline typename arr_wide<27>::type pack_a27(int32_t a_hi, int32_t a_lo) {
    ISEG_PRAGMA(HLS INLINE)
    typedef typename arr_wide<27>::type a27_t;
    return a27_t(a_hi) * 262144 + a27_t(a_lo);  // (a multiply: a_hi may be < 0)
}

// The split of a packed product or of a chain's sum of them: the low 18 bits, sign-extended, are the low field; the
// high field is what is left once that sign is borrowed back (a few LUTs).
template <class P>
inline Pack2 split_pack2(const P& p) {
    ISEG_PRAGMA(HLS INLINE)
    const P lo = ((p & 0x3FFFF) ^ 0x20000) - 0x20000;
    Pack2 r = {int32_t((p - lo) >> 18), int32_t(lo)};
    return r;
}

inline Pack2 mul_pack2(int32_t a_hi, int32_t a_lo, int32_t w) {
    ISEG_PRAGMA(HLS INLINE)
    typedef typename arr_wide<35>::type p35_t;
    ISEG_CHECK(a_hi >= -128 && a_hi <= 255 && a_lo >= -128 && a_lo <= 255 && fits_signed(w, 8),
               "packed array multiplier: an operand outside [-128, 255] x int8");
    const p35_t p = pack_a27(a_hi, a_lo) * typename arr_wide<8>::type(w);  // 27 x 8 bits: 35 bits, one DSP48E2
    ISEG_PRAGMA(HLS BIND_OP variable=p op=mul impl=dsp)
    return split_pack2(p);
}

// A chain of KD packed products that add before the split (Cfg::KD, gemm.h array_step): on DSP48E2 a PCIN cascade,
// each DSP's P = its 27 x 8 product + the previous one's P, split once at the end. The low field's sum of KD products,
// each |a_lo * w| <= 255 * 128 (the operands' checked ranges), stays within 18 signed bits for KD <= 4
// (4 * 32640 < 2^17: the static_assert), so the split is exact; C-simulation sums the packed products as the chain
// does (int64: 48 bits at most). ap: pack_a27 of the row pair's operands, whose ranges are the caller's to check
// (gemm.h array_step: once a step for every row and lane, not once per product: C-simulation's time).
template <int KD>
inline Pack2 mul_pack2_chain(const typename arr_wide<27>::type (&ap)[KD], const int32_t (&w)[KD]) {
    ISEG_PRAGMA(HLS INLINE)
    static_assert(KD >= 1 && KD * 255 * 128 < (1 << 17), "a packed chain's low field: at most 4 products in 18 bits");
    typedef typename arr_wide<35>::type p35_t;
    typedef typename arr_wide<48>::type p48_t;
    p48_t p = 0;
PACK_CHAIN:
    for (int u = 0; u < KD; ++u) {
        ISEG_PRAGMA(HLS UNROLL)
        const p35_t m = ap[u] * typename arr_wide<8>::type(w[u]);  // one DSP48E2 of the chain: 27 x 8 bits
        ISEG_PRAGMA(HLS BIND_OP variable=m op=mul impl=dsp)
        p += p48_t(m);  // + PCIN, the previous DSP's P
    }
    return split_pack2(p);
}

}  // namespace iseg
