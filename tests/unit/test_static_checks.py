"""The static checks (ruff's lint rules and formatter, then mypy: ``scripts/check.sh``, also the pre-commit hook) as
a test, so README command 2 runs them beside the other xdist worker's searches instead of before every test."""

from __future__ import annotations

import subprocess

from tests.conftest import REPO


def test_ruff_and_mypy_are_clean() -> None:
    proc = subprocess.run(["bash", str(REPO / "scripts" / "check.sh")], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]
