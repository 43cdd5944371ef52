// axi.h -- the m_axi ports as arrays of whole beats (docs/hls.md, "m_axi ports").
//
// Why: through a uint8_t* port every byte the C++ reads or writes is a request of its own. Vitis widens only the
// bursts it infers across the iterations of a simple loop, and it infers none from a conditional access at a
// run-time offset inside a pipelined iteration, which is what every loader and lane of the engine makes: a
// GEMM_STEP iteration made 16-48 requests per bundle, an II of 16-48 where the estimate charges 1 (docs/hls.md,
// items 3 and 11). So the ports are arrays of beats (compat.h beat_of: ap_uint<8 AXI_BYTES> in synthesis) and
// every access is one request for one whole beat:
//   beat_read   (ISEG_BEAT_RD)   the beat that holds a span; the caller takes its bytes (beat_i8, beat_i16 ...)
//   beat_write  (ISEG_BEAT_WR)   a whole beat the writer filled itself, at a beat boundary
//   RdCache     (ISEG_CACHE_RD)  the same, remembered: a beat is requested only when the span moves to another
//                                one (the row ops, which take 1-2 bytes per iteration)
//   WrStage     (ISEG_STAGE_PUT) a store: the bytes go into a staged beat, which is written whole when a put
//                                moves on to another beat or runs past its end, and by ISEG_STAGE_FLUSH at the end
// The layout makes whole beats safe (generator/plan.py _padded, estimate.axi_beat): rows start on a beat and own
// their last one (the padding past a row's elements is written, never read), and every store stream starts on a
// beat, so a staged beat holds only bytes of the stream that writes it. A put covers bytes [off, off + n) with n
// at most a beat; it may cross into the next beat (the pixel path's 3-byte pixels), but not while it also leaves
// the staged one (two writes in one call): C-simulation checks both, and every span against its beat.
//
// Each macro expansion is one access site (ISEG_SITE: the static demand of iseg_ports.h counts them); in
// C-simulation each request goes through the m_axi check (ISEG_AXI_REQ) and each byte used into the DDR traffic
// the estimate is compared with (ISEG_AXI_MOVED).
#pragma once

#include "compat.h"

