"""The end-of-search report: leaderboard, parameter importances, plots, HTML page and console summary.

Contract: :func:`write_report` writes into ``folder``: ``leaderboard.csv`` (every trial that reported),
``leaderboard.md`` (the top ones), ``importances.json``, PNG plots (optimisation history, parallel coordinates,
importances, and the Pareto front with a cost objective) and ``report.html`` (self-contained: the plots are
embedded), and returns the console summary lines. Plots and importances need enough finished trials; when
there are too few, the report says so instead of failing the search.
"""

from __future__ import annotations

import base64
import html
import json
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from ragsweep.judges.intervals import PairedDifference
from ragsweep.judges.scoring import JUDGE_METRICS
from ragsweep.pipelines.base.secrets import SECRETS
from ragsweep.search.config import ExperimentConfig
from ragsweep.search.confirm import HOLDOUT, Confirmed, QuestionPlan
from ragsweep.search.promotion.selection import Evidence, Selection, TrialRecord
from ragsweep.search.space import PARAM_NAMES, distributions

TOP = 10
# Metrics shown in the leaderboard besides the objective, when present.
SHOWN_METRICS = (
    "objective_ci_low",
    "objective_ci_high",
    f"{HOLDOUT}objective",
    f"{HOLDOUT}objective_ci_low",
    f"{HOLDOUT}objective_ci_high",
    "token_f1",
    "token_f1_ci_low",
    "token_f1_ci_high",
    f"{HOLDOUT}token_f1",
    "recall_at_k",
    "recall_at_k_ci_low",
    "recall_at_k_ci_high",
    f"{HOLDOUT}recall_at_k",
    "retrieval.recall_at_k",
    "retrieval.recall_at_k_ci_low",
    "retrieval.recall_at_k_ci_high",
    "retrieval.mrr",
    "retrieval.context_tokens",
    "mrr",
    "exact_match",
    *JUDGE_METRICS,
    "latency_p95_s",
    "tokens_per_question",
    f"{HOLDOUT}tokens_per_question",
    "llm.generator.requests",
    "llm.judge.requests",
)


@dataclass(kw_only=True)
class Summary:
    winner: TrialRecord | None
    reason: str
    baseline: TrialRecord | None
    front: list[TrialRecord]
    tracking_link: str
    notes: list[str] = field(default_factory=list)
    finalists: list[Evidence] = field(default_factory=list)  # what the finalists were judged on
    selection: Selection | None = None
    evidence_on: str = "search"  # "held-out" or "search": which questions the finalists were compared on
    margin: tuple[PairedDifference, str] | None = None  # winner minus baseline, and on which questions
    holdout: QuestionPlan | None = None
    confirmed: Confirmed | None = None
    staging: Any = None  # screen.screening.Staging of a two-stage search
    headroom: Any = None  # screen.oracle.Headroom: the winner against the oracle-retrieval ceiling
    generator: str = ""  # the generator model's name
    names: dict[str, str] = field(default_factory=dict)  # run id -> trial name, for finalists the race dropped


def leaderboard(trials: list[TrialRecord]) -> pd.DataFrame:
    """Completed trials by objective (best first), then trials stopped early by how far they got."""
    rows = []
    for t in trials:
        row: dict[str, Any] = {
            "trial": t.name,
            "status": t.status,
            "baseline": t.baseline,
            "n_questions": t.n_questions,
            "objective": round(t.objective, 4),
        }
        row.update({k: t.params.get(k) for k in PARAM_NAMES})
        row.update({k: round(float(t.metrics[k]), 4) for k in SHOWN_METRICS if _finite(t.metrics.get(k))})
        row["run_id"] = t.run_id
        rows.append(row)
    df = pd.DataFrame(rows)
    if df.empty:
        return df
    df = df.drop(columns=[k for k in PARAM_NAMES if df[k].isna().all()])  # keys this search did not sample
    df["_done"] = df["status"] == "completed"
    df = df.sort_values(["_done", "n_questions", "objective"], ascending=False).drop(columns="_done")
    return df.reset_index(drop=True)


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and math.isfinite(v)


