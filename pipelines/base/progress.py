"""Progress of long work (index builds) with rate and ETA, on a terminal or in a log.

Contract: ``with Progress(label, total, unit) as p: p.update(n)``. On a terminal (stderr is a TTY) it draws a
tqdm bar. Elsewhere (a search's trial processes, whose output Ray forwards to the driver's console; CI logs)
it prints plain lines to stderr: one when the work ends (``label: N unit in S s (R unit/s)``; with
``final=False`` only when it ran longer than ``every_s``), and while it runs, one every ``every_s`` seconds
(``label: n/N unit, R unit/s, ETA S s``), so a five-minute build is never
silent and a three-second one costs a single line. ``RAGSWEEP_PROGRESS=0`` silences it.
"""

from __future__ import annotations

import os
import sys
import time
from types import TracebackType
from typing import Any

PREFIX = "[ragsweep] "


def _rate(rate: float) -> str:
    """1,234 / 12 / 0.42: whole numbers from 10 up, two significant digits below (a slow rate is not 0)."""
    return f"{rate:,.0f}" if rate >= 10 else f"{rate:.2g}"


def _enabled() -> bool:
    return os.environ.get("RAGSWEEP_PROGRESS", "1") != "0"


class Progress:
    def __init__(self, label: str, total: int, unit: str, every_s: float = 30.0, final: bool = True) -> None:
        self.label, self.total, self.unit, self.every_s, self.final = label, total, unit, every_s, final
        self.done = 0
        self._t0 = self._last = time.perf_counter()
        self._bar: Any = None

    def __enter__(self) -> Progress:
        if _enabled() and sys.stderr.isatty():
            from tqdm import tqdm

            self._bar = tqdm(
                total=self.total, unit=f" {self.unit}", desc=self.label, dynamic_ncols=True, smoothing=0.1, leave=True
            )
        return self

    def update(self, n: int) -> None:
        self.done += n
        if self._bar is not None:
            self._bar.update(n)
            return
        now = time.perf_counter()
        if _enabled() and now - self._last >= self.every_s and self.done < self.total:
            self._last = now
            rate = self.done / max(now - self._t0, 1e-9)
            eta = (self.total - self.done) / rate if rate > 0 else float("inf")
            self._print(f"{self.done:,}/{self.total:,} {self.unit}, {_rate(rate)} {self.unit}/s, ETA {eta:,.0f} s")

    def _print(self, text: str) -> None:
        print(f"{PREFIX}{self.label}: {text}", file=sys.stderr, flush=True)

    @property
    def seconds(self) -> float:
        return time.perf_counter() - self._t0

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if self._bar is not None:
            self._bar.close()
            return
        if kind is None and _enabled() and (self.final or self.seconds >= self.every_s):
            s = self.seconds
            self._print(f"{self.done:,} {self.unit} in {s:,.1f} s ({_rate(self.done / max(s, 1e-9))} {self.unit}/s)")
