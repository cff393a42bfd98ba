"""A real multi-node search on one machine: a Ray head and a second Ray node started with the ``ray`` CLI, a
real ``mlflow server`` that other nodes reach, llama.cpp, and ``search/run.py`` submitted as a Ray job.

The nodes have one CPU each and a trial needs one, so two trials at a time must spread over both nodes. Once
the second node has finished a trial and started another, its raylet is killed: that trial must be retried on
the head (FailureConfig) in the same MLflow run, and the search must still finish every trial and register
its champion.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from ragsweep.search.tracking.runs import TAG_KIND, TAG_STATUS
from ragsweep.search.trial import TAG_NODE_ID, TAG_RESTARTS
from tests.conftest import REPO
from tests.integration.local_cluster import LocalCluster, node_ip, start_mlflow
from tests.integration.searches import share_indexes

pytestmark = pytest.mark.integration

N_TRIALS = 5


def _config(tmp: Path, xquad_slice: tuple[Path, Path], uri: str) -> Path:
    cfg = tmp / "multinode.yaml"
    share_indexes(tmp / "runs", xquad_slice[0])
    # No judges and tiny answers: the point is where trials run and what survives a lost node, not quality.
    cfg.write_text(f"""
dataset: {{corpus: {xquad_slice[0]}, questions: {xquad_slice[1]}, name: xquad_slice}}
space: {{chunk_size: [200, 400], chunk_overlap: [0], retriever: [bm25, dense], top_k: [1, 3], prompt: [concise]}}
pipeline: {{max_tokens: 8}}
judges: {{suite: []}}
objective: {{weights: {{recall_at_k: 1.0, token_f1: 0.1}}}}
search: {{sampler: random, scheduler: fifo, num_samples: {N_TRIALS}, max_concurrent_trials: 2, questions_per_trial: 4,
          shard_size: 2, holdout_questions: 2, oracle: false}}
mlflow: {{tracking_uri: "{uri}", experiment: multinode, model_name: multinode-model}}
storage_dir: {tmp / "runs"}
""")
    return cfg


def _trials(client: MlflowClient) -> list:
    exp = client.get_experiment_by_name("multinode")
    if exp is None:
        return []
    return [r for r in client.search_runs([exp.experiment_id], max_results=200) if r.data.tags.get(TAG_KIND) == "trial"]


def test_search_as_a_job_spreads_over_nodes_and_survives_losing_one(tmp_path: Path, xquad_slice) -> None:  # type: ignore[no-untyped-def]
    mlflow_root = tmp_path / "mlflow"
    mlflow_root.mkdir()
    # As on a cluster's head: listen on every interface and accept the node IP as Host. The config names the
    # loopback URI; the driver hands trials the node IP instead.
    server, uri = start_mlflow(mlflow_root, host="0.0.0.0", allowed_hosts=["localhost", "127.0.0.1", node_ip()])
    client = MlflowClient(uri)
    cfg = _config(tmp_path, xquad_slice, uri)
    try:
        with LocalCluster(head_cpus=1) as cluster:
            cluster.add_worker("b", cpus=1)
            head, worker = cluster.head_id(), cluster.node_id("b")
            # No --ray-address: the job's driver joins the cluster through RAY_ADDRESS, which Ray sets for it.
            job = cluster.start_job([sys.executable, str(REPO / "search" / "run.py"), "--config", str(cfg)])
            killed, finished_on_worker = None, []
            deadline = time.monotonic() + 1800
            while killed is None and job.poll() is None and time.monotonic() < deadline:
                on_worker = [r for r in _trials(client) if r.data.tags.get(TAG_NODE_ID) == worker]
                done = [r.info.run_id for r in on_worker if r.info.status == "FINISHED"]
                running = [r.info.run_id for r in on_worker if r.info.status == "RUNNING"]
                if done and running:
                    cluster.kill_worker("b")  # mid-trial: that trial's node is gone
                    killed, finished_on_worker = running[0], done
                time.sleep(0.5)
            try:
                out, _ = job.communicate(timeout=max(60.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                job.kill()
                out, _ = job.communicate()
                pytest.fail(f"the search job did not finish in time:\n{out[-6000:]}")

        assert killed is not None, f"the second node never ran two trials:\n{out[-6000:]}"
        assert job.returncode == 0, out[-6000:]
        assert "joined Ray cluster" in out and "2 node(s)" in out, out[-3000:]
        trials = {r.info.run_id: r for r in _trials(client)}
        assert len(trials) == N_TRIALS, f"one MLflow run per trial, retries included: {len(trials)}"
        assert all(
            r.info.status == "FINISHED" and r.data.tags.get(TAG_STATUS) == "completed" for r in trials.values()
        ), {r.info.run_name: (r.info.status, r.data.tags.get(TAG_STATUS)) for r in trials.values()}
        # trials ran on both nodes; the one on the lost node was retried on the head, in its own run
        assert {trials[i].data.tags[TAG_NODE_ID] for i in finished_on_worker} == {worker}
        assert trials[killed].data.tags[TAG_NODE_ID] == head
        assert trials[killed].data.tags.get(TAG_RESTARTS) == "1"
        assert {r.data.tags[TAG_NODE_ID] for r in trials.values()} == {head, worker}
        champion = client.get_model_version_by_alias("multinode-model", "champion")
        assert champion.run_id in trials
    finally:
        server.terminate()
        server.wait(timeout=30)
