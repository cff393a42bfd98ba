"""Secrets never reach a log: a real search with a secret in every place a user could put one (a server env value,
the API key variable, the password of the tracking URI and of the LLM endpoint's URL, MLflow's login), then every
byte it printed and every file it, its tracking server or its Ray session stored is searched for them.

MLflow's login (MLFLOW_TRACKING_PASSWORD) reaches trials through the environment of the Ray the search starts, never
Ray's runtime_env, which Ray's job and state APIs show and its session files keep (test_worker_env.py; this server
has no authentication, which makes the basic-auth app's per-request password hashing too slow for CI)."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.integration.local_cluster import start_mlflow

pytestmark = pytest.mark.integration

SECRETS = {
    "env": "planted-env-secret-4242",
    "api_key": "planted-api-key-5151",
    "uri": "planted-uri-pw-6161",
    "base_url": "planted-url-pw-7171",
    "mlflow_login": "planted-mlflow-pw-8181",
}


def _stored_files(*roots: Path) -> list[Path]:
    return [p for root in roots for p in root.rglob("*") if p.is_file() and not p.is_symlink()]


def _ray_sessions_since(t: float) -> list[Path]:
    """The Ray sessions (logs, job records) started after ``t``: this test's searches'."""
    root = Path(tempfile.gettempdir()) / "ray"
    return [p for p in root.glob("session_2*") if p.is_dir() and p.stat().st_mtime >= t] if root.is_dir() else []


def test_planted_secrets_appear_in_no_output_and_no_stored_file(tmp_path: Path, xquad_slice, llama_server) -> None:  # type: ignore[no-untyped-def]
    server_root = tmp_path / "tracking"
    server_root.mkdir()
    proc, uri = start_mlflow(server_root)
    started = time.time()
    try:
        # A password in the tracking URI: requests would send it over MLflow's login, so it is planted in the run
        # that names an unreachable server.
        secret_uri = uri.replace("http://", f"http://ragsweep:{SECRETS['uri']}@")
        base_url = llama_server.base_url.replace("http://", f"http://bot:{SECRETS['base_url']}@")
        cfg = tmp_path / "exp.yaml"
        cfg.write_text(f"""
dataset: {{corpus: {xquad_slice[0]}, questions: {xquad_slice[1]}, holdout: 0}}
space: {{chunk_size: [400], chunk_overlap: [0], retriever: [bm25], top_k: [2], prompt: [concise]}}
pipeline: {{max_tokens: 8}}
llm:
  generator:
    engine: external
    base_url: "{base_url}"
    model: {llama_server.model_id}
    api_key_env: RAGSWEEP_PLANTED_KEY
    env: {{RAGSWEEP_PLANTED_TOKEN: {SECRETS["env"]}}}
judges: {{suite: []}}
search: {{num_samples: 1, questions_per_trial: 3, scheduler: fifo, finalists: 1, oracle: false}}
mlflow: {{tracking_uri: "{uri}", experiment: secrets, model_name: secrets-model}}
storage_dir: {tmp_path / "runs"}
""")
        env = {
            **os.environ,
            "RAY_AUTH_MODE": "disabled",
            "MLFLOW_DISABLE_TELEMETRY": "true",
            "RAGSWEEP_PLANTED_KEY": SECRETS["api_key"],
            "MLFLOW_TRACKING_USERNAME": "admin",
            "MLFLOW_TRACKING_PASSWORD": SECRETS["mlflow_login"],
        }
        out = subprocess.run(
            [sys.executable, str(REPO / "search" / "run.py"), "--config", str(cfg)],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=900,
        )
        assert out.returncode == 0, out.stderr[-3000:]
        # A failure too: the exception text (here an unreachable endpoint) names the URL, never its password.
        bad = subprocess.run(
            [
                sys.executable,
                str(REPO / "search" / "run.py"),
                "--config",
                str(cfg),
                "--tracking-uri",
                secret_uri.rsplit(":", 1)[0] + ":9",
            ],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert bad.returncode == 2, bad.stderr[-2000:]
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    # MLflow's own server log records requests, not credentials; it is searched like everything else.
    leaks = []
    for name, value in SECRETS.items():
        for where, text in (("stdout", out.stdout + bad.stdout), ("stderr", out.stderr + bad.stderr)):
            leaks += [f"{name} in {where}: {line[:300]}" for line in text.splitlines() if value in line]
        for f in _stored_files(tmp_path / "runs", server_root, *_ray_sessions_since(started)):
            try:
                found = value.encode() in f.read_bytes()
            except FileNotFoundError:  # a file of another test's Ray session (under xdist), gone since listed
                continue
            if found:
                leaks.append(f"{name} in {f}")
    assert not leaks, leaks
    assert "ragsweep:***@" in bad.stdout + bad.stderr  # the URI is still shown, masked
    assert "registered secrets-model version 1" in out.stdout, out.stdout[-2000:]


WORKER_SEES = """
import os, ray
from ragsweep.search.config import ExperimentConfig
from ragsweep.search.startup import start_ray, worker_env
assert "MLFLOW_TRACKING_PASSWORD" not in worker_env()
start_ray(ExperimentConfig.model_validate({"dataset": {"corpus": "%(c)s", "questions": "%(q)s"}}), worker_env())
seen = ray.get(ray.remote(lambda: os.environ.get("MLFLOW_TRACKING_PASSWORD")).remote())
print("WORKER SEES", seen)
"""


def test_trial_workers_inherit_mlflow_login_from_the_ray_the_search_starts(xquad_slice) -> None:  # type: ignore[no-untyped-def]
    """Left out of runtime_env, MLflow's login still reaches the workers of a Ray the driver starts: its processes
    start in the driver's environment."""
    code = WORKER_SEES % {"c": xquad_slice[0], "q": xquad_slice[1]}
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "MLFLOW_TRACKING_PASSWORD": SECRETS["mlflow_login"]}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert f"WORKER SEES {SECRETS['mlflow_login']}" in out.stdout
