// shexp.h -- the shift exponential shared by Shiftmax and GELU (numerics.md §4).
//
//   t = x + (x >> 1) - (x >> 4);  t = max(t, n*x0);  q = t // x0;  r = t - x0*q
//   shexp = ((r >> 1) - x0) << (n - q)          ~ |x0| * 2^n * e^(x*s), below |x0| * 2^(n+1)
//
// Domain: x <= 0, x0 < 0, 0 <= n <= kShexpNMax. Since n*x0 <= t <= 0, q is in [0, n], so the
// division is computed as a count of comparisons (q = #{j in 1..n : j*x0 >= t}): a row of n
// comparators in hardware instead of a 64-bit divider, and the same integers as `//`.
#pragma once

#include "intmath.h"

namespace iseg {

static constexpr int kShexpNMax = 32;  // headroom bits; Shiftmax uses 15, GELU 20 (lambda) or 23 (shift)

inline int64_t shexp(int64_t x, int32_t x0, int n) {
    ISEG_PRAGMA(HLS INLINE)
    int64_t t = x + (x >> 1) - (x >> 4);  // x * log2(e), log2(e) ~ 1.4375
    const int64_t lo = int64_t(n) * x0;   // saturate at 2^-n
    if (t < lo) t = lo;
    int q = 0;
SHEXP_Q:
    for (int j = 1; j <= kShexpNMax; ++j) {
        ISEG_PRAGMA(HLS UNROLL)
        q += (j <= n && int64_t(j) * x0 >= t) ? 1 : 0;
    }
    const int64_t r = t - int64_t(x0) * q;  // in (x0, 0]
    return ((r >> 1) - x0) << (n - q);      // (r >> 1) - x0 > 0: a left shift of a positive value
}

}  // namespace iseg
