// synthesis_view.h -- pre-included (g++ -include) to compile the generated top in the SYNTHESIS VIEW: what Vitis
// HLS's csynth front end sees, __SYNTHESIS__ defined (hls/compat.h: ap_int<ARR> array accumulators, Vitis'
// hls::stream and hls::axis, the pragmas emitted, no C-sim checks or counters). The open-source ap_types
// headers refuse __SYNTHESIS__ (ap_common.h: "#error ... does not support synthesis"), so they and the stream
// headers are included first, with their guards, and __SYNTHESIS__ is defined after them. Test use only: this
// proves the synthesis-side code compiles (C++14, as hls.tcl) and computes bit for bit, not that Vitis
// schedules it.
#pragma once

#include <ap_int.h>
#include <ap_axi_sdata.h>
#include <hls_stream.h>

#define __SYNTHESIS__ 1
