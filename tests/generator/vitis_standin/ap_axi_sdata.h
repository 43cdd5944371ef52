// ap_axi_sdata.h -- a NAMED STAND-IN for the header of that name that ships with Vitis HLS (not with the open
// ap_types headers of the hls4ml wheel), for tests only: test_testbench_builds_with_vitis_types compiles the
// generated test bench and top with -DISEG_VITIS, the types Vitis' own csim and cosim use (hls/compat.h), and
// synthesis_view.py the top with __SYNTHESIS__ (the types csynth sees).
// It declares just what the engine and the test bench touch of hls::axis<T, WUser, WId, WDest> (UG1399, "AXI4-
// Stream Interfaces with Side-Channels"): data, keep, strb (one bit per byte of data) and last. It proves the
// code compiles and runs against a struct of that shape, not against Vitis' header itself.
#pragma once

#include <stddef.h>

#include <ap_int.h>

namespace hls {
template <typename T, size_t WUser, size_t WId, size_t WDest>
struct axis {
    T data;
    ap_uint<(T::width + 7) / 8> keep;
    ap_uint<(T::width + 7) / 8> strb;
    ap_uint<1> last;
};
}  // namespace hls
