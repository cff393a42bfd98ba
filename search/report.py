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

from search.config import ExperimentConfig
from search.selection import TrialRecord
from search.space import PARAM_NAMES, distributions

TOP = 10
# Metrics shown in the leaderboard besides the objective, when present.
SHOWN_METRICS = ("token_f1", "recall_at_k", "mrr", "exact_match", "judge_correctness", "judge_faithfulness",
                 "judge_answer_relevance", "judge_context_precision", "latency_p95_s",
                 "tokens_per_question", "generator_requests", "judge_requests")


@dataclass
class Summary:
    winner: TrialRecord | None
    reason: str
    baseline: TrialRecord | None
    front: list[TrialRecord]
    tracking_link: str
    notes: list[str] = field(default_factory=list)


def leaderboard(trials: list[TrialRecord]) -> pd.DataFrame:
    """Completed trials by objective (best first), then trials stopped early by how far they got."""
    rows = []
    for t in trials:
        row: dict[str, Any] = {"trial": t.name, "status": t.status, "baseline": t.baseline,
                               "n_questions": t.n_questions, "objective": round(t.objective, 4)}
        row.update({k: t.params.get(k) for k in PARAM_NAMES})
        row.update({k: round(float(t.metrics[k]), 4) for k in SHOWN_METRICS if _finite(t.metrics.get(k))})
        row["run_id"] = t.run_id
        rows.append(row)
    df = pd.DataFrame(rows)
    if df.empty:
        return df
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
            values = [t.objective, float(t.metrics.get(cfg.objective.cost, math.nan))] if multi else [t.objective]
            if all(math.isfinite(v) for v in values):
                study.add_trial(optuna.trial.create_trial(params=params, distributions=d, values=values))
                continue
        study.add_trial(optuna.trial.create_trial(params=params, distributions=d,
                                                  state=optuna.trial.TrialState.PRUNED,
                                                  intermediate_values={t.n_questions: t.objective}))
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
    kw = {"target": lambda t: t.values[0], "target_name": "objective"} if multi else {}
    # PED-ANOVA ranks params by how they reach *low* targets when given a target: negate the quality.
    imp_kw = {"target": lambda t: -t.values[0], "target_name": "objective"} if multi else {}
    varied = _varied_params(study)
    plots = {
        "history.png": lambda: ovm.plot_optimization_history(study, **kw),
        "parallel_coordinates.png": lambda: ovm.plot_parallel_coordinate(study, params=varied, **kw),
        "importances.png": lambda: ovm.plot_param_importances(study, params=varied, **imp_kw),
    }
    if multi:
        plots["pareto_front.png"] = lambda: ovm.plot_pareto_front(study, target_names=["objective", cfg.objective.cost])
    written = []
    for name, make in plots.items():
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # experimental-API and degenerate-axis warnings from Optuna
                ax = make()
            fig = (ax.flat[0] if hasattr(ax, "flat") else ax).figure
            fig.set_size_inches(9, 5)
            fig.tight_layout()
            fig.savefig(folder / name, dpi=100)
            plt.close(fig)
            written.append(folder / name)
        except Exception as e:  # noqa: BLE001 - a plot Optuna cannot draw (too few trials) is a note, not a failure
            notes.append(f"{name}: not drawn ({type(e).__name__}: {e})")
    return written


def summary_lines(s: Summary, cfg: ExperimentConfig) -> list[str]:
    lines = []
    if s.winner is None:
        lines.append(f"no champion: {s.reason}")
    else:
        w = s.winner
        lines.append(f"winner {w.name}: objective {w.objective:.4f} ({s.reason})")
        lines.append("  " + ", ".join(f"{k}={v}" for k, v in w.params.items()))
        if s.baseline is None:
            lines.append("  no baseline trial in this search")
        elif s.baseline.run_id == w.run_id:
            lines.append("  the baseline configuration won")
        elif s.baseline.status != "completed":
            lines.append(f"  baseline {s.baseline.name} was stopped early at {s.baseline.n_questions} questions "
                         f"(objective {s.baseline.objective:.4f} there)")
        else:
            margin = w.objective - s.baseline.objective
            rel = f" ({margin / abs(s.baseline.objective):+.1%})" if s.baseline.objective else ""
            lines.append(f"  margin over baseline {s.baseline.name}: {margin:+.4f}{rel}")
    if cfg.objective.cost is not None:
        front = ", ".join(f"{t.name} ({t.objective:.3f}, {float(t.metrics.get(cfg.objective.cost, math.nan)):.3g})"
                          for t in s.front)
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
    lines = summary_lines(summary, cfg)
    (folder / "report.html").write_text(_html(lines, top, imp, pngs, summary.notes), encoding="utf-8")
    return lines


def _html(lines: list[str], top: pd.DataFrame, imp: dict[str, float], pngs: list[Path], notes: list[str]) -> str:
    imgs = "".join(
        f'<h2>{html.escape(p.stem.replace("_", " "))}</h2><img alt="{html.escape(p.stem)}" '
        f'src="data:image/png;base64,{base64.b64encode(p.read_bytes()).decode()}">' for p in pngs
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
