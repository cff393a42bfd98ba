"""``ragsweep judges calibrate``: start the judge server, calibrate the configured judges, log and print.

Contract: :func:`run_calibration` checks its inputs (dataset, labels, judges, model file) before starting
anything, then records one MLflow run (tag ``ragsweep.kind=calibration``) in the experiment
``<mlflow.experiment>-judges`` with per-judge metrics ``<judge>.accuracy|spearman|consistency|...``, the prompt
versions as params and ``calibration.md``/``.json`` and ``items.jsonl`` as artifacts. A failure marks the run
FAILED with the reason. Returns the per-judge results and the printable table.
"""

from __future__ import annotations

import json
import math
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import mlflow
from tabulate import tabulate

from ragsweep.judges.calibrate import JudgeCalibration, calibrate, load_labels, sample_questions
from ragsweep.judges.suite import build_judges
from ragsweep.pipelines.data import Dataset, load_dataset
from ragsweep.search.config import ConfigError, ExperimentConfig, ModelEndpoint
from ragsweep.search.console import logger
from ragsweep.search.serving.engines import preflight
from ragsweep.search.serving.servers import serve
from ragsweep.search.tracking.runs import TAG_KIND, check_tracking, default_tracking_uri, ensure_experiment
from ragsweep.search.tracking.tracker import TAG_FAILURE


def say(msg: str) -> None:
    logger("search").info(msg)


def run_calibration(
    cfg: ExperimentConfig,
    *,
    dataset_dir: Path | None = None,
    labels: Path | None = None,
    questions: int = 16,
    repeats: int = 2,
    seed: int = 0,
    tracking_uri: str | None = None,
) -> tuple[list[JudgeCalibration], str]:
    if questions < 2 or repeats < 1:
        raise ConfigError("calibration needs --questions >= 2 and --repeats >= 1")
    ds = _dataset(cfg, dataset_dir)
    qs = sample_questions(ds, questions, seed)
    labelled = load_labels(labels, ds) if labels is not None else []
    judges = build_judges(cfg.judges)
    if not judges:
        raise ConfigError("judges.suite is empty and there are no custom judges: nothing to calibrate")
    endpoint = cfg.judge_endpoint
    preflight(endpoint)

    storage = cfg.storage_dir
    uri = tracking_uri or cfg.mlflow.tracking_uri or default_tracking_uri(storage)
    check_tracking(uri)  # before the judge server starts, and before a folder is made: a refusal leaves none
    storage.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(uri)
    exp_id = ensure_experiment(uri, f"{cfg.mlflow.experiment}-judges", storage)
    with mlflow.start_run(
        experiment_id=exp_id, run_name="judge-calibration", tags={TAG_KIND: "calibration", "dataset.digest": ds.digest}
    ) as run:
        try:
            settings = {"questions": len(qs), "repeats": repeats, "seed": seed, "labels": str(labels) if labels else ""}
            mlflow.log_params(
                {
                    "judge.model": endpoint.model,
                    "judge.engine": endpoint.engine,
                    **settings,
                    "dataset": ds.name,
                    **{f"{j.name}.prompt_version": j.prompt_version for j in judges},
                }
            )
            log_dir = storage / "logs" / f"calibration-{run.info.run_id}"
            results, items, table, elapsed = _measure(endpoint, judges, ds, qs, labelled, repeats, seed, log_dir)
            for r in results:
                mlflow.log_metrics(_metrics(r))
            mlflow.log_metric("seconds", elapsed)
            _log_artifacts(results, items, table)
        except BaseException as e:
            mlflow.set_tag(TAG_FAILURE, f"{type(e).__name__}: {e}"[:5000])
            raise
    say(f"calibration logged to run {run.info.run_id} in experiment {cfg.mlflow.experiment}-judges ({uri})")
    return results, table


