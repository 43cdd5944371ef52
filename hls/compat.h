// compat.h -- the ONE switch between C-simulation (g++) and synthesis (Vitis HLS, __SYNTHESIS__).
//
// Every other header of the library includes this file and never tests __SYNTHESIS__ itself, so
// the differences between the two worlds are visible in one place:
//   * hls::stream: Vitis' <hls_stream.h> in synthesis and in Vitis' own csim / cosim (-DISEG_VITIS),
//     our depth-checked stand-in (iseg_stream.h) in the g++ C-simulation (a plain unbounded C-sim
//     FIFO hides under-sized FIFOs and deadlocks);
//   * ISEG_PRAGMA(HLS ...): emits the pragma for the HLS compiler, nothing for g++;
//   * ISEG_CHECK(cond, msg): a run-time invariant (layer table sanity, buffer bounds) that throws
//     iseg::CsimError in C-simulation and compiles to nothing in synthesis;
//   * ISEG_PIPELINE(LABEL, II): the PIPELINE pragma in synthesis; in C-simulation it also opens one
//     iteration for the on-chip memory port check (ISEG_PIPELINE_AS(LABEL, II, name): the same, counted under
//     a run-time name: the modes of the one engine loop, schedule.h) (iseg_ports.h: ISEG_PORTS, ISEG_RD, ISEG_WR, ISEG_RW count
//     the accesses per bank and iteration; ISEG_AXI_REQ the beats requested per m_axi bundle and iteration
//     (axi.h's beat reads and stages call it); nothing of it exists in synthesis).
// Numerics never differ between the two: there is no C-sim-only arithmetic anywhere.
#pragma once

#include <stdint.h>

// The numerics contract needs arithmetic (flooring) right shifts of negative values. C++20
// guarantees it; g++ and the HLS front end (clang) have always done it. Checked, not assumed.
static_assert((-7 >> 1) == -4, "iseg needs arithmetic right shifts of negative integers");
static_assert((int64_t(-7) >> 1) == -4, "iseg needs arithmetic right shifts of negative int64");

// Arbitrary-width integers (the lane multipliers' narrowed operands, mul.h): Vitis' ap_int in
// synthesis, and in a C-simulation built with -DISEG_AP_INT (the generated projects' csim.cpp, with
// the ap_types headers on the include path) so that the synthesis types are compiled and run bit for
// bit; a plain C-sim build (the unit-test harness) carries the values in int64_t. Either way every
// narrowed operand is range-checked in C-simulation (mul.h narrow()).
#if defined(__SYNTHESIS__) || defined(ISEG_AP_INT)
#include <ap_int.h>
namespace iseg {
template <int N>
struct sbits {
    typedef ap_int<N> type;  // signed N-bit
};
}  // namespace iseg
#else
namespace iseg {
template <int N>
struct sbits {
    typedef int64_t type;  // values are range-checked to N bits before they get here
};
}  // namespace iseg
#endif

// The GEMM array's accumulators (gemm.h acc_t): ap_int<N> in synthesis, N the model's proven width
// (Widths::ARR), so the fabric adders and the drain muxes are N bits wide, not 32; int32_t in every
// C-simulation (an ap_int in the array's inner loop would slow a frame several times over). The numerics
// are the same: the array only adds, sums modulo 2^N are exact whenever the finished sum fits in N bits (a
// wrapped partial sum included), and acc_to_drain checks every finished sum against N bits (ISEG_CHECK).
// arr_bits is the same switch for the array's operands (schedule.h engine_pass: 9 or 16 x 8 bits), so the tool
// builds multipliers of the operands' width, where int16 x int8 storage would ask for 16 x 32.
#ifdef __SYNTHESIS__
namespace iseg {
template <int N>
struct acc_bits {
    typedef ap_int<N> type;
};
template <int N>
struct arr_bits {
    typedef ap_int<N> type;
};
template <int N>
struct arr_wide {  // an operand or product of the packed array multiplier (mul.h mul_pack2): up to 35 bits
    typedef ap_int<N> type;
};
}  // namespace iseg
#else
namespace iseg {
template <int N>
struct acc_bits {
    typedef int32_t type;
};
template <int N>
struct arr_bits {
    typedef int32_t type;
};
template <int N>
struct arr_wide {
    typedef int64_t type;
};
}  // namespace iseg
#endif

