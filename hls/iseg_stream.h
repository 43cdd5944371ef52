// iseg_stream.h -- the project's own hls::stream for C-simulation (included by compat.h only).
//
// Why not Vitis' or a third-party hls_stream.h: licences are unclear, and the usual C-sim FIFO is
// unbounded, which hides under-sized FIFOs and deadlocks that only show up in co-simulation or on
// the board. This stand-in is bounded:
//   * hls::stream<T, DEPTH> (DEPTH > 0) owns a ring buffer of DEPTH elements (no heap);
//   * hls::stream<T> (DEPTH = 0, a top-level port) has no storage until the test bench calls
//     attach(storage, depth) -- C-sim only, the test bench decides how much data it pre-loads;
//   * write() on a full stream and read() on an empty one are errors (iseg::CsimError): in
//     hardware the first stalls the producer forever in a sequential region, the second blocks.
// max_size() reports the high-water mark, which is the depth the FIFO actually needs.
#pragma once

#include <stdint.h>
#include <stdio.h>

// iseg::CsimError and iseg::csim_fail come from compat.h, which includes this file.

namespace hls {

template <typename T, int DEPTH = 0>
class stream {
    static_assert(DEPTH >= 0, "stream depth must be >= 0 (0 = unsized top-level port)");

public:
    stream() : stream("stream") {}
    explicit stream(const char* name) : buf_(own_), cap_(DEPTH), head_(0), count_(0), high_(0), name_(name) {}
    stream(const stream&) = delete;
    stream& operator=(const stream&) = delete;

    // C-sim test benches only: give an unsized (DEPTH = 0) stream `depth` elements of storage.
    void attach(T* storage, long depth) {
        if (DEPTH != 0) fail("attach() on a stream that has a template DEPTH");
        if (storage == nullptr || depth <= 0) fail("attach() needs storage and a positive depth");
        buf_ = storage;
        cap_ = depth;
        head_ = count_ = high_ = 0;
    }

    bool empty() const { return count_ == 0; }
    bool full() const { return count_ >= cap_; }
    long size() const { return count_; }
    long capacity() const { return cap_; }
    long max_size() const { return high_; }  // high-water mark: the depth this FIFO really needs
    const char* name() const { return name_; }

    void write(const T& v) { push_(v); }
    bool write_nb(const T& v) {
        if (count_ >= cap_) return false;
        push_(v);
        return true;
    }
    T read() { return pop_(); }
    void read(T& v) { v = pop_(); }
    bool read_nb(T& v) {
        if (count_ == 0) return false;
        v = pop_();
        return true;
    }
    void operator>>(T& v) { v = pop_(); }
    void operator<<(const T& v) { push_(v); }

private:
    void push_(const T& v) {
        if (cap_ == 0) fail("write to an unsized stream: declare hls::stream<T, DEPTH> or attach() storage");
        if (count_ >= cap_) fail("write to a full stream: its depth is too small");
        long tail = head_ + count_;
        if (tail >= cap_) tail -= cap_;
        buf_[tail] = v;
        ++count_;
        if (count_ > high_) high_ = count_;
    }
    T pop_() {
        if (count_ == 0) fail("read from an empty stream: in hardware this read blocks forever");
        T v = buf_[head_];
        if (++head_ == cap_) head_ = 0;
        --count_;
        return v;
    }
    [[noreturn]] void fail(const char* what) const {
        char msg[256];
        snprintf(msg, sizeof msg, "hls::stream '%s' (depth %ld): %s", name_, cap_, what);
        ::iseg::csim_fail(msg, __FILE__, __LINE__);
    }

    T own_[DEPTH > 0 ? DEPTH : 1];
    T* buf_;
    long cap_, head_, count_, high_;
    const char* name_;
};

}  // namespace hls
