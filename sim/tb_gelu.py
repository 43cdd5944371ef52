"""cocotb testbench of ``iseg_gelu``: lambda-ShiftGELU vs ``numerics.gelu``.

Exhaustive: every int8 input (so the clip at +-L, the saturating exp and x = -128 are all hit),
then random rows, in rows of 16 framed by tlast.
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

    async def run(self) -> None:
        n = int(self.cfg.get("n_elems", 64))
        x = np.concatenate([np.arange(-128, 128), self.np_rng.integers(-128, 128, n)])
        x = x[: len(x) // self.ROW * self.ROW]
        want = nx.gelu(x, self.params.gelu)
        lasts = [(i % self.ROW) == self.ROW - 1 for i in range(len(x))]
        await self.reset()
        send = cocotb.start_soon(self.src.send([(int(v) & 0xFF, la) for v, la in zip(x, lasts, strict=True)]))
        await self.out.wait_for(len(x), timeout_cycles=20 * len(x) + 200)
        await send
        got = np.array([unpack(d, 1, 16)[0] for d, _ in self.out.beats])
        check_equal("gelu", got, want)
        assert [la for _, la in self.out.beats] == lasts, "tlast pattern"
        self.report([self.src], self.out, elements=len(x))


@cocotb.test()
async def gelu_matches_reference(dut) -> None:
    """Every int8 input gives numerics.gelu's output."""
    await GeluTB(dut).run()