def _study(trials: list[TrialRecord], cfg: ExperimentConfig) -> Any:
    """An Optuna study holding the search's trials, for Optuna's importance and plotting functions."""
    import optuna

    dists = distributions(cfg.space)
    multi = cfg.objective.cost is not None
    study = optuna.create_study(directions=["maximize", "minimize"] if multi else ["maximize"])
    for t in trials:
        params = {k: v for k, v in t.params.items() if k in dists and v is not None}
        d = {k: dists[k] for k in params}
        if t.status == "completed":
            values = [t.objective, float(t.metrics.get(cfg.objective.cost or "", math.nan))] if multi else [t.objective]
            if all(math.isfinite(v) for v in values):
                study.add_trial(optuna.trial.create_trial(params=params, distributions=d, values=values))
                continue
        study.add_trial(
            optuna.trial.create_trial(
                params=params,
                distributions=d,
                state=optuna.trial.TrialState.PRUNED,
                intermediate_values={t.n_questions: t.objective},
            )
        )
    return study


def _varied_params(study: Any) -> list[str]:
    """Params that took more than one value among finished trials (constant ones only clutter plots)."""
    seen: dict[str, set[str]] = {}
    from optuna.trial import TrialState

    for t in study.get_trials(states=[TrialState.COMPLETE]):
        for k, v in t.params.items():
            seen.setdefault(k, set()).add(repr(v))
    return [k for k, vals in seen.items() if len(vals) > 1]


def importances(study: Any, multi: bool) -> dict[str, float]:
    """PED-ANOVA importances (Optuna 5's default) of the varied params for the quality objective."""
    import optuna

    # With a target PED-ANOVA looks for low values, so the (maximised) quality is negated.
    target = (lambda t: -t.values[0]) if multi else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        imp = optuna.importance.get_param_importances(study, target=target, params=_varied_params(study) or None)
    return {k: round(float(v), 4) for k, v in imp.items()}


def _plots(study: Any, cfg: ExperimentConfig, folder: Path, notes: list[str]) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as ovm

    multi = cfg.objective.cost is not None
    cost = cfg.objective.cost or ""
    kw: dict[str, Any] = {"target": lambda t: t.values[0], "target_name": "objective"} if multi else {}
    # PED-ANOVA ranks params by how they reach *low* targets when given a target: negate the quality.
    imp_kw: dict[str, Any] = {"target": lambda t: -t.values[0], "target_name": "objective"} if multi else {}
    varied = _varied_params(study)
    plots = {
        "history.png": lambda: ovm.plot_optimization_history(study, **kw),
        "parallel_coordinates.png": lambda: ovm.plot_parallel_coordinate(study, params=varied, **kw),
        "importances.png": lambda: ovm.plot_param_importances(study, params=varied, **imp_kw),
    }
    if multi:
        plots["pareto_front.png"] = lambda: ovm.plot_pareto_front(study, target_names=["objective", cost])
    written = []
    for name, make in plots.items():
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # experimental-API and degenerate-axis warnings from Optuna
                ax = make()
            fig: Any = (ax.flat[0] if hasattr(ax, "flat") else ax).figure
            fig.set_size_inches(9, 5)
            fig.tight_layout()
            fig.savefig(folder / name, dpi=100)
            plt.close(fig)
            written.append(folder / name)
        except Exception as e:  # noqa: BLE001 - a plot Optuna cannot draw (too few trials) is a note, not a failure
            notes.append(f"{name}: not drawn ({type(e).__name__}: {e})")
    return written


def _ci(m: dict[str, Any], name: str) -> str:
    """``value [low, high]`` of a metric with its interval, from a trial's metrics."""
    v, lo, hi = (m.get(k) for k in (name, f"{name}_ci_low", f"{name}_ci_high"))
    if not _finite(v):
        return "n/a"
    return f"{v:.4f} [{lo:.4f}, {hi:.4f}]" if _finite(lo) and _finite(hi) else f"{v:.4f}"


