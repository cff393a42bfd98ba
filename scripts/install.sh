#!/usr/bin/env bash
# Installs ragsweep for CPU into ./.venv (idempotent). Usage: scripts/install.sh [dev]
# torch and the rest of the stack are pinned by constraints-cpu.txt so a CPU machine never pulls a CUDA
# build; GPU users install with `pip install -e ".[gpu]"` and their own torch instead.
set -euo pipefail
cd "$(dirname "$0")/.."
extras="cpu"
if [ "${1:-}" = "dev" ]; then extras="cpu,dev"; fi
if [ ! -x .venv/bin/python ]; then
  echo "[install] creating .venv"
  python3 -m venv .venv
fi
echo "[install] installing ragsweep[$extras] (first run compiles llama-cpp-python: about 6 minutes on 2 cores)"
.venv/bin/python -m pip install --quiet --disable-pip-version-check -c constraints-cpu.txt -e ".[$extras]"
echo "[install] done"
