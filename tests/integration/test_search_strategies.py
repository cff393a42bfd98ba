"""Search strategies end to end (real llama.cpp, Ray, `mlflow server`): the LLM-call budget, and resuming a search
whose driver was killed. Multi-objective promotion shares test_tracing's search."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from ragsweep.search.tracking.runs import TAG_STATUS, TAG_TRIAL_ID
from tests.conftest import REPO
from tests.integration.searches import run_cli, search_runs, share_indexes

pytestmark = pytest.mark.integration


def _write(
    tmp: Path,
    xquad_slice: tuple[Path, Path],
    uri: str,
    experiment: str,
    space: str,
    search: str,
    objective: str = "{weights: {recall_at_k: 1.0}}",
    judges: str = "{suite: []}",
) -> Path:
    share_indexes(tmp / "runs", xquad_slice[0])
    cfg = tmp / f"{experiment}.yaml"
    cfg.write_text(f"""
dataset: {{corpus: {xquad_slice[0]}, questions: {xquad_slice[1]}, name: xquad_slice}}
space: {space}
pipeline: {{max_tokens: 8}}
judges: {judges}
objective: {objective}
search: {search}
mlflow: {{tracking_uri: "{uri}", experiment: {experiment}, model_name: {experiment}-model}}
storage_dir: {tmp / "runs"}
""")
    return cfg


def test_llm_call_budget_stops_the_search(tmp_path: Path, xquad_slice, mlflow_server: str) -> None:  # type: ignore[no-untyped-def]
    cfg = _write(
        tmp_path,
        xquad_slice,
        mlflow_server,
        "budget",
        "{chunk_size: [400, 800], chunk_overlap: [0], retriever: [bm25, dense], top_k: [1, 3], prompt: [concise]}",
        "{num_samples: 6, max_concurrent_trials: 1, questions_per_trial: 6, shard_size: 3, scheduler: fifo,"
        " max_llm_calls: 10, holdout_questions: 2, oracle: false}",
        judges="{suite: [correctness], reason_chars: 0}",
    )
    proc = run_cli([sys.executable, str(REPO / "search" / "run.py"), "--config", str(cfg)], cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-4000:]
    assert "LLM-call budget reached" in proc.stdout
    parents, children = search_runs(mlflow_server, "budget")
    # One trial of 6 questions sends 12 requests (answer + verdict each): the budget ends the search there.
    assert len(children) == 1 and parents[0].data.metrics["total.llm.generator.requests"] == 6
    assert parents[0].info.status == "FINISHED"


def _wait_for_completed_trial(uri: str, experiment: str, proc: subprocess.Popen, timeout: float = 600) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, "search ended before it could be killed"
        exp = MlflowClient(uri).get_experiment_by_name(experiment)
        if exp is not None:
            done = [
                r
                for r in MlflowClient(uri).search_runs([exp.experiment_id])
                if r.data.tags.get(TAG_STATUS) == "completed"
            ]
            if done:
                return done[0].info.run_id
        time.sleep(1)
    raise AssertionError("no trial completed in time")


def test_resume_after_the_driver_is_killed(tmp_path: Path, xquad_slice, mlflow_server: str) -> None:  # type: ignore[no-untyped-def]
    n, q = 2, 4
    cfg = _write(
        tmp_path,
        xquad_slice,
        mlflow_server,
        "resume",
        "{chunk_size: [400, 800], chunk_overlap: [0], retriever: [bm25, dense], top_k: [1, 3], prompt: [concise]}",
        f"{{num_samples: {n}, max_concurrent_trials: 1, questions_per_trial: {q}, shard_size: 2, scheduler: fifo,"
        " holdout_questions: 2, oracle: false}",
    )
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "MLFLOW_DISABLE_TELEMETRY": "true"}
    driver = subprocess.Popen(
        [sys.executable, str(REPO / "search" / "run.py"), "--config", str(cfg)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        first = _wait_for_completed_trial(mlflow_server, "resume", driver)
    finally:
        driver.send_signal(signal.SIGKILL)  # the driver dies without any clean-up
        driver.wait()
    time.sleep(5)  # let the local Ray cluster and its servers go down with it
    client = MlflowClient(mlflow_server)
    before = client.get_run(first)
    history_before = len(client.get_metric_history(first, "n_questions"))
    parents, _ = search_runs(mlflow_server, "resume")
    assert len(parents) == 1 and parents[0].info.status == "RUNNING"

    proc = run_cli(
        [sys.executable, str(REPO / "search" / "run.py"), "--config", str(cfg), "--resume", "resume"], cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-4000:]
    assert "resuming search run" in proc.stdout
    parents, children = search_runs(mlflow_server, "resume")
    assert len(parents) == 1, "resume must continue the same parent run"
    parent = parents[0]
    assert parent.info.status == "FINISHED" and parent.data.tags["ragsweep.resumed"] == "1"
    trial_ids = [c.data.tags[TAG_TRIAL_ID] for c in children]
    assert len(children) == n and len(set(trial_ids)) == n, trial_ids  # no duplicated child runs
    assert all(c.data.tags[TAG_STATUS] == "completed" and c.data.metrics["n_questions"] == q for c in children)
    after = client.get_run(first)
    # The trial that had completed was not answered again: no new metric steps, same start and (unless the champion
    # model was logged into its run, which reopens it) the same end time. The driver may also have died after the
    # trial tagged itself completed but before its run was ended: the resumed search then ends that run, as it is.
    assert len(client.get_metric_history(first, "n_questions")) == history_before
    assert after.info.start_time == before.info.start_time and after.info.status == "FINISHED"
    champion = client.get_model_version_by_alias("resume-model", "champion").run_id
    assert champion in {c.info.run_id for c in children}
    if champion != first and before.info.status == "FINISHED":
        assert after.info.end_time == before.info.end_time

    again = run_cli(
        [sys.executable, str(REPO / "search" / "run.py"), "--config", str(cfg), "--resume", "resume"], cwd=tmp_path
    )
    assert again.returncode == 2 and "no unfinished search" in again.stderr


def test_resume_of_an_unknown_experiment_is_a_clear_error(tmp_path: Path, xquad_slice, mlflow_server: str) -> None:  # type: ignore[no-untyped-def]
    cfg = _write(tmp_path, xquad_slice, mlflow_server, "resume-unknown", "{}", "{num_samples: 1}")
    proc = run_cli(
        [sys.executable, str(REPO / "search" / "run.py"), "--config", str(cfg), "--resume", "no-such-exp"],
        cwd=tmp_path,
        timeout=300,
    )
    assert proc.returncode == 2
    assert "--resume no-such-exp: no MLflow experiment of that name" in proc.stderr
