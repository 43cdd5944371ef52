// requant.h -- dyadic requantization RQ_b (numerics.md §2), scalar or per channel.
//
//   RQ_b(z, m, e, o) = clamp_b((z*m + o + (1 << (e-1))) >> e)      all in int64
//
// Bounds (the exporter's obligation, numerics.md §2): |z| < 2^31, |m| < 2^31, |o| < 2^61,
// e in [1, 62], so the int64 sum cannot overflow.
#pragma once

#include "mul.h"

namespace iseg {

// One (m, e, o) triple.
struct RqParams {
    int32_t m;
    int32_t e;
    int64_t o;
};

// THE requant: every kernel's output stage calls this and nothing else. ZB: the proven signed
// width of z at the call site (mul.h), so z * m is a ZB x 32 multiplier on DSPs.
template <int ZB>
inline int32_t requant_w(int64_t z, const RqParams& p, int bits) {
    ISEG_PRAGMA(HLS INLINE)
    const int64_t y = (mul_dsp<ZB, kRqMBits>(z, p.m) + p.o + (int64_t(1) << (p.e - 1))) >> p.e;
    return clamp_bits(y, bits);
}

// Any z with |z| < 2^32.
inline int32_t requant(int64_t z, const RqParams& p, int bits) { return requant_w<33>(z, p, bits); }

// Where a layer's requant constants live: scalar fields (per tensor), or a per-channel table
// in the weights blob (`tab` >= 0: byte offset of C records of 16 bytes each,
// {int32 m, int32 e, int64 o}, little-endian; see docs/hls.md).
struct RqDesc {
    int64_t o;    // scalar offset (per-tensor case)
    int32_t m;    // scalar multiplier
    int32_t e;    // scalar shift
    int32_t tab;  // blob byte offset of the per-channel records, or -1 for per-tensor
    int32_t pad_;
};

static constexpr int kRqRecordBytes = 16;

// One 16-byte record {int32 m, int32 e, int64 o}.
inline RqParams rq_record(const uint8_t* rec) {
    RqParams p;
    p.m = ld_i32(rec);
    p.e = ld_i32(rec + 4);
    p.o = ld_i64(rec + 8);
    return p;
}

// The scalar record of a requant (per tensor; a per-channel one's table is read per channel).
inline RqParams rq_scalar_of(const RqDesc& d) {
    RqParams p;
    p.m = d.m;
    p.e = d.e;
    p.o = d.o;
    return p;
}

// The (m, e, o) of channel c (blob may be null for a per-tensor requant).
inline RqParams rq_channel(const RqDesc& d, const uint8_t* blob, int c) {
    if (d.tab >= 0) return rq_record(blob + d.tab + long(c) * kRqRecordBytes);
    return rq_scalar_of(d);
}

}  // namespace iseg
