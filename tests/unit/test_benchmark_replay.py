"""The tabular replays run on the stored grid table (a benchmark that cannot run is no benchmark)."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import REPO

sys.path.insert(0, str(REPO / "benchmarks"))  # the replays' own modules (search_replay, grid_table)


def _bench(name: str, *args: str) -> str:
    out = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / name), *args], capture_output=True, text=True, timeout=300, cwd=REPO
    )
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout


def test_search_efficiency_replay_prints_every_strategy_on_both_grids() -> None:
    out = _bench("search_efficiency.py", "--seeds", "2")
    for strategy in ("random", "grid", "tpe", "tpe+asha", "tpe+paired", "two-stage tpe", "two-stage tpe+paired"):
        assert f"\n{strategy} " in out
    assert "24 configurations x 64 questions" in out and "16 configurations x 32 questions" in out


def test_selection_quality_replay_prints_every_strategy_and_method() -> None:
    from search_replay import STRATEGIES

    out = _bench("selection_quality.py", "--seeds", "2")
    # the whole searches, per stored grid
    assert "\nxquad: 24 configurations x 64 questions" in out and "\nclapnq: 16 configurations x 32 questions" in out
    for st in STRATEGIES:
        assert out.count(f"\n{st.name:<34}") == 2
    for objective in ("token_f1 (default)", "0.7 f1 + 0.3 recall (before)"):
        for method in ("best on search", "held-out best", "cheapest tied"):
            assert f"{objective:<30}{method:<16}" in out


def test_search_keys_replay_prints_every_searched_key() -> None:
    out = _bench("search_keys.py")
    for key in (
        "embedder",
        "generator",
        "chunker",
        "query_transform",
        "hybrid_weight",
        "rrf_k",
        "context_order",
        "context_budget",
        "retriever",
    ):
        assert f"\n{key:<16}" in out
    assert "trials x 16 questions" in out
