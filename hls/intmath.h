// intmath.h -- the integer helpers every kernel shares (numerics.md §1), each defined once:
// saturation to b bits, floor division, and little-endian loads/stores of the byte-addressed
// weights blob and activation scratch (byte assembly: portable, no aliasing, no alignment needs).
#pragma once

#include "compat.h"

namespace iseg {

static constexpr int64_t kInt32Max = 2147483647LL;

// gcd(a, b) at compile time: the granule of puts of two sizes (a loop: no recursion in synthesisable sources).
constexpr int gcd_of(int a, int b) {
    while (b != 0) {
        const int r = a % b;
        a = b;
        b = r;
    }
    return a;
}

// clamp_b(x): saturate to the signed `bits`-bit range [-2^(bits-1), 2^(bits-1) - 1]; bits <= 32.
inline int32_t clamp_bits(int64_t x, int bits) {
    const int64_t hi = (int64_t(1) << (bits - 1)) - 1;
    const int64_t lo = -hi - 1;
    return int32_t(x < lo ? lo : (x > hi ? hi : x));
}

// Python's `a // b` for b > 0 (C++ `/` truncates toward zero: wrong for negative a).
inline int64_t floor_div_pos(int64_t a, int64_t b) {
    int64_t q = a / b;
    if (a % b < 0) --q;
    return q;
}

// round_half_even(s / c) for c > 0, exactly (numerics.md §5.3, the LayerNorm mean). A 64-bit divider: no datapath
// uses it; the LayerNorm loader computes the mean by a reciprocal multiply (layernorm.h) and C-simulation checks
// that multiply against this, row by row (gemm.h ln_step, ISEG_CHECK: nothing in synthesis).
inline int64_t round_half_even_div(int64_t s, int64_t c) {
    int64_t q = s / c;
    int64_t r = s % c;
    if (r < 0) {  // floor semantics: 0 <= r < c
        --q;
        r += c;
    }
    const bool up = (2 * r > c) || (2 * r == c && (q & 1) != 0);
    return q + (up ? 1 : 0);
}

// Little-endian loads/stores (the blob and scratch layout of docs/hls.md).
inline int16_t ld_i16(const uint8_t* p) { return int16_t(uint16_t(p[0] | (uint16_t(p[1]) << 8))); }
inline int32_t ld_i32(const uint8_t* p) {
    return int32_t(uint32_t(p[0]) | (uint32_t(p[1]) << 8) | (uint32_t(p[2]) << 16) | (uint32_t(p[3]) << 24));
}
inline int64_t ld_i64(const uint8_t* p) { return int64_t(uint64_t(uint32_t(ld_i32(p))) | (uint64_t(uint32_t(ld_i32(p + 4))) << 32)); }
inline void st_i16(uint8_t* p, int32_t v) {
    p[0] = uint8_t(v & 0xff);
    p[1] = uint8_t((v >> 8) & 0xff);
}
// Activation element of 8 or 16 bits (the only widths stored in scratch).
inline int32_t ld_act(const uint8_t* p, int bytes) { return bytes == 1 ? int32_t(int8_t(p[0])) : int32_t(ld_i16(p)); }
inline void st_act(uint8_t* p, int bytes, int32_t v) {
    if (bytes == 1)
        p[0] = uint8_t(v & 0xff);
    else
        st_i16(p, v);
}

}  // namespace iseg
