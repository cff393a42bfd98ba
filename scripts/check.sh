#!/usr/bin/env bash
# Static checks run before the tests (README command 2, CI, and the pre-commit hook, which runs this file):
# ruff's lint rules and its formatter (check only), then mypy.
# mypy cannot follow setuptools' editable-install mapping (ragsweep.search -> search/), so this links the
# three folders under .typecheck/ragsweep/ and mypy reads them there as the installed package names.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .typecheck/ragsweep
for p in search pipelines judges; do ln -sfn "../../$p" ".typecheck/ragsweep/$p"; done
echo "[check] ruff"
.venv/bin/ruff check .
.venv/bin/ruff format --check . >/dev/null || { .venv/bin/ruff format --diff . | head -40; echo "[check] run: .venv/bin/ruff format ."; exit 1; }
echo "[check] mypy"
.venv/bin/mypy
