// hls_stream.h -- a NAMED STAND-IN, written here, for the header of that name that ships with Vitis HLS, for tests
// only: the Vitis-type views of a generated project (-DISEG_VITIS, the types of Vitis' csim and cosim, and the
// synthesis view, __SYNTHESIS__; tests/generator/synthesis_view.py) need an hls::stream of Vitis' shape. The
// copy inside the hls4ml wheel carries Xilinx's proprietary notice, so it is not used (DESIGN.md). What is
// declared is the part of the class the engine and the test bench touch (UG1399, "HLS Stream Library"):
// hls::stream<T, DEPTH>, a name, read(), write(), empty(), full(), size(); like Vitis' C-simulation stream it is
// an unbounded FIFO (depth checks are our own stand-in's business: hls/iseg_stream.h), and reading an empty one
// stops the program, as Vitis' csim does.
#pragma once

#include <stdio.h>
#include <stdlib.h>

#include <deque>
#include <string>

namespace hls {
template <typename T, int DEPTH = 0>
class stream {
   public:
    stream() : name_("stream") {}
    explicit stream(const char* name) : name_(name) {}
    stream(const stream&) = delete;
    stream& operator=(const stream&) = delete;

    bool empty() const { return q_.empty(); }
    bool full() const { return false; }
    size_t size() const { return q_.size(); }
    void write(const T& v) { q_.push_back(v); }
    T read() {
        if (q_.empty()) {
            fprintf(stderr, "hls::stream '%s': read while empty\n", name_.c_str());
            abort();
        }
        T v = q_.front();
        q_.pop_front();
        return v;
    }

   private:
    std::deque<T> q_;
    std::string name_;
};
}  // namespace hls
