#!/usr/bin/env bash
# The test suite: installs what it needs, lints, then runs pytest (op level to whole model,
# C-simulation with g++, cocotb on Icarus). Extra arguments go to pytest (e.g. --slow, --verilator).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
python3 -m ruff check .
python3 -m pytest -q -p no:cacheprovider "$@"
