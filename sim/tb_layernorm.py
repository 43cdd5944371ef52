"""cocotb testbench of ``iseg_layernorm``: I-LayerNorm vs ``numerics.layernorm``.

Rows of C int16 channels: random full-range, small values, constant rows (variance 0, so
sd = max(isqrt(0), 1)), alternating -32768/32767 (the largest variance), rows whose sum is an
exact half multiple of C (round-half-even ties, both parities, both signs). Bench mode sends
``n_rows`` random rows back to back.
"""

from __future__ import annotations

import cocotb
import numpy as np

from iseg import numerics as nx
from iseg.sim.streams import UnitTB, check_equal, unpack


class LayerNormTB(UnitTB):
    """Rows of exactly C elements."""

    def __init__(self, dut):
        super().__init__(dut)
        p = self.params
        self.C = len(p.ln_m)
        self.src = self.source()
        self.out = self.sink()

    def rows(self) -> np.ndarray:
        rng, C = self.np_rng, self.C
        hi = 1 << (self.params.ln_in_bits - 1)
        if self.mode == "bench":
            return rng.integers(-hi, hi, (int(self.cfg.get("n_rows", 8)), C))
        rows = [rng.integers(-hi, hi, C), rng.integers(-3, 4, C), np.full(C, 1234), np.full(C, -hi),
                np.array([(-hi if i % 2 else hi - 1) for i in range(C)])]
        if C % 2 == 0:  # sums of (q + 1/2) * C, q even and odd, positive and negative
            for q in (4, 5, -4, -5):
                r = np.full(C, q)
                r[0] += C // 2
                r[1] -= 0
                rows.append(r)
        for _ in range(int(self.cfg.get("n_rows", 6))):
            rows.append(rng.integers(-hi, hi, C) >> int(rng.integers(0, self.params.ln_in_bits - 1)))
        return np.array(rows)

    async def run(self) -> None:
        x = self.rows()
        p = self.params
        want = nx.layernorm(x, p.ln_m, p.ln_e, p.ln_o, 8)
        mask = (1 << p.ln_in_bits) - 1
        beats = [(int(v) & mask, i == self.C - 1) for r in x for i, v in enumerate(r)]
        await self.reset()
        send = cocotb.start_soon(self.src.send(beats))
        await self.out.wait_for(len(beats), timeout_cycles=30 * len(beats) + 300 * len(x))
        await send
        got = np.array([unpack(d, 1, 8)[0] for d, _ in self.out.beats]).reshape(x.shape)
        check_equal("layernorm", got, want)
        assert [la for _, la in self.out.beats] == [la for _, la in beats], "tlast pattern"
        self.report([self.src], self.out, row_lens=[self.C] * len(x), elements=len(beats), rows=len(x))


@cocotb.test()
async def layernorm_matches_reference(dut) -> None:
    """Every row equals numerics.layernorm."""
    await LayerNormTB(dut).run()
