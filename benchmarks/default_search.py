"""Benchmark: the default search (README command 1) with a wall-time split and the index-cache check.

Usage: .venv/bin/python benchmarks/default_search.py [--config configs/default.yaml] [--max-concurrent-trials N]

Runs the search in a fresh storage folder (cold index cache, new MLflow store) and prints:
- wall time split into model server start, embedding/indexing, retrieval, generation, judging, held-out
  confirmation and framework overhead (Ray, MLflow, LangGraph, Tune scheduling: everything that is not model,
  embedding or vector work);
- distinct index configurations vs embedding passes over the corpus (must be equal).

Per-stage times are measured inside the trials and summed; with trials running concurrently they overlap,
so model work is divided by the measured mean concurrency (sum of trial times / wall time of the trial
phase, at least 1) before the overhead is taken as the remainder of the wall time.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

from ragsweep.search.config import load_config
from ragsweep.search.driver import run_search

REPO = Path(__file__).resolve().parents[1]
STAGES = {
    "embedder load": ("embedder_load_s",),
    "indexing (chunk + embed + BM25, cache reads)": ("index_s",),
    "vector store load (Qdrant)": ("qdrant_load_s",),
    "retrieval (+ query embedding, rerank)": ("retrieve_s", "rerank_s"),
    "generation (LLM)": ("generate_s",),
    "judging (LLM)": ("judge_s",),
}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", type=Path, default=REPO / "configs" / "default.yaml")
    ap.add_argument("--max-concurrent-trials", type=int)
    ap.add_argument("--num-samples", type=int)
    ap.add_argument("--scheduler", choices=["asha", "fifo"], help="override search.scheduler")
    args = ap.parse_args()
    storage = Path(tempfile.mkdtemp(prefix="ragsweep-bench-"))
    cfg = load_config(
        args.config,
        {
            "storage_dir": str(storage),
            "num_samples": args.num_samples,
            "max_concurrent_trials": args.max_concurrent_trials,
        },
    )
    if args.scheduler:
        cfg = cfg.model_copy(update={"search": cfg.search.model_copy(update={"scheduler": args.scheduler})})
    out = run_search(cfg, args.config)
    t, trials = out.timings, out.last_results  # every trial's last report, stopped ones included
    total, fit = t["total_s"], t["trials_s"]
    sums = {name: sum(m.get(k, 0.0) for m in trials for k in keys) for name, keys in STAGES.items()}
    trial_time = sum(m["trial_s"] for m in trials)
    concurrency = max(1.0, trial_time / fit)
    confirm = t.get("confirm_s", 0.0)  # the finalists' held-out answers, after the trials (its own stage)
    model = t["server_start_s"] + sum(sums.values()) / concurrency + confirm
    overhead = total - model

    rows = [("model server start", t["server_start_s"])]
    rows += [(name, v / concurrency) for name, v in sums.items()]
    rows += [("held-out confirmation (finalists, baseline, champion)", confirm)]
    rows += [("framework overhead (Ray, MLflow, LangGraph, Tune)", overhead)]
    answered = sum(int(m["n_questions"]) for m in trials)
    print(
        f"\nDefault search: {len(trials)} trials, {answered} questions answered in all "
        f"(up to {cfg.search.questions_per_trial} each), scheduler {cfg.search.scheduler}, "
        f"max_concurrent_trials={cfg.search.max_concurrent_trials}, measured mean concurrency {concurrency:.2f}"
    )
    print(f"{'stage':<52}{'seconds':>10}{'share':>9}")
    for name, v in rows:
        print(f"{name:<52}{v:>10.1f}{v / total:>9.1%}")
    print(f"{'total wall time':<52}{total:>10.1f}{1:>9.0%}")
    print(f"(driver: ray.init {t['ray_init_s']:.1f}s, trial phase {fit:.1f}s, promotion {t['promote_s']:.1f}s)")

    builds = [json.loads(line) for line in (storage / "index-cache" / "builds.jsonl").read_text().splitlines()]
    keys = {m["index_key"] for m in trials}
    print(
        f"\nIndex cache: {len(keys)} distinct index configs, {len(builds)} embedding passes over the corpus "
        f"({'equal' if len(keys) == len(builds) else 'NOT equal'})"
    )
    u = out.usage
    held = u.get("total.holdout.llm.generator.requests", 0.0) + u.get("total.holdout.llm.judge.requests", 0.0)
    print(
        f"LLM requests sent: {u['total.llm.generator.requests'] + u['total.llm.judge.requests'] + held:.0f} "
        f"(generator {u['total.llm.generator.requests']:.0f}, judge {u['total.llm.judge.requests']:.0f}, "
        f"held-out confirmation {held:.0f}); "
        f"{out.n_trials - out.n_failed - len(out.trials)} of {out.n_trials} trials stopped early"
    )
    print(f"Best objective {out.best_objective:.4f}: {out.best_params}")
    print(
        f"Target: total < 600 s -> {'met' if total < 600 else 'MISSED'}; "
        f"overhead < 10% -> {'met' if overhead / total < 0.10 else 'MISSED'} ({overhead / total:.1%})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
