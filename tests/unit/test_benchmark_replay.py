"""The search-efficiency replay runs on the stored grid table (a benchmark that cannot run is no benchmark)."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import REPO


def test_replay_prints_every_strategy() -> None:
    out = subprocess.run([sys.executable, str(REPO / "benchmarks" / "search_efficiency.py"), "--seeds", "2"],
                         capture_output=True, text=True, timeout=300, cwd=REPO)
    assert out.returncode == 0, out.stderr[-2000:]
    for strategy in ("random", "grid", "tpe", "tpe+asha"):
        assert f"\n{strategy} " in out.stdout
    assert "36 configurations x 8 questions" in out.stdout
