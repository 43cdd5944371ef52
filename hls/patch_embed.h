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

// in: pixels (img_h, img_w) raster order on `pixels`; out: (T, 3*P*P) int8 at byte offset `stage` of the scratch
// port, row stride `stride` bytes (3*P*P padded to whole beats, plan._padded), T = (img_h/P) * (img_w/P).
//
// Fill and staging overlap through a ping-pong line buffer. Staging a grid row writes 3 bytes per
// pixel of it, as many bytes as its fill reads, so one pipelined loop of P*img_w beats per pass can
// read pixel i of grid row s into half s&1 while it stages pixel i of grid row s-1 from the other
// half. Pass 0 only fills (prologue), pass gh only stages (epilogue). The staging walks patch by patch: pixel
// (py, px) of patch gx is element (py*P + px)*3 + c of that patch's row, so a patch's 3*P*P bytes are one
// sequential run of puts into a store stage (axi.h: a beat written whenever one fills, the row's last one at the
// next patch), while the fill follows the raster of the stream; the line buffer serves both orders.
// Cycles: (gh + 1) * (P*img_w + a pipeline fill), instead of gh * (2*P*img_w + ...) unoverlapped.
template <class Cfg, class PixIn>
void patch_unpack(PixIn& pixels, int img_h, int img_w, int P, beat_t<Cfg>* scratch, long stage, long stride,
                  long long& cycles) {
    int8_t line[2][Cfg::PATCH_MAX][Cfg::IMG_W][3];  // two halves of P image rows each, u - 128
    // one memory per (half, channel): a beat writes 3 bytes into one half and reads 3 from the other
    ISEG_PRAGMA(HLS ARRAY_PARTITION variable=line type=complete dim=1)
    ISEG_PRAGMA(HLS ARRAY_PARTITION variable=line type=complete dim=4)
    const int gh = img_h / P;
    const int gw = img_w / P;
    const int beats = P * img_w;
    WrStage<Cfg::AXI_BYTES> st;
    ISEG_PRAGMA(HLS ARRAY_PARTITION variable=st.b type=complete)
    stage_reset(st);
PE_PASS:
    for (int s = 0; s <= gh; ++s) {
        ISEG_PRAGMA(HLS loop_tripcount min=2 max=33)
        const bool fill = s < gh;   // grid row s arrives into half s&1
        const bool emit = s > 0;    // grid row s-1 leaves from the other half
        const int fh = s & 1;
        const int eh = fh ^ 1;
        int py = 0, x = 0;          // fill: pixel (py, x) of the grid row (raster)
        int ey = 0, ex = 0, epx = 0;  // emit: pixel (ey, ex) of the grid row, ex = gx*P + epx (patch by patch)
        long at = emit ? stage + long(s - 1) * gw * stride : 0L;  // the emitted pixel's stage offset
        long patch = at;            // stage offset of the emitted patch
    PE_BEAT:
        for (int i = 0; i < beats; ++i) {
            ISEG_PRAGMA(HLS loop_tripcount min=1 max=8192)
            ISEG_PIPELINE(PE_BEAT, 1);
            // the two halves never alias within a pass: no carried dependence through `line`
            ISEG_PRAGMA(HLS DEPENDENCE variable=line inter false)
            if (emit) {
                uint8_t px[3];
                px[0] = uint8_t(line[eh][ey][ex][0]);
                px[1] = uint8_t(line[eh][ey][ex][1]);
                px[2] = uint8_t(line[eh][ey][ex][2]);
                ISEG_STAGE_PUT(1, GMEM1, st, scratch, at, px, 3);
                // the next pixel of the patch (counters: no divider); the patch's row, then the next patch
                at += 3;
                ++ex;
                if (++epx == P) {
                    epx = 0;
                    ex -= P;
                    if (++ey == P) {
                        ey = 0;
                        ex += P;
                        patch += stride;
                        at = patch;
                    }
                }
            }
            if (fill) {
                const pixel_t v = pixels.read();
                line[fh][py][x][0] = int8_t(int32_t(v & 0xff) - 128);
                line[fh][py][x][1] = int8_t(int32_t((v >> 8) & 0xff) - 128);
                line[fh][py][x][2] = int8_t(int32_t((v >> 16) & 0xff) - 128);
                if (++x == img_w) {  // raster counters instead of i / img_w
                    x = 0;
                    ++py;
                }
            }
        }
    }
    ISEG_STAGE_FLUSH(GMEM1, st, scratch);
    ISEG_CYCLES(cycles, long(gh + 1) * (long(beats) + kPipeDepth));
}

}  // namespace iseg
