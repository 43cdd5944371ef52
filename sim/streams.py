"""valid/ready stream drivers and the base testbench shared by every ``tb_*`` module.

The drivers follow cocotbext-axi's sampling rule: right after a rising edge the simulator still
shows the values the flops saw at that edge, so ``valid and ready`` read there is the handshake
that just happened. Sources insert random idle cycles between beats (never dropping valid
mid-beat, as AXI-Stream requires) and sinks toggle ready at random: every unit is tested under
gaps and backpressure, not only on the happy path.
"""

from __future__ import annotations

import json
import os
import random
from collections.abc import Sequence

import numpy as np
from cocotb import start_soon
from cocotb.clock import Clock
from cocotb.triggers import RisingEdge
from cocotb.utils import get_sim_time

from iseg.generator.rtl import RtlParams

__all__ = ["CLOCK_NS", "StreamSource", "StreamSink", "UnitTB", "check_equal", "pack", "unpack", "load_config"]

CLOCK_NS = 10


def pack(values: Sequence[int], width: int) -> int:
    """Lane l of ``values`` at bits ``[l*width +: width]`` (two's complement)."""
    mask = (1 << width) - 1
    out = 0
    for i, v in enumerate(values):
        out |= (int(v) & mask) << (i * width)
    return out


def unpack(word: int, lanes: int, width: int, signed: bool = True) -> list[int]:
    """Inverse of :func:`pack`."""
    mask = (1 << width) - 1
    out = []
    for i in range(lanes):
        v = (word >> (i * width)) & mask
        if signed and v >> (width - 1):
            v -= 1 << width
        out.append(v)
    return out


def load_config() -> dict:
    """The JSON written by ``iseg.sim.runner`` (path in ``ISEG_TB_CONFIG``)."""
    path = os.environ.get("ISEG_TB_CONFIG")
    if not path:
        raise RuntimeError("ISEG_TB_CONFIG is not set: run the testbenches through iseg.sim.runner")
    with open(path) as f:
        return json.load(f)


class StreamSource:
    """Drives ``<prefix>_tvalid/_tdata/_tlast`` with random idle cycles between beats."""

    def __init__(self, dut, prefix: str, rng: random.Random, valid_prob: float = 1.0):
        self.clk = dut.clk
        self.valid = getattr(dut, f"{prefix}_tvalid")
        self.ready = getattr(dut, f"{prefix}_tready")
        self.data = getattr(dut, f"{prefix}_tdata")
        self.last = getattr(dut, f"{prefix}_tlast", None)
        self.rng = rng
        self.valid_prob = valid_prob
        self.first_accept: float | None = None
        self.valid.value = 0

    async def send(self, beats: Sequence[tuple[int, bool]]) -> None:
        """Send ``(packed data, last)`` beats in order; returns once the last one is accepted."""
        for data, last in beats:
            while self.rng.random() >= self.valid_prob:
                self.valid.value = 0
                await RisingEdge(self.clk)
            self.valid.value = 1
            self.data.value = data
            if self.last is not None:
                self.last.value = int(last)
            await RisingEdge(self.clk)
            while not int(self.ready.value):
                await RisingEdge(self.clk)
            if self.first_accept is None:
                self.first_accept = get_sim_time("ns")
        self.valid.value = 0


