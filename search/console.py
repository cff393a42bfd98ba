"""What a user sees while a search runs: one logger per wing, and a compact live table of trials.

Contract:
- :func:`logger` returns ``ragsweep.<wing>`` (``search``, ``serving``, ``tracking``, ``promotion``). :func:`setup`
  sends every ragsweep logger to stdout as ``[ragsweep] message`` (INFO; DEBUG with ``-v``) and, when given a
  file, everything with timestamps to that file. Without :func:`setup` (ragsweep used as a library) nothing is
  printed below WARNING.
- :class:`TrialTable` is a Ray Tune callback printing one aligned row per trial event (started, each report,
  finished, failed): trial number, status, questions answered, objective, tokens per question and the values of
  the searched keys that vary. The full result of every report goes to the log file at DEBUG, and to MLflow as
  before; ``-v`` brings back Ray Tune's own output as well.
"""

from __future__ import annotations

import json
import logging
import math
import re
import sys
from pathlib import Path
from typing import Any

from ray import tune

from ragsweep.pipelines.base.secrets import SECRETS

PREFIX = "[ragsweep] "
EXCEPTION_LINE = re.compile(r"^[A-Za-z_][\w.]*(\([\w.]+\))?: ")


class MaskingFormatter(logging.Formatter):
    """A formatter whose output never holds a secret (:data:`~ragsweep.pipelines.base.secrets.SECRETS`)."""

    def format(self, record: logging.LogRecord) -> str:
        return SECRETS.mask(super().format(record))


def logger(wing: str) -> logging.Logger:
    return logging.getLogger(f"ragsweep.{wing}")


def setup(verbosity: int = 0, log_file: Path | None = None) -> None:
    """Route ragsweep's loggers to the console (and ``log_file``); safe to call again (handlers are replaced)."""
    root = logging.getLogger("ragsweep")
    for h in list(root.handlers):
        root.removeHandler(h)
        h.close()
    root.setLevel(logging.DEBUG)
    root.propagate = False
    console = logging.StreamHandler(sys.stdout)
    console.setLevel(logging.DEBUG if verbosity > 0 else logging.INFO)
    console.setFormatter(MaskingFormatter(PREFIX + "%(message)s"))
    root.addHandler(console)
    if verbosity == 0:  # libraries' progress chatter (table creation, study creation, validation notes)
        for name in ("mlflow", "optuna", "alembic"):
            logging.getLogger(name).setLevel(logging.WARNING)
    if log_file is not None:
        add_log_file(log_file)


def add_log_file(path: Path) -> logging.FileHandler:
    """Also write every ragsweep record (DEBUG and up, with time and logger) to ``path`` (appended); the caller
    removes the returned handler with :func:`remove_handler` when its work ends."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setLevel(logging.DEBUG)
    handler.setFormatter(MaskingFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.getLogger("ragsweep").addHandler(handler)
    return handler


def remove_handler(handler: logging.Handler) -> None:
    logging.getLogger("ragsweep").removeHandler(handler)
    handler.close()


def varying_keys(space: Any) -> list[str]:
    """The searched keys with more than one value (ranges always vary): the columns worth a user's eye."""
    out = []
    for name, spec in space:
        if spec is None:  # an optional key this space does not search (embedder, generator)
            continue
        if not isinstance(spec, list) or len(set(map(str, spec))) > 1:
            out.append(name)
    return out


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return "-" if not math.isfinite(v) else f"{v:.3f}" if abs(v) < 100 else f"{v:.0f}"
    return "-" if v is None else str(v)


class TrialTable(tune.Callback):
    """One row per trial event; rows are aligned so the stream reads as a table."""

    def __init__(self, keys: list[str], n_trials: int, n_questions: int) -> None:
        self.keys = keys
        self.n_trials = n_trials
        self.n_questions = n_questions
        self.numbers: dict[str, int] = {}
        self.log = logger("search")
        self.widths = [8, 10, 9, 9, 8] + [max(len(k), 8) for k in keys]
        self._header = False

    def _row(self, cells: list[str]) -> str:
        return "  ".join(c.ljust(w) for c, w in zip(cells, self.widths, strict=True)).rstrip()

    def _print(self, trial: Any, status: str, result: dict[str, Any] | None) -> None:
        if not self._header:
            self.log.info(self._row(["trial", "status", "questions", "objective", "tokens/q", *self.keys]))
            self._header = True
        n = self.numbers.setdefault(trial.trial_id, len(self.numbers) + 1)
        r = result or {}
        config = trial.config or {}
        answered = r.get("n_questions")
        cells = [
            f"{n}/{self.n_trials}",
            status,
            f"{int(answered)}/{self.n_questions}" if answered is not None else "-",
            _fmt(r.get("objective")),
            _fmt(r.get("tokens_per_question")),
            *[_fmt(config.get(k)) for k in self.keys],
        ]
        self.log.info(self._row(cells))

    def on_trial_start(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        self._print(trial, "RUNNING", None)

    def on_trial_result(
        self, iteration: int, trials: list[Any], trial: Any, result: dict[str, Any], **info: Any
    ) -> None:
        self.log.debug("trial %s result: %s", trial.trial_id, json.dumps(result, default=str, sort_keys=True))
        if result.get("n_questions", 0) < self.n_questions:  # the final report is shown as the trial's end
            self._print(trial, "RUNNING", result)

    def on_trial_complete(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        last = trial.last_result or {}
        done = last.get("n_questions", 0) >= self.n_questions
        self._print(trial, "DONE" if done else "STOPPED", last)

    def on_trial_error(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        self._print(trial, "FAILED", trial.last_result)
        self.log.info(
            f"  trial {self.numbers.get(trial.trial_id)}: {error_line(trial.error_file)} "
            f"(traceback: {trial.error_file})"
        )


def error_line(path: str | None) -> str:
    """The exception line of a Ray Tune error file (its last line naming an error), or a note that there is none."""
    try:
        lines = [ln.strip() for ln in Path(path or "").read_text(encoding="utf-8", errors="replace").splitlines()]
    except OSError:
        return "no error file"
    named = [ln for ln in lines if EXCEPTION_LINE.match(ln)]  # "package.module.SomeError: message"
    return (named or [ln for ln in lines if ln] or ["empty error file"])[-1][:2000]
