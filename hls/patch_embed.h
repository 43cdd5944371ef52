// patch_embed.h -- the pixel path of the first layer (numerics.md §6).
//
// RGB u8 pixels arrive in raster order on a stream, one word per pixel (pixel_t: R in bits 0-7,
// G in 8-15, B in 16-23). A line buffer of P image rows turns them into per-patch vectors,
// element k = (py*P + px)*3 + c, value u - 128 as int8, patches in raster order over the grid.
// The vectors are staged as the (T, 3*P*P) int8 left operand of the GEMM (scratch + d.in); the
// GEMM then computes RQ_16(x . W + b) exactly like a LINEAR layer.
#pragma once

#include "gemm.h"

namespace iseg {

typedef uint32_t pixel_t;  // 0x00BBGGRR
typedef uint8_t label_t;

// in: pixels (img_h, img_w) raster order on `pixels`; out: (T, 3*P*P) int8 at `stage`, row
// stride 3*P*P, T = (img_h/P) * (img_w/P).
//
// Fill and staging overlap through a ping-pong line buffer. Staging a grid row writes 3 bytes per
// pixel of it, as many bytes as its fill reads, so one pipelined loop of P*img_w beats per pass can
// read pixel i of grid row s into half s&1 while it stages pixel i of grid row s-1 from the other
// half. Pass 0 only fills (prologue), pass gh only stages (epilogue). The staging follows the pixel
// raster: pixel (py, x) of a grid row is element (py*P + x%P)*3 + c of patch x/P -- the same bytes
// at the same addresses as a patch-by-patch walk, only written in another order.
// Cycles: (gh + 1) * (P*img_w + a pipeline fill), instead of gh * (2*P*img_w + ...) unoverlapped.
template <class Cfg, class PixIn>
void patch_unpack(PixIn& pixels, int img_h, int img_w, int P, uint8_t* stage, long long& cycles) {
    int8_t line[2][Cfg::PATCH_MAX][Cfg::IMG_W][3];  // two halves of P image rows each, u - 128
    // one memory per (half, channel): a beat writes 3 bytes into one half and reads 3 from the other
    ISEG_PRAGMA(HLS ARRAY_PARTITION variable=line type=complete dim=1)
    ISEG_PRAGMA(HLS ARRAY_PARTITION variable=line type=complete dim=4)
    const int gh = img_h / P;
    const int gw = img_w / P;
    const long K = 3L * P * P;
    const int beats = P * img_w;
PE_PASS:
    for (int s = 0; s <= gh; ++s) {
        ISEG_PRAGMA(HLS loop_tripcount min=2 max=33)
        const bool fill = s < gh;   // grid row s arrives into half s&1
        const bool emit = s > 0;    // grid row s-1 leaves from the other half
        const int fh = s & 1;
        const int eh = fh ^ 1;
        const long base = emit ? long(s - 1) * gw * K : 0L;  // first patch row of grid row s-1
        int py = 0, x = 0, px = 0;  // pixel (py, x) of the grid row, x = gx*P + px
        long patch = base;          // stage offset of patch gx of grid row s-1
    PE_BEAT:
        for (int i = 0; i < beats; ++i) {
            ISEG_PRAGMA(HLS loop_tripcount min=1 max=8192)
            ISEG_PIPELINE(PE_BEAT, 1);
            // the two halves never alias within a pass: no carried dependence through `line`
            ISEG_PRAGMA(HLS DEPENDENCE variable=line inter false)
            if (emit) {
                const long at = patch + (long(py) * P + px) * 3;
                ISEG_AXI_WR(GMEM1, stage + at, 3);
                stage[at + 0] = uint8_t(line[eh][py][x][0]);
                stage[at + 1] = uint8_t(line[eh][py][x][1]);
                stage[at + 2] = uint8_t(line[eh][py][x][2]);
            }
            if (fill) {
                const pixel_t v = pixels.read();
                line[fh][py][x][0] = int8_t(int32_t(v & 0xff) - 128);
                line[fh][py][x][1] = int8_t(int32_t((v >> 8) & 0xff) - 128);
                line[fh][py][x][2] = int8_t(int32_t((v >> 16) & 0xff) - 128);
            }
            // raster counters instead of i / img_w, x % P: no dividers in the pipeline
            ++x;
            if (++px == P) {
                px = 0;
                patch += K;
            }
            if (x == img_w) {
                x = 0;
                ++py;
                patch = base;
            }
        }
    }
    ISEG_CYCLES(cycles, long(gh + 1) * (long(beats) + kPipeDepth));
}

}  // namespace iseg