def finalist_lines(s: Summary, cfg: ExperimentConfig) -> list[str]:
    """One line per finalist: search objective -> held-out objective (with intervals), cost, and vs the best."""
    if not s.finalists:
        return []
    conf = f"{cfg.search.confidence:.0%} CI"
    if s.evidence_on == "held-out" and s.holdout is not None:
        head = (
            f"finalists: search objective on {len(s.holdout.search_ids)} questions -> held-out objective on "
            f"{len(s.holdout.holdout_ids)} questions the search never saw ({conf}):"
        )
    else:
        head = f"finalists (no held-out questions: compared on the search questions, {conf}):"
    lines = [head]
    best = s.selection.best.run_id if s.selection is not None else None
    for e in s.finalists:
        m = e.trial.metrics
        held = f" -> {_ci(m, f'{HOLDOUT}objective')}" if s.evidence_on == "held-out" else ""
        if s.selection is None:
            versus = ""
        elif e.trial.run_id == best:
            versus = "best"
        else:
            d = s.selection.versus_best[e.trial.run_id]
            versus = f"vs best {-d.mean:+.4f} [{-d.high:+.4f}, {-d.low:+.4f}] " + (
                "tied" if d.verdict == "tied" else "worse"
            )
        mark = "*" if s.winner is not None and e.trial.run_id == s.winner.run_id else " "
        lines.append(
            f" {mark} {e.trial.name}: {_ci(m, 'objective')}{held}; {e.tokens_per_question:.0f} tokens/q, "
            f"p95 {e.latency_p95_s:.2f} s" + (f"; {versus}" if versus else "")
        )
    if s.confirmed is not None:
        champ = s.confirmed.champion_run_id
        if champ is not None and champ in s.confirmed.done:
            c = s.confirmed.done[champ].metrics
            lines.append(f"   {s.confirmed.champion_note} (current): held-out objective {_ci(c, 'objective')}")
        elif champ is None:
            lines.append(f"   current champion: {s.confirmed.champion_note}")
        for run_id, err in s.confirmed.errors.items():
            lines.append(f"   held-out answers of run {run_id} failed: {err[:300]}")
    return lines


def evidence_lines(s: Summary, cfg: ExperimentConfig) -> list[str]:
    """How the held-out race was decided, what the free retrieval screen chose from, and where the headroom is."""
    lines = []
    race = s.confirmed.race if s.confirmed is not None else None
    if race is not None:
        how = (
            f"decided after {race.answered} of {race.total} held-out questions ({race.rounds} round(s) of "
            f"{cfg.search.race_batch})"
            if race.answered < race.total
            else f"all {race.total} held-out questions used ({race.rounds} round(s)): the finalists left are tied"
        )
        lines.append(f"held-out race: {how}")
        for run_id, d in race.dropped.items():
            name = s.names.get(run_id, run_id[:8])
            lines.append(
                f"   dropped {name} after {race.dropped_at[run_id]} questions: {-d.mean:+.4f} vs the best, "
                f"{d.confidence:.0%} CI [{-d.high:+.4f}, {-d.low:+.4f}]"
            )
    if s.staging is not None:
        st = s.staging
        lines.append(
            f"retrieval screen: {len(st.result.screened)} configurations scored on {st.result.n_questions} "
            f"search questions with no LLM call; trials tried {len(st.candidates)} of them (the "
            f"recall-vs-context-tokens front and the baseline's)"
        )
    if s.headroom is not None:
        lines += s.headroom.lines(s.generator or str(cfg.llm.generator.model))
    return lines


def _margin_line(s: Summary) -> str:
    w, b = s.winner, s.baseline
    assert w is not None
    if b is None:
        return "  no baseline trial in this search"
    if b.run_id == w.run_id:
        return f"  the baseline configuration won (baseline {b.name})"
    if s.margin is None:
        return f"  baseline {b.name} did not answer every question (objective {b.objective:.4f} at {b.n_questions})"
    d, on = s.margin
    where = f"on {d.n} {on} questions"
    if d.verdict == "tied":
        return (
            f"  margin over baseline {b.name}: {d.mean:+.4f} {where}, {d.confidence:.0%} CI "
            f"[{d.low:+.4f}, {d.high:+.4f}]: tied (the interval includes 0)"
        )
    return (
        f"  margin over baseline {b.name}: {d.mean:+.4f} {where}, {d.confidence:.0%} CI [{d.low:+.4f}, "
        f"{d.high:+.4f}]: {'better' if d.verdict == 'better' else 'worse'} than the baseline"
    )