namespace iseg {

// The beat type of a Cfg's ports.
template <class Cfg>
struct axi_beat {
    typedef typename beat_of<Cfg::AXI_BYTES>::type type;
};

template <class Cfg>
using beat_t = typename axi_beat<Cfg>::type;

// x[0, N) = bytes [o, o + N) of v, o a multiple of U: the B / U positions are enumerated, so each byte of x is a
// mux of B / U inputs at constant indices (a run-time byte index would be a B-input mux per byte). Bytes of x past
// the end of the beat are left as they are (a span never reaches them: beat_read checks).
template <int U, class T, int N>
inline void beat_take(const T& v, int o, uint8_t (&x)[N]) {
    ISEG_PRAGMA(HLS INLINE)
    constexpr int B = beat_bytes<T>::value;
    static_assert(U >= 1 && B % U == 0, "beat_take: the granule divides the beat");
    ISEG_CHECK(o >= 0 && o < B && o % U == 0, "beat_take: a position that is not a multiple of its granule");
TAKE_AT:
    for (int k = 0; k < B; k += U) {
        ISEG_PRAGMA(HLS UNROLL)
        if (o == k) {
        TAKE_BYTE:
            for (int j = 0; j < N; ++j) {
                ISEG_PRAGMA(HLS UNROLL)
                if (k + j < B) x[j] = beat_byte(v, k + j);
            }
        }
    }
}

template <class T>
inline int8_t beat_i8(const T& v, int j) {
    ISEG_PRAGMA(HLS INLINE)
    return int8_t(beat_byte(v, j));
}
template <class T>
inline int16_t beat_i16(const T& v, int j) {
    ISEG_PRAGMA(HLS INLINE)
    return int16_t(uint16_t(uint16_t(beat_byte(v, j)) | uint16_t(uint16_t(beat_byte(v, j + 1)) << 8)));
}
template <class T>
inline int32_t beat_i32(const T& v, int j) {
    ISEG_PRAGMA(HLS INLINE)
    return int32_t(uint32_t(beat_byte(v, j)) | (uint32_t(beat_byte(v, j + 1)) << 8) |
                   (uint32_t(beat_byte(v, j + 2)) << 16) | (uint32_t(beat_byte(v, j + 3)) << 24));
}
// An activation element of 8 or 16 bits at byte j.
template <class T>
inline int32_t beat_act(const T& v, int j, int bytes) {
    ISEG_PRAGMA(HLS INLINE)
    return bytes == 1 ? int32_t(beat_i8(v, j)) : int32_t(beat_i16(v, j));
}
// The bytes of an element of 8 or 16 bits at x[j], x[j + 1] (little-endian), for a put.
template <int N>
inline void put_act(uint8_t (&x)[N], int j, int bytes, int32_t v) {
    ISEG_PRAGMA(HLS INLINE)
    x[j] = uint8_t(v & 0xff);
    if (bytes == 2) x[j + 1] = uint8_t((v >> 8) & 0xff);
}

// The beat of `port` that holds bytes [off, off + n): one request.
template <class T>
inline T beat_read(const T* port, long off, int n, int bundle, const void* site) {
    ISEG_PRAGMA(HLS INLINE)
    constexpr int B = beat_bytes<T>::value;
    static_assert(B >= 1 && (B & (B - 1)) == 0, "a beat is a power of two bytes");
    const int32_t i = int32_t((unsigned long)off / B);
    ISEG_CHECK(off >= 0 && off / B < 0x7fffffffL && n >= 1 && int(off % B) + n <= B,
               "m_axi read: a span leaves its beat (plan._padded, estimate.axi_beat)");
    ISEG_AXI_REQ(bundle, false, port + i, site);
    ISEG_AXI_MOVED(bundle, false, n);
    (void)n, (void)bundle, (void)site;
    return port[i];
}

// A whole beat written at byte `off`, a beat boundary (a writer that fills whole beats itself: the GELU row op's
// store pass); n: the bytes of it that are the writer's (the rest is its row's padding).
template <class T>
inline void beat_write(T* port, long off, const T& v, int n, int bundle, const void* site) {
    ISEG_PRAGMA(HLS INLINE)
    constexpr int B = beat_bytes<T>::value;
    const int32_t i = int32_t((unsigned long)off / B);
    ISEG_CHECK(off >= 0 && off / B < 0x7fffffffL && off % B == 0 && n >= 1 && n <= B,
               "m_axi write: a whole beat, at a beat");
    ISEG_AXI_REQ(bundle, true, port + i, site);
    ISEG_AXI_MOVED(bundle, true, n);
    (void)n, (void)bundle, (void)site;
    port[i] = v;
}

// A read cache of one beat: the span's beat is requested only when it is not the one held. Beat indices are 32-bit
// (a buffer of up to 2^31 beats): the hit test is a 32-bit compare.
template <class T>
struct RdCache {
    T v;
    int32_t i;  // the beat held (-1: none)
};

template <class T>
inline void cache_reset(RdCache<T>& c) {
    c.i = -1;
}

template <class T>
inline const T& cache_read(RdCache<T>& c, const T* port, long off, int n, int bundle, const void* site) {
    ISEG_PRAGMA(HLS INLINE)
    constexpr int B = beat_bytes<T>::value;
    const int32_t i = int32_t((unsigned long)off / B);
    ISEG_CHECK(off >= 0 && off / B < 0x7fffffffL && n >= 1 && int(off % B) + n <= B,
               "m_axi read: a span leaves its beat (plan._padded, estimate.axi_beat)");
    if (i != c.i) {
        ISEG_AXI_REQ(bundle, false, port + i, site);
        c.v = port[i];
        c.i = i;
    }
    ISEG_AXI_MOVED(bundle, false, n);
    (void)n, (void)bundle, (void)site;
    return c.v;
}

// A store stage: one beat being assembled, as B bytes (a register each: the array is partitioned where the stage is
// declared, so each staged byte's update is its own small select, not a chain of part-selects through one wide
// register on the loop-carried path), packed into a beat only when it is written.
template <int B>
struct WrStage {
    uint8_t b[B];
    int32_t i;  // its beat (-1: none)
};

template <int B>
inline void stage_reset(WrStage<B>& s) {
    ISEG_PRAGMA(HLS INLINE)
STAGE_CLEAR:
    for (int j = 0; j < B; ++j) s.b[j] = 0;
    s.i = -1;
}

template <class T, int B>
inline T stage_beat(const uint8_t (&b)[B]) {
    ISEG_PRAGMA(HLS INLINE)
    T v;
STAGE_PACK:
    for (int j = 0; j < B; ++j) {
        ISEG_PRAGMA(HLS UNROLL)
        beat_set(v, j, b[j]);
    }
    return v;
}

// Put x[0, n) at byte `off`, n <= N (the caller's most). U: a granule that divides every put's offset, so the
// put's position in the beat is one of B / U, and a staged byte takes one of at most min(B / U, N / U) bytes of x
// or keeps its value (2 inputs for a 2-byte ADD output, 4 for the pixel path's 3-byte pixels). At most one write:
// the staged beat when the put moves on to another beat, or the beat the put completes when it runs past its end.
template <int U, class T, int N>
inline void stage_put(WrStage<beat_bytes<T>::value>& s, T* port, long off, const uint8_t (&x)[N], int n, int bundle,
                      const void* site) {
    ISEG_PRAGMA(HLS INLINE)
    constexpr int B = beat_bytes<T>::value;
    static_assert(U >= 1 && B % U == 0, "stage_put: the granule divides the beat (a put's position is a multiple of it)");
    static_assert(N >= 1 && N <= B, "stage_put: a put is at most a beat");
    const int32_t i = int32_t((unsigned long)off / B);
    const int o = int(off % B);
    const bool moved = s.i >= 0 && i != s.i;  // the staged beat is complete
    const bool cross = o + n > B;             // the put completes the beat it starts in
    ISEG_CHECK(off >= 0 && off / B < 0x7fffffffL && off % U == 0 && n >= 1 && n <= N,
               "m_axi store: a put must be 1..N bytes at a multiple of its granule");
    ISEG_CHECK(!(moved && cross), "m_axi store: a put that leaves the staged beat must start a beat of its own");
    const bool fresh = s.i < 0 || moved;
    uint8_t cur[B], nxt[B];
    ISEG_PRAGMA(HLS ARRAY_PARTITION variable=cur type=complete)
    ISEG_PRAGMA(HLS ARRAY_PARTITION variable=nxt type=complete)
STAGE_BYTE:
    for (int p = 0; p < B; ++p) {  // byte p takes x[p - o] where the put covers it (o: one of B / U positions)
        ISEG_PRAGMA(HLS UNROLL)
        uint8_t c = fresh ? uint8_t(0) : s.b[p], q = 0;
    STAGE_AT:
        for (int k = 0; k < B; k += U) {
            ISEG_PRAGMA(HLS UNROLL)
            if (o == k && p >= k && p - k < N && p - k < n) c = x[p - k < N ? p - k : 0];
            if (o == k && p + B - k < N && p + B - k < n) q = x[p + B - k < N ? p + B - k : 0];
        }
        cur[p] = c;
        nxt[p] = q;
    }
    if (moved || cross) {
        const int32_t w = moved ? s.i : i;
        ISEG_AXI_REQ(bundle, true, port + w, site);
        port[w] = moved ? stage_beat<T>(s.b) : stage_beat<T>(cur);
    }
STAGE_KEEP:
    for (int p = 0; p < B; ++p) {
        ISEG_PRAGMA(HLS UNROLL)
        s.b[p] = cross ? nxt[p] : cur[p];
    }
    s.i = cross ? i + 1 : i;
    ISEG_AXI_MOVED(bundle, true, n);
    (void)bundle, (void)site;
}

// Write the staged beat, if any (sequential code after a stream of puts).
template <class T>
inline void stage_flush(WrStage<beat_bytes<T>::value>& s, T* port, int bundle, const void* site) {
    ISEG_PRAGMA(HLS INLINE)
    if (s.i >= 0) {
        ISEG_AXI_REQ(bundle, true, port + s.i, site);
        port[s.i] = stage_beat<T>(s.b);
    }
    s.i = -1;
    (void)bundle, (void)site;
}

}  // namespace iseg

#define ISEG_BEAT_RD(bundle, port, off, n) ::iseg::beat_read((port), long(off), int(n), ::iseg::bundle, ISEG_SITE)
#define ISEG_BEAT_WR(bundle, port, off, v, n) \
    ::iseg::beat_write((port), long(off), (v), int(n), ::iseg::bundle, ISEG_SITE)
#define ISEG_CACHE_RD(bundle, cache, port, off, n) \
    ::iseg::cache_read((cache), (port), long(off), int(n), ::iseg::bundle, ISEG_SITE)
#define ISEG_STAGE_PUT(U, bundle, stage, port, off, x, n) \
    ::iseg::stage_put<U>((stage), (port), long(off), (x), int(n), ::iseg::bundle, ISEG_SITE)
#define ISEG_STAGE_FLUSH(bundle, stage, port) ::iseg::stage_flush((stage), (port), ::iseg::bundle, ISEG_SITE)
