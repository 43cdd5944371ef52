"""The target boards: part numbers, resource budgets and memory figures (``spec/boards.md``).

One table, read by the config validator (which names are legal), the planner (how big an array
fits, how fast weights stream) and the emitters (part, clock, which build flow). Figures are the
vendor's; "usable" Alveo figures are what remains after the shell.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Board", "BOARDS", "Budget", "DEFAULT_BUDGET", "board_names"]


@dataclass(frozen=True)
class Budget:
    """The share of a board's resources the planner's ``array: auto`` may fill (config key ``budget``).

    A design that fills a device does not close timing or route: the defaults are the margins the project
    plans with (``spec/boards.md``: DSPs under ~80 % for timing closure; LUTs under 70 % for routing; BRAM
    and URAM under 80 %). They are a user's call, not a fact of the part: a team that closes its designs at
    90 % DSP can say so and get the larger array. An explicit array is checked against the whole device
    only, so a budget beside one is refused (config.py)."""

    dsp: float = 0.80
    lut: float = 0.70
    memory: float = 0.80  # BRAM36 and URAM alike

    def share(self, field: str) -> float:
        """The share of Board.``field`` (dsp, lut, bram36 or uram) the planner may use."""
        return self.memory if field in ("bram36", "uram") else getattr(self, field)

    def describe(self) -> str:
        return f"DSP {100 * self.dsp:g} %, LUT {100 * self.lut:g} %, BRAM/URAM {100 * self.memory:g} %"


DEFAULT_BUDGET = Budget()


@dataclass(frozen=True)
class Board:
    """Facts about one board that the planner and the build scripts need."""

    name: str
    title: str
    part: str
    dsp: int
    dsp_kind: str  # "DSP48E2" (UltraScale+: two int8 MACs sharing an operand per DSP) or "DSP48E1"
    bram36: int
    uram: int  # 288 Kb blocks
    lut: int
    ddr_gbps: float  # peak external memory bandwidth, GB/s
    ddr_efficiency: float  # fraction of the peak an AXI master sustains on long bursts
    ddr_ports: int  # independent memory ports the kernel can use (HBM/DDR banks, HP ports)
    clock_mhz: int  # typical HLS clock
    flow: str  # "vivado" (Zynq/PYNQ: block design + bitstream) or "vitis" (Kria/Alveo: v++ link)
    ps: str  # processing system IP for the Vivado block design ("zynq_ultra_ps_e", "processing_system7", "")
    axi_width: int  # data width of the kernel's m_axi ports in bits
    platform: str  # Vitis platform (v++ flow) -- check the installed name with `platforminfo -l`
    banks: tuple[str, str]  # memory banks of the weights and scratch ports (v++ sp=) or HP ports (Vivado)
    ps_config: str  # Vivado: CONFIG of the processing system: its master port on, the two slave HP ports on
    board_part: str = ""  # Vivado: get_board_parts pattern of the board files (for the PS preset); "" = none

    @property
    def macs_per_dsp(self) -> int:
        """int8 MACs per DSP per cycle when both products share one operand (Xilinx WP486)."""
        return 2 if self.dsp_kind == "DSP48E2" else 1

    @property
    def onchip_bytes(self) -> int:
        return self.bram36 * 36 * 1024 // 8 + self.uram * 288 * 1024 // 8


# zynq_ultra_ps_e: S_AXI_GP2/GP3 are S_AXI_HP0_FPD/HP1_FPD; M_AXI_GP0 is M_AXI_HPM0_FPD (the control port).
# M_AXI_GP1 (HPM1_FPD, which the ZCU10x board presets turn on) is turned off: unused, its clock pin
# maxihpm1_fpd_aclk would be left undriven. processing_system7: M_AXI_GP0 and S_AXI_HP0/HP1.
_ZUP_CONFIG = ("CONFIG.PSU__USE__M_AXI_GP0 {1} CONFIG.PSU__USE__M_AXI_GP1 {0} "
               "CONFIG.PSU__USE__S_AXI_GP2 {1} CONFIG.PSU__USE__S_AXI_GP3 {1}")
_Z7_CONFIG = "CONFIG.PCW_USE_M_AXI_GP0 {1} CONFIG.PCW_USE_S_AXI_HP0 {1} CONFIG.PCW_USE_S_AXI_HP1 {1}"

BOARDS: dict[str, Board] = {
    b.name: b
    for b in (
        Board("kv260", "Kria KV260", "xck26-sfvc784-2LV-c", 1248, "DSP48E2", 144, 64, 117_120,
              19.2, 0.6, 4, 250, "vitis", "zynq_ultra_ps_e", 128,
              "xilinx_kv260_base_202420_1", ("HP0", "HP1"), ""),
        Board("zcu104", "ZCU104", "xczu7ev-ffvc1156-2-e", 1728, "DSP48E2", 312, 96, 230_400,
              19.2, 0.6, 4, 250, "vivado", "zynq_ultra_ps_e", 128,
              "", ("S_AXI_HP0_FPD", "S_AXI_HP1_FPD"), _ZUP_CONFIG, "*:zcu104:*"),
        Board("zcu102", "ZCU102", "xczu9eg-ffvb1156-2-e", 2520, "DSP48E2", 912, 0, 274_080,
              19.2, 0.6, 4, 250, "vivado", "zynq_ultra_ps_e", 128,
              "", ("S_AXI_HP0_FPD", "S_AXI_HP1_FPD"), _ZUP_CONFIG, "*:zcu102:*"),
        Board("pynq-z2", "PYNQ-Z2", "xc7z020clg400-1", 220, "DSP48E1", 140, 0, 53_200,
              2.1, 0.6, 4, 100, "vivado", "processing_system7", 64,
              "", ("S_AXI_HP0", "S_AXI_HP1"), _Z7_CONFIG, "*:pynq-z2:*"),
        Board("u50", "Alveo U50", "xcu50-fsvh2104-2-e", 5352, "DSP48E2", 1128, 608, 872_000,
              316.0, 0.6, 32, 300, "vitis", "", 256,
              "xilinx_u50_gen3x16_xdma_5_202210_1", ("HBM[0]", "HBM[1]"), ""),
        Board("u250", "Alveo U250", "xcu250-figd2104-2L-e", 11520, "DSP48E2", 2304, 1280, 1_728_000,
              77.0, 0.6, 4, 300, "vitis", "", 512,
              "xilinx_u250_gen3x16_xdma_4_1_202210_1", ("DDR[0]", "DDR[1]"), ""),
    )
}


def board_names() -> list[str]:
    return list(BOARDS)
