"""Two concurrent trials under each early-stopping scheduler: the baseline always finishes, finalists are confirmed on
held-out questions, no configuration runs twice, and MLflow agrees with Ray Tune's own records. The paired search
also has its generator's server killed mid-search, and it is restarted.

Each scheduler is a class of its own, so the two searches can run on different xdist workers (``--dist loadscope``
groups a class's tests)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from ragsweep.search.tracking.runs import TAG_STATUS
from ragsweep.search.tracking.tracker import TAG_FAILURE
from tests.conftest import REPO
from tests.integration.searches import NO_JUDGE, NO_ORACLE, run_cli, search_runs, share_indexes, start_cli

pytestmark = pytest.mark.integration


def _tune_results(ray_root: Path) -> dict[str, dict]:
    """Ray Tune's own record of each trial: the last result in its result.json, by MLflow run id."""
    out = {}
    for f in ray_root.glob("*/*/result.json"):
        lines = [json.loads(line) for line in f.read_text().splitlines() if line.strip()]
        if lines and "mlflow_run_id" in lines[-1]:
            out[lines[-1]["mlflow_run_id"]] = lines[-1]
    return out


def _search_killing_the_server(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run a search and SIGKILL its generator's llama.cpp server once trials are answering; the search's output
    (stdout and stderr together) as a CompletedProcess."""
    proc = start_cli(args, cwd)
    assert proc.stdout is not None
    seen: list[str] = []
    port = None
    for line in proc.stdout:
        seen.append(line)
        if "generator server ready at" in line:
            port = line.split("ready at ")[1].split()[0].rsplit(":", 1)[1].split("/")[0]
        if port and "RUNNING" in line:  # trials are answering
            break
    assert port, "".join(seen)[-3000:]
    time.sleep(3)
    pids = subprocess.run(["pgrep", "-f", f"llama_cpp.server.*--port {port}"], capture_output=True, text=True)
    assert pids.stdout.strip(), "server process not found"
    for pid in pids.stdout.split():
        os.kill(int(pid), signal.SIGKILL)
    rest, _ = proc.communicate(timeout=900)
    out = "".join(seen) + rest
    return subprocess.CompletedProcess(args, proc.returncode, out, out)


TRUST_Q, TRUST_HELD = 6, 3  # questions per trial (in shards of 3, the grace period one shard), held-out questions


def _two_concurrent_trials(tmp_path: Path, xquad_slice: tuple[Path, Path], mlflow_server: str, scheduler: str) -> None:
    # top_k 1 is deliberately bad for a recall objective (deterministic: no LLM in the score); the baseline is the
    # best configuration (top_k 5). Three configurations but num_samples 5: no configuration may run twice.
    # The paired search also has its generator's server killed mid-search: it is restarted and nothing above changes
    # (one search shows both, which is why the restart is checked here).
    exp = f"e2e-trust-{scheduler}"
    share_indexes(tmp_path / "runs", xquad_slice[0])
    cfg = tmp_path / "trust.yaml"
    cfg.write_text(f"""
dataset: {{corpus: {xquad_slice[0]}, questions: {xquad_slice[1]}}}
space: {{chunk_size: [400], chunk_overlap: [0], retriever: [bm25], top_k: [1, 3, 5], prompt: [concise]}}
pipeline: {{max_tokens: 8}}
objective: {{weights: {{recall_at_k: 1.0}}}}
{NO_JUDGE}
search: {{num_samples: 5, max_concurrent_trials: 2, questions_per_trial: {TRUST_Q}, shard_size: 3,
          grace_questions: 3, reduction_factor: 2, scheduler: {scheduler}, p_threshold: 0.3, seed: 2,
          baseline: {{top_k: 5}}, finalists: 2, holdout_questions: {TRUST_HELD}{NO_ORACLE}}}
mlflow: {{tracking_uri: "{mlflow_server}", experiment: {exp}, model_name: {exp}-model}}
storage_dir: {tmp_path / "runs"}
""")
    args = [sys.executable, str(REPO / "search" / "run.py"), "--config", str(cfg)]
    kill = scheduler == "paired"
    proc = _search_killing_the_server(args, tmp_path) if kill else run_cli(args, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-4000:]
    assert "num_samples 5 capped: the space has 3 configurations" in proc.stdout
    parents, children = search_runs(mlflow_server, exp)
    if kill:
        assert "exited with code -9; restart 1/3" in proc.stdout and "restarted at" in proc.stdout
        assert parents[0].info.status == "FINISHED" and parents[0].data.metrics["server.generator-0.restarts"] == 1
    summary = [
        (c.data.params["top_k"], c.data.metrics.get("n_questions"), c.data.tags.get(TAG_STATUS)) for c in children
    ]
    # De-duplication: three trials, three distinct configurations.
    assert sorted(c.data.params["top_k"] for c in children) == ["1", "3", "5"], summary
    # Records agree with Tune's own results, in every outcome: status tag, FINISHED, no failure tag.
    tune = _tune_results(tmp_path / "runs" / "ray")
    assert set(tune) == {c.info.run_id for c in children}, summary
    for c in children:
        answered = tune[c.info.run_id]["n_questions"]
        assert c.data.metrics["n_questions"] == answered
        assert c.data.tags[TAG_STATUS] == ("completed" if answered == TRUST_Q else "stopped_early"), summary
        assert c.info.status == "FINISHED" and TAG_FAILURE not in c.data.tags, summary
        if answered < TRUST_Q:  # only the bad configuration is ever stopped
            assert c.data.params["top_k"] == "1", summary
    # The baseline always answers every question, whatever the scheduler thought of it.
    base = next(c for c in children if c.data.tags.get("ragsweep.baseline") == "true")
    assert base.data.params["top_k"] == "5" and base.data.metrics["n_questions"] == TRUST_Q
    # Intervals on every completed trial; held-out answers for the finalists; the winner is one of them.
    for c in children:
        if c.data.tags[TAG_STATUS] == "completed":
            m = c.data.metrics
            assert m["objective_ci_low"] <= m["objective"] <= m["objective_ci_high"], summary
    confirmed = [c for c in children if "holdout.objective" in c.data.metrics]  # 2 finalists and the baseline
    assert 2 <= len(confirmed) <= 3 and base.info.run_id in {c.info.run_id for c in confirmed}, summary
    client = MlflowClient(mlflow_server)
    for c in confirmed:
        m = c.data.metrics
        assert m["holdout.n_questions"] == TRUST_HELD and m["holdout.objective_ci_low"] <= m["holdout.objective"]
        rows = Path(client.download_artifacts(c.info.run_id, "holdout/answers.jsonl")).read_text().splitlines()
        held = {json.loads(r)["id"] for r in rows}
        searched = {
            json.loads(r)["id"]
            for r in Path(client.download_artifacts(c.info.run_id, "answers.jsonl")).read_text().splitlines()
        }
        assert len(held) == TRUST_HELD and not held & searched  # the search never saw them
    champion = client.get_model_version_by_alias(f"{exp}-model", "champion")
    assert champion.run_id in {c.info.run_id for c in confirmed}
    assert f"held-out objective on {TRUST_HELD} questions the search never saw" in proc.stdout
    assert parents[0].data.params["holdout.n_questions"] == str(TRUST_HELD)
    assert parents[0].data.tags["ragsweep.selection.on"] == "held-out"


class TestAsha:
    def test_two_concurrent_trials_records_baseline_holdout_and_no_repeats(
        self, tmp_path: Path, xquad_slice: tuple[Path, Path], mlflow_server: str
    ) -> None:
        _two_concurrent_trials(tmp_path, xquad_slice, mlflow_server, "asha")


class TestPaired:
    def test_two_concurrent_trials_records_baseline_holdout_and_no_repeats(
        self, tmp_path: Path, xquad_slice: tuple[Path, Path], mlflow_server: str
    ) -> None:
        _two_concurrent_trials(tmp_path, xquad_slice, mlflow_server, "paired")
