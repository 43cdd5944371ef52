// argmax_upsample.h -- the head (numerics.md §5.5): argmax over classes on the token grid, then
// nearest-neighbour upsampling into the raster-order label stream.
//
// Argmax ties go to the LOWEST class index (a later class wins only when strictly greater).
// Argmax commutes with nearest upsampling, so one grid row of labels (a line buffer of
// img_w / P labels) is computed, then sent P times, each label repeated P times per row.
#pragma once

#include "patch_embed.h"

namespace iseg {

// in: logits (gh*gw, n_cls) int16 at `logits`, row stride `stride` elements, gh = img_h/P,
// gw = img_w/P; out: img_h * img_w label beats on `labels`, raster order, TLAST on the last one.
// Cycles (C-sim count): per grid row gw * (n_cls - 1) argmax steps (+ a pipeline fill per token),
// then P * img_w label beats; argmax and label output do not overlap yet.
template <class Cfg, class LabOut>
void argmax_upsample(const uint8_t* logits, long stride, int n_cls, int img_h, int img_w, int P, LabOut& labels,
                     long long& cycles) {
    label_t line[Cfg::IMG_W];  // one grid row of labels (gw <= IMG_W)
    const int gw = img_w / P;
AU_GRID_ROW:
    for (int gy = 0; gy < img_h / P; ++gy) {
        ISEG_PRAGMA(HLS loop_tripcount min=1 max=32)
    AU_ARGMAX_TOKEN:
        for (int gx = 0; gx < gw; ++gx) {
            ISEG_PRAGMA(HLS loop_tripcount min=1 max=32)
            const uint8_t* row = logits + (long(gy) * gw + gx) * stride * 2;
            int32_t best = ld_i16(row);
            int32_t arg = 0;
        AU_ARGMAX_CLASS:
            for (int c = 1; c < n_cls; ++c) {
                ISEG_PRAGMA(HLS loop_tripcount min=1 max=150)
                ISEG_PRAGMA(HLS PIPELINE II=1)
                const int32_t v = ld_i16(row + 2 * c);
                if (v > best) {  // strictly greater: ties keep the lowest index
                    best = v;
                    arg = c;
                }
            }
            line[gx] = label_t(arg);
        }
        ISEG_CYCLES(cycles, long(gw) * (n_cls - 1 + kPipeDepth) + long(P) * img_w + kPipeDepth);
    AU_REPEAT_Y:
        for (int py = 0; py < P; ++py) {
            ISEG_PRAGMA(HLS loop_tripcount min=1 max=16)
            int gx = 0, px = 0;  // x / P and x % P as counters (no divider)
        AU_X:
            for (int x = 0; x < img_w; ++x) {
                ISEG_PRAGMA(HLS loop_tripcount min=1 max=512)
                ISEG_PRAGMA(HLS PIPELINE II=1)
                label_beat_t beat;
                beat.data = line[gx];
                beat.keep = 1;
                beat.strb = 1;
                beat.last = gy == img_h / P - 1 && py == P - 1 && x == img_w - 1;
                labels.write(beat);
                if (++px == P) {
                    px = 0;
                    ++gx;
                }
            }
        }
    }
}

}  // namespace iseg
