"""MLflow with authentication, as k8s/mlflow.yaml runs it: the real ``mlflow server --app-name basic-auth`` with
the auth settings of the shipped ConfigMap. A search checks MLflow's credentials before any work (a refused login
exits 2 naming the variables), and MLflow's client logs with the account the Ray pods get."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from mlflow.tracking import MlflowClient

from ragsweep.search.cli import main
from ragsweep.search.tracking.runs import TrackingUnreachable, check_tracking
from tests.conftest import REPO
from tests.integration.local_cluster import start_mlflow

pytestmark = pytest.mark.integration  # starts a real `mlflow server`

PASSWORD = "k8s-admin-password-0123"


@pytest.fixture(scope="module")
def auth_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    root = tmp_path_factory.mktemp("mlflow-auth")
    (ini,) = [
        d
        for d in yaml.safe_load_all((REPO / "k8s" / "mlflow.yaml").read_text())
        if d and d["kind"] == "ConfigMap" and d["metadata"]["name"] == "mlflow-auth-config"
    ]
    text = re.sub(r"database_uri = \S+", f"database_uri = sqlite:///{root / 'auth.db'}", ini["data"]["basic_auth.ini"])
    (root / "basic_auth.ini").write_text(text)
    proc, uri = start_mlflow(
        root,
        extra_args=["--app-name", "basic-auth"],
        env={
            "MLFLOW_AUTH_CONFIG_PATH": str(root / "basic_auth.ini"),
            "MLFLOW_AUTH_ADMIN_PASSWORD": PASSWORD,
            "MLFLOW_FLASK_SERVER_SECRET_KEY": "0123456789abcdef",
        },
    )
    yield uri
    proc.terminate()
    proc.wait(timeout=30)


def test_refused_credentials_fail_before_any_work(auth_server: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_USERNAME", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_PASSWORD", raising=False)
    with pytest.raises(TrackingUnreachable, match="refused no credentials.*MLFLOW_TRACKING_USERNAME"):
        check_tracking(auth_server)
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "admin")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "wrong-password")
    with pytest.raises(TrackingUnreachable, match="refused the credentials in MLFLOW_TRACKING_USERNAME"):
        check_tracking(auth_server)


def test_search_with_a_refused_login_exits_2_naming_the_variables(
    auth_server: str,
    tiny_dataset: tuple[Path, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    corpus, questions = tiny_dataset
    (tmp_path / "exp.yaml").write_text(
        f"dataset: {{corpus: {corpus}, questions: {questions}, holdout: 0}}\n"
        "space: {chunk_size: [200], chunk_overlap: [0], retriever: [bm25], top_k: [2], prompt: [concise]}\n"
        "judges: {suite: []}\nsearch: {num_samples: 1, questions_per_trial: 2, grace_questions: 1}\n"
        f"mlflow: {{experiment: auth, tracking_uri: '{auth_server}'}}\nstorage_dir: {tmp_path / 'runs'}\n"
    )
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "admin")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "wrong-password")
    assert main(["search", "--config", str(tmp_path / "exp.yaml")]) == 2
    err = capsys.readouterr().err
    assert "refused the credentials" in err and "wrong-password" not in err
    assert not (tmp_path / "runs").exists()  # nothing started, nothing written


def test_the_ray_pods_account_logs_runs(auth_server: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "admin")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", PASSWORD)
    check_tracking(auth_server)
    client = MlflowClient(auth_server)
    exp = client.create_experiment("auth-ok")
    run = client.create_run(exp)
    client.log_metric(run.info.run_id, "objective", 0.5)
    client.set_terminated(run.info.run_id)
    assert client.get_run(run.info.run_id).data.metrics == {"objective": 0.5}
    assert os.environ["MLFLOW_TRACKING_PASSWORD"] == PASSWORD
