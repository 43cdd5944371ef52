"""cocotb testbench of ``iseg_argmax_up``: labels vs ``upsample_nearest(argmax_labels(.))``.

A (GH x GW) grid of tokens with n_cls logits each: random i16, tiny ranges (many ties, which
must go to the lowest class), all-equal tokens (label 0), the extremes -32768/32767, and the
last class winning. The output must be the H x W label image in raster order, tlast per row.
"""

from __future__ import annotations

import cocotb
import numpy as np

from iseg import numerics as nx
from iseg.sim.streams import UnitTB, check_equal


class ArgmaxUpTB(UnitTB):
    """Logits in (one token per tlast), u8 labels out."""

    def __init__(self, dut):
        super().__init__(dut)
        self.src = self.source()
        self.out = self.sink()

    def logits(self) -> np.ndarray:
        rng = self.np_rng
        gh, gw = int(self.cfg.get("grid_h", 3)), self.params.am_grid_w
        ncls = int(self.cfg.get("n_cls", 5))
        lo, hi = -(1 << (self.params.am_in_bits - 1)), 1 << (self.params.am_in_bits - 1)
        x = rng.integers(lo, hi, (gh, gw, ncls))
        x[0] = rng.integers(-1, 2, (gw, ncls))          # ties everywhere
        x[-1, 0] = lo                                     # all equal: label 0
        x[-1, -1] = lo
        x[-1, -1, -1] = hi - 1                            # last class wins
        return x

    async def run(self) -> None:
        x = self.logits()
        gh, gw, ncls = x.shape
        P = self.params.am_patch
        want = nx.upsample_nearest(nx.argmax_labels(x), P)
        mask = (1 << self.params.am_in_bits) - 1
        beats = [(int(v) & mask, c == ncls - 1) for tok in x.reshape(-1, ncls) for c, v in enumerate(tok)]
        await self.reset()
        send = cocotb.start_soon(self.src.send(beats))
        n_out = want.size
        await self.out.wait_for(n_out, timeout_cycles=20 * (len(beats) + n_out) + 100)
        await send
        got = np.array([d for d, _ in self.out.beats]).reshape(want.shape)
        check_equal("labels", got, want)
        W = gw * P
        assert [la for _, la in self.out.beats] == [(i % W) == W - 1 for i in range(n_out)], "tlast"
        self.report([self.src], self.out, labels=n_out, logits=len(beats))


@cocotb.test()
async def argmax_up_matches_reference(dut) -> None:
    """The label image equals upsample_nearest(argmax_labels(logits))."""
    await ArgmaxUpTB(dut).run()
