"""cocotb testbench of ``iseg_shiftmax``: row-streamed Shiftmax vs ``numerics.shiftmax_with_shift``.

Rows of varying length (1 .. a few dozen): random scores, all-equal rows (ties: the sum is
n * e(0)), one 127 among -128s (the 127 hits the clamp 2^p_bits - 1, the others round to 0 or to
the smallest step), all -128, zeros, a row of MAX_N elements when it is small enough for CI, and
flat rows of up to 200 and 100 keys (precise8's r = 0 and r = 1, given MAX_N >= 200).
Each beat is checked twice: p (tdata) and the row's shift r (tuser, the same on every beat of the
row), real = p * 2^(r - 15). The variant (p_bits 15: r = 0; precise8: u8 mantissas, r in 0..7)
comes from the plan. Bench mode sends ``n_rows`` random rows of ``bench_len`` scores back to back.
"""

from __future__ import annotations

import cocotb
import numpy as np

from iseg import numerics as nx
from iseg.sim.streams import UnitTB, check_equal, unpack


class ShiftmaxTB(UnitTB):
    """One row per tlast; the output row has the input row's length."""

    def __init__(self, dut):
        super().__init__(dut)
        self.src = self.source()
        self.out = self.sink()

    def rows(self) -> list[np.ndarray]:
        rng = self.np_rng
        if self.mode == "bench":
            n = int(self.cfg["bench_len"])
            return [rng.integers(-128, 128, n) for _ in range(int(self.cfg.get("n_rows", 8)))]
        cap = min(self.params.sm_max_n, int(self.cfg.get("max_len", 24)))
        rows = [np.array([5]), np.full(cap, 7), np.full(cap, -128), np.zeros(3, int),
                np.concatenate([[127], np.full(cap - 1, -128)]), np.array([-128, 127, -128, 127])]
        for _ in range(int(self.cfg.get("n_rows", 6))):
            n = int(rng.integers(1, cap + 1))
            rows.append(rng.integers(-128, 128, n))
        rows.append(rng.integers(-20, 21, cap))
        # long flat rows: precise8's small shifts (r = 0 at 200 keys: pm = 164; r = 1 at 100: pm = 328)
        rows += [np.full(min(self.params.sm_max_n, 200), 3), np.full(min(self.params.sm_max_n, 100), -5)]
        return rows

    async def run(self) -> None:
        rows = self.rows()
        variant = self.params.sm_variant
        v = nx.SHIFTMAX_VARIANTS[variant]
        beats = [(int(v) & 0xFF, i == len(r) - 1) for r in rows for i, v in enumerate(r)]
        await self.reset()
        send = cocotb.start_soon(self.src.send(beats))
        await self.out.wait_for(len(beats), timeout_cycles=30 * len(beats) + 100 * len(rows))
        await send
        pos = 0
        for j, r in enumerate(rows):
            chunk = self.out.beats[pos:pos + len(r)]
            pos += len(r)
            got = np.array([unpack(d, 1, 16, signed=False)[0] for d, _ in chunk])
            got_r = np.array(self.out.users[pos - len(r):pos])
            want_p, want_r = nx.shiftmax_with_shift(r, self.params.sm_x0, variant)
            check_equal(f"shiftmax row {j} (n={len(r)}) p", got, want_p)
            check_equal(f"shiftmax row {j} (n={len(r)}) r", got_r, np.full(len(r), int(want_r[0])))
            assert int(got.max(initial=0)) <= v.p_max, f"row {j}: p above 2^p_bits - 1"
            assert int(got_r.max(initial=0)) <= max(v.r_max, 0), f"row {j}: r above 15 - p_bits"
            assert [la for _, la in chunk] == [i == len(r) - 1 for i in range(len(r))], f"row {j} tlast"
        self.report([self.src], self.out, row_lens=[len(r) for r in rows], elements=len(beats), rows=len(rows))


@cocotb.test()
async def shiftmax_matches_reference(dut) -> None:
    """Every row's p and r equal numerics.shiftmax_with_shift for the configured variant."""
    await ShiftmaxTB(dut).run()
