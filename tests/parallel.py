"""How the suite splits over pytest-xdist workers (README command 2 runs ``pytest -n 2 --dist loadgroup``).

A search spends much of its time in one-core work (imports, Ray and Tune start-up, MLflow writes), so two workers
keep both cores busy. What must not be split or overlapped is grouped with ``xdist_group`` (one worker runs a group,
in order):

- tests that share a module-scoped fixture (a search several tests read) form one group per module, so the
  fixture runs once;
- tests marked ``ray_cli_cluster`` start Ray with the ``ray`` CLI: ``ray start`` records the newest cluster in
  /tmp/ray/ray_current_cluster, which ``ray.init("auto")`` and ``RAGSWEEP_RAY_ADDRESS=auto`` read, so two such
  clusters at once could be joined by the wrong test. They form one group. (A search's own Ray is started with
  ``address="local"`` and never joins another.)

Under xdist the work is also ordered longest first (grouped integration tests, then the other integration tests,
then contract and unit tests), so the small tests fill the gaps at the end instead of one worker finishing a long
search alone.
"""

from __future__ import annotations

import pytest

CLUSTER_GROUP = "ray_cli_cluster"
MODULE_SCOPES = ("module", "package", "class")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", f"{CLUSTER_GROUP}: starts Ray nodes with the `ray` CLI; such tests never run at the same time"
    )


def _group(item: pytest.Item) -> str | None:
    if item.get_closest_marker(CLUSTER_GROUP):
        return CLUSTER_GROUP
    info = getattr(item, "_fixtureinfo", None)
    defs = info.name2fixturedefs.values() if info is not None else ()
    if any(d and d[-1].scope in MODULE_SCOPES for d in defs):
        return item.nodeid.split("::", 1)[0]
    return None


def _rank(item: pytest.Item) -> int:
    """Lower runs earlier: the longest work first."""
    if item.get_closest_marker("integration") is None:
        return 3 if "/unit/" in item.nodeid else 2
    return 0 if _group(item) else 1


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook reads the groups
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        group = _group(item)
        if group:
            item.add_marker(pytest.mark.xdist_group(group))
    if getattr(config.option, "dist", "no") != "no":
        items.sort(key=_rank)  # stable: file order within a rank; the same in every worker
