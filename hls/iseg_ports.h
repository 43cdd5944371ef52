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
//   ISEG_RW(obj, buf, bank, word, write)      one access whose direction is a run-time value: ONE site that reads or
//                              writes, the model of one port shared by the two arms of an if / else (the engine
//                              loop's port A of a row bank: the array's read, or a loader's write, schedule.h)
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
    const char* loop;  // its loop label (the engine loop: its mode's name); nullptr outside pipelined loops
    const char* sloop; // the loop of the source (the engine loop: ENGINE_PASS, whatever the mode)
    int ii;
    int n;             // entries used
    int dropped;       // (loop, buffer) pairs past the table (reported as such)
    PortEntry e[48];
};

// Shared by every C-sim library of the process like csim_api.h's error buffer; reset by csim_run.
inline PortLog& port_log() {
    static PortLog log = {0, nullptr, nullptr, 1, 0, 0, {}};
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

// ---------------------------------------------------------------------------------------------
// The union of a loop's paths (docs/hls.md, "What csynth would likely find first", item 11). The check above
// counts the accesses one iteration MAKES. An HLS tool schedules a pipelined loop once, for every path any
// iteration could take: each access site of the source is an operation of its own, and two sites share a port
// only when the tool proves them exclusive (the two arms of one if / else), which it does not for separate `if`s
// on run-time flags such as the engine loop's modes. So per (source loop, buffer bank) this counts, over the whole
// run, the STATIC demand: the sum over the access sites that ever reached the bank of the most distinct words each
// touched in one iteration (an unrolled site touching two words is two operations). ceil(demand / 2) is the II
// that bank's two ports allow. Per (source loop, m_axi bundle, direction) likewise: the sum over sites of the most
// whole-beat REQUESTS each made in one iteration (axi.h: every access is one beat); the II it allows is the demand
// itself (one request per bundle, direction and cycle). Reported by csim_static_report (csim_api.h); measured, not
// enforced (docs/hls.md, item 11): the engine loop's union is within II 1 on every bank and bundle since its row
// banks take their accesses through two port sites per bank (schedule.h A_PORT_A / A_PORT_B and the like).
struct StaticEntry {
    const char* sloop;
    char buf[16];
    int demand;  // the worst bank's (or the bundle's) operations per iteration, summed over sites
    int sites;   // how many sites make it
};

struct StaticLog {
    int n, dropped;
    StaticEntry e[64];
};

inline StaticLog& static_log() {
    static StaticLog log = {0, 0, {}};
    return log;
}

// Runs of the process (static_reset): a site table of an older run starts over (the buffers are statics that
// outlive a run, so without it one run's sites would count in the next).
inline int& static_epoch() {
    static int epoch = 0;
    return epoch;
}

inline void static_reset() {
    static_log() = StaticLog();
    ++static_epoch();
}

inline void static_log_update(const char* sloop, const char* buf, int demand, int sites) {
    StaticLog& g = static_log();
STATIC_FIND:
    for (int i = 0; i < g.n; ++i) {
        StaticEntry& e = g.e[i];
        if (e.sloop == sloop && strcmp(e.buf, buf) == 0) {  // sloop: a string literal (one address per label)
            if (demand > e.demand) {
                e.demand = demand;
                e.sites = sites;
            }
            return;
        }
    }
    if (g.n == int(sizeof g.e / sizeof g.e[0])) {
        ++g.dropped;
        return;
    }
    StaticEntry& e = g.e[g.n++];
    e.sloop = sloop;
    snprintf(e.buf, sizeof e.buf, "%s", buf);
    e.demand = demand;
    e.sites = sites;
}

// Per (source loop, access site): the most operations the site made in one iteration; a bank's or a bundle's
// static demand is the sum over its sites. kSites sites are tracked per bank or bundle.
struct SiteTable {
    static constexpr int kSites = 24;
    int epoch;  // static_epoch() of the run the table counts
    int n;
    const char* sloop[kSites];
    const void* site[kSites];
    int most[kSites];

    // Record that `site` made `ops` operations in one iteration of `sloop`. When that raises the site's most, the
    // new sum over sloop's sites and their count go to the static log under `buf` (only then: this runs on every
    // access of a C-simulation).
    void note(const char* lp, const void* st, int ops, const char* buf) {
        if (epoch != static_epoch()) {
            epoch = static_epoch();
            n = 0;
        }
        int at = -1;
    SITE_FIND:
        for (int i = 0; i < n && at < 0; ++i) {
            if (site[i] == st && sloop[i] == lp) at = i;
        }
        if (at < 0) {
            if (n == kSites) csim_fail("static port count: more access sites than SiteTable::kSites", __FILE__, __LINE__);
            at = n++;
            sloop[at] = lp;
            site[at] = st;
            most[at] = 0;
        }
        if (ops <= most[at]) return;
        most[at] = ops;
        int demand = 0, sites = 0;
    SITE_SUM:
        for (int i = 0; i < n; ++i) {
            if (sloop[i] != lp) continue;
            demand += most[i];
            ++sites;
        }
        static_log_update(lp, buf, demand, sites);
    }
};

// One iteration of a pipelined loop (RAII: the loop body's scope). A pipelined loop inside another's
// iteration (isqrt_digit inside the LayerNorm loader) is unrolled into it by the tool: its accesses count
// in the outer iteration.
struct PipeIter {
    bool outer;
    PipeIter(const char* loop, int ii, const char* sloop) : outer(port_log().loop == nullptr) {
        if (!outer) return;
        PortLog& l = port_log();
        ++l.iter;
        l.loop = loop;
        l.sloop = sloop;
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
    mutable int n[NB];         // distinct (site, word, read | write) entries in that iteration
    mutable int used[NB];      // distinct (word, read | write) accesses among them: what the ports serve
    mutable long word[NB][kWays];
    mutable bool wr[NB][kWays];
    mutable const void* by[NB][kWays];  // the access site of each entry
    mutable SiteTable sites[NB];        // the static demand (the union of the loop's paths, above)

    void use(const char* buf, int bank, long w, bool write, const void* site) const {
        const PortLog& l = port_log();
        if (l.loop == nullptr) return;
        if (bank < 0 || bank >= NB) csim_fail("port check: bank index out of range", __FILE__, __LINE__);
        if (it[bank] != l.iter) {
            it[bank] = l.iter;
            n[bank] = used[bank] = 0;
        }
        const int seen = n[bank] < kWays ? n[bank] : kWays;
        bool same_access = false;
        int of_site = 0;  // distinct words (and directions) this site touched this iteration, before this one
    PORT_SEEN:
        for (int i = 0; i < seen; ++i) {
            const bool same = word[bank][i] == w && wr[bank][i] == write;
            if (by[bank][i] == site) {
                if (same) return;  // the site touched this word already: one operation
                ++of_site;
            }
            same_access |= same;  // another site touched it: the same port access (in this iteration)
        }
        if (n[bank] < kWays) {
            word[bank][n[bank]] = w;
            wr[bank][n[bank]] = write;
            by[bank][n[bank]] = site;
        }
        ++n[bank];
        sites[bank].note(l.sloop, site, of_site + 1, buf);
        if (same_access) return;
        const int u = ++used[bank];
        const int allowed = 2 * l.ii;
        if (u > allowed) port_log_excess(buf, u, allowed);
    }

};

// ---------------------------------------------------------------------------------------------
// The same check for the m_axi bundles (top.cpp). The ports are arrays of beats (axi.h): every access is a
// request for one whole beat, read (beat_read, RdCache) or written (WrStage). An AXI master moves one beat per
// cycle on its read channel and one on its write channel, so an iteration of a loop at II may make at most II
// requests per bundle and direction; two requests for the same beat in one iteration are one. Whatever exceeds
// II is recorded like a bank excess, with the buffer named "gmemN.read" / "gmemN.write".
//
// Each access names its bundle (ISEG_BEAT_RD, ISEG_CACHE_RD, ISEG_STAGE_PUT, ...); axi_bind tells the check which
// buffer each bundle carries (gmem0 the weights blob, gmem1 the scratch, gmem2 a second port onto the scratch), so
// an access that names a bundle that does not reach its buffer stops the C-simulation (gmem1 and gmem2 carry the
// same buffer: which of the two an access names is the code's word).
enum AxiBuffer : int { AXI_BLOB = 1, AXI_SCRATCH = 2 };

// Bursts as executed, per (pipelined loop, bundle, direction): a request for the beat right after (or the same as)
// the previous one of its bundle and direction, in the same loop, continues a burst; any other starts one. What
// Vitis makes of them is its own (it infers bursts from the code, not from the addresses), but the figure says how
// long the sequential runs a loop asks for are: a loop of short runs leans on the adapter's outstanding requests
// to hide DDR latency (docs/hls.md, "m_axi ports").
struct BurstEntry {
    const char* loop;
    int bundle, dir;
    long long bytes, bursts;
};

struct AxiLog {
    int beat;                                   // bytes per beat (Cfg::AXI_BYTES); 0: not bound
    const uint8_t* blob;                        // base addresses of the two buffers
    const uint8_t* scratch;
    int carries[kAxiBundles];                   // AxiBuffer bits each bundle may reach
    long long iter[kAxiBundles][2];             // iteration of the requests below
    int n[kAxiBundles][2];
    uintptr_t req[kAxiBundles][2][16];          // the distinct beats requested in that iteration
    long long bytes[kAxiBundles][2];            // bytes the C++ used this run (every access, pipelined or not)
    const char* run_loop[kAxiBundles][2];       // the current burst: its loop and its last beat
    uintptr_t run_at[kAxiBundles][2];
    int nbursts, dropped;
    BurstEntry bursts[64];
    // the static demand (requests per iteration summed over sites): this iteration's requests per site
    long long siter[kAxiBundles][2];
    int nsite[kAxiBundles][2];
    const void* ssite[kAxiBundles][2][32];
    int sreq[kAxiBundles][2][32];
    SiteTable sites[kAxiBundles][2];
};

inline void axi_burst(AxiLog& a, int bundle, int d, const char* loop, uintptr_t at) {
    const uintptr_t prev = a.run_at[bundle][d];
    const bool cont = a.run_loop[bundle][d] == loop && (at == prev || at == prev + uintptr_t(a.beat));
    a.run_loop[bundle][d] = loop;
    a.run_at[bundle][d] = at;
AXI_BURST_FIND:
    for (int i = 0; i < a.nbursts; ++i) {
        BurstEntry& e = a.bursts[i];
        if (e.loop == loop && e.bundle == bundle && e.dir == d) {  // labels are string literals: one address each
            if (at != prev || !cont) e.bytes += a.beat;
            if (!cont) ++e.bursts;
            return;
        }
    }
    if (a.nbursts == int(sizeof a.bursts / sizeof a.bursts[0])) {
        ++a.dropped;
        return;
    }
    a.bursts[a.nbursts++] = BurstEntry{loop, bundle, d, (long long)a.beat, 1};
}

inline AxiLog& axi_log() {
    static AxiLog log = {};
    return log;
}

// Called by run_layers (C-sim) with the buffers the bundles carry.
inline void axi_bind(int beat, const void* blob, const void* scratch) {
    AxiLog& a = axi_log();
    a = AxiLog();
    a.beat = beat;
    a.blob = static_cast<const uint8_t*>(blob);
    a.scratch = static_cast<const uint8_t*>(scratch);
    a.carries[GMEM0] = AXI_BLOB;
    a.carries[GMEM1] = AXI_SCRATCH;
    a.carries[GMEM2] = AXI_SCRATCH;
}

// Bytes the C++ used of a bundle (the DDR traffic generator/estimate.py counts): the span of a read it takes from
// a beat, the bytes a store puts into a stage. Sequential code included.
inline void axi_moved(int bundle, bool write, long n) {
    AxiLog& a = axi_log();
    if (a.beat == 0 || n <= 0 || bundle < 0 || bundle >= kAxiBundles) return;
    a.bytes[bundle][write ? 1 : 0] += n;
}

// One request of a whole beat (its address) at `site`: the buffer check, the bursts, the static demand and the
// per-iteration request count.
inline void axi_req(int bundle, bool write, const void* beat, const void* site) {
    AxiLog& a = axi_log();
    if (a.beat == 0) return;
    const uintptr_t p = uintptr_t(beat), b = uintptr_t(a.blob), s = uintptr_t(a.scratch);
    // the buffer the address lies in: the nearest base at or below it
    const bool in_b = p >= b && (p < s || s < b), in_s = p >= s && (p < b || b < s);
    const int buf = in_b ? AXI_BLOB : in_s ? AXI_SCRATCH : 0;
    if (bundle < 0 || bundle >= kAxiBundles || (a.carries[bundle] & buf) == 0)
        csim_fail("m_axi check: an access names a bundle that does not carry its buffer", __FILE__, __LINE__);
    if ((p - (in_b ? b : s)) % uintptr_t(a.beat) != 0)
        csim_fail("m_axi check: a request that is not a whole beat", __FILE__, __LINE__);
    const int d = write ? 1 : 0;
    const PortLog& l = port_log();
    if (l.loop == nullptr) return;
    axi_burst(a, bundle, d, l.loop, p);
    {  // the static demand: requests per iteration, per site
        static const char* snames[kAxiBundles][2] = {
            {"gmem0.read", "gmem0.write"}, {"gmem1.read", "gmem1.write"}, {"gmem2.read", "gmem2.write"}};
        if (a.siter[bundle][d] != l.iter) {
            a.siter[bundle][d] = l.iter;
            a.nsite[bundle][d] = 0;
        }
        int& ns = a.nsite[bundle][d];
        int at = -1;
    AXI_SITE:
        for (int i = 0; i < ns; ++i)
            if (a.ssite[bundle][d][i] == site) at = i;
        if (at < 0) {
            if (ns == 32) csim_fail("static m_axi count: more than 32 sites in one iteration", __FILE__, __LINE__);
            at = ns++;
            a.ssite[bundle][d][at] = site;
            a.sreq[bundle][d][at] = 0;
        }
        a.sreq[bundle][d][at] += 1;
        a.sites[bundle][d].note(l.sloop, site, a.sreq[bundle][d][at], snames[bundle][d]);
    }
    if (a.iter[bundle][d] != l.iter) {
        a.iter[bundle][d] = l.iter;
        a.n[bundle][d] = 0;
    }
    int& n = a.n[bundle][d];
AXI_SEEN:
    for (int i = 0; i < n; ++i)
        if (a.req[bundle][d][i] == p) return;  // the same beat twice in one iteration: one request
    if (n == 16) csim_fail("m_axi check: more than 16 requests in one iteration", __FILE__, __LINE__);
    a.req[bundle][d][n++] = p;
    if (n > l.ii) {
        static const char* names[kAxiBundles][2] = {
            {"gmem0.read", "gmem0.write"}, {"gmem1.read", "gmem1.write"}, {"gmem2.read", "gmem2.write"}};
        port_log_excess(names[bundle][d], n, l.ii);
    }
}

}  // namespace iseg

#ifndef ISEG_NO_PORT_CHECK  // (compat.h then defines them to nothing)
#define ISEG_AXI_BIND(beat, blob, scratch) ::iseg::axi_bind((beat), (blob), (scratch))
// ISEG_SITE: a unique address per expansion of an access macro (a static in a lambda of its own), the access
// site the static demand counts.
#define ISEG_SITE ([]() -> const void* { static const char iseg_site_ = 0; return &iseg_site_; }())
#define ISEG_AXI_REQ(bundle, write, beat, site) ::iseg::axi_req((bundle), (write), (beat), (site))
#define ISEG_AXI_MOVED(bundle, write, n) ::iseg::axi_moved((bundle), (write), long(n))
#define ISEG_PIPELINE(label, ii) ::iseg::PipeIter iseg_pipe_iter_(#label, ii, #label)
#define ISEG_PIPELINE_AS(label, ii, name) ::iseg::PipeIter iseg_pipe_iter_((name), ii, #label)
#define ISEG_PORTS(buf, NB) ::iseg::Ports<(NB)> buf##_ports
#define ISEG_RD(obj, buf, bank, w) (obj).buf##_ports.use(#buf, (bank), long(w), false, ISEG_SITE)
#define ISEG_WR(obj, buf, bank, w) (obj).buf##_ports.use(#buf, (bank), long(w), true, ISEG_SITE)
#define ISEG_RW(obj, buf, bank, w, write) (obj).buf##_ports.use(#buf, (bank), long(w), bool(write), ISEG_SITE)
// The id of the current pipelined iteration (one count over every loop of a run): distances in iterations, for the
// checks of a DEPENDENCE ... inter false (gemm.h: the LayerNorm sums' ring)
#define ISEG_ITER() (::iseg::port_log().iter)
#endif
