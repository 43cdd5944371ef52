"""cocotb testbench of ``iseg_gemm``: R x C output-stationary array vs ``numerics.linear``.

Tiles of random K (and K = 1), random int8 and the extremes (all -128: the largest positive
products; -128 against 127: the most negative; zeros) are streamed with independent valid gaps
on A and B and random ready on the result; every tile must equal ``exact_matmul`` bit for bit.
With a K unroll (``gemm_kd``) a beat carries KD columns of A and rows of B, K padded with zeros.
Bench mode tiles an M x K x N product and reports the cycles.
"""

from __future__ import annotations

import cocotb
import numpy as np

from iseg import numerics as nx
from iseg.sim.streams import UnitTB, check_equal, pack, unpack


class GemmTB(UnitTB):
    """Drives A columns and B rows, collects result rows."""

    def __init__(self, dut):
        super().__init__(dut)
        self.R = self.params.gemm_rows
        self.C = self.params.gemm_cols
        self.KD = self.params.gemm_kd
        self.src_a = self.source("s_a")
        self.src_b = self.source("s_b")
        self.out = self.sink("m_axis")

    def tiles(self) -> list[tuple[np.ndarray, np.ndarray]]:
        R, C, rng = self.R, self.C, self.np_rng
        if self.mode == "bench":
            M, K, N = (int(self.cfg[k]) for k in ("M", "K", "N"))
            a = rng.integers(-128, 128, (M, K))
            b = rng.integers(-128, 128, (K, N))
            return [(a[i:i + R], b[:, j:j + C]) for i in range(0, M, R) for j in range(0, N, C)]
        out = []
        for k in (1, 2, 3, 7, 12):
            out.append((rng.integers(-128, 128, (R, k)), rng.integers(-128, 128, (k, C))))
        out.append((np.full((R, 9), -128), np.full((9, C), -128)))
        out.append((np.full((R, 5), -128), np.full((5, C), 127)))
        out.append((np.zeros((R, 4), int), rng.integers(-128, 128, (4, C))))
        mixed = rng.choice([-128, -1, 0, 1, 127], size=(R, 6))
        out.append((mixed, rng.choice([-128, -1, 0, 1, 127], size=(6, C))))
        for _ in range(int(self.cfg.get("n_random", 4))):
            k = int(rng.integers(1, 17))
            out.append((rng.integers(-128, 128, (R, k)), rng.integers(-128, 128, (k, C))))
        return out

    async def run(self) -> None:
        tiles = self.tiles()
        beats_a, beats_b = [], []
        kd = self.KD
        for a, b in tiles:
            k = a.shape[1]
            n = -(-k // kd)  # beats: KD k each, the last padded with zero columns / rows
            a = np.pad(a, ((0, self.R - a.shape[0]), (0, n * kd - k)))  # edge tiles: zero rows/columns
            b = np.pad(b, ((0, n * kd - k), (0, self.C - b.shape[1])))
            beats_a += [(pack(a[:, i * kd:(i + 1) * kd].reshape(-1), 8), i == n - 1) for i in range(n)]
            beats_b += [(pack(b[i * kd:(i + 1) * kd, :].reshape(-1), 8), False) for i in range(n)]
        await self.reset()
        ta = cocotb.start_soon(self.src_a.send(beats_a))
        tb = cocotb.start_soon(self.src_b.send(beats_b))
        n_out = self.R * len(tiles)
        await self.out.wait_for(n_out, timeout_cycles=40 * (len(beats_a) + n_out) + 200)
        await ta
        await tb
        for t, (a, b) in enumerate(tiles):
            rows = self.out.beats[t * self.R:(t + 1) * self.R]
            got = np.array([unpack(d, self.C, 32) for d, _ in rows])[: a.shape[0], : b.shape[1]]
            check_equal(f"tile {t} (K={a.shape[1]})", got, nx.exact_matmul(a, b))
            lasts = [last for _, last in rows]
            assert lasts == [False] * (self.R - 1) + [True], f"tile {t}: tlast pattern {lasts}"
        self.report([self.src_a, self.src_b], self.out, tiles=len(tiles))


@cocotb.test()
async def gemm_matches_reference(dut) -> None:
    """Every tile equals numerics.exact_matmul under random gaps and backpressure."""
    await GemmTB(dut).run()
