// C-simulation test harness: extern "C" wrappers around the hls/ kernels, loaded with ctypes by
// tests/hls/_hls_harness.py. The array shape and maxima come from -D flags so the tests can
// use a small, odd array and the benchmark a Seg-T-sized one.
#include "csim_api.h"

#ifndef ISEG_TEST_R
#define ISEG_TEST_R 4
#endif
#ifndef ISEG_TEST_C
#define ISEG_TEST_C 8
#endif
#ifndef ISEG_TEST_NMAX
#define ISEG_TEST_NMAX 320
#endif
#ifndef ISEG_TEST_KMAX
#define ISEG_TEST_KMAX 800
#endif
#ifndef ISEG_TEST_CMAX
#define ISEG_TEST_CMAX 1024
#endif
#ifndef ISEG_TEST_WROWS
#define ISEG_TEST_WROWS 40000
#endif
#ifndef ISEG_TEST_AXI
#define ISEG_TEST_AXI 8  // the beat divides C (estimate.axi_beat): a GEMM tile's rows are whole beats
#endif
#ifndef ISEG_TEST_OUT_LANES
#define ISEG_TEST_OUT_LANES 4  // a power of two dividing C, 2 OUT_LANES dividing the beat (estimate.make_shape)
#endif
#ifndef ISEG_TEST_LN_LANES
#define ISEG_TEST_LN_LANES 4  // a power of two whose trace puts divide the beat; at most A_WORD, as the planner
                              // makes it (test_hls_ports builds 8: a bank-port excess, on purpose)
#endif
#ifndef ISEG_TEST_IMG
#define ISEG_TEST_IMG 64
#endif
#ifndef ISEG_TEST_A_LANES
#define ISEG_TEST_A_LANES 4  // argmax classes per step: a power of two (argmax_upsample.h)
#endif
#ifndef ISEG_TEST_PIX
#define ISEG_TEST_PIX 2  // pixels per stream beat: a power of two dividing every test's patch, 3 PIX <= the beat
#endif
#ifndef ISEG_TEST_LAB
#define ISEG_TEST_LAB 2  // labels per stream beat: a power of two dividing every test's patch
#endif
#ifndef ISEG_TEST_SM_LANES
#define ISEG_TEST_SM_LANES 3  // Shiftmax lanes: odd on purpose (2 SM_LANES score banks)
#endif
#ifndef ISEG_TEST_S_LANES
#define ISEG_TEST_S_LANES 5  // score lanes: odd on purpose (they straddle rows of the tile; on chip only)
#endif
#ifndef ISEG_TEST_PV_LANES
#define ISEG_TEST_PV_LANES ISEG_TEST_OUT_LANES  // P.V output lanes: OUT_LANES, or S_LANES when it divides C
#endif
#ifndef ISEG_TEST_PV_II
#define ISEG_TEST_PV_II 2  // P.V initiation interval: 2 takes every Shiftmax variant, 1 precise8 (or PACK 1)
#endif
#ifndef ISEG_TEST_PACK
#define ISEG_TEST_PACK 2  // int8 MACs per DSP: 2 packs row pairs (DSP48E2), 1 does not (PV_II 1 for any variant)
#endif
#ifndef ISEG_TEST_KV_OVERLAP
#define ISEG_TEST_KV_OVERLAP 1  // head h + 1's K/V load under head h (schedule.h KvLoad); 0: each in its head's Q(0)
#endif
#ifndef ISEG_TEST_SD_DEFER
#define ISEG_TEST_SD_DEFER 1  // a Q.K^T's last score tile drains in the next pass (schedule.h ScoreDrain)
#endif
#ifndef ISEG_TEST_KD
#define ISEG_TEST_KD 1  // the array's K unroll: k per step of a PE (gemm.h kd_of)
#endif
#ifndef ISEG_TEST_SM_ROW_SHIFT
#define ISEG_TEST_SM_ROW_SHIFT 1  // the Shiftmax row shift (precise8); 0: the engine rejects precise8 layers
#endif

