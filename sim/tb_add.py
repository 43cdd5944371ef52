"""cocotb testbench of ``iseg_add``: the residual add vs ``numerics.int_add``.

Random i16 pairs, the corners (-32768/32767 in every combination: saturation both ways), zeros,
joined from two independently gapped streams.
"""

from __future__ import annotations

import itertools

import cocotb
import numpy as np

from iseg import numerics as nx
from iseg.sim.streams import UnitTB, check_equal, unpack


class AddTB(UnitTB):
    """Two operand streams (``s_a``, ``s_b``), rows of ROW elements framed by ``s_a_tlast``."""

    ROW = 5

    def __init__(self, dut):
        super().__init__(dut)
        self.src_a = self.source("s_a")
        self.src_b = self.source("s_b")
        self.out = self.sink()

    async def run(self) -> None:
        rng, p = self.np_rng, self.params
        n = int(self.cfg.get("n_elems", 60))
        corners = [-32768, -32767, -1, 0, 1, 32767]
        pairs = np.array(list(itertools.product(corners, corners)))
        a = np.concatenate([rng.integers(-32768, 32768, n), rng.integers(-50, 51, n), pairs[:, 0]])
        b = np.concatenate([rng.integers(-32768, 32768, n), rng.integers(-50, 51, n), pairs[:, 1]])
        a, b = a[: len(a) // self.ROW * self.ROW], b[: len(b) // self.ROW * self.ROW]
        want = nx.int_add(a, b, p.add_ma, p.add_mb, p.add_e, 16)
        lasts = [(i % self.ROW) == self.ROW - 1 for i in range(len(a))]
        await self.reset()
        ta = cocotb.start_soon(self.src_a.send([(int(v) & 0xFFFF, la) for v, la in zip(a, lasts, strict=True)]))
        tb = cocotb.start_soon(self.src_b.send([(int(v) & 0xFFFF, False) for v in b]))
        await self.out.wait_for(len(a), timeout_cycles=20 * len(a) + 100)
        await ta
        await tb
        got = np.array([unpack(d, 1, 16)[0] for d, _ in self.out.beats])
        check_equal("int_add", got, want)
        assert [la for _, la in self.out.beats] == lasts, "tlast pattern"
        self.report([self.src_a, self.src_b], self.out, elements=len(a))


@cocotb.test()
async def add_matches_reference(dut) -> None:
    """Every element equals numerics.int_add."""
    await AddTB(dut).run()
