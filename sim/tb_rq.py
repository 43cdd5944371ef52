"""cocotb testbench of ``iseg_rq``: per-channel RQ_b vs ``numerics.requant``.

Rows of int32 accumulators: uniform over the whole 32-bit range (saturating both ways), small
values (where the offset dominates; with m = 2^30, e = 31, o = 0, the rq_ties case of
tests/rtl/test_rtl_units.py, every odd one is an exact half, so the half-up rounding decides), the extremes
``-(2^31 - 1)``, ``2^31 - 1`` and zero, all sent LANES per beat with gaps and backpressure.
"""

from __future__ import annotations

import cocotb
import numpy as np

from iseg import numerics as nx
from iseg.sim.streams import UnitTB, check_equal, pack, unpack


class RqTB(UnitTB):
    """One row = CHANNELS elements = CHANNELS / LANES beats."""

    def __init__(self, dut):
        super().__init__(dut)
        p = self.params
        self.lanes, self.ch, self.bits = p.rq_lanes, len(p.rq_m), p.rq_bits
        self.src = self.source()
        self.out = self.sink()

    def rows(self) -> np.ndarray:
        rng, ch = self.np_rng, self.ch
        n = int(self.cfg.get("n_rows", 12))
        lim = (1 << 31) - 1
        parts = [rng.integers(-lim, lim + 1, (n, ch)), rng.integers(-300, 301, (n, ch)),
                 rng.integers(-(1 << 20), 1 << 20, (n, ch)),
                 np.array([[lim] * ch, [-lim] * ch, [0] * ch])]
        return np.concatenate(parts)

    async def run(self) -> None:
        z = self.rows()
        p = self.params
        want = nx.requant(z, p.rq_m, p.rq_e, p.rq_o, self.bits)
        L = self.lanes
        beats = [(pack(row[b * L:(b + 1) * L], 32), b == self.ch // L - 1)
                 for row in z for b in range(self.ch // L)]
        await self.reset()
        send = cocotb.start_soon(self.src.send(beats))
        await self.out.wait_for(len(beats), timeout_cycles=20 * len(beats) + 100)
        await send
        got = np.array([unpack(d, L, self.bits) for d, _ in self.out.beats]).reshape(z.shape)
        check_equal("requant", got, want)
        assert [last for _, last in self.out.beats] == [last for _, last in beats], "tlast pattern"
        self.report([self.src], self.out, elements=int(z.size))


@cocotb.test()
async def requant_matches_reference(dut) -> None:
    """Every element equals numerics.requant."""
    await RqTB(dut).run()
