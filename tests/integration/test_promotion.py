"""Gated promotion, rollback and champion serving against real searches, a real `mlflow server` and llama.cpp.

One model name, three one-trial searches in order: a weak configuration (becomes champion: there is none yet),
the same configuration again (indistinguishable: challenger), a clearly stronger one (champion). Then
`ragsweep promote --run` on the second search (still not better), `ragsweep rollback`, and the champion served
by alias in a fresh process and over HTTP.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from mlflow.tracking import MlflowClient

from tests.conftest import CLI, REPO
from tests.integration.local_cluster import free_port
from tests.integration.searches import run_cli, share_indexes

pytestmark = pytest.mark.integration

MODEL = "gates-model"
N_QUESTIONS = 8
# The gates compare on a deterministic objective (retrieval recall), so "clearly better" does not depend on
# what the tiny CPU model happens to answer: 60-character chunks, one retrieved, against 400 characters, three.
WEAK = {"chunk_size": 60, "top_k": 1, "prompt": "concise", "max_tokens": 2}
STRONG = {"chunk_size": 400, "top_k": 3, "prompt": "extractive", "max_tokens": 8}


def _search(tmp: Path, xquad_slice: tuple[Path, Path], uri: str, name: str, point: dict) -> dict:
    """Run a one-trial search of ``point``; return the printed JSON summary and the parent run id."""
    folder = tmp / name
    folder.mkdir()
    cfg = folder / "exp.yaml"
    corpus, questions = xquad_slice
    cfg.write_text(f"""
dataset: {{corpus: {corpus}, questions: {questions}, name: xquad_slice}}
space:
  chunk_size: [{point["chunk_size"]}]
  chunk_overlap: [0]
  retriever: [bm25]
  top_k: [{point["top_k"]}]
  prompt: [{point["prompt"]}]
pipeline: {{max_tokens: {point["max_tokens"]}}}
search: {{num_samples: 1, max_concurrent_trials: 1, questions_per_trial: {N_QUESTIONS}, shard_size: 4,
          scheduler: fifo, oracle: false}}