def summary_lines(s: Summary, cfg: ExperimentConfig) -> list[str]:
    lines = []
    if s.winner is None:
        lines.append(f"no champion: {s.reason}")
    else:
        w = s.winner
        held = f"; held-out {_ci(w.metrics, f'{HOLDOUT}objective')}" if f"{HOLDOUT}objective" in w.metrics else ""
        lines.append(f"winner {w.name}: search objective {_ci(w.metrics, 'objective')}{held} ({s.reason})")
        lines.append("  " + ", ".join(f"{k}={v}" for k, v in w.params.items()))
        lines.append(_margin_line(s))
    lines += finalist_lines(s, cfg)
    lines += evidence_lines(s, cfg)
    if cfg.objective.cost is not None:
        front = ", ".join(
            f"{t.name} ({t.objective:.3f}, {float(t.metrics.get(cfg.objective.cost, math.nan)):.3g})" for t in s.front
        )
        lines.append(f"Pareto front (objective, {cfg.objective.cost}): {front or 'empty'}")
    lines.append(f"MLflow: {s.tracking_link}")
    return lines


def write_report(trials: list[TrialRecord], summary: Summary, cfg: ExperimentConfig, folder: Path) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    board = leaderboard(trials)
    board.to_csv(folder / "leaderboard.csv", index=False)
    top = board.head(TOP).drop(columns=["run_id"], errors="ignore")
    (folder / "leaderboard.md").write_text(top.to_markdown(index=False) if not top.empty else "(no trials)\n")
    study = _study(trials, cfg)
    multi = cfg.objective.cost is not None
    try:
        imp = importances(study, multi)
    except Exception as e:  # noqa: BLE001 - e.g. fewer than two finished trials
        imp = {}
        summary.notes.append(f"parameter importances: not computed ({type(e).__name__}: {e})")
    (folder / "importances.json").write_text(json.dumps(imp, indent=2))
    pngs = _plots(study, cfg, folder, summary.notes)
    lines = [SECRETS.mask(line) for line in summary_lines(summary, cfg)]  # they name the tracking URI
    notes = [SECRETS.mask(n) for n in summary.notes]
    (folder / "report.html").write_text(_html(lines, top, imp, pngs, notes), encoding="utf-8")
    return lines


def _html(lines: list[str], top: pd.DataFrame, imp: dict[str, float], pngs: list[Path], notes: list[str]) -> str:
    imgs = "".join(
        f'<h2>{html.escape(p.stem.replace("_", " "))}</h2><img alt="{html.escape(p.stem)}" '
        f'src="data:image/png;base64,{base64.b64encode(p.read_bytes()).decode()}">'
        for p in pngs
    )
    imp_rows = "".join(f"<tr><td>{html.escape(k)}</td><td>{v:.3f}</td></tr>" for k, v in imp.items())
    note_items = "".join(f"<li>{html.escape(n)}</li>" for n in notes)
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>ragsweep search report</title><style>"
        "body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}td,th{border:1px solid #ccc;"
        "padding:3px 6px;font-size:13px}img{max-width:100%}</style></head><body><h1>ragsweep search report</h1>"
        f"<pre>{html.escape(chr(10).join(lines))}</pre><h2>leaderboard (top {TOP})</h2>"
        f"{top.to_html(index=False, border=0) if not top.empty else '<p>no trials</p>'}"
        f"<h2>parameter importances</h2><table><tr><th>param</th><th>importance</th></tr>{imp_rows}</table>"
        f"{imgs}{f'<h2>notes</h2><ul>{note_items}</ul>' if notes else ''}</body></html>"
    )
