// argmax_upsample.h -- the head (numerics.md §5.5): argmax over classes on the token grid, then
// nearest-neighbour upsampling into the raster-order label stream.
//
// Argmax ties go to the LOWEST class index (a later class wins only when strictly greater).
// Argmax commutes with nearest upsampling, so one grid row of labels (a line of img_w / P labels)
// is computed, then sent P times, each label repeated P times per row.
#pragma once

#include "patch_embed.h"

namespace iseg {

// in: logits (gh*gw, n_cls) int16 at `logits`, row stride `stride` elements, gh = img_h/P,
// gw = img_w/P; out: img_h * img_w labels on `labels`, raster order, Cfg::LAB per beat (LAB divides P, so a
// beat's labels lie in one patch: LAB copies of its label), TLAST on the last beat.
//
// The argmax compares Cfg::A_LANES classes per step (A_LANES i16 logits: a power of two <= AXI_BYTES/2):
// ceil(n_cls / A_LANES) steps per token, gw tokens per grid row. One step reads within ONE memory beat (II = 1):
// its 2*A_LANES bytes start at a multiple of 2*A_LANES of a row that starts on a beat (rows are padded to whole
// beats, generator/plan.py _padded), whatever n_cls (the last step of a row reads fewer classes; C-simulation
// checks every span against its beat, axi.h; generator/estimate.py argmax_lane_options, make_plan). Within a
// step the lanes keep the first of their maxima, and a step's maximum replaces the running one only
// when strictly greater (its classes are all higher), so ties go to the lowest class.
//
// Argmax and label output overlap through a ping-pong label line (2 x gw labels): pass s runs ONE
// pipelined loop that advances the argmax of grid row s into half s&1 while it emits the P*img_w / LAB
// label beats of grid row s-1 from the other half. Pass 0 only computes (prologue), pass gh only
// emits (epilogue). Cycles (C-sim count, per pass): max(argmax steps, beats) + a pipeline fill, i.e.
//   (A + kReadDepth) + (gh - 1) * (max(A, B) + kReadDepth) + (B + kReadDepth) (the loop reads the logits on m_axi),
//   A = gw * ceil(n_cls / A_LANES), B = P * img_w / LAB.
// logits: byte offset of the (T, n_cls) i16 rows in the scratch port (stride: elements per row); a step's 2 L
// bytes lie in one beat (rows start on one), held in a one-beat cache (AXI_BYTES / 2 L steps share it).
template <class Cfg, class LabOut>
void argmax_upsample(const beat_t<Cfg>* scratch, long logits, long stride, int n_cls, int img_h, int img_w, int P,
                     LabOut& labels, long long& cycles) {
    static_assert(Cfg::A_LANES >= 1 && Cfg::A_LANES <= 8, "A_LANES (argmax classes per step) must be in [1, 8]");
    static_assert((Cfg::A_LANES & (Cfg::A_LANES - 1)) == 0,
                  "A_LANES must be a power of two (a step's 2*A_LANES bytes then never straddle a beat)");
    static_assert(Cfg::A_LANES == 1 || Cfg::AXI_BYTES % (2 * Cfg::A_LANES) == 0,
                  "A_LANES i16 logits must tile one memory beat (2*A_LANES divides AXI_BYTES)");
    constexpr int L = Cfg::A_LANES, LAB = Cfg::LAB;
    static_assert(LAB >= 1 && (LAB & (LAB - 1)) == 0, "LAB (labels per stream beat) must be a power of two");
    ISEG_CHECK(P % LAB == 0, "ARGMAX_UPSAMPLE: the patch must be a multiple of LAB (labels per stream beat)");
    label_t line[2][Cfg::IMG_W];  // two halves of one grid row of labels each (gw <= IMG_W)
    // one memory per half: a step writes a label into one half and reads one from the other
    ISEG_PRAGMA(HLS ARRAY_PARTITION variable=line type=complete dim=1)
    const int gh = img_h / P;
    const int gw = img_w / P;
    const int steps = (n_cls + L - 1) / L;  // argmax steps per token
    const int arg_steps = gw * steps;       // argmax steps per grid row
    const int beats = P * img_w / LAB;      // label beats per grid row
    RdCache<beat_t<Cfg> > c;
    cache_reset(c);
AU_PASS:
    for (int s = 0; s <= gh; ++s) {
        ISEG_PRAGMA(HLS loop_tripcount min=2 max=33)
        const int fh = s & 1;                      // grid row s: argmax into half s&1
        const int eh = fh ^ 1;                     // grid row s-1: beats from the other half
        const int na = s < gh ? arg_steps : 0;     // argmax steps of this pass
        const int nb = s > 0 ? beats : 0;          // label beats of this pass
        const int n = na > nb ? na : nb;
        long row = logits + long(s < gh ? s : 0) * gw * stride * 2;  // token (s, 0)
        int gx = 0, j = 0;                         // argmax: token gx, step j (classes j*L ...)
        int32_t best = 0, arg = 0;                 // running maximum of the token and its class
        int x = 0, px = 0, ex = 0;                 // beats: column x = ex*P + px, raster counters
    AU_STEP:
        for (int i = 0; i < n; ++i) {
            ISEG_PRAGMA(HLS loop_tripcount min=1 max=8192)
            ISEG_PIPELINE(AU_STEP, 1);
            // the two halves never alias within a pass: no carried dependence through `line`
            ISEG_PRAGMA(HLS DEPENDENCE variable=line inter false)
            if (i < nb) {
                label_beat_t<Cfg> beat;
                const label_t lb = line[eh][ex];
            AU_LABEL:
                for (int k = 0; k < LAB; ++k) {
                    ISEG_PRAGMA(HLS UNROLL)
                    beat_set(beat.data, k, lb);
                }
                beat.keep = ~0u;
                beat.strb = ~0u;
                beat.last = s == gh && i == nb - 1;
                labels.write(beat);
                x += LAB;
                if ((px += LAB) == P) {  // x / P and x % P as counters (no divider)
                    px = 0;
                    ++ex;
                }
                if (x == img_w) {  // next image row of the grid row: the same labels again
                    x = 0;
                    ex = 0;
                }
            }
            if (i < na) {
                int32_t sb = 0, sa = 0;  // this step's maximum and its lowest class
                const long at = row + 2L * j * L;
                uint8_t x[2 * L] = {};
                ISEG_PRAGMA(HLS ARRAY_PARTITION variable=x type=complete)
                beat_take<2 * L>(ISEG_CACHE_RD(GMEM1, c, scratch, at, 2 * (n_cls - j * L < L ? n_cls - j * L : L)),
                                 int(at % Cfg::AXI_BYTES), x);
            AU_LANE:
                for (int l = 0; l < L; ++l) {
                    ISEG_PRAGMA(HLS loop_tripcount min=1 max=8)
                    ISEG_PRAGMA(HLS UNROLL)
                    const int c = j * L + l;
                    if (c < n_cls) {  // lane 0 always holds a class (j < steps)
                        const int32_t v = int32_t(int16_t(uint16_t(uint16_t(x[2 * l]) | uint16_t(uint16_t(x[2 * l + 1]) << 8))));
                        if (l == 0 || v > sb) {  // strictly greater: ties keep the lowest lane
                            sb = v;
                            sa = c;
                        }
                    }
                }
                if (j == 0 || sb > best) {  // strictly greater: ties keep the earlier (lower) classes
                    best = sb;
                    arg = sa;
                }
                if (++j == steps) {
                    line[fh][gx] = label_t(arg);
                    j = 0;
                    ++gx;
                    row += stride * 2;
                }
            }
        }
        ISEG_CYCLES(cycles, long(n) + kReadDepth);  // reads the scores on gmem1
    }
}

}  // namespace iseg