// The m_axi ports are arrays of beats (axi.h): ap_uint<8 B> in synthesis and in Vitis' own csim / cosim (the top's
// signature is what synthesis saw), a struct of B bytes in the g++ C-simulation (a frame makes ~10^8 byte
// accesses: no ap_uint part-select per byte there). Byte j of a beat is bits [8j, 8j + 8) of the ap_uint: the
// blob and scratch are little-endian byte arrays either way, so the host's buffers need no conversion. The
// synthesis view (tests/generator/synthesis_view.py) runs the ap_uint side bit for bit.
namespace iseg {
// The m_axi bundles of the top (top.cpp): gmem0 the weights blob, gmem1 the scratch, gmem2 a second port onto it.
enum AxiBundle : int { GMEM0 = 0, GMEM1 = 1, GMEM2 = 2, kAxiBundles = 3 };
}  // namespace iseg
#if defined(__SYNTHESIS__) || defined(ISEG_VITIS)
#include <ap_int.h>
namespace iseg {
template <int B>
struct beat_of {
    typedef ap_uint<8 * B> type;
};
template <class T>
struct beat_bytes;
template <int W>
struct beat_bytes<ap_uint<W> > {
    static constexpr int value = W / 8;
};
template <int W>
inline uint8_t beat_byte(const ap_uint<W>& v, int j) {
#pragma HLS INLINE
    return uint8_t(v.range(8 * j + 7, 8 * j));  // j a constant after UNROLL and inlining: wiring
}
template <int W>
inline void beat_set(ap_uint<W>& v, int j, uint8_t x) {
#pragma HLS INLINE
    v.range(8 * j + 7, 8 * j) = x;
}
template <int W>
inline void beat_clear(ap_uint<W>& v) {
#pragma HLS INLINE
    v = 0;
}
}  // namespace iseg
#else
#pragma GCC diagnostic ignored "-Wunused-label"  // (HLS loop labels, as below)
namespace iseg {
template <int B>
struct BeatBytes {
    uint8_t b[B];
};
template <int B>
struct beat_of {
    typedef BeatBytes<B> type;
};
template <class T>
struct beat_bytes;
template <int B>
struct beat_bytes<BeatBytes<B> > {
    static constexpr int value = B;
};
template <int B>
inline uint8_t beat_byte(const BeatBytes<B>& v, int j) {
    return v.b[j];
}
template <int B>
inline void beat_set(BeatBytes<B>& v, int j, uint8_t x) {
    v.b[j] = x;
}
template <int B>
inline void beat_clear(BeatBytes<B>& v) {
BEAT_CLEAR:
    for (int j = 0; j < B; ++j) v.b[j] = 0;
}
}  // namespace iseg
#endif

#ifndef __SYNTHESIS__
#include <stdio.h>
namespace iseg {
// A C-simulation failure: an under-sized FIFO, a read from an empty stream, a bad layer table.
// Fixed-size message, no heap, so throwing it needs nothing but the exception runtime.
struct CsimError {
    char what[320];
};

[[noreturn]] inline void csim_fail(const char* msg, const char* file, int line) {
    CsimError err;
    snprintf(err.what, sizeof err.what, "%s (%s:%d)", msg, file, line);
    throw err;
}
}  // namespace iseg
#endif

// hls::stream and the label stream's beat: Vitis' in synthesis and in Vitis' own C-simulation and
// co-simulation of the generated project (hls.tcl compiles top.cpp and tb.cpp with -DISEG_VITIS: the
// co-simulation wrapper is built from the synthesised signature, so the test bench must pass the very
// types synthesis saw); our depth-checked stand-in in the g++ C-simulation (ISEG_OWN_STREAMS: the test
// bench attaches storage to its top-level streams).
#if defined(__SYNTHESIS__) || defined(ISEG_VITIS)
#define ISEG_OWN_STREAMS 0
#include <ap_axi_sdata.h>
#include <hls_stream.h>
namespace iseg {
// One beat of the label stream: N labels (8 N-bit TDATA, label j in bits 8j..8j+7) with the AXI-Stream side
// channel (TLAST on the last beat of the frame, TKEEP/TSTRB all ones), what an AXI DMA's S2MM channel needs.
template <int N>
struct label_beat_of {
    typedef hls::axis<ap_uint<8 * N>, 0, 0, 0> type;
};
}  // namespace iseg
#else
#define ISEG_OWN_STREAMS 1
#include "iseg_stream.h"
namespace iseg {
// The label stream beat of the g++ C-simulation: the fields of Vitis' hls::axis<ap_uint<8 N>, 0, 0, 0>
// that the engine uses (data: N labels, a beat of bytes as the m_axi ports' are; keep, strb; last).
template <int N>
struct LabelBeat {
    BeatBytes<N> data;
    uint32_t keep, strb;
    bool last;
};
template <int N>
struct label_beat_of {
    typedef LabelBeat<N> type;
};
}  // namespace iseg
#endif

