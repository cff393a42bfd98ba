"""How the suite is ordered for pytest-xdist (README command 2: ``-n 2 --dist loadscope --no-loadscope-reorder``).

A search spends part of its time waiting or in one-core work (imports, Ray and Tune start-up, MLflow writes), so two
workers keep both cores busy (a third gave the same wall time: the CPU is then saturated). ``--dist loadscope`` hands
out whole modules (a test class is its own unit), so a module-scoped fixture (a search several tests read) runs once,
on one worker. Ray clusters started with the ``ray`` CLI never overlap:
:class:`tests.integration.local_cluster.LocalCluster` holds a machine-wide lock while it runs. (A search's own Ray is
started with ``address="local"`` and never joins another.)

``--no-loadscope-reorder`` keeps the order set here: the longest modules first, the short integration modules next,
then the contract and unit tests, so small tests fill the gaps at the end instead of one worker finishing a long
search alone. The order only balances the workers; a module missing from LONGEST_FIRST still runs.
"""

from __future__ import annotations

import os

import pytest

# Modules from the longest (seconds of one worker's time, two workers sharing 2 cores, at the time of writing); the
# static checks go early because mypy is a minute of one core and nothing waits on it.
LONGEST_FIRST = (
    "test_search_e2e.py",  # ~190: the main search and the tests that read it (evaluate, rerun)
    "test_promotion.py",  # ~200: three one-trial searches
    "test_search_strategies.py",  # ~145
    "test_static_checks.py",  # ~60: ruff and mypy
    "test_multinode.py",  # ~105
    "test_launcher.py",  # ~110
    "test_search_failures.py",  # ~90
    "test_search_schedulers.py",  # ~110 + ~100: one class per scheduler, each its own xdist scope
    "test_tracing.py",  # ~115
    "test_wheel.py",  # ~80
    "test_model_search.py",  # ~95
    "test_judges_llama.py",  # ~170
    "test_secrets.py",  # ~55
    "test_questions.py",  # ~65
)


def _rank(item: pytest.Item) -> tuple[int, int]:
    """Lower runs earlier."""
    path = item.nodeid.split("::", 1)[0]
    name = path.rsplit("/", 1)[-1]
    if name in LONGEST_FIRST:
        return 0, LONGEST_FIRST.index(name)
    if item.get_closest_marker("integration") is not None:
        return 1, 0
    return (3 if "/unit/" in path else 2), 0


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # Only under xdist (its workers collect with PYTEST_XDIST_WORKER set; the order must be the same in each).
    if os.environ.get("PYTEST_XDIST_WORKER"):
        items.sort(key=_rank)  # stable: file order within a rank
