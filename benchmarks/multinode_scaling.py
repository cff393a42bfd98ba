"""Benchmark: trials per hour on a Ray cluster of 1, 2, ... nodes on this machine, one shared LLM server.

Usage: .venv/bin/python benchmarks/multinode_scaling.py [--nodes 1 2] [--trials 4] [--questions 8]

For each cluster size it starts a real Ray cluster with the ``ray`` CLI (a head and n-1 worker nodes, one CPU
each, so at most n trials run at once), submits the default config's search as a Ray job (FIFO, random
sampler with a fixed seed so every size runs the same trials, LLM cache off, fresh storage), then reads the
search run from a real ``mlflow server``. It prints trials per hour of the trial phase, the ratio to one node,
the LLM server's busy time and utilisation (busy / trial-phase wall: near 100% means the server, not the
nodes, limits the search) and how many trials each node ran, all measured in this one run.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import yaml
from mlflow.tracking import MlflowClient

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from ragsweep.search.tracking.runs import TAG_KIND, TAG_STATUS  # noqa: E402
from ragsweep.search.trial import TAG_NODE_ID  # noqa: E402
from tests.integration.local_cluster import LocalCluster, node_ip, start_mlflow  # noqa: E402


def _config(tmp: Path, base: Path, uri: str, nodes: int, trials: int, questions: int) -> Path:
    raw = yaml.safe_load(base.read_text())
    for key in ("corpus", "questions"):
        raw["dataset"][key] = str((base.parent / raw["dataset"][key]).resolve())
    raw["search"].update(
        {
            "num_samples": trials,
            "max_concurrent_trials": nodes,
            "questions_per_trial": questions,
            "shard_size": questions,
            "scheduler": "fifo",
            "sampler": "random",
            "seed": 0,
        }
    )
    raw.setdefault("llm", {})["cache"] = False
    raw["mlflow"] = {"tracking_uri": uri, "experiment": f"bench-nodes-{nodes}", "model_name": f"bench-nodes-{nodes}"}
    raw["storage_dir"] = str(tmp / f"runs-{nodes}")
    path = tmp / f"nodes-{nodes}.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def _measure(tmp: Path, base: Path, uri: str, nodes: int, trials: int, questions: int) -> dict[str, object]:
    cfg = _config(tmp, base, uri, nodes, trials, questions)
    with LocalCluster(head_cpus=1) as cluster:
        for i in range(1, nodes):
            cluster.add_worker(f"w{i}", cpus=1)
        labels = {cluster.head_id(): "head", **{cluster.node_id(f"w{i}"): f"w{i}" for i in range(1, nodes)}}
        t0 = time.perf_counter()
        job = cluster.submit([sys.executable, str(REPO / "search" / "run.py"), "--config", str(cfg)], 7200)
        wall = time.perf_counter() - t0
    if job.returncode != 0:
        raise SystemExit(f"search on {nodes} node(s) failed:\n{job.stdout[-4000:]}{job.stderr[-2000:]}")
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(f"bench-nodes-{nodes}")
    runs = client.search_runs([exp.experiment_id], max_results=500)
    parent = next(r for r in runs if r.data.tags.get(TAG_KIND) == "search")
    done = [r for r in runs if r.data.tags.get(TAG_KIND) == "trial" and r.data.tags.get(TAG_STATUS) == "completed"]
    m = parent.data.metrics
    builds = [r.data.metrics["index_build_s"] for r in done if r.data.metrics.get("index_cache_hit") == 0.0]
    reads = [r.data.metrics["index_s"] for r in done if r.data.metrics.get("index_cache_hit") == 1.0]
    return {
        "nodes": nodes,
        "trials": len(done),
        "trials_s": m["time.trials_s"],
        "job_s": wall,
        "busy_s": m["server.generator.busy_s"],
        "builds": builds,
        "reads": reads,
        "per_node": Counter(labels.get(r.data.tags.get(TAG_NODE_ID, ""), "?") for r in done),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", type=Path, default=REPO / "configs" / "default.yaml")
    ap.add_argument("--nodes", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--trials", type=int, default=4)
    ap.add_argument("--questions", type=int, default=8)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="rs-nodes-"))
    (tmp / "mlflow").mkdir()
    server, uri = start_mlflow(tmp / "mlflow", host="0.0.0.0", allowed_hosts=["localhost", "127.0.0.1", node_ip()])
    try:
        rows = [_measure(tmp, args.config.resolve(), uri, n, args.trials, args.questions) for n in args.nodes]
    finally:
        server.terminate()
    print(
        f"\n{args.trials} trials x {args.questions} questions of {args.config.name} (FIFO, LLM cache off), one "
        "llama.cpp server (SmolLM2-135M, CPU) on the head; 1 CPU per node and per trial"
    )
    print(
        f"{'nodes':>5}{'trials':>7}{'trials s':>10}{'trials/h':>10}{'vs 1 node':>10}{'LLM busy s':>11}"
        f"{'LLM util':>9}{'job s':>8}  trials per node"
    )
    base = None
    for r in rows:
        per_hour = 3600 * r["trials"] / r["trials_s"]
        base = base or per_hour
        print(
            f"{r['nodes']:>5}{r['trials']:>7}{r['trials_s']:>10.1f}{per_hour:>10.1f}{per_hour / base:>9.2f}x"
            f"{r['busy_s']:>11.1f}{r['busy_s'] / r['trials_s']:>9.0%}{r['job_s']:>8.1f}  "
            + ", ".join(f"{k}: {v}" for k, v in sorted(r["per_node"].items()))
        )
    print(
        "(trials/h over the trial phase; LLM util = server busy time / trial-phase wall; job s = ray job submit "
        "to exit, with server start and registration)"
    )
    builds = [b for r in rows for b in r["builds"]]
    reads = [b for r in rows for b in r["reads"]]
    if builds:
        # what a node without a shared storage_dir pays once per distinct index its trials need
        read = f"{sum(reads) / len(reads):.2f} s" if reads else "n/a"
        print(
            f"index per node: build (cache miss) {sum(builds) / len(builds):.2f} s mean over {len(builds)}, "
            f"read (cache hit) {read} over {len(reads)}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
