// patch_embed.h -- the pixel path of the first layer (numerics.md §6).
//
// RGB u8 pixels arrive in raster order on a stream, Cfg::PIX pixels per beat, one 32-bit word each (pixel i of a
// beat in bits 32i..32i+31: R in its bits 0-7, G in 8-15, B in 16-23, 0x00BBGGRR; in memory, the host's frame is
// one little-endian word per pixel whatever PIX). A line buffer of P image rows turns them into per-patch vectors,
// element k = (py*P + px)*3 + c, value u - 128 as int8, patches in raster order over the grid.
// The vectors are staged as the (T, 3*P*P) int8 left operand of the GEMM (scratch + d.in); the
// GEMM then computes RQ_16(x . W + b) exactly like a LINEAR layer.
#pragma once

#include "gemm.h"

namespace iseg {

typedef uint8_t label_t;

// The pixel stream's beat: PIX words of 0x00BBGGRR (ap_uint<32 PIX> in synthesis, bytes in the g++ C-simulation,
// as the m_axi beats: compat.h beat_of), and the label stream's: LAB labels with TLAST (compat.h label_beat_of).
// The planner picks both (generator/estimate.py pixel_beat_pixels, label_beat_labels): powers of two that divide
// the patch, so a beat's pixels lie in one patch row and its labels in one patch (all the same label).
template <class Cfg>
using pix_beat_t = typename beat_of<4 * Cfg::PIX>::type;
template <class Cfg>
using label_beat_t = typename label_beat_of<Cfg::LAB>::type;

// The test benches' side of the two streams (C-simulation and tb.cpp, not synthesised): PIX pixels of RGB bytes
// into a pixel beat, a label beat's LAB labels out.
template <class Cfg>
pix_beat_t<Cfg> pix_beat_pack(const uint8_t* rgb) {
    pix_beat_t<Cfg> v;
    beat_clear(v);
PIX_PACK:
    for (int k = 0; k < Cfg::PIX; ++k) {  // pixel k: bytes 4k (R), 4k + 1 (G), 4k + 2 (B); 4k + 3 stays 0
    PIX_PACK_C:
        for (int c = 0; c < 3; ++c) beat_set(v, 4 * k + c, rgb[3 * k + c]);
    }
    return v;
}

template <class Cfg>
void label_beat_take(const label_beat_t<Cfg>& b, uint8_t* labels) {
LAB_TAKE:
    for (int k = 0; k < Cfg::LAB; ++k) labels[k] = beat_byte(b.data, k);
}


// in: pixels (img_h, img_w) raster order on `pixels`; out: (T, 3*P*P) int8 at byte offset `stage` of the scratch
// port, row stride `stride` bytes (3*P*P padded to whole beats, plan._padded), T = (img_h/P) * (img_w/P).
//
// Fill and staging overlap through a ping-pong line buffer. Staging a grid row writes 3 bytes per
// pixel of it, as many bytes as its fill reads, so one pipelined loop of P*img_w / PIX beats per pass can
// read beat i of grid row s (PIX pixels) into half s&1 while it stages PIX pixels of grid row s-1 (3 PIX bytes, one
// put) from the other half. The line buffer's words hold PIX columns (ARRAY_RESHAPE: a beat's pixels, and a put's,
// are PIX consecutive columns from a multiple of PIX, indexed as word * PIX + constant lane: one word access per
// memory, as the m_axi side's), so a memory per (half, channel) as with one pixel a beat, PIX times as wide. Pass 0 only fills (prologue), pass gh only stages (epilogue). The staging walks patch by patch: pixel
// (py, px) of patch gx is element (py*P + px)*3 + c of that patch's row, so a patch's 3*P*P bytes are one
// sequential run of puts into a store stage (axi.h: a beat written whenever one fills, the row's last one at the
// next patch), while the fill follows the raster of the stream; the line buffer serves both orders.
// Cycles: (gh + 1) * (P*img_w / PIX + a pipeline fill), instead of gh * (2*P*img_w + ...) unoverlapped.
template <class Cfg, class PixIn>
void patch_unpack(PixIn& pixels, int img_h, int img_w, int P, beat_t<Cfg>* scratch, long stage, long stride,
                  long long& cycles) {
    constexpr int PIX = Cfg::PIX;
    static_assert(PIX >= 1 && (PIX & (PIX - 1)) == 0 && 3 * PIX <= Cfg::AXI_BYTES,
                  "PIX (pixels per stream beat): a power of two whose 3 PIX staged bytes fit a memory beat");
    constexpr int U = gcd_of(3 * PIX, Cfg::AXI_BYTES);  // the puts' granule: every put starts at a multiple of it
    int8_t line[2][Cfg::PATCH_MAX][Cfg::IMG_W][3];  // two halves of P image rows each, u - 128
    // one memory per (half, channel) of PIX-column words: a beat writes a word of each into one half and a put reads
    // a word of each from the other
    ISEG_PRAGMA(HLS ARRAY_PARTITION variable=line type=complete dim=1)
    ISEG_PRAGMA(HLS ARRAY_RESHAPE variable=line type=cyclic factor=PIX dim=3)
    ISEG_PRAGMA(HLS ARRAY_PARTITION variable=line type=complete dim=4)
    ISEG_CHECK(P % PIX == 0 && P <= Cfg::PATCH_MAX && img_w <= Cfg::IMG_W,
               "PATCH_EMBED: the patch must be a multiple of PIX (pixels per stream beat), within PATCH_MAX / IMG_W");
    const int gh = img_h / P;
    const int gw = img_w / P;
    const int beats = P * img_w / PIX;
    const int pw = P / PIX, ww = img_w / PIX;  // a patch row's and an image row's words
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
        int py = 0, xw = 0;         // fill: pixel (py, xw * PIX) of the grid row (raster)
        int ey = 0, ew = 0, epw = 0;  // emit: pixel (ey, ew * PIX) of the grid row, ew = gx*P/PIX + epw (patch by patch)
        long at = emit ? stage + long(s - 1) * gw * stride : 0L;  // the emitted pixel's stage offset
        long patch = at;            // stage offset of the emitted patch
    PE_BEAT:
        for (int i = 0; i < beats; ++i) {
            ISEG_PRAGMA(HLS loop_tripcount min=1 max=8192)
            ISEG_PIPELINE(PE_BEAT, 1);
            // the two halves never alias within a pass: no carried dependence through `line`
            ISEG_PRAGMA(HLS DEPENDENCE variable=line inter false)
            if (emit) {
                uint8_t px[3 * PIX];
                ISEG_PRAGMA(HLS ARRAY_PARTITION variable=px type=complete)
            PE_EMIT:
                for (int k = 0; k < PIX; ++k) {
                    ISEG_PRAGMA(HLS UNROLL)
                    px[3 * k] = uint8_t(line[eh][ey][ew * PIX + k][0]);
                    px[3 * k + 1] = uint8_t(line[eh][ey][ew * PIX + k][1]);
                    px[3 * k + 2] = uint8_t(line[eh][ey][ew * PIX + k][2]);
                }
                ISEG_STAGE_PUT(U, GMEM1, st, scratch, at, px, 3 * PIX);
                // the next PIX pixels of the patch (counters: no divider); the patch's row, then the next patch
                at += 3 * PIX;
                ++ew;
                if (++epw == pw) {
                    epw = 0;
                    ew -= pw;
                    if (++ey == P) {
                        ey = 0;
                        ew += pw;
                        patch += stride;
                        at = patch;
                    }
                }
            }
            if (fill) {
                const pix_beat_t<Cfg> v = pixels.read();
            PE_FILL:
                for (int k = 0; k < PIX; ++k) {  // pixel k: bytes 4k (R), 4k + 1 (G), 4k + 2 (B) of the beat
                    ISEG_PRAGMA(HLS UNROLL)
                    line[fh][py][xw * PIX + k][0] = int8_t(int32_t(beat_byte(v, 4 * k)) - 128);
                    line[fh][py][xw * PIX + k][1] = int8_t(int32_t(beat_byte(v, 4 * k + 1)) - 128);
                    line[fh][py][xw * PIX + k][2] = int8_t(int32_t(beat_byte(v, 4 * k + 2)) - 128);
                }
                if (++xw == ww) {  // raster counters instead of i / img_w
                    xw = 0;
                    ++py;
                }
            }
        }
    }
    ISEG_STAGE_FLUSH(GMEM1, st, scratch);
    ISEG_CYCLES(cycles, long(gh + 1) * (long(beats) + kPipeDepth));
}

}  // namespace iseg
