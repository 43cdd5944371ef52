// shexp.h -- the shift exponential shared by Shiftmax and GELU (numerics.md §4).
//
//   t = x + (x >> 1) - (x >> 4);  t = max(t, n*x0);  q = t // x0;  r = t - x0*q
//   shexp = ((r >> 1) - x0) << (n - q)          ~ |x0| * 2^n * e^(x*s), below |x0| * 2^(n+1)
//
// Domain: x <= 0, x0 < 0, 0 <= n <= kShexpNMax. Since n*x0 <= t <= 0, q is in [0, n], so the
// division is computed as a count of comparisons (q = #{j in 1..n : j*x0 >= t}): a row of n
// comparators in hardware instead of a 64-bit divider, and the same integers as `//`. The
// saturation needs no n*x0 product: t < n*x0 exactly when all n comparators hold and t - n*x0 < 0,
// and then r = 0 (what the clamped t gives). The result is returned as a mantissa and a shift
// (shexp_parts: base in (0, |x0|], shift n - q), so that callers multiply the narrow mantissa and
// shift the product instead of multiplying the wide exp (mul.h).
#pragma once

#include "mul.h"

namespace iseg {

static constexpr int kShexpNMax = 32;  // headroom bits; Shiftmax uses 15, GELU 20 (lambda) or 23 (shift)

struct ShexpParts {
    int64_t base;  // (r >> 1) - x0, in (0, |x0|]
    int sh;        // n - q, in [0, n]
};

// X0B: signed bits of x0 (mul.h widths); FAB: the binding of the x0 * q multiplier (mul_lane).
template <int X0B, int FAB>
inline ShexpParts shexp_parts(int64_t x, int32_t x0, int n) {
    ISEG_PRAGMA(HLS INLINE)
    const int64_t t = x + (x >> 1) - (x >> 4);  // x * log2(e), log2(e) ~ 1.4375
    int q = 0;
SHEXP_Q:
    for (int j = 1; j <= kShexpNMax; ++j) {
        ISEG_PRAGMA(HLS UNROLL)
        q += (j <= n && int64_t(j) * x0 >= t) ? 1 : 0;  // j * x0: a constant multiple (shift-add)
    }
    int64_t r = t - mul_lane<X0B, kShexpQBits, FAB>(x0, q);  // in (x0, 0] unless saturated
    if (q == n && r < 0) r = 0;                            // t < n*x0: saturate at 2^-n
    ShexpParts e = {(r >> 1) - x0, n - q};                 // (r >> 1) - x0 > 0
    return e;
}

template <int X0B, int FAB>
inline int64_t shexp_w(int64_t x, int32_t x0, int n) {
    ISEG_PRAGMA(HLS INLINE)
    const ShexpParts e = shexp_parts<X0B, FAB>(x, x0, n);
    return e.base << e.sh;  // a left shift of a positive value
}

// Any x0 (int32).
inline int64_t shexp(int64_t x, int32_t x0, int n) { return shexp_w<DefaultWidths::SM_X0, DefaultWidths::SMALL_FABRIC>(x, x0, n); }

}  // namespace iseg
