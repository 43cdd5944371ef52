#!/usr/bin/env bash
# The test suite: installs what it needs, lints, then runs pytest (op level to whole model,
# C-simulation with g++, cocotb on Icarus). Extra arguments go to pytest (e.g. --slow, --verilator).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
python3 -m ruff check .
# two workers (ISEG_TEST_WORKERS; 0: one process), a test file each at a time, so that a file's compiled harnesses and
# projects (module fixtures) are built once: 9 minutes where one process takes 17 on the CI's two cores
python3 -m pytest -q -p no:cacheprovider -n "${ISEG_TEST_WORKERS:-2}" --dist loadfile "$@"
