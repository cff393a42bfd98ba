"""``ragsweep evaluate``: score a registered model on a question set and compare it with what it was promoted on.

Contract: :func:`evaluate` takes a :class:`Target`: a registered model (:func:`registered_model`,
``models:/NAME@ALIAS``) or the configuration of a trial run (:func:`trial_configuration`). It checks the questions
file against the target's corpus before anything is loaded (a :class:`~ragsweep.pipelines.data.DatasetError`
names the file and line), loads the target,
answers every question, scores the answers with the deterministic metrics (token F1, exact match, retrieval
recall, ...) and their bootstrap intervals, and records one MLflow run (tag ``ragsweep.kind=evaluation``) with
the metrics, the answers and the comparison (written through the tracker, by run id). The comparison is with the
objective the version was promoted on (its held-out objective when the search confirmed it, else its search
objective): the model has *dropped* when the upper end of the new interval lies below the lower end of the
promoted one. The run is FAILED with the reason if anything goes wrong after it opened.

LLM-judge metrics are not computed here (no judge server is started); weights on them are reported and ignored.
"""

from __future__ import annotations

import json
import math
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import mlflow
import pandas as pd
from mlflow.tracking import MlflowClient

from ragsweep.judges.intervals import intervals
from ragsweep.judges.retrieval import ChunkRef
from ragsweep.judges.scoring import DETERMINISTIC_METRICS, aggregate, objective, score_answer
from ragsweep.pipelines.base.errors import BadInput
from ragsweep.pipelines.data import Dataset, load_dataset
from ragsweep.search.console import logger
from ragsweep.search.tracking.runs import TAG_KIND, run_of_kind
from ragsweep.search.tracking.tracker import RunRef, Tracker

METRICS = DETERMINISTIC_METRICS
HOLDOUT = "holdout."
log = logger("promotion")


class EvaluationError(BadInput):
    """The model or its promoted score cannot be found; the message names the model and version."""


@dataclass(kw_only=True, frozen=True)
class Evaluation:
    run_id: str
    model: str  # NAME@ALIAS (vN)
    n: int
    metrics: dict[str, float]  # means, objective
    ci: dict[str, tuple[float, float]]
    promoted: tuple[float, float, float] | None  # objective, low, high the version was promoted on
    promoted_on: str  # "held-out" or "search"
    dropped: bool
    ignored_weights: tuple[str, ...]  # weights on metrics evaluate does not compute (LLM judges)

    def lines(self) -> list[str]:
        lo, hi = self.ci["objective"]
        out = [
            f"{self.model} on {self.n} questions: objective {self.metrics['objective']:.4f} [{lo:.4f}, {hi:.4f}]"
            f" (95% CI); token_f1 {self.metrics.get('token_f1', math.nan):.4f}, "
            f"recall_at_k {self.metrics.get('recall_at_k', math.nan):.4f}"
        ]
        if self.promoted is not None:
            p, plo, phi = self.promoted
            out.append(f"picked on its {self.promoted_on} score: {p:.4f} [{plo:.4f}, {phi:.4f}]")
            on = self.promoted_on
            out.append(
                f"WARNING: it has dropped below the interval of its {on} score: start a new search"
                if self.dropped
                else f"not below its {on} score (the intervals overlap, or it is higher)"
            )
        if self.ignored_weights:
            out.append(f"not computed here (LLM judges), weight ignored: {', '.join(self.ignored_weights)}")
        out.append(f"MLflow evaluation run {self.run_id}")
        return out


def has_dropped(now: tuple[float, float], promoted: tuple[float, float, float] | None) -> bool:
    """True when the new interval ``now`` (low, high) lies entirely below the promoted one's lower end."""
    return promoted is not None and math.isfinite(now[1]) and math.isfinite(promoted[1]) and now[1] < promoted[1]


def _version(client: MlflowClient, name: str, alias: str) -> Any:
    try:
        return client.get_model_version_by_alias(name, alias)
    except mlflow.exceptions.MlflowException as e:
        raise EvaluationError(f"no model {name}@{alias}: {e.message}") from None


