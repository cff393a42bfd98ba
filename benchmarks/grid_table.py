"""The stored grid table the tabular benchmarks replay: every configuration of a grid, answered by a real search.

``build(name)`` runs a real ragsweep grid search (``benchmarks/grid_<name>.yaml``: every configuration answers
the same questions, FIFO, held-out confirmation off) and stores each configuration's per-question scores, generator
tokens and latency in ``benchmarks/data/grid_<name>.json``. Two grids are stored (:data:`GRIDS`): ``xquad``
(Wikipedia articles of several paragraphs, short extractive answers, span gold) and ``clapnq`` (CLAP NQ passages,
long-form answers, half the questions unanswerable, document gold). :class:`Table` reads it back and computes, for
any subset of questions, a configuration's objective exactly as a trial does (:func:`judges.scoring.aggregate` then
:func:`judges.scoring.objective`).
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

REPO = Path(__file__).resolve().parents[1]
GRIDS = ("xquad", "clapnq")


def config_of(name: str) -> Path:
    return REPO / "benchmarks" / f"grid_{name}.yaml"


def table_of(name: str) -> Path:
    return REPO / "benchmarks" / "data" / f"grid_{name}.json"


CONFIG = config_of("xquad")
TABLE = table_of("xquad")
KEYS = ("chunk_size", "chunk_overlap", "retriever", "top_k", "prompt")
SCORES = ("token_f1", "recall_at_k", "exact_match", "mrr", "rouge_l")


def key_of(params: dict[str, Any]) -> str:
    return json.dumps({k: params[k] for k in KEYS}, sort_keys=True)


def build(config: Path = CONFIG, table: Path = TABLE, overrides: dict[str, Any] | None = None) -> int:
    """Run the grid search of ``config`` (with CLI-style ``overrides``) and store its table in ``table``."""
    import mlflow

    from ragsweep.search.config import load_config
    from ragsweep.search.driver import run_search

    # RAGSWEEP_GRID_STORAGE: build into (or continue in) this folder; its request cache answers what was answered
    storage = Path(os.environ.get("RAGSWEEP_GRID_STORAGE") or tempfile.mkdtemp(prefix="rs-grid-"))
    cfg = load_config(config, {"storage_dir": str(storage), **(overrides or {})})
    out = run_search(cfg, config)
    rows = []
    for t in out.trials:
        path = mlflow.artifacts.download_artifacts(run_id=t["run_id"], artifact_path="answers.jsonl")
        answers = [json.loads(line) for line in Path(path).read_text().splitlines()]
        m = t["metrics"]
        rows.append(
            {
                "params": {k: t["params"][k] for k in KEYS},
                "questions": [a["id"] for a in answers],
                "scores": {name: [a["scores"].get(name) for a in answers] for name in SCORES},
                # Cost per question: generator tokens (prompt + completion) and seconds.
                "tokens": [a["prompt_tokens"] + a["completion_tokens"] for a in answers],
                "latency_s": [round(a["latency_s"], 4) for a in answers],
                # Calls this configuration needs on an empty request cache: one generator + one judge call per question.
                "calls_per_question": 2,
                "requests_sent": m["llm.generator.requests"] + m["llm.judge.requests"],
            }
        )
    table.parent.mkdir(parents=True, exist_ok=True)
    table.write_text(
        json.dumps(
            {
                "config": str(config.relative_to(REPO)),
                "objective": cfg.objective.weights,
                "questions_file": str(cfg.dataset.questions),
                "rows": rows,
            },
            indent=1,
        )
    )
    print(f"wrote {table} ({len(rows)} configurations)")
    return 0


class Table:
    """The grid: configuration key -> per-question scores, tokens and latency, all in one question order."""

    def __init__(self, data: dict[str, Any]) -> None:
        self.rows = {key_of(r["params"]): r for r in data["rows"]}
        self.config = REPO / data["config"]  # the grid's YAML (its space lists each key's first choice first)
        self.questions: list[str] = list(next(iter(self.rows.values()))["questions"])
        for r in self.rows.values():
            if r["questions"] != self.questions:
                raise ValueError("every configuration of the table must answer the same questions in one order")
        self.index = {q: i for i, q in enumerate(self.questions)}
        self.choices: dict[str, list[Any]] = {}
        for r in data["rows"]:
            for k in KEYS:
                if r["params"][k] not in self.choices.setdefault(k, []):
                    self.choices[k].append(r["params"][k])

    @classmethod
    def load(cls, path: Path = TABLE) -> Table:
        return cls(json.loads(path.read_text()))

    def first_choices(self) -> dict[str, Any]:
        """The grid's baseline as ragsweep builds it: the first choice of every key of its config's space."""
        import yaml

        space = yaml.safe_load(self.config.read_text())["space"]
        return {k: space[k][0] for k in KEYS}

    @property
    def n_questions(self) -> int:
        return len(self.questions)

    def scores(self, key: str, qids: Sequence[str]) -> dict[str, dict[str, float | None]]:
        """Question id -> metric -> value, for ``qids``."""
        r = self.rows[key]
        return {q: {name: vals[self.index[q]] for name, vals in r["scores"].items()} for q in qids}

    def objective(self, key: str, qids: Sequence[str], weights: dict[str, float]) -> float:
        from ragsweep.judges.scoring import aggregate, objective

        rows = self.scores(key, qids).values()
        return objective(
            aggregate(({k: np.nan if v is None else v for k, v in r.items()} for r in rows), list(weights)), weights
        )

    def tokens(self, key: str, qids: Sequence[str]) -> float:
        vals = self.rows[key]["tokens"]
        return float(np.mean([vals[self.index[q]] for q in qids]))

    def latency_p95(self, key: str, qids: Sequence[str]) -> float:
        vals = self.rows[key]["latency_s"]
        return float(np.percentile([vals[self.index[q]] for q in qids], 95))


if __name__ == "__main__":
    import sys

    # .venv/bin/python benchmarks/grid_table.py build NAME   (NAME in GRIDS; long: a real grid search)
    if len(sys.argv) != 3 or sys.argv[1] != "build" or sys.argv[2] not in GRIDS:
        print(f"usage: {sys.argv[0]} build {{{','.join(GRIDS)}}}", file=sys.stderr)
        sys.exit(2)
    sys.exit(build(config_of(sys.argv[2]), table_of(sys.argv[2])))
