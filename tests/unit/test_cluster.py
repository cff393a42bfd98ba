"""Cluster settings: which Ray a search joins, where results go, and the checks made before any work."""

from __future__ import annotations

from pathlib import Path

import pytest

from ragsweep.search.cli import main
from ragsweep.search.config import ConfigError, load_config
from ragsweep.search.serving.cluster import (
    CLUSTER_RETRIES,
    check_cluster,
    for_other_nodes,
    ray_target,
    ray_target_source,
    reachable_uri,
    retries,
    tune_root,
)
from ragsweep.search.tracking.resume import ray_dir_for
from tests.conftest import REPO

DEFAULT = REPO / "configs" / "default.yaml"


@pytest.fixture(autouse=True)
def _no_ray_address(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.delenv("RAGSWEEP_RAY_ADDRESS", raising=False)


def test_local_by_default_and_ray_address_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = load_config(DEFAULT)
    assert ray_target(cfg) is None and retries(cfg) == 0
    monkeypatch.setenv("RAY_ADDRESS", "10.0.0.5:6379")  # what ray job submit / KubeRay set for a job's driver
    assert ray_target(cfg) == "10.0.0.5:6379" and retries(cfg) == CLUSTER_RETRIES
    cfg = load_config(DEFAULT, {"ray_address": "auto"})
    assert ray_target(cfg) == "auto"  # the config wins over the environment


def test_the_head_of_cluster_yaml_joins_its_cluster_through_ragsweep_ray_address(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cfg = load_config(DEFAULT)
    monkeypatch.setenv("RAGSWEEP_RAY_ADDRESS", "auto")  # cluster.yaml's head_setup_commands export it
    assert ray_target(cfg) == "auto" and ray_target_source(cfg) == "RAGSWEEP_RAY_ADDRESS"
    monkeypatch.setenv("RAY_ADDRESS", "10.0.0.5:6379")  # a job's own address wins
    assert ray_target(cfg) == "10.0.0.5:6379" and ray_target_source(cfg) == "RAY_ADDRESS"


def test_max_failures_overrides_the_default() -> None:
    cfg = load_config(DEFAULT, {"ray_address": "auto"})
    cfg = cfg.model_copy(update={"search": cfg.search.model_copy(update={"max_failures": 0})})
    assert retries(cfg) == 0


def test_cluster_with_a_local_tracking_store_is_a_config_error() -> None:
    cfg = load_config(DEFAULT, {"ray_address": "10.0.0.5:6379"})
    with pytest.raises(
        ConfigError,
        match=r"search.ray_address is '10.0.0.5:6379'.*sqlite:///x/mlflow.db.*"
        r"mlflow server",
    ):
        check_cluster(cfg, "sqlite:///x/mlflow.db")
    check_cluster(cfg, "http://mlflow:5000")  # a server every node reaches: fine
    check_cluster(load_config(DEFAULT), "sqlite:///x/mlflow.db")  # no cluster: fine


def test_ray_address_from_environment_is_named_in_the_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAY_ADDRESS", "auto")
    with pytest.raises(ConfigError, match="RAY_ADDRESS is 'auto'"):
        check_cluster(load_config(DEFAULT), "file:///tmp/mlruns")


def test_cli_refuses_cluster_search_with_local_store_before_any_work(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        ["search", "--config", str(DEFAULT), "--ray-address", "10.0.0.5:6379", "--storage-dir", str(tmp_path / "runs")]
    )
    assert code == 2
    assert "other nodes cannot write to" in capsys.readouterr().err
    assert not (tmp_path / "runs" / "ray").exists() and not (tmp_path / "runs" / "mlflow.db").exists()


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("http://127.0.0.1:5000", "http://10.1.2.3:5000"),
        ("http://localhost:5000/", "http://10.1.2.3:5000/"),
        ("https://user:pw@localhost/mlflow", "https://user:pw@10.1.2.3/mlflow"),
        ("http://mlflow.ns.svc:5000", "http://mlflow.ns.svc:5000"),
        ("sqlite:///tmp/x.db", "sqlite:///tmp/x.db"),
    ],
)
def test_loopback_tracking_uri_becomes_the_driver_node_ip(uri: str, expected: str) -> None:
    assert reachable_uri(uri, "10.1.2.3") == expected


def test_tune_root_keeps_uris_and_makes_paths_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = load_config(DEFAULT, {"storage_path": "s3://bucket/ragsweep/"})
    root = tune_root(cfg, tmp_path)
    assert root == "s3://bucket/ragsweep"
    assert ray_dir_for(root, "0123456789abcdef") == "s3://bucket/ragsweep/search-0123456789ab"
    monkeypatch.chdir(tmp_path)
    cfg = load_config(DEFAULT, {"storage_path": "shared/tune"})
    assert tune_root(cfg, tmp_path) == str(tmp_path / "shared" / "tune")
    assert tune_root(load_config(DEFAULT), tmp_path) == str(tmp_path / "ray")


def test_trials_on_other_nodes_get_the_driver_node_for_loopback_services(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("ragsweep.search.serving.cluster.check_tracking", lambda uri: None)  # it answers there
    cfg = load_config(DEFAULT)
    cfg = cfg.model_copy(update={"pipeline": cfg.pipeline.model_copy(update={"qdrant_url": "http://localhost:6333"})})
    trial_cfg, uri, notes = for_other_nodes(cfg, "http://127.0.0.1:5000", "10.1.2.3")
    assert uri == "http://10.1.2.3:5000" and trial_cfg.pipeline.qdrant_url == "http://10.1.2.3:6333"
    assert len(notes) == 2 and "10.1.2.3:6333" in notes[1]
    same, uri, notes = for_other_nodes(load_config(DEFAULT), "http://mlflow:5000", "10.1.2.3")
    assert uri == "http://mlflow:5000" and same.pipeline.qdrant_url is None and notes == []


def test_a_tracking_server_on_loopback_only_keeps_the_loopback_uri_and_says_why() -> None:
    """Nothing answers at the node's cluster address (here a documentation address): trials keep the URI."""
    _, uri, notes = for_other_nodes(load_config(DEFAULT), "http://127.0.0.1:5000", "192.0.2.254")
    assert uri == "http://127.0.0.1:5000"
    assert "MLflow does not answer at http://192.0.2.254:5000" in notes[0] and "--host 0.0.0.0" in notes[0]
