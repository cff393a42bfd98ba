"""Benchmark: LLM calls each search strategy spends to find a near-best configuration (tabular replay).

Usage:
  .venv/bin/python benchmarks/search_efficiency.py build   # evaluate the whole grid once (real search, ~20 min)
  .venv/bin/python benchmarks/search_efficiency.py [--seeds 20] [--tolerance 0.02]   # replay

``build`` runs a real ragsweep grid search (``benchmarks/grid_xquad.yaml``: every configuration answers the
same questions, FIFO) and stores each configuration's per-question scores and LLM calls in
``benchmarks/data/grid_xquad.json``. The replay then runs random search, the grid in random order, TPE and
TPE + ASHA over many seeds against that table, with the same objective, sampler settings and rungs as a
ragsweep search, and counts LLM calls (generator + judge) until a trial whose full objective is within
``tolerance`` of the grid's best completes. A trial ASHA stops costs only the questions it answered, and a
configuration proposed again pays only for questions it has not answered before (the request cache). Prints
median and spread as a fraction of the calls the full grid spent.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Any

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "benchmarks" / "grid_xquad.yaml"
TABLE = REPO / "benchmarks" / "data" / "grid_xquad.json"
KEYS = ("chunk_size", "chunk_overlap", "retriever", "top_k", "prompt")


def _key(params: dict[str, Any]) -> str:
    return json.dumps({k: params[k] for k in KEYS}, sort_keys=True)


def build() -> int:
    import mlflow

    from search.config import load_config
    from search.driver import run_search

    storage = Path(tempfile.mkdtemp(prefix="rs-grid-"))
    cfg = load_config(CONFIG, {"storage_dir": str(storage)})
    out = run_search(cfg, CONFIG)
    rows = []
    for t in out.trials:
        path = mlflow.artifacts.download_artifacts(run_id=t["run_id"], artifact_path="answers.jsonl")
        answers = [json.loads(line) for line in Path(path).read_text().splitlines()]
        m = t["metrics"]
        rows.append({
            "params": {k: t["params"][k] for k in KEYS},
            "questions": [a["id"] for a in answers],
            "scores": {name: [a["scores"].get(name) for a in answers] for name in ("token_f1", "recall_at_k")},
            # Calls this configuration needs on an empty request cache: one generator + one judge call per question.
            "calls_per_question": 2,
            "requests_sent": m["generator_requests"] + m["judge_requests"],
        })
    TABLE.parent.mkdir(parents=True, exist_ok=True)
    TABLE.write_text(json.dumps({"config": str(CONFIG.relative_to(REPO)), "objective": cfg.objective.weights,
                                 "rows": rows}, indent=1))
    print(f"wrote {TABLE} ({len(rows)} configurations)")
    return 0


class Table:
    def __init__(self, data: dict[str, Any]) -> None:
        self.weights: dict[str, float] = data["objective"]
        self.rows = {_key(r["params"]): r for r in data["rows"]}
        self.n_questions = len(next(iter(self.rows.values()))["questions"])
        self.choices: dict[str, list[Any]] = {}
        for r in data["rows"]:
            for k in KEYS:
                if r["params"][k] not in self.choices.setdefault(k, []):
                    self.choices[k].append(r["params"][k])
        self.full = {k: self.objective(k, self.n_questions) for k in self.rows}
        self.best = max(self.full.values())
        self.grid_calls = sum(2 * self.n_questions for _ in self.rows)

    def objective(self, key: str, n: int) -> float:
        """The search objective on the first ``n`` questions (the same seeded order in every trial)."""
        r = self.rows[key]
        total = 0.0
        for name, w in self.weights.items():
            vals = [v for v in r["scores"][name][:n] if v is not None]
            total += w * (sum(vals) / len(vals) if vals else 0.0)
        return total


def _run(table: Table, strategy: str, seed: int, tolerance: float, grace: int, rf: float) -> float:
    """Calls spent until a completed trial is within ``tolerance`` of the best; inf if never (capped)."""
    import optuna

    target = table.best * (1 - tolerance)
    calls, answered_before = 0, {}  # questions of each configuration already answered (in the request cache)
    keys = list(table.rows)
    rng = __import__("random").Random(seed)
    order = rng.sample(keys, len(keys)) if strategy == "grid" else None
    sampler: Any = None
    if strategy in ("tpe", "tpe+asha"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            # As ragsweep builds it (search/searcher.py) for a search of num_samples = a third of the grid.
            n_startup = max(2, min(10, len(keys) // 3 // 3))
            sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=n_startup, multivariate=True,
                                                 group=True, constant_liar=True)
    elif strategy == "random":
        sampler = optuna.samplers.RandomSampler(seed=seed)
    pruner = (optuna.pruners.SuccessiveHalvingPruner(min_resource=grace, reduction_factor=int(rf))
              if strategy == "tpe+asha" else optuna.pruners.NopPruner())
    study = optuna.create_study(direction="maximize", sampler=sampler or optuna.samplers.RandomSampler(seed=seed),
                                pruner=pruner)
    dists = {k: optuna.distributions.CategoricalDistribution(v) for k, v in table.choices.items()}
    for i in range(4 * len(keys)):
        if order is not None:
            if i >= len(order):
                break
            key = order[i]
            trial = study.ask(fixed_distributions={})
        else:
            trial = study.ask(dists)
            key = _key(trial.params)
        # Rungs at grace, grace*rf, ... questions, then all (as ASHA with time_attr=n_questions).
        rungs, n = [], grace
        while n < table.n_questions:
            rungs.append(n)
            n = int(n * rf)
        rungs.append(table.n_questions)
        pruned, answered = False, 0
        for n in rungs if strategy == "tpe+asha" else [table.n_questions]:
            answered = n
            trial.report(table.objective(key, n), n)
            if n < table.n_questions and trial.should_prune():
                pruned = True
                break
        # Only questions this configuration never answered cost calls; the rest come from the request cache.
        calls += 2 * max(0, answered - answered_before.get(key, 0))
        answered_before[key] = max(answered, answered_before.get(key, 0))
        if pruned:
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
            continue
        value = table.full[key]
        study.tell(trial, value)
        if value >= target:
            return calls / table.grid_calls
    return math.inf


def replay(seeds: int, tolerance: float, grace: int, rf: float) -> int:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    table = Table(json.loads(TABLE.read_text()))
    within = sum(v >= table.best * (1 - tolerance) for v in table.full.values())
    print(f"grid: {len(table.rows)} configurations x {table.n_questions} questions = {table.grid_calls} LLM calls; "
          f"best objective {table.best:.4f}; {within} configuration(s) within {tolerance:.0%} of it")
    print(f"{'strategy':<12}{'median':>9}{'p25':>8}{'p75':>8}{'max':>8}{'found':>8}   (calls / full-grid calls, "
          f"{seeds} seeds)")
    for strategy in ("random", "grid", "tpe", "tpe+asha"):
        fr = sorted(_run(table, strategy, s, tolerance, grace, rf) for s in range(seeds))
        found = sum(math.isfinite(f) for f in fr)
        # Nearest-rank quantiles over every seed; a seed that never found one counts as infinitely expensive.
        cells = "".join(f"{_fmt(fr[min(len(fr) - 1, int(q * len(fr)))]):>8}" for q in (0.25, 0.75))
        print(f"{strategy:<12}{_fmt(_median(fr)):>9}{cells}{_fmt(fr[-1]):>8}{found:>5}/{seeds}")
    print(f"(a trial within {tolerance:.0%} of the best ends a run; 'never' = not within {4 * len(table.rows)} "
          "trials; ASHA rungs at " + ", ".join(str(grace * int(rf) ** i) for i in range(8)
                                               if grace * int(rf) ** i < table.n_questions) + " questions)")
    return 0


def _median(values: list[float]) -> float:
    n = len(values)
    return values[n // 2] if n % 2 else (values[n // 2 - 1] + values[n // 2]) / 2


def _fmt(v: float) -> str:
    return f"{v:.1%}" if math.isfinite(v) else "never"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("command", nargs="?", default="replay", choices=["build", "replay"])
    ap.add_argument("--seeds", type=int, default=20)
    ap.add_argument("--tolerance", type=float, default=0.02)
    ap.add_argument("--grace", type=int, default=2, help="ASHA grace period in questions")
    ap.add_argument("--reduction-factor", type=float, default=2.0)
    args = ap.parse_args()
    if args.command == "build":
        return build()
    if not TABLE.exists():
        print(f"{TABLE} is missing: run `{sys.argv[0]} build` first", file=sys.stderr)
        return 2
    return replay(args.seeds, args.tolerance, args.grace, args.reduction_factor)


if __name__ == "__main__":
    sys.exit(main())
