"""Quantization report: FP32 mIoU, one-shot PTQ / PTQ-32 / QAT drops, size ratio, operator ablation.

    python benchmarks/quant_report.py model/builtin/builtin_fp32.safetensors --val 200 --qat-steps 300 \
        --threads 1 --write-docs docs/quantization.md [--json report.json]

Prints ratios and figures measured in this one run (no timing); see docs/quantization.md. Every
drop is given twice: from the FP32 model as configured (the issue's figure; bilinear logits for
the built-in model) and from the float I-Segmenter graph of the same weights (nearest labels:
the pure quantization cost). The shipped integer model is written by ``iseg quantize`` (PTQ-32).
"""

from __future__ import annotations

import sys

from iseg.model.report import main

if __name__ == "__main__":
    sys.exit(main())
