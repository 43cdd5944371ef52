// csim_api.h -- the C ABI of a C-simulation build (g++ shared library, loaded with ctypes).
//
// A generated csim.cpp is two lines:
//     #include "csim_api.h"
//     #include "model_cfg.h"             // struct Cfg + its constexpr layer table
//     ISEG_CSIM_ENTRY(Cfg, Cfg::layers, Cfg::n_layers)
// which defines
//     extern "C" int iseg_csim_run(const uint8_t* weights, const uint8_t* pixels /*H*W*3 raster RGB*/,
//                                  uint8_t* labels /*H*W*/, uint8_t* scratch,
//                                  void (*trace)(int layer, const void* data, long nbytes));
//     extern "C" const char* iseg_csim_last_error(void);
// iseg_csim_run returns 0, or 1 after a C-sim error (under-sized stream, bad table entry): the
// message is then in iseg_csim_last_error(). `trace` (nullable) is called after every layer
// with the layer's output in scratch: T rows of out_stride elements (1 or 2 bytes each), the last
// row cut at its N-th element; ARGMAX_UPSAMPLE (whose output is the label stream) passes (NULL, 0).
#pragma once

#include "engine.h"

namespace iseg {

typedef void (*TraceFn)(int layer, const void* data, long nbytes);

// Per-library state of the C ABI. These are inline functions with statics, i.e. vague-linkage
// (GNU unique) symbols shared by every library of the process that defines them; they only hold
// the last error text and the last cycle count, which callers read right after a call (calls are
// serialised by CsimLibrary). Everything that must not be shared -- the engine buffers and stream
// storage -- lives in templates on the generated Cfg, which has internal linkage (model_cfg.h puts
// it in an unnamed namespace), so two generated projects in one process never share it.
inline char* csim_error_buffer() {
    static char buf[sizeof(CsimError::what)] = {0};
    return buf;
}
inline long long& csim_cycles_total() {
    static long long total = 0;
    return total;
}
// Trace functor: hands each layer's output region to the C callback and keeps the counted cycles.
struct CsimTrace {
    TraceFn fn;
    long long* cycles;  // per layer (may be null), and the total in csim_last_cycles()
    void operator()(int i, const LayerDesc& d, const void* scratch_beats, long long cyc) const {
        const uint8_t* scratch = static_cast<const uint8_t*>(scratch_beats);
        if (cycles != nullptr) cycles[i] = cyc;
        csim_cycles_total() += cyc;
        if (fn == nullptr) return;
        const int eb = layer_out_elem_bytes(d);
        if (eb == 0) {
            fn(i, nullptr, 0);
            return;
        }
        const long n = d.op == OP_ATTENTION ? long(d.heads) * d.d_head : long(d.N);
        fn(i, scratch + d.out, ((long(d.T) - 1) * d.out_stride + n) * eb);
    }
};

// A table of the last run as text, one line per entry (line(i, out, room) prints entry i, snprintf-style).
// Returns the number of entries, or -1 if the table overflowed (then the text holds what fitted).
template <class Line>
inline int csim_table_report(char* buf, long len, int n, int dropped, Line line) {
    long at = 0;
    if (len > 0) buf[0] = 0;
    for (int i = 0; i < n && at < len; ++i) at += line(i, buf + at, size_t(len - at));
    return dropped > 0 ? -1 : n;
}

// The port check (iseg_ports.h): one line per (loop, buffer) whose iterations asked one memory bank for more
// accesses than it has ports: "LOOP BUFFER worst allowed iterations".
inline int csim_port_report(char* buf, long len) {
    const PortLog& l = port_log();
    return csim_table_report(buf, len, l.n, l.dropped, [&](int i, char* out, size_t room) {
        const PortEntry& e = l.e[i];
        return snprintf(out, room, "%s %s %d %d %lld\n", e.loop, e.buf, e.worst, e.allowed, e.iterations);
    });
}

// The static demand (iseg_ports.h StaticLog: the union of each loop's paths): one line per (source loop, buffer
// or m_axi bundle and direction): "LOOP BUFFER demand sites".
inline int csim_static_report(char* buf, long len) {
    const StaticLog& g = static_log();
    return csim_table_report(buf, len, g.n, g.dropped, [&](int i, char* out, size_t room) {
        const StaticEntry& e = g.e[i];
        return snprintf(out, room, "%s %s %d %d\n", e.sloop, e.buf, e.demand, e.sites);
    });
}

// The bursts (iseg_ports.h axi_burst): one line per (loop, bundle, direction): "LOOP gmemN.read|write bytes bursts".
inline int csim_burst_report(char* buf, long len) {
    static const char* dirs[2] = {"read", "write"};
    const AxiLog& a = axi_log();
    return csim_table_report(buf, len, a.nbursts, a.dropped, [&](int i, char* out, size_t room) {
        const BurstEntry& e = a.bursts[i];
        return snprintf(out, room, "%s gmem%d.%s %lld %lld\n", e.loop, e.bundle, dirs[e.dir], e.bytes, e.bursts);
    });
}

inline void csim_set_error(const CsimError& e) { snprintf(csim_error_buffer(), sizeof(CsimError::what), "%s", e.what); }

// Run a table on one image. Pixels (RGB bytes) are packed into stream beats (PIX words of 0x00BBGGRR) and
// pre-loaded into the pixel stream; the label stream must hold exactly img_h * img_w / LAB beats at the end, TLAST
// on the last only, and every pixel must have been read.
template <class Cfg>
int csim_run(const LayerDesc* table, int n_layers, const uint8_t* weights, const uint8_t* pixels, uint8_t* labels,
             uint8_t* scratch, TraceFn trace, long long* layer_cycles = nullptr) {
    constexpr int PIX = Cfg::PIX, LAB = Cfg::LAB;
    static pix_beat_t<Cfg> pix_store[Cfg::IMG_H * Cfg::IMG_W / PIX + 1];  // static: no heap, no 1 MB stack frame
    static label_beat_t<Cfg> lab_store[Cfg::IMG_H * Cfg::IMG_W / LAB + 1];
    csim_error_buffer()[0] = 0;
    csim_cycles_total() = 0;
    port_log_reset();
    static_reset();
    axi_log() = AxiLog();  // (bound again by run_layers unless the port check is compiled out)
    try {
        long n_pix = 0, n_lab = 0;
        for (int i = 0; i < n_layers; ++i) {
            if (table[i].op == OP_PATCH_EMBED) n_pix += long(table[i].img_h) * table[i].img_w;
            if (table[i].op == OP_ARGMAX_UPSAMPLE) n_lab += long(table[i].img_h) * table[i].img_w;
        }
        ISEG_CHECK(n_pix <= long(Cfg::IMG_H) * Cfg::IMG_W && n_lab <= long(Cfg::IMG_H) * Cfg::IMG_W,
                   "csim_run: the table reads or writes more pixels than Cfg::IMG_H * Cfg::IMG_W");
        ISEG_CHECK(n_pix % PIX == 0 && n_lab % LAB == 0,
                   "csim_run: the pixels / labels are not whole stream beats (PIX / LAB divide the patch)");
        hls::stream<pix_beat_t<Cfg> > pix("pixels");
        hls::stream<label_beat_t<Cfg> > lab("labels");
        if (n_pix > 0) {
            pix.attach(pix_store, n_pix / PIX);
            for (long i = 0; i < n_pix; i += PIX) pix.write(pix_beat_pack<Cfg>(pixels + 3 * i));
        }
        if (n_lab > 0) lab.attach(lab_store, n_lab / LAB);
        CsimTrace tr{trace, layer_cycles};
        // the ports are arrays of beats (axi.h); in this C-simulation a beat is a struct of bytes (compat.h), so the
        // caller's byte buffers are those arrays as they are (scratch_b: the same buffer)
        typedef typename axi_beat<Cfg>::type beat;
        const beat* w = reinterpret_cast<const beat*>(weights);
        beat* sc = reinterpret_cast<beat*>(scratch);
        run_layers<Cfg>(pix, lab, w, sc, sc, table, n_layers, tr);
        ISEG_CHECK(pix.empty(), "csim_run: the layer table left pixels unread");
        ISEG_CHECK(lab.size() == n_lab / LAB, "csim_run: the label stream does not hold img_h * img_w labels");
        for (long i = 0; i < n_lab; i += LAB) {
            const label_beat_t<Cfg> b = lab.read();
            ISEG_CHECK(b.last == (i + LAB == n_lab), "csim_run: TLAST must be set on the last beat only");
            ISEG_CHECK((b.keep & ((1ull << LAB) - 1)) == (1ull << LAB) - 1 && (b.strb & ((1ull << LAB) - 1)) == (1ull << LAB) - 1,
                       "csim_run: TKEEP / TSTRB must be all ones");
            label_beat_take<Cfg>(b, labels + i);
        }
        return 0;
    } catch (const CsimError& e) {
        csim_set_error(e);
        return 1;
    }
}

}  // namespace iseg