def promoted_score(client: MlflowClient, run_id: str) -> tuple[tuple[float, float, float] | None, str]:
    """The objective (and interval) the trial behind a version was promoted on: held-out when it has one."""
    m = client.get_run(run_id).data.metrics
    for prefix, on in ((HOLDOUT, "held-out"), ("", "search")):
        keys = [f"{prefix}objective", f"{prefix}objective_ci_low", f"{prefix}objective_ci_high"]
        if all(k in m for k in keys):
            return (m[keys[0]], m[keys[1]], m[keys[2]]), on
    return None, "none"


def _corpus_of(client: MlflowClient, version: Any) -> Path:
    """The corpus file logged with the model (its questions must refer to it)."""
    uri = f"models:/{version.name}/{version.version}"
    logged = mlflow.models.get_model_info(uri).flavors["python_function"].get("artifacts", {})
    if "corpus" not in logged:
        raise EvaluationError(f"{uri} carries no corpus: it was not logged by ragsweep")
    return Path(mlflow.artifacts.download_artifacts(f"{uri}/{logged['corpus']['path']}"))


def _sources(raw: str) -> list[ChunkRef]:
    return [ChunkRef(s["doc_id"], int(s["start"]), int(s["end"])) for s in json.loads(raw)]


@dataclass(kw_only=True)
class Target:
    """What is evaluated: a label, how to load something that answers (``predict(DataFrame)``), the corpus its
    answers cite, and the trial run whose scores it was picked on (the comparison)."""

    label: str
    run_name: str
    corpus: Path
    trial_run_id: str
    load: Callable[[], Any]
    tags: dict[str, str]


def registered_model(client: MlflowClient, name: str, alias: str) -> Target:
    """``models:/NAME@ALIAS``: loaded as MLflow serves it; its own corpus artifact."""
    version = _version(client, name, alias)
    uri = f"models:/{name}@{alias}"
    return Target(
        label=f"{name}@{alias} (v{version.version})",
        run_name=f"evaluate-{name}-v{version.version}",
        corpus=_corpus_of(client, version),
        trial_run_id=version.run_id,
        load=lambda: mlflow.pyfunc.load_model(uri),
        tags={"ragsweep.model": name, "ragsweep.model_version": str(version.version)},
    )


def trial_configuration(client: MlflowClient, run_id: str, corpus: Path, index_cache: Path) -> Target:
    """The configuration a trial run answered with (its ``config.json``), rebuilt here as the champion would be,
    on ``corpus`` (the search's corpus: it must be the one the trial's index was built from)."""
    run = run_of_kind(client, run_id, "trial", "--run", EvaluationError)
    try:
        spec = mlflow.artifacts.load_dict(f"runs:/{run_id}/config.json")
    except mlflow.exceptions.MlflowException as e:
        raise EvaluationError(f"trial run {run_id}: no configuration to evaluate ({e.message})") from None
    from ragsweep.pipelines.data import file_digest
    from ragsweep.search.assemble import index_spec
    from ragsweep.search.config import PipelineSettings
    from ragsweep.search.promotion.champion import RagChampion
    from ragsweep.search.space import TrialParams

    key = index_spec(
        TrialParams.model_validate(spec["params"]),
        PipelineSettings.model_validate({**spec["pipeline"], "prompts_file": None}),
        file_digest(corpus),
    ).key
    if spec.get("index_key", key) != key:
        raise EvaluationError(
            f"trial run {run_id} searched another corpus than {corpus} (index key "
            f"{spec['index_key']} != {key}): give the config of the search that ran it"
        )

    def load() -> Any:
        folder = Path(tempfile.mkdtemp(prefix="ragsweep-evaluate-"))
        (folder / "config.json").write_text(json.dumps(spec))
        artifacts = {"config": str(folder / "config.json"), "corpus": str(corpus)}
        if (index_cache / key / "meta.json").exists():  # the search's index: nothing is embedded again
            artifacts["index"] = str(index_cache / key)
        model = RagChampion()
        model.load_context(SimpleNamespace(artifacts=artifacts))
        return SimpleNamespace(predict=lambda frame: model.predict(None, frame))  # as pyfunc calls it

    name = run.info.run_name or run_id
    return Target(
        label=f"trial {name} ({run_id[:8]})",
        run_name=f"evaluate-{name}",
        corpus=corpus,
        trial_run_id=run_id,
        load=load,
        tags={"ragsweep.trial_run": run_id},
    )


