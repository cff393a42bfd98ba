"""The judges a search (or a calibration) runs, built from the ``judges`` config section.

Contract: :func:`build_judges` returns the configured built-in judges in a fixed order, then the custom ones;
:data:`BUILTIN` maps each built-in's config name to its metric name.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from ragsweep.judges.base import LLMJudge
from ragsweep.judges.builtin import JUDGES
from ragsweep.judges.custom import CustomJudge, CustomJudgeSpec

BUILTIN = {e.name: e.info["metric"] for e in JUDGES}


class JudgeConfig(Protocol):
    """The fields of ``search.config.JudgeSettings`` that build judges (read-only, so a frozen model or a
    dataclass of tuples both satisfy it)."""

    @property
    def suite(self) -> Sequence[str]: ...
    @property
    def faithfulness_calls(self) -> int: ...
    @property
    def reason_chars(self) -> int: ...
    @property
    def context_chars(self) -> int: ...
    @property
    def custom(self) -> Sequence[CustomJudgeSpec]: ...


@dataclass(frozen=True)
class SuiteDefaults:
    """The defaults of the ``judges`` config section (``search.config.JudgeSettings`` takes them from here)."""

    suite: tuple[str, ...] = tuple(BUILTIN)
    faithfulness_calls: int = 1
    reason_chars: int = 80
    context_chars: int = 1200
    custom: tuple[CustomJudgeSpec, ...] = ()


DEFAULTS = SuiteDefaults()


def build_judges(cfg: JudgeConfig) -> list[LLMJudge]:
    judges: list[LLMJudge] = [JUDGES.get(name)(cfg) for name in BUILTIN if name in cfg.suite]
    return judges + [CustomJudge(spec, cfg.reason_chars, cfg.context_chars) for spec in cfg.custom]


def metric_names(cfg: JudgeConfig) -> tuple[str, ...]:
    """The per-question metric names the configured judges produce."""
    return tuple(BUILTIN[n] for n in BUILTIN if n in cfg.suite) + tuple(s.metric for s in cfg.custom)