// The configs have internal linkage: each compiled harness is a library of its own, and the engine's statics
// (run_layers' buffers, the cycle counter) are template statics of Cfg, which the dynamic linker would otherwise
// merge across every harness library a test process loads (GNU unique symbols, whatever RTLD_LOCAL says): a C = 16
// harness would then run on the buffers of the C = 8 one loaded before it.
namespace {
struct TestCfg {
    static constexpr int R = ISEG_TEST_R;
    static constexpr int C = ISEG_TEST_C;
    static constexpr int KMAX = ISEG_TEST_KMAX;
    static constexpr int NMAX = ISEG_TEST_NMAX;
    static constexpr int CMAX = ISEG_TEST_CMAX;
    static constexpr int IMG_H = ISEG_TEST_IMG;
    static constexpr int IMG_W = ISEG_TEST_IMG;
    static constexpr int PATCH_MAX = 16;
    static constexpr int NCMAX = ISEG_TEST_CMAX;                   // most output channels of a GEMM
    static constexpr int WROWS = ISEG_TEST_WROWS;                  // on-chip weight rows (K x ceil(N/C))
    static constexpr int AXI_BYTES = ISEG_TEST_AXI;                // bytes per memory beat
    static constexpr int A_WORD = 4;                                // i16 elements per left-operand bank word
    static constexpr int OUT_LANES = ISEG_TEST_OUT_LANES;          // output-stage lanes
    static constexpr int SM_LANES = ISEG_TEST_SM_LANES, S_LANES = ISEG_TEST_S_LANES;
    static constexpr int PV_LANES = ISEG_TEST_PV_LANES;            // P.V output lanes (attention.h pv_lanes)
    static constexpr int LN_LANES = ISEG_TEST_LN_LANES;            // its trace puts: a power of two (axi.h)
    static constexpr int DHMAX = 64;                               // largest d_head
    static constexpr int PV_II = ISEG_TEST_PV_II;                  // P.V cycles per key (attention.h)
    static constexpr bool KV_OVERLAP = ISEG_TEST_KV_OVERLAP != 0;  // the next head's K/V under this one
    static constexpr bool SD_DEFER = ISEG_TEST_SD_DEFER != 0;      // a QK's last score tile in the next pass
    static constexpr int PACK = ISEG_TEST_PACK;                    // int8 MACs per DSP of the array
    static constexpr int KD = ISEG_TEST_KD;                        // k per step of a PE (the K unroll)
    static constexpr bool SM_ROW_SHIFT = ISEG_TEST_SM_ROW_SHIFT != 0;  // Shiftmax row shift (precise8)
    static constexpr int A_LANES = ISEG_TEST_A_LANES;              // argmax classes per step
    static constexpr int PIX = ISEG_TEST_PIX, LAB = ISEG_TEST_LAB;  // pixels / labels per stream beat
};

// A config carrying a constexpr table, the way the generator emits it (exercises run_engine and
// ISEG_CSIM_ENTRY): one COPY_CONST layer, 2 rows x 3 int16 from blob offset 0 to scratch 0, both rows padded to
// whole beats (a row stride of one 8-byte beat, 4 elements; 16 bytes, 8 elements, at AXI 16).
constexpr iseg::LayerDesc static_layer_0() {
    iseg::LayerDesc d = iseg::empty_layer();
    d.op = iseg::OP_COPY_CONST;
    d.T = 2;
    d.N = 3;
    d.out_bits = 16;
    d.out = 0;
    d.out_stride = (6 + ISEG_TEST_AXI - 1) / ISEG_TEST_AXI * ISEG_TEST_AXI / 2;
    d.in_stride = d.out_stride;
    d.cst = 0;
    return d;
}
struct StaticCfg : TestCfg {
    static constexpr int n_layers = 1;
    static constexpr iseg::LayerDesc layers[n_layers] = {static_layer_0()};
};
constexpr iseg::LayerDesc StaticCfg::layers[];  // C++14: the odr-used static member needs a definition
}  // namespace

ISEG_CSIM_ENTRY(StaticCfg, StaticCfg::layers, StaticCfg::n_layers)

namespace {
template <class F>
int guarded(F f) {
    iseg::csim_error_buffer()[0] = 0;
    try {
        f();
        return 0;
    } catch (const iseg::CsimError& e) {
        iseg::csim_set_error(e);
        return 1;
    }
}
}  // namespace

// Stream script: ops[i] >= 0 writes ops[i], -1 reads (appends to out), -2 checks empty() (appends
// 1/0), -3 checks full(). depth > 0: hls::stream<int32_t, 4> if depth == 4 (template DEPTH), else
// an unsized stream attached to `depth` elements; depth == 0: unsized and never attached.
// Returns the number of outputs, or -1 on a C-sim error (message in h_last_error), and the
// high-water mark in *high.
template <class S>
static long run_script(S& s, const int32_t* ops, int n_ops, int32_t* out, long* high) {
    long n_out = 0;
    const int rc = guarded([&] {
        for (int i = 0; i < n_ops; ++i) {
            if (ops[i] >= 0)
                s.write(ops[i]);
            else if (ops[i] == -1)
                out[n_out++] = s.read();
            else if (ops[i] == -2)
                out[n_out++] = s.empty() ? 1 : 0;
            else
                out[n_out++] = s.full() ? 1 : 0;
        }
    });
    *high = s.max_size();
    return rc ? -1 : n_out;
}