#ifdef __SYNTHESIS__
#define ISEG_PRAGMA(x) _Pragma(#x)
#define ISEG_CHECK(cond, msg) ((void)0)
#define ISEG_CYCLES(counter, n) ((void)0)
#else
// HLS loop labels (GEMM_K:) name loops in synthesis reports; g++ sees them as unused labels.
#pragma GCC diagnostic ignored "-Wunused-label"
#include "iseg_ports.h"  // its counting macros, unless ISEG_NO_PORT_CHECK (below)
#define ISEG_PRAGMA(x)
#define ISEG_CHECK(cond, msg)                                         \
    do {                                                              \
        if (!(cond)) ::iseg::csim_fail((msg), __FILE__, __LINE__);    \
    } while (0)
// C-sim cycle count: every pipelined loop adds its iterations (II=1) plus its pipeline depth, so
// tests can compare the engine's schedule with generator/estimate.py. Nothing in synthesis.
#define ISEG_CYCLES(counter, n) ((counter) += (long long)(n))
#endif

#if defined(__SYNTHESIS__) || defined(ISEG_NO_PORT_CHECK)
// Nothing counted: synthesis, or a C-simulation built without the port check (csim.build(port_check=False),
// the host's emulated board: the same arithmetic, checks and cycle count, none of the per-access counting,
// 15-20 % of a Seg-T frame). ISEG_PIPELINE is the PIPELINE pragma (ISEG_PRAGMA: nothing in C-simulation).
#define ISEG_PIPELINE(label, ii) ISEG_PRAGMA(HLS PIPELINE II=ii)
#define ISEG_PIPELINE_AS(label, ii, name) ISEG_PRAGMA(HLS PIPELINE II=ii)
#define ISEG_PORTS(buf, NB) static_assert((NB) > 0, "")
#define ISEG_RD(obj, buf, bank, w) ((void)0)
#define ISEG_WR(obj, buf, bank, w) ((void)0)
#define ISEG_RW(obj, buf, bank, w, write) ((void)0)
#define ISEG_AXI_BIND(beat, blob, scratch) ((void)0)
#define ISEG_SITE nullptr
#define ISEG_AXI_REQ(bundle, write, beat, site) ((void)0)
#define ISEG_AXI_MOVED(bundle, write, n) ((void)0)
#define ISEG_ITER() (-1LL)  // no iteration ids: the distance checks that use them pass
#endif

// The URAM bind of the weight buffer (engine.h run_layers): the generated model_cfg.h defines it from the
// estimate's memory placement before it includes engine.h (the synthesis top includes model_cfg.h first); a Cfg
// without it (the unit-test harness) binds nothing, which leaves the choice to the tool.
#ifndef ISEG_W_URAM
#define ISEG_W_URAM 0
#endif

namespace iseg {
// Pipeline depths: what one entry into a pipelined loop costs beyond its iterations (fill + drain), cycles. A loop's
// depth is its longest path within one iteration, so it depends on what the loop holds (docs/hls.md, item 12):
//   kPipeDepth   the datapath alone (multipliers, adders, on-chip reads): every pipelined loop pays it;
//   kReadDepth   a loop that reads an m_axi port and uses the beat in the same iteration: the read's data come
//                kMaxiLatency cycles after the request, which the schedule places inside the iteration;
//   kEngineDepth the engine loop (gemm.h): a read, then the LayerNorm statistics chain on a row's last beat.
// generator/estimate.py uses the same figures (PIPE, M_AXI_LATENCY, PIPE_READ, PIPE_ENGINE).
static constexpr int kPipeDepth = 16;
// The m_axi read latency the schedule assumes: scripts/hls.tcl sets it in both flows (config_interface
// -m_axi_latency), Vitis' kernel-flow default (UG1399). A real DDR read that takes longer stalls the pipeline; one
// that takes less leaves the stages idle.
static constexpr int kMaxiLatency = 64;
static constexpr int kReadDepth = kPipeDepth + kMaxiLatency;
// Cycles of one sequential 64-bit divider (the reciprocals of LayerNorm, Shiftmax, GELU rows).
static constexpr int kDivCycles = 66;
// The sequencer's cycles per call (schedule.h seq_next, one per pass and one that ends the layer): its phase steps
// and a pass's address products, sequential code between two entries of the engine loop. The synthesis review put
// them at 5 to 10 cycles (docs/hls.md item 1); 8 is an assumption, unverified without Vitis, charged so that the
// estimate does not leave a stall it knows of at zero (generator/estimate.py SEQ_SETUP).
static constexpr int kSeqSetup = 8;
}  // namespace iseg