def _measure(
    endpoint: ModelEndpoint,
    judges: list[Any],
    ds: Dataset,
    qs: list[Any],
    labelled: list[Any],
    repeats: int,
    seed: int,
    log_dir: Path,
) -> tuple[list[JudgeCalibration], Any, str, float]:
    """Serve the judge model and calibrate ``judges`` on ``qs``: the results, the scored items, the table, seconds."""
    t0 = time.perf_counter()
    with serve(endpoint, None, log_dir, seed, first_role="judge") as eps:
        results, items = calibrate(
            lambda: eps.generator.client(None),
            judges,
            ds,
            qs,
            labelled,
            repeats,
            progress=lambda m: say(f"calibration {m}"),
        )
        model = eps.generator.model
    elapsed = time.perf_counter() - t0
    table = _table(results, len(qs), len(labelled), repeats, model, elapsed)
    return results, items, table, elapsed


def _dataset(cfg: ExperimentConfig, dataset_dir: Path | None) -> Dataset:
    """``--dataset DIR`` (its corpus.jsonl and questions.jsonl), else the config's dataset."""
    if dataset_dir is None:
        return load_dataset(cfg.dataset.corpus, cfg.dataset.questions, cfg.dataset.name or "")
    corpus, qfile = dataset_dir / "corpus.jsonl", dataset_dir / "questions.jsonl"
    missing = [str(p) for p in (corpus, qfile) if not p.exists()]
    if missing:
        raise ConfigError(
            f"--dataset {dataset_dir}: expected corpus.jsonl and questions.jsonl; missing {', '.join(missing)}"
        )
    return load_dataset(corpus, qfile, dataset_dir.name)


def _metrics(r: JudgeCalibration) -> dict[str, float]:
    """One judge's calibration as MLflow metrics ``<judge>.<measure>`` (undefined ones left out)."""
    measures = (
        ("accuracy", r.accuracy),
        ("spearman", r.spearman),
        ("consistency", r.consistency),
        ("max_spread", r.max_spread),
        ("calls_per_answer", r.calls_per_answer),
        ("tokens_per_answer", r.tokens_per_answer),
        ("nan", float(r.nan)),
    )
    return {f"{r.judge}.{k}": v for k, v in measures if math.isfinite(v)}


def _table(results: list[JudgeCalibration], n_q: int, n_labels: int, repeats: int, model: str, seconds: float) -> str:
    head = (
        f"judge calibration: {n_q} questions x (gold answer, wrong answer)"
        + (f" + {n_labels} human labels" if n_labels else "")
        + f", {repeats} repeat(s), judge model {model}, "
        f"{seconds:.0f} s"
    )
    body = tabulate([r.row() for r in results], headers="keys", tablefmt="github", missingval="n/a")
    note = (
        "accuracy: verdict >= 0.5 agrees with the truth; spearman: rank correlation with the truth; "
        "self-consistency: share of answers given the same value in every repeat"
    )
    return f"{head}\n{body}\n{note}"


def _finite(v: object) -> object:
    return None if isinstance(v, float) and not math.isfinite(v) else v


def _log_artifacts(results: list[JudgeCalibration], items: dict, table: str) -> None:
    with tempfile.TemporaryDirectory() as d:
        folder = Path(d)
        (folder / "calibration.md").write_text(table + "\n")
        summary = [{k: _finite(v) for k, v in asdict(r).items() if k not in ("values", "reasons")} for r in results]
        (folder / "calibration.json").write_text(json.dumps(summary, indent=2))
        with open(folder / "items.jsonl", "w", encoding="utf-8") as f:
            for r in results:
                for n, x in enumerate(items[r.judge]):
                    f.write(
                        json.dumps(
                            {
                                "judge": r.judge,
                                "question_id": x.question_id,
                                "kind": x.kind,
                                "truth": x.truth,
                                "answer": x.item.answer,
                                "values": [_finite(run[n]) for run in r.values],
                                "reason": r.reasons[n],
                            },
                            ensure_ascii=False,
                        )
                        + "\n"
                    )
        mlflow.log_artifacts(str(folder))