extern "C" {

int h_sizeof_layer_desc(void) { return int(sizeof(iseg::LayerDesc)); }
int h_array_rows(void) { return TestCfg::R; }
int h_out_lanes(void) { return TestCfg::OUT_LANES; }
int h_ln_lanes(void) { return TestCfg::LN_LANES; }
int h_axi_bytes(void) { return TestCfg::AXI_BYTES; }
int h_array_cols(void) { return TestCfg::C; }
const char* h_last_error(void) { return iseg::csim_error_buffer(); }
long long h_last_cycles(void) { return iseg::csim_cycles_total(); }

// requant along the last axis of length C (per-channel m, e, o of length C).
void h_requant(const int64_t* z, long n, int C, const int32_t* m, const int32_t* e, const int64_t* o, int bits,
               int32_t* out) {
    for (long i = 0; i < n; ++i) {
        const iseg::RqParams p = {m[i % C], e[i % C], o[i % C]};
        out[i] = iseg::requant(z[i], p, bits);
    }
}

void h_shexp(const int64_t* x, long n, int32_t x0, int nb, int64_t* out) {
    for (long i = 0; i < n; ++i) out[i] = iseg::shexp(x[i], x0, nb);
}

void h_isqrt(const int64_t* v, long n, int64_t* out) {
    for (long i = 0; i < n; ++i) out[i] = iseg::isqrt_digit(v[i]);
}

void h_int_add(const int32_t* a, const int32_t* b, long n, int32_t ma, int32_t mb, int32_t e, int bits,
               int32_t* out) {
    for (long i = 0; i < n; ++i) out[i] = iseg::int_add(a[i], b[i], ma, mb, e, bits);
}

int h_shiftmax(const int8_t* x, int rows, int n, int32_t x0, int32_t variant, int16_t* p, uint8_t* rsh) {
    return guarded([&] {
        ISEG_CHECK(n >= 1 && n <= TestCfg::NMAX, "h_shiftmax: n exceeds NMAX");
        for (int r = 0; r < rows; ++r)
            iseg::shiftmax_row<TestCfg::NMAX>(x + long(r) * n, n, x0, variant, p + long(r) * n, rsh[r]);
    });
}

// The GELU row op's pieces (gelu.h) as gelu_layer runs them, minus m_axi and requant: each row loaded a beat
// (AXI_BYTES) at a time with its max folded in, then the GELU pass at OUT_LANES lanes into y (i32).
struct GeluToY {
    int32_t* y;
    void operator()(int c, int32_t v) const { y[c] = v; }
};

int h_gelu(const int8_t* x, int rows, int n, const iseg::GeluParams* g, int32_t* y) {
    return guarded([&] {
        ISEG_CHECK(n >= 1 && n <= TestCfg::CMAX, "h_gelu: n exceeds CMAX");
        constexpr int W = TestCfg::AXI_BYTES, L = TestCfg::OUT_LANES;
        static iseg::GeluRowBuf<TestCfg::CMAX, iseg::gelu_banks<W, L>()> buf;
        for (int r = 0; r < rows; ++r) {
            const uint8_t* src = reinterpret_cast<const uint8_t*>(x + long(r) * n);
            int32_t M = 0;
            for (int c0 = 0; c0 < n; c0 += W) M = iseg::gelu_take<W>(buf, src + c0, c0, n - c0 < W ? n - c0 : W, M);
            const GeluToY out = {y + long(r) * n};
            iseg::gelu_row<L>(buf, n, M, *g, out);
        }
    });
}

// The element-wise lambda path the GEMM output stage uses.
void h_gelu_lambda(const int8_t* x, long n, const iseg::GeluParams* g, int32_t* y) {
    for (long i = 0; i < n; ++i) y[i] = iseg::gelu_lambda(x[i], *g);
}

int h_run(const iseg::LayerDesc* table, int n_layers, const uint8_t* weights, const uint8_t* pixels,
          uint8_t* labels, uint8_t* scratch, iseg::TraceFn trace) {
    return iseg::csim_run<TestCfg>(table, n_layers, weights, pixels, labels, scratch, trace);
}

// The port check's counting rules (hls/iseg_ports.h) on a one-bank buffer: ONE iteration of a pipelined loop
// at initiation interval `ii` makes n accesses (word words[i], a write if wr[i]), then the same accesses run
// again outside any pipelined loop (sequential code: not checked). Returns csim_port_report's count.
struct PortProbe {
    int16_t m[64];
    ISEG_PORTS(m, 1);
};

int h_port_probe(const int* words, const int* wr, int n, int ii, char* buf, long len) {
    static PortProbe p;
    iseg::port_log_reset();
    {
        ISEG_PIPELINE(PORT_PROBE, ii);
        for (int i = 0; i < n; ++i) {
            if (wr[i])
                ISEG_WR(p, m, 0, words[i]);
            else
                ISEG_RD(p, m, 0, words[i]);
        }
    }
    for (int i = 0; i < n; ++i) ISEG_WR(p, m, 0, words[i]);
    return iseg::csim_port_report(buf, len);
}

int h_ports(char* buf, long len) { return iseg::csim_port_report(buf, len); }

// The static demand's counting rules (hls/iseg_ports.h SiteTable, the union of a loop's paths) on a one-bank
// buffer: iterations of one pipelined loop, acc[3 i ..] = (iteration, site 0 / 1, word), each access a read through
// the site's own ISEG_RD (two expansions: two sites). Returns csim_static_report's line count.
struct StaticProbe {
    int16_t m[64];
    ISEG_PORTS(m, 1);
};

int h_static_probe(const int* acc, int n, char* buf, long len) {
    static StaticProbe p;
    iseg::port_log_reset();
    iseg::static_reset();
    for (int i = 0; i < n;) {
        ISEG_PIPELINE(STATIC_PROBE, 1);
        const int it = acc[3 * i];
        for (; i < n && acc[3 * i] == it; ++i) {
            if (acc[3 * i + 1] == 0)
                ISEG_RD(p, m, 0, acc[3 * i + 2]);
            else
                ISEG_RD(p, m, 0, acc[3 * i + 2]);
        }
    }
    return iseg::csim_static_report(buf, len);
}

int h_static(char* buf, long len) { return iseg::csim_static_report(buf, len); }

// The engine loop's two ports per bank (hls/schedule.h A_PORT_A / Q_PORT_A, S_PORT_A / S_PORT_B): one pass of
// engine_pass whose writer is aimed, against the schedule, at the half its buffer's other user reads (clash != 0),
// or the schedule's way (clash 0). which 0: a GEMM tile, the A loader writing g.a while the array reads it; 1: a
// Q.K^T key loop, the Q loader writing sm.q while the array reads it; 2: the same loop, the Shiftmax reading the score
// block the score lanes write; 3: a GEMM tile with the weight prefetch (a write request of g.w) aimed at the half of
// w the array reads. On one port per bank the clash would lose an access, so the engine refuses it: 1 and
// the C-sim error (h_last_error); 0 when the pass ran. h_ports: the pass's per-iteration port report.
int h_engine_clash(int which, int clash) {
    typedef TestCfg Cfg;
    constexpr int R = Cfg::R, C = Cfg::C;
    static iseg::GemmBuffers<Cfg> g;
    static iseg::AttSm<Cfg> sm;
    static iseg::PassState<Cfg> ps;
    static iseg::beat_t<Cfg> blob[16], scratch[256];  // zeros: the loaders' bytes, the array's weights
    iseg::port_log_reset();
    return guarded([&] {
        iseg::axi_bind(Cfg::AXI_BYTES, blob, scratch);
        iseg::Prefetch pf = iseg::prefetch_none();
        ps = iseg::PassState<Cfg>();
        iseg::stage_reset(ps.os);
        iseg::stage_reset(ps.ts);
        ps.ln.phase = iseg::LN_DONE;
        g.wcur = 0;
        iseg::LayerDesc d = {};
        iseg::Pass p;
        if (which == 0 || which == 3) {  // a one-tile GEMM (N = C), K = 16: the A loader's 8 steps under the array's 16
            d.op = iseg::OP_LINEAR;
            d.T = R;
            d.K = 16;
            d.N = C;
            d.in_stride = 16;
            d.out_bits = 8;
            const int a_share = iseg::a_beats(R, d.K, iseg::load_lanes<Cfg>());
            const int steps = iseg::gemm_tile_steps(d.K, 0, a_share, 0, 0);
            p = iseg::pass_of(iseg::PM_GEMM, steps, steps);
            p.cur = 0;
            p.a_share = a_share;
            p.steps = p.steps_p = steps;
            ps.al = iseg::ALoad{0, 16, R, d.K, clash && which == 0 ? p.cur : p.cur ^ 1, 0, 0};
            p.wh = g.wcur;
            if (which == 3) {  // 64 bytes of the blob into w, a beat per step beside the array
                pf = iseg::Prefetch{0, 0, 64, clash ? g.wcur : g.wcur ^ 1};
                p.w_share = int(iseg::prefetch_beats(pf, iseg::prefetch_lanes<Cfg>()));
            }
        } else {  // a query block's key loop over C keys (one key tile), d_head 8, its Q block's successor loading
            d.op = iseg::OP_ATTENTION;
            d.T = C;
            d.d_head = 8;
            d.heads = 1;
            d.in_stride = 8;
            d.sm_x0 = -100;
            iseg::Seq sq = {};
            sq.rq_s = iseg::RqParams{1, 0, 0};
            p = iseg::qk_pass<Cfg>(sq, d, R, 0, 0, false, false, false, sm, g);
            ps.q = iseg::q_block<Cfg>(0, 8, R, d.d_head, which == 1 && clash ? p.qh : p.qh ^ 1);
            sm.st = iseg::sm_idle();
            if (which == 2) {  // the Shiftmax's exp pass over a block of R rows (row maxima above every score)
                sm.st = iseg::sm_begin(clash ? p.half : p.half ^ 1, R);
                for (int h = 0; h < 2; ++h)
                    for (int r = 0; r < R; ++r) sm.mx[h][r] = 127;
            }
        }
        iseg::engine_pass<Cfg>(p, d, blob, scratch, scratch, g, sm, pf, ps);
    });
}

// Iterations of a pipelined loop at `ii` making n m_axi requests acc[5 i ..] = (iteration, bundle, buffer 0 blob /
// 1 scratch, byte offset of the beat, is_write) with `beat`-byte beats (a new iteration whenever the first field
// changes); the same requests again outside the loop (never counted). Returns the port report's line count, or -2
// after a C-sim error (h_error: a request naming a bundle that misses its buffer, or not a whole beat).
// h_axi_bursts: its runs.
int h_axi_probe(int beat, const int* acc, int n, int ii, char* buf, long len) {
    static uint8_t blob[4096], scratch[4096];
    iseg::port_log_reset();
    const int rc = guarded([&] {
        iseg::axi_bind(beat, blob, scratch);
        for (int i = 0; i < n;) {
            ISEG_PIPELINE(AXI_PROBE, ii);
            const int it = acc[5 * i];
            for (; i < n && acc[5 * i] == it; ++i) {
                const int* a = acc + 5 * i + 1;
                iseg::axi_req(a[0], a[3] != 0, (a[1] ? scratch : blob) + a[2], ISEG_SITE);
            }
        }
        for (int i = 0; i < n; ++i) {
            const int* a = acc + 5 * i + 1;
            iseg::axi_req(a[0], a[3] != 0, (a[1] ? scratch : blob) + a[2], ISEG_SITE);
        }
    });
    return rc != 0 ? -2 : iseg::csim_port_report(buf, len);
}

int h_axi_bursts(char* buf, long len) { return iseg::csim_burst_report(buf, len); }

// run_engine<Cfg> with the constexpr table of StaticCfg (the synthesis entry, in C-sim).
int h_run_static(const uint8_t* weights, uint8_t* scratch) {
    typedef iseg::beat_t<StaticCfg> beat;  // a struct of bytes in C-simulation (compat.h)
    return guarded([&] {
        hls::stream<iseg::pix_beat_t<StaticCfg> > pix("pixels");
        hls::stream<iseg::label_beat_t<StaticCfg> > lab("labels");
        iseg::run_engine<StaticCfg>(pix, lab, reinterpret_cast<const beat*>(weights), reinterpret_cast<beat*>(scratch),
                                    reinterpret_cast<beat*>(scratch));
    });
}

long h_stream_script(int depth, const int32_t* ops, int n_ops, int32_t* out, long* high) {
    if (depth == 4) {
        hls::stream<int32_t, 4> s("fifo4");
        return run_script(s, ops, n_ops, out, high);
    }
    static int32_t storage[1024];
    hls::stream<int32_t> s("port");
    if (depth > 0) s.attach(storage, depth);
    return run_script(s, ops, n_ops, out, high);
}

}  // extern "C"
