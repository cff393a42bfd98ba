"""A search's error paths: bad input stops it before any run or Ray (exit 2, naming the file, key or endpoint); a
server that fails to start or an MLflow server lost mid-search fails it with the reason; Ctrl-C stops its servers
and closes its runs."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from ragsweep.pipelines.llm_client.client import LLMError, check_endpoint
from ragsweep.search.tracking.tracker import TAG_FAILURE
from tests.conftest import CLI, start_mlflow_server
from tests.integration.local_cluster import free_port
from tests.integration.searches import run_cli, search_config, search_runs, start_cli

pytestmark = pytest.mark.integration


def test_missing_model_file_stops_before_any_run(tmp_path: Path, xquad_slice, mlflow_server: str) -> None:  # type: ignore[no-untyped-def]
    extra = "llm:\n  generator: {engine: llama.cpp, model: /no/such/model.gguf}\n"
    cfg = search_config(tmp_path, *xquad_slice, mlflow_server, "e2e-missing-model", extra)
    proc = run_cli([*CLI, "search", "--config", str(cfg)], cwd=tmp_path)
    assert proc.returncode == 2
    assert "model file not found: /no/such/model.gguf" in proc.stderr
    assert MlflowClient(mlflow_server).get_experiment_by_name("e2e-missing-model") is None


def test_unreachable_endpoint_stops_before_any_run(tmp_path: Path, xquad_slice, mlflow_server: str) -> None:  # type: ignore[no-untyped-def]
    """An external endpoint that does not answer is bad input: exit 2 naming it, before an MLflow run or Ray."""
    url = f"http://127.0.0.1:{free_port()}/v1"
    extra = f"llm:\n  generator: {{engine: external, base_url: '{url}', model: m}}\n"
    cfg = search_config(tmp_path, *xquad_slice, mlflow_server, "e2e-unreachable", extra)
    proc = run_cli([*CLI, "search", "--config", str(cfg)], cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert f"llm.generator.base_url: LLM endpoint {url}/models is not usable" in proc.stderr
    assert MlflowClient(mlflow_server).get_experiment_by_name("e2e-unreachable") is None
    assert not (tmp_path / "runs").exists()


def test_unreachable_mlflow_server_stops_before_anything_starts(tmp_path: Path, xquad_slice) -> None:  # type: ignore[no-untyped-def]
    uri = f"http://127.0.0.1:{free_port()}"
    cfg = search_config(tmp_path, *xquad_slice, uri, "e2e-no-mlflow")
    proc = run_cli([*CLI, "search", "--config", str(cfg)], cwd=tmp_path, timeout=120)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert f"MLflow tracking server {uri} is unreachable" in proc.stderr and "Connect" in proc.stderr
    assert not (tmp_path / "runs" / "ray").exists() and not (tmp_path / "runs" / "logs").exists()


def test_mlflow_server_gone_mid_search_fails_naming_what_was_not_logged(tmp_path: Path, xquad_slice) -> None:  # type: ignore[no-untyped-def]
    server, uri = start_mlflow_server(tmp_path)
    cfg = search_config(tmp_path, *xquad_slice, uri, "e2e-mlflow-gone", shared_indexes=True)
    # Few quick retries, so the test does not wait out MLflow's four-minute default.
    retries = {
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1",
        "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
        "MLFLOW_HTTP_REQUEST_TIMEOUT": "5",
    }
    proc = start_cli([*CLI, "search", "--config", str(cfg)], tmp_path, retries)
    assert proc.stdout is not None
    seen: list[str] = []
    try:
        for line in proc.stdout:
            seen.append(line)
            if "RUNNING" in line:  # trials are answering, their runs are open
                break
        os.killpg(server.pid, signal.SIGKILL)
        server.wait(timeout=30)
        rest, _ = proc.communicate(timeout=600)
    finally:
        if proc.poll() is None:
            proc.kill()
    out = "".join(seen) + rest
    assert proc.returncode == 1, out[-4000:]
    # The trials name what they could not log; the driver says the search run could not be closed, and where
    # Ray Tune's results are.
    assert "could not log" in out and f"to MLflow at {uri} after retries" in out
    assert f"MLflow at {uri} also stopped answering" in out and "were not logged" in out
    assert "Ray Tune's results are in" in out


def test_failing_server_start_fails_parent_run(tmp_path: Path, xquad_slice, mlflow_server: str) -> None:  # type: ignore[no-untyped-def]
    # The GGUF magic but nothing valid after it: past the pre-start check, so llama.cpp itself fails to load it.
    bad = tmp_path / "broken.gguf"
    bad.write_bytes(b"GGUF" + b"\x03\x00\x00\x00" + b"not a valid model" * 8)
    extra = f"llm:\n  generator: {{engine: llama.cpp, model: {bad}}}\n"
    cfg = search_config(tmp_path, *xquad_slice, mlflow_server, "e2e-broken-model", extra, shared_indexes=True)
    proc = run_cli([*CLI, "search", "--config", str(cfg)], cwd=tmp_path)
    assert proc.returncode == 1
    assert "llama.cpp server for broken exited" in proc.stderr
    parents, _ = search_runs(mlflow_server, "e2e-broken-model")
    assert parents[0].info.status == "FAILED" and "exited with code" in parents[0].data.tags[TAG_FAILURE]


def test_ctrl_c_stops_servers_and_closes_runs(tmp_path: Path, xquad_slice, mlflow_server: str) -> None:  # type: ignore[no-untyped-def]
    # Enough questions that the search is still answering when the interrupt comes, however fast the machine.
    cfg = search_config(tmp_path, *xquad_slice, mlflow_server, "e2e-interrupt", per_trial=8, shared_indexes=True)
    proc = start_cli([*CLI, "search", "--config", str(cfg)], tmp_path)
    assert proc.stdout is not None
    seen = []
    deadline = time.monotonic() + 300
    for line in proc.stdout:  # interrupt once trials are running
        seen.append(line)
        if "Trial status" in line or "RUNNING" in line or time.monotonic() > deadline:
            break
    time.sleep(5)
    proc.send_signal(signal.SIGINT)
    rest, _ = proc.communicate(timeout=180)
    assert proc.returncode == 130, "".join(seen)[-2000:] + rest[-3000:]
    parents, children = search_runs(mlflow_server, "e2e-interrupt")
    assert len(parents) == 1 and parents[0].info.status == "KILLED"
    assert all(c.info.status != "RUNNING" for c in children)
    ready = [line for line in seen if "server ready at" in line]
    assert ready, "".join(seen)[-2000:]  # the server was started ...
    url = ready[0].split("server ready at ")[1].split()[0]
    with pytest.raises(LLMError):  # ... and is gone
        check_endpoint(url, timeout_s=2)
