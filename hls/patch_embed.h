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
// Cycles per grid row: P * img_w pixel beats, then per patch P * P staging steps (3 bytes each, the
// perfect PE_PY/PE_PX nest flattened), not overlapped; a pipeline fill per loop entry.
template <class Cfg, class PixIn>
void patch_unpack(PixIn& pixels, int img_h, int img_w, int P, uint8_t* stage, long long& cycles) {
    int8_t line[Cfg::PATCH_MAX][Cfg::IMG_W][3];  // P image rows, u - 128
    const int gw = img_w / P;
    const long K = 3L * P * P;
PE_GRID_ROW:
    for (int gy = 0; gy < img_h / P; ++gy) {
        ISEG_PRAGMA(HLS loop_tripcount min=1 max=32)
    PE_FILL_Y:
        for (int py = 0; py < P; ++py) {
            ISEG_PRAGMA(HLS loop_tripcount min=1 max=16)
        PE_FILL_X:
            for (int x = 0; x < img_w; ++x) {
                ISEG_PRAGMA(HLS loop_tripcount min=1 max=512)
                ISEG_PRAGMA(HLS PIPELINE II=1)
                const pixel_t v = pixels.read();
                line[py][x][0] = int8_t(int32_t(v & 0xff) - 128);
                line[py][x][1] = int8_t(int32_t((v >> 8) & 0xff) - 128);
                line[py][x][2] = int8_t(int32_t((v >> 16) & 0xff) - 128);
            }
        }
    PE_PATCH:
        for (int gx = 0; gx < gw; ++gx) {
            ISEG_PRAGMA(HLS loop_tripcount min=1 max=32)
            uint8_t* row = stage + (long(gy) * gw + gx) * K;
        PE_PY:
            for (int py = 0; py < P; ++py) {
                ISEG_PRAGMA(HLS loop_tripcount min=1 max=16)
            PE_PX:
                for (int px = 0; px < P; ++px) {
                    ISEG_PRAGMA(HLS loop_tripcount min=1 max=16)
                    ISEG_PRAGMA(HLS PIPELINE II=1)
                PE_CH:
                    for (int c = 0; c < 3; ++c) {
                        row[(py * P + px) * 3 + c] = uint8_t(line[py][gx * P + px][c]);
                    }
                }
            }
        }
    }
    ISEG_CYCLES(cycles, long(img_h / P) * (long(P) * img_w + kPipeDepth + long(gw) * (P * P + kPipeDepth)));
}

}  // namespace iseg
