"""`search/run.py` must work when copied alone to another machine (what `ray submit` does)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO


def test_run_py_copied_alone_imports_the_installed_package(tmp_path: Path) -> None:
    script = tmp_path / "run.py"
    shutil.copy(REPO / "search" / "run.py", script)
    out = subprocess.run(
        [sys.executable, str(script), "--help"], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert "usage: ragsweep search" in out.stdout and "--num-samples" in out.stdout


def test_run_py_reports_a_missing_config_clearly(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, str(REPO / "search" / "run.py"), "--config", "nope.yaml"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 2
    assert "nope.yaml: cannot read the config file: file not found" in out.stderr
