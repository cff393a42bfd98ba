"""Opt-in CPU accounting of the suite, to aim cuts at README command 2's time: with ``RAGSWEEP_TEST_CPU_REPORT=FILE``
each test process appends one JSON line per test to FILE (its node id, wall seconds, and CPU seconds of the test
process plus the children it reaped meanwhile, with what they reaped in turn) and ``python -m tests.cpu_report FILE``
prints the modules by CPU.

A lower bound, not a total: a process orphaned before it exits is reaped by init and escapes. That covers a search's
Ray workers (its trials, held-out tasks and server actors, with their llama.cpp servers) when their raylet stops
first, and the ``ray start`` daemons of LocalCluster; what it counts is the test process, the search's driver and the
Ray daemons the driver reaps. A child reaped late (Python reaps a dropped Popen when the next one starts) is charged
to the later test. Compare runs with it; do not add its numbers up to the suite's CPU.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time
from collections import defaultdict
from collections.abc import Generator
from pathlib import Path

import pytest

ENV = "RAGSWEEP_TEST_CPU_REPORT"


def _cpu() -> float:
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item) -> Generator[None, object, object]:
    out = os.environ.get(ENV)
    if not out:
        return (yield)
    cpu0, wall0 = _cpu(), time.monotonic()
    result = yield
    row = {"test": item.nodeid, "cpu_s": round(_cpu() - cpu0, 2), "wall_s": round(time.monotonic() - wall0, 2)}
    with open(out, "a", encoding="utf-8") as f:  # one short line per write: appends from several workers interleave
        f.write(json.dumps(row) + "\n")
    return result


def main(path: str) -> None:
    rows = [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
    cpu: dict[str, float] = defaultdict(float)
    wall: dict[str, float] = defaultdict(float)
    for r in rows:
        module = r["test"].split("::", 1)[0]
        cpu[module] += r["cpu_s"]
        wall[module] += r["wall_s"]
    total = sum(cpu.values())
    print(f"{'CPU s':>8} {'share':>6} {'wall s':>8}  module")
    for module in sorted(cpu, key=cpu.__getitem__, reverse=True):
        print(f"{cpu[module]:8.0f} {cpu[module] / total:6.1%} {wall[module]:8.0f}  {module}")
    print(f"{total:8.0f} {'':>6} {sum(wall.values()):8.0f}  all {len(rows)} tests")


if __name__ == "__main__":
    main(sys.argv[1])
