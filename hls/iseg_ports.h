// iseg_ports.h -- the C-simulation check of on-chip memory ports (included by compat.h only, never in
// synthesis).
//
// Why: every cycle count of the engine assumes its pipelined loops run at their stated II, and on
// hardware that holds only if no memory bank is asked for more accesses per iteration than it has
// ports. C-simulation cannot see ports, and csynth is not on this machine, so the engine states the
// banking (docs/hls.md, "On-chip memory banking": the ARRAY_PARTITION / ARRAY_RESHAPE pragmas next to
// each buffer, and its bank(...) function) and this file counts, per bank and per iteration of a
// pipelined loop, the distinct (word, read | write) accesses the C++ makes. A bank is a true dual-port
// BRAM / URAM: 2 accesses per cycle, 2 * II per iteration; two bytes of one word written in the same
// iteration are one byte-enabled write, and one word read twice is one read. Whatever exceeds that is
// recorded per (loop, buffer) -- the II the tool would have to raise there -- and handed to the caller
// (csim_api.h iseg_csim_ports), so the audit is a test, not a table kept by hand.
//
//   ISEG_PIPELINE(LABEL, II)   the PIPELINE pragma of a loop in synthesis; here it opens one iteration
//                              of that loop (every pipelined loop of the library uses it: test_hls_static)
//   ISEG_PORTS(buf, NB)        declares the port counters of member `buf` (NB banks) next to it
//   ISEG_RD / ISEG_WR(obj, buf, bank, word)   one access of obj.buf
// Accesses outside a pipelined iteration (sequential code) are not checked.
#pragma once

#include <stdint.h>
#include <stdio.h>
#include <string.h>

namespace iseg {

struct PortEntry {
    char loop[32];
    char buf[16];
    int worst;            // most accesses one bank got in one iteration
    int allowed;          // 2 * II
    long long iterations; // iterations that exceeded `allowed` on some bank
    long long last;       // the last of them (to count each once)
};

struct PortLog {
    long long iter;    // id of the current pipelined iteration (0: none yet)
    const char* loop;  // its loop label; nullptr outside pipelined loops
    int ii;
    int n;             // entries used
    int dropped;       // (loop, buffer) pairs past the table (reported as such)
    PortEntry e[48];
};

// Shared by every C-sim library of the process like csim_api.h's error buffer; reset by csim_run.
inline PortLog& port_log() {
    static PortLog log = {0, nullptr, 1, 0, 0, {}};
    return log;
}

inline void port_log_reset() {
    PortLog& l = port_log();
    l.n = 0;
    l.dropped = 0;
    l.loop = nullptr;
}

inline void port_log_excess(const char* buf, int used, int allowed) {
    PortLog& l = port_log();
PORT_FIND:
    for (int i = 0; i < l.n; ++i) {
        PortEntry& e = l.e[i];
        if (strcmp(e.loop, l.loop) == 0 && strcmp(e.buf, buf) == 0) {
            if (used > e.worst) e.worst = used;
            if (e.last != l.iter) {
                e.last = l.iter;
                ++e.iterations;
            }
            return;
        }
    }
    if (l.n == int(sizeof l.e / sizeof l.e[0])) {
        ++l.dropped;
        return;
    }
    PortEntry& e = l.e[l.n++];
    snprintf(e.loop, sizeof e.loop, "%s", l.loop);
    snprintf(e.buf, sizeof e.buf, "%s", buf);
    e.worst = used;
    e.allowed = allowed;
    e.iterations = 1;
    e.last = l.iter;
}

// One iteration of a pipelined loop (RAII: the loop body's scope). A pipelined loop inside another's
// iteration (isqrt_digit inside the LayerNorm loader) is unrolled into it by the tool: its accesses count
// in the outer iteration.
struct PipeIter {
    bool outer;
    PipeIter(const char* loop, int ii) : outer(port_log().loop == nullptr) {
        if (!outer) return;
        PortLog& l = port_log();
        ++l.iter;
        l.loop = loop;
        l.ii = ii;
    }
    ~PipeIter() {
        if (outer) port_log().loop = nullptr;
    }
    PipeIter(const PipeIter&) = delete;
    PipeIter& operator=(const PipeIter&) = delete;
};

// The port counters of one buffer of NB banks.
template <int NB>
struct Ports {
    static constexpr int kWays = 40;  // distinct accesses tracked per bank and iteration
    // mutable: a read of a const buffer is still an access
    mutable long long it[NB];  // iteration of the bank's last access
    mutable int n[NB];         // distinct accesses in that iteration
    mutable long word[NB][kWays];
    mutable bool wr[NB][kWays];

    void use(const char* buf, int bank, long w, bool write) const {
        const PortLog& l = port_log();
        if (l.loop == nullptr) return;
        if (bank < 0 || bank >= NB) csim_fail("port check: bank index out of range", __FILE__, __LINE__);
        if (it[bank] != l.iter) {
            it[bank] = l.iter;
            n[bank] = 0;
        }
        const int seen = n[bank] < kWays ? n[bank] : kWays;
    PORT_SEEN:
        for (int i = 0; i < seen; ++i)
            if (word[bank][i] == w && wr[bank][i] == write) return;
        if (n[bank] < kWays) {
            word[bank][n[bank]] = w;
            wr[bank][n[bank]] = write;
        }
        const int used = ++n[bank];
        const int allowed = 2 * l.ii;
        if (used > allowed) port_log_excess(buf, used, allowed);
    }

    // The same word of n consecutive banks (the array step reads column k of every row bank).
    void use_rows(const char* buf, int bank0, int nbanks, long w, bool write) const {
    PORT_ROWS:
        for (int b = 0; b < nbanks; ++b) use(buf, bank0 + b, w, write);
    }
};

}  // namespace iseg

#define ISEG_PIPELINE(label, ii) ::iseg::PipeIter iseg_pipe_iter_(#label, ii)
#define ISEG_PORTS(buf, NB) ::iseg::Ports<(NB)> buf##_ports
#define ISEG_RD(obj, buf, bank, w) (obj).buf##_ports.use(#buf, (bank), long(w), false)
#define ISEG_WR(obj, buf, bank, w) (obj).buf##_ports.use(#buf, (bank), long(w), true)
#define ISEG_RD_ROWS(obj, buf, bank0, n, w) (obj).buf##_ports.use_rows(#buf, (bank0), (n), long(w), false)
