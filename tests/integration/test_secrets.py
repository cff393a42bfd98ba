"""Secrets never reach a log: a real search with a secret in every place a user could put one (a server env value,
the API key variable, the password of the tracking URI and of the LLM endpoint's URL), then every byte it printed and
every file it or its tracking server stored is searched for them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, start_mlflow_server

pytestmark = pytest.mark.integration

SECRETS = {
    "env": "planted-env-secret-4242",
    "api_key": "planted-api-key-5151",
    "uri": "planted-uri-pw-6161",
    "base_url": "planted-url-pw-7171",
}


def _stored_files(*roots: Path) -> list[Path]:
    return [p for root in roots for p in root.rglob("*") if p.is_file()]


def test_planted_secrets_appear_in_no_output_and_no_stored_file(tmp_path: Path, xquad_slice, llama_server) -> None:  # type: ignore[no-untyped-def]
    server_root = tmp_path / "tracking"
    server_root.mkdir()
    proc, uri = start_mlflow_server(server_root)
    try:
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
search: {{num_samples: 1, questions_per_trial: 3, scheduler: fifo, finalists: 1}}
mlflow: {{tracking_uri: "{secret_uri}", experiment: secrets, model_name: secrets-model}}
storage_dir: {tmp_path / "runs"}
""")
        env = {
            **os.environ,
            "RAY_AUTH_MODE": "disabled",
            "MLFLOW_DISABLE_TELEMETRY": "true",
            "RAGSWEEP_PLANTED_KEY": SECRETS["api_key"],
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
        for f in _stored_files(tmp_path / "runs", server_root):
            if value.encode() in f.read_bytes():
                leaks.append(f"{name} in {f.relative_to(tmp_path)}")
    assert not leaks, leaks
    assert "ragsweep:***@" in out.stdout + out.stderr  # the URI is still shown, masked
