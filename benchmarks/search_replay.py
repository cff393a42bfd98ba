"""A whole ragsweep search replayed on a stored grid table: screen, trials, finalists, confirmation, selection.

Used by ``search_efficiency.py`` and ``selection_quality.py``. One :class:`Strategy` is one way to run a search;
:func:`replay` runs it for one seed against a :class:`grid_table.Table` (every configuration's real per-question
scores and cost) and returns what it picked and what it spent.

- The questions are split into search and held-out parts with ragsweep's own ``split_holdout``.
- ``two_stage``: every retrieval configuration (the table's keys but the prompt) is scored on all search questions
  for free (recall of the context sent, and its tokens: no LLM call, as ``search/screen`` does), and the LLM trials
  only try the retrieval configurations on the recall-versus-tokens Pareto front (plus the baseline's), crossed with
  the generation keys (the prompt). ``joint``: Optuna samples every key together (ragsweep before the screen).
- A search runs a third of the grid's configurations (8 of 24, 5 of 16), proposed by Optuna's TPE as ragsweep
  builds it, stopped by the scheduler (``asha``: Optuna's successive halving at ragsweep's rungs; ``paired``:
  Optuna's ``WilcoxonPruner``, the test of ragsweep's paired scheduler; ``fifo``: never), each costing 2 LLM calls
  (generator + one judge) per question it answered that this configuration had not answered before (the request
  cache).
- The best ``finalists`` completed trials (by search objective) and the baseline answer the held-out questions:
  all at once, or racing (batches; a finalist whose paired interval against the current best is below 0 drops out;
  the race ends when one finalist is left or the held-out questions are spent).
- The pick is ragsweep's ``select`` (cheapest tied with ``min_saving``, or best) on the held-out evidence.
"""

from __future__ import annotations

import json
import math
import random
import warnings
from dataclasses import dataclass
from typing import Any

from grid_table import KEYS, Table, key_of

RETRIEVAL_KEYS = tuple(k for k in KEYS if k != "prompt")
CALLS_PER_ANSWER = 2  # generator + the default config's one judge


@dataclass(frozen=True)
class Strategy:
    name: str
    stage: str = "joint"  # joint | two_stage
    scheduler: str = "asha"  # asha | paired | fifo
    trials: int | None = None  # distinct configurations the search runs (num_samples); None = a third of the grid
    finalists: int = 3
    racing: bool = False
    race_batch: int = 8
    rule: str = "cheapest_tied"
    min_saving: float = 0.0  # 0 = any saving (ragsweep before the materiality floor)
    grace: int = 8
    reduction_factor: int = 2
    p_threshold: float = 0.1


# Today's default (README command 1 / configs/default.yaml before the screen) and the strategies compared with it.
STRATEGIES = (
    Strategy("before: joint tpe+asha"),
    Strategy("joint tpe+paired", scheduler="paired"),
    Strategy("joint tpe+paired, race", scheduler="paired", racing=True, min_saving=0.2),
    Strategy("two-stage tpe+asha, race", stage="two_stage", racing=True, min_saving=0.2),
    Strategy("two-stage tpe+fifo, race", stage="two_stage", scheduler="fifo", racing=True, min_saving=0.2),
    Strategy("now: two-stage tpe+paired, race", stage="two_stage", scheduler="paired", racing=True, min_saving=0.2),
)


@dataclass(frozen=True)
class Outcome:
    pick: str  # the promoted configuration's key
    calls: int  # LLM calls: search answers + held-out answers
    held_answered: int  # held-out questions the race used (per configuration still running at its end)
    tried: tuple[str, ...]
    front: tuple[str, ...]  # retrieval keys the LLM stage could try (two_stage); () for joint


def split(table: Table, fraction: float, seed: int) -> tuple[list[str], list[str]]:
    from ragsweep.pipelines.data import Question, split_holdout

    qs = [Question(id=q, question="", answers=("x",), answerable=True, gold_doc_ids=()) for q in table.questions]
    search, held = split_holdout(qs, fraction, seed)
    return [q.id for q in search], [q.id for q in held]


def retrieval_key(params: dict[str, Any]) -> str:
    return json.dumps({k: params[k] for k in RETRIEVAL_KEYS}, sort_keys=True)


def baseline_key(table: Table) -> str:
    """ragsweep's baseline: the first choice of every key (as the default config lists them)."""
    return key_of(table.first_choices())