// Also defines iseg_csim_cycles(layer): the counted cycles of one layer of the last run (-1: the
// whole frame), the C-sim check of generator/estimate.py. Storage is static in this TU only. And
// iseg_csim_axi_bytes(out[6]): the bytes the last run moved per m_axi bundle (gmem0..2) and direction
// (read, write), the bytes every access used (iseg_ports.h axi_moved); iseg_csim_bursts: its sequential runs per
// pipelined loop (csim_burst_report).
#define ISEG_CSIM_ENTRY(CFG, TABLE, N_LAYERS)                                                               \
    static long long iseg_csim_layer_cycles_[(N_LAYERS) > 0 ? (N_LAYERS) : 1];                              \
    extern "C" int iseg_csim_run(const uint8_t* weights, const uint8_t* pixels, uint8_t* labels,            \
                                 uint8_t* scratch, void (*trace)(int layer, const void* data, long nbytes)) { \
        return ::iseg::csim_run<CFG>(TABLE, N_LAYERS, weights, pixels, labels, scratch, trace,              \
                                     iseg_csim_layer_cycles_);                                              \
    }                                                                                                       \
    extern "C" long long iseg_csim_cycles(int layer) {                                                      \
        long long total = 0;                                                                                \
        for (int i = 0; i < (N_LAYERS); ++i) total += iseg_csim_layer_cycles_[i];                          \
        if (layer < 0) return total;                                                                        \
        return layer < (N_LAYERS) ? iseg_csim_layer_cycles_[layer] : 0;                                     \
    }                                                                                                       \
    extern "C" const char* iseg_csim_last_error(void) { return ::iseg::csim_error_buffer(); }              \
    extern "C" int iseg_csim_ports(char* buf, long len) { return ::iseg::csim_port_report(buf, len); }      \
    extern "C" void iseg_csim_axi_bytes(long long* out) {                                                   \
        for (int b = 0; b < ::iseg::kAxiBundles; ++b)                                                       \
            for (int d = 0; d < 2; ++d) out[2 * b + d] = ::iseg::axi_log().bytes[b][d];                     \
    }                                                                                                       \
    extern "C" int iseg_csim_bursts(char* buf, long len) { return ::iseg::csim_burst_report(buf, len); }    \
    extern "C" int iseg_csim_static(char* buf, long len) { return ::iseg::csim_static_report(buf, len); }
