"""Quantization report: FP32 mIoU, one-shot PTQ / PTQ-32 / QAT drops, size ratio, operator ablation.

    python benchmarks/quant_report.py model/builtin/builtin_fp32.safetensors --threads 2 \
        --write-docs docs/quantization.md --export-qat model/builtin/builtin_int8.safetensors

Prints ratios and figures measured in this one run (no timing); see docs/quantization.md.
"""

from __future__ import annotations

import sys

from iseg.model.report import main

if __name__ == "__main__":
    sys.exit(main())
