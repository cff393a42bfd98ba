"""Benchmark: does the promoted configuration hold up on questions the search never saw? (tabular replay)

Usage: .venv/bin/python benchmarks/selection_quality.py [--seeds 50] [--trials 8] [--holdout 0.25] [--finalists 3]

Replays searches on the stored grid table (``grid_table.py``; a real grid search: every configuration answered
the same questions). Per seed: the questions are split into a search part and a held-out part with ragsweep's own
``split_holdout``; a search of ``--trials`` configurations (seeded random sample of the grid, the baseline
included) answers the search part; then each selection method picks a configuration, and the pick is scored on
the held-out part. The truth is the configuration with the best held-out objective in the whole grid.

Methods (the selection rules of ``search.selection``, run as the search runs them):
- ``best on search``: the highest search objective (ragsweep before held-out confirmation).
- ``held-out best``: the best ``--finalists`` by search objective (and the baseline) answer the held-out part; the
  highest held-out objective wins (``search.selection: best``).
- ``cheapest tied``: the same finalists; the cheapest of those statistically tied with the best held-out objective
  (paired bootstrap, 95%) wins (``search.selection: cheapest_tied``, the default).

Printed per objective (the default ``token_f1`` and the former default ``0.7 token_f1 + 0.3 recall_at_k``) and
method: how often the pick is within ``--tolerance`` of the truth (and of the best configuration the search
tried, which isolates the selection rule from the search's coverage), the mean held-out regret (truth minus pick,
in that objective), the pick's held-out token F1 and generator tokens per question, and the LLM calls the method
spent (generator + one judge call per answer, the default config's cost), the finalists' held-out answers
included.
"""

from __future__ import annotations

import argparse
import random
import sys
from statistics import mean

import numpy as np
from grid_table import TABLE, Table

OBJECTIVES = {"token_f1 (default)": {"token_f1": 1.0},
              "0.7 f1 + 0.3 recall (before)": {"token_f1": 0.7, "recall_at_k": 0.3}}
METHODS = ("best on search", "held-out best", "cheapest tied")
CALLS_PER_ANSWER = 2  # generator + the default config's one judge


def _split(table: Table, fraction: float, seed: int) -> tuple[list[str], list[str]]:
    from ragsweep.pipelines.data import Question, split_holdout

    qs = [Question(q, "", ("x",), True, ()) for q in table.questions]
    search, held = split_holdout(qs, fraction, seed)
    return [q.id for q in search], [q.id for q in held]


def _pick(method: str, table: Table, tried: list[str], baseline: str, search_q: list[str], held_q: list[str],
          weights: dict[str, float], finalists: int, seed: int) -> tuple[str, int]:
    """The configuration a method promotes, and how many held-out answers it paid for."""
    from ragsweep.search.promotion.selection import Evidence, TrialRecord, select

    ranked = sorted(tried, key=lambda k: table.objective(k, search_q, weights), reverse=True)
    if method == "best on search":
        return ranked[0], 0
    finals = ranked[:finalists]
    answered = len(finals) + (baseline not in finals)  # the baseline answers the held-out part too
    evidence = [Evidence(TrialRecord(k, k, {}, "completed", table.objective(k, search_q, weights), len(search_q)),
                         table.scores(k, held_q), table.objective(k, held_q, weights), table.tokens(k, held_q),
                         table.latency_p95(k, held_q)) for k in finals]
    rule = "best" if method == "held-out best" else "cheapest_tied"
    sel = select(evidence, weights, rule, 0.95, 2000, seed)
    return sel.pick.run_id, answered * len(held_q)


def run(seeds: int, trials: int, fraction: float, finalists: int, tolerance: float) -> int:
    table = Table.load()
    keys = list(table.rows)
    baseline = min(keys)  # a fixed reference configuration, tried first in every search
    n_search = len(_split(table, fraction, 0)[0])
    print(f"grid: {len(keys)} configurations x {table.n_questions} questions; per seed a search of {trials} "
          f"configurations on {n_search} questions, {table.n_questions - n_search} held out; {finalists} finalists; "
          f"{seeds} seeds")
    head = (f"{'objective':<30}{'method':<16}{'within ' + format(tolerance, '.0%'):>10}{'of tried':>10}"
            f"{'regret':>9}{'pick F1':>9}{'tokens/q':>10}{'LLM calls':>11}")
    print(head)
    for label, weights in OBJECTIVES.items():
        stats: dict[str, list[tuple[bool, bool, float, float, float, int]]] = {m: [] for m in METHODS}
        for seed in range(seeds):
            search_q, held_q = _split(table, fraction, seed)
            rng = random.Random(seed)
            tried = [baseline, *rng.sample([k for k in keys if k != baseline], trials - 1)]
            held = {k: table.objective(k, held_q, weights) for k in keys}
            truth = max(held.values())
            best_tried = max(held[k] for k in tried)
            search_calls = len(tried) * len(search_q) * CALLS_PER_ANSWER
            for m in METHODS:
                pick, extra = _pick(m, table, tried, baseline, search_q, held_q, weights, finalists, seed)
                regret = truth - held[pick]
                stats[m].append((held[pick] >= truth * (1 - tolerance), held[pick] >= best_tried * (1 - tolerance),
                                 regret,
                                 table.objective(pick, held_q, {"token_f1": 1.0}), table.tokens(pick, held_q),
                                 search_calls + extra * CALLS_PER_ANSWER))
        for m in METHODS:
            rows = stats[m]
            print(f"{label:<30}{m:<16}{mean(r[0] for r in rows):>10.0%}{mean(r[1] for r in rows):>10.0%}"
                  f"{mean(r[2] for r in rows):>9.4f}{mean(r[3] for r in rows):>9.4f}{mean(r[4] for r in rows):>10.0f}"
                  f"{np.mean([r[5] for r in rows]):>11.0f}")
    print("(within: the pick's held-out objective is within the tolerance of the best configuration's in the whole "
          "grid; of tried: of the best among the configurations the search tried; regret: that best minus the "
          "pick's, in the same objective; pick F1 / tokens/q: the pick's held-out "
          "token F1 and generator tokens per question; LLM calls: the search's answers plus the finalists' and "
          "baseline's held-out answers, generator + one judge call each)")
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=50)
    ap.add_argument("--trials", type=int, default=8, help="configurations a search tries (of the grid)")
    ap.add_argument("--holdout", type=float, default=0.25, help="fraction of the questions held out")
    ap.add_argument("--finalists", type=int, default=3)
    ap.add_argument("--tolerance", type=float, default=0.02)
    args = ap.parse_args()
    if not TABLE.exists():
        print(f"{TABLE} is missing: run `benchmarks/search_efficiency.py build` first", file=sys.stderr)
        return 2
    return run(args.seeds, args.trials, args.holdout, args.finalists, args.tolerance)


if __name__ == "__main__":
    sys.exit(main())
