#!/usr/bin/env bash
# Static checks run before the tests (README command 2, CI, pre-commit): ruff, then mypy.
# mypy cannot follow setuptools' editable-install mapping (ragsweep.search -> search/), so this links the
# three folders under .typecheck/ragsweep/ and mypy reads them there as the installed package names.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .typecheck/ragsweep
for p in search pipelines judges; do ln -sfn "../../$p" ".typecheck/ragsweep/$p"; done
echo "[check] ruff"
.venv/bin/ruff check .
echo "[check] mypy"
.venv/bin/mypy