judges: {{suite: []}}
objective: {{weights: {{recall_at_k: 1.0}}}}
promotion: {{confidence: 0.9, max_latency_p95_s: 120}}
mlflow: {{tracking_uri: "{uri}", experiment: gates, model_name: {MODEL}, trace_sample_rate: 0}}
storage_dir: {tmp / "runs"}
""")
    proc = run_cli([sys.executable, str(REPO / "search" / "run.py"), "--config", str(cfg)], cwd=folder)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return {**json.loads(proc.stdout[proc.stdout.rindex("\n{\n") + 1 :]), "config": cfg, "stdout": proc.stdout}


@pytest.fixture(scope="module")
def searches(tmp_path_factory: pytest.TempPathFactory, xquad_slice, mlflow_server: str) -> dict:  # type: ignore[no-untyped-def]
    tmp = tmp_path_factory.mktemp("gates")
    share_indexes(tmp / "runs", xquad_slice[0])
    out = {}
    for name, point in (("weak", WEAK), ("same", WEAK), ("strong", STRONG)):
        out[name] = _search(tmp, xquad_slice, mlflow_server, name, point)
    return out


def _version(client: MlflowClient, version: str):  # type: ignore[no-untyped-def]
    return client.get_model_version(MODEL, version)


def test_gates_decide_champion_and_challenger(searches: dict, mlflow_server: str) -> None:
    client = MlflowClient(mlflow_server)
    weak, same, strong = searches["weak"], searches["same"], searches["strong"]
    # 1. No champion yet: the floors and latency gate pass, so it is promoted.
    assert weak["model"] == f"{MODEL}@champion (v1)"
    v1 = _version(client, "1")
    assert v1.tags["ragsweep.decision"] == "champion" and "p95 latency" in v1.tags["ragsweep.decision_reason"]
    assert [g["name"] for g in json.loads(v1.tags["ragsweep.gates"])] == ["max_latency_p95_s"]
    # 2. The same configuration again: per-question scores identical, interval [0, 0]: challenger, with numbers.
    assert same["model"] == f"{MODEL}@challenger (v2)"
    v2 = _version(client, "2")
    assert v2.tags["ragsweep.decision"] == "challenger"
    assert "not distinguishable from champion v1" in v2.tags["ragsweep.decision_reason"]
    assert "FAIL `beats_champion`" in v2.description
    gates = {g["name"]: g for g in json.loads(v2.tags["ragsweep.gates"])}
    assert gates["beats_champion"]["n"] == N_QUESTIONS and gates["beats_champion"]["ci_low"] == 0
    assert gates["signature"]["passed"]
    parent = client.get_run(same["parent_run_id"])
    assert parent.data.tags["ragsweep.promotion.decision"] == "challenger"
    assert "not distinguishable" in parent.data.tags["ragsweep.promotion.reason"]
    decision = json.loads(
        Path(client.download_artifacts(same["parent_run_id"], "promotion/decision-v2.json")).read_text()
    )
    assert decision["promoted"] is False and decision["previous_champion"] == "1"
    assert "promotion: not promoted" in same["stdout"]
    # 3. A clearly stronger configuration: the paired bootstrap interval is above 0: champion, replacing v1.
    assert strong["model"] == f"{MODEL}@champion (v3)", strong["stdout"][-2000:]
    v3 = _version(client, "3")
    assert v3.tags["ragsweep.previous_champion"] == "1"
    beats = next(g for g in json.loads(v3.tags["ragsweep.gates"]) if g["name"] == "beats_champion")
    assert beats["passed"] and beats["ci_low"] > 0 and beats["mean_diff"] > 0
    assert client.get_model_version_by_alias(MODEL, "challenger").version == "2"


def test_promote_by_hand_and_rollback(searches: dict, mlflow_server: str) -> None:
    client = MlflowClient(mlflow_server)
    same = searches["same"]
    args = ["--config", str(same["config"]), "--tracking-uri", mlflow_server]
    # Re-running the gates for the second search now compares it with v3, which it does not beat.
    proc = run_cli([*CLI, "promote", "--run", same["parent_run_id"], *args], cwd=REPO)
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert "FAIL  beats_champion" in proc.stdout and "champion v3" in proc.stdout
    assert client.get_model_version_by_alias(MODEL, "champion").version == "3"
    # Rollback: champion goes back to the version v3 replaced.
    proc = run_cli([*CLI, "rollback", *args], cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    assert "from v3 back to v1" in proc.stdout
    assert client.get_model_version_by_alias(MODEL, "champion").version == "1"
    assert client.get_model_version(MODEL, "3").tags["ragsweep.decision"] == "rolled_back"
    # v1 replaced nothing: a second rollback is refused with the reason.
    proc = run_cli([*CLI, "rollback", *args], cwd=REPO)
    assert proc.returncode == 2 and "nothing to roll back to" in proc.stderr


def test_champion_loads_by_alias_in_a_fresh_process(searches: dict, mlflow_server: str) -> None:
    code = (
        f"import mlflow, pandas as pd; mlflow.set_tracking_uri({mlflow_server!r}); "
        f"m = mlflow.pyfunc.load_model('models:/{MODEL}@champion'); "
        "out = m.predict(pd.DataFrame({'question': ['Who won Super Bowl 50?']})); "
        "print('ANSWER', out['answer'][0]); print('SOURCES', out['sources'][0])"
    )
    proc = run_cli([sys.executable, "-c", code], cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "ANSWER" in proc.stdout and json.loads(proc.stdout.split("SOURCES", 1)[1].strip())


def test_ragsweep_serve_answers_over_http(searches: dict, mlflow_server: str, tmp_path: Path) -> None:
    port = free_port()
    log = open(tmp_path / "serve.log", "w")
    proc = subprocess.Popen(
        [
            *CLI,
            "serve",
            "--config",
            str(searches["weak"]["config"]),
            "--tracking-uri",
            mlflow_server,
            "--port",
            str(port),
        ],
        cwd=REPO,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        env={**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"},
    )
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/ping", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, (tmp_path / "serve.log").read_text()[-3000:]
            time.sleep(1)
        r = httpx.post(
            f"http://127.0.0.1:{port}/invocations",
            timeout=120,
            json={"dataframe_records": [{"question": "Who won Super Bowl 50?"}]},
        )
        assert r.status_code == 200, r.text
        pred = r.json()["predictions"][0]
        assert isinstance(pred["answer"], str) and json.loads(pred["sources"])
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=60)
