"""cocotb testbench of ``iseg_gelu``: lambda-ShiftGELU or I-ViT ShiftGELU vs ``numerics.gelu``.

Every int8 input (so the clip at +-L, the saturating exp and x = -128 are all hit) in rows of 16
framed by tlast, then random rows. The ``shift`` variant takes its maximum per row, so its rows
also vary in length (1 .. gelu_max_n) and include all-negative rows (M = max(max, 0) = 0), rows
holding 127 and all -128; each row is compared with ``numerics.gelu`` of that row alone. Bench
mode sends ``n_rows`` rows of ``bench_len`` elements back to back.
"""

from __future__ import annotations

import cocotb
import numpy as np

from iseg import numerics as nx
from iseg.sim.streams import UnitTB, check_equal, unpack


class GeluTB(UnitTB):
    """Element stream in, element stream out, tlast passed through."""

    ROW = 16

    def __init__(self, dut):
        super().__init__(dut)
        self.src = self.source()
        self.out = self.sink()

    def rows(self) -> list[np.ndarray]:
        rng = self.np_rng
        if self.mode == "bench":
            n = int(self.cfg["bench_len"])
            return [rng.integers(-128, 128, n) for _ in range(int(self.cfg.get("n_rows", 8)))]
        ramp = np.arange(-128, 128)
        rows = [ramp[i:i + self.ROW] for i in range(0, len(ramp), self.ROW)]
        n = int(self.cfg.get("n_elems", 64))
        if self.params.gelu.variant == "lambda":
            rnd = rng.integers(-128, 128, n // self.ROW * self.ROW)
            return rows + [rnd[i:i + self.ROW] for i in range(0, len(rnd), self.ROW)]
        cap = self.params.gelu_max_n
        rows += [np.array([3]), np.full(cap, -128), rng.integers(-128, 0, cap), np.full(5, 127),
                 np.concatenate([[127], rng.integers(-128, 128, cap - 1)]), np.zeros(4, int)]
        while sum(len(r) for r in rows) < 256 + n:
            rows.append(rng.integers(-128, 128, int(rng.integers(1, cap + 1))))
        return rows

    async def run(self) -> None:
        rows = self.rows()
        c = self.params.gelu
        beats = [(int(v) & 0xFF, i == len(r) - 1) for r in rows for i, v in enumerate(r)]
        await self.reset()
        send = cocotb.start_soon(self.src.send(beats))
        await self.out.wait_for(len(beats), timeout_cycles=20 * len(beats) + 50 * len(rows) + 200)
        await send
        pos = 0
        for j, r in enumerate(rows):
            chunk = self.out.beats[pos:pos + len(r)]
            pos += len(r)
            got = np.array([unpack(d, 1, 16)[0] for d, _ in chunk])
            check_equal(f"gelu row {j} (n={len(r)})", got, nx.gelu(r, c))
            assert [la for _, la in chunk] == [i == len(r) - 1 for i in range(len(r))], f"row {j} tlast"
        self.report([self.src], self.out, row_lens=[len(r) for r in rows], elements=len(beats), rows=len(rows))


@cocotb.test()
async def gelu_matches_reference(dut) -> None:
    """Every element equals numerics.gelu (per row for the shift variant)."""
    await GeluTB(dut).run()
