"""Benchmark: LLM calls each search strategy spends to find a near-best configuration (tabular replay).

Usage:
  .venv/bin/python benchmarks/grid_table.py build xquad|clapnq   # evaluate a whole grid once (real search, long)
  .venv/bin/python benchmarks/search_efficiency.py [--grid xquad|clapnq|all] [--seeds 20] [--tolerance 0.02]

``grid_table.py build`` runs a real ragsweep grid search (``benchmarks/grid_<name>.yaml``) and stores each
configuration's per-question scores and cost in ``benchmarks/data/grid_<name>.json``. The replay then runs
random search, the grid in random order, TPE, TPE + ASHA, TPE + paired stopping and the two-stage search (the
retrieval keys screened for free on every question, the LLM trials over the screen's candidates and the prompt,
``search/screen``) with TPE alone and with paired stopping, over many seeds against that table, with the default
objective (or ``--weights``), the sampler settings and rungs of a ragsweep search, and
counts LLM calls (generator + judge) until a trial whose full objective is within ``tolerance`` of the grid's
best completes. A trial a scheduler stops costs only the questions it answered, and a configuration proposed
again pays only for questions it has not answered before (the request cache). Prints median and spread as a
fraction of the calls the full grid spent.

Paired stopping is Optuna's ``WilcoxonPruner`` (one-sided signed-rank test of the trial's per-question objectives
against the best trial's on the same questions), the test ragsweep's ``paired`` scheduler runs under Ray.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
import warnings
from typing import Any

from grid_table import GRIDS, Table, key_of, table_of
from search_replay import baseline_key, candidates

STRATEGIES = ("random", "grid", "tpe", "tpe+asha", "tpe+paired", "two-stage tpe", "two-stage tpe+paired")


def _default_weights() -> dict[str, float]:
    from ragsweep.search.config import Objective

    return dict(Objective().weights)


def _run(
    table: Table,
    weights: dict[str, float],
    strategy: str,
    seed: int,
    tolerance: float,
    grace: int,
    rf: float,
    shard: int,
    p_threshold: float,
) -> float:
    """Calls spent until a completed trial is within ``tolerance`` of the best; inf if never (capped)."""
    import optuna

    from ragsweep.judges.scoring import objective

    qs = table.questions
    full = {k: table.objective(k, qs, weights) for k in table.rows}
    target = max(full.values()) * (1 - tolerance)
    calls, answered_before = 0, {}  # questions of each configuration already answered (in the request cache)
    keys = list(table.rows)
    order = random.Random(seed).sample(keys, len(keys)) if strategy == "grid" else None
    sampler: Any = optuna.samplers.RandomSampler(seed=seed)
    staged = strategy.startswith("two-stage")
    if staged:  # the free screen on every question, then the LLM stage over its candidates x the prompt
        strategy = strategy.removeprefix("two-stage ")
    if strategy.startswith("tpe"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            # As ragsweep builds it (search/searcher.py) for a search of num_samples = a third of the grid.
            n_startup = max(2, min(10, len(keys) // 3 // 3))
            sampler = optuna.samplers.TPESampler(
                seed=seed, n_startup_trials=n_startup, multivariate=True, group=True, constant_liar=True
            )
    pruner: Any = optuna.pruners.NopPruner()
    if strategy == "tpe+asha":
        pruner = optuna.pruners.SuccessiveHalvingPruner(min_resource=grace, reduction_factor=int(rf))
    elif strategy == "tpe+paired":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            pruner = optuna.pruners.WilcoxonPruner(p_threshold=p_threshold, n_startup_steps=grace)
    study = optuna.create_study(direction="maximize", sampler=sampler, pruner=pruner)
    dists = {k: optuna.distributions.CategoricalDistribution(v) for k, v in table.choices.items()}
    if staged:
        dists = {
            "retrieval": optuna.distributions.CategoricalDistribution(candidates(table, qs, baseline_key(table))),
            "prompt": optuna.distributions.CategoricalDistribution(table.choices["prompt"]),
        }
    # Checkpoints in questions answered: ASHA's rungs (grace, grace*rf, ... then all), or every shard.
    rungs, n = [], grace
    while n < len(qs):
        rungs.append(n)
        n = int(n * rf)
    shards = list(range(shard, len(qs), shard))
    checkpoints = {"tpe+asha": rungs, "tpe+paired": [s for s in shards if s >= grace]}.get(strategy, [])
    for i in range(4 * len(keys)):
        if order is not None:
            if i >= len(order):
                break
            key, trial = order[i], study.ask(fixed_distributions={})
        else:
            trial = study.ask(dists)
            p = trial.params
            key = key_of({**json.loads(p["retrieval"]), "prompt": p["prompt"]} if staged else p)
        pruned, answered = False, len(qs)
        if strategy == "tpe+paired":
            per_q = [
                objective({k: math.nan if v is None else v for k, v in s.items()}, weights)
                for s in table.scores(key, qs).values()
            ]
            for step, v in enumerate(per_q):  # Wilcoxon pairs instances by step: the question's position
                trial.report(v, step)
                if step + 1 in checkpoints and trial.should_prune():
                    pruned, answered = True, step + 1
                    break
        else:
            for n in checkpoints:
                trial.report(table.objective(key, qs[:n], weights), n)
                if trial.should_prune():
                    pruned, answered = True, n
                    break
        # Only questions this configuration never answered cost calls; the rest come from the request cache.
        calls += 2 * max(0, answered - answered_before.get(key, 0))
        answered_before[key] = max(answered, answered_before.get(key, 0))
        if pruned:
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
            continue
        study.tell(trial, full[key])
        if full[key] >= target:
            return calls / (2 * len(qs) * len(keys))
    return math.inf


def replay(
    table: Table,
    seeds: int,
    tolerance: float,
    grace: int,
    rf: float,
    shard: int,
    p_threshold: float,
    weights: dict[str, float],
) -> int:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    full = {k: table.objective(k, table.questions, weights) for k in table.rows}
    best = max(full.values())
    within = sum(v >= best * (1 - tolerance) for v in full.values())
    print(
        f"grid: {len(table.rows)} configurations x {table.n_questions} questions = "
        f"{2 * len(table.rows) * table.n_questions} LLM calls; objective {weights}; best {best:.4f}; "
        f"{within} configuration(s) within {tolerance:.0%} of it"
    )
    print(
        f"{'strategy':<12}{'median':>9}{'p25':>8}{'p75':>8}{'max':>8}{'found':>8}   (calls / full-grid calls, "
        f"{seeds} seeds)"
    )
    for strategy in STRATEGIES:
        fr = sorted(_run(table, weights, strategy, s, tolerance, grace, rf, shard, p_threshold) for s in range(seeds))
        found = sum(math.isfinite(f) for f in fr)
        # Nearest-rank quantiles over every seed; a seed that never found one counts as infinitely expensive.
        cells = "".join(f"{_fmt(fr[min(len(fr) - 1, int(q * len(fr)))]):>8}" for q in (0.25, 0.75))
        print(f"{strategy:<12}{_fmt(_median(fr)):>9}{cells}{_fmt(fr[-1]):>8}{found:>5}/{seeds}")
    rungs = [grace * int(rf) ** i for i in range(8) if grace * int(rf) ** i < table.n_questions]
    print(
        f"(a trial within {tolerance:.0%} of the best ends a run; 'never' = not within {4 * len(table.rows)} "
        f"trials; ASHA rungs at {', '.join(map(str, rungs))} questions; paired: Wilcoxon p < {p_threshold} "
        f"checked every {shard} questions from {grace})"
    )
    return 0


def _median(values: list[float]) -> float:
    n = len(values)
    return values[n // 2] if n % 2 else (values[n // 2 - 1] + values[n // 2]) / 2


def _fmt(v: float) -> str:
    return f"{v:.1%}" if math.isfinite(v) else "never"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("command", nargs="?", default="replay", choices=["replay"])
    ap.add_argument(
        "--grid",
        choices=[*GRIDS, "all"],
        default="all",
        help="stored grid table(s) to replay (build one with grid_table.py build NAME)",
    )
    ap.add_argument("--seeds", type=int, default=20)
    ap.add_argument("--tolerance", type=float, default=0.02)
    ap.add_argument("--grace", type=int, default=8, help="questions before a trial may be stopped")
    ap.add_argument("--reduction-factor", type=float, default=2.0)
    ap.add_argument("--shard", type=int, default=8, help="questions per report (paired stopping checks then)")
    ap.add_argument("--p-threshold", type=float, default=0.1, help="paired stopping: Wilcoxon p-value")
    ap.add_argument("--weights", type=json.loads, help="objective weights as JSON (default: the default objective)")
    args = ap.parse_args()
    for name in GRIDS if args.grid == "all" else (args.grid,):
        if not table_of(name).exists():
            print(f"{table_of(name)} is missing: run `benchmarks/grid_table.py build {name}` first", file=sys.stderr)
            return 2
        print(f"\n== {name}")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            replay(
                Table.load(table_of(name)),
                args.seeds,
                args.tolerance,
                args.grace,
                args.reduction_factor,
                args.shard,
                args.p_threshold,
                args.weights or _default_weights(),
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
