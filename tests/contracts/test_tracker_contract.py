"""The tracker contract (search/tracking/tracker.py) against each tracking store: a sqlite file and an mlflow server.

Every write names its run: two runs written in turns stay apart, and MLflow's implicit active run is never used.
"""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import pytest

from ragsweep.pipelines.data import load_dataset
from ragsweep.search.tracking.tracker import PARENT_TAG, TAG_FAILURE, RunRef, Tracker

STORES = ["sqlite", pytest.param("server", marks=pytest.mark.integration)]


@pytest.fixture(params=STORES)
def tracker(request: pytest.FixtureRequest, tmp_path: Path) -> Tracker:
    uri = (
        f"sqlite:///{tmp_path / 'mlflow.db'}" if request.param == "sqlite" else request.getfixturevalue("mlflow_server")
    )
    return Tracker(uri)


@pytest.fixture
def experiment(tracker: Tracker, tmp_path: Path) -> str:
    name = f"contract-{tmp_path.name}"
    return tracker.client.create_experiment(name, artifact_location=(tmp_path / "artifacts").as_uri())


def test_runs_are_written_by_id_never_through_the_active_run(tracker: Tracker, experiment: str) -> None:
    a = tracker.start(experiment, "a", {"ragsweep.kind": "search"})
    b = tracker.start(experiment, "b", parent_id=a)
    for i in range(3):  # interleaved writes
        tracker.metrics(a, {"m": float(i)}, step=i)
        tracker.metrics(b, {"m": 10.0 + i}, step=i)
    assert mlflow.active_run() is None
    ra, rb = tracker.client.get_run(a), tracker.client.get_run(b)
    assert ra.info.status == "RUNNING" and ra.info.run_name == "a" and ra.data.tags["ragsweep.kind"] == "search"
    assert rb.data.tags[PARENT_TAG] == a
    assert [m.value for m in tracker.client.get_metric_history(a, "m")] == [0.0, 1.0, 2.0]
    assert [m.step for m in tracker.client.get_metric_history(b, "m")] == [0, 1, 2] and rb.data.metrics["m"] == 12.0


def test_params_metrics_and_tags_respect_mlflow_limits(tracker: Tracker, experiment: str) -> None:
    run = tracker.start(experiment, "limits")
    tracker.params(run, {f"p{i}": i for i in range(250)} | {"long": "x" * 7000})
    tracker.metrics(run, {f"m{i}": float(i) for i in range(150)} | {"nan": float("nan"), "inf": float("inf")})
    tracker.tags(run, {"t": 3, "note": "y" * 6000})
    data = tracker.client.get_run(run).data
    assert len(data.params) == 251 and data.params["p7"] == "7" and len(data.params["long"]) == 6000
    assert len(data.metrics) == 150 and "nan" not in data.metrics and "inf" not in data.metrics
    assert data.tags["t"] == "3" and len(data.tags["note"]) == 5000


def test_artifacts_and_dataset_inputs(
    tracker: Tracker, experiment: str, tmp_path: Path, tiny_dataset: tuple[Path, Path]
) -> None:
    run = RunRef(tracker, tracker.start(experiment, "files"))
    (tmp_path / "folder").mkdir()
    (tmp_path / "folder" / "x.txt").write_text("x")
    (tmp_path / "one.txt").write_text("1")
    run.artifact(tmp_path / "one.txt", "single")
    run.artifacts(tmp_path / "folder", "many")
    run.json({"a": [1, 2]}, "report/d.json")
    paths = {
        a.path for folder in ("single", "many", "report") for a in tracker.client.list_artifacts(run.run_id, folder)
    }
    assert paths == {"single/one.txt", "many/x.txt", "report/d.json"}
    local = tracker.client.download_artifacts(run.run_id, "report/d.json", str(tmp_path))
    assert json.loads(Path(local).read_text()) == {"a": [1, 2]}
    ds = load_dataset(*tiny_dataset)
    tracker.dataset_inputs(run.run_id, ds, *tiny_dataset, n_used=2)
    inputs = tracker.client.get_run(run.run_id).inputs.dataset_inputs
    contexts = {next(t.value for t in i.tags if t.key == "mlflow.data.context"): i for i in inputs}
    assert set(contexts) == {"evaluation", "corpus"}
    assert contexts["evaluation"].dataset.digest == ds.digest[:32]
    assert {t.key: t.value for t in contexts["evaluation"].tags}["questions_used"] == "2"


@pytest.mark.parametrize("status", ["FAILED", "KILLED"])
def test_end_fail_and_reopen(tracker: Tracker, experiment: str, status: str) -> None:
    ok, bad = tracker.start(experiment, "ok"), tracker.start(experiment, "bad")
    tracker.end(ok)
    tracker.fail(bad, "ValueError: boom", status)
    assert tracker.client.get_run(ok).info.status == "FINISHED"
    run = tracker.client.get_run(bad)
    assert run.info.status == status and run.info.end_time is not None
    assert run.data.tags[TAG_FAILURE] == "ValueError: boom"
    assert run.data.tags["mlflow.note.content"] == f"{status}: ValueError: boom"
    tracker.reopen(bad)
    assert tracker.client.get_run(bad).info.status == "RUNNING"
