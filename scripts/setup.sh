#!/usr/bin/env bash
# Installs what the project needs on a fresh Debian machine: the package (editable) with its
# torch/test/video extras, Icarus Verilog + yosys for the RTL tests, tclsh for the TCL tests, clang for the
# synthesis view's compile check. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
need=()
command -v iverilog >/dev/null 2>&1 || need+=(iverilog)
command -v yosys >/dev/null 2>&1 || need+=(yosys)
command -v tclsh >/dev/null 2>&1 || need+=(tcl)  # the generated TCL scripts run under tclsh with stub Vitis commands
command -v clang++ >/dev/null 2>&1 || need+=(clang)  # the synthesis view's syntax, as csynth's clang front end sees it
if [ ${#need[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi
python3 -m pip install -q --disable-pip-version-check -e ".[torch,test,video]"
