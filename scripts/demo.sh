#!/usr/bin/env bash
# The main job on the built-in model: generate the Vitis HLS project and C-simulate it bit-exact
# against the numpy reference.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
gen-hls examples/builtin.yaml --csim "$@"