def evaluate(
    target: Target,
    questions_path: Path,
    weights: Mapping[str, float],
    experiment: str,
    confidence: float = 0.95,
    samples: int = 2000,
    seed: int = 0,
) -> Evaluation:
    """Score ``target`` on ``questions_path``; record and return the evaluation (see the module contract)."""
    client = MlflowClient()
    dataset = load_dataset(target.corpus, questions_path)  # a bad file: DatasetError, before any run is opened
    used = {k: w for k, w in weights.items() if k in METRICS or k.startswith("latency")}
    ignored = tuple(k for k in weights if k not in used)
    promoted, promoted_on = promoted_score(client, target.trial_run_id)
    exp = client.get_experiment_by_name(experiment)
    exp_id = exp.experiment_id if exp is not None else client.create_experiment(experiment)
    tracker = Tracker.of(client)
    run = RunRef(tracker, tracker.start(exp_id, target.run_name, {TAG_KIND: "evaluation", **target.tags}))
    try:
        log.info(f"loading {target.label} and answering {len(dataset.questions)} question(s) ...")
        rows = _answer(dataset, target.load())
        result = _record(
            run,
            target.label,
            dataset,
            target.corpus,
            questions_path,
            rows,
            used,
            ignored,
            promoted,
            promoted_on,
            confidence,
            samples,
            seed,
        )
    except BaseException as e:
        tracker.fail(run.run_id, f"{type(e).__name__}: {e}")
        raise
    tracker.end(run.run_id)
    return result


def _answer(dataset: Dataset, model: Any) -> list[dict[str, Any]]:
    out = model.predict(pd.DataFrame({"question": [q.question for q in dataset.questions]}))
    rows = []
    for q, answer, sources in zip(dataset.questions, out["answer"], out["sources"], strict=True):
        rows.append(
            {
                "id": q.id,
                "question": q.question,
                "answer": answer,
                "gold": list(q.answers),
                "scores": score_answer(q, answer, _sources(sources)),
                "sources": json.loads(sources),
            }
        )
    return rows


def _record(
    run: RunRef,
    label: str,
    dataset: Dataset,
    corpus_path: Path,
    questions_path: Path,
    rows: list[dict[str, Any]],
    weights: Mapping[str, float],
    ignored: tuple[str, ...],
    promoted: tuple[float, float, float] | None,
    promoted_on: str,
    confidence: float,
    samples: int,
    seed: int,
) -> Evaluation:
    scores = [r["scores"] for r in rows]
    means = aggregate(scores, METRICS)
    means["objective"] = objective(means, weights)
    ci = intervals(scores, METRICS, weights, confidence, samples, seed)
    dropped = has_dropped(ci["objective"], promoted)
    run.params(
        {
            "model": label,
            "questions": str(questions_path),
            "n_questions": len(rows),
            "weights": json.dumps(dict(weights)),
            "promoted_on": promoted_on,
        }
    )
    run.tracker.dataset_inputs(run.run_id, dataset, corpus_path, questions_path)
    run.metrics(means)  # non-finite means (undefined) are skipped
    run.metrics({f"{k}_ci_{end}": v for k, (lo, hi) in ci.items() for end, v in (("low", lo), ("high", hi))})
    if promoted is not None:
        run.metrics(
            {
                "promoted_objective": promoted[0],
                "promoted_objective_ci_low": promoted[1],
                "promoted_objective_ci_high": promoted[2],
            }
        )
    run.tags({"ragsweep.drift": "dropped" if dropped else "ok" if promoted is not None else "unknown"})
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "answers.jsonl"
        path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
        run.artifact(path, "evaluation")
    return Evaluation(
        run_id=run.run_id,
        model=label,
        n=len(rows),
        metrics=means,
        ci=ci,
        promoted=promoted,
        promoted_on=promoted_on,
        dropped=dropped,
        ignored_weights=ignored,
    )