class StreamSink:
    """Collects ``(data, last)`` beats from ``<prefix>_*`` while toggling ready at random.

    A ``<prefix>_tuser`` side band, where the unit has one, is collected beat by beat in ``users``.
    """

    def __init__(self, dut, prefix: str, rng: random.Random, ready_prob: float = 1.0):
        self.clk = dut.clk
        self.valid = getattr(dut, f"{prefix}_tvalid")
        self.ready = getattr(dut, f"{prefix}_tready")
        self.data = getattr(dut, f"{prefix}_tdata")
        self.last = getattr(dut, f"{prefix}_tlast")
        self.user = getattr(dut, f"{prefix}_tuser", None)
        self.rng = rng
        self.ready_prob = ready_prob
        self.beats: list[tuple[int, bool]] = []
        self.users: list[int] = []  # tuser of each beat (empty without a tuser port)
        self.times: list[float] = []  # acceptance time (ns) of each beat
        self.last_accept: float | None = None
        self.ready.value = 0

    def start(self) -> None:
        """Begin accepting (after reset: valid is undefined before it)."""
        start_soon(self._run())

    async def _run(self) -> None:
        while True:
            ready = self.rng.random() < self.ready_prob
            self.ready.value = int(ready)
            await RisingEdge(self.clk)
            if ready and int(self.valid.value):
                self.beats.append((int(self.data.value.to_unsigned()), bool(int(self.last.value))))
                if self.user is not None:
                    self.users.append(int(self.user.value.to_unsigned()))
                self.last_accept = get_sim_time("ns")
                self.times.append(self.last_accept)

    async def wait_for(self, n: int, timeout_cycles: int) -> None:
        """Wait until ``n`` beats arrived; fail (not hang) after ``timeout_cycles``."""
        for _ in range(timeout_cycles):
            if len(self.beats) >= n:
                return
            await RisingEdge(self.clk)
        raise AssertionError(f"timeout: {len(self.beats)} of {n} output beats after {timeout_cycles} cycles")


class UnitTB:
    """Clock, reset, configuration and result reporting common to every unit testbench."""

    def __init__(self, dut):
        self.dut = dut
        self.cfg = load_config()
        self.params = RtlParams.from_dict(self.cfg["params"])
        seed = int(self.cfg.get("seed", 0))
        self.np_rng = np.random.default_rng(seed)
        self.rng = random.Random(seed)
        self.valid_prob = float(self.cfg.get("valid_prob", 1.0))
        self.ready_prob = float(self.cfg.get("ready_prob", 1.0))
        self.mode = self.cfg.get("mode", "check")
        self._sinks: list[StreamSink] = []
        start_soon(Clock(dut.clk, CLOCK_NS, unit="ns").start())

    def source(self, prefix: str = "s_axis") -> StreamSource:
        return StreamSource(self.dut, prefix, random.Random(self.rng.random()), self.valid_prob)

    def sink(self, prefix: str = "m_axis") -> StreamSink:
        snk = StreamSink(self.dut, prefix, random.Random(self.rng.random()), self.ready_prob)
        self._sinks.append(snk)
        return snk

    async def reset(self) -> None:
        self.dut.rst.value = 1
        for _ in range(3):
            await RisingEdge(self.dut.clk)
        self.dut.rst.value = 0
        for snk in self._sinks:
            snk.start()
        await RisingEdge(self.dut.clk)

    def report(self, sources: Sequence[StreamSource], sink: StreamSink, row_lens: Sequence[int] = (),
               **figures) -> None:
        """Write cycles from the first accepted input to the last output (and extra figures).

        With the output row lengths (``row_lens``, in beats) of at least four rows, also the
        steady-state cycles per beat: the clocks between the ends of the second and the last
        output rows over the beats in between (fill and drain of the unit excluded).
        """
        path = self.cfg.get("result")
        if not path:
            return
        t0 = min(s.first_accept for s in sources if s.first_accept is not None)
        cycles = round((sink.last_accept - t0) / CLOCK_NS) + 1
        if len(row_lens) >= 4:
            ends = np.cumsum(row_lens) - 1
            span = sink.times[int(ends[-1])] - sink.times[int(ends[1])]
            figures["steady"] = span / CLOCK_NS / int(sum(row_lens[2:]))
        with open(path, "w") as f:
            json.dump({"cycles": cycles, **figures}, f)


def check_equal(name: str, got: np.ndarray, want: np.ndarray) -> None:
    """Bit-exact comparison with a message that shows the first mismatch."""
    got = np.asarray(got, dtype=np.int64)
    want = np.asarray(want, dtype=np.int64)
    if got.shape != want.shape:
        raise AssertionError(f"{name}: shape {got.shape} != expected {want.shape}")
    if not np.array_equal(got, want):
        idx = tuple(int(i) for i in np.argwhere(got != want)[0])
        n = int((got != want).sum())
        raise AssertionError(f"{name}: {n} mismatches; first at {idx}: got {got[idx]}, want {want[idx]}")