def screen(table: Table, qids: list[str]) -> list[Any]:
    """Every retrieval key as ragsweep's screen sees it (``search/screen``): per search question, the recall of the
    context sent and its tokens; free (no LLM call). The tokens of the two prompts' rows differ by a few template
    tokens: their mean stands for the context's."""
    from ragsweep.search.screen.front import Screened

    rows: dict[str, list[dict[str, Any]]] = {}
    for row in table.rows.values():
        rk = retrieval_key(row["params"])
        i = [table.index[q] for q in qids]
        mine = [
            {
                "id": q,
                "recall_at_k": math.nan if row["scores"]["recall_at_k"][j] is None else row["scores"]["recall_at_k"][j],
                "context_tokens": float(row["tokens"][j]),
            }
            for q, j in zip(qids, i, strict=True)
        ]
        if rk in rows:  # the other prompt's row: same recall, average the tokens
            for a, b in zip(rows[rk], mine, strict=True):
                a["context_tokens"] = (a["context_tokens"] + b["context_tokens"]) / 2
        else:
            rows[rk] = mine
    return [Screened(json.loads(rk), r) for rk, r in rows.items()]


def candidates(table: Table, qids: list[str], base: str) -> list[str]:
    """ragsweep's LLM-stage candidates: the front's distinct steps and the baseline's retrieval (retrieval keys)."""
    from ragsweep.search.screen.front import candidates as product_candidates

    base_point = {k: table.rows[base]["params"][k] for k in RETRIEVAL_KEYS}
    chosen = product_candidates(screen(table, qids), base_point, 0.95, 1000, 0, max_candidates=8)
    return [json.dumps(s.point, sort_keys=True) for s in chosen]


def _per_question(table: Table, key: str, qids: list[str], weights: dict[str, float]) -> list[float]:
    from ragsweep.judges.scoring import objective

    return [
        objective({k: math.nan if v is None else v for k, v in s.items()}, weights)
        for s in table.scores(key, qids).values()
    ]


