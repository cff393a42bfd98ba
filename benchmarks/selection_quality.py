"""Benchmark: does the promoted configuration hold up on questions the search never saw? (tabular replay)

Usage: .venv/bin/python benchmarks/selection_quality.py [--grid xquad|clapnq|all] [--seeds 50] [--trials 8]
       [--holdout 0.25] [--finalists 3]

First table, per stored grid (``--grid``; ``all`` = both): whole searches replayed (``search_replay.py``) for
ragsweep's former default (joint TPE + ASHA, all finalists confirmed on every held-out question, cheapest tied
without a floor), its current default (retrieval screened for free on every search question, LLM trials on the
recall-versus-tokens Pareto front with paired stopping, racing confirmation, cheapest tied with a 20% floor) and
the steps between them: how often the pick is statistically tied with the grid's best configuration on all the
grid's questions (paired bootstrap, 95%), the mean regret (best minus pick on all questions, token F1), the pick's
tokens per question, the LLM calls (search + held-out answers) as a share of the full grid's, and the held-out
questions the confirmation used.

Second table (selection rules alone):

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
from grid_table import GRIDS, Table, table_of

OBJECTIVES = {
    "token_f1 (default)": {"token_f1": 1.0},
    "0.7 f1 + 0.3 recall (before)": {"token_f1": 0.7, "recall_at_k": 0.3},
}
METHODS = ("best on search", "held-out best", "cheapest tied")
CALLS_PER_ANSWER = 2  # generator + the default config's one judge


def _split(table: Table, fraction: float, seed: int) -> tuple[list[str], list[str]]:
    from ragsweep.pipelines.data import Question, split_holdout

    qs = [Question(id=q, question="", answers=("x",), answerable=True, gold_doc_ids=()) for q in table.questions]
    search, held = split_holdout(qs, fraction, seed)
    return [q.id for q in search], [q.id for q in held]


def _pick(
    method: str,
    table: Table,
    tried: list[str],
    baseline: str,
    search_q: list[str],
    held_q: list[str],
    weights: dict[str, float],
    finalists: int,
    seed: int,
) -> tuple[str, int]:
    """The configuration a method promotes, and how many held-out answers it paid for."""
    from ragsweep.search.promotion.selection import Evidence, TrialRecord, select

    ranked = sorted(tried, key=lambda k: table.objective(k, search_q, weights), reverse=True)
    if method == "best on search":
        return ranked[0], 0
    finals = ranked[:finalists]
    answered = len(finals) + (baseline not in finals)  # the baseline answers the held-out part too
    evidence = [
        Evidence(
            TrialRecord(
                name=k,
                run_id=k,
                params={},
                status="completed",
                objective=table.objective(k, search_q, weights),
                n_questions=len(search_q),
            ),
            table.scores(k, held_q),
            table.objective(k, held_q, weights),
            table.tokens(k, held_q),
            table.latency_p95(k, held_q),
        )
        for k in finals
    ]
    rule = "best" if method == "held-out best" else "cheapest_tied"
    sel = select(evidence, weights, rule, 0.95, 2000, seed)
    return sel.pick.run_id, answered * len(held_q)


def run(seeds: int, trials: int, fraction: float, finalists: int, tolerance: float) -> int:
    table = Table.load()
    keys = list(table.rows)
    baseline = min(keys)  # a fixed reference configuration, tried first in every search
    n_search = len(_split(table, fraction, 0)[0])
    print(
        f"grid: {len(keys)} configurations x {table.n_questions} questions; per seed a search of {trials} "
        f"configurations on {n_search} questions, {table.n_questions - n_search} held out; {finalists} finalists; "
        f"{seeds} seeds"
    )
    head = (
        f"{'objective':<30}{'method':<16}{'within ' + format(tolerance, '.0%'):>10}{'of tried':>10}"
        f"{'regret':>9}{'pick F1':>9}{'tokens/q':>10}{'LLM calls':>11}"
    )
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
                stats[m].append(
                    (
                        held[pick] >= truth * (1 - tolerance),
                        held[pick] >= best_tried * (1 - tolerance),
                        regret,
                        table.objective(pick, held_q, {"token_f1": 1.0}),
                        table.tokens(pick, held_q),
                        search_calls + extra * CALLS_PER_ANSWER,
                    )
                )
        for m in METHODS:
            rows = stats[m]
            print(
                f"{label:<30}{m:<16}{mean(r[0] for r in rows):>10.0%}{mean(r[1] for r in rows):>10.0%}"
                f"{mean(r[2] for r in rows):>9.4f}{mean(r[3] for r in rows):>9.4f}{mean(r[4] for r in rows):>10.0f}"
                f"{np.mean([r[5] for r in rows]):>11.0f}"
            )
    print(
        "(within: the pick's held-out objective is within the tolerance of the best configuration's in the whole "
        "grid; of tried: of the best among the configurations the search tried; regret: that best minus the "
        "pick's, in the same objective; pick F1 / tokens/q: the pick's held-out "
        "token F1 and generator tokens per question; LLM calls: the search's answers plus the finalists' and "
        "baseline's held-out answers, generator + one judge call each)"
    )
    return 0


def strategies(table: Table, name: str, seeds: int, weights: dict[str, float]) -> None:
    """The whole-search table for one grid."""
    import optuna
    from search_replay import STRATEGIES, grid_calls, replay, tied_with_best, truth

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    best, full = truth(table, weights)
    print(
        f"\n{name}: {len(table.rows)} configurations x {table.n_questions} questions; best {full[best]:.4f} "
        f"({best}); objective {weights}; searches of {max(3, len(table.rows) // 3)} trials on 75% of the "
        f"questions, the rest held out; {seeds} seeds"
    )
    print(f"{'strategy':<34}{'tied':>7}{'regret':>9}{'pick tok/q':>12}{'calls':>8}{'held-out q':>12}")
    for st in STRATEGIES:
        rows = []
        for seed in range(seeds):
            out = replay(table, st, seed, weights)
            rows.append(
                (
                    tied_with_best(table, out.pick, best, weights),
                    full[best] - full[out.pick],
                    table.tokens(out.pick, table.questions),
                    out.calls / grid_calls(table),
                    out.held_answered,
                )
            )
        print(
            f"{st.name:<34}{mean(r[0] for r in rows):>7.0%}{mean(r[1] for r in rows):>9.4f}"
            f"{mean(r[2] for r in rows):>12.0f}{mean(r[3] for r in rows):>8.1%}{mean(r[4] for r in rows):>12.1f}"
        )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--grid", choices=[*GRIDS, "all"], default="all")
    ap.add_argument("--only-strategies", action="store_true", help="print the whole-search table only")
    ap.add_argument("--seeds", type=int, default=50)
    ap.add_argument("--trials", type=int, default=8, help="configurations a search tries (of the grid)")
    ap.add_argument("--holdout", type=float, default=0.25, help="fraction of the questions held out")
    ap.add_argument("--finalists", type=int, default=3)
    ap.add_argument("--tolerance", type=float, default=0.02)
    args = ap.parse_args()
    names = GRIDS if args.grid == "all" else (args.grid,)
    for name in names:
        if not table_of(name).exists():
            print(f"{table_of(name)} is missing: run `benchmarks/grid_table.py build {name}` first", file=sys.stderr)
            return 2
    for name in names:
        strategies(Table.load(table_of(name)), name, args.seeds, {"token_f1": 1.0})
    if args.only_strategies:
        return 0
    return run(args.seeds, args.trials, args.holdout, args.finalists, args.tolerance)


if __name__ == "__main__":
    sys.exit(main())