def _search(
    table: Table,
    st: Strategy,
    seed: int,
    search_q: list[str],
    weights: dict[str, float],
    allowed: list[str] | None,
    base: str,
) -> tuple[dict[str, tuple[float, int]], int]:
    """Trials: key -> (search objective, questions answered); and the LLM calls they spent."""
    import optuna

    keys = [k for k in table.rows if allowed is None or retrieval_key(table.rows[k]["params"]) in allowed]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        n_startup = max(2, min(10, (st.trials or max(3, len(table.rows) // 3)) // 3))  # search.startup_trials
        sampler = optuna.samplers.TPESampler(
            seed=seed, n_startup_trials=n_startup, multivariate=True, group=True, constant_liar=True
        )
        pruner: Any = optuna.pruners.NopPruner()
        if st.scheduler == "asha":
            pruner = optuna.pruners.SuccessiveHalvingPruner(min_resource=st.grace, reduction_factor=st.reduction_factor)
        elif st.scheduler == "paired":
            pruner = optuna.pruners.WilcoxonPruner(p_threshold=st.p_threshold, n_startup_steps=st.grace)
        study = optuna.create_study(direction="maximize", sampler=sampler, pruner=pruner)
    if allowed is None:
        dists = {k: optuna.distributions.CategoricalDistribution(v) for k, v in table.choices.items()}
    else:  # the LLM stage: a retrieval candidate of the front, and the generation keys
        dists = {
            "retrieval": optuna.distributions.CategoricalDistribution(allowed),
            "prompt": optuna.distributions.CategoricalDistribution(table.choices["prompt"]),
        }
    n, rungs = len(search_q), []
    r = st.grace
    while r < n:
        rungs.append(r)
        r *= st.reduction_factor
    shards = [s for s in range(8, n, 8) if s >= st.grace]
    results: dict[str, tuple[float, int]] = {}
    calls, attempts = 0, 0
    n_trials = st.trials or max(3, len(table.rows) // 3)
    study.enqueue_trial(_params(table, base, allowed is not None))
    while len(results) < min(n_trials, len(keys)) and attempts < 20 * n_trials:
        attempts += 1
        trial = study.ask(dists)
        key = _key(table, trial.params)
        if key in results:  # ragsweep never runs a configuration twice: tell the earlier outcome
            study.tell(trial, results[key][0]) if results[key][1] == n else study.tell(
                trial, state=optuna.trial.TrialState.PRUNED
            )
            continue
        per_q = _per_question(table, key, search_q, weights)
        answered, pruned = n, False
        for step, v in enumerate(per_q):  # the baseline reports too (it is what others compare with), never stopped
            if st.scheduler == "paired":
                trial.report(v, step)
                if key != base and step + 1 in shards and trial.should_prune():
                    answered, pruned = step + 1, True
                    break
            elif st.scheduler == "asha" and step + 1 in rungs:
                trial.report(sum(per_q[: step + 1]) / (step + 1), step + 1)
                if key != base and trial.should_prune():
                    answered, pruned = step + 1, True
                    break
        calls += CALLS_PER_ANSWER * answered
        value = sum(per_q[:answered]) / answered
        results[key] = (value, answered)
        if pruned:
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        else:
            study.tell(trial, table.objective(key, search_q, weights))
            results[key] = (table.objective(key, search_q, weights), n)
    return results, calls


def _params(table: Table, key: str, staged: bool) -> dict[str, Any]:
    p = dict(table.rows[key]["params"])
    return {"retrieval": retrieval_key(p), "prompt": p["prompt"]} if staged else p


def _key(table: Table, params: dict[str, Any]) -> str:
    if "retrieval" in params:
        return key_of({**json.loads(params["retrieval"]), "prompt": params["prompt"]})
    return key_of(params)


def _confirm(
    table: Table, st: Strategy, finals: list[str], base: str, held_q: list[str], weights: dict[str, float], seed: int
) -> tuple[dict[str, int], int]:
    """Held-out questions each configuration answered (a prefix of ``held_q``), and the questions the race used."""
    from ragsweep.judges.intervals import paired_difference

    refs = [base] if base not in finals else []
    if not st.racing:
        return {k: len(held_q) for k in [*finals, *refs]}, len(held_q)
    alive, answered = list(finals), {k: 0 for k in [*finals, *refs]}
    n = 0
    while n < len(held_q):
        n = min(len(held_q), n + st.race_batch)
        for k in [*alive, *refs]:
            answered[k] = n
        scores = {k: table.scores(k, held_q[:n]) for k in alive}
        best = max(alive, key=lambda k: table.objective(k, held_q[:n], weights))
        alive = [
            k
            for k in alive
            if k == best or paired_difference(scores[best], scores[k], weights, 0.95, 1000, seed).verdict != "better"
        ]
        if len(alive) == 1:
            break
    return answered, n


def replay(table: Table, st: Strategy, seed: int, weights: dict[str, float], fraction: float = 0.25) -> Outcome:
    from ragsweep.search.promotion.selection import Evidence, TrialRecord, select

    search_q, held_q = split(table, fraction, seed)
    held_q = random.Random(seed).sample(held_q, len(held_q))  # the seeded order finalists answer them in
    base = baseline_key(table)
    allowed, fr = None, ()
    if st.stage == "two_stage":
        allowed = candidates(table, search_q, base)
        fr = tuple(allowed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Optuna's experimental-feature and pruner warnings
        results, calls = _search(table, st, seed, search_q, weights, allowed, base)
    done = {k: v for k, v in results.items() if v[1] == len(search_q)}
    finals = sorted(done, key=lambda k: done[k][0], reverse=True)[: st.finalists]
    answered, used = _confirm(table, st, finals, base, held_q, weights, seed)
    calls += CALLS_PER_ANSWER * sum(answered.values())
    evidence = []
    for k in finals:
        qs = held_q[: answered[k]]
        evidence.append(
            Evidence(
                TrialRecord(
                    name=k, run_id=k, params={}, status="completed", objective=done[k][0], n_questions=len(search_q)
                ),
                table.scores(k, qs),
                table.objective(k, qs, weights),
                table.tokens(k, qs),
                table.latency_p95(k, qs),
            )
        )
    sel = select(evidence, weights, st.rule, 0.95, 1000, seed, min_saving=st.min_saving)
    return Outcome(sel.pick.run_id, calls, used, tuple(results), fr)


def truth(table: Table, weights: dict[str, float]) -> tuple[str, dict[str, float]]:
    """The grid's best configuration on all its questions, and every configuration's objective there."""
    full = {k: table.objective(k, table.questions, weights) for k in table.rows}
    return max(full, key=lambda k: full[k]), full


def tied_with_best(table: Table, pick: str, best: str, weights: dict[str, float]) -> bool:
    """The best is not significantly better than the pick on all the grid's questions (paired bootstrap, 95%)."""
    from ragsweep.judges.intervals import paired_difference

    if pick == best:
        return True
    qs = table.questions
    d = paired_difference(table.scores(best, qs), table.scores(pick, qs), weights, 0.95, 2000, 0)
    return d.verdict != "better"


def grid_calls(table: Table) -> int:
    return CALLS_PER_ANSWER * len(table.rows) * table.n_questions
